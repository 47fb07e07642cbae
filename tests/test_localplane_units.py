"""Unit tests of the local-plane state machines, driving handle/tick directly, and of its checkers.

Source: shared/seeds/004_726d366e1cefdd53.txt ([0061]-[0065] lookups and
governance, [0075] fit as a ratio, [0085]-[0089] proposals and remedies).
"""

from __future__ import annotations

import random

import pytest

from protocols.core import Emit, Send, SetTimer, TimerFired
from protocols.localplane import DeploymentManager, EdgeNode, Negotiation, PlaneRole, build_ir, required_assent, rule_for
from protocols.localplane.ir import synthetic_fit
from protocols.localplane.messages import (
    Announce,
    Answer,
    Assignment,
    Deploy,
    FitReport,
    Governance,
    Heartbeat,
    HeartbeatAck,
    LeaderHeartbeat,
    Propose,
    RoleSpec,
    SiteQuery,
    SiteStatus,
    Vote,
    VoteRequest,
)
from topologies.edge.checks import (
    GovernanceApplied,
    OneLeaderPerIslandTerm,
    PlanHolders,
    RatifiedAfterHeal,
    check_governance,
    check_leaders,
    check_plan_holders,
    check_ratified_after_heal,
)
from transport.codec import decode, encode

M = "mgr/manager"


def kinds(effects):
    return [e.kind for e in effects if isinstance(e, Emit)]


def sends(effects, typ=None):
    return [e for e in effects if isinstance(e, Send) and (typ is None or isinstance(e.msg, typ))]


# -- the intermediate representation and governance ([0061]-[0065]) ------------------------------


def test_build_ir_looks_up_roles_isolated_sets_management_and_governance():
    ir = build_ir({"name": "shop", "functionalities": ["storage"], "limits": {"scale": 2.0, "size_threshold": 5}})
    assert [r.name for r in ir.roles] == ["store"] and ir.roles[0].target == 200.0
    assert ir.isolated_roles[0].target == 240.0  # the isolated set is more conservative
    assert [r.name for r in ir.management] == ["leader", "validator", "reporter"]
    assert ir.governance.size_threshold == 5
    assert decode(encode(ir)) == ir  # it travels
    with pytest.raises(ValueError):
        build_ir({"functionalities": ["teleport"]})


@pytest.mark.parametrize("size,isolated,rule,need", [
    (3, False, "assignee", 1), (7, True, "unanimous", 7), (8, True, "ratio:0.67", 6), (32, True, "ratio:0.67", 22),
])
def test_governance_rule_and_required_assent(size, isolated, rule, need):
    g = Governance()
    assert rule_for(g, size, isolated) == rule
    assert required_assent(rule, size) == need
    assert required_assent("majority", 8) == 5


def test_synthetic_fit_reports_capability_as_a_ratio_of_the_metric():
    spec = RoleSpec(name="store", metric="tx_per_s", target=100.0)
    f = synthetic_fit(spec, {"tx_per_s": 120.0}, random.Random(1), noise=0.0)
    assert f == 1.2
    assert synthetic_fit(spec, {}, random.Random(1)) == 0.0


# -- the edge node --------------------------------------------------------------------------------


def deployed(addr="e0/edge", members=("e0/edge", "e1/edge", "e2/edge"), **kw):
    e = EdgeNode(addr, M, capability={"tx_per_s": 150.0, "req_per_s": 300.0}, free=0.9,
                 criteria={"backup_power": 1.0, "connectivity": 0.9}, rng=random.Random(1), **kw)
    ir = build_ir({"functionalities": ["storage", "frontend"]})
    out = e.handle(Deploy(ir=ir, members=list(members), epoch=7), M, 0.0)
    assert "edge.deployed" in kinds(out)
    return e


