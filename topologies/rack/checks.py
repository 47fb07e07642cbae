"""Invariant checkers of the rack monitors (the ``rack`` plug-in).

How this works
--------------
Each checker judges a run from its event log alone (DESIGN.md, "Invariants"),
says *invalid* with the offending events (event records, or dicts holding them
as values) in its evidence, and *unknown* - never *valid* - when the log holds
nothing for it to judge:

* ``paxos-one-value`` - every learned value is a value a quorum accepted, and
  at most one value per consensus instance. The ground truth is the acceptors'
  votes (``paxos.accepted``, each with its instance's ``quorum`` size): a value
  is chosen when a quorum of distinct acceptors (``node/actor``) accepted it in
  one ballot. *Invalid*: learners (``paxos.chosen``) disagree; a learner learned
  a value while a quorum accepted a different one; a learner learned a value no
  quorum accepted in one ballot; quorums accepted two values; any
  ``paxos.conflict``. A SIGKILLed node loses its last ~0.2 s of buffered events,
  so with a ``nemesis.kill`` at most ``flush_window`` after an instance was first
  learned, a learned value short of a quorum of logged votes is *excused* (said
  in the summary; *unknown* if nothing else was verified), never invalid on that
  ground alone. ``paxos.accepted`` without the ``quorum`` field: *unknown*. Any
  Paxos user is judged, not only monitors.
* ``one-authority-per-ballot`` - one holder per designation instance
  (``<gid>|authority|<term>``, from ``authority.designated``), and two
  authorities of one group never act at once: the lease intervals
  ``[authority.lease time, until]`` of different holders do not overlap (up to
  ``clock_tolerance`` seconds, for processes' clocks; 0 in the simulator).
  *Unknown* without designations.
* ``fault-detected-in-time`` - when a rack control's reports (``rack.report``)
  stop for longer than its monitor's deadline + ``slack`` while the monitor
  runs (a *silence*), the monitor shows a fault of the **powered-off** kind
  (``monitor.condition`` / ``monitor.start`` ``condition``, the kind
  ``protocols.rack.detector`` raises on silence) by then; any other kind, or
  none, is *invalid* - with one exception: a silence that begins with a reboot
  the control carried out (``rack.reboot`` outcome ``rebooting``, within the
  deadline after the last report) may be shown as **rebooting** instead, up to
  the monitor's ``reboot_window`` (``monitor.start``) + ``slack`` after that
  reboot; silence past that must be shown as powered-off. A silence fault raised
  while reports were sent in time over a link with no fault in force is
  *invalid* too. *Unknown* when the log has no silence and no such early fault.
* ``fleet-agreement`` - once faults have stopped for ``settle`` seconds, every
  running monitor knows, at fleet level (``rack.known``), the latest condition
  of every rack whose sector kept a quorum of running monitors - by value, not
  only by sequence number: a monitor that knows the latest ``seq`` with another
  ``condition`` (or indicator) than the rack's last ``monitor.condition`` is
  *invalid* (judged even before the log settles).
* ``control-once`` - each control decision is executed at most once, by an
  executor holding its lease (``control.executed``); on the rack side
  (``rack.reboot``: rack, decision, by, outcome) a rack is rebooted at most once
  per decision, and only for an executed decision (a reboot whose executor's
  node was killed within ``flush_window`` is excused: its decision may be lost
  with its buffered events; a ``Reboot`` the control refused, outcome
  ``duplicate`` or ``stale``, is no reboot); no decision is executed by a
  monitor that already knew (``rack.known``) a newer agreed condition of the
  rack that does not call for a reboot (a *stale* execution: the rack was
  agreed healthy again); and a rack whose latest agreed condition
  (``rack.known``) calls for a reboot (``reboot_on`` from ``monitor.start``,
  default ``needs-troubleshooting``) was rebooted for it (a ``Reboot`` that
  found the rack already rebooting counts, and is no second reboot), once the log runs
  ``reboot_within`` seconds after the agreement and the last fault (a rack
  whose control is down when the log ends is excused). *Unknown* only without
  any such condition, decision or reboot.

* ``group-availability`` - the sectors' and data centers' agreed states follow
  the stated rule (``protocols.rack.layout.group_states``; monitor.py, rule 9):
  once faults, condition changes and monitor starts have stopped for
  ``settle`` seconds, every running monitor's newest group fact at fleet level
  (``rack.known`` with a sector or data center as ``subject``; none: the
  default operational) says what the rule says of that monitor's own
  fleet-level rack facts (a rack without one: non-fault), every data center
  reached (the faults have healed). A data center fewer than a majority of
  whose sectors keep a majority of running monitors is excused (nobody can
  speak for it; the fleet may rightly hold it cut off). A group fact whose
  ``condition`` is not the one its seq's parity names is *invalid* at any
  time. *Unknown* with no monitor, no condition change and no group fact, or
  when the log ends before the quiet.

Fault detection, agreement and the reboot bound are judged up to the run's
orderly shutdown (the first ``node.stopped``): nodes never stop at quite the
same instant.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Any, ClassVar

import attrs

from protocols.rack.detector import NON_FAULT, POWERED_OFF, REBOOTING
from protocols.rack.layout import Layout, group_states, state_of_seq
from topologies.checkers import Reach, Verdict, plural

__all__ = ["REBOOT_ON", "check_agreement", "check_authority", "check_control_once", "check_fault_detection",
           "check_paxos_one_value", "reboot_decision"]

_RACK = re.compile(r"^(d\d+s\d+)r\d+$")
FAULT_KINDS_OF_EVENTS = ("nemesis.", "net.partition", "net.cut", "net.heal", "net.link", "sim.crash", "sim.restart")


def _f(e: dict) -> dict:
    f = e.get("fields")
    return f if isinstance(f, dict) else {}


def _key(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def _ordered(events: list[dict]) -> list[dict]:
    return sorted(events, key=lambda e: e.get("time", 0.0))


def _is_fault_event(kind: str | None) -> bool:
    return kind in ("net.partition", "net.cut", "net.heal", "nemesis.grudge", "nemesis.heal", "nemesis.pause",
                    "nemesis.resume")


def _until_shutdown(events: list[dict]) -> list[dict]:
    """The events before the run's orderly shutdown began (the first ``node.stopped``; kills log none).

    Nodes do not stop at the same instant: rack controls that stop before their monitors look
    like power losses, and monitors stopped mid-agreement look like lost facts. Neither is judged.
    """
    evs = _ordered(events)
    stop = next((e["time"] for e in evs if e.get("kind") == "node.stopped"), None)
    return evs if stop is None else [e for e in evs if e["time"] < stop]


# -- paxos -------------------------------------------------------------------------------

def check_paxos_one_value(events: list[dict], flush_window: float = 1.0) -> dict:
    """Learned values (``paxos.chosen``) against the acceptors' votes (``paxos.accepted``).

    A value is *chosen* in an instance when a quorum (the ``quorum`` field) of distinct
    acceptors (``node/actor``) accepted it in one ballot. Every learned value must be one.
    ``flush_window``: a SIGKILLed node loses the events it logged in its last flush period
    (``actors.eventlog`` buffers, the node flushes every 0.2 s), so a learned value with too few
    votes in the log is excused when some ``nemesis.kill`` came no later than ``flush_window``
    after the instance was first learned (the lost votes came before the learning).
    """
    evs = _ordered(events)
    learned: dict[str, dict[str, dict]] = defaultdict(dict)  # instance -> value -> first paxos.chosen
    first_learned: dict[str, float] = {}
    votes: dict[tuple[str, str], dict[str, dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))
    quorum: dict[str, int] = {}
    no_quorum_field: dict[str, list[dict]] = defaultdict(list)
    kills: list[float] = []
    conflicts = []
    n_chosen = 0
    for e in evs:
        k, f = e.get("kind"), _f(e)
        if k == "paxos.chosen":
            n_chosen += 1
            inst = f.get("instance")
            learned[inst].setdefault(_key(f.get("value")), e)
            first_learned.setdefault(inst, float(e.get("time", 0.0)))
        elif k == "paxos.accepted":
            inst = f.get("instance")
            q = f.get("quorum")
            if q.__class__ is bool or not isinstance(q, int) or q < 1:
                no_quorum_field[inst].append(e)
                continue
            voter = f"{e.get('node')}/{e.get('actor')}"
            votes[(inst, _key(f.get("ballot")))][_key(f.get("value"))].setdefault(voter, e)
            quorum[inst] = max(quorum.get(inst, 0), q)
        elif k == "paxos.conflict":
            conflicts.append(e)
        elif k == "nemesis.kill":
            kills.append(float(e.get("time", 0.0)))
    # the ground truth: values a quorum accepted in one ballot (one accepted event each, for evidence)
    truth: dict[str, dict[str, dict]] = defaultdict(dict)
    for (inst, _ballot), by_value in votes.items():
        for value, voters in by_value.items():
            if len(voters) >= quorum[inst]:
                truth[inst].setdefault(value, next(iter(voters.values())))
    learner_conflicts = [ev for vals in learned.values() if len(vals) > 1 for ev in vals.values()]
    acceptor_conflicts = {inst: list(vals.values()) for inst, vals in truth.items() if len(vals) > 1}
    other, unsupported, excused, unverifiable, verified = [], [], [], [], 0
    for inst, vals in learned.items():
        for value, ev in vals.items():
            if value in truth.get(inst, {}):
                verified += 1
            elif truth.get(inst):  # a quorum accepted a different value
                other.append((ev, next(iter(truth[inst].values()))))
            elif inst in no_quorum_field and inst not in quorum:
                unverifiable.append(ev)
            elif any(t <= first_learned[inst] + flush_window for t in kills):
                excused.append(ev)
            else:
                partial = [a for (i, _b), by in votes.items() if i == inst for a in by.get(value, {}).values()]
                unsupported.append((ev, partial))
    return {"instances": len(set(learned) | set(truth)), "chosen_events": n_chosen, "verified": verified,
            "quorum_instances": len(truth), "learner_conflicts": learner_conflicts,
            "acceptor_conflicts": acceptor_conflicts, "conflict_events": conflicts,
            "learned_other_value": other, "unsupported": unsupported, "excused": excused,
            "unverifiable": unverifiable,
            "accepted_without_quorum": sum(len(v) for v in no_quorum_field.values())}


@attrs.frozen
class _PaxosChecker:
    name: str = "paxos-one-value"
    flush_window: float = 1.0

    def check(self, events: list[dict]) -> Verdict:
        r = check_paxos_one_value(events, self.flush_window)
        name = self.name
        bad = (r["learner_conflicts"] or r["acceptor_conflicts"] or r["conflict_events"]
               or r["learned_other_value"] or r["unsupported"])
        if bad:
            ev: list[dict] = list(r["learner_conflicts"])
            for pair in r["learned_other_value"]:
                ev.extend(pair)
            ev += [chosen for chosen, _partial in r["unsupported"]]
            ev += r["conflict_events"]
            for accepted in r["acceptor_conflicts"].values():
                ev.extend(accepted)
            ev += [a for _c, partial in r["unsupported"] for a in partial]
            return Verdict(name, "invalid",
                           f"learners disagree in {len(r['learner_conflicts'])} paxos.chosen events; "
                           f"{len(r['learned_other_value'])} learned values differ from the one a quorum accepted; "
                           f"{len(r['unsupported'])} learned values no quorum of distinct acceptors accepted in "
                           f"one ballot; {len(r['acceptor_conflicts'])} instances where quorums accepted two "
                           f"values; {len(r['conflict_events'])} paxos.conflict events", ev)
        notes = []
        if r["excused"]:
            notes.append(f"{len(r['excused'])} learned values excused (unknown): fewer votes in the log than "
                         "a quorum, but a node was killed and may have lost its last buffered events")
        if r["unverifiable"]:
            return Verdict(name, "unknown", f"{len(r['unverifiable'])} learned values cannot be checked: their "
                           f"instances' paxos.accepted events ({r['accepted_without_quorum']}) lack the quorum "
                           "field" + ("; " + "; ".join(notes) if notes else ""))
        if not r["verified"] and not r["quorum_instances"]:
            return Verdict(name, "unknown", "no learned value backed by a quorum of votes and no quorum of votes "
                           "in the log: nothing to judge" + ("; " + "; ".join(notes) if notes else ""))
        return Verdict(name, "valid", f"{plural(r['instances'], 'instance')}, each with at most one value; "
                       f"{r['verified']} learned values each accepted by a quorum in one ballot "
                       f"({r['chosen_events']} paxos.chosen events)" + ("; " + "; ".join(notes) if notes else ""))


# -- authority ---------------------------------------------------------------------------

def check_authority(events: list[dict], clock_tolerance: float = 0.0) -> dict:
    by_instance: dict[tuple[str, int], dict[str, dict]] = defaultdict(dict)
    by_term: dict[tuple[str, int], set] = defaultdict(set)
    leases: dict[str, list[list]] = defaultdict(list)  # group -> [[start, end, holder, term], ...]
    for e in _ordered(events):
        k, f = e.get("kind"), _f(e)
        if k == "authority.designated":
            by_instance[(f.get("gid"), f.get("term"))].setdefault(f.get("holder"), e)
            by_term[(f.get("group"), f.get("term"))].add(f.get("holder"))
        elif k == "authority.lease":
            # one acting interval per unbroken run of renewals of one (holder, term)
            t, until = float(e.get("time", 0.0)), float(f.get("until", 0.0))
            ivs = leases[f.get("group")]
            last = next((iv for iv in reversed(ivs) if (iv[2], iv[3]) == (f.get("holder"), f.get("term"))), None)
            if last is not None and t <= last[1]:
                last[1] = max(last[1], until)
            else:
                ivs.append([t, until, f.get("holder"), f.get("term")])
    two = [ev for holders in by_instance.values() if len(holders) > 1 for ev in holders.values()]
    overlaps = []
    for group, ivs in leases.items():
        items = sorted(ivs, key=lambda iv: iv[0])
        for i, (s1, e1, h1, t1) in enumerate(items):
            for s2, e2, h2, t2 in items[i + 1:]:
                if s2 >= e1:
                    break
                if h1 != h2 and s2 < e1 - clock_tolerance and s1 < e2 - clock_tolerance:
                    overlaps.append({"group": group, "first": {"holder": h1, "term": t1, "from": s1, "until": e1},
                                     "second": {"holder": h2, "term": t2, "from": s2, "until": e2}})
    return {"designations": len(by_instance), "two_holders": two, "overlaps": overlaps,
            "groups": len(leases), "lease_intervals": sum(len(v) for v in leases.values()),
            "terms_reused_across_configs": sorted(f"{g}@{t}" for (g, t), hs in by_term.items() if len(hs) > 1)}


@attrs.frozen
class _AuthorityChecker:
    name: str = "one-authority-per-ballot"
    clock_tolerance: float = 0.005

    def check(self, events: list[dict]) -> Verdict:
        r = check_authority(events, self.clock_tolerance)
        if not r["designations"]:
            return Verdict(self.name, "unknown", "no authority designation in the log")
        if r["two_holders"] or r["overlaps"]:
            return Verdict(self.name, "invalid", f"{len(r['two_holders'])} designation events disagree on a holder; "
                           f"{len(r['overlaps'])} pairs of authorities of one group acted at once",
                           r["two_holders"] + r["overlaps"])
        reused = r["terms_reused_across_configs"]
        return Verdict(self.name, "valid", f"{plural(r['designations'], 'designation')}, one holder each; "
                       f"{plural(r['lease_intervals'], 'lease interval')} in {plural(r['groups'], 'group')}, none overlapping"
                       + (f" (terms designated in two seat configurations, one after the other: {reused[:5]})"
                          if reused else ""))


# -- fault detection ---------------------------------------------------------------------

def _node(address: str) -> str:
    return address.partition("/")[0]


def check_fault_detection(events: list[dict], slack: float = 0.5, flight: float = 0.2,
                          heal_lag: float = 1.0) -> dict:
    """``slack``: how late after ``deadline`` a fault may show (delivery, timer lateness on a loaded host);
    ``flight``: how long a report may take to arrive (a report sent earlier than that before a silence
    fault should have been heard); ``heal_lag``: how long after a logged heal a real node may still
    drop (the chaos control node tells each node in turn, and a transport that declared the peer down
    refuses to send to it until it hears the peer again: up to a heartbeat interval or two)."""
    evs = _until_shutdown(events)
    reports: dict[str, list[float]] = defaultdict(list)
    control_node: dict[str, str] = {}
    monitor_node: dict[str, str] = {}
    deadline: dict[str, float] = {}
    window: dict[str, float] = {}  # rack -> its monitor's reboot_window (monitor.start)
    rebooted: dict[str, list[float]] = defaultdict(list)  # rack -> times its control began a reboot
    report_events: dict[str, list[dict]] = defaultdict(list)  # rack -> its rack.report events (as ``reports``)
    timeline: dict[str, list[tuple[float, bool, dict]]] = defaultdict(list)  # rack -> (time, fault?, event)
    down: dict[str, list[list[float]]] = defaultdict(list)  # node -> [start, end] intervals it was not running
    lossy: list[list[float]] = []  # any link fault in force: [start, end]
    end = evs[-1]["time"] if evs else 0.0
    reach = Reach()
    blocked_reports: set[tuple[str, float]] = set()
    healed_at: dict[str, float] = {}
    for e in evs:
        k, f, t = e.get("kind"), _f(e), float(e.get("time", 0.0))
        before = {r: reach.blocked_by(control_node[r], monitor_node[r]) is not None
                  for r in reports if r in monitor_node and r in control_node} if _is_fault_event(k) else {}
        if reach.update(e):
            # a link that breaks now also drops the reports still in flight on it (sent < flight ago)
            for r, times in reports.items():
                mon, ctl = monitor_node.get(r), control_node.get(r)
                if mon is not None and ctl is not None and reach.blocked_by(ctl, mon) is not None:
                    for s in reversed(times):
                        if s < t - flight:
                            break
                        blocked_reports.add((r, s))
                elif before.get(r):
                    healed_at[r] = t  # real nodes apply a heal a little after it is logged
        if k == "rack.report":
            r = f.get("rack")
            reports[r].append(t)
            report_events[r].append(e)
            control_node[r] = e.get("node")
            mon = monitor_node.get(r)
            if mon is not None and (reach.blocked_by(e.get("node"), mon) is not None
                                    or t - healed_at.get(r, -1e18) < heal_lag):
                blocked_reports.add((r, t))
        elif k == "monitor.start":
            r = f.get("rack")
            monitor_node[r] = e.get("node")
            deadline[r] = float(f.get("deadline", 0.0))
            if isinstance(f.get("reboot_window"), (int, float)):
                window[r] = float(f["reboot_window"])
            else:
                window.pop(r, None)
        elif k == "rack.reboot" and f.get("outcome") == "rebooting":
            rebooted[f.get("rack")].append(t)
            timeline[r].append((t, f.get("condition", "non-fault") != "non-fault", e))
        elif k == "monitor.condition":
            timeline[f.get("rack")].append((t, bool(f.get("fault")), e))
        elif k in ("sim.crash", "nemesis.kill", "nemesis.pause"):
            n = e.get("node") if k == "sim.crash" else f.get("node")
            down[n].append([t, end])
        elif k in ("sim.restart", "nemesis.restart", "nemesis.resume"):
            n = e.get("node") if k == "sim.restart" else f.get("node")
            if down[n] and down[n][-1][1] == end:
                down[n][-1][1] = t
        elif k in ("nemesis.link_fault", "net.link"):
            if not lossy or lossy[-1][1] != end:
                lossy.append([t, end])
        elif k in ("nemesis.clear_link_faults",):
            if lossy and lossy[-1][1] == end:
                lossy[-1][1] = t

    def was_down(node: str, a: float, b: float) -> bool:
        return any(s < b and a < e2 for s, e2 in down.get(node, []))

    def shown_at(rack: str, t: float) -> dict | None:
        """The monitor's last monitor.start / monitor.condition event of ``rack`` at time ``t``."""
        shown = None
        for tt, _fault, e in timeline.get(rack, []):
            if tt > t:
                break
            shown = e
        return shown

    late, early = [], []
    windows = excused = as_rebooting = 0
    for rack, times in reports.items():
        if rack not in deadline:
            continue
        d, mon = deadline[rack], monitor_node[rack]
        nxt = times[1:] + [None]
        for i, (t0, t1) in enumerate(zip(times, nxt)):
            bound = t0 + d + slack
            if (t1 is not None and t1 <= bound) or (t1 is None and end <= bound):
                continue
            if was_down(mon, t0, bound):
                excused += 1
                continue
            windows += 1
            shown = shown_at(rack, bound)
            kind = _f(shown).get("condition", NON_FAULT) if shown is not None else NON_FAULT
            tr = next((x for x in rebooted.get(rack, []) if t0 - 1e-9 <= x <= t0 + d), None)
            if kind == REBOOTING and tr is not None and rack in window:
                # the silence of a reboot: rebooting is right, but only within the monitor's window
                wb = tr + window[rack] + slack
                if (t1 if t1 is not None else end) <= wb:
                    as_rebooting += 1
                    continue
                bound, shown = wb, shown_at(rack, wb)
                kind = _f(shown).get("condition", NON_FAULT) if shown is not None else NON_FAULT
            if kind != POWERED_OFF:  # silence means the rack lost power or its network: powered-off
                late.append({"rack": rack, "last_report": report_events[rack][i], "last_report_time": t0,
                             "bound": bound, "deadline": d, "shown": shown, "shown_as": kind,
                             "next_report": report_events[rack][i + 1] if t1 is not None else None})
        for tt, fault, e in timeline.get(rack, []):
            f = _f(e)
            if e.get("kind") != "monitor.condition" or not fault or f.get("silence") is None:
                continue
            lo, hi = tt - d + flight, tt - flight
            if any(lo <= s <= hi and (rack, s) not in blocked_reports for s in times) and \
                    not any(a < tt and tt - d < b for a, b in lossy) and not was_down(control_node.get(rack, ""), lo, tt):
                early.append(e)
    return {"racks": len(reports), "silences": windows, "excused_silences": excused, "late": late, "early": early,
            "shown_rebooting": as_rebooting}


