#!/bin/sh
# ABI check: the shared library exports the segops_* calls only (plus
# the version node of its symbol map), each with the map's version.
# Usage: check-exports.sh LIBRARY
set -eu
lib=$1
syms=$(nm -D --defined-only "$lib" | awk '$2 != "A" { print $3 }')
[ -n "$syms" ] || { echo "no exported symbols in $lib"; exit 1; }
bad=$(printf '%s\n' "$syms" | grep -v '^segops_[a-z_]*@@SEGOPS_SHIM_' || true)
if [ -n "$bad" ]; then
        echo "unexpected exports:"; printf '%s\n' "$bad"; exit 1
fi
for f in segops_shim_open segops_shim_close segops_track segops_track_at \
         segops_identify segops_set_user segops_reset_session segops_flush \
         segops_dropped; do
        printf '%s\n' "$syms" | grep -q "^$f@@" || { echo "missing $f"; exit 1; }
done
readelf -d "$lib" | grep -q 'SONAME.*\[libsegops-shim\.so\.0\]' || {
        echo "SONAME is not libsegops-shim.so.0"; exit 1; }
echo ok
