"""Messages of the queued workload service (tags ``workload.X``).

How this works
--------------
Source: ``shared/seeds/003_1de75d49b2f91a9e.txt`` (FIGS. 2-4). Three roles talk:

* gateway -> queue: :class:`Enqueue` (a validated task with its id) is answered by
  :class:`Enqueued` only once the queue holds it durably (``ok=False`` with an
  ``error`` when it is refused, e.g. the queue is full). Resending an ``Enqueue``
  of a known id is answered again and changes nothing.
* worker <-> queue: :class:`Pull` says how many more tasks of which types the
  worker can take (its *credits*; absolute, with a per-boot ``seq``, so a
  duplicated or late ``Pull`` is harmless, and with the number of dispatches
  it has received, so the queue counts those still in flight against the
  credits; ``ahead`` of them are *prefetch* credits: a task sent on one waits
  at the worker until its running task ends, so the worker never waits for the
  queue between two tasks) and doubles as its heartbeat. The
  queue answers with :class:`Dispatch` (a leased task). The worker sends
  :class:`Renew` while the task runs (:class:`Renewed`, ``ok=False``: the lease
  is gone, stop the task) and :class:`Result` when it ends (carrying its
  ``Pull`` of that moment: the slot it frees is offered in the same message), resent until
  :class:`ResultAck` (whose ``status`` says ``accepted``, ``duplicate`` or
  ``unknown``: the first result of a task is kept, later ones discarded).
* anyone -> queue: :class:`Status` -> :class:`TaskStatus`; :class:`Retry` ->
  :class:`Retried` (a tenant resubmits one of its ended tasks).

Outcomes are maps: ``{"ok": True, "value": ..., "metered": seconds, "worker": ...}``
or ``{"ok": False, "error": "...", ...}``.
"""

from __future__ import annotations

from transport.codec import message

__all__ = ["Dispatch", "Enqueue", "Enqueued", "Pull", "Renew", "Renewed", "Result", "ResultAck", "Retried",
           "Retry", "Status", "TaskStatus"]


@message("workload.Enqueue")
class Enqueue:
    task_id: str
    tenant: str
    task_type: str
    priority: int
    max_delay: float
    payload: dict


@message("workload.Enqueued")
class Enqueued:
    task_id: str
    ok: bool
    error: str = ""


@message("workload.Pull")
class Pull:
    boot: str  # the worker's incarnation
    seq: int  # per boot; an older seq is ignored
    types: list
    free: int  # how many more tasks it can take now
    received: int = 0  # Dispatches received this boot: the queue subtracts those still on their way
    ahead: int = 0  # how many of ``free`` would wait there behind a running task (prefetch), the rest start at once


@message("workload.Dispatch")
class Dispatch:
    task_id: str
    lease_id: str
    attempt: int
    task_type: str
    tenant: str
    priority: int
    payload: dict
    lease_ttl: float


@message("workload.Renew")
class Renew:
    task_id: str
    lease_id: str


@message("workload.Renewed")
class Renewed:
    task_id: str
    lease_id: str
    ok: bool


@message("workload.Result")
class Result:
    task_id: str
    lease_id: str
    attempt: int
    outcome: dict
    credits: Pull | None = None  # the worker's Pull as the task ends (one message, not two); None on a resend


@message("workload.ResultAck")
class ResultAck:
    task_id: str
    lease_id: str
    status: str


@message("workload.Status")
class Status:
    task_id: str


@message("workload.TaskStatus")
class TaskStatus:
    task_id: str
    state: str  # queued | leased | done | unknown
    attempts: int = 0
    outcome: dict | None = None
    tenant: str = ""


@message("workload.Retry")
class Retry:
    task_id: str
    tenant: str


@message("workload.Retried")
class Retried:
    task_id: str
    ok: bool
    error: str = ""
