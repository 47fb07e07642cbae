"""The dependency manager: the graph from agents' reports, the startup plan, deadlocks and remediation.

How this works
--------------
A :class:`Manager` (a pure state machine, ticked every ``tick_interval``):

* **Graph.** Agents' :class:`Report` s give each asset's services, their
  dependencies, failure domain and region; :class:`Override` s from operators
  change or remove a dependency (logged with who). The graph is a
  :class:`~protocols.deps.graph.DepGraph`; states and ``waiting-on`` lists come
  from :class:`Report` and :class:`Status` (newest incarnation and sequence per
  asset win).
* **Plan.** Once every agent in ``agents`` has reported (or
  ``gather_timeout`` has passed) it computes the plan
  (:func:`~protocols.deps.graph.plan`; ``deps.plan`` and one ``deps.problem``
  per problem go to the log) and again whenever the graph or the active
  conditions change. It carries the plan out step by step: a step is sent
  (:class:`Act` to the owning agent, ``deps.dispatch``) once the steps it waits
  for are done, and only to a service that is down or failed (a service
  that is starting or waiting on its own is left to the deadlock detector);
  a step whose service still shows no progress ``act_timeout`` later (the
  Act or the status answering it was lost) is sent again with the same
  ``ref``, which the agent carries out once. The waves are the plan's display; sending by readiness makes the
  makespan the critical path. A service that goes down later (an asset
  restarted) is started again the same way.
* **Deadlocks.** The wait-for graph has an edge ``s -> d`` for every
  service ``s`` waiting on ``d``. A strongly connected group of waiting
  services that persists for ``confirm_after`` seconds is a deadlock
  (``deps.deadlock_detected``, with the waits). Detection bound: the status
  delivery latency + ``confirm_after`` + one ``tick_interval``. Remediation
  (``remediate``): the group's remedial workflow by the planner's rules: its
  bootstrap members are restarted in bootstrap mode without waiting on their
  in-group dependencies, and each is restarted fully once every other member is
  up; a group no rule can break becomes a ticket (``deps.ticket``). Afterwards
  the manager checks the group is up within ``verify_after``
  (``deps.deadlock_resolved`` or ``deps.remediation_failed``) and watches its
  services for ``watch_for`` seconds (``deps.watch_alert`` if one drops).
* **Detected conditions** (``detect_after`` > 0): besides an operator's
  :class:`Condition`, the manager detects ``region R down`` - it has heard
  nothing from any asset of region R for ``detect_after`` seconds while it
  still hears assets outside R (so a manager cut off from everyone detects
  nothing) - and ``region R isolated`` - for ``detect_after`` seconds, every
  asset of R it hears reports (``Report.unreachable``) every agent outside R
  silent (a stalled process's one late report is not enough). A detected condition
  is set only if the graph or an armed conditional remediation names it, and
  ends only on evidence (an asset of R heard again; an agent of R hearing one
  outside R again), never because the manager lacks news (e.g. right after its
  own restart). ``deps.condition`` says ``who: detected``. An operator's word
  on a condition wins over detection from then on. Detection bound for
  ``down``: ``detect_after`` + one ``tick_interval`` after the region's last
  message; for ``isolated``: the agents' ``silent_after`` + their
  ``report_every`` + delivery + ``detect_after`` + one tick.
* **Remediation timing** (:class:`Remediate` from an operator or the
  ``remediations`` parameter): ``immediate``; ``opportunistic`` - when the
  service's asset reboots or powers down for another reason, opens a
  maintenance window (:class:`AssetEvent`) or comes back as a new incarnation,
  or at the deadline; ``conditional`` - when the named :class:`Condition`
  starts to hold. For every cycle that appears only under a named condition
  the manager arms a conditional remediation itself: the condition's remedial
  workflow's bootstrap members restart in bootstrap mode when it starts to
  hold and fully when it stops.

Restarts and durable state (``durable=``, from a host with a store): every
start is a new incarnation. What the agents cannot tell a new incarnation
again is persisted (:class:`~protocols.core.Persist`) before the sends that
depend on it: the incarnations so far and the deadlock counter (``meta``),
the conditions in force (``conditions``), every override (``ov/<service,on>``),
every armed or fired remediation (``r/<id>``), every deadlock still being
remediated or watched (``d/<id>``), every order in flight (``s/<step>``: its
ref, None once done) and the tickets filed (``tickets``). A manager built from
that record applies the overrides and conditions at once, keeps the
remediations and deadlock records where they were, and sends an order still
in flight again with the same ref (the agent carries a ref out once), never
as a new order; the graph and the services' states are not persisted: the
agents' periodic reports give them again, and the new incarnation replans
from them (a step is sent only to a service that is down or failed, so
nothing an earlier incarnation did is undone or repeated). The topology's
``overrides`` and ``remediations`` are applied on the first start only (after
that they are in the record). Without a store (``durable=None``) nothing is
persisted and a restart forgets operators' decisions.

Bounds: at most ``MAX_ASSETS`` assets, ``MAX_REMEDIATIONS`` armed
remediations, ``MAX_DEADLOCKS`` deadlock records, ``MAX_OVERRIDES``
overridden dependencies and ``MAX_CONDITIONS`` conditions in force (operators
reach the manager from client nodes: each table they can grow is bounded);
bad input is counted (``rejected``) and logged.
"""

from __future__ import annotations

import json
import random
from typing import Any

import networkx as nx

from protocols.core import Effect, Emit, Persist, Send, TimerFired
from protocols.deps.graph import DepGraph, Dependency, Plan, Service, Ticket, Workflow, plan, problems, \
    remedial_workflow
