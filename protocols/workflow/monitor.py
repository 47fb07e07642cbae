"""The resource monitor: measures a real resource and reports it to the resource's controller.

How this works
--------------
(Seed doc FIG. 4, block 404, and claim 21: availability from "the network
use or availability", "the processing use or availability", the response
time and the success rate of the resource.) A :class:`ResourceMonitor` runs
beside the resource (an image server, a TFTP box, a driver repository). Every
``every`` seconds it asks its host to measure the resource (the host effect
:class:`MeasureResource`); the host - the embedder's callback, see
:class:`actors.workflow.ResourceMonitorActor` - answers with a
:class:`Measurement` (transfers in flight, latency per unit of work and its
nominal value, offered load as a fraction of the bandwidth, error rate, CPU in
use as a fraction) or :class:`MeasureFailed`. A measurement is checked (an
embedder's NaN, negative count or CPU of 2.0 is refused, counted and reported
as ``monitor.refused``, never sent) and goes to the controller as a
:class:`~protocols.workflow.messages.ResourceReport` with the next ``seq``.
An adaptive controller moves its limit on these reports (``policy.aimd_step``;
CPU above 0.95 is a reason to back off, above 0.85 no headroom to grow).

Measurements are the host's; the machine keeps only the schedule and the
sequence number. Events: ``monitor.report``, ``monitor.refused``,
``monitor.failed``, ``monitor.ignored``.
"""

from __future__ import annotations

import math

import attrs

from protocols.core import Effect, Emit, Send, SetTimer, TimerFired
from protocols.workflow.messages import ResourceReport
from transport.codec import message

__all__ = ["MeasureFailed", "MeasureResource", "Measurement", "ResourceMonitor"]


@attrs.frozen(slots=True)
class MeasureResource(Effect):
    """Host effect: measure ``resource`` now and tell the monitor a :class:`Measurement` (or :class:`MeasureFailed`)."""

    resource: str


@message("workflow.Measurement")
class Measurement:
    """What the host measured (see :class:`~protocols.workflow.messages.ResourceReport` for each figure)."""

    in_flight: int
    latency: float
    bandwidth_used: float
    error_rate: float = 0.0
    cpu: float = -1.0  # below 0: not measured
    nominal: float = 0.0


@message("workflow.MeasureFailed")
class MeasureFailed:
    why: str


def _problem(m: Measurement) -> str | None:
    """What is wrong with an embedder's measurement, or None."""
    if not isinstance(m.in_flight, int) or isinstance(m.in_flight, bool) or m.in_flight < 0:
        return f"in_flight must be an int >= 0, got {m.in_flight!r}"
    for name in ("latency", "bandwidth_used", "error_rate", "cpu", "nominal"):
        v = getattr(m, name)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            return f"{name} must be a finite number, got {v!r}"
    if m.latency < 0 or m.bandwidth_used < 0 or m.nominal < 0:
        return "latency, bandwidth_used and nominal must be >= 0"
    if not 0.0 <= m.error_rate <= 1.0:
        return f"error_rate must be a fraction in [0, 1], got {m.error_rate!r}"
    if m.cpu > 1.0:
        return f"cpu must be a fraction in [0, 1] (or < 0: not measured), got {m.cpu!r}"
    return None


class ResourceMonitor:
    """Measures one resource every ``every`` seconds for its controller at ``controller`` (sans-I/O)."""

    tick_interval = None

    def __init__(self, resource: str, controller: str, *, every: float = 1.0) -> None:
        if not isinstance(every, (int, float)) or not every > 0 or not math.isfinite(every):
            raise ValueError(f"every must be > 0, got {every!r}")
        self.resource = resource
        self.controller = controller
        self.every = float(every)
        self.seq = 0
        self.refused = 0
        self.failed = 0
        self.started = False

    def tick(self, now: float) -> list[Effect]:
        if self.started:
            return []
        self.started = True
        return [MeasureResource(self.resource), SetTimer("measure", now + self.every)]

    def handle(self, msg, sender: str, now: float) -> list[Effect]:
        t = type(msg)
        if t is TimerFired and msg.key == "measure":
            return [MeasureResource(self.resource), SetTimer("measure", now + self.every)]
        if t is Measurement:
            why = _problem(msg)
            if why is not None:
                self.refused += 1
                return [Emit("monitor.refused", {"resource": self.resource, "why": why, "refused": self.refused})]
            self.seq += 1
            cpu = float(msg.cpu) if msg.cpu >= 0 else -1.0
            rep = ResourceReport(self.resource, self.seq, msg.in_flight, float(msg.latency),
                                 float(msg.bandwidth_used), float(msg.error_rate), float(msg.nominal), cpu)
            return [Send(self.controller, rep),
                    Emit("monitor.report", {"resource": self.resource, "seq": self.seq, "in_flight": msg.in_flight,
                                            "latency": rep.latency, "load": rep.bandwidth_used,
                                            "error_rate": rep.error_rate, "cpu": cpu if cpu >= 0 else None})]
        if t is MeasureFailed:
            self.failed += 1
            return [Emit("monitor.failed", {"resource": self.resource, "why": str(msg.why)[:500],
                                            "failed": self.failed})]
        return [Emit("monitor.ignored", {"message": t.__name__, "from": sender})]
