#!/usr/bin/env python3
"""Integration tests of the pk_ session handshake (SPEC section 4, issue 4).

The real segopsd runs against the strict MockUpstream holding a pk_ key:
it mints tokens at /api/auth/session/, can give them short lifetimes,
require and check a user_id_sig, revoke tokens and script mint answers.
The tests check exact numbers: how many mints, which identity each one
carried, which batches were answered 401 and how often each was sent,
that no event is lost or dropped while the session cannot be had, and
that neither the token nor the key ever shows in stats or in the log.
user_context_command cases run small scripts written into the test's
temporary directory.
"""

import datetime
import json
import os
import socket
import stat
import sys
import textwrap
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'lib'))

import harness  # noqa: E402
from harness import (SegopsTestCase, event_id, make_event,  # noqa: E402
                     send_stream, sign_user_id)

PK_KEY = 'pk_test_0123456789abcdef'
SECRET = 'backend-signing-secret'


def ids(rng):
    return [event_id(i) for i in rng]


def rss_kib(pid):
    with open('/proc/%d/status' % pid, encoding='ascii') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise AssertionError('no VmRSS for pid %d' % pid)


def wire_time(text):
    """A wire timestamp (YYYY-MM-DDTHH:MM:SS.mmmZ) as Unix time."""
    return datetime.datetime.strptime(text, '%Y-%m-%dT%H:%M:%S.%fZ').replace(
        tzinfo=datetime.timezone.utc).timestamp()


def count_lines(text, *needles):
    return sum(1 for line in text.splitlines()
               if all(n in line for n in needles))


class SessionCase(SegopsTestCase):
    """A pk_ key on both sides; helpers shared by the tests below."""

    api_key = PK_KEY

    def set_user(self, d, user_id, sig=None):
        msg = {'op': 'set_user', 'user_id': user_id}
        if sig is not None:
            msg['user_id_sig'] = sig
        self.assertEqual(d.control(msg), [{'ok': True}])

    def session(self, d):
        return d.stats()['session']

    def wait_session(self, d, predicate, timeout=10.0):
        st = d.wait_for_stats(lambda s: predicate(s['session']), timeout)
        return st

    def assertNothingLost(self, d):
        st = d.stats()
        self.assertEqual(sum(st['dropped'].values()), 0, st['dropped'])
        return st

    def mint_statuses(self):
        return [m['status'] for m in self.upstream.mints]

    def write_script(self, name, body):
        path = os.path.join(self.tmpdir, name)
        with open(path, 'w', encoding='utf-8') as f:
            f.write('#!/bin/sh\n' + body + '\n')
        os.chmod(path, stat.S_IRWXU)
        return path


class MintOnceTests(SessionCase):

    def test_burst_of_concurrent_batches_makes_one_mint(self):
        # A long flush_interval: every send below is due to batch_size
        # and to the mint's answer, never to the interval timer.
        d = self.start_daemon(batch__batch_size='5',
                              batch__flush_interval='5',
                              upstream__max_in_flight='4')
        # A slow mint: every batch that needs a token waits for this one.
        self.upstream.script_mint([{'status': 200, 'delay': 0.5}])
        self.set_user(d, 'burst-user')
        t0 = time.monotonic()
        send_stream(d, [make_event(i) for i in range(100)])
        self.assertEventsDelivered(ids(range(100)), timeout=15)
        mints = self.upstream.mints
        self.assertEqual(len(mints), 1, mints)
        self.assertEqual(mints[0]['user_id'], 'burst-user')
        self.assertIsNone(mints[0]['user_id_sig'])
        reqs = self.upstream.batch_requests
        self.assertEqual(len(reqs), 20)
        self.assertTrue(all(r['status'] == 200 for r in reqs))
        tok = mints[0]['token']
        self.assertTrue(all(r['headers']['authorization'] == 'Bearer ' + tok
                            for r in reqs))
        # Lazy: the mint came first, at first use; nothing before it.
        self.assertLess(mints[0]['time'], min(r['time'] for r in reqs))
        # The batches waiting for the mint go out when its token arrives
        # (0.5 s), not at the next flush_interval tick (5 s).
        first = min(r['time'] for r in reqs) - t0
        self.assertLess(first, 2.0, 'first events request %.2f s after the '
                        'burst: the token arrived at ~0.5 s' % first)
        self.assertEqual(self.upstream.expired_token_uses, 0)
        st = self.assertNothingLost(d)
        self.assertEqual(st['session']['mints'], 1)
        self.assertEqual(st['session']['mint_failures'], 0)
        self.assertNoViolations()

    def test_lazy_no_mint_without_events(self):
        d = self.start_daemon()
        self.set_user(d, 'idle-user')
        # A few flush ticks (0.2 s) pass without a mint.
        self.assertStaysTrue(lambda: self.upstream.mints == [], 0.6)
        s = self.session(d)
        self.assertTrue(s['enabled'])
        self.assertEqual(s['mints'], 0)
        self.assertNotIn('token_age_s', s)
        self.assertNoViolations()


