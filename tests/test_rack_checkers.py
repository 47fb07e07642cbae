"""The rack plug-in's checkers (topologies/rack/checks.py) prove they can fail.

``CASES`` gives each of the five rack checkers a hand-made log that breaks its
invariant (with the events that must come back as evidence) and one with
nothing to judge; tests/test_checker_registry.py runs them. The focused tests
below pin down what each checker judges: learned values against the quorums
that accepted them; a silence must be shown as a powered-off fault; agreement
by value, not only by sequence number; decisions against the reboots the racks
carried out. The last ones take logs of real simulated runs, which the
checkers pass, and break them (or the network under them).

Events are ``{"time", "node", "actor", "kind", "fields"}`` as actors.eventlog writes them.
"""

from __future__ import annotations

import copy

import pytest

from tests.rack_sim import RackFleet
from topologies.checkers import CHECKERS, Verdict
from topologies.plugin import load_plugins
from topologies.rack.checks import check_control_once, check_fault_detection

load_plugins()

RACK_CHECKERS = ("paxos-one-value", "one-authority-per-ballot", "fault-detected-in-time", "fleet-agreement",
                 "control-once")


def ev(t: float, node: str, kind: str, actor: str = "monitor", **fields) -> dict:
    return {"time": t, "node": node, "actor": actor, "kind": kind, "fields": fields}


def check(name: str, events: list[dict]) -> Verdict:
    return CHECKERS[name].check([dict(e) for e in events])


def mentions(evidence: list, item: dict) -> bool:
    """As tests/test_checker_registry.py: ``item`` is an evidence record or a value of one."""
    return any(e == item or (isinstance(e, dict) and any(v == item for v in e.values())) for e in evidence)


def assert_invalid(v: Verdict, *offending: dict) -> None:
    assert v.status == "invalid", v
    lost = [o for o in offending if not mentions(v.evidence, o)]
    assert not lost, f"offending events missing from the evidence: {lost}; evidence: {v.evidence}"


# --------------------------------------------------------------------------
# Log builders
# --------------------------------------------------------------------------

INST = "d0s0|condition|d0s0r1|1"
FACT = {"subject": "d0s0r1", "seq": 1, "condition": "powered-off", "indicator": ["red", "flashing"],
        "reason": "no status for 0.6 s"}
BALLOT = [1, "mon-d0s0r1/monitor"]


def accepted(t: float, acceptor: str, value=FACT, ballot=BALLOT, inst=INST, quorum: int | None = 2) -> dict:
    fields = {"instance": inst, "ballot": ballot, "value": value, "from": "mon-d0s0r1/monitor", "repeat": False}
    if quorum is not None:
        fields["quorum"] = quorum
    return ev(t, f"mon-{acceptor}", "paxos.accepted", **fields)


def chosen(t: float, learner: str, value=FACT, ballot=BALLOT, inst=INST) -> dict:
    return ev(t, f"mon-{learner}", "paxos.chosen", instance=inst, value=value, ballot=ballot, via="quorum",
              voters=[], mine=None)


def kill(t: float, node: str) -> dict:
    return {"time": t, "node": "chaos", "actor": "nemesis", "kind": "nemesis.kill", "fields": {"node": node}}


def monitor_start(t: float, rack: str, condition: str = "non-fault", **extra) -> dict:
    sector = rack[:4]
    return ev(t, f"mon-{rack}", "monitor.start", rack=rack, sector=sector, dc=rack[:2], restarted=False,
              condition=condition, indicator=["green", "steady"], deadline=0.6, lease=0.25, heartbeat_every=0.05,
              **extra)


def condition(t: float, rack: str, seq: int, cond: str, silence: float | None = None,
              indicator: list | None = None) -> dict:
    indicator = indicator or {"non-fault": ["green", "steady"], "needs-repair": ["red", "steady"],
                              "needs-troubleshooting": ["amber", "steady"], "powered-off": ["red", "flashing"]}[cond]
    return ev(t, f"mon-{rack}", "monitor.condition", rack=rack, seq=seq, condition=cond,
              fault=cond != "non-fault", indicator=indicator, reason="test", last_status=None, silence=silence,
              deadline=0.6)


def report(t: float, rack: str, seq: int) -> dict:
    return ev(t, f"rack-{rack}", "rack.report", actor="control", rack=rack, seq=seq)


