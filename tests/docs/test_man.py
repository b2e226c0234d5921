#!/usr/bin/env python3
"""The manual pages, as installed (issue 13).

The build's man pages are installed into a temporary DESTDIR (`meson
install --tags man`), and then:

- every page renders without a warning: `groff -man -ww -z`, `mandoc
  -Tlint -Wwarning` (where mandoc is installed) and `lexgrog`, the
  whatis parser man-db and lintian use;
- every public function of <segops/shim.h> and <segops/sign.h> has a
  page of its own (`man segops_track` works): `man -M MANDIR 3 NAME`
  renders it, and the page it leads to names the function in NAME and
  SYNOPSIS;
- every key of segopsd's configuration table (daemon/config.c, parsed
  here) has an entry in segopsd.conf(5), in its section, with the
  table's default, and the man page has no key the table lacks; the same
  for the commented example configs/segopsd.conf, whose ";key = value"
  lines show the defaults;
- the pages name the build's sysconfdir, not a hard-coded /etc, and no
  @TOKEN@ is left unsubstituted;
- the C examples of segops_shim(3) and segops_sign_user_id(3) compile
  against the tree's headers and link against the built libraries; the
  signing example prints the signature its page says.

Environment (set by meson): MESON_BUILD_ROOT, SEGOPS_SOURCE_ROOT,
SEGOPS_SYSCONFDIR, SEGOPS_SHIM_LIB, SEGOPS_SIGN_LIB, MAN_EXAMPLE_CFLAGS.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'lib'))
from destdir import meson_install  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get('SEGOPS_SOURCE_ROOT', os.path.join(HERE, '..', '..'))

FULL_PAGES = ['man1/segopsctl.1', 'man3/segops_shim.3',
              'man3/segops_sign_user_id.3', 'man5/segopsd.conf.5',
              'man8/segopsd.8']

_inst = {}


def mandir():
    """Install the man pages into a DESTDIR once; its share/man."""
    if 'mandir' in _inst:
        return _inst['mandir']
    root = os.environ.get('MESON_BUILD_ROOT')
    if not root:
        raise unittest.SkipTest('MESON_BUILD_ROOT not set')
    dest = tempfile.mkdtemp(prefix='segops-man-')
    _inst['dest'] = dest
    meson_install(root, dest, tags='man')
    found = glob.glob(os.path.join(dest, '**', 'man8', 'segopsd.8'),
                      recursive=True)
    if len(found) != 1:
        raise AssertionError('segopsd.8 not installed once: %r' % found)
    _inst['mandir'] = os.path.dirname(os.path.dirname(found[0]))
    return _inst['mandir']


def tearDownModule():
    if 'dest' in _inst and not os.environ.get('SEGOPS_KEEP_TMP'):
        shutil.rmtree(_inst['dest'], ignore_errors=True)


def read(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


def unroff(text):
    """The few roff escapes our pages use, as plain text."""
    for a, b in (('\\-', '-'), ('\\e', '\\'), ('\\(aq', "'"),
                 ('\\(dq', '"'), ('\\&', ''), ('\\fB', ''), ('\\fI', ''),
                 ('\\fR', ''), ('\\fP', '')):
        text = text.replace(a, b)
    return text


# ---- the configuration table of daemon/config.c ----------------------

def config_table():
    """[(section, name, type, default)] from daemon/config.c: the key
    table, then cfg_defaults() for each key's field (a field it does not
    set is zero: NULL, false, 0)."""
    text = read(os.path.join(SRC, 'daemon', 'config.c'))
    table = re.search(r'const struct cfg_key cfg_keys\[\] = \{(.*?)\n\};',
                      text, re.S).group(1)
    keys = []
    for m in re.finditer(r'\bK(STR|UNS|DBL)\((.*?)\)(?:,|\s*$)', table,
                         re.S | re.M):
        args = [a.strip() for a in m.group(2).split(',')]
        section = args[0].strip('"')
        if m.group(1) == 'STR':
            name = field = args[1]
            typ = args[2]
        else:
            name, field = args[1].strip('"'), args[2]
            typ = args[3] if m.group(1) == 'UNS' else 'T_DOUBLE'
        keys.append((section, name, typ, field))
    entries = len(re.findall(r'^\s*K(?:STR|UNS|DBL)\(', table, re.M))
    assert len(keys) == entries and entries > 40, (len(keys), entries)

    body = re.search(r'\nvoid cfg_defaults\(struct cfg \*c\)\n\{(.*?)\n\}',
                     text, re.S).group(1)
    sets = dict(re.findall(r'c->(\w+) = ([^;]+);', body))
    statics = dict(re.findall(r'static char (\w+)\[\] = "([^"]*)";', text))
    out = []
    for section, name, typ, field in keys:
        out.append((section, name, typ,
                    c_default(typ, sets.get(field), statics)))
    return out


def c_default(typ, expr, statics):
    """A C default of cfg_defaults() as a Python value (None = unset)."""
    if expr is None:
        return {'T_BOOL': False, 'T_UINT': 0, 'T_SIZE': 0,
                'T_DOUBLE': 0.0}.get(typ)
    if expr in statics:
        return statics[expr]
    if expr == 'CFG_GROUP_OWN':
        return None
    prefixes = {'T_COMPRESSION': 'CFG_COMPRESSION_', 'T_WHEN_FULL': 'CFG_',
                'T_SPOOL_SYNC': 'CFG_SYNC_', 'T_LOG_LEVEL': 'CFG_LOG_'}
    if typ in prefixes:
        assert expr.startswith(prefixes[typ]), expr
        return expr[len(prefixes[typ]):].lower()
    if typ == 'T_MODE':
        return int(expr, 8)
    if typ == 'T_BOOL':
        return expr == 'true'
    arith = expr.replace('GIB', '(1024**3)').replace('MIB', '(1024**2)')
    arith = arith.replace('KIB', '1024')
    assert re.fullmatch(r'[0-9.*() ]+', arith), expr
    return eval(arith)  # digits and * only, checked above


def size_bytes(text):
    """'64M' (K/M/G = KiB/MiB/GiB, optional B or iB) in bytes."""
    m = re.fullmatch(r'(\d+)([KMGkmg]?)(?:i?[Bb])?', text)
    if not m:
        raise ValueError('not a size: %r' % text)
    return int(m.group(1)) * 1024 ** ' kmg'.index(m.group(2).lower() or ' ')


def same_default(typ, c_value, doc):
    """Whether doc (a default as the page or the example writes it)
    means the table's default c_value."""
    if c_value is None:
        return doc is None or doc == 'not set'
    if doc is None:
        return False
    if typ == 'T_DOUBLE':
        return float(doc) == c_value
    if typ == 'T_UINT':
        return int(doc) == c_value
    if typ == 'T_SIZE':
        return size_bytes(doc) == c_value
    if typ == 'T_MODE':
        return int(doc, 8) == c_value
    if typ == 'T_BOOL':
        return doc in (('yes', 'true', 'on', '1') if c_value
                       else ('no', 'false', 'off', '0'))
    return doc == c_value


