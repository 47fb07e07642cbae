"""Reports: what a run directory says, as a results file and an offline HTML page.

How this works
--------------
``make_report(run_dir)`` reads only the run's merged event log (and its
``summary.json``), so any run - real, simulated, chaos or not - can be
reported again later (``fleetplane report RUNDIR``). It writes:

* ``results.json``: the verdict of every invariant checker (valid / invalid /
  unknown, with the offending events as evidence), event counts by kind,
  dead letters and decode errors per node, ask latency quantiles (from the
  ``runtime.ask`` / ``runtime.ask_end`` trace), messages per unit of progress,
  and availability per fault period: the progress rate while each fault was
  active against the rate while none was.
* ``report.html``: one self-contained page (inline SVG, no scripts, nothing
  fetched) with a timeline of fault periods and the topology's progress over
  time; actors per state over time when the topology names a state event
  (``[run] states``, e.g. servers per state); the report sections of the
  plug-ins the topology uses (:class:`topologies.plugin.ReportSection`: holders
  against the limit, edge connectivity and leaders, rack indicators and
  authorities), each drawn only when the log has its events; plus the tables
  above.

Verdicts: the core's runtime checkers and those of the plug-ins the topology
uses (:func:`topologies.plugin.checkers_for`; every checker when the run
directory has no ``topology.json``).

Fault periods come from the nemesis events (``nemesis.*``): a fault op opens a
period, the matching heal op closes it.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path

from actors.eventlog import read_events

__all__ = ["fault_periods", "lines_svg", "make_report"]

_OPEN = {"nemesis.grudge": "nemesis.heal", "nemesis.link_fault": "nemesis.clear_link_faults",
         "nemesis.kill": "nemesis.restart", "nemesis.pause": "nemesis.resume"}


def fault_periods(events: list[dict], end: float) -> list[dict]:
    """[{start, end, kind, label}] from the nemesis events (open until healed or the run's end)."""
    periods: list[dict] = []
    open_: dict[str, dict] = {}
    for e in events:
        k = e["kind"]
        if k in _OPEN:
            key = _OPEN[k] + ":" + str(e["fields"].get("node", ""))
            if key not in open_:
                p = {"start": e["time"], "end": end, "kind": k.split(".", 1)[1],
                     "label": e["fields"].get("label") or e["fields"].get("node") or k.split(".", 1)[1]}
                open_[key] = p
                periods.append(p)
        else:
            for opener, closer in _OPEN.items():
                if k == closer:
                    for key in [key for key in open_ if key.startswith(closer + ":")
                                and (key.endswith(":" + str(e["fields"].get("node", ""))) or closer in ("nemesis.heal", "nemesis.clear_link_faults"))]:
                        open_.pop(key)["end"] = e["time"]
    return periods


def _quantiles(xs: list[float]) -> dict:
    if not xs:
        return {}
    xs = sorted(xs)

    def q(p: float) -> float:
        return round(xs[min(len(xs) - 1, int(p * len(xs)))], 6)
    return {"count": len(xs), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": round(xs[-1], 6)}


def make_report(run_dir: str | Path, checkers: list[str] | None = None) -> dict:
    run_dir = Path(run_dir)
    events_file = run_dir / "events.jsonl"
    if not events_file.exists():
        raise FileNotFoundError(f"{run_dir} has no events.jsonl: is it a fleetplane run directory?")
    events = read_events(events_file)
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}
    t0 = events[0]["time"] if events else 0.0
    t1 = events[-1]["time"] if events else 0.0
    progress_kind = (summary.get("progress_kind") or _progress_kind(run_dir))
    kinds = Counter(e["kind"] for e in events)

    from topologies.checkers import run_checkers
    from topologies.plugin import checkers_for, plugins_of

    kinds_used = _kinds_used(run_dir)
    plugins = plugins_of(kinds_used) if kinds_used is not None else None
    if checkers is None:
        checkers = checkers_for(kinds_used)
    verdicts = [v.as_dict() for v in run_checkers(events, checkers)]
    if summary.get("reason") == "interrupted":
        verdicts = [_interrupted(v) for v in verdicts]

    per_node: dict[str, Counter] = {}
    for e in events:
        if e["kind"] in ("runtime.dead_letter", "runtime.decode_error", "transport.bad_frame", "actor.crashed", "transport.peer_down"):
            per_node.setdefault(e["node"], Counter())[e["kind"]] += 1

    starts = {}
    latencies = []
    outcomes: Counter[str] = Counter()
    for e in events:
        if e["kind"] == "runtime.ask":
            starts[(e["node"], e["fields"].get("id"))] = e["time"]
        elif e["kind"] == "runtime.ask_end":
            outcomes[e["fields"].get("outcome", "?")] += 1
            s = starts.get((e["node"], e["fields"].get("id")))
            if s is not None and e["fields"].get("outcome") == "reply":
                latencies.append(e["time"] - s)

    from topologies.launcher import event_matcher
    is_progress = event_matcher(progress_kind)
    progress_times = [e["time"] for e in events if is_progress(e["kind"], e.get("fields") or {})] if is_progress else []
    periods = fault_periods(events, t1)
    availability = []
    for p in periods:
        span = max(p["end"] - p["start"], 1e-9)
        n = sum(1 for t in progress_times if p["start"] <= t < p["end"])
        availability.append({**p, "progress": n, "rate_per_s": round(n / span, 3)})
    faulty = sum(max(0.0, p["end"] - p["start"]) for p in periods)
    healthy_span = max((t1 - t0) - faulty, 1e-9)
    healthy_n = sum(1 for t in progress_times if not any(p["start"] <= t < p["end"] for p in periods))
    messages = sum((c or {}).get("sent_remote", 0) for c in (n.get("counters") for n in summary.get("nodes", {}).values()) if isinstance(c, dict))
    if not messages:
        messages = kinds.get("net.send", 0)
    results = {
        "run": summary,
        "verdicts": verdicts,
        "valid": all(v["status"] != "invalid" for v in verdicts),
        "events": len(events),
        "span": round(t1 - t0, 6),
        "counts": dict(sorted(kinds.items())),
        "per_node": {n: dict(c) for n, c in sorted(per_node.items())},
        "ask_latency_s": _quantiles(latencies),
        "ask_outcomes": dict(outcomes),
        "progress_kind": progress_kind,
        "progress": len(progress_times),
        "messages": messages,
        "messages_per_progress": round(messages / len(progress_times), 3) if progress_times and messages else None,
        "availability": {"healthy_rate_per_s": round(healthy_n / healthy_span, 3), "fault_periods": availability},
    }
    states_kind = _topology(run_dir).get("run", {}).get("states")
    extra = []
    if states_kind:
        series = _state_series(events, states_kind)
        if series:
            extra.append((f"Actors per state ({states_kind})", lines_svg(series, periods, t0, t1)))
    for section in _sections(plugins):
        chart = section.render(events, periods, t0, t1)
        if chart:
            extra.append((section.title, chart))
    (run_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (run_dir / "report.html").write_text(_html(results, events, periods, progress_times, t0, t1, extra), encoding="utf-8")
    return results


def _interrupted(v: dict) -> dict:
    """An interrupted run judges safety on what it has; a liveness checker that did not see its
    outcome happen says unknown (the run was stopped before it could), never invalid."""
    from topologies.checkers import CHECKERS

    if not getattr(CHECKERS.get(v["checker"]), "liveness", False) or v["status"] == "valid":
        return v
    return {**v, "status": "unknown", "evidence": [],
            "summary": f"the run was interrupted, so liveness is not judged (on the truncated log: {v['summary']})"}


def _kinds_used(run_dir: Path) -> set[str] | None:
    """The actor kinds of the run's topology (None: no topology.json, so every plug-in applies)."""
    topo = _topology(run_dir)
    if not topo:
        return None
    return {a.get("kind") for n in topo.get("nodes", ()) for a in n.get("actors", ())}


def _sections(plugins: list[str] | None) -> list:
    from topologies.plugin import load_plugins

    loaded = load_plugins()
    return [s for name, p in loaded.items() if plugins is None or name in plugins for s in p.report]


def _topology(run_dir: Path) -> dict:
    f = run_dir / "topology.json"
    return json.loads(f.read_text()) if f.exists() else {}


def _state_series(events: list[dict], kind: str) -> dict[str, list[tuple[float, float]]]:
    """state -> [(time, actors in that state)] from the ``to`` field of ``kind`` events."""
    state_of: dict[tuple[str, str], str] = {}
    counts: Counter[str] = Counter()
    series: dict[str, list[tuple[float, float]]] = {}
    for e in events:
        if e["kind"] != kind or "to" not in (e.get("fields") or {}):
            continue
        key = (e["node"], e["actor"])
        old = state_of.get(key)
        new = e["fields"]["to"]
        state_of[key] = new
        for st, delta in ((old, -1), (new, +1)):
            if st is None:
                continue
            counts[st] += delta
            series.setdefault(st, []).append((e["time"], counts[st]))
    return series


_PALETTE = ["#1f6feb", "#d73a49", "#28a745", "#6f42c1", "#e36209", "#17a2b8", "#6a737d", "#b08800"]


def lines_svg(series: dict[str, list[tuple[float, float]]], periods: list[dict], t0: float, t1: float) -> str:
    W, H, PAD, RIGHT = 900, 220, 40, 100  # RIGHT: room for the legend
    span = max(t1 - t0, 1e-9)
    top = max((v for pts in series.values() for _, v in pts), default=1) or 1

    def x(t: float) -> float:
        return PAD + (t - t0) / span * (W - PAD - RIGHT)

    def y(v: float) -> float:
        return H - PAD - v / top * (H - 2 * PAD)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img">',
           f'<rect x="0" y="0" width="{W}" height="{H}" fill="#fff"/>']
    for p in periods:
        out.append(f'<rect x="{x(p["start"]):.1f}" y="{PAD / 2:.0f}" width="{max(1.0, x(p["end"]) - x(p["start"])):.1f}" '
                   f'height="{H - PAD * 1.5:.0f}" fill="#eee"/>')
    for i, (name, pts) in enumerate(sorted(series.items())):
        colour = _PALETTE[i % len(_PALETTE)]
        step = []
        prev = 0.0
        for t, v in pts:  # step lines: a count holds until it changes
            step += [(x(t), y(prev)), (x(t), y(v))]
            prev = v
        step.append((x(t1), y(prev)))
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="'
                   + " ".join(f"{a:.1f},{b:.1f}" for a, b in step) + '"/>')
        out.append(f'<text x="{W - RIGHT + 6}" y="{PAD + 14 * i}" font-size="11" fill="{colour}">{html.escape(name)}</text>')
    out.append(f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - RIGHT}" y2="{H - PAD}" stroke="#333"/>')
    out.append(f'<text x="4" y="{PAD}" font-size="11">{top:g}</text>')
    for k in range(6):
        t = t0 + span * k / 5
        out.append(f'<text x="{x(t):.1f}" y="{H - PAD + 16}" font-size="11" text-anchor="middle">{t - t0:.2f}s</text>')
    out.append("</svg>")
    return "".join(out)


