"""Reports: what a run directory says, as a results file and an offline HTML page.

How this works
--------------
``make_report(run_dir)`` reads only the run's merged event log (and, when they
exist, its ``summary.json``, ``schedule.json`` and ``topology.json``), so any
run - real, simulated, chaos or not, old or new - can be reported again later
(``fleetplane report RUNDIR``). It writes:

* ``results.json``: the verdict of every invariant checker (valid / invalid /
  unknown, with the offending events as evidence), event counts by kind,
  problems per node (dead letters, decode errors, crashes, peers lost - a
  peer that *left* cleanly is not a problem), ask latency quantiles (from the
  ``runtime.ask`` / ``runtime.ask_end`` trace), messages per unit of progress,
  the fault ops in words, and availability per fault period: the progress
  rate while the fault was in force and the **recovery** after its heal
  (:func:`recovery`).
* ``report.html``: one self-contained page (inline SVG, no scripts, nothing
  fetched). Its header names the run (topology, real or simulated, seed) and,
  for a chaos run, the nemesis and every fault op with its time and what it
  did; it calls out a recovery slower than the fault itself. Then the charts:
  the topology's progress, actors per state when the topology names a state
  event (``[run] states``), and the report sections of the plug-ins the
  topology uses (:class:`topologies.plugin.ReportSection`), each drawn only
  when the log has its events; then the invariants (with the evidence of each
  invalid one) and the tables above.

Every chart is drawn in one frame (:class:`TimeAxis`, :func:`chart_svg`): the
same width, the same mapping of time (``t0`` = the first event, ``t1`` = the
last) to pixels, the same ticks, so charts line up vertically; fault periods
are tinted behind the chart and marked by a coloured strip above it, one
colour per fault kind (:data:`FAULT_STYLES`), with a legend under each chart.
Plug-ins draw their sections in the same frame (they may import this module;
it never imports a plug-in).

Verdicts: the core's runtime checkers and those of the plug-ins the topology
uses (:func:`topologies.plugin.checkers_for`; every checker when the run
directory has no ``topology.json``).

Fault periods come from the nemesis events (``nemesis.*``) - or, for a log
without them, ``schedule.json``: a fault op opens a period, the matching heal
op closes it. The link faults of one nemesis step (one op per link) form one
period, named by what they do (``flaky: mgr links, loss 0.5``).
"""

from __future__ import annotations

import html
import json
import math
from bisect import bisect_left, bisect_right
from collections import Counter
from pathlib import Path
from typing import Iterable

from actors.eventlog import read_events

__all__ = ["CHART_WIDTH", "FAULT_STYLES", "TimeAxis", "chart_svg", "describe_ops", "fault_ops", "fault_periods",
           "healthy_rate", "lines_svg", "make_report", "recovery"]

# -- fault ops in words ------------------------------------------------------------------------------

_OPEN = {"grudge": "heal", "link_fault": "clear_link_faults", "kill": "restart", "pause": "resume"}
_CLOSE = {v: k for k, v in _OPEN.items()}
_GROUP_GAP = 0.5  # link faults of one step are emitted together (real runs: within milliseconds)


def _names(xs: Iterable[str]) -> str:
    xs = [x for x in xs if x]
    return ",".join(xs) if xs else "nobody"


def _group(names: str, most: int = 4) -> str:
    """``{a,b,c}``; a long group shortened to its first few names and its size."""
    xs = [x for x in names.split(",") if x]
    if len(xs) <= most + 1:
        return "{" + ",".join(xs) + "}"
    return "{" + ",".join(xs[:most]) + f",... ({len(xs)} nodes)" + "}"


def _describe_grudge(f: dict) -> tuple[str, str]:
    """(nemesis name, what it does) of a grudge op, from its label (or its blocked pairs)."""
    label = str(f.get("label") or "")
    name, _, rest = label.partition(": ")
    rest = rest.strip()
    if name == "one" and rest.endswith(" isolated"):
        return name, f"{rest[:-len(' isolated')]} cut off from everyone, both ways"
    if name in ("majority", "random-halves") and " | " in rest:
        a, b = rest.split(" | ", 1)
        return name, f"{_group(a)} and {_group(b)} cannot reach each other"
    if name == "bridge" and rest.count(" | ") == 2:
        a, bridge_node, b = rest.split(" | ")
        return name, f"{_group(a)} and {_group(b)} cut apart, only {bridge_node} reaches both"
    if name == "asymmetric" and rest.endswith(" cannot send"):
        return name, f"{rest[:-len(' cannot send')]} cannot send to anyone (it still receives)"
    if name == "majorities-ring":
        return name, f"ring {rest}: each node reaches a majority, no two the same one"
    blocked = f.get("blocked") or []
    nodes = sorted({n for pair in blocked for n in pair})
    what = f"{len(blocked)} directed links blocked among {_names(nodes)}"
    return (name or "grudge"), (f"{rest} ({what})" if rest else what)


