"""The dependency graph and the startup planner (pure; networkx for the graph algorithms).

How this works
--------------
Source: ``shared/seeds/001_9781712fad791114.txt``. A :class:`DepGraph` holds
*services* (each on an asset, in a failure domain and a region, with a
priority, a start time, whether it can start in a bootstrap (degraded) mode,
and which services could restart it) and *dependencies* ``service -> on``:

* ``hard``: ``service`` cannot run until ``on`` is up (systemd Requires/
  Requisite/BindsTo, compose ``depends_on`` with ``required: true``);
* ``conditional``: the dependency holds only under a named condition
  (``condition="region r1 down"``): hard while the condition is given as
  active (``plan(conditions=...)``), not in force otherwise (a cycle it would
  close is reported as a conditional problem, with the remediation to arm).
  An *optional pull-in* (no condition; systemd ``Wants`` = ``systemd:Wants``,
  compose ``required: false`` = ``compose:optional``) is ordered where it
  closes no cycle and deferred first where it does;
* ``order``: pure ordering (systemd After/Before without a requirement).

Agents report a service and its dependencies (:meth:`DepGraph.report`, which
replaces what that agent said before); operators add, override or remove a
dependency (:meth:`DepGraph.override`, :meth:`DepGraph.remove`), and an
operator's word wins over an agent's for that pair. A dependency on a service
nobody reported is *external*: assumed available, listed, never planned.

The plan (:func:`plan`)
-----------------------
1. The ordering graph (all edges; the active conditions' edges hard) is cut
   into strongly connected components; the condensation's
   ``topological_generations`` are the **waves**. A component of one service
   is started plainly; a larger one (a cycle group) gets a **remedial
   workflow**, chosen by these rules, in order:

   a. *Conditional edges first*: in-group edges that are not hard (conditional,
      order) are deferred when they close a cycle (the group's start order
      keeps every one that does not). The dependent of a deferred conditional
      edge is restarted once that dependency is fully up ("restart A and
      start B only once A is up"); a deferred order edge, or an optional
      pull-in (condition ``systemd:Wants`` / ``compose:optional``), needs nothing.
      Order edges are kept in preference to conditional ones.
   b. *Declared bootstrap mode*: if hard cycles remain, members that declare a
      bootstrap mode are started in it, ignoring their in-group dependencies;
      candidates in order of fewest in-group hard dependencies, then higher
      priority, then name; the first candidate that breaks every hard cycle
      alone wins, else candidates are added in that order until the rest is
      acyclic and any that turned out unneeded are dropped again. The rest of
      the group then starts in dependency order; each bootstrap member is
      restarted fully once the whole group is up.
   c. Otherwise the group is **unbreakable**: a :class:`Ticket` for an operator
      names it and its cycles; the group and everything that hard-depends on
      it is *blocked* (listed, not started). Nothing is dropped silently.

2. The result is a DAG of :class:`Step` s (``start``, ``start-bootstrap``,
   ``restart``), each with the steps it must wait for: a service starts once
   every dependency is up (inside its own group: up in any mode; across
   groups: fully up). Hard edges are waived only where the plan says so: a
   bootstrap start's in-group dependencies (listed in the workflow's
   ``waived``). The **critical path** is the longest chain of step durations
   (a service's ``start_time``), the makespan's lower bound.

Problems (:func:`problems`): every cycle group with its simple cycles (at most
``MAX_CYCLES_PER_GROUP`` listed, the count says if more exist); cycles that
appear only under a named condition (a conditional remediation to arm); a
service hard-depending on a lower-priority one; a hard dependency across
regions; a failure domain or region whose loss takes down a service together
with every service that could restart it.
"""

from __future__ import annotations

import itertools
from typing import Iterable

import attrs
import networkx as nx

__all__ = [
    "DepGraph", "Dependency", "Plan", "Problem", "Service", "Step", "Ticket", "Workflow",
    "KINDS", "MAX_CYCLES_PER_GROUP", "OPTIONAL_CONDITIONS", "plan", "problems", "check_plan", "remedial_workflow",
]

KINDS = ("hard", "conditional", "order")
MAX_CYCLES_PER_GROUP = 50
MAX_SERVICES = 200_000  # a bound on what reports can grow
# conditions that mark an optional pull-in (systemd Wants, compose required: false): a deferred one needs no restart
OPTIONAL_CONDITIONS = ("systemd:Wants", "compose:optional")


