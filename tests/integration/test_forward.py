#!/usr/bin/env python3
"""Integration tests of what segopsd sends upstream (SPEC section 4).

The strict MockUpstream checks every request against the contract
(headers, body shape, identical bodies on retries, ...): each test ends
with assertNoViolations(). The tests script the upstream's answers and
check the daemon's reaction in exact numbers: which events arrived, in
how many requests, what was counted as dropped and why.
"""

import datetime
import email.utils
import json
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'lib'))

import harness  # noqa: E402
from harness import (SegopsTestCase, event_id, make_event,  # noqa: E402
                     ndjson, send_stream)
from mockupstream import MockUpstream  # noqa: E402
import tlsca  # noqa: E402

UUID4_RE = re.compile(
    r'^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$')
TIME_RE = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$')


def settled_stats(d, sent, timeout=10.0):
    """Stats once the daemon has processed the answers for `sent` events
    (the mock records an event before the daemon reads the answer)."""
    return d.wait_for_stats(lambda s: s['sent'] >= sent and
                            s['in_flight'] == 0, timeout)


def batch_sizes(up):
    return [r['n_events'] for r in up.batch_requests]


def max_overlap(reqs):
    """Most requests whose [time, done] spans overlap at one instant."""
    points = []
    for r in reqs:
        points.append((r['time'], 1))
        points.append((r['done'], -1))
    points.sort(key=lambda p: (p[0], p[1]))
    cur = best = 0
    for _, step in points:
        cur += step
        best = max(best, cur)
    return best


