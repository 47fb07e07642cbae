"""Nemeses (topologies.nemesis): each partition's reachability shape, checked in the simulator.

Every nemesis's schedule is applied to a Simulator with trivial participants
on nodes n1..n5; inside the fault window the network's ``can_reach`` matrix
(or link specs, or crashed participants) must have the nemesis's intended
shape (Jepsen's names: one, majority, majorities-ring, bridge, random-halves),
and after the heal every node must reach every node again. Also: schedule
timing, spec validation, the FaultPlans for real processes. Seeds are named
in the assertions. Message tags are unique to this module ("nemesistest.*").
"""

from __future__ import annotations

import itertools
import random

import pytest

from actors.simulator import Simulator
from protocols.core import Send
from transport.codec import message
from transport.faults import FaultPlan, FaultRule, SetFaults
from transport.sim import Fixed, LinkSpec, SimNetwork
from topologies.nemesis import (
    NEMESES,
    ClearLinkFaults,
    Delayed,
    FaultState,
    Grudge,
    Heal,
    Kill,
    LinkFault,
    NemesisSpec,
    Pause,
    Restart,
    Resume,
    apply_to_simulator,
    fault_plans,
    islands_grudge,
    make_schedule,
    reachability,
    ring_offsets,
)

N5 = ["n1", "n2", "n3", "n4", "n5"]
SPEC = NemesisSpec(start=1.0, duration=2.0)  # fault in force during [1, 3)
INSIDE, AFTER = 2.0, 3.5


@message("nemesistest.Hello")
class Hello:
    seq: int


class Idle:
    """Does nothing; counts how often it was built (to see a restart)."""

    tick_interval = None
    built = itertools.count()

    def __init__(self) -> None:
        self.serial = next(Idle.built)

    def tick(self, now):
        return []

    def handle(self, msg, sender, now):
        return []


class Chatty:
    """Every 0.05 s sends Hello to every peer; records (sender, sent_seq, now) of what arrives."""

    tick_interval = 0.05

    def __init__(self, me: str, peers: list[str]) -> None:
        self.me = me
        self.peers = [p for p in peers if p != me]
        self.seq = 0
        self.got: list[tuple[str, float]] = []

    def tick(self, now):
        self.seq += 1
        return [Send(p, Hello(self.seq)) for p in self.peers]

    def handle(self, msg, sender, now):
        self.got.append((sender, now))
        return []


def build(nodes=N5, *, seed=1, actors=("p",), trace=False, network=None):
    """A simulator with one Idle participant per (node, actor name)."""
    sim = Simulator(seed, network=network, trace_messages=trace)
    by_node = {n: [f"{n}/{a}" for a in actors] for n in nodes}
    factories = {a: Idle for addrs in by_node.values() for a in addrs}
    for addrs in by_node.values():
        for a in addrs:
            sim.add(a, Idle())
    return sim, by_node, factories


def run_nemesis(name, nodes=N5, *, seed=1, spec=SPEC, at=INSIDE, **kw):
    sim, by_node, factories = build(nodes, seed=seed, **kw)
    sched = make_schedule(name, nodes, random.Random(seed), spec)
    apply_to_simulator(sim, sched, by_node, factories)
    sim.run(until=at)
    return sim, sched


def matrix(sim, nodes=N5) -> dict[str, set[str]]:
    """For each node, the nodes it can send to now (itself included)."""
    return {a: {b for b in nodes if sim.network.can_reach(a, b)} for a in nodes}


def everyone(nodes=N5) -> dict[str, set[str]]:
    return {a: set(nodes) for a in nodes}


def islands_of(m: dict[str, set[str]]) -> list[set[str]]:
    """The islands of a symmetric, transitive matrix (fails the test if it is not one)."""
    for a, reach in m.items():
        for b in reach:
            assert a in m[b], f"not symmetric: {a} -> {b} but not back"
            assert m[b] == reach, f"not transitive: {a} sees {sorted(reach)}, {b} sees {sorted(m[b])}"
    return sorted({frozenset(r) for r in m.values()}, key=len)


