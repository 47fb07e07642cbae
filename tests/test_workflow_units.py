"""The workflow protocol's state machines, driven directly (handle/tick in, effects out).

Source: shared/seeds/000_6042360d9d71bd38.txt. FIG. 2A (hello, workflow, grant),
FIG. 2B (no answer -> proxy; the proxy aggregates and is served first), FIG. 2C
(denial, status pings), FIG. 3 (the server's routine), FIG. 4 (the resource
controller's routine) and the server states (invalid, running, pending,
parking, dormant).
"""

from __future__ import annotations

import random

import pytest

from protocols.core import CancelTimer, Emit, Send, SetTimer, TimerFired
from protocols.workflow import (
    AbortStage,
    AccessDeny,
    AccessGrant,
    AccessRequest,
    ControllerState,
    Directive,
    Hello,
    LeaseLost,
    LeaseRenew,
    LeaseRenewed,
    NoWorkflow,
    PowerOff,
    PowerOn,
    Provision,
    Proxy,
    ProxyBatch,
    ProxyReply,
    Release,
    ResourceController,
    ResourceRef,
    ResourceReport,
    RunStage,
    Server,
    ServerState,
    SetPower,
    StageDone,
    StageFailed,
    StageReport,
    StageSpec,
    StatusPing,
    Wake,
    WaveNotice,
    Workflow,
    WorkflowController,
    WorkflowDone,
)
from protocols.workflow.policy import IllegalTransition
from transport.codec import decode, encode

SRV = "s1/server"
WF = "wf/workflow"
RC = "rc0/controller"
PX = "px0/proxy"


def sends(fx, cls=None, to=None):
    return [e for e in fx if isinstance(e, Send) and (cls is None or isinstance(e.msg, cls)) and (to is None or e.to == to)]


def emits(fx, kind):
    return [e for e in fx if isinstance(e, Emit) and e.kind == kind]


def timers(fx):
    return {e.key: e.at for e in fx if isinstance(e, SetTimer)}


def of(fx, cls):
    return [e for e in fx if isinstance(e, cls)]


def only(items):
    assert len(items) == 1, items
    return items[0]


# -- messages ---------------------------------------------------------------------------------


def test_every_message_round_trips_through_the_codec():
    req = AccessRequest(SRV, "img", 5, 2, "image", 1, 30.0, "s1/bmc", 1.5, 3)
    samples = [
        Hello(SRV, 5, "02:00", "x86", "row1"),
        Workflow(SRV, 5, "boot", (StageSpec("image", ("img",), (), 30.0),), (ResourceRef("img", RC, (PX,)),)),
        NoWorkflow(SRV, 5, "none"),
        StageReport(SRV, 5, "boot", "image", "ok", 31.0, 1),
        WorkflowDone(SRV, 5, "boot", True, 99.0),
        Provision("img", "boot", "image", 1000, 30.0),
        WaveNotice(400, "02:*", "x86", "row7"),
        req,
        StatusPing(SRV, "img", 5, 2, "parking", "image", 1, 30.0, "", 2.0),
        AccessGrant(SRV, "img", 5, 2, 77, 3, 30.0, 1.5),
        AccessDeny(SRV, "img", 5, 2, 3, Directive.DORMANT, 400.0, 700, 0.0, 1.5),
        Wake(SRV, "img", 5, 2, 3, SRV),
        LeaseRenew(SRV, "img", 5, 77, 3, 9.0),
        LeaseRenewed(SRV, "img", 77, 3, 30.0, 9.0),
        LeaseLost(SRV, "img", 77, 3, "expired"),
        Release(SRV, "img", 5, 77, 3, "image", "ok", 31.0),
        ResourceReport("img", 1, 50, 1.0, 1.0, 0.0),
        ProxyBatch(PX, 1, (req, LeaseRenew(SRV, "img", 5, 77, 3, 9.0))),
        ProxyReply(3, (AccessGrant(SRV, "img", 5, 2, 77, 3, 30.0, 1.5), Wake(SRV, "img", 5, 2, 3, SRV))),
        StageDone("image", 1),
        StageFailed("image", 1, "io error"),
    ]
    for m in samples:
        assert decode(encode(m)) == m


# -- the server (FIG. 3 and the server states) ------------------------------------------------------


def one_stage_workflow(s: Server, proxies=()) -> Workflow:
    return Workflow(s.address, s.boot, "boot", (StageSpec("image", ("img",), (), 30.0),),
                    (ResourceRef("img", RC, tuple(proxies)),))


def server(**kw) -> Server:
    return Server(SRV, WF, rng=random.Random(1), **kw)


def running_server(proxies=(), **kw):
    s = server(**kw)
    s.tick(0.0)
    fx = s.handle(one_stage_workflow(s, proxies), WF, 0.1)
    return s, fx


def grant(s: Server, lease=7, stamp=0.1, seq=None, ttl=30.0) -> AccessGrant:
    return AccessGrant(SRV, "img", s.boot, s.req_seq if seq is None else seq, lease, 3, ttl, stamp)


def deny(s: Server, directive, wait=10.0, ping_every=5.0, stamp=0.1) -> AccessDeny:
    return AccessDeny(SRV, "img", s.boot, s.req_seq, 3, directive, wait, 12, ping_every, stamp)


def test_invalid_server_says_hello_and_retries_with_backoff():
    s = server(hello_retry=2.0, hello_retry_max=30.0)
    assert s.state is ServerState.INVALID
    fx = s.tick(0.0)
    hello = only(sends(fx, Hello, WF)).msg
    assert (hello.server, hello.boot) == (SRV, s.boot)
    first = timers(fx)["hello"]
    assert 1.6 <= first <= 2.4
    fx = s.handle(TimerFired("hello"), SRV, first)
    assert sends(fx, Hello, WF)
    assert timers(fx)["hello"] - first >= 3.2  # doubled
    assert s.tick(5.0) == []  # the start tick happens once


def test_workflow_makes_the_server_running_and_it_asks_the_stages_controller():
    s, fx = running_server()
    assert s.state is ServerState.RUNNING
    assert emits(fx, "server.state")[0].fields == {"from": "invalid", "to": "running", "reason": "workflow",
                                                   "stage": None, "workflow": "boot", "stages": 1}
    req = only(sends(fx, AccessRequest, RC)).msg
    assert (req.resource, req.stage, req.seq, req.boot, req.stamp) == ("img", "image", 1, s.boot, 0.1)
    assert "ask" in timers(fx) and CancelTimer("hello") in fx