@attrs.frozen
class Service:
    name: str
    asset: str = ""
    failure_domain: str = ""
    region: str = ""
    bootstrap: bool = False
    priority: int = 0
    start_time: float = 1.0
    functions: tuple[str, ...] = ()
    restarted_by: tuple[str, ...] = ()
    where: str = ""  # file:line it came from, for messages


@attrs.frozen
class Dependency:
    service: str
    on: str
    kind: str = "hard"
    condition: str = ""
    function: str = ""
    source: str = "agent"  # agent | operator | file
    where: str = ""

    def __attrs_post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"dependency {self.service} -> {self.on}: kind {self.kind!r} is not one of {KINDS}")
        if self.service == self.on:
            raise ValueError(f"service {self.service!r} depends on itself")


class DepGraph:
    """Services and dependencies as reported by agents and amended by operators."""

    def __init__(self) -> None:
        self.services: dict[str, Service] = {}
        self._agent: dict[str, dict[str, Dependency]] = {}  # service -> on -> dep
        self._operator: dict[tuple[str, str], Dependency | None] = {}  # None: removed by an operator
        self.version = 0

    # -- input ----------------------------------------------------------------
    def add_service(self, service: Service) -> None:
        if service.name not in self.services and len(self.services) >= MAX_SERVICES:
            raise ValueError(f"more than {MAX_SERVICES} services")
        self.services[service.name] = service
        self.version += 1

    def report(self, service: Service, deps: Iterable[Dependency]) -> None:
        """An agent's report of one service: replaces everything that agent said about it."""
        self.add_service(service)
        self._agent[service.name] = {d.on: d for d in deps if d.service == service.name}

    def add_dependency(self, dep: Dependency) -> None:
        self._agent.setdefault(dep.service, {})[dep.on] = dep
        self.version += 1

    def override(self, dep: Dependency) -> None:
        """An operator adds or overrides the dependency ``dep.service -> dep.on``."""
        self._operator[(dep.service, dep.on)] = attrs.evolve(dep, source="operator")
        self.version += 1

    def remove(self, service: str, on: str) -> None:
        """An operator says ``service`` does not depend on ``on`` (whatever agents report)."""
        self._operator[(service, on)] = None
        self.version += 1

    # -- reading --------------------------------------------------------------
    def dependencies(self) -> list[Dependency]:
        out: dict[tuple[str, str], Dependency] = {}
        for s, deps in self._agent.items():
            for on, d in deps.items():
                out[(s, on)] = d
        for key, d in self._operator.items():
            if d is None:
                out.pop(key, None)
            else:
                out[key] = d
        return [out[k] for k in sorted(out)]

    def deps_of(self, service: str) -> list[Dependency]:
        return [d for d in self.dependencies() if d.service == service]

    def external(self) -> list[str]:
        """Dependency targets nobody reported as a service (assumed available)."""
        return sorted({d.on for d in self.dependencies() if d.on not in self.services}
                      | {d.service for d in self.dependencies() if d.service not in self.services})

    def conditions(self) -> list[str]:
        """The named conditions of conditional dependencies (not the optional pull-in markers)."""
        return sorted({d.condition for d in self.dependencies() if d.kind == "conditional" and d.condition
                       and d.condition not in OPTIONAL_CONDITIONS})

    def graph(self, conditions: Iterable[str] = ()) -> nx.DiGraph:
        """``s -> d`` for each dependency in force between known services; edge data: kind.

        A conditional dependency on a named condition is hard while the
        condition is active and absent otherwise; an optional pull-in
        (no condition, ``systemd:Wants``, ``compose:optional``) stays a soft
        ``conditional`` edge: ordered where it closes no cycle.
        """
        active = set(conditions)
        g = nx.DiGraph()
        g.add_nodes_from(sorted(self.services))
        svc = self.services
        edges = []
        for d in self.dependencies():
            if d.service in svc and d.on in svc:
                kind = d.kind
                if kind == "conditional" and d.condition and d.condition not in OPTIONAL_CONDITIONS:
                    if d.condition not in active:
                        continue  # not in force now: a potential problem (problems()), not an ordering
                    kind = "hard"
                edges.append((d.service, d.on, {"kind": kind, "declared": d.kind, "condition": d.condition,
                                                "function": d.function, "source": d.source}))
        g.add_edges_from(edges)
        return g


