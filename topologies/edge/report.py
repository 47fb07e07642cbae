"""The edge section of report.html: connectivity, leader per island and role holders over time.

How this works
--------------
:func:`edge_timeline` reads the local-plane events (``protocols/localplane``)
of a run and draws one inline SVG (no scripts) in the report's shared frame
(:func:`topologies.report.chart_svg`: the same time axis and fault marks as
every other chart):

* **connectivity and leaders** - one row per edge node: thin grey while it
  follows the manager, a coloured bar while it is isolated
  (``edge.isolation_declared`` to ``edge.isolation_ended``). The colour is
  the island's: the leader the node follows (``plane.follow``, or its own
  ``plane.leader``), red while it has none (electing). A leader's own row
  has a dark band from ``plane.leader`` until ``plane.stepdown``, its
  ``leader`` role ending, or its next election, labelled with the term.
* **role holders** - one row per role share (``store#0/1``): a segment per
  holding (``edge.role_assigned`` to ``edge.role_relinquished``), labelled
  with the holder; final holdings dark blue, temporary ones in the colour of
  the leader whose plan they belong to. Holdings that overlap (two islands,
  each serving) get a lane each.
* **what the clients saw** - one row per client actor and role
  (``client.request`` of ``localplane.clients``): a tick per request at its
  send time, coloured by its outcome (served, refused, unserved, or answered
  by two holders of one share).

It returns ``None`` when the log has no edge events, so other topologies'
reports are unchanged.
"""

from __future__ import annotations

import html
import re

from topologies.report import TimeAxis, chart_svg

__all__ = ["edge_timeline"]

_ISLAND_COLOURS = ["#e36209", "#6f42c1", "#28a745", "#17a2b8", "#b08800", "#d63384", "#6a737d", "#1f6feb"]
_NO_LEADER = "#d73a49"
_FINAL = "#1f4e99"
_OUTCOME_COLOURS = {"served": "#28a745", "refused": "#e36209", "unserved": "#d73a49", "two holders": "#6f42c1"}


def _natural(s: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s)]


def _node(addr: str) -> str:
    return addr.partition("/")[0]


