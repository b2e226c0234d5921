#!/bin/sh
# ABI check: the library depends on libc only (libpthread and the
# dynamic loader are tolerated: older glibc splits them out).
# Usage: check-needed.sh LIBRARY
set -eu
lib=$1
needed=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
bad=$(printf '%s\n' "$needed" | grep -Ev '^(libc\.so\.6|libpthread\.so\.0|ld-linux.*\.so\.[0-9]+)$' || true)
if [ -n "$bad" ]; then
        echo "unexpected dependencies:"; printf '%s\n' "$bad"; exit 1
fi
echo "NEEDED: $needed"
