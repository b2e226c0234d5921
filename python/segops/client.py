"""SegOpsClient: the reference SDK's client, handing events to segopsd.

This file holds the public API (the constructor, track(), identify(),
reset_session(), flush(), shutdown() and the context manager), the
client's state, and what runs on the caller's thread. track() and
identify() do the least that can be done there: check the arguments
cheaply (_checks.py), stamp the time, append one tuple to a bounded
deque (``max_queue`` items) and, when the sender thread sleeps, wake it.
They never block on segopsd and never raise because of it: an item that
finds the deque full, the client closed, or segopsd known to be down
(for RECONNECT_INTERVAL after a failed connect) is dropped and counted
(``client.dropped``).

The rest of SegOpsClient lives beside it, one job a file, as mixins
that share the state _init_state() sets up:

- _sender.py: the background thread, started by the first event;
- _datagrams.py: sending what is held to segopsd's events socket, a
  datagram at a time (the thread, flush and exit all send through it);
- _handover.py: flush() on the caller's thread, then segopsd's flush op;
- _drops.py: counting drops and telling segopsd and ``on_error``;
- _process_life.py: fork, atexit and multiprocessing.
"""

import collections
import os
import threading
import time

from . import _wire
from ._checks import EVENT_ID_CHARS, EVENT_KEY_SET, EVENT_KEYS, \
    IDENTIFY_KEYS, check_name, from_mapping, invalid
from ._datagrams import DatagramSender
from ._drops import DropCounter, log, log_error
from ._handover import HandOver
from ._process_life import ProcessLife, clients
from ._sender import SenderThread
from ._wire import IDENTIFY, RESET, TRACK
from .errors import FlushTimeoutError, SegOpsError
from .events import Event

# Tunables that live where they are used, importable from here as before.
from ._datagrams import BIG_LINE_TIMEOUT, RECONNECT_INTERVAL  # noqa: F401
from ._drops import ERROR_INTERVAL  # noqa: F401
from ._handover import MAX_FLUSH_MS  # noqa: F401

DEFAULT_SOCKET = '/run/segopsd/events.sock'
CONTROL_SOCKET_NAME = 'segopsd.sock'
# The bound on events held in the client (track() drops beyond it): a
# burst of this many typical events survives while segopsd gets no CPU,
# as libshim's 16 MiB ring does.
DEFAULT_MAX_QUEUE = 100000
DEFAULT_FLUSH_TIMEOUT = 30.0    # segopsd's own default for the flush op
DEFAULT_EXIT_TIMEOUT = 5.0      # the atexit hand-over

_time = time.time
_monotonic = time.monotonic

_key_noted = False


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


class SegOpsClient(SenderThread, DatagramSender, HandOver, DropCounter,
                   ProcessLife):
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
        self._on_error = on_error or log_error
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
        clients.add(self)

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
                raise invalid('track() takes an event or keywords, not both')
            if isinstance(event, Event):
                user_id, event_type = event.user_id, event.event_type
                occurred_at, payload = event.occurred_at, event.payload
                event_id = event.event_id
            elif isinstance(event, dict):
                if not EVENT_KEY_SET.issuperset(event):
                    from_mapping(event, EVENT_KEYS, 'track')  # raises
                get = event.get
                user_id, event_type = get('user_id'), get('event_type')
                occurred_at, payload = get('occurred_at'), get('payload')
                event_id = get('event_id')
            else:
                raise invalid('event must be an Event or a dict, not %s'
                              % type(event).__name__)
        # Up to 64 (32) characters are at most 256 (128) UTF-8 bytes;
        # longer names have their bytes counted by check_name.
        if type(user_id) is not str or not 0 < len(user_id) <= 64 or \
                type(event_type) is not str or not 0 < len(event_type) <= 32:
            check_name('user_id', user_id, 256)
            check_name('event_type', event_type, 128)
        if payload:
            if type(payload) is not dict and not isinstance(payload, dict):
                raise invalid('payload must be a dict')
            payload = payload.copy()    # encoded later: the caller may reuse it
        elif payload is not None and not isinstance(payload, dict):
            raise invalid('payload must be a dict')
        if occurred_at is None:
            occurred_at = _time()
        elif type(occurred_at) is not float or \
                not -1e15 < occurred_at < 1e15:   # NaN and inf fail this
            try:
                occurred_at = _wire.check_time(occurred_at)
            except (TypeError, ValueError) as e:
                raise invalid(str(e)) from None
        if event_id is not None and (type(event_id) is not str or
                                     not 0 < len(event_id) <= 64 or
                                     event_id.strip(EVENT_ID_CHARS)):
            raise invalid('event_id must be 1-64 characters of '
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
                raise invalid('identify() takes a context or keywords, '
                              'not both')
            if isinstance(context, dict):
                user_id, traits = from_mapping(context, IDENTIFY_KEYS,
                                               'identify')
            else:
                user_id = getattr(context, 'user_id', None)
                traits = getattr(context, 'traits', None)
        check_name('user_id', user_id, 256)
        if traits is not None and not isinstance(traits, dict):
            raise invalid('traits must be a dict')
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
        clients.discard(self)
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
