#!/usr/bin/env python3
"""A key file that group segops (the senders') may read is refused
however many members that group has, and socket_group = segops is
found however long its line.

The senders are added to group segops one by one (usermod -aG), so its
/etc/group line grows past the 1 KiB to 4 KiB buffer a getgrnam_r
caller may pick; getgrnam_r then fails with ERANGE. segopsd must still
find the group, not treat it as an unknown one (which only warns).

The group database is replaced in a private mount namespace (`unshare
-m` and a bind mount over /etc/group): root only, skipped otherwise.

Environment (set by meson): SEGOPSD.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'lib'))

import harness  # noqa: E402

GID = 48213
KEY = 'sk_test_0123456789abcdef'


def nsswitch_reads_files():
    try:
        with open('/etc/nsswitch.conf', encoding='utf-8') as f:
            for line in f:
                if line.startswith('group:'):
                    return 'files' in line.split()
    except OSError:
        pass
    return True  # glibc's default


class KeyGroupTests(unittest.TestCase):

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest('needs root (a mount namespace over /etc/group)')
        if not shutil.which('unshare'):
            self.skipTest('unshare (util-linux) is not installed')
        if not nsswitch_reads_files():
            self.skipTest('/etc/nsswitch.conf does not read group from files')
        self.tmp = tempfile.mkdtemp(prefix='segops-keygroups-')
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.key = os.path.join(self.tmp, 'api_key')
        with open(self.key, 'w', encoding='utf-8') as f:
            f.write(KEY + '\n')
        os.chown(self.key, 0, GID)
        os.chmod(self.key, 0o640)
        self.conf = os.path.join(self.tmp, 'segopsd.conf')
        with open(self.conf, 'w', encoding='utf-8') as f:
            f.write('[upstream]\napi_url = https://segops.example.com\n'
                    'api_key_file = %s\n' % self.key)

    def check_config(self, members):
        group = os.path.join(self.tmp, 'group')
        with open('/etc/group', encoding='utf-8') as f:
            lines = [ln for ln in f if not ln.startswith('segops:')
                     and ln.split(':')[2:3] != [str(GID)]]
        lines.append('segops:x:%d:%s\n' % (GID, ','.join(members)))
        with open(group, 'w', encoding='utf-8') as f:
            f.writelines(lines)
        script = 'mount --bind "$1" /etc/group && exec "$2" --config "$3" --check-config'
        p = subprocess.run(['unshare', '-m', 'sh', '-c', script, 'sh', group,
                            harness.segopsd_path(), self.conf],
                           capture_output=True, text=True, timeout=60)
        if 'mount' in p.stderr and p.returncode != 0 and 'segopsd' not in p.stderr:
            self.skipTest('cannot bind-mount over /etc/group: ' + p.stderr)
        return p.returncode, p.stderr

    def assertRefused(self, members):
        rc, err = self.check_config(members)
        self.assertNotEqual(rc, 0, err)
        self.assertIn('group segops, whose members may send events', err)
        self.assertNotIn(KEY, err)

    def test_few_members(self):
        self.assertRefused(['alice', 'bob'])

    def test_many_members(self):
        # About 8 KiB of members: more than any fixed 4 KiB buffer.
        self.assertRefused(['sender%04d' % i for i in range(800)])

    def test_socket_group_of_many_members_is_found(self):
        # [listen] socket_group = segops resolves the same way: a long
        # group line is no "group of this host" error.
        os.chmod(self.key, 0o600)
        with open(self.conf, 'a', encoding='utf-8') as f:
            f.write('[listen]\nsocket_group = segops\n')
        rc, err = self.check_config(['sender%04d' % i for i in range(800)])
        self.assertEqual(rc, 0, err)


if __name__ == '__main__':
    harness.main()
