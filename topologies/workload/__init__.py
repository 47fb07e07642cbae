"""The queued-workload plug-in: the durable queue (SQLite in WAL mode) and, later, gateway, workers,
code and data services, billing, checkers and report (issue 20).

Kinds: ``workload.queue`` (:func:`topologies.workload.store.durable_queue`: the pure
:class:`~protocols.workload.queue_service.QueueService` over :class:`~topologies.workload.store.SqliteTaskStore`).
"""

from __future__ import annotations

from topologies.kinds import make_kind
from topologies.plugin import Plugin
from topologies.workload.store import durable_queue

PLUGIN = Plugin(
    name="workload",
    protocols=("protocols.workload",),
    kinds=(
        make_kind("workload.queue", durable_queue, exclude=("weights",),
                  doc="per-type task queues: aging, priority, fair tenants, leases; SQLite (WAL) behind it"),
    ),
    doc="the queued workload service",
)
