import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from common import IO_SECONDS, URL, done, started_after

dramatiq.set_broker(RedisBroker(url=URL))


@dramatiq.actor(max_retries=0)
def noop():
    done()


@dramatiq.actor(max_retries=0)
def lat(t):
    started_after(t)
    done()


@dramatiq.actor(max_retries=0)
def io():
    time.sleep(IO_SECONDS)
    done()
