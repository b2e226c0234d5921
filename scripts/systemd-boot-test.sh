#!/bin/sh
# Boot the installed units under a real systemd: a Debian root (made once
# with debootstrap from this machine's apt mirror, then cached), segopsd
# installed into a throwaway overlay of it, booted with systemd-nspawn
# (no machined, no network); inside, tests/systemd/boot-checks.sh checks
# socket activation end to end (the socket at boot, a datagram starting
# the service, reload, restart under a sender without loss, a clean stop,
# DynamicUser and group segops, the seccomp filter, segopsctl status and
# health, systemd-analyze security online = offline), then powers off.
# Prints PASS/FAIL per check; exits 1 when one failed, 77 when it cannot
# run here (and says why). Needs root. docs/OPERATIONS.md, "Checking
# under a real systemd".
#
#   scripts/systemd-boot-test.sh [--build DIR | --debs DIR | --from-source]
#                                [--root DIR] [--dropin FILE] [--no-create]
#
#   --build DIR   install this meson build (default: build-systemd/build,
#                 configured with --prefix=/usr and built when absent)
#   --debs DIR    install the .deb files in DIR with dpkg instead
#   --from-source what a new operator does on a fresh Debian 12: inside the
#                 container (with the host's network, for the apt mirror),
#                 scripts/build-debs.sh on this tree (installing what the
#                 build needs), then `apt install ./segopsd_*.deb
#                 ./libsegops-shim*.deb`; then boot and check as --debs
#   --root DIR    the cached Debian root (default $SEGOPS_SYSTEMD_ROOT,
#                 else build-systemd/root); never changed by a run
#   --dropin FILE add FILE as a drop-in of segopsd.service (to try
#                 directives under the real systemd before editing the unit)
#   --no-create   exit 77 instead of running debootstrap when the root
#                 is missing (the meson test)
# Environment: SEGOPS_BOOT_TIMEOUT (seconds for the boot, default 300),
# SEGOPS_DEBIAN_MIRROR (default: the Debian mirror of /etc/apt/sources*).
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
work=$src/build-systemd
root=${SEGOPS_SYSTEMD_ROOT:-$work/root}
build=
debs=
from_source=
dropin=
create=yes
boot_timeout=${SEGOPS_BOOT_TIMEOUT:-300}
# What the root holds besides systemd: segopsd's libraries and socat.
# A change here makes the next run build the root again.
packages=systemd,systemd-sysv,dbus,socat,libuv1,libcurl4,libjansson4,libinih1,zlib1g,libssl3,ca-certificates

while [ $# -gt 0 ]; do
        case $1 in
        --build | --debs | --root | --dropin)
                [ $# -ge 2 ] || { echo "$1 needs a directory" >&2; exit 2; }
                case $1 in
                --build) build=$(cd "$2" && pwd) ;;
                --debs) debs=$(cd "$2" && pwd) ;;
                --root) root=$2 ;;
                --dropin) dropin=$(cd "$(dirname "$2")" && pwd)/$(basename "$2") ;;
                esac
                shift
                ;;
        --no-create) create=no ;;
        --from-source) from_source=yes ;;
        -h | --help)
                sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'
                exit 0
                ;;
        *)
                echo "unknown argument $1 (try --help)" >&2
                exit 2
                ;;
        esac
        shift
done

