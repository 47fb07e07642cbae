"""Loss tolerance of the local control plane (issue 18, deliverable 2), in the deterministic simulator.

Source: shared/seeds/004_726d366e1cefdd53.txt [0085]-[0089] (a provisional
proposal, responses from the data processing systems, the next candidate on
rejection, lowering or splitting only when nobody accepts), [0072]-[0077]
(fit reports from the systems of the island), [0093]-[0099] (the temporary
plan and the reporter's record reach the manager on reconnect). A lost
message is not a refusal: every request of the negotiation and of the
manager's final-plan path is retransmitted until answered or until its target
is known down, a lapsed lease is regranted at once, unfilled roles are retried
while isolated and late members are asked for their fit.

Every seed runs the four edge checkers of topologies/edge/checks.py on its
event log; every assertion names its seed (replay it with the same seed).
"""

from __future__ import annotations

import random

import pytest

from protocols.core import Emit, Send, SetTimer, TimerFired
from protocols.localplane import DeploymentManager, EdgeNode, Negotiation, build_ir
from protocols.localplane.messages import (
    Answer,
    Assignment,
    Commit,
    Deploy,
    FitReport,
    FitRequest,
    Governance,
    Heartbeat,
    HeartbeatAck,
    Propose,
    RoleSpec,
)
from tests.localplane_sim import all_held_since, build_edge, held_at, toml_profiles, toml_timings
from topologies.edge.checks import (
    ClientsSingleHolder,
    GovernanceApplied,
    HolderlessGap,
    OneLeaderPerIslandTerm,
    PlanHolders,
    RatifiedAfterHeal,
    check_ratified_after_heal,
)

TOML_EDGE, TOML_MANAGER = toml_timings()
HANDOVER_BOUND = RatifiedAfterHeal().handover_bound  # 0.5 s: the checker's bound on a holderless gap
CONNECTED = {"store", "frontend"}
ISOLATED = {"leader", "validator", "reporter", "store", "frontend"}


# holderless-gap in every simulated run: 2.0 s (the goal; the checker's default, 3.0 s, is the manager's stated
# vacancy bound at edge.toml's timings, for real processes). The longest gap over the 288 judged runs of
# tests/test_localplane*.py when this was set: 1.25 s (edge.toml's fleet, skewed clocks, its own fault schedule).
GAP_BOUND = 2.0


def judge(s, bound: float = 2.0, gap_bound: float = GAP_BOUND) -> dict[str, str]:
    """Every edge checker on the log (holderless-gap in every run, within ``gap_bound``; clients-single-holder:
    unknown without clients); none may say invalid.
    Returns checker -> status."""
    events = s.events()
    out = {}
    for c in (OneLeaderPerIslandTerm(), PlanHolders(), GovernanceApplied(), RatifiedAfterHeal(bound=bound),
              HolderlessGap(bound=gap_bound), ClientsSingleHolder()):
        v = c.check(events)
        assert v.status != "invalid", f"seed={s.seed}: {c.name}: {v.summary} {v.evidence[:2]}"
        out[c.name] = v.status
    return out


def assert_final_plan_in_force(s, what: str) -> None:
    """The manager is idle with a final plan covering every connected role, held by its holders and nobody else."""
    m = s.manager()
    assert m.phase == "idle" and m.final_id, f"seed={s.seed} {what}: manager in {m.phase}, final {m.final_id!r}"
    assert {a.role for a in m.final} == CONNECTED, f"seed={s.seed} {what}: final plan {m.final}"
    for a in m.final:
        k = f"{a.role}#{a.share}/{a.shares}"
        h = s.edge(a.holder).holdings.get(k)
        assert h is not None and h.plan_id == m.final_id, f"seed={s.seed} {what}: {a.holder} does not hold {k}"
    held = sorted((x, k) for x in s.edges for k in s.edge(x).holdings)
    assert len(held) == len(m.final), f"seed={s.seed} {what}: holdings {held} vs plan {m.final}"