def reports(rack: str, start: float, stop: float, every: float = 0.2) -> list[dict]:
    out, t, seq = [], start, 1
    while t <= stop + 1e-9:
        out.append(report(round(t, 6), rack, seq))
        t += every
        seq += 1
    return out


def known(t: float, monitor_rack: str, subject: str, seq: int, cond: str, level: str = "fleet",
          indicator: list | None = None) -> dict:
    fields = {"subject": subject, "seq": seq, "level": level, "condition": cond}
    if indicator is not None:
        fields["indicator"] = indicator
    return ev(t, f"mon-{monitor_rack}", "rack.known", **fields)


def executed(t: float, executor: str, rack: str, seq: int, lease_until: float | None = None) -> dict:
    return ev(t, f"mon-{executor}", "control.executed", decision=f"reboot:{rack}:{seq}", action="reboot", rack=rack,
              term=1, lease_until=t + 0.2 if lease_until is None else lease_until)


def reboot(t: float, rack: str, seq: int, by: str, outcome: str = "rebooting") -> dict:
    return ev(t, f"rack-{rack}", "rack.reboot", actor="control", rack=rack, decision=f"reboot:{rack}:{seq}", by=by,
              outcome=outcome)


def tick(t: float, node: str = "mon-d0s0r0") -> dict:
    """Something logged at ``t`` (the log runs on)."""
    return ev(t, node, "authority.lease", group="d0s0", gid="d0s0", term=1, holder="d0s0r0", until=t + 0.25)


SECTOR = ["d0s0r0", "d0s0r1", "d0s0r2"]


# --------------------------------------------------------------------------
# CASES for tests/test_checker_registry.py
# --------------------------------------------------------------------------

def _cases() -> dict:
    # paxos-one-value: a learner learned a value only one acceptor of a quorum of two accepted
    lone_vote = accepted(1.0, "d0s0r0")
    unbacked = chosen(1.1, "d0s0r1")
    # one-authority-per-ballot: one designation instance, two holders
    d1 = ev(1.0, "mon-d0s0r0", "authority.designated", group="d0s0", gid="d0s0", term=3, holder="d0s0r0",
            level="sector")
    d2 = ev(1.0, "mon-d0s0r2", "authority.designated", group="d0s0", gid="d0s0", term=3, holder="d0s0r2",
            level="sector")
    # fault-detected-in-time: reports stop after t=0.4; the monitor shows needs-repair, never powered-off
    last = report(0.4, "d0s0r1", 2)
    repair = condition(1.0, "d0s0r1", 1, "needs-repair")
    # fleet-agreement: one monitor knows the latest seq with another condition
    wrong = known(1.6, "d0s0r2", "d0s0r1", 1, "non-fault")
    # control-once: a rack rebooted twice for one decision
    r1, r2 = reboot(1.3, "d0s0r1", 1, "d0s0r0"), reboot(2.5, "d0s0r1", 1, "d0s0r0")
    return {
        "paxos-one-value": {
            "invalid": ([lone_vote, unbacked, tick(3.0)], [unbacked]),
            "unknown": [ev(1.0, "mon-d0s0r1", "paxos.propose", instance=INST, value=FACT, outcome="started"),
                        ev(1.0, "mon-d0s0r0", "paxos.promise", instance=INST, ballot=BALLOT, to="mon-d0s0r1/monitor",
                           accepted_ballot=None, accepted_value=None, repeat=False)],
        },
        "one-authority-per-ballot": {
            "invalid": ([d1, d2], [d1, d2]),
            "unknown": [ev(1.0, "mon-d0s0r0", "authority.candidate", group="d0s0", gid="d0s0", term=1,
                           silent_for=0.3)],
        },
        "fault-detected-in-time": {
            "invalid": ([monitor_start(0.0, "d0s0r1"), report(0.2, "d0s0r1", 1), last, repair, tick(3.0)],
                        [last, repair]),
            # reports every 0.2 s to the end: no silence to judge
            "unknown": [monitor_start(0.0, "d0s0r1")] + reports("d0s0r1", 0.2, 3.0),
        },
        "fleet-agreement": {
            "invalid": ([monitor_start(0.0, r) for r in SECTOR] + [condition(1.0, "d0s0r1", 1, "powered-off")]
                        + [known(1.5, r, "d0s0r1", 1, "powered-off") for r in SECTOR[:2]] + [wrong, tick(5.0)],
                        [wrong]),
            "unknown": [monitor_start(0.0, r) for r in SECTOR] + [tick(5.0)],
        },
        "control-once": {
            "invalid": ([executed(1.2, "d0s0r0", "d0s0r1", 1), r1, r2, tick(6.0)], [r1, r2]),
            "unknown": [monitor_start(0.0, r) for r in SECTOR]
                       + [known(1.0, "d0s0r0", "d0s0r1", 1, "needs-repair", level="sector"), tick(6.0)],
        },
    }


