"""Starting a topology's node processes, when it goes wrong: a host that is not this machine, a busy
port, Ctrl-C during start; the help of the node and rack-generator commands; the no-keys warning said
once on the console, kept in the logs.

Real processes only on 127.0.0.1; every process a test starts is stopped by the test, by its own PID.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from loguru import logger

from tests.conftest import wait_for
from topologies.loader import TopologyError, load_topology, parse_topology

ROOT = Path(__file__).resolve().parents[1]
PINGPONG = ROOT / "topologies" / "pingpong.toml"
RACKS = ROOT / "topologies" / "racks.toml"
CLEAR = "runs in the clear"

GOOD = """
name = "t"
[[nodes]]
name = "a"
host = "HOST"
[[nodes.actors]]
name = "pinger"
kind = "pingpong.pinger"
params = { peer = "b/ponger" }
[[nodes]]
name = "b"
[[nodes.actors]]
name = "ponger"
kind = "pingpong.ponger"
"""


def _foreign_address() -> str:
    """An IPv4 address that is not one of this machine's (a bind to it fails)."""
    for candidate in ("10.1.2.3", "198.51.100.7", "203.0.113.9"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((candidate, 0))
            except OSError:
                return candidate
    pytest.skip("every candidate address is one of this machine's")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead for our purposes
    except OSError:
        return False


def _children(pid: int) -> set[int]:
    """The PIDs of the live descendants of ``pid`` (a launcher's nodes are its run's fork server's children)."""
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parent[int(d)] = int(fields[1])
    out: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier and p not in out}
        out |= frontier
    return out


def _kill_all(pids) -> None:
    for p in pids:
        if _alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def spawned(monkeypatch):
    """Every node process the launcher spawns during the test, recorded; killed at the end if still alive."""
    import topologies.launcher as launcher

    made: list[subprocess.Popen] = []
    real = launcher.spawn_node

    def recording(topo_file, name, run_dir, *rest, **kw):  # spawn_node's later arguments (fault_control) pass on
        p = real(topo_file, name, run_dir, *rest, **kw)
        made.append(p)
        return p

    monkeypatch.setattr(launcher, "spawn_node", recording)
    yield made
    for p in made:
        if p.poll() is None:
            p.kill()
            p.wait(10)


# --- 1. a host that is not this machine ---------------------------------------------------------------

def test_a_host_that_is_not_on_this_machine_is_a_topology_error():
    foreign = _foreign_address()
    with pytest.raises(TopologyError) as info:
        parse_topology(GOOD.replace("HOST", foreign), "far.toml")
    [problem] = info.value.problems
    assert problem.key == "nodes[0].host" and problem.line == 5
    assert problem.message == ("the launcher starts every node on this machine: host must be 127.0.0.1, localhost "
                               f"or an address of this machine; got {foreign}")


def test_a_host_name_that_does_not_resolve_is_a_topology_error():
    with pytest.raises(TopologyError, match=r"nodes\[0\]\.host: the launcher starts every node on this machine.*"
                                            r"got no-such-host\.invalid \(no such host name\)"):
        parse_topology(GOOD.replace("HOST", "no-such-host.invalid"))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.0.0.2"])
def test_local_hosts_are_accepted(host):
    assert parse_topology(GOOD.replace("HOST", host)).node("a").host == host


def test_the_simulator_may_ignore_hosts(tmp_path):
    from topologies.launcher import run_sim

    text = PINGPONG.read_text().replace('host = "127.0.0.1"', f'host = "{_foreign_address()}"')
    with pytest.raises(TopologyError):
        parse_topology(text, "far.toml")  # by default a file must run for real too
    topo = parse_topology(text, "far.toml", local_hosts=False)
    result = run_sim(topo, tmp_path, seed=1, quiet=True)
    assert result.ok and result.reason == "done", result.summary()


