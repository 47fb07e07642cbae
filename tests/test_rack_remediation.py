"""Exactly-once remediation of rack monitors (issue 17, deliverable 2), in the simulator.

A reboot decision travels from the sector's acting authority over the mesh to
the target rack's own monitor (``Execute``), which records it durably, drives
its control over the rack-local link until the control acknowledges, and never
carries a decision out twice; the control refuses stale and duplicate fencing
tokens. Every run is judged by the rack checkers; every assertion names its seed.
"""

from __future__ import annotations

import json

import pytest

from tests.rack_sim import RackFleet
from topologies.checkers import run_checkers

RACK_CHECKERS = ("paxos-one-value", "one-authority-per-ballot", "fault-detected-in-time", "fleet-agreement",
                 "control-once")


def verdicts(f: RackFleet, must_be_valid=("paxos-one-value", "one-authority-per-ballot", "control-once")) -> dict:
    out = {v.checker: v for v in run_checkers(f.events()) if v.checker in RACK_CHECKERS}
    for name, v in out.items():
        assert v.status != "invalid", f"seed={f.seed}: {name} invalid: {v.summary} {v.evidence[:3]}"
        if name in must_be_valid:
            assert v.status == "valid", f"seed={f.seed}: {name} {v.status}: {v.summary}"
    return out


def reboots(f: RackFleet, rack: str) -> list[dict]:
    """The times the rack's control really rebooted its hosts."""
    return [e for e in f.events("rack.reboot") if e["fields"]["rack"] == rack and e["fields"]["outcome"] == "rebooting"]


def sector_authority(f: RackFleet, sector: str) -> str:
    (a,) = f.authority(sector)
    return a


# --------------------------------------------------------------------------
# A stale troubleshooting fact (audit App. C): no reboot of a rack agreed healthy
# --------------------------------------------------------------------------

@pytest.mark.parametrize("seed,heal", [(0, 2.2), (1, 2.45), (2, 2.7), (0, 2.95)])
def test_a_stale_troubleshooting_fact_never_reboots_a_rack_agreed_healthy(seed, heal):
    """The authority learns the troubleshooting fact (seq 1) only after the sector agreed the rack is
    healthy again (seq 2): the old code proposed and executed the reboot anyway (48 of 48 runs)."""
    f = RackFleet(seed, 1, 1, 3)
    f.run(1.5)
    auth = sector_authority(f, "d0s0")
    rack = next(r for r in f.racks if r != auth)
    f.sim.cut(f.layout.monitor(rack).split("/")[0], f.layout.monitor(auth).split("/")[0])
    f.at(1.6, f.set_metrics, rack, os_errors=9)
    f.at(1.9, f.set_metrics, rack, os_errors=0)
    f.at(heal, f.sim.heal)
    f.run(6.0)
    conds = [(e["fields"]["seq"], e["fields"]["condition"]) for e in f.events("monitor.condition")
             if e["fields"]["rack"] == rack]
    assert conds[:2] == [(1, "needs-troubleshooting"), (2, "non-fault")], f"seed={seed} heal={heal}: {conds}"
    assert reboots(f, rack) == [], f"seed={seed} heal={heal}: a rack agreed healthy was rebooted"
    assert not f.events("control.executed"), f"seed={seed} heal={heal}: {f.events('control.executed')}"
    v = verdicts(f, must_be_valid=("paxos-one-value", "one-authority-per-ballot"))
    assert v["control-once"].status != "invalid"


def node(address: str) -> str:
    return address.split("/")[0]


def troubled(seed: int, sectors: int = 2, racks: int = 3, **kw) -> tuple[RackFleet, str, str]:
    """A fleet of 1 data center; at 1.5 s a rack that is not its sector's authority needs troubleshooting.
    Returns (fleet, that rack, the sector's authority at 1.4 s)."""
    f = RackFleet(seed, 1, sectors, racks, **kw)
    f.run(1.4)
    sector = f"d0s{seed % sectors}"
    auth = sector_authority(f, sector)
    rack = next(r for r in f.racks if f.layout.sector_of(r) == sector and r != auth)
    f.at(1.5, f.set_metrics, rack, os_errors=9)
    return f, rack, auth


