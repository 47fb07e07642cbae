"""The local-plane checkers (topologies/edge/checks.py) can fail, and say unknown when there is nothing to judge.

``CASES`` holds, for each of the four checkers, a hand-made log breaking its
invariant (with the offending events, which must come back in the evidence)
and one with nothing to judge; the registry test imports it. The focused tests
below pin down ``plan-holders`` (holders keyed by role share across plans,
within one island, after a settle time) and ``one-leader-per-island-term``
with no leader. Events use the field names ``protocols/localplane`` emits.
"""

from __future__ import annotations

import pytest

from topologies.checkers import CHECKERS
from topologies.edge.checks import PlanHolders, check_plan_holders
from topologies.plugin import load_plugins

load_plugins()

EDGE_CHECKERS = ("one-leader-per-island-term", "plan-holders", "governance", "ratified-after-heal",
                 "holderless-gap", "clients-single-holder")
GOVERNANCE = {"size_threshold": 8, "connected": "assignee", "isolated_below": "unanimous",
              "isolated_above": "ratio:0.67"}


# -- event builders (the fields the protocol emits) ------------------------------------------------------


def ev(t: float, node: str, kind: str, /, actor: str | None = None, **fields) -> dict:
    if actor is None:
        actor = {"mgr": "manager", "sim": "net", "chaos": "nemesis"}.get(node, "edge")
    return {"time": t, "node": node, "actor": actor, "kind": kind, "fields": fields}


def deployed(t: float = 0.0) -> dict:
    return ev(t, "mgr", "manager.deployed", intent="shop", version=1, edges=4, roles=["store", "frontend"],
              isolated_roles=["store", "frontend"], governance=dict(GOVERNANCE))


def edge_deployed(t: float, node: str) -> dict:
    return ev(t, node, "edge.deployed", intent="shop", version=1, members=4)


def assigned(t: float, node: str, role: str, plan_id: str, *, share: int = 0, shares: int = 1, term: int = 0,
             temporary: bool | None = None, converted: bool = False) -> dict:
    temp = plan_id.startswith("T") if temporary is None else temporary
    return ev(t, node, "edge.role_assigned", role=role, share=share, shares=shares, key=f"{role}#{share}/{shares}",
              plan_id=plan_id, term=term, temporary=temp, target=100.0, kind="service", converted=converted,
              ratified=False)


def relinquished(t: float, node: str, role: str, plan_id: str, *, share: int = 0, shares: int = 1,
                 reason: str = "final_plan") -> dict:
    return ev(t, node, "edge.role_relinquished", role=role, share=share, shares=shares, key=f"{role}#{share}/{shares}",
              plan_id=plan_id, temporary=plan_id.startswith("T"), reason=reason)


def leader(t: float, node: str, term: int, voters: list[str]) -> dict:
    return ev(t, node, "plane.leader", term=term, voters=sorted(voters), view=sorted(voters), score=1.0,
              since_isolation=0.5)


def partition(t: float, *islands: list[str], rest: list[str] | None = None) -> dict:
    return ev(t, "sim", "net.partition", islands=[sorted(i) for i in islands], rest=rest or [])


def heal(t: float) -> dict:
    return ev(t, "sim", "net.heal")


def fit_reported(t: float, node: str, plan_id: str) -> dict:
    return ev(t, node, "edge.fit_reported", plan_id=plan_id, to="e0/edge", fits={"store": 1.2})


def assent(t: float, node: str, *, rule: str, electorate: int, required: int, yes: int, isolated: bool = True,
           outcome: str = "agreed") -> dict:
    return ev(t, node, "plane.assent", plan_id="T1@e0", round=1, role="store", share=0, shares=1,
              candidate="e1/edge", rule=rule, isolated=isolated, electorate=electorate, required=required, yes=yes,
              no=electorate - yes, missing=0, accepted=True, outcome=outcome, timeout=False)


