#!/bin/sh
# The whole test suite, as CI runs it: install what is missing, build
# with warnings as errors, run every test; then build again with
# AddressSanitizer + UBSan and run every test again. Ends with the line
# "N passed, N failed" and exits non-zero when anything failed.
set -eu
cd "$(dirname "$0")/.."

scripts/install-deps.sh

run_suite() {
        dir=$1
        shift
        if [ ! -d "$dir" ]; then
                meson setup "$dir" -Dwerror=true "$@" >"$dir.setup.log" 2>&1 || {
                        cat "$dir.setup.log"; return 1; }
                rm -f "$dir.setup.log"
        fi
        rm -f "$dir/meson-logs/testlog.json"
        ninja -C "$dir" || return 1
        # meson's exit status is read from testlog.json below. Four at
        # once on two cores: the integration tests mostly wait on the
        # daemon, the mock and their timers (measured: 2 -> 4 halves the
        # wall time; the suite stays green next to two CPU hogs).
        meson test -C "$dir" --print-errorlogs --num-processes 4 || true
}

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

# A build that fails leaves no testlog.json, which counts as a failure.
run_suite build-ci || true
run_suite build-ci-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug || true

python3 - build-ci/meson-logs/testlog.json build-ci-asan/meson-logs/testlog.json <<'PY'
import json, sys
passed = failed = skipped = 0
for path in sys.argv[1:]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        print(f"{path}: missing: the build or the test run failed")
        failed += 1
        continue
    for line in lines:
        r = json.loads(line)["result"]
        if r in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif r == "SKIP":
            skipped += 1
        else:
            failed += 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed else 0)
PY