def test_a_workflow_for_another_boot_or_state_is_ignored():
    s = server()
    s.tick(0.0)
    stale = Workflow(SRV, s.boot + 1, "boot", (StageSpec("image"),), ())
    fx = s.handle(stale, WF, 0.1)
    assert s.state is ServerState.INVALID and emits(fx, "server.ignored")
    s.handle(one_stage_workflow(s), WF, 0.2)
    fx = s.handle(one_stage_workflow(s), WF, 0.3)  # a duplicate
    assert emits(fx, "server.ignored") and s.state is ServerState.RUNNING


def test_no_workflow_waits_and_asks_again_later():
    s = server(hello_retry_max=30.0)
    s.tick(0.0)
    fx = s.handle(NoWorkflow(SRV, s.boot, "no entry"), WF, 0.1)
    assert emits(fx, "server.no_workflow") and timers(fx)["hello"] == pytest.approx(30.1)


def test_grant_runs_the_stage_renews_and_done_releases_and_reports():
    s, _ = running_server()
    fx = s.handle(grant(s, stamp=0.1), RC, 0.2)
    run = only(of(fx, RunStage))
    assert (run.stage, run.run, run.resources) == ("image", 1, ("img",))
    t = timers(fx)
    assert t["renew"] == pytest.approx(10.2)  # ttl / 3
    assert t["deadline"] == pytest.approx(0.1 + 27.0)  # stamp + ttl * 0.9
    fx = s.handle(TimerFired("renew"), SRV, 10.2)
    renew = only(sends(fx, LeaseRenew, RC)).msg
    assert (renew.lease, renew.epoch, renew.stamp) == (7, 3, 10.2)
    fx = s.handle(LeaseRenewed(SRV, "img", 7, 3, 30.0, 10.2), RC, 10.21)
    assert timers(fx)["deadline"] == pytest.approx(10.2 + 27.0)
    fx = s.handle(StageDone("image", 1), SRV, 31.0)
    rel = only(sends(fx, Release, RC)).msg
    assert (rel.lease, rel.outcome, rel.duration) == (7, "ok", pytest.approx(30.8))
    assert only(sends(fx, StageReport, WF)).msg.outcome == "ok"
    assert only(sends(fx, WorkflowDone, WF)).msg.ok is True
    assert s.state is ServerState.DONE and s.done_at == 31.0
    assert emits(fx, "server.state")[-1].fields["to"] == "done"


def test_pending_server_pings_and_rechecks():
    s, _ = running_server()
    fx = s.handle(deny(s, Directive.PENDING, wait=10.0, ping_every=5.0), RC, 0.2)
    assert s.state is ServerState.PENDING
    t = timers(fx)
    assert t["ping"] == pytest.approx(5.2) and t["recheck"] == pytest.approx(30.2)  # max(30, 2 * wait)
    fx = s.handle(TimerFired("ping"), SRV, 5.2)
    ping = only(sends(fx, StatusPing, RC)).msg
    assert (ping.state, ping.seq, ping.stamp) == ("pending", s.req_seq, 5.2)
    fx = s.handle(TimerFired("recheck"), SRV, 30.2)
    assert only(sends(fx, AccessRequest, RC)).msg.seq == 1  # same request, asked again
    assert s.asking


def test_parking_lowers_power_and_a_grant_restores_it():
    s, _ = running_server(parking_power=0.3)
    fx = s.handle(deny(s, Directive.PARKING, wait=60.0, ping_every=20.0), RC, 0.2)
    assert s.state is ServerState.PARKING and SetPower(0.3) in fx
    fx = s.handle(grant(s, stamp=0.1), RC, 40.0)
    assert s.state is ServerState.RUNNING
    assert fx.index(SetPower(1.0)) < fx.index(only(of(fx, RunStage)))


def test_pushed_grant_with_an_old_stamp_renews_before_its_deadline():
    s, _ = running_server()
    s.handle(deny(s, Directive.PARKING, wait=60.0, ping_every=20.0), RC, 0.2)
    fx = s.handle(grant(s, stamp=0.2), RC, 20.0)  # dated by the server's last message, 19.8 s ago
    t = timers(fx)
    assert t["deadline"] == pytest.approx(27.2)
    assert t["renew"] < t["deadline"]


def test_dormant_notifies_powers_off_and_only_wake_reaches_it():
    s, _ = running_server(resume_delay=5.0, alarm_min=60.0, alarm_factor=1.5)
    fx = s.handle(deny(s, Directive.DORMANT, wait=400.0, ping_every=0.0), RC, 0.2)
    assert s.state is ServerState.DORMANT
    notice = only(sends(fx, StatusPing, RC))
    assert notice.msg.state == "dormant"
    assert fx.index(notice) < fx.index(PowerOff(pytest.approx(600.2)))  # the notice goes out before the power does;
    # the RTC alarm is part of the power-off (the host programs it)
    assert timers(fx)["alarm"] == pytest.approx(600.2)
    # powered off: a grant is not heard
    fx = s.handle(grant(s), RC, 50.0)
    assert emits(fx, "server.ignored")[0].fields["why"] == "powered off" and s.state is ServerState.DORMANT
    fx = s.handle(TimerFired("ping"), SRV, 50.0)
    assert fx == []
    # Wake: power on, pending, ask again once booted
    fx = s.handle(Wake(SRV, "img", s.boot, s.req_seq, 3, SRV), RC, 300.0)
    assert PowerOn() in fx and s.state is ServerState.PENDING
    assert timers(fx)["resume"] == pytest.approx(305.0) and not sends(fx, AccessRequest)
    fx = s.handle(TimerFired("resume"), SRV, 305.0)
    assert only(sends(fx, AccessRequest, RC)).msg.seq == s.req_seq
    fx = s.handle(grant(s, stamp=305.0), RC, 305.01)
    assert s.state is ServerState.RUNNING and of(fx, RunStage)


def test_a_dormant_server_wakes_itself_on_its_alarm():
    s, _ = running_server()
    s.handle(deny(s, Directive.DORMANT, wait=400.0, ping_every=0.0), RC, 0.2)
    fx = s.handle(TimerFired("alarm"), SRV, 600.2)
    assert s.state is ServerState.PENDING and PowerOn() in fx
    assert emits(fx, "server.state")[0].fields["reason"] == "alarm"
    assert sends(fx, AccessRequest, RC)


