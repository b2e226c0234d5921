#!/usr/bin/env bash
# run-series.sh - run the throughput benchmark several times and print
# each run's figures and their median.
#
# On a shared or virtual machine one run says little: runs a minute apart
# differ by 20% or more. This runs bench/run-throughput.sh K times with the
# same arguments (the ceiling run included, unless --no-raw is passed) and
# prints one line per run, then the median of each column. Exit status: 1
# when any run lost or duplicated an event, 2 on a setup error, else 0.
#
# usage: bench/run-series.sh [-r RUNS] [run-throughput.sh arguments...]
#   -r RUNS   how many runs (default 5, at most 50)

set -u

RUNS=5
if [ "${1:-}" = -r ]; then
        [[ ${2:-} =~ ^[0-9]{1,2}$ ]] && [ "$2" -ge 1 ] && [ "$2" -le 50 ] ||
                { echo "run-series: bad -r" >&2; exit 2; }
        RUNS=$2
        shift 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$(mktemp -t segops-series.XXXXXX) || exit 2
trap 'rm -f -- "$OUT"' EXIT

# The value printed after a label of run-throughput.sh's table.
field() {
        sed -n "s/^$1 *\([0-9.]*\).*/\1/p" "$OUT" | head -n 1
}

median() {
        sort -n | awk '{ v[NR] = $1 } END {
                if (NR == 0) { print "-"; exit }
                print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

printf '%-6s %12s %7s %10s %12s %10s %9s\n' run events/s tail_s CPU_s/M ceiling/s raw_CPU/M peak_MiB
eps=() tail=() cpu=() ceil=() rawcpu=() peak=()
status=0
for ((r = 1; r <= RUNS; r++)); do
        "$HERE/run-throughput.sh" "$@" >"$OUT" 2>&1
        rc=$?
        if [ "$rc" = 2 ]; then
                tail -n 5 "$OUT" >&2
                exit 2
        fi
        [ "$rc" = 0 ] || status=1
        eps+=("$(field 'events\/s end to end')")
        tail+=("$(field '  of which tail s')")
        cpu+=("$(field 'segopsd CPU s per million')")
        ceil+=("$(field 'ceiling events\/s (rawsink)')")
        rawcpu+=("$(field '  rawsink CPU s per million')")
        peak+=("$(field 'peak RSS MiB (VmHWM)')")
        printf '%-6s %12s %7s %10s %12s %10s %9s%s\n' "$r" "${eps[-1]}" "${tail[-1]}" "${cpu[-1]}" \
                "${ceil[-1]:--}" "${rawcpu[-1]:--}" "${peak[-1]}" \
                "$([ "$rc" = 0 ] || echo '  LOST OR DUPLICATED EVENTS')"
done
printf '%-6s %12s %7s %10s %12s %10s %9s\n' median \
        "$(printf '%s\n' "${eps[@]}" | median)" "$(printf '%s\n' "${tail[@]}" | median)" \
        "$(printf '%s\n' "${cpu[@]}" | median)" \
        "$(printf '%s\n' "${ceil[@]}" | grep . | median)" \
        "$(printf '%s\n' "${rawcpu[@]}" | grep . | median)" \
        "$(printf '%s\n' "${peak[@]}" | median)"
echo "net.unix.max_dgram_qlen: $(sed -n 's/^net.unix.max_dgram_qlen *//p' "$OUT")"
exit "$status"