class DeliveryTests(SegopsTestCase):

    def test_events_arrive_exactly(self):
        d = self.start_daemon(batch__flush_interval='60')
        msgs = [
            make_event(0),
            make_event(1, user='user-2', event_type='signup',
                       payload={'plan': 'pro', 'n': [1, 2.5, None, True],
                                'nested': {'x': 'ü€'}}),
            {'user_id': 'u3', 'event_type': 'no_id'},
            make_event(3, occurred_at='2026-11-27T06:00:00.123456+01:00'),
            make_event(4, occurred_at=1700000000.5678),
            make_event(5, occurred_at='2026-01-02T03:04:05Z'),
            {'type': 'identify', 'user_id': 'u7', 'traits': {'k': 'v'},
             'event_id': 'ident-1'},
            {'type': 'track', 'user_id': 'u8', 'event_type': 'typed',
             'event_id': 'a.B:c-d_9'},
        ]
        before = time.time()
        send_stream(d, msgs)
        self.assertEqual(d.flush(), {'ok': True, 'flushed': len(msgs)})
        after = time.time()
        evs = self.upstream.events
        self.assertEqual(len(evs), len(msgs))
        self.assertEqual(evs[event_id(0)],
                         {'event_id': event_id(0), 'user_id': 'u1',
                          'event_type': 'test', 'payload': {'i': 0},
                          'occurred_at': evs[event_id(0)]['occurred_at']})
        self.assertEqual(evs[event_id(1)]['payload'],
                         {'plan': 'pro', 'n': [1, 2.5, None, True],
                          'nested': {'x': 'ü€'}})
        self.assertEqual(evs[event_id(1)]['user_id'], 'user-2')
        self.assertEqual(evs[event_id(1)]['event_type'], 'signup')
        assigned = [e for k, e in evs.items() if e['event_type'] == 'no_id']
        self.assertEqual(len(assigned), 1)
        self.assertRegex(assigned[0]['event_id'], UUID4_RE)
        self.assertEqual(assigned[0]['payload'], {})
        self.assertEqual(evs[event_id(3)]['occurred_at'],
                         '2026-11-27T05:00:00.123Z')
        self.assertEqual(evs[event_id(4)]['occurred_at'],
                         '2023-11-14T22:13:20.567Z')
        self.assertEqual(evs[event_id(5)]['occurred_at'],
                         '2026-01-02T03:04:05.000Z')
        self.assertEqual(evs['ident-1'],
                         {'event_id': 'ident-1', 'user_id': 'u7',
                          'event_type': 'context_identified',
                          'payload': {'traits': {'k': 'v'}},
                          'occurred_at': evs['ident-1']['occurred_at']})
        self.assertEqual(evs['a.B:c-d_9']['event_type'], 'typed')
        # Defaulted occurred_at: the receipt time, in the wire format.
        for e in (evs[event_id(0)], assigned[0]):
            self.assertRegex(e['occurred_at'], TIME_RE)
            t = time.mktime(time.strptime(e['occurred_at'][:19],
                                          '%Y-%m-%dT%H:%M:%S')) - time.timezone
            self.assertLessEqual(before - 2, t)
            self.assertLessEqual(t, after + 2)
        for r in self.upstream.batch_requests:
            self.assertEqual(r['headers']['authorization'],
                             'Bearer ' + self.api_key)
            self.assertEqual(r['headers']['idempotency-key'], r['batch_id'])
            self.assertRegex(r['headers']['user-agent'], r'^segopsd/')
            self.assertEqual(r['status'], 200)
        st = d.stats()
        self.assertEqual((st['sent'], st['retries']), (len(msgs), 0))
        self.assertNoViolations()

    def test_batch_size(self):
        d = self.start_daemon(batch__batch_size='5',
                              batch__flush_interval='60')
        send_stream(d, [make_event(i) for i in range(23)])
        self.assertTrue(self.upstream.wait_for_events(20, timeout=10))
        # Full batches go at once; the last 3 wait for the interval.
        self.assertStaysTrue(lambda: sorted(batch_sizes(self.upstream)) ==
                             [5, 5, 5, 5], 0.3, batch_sizes(self.upstream))
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 3})
        self.assertEqual(sorted(batch_sizes(self.upstream)),
                         [3, 5, 5, 5, 5])
        self.assertEqual(set(self.upstream.events),
                         {event_id(i) for i in range(23)})
        self.assertEqual(d.stats()['batches_sent'], 5)
        self.assertNoViolations()

    def test_nothing_sent_before_batch_is_full(self):
        d = self.start_daemon(batch__batch_size='10',
                              batch__flush_interval='60')
        send_stream(d, [make_event(i) for i in range(9)])
        self.assertStaysTrue(lambda: self.upstream.batch_requests == [],
                             0.5, 'a batch went before it was full')
        self.assertEqual(d.stats()['queued_events'], 9)
        t0 = time.monotonic()
        send_stream(d, [make_event(9)])
        self.assertTrue(self.upstream.wait_for_events(10, timeout=5))
        self.assertLess(time.monotonic() - t0, 2.0)
        self.assertEqual(batch_sizes(self.upstream), [10])
        self.assertNoViolations()

    def test_flush_interval(self):
        d = self.start_daemon(batch__batch_size='100',
                              batch__flush_interval='0.5')
        t0 = time.monotonic()
        send_stream(d, [make_event(i) for i in range(3)])
        self.assertTrue(self.upstream.wait_for_events(3, timeout=5))
        reqs = self.upstream.batch_requests
        self.assertEqual(len(reqs), 1)
        self.assertEqual(reqs[0]['n_events'], 3)
        # At most one interval after acceptance, plus scheduling slack
        # (a second: a loaded machine took more than half of one).
        self.assertLess(reqs[0]['time'] - t0, 0.5 + 1.0)
        self.assertNoViolations()

    def test_max_batch_bytes(self):
        limit = 4096
        d = self.start_daemon(batch__batch_size='100',
                              batch__max_batch_bytes=str(limit),
                              listen__max_message_bytes='2048',
                              batch__flush_interval='0.2')
        msgs = [make_event(i, payload={'s': 'p' * 500}) for i in range(30)]
        send_stream(d, msgs)
        self.assertEqual(d.flush()['ok'], True)
        self.assertEqual(set(self.upstream.events),
                         {event_id(i) for i in range(30)})
        reqs = self.upstream.batch_requests
        for r in reqs:
            self.assertLessEqual(len(r['body']), limit)
        # Each event is ~560 bytes: 7 fit in 4 KiB, so batches are
        # packed, not sent one by one.
        self.assertGreater(max(r['n_events'] for r in reqs), 4)
        self.assertLessEqual(len(reqs), 10)
        self.assertNoViolations()


class GzipTests(SegopsTestCase):
    upstream_options = {'compression': 'gzip'}

    def test_gzip(self):
        d = self.start_daemon(upstream__compression='gzip')
        send_stream(d, [make_event(i) for i in range(30)])
        self.assertEqual(d.flush()['ok'], True)
        self.assertEqual(len(self.upstream.events), 30)
        for r in self.upstream.batch_requests:
            self.assertEqual(r['headers'].get('content-encoding'), 'gzip')
        self.assertNoViolations()


