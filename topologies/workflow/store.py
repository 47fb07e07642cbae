"""A shared store with finite bandwidth: the resource a boot storm pulls its images from (kind ``workflow.store``).

How this works
--------------
:class:`SharedStore` is a sans-I/O machine standing in for an image server. A
booting server's host (:class:`topologies.workflow.hosts.BootHost`) starts a
stage's transfer with :class:`Transfer` (``work``: seconds at full speed) and
cancels it with :class:`TransferAbort`. The store is processor sharing with a
per-client cap: with ``n`` transfers in flight each runs at ``min(1, capacity /
n)`` of full speed, so ``capacity`` concurrent clients use all the bandwidth and
more only slow everyone. A transfer that has not finished ``timeout_factor``
times its work after it started fails (its client gave up; the work done is
wasted): past about ``timeout_factor x capacity`` clients every transfer times
out - congestion collapse, the case admission control exists for. The store
answers the server itself: ``StageDone(stage, run)`` or ``StageFailed(stage,
run, why)``.

It is also the resource's monitor: every ``report_every`` seconds it sends its
controller a :class:`~protocols.workflow.messages.ResourceReport` measured on
itself - transfers in flight, latency (seconds per unit of work now; nominal
1.0), offered load (``in flight / capacity``, above 1 when over capacity) and
the error rate (timed-out / started since the last report) - so an ``adaptive``
controller moves its limit in ``fleetplane run`` too. Events: ``store.report``
per report, ``store.timeout`` per failed transfer.
"""

from __future__ import annotations

from typing import Any

from protocols.core import Effect, Emit, Send, SetTimer, TimerFired
from protocols.workflow.messages import ResourceReport, StageDone, StageFailed
from transport.codec import message

__all__ = ["SharedStore", "Transfer", "TransferAbort"]


@message("workflowsim.Transfer")
class Transfer:
    server: str
    run: int
    stage: str
    work: float  # seconds at full speed


@message("workflowsim.TransferAbort")
class TransferAbort:
    server: str
    run: int


class _Flow:
    __slots__ = ("deadline", "left", "stage")

    def __init__(self, stage: str, left: float, deadline: float) -> None:
        self.stage = stage
        self.left = left
        self.deadline = deadline


class SharedStore:
    """One store of finite bandwidth (see the module docstring)."""

    tick_interval = None

    def __init__(self, resource: str, controller: str, *, capacity: int = 50, timeout_factor: float = 4.0,
                 report_every: float = 1.0, max_flows: int = 100_000) -> None:
        if capacity < 1 or not timeout_factor > 1 or not report_every > 0 or max_flows < 1:
            raise ValueError("need capacity >= 1, timeout_factor > 1, report_every > 0 and max_flows >= 1")
        self.resource = resource
        self.controller = controller
        self.capacity = capacity
        self.timeout_factor = float(timeout_factor)
        self.report_every = float(report_every)
        self.max_flows = max_flows
        self.flows: dict[tuple[str, int], _Flow] = {}
        self.last = 0.0
        self.started = self.completed = self.timed_out = self.aborted = 0
        self.peak = 0
        self._w_started = self._w_failed = 0
        self._seq = 0

    def speed(self) -> float:
        n = len(self.flows)
        return 1.0 if n <= self.capacity else self.capacity / n

    def tick(self, now: float) -> list[Effect]:
        self.last = now
        return [SetTimer("report", now + self.report_every)]

    def handle(self, msg: Any, sender: str, now: float) -> list[Effect]:
        self._settle(now)
        t = type(msg)
        fx: list[Effect] = []
        if t is Transfer:
            if len(self.flows) >= self.max_flows or not (isinstance(msg.work, (int, float)) and msg.work >= 0):
                return [Emit("store.refused", {"server": msg.server, "why": "bad work or too many transfers"}),
                        Send(msg.server, StageFailed(msg.stage, msg.run, "store refused the transfer"))]
            self.started += 1
            self._w_started += 1
            self.flows[(msg.server, msg.run)] = _Flow(msg.stage, float(msg.work),
                                                      now + self.timeout_factor * max(float(msg.work), 1e-3))
            self.peak = max(self.peak, len(self.flows))
        elif t is TransferAbort:
            if self.flows.pop((msg.server, msg.run), None) is not None:
                self.aborted += 1
        elif t is TimerFired and msg.key == "report":
            return self._report(now) + self._end(now)
        elif t is TimerFired and msg.key == "next":
            pass
        else:
            return [Emit("store.ignored", {"message": t.__name__, "from": sender})]
        return fx + self._end(now)

    def _settle(self, now: float) -> None:
        dt = now - self.last
        if dt > 0 and self.flows:
            r = self.speed()
            for f in self.flows.values():
                f.left -= dt * r
        self.last = max(self.last, now)

    def _end(self, now: float) -> list[Effect]:
        """Finish what is done, fail what timed out, and set the timer for the next of either."""
        fx: list[Effect] = []
        for key, f in list(self.flows.items()):
            if f.left <= 1e-9:
                del self.flows[key]
                self.completed += 1
                fx.append(Send(key[0], StageDone(f.stage, key[1])))
            elif now >= f.deadline:
                del self.flows[key]
                self.timed_out += 1
                self._w_failed += 1
                fx.append(Emit("store.timeout", {"server": key[0], "stage": f.stage, "in_flight": len(self.flows)}))
                fx.append(Send(key[0], StageFailed(f.stage, key[1], "transfer timed out: the store is overloaded")))
        if self.flows:
            r = self.speed()
            at = min(min(now + max(0.0, f.left) / r for f in self.flows.values()),
                     min(f.deadline for f in self.flows.values()))
            fx.append(SetTimer("next", max(at, now)))
        return fx

    def _report(self, now: float) -> list[Effect]:
        n = len(self.flows)
        self._seq += 1
        err = self._w_failed / self._w_started if self._w_started else 0.0
        self._w_started = self._w_failed = 0
        rep = ResourceReport(self.resource, self._seq, n, 1.0 / self.speed(), n / self.capacity, err, nominal=1.0)
        return [Send(self.controller, rep),
                Emit("store.report", {"resource": self.resource, "in_flight": n, "latency": rep.latency,
                                      "load": rep.bandwidth_used, "error_rate": err}),
                SetTimer("report", now + self.report_every)]
