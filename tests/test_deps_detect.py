"""Detected conditions: conditional dependencies switched by what the manager sees, not only by operators.

coldstart.toml's manager has ``detect_after = 1.5``: "region R down" when no asset of R has been
heard for 1.5 s while assets outside R are; "region R isolated" when, for 1.5 s, every asset of R it
hears reports (``Report.unreachable``) every agent outside R silent (``silent_after`` = 3 reports).
A detected condition is set only when something names it (a conditional dependency, an armed
conditional remediation), ends only on evidence, and never fires on a manager that is itself
cut off or on a lossy network. Every failure message names the seed.
"""

from __future__ import annotations

import attrs
import pytest

from protocols.deps.agent import Agent
from protocols.deps.messages import Report, Status
from tests.test_deps_sim import TOPO, kinds, simulate, verdict
from tests.test_deps_durable import _both, _crash_manager
from topologies.checkers import CHECKERS

R1 = ["r1-net", "r1-sec", "r1-stor", "r1-ctl", "r1-obs"]
R2 = ["r2-net", "r2-api"]
MGR = TOPO.node("mgr").actors[0].params


def _conditions(events):
    return [(round(e["time"], 3), e["fields"]["name"], e["fields"]["holds"], e["fields"]["who"])
            for e in kinds(events, "deps.condition")]


def _split_regions(at: float, until: float):
    """r1's and r2's assets cannot reach each other; the manager reaches both."""
    def setup(sim, factories):
        def cut():
            for a in R1:
                for b in R2:
                    sim.cut(a, b)
                    sim.cut(b, a)
        sim.schedule(at, cut)
        sim.schedule(until, sim.heal)
    return setup


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_partition_between_the_regions_is_detected_and_switches_the_conditional_dependency(seed):
    _, events = simulate(TOPO, seed, 35.0, _split_regions(12.0, 20.0))
    conds = _conditions(events)
    assert [c[1:] for c in conds] == [("region r2 isolated", True, "detected"),
                                      ("region r2 isolated", False, "detected")], f"seed {seed}: {conds}"
    # the agents call a peer silent after 1.5 s, their next report says so (0.5 s), the evidence must
    # last detect_after (1.5 s), then a tick
    assert 12.0 + 1.5 + MGR["detect_after"] <= conds[0][0] <= 12.0 + 1.5 + 0.5 + 0.05 + MGR["detect_after"] \
        + MGR["tick_interval"], f"seed {seed}: {conds}"
    assert 20.0 < conds[1][0] <= 20.0 + 0.5 + 0.05 + MGR["tick_interval"], f"seed {seed}: {conds}"
    plans = [e["fields"]["conditions"] for e in kinds(events, "deps.plan") if conds[0][0] <= e["time"] < conds[1][0]]
    assert plans == [["region r2 isolated"]], f"seed {seed}: the plan under the detected condition"
    (fired,) = kinds(events, "deps.remediation_fired")
    assert fired["fields"]["service"] == "identity" and fired["fields"]["trigger"] == "condition region r2 isolated"
    identity = [(e["time"], e["fields"]["state"]) for e in kinds(events, "deps.service")
                if e["fields"]["service"] == "identity" and e["time"] > conds[0][0]]
    assert "bootstrap" in [s for t, s in identity if t < 20.0], f"seed {seed}: identity ran standalone meanwhile"
    assert kinds(events, "deps.remediation_released") and identity[-1][1] == "up", f"seed {seed}"
    for name in ("deps-start-order", "deps-all-up"):
        assert verdict(name, events) == "valid", f"seed {seed}: {CHECKERS[name].check(events).summary}"


def _with_manager(**params):
    nodes = tuple(attrs.evolve(n, actors=tuple(attrs.evolve(a, params={**a.params, **params})
                                               if a.kind == "deps.manager" else a for a in n.actors))
                  for n in TOPO.nodes)
    return attrs.evolve(TOPO, nodes=nodes)


# an operator's remediation for when region r2 goes: a conditional remediation names the condition
FAILOVER = _with_manager(remediations=[{"id": "r2-gone", "action": "restart", "service": "monitoring",
                                        "when": "conditional", "condition": "region r2 down"}])


