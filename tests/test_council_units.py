"""Routine 600 (seed 000, FIG. 6) step by step: councils of resource controllers and the oversight role (issue 21).

Three controllers of interchangeable image stores (``a``, ``b``, ``c``) are driven directly: their effects
are delivered by a small in-memory pump (FIFO, instant), messages to servers are kept per server, and
their events are collected. Each test names the step of routine 600 it checks.
"""

from __future__ import annotations

import random
from collections import defaultdict

import pytest

from protocols.core import Emit, Persist, Send
from protocols.workflow.council import CouncilConfig, derive, excess_waiting, lendable, needs_approval
from protocols.workflow.council_messages import (
    MitigationEnd,
    OversightApprove,
    OversightCancel,
    OversightImpose,
    OversightList,
    OversightPropose,
    OversightReject,
    Redirect,
    RedirectRefused,
)
from protocols.workflow.controller import ResourceController
from protocols.workflow.messages import AccessGrant, AccessRequest
from protocols.workflow.oversight import Oversight
from topologies.workflow.council_checks import RedirectAccepted, RedirectWithinAccepted, RejectionHold

A, B, C = "a-rc/images", "b-rc/images", "c-rc/images"
OV = "ops/oversight"
OP = "ops/console"


class Pump:
    def __init__(self, approval: str = "none", oversight: bool = False, **council) -> None:
        cfg = {"name": "images", "members": [A, B, C], "proxies": {B: ["b-px/proxy0"]},
               "oversight": OV if oversight or approval != "none" else "", "approval": approval,
               "wait_threshold": 20.0, "min_excess": 2, "duration": 100.0, "hold": 30.0, "lend": 0.5,
               "check_every": 5.0, "query_timeout": 2.0}
        cfg.update(council)
        self.cfg = cfg
        self.disk: dict[str, dict] = defaultdict(dict)
        self.m: dict = {}
        for addr, limit in ((A, 2), (B, 10), (C, 10)):
            self.m[addr] = self._controller(addr, limit)
        if cfg["oversight"]:
            self.m[OV] = Oversight({"images": {"members": [A, B, C], "approval": approval}},
                                   rng=random.Random(9), address=OV, durable={})
        self.q: list[tuple[str, object, str]] = []
        self.events: list[dict] = []
        self.inbox: dict[str, list] = defaultdict(list)
        self.now = 0.0
        self.seq = 0
        for addr in self.m:
            self._apply(addr, self.m[addr].tick(0.0))

    def _controller(self, addr: str, limit: int, durable: dict | None = None) -> ResourceController:
        return ResourceController("images", rng=random.Random(addr), limit=limit, ttl=30.0, grace=0.0,
                                  adaptive=False, expected=10.0, durable=durable if durable is not None else {},
                                  address=addr, council=self.cfg, first_start=True)

    def _apply(self, addr: str, fx: list) -> None:
        for e in fx:
            if type(e) is Send:
                self.q.append((e.to, e.msg, addr))
            elif type(e) is Emit:
                node, _, actor = addr.partition("/")
                self.events.append({"time": self.now, "node": node, "actor": actor, "kind": e.kind,
                                    "fields": dict(e.fields)})
            elif type(e) is Persist:
                self.disk[addr][e.key] = e.data

    def pump(self, drop: set | None = None) -> None:
        while self.q:
            to, msg, sender = self.q.pop(0)
            if drop and ((to, type(msg).__name__) in drop or (to, type(msg).__name__, sender) in drop):
                continue
            if to in self.m:
                self._apply(to, self.m[to].handle(msg, sender, self.now))
            else:
                items = getattr(msg, "items", None)
                for item in (items if items is not None else (msg,)):
                    self.inbox[getattr(item, "server", to)].append(item)

    def at(self, now: float, drop: set | None = None) -> None:
        self.now = now
        for addr in list(self.m):
            self._apply(addr, self.m[addr].tick(now))
        self.pump(drop)

    def ask(self, ctrl: str, n: int, prefix: str) -> list[str]:
        out = []
        for i in range(n):
            s = f"{prefix}{i}/server"
            self.q.append((ctrl, AccessRequest(s, "images", 1, 1, "image", 0, 10.0, s, self.now), s))
            out.append(s)
        self.pump()
        return out

    def operator(self, msg) -> object:
        self.q.append((OV, msg, OP))
        self.pump()
        return self.inbox[OP][-1] if self.inbox[OP] else None

    def approve_pending(self) -> list[str]:
        """With oversight on, an operator approves every pending mitigation (a no-op with approval none)."""
        if OV not in self.m:
            return []
        pending = self.m[OV].pending(self.now)
        for mid in pending:
            assert self.operator(OversightApprove(mid, "ana")).ok
        return pending

    def kinds(self, kind: str, at: str | None = None) -> list[dict]:
        return [e for e in self.events if e["kind"] == kind and (at is None or f"{e['node']}/{e['actor']}" == at)]

    def verdicts(self) -> dict[str, str]:
        return {c.name: c.check(self.events).status for c in (RedirectAccepted(), RedirectWithinAccepted(),
                                                              RejectionHold())}