def test_a_late_denial_from_before_the_last_transition_is_stale():
    s, _ = running_server()
    s.handle(deny(s, Directive.DORMANT, wait=400.0, ping_every=0.0, stamp=0.1), RC, 0.2)
    s.handle(Wake(SRV, "img", s.boot, s.req_seq, 3, SRV), RC, 300.0)  # pending since 300 (no resume delay)
    fx = s.handle(deny(s, Directive.DORMANT, wait=400.0, ping_every=0.0, stamp=0.1), RC, 300.5)  # a duplicate
    assert emits(fx, "server.ignored") and s.state is ServerState.PENDING


def test_no_answer_retries_then_goes_through_a_proxy():
    s, fx = running_server(proxies=(PX,), retry_after=2.0, proxy_after_failures=3)
    for n in range(3):
        at = timers(fx)["ask"]
        fx = s.handle(TimerFired("ask"), SRV, at)
        assert emits(fx, "server.retry")
    route = only(emits(fx, "server.route")).fields
    assert (route["from"], route["via"], route["reason"]) == (RC, PX, "failures")
    req = only(sends(fx, AccessRequest)).msg
    assert only(sends(fx, AccessRequest)).to == PX and req.attempt == 4 and req.seq == 1
    # the answer comes back through the proxy; renewals and the release follow the same route
    fx = s.handle(grant(s, stamp=req.stamp), PX, at + 1)
    fx = s.handle(TimerFired("renew"), SRV, timers(fx)["renew"])
    assert sends(fx, LeaseRenew, PX)
    fx = s.handle(StageDone("image", 1), SRV, 100.0)
    assert sends(fx, Release, PX)


def test_no_answer_for_a_time_limit_goes_through_a_proxy():
    s, fx = running_server(proxies=(PX,), retry_after=6.0, proxy_after_failures=5, proxy_after=10.0)
    fx = s.handle(TimerFired("ask"), SRV, 6.0)
    assert not emits(fx, "server.route")
    fx = s.handle(TimerFired("ask"), SRV, 12.0)
    assert only(emits(fx, "server.route")).fields["reason"] == "time"
    assert only(sends(fx, AccessRequest)).to == PX


def test_proxy_first_asks_the_proxy_first():
    _s, fx = running_server(proxies=(PX,), proxy_first=True)
    assert only(sends(fx, AccessRequest)).to == PX


def test_without_alternatives_retries_back_off():
    s, fx = running_server(retry_after=2.0, proxy_after_failures=3)
    gaps = []
    for _ in range(8):
        at = timers(fx)["ask"]
        fx = s.handle(TimerFired("ask"), SRV, at)
        gaps.append(timers(fx)["ask"] - at)
    assert gaps[-1] > 4 * gaps[0]
    assert max(gaps) <= 2.0 * 16 * 1.2


def test_lease_deadline_unconfirmed_aborts_the_stage_and_starts_it_again():
    s, _ = running_server()
    s.handle(grant(s, stamp=0.1), RC, 0.2)
    fx = s.handle(TimerFired("deadline"), SRV, 27.1)
    lost = only(emits(fx, "lease.lost")).fields
    assert lost["leases"] == [7] and lost["reason"] == "deadline passed unconfirmed"
    assert AbortStage("image", 1) in fx
    assert only(sends(fx, Release)).msg.outcome == "aborted"
    fx = s.handle(TimerFired("restage"), SRV, timers(fx)["restage"])
    assert only(sends(fx, AccessRequest)).msg.seq == 2  # a new request
    fx = s.handle(StageDone("image", 1), SRV, 31.0)  # the aborted run's late report
    assert emits(fx, "server.ignored") and s.state is ServerState.RUNNING


def test_lease_lost_from_the_controller_aborts_too():
    s, _ = running_server()
    s.handle(grant(s), RC, 0.2)
    fx = s.handle(LeaseLost(SRV, "img", 7, 3, "expired"), RC, 5.0)
    assert AbortStage("image", 1) in fx and emits(fx, "lease.lost")
    fx = s.handle(LeaseLost(SRV, "img", 8, 3, "expired"), RC, 5.0)  # not ours
    assert emits(fx, "server.ignored")


def test_an_unusable_grant_is_given_back():
    s, _ = running_server()
    fx = s.handle(grant(s, seq=99, lease=11), RC, 0.2)
    rel = only(sends(fx, Release, RC)).msg
    assert (rel.lease, rel.outcome) == (11, "unused") and not s.leases
    s.handle(grant(s, lease=7), RC, 0.3)
    fx = s.handle(grant(s, lease=7), RC, 0.4)  # a duplicate of the lease held
    assert fx == []


def two_resource_server():
    s = server()
    s.tick(0.0)
    wf = Workflow(SRV, s.boot, "boot", (StageSpec("image", ("img", "drv"), (), 30.0),),
                  (ResourceRef("img", RC, ()), ResourceRef("drv", "rc1/controller", ())))
    fx = s.handle(wf, WF, 0.1)
    return s, fx


def test_resources_are_acquired_in_order_and_a_holder_is_never_made_dormant():
    s, fx = two_resource_server()
    assert only(sends(fx, AccessRequest)).msg.resource == "drv"  # sorted: drv before img
    s.handle(AccessGrant(SRV, "drv", s.boot, s.req_seq, 5, 3, 30.0, 0.1), "rc1/controller", 0.2)
    assert s.need == ["img"] and "drv" in s.leases
    fx = s.handle(deny(s, Directive.DORMANT, wait=500.0, ping_every=20.0, stamp=0.2), RC, 0.3)
    assert s.state is ServerState.PARKING and emits(fx, "server.directive_downgraded")
    fx = s.handle(TimerFired("renew"), SRV, 10.2)
    assert sends(fx, LeaseRenew, "rc1/controller")


def test_a_failed_stage_is_retried_then_the_server_fails():
    s, _ = running_server(max_stage_attempts=2)
    s.handle(grant(s), RC, 0.2)
    fx = s.handle(StageFailed("image", 1, "io"), SRV, 5.0)
    assert only(sends(fx, Release)).msg.outcome == "failed"
    fx = s.handle(TimerFired("restage"), SRV, timers(fx)["restage"])
    s.handle(grant(s, lease=8), RC, 8.0)
    fx = s.handle(StageFailed("image", 2, "io"), SRV, 9.0)
    assert s.state is ServerState.FAILED
    assert only(sends(fx, WorkflowDone, WF)).msg.ok is False


def test_illegal_transition_is_our_bug_and_loud():
    s, _ = running_server()
    s.handle(grant(s), RC, 0.2)
    s.handle(StageDone("image", 1), SRV, 30.0)
    with pytest.raises(IllegalTransition, match="done -> running"):
        s._become(ServerState.RUNNING, 31.0, "bug")


