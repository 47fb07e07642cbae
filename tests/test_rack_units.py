"""Unit tests of the rack-monitor pieces, driven directly (no simulator): layout, detector (FIG. 5),
rack control, instance groups and the lease rule of RackMonitor."""

from __future__ import annotations

import random

import pytest

from protocols.consensus import Prepare
from protocols.consensus.ballot import Ballot
from protocols.core import Emit, Send, TimerFired
from protocols.rack import FaultDetector, Layout, RackControl, RackMonitor
from protocols.rack.messages import Heartbeat, HeartbeatAck, Reboot, RebootAck, RejoinReply, SetMetrics, Status

LAYOUT = {"dcs": 2, "sectors": 2, "racks": 3}


def monitor(rack: str = "d0s0r0", **kw) -> RackMonitor:
    L = Layout(**LAYOUT)
    return RackMonitor(rack, LAYOUT, L.monitor(rack), random.Random(0), **kw)


def test_layout_names_levels_and_seats():
    L = Layout(**LAYOUT)
    assert L.all_racks()[:3] == ["d0s0r0", "d0s0r1", "d0s0r2"] and len(L.all_racks()) == 12
    assert (L.sector_of("d1s0r2"), L.dc_of("d1s0r2")) == ("d1s0", "d1")
    assert [L.level(g) for g in ("d0s1", "d1", "fleet")] == ["sector", "dc", "fleet"]
    assert L.seats("d1") == ["d1s0", "d1s1"] and L.seats("fleet") == ["d0", "d1"]
    assert L.parent("d0s1") == "d0" and L.parent("d0") == "fleet" and L.parent("fleet") is None
    with pytest.raises(ValueError, match="outside the layout"):
        L.check_rack("d2s0r0")
    with pytest.raises(ValueError):
        L.level("d0s9")
    packed = Layout(2, 2, 3, monitor_fmt="mon-{dc}c{r}/{rack}")
    assert packed.monitor("d1s1r2") == "mon-d1c2/d1s1r2" and packed.rack_of_monitor("mon-d1c2/d1s1r2") == "d1s1r2"


def test_detector_default_is_non_fault_and_rules_pick_the_kind():
    d = FaultDetector(0.5)
    assert d.state == "non-fault" and d.indicator() == ["green", "steady"]
    assert d.on_status({"temp": 90.0}, 1.0) and d.state == "needs-repair" and d.indicator() == ["red", "steady"]
    assert d.on_status({"os_errors": 9}, 1.1) and d.state == "needs-troubleshooting"
    assert d.indicator() == ["amber", "steady"]
    assert d.on_status({"cpu": 0.2}, 1.2) and d.state == "non-fault"
    assert not d.on_silence(1.6, 0.0), "silence shorter than the deadline is no fault"
    assert d.on_silence(1.7, 0.0) and d.state == "powered-off" and d.indicator() == ["red", "flashing"]


@pytest.mark.parametrize("rules", [[["temp", "!", 1, "needs-repair"]], [["temp", ">", 1, "broken"]], "x",
                                   [["temp", ">", float("nan"), "needs-repair"]]])
def test_detector_rejects_bad_rules_clearly(rules):
    with pytest.raises(ValueError, match="rule|rules"):
        FaultDetector(0.5, rules)


def test_rack_control_reports_and_reboots_once():
    c = RackControl("d0s0r0", "mon-d0s0r0/monitor", report_every=0.2, reboot_time=0.5)
    eff = c.tick(0.0)
    sends = [e for e in eff if isinstance(e, Send)]
    assert isinstance(sends[0].msg, Status) and sends[0].msg.metrics["power"] == 1.0
    c.handle(SetMetrics({"temp": 99.0}), "x", 0.1)
    assert c.handle(TimerFired("report"), "self", 0.2)[0].msg.metrics["temp"] == 99.0
    mon = "mon-d0s0r0/monitor"
    eff = c.handle(Reboot("d0s0r0", "reboot:d0s0r0:1", "d0s0r0", "d0s0", 1), mon, 0.3)
    assert outcomes(eff) == ["rebooting"] and acks(eff) == [(mon, "rebooting")]
    eff = c.handle(Reboot("d0s0r0", "reboot:d0s0r0:2", "d0s0r0", "d0s0", 1), mon, 0.35)
    assert outcomes(eff) == ["already-rebooting"] and acks(eff) == [(mon, "already-rebooting")]
    assert not [e for e in c.handle(TimerFired("report"), "self", 0.4) if isinstance(e, Send)], "silent while rebooting"
    c.handle(TimerFired("rebooted"), "self", 0.8)
    assert c.metrics["temp"] < 85.0, "healthy after the reboot"
    assert c.reboots == 1


def outcomes(effects) -> list:
    return [e.fields["outcome"] for e in effects if isinstance(e, Emit) and e.kind == "rack.reboot"]


def acks(effects) -> list:
    return [(e.to, e.msg.outcome) for e in effects if isinstance(e, Send) and isinstance(e.msg, RebootAck)]


