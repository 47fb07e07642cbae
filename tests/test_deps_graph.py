"""The startup planner (protocols.deps.graph): waves, cycles, remediation rules, tickets, problems.

Hand-made graphs pin each rule; hypothesis property tests check on random
graphs that every plan respects every hard edge outside the remedial
workflows it names (``check_plan``), and that ``check_plan`` itself catches a
plan that breaks one.
"""

from __future__ import annotations

import attrs
import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.deps.graph import DepGraph, Dependency, Service, Step, check_plan, plan, problems


def make(services, edges) -> DepGraph:
    """services: name or (name, dict of Service fields); edges: (s, d) or (s, d, kind[, condition])."""
    g = DepGraph()
    for s in services:
        name, kw = (s, {}) if isinstance(s, str) else s
        g.add_service(Service(name, **kw))
    for e in edges:
        s, d, *rest = e
        kind = rest[0] if rest else "hard"
        cond = rest[1] if len(rest) > 1 else ""
        g.add_dependency(Dependency(s, d, kind=kind, condition=cond))
    return g


def seed_graph() -> DepGraph:
    """The seed's example: DHCP -> DNS <-> access control, block storage, cloud manager, program execution."""
    return make(
        ["dhcp", ("dns", {"bootstrap": True}), "acl", "block", "cm", "pes"],
        [("dns", "dhcp"), ("acl", "dns"), ("dns", "acl"), ("block", "dhcp"), ("cm", "block"), ("cm", "acl"),
         ("cm", "dhcp"), ("pes", "cm")])


def test_waves_follow_dependency_order_on_a_dag():
    g = make(["a", "b", "c", "d"], [("b", "a"), ("c", "a"), ("d", "b"), ("d", "c")])
    p = plan(g)
    assert p.waves == [["a"], ["b", "c"], ["d"]]
    assert not p.workflows and not p.tickets and not p.blocked
    assert p.critical_path in (["start:a", "start:b", "start:d"], ["start:a", "start:c", "start:d"])
    assert p.makespan == 3.0
    assert check_plan(g, p) == []


def test_critical_path_weighs_start_times():
    g = make(["a", ("b", {"start_time": 5.0}), "c", "d"], [("b", "a"), ("c", "a"), ("d", "b"), ("d", "c")])
    p = plan(g)
    assert p.critical_path == ["start:a", "start:b", "start:d"]
    assert p.makespan == 7.0


def test_seed_cycle_gets_a_bootstrap_workflow():
    g = seed_graph()
    p = plan(g)
    assert p.waves == [["dhcp"], ["block", "cycle:acl+dns"], ["cm"], ["pes"]]
    (w,) = p.workflows
    assert w.rule == "bootstrap" and w.bootstrap == ("dns",) and w.waived == (("dns", "acl"),)
    assert w.cycles == (("acl", "dns"),)
    assert p.steps["start-bootstrap:dns"].after == ("start:dhcp",)
    assert p.steps["start:acl"].after == ("start-bootstrap:dns",)
    assert set(p.steps["restart:dns"].after) == {"start-bootstrap:dns", "start:acl"}
    assert set(p.steps["start:cm"].after) == {"start:acl", "start:block", "start:dhcp"}
    assert check_plan(g, p) == []


def test_dependents_outside_a_group_wait_for_the_full_restart():
    g = make(["a", ("b", {"bootstrap": True}), "c"], [("a", "b"), ("b", "a"), ("c", "b")])
    p = plan(g)
    assert p.steps["start:c"].after == ("restart:b",)
    assert check_plan(g, p) == []


def test_every_cycle_of_a_group_is_found():
    edges = [("a", "b"), ("b", "c"), ("c", "a"), ("b", "a"), ("c", "d"), ("d", "b")]
    g = make([("a", {"bootstrap": True}), "b", "c", ("d", {"bootstrap": True})], edges)
    p = plan(g)
    (w,) = p.workflows
    expected = {tuple(c[c.index(min(c)):] + c[:c.index(min(c))]) for c in nx.simple_cycles(nx.DiGraph(edges))}
    assert set(w.cycles) == expected and w.cycle_count == len(expected) == 3
    assert set(w.bootstrap) == {"a", "d"} and check_plan(g, p) == []


