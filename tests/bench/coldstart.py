"""Benchmark: dependency-aware startup (issue 19): planning time, cold-start makespan, deadlock detection.

How this works
--------------
One run, four figures, each beside its baseline from the same run:

* ``plan_10k_s``: :func:`protocols.deps.graph.plan` on a generated graph of
  ``--services`` (10,000) services and ``--edges`` (50,000) dependencies: a
  random layered DAG (each service depends on earlier ones; 80 % hard, 10 %
  optional pull-ins, 10 % order) plus ``--cycles`` (40) back edges closing small
  cycles, each through a member that can start in bootstrap mode (an
  unbreakable cycle would block nearly everything above it in so deep a
  graph; tickets are covered by the unit tests); best of ``--repeat``
  (3). Baseline: bare ``networkx.topological_generations`` over the
  condensation of the same graph (what any wave planner must at least do),
  and ``problems_10k_s`` (cycles, risks, priority inversions) beside it.
* ``coldstart_makespan_ratio``: ``topologies/coldstart.toml`` in the simulator,
  planned: the time every service is up over the critical-path lower bound.
* ``naive_never_up``: the same assets with no manager, everything at power-on
  with a 6 s start timeout and 1 s retry (systemd's 90 s scaled like the
  topology's start times), ``--naive-for`` (120) virtual seconds: services never
  up, and ``naive_gave_up_s``.
* ``deadlock_detect_s``: dns and access-control stopped and started at once in
  a planned run (each waits on the other): virtual seconds from the cycle of
  waits forming (the second ``waiting`` status) to ``deps.deadlock_detected``;
  against the 90 s a systemd start timeout would take, and the 6 s of the
  naive run here. ``deadlock_fixed_s``: detection to ``deps.deadlock_resolved``.
* ``restart_makespan_s``: the planned cold start with the manager crashed at
  2.5 s and a new incarnation started 1 s later (resuming from its durable
  record), beside ``coldstart_makespan_s`` (no crash): what a manager restart
  costs the start.
* ``region_isolated_detect_s`` / ``region_down_detect_s``: virtual seconds from
  regions r1 and r2 being cut from each other (the manager reaching both) to
  ``region r2 isolated`` being detected, and from r2's two assets being killed
  to ``region r2 down``; against their stated bounds (the agents' silent_after
  + report_every + detect_after + a tick; detect_after + a tick).

Run: ``.venv/bin/python tests/bench/coldstart.py``. The last line is a JSON
object of the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import networkx as nx  # noqa: E402

from actors.eventlog import EventLog  # noqa: E402
from protocols.deps.graph import DepGraph, Dependency, Service, check_plan, plan, problems  # noqa: E402
from protocols.deps.messages import Act  # noqa: E402
from topologies.deps.coldstart import coldstart_figures, graph_of_topology, naive_topology  # noqa: E402
from topologies.launcher import build_simulator  # noqa: E402
from topologies.loader import load_topology  # noqa: E402
from topologies.plugin import load_plugins  # noqa: E402


def big_graph(n: int, m: int, cycles: int, seed: int) -> DepGraph:
    rng = random.Random(seed)
    g = DepGraph()
    for i in range(n):
        g.add_service(Service(f"s{i}", failure_domain=f"fd{i % 50}", region=f"r{i % 2}", priority=rng.randint(0, 9),
                              bootstrap=rng.random() < 0.2, start_time=rng.choice([0.5, 1.0, 2.0]),
                              restarted_by=(f"s{rng.randrange(max(i, 1))}",) if i and rng.random() < 0.05 else ()))
    seen = set()
    while len(seen) < m - cycles:
        a = rng.randrange(1, n)
        b = a - 1 - int(rng.expovariate(1 / 200)) % a  # mostly recent services: deep layered graph
        if (a, b) in seen:
            continue
        seen.add((a, b))
        r = rng.random()
        kind = "hard" if r < 0.8 else ("conditional" if r < 0.9 else "order")
        g.add_dependency(Dependency(f"s{a}", f"s{b}", kind))
    edges = sorted(seen)
    for k in range(cycles):
        a, b = edges[rng.randrange(len(edges))]
        g.add_dependency(Dependency(f"s{b}", f"s{a}", "hard"))  # a back edge: a cycle through a -> b
        old = g.services[f"s{b}"]
        g.add_service(Service(old.name, failure_domain=old.failure_domain, region=old.region, priority=old.priority,
                              bootstrap=True, start_time=old.start_time, restarted_by=old.restarted_by))
    return g


def time_best(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


FACTORIES: dict = {}


def simulate(topo, seed: int, until: float, setup=None) -> list[dict]:
    log = EventLog()
    sim, factories = build_simulator(topo, seed, log)
    FACTORIES.clear()
    FACTORIES.update(factories)
    if setup:
        setup(sim)
    sim.run(until=until)
    return log.events()


def main(argv: list[str]) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, default=10_000)
    ap.add_argument("--edges", type=int, default=50_000)
    ap.add_argument("--cycles", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--naive-for", type=float, default=120.0)
    args = ap.parse_args(argv)
    load_plugins()
    fig: dict = {}

    print(f"[plan] generating {args.services} services, {args.edges} dependencies, {args.cycles} back edges ...",
          flush=True)
    g = big_graph(args.services, args.edges, args.cycles, args.seed)
    gg = g.graph()

    def bare():
        c = nx.condensation(gg)
        return list(nx.topological_generations(c))

    base_s, gens = time_best(bare, args.repeat)
    plan_s, p = time_best(lambda: plan(g), args.repeat)
    prob_s, probs = time_best(lambda: problems(g, p), 1)
    errs = check_plan(g, p)
    fig.update(plan_10k_s=round(plan_s, 3), toposort_10k_s=round(base_s, 4), plan_over_toposort=round(plan_s / base_s, 1),
               problems_10k_s=round(prob_s, 3))
    print(f"[plan] bare condensation + topological_generations: {base_s:.4f} s ({len(gens)} generations)")
    print(f"[plan] plan(): {plan_s:.3f} s ({plan_s / base_s:.1f} x the bare sort): {len(p.waves)} waves, "
          f"{len(p.workflows)} remedial workflows, {len(p.tickets)} tickets, {len(p.blocked)} blocked, "
          f"{len(p.steps)} steps, critical path {p.makespan:g} s; check_plan: {len(errs)} problems")
    print(f"[plan] problems(): {prob_s:.3f} s, {len(probs)} problems", flush=True)

    topo = load_topology(ROOT / "topologies" / "coldstart.toml")
    bound = plan(graph_of_topology(topo)).makespan
    ev = simulate(topo, args.seed, 30.0)
    planned = coldstart_figures(ev, bound)
    fig["coldstart_makespan_ratio"] = planned["makespan_ratio"]
    fig["coldstart_makespan_s"] = round(planned["makespan_s"], 3) if planned["makespan_s"] else None
    fig["critical_path_s"] = bound
    print(f"[coldstart] planned: all {planned['up']} services up after {planned['makespan_s']:.3f} s; critical path "
          f"{bound:g} s; ratio {planned['makespan_ratio']}", flush=True)

    ev = simulate(naive_topology(topo, 6.0, 1.0), args.seed, args.naive_for)
    naive = coldstart_figures(ev, bound)
    fig["naive_never_up"] = len(naive["never_up"])
    fig["naive_gave_up_s"] = naive["gave_up_at_s"]
    fig["naive_timeouts"] = naive["timeouts"]
    print(f"[coldstart] naive: {len(naive['never_up'])} of {naive['services']} services never up in "
          f"{args.naive_for:g} s ({naive['timeouts']} start timeouts): {', '.join(naive['never_up'])}", flush=True)

    def inject(sim):
        sim.schedule(15.0, lambda: [sim.send("r1-net/agent", Act("stop", "dns")),
                                    sim.send("r1-sec/agent", Act("stop", "access-control"))])
        sim.schedule(15.01, lambda: [sim.send("r1-net/agent", Act("start", "dns")),
                                     sim.send("r1-sec/agent", Act("start", "access-control"))])
    ev = simulate(topo, args.seed, 40.0, inject)
    waits = sorted(e["time"] for e in ev if e["kind"] == "deps.service" and e["time"] >= 15.0
                   and e["fields"]["state"] == "waiting" and e["fields"]["service"] in ("dns", "access-control"))
    formed = waits[1] if len(waits) >= 2 else None
    det = next((e for e in ev if e["kind"] == "deps.deadlock_detected"), None)
    res = next((e for e in ev if e["kind"] == "deps.deadlock_resolved"), None)
    fig["deadlock_detect_s"] = round(det["time"] - formed, 3) if det and formed is not None else None
    fig["deadlock_fixed_s"] = round(res["time"] - det["time"], 3) if det and res else None
    fig["systemd_start_timeout_s"] = 90.0
    print(f"[deadlock] cycle of waits formed at {formed}; detected {fig['deadlock_detect_s']} s later "
          f"(a systemd start timeout: 90 s; the naive run here: 6 s, then retries forever); resolved "
          f"{fig['deadlock_fixed_s']} s after detection", flush=True)
    def crash_manager(sim):
        sim.schedule(2.5, lambda: sim.crash("mgr/manager"))
        sim.schedule(3.5, lambda: sim.restart("mgr/manager", FACTORIES["mgr/manager"]()))
    ev = simulate(topo, args.seed, 30.0, crash_manager)
    restarted = coldstart_figures(ev, bound)
    fig["restart_makespan_s"] = round(restarted["makespan_s"], 3) if restarted["makespan_s"] else None
    print(f"[restart] manager crashed at 2.5 s, back at 3.5 s: every service up after {fig['restart_makespan_s']} s "
          f"(no crash: {fig['coldstart_makespan_s']} s)", flush=True)

    r1 = ["r1-net", "r1-sec", "r1-stor", "r1-ctl", "r1-obs"]
    r2 = ["r2-net", "r2-api"]

    def cut(sim):
        sim.schedule(12.0, lambda: [sim.cut(a, b) or sim.cut(b, a) for a in r1 for b in r2])
        sim.schedule(20.0, sim.heal)
    ev = simulate(topo, args.seed, 25.0, cut)
    iso = next((e for e in ev if e["kind"] == "deps.condition" and e["fields"]["holds"]), None)
    fig["region_isolated_detect_s"] = round(iso["time"] - 12.0, 3) if iso else None
    mgr = topo.node("mgr").actors[0].params
    agent = next(a.params for n in topo.nodes for a in n.actors if a.kind == "deps.agent")
    iso_bound = 3 * agent["report_every"] + agent["report_every"] + mgr["detect_after"] + mgr["tick_interval"]
    import attrs
    nodes = tuple(attrs.evolve(n, actors=tuple(attrs.evolve(a, params={**a.params, "remediations": [
        {"id": "r2-gone", "action": "restart", "service": "monitoring", "when": "conditional",
         "condition": "region r2 down"}]}) if a.kind == "deps.manager" else a for a in n.actors)) for n in topo.nodes)

    def kill_r2(sim):
        sim.schedule(12.0, lambda: [sim.crash(f"{a}/agent") for a in r2])
    ev = simulate(attrs.evolve(topo, nodes=nodes), args.seed, 20.0, kill_r2)
    down = next((e for e in ev if e["kind"] == "deps.condition" and e["fields"]["holds"]), None)
    fig["region_down_detect_s"] = round(down["time"] - 12.0, 3) if down else None
    print(f"[conditions] region r2 isolated detected {fig['region_isolated_detect_s']} s after the cut (bound "
          f"{iso_bound:g} s + delivery); region r2 down {fig['region_down_detect_s']} s after its assets died "
          f"(bound {mgr['detect_after'] + mgr['tick_interval']:g} s after their last message)", flush=True)
    print(json.dumps(fig))
    return fig


if __name__ == "__main__":
    main(sys.argv[1:])
