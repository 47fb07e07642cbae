"""The resource monitor role (issue 16, deliverable 4; seed doc FIG. 4, block 404, claim 21).

A real resource (an image server, a TFTP box) is measured by its embedder: a callback on the monitor actor
returns its load, latency, bandwidth, error rate and CPU; the monitor sends them to the resource's controller as
:class:`ResourceReport` every ``every`` seconds, and an adaptive controller moves its limit on them - CPU
included ("available processing power", claim 21), which no report carried before.
"""

from __future__ import annotations

import math
import random

import pytest

from actors import Node, StateMachineActor
from actors.workflow import ResourceMonitorActor
from protocols.core import Emit, Send, SetTimer, TimerFired
from protocols.workflow import ResourceController, ResourceReport
from protocols.workflow.monitor import MeasureResource, Measurement, MeasureFailed, ResourceMonitor
from protocols.workflow.policy import AimdParams, WindowMetrics, aimd_step
from tests.conftest import wait_for


def emits(fx, kind):
    return [e for e in fx if isinstance(e, Emit) and e.kind == kind]


def reports(fx):
    return [e.msg for e in fx if isinstance(e, Send) and isinstance(e.msg, ResourceReport)]


# -- the policy: CPU is a metric of the AIMD rule ------------------------------------------------------------


def test_a_saturated_cpu_decreases_the_limit_and_a_busy_one_allows_no_increase():
    p = AimdParams()
    assert aimd_step(20, WindowMetrics(cpu=0.99), p) == (18, "cpu")
    headroom = WindowMetrics(at_limit=True, recent_utilization=0.5, utilization=0.5, latency_ratio=1.0)
    assert aimd_step(20, headroom, p) == (21, "headroom")
    assert aimd_step(20, attrs_evolve(headroom, cpu=0.9), p) == (20, None)  # above headroom_cpu: hold
    assert aimd_step(20, attrs_evolve(headroom, cpu=0.5), p) == (21, "headroom")


def attrs_evolve(m, **kw):
    import attrs
    return attrs.evolve(m, **kw)


def test_the_controller_judges_cpu_on_the_windows_last_reports():
    c = ResourceController("img", rng=random.Random(1), limit=20, grace=0.0, window=5.0)
    c.tick(0.0)
    for i, cpu in enumerate((0.2, 0.3, 0.98, 0.99)):  # the CPU filled up at the end of the window
        c.handle(ResourceReport("img", i + 1, 10, 1.0, 0.5, 0.0, nominal=1.0, cpu=cpu), "mon/img", 1.0 + i)
    fx = c.tick(5.0)
    (ch,) = emits(fx, "limit.changed")
    assert (ch.fields["old"], ch.fields["new"], ch.fields["reason"]) == (20, 18, "cpu")


def test_a_report_without_cpu_judges_nothing_by_it():
    c = ResourceController("img", rng=random.Random(1), limit=20, grace=0.0, window=5.0)
    c.tick(0.0)
    c.handle(ResourceReport("img", 1, 10, 1.0, 0.5, 0.0, nominal=1.0), "mon/img", 1.0)
    assert c.window_metrics().cpu is None


# -- the monitor machine ---------------------------------------------------------------------------------------


def test_the_monitor_measures_every_interval_and_reports_to_the_controller():
    m = ResourceMonitor("img", "ctl/img", every=2.0)
    fx = m.tick(0.0)
    assert MeasureResource("img") in fx  # at once, then every 2 s
    fx = m.handle(Measurement(in_flight=12, latency=1.5, bandwidth_used=0.6, error_rate=0.01, cpu=0.7,
                              nominal=1.0), "mon/img", 0.1)
    (rep,) = reports(fx)
    assert (rep.resource, rep.seq, rep.in_flight, rep.latency, rep.bandwidth_used, rep.error_rate, rep.cpu,
            rep.nominal) == ("img", 1, 12, 1.5, 0.6, 0.01, 0.7, 1.0)
    assert [e.to for e in fx if isinstance(e, Send)] == ["ctl/img"]
    fx = m.handle(TimerFired("measure"), "mon/img", 2.0)
    assert MeasureResource("img") in fx and any(isinstance(e, SetTimer) and e.at == 4.0 for e in fx)
    fx = m.handle(Measurement(in_flight=3, latency=1.0, bandwidth_used=0.1), "mon/img", 2.1)
    assert reports(fx)[0].seq == 2 and reports(fx)[0].cpu < 0  # CPU not measured: says so


