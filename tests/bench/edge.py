"""Benchmark: local control planes in the simulator - isolation -> full temporary plan, heal -> ratified plan.

How this works
--------------
For 8, 32 and 128 edge nodes (``--sizes``) and several seeds (``--seeds``,
default 5; 2 with ``--quick``) the harness ``tests/localplane_sim.py`` builds
a manager and N edge nodes with random profiles (latency uniform 1-5 ms, no
loss), partitions the manager away at t = 1 s and heals at t = 4 s. From the
event log:

* **isolation -> plan**: from the first ``edge.isolation_declared`` to the
  leader's first ``plane.plan_complete`` (virtual seconds);
* **heal -> final**: from the heal to the manager's ``manager.plan_final``,
  and whether it ratified the temporary plan or replaced it;
* **messages per role**: negotiation messages (proposals, answers,
  withdrawals) per role assigned in the first plan, and every message sent
  between isolation detection and the plan (election, site queries, fit
  reports, negotiation, beats) per role.
* **merge** (32 nodes, or the smallest size above 8): the manager is cut
  off and the edges split in two halves at t = 1 s, the halves reconnect at
  t = 3 s with the manager still away; from the reconnect until one leader
  is left, every node follows it and every isolated role share is held under
  its plan and no other (``merge_p50_s``, goal <= 1 s).

* **clients and gaps** (same size as the merge): the site's simulated clients
  (``SiteClients``, a request per role every 0.1 s) through an outage (cut off
  at 1 s, healed at 4 s): the share of ``store`` requests served from 0.1 s
  after the temporary plan is complete until the heal
  (``client_success_during_outage``, goal >= 0.99); and with 30 % loss on
  every link (the manager's and inside the site) through the same outage, the
  longest time a node's island had no holder of a service role
  (``holderless_max_s_loss30``, the ``holderless-gap`` checker's measure, goal
  <= 2 s).

The invariant checkers of ``topologies/edge/checks.py`` run on every log; a
violation is printed. The timeout settings used are printed first.

**Real processes** (``--real-sizes``, default 8 and 32; ``--no-real`` skips
them): a topology is generated (:func:`real_topology`): the manager in its
own process, the N edge nodes over ZeroMQ on 127.0.0.1 - one process per
edge node up to 8 nodes, else 8 processes hosting N/8 edge-node actors each
(33 Python processes are too many for a 2-core machine; the output says how
they were hosted). The chaos harness (:func:`topologies.chaos.run_chaos`)
runs it and isolates the manager ``--cycles`` times (the ``one`` nemesis:
a control node sends every node its ``SetFaults`` plan through the
transport's fault hooks, then an empty plan to heal). From the merged event
log, per cycle: from the first ``edge.isolation_declared`` to the leader's
``plane.plan_complete``, and from the heal to the manager's
``manager.plan_final`` (ratified or replaced), plus negotiation messages per
role. The edge checkers judge each run.

The last line is one JSON object: ``isolation_to_plan_p50_s`` and
``heal_to_ratified_p50_s`` (32 nodes, real processes; the heal figure over the
cycles whose plan was ratified), ``msgs_per_role`` (32 nodes, simulated, as
before; ``msgs_per_role_real`` from the real runs), the simulated keys
``isolation_to_plan_sim_p50_s`` / ``heal_to_ratified_sim_p50_s``, and per-size
details under ``sizes`` and ``real``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parents[1]))

from protocols.localplane import DeploymentManager, EdgeNode  # noqa: E402
from tests.localplane_sim import build_edge  # noqa: E402
from topologies.edge.checks import (  # noqa: E402
    ClientsSingleHolder,
    GovernanceApplied,
    HolderlessGap,
    OneLeaderPerIslandTerm,
    PlanHolders,
    RatifiedAfterHeal,
    check_holderless_gaps,
)

ISOLATE_AT = 1.0
HEAL_AT = 4.0
END = 6.0


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


MERGE_SPLIT = 1.0
MERGE_JOIN = 3.0
MERGE_END = 5.0
ISOLATED_ROLES = {"leader", "validator", "reporter", "store", "frontend"}


def merge_run(seed: int, n: int) -> dict:
    """Two islands of one site reconnect while the manager is away: seconds until they are one plane."""
    from protocols.localplane import PlaneRole

    s = build_edge(seed, n)
    nodes = [e.partition("/")[0] for e in s.edges]
    a, b = nodes[: n // 2], nodes[n // 2:]
    s.sim.schedule(MERGE_SPLIT, lambda: s.sim.partition([["mgr"], a, b]))
    s.sim.schedule(MERGE_JOIN, lambda: s.sim.partition([["mgr"], a + b]))
    s.run(MERGE_END)
    events = s.events()
    leaders = [e for e in s.edges if s.edge(e).role is PlaneRole.LEADER]
    if len(leaders) != 1 or any(s.edge(e).leader != leaders[0] for e in s.edges):
        return {"merge": None, "leaders": len(leaders)}
    plan = s.edge(leaders[0]).plan_id
    held: dict[tuple[str, str], dict] = {}
    since = None
    for e in events:
        k, f = e["kind"], e.get("fields") or {}
        if k == "edge.role_assigned":
            held[(e["node"], f["key"])] = f
        elif k == "edge.role_relinquished":
            held.pop((e["node"], f["key"]), None)
        else:
            continue
        roles = {f["role"] for f in held.values() if f["plan_id"] == plan}
        one = all(f["plan_id"] == plan for f in held.values()) and ISOLATED_ROLES <= roles
        since = (since if since is not None else e["time"]) if one else None
    bad = [c.name for c in (OneLeaderPerIslandTerm(), PlanHolders(), GovernanceApplied())
           if c.check(events).status == "invalid"]
    return {"merge": None if since is None else max(0.0, since - MERGE_JOIN), "leaders": 1, "violations": bad}


def served_run(seed: int, n: int, loss: float = 0.0) -> dict:
    """An outage with the site's clients (``loss`` on every link): store requests served while the temporary plan is
    in force, the longest holderless gap, and the checkers' verdicts."""
    s = build_edge(seed, n, loss=loss, clients={"every": 0.1, "timeout": 0.05})
    s.sim.schedule(ISOLATE_AT, s.isolate)
    s.sim.schedule(HEAL_AT, s.heal)
    s.run(END + 2.0)
    events = s.events()
    plan = next((e["time"] for e in events if e["kind"] == "plane.plan_complete" and e["time"] < HEAL_AT), None)
    reqs = [e["fields"] for e in events if e["kind"] == "client.request" and e["fields"]["role"] == "store"
            and plan is not None and plan + 0.1 <= e["fields"]["sent"] < HEAL_AT]
    served = sum(1 for f in reqs if f["outcome"] == "served")
    gaps = check_holderless_gaps(events, bound=1e9)
    bad = [f"{c.name}: {v.summary}" for c in (OneLeaderPerIslandTerm(), PlanHolders(), GovernanceApplied(),
                                               HolderlessGap(), ClientsSingleHolder())
           if (v := c.check(events)).status == "invalid"]
    return {"served": served, "requests": len(reqs), "gap_max": gaps["longest"], "violations": bad}


