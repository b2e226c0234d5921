#!/usr/bin/env bash
# run-throughput.sh - end-to-end throughput benchmark of segopsd.
#
# Starts the fake upstream (bench/sink) and segopsd with a config in a
# temporary directory, sends N events of ~200 bytes into the events socket
# with bench/sender, and waits until the sink has seen every one of them.
# It reports events/s end to end (sender start to last arrival at the
# sink), segopsd's CPU seconds per million events, its peak and idle RSS,
# and PASS/FAIL against the targets. It builds nothing: it uses a meson
# build directory (default ./build, or $BUILD, or -b DIR).
#
# Exit status: 0 when every event arrived exactly once, 1 when not, 2 on a
# setup error. Missing a performance target is reported but does not fail
# the run: timings depend on the machine.
#
# usage: bench/run-throughput.sh [-n EVENTS] [--gzip] [-t THREADS]
#                                [--pack N] [-b BUILD_DIR] [--timeout SECONDS]
#                                [--no-raw] [--qlen N] [--spool]
#                                [--spool-sync MODE] [--perf FILE]
#   --pack N  N events per datagram, as libshim sends them (default 1:
#             one event per datagram, the issue's measurement)
#   --no-raw  skip the ceiling run (the same sender into bench/rawsink, a
#             receiver that only reads the socket)
#   --qlen N  set net.unix.max_dgram_qlen to N for the run and put it back
#             after (root only; systemd hosts have 512, the kernel's
#             default is 10; without --qlen the machine's value is used)
#   --spool   turn the write-ahead spool on: [buffer] spool_dir in the
#             temporary directory (on the filesystem of $TMPDIR, or /tmp),
#             spool_sync left at its default (interval)
#   --spool-sync MODE
#             the spool with spool_sync = MODE (interval, always, never)
#   --perf FILE  profile segopsd with perf record (cpu-clock, call graphs)
#             from the sender's start until the last event arrived; read
#             it with perf report -i FILE (needs perf; the figures then
#             carry perf's own cost)

set -u

N=1000000
COMPRESSION=none
THREADS=1
PACK=1
RAW=1
BUILD=${BUILD:-build}
TIMEOUT=120
QLEN=
SPOOL=0
SPOOL_SYNC=
PERF_OUT=

# Targets (the issue that asked for this benchmark).
TARGET_EPS=350000       # events/s end to end, compression = none
TARGET_CPU_PER_M=2.5    # segopsd CPU seconds per million events
TARGET_PEAK_MIB=48      # VmHWM
TARGET_IDLE_MIB=8       # VmRSS after start, before any event

usage() {
        sed -n '/^# usage:/,/^$/p' "$0" | sed 's/^# \{0,1\}//'
}

die() {
        echo "run-throughput: $*" >&2
        exit 2
}

# A positive decimal of at most 9 digits (so shell arithmetic is safe).
is_count() {
        [[ $1 =~ ^[0-9]{1,9}$ ]] && [ "$1" -gt 0 ]
}

while [ $# -gt 0 ]; do
        case $1 in
        -n) is_count "${2:-}" || die "bad -n"; N=$2; shift 2 ;;
        -t) is_count "${2:-}" || die "bad -t"; THREADS=$2; shift 2 ;;
        --pack) is_count "${2:-}" || die "bad --pack"; PACK=$2; shift 2 ;;
        -b) [ $# -ge 2 ] || die "bad -b"; BUILD=$2; shift 2 ;;
        --timeout) is_count "${2:-}" || die "bad --timeout"
            TIMEOUT=$2; shift 2 ;;
        --gzip) COMPRESSION=gzip; shift ;;
        --no-raw) RAW=0; shift ;;
        --qlen) is_count "${2:-}" || die "bad --qlen"; QLEN=$2; shift 2 ;;
        --spool) SPOOL=1; shift ;;
        --perf) [ -n "${2:-}" ] || die "bad --perf"; PERF_OUT=$2; shift 2 ;;
        --spool-sync)
            [[ ${2:-} =~ ^(interval|always|never)$ ]] || die "bad --spool-sync"
            SPOOL=1; SPOOL_SYNC=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
        esac
done

SEGOPSD=$BUILD/daemon/segopsd
SINK=$BUILD/bench/sink
SENDER=$BUILD/bench/sender
RAWSINK=$BUILD/bench/rawsink
FLOOR=$BUILD/bench/rss-floor
for f in "$SEGOPSD" "$SINK" "$SENDER" "$RAWSINK" "$FLOOR"; do
        [ -x "$f" ] || die "$f not found: run 'meson setup $BUILD && ninja -C $BUILD' first (or set BUILD)"
