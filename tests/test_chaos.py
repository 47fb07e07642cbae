"""`fleetplane chaos`: nemeses in the simulator (replayed and compared) and against real
processes (kill, pause, partition) with recovery; the report."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from actors.eventlog import read_events
from protocols.core import Emit
from topologies.chaos import _first_difference, build_schedule, run_chaos
from topologies.kinds import add_kind, make_kind
from topologies.loader import load_topology, parse_topology
from topologies.report import make_report

ROOT = Path(__file__).resolve().parents[1]
PINGPONG = ROOT / "topologies" / "pingpong.toml"


@pytest.fixture(scope="module")
def topo():
    return load_topology(PINGPONG)


@pytest.mark.parametrize("nemesis", ["one", "majority", "bridge", "random-halves", "asymmetric", "flaky", "slow",
                                     "duplicate", "reorder", "kill", "pause", "mix"])
def test_every_nemesis_in_the_simulator_keeps_the_invariants_and_replays(topo, tmp_path, nemesis):
    spec = {"target": "beta"} if nemesis in ("one", "asymmetric", "kill", "pause") else {}
    result = run_chaos(topo, tmp_path, seed=11, nemesis=nemesis, overrides=spec, sim=True, quiet=True)
    assert result.replay_identical, f"seed 11, {nemesis}: {result.first_difference}"
    statuses = {v["checker"]: v["status"] for v in result.verdicts}
    # a nemesis that blocks links gives the partition checker something to judge; one that only
    # degrades them (or kills a node) does not, and the checker must say so rather than "valid"
    blocks = nemesis in ("one", "majority", "bridge", "random-halves", "asymmetric", "pause", "mix")
    assert statuses["no-delivery-across-partition"] == ("valid" if blocks else "unknown"), (nemesis, result.verdicts)
    assert "invalid" not in statuses.values(), (nemesis, result.verdicts)
    assert result.run.done == 2, f"seed 11, {nemesis}: ping-pong must finish once the faults stop"
    # the run finished, so the run and the chaos verdict say so (a quiescent simulator is not "duration")
    assert result.run.ok and result.run.reason == "done", f"seed 11, {nemesis}: {result.run.reason}"
    assert result.ok, f"seed 11, {nemesis}: {result.verdicts}"
    kinds = [e["kind"] for e in read_events(tmp_path / "events.jsonl")]
    assert any(k.startswith("nemesis.") for k in kinds), "every fault is in the event log"
    assert (tmp_path / "report.html").exists() and (tmp_path / "results.json").exists()


def test_partition_actually_blocks_traffic_in_the_simulator(topo, tmp_path):
    run_chaos(topo, tmp_path, seed=3, nemesis="one", overrides={"target": "beta", "start": 0.5, "duration": 1.0}, sim=True, quiet=True)
    events = read_events(tmp_path / "events.jsonl")
    during = [e for e in events if e["kind"] == "net.deliver" and 0.5 <= e["time"] < 1.5]
    drops = [e for e in events if e["kind"] == "net.drop" and 0.5 <= e["time"] < 1.5]
    assert during == [] and drops, "with beta isolated nothing is delivered and pings are dropped"
    assert any(e["kind"] == "pingpong.retry" for e in events if 0.5 <= e["time"] < 1.6)


class Flaky:
    """A deliberately non-deterministic machine: it reads the global random source."""

    tick_interval = 0.5

    def tick(self, now):
        return [Emit("flaky.noise", {"x": random.random()})]

    def handle(self, msg, sender, now):
        return []


add_kind(make_kind("test.flaky", Flaky), owner="test")


def test_nondeterminism_is_caught_and_the_first_differing_event_named(tmp_path):
    text = """
