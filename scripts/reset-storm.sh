#!/bin/sh
# The reset_session storm of issue 10 at full length: 100 resets a second
# for SECONDS (default 10) over the datagram socket while events are sent,
# with a pk_ key against the mock upstream: once with set_user and a slow
# mint, once with user_context_command. Every event must be delivered
# during the storm, at most about one mint (and command run) a second.
# CI runs the 2 s form (tests/integration/test_session.py, ResetStormTests).
#
#   scripts/reset-storm.sh [SECONDS] [BUILDDIR]   (default: 10 build)
set -eu
cd "$(dirname "$0")/.."

seconds=${1:-10}
build=${2:-build}
[ -x "$build/daemon/segopsd" ] || { echo "no $build/daemon/segopsd: build first" >&2; exit 2; }
SEGOPSD=$PWD/$build/daemon/segopsd SEGOPS_STORM_S=$seconds \
        exec python3 tests/integration/test_session.py -v ResetStormTests
