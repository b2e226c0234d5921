#!/usr/bin/env python3
"""The API key and the session token stay out of the log and stats even
when the upstream echoes them back (issue 10, item 4), and the key is not
sent in clear text to a remote host by mistake (item 5).

An upstream (or whatever answers in its place) may put the request's
Authorization header into an error body; segopsd logs the head of a
rejected batch's body, so the daemon must scrub it (daemon/scrub.c).
Each test here reads the whole log and stats afterwards and looks for
the key, the token, and any 8 characters in a row of either past its
sk_/pk_/tok_ prefix (what a cut excerpt would leave), also after undoing
the escapes a logged body goes through (\\x5c for a backslash, JSON's
\\u00XX), so a key the upstream escaped is caught too.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'lib'))

import harness  # noqa: E402
from harness import SegopsTestCase, event_id, make_event  # noqa: E402
from test_cli import run_segopsd  # noqa: E402

SK_KEY = 'sk_live_Zq8sEcReTvAlUe4242xyz'
PK_KEY = 'pk_live_PuBkEyQ7sEcReT9090abc'


def unescape(text):
    """The log with a logged body's escapes undone: \\x5c is the
    backslash of proto_printable's ASCII form, \\u005f JSON's."""
    text = text.replace('\\x5c', '\\')
    for ch in '_/"':
        text = text.replace('\\u%04x' % ord(ch), ch)
        text = text.replace('\\u%04X' % ord(ch), ch)
    return text.replace('\\/', '/')


def reflect_header(headers):
    """An error body echoing the Authorization header as JSON."""
    return json.dumps({'error': 'malformed batch',
                       'request': {'authorization': headers['Authorization']}})


def reflect_bare(headers):
    """The credential alone, with no "Bearer" before it."""
    cred = headers['Authorization'].split(' ', 1)[1]
    return '{"error":"credential %s is not allowed here"}' % cred


def reflect_escaped(headers):
    """The credential JSON-escaped as some servers do (\\u005f, \\/)."""
    cred = headers['Authorization'].split(' ', 1)[1]
    return '{"error":"bad","auth":"Bearer%s"}' % (
        ' ' + cred.replace('_', '\\u005f').replace('/', '\\/'))


def reflect_at_cut(headers):
    """The credential straddling byte 160, where the logged excerpt of
    a body is cut: a scrubber that works on the excerpt alone would let
    its head through."""
    cred = headers['Authorization'].split(' ', 1)[1]
    head = '{"error":"' + 'x' * 130 + ' '
    return head + cred + '"}'


class SecretsCase(SegopsTestCase):

    def assertNoSecret(self, d, secret, prefix_len):
        """Neither secret nor any 8 characters of it past its prefix
        appear in the log (stderr, stdout) or the stats, as they are or
        unescaped."""
        texts = {'log': d.stderr_text() + d.stdout_text(),
                 'stats': json.dumps(d.stats())}
        for what, text in texts.items():
            for t in (text, unescape(text)):
                self.assertNotIn(secret, t, what)
                for i in range(prefix_len, len(secret) - 7):
                    self.assertNotIn(secret[i:i + 8], t,
                                     '%s holds a piece of the secret' % what)


class ReflectedKey(SecretsCase):
    api_key = SK_KEY

    def test_bodies_echoing_the_key_are_logged_scrubbed(self):
        """Four rejected batches, each answered with a body that echoes
        the key another way, and a 401 echoing it: all are logged (as
        rejected, or as a refused key), none with the key in it; the
        last batch is delivered after the 401."""
        d = self.start_daemon(batch__batch_size='1',
                              upstream__max_in_flight='1')
        bodies = [reflect_header, reflect_bare, reflect_escaped,
                  reflect_at_cut]
        self.upstream.script([{'status': 400, 'body': b} for b in bodies] +
                             [{'status': 401, 'body': reflect_header}])
        replies = d.control([make_event(i) for i in range(5)] +
                            [{'op': 'ping'}], timeout=15)
        self.assertTrue(all(r.get('ok') for r in replies), replies)
        self.assertEventsDelivered([event_id(4)], timeout=15)
        st = d.wait_for_stats(
            lambda s: s['dropped'].get('upstream_rejected', 0) >= 4 and
            s['in_flight'] == 0, 10)
        self.assertEqual(st['dropped']['upstream_rejected'], 4)
        # Every rejection was logged, and what was scrubbed says so.
        self.assertIsNotNone(d.wait_for_log(r'(?s)(rejected batch.*){4}', 10))
        self.assertIn('[redacted]', d.stderr_text())
        self.assertIn('Bearer [redacted]', d.stderr_text())
        self.assertNoSecret(d, SK_KEY, 3)
        self.assertNoViolations()


class ReflectedToken(SecretsCase):
    api_key = PK_KEY
    upstream_options = {'token_len': 48}

    def test_bodies_echoing_the_token_are_logged_scrubbed(self):
        """pk_: a mint refused with a body echoing the key, then events
        rejected with bodies echoing the session token (no sk_/pk_
        shape: only the exact token can be recognised)."""
        d = self.start_daemon(batch__batch_size='1',
                              upstream__max_in_flight='1')
        self.upstream.script_mint([{'status': 400, 'body': reflect_header}])
        self.upstream.script([{'status': 400, 'body': reflect_bare},
                              {'status': 422, 'body': reflect_at_cut},
                              {'status': 400, 'body': reflect_escaped}])
        self.assertEqual(d.control({'op': 'set_user', 'user_id': 'u1'}),
                         [{'ok': True}])
        replies = d.control([make_event(i) for i in range(4)] +
                            [{'op': 'ping'}], timeout=15)
        self.assertTrue(all(r.get('ok') for r in replies), replies)
        self.assertEventsDelivered([event_id(3)], timeout=15)
        st = d.wait_for_stats(
            lambda s: s['dropped'].get('upstream_rejected', 0) >= 3 and
            s['in_flight'] == 0, 10)
        self.assertEqual(st['dropped']['upstream_rejected'], 3)
        self.assertIsNotNone(d.wait_for_log(r'(?s)(rejected batch.*){3}', 10))
        tokens = [m['token'] for m in self.upstream.mints if m['token']]
        self.assertEqual(len(tokens), 1, self.upstream.mints)
        self.assertNoSecret(d, tokens[0], 4)
        self.assertNoSecret(d, PK_KEY, 3)
        self.assertNoViolations()


class ClearText(SecretsCase):
    """api_url = http:// to a host other than loopback sends the key
    in clear text: refused unless allow_insecure_http = yes. Validation
    only: nothing here connects anywhere (.invalid never resolves)."""

    def check(self, url, **overrides):
        d = self.make_daemon(url=url, **overrides)
        return d, run_segopsd('--config', d.config_path, '--check-config')

    def test_http_to_a_remote_host_is_refused(self):
        # Every spelling is in tests/unit/test-config.c; here, what the
        # command line does with two.
        for url in ('http://example.invalid',
                    'http://localhost@10.1.2.3:8080/'):
            d, (rc, out, err) = self.check(url)
            self.assertNotEqual(rc, 0, url)
            self.assertIn('allow_insecure_http', err, url)
            self.assertIn('clear text', err, url)
            self.assertRegex(err, r'segopsd\.conf:\d+:', url)
            self.assertNotIn(SecretsCase.api_key, out + err)
            # Starting is refused the same way, before any socket.
            rc2, _, err2 = run_segopsd('--config', d.config_path)
            self.assertNotEqual(rc2, 0, url)
            self.assertIn('allow_insecure_http', err2, url)
            self.assertFalse(os.path.exists(d.events_socket))

    def test_http_to_loopback_is_allowed(self):
        for url in ('http://127.9.8.7:1', 'http://localhost:8080/',
                    'http://[::1]:1'):
            _, (rc, out, err) = self.check(url)
            self.assertEqual(rc, 0, '%s: %s' % (url, err))
            self.assertNotIn('clear text', err, url)

    def test_allow_insecure_http_warns(self):
        d, (rc, out, err) = self.check('http://example.invalid',
                                       upstream__allow_insecure_http='yes')
        self.assertEqual(rc, 0, err)
        self.assertRegex(err, r'warning: .*clear text')
        self.assertNotIn(self.api_key, out + err)
        # https needs no such thing.
        _, (rc, out, err) = self.check('https://example.invalid')
        self.assertEqual(rc, 0, err)
        self.assertNotIn('clear text', err)


if __name__ == '__main__':
    harness.main()
