import asyncio
import os
from urllib.parse import urlparse

from arq.connections import RedisSettings

from common import IO_SECONDS, URL, done, started_after


async def noop(ctx):
    done()


async def lat(ctx, t):
    started_after(t)
    done()


async def io(ctx):
    await asyncio.sleep(IO_SECONDS)
    done()


def redis_settings():
    url = urlparse(URL)
    return RedisSettings(host=url.hostname, port=url.port or 6379, database=int((url.path or "/0")[1:] or 0))


class WorkerSettings:
    functions = [noop, lat, io]
    redis_settings = redis_settings()
    max_jobs = int(os.environ.get("PEER_CONCURRENCY", "16"))
    keep_result = 0