def redirects_to(p: Pump, server: str) -> list[Redirect]:
    return [m for m in p.inbox[server] if type(m) is Redirect]


# -- the arithmetic ------------------------------------------------------------------------------------


def test_excess_lendable_and_approval_rules():
    assert excess_waiting(20, 2, 10.0, 20.0) == 16  # 4 served within 20 s at 2 slots of 10 s
    assert excess_waiting(3, 2, 10.0, 20.0) == 0
    assert lendable(10, 0, 0, 0, 10.0, 100.0, 0.5, 0) == 50
    assert lendable(10, 10, 30, 0, 10.0, 100.0, 0.5, 0) == 30
    assert lendable(10, 10, 30, 0, 10.0, 100.0, 0.5, 40) == 0
    assert not needs_approval("none", 0.1, 10, 10)
    assert needs_approval("all", 0.9, 1, 100)
    assert needs_approval("above-share", 0.25, 30, 100) and not needs_approval("above-share", 0.25, 20, 100)
    with pytest.raises(ValueError):
        CouncilConfig.from_dict({"name": "images", "members": [A]})
    with pytest.raises(ValueError):
        CouncilConfig.from_dict({"name": "images", "members": [A, B], "approval": "sometimes"})


# -- block 602 -> 604 -> 606 -> 610: accept and enforce ---------------------------------------------------


@pytest.mark.parametrize("approval", ["none", "all"])
def test_an_overloaded_controller_asks_for_headroom_proposes_and_redirects_within_the_accepted_share(approval):
    p = Pump(approval=approval)
    servers = p.ask(A, 80, "a-s")
    p.at(5.0)  # block 602: 78 waiting (2 granted) at 2 slots of 10 s, 4 served within 20 s -> excess 74
    over = p.kinds("council.overload", A)
    assert over and over[0]["fields"]["excess"] == 74 and "wait" in over[0]["fields"]["reasons"]
    assert p.kinds("council.query", A)[0]["fields"]["peers"] == [B, C]
    p.at(7.1)  # answers all in: proposals decided at once
    decided = {e["fields"]["peer"]: e["fields"] for e in p.kinds("council.decided")}
    assert {p_: d["accepted"] for p_, d in decided.items()} == {B: 50, C: 24}  # each lends half its spare
    assert all(d["outcome"] == "accepted" for d in decided.values())
    assert all(d["needs_approval"] == (approval == "all") for d in decided.values())
    assert len(p.approve_pending()) == (2 if approval == "all" else 0)  # block 608
    p.at(8.0)  # block 610: enforced from the tail of A's waiting list
    moved = [e["fields"]["server"] for e in p.kinds("council.redirect", A)]
    assert len(moved) == 74 and set(moved) == set(servers[-74:])
    r = redirects_to(p, moved[0])[0]
    assert r.controller in (B, C) and r.mitigation.startswith(A + "#")
    if r.controller == B:
        assert r.proxies == ("b-px/proxy0",)
    # the redirected server asks the peer under the mitigation: admitted, and granted within the peer's limit
    p.q.append((r.controller, AccessRequest(moved[0], "images", 1, 1, "image", 0, 10.0, moved[0], 8.0,
                                            mitigation=r.mitigation), moved[0]))
    p.pump()
    assert p.kinds("council.admitted", r.controller)[0]["fields"]["server"] == moved[0]
    assert any(type(m) is AccessGrant for m in p.inbox[moved[0]])
    assert p.verdicts() == {"redirect-accepted": "valid", "redirect-within-accepted": "valid",
                            "rejection-hold": "unknown"}
    # every member knows which mitigations are in force
    for ctrl in (A, B, C):
        in_force = {m["mitigation"] for m in p.m[ctrl].council.open_mitigations() if m["state"] == "in_force"}
        assert in_force == {e["fields"]["mitigation"] for e in p.kinds("council.decided")}, ctrl


