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
* **Assign while connected.** A *final* plan ``F{n}@{manager}`` is built
  from the connected role set: :class:`FitRequest` to the reachable nodes,
  then a :class:`Negotiation` under the connected governance rule (by default
  the assignee's assent only).
* **Install a final plan: break, then make.** Every node reachable when the
  plan was started, and every member of a temporary plan it replaces (even
  one whose ack was lost), is told
  :class:`Release` (give up every role except those it keeps in the new plan)
  and answers :class:`Released`; only when all have (or after
  ``release_timeout``, retried each tick meanwhile) does the manager send
  :class:`Commit`; nodes answer :class:`Committed`. So a role never has two
  holders, and is without one only for the release round trip (bounded by
  ``handover_bound``, which the checker judges). The subscription repository
  (role share -> holder, plan, target, since) is updated at commit.
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
  no other reachable node holds a role, and the reporter recorded no failed
  validation. Otherwise the manager **replaces** it: a fresh final plan from
  the connected role set, installed break-then-make.
* **Performance history.** Every reporter's metric bundle is appended to the
  performance history (``manager.metrics``).

Events: ``manager.deployed``, ``manager.plan_started``, ``manager.proposal``,
``manager.assent``, ``manager.metrics_lowered``, ``manager.role_split``,
``manager.role_unfilled``, ``manager.reconnect_seen``,
``manager.plan_report``, ``manager.metrics``, ``manager.ratified``,
``manager.replaced``, ``manager.release_sent``, ``manager.commit_sent``,
``manager.plan_final``, ``manager.subscription``.
"""

from __future__ import annotations

import random
from typing import Any

from protocols.core import CancelTimer, Effect, Emit, Send, SetTimer, TimerFired
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
    ) -> None:
        self.address = address
        self.node = address.partition("/")[0]
        self.edges = sorted(edges)
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
        self.neg: Negotiation | None = None
        self.work_assignments: list[Assignment] = []
        self.waiting: set[str] = set()
        self.release_deadline = 0.0
        self.released_at = 0.0
        self.reconcile_due: float | None = None
        self.reconnect_first: float | None = None
        self.final_seq = 0
        self.final_at = 0.0

    # -- helpers -------------------------------------------------------------------------------

    def _emit(self, event_kind: str, /, **fields: Any) -> Emit:
        return Emit(event_kind, fields)

    def reachable(self, now: float) -> list[str]:
        return [e for e in self.edges if now - self.last_ack.get(e, -1e18) <= self.isolation_after]

    # -- the sans-I/O entry points ------------------------------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        out: list[Effect] = []
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
        hb = Heartbeat(epoch=self.epoch, seq=self.seq, lease_until=now + self.isolation_after, plan_id=self.final_id)
        out += [Send(e, hb) for e in self.edges]
        if self.phase == "idle" and self.reconcile_due is None and self._gaps(now):
            self.reconcile_due = now
        if self.reconcile_due is not None and now >= self.reconcile_due and self.phase == "idle":
            self.reconcile_due = None
            out += self._reconcile(now)
        if self.phase == "release":
            if now >= self.release_deadline:
                out += self._commit(now)
            else:
                rel = self._release_msgs()
                out += [Send(e, rel[e]) for e in sorted(self.waiting)]
        elif self.phase == "commit":
            c = self._commit_msg(now)
            out += [Send(e, c) for e in sorted(self.waiting)]
            if now - self.released_at > self.release_timeout + self.handover_bound:
                out += self._finish(now, complete=False)
        return out

    def handle(self, msg: Any, sender: str, now: float) -> list[Effect]:
        h = _HANDLERS.get(type(msg))
        if h is None:
            return [self._emit("manager.ignored", what=type(msg).__name__, sender=sender)]
        return h(self, msg, sender, now)

    # -- acks and reconnects ---------------------------------------------------------------------------

    def _on_ack(self, msg: HeartbeatAck, sender: str, now: float) -> list[Effect]:
        if sender not in self.edges or msg.epoch != self.epoch:
            return []
        out: list[Effect] = []
        was = now - self.last_ack.get(sender, -1e18) <= self.isolation_after
        self.last_ack[sender] = now
        self.acks[sender] = msg
        if msg.seq <= self.final_seq:
            return out  # an ack sent before the final plan was committed says nothing new
        stray = msg.temporary or (msg.plan_id and msg.plan_id != self.final_id and self.phase == "idle")
        if stray and self.phase == "idle":
            if self.reconcile_due is None:
                self.reconcile_due = now + self.reconcile_wait
                if self.reconnect_first is None:
                    self.reconnect_first = now
                out.append(self._emit("manager.reconnect_seen", node=sender, plan_id=msg.plan_id,
                                      temporary=msg.temporary, leader=msg.leader, term=msg.term))
        elif not was and self.final_id and self.phase == "idle" and not msg.holding and self.ir is not None:
            pass  # a node back with nothing: it simply joins the reachable set
        return out

    def _on_plan_report(self, msg: PlanReport, sender: str, now: float) -> list[Effect]:
        self.reports[msg.plan_id] = msg
        return [self._emit("manager.plan_report", plan_id=msg.plan_id, term=msg.term, leader=msg.leader,
                           members=len(msg.members), assignments=[_adict(a) for a in msg.assignments],
                           lowered=dict(msg.lowered), splits=dict(msg.splits), unfilled=list(msg.unfilled))]

    def _on_record(self, msg: ReporterRecord, sender: str, now: float) -> list[Effect]:
        self.records[msg.plan_id] = msg
        bundle = {"plan_id": msg.plan_id, "reporter": msg.reporter, "time": now, **msg.metrics}
        self.history.append(bundle)
        return [self._emit("manager.metrics", **bundle, entries=len(msg.entries))]

    def _reconcile(self, now: float) -> list[Effect]:
        """Decide between ratifying the temporary plan and replacing it (or make the first plan)."""
        assert self.ir is not None
        reach = self.reachable(now)
        if not reach:
            self.reconcile_due = now + self.reconcile_wait
            return []
        fresh = {e: self.acks[e] for e in reach if e in self.acks and self.acks[e].seq > self.final_seq}
        temp = sorted({a.plan_id for a in fresh.values() if a.temporary})
        if not temp:
            if not self.final_id:
                return self._start_plan(now, "initial", [], reach)
            gaps = self._gaps(now)
            stray = sorted({a.plan_id for a in fresh.values() if a.plan_id not in ("", self.final_id)})
            if not gaps and not stray:
                self.reconnect_first = None
                return []
            return self._start_plan(now, f"holders lost: {gaps[:3]}" if gaps else f"stray plans {stray}", stray, reach)
        why = self._ratifiable(temp, reach)
        if why is None:
            return self._ratify(now, self.reports[temp[0]])
        out: list[Effect] = [self._emit("manager.replaced", sources=temp, reason=why,
                                        since_reconnect=round(now - (self.reconnect_first or now), 6))]
        return out + self._start_plan(now, f"replace: {why}", temp, reach)

    def _gaps(self, now: float) -> list[str]:
        """Role shares of the final plan in force whose holder is gone or no longer holds them."""
        if not self.final_id or now - self.final_at < self.isolation_after:
            return []
        reach = set(self.reachable(now))
        if not reach:
            return []
        out = []
        for a in self.final:
            k = role_key(a.role, a.share, a.shares)
            ack = self.acks.get(a.holder)
            if a.holder not in reach or ack is None or (ack.seq > self.final_seq and k not in ack.holding):
                out.append(k)
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

    def _ratify(self, now: float, rep: PlanReport) -> list[Effect]:
        assert self.ir is not None
        self.plans += 1
        self.work_id = f"F{self.plans}@{self.node}"
        self.work_sources = [rep.plan_id]
        self.work_ratified = True
        self.work_reason = "ratified"
        self.work_started = now
        self.work_members = self.reachable(now)
        self.work_assignments = []
        for r in self.ir.roles:
            a = next(a for a in rep.assignments if a.role == r.name)
            self.work_assignments.append(Assignment(role=r.name, holder=a.holder, target=r.target, share=a.share,
                                                    shares=a.shares, kind="service", min_ratio=a.min_ratio))
        out: list[Effect] = [self._emit("manager.ratified", plan_id=self.work_id, source=rep.plan_id,
                                        since_reconnect=round(now - (self.reconnect_first or now), 6),
                                        assignments=[_adict(a) for a in self.work_assignments])]
        # nothing moves: every holder keeps its share, so no release round is needed
        self.released_at = now
        return out + self._commit(now)

    # -- building a final plan ------------------------------------------------------------------------

    def _start_plan(self, now: float, reason: str, sources: list[str], reach: list[str]) -> list[Effect]:
        assert self.ir is not None
        self.plans += 1
        self.work_id = f"F{self.plans}@{self.node}"
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
        out.append(SetTimer("fits", now + self.fit_timeout))
        return out

    def _on_fit_report(self, msg: FitReport, sender: str, now: float) -> list[Effect]:
        if self.phase != "collect" or msg.plan_id != self.work_id or sender not in self.work_members:
            return []
        self.fits[sender] = msg
        if set(self.work_members) <= set(self.fits):
            return self._negotiate(now)
        return []

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
                               gov=self.ir.governance, isolated=False, timeout=self.proposal_timeout, prefix="manager")
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
        self.work_assignments = list(neg.assignments)
        return [CancelTimer(neg.timer_key)] + self._release(now)

    def _release_msgs(self) -> dict[str, Release]:
        keep: dict[str, list[str]] = {e: [] for e in self.work_members}
        for a in self.work_assignments:
            k = role_key(a.role, a.share, a.shares)
            held = self.acks.get(a.holder)
            if held is not None and k in held.holding and a.holder in keep:
                keep[a.holder].append(k)
        return {e: Release(plan_id=self.work_id, keep=sorted(ks)) for e, ks in keep.items()}

    def _release(self, now: float) -> list[Effect]:
        self.phase = "release"
        rel = self._release_msgs()
        self.waiting = set(rel)
        self.release_deadline = now + self.release_timeout
        out: list[Effect] = [self._emit("manager.release_sent", plan_id=self.work_id, nodes=len(rel))]
        return out + [Send(e, m) for e, m in sorted(rel.items())]

    def _on_released(self, msg: Released, sender: str, now: float) -> list[Effect]:
        if self.phase != "release" or msg.plan_id != self.work_id:
            return []
        self.waiting.discard(sender)
        if not self.waiting:
            return self._commit(now)
        return []

    def _commit_msg(self, now: float) -> Commit:
        return Commit(plan_id=self.work_id, assignments=list(self.work_assignments),
                      lease_until=now + self.isolation_after, source=",".join(self.work_sources),
                      ratified=self.work_ratified)

    def _commit(self, now: float) -> list[Effect]:
        unreleased = sorted(self.waiting) if self.phase == "release" else []
        self.phase = "commit"
        self.released_at = now
        self.waiting = set(self.work_members) | {a.holder for a in self.work_assignments}
        c = self._commit_msg(now)
        out: list[Effect] = [self._emit("manager.commit_sent", plan_id=self.work_id, ratified=self.work_ratified,
                                        nodes=len(self.waiting), unreleased=unreleased)]
        return out + [Send(e, c) for e in sorted(self.waiting)]

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
        self.final_at = now
        for pid in self.work_sources:
            self.reports.pop(pid, None)
        return out

    def _on_timer(self, msg: TimerFired, sender: str, now: float) -> list[Effect]:
        if msg.key == "fits" and self.phase == "collect":
            return self._negotiate(now)
        if self.neg is not None and msg.key == self.neg.timer_key:
            return self.neg.on_timeout(now) + self._check_negotiated(now)
        return []


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
