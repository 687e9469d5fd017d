import time

from celery import Celery

from common import IO_SECONDS, URL, done, started_after

app = Celery("peers", broker=URL)
app.conf.update(task_ignore_result=True, worker_prefetch_multiplier=64, broker_connection_retry_on_startup=True)


@app.task
def noop():
    done()


@app.task
def lat(t):
    started_after(t)
    done()


@app.task
def io():
    time.sleep(IO_SECONDS)
    done()
