"""The deployment manager: intent -> intermediate representation, connected role assignment, ratification.

How this works
--------------
Source: ``shared/seeds/004_726d366e1cefdd53.txt`` [0044]-[0047], [0056]-[0066],
[0093]-[0099], FIG. 3A operations 300-302. Rules, in prose:

* **Deploy.** On its start tick the manager builds the intermediate
  representation (:func:`build_ir`) from its intent and lookup tables and
  sends it with the membership to every edge node (:class:`Deploy`, resent to
  any node whose heartbeat ack shows it missing). Every ``heartbeat_interval``
  it sends each node a :class:`Heartbeat`; the :class:`HeartbeatAck` tells it
  which plan the node follows and what it holds, and marks the node reachable
  for ``isolation_after`` seconds.
* **Leases (explicit, echoed).** Every role a connected node holds is held
  under the manager's lease, and only the manager extends it. Each ack carries
  the node's own send time ``sent``; the manager keeps the newest one per node
  (``echo``) and when it arrived (``echo_at``, its own clock). A heartbeat
  *grants* the node a set of role keys and echoes ``echo``; the node extends a
  holding whose key is granted to ``echo + lease`` (its own clock) - a grant
  never creates a holding, and a holding not named is not extended. A
  :class:`Commit` creates holdings with the same lease (``echo + lease``; a
  Commit whose lease is already over is ignored). What a heartbeat grants: in
  idle, collect and negotiate phases the node's keys in the final plan in
  force that it may still hold (its newest ack says it does, or a lease
  granted on the key may not be over: a grant never creates a holding, so a
  holder whose lease ended while it was cut off is not accounted on the key
  again), plus the temporary keys a reconnected node reports holding unless
  another node may hold a share of that role under another plan; while a
  new plan is released, only what the node keeps in it; while it is
  committed, the node's keys in it. Each grant or Commit sent to node ``x``
  for key ``k`` is accounted: ``bounds[x][k] >= echo_at[x] + lease``.
* **Regrant.** A reachable holder of the plan in force that reports it lost a
  share (its lease ran out while acks or beats were lost) gets the plan
  committed to it again (``manager.regrant``), under the same accounting,
  instead of a new negotiation - at the next tick, or at once when its
  renewal request says so; a plan that left a connected role unfilled is
  re-planned at most every ``isolation_after``.
* **Loss (a missing answer is not a refusal).** A :class:`HeartbeatAck` with
  ``renew`` (see ``edge``) is answered at once with a heartbeat for that node
  (same grants and accounting) and, if a share of the plan in force (or of
  the plan being committed) lapsed, with its Commit again. Fit requests go
  out again every ``retry_every`` to the reachable members that have not
  reported, until ``fit_timeout`` (the plan is negotiated as soon as every
  reachable member reported); proposals go out again to silent voters until
  the round's timeout, and a voter the manager stops hearing is not waited
  for; :class:`Release` and :class:`Commit` go out again every
  ``retry_every``. A plan report or record is answered with
  :class:`ReportReceived` (a copy that arrives again changes nothing, and a
  newer copy of a record replaces its entry in the history).
* **Assign while connected.** A *final* plan ``F{n}@{manager}`` is built
  from the connected role set: :class:`FitRequest` to the reachable nodes,
  then a :class:`Negotiation` under the connected governance rule (by default
  the assignee's assent only).
* **Install a final plan: break, then make.** Every node reachable when the
  plan was started, every member of a temporary plan it replaces (even one
  whose ack was lost), and every node that may still hold a share of a
  connected role it does not keep (a live ``bounds`` entry; added each tick)
  is told :class:`Release` (give up every role except the unsplit shares it
  keeps in the new plan) and answers :class:`Released`. The manager sends
  :class:`Commit` only when (a) all have answered or ``release_timeout`` has
  passed (retried every ``retry_every`` meanwhile), and (b) *no node is
  blocking*: every node that has not answered Released for this plan has
  every lease on a key it does not keep certainly over -
  ``bounds[x][k] + lease_margin <= now``.
  Nodes answer :class:`Committed`. The subscription repository (role share ->
  holder, plan, target, since) is updated at commit. A ratified plan moves
  nothing, so only blocking nodes get a Release (usually none: it commits
  at once).

Safety (no final role is taken while another connected node holds it)
----------------------------------------------------------------------
Assumptions: messages may be lost, duplicated, reordered or delayed without
bound; clocks may have any offset, and their rates differ by less than
``lease_margin`` over a lease (which also covers an edge's timer lag). Claim:
when node ``y`` takes role ``r`` of final plan ``P`` (on a Commit of ``P``),
no other node ``x`` that is not isolated (see ``edge``: between
``edge.isolation_declared`` and the first manager message echoing an ack sent
since) holds a share of ``r`` under another plan.

1. *Every holding of a non-isolated node is under a manager lease.* Holdings
   are created only by a Commit (leased) or, while isolated, by the island's
   plane; when isolation ends, temporary holdings the ending message does not
   grant are dropped and the others get that message's lease; a connected
   node takes no new temporary holdings.
2. *A lease ends before the manager's bound.* A grant or Commit sent to ``x``
   at manager time ``t`` echoes ``sent`` of an ack that reached the manager at
   ``echo_at[x] <= t``, so in real time ``sent`` precedes ``echo_at[x]``, and
   ``x``'s lease from it ends by ``echo_at[x] + lease`` (+ drift) <=
   ``bounds[x][k] + lease_margin``. A delayed or duplicated grant cannot reach
   further: its echo is as old as the message.
3. *No new lease on a key ``x`` does not keep during the install.* From the
   Release of ``P`` until its Commit, grants to ``x`` are what it keeps in
   ``P``; no Commit of another plan is sent. So ``bounds[x][k]`` for such
   ``k`` no longer grows.
4. *Released is final.* Having processed Release(``P``), ``x`` holds only its
   kept shares (``P``'s own unsplit shares of ``x``: no other node takes
   those), grants only extend existing holdings, and ``x`` ignores any Commit
   of a plan older than ``P`` (plan-number floor per manager epoch).
5. So at the Commit of ``P``, for each ``x`` other than ``y``: either ``x``
   answered Released(``P``) (4), or every lease of ``x`` on a key of a
   connected role it does not keep is over (2, 3, condition (b)) and it can
   get no new one from this manager before ``P``'s Commit (3); an isolated
   ``x`` regains only what a later, ``P``-aware grant gives it (1), and the
   temporary-key grant refuses a role another node may hold under another
   plan. Hence ``y`` is the only non-isolated holder of ``r`` outside ``P``:
   never two. The manager never needs to hear from ``x`` - a lost ack only
   means waiting for the lease.

Without a holder (the bound)
----------------------------
A holder that cannot complete an ack -> heartbeat round trip within
``lease`` gives its roles up (by design: it cannot know it still has them).
If it stays reachable the manager regrants them at the next tick after its
ack shows the loss. If it is unreachable (no ack for ``isolation_after``,
which with the default ``lease = isolation_after`` is also when its lease is
over) the manager re-plans, and the role is vacant for detection + fit
collection (``fit_timeout``) + negotiation (``proposal_timeout`` per
proposal) + release (at most ``max(release_timeout, lease + lease_margin)``
after it starts) + one Commit delivery. On sound links that is about
``isolation_after + fit_timeout + proposal_timeout + release_timeout``; under
heavy loss the retransmissions keep each step near its sound-link time, and
the renewal requests keep the holder's lease from lapsing in the first place.
* **Reconnect: ratify or replace.** An ack from a node following a
  temporary plan (or a plan that is not the current final plan) starts
  reconciliation after ``reconcile_wait`` seconds (to let the island's leader
  deliver its :class:`PlanReport` and the reporter its
  :class:`ReporterRecord`). The temporary plan is **ratified** - it becomes
  the final plan as is, with the connected metrics, and no role moves, so
  only a :class:`Commit` is needed - when exactly one temporary plan is
  followed among the reachable nodes, its report has arrived, every role of
  the connected role set is held at full metric by one holder (nothing
  lowered, split or unfilled) whose reported fit meets the connected metric,
  no other reachable node holds a role, the reporter recorded no failed
  validation, and the plan is efficient enough: its *efficiency* - the mean
  over the connected roles of the holder's capacity as a multiple of the
  role's connected target, capped at 2 (0 for a role without a holder) - is
  at least ``1 - ratify_hysteresis`` (default 0.75) of the replacement's, the
  plan the manager would make from the same fit reports (projected greedily:
  each role to the best reachable reporter not already given one); moving a
  role restarts its workload, so only a clearly better plan replaces one
  that works. Both figures are logged (``efficiency`` in
  ``manager.ratified`` / ``manager.replaced``). Otherwise the manager **replaces** it: a fresh final plan from
  the connected role set, installed break-then-make. Before it decides, it
  waits (``manager.report_awaited``, at most ``2 * heartbeat_interval`` past
  ``reconcile_wait``) for what the plane still owes and may just have lost:
  the leader's plan report (a reachable member's ack names the leader), the
  named reporter's record, a first ack from each holder of a connected role.
  When acks show two or more temporary plans in reach (planes that met at
  the heal), no plan can be ratified: the manager decides at once
  (``manager.planes_met``) rather than after ``reconcile_wait``, waiting only
  for plan reports still owed - not for records or holders' first acks, nor
  for the report of a leader whose own ack follows another plan (it merged) -
  so the planes' holders do not overlap until a late final plan.
  A temporary plan a final plan ratified or replaced is *settled*: a member
  that still follows it (its Commit was lost) gets the final plan in force
  committed to it again (``manager.catch_up``) instead of starting a new
  reconciliation. A plan still being built (fits or negotiation) when a
  reachable node reports a temporary plan it was not built from, or whose
  negotiation ends with none of its members reachable, is abandoned
  (``manager.plan_abandoned``) before anything of it is released: its fits
  and answers predate the island's plane, and installing it at the heal
  would take the temporary holders' roles for a plan made without them
  (roles left without a holder until the next re-plan).
* **Subscription terms.** Every final subscription carries the holder's
  ``usage`` term (the load it agreed to in the negotiation; the holder gives
  up a workload its host measures above it) and, with
  ``subscription_term`` > 0, a ``duration`` term: the holder gives the role
  up when it ends, so half way through it the manager renews the plan in
  force - committed again under a new plan id, nothing moving
  (``manager.renewal``, then ``manager.plan_final`` with reason
  ``renewal``) - once every holder of it answers (never while the manager
  is cut off from them: the holders are isolated, and their temporary plan
  is the manager's to ratify or replace at the heal).
* **Performance history.** Every reporter's metric bundle is appended to the
  performance history (``manager.metrics``).

Restarts (durable state)
------------------------
With a store (``durable=``; ``None``: nothing is persisted) the manager
persists one record, ``manager``, before the first ``Send`` of the handler
that changed it: its incarnation, the plan counter (a plan id never recurs:
``F{n}@node``, and ``F{n}.{incarnation}@node`` from the second incarnation
on, so an empty disk cannot repeat one either) and the final plan that may
be in force - written when its first :class:`Commit` is about to leave, so
a restarted manager knows the newest plan any node may hold under and goes
on granting its keys to the nodes that still hold them. Leases are never
persisted: they are *waited out*. A restarted manager (``first_start`` is
the host's word; a start it cannot vouch for is a restart) has a new epoch
and, for ``lease + lease_margin`` after its start, counts every node that has
not answered ``Released`` for the plan it installs as possibly holding any
role (``_blocking``) and every role as possibly claimed (no temporary-key
grant, no regrant): a lease an earlier incarnation granted was echoed from
an ack that reached it before it stopped, so it is over by then (the same
argument as step 2 above, on the new incarnation's clock from its start).
So a restarted manager - from its disk or from an empty one - never commits
a final plan that conflicts with a holding it granted before.

Parameters: ``lease`` (default ``isolation_after``), ``lease_margin``
(default ``heartbeat_interval``) and ``retry_every`` (default
``heartbeat_interval / 6``).

Events: ``manager.deployed``, ``manager.plan_started``, ``manager.proposal``,
``manager.assent``, ``manager.metrics_lowered``, ``manager.role_split``,
``manager.role_unfilled``, ``manager.reconnect_seen``,
``manager.plan_report``, ``manager.metrics``, ``manager.ratified``,
``manager.replaced``, ``manager.release_sent``, ``manager.commit_sent``,
``manager.regrant``, ``manager.plan_final``, ``manager.subscription``,
``manager.fit_retry``, ``manager.proposal_retry``, ``manager.report_awaited``,
``manager.catch_up``, ``manager.plan_abandoned``, ``manager.restarted``, ``manager.renewal``.
"""