def test_two_separate_cycles_get_two_workflows_in_their_waves():
    g = make([("a", {"bootstrap": True}), "b", "c", ("d", {"bootstrap": True})],
             [("a", "b"), ("b", "a"), ("c", "a"), ("c", "d"), ("d", "c")])
    p = plan(g)
    assert [w.group for w in p.workflows] == ["cycle:a+b", "cycle:c+d"]
    assert p.waves == [["cycle:a+b"], ["cycle:c+d"]]
    assert check_plan(g, p) == []


def test_conditional_edges_are_deferred_before_any_bootstrap():
    # a -> b hard, b -> a conditional (an optional pull-in): no bootstrap needed though both could bootstrap
    g = make([("a", {"bootstrap": True}), ("b", {"bootstrap": True})],
             [("a", "b"), ("b", "a", "conditional")])
    p = plan(g)
    (w,) = p.workflows
    assert w.rule == "defer-conditional" and w.bootstrap == ()
    assert w.deferred == (("b", "a", "conditional"),)
    assert w.restarted == ("b",)
    assert p.steps["start:a"].after == ("start:b",)
    assert set(p.steps["restart:b"].after) == {"start:a", "start:b"}
    assert check_plan(g, p) == []


def test_order_only_cycle_is_deferred_without_restart():
    g = make(["a", "b"], [("a", "b", "order"), ("b", "a", "order")])
    p = plan(g)
    (w,) = p.workflows
    assert w.rule == "defer-conditional" and len(w.deferred) == 1 and w.restarted == ()
    assert not p.tickets


def test_bootstrap_member_is_the_one_with_fewest_in_cycle_hard_dependencies():
    # a -> b, a -> c, b -> a, c -> a: a has 2 in-cycle deps, b and c one each; every member can bootstrap.
    # Alone, b does not break a <-> c; a alone does. Rule: the first candidate (fewest deps) that breaks all alone.
    g = make([(n, {"bootstrap": True}) for n in "abc"], [("a", "b"), ("a", "c"), ("b", "a"), ("c", "a")])
    (w,) = plan(g).workflows
    assert w.bootstrap == ("a",)
    # a ring: every member has one in-cycle dependency; ties go to higher priority, then name
    g = make([("x", {"bootstrap": True}), ("y", {"bootstrap": True, "priority": 5}), ("z", {"bootstrap": True})],
             [("x", "y"), ("y", "z"), ("z", "x")])
    (w,) = plan(g).workflows
    assert w.bootstrap == ("y",)
    g = make([(n, {"bootstrap": True}) for n in "xyz"], [("x", "y"), ("y", "z"), ("z", "x")])
    assert plan(g).workflows[0].bootstrap == ("x",)


def test_only_members_that_declare_a_bootstrap_mode_are_chosen():
    g = make(["a", "b", ("c", {"bootstrap": True})], [("a", "b"), ("b", "c"), ("c", "a")])
    (w,) = plan(g).workflows
    assert w.bootstrap == ("c",)


def test_two_bootstrap_members_when_one_is_not_enough():
    # two hard 2-cycles sharing nothing but forming one group through a third edge pair
    edges = [("a", "b"), ("b", "a"), ("c", "d"), ("d", "c"), ("b", "c"), ("d", "a")]
    g = make([("a", {"bootstrap": True}), "b", ("c", {"bootstrap": True}), "d"], edges)
    p = plan(g)
    (w,) = p.workflows
    assert set(w.bootstrap) == {"a", "c"}
    assert check_plan(g, p) == []


