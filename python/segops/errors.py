"""The exceptions of the segops package.

Every one is a SegOpsError, so ``except SegOpsError`` catches all of
them; the subclasses are the cases a caller would handle differently:
segopsd is not there (start it, or live with it), a flush ran out of
time (try again later), the upstream refused events (look at the
daemon's log), this client had to drop events, an argument was wrong.
"""


class SegOpsError(Exception):
    """Base class of every error this package raises or reports."""


class DaemonUnavailableError(SegOpsError):
    """segopsd is not running, or this process may not use its socket.

    ``errno`` is the socket error (ENOENT, ECONNREFUSED, EACCES, ...) when
    there was one; ``path`` the socket that failed."""

    def __init__(self, message, path=None, errno=None):
        super().__init__(message)
        self.path = path
        self.errno = errno


class FlushTimeoutError(SegOpsError, TimeoutError):
    """flush() or shutdown() ran out of time: the events are not lost,
    segopsd still holds them (``pending`` of them, when it said)."""

    def __init__(self, message, reply=None):
        super().__init__(message)
        self.reply = reply or {}
        self.pending = self.reply.get('pending')


class UpstreamError(SegOpsError):
    """segopsd answered the flush with a failure other than a timeout:
    events were refused by the upstream, or the daemon is stopping.
    ``reply`` is the daemon's answer (``dropped``, ``dropped_by``,
    ``pending``, ``flushed``)."""

    def __init__(self, message, reply=None):
        super().__init__(message)
        self.reply = reply or {}
        self.dropped = self.reply.get('dropped', 0)
        self.dropped_by = self.reply.get('dropped_by', {})


class EventsDroppedError(SegOpsError):
    """This client accepted ``count`` events (or ops) that it could not
    hand over to segopsd: the daemon was not running, its buffer was
    full, or the event could not be encoded. Passed to ``on_error`` from
    the background, and raised by flush() for drops since the previous
    flush."""

    def __init__(self, message, count):
        super().__init__(message)
        self.count = count


class InvalidEventError(SegOpsError, ValueError):
    """An argument that can never make a valid event: a missing
    user_id, a payload that is not a dict, an unknown field, a payload
    that JSON cannot encode (reported through ``on_error``, since
    payloads are encoded in the background)."""
