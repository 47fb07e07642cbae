"""The fleet inventory service: rack controls report their hosts to it over the main (host) network.

How this works
--------------
In the seed's data center the hosts and their rack control components sit on the main network, while the
rack monitors talk to each other over a network of their own (the monitor mesh). The inventory service is
host-side traffic on the main network: every rack control with an ``inventory`` address sends it an
:class:`InventoryReport` every ``inventory_every`` seconds (its sequence number and its hosts' metrics). The
service keeps the latest report per rack and, every ``check_every`` seconds, says which racks it has not
heard from for ``stale_after`` seconds: ``inventory.stale`` (the racks that went quiet since the last
check) and ``inventory.fresh`` (those heard again). So cutting the main network shows up here, as missing
reports, and nowhere in the monitors' agreement, which rides the mesh.

Events: ``inventory.start``, ``inventory.report`` (rack, seq, from: one per report received),
``inventory.stale`` / ``inventory.fresh`` (racks, count, known), ``inventory.bad_input``.
A pure state machine, as every protocol here.
"""

from __future__ import annotations

from typing import Any

from protocols.core import Effect, Emit
from transport.codec import message

__all__ = ["Inventory", "InventoryReport"]


@message("rack.InventoryReport")
class InventoryReport:
    """A rack control's report to the fleet inventory: its rack, a sequence number, its hosts' metrics."""

    rack: str
    seq: int
    metrics: dict


class Inventory:
    """The fleet inventory service (see the module docstring)."""

    def __init__(self, stale_after: float = 3.0, check_every: float = 1.0, address: str = "") -> None:
        if not (isinstance(stale_after, (int, float)) and stale_after > 0):
            raise ValueError(f"stale_after must be > 0, got {stale_after!r}")
        if not (isinstance(check_every, (int, float)) and check_every > 0):
            raise ValueError(f"check_every must be > 0, got {check_every!r}")
        self.stale_after = float(stale_after)
        self.tick_interval = float(check_every)
        self.address = address
        self.last: dict[str, tuple[int, float, dict]] = {}  # rack -> (seq, when heard, metrics)
        self.stale: set[str] = set()
        self.reports = 0
        self.started = False

    def tick(self, now: float) -> list[Effect]:
        if not self.started:
            self.started = True
            return [Emit("inventory.start", {"address": self.address})]
        quiet = {r for r, (_s, at, _m) in self.last.items() if now - at >= self.stale_after}
        out: list[Effect] = []
        went, back = sorted(quiet - self.stale), sorted(self.stale - quiet)
        if went:
            out.append(Emit("inventory.stale", {"racks": went, "count": len(quiet), "known": len(self.last)}))
        if back:
            out.append(Emit("inventory.fresh", {"racks": back, "count": len(quiet), "known": len(self.last)}))
        self.stale = quiet
        return out

    def handle(self, msg: Any, sender: str, now: float) -> list[Effect]:
        if not isinstance(msg, InventoryReport):
            return [Emit("inventory.bad_input", {"reason": f"unexpected {type(msg).__name__}", "from": sender})]
        if not isinstance(msg.metrics, dict) or not msg.rack:
            return [Emit("inventory.bad_input", {"reason": "a report needs a rack and a metrics map", "from": sender})]
        seen = self.last.get(msg.rack)
        if seen is not None and msg.seq <= seen[0] and now - seen[1] < self.stale_after:
            return []  # a repeated or overtaken report (a lower seq after a quiet spell: a restarted control)
        self.last[msg.rack] = (int(msg.seq), now, dict(msg.metrics))
        self.reports += 1
        return [Emit("inventory.report", {"rack": msg.rack, "seq": msg.seq, "from": sender})]
