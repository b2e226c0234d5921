"""Helpers for integration tests that run the real segopsd.

Daemon writes a config file into a private temporary directory, starts
`$SEGOPSD --config FILE` with its output captured to files there, and
talks to it exactly like real clients do: AF_UNIX datagrams, a stream
connection to the control socket, and the real `socat` command lines of
SPEC section 2. It only ever signals the one process it started.

SegopsTestCase gives each test a fresh temporary directory, a started
MockUpstream and cleanup of both; start_daemon() makes a Daemon whose
cleanup is registered too. Set SEGOPS_KEEP_TMP=1 to keep the directories
(config, daemon logs) for a post-mortem.

Environment (set by meson): SEGOPSD = path of the segopsd binary,
SEGOPSCTL = path of segopsctl (optional).

Each test file ends with harness.main(): unittest.main, plus
`--shard K/N`, which runs every N-th test (sorted by id) from the K-th
on, so meson can run one long file as N processes in parallel and every
test still runs in exactly one of them.
"""

import atexit
import ctypes
import fcntl
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

from mockupstream import MockUpstream, sign_user_id  # noqa: F401 re-export
import tlsca

START_TIMEOUT = 10.0        # seconds until the control socket must answer
# What a retry may take beyond its backoff delay: the daemon reading the
# failed answer, its timer, sending again, the mock accepting it. About
# 50 ms here, 0.1 s at worst with an ASan build next to two busy CPU
# hogs on two cores; ten times the usual figure for a loaded machine.
BACKOFF_SLACK = 0.5
DEFAULT_KEY = 'sk_test_0123456789abcdef'

# Test-friendly settings: short timers so tests run in seconds. Keys map
# to [section] key = value; a value of None leaves the key out.
# stop_timeout is short because every test's cleanup stops its daemon,
# often with events the test made undeliverable on purpose: that stop
# then waits the whole stop_timeout. Tests about delivery during a stop
# set their own.
DEFAULT_CONFIG = {
    'upstream': {
        'timeout': '5',
        'compression': 'gzip',
        'max_in_flight': '4',
        'stop_timeout': '1',
        'backoff_initial': '0.1',
        'backoff_max': '1',
        'retry_after_max': '300',
    },
    'batch': {
        'batch_size': '20',
        'flush_interval': '0.2',
        'max_batch_bytes': '1048576',
    },
    'buffer': {
        'max_memory': '64M',
        'when_full': 'drop_newest',
    },
    'listen': {
        'socket_mode': '0600',
        'max_message_bytes': '65536',
    },
    'log': {
        'level': 'debug',
    },
}

# Variables a developer's shell or systemd could leak into the daemon and
# change what it does (key lookup, readiness, socket activation).
_SCRUB_ENV = ('CREDENTIALS_DIRECTORY', 'NOTIFY_SOCKET', 'LISTEN_FDS',
              'LISTEN_PID', 'LISTEN_FDNAMES', 'WATCHDOG_USEC',
              'WATCHDOG_PID', 'SEGOPS_SOCKET', 'SEGOPS_CONTROL_SOCKET')


def segopsd_path():
    path = os.environ.get('SEGOPSD')
    if not path:
        raise unittest.SkipTest('SEGOPSD is not set (run through meson test)')
    # The daemon runs with its temp dir as cwd: a relative path (as in
    # SEGOPSD=build/daemon/segopsd) must be resolved here, not there.
    return os.path.abspath(path)


def make_event(i, user='u1', event_type='test', payload=None, **fields):
    """A track message with a unique, predictable event_id for index i."""
    ev = {'event_id': event_id(i), 'user_id': user, 'event_type': event_type,
          'payload': {'i': i} if payload is None else payload}
    ev.update(fields)
    return ev


def event_id(i):
    return 'evt-%06d' % i


def send_stream(d, messages, timeout=15.0):
    """Send messages on one control connection, then a ping; return the
    replies once the ping is answered, i.e. every message was accepted
    (SPEC section 2). Raises AssertionError when any reply is not ok."""
    replies = d.control(list(messages) + [{'op': 'ping'}], timeout=timeout)
    errors = [r for r in replies if r.get('ok') is not True]
    if errors:
        raise AssertionError('messages rejected: %r' % errors[:5])
    return replies


