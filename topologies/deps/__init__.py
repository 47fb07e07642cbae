"""The dependency-aware startup plug-in (protocol 2).

Kinds ``deps.agent`` (one per computing asset, on a simulated
:class:`~topologies.deps.hosts.AssetHost`) and ``deps.manager``; the checkers
of :mod:`topologies.deps.checks`; the services-per-state chart
(:mod:`topologies.deps.report`); ``fleetplane deps plan`` (real inputs:
:mod:`topologies.deps.sources`, :mod:`topologies.deps.cli`) and
``fleetplane deps coldstart`` (the seeded cold-start simulation, naive or
planned: :mod:`topologies.deps.coldstart`); ``fleetplane deps condition|
remediate|override`` (an operator's decision for a running manager:
:mod:`topologies.deps.operator`).
"""

from __future__ import annotations

from protocols.deps.agent import Agent
from protocols.deps.manager import Manager
from topologies.deps.checks import CHECKERS
from topologies.deps.cli import cmd_deps, setup_deps
from topologies.deps.hosts import AssetHost
from topologies.deps.report import deps_section
from topologies.kinds import make_kind
from topologies.plugin import Command, Plugin, ReportSection

PLUGIN = Plugin(
    name="deps",
    protocols=("protocols.deps", "protocols.workflow"),  # workflow: re-imaging through the boot workflow
    kinds=(
        make_kind("deps.agent", Agent, addresses=("manager", "peers"), host=AssetHost,
                  doc="the agent of one computing asset: reports its services and dependencies, runs them"),
        make_kind("deps.manager", Manager, addresses=("agents",),
                  doc="the dependency manager: startup plan in waves, remedial workflows, deadlock detection"),
    ),
    checkers=CHECKERS,
    report=(ReportSection("Dependency startup: services per state, waves", deps_section),),
    must_judge=("deps-start-order", "deps-all-up"),
    commands=(Command("deps", "dependency-aware startup: plan a service graph (deps plan), simulate a cold start "
                      "(deps coldstart), send an operator's condition, remediation or override to a running "
                      "manager (deps condition|remediate|override)", setup_deps, cmd_deps),),
    doc="dependency-aware startup: plans in waves, remedial workflows for cycles, deadlock detection",
)