# --------------------------------------------------------------------------
# Partitions: the reachability shape inside the window, full reach after
# --------------------------------------------------------------------------

def test_one_isolates_exactly_the_target_both_ways():
    sim, _ = run_nemesis("one", spec=NemesisSpec(target="n3"))
    m = matrix(sim)
    assert m["n3"] == {"n3"}
    for a in N5:
        if a != "n3":
            assert m[a] == set(N5) - {"n3"}, a


@pytest.mark.parametrize("seed", range(5))
def test_one_without_target_isolates_one_random_node(seed):
    sim, sched = run_nemesis("one", seed=seed)
    isles = islands_of(matrix(sim))
    assert [len(i) for i in isles] == [1, 4], f"seed={seed}: {isles}"
    assert sched[0][1].label == f"one: {next(iter(isles[0]))} isolated"


@pytest.mark.parametrize("seed", range(5))
def test_majority_gives_islands_of_three_and_two(seed):
    sim, _ = run_nemesis("majority", seed=seed)
    isles = islands_of(matrix(sim))
    assert [len(i) for i in isles] == [2, 3], f"seed={seed}: {isles}"


def test_majority_puts_the_target_in_the_minority():
    for seed in range(5):
        sim, _ = run_nemesis("majority", seed=seed, spec=NemesisSpec(target="n1"))
        assert len(matrix(sim)["n1"]) == 2, f"seed={seed}"
    sim, _ = run_nemesis("majority", nodes=["a", "b", "c", "d"], spec=NemesisSpec(target="a"))
    assert [len(i) for i in islands_of(matrix(sim, ["a", "b", "c", "d"]))] == [1, 3]


@pytest.mark.parametrize("n", [5, 6, 7, 8, 9, 10, 11])
def test_majorities_ring_every_node_sees_a_different_majority(n):
    nodes = [f"n{i}" for i in range(1, n + 1)]
    sim, _ = run_nemesis("majorities-ring", nodes=nodes, seed=n)
    m = matrix(sim, nodes)
    majority = n // 2 + 1
    for a, reach in m.items():
        assert a in reach
        assert len(reach) == majority, f"n={n}: {a} reaches {sorted(reach)}"
        heard_by = {b for b in nodes if a in m[b]}
        assert len(heard_by) == majority, f"n={n}: {a} is reached by {sorted(heard_by)}"
    assert len({frozenset(r) for r in m.values()}) == n, f"n={n}: two nodes see the same majority"
    # not transitive: some a -> b -> c without a -> c
    assert any(c not in m[a] for a in nodes for b in m[a] for c in m[b])
    if n % 4 != 3:  # symmetric wherever a symmetric arrangement exists
        assert all(a in m[b] for a in nodes for b in m[a]), f"n={n}: not symmetric"


def test_ring_offsets_are_a_majority_and_never_translation_invariant():
    for n in range(5, 40):
        d = {x % n for x in ring_offsets(n)}
        assert 0 in d and len(d) == n // 2 + 1, n
        assert all({(x + k) % n for x in d} != d for k in range(1, n)), n
        if n % 4 != 3:
            assert d == {(-x) % n for x in d}, n


def test_majorities_ring_needs_five_nodes():
    with pytest.raises(ValueError, match=r"majorities-ring.*at least 5 nodes"):
        make_schedule("majorities-ring", ["n1", "n2", "n3", "n4"], random.Random(0))


@pytest.mark.parametrize("seed", range(5))
def test_bridge_reaches_both_halves_which_cannot_reach_each_other(seed):
    sim, sched = run_nemesis("bridge", seed=seed)
    m = matrix(sim)
    bridges = [a for a in N5 if m[a] == set(N5)]
    assert len(bridges) == 1, f"seed={seed}: {m}"
    b = bridges[0]
    assert all(b in m[a] for a in N5), f"seed={seed}: someone cannot reach the bridge {b}"
    rest = {a: m[a] - {b} for a in N5 if a != b}
    isles = islands_of(rest)
    assert [len(i) for i in isles] == [2, 2], f"seed={seed}: {isles}"
    assert f"| {b} |" in sched[0][1].label


