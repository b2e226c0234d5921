"""A strict, scriptable stand-in for the SegOps upstream API (SPEC section 4).

MockUpstream runs an HTTP/1.1 server (keep-alive, optional TLS) on
127.0.0.1 in a background thread of the test process. It answers the two
endpoints segopsd talks to:

  POST /api/events/batch/   -> 200 {"accepted":N,"duplicates":M}
  POST /api/auth/session/   -> 200 {"token":...,"expires_in":...}

and it is deliberately pedantic: every way a request can deviate from the
contract (headers, body shape, field types and limits, timestamp format,
idempotent retries with a changed body, ...) is appended to `violations`
and answered 400, so a test ends with `assertEqual(mock.violations, [])`.
It is not a violation for the daemon to meet a failure the test provoked
(scripted statuses, expired or revoked tokens, a wrong signature).

Test control:
  script([...]) / script_mint([...])  queue answers for the next requests;
      an item is a status int or a dict with keys status, headers, body,
      delay (seconds to wait before answering), hold (a threading.Event:
      the answer waits until the test sets it, so "answered after X" is
      an order the test makes, not a race it hopes to win), drop (close
      the connection without answering) and store (with drop, on an
      events request: the events are stored first, as an upstream that
      committed the batch and then lost the connection). body may be
      a function of the request's headers (an http.client message),
      called when the answer goes out: an upstream that reflects what
      it was sent (the Authorization header) into its answer. Strictness
      checks run first: a request with violations gets 400 and does not
      consume an item. held() counts the requests waiting on a hold;
      stop() sets every hold a request is waiting on.
  set_default(status, ...)  answer every request this way until
      set_default(None); script items still take precedence.
  revoke_tokens()  make every token minted so far answer 401.
  reset()  forget what was recorded (and scripted) so far.
  too_large_over(events=None, body_bytes=None)  answer 413 to every
      events request with more events, or a larger uncompressed body,
      than that (before script items, which it does not consume);
      too_large_over() turns it off.
State (snapshots, safe to read from any thread): events, event_log,
requests, mints, violations, expired_token_uses, conflicts. A request
record is a dict: kind ('events' | 'mint' | 'other'), method, path,
headers (lower-cased names), batch_id, n_events, event_ids, body
(uncompressed bytes), status (int, or 'dropped'), time
(time.monotonic() at arrival), done (when answered or dropped),
violations, stored (the events were stored: a 2xx, or a drop with
store). A mint record: time, wall (time.time() at arrival), user_id,
user_id_sig, status, token.

stop() closes the listening socket and every open connection; start()
after stop() listens on the same port again with the state kept, so a
test can take the upstream "down" and bring it back.
"""

import hashlib
import hmac
import http.server
import json
import re
import secrets
import socket
import ssl
import sys
import threading
import time
import traceback
import zlib

EVENTS_PATH = '/api/events/batch/'
SESSION_PATH = '/api/auth/session/'

MAX_BATCH_EVENTS = 500
MAX_BATCH_BYTES = 1024 * 1024       # uncompressed, SPEC section 4
MAX_READ_BYTES = 8 * 1024 * 1024    # what the mock reads at all
MAX_DELAY = 120.0                   # cap on a scripted delay, seconds

UUID4_RE = re.compile(
    r'^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$')
TIME_RE = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$')
EVENT_ID_RE = re.compile(r'^[A-Za-z0-9._:-]{1,64}$')
SIG_RE = re.compile(r'^[0-9a-f]{64}$')
CONTENT_TYPE_RE = re.compile(r'^application/json(\s*;\s*charset=utf-8)?$',
                             re.IGNORECASE)

EVENT_KEYS = {'event_id', 'user_id', 'event_type', 'occurred_at',
              'payload'}
BATCH_KEYS = {'batch_id', 'sent_at', 'events'}


class _Strict(Exception):
    """A contract violation found while checking one request."""