def isolate(e, t: float = 0.6) -> list:
    """The manager's timer fires at ``t``, the peers are asked, and none answers within the probe window."""
    e.handle(TimerFired("manager"), e.address, t)
    return e.handle(TimerFired("manager"), e.address, t + e.probe_window)


def test_missing_heartbeats_ask_the_site_then_declare_isolation_and_start_an_election():
    e = deployed()
    out = e.handle(Heartbeat(epoch=7, seq=1), M, 0.1)
    assert sends(out, HeartbeatAck) and SetTimer("manager", 0.1 + e.isolation_after) in out
    out = e.handle(TimerFired("manager"), e.address, 0.6)
    assert {s.to for s in sends(out, SiteQuery)} == {"e1/edge", "e2/edge"} and not e.isolated
    out = e.handle(SiteStatus(heard_ago=0.5, isolated=False), "e1/edge", 0.61)  # lost it when we did: no
    assert not kinds(out) and not e.isolated
    out = e.handle(SiteStatus(heard_ago=0.1, isolated=True), "e2/edge", 0.62)  # cut off itself: no
    assert kinds(out)[:2] == ["edge.isolation_declared", "plane.announce"]
    assert {s.to for s in sends(out, Announce)} == {"e1/edge", "e2/edge"} and e.term == 1


def test_a_silent_site_is_declared_isolated_after_the_probe_window():
    e = deployed()
    e.handle(Heartbeat(epoch=7, seq=1), M, 0.1)
    e.handle(TimerFired("manager"), e.address, 0.6)
    out = e.handle(TimerFired("probe_retry"), e.address, 0.6 + e.retry_every)
    assert {s.to for s in sends(out, SiteQuery)} == {"e1/edge", "e2/edge"}  # asked again: answers can be lost
    out = e.handle(TimerFired("manager"), e.address, 0.6 + e.probe_window)
    assert kinds(out)[:2] == ["edge.isolation_declared", "plane.announce"]


def test_a_node_that_lost_only_its_uplink_follows_the_site():
    e = deployed()
    e.handle(Heartbeat(epoch=7, seq=1), M, 0.1)
    e.handle(TimerFired("manager"), e.address, 0.6)
    out = e.handle(SiteStatus(heard_ago=0.05, isolated=False), "e1/edge", 0.61)  # heard it 0.45 s after us
    assert kinds(out) == ["edge.uplink_lost"] and not e.isolated
    # it re-checks once e1's word is old (timed on its own clock from receipt), and asks again then
    t = 0.61 - 0.05 + e.site_fresh
    assert SetTimer("manager", t) in out
    out = e.handle(TimerFired("manager"), e.address, t)
    assert sends(out, SiteQuery) and not e.isolated
    # a node that hears the manager answers a query with a duration, not an instant of its clock
    assert "edge.uplink_restored" in kinds(e.handle(Heartbeat(epoch=7, seq=2), M, 5.0)) and not e.uplink_lost
    out = e.handle(SiteQuery(), "e1/edge", 5.25)
    assert sends(out, SiteStatus)[0].msg == SiteStatus(heard_ago=0.25, isolated=False, plan="")


def test_a_node_that_declared_isolation_alone_follows_the_site_when_a_peer_hears_the_manager():
    e = deployed()
    e.handle(Heartbeat(epoch=7, seq=1), M, 0.1)
    isolate(e)
    assert e.isolated and e.role is PlaneRole.ELECTING
    # its announcement reaches a peer that hears the manager and follows no plane: the peer says so
    peer = deployed("e1/edge")
    peer.handle(Heartbeat(epoch=7, seq=5), M, 0.6)
    ans = sends(peer.handle(Announce(term=1, score=1.0), "e0/edge", 0.66), SiteStatus)
    assert ans and ans[0].msg.heard_ago == pytest.approx(0.06) and not ans[0].msg.isolated
    out = e.handle(ans[0].msg, "e1/edge", 0.67)  # in no plane yet: it follows the site at once
    assert "edge.isolation_ended" in kinds(out) and "edge.uplink_lost" in kinds(out)
    assert not e.isolated and e.role is PlaneRole.NONE and not e.holdings


