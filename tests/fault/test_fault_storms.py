"""Fault matrix: storms of 500, 503 and 429 answers, with and without
Retry-After, while events stream in (SPEC section 4's response table),
with the spool on. Nothing acknowledged may be lost or dropped, nothing
resent (a refused batch was not stored), and no request may go out
inside a Retry-After pause."""

import time
import unittest

from faultlib import FaultCase, SCALE, size

# A request that arrives this soon after a Retry-After answer was on its
# way before segopsd read the answer.
PAUSE_SLACK = 0.3


class StormTests(FaultCase):
    """While the storm lasts, every events request gets the same error;
    then the upstream is healthy again and the stream goes on."""

    def storm(self, status, retry_after=None):
        before, after = size(100, 5000), size(200, 5000)
        seconds, rate = size(0.8, 15.0), size(1000, 2000)
        d = self.spool_daemon(upstream__backoff_max='0.5')
        self.runs.start()
        self.sender.run(events=before, rate=rate)
        headers = {'Retry-After': retry_after} if retry_after else None
        t0 = time.monotonic()
        self.upstream.set_default(status, headers=headers, kinds='events')
        self.sender.run(seconds=seconds, rate=rate)
        # The storm is felt: several requests refused (or every one that
        # a Retry-After pause let through).
        refused = lambda: [r for r in self.upstream.batch_requests
                           if r['status'] == status]
        self.assertTrue(self.upstream.wait_until(
            lambda: len(refused()) >= 2, 15), 'no refused request')
        self.upstream.set_default(None)
        storm_s = time.monotonic() - t0
        self.sender.run(events=after, rate=rate)
        missing = self.wait_delivered()
        st = self.wait_spool_empty()
        self.runs.stop()
        acc = self.account()
        early = self.sent_during_pauses(refused(), float(retry_after)) \
            if retry_after else []
        self.record(
            '%d storm%s for %.1f s during a stream'
            % (status, ' with Retry-After: %s' % retry_after
               if retry_after else ' (no Retry-After)', storm_s), acc,
            '%d requests refused, retries %d, upstream.state ok after%s; '
            'log: "upstream is overloaded (HTTP %d), %s" rate-limited'
            % (len(refused()), st['retries'],
               '; %d requests sent inside a pause' % len(early)
               if retry_after else '', status,
               'honouring Retry-After' if retry_after else 'backing off')
            if status != 500 else
            '%d requests refused, retries %d, upstream.state ok after; '
            'log: "upstream request failed (HTTP 500), retrying with '
            'backoff" rate-limited' % (len(refused()), st['retries']))
        self.assertFalse(missing)
        self.assertNoLoss(acc)
        self.assertNoDrops(acc)
        self.assertEqual(acc['duplicates'], 0)
        self.assertGreater(st['retries'], 0)
        self.assertEqual(st['upstream']['state'], 'ok')
        self.assertEqual(early, [], 'requests sent during a Retry-After '
                         'pause')
        self.assertNoViolations()

    def sent_during_pauses(self, answers, pause):
        """Requests that arrived inside a Retry-After pause: later than
        PAUSE_SLACK after an answer that said pause (requests already on
        their way then are not its business) and before it ended."""
        return [r for r in self.upstream.batch_requests for a in answers
                if a['done'] + PAUSE_SLACK < r['time'] <
                a['done'] + pause - PAUSE_SLACK]

    def test_500_storm(self):
        self.storm(500)

    def test_503_storm(self):
        self.storm(503)

    def test_429_storm(self):
        self.storm(429)

    def test_429_storm_with_retry_after(self):
        self.storm(429, retry_after='1')

    def test_503_storm_with_retry_after(self):
        self.storm(503, retry_after='1')


if __name__ == '__main__':
    print('fault matrix scale %s' % SCALE)
    unittest.main(verbosity=2)