from __future__ import annotations

import math
import random
from typing import Any

import attrs

from protocols.core import CancelTimer, Effect, Emit, Persist, Send, SetTimer, TimerFired
from protocols.localplane.ir import build_ir
from protocols.localplane.messages import (
    Answer,
    Assignment,
    Commit,
    Committed,
    Deploy,
    FitReport,
    FitRequest,
    Heartbeat,
    HeartbeatAck,
    IntermediateRepresentation,
    PlanReport,
    Released,
    Release,
    ReportReceived,
    ReporterRecord,
)
from protocols.localplane.negotiation import Negotiation, _adict, role_key

__all__ = ["DeploymentManager"]


class DeploymentManager:
    """The deployment manager (see the module docstring)."""

    def __init__(
        self,
        address: str,
        edges: list,
        intent: dict,
        tables: dict | None = None,
        rng: random.Random | None = None,
        *,
        heartbeat_interval: float = 0.1,
        isolation_after: float = 0.5,
        fit_timeout: float = 0.1,
        proposal_timeout: float = 0.1,
        reconcile_wait: float = 0.1,
        release_timeout: float = 0.3,
        handover_bound: float = 0.5,
        plan_on_start: bool = True,
        epoch: int | None = None,
        lease: float | None = None,
        lease_margin: float | None = None,
        retry_every: float | None = None,
        durable: dict | None = None,
        first_start: bool | None = None,
        ratify_hysteresis: float = 0.25,
        subscription_term: float = 0.0,
    ) -> None:
        self.address = address
        self.node = address.partition("/")[0]
        self.edges = sorted(edges)
        if not 0 <= ratify_hysteresis < 1:
            raise ValueError(f"ratify_hysteresis must be in [0, 1), got {ratify_hysteresis}")
        self.ratify_hysteresis = float(ratify_hysteresis)  # a move costs: replace only a clearly less efficient plan
        if subscription_term < 0:
            raise ValueError(f"subscription_term must be >= 0, got {subscription_term}")
        # the duration term of every final subscription (0: until a plan replaces it); renewed at half of it
        self.subscription_term = float(subscription_term)
        self.renewed_at = -math.inf  # the last renewal's commit (a renewal leaves final_at, the gaps' clock, alone)
        self.intent = dict(intent)
        self.tables = tables
        self.rng = rng if rng is not None else random.Random(address)
        self.heartbeat_interval = heartbeat_interval
        self.tick_interval = heartbeat_interval
        self.isolation_after = isolation_after
        self.fit_timeout = fit_timeout
        self.proposal_timeout = proposal_timeout
        self.reconcile_wait = reconcile_wait
        self.release_timeout = release_timeout
        self.handover_bound = handover_bound
        self.plan_on_start = plan_on_start
        self.epoch = epoch if epoch is not None else self.rng.randrange(1, 1 << 30)
        # the lease a grant gives (from the echoed ack's send time) and the margin for clock drift / timer lag
        self.lease = float(lease) if lease is not None else isolation_after
        self.lease_margin = float(lease_margin) if lease_margin is not None else heartbeat_interval
        # loss tolerance: fit requests, proposals, Release and Commit go out again this often until answered
        self.retry_every = float(retry_every) if retry_every else heartbeat_interval / 6

        self.ir: IntermediateRepresentation | None = None
        self.seq = 0
        self.plans = 0
        self.last_ack: dict[str, float] = {}
        self.acks: dict[str, HeartbeatAck] = {}
        self.deployed: set[str] = set()
        self.final_id = ""  # the final plan in force
        self.final: list[Assignment] = []
        self.reports: dict[str, PlanReport] = {}
        self.records: dict[str, ReporterRecord] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}  # the subscription repository
        self.history: list[dict[str, Any]] = []  # the performance history
        # the plan being built / installed
        self.phase = "idle"  # idle | collect | negotiate | release | commit
        self.work_id = ""
        self.work_reason = ""
        self.work_sources: list[str] = []
        self.work_ratified = False
        self.work_started = 0.0
        self.work_members: list[str] = []
        self.fits: dict[str, FitReport] = {}
        self.fit_deadline = 0.0
        self.retry_at: float | None = None  # the pending "retry" timer (Release / Commit sent again)
        self.neg: Negotiation | None = None
        self.work_assignments: list[Assignment] = []
        self.waiting: set[str] = set()
        self.release_deadline = 0.0
        self.released_at = 0.0
        self.reconcile_due: float | None = None
        self.reconnect_first: float | None = None
        self.awaiting: list[str] = []  # reports the reconciliation waits for (see _awaited)
        # temporary plans a final plan ratified or replaced -> when (a straggler of one gets the final plan; a plan
        # id can recur after an edge restarts, so they are forgotten after a while)
        self.settled: dict[str, float] = {}
        self.caught: set[tuple[str, str]] = set()  # (node, settled plan) told the final plan again
        self.final_seq = 0
        self.final_at = 0.0
        # leases: the newest ack's send time per node (its clock) and when it arrived (ours)
        self.echo: dict[str, float] = {}
        self.echo_at: dict[str, float] = {}
        # node -> role key -> (latest end of any lease granted on it, our clock, bound by echo_at + lease; plan)
        self.bounds: dict[str, dict[str, tuple[float, str]]] = {}
        self.released: set[str] = set()  # nodes that answered Released for work_id
        # durable state (see "Restarts" in the module docstring): None: no store, nothing is persisted
        self.persistent = durable is not None
        self._persisted: tuple | None = None
        rec = durable.get("manager") if durable else None
        rec = rec if isinstance(rec, dict) else None
        # a start the host cannot vouch for as the first is a restart; with no store at all, the embedder's choice
        self.restarted = (first_start is False) or (first_start is None and rec is not None)
        self.incarnation = (int(rec["inc"]) + 1 if rec is not None
                            else self.rng.randrange(2, 1 << 30) if self.restarted else 1)
        if rec is not None:
            self.plans = int(rec.get("plans", 0))
            if rec.get("final_id"):
                self.final_id = str(rec["final_id"])
                self.final = [Assignment(**a) for a in rec.get("final") or []]
        self.committing: tuple[str, list[Assignment]] = (self.final_id, list(self.final))  # persisted as in force
        self.started: float | None = None
        self.guard_until = -math.inf  # until then leases of an earlier incarnation may still run (restart)

    # -- helpers -------------------------------------------------------------------------------

    def _emit(self, event_kind: str, /, **fields: Any) -> Emit:
        return Emit(event_kind, fields)

    def _next_plan_id(self) -> str:
        """``F{n}@node``; a later incarnation adds its number (``F{n}.{incarnation}@node``), so a plan id never
        recurs even on an empty disk. The counter is persisted before the id leaves (see :meth:`_durable`)."""
        self.plans += 1
        return f"F{self.plans}@{self.node}" if self.incarnation == 1 else f"F{self.plans}.{self.incarnation}@{self.node}"

    # -- durable state ---------------------------------------------------------------------------------

    def _durable(self, out: list[Effect]) -> list[Effect]:
        """Group commit: when the plan counter or the plan that may be in force changed in this handler, one
        Persist goes before its first Send (the host syncs it before anything leaves)."""
        if not self.persistent:
            return out
        st = (self.incarnation, self.plans, self.committing[0])
        if st == self._persisted:
            return out
        self._persisted = st
        rec = {"inc": self.incarnation, "plans": self.plans, "final_id": self.committing[0],
               "final": [attrs.asdict(a) for a in self.committing[1]]}
        i = next((i for i, e in enumerate(out) if isinstance(e, Send)), len(out))
        return out[:i] + [Persist("manager", rec)] + out[i:]

    def _guarded(self, now: float) -> bool:
        """Restarted less than a lease (and its margin) ago: an earlier incarnation may have granted any node any
        role until then, and nothing of it is remembered (a lease is never persisted: it is waited out)."""
        return now < self.guard_until

    def reachable(self, now: float) -> list[str]:
        return [e for e in self.edges if now - self.last_ack.get(e, -1e18) <= self.isolation_after]

    # -- leases ---------------------------------------------------------------------------------------

    def _record(self, node: str, keys: set[str] | list[str], plan_id: str) -> None:
        """Account for a grant of ``keys`` sent to ``node`` now: the node holds none of them past echo_at + lease."""
        at = self.echo_at.get(node)
        if at is None:
            return  # no echo to send: the grant renews nothing
        until = at + self.lease
        mine = self.bounds.setdefault(node, {})
        for k in keys:
            prev = mine.get(k)
            if prev is None or until >= prev[0]:
                mine[k] = (until, plan_id)

    def _live(self, until: float, now: float) -> bool:
        return until + self.lease_margin > now

    def _plan_keys(self, assignments: list[Assignment]) -> dict[str, set[str]]:
        keys: dict[str, set[str]] = {e: set() for e in self.edges}
        for a in assignments:
            if a.holder in keys:
                keys[a.holder].add(role_key(a.role, a.share, a.shares))
        return keys

    def _keep(self) -> dict[str, set[str]]:
        """What each node may keep through the release of the plan being installed: its unsplit shares in it."""
        keys: dict[str, set[str]] = {e: set() for e in self.edges}
        for a in self.work_assignments:
            if a.holder in keys and a.shares == 1:
                keys[a.holder].add(role_key(a.role, a.share, a.shares))
        return keys

    def _grants(self, now: float, only: str | None = None) -> dict[str, set[str]]:
        """The role keys each node's heartbeat grants now (and their accounting in ``bounds``); ``only``: for
        that node alone (a beat answering its renewal request).

        Idle, collecting or negotiating: the final plan's keys of the node, and the temporary keys
        a reconnected node reports holding unless another node may hold a share of that role under
        another plan. Releasing: only what the node keeps. Committing: its keys in the new plan.
        """
        for e in list(self.bounds):  # forget leases that are certainly over
            self.bounds[e] = {k: v for k, v in self.bounds[e].items() if self._live(v[0], now)}
        if self.phase == "release":
            grants, plan = self._keep(), self.work_id
        elif self.phase == "commit":
            grants, plan = self._plan_keys(self.work_assignments), self.work_id
        else:
            grants, plan = self._plan_keys(self.final), self.final_id
        nodes = self.edges if only is None else [only]
        if self.phase not in ("release", "commit"):
            # a key of the plan in force is granted only to a node that may still hold it: its newest ack says so,
            # or a lease granted on it may not be over (a grant never creates a holding). A holder whose lease
            # ended while it was cut off is no longer accounted on it, so it does not block the temporary holder
            # of that role from keeping it on reconnect (see _claimed).
            for e in nodes:
                a = self.acks.get(e)
                held = set(a.holding) if a is not None else set()
                live = {k for k, (until, _) in self.bounds.get(e, {}).items() if self._live(until, now)}
                grants[e] = {k for k in grants[e] if k in held or k in live}
        for e in nodes:
            self._record(e, grants[e], plan)
        if self.phase in ("release", "commit") or self.ir is None:
            return grants
        connected = {r.name for r in self.ir.roles}
        for e in nodes:
            a = self.acks.get(e)
            if (a is None or not a.temporary or a.seq <= self.final_seq or e not in self.echo_at
                    or self._settled(a.plan_id, now)):
                continue
            for k in sorted(set(a.holding) - grants[e]):
                role = k.partition("#")[0]
                if role in connected and self._claimed(role, e, a.plan_id, now):
                    continue
                grants[e].add(k)
                self._record(e, [k], a.plan_id)
        return grants

    def _claimed(self, role: str, node: str, plan_id: str, now: float) -> bool:
        """May a node other than ``node`` hold a share of ``role`` under a plan other than ``plan_id``?"""
        if self._guarded(now):
            return True  # leases of an earlier incarnation may still run
        return any(x != node and k.partition("#")[0] == role and pid != plan_id and self._live(until, now)
                   for x, ks in self.bounds.items() for k, (until, pid) in ks.items())

    def _blocking(self, now: float) -> list[str]:
        """Nodes that may still hold a share of a connected role they do not keep in the plan being installed.

        The plan may be committed only when this is empty: each of them answered Released for it, or
        every lease it was ever granted on such a key is certainly over.
        """
        assert self.ir is not None
        if self._guarded(now):  # any node may hold anything under a lease of an earlier incarnation
            return sorted(x for x in self.edges if x not in self.released)
        connected = {r.name for r in self.ir.roles}
        keep = self._keep()
        return sorted(x for x, ks in self.bounds.items() if x not in self.released
                      and any(k not in keep.get(x, set()) and k.partition("#")[0] in connected
                              and self._live(until, now) for k, (until, _) in ks.items()))

    # -- the sans-I/O entry points ------------------------------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        return self._durable(self._tick(now))

    def _tick(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        if self.started is None:
            self.started = now
            self.final_at = now
            if self.restarted:
                self.guard_until = now + self.lease + self.lease_margin
                out.append(self._emit("manager.restarted", incarnation=self.incarnation, final=self.final_id,
                                      plans=self.plans, guard_until=round(self.guard_until, 6)))
        if self.ir is None:
            self.ir = build_ir(self.intent, self.tables)
            out.append(self._emit("manager.deployed", intent=self.ir.intent, version=self.ir.version,
                                  edges=len(self.edges), roles=[r.name for r in self.ir.roles],
                                  isolated_roles=[r.name for r in self.ir.isolated_roles],
                                  governance={"size_threshold": self.ir.governance.size_threshold,
                                              "connected": self.ir.governance.connected_rule,
                                              "isolated_below": self.ir.governance.isolated_below,
                                              "isolated_above": self.ir.governance.isolated_above}))
            d = Deploy(ir=self.ir, members=self.edges, epoch=self.epoch)
            out += [Send(e, d) for e in self.edges]
            self.deployed = set(self.edges)
            if self.plan_on_start:
                self.reconcile_due = now + self.reconcile_wait + self.heartbeat_interval
        else:
            d = Deploy(ir=self.ir, members=self.edges, epoch=self.epoch)
            out += [Send(e, d) for e in self.edges if now - self.last_ack.get(e, -1e18) > 2 * self.heartbeat_interval]
        self.seq += 1
        grants = self._grants(now)
        out += [Send(e, Heartbeat(epoch=self.epoch, seq=self.seq, plan_id=self.final_id, grant=sorted(grants[e]),
                                  echo=self._echo_for(e, now), lease=self.lease)) for e in self.edges]
        if self.phase in ("idle", "collect", "negotiate"):
            out += self._regrant(now)
        if self.phase == "idle" and self.reconcile_due is None and self._gaps(now):
            self.reconcile_due = now
        if (self.phase == "idle" and self.reconcile_due is None and self.final_id and self.subscription_term > 0
                and now >= max(self.final_at, self.renewed_at) + self.subscription_term / 2
                and not self._guarded(now) and not self._gaps(now) and self._holders_reached(now)):
            out += self._renew_subscriptions(now)
        if self.reconcile_due is not None and now >= self.reconcile_due and self.phase == "idle":
            self.reconcile_due = None
            out += self._reconcile(now)
        if self.neg is not None:  # a voter the manager no longer hears is not waited for
            reach = set(self.reachable(now))
            for v in [v for v in self.neg.voters if v not in reach]:
                out += self.neg.member_down(v, now)
            out += self._check_negotiated(now)
        return out + self._resend(now)

    def handle(self, msg: Any, sender: str, now: float) -> list[Effect]:
        h = _HANDLERS.get(type(msg))
        if h is None:
            return [self._emit("manager.ignored", what=type(msg).__name__, sender=sender)]
        return self._durable(h(self, msg, sender, now))

    # -- acks and reconnects ---------------------------------------------------------------------------

    def _on_ack(self, msg: HeartbeatAck, sender: str, now: float) -> list[Effect]:
        if sender not in self.edges or msg.epoch != self.epoch:
            return []
        out: list[Effect] = []
        was = now - self.last_ack.get(sender, -1e18) <= self.isolation_after
        self.last_ack[sender] = now
        newer = sender not in self.acks or msg.sent is None or msg.sent >= (self.acks[sender].sent or -math.inf)
        if newer:  # a late or duplicated ack does not undo what a newer one said
            self.acks[sender] = msg
        if msg.sent is not None and msg.sent > self.echo.get(sender, -math.inf):
            self.echo[sender] = msg.sent
            self.echo_at[sender] = now
        if msg.renew and newer:
            out += self._answer_renewal(sender, now)
        if msg.seq <= self.final_seq:
            return out  # an ack sent before the final plan was committed says nothing new
        if msg.temporary and self._settled(msg.plan_id, now):
            # a member of a plane already reconciled whose Commit was lost: the final plan in force, not a new one
            return out + (self._catch_up(sender, msg.plan_id, now) if self.phase == "idle" else [])
        if msg.temporary and self.phase in ("collect", "negotiate") and msg.plan_id not in self.work_sources:
            # the plan being built predates this island's plane: its fits and answers are stale (the nodes now hold
            # temporary roles and commitments it does not know); building it on would release those holders for a
            # plan made without them - reconcile (ratify or replace) instead
            out += self._abandon(now, f"{sender} follows temporary plan {msg.plan_id}", reconcile=False)
        stray = msg.temporary or (msg.plan_id and msg.plan_id != self.final_id and self.phase == "idle")
        if stray and self.phase == "idle":
            if self.reconcile_due is None:
                self.reconcile_due = now + self.reconcile_wait
                if self.reconnect_first is None:
                    self.reconnect_first = now
                out.append(self._emit("manager.reconnect_seen", node=sender, plan_id=msg.plan_id,
                                      temporary=msg.temporary, leader=msg.leader, term=msg.term))
            planes = sorted({a.plan_id for e, a in self.acks.items() if a.temporary and a.seq > self.final_seq
                             and e in set(self.reachable(now)) and not self._settled(a.plan_id, now)})
            if msg.temporary and len(planes) > 1 and self.reconcile_due > now:
                # two temporary planes back in reach: no plan can be ratified, and each holds its shares until the
                # final plan - waiting out reconcile_wait only keeps two holders of a share (or two leaders) in one
                # island that long. Decide now (the plane reports awaited are still waited for, a little)
                self.reconcile_due = now
                out.append(self._emit("manager.planes_met", plans=planes))
        elif not was and self.final_id and self.phase == "idle" and not msg.holding and self.ir is not None:
            pass  # a node back with nothing: it simply joins the reachable set
        return out

    def _settled(self, plan_id: str, now: float) -> bool:
        at = self.settled.get(plan_id)
        return at is not None and now - at <= 4 * self.isolation_after

    def _catch_up(self, node: str, plan_id: str, now: float) -> list[Effect]:
        """Commit the final plan in force to a node still in a temporary plan it replaced or ratified (the same lease
        accounting as any commit): the node ends its plane and holds exactly its share of the final plan."""
        if not self.final_id or node not in self.echo:
            return []
        self._record(node, self._plan_keys(self.final)[node], self.final_id)
        out: list[Effect] = [Send(node, Commit(plan_id=self.final_id, assignments=list(self.final),
                                               echo=self.echo[node], lease=self.lease, source="catch-up",
                                               epoch=self.epoch))]
        if (node, plan_id) not in self.caught:
            self.caught.add((node, plan_id))
            out.append(self._emit("manager.catch_up", plan_id=self.final_id, node=node, settled=plan_id))
        return out

    def _echo_for(self, node: str, now: float) -> float | None:
        """The send time a heartbeat to ``node`` echoes: its newest ack's - unless that ack reports a temporary
        holding that could be granted but is not, because the ack predates the final plan in force (the node heard
        no beat since: cut off while that plan was made, back now; see _grants). Echoing such an ack would end the
        node's isolation with that holding not granted, so it would give it up - a handover gap until the
        reconciliation (0.99 s with edge.toml's timing). Without an echo the node stays isolated and acks this
        beat with a newer seq; the next beat judges its holdings. A temporary holding another node may hold under
        another plan (``_claimed``) is never granted: that ack is echoed at once, so the node gives it up at once."""
        a = self.acks.get(node)
        if (a is None or not a.temporary or a.seq > self.final_seq or self.ir is None
                or self._settled(a.plan_id, now)):
            return self.echo.get(node)
        connected = {r.name for r in self.ir.roles}
        mine = self._plan_keys(self.final).get(node, set())
        if any(k.partition("#")[0] in connected and k not in mine
               and not self._claimed(k.partition("#")[0], node, a.plan_id, now) for k in a.holding):
            return None
        return self.echo.get(node)

    def _answer_renewal(self, node: str, now: float) -> list[Effect]:
        """A node asked for a beat (its lease runs low, a share lapsed, or it reconnects): a heartbeat for it alone,
        under the same grant rules and lease accounting as the periodic ones, and the regrant of a lapsed share."""
        grant = self._grants(now, only=node)[node]
        out: list[Effect] = [Send(node, Heartbeat(epoch=self.epoch, seq=self.seq, plan_id=self.final_id,
                                                  grant=sorted(grant), echo=self._echo_for(node, now), lease=self.lease))]
        if self.phase == "commit":  # a share of the plan being committed lapsed already: commit it again
            a = self.acks.get(node)
            keys = self._plan_keys(self.work_assignments)[node]
            if a is not None and keys - set(a.holding):
                out.append(Send(node, self._commit_msg(node, now)))
            return out
        return out + self._regrant(now, only=node)

    def _on_plan_report(self, msg: PlanReport, sender: str, now: float) -> list[Effect]:
        out: list[Effect] = [Send(sender, ReportReceived(plan_id=msg.plan_id, what="plan"))]
        if self.reports.get(msg.plan_id) == msg:
            return out  # sent again: already known
        self.reports[msg.plan_id] = msg
        out.append(self._emit("manager.plan_report", plan_id=msg.plan_id, term=msg.term, leader=msg.leader,
                              members=len(msg.members), assignments=[_adict(a) for a in msg.assignments],
                              lowered=dict(msg.lowered), splits=dict(msg.splits), unfilled=list(msg.unfilled)))
        return out + self._awaited_arrived(now)

    def _awaited_arrived(self, now: float) -> list[Effect]:
        """A report the reconciliation waits for arrived: decide now rather than at the next tick."""
        if not self.awaiting or self.phase != "idle" or self.reconcile_due is None or now < self.reconcile_due:
            return []
        self.reconcile_due = None
        return self._reconcile(now)

    def _on_record(self, msg: ReporterRecord, sender: str, now: float) -> list[Effect]:
        out: list[Effect] = [Send(sender, ReportReceived(plan_id=msg.plan_id, what="record"))]
        if self.records.get(msg.plan_id) == msg:
            return out  # sent again: already in the performance history
        self.records[msg.plan_id] = msg
        bundle = {"plan_id": msg.plan_id, "reporter": msg.reporter, "time": now, **msg.metrics}
        at = next((i for i, b in enumerate(self.history)
                   if b["plan_id"] == msg.plan_id and b["reporter"] == msg.reporter), None)
        if at is None:
            self.history.append(bundle)
        else:  # a newer copy of a record already in the history replaces it (it is not a second period)
            self.history[at] = bundle
        out.append(self._emit("manager.metrics", **bundle, entries=len(msg.entries), updated=at is not None))
        return out + self._awaited_arrived(now)

    def _reconcile(self, now: float) -> list[Effect]:
        """Decide between ratifying the temporary plan and replacing it (or make the first plan)."""
        assert self.ir is not None
        reach = self.reachable(now)
        if not reach:
            self.reconcile_due = now + self.reconcile_wait
            return []
        fresh = {e: self.acks[e] for e in reach if e in self.acks and self.acks[e].seq > self.final_seq}
        temp = sorted({a.plan_id for a in fresh.values() if a.temporary and not self._settled(a.plan_id, now)})
        if not temp:
            if not self.final_id:
                return self._start_plan(now, "initial", [], reach)
            gaps = self._gaps(now)
            stray = sorted({a.plan_id for a in fresh.values() if a.plan_id not in ("", self.final_id)})
            if not gaps and not stray:
                self.reconnect_first = None
                return []
            return self._start_plan(now, f"holders lost: {gaps[:3]}" if gaps else f"stray plans {stray}", stray, reach)
        awaited = self._awaited(temp, reach)
        if len(temp) > 1:
            # planes met: the outcome is a replacement whatever a record or a holder's first ack would say; only
            # the plan reports matter (their members are all told Release), so only they are waited for
            awaited = [a for a in awaited if a.startswith("plan report")]
        since = self.reconnect_first if self.reconnect_first is not None else now
        if awaited and now < since + self.reconcile_wait + 2 * self.heartbeat_interval:
            # a report still on its way is not a missing report: wait for it a little (it is sent again until
            # confirmed), then decide without it
            out: list[Effect] = []
            if self.awaiting != awaited:
                self.awaiting = awaited
                out.append(self._emit("manager.report_awaited", sources=temp, awaited=awaited,
                                      since_reconnect=round(now - since, 6)))
            self.reconcile_due = now
            return out
        self.awaiting = []
        why = self._ratifiable(temp, reach)
        eff = self._efficiency(self.reports[temp[0]], reach) if len(temp) == 1 and temp[0] in self.reports else None
        if why is None and eff is not None and eff["temporary"] < (1 - self.ratify_hysteresis) * eff["replacement"]:
            why = (f"the temporary plan's efficiency {eff['temporary']:.3f} is below {1 - self.ratify_hysteresis:.2f} "
                   f"of a replacement's {eff['replacement']:.3f}")
        if why is None:
            return self._ratify(now, self.reports[temp[0]], eff)
        out = [self._emit("manager.replaced", sources=temp, reason=why, efficiency=eff,
                                        since_reconnect=round(now - (self.reconnect_first or now), 6))]
        return out + self._start_plan(now, f"replace: {why}", temp, reach)

    def _efficiency(self, rep: PlanReport, reach: list[str]) -> dict[str, Any] | None:
        """The efficiency measure of ratify-or-replace, for the temporary plan and for the replacement the manager
        would make from the same fit reports: the mean over the connected roles of the holder's capacity as a
        multiple of the role's connected target, capped at 2 (headroom past twice the need buys nothing); a role
        without a holder counts 0. The replacement is projected greedily: each role, in the IR's order, to the
        reachable reporter with the highest such multiple not already given a role (any reporter if all were)."""
        assert self.ir is not None
        if not self.ir.roles:
            return None
        iso = {r.name: r.target for r in self.ir.isolated_roles}

        def mult(node: str, r: Any) -> float:
            fit = rep.fits.get(node, {}).get(r.name, 0.0)
            return min(2.0, fit * iso.get(r.name, r.target) / r.target) if r.target > 0 else 0.0

        temp = []
        for r in self.ir.roles:
            held = [a for a in rep.assignments if a.role == r.name]
            temp.append(mult(held[0].holder, r) if len(held) == 1 else 0.0)
        used: set[str] = set()
        repl = []
        pool = [m for m in sorted(rep.fits) if m in set(reach)]
        for r in self.ir.roles:
            free = [m for m in pool if m not in used] or pool
            best = max(free, key=lambda m: (mult(m, r), m), default=None)
            repl.append(mult(best, r) if best is not None else 0.0)
            if best is not None:
                used.add(best)
        n = len(self.ir.roles)
        return {"temporary": round(sum(temp) / n, 4), "replacement": round(sum(repl) / n, 4),
                "hysteresis": self.ratify_hysteresis}

    def _awaited(self, temp: list[str], reach: list[str]) -> list[str]:
        """What a reconnected plane still owes the manager, while it may just be lost on the way: the leader's
        plan report (its plane is alive: a reachable member's ack names it), the record of the reporter the report
        names, and a first ack from each holder of a connected role in it."""
        assert self.ir is not None
        out = []
        connected = {r.name for r in self.ir.roles}
        for pid in temp:
            rep = self.reports.get(pid)
            if rep is None:
                leaders = {self.acks[e].leader for e in reach if e in self.acks and self.acks[e].plan_id == pid
                           and self.acks[e].leader}
                # a leader whose own ack (reachable, newer than the final plan) follows another plan merged into it:
                # it will not report this one (its members learn it when its lease runs out)
                gone = {x for x in leaders if x in reach and x in self.acks and self.acks[x].seq > self.final_seq
                        and self.acks[x].plan_id != pid}
                if leaders - gone:
                    out.append(f"plan report {pid}")
                continue
            reporter = next((a.holder for a in rep.assignments if a.role == "reporter"), "")
            if pid not in self.records and reporter in rep.members:
                out.append(f"record {pid}")
            out += sorted({f"ack of {a.holder}" for a in rep.assignments
                           if a.role in connected and a.holder not in reach and a.holder in self.edges})
        return out

    def _gaps(self, now: float) -> list[str]:
        """Role shares of the final plan in force whose holder is gone, or no longer holds them and cannot be
        given them back (see :meth:`_regrant`), and connected roles the plan left unfilled (retried at most
        every ``isolation_after``)."""
        if not self.final_id or now - self.final_at < self.isolation_after:
            return []
        reach = set(self.reachable(now))
        if not reach:
            return []
        out = []
        regrant = self._regrantable(now)
        for a in self.final:
            k = role_key(a.role, a.share, a.shares)
            ack = self.acks.get(a.holder)
            if a.holder not in reach or ack is None or (ack.seq > self.final_seq and k not in ack.holding
                                                         and k not in regrant.get(a.holder, ())):
                out.append(k)
        if self.ir is not None:
            held = {a.role for a in self.final}
            out += [f"{r.name}#unfilled" for r in self.ir.roles if r.name not in held]
        return out

    def _regrantable(self, now: float, only: str | None = None) -> dict[str, list[str]]:
        """Shares of the final plan in force that their reachable holder reports it no longer holds (its lease
        ran out while acks or beats were lost), and that no other node may hold under another plan. Not while a
        new plan is released or committed (its Release fixes what each node keeps)."""
        if not self.final_id or self.phase not in ("idle", "collect", "negotiate"):
            return {}
        reach = set(self.reachable(now))
        out: dict[str, list[str]] = {}
        for e, keys in sorted(self._plan_keys(self.final).items()):
            if only is not None and e != only:
                continue
            a = self.acks.get(e)
            if not keys or e not in reach or e not in self.echo or a is None or a.seq <= self.final_seq or a.temporary:
                continue
            lost = sorted(k for k in keys if k not in a.holding and k not in a.declined)
            if lost and not any(self._claimed(k.partition("#")[0], e, self.final_id, now) for k in lost):
                out[e] = lost
        return out

    def _regrant(self, now: float, only: str | None = None) -> list[Effect]:
        """Give a lapsed share back to its holder: the final plan in force is committed to it again (the same
        lease accounting as any commit), instead of negotiating a new plan."""
        out: list[Effect] = []
        for e, lost in sorted(self._regrantable(now, only).items()):
            self._record(e, self._plan_keys(self.final)[e], self.final_id)
            out.append(Send(e, Commit(plan_id=self.final_id, assignments=list(self.final), echo=self.echo[e],
                                      lease=self.lease, source="regrant", epoch=self.epoch)))
            out.append(self._emit("manager.regrant", plan_id=self.final_id, node=e, keys=lost))
        return out

    def _ratifiable(self, temp: list[str], reach: list[str]) -> str | None:
        """None if the single temporary plan may become final as is, else why not."""
        assert self.ir is not None
        if len(temp) != 1:
            return f"{len(temp)} temporary plans"
        rep = self.reports.get(temp[0])
        if rep is None:
            return "no plan report from the island's leader"
        if not rep.assignments:
            return "the temporary plan was not complete"
        if rep.lowered or rep.splits or rep.unfilled:
            return "the temporary plan lowered, split or left roles unfilled"
        members = set(rep.members)
        for e in reach:
            a = self.acks.get(e)
            if a is not None and e not in members and a.holding:
                return f"{e} holds roles outside the temporary plan"
        rec = self.records.get(temp[0])
        if rec is not None and rec.metrics.get("failures", 0.0) > 0:
            return "the validator recorded failures"
        iso = {r.name: r for r in self.ir.isolated_roles}
        for r in self.ir.roles:
            held = [a for a in rep.assignments if a.role == r.name]
            if len(held) != 1:
                return f"role {r.name} has {len(held)} holders in the temporary plan"
            a = held[0]
            if a.holder not in reach:
                return f"the holder of {r.name} is unreachable"
            fit = rep.fits.get(a.holder, {}).get(r.name, 0.0)
            base = iso[r.name].target if r.name in iso else r.target
            if fit * base < r.target:
                return f"{a.holder} does not meet the connected metric of {r.name}"
        return None

    def _ratify(self, now: float, rep: PlanReport, eff: dict | None = None) -> list[Effect]:
        assert self.ir is not None
        self.work_id = self._next_plan_id()
        self.work_sources = [rep.plan_id]
        self.work_ratified = True
        self.work_reason = "ratified"
        self.work_started = now
        self.work_members = self.reachable(now)
        self.work_assignments = []
        for r in self.ir.roles:
            a = next(a for a in rep.assignments if a.role == r.name)
            self.work_assignments.append(Assignment(role=r.name, holder=a.holder, target=r.target, share=a.share,
                                                    shares=a.shares, kind="service", min_ratio=a.min_ratio,
                                                    usage=a.usage, duration=self.subscription_term))
        out: list[Effect] = [self._emit("manager.ratified", plan_id=self.work_id, source=rep.plan_id, efficiency=eff,
                                        since_reconnect=round(now - (self.reconnect_first or now), 6),
                                        assignments=[_adict(a) for a in self.work_assignments])]
        # nothing moves: every holder keeps its share, so only nodes that may hold a share of a connected role
        # outside it (see _blocking) are told to release; with none, the plan is committed at once
        return out + self._release(now, members=[])

    def _holders_reached(self, now: float) -> bool:
        """Every holder of the plan in force answers (a renewal is due only then). Cut off from all of them the
        manager renews nothing (its Commit reaches nobody; _gaps, which needs a node in reach, says nothing), and
        a renewal made then would make every ack sent before it look older than the plan in force: a reconnecting
        temporary holder would not be granted its share and give it up (a handover gap)."""
        reach = set(self.reachable(now))
        return all(a.holder in reach for a in self.final)

    def _renew_subscriptions(self, now: float) -> list[Effect]:
        """Half way through the subscriptions' duration term, the final plan in force is committed again under a new
        plan id (nothing moves: each holder converts its holding and its term starts again)."""
        self.work_id = self._next_plan_id()
        self.work_sources = []
        self.work_ratified = True
        self.work_reason = "renewal"
        self.work_started = now
        self.work_members = self.reachable(now)
        self.work_assignments = [attrs.evolve(a, duration=self.subscription_term) for a in self.final]
        out: list[Effect] = [self._emit("manager.renewal", plan_id=self.work_id, renews=self.final_id,
                                        term=self.subscription_term)]
        return out + self._release(now, members=[])

    # -- building a final plan ------------------------------------------------------------------------

    def _start_plan(self, now: float, reason: str, sources: list[str], reach: list[str]) -> list[Effect]:
        assert self.ir is not None
        self.work_id = self._next_plan_id()
        self.work_reason = reason
        self.work_sources = sources
        self.work_ratified = False
        self.work_started = now
        # every node of a source plan must release before anything is committed, even one whose ack was lost
        extra = {m for pid in sources if pid in self.reports for m in self.reports[pid].members}
        extra |= {e for e, a in self.acks.items() if a.temporary and a.seq > self.final_seq}
        self.work_members = sorted(set(reach) | (extra & set(self.edges)))
        self.fits = {}
        self.phase = "collect"
        req = FitRequest(plan_id=self.work_id, term=0, roles=list(self.ir.roles), isolated=False)
        out: list[Effect] = [self._emit("manager.plan_started", plan_id=self.work_id, reason=reason, sources=sources,
                                        members=len(reach))]
        out += [Send(e, req) for e in self.work_members]
        self.fit_deadline = now + self.fit_timeout
        out.append(SetTimer("fits", min(self.fit_deadline, now + self.retry_every)))
        return out

    def _on_fit_report(self, msg: FitReport, sender: str, now: float) -> list[Effect]:
        if self.phase != "collect" or msg.plan_id != self.work_id or sender not in self.work_members:
            return []
        self.fits[sender] = msg
        if not self._fits_missing(now):
            return self._negotiate(now)
        return []

    def _fits_missing(self, now: float) -> list[str]:
        """Members of the plan being built that have not reported their fit and are not known down."""
        reach = set(self.reachable(now))
        return [e for e in self.work_members if e not in self.fits and e in reach]

    def _on_fits_timer(self, now: float) -> list[Effect]:
        """Ask the reachable members that have not reported again; at ``fit_timeout`` negotiate with the reporters."""
        missing = self._fits_missing(now)
        if not missing or now + 1e-9 >= self.fit_deadline:
            return self._negotiate(now)
        assert self.ir is not None
        req = FitRequest(plan_id=self.work_id, term=0, roles=list(self.ir.roles), isolated=False)
        return [Send(e, req) for e in missing] + [
            SetTimer("fits", min(self.fit_deadline, now + self.retry_every)),
            self._emit("manager.fit_retry", plan_id=self.work_id, members=missing)]

    def _negotiate(self, now: float) -> list[Effect]:
        assert self.ir is not None
        out: list[Effect] = [CancelTimer("fits")]
        if not self.fits:
            self.phase = "idle"
            self.reconcile_due = now + self.reconcile_wait
            return out + [self._emit("manager.plan_abandoned", plan_id=self.work_id, reason="no fit reports")]
        self.phase = "negotiate"
        # the electorate is who reported; release and commit still go to every node reachable at the start
        self.neg = Negotiation(plan_id=self.work_id, owner=self.address, roles=list(self.ir.roles), fits=dict(self.fits),
                               gov=self.ir.governance, isolated=False, timeout=self.proposal_timeout, prefix="manager",
                               retry_every=self.retry_every)
        return out + self.neg.start(now) + self._check_negotiated(now)

    def _on_answer(self, msg: Answer, sender: str, now: float) -> list[Effect]:
        if self.neg is None or self.phase != "negotiate":
            return []
        return self.neg.on_answer(msg, sender, now) + self._check_negotiated(now)

    def _check_negotiated(self, now: float) -> list[Effect]:
        neg = self.neg
        if neg is None or not neg.done:
            return []
        self.neg = None
        self.work_assignments = [attrs.evolve(a, duration=self.subscription_term) for a in neg.assignments]
        stale = self._stale(now)
        if stale:
            return [CancelTimer(neg.timer_key)] + self._abandon(now, stale)
        return [CancelTimer(neg.timer_key)] + self._release(now)

    def _stale(self, now: float) -> str:
        """Why the plan just negotiated must not be installed ("" if it may): no member of it is reachable (a
        partition began while it was negotiated: the island will form its own plane, and a plan installed over it
        at the heal would take its holders' roles for one made without them), or a reachable node follows a
        temporary plan the plan was not built from."""
        reach = set(self.reachable(now))
        if not reach & set(self.work_members):
            return "no member of the plan is reachable"
        for e in sorted(reach):
            a = self.acks.get(e)
            if (a is not None and a.temporary and a.seq > self.final_seq and a.plan_id not in self.work_sources
                    and not self._settled(a.plan_id, now)):
                return f"{e} follows temporary plan {a.plan_id}"
        return ""

    def _abandon(self, now: float, reason: str, reconcile: bool = True) -> list[Effect]:
        """Drop the plan being built (nothing of it was released or committed) and reconcile again soon (the caller
        does that itself when ``reconcile`` is false: a reconnect seen starts it)."""
        out: list[Effect] = [CancelTimer("fits")]
        if self.neg is not None:
            out.append(CancelTimer(self.neg.timer_key))
            self.neg = None
        self.phase = "idle"
        self.work_assignments = []
        if reconcile:
            self.reconcile_due = now + self.reconcile_wait
        return out + [self._emit("manager.plan_abandoned", plan_id=self.work_id, reason=reason)]

    def _release_msg(self, node: str) -> Release:
        return Release(plan_id=self.work_id, keep=sorted(self._keep().get(node, set())), epoch=self.epoch)

    def _release(self, now: float, members: list[str] | None = None) -> list[Effect]:
        """Break: every member (default: the plan's) and every node that may hold a role it does not keep."""
        self.phase = "release"
        self.released = set()
        self.waiting = set(self.work_members if members is None else members) | set(self._blocking(now))
        self.release_deadline = now + self.release_timeout
        out: list[Effect] = [self._emit("manager.release_sent", plan_id=self.work_id, nodes=len(self.waiting))]
        out += [Send(e, self._release_msg(e)) for e in sorted(self.waiting)]
        return out + self._maybe_commit(now) + self._arm_retry(now)

    def _on_released(self, msg: Released, sender: str, now: float) -> list[Effect]:
        if self.phase != "release" or msg.plan_id != self.work_id:
            return []
        self.waiting.discard(sender)
        self.released.add(sender)
        return self._maybe_commit(now)

    def _maybe_commit(self, now: float) -> list[Effect]:
        """Make, once it is safe: nobody that was told to release is silent before the deadline, and no node
        that has not answered Released may still hold a share of a role it does not keep (its lease is over)."""
        if self.phase != "release" or (self.waiting and now < self.release_deadline) or self._blocking(now):
            return []
        return self._commit(now)

    def _commit_msg(self, node: str, now: float) -> Commit:
        self._record(node, self._plan_keys(self.work_assignments)[node], self.work_id)
        return Commit(plan_id=self.work_id, assignments=list(self.work_assignments), echo=self.echo.get(node),
                      lease=self.lease, source=",".join(self.work_sources), ratified=self.work_ratified,
                      epoch=self.epoch)

    def _commit(self, now: float) -> list[Effect]:
        unreleased = sorted(self.waiting) if self.phase == "release" else []
        self.phase = "commit"
        self.committing = (self.work_id, list(self.work_assignments))  # on disk before any Commit of it leaves
        self.released_at = now
        self.waiting = set(self.work_members) | {a.holder for a in self.work_assignments}
        out: list[Effect] = [self._emit("manager.commit_sent", plan_id=self.work_id, ratified=self.work_ratified,
                                        nodes=len(self.waiting), unreleased=unreleased)]
        return out + [Send(e, self._commit_msg(e, now)) for e in sorted(self.waiting)] + self._arm_retry(now)

    def _on_committed(self, msg: Committed, sender: str, now: float) -> list[Effect]:
        if self.phase != "commit" or msg.plan_id != self.work_id:
            return []
        self.waiting.discard(sender)
        if not self.waiting:
            return self._finish(now, complete=True)
        return []

    def _finish(self, now: float, complete: bool) -> list[Effect]:
        self.phase = "idle"
        self.final_id = self.work_id
        self.final = list(self.work_assignments)
        out: list[Effect] = []
        for a in self.final:
            k = role_key(a.role, a.share, a.shares)
            self.subscriptions[k] = {"role": a.role, "holder": a.holder, "plan_id": self.final_id,
                                     "target": a.target, "since": now}
            out.append(self._emit("manager.subscription", key=k, role=a.role, holder=a.holder, plan_id=self.final_id,
                                  target=a.target))
        for k in [k for k, s in self.subscriptions.items() if s["plan_id"] != self.final_id]:
            del self.subscriptions[k]
        out.append(self._emit("manager.plan_final", plan_id=self.final_id, ratified=self.work_ratified,
                              sources=self.work_sources, reason=self.work_reason, complete=complete,
                              unacked=sorted(self.waiting), assignments=[_adict(a) for a in self.final],
                              took=round(now - self.work_started, 6),
                              since_reconnect=round(now - self.reconnect_first, 6) if self.reconnect_first is not None else None))
        self.waiting = set()
        self.reconnect_first = None
        self.final_seq = self.seq
        self.seq += 1  # every beat from now on (a renewal's answer too) is newer than the plan
        self.settled.update(dict.fromkeys(self.work_sources, now))
        for pid in [pid for pid, at in self.settled.items() if now - at > 4 * self.isolation_after]:
            del self.settled[pid]
        while len(self.settled) > 64:  # the oldest first
            del self.settled[next(iter(self.settled))]
        self.caught = {c for c in self.caught if c[1] in self.settled}
        if self.work_reason == "renewal":
            self.renewed_at = now
        else:
            self.final_at = now
        for pid in self.work_sources:
            self.reports.pop(pid, None)
        return out

    def _on_timer(self, msg: TimerFired, sender: str, now: float) -> list[Effect]:
        if msg.key == "fits" and self.phase == "collect":
            return self._on_fits_timer(now)
        if msg.key == "retry":
            self.retry_at = None
            return self._resend(now)
        if self.neg is not None and msg.key == self.neg.timer_key:
            return self.neg.on_timeout(now) + self._check_negotiated(now)
        return []

    def _resend(self, now: float) -> list[Effect]:
        """Release and Commit go out again every ``retry_every`` (and on each tick) to the nodes that have not
        answered; the commit is tried again as soon as the last blocking lease may be over."""
        out: list[Effect] = []
        if self.phase == "release":
            out += self._maybe_commit(now)
            if self.phase == "release":
                self.waiting |= set(self._blocking(now)) - self.released
                out += [Send(e, self._release_msg(e)) for e in sorted(self.waiting)]
        elif self.phase == "commit":
            out += [Send(e, self._commit_msg(e, now)) for e in sorted(self.waiting)]
            if now - self.released_at > self.release_timeout + self.handover_bound:
                out += self._finish(now, complete=False)
        return out + self._arm_retry(now)

    def _arm_retry(self, now: float) -> list[Effect]:
        if self.phase not in ("release", "commit") or self.retry_at is not None:
            return []
        self.retry_at = now + self.retry_every
        return [SetTimer("retry", self.retry_at)]


_HANDLERS = {
    HeartbeatAck: DeploymentManager._on_ack,
    PlanReport: DeploymentManager._on_plan_report,
    ReporterRecord: DeploymentManager._on_record,
    FitReport: DeploymentManager._on_fit_report,
    Answer: DeploymentManager._on_answer,
    Released: DeploymentManager._on_released,
    Committed: DeploymentManager._on_committed,
    TimerFired: DeploymentManager._on_timer,
}
