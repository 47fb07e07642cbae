"""The queued-workload plug-in (issue 20): gateway, durable queue, workers, code and data services,
billing, simulated tenants; its checkers.

Kinds:

* ``workload.gateway`` - :class:`~protocols.workload.gateway.Gateway`;
* ``workload.queue`` - :func:`topologies.workload.store.durable_queue`: the pure
  :class:`~protocols.workload.queue_service.QueueService` over SQLite in WAL mode;
* ``workload.worker`` - :class:`~protocols.workload.worker.Worker` on
  :class:`topologies.workload.hosts.WorkerHost`: real code in a warm Python zygote in a node process,
  played in the simulator (a task's data says how long it runs);
* ``workload.python_worker`` - the same worker running real code in a warm Python zygote
  (:class:`topologies.workload.hosts.PythonRunner`; node processes only);
* ``workload.code``, ``workload.data`` - the code and data services;
* ``workload.billing`` - :class:`~protocols.workload.billing.BillingService`;
* ``workload.tenants`` - :class:`~protocols.workload.tenants.Tenants`, bursty simulated tenants.

Checkers: :mod:`topologies.workload.checks`. Command: ``fleetplane task`` (:mod:`topologies.workload.client`).
"""

from __future__ import annotations

from protocols.workload.billing import BillingService
from protocols.workload.gateway import Gateway
from protocols.workload.services import CodeService, DataService
from protocols.workload.tenants import Tenants
from protocols.workload.worker import Worker
from topologies.kinds import make_kind
from topologies.plugin import Command, Plugin, ReportSection
from topologies.workload.client import cmd_task, setup_task
from topologies.workload.checks import CHECKERS
from topologies.workload.hosts import PythonRunner, WorkerHost
from topologies.workload.report import workload_chart
from topologies.workload.store import durable_queue

PLUGIN = Plugin(
    name="workload",
    protocols=("protocols.workload",),
    kinds=(
        make_kind("workload.gateway", Gateway, doc="validates tenants' tasks, acknowledges once queued durably"),
        make_kind("workload.queue", durable_queue,
                  doc="per-type task queues: aging, priority, fair tenants, leases; SQLite (WAL) behind it"),
        make_kind("workload.worker", Worker, addresses=("queue",), host=WorkerHost,
                  doc="pulls and runs tasks: real code in a warm Python zygote (played in the simulator)"),
        make_kind("workload.python_worker", Worker, addresses=("queue",), host=PythonRunner,
                  doc="pulls and runs tasks' real code in a warm Python zygote (PythonRunner)"),
        make_kind("workload.code", CodeService, doc="versioned code, shared per use"),
        make_kind("workload.data", DataService, doc="checksummed blobs"),
        make_kind("workload.billing", BillingService, doc="metered time to charges per tenant and period"),
        make_kind("workload.tenants", Tenants, addresses=("gateway",), doc="simulated tenants with bursty arrivals"),
    ),
    checkers=CHECKERS,
    report=(ReportSection("Workload: dispatch waits against the maximum delay", workload_chart),),
    must_judge=("tasks-end-once", "no-task-lost", "max-delay-held", "billed-as-metered"),
    commands=(Command("task", "submit a task to a running workload topology, or read its status, result, "
                              "retry it, read a statement", setup_task, cmd_task),),
    doc="the queued workload service",
)