def test_unexpected_messages_are_ignored_with_an_event():
    s, _ = running_server()
    fx = s.handle(Hello("x/y", 1), "x/y", 1.0)
    assert emits(fx, "server.ignored")[0].fields["message"] == "Hello"
    fx = s.handle(TimerFired("nonsense"), SRV, 1.0)
    assert emits(fx, "server.ignored")


def test_time_in_each_state_is_accounted():
    s, _ = running_server()
    s.handle(deny(s, Directive.PARKING, wait=60.0, ping_every=20.0), RC, 10.0)
    s.handle(grant(s), RC, 70.0)
    secs = s.state_seconds(100.0)
    assert secs["invalid"] == pytest.approx(0.1)
    assert secs["parking"] == pytest.approx(60.0)
    assert secs["running"] == pytest.approx(9.9 + 30.0)


# -- the resource controller (FIG. 4) --------------------------------------------------------------------


def ctl(limit=2, **kw) -> ResourceController:
    kw.setdefault("grace", 0.0)
    kw.setdefault("expected", 30.0)
    kw.setdefault("wake_ahead", 0.0)
    c = ResourceController("img", rng=random.Random(2), limit=limit, **kw)
    c.tick(0.0)
    return c


def req(i, seq=1, boot=1, stamp=0.0, priority=0, slept=0) -> AccessRequest:
    """``slept``: the server's dormant spells so far (a woken server asks with one more than when told dormant)."""
    return AccessRequest(f"s{i}/server", "img", boot, seq, "image", priority, 30.0, "", stamp, slept=slept)


def test_controller_starts_with_an_event_and_grants_under_the_limit():
    c = ResourceController("img", rng=random.Random(2), limit=2, grace=0.0)
    fx = c.tick(0.0)
    assert only(emits(fx, "controller.start")).fields["limit"] == 2
    fx = c.handle(req(1, stamp=0.5), "s1/server", 1.0)
    g = only(sends(fx, AccessGrant, "s1/server")).msg
    assert (g.seq, g.epoch, g.ttl, g.stamp) == (1, c.epoch, 30.0, 0.5)
    e = only(emits(fx, "admission.grant")).fields
    assert (e["holders"], e["limit"], e["lease"]) == (1, 2, g.lease)


def test_full_controller_denies_with_a_directive_by_predicted_wait():
    c = ctl(limit=2, pending_max=20.0, parking_max=120.0)
    c.handle(req(1), "s1/server", 0.0)
    c.handle(req(2), "s2/server", 0.0)
    fx = c.handle(req(3), "s3/server", 0.0)
    d = only(sends(fx, AccessDeny, "s3/server")).msg
    assert d.directive is Directive.PENDING and d.wait == pytest.approx(15.0) and d.position == 0  # 1 * 30 / 2
    assert d.ping_every == c.ping_pending
    for i in range(4, 10):
        fx = c.handle(req(i), f"s{i}/server", 0.0)
    d = only(sends(fx, AccessDeny)).msg
    assert d.position == 6 and d.wait == pytest.approx(105.0) and d.directive is Directive.PARKING
    fx = c.handle(req(10), "s10/server", 0.0)
    assert only(sends(fx, AccessDeny)).msg.wait == pytest.approx(120.0)  # still parking (<= 120 s)
    fx = c.handle(req(11), "s11/server", 0.0)
    d = only(sends(fx, AccessDeny)).msg
    assert d.directive is Directive.DORMANT and d.ping_every == 0.0
    ev = only(emits(fx, "admission.deny")).fields
    assert ev["directive"] == "dormant" and ev["position"] == 8


def test_release_frees_the_slot_and_the_next_waiter_is_granted_in_order():
    c = ctl(limit=1)
    g = only(sends(c.handle(req(1), "s1/server", 0.0), AccessGrant)).msg
    c.handle(req(2, priority=0), "s2/server", 1.0)
    c.handle(req(3, priority=5), "s3/server", 2.0)  # higher priority: ahead of s2
    fx = c.handle(Release("s1/server", "img", 1, g.lease, g.epoch, "image", "ok", 11.0), "s1/server", 12.0)
    assert only(emits(fx, "lease.released")).fields["reason"] == "ok"
    assert only(sends(fx, AccessGrant)).to == "s3/server"
    assert c.history.samples("image") == 1


def test_a_slot_for_a_waiter_silent_for_half_a_ttl_is_kept_and_the_waiter_woken_to_ask_afresh():
    c = ctl(limit=1)  # ttl 30
    g = only(sends(c.handle(req(1), "s1/server", 0.0), AccessGrant)).msg
    c.handle(req(2, stamp=1.0), "s2/server", 1.0)
    fx = c.handle(Release("s1/server", "img", 1, g.lease, g.epoch, "image", "ok", 29.0), "s1/server", 30.0)
    assert not sends(fx, AccessGrant)  # dated 1.0 by s2's clock, it would arrive with 0.9 * 30 - 29 s left
    assert only(sends(fx, Wake, "s2/server")).msg.seq == 1
    assert c.busy == 1 and c.holders == 0  # the slot is kept for s2
    fx = c.handle(req(2, stamp=30.1), "s2/server", 30.1)  # it asks again, on its own clock
    grant_ = only(sends(fx, AccessGrant, "s2/server")).msg
    assert grant_.stamp == 30.1


def test_a_dormant_head_is_woken_with_a_reserved_slot_then_granted():
    c = ctl(limit=1, pending_max=1.0, parking_max=2.0)
    g = only(sends(c.handle(req(1), "s1/server", 0.0), AccessGrant)).msg
    d = only(sends(c.handle(req(2, stamp=0.5), "s2/server", 0.5), AccessDeny)).msg
    assert d.directive is Directive.DORMANT
    fx = c.handle(Release("s1/server", "img", 1, g.lease, g.epoch, "image", "ok", 30.0), "s1/server", 30.0)
    wake = only(sends(fx, Wake, "s2/server")).msg
    assert wake.seq == 1 and not sends(fx, AccessGrant)
    assert only(emits(fx, "admission.wake")).fields["reserved"] is True
    assert c.busy == 1 and c.holders == 0
    # someone else cannot take the reserved slot
    fx = c.handle(req(3), "s3/server", 31.0)
    assert sends(fx, AccessDeny) and not sends(fx, AccessGrant)
    # the woken server asks (its next dormant spell): granted from the reservation
    fx = c.handle(req(2, stamp=36.0, slept=1), "s2/server", 36.0)
    assert only(sends(fx, AccessGrant, "s2/server")).msg.stamp == 36.0
    assert only(emits(fx, "admission.grant")).fields["from_reservation"] is True