from protocols.deps.messages import ACTIONS, Ack, Act, AssetEvent, Condition, Override, Query, Remediate, Report, \
    Status, View

__all__ = ["Manager", "MAX_ASSETS", "MAX_CONDITIONS", "MAX_OVERRIDES", "MAX_REMEDIATIONS"]

MAX_ASSETS = 10_000
MAX_REMEDIATIONS = 1_000
MAX_OVERRIDES = 10_000  # (service, on) pairs an operator has overridden
MAX_CONDITIONS = 1_000  # named conditions in force, and ones an operator has spoken of
MAX_DEADLOCKS = 1_000  # deadlock records kept (finished ones are forgotten first)
UPISH = ("up", "bootstrap")
MAX_INCARNATIONS = 16  # earlier incarnations named in the record
FINISHED = ("closed", "failed", "ticket")  # deadlock records no longer followed (not persisted)


class Manager:
    """The dependency manager (see the module docstring)."""

    def __init__(self, agents: list[str], gather_timeout: float = 3.0, act_timeout: float = 1.0,
                 confirm_after: float = 0.5, verify_after: float = 30.0, watch_for: float = 10.0,
                 remediate: bool = True, execute: bool = True, conditions: list[str] | None = None,
                 remediations: list[dict] | None = None, overrides: list[dict] | None = None,
                 tick_interval: float = 0.1, detect_after: float = 0.0, address: str = "",
                 rng: random.Random | None = None, durable: dict | None = None):
        if min(gather_timeout, act_timeout, verify_after, tick_interval) <= 0 or confirm_after < 0 or watch_for < 0 \
                or detect_after < 0:
            raise ValueError("timeouts must be > 0 (confirm_after, watch_for, detect_after >= 0)")
        self.detect_after = detect_after
        self.heard: dict[str, float] = {}  # asset -> when a fresh message of it last arrived
        self.unreachable: dict[str, set[str]] = {}  # asset -> peer agents (addresses) its last report said silent
        self.detected: set[str] = set()  # conditions in force because the manager detected them
        self.manual: set[str] = set()  # conditions an operator set or ended: detection leaves them alone
        self.evidence_since: dict[str, float] = {}  # condition -> since when the evidence says it holds
        self._named: set[str] = set()
        self._named_at = -1
        self.agents = list(agents)
        self.gather_timeout, self.act_timeout, self.confirm_after = gather_timeout, act_timeout, confirm_after
        self.verify_after, self.watch_for = verify_after, watch_for
        self.remediate, self.execute = remediate, execute
        self.tick_interval = tick_interval
        self.address = address
        rng = rng if rng is not None else random.Random(0)
        self.incarnation = rng.getrandbits(48)
        self.graph = DepGraph()
        self.active: set[str] = set(conditions or [])
        self.assets: dict[str, dict] = {}  # asset -> {"address", "inc", "seq", "sig"}
        self.old_incarnations: dict[str, set[int]] = {}
        self.owner: dict[str, str] = {}  # service -> asset
        self.states: dict[str, str] = {}
        self.waiting: dict[str, tuple[str, ...]] = {}
        self.plan: Plan | None = None
        self.wf_of: dict[str, Workflow] = {}
        self.plan_key: tuple | None = None
        self.order: list[str] = []
        self.step_wave: dict[str, int] = {}
        self.sent: dict[str, tuple[float, str]] = {}  # step id -> (when its Act went out, the Act's ref)
        self.acts = 0
        self.up_at: dict[str, float] = {}  # service -> when it last came fully up
        self.started_at: float | None = None
        self.all_up = False
        self.suspects: dict[frozenset, float] = {}
        self.reported: dict[frozenset, tuple[float, str]] = {}  # cycle of waits -> (since, deadlock id)
        self.deadlocks: dict[str, dict] = {}
        self.dl_count = 0
        self.under_remediation: set[str] = set()
        self.remediations: dict[str, dict] = {}
        self.rejected = 0
        self._pending_overrides = list(overrides or [])
        self._pending_remediations = list(remediations or [])
        self._announced_tickets: set[str] = set()
        self.overrides: dict[str, dict] = {}  # "ov/[service, on]" -> the override in force for that pair
        self.previous: list[int] = []  # earlier incarnations, oldest first
        self._dirty: set[str] = set()  # durable keys changed since the last Persist
        self.persistent = durable is not None  # a host with a store passes its record ({} on a blank disk)
        self.restored = self._restore(durable) if durable else None

    # -- input -----------------------------------------------------------------------
    def _fresh(self, asset: str, inc: int, seq: int, sender: str, now: float = 0.0) -> tuple[bool, bool]:
        """(apply it, a new incarnation of a known asset)."""
        ok, reborn = self._fresh1(asset, inc, seq, sender)
        if ok:
            self.heard[asset] = now
        return ok, reborn

    def _fresh1(self, asset: str, inc: int, seq: int, sender: str) -> tuple[bool, bool]:
        old = self.old_incarnations.setdefault(asset, set())
        if inc in old:
            return False, False
        a = self.assets.get(asset)
        if a is None:
            if len(self.assets) >= MAX_ASSETS:
                self.rejected += 1
                return False, False
            self.assets[asset] = {"address": sender, "inc": inc, "seq": seq, "sig": None}
            return True, False
        if a["inc"] != inc:
            if len(old) < 64:
                old.add(a["inc"])
            a.update(inc=inc, seq=seq, address=sender)
            return True, True
        if seq <= a["seq"]:
            return False, False
        a["seq"] = seq
        a["address"] = sender
        return True, False

    def _set_state(self, service: str, state: str, waiting: list[str] | tuple[str, ...], now: float) -> None:
        before = self.states.get(service)
        self.states[service] = state
        if state == "waiting" and waiting:
            self.waiting[service] = tuple(waiting)
        else:
            self.waiting.pop(service, None)
        if state == "up" and before != "up":
            self.up_at[service] = now

    def _report(self, r: Report, sender: str, now: float) -> list[Effect]:
        ok, reborn = self._fresh(r.asset, r.incarnation, r.seq, sender, now)
        if not ok:
            return []
        out: list[Effect] = []
        a = self.assets[r.asset]
        a["region"] = r.region
        self.unreachable[r.asset] = set(r.unreachable[:MAX_ASSETS])
        sig = (r.failure_domain, r.region, tuple(r.services))
        if a["sig"] != sig:
            a["sig"] = sig
            for info in r.services:
                other = self.owner.get(info.name)
                if other is not None and other != r.asset and other in self.assets:
                    self.rejected += 1
                    out.append(Emit("deps.bad_input", {"what": f"service {info.name!r} reported by {r.asset} "
                                                               f"but it runs on {other}: ignored"}))
                    continue
                svc = Service(info.name, asset=r.asset, failure_domain=r.failure_domain, region=r.region,
                              bootstrap=info.bootstrap, priority=info.priority, start_time=info.start_time,
                              functions=tuple(info.functions), restarted_by=tuple(info.restarted_by))
                use = info.uses
                deps = [Dependency(info.name, d, "hard", function=use.get(d, "")) for d in info.hard]
                deps += [Dependency(info.name, d, "conditional", c, use.get(d, ""))
                         for d, c in info.conditional.items()]
                deps += [Dependency(info.name, d, "order", function=use.get(d, ""))
                         for d in info.order if d not in info.hard]
                self.graph.report(svc, [d for d in deps if d.on != info.name])
                self.owner[info.name] = r.asset
            out.append(Emit("deps.graph", {"asset": r.asset, "services": [i.name for i in r.services],
                                           "version": self.graph.version}))
        for name, state in r.states.items():
            if self.owner.get(name) == r.asset:
                self._set_state(name, state, r.waiting.get(name, ()), now)
        return (self._reborn(r.asset, now) if reborn else []) + out

    def _reborn(self, asset: str, now: float) -> list[Effect]:
        """A new incarnation of ``asset``: what was sent to the old one is lost; send again when ready."""
        mine = {s for s, a in self.owner.items() if a == asset}
        for sid in [sid for sid in self.sent if sid.split(":", 1)[1] in mine]:
            del self.sent[sid]
            self._dirty.add("s/" + sid)
        return [Emit("deps.asset_restarted", {"asset": asset})] + self._opportunity(asset, "asset-restarted", now)

    # -- planning ----------------------------------------------------------------------
    def _replan(self, now: float, why: str) -> list[Effect]:
        key = (self.graph.version, tuple(sorted(self.active)))
        if key == self.plan_key:
            return []
        self.plan_key = key
        p = plan(self.graph, self.active)
        self.plan = p
        for sid in [sid for sid in self.sent if sid not in p.steps]:  # an order of a plan no longer in force
            del self.sent[sid]
            self._dirty.add("s/" + sid)
        sg = nx.DiGraph()
        sg.add_nodes_from(p.steps)
        sg.add_edges_from((a, s.id) for s in p.steps.values() for a in s.after)
        self.order = list(nx.lexicographical_topological_sort(sg))
        self.wf_of = {m: w for w in p.workflows for m in w.members}
        self.step_wave = {sid: i for i, w in enumerate(p.step_waves()) for sid in w}
        probs = problems(self.graph, p)
        out: list[Effect] = [Emit("deps.plan", {
            "why": why, "conditions": sorted(self.active), "waves": p.waves,
            "workflows": [w.to_json() for w in p.workflows], "tickets": [t.to_json() for t in p.tickets],
            "critical_path": p.critical_path, "makespan": p.makespan, "blocked": p.blocked,
            "hard": {s: sorted(d for _, d, k in self.graph.graph(self.active).out_edges(s, data="kind")
                               if k == "hard") for s in self.graph.services},
            "steps": len(p.steps)})]
        for pr in probs:
            out.append(Emit("deps.problem", pr.to_json()))
            if pr.kind in ("domain-risk", "region-risk"):  # placement is an operator's work: a ticket
                tid = f"ticket:placement:{pr.where}:{pr.services[0]}"
                if tid not in self._announced_tickets:
                    self._announced_tickets.add(tid)
                    self._dirty.add("tickets")
                    out.append(Emit("deps.ticket", {"id": tid, "members": list(pr.services), "reason": pr.detail,
                                                    "cause": pr.kind}))
        for d in self.graph.dependencies():  # an agent waits for these forever: nobody runs them
            if d.kind == "hard" and d.on not in self.graph.services and d.service in self.graph.services:
                out.append(Emit("deps.problem", {"kind": "missing-dependency", "services": [d.service, d.on],
                                                 "detail": f"{d.service} hard-depends on {d.on}, which no agent "
                                                           f"reports: it will wait for it", "where": ""}))
        for t in p.tickets:
            if t.id not in self._announced_tickets:
                self._announced_tickets.add(t.id)
                self._dirty.add("tickets")
                out.append(Emit("deps.ticket", {"id": t.id, "members": list(t.members), "reason": t.reason,
                                                "blocked": list(t.blocked), "cause": "plan"}))
        out += self._arm_conditional(now)
        return out

    def _arm_conditional(self, now: float) -> list[Effect]:
        """A conditional remediation per cycle that only a named condition closes."""
        out: list[Effect] = []
        base_groups = {frozenset(ms) for ms in (self.plan.groups.values() if self.plan else ())}
        base_boot = {b for w in (self.plan.workflows if self.plan else ()) for b in w.bootstrap}
        for c in self.graph.conditions():
            if c in self.active:
                continue
            pc = plan(self.graph, [c])
            for w in pc.workflows:
                if frozenset(w.members) in base_groups or not w.bootstrap:
                    continue
                for b in w.bootstrap:
                    if b in base_boot:
                        continue  # the plan in force already starts it in bootstrap mode when needed
                    rid = f"cond:{c}:{b}"
                    if rid in self.remediations or len(self.remediations) >= MAX_REMEDIATIONS:
                        continue
                    skip = sorted(d for s, d in w.waived if s == b)
                    self.remediations[rid] = {"id": rid, "action": "restart-bootstrap", "service": b, "skip": skip,
                                              "when": "conditional", "condition": c, "deadline_at": None,
                                              "state": "armed", "release": "restart", "who": "manager"}
                    self._dirty.add("r/" + rid)
                    out.append(Emit("deps.remediation_armed", {"id": rid, "action": "restart-bootstrap",
                                                               "service": b, "when": "conditional", "condition": c,
                                                               "skip": skip, "who": "manager",
                                                               "group": list(w.members)}))
        return out

    # -- carrying the plan out ---------------------------------------------------------
    def _done(self, sid: str) -> bool:
        st = self.plan.steps[sid]
        state = self.states.get(st.service)
        if st.action in ("start", "start-bootstrap"):
            # a service being restarted by a later step of the plan has had its first start
            return state in UPISH or (f"restart:{st.service}" in self.sent and state in ("down", "starting", "waiting"))
        if state != "up":
            return False
        w = self.wf_of.get(st.service)
        if w is None or st.service in w.bootstrap:
            return True  # a bootstrap member is done once fully up (however it got there)
        # a dependent of deferred conditional edges: (re)started after each of those came fully up
        mine = self.up_at.get(st.service, 0.0)
        return all(mine >= self.up_at.get(v, float("inf")) for u, v, k in w.deferred if u == st.service
                   and k == "conditional")

    def _act(self, service: str, action: str, skip: list[str], ref: str) -> list[Effect]:
        asset = self.owner.get(service)
        a = self.assets.get(asset or "")
        if a is None:
            return [Emit("deps.unreachable", {"service": service, "action": action, "ref": ref})]
        return [Send(a["address"], Act(action, service, list(skip), ref))]

    def _dispatch(self, now: float) -> list[Effect]:
        p = self.plan
        out: list[Effect] = []
        waived = {}
        for w in p.workflows:
            for s, d in w.waived:
                waived.setdefault(s, []).append(d)
        held = {r["service"] for r in self.remediations.values()
                if r["when"] == "conditional" and r["release"] and r["state"] in ("fired", "done")}
        for sid in self.order:
            st = p.steps[sid]
            if self._done(sid):
                if self.sent.pop(sid, None) is not None:  # a later need of this step is a new action with a new id
                    self._dirty.add("s/" + sid)
                continue
            if st.service in self.under_remediation or st.service in held:
                continue
            if any(not self._done(a) for a in st.after):
                continue
            state = self.states.get(st.service, "down")
            if st.action in ("start", "start-bootstrap"):
                if state not in ("down", "failed"):
                    continue
            elif state not in UPISH:
                continue
            last = self.sent.get(sid)
            if last is not None and now - last[0] < self.act_timeout:
                continue
            self.acts += 1
            ref = last[1] if last is not None else f"{sid}#{self.incarnation}.{self.acts}"
            self.sent[sid] = (now, ref)
            if last is None or last[1] != ref:
                self._dirty.add("s/" + sid)
            skip = sorted(waived.get(st.service, [])) if st.action == "start-bootstrap" else []
            out.append(Emit("deps.dispatch", {"step": sid, "action": st.action, "service": st.service,
                                              "skip": skip, "wave": self.step_wave.get(sid, 0),
                                              "resend": last is not None, "ref": ref}))
            out += self._act(st.service, st.action, skip, ref)
        return out

    def _check_all_up(self, now: float) -> list[Effect]:
        p = self.plan
        svcs = [s for s in self.graph.services if s not in p.blocked]
        up = all(self.states.get(s) == "up" for s in svcs) and bool(svcs)
        if up and not self.all_up:
            self.all_up = True
            return [Emit("deps.all_up", {"services": len(svcs), "after": round(now - (self.started_at or 0.0), 6),
                                         "blocked": p.blocked})]
        if not up and self.all_up:
            self.all_up = False
        return []

    # -- deadlocks -----------------------------------------------------------------------
    def _detect(self, now: float) -> list[Effect]:
        wf = nx.DiGraph()
        for s, ds in self.waiting.items():
            for d in ds:
                if self.states.get(d) == "waiting":
                    wf.add_edge(s, d)
        groups = [frozenset(c) for c in nx.strongly_connected_components(wf) if len(c) > 1]
        self.suspects = {g: self.suspects.get(g, now) for g in groups}
        self.reported = {g: r for g, r in self.reported.items() if self.suspects.get(g) == r[0]}  # gone: forget
        out: list[Effect] = []
        for g, since in self.suspects.items():
            if now - since < self.confirm_after:
                continue
            if any(g <= frozenset(d["members"]) for d in self.deadlocks.values() if d["state"] == "remediating"):
                continue
            seen = self.reported.get(g)
            if seen is not None and seen[0] == since and self.deadlocks.get(seen[1], {}).get("state") in \
                    ("detected", "ticket", "remediating", "watching"):
                continue  # this very cycle of waits is reported already (a ticket, or no remedy); a failed
                # remediation is tried again
            self.dl_count += 1
            did = f"deadlock-{self.dl_count}"
            if len(self.deadlocks) >= MAX_DEADLOCKS:  # forget the oldest finished records
                for old in [k for k, d in self.deadlocks.items() if d["state"] in FINISHED]:
                    del self.deadlocks[old]
                    if len(self.deadlocks) < MAX_DEADLOCKS // 2:
                        break
            waits = sorted([s, d] for s, d in wf.subgraph(g).edges)
            cycle = next(iter(nx.simple_cycles(wf.subgraph(g))), [])
            self.reported[g] = (since, did)
            rec = {"id": did, "members": sorted(g), "waits": waits, "since": since, "detected": now,
                   "state": "detected", "bootstrap": [], "full_sent": {}}
            self.deadlocks[did] = rec
            self._dirty |= {"meta", "d/" + did}
            out.append(Emit("deps.deadlock_detected", {"id": did, "members": sorted(g), "waits": waits,
                                                       "cycle": cycle, "since": round(since, 6),
                                                       "after": round(now - since, 6)}))
            if self.remediate:
                out += self._remediate_deadlock(rec, now)
        return out

    def _remediate_deadlock(self, rec: dict, now: float) -> list[Effect]:
        r = remedial_workflow(self.graph, rec["members"], self.active)
        self._dirty.add("d/" + rec["id"])
        if isinstance(r, Ticket) or not r.bootstrap:
            rec["state"] = "ticket"
            reason = r.reason if isinstance(r, Ticket) else "no bootstrap member: the waits are on hard dependencies"
            return [Emit("deps.ticket", {"id": f"ticket:{rec['id']}", "members": rec["members"], "reason": reason,
                                         "cause": rec["id"]})]
        rec["state"] = "remediating"
        rec["bootstrap"] = list(r.bootstrap)
        rec["waived"] = [list(e) for e in r.waived]
        rec["boot_sent"] = now
        self.under_remediation |= set(rec["members"])
        out: list[Effect] = [Emit("deps.remediation", {"id": rec["id"], "rule": r.rule, "bootstrap": list(r.bootstrap),
                                                       "waived": [list(e) for e in r.waived],
                                                       "explanation": r.explanation})]
        for b in r.bootstrap:
            skip = sorted(d for s, d in r.waived if s == b)
            out += self._act(b, "restart-bootstrap", skip, rec["id"] + ":bootstrap")
        return out

    def _follow_deadlocks(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        for rec in self.deadlocks.values():
            if rec["state"] == "remediating":
                members = rec["members"]
                resend = now - rec.get("boot_sent", now) >= self.act_timeout
                for b in rec["bootstrap"]:
                    state = self.states.get(b)
                    others_up = all(self.states.get(m) in UPISH for m in members if m != b)
                    sent = rec["full_sent"].get(b)
                    if others_up and state == "bootstrap" and (sent is None or now - sent >= self.act_timeout):
                        # the full restart (again, with the same ref, if its effect was not seen: lost)
                        rec["full_sent"][b] = now
                        self._dirty.add("d/" + rec["id"])
                        out += self._act(b, "restart", [], rec["id"] + ":full")
                    elif sent is None and resend and (state in ("down", "failed") or (
                            state == "waiting" and set(self.waiting.get(b, ())) & set(members))):
                        # the bootstrap restart's effect not seen act_timeout later: lost (or sent by an
                        # incarnation that crashed); the same ref again, carried out once
                        rec["boot_sent"] = now
                        self._dirty.add("d/" + rec["id"])
                        skip = sorted(d for s, d in rec.get("waived", []) if s == b)
                        out += self._act(b, "restart-bootstrap", skip, rec["id"] + ":bootstrap")
                if all(self.states.get(m) == "up" for m in members):
                    rec["state"] = "watching"
                    self._dirty.add("d/" + rec["id"])
                    rec["resolved"] = now
                    self.under_remediation -= set(members)
                    out.append(Emit("deps.deadlock_resolved", {"id": rec["id"], "members": members,
                                                               "after": round(now - rec["detected"], 6)}))
                elif now - rec["detected"] > self.verify_after:
                    rec["state"] = "failed"
                    self._dirty.add("d/" + rec["id"])
                    self.under_remediation -= set(members)
                    out.append(Emit("deps.remediation_failed", {"id": rec["id"], "members": members,
                                                                "states": {m: self.states.get(m) for m in members}}))
            elif rec["state"] == "watching":
                if now - rec["resolved"] > self.watch_for:
                    rec["state"] = "closed"
                    self._dirty.add("d/" + rec["id"])
                    continue
                dropped = [m for m in rec["members"] if self.states.get(m) not in UPISH]
                if dropped:
                    rec["state"] = "closed"
                    self._dirty.add("d/" + rec["id"])
                    out.append(Emit("deps.watch_alert", {"id": rec["id"], "dropped": dropped}))
        return out

    # -- detected conditions ---------------------------------------------------------------------
    def _region_evidence(self, now: float) -> dict[str, bool | None]:
        """condition -> True (holds), False (evidence it does not), None (no evidence either way)."""
        fresh = {a for a, t in self.heard.items() if now - t < self.detect_after}
        regions: dict[str, list[str]] = {}
        for asset, a in self.assets.items():
            if a.get("region"):
                regions.setdefault(a["region"], []).append(asset)
        out: dict[str, bool | None] = {}
        for region, members in sorted(regions.items()):
            inside = set(members)
            outside = [x for x in self.assets if x not in inside]
            heard_in = [x for x in members if x in fresh]
            if heard_in:
                out[f"region {region} down"] = False
            elif any(x in fresh for x in outside):  # silent, while the manager hears the others
                out[f"region {region} down"] = True
            else:
                out[f"region {region} down"] = None  # the manager hears nobody: it is the one cut off
            outside_addrs = {self.assets[x]["address"] for x in outside}
            if not heard_in or not outside_addrs:
                out[f"region {region} isolated"] = None
                continue
            cut = [outside_addrs <= self.unreachable.get(x, set()) for x in heard_in]
            out[f"region {region} isolated"] = all(cut) if all(cut) or not any(cut) else None
        return out

    def _detect_conditions(self, now: float) -> list[Effect]:
        if self.started_at is None or now - self.started_at < self.detect_after:
            return []
        if self._named_at != self.graph.version:  # the conditions the graph names (once per graph change)
            self._named_at, self._named = self.graph.version, set(self.graph.conditions())
        named = self._named | {r["condition"] for r in self.remediations.values() if r["when"] == "conditional"}
        out: list[Effect] = []
        for name, holds in self._region_evidence(now).items():
            if holds and name.endswith(" isolated"):  # evidence from reports: it must last detect_after
                since = self.evidence_since.setdefault(name, now)
                if now - since < self.detect_after:
                    continue
            else:
                self.evidence_since.pop(name, None)
            if holds is None or name in self.manual:
                continue
            if holds and name not in self.active and name in named:
                self.detected.add(name)
                self._dirty.add("conditions")
                out += self._condition(Condition(name, True, "detected"), now)
            elif not holds and name in self.detected:
                self.detected.discard(name)
                self._dirty.add("conditions")
                out += self._condition(Condition(name, False, "detected"), now)
        return out

    # -- remediation timing -------------------------------------------------------------------
    def _arm(self, r: Remediate, now: float) -> list[Effect]:
        if r.action not in ACTIONS or r.when not in ("immediate", "opportunistic", "conditional") \
                or (r.when == "conditional" and not r.condition) or r.deadline < 0:
            self.rejected += 1
            return [Emit("deps.bad_input", {"what": f"remediation {r.id!r}: bad action/when/condition/deadline"})]
        old = self.remediations.get(r.id)
        if old is not None and (old["action"], old["service"], old["when"], old["condition"]) == \
                (r.action, r.service, r.when, r.condition):
            return []  # the same remediation again (an operator's resent request): nothing to do
        if r.id in self.remediations or len(self.remediations) >= MAX_REMEDIATIONS:
            self.rejected += 1
            return [Emit("deps.bad_input", {"what": f"remediation {r.id!r}: duplicate or over the bound"})]
        rec = {"id": r.id, "action": r.action, "service": r.service, "skip": [], "when": r.when,
               "condition": r.condition, "deadline_at": now + r.deadline if r.deadline > 0 else None,
               "state": "armed", "release": None, "who": r.who}
        self.remediations[r.id] = rec
        self._dirty.add("r/" + r.id)
        out: list[Effect] = [Emit("deps.remediation_armed", {"id": r.id, "action": r.action, "service": r.service,
                                                             "when": r.when, "condition": r.condition,
                                                             "deadline": r.deadline, "who": r.who})]
        if r.when == "immediate" or (r.when == "conditional" and r.condition in self.active):
            out += self._fire(rec, "immediate" if r.when == "immediate" else f"condition {r.condition}", now)
        return out

    def _fire(self, rec: dict, trigger: str, now: float) -> list[Effect]:
        rec["state"] = "fired"
        rec["fired_at"] = now
        self._dirty.add("r/" + rec["id"])
        rec["was"] = self.states.get(rec["service"])  # done means: back in the target state after a change
        rec["moved"] = False
        out: list[Effect] = [Emit("deps.remediation_fired", {"id": rec["id"], "action": rec["action"],
                                                             "service": rec["service"], "trigger": trigger,
                                                             "when": rec["when"]})]
        if rec["action"] in ("reboot", "reimage"):
            a = self.assets.get(self.owner.get(rec["service"], rec["service"]))
            return out + ([Send(a["address"], Act(rec["action"], "", [], rec["id"]))] if a else [])
        return out + self._act(rec["service"], rec["action"], rec["skip"], rec["id"])

    def _opportunity(self, asset: str, trigger: str, now: float) -> list[Effect]:
        out: list[Effect] = []
        for rec in self.remediations.values():
            if rec["when"] == "opportunistic" and rec["state"] == "armed" \
                    and (self.owner.get(rec["service"]) == asset or rec["service"] == asset):
                out += self._fire(rec, trigger, now)
        return out

    def _condition(self, c: Condition, now: float) -> list[Effect]:
        was = c.name in self.active
        if c.holds == was:
            return []
        if c.holds and len(self.active) >= MAX_CONDITIONS:
            self.rejected += 1
            return [Emit("deps.bad_input", {"what": f"condition {c.name!r}: more than {MAX_CONDITIONS} in force"})]
        self._dirty.add("conditions")
        out: list[Effect] = [Emit("deps.condition", {"name": c.name, "holds": c.holds, "who": c.who})]
        if c.holds:
            self.active.add(c.name)
            for rec in self.remediations.values():
                if rec["when"] == "conditional" and rec["condition"] == c.name and rec["state"] == "armed":
                    out += self._fire(rec, f"condition {c.name}", now)
        else:
            self.active.discard(c.name)
            for rec in self.remediations.values():
                if rec["when"] == "conditional" and rec["condition"] == c.name and rec["state"] in ("fired", "done") \
                        and rec["release"]:
                    rec["state"] = "armed"
                    self._dirty.add("r/" + rec["id"])
                    out.append(Emit("deps.remediation_released", {"id": rec["id"], "action": rec["release"],
                                                                  "service": rec["service"]}))
                    out += self._act(rec["service"], rec["release"], [], rec["id"] + ":release")
        if self.plan is not None:
            out += self._replan(now, f"condition {c.name} {'holds' if c.holds else 'ended'}")
        return out

    def _follow_remediations(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        for rec in self.remediations.values():
            if rec["state"] == "armed" and rec["deadline_at"] is not None and now >= rec["deadline_at"]:
                out += self._fire(rec, "deadline", now)
            elif rec["state"] == "fired" and now - rec["fired_at"] > 0:
                target = "bootstrap" if rec["action"].endswith("bootstrap") else "up"
                if rec["action"] in ("stop",):
                    target = "down"
                state = self.states.get(rec["service"])
                if state != target:
                    if not rec["moved"]:
                        rec["moved"] = True
                        self._dirty.add("r/" + rec["id"])
                elif rec["action"] != "reboot" and (rec["moved"] or rec["was"] != target):
                    rec["state"] = "done"
                    self._dirty.add("r/" + rec["id"])
                    out.append(Emit("deps.remediation_done", {"id": rec["id"], "service": rec["service"],
                                                              "state": target,
                                                              "after": round(now - rec["fired_at"], 6)}))
        return out

    def _progress(self, now: float) -> list[Effect]:
        """A service changed: send the steps that became ready at once (not at the next tick)."""
        if self.plan is None:
            return []
        return (self._dispatch(now) if self.execute else []) + self._check_all_up(now)

    # -- durable state -------------------------------------------------------------------------
    def _record(self, key: str) -> Any:
        """The JSON value persisted under ``key`` now (None: nothing to remember)."""
        if key == "meta":
            return {"incarnations": (self.previous + [self.incarnation])[-MAX_INCARNATIONS:],
                    "deadlocks": self.dl_count}
        if key == "conditions":
            return {"active": sorted(self.active), "detected": sorted(self.detected), "manual": sorted(self.manual)}
        if key == "tickets":
            return sorted(self._announced_tickets)
        kind, _, name = key.partition("/")
        if kind == "ov":
            return self.overrides.get(key)
        if kind == "r":
            rec = self.remediations.get(name)
            return None if rec is None else {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in rec.items()}
        if kind == "d":
            rec = self.deadlocks.get(name)
            if rec is None or rec["state"] in FINISHED:
                return None
            return {**rec, "full_sent": dict(rec["full_sent"])}
        if kind == "s":
            last = self.sent.get(name)
            return None if last is None else last[1]
        raise KeyError(key)

    def _flush(self, out: list[Effect]) -> list[Effect]:
        """``out`` with a Persist for every changed key before its first Send (write-ahead)."""
        if not self._dirty:
            return out
        if not self.persistent:
            self._dirty.clear()
            return out
        fx: list[Effect] = [Persist(k, self._record(k)) for k in sorted(self._dirty)]
        self._dirty.clear()
        i = next((i for i, e in enumerate(out) if type(e) is Send), len(out))
        return out[:i] + fx + out[i:]

    def _restore(self, durable: dict) -> dict | None:
        """Take up an earlier incarnation's record; a summary, or None if the record holds nothing."""
        meta = durable.get("meta")
        if not isinstance(meta, dict):
            return None  # a blank or foreign disk: a first start
        self.previous = [i for i in meta.get("incarnations", []) if isinstance(i, int)][-MAX_INCARNATIONS:]
        self.dl_count = int(meta.get("deadlocks", 0))
        conds = durable.get("conditions")
        if isinstance(conds, dict):
            self.active = {c for c in conds.get("active", []) if isinstance(c, str)}
            self.detected = {c for c in conds.get("detected", []) if isinstance(c, str)} & self.active
            self.manual = {c for c in conds.get("manual", []) if isinstance(c, str)}
        if isinstance(durable.get("tickets"), list):
            self._announced_tickets = {t for t in durable["tickets"] if isinstance(t, str)}
        counts = {"conditions": len(self.active), "overrides": 0, "remediations": 0, "deadlocks": 0, "in_flight": 0}
        for key, v in durable.items():
            kind, _, name = key.partition("/")
            if v is None or not name:
                continue
            if kind == "ov" and isinstance(v, dict):
                try:
                    if v.get("remove"):
                        self.graph.remove(v["service"], v["on"])
                    else:
                        self.graph.override(Dependency(v["service"], v["on"], v["kind"], v.get("condition", "")))
                except (KeyError, ValueError, TypeError):
                    self.rejected += 1
                    continue
                self.overrides[key] = dict(v)
                counts["overrides"] += 1
            elif kind == "r" and isinstance(v, dict) and len(self.remediations) < MAX_REMEDIATIONS:
                self.remediations[name] = dict(v)
                counts["remediations"] += 1
            elif kind == "d" and isinstance(v, dict) and len(self.deadlocks) < MAX_DEADLOCKS:
                rec = dict(v)
                rec["full_sent"] = dict(rec.get("full_sent") or {})
                self.deadlocks[name] = rec
                if rec.get("state") == "remediating":
                    self.under_remediation |= set(rec.get("members", []))
                counts["deadlocks"] += 1
            elif kind == "s" and isinstance(v, str):
                self.sent[name] = (float("-inf"), v)  # sent again with the same ref as soon as it is due
                counts["in_flight"] += 1
        return counts

    # -- entry points ------------------------------------------------------------------------
    def handle(self, msg: Any, sender: str, now: float) -> list[Effect]:
        return self._flush(self._handle(msg, sender, now))

    def tick(self, now: float) -> list[Effect]:
        return self._flush(self._tick(now))

    def _handle(self, msg: Any, sender: str, now: float) -> list[Effect]:
        c = type(msg)
        if c is Report:
            return self._report(msg, sender, now) + (self._progress(now) if self.plan is not None else [])
        if c is Status:
            ok, reborn = self._fresh(msg.asset, msg.incarnation, msg.seq, sender, now)
            out = self._reborn(msg.asset, now) if reborn else []
            if not ok or self.owner.get(msg.service) != msg.asset:
                return out
            self._set_state(msg.service, msg.state, msg.waiting_on, now)
            return out + (self._progress(now) if msg.state in UPISH or msg.state in ("down", "failed") else [])
        if c is AssetEvent:
            return [Emit("deps.asset_event", {"asset": msg.asset, "kind": msg.kind})] + \
                self._opportunity(msg.asset, msg.kind, now)
        if c is Condition:
            was = msg.name in self.active
            if msg.who != "detected" and msg.name not in self.manual and len(self.manual) < MAX_CONDITIONS:
                self.manual.add(msg.name)  # an operator's word wins over detection from now on
                self.detected.discard(msg.name)
                self._dirty.add("conditions")
            out = self._condition(msg, now)
            return self._answer(msg, sender, out, f"condition {msg.name!r} "
                                + ({(True, True): "already holds", (False, False): "does not hold (no change)",
                                    (False, True): "holds", (True, False): "ended"}[(was, msg.holds)]))
        if c is Remediate:
            out = self._arm(msg, now)
            rec = self.remediations.get(msg.id)
            return self._answer(msg, sender, out, f"remediation {msg.id!r} ({msg.action} {msg.service}, {msg.when}): "
                                + (rec["state"] if rec else "?"))
        if c is Override:
            out = self._override(msg.service, msg.on, msg.kind, msg.condition, msg.remove, msg.who, now)
            return self._answer(msg, sender, out, f"override: {msg.service} "
                                + (f"no longer depends on {msg.on}" if msg.remove else
                                   f"-> {msg.on} ({msg.kind}{', ' + msg.condition if msg.condition else ''})"))
        if c is Query:
            return [Send(sender, View(self.incarnation, self.plan is not None, self.all_up, dict(self.states),
                                      sorted(self.active), sorted(self.detected),
                                      {k: r["state"] for k, r in self.remediations.items()},
                                      {k: d["state"] for k, d in self.deadlocks.items()}))] if sender else []
        if c is TimerFired:
            return []
        self.rejected += 1
        return [Emit("deps.bad_input", {"what": f"unexpected {c.__name__} from {sender}"})]

    def _answer(self, msg: Any, sender: str, out: list[Effect], what: str) -> list[Effect]:
        """An operator message with ``ack``: answer the sender (after the Persists: see :meth:`_flush`)."""
        if not getattr(msg, "ack", False) or not sender:
            return out
        bad = [e.fields["what"] for e in out if type(e) is Emit and e.kind == "deps.bad_input"]
        if bad:
            return out + [Send(sender, Ack(False, bad[0]))]
        if self.plan is not None and any(type(e) is Emit and e.kind == "deps.plan" for e in out):
            what += "; replanned"
        return out + [Send(sender, Ack(True, what))]

    def _override(self, service: str, on: str, kind: str, condition: str, remove: bool, who: str,
                  now: float) -> list[Effect]:
        if len(self.overrides) >= MAX_OVERRIDES and "ov/" + json.dumps([service, on]) not in self.overrides:
            self.rejected += 1
            return [Emit("deps.bad_input", {"what": f"override: more than {MAX_OVERRIDES} overridden dependencies"})]
        try:
            if remove:
                self.graph.remove(service, on)
            else:
                self.graph.override(Dependency(service, on, kind, condition))
        except ValueError as e:
            self.rejected += 1
            return [Emit("deps.bad_input", {"what": f"override: {e}"})]
        key = "ov/" + json.dumps([service, on])
        self.overrides[key] = {"service": service, "on": on, "kind": kind, "condition": condition, "remove": remove,
                               "who": who}
        self._dirty.add(key)
        out: list[Effect] = [Emit("deps.override", {"service": service, "on": on, "kind": kind, "remove": remove,
                                                    "condition": condition, "who": who})]
        if self.plan is not None:
            out += self._replan(now, f"override by {who}")
        return out

    def _tick(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        if self.started_at is None:
            self.started_at = now
            self._dirty.add("meta")
            out.append(Emit("deps.manager_start", {"agents": len(self.agents), "incarnation": self.incarnation,
                                                   "previous": self.previous, "restored": self.restored}))
            if self.restored is not None:  # the topology's overrides and remediations are in the record
                self._pending_overrides, self._pending_remediations = [], []
            for o in self._pending_overrides:
                out += self._override(o["service"], o["on"], o.get("kind", "hard"), o.get("condition", ""),
                                      bool(o.get("remove", False)), o.get("who", "topology"), now)
            for r in self._pending_remediations:
                out += self._arm(Remediate(r["id"], r["action"], r["service"], r.get("when", "immediate"),
                                           r.get("condition", ""), float(r.get("deadline", 0.0)),
                                           r.get("who", "topology")), now)
            self._pending_overrides, self._pending_remediations = [], []
        if self.plan is None:
            reported = {a["address"] for a in self.assets.values()}
            if not (set(self.agents) <= reported or now - self.started_at >= self.gather_timeout):
                return out
            if not self.graph.services:
                return out
            out += self._replan(now, "agents reported" if set(self.agents) <= reported else "gather timeout")
        elif (self.graph.version, tuple(sorted(self.active))) != self.plan_key:
            out += self._replan(now, "graph changed")
        if self.detect_after > 0:
            out += self._detect_conditions(now)
        if self.execute:
            out += self._dispatch(now)
        out += self._detect(now)
        out += self._follow_deadlocks(now)
        out += self._follow_remediations(now)
        out += self._check_all_up(now)
        return out
