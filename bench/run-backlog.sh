#!/usr/bin/env bash
# run-backlog.sh - segopsd with the spool through an upstream outage:
# a backlog built while the upstream is down, then the catch-up.
#
# The upstream (bench/sink) is not running while EVENTS events are sent
# (its port refuses connections), so segopsd keeps them: max_memory's
# worth in memory, the rest on disk in the spool. Then the sink starts on
# that port and segopsd catches up, while a second sender sends more
# events (other ids) into it. It reports the build time, the catch-up
# time and rate, segopsd's RSS (VmRSS sampled every ~100 ms throughout,
# and VmHWM), what stats counts as dropped, and PASS/FAIL:
#   - every event, backlog and new ones, arrived exactly once (the sink's
#     id bitmap), and segopsd accepted them all and dropped none
#   - peak RSS <= max_memory (the default, 64M) + 16 MiB
#
# With --outage SECONDS it is the outage check instead: EVENTS (default
# 1000) are sent, the upstream stays down SECONDS more, then comes up,
# and everything held must arrive within 5 s of the first request that
# succeeds (the sink's first and last arrival). That run keeps every
# default of segopsd's but the addresses and spool_dir: batch_size,
# gzip, and the backoff of 0.5 to 60 s, whose retries an upstream that
# came back must not wait out.
#
# Exit status: 0 when every event arrived exactly once and none was
# dropped, 1 when not, 2 on a setup error. A missed RSS or time target
# prints FAIL but does not change it: those depend on the machine.
#
# usage: bench/run-backlog.sh [-n EVENTS] [--during N] [--outage SECONDS]
#                             [--max-spool SIZE] [--memory-only]
#                             [-b BUILD_DIR] [--timeout SECONDS] [--qlen N]
#                             [--perf FILE]
#   -n EVENTS        events held while the upstream is down (default
#                    2000000, ~200 B each: ~400 MB of events; with
#                    --outage, 1000)
#   --during N       events sent while segopsd catches up (default 100000;
#                    with --outage, 0)
#   --outage SECONDS the outage check: the upstream stays down SECONDS
#                    after the events were sent (60 is the issue's)
#   --max-spool SIZE [buffer] max_spool (default 2G)
#   --memory-only    no spool (with --outage only: memory holds 1000
#                    events, not a backlog of millions)
#   --timeout SECONDS  bound on each wait: the build, the first delivery,
#                    the catch-up (default 600)
#   --qlen N         net.unix.max_dgram_qlen for the run (root only; see
#                    run-throughput.sh)
#   --perf FILE      profile segopsd with perf record (cpu-clock, call
#                    graphs) through the catch-up: the read-back of the
#                    backlog; perf report -i FILE

set -u

N=
DURING=
OUTAGE=
MAX_SPOOL=2G
SPOOL=1
BUILD=${BUILD:-build}
TIMEOUT=600
QLEN=
PERF_OUT=

MAX_MEMORY_MIB=64     # segopsd's default max_memory, which the run keeps
TARGET_RSS_EXTRA_MIB=16
TARGET_OUTAGE_S=5     # from the first request that succeeds to the last event
SAMPLE_S=0.1          # VmRSS sampling period

usage() {
        sed -n '/^# usage:/,/^$/p' "$0" | sed 's/^# \{0,1\}//'
}

die() {
        echo "run-backlog: $*" >&2
        exit 2
}

# A decimal of at most 9 digits (so shell arithmetic is safe); $2 = 0
# lets 0 through.
is_count() {
        [[ $1 =~ ^[0-9]{1,9}$ ]] && [ "$1" -ge "${2:-1}" ]
}

while [ $# -gt 0 ]; do
        case $1 in
        -n) is_count "${2:-}" || die "bad -n"; N=$2; shift 2 ;;
        --during) is_count "${2:-}" 0 || die "bad --during"; DURING=$2; shift 2 ;;
        --outage) is_count "${2:-}" 0 || die "bad --outage"; OUTAGE=$2; shift 2 ;;
        --max-spool) [[ ${2:-} =~ ^[0-9]{1,6}[KMG]?$ ]] || die "bad --max-spool"
            MAX_SPOOL=$2; shift 2 ;;
        --memory-only) SPOOL=0; shift ;;
        -b) [ $# -ge 2 ] || die "bad -b"; BUILD=$2; shift 2 ;;
        --timeout) is_count "${2:-}" || die "bad --timeout"; TIMEOUT=$2; shift 2 ;;
        --qlen) is_count "${2:-}" || die "bad --qlen"; QLEN=$2; shift 2 ;;
        --perf) [ -n "${2:-}" ] || die "bad --perf"; PERF_OUT=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
        esac