CASES = _cases()


def test_cases_cover_the_five_rack_checkers():
    assert set(CASES) == set(RACK_CHECKERS)
    for name in RACK_CHECKERS:
        events, offending = CASES[name]["invalid"]
        assert_invalid(check(name, events), *offending)
        assert check(name, CASES[name]["unknown"]).status == "unknown", name
        assert check(name, []).status == "unknown", name


# --------------------------------------------------------------------------
# paxos-one-value: learned values against the quorums that accepted them
# --------------------------------------------------------------------------

def test_paxos_a_value_a_quorum_accepted_in_one_ballot_is_valid():
    v = check("paxos-one-value", [accepted(1.0, "d0s0r0"), accepted(1.0, "d0s0r1"), chosen(1.1, "d0s0r1"),
                                  chosen(1.2, "d0s0r2")])
    assert v.status == "valid", v


def test_paxos_a_learned_value_no_quorum_accepted_is_invalid():
    c = chosen(1.1, "d0s0r1")
    v = check("paxos-one-value", [accepted(1.0, "d0s0r0"), c])
    assert_invalid(v, c)
    assert "no quorum" in v.summary


def test_paxos_a_learned_value_with_no_vote_at_all_is_invalid():
    c = chosen(1.1, "d0s0r1")
    assert_invalid(check("paxos-one-value", [c]), c)


def test_paxos_votes_in_two_ballots_are_no_quorum():
    c = chosen(1.1, "d0s0r1")
    v = check("paxos-one-value", [accepted(1.0, "d0s0r0", ballot=[1, "a"]), accepted(1.0, "d0s0r2", ballot=[2, "b"]),
                                  c])
    assert_invalid(v, c)


def test_paxos_one_acceptor_voting_twice_is_no_quorum():
    c = chosen(1.1, "d0s0r1")
    a = accepted(1.0, "d0s0r0")
    v = check("paxos-one-value", [a, dict(a, time=1.05), c])
    assert_invalid(v, c)


def test_paxos_a_learner_whose_value_differs_from_the_quorums_is_invalid_even_after_a_kill():
    other = dict(FACT, condition="non-fault")
    c = chosen(1.1, "d0s0r2", value=other)
    v = check("paxos-one-value", [accepted(1.0, "d0s0r0"), accepted(1.0, "d0s0r1"), chosen(1.1, "d0s0r1"), c,
                                  kill(1.0, "mon-d0c0")])
    assert_invalid(v, c)


def test_paxos_learners_disagreeing_is_invalid_even_after_a_kill():
    a, b = chosen(1.1, "d0s0r1"), chosen(1.1, "d0s0r2", value=dict(FACT, seq=9))
    assert_invalid(check("paxos-one-value", [a, b, kill(1.0, "mon-d0c0")]), a, b)


def test_paxos_two_quorums_for_two_values_are_invalid():
    other = dict(FACT, condition="non-fault")
    x, y = accepted(1.0, "d0s0r0"), accepted(2.0, "d0s0r0", value=other, ballot=[2, "b"])
    v = check("paxos-one-value", [x, accepted(1.0, "d0s0r1"), y, accepted(2.0, "d0s0r2", value=other, ballot=[2, "b"])])
    assert_invalid(v, x, y)


def test_paxos_incomplete_quorum_evidence_after_a_kill_is_excused_not_invalid():
    """A SIGKILLed node loses up to ~0.2 s of buffered events: the missing vote may be among them."""
    lone = [accepted(1.0, "d0s0r0"), chosen(1.1, "d0s0r1"), kill(1.15, "mon-d0c1")]
    v = check("paxos-one-value", lone)
    assert v.status == "unknown" and "excused" in v.summary, v
    # with another instance fully backed by the log, the run is valid, the excused value said in the summary
    inst2 = "d0s0|condition|d0s0r2|1"
    backed = [accepted(2.0, "d0s0r0", inst=inst2), accepted(2.0, "d0s0r2", inst=inst2),
              chosen(2.1, "d0s0r2", inst=inst2)]
    v = check("paxos-one-value", lone + backed)
    assert v.status == "valid" and "1 learned values excused" in v.summary, v


