"""The rack control component: manages its hosts and reports their status to its monitor.

How this works
--------------
Every ``report_every`` seconds (a timer) the control sends its monitor a
``Status`` with the current metrics: processor load, OS error count, network
loss, power supply level, temperature. The metrics are a dict the harness (or
a real agent) changes with ``SetMetrics``; the defaults describe a healthy
rack. A ``Reboot`` reboots the hosts: the control emits ``rack.reboot``, is
silent for ``reboot_time`` seconds (no reports while its hosts restart), then
resumes with its metrics reset to healthy. Power loss is the process (or
simulated participant) dying: the monitor, on its own supply, keeps running.

Fencing: a ``Reboot`` is obeyed only from the rack's own monitor (over the
rack-local channel) and carries a token ``(group, term, decision)``; the
control remembers the decisions it obeyed (the last ``remember``) and the
highest ``(term, seq)`` it obeyed, and refuses a duplicate (a decision obeyed
before: the monitor's retry after a lost acknowledgement) or a stale token
(older than one obeyed). Every ``Reboot`` is answered by a ``RebootAck`` with
its outcome, obeyed or refused, so the monitor stops retrying; refusals are
counted (``refused``) and emitted (``rack.reboot`` with the outcome).

With an ``inventory`` address (the fleet inventory service, :mod:`protocols.rack.inventory`) the control
also sends it an ``InventoryReport`` every ``inventory_every`` seconds: host-side traffic, over the main
network rather than the rack-local channel (not while its hosts reboot).

Events: ``rack.report`` (every status sent: the fault-detection checker
needs each one), ``rack.metrics`` (changed by SetMetrics), ``rack.reboot``
(outcome ``rebooting``, ``already-rebooting``, ``duplicate`` or ``stale``),
``rack.rebooted``, ``rack.bad_input``.
"""

from __future__ import annotations

from typing import Any

from protocols.core import Effect, Emit, Send, SetTimer, TimerFired
from protocols.rack.inventory import InventoryReport
from protocols.rack.messages import Reboot, RebootAck, SetMetrics, Status

__all__ = ["HEALTHY", "RackControl"]

HEALTHY = {"cpu": 0.35, "os_errors": 0, "net_loss": 0.0, "power": 1.0, "temp": 38.0, "psu_faults": 0}


class RackControl:
    tick_interval = None

    def __init__(self, rack: str, monitor: str, report_every: float = 0.2, reboot_time: float = 0.5,
                 metrics: dict | None = None, address: str = "", remember: int = 64, inventory: str = "",
                 inventory_every: float = 1.0) -> None:
        if not (isinstance(report_every, (int, float)) and report_every > 0):
            raise ValueError(f"report_every must be > 0, got {report_every!r}")
        if not (isinstance(inventory_every, (int, float)) and inventory_every > 0):
            raise ValueError(f"inventory_every must be > 0, got {inventory_every!r}")
        self.inventory = inventory
        self.inventory_every = float(inventory_every)
        self.inventory_seq = 0
        self.rack = rack
        self.monitor = monitor
        self.address = address
        self.report_every = float(report_every)
        self.reboot_time = float(reboot_time)
        self.metrics = dict(HEALTHY)
        self.metrics.update(metrics or {})
        self.seq = 0
        self.rebooting_until: float | None = None
        self.reboots = 0
        self.remember = max(1, int(remember))
        self.obeyed: dict[str, tuple[int, int]] = {}  # decision -> token (term, seq), the last ``remember``
        self.fence: tuple[int, int] = (0, 0)  # the highest (term, seq) obeyed
        self.refused = {"duplicate": 0, "stale": 0, "bad_input": 0}

    def tick(self, now: float) -> list[Effect]:
        inventory: list[Effect] = [SetTimer("inventory", now + self.inventory_every)] if self.inventory else []
        return [Emit("rack.start", {"rack": self.rack, "metrics": dict(self.metrics)})] + self._report(now) + inventory

    def handle(self, msg: Any, sender: str, now: float) -> list[Effect]:
        if isinstance(msg, TimerFired):
            if msg.key == "report":
                return self._report(now)
            if msg.key == "inventory":
                return self._to_inventory(now)
            if msg.key == "rebooted":
                self.rebooting_until = None
                self.metrics = dict(HEALTHY)
                return [Emit("rack.rebooted", {"rack": self.rack, "reboots": self.reboots})] + self._report(now)
            return []
        if isinstance(msg, SetMetrics):
            if not isinstance(msg.metrics, dict):
                return [Emit("rack.bad_input", {"reason": "metrics must be a map", "from": sender})]
            self.metrics.update({k: v for k, v in msg.metrics.items() if isinstance(k, str)})
            return [Emit("rack.metrics", {"rack": self.rack, "metrics": dict(self.metrics), "from": sender})]
        if isinstance(msg, Reboot):
            return self._on_reboot(msg, sender, now)
        return [Emit("rack.bad_input", {"reason": f"unexpected {type(msg).__name__}", "from": sender})]

    def _on_reboot(self, msg: Reboot, sender: str, now: float) -> list[Effect]:
        head, _, seq = msg.decision.rpartition(":")
        why = None
        if msg.rack != self.rack:
            why = f"reboot for rack {msg.rack}"
        elif sender != self.monitor:
            why = f"reboot from {sender}, not from this rack's monitor"
        elif head != f"reboot:{self.rack}" or not seq.isdigit():
            why = f"malformed decision {msg.decision!r}"
        if why is not None:
            self.refused["bad_input"] += 1
            return [Emit("rack.bad_input", {"reason": why, "from": sender})]
        token = (int(msg.term), int(seq))
        fields = {"rack": self.rack, "decision": msg.decision, "by": msg.by, "group": msg.group, "term": msg.term}
        if msg.decision in self.obeyed or token < self.fence:
            outcome = "duplicate" if msg.decision in self.obeyed else "stale"
            self.refused[outcome] += 1
            return [Emit("rack.reboot", {**fields, "outcome": outcome, "refused": self.refused[outcome],
                                         "fence": list(self.fence)}),
                    Send(sender, RebootAck(self.rack, msg.decision, outcome))]
        self.obeyed[msg.decision] = token
        while len(self.obeyed) > self.remember:
            del self.obeyed[next(iter(self.obeyed))]  # the oldest; the fence still refuses them as stale
        self.fence = max(self.fence, token)
        if self.rebooting_until is not None:
            return [Emit("rack.reboot", {**fields, "outcome": "already-rebooting"}),
                    Send(sender, RebootAck(self.rack, msg.decision, "already-rebooting"))]
        self.reboots += 1
        self.rebooting_until = now + self.reboot_time
        return [Emit("rack.reboot", {**fields, "outcome": "rebooting"}),
                Send(sender, RebootAck(self.rack, msg.decision, "rebooting")),
                SetTimer("rebooted", self.rebooting_until)]

    def _report(self, now: float) -> list[Effect]:
        effects: list[Effect] = [SetTimer("report", now + self.report_every)]
        if self.rebooting_until is not None:
            return effects
        self.seq += 1
        return [Send(self.monitor, Status(self.rack, self.seq, dict(self.metrics))),
                Emit("rack.report", {"rack": self.rack, "seq": self.seq})] + effects

    def _to_inventory(self, now: float) -> list[Effect]:
        effects: list[Effect] = [SetTimer("inventory", now + self.inventory_every)]
        if self.rebooting_until is not None or not self.inventory:
            return effects
        self.inventory_seq += 1
        return [Send(self.inventory, InventoryReport(self.rack, self.inventory_seq, dict(self.metrics)))] + effects