def nonzero(counts):
    """The counters of a stats object (rejected, dropped) that are not 0."""
    return {k: v for k, v in counts.items() if v}


def ndjson(messages):
    """Encode a list of dicts (or raw strings) as NDJSON text."""
    return ''.join((m if isinstance(m, str) else json.dumps(m)) + '\n'
                   for m in messages)


def parse_lines(text):
    """Parse reply text (one JSON object per line) into a list of dicts."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _die_with_parent():
    # In the child, before exec: if the test runner dies, so does the
    # daemon (PR_SET_PDEATHSIG = 1), instead of lingering forever.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Daemon:
    """One segopsd process with its own config, sockets and logs."""

    def __init__(self, tmpdir, upstream_url, key=DEFAULT_KEY, config=None,
                 env=None, **overrides):
        """overrides: section__key=value, e.g. batch__batch_size=5; config:
        a dict {'section': {'key': value}} applied the same way. A value
        of None removes the key. key=None writes no key file."""
        self.tmpdir = tmpdir
        self.events_socket = os.path.join(tmpdir, 'events.sock')
        self.control_socket = os.path.join(tmpdir, 'ctl.sock')
        self.config_path = os.path.join(tmpdir, 'segopsd.conf')
        self.stdout_path = os.path.join(tmpdir, 'segopsd.stdout')
        self.stderr_path = os.path.join(tmpdir, 'segopsd.stderr')
        self.key_path = os.path.join(tmpdir, 'api_key')
        self.proc = None
        self._extra_env = dict(env or {})
        self._outputs = []

        cfg = {s: dict(kv) for s, kv in DEFAULT_CONFIG.items()}
        cfg['upstream']['api_url'] = upstream_url
        cfg['listen']['events_socket'] = self.events_socket
        cfg['listen']['control_socket'] = self.control_socket
        if key is not None:
            self.write_key(key)
            cfg['upstream']['api_key_file'] = self.key_path
        for section, kv in (config or {}).items():
            cfg.setdefault(section, {}).update(kv)
        for name, value in overrides.items():
            section, sep, k = name.partition('__')
            if not sep or not k:
                raise ValueError('override %r is not section__key' % name)
            cfg.setdefault(section, {})[k] = value
        self.config = cfg
        self.write_config()

    # ---- files -----------------------------------------------------------
    def write_key(self, key):
        fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                     0o600)
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            f.write(key + '\n')
        os.chmod(self.key_path, 0o600)

    def write_config(self):
        """(Re)write the INI file from self.config."""
        lines = []
        for section, kv in self.config.items():
            items = [(k, v) for k, v in kv.items() if v is not None]
            if not items:
                continue
            lines.append('[%s]' % section)
            for k, v in items:
                lines.append('%s = %s' % (k, v))
            lines.append('')
        with open(self.config_path, 'w', encoding='utf-8') as f:
            f.write('\n'.join(lines))

    # ---- process ---------------------------------------------------------
    def start(self, wait=True, args=(), listen_fds=()):
        """Start the daemon; with wait, block until ping answers.
        listen_fds: sockets handed over as systemd does (fds 3, 4, ...
        with LISTEN_FDS and LISTEN_PID set to the daemon's own pid)."""
        if self.running():
            raise RuntimeError('daemon already running')
        env = {k: v for k, v in os.environ.items() if k not in _SCRUB_ENV}
        env.update(self._extra_env)
        argv = [segopsd_path(), '--config', self.config_path, *args]
        preexec = _die_with_parent
        pass_fds = ()
        if listen_fds:
            fds = [f.fileno() for f in listen_fds]
            pass_fds = tuple(range(3, 3 + len(fds)))
            env['LISTEN_FDS'] = str(len(fds))
            # LISTEN_PID must be the daemon's pid: a shell that execs it
            # keeps its own.
            argv = ['/bin/sh', '-c', 'LISTEN_PID=$$ exec "$0" "$@"', *argv]

            def preexec():
                _die_with_parent()
                # Out of the way first, then to 3, 4, ...: a source may
                # itself sit on one of the targets.
                high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
                for i, fd in enumerate(high):
                    os.dup2(fd, 3 + i)
                    os.close(fd)
        # Each start appends to the same log files, so a restart keeps
        # the earlier run's output for the test to read.
        out = open(self.stdout_path, 'ab')
        err = open(self.stderr_path, 'ab')
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                env=env, cwd=self.tmpdir, preexec_fn=preexec,
                pass_fds=pass_fds)
        finally:
            out.close()
            err.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('segopsd exited with %d during start:\n%s'
                                   % (self.proc.returncode,
                                      self.stderr_tail()))
            try:
                reply = self.control({'op': 'ping'}, timeout=1.0)
                if reply and reply[0].get('ok') is True:
                    return reply[0]
                last = reply
            except (OSError, ValueError, TimeoutError) as e:
                last = e
            # segopsd is up in a few tens of milliseconds: a short poll
            # saves most of a poll interval on each of hundreds of starts.
            time.sleep(0.01)
        raise TimeoutError('segopsd did not answer ping within %.0f s '
                           '(last: %r):\n%s' % (timeout, last,
                                                self.stderr_tail()))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def send_signal(self, sig):
        if self.running():
            self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=30.0):
        """Signal the daemon and wait; returns its exit code. On timeout
        it is killed and TimeoutError raised."""
        if self.proc is None:
            raise RuntimeError('daemon was never started')
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise TimeoutError('segopsd did not exit within %.1f s of '
                                   'signal %d:\n%s' % (timeout, sig,
                                                       self.stderr_tail()))
        return self.proc.returncode

    def kill(self):
        """SIGKILL (a crash) and reap; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        return self.proc.returncode

    def cleanup(self):
        """For tearDown: stop gently if still running, then hard."""
        if self.running():
            try:
                self.stop(timeout=10)
            except TimeoutError:
                pass

    # ---- clients -----------------------------------------------------------
    def connect_control(self, timeout=10.0):
        """A raw connected stream socket to the control socket."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.control_socket)
        except OSError:
            s.close()
            raise
        return s

    def control(self, msgs, timeout=10.0, expect=None):
        """Send one op/message (dict), a list of dicts/strings, or raw
        NDJSON text over a fresh control connection, half-close it and
        return the parsed replies.

        Reads until the daemon closes the connection or, when expect is
        given, until that many replies arrived. TimeoutError (with what
        did arrive) when the deadline passes first."""
        if isinstance(msgs, dict):
            data = ndjson([msgs])
            if expect is None:
                expect = 1
        elif isinstance(msgs, str):
            data = msgs
        else:
            data = ndjson(msgs)
        deadline = time.monotonic() + timeout
        with self.connect_control(timeout) as s:
            s.sendall(data.encode('utf-8'))
            s.shutdown(socket.SHUT_WR)
            buf = b''
            while expect is None or buf.count(b'\n') < expect:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError('control: no complete answer in '
                                       '%.1f s, got %r' % (timeout, buf))
                s.settimeout(left)
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    break
                buf += chunk
        lines = buf.decode('utf-8').splitlines()
        if expect is not None:
            lines = lines[:expect]
        return [json.loads(line) for line in lines if line.strip()]

    def ping(self, timeout=10.0):
        return self.control({'op': 'ping'}, timeout)[0]

    def stats(self, timeout=10.0):
        return self.control({'op': 'stats'}, timeout)[0]

    def flush(self, timeout_ms=10000):
        return self.control({'op': 'flush', 'timeout_ms': timeout_ms},
                            timeout=timeout_ms / 1000.0 + 10)[0]

    def wait_for_stats(self, predicate, timeout=10.0, interval=0.02):
        """Poll stats until predicate(stats) is true or timeout passes;
        returns the last stats either way (assert on it)."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.stats()
            if predicate(st) or time.monotonic() >= deadline:
                return st
            time.sleep(interval)

    def send_dgram(self, data):
        """Send one datagram (bytes, or text encoded as UTF-8)."""
        if isinstance(data, str):
            data = data.encode('utf-8')
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(data, self.events_socket)

    def send_events_dgram(self, messages):
        """Send messages in as few datagrams as fit max_message_bytes each
        (the events socket holds only a few datagrams at a time)."""
        limit = int(self.config['listen'].get('max_message_bytes') or 65536)
        chunk = ''
        for line in ndjson(messages).splitlines(keepends=True):
            if chunk and len((chunk + line).encode('utf-8')) > limit:
                self.send_dgram(chunk)
                chunk = ''
            chunk += line
        if chunk:
            self.send_dgram(chunk)

    def socat_dgram(self, text, timeout=10.0, check=True):
        """`socat -u - UNIX-SENDTO:events.sock` fed text; returns stdout."""
        return _run(['socat', '-u', '-', 'UNIX-SENDTO:' + self.events_socket],
                    text, timeout, check)

    def socat_stream(self, text, timeout=10.0, check=True):
        """`socat - UNIX-CONNECT:ctl.sock` fed text; returns stdout."""
        return _run(['socat', '-', 'UNIX-CONNECT:' + self.control_socket],
                    text, timeout, check)

    # ---- logs ------------------------------------------------------------
    def stderr_text(self):
        return _read_text(self.stderr_path)

    def stdout_text(self):
        return _read_text(self.stdout_path)

    log_text = stderr_text

    def stderr_tail(self, n=40):
        return '\n'.join(self.stderr_text().splitlines()[-n:])

    def wait_for_log(self, pattern, timeout=10.0):
        """Poll stderr until regex pattern matches; returns the match or
        None on timeout."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.stderr_text())
            if m or time.monotonic() >= deadline:
                return m
            time.sleep(0.02)


