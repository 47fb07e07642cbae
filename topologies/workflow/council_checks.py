"""Invariant checkers of the councils (issue 21; routine 600 of seed 000), registered by the workflow plug-in.

How this works
--------------
Judged from the event log alone, like the admission checkers (:mod:`topologies.workflow.checks`); the
events are the council members' (:mod:`protocols.workflow.council`) and the oversight role's
(:mod:`protocols.workflow.oversight`). A mitigation is named by its id everywhere. Events are taken in
time order (equal times keep log order); members' clocks are assumed within a small skew.

* ``redirect-accepted`` - no redirect is enforced without the peer's acceptance, and the oversight
  role's approval where the decision said one was needed. Enforcement is the proposer's
  ``council.redirect`` and the peer's ``council.admitted``; each must come after a ``council.decided``
  of that mitigation with ``accepted`` > 0 (by the peer, or imposed by an operator), after an
  ``oversight.decision`` approving it when ``needs_approval``, never after an operator rejected it, and
  never after the enforcing member itself logged the mitigation ended or rejected (``council.state``).
  *invalid*: the offending enforcement events (and the decision, if any). *unknown*: nothing enforced.
* ``redirect-within-accepted`` - no peer receives more redirected servers than it accepted: per
  mitigation, the distinct servers in ``council.admitted`` (at the peer) and in ``council.redirect``
  (sent by the proposer) are at most the decision's ``accepted``. *invalid*: the first event over the
  count, with the decision. *unknown*: nothing redirected or admitted under a known decision.
* ``rejection-hold`` - a rejection holds: while a proposer holds a peer's rejection (``council.hold``
  at the proposer, until ``until``) it sends that peer no ``council.query`` and no ``council.proposed``;
  while a peer holds a rejection of a proposer (``council.decided`` rejected, or ``council.headroom``
  0, with ``hold_until``) it admits none of that proposer's servers (``council.admitted``). An
  operator's imposition lifts a hold (``council.hold_lifted``). *invalid*: the offending query,
  proposal or admission with the hold it broke. *unknown*: no hold in the log.

Every controller staying within its limit and every server finishing are the admission checkers'
``admission-limit`` and ``servers-done``, which judge guests like any other server.
"""

from __future__ import annotations

from collections import defaultdict

import attrs

from topologies.checkers import Verdict, plural
from topologies.workflow.checks import _addr, _at, _fields, _ordered

__all__ = ["COUNCIL_CHECKERS", "RedirectAccepted", "RedirectWithinAccepted", "RejectionHold"]

ENFORCE = ("council.redirect", "council.admitted")


@attrs.frozen
class RedirectAccepted:
    """No redirect enforced without the peer's acceptance (and an operator's approval where required)."""

    name: str = "redirect-accepted"

    def check(self, events: list[dict]) -> Verdict:
        decided: dict[str, dict] = {}
        approved: dict[str, dict] = {}
        refused: dict[str, dict] = {}
        over: dict[tuple[str, str], dict] = {}  # (member, mitigation) -> its own event ending the mitigation
        bad: list[tuple[dict, str, dict | None]] = []
        n = 0
        for e in _ordered(events):
            k = e.get("kind")
            f = _fields(e)
            mid = f.get("mitigation")
            if k == "council.decided" and mid not in decided:
                decided[mid] = e
            elif k == "oversight.decision":
                (approved if f.get("approve") else refused).setdefault(mid, e)
            elif k == "council.state" and f.get("to") in ("ended", "rejected"):
                over.setdefault((_addr(e), mid), e)
            elif k in ENFORCE:
                n += 1
                d = decided.get(mid)
                df = _fields(d) if d else {}
                if d is None or not (df.get("accepted") or 0) > 0:
                    bad.append((e, "the peer had not accepted it" if d is None else "the peer rejected it", d))
                elif mid in refused:
                    bad.append((e, f"an operator rejected it ({_fields(refused[mid]).get('by')})", refused[mid]))
                elif df.get("needs_approval") and mid not in approved:
                    bad.append((e, "it needed an operator's approval and had none", d))
                elif (_addr(e), mid) in over:
                    g = over[(_addr(e), mid)]
                    bad.append((e, f"this member had it {_fields(g).get('to')} since {_at(g)}", g))
        if not n:
            return Verdict(self.name, "unknown", "no redirect sent or admitted in this log: nothing to judge")
        if bad:
            e, why, ctx = bad[0]
            evidence: list[dict] = []
            for x, _, c in bad:
                evidence += [x] + ([c] if c is not None else [])
            return Verdict(self.name, "invalid",
                           f"{plural(len(bad), 'redirect')} enforced without acceptance; first: {e.get('kind')} of "
                           f"{_fields(e).get('server')} under {_fields(e).get('mitigation')} at {_at(e)}: {why}",
                           evidence)
        return Verdict(self.name, "valid", f"{plural(n, 'redirect')} sent or admitted, each under a mitigation its "
                                           f"peer accepted ({len(approved)} approved by an operator)")


