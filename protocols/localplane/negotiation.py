"""Negotiating a plan's roles: provisional proposal, assent, next candidate, lower or split.

How this works
--------------
Source: ``shared/seeds/004_726d366e1cefdd53.txt`` [0078]-[0089], [0120]-[0124].
A :class:`Negotiation` is a pure helper owned by whoever builds a plan (the
isolated plane's leader, or the deployment manager while connected). It is
given the roles to fill, the fit reports of the plane's members (its
*electorate*) and the governance rules, and fills the roles one share at a
time, in order (management roles first, then service roles):

1. Rank the members for the role: service roles by the fit they reported
   (capability as a ratio of the metric), management roles by the role's
   objective function (the score the member reported, only if it meets the
   role's minimum criteria). A member that held the same role share in the
   previous plan goes first (sticky). Members that cannot carry one share at
   all (``load = target / capability > 1``) are skipped, as are members
   holding another share of the same role, and, while others remain, the
   leader and the holders of other management roles for a management role.
2. Send a provisional :class:`Propose` to the best candidate. If the rule in
   force (:func:`rule_for`) asks for more than the assignee's assent, the
   proposal goes to every member of the electorate, who vote. The candidate
   accepts or rejects by its free resources; its acceptance counts as its yes.
3. The round is decided as soon as the outcome is certain: *agreed* when the
   candidate accepted and the yes votes reach :func:`required_assent`;
   *rejected* when the candidate refused or too many voted no. A lost
   message is not a refusal: while the round is open the proposal is sent
   again every ``retry_every`` seconds to each voter that has not answered
   (``{prefix}.proposal_retry``), and a voter's silence counts as no only at
   the round's ``timeout`` (the retries are spent), or at once when its owner
   reports the voter down (:meth:`Negotiation.member_down`: the candidate
   down rejects the round, a voter down counts as no). Answers are matched
   by plan id and round: a duplicate or a late answer changes nothing. A
   rejected round after the candidate accepted sends it :class:`Withdraw`
   so it forgets the commitment; every proposal also names the roles the
   candidate holds agreed in the plan (``agreed``), so a lost Withdraw
   leaves no stale commitment behind. Next candidate on rejection.
4. When every candidate refused: lower the role's metric by ``lower_factor``
   while it stays at or above ``min_ratio`` of the target; then split the role
   into one more share (each ``target / shares``, the full metric) up to
   ``max_split``; then declare the role unfilled. Each remedy restarts the
   role from its first share (withdrawing shares already agreed).

Events (prefix ``plane.`` for a leader, ``manager.`` for the manager):
``proposal``, ``proposal_retry`` (round, attempt, the voters asked again),
``assent`` (rule, electorate size, required, yes, no, missing, down,
accepted, outcome), ``metrics_lowered``, ``role_split``, ``role_unfilled``.
"""

from __future__ import annotations

from typing import Any

from protocols.core import Effect, Emit, Send, SetTimer
from protocols.localplane.ir import required_assent, role_load, rule_for
from protocols.localplane.messages import Answer, Assignment, FitReport, Governance, Propose, RoleSpec, Withdraw

__all__ = ["Negotiation", "role_key"]


def role_key(role: str, share: int, shares: int) -> str:
    """The key a holding is known by: ``"store#0/2"``."""
    return f"{role}#{share}/{shares}"


