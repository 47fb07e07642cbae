"""Seeded simulations of the whole workload service under faults (issue 20, "Must show").

Gateway, durable queue (SQLite in a temporary file), four workers (two task types, one worker
serving both), code, data and billing services and bursty tenants run in the deterministic
simulator over a network that duplicates and reorders messages. Faults: a worker crashed
mid-task and restarted, the queue process crashed and restarted from its database, a worker
cut off from the queue for longer than a lease. Every checker must say valid; 0 tasks lost, 0
completed twice. A failing seed is printed.
"""

from __future__ import annotations

import random

import pytest

from actors.simulator import Simulator
from protocols.workload.billing import BillingService
from protocols.workload.gateway import Gateway
from protocols.workload.services import CodeService, DataService
from protocols.workload.tenants import Tenants
from protocols.workload.worker import Worker
from topologies.checkers import run_checkers
from topologies.hosts import sim_api
from topologies.workload.checks import CHECKERS
from topologies.workload.hosts import SimRunner
from topologies.workload.store import durable_queue
from transport.sim import LinkSpec, SimNetwork

Q, GW, BILL, CODE, DATA, TEN = "q/queue", "gw/gateway", "b/billing", "c/code", "d/data", "t/tenants"
WORKERS = {"w1/worker": ["py"], "w2/worker": ["py"], "w3/worker": ["sh"], "w4/worker": ["py", "sh"]}
TENANTS = {"acme": {"token": "a", "class": "gold"}, "zeta": {"token": "z", "class": "basic"},
           "flood": {"token": "f", "class": "basic"}}


def host_for(seed, address):
    h = SimRunner(random.Random(f"{seed}/{address}/host"))
    return lambda eff, addr, sim: h.on_effect(eff, sim_api(sim, addr))


def build(seed, db, total=80, faults=True):
    net = SimNetwork(default=LinkSpec(duplicate=0.05 if faults else 0.0, reorder=0.05 if faults else 0.0))
    sim = Simulator(seed, network=net)
    inc = {"n": 0}

    def rng(addr):
        inc["n"] += 1
        return random.Random(f"{seed}/{addr}/{inc['n']}")

    def queue():
        return durable_queue(["py", "sh"], db=str(db), lease_ttl=2.0, billing=BILL, tick=0.1, worker_ttl=3.0,
                             fsync=False, rng=rng(Q))

    def worker(addr):
        return Worker(Q, WORKERS[addr], slots=2, code_service=CODE, data_service=DATA, heartbeat=0.5,
                      limits={"wall_s": 30.0}, address=addr, rng=rng(addr))

    sim.add(GW, Gateway({"py": Q, "sh": Q}, TENANTS, classes={"gold": 7, "basic": 2}, resend=0.5, rng=rng(GW)))
    sim.add(Q, queue())
    for addr in WORKERS:
        sim.add(addr, worker(addr), host=host_for(seed, addr))
    keep = lambda eff, addr, sim: None  # noqa: E731  (their Persist effects: these services are not restarted here)
    sim.add(CODE, CodeService(), host=keep)
    sim.add(DATA, DataService(), host=keep)
    sim.add(BILL, BillingService(increment=0.1, minimum=0.5), host=keep)
    sim.add(TEN, Tenants(GW, {t: v["token"] for t, v in TENANTS.items()}, ["py", "sh"], total=total, rate=0.6,
                         burst=[1, 8], seconds=[0.05, 3.0], fail=0.1, priorities=[0, 5, 9], max_delays=[2.0, 15.0],
                         code_service=CODE, resend=1.0, address=TEN, rng=rng(TEN)))
    return sim, queue, worker