done
command -v socat >/dev/null || die "socat is needed"
[ -z "$PERF_OUT" ] || command -v perf >/dev/null || die "--perf needs perf"
CLK_TCK=$(getconf CLK_TCK) || die "getconf CLK_TCK failed"

TMP=$(mktemp -d -t segops-bench.XXXXXX) || die "mktemp failed"
SINK_PID=
DAEMON_PID=
RAW_PID=
FLOOR_PID=
PERF_PID=

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

# shellcheck disable=SC2317 # called by the trap
cleanup() {
        stop_perf
        stop_pid "$RAW_PID" 5
        stop_pid "$FLOOR_PID" 5
        stop_pid "$DAEMON_PID" 5
        stop_pid "$SINK_PID" 5
        restore_qlen
        rm -rf -- "$TMP"
}
trap cleanup EXIT
trap 'exit 2' INT TERM HUP
[ -z "$QLEN" ] || set_qlen "$QLEN"

# perf record ends on SIGINT, writing its file.
stop_perf() {
        [ -n "$PERF_PID" ] || return 0
        kill -INT "$PERF_PID" 2>/dev/null
        wait "$PERF_PID" 2>/dev/null
        PERF_PID=
}

# CPU seconds (a number or an awk expression) per million events: of $2
# events, or of the run's N.
per_million() { calc '%.3f' "($1) * 1000000 / ${2:-$N}"; }

# The CPU seconds between two cpu_ticks readings, as an awk expression.
ticks_s() { echo "($2 - $1) / $CLK_TCK"; }

# --- the ceiling: the same sender into a receiver that only reads ------------
RAW_EPS=
RAW_CPU_PER_M=
if [ "$RAW" = 1 ]; then
        "$RAWSINK" "$TMP/raw.sock" "$N" >"$TMP/raw.out" 2>"$TMP/raw.err" &
        RAW_PID=$!
        wait_for "$RAW_PID" 50 test -S "$TMP/raw.sock" || die "rawsink did not start"
        timeout "$TIMEOUT" "$SENDER" -n "$N" -s "$TMP/raw.sock" -t "$THREADS" -p "$PACK" \
                >/dev/null || die "the sender failed on the ceiling run"
        wait "$RAW_PID" || die "rawsink: $(cat "$TMP/raw.err")"
        RAW_PID=
        read -r _ raw_events _ _ _ raw_elapsed _ raw_cpu <"$TMP/raw.out"
        RAW_EPS=$(calc '%.0f' "$raw_elapsed > 0 ? $raw_events / $raw_elapsed : 0")
        RAW_CPU_PER_M=$(per_million "$raw_cpu" "$raw_events")
fi

# --- the sink ---------------------------------------------------------------
start_sink "$SINK" --expect "$N"

# --- segopsd ------------------------------------------------------------------
write_bench_key
cat >"$TMP/segopsd.conf" <<EOF
[upstream]
api_url = http://127.0.0.1:$PORT
api_key_file = $TMP/api_key
compression = $COMPRESSION
max_in_flight = 4
timeout = 10
stop_timeout = 10

[batch]
batch_size = 500
flush_interval = 0.2

[listen]
events_socket = $TMP/events.sock
control_socket = $TMP/segopsd.sock
EOF
SPOOL_DESC=off
if [ "$SPOOL" = 1 ]; then
        mkdir -m 700 "$TMP/spool" || die "cannot make the spool directory"
        printf '\n[buffer]\nspool_dir = %s\n' "$TMP/spool" >>"$TMP/segopsd.conf"
        [ -z "$SPOOL_SYNC" ] ||
                printf 'spool_sync = %s\n' "$SPOOL_SYNC" >>"$TMP/segopsd.conf"
        SPOOL_DESC="on, spool_sync = ${SPOOL_SYNC:-interval (the default)}"
fi

start_segopsd "$SEGOPSD"
if ! wait_for "$DAEMON_PID" 100 segopsd_answers; then
        tail -n 20 "$TMP/segopsd.err" >&2
        die "segopsd did not answer ping within 10 s"
fi
sleep 0.5 # let start-up allocations settle before calling it idle
IDLE_KB=$(proc_field "$DAEMON_PID" VmRSS)
# The part of it that is segopsd's own (heap, stacks), not pages of
# shared libraries that other processes map too.
IDLE_ANON_KB=$(proc_field "$DAEMON_PID" RssAnon)

