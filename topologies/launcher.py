"""Run a topology: every node as its own OS process, or all of it in the simulator.

How this works
--------------
**Real processes** (:func:`run_real`). The launcher gives every node with
``port = 0`` a free port on its host, writes the resolved topology to
``RUNDIR/topology.json`` and starts one ``python -m topologies.node`` per node
(``--wait-start``, ``--parent-pid`` so none outlives the launcher). Every node
runs on this machine: a ``host`` that is not one of its addresses is refused
before anything starts (the loader already refuses it in a topology file).
Nodes run in process groups of their own and ignore SIGINT, so a Ctrl-C in a
terminal reaches only the launcher, which owns the shutdown. The launcher
reads every node's ready line at once; when all are ready, each gets
``start`` on stdin (nodes wait for their peers first, then start their actors
on ``start``). A node that cannot start (e.g. its port is taken) says why in
a JSON line at once: the launcher then stops every node it started, at once,
and the run fails with that one line as its reason; Ctrl-C during the start
does the same and the run is ``interrupted``. Without CurveZMQ keys the
launcher says once, before progress starts, that the nodes run in the clear;
the nodes (and a chaos control node in this process) then say it only in
their log files. While it runs, the launcher tails the
nodes' event logs for the topology's progress and completion events and shows
live progress. It stops - on completion, at the duration limit, or on Ctrl-C
- by sending SIGTERM to every node by its PID (all at once), then SIGKILL to any still alive
after a grace period. Finally it merges the per-node event logs by time into
``RUNDIR/events.jsonl`` and writes ``RUNDIR/summary.json``.

**Simulator** (:func:`run_sim`). The same file, the same actor kinds, as
participants of one deterministic :class:`~actors.simulator.Simulator` from
``--seed``: the ``[network]`` table is the default link, ``[[links]]``
override it. Same run directory layout, same summary.

Both return a :class:`RunResult`; ``hooks`` let the chaos harness act during a
run (it gets the live processes or the simulator).
"""

from __future__ import annotations

import json
import math
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import attrs
from loguru import logger

from actors.eventlog import EventLog
from topologies.forkserver import ForkedProcess, ForkServer, ForkServerError
from topologies.forkserver import enabled as forkserver_enabled
from topologies.kinds import KINDS
from topologies.model import Topology
from topologies.plugin import load_plugins

__all__ = ["NodeProcess", "RunResult", "merge_events", "run_real", "run_sim"]

ROOT = Path(__file__).resolve().parents[1]
SHUTDOWN_GRACE = 10.0  # seconds every node together gets to stop after SIGTERM before SIGKILL
READY_TIMEOUT = 30.0  # seconds in which no node printed its ready line: the start has failed


class StartInterrupted(Exception):
    """``stop`` (Ctrl-C) was set while the nodes were starting."""


class NodeStartError(RuntimeError):
    """A node process did not start; the message says which and why, in one line."""


@attrs.define
class RunResult:
    topology: str
    mode: str                      # "real" or "sim"
    run_dir: Path
    ok: bool                       # the done condition was met (or none was set and nothing failed)
    reason: str                    # "done", "duration", "stalled" (sim: nothing left to happen), "interrupted", "failed: ..."
    seconds: float                 # wall seconds (real) or virtual seconds (sim)
    progress: int
    done: int
    events: int
    nodes: dict = attrs.field(factory=dict)
    seed: int | None = None

    def summary(self) -> dict:
        d = attrs.asdict(self)
        d["run_dir"] = str(self.run_dir)
        return d


RUN_NODE, RUN_ACTOR = "launcher", "$run"


def topology_fields(topo: Topology) -> dict:
    """The ``run.topology`` event: how many actors of each kind the run holds, so checkers count
    what the topology has, not only what happened to log something."""
    kinds = Counter(a.kind for n in topo.nodes for a in n.actors)
    return {"topology": topo.name, "nodes": len(topo.nodes), "actors": dict(sorted(kinds.items()))}