def _describe_links(ops: list[dict]) -> tuple[str, str]:
    """(nemesis name, what it does) of the link faults of one step: ``("flaky", "mgr links, loss 0.5")``."""
    def most(key: str) -> float:
        return max((float(o.get(key) or 0.0) for o in ops), default=0.0)

    parts: list[tuple[str, str]] = []
    if most("loss"):
        parts.append(("flaky", f"loss {most('loss'):g}"))
    if most("delay") or most("jitter"):
        jitter = f" + up to {most('jitter'):g} s jitter" if most("jitter") else ""
        parts.append(("slow", f"delay {most('delay'):g} s{jitter}"))
    if most("duplicate"):
        parts.append(("duplicate", f"duplicate {most('duplicate'):g}"))
    if most("reorder"):
        parts.append(("reorder", f"reorder {most('reorder'):g}"))
    links = [(str(o.get("src", "?")), str(o.get("dst", "?"))) for o in ops]
    common = set.intersection(*(set(p) for p in links)) if links else set()
    nodes = sorted({n for p in links for n in p})
    if len(common) == 1:
        scope = f"{next(iter(common))} links"
    elif len(links) == len(nodes) * (len(nodes) - 1):
        scope = f"all links among {len(nodes)} nodes"
    else:
        scope = f"{len(links)} links ({', '.join(f'{a}>{b}' for a, b in links[:4])}{', ...' if len(links) > 4 else ''})"
    name = "+".join(p[0] for p in parts) or "link fault"
    return name, ", ".join([scope] + [p[1] for p in parts])


def describe_ops(ops: list[dict]) -> tuple[str, str, str]:
    """(op, nemesis name, what it does) of one step: one op, or the link faults taken together."""
    op = str(ops[0].get("op", "?"))
    f = ops[0]
    node = str(f.get("node", "?"))
    if op == "grudge":
        name, what = _describe_grudge(f)
        return op, name, what
    if op == "link_fault":
        name, what = _describe_links(ops)
        return "link faults", name, what
    words = {"heal": ("heal", "every node reaches every other again"),
             "clear_link_faults": ("clear", "every link back to normal"),
             "kill": ("kill", f"{node} killed (its actors' state is lost)"),
             "restart": ("restart", f"{node} started again, with fresh state"),
             "pause": ("pause", f"{node} frozen"),
             "resume": ("resume", f"{node} runs again")}
    name, what = words.get(op, (op, json.dumps({k: v for k, v in f.items() if k != "op"}, default=str)[:120]))
    return op.replace("_", " "), name, what


def fault_ops(events: list[dict], schedule: list[dict] | None, t0: float) -> list[dict]:
    """The fault ops of a run, one step per entry: ``{at, op, name, what, ops}``.

    ``at`` is on the report's time axis (seconds from the first event), taken
    from the log's ``nemesis.*`` events; without them (an old or cut-short
    log) from ``schedule.json`` (``planned: True``: seconds from the run's start).
    When the log holds exactly the schedule's ops, ``scheduled`` is the planned
    time (seconds from the run's start: a real run starts after its nodes are up).
    """
    raw = [(e["time"] - t0, dict(e.get("fields") or {}, op=e["kind"].split(".", 1)[1]))
           for e in events if e["kind"].startswith("nemesis.")]
    sched = [(float(s.get("time", 0.0)), dict(s)) for s in schedule or () if isinstance(s, dict) and "op" in s]
    planned = False
    if not raw and sched:
        raw, planned = sched, True
    # the log's ops are the schedule's, in order: each step also gets its planned time
    plan = [t for t, _ in sched] if len(sched) == len(raw) and not planned else [None] * len(raw)
    steps: list[dict] = []
    for (at, f), when in zip(raw, plan):
        last = steps[-1] if steps else None
        if (f["op"] == "link_fault" and last is not None and last["ops"][0]["op"] == "link_fault"
                and at - last["last"] <= _GROUP_GAP):
            last["ops"].append(f)
            last["last"] = at
            continue
        steps.append({"at": at, "last": at, "ops": [f], "scheduled": when})
    out = []
    for s in steps:
        op, name, what = describe_ops(s["ops"])
        out.append({"at": round(s["at"], 6), "op": op, "name": name, "what": what, "ops": s["ops"],
                    **({"planned": True} if planned else {}),
                    **({"scheduled": s["scheduled"]} if s["scheduled"] is not None else {})})
    return out


def fault_periods(events: list[dict], end: float, schedule: list[dict] | None = None) -> list[dict]:
    """[{start, end, kind, label, healed}] from the nemesis events (open until healed or the run's end).

    ``kind`` is the opening op (grudge, link_fault, kill, pause); ``label`` says
    what the fault did (``one: ctl cut off from everyone, both ways``,
    ``flaky: mgr links, loss 0.5``). Times are the log's own (like ``end``).
    """
    t0 = events[0]["time"] if events else 0.0
    periods: list[dict] = []
    open_: dict[str, dict] = {}
    for step in fault_ops(events, schedule, t0):
        first = step["ops"][0]
        op = first["op"]
        t = step["at"] + t0
        node = str(first.get("node", ""))
        if op in _OPEN:
            key = f"{op}:{node}" if op in ("kill", "pause") else op
            if key in open_ and op == "grudge":  # a new grudge replaces the one in force
                old = open_.pop(key)
                old["end"], old["healed"], old["replaced"] = t, True, True
            if key not in open_:
                p = {"start": t, "end": end, "kind": op, "label": f"{step['name']}: {step['what']}", "healed": False}
                open_[key] = p
                periods.append(p)
        elif op in _CLOSE:
            opener = _CLOSE[op]
            for key in [k for k in open_ if k == opener or k == f"{opener}:{node}"]:
                p = open_.pop(key)
                p["end"], p["healed"] = t, True
    return periods


