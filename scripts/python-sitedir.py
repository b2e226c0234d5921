"""Print where `meson install` puts the segops package: the first
directory on this interpreter's sys.path that lies under PREFIX/lib and
is a site directory (dist-packages or site-packages). On Debian with the
default prefix /usr/local that is /usr/local/lib/python3.X/dist-packages,
which Debian's python3 searches (meson's own choice there,
/usr/local/lib/python3/dist-packages, is not on its path). Prints
nothing when no such directory exists (meson's default is used then).

usage: python3 scripts/python-sitedir.py PREFIX
"""

import os
import sys


def main():
    lib = os.path.join(os.path.normpath(sys.argv[1]), 'lib') + os.sep
    for d in sys.path:
        d = os.path.normpath(d) if d else ''
        if d.startswith(lib) and os.path.basename(d) in ('dist-packages',
                                                         'site-packages'):
            print(d)
            return


main()