class FreshnessTests(SessionCase):
    upstream_options = {'token_ttl': 5}

    def test_short_token_renewed_before_expiry(self):
        # 3 s tokens (the class's 5 s, scaled down: the rule is the same)
        # over 7.2 s of steady traffic, two events every 0.1 s.
        ttl, half, duration = 3, 1.5, 7.2
        self.upstream.token_ttl = ttl
        d = self.start_daemon(batch__flush_interval='0.1')
        self.set_user(d, 'steady')
        n = 0
        deadline = time.monotonic() + duration
        stats_seen = []
        while time.monotonic() < deadline and n < 200:
            d.send_events_dgram([make_event(n), make_event(n + 1)])
            n += 2
            if n % 20 == 0:
                stats_seen.append(d.stats())
            time.sleep(0.1)
        self.assertGreaterEqual(n, 100)
        self.assertEventsDelivered(ids(range(n)), timeout=10)
        reqs = self.upstream.batch_requests
        self.assertEqual(self.upstream.expired_token_uses, 0)
        self.assertEqual([r for r in reqs if r['status'] == 401], [])
        mints = self.upstream.mints
        # 7.2 s of 3 s tokens, each renewed when less than 1.5 s remain:
        # a new token about every 1.5 s; never one per request.
        self.assertGreater(len(mints), 1)
        self.assertGreaterEqual(len(mints), 4, self.mint_statuses())
        self.assertLessEqual(len(mints), 7, self.mint_statuses())
        self.assertTrue(all(m['status'] == 200 for m in mints))
        # No token was used once less than half its lifetime remained:
        # the renewal rule, not luck, keeps tokens from being sent
        # expired. Its age when segopsd chose it for a batch (the batch's
        # sent_at, written then) counts from the mint request, which
        # left segopsd before the mock saw it: no slack needed.
        minted = {m['token']: m for m in mints}
        for r in reqs:
            tok = r['headers']['authorization'][len('Bearer '):]
            self.assertIn(tok, minted)
            chosen = wire_time(json.loads(r['body'])['sent_at'])
            age = chosen - minted[tok]['wall']
            self.assertLess(age, half, 'a token %.3f s old (of %d s) was '
                            'chosen for a batch' % (age, ttl))
            # And at the mock (0.25 s of slack for the trip there).
            age = r['time'] - minted[tok]['time']
            self.assertLess(age, half + 0.25, 'a token %.2f s old (of %d '
                            's) was still used' % (age, ttl))
        s = d.stats()['session']
        self.assertEqual(s['mints'], len(mints))
        self.assertEqual(s['mint_failures'], 0)
        self.assertEqual(s['tokens_rejected'], 0)
        # The stats never showed a token about to be sent expired.
        for st in stats_seen:
            if 'token_expires_in_s' in st['session']:
                self.assertGreater(st['session']['token_expires_in_s'], 0)
                self.assertLessEqual(st['session']['token_expires_in_s'],
                                     ttl)
                self.assertGreaterEqual(st['session']['token_age_s'], 0)
                self.assertLessEqual(st['session']['token_age_s'], ttl)
        self.assertNothingLost(d)
        self.assertNoViolations()

    def test_token_life_counts_from_the_mint_request(self):
        # The answer takes 2 s: of the token's 5 s, 2 are gone when it
        # arrives, so segopsd must count its age from the request.
        d = self.start_daemon()
        self.upstream.script_mint([{'status': 200, 'delay': 2.0}])
        self.set_user(d, 'slow-mint')
        d.send_events_dgram([make_event(0)])
        self.assertEventsDelivered(ids(range(1)), timeout=10)
        s = self.session(d)
        self.assertGreaterEqual(s['token_age_s'], 1.9)
        self.assertLessEqual(s['token_expires_in_s'], 3.1)
        self.assertAlmostEqual(s['token_age_s'] + s['token_expires_in_s'],
                               5.0, delta=0.05)
        self.assertNoViolations()


class RevocationTests(SessionCase):

    def test_revoked_token_one_remint_batch_resent_once(self):
        d = self.start_daemon(batch__batch_size='20')
        self.set_user(d, 'rev-user')
        send_stream(d, [make_event(i) for i in range(20)])
        self.assertEventsDelivered(ids(range(20)))
        self.assertEqual(len(self.upstream.mints), 1)

        self.upstream.revoke_tokens()
        send_stream(d, [make_event(i) for i in range(20, 40)])
        self.assertEventsDelivered(ids(range(40)))
        mints = self.upstream.mints
        self.assertEqual(len(mints), 2, self.mint_statuses())
        self.assertEqual(mints[1]['user_id'], 'rev-user')
        reqs = self.upstream.batch_requests
        refused = [r for r in reqs if r['status'] == 401]
        self.assertEqual(len(refused), 1)
        self.assertEqual(self.upstream.expired_token_uses, 1)
        again = [r for r in reqs if r['batch_id'] == refused[0]['batch_id']]
        self.assertEqual([r['status'] for r in again], [401, 200])
        self.assertEqual(again[1]['body'], again[0]['body'])
        self.assertEqual(again[1]['headers']['authorization'],
                         'Bearer ' + mints[1]['token'])
        self.assertGreater(again[1]['time'], mints[1]['time'])
        s = self.assertNothingLost(d)['session']
        self.assertEqual(s['mints'], 2)
        self.assertEqual(s['tokens_rejected'], 1)
        self.assertNoViolations()

    def test_revoked_mid_stream_no_events_lost(self):
        d = self.start_daemon(batch__batch_size='5',
                              batch__flush_interval='0.05',
                              upstream__max_in_flight='4')
        self.set_user(d, 'stream-user')
        n = 0
        for rnd in range(40):
            d.send_events_dgram([make_event(n + k) for k in range(3)])
            n += 3
            if rnd == 20:
                self.upstream.revoke_tokens()
            time.sleep(0.05)
        self.assertEventsDelivered(ids(range(n)), timeout=15)
        mints = self.upstream.mints
        self.assertEqual(len(mints), 2, self.mint_statuses())
        reqs = self.upstream.batch_requests
        refused = [r for r in reqs if r['status'] == 401]
        self.assertGreaterEqual(len(refused), 1)
        self.assertEqual(self.upstream.expired_token_uses, len(refused))
        for r in refused:
            again = [x['status'] for x in reqs
                     if x['batch_id'] == r['batch_id']]
            self.assertEqual(again, [401, 200], r['batch_id'])
        # Only the old token was refused; the new one never was.
        self.assertTrue(all(r['headers']['authorization'] !=
                            'Bearer ' + mints[1]['token'] for r in refused))
        self.assertNothingLost(d)
        self.assertNoViolations()

    def test_second_401_after_remint_keeps_and_backs_off(self):
        d = self.start_daemon(batch__batch_size='4')
        self.set_user(d, 'twice')
        # The first send and its resend after the re-mint are both 401.
        self.upstream.script([401, 401])
        send_stream(d, [make_event(i) for i in range(4)])
        self.assertEventsDelivered(ids(range(4)), timeout=15)
        reqs = self.upstream.batch_requests
        self.assertEqual([r['status'] for r in reqs], [401, 401, 200])
        self.assertEqual(len({r['batch_id'] for r in reqs}), 1)
        # Each 401 dropped the token it came with: three tokens in all.
        mints = self.upstream.mints
        self.assertEqual(len(mints), 3, self.mint_statuses())
        for r, m in zip(reqs, mints):
            self.assertEqual(r['headers']['authorization'],
                             'Bearer ' + m['token'])
        self.assertTrue(d.wait_for_log(r'refused a fresh session token',
                                       timeout=2))
        self.assertNothingLost(d)
        self.assertNoViolations()


