"""The rack-monitor plug-in: rack controls and monitors agreeing by Paxos.

Kinds ``rack.*``, the consensus and detection checkers
(:mod:`topologies.rack.checks`), the indicators-and-authorities chart
(:mod:`topologies.rack.report`), the ``racks.toml`` generator
(``python -m topologies.rack.gen``) and ``fleetplane racks status RUNDIR-or-endpoint``
(one running monitor's fleet view: :mod:`topologies.rack.status`).
"""

from __future__ import annotations

from protocols.rack import RackControl, RackMonitor
from topologies.kinds import make_kind
from topologies.plugin import Command, Plugin, ReportSection
from topologies.rack.checks import CHECKERS
from topologies.rack.inventory import INVENTORY_KIND
from topologies.rack.report import rack_timeline
from topologies.rack.status import cmd_racks, setup_racks

PLUGIN = Plugin(
    name="rack",
    protocols=("protocols.rack", "protocols.consensus"),
    kinds=(
        make_kind("rack.control", RackControl, addresses=("monitor", "inventory"),
                  doc="a rack's control component: reports its hosts' status to its monitor, reboots them"),
        make_kind("rack.monitor", RackMonitor,
                  doc="a rack's state monitor: fault detection, Paxos on conditions and authorities (sector, DC, fleet)"),
        INVENTORY_KIND,
    ),
    checkers=CHECKERS,
    report=(ReportSection("Rack monitors: rack indicators and authorities", rack_timeline),),
    must_judge=("paxos-one-value", "one-authority-per-ballot", "fleet-agreement"),
    commands=(Command("racks", "ask a running rack monitor for its fleet view: data centers, sectors and racks, "
                               "with their level of agreement and age (racks status RUNDIR-or-endpoint)",
                      setup_racks, cmd_racks),),
    doc="rack monitors with hierarchical Paxos",
)