def effective(name, value, table):
    """max_datagram_bytes' default 0 means "automatic": 256K, or room for
    one max_message_bytes message (cfg_datagram_bytes() in config.h);
    the documents show what that gives with the defaults."""
    if name == 'max_datagram_bytes' and value == 0:
        msg = [d for s, n, t, d in table if n == 'max_message_bytes'][0]
        return max(256 * 1024, msg + 1)
    return value


def man_keys(text):
    """{(section, name): default text} from segopsd.conf(5): an entry is
    a '.BI "name = "' line under '.SS [section]', its default the first
    'Default:' line after it, up to '(' or ',' and without the final
    period."""
    keys, section, current = {}, None, None
    for line in text.splitlines():
        m = re.match(r'\.SS \[(\w+)\]$', line)
        if m:
            section, current = m.group(1), None
            continue
        if line.startswith('.SH'):
            section, current = None, None
            continue
        m = re.match(r'\.BI "(\w+) = "', line)
        if m and section:
            current = (section, m.group(1))
            if current in keys:
                raise AssertionError('%s listed twice' % (current,))
            keys[current] = None
            continue
        if line.startswith('Default: ') and current:
            if keys[current] is not None:
                raise AssertionError('%s: two Default: lines' % (current,))
            value = unroff(line[len('Default: '):])
            value = re.split(r' \(|,', value)[0].strip()
            keys[current] = value[:-1] if value.endswith('.') else value
    return keys


def example_keys(text):
    """{(section, name): (commented, value or None)} from the example
    config: 'key = value' lines, or ';key = value' for a default."""
    keys, section = {}, None
    for line in text.splitlines():
        m = re.match(r'\[(\w+)\]$', line)
        if m:
            section = m.group(1)
            continue
        m = re.match(r'(;?)(\w+) =(?: (.*))?$', line)
        if m and section:
            key = (section, m.group(2))
            if key in keys:
                raise AssertionError('%s listed twice' % (key,))
            keys[key] = (m.group(1) == ';', m.group(3) or None)
    return keys