# -- recovery -------------------------------------------------------------------------------------------

MIN_PROGRESS = 10  # fewer healthy progress events than this: too few to measure a rate
WINDOW_EVENTS = 5  # the sliding window is long enough to hold this many events at half the healthy rate


def _inside(t: float, periods: list[dict]) -> bool:
    return any(p["start"] <= t < p["end"] for p in periods)


def healthy_rate(progress: list[float], periods: list[dict]) -> float | None:
    """Progress per second while no fault was in force, between the first and the last progress event.

    None when fewer than :data:`MIN_PROGRESS` progress events fall outside the faults.
    """
    progress = sorted(progress)
    healthy = [t for t in progress if not _inside(t, periods)]
    if len(healthy) < MIN_PROGRESS:
        return None
    a, b = progress[0], progress[-1]
    faulty, reach = 0.0, a  # the time under some fault within [a, b], overlapping faults counted once
    for start, end in sorted((max(p["start"], a), min(p["end"], b)) for p in periods):
        if end > max(start, reach):
            faulty += end - max(start, reach)
            reach = end
    span = (b - a) - faulty
    return len(healthy) / span if span > 1e-9 else None


def recovery(progress: list[float], periods: list[dict], t1: float, *, done: bool = False) -> list[dict]:
    """For each fault period: how long after its heal progress got back to half its healthy rate.

    The recovery moment is the first progress event ``e`` at or after the heal
    from which the progress over a sliding window ``[e, e + W]`` reaches half
    the :func:`healthy_rate` in each half of the window (so a lone event just
    before the rate picks up is not the moment; ``W`` holds
    :data:`WINDOW_EVENTS` events at that half rate, at least 1 s). A window
    that runs past the end of the log is not judged - unless the run was
    ``done`` and its work ran out: then the window
    ends at the last progress event (and a fault healed after the last
    progress event has nothing to recover). Returns per period ``{recovery_s,
    recovered_at, recovery}`` (``recovery``: the same in words); ``recovery_s``
    is None when it did not recover before the run ended (or the next fault),
    was never healed, or there is too little progress to measure a rate.
    """
    progress = sorted(progress)
    rate = healthy_rate(progress, periods)
    last = progress[-1] if progress else None
    out = []
    for p in periods:
        if not p.get("healed", p["end"] < t1):
            out.append({"recovery_s": None, "recovered_at": None, "recovery": "still in force when the run ended"})
            continue
        if p.get("replaced"):
            out.append({"recovery_s": None, "recovered_at": None, "recovery": "replaced by the next grudge, not healed"})
            continue
        if rate is None:
            out.append({"recovery_s": None, "recovered_at": None,
                        "recovery": f"not measured: too little progress outside the faults (under {MIN_PROGRESS} events)"})
            continue
        half = rate / 2.0
        window = max(1.0, WINDOW_EVENTS / half)
        heal = p["end"]
        if done and last is not None and last < heal:
            out.append({"recovery_s": None, "recovered_at": None,
                        "recovery": "nothing to recover: the run's work was done before the heal"})
            continue
        nxt = min((q["start"] for q in periods if q["start"] >= heal and q is not p), default=None)
        found, why = None, "did not recover before the run ended"
        for e in progress[bisect_left(progress, heal):]:
            if nxt is not None and e >= nxt:
                why = f"did not recover before the next fault (at {nxt:.3f})"
                break
            end = e + window
            if done and last is not None and end > last:
                end = last  # the work ran out before the window did
            elif end > t1:
                break  # not enough log left to judge this window
            mid = (e + end) / 2
            need = half * (end - e) / 2
            first = bisect_left(progress, mid) - bisect_left(progress, e)
            second = bisect_right(progress, end) - bisect_left(progress, mid)
            if first >= need and second >= need:
                found = e
                break
        if found is None:
            out.append({"recovery_s": None, "recovered_at": None, "recovery": why})
        else:
            out.append({"recovery_s": round(found - heal, 6), "recovered_at": found,
                        "recovery": f"{found - heal:.3f} s after the heal"})
    return out