def event_matcher(spec: str | None) -> Callable[[str, dict], bool] | None:
    """``kind`` or ``kind[field=value,field2=value2]`` (the run table's progress/done syntax) as a predicate."""
    if not spec:
        return None
    kind, _, test = spec.partition("[")
    if not test:
        return lambda k, f: k == kind
    tests = [t.partition("=") for t in test.rstrip("]").split(",")]
    pairs = [(field.strip(), value.strip()) for field, _, value in tests]
    return lambda k, f: k == kind and all(str(f.get(field)) == value for field, value in pairs)


class _Tally:
    """Counts a topology's progress and done events, and actors per state, as events stream in."""

    def __init__(self, topo: Topology):
        self.is_progress = event_matcher(topo.run.progress)
        self.is_done = event_matcher(topo.run.done)
        self.done_needed = topo.run.done_count
        self.states_kind = topo.run.states
        self.settles = [m for m in (event_matcher(x) for x in topo.run.settle) if m is not None]
        self.last_settle: float | None = None  # run time of the last settle event seen
        self.progress = 0
        self.done = 0
        self.kinds: Counter[str] = Counter()
        self.state_of: dict[tuple[str, str], str] = {}
        self.states: Counter[str] = Counter()

    def see(self, kind: str, fields: dict | None = None, node: str = "", actor: str = "", at: float | None = None) -> None:
        self.kinds[kind] += 1
        f = fields or {}
        if at is not None and any(m(kind, f) for m in self.settles):
            self.last_settle = at
        if self.is_progress is not None and self.is_progress(kind, f):
            self.progress += 1
        if self.is_done is not None and self.is_done(kind, f):
            self.done += 1
        if kind == self.states_kind and "to" in f:
            key = (node, actor)
            old = self.state_of.get(key)
            if old is not None:
                self.states[old] -= 1
            self.state_of[key] = f["to"]
            self.states[f["to"]] += 1

    def state_line(self) -> str:
        return ", ".join(f"{s} {n}" for s, n in sorted(self.states.items()) if n)

    @property
    def finished(self) -> bool:
        return self.is_done is not None and self.done >= self.done_needed

    def may_end(self, now: float, min_seconds: float, settle_for: float) -> bool:
        """Done, not before ``min_seconds``, nor within ``settle_for`` of the last ``[run] settle`` event."""
        quiet_from = -math.inf if self.last_settle is None or settle_for <= 0 else self.last_settle + settle_for
        return self.finished and now >= max(min_seconds, quiet_from)


class _TallyLog(EventLog):
    """An event log that also feeds a tally (the simulator's progress source)."""

    def __init__(self, path: Path, tally: _Tally):
        super().__init__(path, keep=True)
        self.tally = tally

    def emit(self, time: float, node: str, actor: str, kind: str, fields: dict | None = None) -> None:
        super().emit(time, node, actor, kind, fields)
        self.tally.see(kind, fields, node, actor, at=time)