class SignatureTests(SessionCase):
    upstream_options = {'require_sig': True, 'sig_secret': SECRET}

    def test_right_signature(self):
        d = self.start_daemon()
        sig = sign_user_id(SECRET, 'signed-user')
        self.set_user(d, 'signed-user', sig)
        send_stream(d, [make_event(i) for i in range(5)])
        self.assertEventsDelivered(ids(range(5)))
        mints = self.upstream.mints
        self.assertEqual(len(mints), 1)
        self.assertEqual((mints[0]['user_id'], mints[0]['user_id_sig'],
                          mints[0]['status']), ('signed-user', sig, 200))
        self.assertNoViolations()

    def _wrong_then_right(self, wrong_sig):
        d = self.start_daemon()
        self.set_user(d, 'signed-user', wrong_sig)
        send_stream(d, [make_event(i) for i in range(10)])
        # Several failed mints, with backoff between them.
        st = self.wait_session(d, lambda s: s['mint_failures'] >= 3)
        s = st['session']
        self.assertGreaterEqual(s['mint_failures'], 3)
        self.assertEqual(s['last_status'], 403)
        self.assertEqual(s['mints'], 0)
        self.assertEqual(self.upstream.batch_requests, [])
        self.assertTrue(all(m['status'] == 403 for m in self.upstream.mints))
        self.assertEqual(st['queued_events'], 10)
        self.assertEqual(sum(st['dropped'].values()), 0)
        log = d.stderr_text()
        # Actionable, and said once however often the mint failed.
        self.assertEqual(count_lines(log, 'sign-user-id', 'user_id_sig'), 1,
                         log)
        self.assertEqual(count_lines(log, 'HTTP 403'), 1, log)

        sig = sign_user_id(SECRET, 'signed-user')
        self.set_user(d, 'signed-user', sig)
        self.assertEventsDelivered(ids(range(10)), timeout=5)
        good = [m for m in self.upstream.mints if m['status'] == 200]
        self.assertEqual(len(good), 1)
        self.assertEqual(good[0]['user_id_sig'], sig)
        st = self.assertNothingLost(d)
        self.assertEqual(st['session']['mints'], 1)
        self.assertEqual(st['session']['last_status'], 200)
        self.assertNoViolations()

    def test_wrong_signature_keeps_events_until_right_one(self):
        self._wrong_then_right(sign_user_id('not-the-secret', 'signed-user'))

    def test_missing_signature_keeps_events_until_right_one(self):
        self._wrong_then_right(None)


class LongTokenTests(SessionCase):
    """Session tokens can be long (JWTs of 1-2 KB): the Authorization
    header is sized to the token, not to a fixed buffer."""
    upstream_options = {'token_len': 3000}

    def test_3000_byte_token_is_used(self):
        d = self.start_daemon()
        self.set_user(d, 'long-token-user')
        send_stream(d, [make_event(i) for i in range(3)])
        self.assertEventsDelivered(ids(range(3)), timeout=10)
        tok = self.upstream.mints[0]['token']
        self.assertEqual(len(tok), 3004)
        self.assertTrue(all(r['headers']['authorization'] == 'Bearer ' + tok
                            for r in self.upstream.batch_requests))
        self.assertNoViolations()


