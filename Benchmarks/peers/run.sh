#!/usr/bin/env bash
# imagegen beside BullMQ (Python), Celery, RQ, arq, Dramatiq, taskiq and Sidekiq: the same noop,
# latency and io scenarios against one Redis, plus that Redis' ceiling from redis-benchmark.
#
#   Benchmarks/peers/run.sh [--port PORT] [peers.py options...]
#
# Needs: python3 with venv, redis-server, redis-benchmark; installs the Python peers into
# Benchmarks/peers/.venv from PyPI and ruby-sidekiq with apt when missing. Builds nothing: build
# imagegen (`swift build -c release --product imagegen` in the root) and imagegen-load
# (`swift build -c release --product imagegen-load` in Benchmarks/) first; without them only the
# peers run. Every drain is bounded (--seconds, default 60), so a full run takes about 10 minutes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
port=0
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done

if [[ ! -x "$here/.venv/bin/python" ]]; then
  python3 -m venv "$here/.venv"
fi
"$here/.venv/bin/pip" install -q -r "$here/requirements.txt"
if ! command -v sidekiq >/dev/null; then
  if [[ $(id -u) -eq 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q ruby-sidekiq >/dev/null
  else
    echo "sidekiq is missing: sudo apt-get install ruby-sidekiq" >&2
  fi
fi

if [[ "$port" == 0 ]]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >"$here/redis-$port.log" 2>&1 &
redis_pid=$!
trap 'kill $redis_pid 2>/dev/null || true; wait $redis_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done

imagegen_args=()
load="$root/Benchmarks/.build/release/imagegen-load"
if [[ -x "$load" && -x "$root/.build/release/imagegen" ]]; then
  imagegen_args=(--imagegen-load "$load" --imagegen "$root/.build/release/imagegen")
else
  echo "imagegen-load or imagegen not built: comparing the peers only" >&2
fi
"$here/.venv/bin/pip" freeze | grep -iE '^(bullmq|celery|rq|arq|dramatiq|taskiq|taskiq-redis|redis)==' >&2 || true
echo "sidekiq $(dpkg-query -W -f '${Version}' ruby-sidekiq 2>/dev/null || echo '?')" >&2
cd "$here"
"$here/.venv/bin/python" "$here/peers.py" --redis-url "redis://127.0.0.1:$port/0" \
  "${imagegen_args[@]}" "${args[@]}"