def one_run(seed: int, n: int) -> dict:
    s = build_edge(seed, n)
    sim = s.sim
    sim.schedule(ISOLATE_AT, s.isolate)
    sim.schedule(HEAL_AT, s.heal)
    detected_sent = plan_sent = None
    step = 0.005
    while sim.now < END:
        sim.run(until=min(END, sim.now + step))
        if detected_sent is None or plan_sent is None:
            kinds = {e["kind"] for e in s.of("edge.isolation_declared", ISOLATE_AT) + s.of("plane.plan_complete", ISOLATE_AT)}
            if detected_sent is None and "edge.isolation_declared" in kinds:
                detected_sent = sim.network.sent
            if plan_sent is None and "plane.plan_complete" in kinds:
                plan_sent = sim.network.sent
    events = s.events()
    det = min(e["time"] for e in events if e["kind"] == "edge.isolation_declared")
    plan = next(e for e in events if e["kind"] == "plane.plan_complete")
    final = next((e for e in events if e["kind"] == "manager.plan_final" and e["time"] >= HEAL_AT), None)
    roles = max(1, plan["fields"]["roles"])
    bad = []
    for c in (OneLeaderPerIslandTerm(), PlanHolders(), GovernanceApplied(), RatifiedAfterHeal(bound=1.0),
              HolderlessGap()):
        v = c.check(events)
        if v.status == "invalid":
            bad.append(f"{c.name}: {v.summary}")
    return {
        "iso_to_plan": plan["time"] - det,
        "heal_to_final": None if final is None else final["time"] - HEAL_AT,
        "ratified": bool(final and final["fields"]["ratified"]),
        "neg_msgs_per_role": plan["fields"]["negotiation_msgs"] / roles,
        "all_msgs_per_role": ((plan_sent or 0) - (detected_sent or 0)) / roles,
        "unfilled": len(plan["fields"]["unfilled"]),
        "violations": bad,
    }