# -- 50 % loss on the manager's links, after a heal (the checker then judges every holderless gap) ----------

MANAGER_LOSS_SEEDS = tuple(range(1, 21))


@pytest.mark.parametrize("seed", MANAGER_LOSS_SEEDS)
def test_half_the_manager_messages_lost_leaves_no_role_without_a_holder_past_the_bound(seed):
    """edge.toml's timing, 12 random nodes: the manager isolated 2-4 s (so ratified-after-heal has a heal and
    judges every later gap), then its links lose half of all messages, both ways, 7-11 s. A holder's lease is
    renewed on request and a lapsed one regranted at once, so no connected role is without a holder for more
    than the handover bound; once the links are sound, the final plan in force covers every connected role."""
    s = build_edge(seed, 12, edge_params=TOML_EDGE, manager_params=TOML_MANAGER)
    s.sim.schedule(2.0, s.isolate)
    s.sim.schedule(4.0, s.heal)
    s.sim.schedule(7.0, lambda: s.flaky(0.5))
    s.sim.schedule(11.0, s.steady)
    s.run(15.0)
    v = judge(s)
    assert v["ratified-after-heal"] == "valid", f"seed={seed}: {v}"
    r = check_ratified_after_heal(s.events(), bound=2.0, handover_bound=HANDOVER_BOUND)
    assert r["ok"] and r["heals"] == 1, f"seed={seed}: {r['violations'][:2]}"
    assert_final_plan_in_force(s, "after 50% loss on the manager's links")


@pytest.mark.parametrize("seed", (1, 2, 3, 4, 5))
def test_the_edge_toml_fleet_under_its_own_fault_schedule(seed):
    """The 20 profiles and the timing of topologies/edge.toml under the faults of its [[chaos]] entries: the
    manager isolated 3-7 s, the deployment (with the manager) split in two halves 12-16 s, then the manager's
    links lossy at 50 % 21-25 s. `fleetplane chaos topologies/edge.toml --sim` failed here: store and
    frontend had no holder for 2.2 s and 4.6 s during the loss."""
    s = build_edge(seed, 20, profiles=toml_profiles(), edge_params=TOML_EDGE, manager_params=TOML_MANAGER)
    half = s.edges[::2]
    rest = [e for e in s.edges if e not in half]
    s.sim.schedule(3.0, s.isolate)
    s.sim.schedule(7.0, s.heal)
    s.sim.schedule(12.0, lambda: s.sim.partition([["mgr"] + [e.partition("/")[0] for e in half],
                                                  [e.partition("/")[0] for e in rest]]))
    s.sim.schedule(16.0, s.heal)
    s.sim.schedule(21.0, lambda: s.flaky(0.5))
    s.sim.schedule(25.0, s.steady)
    s.run(28.0)
    v = judge(s)
    assert v["ratified-after-heal"] == "valid", f"seed={seed}: {v}"
    assert_final_plan_in_force(s, "after the edge.toml schedule")


# -- loss inside an isolated site ----------------------------------------------------------------------------

SITE_SEEDS = tuple(range(1, 31))
ISOLATE_AT = 1.0
# seconds from the first isolation_declared until every role stays held (100 seeds measured: at most 1.06 s at 30 %)
FILL_BOUND = 1.5


