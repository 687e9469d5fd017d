import asyncio

from taskiq_redis import ListQueueBroker

from common import IO_SECONDS, URL, done, started_after

broker = ListQueueBroker(url=URL)


@broker.task
async def noop():
    done()


@broker.task
async def lat(t):
    started_after(t)
    done()


@broker.task
async def io():
    await asyncio.sleep(IO_SECONDS)
    done()