def _region_r2_off(at: float, back: float):
    def setup(sim, factories):
        sim.schedule(at, lambda: [sim.crash(f"{a}/agent") for a in R2])
        sim.schedule(back, lambda: [sim.restart(f"{a}/agent", factories[f"{a}/agent"]()) for a in R2])
    return setup


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_region_that_falls_silent_is_detected_down_and_its_conditional_remediation_fires(seed):
    _, events = simulate(FAILOVER, seed, 35.0, _region_r2_off(12.0, 20.0))
    conds = _conditions(events)
    assert [c[1:] for c in conds] == [("region r2 down", True, "detected"),
                                      ("region r2 down", False, "detected")], f"seed {seed}: {conds}"
    # its last report was at most report_every (0.5 s) before the crash
    assert 12.0 + 1.5 - 0.5 <= conds[0][0] <= 12.0 + 1.5 + MGR["tick_interval"], f"seed {seed}: {conds}"
    assert 20.0 <= conds[1][0] <= 20.0 + 0.05 + MGR["tick_interval"], f"seed {seed}: {conds}"
    (fired,) = kinds(events, "deps.remediation_fired")
    assert fired["fields"]["id"] == "r2-gone" and fired["time"] == pytest.approx(conds[0][0]), f"seed {seed}"
    for name in ("deps-start-order", "deps-all-up"):
        assert verdict(name, events) == "valid", f"seed {seed}: {CHECKERS[name].check(events).summary}"


def test_a_detected_condition_survives_a_manager_restart_and_ends_on_evidence():
    _, events = simulate(FAILOVER, 1, 35.0, _both(_region_r2_off(12.0, 20.0), _crash_manager(15.0, 15.5)))
    conds = _conditions(events)
    assert [c[1:] for c in conds] == [("region r2 down", True, "detected"),
                                      ("region r2 down", False, "detected")], conds
    assert conds[1][0] >= 20.0, "the new incarnation, which never heard r2, did not end it for lack of news"
    assert len(kinds(events, "deps.remediation_fired")) == 1, "fired once, not again by the new incarnation"
    assert verdict("deps-all-up", events) == "valid"


def test_nothing_is_detected_when_the_manager_is_the_one_cut_off_or_the_network_is_lossy():
    def isolate_manager(sim, factories):
        sim.schedule(12.0, lambda: sim.partition([["mgr"]]))
        sim.schedule(16.0, sim.heal)
    _, events = simulate(FAILOVER, 1, 25.0, isolate_manager)
    assert _conditions(events) == []
    lossy = attrs.evolve(FAILOVER, network=attrs.evolve(TOPO.network, loss=0.2, duplicate=0.05, reorder=0.05))
    _, events = simulate(lossy, 1, 40.0)
    assert _conditions(events) == [], "seed 1"
    assert verdict("deps-all-up", events) == "valid"


def test_an_agent_reports_the_peers_it_has_not_heard_from():
    a = Agent("a1", [{"name": "x"}], manager="m/manager", peers=["a1/agent", "a2/agent", "a3/agent"],
              address="a1/agent", report_every=0.5)
    a.tick(0.0)
    assert a.report(1.0).unreachable == []  # silent_after = 3 x report_every
    a.handle(Report("a2", 7, 1, "", "r1", [], {}, {}), "a2/agent", 1.0)
    assert a.report(1.6).unreachable == ["a3/agent"]  # never heard since the agent started 1.6 s ago
    a.handle(Status("a3", 9, 1, "y", "up"), "a3/agent", 2.0)
    assert a.report(2.6).unreachable == ["a2/agent"]
    assert a.report(3.6).unreachable == ["a2/agent", "a3/agent"]


def test_the_report_section_shows_detected_conditions_and_manager_restarts():
    from topologies.deps.report import deps_section
    _, events = simulate(TOPO, 1, 30.0, _both(_split_regions(12.0, 20.0), _crash_manager(2.5, 3.5)))
    html = deps_section(events, [], events[0]["time"], events[-1]["time"])
    assert "manager restarted" in html and "condition &#x27;region r2 isolated&#x27; holds" in html
    assert "<td>detected</td>" in html