def test_dormant_servers_whose_turn_is_near_are_woken_ahead():
    c = ctl(limit=1, pending_max=1.0, parking_max=2.0, wake_ahead=40.0)
    g = only(sends(c.handle(req(1), "s1/server", 0.0), AccessGrant)).msg
    fx = []
    for i in (2, 3, 4):
        fx += c.handle(req(i), f"s{i}/server", 0.0)
    # s2 waits 30 s: within wake_ahead, so it parks instead of powering off for nothing; s3 (60 s), s4 (90 s) sleep
    assert [(e.to, e.msg.directive.value) for e in sends(fx, AccessDeny)] == [
        ("s2/server", "parking"), ("s3/server", "dormant"), ("s4/server", "dormant")]
    assert not emits(fx, "admission.wake")
    # s2 pings as a parked server does (every ping_parking = 20 s), so a grant dated by its ping is fresh
    c.handle(StatusPing("s2/server", "img", 1, 1, "parking", "image", 0, 30.0, "", 20.0), "s2/server", 20.0)
    # s1 leaves, s2 is granted; s3 is now first in line (30 s): woken ahead, without a reservation
    fx = c.handle(Release("s1/server", "img", 1, g.lease, g.epoch, "image", "ok", 30.0), "s1/server", 30.0)
    assert only(sends(fx, AccessGrant)).to == "s2/server"
    wake = only(emits(fx, "admission.wake")).fields
    assert (wake["server"], wake["reason"], wake["reserved"]) == ("s3/server", "ahead", False)
    assert only(sends(fx, Wake)).to == "s3/server" and not c.reserved
    # once awake it asks and is told to wait awake (30 s is within wake_ahead), first in line
    d = only(sends(c.handle(req(3, stamp=35.0, slept=1), "s3/server", 35.0), AccessDeny)).msg
    assert (d.directive, d.position) == (Directive.PARKING, 0)


def test_wake_is_resent_and_a_reservation_times_out():
    c = ctl(limit=1, pending_max=1.0, parking_max=2.0, wake_retry=5.0, wake_timeout=20.0)
    g = only(sends(c.handle(req(1), "s1/server", 0.0), AccessGrant)).msg
    c.handle(req(2), "s2/server", 0.0)
    c.handle(Release("s1/server", "img", 1, g.lease, g.epoch, "image", "ok", 30.0), "s1/server", 30.0)
    assert sends(c.tick(35.0), Wake, "s2/server")
    fx = c.tick(50.0)
    failed = only(emits(fx, "admission.wake_failed")).fields
    assert (failed["server"], failed["requeued"]) == ("s2/server", True)  # back at the head of the queue ...
    assert list(c.reserved) == ["s2/server"] and sends(fx, Wake, "s2/server")  # ... so it is woken again at once


def test_an_unrenewed_lease_expires_and_its_slot_is_reused():
    c = ctl(limit=1, ttl=30.0)
    g = only(sends(c.handle(req(1), "s1/server", 0.0), AccessGrant)).msg
    c.handle(req(2), "s2/server", 1.0)
    assert not emits(c.tick(20.0), "lease.expired")
    fx = c.handle(LeaseRenew("s1/server", "img", 1, g.lease, g.epoch, 20.0), "s1/server", 20.0)
    assert only(sends(fx, LeaseRenewed)).msg.stamp == 20.0
    c.handle(req(2, stamp=45.0), "s2/server", 45.0)  # s2 keeps asking while it waits
    fx = c.tick(50.5)
    assert only(emits(fx, "lease.expired")).fields["lease"] == g.lease
    assert only(sends(fx, AccessGrant)).to == "s2/server"
    fx = c.handle(LeaseRenew("s1/server", "img", 1, g.lease, g.epoch, 51.0), "s1/server", 51.0)
    assert only(sends(fx, LeaseLost)).msg.reason == "expired"


def test_repeated_request_gets_the_same_grant_and_stale_ones_are_ignored():
    c = ctl(limit=2)
    g1 = only(sends(c.handle(req(1, seq=3), "s1/server", 0.0), AccessGrant)).msg
    g2 = only(sends(c.handle(req(1, seq=3), "s1/server", 1.0), AccessGrant)).msg
    assert g1.lease == g2.lease and c.holders == 1
    fx = c.handle(req(1, seq=2), "s1/server", 2.0)
    assert emits(fx, "controller.ignored")[0].fields["why"] == "stale seq"


def test_a_newer_request_or_boot_supersedes_the_old_lease():
    c = ctl(limit=2)
    g1 = only(sends(c.handle(req(1, seq=1), "s1/server", 0.0), AccessGrant)).msg
    fx = c.handle(req(1, seq=2), "s1/server", 40.0)  # the release of seq 1 was lost
    assert only(emits(fx, "lease.released")).fields["reason"] == "superseded"
    assert only(sends(fx, AccessGrant)).msg.lease != g1.lease and c.holders == 1
    fx = c.handle(req(1, seq=1, boot=2), "s1/server", 50.0)  # a new incarnation
    assert only(emits(fx, "lease.released")).fields["reason"] == "superseded" and c.holders == 1


def test_silent_waiters_leave_the_list_but_dormant_ones_stay():
    c = ctl(limit=1, ttl=1000.0, pending_max=40.0, parking_max=70.0, ping_pending=5.0, ping_parking=20.0, window=5.0)
    c.handle(req(1), "s1/server", 0.0)
    for i in range(2, 6):
        c.handle(req(i), f"s{i}/server", 0.0)
    modes = {w.server: w.mode.value for w in c.waiting.values()}
    assert modes == {"s2/server": "pending", "s3/server": "parking", "s4/server": "dormant", "s5/server": "dormant"}
    dropped = {}
    for t in range(1, 200):
        for e in emits(c.tick(float(t)), "waiting.dropped"):
            dropped[e.fields["server"]] = t
    # pending is dropped after 3 missed pings (5 s), parking after 3 missed pings (20 s); dormant stays
    assert dropped == {"s2/server": 20, "s3/server": 65}
    assert set(c.waiting) == {"s4/server", "s5/server"}


def test_ping_keeps_a_waiter_and_an_unknown_ping_reenqueues():
    c = ctl(limit=1)
    c.handle(req(1), "s1/server", 0.0)
    fx = c.handle(StatusPing("s7/server", "img", 1, 4, "pending", "image", 0, 30.0, "", 3.0), "s7/server", 3.0)
    assert only(sends(fx, AccessDeny, "s7/server")).msg.seq == 4
    fx = c.handle(StatusPing("s7/server", "img", 1, 4, "pending", "image", 0, 30.0, "", 8.0), "s7/server", 8.0)
    assert not sends(fx) and not [e for e in fx if isinstance(e, Emit)]  # a known waiter's ping is not answered
    assert c.waiting["s7/server"].last_seen == 8.0


