"""The checks of what the application passes in, on its own thread.

track() and identify() raise InvalidEventError (a ValueError) here for
arguments that can never be an event: a user_id or event_type that is
not a str, empty, or longer than segopsd takes (its limits are UTF-8
bytes), a field the event does not have. get_user()'s answer is checked
the same way, by the sender, before it becomes a set_user line. Cheap
checks only: what needs encoding to find out is the sender's to drop
and count.
"""

import string

from . import _wire
from .errors import InvalidEventError

# What an event_id may hold: strip() leaves nothing of a valid one.
EVENT_ID_CHARS = string.ascii_letters + string.digits + '._:-'
EVENT_KEYS = ('user_id', 'event_type', 'occurred_at', 'payload', 'event_id')
EVENT_KEY_SET = frozenset(EVENT_KEYS)
IDENTIFY_KEYS = ('user_id', 'traits')


def invalid(message):
    return InvalidEventError(message)


def check_name(what, value, limit):
    if type(value) is not str:
        raise invalid('%s must be a str, not %s'
                      % (what, type(value).__name__))
    if not value or len(value) > limit:
        raise invalid('%s must be 1-%d bytes' % (what, limit))
    if not value.isascii():
        # segopsd's limits are UTF-8 bytes.
        try:
            n = len(value.encode('utf-8'))
        except UnicodeEncodeError:
            raise invalid('%s must not contain a lone surrogate'
                          % what) from None
        if n > limit:
            raise invalid('%s must be 1-%d bytes (UTF-8), not %d'
                          % (what, limit, n))


def from_mapping(obj, keys, kind):
    for k in obj:
        if k not in keys:
            raise invalid('unknown field %r in %s (fields: %s)'
                          % (k, kind, ', '.join(keys)))
    return tuple(obj.get(k) for k in keys)


def user_line(ctx):
    """get_user()'s answer as a set_user line, or None for no identity."""
    if ctx is None:
        return None
    if isinstance(ctx, dict):
        user_id, sig = ctx.get('user_id'), ctx.get('user_id_sig')
    else:
        user_id = getattr(ctx, 'user_id', None)
        sig = getattr(ctx, 'user_id_sig', None)
    check_name('get_user().user_id', user_id, 256)
    if sig is not None:
        check_name('get_user().user_id_sig', sig, 256)
    return _wire.set_user_line(user_id, sig)