def test_a_member_of_a_plane_waits_site_grace_for_its_own_beat_before_it_follows_the_site():
    e = deployed()
    e.handle(Heartbeat(epoch=7, seq=1), M, 0.1)
    isolate(e)
    hb = LeaderHeartbeat(term=1, plan_id="T1@e2", version=1, lease=0.4, complete=True, members=3, score=9.0,
                         assignments=[Assignment(role="store", holder="e0/edge", target=100.0)])
    e.handle(hb, "e2/edge", 0.7)
    assert e.role is PlaneRole.FOLLOWER and "store#0/1" in e.holdings
    # maybe a heal that brings the manager back to this node too: it waits for a beat of its own
    assert not kinds(e.handle(SiteStatus(heard_ago=0.02, isolated=False), "e1/edge", 0.72)) and e.isolated
    e.handle(hb, "e2/edge", 0.8)
    out = e.handle(SiteStatus(heard_ago=0.02, isolated=False), "e1/edge", 0.72 + e.site_grace)
    assert "edge.isolation_ended" in kinds(out) and "edge.uplink_lost" in kinds(out)
    assert not e.isolated and e.role is PlaneRole.NONE and not e.holdings
    # a beat of its leader's no longer makes it take a role (it is not isolated)
    e.handle(hb, "e2/edge", 1.0)
    assert not e.holdings


def test_a_lone_best_node_becomes_candidate_and_leader_with_a_majority_of_its_view():
    e = deployed()
    isolate(e)
    e.handle(Announce(term=1, score=-5.0), "e1/edge", 0.61)
    e.handle(Announce(term=1, score=-5.0), "e2/edge", 0.61)
    out = e.handle(TimerFired("gather"), e.address, 0.75)
    assert "plane.candidate" in kinds(out) and len(sends(out, VoteRequest)) == 2
    out = e.handle(Vote(term=1, granted=True), "e1/edge", 0.76)
    assert "plane.leader" in kinds(out) and e.lead is not None


def test_a_node_votes_once_per_term_and_only_for_the_best_it_heard():
    e = deployed()
    isolate(e)
    view = ["e0/edge", "e1/edge", "e2/edge"]
    out = e.handle(VoteRequest(term=1, score=-9.0, view=view), "e1/edge", 0.65)
    assert sends(out, Vote)[0].msg.granted is False  # e0 itself is better
    out = e.handle(VoteRequest(term=1, score=99.0, view=view), "e2/edge", 0.66)
    assert sends(out, Vote)[0].msg.granted is True
    out = e.handle(VoteRequest(term=1, score=100.0, view=view), "e1/edge", 0.67)
    assert sends(out, Vote)[0].msg.granted is False  # already voted in term 1


def test_a_connected_node_refuses_to_vote():
    e = deployed()
    e.handle(Heartbeat(epoch=7, seq=1), M, 0.1)
    out = e.handle(VoteRequest(term=1, score=99.0, view=["e0/edge", "e1/edge"]), "e1/edge", 0.2)
    assert sends(out, Vote)[0].msg.granted is False


def test_propose_is_accepted_by_free_resources_and_voted_against_when_distrusted():
    e = deployed(distrust=["e2/edge"])
    ok = e.handle(Propose(plan_id="T1@e1", round=1, role="store", candidate=e.address, target=120, load=0.8), "e1/edge", 1)
    assert sends(ok, Answer)[0].msg.yes
    no = e.handle(Propose(plan_id="T1@e1", round=2, role="frontend", candidate=e.address, target=240, load=0.5), "e1/edge", 1)
    assert not sends(no, Answer)[0].msg.yes  # 0.8 already committed of 0.9 free
    vote = e.handle(Propose(plan_id="T1@e1", round=3, role="frontend", candidate="e2/edge", target=240, load=0.5), "e1/edge", 1)
    assert not sends(vote, Answer)[0].msg.yes


