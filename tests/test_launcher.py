"""`fleetplane run`: the built-in topology as real processes and in the simulator;
Ctrl-C leaves no orphaned node processes."""

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
from topologies.launcher import run_real, run_sim
from topologies.loader import load_topology, parse_topology

ROOT = Path(__file__).resolve().parents[1]
PINGPONG = ROOT / "topologies" / "pingpong.toml"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.timeout(120)
def test_run_real_processes_to_completion(tmp_path):
    topo = load_topology(PINGPONG)
    result = run_real(topo, tmp_path, quiet=True)
    assert result.ok and result.reason == "done", result.summary()
    assert result.progress == 40 and result.done == 2
    pids = json.loads((tmp_path / "pids.json").read_text())
    assert sorted(pids) == ["alpha", "beta", "gamma"]
    assert not any(_alive(p) for p in pids.values()), "a node process outlived the run"
    assert all(info["exit"] == 0 for info in result.nodes.values()), result.nodes
    events = read_events(tmp_path / "events.jsonl")
    assert [e["time"] for e in events] == sorted(e["time"] for e in events), "the merged log is in time order"
    kinds = [e["kind"] for e in events]
    assert kinds.count("node.started") == 3 and kinds.count("node.stopped") == 3
    assert kinds.count("pingpong.done") == 2
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["ok"] and summary["nodes"]["beta"]["counters"]["received_remote"] >= 40
    for n in ("alpha", "beta", "gamma"):
        assert (tmp_path / f"{n}.log").exists() and (tmp_path / f"{n}.counters.json").exists()


def test_run_sim_is_deterministic_and_matches_the_protocol(tmp_path):
    topo = load_topology(PINGPONG)
    a = run_sim(topo, tmp_path / "a", seed=3, quiet=True)
    b = run_sim(topo, tmp_path / "b", seed=3, quiet=True)
    c = run_sim(topo, tmp_path / "c", seed=4, quiet=True)
    assert a.ok and a.reason == "done" and a.progress == 40
    assert b.ok and c.ok
    text_a = (tmp_path / "a" / "events.jsonl").read_bytes()
    assert text_a == (tmp_path / "b" / "events.jsonl").read_bytes(), "same seed, same bytes"
    assert text_a != (tmp_path / "c" / "events.jsonl").read_bytes(), "another seed, another run"


def test_sim_run_with_lossy_links_still_finishes(tmp_path):
    text = PINGPONG.read_text().replace("loss = 0.0", "loss = 0.3")
    topo = parse_topology(text, "lossy.toml")
    result = run_sim(topo, tmp_path, seed=1, quiet=True)
    assert result.ok
    kinds = [e["kind"] for e in read_events(tmp_path / "events.jsonl")]
    assert kinds.count("pingpong.retry") > 0, "with 30 % loss the pingers must have retried"