class ConfigKeys(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.table = config_table()

    def test_every_key_in_the_man_page_with_its_default(self):
        page = read(os.path.join(mandir(), 'man5', 'segopsd.conf.5'))
        keys = man_keys(page)
        for section, name, typ, value in self.table:
            with self.subTest(key='[%s] %s' % (section, name)):
                self.assertIn((section, name), keys,
                              'no entry in segopsd.conf(5)')
                doc = keys.pop((section, name))
                self.assertIsNotNone(doc, 'no "Default:" line')
                want = effective(name, value, self.table)
                self.assertTrue(same_default(typ, want, doc),
                                'segopsd.conf(5) says %r, config.c %r'
                                % (doc, want))
        self.assertEqual(keys, {}, 'keys the daemon does not have')

    def test_every_key_in_the_example_config_with_its_default(self):
        paths = [p for p in (os.path.join(SRC, 'configs', 'segopsd.conf'),
                             os.path.join(SRC, 'configs', 'segopsd.conf.in'))
                 if os.path.exists(p)]
        self.assertEqual(len(paths), 1, paths)
        keys = example_keys(read(paths[0]))
        for section, name, typ, value in self.table:
            with self.subTest(key='[%s] %s' % (section, name)):
                self.assertIn((section, name), keys,
                              'not in %s' % os.path.basename(paths[0]))
                commented, doc = keys.pop((section, name))
                if not commented:
                    continue  # a value set on purpose (api_url, ...)
                want = effective(name, value, self.table)
                self.assertTrue(same_default(typ, want, doc),
                                ';%s = %s, but config.c says %r'
                                % (name, doc or '', want))
        self.assertEqual(keys, {}, 'keys the daemon does not have')


class Pages(unittest.TestCase):

    def test_every_page_renders_without_a_warning(self):
        md = mandir()
        env = dict(os.environ, LC_ALL='C.UTF-8')
        pages = sorted(os.path.relpath(p, md) for p in
                       glob.glob(os.path.join(md, 'man*', '*')))
        self.assertTrue(set(FULL_PAGES) <= set(pages), pages)
        for page in pages:
            with self.subTest(page=page):
                # From the man directory, where ".so man3/x.3" resolves.
                r = subprocess.run(['groff', '-man', '-Tutf8', '-ww', '-z',
                                    page], cwd=md, env=env, text=True,
                                   capture_output=True, timeout=60)
                self.assertEqual((r.returncode, r.stderr), (0, ''))
                r = subprocess.run(['lexgrog', page], cwd=md, env=env,
                                   text=True, capture_output=True,
                                   timeout=60)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_mandoc_lint(self):
        if not shutil.which('mandoc'):
            self.skipTest('mandoc is not installed (scripts/install-deps.sh)')
        md = mandir()
        for page in FULL_PAGES:
            with self.subTest(page=page):
                r = subprocess.run(['mandoc', '-Tlint', '-Wwarning', page],
                                   cwd=md, text=True, capture_output=True,
                                   timeout=60)
                self.assertEqual((r.returncode, r.stdout + r.stderr),
                                 (0, ''))

    def test_paths_follow_the_build(self):
        md = mandir()
        etc = os.environ.get('SEGOPS_SYSCONFDIR')
        if not etc:
            self.skipTest('SEGOPS_SYSCONFDIR not set')
        for page in FULL_PAGES:
            text = read(os.path.join(md, page))
            with self.subTest(page=page):
                left = re.search(r'.*@[A-Z_]+@.*', text)
                self.assertIsNone(left, left and left.group(0))
                # /etc/segopsd, not as the end of /usr/local/etc/segopsd
                fixed = re.search(r'.*(?<![\w/])/etc/segopsd.*', text)
                if etc != '/etc':
                    self.assertIsNone(fixed, fixed and fixed.group(0))
        for page in ('man8/segopsd.8', 'man5/segopsd.conf.5',
                     'man1/segopsctl.1'):
            with self.subTest(page=page):
                self.assertTrue(etc + '/segopsd/segopsd.conf' in
                                read(os.path.join(md, page)),
                                'no %s/segopsd/segopsd.conf' % etc)

    def test_see_also_names_pages_that_exist(self):
        md = mandir()
        for page in FULL_PAGES:
            text = read(os.path.join(md, page))
            for name, sec in re.findall(r'^\.BR (segops\S*) \((\d)\)', text,
                                        re.M):
                with self.subTest(page=page, ref='%s(%s)' % (name, sec)):
                    self.assertTrue(os.path.exists(os.path.join(
                        md, 'man' + sec, '%s.%s' % (name, sec))))


def public_functions(header):
    text = read(os.path.join(SRC, header))
    return re.findall(r'^(?:int|void|uint64_t)\s+\**(segops_\w+)\(', text,
                      re.M)


class Functions(unittest.TestCase):

    def test_every_public_function_has_a_page(self):
        md = mandir()
        man = shutil.which('man')
        funcs = (public_functions('libshim/include/segops/shim.h') +
                 public_functions('sign/include/segops/sign.h'))
        self.assertGreaterEqual(len(funcs), 10, funcs)
        env = dict(os.environ, MANPAGER='cat', PAGER='cat', MANWIDTH='80',
                   LC_ALL='C.UTF-8')
        env.pop('MANPATH', None)
        for fn in funcs:
            with self.subTest(function=fn):
                path = os.path.join(md, 'man3', fn + '.3')
                self.assertTrue(os.path.exists(path), 'no %s.3' % fn)
                text = read(path)
                m = re.fullmatch(r'\.so (man3/\w+\.3)\n', text)
                if m:
                    text = read(os.path.join(md, m.group(1)))
                name = text.split('.SH NAME\n', 1)[1].split('\n.SH', 1)[0]
                self.assertRegex(name, r'\b%s\b' % fn)
                synopsis = text.split('.SH SYNOPSIS\n', 1)[1].split(
                    '\n.SH', 1)[0]
                self.assertRegex(synopsis, r'\b%s\(' % fn)
                if not man:
                    continue
                # -M: this tree only, so a page already installed on
                # the machine cannot stand in for it.
                r = subprocess.run([man, '-M', md, '3', fn], env=env,
                                   text=True, capture_output=True,
                                   timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn(fn, r.stdout)
        if not man:
            self.skipTest('man is not installed: pages checked, lookup not')


def examples(page):
    """The C programs in a page's .EX blocks, as plain C."""
    text = read(os.path.join(mandir(), 'man3', page))
    blocks = re.findall(r'^\.EX\n(.*?)^\.EE$', text, re.S | re.M)
    return [unroff(b) for b in blocks if 'int main(' in b], blocks


class Examples(unittest.TestCase):

    def setUp(self):
        self.cc = shutil.which('cc')
        if not self.cc:
            self.skipTest('no C compiler')
        self.tmp = tempfile.mkdtemp(prefix='segops-man-ex-')

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def build(self, name, source, include, lib_env):
        lib = os.environ.get(lib_env)
        if not lib:
            self.skipTest('%s not set' % lib_env)
        c = os.path.join(self.tmp, name + '.c')
        exe = os.path.join(self.tmp, name)
        with open(c, 'w') as f:
            f.write(source)
        flags = os.environ.get('MAN_EXAMPLE_CFLAGS', '').split()
        r = subprocess.run([self.cc, '-std=c11', '-Wall', '-Wextra', '-Werror',
                            '-I', os.path.join(SRC, include)] + flags +
                           ['-o', exe, c, lib], text=True,
                           capture_output=True, timeout=120)
        self.assertEqual(r.returncode, 0, source + r.stderr)
        return exe, os.path.dirname(lib)

    def test_shim_example_compiles(self):
        progs, _ = examples('segops_shim.3')
        self.assertEqual(len(progs), 1)
        self.build('shim', progs[0], 'libshim/include', 'SEGOPS_SHIM_LIB')

    def test_sign_example_prints_what_the_page_says(self):
        progs, blocks = examples('segops_sign_user_id.3')
        self.assertEqual(len(progs), 1)
        said = [b.strip() for b in blocks
                if re.fullmatch(r'[0-9a-f]{64}\n', b)]
        self.assertEqual(len(said), 1, blocks)
        exe, libdir = self.build('sign', progs[0], 'sign/include',
                                 'SEGOPS_SIGN_LIB')
        r = subprocess.run([exe], env=dict(os.environ,
                                           LD_LIBRARY_PATH=libdir),
                           text=True, capture_output=True, timeout=60)
        self.assertEqual((r.returncode, r.stdout.strip(), r.stderr),
                         (0, said[0], ''))


if __name__ == '__main__':
    unittest.main(verbosity=2)
