"""The edge topology (issue 7, deliverable 5 and "Must show"): topologies/edge.toml in the simulator,
under the three nemeses in the simulator (each chaos run replayed from its seed and compared), and one
multi-process chaos run with the manager isolated. The invariants are the checkers of
topologies/edge/checks.py, registered with the chaos harness."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.eventlog import read_events
from topologies.chaos import run_chaos
from topologies.launcher import run_sim
from topologies.loader import load_topology
from topologies.report import make_report

ROOT = Path(__file__).resolve().parents[1]
EDGE = ROOT / "topologies" / "edge.toml"
EDGE_CHECKERS = ("one-leader-per-island-term", "plan-holders", "governance", "ratified-after-heal")


@pytest.fixture(scope="module")
def topo():
    return load_topology(EDGE)


def statuses(verdicts: list[dict]) -> dict[str, str]:
    return {v["checker"]: v["status"] for v in verdicts}


def test_edge_toml_is_a_manager_and_two_heterogeneous_sites(topo):
    edges = [(n.name, a) for n in topo.nodes for a in n.actors if a.kind == "localplane.edge"]
    managers = [(n.name, a) for n in topo.nodes for a in n.actors if a.kind == "localplane.manager"]
    assert len(managers) == 1 and len(topo.node(managers[0][0]).actors) == 1, "the manager has its own process"
    # one process per edge node: no two edge nodes share one; the site's simulated clients ride on the gateways
    assert all([a.kind for a in topo.node(n).actors].count("localplane.edge") == 1 and
               {a.kind for a in topo.node(n).actors} <= {"localplane.edge", "localplane.clients"}
               for n, _ in edges), "one process per edge node"
    assert sorted(n.name for n in topo.nodes for a in n.actors if a.kind == "localplane.clients") == ["a0", "b0"]
    sites = {"a": sum(n.startswith("a") for n, _ in edges), "b": sum(n.startswith("b") for n, _ in edges)}
    assert sites == {"a": 8, "b": 12}
    assert sorted(managers[0][1].params["edges"]) == sorted(f"{n}/{a.name}" for n, a in edges)
    profiles = {repr(sorted(a.params["capability"].items())) for _, a in edges}
    assert len(profiles) == len(edges), "every edge node has its own capabilities"
    assert {a.params["criteria"]["backup_power"] for _, a in edges} >= {0.0, 1.0}
    assert {c.nemesis for c in topo.chaos} == {"one", "random-halves", "flaky", "split-site"}
    assert all(c.target == "mgr" for c in topo.chaos if c.nemesis in ("one", "flaky", "split-site"))


def test_a_plain_run_in_the_simulator_ends_with_the_initial_final_plan(topo, tmp_path):
    result = run_sim(topo, tmp_path, seed=1, quiet=True)
    assert result.ok and result.reason == "done", result.summary()
    report = make_report(tmp_path)
    v = statuses(report["verdicts"])
    assert v["plan-holders"] == "valid" and v["governance"] == "valid", report["verdicts"]
    assert all(v[c] != "invalid" for c in EDGE_CHECKERS)
    kinds = [e["kind"] for e in read_events(tmp_path / "events.jsonl")]
    assert kinds.count("edge.deployed") == 20 and "manager.plan_final" in kinds
    assert "edge timeline" in (tmp_path / "report.html").read_text()


def test_reports_without_edge_events_have_no_edge_section(tmp_path):
    pingpong = load_topology(ROOT / "topologies" / "pingpong.toml")
    run_sim(pingpong, tmp_path, seed=1, quiet=True)
    report = make_report(tmp_path)
    assert all(v["status"] == "unknown" for v in report["verdicts"] if v["checker"] in EDGE_CHECKERS)
    assert "edge timeline" not in (tmp_path / "report.html").read_text()


def chaos_overrides(topo, nemesis: str) -> dict:
    """The topology's [[chaos]] entry for ``nemesis`` (target, loss, duration), starting at 2 s."""
    entry = next(c for c in topo.chaos if c.nemesis == nemesis)
    out = {"start": 2.0, "duration": entry.duration}
    for key in ("target", "loss"):
        if getattr(entry, key) is not None:
            out[key] = getattr(entry, key)
    return out


@pytest.mark.parametrize("nemesis", ["one", "random-halves", "flaky"])
def test_chaos_in_the_simulator(topo, tmp_path, nemesis):
    result = run_chaos(topo, tmp_path, seed=1, nemesis=nemesis, overrides=chaos_overrides(topo, nemesis), sim=True,
                       quiet=True)
    assert result.replay_identical, result.first_difference
    v = statuses(result.verdicts)
    events = read_events(tmp_path / "events.jsonl")
    kinds = [e["kind"] for e in events]
    assert result.ok, result.verdicts
    assert all(v[c] != "invalid" for c in EDGE_CHECKERS), result.verdicts
    assert v["plan-holders"] == "valid" and v["governance"] == "valid"
    if nemesis in ("one", "random-halves"):
        # a partition cut the manager off: an island elected a leader, planned, and the heal ended in a final plan
        assert v["one-leader-per-island-term"] == "valid" and v["ratified-after-heal"] == "valid", result.verdicts
        assert "plane.leader" in kinds and "plane.plan_complete" in kinds
        heal = next(e["time"] for e in events if e["kind"] == "nemesis.heal")
        assert any(e["kind"] == "manager.plan_final" and e["time"] > heal for e in events)
    if nemesis == "one":
        declared = {e["node"] for e in events if e["kind"] == "edge.isolation_declared"}
        assert len(declared) == 20, f"every edge node loses the manager: {sorted(declared)}"
    assert "edge timeline" in (tmp_path / "report.html").read_text()


@pytest.mark.timeout(120)
def test_real_processes_under_chaos_with_the_manager_isolated(topo, tmp_path):
    result = run_chaos(topo, tmp_path, seed=1, nemesis="one", overrides={"target": "mgr", "start": 2.0, "duration": 3.0},
                       quiet=True)
    assert result.ok and not result.run.reason.startswith("failed"), (result.run.summary(), result.verdicts)
    assert all(info["exit"] is not None for info in result.run.nodes.values()), "every node process was stopped"
    v = statuses(result.verdicts)
    assert all(v[c] == "valid" for c in EDGE_CHECKERS), result.verdicts
    events = read_events(tmp_path / "events.jsonl")
    kinds = [e["kind"] for e in events]
    assert "nemesis.grudge" in kinds and "nemesis.heal" in kinds
    heal = next(e["time"] for e in events if e["kind"] == "nemesis.heal")
    grudge = next(e["time"] for e in events if e["kind"] == "nemesis.grudge")
    assert any(e["kind"] == "plane.plan_complete" and grudge < e["time"] < heal for e in events), \
        "the isolated edge nodes built a temporary plan"
    assert any(e["kind"] == "manager.plan_final" and e["time"] > heal for e in events), "a final plan after the heal"