@pytest.mark.parametrize("approval", ["none", "all"])
def test_a_peer_accepts_only_up_to_its_headroom_at_decision_time_partial_acceptance(approval):
    p = Pump(lend=1.0, approval=approval)
    p.ask(A, 130, "a-s")
    p.at(5.0, drop={(A, "HeadroomReport", C)})  # B reports 100 of headroom (10 slots x 100 s / 10 s); C is silent
    p.ask(B, 25, "b-s")  # B's own servers arrive before the proposal is decided (10 granted, 15 waiting)
    p.at(7.1)  # the query times out: A proposes 100 (of its 124) to B
    d = {e["fields"]["peer"]: e["fields"] for e in p.kinds("council.decided")}
    assert set(d) == {B}
    assert d[B]["outcome"] == "partial" and d[B]["requested"] == 100 and d[B]["accepted"] == 75, d[B]
    p.at(8.0)
    if approval == "all":
        assert not p.kinds("council.redirect"), "enforced before an operator approved"
        p.approve_pending()
        p.at(9.0)
    per = defaultdict(int)
    for e in p.kinds("council.redirect", A):
        per[e["fields"]["peer"]] += 1
    assert per == {B: 75}
    assert p.verdicts()["redirect-within-accepted"] == "valid"


@pytest.mark.parametrize("approval", ["none", "all"])
def test_a_rejection_holds_no_request_to_that_peer_and_its_servers_refused(approval):
    p = Pump(lend=1.0, approval=approval)
    p.ask(A, 30, "a-s")
    p.ask(B, 100, "b-s")  # B is overloaded itself: no headroom -> rejection with a hold
    p.at(5.0)
    p.at(7.1)
    p.approve_pending()  # C's acceptance, with oversight on
    hold = p.kinds("council.hold", A)
    assert [h["fields"]["peer"] for h in hold] == [B] and hold[0]["fields"]["until"] == pytest.approx(35.0, abs=0.1)
    for t in (12.0, 17.0, 22.0, 27.0, 32.0):
        p.at(t)
        p.at(t + 2.1)
    queried = [e for e in p.kinds("council.query", A) if B in e["fields"]["peers"]]
    assert [e["time"] for e in queried] == [5.0], "A asked B again during the hold"
    # a server of A arriving at B under any mitigation during the hold is refused
    mid = p.kinds("council.decided", C)[0]["fields"]["mitigation"]
    p.q.append((B, AccessRequest("a-s0/server", "images", 1, 1, "image", 0, 10.0, "a-s0/server", 20.0,
                                 mitigation=mid), "a-s0/server"))
    p.pump()
    refused = [m for m in p.inbox["a-s0/server"] if type(m) is RedirectRefused]
    assert refused and refused[-1].reason in ("hold", "unknown mitigation")
    p.at(36.0)  # the hold is over: B may be asked again
    assert B not in p.m[A].council.hold_out and "a-rc/images" not in p.m[B].council.hold_in
    assert p.verdicts()["rejection-hold"] == "valid"


def test_no_peer_with_headroom_notifies_the_oversight_role():
    p = Pump(oversight=True, lend=1.0)
    p.ask(A, 30, "a-s")
    p.ask(B, 100, "b-s")
    p.ask(C, 100, "c-s")
    p.at(5.0)
    p.at(7.1)
    assert p.kinds("council.no_mitigation", A)
    alert = p.kinds("oversight.alert", OV)
    assert alert and alert[0]["fields"]["member"] == A
    view = p.operator(OversightList(operator="ana"))
    assert view.alerts and view.alerts[0].what == "no mitigation possible" and view.alerts[0].by == A


