"""segopsd's log front end as journald sees it: "<N>" priority prefixes
only when stderr really is the journal stream that JOURNAL_STREAM names
(systemd.exec(5): compare device and inode), plain readable lines
otherwise, e.g. for a child of a service whose stderr went elsewhere."""

import os

import harness
from harness import SegopsTestCase


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


if __name__ == '__main__':
    harness.main()