@pytest.mark.parametrize("loss", [0.1, 0.3])
@pytest.mark.parametrize("seed", SITE_SEEDS)
def test_loss_inside_an_isolated_site_still_fills_every_role_within_the_bound(seed, loss):
    """8 random nodes (module timing) isolated from the manager at 1 s; every link among them loses ``loss`` of
    its messages. Fit requests, proposals and votes are retransmitted, so silence is not read as refusal: every
    role of the isolated set and every management role is held (every share, under one plan) within
    FILL_BOUND of the isolation and stays held; no checker finds two leaders, two holders or a wrong rule."""
    s = build_edge(seed, 8)
    s.sim.schedule(ISOLATE_AT, s.isolate)
    s.sim.schedule(ISOLATE_AT, lambda: s.lossy_site(loss))
    s.run(ISOLATE_AT + 6.0)
    judge(s)
    events = s.events()
    declared = min(e["time"] for e in events if e["kind"] == "edge.isolation_declared")
    full = all_held_since(events, ISOLATED, declared)
    assert full is not None, f"seed={seed} loss={loss}: roles held at the end: {held_at(events, s.sim.now)}"
    assert full - declared <= FILL_BOUND, \
        f"seed={seed} loss={loss}: every role held only {full - declared:.3f}s after isolation (bound {FILL_BOUND}s)"
    leads = [x for x in s.edges if s.edge(x).lead is not None]
    assert len(leads) == 1, f"seed={seed} loss={loss}: leaders at the end: {leads}"
    lead = s.edge(leads[0]).lead
    assert lead.complete and not lead.unfilled, f"seed={seed} loss={loss}: unfilled {lead.unfilled}"


# -- the rules, one state machine at a time ------------------------------------------------------------------

M = "mgr/manager"


def kinds(effects) -> list[str]:
    return [e.kind for e in effects if isinstance(e, Emit)]


def sends(effects, typ=None) -> list[Send]:
    return [e for e in effects if isinstance(e, Send) and (typ is None or isinstance(e.msg, typ))]


def fit(value: float) -> FitReport:
    return FitReport(plan_id="P", fits={"store": value}, criteria={}, free=1.0)


def test_a_silent_voter_is_asked_again_and_its_silence_is_a_no_only_once_the_retries_are_spent():
    spec = RoleSpec(name="store", metric="tx_per_s", target=100.0)
    neg = Negotiation(plan_id="P", owner="a", roles=[spec], fits={"a": fit(1.5), "b": fit(1.2)},
                      gov=Governance(size_threshold=8), isolated=True, timeout=1.0, prefix="plane", retry_every=0.25)
    out = neg.start(0.0)
    p = sends(out, Propose)[0].msg
    assert p.candidate == "a" and SetTimer(neg.timer_key, 0.25) in out  # unanimous of 2: b's vote is needed
    assert neg.on_answer(Answer(plan_id="P", round=p.round, yes=True), "a", 0.1) == []
    for t in (0.25, 0.5, 0.75):  # b is silent: asked again, nothing decided
        out = neg.on_timeout(t)
        assert [s.to for s in sends(out, Propose)] == ["b"] and kinds(out) == ["plane.proposal_retry"], t
    # a duplicate or a late answer changes nothing
    assert neg.on_answer(Answer(plan_id="P", round=p.round, yes=True), "a", 0.8) == []
    assert neg.on_answer(Answer(plan_id="P", round=p.round - 1, yes=False), "b", 0.8) == []
    out = neg.on_timeout(1.0)  # the round's timeout: the retries are spent, silence is a no
    a = next(e.fields for e in out if isinstance(e, Emit) and e.kind == "plane.assent")
    assert a["outcome"] == "rejected" and a["missing"] == 1 and a["timeout"] and a["attempts"] == 4


def test_an_answer_that_arrives_after_a_retransmission_decides_the_round():
    spec = RoleSpec(name="store", metric="tx_per_s", target=100.0)
    neg = Negotiation(plan_id="P", owner="a", roles=[spec], fits={"a": fit(1.5), "b": fit(1.2)},
                      gov=Governance(size_threshold=8), isolated=True, timeout=1.0, prefix="plane", retry_every=0.25)
    p = sends(neg.start(0.0), Propose)[0].msg
    neg.on_answer(Answer(plan_id="P", round=p.round, yes=True), "a", 0.1)
    neg.on_timeout(0.25)
    out = neg.on_answer(Answer(plan_id="P", round=p.round, yes=True), "b", 0.3)
    a = next(e.fields for e in out if isinstance(e, Emit) and e.kind == "plane.assent")
    assert a["outcome"] == "agreed" and not a["timeout"] and neg.done and neg.assignments[0].holder == "a"


