#!/usr/bin/env bash
# The demo: installs what is missing, builds, starts a throwaway Redis, runs a worker with the
# simulated backend and enqueues jobs for several users; the images land in ./demo-output.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build --product imagegen
source scripts/redis-throwaway.sh
echo "Redis: $IMAGEGEN_REDIS_URL"
.build/debug/imagegen demo --out "${1:-demo-output}"
