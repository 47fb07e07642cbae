"""Invariant checkers of the rack monitors (the ``rack`` plug-in).

How this works
--------------
Each checker judges a run from its event log alone (DESIGN.md, "Invariants"):

* ``paxos-one-value`` - at most one value is chosen per consensus instance.
  Judged twice: from what learners report (``paxos.chosen``) and from the
  ground truth, the acceptors' votes (``paxos.accepted``, each with its
  instance's quorum size): a value is chosen when a quorum of distinct
  acceptors accepted it in one ballot. Any Paxos user is judged, not only
  monitors; ``paxos.conflict`` events are violations too.
* ``one-authority-per-ballot`` - one holder per designation instance
  (``<gid>|authority|<term>``, from ``authority.designated``), and two
  authorities of one group never act at once: the lease intervals
  ``[authority.lease time, until]`` of different holders do not overlap (up to
  ``clock_tolerance`` seconds, for processes' clocks; 0 in the simulator).
* ``fault-detected-in-time`` - when a rack control's reports (``rack.report``)
  stop for longer than its monitor's deadline, the monitor shows a fault within
  ``deadline + slack`` of the last report (unless the monitor itself was down);
  and no silence fault is raised while reports were sent in time over a link
  with no fault in force.
* ``fleet-agreement`` - once faults have stopped for ``settle`` seconds, every
  running monitor knows, at fleet level (``rack.known``), the latest condition
  of every rack whose sector kept a quorum of running monitors.
* ``control-once`` - each control decision is executed at most once, by an
  executor holding its lease (``control.executed``).

Fault detection and agreement are judged up to the run's orderly shutdown
(the first ``node.stopped``): nodes never stop at quite the same instant.

Each returns *unknown* when the log holds nothing for it to judge.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Any

import attrs

from topologies.checkers import Reach, Verdict

__all__ = ["check_agreement", "check_authority", "check_control_once", "check_fault_detection",
           "check_paxos_one_value"]

_RACK = re.compile(r"^(d\d+s\d+)r\d+$")
FAULT_KINDS_OF_EVENTS = ("nemesis.", "net.partition", "net.cut", "net.link", "sim.crash", "sim.restart")


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

def check_paxos_one_value(events: list[dict]) -> dict:
    learned: dict[str, dict[str, dict]] = defaultdict(dict)
    votes: dict[tuple[str, str], dict[str, set]] = defaultdict(lambda: defaultdict(set))
    quorum: dict[str, int] = {}
    conflicts = []
    n_chosen = 0
    for e in events:
        k, f = e.get("kind"), _f(e)
        if k == "paxos.chosen":
            n_chosen += 1
            learned[f.get("instance")].setdefault(_key(f.get("value")), e)
        elif k == "paxos.accepted" and "quorum" in f:
            votes[(f.get("instance"), _key(f.get("ballot")))][_key(f.get("value"))].add(f"{e.get('node')}/{e.get('actor')}")
            quorum[f.get("instance")] = f["quorum"]
        elif k == "paxos.conflict":
            conflicts.append(e)
    truth: dict[str, set] = defaultdict(set)
    for (inst, _ballot), by_value in votes.items():
        for value, voters in by_value.items():
            if len(voters) >= quorum.get(inst, 10**9):
                truth[inst].add(value)
    bad = [ev for inst, vals in learned.items() if len(vals) > 1 for ev in vals.values()]
    bad_truth = sorted(inst for inst, vals in truth.items() if len(vals) > 1)
    return {"instances": len(set(learned) | set(truth)), "chosen_events": n_chosen,
            "learner_conflicts": bad, "acceptor_conflicts": bad_truth, "conflict_events": conflicts}


def _paxos_checker(events: list[dict]) -> Verdict:
    r = check_paxos_one_value(events)
    name = "paxos-one-value"
    if not r["instances"] and not r["conflict_events"]:
        return Verdict(name, "unknown", "no consensus instance in the log")
    if r["learner_conflicts"] or r["acceptor_conflicts"] or r["conflict_events"]:
        ev = r["learner_conflicts"] + r["conflict_events"] + [{"instance": i} for i in r["acceptor_conflicts"]]
        return Verdict(name, "invalid", f"two values chosen: learners disagree on {len(r['learner_conflicts'])} "
                       f"events, acceptors' quorums on {len(r['acceptor_conflicts'])} instances, "
                       f"{len(r['conflict_events'])} conflict events", ev)
    return Verdict(name, "valid", f"{r['instances']} instances, each with at most one value "
                   f"({r['chosen_events']} paxos.chosen events agree with the acceptors' votes)")


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
        return Verdict(self.name, "valid", f"{r['designations']} designations, one holder each; "
                       f"{r['lease_intervals']} lease intervals in {r['groups']} groups, none overlapping"
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
            control_node[r] = e.get("node")
            mon = monitor_node.get(r)
            if mon is not None and (reach.blocked_by(e.get("node"), mon) is not None
                                    or t - healed_at.get(r, -1e18) < heal_lag):
                blocked_reports.add((r, t))
        elif k == "monitor.start":
            r = f.get("rack")
            monitor_node[r] = e.get("node")
            deadline[r] = float(f.get("deadline", 0.0))
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

    def fault_at(rack: str, t: float) -> bool:
        state = False
        for tt, fault, _e in timeline.get(rack, []):
            if tt > t:
                break
            state = fault
        return state

    late, early = [], []
    windows = 0
    for rack, times in reports.items():
        if rack not in deadline:
            continue
        d, mon = deadline[rack], monitor_node[rack]
        nxt = times[1:] + [None]
        for t0, t1 in zip(times, nxt):
            bound = t0 + d + slack
            if (t1 is not None and t1 <= bound) or (t1 is None and end <= bound):
                continue
            windows += 1
            if was_down(mon, t0, bound):
                continue
            if not fault_at(rack, bound):
                late.append({"rack": rack, "last_report": t0, "bound": bound, "deadline": d})
        for tt, fault, e in timeline.get(rack, []):
            f = _f(e)
            if e.get("kind") != "monitor.condition" or not fault or f.get("silence") is None:
                continue
            lo, hi = tt - d + flight, tt - flight
            if any(lo <= s <= hi and (rack, s) not in blocked_reports for s in times) and \
                    not any(a < tt and tt - d < b for a, b in lossy) and not was_down(control_node.get(rack, ""), lo, tt):
                early.append(e)
    return {"racks": len(reports), "silences": windows, "late": late, "early": early}


@attrs.frozen
class _FaultChecker:
    name: str = "fault-detected-in-time"
    slack: float = 0.5

    def check(self, events: list[dict]) -> Verdict:
        r = check_fault_detection(events, self.slack)
        if not r["racks"]:
            return Verdict(self.name, "unknown", "no rack reports in the log")
        if r["late"] or r["early"]:
            return Verdict(self.name, "invalid", f"{len(r['late'])} silences not shown as a fault within the bound; "
                           f"{len(r['early'])} silence faults while reports arrived in time", r["late"] + r["early"])
        return Verdict(self.name, "valid", f"{r['racks']} racks; {r['silences']} silences longer than the deadline, "
                       "each shown as a fault in time; no fault while reports arrived")


# -- agreement ---------------------------------------------------------------------------

def check_agreement(events: list[dict], settle: float = 2.0) -> dict:
    evs = _until_shutdown(events)
    if not evs:
        return {"status": "unknown", "why": "empty log"}
    end = evs[-1]["time"]
    last_fault = max((e["time"] for e in evs if str(e.get("kind")).startswith(FAULT_KINDS_OF_EVENTS)), default=None)
    latest: dict[str, tuple[int, float]] = {}
    monitors: dict[str, str] = {}  # monitor address -> rack
    alive: dict[str, bool] = {}
    known: dict[tuple[str, str], int] = {}  # (monitor address, subject) -> seq known at fleet level

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
            latest[f.get("rack")] = (int(f.get("seq", 0)), e["time"])
        elif k == "rack.known" and f.get("level") == "fleet":
            key = (addr(e), f.get("subject"))
            known[key] = max(known.get(key, -1), int(f.get("seq", -1)))
        elif k == "sim.crash" and addr(e) in monitors:
            alive[addr(e)] = False
        elif k in ("nemesis.kill", "nemesis.restart"):  # restarted: back once its monitor.start is logged
            for a in on_node(f.get("node")):
                alive[a] = False
    if not monitors or not latest:
        return {"status": "unknown", "why": "no monitors or no condition changes in the log"}
    quiet_from = max([last_fault or 0.0] + [t for _s, t in latest.values()])
    if end - quiet_from < settle:
        return {"status": "unknown", "why": f"the log ends {end - quiet_from:.2f} s after the last fault or "
                f"condition change; agreement is judged after {settle} s of quiet"}
    sector_members: dict[str, list[str]] = defaultdict(list)
    for node, rack in monitors.items():
        m = _RACK.match(rack or "")
        if m:
            sector_members[m.group(1)].append(node)
    missing, skipped = [], []
    running = sorted(n for n, up in alive.items() if up)
    for subject, (seq, _t) in sorted(latest.items()):
        m = _RACK.match(subject or "")
        members = sector_members.get(m.group(1), []) if m else []
        if sum(alive.get(n, False) for n in members) * 2 <= len(members):
            skipped.append(subject)  # its sector has no quorum of running monitors: nothing can be agreed
            continue
        for n in running:
            if known.get((n, subject), -1) < seq:
                missing.append({"monitor": n, "subject": subject, "seq": seq, "knows": known.get((n, subject))})
    return {"status": "invalid" if missing else "valid", "subjects": len(latest), "monitors": len(running),
            "missing": missing, "skipped": skipped}


@attrs.frozen
class _AgreementChecker:
    name: str = "fleet-agreement"
    settle: float = 2.0

    def check(self, events: list[dict]) -> Verdict:
        r = check_agreement(events, self.settle)
        if r["status"] == "unknown":
            return Verdict(self.name, "unknown", r["why"])
        if r["missing"]:
            return Verdict(self.name, "invalid", f"{len(r['missing'])} (monitor, rack) pairs lack the rack's latest "
                           "condition at fleet level after the faults healed", r["missing"])
        return Verdict(self.name, "valid", f"all {r['monitors']} running monitors know the latest condition of "
                       f"{r['subjects'] - len(r['skipped'])} racks fleet-wide"
                       + (f" ({len(r['skipped'])} racks skipped: their sector lost its quorum)" if r["skipped"] else ""))


# -- control decisions -------------------------------------------------------------------

def check_control_once(events: list[dict]) -> dict:
    runs: dict[str, list[dict]] = defaultdict(list)
    unleased = []
    for e in events:
        if e.get("kind") == "control.executed":
            f = _f(e)
            runs[f.get("decision")].append(e)
            if f.get("lease_until") is None or float(f["lease_until"]) <= float(e.get("time", 0.0)):
                unleased.append(e)
    twice = [e for evs in runs.values() if len(evs) > 1 for e in evs]
    return {"decisions": len(runs), "twice": twice, "unleased": unleased}


@attrs.frozen
class _ControlChecker:
    name: str = "control-once"

    def check(self, events: list[dict]) -> Verdict:
        r = check_control_once(events)
        if not r["decisions"]:
            return Verdict(self.name, "unknown", "no control decision was executed")
        if r["twice"] or r["unleased"]:
            return Verdict(self.name, "invalid", f"{len(r['twice'])} executions of decisions run twice; "
                           f"{len(r['unleased'])} executions without a lease", r["twice"] + r["unleased"])
        return Verdict(self.name, "valid", f"{r['decisions']} decisions, each executed once under a lease")


@attrs.frozen
class _PaxosChecker:
    name: str = "paxos-one-value"

    def check(self, events: list[dict]) -> Verdict:
        return _paxos_checker(events)


CHECKERS = (_PaxosChecker(), _AuthorityChecker(), _FaultChecker(), _AgreementChecker(), _ControlChecker())
