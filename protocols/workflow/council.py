"""The council of resource controllers: routine 600 (seed doc FIGS. 5 and 6), as a pure state machine.

How this works
--------------
Controllers of interchangeable resources in different workflow groups (regions) form a **council**
(one per resource type; the members are their controllers' addresses, given to every member by the
topology). Each member's :class:`Council` lives inside its :class:`~protocols.workflow.controller.
ResourceController` (``council=`` config), reads the controller's figures (waiting list, limit, holders,
mean hold, Provision notices, under-delivery flag) and returns effects like any protocol machine.

**Routine 600, as proposer.** Every ``check_every`` seconds (block 602) a member computes its *excess*:
the waiting servers (plus servers announced by Provision notices and not seen yet) beyond those it can
serve within ``wait_threshold`` seconds at its limit (:func:`excess_waiting`); an under-delivering
resource lowers the limit, so it raises the excess. An excess of ``min_excess`` or more, not covered by
mitigations already open, is an overload (``council.overload``, with the reasons: ``wait``,
``provision``, ``underdelivery``). The member asks every peer not on hold for headroom (block 604:
:class:`HeadroomQuery`, ``council.query``), and once all have answered or ``query_timeout`` passed it
proposes (block 606) to each peer with headroom a mitigation: redirect ``count`` of its waiting servers
(at most the peer's headroom; the excess shared out largest headroom first) until ``now + duration``
(:class:`MitigationPropose`, ``council.proposed``). If no peer has headroom, no mitigation is possible:
the oversight role is notified (:class:`MitigationNotice` ``no-mitigation``, ``council.no_mitigation``).

**As peer.** A peer answers a query with its headroom (:func:`lendable`: a ``lend`` fraction of the
servers it could serve in ``duration`` beyond its own holders, waiters and announced servers, less what
it has already lent and not yet received; 0 while it is itself overloaded or under-delivering). It
decides a proposal by the same figure *at decision time*: it accepts up to its headroom (``accepted``
may be less than asked: a partial acceptance) or, with none, rejects. A rejection - a decision of 0 or a
headroom of 0 - **holds** for ``hold`` seconds: the peer refuses that proposer's redirected servers, and
the proposer, once told, sends that peer no query and no proposal until the hold is over. A peer that
becomes overloaded itself **withdraws** what it lent (:class:`MitigationEnd`, ``peer overloaded``).

**Agreement: one decider per fact.** The council does not choose among competing values, so it needs no
Paxos: each fact about a mitigation has exactly one author, and a mitigation's state is a function of the
facts a member knows, which only grow:

* the *decision* (accepted count, whether oversight must approve, the hold) is authored only by the peer
  that lends the capacity - nobody else can judge its headroom, and Paxos among the members would let a
  majority commit a peer's capacity without it. It is persisted before it is sent and sent again,
  unchanged, to any repeated proposal;
* the *approval* is authored only by the oversight role (an operator's approve or reject, or an operator's
  own proposal or imposition), persisted there before it is sent;
* the *end* is a flag any party may set (the proposer, the peer, an operator, or the clock at ``until``);
  it is absorbing, so ends from several parties commute.

So two members that know the same facts derive the same state (:func:`derive`), no member can derive
``in_force`` unless the peer accepted (and, where required, the operator approved), and states only move
forward through :data:`MIT_TRANSITIONS`. Facts travel in messages that are resent until acknowledged
(the proposal until the decision, the decision to every repeated proposal, approvals and ends until
acked), so every member that can talk to the author learns it; the others only lag. Each mitigation id
names its proposer's incarnation (``<proposer>#<epoch>.<n>``), so it is never reused.

**Enforcement** (block 610). The proposer redirects, from the tail of its waiting list (those who would
wait longest), at most ``accepted`` distinct servers per mitigation in force (:class:`Redirect`, through
the proxy a server came by; ``council.redirect``); a redirected server asks the peer with
``AccessRequest.mitigation``. The peer admits it into its waiting list (behind its own servers) only
while the mitigation is in force there, no hold on the proposer stands, and fewer than ``accepted``
servers were admitted under it (``council.admitted``); a server that arrives while the peer has not yet
heard the operator's approval (the proposer had it) is told to wait pending a moment and ping
(``council.wait_approval``); otherwise the peer answers :class:`RedirectRefused` (``council.refused``) and
the server goes home. Admitted servers are ordinary waiters and holders of the
peer: its limit and leases apply. When the mitigation ends, no new server is redirected or admitted;
those admitted finish there. A server that comes home (``AccessRequest.returned``) is queued again and
never redirected again for that request.

Identity and bounds: each fact is taken only from its author - a query or proposal from its proposer, a
report or decision from its peer (never accepting more than asked), approvals, operators' proposals and
impositions from the council's oversight role, ends from a member or the oversight role; anything else is
refused (``council.ignored``, counted in ``refused``) and changes nothing. At most ``2 x MAX_RECORDS``
mitigations are known; finished ones are pruned first.

Durable state (with the controller's store: ``Persist`` before the sends that depend on it): every
mitigation record (``c/m/<id>``: facts, redirected and admitted servers) and the holds (``c/holds``).
A restarted member resumes them (expiry by the clock, resends of what is unanswered).

Events: ``council.start``, ``council.overload``, ``council.query``, ``council.headroom``,
``council.hold``, ``council.hold_lifted``, ``council.proposed``, ``council.decided``, ``council.state``,
``council.redirect``, ``council.returned``, ``council.admitted``, ``council.refused``, ``council.wait_approval``,
``council.no_mitigation``, ``council.declined``, ``council.ignored``.
"""

from __future__ import annotations

import enum
import math
from typing import Any

import attrs