class NoCompressionTests(SegopsTestCase):
    upstream_options = {'compression': 'none'}

    def test_none(self):
        d = self.start_daemon(upstream__compression='none')
        send_stream(d, [make_event(i) for i in range(30)])
        self.assertEqual(d.flush()['ok'], True)
        self.assertEqual(len(self.upstream.events), 30)
        for r in self.upstream.batch_requests:
            self.assertNotIn('content-encoding', r['headers'])
            self.assertEqual(int(r['headers']['content-length']),
                             len(r['body']))
        self.assertNoViolations()


class TlsTests(SegopsTestCase):
    tls = True

    def test_https_with_ca_file(self):
        self.assertTrue(self.upstream.url.startswith('https://'))
        d = self.start_daemon(batch__flush_interval='60')
        send_stream(d, [make_event(i) for i in range(5)])
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 5})
        self.assertEqual(set(self.upstream.events),
                         {event_id(i) for i in range(5)})
        self.assertEqual(self.upstream.tls_failures, [])
        self.assertNoViolations()

    def test_untrusted_certificate(self):
        """A server whose certificate the CA file does not vouch for gets
        no events; they are kept (tls_error) and delivered once the
        right server answers at the same address."""
        cert, key = tlsca.make_untrusted(os.path.join(self.tmpdir, 'bad'))
        bad = MockUpstream(api_key=self.api_key, tls_cert=cert,
                           tls_key=key).start()
        self.addCleanup(bad.stop)
        d = self.start_daemon(url=bad.url)
        send_stream(d, [make_event(i) for i in range(5)])
        st = d.wait_for_stats(
            lambda s: s['upstream']['state'] == 'tls_error', timeout=10)
        self.assertEqual(st['upstream']['state'], 'tls_error')
        self.assertTrue(st['upstream']['last_error'])
        self.assertEqual(st['queued_events'], 5)
        self.assertEqual(sum(st['dropped'].values()), 0)
        self.assertEqual(bad.events, {})
        self.assertEqual(bad.requests, [])
        # The mock's side of the failed handshake is recorded by its own
        # thread, which may finish after segopsd has reported the error.
        self.assertTrue(bad.wait_until(lambda: bad.tls_failures, timeout=5))
        self.assertTrue(d.wait_for_log(r'TLS', timeout=5))
        # Put a trusted server on the same port: the kept events go.
        port = bad.port
        bad.stop()
        good = MockUpstream(api_key=self.api_key, tls_cert=self.tls_cert,
                            tls_key=self.tls_key, port=port).start()
        self.addCleanup(good.stop)
        self.assertEventsDelivered([event_id(i) for i in range(5)],
                                   timeout=10, upstream=good)
        st = settled_stats(d, 5)
        self.assertEqual(st['upstream']['state'], 'ok')
        self.assertEqual(st['sent'], 5)
        self.assertNoViolations(good)


