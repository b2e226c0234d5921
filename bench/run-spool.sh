#!/usr/bin/env bash
# run-spool.sh - what the write-ahead spool costs: memory-only against
# spool-on, measured together.
#
# Runs bench/run-throughput.sh RUNS times in each mode, alternating
# (memory-only, spool, memory-only, spool, ...), so that both modes meet
# the same minutes of a shared machine. Prints each run's figures with
# the load average at its end, then per mode the median events/s end to
# end, segopsd's CPU seconds per million events and the peak RSS, and
# PASS/FAIL against issue 9's targets:
#   - events/s with the spool >= 85% of memory-only (medians)
#   - CPU s per million with the spool <= memory-only's + 0.4 (medians)
#   - peak RSS with the spool <= 48 MiB (the highest of its runs)
# Then one run with spool_sync = always, for information, of a tenth as
# many events (at least 10,000; one fdatasync per read burst is some 10
# to 100 times slower) with a 600 s timeout. The ceiling run is skipped
# (--no-raw). Exit status: 1 when any run lost or
# duplicated an event, 2 on a setup error, else 0: a missed performance
# target prints FAIL but does not change it.
#
# usage: bench/run-spool.sh [-n EVENTS] [-r RUNS] [--no-always]
#                           [run-throughput.sh arguments...]
#   -n EVENTS    events per run (default 1000000)
#   -r RUNS      runs per mode (default 5, at most 50)
#   --no-always  skip the spool_sync = always run
#   the rest goes to every run-throughput.sh, e.g. --qlen 512 or -b DIR

set -u

N=1000000
RUNS=5
ALWAYS=1
PASS_ARGS=()

TARGET_RATE_SHARE=0.85 # spool events/s over memory-only's
TARGET_CPU_EXTRA=0.4   # CPU s per million over memory-only's
TARGET_PEAK_MIB=48

usage() {
        sed -n '/^# usage:/,/^$/p' "$0" | sed 's/^# \{0,1\}//'
}

die() {
        echo "run-spool: $*" >&2
        exit 2
}

while [ $# -gt 0 ]; do
        case $1 in
        -n) [[ ${2:-} =~ ^[0-9]{1,9}$ ]] && [ "$2" -gt 0 ] || die "bad -n"
            N=$2; shift 2 ;;
        -r) [[ ${2:-} =~ ^[0-9]{1,2}$ ]] && [ "$2" -ge 1 ] && [ "$2" -le 50 ] ||
                die "bad -r"
            RUNS=$2; shift 2 ;;
        --no-always) ALWAYS=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) PASS_ARGS+=("$1"); shift ;;
        esac
done

HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$(mktemp -t segops-spool.XXXXXX) || die "mktemp failed"
trap 'rm -f -- "$OUT"' EXIT
trap 'exit 2' INT TERM HUP

# The value printed after a label of run-throughput.sh's table.
field() {
        sed -n "s/^$1 *\([0-9.]*\).*/\1/p" "$OUT" | head -n 1
}

