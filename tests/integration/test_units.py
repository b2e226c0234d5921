#!/usr/bin/env python3
"""The systemd units as installed: their sandbox and their validity.

The build is installed into a temporary DESTDIR (`meson install
--destdir`), and the files that land there are checked, wherever the
install options put them:

- `systemd-analyze security --offline=yes --threshold=15` on the
  installed segopsd.service: the overall exposure must be at most 1.5
  (the threshold is in tenths; the command fails above it). The figure
  and the settings that still count against it are printed.
- `systemd-analyze verify --root=DESTDIR --man=yes` on segopsd.service
  and segopsd.socket, as systemd would load them from that root: the
  ExecStart= binary must be the installed one, every program the units
  run must exist, and every man page named in Documentation= must be
  installed (man searches only DESTDIR's pages). The root gets this
  host's *.target units (the units' dependencies) and a copy of each
  host program the units run (/bin/kill), nothing else. Any output of
  verify fails the test: it warns about an unknown key without failing.
- systemd-sysusers creates group segops from the installed sysusers.d
  file in an empty root.

Whether segopsd works under the unit's system call filter is
test_sandbox.py's part. Booting the units under a real systemd is not
done here (this machine's PID 1 need not be systemd).

Environment (set by meson): MESON_BUILD_ROOT, SYSTEMD_ANALYZE (the
program; the test is skipped, with the reason, without it).
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'lib'))

import harness  # noqa: E402
from destdir import meson_install  # noqa: E402
from unitsandbox import unit_settings  # noqa: E402

MAX_EXPOSURE = 1.5
# Where this host keeps the units that ours depend on (sysinit.target,
# sockets.target, network-online.target, ...).
HOST_UNIT_DIRS = ('/usr/lib/systemd/system', '/lib/systemd/system')

_installed = {}


def analyze():
    path = os.environ.get('SYSTEMD_ANALYZE') or shutil.which('systemd-analyze')
    if not path:
        raise unittest.SkipTest('systemd-analyze is not installed (package '
                                'systemd): the units cannot be checked')
    return path


def installed():
    """Install the build into a DESTDIR once; returns its path."""
    if 'dest' in _installed:
        return _installed['dest']
    root = os.environ.get('MESON_BUILD_ROOT')
    if not root:
        raise unittest.SkipTest('MESON_BUILD_ROOT is not set (run through '
                                'meson test)')
    dest = tempfile.mkdtemp(prefix='segops-units-')
    if not os.environ.get('SEGOPS_KEEP_TMP'):
        unittest.addModuleCleanup(shutil.rmtree, dest, True)
    meson_install(root, dest)
    _installed['dest'] = dest
    return dest


def find_installed(dest, name, parent=None):
    """The one installed file called name (in a directory called parent),
    as a path under dest."""
    found = [os.path.join(d, name) for d, _, files in os.walk(dest)
             if name in files and (parent is None or
                                   os.path.basename(d) == parent)]
    if len(found) != 1:
        raise AssertionError('expected one installed %s, found %r'
                             % (name, found))
    return found[0]


class UnitTests(unittest.TestCase):

    def setUp(self):
        self.analyze = analyze()
        self.dest = installed()
        self.service = find_installed(self.dest, 'segopsd.service')
        self.socket = find_installed(self.dest, 'segopsd.socket')

    def test_exposure_at_most_1_5(self):
        r = subprocess.run([self.analyze, 'security', '--offline=yes',
                            '--threshold=%d' % round(MAX_EXPOSURE * 10),
                            '--no-pager', self.service],
                           capture_output=True, text=True, timeout=60)
        m = re.search(r'Overall exposure level for segopsd\.service: '
                      r'([0-9]+\.[0-9]+)', r.stdout)
        self.assertIsNotNone(m, 'no exposure level in:\n' + r.stdout +
                             r.stderr)
        exposure = float(m.group(1))
        still_open = [line.split()[1] for line in r.stdout.splitlines()
                      if line.startswith('\u2717')]
        print('segopsd.service: exposure %.1f (at most %.1f); still open: %s'
              % (exposure, MAX_EXPOSURE, ' '.join(still_open)))
        self.assertLessEqual(exposure, MAX_EXPOSURE, r.stdout)
        self.assertEqual(r.returncode, 0, 'over --threshold:\n' + r.stdout +
                         r.stderr)

    def make_root(self):
        """A copy of DESTDIR to verify in: the installed tree, this host's
        targets, and the host programs the units run."""
        root = tempfile.mkdtemp(prefix='segops-units-root-')
        self.addCleanup(shutil.rmtree, root, True)
        shutil.copytree(self.dest, root, symlinks=True, dirs_exist_ok=True)
        units = os.path.join(root, 'usr', 'lib', 'systemd', 'system')
        os.makedirs(units, exist_ok=True)
        for d in HOST_UNIT_DIRS:
            if os.path.isdir(d):
                for name in os.listdir(d):
                    p = os.path.join(d, name)
                    if (name.endswith('.target') and os.path.isfile(p) and
                            not os.path.exists(os.path.join(units, name))):
                        shutil.copy(p, units)
        # ExecStart= must name the installed segopsd; any other ExecXxx=
        # program not installed by us is the host's.
        for key, values in unit_settings(self.service).items():
            if not key.startswith('Exec') or key == 'ExecStart':
                continue
            for v in values:
                prog = v.lstrip('@-:+!').split()[0]
                inside = os.path.join(root, prog.lstrip('/'))
                if os.path.isabs(prog) and not os.path.exists(inside):
                    self.assertTrue(os.path.isfile(prog), '%s= runs %s, which '
                                    'is neither installed nor on this host'
                                    % (key, prog))
                    os.makedirs(os.path.dirname(inside), exist_ok=True)
                    shutil.copy(prog, inside)
        return root

    def test_verify_installed_units(self):
        root = self.make_root()
        rel = [os.path.relpath(p, self.dest) for p in (self.socket,
                                                       self.service)]
        man8 = find_installed(root, 'segopsd.8', 'man8')
        env = dict(os.environ, MANPATH=os.path.dirname(os.path.dirname(man8)))
        check_man = shutil.which('man') is not None
        if not check_man:
            print('man is not installed (package man-db): Documentation= '
                  'pages not checked')
        r = subprocess.run([self.analyze, 'verify', '--root=' + root,
                            '--man=' + ('yes' if check_man else 'no')] +
                           [os.path.join(root, p) for p in rel],
                           capture_output=True, text=True, env=env,
                           timeout=60)
        out = (r.stdout + r.stderr).strip()
        self.assertEqual((r.returncode, out), (0, ''),
                         'systemd-analyze verify:\n' + out)
        print('verified in a root: %s' % ', '.join('/' + p for p in rel))

    def test_sysusers_creates_the_senders_group(self):
        conf = find_installed(self.dest, 'segops.conf', 'sysusers.d')
        sysusers = os.path.join(os.path.dirname(self.analyze),
                                'systemd-sysusers')
        if not os.path.exists(sysusers):
            self.skipTest('systemd-sysusers is not installed')
        root = tempfile.mkdtemp(prefix='segops-sysusers-')
        self.addCleanup(shutil.rmtree, root, True)
        os.makedirs(os.path.join(root, 'etc'))
        subprocess.run([sysusers, '--root=' + root, conf], check=True,
                       capture_output=True, timeout=60)
        with open(os.path.join(root, 'etc', 'group'), encoding='utf-8') as f:
            self.assertRegex(f.read(), r'(?m)^segops:')


if __name__ == '__main__':
    harness.main()