class _Progress:
    """Live progress: a rich bar on a terminal, a line a second otherwise."""

    def __init__(self, topo: Topology, mode: str, quiet: bool):
        self.topo, self.mode, self.quiet = topo, mode, quiet
        self.total = topo.run.progress_total
        self._last = 0.0
        self._rich = None
        if not quiet and sys.stdout.isatty():
            try:
                from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
                self._rich = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                                      TimeElapsedColumn(), transient=False)
                self._task = self._rich.add_task(f"{topo.name} ({mode})", total=self.total or None, info="")
                self._rich.start()
            except ImportError:  # pragma: no cover
                self._rich = None

    def update(self, progress: int, info: str, force: bool = False) -> None:
        if self.quiet:
            return
        if self._rich is not None:
            self._rich.update(self._task, completed=progress, info=info)
            return
        now = time.monotonic()
        if force or now - self._last >= 1.0:
            self._last = now
            total = f"/{self.total}" if self.total else ""
            print(f"[{self.mode}] {self.topo.name}: progress {progress}{total}; {info}", flush=True)

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range of ports for outgoing connections (Linux's default if it cannot be read)."""
    try:
        lo, hi = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def _port_pool() -> range | None:
    """Where a launcher picks its nodes' ports: outside the ephemeral range (None: no room, ask the kernel)."""
    lo, hi = _ephemeral_range()
    if lo - 1 - 10000 >= 4096:
        return range(10000, lo)
    if 65535 - hi >= 4096:
        return range(hi + 1, 65536)
    return None


def _free_ports(wanted: list[tuple[str, str]]) -> dict[str, int]:
    """A distinct free port for each ``(node, host)``, outside the kernel's ephemeral range when there is room.

    A port from that range (a bind to port 0) can be taken, between this probe and the node's own bind, as
    the source port of any process's outgoing connection - on a machine running several topologies at once,
    it was. So ports are drawn at random below (or above) it and probed. Every probe socket stays bound until
    all are chosen: a port released at once may be handed out again by the very next probe (two nodes, one
    port).
    """
    import random as _random

    pool = _port_pool()
    draw = _random.SystemRandom()
    held: list[socket.socket] = []
    out: dict[str, int] = {}
    try:
        for name, host in wanted:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(s)
            for _ in range(200 if pool is not None else 0):
                try:
                    s.bind((host, draw.choice(pool)))  # type: ignore[arg-type]
                    break
                except OSError:
                    continue  # taken (or lingering): another
            else:
                s.bind((host, 0))
            out[name] = s.getsockname()[1]
    finally:
        for s in held:
            s.close()
    return out


@attrs.define
class NodeProcess:
    """A node's OS process, as the launcher (and the chaos harness) sees it."""

    name: str
    popen: subprocess.Popen
    pid: int
    endpoint: str
    incarnation: int
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None


def spawn_node(topo_file: Path, name: str, run_dir: Path, fault_control: str | None = None) -> subprocess.Popen:
    """Start a node process (it prints its ready line once its peers are up).

    ``fault_control``: the node whose fault plans it obeys (a chaos run's control node); None: it obeys none.
    """
    args = ["--topology", str(topo_file), "--name", name, "--run-dir", str(run_dir), "--wait-start"]
    if fault_control is not None:
        args += ["--fault-control", fault_control]
    server = _SERVERS.get(Path(run_dir).resolve())
    if server is not None and not server.gone:
        try:
            return _fork_node(server, args, run_dir / f"{name}.stderr")
        except ForkServerError as e:
            logger.warning("node {}: {}; starting it as a process of its own", name, e)
    cmd = [sys.executable, "-m", "topologies.node", *args, "--parent-pid", str(os.getpid())]
    with open(run_dir / f"{name}.stderr", "ab") as errf:
        # a process group of its own: a terminal's Ctrl-C goes to the launcher only, even while the node's
        # interpreter starts (before it can ignore SIGINT); the launcher stops it with SIGTERM
        return subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errf, text=True,
                                process_group=0)


_SERVERS: dict[Path, ForkServer] = {}  # run directory -> its run's fork server (topologies.forkserver)


def _fork_node(server: ForkServer, args: list[str], stderr: Path) -> ForkedProcess:
    """A node forked by the run's fork server: stdin and stdout pipes to this process, stderr to its file."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err = os.open(stderr, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        pid = server.spawn([*args, "--parent-pid", str(server.pid)], in_r, out_w, err)
    except BaseException:
        os.close(in_w)
        os.close(out_r)
        raise
    finally:
        for fd in (in_r, out_w, err):
            os.close(fd)
    return server.adopt(pid, open(in_w, "w", encoding="utf-8"), open(out_r, encoding="utf-8"), args)


def _start_fork_server(run_dir: Path) -> ForkServer | None:
    """The run's fork server (None, said at WARNING, if it cannot start: every node then starts on its own)."""
    if not forkserver_enabled():
        return None
    try:
        server = ForkServer(ROOT, run_dir / "forkserver.stderr")
    except (ForkServerError, OSError) as e:
        logger.warning("{}; every node starts as a process of its own", e)
        return None
    _SERVERS[run_dir] = server
    return server