@pytest.mark.parametrize("approval", ["none", "all"])
def test_a_peer_that_becomes_overloaded_withdraws_and_new_requests_go_home(approval):
    p = Pump(lend=1.0, approval=approval)
    p.ask(A, 30, "a-s")
    p.at(5.0)
    p.at(7.1)
    p.approve_pending()
    p.at(8.0)
    mid_b = next(e["fields"]["mitigation"] for e in p.kinds("council.decided") if e["fields"]["peer"] == B)
    p.ask(B, 100, "b-s")  # B's own storm arrives
    p.at(9.0)
    ended = [e for e in p.kinds("council.state") if e["fields"]["mitigation"] == mid_b and e["fields"]["to"] == "ended"]
    assert {f"{e['node']}/{e['actor']}" for e in ended} == {A, B, C}
    assert ended[0]["fields"]["reason"] == "peer overloaded" and ended[0]["fields"]["by"] == B
    # a redirected server that had not reached B yet is refused and goes home
    late = next(e["fields"]["server"] for e in p.kinds("council.redirect", A) if e["fields"]["mitigation"] == mid_b)
    p.q.append((B, AccessRequest(late, "images", 1, 1, "image", 0, 10.0, late, 9.0, mitigation=mid_b), late))
    p.pump()
    assert [m.reason for m in p.inbox[late] if type(m) is RedirectRefused] == ["ended"]
    p.q.append((A, AccessRequest(late, "images", 1, 1, "image", 0, 10.0, late, 9.5, returned=mid_b), late))
    p.pump()
    assert p.kinds("council.returned", A) and late in p.m[A].waiting
    p.at(10.0)
    assert late in p.m[A].waiting, "a server come home was sent away again"
    assert p.verdicts()["redirect-accepted"] == "valid"


def test_a_lost_redirect_is_said_again_to_the_servers_next_message():
    p = Pump()
    p.ask(A, 30, "a-s")
    p.at(5.0)
    p.at(7.1)
    p.q.clear()
    p.at(8.0)
    s = p.kinds("council.redirect", A)[0]["fields"]["server"]
    p.inbox[s].clear()
    p.q.append((A, AccessRequest(s, "images", 1, 1, "image", 0, 10.0, s, 9.0, attempt=2), s))
    p.pump()
    assert redirects_to(p, s) and s not in p.m[A].waiting


# -- oversight ---------------------------------------------------------------------------------------


def test_with_approval_all_a_mitigation_waits_for_the_operator_then_is_enforced():
    p = Pump(approval="all")
    p.ask(A, 80, "a-s")
    p.at(5.0)
    p.at(7.1)
    p.at(8.0)
    assert not p.kinds("council.redirect"), "enforced before an operator approved"
    pending = p.m[OV].pending(8.0)
    assert len(pending) == 2
    assert {e["fields"]["to"] for e in p.kinds("council.state", A)} == {"pending"}
    ack = p.operator(OversightApprove(pending[0], "ana"))
    assert ack.ok and "operator:ana" in ack.detail
    ack = p.operator(OversightReject(pending[1], "bo", "too far"))
    assert ack.ok
    assert not p.operator(OversightApprove(pending[1], "ana")).ok  # decided already
    p.at(9.0)
    moved = {e["fields"]["mitigation"] for e in p.kinds("council.redirect", A)}
    assert moved == {pending[0]}
    hist = p.operator(OversightList(operator="ana")).history
    assert [(h.what, h.by) for h in hist if h.mitigation == pending[0]][-1] == ("approved", "operator:ana")
    assert [(h.what, h.by) for h in hist if h.mitigation == pending[1]][-1] == ("rejected by an operator",
                                                                               "operator:bo")
    assert p.verdicts()["redirect-accepted"] == "valid"


def test_above_share_only_a_large_share_needs_approval():
    p = Pump(approval="above-share", approval_share=0.5, lend=1.0)
    p.ask(A, 130, "a-s")
    p.at(5.0)
    p.at(7.1)
    d = {e["fields"]["peer"]: e["fields"] for e in p.kinds("council.decided")}
    assert d[B]["accepted"] == 100 and d[B]["needs_approval"]  # 100 of 128 waiting
    assert d[C]["accepted"] == 24 and not d[C]["needs_approval"]
    p.at(8.0)
    assert {e["fields"]["peer"] for e in p.kinds("council.redirect", A)} == {C}