def test_bridge_uses_the_target_as_bridge():
    sim, _ = run_nemesis("bridge", spec=NemesisSpec(target="n4"))
    m = matrix(sim)
    assert [a for a in N5 if m[a] == set(N5)] == ["n4"]


def test_random_halves_splits_in_two_and_differs_between_seeds():
    shapes = set()
    for seed in range(8):
        sim, _ = run_nemesis("random-halves", seed=seed)
        isles = islands_of(matrix(sim))
        assert [len(i) for i in isles] == [2, 3], f"seed={seed}: {isles}"
        shapes.add(frozenset(isles[0]))
    assert len(shapes) > 1, f"every seed drew the same split: {shapes}"


def test_random_halves_draws_a_new_split_each_repetition():
    sched = make_schedule("random-halves", N5, random.Random(3), NemesisSpec(repeat=6))
    assert len({op.blocked for _, op in sched if isinstance(op, Grudge)}) > 1


def test_asymmetric_blocks_only_target_to_others():
    sim, _ = run_nemesis("asymmetric", spec=NemesisSpec(target="n2"))
    m = matrix(sim)
    assert m["n2"] == {"n2"}
    for a in N5:
        if a != "n2":
            assert m[a] == set(N5), f"{a} should still reach everyone, n2 included"


@pytest.mark.parametrize("name", ["one", "majority", "majorities-ring", "bridge", "random-halves", "asymmetric", "pause"])
def test_after_heal_everyone_reaches_everyone(name):
    sim, _ = run_nemesis(name, at=INSIDE)
    assert matrix(sim) != everyone(), f"{name}: no fault in force inside the window"
    sim.run(until=AFTER)
    assert matrix(sim) == everyone(), name
    assert not sim.network.blocked


# --------------------------------------------------------------------------
# Link faults
# --------------------------------------------------------------------------

def base_network() -> SimNetwork:
    """Default links 10 ms fixed; n1 -> n2 configured with its own spec."""
    net = SimNetwork(default=LinkSpec(latency=Fixed(0.01)), nodes=N5)
    net.set_link("n1", "n2", LinkSpec(latency=Fixed(0.05), loss=0.1))
    return net


@pytest.mark.parametrize("name, field, value", [("flaky", "loss", 0.3), ("duplicate", "duplicate", 0.5), ("reorder", "reorder", 0.5)])
def test_link_fault_nemeses_set_every_link_and_clear_restores_it(name, field, value):
    sim, _ = run_nemesis(name, network=base_network())
    net = sim.network
    for a, b in itertools.permutations(N5, 2):
        assert getattr(net.link(a, b), field) == value, (a, b)
    assert net.link("n2", "n3").latency == Fixed(0.01), "base latency kept"
    assert net.link("n1", "n2").latency == Fixed(0.05), "configured latency kept"
    assert matrix(sim) == everyone(), "link faults do not partition"
    sim.run(until=AFTER)
    for a, b in itertools.permutations(N5, 2):
        assert net.link(a, b) is net.default or (a, b) == ("n1", "n2"), (a, b)
    assert net.link("n1", "n2") == LinkSpec(latency=Fixed(0.05), loss=0.1)


def test_flaky_uses_spec_loss_and_keeps_a_higher_base_loss():
    sim, _ = run_nemesis("flaky", network=base_network(), spec=NemesisSpec(loss=0.05))
    assert sim.network.link("n2", "n1").loss == 0.05
    assert sim.network.link("n1", "n2").loss == 0.1