@attrs.frozen
class _FaultChecker:
    name: str = "fault-detected-in-time"
    slack: float = 0.5

    def check(self, events: list[dict]) -> Verdict:
        r = check_fault_detection(events, self.slack)
        if not r["racks"]:
            return Verdict(self.name, "unknown", "no rack reports in the log")
        if r["late"] or r["early"]:
            kinds = sorted({x["shown_as"] for x in r["late"]})
            return Verdict(self.name, "invalid", f"{len(r['late'])} silences not shown as a {POWERED_OFF} fault "
                           f"within deadline + {self.slack} s (shown as: {kinds}); "
                           f"{len(r['early'])} silence faults while reports arrived in time", r["late"] + r["early"])
        if not r["silences"]:
            return Verdict(self.name, "unknown", f"{r['racks']} racks, but no report gap longer than the deadline "
                           f"+ {self.slack} s while the monitor ran"
                           + (f" ({r['excused_silences']} silences while the monitor was down)"
                              if r["excused_silences"] else "")
                           + ", and no silence fault raised early: nothing to judge")
        return Verdict(self.name, "valid", f"{plural(r['racks'], 'rack')}; {plural(r['silences'], 'silence')} longer than the deadline, "
                       f"each shown as a {POWERED_OFF} fault in time"
                       + (f" ({r['shown_rebooting']} of them a reboot's, shown as {REBOOTING} within the monitor's "
                          "reboot window)" if r["shown_rebooting"] else "")
                       + "; no silence fault while reports arrived")


