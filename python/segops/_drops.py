"""What this client lost, counted, and told to ``on_error``.

``dropped`` counts every event (and op) the client accepted but could
not hand over to segopsd, or knows segopsd rejected. Drops not yet told
to segopsd (``_unreported``) lead the next datagram, or go with the next
flush, as a ``client_dropped`` line; a sender that fails to send them
gives them back. Drops not yet told to the application reach on_error
from the sender thread, at most once per ERROR_INTERVAL, with their
count and the last reason; an exception from on_error is logged, never
raised. Events tracked after shutdown() are counted but neither
reported nor raised.

The counts are shared by the caller's thread and the sender thread:
they change under _drop_lock.
"""

import logging
import time

from .errors import EventsDroppedError

log = logging.getLogger('segops')

ERROR_INTERVAL = 1.0            # on_error about drops, at most this often

_monotonic = time.monotonic


def log_error(exc):
    """The default on_error, as the SDK's: log it (logging's last-resort
    handler prints it to stderr when the application set up none)."""
    log.error('segops: %s', exc)


def pop_all(q):
    """Empty the deque q, which other threads may append to meanwhile
    (popleft is atomic; len() then clear() is not); the number taken."""
    n = 0
    while True:
        try:
            q.popleft()
        except IndexError:
            return n
        n += 1


class DropCounter:
    """SegOpsClient's drop counts and reports (its state is set up by
    SegOpsClient._init_state)."""

    def _drain_closed(self):
        """After the final hand-over: what a thread appended meanwhile (it
        passed track()'s check before shutdown() began and appended after
        the hand-over) is counted as tracked after shutdown(), never left
        in the deque. _idle is set first, so that an append after this
        drain kicks, and the kick (_start_thread) drains it."""
        self._idle = True
        n = pop_all(self._q)
        if n:
            with self._drop_lock:
                self._dropped += n
                self._flush_mark += n
                self._announced += n

    def _count_drop(self, n, reason, cause=None):
        with self._drop_lock:
            self._dropped += n
            self._unreported += n
            self._drop_reason = reason
            self._drop_cause = cause

    def _claim_unreported(self):
        with self._drop_lock:
            n, self._unreported = self._unreported, 0
        return n

    def _give_back(self, n):
        if n:
            with self._drop_lock:
                self._unreported += n

    def _announce_drops(self):
        n = self._dropped - self._announced
        if n <= 0:
            return
        now = _monotonic()
        if now < self._next_announce:
            return
        self._announced += n
        self._next_announce = now + ERROR_INTERVAL
        exc = EventsDroppedError('%d event%s dropped: %s' % (
            n, '' if n == 1 else 's', self._drop_reason), n)
        exc.__cause__ = self._drop_cause
        self._report(exc)

    def _report(self, exc):
        try:
            self._on_error(exc)
        except Exception:   # noqa: BLE001 -- never into our thread's caller
            log.exception('segops: on_error raised')

    def _report_limited(self, kind, exc):
        now = _monotonic()
        if now >= self._next_error.get(kind, 0.0):
            self._next_error[kind] = now + ERROR_INTERVAL
            self._report(exc)
