"""Benchmark: three regions boot at once, one region's image store at 20%: the council's speedup (issue 21).

How this works
--------------
One workload (harness: ``tests/regions_sim.py``), two runs in the deterministic simulator, both from
the same seed so every server's work and power-on time is the same:

* **alone** (the baseline, measured in the same run): the three regions' image controllers do not form
  a council; each region queues behind its own store. East's store has come back from its outage at
  ``--fraction`` (0.2) of its capacity.
* **council**: the same regions with a council of image controllers (approval ``none``).

Figures: ``council_speedup`` = east's makespan alone / with the council (goal >= 2 when east's store
runs at 20% and the peers have headroom); ``peer_slowdown`` = the largest, over the healthy regions, of
a region's makespan with the council / alone (goal <= 1.10); ``council_messages_per_mitigation``:
council messages the members sent (queries, reports, proposals, decisions to every member and the
oversight role, ends, acks) per mitigation proposed. With ``--approval all`` an operator standing in
approves each pending mitigation ``--approve-after`` seconds after it appears (the time a person takes),
and the speedup is measured with that delay. The last line is one JSON object of the figures.

    .venv/bin/python tests/bench/regions.py [--servers 300] [--capacity 30] [--seed 11]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from protocols.workflow.council_messages import OversightApprove  # noqa: E402
from tests.regions_sim import build_regions  # noqa: E402
from topologies.workflow.checks import AdmissionLimit, ServersDone  # noqa: E402
from topologies.workflow.council_checks import (  # noqa: E402
    RedirectAccepted,
    RedirectWithinAccepted,
    RejectionHold,
)


def _approver(delay: float):
    seen: dict[str, float] = {}

    def operator(reg, now: float) -> None:
        for mid in reg.oversight().pending(now):
            if now - seen.setdefault(mid, now) >= delay:
                reg.operator_says(OversightApprove(mid, "bench"))
    return operator


def main(argv: list[str]) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--servers", type=int, default=300, help="servers per region")
    ap.add_argument("--capacity", type=int, default=30, help="a healthy store's capacity (transfers at full speed)")
    ap.add_argument("--fraction", type=float, default=0.2, help="the damaged store's share of its capacity")
    ap.add_argument("--stage-time", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--spread", type=float, default=2.0,
                    help="servers power on over this many seconds (longer: peers' own servers keep arriving while "
                         "guests hold slots)")
    ap.add_argument("--approval", default="none", choices=("none", "all", "above-share"))
    ap.add_argument("--approve-after", type=float, default=10.0)
    a = ap.parse_args(argv)
    common = {"servers": a.servers, "capacity": a.capacity, "damaged_fraction": a.fraction,
              "stage_time": a.stage_time, "start_spread": a.spread}
    t0 = time.perf_counter()
    alone = build_regions(a.seed, council=False, **common).run()
    t1 = time.perf_counter()
    helped = build_regions(a.seed, council=True, approval=a.approval,
                           operator=_approver(a.approve_after) if a.approval != "none" else None, **common).run()
    t2 = time.perf_counter()
    fa, fh = alone.figures(), helped.figures()
    ma, mh = fa["makespan"], fh["makespan"]
    print(f"regions: {', '.join(alone.regions)}; {a.servers} servers each; stores of {a.capacity}, east's at "
          f"{a.fraction:.0%}; stages of {a.stage_time:.0f} s; powered on over {a.spread:.0f} s; seed {a.seed}; "
          f"approval {a.approval}")
    for g in alone.regions:
        print(f"  {g:6s} makespan alone {ma[g]:8.1f} s   with the council {mh[g]:8.1f} s   "
              f"ratio {ma[g] / mh[g]:.3f}")
    speedup = ma["east"] / mh["east"]
    slowdown = max(mh[g] / ma[g] for g in alone.regions if g != "east")
    verdicts = {c.name: c.check(helped.events()).status for c in (AdmissionLimit(), ServersDone(), RedirectAccepted(),
                                                                  RedirectWithinAccepted(), RejectionHold())}
    print(f"council_speedup {speedup:.2f} (goal >= 2)   peer_slowdown {slowdown:.3f} (goal <= 1.10)")
    print(f"mitigations {fh['mitigations']}, servers redirected {fh['redirected']}, admitted by peers "
          f"{fh['admitted']}, council messages {fh['council_messages']} "
          f"({fh['council_messages_per_mitigation'] or 0:.1f} per mitigation)")
    print(f"checkers: {verdicts}")
    fig = {
        "bench": "regions",
        "seed": a.seed,
        "servers_per_region": a.servers,
        "capacity": a.capacity,
        "damaged_fraction": a.fraction,
        "start_spread": a.spread,
        "approval": a.approval,
        "makespan_alone": {g: round(v, 2) for g, v in ma.items()},
        "makespan_council": {g: round(v, 2) for g, v in mh.items()},
        "council_speedup": round(speedup, 3),
        "peer_slowdown": round(slowdown, 4),
        "mitigations": fh["mitigations"],
        "redirected": fh["redirected"],
        "admitted": fh["admitted"],
        "council_messages": fh["council_messages"],
        "council_messages_per_mitigation": (round(fh["council_messages_per_mitigation"], 2)
                                            if fh["council_messages_per_mitigation"] else None),
        "verdicts": verdicts,
        "wall_s": {"alone": round(t1 - t0, 2), "council": round(t2 - t1, 2)},
    }
    print(json.dumps(fig))
    return fig


if __name__ == "__main__":
    main(sys.argv[1:])