def test_an_operator_proposes_imposes_and_cancels():
    p = Pump(oversight=True)
    p.ask(A, 5, "a-s")  # not overloaded (3 waiting): nothing happens by itself
    p.at(5.0)
    assert not p.kinds("council.query")
    ack = p.operator(OversightPropose("images", A, B, 2, 50.0, "ana"))
    assert ack.ok and ack.mitigation
    dec = p.kinds("council.decided", B)[-1]["fields"]
    assert dec["mitigation"] == ack.mitigation and dec["accepted"] == 2 and dec["approved_by"] == "operator:ana"
    p.at(6.0)
    assert len(p.kinds("council.redirect", A)) == 2
    ack2 = p.operator(OversightImpose("images", C, A, 1, 50.0, "bo"))  # A is full; an operator imposes anyway
    assert ack2.ok
    assert p.kinds("council.decided", A)[-1]["fields"]["outcome"] == "imposed"
    assert p.operator(OversightCancel(ack.mitigation, "cy", "done")).ok
    states = {(f"{e['node']}/{e['actor']}", e["fields"]["to"]) for e in p.kinds("council.state")
              if e["fields"]["mitigation"] == ack.mitigation}
    assert (A, "ended") in states and (B, "ended") in states
    assert not p.operator(OversightCancel(ack.mitigation, "cy")).ok
    assert not p.operator(OversightApprove("nope", "cy")).ok
    assert not p.operator(OversightApprove(ack2.mitigation, "")).ok  # no operator named
    view = p.operator(OversightList(operator="x"))
    assert {m.mitigation: m.state for m in view.mitigations}[ack.mitigation] == "ended"
    assert p.verdicts()["redirect-accepted"] == "valid"


# -- durability ----------------------------------------------------------------------------------------


def test_a_restarted_peer_remembers_what_it_admitted_and_its_holds():
    p = Pump()
    p.ask(A, 80, "a-s")
    p.at(5.0)
    p.at(7.1)
    p.at(8.0)
    mid = next(e["fields"]["mitigation"] for e in p.kinds("council.decided") if e["fields"]["peer"] == C)
    acc = next(e["fields"]["accepted"] for e in p.kinds("council.decided") if e["fields"]["peer"] == C)
    guests = [e["fields"]["server"] for e in p.kinds("council.redirect", A) if e["fields"]["mitigation"] == mid]
    for s in guests:
        p.q.append((C, AccessRequest(s, "images", 1, 1, "image", 0, 10.0, s, 8.0, mitigation=mid), s))
    p.pump()
    p.m[C] = p._controller(C, 10, durable=dict(p.disk[C]))  # C restarts from its record
    p.m[C].tick(9.0)
    m = p.m[C].council.mits[mid]
    assert sorted(m.admitted) == sorted(guests) and m.accepted == acc and derive(m, 9.0).value == "in_force"
    extra = "a-sX/server"
    p.q.append((C, AccessRequest(extra, "images", 1, 1, "image", 0, 10.0, extra, 9.0, mitigation=mid), extra))
    p.pump()
    assert [x.reason for x in p.inbox[extra] if type(x) is RedirectRefused] == ["share used"]


def test_an_end_is_acknowledged_and_resent_until_then():
    p = Pump()
    p.ask(A, 30, "a-s")
    p.at(5.0)
    p.at(7.1)
    mid = p.kinds("council.decided", B)[0]["fields"]["mitigation"]
    p.q.append((A, MitigationEnd(mid, "images", B, "test"), B))
    p.pump(drop={(B, "MitigationEndAck")})
    assert p.m[A].council.mits[mid].ended


def test_operator_requests_from_another_node_are_refused():
    p = Pump(approval="all")
    p.q.append((OV, OversightPropose("images", A, B, 2, 50.0, "mallory"), "b-srv/intruder"))
    p.pump()
    ack = p.inbox["b-srv/intruder"][-1]
    assert not ack.ok and "own node" in ack.detail
    assert not p.kinds("oversight.propose") and p.kinds("oversight.refused")


