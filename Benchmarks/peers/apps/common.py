"""What every peer's jobs do: the same three job bodies, reporting to Redis keys the driver reads.

noop: count itself done.  lat(t): record (start time - t), then count.  io: sleep 200 ms, count.
"""
import os
import time

import redis

URL = os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("PEER_PREFIX", "peer")
IO_SECONDS = float(os.environ.get("PEER_IO_SECONDS", "0.2"))
_client = redis.Redis.from_url(URL)


def done():
    _client.incr(f"{PREFIX}:done")


def started_after(t):
    _client.rpush(f"{PREFIX}:lat", f"{(time.time() - float(t)) * 1000:.3f}")
