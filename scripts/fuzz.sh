#!/bin/sh
# Fuzz the parsers with libFuzzer (clang), for as long as you like:
#   scripts/fuzz.sh [-t SECONDS] [TARGET...]   (default: every target, 60 s each)
# Targets (tests/fuzz/README.md): proto framer config usercmd response
# segfile. They run one after another (one core each). Each starts from
# its committed corpus (tests/fuzz/corpus/TARGET/) and dictionary, keeps
# what it learns in build-fuzz/corpus/TARGET/, and leaves a crash in
# build-fuzz/crashes/TARGET/: add that file to tests/fuzz/corpus/TARGET/
# (CI's short form replays it) and fix what it found. Prints one line
# per target, "fuzz-TARGET: S s, N executions, C crashes", and exits
# non-zero if any crashed. Needs clang with libFuzzer (Debian: clang,
# libclang-rt-dev) and the -dev packages the daemon builds with.
set -eu
cd "$(dirname "$0")/.."

usage() {
        echo "usage: $0 [-t SECONDS] [proto|framer|config|usercmd|response|segfile]..." >&2
        exit 2
}
seconds=60
while getopts t: opt; do
        case $opt in
        t) seconds=$OPTARG ;;
        *) usage ;;
        esac
done
shift $((OPTIND - 1))
case $seconds in '' | *[!0-9]*) usage ;; esac
targets=${*:-proto framer config usercmd response segfile}
out=build-fuzz
failed=0

for t in $targets; do
        case $t in
        proto) srcs="proto/parse.c proto/message.c proto/normalise.c proto/fast.c proto/encode.c proto/time.c"
                pkgs=jansson ;;
        framer) srcs="daemon/framer.c" pkgs= ;;
        config) srcs="daemon/config.c daemon/config-file.c daemon/config-value.c daemon/apikey.c daemon/urlshow.c proto/encode.c proto/time.c"
                pkgs=inih ;;
        usercmd) srcs="daemon/usercmd.c" pkgs="libuv jansson" ;;
        response) srcs="daemon/response.c daemon/backoff.c" pkgs="libcurl jansson" ;;
        segfile) srcs="daemon/segfile.c daemon/crc32c.c proto/encode.c proto/time.c" pkgs= ;;
        *) echo "fuzz: unknown target $t" >&2; usage ;;
        esac
        mkdir -p "$out/corpus/$t" "$out/crashes/$t"
        # shellcheck disable=SC2086 # srcs and the pkg-config flags are lists
        clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                -D_GNU_SOURCE -Idaemon -Iproto "tests/fuzz/fuzz-$t.c" $srcs \
                ${pkgs:+$(pkg-config --cflags --libs $pkgs)} -lm -o "$out/fuzz-$t"
        before=$(find "$out/crashes/$t" -type f | wc -l)
        set -- "$out/corpus/$t"
        [ -d "tests/fuzz/corpus/$t" ] && set -- "$@" "tests/fuzz/corpus/$t"
        [ -f "tests/fuzz/$t.dict" ] && set -- "$@" -dict="tests/fuzz/$t.dict"
        status=0
        "$out/fuzz-$t" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
                -print_final_stats=1 -artifact_prefix="$out/crashes/$t/" \
                "$@" >"$out/fuzz-$t.log" 2>&1 || status=$?
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/fuzz-$t.log" | tail -n 1)
        crashes=$(($(find "$out/crashes/$t" -type f | wc -l) - before))
        echo "fuzz-$t: $seconds s, ${execs:-?} executions, $crashes crashes (log: $out/fuzz-$t.log)"
        if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ]; then
                failed=1
                grep -m 3 -E "ERROR|Assertion|runtime error" "$out/fuzz-$t.log" >&2 || true
        fi
done
exit $failed