def _quantiles(xs: list[float]) -> dict:
    if not xs:
        return {}
    xs = sorted(xs)

    def q(p: float) -> float:
        return round(xs[min(len(xs) - 1, int(p * len(xs)))], 6)
    return {"count": len(xs), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": round(xs[-1], 6)}


def _read_json(f: Path, default):
    try:
        return json.loads(f.read_text()) if f.exists() else default
    except (OSError, ValueError):
        return default


PROBLEM_KINDS = ("runtime.dead_letter", "runtime.decode_error", "transport.bad_frame", "actor.crashed",
                 "transport.peer_down")


def _is_problem(e: dict) -> bool:
    """A problem event; a peer that left cleanly (``transport.peer_down``, reason ``left``) is a goodbye, not one."""
    if e["kind"] not in PROBLEM_KINDS:
        return False
    return not (e["kind"] == "transport.peer_down" and (e.get("fields") or {}).get("reason") == "left")


def make_report(run_dir: str | Path, checkers: list[str] | None = None) -> dict:
    run_dir = Path(run_dir)
    events_file = run_dir / "events.jsonl"
    if not events_file.exists():
        raise FileNotFoundError(f"{run_dir} has no events.jsonl: is it a fleetplane run directory?")
    events = read_events(events_file)
    summary = _read_json(run_dir / "summary.json", {})
    schedule = _read_json(run_dir / "schedule.json", None)
    if not isinstance(schedule, list):
        schedule = None
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
    goodbyes = 0
    for e in events:
        if _is_problem(e):
            per_node.setdefault(e["node"], Counter())[e["kind"]] += 1
        elif e["kind"] == "transport.peer_down":
            goodbyes += 1

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
    ops = fault_ops(events, schedule, t0)
    periods = fault_periods(events, t1, schedule)
    done = summary.get("reason") == "done"
    recoveries = recovery(progress_times, periods, t1, done=done)
    if is_progress is None:
        recoveries = [r if r["recovery_s"] is not None or not r["recovery"].startswith("not measured") else
                      {**r, "recovery": "not measured: the run names no progress event"} for r in recoveries]
    rate = healthy_rate(progress_times, periods)
    availability = []
    for p, r in zip(periods, recoveries):
        span = max(p["end"] - p["start"], 1e-9)
        n = sum(1 for t in progress_times if p["start"] <= t < p["end"])
        availability.append({**p, "duration_s": round(p["end"] - p["start"], 6), "progress": n,
                             "rate_per_s": round(n / span, 3), **r})
    messages = sum((c or {}).get("sent_remote", 0) for c in (n.get("counters") for n in summary.get("nodes", {}).values()) if isinstance(c, dict))
    if not messages:
        messages = kinds.get("net.send", 0)
    topo = _topology(run_dir)
    results = {
        "run": summary,
        "verdicts": verdicts,
        "valid": all(v["status"] != "invalid" for v in verdicts),
        "events": len(events),
        "span": round(t1 - t0, 6),
        "counts": dict(sorted(kinds.items())),
        "per_node": {n: dict(c) for n, c in sorted(per_node.items())},
        "clean_goodbyes": goodbyes,
        "ask_latency_s": _quantiles(latencies),
        "ask_outcomes": dict(outcomes),
        "progress_kind": progress_kind,
        "progress_total": topo.get("run", {}).get("progress_total"),
        "progress": len(progress_times),
        "messages": messages,
        "messages_per_progress": round(messages / len(progress_times), 3) if progress_times and messages else None,
        "fault_ops": [{k: v for k, v in op.items() if k != "ops"} for op in ops],
        "availability": {"healthy_rate_per_s": round(rate, 3) if rate is not None else None,
                         "fault_periods": availability},
    }
    axis = TimeAxis(t0, t1)
    charts = [("Progress", _progress_chart(progress_times, progress_kind, periods, recoveries, axis))]
    states_kind = topo.get("run", {}).get("states")
    if states_kind:
        series = _state_series(events, states_kind)
        if series:
            charts.append((f"Actors per state ({states_kind})",
                           lines_svg(series, periods, t0, t1, y_label=f"actors in each state (from {states_kind} events)")))
    for section in _sections(plugins):
        chart = section.render(events, periods, t0, t1)
        if chart:
            charts.append((section.title, chart))
    (run_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (run_dir / "report.html").write_text(_html(results, schedule, ops, t0, charts), encoding="utf-8")
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
    return _read_json(run_dir / "topology.json", {})


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


def _progress_kind(run_dir: Path) -> str | None:
    return _topology(run_dir).get("run", {}).get("progress")


# -- the shared chart frame ---------------------------------------------------------------------------

CHART_WIDTH = 960  # every chart of a report, in px
PLOT_LEFT = 120  # room for y labels or row labels
PLOT_RIGHT = CHART_WIDTH - 120  # the rest: room for a series legend
BELOW = 46  # under the plot: tick labels, then the fault legend

#: fault kind -> (tint behind the chart, strong colour of its marks, name in the legend)
FAULT_STYLES = {
    "grudge": ("#fbd5d5", "#d73a49", "partition"),
    "link_fault": ("#fbe7b5", "#b08800", "link fault"),
    "kill": ("#e6d4f0", "#6f42c1", "node killed"),
    "pause": ("#d3e4fa", "#1f6feb", "node paused"),
}
_OTHER_FAULT = ("#e4e4e4", "#6a737d", "fault")

_PALETTE = ["#1f6feb", "#d73a49", "#28a745", "#6f42c1", "#e36209", "#17a2b8", "#6a737d", "#b08800"]


def _esc(s: object) -> str:
    return html.escape(str(s), quote=True)


class TimeAxis:
    """The time axis every chart of one report shares: ``t0..t1`` onto the same pixels, the same ticks."""

    width = CHART_WIDTH
    left = PLOT_LEFT
    right = PLOT_RIGHT

    def __init__(self, t0: float, t1: float):
        self.t0, self.t1 = t0, t1
        self.span = max(t1 - t0, 1e-9)

    def x(self, t: float) -> float:
        """The pixel of time ``t`` (clamped to the axis)."""
        return self.left + (min(max(t, self.t0), self.t1) - self.t0) / self.span * (self.right - self.left)

    def ticks(self) -> list[tuple[float, str]]:
        """(time, label) at round steps from 0: at most 12 ticks."""
        raw = self.span / 10
        mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
        step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
        decimals = max(0, -math.floor(math.log10(step) + 1e-9))
        out = []
        k = 0
        while k * step <= self.span + 1e-9:
            out.append((self.t0 + k * step, f"{k * step:.{decimals}f} s"))
            k += 1
        return out


def chart_svg(axis: TimeAxis, periods: list[dict], body: Iterable[str], *, top: int, bottom: int, label: str,
              y_label: str | None = None, y_ticks: Iterable[tuple[float, float]] = ()) -> str:
    """One chart in the report's frame: ``body`` (SVG elements) drawn over the plot area ``top..bottom``.

    The frame adds: the fault periods (a tint behind the body, a coloured
    strip above the plot and the start/end edges drawn over it), tick lines,
    the time axis with its labels, a legend of the fault kinds present, and -
    with ``y_label`` - the y axis label (what is counted), with ``y_ticks``
    its scale (``(value, pixel)`` pairs, e.g. 0, half and the largest value).
    """
    H = bottom + BELOW
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{axis.width}" height="{H}" role="img" '
           f'aria-label="{_esc(label)}" font-family="sans-serif">',
           f'<rect x="0" y="0" width="{axis.width}" height="{H}" fill="#fff"/>']
    marks = []
    for p in periods:
        tint, strong, name = FAULT_STYLES.get(p["kind"], _OTHER_FAULT)
        a, b = axis.x(p["start"]), axis.x(p["end"])
        w = max(1.0, b - a)
        title = f'<title>{_esc(name)}: {_esc(p["label"])} ({p["start"] - axis.t0:.3f}-{p["end"] - axis.t0:.3f} s)</title>'
        out.append(f'<rect x="{a:.1f}" y="{top}" width="{w:.1f}" height="{bottom - top}" fill="{tint}">{title}</rect>')
        marks.append(f'<rect x="{a:.1f}" y="{top - 6}" width="{w:.1f}" height="5" fill="{strong}">{title}</rect>')
        for edge in (a, b) if p.get("healed", True) else (a,):
            marks.append(f'<line x1="{edge:.1f}" y1="{top}" x2="{edge:.1f}" y2="{bottom}" stroke="{strong}" '
                         f'stroke-width="1" stroke-dasharray="3,3"/>')
    ticks = axis.ticks()
    for t, _ in ticks:
        out.append(f'<line x1="{axis.x(t):.1f}" y1="{top}" x2="{axis.x(t):.1f}" y2="{bottom}" stroke="#ececec"/>')
    out.extend(body)
    out.extend(marks)
    out.append(f'<line x1="{axis.left}" y1="{bottom}" x2="{axis.right}" y2="{bottom}" stroke="#333"/>')
    for t, text in ticks:
        out.append(f'<line x1="{axis.x(t):.1f}" y1="{bottom}" x2="{axis.x(t):.1f}" y2="{bottom + 4}" stroke="#333"/>'
                   f'<text x="{axis.x(t):.1f}" y="{bottom + 16}" font-size="11" text-anchor="middle">{text}</text>')
    out.append(f'<text x="{axis.right + 6}" y="{bottom + 16}" font-size="10" fill="#555">time from the first event</text>')
    if y_label:
        out.append(f'<text x="4" y="{top - 10}" font-size="11" fill="#333">{_esc(y_label)}</text>')
    y_ticks = list(y_ticks)
    if y_ticks:
        out.append(f'<line x1="{axis.left}" y1="{top}" x2="{axis.left}" y2="{bottom}" stroke="#333"/>')
        for v, y in y_ticks:
            out.append(f'<line x1="{axis.left - 4}" y1="{y:.1f}" x2="{axis.left}" y2="{y:.1f}" stroke="#333"/>'
                       f'<text x="{axis.left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{v:g}</text>')
    kinds = list(dict.fromkeys(p["kind"] for p in periods))
    if kinds:
        x = axis.left
        out.append(f'<text x="{x}" y="{bottom + 36}" font-size="11" fill="#333">faults:</text>')
        x += 44
        for k in kinds:
            tint, strong, name = FAULT_STYLES.get(k, _OTHER_FAULT)
            out.append(f'<rect x="{x}" y="{bottom + 27}" width="14" height="10" fill="{tint}" stroke="{strong}"/>'
                       f'<text x="{x + 18}" y="{bottom + 36}" font-size="11">{_esc(name)}</text>')
            x += 30 + 7 * len(name)
    out.append("</svg>")
    return "".join(out)


def _step_points(pts: list[tuple[float, float]], x, y, end: float) -> list[tuple[float, float]]:
    """A step line (a count holds until it changes), thinned to what one pixel column can show."""
    out: list[tuple[float, float]] = []
    prev = 0.0
    col: list[float] = []  # values seen in the current pixel column
    cx = None
    for t, v in pts:
        px = round(x(t) * 2) / 2
        if px != cx:
            if col:
                out += [(cx, y(min(col))), (cx, y(max(col))), (cx, y(col[-1]))]
            out.append((px, y(prev)))
            cx, col = px, []
        col.append(v)
        prev = v
    if col:
        out += [(cx, y(min(col))), (cx, y(max(col))), (cx, y(col[-1]))]
    out.append((x(end), y(prev)))
    return out


def lines_svg(series: dict[str, list[tuple[float, float]]], periods: list[dict], t0: float, t1: float, *,
              y_label: str = "count", marks: Iterable[str] = (), height: int = 230) -> str:
    """Step lines of counts over time in the report's frame; the legend (series names) on the right."""
    axis = TimeAxis(t0, t1)
    top, bottom = 34, height - BELOW
    ymax = max((v for pts in series.values() for _, v in pts), default=1) or 1
    head = 0.06 * (bottom - top)  # the largest value sits a little under the plot's top edge

    def y(v: float) -> float:
        return bottom - v / ymax * (bottom - top - head)

    body = []
    for i, (name, pts) in enumerate(sorted(series.items())):
        colour = _PALETTE[i % len(_PALETTE)]
        body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="'
                    + " ".join(f"{a:.1f},{b:.1f}" for a, b in _step_points(pts, axis.x, y, t1)) + '"/>')
        body.append(f'<rect x="{axis.right + 8}" y="{top + 16 * i}" width="12" height="3" fill="{colour}"/>'
                    f'<text x="{axis.right + 24}" y="{top + 16 * i + 5}" font-size="11" fill="{colour}">{_esc(name)}</text>')
    body.extend(marks)
    return chart_svg(axis, periods, body, top=top, bottom=bottom, label=y_label, y_label=y_label,
                     y_ticks=[(0, bottom), (ymax / 2, y(ymax / 2)), (ymax, y(ymax))])


