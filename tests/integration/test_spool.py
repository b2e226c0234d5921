"""The disk spool (SPEC section 5, issue 9): accepted events survive a
restart, a crash and an outage longer than stop_timeout; a backlog larger
than max_memory waits on disk; what is done is not sent again; damage is
skipped, counted and logged, and never stops segopsd; a directory others
may write to, or another segopsd's, is refused at start."""

import glob
import json
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import unittest
import zlib

from harness import (SegopsTestCase, event_id, make_event, send_stream)


class SpoolCase(SegopsTestCase):

    def spool_daemon(self, **overrides):
        self.spool = os.path.join(self.tmpdir, 'spool')
        overrides.setdefault('upstream__stop_timeout', '1')
        return self.start_daemon(buffer__spool_dir=self.spool, **overrides)

    def segments(self):
        return sorted(glob.glob(os.path.join(self.spool, '*.seg')))

    def delivered_ids(self):
        return [e for e in self.upstream.events]


class RestartTests(SpoolCase):

    def test_outage_across_a_restart(self):
        d = self.spool_daemon()
        self.upstream.stop()
        send_stream(d, [make_event(i) for i in range(50)])
        self.assertEqual(d.stats()['spool']['pending_events'], 50)
        self.assertEqual(d.stop(), 0)
        self.assertIn('50 events wait in the spool', d.stderr_text())
        self.upstream.start()
        d.start()
        self.assertEventsDelivered([event_id(i) for i in range(50)])
        st = d.wait_for_stats(lambda s: s['spool']['pending_events'] == 0)
        self.assertEqual(st['spool']['replayed'], 50)
        self.assertEqual(sum(st['dropped'].values()), 0)
        self.assertNoViolations()

    def test_kill_9_loses_nothing_acknowledged(self):
        d = self.spool_daemon()
        self.upstream.stop()
        # The ping after the events answers only once they are written.
        send_stream(d, [make_event(i) for i in range(30)])
        d.kill()
        self.upstream.start()
        d.start()
        self.assertEventsDelivered([event_id(i) for i in range(30)])

    def test_what_was_delivered_is_not_sent_again(self):
        d = self.spool_daemon()
        send_stream(d, [make_event(i) for i in range(40)])
        self.assertEqual(d.flush()['ok'], True)
        # The checkpoint is written within SPOOL_ACK_DELAY_MS; a clean
        # stop writes it in any case.
        self.assertEqual(d.stop(), 0)
        before = len(self.upstream.events)
        d.start()
        send_stream(d, [make_event(100)])
        self.assertEventsDelivered([event_id(100)])
        self.assertEqual(len(self.upstream.events), before + 1)
        self.assertEqual(d.stats()['spool']['replayed'], 0)

    def test_segments_are_deleted_once_done(self):
        d = self.spool_daemon(buffer__max_spool='1M')  # 128 KiB segments
        for k in range(6):
            send_stream(d, [make_event(k * 100 + i, payload={'pad': 'p' * 600})
                            for i in range(100)])
        self.assertEqual(d.flush()['ok'], True)
        st = d.wait_for_stats(lambda s: s['spool']['segments'] <= 1)
        self.assertLessEqual(st['spool']['segments'], 1)
        self.assertGreater(st['spool']['segments_deleted'], 0)

    def test_flush_covers_replayed_events(self):
        d = self.spool_daemon()
        self.upstream.stop()
        send_stream(d, [make_event(i) for i in range(10)])
        self.assertEqual(d.stop(), 0)
        self.upstream.start()
        self.upstream.set_default(200, delay=0.5, kinds='events')
        d.start()
        r = d.flush(timeout_ms=20000)
        self.assertEqual(r, {'ok': True, 'flushed': 10})
        self.assertEqual(set(self.upstream.events), {event_id(i) for i in range(10)})


    def test_power_loss_leaves_an_empty_newest_segment(self):
        # Review reproduction. A power loss shortly after a segment was
        # created (spool_sync = interval) leaves it header-only (or
        # empty): its records never reached the disk. The next start takes
        # its first seq as next_seq and its first write asks O_EXCL for
        # the very same file name: EEXIST, memory-only. While a backlog
        # waits (an outage: when the spool matters) the unwritten records
        # keep that first seq, so every 5 s retry hits the same EEXIST.
        d = self.spool_daemon()
        self.upstream.stop()
        send_stream(d, [make_event(i) for i in range(10)])
        self.assertEqual(d.stop(), 0)
        head = b'SEGOPSPL' + struct.pack('<IIQQ', 1, 40, 11, 0)
        head += struct.pack('<II', zlib.crc32(head), 0)
        with open(os.path.join(self.spool, '%020d.seg' % 11), 'wb') as f:
            f.write(head)
        self.upstream.start()
        d.start()
        send_stream(d, [make_event(100)])
        self.assertEventsDelivered([event_id(i) for i in range(10)] + [event_id(100)])
        st = d.stats()
        self.assertEqual(st['spool']['state'], 'on', st['spool'])