from protocols.core import Effect, Emit, Persist, Send
from protocols.workflow.council_messages import (
    HeadroomQuery,
    HeadroomReport,
    ImposeMitigation,
    MitigationDecision,
    MitigationEnd,
    MitigationEndAck,
    MitigationNotice,
    MitigationPropose,
    OversightDecision,
    OversightDecisionAck,
    ProposeMitigation,
    Redirect,
    RedirectRefused,
)
from protocols.workflow.messages import AccessDeny, AccessRequest, Directive, StatusPing
from protocols.workflow.policy import check_transition

__all__ = [
    "APPROVAL_MODES",
    "COUNCIL_MESSAGES",
    "MIT_TRANSITIONS",
    "Council",
    "CouncilConfig",
    "MitState",
    "derive",
    "excess_waiting",
    "lendable",
    "needs_approval",
]

APPROVAL_MODES = ("none", "all", "above-share")
MAX_RECORDS = 512  # mitigation records kept; the oldest finished ones go first


class MitState(enum.Enum):
    PROPOSED = "proposed"  # asked, not decided
    PENDING = "pending"  # accepted by the peer, waits for an operator's approval
    IN_FORCE = "in_force"
    REJECTED = "rejected"  # by the peer (accepted 0) or by an operator
    ENDED = "ended"  # expired, withdrawn, no longer needed, cancelled


M = MitState
MIT_TRANSITIONS: dict[MitState, frozenset[MitState]] = {
    M.PROPOSED: frozenset({M.PENDING, M.IN_FORCE, M.REJECTED, M.ENDED}),
    M.PENDING: frozenset({M.IN_FORCE, M.REJECTED, M.ENDED}),
    M.IN_FORCE: frozenset({M.ENDED}),
    M.REJECTED: frozenset(),
    M.ENDED: frozenset(),
}
_OPEN = (M.PROPOSED, M.PENDING, M.IN_FORCE)

COUNCIL_MESSAGES = (HeadroomQuery, HeadroomReport, MitigationPropose, MitigationDecision, MitigationEnd,
                    MitigationEndAck, OversightDecision, ProposeMitigation, ImposeMitigation)


# -- pure arithmetic ---------------------------------------------------------------------------


def excess_waiting(waiting: int, limit: int, mean: float, threshold: float) -> int:
    """Waiting servers beyond those served within ``threshold`` s at ``limit`` slots held ``mean`` s each."""
    if limit <= 0:
        return waiting
    return max(0, waiting - math.floor(limit * threshold / max(mean, 1e-9)))


def lendable(limit: int, busy: int, waiting: int, unseen: int, mean: float, horizon: float, lend: float,
             lent_open: int) -> int:
    """Servers a peer can take: ``lend`` of what it could serve in ``horizon`` beyond its own load, less what it
    lent and has not received yet."""
    if limit <= 0:
        return 0
    spare = limit * horizon / max(mean, 1e-9) - busy - waiting - unseen
    return max(0, math.floor(lend * spare) - lent_open)


def needs_approval(mode: str, share: float, accepted: int, waiting: int) -> bool:
    """Whether the council's oversight must approve an accepted mitigation before it is enforced."""
    if accepted <= 0 or mode == "none":
        return False
    if mode == "all":
        return True
    return accepted / max(1, waiting) > share


@attrs.frozen
class CouncilConfig:
    """A council's rules, the same for every member (from the topology)."""

    name: str
    members: tuple[str, ...]
    proxies: dict = attrs.field(factory=dict)  # member -> its proxies (where redirected servers may go)
    oversight: str = ""  # the oversight role's address ("" = none: no approvals, notices only logged)
    approval: str = "none"  # none | all | above-share
    approval_share: float = 0.25  # above-share: approval needed above this share of the proposer's waiting
    wait_threshold: float = 60.0  # a predicted wait above this is an overload (s)
    min_excess: int = 5  # servers beyond the threshold worth a mitigation
    duration: float = 120.0  # how long a mitigation lasts (s)
    hold: float = 60.0  # how long a rejection holds (s)
    lend: float = 0.5  # the share of its spare capacity a peer lends
    query_timeout: float = 2.0
    check_every: float = 5.0
    retry_every: float = 1.0
    propose_timeout: float = 10.0  # a proposal unanswered this long is given up (and ended)

    @classmethod
    def from_dict(cls, d: dict) -> "CouncilConfig":
        if isinstance(d, CouncilConfig):
            return d
        if not isinstance(d, dict) or not isinstance(d.get("name"), str) or not d["name"]:
            raise ValueError("a council needs a 'name' (the resource type)")
        members = d.get("members")
        if not isinstance(members, (list, tuple)) or len(members) < 2 or not all(
                isinstance(m, str) and "/" in m for m in members) or len(set(members)) != len(members):
            raise ValueError(f"council {d['name']!r}: 'members' must be two or more distinct controller addresses")
        kw = {k: v for k, v in d.items() if k not in ("name", "members")}
        unknown = sorted(set(kw) - {f.name for f in attrs.fields(cls)})
        if unknown:
            raise ValueError(f"council {d['name']!r}: unknown settings {unknown}")
        c = cls(d["name"], tuple(members), **kw)
        if c.approval not in APPROVAL_MODES:
            raise ValueError(f"council {c.name!r}: approval must be one of {APPROVAL_MODES}, got {c.approval!r}")
        for f in ("wait_threshold", "duration", "query_timeout", "check_every", "retry_every", "propose_timeout"):
            if not getattr(c, f) > 0:
                raise ValueError(f"council {c.name!r}: {f} must be > 0")
        if c.hold < 0 or not 0 < c.lend <= 1 or c.min_excess < 1 or not 0 <= c.approval_share <= 1:
            raise ValueError(f"council {c.name!r}: need hold >= 0, 0 < lend <= 1, min_excess >= 1, "
                             "0 <= approval_share <= 1")
        return c


