#!/usr/bin/env python3
"""A hostile host on the control socket (issue 10, items 3 and 6).

Other local users may connect to the control socket: they must not be
able to lock root and the daemon's own user out of it (the reserve,
`reserved_connections`), keep a connection forever by sending a byte at
a time (`idle_timeout` runs from the last complete line), or get a
slow-reading connection cut off by sending lines that each earn a long
error reply (flow control: reading pauses at `max_reply_bytes` of unread
replies; only a client that makes no progress for `reply_timeout` is
closed).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'lib'))

import harness  # noqa: E402
from harness import SegopsTestCase  # noqa: E402

requires_socat = unittest.skipUnless(shutil.which('socat'),
                                     'socat is not installed')
requires_root = unittest.skipUnless(os.geteuid() == 0,
                                    'other uids need root to switch to')

# Run as another uid: open control connections until one is refused, ping
# on each admitted one, print how many were admitted, then hold them all
# until stdin closes.
HOG = r'''
import json, os, socket, sys
uid = int(sys.argv[2])
os.setgroups([]); os.setgid(uid); os.setuid(uid)
held = []
for _ in range(4096):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sys.argv[1])
    try:
        s.sendall(b'{"op":"ping"}\n')
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused at accept and closed: the refusal is still to read
    buf = b''
    while not buf.endswith(b'\n'):
        try:
            c = s.recv(4096)
        except ConnectionResetError:
            break
        if not c:
            break
        buf += c
    if not buf.strip() or not json.loads(buf)['ok']:
        s.close()
        break
    held.append(s)
print(len(held), flush=True)
sys.stdin.read()
'''

BAD = b'x\n'   # a 2-byte line that earns a ~90-byte error reply


def read_line(sock, timeout=10.0):
    f = sock.makefile('rb')
    sock.settimeout(timeout)
    try:
        return f.readline()
    finally:
        f.close()


def ping_on_new(d):
    """(reply, seconds) of a ping on a fresh connection. A connection
    refused at accept gets its refusal and is closed at once, maybe
    before the ping is written (EPIPE): the refusal is read all the same."""
    t0 = time.monotonic()
    with d.connect_control() as s:
        try:
            s.sendall(b'{"op":"ping"}\n')
        except (BrokenPipeError, ConnectionResetError):
            pass
        line = read_line(s)
    return json.loads(line), time.monotonic() - t0


class ControlReserve(SegopsTestCase):

    def hog(self, d, uid):
        """A process of uid that takes every connection it can get;
        returns how many it holds (until the test ends)."""
        p = subprocess.Popen([sys.executable, '-c', HOG, d.control_socket,
                              str(uid)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
        self.addCleanup(p.wait, 10)
        self.addCleanup(p.stdout.close)
        self.addCleanup(p.stdin.close)
        line = p.stdout.readline()
        self.assertTrue(line, 'the hog as uid %d failed' % uid)
        return int(line)

    @requires_root
    def test_two_uids_cannot_lock_out_root(self):
        """Two other uids take every connection they can (defaults: 256
        in all, 192 per uid): root still gets its pings answered, from
        the reserve, until the reserve too is used up."""
        d = self.start_daemon(listen__socket_mode='0666')
        os.chmod(self.tmpdir, 0o711)
        a = self.hog(d, 65534)
        b = self.hog(d, 65533)
        t0 = time.monotonic()
        first = d.connect_control()
        self.addCleanup(first.close)
        first.sendall(b'{"op":"ping"}\n')
        reply = json.loads(read_line(first))
        took = time.monotonic() - t0
        self.assertEqual(reply['ok'], True, reply)
        print('ping with the table full: %.1f ms' % (took * 1000),
              file=sys.stderr)
        self.assertEqual(a, 192)             # max_connections_per_uid
        self.assertEqual(b, 256 - 16 - 192)  # the rest but the reserve
        # Root may hold the whole reserve ...
        held = [first]
        for _ in range(15):
            s = d.connect_control()
            self.addCleanup(s.close)
            s.sendall(b'{"op":"ping"}\n')
            self.assertEqual(json.loads(read_line(s))['ok'], True)
            held.append(s)
        # ... and is turned away once it does.
        reply, _ = ping_on_new(d)
        self.assertEqual(reply['error'], 'too_many_connections')
        held[0].sendall(b'{"op":"stats"}\n')
        st = json.loads(read_line(held[0]))['ingest']
        self.assertEqual(st['connections_reserved'], 16)
        self.assertEqual(st['connections_refused_uid'], 1)
        self.assertEqual(st['connections_refused'], 2)

    def test_bytes_without_a_line_do_not_hold_off_idle(self):
        """A byte every quarter of idle_timeout, never a newline: the
        connection is closed idle_timeout after its last complete line."""
        d = self.start_daemon(listen__idle_timeout='1')
        with d.connect_control() as s:
            t0 = time.monotonic()
            s.sendall(b'{"op":"ping"}\n')
            self.assertIn(b'"ok":true', read_line(s))
            closed = None
            deadline = t0 + 10
            s.settimeout(0.25)
            while closed is None and time.monotonic() < deadline:
                try:
                    s.sendall(b' ')
                    if s.recv(100) == b'':
                        closed = time.monotonic()
                except socket.timeout:
                    continue
                except OSError:
                    closed = time.monotonic()
            self.assertIsNotNone(closed, 'still open after 10 s')
            self.assertGreaterEqual(closed - t0, 0.9)
        st = d.stats()['ingest']
        self.assertEqual(st['connections_idle_closed'], 1)


    def test_a_long_flush_does_not_leave_the_connection_idle(self):
        """A flush that outlasts idle_timeout is not idleness: the
        client gets its answer and may go on, the idle clock restarts
        at the answer."""
        self.upstream.set_default(200, delay=1.6)
        d = self.start_daemon(listen__idle_timeout='1', batch__flush_interval='0.05')
        with d.connect_control() as s:
            s.settimeout(10)
            s.sendall(b'{"user_id":"u1","event_type":"e"}\n'
                      b'{"op":"flush","timeout_ms":8000}\n')
            self.assertIn(b'"flushed":1', read_line(s))
            # The client takes its time, well within idle_timeout of
            # the answer, before its next line.
            time.sleep(0.6)
            s.sendall(b'{"op":"ping"}\n')
            self.assertIn(b'"ok":true', read_line(s))
        self.assertEqual(d.stats()['ingest']['connections_idle_closed'], 0)


class ReplyFlowControl(SegopsTestCase):

    N = 50000

    def test_slow_reader_gets_every_reply(self):
        """50,000 two-byte bad lines (~4.5 MB of replies) from a client
        that reads slowly: reading pauses and resumes, every reply
        arrives in order, nothing is cut off."""
        d = self.start_daemon()
        s = d.connect_control()
        self.addCleanup(s.close)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        err = []

        def writer():
            try:
                s.sendall(BAD * self.N)
                s.shutdown(socket.SHUT_WR)
            except OSError as e:
                err.append(e)
        t = threading.Thread(target=writer, daemon=True)
        t.start()
        s.settimeout(20)
        data = bytearray()
        try:
            while True:
                c = s.recv(8192)
                if not c:
                    break
                data += c
                time.sleep(0.0005)   # a slow reader
        except OSError as e:
            err.append(e)
        t.join(20)
        lines = bytes(data).splitlines()
        self.assertEqual(err, [])
        self.assertEqual(len(lines), self.N)
        self.assertEqual(json.loads(lines[0])['line'], 1)
        self.assertEqual(json.loads(lines[-1])['line'], self.N)
        st = d.stats()
        self.assertEqual(st['received'], self.N)
        self.assertGreaterEqual(st['ingest']['connections_paused'], 1)
        self.assertEqual(st['ingest']['connections_slow_closed'], 0)

    @requires_socat
    def test_socat_pipes_every_reply(self):
        """`socat - UNIX-CONNECT:` fed 20,000 bad lines (~1.8 MB of
        replies): no broken pipe, every reply printed."""
        d = self.start_daemon()
        n = 20000
        out = d.socat_stream((BAD * n).decode(), timeout=60)
        self.assertEqual(len(out.splitlines()), n)
        self.assertEqual(d.stats()['ingest']['connections_slow_closed'], 0)


if __name__ == '__main__':
    harness.main()
