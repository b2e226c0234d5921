#!/bin/sh
# Check the Debian packages that scripts/build-debs.sh built, as an
# operator would meet them. Two parts:
#
#  1. The archives (dpkg -c, dpkg-deb -f/-e): each package holds the
#     files it should (taken from the tree: every man page, doc and
#     Python module), owned root:root, binaries 0755, everything else
#     0644, directories 0755; the -dev .so symlinks; the conffile; the
#     installed units name the Debian paths.
#  2. dpkg on THIS machine (root, and only when no segops package, no
#     /etc/segopsd and no spool are here already, so nobody's setup is
#     touched): install, check the installed tree (owners, modes, the
#     empty key 0600, group segops, the units enabled, pkg-config and a
#     program built against each library, man, the Python module),
#     reinstall, upgrade to a higher version (the same package repacked)
#     with an edited conffile, a key and a spool file: all kept, no
#     prompt; remove (config, key and spool stay); purge (all gone). The
#     machine is left as found: every segops package purged, group
#     segops deleted if this script created it.
#
# systemd is not PID 1 in a container: the maintainer scripts then
# enable the units (symlinks) but start nothing; that is checked too.
#
#   scripts/test-debs.sh [DEBDIR]      (default: build-debs/)
#
# Ends with the line "N passed, N failed" and exits non-zero on a failure.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
debs=$(cd "${1:-$top/build-debs}" && pwd)
ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
pkgs="segopsd libsegops-shim0 libsegops-shim-dev libsegops-sign0 libsegops-sign-dev python3-segops"

passed=0
failed=0
ok() { passed=$((passed + 1)); }
bad() {
        failed=$((failed + 1))
        echo "FAIL: $*"
}
check() {       # check DESCRIPTION COMMAND...: COMMAND must succeed
        what=$1
        shift
        if "$@" >/dev/null 2>&1; then ok; else bad "$what"; fi
}
summary() {
        echo "test-debs: $1"
        echo "$passed passed, $failed failed"
        [ "$failed" = 0 ]
}

deb_of() {
        f=""
        for d in "$debs/$1"_*.deb; do
                [ -e "$d" ] && f=$d && break
        done
        [ -n "$f" ] || { echo "test-debs: no $1_*.deb in $debs (run scripts/build-debs.sh)" >&2; exit 1; }
        printf '%s\n' "$f"
}
for p in $pkgs; do deb_of "$p" >/dev/null; done

work=$(mktemp -d)
cleanup_dpkg=
# shellcheck disable=SC2154
trap 'rc=$?; [ -z "$cleanup_dpkg" ] || leave_as_found; rm -rf "$work"; exit $rc' EXIT

# ---- 1. the archives ------------------------------------------------------
# "TYPE MODE OWNER PATH [-> TARGET]" per entry, paths without "./",
# into $work/PKG.list.
for p in $pkgs; do
        dpkg-deb -c "$(deb_of "$p")" | awk '{
                m = $1; o = $2; $1 = $2 = $3 = $4 = $5 = ""
                sub(/^ +/, ""); sub(/^\.\//, "")
                print substr(m, 1, 1), m, o, $0 }' >"$work/$p.list"
done
has_file() {    # has_file PKG PATH MODE
        if grep -qxF -- "- $3 root/root $2" "$work/$1.list"; then ok
        else bad "$1: $2 missing or not root/root $3"; fi
}
has_link() {    # has_link PKG PATH TARGET
        if grep -qxF -- "l lrwxrwxrwx root/root $2 -> $3" "$work/$1.list"; then ok
        else bad "$1: symlink $2 -> $3 missing"; fi
}
has_man() {     # has_man PKG SECTION NAME: a page or a link to one, compressed
        if grep -q -- "^[-l] [^ ]* root/root usr/share/man/man$2/$3\.$2\.gz\( ->.*\)\?\$" "$work/$1.list"; then ok
        else bad "$1: man page $3($2) missing"; fi
}