def _progress_kind(run_dir: Path) -> str | None:
    return _topology(run_dir).get("run", {}).get("progress")


def _html(results: dict, events: list[dict], periods: list[dict], progress: list[float], t0: float, t1: float,
          extra: list[tuple[str, str]] = ()) -> str:
    W, H, PAD = 900, 220, 40
    span = max(t1 - t0, 1e-9)

    def x(t: float) -> float:
        return PAD + (t - t0) / span * (W - 2 * PAD)

    colours = {"grudge": "#f4a6a6", "link_fault": "#f7d38b", "kill": "#c9a0dc", "pause": "#a6c8f4"}
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img" aria-label="timeline">',
           f'<rect x="0" y="0" width="{W}" height="{H}" fill="#fff"/>']
    for p in periods:
        svg.append(f'<rect x="{x(p["start"]):.1f}" y="{PAD / 2:.0f}" width="{max(1.0, x(p["end"]) - x(p["start"])):.1f}" '
                   f'height="{H - PAD * 1.5:.0f}" fill="{colours.get(p["kind"], "#ddd")}" opacity="0.7">'
                   f'<title>{html.escape(p["kind"])}: {html.escape(str(p["label"]))}</title></rect>')
    if progress:
        pts = [(x(t0), H - PAD)]
        for i, t in enumerate(progress, 1):
            pts.append((x(t), H - PAD - i / len(progress) * (H - 2 * PAD)))
        svg.append('<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="'
                   + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
    svg.append(f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#333"/>')
    for k in range(6):
        t = t0 + span * k / 5
        svg.append(f'<text x="{x(t):.1f}" y="{H - PAD + 16}" font-size="11" text-anchor="middle">{t - t0:.2f}s</text>')
    svg.append(f'<text x="{PAD}" y="14" font-size="12">progress ({html.escape(str(results["progress_kind"]))}, blue) and fault periods (shaded)</text>')
    svg.append("</svg>")

    def rows(pairs) -> str:
        return "".join(f"<tr><td>{html.escape(str(a))}</td><td>{html.escape(str(b))}</td></tr>" for a, b in pairs)

    verdict_rows = "".join(
        f'<tr class="{v["status"]}"><td>{html.escape(v["checker"])}</td><td>{v["status"]}</td>'
        f'<td>{html.escape(v["summary"])}</td><td>{len(v.get("evidence", []))}</td></tr>' for v in results["verdicts"])
    run = results.get("run", {})
    title = html.escape(f'{run.get("topology", "run")} ({run.get("mode", "?")})')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fleetplane report: {title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;color:#222}} table{{border-collapse:collapse;margin:8px 0 20px}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:13px}} tr.invalid td{{background:#fbe0e0}}
tr.valid td{{background:#e3f6e3}} tr.unknown td{{background:#f3f3f3}} h1{{font-size:20px}} h2{{font-size:16px}}</style></head>
<body><h1>fleetplane report: {title}</h1>
<p>{"All checkers valid or unknown." if results["valid"] else "<b>At least one invariant is INVALID.</b>"}
 {results["events"]} events over {results["span"]:.3f} s; progress {results["progress"]}.</p>
<h2>Timeline</h2>{"".join(svg)}
{"".join(f"<h2>{html.escape(title)}</h2>{chart}" for title, chart in extra)}
<h2>Invariants</h2><table><tr><th>checker</th><th>verdict</th><th>summary</th><th>evidence</th></tr>{verdict_rows}</table>
<h2>Figures</h2><table>{rows([("ask latency (s)", results["ask_latency_s"] or "no traced asks"),
                              ("ask outcomes", results["ask_outcomes"] or "-"),
                              ("messages per progress event", results["messages_per_progress"]),
                              ("healthy progress rate (/s)", results["availability"]["healthy_rate_per_s"])])}</table>
<h2>Availability per fault period</h2><table><tr><th>fault</th><th>from</th><th>to</th><th>progress</th><th>rate /s</th></tr>
{"".join(f'<tr><td>{html.escape(p["kind"])}: {html.escape(str(p["label"]))}</td><td>{p["start"] - t0:.3f}</td><td>{p["end"] - t0:.3f}</td><td>{p["progress"]}</td><td>{p["rate_per_s"]}</td></tr>' for p in results["availability"]["fault_periods"]) or '<tr><td colspan="5">no faults</td></tr>'}</table>
<h2>Problems per node</h2><table>{rows((n, c) for n, c in results["per_node"].items()) or "<tr><td>none</td></tr>"}</table>
<h2>Events by kind</h2><table>{rows(results["counts"].items())}</table>
</body></html>
"""
