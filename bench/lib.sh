# lib.sh - shell helpers the benchmark runners share (sourced, not run).
# The caller sets TMP (its temporary directory; client_bench_tmp does, for
# run-shim.sh and run-python.sh) and defines die(); sink_count needs PORT
# (start_sink sets it).
# shellcheck shell=bash

# Stop one process we started: SIGTERM, up to $2 seconds (default 5),
# then SIGKILL.
stop_pid() {
        local pid=$1 secs=${2:-5} i
        [ -n "$pid" ] || return 0
        kill -TERM "$pid" 2>/dev/null || return 0
        for ((i = 0; i < secs * 10; i++)); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
                echo "bench: pid $pid did not stop, killing it" >&2
                kill -KILL "$pid" 2>/dev/null
        fi
        wait "$pid" 2>/dev/null
}

# wait_for PID TRIES COMMAND...: run COMMAND every 0.1 s until it
# succeeds, at most TRIES times, or until PID (unless empty), a process
# we started, has exited; then once more. Returns COMMAND's last status.
wait_for() {
        local pid=$1 tries=$2 i
        shift 2
        for ((i = 0; i < tries; i++)); do
                "$@" && return 0
                [ -z "$pid" ] || kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
        done
        "$@"
}

# Start bench/sink (path $1, extra arguments after it) on an ephemeral
# port; sets SINK_PID and PORT, or dies with the sink's error.
start_sink() {
        local sink=$1
        shift
        "$sink" --port-file "$TMP/port" "$@" >"$TMP/sink.out" 2>"$TMP/sink.err" &
        SINK_PID=$!
        wait_for "$SINK_PID" 50 test -s "$TMP/port" ||
                { cat "$TMP/sink.err" >&2; die "sink did not start"; }
        read -r PORT <"$TMP/port"
}

# A dummy sk_ key file for a sink that checks nothing but its shape.
write_bench_key() {
        printf 'sk_bench_0123456789\n' >"$TMP/api_key"
        chmod 600 "$TMP/api_key"
}

# The config of the client benchmarks (run-shim.sh, run-python.sh): the
# sink at $PORT, no compression, batches of 500, memory only with room
# for a whole run, warnings only; written to $TMP/segopsd.conf.
write_client_bench_conf() {
        write_bench_key
        cat >"$TMP/segopsd.conf" <<EOF
[upstream]
api_url = http://127.0.0.1:$PORT
api_key_file = $TMP/api_key
compression = none
max_in_flight = 4

[batch]
batch_size = 500
flush_interval = 0.2

[buffer]
max_memory = 256M

[listen]
events_socket = $TMP/events.sock
control_socket = $TMP/segopsd.sock

[log]
level = warn
EOF
}

# net.unix.max_dgram_qlen caps how many datagrams a Unix datagram socket
# queues, whatever its buffer size; a socket takes the value when it is
# made. The kernel's default is 10; systemd raises it to 512 at boot
# (sysctl.d/50-default.conf), so a Debian host runs with 512, while a
# container or a machine without systemd keeps 10. With 10, a sender
# blocks every 11 datagrams and each refill costs both sides a wakeup.
QLEN_FILE=/proc/sys/net/unix/max_dgram_qlen
QLEN_SAVED=

# set_qlen N: use N for the sockets made from now on (root only); the
# value is put back by restore_qlen, which the caller's cleanup runs.
set_qlen() {
        local cur
        read -r cur <"$QLEN_FILE" || die "cannot read $QLEN_FILE"
        [ "$cur" = "$1" ] && return 0
        echo "$1" 2>/dev/null >"$QLEN_FILE" ||
                die "cannot set net.unix.max_dgram_qlen (needs root): leave out --qlen"
        QLEN_SAVED=$cur
}

restore_qlen() {
        [ -n "$QLEN_SAVED" ] || return 0
        echo "$QLEN_SAVED" >"$QLEN_FILE" 2>/dev/null ||
                echo "bench: could not put net.unix.max_dgram_qlen back to $QLEN_SAVED" >&2
        QLEN_SAVED=
}