def once(f: RackFleet, rack: str, what: str) -> None:
    got = reboots(f, rack)
    assert len(got) == 1, f"seed={f.seed}: {what}: {rack} rebooted {len(got)} times: {got}"
    executed = [e["fields"]["decision"] for e in f.events("control.executed")]
    assert executed == [got[0]["fields"]["decision"]], f"seed={f.seed}: {what}: executed {executed}"


# --------------------------------------------------------------------------
# A lost Reboot, a lost Execute or ack
# --------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(2))
def test_a_lost_reboot_is_resent_until_the_control_acknowledges(seed):
    """Every Reboot to the rack's control is lost for 1.3 s (its Status still flows): the old executor
    sent one and never again; the target's monitor now retries its control and the rack reboots once."""
    f, rack, _auth = troubled(seed)
    for m in f.monitor_net:
        f.at(1.45, f.sim.cut, m, "rack-" + rack)
    f.at(2.8, f.sim.heal)
    f.run(7.0)
    once(f, rack, "lost Reboot")
    assert reboots(f, rack)[0]["time"] >= 2.8
    assert f.monitor("d0s0r0").known[rack][2]["condition"] == "non-fault", f"seed={seed}: healthy again fleet-wide"
    verdicts(f)


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("lost", ["execute", "ack"])
def test_a_lost_execute_or_ack_is_retried_until_the_target_acknowledges(seed, lost):
    """The authority's path to the rack's control is the mesh to the target's monitor: with every other
    monitor cut from the control (the host network) and the Execute (or its acknowledgements) lost for a
    while, the authority retries with backoff; the rack is rebooted exactly once."""
    f, rack, auth = troubled(seed)
    for m in f.monitor_net:
        if m != node(f.layout.monitor(rack)):
            f.at(1.45, f.sim.cut, m, "rack-" + rack)  # no Reboot can come from a foreign monitor
    src, dst = node(f.layout.monitor(auth)), node(f.layout.monitor(rack))
    if lost == "ack":
        src, dst = dst, src
    if lost == "execute":
        f.at(1.45, f.sim.cut, src, dst)
    else:  # once the decision is proposed (the target's fact reached the authority), the target's acks
        run_until(f, "control.proposed", 3.0)
        f.sim.cut(src, dst)
        run_until(f, "control.executed", 3.0)  # and the control's ack too, once the Reboot left
        f.sim.cut("rack-" + rack, src)
        f.at(f.sim.now + 0.4, f.sim.heal)
    f.at(3.0, f.sim.heal)
    f.run(7.0)
    once(f, rack, f"lost {lost}")
    sent = [e for e in f.events("control.acknowledged") if e["fields"]["decision"] == reboots(f, rack)[0]["fields"]["decision"]]
    assert sent and sent[0]["fields"]["outcome"] == "done", f"seed={seed}: the authority heard it done: {sent}"
    if lost == "ack":
        assert [e for e in f.events("rack.reboot") if e["fields"]["outcome"] == "duplicate"], \
            f"seed={seed}: the control's lost ack made the target retry, refused as a duplicate"
    verdicts(f)


# --------------------------------------------------------------------------
# Takeover: the executor dies after its decision was chosen
# --------------------------------------------------------------------------

def run_until(f: RackFleet, kind: str, limit: float, pred=lambda e: True, step: float = 0.001) -> float:
    """Run until an event of ``kind`` satisfying ``pred`` is logged (within ``step`` of it)."""
    log = f.sim.event_log
    seen = log.count
    while f.sim.now < limit:
        f.run(f.sim.now + step)
        if log.count > seen:
            new = [json.loads(x) for x in log.lines()[seen:] if f'"{kind}"' in x]
            if any(e["kind"] == kind and pred(e) for e in new):
                return f.sim.now
            seen = log.count
    raise AssertionError(f"seed={f.seed}: no {kind} by {limit}")


