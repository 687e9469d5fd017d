"""imagegen beside its peers: the same noop, latency and io scenarios against the same Redis.

Run through run.sh, which makes the virtualenv. For each peer (BullMQ for Python, Celery, RQ,
arq, Dramatiq, taskiq, Sidekiq) it enqueues the jobs of apps/, starts one worker process with the
given concurrency, and measures:

  noop     jobs/s while draining a full queue; Redis CPU µs and commands per job (INFO deltas,
           less the INCR each job does to count itself); worker CPU µs per job (/proc, the
           worker's whole process tree); enqueue rate with one awaited call at a time
  latency  an idle worker, jobs enqueued one at a time 2 ms apart: enqueue call → job start
  io       jobs that sleep 200 ms, CONCURRENCY at once: jobs/s against CONCURRENCY / 0.2 s

imagegen's figures come from imagegen-load run against the same server. Every phase is bounded
in jobs and seconds. Prints one table and writes OUT/peers.json.
"""
import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import redis

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(HERE, "apps")
VENV_BIN = os.path.dirname(sys.executable)


# ---------------------------------------------------------------- measuring


def proc_tree_cpu(pid):
    """User + system CPU seconds of pid and all its descendants."""
    children = {}
    stats = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        ppid = int(fields[1])
        children.setdefault(ppid, []).append(int(entry))
        stats[int(entry)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    total, stack = 0.0, [pid]
    while stack:
        p = stack.pop()
        total += stats.get(p, 0.0)
        stack.extend(children.get(p, []))
    return total


def redis_counters(r):
    info = r.info("all")
    calls = {k[len("cmdstat_") :]: v["calls"] for k, v in info.items() if k.startswith("cmdstat_")}
    return calls, info["used_cpu_sys"] + info["used_cpu_user"]


def percentile(values, p):
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(-(-len(s) * p // 1)) - 1))]


# ---------------------------------------------------------------- peers


class Peer:
    """One library: how to enqueue its three job kinds and how to start its worker."""

    name = ""
    io_supported = True

    def __init__(self, url, prefix):
        self.url, self.prefix = url, prefix
        self.env = dict(os.environ, PEER_REDIS_URL=url, PEER_PREFIX=prefix, PYTHONPATH=APPS)

    def enqueue(self, kind, t=None):
        raise NotImplementedError

    def enqueue_many(self, kind, count):
        for _ in range(count):
            self.enqueue(kind)

    def worker(self, concurrency):
        raise NotImplementedError

    def close(self):
        pass


class AsyncPeer(Peer):
    def __init__(self, url, prefix):
        super().__init__(url, prefix)
        self.loop = asyncio.new_event_loop()

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    def enqueue(self, kind, t=None):
        self.run(self.enqueue_async(kind, t))

    def enqueue_many(self, kind, count):
        async def many():
            for start in range(0, count, 32):
                await asyncio.gather(*(self.enqueue_async(kind) for _ in range(min(32, count - start))))

        self.run(many())


class CeleryPeer(Peer):
    name = "Celery"

    def __init__(self, url, prefix):
        super().__init__(url, prefix)
        os.environ.update(PEER_REDIS_URL=url, PEER_PREFIX=prefix)
        sys.path.insert(0, APPS)
        import celery_app

        self.app = celery_app

    def enqueue(self, kind, t=None):
        task = getattr(self.app, kind)
        task.delay(t) if kind == "lat" else task.delay()

    def worker(self, concurrency):
        return [os.path.join(VENV_BIN, "celery"), "-A", "celery_app", "worker", "-P", "threads", "-c",
                str(concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat",
                "--loglevel", "WARNING"]


class RQPeer(Peer):
    name = "RQ"
    io_supported = False  # one job at a time per worker process

    def __init__(self, url, prefix):
        super().__init__(url, prefix)
        from rq import Queue

        self.queue = Queue("peers", connection=redis.Redis.from_url(url))

    def enqueue(self, kind, t=None):
        args = (t,) if kind == "lat" else ()
        self.queue.enqueue(f"rq_app.{kind}", *args, result_ttl=0)

    def worker(self, concurrency):
        return [os.path.join(VENV_BIN, "rq"), "worker", "peers", "--url", self.url, "--worker-class",
                "rq.worker.SimpleWorker", "--logging_level", "WARNING"]


class DramatiqPeer(Peer):
    name = "Dramatiq"

    def __init__(self, url, prefix):
        super().__init__(url, prefix)
        os.environ.update(PEER_REDIS_URL=url, PEER_PREFIX=prefix)
        sys.path.insert(0, APPS)
        import dramatiq_app

        self.app = dramatiq_app

    def enqueue(self, kind, t=None):
        actor = getattr(self.app, kind)
        actor.send(t) if kind == "lat" else actor.send()

    def worker(self, concurrency):
        return [os.path.join(VENV_BIN, "dramatiq"), "dramatiq_app", "--processes", "1", "--threads",
                str(concurrency)]


class ArqPeer(AsyncPeer):
    name = "arq"

    def __init__(self, url, prefix):
        super().__init__(url, prefix)
        os.environ.update(PEER_REDIS_URL=url, PEER_PREFIX=prefix)
        sys.path.insert(0, APPS)
        from arq import create_pool

        import arq_app

        self.pool = self.run(create_pool(arq_app.redis_settings()))

    async def enqueue_async(self, kind, t=None):
        args = (t,) if kind == "lat" else ()
        await self.pool.enqueue_job(kind, *args, _job_id=uuid.uuid4().hex)

    def worker(self, concurrency):
        code = ("import logging; logging.basicConfig(level=logging.WARNING); "
                "from arq import run_worker; import arq_app; run_worker(arq_app.WorkerSettings)")
        self.env["PEER_CONCURRENCY"] = str(concurrency)
        return [sys.executable, "-c", code]


class TaskiqPeer(AsyncPeer):
    name = "taskiq"

    def __init__(self, url, prefix):
        super().__init__(url, prefix)
        os.environ.update(PEER_REDIS_URL=url, PEER_PREFIX=prefix)
        sys.path.insert(0, APPS)
        import taskiq_app

        self.app = taskiq_app
        self.run(taskiq_app.broker.startup())

    async def enqueue_async(self, kind, t=None):
        task = getattr(self.app, kind)
        await (task.kiq(t) if kind == "lat" else task.kiq())

    def worker(self, concurrency):
        return [os.path.join(VENV_BIN, "taskiq"), "worker", "taskiq_app:broker", "--workers", "1",
                "--max-async-tasks", str(concurrency), "--log-level", "WARNING"]

    def close(self):
        self.run(self.app.broker.shutdown())


class BullMQPeer(AsyncPeer):
    name = "BullMQ (Python)"

    def __init__(self, url, prefix):
        super().__init__(url, prefix)
        from bullmq import Queue

        self.queue = Queue("peers", {"connection": url})
        self.opts = {"removeOnComplete": True, "removeOnFail": True}

    async def enqueue_async(self, kind, t=None):
        await self.queue.add(kind, {"t": t} if kind == "lat" else {}, self.opts)

    def enqueue_many(self, kind, count):
        async def many():
            for start in range(0, count, 1000):
                jobs = [{"name": kind, "data": {}, "opts": self.opts} for _ in range(min(1000, count - start))]
                await self.queue.addBulk(jobs)

        self.run(many())

    def worker(self, concurrency):
        self.env["PEER_CONCURRENCY"] = str(concurrency)
        return [sys.executable, os.path.join(APPS, "bullmq_worker.py")]

    def close(self):
        self.run(self.queue.close())


class SidekiqPeer(Peer):
    """Jobs are pushed in Sidekiq's documented job format (a JSON hash LPUSHed on queue:default)."""

    name = "Sidekiq"
    classes = {"noop": "NoopJob", "lat": "LatJob", "io": "IoJob"}

    def __init__(self, url, prefix):
        super().__init__(url, prefix)
        self.r = redis.Redis.from_url(url)
        self.r.sadd("queues", "default")

    def payload(self, kind, t=None):
        now = time.time()
        return json.dumps({"class": self.classes[kind], "args": [t] if kind == "lat" else [], "retry": False,
                           "queue": "default", "jid": uuid.uuid4().hex[:24], "created_at": now,
                           "enqueued_at": now})

    def enqueue(self, kind, t=None):
        self.r.lpush("queue:default", self.payload(kind, t))

    def enqueue_many(self, kind, count):
        for start in range(0, count, 1000):
            pipe = self.r.pipeline(transaction=False)
            for _ in range(min(1000, count - start)):
                pipe.lpush("queue:default", self.payload(kind))
            pipe.execute()

    def worker(self, concurrency):
        self.env["REDIS_URL"] = self.url
        return ["sidekiq", "-r", os.path.join(APPS, "sidekiq_app.rb"), "-c", str(concurrency), "-q", "default",
                "-e", "production"]


class SidekiqDefaultLoggingPeer(SidekiqPeer):
    """Sidekiq with its default log level (INFO: a line for every job started and done)."""

    name = "Sidekiq (INFO log)"

    def __init__(self, url, prefix):
        super().__init__(url, prefix)
        self.env["PEER_SIDEKIQ_LOG_LEVEL"] = "INFO"


PEERS = {"bullmq": BullMQPeer, "celery": CeleryPeer, "rq": RQPeer, "arq": ArqPeer, "dramatiq": DramatiqPeer,
         "taskiq": TaskiqPeer, "sidekiq": SidekiqPeer, "sidekiq-info": SidekiqDefaultLoggingPeer}


# ---------------------------------------------------------------- scenarios


class Run:
    def __init__(self, args, r, peer, log):
        self.args, self.r, self.peer, self.log = args, r, peer, log
        self.done_key = f"{peer.prefix}:done"

    def start_worker(self, concurrency):
        argv = self.peer.worker(concurrency)
        return subprocess.Popen(argv, cwd=APPS, env=self.peer.env, stdout=self.log, stderr=self.log,
                                stdin=subprocess.DEVNULL, start_new_session=True)

    def stop_worker(self, process):
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()

    def done(self):
        return int(self.r.get(self.done_key) or 0)

    def drain(self, total, seconds, label, job_seconds=0.0):
        """Polls the done counter every 20 ms: rate from the first job seen done (less the time one
        job takes, when it sleeps) to the last."""
        deadline = time.time() + seconds
        first = None
        count = 0
        polls = 0
        while time.time() < deadline:
            count = self.done()
            polls += 1
            now = time.time()
            if count > 0 and first is None:
                first = (now, count)
            if polls % 25 == 1 or count >= total:
                print(f"\r  [{self.peer.name} {label}] {count}/{total}   ", end="", file=sys.stderr, flush=True)
            if count >= total:
                break
            time.sleep(0.02)
        print(file=sys.stderr)
        end = time.time()
        if job_seconds > 0 and first:
            # The first jobs started one job's time before they were seen done.
            rate = count / (end - first[0] + job_seconds)
        else:
            rate = (count - first[1]) / (end - first[0]) if first and end > first[0] and count > first[1] else 0.0
        return count, rate, polls

    def noop(self):
        total = self.args.jobs
        self.r.flushall()
        awaited = min(1000, total)
        start = time.time()
        for _ in range(awaited):
            self.peer.enqueue("noop")
        enqueue_rate = awaited / (time.time() - start)
        self.peer.enqueue_many("noop", total - awaited)
        calls_before, cpu_before = redis_counters(self.r)
        process = self.start_worker(self.args.concurrency)
        count, rate, polls = self.drain(total, self.args.seconds, "noop")
        worker_cpu = proc_tree_cpu(process.pid)
        calls_after, cpu_after = redis_counters(self.r)
        self.stop_worker(process)
        delta = {k: v - calls_before.get(k, 0) for k, v in calls_after.items()}
        delta["info"] = 0
        delta["incr"] = max(0, delta.get("incr", 0) - count)  # the jobs' own counting
        delta["get"] = max(0, delta.get("get", 0) - polls)  # this driver's polling
        jobs = max(1, count)
        return {"jobs": count, "jobs_per_second": rate, "redis_cpu_us_per_job": (cpu_after - cpu_before) / jobs * 1e6,
                "redis_commands_per_job": sum(v for v in delta.values() if v > 0) / jobs,
                "worker_cpu_us_per_job": worker_cpu / jobs * 1e6, "enqueue_awaited_per_second": enqueue_rate}

    def latency(self):
        self.r.flushall()
        process = self.start_worker(self.args.concurrency)
        # Warm up: wait until the worker runs a first job, then let it go idle.
        self.peer.enqueue("noop")
        self.drain(1, 30, "latency warm-up")
        time.sleep(1)
        self.r.delete(self.done_key)
        total = self.args.latency_jobs
        deadline = time.time() + self.args.seconds
        sent = 0
        for _ in range(total):
            if time.time() > deadline:
                break
            self.peer.enqueue("lat", time.time())
            sent += 1
            time.sleep(0.002)
        self.drain(sent, 10, "latency")
        self.stop_worker(process)
        values = [float(v) for v in self.r.lrange(f"{self.peer.prefix}:lat", 0, -1)]
        return {"jobs": sent, "started": len(values),
                "pickup_ms": {"p50": percentile(values, 0.5), "p99": percentile(values, 0.99),
                              "max": max(values) if values else 0.0}}

    def io(self):
        if not self.peer.io_supported:
            return {"skipped": "one job at a time per worker process"}
        self.r.flushall()
        total = self.args.io_jobs
        self.peer.enqueue_many("io", total)
        process = self.start_worker(self.args.io_concurrency)
        count, rate, _ = self.drain(total, self.args.seconds, "io", job_seconds=0.2)
        self.stop_worker(process)
        ideal = self.args.io_concurrency / 0.2
        return {"jobs": count, "concurrency": self.args.io_concurrency, "jobs_per_second": rate,
                "ideal_jobs_per_second": ideal, "percent_of_ideal": rate / ideal * 100}


# ---------------------------------------------------------------- imagegen and the Redis ceiling


def imagegen_figures(args, url, out):
    """Runs imagegen-load's noop, latency and io against the same Redis and reads its reports."""
    figures = {}
    common = [args.imagegen_load, "--redis-url", url, "--imagegen", args.imagegen, "--out-dir", out]
    runs = {
        "noop": ["noop", "--jobs", str(args.imagegen_jobs)],
        "latency": ["latency", "--jobs", str(args.latency_jobs)],
        "io": ["io", "--jobs", str(args.io_jobs), "--slots", str(args.io_concurrency)],
    }
    for name, extra in runs.items():
        subprocess.run(common[:1] + extra + common[1:], check=True)
        with open(os.path.join(out, f"load-{name}.json")) as f:
            figures[name] = json.load(f)
    io = figures["io"]["runs"][0]
    return {
        "noop": {"jobs_per_second": figures["noop"]["jobs_per_second"],
                 "redis_cpu_us_per_job": figures["noop"]["redis_cpu_us_per_job"],
                 "redis_commands_per_job": figures["noop"]["redis_commands_per_job"],
                 "worker_cpu_us_per_job": figures["noop"]["worker_cpu_us_per_job"],
                 "enqueue_awaited_per_second": figures["noop"]["enqueue_awaited_per_second"]},
        "latency": {"pickup_ms": figures["latency"]["pickup_ms"]},
        "io": {"jobs_per_second": io["jobs_per_second"], "percent_of_ideal": io["percent_of_ideal"]},
    }


def redis_ceiling(host, port, requests):
    """redis-benchmark on the same server: PING, SET and XADD, one at a time and pipelined by 16."""
    rows = {}
    for pipeline in (1, 16):
        base = ["redis-benchmark", "-h", host, "-p", str(port), "-n", str(requests), "-P", str(pipeline), "-q",
                "--csv"]
        outputs = [subprocess.run(base + ["-t", "ping,set"], capture_output=True, text=True, timeout=120).stdout,
                   subprocess.run(base + ["XADD", "bench:ceiling", "MAXLEN", "~", "1000", "*", "f", "v"],
                                  capture_output=True, text=True, timeout=120).stdout]
        for line in "\n".join(outputs).splitlines():
            parts = [p.strip('"') for p in line.split(",")]
            if len(parts) < 2 or parts[0] == "test":
                continue
            name = {"PING_MBULK": "PING", "SET": "SET"}.get(parts[0], "XADD" if parts[0].startswith("XADD") else None)
            if name:
                rows[f"{name} -P {pipeline}"] = float(parts[1])
    return rows


# ---------------------------------------------------------------- table


def table(results, ceiling):
    columns = [("noop jobs/s", lambda x: x["noop"].get("jobs_per_second"), "{:,.0f}"),
               ("Redis CPU µs/job", lambda x: x["noop"].get("redis_cpu_us_per_job"), "{:.1f}"),
               ("Redis cmds/job", lambda x: x["noop"].get("redis_commands_per_job"), "{:.1f}"),
               ("worker CPU µs/job", lambda x: x["noop"].get("worker_cpu_us_per_job"), "{:.0f}"),
               ("enqueue/s awaited", lambda x: x["noop"].get("enqueue_awaited_per_second"), "{:,.0f}"),
               ("pickup p50 ms", lambda x: x["latency"].get("pickup_ms", {}).get("p50"), "{:.2f}"),
               ("pickup p99 ms", lambda x: x["latency"].get("pickup_ms", {}).get("p99"), "{:.2f}"),
               ("io % of ideal", lambda x: x["io"].get("percent_of_ideal"), "{:.1f}")]

    def cell(result, getter, fmt):
        try:
            value = getter(result)
        except (KeyError, TypeError):
            value = None
        return "-" if value is None else fmt.format(value)

    header = ["system"] + [c[0] for c in columns]
    rows = [header]
    for name, result in results.items():
        rows.append([name] + [cell(result, g, f) for _, g, f in columns])
    mine = results.get("imagegen")
    if mine:
        rows.append([""] * len(header))
        for name, result in results.items():
            if name == "imagegen":
                continue
            ratio = [f"imagegen / {name}"]
            for title, getter, _ in columns:
                try:
                    a, b = getter(mine), getter(result)
                    ratio.append(f"{a / b:.2f}×" if a is not None and b else "-")
                except (KeyError, TypeError, ZeroDivisionError):
                    ratio.append("-")
            rows.append(ratio)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    text = "\n".join(line for line in lines if line.strip("| "))
    if ceiling:
        text += "\n\nRedis ceiling (redis-benchmark, requests/s): " + ", ".join(
            f"{k} {v:,.0f}" for k, v in ceiling.items())
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--jobs", type=int, default=20000, help="noop jobs per peer (bounded by --seconds)")
    parser.add_argument("--imagegen-jobs", type=int, default=50000, help="noop jobs for imagegen")
    parser.add_argument("--latency-jobs", type=int, default=1000)
    parser.add_argument("--io-jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16, help="worker concurrency for noop and latency")
    parser.add_argument("--io-concurrency", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60, help="most seconds of one drain")
    parser.add_argument("--imagegen-load", help="imagegen-load binary; imagegen is skipped without it")
    parser.add_argument("--imagegen", help="imagegen release binary")
    parser.add_argument("--ceiling-requests", type=int, default=100000)
    parser.add_argument("--out", default="peers-results")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    r = redis.Redis.from_url(args.redis_url)
    results = {}
    if args.imagegen_load:
        results["imagegen"] = imagegen_figures(args, args.redis_url, args.out)
    for key in [p for p in args.peers.split(",") if p]:
        print(f"== {PEERS[key].name}", file=sys.stderr)
        with open(os.path.join(args.out, f"{key}.log"), "w") as log:
            peer = PEERS[key](args.redis_url, f"peer{uuid.uuid4().hex[:6]}")
            run = Run(args, r, peer, log)
            result = {}
            for scenario in ("noop", "latency", "io"):
                try:
                    result[scenario] = getattr(run, scenario)()
                except Exception as error:  # a peer failing must not stop the comparison
                    result[scenario] = {"error": repr(error)}
                    print(f"  {scenario} failed: {error!r}", file=sys.stderr)
            peer.close()
            results[PEERS[key].name] = result
    r.flushall()
    kwargs = r.connection_pool.connection_kwargs
    ceiling = redis_ceiling(kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379), args.ceiling_requests)
    machine = {"cpus": os.cpu_count(), "load_average": os.getloadavg()[0],
               "redis": r.info("server")["redis_version"], "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with open(os.path.join(args.out, "peers.json"), "w") as f:
        json.dump({"results": results, "redis_ceiling": ceiling, "machine": machine}, f, indent=2)
    print()
    print(table(results, ceiling))
    print(f"\nmachine: {machine}")


if __name__ == "__main__":
    main()
