"""Fault matrix: an upstream that hangs, cuts connections or refuses
large batches while events stream in (SPEC section 4), with the spool
on: answers that hang past `timeout`, connections reset after the
upstream stored the batch, 413 for every large batch. Nothing
acknowledged may be lost; the only drop allowed is the one the table
orders (a lone event still too large), counted; a resend is allowed only
for a request whose answer segopsd never got, and then carries the same
batch and the same event ids."""

import unittest

from faultlib import FaultCase, SCALE, size, stored_requests


class HangTests(FaultCase):

    def test_answers_hang_past_timeout(self):
        # The first few requests are answered only after `timeout`: the
        # daemon gives up on them and resends, and the mock stores the
        # hung ones too once it answers (to nobody).
        hung = size(4, 20)
        delay = 2.5
        d = self.spool_daemon(upstream__timeout='1')
        self.runs.start()
        self.upstream.script([{'status': 200, 'delay': delay}] * hung)
        self.sender.run(events=size(1000, 20000), rate=size(1000, 2000))
        missing = self.wait_delivered()
        self.assertTrue(self.upstream.wait_until(
            lambda: sum(1 for r in self.upstream.batch_requests
                        if r['done'] - r['time'] >= delay) >= hung, 30))
        st = self.wait_spool_empty()
        self.runs.stop()
        acc = self.account()
        slow = [r for r in stored_requests(self.upstream)
                if r['done'] - r['time'] >= delay]
        in_slow = {e for r in slow for e in r['event_ids']}
        resent = {e for e, n in acc['copies'].items() if n > 1}
        self.record(
            'answers that hang %.1f s, past timeout = 1 s (%d requests)'
            % (delay, hung), acc,
            'retries %d; every resent event was in one of the %d requests '
            'that timed out (%d distinct events, some resent and hung '
            'again), which the mock stored after segopsd gave up; log: '
            '"upstream request failed (Timeout was reached), retrying with '
            'backoff"' % (st['retries'], len(slow), len(in_slow)))
        self.assertFalse(missing)
        self.assertNoLoss(acc)
        self.assertNoDrops(acc)
        self.assertLessEqual(resent, in_slow, 'resends of events whose '
                             'request was answered in time')
        self.assertGreaterEqual(st['retries'], hung)
        self.assertEqual(self.upstream.conflicts, [])
        self.assertNoViolations()


class ResetTests(FaultCase):

    def test_connection_reset_after_the_batch_was_stored(self):
        # Every third request: stored, then the connection is cut
        # without an answer. The resend must be the same batch (same
        # batch_id, identical body: the mock checks) with the same
        # event ids, and is the only duplicate.
        resets = size(5, 50)
        d = self.spool_daemon()
        self.runs.start()
        self.upstream.script([{'drop': True, 'store': True}, 200, 200]
                             * resets)
        self.sender.run(events=size(1500, 20000), rate=size(1500, 3000))
        missing = self.wait_delivered()
        self.assertTrue(self.upstream.wait_until(
            lambda: self.upstream.pending_script()[0] == 0, 30))
        missing |= self.wait_delivered()
        st = self.wait_spool_empty()
        self.runs.stop()
        acc = self.account()
        reqs = self.upstream.batch_requests
        cut = [r for r in reqs if r['status'] == 'dropped' and r['stored']]
        cut_ids = {r['batch_id'] for r in cut}
        answered = {r['batch_id']: r for r in reqs if r['status'] == 200}
        not_resent = [b for b in cut_ids if b not in answered]
        changed = [r['batch_id'] for r in cut
                   if answered.get(r['batch_id'], r)['event_ids'] !=
                   r['event_ids']]
        # The upstream answers the final 200 of a cut batch with all its
        # events as duplicates; segopsd counts what it is told.
        told = sum(answered[b]['n_events'] for b in cut_ids
                   if b in answered)
        self.record(
            'connection reset after the upstream stored the batch '
            '(%d requests, %d batches)' % (len(cut), len(cut_ids)), acc,
            'every cut batch resent with the same batch_id and event ids '
            'until answered; stats.duplicates %d (what the upstream '
            'answered); stats.retries %d (libcurl also resends once by '
            'itself when a reused connection dies unanswered); log: '
            '"upstream request failed (Empty reply from server), retrying '
            'with backoff"' % (st['duplicates'], st['retries']))
        self.assertFalse(missing)
        self.assertNoLoss(acc)
        self.assertNoDrops(acc)
        self.assertEqual(len(cut), resets)
        self.assertEqual(not_resent, [], 'cut batches never answered')
        self.assertEqual(changed, [], 'resent with other event ids')
        # Each cut stored one copy more than the final answer.
        self.assertEqual(acc['duplicates'],
                         sum(r['n_events'] for r in cut))
        self.assertEqual(st['duplicates'], told)
        self.assertEqual(self.upstream.conflicts, [])
        self.assertNoViolations()


class TooLargeTests(FaultCase):

    def test_413_on_every_large_batch(self):
        # The upstream takes at most 8 events and 16 KiB a request: every
        # batch of 50 is split until it fits. One event alone is larger
        # than 16 KiB: the table drops it, counted as too_large.
        d = self.spool_daemon(batch__batch_size='50')
        self.runs.start()
        self.upstream.too_large_over(events=8, body_bytes=16384)
        n = size(600, 20000)
        self.sender.run(events=n // 2, rate=size(2000, 3000))
        big = {'event_id': 'f-big', 'user_id': 'u1', 'event_type': 'fault',
               'payload': {'blob': 'b' * 20000}}
        self.sender.send_one(big)
        self.sender.run(events=n // 2, rate=size(2000, 3000))
        missing = self.wait_delivered(self.sender.acked - {'f-big'})
        st = self.wait_spool_empty()
        self.runs.stop()
        acc = self.account()
        reqs = self.upstream.batch_requests
        self.record(
            '413 on every batch over 8 events or 16 KiB; one event alone '
            'over 16 KiB', acc,
            'splits %d, %d requests refused with 413; the lone large event '
            'dropped: dropped.too_large 1; log: "upstream refused a single '
            'event as too large (HTTP 413); it is dropped"'
            % (st['splits'], sum(1 for r in reqs if r['status'] == 413)))
        self.assertFalse(missing)
        self.assertEqual(acc['lost_ids'], ['f-big'])
        self.assertEqual(acc['dropped'], {'too_large': 1})
        self.assertEqual(acc['duplicates'], 0)
        self.assertGreater(st['splits'], 0)
        self.assertTrue(all(r['n_events'] <= 8 for r in reqs
                            if r['status'] == 200))
        self.assertIn('too large (HTTP 413); it is dropped',
                      d.stderr_text())
        self.assertNoViolations()


if __name__ == '__main__':
    print('fault matrix scale %s' % SCALE)
    unittest.main(verbosity=2)