# -- agreement ---------------------------------------------------------------------------

_VALUE_FIELDS = ("condition", "indicator")  # what a rack.known says of the fact's value (monitor._learn_fact)


def check_agreement(events: list[dict], settle: float = 2.0) -> dict:
    evs = _until_shutdown(events)
    if not evs:
        return {"status": "unknown", "why": "empty log"}
    end = evs[-1]["time"]
    last_fault = max((e["time"] for e in evs if str(e.get("kind")).startswith(FAULT_KINDS_OF_EVENTS)), default=None)
    latest: dict[str, tuple[int, float, dict]] = {}  # rack -> (seq, time, its last monitor.condition)
    monitors: dict[str, str] = {}  # monitor address -> rack
    alive: dict[str, bool] = {}
    known: dict[tuple[str, str], tuple[int, dict]] = {}  # (monitor, subject) -> (seq, rack.known) at fleet level
    known_at: dict[tuple[str, str, int], list[dict]] = defaultdict(list)  # (monitor, subject, seq) -> rack.known events

    def addr(e: dict) -> str:
        return f"{e.get('node')}/{e.get('actor')}"

    def on_node(node: str) -> list[str]:
        return [a for a in monitors if a.partition("/")[0] == node]
    for e in evs:
        k, f = e.get("kind"), _f(e)
        if k == "monitor.start":
            monitors[addr(e)] = f.get("rack")
            alive[addr(e)] = True
        elif k == "monitor.condition":
            latest[f.get("rack")] = (int(f.get("seq", 0)), e["time"], e)
        elif k == "rack.known" and f.get("level") == "fleet":
            key = (addr(e), f.get("subject"))
            seq = int(f.get("seq", -1))
            if seq > known.get(key, (-1, {}))[0]:
                known[key] = (seq, e)
            known_at[(addr(e), f.get("subject"), seq)].append(e)
        elif k == "sim.crash" and addr(e) in monitors:
            alive[addr(e)] = False
        elif k in ("nemesis.kill", "nemesis.restart"):  # restarted: back once its monitor.start is logged
            for a in on_node(f.get("node")):
                alive[a] = False
    if not monitors or not latest:
        return {"status": "unknown", "why": "no monitors or no condition changes in the log"}
    # by value: whoever knows (at fleet level) a rack's latest seq must know the value its monitor raised
    wrong, uncompared = [], 0
    for (mon, subject, seq), knowns in sorted(known_at.items(), key=lambda kv: (kv[0][0], str(kv[0][1]), kv[0][2])):
        if subject not in latest or latest[subject][0] != seq:
            continue
        cond = _f(latest[subject][2])
        for e in knowns:
            kf = _f(e)
            fields = [x for x in _VALUE_FIELDS if x in kf and x in cond]
            if "condition" not in fields:
                uncompared += 1
                continue
            diff = [x for x in fields if kf[x] != cond[x]]
            if diff:
                wrong.append({"monitor": mon, "subject": subject, "seq": seq,
                              "knows": {x: kf[x] for x in fields}, "latest_value": {x: cond[x] for x in fields},
                              "known": e, "latest": latest[subject][2]})
    quiet_from = max([last_fault or 0.0] + [t for _s, t, _e in latest.values()])
    if end - quiet_from < settle:
        return {"status": "invalid" if wrong else "unknown", "wrong": wrong, "missing": [],
                "subjects": len(latest), "monitors": 0, "skipped": [],
                "why": f"the log ends {end - quiet_from:.2f} s after the last fault or "
                f"condition change; agreement is judged after {settle} s of quiet"}
    sector_members: dict[str, list[str]] = defaultdict(list)
    for node, rack in monitors.items():
        m = _RACK.match(rack or "")
        if m:
            sector_members[m.group(1)].append(node)
    missing, skipped = [], []
    running = sorted(n for n, up in alive.items() if up)
    for subject, (seq, _t, cond_ev) in sorted(latest.items()):
        m = _RACK.match(subject or "")
        members = sector_members.get(m.group(1), []) if m else []
        if sum(alive.get(n, False) for n in members) * 2 <= len(members):
            skipped.append(subject)  # its sector has no quorum of running monitors: nothing can be agreed
            continue
        for n in running:
            k_seq, k_ev = known.get((n, subject), (-1, None))
            if k_seq < seq:
                missing.append({"monitor": n, "subject": subject, "seq": seq,
                                "knows": k_seq if k_ev is not None else None, "known": k_ev, "latest": cond_ev})
    return {"status": "invalid" if missing or wrong else ("unknown" if uncompared else "valid"),
            "subjects": len(latest), "monitors": len(running), "missing": missing, "wrong": wrong,
            "skipped": skipped, "uncompared": uncompared,
            "why": f"{uncompared} rack.known events of a latest seq carry no condition: values cannot be compared"}


