#!/bin/sh
# The fault matrix at full size (tests/fault/, docs/RELIABILITY.md): the
# real segopsd with the spool on, against the mock upstream: kill -9 at
# 20 random moments during a 200k-event stream, stops while the upstream
# refuses or is down, 5xx/429 storms, hanging answers, connections reset
# after the upstream stored a batch, 413s, a damaged spool, a full disk,
# a backlog beyond max_memory. Prints the table RELIABILITY.md shows and
# exits non-zero when a case failed. CI runs the short form through
# `meson test --suite fault`.
#
#   scripts/fault-matrix.sh [--short] [--seed N] [BUILDDIR]   (default: build)
set -eu
cd "$(dirname "$0")/.."

scale=full
seed=
build=build
while [ $# -gt 0 ]; do
        case $1 in
        --short) scale=short ;;
        --seed)
                [ $# -ge 2 ] || { echo "--seed needs a number" >&2; exit 2; }
                seed=$2
                shift
                ;;
        -h | --help)
                sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
                exit 0
                ;;
        -*)
                echo "unknown option $1 (try --help)" >&2
                exit 2
                ;;
        *) build=$1 ;;
        esac
        shift
done

[ -d "$build" ] || meson setup "$build" -Dwerror=true >/dev/null
ninja -C "$build" >/dev/null
case $build in
/*) ;;
*) build=$PWD/$build ;;
esac
[ -n "$seed" ] || seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')

report=$(mktemp)
trap 'rm -f "$report"' EXIT INT TERM
log=$build/meson-logs/fault-matrix.log
mkdir -p "$(dirname "$log")"
: >"$log"

export SEGOPSD="$build/daemon/segopsd"
export PYTHONPATH="$PWD/tests/lib"
export PYTHONDONTWRITEBYTECODE=1
export SEGOPS_FAULT_SCALE=$scale SEGOPS_FAULT_SEED=$seed
export SEGOPS_FAULT_REPORT=$report

start=$(date +%s)
load=$(cut -d' ' -f1-3 /proc/loadavg)
failed=0
cases="kill stop storms upstream damage disk"   # the table's order
for f in tests/fault/test_fault_*.py; do
        f=${f#tests/fault/test_fault_}
        case " $cases " in
        *" ${f%.py} "*) ;;
        *) echo "warning: tests/fault/test_fault_$f is not in this script's list" >&2 ;;
        esac
done
for t in $cases; do
        t=tests/fault/test_fault_$t.py
        printf '%s ... ' "$t" >&2
        if python3 "$t" >>"$log" 2>&1; then
                echo ok >&2
        else
                echo FAILED >&2
                failed=1
        fi
done

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
opts=$(meson introspect --buildoptions "$build" | python3 -c '
import json, sys
o = {x["name"]: x["value"] for x in json.load(sys.stdin)}
print("buildtype %s, sanitizers %s" % (o.get("buildtype"), o.get("b_sanitize")))')
echo "Fault matrix, scale $scale, seed $seed: $(date -u '+%Y-%m-%d %H:%M UTC')," \
        "$(uname -sr), $(nproc) CPUs ($cpu, load average $load at the start)," \
        "segopsd $opts; $(($(date +%s) - start)) s."
echo
python3 tests/fault/table.py "$report" || failed=1
echo
echo "Log of every case: $log"
exit $failed