def _stop_fork_server(run_dir: Path, server: ForkServer | None) -> None:
    if server is not None:
        _SERVERS.pop(run_dir, None)
        server.close()


def await_node(popen: subprocess.Popen, name: str, run_dir: Path, timeout: float = READY_TIMEOUT) -> NodeProcess:
    """Read the ready line of a node started by :func:`spawn_node`; NodeStartError (stopped) if it does not start."""
    ready: dict[str, NodeProcess] = {}
    try:
        _await_ready({name: popen}, run_dir, ready, timeout=timeout)
    except BaseException:
        _stop_process(popen, 5.0)
        raise
    return ready[name]


def start_node(topo_file: Path, name: str, run_dir: Path, fault_control: str | None = None) -> NodeProcess:
    """Start one node and wait until it is ready (e.g. a restart during chaos)."""
    return await_node(spawn_node(topo_file, name, run_dir, fault_control), name, run_dir)


def _await_ready(popens: dict[str, subprocess.Popen], run_dir: Path, ready: dict[str, NodeProcess],
                 stop: threading.Event | None = None, timeout: float = READY_TIMEOUT) -> None:
    """Read every node's ready line at once, into ``ready``; the first node that cannot start fails the start.

    Raises :class:`NodeStartError` (which node, and why in one line) as soon as one node fails, whichever
    it is - not after the nodes before it, which may be waiting for it as a peer - and
    :class:`StartInterrupted` as soon as ``stop`` is set. ``timeout``: seconds in which no node got ready.
    """
    lines: queue.Queue[tuple[str, str]] = queue.Queue()
    for name, popen in popens.items():
        threading.Thread(target=lambda n=name, p=popen: lines.put((n, _read_line(p))), name=f"ready-{name}",
                         daemon=True).start()
    waiting = [n for n in popens if n not in ready]
    deadline = time.monotonic() + timeout
    while waiting:
        if stop is not None and stop.is_set():
            raise StartInterrupted()
        left = deadline - time.monotonic()
        if left <= 0:
            raise NodeStartError(f"node {waiting[0]} did not start: no ready line within {timeout:g} s "
                                 f"(see {run_dir / f'{waiting[0]}.stderr'})")
        try:
            name, line = lines.get(timeout=min(0.05, left))
        except queue.Empty:
            continue
        ready[name] = _ready(popens[name], name, run_dir, line)
        waiting.remove(name)
        deadline = time.monotonic() + timeout
    in_order = {n: ready.pop(n) for n in popens}  # the topology's order, not the order they got ready in
    ready.update(in_order)


def _read_line(popen: subprocess.Popen) -> str:
    try:
        return popen.stdout.readline()  # type: ignore[union-attr]
    except (OSError, ValueError):  # closed: the node is being stopped
        return ""


def _ready(popen: subprocess.Popen, name: str, run_dir: Path, line: str) -> NodeProcess:
    """The node of a ready line; NodeStartError if the line is the node's error line, or no ready line."""
    try:
        info = json.loads(line) if line.strip() else None
    except json.JSONDecodeError:
        info = None
    if isinstance(info, dict) and "error" in info:
        raise NodeStartError(f"node {name} did not start: {info['error']}")
    if not isinstance(info, dict) or not {"pid", "endpoint", "incarnation"} <= info.keys():
        raise NodeStartError(f"node {name} did not start: {_why_not_ready(popen, run_dir / f'{name}.stderr', line)}")
    return NodeProcess(name, popen, info["pid"], info["endpoint"], info["incarnation"], run_dir / f"{name}.stderr")