@pytest.mark.parametrize("seed", range(2))
def test_an_executor_killed_after_its_decision_was_chosen_is_taken_over(seed):
    """The authority (the decision's executor) is cut from the target rack from the fault on, and killed
    the moment it learns its decision chosen: the next acting authority carries it out, exactly once."""
    f, rack, auth = troubled(seed)
    a = node(f.layout.monitor(auth))
    for dst in (node(f.layout.monitor(rack)), "rack-" + rack):
        f.at(1.45, f.sim.cut, a, dst)
    decision_inst = f"{f.layout.sector_of(rack)}|control|reboot:{rack}:"
    run_until(f, "paxos.chosen", 3.0, lambda e: e["node"] == a and e["fields"]["instance"].startswith(decision_inst))
    f.crash_monitor(auth)
    f.run(7.0)
    once(f, rack, "executor killed")
    takeover = [e for e in f.events("control.takeover") if e["fields"]["rack"] == rack]
    assert takeover and takeover[0]["fields"]["executor"] == auth, f"seed={seed}: {takeover}"
    (ex,) = f.events("control.executed")
    assert ex["fields"]["authority"] == takeover[0]["node"].removeprefix("mon-") != auth, f"seed={seed}: {ex}"
    verdicts(f)


# --------------------------------------------------------------------------
# The control refuses duplicate and stale tokens; a restarted target never repeats a decision
# --------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(1))
def test_duplicate_and_stale_reboots_reaching_the_control_are_refused(seed):
    """After the rack was rebooted for its decision, the same Reboot again (a late copy) and an older
    token reach the control from its monitor: both are refused, counted and acknowledged; no second reboot."""
    from protocols.rack.messages import Reboot

    f, rack, _auth = troubled(seed)
    f.run(4.0)
    (r,) = reboots(f, rack)
    fl = r["fields"]
    mon, ctl = f.layout.monitor(rack), f.layout.control(rack)
    f.sim.send(ctl, Reboot(rack, fl["decision"], rack, fl["group"], fl["term"]), sender=mon, via_network=True)
    f.sim.send(ctl, Reboot(rack, fl["decision"].rpartition(":")[0] + ":0", rack, fl["group"], fl["term"]),
               sender=mon, via_network=True)
    f.run(6.0)
    assert len(reboots(f, rack)) == 1, f"seed={seed}: rebooted again: {reboots(f, rack)}"
    refused = [e["fields"]["outcome"] for e in f.events("rack.reboot") if e["fields"]["outcome"] != "rebooting"]
    assert refused == ["duplicate", "stale"], f"seed={seed}: {refused}"
    assert f.sim.machine(ctl).refused == {"duplicate": 1, "stale": 1, "bad_input": 0}
    verdicts(f)


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("when", ["pending", "done"])
def test_a_restarted_target_monitor_does_not_repeat_an_executed_decision(seed, when):
    """The target's monitor crashes after it took the decision on and restarts from its disk. ``pending``:
    its Reboot was lost (every monitor is cut from the control until after the restart): the restarted
    monitor resends it. ``done``: its acks to the authority were lost, so the authority asks again after
    the restart: the monitor answers done from its disk. Either way the rack reboots exactly once."""
    f, rack, auth = troubled(seed)
    m = node(f.layout.monitor(rack))
    if when == "pending":
        for x in f.monitor_net:
            f.at(1.45, f.sim.cut, x, "rack-" + rack)
    else:
        run_until(f, "control.proposed", 3.0)
        f.sim.cut(m, node(f.layout.monitor(auth)))
    run_until(f, "control.executed", 3.5)
    (first,) = f.events("control.executed")
    f.run(f.sim.now + 0.3)
    f.crash_monitor(rack)
    f.run(f.sim.now + 0.3)
    if when == "pending":
        f.sim.heal()
    restart = f.sim.now
    f.restart_monitor(rack)
    f.at(restart + 0.5, f.sim.heal)
    f.run(8.0)
    got = reboots(f, rack)
    assert len(got) == 1, f"seed={seed}: {when}: {rack} rebooted {len(got)} times: {got}"
    assert got[0]["fields"]["decision"] == first["fields"]["decision"], f"seed={seed}: {got}"
    executed = [e["fields"]["decision"] for e in f.events("control.executed")]
    assert executed == [first["fields"]["decision"]], f"seed={seed}: {when}: executed {executed}"
    if when == "pending":
        assert got[0]["time"] >= restart, f"seed={seed}: the restarted monitor resent it"
    else:
        answered = [e for e in f.events("control.acknowledged") if e["time"] > restart]
        assert answered and answered[0]["fields"]["outcome"] == "done", f"seed={seed}: {answered}"
    v = verdicts(f, must_be_valid=("paxos-one-value", "one-authority-per-ballot"))
    assert v["control-once"].status == "valid", v["control-once"]