# -- the plan ------------------------------------------------------------------


@attrs.frozen
class Step:
    id: str  # "<action>:<service>"
    service: str
    action: str  # start | start-bootstrap | restart
    after: tuple[str, ...]
    duration: float
    group: str = ""  # the workflow it belongs to ("" for a plain start)


@attrs.frozen
class Workflow:
    """The remedial workflow of one cycle group."""

    group: str
    members: tuple[str, ...]
    rule: str  # defer-conditional | bootstrap
    bootstrap: tuple[str, ...]  # started in bootstrap mode, then restarted fully
    deferred: tuple[tuple[str, str, str], ...]  # (service, on, kind) edges not waited on
    waived: tuple[tuple[str, str], ...]  # hard edges a bootstrap start does not wait for
    restarted: tuple[str, ...]  # restarted at the end (bootstrap members + dependents of deferred conditional edges)
    cycles: tuple[tuple[str, ...], ...]
    cycle_count: int
    explanation: str
    condition: str = ""  # set on a conditional remediation (armed until this condition holds)

    def to_json(self) -> dict:
        return {"group": self.group, "members": list(self.members), "rule": self.rule,
                "bootstrap": list(self.bootstrap), "deferred": [list(e) for e in self.deferred],
                "waived": [list(e) for e in self.waived], "restarted": list(self.restarted),
                "cycles": [list(c) for c in self.cycles], "cycle_count": self.cycle_count,
                "explanation": self.explanation, "condition": self.condition}


@attrs.frozen
class Ticket:
    """A cycle no rule can break: work for an operator."""

    id: str
    members: tuple[str, ...]
    cycles: tuple[tuple[str, ...], ...]
    reason: str
    blocked: tuple[str, ...]  # the members and everything that hard-depends on them

    def to_json(self) -> dict:
        return {"id": self.id, "members": list(self.members), "cycles": [list(c) for c in self.cycles],
                "reason": self.reason, "blocked": list(self.blocked)}


@attrs.frozen
class Problem:
    kind: str  # cycle | conditional-cycle | priority-inversion | cross-region | domain-risk | region-risk
    services: tuple[str, ...]
    detail: str
    where: str = ""  # the failure domain / region / condition concerned

    def to_json(self) -> dict:
        return {"kind": self.kind, "services": list(self.services), "detail": self.detail, "where": self.where}


@attrs.define
class Plan:
    waves: list[list[str]]  # condensation generations: each entry a service or a group name
    groups: dict[str, tuple[str, ...]]  # group name -> members (cycle groups only)
    workflows: list[Workflow]
    tickets: list[Ticket]
    steps: dict[str, Step]
    blocked: list[str]
    skipped: list[tuple[str, str, str]]  # non-hard edges to a blocked service, ignored
    critical_path: list[str]  # step ids
    makespan: float  # the critical path's length (lower bound of any start)
    conditions: tuple[str, ...] = ()

    def first_up(self, service: str) -> str | None:
        for a in ("start-bootstrap", "start"):
            if f"{a}:{service}" in self.steps:
                return f"{a}:{service}"
        return None

    def full_up(self, service: str) -> str | None:
        for a in ("restart", "start"):
            if f"{a}:{service}" in self.steps:
                return f"{a}:{service}"
        return None

    def step_waves(self) -> list[list[str]]:
        g = nx.DiGraph()
        g.add_nodes_from(self.steps)
        g.add_edges_from((p, s.id) for s in self.steps.values() for p in s.after)
        return [sorted(w) for w in nx.topological_generations(g)]

    def to_json(self) -> dict:
        return {
            "waves": self.waves, "groups": {k: list(v) for k, v in self.groups.items()},
            "workflows": [w.to_json() for w in self.workflows], "tickets": [t.to_json() for t in self.tickets],
            "steps": [{"id": s.id, "service": s.service, "action": s.action, "after": list(s.after),
                       "duration": s.duration, "group": s.group} for s in self.steps.values()],
            "blocked": self.blocked, "skipped": [list(e) for e in self.skipped],
            "critical_path": self.critical_path, "makespan": self.makespan, "conditions": list(self.conditions),
        }