def _why_not_ready(popen: subprocess.Popen, err: Path, line: str) -> str:
    """One line on why a node closed its stdout without a ready line: its ``error:`` line, else the exception."""
    try:
        code: int | None = popen.wait(2)  # its stdout is closed: it is exiting
    except subprocess.TimeoutExpired:
        code = None
    text = err.read_text(errors="replace") if err.exists() else ""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    said = [ln.split("error: ", 1)[1].strip() for ln in lines if "error: " in ln and " | " not in ln]  # not a log line
    if said:
        return said[-1]
    if line.strip():
        return f"unexpected output {line.strip()[:200]!r} (see {err})"
    status = ("still running" if code is None else f"exit status {code}" if code >= 0
              else f"killed by {signal.Signals(-code).name}" if -code in signal.valid_signals() else f"signal {-code}")
    if "Traceback (most recent call last):" in text:
        exception = next((ln for ln in reversed(lines) if not ln.startswith((" ", "\t"))), "")
        return f"{exception.strip()[:300]} ({status}; see {err})"
    return f"no ready line ({status}; see {err})"


def _stop_all(popens: list[subprocess.Popen], grace: float) -> list[subprocess.Popen]:
    """SIGTERM every node at once, then wait for all of them together (``grace`` in all), SIGKILL the rest.

    Returns the processes that had to be SIGKILLed (a node that does not stop on SIGTERM is a bug).
    """
    killed: list[subprocess.Popen] = []
    for popen in popens:
        if popen.poll() is None:
            try:
                popen.send_signal(signal.SIGCONT)  # a paused node must be able to hear SIGTERM
                popen.terminate()
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace
    for popen in popens:
        try:
            popen.wait(max(0.0, deadline - time.monotonic()))  # one SIGTERM each: a second one may kill it mid-exit
        except subprocess.TimeoutExpired:
            killed.append(popen)
            try:
                popen.kill()
            except ProcessLookupError:
                pass
            popen.wait(5)
        _stop_process(popen, 0.0)  # it has exited: close its pipes
    return killed


def _stop_process(popen: subprocess.Popen, grace: float) -> int | None:
    if popen.poll() is None:
        try:
            popen.send_signal(signal.SIGCONT)  # a paused node must be able to hear SIGTERM
            popen.terminate()
            popen.wait(grace)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(5)
        except ProcessLookupError:
            pass
    for f in (popen.stdin, popen.stdout):
        try:
            if f:
                f.close()
        except OSError:
            pass
    return popen.returncode


class _Tail:
    """Reads the new lines of the nodes' event logs."""

    def __init__(self, files: list[Path]):
        self.offsets = {f: 0 for f in files}

    def add(self, f: Path) -> None:
        self.offsets.setdefault(f, 0)

    def read(self) -> list[dict]:
        out = []
        for f, off in list(self.offsets.items()):
            try:
                with open(f, "rb") as fh:
                    fh.seek(off)
                    data = fh.read()
            except FileNotFoundError:
                continue
            end = data.rfind(b"\n") + 1  # only whole lines
            self.offsets[f] = off + end
            for line in data[:end].splitlines():
                if line.strip():
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError:
                        continue
        return out


class _LogEcho:
    """``-v``: the nodes' own logs (debug level) on stderr as they grow, each line prefixed by its node."""

    def __init__(self, files: dict[str, Path]):
        self.files = files
        self.offsets = {n: 0 for n in files}

    def echo(self) -> None:
        for name, f in self.files.items():
            try:
                with open(f, "rb") as fh:
                    fh.seek(self.offsets[name])
                    data = fh.read()
            except FileNotFoundError:
                continue
            end = data.rfind(b"\n") + 1
            self.offsets[name] += end
            for line in data[:end].decode("utf-8", "replace").splitlines():
                print(f"[{name}] {line}", file=sys.stderr, flush=True)