def _read_text(path):
    try:
        with open(path, 'rb') as f:
            return f.read().decode('utf-8', 'replace')
    except FileNotFoundError:
        return ''


def _run(argv, text, timeout, check):
    proc = subprocess.run(argv, input=text.encode('utf-8'),
                          capture_output=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError('%s exited %d: %s' % (
            ' '.join(argv), proc.returncode,
            proc.stderr.decode('utf-8', 'replace').strip()))
    return proc.stdout.decode('utf-8', 'replace')


_shared_ca = {}


def shared_ca():
    """(ca_file, server_cert, server_key): one throwaway CA and server
    certificate per test process, made on first use and removed at exit.
    Tests only read them (the daemon verifies against ca_file, the mock
    serves the certificate), so sharing them is safe."""
    if not _shared_ca:
        d = tempfile.mkdtemp(prefix='segops-ca-')
        if not os.environ.get('SEGOPS_KEEP_TMP'):
            atexit.register(shutil.rmtree, d, True)
        _shared_ca['files'] = tlsca.make_ca(d)
    return _shared_ca['files']


def _flatten(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from _flatten(t)
        else:
            yield t


def main():
    """unittest.main(verbosity=2) for a test file, plus --shard K/N (see
    the module docstring)."""
    argv = list(sys.argv)
    if '--shard' not in argv:
        unittest.main(module='__main__', argv=argv, verbosity=2)
        return
    i = argv.index('--shard')
    k, n = (int(x) for x in argv[i + 1].split('/'))
    del argv[i:i + 2]
    if not 1 <= k <= n or len(argv) > 1:
        sys.exit('usage: %s [--shard K/N]' % argv[0])
    loader = unittest.defaultTestLoader
    tests = sorted(_flatten(loader.loadTestsFromModule(
        sys.modules['__main__'])), key=lambda t: t.id())
    # Every N-th by id: a long class is spread over the shards, and the
    # tests a shard gets from a class still run together (its class
    # fixture, if any, once per shard).
    suite = unittest.TestSuite(tests[k - 1::n])
    print('shard %d/%d: %d of %d tests' % (k, n, suite.countTestCases(),
                                          len(tests)), file=sys.stderr)
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    sys.exit(0 if result.wasSuccessful() else 1)


def sanitizer_report(d):
    """The start of a sanitizer report in d's stderr, or None."""
    text = d.stderr_text()
    m = re.search(r'ERROR: (Address|Leak|Undefined)Sanitizer|'
                  r'runtime error: ', text)
    if not m:
        return None
    start = max(0, m.start() - 200)
    return 'sanitizer report in segopsd stderr:\n' + text[start:start + 4000]


class SegopsTestCase(unittest.TestCase):
    """A temp dir, a started MockUpstream (self.upstream) and cleanup.

    Class attributes to customise: upstream_options (kwargs for
    MockUpstream), api_key, tls (serve HTTPS with a throwaway CA that the
    daemon is told about through ca_file: self.ca_file, self.tls_cert,
    self.tls_key, shared by the tests of a process)."""

    upstream_options = {}
    api_key = DEFAULT_KEY
    tls = False

    def setUp(self):
        super().setUp()
        self.tmpdir = tempfile.mkdtemp(prefix='segops-')
        self.addCleanup(self._remove_tmpdir)
        self.ca_file = self.tls_cert = self.tls_key = None
        opts = dict(self.upstream_options)
        opts.setdefault('api_key', self.api_key)
        if self.tls:
            self.ca_file, self.tls_cert, self.tls_key = shared_ca()
            opts.update(tls_cert=self.tls_cert, tls_key=self.tls_key)
        self.upstream = MockUpstream(**opts).start()
        self.addCleanup(self.upstream.stop)
        self.daemons = []

    def _remove_tmpdir(self):
        if os.environ.get('SEGOPS_KEEP_TMP'):
            print('kept %s' % self.tmpdir)
            return
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def make_daemon(self, key=None, url=None, env=None, **overrides):
        """A configured, not yet started Daemon; cleanup is registered.
        env: variables for the daemon's environment."""
        if self.ca_file is not None:
            overrides.setdefault('upstream__ca_file', self.ca_file)
        # A second daemon in one test gets its own directory: socket
        # paths must not collide.
        ddir = self.tmpdir
        if self.daemons:
            ddir = os.path.join(self.tmpdir, 'd%d' % (len(self.daemons) + 1))
            os.makedirs(ddir)
        d = Daemon(ddir, url or self.upstream.url,
                   key if key is not None else self.api_key, env=env,
                   **overrides)
        self.daemons.append(d)
        # Cleanups run last-in first-out: stop the daemon, then look for
        # a sanitizer report in what it wrote (an ASan build exits 0 from
        # some reports, and most tests never look at the exit code).
        self.addCleanup(self._check_sanitizer, d)
        self.addCleanup(d.cleanup)
        return d

    def _check_sanitizer(self, d):
        report = sanitizer_report(d)
        if report:
            self.fail(report)

    def small_tmpfs(self, size):
        """A real filesystem of size (e.g. '256k') that fills up, mounted
        at TMPDIR/fs for this test and unmounted after; skips the test,
        with the reason, where it cannot be mounted (not root). Returns
        its path."""
        fs = os.path.join(self.tmpdir, 'fs')
        os.makedirs(fs)
        if os.geteuid() != 0:
            self.skipTest('mounting a small tmpfs needs root')
        r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%s,mode=0700' % size,
                            'tmpfs', fs], capture_output=True, text=True, check=False)
        if r.returncode != 0:
            self.skipTest('cannot mount a tmpfs here: ' + r.stderr.strip())
        self.addCleanup(subprocess.run, ['umount', '-l', fs], check=False)
        return fs

    def start_daemon(self, key=None, url=None, **overrides):
        return self.make_daemon(key, url, **overrides).start()

    def assertStaysTrue(self, predicate, duration, msg=None, interval=0.02):
        """For a property that is about something NOT happening ("nothing
        is sent before the batch is full"): predicate() is checked all
        through a window of duration seconds and the test fails the
        moment it turns false. The window is a few periods of the timer
        whose firing would break the property, not a wait for a state."""
        deadline = time.monotonic() + duration
        while True:
            ok = predicate()
            if not ok:
                self.fail(msg or 'condition broke within its %.2f s window'
                          % duration)
            if time.monotonic() >= deadline:
                return
            time.sleep(interval)

    def assertBackoffSpacing(self, attempts, initial, maximum,
                             slack=BACKOFF_SLACK):
        """attempts: the mock's records of one batch's (or the session
        mint's) consecutive attempts, each but the last failed without a
        Retry-After. SPEC 4: the delay after the n-th failure is uniform
        in [0, min(maximum, initial * 2^(n-1))). Each gap (answer of one
        attempt to arrival of the next) must stay under its bound plus
        slack; and the gaps together must not be so short that full
        jitter explains them with a chance under one in a million (a
        daemon that resends at once fails that). Returns the gaps."""
        self.assertGreaterEqual(len(attempts), 2, 'no retry to check')
        gaps, caps = [], []
        for n, (a, b) in enumerate(zip(attempts, attempts[1:]), 1):
            cap = min(maximum, initial * 2 ** (n - 1))
            gap = b['time'] - a['done']
            gaps.append(gap)
            caps.append(cap)
            self.assertLessEqual(
                gap, cap + slack, 'retry %d came %.3f s after the failure, '
                'over its backoff bound %.3f s (+%.1f s slack); gaps %s'
                % (n, gap, cap, slack, ['%.3f' % g for g in gaps]))
            self.assertGreaterEqual(gap, 0)
        # P(sum of k independent U(0, c_i) < t) <= t^k / (k! prod c_i).
        k = len(caps)
        bound = (1e-6 * math.factorial(k) * math.prod(caps)) ** (1.0 / k)
        self.assertGreaterEqual(
            sum(gaps), bound, '%d retries within %.3f s: no backoff (gaps '
            '%s)' % (k, sum(gaps), ['%.3f' % g for g in gaps]))
        return gaps

    def assertNoViolations(self, upstream=None):
        up = upstream or self.upstream
        v = up.violations
        self.assertEqual(v, [], 'upstream contract violations:\n  ' +
                         '\n  '.join(v))

    def assertEventsDelivered(self, ids, timeout=10.0, upstream=None):
        """Every id in ids reaches the upstream within timeout."""
        up = upstream or self.upstream
        want = set(ids)
        up.wait_until(lambda: want <= set(up.events), timeout)
        missing = want - set(up.events)
        self.assertFalse(missing, 'events not delivered: %s' %
                         sorted(missing)[:20])


