#!/usr/bin/env python3
"""Integration tests of libsegops-shim against the real segopsd.

The library is used exactly as an application would use it: the build
is installed into a temporary DESTDIR (`meson install --destdir`), and
tests/shim/shim-client.c is compiled against that installed copy with
`pkg-config --cflags --libs segops-shim`, then run with LD_LIBRARY_PATH
pointing into the DESTDIR. Each mode of the program is one scenario of
SPEC section 3 (bursts, daemon absent, restart, fork, flush, large
events, ops, allocations per call); the test checks what the mock
upstream received and what `stats` says.

Environment (set by meson): SEGOPSD, MESON_BUILD_ROOT, SHIM_CLIENT_SRC.
"""

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'lib'))

import harness  # noqa: E402
from destdir import meson_install  # noqa: E402
from harness import SegopsTestCase  # noqa: E402

_built = {}


def build_client():
    """Install the build into a DESTDIR once and compile the client."""
    if 'exe' in _built:
        return _built['exe'], _built['env']
    root = os.environ.get('MESON_BUILD_ROOT')
    src = os.environ.get('SHIM_CLIENT_SRC')
    if not root or not src:
        raise unittest.SkipTest('MESON_BUILD_ROOT/SHIM_CLIENT_SRC not set')
    if not shutil.which('pkg-config') or not shutil.which('cc'):
        raise unittest.SkipTest('pkg-config or cc missing')
    dest = tempfile.mkdtemp(prefix='segops-shim-inst-')
    _built['dest'] = dest
    meson_install(root, dest)
    pcs = glob.glob(os.path.join(dest, '**', 'segops-shim.pc'),
                    recursive=True)
    if len(pcs) != 1:
        raise AssertionError('segops-shim.pc not installed: %r' % pcs)
    pcdir = os.path.dirname(pcs[0])
    env = dict(os.environ, PKG_CONFIG_SYSROOT_DIR=dest,
               PKG_CONFIG_PATH=pcdir, PKG_CONFIG_LIBDIR=pcdir)
    flags = subprocess.run(['pkg-config', '--cflags', '--libs',
                            'segops-shim'], env=env, check=True,
                           capture_output=True, text=True).stdout.split()
    exe = os.path.join(dest, 'shim-client')
    flags = os.environ.get('SHIM_CLIENT_CFLAGS', '').split() + flags
    subprocess.run(['cc', '-std=c11', '-O1', '-Wall', '-Werror', '-pthread',
                    '-o', exe, src] + flags, check=True)
    libdir = os.path.dirname(pcdir)
    run_env = {'LD_LIBRARY_PATH': libdir}
    _built.update(exe=exe, env=run_env, flags=flags, dest=dest)
    return exe, run_env


def readme_example():
    """The C example of README.md, between its markers."""
    readme = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          '..', '..', 'README.md')
    with open(readme) as f:
        text = f.read()
    start = text.index('<!-- readme-example:shim -->')
    end = text.index('<!-- /readme-example -->', start)
    block = text[start:end]
    return block[block.index('```c\n') + 5:block.rindex('```')]


def tearDownModule():
    if 'dest' in _built and not os.environ.get('SEGOPS_KEEP_TMP'):
        shutil.rmtree(_built['dest'], ignore_errors=True)