def test_servers_that_came_through_a_proxy_are_redirected_through_it():
    from protocols.core import TimerFired
    from protocols.workflow.proxy import Proxy

    p = Pump()
    px = "a-px/proxy0"
    p.m[px] = Proxy(px, {"images": A})
    servers = [f"a-s{i}/server" for i in range(80)]
    for s in servers:
        p.q.append((px, AccessRequest(s, "images", 1, 1, "image", 0, 10.0, s, 0.0), s))
    p.pump()
    p._apply(px, p.m[px].handle(TimerFired("flush"), px, 0.0))  # one ProxyBatch to A
    p.pump()
    assert len(p.m[A].waiting) == 78
    p.at(5.0)
    p.at(7.1)
    p.at(8.0)
    moved = [e["fields"]["server"] for e in p.kinds("council.redirect", A)]
    assert moved
    got = redirects_to(p, moved[0])
    assert got and got[0].controller in (B, C), "the proxy did not hand the redirect to its server"
    assert p.m[px].answers >= len(moved)


def test_a_provision_wave_larger_than_capacity_is_an_overload_before_the_servers_ask():
    from protocols.workflow.messages import Provision

    p = Pump()
    p.ask(A, 5, "a-s")  # 2 granted, 3 waiting: no overload by itself
    p.q.append((A, Provision("images", "boot", "image", 100, 10.0), "a-wf/workflow"))
    p.pump()
    p.at(5.0)
    over = p.kinds("council.overload", A)
    assert over and "provision" in over[0]["fields"]["reasons"], over
    assert over[0]["fields"]["unseen"] == 95  # announced, not arrived: 100 - 3 waiting - 2 holding
    assert p.kinds("council.query", A)


def test_an_under_delivering_resource_is_named_as_a_reason():
    p = Pump()
    p.ask(A, 30, "a-s")
    p.m[A].underdelivering = True  # as history.underdelivery sets it
    p.at(5.0)
    assert "underdelivery" in p.kinds("council.overload", A)[0]["fields"]["reasons"]
    # and an under-delivering member lends nothing
    p.m[B].underdelivering = True
    assert p.m[B].council.headroom(5.0) == 0


def test_a_restarted_oversight_role_still_gets_its_approval_to_both_parties():
    p = Pump(approval="all")
    p.ask(A, 80, "a-s")
    p.at(5.0)
    p.at(7.1)
    mid = p.m[OV].pending(7.1)[0]
    p.operator(OversightApprove(mid, "ana"))
    # the approval to the peer is lost, and the oversight role restarts from its record (its resends forgotten)
    p.q.clear()
    p.m[A].council.mits[mid].approved = None
    p.m[A].council.mits[mid].state = derive(p.m[A].council.mits[mid])
    peer = p.m[OV].mits[mid].peer
    p.m[peer].council.mits[mid].approved = None
    p.m[peer].council.mits[mid].state = derive(p.m[peer].council.mits[mid])
    p.m[OV] = Oversight({"images": {"members": [A, B, C], "approval": "all"}}, rng=random.Random(10), address=OV,
                        durable=dict(p.disk[OV]))
    for t in (8.0, 14.0):
        p.at(t)
    assert p.m[peer].council.mits[mid].approved is True
    assert derive(p.m[peer].council.mits[mid], 14.0).value == "in_force"


def test_council_facts_are_taken_only_from_their_author():
    from protocols.workflow.council_messages import MitigationDecision, MitigationPropose

    p = Pump(approval="all")
    p.ask(A, 80, "a-s")
    p.at(5.0)
    p.at(7.1)
    mid = p.m[OV].pending(7.1)[0]
    peer = p.m[OV].mits[mid].peer
    other = C if peer == B else B
    # another member cannot decide for the peer, nor approve for the oversight role
    p.q.append((A, MitigationDecision("a-rc/images#9.9", "images", A, peer, 5, 5, 100.0, False, 0.0, peer, 10), other))
    p.q.append((A, OversightApprove(mid, "mallory"), other))
    from protocols.workflow.council_messages import OversightDecision
    p.q.append((A, OversightDecision(mid, "images", True, "operator:mallory"), other))
    # a proposal must come from its proposer, and a decision cannot accept more than was asked
    p.q.append((B, MitigationPropose("x#1.1", "images", A, B, 5, 100.0, 10), C))
    p.q.append((A, MitigationDecision("a-rc/images#9.8", "images", A, peer, 5, 50, 100.0, False, 0.0, peer, 10), peer))
    p.pump()
    assert "a-rc/images#9.9" not in p.m[A].council.mits and "a-rc/images#9.8" not in p.m[A].council.mits
    assert "x#1.1" not in p.m[B].council.mits
    assert p.m[A].council.mits[mid].approved is None and p.m[A].council.refused >= 3
    assert not p.kinds("council.redirect")