class NoIdentityTests(SessionCase):

    def test_events_buffered_until_set_user(self):
        d = self.start_daemon(batch__batch_size='5',
                              batch__flush_interval='0.1')
        send_stream(d, [make_event(i) for i in range(12)])
        # Several flush ticks (0.1 s) pass: the reason is still logged
        # only once.
        self.assertTrue(d.wait_for_log(r'set_user.*user_context_command|'
                                       r'user_context_command.*set_user'))
        self.assertStaysTrue(lambda: count_lines(
            d.stderr_text(), 'set_user', 'user_context_command') == 1, 0.6,
            d.stderr_text())
        st = d.stats()
        self.assertEqual(st['queued_events'], 12)
        self.assertEqual(st['session']['mints'], 0)
        self.assertEqual(st['session']['state'], 'no_identity')
        self.assertEqual(st['session']['identity_source'], 'none')
        self.assertEqual(self.upstream.requests, [])
        log = d.stderr_text()
        self.assertEqual(count_lines(log, 'set_user', 'user_context_command'),
                         1, log)

        self.set_user(d, 'late-user')
        self.assertEventsDelivered(ids(range(12)), timeout=5)
        mints = self.upstream.mints
        self.assertEqual([(m['user_id'], m['status']) for m in mints],
                         [('late-user', 200)])
        st = d.wait_for_stats(lambda s: s['queued_events'] == 0, timeout=3)
        self.assertEqual(st['queued_events'], 0)
        self.assertEqual(st['session']['identity_source'], 'set_user')
        self.assertNothingLost(d)
        self.assertNoViolations()

    def test_set_user_on_datagram_socket(self):
        d = self.start_daemon(batch__batch_size='3')
        d.send_dgram(json.dumps({'op': 'set_user', 'user_id': 'dg-user'}))
        d.send_events_dgram([make_event(i) for i in range(3)])
        self.assertEventsDelivered(ids(range(3)))
        self.assertEqual([m['user_id'] for m in self.upstream.mints],
                         ['dg-user'])
        self.assertNoViolations()


