"""One fleetplane node as an OS process: ``python -m topologies.node``.

How this works
--------------
The process builds a :class:`~actors.Node` on a
:class:`~transport.zmq.ZmqTransport` and prints one JSON line to stdout once
its endpoint is bound: ``{"node", "endpoint", "pid", "incarnation"}``. The
launcher (and tests) read it to learn the port when ``--bind`` asked for an
automatic one. SIGTERM or SIGINT stops it cleanly: actors stopped, sockets
closed, logs flushed, counters written, exit status 0.

Two ways to say what it hosts:

* ``--topology FILE.json --name N``: a resolved topology written by the
  launcher. The node binds its own endpoint, knows every peer's, and builds
  each of its actors from the actor kind (a protocol state machine in a
  ``StateMachineActor``, with an rng seeded from the topology seed and the
  actor's address). With ``--wait-start`` it first waits for its peers to
  come up (10 s at most), then prints its ready line and starts its actors
  when a ``start`` line arrives on stdin - the launcher sends it to every
  node at once, so every protocol begins with the network in place.
* ``--spawn NAME=module:Class[:JSON]`` (repeatable), plus ``--peer`` and
  ``--bind``: any Actor class, for tests and ad-hoc setups.

``--run-dir DIR`` puts ``<node>.events.jsonl``, ``<node>.log`` and, at exit,
``<node>.counters.json`` there. ``--parent-pid`` makes the process stop when
that process dies (Linux parent-death signal), so a killed launcher leaves no
orphans. Bad arguments exit with status 2 and a one-line message.
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

__all__ = ["main"]


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m topologies.node", description="run one fleetplane node")
    p.add_argument("--name", required=True)
    p.add_argument("--topology", type=Path, help="resolved topology (JSON, written by the launcher)")
    p.add_argument("--wait-start", action="store_true", help="start actors after a 'start' line on stdin")
    p.add_argument("--run-dir", type=Path, help="where events, logs and counters go")
    p.add_argument("--parent-pid", type=int, help="stop when this process dies")
    p.add_argument("--bind", default="tcp://127.0.0.1:*")
    p.add_argument("--peer", type=_peer, action="append", default=[], metavar="NAME=ENDPOINT")
    p.add_argument("--spawn", type=_spawn, action="append", default=[], metavar="NAME=module:Class[:JSON]")
    p.add_argument("--events", type=Path, help="event log path (JSON lines)")
    p.add_argument("--heartbeat", type=positive_float, default=0.5, help="heartbeat interval, s (default 0.5)")
    p.add_argument("--liveness", type=positive_int, default=4, help="missed intervals before a peer is down (default 4)")
    p.add_argument("--curve", type=Path, help="JSON file: {public_key, secret_key, peer_keys: {node: key}}")
    p.add_argument("--seed", type=int, help="seed for the fault-injection rng")
    p.add_argument("--dispatch", choices=("thread", "loop"), default="thread",
                   help="without --topology: where actors run (a thread each, or the transport's I/O loop)")
    p.add_argument("--log-level", default="WARNING")
    return p


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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level=args.log_level.upper(), backtrace=False, diagnose=False)
    if args.run_dir is not None:
        args.run_dir.mkdir(parents=True, exist_ok=True)
        logger.add(args.run_dir / f"{args.name}.log", level="DEBUG", backtrace=False, diagnose=False)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.parent_pid:
        _die_with_parent(args.parent_pid)

    from actors import EventLog, Node, StateMachineActor
    from transport.zmq import CurveConfig, ZmqTransport

    if "/" in args.name or not args.name:
        print(f"error: bad node name {args.name!r}", file=sys.stderr)
        return 2
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
            print(f"error: cannot use topology {args.topology} for node {args.name!r}: {e}", file=sys.stderr)
            return 2
        heartbeat, liveness, seed = topo.transport.heartbeat, topo.transport.liveness, topo.seed
        bind = f"tcp://{me.host}:{me.port}"
        peers.update({n.name: n.endpoint for n in topo.nodes if n.name != args.name})
        if topo.keys:
            k = topo.keys[args.name]
            curve = CurveConfig(k["public"], k["secret"], {n: v["public"] for n, v in topo.keys.items() if n != args.name})
        from topologies.durable import FileStore, MemoryStore
        from topologies.hosts import actor_api, effect_router
        store = FileStore(args.run_dir / "durable") if args.run_dir is not None else MemoryStore()
        for a in me.actors:
            kind = KINDS[a.kind]
            address = f"{args.name}/{a.name}"

            def factory(kind=kind, params=a.params, address=address):
                durable = store.load(address) if kind.takes_durable else None
                return kind.build(params, random.Random(f"{topo.seed}/{address}"), address, durable=durable)
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
            print(f"error: cannot read CURVE keys from {args.curve}: {e}", file=sys.stderr)
            return 2
    for name, module, cls_name, kwargs in args.spawn:
        try:
            cls = getattr(importlib.import_module(module), cls_name)
        except (ImportError, AttributeError) as e:
            print(f"error: cannot load actor class {module}:{cls_name}: {e}", file=sys.stderr)
            return 2
        spawns.append((name, cls, (), kwargs))

    events_path = args.events or (args.run_dir / f"{args.name}.events.jsonl" if args.run_dir else None)
    events = EventLog(events_path) if events_path else EventLog(maxlen=10_000)
    directory: dict[str, str] = {}
    if topo is not None and topo.transport.connect == "on-demand":
        directory, peers = peers, {}  # connect to a node when first sending to it; ready once bound
    transport = ZmqTransport(bind, peers, heartbeat_interval=heartbeat, liveness=liveness, curve=curve, seed=seed,
                             directory=directory)
    try:
        node = Node(args.name, transport=transport, event_log=events, trace_asks=topo is not None,
                    dispatch=topo.transport.dispatch if topo is not None else args.dispatch)
    except Exception as e:  # e.g. the port is taken
        print(f"error: cannot start node {args.name}: {e}", file=sys.stderr)
        return 1
    try:
        if args.wait_start:  # ready = bound and every peer heard from (or 10 s passed)
            deadline = time.monotonic() + 10.0
            while not stop.is_set() and time.monotonic() < deadline:
                states = transport.peers()
                if all(states.get(p) == "up" for p in peers):
                    break
                stop.wait(0.01)
        print(json.dumps({"node": args.name, "endpoint": transport.endpoint, "pid": os.getpid(),
                          "incarnation": transport.incarnation, "peers": transport.peers()}), flush=True)
        if args.wait_start and sys.stdin.readline().strip() != "start":
            stop.set()
        if not stop.is_set():
            events.emit(node.clock.now(), args.name, "$node", "node.started",
                        {"pid": os.getpid(), "incarnation": transport.incarnation, "peers": transport.peers()})
            for name, cls, cargs, kwargs in spawns:
                node.spawn(cls, *cargs, name=name, **kwargs)
        while not stop.wait(0.2):
            events.flush()
    finally:
        counters = node.counters()
        node.shutdown()
        if store is not None:
            counters.update({"durable.writes": store.writes, "durable.syncs": store.syncs})
            if hasattr(store, "close"):
                store.close()
        events.emit(node.clock.now(), args.name, "$node", "node.stopped", {"pid": os.getpid()})
        events.close()
        if args.run_dir is not None:
            (args.run_dir / f"{args.name}.counters.json").write_text(json.dumps(counters, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