def _acyclic_without(sub: nx.DiGraph, drop_out_of: set[str]) -> bool:
    """Whether ``sub`` is acyclic once the out-edges of ``drop_out_of`` are gone (Kahn's algorithm, no copy)."""
    indeg = {n: 0 for n in sub}
    for u, v in sub.edges:
        if u not in drop_out_of:
            indeg[v] += 1
    ready = [n for n, d in indeg.items() if d == 0]
    seen = 0
    while ready:
        u = ready.pop()
        seen += 1
        if u in drop_out_of:
            continue
        for v in sub.successors(u):
            indeg[v] -= 1
            if indeg[v] == 0:
                ready.append(v)
    return seen == len(indeg)


def _cycles(sub: nx.DiGraph) -> tuple[tuple[tuple[str, ...], ...], int]:
    """Up to MAX_CYCLES_PER_GROUP simple cycles (each rotated to start at its smallest name) and whether more exist."""
    found = []
    it = nx.simple_cycles(sub)
    for c in itertools.islice(it, MAX_CYCLES_PER_GROUP + 1):
        i = c.index(min(c))
        found.append(tuple(c[i:] + c[:i]))
    more = len(found) > MAX_CYCLES_PER_GROUP
    found = sorted(found[:MAX_CYCLES_PER_GROUP], key=lambda c: (len(c), c))
    return tuple(found), len(found) + (1 if more else 0)


def _group_name(members: Iterable[str]) -> str:
    ms = sorted(members)
    return "cycle:" + "+".join(ms) if len(ms) <= 4 else f"cycle:{ms[0]}+{len(ms) - 1}"


def _remediate(graph: DepGraph, g: nx.DiGraph, members: list[str]) -> Workflow | Ticket:
    """The remedial workflow of one cycle group by the stated rules, or a ticket."""
    sub = g.subgraph(members).copy()
    cycles, count = _cycles(sub)
    name = _group_name(members)
    hard = nx.DiGraph()
    hard.add_nodes_from(members)
    hard.add_edges_from((u, v) for u, v, k in sub.edges(data="kind") if k == "hard")
    # order edges are kept in preference to conditional ones ("conditional edges first" to be deferred)
    soft = sorted(((u, v, k) for u, v, k in sub.edges(data="kind") if k != "hard"),
                  key=lambda e: (e[2] != "order", e))
    boot: list[str] = []
    rule = "defer-conditional"
    if not nx.is_directed_acyclic_graph(hard):
        rule = "bootstrap"
        svc = graph.services
        cands = sorted((m for m in members if svc[m].bootstrap),
                       key=lambda m: (hard.out_degree(m), -svc[m].priority, m))
        single = next((c for c in cands if _acyclic_without(hard, {c})), None)
        if single is not None:
            boot = [single]
        else:
            for c in cands:
                boot.append(c)
                if _acyclic_without(hard, set(boot)):
                    break
            if not boot or not _acyclic_without(hard, set(boot)):
                capable = [m for m in members if svc[m].bootstrap]
                reason = ("no member declares a bootstrap mode" if not capable else
                          f"bootstrap starts of every capable member ({', '.join(sorted(capable))}) "
                          "leave a cycle of hard dependencies")
                return Ticket(id=f"ticket:{name[6:]}", members=tuple(sorted(members)), cycles=cycles,
                              reason=reason, blocked=())
            for c in reversed(list(boot)):  # drop any that turned out unneeded
                if len(boot) > 1 and _acyclic_without(hard, set(boot) - {c}):
                    boot.remove(c)
    bset = set(boot)
    order = nx.DiGraph()
    order.add_nodes_from(members)
    order.add_edges_from((u, v) for u, v in hard.edges if u not in bset)
    deferred = []
    for u, v, k in soft:  # keep every soft edge that closes no cycle
        if u in bset or nx.has_path(order, v, u):
            deferred.append((u, v, k))
        else:
            order.add_edge(u, v)
    waived = tuple(sorted((u, v) for u, v in hard.edges if u in bset))
    optional = {(u, v) for u, v, c in sub.edges(data="condition") if c in OPTIONAL_CONDITIONS}
    restarted = sorted(bset | {u for u, v, k in deferred
                               if k == "conditional" and u not in bset and (u, v) not in optional})
    if rule == "bootstrap":
        expl = (f"start {', '.join(boot)} in bootstrap mode (fewest in-cycle hard dependencies among members "
                f"declaring one), then the rest in dependency order, then restart {', '.join(boot)} fully")
    else:
        expl = ("no cycle of hard dependencies: start in hard-dependency order without waiting on "
                + ", ".join(f"{u} -> {v} ({k})" for u, v, k in deferred)
                + ("; then restart " + ", ".join(restarted) + " once those are up" if restarted else ""))
    return Workflow(group=name, members=tuple(sorted(members)), rule=rule, bootstrap=tuple(boot),
                    deferred=tuple(deferred), waived=waived, restarted=tuple(restarted), cycles=cycles,
                    cycle_count=count, explanation=expl)