@pytest.mark.parametrize("bad", [
    {"in_flight": -1}, {"latency": -0.5}, {"bandwidth_used": math.nan}, {"error_rate": 1.5}, {"cpu": 2.0},
    {"latency": math.inf}, {"in_flight": 2.5},
])
def test_an_embedders_bad_measurement_is_refused_and_counted_not_sent(bad):
    m = ResourceMonitor("img", "ctl/img", every=1.0)
    m.tick(0.0)
    kw = {"in_flight": 1, "latency": 1.0, "bandwidth_used": 0.5, **bad}
    fx = m.handle(Measurement(**kw), "mon/img", 0.1)
    assert not reports(fx) and emits(fx, "monitor.refused") and m.refused == 1


def test_a_failed_measurement_is_reported_as_an_event_and_the_next_one_still_taken():
    m = ResourceMonitor("img", "ctl/img", every=1.0)
    m.tick(0.0)
    fx = m.handle(MeasureFailed("ConnectionRefusedError: the store's stats port"), "mon/img", 0.1)
    assert emits(fx, "monitor.failed") and m.failed == 1
    fx = m.handle(TimerFired("measure"), "mon/img", 1.0)
    assert MeasureResource("img") in fx


# -- the embedding API: a callback on a real actor ------------------------------------------------------------


def test_a_monitor_callback_drives_a_real_controllers_limit(nodes):
    """A host process reports its resource's CPU through ``ResourceMonitorActor(..., monitor=callable)``; a
    saturated CPU makes the controller back off (limit.changed, reason cpu)."""
    node = Node("lab")
    nodes.append(node)
    node.spawn(StateMachineActor, lambda: ResourceController("images", rng=random.Random(1), limit=20, ttl=5.0,
                                                             grace=0.0, window=0.3), name="images")
    calls: list[int] = []

    def monitor():
        calls.append(1)
        return {"in_flight": 10, "latency": 1.0, "bandwidth_used": 0.5, "cpu": 0.99, "nominal": 1.0}

    node.spawn(ResourceMonitorActor, "images", "lab/images", monitor=monitor, every=0.1, name="monitor")
    changed = wait_for(lambda: [e for e in node.events.events() if e["kind"] == "limit.changed"] or None,
                       timeout=20, what="a limit change")
    assert changed[0]["fields"]["reason"] == "cpu" and changed[0]["fields"]["new"] < 20
    assert len(calls) >= 2


def test_a_monitor_callback_that_raises_is_an_event_not_a_dead_actor(nodes):
    node = Node("lab2")
    nodes.append(node)
    state = {"n": 0}

    def monitor():
        state["n"] += 1
        if state["n"] == 1:
            raise OSError("stats endpoint down")
        return {"in_flight": 1, "latency": 1.0, "bandwidth_used": 0.1, "cpu": 0.2}

    node.spawn(StateMachineActor, lambda: ResourceController("images", rng=random.Random(1), limit=20, grace=0.0),
               name="images")
    node.spawn(ResourceMonitorActor, "images", "lab2/images", monitor=monitor, every=0.1, name="monitor")
    wait_for(lambda: [e for e in node.events.events() if e["kind"] == "monitor.report"] or None, timeout=20,
             what="a report after the failed measurement")
    failed = [e for e in node.events.events() if e["kind"] == "monitor.failed"]
    assert failed and "stats endpoint down" in failed[0]["fields"]["why"]


def test_the_monitors_messages_round_trip_through_the_codec():
    from transport.codec import decode, encode
    for m in (Measurement(12, 1.5, 0.6, 0.01, 0.7, 1.0), MeasureFailed("stats port closed"),
              ResourceReport("img", 3, 12, 1.5, 0.6, 0.01, nominal=1.0, cpu=0.7)):
        assert decode(encode(m)) == m