def test_a_member_known_down_is_not_waited_for_and_not_proposed():
    spec = RoleSpec(name="store", metric="tx_per_s", target=100.0)
    neg = Negotiation(plan_id="P", owner="a", roles=[spec], fits={"a": fit(1.5), "b": fit(1.2), "c": fit(1.1)},
                      gov=Governance(size_threshold=2), isolated=True, timeout=1.0, prefix="plane", retry_every=0.25)
    p = sends(neg.start(0.0), Propose)[0].msg
    assert p.candidate == "a"  # ratio 0.67 of 3: two yes votes needed
    out = neg.member_down("a", 0.1)  # the candidate is down: the round is rejected at once, the next one skips it
    a = next(e.fields for e in out if isinstance(e, Emit) and e.kind == "plane.assent")
    assert a["outcome"] == "rejected" and a["down"] == ["a"] and not a["timeout"]
    nxt = sends(out, Propose)
    assert nxt and {s.msg.candidate for s in nxt} == {"b"} and "a" not in {s.to for s in nxt}


def deployed_edge(addr: str = "e0/edge") -> EdgeNode:
    e = EdgeNode(addr, M, capability={"tx_per_s": 150.0, "req_per_s": 300.0}, free=0.9,
                 criteria={"backup_power": 1.0, "connectivity": 0.9}, rng=random.Random(1))
    e.handle(Deploy(ir=build_ir({"functionalities": ["storage", "frontend"]}), members=[addr, "e1/edge", "e2/edge"],
                    epoch=7), M, 0.0)
    return e


def test_a_proposal_sent_again_gets_the_same_answer_and_a_lost_withdraw_leaves_no_commitment():
    e = deployed_edge()
    p = Propose(plan_id="T1@e1", round=1, role="store", candidate=e.address, target=120, load=0.8)
    first = e.handle(p, "e1/edge", 1.0)
    again = e.handle(p, "e1/edge", 1.1)
    assert sends(first, Answer)[0].msg == sends(again, Answer)[0].msg and sends(first, Answer)[0].msg.yes
    assert kinds(first) == ["edge.answer"] and kinds(again) == []  # one decision, one event
    # the round failed and its Withdraw was lost; the next proposal says this node holds nothing agreed in the plan
    p2 = Propose(plan_id="T1@e1", round=2, role="frontend", candidate=e.address, target=240, load=0.5, agreed=[])
    assert sends(e.handle(p2, "e1/edge", 1.2), Answer)[0].msg.yes  # 0.5 fits in 0.9: the 0.8 is forgotten


def test_a_fit_request_sent_again_is_answered_with_the_same_evaluation():
    e = deployed_edge()
    req = FitRequest(plan_id="F1@mgr", term=0, roles=list(e.ir.roles), isolated=False)
    first = e.handle(req, M, 1.0)
    again = e.handle(req, M, 1.1)
    assert sends(first, FitReport)[0].msg.fits == sends(again, FitReport)[0].msg.fits
    assert kinds(first) == ["edge.fit_reported"] and kinds(again) == []


