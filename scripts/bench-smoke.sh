#!/usr/bin/env bash
# The benchmark target still builds and its tools still run end to end: the load generator's
# scenarios with a few jobs each, against the debug imagegen, and the queue bench. Only that they
# run and report is checked (exit status, every report written, nothing lost, every real test
# image of the ingest accepted); the figures of such short debug runs mean nothing. Run by
# scripts/test.sh after the tests.
set -euo pipefail
cd "$(dirname "$0")/../Benchmarks"
swift build
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
load() { .build/debug/imagegen-load --imagegen ../.build/debug/imagegen --out-dir "$out" "$@"; }
load noop --jobs 400 --slots 8
load latency --jobs 50
load io --jobs 60 --slots 8,16 --latency-ms 20
load fair --jobs 60 --latency-ms 20
load crash --jobs 200 --latency-ms 20 --kill-every 1
load ingest --jobs 6
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
for name in ["noop", "latency", "io", "fair", "crash", "ingest"]:
    report = json.load(open(f"{out}/load-{name}.json"))
    assert report["scenario"] == name, name
    assert report["workers_ended_by_themselves"] == [], (name, report["workers_ended_by_themselves"])
crash = json.load(open(f"{out}/load-crash.json"))
assert crash["lost"] == 0 and crash["completed_twice"] == 0, crash
assert json.load(open(f"{out}/load-noop.json"))["finished"] is True
ingest = json.load(open(f"{out}/load-ingest.json"))
assert ingest["real_images"] > 100 and ingest["not_succeeded"] == 0, ingest
print("benchmark smoke: every report written, nothing lost")
PY
.build/debug/imagegen-queue-bench "${IMAGEGEN_REDIS_URL:-redis://127.0.0.1:6379/0}" 500
