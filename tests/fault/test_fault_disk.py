"""Fault matrix: the spool's disk fills up, and max_memory is reached
while the upstream is down (SPEC section 5, docs/SPOOL.md "Memory and
the backlog", "When the disk fails"). Where the spool had room nothing
acknowledged may be lost; where a full disk cost events at a stop, the
drops segopsd counts (and logs at priority crit) must be exactly the
acknowledged events that never arrived."""

import os
import unittest

from faultlib import FaultCase, SCALE, size, vm_rss_kb


class DiskFullTests(FaultCase):
    """A real full filesystem: a small tmpfs, mounted for the test (root
    only; skipped with the reason otherwise)."""

    def setUp(self):
        super().setUp()
        self.fs = self.small_tmpfs('512k')

    def test_full_filesystem_then_stop(self):
        # The upstream is down; the disk fills; events go on being
        # acknowledged, memory-only. A stop loses those (counted, at
        # priority crit) and only those; the rest arrive after a start.
        d = self.spool_daemon(spool=os.path.join(self.fs, 'spool'), pad=900,
                              buffer__max_spool='16M')
        self.upstream.stop()
        self.runs.start()
        for _ in range(200):
            self.sender.run(events=100)
            st = self.runs.stats()
            if st['spool']['state'] != 'on':
                break
        self.assertEqual(st['spool']['state'], 'memory_only_after_error')
        self.sender.run(events=size(300, 3000))
        line = self.runs.stop()
        self.upstream.start()
        self.runs.start()
        st = self.wait_spool_empty()
        self.runs.stop()
        acc = self.account()
        self.record(
            'full filesystem (a 512 KiB tmpfs) with the upstream down, '
            'then SIGTERM', acc,
            'spool.state memory_only_after_error, write_errors >= 1; '
            'log: "cannot write in ...: No space left on device ... free '
            'some space", then at the stop (priority crit): "%s"'
            % line.split(': ', 1)[-1])
        self.assertIn('the spool could not take them', line)
        self.assertEqual(self.runs.stopped_lost(), acc['lost'])
        self.assertEqual(acc['dropped'], {'shutdown': acc['lost']}
                         if acc['lost'] else {})
        self.assertGreater(acc['delivered'], 0)
        self.assertNoViolations()


class MemoryTests(FaultCase):

    def test_max_memory_reached_while_the_upstream_is_down(self):
        # 1 MiB of memory, several times that in events: the rest waits
        # on disk. A clean stop keeps it all; a second run takes more,
        # then dies by kill -9; the third, with the upstream back, sends
        # everything while memory stays within max_memory.
        n = size(1500, 15000)
        d = self.spool_daemon(pad=900, buffer__max_memory='1M',
                              batch__max_batch_bytes='65536')
        self.upstream.stop()
        self.runs.start()
        self.sender.run(events=n)
        st = self.runs.stats()
        self.assertGreater(st['spool']['disk_only_events'], 0)
        self.assertLessEqual(st['queued_bytes'], 1 << 20)
        line = self.runs.stop()
        self.assertIn('%d events wait in the spool' % n, line)
        self.runs.start()
        self.sender.run(events=n)
        st = self.runs.stats()
        disk_only = st['spool']['disk_only_events']
        self.assertGreater(disk_only, n)
        self.runs.kill()
        self.upstream.start()
        self.runs.start()
        peak_bytes = peak_rss = 0
        for _ in range(int(600 / 0.1)):
            st = self.runs.stats()
            peak_bytes = max(peak_bytes, st['queued_bytes'])
            peak_rss = max(peak_rss, vm_rss_kb(d.pid))
            if st['spool']['pending_events'] == 0:
                break
            self.upstream.wait_until(lambda: False, 0.1)
        missing = self.wait_delivered()
        st = self.wait_spool_empty()
        self.runs.stop()
        acc = self.account()
        self.record(
            'max_memory (1 MiB) reached with the upstream down: %d events '
            'of ~1 KB, a SIGTERM, then a kill -9' % (2 * n), acc,
            'spool.disk_only_events %d before the kill; replay: '
            'spool.replayed %d, queued_bytes at most %d, VmRSS at most '
            '%d KiB; dropped {}' % (disk_only, st['spool']['replayed'],
                                    peak_bytes, peak_rss))
        self.assertFalse(missing)
        self.assertNoLoss(acc)
        self.assertNoDrops(acc)
        self.assertEqual(acc['duplicates'], 0)
        self.assertLessEqual(peak_bytes, 1 << 20)
        self.assertNoViolations()


if __name__ == '__main__':
    print('fault matrix scale %s' % SCALE)
    unittest.main(verbosity=2)
