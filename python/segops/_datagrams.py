"""Handing what is held to segopsd's events socket, a datagram at a time.

Whoever sends holds _send_lock: the sender thread for one datagram at a
time, flush() and shutdown() while they hand over what is held on their
own thread. _stage() encodes items from the deque into NDJSON lines
(the common track event inline: this loop bounds a process's events/s);
_step() packs as many lines as fit into one datagram (DGRAM_BYTES; the
daemon's socket holds only net.unix.max_dgram_qlen datagrams, so packing
is what makes bursts survive) and sends it non-blocking. When segopsd's
queue is full it waits for room (poll, at most RECONNECT_INTERVAL at a
time) and keeps the lines. When segopsd is not running, what is held is
dropped and counted, and the next connect is tried RECONNECT_INTERVAL
later; a new connection says the identity (set_user) again first. A
line too large for a datagram goes over the control socket, followed by
a ping whose reply confirms it was read. Unreported drops lead the next
datagram as a ``client_dropped`` line with the pid.
"""

import errno
import select
import socket as _socket
import time

from . import _control, _wire
from ._checks import user_line
from ._drops import pop_all
from ._wire import DGRAM_BYTES, DROPPED_LINE_MAX, RESET, TRACK
from .errors import DaemonUnavailableError, InvalidEventError, SegOpsError

RECONNECT_INTERVAL = 0.1        # at most one connect per this
BIG_LINE_TIMEOUT = 10.0         # a line over the control socket

_monotonic = time.monotonic

# Step results.
SENT, EMPTY, FULL, DOWN = range(4)
# A peer that went away: the daemon stopped or restarted.
GONE = (errno.ECONNREFUSED, errno.ENOENT, errno.ECONNRESET, errno.ENOTCONN,
        errno.EPIPE, errno.EDESTADDRREQ)


