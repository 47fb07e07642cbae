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


def test_the_target_monitor_takes_a_decision_on_once_durably_before_its_reboot_and_never_again():
    from protocols.consensus import Persist
    from protocols.rack.messages import Execute, ExecuteAck

    m = monitor("d0s0r1", durable={"monitor": {"cond_seq": 1}})  # a disk: no rejoin
    m.tick(0.0)
    auth, ctl = "mon-d0s0r0/monitor", "rack-d0s0r1/control"
    ex = Execute("d0s0", 2, "reboot:d0s0r1:1", "d0s0r1", "reboot", "d0s0r0", 1.2)
    eff = m.handle(ex, auth, 1.0)
    kinds = [type(e).__name__ if not isinstance(e, Emit) else e.kind for e in eff]
    assert kinds == ["Persist", "control.executed", "Send", "Send"], kinds  # durable before the Reboot leaves
    assert eff[0].data["executed"]["reboot:d0s0r1:1"]["state"] == "pending"
    (reboot,) = [e for e in eff if isinstance(e, Send) and isinstance(e.msg, Reboot)]
    assert reboot.to == ctl and (reboot.msg.group, reboot.msg.term, reboot.msg.decision) == ("d0s0", 2, "reboot:d0s0r1:1")
    ack = lambda effects: [(e.to, e.msg.outcome) for e in effects if isinstance(e, Send) and isinstance(e.msg, ExecuteAck)]
    assert ack(eff) == [(auth, "pending")]
    # the same decision again (the authority's retry, or its successor's): answered from the record, no Reboot
    eff = m.handle(Execute("d0s0", 3, "reboot:d0s0r1:1", "d0s0r1", "reboot", "d0s0r2", 1.3), "mon-d0s0r2/monitor", 1.1)
    assert ack(eff) == [("mon-d0s0r2/monitor", "pending")] and not [e for e in eff if isinstance(e, Send) and isinstance(e.msg, Reboot)]
    # no acknowledgement from the control: resent, backing off
    resent = [t for t in (1.05, 1.1, 1.15, 1.2, 1.25, 1.3, 1.35, 1.4, 1.45, 1.5)
              if any(isinstance(e, Send) and isinstance(e.msg, Reboot) for e in m._drive_control(t))]
    gaps = [round(b - a, 2) for a, b in zip(resent, resent[1:])]
    assert resent[0] == 1.1 and gaps == [0.15, 0.2], resent  # every 0.1, 0.2, ... (on 0.05 s beats)
    eff = m.handle(RebootAck("d0s0r1", "reboot:d0s0r1:1", "rebooting"), ctl, 1.5)
    assert isinstance(eff[0], Persist) and eff[0].data["executed"]["reboot:d0s0r1:1"]["state"] == "done"
    assert ack(eff) == [(auth, "done")]
    assert not m._drive_control(9.0), "acknowledged: no more resends"
    # restarted from that disk: never again, answered done
    m2 = monitor("d0s0r1", durable={"monitor": eff[0].data})
    assert not [e for e in m2.tick(10.0) if isinstance(e, Send) and isinstance(e.msg, Reboot)]
    eff = m2.handle(ex, auth, 10.1)
    assert ack(eff) == [(auth, "done")] and not [e for e in eff if isinstance(e, Send) and isinstance(e.msg, Reboot)]
    # an older decision is superseded; a stale term or an expired lease is refused; bad input is said
    eff = m2.handle(Execute("d0s0", 2, "reboot:d0s0r1:0", "d0s0r1", "reboot", "d0s0r0", 99.0), auth, 10.2)
    assert ack(eff)[0][1] == "skipped" and "superseded" in ack_reason(eff)
    eff = m2.handle(Execute("d0s0", 2, "reboot:d0s0r1:4", "d0s0r1", "reboot", "d0s0r0", 10.0), auth, 10.3)
    assert ack(eff) == [(auth, "stale")] and "lease" in ack_reason(eff)
    for bad, sender in ((Execute("d0s0", 2, "reboot:d0s0r2:4", "d0s0r1", "reboot", "d0s0r0", 99.0), auth),
                        (Execute("d0s0", 2, "reboot:d0s0r1:4", "d0s0r1", "reboot", "d0s0r0", 99.0), "mon-d1s0r0/monitor"),
                        (Execute("d1s0", 2, "reboot:d0s0r1:4", "d0s0r1", "reboot", "d0s0r0", 99.0), auth)):
        eff = m2.handle(bad, sender, 10.4)
        assert [e.kind for e in eff if isinstance(e, Emit)] == ["monitor.bad_input"] and not ack(eff), bad


def ack_reason(effects) -> str:
    from protocols.rack.messages import ExecuteAck
    return " ".join(e.msg.reason for e in effects if isinstance(e, Send) and isinstance(e.msg, ExecuteAck))


def test_a_reboot_window_turns_silence_into_rebooting_then_powered_off():
    m = monitor("d0s0r1", durable={"monitor": {"cond_seq": 1}}, status_deadline=0.6, reboot_window=1.5)
    m.tick(0.0)
    m.handle(Status("d0s0r1", 1, {"os_errors": 9}), "rack-d0s0r1/control", 0.1)
    assert m.detector.state == "needs-troubleshooting"
    m.rebooting_until = 0.2 + m.reboot_window  # as when it sent its Reboot at 0.2
    m.handle(TimerFired("mon|deadline"), "self", 0.7)
    assert m.detector.state == "rebooting"
    m.handle(TimerFired("mon|deadline"), "self", 1.8)
    assert m.detector.state == "powered-off", "silence past the window is a power loss again"
