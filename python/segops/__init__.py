"""segops: the SegOps Python SDK's API, delivering through segopsd.

    from segops import SegOpsClient, Event, UserContext, sign_user_id, \\
        SegOpsError

The names and semantics are the reference SDK's; the events go to the
local segopsd (which holds the API key, batches, spools and forwards)
instead of straight to the upstream. See README.md beside this package.
"""

from .aio import AsyncSegOpsClient
from .client import DEFAULT_MAX_QUEUE, DEFAULT_SOCKET, SegOpsClient
from .errors import DaemonUnavailableError, EventsDroppedError, \
    FlushTimeoutError, InvalidEventError, SegOpsError, UpstreamError
from .events import Event, UserContext, sign_user_id

__version__ = '0.1.0'

__all__ = [
    'AsyncSegOpsClient', 'DEFAULT_MAX_QUEUE', 'DEFAULT_SOCKET',
    'DaemonUnavailableError', 'Event', 'EventsDroppedError',
    'FlushTimeoutError', 'InvalidEventError', 'SegOpsClient', 'SegOpsError',
    'UpstreamError', 'UserContext', 'sign_user_id', '__version__',
]