# -- negotiation ([0085]-[0089], [0121]-[0124]) ---------------------------------------------------


def rep(fit, free=1.0):
    return FitReport(plan_id="P", fits={"store": fit}, criteria={}, free=free)


def answer_all(neg, out, yes_for):
    """Answer every Propose in ``out`` (the candidate per ``yes_for``, voters yes); returns all effects."""
    allout = list(out)
    while True:
        props = sends(out, Propose)
        if not props:
            return allout
        out = []
        for s in props:
            p = s.msg
            yes = yes_for(p) if s.to == p.candidate else True
            out += neg.on_answer(Answer(plan_id=p.plan_id, round=p.round, yes=yes), s.to, 0.0)
        allout += out


def test_negotiation_moves_to_the_next_candidate_then_lowers_then_splits():
    spec = RoleSpec(name="store", metric="tx_per_s", target=100.0, min_ratio=0.8, max_split=2)
    fits = {"a": rep(1.0), "b": rep(0.9), "c": rep(0.6)}
    neg = Negotiation(plan_id="P", owner="a", roles=[spec], fits=fits, gov=Governance(size_threshold=2),
                      isolated=True, timeout=1.0, prefix="plane")
    # everybody refuses anything above 50 tx/s: next candidate, lower (85), then split (2 x 50)
    out = answer_all(neg, neg.start(0.0), lambda p: p.target <= 50.0)
    ks = kinds(out)
    assert "plane.metrics_lowered" in ks and "plane.role_split" in ks and neg.done
    assert sorted((a.share, a.shares, a.target) for a in neg.assignments) == [(0, 2, 50.0), (1, 2, 50.0)]
    assert len({a.holder for a in neg.assignments}) == 2


def test_negotiation_declares_a_role_unfilled_when_every_remedy_fails():
    spec = RoleSpec(name="store", metric="tx_per_s", target=100.0, min_ratio=1.0, max_split=1)
    neg = Negotiation(plan_id="P", owner="a", roles=[spec], fits={"a": rep(1.5)}, gov=Governance(),
                      isolated=False, timeout=1.0, prefix="manager")
    out = answer_all(neg, neg.start(0.0), lambda p: False)
    assert "manager.role_unfilled" in kinds(out) and neg.unfilled == ["store"] and neg.done


def test_missing_votes_count_as_no_at_the_timeout():
    spec = RoleSpec(name="store", metric="tx_per_s", target=100.0)
    neg = Negotiation(plan_id="P", owner="a", roles=[spec], fits={"a": rep(1.5), "b": rep(1.2)},
                      gov=Governance(size_threshold=8), isolated=True, timeout=1.0, prefix="plane")
    out = neg.start(0.0)
    p = sends(out, Propose)[0].msg
    neg.on_answer(Answer(plan_id="P", round=p.round, yes=True), p.candidate, 0.1)
    out = neg.on_timeout(1.0)
    a = next(e.fields for e in out if isinstance(e, Emit) and e.kind == "plane.assent")
    assert a["outcome"] == "rejected" and a["missing"] == 1 and a["timeout"]


def test_manager_deploys_and_heartbeats_every_edge():
    m = DeploymentManager(M, ["e0/edge", "e1/edge"], {"functionalities": ["storage"]}, rng=random.Random(1))
    out = m.tick(0.0)
    assert "manager.deployed" in kinds(out)
    assert len(sends(out, Deploy)) == 2 and len(sends(out, Heartbeat)) == 2


# -- checkers can fail ------------------------------------------------------------------------------


def ev(t, node, kind, **fields):
    return {"time": t, "node": node, "actor": "edge" if node != "mgr" else "manager", "kind": kind, "fields": fields}


