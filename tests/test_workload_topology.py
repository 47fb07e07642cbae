"""topologies/workload.toml under fleetplane chaos: in the simulator (seeded, replayed) and as real processes
(issue 20, "Must show": SIGKILL of workers mid-task, SIGKILL of the queue process, a worker cut off from the
queue, duplicated messages; every checker valid, 0 tasks lost, 0 completed twice).

The real-process tests are in the slow tier (tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.eventlog import read_events
from topologies.chaos import run_chaos
from topologies.loader import load_topology

ROOT = Path(__file__).resolve().parents[1]
WORKLOAD_CHECKERS = ("tasks-end-once", "no-task-lost", "max-delay-held", "billed-as-metered",
                     "credential-while-running")


@pytest.fixture(scope="module")
def topo():
    return load_topology(ROOT / "topologies" / "workload.toml")


def statuses(verdicts):
    return {v["checker"]: v["status"] for v in verdicts}


def ends(events):
    """Acknowledged tasks, and the ends of tasks: each end once (a restarted queue re-states the ends it holds,
    ``workload.done_restated``: the same end, counted once when the original event is there, else in its place)."""
    done, seen = [], set()
    for e in events:
        if e["kind"] in ("workload.task_done", "workload.done_restated"):
            tid = e["fields"]["task"]
            if e["kind"] == "workload.task_done":
                done.append(tid)
            seen.add(tid)
    restated_only = seen - set(done)  # the original end died with the SIGKILLed queue's unflushed events
    acked = {e["fields"]["task"] for e in events if e["kind"] in ("workload.client_acked", "workload.acknowledged")}
    return acked, done + sorted(restated_only)


def test_workload_toml_is_a_gateway_queue_workers_services_and_tenants(topo):
    kinds = {a.kind for n in topo.nodes for a in n.actors}
    assert kinds == {"workload.gateway", "workload.queue", "workload.worker", "workload.code", "workload.data",
                     "workload.billing", "workload.tenants"}
    workers = [n for n in topo.nodes if any(a.kind == "workload.worker" for a in n.actors)]
    assert len(workers) == 3 and len({n.name for n in workers}) == 3  # one process each
    types = {t for n in workers for a in n.actors for t in a.params["types"]}
    assert types == {"etl", "report"}


@pytest.mark.parametrize("seed", [1, 2])
def test_chaos_from_the_file_in_the_simulator(topo, tmp_path, seed):
    result = run_chaos(topo, tmp_path, seed=seed, sim=True, quiet=True)
    assert result.replay_identical, result.first_difference
    v = statuses(result.verdicts)
    assert result.ok and all(v[c] == "valid" for c in WORKLOAD_CHECKERS), (seed, result.verdicts)
    events = read_events(tmp_path / "events.jsonl")
    acked, done = ends(events)
    assert len(acked) == 60 and set(done) == acked and len(done) == len(set(done)), (seed, len(acked), len(done))
    kills = [e for e in events if e["kind"] == "nemesis.kill"]
    assert {e["fields"]["node"] for e in kills} >= {"q", "w1"}, kills
    page = (tmp_path / "report.html").read_text()
    assert "Workload: dispatch waits against the maximum delay" in page and "60 tasks acknowledged" in page


def test_reports_without_workload_events_have_no_workload_section():
    from topologies.workload.report import workload_chart

    assert workload_chart([{"time": 0.0, "node": "a", "actor": "b", "kind": "pingpong.round", "fields": {}}],
                          [], 0.0, 1.0) is None


def smaller(topo, total=30):
    """The topology with ``total`` tenants' tasks arriving twice as fast (a shorter real-process run)."""
    import attrs

    for n in topo.nodes:
        for a in n.actors:
            if a.kind == "workload.tenants":
                a.params.update(total=total, rate=2.0)
    return attrs.evolve(topo, run=attrs.evolve(topo.run, progress_total=total))


@pytest.mark.timeout(240)
@pytest.mark.parametrize("target", ["q"])  # a worker's SIGKILL: the simulated chaos above and tests/bench/workload.py
def test_real_processes_survive_sigkill(tmp_path, target):
    topo = smaller(load_topology(ROOT / "topologies" / "workload.toml"))
    result = run_chaos(topo, tmp_path, seed=1, nemesis="kill", overrides={"target": target, "start": 4.0,
                                                                          "duration": 2.0}, quiet=True)
    assert result.ok and not result.run.reason.startswith("failed"), (result.run.summary(), result.verdicts)
    assert all(info["exit"] is not None for info in result.run.nodes.values()), "every node process was stopped"
    v = statuses(result.verdicts)
    assert all(v[c] == "valid" for c in WORKLOAD_CHECKERS if c != "credential-while-running"), result.verdicts
    events = read_events(tmp_path / "events.jsonl")
    acked, done = ends(events)
    assert len(acked) == 30 and set(done) == acked and len(done) == len(set(done))
    assert any(e["kind"] == "nemesis.kill" and e["fields"].get("node") == target for e in events)
    if target == "q":
        started = [e for e in events if e["kind"] == "workload.queue_started"]
        assert len(started) == 2 and started[1]["fields"]["restored"] > 0, started