for p in $pkgs; do
        # Owners, modes and no stray paths.
        awk -v p="$p" '
                $3 != "root/root" { print p ": not root/root: " $0 }
                $1 == "d" && $2 != "drwxr-xr-x" { print p ": directory mode: " $0 }
                $1 == "-" && $4 ~ /^usr\/s?bin\// && $2 != "-rwxr-xr-x" { print p ": binary mode: " $0 }
                $1 == "-" && $4 !~ /^usr\/s?bin\// && $2 != "-rw-r--r--" { print p ": file mode: " $0 }
                $4 ~ /(^|\/)(usr\/local|obj-[^\/]*|build[^\/]*)(\/|$)/ { print p ": stray path: " $0 }
        ' "$work/$p.list" >"$work/$p.bad"
        if [ -s "$work/$p.bad" ]; then bad "$(cat "$work/$p.bad")"; else ok; fi
        has_file "$p" "usr/share/doc/$p/copyright" -rw-r--r--
done

# segopsd
has_file segopsd usr/sbin/segopsd -rwxr-xr-x
has_file segopsd usr/bin/segopsctl -rwxr-xr-x
has_file segopsd lib/systemd/system/segopsd.service -rw-r--r--
has_file segopsd lib/systemd/system/segopsd.socket -rw-r--r--
has_file segopsd usr/lib/sysusers.d/segops.conf -rw-r--r--
has_file segopsd etc/segopsd/segopsd.conf -rw-r--r--
check "segopsd: no api_key in the package (postinst creates it)" \
        sh -c "! grep -q 'etc/segopsd/api_key' '$work/segopsd.list'"
for f in "$top/README.md" "$top"/docs/OPERATIONS.md "$top"/docs/SECURITY.md \
         "$top"/docs/RELIABILITY.md "$top"/docs/SPOOL.md "$top"/docs/ARCHITECTURE.md; do
        n=$(basename "$f")
        check "segopsd: doc $n missing" grep -q -e " usr/share/doc/segopsd/$n\$" \
                -e " usr/share/doc/segopsd/$n.gz\$" "$work/segopsd.list"
done
# The licence is debian/copyright's (Debian policy 12.5): LICENSE itself
# is not shipped again (lintian: extra-license-file).
check "segopsd: copyright" grep -q ' usr/share/doc/segopsd/copyright$' "$work/segopsd.list"
check "segopsd: no second licence file" \
        sh -c "! grep -q 'usr/share/doc/segopsd/LICENSE' '$work/segopsd.list'"