class FailureTests(SegopsTestCase):

    def test_5xx_then_recovery(self):
        d = self.start_daemon()
        self.upstream.script([500, 408, {'status': 503}, 504])
        send_stream(d, [make_event(i) for i in range(7)])
        self.assertEventsDelivered([event_id(i) for i in range(7)],
                                   timeout=15)
        reqs = self.upstream.batch_requests
        self.assertEqual([r['status'] for r in reqs], [500, 408, 503, 504,
                                                       200])
        self.assertEqual(len({r['batch_id'] for r in reqs}), 1,
                         'a retry keeps its batch_id')
        self.assertEqual(len({r['body'] for r in reqs}), 1,
                         'a retry resends the identical body')
        st = settled_stats(d, 7)
        self.assertEqual(st['retries'], 4)
        self.assertEqual(st['sent'], 7)
        self.assertEqual(st['upstream']['state'], 'ok')
        self.assertEqual(sum(st['dropped'].values()), 0)
        self.assertNoViolations()

    def test_connection_dropped_then_recovery(self):
        d = self.start_daemon()
        self.upstream.script([{'status': 200, 'drop': True}])
        send_stream(d, [make_event(i) for i in range(3)])
        self.assertEventsDelivered([event_id(i) for i in range(3)],
                                   timeout=15)
        reqs = self.upstream.batch_requests
        self.assertEqual([r['status'] for r in reqs], ['dropped', 200])
        self.assertEqual(reqs[0]['body'], reqs[1]['body'])
        self.assertNoViolations()

    def _retry_after_test(self, status, header, pause):
        """The first batch is answered status with Retry-After: header;
        pause(answer_wall) says how long that asks segopsd to wait from
        the moment of the answer (wall clock, as an HTTP date is)."""
        d = self.start_daemon(batch__batch_size='5')
        self.upstream.script([{'status': status,
                               'headers': {'Retry-After': header}}])
        send_stream(d, [make_event(i) for i in range(5)])
        # Once segopsd has read the answer (the mock records it just
        # before sending it), a second batch is cut during the pause: it
        # must wait for the pause too.
        st = d.wait_for_stats(lambda s: s['upstream']['last_status'] ==
                              status)
        self.assertEqual(st['upstream']['state'], 'throttled')
        send_stream(d, [make_event(i) for i in range(5, 10)])
        self.assertEventsDelivered([event_id(i) for i in range(10)],
                                   timeout=15)
        reqs = self.upstream.batch_requests
        self.assertEqual(reqs[0]['status'], status)
        answered_wall = reqs[0]['wall'] + (reqs[0]['done'] - reqs[0]['time'])
        resume = reqs[0]['done'] + pause(answered_wall)
        for r in reqs[1:]:
            # (10 ms: the loop's clock counts whole milliseconds.)
            self.assertGreaterEqual(
                r['time'], resume - 0.01, 'a request went out %.3f s '
                'before the end of the Retry-After pause'
                % (resume - r['time']))
        self.assertEqual(len(reqs), 3)
        self.assertLess(reqs[1]['time'], resume + 2.0)
        st = settled_stats(d, 10)
        self.assertEqual(st['sent'], 10)
        self.assertEqual(st['retries'], 1)
        self.assertNoViolations()

    def test_429_retry_after_seconds(self):
        self._retry_after_test(429, '1', lambda answered: 1.0)

    def test_503_retry_after_http_date(self):
        # An HTTP date 2 s ahead (its resolution is one second, so the
        # pause is 1 to 2 s): the pause ends at that date.
        date = email.utils.formatdate(time.time() + 2, usegmt=True)
        until = email.utils.parsedate_to_datetime(date).timestamp()
        self._retry_after_test(503, date, lambda answered: until - answered)

    def _no_retry_after_test(self, status):
        # No Retry-After: ordinary backoff (from 0.5 s, full jitter, at
        # most 1 s), a handful of tries in 2 s, each after a delay within
        # the policy's bound; never a resend at once (which would make
        # ~40 here).
        d = self.start_daemon(upstream__backoff_initial='0.5',
                              upstream__backoff_max='1')
        self.upstream.set_default(status, kinds=('events',))
        send_stream(d, [make_event(0)])
        self.assertTrue(self.upstream.wait_for_requests(1, timeout=5))
        first = self.upstream.batch_requests[0]['time']
        # Tries are counted over two seconds: a window, not a wait.
        self.assertStaysTrue(lambda: len(self.upstream.batch_requests) <= 20,
                             first + 2.0 - time.monotonic())
        self.upstream.set_default(None)
        tries = len([r for r in self.upstream.batch_requests
                     if r['time'] < first + 2.0])
        self.assertLessEqual(tries, 20)
        self.assertEventsDelivered([event_id(0)], timeout=10)
        reqs = self.upstream.batch_requests
        self.assertEqual(len({r['batch_id'] for r in reqs}), 1)
        self.assertEqual([r['status'] for r in reqs],
                         [status] * (len(reqs) - 1) + [200])
        self.assertBackoffSpacing(reqs, 0.5, 1.0)
        self.assertIn('backing off', d.stderr_text())
        self.assertNotIn('honouring Retry-After', d.stderr_text())
        self.assertNoViolations()

    def test_429_without_retry_after_backs_off(self):
        self._no_retry_after_test(429)

    def test_503_without_retry_after_backs_off(self):
        self._no_retry_after_test(503)

    def _sent_at_test(self, compression):
        # A batch cut during a Retry-After pause waits for its end; its
        # sent_at is its first attempt's time (SPEC 4), not its cut's,
        # and a retry keeps the first attempt's.
        d = self.start_daemon(batch__batch_size='5',
                              upstream__compression=compression)
        self.upstream.script([{'status': 429,
                               'headers': {'Retry-After': '2'}}])
        send_stream(d, [make_event(i) for i in range(5)])
        self.assertTrue(self.upstream.wait_for_requests(1, timeout=5))
        # The pause starts when segopsd reads the 429, not when the mock
        # sends it: the second batch must come after that.
        st = d.wait_for_stats(
            lambda s: s['upstream']['state'] == 'throttled', timeout=5)
        self.assertEqual(st['upstream']['state'], 'throttled')
        send_stream(d, [make_event(i) for i in range(5, 10)])
        self.assertEventsDelivered([event_id(i) for i in range(10)],
                                   timeout=15)

        def sent_at(r):
            return datetime.datetime.strptime(
                json.loads(r['body'])['sent_at'], '%Y-%m-%dT%H:%M:%S.%fZ'
            ).replace(tzinfo=datetime.timezone.utc).timestamp()
        reqs = self.upstream.batch_requests
        self.assertEqual(len(reqs), 3)
        first, later = reqs[0], reqs[1:]
        self.assertEqual(first['status'], 429)
        retry = [r for r in later if r['batch_id'] == first['batch_id']]
        other = [r for r in later if r['batch_id'] != first['batch_id']]
        self.assertEqual((len(retry), len(other)), (1, 1))
        self.assertEqual(sent_at(retry[0]), sent_at(first))
        self.assertLess(abs(sent_at(first) - first['wall']), 1.0)
        self.assertGreaterEqual(other[0]['wall'] - first['wall'], 1.5)
        self.assertLess(abs(sent_at(other[0]) - other[0]['wall']), 1.0)
        self.assertNoViolations()

    def test_sent_at_is_the_first_attempts_time(self):
        self._sent_at_test('none')

    def test_sent_at_is_the_first_attempts_time_gzip(self):
        self._sent_at_test('gzip')

    def test_retry_after_is_capped(self):
        d = self.start_daemon(upstream__retry_after_max='1')
        self.upstream.script([{'status': 429,
                               'headers': {'Retry-After': '120'}}])
        send_stream(d, [make_event(i) for i in range(3)])
        self.assertEventsDelivered([event_id(i) for i in range(3)],
                                   timeout=6)
        reqs = self.upstream.batch_requests
        self.assertEqual([r['status'] for r in reqs], [429, 200])
        self.assertGreaterEqual(reqs[1]['time'] - reqs[0]['time'], 0.9)
        # The capped pause counts from the answer (10 ms: the loop's
        # clock counts whole milliseconds).
        self.assertGreaterEqual(reqs[1]['time'] - reqs[0]['done'], 1.0 - 0.01)
        self.assertLess(reqs[1]['time'] - reqs[0]['time'], 4)
        self.assertNoViolations()

    def test_413_splits_with_new_batch_ids(self):
        d = self.start_daemon(batch__batch_size='8')
        self.upstream.script([413])
        send_stream(d, [make_event(i) for i in range(8)])
        self.assertEventsDelivered([event_id(i) for i in range(8)])
        reqs = self.upstream.batch_requests
        self.assertEqual(len(reqs), 3)
        self.assertEqual(reqs[0]['n_events'], 8)
        self.assertEqual(sorted(r['n_events'] for r in reqs[1:]), [4, 4])
        self.assertEqual(len({r['batch_id'] for r in reqs}), 3)
        self.assertEqual(sorted(reqs[1]['event_ids'] + reqs[2]['event_ids']),
                         [event_id(i) for i in range(8)])
        st = settled_stats(d, 8)
        self.assertEqual(st['sent'], 8)
        self.assertEqual(sum(st['dropped'].values()), 0)
        self.assertNoViolations()

    def test_413_single_event_dropped_too_large(self):
        d = self.start_daemon(batch__batch_size='2')
        self.upstream.script([413, 413])
        send_stream(d, [make_event(0), make_event(1)])
        st = d.wait_for_stats(lambda s: s['dropped']['too_large'] >= 1 and
                              s['sent'] >= 1, timeout=10)
        self.assertEqual(st['dropped']['too_large'], 1)
        self.assertEqual(st['sent'], 1)
        self.assertEqual(st['queued_events'], 0)
        self.assertEqual(len(self.upstream.events), 1)
        reqs = self.upstream.batch_requests
        self.assertEqual([r['n_events'] for r in reqs], [2, 1, 1])
        self.assertEqual(reqs[0]['status'], 413)
        # The halves go out together; either may meet the second 413.
        self.assertEqual(sorted(r['status'] for r in reqs[1:]), [200, 413])
        self.assertNoViolations()

    def _dropped_test(self, status):
        d = self.start_daemon()
        self.upstream.script([status])
        send_stream(d, [make_event(i) for i in range(3)])
        st = d.wait_for_stats(
            lambda s: s['dropped']['upstream_rejected'] >= 3, timeout=10)
        self.assertEqual(st['dropped']['upstream_rejected'], 3)
        self.assertEqual(st['queued_events'], 0)
        # A retry would come within backoff_initial (0.1 s) of the answer.
        self.assertStaysTrue(lambda: len(self.upstream.batch_requests) == 1,
                             0.6, 'a %d batch must not be retried' % status)
        st = d.stats()
        self.assertEqual(st['retries'], 0)
        self.assertEqual(st['sent'], 0)
        self.assertEqual(st['upstream']['last_status'], status)
        self.assertEqual(self.upstream.events, {})
        self.assertTrue(d.wait_for_log(r'HTTP %d' % status, timeout=2))
        # Later events still go.
        send_stream(d, [make_event(10)])
        self.assertEqual(d.flush()['ok'], True)
        self.assertEqual(set(self.upstream.events), {event_id(10)})
        self.assertNoViolations()

    def test_400_dropped_not_retried(self):
        self._dropped_test(400)

    def test_404_dropped(self):
        self._dropped_test(404)

    def test_422_dropped(self):
        self._dropped_test(422)

    def _auth_test(self, status):
        d = self.start_daemon()
        self.upstream.set_default(status)
        send_stream(d, [make_event(i) for i in range(4)])
        self.assertTrue(self.upstream.wait_for_requests(2, timeout=10),
                        'kept events are retried')
        st = d.stats()
        self.assertEqual(st['upstream']['state'], 'auth_error')
        self.assertEqual(st['upstream']['last_status'], status)
        self.assertEqual(sum(st['dropped'].values()), 0)
        self.assertEqual(st['queued_events'], 4)
        m = d.wait_for_log(r'error: .*refused the API key.*HTTP %d' % status,
                           timeout=5)
        self.assertTrue(m, d.stderr_text())
        self.assertNotIn(self.api_key, d.stderr_text())
        self.upstream.set_default(None)
        self.assertEventsDelivered([event_id(i) for i in range(4)],
                                   timeout=10)
        st = settled_stats(d, 4)
        self.assertEqual(st['sent'], 4)
        self.assertEqual(st['upstream']['state'], 'ok')
        self.assertNoViolations()

    def test_401_kept_and_retried(self):
        self._auth_test(401)

    def test_403_kept_and_retried(self):
        self._auth_test(403)

    def test_partial_acceptance_is_delivered(self):
        d = self.start_daemon(batch__flush_interval='60')
        self.upstream.script([{'status': 200,
                               'body': {'accepted': 2, 'duplicates': 1}}])
        send_stream(d, [make_event(i) for i in range(5)])
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 5})
        # Never resent: a retry would come within backoff_initial (0.1 s).
        self.assertStaysTrue(lambda: len(self.upstream.batch_requests) == 1,
                             0.5, 'a partly accepted batch was resent')
        st = d.stats()
        self.assertEqual(st['sent'], 5)
        self.assertEqual(st['retries'], 0)
        self.assertEqual(st['queued_events'], 0)
        self.assertTrue(d.wait_for_log(r'warning: .*accepted 2 .*1 '
                                       r'duplicates', timeout=2),
                        d.stderr_text())
        self.assertNoViolations()

    def test_upstream_down_then_back(self):
        d = self.start_daemon()
        self.upstream.stop()
        send_stream(d, [make_event(i) for i in range(6)])
        st = d.wait_for_stats(lambda s: s['upstream']['state'] == 'retrying'
                              and s['retries'] >= 2, timeout=10)
        self.assertEqual(st['upstream']['state'], 'retrying')
        self.assertTrue(st['upstream']['last_error'])
        self.assertEqual(st['queued_events'], 6)
        self.assertEqual(sum(st['dropped'].values()), 0)
        self.upstream.start()
        self.assertEventsDelivered([event_id(i) for i in range(6)],
                                   timeout=10)
        self.assertEqual(settled_stats(d, 6)['sent'], 6)
        self.assertNoViolations()

    def test_same_event_id_twice(self):
        """A sender that repeats an event (its own retry) must not make
        a batch the upstream refuses: one batch never carries an event_id
        twice, and every event still arrives."""
        d = self.start_daemon(batch__flush_interval='60')
        msgs = [make_event(0), make_event(1), make_event(0), make_event(2),
                make_event(3), make_event(1)]
        send_stream(d, msgs)
        self.assertEqual(d.flush()['ok'], True)
        self.assertNoViolations()
        self.assertEqual(set(self.upstream.events),
                         {event_id(i) for i in range(4)})
        self.assertEqual(sum(d.stats()['dropped'].values()), 0)

    def test_max_in_flight(self):
        d = self.start_daemon(upstream__max_in_flight='2',
                              batch__batch_size='2')
        # Slow enough answers that requests overlap (max_overlap).
        self.upstream.set_default(200, delay=0.2)
        send_stream(d, [make_event(i) for i in range(16)])
        peak = 0
        deadline = time.monotonic() + 15
        while len(self.upstream.events) < 16 and time.monotonic() < deadline:
            peak = max(peak, d.stats()['in_flight'])
            time.sleep(0.05)
        self.assertEqual(len(self.upstream.events), 16)
        reqs = self.upstream.batch_requests
        self.assertEqual(len(reqs), 8)
        self.assertEqual(max_overlap(reqs), 2)
        self.assertLessEqual(peak, 2)
        self.assertNoViolations()

    def test_max_in_flight_one(self):
        d = self.start_daemon(upstream__max_in_flight='1',
                              batch__batch_size='3')
        self.upstream.set_default(200, delay=0.1)
        send_stream(d, [make_event(i) for i in range(12)])
        self.assertEventsDelivered([event_id(i) for i in range(12)],
                                   timeout=15)
        self.assertEqual(max_overlap(self.upstream.batch_requests), 1)
        self.assertNoViolations()


