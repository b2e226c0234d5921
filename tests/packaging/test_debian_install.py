#!/usr/bin/env python3
"""The Debian packaging (debian/) against the tree, in a few seconds and
without building a package (scripts/build-debs.sh and
scripts/test-debs.sh do that, outside CI):

- every file that `meson install` puts in place with Debian's configure
  options (those of debian/rules) goes into exactly one package through
  the debian/*.install files, and every line of them matches a file: what
  dh_install and dh_missing --fail-missing would say, before a package
  build finds out;
- debian/*.symbols list exactly the symbols and the version node that
  libshim/libsegops-shim.map and sign/libsegops-sign.map export;
- every package of debian/control has its .install file, and no .install
  file names a package that does not exist.

The list of installed files comes from `meson introspect --installed` of
a build directory configured (not built) with Debian's options.

Exits 77 (skipped) without debian/, meson or dpkg-architecture.
"""

import fnmatch
import json
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
DEBIAN = os.path.join(TOP, 'debian')

# Files that meson's install scripts create, which introspection does not
# list: the live config, installed only when absent (always, into an
# empty DESTDIR such as debian/tmp).
SCRIPT_INSTALLED = ['etc/segopsd/segopsd.conf']

# debian/rules' override_dh_install moves these man pages from
# libsegops-shim-dev (which takes man3 whole) to libsegops-sign-dev.
MOVED = [('usr/share/man/man3/segops_sign_*', 'libsegops-shim-dev',
          'libsegops-sign-dev')]


def read(path):
    with open(path) as f:
        return f.read()


def multiarch():
    return subprocess.run(['dpkg-architecture', '-qDEB_HOST_MULTIARCH'],
                          check=True, capture_output=True,
                          text=True).stdout.strip()


def rules_configure_options():
    """The -D options that debian/rules passes to dh_auto_configure, with
    the test suites off (nothing is built here)."""
    text = read(os.path.join(DEBIAN, 'rules'))
    m = re.search(r'^override_dh_auto_configure:\n((?:\t.*\n)+)', text, re.M)
    if not m:
        raise AssertionError('debian/rules has no override_dh_auto_configure')
    opts = re.findall(r'(-D[a-z_]+=\S+)', m.group(1).replace('\\\n', ' '))
    return [('-Dtests=false' if o.startswith('-Dtests=') else o) for o in opts]


def installed_files(ma):
    """Paths (relative, no leading /) that meson installs when configured
    as dh's meson build system and debian/rules configure it."""
    build = tempfile.mkdtemp(prefix='segops-debinst-')
    try:
        env = dict(os.environ, LC_ALL='C.UTF-8')
        setup = subprocess.run(
            ['meson', 'setup', build, TOP, '--wrap-mode=nodownload',
             '--buildtype=plain', '--prefix=/usr', '--sysconfdir=/etc',
             '--localstatedir=/var', '--libdir=lib/' + ma]
            + rules_configure_options(),
            capture_output=True, text=True, env=env)
        if setup.returncode != 0:
            raise AssertionError('meson setup failed:\n' + setup.stdout[-3000:]
                                 + setup.stderr[-3000:])
        out = subprocess.run(['meson', 'introspect', '--installed', build],
                             check=True, capture_output=True, text=True).stdout
    finally:
        shutil.rmtree(build, True)
    paths = {p.lstrip('/') for p in json.loads(out).values()}
    return sorted(paths | set(SCRIPT_INSTALLED))


def matches(pattern, path):
    """dh_install's sense: the pattern (a shell glob per path component)
    names the file or a directory above it."""
    pc = pattern.strip('/').split('/')
    fc = path.split('/')
    return len(fc) >= len(pc) and all(
        fnmatch.fnmatchcase(f, p) for f, p in zip(fc, pc))


def control_packages():
    text = read(os.path.join(DEBIAN, 'control'))
    return re.findall(r'^Package:\s*(\S+)', text, re.M)


def install_patterns(ma):
    pats = {}
    for f in sorted(glob.glob(os.path.join(DEBIAN, '*.install'))):
        pkg = os.path.basename(f)[:-len('.install')]
        lines = []
        for line in read(f).splitlines():
            line = line.split('#', 1)[0].strip()
            if line:
                lines.append(line.replace('${DEB_HOST_MULTIARCH}', ma))
        pats[pkg] = lines
    return pats


