"""``fleetplane deps coldstart TOPOLOGY``: a seeded cold-start simulation, naive or planned.

How this works
--------------
``--mode planned`` runs the topology as written (the manager carries out its
plan); ``--mode naive`` runs the same agents without a manager, each starting
every service at power-on and holding it until its hard dependencies are up,
with a systemd-like start timeout (``--start-timeout``, default 6 s: the 90 s
of systemd scaled like the topology's start times) and a retry
``--retry-after`` later, forever. ``--mode both`` (the default) runs naive
then planned. Each run is a normal simulator run directory (events.jsonl,
summary.json, results.json, report.html); the command prints, per mode,
services up and never up, the time the last service came up (or that the run
gave up), that time over the critical-path lower bound, and the deadlocks.
Exit 0 when the planned run brought every service up (and, with both modes,
the naive one did not: the comparison the topology exists to show).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import attrs

from protocols.deps.graph import DepGraph, Dependency, Service, plan
from topologies.model import Topology

__all__ = ["coldstart_figures", "graph_of_topology", "naive_topology", "cmd_coldstart", "setup_coldstart"]

AGENT, MANAGER = "deps.agent", "deps.manager"


def graph_of_topology(topo: Topology) -> DepGraph:
    """The dependency graph the topology's agents will report (for the critical-path lower bound)."""
    g = DepGraph()
    for n in topo.nodes:
        for a in n.actors:
            if a.kind != AGENT:
                continue
            p = a.params
            for s in p.get("services", []):
                g.report(Service(s["name"], asset=p.get("asset", n.name), failure_domain=p.get("failure_domain", ""),
                                 region=p.get("region", ""), bootstrap=bool(s.get("bootstrap", False)),
                                 priority=int(s.get("priority", 0)), start_time=float(s.get("start_time", 1.0)),
                                 functions=tuple(s.get("functions", ())),
                                 restarted_by=tuple(s.get("restarted_by", ()))),
                         [Dependency(s["name"], d, "hard") for d in s.get("hard", [])]
                         + [Dependency(s["name"], d, "conditional", c) for d, c in s.get("conditional", {}).items()]
                         + [Dependency(s["name"], d, "order") for d in s.get("order", []) if d not in s.get("hard", [])])
    return g


def naive_topology(topo: Topology, start_timeout: float = 6.0, retry_after: float = 1.0) -> Topology:
    """The same assets without a manager: every service at power-on, start timeout and retry (systemd-like)."""
    nodes = []
    for n in topo.nodes:
        actors = tuple(attrs.evolve(a, params={**a.params, "manager": "", "autostart": True,
                                                "start_timeout": start_timeout, "retry_after": retry_after})
                       for a in n.actors if a.kind == AGENT)
        if actors:
            nodes.append(attrs.evolve(n, actors=actors))
    run = attrs.evolve(topo.run, done=None, must_judge=())
    return attrs.evolve(topo, name=f"{topo.name}-naive", nodes=tuple(nodes), run=run)


def coldstart_figures(events: list[dict], lower_bound: float) -> dict[str, Any]:
    """Services up / never up, the last first-up time, deadlocks, from one run's events."""
    services: set[str] = set()
    first_up: dict[str, float] = {}
    last: dict[str, str] = {}
    t_end = 0.0
    for e in events:
        t_end = max(t_end, e.get("time", 0.0))
        k, f = e.get("kind"), e.get("fields") or {}
        if k == "deps.agent_start":
            services |= set(f.get("services", []))
        elif k == "deps.service":
            s = f.get("service", "")
            last[s] = f.get("state", "")
            if f.get("state") == "up":
                first_up.setdefault(s, e["time"])
    never = sorted(s for s in services if s not in first_up)
    not_up_at_end = sorted(s for s in services if last.get(s) != "up")
    all_up = [e["time"] for e in events if e.get("kind") == "deps.all_up"]
    makespan = all_up[0] if all_up else (max(first_up.values()) if not never and first_up else None)
    return {
        "services": len(services), "up": len(services) - len(never), "never_up": never,
        "not_up_at_end": not_up_at_end, "last_up_s": max(first_up.values(), default=None),
        "makespan_s": makespan, "gave_up_at_s": None if makespan is not None else round(t_end, 6),
        "lower_bound_s": lower_bound,
        "makespan_ratio": round(makespan / lower_bound, 4) if makespan is not None and lower_bound else None,
        "deadlocks_detected": sum(1 for e in events if e.get("kind") == "deps.deadlock_detected"),
        "timeouts": sum(1 for e in events if e.get("kind") == "deps.service"
                        and str((e.get("fields") or {}).get("reason", "")).startswith("timeout")),
    }