def test_unbreakable_cycle_becomes_a_ticket_and_blocks_its_dependents():
    g = make(["a", "b", "c", "d", "e"], [("a", "b"), ("b", "a"), ("c", "a"), ("d", "c", "conditional"), ("e", "d")])
    p = plan(g)
    assert not p.workflows
    (t,) = p.tickets
    assert t.members == ("a", "b") and t.cycles == (("a", "b"),)
    assert "no member declares a bootstrap mode" in t.reason
    assert t.blocked == ("a", "b", "c") and p.blocked == ["a", "b", "c"]
    # d wanted c (conditional): it starts without it, and the skipped edge is listed
    assert p.steps["start:d"].after == () and ("d", "c", "conditional") in p.skipped
    assert "start:e" in p.steps
    assert any(pr.kind == "cycle" and "work ticket" in pr.detail for pr in problems(g, p))
    assert check_plan(g, p) == []


def test_ticket_when_bootstrap_members_cannot_break_the_cycle():
    # b can bootstrap but the cycle a <-> c does not pass through b
    g = make(["a", ("b", {"bootstrap": True}), "c"], [("a", "b"), ("b", "a"), ("a", "c"), ("c", "a")])
    p = plan(g)
    (t,) = p.tickets
    assert "leave a cycle" in t.reason and t.members == ("a", "b", "c")


def test_optional_pull_in_is_deferred_without_restart():
    g = make(["a", "b"], [("a", "b"), ("b", "a", "conditional", "systemd:Wants")])
    (w,) = plan(g).workflows
    assert w.deferred == (("b", "a", "conditional"),) and w.restarted == ()
    assert problems(g) == [p for p in problems(g) if p.kind == "cycle"]  # no conditional problem for a pull-in


def test_order_edges_are_kept_in_preference_to_conditional_ones():
    # systemd's Wants=X plus Before=X: the Wants is deferred, the ordering kept
    g = make(["unit", "x"], [("unit", "x", "conditional", "systemd:Wants"), ("x", "unit", "order")])
    (w,) = plan(g).workflows
    assert w.deferred == (("unit", "x", "conditional"),)


def test_named_condition_is_out_of_force_until_active():
    g = make(["a", "b"], [("a", "b"), ("b", "a", "conditional", "region r1 down")])
    p = plan(g)
    assert not p.workflows and not p.tickets and p.waves == [["b"], ["a"]]
    p = plan(g, conditions=["region r1 down"])
    assert p.tickets and p.conditions == ("region r1 down",)
    kinds = {pr.kind for pr in problems(g)}
    assert "conditional-cycle" in kinds


def test_operator_overrides_and_removals_win_over_agents():
    g = make(["a", "b"], [("a", "b"), ("b", "a")])
    assert plan(g).tickets
    g.remove("b", "a")
    p = plan(g)
    assert not p.tickets and p.waves == [["b"], ["a"]]
    g.override(Dependency("b", "a", kind="conditional", condition="maintenance"))
    (d,) = [d for d in g.dependencies() if (d.service, d.on) == ("b", "a")]
    assert d.source == "operator" and d.kind == "conditional"
    g.report(Service("b"), [Dependency("b", "a")])  # the agent says hard again: the operator still wins
    (d,) = [d for d in g.dependencies() if (d.service, d.on) == ("b", "a")]
    assert d.kind == "conditional"


def test_unknown_dependencies_are_external_not_planned():
    g = make(["a"], [("a", "ntp")])
    p = plan(g)
    assert g.external() == ["ntp"] and list(p.steps) == ["start:a"]


