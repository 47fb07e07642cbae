"""The run's fork server (topologies/forkserver.py): nodes forked from one preloaded process behave as nodes
started on their own - own pid and incarnation, exit statuses as Popen gives them, a chaos kill and restart,
and a run that still works when the server cannot start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from actors.eventlog import read_events
from tests.conftest import wait_for
from topologies import launcher
from topologies.forkserver import ForkServer, ForkServerError
from topologies.launcher import run_real
from topologies.loader import load_topology

ROOT = Path(__file__).resolve().parents[1]
PINGPONG = ROOT / "topologies" / "pingpong.toml"

pytestmark = pytest.mark.timeout(120)


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def _fork(server: ForkServer, tmp_path: Path, *args: str):
    return launcher._fork_node(server, list(args), tmp_path / "node.stderr")


def test_a_forked_node_is_a_child_of_the_server_with_its_own_pipes_and_exit_status(tmp_path):
    server = ForkServer(ROOT, tmp_path / "forkserver.stderr")
    try:
        p = _fork(server, tmp_path, "--help")
        assert p.pid not in (os.getpid(), server.pid)
        out = p.stdout.read()
        assert "usage:" in out and "--topology" in out, out  # the node's argparse, on the pipe we hold
        assert p.wait(10) == 0 and p.poll() == 0
        bad = _fork(server, tmp_path, "--name", "x", "--no-such-option")
        assert bad.wait(10) == 2  # argparse's usage error, as `python -m topologies.node` exits
        assert "unrecognized arguments: --no-such-option" in (tmp_path / "node.stderr").read_text()
    finally:
        server.close()
    assert server.proc.returncode == 0, (tmp_path / "forkserver.stderr").read_text()


def test_a_node_killed_by_a_signal_reports_minus_the_signal_and_is_not_signalled_again(tmp_path):
    server = ForkServer(ROOT, tmp_path / "forkserver.stderr")
    try:
        # a node waiting for its peers and then for 'start' on stdin: it does not exit on its own
        topo = tmp_path / "t.json"
        t = load_topology(PINGPONG)
        topo.write_text(json.dumps(t.with_ports(launcher._free_ports([(n.name, n.host) for n in t.nodes])).to_dict()))
        p = _fork(server, tmp_path, "--topology", str(topo), "--name", "alpha", "--run-dir", str(tmp_path),
                  "--wait-start")
        assert _ppid(p.pid) == server.pid
        with pytest.raises(subprocess.TimeoutExpired):
            p.wait(0.2)
        assert p.poll() is None
        p.kill()
        assert p.wait(10) == -signal.SIGKILL
        p.kill()  # no second signal to a pid that may be reused: a no-op
    finally:
        server.close()


def test_a_run_s_nodes_are_forked_with_distinct_incarnations_and_exit_cleanly(tmp_path):
    topo = load_topology(PINGPONG)
    result = run_real(topo, tmp_path, quiet=True)
    assert result.ok and result.reason == "done", result.summary()
    assert all(info["exit"] == 0 for info in result.nodes.values()), result.nodes
    started = [e for e in read_events(tmp_path / "events.jsonl") if e["kind"] == "node.started"]
    assert len(started) == 3
    pids = json.loads((tmp_path / "pids.json").read_text())
    assert len(set(pids.values())) == 3
    incarnations = [e["fields"]["incarnation"] for e in started if "incarnation" in e["fields"]]
    assert len(incarnations) == 3 and len(set(incarnations)) == 3, started
    assert (tmp_path / "forkserver.stderr").exists(), "the run did not use a fork server"
    assert not launcher._SERVERS, "the run left its fork server registered"


def test_a_run_whose_fork_server_cannot_start_starts_each_node_on_its_own(tmp_path, monkeypatch):
    def broken(*_a, **_k):
        raise ForkServerError("the fork server did not start: test")
    monkeypatch.setattr(launcher, "ForkServer", broken)
    spawned: list = []
    real_popen = subprocess.Popen

    def popen(cmd, *a, **k):
        spawned.append(cmd)
        return real_popen(cmd, *a, **k)
    monkeypatch.setattr(launcher.subprocess, "Popen", popen)
    result = run_real(load_topology(PINGPONG), tmp_path, quiet=True)
    assert result.ok and result.reason == "done", result.summary()
    assert len(spawned) == 3 and all(c[1:3] == ["-m", "topologies.node"] for c in spawned), spawned


def test_the_environment_switch_turns_the_fork_server_off(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEETPLANE_FORKSERVER", "0")
    result = run_real(load_topology(PINGPONG), tmp_path, quiet=True)
    assert result.ok and result.reason == "done", result.summary()
    assert not (tmp_path / "forkserver.stderr").exists()
    assert all(info["exit"] == 0 for info in result.nodes.values()), result.nodes


def test_nodes_die_with_a_killed_launcher_through_the_server(tmp_path):
    """SIGKILL of the launcher: the server dies (PR_SET_PDEATHSIG), and the nodes with it - none outlives them."""
    code = ("import sys; from pathlib import Path; from topologies.launcher import run_real; "
            "from topologies.loader import load_topology; "
            f"run_real(load_topology(Path({str(PINGPONG)!r})), Path({str(tmp_path)!r}), quiet=True, duration=120.0)")
    # pingpong is done in about a second: make it run long by never ending (duration only)
    proc = subprocess.Popen([os.sys.executable, "-c", code.replace("quiet=True", "quiet=True, min_seconds=120.0")],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: (tmp_path / "pids.json").exists(), timeout=60, what="the nodes up")
        pids = list(json.loads((tmp_path / "pids.json").read_text()).values())
        server = {_ppid(p) for p in pids}
        assert len(server) == 1 and proc.pid not in server, "the nodes are not the fork server's children"
        (server_pid,) = server
        proc.kill()
        proc.wait(10)

        def gone(pid: int) -> bool:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    return f.read().rsplit(")", 1)[1].split()[0] == "Z"
            except OSError:
                return True
        wait_for(lambda: all(gone(p) for p in [server_pid, *pids]), timeout=20, what="the server and nodes gone")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in json.loads((tmp_path / "pids.json").read_text()).values() if (tmp_path / "pids.json").exists() else []:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_with_the_server_gone_a_wait_ends_and_the_next_node_starts_on_its_own(tmp_path):
    """The server killed under a run: a node's wait (without timeout) still ends - its exit reaches nobody, so
    it is polled - and a spawn raises ForkServerError, on which spawn_node starts the node on its own."""
    server = ForkServer(ROOT, tmp_path / "forkserver.stderr")
    try:
        t = load_topology(PINGPONG)
        topo = tmp_path / "t.json"
        topo.write_text(json.dumps(t.with_ports(launcher._free_ports([(n.name, n.host) for n in t.nodes])).to_dict()))
        p = _fork(server, tmp_path, "--topology", str(topo), "--name", "alpha", "--run-dir", str(tmp_path),
                  "--wait-start")
        server.proc.kill()  # PR_SET_PDEATHSIG: the node gets SIGTERM
        assert p.wait() is not None
        wait_for(lambda: server.gone, timeout=10, what="the reader to see the server gone")
        with pytest.raises(ForkServerError):
            _fork(server, tmp_path, "--help")
    finally:
        server.close()