def test_a_lease_that_missed_a_renewal_is_renewed_on_request():
    """The holder asks (HeartbeatAck renew) every retry_every once its lease missed a beat; the manager answers at
    once with a beat for it alone, under the same grants and lease accounting."""
    m = DeploymentManager(M, ["e0/edge"], {"functionalities": ["storage"]}, rng=random.Random(1))
    m.tick(0.0)
    e = deployed_edge()
    e.epoch = m.epoch
    store = Assignment(role="store", holder="e0/edge", target=100.0)
    e.handle(Commit(plan_id="F1@mgr", assignments=[store], echo=0.0, lease=0.5, epoch=m.epoch), M, 0.01)
    out = e.handle(Heartbeat(epoch=m.epoch, seq=2, grant=["store#0/1"], echo=0.1, lease=0.5), M, 0.21)
    assert e.holdings["store#0/1"].lease == 0.6
    renew = [x for x in out if isinstance(x, SetTimer) and x.key == "renew"]
    # a beat echoes the ack of the beat before: 0.3 s are left right before the next; below 0.275 one was missed
    assert renew and abs(renew[0].at - (0.6 - (0.5 - 2.25 * 0.1))) < 1e-9
    out = e.handle(TimerFired("renew"), e.address, renew[0].at)
    req = sends(out, HeartbeatAck)[0].msg
    assert req.renew and req.holding == ["store#0/1"] and "edge.renew_requested" in kinds(out)
    assert SetTimer("renew", renew[0].at + e.retry_every) in out  # and again, until renewed
    m.final_id, m.final = "F1@mgr", [store]
    at = renew[0].at + 0.002
    reply = m.handle(req, "e0/edge", at)
    hb = sends(reply, Heartbeat)
    assert len(hb) == 1 and hb[0].to == "e0/edge" and hb[0].msg.grant == ["store#0/1"] and hb[0].msg.echo == req.sent
    assert m.bounds["e0/edge"]["store#0/1"] == (at + m.lease, "F1@mgr")  # accounted like any grant
    e.handle(hb[0].msg, M, at + 0.002)
    assert e.holdings["store#0/1"].lease == req.sent + 0.5 and not e.renewing  # renewed: no more requests


def test_a_lapsed_share_is_asked_back_and_regranted_at_once():
    """A holder whose acks were lost for a lease loses its share; it says so at once (renew, why lapsed) and the
    manager commits the plan in force to it again on that request, not at its next tick."""
    s = build_edge(3, 6, manager_params={"lease": 0.3})
    s.run(2.0)
    m = s.manager()
    holder = next(a.holder for a in m.final if a.role == "store")
    h = holder.partition("/")[0]
    s.sim.cut(h, "mgr")  # its acks are lost (beats still arrive: no isolation), for longer than the lease
    s.run(2.45)
    s.sim.heal()
    healed = s.sim.now
    s.run(3.0)
    events = s.events()
    lapse = [e for e in events if e["kind"] == "edge.role_relinquished" and e["node"] == h
             and e["fields"]["reason"] == "manager_lease_expired"]
    assert lapse, f"seed=3: {holder} never lost its lease"
    asked = [e for e in events if e["kind"] == "edge.renew_requested" and e["node"] == h
             and e["fields"]["why"] == "lapsed"]
    back = [e for e in events if e["kind"] == "edge.role_assigned" and e["node"] == h and e["time"] > lapse[0]["time"]]
    assert asked and back and back[0]["fields"]["plan_id"] == m.final_id, f"seed=3: {asked} {back}"
    assert back[0]["time"] - healed <= 2 * s.edge(holder).retry_every + 0.02, \
        f"seed=3: regranted {back[0]['time'] - healed:.3f}s after the link came back"
    assert any(e["kind"] == "manager.regrant" for e in events)
    judge(s)


REPORT_SEEDS = tuple(range(1, 11))


@pytest.mark.parametrize("seed", REPORT_SEEDS)
def test_the_plan_report_and_the_record_are_sent_until_the_manager_confirms_them(seed):
    """The heal brings the manager back over links that lose half the messages: the leader's PlanReport and the
    reporter's ReporterRecord go out again once a beat until the manager confirms each; the record enters the
    performance history once, and the heal still ends in a final plan within the bound."""
    s = build_edge(seed, 8, profiles=_strong(seed, 8))
    s.sim.schedule(1.0, s.isolate)
    s.sim.schedule(3.0, s.heal)
    s.sim.schedule(3.0, lambda: s.flaky(0.5))
    s.sim.schedule(5.0, s.steady)
    s.run(7.0)
    judge(s)
    events = s.events()
    plan = next(e["fields"]["plan_id"] for e in events if e["kind"] == "plane.plan_complete")
    got = [e for e in events if e["kind"] == "manager.plan_report" and e["fields"]["plan_id"] == plan]
    assert len(got) == 1, f"seed={seed}: the manager logged the plan report {len(got)} times"
    hist = [b for b in s.manager().history if b["plan_id"] == plan]
    assert len(hist) == 1, f"seed={seed}: history {hist}"
    final = next(e["fields"] for e in events if e["kind"] == "manager.plan_final" and e["time"] > 3.0)
    assert "no plan report" not in final["reason"], f"seed={seed}: replaced for a lost report: {final['reason']}"
    assert_final_plan_in_force(s, "after a lossy reconnect")