class DebianPackaging(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.ma = multiarch()

    def test_control_and_install_files_agree(self):
        pkgs = control_packages()
        self.assertEqual(sorted(pkgs), sorted(install_patterns(self.ma)),
                         'debian/control packages vs debian/*.install')

    def test_every_installed_file_in_exactly_one_package(self):
        files = installed_files(self.ma)
        pats = install_patterns(self.ma)
        owners = {f: [] for f in files}
        for pkg, lines in pats.items():
            for pat in lines:
                hit = [f for f in files if matches(pat, f)]
                self.assertTrue(hit, 'debian/%s.install: %r matches no installed '
                                'file (dh_install would fail)' % (pkg, pat))
                for f in hit:
                    if pkg not in owners[f]:
                        owners[f].append(pkg)
        for f, who in owners.items():
            for pat, src, dst in MOVED:
                if fnmatch.fnmatchcase(f, pat) and src in who:
                    who[who.index(src)] = dst
        unclaimed = [f for f, who in owners.items() if not who]
        twice = {f: who for f, who in owners.items() if len(who) > 1}
        self.assertEqual(unclaimed, [], 'installed but in no package '
                         '(dh_missing --fail-missing would fail)')
        self.assertEqual(twice, {}, 'installed into two packages')
        # The layout the packages promise (README.md, "Debian packages").
        expect = {
            'usr/sbin/segopsd': 'segopsd',
            'usr/bin/segopsctl': 'segopsd',
            'etc/segopsd/segopsd.conf': 'segopsd',
            'lib/systemd/system/segopsd.service': 'segopsd',
            'lib/systemd/system/segopsd.socket': 'segopsd',
            'usr/lib/sysusers.d/segops.conf': 'segopsd',
            'usr/share/doc/segopsd/README.md': 'segopsd',
            'usr/include/segops/shim.h': 'libsegops-shim-dev',
            'usr/include/segops/sign.h': 'libsegops-sign-dev',
            'usr/lib/%s/libsegops-shim.so.0' % self.ma: 'libsegops-shim0',
            'usr/lib/%s/libsegops-shim.so' % self.ma: 'libsegops-shim-dev',
            'usr/lib/%s/libsegops-sign.so.0' % self.ma: 'libsegops-sign0',
            'usr/lib/%s/libsegops-sign.so' % self.ma: 'libsegops-sign-dev',
            'usr/lib/python3/dist-packages/segops/__init__.py': 'python3-segops',
        }
        for f, pkg in expect.items():
            self.assertEqual(owners.get(f), [pkg], f)
        for f, who in owners.items():
            if f.startswith('usr/share/man/man3/'):
                self.assertEqual(who, ['libsegops-sign-dev' if '/segops_sign_' in f
                                       else 'libsegops-shim-dev'], f)

    def test_symbols_files_match_the_version_scripts(self):
        for lib, mapfile in (('shim', 'libshim/libsegops-shim.map'),
                             ('sign', 'sign/libsegops-sign.map')):
            text = read(os.path.join(TOP, mapfile))
            text = re.sub(r'/\*.*?\*/', '', text, flags=re.S)
            node = re.search(r'^\s*([\w.]+)\s*\{', text, re.M).group(1)
            glob_part = re.search(r'global:(.*?)local:', text, re.S).group(1)
            exported = {s.strip() for s in glob_part.split(';') if s.strip()}
            want = {'%s@%s' % (s, node) for s in exported | {node}}
            sym = read(os.path.join(DEBIAN, 'libsegops-%s0.symbols' % lib))
            have = set(re.findall(r'^ (\S+@\S+) ', sym, re.M))
            self.assertEqual(have, want, 'debian/libsegops-%s0.symbols vs %s'
                             % (lib, mapfile))
            self.assertIn('libsegops-%s.so.0 libsegops-%s0 #MINVER#' % (lib, lib),
                          sym)


def applicable():
    if not os.path.isdir(DEBIAN):
        return 'no debian/ directory'
    for tool in ('meson', 'dpkg-architecture'):
        if not shutil.which(tool):
            return tool + ' not found'
    return None


if __name__ == '__main__':
    why = applicable()
    if why:
        print('SKIP: ' + why)
        sys.exit(77)
    unittest.main(verbosity=2)