def test_paxos_a_kill_long_after_the_learning_excuses_nothing():
    c = chosen(1.1, "d0s0r1")
    assert_invalid(check("paxos-one-value", [accepted(1.0, "d0s0r0"), c, kill(9.0, "mon-d0c1")]), c)


def test_paxos_accepted_events_without_the_quorum_field_say_unknown():
    v = check("paxos-one-value", [accepted(1.0, "d0s0r0", quorum=None), accepted(1.0, "d0s0r1", quorum=None),
                                  chosen(1.1, "d0s0r1")])
    assert v.status == "unknown" and "quorum field" in v.summary, v


def test_paxos_conflict_events_are_invalid():
    c = ev(1.0, "mon-d0s0r0", "paxos.conflict", instance=INST, ballot=BALLOT, accepted=1, offered=2, **{"from": "x"})
    assert_invalid(check("paxos-one-value", [c]), c)


# --------------------------------------------------------------------------
# fault-detected-in-time: a silence must be shown as powered-off
# --------------------------------------------------------------------------

def silent_rack(shown: list[dict], end: float = 3.0) -> list[dict]:
    """d0s0r1 reports at 0.2 and 0.4, then falls silent; the monitor shows ``shown``."""
    return [monitor_start(0.0, "d0s0r1"), report(0.2, "d0s0r1", 1), report(0.4, "d0s0r1", 2)] + shown + [tick(end)]


def test_fault_a_silence_shown_as_powered_off_in_time_is_valid():
    v = check("fault-detected-in-time", silent_rack([condition(1.0, "d0s0r1", 1, "powered-off", silence=0.6)]))
    assert v.status == "valid", v


def test_fault_a_silence_shown_only_as_needs_repair_is_invalid():
    repair = condition(1.0, "d0s0r1", 1, "needs-repair")
    events = silent_rack([repair])
    v = check("fault-detected-in-time", events)
    assert_invalid(v, repair, events[2])
    assert "needs-repair" in v.summary
    (late,) = check_fault_detection(events)["late"]
    assert late["rack"] == "d0s0r1" and late["shown_as"] == "needs-repair"


def test_fault_a_silence_shown_as_troubleshooting_then_powered_off_too_late_is_invalid():
    late = condition(2.0, "d0s0r1", 2, "powered-off", silence=1.6)  # bound: 0.4 + 0.6 + 0.5 = 1.5
    v = check("fault-detected-in-time", silent_rack([condition(1.0, "d0s0r1", 1, "needs-troubleshooting"), late]))
    assert v.status == "invalid", v


def test_fault_a_silence_shown_as_nothing_is_invalid():
    events = silent_rack([])
    assert_invalid(check("fault-detected-in-time", events), events[2])


def test_fault_a_powered_off_rack_by_threshold_that_then_falls_silent_stays_powered_off():
    events = silent_rack([])[:2] + [condition(0.2, "d0s0r1", 1, "powered-off"), report(0.4, "d0s0r1", 2), tick(3.0)]
    v = check("fault-detected-in-time", events)
    assert v.status == "valid", v


def test_fault_no_silence_is_unknown_not_valid():
    v = check("fault-detected-in-time", [monitor_start(0.0, "d0s0r1")] + reports("d0s0r1", 0.2, 3.0))
    assert v.status == "unknown" and "no report gap" in v.summary, v


def test_fault_a_silence_while_the_monitor_was_down_is_unknown():
    events = silent_rack([ev(0.5, "mon-d0s0r1", "sim.crash")])
    v = check("fault-detected-in-time", events)
    assert v.status == "unknown" and "while the monitor was down" in v.summary, v


def test_fault_a_silence_fault_while_reports_arrive_is_invalid():
    early = condition(1.0, "d0s0r1", 1, "powered-off", silence=0.6)
    v = check("fault-detected-in-time", [monitor_start(0.0, "d0s0r1")] + reports("d0s0r1", 0.2, 3.0) + [early])
    assert_invalid(v, early)


# --------------------------------------------------------------------------
# fleet-agreement: by value, not only by sequence number
# --------------------------------------------------------------------------

def agreed_log(knowns: list[dict], end: float = 5.0) -> list[dict]:
    return ([monitor_start(0.0, r) for r in SECTOR] + [condition(1.0, "d0s0r1", 1, "powered-off")] + knowns
            + [tick(end)])


