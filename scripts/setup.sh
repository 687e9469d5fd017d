#!/usr/bin/env bash
# Installs what imagegen needs on Debian 12 when something is missing: the C libraries, Redis,
# and redis-py for the Python client's test. Safe to run again; does nothing when all is there.
set -euo pipefail

packages=(libhiredis-dev libpng-dev libjpeg-dev liblcms2-dev zlib1g-dev redis-server pkg-config python3-pip)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# redis-py for the Python client's tests, pypng for the independent PngSuite reference decode.
if ! python3 -c 'import redis, png' 2>/dev/null; then
  python3 -m pip install --quiet redis pypng 2>/dev/null || python3 -m pip install --quiet --break-system-packages redis pypng
fi
command -v swift >/dev/null || { echo "swift is not on PATH (Swift 6.1 or newer is needed)" >&2; exit 1; }