@attrs.frozen
class _AgreementChecker:
    name: str = "fleet-agreement"
    liveness: ClassVar[bool] = True  # something must happen: an interrupted run cannot say it did not
    settle: float = 2.0

    def check(self, events: list[dict]) -> Verdict:
        r = check_agreement(events, self.settle)
        if r["status"] == "unknown":
            return Verdict(self.name, "unknown", r["why"])
        if r["status"] == "invalid":
            return Verdict(self.name, "invalid", f"{len(r['wrong'])} monitors know a rack's latest seq at fleet "
                           "level with another value than its monitor raised; "
                           f"{len(r['missing'])} (monitor, rack) pairs lack the rack's latest condition at fleet "
                           "level after the faults healed", r["wrong"] + r["missing"])
        return Verdict(self.name, "valid", f"all {r['monitors']} running monitors know the latest condition of "
                       f"{plural(r['subjects'] - len(r['skipped']), 'rack')} fleet-wide, by seq and by value"
                       + (f" ({len(r['skipped'])} racks skipped: their sector lost its quorum)" if r["skipped"] else ""))


# -- control decisions -------------------------------------------------------------------

REBOOT_ON = ("needs-troubleshooting",)  # RackMonitor's default reboot_on (monitor.start logs the one in use)
REFUSALS = ("duplicate", "stale")  # rack.reboot outcomes of a Reboot the control refused (its fencing token)