def edge_timeline(events: list[dict], periods: list[dict], t0: float, t1: float) -> str | None:
    """The SVG of the edge section, or None if ``events`` hold no edge node."""
    nodes = sorted({e["node"] for e in events if e["kind"] == "edge.deployed"}, key=_natural)
    if not nodes:
        return None
    end = t1
    # -- connectivity and leaders -------------------------------------------------------------
    iso: dict[str, list[list]] = {n: [] for n in nodes}  # node -> [[start, end, leader or ""], ...]
    leads: list[dict] = []  # {node, term, start, end}
    open_lead: dict[str, dict] = {}

    def close_lead(n: str, t: float) -> None:
        lead = open_lead.pop(n, None)
        if lead is not None:
            lead["end"] = t

    def set_leader(n: str, leader: str, t: float) -> None:
        segs = iso.get(n)
        if not segs or segs[-1][1] is not None:
            return
        if segs[-1][2] == leader:
            return
        if segs[-1][0] < t:
            segs[-1][1] = t
            segs.append([t, None, leader])
        else:
            segs[-1][2] = leader

    for e in events:
        k, n, t = e["kind"], e["node"], e["time"]
        f = e.get("fields") or {}
        if n not in iso:
            continue
        if k == "edge.isolation_declared":
            if not iso[n] or iso[n][-1][1] is not None:
                iso[n].append([t, None, ""])
        elif k == "edge.isolation_ended":
            if iso[n] and iso[n][-1][1] is None:
                iso[n][-1][1] = t
        elif k == "plane.leader":
            close_lead(n, t)
            open_lead[n] = {"node": n, "term": f.get("term"), "start": t, "end": None}
            leads.append(open_lead[n])
            set_leader(n, n, t)
        elif k == "plane.follow":
            set_leader(n, _node(str(f.get("leader", ""))), t)
        elif k in ("plane.leader_lost", "plane.announce"):
            if k == "plane.announce":
                close_lead(n, t)
            set_leader(n, "", t)
        elif k == "plane.stepdown" or (k == "edge.role_relinquished" and f.get("role") == "leader"):
            close_lead(n, t)
    for lead in leads:
        if lead["end"] is None:
            lead["end"] = end
    for segs in iso.values():
        for s in segs:
            if s[1] is None:
                s[1] = end
    leaders = sorted({lead["node"] for lead in leads}, key=_natural)
    colour_of = {n: _ISLAND_COLOURS[i % len(_ISLAND_COLOURS)] for i, n in enumerate(leaders)}

    # -- role holders -----------------------------------------------------------------------------
    holding: dict[tuple[str, str], dict] = {}
    spans: list[dict] = []
    leader_of_plan: dict[str, str] = {}
    for e in events:
        k, n, t = e["kind"], e["node"], e["time"]
        f = e.get("fields") or {}
        if k == "plane.plan_complete":
            leader_of_plan[str(f.get("plan_id"))] = n
        if k == "edge.role_assigned":
            prev = holding.pop((n, f["key"]), None)
            if prev is not None:
                prev["end"] = t
            holding[(n, f["key"])] = {"key": f["key"], "node": n, "plan": f.get("plan_id", ""),
                                      "temporary": bool(f.get("temporary")), "start": t, "end": None}
            spans.append(holding[(n, f["key"])])
        elif k == "edge.role_relinquished":
            h = holding.pop((n, f["key"]), None)
            if h is not None:
                h["end"] = t
    for s in spans:
        if s["end"] is None:
            s["end"] = end
    lanes: dict[str, list[list[dict]]] = {}
    for s in sorted(spans, key=lambda s: (s["start"], s["node"])):
        rows = lanes.setdefault(s["key"], [])
        for row in rows:
            if row[-1]["end"] <= s["start"] + 1e-9:
                row.append(s)
                break
        else:
            rows.append([s])
    role_rows = [(key, i, row) for key in sorted(lanes, key=lambda k: (k.startswith(("leader", "validator", "reporter")), k))
                 for i, row in enumerate(lanes[key])]

    # -- what the site's clients saw -------------------------------------------------------------------------
    asks: dict[str, list[tuple[float, str, str]]] = {}  # "client role" -> [(sent, outcome, servers)]
    for e in events:
        if e["kind"] != "client.request":
            continue
        f = e.get("fields") or {}
        servers = [sv for sv in f.get("servers") or [] if isinstance(sv, (list, tuple)) and len(sv) == 3]
        outcome = "two holders" if len({sv[0] for sv in servers if str(sv[1]).endswith("/1")}) > 1 else \
            str(f.get("outcome"))
        who = ", ".join(f"{_node(str(sv[0]))} ({sv[2]})" for sv in servers)
        asks.setdefault(f"{e['node']}/{e['actor']} {f.get('role')}", []).append(
            (float(f.get("sent", e["time"])), outcome, who))
    client_rows = sorted(asks, key=_natural)

    # -- drawing ------------------------------------------------------------------------------------
    axis = TimeAxis(t0, t1)
    ROW, TOP = 12, 40
    gap = 30
    h_conn = len(nodes) * ROW
    h_roles = max(1, len(role_rows)) * ROW
    h_clients = (gap + len(client_rows) * ROW) if client_rows else 0
    bottom = TOP + h_conn + gap + h_roles + h_clients + 4
    x = axis.x
    LEFT, width = axis.left, axis.right - axis.left

    def esc(s: object) -> str:
        return html.escape(str(s))

    out = []
    out.append(f'<text x="4" y="{TOP - 22}" font-size="12">connectivity per edge node (grey: follows the manager; '
               f'colour: isolated, in the island of that leader; red: isolated, no leader yet; dark band: leader)</text>')
    for i, n in enumerate(nodes):
        y = TOP + i * ROW
        out.append(f'<text x="{LEFT - 6}" y="{y + ROW - 3}" font-size="10" text-anchor="end">{esc(n)}</text>')
        out.append(f'<rect x="{LEFT}" y="{y + ROW / 2 - 1:.1f}" width="{width}" height="2" fill="#ccc"/>')
        for s0, s1, leader in iso[n]:
            c = colour_of.get(leader, _NO_LEADER) if leader else _NO_LEADER
            who = f"island of {leader}" if leader else "no leader"
            out.append(f'<rect x="{x(s0):.1f}" y="{y + 2}" width="{max(1.0, x(s1) - x(s0)):.1f}" height="{ROW - 4}" '
                       f'fill="{c}" opacity="0.75"><title>{esc(n)} isolated {s0 - t0:.3f}-{s1 - t0:.3f}s, {esc(who)}</title></rect>')
        for lead in (lead for lead in leads if lead["node"] == n):
            out.append(f'<rect x="{x(lead["start"]):.1f}" y="{y + ROW / 2 - 2:.1f}" width="{max(1.0, x(lead["end"]) - x(lead["start"])):.1f}" '
                       f'height="4" fill="#222"><title>{esc(n)} leader of term {esc(lead["term"])} '
                       f'{lead["start"] - t0:.3f}-{lead["end"] - t0:.3f}s</title></rect>')
            out.append(f'<text x="{x(lead["start"]) + 2:.1f}" y="{y + ROW - 3}" font-size="9" fill="#000">T{esc(lead["term"])}</text>')
    top2 = TOP + h_conn + gap
    out.append(f'<text x="4" y="{top2 - 8}" font-size="12">role holders per role share (dark blue: final plan; '
               f'colour: temporary plan of that island\'s leader)</text>')
    if not role_rows:
        out.append(f'<text x="{LEFT}" y="{top2 + ROW - 3}" font-size="10">no role was held</text>')
    for r, (key, lane, row) in enumerate(role_rows):
        y = top2 + r * ROW
        label = key if lane == 0 else f"{key} ({lane + 1})"
        out.append(f'<text x="{LEFT - 6}" y="{y + ROW - 3}" font-size="10" text-anchor="end">{esc(label)}</text>')
        for s in row:
            c = colour_of.get(leader_of_plan.get(s["plan"], ""), "#e36209") if s["temporary"] else _FINAL
            w = max(1.0, x(s["end"]) - x(s["start"]))
            kind = "temporary" if s["temporary"] else "final"
            out.append(f'<rect x="{x(s["start"]):.1f}" y="{y + 1}" width="{w:.1f}" height="{ROW - 2}" fill="{c}" opacity="0.85">'
                       f'<title>{esc(key)}: {esc(s["node"])} ({kind}, {esc(s["plan"])}) {s["start"] - t0:.3f}-{s["end"] - t0:.3f}s</title></rect>')
            if w > 6 * len(s["node"]) + 4:
                out.append(f'<text x="{x(s["start"]) + 2:.1f}" y="{y + ROW - 3}" font-size="9" fill="#fff">{esc(s["node"])}</text>')
    if client_rows:
        top3 = top2 + h_roles + gap
        out.append(f'<text x="4" y="{top3 - 8}" font-size="12">what the site\'s clients saw, per request (green: served; '
                   f'orange: refused; red: unserved; purple: answered by two holders of one share)</text>')
        for r, name in enumerate(client_rows):
            y = top3 + r * ROW
            out.append(f'<text x="{LEFT - 6}" y="{y + ROW - 3}" font-size="10" text-anchor="end">{esc(name)}</text>')
            for sent, outcome, who in asks[name]:
                c = _OUTCOME_COLOURS.get(outcome, "#999")
                out.append(f'<rect x="{x(sent):.1f}" y="{y + 1}" width="2" height="{ROW - 2}" fill="{c}">'
                           f'<title>{esc(name)} at {sent - t0:.3f}s: {esc(outcome)} {esc(who)}</title></rect>')
    return chart_svg(axis, periods, out, top=TOP, bottom=bottom, label="edge timeline")