class DatagramSender:
    """SegOpsClient's sending, with _send_lock held."""

    def _connect(self, force):
        if not force and self._down_until and \
                _monotonic() < self._down_until:
            return False
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
        try:
            s.setblocking(False)
            s.connect(self._events_path)
        except OSError as e:
            s.close()
            self._down_cause = DaemonUnavailableError(
                '%s: %s' % (self._events_path, e.strerror or e),
                path=self._events_path, errno=e.errno)
            self._down_until = _monotonic() + RECONNECT_INTERVAL
            return False
        self._sock = s
        self._down_until = 0.0
        self._down_cause = None
        # A new connection may be a restarted daemon, which forgot the
        # identity: say it again first.
        if self._user_line is not None:
            self._staged.appendleft(self._user_line)
            self._staged_bytes += len(self._user_line)
        return True

    def _close_socket(self):
        s, self._sock = self._sock, None
        if s is not None:
            s.close()

    def _drop_held(self):
        """segopsd is not there: everything held is lost, and counted."""
        n = len(self._staged)
        self._staged.clear()
        self._staged_bytes = 0
        popped = pop_all(self._q)
        self._popped += popped
        n += popped
        if n:
            self._count_drop(n, self._down_reason(), self._down_cause)

    def _down_reason(self):
        e = self._down_cause
        return 'segopsd is not running (%s)' % e if e else \
            'segopsd is not running'

    def _resolve_user(self):
        self._need_user = False
        try:
            line = user_line(self._get_user())
        except Exception as e:  # noqa: BLE001 -- the application's callback
            err = SegOpsError('get_user() failed: %r; events go without a '
                              'new identity' % (e,))
            err.__cause__ = e
            self._report(err)
            line = None
        if line is not None:
            self._user_line = line
            self._staged.append(line)
            self._staged_bytes += len(line)
        if self._reset_pending:
            self._reset_pending = False
            line = _wire.encode_item((RESET,))
            self._staged.append(line)
            self._staged_bytes += len(line)

    def _stage(self):
        """Encode items from the deque until a datagram's worth is staged.

        The common item, a track event stamped by track() itself, is
        encoded inline: this loop is what bounds a process's events/s.
        Its time goes as epoch seconds with milliseconds (what segopsd
        keeps), the text made once per millisecond."""
        q, staged = self._q, self._staged
        encode, enc, dumps = _wire.encode_item, _wire._enc, _wire._dumps
        last_ms, last_text = self._last_ms, self._last_text
        size = self._staged_bytes
        popped = 0
        try:
            while size < DGRAM_BYTES:
                try:
                    item = q.popleft()
                except IndexError:
                    break
                popped += 1
                kind = item[0]
                if kind == RESET:
                    if self._get_user is not None:
                        # segopsd drops its token at a reset only when
                        # set_user named another identity first: the
                        # reset waits for get_user(), called before the
                        # next event (or by flush), and goes after it.
                        self._need_user = True
                        self._reset_pending = True
                        continue
                elif self._need_user:
                    self._staged_bytes = size
                    self._resolve_user()
                    size = self._staged_bytes
                try:
                    if kind == TRACK and type(item[3]) is float and \
                            item[3] >= 0.0:
                        # Within a microsecond of a millisecond counts as
                        # it, as segopsd reads epoch numbers.
                        ms = int(item[3] * 1000.0 + 0.001)
                        if ms != last_ms:
                            last_ms = ms
                            last_text = '%d.%03d' % divmod(ms, 1000)
                        p = item[4]
                        line = ('{"user_id":' + enc(item[1]) +
                                (',"event_id":' + enc(item[5])
                                 if item[5] is not None else '') +
                                ',"event_type":' + enc(item[2]) +
                                ',"occurred_at":' + last_text +
                                ',"payload":' + (dumps(p) if p else '{}') +
                                '}\n')
                    else:
                        line = encode(item)
                except Exception as e:  # noqa: BLE001 -- the caller's data
                    # TypeError, ValueError, OverflowError, RecursionError,
                    # or whatever a payload's own code raises (a nested
                    # dict changed meanwhile: RuntimeError): that item is
                    # dropped and counted, never lost without a trace.
                    self._count_drop(1, 'an event could not be encoded: %s'
                                     % e, InvalidEventError(str(e)))
                    continue
                if '\\ud' in line or '\\u0000' in line:
                    why = _wire.bad_escape(line)
                    if why:
                        # segopsd would reject it where nobody sees it.
                        self._count_drop(1, 'an event held %s in a string '
                                         '(segopsd rejects it)' % why,
                                         InvalidEventError(why))
                        continue
                staged.append(line)
                size += len(line)
        finally:
            self._staged_bytes = size
            self._popped += popped
            self._last_ms, self._last_text = last_ms, last_text

    def _step(self, room_wait, force):
        """Send one datagram, or one line too large for one; returns
        SENT, EMPTY (nothing held), FULL (segopsd's queue is full;
        waited up to room_wait) or DOWN (held events dropped)."""
        if self._sock is None and not self._connect(force):
            self._drop_held()
            return DOWN
        self._stage()
        staged = self._staged
        if not staged:
            return EMPTY
        if len(staged[0]) > DGRAM_BYTES - DROPPED_LINE_MAX:
            self._send_big()
            return SENT
        claim = self._claim_unreported()
        prefix = _wire.dropped_line(claim, self._pid) if claim else ''
        room = DGRAM_BYTES - len(prefix)
        lines = []
        size = 0
        for line in staged:
            n = len(line)
            if size + n > room:
                break
            lines.append(line)
            size += n
        data = (prefix + ''.join(lines)).encode('ascii')
        try:
            self._sock.send(data, _socket.MSG_NOSIGNAL)
        except BlockingIOError:
            self._give_back(claim)
            if room_wait > 0:
                p = select.poll()
                p.register(self._sock, select.POLLOUT)
                p.poll(room_wait * 1000)
            return FULL
        except OSError as e:
            self._give_back(claim)
            if e.errno in GONE:
                # Restarted or stopped: a new socket, right away once.
                self._close_socket()
                if self._connect(True):
                    return FULL
                self._drop_held()
                return DOWN
            if e.errno in (errno.ENOBUFS, errno.ENOMEM):
                time.sleep(0.01)
                return FULL
            # Never going to go (EMSGSIZE, a policy's EPERM, ...).
            for _ in lines:
                staged.popleft()
            self._staged_bytes -= size
            self._count_drop(len(lines), 'a datagram could not be sent: %s'
                             % e)
            return SENT
        for _ in lines:
            staged.popleft()
        self._staged_bytes -= size
        return SENT

    def _send_big(self):
        """The line at the head is too large for a datagram: the control
        socket takes it, then a ping whose reply says it was read."""
        line = self._staged.popleft()
        self._staged_bytes -= len(line)
        claim = self._claim_unreported()
        pre = _wire.dropped_line(claim) if claim else ''
        try:
            replies = _control.exchange(
                self._control_path, pre + line + _wire.PING_LINE, None,
                _monotonic() + BIG_LINE_TIMEOUT)
        except (SegOpsError, OSError) as e:
            self._give_back(claim)
            self._count_drop(1, 'an event of %d bytes could not be handed '
                             'over on the control socket' % len(line), e)
            return
        if claim and replies[0].get('ok') is not True:
            self._give_back(claim)
        event_line = 2 if claim else 1
        for r in replies:
            if r.get('ok') is False and r.get('line') == event_line:
                why = 'segopsd rejected an event of %d bytes: %s (%s)' % (
                    len(line), r.get('error'), r.get('detail', ''))
                # Lost, and this client knows it: counted (flush() raises
                # it) but not reported as client_dropped, since segopsd
                # counted it as rejected; on_error hears it once, here.
                with self._drop_lock:
                    self._dropped += 1
                    self._announced += 1
                    self._drop_reason = why
                self._report_limited('rejected', InvalidEventError(why))
