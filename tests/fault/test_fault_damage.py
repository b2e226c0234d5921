"""Fault matrix: a spool damaged between runs (SPEC section 5,
docs/SPOOL.md "Damage"): a torn tail, overwritten bytes, a truncated
segment, a garbage file. segopsd must start and run, deliver every
intact record, and count as dropped exactly the acknowledged events the
damage cost: no more, no fewer."""

import glob
import os
import unittest

from faultlib import FaultCase, SCALE, size


class DamageTests(FaultCase):
    """Events wait in the spool (the upstream is down) at a clean stop;
    the spool is damaged; segopsd starts with the upstream back."""

    def segments(self):
        return sorted(glob.glob(os.path.join(self.spool, '*.seg')))

    def damaged_run(self, fault, damage):
        n = size(1000, 20000)
        d = self.spool_daemon(pad=200, buffer__max_spool=size('1M', '16M'))
        self.upstream.stop()
        self.runs.start()
        self.sender.run(events=n)
        self.runs.stop()
        segs = self.segments()
        self.assertGreaterEqual(len(segs), 3)
        what = damage(segs)
        self.upstream.start()
        self.runs.start()
        # What survived is sent; then nothing may be left pending.
        st = self.wait_spool_empty(timeout=size(3, 60))
        pending = st['spool']['pending_events']
        # It goes on: new events are spooled and delivered.
        before = set(self.sender.acked)
        self.sender.run(events=100)
        missing_new = self.wait_delivered(self.sender.acked - before)
        st = self.wait_spool_empty()
        self.runs.stop()
        acc = self.account()
        sp = st['spool']
        self.record(
            fault, acc,
            '%s; after the replay spool.pending_events %d; '
            'spool.corrupt_records %d, corrupt_bytes %d, '
            'dropped.spool_corrupt %d; spool.state %s at the end, '
            'write_errors %d; log: %s'
            % (what, pending, sp['corrupt_records'], sp['corrupt_bytes'],
               st['dropped']['spool_corrupt'], sp['state'],
               sp['write_errors'], self.damage_log(d)))
        self.assertEqual(pending, 0, 'events pending that do not exist')
        self.assertFalse(missing_new, 'new events after the damage were '
                         'not delivered')
        # Counted exactly: every acknowledged event that did not arrive,
        # and nothing else.
        self.assertEqual(acc['dropped'].get('spool_corrupt', 0),
                         acc['lost'], 'dropped.spool_corrupt is not what '
                         'the damage cost')
        self.assertEqual(set(acc['dropped']) - {'spool_corrupt'}, set())
        self.assertEqual(sp['corrupt_records'], acc['lost'])
        self.assertEqual(sp['write_errors'], 0, 'the spool failed')
        self.assertEqual(sp['state'], 'on')
        self.assertNoViolations()
        return acc

    def damage_log(self, d):
        lines = [l.split(': ', 2)[-1] for l in d.stderr_text().splitlines()
                 if 'spool' in l and ('damage' in l or 'header' in l or
                                      'cannot' in l)]
        return '; '.join('"%s"' % l for l in lines[:3]) or 'nothing'

    def test_torn_tail(self):
        def damage(segs):
            os.truncate(segs[-1], os.path.getsize(segs[-1]) - 5)
            return 'the newest segment lost its last 5 bytes'
        acc = self.damaged_run('torn tail (the newest segment, 5 bytes '
                               'short)', damage)
        self.assertEqual(acc['lost'], 1)

    def test_overwritten_bytes_in_the_middle(self):
        def damage(segs):
            path = segs[len(segs) // 2]
            with open(path, 'r+b') as f:
                f.seek(os.path.getsize(path) // 2)
                f.write(b'\xff' * 16)
            return '16 bytes overwritten mid-file'
        acc = self.damaged_run('16 bytes overwritten in the middle of a '
                               'segment', damage)
        self.assertIn(acc['lost'], (1, 2))

    def test_truncated_newest_segment(self):
        def damage(segs):
            os.truncate(segs[-1], os.path.getsize(segs[-1]) // 2)
            return 'the newest segment cut to half its size'
        acc = self.damaged_run('truncated file (the newest segment, to '
                               'half)', damage)
        self.assertGreater(acc['lost'], 0)

    def test_truncated_older_segment(self):
        def damage(segs):
            os.truncate(segs[1], os.path.getsize(segs[1]) // 2)
            return 'the second segment cut to half its size'
        acc = self.damaged_run('truncated file (an older segment, to '
                               'half)', damage)
        self.assertGreater(acc['lost'], 0)

    def test_garbage_file(self):
        # A stray file of random bytes named like a segment, after the
        # newest one: it holds no record, so nothing may be lost, and the
        # spool must go on writing.
        def damage(segs):
            name = os.path.join(self.spool, '%020d.seg' % 999999)
            with open(name, 'wb') as f:
                f.write(os.urandom(4096))
            return '4 KiB of random bytes as %s' % os.path.basename(name)
        acc = self.damaged_run('garbage file named like a segment, after '
                               'the newest', damage)
        self.assertEqual(acc['lost'], 0)

    def test_empty_segment_file_after_the_newest(self):
        # What a crash (or a power loss) between creating a segment file
        # and writing its header leaves: an empty file named after the
        # next seq. Nothing is lost; the spool must go on writing.
        def damage(segs):
            last = self.runs.last_stats['spool']['next_seq']
            name = os.path.join(self.spool, '%020d.seg' % last)
            open(name, 'wb').close()
            return 'an empty %s' % os.path.basename(name)
        acc = self.damaged_run('empty segment file named after the next '
                               'seq (a crash between creating a segment '
                               'and writing its header)', damage)
        self.assertEqual(acc['lost'], 0)


if __name__ == '__main__':
    print('fault matrix scale %s' % SCALE)
    unittest.main(verbosity=2)