class MemoryTests(SegopsTestCase):
    N = 2000

    def _fill(self, when_full):
        d = self.start_daemon(buffer__max_memory='1M',
                              buffer__when_full=when_full,
                              batch__max_batch_bytes='65536',
                              batch__batch_size='20')
        self.upstream.set_default(500)
        pad = 'm' * 1000
        msgs = [make_event(i, payload={'s': pad}) for i in range(self.N)]
        send_stream(d, msgs, timeout=30)
        st = d.stats()
        self.assertEqual(st['accepted'], self.N)
        lost = st['dropped']['memory_full']
        self.assertGreater(lost, 0)
        self.assertLess(lost, self.N)
        self.assertEqual(st['sent'], 0)
        self.assertEqual(st['queued_events'] + lost, self.N,
                         'every event is held or counted as dropped')
        self.assertLessEqual(st['queued_bytes'], 1024 * 1024)
        self.assertTrue(d.wait_for_log(r'max_memory reached', timeout=2))
        self.upstream.set_default(None)
        self.assertEqual(d.flush(timeout_ms=20000)['ok'], True)
        got = set(self.upstream.events)
        self.assertEqual(len(got), self.N - lost)
        self.assertEqual(d.stats()['sent'], self.N - lost)
        self.assertNoViolations()
        return got, lost

    def test_drop_newest(self):
        got, lost = self._fill('drop_newest')
        # The oldest survive, the newest were refused.
        self.assertEqual(got, {event_id(i) for i in range(self.N - lost)})

    def test_drop_oldest(self):
        got, lost = self._fill('drop_oldest')
        ids = [int(e.split('-')[1]) for e in got]
        # The newest survive; what went is one contiguous run of old
        # events (the few already cut into batches were not in the queue).
        self.assertIn(self.N - 1, ids)
        self.assertEqual(set(range(self.N - 200, self.N)) - set(ids), set())
        missing = sorted(set(range(self.N)) - set(ids))
        self.assertEqual(len(missing), lost)
        self.assertEqual(missing, list(range(missing[0],
                                             missing[0] + lost)))