# One line saying which queue length the run had.
describe_qlen() {
        local cur
        read -r cur <"$QLEN_FILE" 2>/dev/null || { echo "unknown"; return; }
        if [ -n "$QLEN_SAVED" ]; then
                echo "$cur (set for this run; the machine has $QLEN_SAVED)"
        elif [ "$cur" -lt 512 ]; then
                echo "$cur (the machine's; systemd hosts have 512: see --qlen)"
        else
                echo "$cur (the machine's)"
        fi
}

# Print the value of a numeric key of a flat JSON object.
json_num() {
        local v=${1#*\""$2"\":}
        [ "$v" != "$1" ] || { echo 0; return; }
        v=${v%%[,\}]*}
        echo "${v// /}"
}

# GET /_count from the sink into COUNT_JSON.
sink_count() {
        local resp body
        resp=$(printf 'GET /_count HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' |
                timeout 5 socat -t 2 - "TCP:127.0.0.1:$PORT" 2>/dev/null) || return 1
        body=${resp##*$'\r\n\r\n'}
        [[ $body == \{*\} ]] || return 1
        # shellcheck disable=SC2034 # the caller's
        COUNT_JSON=$body
}

# One request on the control socket; the reply line on stdout.
control() {
        printf '%s\n' "$1" |
                timeout 5 socat -t 2 - "UNIX-CONNECT:$TMP/segopsd.sock" 2>/dev/null
}

proc_field() { # /proc/PID/status field in kB
        local k v _
        while read -r k v _; do
                [ "$k" = "$2:" ] && { echo "$v"; return; }
        done <"/proc/$1/status"
        echo 0
}

cpu_ticks() { # utime + stime of a process; with "user", utime alone
        local line rest
        read -r line <"/proc/$1/stat" || { echo 0; return; }
        rest=${line##*) }
        local which=${2:-all}
        # shellcheck disable=SC2086
        set -- $rest
        if [ "$which" = user ]; then
                echo "${12}"
        else
                echo $(( ${12} + ${13} ))
        fi
}

calc() { awk "BEGIN { printf \"$1\", ($2) }"; }

# kB to MiB, one decimal.
mib() { calc '%.1f' "$1 / 1024"; }

# Start segopsd (path $1) on $TMP/segopsd.conf, its output in
# $TMP/segopsd.out and .err; sets DAEMON_PID. Keeps a caller's systemd or
# shim settings from leaking into the run.
start_segopsd() {
        env -u CREDENTIALS_DIRECTORY -u NOTIFY_SOCKET -u LISTEN_FDS -u LISTEN_PID \
            -u LISTEN_FDNAMES -u WATCHDOG_USEC -u WATCHDOG_PID \
            "$1" --config "$TMP/segopsd.conf" \
            >"$TMP/segopsd.out" 2>"$TMP/segopsd.err" &
        # shellcheck disable=SC2034 # the caller's
        DAEMON_PID=$!
}

# shellcheck disable=SC2317 # called through wait_for
segopsd_answers() {
        [ -S "$TMP/segopsd.sock" ] && control '{"op":"ping"}' | grep -q '"ok" *: *true'
}

verdict() { # verdict LABEL CONDITION(awk) [info]
        local ok
        ok=$(awk "BEGIN { print (($2) ? 1 : 0) }")
        if [ "${3:-}" = info ]; then
                echo "INFO  $1"
        elif [ "$ok" = 1 ]; then
                echo "PASS  $1"
        else
                echo "FAIL  $1"
        fi
}

# The client benchmarks' (run-shim.sh, run-python.sh) temporary
# directory, TMP=segops-NAME.XXXXXX, and what ends with the script:
# segopsd (DAEMON_PID) and the sink (SINK_PID) stopped, TMP removed.
client_bench_tmp() {
        TMP=$(mktemp -d -t "segops-$1.XXXXXX") || die "mktemp failed"
        SINK_PID=
        DAEMON_PID=
        trap client_bench_cleanup EXIT
        trap 'exit 2' INT TERM HUP
}

# shellcheck disable=SC2317 # called by the trap
client_bench_cleanup() {
        stop_pid "$DAEMON_PID"
        stop_pid "$SINK_PID"
        rm -rf -- "$TMP"
}
