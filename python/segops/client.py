"""SegOpsClient: the reference SDK's client, handing events to segopsd.

What runs where. track() and identify() run on the caller's thread and
do the least that can be done there: check the arguments cheaply, stamp
the time, append one tuple to a bounded deque (``max_queue`` items) and,
when the sender thread sleeps, wake it. They never block on segopsd and
never raise because of it: an item that finds the deque full, the
client closed, or segopsd known to be down (for RECONNECT_INTERVAL after
a failed connect) is dropped and counted (``client.dropped``).

One background thread, started by the first event, does the rest, as
libshim's does: it encodes the items into NDJSON lines, packs as many
lines as fit into each datagram (DGRAM_BYTES; the daemon's socket holds
only net.unix.max_dgram_qlen datagrams, so packing is what makes bursts
survive) and sends them non-blocking. When segopsd's queue is full it
waits for room (poll, RECONNECT_INTERVAL at a time) and keeps the lines;
only the bounded deque overflowing loses events. When segopsd is not
running, what is held is dropped and counted, and the next connect is
tried RECONNECT_INTERVAL later. A line too large for a datagram goes
over the control socket, followed by a ping whose reply confirms it was
read. Unreported drops lead the next datagram as a ``client_dropped``
line (with the pid), or go with the next flush, as libshim reports them.

Whoever sends holds _send_lock: the thread for one datagram at a time,
flush() and shutdown() while they hand over what is held on their own
thread. Failures found in the background reach ``on_error`` from the
thread, at most once per ERROR_INTERVAL for drops, and an exception
from on_error is logged, never raised.

Fork: a child gets a fresh client state (empty deque, no thread, its own
socket); what the parent held stays the parent's to send. atexit: every
client not closed hands over what it holds, within ``exit_timeout``.
"""

import atexit
import collections
import errno
import logging
import os
import select
import sys
import socket as _socket
import string
import threading
import time
import weakref

from . import _control, _wire
from ._wire import DGRAM_BYTES, DROPPED_LINE_MAX, IDENTIFY, RESET, SET_USER, \
    TRACK
from .errors import DaemonUnavailableError, EventsDroppedError, \
    FlushTimeoutError, InvalidEventError, SegOpsError, UpstreamError
from .events import Event, UserContext

log = logging.getLogger('segops')

DEFAULT_SOCKET = '/run/segopsd/events.sock'
CONTROL_SOCKET_NAME = 'segopsd.sock'
# The bound on events held in the client (track() drops beyond it): a
# burst of this many typical events survives while segopsd gets no CPU,
# as libshim's 16 MiB ring does.
DEFAULT_MAX_QUEUE = 100000
DEFAULT_FLUSH_TIMEOUT = 30.0    # segopsd's own default for the flush op
DEFAULT_EXIT_TIMEOUT = 5.0      # the atexit hand-over
RECONNECT_INTERVAL = 0.1        # at most one connect per this
ERROR_INTERVAL = 1.0            # on_error about drops, at most this often
BIG_LINE_TIMEOUT = 10.0         # a line over the control socket
MAX_FLUSH_MS = 3600000

# What an event_id may hold: strip() leaves nothing of a valid one.
_EVENT_ID_CHARS = string.ascii_letters + string.digits + '._:-'
_EVENT_KEYS = ('user_id', 'event_type', 'occurred_at', 'payload', 'event_id')
_EVENT_KEY_SET = frozenset(_EVENT_KEYS)
_IDENTIFY_KEYS = ('user_id', 'traits')
_time = time.time
_monotonic = time.monotonic

# Step results.
_SENT, _EMPTY, _FULL, _DOWN = range(4)
# A peer that went away: the daemon stopped or restarted.
_GONE = (errno.ECONNREFUSED, errno.ENOENT, errno.ECONNRESET, errno.ENOTCONN,
         errno.EPIPE, errno.EDESTADDRREQ)

_clients = weakref.WeakSet()
_key_noted = False


def _log_error(exc):
    """The default on_error, as the SDK's: log it (logging's last-resort
    handler prints it to stderr when the application set up none)."""
    log.error('segops: %s', exc)


def _paths(events, control):
    """The sockets: arguments, else $SEGOPS_SOCKET / $SEGOPS_CONTROL_SOCKET,
    else the defaults; the control socket's default is segopsd.sock in
    the events socket's directory, as libshim derives it."""
    events = os.fspath(events) if events else \
        os.environ.get('SEGOPS_SOCKET') or DEFAULT_SOCKET
    if control:
        control = os.fspath(control)
    else:
        control = os.environ.get('SEGOPS_CONTROL_SOCKET') or \
            os.path.join(os.path.dirname(events), CONTROL_SOCKET_NAME)
    return events, control