def _progress_chart(progress: list[float], kind: str | None, periods: list[dict], recoveries: list[dict],
                    axis: TimeAxis) -> str:
    """Cumulative progress; after each heal, a bracket to the moment progress recovered."""
    marks = []
    top = 34
    for p, r in zip(periods, recoveries):
        if not p.get("healed", True) or not (r["recovery_s"] is not None or r["recovery"].startswith("did not")):
            continue
        a = axis.x(p["end"])
        if r["recovery_s"] is not None:
            b = axis.x(r["recovered_at"])
            text = f"recovered {r['recovery_s']:.1f} s after the heal"
        else:
            b = axis.right
            text = r["recovery"]
        marks.append(f'<line x1="{a:.1f}" y1="{top + 8}" x2="{max(a + 1, b):.1f}" y2="{top + 8}" stroke="#333" '
                     f'stroke-width="2"/><line x1="{b:.1f}" y1="{top + 3}" x2="{b:.1f}" y2="{top + 13}" stroke="#333" '
                     f'stroke-width="2"/><text x="{min(a + 4, axis.right - 250):.1f}" y="{top + 24}" font-size="11" '
                     f'fill="#333">{_esc(text)}</text>')
    what = kind or "none: the topology names no progress event"
    series = {"progress": [(t, i) for i, t in enumerate(sorted(progress), 1)]} if progress else {}
    return lines_svg(series, periods, axis.t0, axis.t1, y_label=f"progress events so far ({what})", marks=marks)


