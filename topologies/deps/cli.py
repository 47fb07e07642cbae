"""``fleetplane deps plan SOURCE``: the startup plan of a dependency file, systemd units or a compose file.

Prints the waves, every cycle group with its remedial workflow (or the work
ticket it became), the critical path and the problems (failure-domain and
region risks, priority inversions, cross-region and conditional cycles).
``--format json`` prints the same as one JSON object; ``--svg FILE`` draws the
graph (columns are waves; cycle groups boxed; hard edges solid, conditional
dashed, order dotted). Exit 0: every service is planned; 1: a cycle no rule
can break blocks some services (a ticket); 2: the input is malformed (its
file, line and problem on stderr) or the arguments are wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from html import escape
from pathlib import Path

from protocols.deps.graph import DepGraph, Plan, plan, problems
from topologies.deps.sources import SourceError, load

__all__ = ["cmd_deps", "plan_json", "render_svg", "render_text", "setup_deps"]


def setup_deps(d: argparse.ArgumentParser) -> None:
    sub = d.add_subparsers(dest="deps_command", required=True)
    p = sub.add_parser("plan", help="print the startup plan of a dependency file, systemd unit folder or compose file",
                       description=__doc__.split("\n\n")[1].replace("``", "") if __doc__ else None)
    p.add_argument("source", help="a dependency file (.toml/.json), a folder of systemd unit files, "
                                  "or a compose file (.yml/.yaml/.json)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    p.add_argument("--svg", metavar="FILE", help="also write a picture of the graph (waves, cycles) to FILE")
    p.add_argument("--condition", action="append", default=[], metavar="NAME",
                   help="a named condition that holds now (its conditional dependencies become hard); repeatable")
    from topologies.deps.coldstart import __doc__ as cs_doc, setup_coldstart
    c = sub.add_parser("coldstart", help="simulate a cold start of a topology: naive (everything at once, start "
                                         "timeout and retry) against the manager's plan",
                       description=cs_doc.split("\n\n")[1].split("--------------\n", 1)[-1].replace("``", "")
                       if cs_doc else None)
    setup_coldstart(c)
    from topologies.deps.operator import setup_operator
    setup_operator(sub)


def _counts(g: DepGraph) -> dict:
    deps = [d for d in g.dependencies() if d.service in g.services and d.on in g.services]
    return {"services": len(g.services), "dependencies": len(deps),
            **{k: sum(1 for d in deps if d.kind == k) for k in ("hard", "conditional", "order")},
            "external": len(g.external())}


def plan_json(g: DepGraph, p: Plan, source: str, what: str) -> dict:
    probs = problems(g, p)
    deps = [{"service": d.service, "on": d.on, "kind": d.kind, "condition": d.condition, "function": d.function,
             "source": d.source, "where": d.where} for d in g.dependencies()]
    return {"source": source, "read_as": what, "counts": _counts(g), "external": g.external(), "dependencies": deps,
            "plan": p.to_json(), "problems": [x.to_json() for x in probs],
            "ok": not p.tickets}


def _wrap(items: list[str], indent: str, width: int = 100, cont: str | None = None) -> str:
    """``items`` comma-separated on lines of at most ``width``; the first line starts with ``indent``."""
    lines, cur = [], ""
    first = indent
    cont = " " * len(indent) if cont is None else cont
    for it in items:
        piece = it if not cur else ", " + it
        if cur and len(indent) + len(cur) + len(piece) > width:
            lines.append(indent + cur + ",")
            indent = cont
            cur = it
        else:
            cur += piece
    if cur:
        lines.append(indent + cur)
    return "\n".join(lines) if lines else first.rstrip()


def render_text(g: DepGraph, p: Plan, source: str, what: str) -> str:
    c = _counts(g)
    out = [f"{source} ({what}): {c['services']} services, {c['dependencies']} dependencies "
           f"({c['hard']} hard, {c['conditional']} conditional, {c['order']} order), "
           f"{c['external']} external (assumed up)"]
    if p.conditions:
        out.append(f"conditions holding: {', '.join(p.conditions)}")
    out.append(f"waves ({len(p.waves)}):")
    for i, w in enumerate(p.waves, 1):
        out.append(_wrap(w, f"  {i:>2}. ", cont="      "))
    groups = len(p.workflows) + len(p.tickets)
    out.append(f"cycles ({groups} group{'s' if groups != 1 else ''}):" if groups else "cycles: none")
    for w in p.workflows:
        out.append(f"  {w.group}: {w.cycle_count} cycle(s), e.g. " + "; ".join(
            " -> ".join(cy + (cy[0],)) for cy in w.cycles[:3]))
        out.append(f"    remedial workflow ({w.rule}): {w.explanation}")
        steps = [s for s in p.steps.values() if s.group == w.group]
        order = {sid: i for i, wave in enumerate(p.step_waves()) for sid in wave}
        steps.sort(key=lambda s: (order[s.id], s.id))
        out.append(_wrap([s.id for s in steps], "    steps: "))
    for t in p.tickets:
        out.append(f"  {t.id}: UNBREAKABLE: {t.reason}; cycles: " + "; ".join(
            " -> ".join(cy + (cy[0],)) for cy in t.cycles[:3]))
        out.append(_wrap(list(t.blocked), "    work ticket for an operator; blocked: "))
    out.append(f"critical path ({p.makespan:g} s, {len(p.critical_path)} steps): " + " -> ".join(p.critical_path))
    probs = [x for x in problems(g, p) if x.kind != "cycle"]
    risks = [x for x in probs if x.kind in ("domain-risk", "region-risk")]
    out.append(f"failure-domain risks ({len(risks)}):" if risks else "failure-domain risks: none")
    for x in risks:
        out.append(f"  {x.where}: {x.detail}")
    other = [x for x in probs if x.kind not in ("domain-risk", "region-risk")]
    if other:
        out.append(f"other problems ({len(other)}):")
        for x in other:
            out.append(f"  {x.kind}: {x.detail}")
    if p.skipped:
        out.append("ignored (non-hard dependency on a blocked service): "
                   + ", ".join(f"{s} -> {d} ({k})" for s, d, k in p.skipped))
    out.append("plan: every service planned" if not p.tickets else
               f"plan: {len(p.blocked)} service(s) blocked by {len(p.tickets)} ticket(s)")
    return "\n".join(out)


def render_svg(g: DepGraph, p: Plan) -> str:
    """The graph as SVG: a column per wave, group members boxed, edges by kind (no graphviz needed)."""
    col_w, row_h, box_w, box_h, pad = 230, 34, 200, 24, 40
    pos: dict[str, tuple[float, float]] = {}
    group_of = {m: name for name, ms in p.groups.items() for m in ms}
    frames = []
    max_rows = 1
    for x, wave in enumerate(p.waves):
        row = 0
        for item in wave:
            members = list(p.groups.get(item, (item,)))
            if item in p.groups:
                row += 0.5  # room for the group's label
            top = row
            for m in members:
                pos[m] = (pad + x * col_w, pad + 20 + row * row_h)
                row += 1
            if item in p.groups:
                frames.append((item, pad + x * col_w - 6, pad + 20 + top * row_h - 30, box_w + 12,
                               (row - top) * row_h + 28))
                row += 1
        max_rows = max(max_rows, row)
    width = pad * 2 + max(len(p.waves), 1) * col_w
    height = int(pad * 2 + 40 + max_rows * row_h)
    boot = {m for w in p.workflows for m in w.bootstrap}
    ticketed = {m for t in p.tickets for m in t.members}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
             '<defs><marker id="arr" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" '
             'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
             f'<rect width="{width}" height="{height}" fill="white"/>']
    for x in range(len(p.waves)):
        parts.append(f'<text x="{pad + x * col_w}" y="{pad - 8}" font-weight="bold">wave {x + 1}</text>')
    tickets_by_group = {"cycle:" + t.id[7:] for t in p.tickets}
    for name, fx, fy, fw, fh in frames:
        colour = "#d62728" if name in tickets_by_group else "#ff7f0e"
        parts.append(f'<rect x="{fx}" y="{fy}" width="{fw}" height="{fh}" rx="6" fill="none" stroke="{colour}" '
                     f'stroke-width="2"/><text x="{fx + 4}" y="{fy + 11}" fill="{colour}">{escape(name[:34])}</text>')
    dash = {"hard": "", "conditional": ' stroke-dasharray="6,4"', "order": ' stroke-dasharray="2,3"'}
    gg = g.graph(p.conditions)
    for s, d, k in gg.edges(data="kind"):
        if s not in pos or d not in pos:
            continue
        (x1, y1), (x2, y2) = pos[s], pos[d]
        same = group_of.get(s) is not None and group_of.get(s) == group_of.get(d)
        if same:  # an arc on the left of the group's column
            sx, ex = x1, x2
            parts.append(f'<path d="M{sx},{y1} C{sx - 40},{y1} {ex - 40},{y2} {ex},{y2}" fill="none" '
                         f'stroke="#ff7f0e"{dash[k]} marker-end="url(#arr)"/>')
        else:  # dependent -> dependency (right to left)
            parts.append(f'<line x1="{x1}" y1="{y1}" x2="{x2 + box_w}" y2="{y2}" stroke="#888"{dash[k]} '
                         f'marker-end="url(#arr)"/>')
    for m, (x, y) in pos.items():
        fill = "#f4cccc" if m in ticketed or m in p.blocked else ("#fde9c9" if m in group_of else "#e8f0fb")
        label = escape(m if len(m) <= 30 else m[:29] + "~")
        mark = " [B]" if m in boot else ""
        parts.append(f'<rect x="{x}" y="{y - box_h / 2}" width="{box_w}" height="{box_h}" rx="4" fill="{fill}" '
                     f'stroke="#444"/><text x="{x + 6}" y="{y + 4}">{label}{mark}</text>')
    parts.append(f'<text x="{pad}" y="{height - 12}">solid: hard, dashed: conditional, dotted: order; arrows point '
                 f'to the dependency; [B]: bootstrap start; orange box: remedial workflow; red: work ticket; '
                 f'critical path {p.makespan:g} s</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def cmd_deps(args: argparse.Namespace) -> int:
    if args.deps_command == "coldstart":
        from topologies.deps.coldstart import cmd_coldstart
        return cmd_coldstart(args)
    from topologies.deps.operator import OPERATOR_COMMANDS, cmd_operator
    if args.deps_command in OPERATOR_COMMANDS:
        return cmd_operator(args)
    try:
        g, what = load(args.source)
    except SourceError as e:
        print(f"fleetplane deps: {e}", file=sys.stderr)
        return 2
    p = plan(g, args.condition)
    try:
        if args.format == "json":
            print(json.dumps(plan_json(g, p, args.source, what), indent=1))
        else:
            print(render_text(g, p, args.source, what))
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if args.svg:
        try:
            Path(args.svg).write_text(render_svg(g, p), encoding="utf-8")
        except OSError as e:
            print(f"fleetplane deps: cannot write {args.svg}: {e.strerror}", file=sys.stderr)
            return 2
        if args.format == "text":
            print(f"svg: {args.svg}")
    return 1 if p.tickets else 0
