"""One task type's queue: dispatch order, leases, the first result wins (pure, no I/O).

How this works
--------------
Source: ``shared/seeds/003_1de75d49b2f91a9e.txt`` (FIG. 2, workload queue 218;
FIG. 3; claims 1-26): tasks wait in a queue per task type until a worker of
that type pulls one; "higher priority first, but a task that has waited its
maximum delay goes to the top".

Dispatch order (:meth:`TaskQueue.pick`), one rule after the other:

1. **Aging.** A queued task whose deadline (``enqueued_at + max_delay``) has
   come is *overdue* and goes to the top, whatever its priority. Among overdue
   tasks the one whose deadline passed first goes first (ties: arrival order).
2. **Priority.** Otherwise the highest priority with a queued task.
3. **Fairness between tenants** within that priority: weighted start-time fair
   queuing. Each tenant has a virtual time per priority; the tenant with the
   smallest goes next (ties: its oldest task's arrival), and each dispatch adds
   ``1 / weight`` to it. A tenant that becomes active starts at the level's
   virtual clock (the start tag of the last task served there), so a tenant
   that was idle gets no burst of credit and a flooding tenant cannot starve
   another: with weights 2 and 1 the first gets two dispatches for each of the
   second's. Overdue dispatches are charged to the tenant the same way.
4. **Arrival order** within a tenant (a task given back after a lost lease keeps
   its place and its ``enqueued_at``, so it ages as before).

Leases: :meth:`dispatch` leases the picked task to a worker until
``now + lease_ttl`` and counts an attempt; the worker renews (:meth:`renew`)
while it runs. :meth:`expire` gives the tasks of lapsed leases back to the
queue with their attempt count; a task that has been given out
``max_attempts`` times without a result ends as a failure ("lost") instead of
going round for ever.

Results: :meth:`complete` keeps the first result of a task, whichever attempt
sent it (a late result of a lapsed lease still counts if none came first), and
discards and counts every later one: a task ends exactly once. Ended tasks
are remembered for ``done_ttl`` (at most ``max_done`` of them, oldest forgotten
first) so a late duplicate is recognised; after that it is "unknown" and
discarded all the same.

Bounds: at most ``max_tasks`` queued or leased tasks (:class:`QueueFull`
otherwise); the per-tenant and per-priority tables hold only tenants and
priorities with queued tasks (and a virtual time per tenant seen, bounded by
``max_tenants``).

Everything here is a plain data structure driven by ``now`` arguments; the
queue service (:mod:`protocols.workload.queue_service`) wraps it in a state
machine and persists each change before it is acknowledged.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from typing import Any, Iterable

import attrs

__all__ = ["DONE", "LEASED", "QUEUED", "QueueFull", "Task", "TaskQueue"]

QUEUED, LEASED, DONE = "queued", "leased", "done"


class QueueFull(Exception):
    """The queue holds ``max_tasks`` tasks (or the tenant its ``max_per_tenant``); the submission is refused."""


@attrs.define
class Task:
    """A task as the queue keeps it; ``payload`` (code, data, notify address, ...) is opaque to the queue."""

    id: str
    tenant: str
    priority: int
    max_delay: float
    enqueued_at: float
    seq: int  # arrival order within this queue
    payload: dict = attrs.field(factory=dict)
    state: str = QUEUED
    attempts: int = 0
    lease_id: str = ""
    worker: str = ""
    lease_expires: float = 0.0
    dispatched_at: float = 0.0
    outcome: dict | None = None  # the kept result once done: {"ok": bool, ...}
    done_at: float = 0.0
    gen: int = 0  # bumped on every (re)queue: heap entries of an older gen are stale

    @property
    def deadline(self) -> float:
        return self.enqueued_at + self.max_delay

    def row(self) -> dict:
        """What the durable store keeps (everything but the in-memory ``gen``)."""
        return {"id": self.id, "tenant": self.tenant, "priority": self.priority, "max_delay": self.max_delay,
                "enqueued_at": self.enqueued_at, "seq": self.seq, "payload": self.payload, "state": self.state,
                "attempts": self.attempts, "lease_id": self.lease_id, "worker": self.worker,
                "dispatched_at": self.dispatched_at, "outcome": self.outcome, "done_at": self.done_at}

    @classmethod
    def from_row(cls, row: dict) -> "Task":
        return cls(id=row["id"], tenant=row["tenant"], priority=int(row["priority"]),
                   max_delay=float(row["max_delay"]), enqueued_at=float(row["enqueued_at"]), seq=int(row["seq"]),
                   payload=dict(row.get("payload") or {}), state=row.get("state", QUEUED),
                   attempts=int(row.get("attempts", 0)), lease_id=row.get("lease_id", ""),
                   worker=row.get("worker", ""), dispatched_at=float(row.get("dispatched_at", 0.0)),
                   outcome=row.get("outcome"), done_at=float(row.get("done_at", 0.0)))


class _Level:
    """The queued tasks of one priority: a heap per tenant, weighted fair virtual times."""

    __slots__ = ("heaps", "count", "vtime", "vclock", "total")

    def __init__(self) -> None:
        self.heaps: dict[str, list[tuple[int, int, str]]] = {}
        self.count: dict[str, int] = {}
        self.vtime: dict[str, float] = {}
        self.vclock = 0.0
        self.total = 0


class TaskQueue:
    def __init__(self, task_type: str, *, lease_ttl: float = 10.0, max_attempts: int = 5,
                 weights: dict[str, float] | None = None, max_tasks: int = 100_000,
                 max_per_tenant: int | None = None, done_ttl: float = 3600.0, max_done: int = 100_000,
                 max_tenants: int = 10_000) -> None:
        if lease_ttl <= 0 or max_attempts < 1 or max_tasks < 1 or max_done < 0:
            raise ValueError(f"TaskQueue({task_type!r}): need lease_ttl > 0, max_attempts >= 1, max_tasks >= 1, "
                             f"max_done >= 0")
        for t, w in (weights or {}).items():
            if not w > 0:
                raise ValueError(f"TaskQueue({task_type!r}): tenant {t!r} has weight {w!r}; weights must be > 0")
        self.task_type = task_type
        self.lease_ttl = lease_ttl
        self.max_attempts = max_attempts
        self.weights = dict(weights or {})
        self.max_tasks = max_tasks
        self.max_per_tenant = max_per_tenant
        self.done_ttl = done_ttl
        self.max_done = max_done
        self.max_tenants = max_tenants
        self.tasks: dict[str, Task] = {}  # queued and leased
        self.done: OrderedDict[str, Task] = OrderedDict()  # ended, oldest first
        self._levels: dict[int, _Level] = {}
        self._deadlines: list[tuple[float, int, int, str]] = []
        self._leases: list[tuple[float, str, str]] = []  # (expires, task id, lease id), lazily cleaned
        self._per_tenant: dict[str, int] = {}
        self.next_seq = 0
        self.counters = {"added": 0, "dispatched": 0, "requeued": 0, "completed": 0, "duplicates": 0,
                         "unknown_results": 0, "lost": 0, "refused_full": 0, "overdue_dispatches": 0}

    # ---------------------------------------------------------------- queries

    def __len__(self) -> int:
        return len(self.tasks)

    def queued(self) -> int:
        return sum(lvl.total for lvl in self._levels.values())

    def get(self, task_id: str) -> Task | None:
        return self.tasks.get(task_id) or self.done.get(task_id)

    def next_lease_expiry(self) -> float | None:
        while self._leases:
            at, tid, lid = self._leases[0]
            t = self.tasks.get(tid)
            if t is not None and t.state == LEASED and t.lease_id == lid:
                return t.lease_expires
            heapq.heappop(self._leases)
        return None

    def weight(self, tenant: str) -> float:
        return self.weights.get(tenant, 1.0)

    # ---------------------------------------------------------------- adding

    def add(self, task: Task) -> bool:
        """Queue a new task (False: the id is known already, nothing changes). Raises :class:`QueueFull`."""
        if task.id in self.tasks or task.id in self.done:
            return False
        if len(self.tasks) >= self.max_tasks:
            self.counters["refused_full"] += 1
            raise QueueFull(f"queue {self.task_type!r} holds {len(self.tasks)} tasks (its bound)")
        if self.max_per_tenant is not None and self._per_tenant.get(task.tenant, 0) >= self.max_per_tenant:
            self.counters["refused_full"] += 1
            raise QueueFull(f"tenant {task.tenant!r} has {self.max_per_tenant} tasks in queue "
                            f"{self.task_type!r} (its bound)")
        task.seq = self.next_seq if task.seq < 0 else task.seq
        self.next_seq = max(self.next_seq, task.seq + 1)
        task.state = QUEUED
        self.tasks[task.id] = task
        self._per_tenant[task.tenant] = self._per_tenant.get(task.tenant, 0) + 1
        self._enqueue(task)
        self.counters["added"] += 1
        return True

    def restore(self, tasks: Iterable[Task], now: float) -> None:
        """Rebuild from a durable store after a restart: queued tasks queue again in their order, leased ones
        stay leased (their worker may still renew or report) until ``now + lease_ttl``, done ones are kept."""
        for t in sorted(tasks, key=lambda t: t.seq):
            self.next_seq = max(self.next_seq, t.seq + 1)
            if t.state == DONE:
                self.done[t.id] = t
                continue
            self.tasks[t.id] = t
            self._per_tenant[t.tenant] = self._per_tenant.get(t.tenant, 0) + 1
            if t.state == LEASED:
                t.lease_expires = now + self.lease_ttl
                heapq.heappush(self._leases, (t.lease_expires, t.id, t.lease_id))
            else:
                t.state = QUEUED
                self._enqueue(t)
        ordered = sorted(self.done.values(), key=lambda t: t.done_at)
        self.done = OrderedDict((t.id, t) for t in ordered)

    def _enqueue(self, task: Task) -> None:
        task.gen += 1
        task.state = QUEUED
        lvl = self._levels.get(task.priority)
        if lvl is None:
            lvl = self._levels[task.priority] = _Level()
        n = lvl.count.get(task.tenant, 0)
        if n == 0:  # the tenant becomes active at this priority: no credit for its idle time
            lvl.vtime[task.tenant] = max(lvl.vtime.get(task.tenant, 0.0), lvl.vclock)
            if len(lvl.vtime) > self.max_tenants:
                self._forget_idle_vtimes(lvl)
        lvl.count[task.tenant] = n + 1
        lvl.total += 1
        heapq.heappush(lvl.heaps.setdefault(task.tenant, []), (task.seq, task.gen, task.id))
        heapq.heappush(self._deadlines, (task.deadline, task.seq, task.gen, task.id))

    def _forget_idle_vtimes(self, lvl: _Level) -> None:
        for tenant in [t for t, v in lvl.vtime.items() if lvl.count.get(t, 0) == 0 and v <= lvl.vclock]:
            del lvl.vtime[tenant]

    # ---------------------------------------------------------------- dispatch

    def _valid(self, tid: str, gen: int) -> Task | None:
        t = self.tasks.get(tid)
        if t is None or t.state != QUEUED or t.gen != gen:
            return None
        return t

    def pick(self, now: float) -> Task | None:
        """The task that goes next (not removed): overdue first, then priority, then fair share, then arrival."""
        while self._deadlines:
            deadline, _seq, gen, tid = self._deadlines[0]
            t = self._valid(tid, gen)
            if t is None:
                heapq.heappop(self._deadlines)
                continue
            if deadline <= now:
                return t
            break
        for prio in sorted((p for p, lvl in self._levels.items() if lvl.total > 0), reverse=True):
            lvl = self._levels[prio]
            best: tuple[float, int] | None = None
            choice: Task | None = None
            for tenant, n in lvl.count.items():
                if n <= 0:
                    continue
                head = self._head(lvl, tenant)
                if head is None:
                    continue
                key = (lvl.vtime[tenant], head.seq)
                if best is None or key < best:
                    best, choice = key, head
            if choice is not None:
                return choice
        return None

    def earliest_deadline(self) -> float | None:
        """The earliest deadline of a queued task (None: nothing is queued)."""
        while self._deadlines:
            deadline, _seq, gen, tid = self._deadlines[0]
            if self._valid(tid, gen) is not None:
                return deadline
            heapq.heappop(self._deadlines)
        return None

    def _head(self, lvl: _Level, tenant: str) -> Task | None:
        heap = lvl.heaps.get(tenant)
        while heap:
            _seq, gen, tid = heap[0]
            t = self._valid(tid, gen)
            if t is not None:
                return t
            heapq.heappop(heap)
        return None

    def _take(self, task: Task) -> None:
        lvl = self._levels[task.priority]
        start = lvl.vtime.get(task.tenant, lvl.vclock)
        lvl.vclock = max(lvl.vclock, start)
        lvl.vtime[task.tenant] = start + 1.0 / self.weight(task.tenant)
        lvl.count[task.tenant] -= 1
        lvl.total -= 1
        if lvl.count[task.tenant] == 0:
            del lvl.count[task.tenant]
            lvl.heaps.pop(task.tenant, None)
        if lvl.total == 0 and not lvl.count:
            # keep the level (its virtual times) only while it matters; an empty level restarts fresh
            if len(lvl.vtime) > self.max_tenants:
                self._forget_idle_vtimes(lvl)
        task.gen += 1  # every heap entry of this queueing is now stale

    def dispatch(self, worker: str, lease_id: str, now: float) -> Task | None:
        """Lease the next task to ``worker`` until ``now + lease_ttl`` (None: nothing is queued)."""
        t = self.pick(now)
        if t is None:
            return None
        if t.deadline <= now:
            self.counters["overdue_dispatches"] += 1
        self._take(t)
        t.state = LEASED
        t.worker = worker
        t.lease_id = lease_id
        t.attempts += 1
        t.dispatched_at = now
        t.lease_expires = now + self.lease_ttl
        heapq.heappush(self._leases, (t.lease_expires, t.id, lease_id))
        self.counters["dispatched"] += 1
        return t

    # ---------------------------------------------------------------- leases

    def renew(self, task_id: str, lease_id: str, now: float) -> bool:
        """Extend a live lease to ``now + lease_ttl``; False if that lease is no longer the task's."""
        t = self.tasks.get(task_id)
        if t is None or t.state != LEASED or t.lease_id != lease_id or t.lease_expires < now:
            return False
        t.lease_expires = now + self.lease_ttl
        heapq.heappush(self._leases, (t.lease_expires, t.id, lease_id))
        return True

    def expire(self, now: float) -> list[Task]:
        """Give back the tasks whose lease lapsed before ``now``; a task out of attempts ends as lost.

        Returns the tasks changed (state ``queued`` again, or ``done`` with a "lost" outcome)."""
        changed = []
        while self._leases and self._leases[0][0] < now:
            _at, tid, lid = heapq.heappop(self._leases)
            t = self.tasks.get(tid)
            if t is None or t.state != LEASED or t.lease_id != lid or t.lease_expires >= now:
                continue
            t.worker, t.lease_id = "", ""
            if t.attempts >= self.max_attempts:
                self._finish(t, {"ok": False, "error": f"lost: the lease lapsed on each of {t.attempts} attempts",
                                 "lost": True}, now)
                self.counters["lost"] += 1
            else:
                self._enqueue(t)
                self.counters["requeued"] += 1
            changed.append(t)
        return changed

    def release(self, task_id: str, lease_id: str) -> Task | None:
        """A worker gives a task back unrun (it is shutting down): queued again; its attempt is not counted."""
        t = self.tasks.get(task_id)
        if t is None or t.state != LEASED or t.lease_id != lease_id:
            return None
        t.attempts = max(0, t.attempts - 1)
        t.worker, t.lease_id = "", ""
        self._enqueue(t)
        return t

    # ---------------------------------------------------------------- results

    def complete(self, task_id: str, outcome: dict, now: float) -> str:
        """Record a task's result: ``"accepted"`` (the first), ``"duplicate"`` or ``"unknown"`` (discarded)."""
        t = self.tasks.get(task_id)
        if t is None:
            if task_id in self.done:
                self.counters["duplicates"] += 1
                return "duplicate"
            self.counters["unknown_results"] += 1
            return "unknown"
        if t.state == QUEUED:  # a lapsed lease's late result: the task ends here all the same
            t.gen += 1
            lvl = self._levels[t.priority]
            lvl.count[t.tenant] -= 1
            lvl.total -= 1
            if lvl.count[t.tenant] == 0:
                del lvl.count[t.tenant]
                lvl.heaps.pop(t.tenant, None)
        self._finish(t, dict(outcome), now)
        self.counters["completed"] += 1
        return "accepted"

    def _finish(self, t: Task, outcome: dict, now: float) -> None:
        del self.tasks[t.id]
        n = self._per_tenant.get(t.tenant, 1) - 1
        if n:
            self._per_tenant[t.tenant] = n
        else:
            self._per_tenant.pop(t.tenant, None)
        t.state = DONE
        t.outcome = outcome
        t.done_at = now
        t.lease_expires = 0.0
        self.done[t.id] = t
        self.done.move_to_end(t.id)
        while len(self.done) > self.max_done:
            self.done.popitem(last=False)

    def forget_done(self, now: float) -> list[str]:
        """Forget ended tasks older than ``done_ttl``; returns their ids (for the store to drop)."""
        gone = []
        while self.done:
            tid, t = next(iter(self.done.items()))
            if t.done_at + self.done_ttl > now:
                break
            self.done.popitem(last=False)
            gone.append(tid)
        return gone

    def requeue_done(self, task_id: str, now: float, tenant: str | None = None) -> Task | None:
        """``retry``: an ended task queues again as a new attempt series (same id, fresh deadline)."""
        t = self.done.get(task_id)
        if t is None or (tenant is not None and t.tenant != tenant):
            return None
        if len(self.tasks) >= self.max_tasks:
            self.counters["refused_full"] += 1
            raise QueueFull(f"queue {self.task_type!r} holds {len(self.tasks)} tasks (its bound)")
        del self.done[task_id]
        t.outcome, t.done_at, t.attempts = None, 0.0, 0
        t.enqueued_at = now
        t.seq = self.next_seq
        self.next_seq += 1
        self.tasks[t.id] = t
        self._per_tenant[t.tenant] = self._per_tenant.get(t.tenant, 0) + 1
        self._enqueue(t)
        return t

    def snapshot(self) -> dict[str, Any]:
        return {"queued": self.queued(), "leased": sum(1 for t in self.tasks.values() if t.state == LEASED),
                "done": len(self.done), **self.counters}
