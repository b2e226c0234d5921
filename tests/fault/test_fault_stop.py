"""Fault matrix: clean stops while the upstream cannot take the events
(SPEC section 5): SIGTERM while the upstream refuses everything, then a
healthy restart; an upstream down for longer than stop_timeout across a
restart. With the spool on, every acknowledged event is kept on disk
and sent after the next start, once: nothing lost, dropped or resent."""

import unittest

from faultlib import FaultCase, SCALE, size


class StopTests(FaultCase):

    def test_sigterm_while_the_upstream_refuses_everything(self):
        n1, n2 = size(1000, 20000), size(500, 5000)
        d = self.spool_daemon()
        self.runs.start()
        self.upstream.set_default(503, kinds='events')
        self.sender.run(events=n1)
        self.assertTrue(self.upstream.wait_until(
            lambda: len(self.upstream.batch_requests) >= 3, 10))
        line = self.runs.stop()
        self.assertIn('%d events wait in the spool' % n1, line)
        self.upstream.set_default(None)
        self.runs.start()
        self.sender.run(events=n2)
        missing = self.wait_delivered()
        st = self.wait_spool_empty()
        self.runs.stop()
        acc = self.account()
        self.record(
            'SIGTERM (stop_timeout 0.3 s) with the upstream answering 503 '
            'to everything, then a restart with it healthy', acc,
            'log: "stopped: %d events wait in the spool"; next run: '
            'spool.replayed %d; dropped {}' % (n1, st['spool']['replayed']))
        self.assertFalse(missing)
        self.assertNoLoss(acc)
        self.assertNoDrops(acc)
        self.assertEqual(st['spool']['replayed'], n1)
        self.assertEqual(acc['duplicates'], 0)
        self.assertNoViolations()

    def test_outage_longer_than_stop_timeout_across_a_restart(self):
        n1, n2 = size(1000, 20000), size(1000, 20000)
        d = self.spool_daemon()
        self.upstream.stop()
        self.runs.start()
        self.sender.run(events=n1)
        line = self.runs.stop()
        self.assertIn('%d events wait in the spool' % n1, line)
        self.runs.start()
        self.sender.run(events=n2)
        st = self.runs.stats()
        self.assertEqual(st['spool']['pending_events'], n1 + n2)
        self.upstream.start()
        missing = self.wait_delivered()
        st = self.wait_spool_empty()
        self.runs.stop()
        acc = self.account()
        self.record(
            'upstream down (connection refused) for longer than '
            'stop_timeout (0.3 s), across a restart', acc,
            'log: "stopped: %d events wait in the spool"; next run: '
            'spool.replayed %d, upstream.state ok after; dropped {}'
            % (n1, st['spool']['replayed']))
        self.assertFalse(missing)
        self.assertNoLoss(acc)
        self.assertNoDrops(acc)
        self.assertEqual(acc['duplicates'], 0)
        self.assertNoViolations()


if __name__ == '__main__':
    print('fault matrix scale %s' % SCALE)
    unittest.main(verbosity=2)