def test_agreement_every_monitor_knowing_the_latest_value_is_valid():
    v = check("fleet-agreement", agreed_log([known(1.5, r, "d0s0r1", 1, "powered-off") for r in SECTOR]))
    assert v.status == "valid" and "by value" in v.summary, v


def test_agreement_a_monitor_knowing_the_latest_seq_with_another_value_is_invalid():
    wrong = known(1.5, "d0s0r2", "d0s0r1", 1, "non-fault")
    latest = condition(1.0, "d0s0r1", 1, "powered-off")
    v = check("fleet-agreement", agreed_log([known(1.5, r, "d0s0r1", 1, "powered-off") for r in SECTOR[:2]] + [wrong]))
    assert_invalid(v, wrong, latest)
    assert v.evidence[0]["monitor"] == "mon-d0s0r2/monitor"


def test_agreement_another_indicator_for_the_latest_seq_is_invalid_too():
    wrong = known(1.5, "d0s0r2", "d0s0r1", 1, "powered-off", indicator=["green", "steady"])
    ok = [known(1.5, r, "d0s0r1", 1, "powered-off", indicator=["red", "flashing"]) for r in SECTOR[:2]]
    assert_invalid(check("fleet-agreement", agreed_log(ok + [wrong])), wrong)


def test_agreement_a_wrong_value_is_invalid_even_before_the_log_settles():
    wrong = known(1.5, "d0s0r2", "d0s0r1", 1, "non-fault")
    v = check("fleet-agreement", agreed_log([wrong], end=1.6))
    assert_invalid(v, wrong)


def test_agreement_a_monitor_missing_the_latest_seq_is_invalid():
    stale = known(0.5, "d0s0r2", "d0s0r1", 0, "non-fault")
    v = check("fleet-agreement", agreed_log([known(1.5, r, "d0s0r1", 1, "powered-off") for r in SECTOR[:2]] + [stale]))
    assert_invalid(v, stale, condition(1.0, "d0s0r1", 1, "powered-off"))


def test_agreement_rack_known_without_a_condition_cannot_be_compared():
    bare = [ev(1.5, f"mon-{r}", "rack.known", subject="d0s0r1", seq=1, level="fleet") for r in SECTOR]
    v = check("fleet-agreement", agreed_log(bare))
    assert v.status == "unknown" and "no condition" in v.summary, v


# --------------------------------------------------------------------------
# control-once: decisions against reboots, and every reboot the agreement calls for
# --------------------------------------------------------------------------

def troubleshooting(extra: list[dict], end: float = 6.0) -> list[dict]:
    """d0s0r1 needs troubleshooting, agreed by its sector at t=1.0; the log runs to ``end``."""
    return ([monitor_start(0.0, r, reboot_on=["needs-troubleshooting"]) for r in SECTOR]
            + [report(0.2, "d0s0r1", 1), condition(0.9, "d0s0r1", 1, "needs-troubleshooting"),
               known(1.0, "d0s0r1", "d0s0r1", 1, "needs-troubleshooting", level="sector")] + extra + [tick(end)])


def test_control_one_decision_one_reboot_is_valid():
    v = check("control-once", troubleshooting([executed(1.2, "d0s0r0", "d0s0r1", 1),
                                               reboot(1.3, "d0s0r1", 1, "d0s0r0")]))
    assert v.status == "valid", v


def test_control_a_troubleshooting_rack_never_rebooted_is_invalid():
    agreed = known(1.0, "d0s0r1", "d0s0r1", 1, "needs-troubleshooting", level="sector")
    v = check("control-once", troubleshooting([]))
    assert_invalid(v, agreed)
    assert "never rebooted" in v.summary


def test_control_a_decision_executed_but_never_carried_out_by_the_rack_is_invalid():
    ex = executed(1.2, "d0s0r0", "d0s0r1", 1)
    v = check("control-once", troubleshooting([ex]))
    assert_invalid(v, ex)


def test_control_a_rack_rebooted_twice_for_one_decision_is_invalid():
    r1, r2 = reboot(1.3, "d0s0r1", 1, "d0s0r0"), reboot(2.5, "d0s0r1", 1, "d0s0r0")
    v = check("control-once", troubleshooting([executed(1.2, "d0s0r0", "d0s0r1", 1), r1, r2]))
    assert_invalid(v, r1, r2)


def test_control_a_repeated_reboot_while_rebooting_is_not_a_second_reboot():
    v = check("control-once", troubleshooting([executed(1.2, "d0s0r0", "d0s0r1", 1), reboot(1.3, "d0s0r1", 1, "d0s0r0"),
                                               reboot(1.35, "d0s0r1", 1, "d0s0r0", outcome="already-rebooting")]))
    assert v.status == "valid", v