def _strict_json(raw):
    """Parse bytes as UTF-8 JSON, refusing duplicate keys and NaN."""
    try:
        text = raw.decode('utf-8')
    except UnicodeDecodeError as e:
        raise _Strict('body is not UTF-8: %s' % e) from None

    def pairs(items):
        obj = {}
        for k, v in items:
            if k in obj:
                raise _Strict('duplicate key %r in JSON object' % k)
            obj[k] = v
        return obj

    def constant(name):
        raise _Strict('non-finite number %s in JSON' % name)

    try:
        return json.loads(text, object_pairs_hook=pairs,
                          parse_constant=constant)
    except ValueError as e:
        raise _Strict('body is not valid JSON: %s' % e) from None


def _check_time(value, what):
    if not isinstance(value, str) or not TIME_RE.match(value):
        raise _Strict('%s %r is not YYYY-MM-DDTHH:MM:SS.mmmZ' % (what, value))
    try:
        time.strptime(value[:19], '%Y-%m-%dT%H:%M:%S')
    except ValueError:
        raise _Strict('%s %r is not a real date and time' % (what, value)) \
            from None


def _check_str(value, what, max_bytes):
    if not isinstance(value, str):
        raise _Strict('%s is %s, not a string' % (what, type(value).__name__))
    n = len(value.encode('utf-8'))
    if not 1 <= n <= max_bytes:
        raise _Strict('%s is %d bytes, not 1..%d' % (what, n, max_bytes))


def _check_event(ev, i):
    if not isinstance(ev, dict):
        raise _Strict('events[%d] is not an object' % i)
    if set(ev) != EVENT_KEYS:
        raise _Strict('events[%d] keys %s, want exactly %s' % (
            i, sorted(ev), sorted(EVENT_KEYS)))
    eid = ev['event_id']
    if not isinstance(eid, str) or not EVENT_ID_RE.match(eid):
        raise _Strict('events[%d].event_id %r is not 1-64 of '
                      '[A-Za-z0-9._:-]' % (i, eid))
    _check_str(ev['user_id'], 'events[%d].user_id' % i, 256)
    _check_str(ev['event_type'], 'events[%d].event_type' % i, 128)
    _check_time(ev['occurred_at'], 'events[%d].occurred_at' % i)
    if not isinstance(ev['payload'], dict):
        raise _Strict('events[%d].payload is not an object' % i)


def _check_batch(doc):
    """Validate a parsed batch body; returns its events list."""
    if not isinstance(doc, dict):
        raise _Strict('body is not a JSON object')
    if set(doc) != BATCH_KEYS:
        raise _Strict('batch keys %s, want exactly %s' % (
            sorted(doc), sorted(BATCH_KEYS)))
    if not isinstance(doc['batch_id'], str) or \
            not UUID4_RE.match(doc['batch_id']):
        raise _Strict('batch_id %r is not a lowercase UUID v4'
                      % (doc['batch_id'],))
    _check_time(doc['sent_at'], 'sent_at')
    events = doc['events']
    if not isinstance(events, list) or \
            not 1 <= len(events) <= MAX_BATCH_EVENTS:
        raise _Strict('events must be a list of 1..%d events'
                      % MAX_BATCH_EVENTS)
    seen = set()
    for i, ev in enumerate(events):
        _check_event(ev, i)
        if ev['event_id'] in seen:
            raise _Strict('event_id %r appears twice in one batch'
                          % ev['event_id'])
        seen.add(ev['event_id'])
    return events