def setup_coldstart(p: argparse.ArgumentParser) -> None:
    p.add_argument("topology", help="a topology of deps.agent (and deps.manager) actors, e.g. topologies/coldstart.toml")
    p.add_argument("--mode", choices=("naive", "planned", "both"), default="both",
                   help="naive: no manager, everything at once with start timeout and retry; planned: the manager's "
                        "plan; both (default): naive, then planned")
    p.add_argument("--seed", type=int, help="simulator seed (default: the topology's)")
    p.add_argument("--duration", type=float, default=60.0, help="virtual seconds per run at most (default 60)")
    p.add_argument("--start-timeout", type=float, default=6.0, help="naive: seconds a start may take (default 6)")
    p.add_argument("--retry-after", type=float, default=1.0, help="naive: seconds before a failed start is retried")
    p.add_argument("--out", default="runs", help="parent folder of the run directories (default ./runs)")
    p.add_argument("-q", "--quiet", action="store_true", help="no live progress")


def cmd_coldstart(args: argparse.Namespace) -> int:
    import json

    from topologies.cli import _load, run_dir_for
    from topologies.launcher import run_sim
    from topologies.report import make_report

    topo = _load(args.topology)
    if topo is None:
        return 2
    if not any(a.kind == AGENT for n in topo.nodes for a in n.actors):
        print(f"fleetplane deps coldstart: {args.topology} has no {AGENT} actors", flush=True)
        return 2
    seed = args.seed if args.seed is not None else topo.seed
    bound = plan(graph_of_topology(topo)).makespan
    modes = ["naive", "planned"] if args.mode == "both" else [args.mode]
    figures = {}
    for mode in modes:
        t = naive_topology(topo, args.start_timeout, args.retry_after) if mode == "naive" else topo
        run_dir = run_dir_for(args.out, f"{topo.name}-{mode}-sim")
        print(f"[{mode}] {len(t.addresses())} actors, seed {seed}, up to {args.duration:g} virtual s; "
              f"run directory {run_dir}", flush=True)
        result = run_sim(t, run_dir, seed, duration=args.duration, quiet=args.quiet)
        report = make_report(run_dir)
        from actors.eventlog import read_events
        fig = coldstart_figures(read_events(run_dir / "events.jsonl"), bound)
        fig["verdicts"] = {v["checker"]: v["status"] for v in report["verdicts"] if v["status"] != "unknown"}
        fig["run_dir"] = str(run_dir)
        figures[mode] = fig
        done = (f"every service up after {fig['makespan_s']:.3f} s = {fig['makespan_ratio']} x the critical path "
                f"({bound:g} s)") if fig["makespan_s"] is not None else \
            (f"{len(fig['never_up'])} of {fig['services']} services never up ({', '.join(fig['never_up'])}); "
             f"gave up at {fig['gave_up_at_s']:g} s")
        print(f"[{mode}] {done}; {fig['timeouts']} start timeouts, {fig['deadlocks_detected']} deadlocks detected",
              flush=True)
        for name, status in fig["verdicts"].items():
            print(f"[{mode}]   {status.upper():8} {name}")
        print(f"[{mode}] report: {run_dir / 'report.html'}", flush=True)
    (Path(figures[modes[-1]]["run_dir"]) / "coldstart.json").write_text(json.dumps(figures, indent=1))
    ok = "planned" not in figures or figures["planned"]["makespan_s"] is not None
    if "naive" in figures and "planned" in figures:
        ok = ok and bool(figures["naive"]["never_up"])
    print(json.dumps({m: {k: f[k] for k in ("up", "never_up", "makespan_s", "makespan_ratio", "gave_up_at_s")}
                      for m, f in figures.items()}))
    return 0 if ok else 1
