"""Pre-provisioning ahead of a known wave (issue 16, deliverable 5; seed doc, the DHCP / provisioning paragraphs).

"When it is expected that a server computing device will request a certain computing resource, the resource
control device may begin to make that computing resource available for use." The workflow controller counts
the servers still to come to each stage (assigned and not past it, plus an announced wave not yet arrived) and
tells the stage's resource controller (:class:`Provision`); an adaptive resource controller told of a wave
larger than its limit raises the limit at once to the capacity its resource measured, instead of one a window.
"""

from __future__ import annotations

import random

import pytest

from protocols.core import Emit, Send
from protocols.workflow import (
    Hello,
    Provision,
    ResourceController,
    ResourceReport,
    StageReport,
    WaveNotice,
    WorkflowController,
    WorkflowDone,
)
from tests.workflow_sim import build_storm, check_admission

RC, RC1 = "rc0/controller", "rc1/controller"
CATALOGUE = [
    {"workflow": "x86-boot", "match": {"hardware": "x86*"}, "stages": [
        {"name": "image", "resources": ["img"], "expected": 40.0},
        {"name": "drivers", "resources": ["drv"], "needs": ["image"], "expected": 20.0}]},
    {"workflow": "arm-boot", "match": {"hardware": "arm*"}, "stages": [
        {"name": "image", "resources": ["img"], "expected": 30.0}]},
]
RESOURCES = {"img": {"controller": RC}, "drv": {"controller": RC1}}


def notices(fx) -> dict[tuple[str, str, str], int]:
    return {(e.to, e.msg.workflow, e.msg.stage): e.msg.servers for e in fx
            if isinstance(e, Send) and isinstance(e.msg, Provision)}


def emits(fx, kind):
    return [e for e in fx if isinstance(e, Emit) and e.kind == kind]


# -- the workflow controller: servers still to come ---------------------------------------------------------


def test_provision_counts_the_servers_still_to_come_not_every_server_ever_assigned():
    w = WorkflowController(CATALOGUE, RESOURCES, notice_every=5.0)
    for i in range(3):
        w.handle(Hello(f"s{i}/server", 1, "", "x86", ""), f"s{i}/server", 0.0)
    assert notices(w.tick(5.0)) == {(RC, "x86-boot", "image"): 3, (RC1, "x86-boot", "drivers"): 3}
    for i in range(2):  # two are past the image stage
        w.handle(StageReport(f"s{i}/server", 1, "x86-boot", "image", "ok", 40.0), f"s{i}/server", 6.0)
    w.handle(StageReport("s2/server", 1, "x86-boot", "image", "failed", 1.0), "s2/server", 6.0)  # still to come
    assert notices(w.tick(10.0)) == {(RC, "x86-boot", "image"): 1}
    w.handle(WorkflowDone("s2/server", 1, "x86-boot", False, 9.0), "s2/server", 11.0)  # gave up: not coming
    assert notices(w.tick(15.0)) == {(RC, "x86-boot", "image"): 0, (RC1, "x86-boot", "drivers"): 2}
    w.handle(Hello("s0/server", 2, "", "x86", ""), "s0/server", 16.0)  # rebooted: it does every stage again
    assert notices(w.tick(20.0)) == {(RC, "x86-boot", "image"): 1}
    w.handle(StageReport("s1/server", 1, "x86-boot", "drivers", "ok", 20.0), "s1/server", 21.0)
    w.handle(StageReport("s0/server", 1, "x86-boot", "image", "ok", 20.0), "s0/server", 21.0)  # the old boot's
    assert notices(w.tick(25.0)) == {(RC1, "x86-boot", "drivers"): 1}
    assert w.tick(30.0) == []  # nothing changed


def test_a_wave_announced_ahead_is_noticed_before_its_servers_say_hello():
    w = WorkflowController(CATALOGUE, RESOURCES, notice_every=5.0)
    fx = w.handle(WaveNotice(400, hardware="x86-64", location="row7"), "dhcp/dhcp", 0.0)
    assert emits(fx, "workflow.wave")[0].fields == {"workflow": "x86-boot", "servers": 400, "announced": 400}
    assert notices(w.tick(5.0)) == {(RC, "x86-boot", "image"): 400, (RC1, "x86-boot", "drivers"): 400}
    for i in range(3):  # the wave arrives: announced servers become assigned ones, counted once
        w.handle(Hello(f"s{i}/server", 1, "", "x86-64", "row7"), f"s{i}/server", 6.0)
    assert w.tick(10.0) == []
    w.handle(StageReport("s0/server", 1, "x86-boot", "image", "ok", 40.0), "s0/server", 11.0)
    assert notices(w.tick(15.0)) == {(RC, "x86-boot", "image"): 399}
    fx = w.handle(WaveNotice(5, hardware="sparc"), "dhcp/dhcp", 16.0)
    assert emits(fx, "workflow.ignored") and w.tick(20.0) == []  # no workflow fits it: nothing is coming
    fx = w.handle(WaveNotice(-3, hardware="x86"), "dhcp/dhcp", 16.0)
    assert emits(fx, "workflow.ignored") and w.tick(25.0) == []  # bad input is refused, not counted