def _invalid(message):
    return InvalidEventError(message)


def _check_name(what, value, limit):
    if type(value) is not str:
        raise _invalid('%s must be a str, not %s'
                       % (what, type(value).__name__))
    if not value or len(value) > limit:
        raise _invalid('%s must be 1-%d bytes' % (what, limit))
    if not value.isascii():
        # segopsd's limits are UTF-8 bytes.
        try:
            n = len(value.encode('utf-8'))
        except UnicodeEncodeError:
            raise _invalid('%s must not contain a lone surrogate'
                           % what) from None
        if n > limit:
            raise _invalid('%s must be 1-%d bytes (UTF-8), not %d'
                           % (what, limit, n))


def _from_mapping(obj, keys, kind):
    for k in obj:
        if k not in keys:
            raise _invalid('unknown field %r in %s (fields: %s)'
                           % (k, kind, ', '.join(keys)))
    return tuple(obj.get(k) for k in keys)


def _user_line(ctx):
    """get_user()'s answer as a set_user line, or None for no identity."""
    if ctx is None:
        return None
    if isinstance(ctx, dict):
        user_id, sig = ctx.get('user_id'), ctx.get('user_id_sig')
    else:
        user_id = getattr(ctx, 'user_id', None)
        sig = getattr(ctx, 'user_id_sig', None)
    _check_name('get_user().user_id', user_id, 256)
    if sig is not None:
        _check_name('get_user().user_id_sig', sig, 256)
    return _wire.set_user_line(user_id, sig)


def _pop_all(q):
    """Empty the deque q, which other threads may append to meanwhile
    (popleft is atomic; len() then clear() is not); the number taken."""
    n = 0
    while True:
        try:
            q.popleft()
        except IndexError:
            return n
        n += 1


