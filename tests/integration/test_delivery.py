"""Delivery under faults, as a fault trial of issue 9 found it lacking:
an outage's backlog goes out at once when the upstream is back, a stop
sends what it holds even when its batches were waiting out a backoff,
a flood before the first answer is paused rather than dropped, a fixed
ca_file or api_url applies at a reload, and events lost at a stop are
logged where an operator finds them after the process is gone.

Each test here fails on the code before issue 9.
"""

import os
import signal
import threading
import unittest

import tlsca
from harness import (SegopsTestCase, event_id, make_event, send_stream)


class CatchUpTests(SegopsTestCase):

    def test_backlog_goes_at_once_when_the_upstream_is_back(self):
        # Eight batches fail once and wait a backoff of up to 20 s each
        # (full jitter). The first retry that succeeds releases the
        # others: they follow at once, not each at its own random time.
        d = self.start_daemon(upstream__max_in_flight='8',
                              upstream__backoff_initial='20',
                              upstream__backoff_max='20',
                              batch__batch_size='5')
        self.upstream.script([503] * 8)
        send_stream(d, [make_event(i) for i in range(40)])
        self.assertEventsDelivered([event_id(i) for i in range(40)],
                                   timeout=40)
        reqs = self.upstream.batch_requests
        ok = [r for r in reqs if r['status'] == 200]
        first = min(r['time'] for r in ok)
        late = [r['time'] - first for r in ok if r['time'] - first > 2.0]
        self.assertEqual(late, [], 'batches still waited on their own '
                                   'backoff after the first success')
        self.assertNoViolations()


class StopTests(SegopsTestCase):

    def test_stop_sends_what_waits_on_a_backoff(self):
        # The upstream is fine again, but the batch waits out a backoff of
        # up to a minute; a stop with a 5 s deadline still delivers it.
        d = self.start_daemon(upstream__backoff_initial='60',
                              upstream__backoff_max='60',
                              upstream__stop_timeout='5',
                              batch__flush_interval='0.1')
        self.upstream.script([503])
        send_stream(d, [make_event(i) for i in range(3)])
        st = d.wait_for_stats(lambda s: s['upstream']['state'] == 'throttled')
        self.assertEqual(st['upstream']['state'], 'throttled')
        self.assertEqual(d.stop(), 0)
        self.assertEventsDelivered([event_id(i) for i in range(3)], timeout=1)
        self.assertIn('every accepted event was delivered', d.stderr_text())

    def test_lost_events_are_logged_at_priority_crit(self):
        # Under systemd (stderr is the journal stream) the line that
        # counts events lost at a stop has priority 2, so
        # `journalctl -u segopsd -p crit` finds it later.
        d = self.make_daemon(upstream__stop_timeout='0.2')
        open(d.stderr_path, 'ab').close()
        st = os.stat(d.stderr_path)
        d._extra_env['JOURNAL_STREAM'] = '%d:%d' % (st.st_dev, st.st_ino)
        d.start()
        self.upstream.set_default(503)
        send_stream(d, [make_event(i) for i in range(4)])
        self.assertEqual(d.stop(), 0)
        self.assertRegex(d.stderr_text(),
                         r'(?m)^<2>stopped: 4 events could not be delivered '
                         r'before stop_timeout and are lost \(no spool_dir: '
                         r'memory-only\); since start: 0 delivered, 4 lost '
                         r'\(4 shutdown\)$')


class BackpressureTests(SegopsTestCase):

    def test_flood_before_the_first_answer_is_paused(self):
        # No answer from the upstream yet is no evidence of failure: a
        # flood that fills 3/4 of max_memory pauses the reader.
        d = self.start_daemon(buffer__max_memory='1M',
                              batch__max_batch_bytes='65536',
                              upstream__max_in_flight='1')
        self.upstream.set_default(200, delay=30, kinds='events')
        done = threading.Event()

        def flood():
            try:
                d.send_events_dgram([make_event(i, payload={'pad': 'x' * 900})
                                     for i in range(3000)])
            except OSError:
                pass
            done.set()

        t = threading.Thread(target=flood, daemon=True)
        t.start()
        st = d.wait_for_stats(lambda s: s['ingest']['pauses'] >= 1, timeout=15)
        self.assertGreaterEqual(st['ingest']['pauses'], 1)
        self.assertEqual(st['upstream']['state'], 'idle')
        self.upstream.set_default(None)
        done.wait(30)


class ReloadTests(SegopsTestCase):
    tls = True

    def test_reload_fixes_a_wrong_ca_file(self):
        wrong_ca, _, _ = tlsca.make_ca(os.path.join(self.tmpdir, 'other-ca'))
        d = self.start_daemon(upstream__ca_file=wrong_ca)
        send_stream(d, [make_event(i) for i in range(3)])
        st = d.wait_for_stats(lambda s: s['upstream']['state'] == 'tls_error')
        self.assertEqual(st['upstream']['state'], 'tls_error')
        d.config['upstream']['ca_file'] = self.ca_file
        d.write_config()
        d.send_signal(signal.SIGHUP)
        self.assertEventsDelivered([event_id(i) for i in range(3)], timeout=15)
        self.assertNotIn('ca_file changed', d.stderr_text())
        self.assertNoViolations()


if __name__ == '__main__':
    unittest.main(verbosity=2)