# --------------------------------------------------------------------------
# A rebooting rack is rebooting, not powered-off
# --------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(2))
def test_a_rebooting_rack_is_rebooting_not_powered_off(seed):
    """A reboot that silences the control for longer than the status deadline shows as rebooting
    (fleet-wide), never powered-off; the old code raised a fleet-wide powered-off fact."""
    f, rack, _auth = troubled(seed, control_params={"reboot_time": 1.0})
    f.run(6.0)
    (r,) = reboots(f, rack)
    conds = [e["fields"]["condition"] for e in f.events("monitor.condition") if e["fields"]["rack"] == rack]
    assert conds == ["needs-troubleshooting", "rebooting", "non-fault"], f"seed={seed}: {conds}"
    fleet = {e["fields"]["condition"] for e in f.events("rack.known") if e["fields"]["subject"] == rack}
    assert "rebooting" in fleet and "powered-off" not in fleet, f"seed={seed}: {fleet}"
    verdicts(f)


@pytest.mark.parametrize("seed", range(1))
def test_a_rack_that_loses_power_while_rebooting_is_powered_off_after_the_window(seed):
    f, rack, _auth = troubled(seed, control_params={"reboot_time": 1.0})
    run_until(f, "rack.reboot", 3.5)
    t = f.sim.now
    f.at(t + 0.1, f.power_off, rack)
    f.run(8.0)
    conds = [(e["time"], e["fields"]["condition"]) for e in f.events("monitor.condition") if e["fields"]["rack"] == rack]
    assert [c for _t, c in conds] == ["needs-troubleshooting", "rebooting", "powered-off"], f"seed={seed}: {conds}"
    window = f.monitor(rack).reboot_window
    assert conds[2][0] <= t + window + 0.01, f"seed={seed}: powered-off at {conds[2][0]}, reboot at {t}"
    v = verdicts(f)
    assert v["fault-detected-in-time"].status == "valid", v["fault-detected-in-time"]


# --------------------------------------------------------------------------
# Many more seeds of every scenario (slow tier: tests/conftest.py SLOW_TESTS)
# --------------------------------------------------------------------------

SCENARIOS = {
    "stale-fact": lambda seed: [test_a_stale_troubleshooting_fact_never_reboots_a_rack_agreed_healthy(seed, h)
                                for h in (2.2, 2.45, 2.7, 2.95)],
    "lost-reboot": test_a_lost_reboot_is_resent_until_the_control_acknowledges,
    "lost-execute": lambda seed: test_a_lost_execute_or_ack_is_retried_until_the_target_acknowledges(seed, "execute"),
    "lost-ack": lambda seed: test_a_lost_execute_or_ack_is_retried_until_the_target_acknowledges(seed, "ack"),
    "takeover": test_an_executor_killed_after_its_decision_was_chosen_is_taken_over,
    "tokens": test_duplicate_and_stale_reboots_reaching_the_control_are_refused,
    "restart-pending": lambda seed: test_a_restarted_target_monitor_does_not_repeat_an_executed_decision(seed, "pending"),
    "restart-done": lambda seed: test_a_restarted_target_monitor_does_not_repeat_an_executed_decision(seed, "done"),
    "rebooting": test_a_rebooting_rack_is_rebooting_not_powered_off,
    "power-loss-while-rebooting": test_a_rack_that_loses_power_while_rebooting_is_powered_off_after_the_window,
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_remediation_scenarios_across_many_seeds(scenario):
    for seed in range(2, 10):
        SCENARIOS[scenario](seed)  # each assertion names its seed