def merge_events(files: list[Path], out: Path) -> int:
    """Merge per-node JSON-lines logs by time (stable), into ``out``; returns the count."""
    rows = []
    for i, f in enumerate(files):
        if not f.exists():
            continue
        with open(f, encoding="utf-8") as fh:
            for j, line in enumerate(fh):
                line = line.strip()
                if not line:
                    continue
                try:
                    t = json.loads(line)["time"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
                rows.append((t, i, j, line))
    rows.sort()
    with open(out, "w", encoding="utf-8") as fh:
        for *_, line in rows:
            fh.write(line + "\n")
    return len(rows)


def run_real(topo: Topology, run_dir: Path, *, duration: float | None = None, quiet: bool = False,
             hook: Callable[[dict, float], None] | None = None, stop: threading.Event | None = None,
             min_seconds: float = 0.0, verbose: bool = False, fault_control: str | None = None,
             settle_for: float = 0.0) -> RunResult:
    """Run every node as a process until done (not before ``min_seconds``, nor within ``settle_for`` s of the
    last ``[run] settle`` event: a chaos run's recovery), the duration, or ``stop``/Ctrl-C.

    ``verbose``: echo every node's log (``RUNDIR/<node>.log``, debug level) to stderr as it grows.
    ``fault_control``: the node whose fault plans every node obeys (a chaos run's control node; default none).
    """
    load_plugins()
    from topologies.loader import host_problem

    problems = {host: host_problem(host) for host in {n.host for n in topo.nodes}}
    for n in topo.nodes:  # before anything starts (a topology file's hosts were checked by the loader)
        if problems[n.host]:
            raise ValueError(f"node {n.name}: {problems[n.host]}")
    run_dir = Path(run_dir).resolve()  # node processes run in the repository, not in the caller's directory
    run_dir.mkdir(parents=True, exist_ok=True)
    ports = {n.name: n.port for n in topo.nodes if n.port}
    # a node's endpoint on each extra channel it is an end of ([channels]): a port of its own
    extra = [(f"{n.name}#{ch}", n.host) for n in topo.nodes for ch in topo.channels_of(n.name)
             if not n.channel_ports.get(ch)]
    free = _free_ports([(n.name, n.host) for n in topo.nodes if not n.port] + extra)
    ports.update({k: v for k, v in free.items() if "#" not in k})
    channel_ports: dict[str, dict[str, int]] = {}
    for k, v in free.items():
        if "#" in k:
            node, _, ch = k.partition("#")
            channel_ports.setdefault(node, {})[ch] = v
    resolved = topo.with_ports(ports, channel_ports)
    topo_file = run_dir / "topology.json"
    topo_file.write_text(json.dumps(resolved.to_dict(), indent=1))
    stop = stop or threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set()) if threading.current_thread() is threading.main_thread() else None
    procs: dict[str, NodeProcess] = {}
    tally = _Tally(topo)
    launcher_log = EventLog(run_dir / f"{RUN_NODE}.events.jsonl")  # what the run was meant to hold
    launcher_log.emit(time.time(), RUN_NODE, RUN_ACTOR, "run.topology", topology_fields(topo))
    launcher_log.close()
    from transport.zmq import set_insecure_log_level

    if not topo.keys:  # said once for the run, before progress starts; each node says it in its own log file
        logger.warning("topology {} has no CurveZMQ keys ([keys]): every node's transport runs in the clear", topo.name)
    progress = _Progress(topo, "real", quiet)
    reason = "duration"
    t0 = time.monotonic()
    limit = duration if duration is not None else topo.run.duration
    start_killed: list[subprocess.Popen] = []
    # a node in this process (the chaos control node) says it only in the log file, too
    insecure_level = None if topo.keys else set_insecure_log_level("INFO")
    server = _start_fork_server(run_dir)
    try:
        popens: dict[str, subprocess.Popen] = {}
        try:
            for n in resolved.nodes:
                if stop.is_set():
                    raise StartInterrupted()
                popens[n.name] = spawn_node(topo_file, n.name, run_dir, fault_control)
            _await_ready(popens, run_dir, procs, stop)
        except BaseException:
            # a node that cannot start, or Ctrl-C: every node started so far stops now, ready or not
            start_killed.extend(_stop_all(list(popens.values()), SHUTDOWN_GRACE))
            raise
        (run_dir / "pids.json").write_text(json.dumps({n: p.pid for n, p in procs.items()}))
        for p in procs.values():
            p.popen.stdin.write("start\n")  # type: ignore[union-attr]
            p.popen.stdin.flush()  # type: ignore[union-attr]
        progress.update(0, f"{len(procs)} nodes up", force=True)
        tail = _Tail([run_dir / f"{n}.events.jsonl" for n in procs])
        logs = _LogEcho({n: run_dir / f"{n}.log" for n in procs}) if verbose else None
        t0 = time.monotonic()
        while True:
            if logs is not None:
                logs.echo()
            new = tail.read()
            seen_at = time.monotonic() - t0  # an event settles from when the launcher has seen it (never earlier)
            for e in new:
                tally.see(e.get("kind", ""), e.get("fields"), e.get("node", ""), e.get("actor", ""), at=seen_at)
            elapsed = time.monotonic() - t0
            alive = sum(p.alive() for p in procs.values())
            states = tally.state_line()
            progress.update(tally.progress, f"{alive}/{len(procs)} nodes, {sum(tally.kinds.values())} events"
                            + (f"; {states}" if states else ""))
            if tally.may_end(elapsed, min_seconds, settle_for):
                reason = "done"
                break
            if stop.is_set():
                reason = "interrupted"
                break
            if elapsed >= limit:
                break
            if hook is not None:
                hook(procs, elapsed)
            time.sleep(0.05)
        seconds = time.monotonic() - t0
    except StartInterrupted:
        reason, seconds = "interrupted", time.monotonic() - t0
    except Exception as e:
        reason, seconds = f"failed: {e}", time.monotonic() - t0
    finally:
        nodes = {}
        try:
            killed = start_killed + _stop_all([p.popen for p in procs.values()], SHUTDOWN_GRACE)
        finally:
            _stop_fork_server(run_dir, server)
        for name, p in procs.items():
            code = p.popen.returncode
            counters_file = run_dir / f"{name}.counters.json"
            nodes[name] = {"pid": p.pid, "exit": code, "endpoint": p.endpoint,
                           "counters": json.loads(counters_file.read_text()) if counters_file.exists() else None,
                           "sigkilled_at_shutdown": p.popen in killed}
        progress.close()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if insecure_level is not None:
            set_insecure_log_level(insecure_level)
    files = sorted(run_dir.glob("*.events.jsonl"))
    count = merge_events(files, run_dir / "events.jsonl")
    hung = sorted(n for n, info in nodes.items() if info["sigkilled_at_shutdown"])
    if hung and not reason.startswith("failed"):
        # a node that ignores SIGTERM loses its counters and its last events: the run cannot be trusted
        reason = (f"failed: {', '.join(hung)} did not stop within {SHUTDOWN_GRACE:g} s of SIGTERM and "
                  f"{'was' if len(hung) == 1 else 'were'} SIGKILLed" + ("" if reason == "done" else f" (run: {reason})"))
    ok = reason == "done" or (reason == "duration" and topo.run.done is None)
    result = RunResult(topo.name, "real", run_dir, ok, reason, round(seconds, 3), tally.progress, tally.done, count, nodes)
    (run_dir / "summary.json").write_text(json.dumps(result.summary(), indent=1, default=str))
    return result