def test_slow_adds_delay_and_jitter_to_the_base_latency():
    sim, _ = run_nemesis("slow", network=base_network(), spec=NemesisSpec(delay=0.3, jitter=0.1))
    lat = sim.network.link("n3", "n4").latency
    assert lat == Delayed(Fixed(0.01), 0.3, 0.1)
    assert lat.bounds() == pytest.approx((0.31, 0.41))
    assert sim.network.link("n1", "n2").latency.bounds() == pytest.approx((0.35, 0.45))
    assert make_schedule("slow", N5, random.Random(0))[0][1].jitter == pytest.approx(0.1)  # default: delay / 2


def test_slow_delays_real_messages_only_inside_the_window():
    sim = Simulator(5, network=SimNetwork(default=LinkSpec(latency=Fixed(0.01))))
    nodes = ["n1", "n2"]
    machines = {n: Chatty(f"{n}/p", [f"{m}/p" for m in nodes]) for n in nodes}
    for n, mach in machines.items():
        sim.add(f"{n}/p", mach)
    apply_to_simulator(sim, make_schedule("slow", nodes, random.Random(5), NemesisSpec(delay=0.5, jitter=0.0)),
                       {n: [f"{n}/p"] for n in nodes})
    sim.run(until=5.0)
    got = [t for _, t in machines["n2"].got]
    gaps = [b - a for a, b in zip(got, got[1:])]
    # before 1.0 and after 3.5 a message arrives every 0.05 s; at 1.0 the stream stalls for the extra 0.5 s
    assert max(gaps) == pytest.approx(0.55, abs=0.011), max(gaps)
    late = [t for t in got if 1.0 < t < 1.5]
    assert late == [], f"nothing sent after 1.0 may arrive before 1.5: {late}"


# --------------------------------------------------------------------------
# Kill, pause
# --------------------------------------------------------------------------

def test_kill_crashes_every_actor_of_the_target_and_restart_makes_fresh_ones():
    sim, _ = run_nemesis("kill", spec=NemesisSpec(target="n2"), actors=("a", "b"))
    alive = {a: sim.alive(a) for a in sim.participants()}
    assert {a for a, up in alive.items() if not up} == {"n2/a", "n2/b"}
    before = {a: sim.machine(a).serial for a in sim.participants()}
    sim.run(until=AFTER)
    assert all(sim.alive(a) for a in sim.participants())
    fresh = {a for a in sim.participants() if sim.machine(a).serial != before[a]}
    assert fresh == {"n2/a", "n2/b"}


def test_pause_isolates_the_node_in_the_simulator_without_crashing_it():
    sim, _ = run_nemesis("pause", spec=NemesisSpec(target="n5"))
    m = matrix(sim)
    assert m["n5"] == {"n5"} and all("n5" not in m[a] for a in N5 if a != "n5")
    assert all(sim.alive(a) for a in sim.participants())


def test_pause_during_a_grudge_outlives_the_heal():
    sim, by_node, factories = build()
    apply_to_simulator(sim, [(1.0, Grudge({("n1", "n2")}, "x")), (1.0, Pause("n3")), (2.0, Heal()), (3.0, Resume("n3"))], by_node)
    sim.run(until=1.5)
    assert not sim.network.can_reach("n1", "n2") and not sim.network.can_reach("n4", "n3")
    sim.run(until=2.5)
    assert sim.network.can_reach("n1", "n2") and not sim.network.can_reach("n4", "n3")
    sim.run(until=3.5)
    assert matrix(sim) == everyone()


# --------------------------------------------------------------------------
# mix
# --------------------------------------------------------------------------

def described(sched):
    return [(t, op.describe()) for t, op in sched]


def test_mix_is_reproducible_from_the_seed_and_differs_between_seeds():
    spec = NemesisSpec(repeat=8, duration=1.0, interval=3.0)
    a = make_schedule("mix", N5, random.Random(11), spec)
    b = make_schedule("mix", N5, random.Random(11), spec)
    c = make_schedule("mix", N5, random.Random(12), spec)
    assert described(a) == described(b)
    assert described(a) != described(c)