# Every man page of the tree lands in its package: sections 1, 5 and 8
# in segopsd, the sign library's pages in libsegops-sign-dev, the other
# section 3 pages in libsegops-shim-dev.
for f in "$top"/man/*.[0-9] "$top"/man/*.[0-9].in; do
        [ -e "$f" ] || continue
        n=$(basename "$f" .in)
        sec=${n##*.}
        name=${n%.*}
        case $sec:$name in
        3:segops_sign_*) has_man libsegops-sign-dev 3 "$name" ;;
        3:*) has_man libsegops-shim-dev 3 "$name" ;;
        *) has_man segopsd "$sec" "$name" ;;
        esac
done
mkdir "$work/segopsd.ctl" "$work/segopsd.tree"
dpkg-deb -e "$(deb_of segopsd)" "$work/segopsd.ctl"
dpkg-deb -x "$(deb_of segopsd)" "$work/segopsd.tree"
check "segopsd: conffiles is exactly /etc/segopsd/segopsd.conf" \
        test "$(cat "$work/segopsd.ctl/conffiles")" = /etc/segopsd/segopsd.conf
check "segopsd.service: ExecStart names /usr/sbin/segopsd and /etc/segopsd/segopsd.conf" \
        grep -qx 'ExecStart=/usr/sbin/segopsd --config /etc/segopsd/segopsd.conf' \
        "$work/segopsd.tree/lib/systemd/system/segopsd.service"
check "segopsd.service: the key credential is /etc/segopsd/api_key" \
        grep -qx 'LoadCredential=api_key:/etc/segopsd/api_key' \
        "$work/segopsd.tree/lib/systemd/system/segopsd.service"
check "segopsd: postinst runs systemd-sysusers segops.conf" \
        grep -q 'systemd-sysusers.* segops.conf' "$work/segopsd.ctl/postinst"
check "segopsd: postinst starts the socket, not restarts it" \
        sh -c "grep -q \"deb-systemd-invoke start 'segopsd.socket'\" '$work/segopsd.ctl/postinst' &&
               ! grep -q 'restart.*segopsd.socket' '$work/segopsd.ctl/postinst'"
# The restart of an upgrade is the service's alone: a restarted socket
# would be closed, and what is sent meanwhile lost (the boot test sees
# it under systemd: scripts/systemd-boot-test.sh --debs).
check "segopsd: postinst restarts the service, never the socket" \
        sh -c "grep '_dh_action' '$work/segopsd.ctl/postinst' | grep -q segopsd.service &&
               ! grep '_dh_action' '$work/segopsd.ctl/postinst' | grep -q segopsd.socket"
check "segopsd: no preinst stopping the service before an upgrade" \
        test ! -e "$work/segopsd.ctl/preinst"
# segopsctl has the signing code linked in: segopsd and libsegops-shim*
# are a complete install (the README's apt command).
check "segopsd: does not depend on libsegops-sign0" \
        sh -c "! dpkg-deb -f '$(deb_of segopsd)' Depends | grep -q libsegops-sign"

# The libraries
for lib in shim sign; do
        so=libsegops-$lib.so
        has_file "libsegops-${lib}0" "usr/lib/$ma/$so.0.1.0" -rw-r--r--
        has_link "libsegops-${lib}0" "usr/lib/$ma/$so.0" "$so.0.1.0"
        has_link "libsegops-$lib-dev" "usr/lib/$ma/$so" "$so.0"
        has_file "libsegops-$lib-dev" "usr/include/segops/$lib.h" -rw-r--r--
        has_file "libsegops-$lib-dev" "usr/lib/$ma/pkgconfig/segops-$lib.pc" -rw-r--r--
        check "libsegops-${lib}0: Multi-Arch: same" \
                test "$(dpkg-deb -f "$(deb_of "libsegops-${lib}0")" Multi-Arch)" = same
        check "libsegops-$lib-dev: depends on libsegops-${lib}0 (= version)" \
                sh -c "dpkg-deb -f '$(deb_of "libsegops-$lib-dev")' Depends |
                       grep -q 'libsegops-${lib}0 (= '"
        mkdir "$work/$lib.ctl"
        dpkg-deb -e "$(deb_of "libsegops-${lib}0")" "$work/$lib.ctl"
        check "libsegops-${lib}0: shlibs and symbols files" \
                test -s "$work/$lib.ctl/shlibs" -a -s "$work/$lib.ctl/symbols"
done

# python3-segops
for f in "$top"/python/segops/*.py; do
        has_file python3-segops "usr/lib/python3/dist-packages/segops/$(basename "$f")" -rw-r--r--
done
check "python3-segops: Architecture all" \
        test "$(dpkg-deb -f "$(deb_of python3-segops)" Architecture)" = all

# ---- 2. dpkg on this machine ------------------------------------------------
skip=""
if [ "$(id -u)" != 0 ]; then
        skip="not root"
elif [ ! -d /var/lib/dpkg ]; then
        skip="no dpkg database"
else
        for p in $pkgs; do
                st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
                case $st in
                "" | un*) ;;
                *) skip="$p is already on this machine ($st)" ;;
                esac
        done
        for d in /etc/segopsd /var/lib/segopsd /var/lib/private/segopsd; do
                if [ -e "$d" ] || [ -L "$d" ]; then skip="$d exists (someone's setup)"; fi
        done
fi
if [ -n "$skip" ]; then
        echo "test-debs: the dpkg part is skipped: $skip"
        summary "archives checked"
        exit $?
fi

had_group=no
getent group segops >/dev/null && had_group=yes
wants=/etc/systemd/system

# dpkg refuses to run while another dpkg or apt holds its lock (other
# people on this machine): wait for it, up to 5 minutes.
dpkg_run() {
        i=0
        while :; do
                if dpkg "$@" </dev/null >"$work/dpkg.out" 2>&1; then
                        return 0
                fi
                if grep -q -e 'lock was locked' -e 'locked by another' "$work/dpkg.out" &&
                        [ $i -lt 150 ]; then
                        i=$((i + 1))
                        sleep 2
                        continue
                fi
                cat "$work/dpkg.out"
                return 1
        done
}
leave_as_found() {
        cleanup_dpkg=
        for p in $pkgs; do
                case $(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true) in
                "" | un*) ;;
                *) dpkg_run --purge "$p" || true ;;
                esac
        done
        rm -rf /etc/segopsd /var/lib/segopsd /var/lib/private/segopsd
        if [ "$had_group" = no ] && getent group segops >/dev/null; then
                groupdel segops || true
        fi
}
installed_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null; }
status_of() { dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null | tr -d ' ' || true; }
is_gone() {
        case $(status_of "$1") in
        "" | un*) return 0 ;;
        esac
        return 1
}
stat_is() {     # stat_is PATH "OWNER:GROUP MODE"
        if [ "$(stat -c '%U:%G %a' "$1" 2>/dev/null)" = "$2" ]; then ok
        else bad "$1 is '$(stat -c '%U:%G %a' "$1" 2>&1)', not '$2'"; fi
}

cleanup_dpkg=1
all_debs=""
for p in $pkgs; do all_debs="$all_debs $(deb_of "$p")"; done
# shellcheck disable=SC2086
if dpkg_run -i $all_debs; then ok; else bad "dpkg -i of the six packages"; fi
cp "$work/dpkg.out" "$work/install.out"
for p in $pkgs; do
        check "$p installed" test "$(status_of "$p")" = ii
done
check "postinst told where the key goes" grep -q 'no API key yet: write it to /etc/segopsd/api_key' "$work/install.out"
stat_is /usr/sbin/segopsd "root:root 755"
stat_is /usr/bin/segopsctl "root:root 755"
stat_is /etc/segopsd "root:root 755"
stat_is /etc/segopsd/segopsd.conf "root:root 644"
stat_is /etc/segopsd/api_key "root:root 600"
check "/etc/segopsd/api_key is empty (no key yet)" test ! -s /etc/segopsd/api_key
stat_is "/usr/lib/$ma/libsegops-shim.so.0.1.0" "root:root 644"
check "group segops exists (systemd-sysusers)" getent group segops
check "segopsd.socket enabled" test -L "$wants/sockets.target.wants/segopsd.socket"
check "segopsd.service enabled" test -L "$wants/multi-user.target.wants/segopsd.service"
if [ -d /run/systemd/system ]; then
        check "segopsd.socket listening" systemctl is-active --quiet segopsd.socket
else
        echo "test-debs: systemd is not running here: postinst enabled the units and started nothing"
fi
check "segopsd --version runs" /usr/sbin/segopsd --version
check "segopsctl --help runs" /usr/bin/segopsctl --help
check "Debian's python3 imports segops from dist-packages" \
        sh -c "cd / && /usr/bin/python3 -c 'import segops, sys; sys.exit(0 if segops.__file__.startswith(\"/usr/lib/python3/dist-packages/\") else 1)'"
if command -v systemd-analyze >/dev/null 2>&1; then
        if systemd-analyze verify /lib/systemd/system/segopsd.socket /lib/systemd/system/segopsd.service \
                >"$work/verify.out" 2>&1; then ok
        else bad "systemd-analyze verify of the installed units: $(cat "$work/verify.out")"; fi
fi
if command -v man >/dev/null 2>&1; then
        for f in "$top"/man/*.[0-9]; do
                n=$(basename "$f")
                check "man ${n##*.} ${n%.*} finds the installed page" man -w "${n##*.}" "${n%.*}"
        done
fi
# A program built against each installed library, through pkg-config.
if command -v cc >/dev/null 2>&1 && command -v pkg-config >/dev/null 2>&1; then
        cat >"$work/shim-app.c" <<'EOF'
#include <segops/shim.h>
#include <stddef.h>
int main(void)
{
        segops_shim *s = NULL;
        if (segops_shim_open(&s, "/nonexistent/events.sock") != 0)
                return 1;
        segops_shim_close(s);
        return 0;
}
EOF
        cat >"$work/sign-app.c" <<'EOF'
#include <segops/sign.h>
#include <string.h>
int main(void)
{
        char hex[65];
        if (segops_sign_user_id("secret", 6, "u1", hex) != 0)
                return 1;
        return strlen(hex) == 64 ? 0 : 1;
}
EOF
        for lib in shim sign; do
                # shellcheck disable=SC2046
                if cc -o "$work/$lib-app" "$work/$lib-app.c" $(pkg-config --cflags --libs "segops-$lib") \
                        >"$work/cc.out" 2>&1 && "$work/$lib-app"; then ok
                else bad "a program built with pkg-config segops-$lib: $(cat "$work/cc.out")"; fi
        done
fi

# Reinstall the same version: nothing asked, the conffile untouched.
if dpkg_run -i "$(deb_of segopsd)"; then ok; else bad "dpkg -i of the same version again"; fi

# Upgrade: the operator has edited the config, written the key and has
# events in the spool; the new version (this package repacked with a
# higher version) ships the same conffile: dpkg keeps the edit without a
# prompt (stdin is /dev/null: a prompt would fail), the key and the spool
# stay.
echo "; edited by test-debs" >>/etc/segopsd/segopsd.conf
printf 'sk_test_debs\n' >/etc/segopsd/api_key
mkdir -p /var/lib/segopsd
echo spooled >/var/lib/segopsd/test-debs.seg
old=$(installed_version segopsd)
new="$old+test1"
mkdir "$work/repack"
dpkg-deb -R "$(deb_of segopsd)" "$work/repack/segopsd"
sed -i "s/^Version: .*/Version: $new/" "$work/repack/segopsd/DEBIAN/control"
dpkg-deb -b --root-owner-group "$work/repack/segopsd" "$work/repack/segopsd_new.deb" >/dev/null
if dpkg_run -i "$work/repack/segopsd_new.deb"; then ok; else bad "upgrade $old -> $new"; fi
check "upgraded to $new" test "$(installed_version segopsd)" = "$new"
check "upgrade: the edited conffile is kept" grep -qx '; edited by test-debs' /etc/segopsd/segopsd.conf
check "upgrade: no .dpkg-dist/.dpkg-new/.dpkg-old left" \
        sh -c '! ls /etc/segopsd/*.dpkg-* >/dev/null 2>&1'
