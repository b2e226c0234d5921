# lib.sh - shell helpers the benchmark runners share (sourced, not run).
# The caller sets TMP (its temporary directory) and defines die().

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

# Start bench/sink (path $1, extra arguments after it) on an ephemeral
# port; sets SINK_PID and PORT, or dies with the sink's error.
start_sink() {
        local sink=$1 i
        shift
        "$sink" --port-file "$TMP/port" "$@" >"$TMP/sink.out" 2>"$TMP/sink.err" &
        SINK_PID=$!
        for ((i = 0; i < 50; i++)); do
                [ -s "$TMP/port" ] && break
                kill -0 "$SINK_PID" 2>/dev/null || break
                sleep 0.1
        done
        [ -s "$TMP/port" ] || { cat "$TMP/sink.err" >&2; die "sink did not start"; }
        read -r PORT <"$TMP/port"
}

# A dummy sk_ key file for a sink that checks nothing but its shape.
write_bench_key() {
        printf 'sk_bench_0123456789\n' >"$TMP/api_key"
        chmod 600 "$TMP/api_key"
}
