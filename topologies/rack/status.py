"""``fleetplane racks status RUNDIR-or-endpoint``: the fleet view, as one running monitor knows it.

How this works
--------------
``RUNDIR`` is a run directory of a running rack topology (its ``topology.json``
lists the ``rack.monitor`` actors and their nodes' endpoints); an endpoint is
``NODE/ACTOR@tcp://HOST:PORT`` (one monitor, e.g.
``mon-d0c0/d0s0r0@tcp://127.0.0.1:7001``). The command joins as a node of its
own on 127.0.0.1 named ``client-racks-<pid>`` (a topology's nodes admit peers
named ``client-*``), asks one monitor with
:class:`~protocols.rack.messages.ViewRequest` and prints its
:class:`~protocols.rack.messages.View`: each data center and sector with its
condition, the level of agreement (``fleet``: agreed fleet-wide; ``default``:
nothing agreed yet, the default operational state), the age of what the monitor
knows (seconds, on the monitor's clock), the stated rule's answer from its own
facts (``rule here``) and the no-quorum policy's assumption where one is in force; then the
racks that are not non-fault (``--racks``: every rack), the authorities and the
monitor's own quorum state. ``--json`` prints the view as JSON instead.

From a run directory it asks the monitor of ``--monitor RACK`` or, by default,
the monitors in the file's order until one answers (at most ``--tries``, each
``--timeout`` seconds). Exit 0: printed; 2: bad arguments, no such run, no
monitor in it, or no answer (a monitor that is down or unreachable).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from protocols.rack.messages import View, ViewRequest
from topologies.plugin import client_command

__all__ = ["cmd_racks", "setup_racks"]

MONITOR = "rack.monitor"
_ENDPOINT = re.compile(r"^(?P<node>[^/@\s]+)/(?P<actor>[^/@\s]+)@(?P<url>tcp://[^\s]+:\d+)$")


class StatusError(Exception):
    pass


def setup_racks(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="racks_command", required=True)
    s = sub.add_parser("status", help="print the fleet view of one running monitor: data centers, sectors and "
                                      "racks with their level of agreement and age",
                       description="Ask one monitor of a running rack topology what it knows (ViewRequest) and "
                                   "print it. Exit 2 if there is no such run or no monitor answers.")
    s.add_argument("target", metavar="RUNDIR-or-endpoint",
                   help="a run directory (runs/racks-real-...) or one monitor as NODE/ACTOR@tcp://HOST:PORT")
    s.add_argument("--monitor", metavar="RACK", default="",
                   help="from a run directory: ask the monitor of this rack (default: the first that answers)")
    s.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for each answer (default 2)")
    s.add_argument("--tries", type=int, default=3, help="monitors to ask before giving up (default 3)")
    s.add_argument("--racks", action="store_true", help="list every rack, not only those that are not non-fault")
    s.add_argument("--json", action="store_true", help="print the view as JSON")


def monitors_of(topo: dict) -> list[tuple[str, str, str]]:
    """(monitor address, its rack, its node's endpoint) for every ``rack.monitor`` actor of a topology."""
    out = []
    for n in topo.get("nodes", []):
        for a in n.get("actors", []):
            if a.get("kind") == MONITOR:
                rack = (a.get("params") or {}).get("rack") or a.get("name")
                out.append((f"{n['name']}/{a['name']}", str(rack), f"tcp://{n.get('host', '127.0.0.1')}:{n['port']}"))
    return out


def targets(args: argparse.Namespace) -> tuple[list[tuple[str, str]], dict[str, str], str]:
    """The monitors to ask, in order (address, rack), the peers' endpoints, and what was asked (for messages)."""
    m = _ENDPOINT.match(args.target)
    if m:
        return [(f"{m['node']}/{m['actor']}", "")], {m["node"]: m["url"]}, args.target
    if args.target.startswith("tcp://"):
        raise StatusError(f"an endpoint names the monitor too: NODE/ACTOR@tcp://HOST:PORT, not {args.target!r}")
    run = Path(args.target)
    if not run.is_dir():
        raise StatusError(f"no run directory {run} (and not an endpoint NODE/ACTOR@tcp://HOST:PORT)")
    try:
        topo = json.loads((run / "topology.json").read_text())
        mons = monitors_of(topo)
        peers = {n["name"]: f"tcp://{n.get('host', '127.0.0.1')}:{n['port']}" for n in topo["nodes"]}
    except (OSError, ValueError) as e:
        raise StatusError(f"cannot read {run / 'topology.json'}: {e}") from None
    except (KeyError, TypeError, AttributeError) as e:
        raise StatusError(f"{run / 'topology.json'} is not a topology: {e!r}") from None
    if not mons:
        raise StatusError(f"the topology of {run} has no {MONITOR} actor")
    if args.monitor:
        mons = [x for x in mons if args.monitor in (x[1], x[0])]
        if not mons:
            raise StatusError(f"no monitor of rack {args.monitor} in {run}")
    return [(a, r) for a, r, _e in mons[:max(1, args.tries)]], peers, str(run)


@client_command
def cmd_racks(args: argparse.Namespace) -> int:
    from actors import Node
    from transport.zmq import ZmqTransport

    try:
        if not args.timeout > 0:
            raise StatusError("--timeout must be > 0")
        asks, peers, what = targets(args)
    except StatusError as e:
        print(f"fleetplane racks status: {e}", file=sys.stderr)
        return 2
    node = Node(f"client-racks-{os.getpid()}", transport=ZmqTransport("tcp://127.0.0.1:*", peers))
    view, asked = None, []
    try:
        for address, _rack in asks:
            asked.append(address)
            try:
                reply = node.ask(address, ViewRequest(), timeout=args.timeout).result()
            except Exception:  # AskTimeout, DeadLetterError: that monitor is down or unreachable; try the next
                continue
            if isinstance(reply, View):
                view = reply
                break
    finally:
        node.shutdown()
    if view is None:
        print(f"fleetplane racks status: no answer from {', '.join(asked)} within {args.timeout:g} s each ({what})",
              file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(as_dict(view, asked[-1]), indent=1, sort_keys=True))
    else:
        render(view, asked[-1], every_rack=args.racks)
    return 0


def as_dict(view: View, address: str) -> dict:
    return {"monitor": address, "rack": view.rack, "epoch": view.epoch, "layout": view.layout,
            "uptime": view.uptime, "no_quorum": view.no_quorum, "fleet_cut": view.fleet_cut,
            "unreached": view.unreached, "policy": view.policy, "assumed": view.assumed,
            "authorities": view.authorities, "groups": view.groups, "racks": view.racks}


def _age(v: Any) -> str:
    return "-" if not isinstance(v, (int, float)) else f"{v:.1f} s"


def _style(condition: Any) -> str:
    return "green" if condition in ("operational", "non-fault") else ("yellow" if condition == "rebooting" else "red")


def _tree_order(groups: dict) -> list[str]:
    """Data centers, each followed by its sectors, in numeric order."""
    def key(g: str) -> tuple:
        return tuple(int(x) for x in re.findall(r"\d+", g))
    dcs = sorted((g for g in groups if "s" not in g), key=key)
    out = []
    for d in dcs:
        out.append(d)
        out += sorted((g for g in groups if g.startswith(d + "s")), key=key)
    return out + sorted(set(groups) - set(out))


def render(view: View, address: str, every_rack: bool = False, file: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    out = file or sys.stdout
    con = Console(file=out, highlight=False, width=None if out.isatty() else 140)  # a pipe: no truncated columns
    lay = view.layout or {}
    state = []
    if view.no_quorum:
        state.append("[red]its sector has no quorum[/red]")
    if view.fleet_cut:
        state.append(f"[red]cut off from the fleet (cannot reach {', '.join(view.unreached) or '-'})[/red]")
    elif view.unreached:
        state.append(f"cannot reach {', '.join(view.unreached)}")
    con.print(f"[bold]Fleet view of {address}[/bold] (rack {view.rack}; layout {lay.get('dcs')} x "
              f"{lay.get('sectors')} x {lay.get('racks')}; epoch {view.epoch}; up {view.uptime:.1f} s; "
              f"no-quorum policy {view.policy})")
    con.print("; ".join(state) if state else "[green]in contact with its sector and a quorum of the fleet[/green]")
    t = Table(title="Data centers and sectors", title_justify="left")
    for col in ("group", "condition", "agreed at", "age", "rule here", "reason", "assumed (policy)"):
        t.add_column(col)
    for g in _tree_order(view.groups):
        e = view.groups[g]
        c = e.get("condition")
        t.add_row(g if "s" not in g else "  " + g, f"[{_style(c)}]{c}[/]", str(e.get("level")), _age(e.get("age")),
                  str(e.get("rule")), str(e.get("reason") or ""), str(e.get("assumed") or ""))
    con.print(t)
    racks = view.racks or {}
    shown = {r: e for r, e in racks.items() if every_rack or e.get("condition") != "non-fault"}
    if racks and not shown:
        con.print(f"Racks: all {len(racks)} non-fault (--racks to list them)")
    elif racks:
        t = Table(title=f"Racks ({len(shown)} of {len(racks)} shown"
                  + ("" if every_rack else ": those not non-fault; --racks for all") + ")", title_justify="left")
        for col in ("rack", "condition", "indicator", "agreed at", "seq", "age"):
            t.add_column(col)
        for r in sorted(shown):
            e = shown[r]
            c = e.get("condition")
            ind = e.get("indicator")
            t.add_row(r, f"[{_style(c)}]{c}[/]", " ".join(ind) if isinstance(ind, list) else "-", str(e.get("level")),
                      str(e.get("seq")), _age(e.get("age")))
        con.print(t)
    auth = ", ".join(f"{g}: {a.get('holder') or '?'} (term {a.get('term')}"
                     f"{', this monitor' if a.get('acting') else ''})" for g, a in sorted(view.authorities.items()))
    con.print(f"Authorities known: {auth or 'none'}")