def reboot_decision(rack: str, seq: Any) -> str:
    """The decision a sector takes on rack ``rack``'s condition ``seq`` (``RackMonitor._propose_reboot``)."""
    return f"reboot:{rack}:{seq}"


def check_control_once(events: list[dict], reboot_within: float = 3.0, reboot_on: tuple = REBOOT_ON,
                       flush_window: float = 1.0) -> dict:
    """Decisions (``control.executed``, monitor side) against reboots (``rack.reboot``, rack side).

    ``reboot_within``: how long after a rack's latest agreed condition calling for a reboot (or
    after the last fault, if later) the log must run before a missing reboot is a violation.
    ``flush_window``: a reboot whose executor's monitor node was SIGKILLed that close to it may
    have lost its ``control.executed`` (the node's buffered events): excused, not judged.
    """
    evs = _ordered(events)
    judged = _until_shutdown(events)
    end = judged[-1]["time"] if judged else 0.0
    faults = FAULT_KINDS_OF_EVENTS  # a heal too (net.heal is one): the quiet starts there
    last_fault = max((e["time"] for e in judged if str(e.get("kind")).startswith(faults)), default=None)
    runs: dict[str, list[dict]] = defaultdict(list)
    unleased = []
    known_by: dict[tuple[str, Any], list[dict]] = defaultdict(list)  # (monitor, subject) -> its rack.known
    reboots: dict[tuple[str, str], list[dict]] = defaultdict(list)  # (rack, decision) -> rack.reboot events
    agreed: dict[str, dict[int, dict]] = defaultdict(dict)  # rack -> seq -> its first rack.known
    monitor_node: dict[str, str] = {}  # rack -> node of its monitor
    sector_of: dict[str, str] = {}
    reboot_on_of: dict[str, tuple] = {}  # rack -> its monitor's reboot_on (monitor.start)
    kills: dict[str, list[float]] = defaultdict(list)
    control_node: dict[str, str] = {}  # rack -> node of its control (rack.start, rack.report)
    node_up: dict[str, bool] = {}  # node -> running at the end of the judged log
    for e in evs:
        k, f = e.get("kind"), _f(e)
        if e.get("time", 0.0) <= end:
            if k in ("sim.crash", "nemesis.kill", "nemesis.pause"):
                node_up[e.get("node") if k == "sim.crash" else f.get("node")] = False
            elif k in ("sim.restart", "nemesis.restart", "nemesis.resume"):
                node_up[e.get("node") if k == "sim.restart" else f.get("node")] = True
        if k in ("rack.start", "rack.report"):
            control_node[f.get("rack")] = e.get("node")
        if k == "control.executed":
            runs[f.get("decision")].append(e)
            if f.get("lease_until") is None or float(f["lease_until"]) <= float(e.get("time", 0.0)):
                unleased.append(e)
        elif k == "rack.reboot":
            reboots[(f.get("rack"), f.get("decision"))].append(e)
        elif k == "rack.known":
            seq = f.get("seq")
            if isinstance(seq, int):
                agreed[f.get("subject")].setdefault(seq, e)
                known_by[(f"{e.get('node')}/{e.get('actor')}", f.get("subject"))].append(e)
        elif k == "monitor.start":
            monitor_node[f.get("rack")] = e.get("node")
            sector_of[f.get("rack")] = f.get("sector")
            if isinstance(f.get("reboot_on"), list):
                reboot_on_of[f.get("rack")] = tuple(f["reboot_on"])
        elif k == "nemesis.kill":
            kills[f.get("node")].append(float(e.get("time", 0.0)))

    def calls_for_reboot(rack: str, condition: Any) -> bool:
        # the sector's authority decides with its own reboot_on: every monitor of the sector must list it
        mine = [v for r, v in reboot_on_of.items() if sector_of.get(r) == sector_of.get(rack)] \
            if rack in sector_of else []
        return all(condition in v for v in mine) if mine else condition in reboot_on

    twice = [e for evs_ in runs.values() if len(evs_) > 1 for e in evs_]
    stale = []  # executions by a monitor that knew the rack agreed healthy (or anything not calling for one) since
    for evs_ in runs.values():
        for e in evs_:
            f = _f(e)
            head, _, seq = str(f.get("decision", "")).rpartition(":")
            rack = f.get("rack")
            if not seq.isdigit() or head != f"reboot:{rack}":
                continue
            newer = [x for x in known_by.get((f"{e.get('node')}/{e.get('actor')}", rack), [])
                     if x["time"] < e["time"] and _f(x).get("seq", -1) > int(seq)
                     and not calls_for_reboot(rack, _f(x).get("condition"))]
            if newer:
                stale.append({"executed": e, "known_before": newer[-1]})
    rebooted_twice, orphans, excused = [], [], []
    for (rack, decision), evs_ in reboots.items():
        done = [e for e in evs_ if _f(e).get("outcome", "rebooting") == "rebooting"]
        if len(done) > 1:
            rebooted_twice += done
        for e in evs_:
            if _f(e).get("outcome") in REFUSALS:
                continue  # the control refused it: no reboot, with or without a decision behind it
            executed = [x for x in runs.get(decision, []) if _f(x).get("rack") == rack]
            if executed:
                continue
            t = float(e.get("time", 0.0))
            node = monitor_node.get(_f(e).get("by"))
            near = [k for n, ts in kills.items() if node is None or n == node for k in ts
                    if abs(k - t) <= flush_window]
            (excused if near else orphans).append(e)
    never, pending, down, judged_conditions = [], [], [], 0
    for rack, by_seq in agreed.items():
        seq = max(by_seq)
        fact = by_seq[seq]
        if not calls_for_reboot(rack, _f(fact).get("condition")):
            continue
        decision = reboot_decision(rack, seq)
        if any(_f(e).get("outcome") not in REFUSALS for e in reboots.get((rack, decision), [])):
            judged_conditions += 1  # obeyed (a refusal is no reboot)
            continue
        since = max(float(fact.get("time", 0.0)), last_fault if last_fault is not None else 0.0)
        if not node_up.get(control_node.get(rack, ""), True):
            down.append(rack)  # its control is down when the log ends: nothing to reboot
        elif end - since >= reboot_within:
            judged_conditions += 1
            never.append({"rack": rack, "seq": seq, "decision": decision, "agreed": fact,
                          "executed": (runs.get(decision) or [None])[0], "log_runs_for": end - since})
        else:
            pending.append(rack)
    return {"decisions": len(runs), "twice": twice, "unleased": unleased, "stale": stale, "reboots": sum(map(len, reboots.values())),
            "rebooted_twice": rebooted_twice, "orphan_reboots": orphans, "excused_reboots": excused,
            "never_rebooted": never, "pending": sorted(pending), "control_down": sorted(down),
            "conditions": judged_conditions}