class UserContextCommandTests(SessionCase):

    def start_with_command(self, script_body, **overrides):
        path = self.write_script('identity.sh', script_body)
        overrides.setdefault('upstream__user_context_command', path)
        return self.start_daemon(batch__batch_size='5', **overrides)

    def test_good_command(self):
        d = self.start_with_command(
            'echo \'{"user_id": "cmd-user", "user_id_sig": "c0ffee"}\'')
        send_stream(d, [make_event(i) for i in range(5)])
        self.assertEventsDelivered(ids(range(5)))
        mints = self.upstream.mints
        self.assertEqual([(m['user_id'], m['user_id_sig']) for m in mints],
                         [('cmd-user', 'c0ffee')])
        s = self.session(d)
        self.assertEqual(s['identity_source'], 'user_context_command')
        self.assertEqual(s['mints'], 1)
        self.assertNoViolations()

    def test_command_runs_with_scrubbed_environment(self):
        d = self.start_with_command(
            'printf \'{"user_id": "%s"}\' "${HOME:-unset}-${SEGOPS_T:-unset}"',
            env={'HOME': '/home/somebody', 'SEGOPS_T': 'leak'})
        send_stream(d, [make_event(i) for i in range(5)])
        self.assertEventsDelivered(ids(range(5)))
        self.assertEqual([m['user_id'] for m in self.upstream.mints],
                         ['unset-unset'])
        self.assertNoViolations()

    def test_command_inherits_no_descriptors(self):
        # The second run comes with the upstream connection open (kept
        # alive since the first): the command must get neither it nor
        # any other descriptor of segopsd's, only stdin/out/err.
        dump = os.path.join(self.tmpdir, 'fds')
        script = os.path.join(self.tmpdir, 'fds.py')
        with open(script, 'w', encoding='utf-8') as f:
            f.write(textwrap.dedent('''
                import json, os, sys
                fds = {}
                for fd in os.listdir('/proc/self/fd'):
                    try:
                        fds[fd] = os.readlink('/proc/self/fd/' + fd)
                    except OSError:
                        pass  # the directory being listed
                with open(sys.argv[1], 'a') as out:
                    out.write(json.dumps(sorted(fds)) + '\\n')
                print(json.dumps({'user_id': 'fd-user'}))
            '''))
        d = self.start_daemon(batch__batch_size='5',
                              upstream__user_context_command='%s %s %s' % (
                                  sys.executable, script, dump))
        send_stream(d, [make_event(i) for i in range(5)])
        self.assertEventsDelivered(ids(range(5)))
        self.assertEqual(d.control({'op': 'reset_session'}), [{'ok': True}])
        send_stream(d, [make_event(i) for i in range(5, 10)])
        self.assertEventsDelivered(ids(range(10)))
        # The reset's re-mint (and so the second run) starts beside the
        # token still in use, session_reset_min_interval (1 s) after the
        # first at the earliest.
        self.wait_session(d, lambda s: s['mints'] == 2)
        with open(dump, encoding='utf-8') as f:
            runs = [json.loads(line) for line in f]
        self.assertEqual(len(runs), 2)
        for fds in runs:
            self.assertEqual(fds, ['0', '1', '2'])
        self.assertNoViolations()

    def test_command_that_leaves_a_process_behind(self):
        # It prints its identity and exits, but a process it started
        # keeps the pipe open: the identity counts at once (not after
        # user_context_timeout), and the leftover is killed.
        marker = '61.%d' % os.getpid()
        d = self.start_with_command(
            'sleep %s & echo \'{"user_id": "bg-user"}\'' % marker,
            upstream__user_context_timeout='10')
        t0 = time.monotonic()
        send_stream(d, [make_event(i) for i in range(5)])
        self.assertEventsDelivered(ids(range(5)), timeout=8)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual([m['user_id'] for m in self.upstream.mints],
                         ['bg-user'])

        def leftovers():
            found = []
            for pid in filter(str.isdigit, os.listdir('/proc')):
                try:
                    with open('/proc/%s/cmdline' % pid, 'rb') as f:
                        if marker.encode() in f.read():
                            found.append(pid)
                except OSError:
                    pass
            return found
        deadline = time.monotonic() + 5
        while leftovers() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(leftovers(), [])
        self.assertNoViolations()

    def test_set_user_wins_over_command(self):
        d = self.start_with_command('echo \'{"user_id": "cmd-user"}\'')
        self.set_user(d, 'op-user')
        send_stream(d, [make_event(i) for i in range(5)])
        self.assertEventsDelivered(ids(range(5)))
        self.assertEqual([m['user_id'] for m in self.upstream.mints],
                         ['op-user'])
        self.assertNoViolations()

    def _failing_command(self, script_body, why, check_rss=False,
                         **overrides):
        d = self.start_with_command(script_body, **overrides)
        rss0 = rss_kib(d.pid)
        send_stream(d, [make_event(i) for i in range(10)])
        st = self.wait_session(d, lambda s: s['mint_failures'] >= 3,
                               timeout=15)
        s = st['session']
        self.assertGreaterEqual(s['mint_failures'], 3, s)
        self.assertEqual(s['mints'], 0)
        self.assertIn(why, s['last_error'])
        self.assertEqual(self.upstream.requests, [])
        self.assertEqual(st['queued_events'], 10)
        self.assertEqual(sum(st['dropped'].values()), 0)
        log = d.stderr_text()
        self.assertEqual(count_lines(log, 'user_context_command failed'), 1,
                         log)
        self.assertEqual(count_lines(log, 'user_context_command failed',
                                     why), 1, log)
        if check_rss:
            grown = rss_kib(d.pid) - rss0
            self.assertLess(grown, 16 * 1024,
                            'RSS grew by %d KiB reading a 10 MB output'
                            % grown)
        # An identity from set_user rescues delivery.
        self.set_user(d, 'rescue')
        self.assertEventsDelivered(ids(range(10)), timeout=5)
        self.assertEqual([m['user_id'] for m in self.upstream.mints],
                         ['rescue'])
        self.assertNothingLost(d)
        self.assertNoViolations()
        return d

    def test_hanging_command(self):
        d = self.start_with_command('exec sleep 30',
                                    upstream__user_context_timeout='0.5')
        send_stream(d, [make_event(i) for i in range(10)])
        # The loop never waits for the command: ping answers at once,
        # again and again while commands hang and get killed.
        t_end = time.monotonic() + 1.6
        worst = 0.0
        while time.monotonic() < t_end:
            t0 = time.monotonic()
            self.assertEqual(d.ping(timeout=1.0)['ok'], True)
            worst = max(worst, time.monotonic() - t0)
            time.sleep(0.05)
        self.assertLess(worst, 1.0)
        st = self.wait_session(d, lambda s: s['mint_failures'] >= 1,
                               timeout=5)
        self.assertGreaterEqual(st['session']['mint_failures'], 1)
        self.assertIn('user_context_timeout', st['session']['last_error'])
        self.assertEqual(st['queued_events'], 10)
        self.set_user(d, 'rescue')
        self.assertEventsDelivered(ids(range(10)), timeout=5)
        self.assertEqual([m['user_id'] for m in self.upstream.mints],
                         ['rescue'])
        self.assertNothingLost(d)
        self.assertNoViolations()

    def test_hanging_command_counted(self):
        self._failing_command('exec sleep 30', 'user_context_timeout',
                              upstream__user_context_timeout='0.3')

    def test_crashing_command(self):
        self._failing_command('echo \'{"user_id": "x"}\'; kill -SEGV $$',
                              'signal')

    def test_garbage_command(self):
        self._failing_command('echo "<html>hello</html>"', 'JSON')

    def test_nonzero_exit_command(self):
        self._failing_command('echo \'{"user_id": "x"}\'; exit 7',
                              'non-zero')

    def test_huge_output_command(self):
        self._failing_command("head -c 10000000 /dev/zero | tr '\\0' x",
                              'user_context_max_output', check_rss=True)

    def test_missing_command(self):
        d = self.start_daemon(
            batch__batch_size='5',
            upstream__user_context_command=os.path.join(self.tmpdir, 'nope'))
        send_stream(d, [make_event(i) for i in range(5)])
        st = self.wait_session(d, lambda s: s['mint_failures'] >= 2)
        self.assertGreaterEqual(st['session']['mint_failures'], 2)
        self.assertEqual(st['queued_events'], 5)
        self.assertEqual(count_lines(d.stderr_text(), 'nope'), 1)
        self.set_user(d, 'rescue')
        self.assertEventsDelivered(ids(range(5)), timeout=5)
        self.assertNoViolations()


class ResetSessionTests(SessionCase):

    def test_reset_session_switches_identity(self):
        d = self.start_daemon(batch__batch_size='5')
        self.set_user(d, 'user-A')
        send_stream(d, [make_event(i) for i in range(5)])
        self.assertEventsDelivered(ids(range(5)))

        # set_user alone: the cached token is still good and used.
        self.set_user(d, 'user-B')
        send_stream(d, [make_event(i) for i in range(5, 10)])
        self.assertEventsDelivered(ids(range(10)))
        self.assertEqual([m['user_id'] for m in self.upstream.mints],
                         ['user-A'])

        self.assertEqual(d.control({'op': 'reset_session'}), [{'ok': True}])
        send_stream(d, [make_event(i) for i in range(10, 15)])
        self.assertEventsDelivered(ids(range(15)))
        mints = self.upstream.mints
        self.assertEqual([m['user_id'] for m in mints], ['user-A', 'user-B'])
        reqs = self.upstream.batch_requests
        self.assertEqual(len(reqs), 3)
        self.assertEqual(reqs[2]['headers']['authorization'],
                         'Bearer ' + mints[1]['token'])
        self.assertEqual(self.session(d)['mints'], 2)
        self.assertNoViolations()

    def test_reset_session_on_datagram_socket(self):
        d = self.start_daemon(batch__batch_size='5')
        self.set_user(d, 'user-A')
        send_stream(d, [make_event(i) for i in range(5)])
        self.assertEventsDelivered(ids(range(5)))
        d.send_dgram(ndjson_line({'op': 'set_user', 'user_id': 'user-C'}))
        d.send_dgram(ndjson_line({'op': 'reset_session'}))
        d.ping()
        send_stream(d, [make_event(i) for i in range(5, 10)])
        self.assertEventsDelivered(ids(range(10)))
        self.assertEqual([m['user_id'] for m in self.upstream.mints],
                         ['user-A', 'user-C'])
        self.assertNoViolations()

    def test_reset_session_without_traffic_does_not_mint(self):
        d = self.start_daemon()
        self.set_user(d, 'user-A')
        self.assertEqual(d.control({'op': 'reset_session'}), [{'ok': True}])
        self.assertStaysTrue(lambda: self.upstream.mints == [], 0.5)
        self.assertNoViolations()