class BackpressureTests(SegopsTestCase):
    """A healthy but slow upstream and a fast datagram sender: segopsd
    stops reading above 3/4 of max_memory instead of dropping, so a
    blocking sender waits and nothing is lost."""

    def test_slow_healthy_upstream_pauses_reading_instead_of_dropping(self):
        d = self.start_daemon(buffer__max_memory='2M',
                              batch__max_batch_bytes='256K',
                              batch__batch_size='500',
                              upstream__max_in_flight='1',
                              upstream__compression='none')
        self.upstream.set_default(200, delay=0.05)
        # Get the upstream state to "ok" first: pausing is for a healthy
        # upstream only.
        d.send_dgram(json.dumps(make_event(0)) + '\n')
        self.assertEqual(d.flush()['ok'], True)
        pad = 'x' * 400
        n = 12000   # ~6 MB of events, three times max_memory
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(d.events_socket)
            s.settimeout(60)   # blocking: waits while the daemon pauses
            batch = []
            for i in range(1, n + 1):
                batch.append(json.dumps(make_event(i, payload={'p': pad})))
                if len(batch) == 50:
                    s.send(('\n'.join(batch) + '\n').encode())
                    batch = []
            if batch:
                s.send(('\n'.join(batch) + '\n').encode())
        self.assertEqual(d.flush(timeout_ms=60000)['ok'], True)
        st = d.stats()
        self.assertEqual(st['dropped']['memory_full'], 0)
        self.assertGreaterEqual(st['ingest']['pauses'], 1)
        self.assertEqual(len(self.upstream.events), n + 1)
        self.assertNoViolations()