def plan_final(t: float, plan_id: str, assignments: list[dict], ratified: bool = False) -> dict:
    return ev(t, "mgr", "manager.plan_final", plan_id=plan_id, ratified=ratified, sources=["T1@e1"],
              reason="replaced", complete=True, unacked=[], assignments=assignments, took=0.2, since_reconnect=0.2)


def a(role: str, holder: str, share: int = 0, shares: int = 1) -> dict:
    return {"role": role, "share": share, "shares": shares, "holder": holder, "target": 100.0, "kind": "service"}


# -- the invalid and unknown logs of every checker -------------------------------------------------------

# one-leader-per-island-term: e0 and e2 both lead term 1 in one island (disjoint electorates, no partition)
_LEAD_A = leader(1.0, "e0", 1, ["e0/edge", "e1/edge"])
_LEAD_B = leader(1.1, "e2", 1, ["e2/edge", "e3/edge"])
_LEADERS_BAD = [deployed(), edge_deployed(0.01, "e0"), _LEAD_A, _LEAD_B]
# no leader ever elected: elections were tried, and failed
_LEADERS_NONE = [deployed(), edge_deployed(0.01, "e0"),
                 ev(1.0, "e0", "edge.isolation_declared", last_heartbeat=0.4, after=0.5, term=0),
                 ev(1.0, "e0", "plane.announce", term=1, score=1.0),
                 ev(1.8, "e0", "plane.election_failed", term=1, heard=1)]

# plan-holders: e1 holds store#0/1 of the temporary T1@e1 and e2 store#0/1 of the final F2@mgr, in one
# island, for 1.4 s (settle 0.5 s)
_HOLD_A = assigned(1.0, "e1", "store", "T1@e1", term=1)
_HOLD_B = assigned(1.1, "e2", "store", "F2@mgr")
_HOLDERS_BAD = [deployed(), _HOLD_A, _HOLD_B, fit_reported(2.5, "e3", "F3@mgr")]
# nodes deployed and declared isolation, but no plan was ever complete and nobody took a role
_HOLDERS_NONE = [deployed(), edge_deployed(0.01, "e1"), edge_deployed(0.01, "e2"),
                 ev(1.0, "e1", "edge.isolation_declared", last_heartbeat=0.4, after=0.5, term=0)]

# governance: 5 isolated members (below the threshold 8) must agree unanimously; a majority decided
_LAX = assent(1.0, "e0", rule="majority", electorate=5, required=3, yes=3)
_GOVERNANCE_BAD = [deployed(), assent(0.9, "e0", rule="unanimous", electorate=5, required=5, yes=5), _LAX]
_GOVERNANCE_NONE = [deployed(), edge_deployed(0.01, "e0"), _LEAD_A]

# ratified-after-heal: after the heal, e2 takes the final store while e1 (no longer isolated) still holds the
# temporary one
_TEMP = assigned(1.0, "e1", "store", "T1@e1", term=1)
_FINAL = assigned(2.1, "e2", "store", "F2@mgr")
_RATIFIED_BAD = [deployed(), partition(0.5, ["mgr"], ["e1", "e2"]), _TEMP, heal(2.0), _FINAL,
                 plan_final(2.2, "F2@mgr", [a("store", "e2/edge")])]
# a partition and a temporary plan, but the network never heals in this log
_RATIFIED_NONE = [deployed(), partition(0.5, ["mgr"], ["e1", "e2"]),
                  ev(1.0, "e1", "edge.isolation_declared", last_heartbeat=0.4, after=0.5, term=0),
                  assigned(1.2, "e1", "store", "T1@e1", term=1)]

# clients-single-holder: one request for store answered by e1 and e2, both holding store#0/1 of F2@mgr; and one
# client that sees e1 (T1@e1) and e2 (F2@mgr) both serve store for 0.75 s. Nothing to judge: no request served.
def client_request(t: float, rid: int, role: str, servers: list, outcome: str | None = None) -> dict:
    return ev(t, "e0", "client.request", actor="clients", rid=rid, role=role, sent=round(t - 0.2, 6),
              outcome=outcome or ("served" if servers else "unserved"), servers=servers, refused_by=[])