class SharedDaemonTestCase(SegopsTestCase):
    """One daemon, started once, for all the tests of a class (self.d):
    for tests that do not interfere with each other, each looking only at
    its own replies, at the events it alone sent, or at counters against
    their value when it started. The mock upstream is shared as well and
    reset() before each test, so a test sees only its own requests; each
    test leaves nothing held (it flushes what it sends). A test that
    changes the daemon (config, signals) or its upstream's behaviour does
    not belong here. daemon_config: the daemon's section__key overrides.
    The daemon's stop and its sanitizer check run after the last test."""

    daemon_config = {}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if cls.tls:
            raise ValueError('SharedDaemonTestCase has no TLS')
        cls.class_tmpdir = tempfile.mkdtemp(prefix='segops-')
        if not os.environ.get('SEGOPS_KEEP_TMP'):
            cls.addClassCleanup(shutil.rmtree, cls.class_tmpdir, True)
        opts = dict(cls.upstream_options)
        opts.setdefault('api_key', cls.api_key)
        cls.shared_upstream = MockUpstream(**opts).start()
        cls.addClassCleanup(cls.shared_upstream.stop)
        cls.d = Daemon(cls.class_tmpdir, cls.shared_upstream.url, cls.api_key,
                       **cls.daemon_config)
        cls.addClassCleanup(cls._stop_shared_daemon)
        cls.d.start()

    @classmethod
    def _stop_shared_daemon(cls):
        cls.d.cleanup()
        report = sanitizer_report(cls.d)
        if report:
            raise AssertionError(report)

    def setUp(self):
        unittest.TestCase.setUp(self)   # not SegopsTestCase's own mock
        self.tmpdir = tempfile.mkdtemp(prefix='segops-')
        self.addCleanup(self._remove_tmpdir)
        self.ca_file = self.tls_cert = self.tls_key = None
        self.daemons = []
        if not self.d.running():
            self.fail('the shared segopsd is gone:\n' + self.d.stderr_tail())
        self.upstream = self.shared_upstream
        self.upstream.reset()
        self.addCleanup(self._check_sanitizer, self.d)