class Client:
    """The test program, running; talks over its stdin/stdout."""

    def __init__(self, daemon, *args, extra_env=None):
        exe, env = build_client()
        full = dict(os.environ)
        full.update(env)
        full['SEGOPS_SOCKET'] = daemon.events_socket
        full['SEGOPS_CONTROL_SOCKET'] = daemon.control_socket
        full.update(extra_env or {})
        self.lines = []
        self.proc = subprocess.Popen([exe] + [str(a) for a in args],
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=full,
                                     text=True)

    def until(self, prefix, timeout=60.0):
        """Read lines until one starts with prefix; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError('client exited; output:\n' +
                                     ''.join(self.lines))
            self.lines.append(line)
            if line.startswith(prefix):
                return line.strip()
        raise TimeoutError('no %r from client' % prefix)

    def go(self):
        self.proc.stdin.write('go\n')
        self.proc.stdin.flush()

    def finish(self, timeout=60.0):
        out, _ = self.proc.communicate(timeout=timeout)
        self.lines.extend(out.splitlines(keepends=True))
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def fields(line):
    """'a=1 b=2' -> {'a': '1', 'b': '2'} (words without '=' skipped)."""
    return dict(w.split('=', 1) for w in line.split() if '=' in w)


def payloads(upstream, event_type):
    return [e['payload'] for e in upstream.events.values()
            if e['event_type'] == event_type]


class ShimTests(SegopsTestCase):

    def client(self, d, *args, **kw):
        c = Client(d, *args, **kw)
        self.addCleanup(c.kill)
        return c

    def test_burst_4x25000_all_delivered(self):
        d = self.start_daemon(batch__batch_size='500',
                              batch__flush_interval='0.05')
        c = self.client(d, 'burst', 4, 25000)
        f = fields(c.until('fails=', timeout=120))
        self.assertEqual(c.finish(), 0)
        self.assertEqual(f, {'fails': '0', 'dropped': '0', 'flush': '0'})
        got = {(p['t'], p['i']) for p in payloads(self.upstream, 'burst')}
        self.assertEqual(len(got), 100000)
        st = d.stats()
        self.assertEqual(st['client_dropped'], 0)
        self.assertEqual(sum(st['rejected'].values()), 0)
        self.assertNoViolations()

    def test_daemon_absent_then_started(self):
        d = self.make_daemon()
        c = self.client(d, 'absent', 2000)
        f = fields(c.until('absent'))
        self.assertEqual(f['bad'], '0')         # every call: -ENOTCONN
        self.assertEqual(f['dropped'], '2000')
        self.assertEqual(f['flush'], str(-107))  # -ENOTCONN
        # Fast: no call took long (generous for a loaded CI machine; the
        # benchmark measures the real figure). A call the scheduler
        # interrupted without it waiting for anything is not slow by its
        # own doing: next to CPU hogs one lost the CPU for 25 ms.
        self.assertLess(float(f['own_us']), 20000, f)
        self.assertLessEqual(float(f['own_us']), float(f['worst_us']))
        self.assertLess(float(f['avg_ns']), 50000, f)
        d.start()
        c.go()
        f = fields(c.until('resumed'))
        self.assertEqual(c.finish(), 0)
        self.assertEqual(f['ok'], '10')
        self.assertEqual(f['flush'], '0')
        dropped = int(f['dropped'])
        self.assertGreaterEqual(dropped, 2000)
        self.assertEqual(len(payloads(self.upstream, 'resumed')), 10)
        st = d.wait_for_stats(lambda s: s['client_dropped'] >= dropped)
        self.assertEqual(st['client_dropped'], dropped)
        # Per sending process: the pid comes from the socket credentials.
        mine = [e for e in st['clients'] if e['pid'] == c.proc.pid]
        self.assertEqual(len(mine), 1, st['clients'])
        self.assertEqual(mine[0]['dropped'], dropped)

    def test_daemon_restarted_mid_stream(self):
        d = self.start_daemon()
        c = self.client(d, 'restart')
        self.assertEqual(c.until('flush1'), 'flush1=0')
        c.until('WAIT')
        d.stop()
        c.go()
        c.until('WAIT')
        d.start()
        c.go()
        f = fields(c.until('flush2'))
        self.assertEqual(c.finish(), 0)
        self.assertEqual(f['flush2'], '0')
        ok = {int(line.split()[1]) for line in c.lines
              if line.startswith('ok ')}
        self.assertGreaterEqual(len([i for i in ok if i >= 200]), 100)
        got = {p['i'] for p in payloads(self.upstream, 'restart')}
        self.assertEqual(ok - got, set(), 'accepted but not delivered')
        # Everything not delivered was counted as dropped, and the new
        # daemon heard about it.
        dropped = int(f['dropped'])
        self.assertEqual(dropped, (max(ok) + 1) - len(ok))
        st = d.wait_for_stats(lambda s: s['client_dropped'] >= dropped)
        self.assertEqual(st['client_dropped'], dropped)

    def test_fork_child_sends(self):
        d = self.start_daemon()
        c = self.client(d, 'fork')
        f = fields(c.until('parent'))
        self.assertEqual(c.finish(), 0)
        self.assertEqual(f, {'fails': '0', 'flush': '0', 'child_exit': '0'})
        child = payloads(self.upstream, 'child')
        parent = payloads(self.upstream, 'parent')
        self.assertEqual(sorted(p['i'] for p in child), list(range(50)))
        self.assertEqual(sorted(p['i'] for p in parent), list(range(100)))
        self.assertNotEqual(child[0]['pid'], parent[0]['pid'])

    def test_fork_child_waits_without_spinning(self):
        """A forked child's timed waits sleep: its condition variables
        are re-created on CLOCK_MONOTONIC like the parent's."""
        d = self.make_daemon()
        tmp = tempfile.mkdtemp(prefix='segops-shim-sink-')
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, 'sink.sock')
        sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sink.close)
        sink.bind(path)  # never read: the child's events cannot drain
        c = self.client(d, 'forkcpu', 20000,
                        extra_env={'SEGOPS_SOCKET': path})
        f = fields(c.until('child'))
        c.until('parent')
        self.assertEqual(c.finish(), 0)
        self.assertEqual(f['fails'], '0')
        self.assertEqual(f['flush'], str(-110))  # -ETIMEDOUT
        # Spinning would burn about the whole 500 ms.
        self.assertLess(int(f['cpu_ms']), 150, f)

    def test_flush_reports_drops_on_control_socket(self):
        """Drops are reported by flush itself, not only by a later
        datagram carrying events."""
        d = self.make_daemon()
        c = self.client(d, 'dropflush', 50)
        f = fields(c.until('absent'))
        self.assertEqual(f, {'bad': '0', 'dropped': '50'})
        c.until('WAIT')
        d.start()
        c.go()
        f = fields(c.until('resumed'))
        self.assertEqual(c.finish(), 0)
        self.assertEqual(f, {'dropped': '50', 'flush': '0'})
        # The flush was answered after the report: no waiting needed.
        st = d.stats()
        self.assertEqual(st['client_dropped'], 50)
        mine = [e for e in st['clients'] if e['pid'] == c.proc.pid]
        self.assertEqual(len(mine), 1, st['clients'])
        self.assertEqual(mine[0]['dropped'], 50)

    def test_flush_returns_after_upstream_has_events(self):
        d = self.start_daemon(batch__flush_interval='5')
        c = self.client(d, 'flush', 1000)
        f = fields(c.until('FLUSHED'))
        # Checked the moment flush returned, before letting the program go.
        got = len(payloads(self.upstream, 'flush'))
        c.go()
        self.assertEqual(c.finish(), 0)
        self.assertEqual(f, {'fails': '0', 'flush': '0'})
        self.assertEqual(got, 1000)

    def test_flush_waits_out_a_busy_daemon(self):
        """Turned away with too_many_connections (here: this uid already
        holds its one allowed connection), flush tries again within its
        timeout and succeeds once a connection is free."""
        # (no reserve: this test runs as root, who could use it)
        d = self.start_daemon(listen__max_connections_per_uid='1',
                              listen__reserved_connections='0')
        held = d.connect_control()
        self.addCleanup(held.close)
        held.sendall(b'{"op":"ping"}\n')
        held.settimeout(10)
        self.assertIn(b'"ok":true', held.recv(200))
        c = self.client(d, 'flush', 10)
        # Stats on the held connection: a new one would be turned away.
        f = held.makefile('rb')
        deadline = time.monotonic() + 10
        while True:
            held.sendall(b'{"op":"stats"}\n')
            st = json.loads(f.readline())
            if (st['ingest']['connections_refused_uid'] >= 1 or
                    time.monotonic() > deadline):
                break
            time.sleep(0.02)
        self.assertGreaterEqual(st['ingest']['connections_refused_uid'], 1)
        f.close()
        held.close()
        f = fields(c.until('FLUSHED'))
        c.go()
        self.assertEqual(c.finish(), 0)
        self.assertEqual(f, {'fails': '0', 'flush': '0'})
        self.assertEqual(len(payloads(self.upstream, 'flush')), 10)

    def test_large_event_via_memfd(self):
        d = self.start_daemon(listen__max_message_bytes='1M',
                              listen__max_datagram_bytes='2M')
        size = 900 * 1024
        c = self.client(d, 'large', size)
        f = fields(c.until('large'))
        self.assertEqual(c.finish(), 0)
        self.assertEqual(f, {'r': '0', 'flush': '0', 'dropped': '0'})
        got = payloads(self.upstream, 'large')
        self.assertEqual(len(got), 1)
        self.assertEqual(got[0]['big'], 'x' * size)
        # Over the shim's 1 MiB cap: refused up front, not counted.
        c = self.client(d, 'large', 1100 * 1024)
        f = fields(c.until('large'))
        self.assertEqual(f['r'], str(-90))  # -EMSGSIZE
        self.assertEqual(f['dropped'], '0')

    def test_large_events_amid_small_ones_all_delivered(self):
        """Large events (memfds) queue for the sender thread like small
        ones, so a momentarily full daemon queue delays them instead of
        dropping them.

        The ring is sized to hold all of it: 200 large events of 100 kB
        (20 MB) and up to 4 x 25000 small ones (12 MB) do not fit the
        default 16 MiB, and a ring that overflows because the daemon gets
        too little CPU (ASan beside other builds) drops and counts by
        design (segops_shim(3)): with the default ring this test failed
        whenever the machine was loaded enough, before issue 10's daemon
        changes as after. What it holds the library to is that nothing
        is lost while the ring has room, however slow the daemon; the
        client still queues faster than the daemon reads (that is how the
        default ring overflowed), so the daemon's queue is full most of
        the time."""
        d = self.start_daemon(listen__max_message_bytes='1M',
                              listen__max_datagram_bytes='2M',
                              batch__max_batch_bytes='1M',
                              batch__batch_size='500',
                              batch__flush_interval='0.05')
        size = 100 * 1000
        c = self.client(d, 'mixed', 200, size, extra_env={
            'SEGOPS_SHIM_BUFFER_BYTES': str(64 * 1024 * 1024)})
        f = fields(c.until('mixed', timeout=120))
        self.assertEqual(c.finish(), 0)
        sent = int(f.pop('small_sent'))
        self.assertEqual(f, {'big_fails': '0', 'small_fails': '0',
                             'dropped': '0', 'flush': '0'})
        big = payloads(self.upstream, 'big')
        self.assertEqual(sorted(p['i'] for p in big), list(range(200)))
        self.assertTrue(all(p['big'] == 'x' * size for p in big))
        small = {(p['t'], p['i']) for p in payloads(self.upstream, 'small')}
        self.assertEqual(len(small), sent)
        st = d.stats()
        self.assertEqual(st['client_dropped'], 0)
        self.assertEqual(sum(st['rejected'].values()), 0)

    def test_large_events_in_a_burst_keep_their_order(self):
        """Large events wait in the ring like small ones: a flat-out
        burst of them (12 MB, within the 16 MiB ring) loses nothing, and
        large and small events arrive in the order they were sent (one
        request at a time, so arrival order is queue order)."""
        d = self.start_daemon(listen__max_message_bytes='1M',
                              listen__max_datagram_bytes='2M',
                              batch__max_batch_bytes='1M',
                              batch__batch_size='500',
                              batch__flush_interval='0.05',
                              upstream__max_in_flight='1')
        n, size = 120, 100 * 1000
        c = self.client(d, 'bigburst', n, size)
        f = fields(c.until('bigburst', timeout=120))
        self.assertEqual(c.finish(), 0)
        self.assertEqual(f, {'fails': '0', 'dropped': '0', 'flush': '0'})
        order = [(e['event_type'], e['payload']['i'])
                 for e in self.upstream.events.values()
                 if e['event_type'] in ('big', 'small')]
        want = [(k, i) for i in range(n) for k in ('big', 'small')]
        self.assertEqual(order, want, 'stats: %r\nlog: %s' % (d.stats(), d.stderr_tail(10)))
        self.assertTrue(all(p['big'] == 'x' * size
                            for p in payloads(self.upstream, 'big')))
        self.assertEqual(d.stats()['client_dropped'], 0)

    def test_ops_go_out(self):
        d = self.start_daemon()
        before = d.stats()
        c = self.client(d, 'ops')
        f = fields(c.until('ops'))
        self.assertEqual(c.finish(), 0)
        self.assertEqual(f, {'set_user': '0', 'reset': '0', 'identify': '0',
                             'track': '0', 'flush': '0'})
        st = d.stats()
        # identify and the event are received as events; set_user and
        # reset_session as ops (besides this test's stats and the shim's
        # flush on the control socket); nothing rejected.
        self.assertEqual(st['received'] - before['received'], 2)
        self.assertEqual(st['ops'] - before['ops'], 4)
        self.assertEqual(sum(st['rejected'].values()), 0)
        types = sorted(e['event_type'] for e in self.upstream.events.values())
        self.assertEqual(types, ['after_ops', 'context_identified'])

    def test_readme_example_builds_and_delivers(self):
        """The README's example, built with the README's pkg-config
        line against the installed library, delivers its two events."""
        build_client()
        src = os.path.join(_built['dest'], 'readme-example.c')
        exe = os.path.join(_built['dest'], 'readme-example')
        with open(src, 'w') as f:
            f.write(readme_example())
        subprocess.run(['cc', '-Wall', '-Werror', '-o', exe, src] +
                       _built['flags'], check=True)
        d = self.start_daemon()
        env = dict(os.environ, SEGOPS_SOCKET=d.events_socket,
                   SEGOPS_CONTROL_SOCKET=d.control_socket, **_built['env'])
        out = subprocess.run([exe], env=env, capture_output=True, text=True,
                             timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.strip(), 'flush: 0, dropped: 0')
        types = sorted(e['event_type'] for e in self.upstream.events.values())
        self.assertEqual(types, ['context_identified', 'signup'])
        self.assertNoViolations()

    def test_no_allocations_per_track(self):
        # Large batches: the final flush of the 10000 events then takes 20
        # requests, not 500 (the count is of the calls before it).
        d = self.start_daemon(batch__batch_size='500')
        c = self.client(d, 'alloc', 10000)
        f = fields(c.until('allocs'))
        self.assertEqual(c.finish(), 0)
        self.assertEqual(f, {'allocs': '0', 'fails': '0', 'flush': '0'})


if __name__ == '__main__':
    harness.main()
