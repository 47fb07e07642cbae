"""The failure detector on virtual time: the detection bound, restarts, goodbyes."""

from __future__ import annotations

import pytest

from transport.liveness import FailureDetector, PeerState

UP, DOWN = PeerState.UP, PeerState.DOWN


def run_ticks(fd: FailureDetector, start: float, end: float):
    """Tick every interval from start to end, collecting DOWN changes with their times."""
    out = []
    t = start
    while t <= end + 1e-9:
        out += [(round(t, 6), c) for c in fd.check(t)]
        t += fd.interval
    return out


@pytest.mark.parametrize("interval,liveness", [(0.5, 4), (0.1, 3), (1.0, 2)])
def test_silent_peer_is_down_within_the_bound_and_not_before_the_timeout(interval, liveness):
    fd = FailureDetector(interval, liveness)
    fd.add("b", 0.0)
    fd.heard("b", 0.0, incarnation=7)
    last_heard = 0.3  # between two ticks: the worst case for the bound
    fd.heard("b", last_heard)
    downs = run_ticks(fd, 0.0, 20.0)
    assert len(downs) == 1, "a down peer is reported once"
    t, change = downs[0]
    assert change.state is DOWN and change.reason == "silent" and change.incarnation == 7
    assert t - last_heard > fd.timeout, "reported before the peer was silent for the timeout"
    assert t - last_heard <= fd.bound, "reported later than the advertised bound"
    assert fd.bound == interval * (liveness + 1)


def test_default_detection_is_within_three_seconds():
    assert FailureDetector().bound <= 3.0


def test_any_traffic_keeps_a_peer_up():
    fd = FailureDetector(0.5, 4)
    fd.heard("b", 0.0, incarnation=1)
    for k in range(1, 40):          # data every 1.5 s, no heartbeats at all
        t = k * 1.5
        fd.heard("b", t)
        assert fd.check(t + 0.4) == []
    assert fd.state("b") is UP


def test_never_heard_peer_goes_down_after_the_timeout():
    fd = FailureDetector(0.5, 4)
    fd.add("ghost", 10.0)
    assert fd.state("ghost") is PeerState.UNKNOWN
    assert fd.check(11.9) == []
    (change,) = fd.check(12.1)
    assert change.peer == "ghost" and change.state is DOWN and change.incarnation == 0


def test_restart_is_a_new_incarnation_reported_down_then_up():
    fd = FailureDetector()
    assert [c.state for c in fd.heard("b", 0.0, incarnation=1)] == [UP]
    changes = fd.heard("b", 0.7, incarnation=2)
    assert [(c.state, c.incarnation, c.reason) for c in changes] == [(DOWN, 1, "restarted"), (UP, 2, "heard")]
    assert fd.incarnation("b") == 2


def test_down_peer_heard_again_comes_back_up():
    fd = FailureDetector(0.5, 2)
    fd.heard("b", 0.0, incarnation=5)
    assert [c.state for c in fd.check(1.5)] == [DOWN]
    assert [(c.state, c.incarnation) for c in fd.heard("b", 2.0, incarnation=5)] == [(UP, 5)]


def test_goodbye_takes_a_peer_down_at_once():
    fd = FailureDetector()
    fd.heard("b", 0.0, incarnation=3)
    (change,) = fd.left("b")
    assert change.state is DOWN and change.reason == "left"
    assert fd.left("b") == [] and fd.check(100.0) == []


@pytest.mark.parametrize("kwargs", [{"interval": 0}, {"interval": -1}, {"liveness": 0}, {"liveness": 1.5}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        FailureDetector(**kwargs)
