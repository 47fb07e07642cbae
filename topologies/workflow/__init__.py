"""The boot-workflow plug-in: servers, resource controllers, workflow controllers and proxies.

Kinds ``workflow.*`` (the booting server's hardware is simulated by
:class:`topologies.workflow.hosts.BootHost`), the admission checkers
(:mod:`topologies.workflow.checks`; the councils' in
:mod:`topologies.workflow.council_checks`) and the holders-against-limit chart
(:mod:`topologies.workflow.report`).
"""

from __future__ import annotations

from protocols.workflow.controller import ResourceController
from protocols.workflow.oversight import Oversight
from protocols.workflow.proxy import Proxy
from protocols.workflow.server import Server
from protocols.workflow.workflow_controller import WorkflowController
from topologies.kinds import make_kind
from topologies.plugin import Command, Plugin, ReportSection
from topologies.workflow.checks import CHECKERS
from topologies.workflow.council_checks import COUNCIL_CHECKERS
from topologies.workflow.council_report import council_table
from topologies.workflow.console import Console, ConsoleHost, cmd_console, cmd_oversee, setup_console, setup_oversee
from topologies.workflow.hosts import BootHost
from topologies.workflow.report import holders_chart
from topologies.workflow.store import SharedStore

PLUGIN = Plugin(
    name="workflow",
    protocols=("protocols.workflow",),
    kinds=(
        make_kind("workflow.workflow", WorkflowController, doc="hands booting servers their workflows"),
        make_kind("workflow.resource", ResourceController, doc="admission control for one resource"),
        make_kind("workflow.proxy", Proxy, doc="forwards and aggregates servers' requests"),
        make_kind("workflow.server", Server, addresses=("workflow_controller",), host=BootHost,
                  doc="a booting server (simulated hardware: BootHost)"),
        make_kind("workflow.store", SharedStore, addresses=("controller",),
                  doc="a simulated image store of finite bandwidth that reports its load to its controller"),
        make_kind("workflow.oversight", Oversight,
                  doc="the councils' oversight role: holds mitigations for an operator's approval (issue 21)"),
        make_kind("workflow.console", Console, host=ConsoleHost,
                  doc="the oversight role's operator console: a web page on 127.0.0.1 (fleetplane console)"),
    ),
    checkers=CHECKERS + COUNCIL_CHECKERS,
    report=(ReportSection("Holders and the limit in force", holders_chart),
            ReportSection("Councils: mitigations proposed, decided, approved, enforced", council_table)),
    must_judge=("admission-limit", "leases-end", "servers-done", "no-grant-while-dormant"),
    commands=(Command("console", "print the link (with its token) to a running topology's oversight console",
                      setup_console, cmd_console),
              Command("oversee", "list, approve, reject, propose, impose or cancel councils' mitigations of a "
                      "running topology (through its console)", setup_oversee, cmd_oversee)),
    doc="resource-dependent boot workflows",
)