def remedial_workflow(graph: DepGraph, members: Iterable[str], conditions: Iterable[str] = ()) -> Workflow | Ticket:
    """The remedial workflow (by the rules above) for ``members`` (e.g. a cycle of waits), or a ticket."""
    ms = sorted(set(members))
    return _remediate(graph, graph.graph(conditions), ms)


def plan(graph: DepGraph, conditions: Iterable[str] = ()) -> Plan:
    """The startup plan of ``graph`` (``conditions``: named conditions holding now; their edges are hard)."""
    conds = tuple(sorted(set(conditions)))
    g = graph.graph(conds)
    sccs = list(nx.strongly_connected_components(g))
    cond = nx.condensation(g, scc=sccs)
    member_of: dict[str, int] = cond.graph["mapping"]
    # condensation edges point from dependent to dependency; waves start at the dependencies
    gens = list(nx.topological_generations(cond.reverse(copy=False)))
    groups: dict[str, tuple[str, ...]] = {}
    workflows: list[Workflow] = []
    tickets: list[Ticket] = []
    by_scc: dict[int, Workflow | Ticket | None] = {}
    waves: list[list[str]] = []
    for gen in gens:
        wave = []
        for c in sorted(gen, key=lambda c: min(cond.nodes[c]["members"])):
            ms = sorted(cond.nodes[c]["members"])
            if len(ms) == 1:
                by_scc[c] = None
                wave.append(ms[0])
                continue
            r = _remediate(graph, g, ms)
            by_scc[c] = r
            groups[r.group if isinstance(r, Workflow) else "cycle:" + r.id[7:]] = tuple(ms)
            wave.append(r.group if isinstance(r, Workflow) else "cycle:" + r.id[7:])
            (workflows if isinstance(r, Workflow) else tickets).append(r)
        waves.append(sorted(wave))

    # blocked: ticketed groups and everything that hard-depends on them
    blocked: set[str] = set()
    hard_dependents = nx.DiGraph()
    if tickets:
        hard_dependents.add_nodes_from(g)
        hard_dependents.add_edges_from((v, u) for u, v, k in g.edges(data="kind") if k == "hard")
    for i, t in enumerate(tickets):
        b = set(t.members)
        for m in t.members:
            b |= nx.descendants(hard_dependents, m)
        tickets[i] = attrs.evolve(t, blocked=tuple(sorted(b)))
        blocked |= b

    wf_of: dict[str, Workflow] = {}
    for w in workflows:
        for m in w.members:
            wf_of[m] = w
    steps: dict[str, Step] = {}
    skipped: list[tuple[str, str, str]] = []
    svc = graph.services

    def first_up(s: str) -> str:
        w = wf_of.get(s)
        return f"start-bootstrap:{s}" if w is not None and s in w.bootstrap else f"start:{s}"

    def full_up(s: str) -> str:
        w = wf_of.get(s)
        return f"restart:{s}" if w is not None and s in w.restarted else f"start:{s}"

    for s in g:
        if s in blocked:
            continue
        w = wf_of.get(s)
        deferred = {(u, v) for u, v, _ in w.deferred} if w else set()
        boot = w is not None and s in w.bootstrap
        after = []
        for _, d, k in g.out_edges(s, data="kind"):
            if d in blocked:
                skipped.append((s, d, k))
                continue
            if w is not None and d in wf_of and wf_of[d] is w:
                if boot or (s, d) in deferred:
                    continue
                after.append(first_up(d))
            else:
                after.append(full_up(d))
        gname = w.group if w else ""
        sid = first_up(s)
        steps[sid] = Step(sid, s, "start-bootstrap" if boot else "start", tuple(sorted(set(after))),
                          svc[s].start_time, gname)
        if w is not None and s in w.restarted:
            # once the whole group is up (every other member's first start), and a deferred conditional
            # dependency fully up where it is not itself restarted (restarts never wait on restarts: acyclic)
            ra = [first_up(m) for m in w.members if m != s]
            ra += [full_up(v) for u, v, k in w.deferred if u == s and k == "conditional" and v not in w.restarted
                   and g[u][v].get("condition") not in OPTIONAL_CONDITIONS]
            steps[f"restart:{s}"] = Step(f"restart:{s}", s, "restart", tuple(sorted(set(ra) | {sid})),
                                         svc[s].start_time, gname)
    finish: dict[str, float] = {}
    best: dict[str, str | None] = {}
    waiting = {sid: len(st.after) for sid, st in steps.items()}  # Kahn's order over the step DAG
    nexts: dict[str, list[str]] = {sid: [] for sid in steps}
    for st in steps.values():
        for a in st.after:
            nexts[a].append(st.id)
    ready = [sid for sid, n in waiting.items() if n == 0]
    topo: list[str] = []
    while ready:
        sid = ready.pop()
        topo.append(sid)
        for nx_ in nexts[sid]:
            waiting[nx_] -= 1
            if waiting[nx_] == 0:
                ready.append(nx_)
    if len(topo) != len(steps):  # cannot happen by construction; check_plan would say so too
        raise AssertionError("the step graph has a cycle")
    for sid in topo:
        st = steps[sid]
        prev = max(st.after, key=lambda p: (finish[p], p), default=None)
        finish[sid] = (finish[prev] if prev else 0.0) + st.duration
        best[sid] = prev
    path: list[str] = []
    if finish:
        cur: str | None = max(finish, key=lambda k: (finish[k], k))
        while cur is not None:
            path.append(cur)
            cur = best[cur]
        path.reverse()
    makespan = max(finish.values(), default=0.0)
    return Plan(waves=waves, groups=groups, workflows=workflows, tickets=tickets, steps=steps,
                blocked=sorted(blocked), skipped=sorted(skipped), critical_path=path,
                makespan=round(makespan, 9), conditions=conds)