# -- the page ---------------------------------------------------------------------------------------------

EVIDENCE_ROWS = 20


def _compact(v: object, limit: int = 80) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    s = v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), default=str)
    return s if len(s) <= limit else s[:limit - 3] + "..."


def _is_event(x: object) -> bool:
    return isinstance(x, dict) and "kind" in x and "time" in x


def _event_cells(e: dict, t0: float, prefix: str = "") -> str:
    fields = e.get("fields") or {}
    text = ", ".join(f"{k}={_compact(v)}" for k, v in fields.items()) if isinstance(fields, dict) else _compact(fields)
    if len(text) > 240:
        text = text[:237] + "..."
    try:
        at = f"{float(e['time']) - t0:.3f}"
    except (TypeError, ValueError):
        at = str(e.get("time"))
    who = "/".join(str(e.get(k)) for k in ("node", "actor") if e.get(k) not in (None, ""))
    return (f"<td>{_esc(prefix)}{_esc(at)}</td><td>{_esc(who)}</td><td>{_esc(e.get('kind'))}</td>"
            f"<td><code>{_esc(text)}</code></td>")


def _evidence_rows(item: object, t0: float) -> list[str]:
    """The table rows of one evidence item: an event, or ``{why, <event>...}``, or anything else as text."""
    if _is_event(item):
        return [f"<tr>{_event_cells(item, t0)}</tr>"]
    if isinstance(item, dict):
        events = [(k, v) for k, v in item.items() if _is_event(v)]
        events += [(f"{k}[{i}]", x) for k, v in item.items() if isinstance(v, list) for i, x in enumerate(v)
                   if _is_event(x)]
        rest = {k: v for k, v in item.items() if k != "why" and not _is_event(v)
                and not (isinstance(v, list) and any(_is_event(x) for x in v))}
        head = str(item.get("why", ""))
        extra = ", ".join(f"{k}={_compact(v)}" for k, v in rest.items())
        text = "; ".join(s for s in (head, extra) if s) or "(no description)"
        rows = [f'<tr class="why"><td colspan="4">{_esc(text)}</td></tr>']
        rows += [f'<tr>{_event_cells(e, t0, prefix=f"{k}: ")}</tr>' for k, e in events]
        return rows
    return [f'<tr><td colspan="4">{_esc(_compact(item, 300))}</td></tr>']


