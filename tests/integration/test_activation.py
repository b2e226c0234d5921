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
import re
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

    def test_datagrams_queued_without_credentials_are_not_verified(self):
        """A socket passed without PassCredentials=: what was queued
        before segopsd turned SO_PASSCRED on comes with pid 0 and uid
        nobody from the kernel. That is no verified sender: the report
        counts under the pid it declares."""
        d, socks = self.activated_daemon()
        d.send_dgram('{"op":"client_dropped","count":2,"pid":4242}\n')
        d.start(listen_fds=socks)
        st = d.wait_for_stats(lambda s: s['client_dropped'] == 2)
        self.assertEqual([(c['pid'], c['identity'], c['dropped'])
                          for c in st['clients']], [(4242, 'declared', 2)])

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
        self.assertRegex(d.stderr_text(), r'events socket \S+ \(adopted from '
                         r'systemd\), control socket \S+ \(adopted from systemd\)')
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

    def test_ready_line_says_which_sockets_were_adopted(self):
        # Only the events socket passed: the control socket is bound.
        d, socks = self.activated_daemon()
        socks[1].close()
        os.unlink(d.control_socket)
        d.start(listen_fds=socks[:1])
        self.assertRegex(d.stderr_text(), r'ready: events socket %s \(adopted '
                         r'from systemd\), control socket %s \(bound\), '
                         % (re.escape(d.events_socket),
                            re.escape(d.control_socket)))
        self.assertEqual(d.stop(), 0)

    def test_a_passed_socket_for_another_path_is_an_error(self):
        """LISTEN_FDS naming a socket of another path (the .socket unit
        and the config disagree): segopsd refuses to start and says
        which socket and which keys, instead of leaving that socket to
        fill up unread (the old code started, bound its own and let it)."""
        d = self.make_daemon(None, None)
        other = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(other.close)
        other_path = os.path.join(self.tmpdir, 'other.sock')
        other.bind(other_path)
        open(d.stderr_path, 'ab').close()
        st = os.stat(d.stderr_path)
        d._extra_env['JOURNAL_STREAM'] = '%d:%d' % (st.st_dev, st.st_ino)
        d.start(wait=False, listen_fds=[other])
        self.assertEqual(d.proc.wait(timeout=30), 1)
        self.assertRegex(d.stderr_text(),
                         r'(?m)^<3>systemd passed a datagram socket at '
                         r"'%s', which matches neither \[listen\] events_socket "
                         r"\('%s', ListenDatagram=\) nor \[listen\] "
                         r"control_socket \('%s', ListenStream=\)"
                         % (re.escape(other_path), re.escape(d.events_socket),
                            re.escape(d.control_socket)))
        self.assertNotIn('ready', d.stderr_text())
        self.assertFalse(os.path.exists(d.events_socket))

    def test_a_passed_socket_of_the_wrong_type_is_an_error(self):
        # A stream socket at the events path (ListenStream= where
        # ListenDatagram= belongs).
        d = self.make_daemon(None, None)
        wrong = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(wrong.close)
        wrong.bind(d.events_socket)
        wrong.listen(4)
        d.start(wait=False, listen_fds=[wrong])
        self.assertEqual(d.proc.wait(timeout=30), 1)
        self.assertRegex(d.stderr_text(), r"error: systemd passed a stream "
                         r"socket at '%s', which matches neither"
                         % re.escape(d.events_socket))


if __name__ == '__main__':
    harness.main()
