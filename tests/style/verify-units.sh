#!/bin/sh
# The systemd units are valid: systemd-analyze verify on the built
# segopsd.service and on segopsd.socket, as systemd would load them. A
# build tree has no installed segopsd for ExecStart to name, so "Command
# ... is not executable" is expected and set aside; any other complaint
# fails the test and is printed. With a fourth argument, the sysusers.d
# file: systemd-sysusers must create group segops from it in an empty
# root.
set -eu
analyze=$1
service=$2
socket=$3
sysusers=${4:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$service" "$socket" "$tmp/"
out=$("$analyze" verify --man=no "$tmp/segopsd.socket" "$tmp/segopsd.service" 2>&1) || true
bad=$(printf '%s\n' "$out" | grep -v -e '^$' -e 'Command .* is not executable' || true)
if [ -n "$bad" ]; then
        printf '%s\n' "$bad"
        exit 1
fi
echo "segopsd.service and segopsd.socket verified"
if [ -n "$sysusers" ]; then
        mkdir -p "$tmp/root/etc"
        "$(dirname "$analyze")/systemd-sysusers" --root="$tmp/root" "$sysusers" >/dev/null
        if ! grep -q '^segops:' "$tmp/root/etc/group"; then
                echo "systemd-sysusers did not create group segops from $sysusers"
                exit 1
        fi
        echo "group segops created from $sysusers"
fi
