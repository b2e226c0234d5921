#!/usr/bin/env python3
"""Integration tests of segopsd's command line and configuration
handling (SPEC section 6): --version, --help, --check-config, the error
messages for bad files, keeping the API key secret, and the dry run
(api_url = stdout) with the shipped configs/dry-run.conf.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'lib'))

import harness  # noqa: E402
from harness import (Daemon, SegopsTestCase, event_id, make_event,  # noqa: E402
                     segopsd_path)

requires_socat = unittest.skipUnless(shutil.which('socat'),
                                     'socat is not installed')

SOURCE_ROOT = os.path.normpath(os.path.join(HERE, '..', '..'))
SECRET = 'sk_live_Zq8sEcReTvAlUe4242'


def run_segopsd(*args, timeout=15, env=None):
    e = {k: v for k, v in os.environ.items()
         if k not in ('CREDENTIALS_DIRECTORY', 'NOTIFY_SOCKET', 'LISTEN_FDS',
                      'LISTEN_PID')}
    e.update(env or {})
    p = subprocess.run([segopsd_path(), *args], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout, env=e,
                       check=False)
    return (p.returncode, p.stdout.decode('utf-8', 'replace'),
            p.stderr.decode('utf-8', 'replace'))


class CliTests(SegopsTestCase):

    def write(self, name, text):
        path = os.path.join(self.tmpdir, name)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(text)
        os.chmod(path, 0o600)
        return path

    def base_config(self, key_line=None):
        """A valid config as text, listing keys one per line so tests can
        name line numbers."""
        key_path = self.write('key', SECRET + '\n')
        os.chmod(key_path, 0o600)
        lines = ['[upstream]',                                        # 1
                 'api_url = ' + self.upstream.url,                    # 2
                 key_line or 'api_key_file = ' + key_path,            # 3
                 'timeout = 5',                                       # 4
                 '',                                                  # 5
                 '[batch]',                                           # 6
                 'batch_size = 20',                                   # 7
                 'flush_interval = 0.2',                              # 8
                 '',                                                  # 9
                 '[listen]',                                          # 10
                 'events_socket = ' + os.path.join(self.tmpdir, 'e.sock'),
                 'control_socket = ' + os.path.join(self.tmpdir, 'c.sock'),
                 '']
        return lines

    def config_file(self, lines, name='segopsd.conf'):
        return self.write(name, '\n'.join(lines) + '\n')

    def test_version(self):
        rc, out, err = run_segopsd('--version')
        self.assertEqual(rc, 0)
        self.assertRegex(out, r'^segopsd \d+\.\d+\.\d+\n$')
        self.assertEqual(err, '')
        # The same version the running daemon reports.
        d = self.start_daemon()
        self.assertEqual(out.split()[1], d.ping()['version'])

    def test_help(self):
        rc, out, err = run_segopsd('--help')
        self.assertEqual(rc, 0)
        for opt in ('--config', '--check-config', '--version', '--help'):
            self.assertIn(opt, out)
        rc, out, err = run_segopsd('-h')
        self.assertEqual(rc, 0)
        self.assertIn('--config', out)

    def test_unknown_option(self):
        rc, out, err = run_segopsd('--bogus')
        self.assertNotEqual(rc, 0)
        self.assertIn('bogus', err)
        self.assertIn('Usage', err)
        rc, out, err = run_segopsd('stray-argument')
        self.assertNotEqual(rc, 0)
        self.assertIn('stray-argument', err)

    def test_check_config_ok(self):
        path = self.config_file(self.base_config())
        rc, out, err = run_segopsd('--config', path, '--check-config')
        self.assertEqual(rc, 0, err)
        self.assertIn('OK', out)
        self.assertNotIn(SECRET, out + err)
        # It checks, it does not start: no sockets were made.
        self.assertFalse(os.path.exists(os.path.join(self.tmpdir, 'e.sock')))

    def test_check_config_bad_value(self):
        lines = self.base_config()
        lines[6] = 'batch_size = twenty'                # line 7
        path = self.config_file(lines)
        rc, out, err = run_segopsd('--config', path, '--check-config')
        self.assertNotEqual(rc, 0)
        self.assertIn(path, err)
        self.assertRegex(err, r':7:')
        self.assertIn('batch_size', err)
        self.assertIn('twenty', err)
        # The daemon refuses to start with it as well.
        rc2, _, err2 = run_segopsd('--config', path)
        self.assertNotEqual(rc2, 0)
        self.assertIn('batch_size', err2)

    def test_check_config_out_of_range(self):
        lines = self.base_config()
        lines[7] = 'flush_interval = -1'                # line 8
        path = self.config_file(lines)
        rc, out, err = run_segopsd('--config', path, '--check-config')
        self.assertNotEqual(rc, 0)
        self.assertRegex(err, re.escape(path) + r':8:.*flush_interval')

    def test_check_config_unknown_key(self):
        lines = self.base_config()
        lines[6] = 'batchsize = 5'                      # line 7
        path = self.config_file(lines)
        rc, out, err = run_segopsd('--config', path, '--check-config')
        self.assertNotEqual(rc, 0)
        self.assertRegex(err, re.escape(path) + r':7:.*batchsize')

    def test_check_config_unknown_section(self):
        lines = self.base_config() + ['[bufer]', 'max_memory = 1M']
        path = self.config_file(lines)
        rc, out, err = run_segopsd('--config', path, '--check-config')
        self.assertNotEqual(rc, 0)
        self.assertIn('bufer', err)
        self.assertIn(path, err)

    def test_missing_config_file(self):
        path = os.path.join(self.tmpdir, 'nope.conf')
        rc, out, err = run_segopsd('--config', path, '--check-config')
        self.assertNotEqual(rc, 0)
        self.assertIn(path, err)

    def test_missing_key_file(self):
        missing = os.path.join(self.tmpdir, 'no-such-key')
        lines = self.base_config('api_key_file = ' + missing)
        path = self.config_file(lines)
        for args in (('--check-config',), ()):
            rc, out, err = run_segopsd('--config', path, *args)
            self.assertNotEqual(rc, 0, args)
            self.assertIn(missing, err)
            self.assertRegex(err, r'(?i)key')
            self.assertRegex(err, r'No such file|cannot read')
        self.assertFalse(os.path.exists(os.path.join(self.tmpdir, 'e.sock')))

    def test_key_file_readable_by_everyone_is_refused(self):
        key_path = self.write('openkey', SECRET + '\n')
        os.chmod(key_path, 0o644)
        path = self.config_file(self.base_config('api_key_file = ' + key_path))
        for args in (('--check-config',), ()):
            rc, out, err = run_segopsd('--config', path, *args)
            self.assertEqual(rc, 1, args)
            self.assertRegex(err, r'%s:\d+: \[upstream\] api_key_file: %s can '
                             r'be read or written by every user' %
                             (re.escape(path), re.escape(key_path)))
            self.assertNotIn(SECRET, out + err)
            self.assertNotIn(SECRET[4:], out + err)

    def test_bad_key_in_key_file(self):
        key_path = self.write('badkey', 'xx_not_a_key_123456\n')
        lines = self.base_config('api_key_file = ' + key_path)
        path = self.config_file(lines)
        rc, out, err = run_segopsd('--config', path, '--check-config')
        self.assertNotEqual(rc, 0)
        self.assertIn('sk_', err)
        self.assertIn(key_path, err)
        self.assertNotIn('xx_not_a_key_123456', out + err)

    def test_no_key_at_all(self):
        lines = self.base_config('; no key')
        path = self.config_file(lines)
        rc, out, err = run_segopsd('--config', path, '--check-config')
        self.assertNotEqual(rc, 0)
        self.assertRegex(err, r'(?i)no API key')

    def test_key_never_shown_in_errors(self):
        # The key inline, and a bad value elsewhere.
        lines = self.base_config('api_key = ' + SECRET)
        lines[3] = 'timeout = soon'                     # line 4
        path = self.config_file(lines)
        rc, out, err = run_segopsd('--config', path, '--check-config')
        self.assertNotEqual(rc, 0)
        self.assertIn('timeout', err)
        self.assertNotIn(SECRET, out + err)
        # A key pasted into the wrong field is not echoed either.
        lines = self.base_config()
        lines[1] = 'api_url = ' + SECRET                # line 2
        path = self.config_file(lines, 'pasted.conf')
        rc, out, err = run_segopsd('--config', path, '--check-config')
        self.assertNotEqual(rc, 0)
        self.assertRegex(err, r':2:.*api_url')
        self.assertNotIn(SECRET, out + err)
        self.assertNotIn(SECRET[3:], out + err)

    def test_key_never_in_output_stats_or_argv(self):
        """Running with an inline key: not in argv, the log, the stdout,
        stats, the check output; at most its redacted form."""
        self.upstream.api_key = SECRET
        d = self.make_daemon(key=SECRET)   # via api_key_file
        rc, out, err = run_segopsd('--config', d.config_path,
                                   '--check-config')
        self.assertEqual(rc, 0, err)
        self.assertNotIn(SECRET, out + err)
        d.start()
        with open('/proc/%d/cmdline' % d.pid, 'rb') as f:
            self.assertNotIn(SECRET.encode(), f.read())
        st_text = json.dumps(d.stats())
        self.assertNotIn(SECRET, st_text)
        self.assertNotIn(SECRET, d.stderr_text())
        # The upstream did get it, as the bearer credential.
        d.send_dgram(json.dumps(make_event(0)) + '\n')
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 1})
        self.assertEqual(self.upstream.batch_requests[0]['headers']
                         ['authorization'], 'Bearer ' + SECRET)
        self.assertNotIn(SECRET, d.stderr_text() + d.stdout_text())
        self.assertNoViolations()

    def test_inline_api_key_warns_but_hides(self):
        d = self.make_daemon(key=None, upstream__api_key=SECRET,
                             upstream__api_key_file=None)
        self.upstream.api_key = SECRET
        d.start()
        d.send_dgram(json.dumps(make_event(0)) + '\n')
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 1})
        self.assertNotIn(SECRET, d.stderr_text() + d.stdout_text())
        self.assertNotIn(SECRET, json.dumps(d.stats()))
        self.assertRegex(d.stderr_text(), r'(?i)warning.*api key')
        with open('/proc/%d/cmdline' % d.pid, 'rb') as f:
            self.assertNotIn(SECRET.encode(), f.read())

    def test_sighup_reload(self):
        """SIGHUP re-reads the file: a broken one is refused with the
        reason and the daemon carries on; a good one is taken."""
        d = self.start_daemon()
        d.config['batch']['batch_size'] = 'lots'
        d.write_config()
        d.send_signal(signal.SIGHUP)
        self.assertTrue(d.wait_for_log(r'reload failed.*batch_size',
                                       timeout=5), d.stderr_text())
        self.assertEqual(d.ping()['ok'], True)
        d.config['batch']['batch_size'] = '20'
        d.write_config()
        d.send_signal(signal.SIGHUP)
        self.assertTrue(d.wait_for_log(r'reloaded', timeout=5),
                        d.stderr_text())
        d.send_dgram(json.dumps(make_event(0)) + '\n')
        self.assertEqual(d.flush()['ok'], True)
        self.assertIn(event_id(0), self.upstream.events)
        self.assertEqual(d.stop(), 0)

    @requires_socat
    def test_dry_run_config(self):
        """configs/dry-run.conf with the socket paths moved to a temp dir
        prints each batch as one JSON line on stdout."""
        src = os.path.join(SOURCE_ROOT, 'configs', 'dry-run.conf')
        with open(src, encoding='utf-8') as f:
            text = f.read()
        d = Daemon(self.tmpdir, 'stdout', key=None)
        self.addCleanup(d.cleanup)
        text, n1 = re.subn(r'(?m)^events_socket\s*=.*$',
                           'events_socket = ' + d.events_socket, text)
        text, n2 = re.subn(r'(?m)^control_socket\s*=.*$',
                           'control_socket = ' + d.control_socket, text)
        self.assertEqual((n1, n2), (1, 1), 'dry-run.conf socket lines')
        with open(d.config_path, 'w', encoding='utf-8') as f:
            f.write(text)
        rc, out, err = run_segopsd('--config', d.config_path,
                                   '--check-config')
        self.assertEqual(rc, 0, err)
        d.start()
        self.assertEqual(d.stats()['upstream']['state'], 'dry_run')
        d.socat_dgram('{"user_id":"u1","event_type":"deploy",'
                      '"payload":{"sha":"abc"}}\n')
        d.control([make_event(i) for i in range(45)])
        # Full batches may be out already: flushed counts what was held.
        fl = d.flush()
        self.assertEqual(fl['ok'], True)
        self.assertLessEqual(fl['flushed'], 46)
        self.assertEqual(d.stop(), 0)
        lines = d.stdout_text().splitlines()
        batches = [json.loads(line) for line in lines]
        self.assertGreaterEqual(len(batches), 3)     # batch_size 20
        ids = []
        for b in batches:
            self.assertEqual(set(b), {'batch_id', 'sent_at', 'events'})
            self.assertLessEqual(len(b['events']), 20)
            for ev in b['events']:
                self.assertEqual(set(ev), {'event_id', 'user_id',
                                           'event_type', 'occurred_at',
                                           'payload'})
                ids.append(ev['event_id'])
        self.assertEqual(len(ids), 46)
        self.assertEqual(len(set(ids)), 46)
        self.assertTrue({event_id(i) for i in range(45)} <= set(ids))
        deploy = [ev for b in batches for ev in b['events']
                  if ev['event_type'] == 'deploy']
        self.assertEqual(len(deploy), 1)
        self.assertEqual(deploy[0]['payload'], {'sha': 'abc'})
        self.assertEqual(self.upstream.requests, [])


if __name__ == '__main__':
    harness.main()
