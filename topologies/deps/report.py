"""The dependency-startup section of report.html: services per state over time, and the plan's waves.

:func:`deps_section` reads ``deps.service`` (every service's state changes),
``deps.plan`` (the waves and remedial workflows), ``deps.deadlock_detected`` /
``deps.deadlock_resolved`` and ``deps.all_up``, and draws one step line per
state (down, starting, waiting, bootstrap, up, failed) in the report's shared
time frame, deadlocks, manager (re)starts and condition changes marked,
followed by the waves of the newest plan and a table of the decisions:
conditions (an operator's or detected), overrides and remediations armed, with
who and when.
Returns ``None`` when the log has no dependency-startup events.
"""

from __future__ import annotations

import html

from topologies.report import TimeAxis, chart_svg

__all__ = ["deps_section"]

COLOURS = {"up": "#2da44e", "bootstrap": "#8250df", "starting": "#0969da", "waiting": "#d4a72c",
           "failed": "#cf222e", "down": "#6e7781"}


def deps_section(events: list[dict], periods: list[dict], t0: float, t1: float) -> str | None:
    changes = [e for e in events if e.get("kind") == "deps.service"]
    if not changes:
        return None
    state: dict[str, str] = {}
    counts = {s: 0 for s in COLOURS}
    series: dict[str, list[tuple[float, int]]] = {s: [(t0, 0)] for s in COLOURS}
    for e in sorted(changes, key=lambda e: e["time"]):
        f = e.get("fields") or {}
        svc, new = f.get("service", "?"), f.get("state", "down")
        old = state.get(svc)
        if old is not None:
            counts[old] -= 1
            series[old].append((e["time"], counts[old]))
        state[svc] = new
        if new in counts:
            counts[new] += 1
            series[new].append((e["time"], counts[new]))
    total = max(len(state), 1)
    axis = TimeAxis(t0, t1)
    top, bottom = 30, 230

    def y(v: float) -> float:
        return bottom - v / total * (bottom - top)

    body = []
    for s, pts in series.items():
        if len(pts) < 2:
            continue
        path, prev = [], 0
        for t, v in pts:
            path.append(f"{axis.x(t):.1f},{y(prev):.1f} {axis.x(t):.1f},{y(v):.1f}")
            prev = v
        path.append(f"{axis.x(t1):.1f},{y(prev):.1f}")
        body.append(f'<polyline points="{" ".join(path)}" fill="none" stroke="{COLOURS[s]}" stroke-width="2">'
                    f'<title>{s}</title></polyline>')
    for i, s in enumerate(COLOURS):
        body.append(f'<rect x="{axis.right + 10}" y="{top + i * 16}" width="12" height="4" fill="{COLOURS[s]}"/>'
                    f'<text x="{axis.right + 26}" y="{top + i * 16 + 6}" font-size="11">{s}</text>')
    starts = 0
    for e in events:
        k, f = e.get("kind"), e.get("fields") or {}
        if k == "deps.manager_start":
            starts += 1
            if starts == 1:
                continue
        if k in ("deps.deadlock_detected", "deps.deadlock_resolved", "deps.all_up", "deps.manager_start",
                 "deps.condition"):
            x = axis.x(e["time"])
            colour = {"deps.deadlock_detected": "#cf222e", "deps.deadlock_resolved": "#2da44e",
                      "deps.manager_start": "#bc4c00", "deps.condition": "#8250df"}.get(k, "#333")
            label = {"deps.deadlock_detected": "deadlock", "deps.deadlock_resolved": "resolved",
                     "deps.manager_start": "manager restarted",
                     "deps.condition": f"{f.get('name', '?')} {'holds' if f.get('holds') else 'ends'}"}.get(k, "all up")
            label = html.escape(label)
            body.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="{colour}" '
                        f'stroke-dasharray="2,2"><title>{label} at {e["time"] - t0:.3f} s</title></line>'
                        f'<text x="{x + 2:.1f}" y="{top + 10}" font-size="10" fill="{colour}">{label}</text>')
    svg = chart_svg(axis, periods, body, top=top, bottom=bottom, label="services per state",
                    y_label="services", y_ticks=[(0, y(0)), (total, y(total))])
    plans = [e for e in events if e.get("kind") == "deps.plan"]
    parts = [svg]
    if plans:
        f = plans[-1].get("fields") or {}
        rows = "".join(f"<tr><td>{i}</td><td>{html.escape(', '.join(w))}</td></tr>"
                       for i, w in enumerate(f.get("waves", []), 1))
        wfs = "".join(f"<li><b>{html.escape(w.get('group', ''))}</b> ({html.escape(w.get('rule', ''))}): "
                      f"{html.escape(w.get('explanation', ''))}</li>" for w in f.get("workflows", []))
        tickets = "".join(f"<li><b>{html.escape(t.get('id', ''))}</b>: {html.escape(t.get('reason', ''))}</li>"
                          for t in f.get("tickets", []))
        parts.append(f"<p>Plan ({len(plans)} computed; the newest): critical path {f.get('makespan', 0):g} s.</p>"
                     f"<table><tr><th>wave</th><th>services / cycle groups</th></tr>{rows}</table>"
                     + (f"<p>Remedial workflows:</p><ul>{wfs}</ul>" if wfs else "")
                     + (f"<p>Work tickets:</p><ul>{tickets}</ul>" if tickets else ""))
    else:
        parts.append("<p>No plan in this log (a naive start: every service started at once).</p>")
    decisions = []
    for e in events:
        k, f = e.get("kind"), e.get("fields") or {}
        if k == "deps.condition":
            what = f"condition {f.get('name', '?')!r} {'holds' if f.get('holds') else 'ends'}"
        elif k == "deps.override":
            what = (f"override: {f.get('service')} no longer depends on {f.get('on')}" if f.get("remove") else
                    f"override: {f.get('service')} -> {f.get('on')} ({f.get('kind')})")
        elif k == "deps.remediation_armed" and f.get("who") != "manager":
            what = f"remediation {f.get('id')!r}: {f.get('action')} {f.get('service')}, {f.get('when')}"
        elif k == "deps.manager_start" and f.get("previous"):
            what = f"manager restarted (incarnation {len(f['previous']) + 1}; restored {f.get('restored')})"
        else:
            continue
        decisions.append(f"<tr><td>{e['time'] - t0:.3f}</td><td>{html.escape(str(f.get('who', '')))}</td>"
                         f"<td>{html.escape(what)}</td></tr>")
    if decisions:
        parts.append("<p>Decisions (operators', detected, restarts):</p><table><tr><th>s</th><th>who</th>"
                     f"<th>what</th></tr>{''.join(decisions[:200])}</table>")
    return "".join(parts)