class BacklogTests(SpoolCase):

    def test_backlog_larger_than_memory_waits_on_disk(self):
        d = self.spool_daemon(buffer__max_memory='1M',
                              batch__max_batch_bytes='65536')
        self.upstream.stop()
        n = 3000  # ~1 KB each: three times max_memory
        for k in range(0, n, 500):
            send_stream(d, [make_event(i, payload={'pad': 'q' * 900})
                            for i in range(k, min(n, k + 500))])
        st = d.stats()
        self.assertGreater(st['spool']['disk_only_events'], 0)
        self.assertEqual(sum(st['dropped'].values()), 0)
        self.assertLessEqual(st['queued_bytes'], 1 << 20)
        self.upstream.start()
        self.assertEventsDelivered([event_id(i) for i in range(n)], timeout=60)
        self.assertNoViolations()

    def test_spool_full_drops_newest_counted(self):
        d = self.spool_daemon(buffer__max_spool='1M', buffer__max_memory='1M',
                              batch__max_batch_bytes='65536')
        self.upstream.stop()
        for k in range(0, 2000, 500):
            send_stream(d, [make_event(i, payload={'pad': 'r' * 900})
                            for i in range(k, k + 500)])
        st = d.stats()
        self.assertGreater(st['dropped']['spool_full'], 0)
        self.assertLessEqual(st['spool']['bytes'], 1 << 20)


