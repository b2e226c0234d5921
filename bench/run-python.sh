#!/usr/bin/env bash
# run-python.sh - the segops Python client's benchmark (issue 11).
#
# Starts the fake upstream (bench/sink) and segopsd with the throughput
# benchmark's settings in a temporary directory, then runs
# bench/python-client.py against them: track()'s cost (median, p99) next
# to CPython's floor, and events/s end to end from one Python process.
# It builds nothing: it uses a meson build directory (default ./build, or
# $BUILD, or -b DIR). Missing a target is reported, not fatal. Exit 2 on
# a setup error.
#
# usage: bench/run-python.sh [-b BUILD_DIR] [-n CALLS] [-e EVENTS]

set -u

BUILD=${BUILD:-build}
ARGS=()

die() { echo "run-python: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
        case $1 in
        -b) BUILD=$2; shift 2 ;;
        -n|-e) ARGS+=("$1" "$2"); shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) die "unknown argument $1" ;;
        esac
done

SEGOPSD=$BUILD/daemon/segopsd
SINK=$BUILD/bench/sink
for f in "$SEGOPSD" "$SINK"; do
        [ -x "$f" ] || die "$f not found: run 'meson setup $BUILD && ninja -C $BUILD' first"
done

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
client_bench_tmp py-bench

start_sink "$SINK"
write_client_bench_conf
start_segopsd "$SEGOPSD"
wait_for "$DAEMON_PID" 100 segopsd_answers ||
        { cat "$TMP/segopsd.err" >&2; die "segopsd did not start"; }
describe_qlen
SEGOPS_SOCKET=$TMP/events.sock SEGOPS_CONTROL_SOCKET=$TMP/segopsd.sock \
SINK_PORT=$PORT python3 "$(dirname "$0")/python-client.py" "${ARGS[@]}"
