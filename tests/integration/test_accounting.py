"""What becomes of accepted events, as segopsd reports it: a flush's
reply counts only the events that flush covers, by reason; the last log
line of a stop tells the truth about drops since start; a dry run never
claims an upstream answer; a stop with a mint in flight is quiet.

Each test here failed on the code before issue 8.
"""

import json
import signal
import socket
import threading
import time

import harness
from harness import (SegopsTestCase, event_id, make_event, ndjson,
                     parse_lines, send_stream)


def read_replies(sock, n, timeout=20.0):
    """n reply lines from a raw control connection."""
    deadline = time.monotonic() + timeout
    buf = b''
    while buf.count(b'\n') < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError('got %r' % buf)
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return parse_lines(buf.decode('utf-8'))


class FlushAccountingTests(SegopsTestCase):

    def test_flush_is_not_blamed_for_other_clients_drops(self):
        # Client A flushes 3 events while the upstream takes its time;
        # meanwhile client B overflows max_memory and loses events. A's
        # events all arrive: its flush is a success.
        d = self.start_daemon(upstream__max_in_flight='1',
                              batch__flush_interval='60',
                              batch__max_batch_bytes='65536',
                              buffer__max_memory='1M')
        # The upstream holds its answers until B has lost events.
        held = threading.Event()
        self.addCleanup(held.set)
        self.upstream.set_default(200, hold=held, kinds='events')
        a = d.connect_control()
        self.addCleanup(a.close)
        a.sendall(ndjson([make_event(i) for i in range(3)] +
                         [{'op': 'flush', 'timeout_ms': 20000}]).encode())
        # A's batch is in flight (the mock records a request only once
        # it has answered it).
        st = d.wait_for_stats(lambda s: s['in_flight'] == 1)
        self.assertEqual(st['in_flight'], 1)
        send_stream(d, [make_event(i, payload={'pad': 'x' * 2000})
                        for i in range(100, 1000)])
        st = d.stats()
        self.assertGreater(st['dropped']['memory_full'], 0)
        held.set()
        reply = read_replies(a, 1)
        self.assertEqual(reply, [{'ok': True, 'flushed': 3}])

    def test_flush_names_the_reason_of_its_own_drops(self):
        d = self.start_daemon(batch__flush_interval='60')
        self.upstream.script([400])
        r = d.control([make_event(i) for i in range(4)] +
                      [{'op': 'flush', 'timeout_ms': 10000}])
        self.assertEqual(len(r), 1)
        self.assertEqual(r[0]['ok'], False)
        self.assertEqual(r[0]['dropped'], 4)
        self.assertEqual(r[0]['dropped_by'], {'upstream_rejected': 4})
        self.assertEqual(r[0]['flushed'], 0)
        self.assertEqual(r[0]['pending'], 0)
        self.assertIn('upstream_rejected', r[0]['error'])


class StopReportTests(SegopsTestCase):

    def test_stop_line_tells_of_drops_since_start(self):
        # The stop line counts what was delivered, what the upstream
        # refused and what was lost, by reason (on the old code it only
        # said "2 accepted events were dropped", never what was delivered).
        d = self.start_daemon(batch__flush_interval='60')
        self.upstream.script([400])
        r = d.control([make_event(i) for i in range(2)] +
                      [{'op': 'flush', 'timeout_ms': 10000}])
        self.assertEqual(r[0]['dropped'], 2)
        r = d.control([make_event(i) for i in range(2, 5)] +
                      [{'op': 'flush', 'timeout_ms': 10000}])
        self.assertEqual(r[0], {'ok': True, 'flushed': 3})
        self.assertEqual(d.stop(), 0)
        log = d.stderr_text()
        self.assertNotIn('every accepted event was delivered', log)
        self.assertRegex(log, r'(?m)^segopsd: warning: stopped: every event still '
                              r'held was delivered; since start: 3 delivered, '
                              r'2 refused by the upstream \(2 upstream_rejected\), '
                              r'0 lost$')

    def test_clean_stop_line_counts_what_was_delivered(self):
        d = self.start_daemon(batch__flush_interval='60')
        r = d.control([make_event(i) for i in range(4)] +
                      [{'op': 'flush', 'timeout_ms': 10000}])
        self.assertEqual(r[0], {'ok': True, 'flushed': 4})
        self.assertEqual(d.stop(), 0)
        self.assertRegex(d.stderr_text(),
                         r'(?m)^segopsd: info: stopped: every accepted event was '
                         r'delivered; since start: 4 delivered, 0 lost$')

class StopTimeTests(SegopsTestCase):

    def test_idle_stop_does_not_wait_out_the_grace(self):
        # stop_grace bounds how long clients may hold the end of a stop;
        # with none connected there is nothing to wait for (on the old
        # code every stop took the whole grace).
        d = self.start_daemon(listen__stop_grace='30')
        send_stream(d, [make_event(1)])
        self.assertEqual(d.stop(timeout=20), 0)
        self.assertEventsDelivered([event_id(1)])


class MintAtStopTests(SegopsTestCase):
    api_key = 'pk_test_0123456789abcdef'

    def test_stop_with_a_mint_in_flight_is_quiet(self):
        # The mint's answer never comes before the stop ends: aborting it
        # is not a failed mint (no "retrying with backoff" warning).
        d = self.start_daemon(upstream__stop_timeout='0.5')
        self.upstream.script_mint([{'status': 200, 'delay': 30}])
        d.control({'op': 'set_user', 'user_id': 'u1'})
        send_stream(d, [make_event(1)])
        self.assertEqual(d.flush(timeout_ms=0)['ok'], False)
        st = d.wait_for_stats(lambda s: s['session']['state'] == 'minting')
        self.assertEqual(st['session']['state'], 'minting')
        self.assertEqual(d.stop(), 0)
        log = d.stderr_text()
        self.assertNotIn('session mint', log)
        self.assertNotIn('retrying with backoff', log)
        self.assertIn('1 events could not be delivered', log)


class DryRunStatsTests(SegopsTestCase):

    def test_dry_run_reports_no_upstream_answer(self):
        d = self.start_daemon(url='stdout', key=None)
        send_stream(d, [make_event(1)])
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 1})
        st = d.stats()
        self.assertEqual(st['upstream']['state'], 'dry_run')
        self.assertEqual(st['upstream']['last_status'], 0)
        self.assertEqual(st['sent'], 1)
        self.assertEqual(json.loads(d.stdout_text().splitlines()[-1])
                         ['events'][0]['event_id'], event_id(1))


if __name__ == '__main__':
    harness.main()
