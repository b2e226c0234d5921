"""flush() on the caller's thread: hand over what is held, then ask
segopsd to flush.

The hand-over takes _send_lock from the sender thread and sends what
the client held when flush() was called, a datagram at a time, until it
is gone or the deadline passes (FlushTimeoutError) or segopsd is found
down (what was held is dropped and counted). Then the flush op goes
over the control socket, led by any unreported drops as a
``client_dropped`` line, and segopsd's reply becomes the outcome:
FlushTimeoutError, DaemonUnavailableError, UpstreamError, or
EventsDroppedError when this client dropped events since the previous
flush. shutdown() and the exit hand-over (_process_life.py) use it too.
"""

import time

from . import _control, _wire
from ._datagrams import DOWN, RECONNECT_INTERVAL
from .errors import DaemonUnavailableError, EventsDroppedError, \
    FlushTimeoutError, SegOpsError, UpstreamError

MAX_FLUSH_MS = 3600000

_monotonic = time.monotonic


class HandOver:
    """SegOpsClient's flush, as far as it runs on the caller's thread."""

    def _hand_over(self, deadline):
        """Send what this client held when called; FlushTimeoutError when
        it cannot before deadline. Stops early when segopsd is down (what
        was held is then dropped and counted)."""
        target = len(self._q)
        if not self._send_lock.acquire(timeout=max(0.0, deadline -
                                                   _monotonic())):
            raise FlushTimeoutError('the client\'s events could not be '
                                    'handed over to segopsd in time')
        try:
            start = self._popped
            force = True
            while True:
                if not (self._staged or (self._popped - start < target and
                                         self._q)):
                    if not (self._reset_pending and self._need_user):
                        break
                    # reset_session() with no event after it yet: its
                    # get_user() now, then set_user and the reset.
                    self._resolve_user()
                    continue
                left = deadline - _monotonic()
                if left <= 0:
                    raise FlushTimeoutError(
                        'segopsd did not take the client\'s %d held events '
                        'in time' % (len(self._staged) + len(self._q)))
                r = self._step(min(left, RECONNECT_INTERVAL), force)
                force = False
                if r == DOWN:
                    break
        finally:
            self._send_lock.release()

    def _mark_flushed(self):
        with self._drop_lock:
            n = self._dropped - self._flush_mark
            self._flush_mark = self._dropped
        return n

    def _control_flush(self, deadline):
        now = _monotonic()
        ms = int(max(0.0, deadline - now - _control.REPLY_GRACE) * 1000)
        claim = self._claim_unreported()
        lines = (_wire.dropped_line(claim) if claim else '') + \
            _wire.flush_line(min(ms, MAX_FLUSH_MS))
        dropped = self._mark_flushed()
        try:
            replies = _control.exchange(
                self._control_path, lines, 2 if claim else 1,
                max(deadline, now + _control.REPLY_GRACE))
        except SegOpsError as e:
            self._give_back(claim)
            if dropped:
                e.args = ('%s; %d event%s dropped by this client' % (
                    e, dropped, '' if dropped == 1 else 's'),)
            raise
        if claim and replies[0].get('ok') is not True:
            self._give_back(claim)
        reply = replies[-1]
        if claim and len(replies) < 2:
            reply = {'ok': False, 'error': 'segopsd closed the connection'}
        if reply.get('ok') is not True:
            error = str(reply.get('error', 'unknown error'))
            if error.startswith('timeout'):
                raise FlushTimeoutError('segopsd: ' + error, reply)
            if error == 'segopsd is stopping':
                raise DaemonUnavailableError('segopsd is stopping',
                                             path=self._control_path)
            raise UpstreamError('segopsd: ' + error, reply)
        if dropped:
            raise EventsDroppedError(
                '%d event%s dropped by this client since the last flush: %s'
                % (dropped, '' if dropped == 1 else 's', self._drop_reason),
                dropped)