def run_with_faults(seed, db, faults=True, total=80):
    sim, queue, worker = build(seed, db, total=total, faults=faults)
    r = random.Random(seed)
    if faults:
        victim = r.choice(sorted(WORKERS))
        t_kill = r.uniform(3.0, 8.0)
        sim.schedule(t_kill, lambda: sim.crash(victim))
        sim.schedule(t_kill + r.uniform(0.5, 4.0), lambda: sim.restart(victim, worker(victim)))

        def queue_down():
            sim.machine(Q).store.close()
            sim.crash(Q)

        t_q = r.uniform(10.0, 16.0)
        sim.schedule(t_q, queue_down)
        sim.schedule(t_q + r.uniform(0.5, 3.0), lambda: sim.restart(Q, queue()))
        cut = r.choice(sorted(w for w in WORKERS if w != victim)).partition("/")[0]
        t_cut = r.uniform(18.0, 24.0)
        sim.schedule(t_cut, lambda: (sim.cut(cut, "q"), sim.cut("q", cut)))
        sim.schedule(t_cut + 3.0, sim.heal)
    sim.run(until=150.0)
    return sim


def summary(sim):
    events = sim.event_log.events()
    count = lambda k: sum(1 for e in events if e["kind"] == k)  # noqa: E731
    done = [e["fields"]["task"] for e in events if e["kind"] == "workload.task_done"]
    return events, {"acked": count("workload.client_acked"), "ended": len(done),
                    "completed_twice": len(done) - len(set(done)), "duplicates_discarded": count("workload.result_discarded"),
                    "fenced": count("workload.fenced"), "lapsed": count("workload.lease_lapsed"),
                    "billed": count("workload.billed"), "grants": sum(1 for e in events if e["kind"] == "workload.access"
                                                                      and e["fields"].get("granted"))}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_workload_service_under_worker_kill_queue_kill_cut_and_duplicates(seed, tmp_path):
    sim = run_with_faults(seed, tmp_path / "queue.sqlite")
    events, s = summary(sim)
    print(f"seed {seed}: {s}")
    verdicts = {v.checker: v for v in run_checkers(events, [c.name for c in CHECKERS])}
    bad = {n: (v.status, v.summary, v.evidence[:2]) for n, v in verdicts.items() if v.status != "valid"}
    assert not bad, f"seed {seed}: {bad}; {s}"
    assert s["acked"] == 80 and s["ended"] == 80 and s["completed_twice"] == 0, f"seed {seed}: {s}"
    assert any(e["kind"] == "sim.crash" and e["node"] == "q" for e in events), f"seed {seed}: the queue never crashed"
    restarted = [e for e in events if e["kind"] == "workload.queue_started"]
    assert len(restarted) == 2 and restarted[1]["fields"]["restored"] > 0, f"seed {seed}: {restarted}"
    assert s["billed"] >= 70, f"seed {seed}: {s}"  # every kept result but the lost ones is billed
    assert s["lapsed"] > 0, f"seed {seed}: no lease lapsed: the faults hit no running task"


def test_the_checkers_see_a_queue_that_forgets_its_tasks(tmp_path):
    """The same run with the queue restarted on an empty database: tasks acknowledged before the crash are lost
    and no-task-lost says so (the durable store is what the test above depends on)."""
    seed = 2
    sim, queue, worker = build(seed, tmp_path / "q.sqlite", total=60, faults=False)
    empty = {"n": 0}

    def amnesiac():
        empty["n"] += 1
        sim.machine(Q).store.close()
        sim.crash(Q)
        sim.restart(Q, durable_queue(["py", "sh"], db=str(tmp_path / f"empty{empty['n']}.sqlite"), lease_ttl=2.0,
                                     billing=BILL, tick=0.1, fsync=False, rng=random.Random(99)))

    def when_busy():  # forget while tasks wait or run
        if not empty["n"] and sum(len(q) for q in sim.machine(Q).machine.queues.values()) >= 3:
            amnesiac()

    for i in range(1, 80):
        sim.schedule(i * 0.5, when_busy)
    sim.run(until=120.0)
    events, s = summary(sim)
    v = {x.checker: x for x in run_checkers(events, ["no-task-lost"])}["no-task-lost"]
    assert v.status == "invalid" and v.evidence, (v.summary, s)


def test_a_seed_replays_the_same_run(tmp_path):
    a = summary(run_with_faults(5, tmp_path / "a.sqlite", total=40))[1]
    b = summary(run_with_faults(5, tmp_path / "b.sqlite", total=40))[1]
    assert a == b
