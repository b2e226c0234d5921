"""meson install of the build under test into a DESTDIR, for the tests
that look at what an install lays down (test_shim, test_python_install,
test_install, test_units, test_man).

meson install writes its log into the build directory, which the tests
running at the same time share: installs take turns on a lock file
there. Standard library only, so that any test file can import it.
"""

import fcntl
import os
import subprocess


def meson_install(build, dest, tags=None, timeout=120):
    """Install build into dest (no rebuild). tags: meson's --tags (e.g.
    'man'). Raises AssertionError with meson's output when it fails."""
    argv = ['meson', 'install', '-C', build, '--destdir', dest,
            '--no-rebuild', '--quiet']
    if tags:
        argv += ['--tags', tags]
    with open(os.path.join(build, 'segops-shim-install.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        r = subprocess.run(argv, capture_output=True, text=True,
                           timeout=timeout, check=False)
    if r.returncode != 0:
        raise AssertionError('meson install failed:\n' + r.stdout + r.stderr)