def check_plan(graph: DepGraph, p: Plan) -> list[str]:
    """What is wrong with plan ``p`` for ``graph`` (empty: nothing).

    Every unblocked service has a step; the step graph is acyclic; every hard
    edge ``s -> d`` (as the plan saw it) has ``d`` up before ``s`` first starts,
    fully up if ``d`` is in another group, except the waived edges of a
    workflow, where ``s``'s full restart comes after ``d``'s first start;
    blocked services are exactly the tickets' groups and their hard dependents.
    """
    errs: list[str] = []
    g = graph.graph(p.conditions)
    sg = nx.DiGraph()
    sg.add_nodes_from(p.steps)
    for st in p.steps.values():
        for a in st.after:
            if a not in p.steps:
                errs.append(f"{st.id} waits for unknown step {a}")
            sg.add_edge(a, st.id)
    if not nx.is_directed_acyclic_graph(sg):
        errs.append("the step graph has a cycle")
        return errs
    blocked = set(p.blocked)
    for s in g:
        if s not in blocked and p.first_up(s) is None:
            errs.append(f"{s} is neither started nor blocked")
    wf = {m: w for w in p.workflows for m in w.members}
    waived = {e for w in p.workflows for e in w.waived}
    for s, d, k in g.edges(data="kind"):
        if k != "hard" or s in blocked:
            continue
        if d in blocked:
            errs.append(f"{s} hard-depends on blocked {d} but is not blocked")
            continue
        s_first = p.first_up(s)
        same = s in wf and d in wf and wf[s] is wf[d]
        need = p.first_up(d) if same else p.full_up(d)
        if (s, d) in waived:
            if f"restart:{s}" not in p.steps or not nx.has_path(sg, p.first_up(d), f"restart:{s}"):
                errs.append(f"waived {s} -> {d}: {s} is not restarted after {d} is up")
            continue
        if not nx.has_path(sg, need, s_first):
            errs.append(f"hard edge {s} -> {d}: {s_first} does not wait for {need}")
    expect = set()
    hd = nx.DiGraph()
    hd.add_nodes_from(g)
    hd.add_edges_from((v, u) for u, v, k in g.edges(data="kind") if k == "hard")
    for t in p.tickets:
        for m in t.members:
            expect |= {m} | nx.descendants(hd, m)
    if expect != blocked:
        errs.append(f"blocked {sorted(blocked)} but tickets imply {sorted(expect)}")
    return errs


