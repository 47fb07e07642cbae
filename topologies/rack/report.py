"""The rack section of report.html: each rack's indicator and each group's authority over time.

How this works
--------------
:func:`rack_timeline` reads the rack-monitor events (``protocols/rack``) of a
run and draws one inline SVG (no scripts) in the report's shared frame
(:func:`topologies.report.chart_svg`: the same time axis and fault marks as
every other chart):

* **rack indicators** - one thin row per rack: its monitor's indicator colour
  from ``monitor.start`` / ``monitor.condition`` (green, amber, red); a
  flashing indicator (powered-off) is drawn hatched. Hover for the condition
  and its reason. Every 6th rack is labelled, and every rack that was not
  green all along (in bold).
* **authorities** - one row per group (sectors, data centers, the fleet): a
  segment per unbroken lease (``authority.lease``), labelled with the
  holder's rack id and term; alternating shades show a change of holder.

It returns ``None`` when the log has no monitor events, so other topologies'
reports are unchanged.
"""

from __future__ import annotations

import html
import re

from topologies.report import TimeAxis, chart_svg

__all__ = ["rack_timeline"]

_COLOURS = {"green": "#2da44e", "amber": "#d4a72c", "red": "#cf222e"}
_AUTH = ["#1f4e99", "#6f42c1"]


def _natural(s: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s)]


def _group_key(g: str) -> tuple:
    return (0 if g == "fleet" else 1 if "s" not in g else 2, _natural(g))


def rack_timeline(events: list[dict], periods: list[dict], t0: float, t1: float) -> str | None:
    racks: dict[str, list[list]] = {}  # rack -> [[start, end, colour, pattern, title], ...]
    leases: dict[str, list[list]] = {}  # group -> [[start, end, holder, term], ...]
    for e in events:
        k, f, t = e["kind"], e.get("fields") or {}, e["time"]
        if k in ("monitor.start", "monitor.condition"):
            ind = f.get("indicator") or ["green", "steady"]
            segs = racks.setdefault(f.get("rack", "?"), [])
            if segs and segs[-1][1] is None:
                segs[-1][1] = t
            title = f"{f.get('condition', '')}: {f.get('reason', 'start')}"
            segs.append([t, None, _COLOURS.get(ind[0], "#999"), ind[1], title])
        elif k == "authority.lease":
            ivs = leases.setdefault(f.get("group", "?"), [])
            if ivs and ivs[-1][2] == f.get("holder") and ivs[-1][3] == f.get("term") and t <= ivs[-1][1]:
                ivs[-1][1] = max(ivs[-1][1], f.get("until", t))
            else:
                ivs.append([t, f.get("until", t), f.get("holder"), f.get("term")])
    if not racks:
        return None
    axis = TimeAxis(t0, t1)
    ROW, AROW = 5, 14
    rack_names = sorted(racks, key=_natural)
    groups = sorted(leases, key=_group_key)
    top1 = 40
    top2 = top1 + len(rack_names) * ROW + 36
    bottom = top2 + len(groups) * AROW + 6
    x = axis.x
    esc = html.escape
    out = ['<defs><pattern id="flash" width="6" height="6" patternUnits="userSpaceOnUse" '
           'patternTransform="rotate(45)"><rect width="3" height="6" fill="#cf222e"/>'
           '<rect x="3" width="3" height="6" fill="#ffd7d5"/></pattern></defs>']
    out.append(f'<text x="4" y="{top1 - 22}" font-size="12">rack indicators, one row per rack (green: non-fault; '
               f'amber: needs troubleshooting; red: needs repair; hatched: powered off, flashing)</text>')
    odd = {i for i, r in enumerate(rack_names)
           if any(colour != _COLOURS["green"] or pattern == "flashing" for _, _, colour, pattern, _ in racks[r])}
    # every rack that was not green all along is labelled (bold); every 6th rack too, where there is room
    labelled = odd | {i for i in range(0, len(rack_names), 6) if not any(abs(i - j) < 3 for j in odd)}
    for i, r in enumerate(rack_names):
        y = top1 + i * ROW
        segs = racks[r]
        if i in labelled:
            weight = ' font-weight="bold"' if i in odd else ""
            out.append(f'<text x="{axis.left - 6}" y="{y + ROW}" font-size="9" text-anchor="end"{weight}>'
                       f'{esc(r)}</text>')
        for s, e_, colour, pattern, title in segs:
            fill = "url(#flash)" if pattern == "flashing" else colour
            out.append(f'<rect x="{x(s):.1f}" y="{y}" width="{max(0.5, x(e_ if e_ is not None else t1) - x(s)):.1f}" '
                       f'height="{ROW - 1}" fill="{fill}"><title>{esc(r)} {esc(title)}</title></rect>')
    out.append(f'<text x="4" y="{top2 - 8}" font-size="12">authorities, one row per group (a segment per lease; '
               f'label: holder rack, term)</text>')
    for i, g in enumerate(groups):
        y = top2 + i * AROW
        out.append(f'<text x="{axis.left - 6}" y="{y + 10}" font-size="10" text-anchor="end">{esc(g)}</text>')
        last, shade = None, 0
        for s, e_, holder, term in leases[g]:
            if holder != last:
                shade, last = 1 - shade, holder
            w = max(0.5, x(e_) - x(s))
            out.append(f'<rect x="{x(s):.1f}" y="{y}" width="{w:.1f}" height="{AROW - 3}" fill="{_AUTH[shade]}">'
                       f'<title>{esc(g)}: {esc(str(holder))} term {term}, {s - t0:.2f}-{e_ - t0:.2f} s</title></rect>')
            if w > 60:
                out.append(f'<text x="{x(s) + 2:.1f}" y="{y + 9}" font-size="8" fill="#fff">{esc(str(holder))} '
                           f't{term}</text>')
    return chart_svg(axis, periods, out, top=top1, bottom=bottom, label="rack indicators and authorities")