# -- the resource controller: a known wave raises an adaptive limit to the measured capacity ---------------


def _controller(**kw) -> ResourceController:
    args = {"rng": random.Random(1), "limit": 10, "ttl": 30.0, "grace": 0.0, "expected": 30.0, "window": 5.0}
    args.update(kw)
    c = ResourceController("img", **args)
    c.tick(0.0)
    return c


def _changes(fx):
    return [(e.fields["old"], e.fields["new"], e.fields["reason"]) for e in emits(fx, "limit.changed")]


def test_a_known_wave_raises_an_adaptive_limit_to_the_capacity_its_resource_measured():
    c = _controller()
    c.handle(ResourceReport("img", 1, 10, 1.0, 0.2, 0.0, nominal=1.0), "store/img", 1.0)  # 10 in flight = 0.2 of it
    fx = c.handle(Provision("img", "boot", "image", 1000, 30.0), "wf/workflow", 2.0)
    assert _changes(fx) == [(10, 50, "provision")] and c.limit == 50
    assert emits(fx, "admission.notice")[0].fields["coming"] == 1000


@pytest.mark.parametrize("case", ["not adaptive", "wave within the limit", "nothing measured", "resource sags"])
def test_without_a_wave_and_a_healthy_measurement_the_limit_is_not_raised(case):
    c = _controller(adaptive=case != "not adaptive")
    if case == "resource sags":  # 10 in flight run slower than nominal: no more clients
        c.handle(ResourceReport("img", 1, 10, 1.6, 0.2, 0.0, nominal=1.0), "store/img", 1.0)
    elif case != "nothing measured":
        c.handle(ResourceReport("img", 1, 10, 1.0, 0.2, 0.0, nominal=1.0), "store/img", 1.0)
    coming = 8 if case == "wave within the limit" else 1000
    fx = c.handle(Provision("img", "boot", "image", coming, 30.0), "wf/workflow", 2.0)
    assert _changes(fx) == [] and c.limit == 10, case


def test_a_measurement_after_the_notice_raises_the_limit_then_and_a_wave_gone_stops_it():
    c = _controller()
    c.handle(Provision("img", "boot", "image", 1000, 30.0), "wf/workflow", 1.0)
    fx = c.handle(ResourceReport("img", 1, 10, 1.0, 0.4, 0.0, nominal=1.0), "store/img", 2.0)  # capacity 25
    assert _changes(fx) == [(10, 25, "provision")]
    c.handle(Provision("img", "boot", "image", 0, 30.0), "wf/workflow", 3.0)  # everyone is past the stage
    fx = c.handle(ResourceReport("img", 2, 25, 1.0, 0.5, 0.0, nominal=1.0), "store/img", 4.0)  # capacity 50
    assert _changes(fx) == [] and c.limit == 25


def test_a_raised_limit_is_persisted_before_the_grants_it_allows():
    c = _controller(durable={})
    c.handle(ResourceReport("img", 1, 10, 1.0, 0.2, 0.0, nominal=1.0), "store/img", 1.0)
    fx = c.handle(Provision("img", "boot", "image", 1000, 30.0), "wf/workflow", 2.0)
    metas = [e for e in fx if type(e).__name__ == "Persist" and e.key == "meta"]
    assert metas and metas[-1].data["limit"] == 50


# -- in a storm ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", (1, 2))
def test_a_controller_started_low_serves_a_known_wave_near_ideal(seed):
    """1,000 servers, a store of 50, a controller started at a limit of 5 (an operator's cautious guess): told
    of the wave by the workflow controller, it goes to the measured 50 at once (1.22x of ideal on the old code,
    climbing one a window); never above the store's capacity."""
    storm = build_storm(seed, servers=1000, capacity=50, limit=5).run()
    f = storm.figures()
    assert f["done"] == 1000, f"seed={seed}: {f}"
    assert f["makespan_ratio"] <= 1.10, f"seed={seed}: makespan {f['makespan_ratio']:.3f}x of ideal"
    assert f["store_peak"] <= 50, f"seed={seed}: {f['store_peak']} transfers on a store of 50"
    a = check_admission(storm.events())
    assert a["ok"], f"seed={seed}: {a['violations'][:3]}"
    raised = [e for e in storm.events() if e["kind"] == "limit.changed" and e["fields"]["reason"] == "provision"]
    assert raised and raised[0]["fields"]["new"] == 50, f"seed={seed}: {raised[:2]}"


def test_with_no_notice_the_limit_still_climbs_one_a_window():
    """The same storm with the workflow controller's notices off: no wave is known, AIMD's additive increase."""
    storm = build_storm(1, servers=300, capacity=30, limit=5, workflow_kw={"notify": False})
    storm.run(until=40.0)
    changes = [e["fields"] for e in storm.events() if e["kind"] == "limit.changed"]
    assert changes and all(c["reason"] == "headroom" and c["new"] == c["old"] + 1 for c in changes), changes[:5]