@pytest.mark.timeout(120)
def test_ctrl_c_stops_every_node_process(tmp_path):
    long = tmp_path / "long.toml"
    long.write_text(PINGPONG.read_text().replace("rounds = 20", "rounds = 10000000").replace("duration = 30.0", "duration = 120.0"))
    proc = subprocess.Popen([sys.executable, "-m", "topologies.cli", "run", str(long), "--out", str(tmp_path), "-q"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pids_file = wait_for(lambda: next(tmp_path.glob("*/pids.json"), None), timeout=60, what="nodes started")
        pids = json.loads(pids_file.read_text())
        run_dir = pids_file.parent
        wait_for(lambda: (run_dir / "beta.events.jsonl").exists()
                 and "pingpong.round" in (run_dir / "alpha.events.jsonl").read_text(), timeout=30, what="rounds played")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out + err  # interrupted: exit 130, as a shell reports Ctrl-C
    assert "interrupted" in out
    wait_for(lambda: not any(_alive(p) for p in pids.values()), timeout=10, what="node processes gone")
    assert json.loads((run_dir / "summary.json").read_text())["reason"] == "interrupted"
    assert (run_dir / "events.jsonl").exists()


@pytest.mark.timeout(60)
def test_killed_launcher_leaves_no_orphans(tmp_path):
    long = tmp_path / "long.toml"
    long.write_text(PINGPONG.read_text().replace("rounds = 20", "rounds = 10000000").replace("duration = 30.0", "duration = 120.0"))
    proc = subprocess.Popen([sys.executable, "-m", "topologies.cli", "run", str(long), "--out", str(tmp_path), "-q"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pids_file = wait_for(lambda: next(tmp_path.glob("*/pids.json"), None), timeout=60, what="nodes started")
        pids = json.loads(pids_file.read_text())
        proc.kill()  # SIGKILL: the launcher gets no chance to clean up
        proc.wait(10)
        wait_for(lambda: not any(_alive(p) for p in pids.values()), timeout=15, what="nodes follow their launcher")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in locals().get("pids", {}).values():
            if _alive(p):
                os.kill(p, signal.SIGKILL)


@pytest.mark.timeout(120)
def test_run_with_curve_keys_encrypts_and_still_finishes(tmp_path):
    import zmq
    text = PINGPONG.read_text()
    keys = "\n[keys]\n"
    for n in ("alpha", "beta", "gamma"):
        pub, sec = zmq.curve_keypair()
        keys += f'{n} = {{ public = "{pub.decode()}", secret = "{sec.decode()}" }}\n'
    text = text.replace("[[nodes]]\nname = \"alpha\"", keys + "\n[[nodes]]\nname = \"alpha\"", 1)
    topo = parse_topology(text, "keyed.toml")
    result = run_real(topo, tmp_path, quiet=True)
    assert result.ok and result.done == 2, result.summary()
    kinds = [e["kind"] for e in read_events(tmp_path / "events.jsonl")]
    assert "transport.insecure" not in kinds, "with keys the nodes must not run in the clear"


def test_ports_chosen_for_a_launch_are_distinct():
    # a probe port released at once can be handed out again by the next probe: 21 racks.toml nodes once got one port
    from topologies.launcher import _free_ports
    for _ in range(20):
        ports = _free_ports([(f"n{i}", "127.0.0.1") for i in range(60)])
        assert len(set(ports.values())) == 60, sorted(ports.values())


def test_ports_chosen_for_a_launch_lie_outside_the_kernel_s_ephemeral_range():
    """A listening port from the kernel's ephemeral range (a bind to port 0) can be taken, between the probe and
    the node's own bind, as the source port of any process's outgoing connection: two README racks chaos runs
    started in the same second on two test workers (44 processes connecting to each other) failed with
    'node racks-d2 did not start: cannot bind tcp://127.0.0.1:44663: Address already in use'. The launcher
    picks its ports below (or above) that range instead, where no outgoing connection takes one."""
    from topologies.launcher import _ephemeral_range, _free_ports
    lo, hi = _ephemeral_range()
    for _ in range(20):
        ports = _free_ports([(f"n{i}", "127.0.0.1") for i in range(60)])
        assert len(set(ports.values())) == 60, sorted(ports.values())
        inside = sorted(p for p in ports.values() if lo <= p <= hi)
        assert not inside, f"ports in the ephemeral range {lo}-{hi}: {inside}"
        assert all(p > 1024 for p in ports.values())


def test_stop_all_reports_the_node_it_had_to_sigkill():
    from topologies.launcher import _stop_all

    deaf = subprocess.Popen([sys.executable, "-c", "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                             "print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    polite = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert deaf.stdout.readline().strip() == "ready"
        killed = _stop_all([deaf, polite], grace=1.0)
    finally:
        for p in (deaf, polite):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert killed == [deaf]
    assert deaf.returncode == -signal.SIGKILL and polite.returncode == -signal.SIGTERM


@pytest.mark.timeout(120)
def test_a_node_sigkilled_at_shutdown_fails_the_run_and_is_named(tmp_path, monkeypatch):
    import topologies.launcher as launcher

    real_stop_all = launcher._stop_all

    def beta_hangs(popens, grace):  # the nodes stop, but pretend beta ignored SIGTERM
        real_stop_all(popens, grace)
        return [p for p in popens if p.args[p.args.index("--name") + 1] == "beta"]

    monkeypatch.setattr(launcher, "_stop_all", beta_hangs)
    result = run_real(load_topology(PINGPONG), tmp_path, quiet=True)
    assert not result.ok and result.reason.startswith("failed: beta did not stop"), result.reason
    assert "SIGKILLed" in result.reason and result.nodes["beta"]["sigkilled_at_shutdown"]
    assert not result.nodes["alpha"]["sigkilled_at_shutdown"]


@pytest.mark.timeout(120)
def test_fleetplane_run_works_from_any_directory(tmp_path):
    """Node processes start in the repository: a relative run directory must still be found (found by the README test)."""
    (tmp_path / "topologies").symlink_to(ROOT / "topologies")
    proc = subprocess.run([sys.executable, "-m", "topologies.cli", "run", "topologies/pingpong.toml", "-q"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=110,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK: done" in proc.stdout and any((tmp_path / "runs").glob("pingpong-real-*/report.html"))


@pytest.mark.timeout(120)
def test_verbose_shows_every_nodes_log(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "topologies.cli", "run", str(PINGPONG), "-q", "-v", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for node in ("alpha", "beta", "gamma"):
        assert f"[{node}] " in proc.stderr, proc.stderr
    quiet = subprocess.run([sys.executable, "-m", "topologies.cli", "run", str(PINGPONG), "-q", "--out", str(tmp_path)],
                           cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert "[alpha] " not in quiet.stderr