@attrs.frozen
class _ControlChecker:
    name: str = "control-once"
    reboot_within: float = 3.0
    reboot_on: tuple = REBOOT_ON
    flush_window: float = 1.0

    def check(self, events: list[dict]) -> Verdict:
        r = check_control_once(events, self.reboot_within, self.reboot_on, self.flush_window)
        if r["twice"] or r["unleased"] or r["rebooted_twice"] or r["orphan_reboots"] or r["never_rebooted"] \
                or r["stale"]:
            return Verdict(self.name, "invalid",
                           f"{len(r['twice'])} executions of decisions run twice; {len(r['unleased'])} executions "
                           f"without a lease; {len(r['stale'])} stale executions (the executor knew a newer agreed "
                           "condition of the rack that calls for no reboot); "
                           f"{len(r['rebooted_twice'])} reboots of a rack for a decision it was "
                           f"already rebooted for; {len(r['orphan_reboots'])} reboots with no executed decision; "
                           f"{len(r['never_rebooted'])} racks whose latest agreed condition calls for a reboot "
                           f"never rebooted within {self.reboot_within} s",
                           r["twice"] + r["unleased"] + r["stale"] + r["rebooted_twice"] + r["orphan_reboots"]
                           + r["never_rebooted"])
        notes = []
        if r["pending"]:
            notes.append(f"racks {r['pending']}: latest agreed condition calls for a reboot, but the log ends "
                         f"less than {self.reboot_within} s after it (or after the last fault)")
        if r["control_down"]:
            notes.append(f"racks {r['control_down']}: latest agreed condition calls for a reboot, but their "
                         "control is down when the log ends")
        if r["excused_reboots"]:
            notes.append(f"{len(r['excused_reboots'])} reboots without a logged decision excused: the executor's "
                         "node was killed and may have lost its last buffered events")
        note = ("; " + "; ".join(notes)) if notes else ""
        if not r["decisions"] and not r["reboots"] and not r["conditions"]:
            return Verdict(self.name, "unknown", "no control decision, no reboot and no agreed condition calling "
                           "for one" + note)
        return Verdict(self.name, "valid", f"{plural(r['decisions'], 'decision')}, each executed once under a lease; "
                       f"{r['reboots']} rack.reboot events, each for an executed decision, none twice; "
                       f"{r['conditions']} latest agreed conditions calling for a reboot, each rebooted" + note)