class ResetStormTests(SessionCase):
    """Issue 10, item 1: any process that may write the events socket
    can send reset_session, and a buggy or hostile one sends 100 a
    second. Resets coalesce: delivery goes on with the token at hand
    (the identity is the same), and the storm costs about one mint (one
    identity command run) per upstream.session_reset_min_interval (1 s).
    On the old code every reset threw the mint in flight away: no event
    went out during the storm, a mint (and a command run) per reset."""

    # CI's short form; scripts/reset-storm.sh runs the 10 s.
    STORM_S = float(os.environ.get('SEGOPS_STORM_S', '2'))

    def storm(self, d, seconds):
        """reset_session datagrams at ~100/s with two events every 40 ms,
        for seconds; returns (events sent, resets sent, elapsed, events
        delivered by the end, worst ping seconds)."""
        reset = ndjson_line({'op': 'reset_session'}).encode()
        n = resets = 0
        worst = 0.0
        t0 = time.monotonic()
        next_ping = t0
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.settimeout(5.0)
            while time.monotonic() - t0 < seconds and resets < 200 * seconds:
                for _ in range(4):
                    s.sendto(reset, d.events_socket)
                    resets += 1
                if n < 200:
                    d.send_events_dgram([make_event(n), make_event(n + 1)])
                    n += 2
                if time.monotonic() >= next_ping:
                    t = time.monotonic()
                    self.assertEqual(d.ping(timeout=5.0)['ok'], True)
                    worst = max(worst, time.monotonic() - t)
                    next_ping = t + 0.25
                time.sleep(0.04)
        elapsed = time.monotonic() - t0
        delivered = len(set(self.upstream.events) & set(ids(range(n))))
        return n, resets, elapsed, delivered, worst

    def check_storm(self, d, n, resets, elapsed, delivered):
        # Delivery went on during the storm: what was sent in its first
        # half was out before it ended (the old code: nothing).
        self.assertGreaterEqual(delivered, n // 2,
                                '%d of %d events delivered during a %.1f s '
                                'storm of %d resets' % (delivered, n, elapsed,
                                                        resets))
        self.assertEventsDelivered(ids(range(n)), timeout=10)

    def check_counters(self, d, resets):
        # Every reset counted, and the session settled: the last re-mint
        # (and its command run) done, none pending.
        st = d.wait_for_stats(
            lambda st: st['session'].get('resets') == resets and
            st['session']['state'] == 'ready' and
            st['session'].get('remint_pending') is False)
        s = st['session']
        self.assertEqual(s.get('resets'), resets, s)
        self.assertEqual(sum(st['dropped'].values()), 0, st['dropped'])
        # Every reset but those that started a mint of their own was
        # folded into one already pending or running.
        self.assertGreaterEqual(s['resets_coalesced'], resets - s['mints'])
        # The log says so, rate-limited: [log] rate (10) lines per fixed
        # 10 s window (a storm may span two); a line for each reset that
        # asked for a mint of its own, at most one per mint.
        log = d.stderr_text()
        coalesced = count_lines(log, 'reset_session coalesced')
        self.assertLessEqual(coalesced, 2 * 10)
        self.assertLessEqual(count_lines(log, 'reset_session') - coalesced,
                             s['mints'] + 1)
        return s

    def test_reset_storm_keeps_delivery(self):
        d = self.start_daemon(batch__flush_interval='0.1')
        # A slow mint (0.1 s), so resets arrive while one is in flight.
        self.upstream.set_default(200, delay=0.1, kinds=('mint',))
        self.set_user(d, 'storm-user')
        n, resets, elapsed, delivered, worst = self.storm(d, self.STORM_S)
        self.check_storm(d, n, resets, elapsed, delivered)
        s = self.check_counters(d, resets)
        mints = self.upstream.mints
        # At most one mint per session_reset_min_interval (1 s), and the
        # first: the old code made one per reset the mint lived through.
        self.assertLessEqual(len(mints), int(elapsed) + 2,
                             '%d mints for %d resets in %.1f s' % (
                                 len(mints), resets, elapsed))
        self.assertTrue(all(m['user_id'] == 'storm-user' for m in mints))
        self.assertEqual(s['mints'], len(mints))
        self.assertLess(worst, 1.0, 'a ping took %.3f s' % worst)
        self.assertNoViolations()

    def test_reset_storm_bounds_user_context_command(self):
        runs = os.path.join(self.tmpdir, 'runs')
        path = self.write_script(
            'identity.sh', 'echo run >> %s\n'
            'echo \'{"user_id": "cmd-user"}\'' % runs)
        d = self.start_daemon(batch__flush_interval='0.1',
                              upstream__user_context_command=path)
        n, resets, elapsed, delivered, _ = self.storm(d, self.STORM_S)
        self.check_storm(d, n, resets, elapsed, delivered)

        def ran():
            with open(runs, encoding='ascii') as f:
                return len(f.read().splitlines())
        # About one run per session_reset_min_interval (the old code: one
        # per reset that came while none ran: about 30 in 2 s).
        self.assertLessEqual(ran(), int(elapsed) + 2,
                             'user_context_command ran %d times for %d '
                             'resets in %.1f s' % (ran(), resets, elapsed))
        s = self.check_counters(d, resets)
        self.assertEqual(s['user_context_runs'], ran())
        self.assertLessEqual(ran(), int(elapsed) + 2)
        self.assertLessEqual(len(self.upstream.mints), int(elapsed) + 2)
        self.assertEqual(s['mints'], len(self.upstream.mints))
        self.assertNoViolations()