def test_two_leaders_of_one_term_in_one_island_are_caught():
    log = [ev(1.0, "e0", "plane.leader", term=1, voters=["e0/edge", "e1/edge"]),
           ev(1.1, "e2", "plane.leader", term=1, voters=["e2/edge", "e3/edge"])]
    assert not check_leaders(log)["ok"]
    assert OneLeaderPerIslandTerm().check(log).status == "invalid"
    # the same two leaders in two islands are fine
    split = [ev(0.5, "sim", "net.partition", islands=[["e0", "e1"], ["e2", "e3"]], rest=[])] + log
    assert check_leaders(split)["ok"]
    # overlapping electorates are caught even across islands
    bad = split + [ev(1.2, "e1", "plane.leader", term=1, voters=["e1/edge", "e2/edge"])]
    assert not check_leaders(bad)["ok"]


def test_a_role_with_two_holders_is_caught():
    plan = ev(1.0, "e0", "plane.plan_complete", splits={}, assignments=[
        {"role": "store", "share": 0, "shares": 1, "holder": "e1/edge"},
        {"role": "store", "share": 0, "shares": 1, "holder": "e2/edge"}])
    assert not check_plan_holders([plan])["ok"]
    undeclared = ev(1.0, "e0", "plane.plan_complete", splits={}, assignments=[
        {"role": "store", "share": 0, "shares": 2, "holder": "e1/edge"},
        {"role": "store", "share": 1, "shares": 2, "holder": "e2/edge"}])
    assert not check_plan_holders([undeclared])["ok"]
    held = [ev(1.0, "e1", "edge.role_assigned", role="store", key="store#0/1", plan_id="T1@e0", temporary=True),
            ev(1.1, "e2", "edge.role_assigned", role="store", key="store#0/1", plan_id="T1@e0", temporary=True)]
    assert PlanHolders().check(held).status == "invalid"
    assert PlanHolders().check([]).status == "unknown"


def test_a_wrong_governance_rule_is_caught():
    dep = ev(0.0, "mgr", "manager.deployed", governance={"size_threshold": 8, "connected": "assignee",
                                                         "isolated_below": "unanimous", "isolated_above": "ratio:0.67"})
    good = ev(1.0, "e0", "plane.assent", electorate=5, isolated=True, rule="unanimous", required=5, yes=5, no=0,
              accepted=True, outcome="agreed")
    assert check_governance([dep, good])["ok"]
    lax = dict(good, fields={**good["fields"], "rule": "majority", "required": 3, "yes": 3})
    assert not check_governance([dep, lax])["ok"]
    wrong_outcome = dict(good, fields={**good["fields"], "yes": 4})
    assert GovernanceApplied().check([dep, wrong_outcome]).status == "invalid"


def test_two_holders_after_reconnect_and_an_unratified_plan_are_caught():
    base = [ev(0.5, "sim", "net.partition", islands=[["mgr"], ["e1", "e2"]], rest=[]),
            ev(1.0, "e1", "edge.role_assigned", role="store", key="store#0/1", plan_id="T1@e1", temporary=True),
            ev(2.0, "sim", "net.heal")]
    # the final holder takes the role while the temporary one still holds it
    double = base + [ev(2.1, "e2", "edge.role_assigned", role="store", key="store#0/1", plan_id="F2@mgr",
                        temporary=False, converted=False),
                     ev(2.2, "mgr", "manager.plan_final", plan_id="F2@mgr", ratified=False, assignments=[])]
    assert not check_ratified_after_heal(double)["ok"]
    # no final plan within the bound
    late = base + [ev(9.0, "e1", "edge.answer")]
    assert RatifiedAfterHeal(bound=2.0).check(late).status == "invalid"
    # a clean handover passes
    ok = base + [ev(2.1, "e1", "edge.role_relinquished", role="store", key="store#0/1", plan_id="T1@e1"),
                 ev(2.15, "e2", "edge.role_assigned", role="store", key="store#0/1", plan_id="F2@mgr",
                    temporary=False, converted=False),
                 ev(2.2, "mgr", "manager.plan_final", plan_id="F2@mgr", ratified=False, assignments=[])]
    assert check_ratified_after_heal(ok)["ok"]


