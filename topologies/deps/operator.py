"""``fleetplane deps condition|remediate|override``: an operator's decision, sent to a running manager.

How this works
--------------
The command reads the run directory's ``topology.json`` (the newest
``runs/*-real-*`` with a ``deps.manager`` actor, in the current directory or the
repository, unless ``--run`` names one),
joins as a node of its own on 127.0.0.1 named ``client-deps-<pid>`` (a
topology's nodes admit peers named ``client-*``) and asks the manager with the
operator message (:class:`~protocols.deps.messages.Condition`,
:class:`~protocols.deps.messages.Remediate` or
:class:`~protocols.deps.messages.Override`, ``ack=True``, ``who`` = ``--who``).
The manager answers with :class:`~protocols.deps.messages.Ack` once the
decision is recorded (persisted before the answer: a restarted manager keeps
it); an ask that gets no answer in ``--timeout`` seconds is sent again, the same
message (each is idempotent: a condition that already holds, an override
applied again, a remediation id the manager already has with the same content).

* ``condition NAME --holds|--ends``: a named condition (e.g. "region r2
  isolated") starts or stops holding: the plan changes, conditional
  remediations fire or are released.
* ``remediate ID ACTION SERVICE [--when immediate|opportunistic|conditional]
  [--condition NAME] [--deadline S]``: a remediation (ACTION: start,
  start-bootstrap, restart, restart-bootstrap, stop, reboot), run now, at the
  service's asset's next reboot, power-down or maintenance window (or after
  the deadline), or when the condition starts to hold.
* ``override SERVICE ON [--kind hard|conditional|order] [--condition NAME]
  [--remove]``: add, change or remove a dependency; the manager replans.

Prints the manager's answer. Exit 0: recorded; 1: the manager refused it (the
reason is printed); 2: bad arguments or no running topology with a manager; 3:
no answer from the manager.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

from protocols.deps.messages import ACTIONS, Ack, Condition, Override, Remediate

__all__ = ["cmd_operator", "OPERATOR_COMMANDS", "setup_operator"]

ROOT = Path(__file__).resolve().parents[2]
MANAGER = "deps.manager"
OPERATOR_COMMANDS = ("condition", "remediate", "override")


class OperatorError(Exception):
    pass


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", type=Path, default=None,
                   help="run directory of a running topology (default: the newest runs/*-real-* with a deps.manager)")
    p.add_argument("--who", default=os.environ.get("USER") or "operator",
                   help="who decides (logged by the manager; default $USER)")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer per try (default 3)")
    p.add_argument("--tries", type=int, default=4, help="tries before giving up (default 4)")


def setup_operator(sub: Any) -> None:
    c = sub.add_parser("condition", help="tell a running manager that a named condition starts or stops holding")
    c.add_argument("name", help='the condition, e.g. "region r2 isolated"')
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--holds", action="store_true", help="it starts to hold")
    g.add_argument("--ends", action="store_true", help="it stops holding")
    _common(c)
    r = sub.add_parser("remediate", help="arm a remediation on a running manager: now, opportunistically or on a "
                                         "condition")
    r.add_argument("id", help="a name for it (a resend with the same content is not a second remediation)")
    r.add_argument("action", choices=ACTIONS)
    r.add_argument("service", help="the service (for reboot: a service on the asset, or the asset)")
    r.add_argument("--when", choices=("immediate", "opportunistic", "conditional"), default="immediate",
                   help="immediate (default); opportunistic: at its asset's next reboot, power-down or maintenance "
                        "window; conditional: when --condition starts to hold")
    r.add_argument("--condition", default="", help="the condition of a conditional remediation")
    r.add_argument("--deadline", type=float, default=0.0,
                   help="opportunistic: run anyway this many seconds after arming (default: no deadline)")
    _common(r)
    o = sub.add_parser("override", help="add, change or remove a dependency on a running manager (it replans)")
    o.add_argument("service")
    o.add_argument("on", help="the service it depends on")
    o.add_argument("--kind", choices=("hard", "conditional", "order"), default="hard")
    o.add_argument("--condition", default="", help="a conditional dependency's condition")
    o.add_argument("--remove", action="store_true", help="SERVICE does not depend on ON (whatever agents report)")
    _common(o)


def find_run(run: Path | None, root: Path = ROOT) -> tuple[Path, dict]:
    """The run directory and its topology: ``run``, or the newest real run with a manager under ./runs or the
    repository's runs/."""
    if run is not None:
        try:
            return run, json.loads((run / "topology.json").read_text())
        except (OSError, ValueError) as e:
            raise OperatorError(f"cannot read {run / 'topology.json'}: {e}") from None
    dirs = {d.resolve() for base in (Path("runs"), root / "runs") for d in base.glob("*-real-*")}
    for d in sorted(dirs, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            topo = json.loads((d / "topology.json").read_text())
        except (OSError, ValueError):
            continue
        if _manager_of(topo):
            return d, topo
    raise OperatorError("no run with a deps.manager under runs/ (start one with 'fleetplane run "
                        "topologies/coldstart.toml', or pass --run DIR)")


def _manager_of(topo: dict) -> str:
    for n in topo.get("nodes", []):
        for a in n.get("actors", []):
            if a.get("kind") == MANAGER:
                return f"{n['name']}/{a['name']}"
    return ""


def message_of(args: argparse.Namespace) -> Any:
    c = args.deps_command
    if c == "condition":
        return Condition(args.name, bool(args.holds), args.who, ack=True)
    if c == "remediate":
        if args.when == "conditional" and not args.condition:
            raise OperatorError("--when conditional needs --condition NAME")
        if args.deadline < 0:
            raise OperatorError("--deadline must be >= 0")
        return Remediate(args.id, args.action, args.service, args.when, args.condition, float(args.deadline),
                         args.who, ack=True)
    if args.kind == "conditional" and not args.condition and not args.remove:
        raise OperatorError("--kind conditional needs --condition NAME")
    return Override(args.service, args.on, args.kind, args.condition, bool(args.remove), args.who, ack=True)


def ask_manager(node: Any, manager: str, msg: Any, timeout: float, tries: int) -> Ack | None:
    pause = threading.Event()
    for i in range(max(1, tries)):
        if i:
            pause.wait(min(2.0, 0.25 * 2 ** i))  # e.g. the connection to the manager's node is not up yet
        try:
            reply = node.ask(manager, msg, timeout=timeout).result()
        except Exception:  # AskTimeout, DeadLetterError: the same message again (it is idempotent)
            continue
        if isinstance(reply, Ack):
            return reply
    return None


def cmd_operator(args: argparse.Namespace) -> int:
    from loguru import logger

    from actors import Node
    from transport.zmq import ZmqTransport, set_insecure_log_level

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    set_insecure_log_level("INFO")  # the topology's own choice; not this command's news
    try:
        msg = message_of(args)
        if args.timeout <= 0:
            raise OperatorError("--timeout must be > 0")
        run, topo = find_run(args.run)
        manager = _manager_of(topo)
        if not manager:
            raise OperatorError(f"the topology of {run} has no {MANAGER} actor")
        peers = {n["name"]: f"tcp://{n.get('host', '127.0.0.1')}:{n['port']}" for n in topo["nodes"]}
    except (OperatorError, KeyError, TypeError) as e:
        print(f"fleetplane deps {args.deps_command}: {e}", file=sys.stderr)
        return 2
    node = Node(f"client-deps-{os.getpid()}", transport=ZmqTransport("tcp://127.0.0.1:*", peers))
    try:
        ack = ask_manager(node, manager, msg, args.timeout, args.tries)
    finally:
        node.shutdown()
    if ack is None:
        print(f"fleetplane deps {args.deps_command}: no answer from {manager} ({run}) after {args.tries} tries",
              file=sys.stderr)
        return 3
    print(f"{manager}: {'recorded' if ack.ok else 'refused'}: {ack.what}")
    return 0 if ack.ok else 1