def test_cli_refuses_a_foreign_host_in_one_line_with_exit_2(tmp_path):
    foreign = _foreign_address()
    far = tmp_path / "far.toml"
    far.write_text(PINGPONG.read_text().replace('host = "127.0.0.1"', f'host = "{foreign}"'))
    out = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-m", "topologies.cli", "run", str(far), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "OSError" not in proc.stderr
    assert (f"nodes[0].host: the launcher starts every node on this machine: host must be 127.0.0.1, localhost "
            f"or an address of this machine; got {foreign}") in proc.stderr
    assert not out.exists() or not any(out.iterdir()), "a refused topology leaves no run directory"


def test_run_real_refuses_a_foreign_host_before_starting_anything(tmp_path, spawned):
    from topologies.launcher import run_real

    foreign = _foreign_address()
    topo = parse_topology(PINGPONG.read_text().replace('host = "127.0.0.1"', f'host = "{foreign}"'), "far.toml",
                          local_hosts=False)
    with pytest.raises(ValueError, match=f"host must be 127.0.0.1, localhost or an address of this machine; got {foreign}"):
        run_real(topo, tmp_path, quiet=True)
    assert spawned == [], "no node process may start"


# --- 2. a busy port -----------------------------------------------------------------------------------

@pytest.fixture
def busy_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_node_that_cannot_bind_says_why_in_one_json_line(busy_port):
    proc = subprocess.Popen([sys.executable, "-m", "topologies.node", "--name", "x", "--bind",
                             f"tcp://127.0.0.1:{busy_port}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1
    assert json.loads(out.splitlines()[0]) == {"error": f"cannot bind tcp://127.0.0.1:{busy_port}: Address already in use"}
    assert f"error: cannot bind tcp://127.0.0.1:{busy_port}: Address already in use" in err.splitlines()
    assert CLEAR not in err, "a node that never ran did not run in the clear"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_busy_port_fails_the_run_at_once_with_the_cause_in_one_line(tmp_path, busy_port, spawned):
    from topologies.launcher import run_real

    # the last node's port is busy: the others are waiting for it as a peer when it fails
    text = PINGPONG.read_text().replace('name = "gamma"', f'name = "gamma"\nport = {busy_port}')
    topo = parse_topology(text, "busy.toml")
    t0 = time.monotonic()
    result = run_real(topo, tmp_path, quiet=True)
    took = time.monotonic() - t0
    assert result.reason == f"failed: node gamma did not start: cannot bind tcp://127.0.0.1:{busy_port}: Address already in use"
    assert not result.ok
    assert took < 5.0, f"a busy port must fail at once, well before the nodes' 10 s wait for peers; took {took:.1f} s"
    assert len(spawned) == 3 and all(p.poll() is not None for p in spawned), "every node is stopped"
    assert all(p.returncode != -signal.SIGKILL for p in spawned), [p.returncode for p in spawned]


def test_a_node_that_crashes_before_its_ready_line_is_reported_by_its_exception_not_its_traceback(tmp_path):
    from topologies.launcher import await_node

    crash = ("import sys; print('2026-12-03 07:00:00.000 | WARNING  | transport.zmq:start:1 - a log line', "
             "file=sys.stderr); raise KeyError('no such kind')")
    with open(tmp_path / "n.stderr", "wb") as err:
        popen = subprocess.Popen([sys.executable, "-c", crash], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=err, text=True)
    try:
        with pytest.raises(RuntimeError) as info:
            await_node(popen, "n", tmp_path)
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait()
    assert str(info.value) == f"node n did not start: KeyError: 'no such kind' (exit status 1; see {tmp_path / 'n.stderr'})"


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_node_waiting_for_start_stops_at_once_on_sigterm(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "topologies.node", "--name", "solo", "--wait-start",
                             "--run-dir", str(tmp_path)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert "endpoint" in json.loads(proc.stdout.readline())  # ready: now it waits for 'start' on stdin
        proc.terminate()
        assert proc.wait(5) == 0, "SIGTERM must stop a node that waits for 'start'"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
    assert (tmp_path / "solo.counters.json").exists(), "a clean stop writes the counters"


# --- 3. Ctrl-C during start ----------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_launched_node_ignores_sigint(tmp_path):
    # a terminal Ctrl-C reaches the whole process group: the launcher owns the shutdown
    proc = subprocess.Popen([sys.executable, "-m", "topologies.node", "--name", "solo", "--wait-start",
                             "--run-dir", str(tmp_path), "--parent-pid", str(os.getpid())], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "endpoint" in json.loads(proc.stdout.readline())
        proc.send_signal(signal.SIGINT)
        proc.stdin.write("start\n")
        proc.stdin.flush()
        events = tmp_path / "solo.events.jsonl"
        wait_for(lambda: events.exists() and "node.started" in events.read_text(), timeout=20,
                 what="the node starting after a SIGINT")
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "KeyboardInterrupt" not in err and "Traceback" not in err


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_an_interrupt_during_start_stops_what_started_and_says_interrupted(tmp_path, monkeypatch):
    import topologies.launcher as launcher

    stop = threading.Event()
    made: list[subprocess.Popen] = []
    real = launcher.spawn_node

    def gamma_never_ready(topo_file, name, run_dir, *rest, **kw):
        if name != "gamma":
            p = real(topo_file, name, run_dir, *rest, **kw)
        else:  # a node that never prints its ready line; then Ctrl-C
            p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
            stop.set()
        made.append(p)
        return p

    monkeypatch.setattr(launcher, "spawn_node", gamma_never_ready)
    try:
        result = launcher.run_real(load_topology(PINGPONG), tmp_path, quiet=True, stop=stop)
    finally:
        for p in made:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    # honoured during the start, not after it: gamma never gets ready, so a launcher that looked at the interrupt
    # only once every node was ready would end with "node gamma did not start: no ready line within 30 s" instead
    assert result.reason == "interrupted" and not result.ok, result.reason
    assert len(made) == 3 and all(p.returncode is not None and p.returncode != -signal.SIGKILL for p in made), \
        [p.returncode for p in made]
    assert json.loads((tmp_path / "summary.json").read_text())["reason"] == "interrupted"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_ctrl_c_to_the_process_group_during_start_stops_everything_and_says_interrupted(tmp_path):
    out = tmp_path / "runs"
    launcher = subprocess.Popen([sys.executable, "-m", "topologies.cli", "run", str(RACKS), "--out", str(out), "-q"],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # its own process group, as a terminal gives a command
    nodes: set[int] = set()
    try:
        def first_node_spawned():
            nodes.update(_children(launcher.pid))
            return next(out.glob("*/*.stderr"), None) if out.exists() else None

        stderr_file = wait_for(first_node_spawned, timeout=60, what="the first node process")
        run_dir = stderr_file.parent
        nodes.update(_children(launcher.pid))
        os.killpg(launcher.pid, signal.SIGINT)  # Ctrl-C in a terminal
        stdout, stderr = launcher.communicate(timeout=60)
        assert launcher.returncode == 130, stdout + stderr
        assert "NOT OK: interrupted after" in stdout, stdout
        assert "Traceback" not in stdout + stderr and "KeyboardInterrupt" not in stdout + stderr
        assert not (run_dir / "pids.json").exists(), "the interrupt must be honoured during start, not after it"
        for f in run_dir.glob("*.stderr"):
            assert "KeyboardInterrupt" not in f.read_text(), f"{f.name}: a node must ignore SIGINT"
        assert json.loads((run_dir / "summary.json").read_text())["reason"] == "interrupted"
        assert nodes, "the test saw no node process"
        wait_for(lambda: not any(_alive(p) for p in nodes), timeout=15, what="node processes gone")
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        _kill_all(nodes)


# --- 4. help ----------------------------------------------------------------------------------------

def _undocumented(parser) -> list[str]:
    """Options without help, and options with a default whose help does not say it."""
    bad = []
    for a in parser._actions:
        name = "/".join(a.option_strings) or a.dest
        if a.dest == "help":
            continue
        if not a.help or "see the module doc" in a.help:
            bad.append(f"{name}: no help")
        elif a.default not in (None, False, [], "") and not a.required and "default" not in a.help:
            bad.append(f"{name}: help does not give the default {a.default!r}")
    return bad


def test_every_node_option_has_help_with_its_default():
    from topologies.node import build_parser

    p = build_parser()
    assert _undocumented(p) == []
    helps = {a.dest: a.help for a in p._actions}
    assert "seconds" in helps["heartbeat"] and "DEBUG" in helps["log_level"]


def test_every_rack_generator_option_has_help_with_its_default_and_unit():
    from topologies.rack.gen import build_parser

    p = build_parser()
    assert _undocumented(p) == []
    helps = {a.dest: a.help for a in p._actions}
    assert "seconds" in helps["duration"]
    assert "data centers" in helps["dcs"] and "sectors" in helps["sectors"] and "racks" in helps["racks"]
    assert "21 processes" in helps["pack"] and "84 processes" in helps["pack"]


@pytest.mark.parametrize("module", ["topologies.node", "topologies.rack.gen"])
def test_help_prints_and_exits_zero(module):
    proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0 and "default" in proc.stdout and not proc.stderr


# --- 5. the no-keys warning ---------------------------------------------------------------------------

@pytest.fixture
def sinks():
    """A console sink at WARNING and a log file sink at DEBUG, as ``fleetplane`` sets them up."""
    console: list = []
    logfile: list = []
    ids = [logger.add(lambda m: console.append(m.record), level="WARNING"),
           logger.add(lambda m: logfile.append(m.record), level="DEBUG")]
    yield console, logfile
    for i in ids:
        logger.remove(i)


def test_an_embedded_node_without_keys_says_once_at_warning_that_it_runs_in_the_clear(sinks):
    from actors import Node
    from transport.zmq import ZmqTransport

    console, _ = sinks
    with Node("east", transport=ZmqTransport()):
        pass
    said = [r for r in console if CLEAR in r["message"]]
    assert [(r["level"].name, r["message"]) for r in said] == \
        [("WARNING", "node east: no CurveZMQ keys configured; transport runs in the clear")]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_run_without_keys_says_so_once_before_progress_and_keeps_each_node_s_word_in_the_logs(tmp_path, sinks):
    from actors import Node
    from topologies.launcher import run_real
    from transport.zmq import ZmqTransport

    console, logfile = sinks
    ctl: dict = {}

    def hook(procs, elapsed):  # a control node in the launcher's process, as the chaos harness makes one
        if "node" not in ctl:
            logger.info("progress starts")
            ctl["node"] = Node("chaosctl", transport=ZmqTransport(peers={n: p.endpoint for n, p in procs.items()}))

    try:
        result = run_real(load_topology(PINGPONG), tmp_path, quiet=True, hook=hook)
    finally:
        if "node" in ctl:
            ctl["node"].shutdown()
    assert result.ok, result.summary()
    on_console = [r["message"] for r in console if CLEAR in r["message"]]
    assert on_console == ["topology pingpong has no CurveZMQ keys ([keys]): every node's transport runs in the clear"]
    in_log = [r["message"] for r in logfile]
    assert in_log.index(on_console[0]) < in_log.index("progress starts"), "said before progress starts"
    assert "node chaosctl: no CurveZMQ keys configured; transport runs in the clear" in in_log, "kept in the log"
    for n in ("alpha", "beta", "gamma"):
        assert CLEAR not in (tmp_path / f"{n}.stderr").read_text()
        assert f"node {n}: no CurveZMQ keys configured; transport runs in the clear" in (tmp_path / f"{n}.log").read_text()
