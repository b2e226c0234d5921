#!/usr/bin/env python3
"""What `meson install` puts where (issue 13), and building an app
against the tree.

- The build is installed into a temporary DESTDIR (`meson install
  --destdir`, no rebuild): every file of the install layout (README's
  "Install") lands there with a sane mode, and nothing else does; the
  units, the config, the man pages and segopsd's default --config name
  the build's sysconfdir; a second install keeps an edited config and
  refreshes the pristine copy under DOCDIR/examples.
- The other prefix (/usr when the build has /usr/local, and the other
  way round) is configured (`meson setup`, nothing compiled; in the
  build without sanitizers only): its unit, config, man page and
  compile flags name its own sysconfdir.
- An app including <segops/shim.h> and <segops/sign.h> is compiled and
  run inside `meson devenv`, through the -uninstalled.pc files, with the
  headers and libraries of the tree.

Environment (set by meson): MESON_BUILD_ROOT, MESON_SOURCE_ROOT, SEGOPSD;
B_SANITIZE (the build's b_sanitize) and APP_CFLAGS (its -fsanitize=).
"""

import glob
import hashlib
import hmac
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'lib'))

import harness  # noqa: E402
from destdir import meson_install  # noqa: E402

# Files of the layout, relative to the directory option that holds them.
DOCS = ['README.md', 'LICENSE', 'OPERATIONS.md', 'SECURITY.md',
        'RELIABILITY.md', 'SPOOL.md', 'ARCHITECTURE.md',
        'examples/segopsd.conf', 'examples/dry-run.conf']
LIBS = ['segops-shim', 'segops-sign']
SONAME_VERSION = '0.1.0'


def env_or_skip(name):
    v = os.environ.get(name)
    if not v:
        raise unittest.SkipTest('%s not set (run through meson test)' % name)
    return v


def build_options(build):
    """The build's options, by name (what `meson introspect
    --buildoptions` prints, read from the file meson setup wrote)."""
    with open(os.path.join(build, 'meson-info', 'intro-buildoptions.json')) as f:
        return {o['name']: o['value'] for o in json.load(f)}


def layout(opts):
    """The absolute install directories, joined as meson.build does."""
    prefix = opts['prefix']

    def d(value, default):
        return os.path.join(prefix, value or default)
    return {
        'prefix': prefix,
        'bindir': d(opts['bindir'], 'bin'),
        'sbindir': d(opts['sbindir'], 'sbin'),
        'libdir': d(opts['libdir'], 'lib'),
        'includedir': d(opts['includedir'], 'include'),
        'mandir': d(opts['mandir'], 'share/man'),
        'sysconfdir': d(opts['sysconfdir'], 'etc'),
        'docdir': d(opts['docdir'],
                    os.path.join(opts['datadir'], 'doc', 'segops')),
        'systemdunitdir': d(opts['systemdunitdir'], 'lib/systemd/system'),
        'sysusersdir': d(opts['sysusersdir'], 'lib/sysusers.d'),
    }


def man_pages(source):
    """{installed path under mandir: source name} for every page in man/
    (NAME.N, or NAME.N.in when the page is configured)."""
    pages = {}
    for path in glob.glob(os.path.join(source, 'man', '*')):
        name = os.path.basename(path)
        if name.endswith('.in'):
            name = name[:-3]
        m = re.fullmatch(r'[A-Za-z0-9_.-]+\.([1-8])', name)
        if m:
            pages[os.path.join('man' + m.group(1), name)] = path
    return pages


install = meson_install