def test_a_node_that_lost_only_its_uplink_asks_the_manager_once_a_beat():
    e = deployed()
    e.handle(Heartbeat(epoch=7, seq=1), M, 0.1)
    e.handle(TimerFired("manager"), e.address, 0.6)
    e.handle(SiteStatus(heard_ago=0.05, isolated=False), "e1/edge", 0.61)
    assert e.uplink_lost
    out = e.handle(TimerFired("renew"), e.address, 0.62)
    assert [s.msg.renew for s in sends(out, HeartbeatAck)] == [True] and SetTimer("renew", 0.62 + e.heartbeat_interval) in out


def test_an_announcement_answers_the_site_question_for_its_sender():
    """A node asking the site whether it hears the manager takes a peer's announcement (only a node that asked
    and found the site cut off announces) as the answer: it declares isolation at once, its election counting
    the announcement, instead of a probe window later."""
    e = deployed()
    e.handle(Heartbeat(epoch=7, seq=1), M, 0.1)
    e.handle(TimerFired("manager"), e.address, 0.6)
    out = e.handle(Announce(term=1, score=-5.0), "e1/edge", 0.601)
    assert not sends(out, SiteStatus)  # its own word (no beat for 0.5 s) could not count
    assert kinds(out)[:2] == ["edge.isolation_declared", "plane.announce"] and e.heard.get("e1/edge") == -5.0


def test_an_edge_node_s_probe_stream_is_the_same_in_every_process():
    """A seeded simulation must replay the same in every process. EdgeNode seeded the stream that picks the peers
    it asks (SiteQuery) with hash(rng.getstate()): that state tuple ends in None, whose hash on Python 3.11 is its
    address, so every process drew other peers - the same seed of a simulated test passed in one run and failed in
    the next (test_two_nodes_that_lose_their_uplinks_while_the_site_is_lossy_still_follow_the_site at 70% loss,
    seed 22 once in 40; merge step-downs 0.24-0.54 s for one seed across runs)."""
    import subprocess
    import sys

    code = ("import random; from protocols.localplane import EdgeNode; "
            "e = EdgeNode('e1/edge', 'mgr/manager', rng=random.Random('7/e1/edge')); "
            "print([e.probe_rng.random() for _ in range(3)])")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1])).stdout
            for _ in range(3)}
    assert len(runs) == 1, f"the probe stream differs between processes: {runs}"


def test_a_seeded_simulation_of_a_site_replays_the_same_in_every_process():
    """The same seed, four processes with different string hashes: byte-identical event logs. The validator sent
    its Validation to the leader and the reporter in the order of a set of strings, {leader, reporter}, which
    changes with PYTHONHASHSEED - and with it the simulated network's draws for every later message."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("from tests.localplane_sim import build_edge, toml_profiles, toml_timings\n"
            "e, m = toml_timings()\n"
            "s = build_edge(1, 20, profiles=toml_profiles(), edge_params=e, manager_params=m, trace=True)\n"
            "s.sim.schedule(3.0, s.isolate)\n"
            "s.run(6.0)\n"
            "print('\\n'.join(s.sim.event_log.lines()))\n")
    root = Path(__file__).resolve().parents[1]
    logs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=str(root),
                           env={**os.environ, "PYTHONHASHSEED": h}).stdout for h in ("1", "2", "3", "4")]
    assert logs[0].count("\n") > 1000 and "localplane.Validation" in logs[0]
    for other in logs[1:]:
        if other != logs[0]:
            a, b = logs[0].splitlines(), other.splitlines()
            i = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
            raise AssertionError(f"event {i} differs:\n  {a[i][:300]}\n  {b[i][:300]}")