median() {
        sort -n | awk '{ v[NR] = $1 } END {
                if (NR == 0) { print "-"; exit }
                print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

largest() {
        sort -n | tail -n 1
}

calc() { awk "BEGIN { printf \"$1\", ($2) }"; }

STATUS=0
RUN_N=$N
# One run of run-throughput.sh (its extra arguments after the label);
# sets R_EPS, R_CPU, R_PEAK, R_LOAD and prints one line.
run_one() {
        local label=$1 rc
        shift
        "$HERE/run-throughput.sh" -n "$RUN_N" --no-raw "${PASS_ARGS[@]}" "$@" >"$OUT" 2>&1
        rc=$?
        if [ "$rc" = 2 ]; then
                tail -n 5 "$OUT" >&2
                exit 2
        fi
        [ "$rc" = 0 ] || STATUS=1
        R_EPS=$(field 'events\/s end to end')
        R_CPU=$(field 'segopsd CPU s per million')
        R_PEAK=$(field 'peak RSS MiB (VmHWM)')
        R_LOAD=$(sed -n 's/^load average 1\/5\/15 min *//p' "$OUT")
        printf '%-4s %-16s %10s %9s %9s   %s%s\n' "$R" "$label" "$R_EPS" "$R_CPU" "$R_PEAK" \
                "$R_LOAD" "$([ "$rc" = 0 ] || echo '  LOST OR DUPLICATED EVENTS')"
}

echo "$N events per run, $RUNS runs per mode, alternating; run-throughput.sh ${PASS_ARGS[*]}"
printf '%-4s %-16s %10s %9s %9s   %s\n' run mode events/s CPU_s/M peak_MiB "load 1/5/15"
m_eps=() m_cpu=() m_peak=() s_eps=() s_cpu=() s_peak=() ratio=()
for ((R = 1; R <= RUNS; R++)); do
        run_one memory-only
        m_eps+=("$R_EPS") m_cpu+=("$R_CPU") m_peak+=("$R_PEAK")
        run_one spool --spool
        s_eps+=("$R_EPS") s_cpu+=("$R_CPU") s_peak+=("$R_PEAK")
        # The pair's own ratio: what the drift of a shared machine
        # disturbs least.
        ratio+=("$(calc '%.3f' "${m_eps[-1]} > 0 ? ${s_eps[-1]} / ${m_eps[-1]} : 0")")
done
QLEN_LINE=$(sed -n 's/^net.unix.max_dgram_qlen *//p' "$OUT")

M_EPS=$(printf '%s\n' "${m_eps[@]}" | median)
M_CPU=$(printf '%s\n' "${m_cpu[@]}" | median)
M_PEAK=$(printf '%s\n' "${m_peak[@]}" | largest)
S_EPS=$(printf '%s\n' "${s_eps[@]}" | median)
S_CPU=$(printf '%s\n' "${s_cpu[@]}" | median)
S_PEAK=$(printf '%s\n' "${s_peak[@]}" | largest)
RATIO_PAIRS=$(printf '%s\n' "${ratio[@]}" | median)
SHARE=$(calc '%.3f' "$M_EPS > 0 ? $S_EPS / $M_EPS : 0")
EXTRA=$(calc '%.3f' "$S_CPU - $M_CPU")

echo
printf '%-16s %12s %16s %14s\n' mode "events/s" "CPU s/M" "peak RSS MiB"
printf '%-16s %12s %16s %14s\n' "" "(median)" "(median)" "(highest)"
printf '%-16s %12s %16s %14s\n' memory-only "$M_EPS" "$M_CPU" "$M_PEAK"
printf '%-16s %12s %16s %14s\n' spool "$S_EPS" "$S_CPU" "$S_PEAK"
echo "net.unix.max_dgram_qlen: $QLEN_LINE"
echo "spool/memory-only rate: $SHARE of the medians; median of the $RUNS pairs' own ratios $RATIO_PAIRS"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

verdict() { # verdict LABEL CONDITION(awk)
        if [ "$(awk "BEGIN { print (($2) ? 1 : 0) }")" = 1 ]; then
                echo "PASS  $1"
        else
                echo "FAIL  $1"
        fi
}
verdict "rate with the spool $S_EPS events/s = $(calc '%.1f' "100 * $SHARE")% of memory-only's $M_EPS (target >= $(calc '%.0f' "100 * $TARGET_RATE_SHARE")%)" \
        "$SHARE >= $TARGET_RATE_SHARE"
verdict "CPU with the spool $S_CPU s per million = memory-only's $M_CPU + $EXTRA (target <= +$TARGET_CPU_EXTRA)" \
        "$EXTRA <= $TARGET_CPU_EXTRA"
verdict "peak RSS with the spool $S_PEAK MiB (target <= $TARGET_PEAK_MIB)" "$S_PEAK <= $TARGET_PEAK_MIB"

if [ "$ALWAYS" = 1 ]; then
        echo
        R=1
        RUN_N=$((N / 10 > 10000 ? N / 10 : 10000))
        echo "spool_sync = always, once, $RUN_N events (for information: fdatasync after every write, on the loop)"
        printf '%-4s %-16s %10s %9s %9s   %s\n' run mode events/s CPU_s/M peak_MiB "load 1/5/15"
        run_one spool-always --spool-sync always --timeout 600
fi
[ "$STATUS" = 0 ] || echo "some run lost or duplicated events" >&2
exit "$STATUS"