class SegOpsClient:
    """The reference SDK's client, talking to the local segopsd.

    Arguments as the SDK's: api_url and api_key are accepted and not
    used (segopsd holds the key); batch, batch_size and flush_interval
    are accepted and not used (segopsd batches, see its [batch]
    section); get_user and on_error as documented.

    Keyword-only, not in the SDK: socket and control_socket (paths;
    default $SEGOPS_SOCKET / $SEGOPS_CONTROL_SOCKET, else
    /run/segopsd/events.sock and segopsd.sock beside it), max_queue (the
    bound on events held in this client, DEFAULT_MAX_QUEUE), flush_timeout
    (seconds flush() and shutdown() wait by default) and exit_timeout
    (seconds the atexit hand-over may take)."""

    def __init__(self, api_url=None, api_key=None, get_user=None, batch=True,
                 batch_size=20, flush_interval=5.0, on_error=None, *,
                 socket=None, control_socket=None,
                 max_queue=DEFAULT_MAX_QUEUE,
                 flush_timeout=DEFAULT_FLUSH_TIMEOUT,
                 exit_timeout=DEFAULT_EXIT_TIMEOUT):
        global _key_noted
        if get_user is not None and not callable(get_user):
            raise TypeError('get_user must be callable')
        if on_error is not None and not callable(on_error):
            raise TypeError('on_error must be callable')
        if type(max_queue) is not int or max_queue < 1:
            raise ValueError('max_queue must be a positive int')
        if api_key and not _key_noted:
            _key_noted = True
            # Never the key itself, not even a part of it.
            log.warning('segops: api_key is not used: segopsd holds the key '
                        'for every process on this host; remove it from '
                        'the application')
        self.api_url = api_url
        self._events_path, self._control_path = _paths(socket, control_socket)
        self._get_user = get_user
        self._on_error = on_error or _log_error
        self._flush_timeout = float(flush_timeout)
        self._exit_timeout = float(exit_timeout)
        self._max_queue = max_queue
        self._limit = max_queue     # 0 once closed: every track drops
        self._closed = False
        self._final = False         # closed, and the final hand-over done
        self._dropped = 0
        self._need_user = get_user is not None
        self._user_line = None      # the last set_user, sent again on reconnect
        self._reset_pending = False     # a reset waiting for get_user()
        self._init_state()
        _clients.add(self)

    def _init_state(self):
        """Everything a fork child must not share with its parent."""
        self._q = collections.deque()
        self._staged = collections.deque()  # encoded lines, not yet sent
        self._staged_bytes = 0
        self._popped = 0                    # items taken from _q, ever
        self._down_until = 0.0              # track() drops until then
        self._down_cause = None
        self._idle = True
        self._thread = None
        self._stopping = False
        self._wake = threading.Event()
        self._start_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._drop_lock = threading.Lock()
        self._sock = None
        self._pid = os.getpid()
        self._unreported = 0
        self._drop_reason = None
        self._drop_cause = None
        self._announced = self._dropped     # drops told to on_error
        self._next_announce = 0.0
        self._flush_mark = self._dropped    # drops raised by flush()
        self._next_error = {}
        self._last_ms, self._last_text = -1, ''     # the sender's time text

    # ---- the SDK's API ---------------------------------------------------
    @property
    def dropped(self):
        """Events and ops this client accepted but could not hand over to
        segopsd, since it was created (never decreases)."""
        return self._dropped

    def track(self, event=None, *, user_id=None, event_type=None,
              occurred_at=None, payload=None, event_id=None):
        """Queue an event: an Event, a dict with its fields, or keywords.
        Never blocks and never raises because of segopsd; raises
        InvalidEventError for arguments that can never be an event.
        event_id (not in the reference SDK) is optional, see Event."""
        if event is not None:
            if user_id is not None or event_type is not None or \
                    occurred_at is not None or payload is not None or \
                    event_id is not None:
                raise _invalid('track() takes an event or keywords, not both')
            if isinstance(event, Event):
                user_id, event_type = event.user_id, event.event_type
                occurred_at, payload = event.occurred_at, event.payload
                event_id = event.event_id
            elif isinstance(event, dict):
                if not _EVENT_KEY_SET.issuperset(event):
                    _from_mapping(event, _EVENT_KEYS, 'track')  # raises
                get = event.get
                user_id, event_type = get('user_id'), get('event_type')
                occurred_at, payload = get('occurred_at'), get('payload')
                event_id = get('event_id')
            else:
                raise _invalid('event must be an Event or a dict, not %s'
                               % type(event).__name__)
        # Up to 64 (32) characters are at most 256 (128) UTF-8 bytes;
        # longer names have their bytes counted by _check_name.
        if type(user_id) is not str or not 0 < len(user_id) <= 64 or \
                type(event_type) is not str or not 0 < len(event_type) <= 32:
            _check_name('user_id', user_id, 256)
            _check_name('event_type', event_type, 128)
        if payload:
            if type(payload) is not dict and not isinstance(payload, dict):
                raise _invalid('payload must be a dict')
            payload = payload.copy()    # encoded later: the caller may reuse it
        elif payload is not None and not isinstance(payload, dict):
            raise _invalid('payload must be a dict')
        if occurred_at is None:
            occurred_at = _time()
        elif type(occurred_at) is not float or \
                not -1e15 < occurred_at < 1e15:   # NaN and inf fail this
            try:
                occurred_at = _wire.check_time(occurred_at)
            except (TypeError, ValueError) as e:
                raise _invalid(str(e)) from None
        if event_id is not None and (type(event_id) is not str or
                                     not 0 < len(event_id) <= 64 or
                                     event_id.strip(_EVENT_ID_CHARS)):
            raise _invalid('event_id must be 1-64 characters of '
                           '[A-Za-z0-9._:-]')
        q = self._q
        if len(q) < self._limit and not self._down_until:
            q.append((TRACK, user_id, event_type, occurred_at, payload,
                      event_id))
            if self._idle:
                self._kick()
            return
        self._enqueue_slow((TRACK, user_id, event_type, occurred_at, payload,
                            event_id))

    def identify(self, context=None, *, user_id=None, traits=None):
        """Record traits: segopsd turns this into the event
        context_identified with payload {"traits": ...}. context: a dict
        or an object with user_id (and traits), e.g. a UserContext."""
        if context is not None:
            if user_id is not None or traits is not None:
                raise _invalid('identify() takes a context or keywords, '
                               'not both')
            if isinstance(context, dict):
                user_id, traits = _from_mapping(context, _IDENTIFY_KEYS,
                                                'identify')
            else:
                user_id = getattr(context, 'user_id', None)
                traits = getattr(context, 'traits', None)
        _check_name('user_id', user_id, 256)
        if traits is not None and not isinstance(traits, dict):
            raise _invalid('traits must be a dict')
        self._enqueue((IDENTIFY, user_id, _time(),
                       traits.copy() if traits else None))

    def reset_session(self):
        """Have segopsd drop its session token, so that the next event
        re-mints with get_user()'s current identity (called again before
        the next event). Queued in order with the events; events queued
        before it that segopsd has not sent yet go out under the new
        session: call flush() first to keep them under the old one.
        With get_user, the reset goes right after the set_user of
        get_user()'s answer (segopsd drops its token at a reset only for
        an identity named before it), with the next event or flush()."""
        self._enqueue((RESET,))

    def flush(self, timeout=None):
        """Block until segopsd reports every event it holds (this
        client's included, handed over first) accepted upstream.

        Raises FlushTimeoutError after timeout seconds (default
        flush_timeout), DaemonUnavailableError when segopsd is not
        running, UpstreamError when it reports events lost upstream, and
        EventsDroppedError when this client dropped events since the
        previous flush (the count is in the exception)."""
        self._flush(timeout)

    def _flush(self, timeout):
        # flush() itself is a coroutine in AsyncSegOpsClient: shutdown()
        # and the async wrappers call this.
        deadline = _monotonic() + (self._flush_timeout if timeout is None
                                   else float(timeout))
        try:
            self._hand_over(deadline)
        except FlushTimeoutError:
            self._mark_flushed()
            raise
        self._control_flush(deadline)

    def shutdown(self, timeout=None):
        """Flush (raising as flush() does) and stop the background thread.
        Events tracked afterwards are dropped and counted. A second call
        does nothing."""
        with self._start_lock:
            if self._closed:
                return
            self._closed = True
            self._limit = 0
        _clients.discard(self)
        self._stop_thread(timeout)
        try:
            self._flush(timeout)
        finally:
            self._final = True
            self._drain_closed()
            self._close_socket()

    close = shutdown

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.shutdown()
            return False
        # The body's exception matters more than a failed final flush.
        try:
            self.shutdown()
        except SegOpsError as e:
            self._report(e)
        return False

    def __repr__(self):
        return '<%s socket=%r dropped=%d%s>' % (
            type(self).__name__, self._events_path, self._dropped,
            ' closed' if self._closed else '')

    # ---- the caller's side -------------------------------------------------
    def _enqueue(self, item):
        if len(self._q) < self._limit and not self._down_until:
            self._q.append(item)
            if self._idle:
                self._kick()
        else:
            self._enqueue_slow(item)

    def _enqueue_slow(self, item):
        if self._closed:
            # Counted, but neither raised by the final flush nor reported:
            # the application tracked after shutdown().
            with self._drop_lock:
                self._dropped += 1
                self._flush_mark += 1
                self._announced += 1
            return
        if self._down_until:
            if _monotonic() < self._down_until:
                self._count_drop(1, self._down_reason(), self._down_cause)
                return
            # Time to try again: the sender connects for this one.
        if len(self._q) >= self._limit:
            self._count_drop(1, 'the client\'s buffer of %d events is full '
                             '(segopsd is slower than the application)'
                             % self._max_queue)
            return
        self._q.append(item)
        self._kick()

    def _kick(self):
        self._idle = False
        if self._thread is None:
            self._start_thread()
        self._wake.set()

    def _start_thread(self):
        with self._start_lock:
            if self._closed:
                if self._final:
                    self._drain_closed()
                return
            if self._thread is not None:
                return
            t = threading.Thread(target=self._run, name='segops-sender',
                                 daemon=True)
            try:
                t.start()
            except RuntimeError:
                # Interpreter shutdown: the atexit hand-over sends.
                return
            self._thread = t
        _register_mp_exit()

    def _drain_closed(self):
        """After the final hand-over: what a thread appended meanwhile (it
        passed track()'s check before shutdown() began and appended after
        the hand-over) is counted as tracked after shutdown(), never left
        in the deque. _idle is set first, so that an append after this
        drain kicks, and the kick (_start_thread) drains it."""
        self._idle = True
        n = _pop_all(self._q)
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

    def _down_reason(self):
        e = self._down_cause
        return 'segopsd is not running (%s)' % e if e else \
            'segopsd is not running'

    # ---- the sender thread -------------------------------------------------
    def _run(self):
        while not self._stopping:
            if not self._q and not self._staged:
                self._idle = True
                self._wake.clear()
                if not self._q and not self._stopping:
                    # Drops to tell on_error about later, or track()
                    # dropping while segopsd is down: wake up for them.
                    late = self._dropped != self._announced or \
                        self._down_until
                    self._wake.wait(ERROR_INTERVAL if late else None)
                self._idle = False
            else:
                with self._send_lock:
                    if self._stopping:
                        break
                    try:
                        self._step(RECONNECT_INTERVAL, force=False)
                    except Exception as e:  # noqa: BLE001 -- keep sending
                        # A bug here must not silence the client for
                        # good: say it, and go on with the next items.
                        self._report_limited('internal', SegOpsError(
                            'segops sender: %r' % (e,)))
                        time.sleep(RECONNECT_INTERVAL)
            self._announce_drops()

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

    def _stop_thread(self, timeout):
        t = self._thread
        self._stopping = True
        self._wake.set()
        if t is not None and t is not threading.current_thread():
            t.join(self._flush_timeout if timeout is None else timeout)
        self._thread = None

    # ---- sending (with _send_lock held) ------------------------------------
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
        popped = _pop_all(self._q)
        self._popped += popped
        n += popped
        if n:
            self._count_drop(n, self._down_reason(), self._down_cause)

    def _resolve_user(self):
        self._need_user = False
        try:
            line = _user_line(self._get_user())
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
        _SENT, _EMPTY (nothing held), _FULL (segopsd's queue is full;
        waited up to room_wait) or _DOWN (held events dropped)."""
        if self._sock is None and not self._connect(force):
            self._drop_held()
            return _DOWN
        self._stage()
        staged = self._staged
        if not staged:
            return _EMPTY
        if len(staged[0]) > DGRAM_BYTES - DROPPED_LINE_MAX:
            self._send_big()
            return _SENT
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
            return _FULL
        except OSError as e:
            self._give_back(claim)
            if e.errno in _GONE:
                # Restarted or stopped: a new socket, right away once.
                self._close_socket()
                if self._connect(True):
                    return _FULL
                self._drop_held()
                return _DOWN
            if e.errno in (errno.ENOBUFS, errno.ENOMEM):
                time.sleep(0.01)
                return _FULL
            # Never going to go (EMSGSIZE, a policy's EPERM, ...).
            for _ in lines:
                staged.popleft()
            self._staged_bytes -= size
            self._count_drop(len(lines), 'a datagram could not be sent: %s'
                             % e)
            return _SENT
        for _ in lines:
            staged.popleft()
        self._staged_bytes -= size
        return _SENT

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

    # ---- flush, on the caller's thread -------------------------------------
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
                if r == _DOWN:
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

    # ---- process life ------------------------------------------------------
    def _at_exit(self):
        """The interpreter is exiting and nobody called shutdown(): hand
        over what is held (bounded), report drops, never raise."""
        with self._start_lock:
            if self._closed:
                return
            self._closed = True
            self._limit = 0
        deadline = _monotonic() + self._exit_timeout
        self._stop_thread(self._exit_timeout)
        try:
            self._hand_over(deadline)
            claim = self._claim_unreported()
            if claim:
                try:
                    _control.exchange(self._control_path,
                                      _wire.dropped_line(claim), 1,
                                      min(deadline, _monotonic() + 0.5))
                except SegOpsError:
                    pass
        except SegOpsError as e:
            self._report(e)
        self._final = True
        self._drain_closed()
        self._next_announce = 0.0
        self._announce_drops()
        self._close_socket()

    def _after_fork_child(self):
        # The parent's socket (a copy of its descriptor) and thread stay
        # the parent's; so does what it held.
        s = self._sock
        self._init_state()
        if s is not None:
            try:
                s.close()
            except OSError:
                pass


def _after_fork_in_child():
    for c in list(_clients):
        c._after_fork_child()


def _exit_all():
    for c in list(_clients):
        c._at_exit()


_mp_exit_pid = None


def _register_mp_exit():
    """A multiprocessing child ends in os._exit(), without atexit: its
    hand-over is registered as a multiprocessing finalizer, which that
    exit runs (once per process; registered at the first event, after
    the child cleared the finalizers it inherited)."""
    global _mp_exit_pid
    pid = os.getpid()
    if _mp_exit_pid == pid:
        return
    mpp = sys.modules.get('multiprocessing.process')
    mpu = sys.modules.get('multiprocessing.util')
    if mpp is None or mpu is None or mpp.parent_process() is None:
        return
    _mp_exit_pid = pid
    mpu.Finalize(None, _exit_all, exitpriority=0)


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_exit_all)