# -- availability of groups ----------------------------------------------------------

_GROUP = re.compile(r"^d\d+(s\d+)?$")
_RACK_ID = re.compile(r"^d(\d+)s(\d+)r(\d+)$")


def check_group_availability(events: list[dict], settle: float = 3.0) -> dict:
    evs = _until_shutdown(events)
    if not evs:
        return {"status": "unknown", "why": "empty log"}
    end = evs[-1]["time"]
    monitors: dict[str, str] = {}  # monitor address -> rack
    alive: dict[str, bool] = {}
    racks_known: dict[str, dict[str, tuple[int, Any]]] = defaultdict(dict)  # monitor -> rack -> (seq, condition)
    groups_known: dict[str, dict[str, tuple[int, dict]]] = defaultdict(dict)  # monitor -> group -> (seq, event)
    parity, changes, group_facts = [], 0, 0
    quiet_from = 0.0

    def addr(e: dict) -> str:
        return f"{e.get('node')}/{e.get('actor')}"

    for e in evs:
        k, f = e.get("kind"), _f(e)
        if str(k).startswith(FAULT_KINDS_OF_EVENTS) or k in ("monitor.condition", "monitor.start"):
            quiet_from = max(quiet_from, e["time"])
        if k == "monitor.start":
            monitors[addr(e)] = str(f.get("rack"))
            alive[addr(e)] = True
        elif k == "monitor.condition":
            changes += 1
        elif k == "sim.crash" and addr(e) in monitors:
            alive[addr(e)] = False
        elif k in ("nemesis.kill", "nemesis.restart"):
            for a in [a for a in monitors if a.partition("/")[0] == f.get("node")]:
                alive[a] = False
        elif k == "rack.known" and f.get("level") == "fleet":
            subject, seq = f.get("subject"), f.get("seq")
            if not isinstance(subject, str) or not isinstance(seq, int):
                continue
            if _GROUP.match(subject):
                group_facts += 1
                if f.get("condition") != state_of_seq(seq):
                    parity.append({"monitor": addr(e), "group": subject, "seq": seq, "known": e,
                                   "why": f"seq {seq} names {state_of_seq(seq)}, not {f.get('condition')}"})
                if seq > groups_known[addr(e)].get(subject, (-1, None))[0]:
                    groups_known[addr(e)][subject] = (seq, e)
            elif _RACK_ID.match(subject) and seq > racks_known[addr(e)].get(subject, (-1, None))[0]:
                racks_known[addr(e)][subject] = (seq, f.get("condition"))
    out = {"wrong": [], "parity": parity, "monitors": 0, "groups": 0, "excused": []}
    if not monitors or (not changes and not group_facts):
        return {**out, "status": "invalid" if parity else "unknown",
                "why": "no monitors, no condition change and no group fact in the log: nothing to judge"}
    ids = [tuple(int(x) for x in m.groups()) for m in (_RACK_ID.match(r) for r in monitors.values()) if m]
    if not ids:
        return {**out, "status": "invalid" if parity else "unknown", "why": "no monitor of a rack d<D>s<S>r<R>"}
    layout = Layout(max(i[0] for i in ids) + 1, max(i[1] for i in ids) + 1, max(i[2] for i in ids) + 1)
    if end - quiet_from < settle:
        return {**out, "status": "invalid" if parity else "unknown",
                "why": f"the log ends {end - quiet_from:.2f} s after the last fault, condition change or monitor "
                f"start; group states are judged after {settle} s of quiet"}
    running_by_sector: dict[str, list[bool]] = defaultdict(list)
    for a, rack in monitors.items():
        if _RACK_ID.match(rack):
            running_by_sector[layout.sector_of(rack)].append(alive.get(a, False))
    excused = []
    for d in layout.all_dcs():
        held = sum(2 * sum(v) > len(v) for s in layout.sectors_of(d) for v in [running_by_sector.get(s, [])])
        if 2 * held <= layout.sectors:
            excused.append(d)
    wrong = []
    running = sorted(a for a, up in alive.items() if up)
    for a in running:
        rule = group_states(layout, {r: c for r, (_s, c) in racks_known[a].items()})
        for g, (want, reason) in sorted(rule.items()):
            if g in excused:
                continue
            seq, ev = groups_known[a].get(g, (0, None))
            has = state_of_seq(seq) if ev is None else _f(ev).get("condition")
            if has != want:
                wrong.append({"monitor": a, "group": g, "agreed": has, "seq": seq, "rule": want, "because": reason,
                              "known": ev})
    return {**out, "status": "invalid" if wrong or parity else "valid", "wrong": wrong, "monitors": len(running),
            "groups": len(rule) if running else 0, "excused": excused, "why": ""}


