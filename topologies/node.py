"""One fleetplane node as an OS process: ``python -m topologies.node``.

How this works
--------------
The process builds a :class:`~actors.Node` on a
:class:`~transport.zmq.ZmqTransport`, spawns the actors named on the command
line (``--spawn NAME=module:Class`` with optional JSON keyword arguments
``--spawn NAME=module:Class:{"k": 1}``), writes its event log to
``--events`` (JSON lines), and prints one JSON line to stdout once it is
serving: ``{"node": ..., "endpoint": ..., "pid": ..., "incarnation": ...}``.
The launcher (and tests) read that line to learn the port when ``--bind``
asked for an automatic one (``tcp://127.0.0.1:*``). SIGTERM or SIGINT stops it
cleanly: actors stopped, sockets closed, logs flushed, exit status 0.

Bad arguments exit with status 2 and a one-line message, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import threading
from pathlib import Path

from loguru import logger

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


def _positive(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {s!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m topologies.node", description="run one fleetplane node")
    p.add_argument("--name", required=True)
    p.add_argument("--bind", default="tcp://127.0.0.1:*")
    p.add_argument("--peer", type=_peer, action="append", default=[], metavar="NAME=ENDPOINT")
    p.add_argument("--spawn", type=_spawn, action="append", default=[], metavar="NAME=module:Class[:JSON]")
    p.add_argument("--events", type=Path, help="event log path (JSON lines)")
    p.add_argument("--heartbeat", type=_positive, default=0.5, help="heartbeat interval, s (default 0.5)")
    p.add_argument("--liveness", type=int, default=4, help="missed intervals before a peer is down (default 4)")
    p.add_argument("--curve", type=Path, help="JSON file: {public_key, secret_key, peer_keys: {node: key}}")
    p.add_argument("--seed", type=int, help="seed for the fault-injection rng")
    p.add_argument("--log-level", default="WARNING")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level=args.log_level.upper(), backtrace=False, diagnose=False)

    from actors import EventLog, Node
    from transport.zmq import CurveConfig, ZmqTransport

    if "/" in args.name or not args.name:
        print(f"error: bad node name {args.name!r}", file=sys.stderr)
        return 2
    curve = None
    if args.curve is not None:
        try:
            spec = json.loads(args.curve.read_text())
            curve = CurveConfig(spec["public_key"], spec["secret_key"], spec.get("peer_keys", {}))
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"error: cannot read CURVE keys from {args.curve}: {e}", file=sys.stderr)
            return 2
    classes = []
    for name, module, cls_name, kwargs in args.spawn:
        try:
            cls = getattr(importlib.import_module(module), cls_name)
        except (ImportError, AttributeError) as e:
            print(f"error: cannot load actor class {module}:{cls_name}: {e}", file=sys.stderr)
            return 2
        classes.append((name, cls, kwargs))

    transport = ZmqTransport(args.bind, dict(args.peer), heartbeat_interval=args.heartbeat,
                             liveness=args.liveness, curve=curve, seed=args.seed)
    events = EventLog(args.events) if args.events else EventLog(maxlen=10_000)
    try:
        node = Node(args.name, transport=transport, event_log=events)
    except Exception as e:  # e.g. the port is taken
        print(f"error: cannot start node {args.name}: {e}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        for name, cls, kwargs in classes:
            node.spawn(cls, name=name, **kwargs)
        print(json.dumps({"node": args.name, "endpoint": transport.endpoint, "pid": __import__("os").getpid(),
                          "incarnation": transport.incarnation}), flush=True)
        while not stop.wait(0.5):
            events.flush()
    finally:
        node.shutdown()
        events.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
