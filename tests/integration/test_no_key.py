#!/usr/bin/env python3
"""Integration tests of "no key yet" (issue 13): an empty key file or an
empty systemd credential, as a fresh package installs it.

segopsd starts, accepts and holds events, sends nothing, says state
no_key (segopsctl health exits 6, status says why) and logs where the
key goes; a reload that brings an sk_ key sends what was held; a stop
does not wait stop_timeout for a delivery that cannot happen, and the
spool keeps the events for the next start.

Environment (set by meson): SEGOPSD, SEGOPSCTL.
"""

import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'lib'))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (DEFAULT_KEY, SegopsTestCase, event_id,  # noqa: E402
                     make_event, send_stream)
from test_segopsctl import CtlCase  # noqa: E402

# Long enough that a stop which waited for it would be seen.
STOP_TIMEOUT = 30


class NoKeyTests(CtlCase, SegopsTestCase):

    def start_without_key(self, **overrides):
        d = self.make_daemon(**overrides)
        d.write_key('')
        return d.start()

    def assertNothingSent(self, window=1.0):
        # Several flush_interval periods (0.2 s): a batch that was going
        # to be sent would have been.
        self.assertStaysTrue(lambda: not self.upstream.requests, window,
                             'segopsd sent a request without a key')

    def test_empty_key_file_holds_events_until_a_reload_gives_it(self):
        d = self.start_without_key()
        d.wait_for_log(r'no API key yet: .*api_key \(api_key_file\) is empty')
        self.assertIn('a reload, SIGHUP, takes an sk_ key', d.stderr_text())

        ids = [event_id(i) for i in range(50)]
        replies = send_stream(d, [make_event(i) for i in range(50)])
        self.assertTrue(all(r.get('ok') for r in replies), replies[:3])
        d.wait_for_stats(lambda s: s['upstream']['state'] == 'no_key'
                         and s['accepted'] == 50)
        self.assertNothingSent()

        rc, out, _ = self.ctl(d, 'health')
        self.assertEqual(rc, 6, out)
        self.assertIn('no API key yet', out)
        rc, out, _ = self.ctl(d, 'status')
        self.assertEqual(rc, 0, out)
        self.assertIn('no API key yet', out)
        rc, out, _ = self.ctl(d, 'metrics')
        self.assertIn('segopsd_upstream_state{state="no_key"} 1', out)

        # A reload that still finds no key says so again and changes
        # nothing.
        d.send_signal(signal.SIGHUP)
        d.wait_for_log(r'reload: no API key yet')
        self.assertNothingSent(0.5)

        d.write_key(DEFAULT_KEY)
        d.send_signal(signal.SIGHUP)
        d.wait_for_log(r'reload: API key given, now sk_')
        self.assertEventsDelivered(ids)
        d.wait_for_stats(lambda s: s['upstream']['state'] == 'ok')
        rc, out, _ = self.ctl(d, 'health')
        self.assertEqual(rc, 0, out)
        self.assertNoViolations()
        self.assertNotIn(DEFAULT_KEY, d.stderr_text())

    def test_a_pk_key_after_no_key_needs_a_restart(self):
        d = self.start_without_key()
        d.write_key('pk_test_0123456789abcdef')
        d.send_signal(signal.SIGHUP)
        d.wait_for_log(r'reload failed.*the key changed kind')
        s = d.stats()
        self.assertEqual(s['upstream']['state'], 'no_key')

    def test_empty_credential_stop_is_prompt_and_spool_keeps_events(self):
        creds = os.path.join(self.tmpdir, 'creds')
        os.makedirs(creds, mode=0o700)
        cred = os.path.join(creds, 'api_key')
        with open(os.open(cred, os.O_WRONLY | os.O_CREAT, 0o400), 'w'):
            pass
        spool = os.path.join(self.tmpdir, 'spool')
        os.makedirs(spool, mode=0o700)
        d = self.make_daemon(env={'CREDENTIALS_DIRECTORY': creds},
                             upstream__stop_timeout=str(STOP_TIMEOUT),
                             buffer__spool_dir=spool)
        d.start()
        d.wait_for_log(r'no API key yet: the systemd credential api_key is empty')
        self.assertIn('restart segopsd', d.stderr_text())

        ids = [event_id(i) for i in range(30)]
        replies = send_stream(d, [make_event(i) for i in range(30)])
        self.assertTrue(all(r.get('ok') for r in replies), replies[:3])
        d.wait_for_stats(lambda s: s['accepted'] == 30)

        t0 = time.monotonic()
        rc = d.stop()
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, d.stderr_tail())
        # Well under stop_timeout: nothing could have been delivered.
        self.assertLess(took, STOP_TIMEOUT / 3, 'the stop waited %.1f s' % took)
        self.assertRegex(d.stderr_text(), r'stopped: 30 events wait in the spool')
        self.assertNothingSent(0.1)

        # The key arrives (the credential's source was filled in, and
        # systemd restarted segopsd): what the spool kept is sent.
        os.chmod(cred, 0o600)
        with open(cred, 'w') as f:
            f.write(DEFAULT_KEY + '\n')
        os.chmod(cred, 0o400)
        d.start()
        self.assertEventsDelivered(ids)
        self.assertNoViolations()

    def test_check_config_warns_but_passes(self):
        d = self.make_daemon()
        d.write_key('\n')
        p = subprocess.run([harness.segopsd_path(), '--config', d.config_path,
                            '--check-config'], capture_output=True, text=True,
                           timeout=30, check=False)
        rc, err = p.returncode, p.stderr
        self.assertEqual(rc, 0, err)
        self.assertIn('no API key yet', err)
        rc, out, err = self.ctl(d, 'check-config', d.config_path)
        self.assertEqual(rc, 0, err)
        self.assertIn('warning: no API key yet', err)
        rc, out, err = self.ctl(d, '--json', 'check-config', d.config_path)
        self.assertEqual(rc, 0, err)
        self.assertTrue(json.loads(out)['ok'])


if __name__ == '__main__':
    harness.main()
