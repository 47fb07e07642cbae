"""Rack monitors (issue 6): fault detection and hierarchical consensus on conditions and authority.

How this works
--------------
``layout`` (the fleet -> data center -> sector -> rack tree and its names),
``messages`` (``rack.*`` wire messages), ``detector`` (FIG. 5: default
non-fault, faults on silence or thresholds, indicators), ``control`` (the rack
control component: reports status, reboots its hosts) and ``monitor``
(:class:`RackMonitor`: detection, Paxos on conditions and authorities per
sector, data center and fleet, leases, control decisions). All pure state
machines; see each module's docstring.
"""

from protocols.rack.control import HEALTHY, RackControl
from protocols.rack.detector import DEFAULT_INDICATORS, DEFAULT_RULES, FAULT_KINDS, NON_FAULT, FaultDetector
from protocols.rack.layout import FLEET, Layout
from protocols.rack.monitor import LEVELS, MONITOR_KEY, RackMonitor, split_instance

__all__ = ["DEFAULT_INDICATORS", "DEFAULT_RULES", "FAULT_KINDS", "FLEET", "HEALTHY", "LEVELS", "MONITOR_KEY",
           "NON_FAULT", "FaultDetector", "Layout", "RackControl", "RackMonitor", "split_instance"]