def read(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


def sysconf_paths(text):
    """The directories in which text names segopsd.conf or api_key."""
    return set(re.findall(r'([^\s:=(),"\'`]*)/segopsd/(?:segopsd\.conf|api_key)\b',
                          text))


class InstallLayout(unittest.TestCase):
    """The layout of one install, and a second one over an edited config."""

    @classmethod
    def setUpClass(cls):
        cls.build = env_or_skip('MESON_BUILD_ROOT')
        cls.source = env_or_skip('MESON_SOURCE_ROOT')
        cls.tmp = tempfile.mkdtemp(prefix='segops-install-')
        cls.dest = os.path.join(cls.tmp, 'dest')
        cls.dirs = layout(build_options(cls.build))
        install(cls.build, cls.dest)

    @classmethod
    def tearDownClass(cls):
        if not os.environ.get('SEGOPS_KEEP_TMP'):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def staged(self, *parts):
        """The DESTDIR path of an installed path."""
        return os.path.join(self.dest, os.path.join(*parts).lstrip('/'))

    def expected(self):
        """{installed path: kind} of the layout: 'exe', 'lib', 'file'."""
        d = self.dirs
        want = {
            os.path.join(d['sbindir'], 'segopsd'): 'exe',
            os.path.join(d['bindir'], 'segopsctl'): 'exe',
            os.path.join(d['includedir'], 'segops', 'shim.h'): 'file',
            os.path.join(d['includedir'], 'segops', 'sign.h'): 'file',
            os.path.join(d['systemdunitdir'], 'segopsd.service'): 'file',
            os.path.join(d['systemdunitdir'], 'segopsd.socket'): 'file',
            os.path.join(d['sysusersdir'], 'segops.conf'): 'file',
            os.path.join(d['sysconfdir'], 'segopsd', 'segopsd.conf'): 'file',
        }
        for lib in LIBS:
            so = os.path.join(d['libdir'], 'lib%s.so' % lib)
            want[so] = 'link'
            want[so + '.0'] = 'link'
            want[so + '.' + SONAME_VERSION] = 'lib'
            want[os.path.join(d['libdir'], 'pkgconfig', lib + '.pc')] = 'file'
        for doc in DOCS:
            want[os.path.join(d['docdir'], doc)] = 'file'
        for page in man_pages(self.source):
            want[os.path.join(d['mandir'], page)] = 'file'
        return want

    def test_every_file_of_the_layout_and_nothing_else(self):
        want = self.expected()
        got = {}
        for root, dirs, files in os.walk(self.dest):
            for name in dirs:
                path = os.path.join(root, name)
                st = os.lstat(path)
                self.assertEqual(stat.S_IMODE(st.st_mode), 0o755, path)
            for name in files:
                path = os.path.join(root, name)
                got['/' + os.path.relpath(path, self.dest)] = os.lstat(path)
        # The Python package has its own test (test_python_install).
        extra = sorted(p for p in got if p not in want and
                       not re.search(r'/segops/[a-z_]+\.py$', p))
        self.assertEqual(extra, [], 'installed but not in the layout')
        missing = sorted(p for p in want if p not in got)
        self.assertEqual(missing, [], 'in the layout but not installed')
        for path, kind in want.items():
            st = got[path]
            mode = stat.S_IMODE(st.st_mode)
            self.assertEqual(st.st_uid, os.geteuid(), path)
            if kind == 'link':
                self.assertTrue(stat.S_ISLNK(st.st_mode), path)
                target = os.readlink(self.staged(path))
                self.assertNotIn('/', target, path)  # beside it
                self.assertTrue(os.path.isfile(self.staged(path)), path)
                continue
            self.assertTrue(stat.S_ISREG(st.st_mode), path)
            self.assertEqual(mode & 0o022, 0, '%s: mode %o' % (path, mode))
            if kind == 'exe':
                self.assertEqual(mode, 0o755, path)
            elif kind == 'lib':
                self.assertIn(mode, (0o755, 0o644), path)
            else:
                self.assertEqual(mode, 0o644, path)

    def test_one_sysconfdir_everywhere(self):
        d = self.dirs
        etc = os.path.join(d['sysconfdir'], 'segopsd')
        unit = read(self.staged(d['systemdunitdir'], 'segopsd.service'))
        self.assertIn('ExecStart=%s --config %s/segopsd.conf\n' % (
            os.path.join(d['sbindir'], 'segopsd'), etc), unit)
        self.assertIn('LoadCredential=api_key:%s/api_key\n' % etc, unit)
        conf = read(self.staged(etc, 'segopsd.conf'))
        self.assertRegex(conf, r'(?m)^api_key_file = %s/api_key$' % re.escape(etc))
        named = {'unit': unit, 'config': conf}
        for page in man_pages(self.source):
            named[page] = read(self.staged(d['mandir'], page))
        self.assertIn(etc + '/segopsd.conf', named[os.path.join('man8', 'segopsd.8')])
        for what, text in named.items():
            self.assertNotRegex(text, r'@[A-Z_]+@', '%s: a token left' % what)
            self.assertLessEqual(sysconf_paths(text), {d['sysconfdir']},
                                 '%s names another sysconfdir' % what)
        helptext = subprocess.run([env_or_skip('SEGOPSD'), '--help'], check=True,
                                  capture_output=True, text=True).stdout
        self.assertIn('(default %s/segopsd.conf)' % etc, helptext)

    def test_a_second_install_keeps_an_edited_config(self):
        d = self.dirs
        live = self.staged(d['sysconfdir'], 'segopsd', 'segopsd.conf')
        example = self.staged(d['docdir'], 'examples', 'segopsd.conf')
        pristine = read(example)
        self.assertEqual(read(live), pristine)
        with open(live, 'a') as f:
            f.write('; edited by the operator\n')
        with open(example, 'w') as f:
            f.write('; stale\n')
        install(self.build, self.dest)
        self.assertEqual(read(live), pristine + '; edited by the operator\n')
        self.assertEqual(read(example), pristine)
        with open(live, 'w') as f:  # as the other tests expect it
            f.write(pristine)


class OtherPrefix(unittest.TestCase):
    """The other prefix, configured only: what names sysconfdir follows it."""

    def test_other_prefix_names_its_own_sysconfdir(self):
        if os.environ.get('B_SANITIZE', 'none') != 'none':
            raise unittest.SkipTest('the same with or without sanitizers: '
                                    'checked by the plain build only')
        build = env_or_skip('MESON_BUILD_ROOT')
        source = env_or_skip('MESON_SOURCE_ROOT')
        prefix = '/usr/local' if build_options(build)['prefix'] == '/usr' else '/usr'
        etc = {'/usr': '/etc', '/usr/local': '/usr/local/etc'}[prefix]
        tmp = tempfile.mkdtemp(prefix='segops-prefix-')
        self.addCleanup(shutil.rmtree, tmp, True)
        other = os.path.join(tmp, 'build')
        r = subprocess.run(['meson', 'setup', other, source, '--prefix', prefix,
                            '-Dtests=false'], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(layout(build_options(other))['sysconfdir'], etc)

        def configured(name):
            found = glob.glob(os.path.join(other, '**', name), recursive=True)
            self.assertEqual(len(found), 1, (name, found))
            return read(found[0])
        for name in ['segopsd.service', 'segopsd.conf', 'segopsd.8']:
            self.assertEqual(sysconf_paths(configured(name)), {etc}, name)
        self.assertIn('ExecStart=%s/sbin/segopsd --config %s/segopsd/segopsd.conf'
                      % (prefix, etc), configured('segopsd.service'))
        # segopsd's default --config, as the compiler will be told.
        with open(os.path.join(other, 'compile_commands.json')) as f:
            commands = [c['command'] for c in json.load(f)
                        if c['file'].endswith('daemon/main.c')]
        self.assertEqual(len(commands), 1, commands)
        self.assertIn('-DSEGOPS_SYSCONFDIR="%s"' % etc, commands[0])


APP = r'''
#include <segops/shim.h>
#include <segops/sign.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
        char sig[65], line[4096];
        segops_shim *s = NULL;
        FILE *maps;
        int r;

        r = segops_sign_user_id("k", 1, "u1", sig);
        printf("sign %d %s\n", r, r == 0 ? sig : "-");
        r = segops_shim_open(&s, "/nonexistent/segops-events.sock");
        printf("open %d\n", r);
        segops_shim_close(s);
        maps = fopen("/proc/self/maps", "re");
        while (maps && fgets(line, sizeof(line), maps))
                if (strstr(line, "libsegops-"))
                        printf("map %s", strchr(line, '/'));
        if (maps)
                fclose(maps);
        return 0;
}
'''


class BuildAgainstTheTree(unittest.TestCase):
    """An app built and run in `meson devenv`, through -uninstalled.pc."""

    def test_app_builds_and_runs_in_devenv(self):
        build = env_or_skip('MESON_BUILD_ROOT')
        source = env_or_skip('MESON_SOURCE_ROOT')
        if not shutil.which('cc') or not shutil.which('pkg-config'):
            raise unittest.SkipTest('cc or pkg-config missing')
        tmp = tempfile.mkdtemp(prefix='segops-devenv-')
        self.addCleanup(shutil.rmtree, tmp, True)
        with open(os.path.join(tmp, 'app.c'), 'w') as f:
            f.write(APP)
        cflags = os.environ.get('APP_CFLAGS', '')
        script = ('cc -std=c11 -Wall -Werror %s -MD -MF app.d -o app app.c '
                  '$(pkg-config --cflags --libs segops-shim segops-sign) && ./app'
                  % cflags)
        r = subprocess.run(['meson', 'devenv', '-C', build, '--workdir', tmp,
                            'sh', '-c', script], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        want = hmac.new(b'k', b'u1', hashlib.sha256).hexdigest()
        self.assertIn('sign 0 %s\n' % want, r.stdout)
        self.assertIn('open 0\n', r.stdout)
        # The headers were the tree's, not an installed copy's.
        deps = read(os.path.join(tmp, 'app.d'))
        for header in ['libshim/include/segops/shim.h', 'sign/include/segops/sign.h']:
            self.assertIn(os.path.join(source, header), deps)
        # The libraries were the build's.
        maps = {line.split()[1] for line in r.stdout.splitlines()
                if line.startswith('map ')}
        self.assertEqual({os.path.basename(m) for m in maps},
                         {'libsegops-shim.so.' + SONAME_VERSION,
                          'libsegops-sign.so.' + SONAME_VERSION}, r.stdout)
        for m in maps:
            self.assertTrue(m.startswith(os.path.realpath(build) + '/'), m)


if __name__ == '__main__':
    harness.main()