class FlushTests(SegopsTestCase):

    def test_flush_returns_after_upstream_has_events(self):
        d = self.start_daemon(batch__flush_interval='60',
                              batch__batch_size='100')
        self.upstream.set_default(200, delay=0.5)
        msgs = [make_event(i) for i in range(10)]
        t0 = time.monotonic()
        replies = d.control(msgs + [{'op': 'flush', 'timeout_ms': 10000}])
        self.assertEqual(replies, [{'ok': True, 'flushed': 10}])
        # Checked at once, no waiting: the flush reply implies delivery.
        self.assertEqual(set(self.upstream.events),
                         {event_id(i) for i in range(10)})
        self.assertGreaterEqual(time.monotonic() - t0, 0.45)
        self.assertNoViolations()

    def test_flush_includes_queued_datagrams(self):
        d = self.start_daemon(batch__flush_interval='60',
                              batch__batch_size='100')
        for i in range(8):
            d.send_dgram(json.dumps(make_event(i)) + '\n')
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 8})
        self.assertEqual(set(self.upstream.events),
                         {event_id(i) for i in range(8)})

    def test_flush_with_nothing_held(self):
        d = self.start_daemon()
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 0})

    def test_flush_timeout_while_upstream_fails(self):
        d = self.start_daemon()
        self.upstream.set_default(500)
        t0 = time.monotonic()
        r = d.control([make_event(i) for i in range(7)] +
                      [{'op': 'flush', 'timeout_ms': 1000}], timeout=10)
        took = time.monotonic() - t0
        self.assertEqual(len(r), 1)
        self.assertEqual(r[0]['ok'], False)
        self.assertEqual(r[0]['pending'], 7)
        self.assertIsInstance(r[0]['error'], str)
        self.assertGreaterEqual(took, 0.9)
        self.assertLess(took, 3.0)
        st = d.stats()
        self.assertEqual(st['queued_events'], 7)
        self.assertEqual(sum(st['dropped'].values()), 0)
        self.upstream.set_default(None)
        self.assertEqual(d.flush()['ok'], True)
        self.assertEqual(len(self.upstream.events), 7)

    def test_client_gone_during_flush(self):
        """A client that closes while its flush waits does not upset
        the daemon (its reply has nowhere to go)."""
        d = self.start_daemon()
        self.upstream.set_default(500)
        for _ in range(3):
            s = d.connect_control()
            s.sendall((ndjson([make_event(i) for i in range(5)]) +
                       '{"op":"flush","timeout_ms":800}\n').encode())
            time.sleep(0.1)
            s.close()
        # A flush of our own, with a deadline after all of theirs: its
        # answer comes once every one of theirs has passed.
        r = d.control({'op': 'flush', 'timeout_ms': 900}, timeout=10)
        self.assertEqual(r[0]['ok'], False)
        self.assertEqual(r[0]['pending'], 15)    # 3 x the same 5 events
        self.assertEqual(d.ping()['ok'], True)
        self.upstream.set_default(None)
        self.assertEqual(d.flush()['ok'], True)
        self.assertEqual(set(self.upstream.events),
                         {event_id(i) for i in range(5)})
        self.assertTrue(d.running())

    def test_flush_reports_upstream_rejection(self):
        d = self.start_daemon(batch__flush_interval='60')
        self.upstream.script([400])
        r = d.control([make_event(i) for i in range(4)] +
                      [{'op': 'flush', 'timeout_ms': 5000}])
        self.assertEqual(len(r), 1)
        self.assertEqual(r[0]['ok'], False)
        self.assertEqual(r[0]['dropped'], 4)
        self.assertEqual(r[0]['pending'], 0)


class PublicKeySessionTests(SegopsTestCase):
    api_key = 'pk_test_0123456789abcdef'

    def test_pk_key_mints_a_session(self):
        d = self.start_daemon()
        d.control([{'op': 'set_user', 'user_id': 'app-user'}])
        send_stream(d, [make_event(i) for i in range(3)])
        self.assertEventsDelivered([event_id(i) for i in range(3)])
        mints = self.upstream.mints
        self.assertEqual(len(mints), 1)
        self.assertEqual(mints[0]['user_id'], 'app-user')
        self.assertNoViolations()


if __name__ == '__main__':
    harness.main()
