"""The dependency-startup checkers (topologies/deps/checks.py) can fail, and say unknown with nothing to judge.

``CASES`` (imported by tests/test_checker_registry.py) holds for each checker a
hand-made log breaking its invariant, with the offending events, and one with
nothing to judge. The focused tests below pin the exceptions: a bootstrap
launch the plan named is fine, one nobody named is not; a detection whose waits
never held at once is not real.
"""

from __future__ import annotations

from topologies.checkers import CHECKERS
from topologies.plugin import load_plugins

load_plugins()


def ev(t: float, node: str, kind: str, /, **fields) -> dict:
    return {"time": t, "node": node, "actor": "manager" if node == "mgr" else "agent", "kind": kind,
            "fields": fields}


def svc(t: float, service: str, state: str, waiting_on=()) -> dict:
    return ev(t, "a1", "deps.service", asset="a1", service=service, state=state, waiting_on=list(waiting_on))


def launch(t: float, service: str, hard, mode: str = "full", skip=()) -> dict:
    return ev(t, "a1", "deps.launch", asset="a1", service=service, hard=list(hard), mode=mode, skip=list(skip),
              token=1)


def plan_ev(t: float, waived) -> dict:
    return ev(t, "mgr", "deps.plan", waves=[["dhcp"], ["cycle:acl+dns"]], tickets=[],
              workflows=[{"group": "cycle:acl+dns", "rule": "bootstrap", "waived": [list(w) for w in waived]}])


AGENT = ev(0.0, "a1", "deps.agent_start", asset="a1", services=["dhcp", "dns"], incarnation=1)

# deps-start-order: dns launched while dhcp is still starting
EARLY = launch(1.0, "dns", ["dhcp"])
START_ORDER_INVALID = [AGENT, svc(0.5, "dhcp", "starting"), EARLY, svc(2.0, "dhcp", "up")]
# deps-all-up: dns ends waiting
DNS_WAITING = svc(3.0, "dns", "waiting", ["acl"])
ALL_UP_INVALID = [AGENT, svc(1.0, "dhcp", "up"), DNS_WAITING]
# deps-deadlocks-real: a detection whose waits never held at the same time
FAKE = ev(5.0, "mgr", "deps.deadlock_detected", id="deadlock-1", members=["acl", "dns"],
          waits=[["acl", "dns"], ["dns", "acl"]], cycle=["acl", "dns"], since=4.5, after=0.5)
DEADLOCK_INVALID = [svc(4.0, "dns", "waiting", ["acl"]), svc(4.2, "acl", "up"), FAKE,
                    ev(9.0, "mgr", "deps.deadlock_resolved", id="deadlock-1")]

CASES = {
    "deps-start-order": {"invalid": (START_ORDER_INVALID, [EARLY]), "unknown": [AGENT, svc(1.0, "dhcp", "up")]},
    "deps-all-up": {"invalid": (ALL_UP_INVALID, [DNS_WAITING]), "unknown": [svc(1.0, "dhcp", "up")]},
    "deps-deadlocks-real": {"invalid": (DEADLOCK_INVALID, [FAKE]), "unknown": [AGENT, DNS_WAITING]},
}


def test_bootstrap_launch_named_by_the_plan_is_allowed_unnamed_is_not():
    base = [AGENT, svc(0.5, "dhcp", "up"), svc(0.6, "acl", "down")]
    ok = base + [plan_ev(0.4, [("dns", "acl")]), launch(1.0, "dns", ["dhcp", "acl"], "bootstrap", ["acl"])]
    v = CHECKERS["deps-start-order"].check(ok)
    assert v.status == "valid", v.summary
    unnamed = base + [plan_ev(0.4, []), launch(1.0, "dns", ["dhcp", "acl"], "bootstrap", ["acl"])]
    v = CHECKERS["deps-start-order"].check(unnamed)
    assert v.status == "invalid" and "without a plan or remediation naming it" in v.summary
    full_skip = base + [plan_ev(0.4, [("dns", "acl")]), launch(1.0, "dns", ["dhcp", "acl"], "full", ["acl"])]
    assert CHECKERS["deps-start-order"].check(full_skip).status == "invalid"
    remediated = base + [ev(0.9, "mgr", "deps.remediation", id="deadlock-1", waived=[["dns", "acl"]]),
                         launch(1.0, "dns", ["dhcp", "acl"], "bootstrap", ["acl"])]
    assert CHECKERS["deps-start-order"].check(remediated).status == "valid"


def test_a_real_deadlock_must_be_resolved():
    waits = [svc(4.0, "dns", "waiting", ["acl"]), svc(4.1, "acl", "waiting", ["dns"])]
    det = ev(4.7, "mgr", "deps.deadlock_detected", id="deadlock-1", members=["acl", "dns"],
             waits=[["acl", "dns"], ["dns", "acl"]], cycle=["acl", "dns"], since=4.2, after=0.5)
    v = CHECKERS["deps-deadlocks-real"].check(waits + [det])
    assert v.status == "invalid" and "never resolved" in v.summary
    v = CHECKERS["deps-deadlocks-real"].check(waits + [det, ev(8.0, "mgr", "deps.deadlock_resolved", id="deadlock-1")])
    assert v.status == "valid", v.summary
    acyclic = dict(det, fields=dict(det["fields"], waits=[["dns", "acl"]]))
    assert CHECKERS["deps-deadlocks-real"].check(waits + [acyclic]).status == "invalid"


def test_all_up_needs_full_up_not_bootstrap():
    v = CHECKERS["deps-all-up"].check([AGENT, svc(1.0, "dhcp", "up"), svc(2.0, "dns", "bootstrap")])
    assert v.status == "invalid" and "1 bootstrap" in v.summary
    v = CHECKERS["deps-all-up"].check([AGENT, svc(1.0, "dhcp", "up"), svc(2.0, "dns", "up")])
    assert v.status == "valid"


def test_start_order_allows_clock_skew_between_processes_only():
    def up_on(node: str, t: float) -> dict:
        return ev(t, node, "deps.service", asset=node, service="dhcp", state="up", waiting_on=[])
    launch_a1 = launch(1.0, "dns", ["dhcp"])  # node a1
    assert CHECKERS["deps-start-order"].check([AGENT, up_on("a2", 1.05), launch_a1]).status == "valid"
    assert CHECKERS["deps-start-order"].check([AGENT, up_on("a2", 1.5), launch_a1]).status == "invalid"
    assert CHECKERS["deps-start-order"].check([AGENT, up_on("a1", 1.05), launch_a1]).status == "invalid"
