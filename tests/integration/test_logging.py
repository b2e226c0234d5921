"""segopsd's log front end as journald sees it: "<N>" priority prefixes
only when stderr really is the journal stream that JOURNAL_STREAM names
(systemd.exec(5): compare device and inode), plain readable lines
otherwise, e.g. for a child of a service whose stderr went elsewhere."""

import json
import os
import re
import signal

import harness
from harness import SegopsTestCase, event_id, make_event, send_stream


class JournalStreamTests(SegopsTestCase):

    def _first_line(self, env_value):
        d = self.make_daemon()
        # The harness sends stderr to this file: create it now, so its
        # device and inode are known before the start.
        open(d.stderr_path, 'ab').close()
        st = os.stat(d.stderr_path)
        value = env_value(st)
        d._extra_env['JOURNAL_STREAM'] = value
        d.start()
        self.assertEqual(d.stop(), 0)
        return d.stderr_text().splitlines()[0]

    def test_matching_stream_gets_priorities(self):
        line = self._first_line(lambda st: '%d:%d' % (st.st_dev, st.st_ino))
        self.assertRegex(line, r'^<[0-7]>')

    def test_other_stream_gets_plain_lines(self):
        # A stream of some other file (the variable was inherited).
        line = self._first_line(lambda st: '%d:%d' % (st.st_dev, st.st_ino + 1))
        self.assertRegex(line, r'^segopsd: (info|warning): ')

    def test_malformed_value_gets_plain_lines(self):
        for value in ('', 'x', '1', '1:2:3', '1:2x'):
            line = self._first_line(lambda st: value)
            self.assertRegex(line, r'^segopsd: ', value)



class StartErrorPriorityTests(SegopsTestCase):
    """What stops a start (or a --check-config) reaches the journal with
    priority err, its warnings with warning, like every later line."""

    def _run(self, d, *args):
        open(d.stderr_path, 'ab').close()
        st = os.stat(d.stderr_path)
        d._extra_env['JOURNAL_STREAM'] = '%d:%d' % (st.st_dev, st.st_ino)
        d.start(wait=False, args=args)
        rc = d.proc.wait(timeout=30)
        return rc, d.stderr_text()

    def test_config_error_has_priority_err(self):
        # On the old code these lines were written plain, before the log
        # front end was set up: journald gave them its default, info.
        for args in ((), ('--check-config',)):
            d = self.make_daemon(batch__batch_size='lots')
            rc, err = self._run(d, *args)
            self.assertEqual(rc, 1, err)
            self.assertRegex(err, r'^<3>%s:\d+: .*batch_size' %
                             re.escape(d.config_path), args)
            os.unlink(d.stderr_path)

    def test_check_config_shows_the_start_warnings(self):
        # An inline key is warned of by --check-config as by a start (the
        # old code kept --check-config quiet about it).
        d = self.make_daemon(upstream__api_key=self.api_key,
                             upstream__api_key_file=None)
        rc, err = self._run(d, '--check-config')
        self.assertEqual(rc, 0, err)
        self.assertRegex(err, r'(?m)^<4>%s: the API key is written in the '
                              r'config file' % re.escape(d.config_path))
        self.assertNotIn(self.api_key, err)
        self.assertIn('configuration OK', d.stdout_text())
        self.assertIn('with the warning above', d.stdout_text())



class UpstreamLineTests(SegopsTestCase):
    """A failed request's line says where it went (no credentials), what
    is held and when the next attempt is; a Retry-After line the pause."""

    def test_failure_lines_say_where_what_and_when(self):
        d = self.start_daemon(batch__batch_size='3',
                              upstream__backoff_initial='0.2',
                              upstream__backoff_max='0.2')
        self.upstream.script([500, {'status': 429,
                                    'headers': {'Retry-After': '1'}}])
        send_stream(d, [make_event(i) for i in range(3)])
        url = re.escape(self.upstream.url.rstrip('/'))
        self.assertTrue(d.wait_for_log(
            r'warning: upstream %s request failed \(HTTP 500\), retrying '
            r'with backoff: 3 events held, next attempt in 0\.[0-2] s' % url),
            d.stderr_text())
        self.assertTrue(d.wait_for_log(
            r'warning: upstream %s is overloaded \(HTTP 429\), honouring '
            r'Retry-After: every request paused for 1\.0 s; 3 events held'
            % url), d.stderr_text())
        self.assertEventsDelivered([event_id(i) for i in range(3)])

    def test_no_credentials_in_any_output(self):
        # userinfo in api_url (a password holding an encoded '@'), at
        # start and after a reload that changes it: no line, stats or
        # metrics show it.
        base = self.upstream.url.rstrip('/')
        url = base.replace('://', '://alice:pw1%40SECRET1@')
        d = self.start_daemon(url=url, upstream__backoff_initial='0.2',
                              upstream__backoff_max='0.2')
        self.upstream.script([500])
        send_stream(d, [make_event(0)])
        self.assertTrue(d.wait_for_log(r'request failed \(HTTP 500\)'))
        d.config['upstream']['api_url'] = base.replace(
            '://', '://bob:pw2%40SECRET2@')
        d.write_config()
        d.send_signal(signal.SIGHUP)
        self.assertTrue(d.wait_for_log(r'reloaded '), d.stderr_text())
        st = d.stats()
        text = d.control({'op': 'metrics'})[0]['text']
        for out in (d.stderr_text(), json.dumps(st), text):
            self.assertNotIn('SECRET', out)
            self.assertNotIn('alice', out)
            self.assertNotIn('bob', out)
        self.assertEqual(st['upstream']['url'], base)
        self.assertEventsDelivered([event_id(0)])

    def test_no_credentials_in_the_insecure_url_error(self):
        # http:// to another host is refused at start; the refusal names
        # the host, not the password (a raw '@' in it makes the whole
        # authority the "host").
        for cred in ('alice:pw1@SECRET1@', 'alice:SECRET1@'):
            d = self.make_daemon(url='http://%sevil.example:9/x' % cred)
            d.start(wait=False, args=('--check-config',))
            rc = d.proc.wait(timeout=30)
            err = d.stderr_text()
            self.assertEqual(rc, 1, err)
            self.assertIn('api_url: http:// to', err)
            self.assertNotIn('SECRET', err)
            self.assertNotIn('alice', err)
            os.unlink(d.stderr_path)


if __name__ == '__main__':
    harness.main()
