"""The workflow-group oversight role: a person's say over the councils' mitigations (seed doc FIG. 5, device 550).

How this works
--------------
One :class:`Oversight` machine serves every council named in its configuration
(``councils``: name -> ``{"members": [...], "approval": "none" | "all" | "above-share",
"approval_share": x}``; the members hold the same approval setting in their own council
configuration and say, in each decision, whether it needs approval). It hears from the members
(:class:`MitigationNotice`) and from operators (a console or a CLI; every operator message names its
``operator``; authenticating that person is the console's job, not this machine's):

* a peer's *decision* that needs approval, or the proposer's request for one, makes the mitigation
  **pending** (``oversight.pending``) until an operator sends :class:`OversightApprove` or
  :class:`OversightReject`. The decision (``oversight.decision``: approve, by ``operator:<name>``) is
  persisted, then sent as :class:`OversightDecision` to every member of the council (the proposer and the
  peer first) and resent every ``resend_every`` seconds until each acknowledges it (a member asking again gets it again). The
  oversight role is the only author of approvals, so no member enforces a pending mitigation on its own;
* *no mitigation possible* (an overloaded member found no peer with headroom) is an **alert**
  (``oversight.alert``), kept with the latest ones;
* :class:`OversightPropose`: the operator asks a member to propose a mitigation to a peer
  (:class:`ProposeMitigation`; the peer still decides by its headroom; approved already, since a person
  asked for it); :class:`OversightImpose`: the peer is told to take it (:class:`ImposeMitigation`) -
  it still admits the servers within its own limit; :class:`OversightCancel` ends a mitigation
  (:class:`MitigationEnd` to both parties, resent until acknowledged);
* :class:`OversightList` is answered with an :class:`OversightView`: the councils and their approval
  modes, every mitigation known (proposed, pending, in force, rejected, ended), the alerts and the
  latest history.

Every operator message is answered with :class:`OversightAck` (``ok`` False and why, e.g. approving a
mitigation that is not pending). Operator messages are taken only from the oversight role's own node
(where its console runs, and which a CURVE-keyed transport proves); from anywhere else they are refused. The **history** holds every decision with who made it (a member, an
operator, the clock), ``history_size`` entries, persisted as a ring (``h/<i>``); mitigation records are
persisted under ``m/<id>`` before any message that reveals a decision leaves.

Mitigation states here (``state`` of :class:`MitigationView`): ``proposed``, ``pending``, ``in_force``,
``rejected``, ``ended`` - the same derivation as the members' (:func:`protocols.workflow.council.derive`).
Events: ``oversight.start``, ``oversight.notice``, ``oversight.pending``, ``oversight.decision``,
``oversight.alert``, ``oversight.propose``, ``oversight.impose``, ``oversight.cancel``,
``oversight.refused`` (an operator request refused), ``oversight.ignored``.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

from protocols.core import Effect, Emit, Persist, Send
from protocols.workflow.council import APPROVAL_MODES, _Mit, derive
from protocols.workflow.council_messages import (
    ImposeMitigation,
    MitigationEnd,
    MitigationEndAck,
    MitigationNotice,
    MitigationView,
    OversightAck,
    OversightApprove,
    OversightCancel,
    OversightDecision,
    OversightDecisionAck,
    OversightEntry,
    OversightImpose,
    OversightList,
    OversightPropose,
    OversightReject,
    OversightView,
    ProposeMitigation,
)

__all__ = ["Oversight"]

MAX_MITIGATIONS = 1024
_OPERATOR = (OversightList, OversightApprove, OversightReject, OversightPropose, OversightImpose, OversightCancel)


class Oversight:
    """The oversight role for one or more councils (sans-I/O; see the module docstring)."""

    tick_interval = 1.0

    def __init__(self, councils: dict, *, rng: random.Random, address: str = "", durable: dict | None = None,
                 resend_every: float = 2.0, history_size: int = 1000, alerts: int = 50) -> None:
        if not isinstance(councils, dict) or not councils:
            raise ValueError("oversight needs 'councils': name -> {members, approval, approval_share}")
        self.councils: dict[str, dict] = {}
        for name, c in councils.items():
            members = (c or {}).get("members", [])
            mode = (c or {}).get("approval", "none")
            if mode not in APPROVAL_MODES or not isinstance(members, (list, tuple)) or len(members) < 2:
                raise ValueError(f"oversight: council {name!r} needs members (2 or more) and an approval mode "
                                 f"in {APPROVAL_MODES}")
            self.councils[name] = {"members": tuple(members), "approval": mode,
                                   "approval_share": float(c.get("approval_share", 0.25))}
        if not resend_every > 0 or history_size < 1:
            raise ValueError("need resend_every > 0 and history_size >= 1")
        self.address = address
        self.epoch = rng.getrandbits(31)
        self.resend_every = resend_every
        self.history_size = history_size
        self.persistent = durable is not None
        self.mits: dict[str, _Mit] = {}
        self.council_of: dict[str, str] = {}
        self.outbox: dict[str, list] = {}  # mitigation -> [message, [addresses not acknowledged yet], until]
        self.history: deque[OversightEntry] = deque(maxlen=history_size)
        self.alerts: deque[OversightEntry] = deque(maxlen=alerts)
        self._h = 0
        self.counter = 0
        self.started = False
        if durable:
            self._restore(durable)

    # -- the contract -------------------------------------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        fx: list[Effect] = []
        if not self.started:
            self.started = True
            fx.append(Emit("oversight.start", {"councils": {n: c["approval"] for n, c in self.councils.items()},
                                               "restored": len(self.mits)}))
        for mid, (msg, to, until) in list(self.outbox.items()):
            if not to or now >= until:
                del self.outbox[mid]
                continue
            fx += [Send(a, msg) for a in to]
        return fx

    def handle(self, msg: Any, sender: str, now: float) -> list[Effect]:
        t = type(msg)
        if t is MitigationNotice:
            return self._on_notice(msg, sender, now)
        if t is OversightDecisionAck or t is MitigationEndAck:
            entry = self.outbox.get(msg.mitigation)
            if entry is not None and msg.member == sender and msg.member in entry[1]:
                entry[1].remove(msg.member)
            return []
        if t in _OPERATOR and self.address and sender.partition("/")[0] != self.address.partition("/")[0]:
            return self._refuse(sender, "operator requests are taken only from this role's own node (its console)",
                                getattr(msg, "mitigation", ""))
        if t is OversightList:
            return [Send(sender, self.view(now, msg.history))]
        if t in _OPERATOR:
            if not isinstance(msg.operator, str) or not msg.operator.strip():
                return self._refuse(sender, "an operator request must name its operator", getattr(msg, "mitigation", ""))
            return {OversightApprove: self._on_approve, OversightReject: self._on_approve,
                    OversightPropose: self._on_propose, OversightImpose: self._on_propose,
                    OversightCancel: self._on_cancel}[t](msg, sender, now)
        return [Emit("oversight.ignored", {"message": t.__name__, "from": sender})]

    # -- from the councils ---------------------------------------------------------------------

    def _on_notice(self, n: MitigationNotice, sender: str, now: float) -> list[Effect]:
        if n.council not in self.councils:
            return [Emit("oversight.ignored", {"message": "MitigationNotice", "why": f"unknown council {n.council!r}",
                                               "from": sender})]
        if sender != n.member or sender not in self.councils[n.council]["members"]:
            return [Emit("oversight.ignored", {"message": "MitigationNotice", "why": "not from a member of its council",
                                               "from": sender})]
        fx: list[Effect] = [Emit("oversight.notice", {"council": n.council, "kind": n.kind, "member": n.member,
                                                      "mitigation": n.mitigation, "accepted": n.accepted,
                                                      "detail": n.detail})]
        if n.kind == "no-mitigation":
            e = self._entry(now, n.council, "no mitigation possible", n.member, "",
                            f"{n.member}: {n.detail}; {n.requested} servers beyond the threshold, {n.waiting} waiting")
            self.alerts.append(e)
            return fx + self._persist_entry(e) + [Emit("oversight.alert", {"council": n.council, "member": n.member,
                                                                            "need": n.requested, "why": n.detail})]
        if not n.mitigation:
            return fx
        m = self.mits.get(n.mitigation)
        if m is None:
            if len(self.mits) >= MAX_MITIGATIONS:
                fx += self._prune()
                if len(self.mits) >= MAX_MITIGATIONS:
                    return fx + [Emit("oversight.ignored", {"message": "MitigationNotice", "from": sender,
                                                            "why": "too many open mitigations"})]
            m = self.mits[n.mitigation] = _Mit(n.mitigation, n.proposer, n.peer, n.requested, n.until, n.waiting)
            self.council_of[n.mitigation] = n.council
        if n.kind in ("decision", "approval"):
            if m.accepted is None and (n.kind == "decision" or n.accepted):
                m.proposer, m.peer, m.requested, m.until, m.waiting = n.proposer, n.peer, n.requested, n.until, n.waiting
                m.accepted, m.needs_approval, m.decided_by = n.accepted, n.needs_approval, n.peer
                what = "rejected by the peer" if not n.accepted else (
                    "accepted by the peer, waits for approval" if n.needs_approval else "accepted by the peer")
                e = self._entry(now, n.council, what, n.peer, m.id, f"{n.accepted} of {n.requested} servers of "
                                                                     f"{n.proposer} until {n.until:.1f}")
                fx += self._persist(m) + self._persist_entry(e)
            if m.approved is not None:  # decided already: say it again to whoever asks
                fx.append(Send(sender, OversightDecision(m.id, n.council, m.approved, m.approved_by)))
            elif m.accepted is not None and m.accepted > 0 and m.needs_approval and m.state.value == "proposed":
                fx += self._set_state(m, now)
                fx.append(Emit("oversight.pending", {"council": n.council, "mitigation": m.id, "proposer": m.proposer,
                                                     "peer": m.peer, "accepted": m.accepted, "waiting": m.waiting}))
            else:
                fx += self._set_state(m, now)
        elif n.kind == "ended" and not m.ended:
            m.ended, m.end_reason = True, n.detail
            e = self._entry(now, n.council, "ended", n.member, m.id, n.detail)
            fx += self._set_state(m, now) + self._persist_entry(e)
        elif n.kind == "declined":
            e = self._entry(now, n.council, "operator's proposal declined", n.member, m.id, n.detail)
            m.ended, m.end_reason = True, "declined: " + n.detail
            fx += self._set_state(m, now) + self._persist_entry(e)
        return fx

    # -- from operators -------------------------------------------------------------------------

    def _on_approve(self, msg: OversightApprove | OversightReject, sender: str, now: float) -> list[Effect]:
        approve = type(msg) is OversightApprove
        m = self.mits.get(msg.mitigation)
        if m is None:
            return self._refuse(sender, f"no mitigation {msg.mitigation!r}", msg.mitigation)
        state = derive(m, now).value
        if m.approved is not None or state != "pending":
            return self._refuse(sender, f"{m.id} is {state}, not pending"
                                + (f" (decided by {m.approved_by})" if m.approved_by else ""), m.id)
        by = f"operator:{msg.operator}"
        m.approved, m.approved_by = approve, by
        reason = getattr(msg, "reason", "")
        m.end_reason = reason if not approve else m.end_reason
        council = self.council_of.get(m.id, "")
        e = self._entry(now, council, "approved" if approve else "rejected by an operator", by, m.id, reason)
        fx = self._set_state(m, now) + self._persist_entry(e)  # persisted before the decision leaves
        fx.append(Emit("oversight.decision", {"council": council, "mitigation": m.id, "approve": approve, "by": by,
                                              "reason": reason, "proposer": m.proposer, "peer": m.peer}))
        d = OversightDecision(m.id, council, approve, by, reason)
        to = self._members(council, m)  # every member learns it (the parties first), so all know what is in force
        self.outbox[m.id] = [d, list(to), m.until]
        fx += [Send(a, d) for a in to]
        return fx + [Send(sender, OversightAck(True, f"{m.id} {'approved' if approve else 'rejected'} by {by}", m.id))]

    def _on_propose(self, msg: OversightPropose | OversightImpose, sender: str, now: float) -> list[Effect]:
        impose = type(msg) is OversightImpose
        c = self.councils.get(msg.council)
        if c is None:
            return self._refuse(sender, f"no council {msg.council!r}")
        if msg.proposer not in c["members"] or msg.peer not in c["members"] or msg.proposer == msg.peer:
            return self._refuse(sender, f"{msg.proposer!r} and {msg.peer!r} must be two members of {msg.council!r}")
        if not (isinstance(msg.count, int) and 0 < msg.count <= 1_000_000) or not 0 < msg.duration <= 86_400:
            return self._refuse(sender, "count must be 1..1000000 and duration 0..86400 s")
        self.counter += 1
        mid = f"operator@{self.address}#{self.epoch}.{self.counter}"
        by = f"operator:{msg.operator}"
        until = now + msg.duration
        m = self.mits[mid] = _Mit(mid, msg.proposer, msg.peer, msg.count, until, 0)
        self.council_of[mid] = msg.council
        m.by = m.approved_by = by
        m.approved = True
        if impose:
            m.accepted, m.decided_by, m.imposed = msg.count, by, True
            out: Any = ImposeMitigation(mid, msg.council, msg.proposer, msg.count, until, by)
            to = msg.peer
        else:
            out = ProposeMitigation(mid, msg.council, msg.peer, msg.count, until, by)
            to = msg.proposer
        what = "imposed" if impose else "proposed"
        e = self._entry(now, msg.council, f"{what} by an operator", by, mid,
                        f"{msg.count} servers of {msg.proposer} to {msg.peer} for {msg.duration:.0f}s")
        fx = self._set_state(m, now) + self._persist_entry(e)
        fx.append(Emit(f"oversight.{'impose' if impose else 'propose'}", {
            "council": msg.council, "mitigation": mid, "proposer": msg.proposer, "peer": msg.peer,
            "count": msg.count, "until": until, "by": by}))
        self.outbox[mid] = [out, [to], until]
        return fx + [Send(to, out), Send(sender, OversightAck(True, f"{mid} {what}", mid))]

    def _on_cancel(self, msg: OversightCancel, sender: str, now: float) -> list[Effect]:
        m = self.mits.get(msg.mitigation)
        if m is None:
            return self._refuse(sender, f"no mitigation {msg.mitigation!r}", msg.mitigation)
        state = derive(m, now).value
        if state not in ("proposed", "pending", "in_force"):
            return self._refuse(sender, f"{m.id} is {state} already", m.id)
        by = f"operator:{msg.operator}"
        m.ended, m.end_by, m.end_reason = True, by, msg.reason or "cancelled"
        council = self.council_of.get(m.id, "")
        e = self._entry(now, council, "cancelled", by, m.id, msg.reason)
        fx = self._set_state(m, now) + self._persist_entry(e)
        fx.append(Emit("oversight.cancel", {"council": council, "mitigation": m.id, "by": by, "reason": msg.reason}))
        end = MitigationEnd(m.id, council, by, msg.reason or "cancelled by an operator")
        to = self._members(council, m)
        self.outbox[m.id] = [end, list(to), m.until]
        fx += [Send(a, end) for a in to]
        return fx + [Send(sender, OversightAck(True, f"{m.id} cancelled by {by}", m.id))]

    # -- the view -------------------------------------------------------------------------------

    def view(self, now: float, history: int = 50) -> OversightView:
        mits = tuple(MitigationView(m.id, self.council_of.get(m.id, ""), m.proposer, m.peer, m.requested,
                                    m.accepted or 0, m.until, derive(m, now).value, m.needs_approval, m.decided_by,
                                    m.approved_by, m.end_reason)
                     for m in sorted(self.mits.values(), key=lambda x: (x.until, x.id)))
        n = max(0, min(int(history), self.history_size))
        return OversightView({k: c["approval"] for k, c in self.councils.items()}, mits,
                             tuple(list(self.history)[-n:]) if n else (), tuple(self.alerts))

    def pending(self, now: float) -> list[str]:
        return [m.id for m in self.mits.values() if derive(m, now).value == "pending"]

    # -- helpers ----------------------------------------------------------------------------------

    def _members(self, council: str, m: _Mit) -> list[str]:
        first = [a for a in (m.proposer, m.peer) if a]
        rest = [a for a in self.councils.get(council, {}).get("members", ()) if a not in first]
        return first + rest

    def _set_state(self, m: _Mit, now: float) -> list[Effect]:
        m.state = derive(m, now)
        return self._persist(m)

    def _entry(self, now: float, council: str, what: str, by: str, mid: str, detail: str) -> OversightEntry:
        e = OversightEntry(now, council, what, by, mid, detail)
        self.history.append(e)
        return e

    def _persist(self, m: _Mit) -> list[Effect]:
        if not self.persistent:
            return []
        return [Persist(f"m/{m.id}", m.record() | {"council": self.council_of.get(m.id, "")})]

    def _persist_entry(self, e: OversightEntry) -> list[Effect]:
        if not self.persistent:
            return []
        self._h += 1
        return [Persist(f"h/{self._h % self.history_size}", {"n": self._h, "time": e.time, "council": e.council,
                                                             "what": e.what, "by": e.by, "mitigation": e.mitigation,
                                                             "detail": e.detail})]

    def _restore(self, durable: dict) -> None:
        entries = []
        for key, rec in durable.items():
            if not isinstance(rec, dict):
                continue
            if key.startswith("m/"):
                try:
                    m = _Mit.from_record(key[2:], {k: v for k, v in rec.items() if k != "council"})
                except (ValueError, TypeError):
                    continue
                self.mits[m.id] = m
                self.council_of[m.id] = rec.get("council", "")
            elif key.startswith("h/") and isinstance(rec.get("n"), int):
                entries.append(rec)
        for rec in sorted(entries, key=lambda r: r["n"]):
            e = OversightEntry(rec["time"], rec["council"], rec["what"], rec["by"], rec["mitigation"], rec["detail"])
            self.history.append(e)
            if e.what == "no mitigation possible":
                self.alerts.append(e)
            self._h = max(self._h, rec["n"])

    def _prune(self) -> list[Effect]:
        """Forget the older half of the finished records (and retire their durable keys)."""
        done = sorted((m.until, k) for k, m in self.mits.items() if m.state.value in ("rejected", "ended"))
        fx: list[Effect] = []
        for _, k in done[:max(1, len(done) // 2)]:
            del self.mits[k]
            self.council_of.pop(k, None)
            self.outbox.pop(k, None)
            if self.persistent:
                fx.append(Persist(f"m/{k}", None))
        return fx

    def _refuse(self, sender: str, why: str, mid: str = "") -> list[Effect]:
        return [Emit("oversight.refused", {"why": why, "mitigation": mid, "from": sender}),
                Send(sender, OversightAck(False, why, mid))]