def test_the_oversight_role_hears_notices_only_from_council_members():
    from protocols.workflow.council_messages import MitigationNotice

    p = Pump(approval="all")
    p.q.append((OV, MitigationNotice("images", "decision", B, "fake#1", A, B, 5, 5, 100.0, True, 10), "x-srv/intruder"))
    p.q.append((OV, MitigationNotice("images", "decision", C, "fake#2", A, B, 5, 5, 100.0, True, 10), B))
    p.pump()
    assert not p.m[OV].mits and len(p.kinds("oversight.ignored")) == 2


def test_a_guest_arriving_before_the_peer_heard_the_approval_waits_there_then_is_admitted():
    from protocols.workflow.messages import AccessDeny, Directive, StatusPing

    p = Pump(approval="all")
    p.ask(A, 80, "a-s")
    p.at(5.0)
    p.at(7.1)
    mid = p.m[OV].pending(7.1)[0]
    peer = p.m[OV].mits[mid].peer
    p.q.append((OV, OversightApprove(mid, "ana"), OP))
    p.pump(drop={(peer, "OversightDecision")})  # the peer misses the approval; the proposer has it
    p.at(8.0, drop={(peer, "OversightDecision")})
    s = next(e["fields"]["server"] for e in p.kinds("council.redirect", A) if e["fields"]["mitigation"] == mid)
    p.q.append((peer, AccessRequest(s, "images", 1, 1, "image", 0, 10.0, s, 8.0, mitigation=mid), s))
    p.pump(drop={(peer, "OversightDecision")})
    deny = [m for m in p.inbox[s] if type(m) is AccessDeny]
    assert deny and deny[-1].directive is Directive.PENDING and deny[-1].ping_every > 0
    assert not [m for m in p.inbox[s] if type(m) is RedirectRefused]
    assert s not in p.m[peer].waiting and not p.kinds("council.admitted", peer)
    p.at(9.0)  # the oversight role resends its decision; now it arrives
    assert derive(p.m[peer].council.mits[mid], 9.0).value == "in_force"
    p.q.append((peer, StatusPing(s, "images", 1, 1, "pending", "image", 0, 10.0, s, 9.0, mitigation=mid), s))
    p.pump()
    assert [e["fields"]["server"] for e in p.kinds("council.admitted", peer)] == [s]
    assert s in p.m[peer].waiting or s in p.m[peer].lease_of


def test_finished_records_beyond_the_bound_are_forgotten_and_their_keys_retired():
    from protocols.workflow import council as council_mod

    p = Pump()
    c = p.m[A].council
    for i in range(council_mod.MAX_RECORDS + 10):
        m = council_mod._Mit(f"{A}#1.{i}", A, B, 1, float(i), 1)
        m.ended, m.state = True, council_mod.MitState.ENDED
        c.mits[m.id] = m
    fx = c.tick(1000.0)
    retired = [e.key for e in fx if type(e) is Persist and e.data is None]
    assert len(c.mits) == council_mod.MAX_RECORDS and len(retired) == 10 and retired[0] == f"c/m/{A}#1.0"


def test_a_restarted_oversight_role_keeps_its_decisions_and_history():
    p = Pump(approval="all")
    p.ask(A, 80, "a-s")
    p.at(5.0)
    p.at(7.1)
    first, second = sorted(p.m[OV].pending(7.1))
    assert p.operator(OversightApprove(first, "ana")).ok
    assert p.operator(OversightReject(second, "bo", "not now")).ok
    before = [(h.what, h.by, h.mitigation) for h in p.operator(OversightList(operator="x", history=100)).history]
    p.m[OV] = Oversight({"images": {"members": [A, B, C], "approval": "all"}}, rng=random.Random(11), address=OV,
                        durable=dict(p.disk[OV]))
    view = p.operator(OversightList(operator="x", history=100))
    assert [(h.what, h.by, h.mitigation) for h in view.history] == before
    states = {m.mitigation: (m.state, m.approved_by) for m in view.mitigations}
    assert states[first] == ("in_force", "operator:ana") and states[second] == ("rejected", "operator:bo")
    assert not p.operator(OversightApprove(second, "ana")).ok  # decided before the restart: stays decided