done
if [ -n "$OUTAGE" ]; then
        N=${N:-1000}
        DURING=${DURING:-0}
else
        [ "$SPOOL" = 1 ] || die "--memory-only goes with --outage: a backlog needs the spool"
        N=${N:-2000000}
        DURING=${DURING:-100000}
fi
TOTAL=$((N + DURING))

SEGOPSD=$BUILD/daemon/segopsd
SINK=$BUILD/bench/sink
SENDER=$BUILD/bench/sender
for f in "$SEGOPSD" "$SINK" "$SENDER"; do
        [ -x "$f" ] || die "$f not found: run 'meson setup $BUILD && ninja -C $BUILD' first (or set BUILD)"
done
command -v socat >/dev/null || die "socat is needed"
[ -z "$PERF_OUT" ] || command -v perf >/dev/null || die "--perf needs perf"
CLK_TCK=$(getconf CLK_TCK) || die "getconf CLK_TCK failed"

TMP=$(mktemp -d -t segops-backlog.XXXXXX) || die "mktemp failed"
SINK_PID=
DAEMON_PID=
SAMPLER_PID=
DURING_PID=
PERF_PID=

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

# shellcheck disable=SC2317 # called by the trap
cleanup() {
        stop_perf
        stop_pid "$DURING_PID" 5
        stop_pid "$SAMPLER_PID" 5
        stop_pid "$DAEMON_PID" 20
        stop_pid "$SINK_PID" 5
        restore_qlen
        rm -rf -- "$TMP"
}
trap cleanup EXIT
trap 'exit 2' INT TERM HUP
[ -z "$QLEN" ] || set_qlen "$QLEN"

# The spool takes ~260 B per event of this sender (record and JSON).
if [ "$SPOOL" = 1 ]; then
        need_kb=$((N * 300 / 1024 + 65536))
        avail_kb=$(df -Pk "$TMP" | awk 'NR == 2 { print $4 }')
        [ "${avail_kb:-0}" -ge "$need_kb" ] ||
                die "the filesystem of $TMP has ${avail_kb:-?} kB free, the spool needs ~$need_kb kB (set TMPDIR)"
fi

# perf record ends on SIGINT, writing its file.
stop_perf() {
        [ -n "$PERF_PID" ] || return 0
        kill -INT "$PERF_PID" 2>/dev/null
        wait "$PERF_PID" 2>/dev/null
        PERF_PID=
}

now_ns() { # CLOCK_MONOTONIC, as the sink's and the sender's times
        local up
        read -r up _ </proc/uptime
        calc '%.0f' "$up * 1e9"
}

# Every ~SAMPLE_S, "phase VmRSS_kB" of pid $1 while it lives; the phase is
# what $TMP/phase says (build, outage, catch-up).
sample_rss() {
        local pid=$1 rss phase
        while kill -0 "$pid" 2>/dev/null; do
                rss=$(proc_field "$pid" VmRSS 2>/dev/null) || break
                read -r phase <"$TMP/phase" || phase='?'
                echo "$phase $rss"
                sleep "$SAMPLE_S"
        done
}

# The highest sample of a phase (any, without $1), in kB.
rss_peak() {
        awk -v p="${1:-}" 'p == "" || $1 == p { if ($2 > m) m = $2 } END { print m + 0 }' "$TMP/rss"
}

# The sum of the numbers in stats' "dropped" object, and client_dropped.
dropped_total() {
        local d=${1#*\"dropped\":\{}
        [ "$d" != "$1" ] || { echo -1; return; }
        d=${d%%\}*}
        printf '%s\n' "${d//,/$'\n'}" | awk -F: -v c="$(json_num "$1" client_dropped)" \
                '{ s += $2 } END { print s + c }'
}

# --- an address nobody answers: the sink's port, with the sink stopped ------
start_sink "$SINK" --expect 1
stop_pid "$SINK_PID" 5
SINK_PID=
rm -f -- "$TMP/port"

# --- segopsd ------------------------------------------------------------------
write_bench_key
if [ -n "$OUTAGE" ]; then
        # segopsd's defaults but for where things are.
        cat >"$TMP/segopsd.conf" <<EOF
