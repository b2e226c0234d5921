#!/usr/bin/env python3
"""Integration tests of socket activation (systemd/segopsd.socket).

The test plays systemd: it creates and binds both sockets itself, keeps
them open, and hands them to segopsd as fds 3 and 4 with LISTEN_FDS and
LISTEN_PID, as the .socket unit does. segopsd must serve on the sockets
it was given (not bind its own), leave them open when it stops, and a
datagram sent while it is down must wait in the kernel for the next
start: that is what socket activation is for.
"""

import json
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'lib'))

import harness  # noqa: E402
from harness import SegopsTestCase, event_id, make_event  # noqa: E402


class ActivationTests(SegopsTestCase):

    def activated_daemon(self, **overrides):
        """A daemon (not started) and the two sockets 'systemd' made for
        it, bound to the paths its config names."""
        d = self.make_daemon(None, None, **overrides)
        dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(dgram.close)
        dgram.bind(d.events_socket)
        stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(stream.close)
        stream.bind(d.control_socket)
        stream.listen(16)
        return d, [dgram, stream]

    def test_serves_the_sockets_it_was_given(self):
        d, socks = self.activated_daemon()
        ino = {p: os.stat(p).st_ino for p in (d.events_socket,
                                               d.control_socket)}
        d.start(listen_fds=socks)
        d.send_dgram(json.dumps(make_event(0)) + '\n')
        # An accepted event gets no reply; the ping answers.
        replies = d.control([make_event(1), {'op': 'ping'}])
        self.assertEqual([r.get('ok') for r in replies], [True])
        self.assertEqual(d.flush()['ok'], True)
        self.assertEventsDelivered([event_id(0), event_id(1)])
        # The very sockets 'systemd' bound, not new ones in their place.
        for p, i in ino.items():
            self.assertEqual(os.stat(p).st_ino, i, p)
        self.assertEqual(d.stop(), 0)
        self.assertNoViolations()

    def test_datagrams_sent_while_stopped_wait_for_the_next_start(self):
        d, socks = self.activated_daemon()
        d.start(listen_fds=socks)
        d.send_dgram(json.dumps(make_event(0)) + '\n')
        self.assertEqual(d.flush()['ok'], True)
        self.assertEqual(d.stop(), 0)

        # segopsd is down; the socket systemd holds still takes events.
        for i in range(1, 4):
            d.send_dgram(json.dumps(make_event(i)) + '\n')
        # And a connection waits in the listen queue.
        early = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(early.close)
        early.settimeout(10)
        early.connect(d.control_socket)
        early.sendall(b'{"op":"ping"}\n')

        d.start(listen_fds=socks)
        reply = b''
        while not reply.endswith(b'\n'):
            chunk = early.recv(4096)
            if not chunk:
                break
            reply += chunk
        self.assertEqual(json.loads(reply)['ok'], True)
        self.assertEqual(d.flush()['ok'], True)
        self.assertEventsDelivered([event_id(i) for i in range(4)])
        self.assertEqual(d.stats()['accepted'], 3)  # this run's share
        self.assertEqual(d.stop(), 0)
        self.assertNoViolations()

    def test_sockets_for_other_paths_are_left_alone(self):
        """LISTEN_FDS naming sockets of other paths: segopsd binds its
        own sockets and does not take over someone else's."""
        d = self.make_daemon(None, None)
        other = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(other.close)
        other_path = os.path.join(self.tmpdir, 'other.sock')
        other.bind(other_path)
        d.start(listen_fds=[other])
        d.send_dgram(json.dumps(make_event(0)) + '\n')
        self.assertEqual(d.flush()['ok'], True)
        self.assertEventsDelivered([event_id(0)])
        other.setblocking(False)
        with self.assertRaises(BlockingIOError):
            other.recv(1)
        self.assertEqual(d.stop(), 0)


if __name__ == '__main__':
    harness.main()
