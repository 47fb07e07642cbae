"""The boot storm as a topology: 1,000 servers over 4 processes, in the simulator, as real
processes, and under chaos with the controller node isolated (issue 5, "Must show")."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.eventlog import read_events
from topologies.chaos import run_chaos
from topologies.launcher import run_real, run_sim
from topologies.loader import load_topology
from topologies.report import make_report

ROOT = Path(__file__).resolve().parents[1]
BOOT_STORM = ROOT / "topologies" / "boot_storm.toml"
WORKFLOW_CHECKERS = ("admission-limit", "leases-end", "servers-done", "no-grant-while-dormant")


@pytest.fixture(scope="module")
def topo():
    t = load_topology(BOOT_STORM)
    servers = [a for n in t.nodes for a in n.actors if a.kind == "workflow.server"]
    server_nodes = {n.name for n in t.nodes if any(a.kind == "workflow.server" for a in n.actors)}
    assert len(servers) >= 1000 and len(server_nodes) >= 4, "the must-show needs 1,000 servers over 4 processes"
    return t


def verdicts(run_dir: Path) -> dict[str, str]:
    return {v["checker"]: v["status"] for v in make_report(run_dir)["verdicts"]}


@pytest.mark.parametrize("seed", [1, 2])
def test_boot_storm_in_the_simulator(topo, tmp_path, seed):
    result = run_sim(topo, tmp_path, seed, quiet=True)
    assert result.ok and result.progress == 1000, f"seed {seed}: {result.summary()}"
    v = verdicts(tmp_path)
    assert all(v[c] == "valid" for c in WORKFLOW_CHECKERS), f"seed {seed}: {v}"
    states = {e["fields"]["to"] for e in read_events(tmp_path / "events.jsonl") if e["kind"] == "server.state"}
    assert {"pending", "parking", "dormant", "running", "done"} <= states, f"seed {seed}: states seen {states}"


@pytest.mark.timeout(300)
def test_boot_storm_as_real_processes(topo, tmp_path):
    result = run_real(topo, tmp_path, quiet=True)
    assert result.ok and result.reason == "done" and result.progress == 1000, result.summary()
    assert all(info["exit"] == 0 for info in result.nodes.values())
    v = verdicts(tmp_path)
    assert all(v[c] == "valid" for c in WORKFLOW_CHECKERS), v


@pytest.mark.timeout(300)
def test_boot_storm_under_chaos_with_the_controller_isolated(topo, tmp_path):
    result = run_chaos(topo, tmp_path, seed=1, nemesis="one", overrides={"target": "ctl", "start": 1.0, "duration": 3.0},
                       quiet=True)
    assert result.run.done == 1000, result.run.summary()
    v = {x["checker"]: x["status"] for x in result.verdicts}
    assert all(v[c] == "valid" for c in WORKFLOW_CHECKERS), result.verdicts
    kinds = [e["kind"] for e in read_events(tmp_path / "events.jsonl")]
    assert "nemesis.grudge" in kinds and "nemesis.heal" in kinds


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize("seed", [1, 3])
def test_boot_storm_under_chaos_with_the_controller_node_killed(topo, tmp_path, seed):
    """Issue 16, must-show: ``fleetplane chaos topologies/boot_storm.toml --nemesis kill --target ctl`` as real
    processes: the controllers come back as new incarnations from their durable records, every server is done
    and the workflow checkers say valid - no-grant-while-dormant may have nothing to judge (unknown) when, with
    real timing, no server happened to be told dormant; it must never say invalid."""
    result = run_chaos(topo, tmp_path, seed=seed, nemesis="kill", overrides={"target": "ctl"}, quiet=True)
    assert result.run.done == 1000, f"seed {seed}: {result.run.summary()}"
    v = {x["checker"]: x["status"] for x in result.verdicts}
    assert all(v[c] == "valid" for c in WORKFLOW_CHECKERS if c != "no-grant-while-dormant"), \
        f"seed {seed}: {result.verdicts}"
    assert v["no-grant-while-dormant"] in ("valid", "unknown"), f"seed {seed}: {result.verdicts}"
    starts = [e for e in read_events(tmp_path / "events.jsonl") if e["kind"] == "controller.start"]
    assert len(starts) >= 4, f"seed {seed}: the controller node was not restarted ({len(starts)} starts)"
