#!/bin/sh
# Build the Debian packages of this tree (debian/): segopsd,
# libsegops-shim0, libsegops-shim-dev, libsegops-sign0,
# libsegops-sign-dev, python3-segops (and their -dbgsym). Run as root on
# Debian 12: installs what the build needs (apt-get build-dep on
# debian/control, plus lintian), builds with `dpkg-buildpackage -us -uc
# -b` in a clean copy of the tree (the checkout gets no debian/ build
# litter and no build*/ directory reaches the packages), puts the .deb,
# .ddeb, .buildinfo and .changes files into OUTDIR (default: build-debs/
# at the top of the tree, emptied first), then runs lintian on the
# .changes. Exits non-zero when the build fails or lintian reports an
# error.
#
#   scripts/build-debs.sh [OUTDIR]
#
# DEB_BUILD_OPTIONS is passed on (nocheck skips the unit tests).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$top/build-debs}

need_root() {
        if [ "$(id -u)" != 0 ]; then
                echo "build-debs: $1; run this script as root" >&2
                exit 1
        fi
}

export DEBIAN_FRONTEND=noninteractive
apt_updated=
apt_update() {
        if [ -z "$apt_updated" ]; then
                apt-get update -qq
                apt_updated=1
        fi
}

# The tools, then the Build-Depends of debian/control.
missing=""
for p in dpkg-dev debhelper lintian; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
        need_root "missing:$missing"
        echo "build-debs: installing:$missing"
        apt_update
        # shellcheck disable=SC2086
        apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing >/dev/null
fi
if ! (cd "$top" && dpkg-checkbuilddeps >/dev/null 2>&1); then
        need_root "$( (cd "$top" && dpkg-checkbuilddeps 2>&1) || true)"
        echo "build-debs: installing the build dependencies (apt-get build-dep)"
        apt_update
        (cd "$top" && apt-get -o DPkg::Lock::Timeout=600 build-dep -y -qq ./ >/dev/null)
fi

# A clean copy: the files git knows (tracked, and untracked ones not
# ignored, so uncommitted work is built too); without git, the tree less
# the build directories .gitignore names.
version=$(dpkg-parsechangelog -l "$top/debian/changelog" -S Version)
upstream=${version%-*}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=$work/segops-$upstream
mkdir "$src"
if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (cd "$top" && git ls-files -z --cached --others --exclude-standard) |
                (cd "$top" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done; true' sh) |
                tar -C "$top" --null -T - -cf - | tar -C "$src" -xf -
else
        tar -C "$top" --exclude-vcs --exclude='./build*' --exclude='./builddir*' \
                --exclude=__pycache__ --exclude='*.pyc' --exclude=./bench/out -cf - . |
                tar -C "$src" -xf -
fi

echo "build-debs: building segops $version in a clean copy of the tree"
(cd "$src" && dpkg-buildpackage -us -uc -b -Jauto) >"$work/build.log" 2>&1 || {
        tail -n 60 "$work/build.log"
        echo "build-debs: dpkg-buildpackage failed (the last 60 lines above)" >&2
        exit 1
}

rm -rf "$out"
mkdir -p "$out"
for f in "$work"/*.deb "$work"/*.ddeb "$work"/*.buildinfo "$work"/*.changes; do
        [ -e "$f" ] && mv "$f" "$out/"
done
cp "$work/build.log" "$out/build.log"
changes=$(ls "$out"/*.changes)
echo "build-debs: packages in $out:"
for f in "$out"/*.deb "$out"/*.ddeb; do
        [ -e "$f" ] && echo "  $(basename "$f")"
done

# lintian: every tag it reports is printed; errors fail the script.
# Warnings kept are explained where they are overridden
# (debian/*.lintian-overrides).
echo "build-debs: lintian $(basename "$changes")"
rc=0
lintian --fail-on error --display-info "$changes" >"$out/lintian.txt" 2>&1 || rc=$?
cat "$out/lintian.txt"
errors=$(grep -c '^E: ' "$out/lintian.txt" || true)
warnings=$(grep -c '^W: ' "$out/lintian.txt" || true)
infos=$(grep -c '^I: ' "$out/lintian.txt" || true)
echo "build-debs: lintian: $errors errors, $warnings warnings, $infos info"
if [ "$rc" != 0 ] || [ "$errors" != 0 ]; then
        echo "build-debs: lintian failed" >&2
        exit 1
fi