def test_control_a_reboot_with_no_executed_decision_is_invalid():
    stray = reboot(1.3, "d0s0r2", 4, "d0s0r0")
    v = check("control-once", troubleshooting([executed(1.2, "d0s0r0", "d0s0r1", 1), reboot(1.3, "d0s0r1", 1, "d0s0r0"),
                                               stray]))
    assert_invalid(v, stray)


def test_control_a_reboot_of_another_rack_than_the_decision_names_is_invalid():
    stray = dict(reboot(1.3, "d0s0r2", 1, "d0s0r0"), fields={"rack": "d0s0r2", "decision": "reboot:d0s0r1:1",
                                                             "by": "d0s0r0", "outcome": "rebooting"})
    v = check("control-once", troubleshooting([executed(1.2, "d0s0r0", "d0s0r1", 1), reboot(1.3, "d0s0r1", 1, "d0s0r0"),
                                               stray]))
    assert_invalid(v, stray)


def test_control_a_reboot_whose_executor_was_killed_is_excused():
    """The executor's control.executed may be lost with its node's last buffered events."""
    events = troubleshooting([reboot(1.3, "d0s0r1", 1, "d0s0r0"), kill(1.35, "mon-d0s0r0")])
    v = check("control-once", events)
    assert v.status == "valid" and "excused" in v.summary, v


def test_control_an_execution_without_a_lease_is_invalid():
    ex = executed(1.2, "d0s0r0", "d0s0r1", 1, lease_until=1.0)
    assert_invalid(check("control-once", troubleshooting([ex, reboot(1.3, "d0s0r1", 1, "d0s0r0")])), ex)


def test_control_a_log_too_short_after_the_agreement_is_unknown():
    v = check("control-once", troubleshooting([], end=2.0))
    assert v.status == "unknown" and "d0s0r1" in v.summary, v


def test_control_the_bound_runs_from_the_last_fault():
    events = troubleshooting([ev(3.5, "sim", "net.heal", actor="net")], end=6.0)
    assert check("control-once", events).status == "unknown"  # 2.5 s after the heal
    assert check("control-once", events[:-1] + [tick(6.6)]).status == "invalid"


def test_control_a_rack_whose_control_is_down_at_the_end_is_excused():
    v = check("control-once", troubleshooting([ev(1.1, "rack-d0s0r1", "sim.crash", actor="control")]))
    assert v.status == "unknown" and "control is down" in v.summary, v


def test_control_conditions_outside_reboot_on_need_no_reboot():
    events = [e for e in troubleshooting([]) if e["kind"] != "monitor.start"]
    events = [monitor_start(0.0, r, reboot_on=[]) for r in SECTOR] + events
    assert check("control-once", events).status == "unknown"
    # a superseded troubleshooting condition needs no reboot either: only the latest agreed one does
    later = [known(2.0, "d0s0r1", "d0s0r1", 2, "non-fault", level="sector")]
    assert check("control-once", troubleshooting(later)).status == "unknown"


def test_control_an_execution_by_a_monitor_that_knew_the_rack_agreed_healthy_is_invalid():
    """Audit App. C: the decision on seq 1 carried out after its executor learned seq 2 (non-fault)."""
    healthy = known(1.1, "d0s0r0", "d0s0r1", 2, "non-fault", level="fleet")
    ex = executed(1.2, "d0s0r0", "d0s0r1", 1)
    v = check("control-once", troubleshooting([healthy, ex, reboot(1.3, "d0s0r1", 1, "d0s0r0")]))
    assert_invalid(v, ex, healthy)
    assert "1 stale executions" in v.summary
    # known by another monitor only, or learned after the execution: not stale
    other = known(1.1, "d0s0r2", "d0s0r1", 2, "non-fault")
    assert check("control-once", troubleshooting([other, ex, reboot(1.3, "d0s0r1", 1, "d0s0r0")])).status == "valid"
    later = known(1.25, "d0s0r0", "d0s0r1", 2, "non-fault")
    assert check("control-once", troubleshooting([ex, later, reboot(1.3, "d0s0r1", 1, "d0s0r0")])).status == "valid"
    # a newer condition that calls for a reboot too does not make it stale
    again = known(1.1, "d0s0r0", "d0s0r1", 2, "needs-troubleshooting")
    v = check("control-once", troubleshooting([again, ex, reboot(1.3, "d0s0r1", 1, "d0s0r0")]))
    assert not check_control_once(troubleshooting([again, ex]))["stale"], v