name = "noisy"
[run]
duration = 2.0
[[nodes]]
name = "a"
[[nodes.actors]]
name = "n"
kind = "test.flaky"
[[nodes]]
name = "b"
[[nodes.actors]]
name = "n"
kind = "test.flaky"
"""
    result = run_chaos(parse_topology(text), tmp_path, seed=1, nemesis="one", sim=True, quiet=True)
    assert result.replay_identical is False
    assert re.search(r"event \d+ differs", result.first_difference)
    assert "flaky.noise" in result.first_difference
    assert not result.ok


def test_first_difference_names_the_event(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text('{"n":1}\n{"n":2}\n{"n":3}\n')
    b.write_text('{"n":1}\n{"n":20}\n{"n":3}\n')
    assert _first_difference(a, b).startswith("event 2 differs")
    b.write_text('{"n":1}\n{"n":2}\n')
    assert "differ in length" in _first_difference(a, b)
    b.write_text(a.read_text())
    assert _first_difference(a, b) is None


@pytest.mark.timeout(120)
@pytest.mark.parametrize("nemesis", ["kill", "pause"])
def test_kill_and_pause_real_processes_and_recover(topo, tmp_path, nemesis):
    result = run_chaos(topo, tmp_path, seed=5, nemesis=nemesis,
                       overrides={"target": "beta", "start": 0.5, "duration": 1.5}, quiet=True)
    assert result.run.done == 2, f"{nemesis}: ping-pong did not finish after recovery: {result.run.summary()}"
    events = read_events(tmp_path / "events.jsonl")
    kinds = [e["kind"] for e in events]
    assert f"nemesis.{nemesis}" in kinds and f"nemesis.{'restart' if nemesis == 'kill' else 'resume'}" in kinds
    down = [e for e in events if e["kind"] == "transport.peer_down" and e["fields"]["peer"] == "beta"]
    assert down, f"{nemesis}: the other nodes must notice beta is gone"
    if nemesis == "kill":
        starts = [e for e in events if e["kind"] == "node.started" and e["node"] == "beta"]
        assert len(starts) == 2 and starts[0]["fields"]["incarnation"] != starts[1]["fields"]["incarnation"]
    assert "invalid" not in {v["status"] for v in result.verdicts}
    statuses = {v["checker"]: v["status"] for v in result.verdicts}
    if nemesis == "kill":  # a restart is judged: a new incarnation
        assert statuses["fresh-incarnations"] == "valid" and result.ok, result.verdicts
    else:  # a real pause of ping-pong leaves no runtime checker anything to judge, and the run says so
        assert set(statuses.values()) == {"unknown"} and not result.judged and not result.ok, result.verdicts


@pytest.mark.timeout(120)
def test_partition_real_processes_through_the_fault_hooks(topo, tmp_path):
    result = run_chaos(topo, tmp_path, seed=5, nemesis="one",
                       overrides={"target": "beta", "start": 0.5, "duration": 1.5}, quiet=True)
    assert result.run.done == 2
    events = read_events(tmp_path / "events.jsonl")
    faults = [e for e in events if e["kind"] == "transport.faults"]
    assert {e["node"] for e in faults} == {"alpha", "beta", "gamma"}, "every node got its plan"
    beta_plan = next(e for e in faults if e["node"] == "beta")["fields"]
    assert {tuple(r["peers"]) for r in beta_plan["rules"]} == {("alpha",), ("gamma",)}
    assert any(e["kind"] == "transport.peer_down" for e in events), "a partition looks like a down peer"


def test_report_of_a_run_directory(topo, tmp_path):
    run_chaos(topo, tmp_path, seed=2, nemesis="one", overrides={"target": "beta"}, sim=True, quiet=True)
    results = make_report(tmp_path)
    assert results["valid"] and results["progress"] == 40
    assert results["availability"]["fault_periods"][0]["kind"] == "grudge"
    assert results["messages_per_progress"] > 1
    page = (tmp_path / "report.html").read_text()
    assert "<svg" in page and "no-delivery-across-partition" in page and "<script" not in page
    proc = subprocess.run([sys.executable, "-m", "topologies.cli", "report", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "VALID    no-delivery-across-partition" in proc.stdout, proc.stdout
    assert json.loads((tmp_path / "results.json").read_text())["events"] == results["events"]


def test_chaos_cli_rejects_bad_arguments(tmp_path):
    for args, msg in ((["--nemesis", "earthquake"], "unknown nemesis 'earthquake'"),
                      (["--nemesis", "one", "--target", "zeta"], "--target 'zeta' is not a node"),
                      ([], "no --nemesis given"),
                      (["--nemesis", "one", "--nodes", "mon-*"], "'mon-*' matches no node"),
                      (["--nemesis", "one", "--nodes", "a*,b*", "--target", "gamma"], "target 'gamma' is not among the selected"),
                      (["--nemesis", "one", "--loss", "0.5"], "--loss applies only to --nemesis flaky"),
                      (["--nemesis", "flaky", "--probability", "0.5"], "--probability applies only to --nemesis duplicate or reorder"),
                      (["--nemesis", "majorities-ring"], "needs at least 5 nodes")):
        proc = subprocess.run([sys.executable, "-m", "topologies.cli", "chaos", str(PINGPONG), "--sim", "-q",
                               "--out", str(tmp_path), *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert msg in proc.stderr and "Traceback" not in proc.stderr
        assert not any(tmp_path.iterdir()), f"{args}: a refused command left a run directory behind"


RACKS = ROOT / "topologies" / "racks.toml"


def test_a_nemesis_restricted_to_some_nodes_never_touches_the_others():
    topo = load_topology(RACKS)
    mons = [n for n in topo.node_names if n.startswith("mon-")]
    for seed in range(5):
        sched = build_schedule(topo, seed, "majority", {"nodes": ["mon-*"]})
        cuts = [op for _t, op in sched if op.kind == "grudge"]
        assert cuts, "no partition scheduled"
        for op in cuts:
            touched = {x for pair in op.blocked for x in pair}
            assert touched == set(mons), f"seed {seed}: the mesh cut touched {sorted(touched - set(mons))}"
        # unrestricted, the same nemesis does cut rack controls from monitors
        whole = [op for _t, op in build_schedule(topo, seed, "majority") if op.kind == "grudge"]
        assert any(x.startswith("racks-") for op in whole for pair in op.blocked for x in pair)


def test_racks_default_chaos_cuts_the_mesh_then_the_main_network():
    topo = load_topology(RACKS)
    assert topo.run.recovery >= 5.0
    cuts = [(t, op) for t, op in build_schedule(topo, 1) if op.kind == "grudge"]
    assert len(cuts) == 2
    (t1, mesh), (t2, main) = cuts
    assert t1 < t2
    assert all(a.startswith("mon-") and b.startswith("mon-") for a, b in mesh.blocked)
    # the main network's cut blocks links that carry traffic (issue 17, deliverable 3; the old racks-* <-> racks-*
    # cut carried none): every rack control's link to the inventory service, on the main channel, nothing else
    racks = [n for n in topo.node_names if n.startswith("racks-")]
    assert main.blocked == {(r, "inventory") for r in racks} | {("inventory", r) for r in racks}
    assert all(topo.channel_of(a, b) == "main" for a, b in main.blocked)


def test_a_declared_checker_that_answers_unknown_fails_the_chaos_run(topo, tmp_path):
    # ping-pong traces no asks in the simulator: requests-answered cannot judge, so a run that promised it fails
    result = run_chaos(topo, tmp_path / "a", seed=7, nemesis="majority", sim=True, quiet=True,
                       must_judge=["requests-answered", "no-delivery-across-partition"])
    assert result.run.ok and result.replay_identical
    assert result.unjudged == ("requests-answered",) and not result.ok
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())["chaos"]
    assert summary["unjudged"] == ["requests-answered"] and summary["ok"] is False
    # the same run, declaring only what it can judge, passes
    result = run_chaos(topo, tmp_path / "b", seed=7, nemesis="majority", sim=True, quiet=True,
                       must_judge=["no-delivery-across-partition"])
    assert result.ok and result.unjudged == ()


def test_chaos_cli_says_which_declared_checker_did_not_judge(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "topologies.cli", "chaos", str(PINGPONG), "--sim", "-q",
                           "--nemesis", "majority", "--seed", "7", "--must-judge", "requests-answered",
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "NOT JUDGED requests-answered" in proc.stdout and "chaos FAILED (not judged: requests-answered)" in proc.stdout
    assert "(must judge)" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "topologies.cli", "chaos", str(PINGPONG), "--sim", "-q",
                           "--nemesis", "majority", "--must-judge", "admission-limit", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "'admission-limit' is not a checker of this topology" in proc.stderr


def test_a_run_shows_only_the_checkers_of_its_plugins(topo, tmp_path):
    result = run_chaos(topo, tmp_path, seed=7, nemesis="majority", sim=True, quiet=True)
    assert [v["checker"] for v in result.verdicts] == ["no-crash-on-bad-input", "requests-answered",
                                                       "no-delivery-across-partition", "deliveries-match-sends",
                                                       "fresh-incarnations"]


def test_an_interrupted_run_leaves_liveness_unknown_and_still_judges_safety(tmp_path):
    def ev(t, node, actor, kind, **f):
        return json.dumps({"time": t, "node": node, "actor": actor, "kind": kind, "fields": f})

    lines = [ev(0.0, "ctl", "store", "controller.start", limit=1, epoch=1),
             ev(0.1, "srv", "s1", "server.state", **{"from": "invalid", "to": "pending"}),
             ev(0.2, "ctl", "store", "admission.grant", server="srv/s1", lease="L1", holders=1, limit=1),
             ev(0.3, "ctl", "store", "admission.grant", server="srv/s2", lease="L2", holders=2, limit=1),
             ev(100.0, "srv", "s2", "tick")]
    for name, reason in (("interrupted", "interrupted"), ("whole", "duration")):
        d = tmp_path / name
        d.mkdir()
        (d / "events.jsonl").write_text("\n".join(lines) + "\n")
        (d / "summary.json").write_text(json.dumps({"reason": reason}))
        verdicts = {v["checker"]: v for v in make_report(d)["verdicts"]}
        assert verdicts["admission-limit"]["status"] == "invalid", (name, verdicts["admission-limit"])  # safety: judged
        if reason == "interrupted":
            assert verdicts["servers-done"]["status"] == "unknown", verdicts["servers-done"]
            assert "interrupted" in verdicts["servers-done"]["summary"]
        else:
            assert verdicts["servers-done"]["status"] == "invalid", verdicts["servers-done"]
