#!/bin/sh
# Install what building and testing segops needs on Debian 12 (run as
# root). Installs only what is missing; safe to run again.
set -eu

PKGS="build-essential meson ninja-build pkg-config
      libuv1-dev libcurl4-openssl-dev libjansson-dev libssl-dev
      libsystemd-dev libinih-dev zlib1g-dev check libsubunit-dev
      python3 socat openssl curl clang-format systemd libseccomp2
      python3-venv python3-pip python3-setuptools python3-wheel
      groff-base man-db mandoc"

missing=""
for p in $PKGS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
        echo "install-deps: everything is installed"
        exit 0
fi
if [ "$(id -u)" != 0 ]; then
        echo "install-deps: missing:$missing; run this script as root" >&2
        exit 1
fi
echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