def test_rack_control_refuses_duplicate_and_stale_tokens_counts_them_and_acknowledges():
    c = RackControl("d0s0r0", "mon-d0s0r0/monitor", report_every=0.2, reboot_time=0.5)
    c.tick(0.0)
    mon = "mon-d0s0r0/monitor"
    assert outcomes(c.handle(Reboot("d0s0r0", "reboot:d0s0r0:3", "d0s0r0", "d0s0", 2), mon, 0.1)) == ["rebooting"]
    c.handle(TimerFired("rebooted"), "self", 0.6)
    # the same decision again, after the reboot (a retry whose ack was lost): a duplicate, not a second reboot
    eff = c.handle(Reboot("d0s0r0", "reboot:d0s0r0:3", "d0s0r0", "d0s0", 2), mon, 1.0)
    assert outcomes(eff) == ["duplicate"] and acks(eff) == [(mon, "duplicate")]
    # an older token: a lower term, or the same term and an older condition seq
    for term, seq in ((1, 7), (2, 2)):
        eff = c.handle(Reboot("d0s0r0", f"reboot:d0s0r0:{seq}", "d0s0r0", "d0s0", term), mon, 1.1)
        assert outcomes(eff) == ["stale"] and acks(eff) == [(mon, "stale")], (term, seq)
    assert c.reboots == 1 and c.refused == {"duplicate": 1, "stale": 2, "bad_input": 0}
    # a newer token is obeyed
    assert outcomes(c.handle(Reboot("d0s0r0", "reboot:d0s0r0:5", "d0s0r0", "d0s0", 2), mon, 1.2)) == ["rebooting"]
    # only the rack's own monitor may order a reboot, and only a well-formed one for this rack
    for msg, sender in ((Reboot("d0s0r0", "reboot:d0s0r0:9", "d0s0r1", "d0s0", 3), "mon-d0s0r1/monitor"),
                        (Reboot("d0s0r0", "reboot:d0s0r1:9", "d0s0r0", "d0s0", 3), mon),
                        (Reboot("d0s0r0", "reboot:d0s0r0:x", "d0s0r0", "d0s0", 3), mon)):
        eff = c.handle(msg, sender, 1.3)
        assert [e.kind for e in eff if isinstance(e, Emit)] == ["rack.bad_input"] and not acks(eff), msg
    assert c.reboots == 2 and c.refused["bad_input"] == 3
    # the remembered decisions are bounded; forgotten ones are still refused by the fence
    c2 = RackControl("d0s0r0", mon, remember=2)
    for seq in (1, 2, 3):
        c2.handle(Reboot("d0s0r0", f"reboot:d0s0r0:{seq}", "d0s0r0", "d0s0", 1), mon, float(seq))
    assert len(c2.obeyed) == 2
    assert outcomes(c2.handle(Reboot("d0s0r0", "reboot:d0s0r0:1", "d0s0r0", "d0s0", 1), mon, 9.0)) == ["stale"]


def test_instance_groups_are_fixed_by_the_instance_name():
    m = monitor()
    assert m.members_of("d0s0|condition|d0s0r1|1").members == tuple(Layout(**LAYOUT).sector_members("d0s0"))
    q = m.members_of("d0@d0s0r0,d0s1r2|authority|1")
    assert q.members == ("mon-d0s0r0/monitor", "mon-d0s1r2/monitor") and q.size == 2
    assert m.members_of("d0@d0s0r0,|authority|1") is None, "fewer known seats than a quorum: no group"
    assert m.members_of("d0@d0s1r0,d0s1r2|authority|1") is None, "a holder in the wrong seat"
    assert m.members_of("d0@d0s0r0,d0s1r2,d0s1r1|x|1") is None, "wrong number of seats"
    assert m.members_of("nonsense|x|1") is None


def test_a_member_refuses_to_designate_while_it_promised_a_lease():
    m = monitor("d0s0r1", lease=0.25, heartbeat_every=0.05)
    m.tick(0.0)
    for peer in ("mon-d0s0r0/monitor", "mon-d0s0r2/monitor"):  # started on an empty disk: rejoin first
        m.handle(RejoinReply("d0s0r1", 0.0, {}), peer, 0.01)
    assert not m.rejoining
    auth = "mon-d0s0r0/monitor"
    eff = m.handle(Heartbeat("d0s0", 1, "d0s0r0", 0.5), auth, 0.5)
    assert any(isinstance(e, Send) and isinstance(e.msg, HeartbeatAck) for e in eff)
    other = "mon-d0s0r2/monitor"
    eff = m.handle(Prepare("d0s0|authority|2", Ballot(3, other)), other, 0.6)
    assert [e.fields["reason"] for e in eff if isinstance(e, Emit)] == ["lease promised to the current authority"]
    eff = m.handle(Prepare("d0s0|authority|2", Ballot(3, other)), other, 0.8)
    assert not any(isinstance(e, Emit) and e.kind == "authority.refused" for e in eff), "after the lease: a promise"
    assert any(isinstance(e, Send) and type(e.msg).__name__ == "Promise" for e in eff)


def test_a_restarted_monitor_keeps_quiet_for_a_lease():
    m = monitor("d0s0r1", lease=0.25, durable={"monitor": {"cond_seq": 3, "executed": []}})
    m.tick(10.0)
    assert m.cond_seq == 3
    other = "mon-d0s0r2/monitor"
    eff = m.handle(Prepare("d0s0|authority|5", Ballot(9, other)), other, 10.1)
    assert [e.fields["reason"] for e in eff if isinstance(e, Emit)] == ["quiet period (restart or new seat)"]