[upstream]
api_url = http://127.0.0.1:$PORT
api_key_file = $TMP/api_key
stop_timeout = 10
EOF
else
        # As run-throughput.sh, and retries at most 2 s apart so that the
        # catch-up starts soon after the sink does (the outage check
        # keeps the default 60 s).
        cat >"$TMP/segopsd.conf" <<EOF
[upstream]
api_url = http://127.0.0.1:$PORT
api_key_file = $TMP/api_key
compression = none
max_in_flight = 4
timeout = 10
stop_timeout = 10
backoff_initial = 0.5
backoff_max = 2

[batch]
batch_size = 500
flush_interval = 0.2
EOF
fi
SPOOL_DESC=off
if [ "$SPOOL" = 1 ]; then
        mkdir -m 700 "$TMP/spool" || die "cannot make the spool directory"
        printf '\n[buffer]\nspool_dir = %s\nmax_spool = %s\n' "$TMP/spool" "$MAX_SPOOL" \
                >>"$TMP/segopsd.conf"
        SPOOL_DESC="on, max_spool = $MAX_SPOOL, spool_sync = interval (the default)"
fi
cat >>"$TMP/segopsd.conf" <<EOF

[listen]
events_socket = $TMP/events.sock
control_socket = $TMP/segopsd.sock
EOF

start_segopsd "$SEGOPSD"
if ! wait_for "$DAEMON_PID" 100 segopsd_answers; then
        tail -n 20 "$TMP/segopsd.err" >&2
        die "segopsd did not answer ping within 10 s"
fi
echo build >"$TMP/phase"
sample_rss "$DAEMON_PID" >"$TMP/rss" &
SAMPLER_PID=$!

echo "segopsd pid $DAEMON_PID, upstream 127.0.0.1:$PORT down (connection refused), spool $SPOOL_DESC, max_memory ${MAX_MEMORY_MIB}M"
echo "$N events held$([ -n "$OUTAGE" ] && echo ", then an outage of $OUTAGE s more"), $DURING more sent during the catch-up"

# --- the backlog, upstream down -------------------------------------------------
timeout "$TIMEOUT" "$SENDER" -n "$N" -s "$TMP/events.sock" >"$TMP/sender.out"
SENDER_RC=$?
echo "sender: $(cat "$TMP/sender.out")"
[ "$SENDER_RC" = 0 ] || echo "the sender exited with status $SENDER_RC" >&2
BUILD_S=$(sed -n 's/^sent [0-9]* events in \([0-9.]*\) s.*/\1/p' "$TMP/sender.out")
BUILD_EPS=$(sed -n 's/.*s (\([0-9]*\) events\/s.*/\1/p' "$TMP/sender.out")

# Accepted is counted when an event is taken; let the last burst land.
# shellcheck disable=SC2317 # called through wait_for
all_taken() {
        HELD_STATS=$(control '{"op":"stats"}') &&
                [ "$(json_num "$HELD_STATS" accepted)" -ge "$N" ]
}
HELD_STATS=
wait_for "$DAEMON_PID" 100 all_taken
HELD_ACCEPTED=$(json_num "$HELD_STATS" accepted)
HELD_DISK_ONLY=$(json_num "$HELD_STATS" disk_only_events)
HELD_SPOOL_BYTES=$(json_num "$HELD_STATS" bytes)
HELD_RSS_KB=$(rss_peak build)
UPSTREAM_ERROR=$(printf '%s\n' "$HELD_STATS" |
        sed -n 's/.*"upstream":{[^}]*"last_error":"\([^"]*\)".*/\1/p')

if [ -n "$OUTAGE" ]; then
        echo outage >"$TMP/phase"
        sleep "$OUTAGE"
fi

# --- the upstream is back ----------------------------------------------------------
echo catch-up >"$TMP/phase"
if [ -n "$PERF_OUT" ]; then
        perf record -q -e cpu-clock -g -p "$DAEMON_PID" -o "$PERF_OUT" >"$TMP/perf.err" 2>&1 &
        PERF_PID=$!
        sleep 0.5 # perf attaches
fi
CPU0=$(cpu_ticks "$DAEMON_PID")
start_sink "$SINK" --port "$PORT" --expect "$TOTAL"