def test_problems_priority_cross_region_and_domain_risk():
    g = make([("hi", {"priority": 9, "region": "r1", "failure_domain": "fd1"}),
              ("lo", {"priority": 1, "region": "r2", "failure_domain": "fd2"}),
              ("svc", {"region": "r1", "failure_domain": "fd1", "restarted_by": ("ctl",)}),
              ("ctl", {"region": "r1", "failure_domain": "fd3"}),
              ("safe", {"region": "r1", "failure_domain": "fd1", "restarted_by": ("ctl2",)}),
              ("ctl2", {"region": "r2", "failure_domain": "fd2"})],
             [("hi", "lo"), ("ctl", "svc")])
    ps = problems(g)
    kinds = {(pr.kind, pr.where): pr for pr in ps}
    assert ("priority-inversion", "") in kinds and kinds[("priority-inversion", "")].services == ("hi", "lo")
    assert ("cross-region", "r2") in kinds
    # losing fd1 takes down svc and ctl (ctl hard-depends on svc): nothing left to restart svc
    assert ("domain-risk", "fd1") in kinds and kinds[("domain-risk", "fd1")].services == ("svc", "ctl")
    assert ("region-risk", "r1") in kinds
    # safe's restarter sits in r2 / fd2: no risk named for it except where r2/fd2 itself is lost
    assert not any(pr.services[0] == "safe" and pr.where in ("fd1", "r1") for pr in ps)


def test_check_plan_catches_a_plan_that_breaks_a_hard_edge():
    g = seed_graph()
    p = plan(g)
    p.steps["start:cm"] = attrs.evolve(p.steps["start:cm"], after=("start:block",))
    errs = check_plan(g, p)
    assert any("cm -> acl" in e for e in errs), errs
    p = plan(g)
    del p.steps["restart:dns"]
    assert check_plan(g, p)
    p = plan(g)
    p.steps["start:dhcp"] = Step("start:dhcp", "dhcp", "start", ("start:pes",), 1.0)
    assert check_plan(g, p) == ["the step graph has a cycle"]


# -- property tests ----------------------------------------------------------------

KIND = st.sampled_from(["hard", "hard", "hard", "conditional", "order"])


@st.composite
def random_graphs(draw):
    n = draw(st.integers(1, 12))
    names = [f"s{i}" for i in range(n)]
    boot = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    prio = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    dur = draw(st.lists(st.sampled_from([0.5, 1.0, 2.0]), min_size=n, max_size=n))
    pairs = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), KIND), max_size=3 * n))
    g = DepGraph()
    for i, name in enumerate(names):
        g.add_service(Service(name, bootstrap=boot[i], priority=prio[i], start_time=dur[i]))
    for a, b, k in pairs:
        if a != b:
            cond = draw(st.sampled_from(["", "c1"])) if k == "conditional" else ""
            g.add_dependency(Dependency(names[a], names[b], kind=k, condition=cond))
    return g


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs())
def test_every_plan_respects_every_hard_edge_outside_its_workflows(g):
    p = plan(g)
    assert check_plan(g, p) == []
    # every service is started or blocked by a ticket, never silently dropped
    started = {s.service for s in p.steps.values()}
    assert started | set(p.blocked) == set(g.services) and not started & set(p.blocked)
    # every group of the condensation appears once in the waves
    flat = [x for w in p.waves for x in w]
    assert len(flat) == len(set(flat))
    assert set(flat) == (set(g.services) - {m for ms in p.groups.values() for m in ms}) | set(p.groups)
    # the makespan is the critical path's length
    assert p.makespan == pytest.approx(sum(p.steps[s].duration for s in p.critical_path))


@settings(max_examples=60, deadline=None)
@given(random_graphs(), st.data())
def test_check_plan_catches_a_dropped_wait(g, data):
    p = plan(g)
    waits = [(sid, a) for sid, s in p.steps.items() for a in s.after
             if s.action == "start" and a.startswith(("start", "restart")) and a.split(":", 1)[1] != s.service]
    if not waits:
        return
    sid, a = data.draw(st.sampled_from(waits))
    dep = a.split(":", 1)[1]
    svc = p.steps[sid].service
    if g.graph()[svc].get(dep, {}).get("kind") != "hard":
        return
    # drop the wait and every other route to it: the hard edge is then unguarded
    p.steps[sid] = attrs.evolve(p.steps[sid], after=())
    assert check_plan(g, p)


@settings(max_examples=60, deadline=None)
@given(random_graphs())
def test_active_conditions_still_give_safe_plans(g):
    p = plan(g, conditions=["c1"])
    assert check_plan(g, p) == []