# -- problems -------------------------------------------------------------------


def problems(graph: DepGraph, p: Plan | None = None) -> list[Problem]:
    """Everything the manager should tell an operator about ``graph``."""
    p = p if p is not None else plan(graph)
    out: list[Problem] = []
    for w in p.workflows:
        out.append(Problem("cycle", w.members, f"{w.cycle_count} cycle(s); remedial workflow ({w.rule}): "
                           f"{w.explanation}", w.group))
    for t in p.tickets:
        out.append(Problem("cycle", t.members, f"unbreakable ({t.reason}); work ticket {t.id}; "
                           f"blocked: {', '.join(t.blocked)}", t.id))
    base = graph.graph()
    base_hard_groups = {frozenset(c) for c in nx.strongly_connected_components(
        nx.DiGraph([(u, v) for u, v, k in base.edges(data="kind") if k == "hard"])) if len(c) > 1}
    for c in graph.conditions():
        gc = graph.graph([c])
        hard = nx.DiGraph([(u, v) for u, v, k in gc.edges(data="kind") if k == "hard"])
        pc = None
        for comp in nx.strongly_connected_components(hard):
            if len(comp) > 1 and frozenset(comp) not in base_hard_groups:
                pc = pc or plan(graph, [c])
                members = set(comp)
                fix = next((f"remediation to arm: {r.explanation}" if isinstance(r, Workflow) else
                            f"unbreakable then ({r.reason}): work ticket {r.id}"
                            for r in [*pc.workflows, *pc.tickets] if members <= set(r.members)), "")
                out.append(Problem("conditional-cycle", tuple(sorted(comp)),
                                   f"a cycle of hard dependencies appears when '{c}' holds; {fix}", c))
    svc = graph.services
    for s, d, k in base.edges(data="kind"):
        if k == "hard" and svc[d].priority < svc[s].priority:
            out.append(Problem("priority-inversion", (s, d),
                               f"{s} (priority {svc[s].priority}) hard-depends on {d} (priority {svc[d].priority})"))
        if k == "hard" and svc[s].region and svc[d].region and svc[s].region != svc[d].region:
            out.append(Problem("cross-region", (s, d), f"{s} in {svc[s].region} hard-depends on {d} in "
                               f"{svc[d].region}: the loss of {svc[d].region} takes {s} down", svc[d].region))
    dependents: dict[str, list[str]] = {n: [] for n in base}
    for u, v, k in base.edges(data="kind"):
        if k == "hard":
            dependents[v].append(u)
    restartable = [n for n, x in svc.items() if any(r in svc for r in x.restarted_by)]
    for attr, kind in (("failure_domain", "domain-risk"), ("region", "region-risk")):
        places = sorted({getattr(x, attr) for x in svc.values() if getattr(x, attr)})
        for place in places:
            down = {n for n, x in svc.items() if getattr(x, attr) == place}
            stack = list(down)  # one traversal from every service in the place: all that hard-depends on them
            while stack:
                for u in dependents[stack.pop()]:
                    if u not in down:
                        down.add(u)
                        stack.append(u)
            for n in sorted(x for x in restartable if x in down):
                rb = [r for r in svc[n].restarted_by if r in svc]
                if rb and all(r in down for r in rb):
                    inside = [r for r in rb if getattr(svc[r], attr) == place]
                    remedy = (f"move {' or '.join(inside)} out of {place}" if inside else
                              f"{', '.join(rb)} fall{'s' if len(rb) == 1 else ''} with {place} through hard "
                              f"dependencies: cut those, or add a restarter that does not need {place}")
                    out.append(Problem(kind, (n, *rb), f"losing {place} takes down {n} and everything that "
                                       f"could restart it ({', '.join(rb)}); remedy: {remedy}", place))
    return out
