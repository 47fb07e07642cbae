"""Fault plans decide, per peer and direction, whether and when a message passes."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from transport.codec import decode, encode
from transport.faults import ClearFaults, FaultPlan, FaultRule, SetFaults


def decide_many(plan, peer="b", direction="out", n=2000, seed=1):
    rng = random.Random(seed)
    return [plan.decide(peer, direction, rng) for _ in range(n)]


def test_empty_plan_passes_everything_now():
    plan = FaultPlan()
    assert not plan
    assert set(d for d, _ in decide_many(plan)) == {(0.0,)}


def test_partition_drops_both_directions_for_named_nodes_only():
    plan = FaultPlan(partition=["b"])
    assert plan.decide("b", "out", random.Random(0)) == ((), "partition")
    assert plan.decide("b", "in", random.Random(0)) == ((), "partition")
    assert plan.decide("c", "out", random.Random(0)) == ((0.0,), "")


def test_drop_probability_is_respected():
    plan = FaultPlan([FaultRule(drop=0.3)])
    dropped = sum(1 for d, why in decide_many(plan) if d == () and why == "drop")
    assert 500 < dropped < 700


def test_delay_with_jitter_stays_in_range():
    plan = FaultPlan([FaultRule(delay=0.2, jitter=0.1)])
    delays = [d[0] for d, _ in decide_many(plan)]
    assert all(0.2 <= d <= 0.3 for d in delays) and len(set(delays)) > 100


def test_duplicate_gives_two_deliveries():
    plan = FaultPlan([FaultRule(duplicate=1.0)])
    assert all(len(d) == 2 and why == "duplicate" for d, why in decide_many(plan, n=50))


def test_reorder_holds_some_messages_back():
    plan = FaultPlan([FaultRule(reorder=0.5, reorder_window=0.1)])
    held = [d[0] for d, _ in decide_many(plan) if d != (0.0,)]
    assert 800 < len(held) < 1200 and all(0 < x <= 0.1 for x in held)


def test_rules_filter_by_peer_and_direction_and_the_first_match_wins():
    plan = FaultPlan([FaultRule(peers=("b",), direction="in", drop=1.0), FaultRule(delay=1.0)])
    rng = random.Random(0)
    assert plan.decide("b", "in", rng) == ((), "drop")
    assert plan.decide("b", "out", rng) == ((1.0,), "")
    assert plan.decide("c", "in", rng) == ((1.0,), "")


def test_plans_travel_as_messages():
    msg = SetFaults([FaultRule(peers=("b", "c"), drop=0.5, delay=0.1)], ["d"])
    again = decode(encode(msg))
    assert again == msg
    plan = FaultPlan.from_message(again)
    assert plan.partition == {"d"} and plan.rules[0].peers == ("b", "c")
    assert decode(encode(ClearFaults())) == ClearFaults()


@pytest.mark.parametrize("kwargs", [{"drop": 1.5}, {"duplicate": -0.1}, {"delay": -1.0}, {"reorder_window": -2.0}])
def test_bad_rules_are_refused(kwargs):
    with pytest.raises(ValueError):
        FaultRule(**kwargs)


def test_decisions_depend_only_on_the_seed():
    plan = FaultPlan([FaultRule(drop=0.2, duplicate=0.2, reorder=0.2, jitter=0.01)])
    assert decide_many(plan, seed=5) == decide_many(plan, seed=5)
    assert decide_many(plan, seed=5) != decide_many(plan, seed=6)
    assert Counter(why for _, why in decide_many(plan))["drop"] > 0
