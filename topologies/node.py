"""One fleetplane node as an OS process: ``python -m topologies.node``.

How this works
--------------
The process builds a :class:`~actors.Node` on a
:class:`~transport.zmq.ZmqTransport` and prints one JSON line to stdout once
its endpoint is bound and its actors exist (with ``--wait-start``: before they
start, see below): ``{"node", "endpoint", "pid", "incarnation", "peers"}``.
The launcher (and tests) read it to learn the port when ``--bind`` asked for
an automatic one. A node that cannot start (its port is taken, a bad
argument file, an actor class that does not load) prints
``{"error": "..."}`` there instead, says ``error: ...`` on stderr and exits
with status 1 (2 for bad arguments), at once: before it waits for any peer.
SIGTERM or SIGINT stops it cleanly: actors stopped, sockets closed, logs
flushed, counters written, exit status 0 - also while it waits for its peers
or for ``start``. An actor that does not stop within 4 s is left behind
(``actor.stop_timeout``, counted as ``stop_timeouts``); a shutdown still not
done after 8 s prints every thread's stack on stderr and exits with status 1,
so a node never ignores SIGTERM (the launcher SIGKILLs after 10 s); once
stopped, the process ends at once (no interpreter teardown can keep it alive). With ``--parent-pid`` (a launcher's node) it ignores
SIGINT: the launcher owns the shutdown (it sends SIGTERM), and a Ctrl-C in a
terminal, which reaches a whole process group, is the launcher's to handle
(the launcher also starts each node in a process group of its own, so the
node is safe from it even before it can ignore it).

Two ways to say what it hosts:

* ``--topology FILE.json --name N``: a resolved topology written by the
  launcher. The node binds its own endpoint, knows every peer's, and builds
  each of its actors from the actor kind (a protocol state machine in a
  ``StateMachineActor``, with an rng seeded from the topology seed, the
  actor's address and a fresh nonce per start: :class:`Incarnations`). With
  ``--wait-start`` it first waits for its peers to come up (10 s at most),
  then prints its ready line and starts its actors when a ``start`` line
  arrives on stdin - the launcher sends it to every node at once, so every
  protocol begins with the network in place.
* ``--spawn NAME=module:Class[:JSON]`` (repeatable), plus ``--peer`` and
  ``--bind``: any Actor class, for tests and ad-hoc setups.

``--run-dir DIR`` puts ``<node>.events.jsonl``, ``<node>.log`` and, at exit,
``<node>.counters.json`` there. ``--parent-pid`` makes the process stop when
that process dies (Linux parent-death signal), so a killed launcher leaves no
orphans. Bad arguments exit with status 2 and a one-line message.

A launcher's node (``--topology`` and ``--run-dir``) logs "no CurveZMQ keys
configured" at INFO, so it stays in ``<node>.log`` and off stderr: the
launcher says it once for the whole run. A node run by hand says it at
WARNING.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from loguru import logger

from topologies.argtypes import positive_float, positive_int

__all__ = ["Incarnations", "actor_factory", "main"]

CLIENT_NODES = "client-*"  # names a topology node admits besides the topology's own (clients such as fleetplane task)


def _peer(s: str) -> tuple[str, str]:
    name, sep, ep = s.partition("=")
    if not sep or not name or "/" in name or not ep.startswith(("tcp://", "ipc://")):
        raise argparse.ArgumentTypeError(f"expected NAME=tcp://HOST:PORT, got {s!r}")
    return name, ep


def _spawn(s: str) -> tuple[str, str, str, dict]:
    name, sep, rest = s.partition("=")
    parts = rest.split(":", 2)
    if not sep or not name or len(parts) < 2:
        raise argparse.ArgumentTypeError(f"expected NAME=module:Class[:JSON], got {s!r}")
    kwargs = {}
    if len(parts) == 3:
        try:
            kwargs = json.loads(parts[2])
        except json.JSONDecodeError as e:
            raise argparse.ArgumentTypeError(f"bad JSON arguments in {s!r}: {e}") from None
        if not isinstance(kwargs, dict):
            raise argparse.ArgumentTypeError(f"JSON arguments in {s!r} must be an object")
    return name, parts[0], parts[1], kwargs


class Incarnations:
    """The rngs of a node process's actors: every start of an actor is a new incarnation.

    DESIGN.md, "Incarnations": the nonces a machine draws from its rng (a server's
    boot nonce, a controller's epoch and so its lease ids) must differ on every
    start, so the seed of each start mixes the topology seed and the address with
    this process's ``nonce`` (random: a process restarted by chaos or by hand is
    a new incarnation) and a per-address start count (an in-process supervised
    restart, which calls the actor's factory again, is one too). Never the
    topology seed and the address alone.

    ``record`` (a launcher's node: ``RUNDIR/NODE.starts.jsonl``, kept across the
    node's restarts) logs the starts of the actors that ask, so the host knows
    whether such an actor had an earlier incarnation in this run
    (:meth:`earlier`); without a record it cannot know, and says so (None).
    """

    def __init__(self, seed: int | str | None, nonce: str | None = None, record: Path | None = None) -> None:
        self.seed = seed
        self.nonce = nonce if nonce is not None else os.urandom(8).hex()
        self.starts: dict[str, int] = {}
        self.record = record
        self._before: dict[str, int] | None = {}  # address -> starts recorded by earlier processes (None: unreadable)
        if record is not None and record.exists():
            try:
                for line in record.read_text(encoding="utf-8").splitlines():
                    a = json.loads(line)["address"]
                    self._before[a] = self._before.get(a, 0) + 1
            except (OSError, ValueError, KeyError, TypeError):
                self._before = None  # a torn or foreign record: every start counts as a restart

    def earlier(self, address: str) -> int | None:
        """Earlier incarnations of ``address`` this host knows of (None: it cannot know)."""
        mine = self.starts.get(address, 0)
        if self.record is None or self._before is None:
            return mine or None
        return self._before.get(address, 0) + mine

    def rng(self, address: str, record: bool = True) -> random.Random:
        """A fresh rng for the next start of the actor at ``address`` (with ``record``, the start is recorded
        first, synced: only actors whose host must tell a restart from a first start need it)."""
        n = self.starts[address] = self.starts.get(address, 0) + 1
        if record and self.record is not None:
            try:
                with open(self.record, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"address": address, "nonce": self.nonce, "start": n}) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                logger.warning("cannot record the start of {} in {}: {} (later starts count as restarts)",
                               address, self.record, e)
                self._before = None
        return random.Random(f"{self.seed}/{address}/{self.nonce}/{n}")


def actor_factory(kind: Any, params: dict, address: str, store: Any, incarnations: Incarnations):
    """The factory of a topology actor in a node process: each call (the first start, every supervised
    restart) builds the machine with a fresh incarnation's rng and the actor's durable state. A kind that
    takes ``first_start`` (a resource controller: restart safety) is told whether this host knows that no
    earlier incarnation ran (never from the topology file: a start the host cannot vouch for is a restart)."""
    def factory() -> Any:
        durable = store.load(address) if kind.takes_durable else None
        if "first_start" in kind.params:
            first = incarnations.earlier(address) == 0
            return kind.build({**params, "first_start": first}, incarnations.rng(address), address, durable=durable)
        return kind.build(params, incarnations.rng(address, record=False), address, durable=durable)
    return factory


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m topologies.node", description="Run one fleetplane node in this process. It prints one JSON "
        "line on stdout once it serves ({\"node\", \"endpoint\", \"pid\", \"incarnation\", \"peers\"}), or "
        "{\"error\": ...} if it cannot start; SIGTERM stops it cleanly (exit 0).",
        epilog="example: python -m topologies.node --name east --bind tcp://127.0.0.1:7001 "
               "--peer west=tcp://127.0.0.1:7002 --spawn upper=mymodule:Upper --events east.jsonl")
    p.add_argument("--name", required=True, help="this node's name (letters, digits, '_', '.', '-'; no '/'): "
                   "its actors are NAME/ACTOR, and peers know it by this name")
    p.add_argument("--topology", type=Path, metavar="FILE.json",
                   help="resolved topology (JSON, written by the launcher to RUNDIR/topology.json): the node binds "
                        "its host and port from it, has every other node as a peer and builds its actors from their "
                        "kinds; --bind, --peer, --heartbeat, --liveness and --seed are then taken from the file")
    p.add_argument("--wait-start", action="store_true",
                   help="first wait for every peer to be up (10 s at most), then print the ready line and start the "
                        "actors only after a 'start' line on stdin (the launcher's protocol)")
    p.add_argument("--run-dir", type=Path, metavar="DIR",
                   help="write NAME.events.jsonl, NAME.log (every level) and, at exit, NAME.counters.json here "
                        "(default: none; events only in memory unless --events)")
    p.add_argument("--parent-pid", type=int, metavar="PID",
                   help="stop (SIGTERM) when process PID dies (Linux parent-death signal), and ignore SIGINT: that "
                        "process owns the shutdown (default: none)")
    p.add_argument("--bind", default="tcp://127.0.0.1:*", metavar="ENDPOINT",
                   help="endpoint to bind, tcp://HOST:PORT; PORT '*' picks a free one, printed in the ready line "
                        "(default tcp://127.0.0.1:*)")
    p.add_argument("--peer", type=_peer, action="append", default=[], metavar="NAME=ENDPOINT",
                   help="a peer node and its endpoint, e.g. west=tcp://127.0.0.1:7002 (repeatable; default: none; "
                        "a peer that connects to this node is known from its heartbeats either way)")
    p.add_argument("--spawn", type=_spawn, action="append", default=[], metavar="NAME=module:Class[:JSON]",
                   help="run an actor named NAME of class module:Class, with keyword arguments from an optional "
                        "JSON object, e.g. upper=mymodule:Upper or echo=m:Echo:{\"n\": 1} (repeatable; default: none)")
    p.add_argument("--events", type=Path, metavar="FILE",
                   help="event log path, JSON lines (default: DIR/NAME.events.jsonl with --run-dir, else in memory)")
    p.add_argument("--heartbeat", type=positive_float, default=0.5, metavar="S",
                   help="heartbeat interval in seconds (default 0.5)")
    p.add_argument("--liveness", type=positive_int, default=4, metavar="N",
                   help="missed heartbeat intervals before a peer is down (default 4)")
    p.add_argument("--curve", type=Path, metavar="FILE",
                   help="CurveZMQ keys, a JSON file: {public_key, secret_key, peer_keys: {node: key}} "
                        "(default: none: traffic in the clear, said once at WARNING)")
    p.add_argument("--seed", type=int, help="seed for the fault-injection rng (default: a random one)")
    p.add_argument("--dispatch", choices=("thread", "loop"), default="thread",
                   help="without --topology: where actors run, a thread each or the transport's I/O loop "
                        "(default thread)")
    p.add_argument("--fault-control", metavar="NODE",
                   help="obey fault plans (transport.SetFaults / ClearFaults to NAME/$sys) from node NODE only: for a "
                        "chaos run, whose launcher passes its control node (chaosctl). Default: none; fault plans from "
                        "other nodes are refused, counted (faults_refused) and logged")
    p.add_argument("--log-level", default="WARNING", metavar="LEVEL",
                   help="stderr log level: DEBUG, INFO, WARNING or ERROR (default WARNING; DIR/NAME.log gets DEBUG)")
    return p


def _fail(message: str, status: int = 1) -> int:
    """Say why the node cannot start: one JSON line on stdout (for a launcher), one line on stderr (for a person)."""
    print(json.dumps({"error": message}), flush=True)
    print(f"error: {message}", file=sys.stderr, flush=True)
    return status


def _bind_error(bind: str, e: Exception) -> str:
    import errno

    import zmq

    if isinstance(e, zmq.ZMQError) and e.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES, errno.EINVAL,
                                                   errno.ENODEV):
        return f"cannot bind {bind}: {os.strerror(e.errno)}"
    return str(e)


def _wait_for_start(stop: threading.Event) -> bool:
    """Wait for the launcher's 'start' line on stdin; False if ``stop`` is set first (SIGTERM) or stdin says otherwise."""
    line: list[str] = []
    arrived = threading.Event()

    def read() -> None:
        try:
            line.append(sys.stdin.readline())
        finally:
            arrived.set()
    threading.Thread(target=read, name="wait-start", daemon=True).start()  # a signal cannot interrupt a read
    while not stop.is_set():
        if arrived.wait(0.05):
            return bool(line) and line[0].strip() == "start"
    return False


def _die_with_parent(pid: int) -> None:
    """Ask Linux to send SIGTERM when the launcher dies (no-op elsewhere)."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != pid:  # the parent died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


SHUTDOWN_WATCHDOG = 8.0  # seconds a stopping node may take (the launcher SIGKILLs after 10)


def _exit_if_stuck(after: float) -> None:
    """If the process is still here ``after`` seconds from now, say so with every thread's stack on stderr and
    exit with status 1: a node never ignores SIGTERM (and the stacks name what held it)."""
    def fire() -> None:
        import faulthandler
        try:
            os.write(2, f"error: node shutdown did not finish within {after:g} s; exiting with status 1; "
                        "thread stacks follow\n".encode())
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        finally:
            os._exit(1)
    t = threading.Timer(after, fire)
    t.daemon = True
    t.start()


def stop_on_signals(stop: threading.Event, signums: tuple[int, ...]) -> None:
    """Set ``stop`` when one of ``signums`` arrives - from a thread of its own, never in the signal handler.

    A Python handler runs in the main thread between two bytecodes, possibly inside ``stop.wait``'s critical
    section (a plain Lock): ``stop.set()`` there waits forever for a lock its own thread holds, and the node
    ignores SIGTERM (tests/test_node_signals.py). So the handlers do nothing, the C-level handler writes the
    signal number to a wakeup pipe (async-signal-safe), and a daemon thread reads it and sets ``stop``.
    Call from the main thread.
    """
    r, w = os.pipe()
    os.set_blocking(w, False)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    for sig in signums:
        signal.signal(sig, lambda *_: None)
    wanted = set(signums)

    def watch() -> None:
        while True:
            data = os.read(r, 64)
            if not data:
                return
            if wanted.intersection(data):
                stop.set()
    threading.Thread(target=watch, name="signals", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stop = threading.Event()
    # a launcher's node leaves Ctrl-C to the launcher, which stops every node with SIGTERM
    if args.parent_pid:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop_on_signals(stop, (signal.SIGTERM,) if args.parent_pid else (signal.SIGTERM, signal.SIGINT))
    logger.remove()
    logger.add(sys.stderr, level=args.log_level.upper(), backtrace=False, diagnose=False)
    if args.run_dir is not None:
        args.run_dir.mkdir(parents=True, exist_ok=True)
        logger.add(args.run_dir / f"{args.name}.log", level="DEBUG", backtrace=False, diagnose=False)
    if args.parent_pid:
        _die_with_parent(args.parent_pid)

    from actors import EventLog, Node, StateMachineActor
    from transport.zmq import CurveConfig, ZmqTransport, set_insecure_log_level

    if args.topology is not None and args.run_dir is not None:
        set_insecure_log_level("INFO")  # in NAME.log; the launcher says it once for the run
    if "/" in args.name or not args.name:
        return _fail(f"bad node name {args.name!r}", 2)
    if args.fault_control is not None and ("/" in args.fault_control or not args.fault_control):
        return _fail(f"bad --fault-control node name {args.fault_control!r}", 2)
    heartbeat, liveness, bind, peers, seed = args.heartbeat, args.liveness, args.bind, dict(args.peer), args.seed
    curve = None
    spawns: list[tuple[str, type, tuple, dict]] = []
    store: Any = None  # the durable store of the topology's actors (Persist effects)
    topo = None
    if args.topology is not None:
        from topologies.kinds import KINDS
        from topologies.model import Topology
        from topologies.plugin import load_plugins

        load_plugins()
        try:
            topo = Topology.from_dict(json.loads(args.topology.read_text()))
            me = topo.node(args.name)
        except (OSError, ValueError, KeyError, TypeError) as e:
            return _fail(f"cannot use topology {args.topology} for node {args.name!r}: {e}", 2)
        heartbeat, liveness, seed = topo.transport.heartbeat, topo.transport.liveness, topo.seed
        bind = f"tcp://{me.host}:{me.port}"
        peers.update({n.name: n.endpoint for n in topo.nodes if n.name != args.name})
        if topo.keys:
            k = topo.keys[args.name]
            curve = CurveConfig(k["public"], k["secret"], {n: v["public"] for n, v in topo.keys.items() if n != args.name})
        from topologies.durable import FileStore, MemoryStore
        from topologies.hosts import actor_api, effect_router
        store = FileStore(args.run_dir / "durable") if args.run_dir is not None else MemoryStore()
        # this process's start: a fresh nonce (DESIGN.md, "Incarnations"); the record tells a restart from a first start
        incarnations = Incarnations(topo.seed, record=args.run_dir / f"{args.name}.starts.jsonl"
                                    if args.run_dir is not None else None)
        for a in me.actors:
            kind = KINDS[a.kind]
            address = f"{args.name}/{a.name}"
            if kind.takes_durable:  # a log the store refuses is this node's start error, before it binds or says ready
                from topologies.durable import CorruptLog

                try:
                    store.load(address)
                except CorruptLog as e:
                    return _fail(str(e))

            factory = actor_factory(kind, a.params, address, store, incarnations)
            host = kind.build_host(a.params, random.Random(f"{topo.seed}/{address}/host"))
            route = effect_router(host, store if kind.takes_durable else None, address)
            on_effect = (lambda eff, actor, route=route: route(eff, actor_api(actor))) if route else None
            sync = (lambda address=address: store.sync(address)) if kind.takes_durable else None
            spawns.append((a.name, StateMachineActor, (factory,), {"on_effect": on_effect, "before_send": sync}))
    if args.curve is not None:
        try:
            spec = json.loads(args.curve.read_text())
            curve = CurveConfig(spec["public_key"], spec["secret_key"], spec.get("peer_keys", {}))
        except (OSError, ValueError, KeyError, TypeError) as e:
            return _fail(f"cannot read CURVE keys from {args.curve}: {e}", 2)
    for name, module, cls_name, kwargs in args.spawn:
        try:
            cls = getattr(importlib.import_module(module), cls_name)
        except (ImportError, AttributeError) as e:
            return _fail(f"cannot load actor class {module}:{cls_name}: {e}", 2)
        spawns.append((name, cls, (), kwargs))

    events_path = args.events or (args.run_dir / f"{args.name}.events.jsonl" if args.run_dir else None)
    events = EventLog(events_path) if events_path else EventLog(maxlen=10_000)
    directory: dict[str, str] = {}
    if topo is not None and topo.transport.connect == "on-demand":
        directory, peers = peers, {}  # connect to a node when first sending to it; ready once bound
    # From a topology the node knows every peer: a heartbeat may introduce only clients (nodes named client-*,
    # e.g. fleetplane task; capped and evicted like any learned peer) and the chaos control node when this node
    # obeys one; a node started by hand keeps learning peers from heartbeats (docs/security.md).
    learn: bool | set[str] = True if topo is None else {CLIENT_NODES, *([args.fault_control] if args.fault_control else [])}
    extra = topo.channels_of(args.name) if topo is not None else []
    if not extra:
        transport: Any = ZmqTransport(bind, peers, heartbeat_interval=heartbeat, liveness=liveness, curve=curve,
                                      seed=seed, directory=directory, learn_peers=learn)
    else:  # more than one channel ([channels]): an endpoint on each, every link on its own channel
        try:
            transport = _channel_transport(topo, args.name, peers, directory, heartbeat, liveness, curve, seed, learn)
        except ValueError as e:
            return _fail(f"cannot use topology {args.topology} for node {args.name!r}: {e}", 2)
    try:
        node = Node(args.name, transport=transport, event_log=events, trace_asks=topo is not None,
                    dispatch=topo.transport.dispatch if topo is not None else args.dispatch,
                    fault_control=args.fault_control)
    except Exception as e:  # e.g. the port is taken: fail now, before waiting for any peer
        return _fail(_bind_error(getattr(transport, "failed_bind", None) or bind, e))
    try:
        if args.wait_start:  # ready = bound and every peer heard from (or 10 s passed)
            deadline = time.monotonic() + 10.0
            while not stop.is_set() and time.monotonic() < deadline:
                states = transport.peers()
                if all(states.get(p) == "up" for p in peers):
                    break
                stop.wait(0.01)
        ready_line = {"node": args.name, "endpoint": transport.endpoint, "pid": os.getpid(),
                      "incarnation": transport.incarnation, "peers": transport.peers()}
        if hasattr(transport, "endpoints"):  # on more than one channel: its endpoint on each
            ready_line["endpoints"] = transport.endpoints
        ready = json.dumps(ready_line)
        if args.wait_start:  # the launcher's protocol: ready, then the actors start on its 'start' line
            print(ready, flush=True)
            if not _wait_for_start(stop):
                stop.set()
        if not stop.is_set():
            events.emit(node.clock.now(), args.name, "$node", "node.started",
                        {"pid": os.getpid(), "incarnation": transport.incarnation, "peers": transport.peers()})
            for name, cls, cargs, kwargs in spawns:
                node.spawn(cls, *cargs, name=name, **kwargs)
        if not args.wait_start:  # on its own, a node is ready once its actors exist: an ask right away finds them
            print(ready, flush=True)
        counted = time.monotonic()
        while not stop.wait(0.2):
            events.flush()
            if topo is not None and topo.channels and time.monotonic() - counted >= CHANNEL_COUNTS_EVERY:
                # a topology with channels: what went over each, so a run shows which traffic a cut stopped
                counted = time.monotonic()
                events.emit(node.clock.now(), args.name, "$transport", "transport.channel_counts",
                            _channel_counts(transport))
    finally:
        _exit_if_stuck(SHUTDOWN_WATCHDOG)
        counters = node.counters()
        try:
            node.shutdown(timeout=4.0)
            if node.counters().get("stop_timeouts"):
                counters["stop_timeouts"] = node.counters()["stop_timeouts"]
        except Exception:
            logger.exception("node {}: shutdown raised", args.name)
        if store is not None:
            counters.update({"durable.writes": store.writes, "durable.syncs": store.syncs})
            if hasattr(store, "close"):
                store.close()
        events.emit(node.clock.now(), args.name, "$node", "node.stopped", {"pid": os.getpid()})
        events.close()
        if args.run_dir is not None:
            (args.run_dir / f"{args.name}.counters.json").write_text(json.dumps(counters, indent=1, sort_keys=True))
    return 0


CHANNEL_COUNTS_EVERY = 1.0  # seconds between a multi-channel topology's transport.channel_counts events


def _channel_transport(topo: Any, name: str, peers: dict, directory: dict, heartbeat: float, liveness: int,
                       curve: Any, seed: Any, learn: Any) -> Any:
    """A node's transport on every channel it is an end of: one ZmqTransport per channel, bound on the node's
    port for it, knowing the peers of the links on it (their endpoints on that channel). Only the main
    channel learns peers (clients, the chaos control node); loop-dispatched actors run on the I/O thread
    of the channel with the most links from this node (the monitor mesh, for a monitor)."""
    from transport.zmq import ChannelTransport, ZmqTransport

    me = topo.node(name)
    on_demand = bool(directory)
    channels: dict[str, Any] = {}
    links: dict[str, int] = {}
    for ch in ["main", *topo.channels_of(name)]:
        mine = {n.name: n.channel_endpoint(ch) for n in topo.nodes
                if n.name != name and topo.channel_of(name, n.name) == ch}
        links[ch] = len(mine)
        if ch == "main":  # peers named on the command line (--peer) stay on the main channel
            mine.update({p: ep for p, ep in {**peers, **directory}.items() if p not in topo.node_names})
        channels[ch] = ZmqTransport(me.channel_endpoint(ch), {} if on_demand else mine, heartbeat_interval=heartbeat,
                                    liveness=liveness, curve=curve, seed=seed, directory=mine if on_demand else None,
                                    learn_peers=learn if ch == "main" else False)
    loop = max(links, key=lambda ch: (links[ch], ch == "main"))
    nodes = set(topo.node_names)
    return ChannelTransport(channels, lambda peer: topo.channel_of(name, peer) if peer in nodes else "main", loop=loop)


def _channel_counts(transport: Any) -> dict:
    counts = getattr(transport, "channel_counts", None)
    return counts() if counts is not None else {}


def _run_and_exit() -> None:
    """``main()``, then end the process at once with its status: once the node has stopped (actors, transport,
    event log, counters written), interpreter teardown - exit handlers and finalizers of the libraries (a ZeroMQ
    context, a logging sink) - must not keep it alive past the launcher's grace, where the watchdog, frozen with
    every daemon thread during finalization, cannot help."""
    try:
        status = main()
    except SystemExit as e:  # argparse: usage errors (2), --help (0)
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
    except BaseException:
        import traceback

        traceback.print_exc()
        status = 1
    try:
        logger.remove()  # flush and close the log sinks
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(status)


if __name__ == "__main__":
    _run_and_exit()