_TWICE = client_request(1.2, 7, "store", [["e1/edge", "store#0/1", "F2@mgr"], ["e2/edge", "store#0/1", "F2@mgr"]])
_CLIENTS_BAD = [deployed(), client_request(1.0, 6, "store", [["e1/edge", "store#0/1", "F2@mgr"]]), _TWICE]
_CLIENTS_NONE = [deployed(), client_request(1.0, 1, "store", []), client_request(1.25, 2, "frontend", [])]

# holderless-gap: no partition, no heal: e1 gives store up at 1.0 (its lease ran out on lossy links) and e2 takes it
# under F2 only at 4.5; 3.5 s without a store holder in the whole site. Nothing to judge: no role ever held.
_GAP_OPEN = relinquished(1.0, "e1", "store", "F1@mgr", reason="manager_lease_expired")
_GAP_CLOSE = assigned(4.5, "e2", "store", "F2@mgr")
_GAP_BAD = [deployed(), edge_deployed(0.01, "e1"), edge_deployed(0.01, "e2"), assigned(0.3, "e1", "store", "F1@mgr"),
            assigned(0.3, "e2", "frontend", "F1@mgr"), _GAP_OPEN, _GAP_CLOSE]
_GAP_NONE = [deployed(), edge_deployed(0.01, "e1"), fit_reported(0.2, "e1", "F1@mgr")]

CASES = {
    "holderless-gap": {"invalid": (_GAP_BAD, [_GAP_OPEN, _GAP_CLOSE]), "unknown": _GAP_NONE},
    "clients-single-holder": {"invalid": (_CLIENTS_BAD, [_TWICE]), "unknown": _CLIENTS_NONE},
    "one-leader-per-island-term": {"invalid": (_LEADERS_BAD, [_LEAD_A, _LEAD_B]), "unknown": _LEADERS_NONE},
    "plan-holders": {"invalid": (_HOLDERS_BAD, [_HOLD_A, _HOLD_B]), "unknown": _HOLDERS_NONE},
    "governance": {"invalid": (_GOVERNANCE_BAD, [_LAX]), "unknown": _GOVERNANCE_NONE},
    "ratified-after-heal": {"invalid": (_RATIFIED_BAD, [_TEMP, _FINAL]), "unknown": _RATIFIED_NONE},
}


def in_evidence(item: dict, evidence: list[dict]) -> bool:
    return any(item == x or (isinstance(x, dict) and any(item == v for v in x.values())) for x in evidence)


def test_cases_cover_every_local_plane_checker():
    assert set(CASES) == set(EDGE_CHECKERS)
    assert all(name in CHECKERS for name in CASES)


@pytest.mark.parametrize("name", EDGE_CHECKERS)
def test_each_checker_fails_on_its_bad_log_with_the_offending_events(name):
    events, offending = CASES[name]["invalid"]
    v = CHECKERS[name].check(events)
    assert v.status == "invalid", v
    missing = [o for o in offending if not in_evidence(o, v.evidence)]
    assert not missing, f"{name}: {missing} not in the evidence {v.evidence}"


@pytest.mark.parametrize("name", EDGE_CHECKERS)
def test_each_checker_says_unknown_with_nothing_to_judge(name):
    v = CHECKERS[name].check(CASES[name]["unknown"])
    assert v.status == "unknown", v
    assert CHECKERS[name].check([]).status == "unknown"


# -- plan-holders: keyed by role share across plans, per island, after a settle time ---------------------


def test_two_holders_of_one_share_under_different_plans_in_one_island_are_caught():
    # the old checker keyed holders by (plan, key) and never compared T1@e1 with T1@e3
    x = assigned(1.0, "e1", "store", "T1@e1", term=1)
    y = assigned(1.0, "e3", "store", "T1@e3", term=1)
    log = [x, y, fit_reported(2.0, "e0", "F2@mgr")]
    v = PlanHolders().check(log)
    assert v.status == "invalid", v
    assert v.evidence[0]["a"] == x and v.evidence[0]["b"] == y
    assert "store" in v.summary and "1.000s" in v.summary


