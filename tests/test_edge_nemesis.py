"""The split-site nemesis (topologies/nemesis.py): the manager away, the site split in two halves, merged, healed.

Issue 18 asks for a real chaos run of edge.toml with "a partition of the site into
two halves while the manager is away, then a merge". The other nemeses make one
grudge per fault; ``split-site`` makes four in sequence (each Grudge replaces the
one before). These tests pin the schedule down (seeded, printable), check that
both drivers - the simulator and the fault plans sent to real processes - carry
it out, and run it on edge.toml in the simulator over several seeds.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from actors.eventlog import read_events
from topologies.chaos import build_schedule, run_chaos, schedule_lines
from topologies.loader import load_topology
from topologies.nemesis import (
    NEMESES, FaultState, Grudge, Heal, NemesisSpec, fault_plans, make_schedule, reachability,
)

ROOT = Path(__file__).resolve().parents[1]
EDGE = ROOT / "topologies" / "edge.toml"
SITE = ["mgr", "a0", "a1", "a2", "b0", "b1", "b2", "b3"]


def phases(schedule):
    """The network in force after each op, as reachability sets."""
    state = FaultState()
    out = []
    for t, op in schedule:
        state.apply(op)
        out.append((t, op, reachability(SITE, state.grudge)))
    return out


def test_split_site_cuts_the_target_off_splits_the_rest_in_halves_merges_them_then_heals():
    s = make_schedule("split-site", SITE, random.Random(7), NemesisSpec(start=3.0, duration=9.0, target="mgr"))
    assert [t for t, _ in s] == [3.0, 6.0, 9.0, 12.0]
    assert [type(op) for _, op in s] == [Grudge, Grudge, Grudge, Heal]
    (_, _, away), (_, split_op, split), (_, _, merged), (_, _, healed) = phases(s)
    site = set(SITE) - {"mgr"}
    for reach in (away, split, merged):
        assert reach["mgr"] == {"mgr"} and all("mgr" not in reach[n] for n in site)
    assert all(away[n] == site for n in site) and all(merged[n] == site for n in site)
    halves = {frozenset(split[n]) for n in site}
    assert len(halves) == 2 and sorted(len(h) for h in halves) == [3, 4] and set().union(*halves) == site
    assert healed["mgr"] == set(SITE)
    assert "mgr away;" in split_op.label and " | " in split_op.label
    lines = schedule_lines(s)
    assert len(lines) == 4 and "split-site: mgr away" in lines[0] and "halves merged, mgr still away" in lines[2], lines


def test_split_site_is_seeded_repeats_and_draws_new_halves():
    spec = NemesisSpec(start=1.0, duration=3.0, repeat=3, interval=5.0, target="mgr")
    a = make_schedule("split-site", SITE, random.Random(1), spec)
    b = make_schedule("split-site", SITE, random.Random(1), spec)
    assert [(t, op.describe()) for t, op in a] == [(t, op.describe()) for t, op in b]
    assert [t for t, _ in a] == [1.0, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0, 9.0, 11.0, 12.0, 13.0, 14.0]
    splits = {a[i][1].blocked for i in (1, 5, 9)}
    assert len(splits) > 1, "each repetition draws its halves afresh"
    other = make_schedule("split-site", SITE, random.Random(2), spec)
    assert [op.describe() for _, op in other] != [op.describe() for _, op in a]
    # without a target, a random node is cut off each time
    free = make_schedule("split-site", SITE, random.Random(3), NemesisSpec(repeat=4, duration=3.0, interval=4.0))
    assert all(isinstance(op, (Grudge, Heal)) for _, op in free)


def test_split_site_refuses_too_few_nodes_and_an_unknown_target_and_is_not_drawn_by_mix():
    with pytest.raises(ValueError, match="at least 3 nodes"):
        make_schedule("split-site", ["mgr", "a0"], random.Random(1), NemesisSpec(target="mgr"))
    with pytest.raises(ValueError, match="unknown target"):
        make_schedule("split-site", SITE, random.Random(1), NemesisSpec(target="zz"))
    assert "split-site" in NEMESES
    # mix's default draws are as before (old seeds keep their schedules); it is drawn when named
    for seed in range(30):
        drawn = make_schedule("mix", SITE, random.Random(seed), NemesisSpec(repeat=3))
        assert not any("split-site" in getattr(op, "label", "") for _, op in drawn)
    named = make_schedule("mix", SITE, random.Random(1), NemesisSpec(repeat=1, duration=3.0, mix=("split-site",),
                                                                     target="mgr"))
    assert [t for t, _ in named] == [1.0, 2.0, 3.0, 4.0]


def test_split_site_fault_plans_block_the_halves_from_each_other_and_the_target_from_all():
    s = make_schedule("split-site", SITE, random.Random(5), NemesisSpec(start=1.0, duration=3.0, target="mgr"))
    state = FaultState()
    for _, op in s[:2]:
        state.apply(op)
    plans = fault_plans(SITE, state.grudge)
    reach = phases(s)[1][2]
    for n in SITE:
        cut_off = {p for r in plans[n].rules if r.direction == "out" for p in r.peers}
        assert cut_off == set(SITE) - reach[n], n
    state.apply(s[2][1])
    state.apply(s[3][1])
    assert all(not p.rules for p in fault_plans(SITE, state.grudge).values())


def test_edge_toml_schedules_split_site_with_the_manager_away():
    topo = load_topology(EDGE)
    entry = next(c for c in topo.chaos if c.nemesis == "split-site")
    assert entry.target == "mgr"
    lines = schedule_lines(build_schedule(topo, topo.seed))
    assert any("split-site: mgr away;" in x for x in lines) and any("halves merged" in x for x in lines), lines


@pytest.mark.parametrize("seed", (1, 2, 3, 4))
def test_split_site_on_edge_toml_in_the_simulator(tmp_path, seed):
    """fleetplane chaos topologies/edge.toml --nemesis split-site --target mgr --sim, shorter: the manager away
    2-11 s, the site in halves 5-8 s. Every edge checker valid (none unknown but clients' if no request was
    served), one plane at the end of the merge, the replay identical."""
    topo = load_topology(EDGE)
    r = run_chaos(topo, tmp_path, seed, nemesis="split-site", overrides={"target": "mgr", "start": 2.0, "duration": 9.0},
                  sim=True, quiet=True)
    v = {x["checker"]: x["status"] for x in r.verdicts}
    assert r.ok and r.replay_identical, f"seed={seed}: {r.verdicts}"
    for c in ("one-leader-per-island-term", "plan-holders", "governance", "ratified-after-heal", "holderless-gap",
              "clients-single-holder"):
        assert v[c] == "valid", f"seed={seed}: {c} {v[c]}: {r.verdicts}"
    events = read_events(tmp_path / "events.jsonl")
    grudges = [e["time"] for e in events if e["kind"] == "nemesis.grudge"]
    assert grudges == [2.0, 5.0, 8.0], f"seed={seed}"
    # two planes in the halves (a leader on each side after the split), one after the merge
    split_leaders = {e["node"] for e in events if e["kind"] == "plane.leader" and 5.0 < e["time"] < 8.0}
    stepdowns = [e for e in events if e["kind"] == "plane.stepdown" and 8.0 < e["time"] < 11.0
                 and "merged" in e["fields"]["reason"]]
    assert split_leaders and stepdowns, f"seed={seed}: leaders {split_leaders}, merges {stepdowns}"
    assert any(e["kind"] == "manager.plan_final" and e["time"] > 11.0 for e in events), f"seed={seed}"
