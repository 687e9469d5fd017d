#!/usr/bin/env bash
# Sourced by the demo and test scripts: starts a throwaway Redis on a free loopback port, with
# its data in a temporary folder, and stops it when the calling script exits.
# Sets IMAGEGEN_REDIS_URL.

imagegen_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

IMAGEGEN_REDIS_DIR=$(mktemp -d -t imagegen-redis.XXXXXX)
IMAGEGEN_REDIS_PORT=$(imagegen_free_port)
redis-server --port "$IMAGEGEN_REDIS_PORT" --bind 127.0.0.1 --dir "$IMAGEGEN_REDIS_DIR" \
  --save '' --appendonly no --daemonize yes --logfile "$IMAGEGEN_REDIS_DIR/redis.log" \
  --pidfile "$IMAGEGEN_REDIS_DIR/redis.pid" >/dev/null
for _ in $(seq 1 100); do
  redis-cli -p "$IMAGEGEN_REDIS_PORT" ping >/dev/null 2>&1 && break
  sleep 0.05
done
export IMAGEGEN_REDIS_URL="redis://127.0.0.1:$IMAGEGEN_REDIS_PORT/0"
imagegen_stop_redis() {
  redis-cli -p "$IMAGEGEN_REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$IMAGEGEN_REDIS_DIR"
}
trap imagegen_stop_redis EXIT
