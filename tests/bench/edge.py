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
  between isolation detection and the plan (election, fit reports,
  negotiation, beats) per role.

The invariant checkers of ``topologies/edge_checks.py`` run on every log; a
violation is printed. The timeout settings used are printed first. The last
line is one JSON object (``isolation_to_plan_sim_p50_s``,
``heal_to_ratified_sim_p50_s`` and ``msgs_per_role`` are for 32 nodes).
Real-process figures (8 and 32 nodes over ZeroMQ) are not measured here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parents[1]))

from protocols.localplane import DeploymentManager, EdgeNode  # noqa: E402
from tests.localplane_sim import build_edge  # noqa: E402
from topologies.edge_checks import (  # noqa: E402
    GovernanceApplied,
    OneLeaderPerIslandTerm,
    PlanHolders,
    RatifiedAfterHeal,
)

ISOLATE_AT = 1.0
HEAL_AT = 4.0
END = 6.0


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


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
    for c in (OneLeaderPerIslandTerm(), PlanHolders(), GovernanceApplied(), RatifiedAfterHeal(bound=1.0)):
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="8,32,128")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per size (default 5; 2 with --quick)")
    ap.add_argument("--quick", action="store_true")
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
    out = {"isolation_to_plan_sim_p50_s": fig[key]["isolation_to_plan_sim_p50_s"],
           "heal_to_ratified_sim_p50_s": fig[key]["heal_to_final_sim_p50_s"],
           "msgs_per_role": fig[key]["msgs_per_role"], "sizes": fig}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