@attrs.frozen
class _GroupChecker:
    name: str = "group-availability"
    liveness: ClassVar[bool] = True  # the states must be reached: an interrupted run cannot say they were not
    settle: float = 3.0

    def check(self, events: list[dict]) -> Verdict:
        r = check_group_availability(events, self.settle)
        if r["status"] == "unknown":
            return Verdict(self.name, "unknown", r["why"])
        if r["status"] == "invalid":
            return Verdict(self.name, "invalid", f"{len(r['wrong'])} (monitor, group) pairs whose agreed state is not "
                           f"the rule's over the monitor's fleet-level rack facts after {self.settle} s of quiet; "
                           f"{len(r['parity'])} group facts whose condition is not the one their seq names",
                           r["parity"] + r["wrong"])
        return Verdict(self.name, "valid", f"all {r['monitors']} running monitors hold the rule's state of "
                       f"{plural(r['groups'], 'group')} (sectors and data centers) after {self.settle} s of quiet"
                       + (f" (data centers {', '.join(r['excused'])} excused: most of their sectors lost their "
                          "running quorum)" if r["excused"] else ""))


CHECKERS = (_PaxosChecker(), _AuthorityChecker(), _FaultChecker(), _AgreementChecker(), _ControlChecker(),
            _GroupChecker())