def test_a_share_of_a_split_overlaps_the_whole_role_of_another_plan():
    whole = assigned(1.0, "e1", "store", "T1@e1", term=1)
    second_half = assigned(1.0, "e2", "store", "F2@mgr", share=1, shares=2)
    first_third = assigned(1.0, "e3", "cache", "F2@mgr", share=0, shares=3)
    second_half_cache = assigned(1.0, "e4", "cache", "T1@e1", share=1, shares=2, term=1)  # [1/2, 1) vs [0, 1/3)
    log = [whole, second_half, first_third, second_half_cache, fit_reported(2.0, "e0", "F3@mgr")]
    r = check_plan_holders(log)
    assert [(x["a"], x["b"]) for x in r["violations"]] == [(whole, second_half)], r["violations"]


def test_holders_on_opposite_sides_of_a_partition_are_not_a_violation():
    x = assigned(1.0, "e1", "store", "T1@e1", term=1)
    y = assigned(1.0, "e3", "store", "T1@e3", term=1)
    log = [partition(0.5, ["mgr"], ["e0", "e1"], ["e2", "e3"]), x, y, fit_reported(3.0, "e0", "T1@e1")]
    v = PlanHolders().check(log)
    assert v.status == "valid", v
    # the same holders, when the partition heals and neither gives the role up, are caught after the settle time
    healed = log[:-1] + [heal(2.0), fit_reported(3.0, "e0", "T1@e1")]
    v = PlanHolders().check(healed)
    assert v.status == "invalid" and v.evidence[0]["a"] == x and v.evidence[0]["b"] == y, v
    # ... and not if one of them gives it up within it
    settled = log[:-1] + [heal(2.0), relinquished(2.3, "e3", "store", "T1@e3", reason="new_plane"),
                          fit_reported(3.0, "e0", "T1@e1")]
    assert PlanHolders().check(settled).status == "valid"


def test_an_island_from_cut_links_counts_a_node_with_only_its_uplink_cut():
    # e3 lost only its link to the manager: it is still in one island with e1, so two store holders are caught
    x = assigned(1.0, "e1", "store", "F1@mgr")
    y = assigned(1.2, "e3", "store", "T1@e3", term=1)
    cuts = [ev(0.5, "sim", "net.cut", src="mgr", dst="e3"), ev(0.5, "sim", "net.cut", src="e3", dst="mgr")]
    log = [edge_deployed(0.0, "e1"), edge_deployed(0.0, "e3")] + cuts + [x, y, fit_reported(2.0, "e0", "F1@mgr")]
    v = PlanHolders().check(log)
    assert v.status == "invalid" and (v.evidence[0]["a"], v.evidence[0]["b"]) == (x, y), v
    # cut from each other as well: two islands
    apart = cuts + [ev(0.5, "sim", "net.cut", src="e1", dst="e3"), ev(0.5, "sim", "net.cut", src="e3", dst="e1")]
    log = [edge_deployed(0.0, "e1"), edge_deployed(0.0, "e3")] + apart + [x, y, fit_reported(2.0, "e0", "F1@mgr")]
    assert PlanHolders().check(log).status == "valid"


def test_an_overlap_shorter_than_settle_during_a_handover_is_not_a_violation():
    temp = assigned(1.0, "e1", "store", "T1@e1", term=1)
    final = assigned(2.1, "e2", "store", "F2@mgr")
    log = [temp, final, relinquished(2.4, "e1", "store", "T1@e1", reason="released_for_final_plan"),
           fit_reported(4.0, "e0", "F2@mgr")]
    v = PlanHolders().check(log)
    assert v.status == "valid" and "longest overlap 0.300s" in v.summary, v
    # the same overlap is too long for a tighter settle time
    assert PlanHolders(settle=0.2).check(log).status == "invalid"
    # and an overlap just starting when the log ends is not judged yet
    young = [temp, final, fit_reported(2.3, "e0", "F2@mgr")]
    v = PlanHolders().check(young)
    assert v.status == "valid" and "1 overlaps still open" in v.summary, v


