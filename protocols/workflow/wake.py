"""The wake agent: a server's BMC stand-in, up while the machine is powered off.

How this works
--------------
A dormant server powers off for real (``PowerOff``): its agent, with every bit
of protocol state, is gone. Its requests name a ``wake`` address, the
:class:`WakeAgent` on the machine's BMC (IPMI, Redfish, Wake-on-LAN in a real
site), which stays reachable while the machine is off. A :class:`Wake` from a
resource controller makes the agent power the machine on (the host effect
:class:`PowerOnMachine`; the embedder's ``on_wake`` carries it out). Wakes are
resent while the machine boots: one power-on per ``min_gap`` seconds, the rest
counted as duplicates. The machine boots as a new incarnation (a new boot
nonce) and asks again; the controller knows it by its stable address and keeps
the reservation it made for it (see the controller's "new boot of a woken
server").
"""

from __future__ import annotations

import attrs

from protocols.core import Effect, Emit
from protocols.workflow.messages import Wake

__all__ = ["PowerOnMachine", "WakeAgent"]


@attrs.frozen(slots=True)
class PowerOnMachine(Effect):
    """Host effect: power the machine ``server`` on (if it is off)."""

    server: str
    resource: str = ""


class WakeAgent:
    """The BMC stand-in of one machine (sans-I/O)."""

    tick_interval = None

    def __init__(self, server: str, *, min_gap: float = 5.0) -> None:
        if not min_gap >= 0:
            raise ValueError(f"min_gap must be >= 0, got {min_gap!r}")
        self.server = server
        self.min_gap = float(min_gap)
        self.last_power_on: float | None = None
        self.power_ons = 0
        self.duplicates = 0

    def tick(self, now: float) -> list[Effect]:
        return []

    def handle(self, msg, sender: str, now: float) -> list[Effect]:
        if type(msg) is not Wake:
            return [Emit("bmc.ignored", {"message": type(msg).__name__, "why": "unexpected message", "from": sender})]
        if msg.server != self.server:
            return [Emit("bmc.ignored", {"message": "Wake", "why": f"for {msg.server!r}", "from": sender})]
        if self.last_power_on is not None and now - self.last_power_on < self.min_gap:
            self.duplicates += 1
            return []
        self.last_power_on = now
        self.power_ons += 1
        return [Emit("bmc.wake", {"server": self.server, "resource": msg.resource, "by": sender}),
                PowerOnMachine(self.server, msg.resource)]