@pytest.mark.parametrize("seed", range(4))
def test_mix_heals_each_fault_before_the_next_and_ends_healed(seed):
    spec = NemesisSpec(repeat=6, duration=1.0, interval=2.5)
    sim, by_node, factories = build(seed=seed)
    sched = make_schedule("mix", N5, random.Random(seed), spec)
    kinds = {type(op).__name__ for _, op in sched}
    assert len(kinds) > 2, f"seed={seed}: mix drew too little variety: {kinds}"
    starts = [1.0 + k * 2.5 for k in range(6)]
    heals = [s + 1.0 for s in starts]
    assert sorted({t for t, _ in sched}) == sorted(starts + heals), f"seed={seed}"
    for t, op in sched:
        healing = isinstance(op, (Heal, ClearLinkFaults, Restart, Resume))
        assert healing == (t in heals), f"seed={seed}: {op} at {t}"
    apply_to_simulator(sim, sched, by_node, factories)
    for h in heals:  # just after each heal: nothing in force
        sim.run(until=h + 0.01)
        assert matrix(sim) == everyone(), f"seed={seed} t={h}"
        assert all(sim.alive(a) for a in sim.participants()), f"seed={seed} t={h}"
        assert all(sim.network.link(x, y) is sim.network.default for x, y in itertools.permutations(N5, 2))


def test_mix_draws_only_from_the_given_nemeses():
    sched = make_schedule("mix", N5, random.Random(0), NemesisSpec(repeat=10, mix=("kill", "one"), target="n1"))
    assert {type(op) for _, op in sched} == {Kill, Restart, Grudge, Heal}
    assert {op.node for _, op in sched if isinstance(op, Kill)} == {"n1"}


def test_mix_on_three_nodes_skips_majorities_ring():
    for seed in range(20):
        sched = make_schedule("mix", N5[:3], random.Random(seed), NemesisSpec(repeat=5))
        assert not any(isinstance(op, Grudge) and op.label.startswith("majorities-ring") for _, op in sched)


# --------------------------------------------------------------------------
# Timing and validation
# --------------------------------------------------------------------------

def test_schedule_timing_start_duration_repeat_interval():
    sched = make_schedule("one", N5, random.Random(0), NemesisSpec(start=2.0, duration=1.0, repeat=3, interval=5.0))
    assert [t for t, _ in sched] == [2.0, 3.0, 7.0, 8.0, 12.0, 13.0]
    assert [type(op) for _, op in sched] == [Grudge, Heal] * 3


def test_default_interval_is_twice_the_duration():
    sched = make_schedule("kill", N5, random.Random(0), NemesisSpec(start=0.5, duration=1.5, repeat=3))
    assert [t for t, _ in sched] == [0.5, 2.0, 3.5, 5.0, 6.5, 8.0]
    assert [type(op) for _, op in sched] == [Kill, Restart] * 3
    assert all(sched[i][1].node == sched[i + 1][1].node for i in range(0, 6, 2))


def test_link_fault_schedules_cover_every_directed_link_then_clear():
    sched = make_schedule("flaky", N5[:3], random.Random(0))
    faults = [op for t, op in sched if t == 1.0]
    assert {(f.src, f.dst) for f in faults} == set(itertools.permutations(N5[:3], 2))
    assert sched[-1] == (3.0, ClearLinkFaults())


@pytest.mark.parametrize("name", ["flaky", "slow", "duplicate", "reorder"])
def test_a_link_nemesis_with_a_target_hits_only_the_targets_links(name):
    sched = make_schedule(name, N5, random.Random(0), NemesisSpec(target="n2"))
    faults = [op for t, op in sched if t == 1.0]
    assert {(f.src, f.dst) for f in faults} == {(a, b) for a, b in itertools.permutations(N5, 2) if "n2" in (a, b)}
    assert sched[-1] == (3.0, ClearLinkFaults())


