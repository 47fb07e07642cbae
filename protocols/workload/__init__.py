"""The queued workload service (``shared/seeds/003_1de75d49b2f91a9e.txt``): per-type task queues with
priority, a hard maximum delay and fair tenants; durable acknowledgement; metering and billing.

Pure state machines and data structures only (DESIGN.md, "The sans-I/O discipline"):

* :mod:`protocols.workload.queue` - one task type's queue: dispatch order, leases, first result wins;
* :mod:`protocols.workload.queue_service` - the queue as a state machine (messages in, effects out,
  every change persisted before it is acknowledged);
* :mod:`protocols.workload.billing` - metered time to charges, per tenant and period.
"""
