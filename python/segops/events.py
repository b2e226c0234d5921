"""The SDK's value types: Event and UserContext, and sign_user_id()."""

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Dict, Optional


@dataclass
class Event:
    """One track event, as track() takes it.

    occurred_at: a datetime (naive means UTC), an RFC 3339 string or
    Unix epoch seconds; None means the time of the track() call.
    event_id (not in the reference SDK; optional): 1-64 characters of
    ``[A-Za-z0-9._:-]``, kept by segopsd and the upstream for
    deduplication; by default segopsd assigns a UUID."""

    user_id: str
    event_type: str
    occurred_at: Any = None
    payload: Optional[Dict[str, Any]] = None
    event_id: Optional[str] = None


@dataclass(frozen=True)
class UserContext:
    """The identity segopsd mints its pk_ session with (get_user's
    return value): user_id and, when the key requires it, user_id_sig,
    made on the backend with sign_user_id()."""

    user_id: str
    user_id_sig: Optional[str] = None


def sign_user_id(secret, user_id):
    """The user_id_sig of user_id: lowercase hex HMAC-SHA256 keyed with
    secret (str as UTF-8, or bytes) over the user id's UTF-8 bytes; the
    same as ``segopsctl sign-user-id`` and libsegops-sign. Backend only:
    the secret must never reach a client."""
    if isinstance(secret, str):
        secret = secret.encode('utf-8')
    if not isinstance(secret, (bytes, bytearray)):
        raise TypeError('secret must be str or bytes')
    if isinstance(user_id, str):
        user_id = user_id.encode('utf-8')
    if not isinstance(user_id, (bytes, bytearray)):
        raise TypeError('user_id must be str or bytes')
    return hmac.new(bytes(secret), bytes(user_id), hashlib.sha256).hexdigest()