class Negotiation:
    """Fills ``roles`` for plan ``plan_id`` among the members in ``fits`` (see the module docstring)."""

    def __init__(
        self,
        *,
        plan_id: str,
        owner: str,
        roles: list[RoleSpec],
        fits: dict[str, FitReport],
        gov: Governance,
        isolated: bool,
        timeout: float,
        prefix: str,
        leader: str = "",
        lower_factor: float = 0.85,
        relinquish_below: float = 0.9,
        first_round: int = 0,
        retry_every: float | None = None,
        held: list[Assignment] | None = None,
    ) -> None:
        if not fits:
            raise ValueError("a negotiation needs at least one member")
        self.plan_id = plan_id
        self.owner = owner
        self.fits = fits
        self.electorate = sorted(fits)
        self.gov = gov
        self.isolated = isolated
        self.timeout = timeout
        # retransmit to silent voters this often while a round is open (None: never, silence waits for timeout)
        self.retry_every = retry_every if retry_every is not None and 0 < retry_every < timeout else None
        self.held = list(held or ())  # assignments of the plan made outside this negotiation (for ``agreed``)
        self.prefix = prefix
        self.leader = leader
        self.lower_factor = lower_factor
        self.relinquish_below = relinquish_below
        self.rule = rule_for(gov, len(self.electorate), isolated)
        self.queue = sorted(roles, key=lambda r: (r.kind != "management", 0))
        self.assignments: list[Assignment] = []
        self.lowered: dict[str, float] = {}
        self.splits: dict[str, int] = {}
        self.unfilled: list[str] = []
        self.done = False
        self.proposals = 0  # Propose messages sent
        self.answers = 0  # Answer messages counted
        self.withdraws = 0
        self.round = first_round
        self.spec: RoleSpec | None = None
        self.voters: list[str] = []
        self.required = 0
        self.votes: dict[str, bool] = {}
        self.candidate = ""
        self.proposal: Propose | None = None
        self.down: set[str] = set()  # members the owner knows are down: no more waiting for them
        self.deadline = 0.0  # when the open round's silent voters count as no
        self.attempt = 0  # transmissions of the open round's proposal
        self.retransmissions = 0

    # -- figures -----------------------------------------------------------------------

    @property
    def messages(self) -> int:
        return self.proposals + self.retransmissions + self.answers + self.withdraws

    @property
    def timer_key(self) -> str:
        return f"neg:{self.plan_id}"

    # -- driving -----------------------------------------------------------------------

    def start(self, now: float) -> list[Effect]:
        return self._next_role(now)

    def on_answer(self, msg: Answer, sender: str, now: float) -> list[Effect]:
        if self.done or msg.plan_id != self.plan_id or msg.round != self.round or self.proposal is None:
            return []
        if sender not in self.voters or sender in self.votes:
            return []  # not asked, or a duplicate
        self.answers += 1
        self.votes[sender] = bool(msg.yes)
        return self._decide(now, final=False)

    def on_timeout(self, now: float) -> list[Effect]:
        """The round's timer: retransmit to the silent voters, or (the retries spent) decide with silence as no."""
        if self.done or self.proposal is None:
            return []
        if now + 1e-9 < self.deadline and self.retry_every is not None:
            return self._retransmit(now)
        return self._decide(now, final=True)

    def member_down(self, node: str, now: float) -> list[Effect]:
        """The owner knows ``node`` is down (a lost plane member, an unreachable edge): stop waiting for it."""
        if node in self.down:
            return []
        self.down.add(node)
        if self.done or self.proposal is None or node not in self.voters or node in self.votes:
            return []
        return self._decide(now, final=False)

    def _retransmit(self, now: float) -> list[Effect]:
        p = self.proposal
        assert p is not None and self.retry_every is not None
        silent = [v for v in self.voters if v not in self.votes and v not in self.down]
        out: list[Effect] = [SetTimer(self.timer_key, min(self.deadline, now + self.retry_every))]
        if not silent:
            return out
        self.attempt += 1
        self.retransmissions += len(silent)
        out += [Send(v, p) for v in silent]
        out.append(Emit(f"{self.prefix}.proposal_retry", {
            "plan_id": self.plan_id, "round": self.round, "role": p.role, "share": p.share, "candidate": p.candidate,
            "attempt": self.attempt, "to": silent}))
        return out

    # -- internals ------------------------------------------------------------------------

    def _next_role(self, now: float) -> list[Effect]:
        if not self.queue:
            self.done = True
            self.proposal = None
            return []
        self.spec = self.queue.pop(0)
        self.factor = 1.0
        self.shares = 1
        return self._restart_role(now)

    def _restart_role(self, now: float) -> list[Effect]:
        self.share = 0
        self.tried: set[str] = set()
        return self._propose(now)

    def _target(self) -> float:
        s = self.spec
        assert s is not None
        if s.kind == "management":
            return s.target
        return round(s.target * self.factor / self.shares, 6)

    def _candidates(self) -> list[str]:
        s = self.spec
        assert s is not None
        target = self._target()
        taken = {a.holder for a in self.assignments if a.role == s.name}
        mgmt_holders = {a.holder for a in self.assignments if a.kind == "management"}
        if self.leader:
            mgmt_holders.add(self.leader)
        key = role_key(s.name, self.share, self.shares)
        scored: list[tuple] = []
        for node in self.electorate:
            rep = self.fits[node]
            fit = rep.fits.get(s.name)
            if fit is None or node in taken or node in self.down:
                continue
            if s.kind == "management":
                rank = fit
            else:
                if fit <= 0 or role_load(s.kind, target, fit, s.target) > 1.0:
                    continue
                rank = fit
            sticky = key in rep.holding
            scored.append((not sticky, -rank, node))
        scored.sort()
        out = [n for _, _, n in scored]
        if s.kind == "management":
            spare = [n for n in out if n not in mgmt_holders]
            if spare:
                out = spare
        return out

    def _propose(self, now: float) -> list[Effect]:
        s = self.spec
        assert s is not None
        for c in self._candidates():
            if c in self.tried:
                continue
            self.tried.add(c)
            return self._send_round(c, now)
        return self._remedy(now)

    def _send_round(self, candidate: str, now: float) -> list[Effect]:
        s = self.spec
        assert s is not None
        self.round += 1
        self.candidate = candidate
        target = self._target()
        load = role_load(s.kind, target, self.fits[candidate].fits.get(s.name, 0.0), s.target)
        agreed = sorted({a.role for a in self.held + self.assignments if a.holder == candidate})
        self.proposal = Propose(plan_id=self.plan_id, round=self.round, role=s.name, candidate=candidate,
                                target=target, load=load, share=self.share, shares=self.shares, kind=s.kind,
                                agreed=agreed)
        self.voters = [candidate] if self.rule == "assignee" else list(self.electorate)
        self.required = required_assent(self.rule, len(self.voters))
        self.votes = {}
        self.attempt = 1
        self.deadline = now + self.timeout
        asked = [v for v in self.voters if v not in self.down]
        self.proposals += len(asked)
        out: list[Effect] = [Send(v, self.proposal) for v in asked]
        first = now + self.retry_every if self.retry_every is not None else self.deadline
        out.append(SetTimer(self.timer_key, min(first, self.deadline)))
        out.append(Emit(f"{self.prefix}.proposal", {
            "plan_id": self.plan_id, "round": self.round, "role": s.name, "share": self.share,
            "shares": self.shares, "candidate": candidate, "target": target, "rule": self.rule,
            "electorate": len(self.voters)}))
        return out

    def _decide(self, now: float, final: bool) -> list[Effect]:
        s = self.spec
        p = self.proposal
        assert s is not None and p is not None
        accepted = self.votes.get(self.candidate)
        yes = sum(1 for v in self.votes.values() if v)
        no = sum(1 for v in self.votes.values() if not v)
        gone = sorted(v for v in self.voters if v not in self.votes and v in self.down)
        n = len(self.voters)
        if accepted and yes >= self.required:
            outcome = "agreed"
        elif (accepted is False or no + len(gone) > n - self.required or self.candidate in gone
              or final or len(self.votes) + len(gone) == n):
            outcome = "rejected"
        else:
            return []
        out: list[Effect] = [Emit(f"{self.prefix}.assent", {
            "plan_id": self.plan_id, "round": self.round, "role": s.name, "share": self.share,
            "shares": self.shares, "candidate": self.candidate, "rule": self.rule, "isolated": self.isolated,
            "electorate": n, "required": self.required, "yes": yes, "no": no, "missing": n - yes - no,
            "down": gone, "accepted": bool(accepted), "outcome": outcome, "timeout": final,
            "attempts": self.attempt})]
        self.proposal = None
        if outcome == "agreed":
            self.assignments.append(Assignment(role=s.name, holder=self.candidate, target=p.target, share=self.share,
                                               shares=self.shares, kind=s.kind, min_ratio=self.relinquish_below,
                                               usage=round(p.load, 6)))
            if self.share + 1 < self.shares:
                self.share += 1
                self.tried = set()
                return out + self._propose(now)
            return out + self._next_role(now)
        if accepted:
            self.withdraws += 1
            out.append(Send(self.candidate, Withdraw(plan_id=self.plan_id, role=s.name)))
        return out + self._propose(now)

    def _withdraw_role(self) -> list[Effect]:
        s = self.spec
        assert s is not None
        out: list[Effect] = []
        keep = []
        for a in self.assignments:
            if a.role == s.name:
                self.withdraws += 1
                out.append(Send(a.holder, Withdraw(plan_id=self.plan_id, role=s.name)))
            else:
                keep.append(a)
        self.assignments = keep
        return out

    def _remedy(self, now: float) -> list[Effect]:
        s = self.spec
        assert s is not None
        out = self._withdraw_role()
        if s.kind == "service" and self.factor * self.lower_factor >= s.min_ratio - 1e-9:
            before = self._target()
            self.factor = round(self.factor * self.lower_factor, 6)
            self.lowered[s.name] = self.factor
            out.append(Emit(f"{self.prefix}.metrics_lowered", {
                "plan_id": self.plan_id, "role": s.name, "from": before, "to": self._target(),
                "factor": self.factor, "shares": self.shares}))
            return out + self._restart_role(now)
        if s.kind == "service" and self.shares < s.max_split:
            self.shares += 1
            self.factor = 1.0
            self.lowered.pop(s.name, None)
            self.splits[s.name] = self.shares
            out.append(Emit(f"{self.prefix}.role_split", {
                "plan_id": self.plan_id, "role": s.name, "shares": self.shares, "target": self._target()}))
            return out + self._restart_role(now)
        self.unfilled.append(s.name)
        self.lowered.pop(s.name, None)
        self.splits.pop(s.name, None)
        out.append(Emit(f"{self.prefix}.role_unfilled", {"plan_id": self.plan_id, "role": s.name}))
        return out + self._next_role(now)

    def summary(self) -> dict[str, Any]:
        return {"plan_id": self.plan_id, "assignments": [_adict(a) for a in self.assignments],
                "lowered": dict(self.lowered), "splits": dict(self.splits), "unfilled": list(self.unfilled),
                "negotiation_msgs": self.messages}


def _adict(a: Assignment) -> dict[str, Any]:
    return {"role": a.role, "share": a.share, "shares": a.shares, "holder": a.holder, "target": a.target, "kind": a.kind}
