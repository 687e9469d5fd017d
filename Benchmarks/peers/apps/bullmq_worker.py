"""A BullMQ (Python) worker on queue 'peers' until SIGTERM."""
import asyncio
import os
import signal

from bullmq import Worker

from common import IO_SECONDS, URL, done, started_after


async def process(job, token):
    if job.name == "lat":
        started_after(job.data["t"])
    elif job.name == "io":
        await asyncio.sleep(IO_SECONDS)
    done()


async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    worker = Worker("peers", process, {"connection": URL, "concurrency": int(os.environ.get("PEER_CONCURRENCY", "16"))})
    await stop.wait()
    await worker.close()


asyncio.run(main())
