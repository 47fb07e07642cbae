"""Pure policies of the workflow protocol (protocols/workflow/policy.py).

Source: shared/seeds/000_6042360d9d71bd38.txt, FIG. 4 (blocks 404-408: availability,
history, the directed state by expected unavailability; adjusting the maximum
number of accessing servers) and the server states (pending, parking, dormant).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.workflow.messages import Directive
from protocols.workflow.policy import (
    AimdParams,
    History,
    IllegalTransition,
    Thresholds,
    WindowMetrics,
    aimd_step,
    check_transition,
    delivery_ratio,
    directive_for,
    holder_deadline,
    lease_expires_at,
    predict_wait,
    renew_interval,
)

# -- directive by predicted wait (FIG. 4 block 408) ------------------------------------------


def test_short_wait_pending_medium_parking_long_dormant():
    th = Thresholds(pending_max=20.0, parking_max=120.0)
    assert directive_for(0.0, th) is Directive.PENDING
    assert directive_for(20.0, th) is Directive.PENDING
    assert directive_for(20.01, th) is Directive.PARKING
    assert directive_for(120.0, th) is Directive.PARKING
    assert directive_for(120.01, th) is Directive.DORMANT
    assert directive_for(math.inf, th) is Directive.DORMANT


def test_thresholds_must_be_ordered():
    with pytest.raises(ValueError):
        Thresholds(pending_max=50.0, parking_max=10.0)
    with pytest.raises(ValueError):
        Thresholds(pending_max=-1.0, parking_max=10.0)


@given(st.floats(0, 1e6), st.floats(0, 1e6))
def test_directive_is_monotone_in_wait(a, b):
    order = [Directive.PENDING, Directive.PARKING, Directive.DORMANT]
    lo, hi = sorted((a, b))
    assert order.index(directive_for(lo)) <= order.index(directive_for(hi))


# -- wait prediction (history, queue position, current limit) -----------------------------------


def test_no_wait_while_a_slot_is_free_for_this_position():
    assert predict_wait(ahead=0, limit=10, busy=9, mean_duration=30.0) == 0.0
    assert predict_wait(ahead=2, limit=10, busy=7, mean_duration=30.0) == 0.0


def test_wait_is_position_over_release_rate():
    # every slot busy: the first in line needs 1 release; slots free at limit / mean per second
    assert predict_wait(ahead=0, limit=50, busy=50, mean_duration=30.0) == pytest.approx(30.0 / 50)
    assert predict_wait(ahead=99, limit=50, busy=50, mean_duration=30.0) == pytest.approx(100 * 30.0 / 50)
    # a lowered limit below the holders: more releases are needed first
    assert predict_wait(ahead=0, limit=40, busy=50, mean_duration=30.0) == pytest.approx(11 * 30.0 / 40)


def test_zero_limit_means_an_infinite_wait_and_bad_input_is_refused():
    assert predict_wait(0, 0, 0, 30.0) == math.inf
    with pytest.raises(ValueError):
        predict_wait(-1, 10, 0, 30.0)


@given(st.integers(0, 5000), st.integers(1, 500), st.integers(0, 600), st.floats(0.1, 1000))
def test_wait_grows_with_position_and_shrinks_with_limit(ahead, limit, busy, mean):
    w = predict_wait(ahead, limit, busy, mean)
    assert w >= 0
    assert predict_wait(ahead + 1, limit, busy, mean) >= w
    assert predict_wait(ahead, limit + 1, busy, mean) <= w + 1e-9


# -- leases ------------------------------------------------------------------------------------------


def test_lease_arithmetic():
    assert lease_expires_at(100.0, 30.0) == 130.0
    assert holder_deadline(100.0, 30.0, 0.1) == pytest.approx(127.0)
    assert renew_interval(30.0, 3) == 10.0
    with pytest.raises(ValueError):
        holder_deadline(0.0, 30.0, 1.0)
    with pytest.raises(ValueError):
        renew_interval(30.0, 0)


@settings(max_examples=200)
@given(st.floats(0, 1e5), st.floats(0, 100), st.floats(0.01, 300), st.floats(0, 0.5))
def test_holder_always_stops_before_the_controller_reuses_the_slot(stamp, delay, ttl, margin):
    """The holder's clock starts at the stamp of what it sent, before the controller's renewal time."""
    renewed_at = stamp + delay  # the controller received the message later
    assert holder_deadline(stamp, ttl, margin) <= lease_expires_at(renewed_at, ttl)


# -- adaptive limit: AIMD (FIG. 4: raise at the maximum with availability, lower when metrics drop) ------


P = AimdParams()


def test_decrease_on_errors_latency_or_bandwidth():
    assert aimd_step(50, WindowMetrics(error_rate=0.2), P) == (45, "errors")
    assert aimd_step(50, WindowMetrics(latency_ratio=1.6), P) == (45, "latency")
    # over capacity: the resource measured its capacity; the limit goes down to it, by one to one backoff
    assert aimd_step(50, WindowMetrics(utilization=1.3), P) == (45, "bandwidth")  # 38 would be more than a step
    assert aimd_step(50, WindowMetrics(utilization=1.01), P) == (49, "bandwidth")
    assert aimd_step(57, WindowMetrics(utilization=1.2, recent_utilization=1.14, capacity=50.0), P) == (51, "bandwidth")
    assert aimd_step(51, WindowMetrics(utilization=1.1, recent_utilization=1.02, capacity=50.0), P) == (50, "bandwidth")
    # errors are named first when several metrics sag
    assert aimd_step(50, WindowMetrics(error_rate=0.5, latency_ratio=3.0), P) == (45, "errors")


def test_no_second_decrease_until_holders_come_down_to_the_limit():
    assert aimd_step(72, WindowMetrics(latency_ratio=1.6, settled=False), P) == (72, None)
    assert aimd_step(72, WindowMetrics(latency_ratio=1.6, settled=True), P) == (64, "latency")


def test_decrease_never_goes_below_the_minimum():
    p = AimdParams(min_limit=5)
    assert aimd_step(5, WindowMetrics(error_rate=1.0), p) == (5, None)
    assert aimd_step(6, WindowMetrics(error_rate=1.0), p) == (5, "errors")


def test_increase_only_at_the_limit_with_headroom_for_one_more():
    quiet = {"error_rate": 0.0, "latency_ratio": 1.0}
    assert aimd_step(30, WindowMetrics(utilization=0.6, at_limit=True, **quiet), P) == (31, "headroom")
    # 50 holders at 98% use: one more would need 99.96% -> still fits
    assert aimd_step(50, WindowMetrics(utilization=0.98, at_limit=True, **quiet), P) == (51, "headroom")
    # full: no room for one more
    assert aimd_step(50, WindowMetrics(utilization=1.0, at_limit=True, **quiet), P) == (50, None)
    # not at the limit: no evidence the limit is what holds servers back
    assert aimd_step(30, WindowMetrics(utilization=0.6, at_limit=False, **quiet), P) == (30, None)
    # latency already rising: hold
    assert aimd_step(30, WindowMetrics(utilization=0.6, at_limit=True, error_rate=0.0, latency_ratio=1.2), P) == (30, None)
    # no resource report (no utilization): never raise
    assert aimd_step(30, WindowMetrics(at_limit=True, error_rate=0.0), P) == (30, None)


def test_limit_outside_bounds_is_clamped():
    p = AimdParams(min_limit=2, max_limit=60)
    assert aimd_step(100, WindowMetrics(), p) == (60, "bounds")
    assert aimd_step(1, WindowMetrics(), p) == (2, "bounds")
    assert aimd_step(60, WindowMetrics(utilization=0.1, at_limit=True, error_rate=0.0), p) == (60, None)


def test_aimd_constants_are_checked():
    with pytest.raises(ValueError):
        AimdParams(backoff=1.0)
    with pytest.raises(ValueError):
        AimdParams(min_limit=10, max_limit=5)


@given(st.integers(1, 10_000), st.floats(0, 1), st.floats(0.5, 5), st.floats(0, 2), st.booleans(), st.booleans())
def test_aimd_moves_by_at_most_one_step(limit, err, lat, util, at_limit, settled):
    new, reason = aimd_step(limit, WindowMetrics(err, lat, util, at_limit, settled), P)
    assert P.min_limit <= new <= P.max_limit
    step = max(1, math.floor(limit * 0.9))
    if reason in ("errors", "latency"):
        assert new == step
    elif reason == "bandwidth":  # down to the measured capacity: by at least one, by no more than one backoff
        assert step <= new <= limit - 1
    else:
        assert new in (limit, limit + 1)
    assert (reason is None) == (new == limit)


# -- history ----------------------------------------------------------------------------------------------


def test_history_keeps_durations_and_outcomes_per_stage():
    h = History(size=4)
    assert h.mean("image", default=30.0) == 30.0 and h.predicted(default=7.0) == 7.0
    for d in (10.0, 20.0, 30.0):
        h.record("image", d)
    h.record("image", 99.0, "failed")  # a failure has no useful duration
    h.record("drivers", 4.0)
    assert h.mean("image") == 20.0
    assert h.predicted("image") == 20.0
    assert h.mean() == pytest.approx(64.0 / 4)
    assert h.samples("image") == 3 and h.samples() == 4
    assert h.success_rate("image") == 0.75
    assert h.success_rate("nothing") is None
    for d in (40.0, 50.0):
        h.record("image", d)
    assert h.samples("image") == 4  # bounded: the oldest went
    assert h.predicted("image") == pytest.approx(35.0)


def test_delivery_ratio_flags_a_resource_that_delivers_below_its_history():
    # 50 holders, 30 s stages: 50 completions expected in 30 s
    assert delivery_ratio(50, 30.0, 50.0, 30.0) == pytest.approx(1.0)
    assert delivery_ratio(20, 30.0, 50.0, 30.0) == pytest.approx(0.4)
    # too little expected to judge
    assert delivery_ratio(0, 30.0, 2.0, 30.0) is None
    assert delivery_ratio(0, 0.0, 50.0, 30.0) is None


def test_check_transition_is_loud():
    table = {"a": frozenset({"b"}), "b": frozenset()}
    check_transition(table, "a", "b")
    with pytest.raises(IllegalTransition, match="b -> a"):
        check_transition(table, "b", "a", "thing")


def test_headroom_is_judged_on_the_recent_load_not_the_windows_mean():
    """A window that ramped up (mean load 0.6) but ends at capacity (1.0) has no headroom for one more."""
    ramp = WindowMetrics(utilization=0.6, recent_utilization=1.0, at_limit=True, latency_ratio=1.0)
    assert aimd_step(50, ramp, P) == (50, None)
    calm = WindowMetrics(utilization=0.6, recent_utilization=0.9, at_limit=True, latency_ratio=1.0)
    assert aimd_step(50, calm, P) == (51, "headroom")


def test_with_a_measured_capacity_headroom_means_one_more_holder_fits_in_it():
    at_cap = WindowMetrics(utilization=0.98, recent_utilization=0.98, at_limit=True, latency_ratio=1.0, capacity=50.0)
    assert aimd_step(50, at_cap, P) == (50, None)  # 49 in flight of 50 (a holder between stages): no 51st
    below = WindowMetrics(utilization=0.9, recent_utilization=0.9, at_limit=True, latency_ratio=1.0, capacity=50.0)
    assert aimd_step(45, below, P) == (46, "headroom")
