"""Invariant checkers of the boot-workflow protocol (the ``workflow`` plug-in).

How this works
--------------
Each checker judges a run from its event log alone (DESIGN.md, "Invariants"):

* ``admission-limit`` - no grant, lease adoption or reserved wake-up ever takes a
  resource's holders plus reservations above the limit in force. Holders and
  limits are rebuilt from ``controller.start``, ``limit.changed``,
  ``admission.grant``, ``lease.adopted``, ``admission.wake``,
  ``lease.released`` / ``lease.expired`` events. (A lowered limit never revokes
  leases: holders may stand above a *new* limit until they leave; that is
  reported, not judged.)
* ``leases-end`` - every granted lease is released or expires; a lease still
  open when the log ends is a leak if its holder had finished (renewals are
  not logged, so a holder still booting is given the benefit: *unknown*).
* ``servers-done`` - every server that appears (``server.state``) ends ``done``
  (``failed`` is reported as invalid too: a boot that gave up).
* ``no-grant-while-dormant`` - no ``admission.grant`` goes to a server whose own
  last ``server.state`` said ``dormant`` (it is powered off: the controller must
  wake it first).

Each returns *unknown* when the log holds no workflow events at all.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import attrs

from topologies.checkers import Verdict

__all__ = ["check_admission", "check_no_grant_while_dormant"]


def check_admission(events: list[dict]) -> dict[str, Any]:
    """Rebuild holders, reservations and limits per controller from events; report violations.

    Holds if no grant, adoption or reservation ever takes holders + reservations
    above the limit in force. Also reports the peak number of holders, how far
    holders ever stood above a limit (after a decrease, before holders left),
    and the leases never released nor expired.
    """
    limit: dict[str, int] = {}
    holders: dict[str, set] = defaultdict(set)
    reserved: dict[str, set] = defaultdict(set)
    violations: list[dict] = []
    peak = 0
    over = 0
    granted = 0
    ended: set = set()
    starts: dict[str, int] = {}
    for e in sorted(events, key=lambda e: e["time"]):
        kind = e["kind"]
        if not (kind.startswith(("admission.", "lease.", "controller.")) or kind in ("limit.changed", "waiting.dropped")):
            continue
        c = f"{e['node']}/{e['actor']}"
        f = e["fields"]
        if kind == "controller.start":
            limit[c] = f["limit"]
            starts[c] = starts.get(c, 0) + 1
        elif kind == "limit.changed":
            limit[c] = f["new"]
        elif kind in ("admission.grant", "lease.adopted"):
            granted += 1
            holders[c].add(f["lease"])
            if f.get("from_reservation"):
                reserved[c].discard(f["server"])
            if len(holders[c]) + len(reserved[c]) > limit.get(c, math.inf):
                violations.append(e)
        elif kind == "admission.wake" and f.get("reserved"):
            reserved[c].add(f["server"])
            if len(holders[c]) + len(reserved[c]) > limit.get(c, math.inf):
                violations.append(e)
        elif kind in ("admission.wake_failed", "waiting.dropped"):
            reserved[c].discard(f["server"])
        elif kind in ("lease.released", "lease.expired"):
            holders[c].discard(f["lease"])
            ended.add(f["lease"])
        peak = max(peak, len(holders[c]))
        over = max(over, len(holders[c]) - limit.get(c, math.inf))
    outstanding = sorted(lease for c in holders for lease in holders[c])
    return {"ok": not violations, "violations": violations[:10], "peak_holders": peak,
            "max_holders_over_limit": max(0, over), "granted": granted, "ended": len(ended),
            "outstanding": outstanding}


def check_no_grant_while_dormant(events: list[dict]) -> list[dict]:
    """Grants made to a server whose last state (per its own events) was dormant."""
    state: dict[str, str] = {}
    bad = []
    for e in sorted(events, key=lambda e: e["time"]):
        kind = e["kind"]
        if kind == "server.state":
            state[f"{e['node']}/{e['actor']}"] = e["fields"]["to"]
        elif kind == "admission.grant" and state.get(e["fields"]["server"]) == "dormant":
            bad.append(e)
    return bad


def _has(events: list[dict], prefix: str) -> bool:
    return any(e["kind"].startswith(prefix) for e in events)


@attrs.frozen
class AdmissionLimit:
    name: str = "admission-limit"

    def check(self, events: list[dict]) -> Verdict:
        if not _has(events, "controller.start"):
            return Verdict(self.name, "unknown", "no resource controller in this log")
        a = check_admission(events)
        if a["violations"]:
            return Verdict(self.name, "invalid", f"{len(a['violations'])} grants or reservations went above the limit in force",
                           a["violations"])
        return Verdict(self.name, "valid", f"{a['granted']} grants, peak {a['peak_holders']} holders, never above the limit "
                                           f"(holders above a lowered limit: at most {a['max_holders_over_limit']})")


@attrs.frozen
class LeasesEnd:
    name: str = "leases-end"

    def check(self, events: list[dict]) -> Verdict:
        if not _has(events, "controller.start"):
            return Verdict(self.name, "unknown", "no resource controller in this log")
        open_: dict[tuple[str, Any], dict] = {}
        state: dict[str, str] = {}
        for e in sorted(events, key=lambda e: e["time"]):
            c = f"{e['node']}/{e['actor']}"
            f = e.get("fields") or {}
            k = e["kind"]
            if k in ("admission.grant", "lease.adopted"):
                open_[(c, f.get("lease"))] = e
            elif k in ("lease.released", "lease.expired"):
                open_.pop((c, f.get("lease")), None)
            elif k == "server.state":
                state[c] = f.get("to", "")
        # Renewals are not logged, so an open lease is judged by its holder: one that
        # finished its workflow must have released it; one still booting may hold it.
        leaked = [e for e in open_.values() if state.get(e["fields"].get("server")) in ("done", "failed")]
        if leaked:
            return Verdict(self.name, "invalid", f"{len(leaked)} leases never ended although their holders finished", leaked)
        if open_:
            return Verdict(self.name, "unknown", f"{len(open_)} leases still held by servers that had not finished when the log ended")
        return Verdict(self.name, "valid", "every granted lease was released or expired")


@attrs.frozen
class ServersDone:
    name: str = "servers-done"

    def check(self, events: list[dict]) -> Verdict:
        last: dict[str, dict] = {}
        for e in events:
            if e["kind"] == "server.state":
                last[f"{e['node']}/{e['actor']}"] = e
        if not last:
            return Verdict(self.name, "unknown", "no server in this log")
        stuck = [e for e in last.values() if (e.get("fields") or {}).get("to") != "done"]
        if stuck:
            states = defaultdict(int)
            for e in stuck:
                states[e["fields"].get("to")] += 1
            return Verdict(self.name, "invalid", f"{len(stuck)} of {len(last)} servers did not finish: {dict(states)}", stuck)
        return Verdict(self.name, "valid", f"all {len(last)} servers reached done")


@attrs.frozen
class NoGrantWhileDormant:
    name: str = "no-grant-while-dormant"

    def check(self, events: list[dict]) -> Verdict:
        if not _has(events, "admission.grant"):
            return Verdict(self.name, "unknown", "no grants in this log")
        bad = check_no_grant_while_dormant(events)
        if bad:
            return Verdict(self.name, "invalid", f"{len(bad)} grants went to dormant (powered-off) servers", bad)
        return Verdict(self.name, "valid", "no grant went to a dormant server")


CHECKERS = (AdmissionLimit(), LeasesEnd(), ServersDone(), NoGrantWhileDormant())
