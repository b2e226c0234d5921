#!/usr/bin/env python3
"""The client-side extensions of the local protocol (proto/PROTOCOL.md):
client_dropped reports (per sending process: the socket's credentials,
SO_PEERCRED on the stream and SCM_CREDENTIALS on datagrams) and sealed memfds for
datagrams too large to send."""

import fcntl
import json
import os
import socket
import subprocess
import sys
import textwrap

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'lib'))

import harness  # noqa: E402
from harness import nonzero, SegopsTestCase, event_id, make_event  # noqa: E402

SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def memfd_with(data, seals=SEALS):
    fd = os.memfd_create('segops-test', os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, data)
    if seals:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    return fd


def fd_targets(pid):
    """What each open descriptor of pid points to. One may close between
    listing and reading (the daemon closing the connection of the stats
    just asked for): it is not open, so it is left out."""
    targets = []
    for f in os.listdir('/proc/%d/fd' % pid):
        try:
            targets.append(os.readlink('/proc/%d/fd/%s' % (pid, f)))
        except FileNotFoundError:
            pass
    return targets


class ClientDropped(SegopsTestCase):

    def test_reported_on_datagram_per_process(self):
        """The datagram's credentials (SO_PASSCRED) name the process,
        whatever pid the report declares, or none."""
        d = self.start_daemon()
        me = os.getpid()
        d.send_dgram('{"op":"client_dropped","count":5,"pid":%d}\n' % me +
                     json.dumps(make_event(0)) + '\n')
        d.send_dgram('{"op":"client_dropped","count":2,"pid":%d}\n' % (me + 1))
        d.send_dgram('{"op":"client_dropped","count":4}\n')  # no pid
        st = d.wait_for_stats(lambda s: s['client_dropped'] == 11, 5)
        self.assertEqual(len(st['clients']), 1, st['clients'])
        mine = st['clients'][0]
        self.assertEqual((mine['pid'], mine['uid'], mine['identity'], mine['dropped']),
                         (me, os.geteuid(), 'verified', 11))
        with open('/proc/self/comm') as f:
            self.assertEqual(mine['comm'], f.read().strip())
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 1})
        self.assertEqual(set(self.upstream.events), {event_id(0)})
        # Ops are not events: received counts the event only.
        self.assertEqual((st['received'], st['accepted']), (1, 1))

    def test_reported_on_stream(self):
        """On the stream the peer's credentials win over a declared pid."""
        d = self.start_daemon()
        replies = d.control([{'op': 'client_dropped', 'count': 3, 'pid': 1}])
        self.assertEqual(replies, [{'ok': True}])
        st = d.stats()
        self.assertEqual(st['client_dropped'], 3)
        self.assertEqual([c['dropped'] for c in st['clients']
                          if c['pid'] == os.getpid()], [3])

    def test_bad_reports_are_rejected(self):
        d = self.start_daemon()
        bad = ['{"op":"client_dropped"}',
               '{"op":"client_dropped","count":0}',
               '{"op":"client_dropped","count":-1}',
               '{"op":"client_dropped","count":"5"}',
               '{"op":"client_dropped","count":1,"pid":"1"}',
               '{"op":"client_dropped","count":1,"pid":0}',
               '{"op":"client_dropped","count":1,"who":1}',
               '{"op":"client_dropped","count":9007199254740992}']
        replies = d.control(bad)
        self.assertEqual([r['error'] for r in replies],
                         ['missing_field', 'bad_value', 'bad_value',
                          'wrong_type', 'wrong_type', 'bad_value',
                          'unknown_field', 'bad_value'])
        self.assertEqual(d.stats()['client_dropped'], 0)

    def test_huge_reports_are_clamped(self):
        # Each report may say up to 2^53-1; it adds at most
        # max_client_dropped_report (default 1e9), and the clamp is
        # counted. (The totals saturate at 2^63-1 rather than wrap; with
        # the clamp, 9e9 reports would be needed to see it.)
        d = self.start_daemon()
        line = '{"op":"client_dropped","count":9007199254740991}\n'
        replies = d.control(line * 1100, timeout=20)
        self.assertEqual(len(replies), 1100)
        st = d.stats()
        self.assertEqual(st['client_dropped'], 1100 * 10**9)
        self.assertEqual(st['client_dropped_clamped'], 1100)
        self.assertEqual([c['dropped'] for c in st['clients']
                          if c['pid'] == os.getpid()], [1100 * 10**9])

    def test_process_name_that_is_not_utf8(self):
        # The kernel keeps 15 bytes of a process name, here cutting an
        # e-acute in half; stats must still answer, with that client in.
        d = self.start_daemon()
        child = textwrap.dedent('''
            import ctypes, socket, sys
            name = ('abcdefghijklmn' + '\\u00e9').encode()
            ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name), 0, 0, 0)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(sys.argv[1])
            s.sendall(b'{"op":"client_dropped","count":2}\\n')
            s.shutdown(socket.SHUT_WR)
            print(s.recv(100).decode().strip())
        ''')
        out = subprocess.run([sys.executable, '-c', child, d.control_socket],
                             capture_output=True, text=True, timeout=20)
        self.assertEqual(out.stdout.strip(), '{"ok":true}', out.stderr)
        st = d.stats()
        self.assertEqual(st['client_dropped'], 2)
        self.assertEqual([c['comm'] for c in st['clients']],
                         ['abcdefghijklmn?'])