# -- real processes ------------------------------------------------------------------------------------

REAL_EDGE = {"heartbeat_interval": 0.1, "isolation_after": 0.5, "gather_window": 0.1, "election_timeout": 0.4,
             "fit_timeout": 0.1, "proposal_timeout": 0.1, "leader_lease": 0.5}
REAL_MANAGER = {"heartbeat_interval": 0.1, "isolation_after": 0.5, "fit_timeout": 0.1, "proposal_timeout": 0.1,
                "reconcile_wait": 0.3, "release_timeout": 0.3}
REAL_TRANSPORT = {"heartbeat": 0.1, "liveness": 10}
MAX_PROCESSES = 8  # edge-node processes; above this many edge nodes, several share a process
CYCLE = {"start": 2.0, "duration": 2.0, "interval": 4.0}


def real_topology(n: int, seed: int = 1):
    """A manager process and ``n`` edge nodes over at most MAX_PROCESSES processes (random profiles)."""
    import random

    from tests.localplane_sim import DEFAULT_INTENT, random_profile
    from topologies.model import ActorSpec, NodeSpec, RunSpec, Topology, TransportSpec

    procs = min(n, MAX_PROCESSES)
    fleet = random.Random(f"{seed}/fleet")
    hosts: list[list[ActorSpec]] = [[] for _ in range(procs)]
    edges = []
    for i in range(n):
        h = i % procs
        name = "edge" if n <= procs else f"edge{i // procs}"
        hosts[h].append(ActorSpec(name, "localplane.edge", {"manager": "mgr/manager", **random_profile(fleet), **REAL_EDGE}))
        edges.append(f"h{h}/{name}")
    mgr = ActorSpec("manager", "localplane.manager", {"edges": edges, "intent": DEFAULT_INTENT, **REAL_MANAGER})
    nodes = (NodeSpec("mgr", actors=(mgr,)),) + tuple(NodeSpec(f"h{h}", actors=tuple(a)) for h, a in enumerate(hosts))
    # no done condition and a short duration: the chaos run lasts its schedule plus the recovery
    return Topology(f"edge-bench-{n}", seed=seed, run=RunSpec(duration=1.0), transport=TransportSpec(**REAL_TRANSPORT),
                    nodes=nodes)


