#!/usr/bin/env bash
# Peer benchmark for upload normalization: imagegen ingest vs vipsthumbnail vs Pillow.
#
#   Benchmarks/ingest/compare.sh [runs]     # default 7; set MARKDOWN=1 for a Markdown table
#
# Installs what is missing (libvips-tools and GNU time via apt; Pillow and numpy in a venv at
# .build-bench-venv/), builds imagegen in release with scratch path .build-bench, generates the two
# seeded reference images into .build-bench/ingest-bench/images/ (once), then times each tool
# fitting each image inside 1024x1024 and writing a PNG. See README.md next to this script.
set -euo pipefail
cd "$(dirname "$0")/../.."

runs="${1:-7}"
venv=.build-bench-venv
work=.build-bench/ingest-bench

need_apt=()
command -v vipsthumbnail >/dev/null || need_apt+=(libvips-tools)
[ -x /usr/bin/time ] || need_apt+=(time)
python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "Installing ${need_apt[*]}..."
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! "$venv/bin/python" -c 'import PIL, numpy' 2>/dev/null; then
    echo "Creating $venv with Pillow and numpy..."
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q pillow numpy
fi

echo "Building imagegen (release, scratch path .build-bench)..."
swift build -c release --scratch-path .build-bench --product imagegen 2>&1 | tail -n 1
imagegen="$(swift build -c release --scratch-path .build-bench --show-bin-path)/imagegen"

"$venv/bin/python" Benchmarks/ingest/make_images.py "$work/images"

echo
echo "imagegen: $imagegen"
echo "vips:     $(vipsthumbnail --vips-version)"
echo "Pillow:   $("$venv/bin/python" -c 'import PIL; print(PIL.__version__)')"
echo "CPU:      $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo
md=()
[ "${MARKDOWN:-0}" = "1" ] && md=(--markdown)
"$venv/bin/python" Benchmarks/ingest/bench.py --imagegen "$imagegen" --images "$work/images" \
    --work "$work/out" --runs "$runs" "${md[@]}"
echo "Outputs are in $work/out/"
