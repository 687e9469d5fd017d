import time

from common import IO_SECONDS, done, started_after


def noop():
    done()


def lat(t):
    started_after(t)
    done()


def io():
    time.sleep(IO_SECONDS)
    done()