# The first delivery, then the second sender while the rest comes in.
COUNT_JSON='{}'
# shellcheck disable=SC2317 # called through wait_for
first_arrived() {
        sink_count && [ "$(json_num "$COUNT_JSON" first_ns)" -gt 0 ]
}
wait_for "$DAEMON_PID" $((TIMEOUT * 10)) first_arrived ||
        echo "no batch arrived within $TIMEOUT s of the sink's start" >&2
DURING_AT=0
if [ "$DURING" -gt 0 ]; then
        DURING_AT=$(now_ns)
        timeout "$TIMEOUT" "$SENDER" -n "$DURING" -o "$N" -s "$TMP/events.sock" \
                >"$TMP/during.out" &
        DURING_PID=$!
fi

deadline=$((SECONDS + TIMEOUT))
while [ "$SECONDS" -lt "$deadline" ]; do
        if sink_count && [ "$(json_num "$COUNT_JSON" unique)" -ge "$TOTAL" ]; then
                break
        fi
        kill -0 "$DAEMON_PID" 2>/dev/null || break
        sleep 0.2
done
DURING_RC=0
if [ -n "$DURING_PID" ]; then
        wait "$DURING_PID"
        DURING_RC=$?
        DURING_PID=
        echo "sender during the catch-up: $(cat "$TMP/during.out")"
fi
CPU1=$(cpu_ticks "$DAEMON_PID")
stop_perf
PEAK_HWM_KB=$(proc_field "$DAEMON_PID" VmHWM)
STATS=$(control '{"op":"stats"}')
read -r LOAD1 LOAD5 LOAD15 _ </proc/loadavg
SPOOL_LEFT_KB=0
[ "$SPOOL" = 1 ] && SPOOL_LEFT_KB=$(du -sk "$TMP/spool" | cut -f1)

# Stop segopsd cleanly, then take the sink's final count: a batch resent
# during the stop would show up as a duplicate only now.
stop_pid "$SAMPLER_PID" 5
SAMPLER_PID=
stop_pid "$DAEMON_PID" 20
DAEMON_PID=
sink_count || true
stop_pid "$SINK_PID" 5
SINK_PID=
[ -s "$TMP/sink.out" ] && COUNT_JSON=$(tail -n 1 "$TMP/sink.out")

UNIQUE=$(json_num "$COUNT_JSON" unique)
DUPS=$(json_num "$COUNT_JSON" duplicates)
FOREIGN=$(json_num "$COUNT_JSON" foreign)
REQUESTS=$(json_num "$COUNT_JSON" requests)
STARTED_NS=$(json_num "$COUNT_JSON" started_ns)
FIRST_NS=$(json_num "$COUNT_JSON" first_ns)
LAST_NS=$(json_num "$COUNT_JSON" last_ns)
ACCEPTED=$(json_num "$STATS" accepted)
REJECTED=$(json_num "$STATS" rejected_total)
DROPPED=$(dropped_total "$STATS")

WAIT_FIRST_S=$(calc '%.3f' "$FIRST_NS > $STARTED_NS ? ($FIRST_NS - $STARTED_NS) / 1e9 : 0")
CATCHUP_S=$(calc '%.3f' "$LAST_NS > $FIRST_NS && $FIRST_NS > 0 ? ($LAST_NS - $FIRST_NS) / 1e9 : 0")
CATCHUP_EPS=$(calc '%.0f' "$CATCHUP_S > 0 ? $UNIQUE / $CATCHUP_S : 0")
CPU_S=$(calc '%.3f' "($CPU1 - $CPU0) / $CLK_TCK")
CPU_PER_M=$(calc '%.3f' "$UNIQUE > 0 ? $CPU_S * 1000000 / $UNIQUE : 0")
PEAK_SAMPLED_KB=$(rss_peak)
PEAK_KB=$((PEAK_SAMPLED_KB > PEAK_HWM_KB ? PEAK_SAMPLED_KB : PEAK_HWM_KB))
TARGET_RSS_MIB=$((MAX_MEMORY_MIB + TARGET_RSS_EXTRA_MIB))
DURING_LINE=-
if [ "$DURING" -gt 0 ]; then
        DURING_S=$(sed -n 's/^sent [0-9]* events in \([0-9.]*\) s.*/\1/p' "$TMP/during.out")
        DURING_LINE="${DURING_S:-?} s to send, from $(calc '%.1f' "$DURING_AT > $FIRST_NS && $FIRST_NS > 0 ? ($DURING_AT - $FIRST_NS) / 1e9 : 0") s into the catch-up"