def ndjson_line(msg):
    return json.dumps(msg) + '\n'


class MintFailureTests(SessionCase):

    def test_mint_500_then_200_retried(self):
        d = self.start_daemon(batch__batch_size='5')
        self.upstream.script_mint([500, 502])
        self.set_user(d, 'retry-user')
        send_stream(d, [make_event(i) for i in range(5)])
        self.assertEventsDelivered(ids(range(5)), timeout=10)
        self.assertEqual(self.mint_statuses(), [500, 502, 200])
        s = self.assertNothingLost(d)['session']
        self.assertEqual(s['mints'], 1)
        self.assertEqual(s['mint_failures'], 2)
        self.assertEqual(s['last_status'], 200)
        self.assertEqual(len(self.upstream.batch_requests), 1)
        self.assertNoViolations()

    def test_mint_503_retry_after_honoured(self):
        d = self.start_daemon(batch__batch_size='5')
        self.upstream.script_mint([{'status': 503,
                                    'headers': {'Retry-After': '1'}}])
        self.set_user(d, 'ra-user')
        send_stream(d, [make_event(i) for i in range(5)])
        self.assertEventsDelivered(ids(range(5)), timeout=10)
        mints = self.upstream.mints
        self.assertEqual([m['status'] for m in mints], [503, 200])
        gap = mints[1]['time'] - mints[0]['time']
        self.assertGreaterEqual(gap, 0.9)
        self.assertLess(gap, 3.0)
        # The pause counts from the answer (10 ms: the loop's clock
        # counts whole milliseconds).
        tries = [r for r in self.upstream.requests if r['kind'] == 'mint']
        self.assertGreaterEqual(tries[1]['time'] - tries[0]['done'],
                                1.0 - 0.01)
        self.assertNoViolations()

    def test_mint_429_without_retry_after_backs_off(self):
        # No Retry-After: ordinary backoff (from 0.5 s, full jitter, at
        # most 1 s), each retry within its bound; not a resend at once
        # (which would make ~40 mints in these 2 s).
        d = self.start_daemon(batch__batch_size='5',
                              upstream__backoff_initial='0.5',
                              upstream__backoff_max='1')
        self.upstream.set_default(429, kinds=('mint',))
        self.set_user(d, 'no-ra-user')
        send_stream(d, [make_event(i) for i in range(5)])
        self.assertTrue(self.upstream.wait_for_mints(1, timeout=5))
        first = self.upstream.mints[0]['time']
        # Tries are counted over two seconds: a window, not a wait.
        self.assertStaysTrue(lambda: len(self.upstream.mints) <= 20,
                             first + 2.0 - time.monotonic())
        self.upstream.set_default(None)
        tries = len([m for m in self.upstream.mints
                     if m['time'] < first + 2.0])
        self.assertGreaterEqual(tries, 1)
        self.assertLessEqual(tries, 20)
        self.assertEventsDelivered(ids(range(5)), timeout=10)
        attempts = [r for r in self.upstream.requests if r['kind'] == 'mint']
        self.assertEqual([r['status'] for r in attempts],
                         [429] * (len(attempts) - 1) + [200])
        self.assertBackoffSpacing(attempts, 0.5, 1.0)
        self.assertNoViolations()

    def test_mint_400_kept_logged_retried(self):
        d = self.start_daemon(batch__batch_size='5')
        self.upstream.script_mint([400])
        self.set_user(d, 'four-hundred')
        send_stream(d, [make_event(i) for i in range(5)])
        self.assertEventsDelivered(ids(range(5)), timeout=10)
        self.assertEqual(self.mint_statuses(), [400, 200])
        self.assertEqual(count_lines(d.stderr_text(), 'HTTP 400'), 1)
        self.assertNothingLost(d)
        self.assertNoViolations()

    def test_mint_connection_dropped_then_recovery(self):
        d = self.start_daemon(batch__batch_size='5')
        self.upstream.script_mint([{'drop': True}])
        self.set_user(d, 'dropped-user')
        send_stream(d, [make_event(i) for i in range(5)])
        self.assertEventsDelivered(ids(range(5)), timeout=10)
        self.assertEqual(self.mint_statuses(), ['dropped', 200])
        self.assertEqual(self.session(d)['mint_failures'], 1)
        self.assertNothingLost(d)
        self.assertNoViolations()