def test_two_holders_of_one_share_in_one_plan_are_caught_at_once_even_across_islands():
    x = assigned(1.0, "e1", "store", "T1@e0", term=1)
    y = assigned(1.05, "e3", "store", "T1@e0", term=1)
    log = [partition(0.5, ["e0", "e1"], ["e2", "e3"]), x, y, relinquished(1.1, "e1", "store", "T1@e0")]
    v = PlanHolders().check(log)
    assert v.status == "invalid" and v.evidence[0]["a"] == x and v.evidence[0]["b"] == y, v
    # a handover inside one plan at one instant is not an overlap
    swap = [x, relinquished(1.5, "e1", "store", "T1@e0", reason="replanned"), assigned(1.5, "e3", "store", "T1@e0")]
    assert PlanHolders().check(swap).status == "valid"


def test_a_crash_or_a_kill_drops_the_roles_of_the_node():
    x = assigned(1.0, "e1", "store", "T1@e1", term=1)
    y = assigned(1.2, "e2", "store", "F2@mgr")
    crashed = [x, ev(1.1, "e1", "sim.crash"), y, fit_reported(3.0, "e0", "F2@mgr")]
    assert PlanHolders().check(crashed).status == "valid"
    killed = [x, ev(1.1, "chaos", "nemesis.kill", op="kill", node="e1"), y, fit_reported(3.0, "e0", "F2@mgr")]
    assert PlanHolders().check(killed).status == "valid"
    # without the crash it is two holders
    assert PlanHolders().check([x, y, fit_reported(3.0, "e0", "F2@mgr")]).status == "invalid"


def test_a_node_converting_its_own_holding_is_one_holder():
    temp = assigned(1.0, "e1", "store", "T1@e1", term=1)
    final = assigned(2.0, "e1", "store", "F2@mgr", converted=True)
    v = PlanHolders().check([temp, final, fit_reported(4.0, "e0", "F2@mgr")])
    assert v.status == "valid", v


def test_a_plan_giving_one_share_to_two_nodes_is_caught_with_the_plan_as_evidence():
    bad = ev(1.0, "e0", "plane.plan_complete", term=1, plan_id="T1@e0", version=1, members=["e0/edge", "e1/edge"],
             electorate=2, rule="unanimous", assignments=[a("store", "e1/edge"), a("store", "e2/edge")], lowered={},
             splits={}, unfilled=[], negotiation_msgs=4, roles=["store"], since_isolation=0.5, since_leader=0.2)
    v = PlanHolders().check([bad])
    assert v.status == "invalid" and v.evidence[0]["event"] == bad, v


# -- one leader per island and term ------------------------------------------------------------------


def test_zero_leaders_is_unknown_not_valid():
    v = CHECKERS["one-leader-per-island-term"].check(_LEADERS_NONE)
    assert v.status == "unknown" and "no leader" in v.summary, v


def test_two_leaders_of_one_term_carry_both_leader_events():
    v = CHECKERS["one-leader-per-island-term"].check(_LEADERS_BAD)
    assert v.status == "invalid" and v.evidence[0]["a"] == _LEAD_A and v.evidence[0]["b"] == _LEAD_B, v
    # the leader of a killed node no longer leads: a successor of the same term in its island is no violation
    killed = [_LEAD_A, ev(1.05, "chaos", "nemesis.kill", op="kill", node="e0"), _LEAD_B]
    assert CHECKERS["one-leader-per-island-term"].check(killed).status == "valid"


# -- a correct log stays valid ---------------------------------------------------------------------------