def test_control_a_log_with_only_a_cancelled_decision_is_unknown():
    """A decision skipped because the rack was agreed healthy again: nothing executed, nothing to judge."""
    events = troubleshooting([known(1.1, "d0s0r1", "d0s0r1", 2, "non-fault", level="sector"),
                              ev(1.2, "mon-d0s0r0", "control.skipped", decision="reboot:d0s0r1:1", rack="d0s0r1",
                                 reason="rack d0s0r1 agreed non-fault since (seq 2 > 1)", at="proposal")])
    v = check("control-once", events)
    assert v.status == "unknown", v


def test_control_a_refused_reboot_is_no_reboot():
    ex = executed(1.2, "d0s0r0", "d0s0r1", 1)
    refused = reboot(1.3, "d0s0r1", 1, "d0s0r1", outcome="duplicate")
    v = check("control-once", troubleshooting([ex, refused]))
    assert v.status == "invalid" and "never rebooted" in v.summary, v  # a refusal does not carry the decision out
    # a refused stale token with no decision behind it is no orphan reboot
    stray = reboot(1.4, "d0s0r1", 0, "d0s0r1", outcome="stale")
    v = check("control-once", troubleshooting([ex, reboot(1.3, "d0s0r1", 1, "d0s0r1"), stray]))
    assert v.status == "valid", v


# --------------------------------------------------------------------------
# fault-detected-in-time: the silence of a reboot may be shown as rebooting, within the window
# --------------------------------------------------------------------------

def rebooting_rack(shown: list[dict], back: float | None, window: float = 1.5) -> list[dict]:
    """d0s0r1 reports to 1.0, its control reboots at 1.05 and reports again from ``back`` (None: never)."""
    out = [monitor_start(0.0, "d0s0r1", reboot_window=window)] + reports("d0s0r1", 0.2, 1.0)
    out.append(reboot(1.05, "d0s0r1", 1, "d0s0r1"))
    if back is not None:
        out += [dict(r, fields=dict(r["fields"], seq=r["fields"]["seq"] + 10)) for r in reports("d0s0r1", back, 5.0)]
    return out + shown + [tick(5.0)]


def test_fault_a_reboot_silence_shown_as_rebooting_within_the_window_is_valid():
    rebooting = condition(1.6, "d0s0r1", 2, "needs-troubleshooting")
    rebooting = dict(rebooting, fields=dict(rebooting["fields"], condition="rebooting", indicator=["amber", "flashing"],
                                            silence=0.6))
    v = check("fault-detected-in-time", rebooting_rack([rebooting], back=2.2))
    assert v.status == "valid" and "1 of them a reboot's" in v.summary, v


def test_fault_a_reboot_silence_still_rebooting_past_the_window_is_invalid():
    shown = condition(1.6, "d0s0r1", 2, "needs-troubleshooting")
    shown = dict(shown, fields=dict(shown["fields"], condition="rebooting", indicator=["amber", "flashing"], silence=0.6))
    v = check("fault-detected-in-time", rebooting_rack([shown], back=None))
    assert_invalid(v, shown)
    # powered-off once the window is over: valid
    off = condition(2.6, "d0s0r1", 3, "powered-off", silence=1.6)
    assert check("fault-detected-in-time", rebooting_rack([shown, off], back=None)).status == "valid"
    # without the monitor's window (an older monitor) or without a reboot at the control, rebooting is no excuse
    no_window = [e for e in rebooting_rack([shown, off], back=None) if e["kind"] != "monitor.start"]
    no_window.insert(0, monitor_start(0.0, "d0s0r1"))
    assert_invalid(check("fault-detected-in-time", no_window), shown)
    no_reboot = [e for e in rebooting_rack([shown, off], back=None) if e["kind"] != "rack.reboot"]
    assert_invalid(check("fault-detected-in-time", no_reboot), shown)


# --------------------------------------------------------------------------
# Logs of real simulated runs: valid as they are, invalid once broken
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def troubleshooting_run() -> list[dict]:
    """A rack that needs troubleshooting, rebooted once by its sector's authority; a rack that loses power."""
    f = RackFleet(4, dcs=2, sectors=2, racks=3)
    f.at(1.5, f.set_metrics, "d1s1r0", os_errors=9)
    f.at(1.5, f.power_off, "d0s1r2")
    f.run(6.0)
    return copy.deepcopy(f.events())


