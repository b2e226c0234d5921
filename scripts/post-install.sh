#!/bin/sh
# meson install hook: refresh the dynamic linker's cache so programs
# find the freshly installed libsegops-shim.so.0 at once. Skipped for
# staged installs (DESTDIR) and when not root (nothing we may change).
if [ -z "${DESTDIR:-}" ] && [ "$(id -u)" = 0 ] && command -v ldconfig >/dev/null 2>&1; then
        ldconfig
fi
exit 0
