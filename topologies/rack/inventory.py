"""The fleet inventory service's actor kind, ``rack.inventory`` (:class:`protocols.rack.inventory.Inventory`).

Rack controls given its address (``rack.control`` parameter ``inventory``) report their hosts to it over
the main network; in ``racks.toml`` it runs in a process of its own, ``inventory``, which is an end of no
monitor-mesh or rack-local link, so everything it hears crosses the main channel (see ``[channels]`` there).
"""

from __future__ import annotations

from protocols.rack.inventory import Inventory
from topologies.kinds import make_kind

__all__ = ["INVENTORY_KIND"]

INVENTORY_KIND = make_kind(
    "rack.inventory", Inventory,
    doc="the fleet inventory service: rack controls report their hosts to it over the main (host) network")