def test_a_real_run_is_valid_for_every_rack_checker(troubleshooting_run):
    for name in RACK_CHECKERS:
        v = check(name, troubleshooting_run)
        assert v.status == "valid", v
    assert "1 rack.reboot events" in check("control-once", troubleshooting_run).summary


def test_a_real_run_without_its_reboot_is_invalid(troubleshooting_run):
    # as if the Reboot never reached the rack: no reboot, and the rack never came back healthy (seq 2)
    events = [e for e in troubleshooting_run if e["kind"] not in ("rack.reboot", "rack.rebooted")
              and not (e["kind"] == "rack.known" and e["fields"]["subject"] == "d1s1r0" and e["fields"]["seq"] > 1)]
    v = check("control-once", events)
    assert v.status == "invalid" and "never rebooted" in v.summary, v
    (never,) = check_control_once(events)["never_rebooted"]
    assert never["rack"] == "d1s1r0" and never["executed"]["kind"] == "control.executed"


def test_a_real_run_with_its_reboot_twice_is_invalid(troubleshooting_run):
    (r,) = [e for e in troubleshooting_run if e["kind"] == "rack.reboot"]
    again = dict(r, time=r["time"] + 1.0)
    assert_invalid(check("control-once", troubleshooting_run + [again]), r, again)


def test_a_real_run_with_a_monitor_knowing_a_wrong_value_is_invalid(troubleshooting_run):
    events = copy.deepcopy(troubleshooting_run)
    last = [e for e in events if e["kind"] == "rack.known" and e["fields"]["subject"] == "d0s1r2"
            and e["fields"]["level"] == "fleet"][-1]
    last["fields"]["condition"] = "non-fault"
    assert_invalid(check("fleet-agreement", events), last)


def test_a_real_run_whose_silence_shows_as_needs_repair_is_invalid(troubleshooting_run):
    events = copy.deepcopy(troubleshooting_run)
    (off,) = [e for e in events if e["kind"] == "monitor.condition" and e["fields"]["rack"] == "d0s1r2"]
    off["fields"].update(condition="needs-repair", indicator=["red", "steady"])
    assert_invalid(check("fault-detected-in-time", events), off)


def test_a_real_run_with_a_learned_value_nobody_accepted_is_invalid(troubleshooting_run):
    c = [e for e in troubleshooting_run if e["kind"] == "paxos.chosen"][0]
    inst = c["fields"]["instance"]
    events = [e for e in troubleshooting_run if not (e["kind"] == "paxos.accepted" and e["fields"]["instance"] == inst)]
    assert_invalid(check("paxos-one-value", events), c)


def test_a_reboot_lost_on_the_way_is_still_carried_out():
    """Found by control-once: the old executor sent Reboot once and never retried. Now the target's monitor
    retries its control until the control acknowledges, and the rack is rebooted exactly once."""
    f = RackFleet(4, dcs=2, sectors=2, racks=3)
    rack = "d1s1r0"
    f.at(1.5, f.set_metrics, rack, os_errors=9)
    for m in f.monitor_net:  # every monitor -> the rack's control: the Reboot is lost (its Status still flows)
        f.at(1.5, f.sim.cut, m, "rack-" + rack)
    f.at(2.5, f.sim.heal)
    f.run(7.0)
    assert [e["fields"]["rack"] for e in f.events("control.executed")] == [rack], "the decision was executed"
    assert [e["fields"]["outcome"] for e in f.events("rack.reboot") if e["fields"]["outcome"] == "rebooting"] == \
        ["rebooting"], "rebooted exactly once"
    v = check("control-once", f.events())
    assert v.status == "valid", v


def test_agreement_quiet_period_starts_at_the_heal_not_at_the_partition():
    """A simulator heal (net.heal) ends a fault: agreement is judged only ``settle`` seconds after it."""
    partition = ev(1.2, "sim", "net.partition", actor="net", islands=[["mon-d0s0r2"]])
    heal = ev(4.0, "sim", "net.heal", actor="net")
    # mon-d0s0r2 was cut off until t=4 and has not caught up by the end (t=5): too early to judge
    log = agreed_log([partition, heal] + [known(1.5, r, "d0s0r1", 1, "powered-off") for r in SECTOR[:2]])
    v = check("fleet-agreement", log)
    assert v.status == "unknown" and "after the last fault" in v.summary, v
