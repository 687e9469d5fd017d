#!/usr/bin/env bash
# The tests: installs what is missing, starts a throwaway Redis on a free loopback port
# (IMAGEGEN_TEST_REDIS_URL), and runs `swift test`. Tests that need Redis never skip: without
# a server they fail. Then the benchmark target's smoke run (scripts/bench-smoke.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/redis-throwaway.sh
export IMAGEGEN_TEST_REDIS_URL="$IMAGEGEN_REDIS_URL"
echo "Redis for the tests: $IMAGEGEN_TEST_REDIS_URL"
scripts/format.sh --check
swift build --build-tests
swift build --product imagegen  # the process tests run the real binary
swift test --skip-build "$@"
# A filtered run is a partial one: the smoke run goes with the whole suite only.
if [ $# -eq 0 ]; then scripts/bench-smoke.sh; fi