def _evidence_html(v: dict, t0: float) -> str:
    items = v.get("evidence") or []
    rows: list[str] = []
    shown = 0
    for item in items:
        more = _evidence_rows(item, t0)
        if rows and len(rows) + len(more) > EVIDENCE_ROWS:
            break
        rows += more
        shown += 1
    left = len(items) - shown
    tail = (f'<tr><td colspan="4">{left} more in results.json</td></tr>' if left else "")
    return (f'<h3 id="evidence-{_esc(v["checker"])}">Evidence: {_esc(v["checker"])}</h3>'
            f'<p class="note">{_esc(v["summary"])}</p>'
            f'<table class="evidence"><tr><th>time (s)</th><th>node/actor</th><th>kind</th><th>fields</th></tr>'
            f'{"".join(rows) or "<tr><td colspan=4>no evidence recorded</td></tr>"}{tail}</table>')


def _evidence_link(v: dict) -> str:
    n = len(v.get("evidence") or [])
    return f'<a href="#evidence-{_esc(v["checker"])}">{n}</a>' if v["status"] == "invalid" else str(n)


def _header(results: dict, schedule: list | None, ops: list[dict], t0: float) -> str:
    run = results.get("run") or {}
    chaos = run.get("chaos") if isinstance(run.get("chaos"), dict) else {}
    mode = run.get("mode")
    mode_text = {"sim": "simulator (virtual seconds)", "real": "real processes"}.get(mode, "mode unknown (no summary.json)")
    seed = chaos.get("seed", run.get("seed"))
    total = results.get("progress_total")
    is_chaos = bool(chaos) or schedule is not None or bool(ops)
    lines = [f"<b>Run</b>: topology {_esc(run.get('topology', '?'))}, {_esc(mode_text)}"
             + (f", seed {_esc(seed)}" if seed is not None and not is_chaos else "")
             + f"; {results['events']} events over {results['span']:.3f} s"
             + (f"; ended: {_esc(run.get('reason'))}" if run.get("reason") else "")
             + f"; progress {results['progress']}{f'/{total}' if total else ''}"
             + (f" ({_esc(results['progress_kind'])})" if results.get("progress_kind") else "") + "."]
    if not is_chaos:
        lines.append("<b>Faults</b>: none - a plain run, no nemesis.")
    else:
        nemesis = chaos.get("nemesis")
        if isinstance(nemesis, list):
            nemesis = ", ".join(map(str, nemesis)) + " (the topology's [[chaos]] entries)"
        if not nemesis:
            named = list(dict.fromkeys(o["name"] for o in ops if o["op"] in ("grudge", "link faults", "kill", "pause")))
            nemesis = (", ".join(named) + " (read from the fault ops)") if named else "unknown"
        steps = ("; ".join(f"<b>{o['at']:.2f} s</b> "
                           + (f"(planned {o['scheduled']:.2f} s after the start) "
                              if abs(o.get("scheduled", o["at"]) - o["at"]) >= 0.05 else "")
                           + f"{_esc(o['op'])}"
                           + (f" ({_esc(o['name'])})" if o["op"] in ("grudge", "link faults") and o["name"] != o["op"]
                              else "") + f": {_esc(o['what'])}"
                           + (f" ({len(o['ops'])} links)" if o["op"] == "link faults" else "") for o in ops)
                 or "none")
        where = ("seconds from the run's start (planned: the log has no nemesis events)"
                 if any(o.get("planned") for o in ops) else "on the charts' time axis")
        lines.append(f"<b>Chaos</b>: nemesis {_esc(nemesis)}"
                     + (f", seed {_esc(seed)}" if seed is not None else "")
                     + f". Fault schedule ({where}): {steps}."
                     + ("" if schedule is not None else " <i>(no schedule.json in this run directory)</i>"))
    alerts = []
    for p in results["availability"]["fault_periods"]:
        name = _esc(p["label"])
        lasted = p["end"] - p["start"]
        if p.get("recovery_s") is not None and p["recovery_s"] > lasted:
            alerts.append(f"After <b>{name}</b> ({lasted:.1f} s, healed at {p['end'] - t0:.2f} s), progress took "
                          f"<b>{p['recovery_s']:.1f} s</b> to get back to half its healthy rate: a stall longer "
                          f"than the fault itself.")
        elif p.get("recovery_s") is None and p.get("healed") and p.get("recovery", "").startswith("did not"):
            alerts.append(f"After <b>{name}</b> (healed at {p['end'] - t0:.2f} s), progress "
                          f"<b>{_esc(p['recovery'])}</b>.")
    bad = [v["checker"] for v in results["verdicts"] if v["status"] == "invalid"]
    verdict = ("All checkers valid or unknown." if not bad
               else f'<b class="bad">INVALID: {_esc(", ".join(bad))}</b> (evidence under the invariants table).')
    return ("".join(f"<p>{x}</p>" for x in lines)
            + "".join(f'<p class="alert">{a}</p>' for a in alerts)
            + f"<p>{verdict}</p>")


