"""The workload service against Celery with a Redis broker, on this machine, in the same run.

    python tests/bench/workload.py [--tasks 300] [--latency 40] [--kill-tasks 120] [--flood 120]
                                   [--celery-python PY]

Both systems get 4 worker processes on 127.0.0.1. Fleetplane: a gateway, the SQLite-backed
queue (fsync on) and 4 worker node processes (``workload.worker``, one slot each: a warm Python
zygote forking a confined child per task, one task prefetched), started as the launcher starts them; the benchmark is
the topology's node ``bench`` (topology nodes admit no node their topology does not name),
submits through the gateway and is notified of each result. Celery:
``redis-server`` (no persistence) as broker and result backend, 4 ``celery worker -c 1``
processes, ``task_acks_late = True``, ``worker_prefetch_multiplier = 1`` (the issue's
configuration; every other setting Celery's default, so the Redis visibility timeout is 3600 s).
Celery and Redis are needed by the benchmark only: ``--celery-python`` names a Python with
``celery[redis]`` (default: ``/tmp/fleetplane-bench-venv/bin/python``); ``redis-server`` must be
on the PATH.

Figures (one run of each system, in turn):

* ``throughput_ratio`` - no-op tasks per second, fleetplane / Celery (``--tasks`` submitted at
  once, time from the first submission to the last result);
* ``p50_ms``, ``p99_ms`` - submit-to-result latency of ``--latency`` tasks sent one at a time
  (fleetplane's; Celery's printed beside as ``celery_p50_ms``, ``celery_p99_ms``);
* ``lost``, ``duplicated`` - of ``--kill-tasks`` tasks of 0.05 s, once 2 of the 4 worker
  processes were SIGKILLed 1 s into the run: acknowledged tasks with no result 60 s later, and
  tasks whose result came (fleetplane) or whose code ran to completion (Celery) twice;
  ``celery_lost``, ``celery_duplicated`` beside;
* ``aging_overrun_s`` - a priority-0 task with a maximum delay of 1 s submitted into a flood of
  ``--flood`` priority-9 tasks of 0.1 s: its wait until it started on a worker (its
  ``workload.task_started`` less its ``workload.accepted``) minus its maximum delay (goal: at
  most one task's run time: ``task_run_s``, the median metered time of the flood's tasks, their
  0.1 s of sleep with the fork and the confinement); ``aging_overrun_dispatch_s`` beside: the same
  until the queue dispatched it. Celery has no maximum delay; its wait behind the flood is printed beside
  (``celery_low_priority_wait_s``; with Redis Celery serves priority 0 first, so the flood is sent
  with 0 and the low task with 9). The queue commits in windows of 2 ms (``commit_window``):
  one ``fsync`` per burst, at once when it is quiet.

Each fleetplane worker takes one task ahead (``prefetch = 1``: it waits there, leased, and starts
when the running one ends); Celery's workers take none beyond the one they run (the issue's
``worker_prefetch_multiplier = 1`` with ``acks_late``). A prefetched fleetplane task is leased and
comes back when its worker dies; Celery's prefetched tasks are what it loses on ``kill -9``
(celery#7924).

Last line: one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
ROOT = _HERE.parents[1]
sys.path.insert(0, str(ROOT))

from actors import Actor, Node  # noqa: E402
from protocols.workload.gateway import Submit, Submitted  # noqa: E402
from protocols.workload.messages import TaskStatus  # noqa: E402
from protocols.workload.worker import Credential  # noqa: E402,F401  (registers the tag: workers send credentials)
from transport.zmq import ZmqTransport, set_insecure_log_level  # noqa: E402

NOOP = "result = None"
SLEEP = "import time\ndef main(d):\n    time.sleep(d)\n    return d"

TOPOLOGY = """
name = "workload-bench"
seed = 1
[run]
duration = 900.0
progress = "workload.task_done"
[transport]
heartbeat = 0.25
liveness = 6
[defaults."workload.worker"]
queue = "q/queue"
slots = 1
prefetch = 1
heartbeat = 0.25
env = "python"
limits = {{ cpu_s = 5, memory_mb = 256, processes = 8, wall_s = 10.0 }}
[[nodes]]
name = "gw"
[[nodes.actors]]
name = "gateway"
kind = "workload.gateway"
params = {{ queues = {{ bench = "q/queue" }}, tenants = {{ t1 = {{ token = "k", class = "std" }}, t2 = {{ token = "k", class = "std" }} }}, classes = {{ std = 0 }}, resend = 0.5, max_pending = 100000 }}
[[nodes]]
name = "q"
[[nodes.actors]]
name = "queue"
kind = "workload.queue"
params = {{ types = ["bench"], db = "{{run_dir}}/{{address}}.sqlite", lease_ttl = 2.0, tick = 0.05, worker_ttl = 3.0, commit_window = 0.002 }}
{workers}
"""


class Sink(Actor):
    """Receives the gateway's answers and the queue's notifications; records when each came."""

    def __init__(self, log: dict):
        self.log = log

    def receive(self, msg, sender):
        now = time.monotonic()
        with self.log["lock"]:
            if isinstance(msg, Submitted):
                self.log["acked"][msg.request_id] = (msg.task_id, now) if msg.ok else (None, now)
                if not msg.ok:
                    self.log["refused"].append(msg.error)
            elif isinstance(msg, TaskStatus):
                self.log["done"].setdefault(msg.task_id, []).append((now, msg.outcome))
            self.log["cv"].notify_all()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# fleetplane
# --------------------------------------------------------------------------

class Fleet:
    """The benchmark's fleetplane: the topology's node processes, and this process as its node ``bench`` (a node
    the topology names: topology nodes admit no other)."""

    def __init__(self, workdir: Path):
        from topologies.launcher import await_node, spawn_node
        from topologies.loader import load_topology

        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        workers = "".join(f'[[nodes]]\nname = "w{i}"\n[[nodes.actors]]\nname = "worker"\nkind = "workload.worker"\n'
                          f'params = {{ types = ["bench"] }}\n' for i in range(1, 5))
        (workdir / "bench.toml").write_text(TOPOLOGY.format(workers=workers) + '[[nodes]]\nname = "bench"\n[[nodes.actors]]\nname = "sink"\nkind = "workload.data"\n')  # (a node hosts some actor; this one is never started: this process is the node)
        topo = load_topology(workdir / "bench.toml")
        self.run = workdir / "run"
        self.run.mkdir()
        topo = topo.with_ports({n.name: free_port() for n in topo.nodes})
        topo_file = self.run / "topology.json"
        topo_file.write_text(json.dumps(topo.to_dict(), indent=1))
        peers = {n.name: n.endpoint for n in topo.nodes if n.name != "bench"}
        set_insecure_log_level("DEBUG")
        me = next(n for n in topo.nodes if n.name == "bench")
        self.node = Node("bench", transport=ZmqTransport(me.endpoint, peers))
        self.log = {"lock": threading.Lock(), "acked": {}, "done": {}, "refused": []}
        self.log["cv"] = threading.Condition(self.log["lock"])
        self.node.spawn(Sink, self.log, name="sink")
        popens = {name: spawn_node(topo_file, name, self.run) for name in peers}
        self.procs = {name: await_node(p, name, self.run) for name, p in popens.items()}
        for p in self.procs.values():
            p.popen.stdin.write("start\n")
            p.popen.stdin.flush()
        self.n = 0
        time.sleep(3.0)  # every worker has pulled
        self.submit_one(NOOP, None)  # warm up: every path once
        self.wait_all(timeout=30)

    def submit_one(self, code, data, priority=0, max_delay=600.0, tenant="t1") -> str:
        self.n += 1
        rid = f"r{self.n}"
        self.log.setdefault("sent", {})[rid] = time.monotonic()
        self.node.tell("gw/gateway", Submit(rid, tenant, "k", "bench", {"source": code}, {"inline": data},
                                            max_delay, priority, "bench/sink"), "bench/sink")
        return rid

    def wait_all(self, rids=None, timeout=120.0) -> bool:
        deadline = time.monotonic() + timeout
        with self.log["cv"]:
            while True:
                rids_ = rids if rids is not None else list(self.log["sent"])
                pending = [r for r in rids_ if r not in self.log["acked"]
                           or (self.log["acked"][r][0] is not None and self.log["acked"][r][0] not in self.log["done"])]
                if not pending:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.log["cv"].wait(min(left, 0.5))

    def result_time(self, rid):
        tid, _ = self.log["acked"][rid]
        return self.log["done"][tid][0][0]

    def pids(self) -> dict:
        return {name: p.pid for name, p in self.procs.items()}

    def close(self):
        self.node.shutdown()
        for p in self.procs.values():
            if p.popen.poll() is None:
                p.popen.terminate()  # SIGTERM: the node stops cleanly
        for p in self.procs.values():
            try:
                p.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait()
            for f in (p.popen.stdin, p.popen.stdout):
                if f is not None:
                    f.close()


def bench_fleet(args, workdir: Path) -> dict:
    out = {}
    f = Fleet(workdir / "fleet-a")
    try:
        t0 = time.monotonic()
        rids = [f.submit_one(NOOP, None) for _ in range(args.tasks)]
        ok = f.wait_all(rids, timeout=600)
        t1 = max(f.result_time(r) for r in rids) if ok else time.monotonic()
        out["throughput"] = args.tasks / (t1 - t0)
        lat = []
        for _ in range(args.latency):
            r = f.submit_one(NOOP, None)
            f.wait_all([r], timeout=60)
            lat.append(f.result_time(r) - f.log["sent"][r])
        out["p50_ms"], out["p99_ms"] = _pcts(lat)
        # aging: a flood of priority 9, then one priority-0 task with a 1 s maximum delay
        flood = [f.submit_one(SLEEP, 0.1, priority=9, tenant="t2") for _ in range(args.flood)]
        time.sleep(0.5)
        low = f.submit_one(SLEEP, 0.1, priority=0, max_delay=1.0, tenant="t1")
        f.wait_all(flood + [low], timeout=600)
        tid = f.log["acked"][low][0]
        time.sleep(0.5)  # the event logs are flushed every 0.2 s
        events = [json.loads(line) for p in f.run.glob("*.events.jsonl") for line in p.open() if tid in line]
        accepted = [e["time"] for e in events if e["kind"] == "workload.accepted"]
        waited = [e["fields"]["waited"] for e in events if e["kind"] == "workload.dispatched"]
        started = [e["time"] for e in events if e["kind"] == "workload.task_started"]
        # its wait until it started on a worker (a task sent on a prefetch credit waits there for a slot);
        # the queue's wait until the dispatch beside it
        out["low_priority_wait_s"] = started[0] - accepted[0] if started and accepted else None
        out["aging_overrun_s"] = out["low_priority_wait_s"] - 1.0 if out["low_priority_wait_s"] is not None else None
        out["aging_overrun_dispatch_s"] = waited[0] - 1.0 if waited else None
        # one task's run time: what a flood task's run took (its metered time: the sleep of 0.1 s, the fork and
        # the confinement), the median of the flood
        flood_ids = {f.log["acked"][r][0] for r in flood}
        done = [json.loads(line)["fields"] for line in (f.run / "q.events.jsonl").open()
                if '"workload.task_done"' in line]
        metered = [d["metered"] for d in done if d["task"] in flood_ids]
        out["task_run_s"] = statistics.median(metered) if metered else 0.1
    finally:
        f.close()
    f = Fleet(workdir / "fleet-b")
    try:
        rids = [f.submit_one(SLEEP, 0.05) for _ in range(args.kill_tasks)]
        time.sleep(1.0)
        pids = f.pids()
        for w in ("w1", "w2"):
            os.kill(pids[w], signal.SIGKILL)  # the node process; its zygote and task die with it (PDEATHSIG)
        f.wait_all(rids, timeout=60)
        with f.log["lock"]:
            acked = [f.log["acked"][r][0] for r in rids if r in f.log["acked"] and f.log["acked"][r][0]]
            out["lost"] = sum(1 for t in acked if t not in f.log["done"])
            out["duplicated"] = sum(1 for t in acked if len(f.log["done"].get(t, [])) > 1)
            out["kill_acked"] = len(acked)
    finally:
        f.close()
    return out


def _pcts(xs):
    xs = sorted(xs)
    return round(statistics.median(xs) * 1000, 2), round(xs[min(len(xs) - 1, int(0.99 * len(xs)))] * 1000, 2)


# --------------------------------------------------------------------------
# Celery + Redis (in its own Python: the project does not depend on Celery)
# --------------------------------------------------------------------------

CELERY_APP = '''
import os, time
from celery import Celery
import redis
URL = os.environ["BENCH_REDIS"]
app = Celery("benchapp", broker=URL + "/0", backend=URL + "/1")
app.conf.task_acks_late = True
app.conf.worker_prefetch_multiplier = 1
app.conf.broker_transport_options = {"queue_order_strategy": "priority"}
_r = redis.Redis.from_url(URL + "/2")

@app.task
def noop():
    return None

@app.task
def sleep(s, tag):
    time.sleep(s)
    _r.rpush("ran", tag)
    return s
'''

CELERY_DRIVER = r'''
import json, os, signal, subprocess, sys, time, statistics
sys.path.insert(0, os.environ["BENCH_DIR"])
from benchapp import app, noop, sleep
import redis
args = json.loads(sys.argv[1])
URL = os.environ["BENCH_REDIS"]
r2 = redis.Redis.from_url(URL + "/2")
def start_workers():
    ws = []
    for i in range(4):
        ws.append(subprocess.Popen([sys.executable, "-m", "celery", "-A", "benchapp", "worker", "-c", "1", "-n",
                                    f"w{i}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat",
                                    "-l", "WARNING"], cwd=os.environ["BENCH_DIR"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True))
    noop.delay().get(timeout=60)
    time.sleep(2.0)
    return ws
def stop(ws):
    for w in ws:
        try:
            os.killpg(w.pid, signal.SIGKILL)
        except OSError:
            pass
        w.wait()
out = {}
ws = start_workers()
try:
    t0 = time.monotonic()
    rs = [noop.delay() for _ in range(args["tasks"])]
    for r in rs:
        r.get(timeout=600)
    out["throughput"] = args["tasks"] / (time.monotonic() - t0)
    lat = []
    for _ in range(args["latency"]):
        t = time.monotonic()
        noop.delay().get(timeout=60)
        lat.append(time.monotonic() - t)
    lat.sort()
    out["p50_ms"] = round(statistics.median(lat) * 1000, 2)
    out["p99_ms"] = round(lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000, 2)
    # Redis: priority 0 is served first, 9 last
    flood = [sleep.apply_async((0.1, f"f{i}"), priority=0) for i in range(args["flood"])]
    time.sleep(0.5)
    t = time.monotonic()
    low = sleep.apply_async((0.1, "low"), priority=9)
    low.get(timeout=600)
    out["low_priority_wait_s"] = time.monotonic() - t - 0.1
    for r in flood:
        r.get(timeout=600)
finally:
    stop(ws)
app.control.purge()
r2.delete("ran")
ws = start_workers()
try:
    rs = [sleep.delay(0.05, f"k{i}") for i in range(args["kill_tasks"])]
    time.sleep(1.0)
    for w in ws[:2]:
        os.killpg(w.pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(r.ready() for r in rs):
        time.sleep(0.2)
    out["lost"] = sum(1 for r in rs if not r.ready())
    ran = [x.decode() for x in r2.lrange("ran", 0, -1)]
    out["duplicated"] = sum(1 for i in range(args["kill_tasks"]) if ran.count(f"k{i}") > 1)
finally:
    stop(ws)
print(json.dumps(out))
'''


def bench_celery(args, workdir: Path) -> dict:
    port = free_port()
    redis_proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
    d = workdir / "celery"
    d.mkdir()
    (d / "benchapp.py").write_text(CELERY_APP)
    env = {**os.environ, "BENCH_REDIS": f"redis://127.0.0.1:{port}", "BENCH_DIR": str(d)}
    try:
        time.sleep(0.5)
        r = subprocess.run([args.celery_python, "-c", CELERY_DRIVER, json.dumps(vars(args))], cwd=d, env=env,
                           capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            raise RuntimeError(f"the Celery run failed: {r.stderr[-2000:]}")
        return json.loads(r.stdout.strip().splitlines()[-1])
    finally:
        os.killpg(redis_proc.pid, signal.SIGKILL)
        redis_proc.wait()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", type=int, default=300)
    p.add_argument("--latency", type=int, default=40)
    p.add_argument("--kill-tasks", type=int, default=120)
    p.add_argument("--flood", type=int, default=120)
    p.add_argument("--celery-python", default="/tmp/fleetplane-bench-venv/bin/python")
    args = p.parse_args()
    if shutil.which("redis-server") is None or not Path(args.celery_python).exists():
        print("error: the baseline needs redis-server on the PATH and a Python with celery[redis] "
              f"(--celery-python, now {args.celery_python})", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="workload-bench-"))
    try:
        fp = bench_fleet(args, workdir)
        print(f"fleetplane: {fp['throughput']:.1f} no-op tasks/s; submit-to-result p50 {fp['p50_ms']} ms, "
              f"p99 {fp['p99_ms']} ms; 2 of 4 workers SIGKILLed: {fp['lost']} lost, {fp['duplicated']} "
              f"completed twice (of {fp['kill_acked']}); low-priority task behind a flood of {args.flood}: waited "
              f"{fp['low_priority_wait_s']:.3f} s with a 1 s maximum delay until it started (overrun {fp['aging_overrun_s']:.3f} s; "
              f"{fp['aging_overrun_dispatch_s']:.3f} s until dispatched; a flood task's run took {fp['task_run_s']:.3f} s)",
              flush=True)
        cel = bench_celery(args, workdir)
        print(f"celery+redis (acks_late, prefetch 1, 4 workers): {cel['throughput']:.1f} no-op tasks/s; p50 "
              f"{cel['p50_ms']} ms, p99 {cel['p99_ms']} ms; 2 of 4 workers SIGKILLed: {cel['lost']} lost "
              f"(no result after 60 s), {cel['duplicated']} ran twice; low-priority task behind the flood waited "
              f"{cel['low_priority_wait_s']:.3f} s", flush=True)
        ratio = fp["throughput"] / cel["throughput"]
        print(f"throughput ratio fleetplane / celery: {ratio:.3f}")
        print(json.dumps({"throughput_ratio": round(ratio, 3), "fleetplane_tasks_per_s": round(fp["throughput"], 1),
                          "celery_tasks_per_s": round(cel["throughput"], 1), "p50_ms": fp["p50_ms"],
                          "p99_ms": fp["p99_ms"], "celery_p50_ms": cel["p50_ms"], "celery_p99_ms": cel["p99_ms"],
                          "lost": fp["lost"], "duplicated": fp["duplicated"], "celery_lost": cel["lost"],
                          "celery_duplicated": cel["duplicated"], "aging_overrun_s": round(fp["aging_overrun_s"], 3),
                          "aging_overrun_dispatch_s": round(fp["aging_overrun_dispatch_s"], 3),
                          "task_run_s": round(fp["task_run_s"], 3), "task_sleep_s": 0.1,
                          "celery_low_priority_wait_s": round(cel["low_priority_wait_s"], 3),
                          "tasks": args.tasks, "kill_tasks": args.kill_tasks, "flood": args.flood}))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
