#!/usr/bin/env python3
"""Hostile and broken upstream answers: the daemon's response parsing
and its timeouts. Whatever the upstream says, segopsd must neither crash
nor lose events nor retry forever what was accepted."""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'lib'))

import harness  # noqa: E402
from harness import SegopsTestCase, event_id, make_event  # noqa: E402


def send_and_ping(d, n, first=0):
    replies = d.control([make_event(i) for i in range(first, first + n)] +
                        [{'op': 'ping'}], timeout=15)
    assert all(r.get('ok') for r in replies), replies


class HostileUpstreamAnswers(SegopsTestCase):

    def settled(self, d, sent):
        return d.wait_for_stats(lambda s: s['sent'] >= sent and
                                s['in_flight'] == 0, 10)

    def test_200_with_garbage_bodies_is_delivered_once(self):
        """A 2xx is delivery whatever its body says: garbage, wrong
        types, truncated JSON, binary, negative counts."""
        d = self.start_daemon(batch__batch_size='1')
        bodies = ['not json', '{"accepted":"many"}', '{"accepted":',
                  '\x00\xff\xfe', '{"accepted":-5,"duplicates":-1}',
                  '[]', '{"accepted":1e999}']
        self.upstream.script([{'status': 200, 'body': b} for b in bodies])
        send_and_ping(d, len(bodies))
        self.assertEventsDelivered([event_id(i) for i in range(len(bodies))],
                                   timeout=10)
        st = self.settled(d, len(bodies))
        self.assertEqual(st['sent'], len(bodies))
        self.assertEqual(st['retries'], 0)
        self.assertEqual(len(self.upstream.batch_requests), len(bodies))
        self.assertNoViolations()

    def test_huge_answer_bodies_are_read_and_bounded(self):
        """A 5 MB answer to a 500 and to a 200: the event is retried once
        and delivered; the daemon keeps only the head of an answer."""
        d = self.start_daemon()
        big = 'x' * (5 * 1024 * 1024)
        self.upstream.script([{'status': 500, 'body': big},
                              {'status': 200, 'body': big}])
        send_and_ping(d, 3)
        self.assertEventsDelivered([event_id(i) for i in range(3)],
                                   timeout=15)
        st = self.settled(d, 3)
        self.assertEqual(st['retries'], 1)
        with open('/proc/%d/status' % d.proc.pid) as f:
            rss_kb = int([line.split()[1] for line in f
                          if line.startswith('VmHWM:')][0])
        # Far below what buffering 10 MB of answers would take (ASan
        # builds carry their own overhead, hence the generous bound).
        sanitized = 'asan' in os.environ.get('SEGOPSD', '')
        limit = 200000 if sanitized else 40000
        self.assertLess(rss_kb, limit)
        self.assertNoViolations()

    def test_request_timeout_is_retried(self):
        """An upstream that does not answer within [upstream] timeout:
        the request is abandoned and retried, the event arrives once."""
        d = self.start_daemon(upstream__timeout='1')
        self.upstream.script([{'status': 200, 'delay': 3}])
        t0 = time.monotonic()
        send_and_ping(d, 2)
        self.assertEventsDelivered([event_id(0), event_id(1)], timeout=20)
        st = self.settled(d, 2)
        self.assertGreaterEqual(st['retries'], 1)
        self.assertLess(time.monotonic() - t0, 15)
        self.assertEqual(sum(st['dropped'].values()), 0)
        self.assertNoViolations()

    def test_nonsense_retry_after_falls_back_to_backoff(self):
        """Retry-After that is neither seconds nor an HTTP date is
        ignored: ordinary backoff (0.1 s here), not a long pause."""
        d = self.start_daemon()
        self.upstream.script([{'status': 429, 'headers': {'Retry-After': 'soon'}},
                              {'status': 503, 'headers': {'Retry-After': '-5'}}])
        t0 = time.monotonic()
        send_and_ping(d, 1)
        self.assertEventsDelivered([event_id(0)], timeout=10)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertNoViolations()

    def test_huge_retry_after_is_capped(self):
        d = self.start_daemon(upstream__retry_after_max='1')
        self.upstream.script([{'status': 429,
                               'headers': {'Retry-After': '99999999999'}}])
        t0 = time.monotonic()
        send_and_ping(d, 1)
        self.assertEventsDelivered([event_id(0)], timeout=10)
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, 6)
        self.assertNoViolations()

    def test_other_2xx_is_delivered(self):
        d = self.start_daemon(batch__batch_size='1')
        self.upstream.script([201, 204])
        send_and_ping(d, 2)
        self.assertEventsDelivered([event_id(0), event_id(1)], timeout=10)
        st = self.settled(d, 2)
        self.assertEqual((st['sent'], st['retries']), (2, 0))
        self.assertNoViolations()

    def test_redirect_is_not_followed_and_events_are_kept(self):
        """A 3xx means api_url is wrong (http -> https, a moved host):
        not followed, not dropped; kept, retried, and logged."""
        d = self.start_daemon()
        self.upstream.script([{'status': 302,
                               'headers': {'Location': 'http://127.0.0.2:1/'}}])
        send_and_ping(d, 2)
        self.assertEventsDelivered([event_id(0), event_id(1)], timeout=10)
        st = self.settled(d, 2)
        self.assertEqual(sum(st['dropped'].values()), 0)
        self.assertEqual(st['retries'], 1)
        self.assertIn('redirect', d.stderr_text())
        self.assertEqual(len(self.upstream.batch_requests), 2)
        self.assertNoViolations()

    def test_418_is_a_permanent_rejection(self):
        d = self.start_daemon()
        self.upstream.script([418])
        send_and_ping(d, 2)
        st = d.wait_for_stats(
            lambda s: s['dropped'].get('upstream_rejected', 0) >= 2 and
            s['in_flight'] == 0, 10)
        self.assertEqual(st['dropped']['upstream_rejected'], 2)
        self.assertEqual(len(self.upstream.batch_requests), 1)
        self.assertNoViolations()


if __name__ == '__main__':
    harness.main()