def real_run(n: int, cycles: int, seed: int = 1) -> dict:
    """Isolate the manager ``cycles`` times from ``n`` edge nodes as real processes; per-cycle figures."""
    from actors.eventlog import read_events
    from topologies.chaos import run_chaos

    topo = real_topology(n, seed)
    with tempfile.TemporaryDirectory(prefix=f"edge-bench-{n}-") as tmp:
        t0 = time.perf_counter()
        res = run_chaos(topo, Path(tmp), seed, nemesis="one", quiet=True,
                        overrides={"target": "mgr", "repeat": cycles, **CYCLE})
        wall = time.perf_counter() - t0
        events = read_events(Path(tmp) / "events.jsonl")
    bad = [f"{v['checker']}: {v['summary']}" for v in res.verdicts if v["status"] == "invalid"]
    grudges = [e["time"] for e in events if e["kind"] == "nemesis.grudge"]
    heals = [e["time"] for e in events if e["kind"] == "nemesis.heal"]
    out = []
    for k, (g, h) in enumerate(zip(grudges, heals)):
        nxt = grudges[k + 1] if k + 1 < len(grudges) else float("inf")
        det = [e["time"] for e in events if e["kind"] == "edge.isolation_declared" and g <= e["time"] < h]
        plan = next((e for e in events if e["kind"] == "plane.plan_complete" and det and det[0] <= e["time"] < h), None)
        final = next((e for e in events if e["kind"] == "manager.plan_final" and h <= e["time"] < nxt), None)
        out.append({"iso_to_plan": plan["time"] - det[0] if plan else None,
                    "heal_to_final": final["time"] - h if final else None,
                    "ratified": bool(final and final["fields"]["ratified"]),
                    "msgs_per_role": plan["fields"]["negotiation_msgs"] / max(1, plan["fields"]["roles"]) if plan else None,
                    "unfilled": len(plan["fields"]["unfilled"]) if plan else None})
    return {"cycles": out, "violations": bad, "wall": wall, "ok": res.ok,
            "processes": 1 + min(n, MAX_PROCESSES), "per_process": -(-n // min(n, MAX_PROCESSES))}


def real_figures(sizes: list[int], cycles: int) -> dict:
    print(f"real processes (ZeroMQ on 127.0.0.1): edge timeouts {REAL_EDGE}; manager {REAL_MANAGER}; transport "
          f"heartbeat {REAL_TRANSPORT['heartbeat']}s x liveness {REAL_TRANSPORT['liveness']}; the manager isolated "
          f"{cycles}x for {CYCLE['duration']}s every {CYCLE['interval']}s from t={CYCLE['start']}s (nemesis one)")
    fig: dict = {}
    for n in sizes:
        r = real_run(n, cycles)
        cyc = r["cycles"]
        iso = [c["iso_to_plan"] for c in cyc if c["iso_to_plan"] is not None]
        rat = [c["heal_to_final"] for c in cyc if c["ratified"] and c["heal_to_final"] is not None]
        fin = [c["heal_to_final"] for c in cyc if c["heal_to_final"] is not None]
        mpr = [c["msgs_per_role"] for c in cyc if c["msgs_per_role"] is not None]
        hosting = ("one process per edge node" if r["per_process"] == 1
                   else f"{r['processes'] - 1} processes x {r['per_process']} edge-node actors")
        f2 = lambda v: "n/a" if v is None else f"{v:.3f}s"  # noqa: E731
        print(f"{n:4d} nodes real ({hosting}, + manager process): isolation->plan p50 {f2(pct(iso, .5))} "
              f"max {f2(max(iso) if iso else None)}; heal->ratified p50 {f2(pct(rat, .5))} ({len(rat)}/{len(cyc)} "
              f"ratified; heal->final p50 {f2(pct(fin, .5))}); negotiation msgs/role "
              f"{statistics.mean(mpr) if mpr else float('nan'):.1f}; violations {len(r['violations'])}; wall {r['wall']:.1f}s")
        for v in r["violations"][:3]:
            print(f"     VIOLATION {v}")
        fig[f"n{n}"] = {"isolation_to_plan_p50_s": round(pct(iso, .5), 4) if iso else None,
                        "isolation_to_plan_max_s": round(max(iso), 4) if iso else None,
                        "heal_to_ratified_p50_s": round(pct(rat, .5), 4) if rat else None,
                        "heal_to_final_p50_s": round(pct(fin, .5), 4) if fin else None,
                        "ratified": len(rat), "cycles": len(cyc), "msgs_per_role": round(statistics.mean(mpr), 2) if mpr else None,
                        "processes": r["processes"], "edge_actors_per_process": r["per_process"],
                        "violations": len(r["violations"])}
    return fig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="8,32,128")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per size (default 5; 2 with --quick)")
    ap.add_argument("--quick", action="store_true", help="2 seeds per simulated size, 2 isolation cycles per real size")
    ap.add_argument("--real-sizes", default="8,32", help="edge nodes as real processes (default 8,32)")
    ap.add_argument("--cycles", type=int, default=None, help="isolations per real size (default 5; 2 with --quick)")
    ap.add_argument("--no-real", action="store_true", help="simulated figures only")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    seeds = args.seeds or (2 if args.quick else 5)
    e = EdgeNode("x/edge", "m/manager")
    m = DeploymentManager("m/manager", ["x/edge"], {"functionalities": ["storage"]})
    print(f"timeouts: heartbeat {m.heartbeat_interval}s, isolation after {e.isolation_after}s, gather window "
          f"{e.gather_window}s, election timeout {e.election_timeout}s, fit timeout {e.fit_timeout}s, proposal "
          f"timeout {e.proposal_timeout}s, leader lease {e.leader_lease}s, reconcile wait {m.reconcile_wait}s, "
          f"release timeout {m.release_timeout}s; latency uniform 1-5 ms; isolate at {ISOLATE_AT}s, heal at {HEAL_AT}s")
    fig: dict = {}
    for n in sizes:
        t0 = time.perf_counter()
        runs = [one_run(seed, n) for seed in range(1, seeds + 1)]
        wall = time.perf_counter() - t0
        iso = [r["iso_to_plan"] for r in runs]
        heal = [r["heal_to_final"] for r in runs if r["heal_to_final"] is not None]
        neg = statistics.mean(r["neg_msgs_per_role"] for r in runs)
        allm = statistics.mean(r["all_msgs_per_role"] for r in runs)
        ratified = sum(r["ratified"] for r in runs)
        bad = [v for r in runs for v in r["violations"]]
        print(f"{n:4d} nodes x {seeds} seeds: isolation->plan p50 {pct(iso, .5):.3f}s p99 {pct(iso, .99):.3f}s; "
              f"heal->final p50 {pct(heal, .5):.3f}s p99 {pct(heal, .99):.3f}s ({ratified}/{len(runs)} ratified, "
              f"rest replaced); negotiation msgs/role {neg:.1f}, all msgs/role {allm:.1f}; "
              f"unfilled roles {sum(r['unfilled'] for r in runs)}; violations {len(bad)}; wall {wall:.1f}s")
        for v in bad[:3]:
            print(f"     VIOLATION {v}")
        fig[f"n{n}"] = {"isolation_to_plan_sim_p50_s": round(pct(iso, .5), 4),
                        "isolation_to_plan_sim_p99_s": round(pct(iso, .99), 4),
                        "heal_to_final_sim_p50_s": round(pct(heal, .5), 4) if heal else None,
                        "heal_to_final_sim_p99_s": round(pct(heal, .99), 4) if heal else None,
                        "ratified": ratified, "runs": len(runs), "msgs_per_role": round(neg, 2),
                        "all_msgs_per_role": round(allm, 2), "violations": len(bad)}
    key = "n32" if "n32" in fig else next(iter(fig))
    mn = 32 if 32 in sizes else next((x for x in sorted(sizes) if x > 8), max(sizes))
    merges = [merge_run(seed, mn) for seed in range(1, seeds + 1)]
    took = [m["merge"] for m in merges if m["merge"] is not None]
    print(f"{mn:4d} nodes x {seeds} seeds, two islands reconnect while the manager is away: one plane with every "
          f"isolated role held after p50 {pct(took, .5) if took else float('nan'):.3f}s max "
          f"{max(took) if took else float('nan'):.3f}s; not merged {len(merges) - len(took)}; violations "
          f"{sum(len(m.get('violations', [])) for m in merges)}")
    clean = [served_run(seed, mn) for seed in range(1, seeds + 1)]
    lossy = [served_run(seed, mn, loss=0.3) for seed in range(1, seeds + 1)]
    ok, asked = sum(r["served"] for r in clean), sum(r["requests"] for r in clean)
    success = ok / asked if asked else None
    gap30 = max(r["gap_max"] for r in lossy)
    print(f"{mn:4d} nodes x {seeds} seeds, the site's clients through an outage: store requests served while the "
          f"temporary plan is in force {ok}/{asked} ({success if success is not None else float('nan'):.4f}); at 30% "
          f"loss on every link, the longest time without a holder in a node's island {gap30:.3f}s; violations "
          f"{sum(len(r['violations']) for r in clean + lossy)}")
    for v in [v for r in clean + lossy for v in r["violations"]][:3]:
        print(f"     VIOLATION {v}")
    out = {"isolation_to_plan_sim_p50_s": fig[key]["isolation_to_plan_sim_p50_s"],
           "heal_to_ratified_sim_p50_s": fig[key]["heal_to_final_sim_p50_s"],
           "msgs_per_role": fig[key]["msgs_per_role"],
           "merge_p50_s": round(pct(took, .5), 4) if took and len(took) == len(merges) else None,
           "merge_max_s": round(max(took), 4) if took and len(took) == len(merges) else None,
           "merge_nodes": mn,
           "client_success_during_outage": round(success, 4) if success is not None else None,
           "holderless_max_s_loss30": round(gap30, 4), "sizes": fig}
    real = {} if args.no_real else real_figures([int(x) for x in args.real_sizes.split(",")],
                                                args.cycles or (2 if args.quick else 5))
    if real:
        rkey = "n32" if "n32" in real else next(iter(real))
        out = {"isolation_to_plan_p50_s": real[rkey]["isolation_to_plan_p50_s"],
               "heal_to_ratified_p50_s": real[rkey]["heal_to_ratified_p50_s"],
               "msgs_per_role_real": real[rkey]["msgs_per_role"], "real_nodes": int(rkey[1:]), **out, "real": real}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
