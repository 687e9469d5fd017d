#!/usr/bin/env bash
# Formats every Swift file with the repository's .swift-format; `--check` only reports.
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files -co --exclude-standard -- '*.swift')
if [ "${1:-}" = "--check" ]; then
  swift format lint --strict $files
else
  swift format format --in-place $files
fi