@attrs.frozen
class RedirectWithinAccepted:
    """No peer receives more redirected servers than it accepted (nor does the proposer send more)."""

    name: str = "redirect-within-accepted"

    def check(self, events: list[dict]) -> Verdict:
        accepted: dict[str, tuple[int, dict]] = {}
        seen: dict[tuple[str, str], set] = defaultdict(set)
        bad: list[tuple[dict, dict]] = []
        judged = 0
        for e in _ordered(events):
            k = e.get("kind")
            f = _fields(e)
            mid = f.get("mitigation")
            if k == "council.decided" and mid not in accepted:
                accepted[mid] = (int(f.get("accepted") or 0), e)
            elif k in ENFORCE and mid in accepted:
                judged += 1
                s = seen[(k, mid)]
                s.add(f.get("server"))
                if len(s) > accepted[mid][0]:
                    bad.append((e, accepted[mid][1]))
        if not judged:
            return Verdict(self.name, "unknown", "nothing redirected or admitted under a decision in this log: "
                                                 "nothing to judge")
        if bad:
            e, d = bad[0]
            evidence: list[dict] = []
            for x, y in bad:
                evidence += [x, y]
            who = "admitted by the peer" if e.get("kind") == "council.admitted" else "sent by the proposer"
            return Verdict(self.name, "invalid",
                           f"{plural(len(bad), 'server')} beyond the accepted share; first: "
                           f"{_fields(e).get('server')} {who} under {_fields(e).get('mitigation')} at {_at(e)}, "
                           f"which accepted {_fields(d).get('accepted')}", evidence)
        peak = {k[1]: len(v) for k, v in seen.items() if k[0] == "council.admitted"}
        return Verdict(self.name, "valid", f"{plural(judged, 'redirect')} and admissions under {len(accepted)} "
                                           f"decisions, none beyond its accepted share "
                                           f"({sum(peak.values())} servers admitted by peers)")


@attrs.frozen
class RejectionHold:
    """A rejection holds: no query or proposal to, and no admission from, the party held off."""

    name: str = "rejection-hold"

    def check(self, events: list[dict]) -> Verdict:
        out: dict[tuple[str, str], tuple[float, dict]] = {}  # (proposer, peer) -> (until, the hold event)
        inn: dict[tuple[str, str], tuple[float, dict]] = {}  # (peer, proposer) -> (until, the event)
        mit_proposer: dict[str, str] = {}
        holds = 0
        bad: list[tuple[dict, dict]] = []
        for e in _ordered(events):
            k = e.get("kind")
            f = _fields(e)
            a = _addr(e)
            t = e.get("time", 0.0)
            if k == "council.hold":
                holds += 1
                out[(a, f.get("peer"))] = (float(f.get("until") or 0.0), e)
            elif k in ("council.decided", "council.headroom"):
                if f.get("mitigation"):
                    mit_proposer[f["mitigation"]] = f.get("proposer")
                until = f.get("hold_until")
                rejected = (f.get("outcome") == "rejected") if k == "council.decided" else not f.get("headroom")
                if rejected and until:
                    holds += 1
                    inn[(a, f.get("proposer"))] = (float(until), e)
            elif k == "council.hold_lifted":
                if f.get("peer"):
                    out.pop((a, f["peer"]), None)
                if f.get("proposer"):
                    inn.pop((a, f["proposer"]), None)
            elif k == "council.query":
                for p in f.get("peers") or ():
                    h = out.get((a, p))
                    if h is not None and t < h[0]:
                        bad.append((e, h[1]))
            elif k == "council.proposed":
                h = out.get((a, f.get("peer")))
                if h is not None and t < h[0]:
                    bad.append((e, h[1]))
            elif k == "council.admitted":
                h = inn.get((a, f.get("proposer") or mit_proposer.get(f.get("mitigation"))))
                if h is not None and t < h[0]:
                    bad.append((e, h[1]))
        if not holds:
            return Verdict(self.name, "unknown", "no rejection held in this log: nothing to judge")
        if bad:
            e, h = bad[0]
            evidence: list[dict] = []
            for x, y in bad:
                evidence += [x, y]
            return Verdict(self.name, "invalid",
                           f"{plural(len(bad), 'request')} during a rejection hold; first: {e.get('kind')} at "
                           f"{_at(e)} during the hold of {_at(h)}", evidence)
        return Verdict(self.name, "valid", f"{plural(holds, 'rejection hold')}, none broken")


COUNCIL_CHECKERS = (RedirectAccepted(), RedirectWithinAccepted(), RejectionHold())