def test_a_correct_isolation_and_heal_is_valid_for_every_checker():
    members = ["e0/edge", "e1/edge", "e2/edge"]
    temp_plan = [a("leader", "e0/edge"), a("store", "e1/edge")]
    log = [deployed(), *(edge_deployed(0.01, n) for n in ("e0", "e1", "e2")),
           plan_final(0.3, "F1@mgr", [a("store", "e2/edge")], ratified=False),
           assigned(0.3, "e2", "store", "F1@mgr"),
           partition(1.0, ["mgr"], ["e0", "e1", "e2"]),
           *(ev(1.5, n, "edge.isolation_declared", last_heartbeat=1.0, after=0.5, term=0) for n in ("e0", "e1", "e2")),
           relinquished(1.5, "e2", "store", "F1@mgr", reason="manager_lease_expired"),
           leader(1.8, "e0", 1, members),
           assent(1.9, "e0", rule="unanimous", electorate=3, required=3, yes=3),
           ev(2.0, "e0", "plane.plan_complete", term=1, plan_id="T1@e0", version=1, members=members, electorate=3,
              rule="unanimous", assignments=temp_plan, lowered={}, splits={}, unfilled=[], negotiation_msgs=6,
              roles=["leader", "store"], since_isolation=0.5, since_leader=0.2),
           assigned(2.0, "e0", "leader", "T1@e0", term=1),
           assigned(2.05, "e1", "store", "T1@e0", term=1),
           heal(3.0),
           ev(3.2, "e1", "edge.isolation_ended", term=1, plan_id="T1@e0", leader="e0/edge", isolated_for=1.7),
           relinquished(3.3, "e0", "leader", "T1@e0", reason="final_plan"),
           ev(3.3, "e0", "plane.stepdown", term=1, plan_id="T1@e0", reason="final plan committed"),
           assigned(3.3, "e1", "store", "F2@mgr", converted=True),
           plan_final(3.4, "F2@mgr", [a("store", "e1/edge")], ratified=True),
           fit_reported(5.0, "e2", "F2@mgr"),
           client_request(0.6, 1, "store", [["e2/edge", "store#0/1", "F1@mgr"]]),
           client_request(2.5, 2, "store", [["e1/edge", "store#0/1", "T1@e0"]]),
           client_request(3.6, 3, "store", [["e1/edge", "store#0/1", "F2@mgr"]])]
    log.sort(key=lambda e: e["time"])
    for name in EDGE_CHECKERS:
        v = CHECKERS[name].check(log)
        assert v.status == "valid", (name, v)


def test_run_bookkeeping_events_are_not_a_node_that_bridges_islands():
    """A run's own run.topology event (node "launcher") is no network node: it must not join two islands cut by a grudge."""
    x = assigned(1.0, "e1", "store", "T1@e1", term=1)
    y = assigned(1.0, "e3", "store", "T1@e3", term=1)
    topo = ev(0.0, "launcher", "run.topology", actor="$run", topology="edge", nodes=3,
              actors={"localplane.edge": 2, "localplane.manager": 1})
    blocked = [[s, d] for s, d in (("e1", "e3"), ("e3", "e1"), ("e1", "mgr"), ("mgr", "e1"), ("e3", "mgr"), ("mgr", "e3"))]
    grudge = ev(0.5, "chaos", "nemesis.grudge", actor="nemesis", label="random-halves", blocked=blocked)
    log = [topo, edge_deployed(0.0, "e1"), edge_deployed(0.0, "e3"), grudge, x, y, fit_reported(3.0, "e1", "T1@e1")]
    v = PlanHolders().check(log)
    assert v.status == "valid", v