def test_a_dormant_notice_from_an_unknown_server_is_not_answered_and_never_granted_asleep():
    c = ctl(limit=1)
    g = only(sends(c.handle(req(1), "s1/server", 0.0), AccessGrant)).msg
    fx = c.handle(StatusPing("s7/server", "img", 1, 4, "dormant", "image", 0, 30.0, "", 3.0), "s7/server", 3.0)
    assert not sends(fx)
    fx = c.handle(Release("s1/server", "img", 1, g.lease, g.epoch, "image", "ok", 30.0), "s1/server", 30.0)
    assert sends(fx, Wake, "s7/server") and not sends(fx, AccessGrant)


def test_proxy_batch_is_answered_in_one_reply_and_served_first():
    c = ctl(limit=1)
    c.handle(req(1), "s1/server", 0.0)
    c.handle(req(2), "s2/server", 0.5)  # direct, earlier
    batch = ProxyBatch(PX, 1, (req(3), req(4)))
    fx = c.handle(batch, PX, 1.0)
    reply = only(sends(fx, ProxyReply, PX)).msg
    assert [(m.server, type(m).__name__) for m in reply.items] == [("s3/server", "AccessDeny"),
                                                                   ("s4/server", "AccessDeny")]
    assert reply.items[0].position == 0  # ahead of the direct s2
    assert c.inbound_by["ProxyBatch"] == 1
    # the grant to a proxied server goes back through its proxy
    lease = next(iter(c.leases))
    fx = c.handle(Release("s1/server", "img", 1, lease, c.epoch, "image", "ok", 9.0), "s1/server", 10.0)
    assert [type(m).__name__ for m in only(sends(fx, ProxyReply, PX)).msg.items] == ["AccessGrant"]


def test_recovering_controller_grants_nothing_and_adopts_renewed_leases():
    c = ResourceController("img", rng=random.Random(2), limit=2, ttl=30.0)  # grace defaults to ttl
    c.tick(0.0)
    assert c.state is ControllerState.RECOVERING
    fx = c.handle(req(1), "s1/server", 1.0)
    d = only(sends(fx, AccessDeny)).msg
    assert d.wait >= 29.0
    old_epoch = c.epoch + 1
    fx = c.handle(LeaseRenew("s9/server", "img", 4, 1234, old_epoch, 2.0), "s9/server", 2.0)
    assert only(sends(fx, LeaseRenewed)).msg.lease == 1234
    assert only(emits(fx, "lease.adopted")).fields["holders"] == 1
    # s1 was told to park for the grace; it pings as parked servers do (every ping_parking = 20 s)
    c.handle(StatusPing("s1/server", "img", 1, 1, "parking", "image", 0, 30.0, "", 21.0), "s1/server", 21.0)
    fx = c.tick(30.0)
    assert only(emits(fx, "controller.state")).fields == {"resource": "img", "from": "recovering", "to": "active",
                                                          "reason": "grace over", "holders": 1, "limit": 2}
    assert only(sends(fx, AccessGrant)).to == "s1/server" and c.holders == 2
    fx = c.handle(LeaseRenew("s8/server", "img", 4, 999, old_epoch, 31.0), "s8/server", 31.0)
    assert only(sends(fx, LeaseLost)).msg.reason == "unknown epoch"


def report(latency, used, err=0.0, seq=1):
    return ResourceReport("img", seq, 0, latency, used, err)


def test_limit_decreases_when_latency_sags_and_increases_with_headroom():
    c = ctl(limit=10, window=5.0)
    c.handle(report(1.0, 1.0), "store/x", 0.5)
    c.handle(report(1.8, 1.0), "store/x", 2.0)
    changed = [e for t in range(1, 6) for e in emits(c.tick(float(t)), "limit.changed")]
    assert [e.fields["reason"] for e in changed] == ["latency"] and c.limit == 9
    # at the limit with servers waiting, using 60%: raise
    for i in range(20):
        c.handle(req(i), f"s{i}/server", 5.5)
    changed = []
    for t in range(6, 11):
        c.handle(report(1.0, 0.6, seq=t), "store/x", t - 0.5)
        changed += emits(c.tick(float(t)), "limit.changed")
    assert [(e.fields["old"], e.fields["new"], e.fields["reason"]) for e in changed] == [(9, 10, "headroom")]


def test_a_reported_nominal_latency_is_the_baseline():
    """A storm that starts above capacity never shows an unloaded latency; the resource's nominal one serves."""
    c = ctl(limit=80, window=5.0)
    for t in (1, 3):
        c.handle(ResourceReport("img", t, 80, 1.6, 1.0, 0.0, nominal=1.0), "store/x", float(t))
    changed = [e for t in range(1, 6) for e in emits(c.tick(float(t)), "limit.changed")]
    assert [(e.fields["new"], e.fields["reason"]) for e in changed] == [(72, "latency")]


def test_fixed_limit_controller_never_adapts():
    c = ctl(limit=10, adaptive=False)
    c.handle(report(5.0, 1.0), "store/x", 1.0)
    assert not any(emits(c.tick(float(t)), "limit.changed") for t in range(1, 20)) and c.limit == 10


def test_resource_delivering_well_below_its_history_is_flagged():
    c = ctl(limit=10, underdelivery_window=30.0)
    g = {}
    for i in range(10):
        g[i] = only(sends(c.handle(req(i), f"s{i}/server", 0.0), AccessGrant)).msg
    # a history of 30 s stages, 25 of them
    for n in range(25):
        c.history.record("image", 30.0)
    for t in range(1, 31):
        c.tick(float(t))  # first window: judged from t=30 on (history known at its start)
    for t in range(31, 61):
        for i in range(10):
            c.handle(LeaseRenew(f"s{i}/server", "img", 1, g[i].lease, g[i].epoch, float(t)), f"s{i}/server", float(t))
        fx = c.tick(float(t))
        if t == 60:
            flag = only(emits(fx, "history.underdelivery")).fields
            lowered = only(emits(fx, "limit.changed")).fields
    assert flag["completions"] == 0 and flag["ratio"] == 0.0 and c.underdelivering
    # ... and an adaptive controller lowers its limit on it (issue 16, deliverable 5)
    assert (lowered["old"], lowered["new"], lowered["reason"]) == (10, 9, "underdelivery") and c.limit == 9