def build_simulator(topo: Topology, seed: int, events: EventLog, *, trace: bool = False):
    """The simulator and its participants for ``topo`` (used by run_sim and the chaos harness)."""
    load_plugins()
    import random

    from actors.simulator import Simulator
    from transport.sim import LinkSpec, SimNetwork, Uniform

    def spec(latency, loss, duplicate, reorder) -> LinkSpec:
        return LinkSpec(latency=Uniform(*latency), loss=loss, duplicate=duplicate, reorder=reorder)

    net = SimNetwork(default=spec(topo.network.latency, topo.network.loss, topo.network.duplicate, topo.network.reorder),
                     nodes=topo.node_names)
    for ch in topo.channels:  # a channel with a link of its own: every pair it joins (explicit [[links]] win)
        if ch.simulated:
            n = topo.network
            s = spec(ch.latency or n.latency, *(getattr(n, k) if getattr(ch, k) is None else getattr(ch, k)
                                                  for k in ("loss", "duplicate", "reorder")))
            names = topo.node_names
            for i, a in enumerate(names):
                for b in names[i + 1:]:
                    if topo.channel_of(a, b) == ch.name:
                        net.set_link(a, b, s, both=True)
    for ln in topo.links:
        s = spec(ln.latency or topo.network.latency, ln.loss, ln.duplicate, ln.reorder)
        net.set_link(ln.src, ln.dst, s, both=ln.both)
    sim = Simulator(seed, network=net, event_log=events, trace_messages=trace)
    from topologies.durable import MemoryStore
    from topologies.hosts import effect_router, sim_api
    store = MemoryStore()  # durable state survives the simulator's crash/restart of a participant
    factories: dict[str, Callable[[], Any]] = {}
    starts: dict[str, int] = {}  # address -> machines built (incarnations)
    for n in topo.nodes:
        for a in n.actors:
            address = f"{n.name}/{a.name}"
            kind = KINDS[a.kind]

            def factory(kind=kind, params=a.params, address=address):
                # every start is a new incarnation (DESIGN.md, "Incarnations"): a seeded value per incarnation,
                # so a restarted machine draws fresh nonces (boot, epoch, lease ids) and a replay is identical
                durable = store.load(address) if kind.takes_durable else None
                k = starts[address] = starts.get(address, 0) + 1
                rng = sim.rng(address) if k == 1 else random.Random(f"{seed}/{address}/incarnation {k}")
                # the simulator knows whether an earlier incarnation ran (restart safety: ResourceController)
                p = {**params, "first_start": k == 1} if "first_start" in kind.params else params
                return kind.build(p, rng, address, durable=durable)
            factories[address] = factory
            host = kind.build_host(a.params, sim.rng(address + "/host"))
            route = effect_router(host, store if kind.takes_durable else None, address)
            sim.add(address, factory(),
                    host=(lambda eff, addr, s, route=route: route(eff, sim_api(s, addr))) if route else None)
    return sim, factories


