#!/bin/sh
# Fuzz the parsers with libFuzzer (clang), for as long as you like:
#   scripts/fuzz.sh [TARGET] [SECONDS]      (default: segfile, 60 s)
# Targets: segfile (the spool's segment scan). A crash leaves its input
# in build-fuzz/crashes/TARGET/; add it to a corpus and CI's standalone
# run (tests/fuzz/standalone.c) replays it. Needs clang with libFuzzer
# (Debian: clang, libclang-rt-dev).
set -eu
cd "$(dirname "$0")/.."
target=${1:-segfile}
seconds=${2:-60}
out=build-fuzz
mkdir -p "$out/corpus/$target" "$out/crashes/$target"

case $target in
segfile) srcs="tests/fuzz/fuzz-segfile.c daemon/segfile.c daemon/crc32c.c proto/encode.c" ;;
*) echo "fuzz: unknown target $target" >&2; exit 2 ;;
esac

# shellcheck disable=SC2086 # srcs is a list
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -D_GNU_SOURCE -Idaemon -Iproto $srcs -o "$out/fuzz-$target"
exec "$out/fuzz-$target" -max_total_time="$seconds" -max_len=65536 \
        -artifact_prefix="$out/crashes/$target/" "$out/corpus/$target"
