"""Using the service: WorkloadClient(node).submit(...) -> future (gateway, queue, real warm-Python workers and
billing as actors of one node), and fleetplane task ... against a running topology
(topologies/workload/service.toml as real processes; issue 20, deliverable 8). Slow tier.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors import Node
from topologies.workload.client import WorkloadClient, WorkloadError
from transport.zmq import ZmqTransport

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    proc = subprocess.Popen([sys.executable, "-m", "topologies.cli", "run", "topologies/workload/service.toml",
                             "--duration", "120", "-q", "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        run = None
        while time.monotonic() < deadline and run is None:
            found = [p for p in out.glob("workload-service-real-*") if (p / "topology.json").exists()
                     and len(list(p.glob("*.events.jsonl"))) >= 6]
            run = found[0] if found else None
            time.sleep(0.2)
        assert run is not None, "the service topology did not start"
        time.sleep(2.0)  # every node ready and connected
        yield run
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # the launcher stops its nodes
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()


def client_for(run, tenant="acme", token="acme-token"):
    topo = json.loads((run / "topology.json").read_text())
    peers = {n["name"]: f"tcp://127.0.0.1:{n['port']}" for n in topo["nodes"]}
    node = Node(f"client-test-{os.getpid()}", transport=ZmqTransport("tcp://127.0.0.1:*", peers))
    return node, WorkloadClient(node, "gw/gateway", tenant=tenant, token=token, billing="svc/billing", timeout=10.0)


def in_process_service(tmp_path):
    """Gateway, durable queue, two warm-Python workers and billing as actors of one in-process node."""
    from actors import StateMachineActor
    from protocols.workload.billing import BillingService
    from protocols.workload.gateway import Gateway
    from protocols.workload.worker import Worker
    from topologies.durable import MemoryStore
    from topologies.hosts import actor_api, effect_router
    from topologies.workload.hosts import PythonRunner
    from topologies.workload.store import durable_queue

    node = Node("lab")
    store = MemoryStore()

    def spawn(name, factory, host=None, durable=False):
        route = effect_router(host, store if durable else None, f"lab/{name}")
        node.spawn(StateMachineActor, factory,
                   on_effect=(lambda eff, actor: route(eff, actor_api(actor))) if route else None, name=name)

    spawn("gateway", lambda: Gateway({"etl": "lab/queue", "report": "lab/queue"},
                                     {"acme": {"token": "acme-token", "class": "gold"}}, classes={"gold": 7}))
    spawn("queue", lambda: durable_queue(["etl", "report"], db=str(tmp_path / "q.sqlite"), lease_ttl=3.0,
                                         billing="lab/billing", tick=0.1))
    for i, types in enumerate((["etl"], ["report"])):
        host = PythonRunner(random.Random(i), ["json", "math"], env_slots=1, work_root=str(tmp_path / f"w{i}"))
        spawn(f"worker{i}", lambda types=types, i=i: Worker("lab/queue", types, slots=1, heartbeat=0.25,
                                                             address=f"lab/worker{i}"), host=host)
    spawn("billing", lambda: BillingService(increment=0.1, minimum=0.5), durable=True)
    return node


@pytest.mark.timeout(120)
def test_workload_client_submits_reads_results_retries_and_statements(tmp_path):
    node = in_process_service(tmp_path)
    c = WorkloadClient(node, "lab/gateway", tenant="acme", token="acme-token", billing="lab/billing", timeout=10.0)
    try:
        fut = c.submit("etl", code="def main(d):\n    return sum(d) * 2", data=[1, 2, 3], max_delay=30.0)
        tid = fut.result(timeout=30)
        assert tid.startswith("etl.")
        assert c.result(tid, timeout=60) == {**c.result(tid), "ok": True, "value": 12}
        bad = c.submit("report", code="def main(d):\n    raise KeyError(d)", data="missing").result(timeout=30)
        out = c.result(bad, timeout=60)
        assert out["ok"] is False and out["error"] == "KeyError: 'missing'"
        c.retry(bad)  # a retained failure runs again
        assert c.result(bad, timeout=60)["error"] == "KeyError: 'missing'"
        with pytest.raises(WorkloadError, match="unknown task type 'gpu'"):
            c.submit("gpu", code="result = 1").result(timeout=30)
        st = c.statement()
        tasks = [x for x in st["lines"] if x["kind"] == "task"]
        assert {x["task"] for x in tasks} == {tid, bad} and len(tasks) == 3  # bad's two runs, each billed
        assert all(x["quantity"] == "0.5" for x in tasks)  # under the 0.5 s minimum
    finally:
        c.close()
        node.shutdown()


@pytest.mark.timeout(180)
def test_fleetplane_task_cli(service):
    base = [sys.executable, "-m", "topologies.cli", "task", "--run", str(service), "--tenant", "zeta",
            "--token", "zeta-token"]
    run = lambda *a: subprocess.run(base + list(a), cwd=ROOT, capture_output=True, text=True, timeout=90)  # noqa: E731
    r = run("submit", "--type", "report", "--code", "def main(d):\n    return d['x'] + 1", "--data", '{"x": 41}',
            "--wait")
    assert r.returncode == 0, r.stderr
    tid, result = r.stdout.splitlines()
    assert json.loads(result)["value"] == 42
    r = run("status", tid)
    assert json.loads(r.stdout) == {"task": tid, "state": "done", "attempts": 1}
    r = run("result", tid)
    assert r.returncode == 0 and json.loads(r.stdout)["value"] == 42
    r = run("submit", "--type", "report", "--code", "result = 1", "--max-delay", "-5")
    assert r.returncode == 1 and "max_delay must be a number of seconds" in r.stderr
    r = run("statement")
    assert r.returncode == 0 and json.loads(r.stdout)["tenant"] == "zeta"
    r = subprocess.run(base[:4] + ["--tenant", "zeta", "--token", "wrong", "--run", str(service), "status", tid],
                       cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert json.loads(r.stdout)["state"] == "unknown"  # another's token sees nothing
