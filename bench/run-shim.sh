#!/usr/bin/env bash
# run-shim.sh - what segops_track() costs an application.
#
# Runs bench/shim-bench twice: with segopsd running (forwarding to the
# fake upstream bench/sink) and with no daemon at all. Each run prints
# the median and p99 cost of one call for 1 and 4 threads against the
# targets (median <= 1 us, p99 <= 20 us) and the events lost in a
# 100,000-event burst from 4 threads (target: 0 with segopsd up). It
# builds nothing: it uses a meson build directory (default ./build, or
# $BUILD, or -b DIR). Missing a target is reported, not fatal: timings
# depend on the machine. Exit 2 on a setup error.
#
# usage: bench/run-shim.sh [-b BUILD_DIR] [-n CALLS_PER_THREAD]

set -u

BUILD=${BUILD:-build}
CALLS=20000

die() { echo "run-shim: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
        case $1 in
        -b) BUILD=$2; shift 2 ;;
        -n) CALLS=$2; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) die "unknown argument $1" ;;
        esac
done

SEGOPSD=$BUILD/daemon/segopsd
SINK=$BUILD/bench/sink
BENCH=$BUILD/bench/shim-bench
for f in "$SEGOPSD" "$SINK" "$BENCH"; do
        [ -x "$f" ] || die "$f not found: run 'meson setup $BUILD && ninja -C $BUILD' first"
done
BENCH_LIBDIR=$(cd "$BUILD/libshim" && pwd) || die "no $BUILD/libshim"

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
client_bench_tmp shim-bench

run_bench() {
        SEGOPS_SOCKET=$TMP/events.sock SEGOPS_CONTROL_SOCKET=$TMP/segopsd.sock \
        SHIM_BENCH_LABEL=$1 LD_LIBRARY_PATH=$BENCH_LIBDIR \
                "$BENCH" "$CALLS" 4 100000
}

# --- daemon down: nothing listens at the path ---------------------------------
run_bench "segopsd down:" || die "shim-bench failed"

# --- daemon up ------------------------------------------------------------------
start_sink "$SINK"
write_client_bench_conf
"$SEGOPSD" --config "$TMP/segopsd.conf" >"$TMP/segopsd.out" 2>"$TMP/segopsd.err" &
DAEMON_PID=$!
wait_for "$DAEMON_PID" 100 test -S "$TMP/segopsd.sock" ||
        { cat "$TMP/segopsd.err" >&2; die "segopsd did not start"; }
run_bench "segopsd up:" || die "shim-bench failed"
exit 0