def _counts_text(c: dict) -> str:
    return ", ".join(f"{k}: {n}" for k, n in sorted(c.items()))


def _html(results: dict, schedule: list | None, ops: list[dict], t0: float, charts: list[tuple[str, str]]) -> str:
    def rows(pairs) -> str:
        return "".join(f"<tr><td>{_esc(a)}</td><td>{_esc(b)}</td></tr>" for a, b in pairs)

    verdict_rows = "".join(
        f'<tr class="{_esc(v["status"])}"><td>{_esc(v["checker"])}</td><td>{_esc(v["status"])}</td>'
        f'<td>{_esc(v["summary"])}</td><td>{_evidence_link(v)}</td></tr>' for v in results["verdicts"])
    evidence = "".join(_evidence_html(v, t0) for v in results["verdicts"] if v["status"] == "invalid")
    if evidence:
        clock = f" (the log's own clock read {t0:.6f} there; checker summaries use the log's clock)" if t0 else ""
        evidence = (f'<p class="note">Evidence of each invalid checker (at most {EVIDENCE_ROWS} rows each). '
                    f'Times are seconds from the first event, as on the charts{_esc(clock)}.</p>' + evidence)
    run = results.get("run") or {}
    title = _esc(f'{run.get("topology", "run")} ({run.get("mode", "?")})')
    ask = results["ask_latency_s"]
    healthy = results["availability"]["healthy_rate_per_s"]
    figures = [("ask latency (s)", ", ".join(f"{k} {v}" for k, v in ask.items()) if ask else "no traced asks"),
               ("ask outcomes", _counts_text(results["ask_outcomes"]) or "-"),
               ("messages per progress event", results["messages_per_progress"] if results["messages_per_progress"] is not None else "-"),
               ("healthy progress rate (/s, outside faults, first to last progress event)",
                healthy if healthy is not None else "too little progress to measure")]
    fault_rows = "".join(
        f'<tr><td>{_esc(p["label"])}</td><td>{p["start"] - t0:.3f}</td><td>{p["end"] - t0:.3f}'
        f'{"" if p.get("healed", True) else " (never healed)"}</td><td>{p["end"] - p["start"]:.3f}</td>'
        f'<td>{p["progress"]}</td><td>{p["rate_per_s"]}</td>'
        f'<td{" class=slow" if p.get("recovery_s") is not None and p["recovery_s"] > p["end"] - p["start"] else ""}>'
        f'{_esc(p.get("recovery", "-"))}</td></tr>'
        for p in results["availability"]["fault_periods"]) or '<tr><td colspan="7">no faults</td></tr>'
    goodbyes = results.get("clean_goodbyes", 0)
    problems = (rows((n, _counts_text(c)) for n, c in results["per_node"].items()) or "<tr><td>none</td></tr>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fleetplane report: {title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:{CHART_WIDTH + 40}px}}
table{{border-collapse:collapse;margin:8px 0 20px}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:13px;vertical-align:top}}
tr.invalid td{{background:#fbe0e0}} tr.valid td{{background:#e3f6e3}} tr.unknown td{{background:#f3f3f3}}
tr.why td{{background:#fff4d6;font-weight:600}} table.evidence code{{font-size:12px;word-break:break-all}}
td.slow{{background:#fbe0e0;font-weight:600}} p.alert{{background:#fff4d6;border-left:4px solid #d4a72c;padding:6px 10px}}
.bad{{color:#b31d28}} p.note{{font-size:13px;margin:2px 0}} svg{{display:block}}
h1{{font-size:20px}} h2{{font-size:16px;margin:22px 0 4px}} h3{{font-size:14px;margin:14px 0 2px}}</style></head>
<body><h1>fleetplane report: {title}</h1>
{_header(results, schedule, ops, t0)}
{"".join(f"<h2>{_esc(name)}</h2>{chart}" for name, chart in charts)}
<h2>Invariants</h2><table><tr><th>checker</th><th>verdict</th><th>summary</th><th>evidence</th></tr>{verdict_rows}</table>
{evidence}
<h2>Figures</h2><table>{rows(figures)}</table>
<h2>Availability per fault period</h2><table><tr><th>fault</th><th>from (s)</th><th>to (s)</th><th>lasted (s)</th>
<th>progress during</th><th>rate during (/s)</th><th>recovery to half the healthy rate</th></tr>
{fault_rows}</table>
<h2>Problems per node</h2><table><tr><th>node</th><th>problem events</th></tr>{problems}</table>
<p class="note">Not counted: {goodbyes} clean goodbye{"s" if goodbyes != 1 else ""} (transport.peer_down with reason "left", a peer shutting down).</p>
<h2>Events by kind</h2><table>{rows(results["counts"].items())}</table>
</body></html>
"""