def run_sim(topo: Topology, run_dir: Path, seed: int, *, duration: float | None = None, quiet: bool = False,
            trace: bool = False, setup: Callable[[Any, dict], None] | None = None, min_seconds: float = 0.0,
            settle_for: float = 0.0) -> RunResult:
    """Run the topology in the deterministic simulator, from ``seed`` (ends as :func:`run_real` does)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "topology.json").write_text(json.dumps(topo.to_dict(), indent=1))
    tally = _Tally(topo)
    events = _TallyLog(run_dir / "events.jsonl", tally)
    events.emit(0.0, RUN_NODE, RUN_ACTOR, "run.topology", topology_fields(topo))
    sim, factories = build_simulator(topo, seed, events, trace=trace)
    if setup is not None:
        setup(sim, factories)
    progress = _Progress(topo, "sim", quiet)
    limit = duration if duration is not None else topo.run.duration
    step = max(limit / 100, 0.01)
    reason = "duration"
    wall = time.monotonic()
    try:
        t = 0.0
        while t < limit:
            t = min(limit, t + step)
            sim.run(until=t)
            states = tally.state_line()
            progress.update(tally.progress, f"virtual {sim.now:.2f}s, {events.count} events" + (f"; {states}" if states else ""))
            if tally.may_end(sim.now, min_seconds, settle_for):
                reason = "done"
                break
            if not sim.pending():
                # nothing left to happen (fault ops are scheduled events, so they have all played out):
                # the run is over - done if the topology finished, stalled if it never will
                reason = "done" if tally.finished else "stalled"
                break
    finally:
        progress.update(tally.progress, f"virtual {sim.now:.2f}s, {events.count} events, real {time.monotonic() - wall:.2f}s", force=True)
        progress.close()
        events.close()
    (run_dir / "counters.json").write_text(json.dumps(sim.counters(), indent=1, sort_keys=True))
    ok = reason == "done" or topo.run.done is None
    result = RunResult(topo.name, "sim", run_dir, ok, reason, round(sim.now, 6), tally.progress, tally.done,
                       events.count, {n: {"actors": [a.name for a in topo.node(n).actors]} for n in topo.node_names}, seed)
    (run_dir / "summary.json").write_text(json.dumps(result.summary(), indent=1, default=str))
    return result