def test_notices_and_unexpected_input_at_the_controller():
    c = ctl()
    fx = c.handle(Provision("img", "boot", "image", 1000, 30.0), WF, 1.0)
    assert only(emits(fx, "admission.notice")).fields["coming"] == 1000
    fx = c.handle(AccessRequest("s1/server", "other", 1, 1), "s1/server", 1.0)
    assert emits(fx, "controller.ignored")[0].fields["why"] == "for resource 'other'"
    assert emits(c.handle(TimerFired("x"), RC, 1.0), "controller.ignored")
    assert emits(c.handle(Hello("a/b", 1), "a/b", 1.0), "controller.ignored")
    fx = c.handle(Release("s1/server", "img", 1, 424242, c.epoch), "s1/server", 1.0)
    assert emits(fx, "lease.release_unknown")


# -- the proxy (FIG. 2B) --------------------------------------------------------------------------------------


def proxy(**kw) -> Proxy:
    kw.setdefault("flush_every", 1.0)
    kw.setdefault("resend_every", 6.0)
    return Proxy(PX, {"img": RC}, **kw)


def test_proxy_aggregates_many_servers_into_one_batch():
    p = proxy()
    fx = p.handle(req(1, stamp=0.0), "s1/server", 0.0)
    assert timers(fx) == {"flush": 1.0}
    assert p.handle(req(2), "s2/server", 0.2) == []
    p.handle(LeaseRenew("s3/server", "img", 1, 5, 3, 0.3), "s3/server", 0.3)
    p.handle(LeaseRenew("s3/server", "img", 1, 5, 3, 0.6), "s3/server", 0.6)  # replaces the older renewal
    p.handle(Release("s4/server", "img", 1, 6, 3), "s4/server", 0.7)
    fx = p.handle(TimerFired("flush"), PX, 1.0)
    batch = only(sends(fx, ProxyBatch, RC)).msg
    assert [type(m).__name__ for m in batch.items] == ["AccessRequest", "AccessRequest", "LeaseRenew", "Release"]
    assert batch.items[2].stamp == 0.6
    ev = only(emits(fx, "proxy.batch")).fields
    assert (ev["items"], ev["requests"], ev["renewals"], ev["releases"]) == (4, 2, 1, 1)


def test_proxy_absorbs_retries_and_resends_less_often_until_answered():
    p = proxy(resend_every=6.0)
    p.handle(req(1), "s1/server", 0.0)
    p.handle(TimerFired("flush"), PX, 1.0)
    assert p.handle(req(1), "s1/server", 2.0) == [] and p.deduped == 1  # the server's retry
    fx = p.handle(TimerFired("resend"), PX, 7.0)
    assert "flush" in timers(fx) and p.resent == 1
    fx = p.handle(TimerFired("flush"), PX, 8.0)
    assert only(sends(fx, ProxyBatch)).msg.items[0].server == "s1/server"
    d = AccessDeny("s1/server", "img", 1, 1, 3, Directive.PENDING, 5.0)
    fx = p.handle(ProxyReply(3, (d, Wake("s2/server", "img", 1, 1, 3, "s2/bmc"))), RC, 9.0)
    assert [(e.to, type(e.msg).__name__) for e in sends(fx)] == [("s1/server", "AccessDeny"), ("s2/bmc", "Wake")]
    assert not p.carried
    fx = p.handle(TimerFired("resend"), PX, 20.0)
    assert not sends(fx) and not p.batch


def test_proxy_forgets_requests_nobody_answers_and_ignores_the_unexpected():
    p = proxy(resend_every=6.0, forget_after=20.0)
    p.handle(req(1), "s1/server", 0.0)
    t = 1.0
    p.handle(TimerFired("flush"), PX, t)
    while p.carried and t < 100:
        t += 6.0
        p.handle(TimerFired("resend"), PX, t)
        p.handle(TimerFired("flush"), PX, t + 1.0)
    assert not p.carried and p.forgotten == 1
    assert emits(p.handle(AccessRequest("s1/server", "other", 1, 1), "s1/server", 1.0), "proxy.ignored")
    assert emits(p.handle(Hello("a/b", 1), "a/b", 1.0), "proxy.ignored")


# -- the workflow controller (FIG. 2A, pre-provisioning, records) -------------------------------------------


CATALOGUE = [
    {"workflow": "arm-boot", "match": {"hardware": "arm*"},
     "stages": [{"name": "image", "resources": ["img"], "expected": 20.0}]},
    {"workflow": "x86-boot", "match": {"hardware": "x86*", "location": "dc1-*"},
     "stages": [{"name": "image", "resources": ["img"], "expected": 30.0},
                {"name": "drivers", "resources": ["drv"], "needs": ["image"], "expected": 10.0},
                {"name": "config", "needs": ["drivers"], "expected": 2.0}]},
]
RESOURCES = {"img": {"controller": RC, "proxies": [PX]}, "drv": {"controller": "rc1/controller"}}


def test_hello_gets_the_matching_workflow_with_resource_locations():
    w = WorkflowController(CATALOGUE, RESOURCES)
    fx = w.handle(Hello(SRV, 7, "02:00", "x86-64", "dc1-row3"), SRV, 0.0)
    wf = only(sends(fx, Workflow, SRV)).msg
    assert wf.workflow == "x86-boot" and [s.name for s in wf.stages] == ["image", "drivers", "config"]
    assert wf.stages[1].needs == ("image",)
    assert {r.name: (r.controller, r.proxies) for r in wf.resources} == {"img": (RC, (PX,)),
                                                                         "drv": ("rc1/controller", ())}
    assert only(emits(fx, "workflow.assigned")).fields["workflow"] == "x86-boot"
    fx = w.handle(Hello(SRV, 7, "02:00", "x86-64", "dc1-row3"), SRV, 1.0)  # a retry
    assert sends(fx, Workflow) and not emits(fx, "workflow.assigned")
    fx = w.handle(Hello("s2/server", 1, "", "sparc", ""), "s2/server", 1.0)
    assert sends(fx, NoWorkflow) and emits(fx, "workflow.unmatched")