@pytest.mark.parametrize("call, message", [
    (lambda: make_schedule("partition-everything", N5, random.Random(0)), r"unknown nemesis .*one, majority, majorities-ring"),
    (lambda: make_schedule("one", N5, random.Random(0), NemesisSpec(target="n9")), r"unknown target 'n9'"),
    (lambda: NemesisSpec(duration=3.0, interval=3.0), r"duration \(3.0\) must be shorter than interval"),
    (lambda: NemesisSpec(duration=0), r"duration must be > 0"),
    (lambda: NemesisSpec(repeat=0), r"repeat must be an int >= 1"),
    (lambda: NemesisSpec(loss=1.5), r"loss must be a probability"),
    (lambda: NemesisSpec(delay=-1), r"delay must be >= 0"),
    (lambda: NemesisSpec(start=float("nan")), r"start must be a finite number"),
    (lambda: NemesisSpec(mix=("one", "nope")), r"'nope' is not a nemesis to mix"),
    (lambda: make_schedule("one", ["n1"], random.Random(0)), r"at least 2 nodes"),
    (lambda: make_schedule("majority", ["n1", "n2"], random.Random(0)), r"at least 3 nodes"),
    (lambda: make_schedule("bridge", ["n1", "n2"], random.Random(0)), r"at least 3 nodes"),
    (lambda: make_schedule("one", ["n1", "n2", "n1"], random.Random(0)), r"node names repeat: \['n1'\]"),
    (lambda: make_schedule("random-halves", N5, random.Random(0), NemesisSpec(target="n1")), r"'random-halves' takes no target"),
    (lambda: make_schedule("one", ["n1", "a/b"], random.Random(0)), r"node name"),
    (lambda: Grudge({("n1", "n1")}), r"cannot be blocked from itself"),
    (lambda: LinkFault("n1", "n1"), r"same node"),
])
def test_validation_errors_are_clear(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_apply_to_simulator_checks_the_schedule_before_scheduling_anything():
    sim, by_node, factories = build()
    with pytest.raises(ValueError, match=r"no factory for \['n2/p'\]"):
        apply_to_simulator(sim, [(1.0, Kill("n2")), (2.0, Restart("n2"))], by_node, {})
    with pytest.raises(ValueError, match=r"names node 'n9'"):
        apply_to_simulator(sim, [(1.0, Grudge({("n1", "n9")}))], by_node)
    with pytest.raises(ValueError, match="not sorted"):
        apply_to_simulator(sim, [(2.0, Heal()), (1.0, Heal())], by_node)
    assert sim.pending() == len(sim.participants())  # only the participants' start ticks


def test_every_op_writes_a_nemesis_event():
    sim, sched = run_nemesis("one", spec=NemesisSpec(target="n1", repeat=2), at=10.0)
    evs = [e for e in sim.event_log.events() if e["kind"].startswith("nemesis.")]
    assert [(e["time"], e["kind"]) for e in evs] == [(1.0, "nemesis.grudge"), (3.0, "nemesis.heal"),
                                                     (5.0, "nemesis.grudge"), (7.0, "nemesis.heal")]
    assert all(e["node"] == "chaos" and e["actor"] == "nemesis" for e in evs)
    assert evs[0]["fields"] == sched[0][1].describe()
    assert ["n1", "n2"] in evs[0]["fields"]["blocked"] and ["n2", "n1"] in evs[0]["fields"]["blocked"]
    net = [e["kind"] for e in sim.event_log.events() if e["kind"].startswith("net.")]
    assert net.count("net.cut") == 2 * 8 and net.count("net.heal") == 4


def test_describe_is_json_friendly_for_every_op():
    import json
    for op in [Grudge({("a", "b")}, "l"), Heal(), LinkFault("a", "b", loss=0.1), ClearLinkFaults(),
               Kill("a"), Restart("a"), Pause("a"), Resume("a")]:
        d = op.describe()
        assert d["op"] == op.kind and json.loads(json.dumps(d)) == d


# --------------------------------------------------------------------------
# Helpers, FaultState, fault_plans
# --------------------------------------------------------------------------

def test_islands_grudge_and_reachability():
    g = islands_grudge([["a", "b"], ["c"]], ["a", "b", "c", "d"])
    assert reachability(["a", "b", "c", "d"], g) == {"a": {"a", "b"}, "b": {"a", "b"}, "c": {"c"}, "d": {"d"}}
    assert islands_grudge([["a"]], ["a", "b", "c"]) == {("a", "b"), ("b", "a"), ("a", "c"), ("c", "a")}
    with pytest.raises(ValueError, match="two islands"):
        islands_grudge([["a"], ["a"]], ["a", "b"])
    with pytest.raises(ValueError, match="unknown node 'z'"):
        islands_grudge([["z"]], ["a", "b"])


def test_fault_state_folds_ops():
    s = FaultState()
    for op in [Grudge({("a", "b")}), LinkFault("a", "b", loss=0.2), Kill("c"), Pause("d")]:
        s.apply(op)
    assert s.grudge == {("a", "b")} and s.killed == {"c"} and s.paused == {"d"}
    assert s.blocked(["a", "b", "d"], pause_isolates=True) == {("a", "b"), ("a", "d"), ("d", "a"), ("b", "d"), ("d", "b")}
    for op in [Heal(), ClearLinkFaults(), Restart("c"), Resume("d")]:
        s.apply(op)
    assert s == FaultState()


def test_fault_plans_enforce_a_grudge_at_both_ends():
    g = Grudge(islands_grudge([["n1"]], ["n1", "n2", "n3"]))
    plans = fault_plans(["n1", "n2", "n3"], g.blocked | {("n2", "n3")})
    assert set(plans) == {"n1", "n2", "n3"} and all(isinstance(p, SetFaults) for p in plans.values())
    n1 = set(plans["n1"].rules)
    assert n1 == {FaultRule(peers=("n2",), direction="out", drop=1.0), FaultRule(peers=("n3",), direction="out", drop=1.0),
                  FaultRule(peers=("n2",), direction="in", drop=1.0), FaultRule(peers=("n3",), direction="in", drop=1.0)}
    assert FaultRule(peers=("n3",), direction="out", drop=1.0) in plans["n2"].rules
    assert FaultRule(peers=("n2",), direction="in", drop=1.0) in plans["n3"].rules
    assert FaultRule(peers=("n2",), direction="out", drop=1.0) not in plans["n3"].rules  # n3 -> n2 stays up
    # and the transport's FaultPlan really drops what the grudge blocks, at either end
    rng = random.Random(0)
    assert FaultPlan.from_message(plans["n2"]).decide("n3", "out", rng)[0] == ()
    assert FaultPlan.from_message(plans["n3"]).decide("n2", "in", rng)[0] == ()
    assert FaultPlan.from_message(plans["n3"]).decide("n2", "out", rng)[0] == (0.0,)


def test_fault_plans_put_link_faults_at_the_sender_after_the_drops():
    plans = fault_plans(["a", "b", "c"], {("a", "c")}, [LinkFault("a", "b", loss=0.25, delay=0.2, jitter=0.1, duplicate=0.3, reorder=0.4)])
    assert plans["a"].rules == [FaultRule(peers=("c",), direction="out", drop=1.0),
                                FaultRule(peers=("b",), direction="out", drop=0.25, delay=0.2, jitter=0.1, duplicate=0.3, reorder=0.4)]
    assert plans["b"].rules == []
    assert fault_plans(["a", "b"], set()) == {"a": SetFaults(), "b": SetFaults()}
    with pytest.raises(ValueError, match="unknown node 'z'"):
        fault_plans(["a", "b"], {("a", "z")})


def test_every_nemesis_is_registered_and_pure():
    assert set(NEMESES) == {"one", "majority", "majorities-ring", "bridge", "random-halves", "asymmetric",
                            "flaky", "slow", "duplicate", "reorder", "kill", "pause", "mix", "split-site"}
    for name, fn in NEMESES.items():
        a = make_schedule(name, N5, random.Random(4), NemesisSpec(repeat=3))
        b = fn(N5, random.Random(4), NemesisSpec(repeat=3))
        assert described(a) == described(b), name
        assert [t for t, _ in a] == sorted(t for t, _ in a), name