class _Mit:
    """One mitigation as a member knows it: the facts (decision, approval, end) and the servers moved."""

    __slots__ = ("accepted", "approved", "approved_by", "by", "decided_by", "end_by", "end_reason", "ended",
                 "id", "needs_approval", "proposer", "peer", "redirected", "admitted", "requested", "sent_at",
                 "first_sent", "state", "until", "waiting", "unacked", "imposed", "asked_at")

    def __init__(self, mid: str, proposer: str = "", peer: str = "", requested: int = 0, until: float = 0.0,
                 waiting: int = 0) -> None:
        self.id = mid
        self.proposer = proposer
        self.peer = peer
        self.requested = requested
        self.until = until
        self.waiting = waiting
        self.accepted: int | None = None
        self.needs_approval = False
        self.decided_by = ""
        self.approved: bool | None = None
        self.approved_by = ""
        self.ended = False
        self.end_by = ""
        self.end_reason = ""
        self.imposed = False
        self.by = ""  # who proposed it (the proposer, or operator:<name>)
        self.redirected: list[list] = []  # proposer: [server, boot, seq]
        self.admitted: list[str] = []  # peer: servers admitted under it
        self.state = M.PROPOSED
        self.sent_at = -math.inf  # proposer: last (re)send of the proposal
        self.first_sent = 0.0
        self.asked_at = -math.inf  # proposer: last approval request to the oversight
        self.unacked: list[str] = []  # addresses an end must still reach

    def record(self) -> dict:
        return {k: getattr(self, k) for k in ("proposer", "peer", "requested", "until", "waiting", "accepted",
                                              "needs_approval", "decided_by", "approved", "approved_by", "ended",
                                              "end_by", "end_reason", "imposed", "by", "redirected", "admitted",
                                              "unacked")} | {"state": self.state.value}

    @classmethod
    def from_record(cls, mid: str, r: dict) -> "_Mit":
        m = cls(mid)
        for k, v in r.items():
            if k == "state":
                m.state = MitState(v)
            elif k in cls.__slots__:
                setattr(m, k, v)
        return m


def derive(m: _Mit, now: float | None = None) -> MitState:
    """A mitigation's state from the facts known about it (see the module docstring)."""
    if m.ended or (now is not None and m.until and now >= m.until):
        return M.ENDED
    if m.approved is False:
        return M.REJECTED
    if m.accepted is None:
        return M.PROPOSED
    if m.accepted <= 0:
        return M.REJECTED
    if m.needs_approval and not m.approved:
        return M.PENDING
    return M.IN_FORCE


