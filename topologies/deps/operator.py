"""``fleetplane deps condition|remediate|override|status|act``: operators and a running topology.

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

* ``status``: the manager's view as JSON (:class:`~protocols.deps.messages.Query`
  answered by :class:`~protocols.deps.messages.View`): planned, all up, every
  service's state, conditions (and which were detected), remediations and
  deadlocks.
* ``act ACTION SERVICE... [--then ACTION --after S]``: actions sent straight to
  the services' agents, bypassing the manager (what a person at an asset's
  console does: ``systemctl stop``; the manager sees only the effects), each
  agent answering once it has carried the action out; ``--then`` sends a
  second action to the same services ``--after`` seconds later. ``act stop dns
  access-control --then start --after 0.3`` restarts two services of a cycle
  at once, in full: a run-time deadlock the manager must find and break.

Prints the answers. Exit 0: recorded (carried out); 1: refused (the reason is
printed); 2: bad arguments or no running topology with a manager; 3: no answer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

from protocols.deps.messages import ACTIONS, Ack, Act, Condition, Override, Query, Remediate, View
from topologies.plugin import client_command

__all__ = ["cmd_operator", "OPERATOR_COMMANDS", "setup_operator"]

ROOT = Path(__file__).resolve().parents[2]
MANAGER = "deps.manager"
OPERATOR_COMMANDS = ("condition", "remediate", "override", "status", "act")
AGENT = "deps.agent"


class OperatorError(Exception):
    pass


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", type=Path, default=None,
                   help="run directory of a running topology (default: the newest runs/*-real-* with a deps.manager)")
    p.add_argument("--who", default=os.environ.get("USER") or "operator",
                   help="who decides (logged by the manager; default $USER)")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer per try (default 3)")
    p.add_argument("--tries", type=int, default=6, help="tries before giving up (default 6)")


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
    st = sub.add_parser("status", help="a running manager's view: services' states, conditions, remediations (JSON)")
    _common(st)
    a = sub.add_parser("act", help="send actions straight to services' agents, bypassing the manager (as at the "
                                   "console; e.g. to inject a run-time deadlock)")
    a.add_argument("action", choices=ACTIONS)
    a.add_argument("services", nargs="+", metavar="SERVICE", help="services (for reboot: a service of the asset)")
    a.add_argument("--then", choices=ACTIONS, help="a second action to the same services, --after seconds later")
    a.add_argument("--after", type=float, default=0.3, help="seconds between the two (default 0.3)")
    _common(a)


def agents_of(topo: dict) -> dict[str, str]:
    """service -> the address of the deps.agent that runs it."""
    out: dict[str, str] = {}
    for n in topo.get("nodes", []):
        for a in n.get("actors", []):
            if a.get("kind") == AGENT:
                for svc in (a.get("params") or {}).get("services", []):
                    if isinstance(svc, dict) and isinstance(svc.get("name"), str):
                        out[svc["name"]] = f"{n['name']}/{a['name']}"
    return out


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
    if c == "status":
        return Query()
    if c == "act":
        if args.after < 0:
            raise OperatorError("--after must be >= 0")
        return None
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


def ask_manager(node: Any, manager: str, msg: Any, timeout: float, tries: int, expect: type = Ack) -> Any:
    pause = threading.Event()
    for i in range(max(1, tries)):
        if i:
            pause.wait(min(2.0, 0.25 * 2 ** i))  # e.g. the connection to the manager's node is not up yet
        try:
            reply = node.ask(manager, msg, timeout=timeout).result()
        except Exception:  # AskTimeout, DeadLetterError: the same message again (it is idempotent)
            continue
        if isinstance(reply, expect):
            return reply
    return None


def _act(node: Any, agents: dict[str, str], action: str, services: list[str], args: argparse.Namespace) -> int:
    """One action to each service's agent, all at once; the answers printed. Exit status as for the others."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=len(services)) as pool:
        answers = list(pool.map(lambda s: ask_manager(node, agents[s], Act(action, s, ref=f"console:{os.getpid()}:{action}:{s}", ack=True), args.timeout,
                                                      args.tries), services))
    rc = 0
    for svc, ack in zip(services, answers):
        if ack is None:
            print(f"fleetplane deps act: no answer from {agents[svc]} about {svc} after {args.tries} tries",
                  file=sys.stderr)
            rc = max(rc, 3)
        else:
            print(f"{agents[svc]}: {'done' if ack.ok else 'refused'}: {ack.what}")
            rc = max(rc, 0 if ack.ok else 1)
    return rc


@client_command
def cmd_operator(args: argparse.Namespace) -> int:
    from actors import Node
    from transport.zmq import ZmqTransport

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
    if args.deps_command == "act":
        agents = agents_of(topo)
        unknown = [s for s in args.services if s not in agents]
        if unknown:
            print(f"fleetplane deps act: no agent runs {', '.join(unknown)} in {run}", file=sys.stderr)
            return 2
    node = Node(f"client-deps-{os.getpid()}", transport=ZmqTransport("tcp://127.0.0.1:*", peers))
    try:
        if args.deps_command == "act":
            rc = _act(node, agents, args.action, args.services, args)
            if args.then and rc == 0:
                threading.Event().wait(args.after)
                rc = _act(node, agents, args.then, args.services, args)
            return rc
        if args.deps_command == "status":
            view = ask_manager(node, manager, msg, args.timeout, args.tries, View)
            if view is None:
                print(f"fleetplane deps status: no answer from {manager} ({run})", file=sys.stderr)
                return 3
            print(json.dumps({"manager": manager, "incarnation": view.incarnation, "planned": view.planned,
                              "all_up": view.all_up, "states": dict(sorted(view.states.items())),
                              "conditions": view.conditions, "detected": view.detected,
                              "remediations": view.remediations, "deadlocks": view.deadlocks}, indent=1))
            return 0
        ack = ask_manager(node, manager, msg, args.timeout, args.tries)
    finally:
        node.shutdown()
    if ack is None:
        print(f"fleetplane deps {args.deps_command}: no answer from {manager} ({run}) after {args.tries} tries",
              file=sys.stderr)
        return 3
    print(f"{manager}: {'recorded' if ack.ok else 'refused'}: {ack.what}")
    return 0 if ack.ok else 1