class DamageTests(SpoolCase):
    """Damage between runs: segopsd starts, skips and counts it, logs it
    once with the file and offset, and delivers every intact record."""

    def _spool_with(self, n, damage):
        d = self.spool_daemon()
        self.upstream.stop()
        send_stream(d, [make_event(i) for i in range(n)])
        self.assertEqual(d.stop(), 0)
        segs = self.segments()
        self.assertEqual(len(segs), 1)
        damage(segs[0])
        self.upstream.start()
        d.start()
        return d

    def test_overwritten_bytes_cost_only_their_records(self):
        def overwrite(path):
            size = os.path.getsize(path)
            with open(path, 'r+b') as f:
                f.seek(size // 2)
                f.write(b'\xff' * 16)
        d = self._spool_with(100, overwrite)
        st = d.wait_for_stats(lambda s: s['spool']['pending_events'] == 0
                              and s['sent'] > 0, timeout=15)
        lost = 100 - len(set(self.upstream.events))
        self.assertGreaterEqual(lost, 1)
        self.assertLessEqual(lost, 2)
        self.assertEqual(st['spool']['corrupt_records'], lost)
        self.assertEqual(st['dropped']['spool_corrupt'], lost)
        self.assertEqual(len(re.findall(r'is damaged at offset \d+', d.stderr_text())), 1)

    def test_torn_tail(self):
        d = self._spool_with(20, lambda p: os.truncate(p, os.path.getsize(p) - 5))
        st = d.wait_for_stats(lambda s: s['spool']['pending_events'] == 0
                              and s['sent'] >= 19, timeout=15)
        self.assertEqual(len(set(self.upstream.events)), 19)
        self.assertGreater(st['spool']['corrupt_bytes'], 0)

    def test_bad_header_and_garbage_files(self):
        def damage(path):
            with open(path, 'r+b') as f:
                f.write(b'NOTASPOOLFILE')
            with open(os.path.join(self.spool, '00000000000000099999.seg'), 'wb') as f:
                f.write(os.urandom(4096))
            open(os.path.join(self.spool, '00000000000000199999.seg'), 'wb').close()
            with open(os.path.join(self.spool, 'README'), 'w') as f:
                f.write('not ours\n')
        d = self._spool_with(10, damage)
        self.assertEventsDelivered([event_id(i) for i in range(10)])
        self.assertTrue(d.running())
        self.assertIn('has no valid segment header', d.stderr_text())
        self.assertIn('README is not a spool file', d.stderr_text())
        self.assertTrue(os.path.exists(os.path.join(self.spool, 'README')))


class DirectoryTests(SpoolCase):

    def test_directory_others_may_write_is_refused(self):
        spool = os.path.join(self.tmpdir, 'spool')
        os.makedirs(spool)
        os.chmod(spool, 0o777)
        d = self.make_daemon(buffer__spool_dir=spool)
        with self.assertRaises(RuntimeError):
            d.start()
        self.assertRegex(d.stderr_text(), r'spool_dir .* may be written by other users')

    def test_second_daemon_on_the_same_spool_is_refused(self):
        d = self.spool_daemon()
        other = self.make_daemon(buffer__spool_dir=self.spool)
        with self.assertRaises(RuntimeError):
            other.start()
        self.assertIn('in use by another segopsd (pid %d)' % d.pid, other.stderr_text())
        self.assertTrue(d.running())

    def test_unusable_directory_means_memory_only_then_recovers(self):
        # A path under a regular file can never be made: memory-only,
        # said once, counted; events still flow.
        blocker = os.path.join(self.tmpdir, 'file')
        open(blocker, 'w').close()
        d = self.start_daemon(buffer__spool_dir=os.path.join(blocker, 'spool'))
        send_stream(d, [make_event(i) for i in range(5)])
        self.assertEventsDelivered([event_id(i) for i in range(5)])
        st = d.stats()
        self.assertEqual(st['spool']['state'], 'memory_only_after_error')
        self.assertGreaterEqual(st['spool']['write_errors'], 1)
        self.assertEqual(d.stderr_text().count('goes on memory-only'), 1)


class DiskFullTests(SpoolCase):
    """A real full filesystem: a small tmpfs, mounted for the test (root
    only; skipped with the reason otherwise)."""

    def setUp(self):
        super().setUp()
        self.fs = self.small_tmpfs('256k')

    def test_full_disk_goes_memory_only_and_recovers(self):
        self.spool = os.path.join(self.fs, 'spool')
        d = self.start_daemon(buffer__spool_dir=self.spool,
                              buffer__max_spool='16M')
        self.upstream.stop()
        for k in range(0, 600, 100):
            send_stream(d, [make_event(i, payload={'pad': 'f' * 900})
                            for i in range(k, k + 100)])
        st = d.stats()
        self.assertEqual(st['spool']['state'], 'memory_only_after_error')
        self.assertGreaterEqual(st['spool']['write_errors'], 1)
        self.assertEqual(sum(st['dropped'].values()), 0)
        self.assertEqual(d.stderr_text().count('goes on memory-only'), 1)
        self.assertIn('free some space', d.stderr_text())
        self.upstream.start()
        self.assertEventsDelivered([event_id(i) for i in range(600)], timeout=30)
        # Delivered segments are deleted; the retry finds room again.
        st = d.wait_for_stats(lambda s: s['spool']['state'] == 'on', timeout=20)
        self.assertEqual(st['spool']['state'], 'on')
        self.assertGreaterEqual(st['spool']['recoveries'], 1)
        send_stream(d, [make_event(1000)])
        self.assertEventsDelivered([event_id(1000)])
        self.assertEqual(d.stop(), 0)

    def test_full_disk_with_a_backlog_keeps_max_memory_and_delivers(self):
        # Review reproduction. The upstream is down long enough that the
        # backlog outgrows max_memory (it waits on disk), then the disk
        # fills (ENOSPC). New events then pile up in the spool's wbuf,
        # charged to the memory account without a bound (q_charge), and
        # once that charge alone passes max_memory the refill can never
        # queue anything again: with the upstream back, what is on disk
        # is never sent, never acknowledged, never reclaimed, so the disk
        # the spool filled never frees up.
        self.spool = os.path.join(self.fs, 'spool')
        self.addCleanup(subprocess.run, ['umount', '-l', self.fs])
        subprocess.run(['umount', '-l', self.fs])
        r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=2m,mode=0700',
                            'tmpfs', self.fs], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        d = self.start_daemon(buffer__spool_dir=self.spool,
                              buffer__max_memory='1M', buffer__max_spool='16M',
                              batch__max_batch_bytes='65536')
        self.upstream.stop()
        n = 5000  # ~1 KB each: memory fills at ~900, the disk at ~1900
        for k in range(0, n, 250):
            send_stream(d, [make_event(i, payload={'pad': 'm' * 900})
                            for i in range(k, k + 250)])
        st = d.stats()
        self.assertEqual(st['spool']['state'], 'memory_only_after_error')
        # Disk and memory full, upstream down: drops are fair, if counted.
        want = n - sum(st['dropped'].values())
        self.upstream.start()
        # Observed: nothing after the ~985 events that were in memory is
        # ever delivered (the spool stays full, the retry never succeeds).
        self.upstream.wait_until(lambda: len(set(self.upstream.events)) >= want, 30)
        self.assertEqual(len(set(self.upstream.events)), want,
                         'delivered %d of %d (%d dropped) after the upstream came back'
                         % (len(set(self.upstream.events)), n, n - want))
        # Observed: ~4.1 MB. Slack: the read burst whose write failed.
        self.assertLessEqual(st['queued_bytes'], (1 << 20) + (128 << 10),
                             'max_memory is 1 MiB')


if __name__ == '__main__':
    unittest.main(verbosity=2)
