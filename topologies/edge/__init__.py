"""The edge plug-in: deployment managers and edge nodes with partition-triggered local control planes.

Kinds ``localplane.*`` (the edge kind's host, :class:`ServiceHost`, plays the workloads of the roles a node
holds and serves the site's clients, ``localplane.clients``), the local-plane checkers (:mod:`topologies.edge.checks`)
and the connectivity / leaders / role holders chart (:mod:`topologies.edge.report`).
"""

from __future__ import annotations

from protocols.localplane import DeploymentManager, EdgeNode, SiteClients
from topologies.edge.checks import CHECKERS
from topologies.edge.report import edge_timeline
from topologies.edge.services import ServiceHost
from topologies.kinds import make_kind
from topologies.plugin import Plugin, ReportSection

PLUGIN = Plugin(
    name="edge",
    protocols=("protocols.localplane",),
    kinds=(
        make_kind("localplane.manager", DeploymentManager, addresses=("edges",),
                  doc="the deployment manager of edge local control planes (intent -> IR, final plans, ratification)"),
        make_kind("localplane.edge", EdgeNode, addresses=("manager", "distrust"), exclude=("evaluate",),
                  host=ServiceHost,
                  doc="an edge node: self-evaluates fit, holds roles (simulated workloads), runs a local control plane "
                      "while isolated"),
        make_kind("localplane.clients", SiteClients, addresses=("edges",),
                  doc="simulated clients of a site: ask every edge node for each role, record what they were answered"),
    ),
    checkers=CHECKERS,
    report=(ReportSection("Edge nodes: connectivity, leader per island, role holders", edge_timeline),),
    must_judge=("plan-holders", "governance"),
    doc="partition-triggered local control planes on edge nodes",
)
