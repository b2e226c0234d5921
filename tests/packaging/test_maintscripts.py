#!/usr/bin/env python3
"""segopsd's own maintainer script code (debian/segopsd.postinst and
postrm, without the debhelper snippets) on the paths dpkg drives:

- configure creates an empty root:root 0600 key once, and never touches
  an existing one (a reconfigure, an upgrade);
- purge deletes the key, /etc/segopsd when empty, and the spool;
- with DPKG_ROOT set (dpkg --root with --force-script-chrootless), all
  of that happens under DPKG_ROOT and nothing on the running system.

The scripts run in a private mount namespace whose /etc and /var are
overlays over this machine's, so whatever they would wrongly write to
the real /etc or /var lands in a throwaway directory, which the test
then inspects. Root only (unshare -m, overlayfs): exits 77 otherwise.
"""

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import unittest

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
POSTINST = os.path.join(TOP, 'debian', 'segopsd.postinst')
POSTRM = os.path.join(TOP, 'debian', 'segopsd.postrm')
INSIDE = 'SEGOPS_MAINTSCRIPTS_NS'


def run(script, *args, dpkg_root=None):
    env = dict(os.environ)
    env.pop('DPKG_ROOT', None)
    if dpkg_root is not None:
        env['DPKG_ROOT'] = dpkg_root
    return subprocess.run(['sh', script] + list(args), env=env,
                          capture_output=True, text=True, timeout=60)


class MaintScripts(unittest.TestCase):

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix='segops-dpkgroot-')
        self.addCleanup(shutil.rmtree, self.root, True)
        for d in ('/etc/segopsd', '/var/lib/segopsd', '/var/lib/private/segopsd'):
            self.assertFalse(os.path.lexists(d), '%s exists before the test' % d)

    def assertKey(self, path, content=b''):
        st = os.lstat(path)
        self.assertTrue(stat.S_ISREG(st.st_mode), path)
        self.assertEqual((stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid),
                         (0o600, 0, 0), path)
        with open(path, 'rb') as f:
            self.assertEqual(f.read(), content)

    def test_configure_and_purge_on_this_system(self):
        r = run(POSTINST, 'configure', '')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertKey('/etc/segopsd/api_key')
        with open('/etc/segopsd/api_key', 'wb') as f:
            f.write(b'sk_test_0123456789abcdef\n')
        r = run(POSTINST, 'configure', '0.1.0-1')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertKey('/etc/segopsd/api_key', b'sk_test_0123456789abcdef\n')
        os.makedirs('/var/lib/private/segopsd')
        os.symlink('private/segopsd', '/var/lib/segopsd')
        r = run(POSTRM, 'purge')
        self.assertEqual(r.returncode, 0, r.stderr)
        for d in ('/etc/segopsd', '/var/lib/segopsd', '/var/lib/private/segopsd'):
            self.assertFalse(os.path.lexists(d), d)

    def test_dpkg_root(self):
        root = self.root
        os.makedirs(os.path.join(root, 'etc', 'segopsd'))
        r = run(POSTINST, 'configure', '', dpkg_root=root)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse(os.path.lexists('/etc/segopsd'),
                         'postinst with DPKG_ROOT wrote to this system\'s /etc')
        self.assertKey(os.path.join(root, 'etc', 'segopsd', 'api_key'))

        # The running system has a segopsd of its own: purging the one
        # under DPKG_ROOT must leave it alone.
        os.makedirs('/etc/segopsd')
        with open('/etc/segopsd/api_key', 'w') as f:
            f.write('sk_host_0123456789abcdef\n')
        os.makedirs('/var/lib/private/segopsd')
        os.symlink('private/segopsd', '/var/lib/segopsd')
        spool = os.path.join(root, 'var', 'lib', 'private', 'segopsd')
        os.makedirs(spool)
        os.symlink('private/segopsd', os.path.join(root, 'var', 'lib', 'segopsd'))
        r = run(POSTRM, 'purge', dpkg_root=root)
        self.assertEqual(r.returncode, 0, r.stderr)
        for d in ('/etc/segopsd/api_key', '/var/lib/segopsd', '/var/lib/private/segopsd'):
            self.assertTrue(os.path.lexists(d),
                            'postrm purge with DPKG_ROOT deleted this system\'s ' + d)
        for d in ('etc/segopsd', 'var/lib/segopsd', 'var/lib/private/segopsd'):
            self.assertFalse(os.path.lexists(os.path.join(root, d)),
                             'postrm purge left $DPKG_ROOT/' + d)


def outside():
    """Re-run this file in a mount namespace with /etc and /var overlaid."""
    if os.geteuid() != 0:
        print('SKIP: needs root (a mount namespace with overlays)')
        return 77
    if not shutil.which('unshare'):
        print('SKIP: unshare (util-linux) is not installed')
        return 77
    tmp = tempfile.mkdtemp(prefix='segops-maintscripts-')
    try:
        mounts = []
        for d in ('etc', 'var'):
            for sub in ('upper', 'work'):
                os.makedirs(os.path.join(tmp, d, sub))
            mounts.append('mount -t overlay overlay -o lowerdir=/%s,upperdir=%s,'
                          'workdir=%s /%s' % (d, os.path.join(tmp, d, 'upper'),
                                              os.path.join(tmp, d, 'work'), d))
        probe = subprocess.run(['unshare', '-m', 'sh', '-c', ' && '.join(mounts)],
                               capture_output=True, text=True)
        if probe.returncode != 0:
            print('SKIP: cannot mount overlays in a mount namespace: '
                  + probe.stderr.strip())
            return 77
        for d in ('etc', 'var'):
            shutil.rmtree(os.path.join(tmp, d))
            for sub in ('upper', 'work'):
                os.makedirs(os.path.join(tmp, d, sub))
        script = ' && '.join(mounts) + ' && exec "$@"'
        env = dict(os.environ, **{INSIDE: '1'})
        return subprocess.run(['unshare', '-m', 'sh', '-c', script, 'sh',
                               sys.executable, os.path.abspath(__file__)],
                              env=env, timeout=300).returncode
    finally:
        shutil.rmtree(tmp, True)


if __name__ == '__main__':
    if os.environ.get(INSIDE) != '1':
        sys.exit(outside())
    unittest.main(verbosity=2)
