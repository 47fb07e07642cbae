"""Operators acting on a running coldstart topology, and a durable manager killed, as real processes (slow tier).

* ``fleetplane run topologies/coldstart.toml --min-duration 25`` runs in the background (eight
  processes on 127.0.0.1); ``fleetplane deps override|remediate|condition --run DIR`` join it as
  ``client-deps-<pid>`` nodes and ask the manager, which answers once the decision is recorded;
  the event log shows each decision taking effect (the override in the next plan, the
  remediation fired and done, the condition's conditional remediation fired and released), and
  a refused request exits 1. The run is stopped by its PID if it outlives the test.
* ``fleetplane chaos topologies/coldstart.toml --nemesis kill --target mgr``: the manager's
  process SIGKILLed mid-start; its new incarnation names the old one and what it restored from
  its durable log, and every service still comes up in order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from actors.eventlog import read_events
from tests.conftest import wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
FLEETPLANE = [sys.executable, "-m", "topologies.cli"]


def _fleetplane(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(FLEETPLANE + list(args), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_operator_commands_act_on_a_running_manager(tmp_path):
    run = subprocess.Popen(FLEETPLANE + ["run", "topologies/coldstart.toml", "--min-duration", "25", "-q",
                                         "--out", str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        topo = wait_for(lambda: next(iter(tmp_path.glob("coldstart-real-*/topology.json")), None), timeout=30,
                        what="the run directory")
        run_dir = topo.parent
        r = _fleetplane("deps", "override", "logging", "secrets", "--run", str(run_dir), "--who", "test-op")
        assert r.returncode == 0 and "recorded: override: logging -> secrets (hard)" in r.stdout, r
        r = _fleetplane("deps", "remediate", "op-1", "restart", "logging", "--run", str(run_dir), "--who", "test-op")
        assert r.returncode == 0 and "remediation 'op-1' (restart logging, immediate)" in r.stdout, r
        # the same id with other content: refused by the manager (exit 1, its reason printed)
        r = _fleetplane("deps", "remediate", "op-1", "stop", "logging", "--run", str(run_dir))
        assert r.returncode == 1 and "refused" in r.stdout, r
        r = _fleetplane("deps", "condition", "region r2 isolated", "--holds", "--run", str(run_dir))
        assert r.returncode == 0 and "condition 'region r2 isolated' holds" in r.stdout, r
        r = _fleetplane("deps", "condition", "region r2 isolated", "--ends", "--run", str(run_dir))
        assert r.returncode == 0 and "ended" in r.stdout, r
        out, _ = run.communicate(timeout=120)
        assert run.returncode == 0, out
    finally:
        if run.poll() is None:  # stop the run (and through it, its node processes) by its PID
            os.kill(run.pid, signal.SIGINT)
            try:
                run.wait(timeout=30)
            except subprocess.TimeoutExpired:
                run.kill()
                run.wait()
    events = read_events(run_dir / "events.jsonl")
    mgr = [e for e in events if e["node"] == "mgr"]
    (ov,) = [e for e in mgr if e["kind"] == "deps.override"]
    assert ov["fields"]["who"] == "test-op" and (ov["fields"]["service"], ov["fields"]["on"]) == ("logging", "secrets")
    plans = [e for e in mgr if e["kind"] == "deps.plan" and e["time"] >= ov["time"]]
    assert plans and "secrets" in plans[0]["fields"]["hard"]["logging"], "the override is in the next plan"
    assert [e for e in mgr if e["kind"] == "deps.remediation_fired" and e["fields"]["id"] == "op-1"]
    assert [e for e in mgr if e["kind"] == "deps.remediation_done" and e["fields"]["id"] == "op-1"]
    assert [e for e in events if e["kind"] == "deps.act" and e["fields"]["ref"] == "op-1"
            and e["fields"]["action"] == "restart"], "the agent restarted logging"
    conds = [(e["fields"]["name"], e["fields"]["holds"]) for e in mgr if e["kind"] == "deps.condition"]
    assert conds == [("region r2 isolated", True), ("region r2 isolated", False)]
    assert [e for e in mgr if e["kind"] == "deps.remediation_released"]
    verdicts = {v["checker"]: v["status"] for v in json.loads((run_dir / "results.json").read_text())["verdicts"]}
    assert verdicts["deps-start-order"] == "valid" and verdicts["deps-all-up"] == "valid", verdicts


def test_the_manager_killed_mid_start_resumes_from_its_durable_log(tmp_path):
    from topologies.chaos import run_chaos
    from topologies.loader import load_topology

    topo = load_topology(ROOT / "topologies" / "coldstart.toml")
    result = run_chaos(topo, tmp_path, seed=1, nemesis="kill", overrides={"target": "mgr", "start": 3.0,
                                                                          "duration": 1.0}, quiet=True)
    assert result.ok and not result.run.reason.startswith("failed"), (result.run.summary(), result.verdicts)
    v = {x["checker"]: x["status"] for x in result.verdicts}
    assert v["deps-start-order"] == "valid" and v["deps-all-up"] == "valid" and v["fresh-incarnations"] == "valid", v
    starts = [e["fields"] for e in read_events(tmp_path / "events.jsonl") if e["kind"] == "deps.manager_start"]
    assert len(starts) == 2 and starts[0]["restored"] is None, starts
    assert starts[1]["previous"] == [starts[0]["incarnation"]] and starts[1]["restored"] is not None, starts
    assert list(tmp_path.glob("durable/mgr.manager.durable.jsonl")), "the manager's durable log"
