#!/usr/bin/env python3
"""Integration tests of segopsd's clean stop (SPEC section 5).

SIGTERM and SIGINT: stop reading, drain what the sockets already hold,
deliver for up to stop_timeout, exit 0; in memory-only mode what is left
at the deadline is counted and logged as lost.
"""

import json
import threading
import os
import signal
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'lib'))

import harness  # noqa: E402
from harness import (SegopsTestCase, event_id, make_event,  # noqa: E402
                     ndjson, parse_lines, send_stream)


class StopTests(SegopsTestCase):

    def _stop_with_pending(self, sig):
        d = self.start_daemon(upstream__max_in_flight='2',
                              batch__batch_size='5',
                              upstream__stop_timeout='10')
        self.upstream.set_default(200, delay=0.3)
        n = 40
        send_stream(d, [make_event(i) for i in range(n)])
        self.assertLess(len(self.upstream.events), n,
                        'the test needs events still pending at the signal')
        t0 = time.monotonic()
        rc = d.stop(sig, timeout=15)
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, d.stderr_tail())
        self.assertEqual(set(self.upstream.events),
                         {event_id(i) for i in range(n)})
        # 8 batches, 2 at a time, 0.3 s each: about 1.2 s, well inside
        # stop_timeout.
        self.assertLess(took, 8)
        self.assertRegex(d.stderr_text(), r'every accepted event was '
                         r'delivered')
        self.assertNotRegex(d.stderr_text(), r'are lost')
        self.assertNoViolations()
        # The socket files are gone or at least no longer served.
        for path in (d.events_socket, d.control_socket):
            if os.path.exists(path):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM
                                  if path == d.control_socket
                                  else socket.SOCK_DGRAM)
                with s:
                    self.assertRaises(OSError, s.connect, path)

    def test_sigterm_delivers_pending(self):
        self._stop_with_pending(signal.SIGTERM)

    def test_sigint_delivers_pending(self):
        self._stop_with_pending(signal.SIGINT)

    def test_datagrams_queued_before_sigterm_are_delivered(self):
        """Datagrams already in the socket when SIGTERM arrives are read
        and delivered: the daemon is frozen (SIGSTOP) while they are
        queued and the signal is sent, so none was read earlier."""
        # A stop_timeout no loaded machine runs into: delivery during the
        # stop is what is tested, not its deadline.
        d = self.start_daemon(upstream__stop_timeout='10')
        os.kill(d.pid, signal.SIGSTOP)
        sent = 0
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.setblocking(False)
                # One event per datagram until the kernel queue is full
                # (max_dgram_qlen, 10 by default), bounded anyway.
                for i in range(200):
                    try:
                        s.sendto((json.dumps(make_event(i)) + '\n').encode(),
                                 d.events_socket)
                    except BlockingIOError:
                        break
                    sent += 1
            os.kill(d.pid, signal.SIGTERM)
        finally:
            os.kill(d.pid, signal.SIGCONT)
        self.assertGreater(sent, 0)
        rc = d.proc.wait(timeout=15)
        self.assertEqual(rc, 0, d.stderr_tail())
        self.assertEqual(set(self.upstream.events),
                         {event_id(i) for i in range(sent)})
        self.assertNoViolations()

    def test_stream_lines_sent_before_sigterm_are_delivered(self):
        """Lines a client wrote to the control socket before SIGTERM are
        drained too."""
        # A stop_timeout no loaded machine runs into: delivery during the
        # stop is what is tested, not its deadline.
        d = self.start_daemon(upstream__stop_timeout='10')
        s = d.connect_control()
        self.addCleanup(s.close)
        # Make sure the connection is accepted before the freeze.
        s.sendall(b'{"op":"ping"}\n')
        s.settimeout(5)
        self.assertIn(b'"ok":true', s.recv(4096))
        os.kill(d.pid, signal.SIGSTOP)
        try:
            s.sendall(ndjson([make_event(i) for i in range(50)]).encode())
            os.kill(d.pid, signal.SIGTERM)
        finally:
            os.kill(d.pid, signal.SIGCONT)
        rc = d.proc.wait(timeout=15)
        self.assertEqual(rc, 0, d.stderr_tail())
        self.assertEqual(set(self.upstream.events),
                         {event_id(i) for i in range(50)})

    def test_many_lines_after_a_flush_waiting_at_stop(self):
        """Review 10: a flush waits when SIGTERM comes, and the client
        has written more lines after it than one read takes (the framer
        holds max_message_bytes + 16 KiB), ops among the events. Once the
        flush is answered the stop reads them all: every event is
        delivered and every op answered. The drain shut the connection's
        writing side after its first read, so the next read's first
        reply failed, the connection was closed, and the rest of its
        lines (events) were lost."""
        d = self.start_daemon(upstream__stop_timeout='10',
                              listen__max_message_bytes='4096')
        self.upstream.set_default(200, delay=0.5)
        s = d.connect_control()
        self.addCleanup(s.close)
        n, pings = 1500, 0
        text = ''
        for i in range(5, n):
            text += json.dumps(make_event(i)) + '\n'
            if i % 50 == 49:
                text += '{"op":"ping"}\n'
                pings += 1
        after = text.encode()
        self.assertGreater(len(after), 3 * (4096 + 16384))
        s.sendall((ndjson([make_event(i) for i in range(5)]) +
                   '{"op":"flush","timeout_ms":10000}\n').encode())
        st = d.wait_for_stats(lambda x: x['in_flight'] >= 1, timeout=5)
        self.assertEqual(st['in_flight'], 1)
        self.upstream.set_default(200)  # the rest goes at once
        s.setblocking(False)
        sent = s.send(after)
        self.assertEqual(sent, len(after), 'the kernel took only part')
        d.send_signal(signal.SIGTERM)
        s.settimeout(10)
        buf = b''
        try:
            while True:
                c = s.recv(65536)
                if not c:
                    break
                buf += c
        except OSError:
            pass
        rc = d.proc.wait(timeout=15)
        self.assertEqual(rc, 0, d.stderr_tail())
        self.assertEqual(set(self.upstream.events),
                         {event_id(i) for i in range(n)})
        lines = parse_lines(buf.decode())
        self.assertEqual(len(lines), pings + 1, lines[-3:])

    def test_stop_with_upstream_down_counts_lost(self):
        d = self.start_daemon(upstream__stop_timeout='1')
        self.upstream.stop()
        n = 12
        send_stream(d, [make_event(i) for i in range(n)])
        st = d.wait_for_stats(lambda s: s['retries'] >= 1, timeout=10)
        self.assertEqual(st['queued_events'], n)
        t0 = time.monotonic()
        rc = d.stop(signal.SIGTERM, timeout=10)
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, d.stderr_tail())
        self.assertLess(took, 2.5)
        self.assertGreaterEqual(took, 0.9)
        self.assertRegex(d.stderr_text(),
                         r'\b%d events could not be delivered before '
                         r'stop_timeout and are lost' % n)

    def test_stop_timeout_zero_with_slow_upstream(self):
        """stop_timeout = 0: exit at once; what is in flight is lost and
        said so, and the exit is still clean."""
        d = self.start_daemon(upstream__stop_timeout='0')
        self.upstream.set_default(200, delay=3)
        send_stream(d, [make_event(i) for i in range(5)])
        # The mock records a request only once answered: ask the daemon.
        st = d.wait_for_stats(lambda s: s['in_flight'] >= 1, timeout=5)
        self.assertEqual(st['in_flight'], 1)
        t0 = time.monotonic()
        rc = d.stop(signal.SIGTERM, timeout=10)
        self.assertEqual(rc, 0, d.stderr_tail())
        self.assertLess(time.monotonic() - t0, 1.5)
        self.assertRegex(d.stderr_text(), r'\b5 events could not be '
                         r'delivered')

    def test_second_signal_during_stop_is_harmless(self):
        d = self.start_daemon(upstream__stop_timeout='5')
        self.upstream.set_default(200, delay=0.5)
        send_stream(d, [make_event(i) for i in range(3)])
        d.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        d.send_signal(signal.SIGINT)
        rc = d.proc.wait(timeout=10)
        self.assertEqual(rc, 0, d.stderr_tail())
        self.assertEqual(set(self.upstream.events),
                         {event_id(i) for i in range(3)})

    def test_flush_waiting_at_stop_gets_an_answer(self):
        """A client whose flush is waiting when SIGTERM comes is not
        left with a silently closed connection: the stop keeps delivering
        for stop_timeout, so the flush is answered (ok once the events
        are out, or ok:false with the reason)."""
        d = self.start_daemon(upstream__stop_timeout='5')
        self.upstream.set_default(200, delay=0.5)
        s = d.connect_control()
        self.addCleanup(s.close)
        s.sendall((ndjson([make_event(i) for i in range(5)]) +
                   '{"op":"flush","timeout_ms":10000}\n').encode())
        st = d.wait_for_stats(lambda x: x['in_flight'] >= 1, timeout=5)
        self.assertEqual(st['in_flight'], 1)
        d.send_signal(signal.SIGTERM)
        s.settimeout(10)
        buf = b''
        try:
            while not buf.endswith(b'\n'):
                c = s.recv(4096)
                if not c:
                    break
                buf += c
        except OSError:
            pass
        self.assertEqual(d.proc.wait(timeout=15), 0)
        self.assertEqual(set(self.upstream.events),
                         {event_id(i) for i in range(5)})
        self.assertTrue(buf, 'the flush got no reply at all')
        reply = json.loads(buf)
        self.assertIn(reply['ok'], (True, False))
        if reply['ok']:
            self.assertEqual(reply['flushed'], 5)
        else:
            self.assertIn('pending', reply)


