"""Operators acting on a running coldstart topology, and a durable manager killed, as real processes (slow tier).

* ``fleetplane run topologies/coldstart.toml`` runs in the background (eight processes on
  127.0.0.1) until the test stops it by its PID (SIGINT); ``fleetplane deps status|act|override|
  remediate|condition --run DIR`` join it as ``client-deps-<pid>`` nodes. ``deps act stop dns
  access-control --then start`` restarts the two services of a cycle in full at once, by hand: a
  run-time wait-for cycle among real processes, which the manager detects, remedies (a bootstrap
  restart of dns) and resolves (checker deps-deadlocks-real). Then each operator decision takes
  effect (the override in the next plan, the remediation fired and done, the condition's
  conditional remediation fired and released), and a refused request exits 1.
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
import threading
import time
from pathlib import Path

import pytest

from actors.eventlog import read_events
from tests.conftest import wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
FLEETPLANE = [sys.executable, "-m", "topologies.cli"]


def _fleetplane(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run(FLEETPLANE + list(args), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _until(pred, timeout: float, what: str, run: subprocess.Popen | None = None):
    """Poll ``pred`` (each call runs a command) until truthy; fail after ``timeout`` seconds (a give-up, not a
    bound) or as soon as the run has ended."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if run is not None and run.poll() is not None:
            pytest.fail(f"the run ended (exit {run.returncode}) while waiting for {what}: {run.stdout.read()}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout}s waiting for {what}")
        threading.Event().wait(0.5)


def _status(run_dir: Path) -> dict:
    r = _fleetplane("deps", "status", "--run", str(run_dir), "--timeout", "2", "--tries", "3")
    return json.loads(r.stdout) if r.returncode == 0 else {}


@pytest.mark.timeout(600)  # a dozen commands, each a Python start, against eight processes on a shared machine
def test_operators_and_an_injected_deadlock_on_a_running_topology(tmp_path):
    """One real run (stopped by SIGINT to its PID once the test is done, so no step races its end):
    a run-time deadlock injected by hand, then each operator command, each effect in the event log."""
    run = subprocess.Popen(FLEETPLANE + ["run", "topologies/coldstart.toml", "--duration", "600", "--min-duration",
                                         "600", "-q", "--out", str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        topo = wait_for(lambda: next(iter(tmp_path.glob("coldstart-real-*/topology.json")), None), timeout=60,
                        what="the run directory")
        run_dir = topo.parent
        _until(lambda: _status(run_dir).get("all_up"), 180, "every service up (deps status)", run)
        # dns and access-control (a cycle) stopped and started in full by hand, at once: each waits for the other
        r = _fleetplane("deps", "act", "stop", "dns", "access-control", "--then", "start", "--after", "0.3",
                        "--run", str(run_dir))
        assert r.returncode == 0 and r.stdout.count("done: start") == 2, r
        _until(lambda: (lambda v: v.get("all_up") and v.get("deadlocks"))(_status(run_dir)), 120,
               "the deadlock found and every service up again", run)
        r = _fleetplane("deps", "override", "logging", "secrets", "--run", str(run_dir), "--who", "test-op")
        assert r.returncode == 0 and "recorded: override: logging -> secrets (hard)" in r.stdout, r
        r = _fleetplane("deps", "remediate", "op-1", "restart", "logging", "--run", str(run_dir), "--who", "test-op")
        assert r.returncode == 0 and "remediation 'op-1' (restart logging, immediate)" in r.stdout, r
        # the same id with other content: refused by the manager (exit 1, its reason printed)
        r = _fleetplane("deps", "remediate", "op-1", "stop", "logging", "--run", str(run_dir))
        assert r.returncode == 1 and "refused" in r.stdout, r
        r = _fleetplane("deps", "condition", "region r2 isolated", "--holds", "--run", str(run_dir))
        assert r.returncode == 0 and "condition 'region r2 isolated' holds" in r.stdout, r
        _until(lambda: _status(run_dir).get("remediations", {}).get("cond:region r2 isolated:identity") == "done",
               120, "identity restarted in bootstrap mode", run)
        r = _fleetplane("deps", "condition", "region r2 isolated", "--ends", "--run", str(run_dir))
        assert r.returncode == 0 and "ended" in r.stdout, r
        _until(lambda: _status(run_dir).get("all_up"), 120, "every service fully up again", run)
    finally:
        if run.poll() is None:  # stop the run (and through it, its node processes) by its PID
            os.kill(run.pid, signal.SIGINT)
        try:
            out, _ = run.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            run.kill()
            out, _ = run.communicate()
    assert run.returncode == 130, out  # interrupted, as asked
    events = read_events(run_dir / "events.jsonl")
    mgr = [e for e in events if e["node"] == "mgr"]
    (det,) = [e["fields"] for e in mgr if e["kind"] == "deps.deadlock_detected"]
    assert det["members"] == ["access-control", "dns"], det
    assert [e for e in mgr if e["kind"] == "deps.deadlock_resolved" and e["fields"]["id"] == det["id"]]
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
    for name in ("deps-start-order", "deps-all-up", "deps-deadlocks-real"):
        assert verdicts[name] == "valid", verdicts


@pytest.mark.timeout(300)
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