case $root in /*) ;; *) root=$(pwd)/$root ;; esac

skip() {
        echo "SKIP: $*"
        exit 77
}

# ---- what this needs ---------------------------------------------------------
[ "$(id -u)" = 0 ] || skip "needs root (systemd-nspawn, mount)"
grep -qw overlay /proc/filesystems || skip "the kernel has no overlayfs"
if ! command -v systemd-nspawn >/dev/null; then
        [ $create = yes ] || skip "no systemd-nspawn (apt-get install systemd-container)"
        apt-get install -y -q systemd-container >/dev/null
fi
stamp=$root/.segops-boot-root
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$packages" ]; then
        [ $create = yes ] || skip "no cached root at $root: run scripts/systemd-boot-test.sh once (debootstrap, needs the Debian mirror)"
fi

# The Debian archive this machine installs from: the first source of
# suite CODENAME in /etc/apt/sources.list(.d), one-line or deb822.
mirror() {
        codename=$1
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
                [ -f "$f" ] || continue
                awk -v s="$codename" '$1 == "deb" {
                        i = 2; if ($i ~ /^\[/) while ($i !~ /\]$/) i++
                        if ($i ~ /^\[/ || $i ~ /\]$/) i++
                        if ($(i + 1) == s) { print $i; exit } }' "$f"
        done
        for f in /etc/apt/sources.list.d/*.sources; do
                [ -f "$f" ] || continue
                awk -v s="$codename" 'BEGIN { RS = ""; FS = "\n" } {
                        uri = ""; ok = 0; deb = 0
                        for (i = 1; i <= NF; i++) {
                                if ($i ~ /^URIs:/) { split($i, a, " "); uri = a[2] }
                                if ($i ~ /^Types:/ && $i ~ / deb( |$)/) deb = 1
                                if ($i ~ /^Suites:/) { n = split($i, b, " ")
                                        for (j = 2; j <= n; j++) if (b[j] == s) ok = 1 }
                        }
                        if (ok && deb && uri != "") { print uri; exit } }' "$f"
        done
}

# ---- the cached root -----------------------------------------------------------
make_root() {
        if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$packages" ]; then
                return 0
        fi
        # Replace only a root this script made (or nothing).
        if [ -e "$root" ] && [ ! -f "$stamp" ]; then
                echo "$root exists but was not made by this script: give another --root" >&2
                exit 1
        fi
        command -v debootstrap >/dev/null || apt-get install -y -q debootstrap >/dev/null
        codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
        url=${SEGOPS_DEBIAN_MIRROR:-$(mirror "$codename" | head -n 1)}
        [ -n "$url" ] || { echo "no Debian mirror for $codename in /etc/apt/sources*: set SEGOPS_DEBIAN_MIRROR" >&2; exit 1; }
        echo "creating the Debian root $root ($codename from $url; once, about two minutes)"
        rm -rf "$root.new"
        mkdir -p "$(dirname "$root")"
        if ! debootstrap --variant=minbase --include="$packages" "$codename" "$root.new" "$url" \
                >"$root.debootstrap.log" 2>&1; then
                tail -n 20 "$root.debootstrap.log"
                echo "debootstrap failed: $root.debootstrap.log" >&2
                exit 1
        fi
        rm -f "$root.new"/var/cache/apt/archives/*.deb
        rm -rf "$root"
        mv "$root.new" "$root"
        printf '%s\n' "$packages" >"$stamp"
}

# ---- what is installed: one function, for meson or for the packages -------
# The upgrade the checks make (boot-checks.sh, "upgrade"): the segopsd
# of $debs repacked with a higher version, in DEST/root/segops-upgrade.
make_upgrade() {
        for f in "$debs"/segopsd_*.deb; do
                [ -e "$f" ] || continue
                rm -rf "$run/repack"
                dpkg-deb -R "$f" "$run/repack"
                v=$(dpkg-deb -f "$f" Version)+boottest1
                sed -i "s/^Version: .*/Version: $v/" "$run/repack/DEBIAN/control"
                mkdir -p "$1/root/segops-upgrade"
                dpkg-deb -b --root-owner-group "$run/repack" \
                        "$1/root/segops-upgrade/segopsd_new.deb" >/dev/null
                rm -rf "$run/repack"
        done
}

install_segops() {
        dest=$1
        if [ -n "$from_source" ]; then
                # The files git knows (uncommitted work included), as
                # build-debs.sh itself takes them.
                mkdir -p "$dest/root/segops-src"
                (cd "$src" && git ls-files -z -co --exclude-standard |
                        tar --null -T - -cf -) | tar -x -C "$dest/root/segops-src"
                if ! systemd-nspawn -q -D "$dest" -M "segops-build-$$" --register=no --keep-unit \
                        sh -c 'cd /root/segops-src && scripts/build-debs.sh /root/segops-debs &&
                               cd /root/segops-debs &&
                               apt-get install -y -q ./segopsd_*.deb ./libsegops-shim*.deb' \
                        >"$logs/from-source.log" 2>&1 </dev/null; then
                        tail -n 20 "$logs/from-source.log"
                        echo "FAIL from-source: build-debs.sh or apt install failed ($logs/from-source.log)"
                        return 1
                fi
                grep 'lintian:' "$logs/from-source.log" || true
                # The packages it installed; the upgrade check repacks segopsd.
                debs=$run/debs
                mkdir -p "$debs"
                cp "$dest"/root/segops-debs/segopsd_*.deb "$debs/"
                rm -rf "$dest/root/segops-src"
                make_upgrade "$dest"
                return
        fi
        if [ -n "$debs" ]; then
                # Not /tmp: nspawn mounts a fresh one.
                mkdir -p "$dest/root/segops-debs"
                cp "$debs"/*.deb "$dest/root/segops-debs/"
                # The maintainer scripts run as on a real install: they
                # create the group, enable the socket.
                systemd-nspawn -q -D "$dest" -M "segops-dpkg-$$" --register=no --keep-unit \
                        --private-network sh -c 'dpkg -i /root/segops-debs/*.deb' \
                        >"$logs/dpkg.log" 2>&1 || true
                rm -rf "$dest/root/segops-debs"
                make_upgrade "$dest"
                # dpkg's verdict: every package installed and configured.
                for f in "$debs"/*.deb; do
                        p=$(dpkg-deb -f "$f" Package)
                        st=$(dpkg-query --admindir="$dest/var/lib/dpkg" -W -f '${Status}' "$p" 2>&1) || true
                        if [ "$st" != "install ok installed" ]; then
                                tail -n 20 "$logs/dpkg.log"
                                echo "FAIL install: $p: '$st' ($logs/dpkg.log)"
                                return 1
                        fi
                done
                return
        fi
        meson install -C "$build" --no-rebuild --quiet --destdir "$dest" >/dev/null
        ldconfig -r "$dest"
        # What a package's postinst does: the socket starts at boot.
        systemctl --root="$dest" enable segopsd.socket >/dev/null 2>&1
}

# The installed unit names the config and the key it reads.
unit_value() {
        for d in etc/systemd/system usr/local/lib/systemd/system usr/lib/systemd/system lib/systemd/system; do
                if [ -f "$1/$d/segopsd.service" ]; then
                        sed -n "$2" "$1/$d/segopsd.service" | head -n 1
                        return
                fi
        done
}

# A dry run (api_url = stdout: batches are lines in the journal) with the
# spool in the unit's StateDirectory, as an operator would edit the live
# config; a made-up key as the credential, root:root 0600.
setup_test() {
        dest=$1
        conf=$(unit_value "$dest" 's/^ExecStart=.*--config \([^ ]*\).*/\1/p')
        key=$(unit_value "$dest" 's/^LoadCredential=api_key:\(.*\)/\1/p')
        [ -n "$conf" ] || { echo "the installed segopsd.service names no --config" >&2; return 1; }
        mkdir -p "$dest$(dirname "$conf")"
        cat >"$dest$conf" <<'EOF'
[upstream]
api_url = stdout
compression = none

[batch]
batch_size = 50
flush_interval = 0.5

[buffer]
spool_dir = /var/lib/segopsd
EOF
        if [ -n "$key" ]; then
                mkdir -p "$dest$(dirname "$key")"
                printf 'sk_boottest0000000000000000000000000000\n' >"$dest$key"
                chmod 0600 "$dest$key"
        fi
        if [ -n "$dropin" ]; then
                mkdir -p "$dest/etc/systemd/system/segopsd.service.d"
                cp "$dropin" "$dest/etc/systemd/system/segopsd.service.d/zz-boottest.conf"
        fi
        mkdir -p "$dest/root/segops-boottest"
        cp "$src/tests/systemd/boot-checks.sh" "$dest/root/segops-boottest/"
        cat >"$dest/etc/systemd/system/segops-boottest.service" <<'EOF'
[Unit]
Description=segops boot test (scripts/systemd-boot-test.sh)
After=multi-user.target
# Power off however the checks end; RuntimeMaxSec bounds them.
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=exec
ExecStart=/bin/sh /root/segops-boottest/boot-checks.sh /root/segops-boottest/out
RuntimeMaxSec=240
EOF
}