class Council:
    """One member of a council, inside its resource controller (sans-I/O; see the module docstring)."""

    def __init__(self, ctrl: Any, config: dict | CouncilConfig, *, address: str, durable: dict | None = None) -> None:
        self.cfg = CouncilConfig.from_dict(config)
        if address not in self.cfg.members:
            raise ValueError(f"council {self.cfg.name!r}: this controller ({address!r}) is not one of its members "
                             f"{list(self.cfg.members)}")
        self.ctrl = ctrl
        self.address = address
        self.peers = tuple(m for m in self.cfg.members if m != address)
        self.persistent = durable is not None
        self.mits: dict[str, _Mit] = {}
        self.hold_out: dict[str, float] = {}  # peer -> until: it rejected me; ask it nothing
        self.hold_in: dict[str, float] = {}  # proposer -> until: I rejected it; refuse its servers
        self.redirected: dict[str, tuple[int, int, str]] = {}  # server -> (boot, seq, mitigation) sent away
        self.no_redirect: dict[str, tuple[int, int]] = {}  # server -> (boot, seq) that came home: keep it
        self.counter = 0
        self.started = False
        self.next_check = 0.0
        self.round: dict | None = None
        self.round_no = 0
        self.last_alert = -math.inf
        self.sent = 0  # council messages sent (for the benchmark)
        self.refused = 0  # peer messages refused (wrong sender, out of bounds)
        if durable:
            self._restore(durable)

    # -- the controller's figures ------------------------------------------------------------

    def _figures(self) -> tuple[int, int, int, int, float]:
        """(waiting, unseen, limit, busy, mean hold): waiting counts every waiter, guests included."""
        c = self.ctrl
        waiting = len(c.queue)
        # Provision notices count the servers still to come to the resource (those here, and those sent to a
        # peer and not done there yet, included): the rest have not asked yet
        unseen = (max(0, sum(c.notices.values()) - waiting - c.busy - len(self.redirected))
                  if c.notices else 0)
        return waiting, unseen, max(0, c.limit), c.busy, c._mean()

    def _own_waiting(self) -> int:
        """Waiters of this group (a guest, redirected here by a peer, waits with rank 2)."""
        return sum(1 for k in self.ctrl.queue if k[1] != 2)

    def excess(self) -> tuple[int, list[str]]:
        """Servers of this group beyond those served within the threshold, and why (guests are not counted:
        they cannot be moved again, and a peer must not call the load it accepted an overload)."""
        _, unseen, limit, busy, mean = self._figures()
        waiting = self._own_waiting()
        n = excess_waiting(waiting + unseen, limit, mean, self.cfg.wait_threshold)
        reasons = []
        if excess_waiting(waiting, limit, mean, self.cfg.wait_threshold) > 0:
            reasons.append("wait")
        if unseen and n > excess_waiting(waiting, limit, mean, self.cfg.wait_threshold):
            reasons.append("provision")
        if self.ctrl.underdelivering and n > 0:
            reasons.append("underdelivery")
        return n, reasons

    def headroom(self, now: float) -> int:
        c = self.ctrl
        if c.state.value != "active" or c.underdelivering or self.excess()[0] > 0:
            return 0
        waiting, unseen, limit, busy, mean = self._figures()
        lent = sum(max(0, (m.accepted or 0) - len(m.admitted)) for m in self.mits.values()
                   if m.peer == self.address and m.state in (M.PENDING, M.IN_FORCE))
        return lendable(limit, busy, waiting, unseen, mean, self.cfg.duration, self.cfg.lend, lent)

    # -- the contract (called by the controller) ----------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        fx: list[Effect] = []
        if not self.started:
            self.started = True
            self.next_check = now + self.cfg.check_every
            fx.append(Emit("council.start", {"council": self.cfg.name, "members": list(self.cfg.members),
                                             "oversight": self.cfg.oversight, "approval": self.cfg.approval,
                                             "restored": len(self.mits)}))
        for peer, until in list(self.hold_out.items()):
            if now >= until:
                del self.hold_out[peer]
        for p, until in list(self.hold_in.items()):
            if now >= until:
                del self.hold_in[p]
        for m in list(self.mits.values()):
            if m.state in _OPEN and now >= m.until:
                m.ended, m.end_by, m.end_reason = True, "clock", "expired"
                fx += self._update(m, now, "expired")
            elif m.state is M.PROPOSED and m.proposer == self.address:
                if now - m.first_sent >= self.cfg.propose_timeout:
                    fx += self._end(m, now, self.address, "unanswered")
                elif now - m.sent_at >= self.cfg.retry_every and m.peer:
                    m.sent_at = now
                    fx.append(self._send(m.peer, self._proposal(m)))
            elif (m.state is M.PENDING and self.address in (m.proposer, m.peer) and self.cfg.oversight
                  and now - m.asked_at >= 5 * self.cfg.retry_every):
                # both parties ask again while it waits: the oversight role answers a decided one again
                m.asked_at = now
                fx.append(self._send(self.cfg.oversight, self._notice("approval", m)))
            if m.unacked and m.ended and now < m.until:  # past until every party has ended it by its clock
                for to in m.unacked:
                    fx.append(self._send(to, MitigationEnd(m.id, self.cfg.name, m.end_by, m.end_reason)))
        if self.round is not None and now >= self.round["deadline"]:
            fx += self._propose_round(now)
        fx += self._withdraw_if_overloaded(now)
        fx += self._enforce(now)
        if now >= self.next_check and self.round is None:
            self.next_check = now + self.cfg.check_every
            fx += self._check(now)
        return fx + self._prune()

    def handle(self, msg: Any, sender: str, now: float) -> list[Effect]:
        t = type(msg)
        if getattr(msg, "council", self.cfg.name) != self.cfg.name:
            return self._ignored(msg, f"for council {msg.council!r}", sender)
        why = self._refuse_input(msg, sender)
        if why:
            self.refused += 1
            return self._ignored(msg, why, sender)
        if t is HeadroomQuery:
            return self._on_query(msg, now)
        if t is HeadroomReport:
            return self._on_report(msg, now)
        if t is MitigationPropose:
            return self._on_propose(msg, now)
        if t is MitigationDecision:
            return self._on_decision(msg, now)
        if t is MitigationEnd:
            return self._on_end(msg, sender, now)
        if t is MitigationEndAck:
            m = self.mits.get(msg.mitigation)
            if m is not None and msg.member == sender and msg.member in m.unacked:
                m.unacked.remove(msg.member)
                return self._persist(m)
            return []
        if t is OversightDecision:
            return self._on_approval(msg, sender, now)
        if t is ProposeMitigation:
            return self._on_operator_proposal(msg, sender, now)
        if t is ImposeMitigation:
            return self._on_impose(msg, sender, now)
        return self._ignored(msg, "unexpected message", sender)

    def screen(self, m: AccessRequest | StatusPing, via: str | None, now: float) -> tuple[bool, list[Effect]]:
        """A server's request or ping, before the controller queues it: (go on, effects)."""
        if m.mitigation:
            return self._screen_guest(m, via, now)
        sent = self.redirected.get(m.server)
        if sent is None or (sent[0], sent[1]) != (m.boot, m.seq):
            return True, []
        mid = sent[2]
        if type(m) is AccessRequest and m.returned == mid:
            del self.redirected[m.server]
            self.no_redirect[m.server] = (m.boot, m.seq)
            return True, [Emit("council.returned", {"council": self.cfg.name, "mitigation": mid, "server": m.server})]
        mit = self.mits.get(mid)
        if mit is None or mit.state is not M.IN_FORCE:
            # it did not hear the redirect and the mitigation is over: keep it here
            del self.redirected[m.server]
            self.no_redirect[m.server] = (m.boot, m.seq)
            return True, []
        self.ctrl._out.append((via, m.server, self._redirect_msg(mit, m.server, m.boot, m.seq, now)))
        return False, []  # the redirect was lost or crossed this message: say it again

    def _refuse_input(self, msg: Any, sender: str) -> str:
        """Why a council message is refused ("" if it is taken): each fact comes from its only author."""
        t = type(msg)
        members = self.cfg.members
        if t is HeadroomQuery:
            ok = sender == msg.proposer and sender in self.peers and msg.needed >= 0
        elif t is HeadroomReport:
            ok = sender == msg.peer and sender in self.peers and msg.hold >= 0 and math.isfinite(msg.hold)
        elif t is MitigationPropose:
            ok = (sender == msg.proposer and sender in self.peers and msg.peer == self.address and msg.count >= 0
                  and math.isfinite(msg.until))
        elif t is MitigationDecision:
            ok = (sender == msg.peer and sender in self.peers and 0 <= msg.accepted <= max(msg.requested, 0)
                  and msg.hold >= 0 and math.isfinite(msg.until) and msg.proposer in members)
        elif t in (MitigationEnd, MitigationEndAck):
            ok = sender in self.peers or (bool(self.cfg.oversight) and sender == self.cfg.oversight)
        elif t in (OversightDecision, ProposeMitigation, ImposeMitigation):
            ok = bool(self.cfg.oversight) and sender == self.cfg.oversight
            if ok and t is not OversightDecision:
                ok = msg.count > 0 and math.isfinite(msg.until)
        else:
            return ""
        if not ok:
            return "refused: not from the fact's author, or out of bounds"
        if (t in (MitigationPropose, MitigationDecision, ImposeMitigation, MitigationEnd, OversightDecision)
                and msg.mitigation not in self.mits and len(self.mits) >= 2 * MAX_RECORDS):
            return "refused: too many mitigations known"
        return ""

    # -- proposer: detect, ask, propose ---------------------------------------------------------

    def _check(self, now: float) -> list[Effect]:
        excess, reasons = self.excess()
        covered = sum(max(0, (m.accepted if m.accepted is not None else m.requested) - len(m.redirected))
                      for m in self.mits.values() if m.proposer == self.address and m.state in _OPEN)
        need = excess - covered
        if need < self.cfg.min_excess:
            return []
        _, unseen, limit, busy, mean = self._figures()
        waiting = self._own_waiting()
        fx: list[Effect] = [Emit("council.overload", {"council": self.cfg.name, "reasons": reasons, "excess": excess,
                                                      "covered": covered, "need": need, "waiting": waiting,
                                                      "unseen": unseen, "limit": limit, "mean": mean})]
        targets = [p for p in self.peers if self.hold_out.get(p, -math.inf) <= now]
        if not targets:
            return fx + self._no_mitigation(now, need, "every peer holds a rejection")
        self.round_no += 1
        until = now + self.cfg.duration
        self.round = {"no": self.round_no, "need": need, "until": until, "asked": set(targets), "reports": {},
                      "deadline": now + self.cfg.query_timeout, "waiting": waiting}
        fx.append(Emit("council.query", {"council": self.cfg.name, "round": self.round_no, "peers": targets,
                                         "need": need}))
        for p in targets:
            fx.append(self._send(p, HeadroomQuery(self.cfg.name, self.address, self.round_no, need, until)))
        return fx

    def _on_report(self, r: HeadroomReport, now: float) -> list[Effect]:
        rnd = self.round
        fx: list[Effect] = []
        if r.headroom <= 0 and r.hold > 0:  # a rejection holds, even one that comes late
            fx += self._hold_out(r.peer, now + r.hold, now, "no headroom")
        if rnd is None or r.round != rnd["no"] or r.peer not in rnd["asked"]:
            return fx + self._ignored(r, "not the round in progress", r.peer)
        rnd["reports"][r.peer] = max(0, r.headroom)
        if set(rnd["reports"]) >= rnd["asked"]:
            fx += self._propose_round(now)
        return fx

    def _propose_round(self, now: float) -> list[Effect]:
        rnd, self.round = self.round, None
        assert rnd is not None
        left = rnd["need"]
        fx: list[Effect] = []
        offers = sorted(((h, p) for p, h in rnd["reports"].items() if h > 0 and self.hold_out.get(p, -1) <= now),
                        key=lambda x: (-x[0], x[1]))
        for h, p in offers:
            if left <= 0:
                break
            give = min(h, left)
            left -= give
            self.counter += 1
            m = _Mit(f"{self.address}#{self.ctrl.epoch}.{self.counter}", self.address, p, give, rnd["until"],
                     rnd["waiting"])
            m.by = self.address
            fx += self._new_proposal(m, now)
        if left == rnd["need"]:
            silent = sorted(rnd["asked"] - set(rnd["reports"]))
            why = "no peer has headroom" + (f" ({', '.join(silent)} did not answer)" if silent else "")
            fx += self._no_mitigation(now, rnd["need"], why)
        self.next_check = now + self.cfg.check_every
        return fx

    def _new_proposal(self, m: _Mit, now: float) -> list[Effect]:
        self.mits[m.id] = m
        m.first_sent = m.sent_at = now
        fx = self._persist(m)
        fx.append(Emit("council.proposed", {"council": self.cfg.name, "mitigation": m.id, "peer": m.peer,
                                            "count": m.requested, "until": m.until, "waiting": m.waiting,
                                            "by": m.by, "approved_by": m.approved_by}))
        fx.append(self._send(m.peer, self._proposal(m)))
        return fx

    def _proposal(self, m: _Mit) -> MitigationPropose:
        return MitigationPropose(m.id, self.cfg.name, self.address, m.peer, m.requested, m.until, m.waiting,
                                 m.approved_by)

    def _no_mitigation(self, now: float, need: int, why: str) -> list[Effect]:
        fx: list[Effect] = [Emit("council.no_mitigation", {"council": self.cfg.name, "need": need, "why": why})]
        if self.cfg.oversight and now - self.last_alert >= max(self.cfg.hold, self.cfg.check_every):
            self.last_alert = now
            waiting = len(self.ctrl.queue)
            fx.append(self._send(self.cfg.oversight, MitigationNotice(self.cfg.name, "no-mitigation", self.address,
                                                                      requested=need, waiting=waiting, detail=why)))
        return fx

    def _on_decision(self, d: MitigationDecision, now: float) -> list[Effect]:
        m = self.mits.get(d.mitigation)
        if m is None:
            m = self.mits[d.mitigation] = _Mit(d.mitigation, d.proposer, d.peer, d.requested, d.until, d.waiting)
        if m.accepted is not None:
            return []  # known already (a resend)
        m.proposer, m.peer, m.requested, m.until, m.waiting = d.proposer, d.peer, d.requested, d.until, d.waiting
        m.accepted = d.accepted
        m.needs_approval = d.needs_approval
        m.decided_by = d.by
        fx: list[Effect] = []
        if d.by.startswith("operator:"):
            m.imposed = True
            m.approved, m.approved_by = True, d.by
            if self.hold_out.pop(d.peer, None) is not None and d.proposer == self.address:
                fx.append(Emit("council.hold_lifted", {"council": self.cfg.name, "peer": d.peer, "by": d.by}))
        if d.proposer == self.address and d.accepted <= 0 and d.hold > 0:
            fx += self._hold_out(d.peer, now + d.hold, now, "rejected")
        fx += self._update(m, now, "decided")
        if m.state is M.PENDING and d.proposer == self.address and self.cfg.oversight:
            m.asked_at = now
            fx.append(self._send(self.cfg.oversight, self._notice("approval", m)))
        return fx

    def _hold_out(self, peer: str, until: float, now: float, why: str) -> list[Effect]:
        self.hold_out[peer] = max(until, self.hold_out.get(peer, -math.inf))
        return self._persist_holds() + [Emit("council.hold", {"council": self.cfg.name, "peer": peer,
                                                               "until": self.hold_out[peer], "why": why})]

    # -- proposer: enforce ----------------------------------------------------------------------

    def _enforce(self, now: float) -> list[Effect]:
        fx: list[Effect] = []
        c = self.ctrl
        mine = [m for m in self.mits.values() if m.proposer == self.address and m.state is M.IN_FORCE
                and len(m.redirected) < (m.accepted or 0) and now < m.until]
        if not mine:
            return fx
        if not self._own_waiting():
            for m in mine:  # nobody left to move: give the peer its headroom back
                if now - m.first_sent >= self.cfg.check_every:
                    fx += self._end(m, now, self.address, "no longer needed")
            return fx
        for m in mine:
            for key in reversed(list(c.queue)):
                if len(m.redirected) >= (m.accepted or 0):
                    break
                w = c.by_key[key]
                if key[1] == 2:
                    continue  # a guest from a peer: never sent on
                if w.mode is Directive.DORMANT and w.wake != w.server:
                    continue  # a powered-off machine behind a separate BMC cannot hear a Redirect
                if self.no_redirect.get(w.server) == (w.boot, w.seq):
                    continue
                c._remove_waiter(w)
                m.redirected.append([w.server, w.boot, w.seq])
                self.redirected[w.server] = (w.boot, w.seq, m.id)
                fx.append(Emit("council.redirect", {"council": self.cfg.name, "mitigation": m.id, "server": w.server,
                                                    "peer": m.peer, "n": len(m.redirected), "accepted": m.accepted,
                                                    "mode": w.mode.value}))
                c._out.append((w.via, w.server, self._redirect_msg(m, w.server, w.boot, w.seq, now)))
            fx = self._persist(m) + fx  # the record (servers moved) is written before the redirects leave
        return fx

    def _redirect_msg(self, m: _Mit, server: str, boot: int, seq: int, now: float) -> Redirect:
        return Redirect(server, self.ctrl.resource, boot, seq, m.id, m.peer,
                        tuple(self.cfg.proxies.get(m.peer, ())), m.until, now)

    # -- peer: answer, decide, admit ------------------------------------------------------------

    def _on_query(self, q: HeadroomQuery, now: float) -> list[Effect]:
        held = self.hold_in.get(q.proposer, -math.inf)
        fx: list[Effect] = []
        if held > now:
            h, hold = 0, held - now
        else:
            h = self.headroom(now)
            hold = self.cfg.hold if h <= 0 else 0.0
            if h <= 0 and hold > 0:
                self.hold_in[q.proposer] = now + hold
                fx += self._persist_holds()
        fx.append(Emit("council.headroom", {"council": self.cfg.name, "proposer": q.proposer, "round": q.round,
                                            "need": q.needed, "headroom": h,
                                            "hold_until": now + hold if hold else None}))
        fx.append(self._send(q.proposer, HeadroomReport(self.cfg.name, self.address, q.round, h, hold)))
        return fx

    def _on_propose(self, p: MitigationPropose, now: float) -> list[Effect]:
        if p.peer != self.address:
            return self._ignored(p, "proposed to another peer", p.proposer)
        m = self.mits.get(p.mitigation)
        if m is not None and m.accepted is not None:
            return [self._send(p.proposer, self._decision(m, now))]  # a resend: the same decision
        if m is None:
            m = _Mit(p.mitigation, p.proposer, p.peer, p.count, p.until, p.waiting)
            self.mits[m.id] = m
        m.by = p.approved_by or p.proposer
        held = self.hold_in.get(p.proposer, -math.inf)
        fx: list[Effect] = []
        if held > now:
            accepted, why = 0, "hold"
        elif now >= p.until or p.count <= 0:
            accepted, why = 0, "nothing to take"
        else:
            h = self.headroom(now)
            accepted, why = min(p.count, h), ("headroom" if h < p.count else "")
            if accepted <= 0 and self.cfg.hold > 0:
                self.hold_in[p.proposer] = now + self.cfg.hold
                fx += self._persist_holds()
        m.accepted = accepted
        m.decided_by = self.address
        if p.approved_by:
            m.approved, m.approved_by = True, p.approved_by
        else:
            m.needs_approval = needs_approval(self.cfg.approval, self.cfg.approval_share, accepted, p.waiting)
        fx += self._update(m, now, "decided")  # persisted before the decision leaves
        outcome = "rejected" if accepted <= 0 else ("partial" if accepted < p.count else "accepted")
        hold_until = self.hold_in.get(p.proposer) if accepted <= 0 else None
        fx.append(Emit("council.decided", {"council": self.cfg.name, "mitigation": m.id, "proposer": p.proposer,
                                           "peer": self.address, "requested": p.count, "accepted": accepted,
                                           "outcome": outcome, "why": why, "needs_approval": m.needs_approval,
                                           "hold_until": hold_until, "until": m.until, "by": self.address,
                                           "approved_by": m.approved_by}))
        return fx + self._tell_decision(m, now)

    def _decision(self, m: _Mit, now: float) -> MitigationDecision:
        hold = max(0.0, self.hold_in.get(m.proposer, now) - now) if not m.accepted else 0.0
        return MitigationDecision(m.id, self.cfg.name, m.proposer, m.peer, m.requested, m.accepted or 0, m.until,
                                  m.needs_approval, hold, m.decided_by, m.waiting)

    def _tell_decision(self, m: _Mit, now: float) -> list[Effect]:
        d = self._decision(m, now)
        fx = [self._send(to, d) for to in self.cfg.members if to != self.address]
        if self.cfg.oversight:
            fx.append(self._send(self.cfg.oversight, self._notice("decision", m)))
        return fx

    def _on_impose(self, im: ImposeMitigation, sender: str, now: float) -> list[Effect]:
        m = self.mits.get(im.mitigation)
        fx: list[Effect] = []
        if m is not None and m.accepted is not None:
            return self._tell_decision(m, now)  # known: say it again
        if im.proposer not in self.peers:
            return self._ignored(im, f"{im.proposer!r} is no peer of this council", sender)
        m = _Mit(im.mitigation, im.proposer, self.address, im.count, im.until, 0)
        self.mits[m.id] = m
        m.accepted, m.decided_by, m.imposed = im.count, im.by, True
        m.approved, m.approved_by, m.by = True, im.by, im.by
        if self.hold_in.pop(im.proposer, None) is not None:
            fx += self._persist_holds()
            fx.append(Emit("council.hold_lifted", {"council": self.cfg.name, "proposer": im.proposer, "by": im.by}))
        fx += self._update(m, now, "imposed")
        fx.append(Emit("council.decided", {"council": self.cfg.name, "mitigation": m.id, "proposer": im.proposer,
                                           "peer": self.address, "requested": im.count, "accepted": im.count,
                                           "outcome": "imposed", "why": "", "needs_approval": False,
                                           "hold_until": None, "until": m.until, "by": im.by,
                                           "approved_by": im.by}))
        return fx + self._tell_decision(m, now)

    def _screen_guest(self, r: AccessRequest | StatusPing, via: str | None, now: float) -> tuple[bool, list[Effect]]:
        m = self.mits.get(r.mitigation)
        if m is not None and m.peer == self.address and r.server in m.admitted:
            return True, []  # admitted already: an ordinary waiter or holder here
        if m is None or m.peer != self.address:
            why = "unknown mitigation"
        elif self.hold_in.get(m.proposer, -math.inf) > now:
            why = "hold"
        elif m.state is M.PENDING and m.accepted and len(m.admitted) < m.accepted and now < m.until:
            # the proposer has the approval (it redirected) and this member has not heard it yet: wait a moment
            # here, pinging, without a place in the list (the approval is resent to every member until acked)
            every = self.cfg.retry_every
            self.ctrl._out.append((via, r.server, AccessDeny(r.server, r.resource, r.boot, r.seq, self.ctrl.epoch,
                                                             Directive.PENDING, 2 * every, 0, every, r.stamp)))
            fx: list[Effect] = [Emit("council.wait_approval", {"council": self.cfg.name, "mitigation": m.id,
                                                               "server": r.server})]
            if self.cfg.oversight and now - m.asked_at >= every:
                m.asked_at = now
                fx.append(self._send(self.cfg.oversight, self._notice("approval", m)))
            return False, fx
        elif m.state is not M.IN_FORCE:
            why = m.state.value
        elif now >= m.until:
            why = "expired"
        elif len(m.admitted) >= (m.accepted or 0):
            why = "share used"
        else:
            m.admitted.append(r.server)
            fx = self._persist(m)  # before the grant or directive this request gets
            fx.append(Emit("council.admitted", {"council": self.cfg.name, "mitigation": m.id, "server": r.server,
                                                "proposer": m.proposer, "n": len(m.admitted),
                                                "accepted": m.accepted}))
            return True, fx
        self.ctrl._out.append((via, r.server, RedirectRefused(r.server, r.resource, r.boot, r.seq, r.mitigation, why)))
        return False, [Emit("council.refused", {"council": self.cfg.name, "mitigation": r.mitigation,
                                                "server": r.server, "reason": why,
                                                "proposer": m.proposer if m is not None else None})]

    def _withdraw_if_overloaded(self, now: float) -> list[Effect]:
        lent = [m for m in self.mits.values() if m.peer == self.address and m.state in (M.PENDING, M.IN_FORCE)
                and not m.imposed]
        if not lent:
            return []
        excess, reasons = self.excess()
        if excess < self.cfg.min_excess and not self.ctrl.underdelivering:
            return []
        fx: list[Effect] = []
        for m in lent:
            fx += self._end(m, now, self.address, "peer overloaded")
        return fx

    # -- facts from anyone: ends, approvals, operators' proposals ---------------------------------

    def _end(self, m: _Mit, now: float, by: str, reason: str) -> list[Effect]:
        if m.ended:
            return []
        m.ended, m.end_by, m.end_reason = True, by, reason
        m.unacked = [a for a in (m.proposer, m.peer) if a and a != self.address]
        fx = self._update(m, now, reason)
        fx += [self._send(to, MitigationEnd(m.id, self.cfg.name, by, reason)) for to in self.cfg.members
               if to != self.address]
        if self.cfg.oversight:
            fx.append(self._send(self.cfg.oversight, self._notice("ended", m, f"{reason} ({by})")))
        return fx

    def _on_end(self, e: MitigationEnd, sender: str, now: float) -> list[Effect]:
        m = self.mits.get(e.mitigation)
        if m is None:
            m = self.mits[e.mitigation] = _Mit(e.mitigation)
        fx: list[Effect] = []
        if not m.ended:
            m.ended, m.end_by, m.end_reason = True, e.by, e.reason
            fx += self._update(m, now, e.reason)
        return fx + [self._send(sender, MitigationEndAck(e.mitigation, self.address))]

    def _on_approval(self, a: OversightDecision, sender: str, now: float) -> list[Effect]:
        m = self.mits.get(a.mitigation)
        if m is None:
            m = self.mits[a.mitigation] = _Mit(a.mitigation)
        fx: list[Effect] = []
        if m.approved is None:
            m.approved, m.approved_by = a.approve, a.by
            fx += self._update(m, now, ("approved" if a.approve else "rejected") + f" by {a.by}")
        return fx + [self._send(sender, OversightDecisionAck(a.mitigation, self.address))]

    def _on_operator_proposal(self, p: ProposeMitigation, sender: str, now: float) -> list[Effect]:
        if p.mitigation in self.mits:
            return []
        if p.peer not in self.peers:
            return self._ignored(p, f"{p.peer!r} is no peer of this council", sender)
        if self.hold_out.get(p.peer, -math.inf) > now:
            fx: list[Effect] = [Emit("council.declined", {"council": self.cfg.name, "mitigation": p.mitigation,
                                                          "peer": p.peer, "by": p.by, "why": "peer holds a rejection",
                                                          "hold_until": self.hold_out[p.peer]})]
            if self.cfg.oversight:
                fx.append(self._send(self.cfg.oversight, MitigationNotice(
                    self.cfg.name, "declined", self.address, p.mitigation, self.address, p.peer, p.count,
                    detail=f"{p.peer} holds a rejection until {self.hold_out[p.peer]:.1f}")))
            return fx
        m = _Mit(p.mitigation, self.address, p.peer, p.count, p.until, len(self.ctrl.queue))
        m.by = m.approved_by = p.by
        m.approved = True
        return self._new_proposal(m, now)

    # -- the one place a mitigation's state changes ------------------------------------------------

    def _update(self, m: _Mit, now: float, reason: str) -> list[Effect]:
        new = derive(m, now)
        fx = self._persist(m) if new is m.state else []
        if new is not m.state:
            old = m.state
            check_transition(MIT_TRANSITIONS, old, new, "mitigation")
            m.state = new
            fx = self._persist(m)
            fx.append(Emit("council.state", {"council": self.cfg.name, "mitigation": m.id, "from": old.value,
                                             "to": new.value, "reason": reason, "proposer": m.proposer,
                                             "peer": m.peer, "accepted": m.accepted,
                                             "by": m.end_by if new is M.ENDED else (m.approved_by or m.decided_by)}))
        return fx

    # -- helpers ------------------------------------------------------------------------------------

    def _notice(self, kind: str, m: _Mit, detail: str = "") -> MitigationNotice:
        return MitigationNotice(self.cfg.name, kind, self.address, m.id, m.proposer, m.peer, m.requested,
                                m.accepted or 0, m.until, m.needs_approval, m.waiting, detail)

    def _send(self, to: str, msg: Any) -> Send:
        self.sent += 1
        return Send(to, msg)

    def _persist(self, m: _Mit) -> list[Effect]:
        return [Persist(f"c/m/{m.id}", m.record())] if self.persistent else []

    def _persist_holds(self) -> list[Effect]:
        return [Persist("c/holds", {"out": dict(self.hold_out), "in": dict(self.hold_in)})] if self.persistent else []

    def _restore(self, durable: dict) -> None:
        for key, rec in durable.items():
            if key.startswith("c/m/") and isinstance(rec, dict):
                try:
                    m = _Mit.from_record(key[4:], rec)
                except (ValueError, TypeError):
                    continue
                self.mits[m.id] = m
                if m.proposer == self.address:
                    for server, boot, seq in m.redirected:
                        self.redirected[server] = (boot, seq, m.id)
        holds = durable.get("c/holds")
        if isinstance(holds, dict):
            self.hold_out.update({k: float(v) for k, v in (holds.get("out") or {}).items()})
            self.hold_in.update({k: float(v) for k, v in (holds.get("in") or {}).items()})

    def _prune(self) -> list[Effect]:
        """Forget the oldest finished records beyond MAX_RECORDS (and retire their durable keys)."""
        if len(self.no_redirect) > 4 * MAX_RECORDS:
            self.no_redirect.clear()
        if len(self.mits) <= MAX_RECORDS:
            return []
        done = sorted((m.until, k) for k, m in self.mits.items() if m.state in (M.REJECTED, M.ENDED) and not m.unacked)
        fx: list[Effect] = []
        for _, k in done[:len(self.mits) - MAX_RECORDS]:
            m = self.mits.pop(k)
            for server, boot, seq in m.redirected if m.proposer == self.address else ():
                if self.redirected.get(server, (None, None, None))[2] == k:
                    del self.redirected[server]
            if self.persistent:
                fx.append(Persist(f"c/m/{k}", None))
        return fx

    def _ignored(self, msg: Any, why: str, sender: str | None = None) -> list[Effect]:
        return [Emit("council.ignored", {"message": type(msg).__name__, "why": why, "from": sender})]

    def open_mitigations(self) -> list[dict]:
        """The mitigations not yet rejected or ended, as plain dicts (for reports and tests)."""
        return [{"mitigation": m.id, **m.record()} for m in self.mits.values() if m.state in _OPEN]