# The floor: the same libraries and their start-up, nothing of segopsd's.
"$FLOOR" >"$TMP/floor.out" 2>&1 &
FLOOR_PID=$!
wait_for "$FLOOR_PID" 50 test -s "$TMP/floor.out" ||
        die "rss-floor did not start: $(cat "$TMP/floor.out")"
sleep 0.5 # as for segopsd
FLOOR_KB=$(proc_field "$FLOOR_PID" VmRSS)
stop_pid "$FLOOR_PID" 5
FLOOR_PID=

echo "segopsd pid $DAEMON_PID, sink on 127.0.0.1:$PORT, compression=$COMPRESSION, spool $SPOOL_DESC, $N events, $THREADS sender thread(s), $PACK per datagram"

# --- the run ------------------------------------------------------------------
if [ -n "$PERF_OUT" ]; then
        perf record -q -e cpu-clock -g -p "$DAEMON_PID" -o "$PERF_OUT" >"$TMP/perf.err" 2>&1 &
        PERF_PID=$!
        sleep 0.5 # perf attaches
fi
CPU0=$(cpu_ticks "$DAEMON_PID")
UCPU0=$(cpu_ticks "$DAEMON_PID" user)
SINK_CPU0=$(cpu_ticks "$SINK_PID")
timeout "$TIMEOUT" "$SENDER" -n "$N" -s "$TMP/events.sock" -t "$THREADS" -p "$PACK" >"$TMP/sender.out"
SENDER_RC=$?
SENDER_LINE=$(cat "$TMP/sender.out")
echo "sender: $SENDER_LINE"
START_NS=$(sed -n 's/.*start_ns=\([0-9]*\).*/\1/p' "$TMP/sender.out")
END_NS=$(sed -n 's/.*end_ns=\([0-9]*\).*/\1/p' "$TMP/sender.out")
SENT=$(sed -n 's/^sent \([0-9]*\) events.*/\1/p' "$TMP/sender.out")
SENDER_CPU=$(sed -n 's/.*cpu_s=\([0-9.]*\).*/\1/p' "$TMP/sender.out")
START_NS=${START_NS:-0}
SENT=${SENT:-0}

# Wait for the sink to have them all; the deadline bounds a lost event.
COUNT_JSON='{}'
deadline=$((SECONDS + TIMEOUT))
while [ "$SECONDS" -lt "$deadline" ]; do
        if sink_count && [ "$(json_num "$COUNT_JSON" unique)" -ge "$N" ]; then
                break
        fi
        kill -0 "$DAEMON_PID" 2>/dev/null || break
        sleep 0.05
done
CPU1=$(cpu_ticks "$DAEMON_PID")
UCPU1=$(cpu_ticks "$DAEMON_PID" user)
SINK_CPU1=$(cpu_ticks "$SINK_PID")
stop_perf
PEAK_KB=$(proc_field "$DAEMON_PID" VmHWM)
STATS=$(control '{"op":"stats"}')
# The machine is shared: what else ran during the run goes with its figures.
read -r LOAD1 LOAD5 LOAD15 _ </proc/loadavg

# Stop segopsd cleanly, then take the sink's final count: a batch resent
# during the stop would show up as a duplicate only now.
stop_pid "$DAEMON_PID" 20
wait "$DAEMON_PID" 2>/dev/null
DAEMON_PID=
sink_count || true
stop_pid "$SINK_PID" 5
SINK_PID=
[ -s "$TMP/sink.out" ] && COUNT_JSON=$(tail -n 1 "$TMP/sink.out")

UNIQUE=$(json_num "$COUNT_JSON" unique)
SPOOLED=$(json_num "$STATS" spooled)
DUPS=$(json_num "$COUNT_JSON" duplicates)
FOREIGN=$(json_num "$COUNT_JSON" foreign)
REQUESTS=$(json_num "$COUNT_JSON" requests)
LAST_NS=$(json_num "$COUNT_JSON" last_ns)

ELAPSED=0
if [ "$LAST_NS" -gt "$START_NS" ] && [ "$START_NS" -gt 0 ]; then
        ELAPSED=$(calc '%.3f' "($LAST_NS - $START_NS) / 1e9")
