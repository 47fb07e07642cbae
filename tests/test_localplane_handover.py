"""A partition that cuts the manager off while it is still building a plan (issue 18; the README's
``fleetplane chaos topologies/edge.toml --nemesis one --target mgr`` failed this way in CI).

The manager had started its first final plan when the partition began: it went on negotiating with nodes it
could no longer reach, the site formed its temporary plane meanwhile, and after the heal the manager finished
the stale negotiation - every role unfilled - and installed it: Release took the temporary holders' roles away
and nothing replaced them until the next re-plan, ``isolation_after`` later (store and frontend without a
holder for 1.2-1.5 s, ``ratified-after-heal`` invalid). A plan whose fits and answers predate a temporary
plane it does not know is stale: the manager abandons it and reconciles (ratify or replace) instead.
"""

from __future__ import annotations

import pytest

from tests.localplane_sim import build_edge, toml_profiles, toml_timings
from tests.test_localplane_loss import assert_final_plan_in_force, judge

TOML_EDGE, TOML_MANAGER = toml_timings()
SEEDS = tuple(range(1, 11))
LOADED = (0.005, 0.06)  # one-way delays of 21 Python processes on a loaded two-core machine


def _start_of_first_plan(s) -> float:
    t = 0.0
    while not s.of("manager.plan_started"):
        t += 0.01
        s.run(t)
        assert t < 10.0, f"seed={s.seed}: the manager never started a plan"
    return s.of("manager.plan_started")[0]["time"]


@pytest.mark.parametrize("after", (0.02, 0.05, 0.1, 0.2))
@pytest.mark.parametrize("seed", SEEDS)
def test_a_partition_during_the_first_plan_leaves_no_role_without_a_holder_after_the_heal(seed, after):
    """edge.toml's fleet and timing, slow links; the manager isolated ``after`` s into its first plan, healed 2 s later (the
    site has a temporary plan by then). Every checker valid (no holderless gap over 0.5 s), the final plan in
    force at the end."""
    s = build_edge(seed, 20, profiles=toml_profiles(), edge_params=TOML_EDGE, manager_params=TOML_MANAGER,
                   latency=LOADED)
    t0 = _start_of_first_plan(s)
    s.sim.schedule(t0 + after, s.isolate)
    s.sim.schedule(t0 + after + 2.0, s.heal)
    s.run(t0 + after + 6.0)
    assert [e for e in s.of("edge.role_assigned") if e["fields"]["temporary"]], f"seed={seed}: no temporary plane"
    v = judge(s)
    assert v["ratified-after-heal"] == "valid", f"seed={seed}: {v}"
    assert_final_plan_in_force(s, "after the heal")