class WrongKeyTests(SessionCase):
    upstream_options = {'bad_auth_is_violation': False}

    def test_mint_401_wrong_key_kept_and_logged(self):
        wrong = 'pk_test_wrongwrongwrong999'
        d = self.start_daemon(key=wrong, batch__batch_size='5')
        self.set_user(d, 'u1')
        send_stream(d, [make_event(i) for i in range(5)])
        st = self.wait_session(d, lambda s: s['mint_failures'] >= 3)
        s = st['session']
        self.assertGreaterEqual(s['mint_failures'], 3)
        self.assertEqual(s['last_status'], 401)
        self.assertEqual(s['mints'], 0)
        self.assertEqual(st['queued_events'], 5)
        self.assertEqual(sum(st['dropped'].values()), 0)
        self.assertEqual(self.upstream.batch_requests, [])
        self.assertTrue(all(m['status'] == 401 for m in self.upstream.mints))
        log = d.stderr_text()
        self.assertEqual(count_lines(log, '401', 'api_key_file'), 1, log)
        # The key itself is never logged, only its redacted form.
        self.assertNotIn(wrong, log)
        self.assertNotIn(wrong, json.dumps(st))
        self.assertNoViolations()


class SecrecyTests(SessionCase):
    upstream_options = {'token_ttl': 3}

    def test_token_never_in_stats_or_log(self):
        d = self.start_daemon(batch__batch_size='3',
                              batch__flush_interval='0.1')
        self.set_user(d, 'quiet-user')
        snapshots = []
        # Past the first renewal (at half the 3 s lifetime), then a
        # revocation: three tokens come and go.
        deadline = time.monotonic() + 2.5
        n = 0
        while time.monotonic() < deadline and n < 100:
            d.send_events_dgram([make_event(n)])
            n += 1
            snapshots.append(json.dumps(d.stats()))
            time.sleep(0.1)
        self.upstream.revoke_tokens()
        d.send_events_dgram([make_event(n)])
        n += 1
        self.assertEventsDelivered(ids(range(n)), timeout=10)
        snapshots.append(json.dumps(d.stats()))
        tokens = [m['token'] for m in self.upstream.mints if m['token']]
        self.assertGreaterEqual(len(tokens), 2)
        log = d.stderr_text() + d.stdout_text()
        for tok in tokens:
            self.assertNotIn(tok, log)
            # Also no long piece of it (a truncated or redacted token).
            self.assertNotIn(tok[4:20], log)
            for snap in snapshots:
                self.assertNotIn(tok, snap)
                self.assertNotIn(tok[4:20], snap)
        self.assertNotIn(PK_KEY, log)
        for snap in snapshots:
            self.assertNotIn(PK_KEY, snap)
        st = d.wait_for_stats(lambda s: s['session'].get('state') == 'ready',
                              timeout=3)
        s = st['session']
        for k in ('enabled', 'state', 'mints', 'mint_failures',
                  'token_age_s', 'token_expires_in_s', 'last_status'):
            self.assertIn(k, s)
        self.assertTrue(s['enabled'])
        self.assertEqual(s['mints'], len(tokens))
        self.assertEqual(s['mint_failures'], 0)
        self.assertGreaterEqual(s['token_age_s'], 0)
        self.assertLessEqual(s['token_age_s'], 3.0)
        self.assertGreater(s['token_expires_in_s'], 0)
        self.assertLessEqual(s['token_expires_in_s'], 3.0)
        self.assertAlmostEqual(s['token_age_s'] + s['token_expires_in_s'],
                               3.0, delta=0.05)
        self.assertNoViolations()


class LogForgingTests(SessionCase):
    upstream_options = {'require_sig': True, 'sig_secret': SECRET}

    def test_user_id_cannot_start_a_log_line(self):
        # The user id of set_user is logged (the mint fails: no
        # signature); a newline in it must not start a line of its own.
        d = self.start_daemon(batch__batch_size='1')
        self.set_user(d, 'u1\n<2>segopsd: FORGED LINE\r\x1b[2J')
        send_stream(d, [make_event(0)])
        self.assertTrue(d.wait_for_log(r'HTTP 403', timeout=10))
        log = d.stderr_text()
        for line in log.splitlines():
            self.assertFalse(line.startswith('<2>'), line)
            self.assertFalse(line.startswith('segopsd: FORGED'), line)
        self.assertNotIn('\x1b', log)
        self.assertIn(r"u1\x0a<2>segopsd: FORGED LINE\x0d\x1b[2J", log)


class SecretKeyTests(SegopsTestCase):
    """An sk_ key: no session at all."""

    def test_reset_session_is_a_noop_with_sk_key(self):
        d = self.start_daemon(batch__batch_size='5')
        s = d.stats()['session']
        self.assertFalse(s['enabled'])
        self.assertEqual(s['state'], 'disabled')
        self.assertEqual(d.control({'op': 'set_user', 'user_id': 'x'}),
                         [{'ok': True}])
        self.assertEqual(d.control({'op': 'reset_session'}), [{'ok': True}])
        send_stream(d, [make_event(i) for i in range(5)])
        self.assertEventsDelivered(ids(range(5)))
        self.assertEqual(d.control({'op': 'reset_session'}), [{'ok': True}])
        send_stream(d, [make_event(i) for i in range(5, 10)])
        self.assertEventsDelivered(ids(range(10)))
        self.assertEqual(self.upstream.mints, [])
        reqs = self.upstream.batch_requests
        self.assertEqual(len(reqs), 2)
        self.assertTrue(all(r['headers']['authorization'] ==
                            'Bearer ' + self.api_key for r in reqs))
        s = d.stats()['session']
        self.assertFalse(s['enabled'])
        self.assertEqual(s['mints'], 0)
        self.assertNotIn('token_age_s', s)
        self.assertNoViolations()


if __name__ == '__main__':
    harness.main()