fi
EPS=$(calc '%.0f' "$ELAPSED > 0 ? $UNIQUE / $ELAPSED : 0")
# From the sender's last event to the sink's: mostly the wait for the
# last, partial batch's flush_interval tick.
TAIL=$(calc '%.3f' "${END_NS:-0} > 0 && $LAST_NS > ${END_NS:-0} ? ($LAST_NS - ${END_NS:-0}) / 1e9 : 0")
CPU_S=$(calc '%.3f' "$(ticks_s "$CPU0" "$CPU1")")
CPU_PER_M=$(per_million "$CPU_S")
USER_PER_M=$(per_million "$(ticks_s "$UCPU0" "$UCPU1")")
SINK_PER_M=$(per_million "$(ticks_s "$SINK_CPU0" "$SINK_CPU1")")
SENDER_PER_M=$(per_million "${SENDER_CPU:-0}")
PEAK_MIB=$(mib "$PEAK_KB")
IDLE_MIB=$(mib "$IDLE_KB")
IDLE_ANON_MIB=$(mib "$IDLE_ANON_KB")
FLOOR_MIB=$(mib "$FLOOR_KB")

echo
echo "segopsd stats:      $STATS"
echo
printf '%-28s %s\n' \
        "compression" "$COMPRESSION" \
        "spool" "$SPOOL_DESC" \
        "  events written to it" "$SPOOLED" \
        "net.unix.max_dgram_qlen" "$(describe_qlen)" \
        "load average 1/5/15 min" "$LOAD1 $LOAD5 $LOAD15" \
        "events sent" "$SENT" \
        "unique received" "$UNIQUE" \
        "duplicates" "$DUPS" \
        "unknown ids" "$FOREIGN" \
        "batch requests" "$REQUESTS" \
        "elapsed s" "$ELAPSED" \
        "  of which tail s" "$TAIL" \
        "events/s end to end" "$EPS" \
        "segopsd CPU s" "$CPU_S" \
        "segopsd CPU s per million" "$CPU_PER_M" \
        "  of which user space" "$USER_PER_M" \
        "sender CPU s per million" "$SENDER_PER_M" \
        "sink CPU s per million" "$SINK_PER_M" \
        "peak RSS MiB (VmHWM)" "$PEAK_MIB" \
        "idle RSS MiB (VmRSS)" "$IDLE_MIB" \
        "  of which anonymous MiB" "$IDLE_ANON_MIB" \
        "  floor: its libraries alone" "$FLOOR_MIB"
if [ -n "$RAW_EPS" ]; then
        printf '%-28s %s\n' \
                "ceiling events/s (rawsink)" "$RAW_EPS" \
                "  rawsink CPU s per million" "$RAW_CPU_PER_M" \
                "  segopsd share of ceiling" "$(calc '%.0f%%' "$RAW_EPS > 0 ? 100 * $EPS / $RAW_EPS : 0")"
fi
echo

DELIVERED=0
if [ "$SENDER_RC" = 0 ] && [ "$SENT" = "$N" ] && [ "$UNIQUE" = "$N" ] &&
   [ "$DUPS" = 0 ] && [ "$FOREIGN" = 0 ]; then
        DELIVERED=1
fi
PERF=
[ "$COMPRESSION" = none ] || PERF=info
verdict "every event arrived, none twice ($UNIQUE/$N unique, $DUPS duplicates)" "$DELIVERED == 1"
verdict "throughput $EPS events/s (target >= $TARGET_EPS, compression=none)" "$EPS >= $TARGET_EPS" $PERF
verdict "CPU $CPU_PER_M s per million events (target <= $TARGET_CPU_PER_M, compression=none)" "$CPU_PER_M <= $TARGET_CPU_PER_M" $PERF
verdict "peak RSS $PEAK_MIB MiB (target <= $TARGET_PEAK_MIB)" "$PEAK_MIB <= $TARGET_PEAK_MIB"
verdict "idle RSS $IDLE_MIB MiB (target <= $TARGET_IDLE_MIB; the libraries alone: $FLOOR_MIB)" "$IDLE_MIB <= $TARGET_IDLE_MIB"
echo "(performance lines are reported only; the exit status depends on delivery alone)"

if [ "$DELIVERED" != 1 ]; then
        [ "$SENDER_RC" = 0 ] || echo "sender exited with status $SENDER_RC" >&2
        echo "--- last lines of segopsd's log ---" >&2
        tail -n 20 "$TMP/segopsd.err" >&2
        [ -s "$TMP/sink.err" ] && { echo "--- sink ---" >&2; tail -n 5 "$TMP/sink.err" >&2; }
        exit 1
fi
exit 0