class Memfd(SegopsTestCase):

    def send_fds(self, d, fds, payload=b''):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(d.events_socket)
            socket.send_fds(s, [payload], fds)

    def test_large_message_via_memfd(self):
        d = self.start_daemon(listen__max_message_bytes='1M',
                              listen__max_datagram_bytes='2M',
                              batch__max_batch_bytes='1M')
        big = make_event(1, payload={'blob': 'y' * 900000})
        small = make_event(2)
        fd = memfd_with((json.dumps(big) + '\n' + json.dumps(small) + '\n').encode())
        try:
            self.send_fds(d, [fd])
        finally:
            os.close(fd)
        self.assertEqual(d.flush(timeout_ms=15000)['ok'], True)
        self.assertEqual(set(self.upstream.events), {event_id(1), event_id(2)})
        self.assertEqual(self.upstream.events[event_id(1)]['payload'],
                         big['payload'])
        st = d.stats()
        self.assertEqual(st['ingest']['memfds'], 1)
        self.assertEqual(nonzero(st['rejected']), {})
        self.assertNoViolations()

    def test_unsealed_or_oversize_or_extra_fds_rejected(self):
        d = self.start_daemon(listen__max_message_bytes='1024',
                              listen__max_datagram_bytes='128K')
        line = (json.dumps(make_event(3)) + '\n').encode()
        unsealed = memfd_with(line, seals=0)
        oversize = memfd_with(line * (200000 // len(line)))
        a, b = memfd_with(line), memfd_with(line)
        empty = memfd_with(b'')
        try:
            self.send_fds(d, [unsealed])
            self.send_fds(d, [oversize])
            self.send_fds(d, [a, b])
            self.send_fds(d, [a], payload=line)
            self.send_fds(d, [empty])
            r, w = os.pipe()
            pipe_name = 'pipe:[%d]' % os.fstat(r).st_ino
            self.send_fds(d, [r])
            os.close(r)
            os.close(w)
            d.send_dgram(line.decode())
        finally:
            for fd in (unsealed, oversize, a, b, empty):
                os.close(fd)
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 1})
        st = d.stats()
        self.assertEqual(nonzero(st['rejected']), {'bad_value': 5, 'oversize': 1})
        self.assertEqual(set(self.upstream.events), {event_id(3)})
        # Every passed descriptor was closed by the daemon.
        targets = fd_targets(d.proc.pid)
        self.assertEqual([t for t in targets if 'memfd' in t or t == pipe_name],
                         [], targets)


if __name__ == '__main__':
    harness.main()