def test_workflow_controller_warns_resource_controllers_and_learns_stage_times():
    w = WorkflowController(CATALOGUE, RESOURCES, notice_every=5.0, learn_after=2)
    for i in range(3):
        w.handle(Hello(f"s{i}/server", 1, "", "x86", "dc1-a"), f"s{i}/server", 0.0)
    fx = w.tick(5.0)
    notices = {(e.to, e.msg.stage): e.msg.servers for e in sends(fx, Provision)}
    assert notices == {(RC, "image"): 3, ("rc1/controller", "drivers"): 3}
    assert w.tick(10.0) == []  # nothing changed
    for i, d in enumerate((40.0, 50.0)):
        w.handle(StageReport(f"s{i}/server", 1, "x86-boot", "image", "ok", d), f"s{i}/server", 60.0)
    w.handle(StageReport("s2/server", 1, "x86-boot", "image", "failed", 1.0), "s2/server", 60.0)
    fx = w.handle(Hello("s9/server", 1, "", "x86", "dc1-a"), "s9/server", 61.0)
    assert only(sends(fx, Workflow)).msg.stages[0].expected == 45.0
    fx = w.handle(WorkflowDone("s0/server", 1, "x86-boot", True, 99.0), "s0/server", 99.0)
    assert emits(fx, "workflow.done")
    stats = w.stats()
    assert stats["stages"]["x86-boot/image"] == {"runs": 3, "ok": 2, "failed": 1, "mean": 45.0, "min": 40.0, "max": 50.0}
    assert stats["workflows"] == {"x86-boot": {"done": 1, "failed": 0}}


@pytest.mark.parametrize("bad, message", [
    ([{"workflow": "w", "stages": [{"name": "a", "resources": ["nope"]}]}], "unknown resources"),
    ([{"workflow": "w", "stages": [{"name": "a"}, {"name": "a"}]}], "duplicate stage"),
    ([{"workflow": "w", "stages": [{"name": "a", "needs": ["b"]}]}], "unknown stages"),
    ([{"workflow": "w", "stages": [{"name": "a", "needs": ["b"]}, {"name": "b", "needs": ["a"]}]}], "cycle"),
    ([{"workflow": "w", "match": {"colour": "red"}, "stages": [{"name": "a"}]}], "unknown match keys"),
    ([], "non-empty"),
])
def test_a_bad_catalogue_is_refused_up_front(bad, message):
    with pytest.raises(ValueError, match=message):
        WorkflowController(bad, RESOURCES)


def test_a_server_walks_a_multi_stage_workflow_with_a_local_stage():
    w = WorkflowController(CATALOGUE, RESOURCES)
    s = server(hardware="x86", location="dc1-x")
    hello = only(sends(s.tick(0.0), Hello)).msg
    wf = only(sends(w.handle(hello, SRV, 0.0), Workflow)).msg
    fx = s.handle(wf, WF, 0.1)
    assert only(sends(fx, AccessRequest)).to == RC
    fx = s.handle(AccessGrant(SRV, "img", s.boot, s.req_seq, 1, 3, 30.0, 0.1), RC, 0.2)
    fx = s.handle(StageDone("image", only(of(fx, RunStage)).run), SRV, 30.0)
    assert only(sends(fx, AccessRequest)).to == "rc1/controller"
    fx = s.handle(AccessGrant(SRV, "drv", s.boot, s.req_seq, 2, 4, 30.0, 30.0), "rc1/controller", 30.1)
    fx = s.handle(StageDone("drivers", only(of(fx, RunStage)).run), SRV, 40.0)
    run = only(of(fx, RunStage))
    assert run.stage == "config" and run.resources == () and not sends(fx, AccessRequest)
    fx = s.handle(StageDone("config", run.run), SRV, 42.0)
    assert s.state is ServerState.DONE


def test_the_wait_is_predicted_from_the_holders_own_stages_not_every_stages_mean():
    """History: 'image' takes 40 s, 'drivers' 2 s (pooled mean 21 s). With the slot held by a drivers stage,
    a waiter one place behind waits about 2 s, not 21 s; a stage with no history counts the holder's own
    estimate (its request's ``expected``)."""
    c = ctl(limit=1, expected=30.0)
    for _ in range(5):
        c.history.record("image", 40.0)
        c.history.record("drivers", 2.0)
    c.handle(AccessRequest("s1/server", "img", 1, 1, "drivers", 0, 2.0, "", 0.0), "s1/server", 0.0)
    d = only(sends(c.handle(req(2), "s2/server", 0.1), AccessDeny)).msg
    assert d.wait == pytest.approx(2.0)
    c2 = ctl(limit=1, expected=30.0)
    c2.handle(AccessRequest("s1/server", "img", 1, 1, "firmware", 0, 6.0, "", 0.0), "s1/server", 0.0)
    d = only(sends(c2.handle(req(2), "s2/server", 0.1), AccessDeny)).msg
    assert d.wait == pytest.approx(6.0)


def test_a_server_parked_instead_of_dormant_says_so_and_pings():
    """A holder told 'dormant' (which carries no ping interval) parks instead; it used to stay silent, so the
    controller kept it as dormant and its waiting-list entry could only be woken. It now tells the controller it
    is parking and pings."""
    s, _ = two_resource_server()
    s.handle(AccessGrant(SRV, "drv", s.boot, s.req_seq, 5, 3, 30.0, 0.1), "rc1/controller", 0.2)
    fx = s.handle(deny(s, Directive.DORMANT, wait=500.0, ping_every=0.0, stamp=0.2), RC, 0.3)
    assert s.state is ServerState.PARKING
    ping = only(sends(fx, StatusPing, RC)).msg
    assert ping.state == "parking"
    every = timers(fx)["ping"] - 0.3
    assert 1.0 <= every <= s.recheck_min
    fx = s.handle(TimerFired("ping"), SRV, 0.3 + every)
    assert only(sends(fx, StatusPing, RC)).msg.state == "parking"


def test_with_proxies_too_retries_back_off_once_every_route_has_failed():
    """Asks that no route answers used to go out every retry_after / proxy_retry_after for ever when proxies
    exist (only a lone route backed off); once every route has failed its share they back off too (x16 at most)."""
    s, fx = running_server(proxies=("px/proxy0", "px/proxy1"), retry_after=1.0, proxy_retry_after=2.0,
                           proxy_after_failures=3)
    gaps = []
    for _ in range(24):
        at = timers(fx)["ask"]
        fx = s.handle(TimerFired("ask"), SRV, at)
        gaps.append(timers(fx)["ask"] - at)
    assert gaps[-1] > 4 * 2.0 * 1.2, gaps  # well past the longest un-backed-off retry
    assert max(gaps) <= 2.0 * 16 * 1.2
    # an answer resets it: the next ask is at the plain interval again
    s.handle(deny(s, Directive.PENDING, wait=5.0, ping_every=1.0), RC, at + 0.1)
    fx = s.handle(TimerFired("recheck"), SRV, at + 30.0)
    assert timers(fx)["ask"] - (at + 30.0) <= 2.0 * 1.2