def test_clients_seeing_two_holders_of_different_plans_past_the_settle_time_is_invalid():
    both = [["e1/edge", "store#0/1", "T1@e1"], ["e2/edge", "store#0/1", "F2@mgr"]]
    first = client_request(1.2, 1, "store", both)
    log = [deployed(), first] + [client_request(1.2 + 0.25 * i, 1 + i, "store", both) for i in range(1, 3)]
    last = client_request(1.95, 4, "store", both)
    v = CHECKERS["clients-single-holder"].check(log + [last])
    assert v.status == "invalid" and in_evidence(first, v.evidence) and in_evidence(last, v.evidence), v
    # the same double for no longer than the settle time (a merge in flight) is counted, not a violation
    short = CHECKERS["clients-single-holder"].check([deployed(), first, client_request(1.45, 2, "store", both),
                                                     client_request(1.7, 3, "store", both[:1])])
    assert short.status == "valid" and "2 answered by two holders" in short.summary, short
    # a split role (store#0/2 and store#1/2) has two holders by design
    split = [["e1/edge", "store#0/2", "F2@mgr"], ["e2/edge", "store#1/2", "F2@mgr"]]
    assert CHECKERS["clients-single-holder"].check([client_request(1.0, 1, "store", split)]).status == "valid"


def test_a_holderless_gap_without_a_heal_escaped_every_other_checker():
    """Deliverable 6 (issue 18): the handover bound of ratified-after-heal is judged only after a heal; a 3.5 s gap
    in a run with no partition passes every other checker (valid or unknown) - holderless-gap flags it."""
    others = {n: CHECKERS[n].check(_GAP_BAD).status for n in EDGE_CHECKERS if n != "holderless-gap"}
    assert "invalid" not in others.values(), others
    assert CHECKERS["ratified-after-heal"].check(_GAP_BAD).status == "unknown"
    assert CHECKERS["holderless-gap"].check(_GAP_BAD).status == "invalid"


def test_holderless_gaps_are_judged_per_island_and_end_with_a_declared_unfilled_role():
    base = [deployed(), *(edge_deployed(0.01, n) for n in ("e1", "e2", "e3")),
            assigned(0.3, "e1", "store", "F1@mgr"), assigned(0.3, "e1", "frontend", "F1@mgr")]
    # e3 is cut off from e1 (the holder) at 1.0: its island has no store; its plane declares store unfilled at 2.0
    cut = [partition(1.0, ["mgr", "e1", "e2"], ["e3"]),
           ev(2.0, "e3", "plane.plan_complete", term=1, plan_id="T1@e3", version=1, members=["e3/edge"], electorate=1,
              rule="unanimous", assignments=[a("leader", "e3/edge")], lowered={}, splits={},
              unfilled=["store", "frontend"], negotiation_msgs=0, roles=[], since_isolation=0.5, since_leader=0.1),
           fit_reported(6.0, "e2", "F1@mgr")]
    v = CHECKERS["holderless-gap"].check(base + cut)
    assert v.status == "valid", v
    # the same without the declaration: 5 s without store and frontend on e3's side
    v = CHECKERS["holderless-gap"].check(base + [cut[0], cut[2]])
    assert v.status == "invalid" and "island of e3" in v.summary, v
    # a split role is covered by its shares together
    split = [deployed(), edge_deployed(0.01, "e1"), edge_deployed(0.01, "e2"),
             assigned(0.3, "e1", "store", "F1@mgr", share=0, shares=2),
             assigned(0.3, "e2", "store", "F1@mgr", share=1, shares=2),
             assigned(0.3, "e2", "frontend", "F1@mgr"), fit_reported(6.0, "e2", "F1@mgr")]
    assert CHECKERS["holderless-gap"].check(split).status == "valid"
    gone = split[:-1] + [relinquished(1.0, "e2", "store", "F1@mgr", share=1, shares=2), split[-1]]
    assert CHECKERS["holderless-gap"].check(gone).status == "invalid"