class StopWhileSending(SegopsTestCase):

    def test_every_datagram_the_kernel_took_is_delivered(self):
        """A sender keeps sending through the SIGTERM. Every datagram
        whose send() succeeded was read and delivered: the socket refuses
        new ones (EPIPE) before the last drain, never takes them to drop
        them unread."""
        d = self.start_daemon(batch__batch_size='500',
                              upstream__stop_timeout='30')
        ok = []
        stop = threading.Event()

        def sender():
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.connect(d.events_socket)
                s.settimeout(5)
                for i in range(200000):
                    if stop.is_set():
                        return
                    try:
                        s.send((json.dumps(make_event(i)) + '\n').encode())
                    except OSError:
                        return
                    ok.append(i)
        t = threading.Thread(target=sender, daemon=True)
        t.start()
        # The SIGTERM comes in the middle of the stream.
        st = d.wait_for_stats(lambda s: s['received'] >= 200)
        self.assertGreaterEqual(st['received'], 200)
        self.assertEqual(d.stop(timeout=20), 0)
        stop.set()
        t.join(timeout=10)
        self.assertGreater(len(ok), 100)
        missing = {event_id(i) for i in ok} - set(self.upstream.events)
        self.assertEqual(missing, set(), '%d of %d sent events missing'
                         % (len(missing), len(ok)))
        self.assertIn('every accepted event was delivered', d.stderr_text())
        self.assertNoViolations()


