#!/usr/bin/env python3
"""The Python client's two install paths (issue 11), offline, with what
Debian's archive provides:

- `meson install` (into a temporary DESTDIR) puts the package in a
  directory that the Python running meson (Debian's python3 on Debian)
  has on its sys.path, and it imports from there;
- `pip install --no-build-isolation --no-index ./python` into a
  virtualenv made with `python3 -m venv --system-site-packages` (Debian's
  pip, setuptools and wheel; no PyPI) installs an importable package.

Environment (set by meson): MESON_BUILD_ROOT, PY_INSTALL_PYTHON (the
Python meson installs for).
"""

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PYSRC = os.path.join(HERE, '..', '..', 'python')
sys.path.insert(0, os.path.join(HERE, '..', 'lib'))

import harness  # noqa: E402
from destdir import meson_install  # noqa: E402

CHECK = ('import segops, sys; '
         'assert segops.sign_user_id("k", "u1") == "%s"; '
         'c = segops.SegOpsClient(socket="/nonexistent/e.sock"); '
         'print(segops.__file__)')


def expected_sig():
    import hashlib
    import hmac
    return hmac.new(b'k', b'u1', hashlib.sha256).hexdigest()


def python():
    py = os.environ.get('PY_INSTALL_PYTHON')
    if not py:
        raise unittest.SkipTest('PY_INSTALL_PYTHON not set (run through '
                                'meson test)')
    return py


class InstallTests(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='segops-pyinst-')
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ('PYTHONPATH', 'PYTHONHOME',
                                 'VIRTUAL_ENV')}
        self.env.update(PIP_NO_CACHE_DIR='1', PIP_DISABLE_PIP_VERSION_CHECK='1',
                        PIP_NO_INPUT='1', PYTHONDONTWRITEBYTECODE='1')

    def test_meson_install_lands_on_pythons_path(self):
        py = python()
        root = os.environ['MESON_BUILD_ROOT']
        dest = os.path.join(self.tmp, 'dest')
        meson_install(root, dest)
        inits = glob.glob(os.path.join(dest, '**', 'segops', '__init__.py'),
                          recursive=True)
        self.assertEqual(len(inits), 1, inits)
        site = os.path.dirname(os.path.dirname(inits[0]))
        real = '/' + os.path.relpath(site, dest)
        path = subprocess.run([py, '-c', 'import sys; print("\\n".join('
                               'sys.path))'], check=True, env=self.env,
                              capture_output=True, text=True).stdout
        self.assertIn(real, path.splitlines(),
                      '%s would not find %s' % (py, real))
        env = dict(self.env, PYTHONPATH=site)
        out = subprocess.run([py, '-c', CHECK % expected_sig()], env=env,
                             cwd=self.tmp, check=True, capture_output=True,
                             text=True).stdout
        self.assertTrue(out.startswith(site), out)

    def test_pip_install_offline_into_a_venv(self):
        py = python()
        src = os.path.join(self.tmp, 'src')
        shutil.copytree(PYSRC, src, ignore=shutil.ignore_patterns(
            '__pycache__', 'build', '*.egg-info', 'meson.build'))
        venv = os.path.join(self.tmp, 'venv')
        subprocess.run([py, '-m', 'venv', '--system-site-packages',
                        '--without-pip', venv], check=True, env=self.env)
        vpy = os.path.join(venv, 'bin', 'python')
        r = subprocess.run([vpy, '-m', 'pip', 'install', '--no-build-isolation',
                            '--no-index', '--no-deps', src], env=self.env,
                           cwd=self.tmp, capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        out = subprocess.run([vpy, '-c', CHECK % expected_sig()],
                             env=self.env, cwd=self.tmp, check=True,
                             capture_output=True, text=True).stdout
        self.assertTrue(out.startswith(venv), out)


if __name__ == '__main__':
    harness.main()