fi

echo
echo "segopsd stats at the end: $STATS"
echo
printf '%-34s %s\n' \
        "spool" "$SPOOL_DESC" \
        "net.unix.max_dgram_qlen" "$(describe_qlen)" \
        "load average 1/5/15 min" "$LOAD1 $LOAD5 $LOAD15" \
        "events held (upstream down)" "$N" \
        "  build s, events/s" "${BUILD_S:-?}, ${BUILD_EPS:-?}" \
        "  accepted when built" "$HELD_ACCEPTED" \
        "  of which on disk only" "$HELD_DISK_ONLY" \
        "  spool MiB" "$(calc '%.1f' "$HELD_SPOOL_BYTES / 1048576")" \
        "  upstream's error meanwhile" "${UPSTREAM_ERROR:-?}" \
        "  peak VmRSS MiB while building" "$(mib "$HELD_RSS_KB")" \
        "outage after that, s" "${OUTAGE:-0}" \
        "events sent during the catch-up" "$DURING" \
        "  sender" "$DURING_LINE" \
        "unique received" "$UNIQUE of $TOTAL" \
        "duplicates" "$DUPS" \
        "unknown ids" "$FOREIGN" \
        "batch requests" "$REQUESTS" \
        "accepted, rejected, dropped" "$ACCEPTED, $REJECTED, $DROPPED" \
        "sink start to first delivery s" "$WAIT_FIRST_S" \
        "catch-up s (first to last)" "$CATCHUP_S" \
        "catch-up events/s" "$CATCHUP_EPS" \
        "segopsd CPU s in the catch-up" "$CPU_S ($CPU_PER_M per million)" \
        "peak VmRSS MiB while catching up" "$(mib "$(rss_peak catch-up)")" \
        "peak RSS MiB (samples, VmHWM)" "$(mib "$PEAK_SAMPLED_KB"), $(mib "$PEAK_HWM_KB") ($(wc -l <"$TMP/rss") samples)" \
        "spool left after it, MiB" "$(calc '%.1f' "$SPOOL_LEFT_KB / 1024")"
echo

DELIVERED=0
if [ "$SENDER_RC" = 0 ] && [ "$DURING_RC" = 0 ] && [ "$UNIQUE" = "$TOTAL" ] &&
   [ "$DUPS" = 0 ] && [ "$FOREIGN" = 0 ]; then
        DELIVERED=1
fi
NO_DROPS=0
[ "$ACCEPTED" = "$TOTAL" ] && [ "$REJECTED" = 0 ] && [ "$DROPPED" = 0 ] && NO_DROPS=1
verdict "every event arrived, none twice ($UNIQUE/$TOTAL unique, $DUPS duplicates)" "$DELIVERED == 1"
verdict "all accepted, none dropped ($ACCEPTED/$TOTAL accepted, $REJECTED rejected, $DROPPED dropped)" \
        "$NO_DROPS == 1"
if [ -n "$OUTAGE" ]; then
        verdict "all held delivered $CATCHUP_S s after the first request that succeeded (target <= $TARGET_OUTAGE_S)" \
                "$CATCHUP_S <= $TARGET_OUTAGE_S && $DELIVERED == 1"
        verdict "peak RSS $(mib "$PEAK_KB") MiB (max_memory + $TARGET_RSS_EXTRA_MIB = $TARGET_RSS_MIB)" \
                "$PEAK_KB <= $TARGET_RSS_MIB * 1024" info
else
        verdict "peak RSS $(mib "$PEAK_KB") MiB, sampled and VmHWM (target <= max_memory + $TARGET_RSS_EXTRA_MIB = $TARGET_RSS_MIB)" \
                "$PEAK_KB <= $TARGET_RSS_MIB * 1024"
        verdict "catch-up $CATCHUP_EPS events/s, build $BUILD_EPS events/s" 1 info
fi
echo "(time and RSS lines are reported only; the exit status depends on delivery and drops)"

if [ "$DELIVERED" != 1 ] || [ "$NO_DROPS" != 1 ]; then
        echo "--- last lines of segopsd's log ---" >&2
        tail -n 20 "$TMP/segopsd.err" >&2
        [ -s "$TMP/sink.err" ] && { echo "--- sink ---" >&2; tail -n 5 "$TMP/sink.err" >&2; }
        exit 1
fi
exit 0