def _strong(seed: int, n: int) -> list[dict]:
    rng = random.Random(f"{seed}/strong")
    return [{"capability": {"tx_per_s": rng.uniform(150, 240), "req_per_s": rng.uniform(300, 480)},
             "free": rng.uniform(0.85, 1.0),
             "criteria": {"backup_power": rng.choice((0.0, 0.5, 1.0)), "connectivity": rng.uniform(0.5, 1.0),
                          "load": rng.uniform(0, 0.5)}} for _ in range(n)]


@pytest.mark.parametrize("seed", (1, 2, 3, 4, 5))
def test_a_node_that_returns_is_asked_for_its_fit_and_fills_the_role_nobody_else_could(seed):
    """Only e5 can carry the cache role (600 ops/s, never lowered). It is cut off from the rest of the site when the
    manager goes away, so the plane of e0-e4 leaves cache unfilled; when e5 comes back (the manager still away),
    its plane of one merges into the larger one, the leader asks e5 for its fit and negotiates cache again."""
    weak = [{"capability": {"tx_per_s": 200.0 + 5 * i, "req_per_s": 400.0, "ops_per_s": 100.0}, "free": 0.9,
             "criteria": {"backup_power": 1.0 if i == 0 else 0.0, "connectivity": 0.9, "load": 0.2}}
            for i in range(5)]
    strong = {"capability": {"tx_per_s": 100.0, "req_per_s": 100.0, "ops_per_s": 900.0}, "free": 1.0,
              "criteria": {"backup_power": 0.0, "connectivity": 0.5, "load": 0.5}}
    s = build_edge(seed, 6, profiles=weak + [strong], intent={"name": "edge", "functionalities": ["storage", "cache"]})
    nodes = [e.partition("/")[0] for e in s.edges]
    s.sim.schedule(1.0, lambda: s.sim.partition([["mgr"], nodes[:5], nodes[5:]]))
    s.sim.schedule(3.0, lambda: s.sim.partition([["mgr"], nodes]))
    s.run(5.0)
    judge(s)
    events = s.events()
    first = next(e["fields"] for e in events if e["kind"] == "plane.plan_complete" and e["node"] == "e0")
    assert first["unfilled"] == ["cache"], f"seed={seed}: {first['unfilled']}"
    joined = [e for e in events if e["kind"] == "plane.member_joined" and e["fields"]["member"] == "e5/edge"]
    asked = [e for e in events if e["kind"] == "plane.fit_requested" and "e5/edge" in e["fields"]["members"]]
    assert joined and asked, f"seed={seed}: e5 joined {joined}, asked for its fit {asked}"
    assert any(e["kind"] == "plane.unfilled_retry" and "cache" in e["fields"]["roles"] for e in events), f"seed={seed}"
    lead = s.edge("e0/edge").lead
    assert lead is not None and not lead.unfilled, f"seed={seed}: unfilled {lead and lead.unfilled}"
    assert [a.holder for a in lead.assignments if a.role == "cache"] == ["e5/edge"], f"seed={seed}: {lead.assignments}"
    assert "cache#0/1" in s.edge("e5/edge").holdings, f"seed={seed}: e5 holds {sorted(s.edge('e5/edge').holdings)}"
    assert [x for x in s.edges if s.edge(x).lead is not None] == ["e0/edge"], f"seed={seed}"
