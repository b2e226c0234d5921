#!/bin/sh
# meson install hook: install segopsd's live config only when there is
# none, so that a reinstall or an upgrade never overwrites an edited
# one. The pristine copy is always installed (by meson) in the examples
# directory; when an existing config is kept and differs from it, this
# says so, and how to compare.
#
# Usage (from configs/meson.build): install-config.sh CONF DIR EXAMPLES
#   CONF      the built segopsd.conf
#   DIR       where the live config goes: SYSCONFDIR/segopsd (absolute)
#   EXAMPLES  where meson installs the pristine copies (absolute)
# DESTDIR (absolute: meson makes it so) is honoured; under DESTDIR
# staging the config is absent, so a package build always gets it.
# meson shows what this prints from 1.2 on (0.57 to 1.1 show an install
# script's output only when it fails).
set -eu

conf=$1
dir=${DESTDIR:-}$2
examples=${DESTDIR:-}$3
live=$dir/segopsd.conf

say() {
        [ -n "${MESON_INSTALL_QUIET:-}" ] || printf '%s\n' "$*"
}

if [ -e "$live" ] || [ -L "$live" ]; then
        if cmp -s "$conf" "$live"; then
                say "Keeping $live (the same as the new default)"
        else
                say "Keeping $live as it is; the new default is $examples/segopsd.conf" \
                        "(diff -u $live $examples/segopsd.conf)"
        fi
        exit 0
fi
install -d -m 0755 "$dir"
install -m 0644 "$conf" "$live"
say "Installing $live (absent: the default config)"