check "upgrade: the key is kept" test "$(cat /etc/segopsd/api_key)" = sk_test_debs
stat_is /etc/segopsd/api_key "root:root 600"
check "upgrade: the spool is kept" test -f /var/lib/segopsd/test-debs.seg

# Remove: the program goes, the config, the key and the spool stay.
if dpkg_run --remove segopsd; then ok; else bad "dpkg -r segopsd"; fi
check "removed: status rc" test "$(status_of segopsd)" = rc
check "removed: /usr/sbin/segopsd gone" test ! -e /usr/sbin/segopsd
check "removed: the edited config stays" grep -qx '; edited by test-debs' /etc/segopsd/segopsd.conf
check "removed: the key stays" test "$(cat /etc/segopsd/api_key 2>/dev/null)" = sk_test_debs
check "removed: the spool stays" test -f /var/lib/segopsd/test-debs.seg

# Purge: all of it goes.
if dpkg_run --purge segopsd; then ok; else bad "dpkg -P segopsd"; fi
check "purged: not installed" is_gone segopsd
check "purged: /etc/segopsd gone" test ! -e /etc/segopsd
check "purged: the spool gone" test ! -e /var/lib/segopsd
check "purged: the unit links gone" \
        test ! -e "$wants/sockets.target.wants/segopsd.socket" -a ! -e "$wants/multi-user.target.wants/segopsd.service"

# The rest, then the machine as found.
# shellcheck disable=SC2086
if dpkg_run --purge python3-segops libsegops-shim-dev libsegops-sign-dev libsegops-shim0 libsegops-sign0; then ok
else bad "dpkg -P of the libraries and python3-segops"; fi
check "purged: the Python package directory gone" test ! -e /usr/lib/python3/dist-packages/segops
check "purged: the libraries gone" test ! -e "/usr/lib/$ma/libsegops-shim.so.0"
leave_as_found
check "group segops as found ($had_group)" \
        sh -c "getent group segops >/dev/null && h=yes || h=no; test \$h = $had_group"
summary "archives and dpkg checked"