def _gunzip(raw):
    """Strictly decode one gzip member, bounded in output size."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(raw, MAX_READ_BYTES + 1)
    except zlib.error as e:
        raise _Strict('Content-Encoding gzip but body does not gunzip: %s'
                      % e) from None
    if len(out) > MAX_READ_BYTES or d.unconsumed_tail:
        raise _Strict('gzip body inflates past %d bytes' % MAX_READ_BYTES)
    if not d.eof:
        raise _Strict('gzip body is truncated')
    if d.unused_data:
        raise _Strict('trailing bytes after the gzip member')
    return out


def _normalize_item(item):
    """A script item as a dict with every key present."""
    if isinstance(item, int):
        item = {'status': item}
    out = {'status': 200, 'headers': {}, 'body': None, 'delay': 0.0,
           'hold': None, 'drop': False, 'store': False}
    unknown = set(item) - set(out)
    if unknown:
        raise ValueError('unknown script item keys %s' % sorted(unknown))
    out.update(item)
    out['delay'] = min(float(out['delay']), MAX_DELAY)
    if out['hold'] is not None and not callable(
            getattr(out['hold'], 'wait', None)):
        raise ValueError('hold must be a threading.Event')
    return out


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'   # keep-alive, as libcurl expects
    timeout = 120                   # idle keep-alive connections close
    server_version = 'mockupstream/1'

    # The server never logs to stderr: tests read the recorded state.
    def log_message(self, format, *args):  # noqa: A002 (stdlib name)
        pass

    def send_error(self, code, message=None, explain=None):
        # Reached only when the request line or headers do not parse.
        self.server.mock._violation('%s: malformed HTTP request: %d %s' % (
            self.client_address, code, message))
        super().send_error(code, message, explain)

    def do_POST(self):
        self.server.mock._handle(self)

    do_GET = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_POST

    def do_HEAD(self):
        self.server.mock._handle(self)

    def reply(self, status, obj=None, headers=None, body=None):
        # Record first: a test that sees the answer must see the state.
        self.server.mock._commit(self)
        if callable(body):
            body = body(self.headers)
        if body is None:
            body = json.dumps(obj if obj is not None else {}).encode()
        elif isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode('utf-8')
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        if self.close_connection:
            self.send_header('Connection', 'close')
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)
        self.wfile.flush()

    def drop(self):
        """Close the connection without an answer (a network failure)."""
        self.server.mock._commit(self)
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, mock, addr):
        self.mock = mock
        super().__init__(addr, _Handler)

    def finish_request(self, request, client_address):
        # An answer goes out as two writes (headers, then body): without
        # TCP_NODELAY the second waits for the client's delayed ACK, and
        # every request took 40 ms longer than the daemon made it take.
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The TLS handshake runs here, in the connection's own thread, so
        # a stalled client cannot block accept().
        conn = request
        if self.mock._ssl_ctx is not None:
            request.settimeout(10)
            try:
                conn = self.mock._ssl_ctx.wrap_socket(request,
                                                      server_side=True)
            except (ssl.SSLError, OSError) as e:
                self.mock._tls_failure(e)
                return
        self.mock._track(conn, True)
        try:
            super().finish_request(conn, client_address)
        finally:
            self.mock._track(conn, False)
            if conn is not request:
                conn.close()

    def handle_error(self, request, client_address):
        # Connection resets by the client are normal (the daemon stops,
        # libcurl gives up on a timeout); anything else is a mock bug.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, socket.timeout, ssl.SSLError,
                            BrokenPipeError)):
            return
        self.mock._violation('mock internal error: %s'
                             % traceback.format_exc())


class MockUpstream:
    """See the module docstring. Thread-safe; use as a context manager or
    call start() and stop()."""

    def __init__(self, api_key='sk_test_0123456789abcdef', compression=None,
                 user_agent=r'^segopsd/\d+\.\d+\.\d+', token_ttl=3600, token_len=32,
                 require_sig=False, sig_secret=None, tls_cert=None,
                 tls_key=None, bad_auth_is_violation=True, port=0):
        if not api_key.startswith(('sk_', 'pk_')):
            raise ValueError('api_key must start with sk_ or pk_')
        if compression not in ('gzip', 'none', None):
            raise ValueError("compression must be 'gzip', 'none' or None")
        if require_sig and sig_secret is None:
            raise ValueError('require_sig needs sig_secret')
        self.api_key = api_key
        self.compression = compression
        self.user_agent_re = re.compile(user_agent)
        self.token_ttl = token_ttl
        self.token_len = token_len
        self.require_sig = require_sig
        self.sig_secret = sig_secret.encode() \
            if isinstance(sig_secret, str) else sig_secret
        # A wrong key is always answered 401; whether it also counts as a
        # violation depends on whether the test configured it on purpose.
        self.bad_auth_is_violation = bad_auth_is_violation

        self._ssl_ctx = None
        if tls_cert:
            self._ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ssl_ctx.load_cert_chain(tls_cert, tls_key)

        self._lock = threading.Lock()
        self._events = {}
        self._event_log = []
        self._requests = []
        self._mints = []
        self._violations = []
        self._conflicts = []
        self._tls_failures = []
        self._batches = {}          # batch_id -> uncompressed body bytes
        self._tokens = {}           # token -> {'expires', 'revoked', ...}
        self._script = []
        self._mint_script = []
        self._default = None        # (item, kinds)
        self._too_large = (None, None)  # (events, body bytes) limits
        self._expired_uses = 0
        self._conns = set()
        self._holding = []          # the hold of each request held now

        self._server = None
        self._thread = None
        self._port = port   # 0: any free port; a fixed one lets a test
                            # replace one mock by another at the same URL
        self._bind()

    # ---- lifecycle -------------------------------------------------------
    def _bind(self):
        self._server = _Server(self, ('127.0.0.1', self._port))
        self._port = self._server.server_address[1]

    def start(self):
        if self._thread is not None:
            return self
        if self._server is None:
            self._bind()    # restart on the same port
        # stop() waits for the serving loop to see the request: a short
        # poll makes that ~5 ms instead of ~25 on average, in every test.
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={'poll_interval': 0.01},
                                        name='mockupstream', daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop listening and cut every open connection. Idempotent."""
        if self._server is None:
            return
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()
        self._server = None
        with self._lock:
            conns = list(self._conns)
            holds = list(self._holding)
        for h in holds:
            h.set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        scheme = 'https' if self._ssl_ctx is not None else 'http'
        return '%s://127.0.0.1:%d' % (scheme, self._port)

    @property
    def port(self):
        return self._port

    # ---- test control ----------------------------------------------------
    def script(self, items):
        """Queue answers for the next event-batch requests."""
        items = [_normalize_item(i) for i in items]
        with self._lock:
            self._script.extend(items)

    def script_mint(self, items):
        """Queue answers for the next session mint requests."""
        items = [_normalize_item(i) for i in items]
        with self._lock:
            self._mint_script.extend(items)

    def set_default(self, status, headers=None, body=None, delay=0.0,
                    drop=False, kinds=('events', 'mint'), hold=None, store=False):
        """Answer every request of the given kinds like this, until
        set_default(None). kinds: 'events' and/or 'mint'."""
        if isinstance(kinds, str):
            kinds = (kinds,)
        with self._lock:
            if status is None:
                self._default = None
            else:
                item = _normalize_item({'status': status,
                                        'headers': headers or {},
                                        'body': body, 'delay': delay,
                                        'hold': hold, 'drop': drop,
                                        'store': store})
                self._default = (item, frozenset(kinds))

    def too_large_over(self, events=None, body_bytes=None):
        """Answer 413 to every events request over either limit (None:
        no limit); with no arguments, stop."""
        with self._lock:
            self._too_large = (events, body_bytes)

    def revoke_tokens(self):
        with self._lock:
            for t in self._tokens.values():
                t['revoked'] = True

    def held(self):
        """How many requests wait on a hold now. A request is held only
        once the mock has read and checked it (which can be tens of
        milliseconds after segopsd counts it in flight), so a test that
        changes the mock's keys waits for this first."""
        with self._lock:
            return len(self._holding)

    def reset(self):
        """Forget every request, event, mint and violation recorded so
        far, and every script and default answer, as if just started
        (tokens stay valid): for tests that share one daemon and mock.
        Nothing may be in flight."""
        with self._lock:
            self._events = {}
            self._event_log = []
            self._requests = []
            self._mints = []
            self._violations = []
            self._conflicts = []
            self._tls_failures = []
            self._batches = {}
            self._script = []
            self._mint_script = []
            self._default = None
            self._too_large = (None, None)
            self._expired_uses = 0

    def pending_script(self):
        with self._lock:
            return len(self._script), len(self._mint_script)

    # ---- state snapshots -------------------------------------------------
    @property
    def events(self):
        """event_id -> event (the first one received), accepted batches."""
        with self._lock:
            return dict(self._events)

    @property
    def event_log(self):
        """Every event of every 2xx-answered batch, duplicates included."""
        with self._lock:
            return list(self._event_log)

    @property
    def requests(self):
        with self._lock:
            return [dict(r) for r in self._requests]

    @property
    def batch_requests(self):
        return [r for r in self.requests if r['kind'] == 'events']

    @property
    def mints(self):
        with self._lock:
            return [dict(m) for m in self._mints]

    @property
    def violations(self):
        with self._lock:
            return list(self._violations)

    @property
    def conflicts(self):
        """An event_id re-sent with different content (not a violation:
        a client may legitimately reuse its own ids)."""
        with self._lock:
            return list(self._conflicts)

    @property
    def tls_failures(self):
        with self._lock:
            return list(self._tls_failures)

    @property
    def expired_token_uses(self):
        """Event requests that carried an expired or revoked token."""
        with self._lock:
            return self._expired_uses

    def wait_until(self, predicate, timeout=10.0, interval=0.02):
        """Poll predicate() until true or timeout; returns its last value."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value or time.monotonic() >= deadline:
                return value
            time.sleep(interval)

    def wait_for_events(self, n, timeout=10.0):
        """True once at least n distinct events were accepted."""
        return self.wait_until(lambda: len(self._events) >= n, timeout)

    def wait_for_requests(self, n, timeout=10.0, kind='events'):
        def enough():
            with self._lock:
                return sum(1 for r in self._requests
                           if r['kind'] == kind) >= n
        return self.wait_until(enough, timeout)

    def wait_for_mints(self, n, timeout=10.0):
        return self.wait_until(lambda: len(self._mints) >= n, timeout)

    # ---- internals -------------------------------------------------------
    def _violation(self, text):
        with self._lock:
            self._violations.append(text)

    def _tls_failure(self, exc):
        with self._lock:
            self._tls_failures.append(repr(exc))

    def _track(self, conn, add):
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _take_item(self, kind):
        """Next scripted or default answer for kind, or None."""
        with self._lock:
            queue = self._script if kind == 'events' else self._mint_script
            if queue:
                return queue.pop(0)
            if self._default is not None and kind in self._default[1]:
                return self._default[0]
        return None

    def _handle(self, h):
        rec = {'kind': 'other', 'method': h.command, 'path': h.path,
               'headers': {k.lower(): v for k, v in h.headers.items()},
               'batch_id': None, 'n_events': 0, 'event_ids': [],
               'body': None, 'status': None, 'time': time.monotonic(),
               'wall': time.time(), 'stored': False}
        problems = []
        h.record = (rec, problems)
        try:
            body = self._read_body(h, problems)
            if body is None:
                rec['status'] = 400
                h.close_connection = True
                h.reply(400, {'error': '; '.join(problems)})
            elif h.path == EVENTS_PATH:
                rec['kind'] = 'events'
                self._handle_events(h, body, rec, problems)
            elif h.path == SESSION_PATH:
                rec['kind'] = 'mint'
                self._handle_mint(h, body, rec, problems)
            else:
                problems.append('unknown endpoint %s %s' % (h.command,
                                                           h.path))
                rec['status'] = 404
                h.reply(404, {'error': 'not found'})
        finally:
            self._commit(h)   # no-op unless no answer went out

    def _commit(self, h):
        """Publish a request's record and violations, once."""
        if getattr(h, 'record', None) is None:
            return
        rec, problems = h.record
        h.record = None
        rec['violations'] = problems
        # When the answer went out (or the request was dropped): with
        # 'time' (arrival) it gives each request's span, so a test can
        # count how many were in flight at once.
        rec['done'] = time.monotonic()
        with self._lock:
            self._requests.append(rec)
            self._violations.extend('%s %s: %s' % (h.command, h.path, p)
                                    for p in problems)

    def _read_body(self, h, problems):
        """The raw body by Content-Length, or None after a violation."""
        if h.headers.get('Transfer-Encoding') is not None:
            problems.append('Transfer-Encoding %r: bodies must use '
                            'Content-Length' % h.headers['Transfer-Encoding'])
            return None
        lengths = h.headers.get_all('Content-Length') or []
        if not lengths:
            if h.command == 'POST':
                problems.append('POST without Content-Length')
                return None
            return b''
        if len(lengths) != 1 or not lengths[0].strip().isdigit():
            problems.append('bad Content-Length %r' % lengths)
            return None
        n = int(lengths[0])
        if n > MAX_READ_BYTES:
            problems.append('body of %d bytes exceeds %d' % (n,
                                                             MAX_READ_BYTES))
            return None
        body = h.rfile.read(n)
        if len(body) != n:
            raise ConnectionError('client closed mid-body')
        return body

    def _check_single_headers(self, h, names, problems):
        for name in names:
            if len(h.headers.get_all(name) or []) > 1:
                problems.append('header %s sent more than once' % name)

    def _check_common(self, h, problems):
        """Checks shared by both endpoints: method, type, agent."""
        self._check_single_headers(
            h, ('Content-Type', 'User-Agent', 'Authorization',
                'Content-Encoding', 'Idempotency-Key'), problems)
        if h.command != 'POST':
            problems.append('method %s, want POST' % h.command)
        ctype = h.headers.get('Content-Type', '')
        if not CONTENT_TYPE_RE.match(ctype.strip()):
            problems.append('Content-Type %r, want application/json'
                            % ctype)
        agent = h.headers.get('User-Agent', '')
        if not self.user_agent_re.search(agent):
            problems.append('User-Agent %r does not match %r'
                            % (agent, self.user_agent_re.pattern))

    def _bearer(self, h, problems):
        auth = h.headers.get('Authorization')
        if auth is None:
            problems.append('no Authorization header')
            return None
        m = re.match(r'^Bearer (\S+)$', auth)
        if not m:
            problems.append('Authorization is not "Bearer <credential>"')
            return None
        return m.group(1)

    def _answer_scripted(self, h, rec, item, events=None):
        """Apply a script item; returns True when the answer is done.
        events: an events request's events, stored before a drop when
        the item says store."""
        if item['delay']:
            time.sleep(item['delay'])
        hold = item['hold']
        if hold is not None:
            with self._lock:
                self._holding.append(hold)
            try:
                hold.wait(MAX_DELAY)
            finally:
                with self._lock:
                    self._holding.remove(hold)
        if item['drop']:
            if item['store'] and events is not None:
                self._accept(events)
                rec['stored'] = True
            rec['status'] = 'dropped'
            h.drop()
            return True
        return False

    # ---- POST /api/events/batch/ ----------------------------------------
    def _handle_events(self, h, raw, rec, problems):
        self._check_common(h, problems)
        key = h.headers.get('Idempotency-Key')
        token = self._bearer(h, problems)
        body = self._decode_events_body(h, raw, problems)
        rec['body'] = body
        doc = events = None
        if body is not None:
            try:
                if len(body) > MAX_BATCH_BYTES:
                    raise _Strict('body is %d bytes uncompressed, over %d'
                                  % (len(body), MAX_BATCH_BYTES))
                doc = _strict_json(body)
                events = _check_batch(doc)
            except _Strict as e:
                problems.append(str(e))
                doc = events = None
        if isinstance(doc, dict) and isinstance(doc.get('batch_id'), str):
            rec['batch_id'] = doc['batch_id']
        if events is not None:
            rec['n_events'] = len(events)
            rec['event_ids'] = [e['event_id'] for e in events]
            if key is None:
                problems.append('no Idempotency-Key header')
            elif key != doc['batch_id']:
                problems.append('Idempotency-Key %r != batch_id %r'
                                % (key, doc['batch_id']))
            with self._lock:
                first = self._batches.setdefault(doc['batch_id'], body)
            if first != body:
                problems.append('batch_id %s resent with a different body'
                                % doc['batch_id'])

        # A bad credential is answered 401 like the real API would, so the
        # daemon's 401 handling runs; it is still listed as a violation
        # when the test did not configure it on purpose.
        format_ok = not problems
        auth_status = None
        if token is not None:
            auth_status = self._check_event_auth(token, problems)
        if not format_ok or (problems and auth_status is None):
            rec['status'] = 400
            h.reply(400, {'error': '; '.join(problems)})
            return
        if auth_status is not None:
            rec['status'] = auth_status
            h.reply(auth_status, {'error': 'invalid or expired credentials'})
            return

        with self._lock:
            max_events, max_bytes = self._too_large
        if (max_events is not None and len(events) > max_events) or \
                (max_bytes is not None and len(body) > max_bytes):
            rec['status'] = 413
            h.reply(413, {'error': 'too large'})
            return
        item = self._take_item('events')
        if item is not None:
            if self._answer_scripted(h, rec, item, events):
                return
            rec['status'] = item['status']
            if 200 <= item['status'] < 300:
                rec['stored'] = True
                result = self._accept(events)
                h.reply(item['status'], result, item['headers'],
                        item['body'])
            else:
                h.reply(item['status'], {'error': 'scripted'},
                        item['headers'], item['body'])
            return
        rec['status'] = 200
        rec['stored'] = True
        h.reply(200, self._accept(events))

    def _decode_events_body(self, h, raw, problems):
        enc = h.headers.get('Content-Encoding')
        if enc is not None and enc.strip().lower() != 'gzip':
            problems.append('Content-Encoding %r is not gzip' % enc)
            return None
        if self.compression == 'gzip' and enc is None:
            problems.append('compression gzip expected, no Content-Encoding')
            return None
        if self.compression == 'none' and enc is not None:
            problems.append('compression none expected, got '
                            'Content-Encoding %r' % enc)
            return None
        if enc is None:
            if raw[:2] == b'\x1f\x8b':
                problems.append('gzip body without Content-Encoding')
                return None
            return raw
        try:
            return _gunzip(raw)
        except _Strict as e:
            problems.append(str(e))
            return None

    def _check_event_auth(self, cred, problems):
        """None if cred may send events, else the status to answer."""
        if self.api_key.startswith('sk_'):
            if cred == self.api_key:
                return None
            if self.bad_auth_is_violation:
                problems.append('Authorization carries the wrong key')
            return 401
        if cred.startswith(('pk_', 'sk_')):
            problems.append('events sent with a raw key, not a session '
                            'token')
            return 401
        with self._lock:
            tok = self._tokens.get(cred)
            if tok is None:
                problems.append('events sent with a token never minted')
                return 401
            if tok['revoked'] or time.monotonic() >= tok['expires']:
                self._expired_uses += 1
                return 401
        return None

    def _accept(self, events):
        new = dup = 0
        with self._lock:
            for ev in events:
                self._event_log.append(ev)
                old = self._events.get(ev['event_id'])
                if old is None:
                    self._events[ev['event_id']] = ev
                    new += 1
                else:
                    dup += 1
                    if old != ev:
                        self._conflicts.append(ev['event_id'])
        return {'accepted': new, 'duplicates': dup}

    # ---- POST /api/auth/session/ -----------------------------------------
    def _handle_mint(self, h, raw, rec, problems):
        self._check_common(h, problems)
        if h.headers.get('Content-Encoding') is not None:
            problems.append('mint request has Content-Encoding')
        if h.headers.get('Idempotency-Key') is not None:
            problems.append('mint request has Idempotency-Key')
        key = self._bearer(h, problems)
        mint = {'time': time.monotonic(), 'wall': rec['wall'],
                'user_id': None, 'user_id_sig': None, 'status': None,
                'token': None}
        rec['body'] = raw
        doc = None
        try:
            doc = _strict_json(raw)
            if not isinstance(doc, dict) or \
                    set(doc) not in ({'user_id'}, {'user_id', 'user_id_sig'}):
                raise _Strict('mint body must be exactly {"user_id"} or '
                              '{"user_id","user_id_sig"}')
            _check_str(doc['user_id'], 'user_id', 256)
            if 'user_id_sig' in doc and \
                    not isinstance(doc['user_id_sig'], str):
                raise _Strict('user_id_sig is not a string')
            mint['user_id'] = doc['user_id']
            mint['user_id_sig'] = doc.get('user_id_sig')
        except _Strict as e:
            problems.append(str(e))
        if key is not None and not key.startswith('pk_'):
            problems.append('mint with a non-pk_ credential')

        status = self._mint_status(key, doc, problems)
        if status is not None:
            error = '; '.join(problems) or 'signature missing or invalid'
            self._finish_mint(h, rec, mint, status, {'error': error})
            return
        item = self._take_item('mint') or _normalize_item(200)
        if self._answer_scripted(h, rec, item):
            mint['status'] = rec['status']
            self._record_mint(mint)
            return
        if not 200 <= item['status'] < 300:
            self._finish_mint(h, rec, mint, item['status'],
                              {'error': 'scripted'}, item)
            return
        ttl = self.token_ttl
        token = 'tok_' + secrets.token_urlsafe(self.token_len)[:self.token_len]
        with self._lock:
            self._tokens[token] = {'expires': time.monotonic() + ttl,
                                   'revoked': False,
                                   'user_id': doc['user_id']}
        mint['token'] = token
        self._finish_mint(h, rec, mint, item['status'],
                          {'token': token, 'expires_in': ttl}, item)

    def _mint_status(self, key, doc, problems):
        """The refusal status for a mint request, or None to go ahead."""
        if problems:
            return 400
        if not self.api_key.startswith('pk_'):
            problems.append('session mint although the key is sk_')
            return 400
        if key != self.api_key:
            if self.bad_auth_is_violation:
                problems.append('mint with the wrong pk_ key')
            return 401
        if not self._sig_ok(doc):
            return 403
        return None

    def _finish_mint(self, h, rec, mint, status, obj, item=None):
        mint['status'] = rec['status'] = status
        self._record_mint(mint)
        if item is not None:
            h.reply(status, obj, item['headers'], item['body'])
        else:
            h.reply(status, obj)

    def _sig_ok(self, doc):
        sig = doc.get('user_id_sig')
        if sig is None:
            return not self.require_sig
        if self.sig_secret is None:
            return True     # the server does not check signatures
        want = hmac.new(self.sig_secret, doc['user_id'].encode('utf-8'),
                        hashlib.sha256).hexdigest()
        return bool(SIG_RE.match(sig)) and hmac.compare_digest(sig, want)

    def _record_mint(self, mint):
        with self._lock:
            self._mints.append(mint)


def sign_user_id(secret, user_id):
    """The user_id_sig SPEC section 4 defines: lowercase hex HMAC-SHA256."""
    if isinstance(secret, str):
        secret = secret.encode('utf-8')
    return hmac.new(secret, user_id.encode('utf-8'),
                    hashlib.sha256).hexdigest()