def test_a_gap_long_after_the_heal_is_not_a_handover_but_one_right_after_it_is():
    """CI (the README's fleetplane chaos topologies/edge.toml): 8.5 s after the last heal, under the schedule's 50%
    loss on the manager's links, two holders' manager leases ran out and the next plan gave their roles 0.6 s later;
    ratified-after-heal judged that gap against its 0.5 s handover bound although no handover was under way (a
    vacancy from lost renewals is holderless-gap's to judge, 3.0 s). The handover bound is for gaps that open
    within ``bound`` of a heal, while the reconnected planes are settled; one that opens then is still judged."""
    def final(t, plan_id):
        return ev(t, "mgr", "manager.plan_final", plan_id=plan_id, ratified=False, sources=[], reason="", complete=True,
                  unacked=[], assignments=[], took=0.1, since_reconnect=None)

    base = [deployed(), assigned(0.3, "e1", "store", "F1@mgr"), partition(1.0, ["mgr"], ["e1", "e2"]), heal(2.0),
            final(2.4, "F2@mgr")]
    late = base + [relinquished(10.0, "e1", "store", "F1@mgr", reason="manager_lease_expired"),
                   assigned(10.6, "e2", "store", "F3@mgr")]
    v = CHECKERS["ratified-after-heal"].check(late)
    assert v.status == "valid", v
    soon = base + [relinquished(2.5, "e1", "store", "F1@mgr", reason="released_for_final_plan"),
                   assigned(3.1, "e2", "store", "F3@mgr")]
    v = CHECKERS["ratified-after-heal"].check(soon)
    assert v.status == "invalid" and "no holder for 0.600s during the handover" in v.summary, v


def cut(t: float, *islands: list[str]) -> list[dict]:
    """What the simulator driver of the chaos harness logs for a Grudge (topologies/nemesis.apply_to_simulator):
    the network reset (net.heal), then one net.cut per blocked directed link, all at one instant."""
    where = {n: i for i, isl in enumerate(islands) for n in isl}
    return [heal(t)] + [ev(t, "sim", "net.cut", src=x, dst=y) for x in sorted(where) for y in sorted(where)
                        if where[x] != where[y]]


def test_a_grudge_that_replaces_a_grudge_in_the_simulator_is_no_heal():
    """A simulated chaos run of the split-site nemesis (topologies/edge.toml --sim, seeds 1-3): the manager cut off
    at 3 s, the site split at 6 s, merged at 9 s, healed at 12 s, the final plan 0.24 s later - yet
    ratified-after-heal said 'final plan 6.240s after the heal (bound 2.0s); final plan 3.240s after the heal',
    reading the driver's network reset at 6 s and 9 s (net.heal, then the new grudge's net.cut events of the same
    instant) as heals. The network was never whole then; a real run logs only nemesis.grudge there. A heal
    followed at its instant by a new partition is a grudge replaced, not a heal; the heal at 12 s is still judged
    (a final plan 2.5 s after it is invalid)."""
    site = ["e1", "e2", "e3", "e4"]
    log = [deployed(), *(edge_deployed(0.01, n) for n in site),
           plan_final(0.3, "F1@mgr", [a("store", "e2/edge")]), assigned(0.3, "e2", "store", "F1@mgr"),
           *cut(3.0, ["mgr"], site), *cut(6.0, ["mgr"], ["e1", "e2"], ["e3", "e4"]), *cut(9.0, ["mgr"], site)]
    ok = log + [heal(12.0), plan_final(12.24, "F2@mgr", [a("store", "e2/edge")], ratified=True)]
    v = CHECKERS["ratified-after-heal"].check(ok)
    assert v.status == "valid" and v.summary.startswith("1 heal,"), v
    late = log + [heal(12.0), plan_final(14.5, "F2@mgr", [a("store", "e2/edge")], ratified=True)]
    v = CHECKERS["ratified-after-heal"].check(late)
    assert v.status == "invalid" and "final plan 2.500s after the heal" in v.summary, v
    # a heal at the end of a grudge and a new grudge later are a heal (the network was whole in between)
    apart = log + [heal(12.0), *cut(12.5, ["mgr"], site)[1:], plan_final(14.5, "F2@mgr", [a("store", "e2/edge")])]
    assert CHECKERS["ratified-after-heal"].check(apart).status == "invalid"
