"""The dependency-aware startup plug-in (protocol 2): ``fleetplane deps plan``.

:mod:`topologies.deps.sources` reads dependency files, systemd unit folders
and compose files; :mod:`topologies.deps.cli` prints plans, JSON and SVG.
"""

from __future__ import annotations

from topologies.deps.cli import cmd_deps, setup_deps
from topologies.plugin import Command, Plugin

PLUGIN = Plugin(
    name="deps",
    protocols=("protocols.deps",),
    commands=(Command("deps", "dependency-aware startup: plan waves and remedial workflows for a service graph",
                      setup_deps, cmd_deps),),
    doc="dependency-aware startup: plans in waves, remedial workflows for cycles",
)