class StopWithSilentClients(SegopsTestCase):

    def test_client_that_never_reads_does_not_hold_the_stop(self):
        """A client with its replies unread (reading paused) at SIGTERM:
        the stop ends anyway (a shutdown that never completes once hung
        it)."""
        d = self.start_daemon()
        s = d.connect_control()
        self.addCleanup(s.close)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # ~480 KB of answers: more than the socket buffers hold; the
        # sender blocks once reading pauses (max_reply_bytes).

        def send():
            try:
                s.sendall(b'{"op":"flush"}\n' * 20000)
            except OSError:
                pass    # cut off by the stop
        s.settimeout(30)
        threading.Thread(target=send, daemon=True).start()
        st = d.wait_for_stats(
            lambda x: x['ingest']['connections_paused'] >= 1)
        self.assertGreaterEqual(st['ingest']['connections_paused'], 1)
        t0 = time.monotonic()
        self.assertEqual(d.stop(timeout=10), 0)
        self.assertLess(time.monotonic() - t0, 5)

    def test_signals_during_the_last_grace_are_harmless(self):
        # Everything is delivered, but a client that does not read keeps
        # segopsd in its last grace second; a SIGHUP (logrotate) or a
        # second Ctrl-C then must not kill it: exit 0 all the same.
        for late in (signal.SIGHUP, signal.SIGINT):
            d = self.start_daemon()
            ops = d.stats()['ops']
            s = d.connect_control()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.setblocking(False)
            n = 0
            try:
                for _ in range(100000):
                    s.send(b'{"op":"stats"}\n')
                    n += 1
            except BlockingIOError:
                pass
            # Every line answered, or reading paused with the answers
            # unread (max_reply_bytes).
            st = d.wait_for_stats(
                lambda x: x['ops'] >= ops + n or
                x['ingest']['connections_paused'] >= 1)
            self.assertTrue(st['ops'] >= ops + n or
                            st['ingest']['connections_paused'] >= 1)
            d.send_signal(signal.SIGTERM)
            self.assertTrue(d.wait_for_log('stopped: every accepted event',
                                           timeout=5))
            time.sleep(0.05)
            d.send_signal(late)
            rc = d.proc.wait(timeout=10)
            s.close()
            self.assertEqual(rc, 0, '%s in the grace: %s' % (late.name,
                                                             d.stderr_tail()))


class NotYetTests(SegopsTestCase):

    @unittest.skip('spool_dir is not implemented yet (main.c warns '
                   '"spool_dir is not supported yet")')
    def test_spool_keeps_events_across_restart(self):
        spool = os.path.join(self.tmpdir, 'spool')
        os.makedirs(spool)
        d = self.start_daemon(buffer__spool_dir=spool,
                              upstream__stop_timeout='1')
        self.upstream.stop()
        send_stream(d, [make_event(i) for i in range(10)])
        self.assertEqual(d.stop(), 0)
        self.upstream.start()
        d.start()
        self.assertEventsDelivered([event_id(i) for i in range(10)])

    @unittest.skip('spool_dir is not implemented yet: nothing survives '
                   'kill -9')
    def test_spool_survives_kill(self):
        spool = os.path.join(self.tmpdir, 'spool')
        os.makedirs(spool)
        d = self.start_daemon(buffer__spool_dir=spool)
        self.upstream.stop()
        send_stream(d, [make_event(i) for i in range(10)])
        d.kill()
        self.upstream.start()
        d.start()
        self.assertEventsDelivered([event_id(i) for i in range(10)])


if __name__ == '__main__':
    harness.main()