make_root
if [ -z "$debs" ] && [ -z "$build" ] && [ -z "$from_source" ]; then
        build=$work/build
        [ -d "$build" ] || meson setup "$build" "$src" --prefix=/usr -Dtests=false -Dwerror=true >/dev/null
        ninja -C "$build" >/dev/null
fi

# The logs: beside the build's (meson test), else in build-systemd/logs.
logs=$work/logs
[ -z "$build" ] || [ "$build" = "$work/build" ] || logs=$build/meson-logs/systemd-boot
rm -rf "$logs"
mkdir -p "$logs"
mkdir -p "$work"
run=$(mktemp -d "$work/run.XXXXXX")
nspawn_pid=
cleanup() {
        if [ -n "$nspawn_pid" ]; then
                kill "$nspawn_pid" 2>/dev/null || true
                wait "$nspawn_pid" 2>/dev/null || true
        fi
        if mountpoint -q "$run/root" && ! umount "$run/root"; then
                echo "left $run mounted" >&2
                return
        fi
        rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
mkdir -p "$run/upper" "$run/work" "$run/root"
# The cached root is the lower layer: a run writes only to its upper.
mount -t overlay overlay -o "lowerdir=$root,upperdir=$run/upper,workdir=$run/work" "$run/root"
install_segops "$run/root"
setup_test "$run/root"

# Boot. Without machined (no systemd on this host) nspawn may neither
# register nor make a scope: --register=no --keep-unit. No network
# but loopback. The kernel command line asks for the test unit.
machine=segops-boot-$$
timeout -k 10 "$boot_timeout" systemd-nspawn -q -D "$run/root" -M "$machine" \
        --register=no --keep-unit --private-network --console=read-only \
        -b systemd.wants=segops-boottest.service >"$logs/console.log" 2>&1 </dev/null &
nspawn_pid=$!
rc=0
wait "$nspawn_pid" || rc=$?
nspawn_pid=
cp -r "$run/root/root/segops-boottest/out/." "$logs/" 2>/dev/null || true

if [ ! -f "$logs/results" ]; then
        tail -n 30 "$logs/console.log"
        echo "FAIL boot: systemd-nspawn exited $rc before the checks ran (console: $logs/console.log)"
        exit 1
fi
cat "$logs/results"
grep -q '^done$' "$logs/results" || echo "FAIL checks: did not finish (nspawn exit $rc; $logs/journal.txt)"
passed=$(grep -c '^PASS ' "$logs/results" || true)
failed=$(grep -c '^FAIL ' "$logs/results" || true)
grep -q '^done$' "$logs/results" || failed=$((failed + 1))
echo "systemd boot test: $passed passed, $failed failed (logs: $logs)"
[ "$failed" = 0 ]
