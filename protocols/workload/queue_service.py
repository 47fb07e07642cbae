"""The queue service: per-type task queues as one state machine, durable before it acknowledges.

How this works
--------------
:class:`QueueService` owns one :class:`~protocols.workload.queue.TaskQueue` per
task type it serves and speaks :mod:`protocols.workload.messages`:

* ``Enqueue`` from the gateway: the task is added (or found: a resend) and
  answered ``Enqueued``; a full queue or an unknown type answers ``ok=False``
  with the reason.
* ``Pull`` from a worker sets its credits (how many more tasks of which types
  it takes, less the dispatches sent that it had not received when it wrote
  the ``Pull``, counting as still on its way only a dispatch younger than a
  lease: an older one was received, or lost and its lease lapses; a newer
  ``seq`` of the same boot wins, a new boot replaces the old). The service
  then *pumps*: while some worker has credits and one of its types has a
  queued task, the next task in dispatch order is leased to it and sent as
  ``Dispatch``. A *prefetch* credit (``Pull.ahead``: the task would
  wait at the worker until its running task ends) is used only while no queued
  task of the worker's types comes to its deadline within ``run_guard`` (the
  longest of the last results' metered run times of those types; none seen
  yet: no prefetch): a prefetched task has then started before any task
  falls overdue, and an overdue task is never stuck behind one, so it waits
  at most one task's run time past its maximum delay. Workers are served in
  turn; among a worker's types the most urgent task goes first (an overdue one by deadline, then priority, then
  the oldest). A worker not heard from for ``worker_ttl`` loses its credits.
* ``Renew`` extends a lease (``Renewed(ok=False)``: the lease is gone and the
  worker must stop the task: self-fencing). ``Result`` ends the task if it is
  the first result (``ResultAck`` says ``accepted``, ``duplicate`` or
  ``unknown``); an accepted result is emitted as ``workload.task_done`` (with
  the attempt's metered time: the only attempt billed) and, when the task
  names a ``notify`` address, sent there as ``TaskStatus``.
* On its first ``tick`` or message a started service states what its
  database holds: ``workload.accepted`` for every restored waiting or leased
  task (``restored: true``) and ``workload.done_restated`` for every remembered end (the events of a SIGKILLed process's last moments may never
  have reached its event log; the checkers treat these as the same acceptance
  and the same end, never as new ones).
* ``tick`` expires lapsed leases (the task queues again, or ends as lost after
  ``max_attempts``), pumps, and forgets ended tasks past ``done_ttl``.

Durability (DESIGN.md, "Durable state"): every handler that changes a task
returns one :class:`StoreTasks` effect (the rows to write and the ids to
drop) *before* any other effect. Its host (``topologies.workload.store``:
SQLite in WAL mode) commits it in one transaction before carrying out the rest,
so no ``Enqueued``, ``Dispatch`` or ``ResultAck`` ever reports a state the disk
does not hold, and one commit covers all the writes of a handler (group
commit). A restarted service is built with ``restored=`` (every row) and
continues: queued tasks queue again in order, leased ones stay leased for a
fresh ``lease_ttl`` (their worker may still renew or report), ended ones are
remembered for duplicates. Renewals are not written: after a restart a lease
runs a full ``lease_ttl`` from the restart.

Lease ids carry the incarnation (a random nonce from the injected rng), so a
lease of an earlier incarnation never collides with a new one.

Bad input is never fatal: a message of an unknown type, a ``Result`` of an
unknown task, a ``Pull`` naming no served type are answered or ignored and
counted (``counters``); the worker table holds at most ``max_workers``.
"""

from __future__ import annotations

import random
from typing import Any

import attrs

from protocols.core import Effect, Emit, Send
from protocols.workload.billing import Usage, UsageAck
from protocols.workload.messages import (Dispatch, Enqueue, Enqueued, Pull, Renew, Renewed, Result, ResultAck,
                                         Retried, Retry, Status, TaskStatus)
from protocols.workload.queue import DONE, QueueFull, Task, TaskQueue

__all__ = ["QueueService", "StoreTasks"]


@attrs.frozen(slots=True)
class StoreTasks(Effect):
    """Write these task rows and drop these ids, durably, before any later effect (one transaction)."""

    rows: tuple = ()
    drop: tuple = ()


@attrs.define
class _Worker:
    boot: str
    seq: int
    types: tuple
    free: int
    seen: float
    sent: int = 0  # Dispatches sent to this boot
    sent_at: list = attrs.field(factory=list)  # when the Dispatches of the last lease_ttl were sent
    ahead: int = 0  # of ``free``, the prefetch credits (the task would wait there for a slot)


class QueueService:
    def __init__(self, types: list[str], *, lease_ttl: float = 10.0, max_attempts: int = 5,
                 weights: dict[str, float] | None = None, max_tasks: int = 100_000,
                 max_per_tenant: int | None = None, done_ttl: float = 3600.0, max_done: int = 100_000,
                 worker_ttl: float = 5.0, max_workers: int = 1000, tick: float = 0.25, billing: str = "",
                 usage_resend: float = 1.0, restored: list[dict] | None = None,
                 rng: random.Random | None = None) -> None:
        if not types:
            raise ValueError("QueueService: serve at least one task type")
        self.rng = rng or random.Random(0)
        self.incarnation = f"{self.rng.getrandbits(48):012x}"
        self.queues = {t: TaskQueue(t, lease_ttl=lease_ttl, max_attempts=max_attempts, weights=weights,
                                    max_tasks=max_tasks, max_per_tenant=max_per_tenant, done_ttl=done_ttl,
                                    max_done=max_done) for t in types}
        self.lease_ttl = lease_ttl
        self.worker_ttl = worker_ttl
        self.max_workers = max_workers
        self.tick_interval = tick
        self.billing = billing
        self.usage_resend = usage_resend
        self.outbox: dict[str, tuple[Usage, float]] = {}  # usage not yet acknowledged by billing
        self.workers: dict[str, _Worker] = {}
        self._turn = 0
        self._leases = 0
        self._run_times: dict[str, list[float]] = {t: [] for t in types}  # the last results' metered run times
        self._dirty: dict[str, Task | None] = {}
        self._restored = list(restored or [])
        self._started = False
        self.counters = {"enqueued": 0, "refused": 0, "resends": 0, "bad_messages": 0, "stale_pulls": 0,
                         "workers_refused": 0, "dispatched": 0, "accepted": 0, "duplicates": 0, "unknown": 0}

    # ---------------------------------------------------------------- helpers

    def _queue_of(self, task_id: str) -> TaskQueue | None:
        for q in self.queues.values():
            if q.get(task_id) is not None:
                return q
        return None

    def _touch(self, t: Task) -> None:
        self._dirty[t.id] = t

    def _finish(self, out: list[Effect]) -> list[Effect]:
        if not self._dirty:
            return out
        rows = tuple({**t.row(), "task_type": tt} for tid, t in self._dirty.items() if t is not None
                     for tt in [self._type_of(t)])
        drop = tuple(tid for tid, t in self._dirty.items() if t is None)
        self._dirty = {}
        return [StoreTasks(rows, drop), *out]

    def _type_of(self, t: Task) -> str:
        for name, q in self.queues.items():
            if q.get(t.id) is t:
                return name
        return ""

    def _start(self, now: float) -> list[Effect]:
        self._started = True
        out: list[Effect] = []
        by_type: dict[str, list[Task]] = {}
        for row in self._restored:
            tt = row.get("task_type")
            if tt not in self.queues:
                self.counters["bad_messages"] += 1
                continue
            by_type.setdefault(tt, []).append(Task.from_row(row))
        for tt, tasks in by_type.items():
            self.queues[tt].restore(tasks, now)
        n = sum(len(v) for v in by_type.values())
        self._restored = []
        for tt, tasks in by_type.items():
            for t in tasks:
                if t.state == DONE:
                    self._usage(t, now, send=False)  # billing dedups: every remembered result is reported again
                    out.append(self._done_event(t, restored=True))
                else:
                    out.append(self._accepted_event(t, tt, restored=True))
        out.insert(0, Emit("workload.queue_started", {"incarnation": self.incarnation, "restored": n,
                                                      "queued": sum(q.queued() for q in self.queues.values())}))
        return out

    def _accepted_event(self, t: Task, task_type: str, restored: bool = False, retry: bool = False) -> Emit:
        f = {"task": t.id, "tenant": t.tenant, "type": task_type, "priority": t.priority, "max_delay": t.max_delay,
             "enqueued_at": t.enqueued_at}
        if restored:  # the queue's start re-states what its database holds (its earlier events may have died
            f["restored"] = True  # with a SIGKILLed process), the task's state included: waiting or leased
            f["state"] = t.state
        if retry:
            f["retry"] = True
        return Emit("workload.accepted", f)

    def _done_event(self, t: Task, restored: bool = False) -> Emit:
        o = t.outcome or {}
        f = {"task": t.id, "tenant": t.tenant, "ok": bool(o.get("ok")), "attempt": o.get("attempt", t.attempts),
             "worker": o.get("worker", ""), "metered": o.get("metered", 0.0), "resource": o.get("resource", ""),
             "priority": t.priority, "error": str(o.get("error", ""))[:300], "lost": bool(o.get("lost")),
             "lease": o.get("lease", "")}
        if restored:  # its own kind, so counting workload.task_done counts each end once
            f["restored"] = True
            return Emit("workload.done_restated", f)
        return Emit("workload.task_done", f)

    # ---------------------------------------------------------------- entry points

    def tick(self, now: float) -> list[Effect]:
        out = self._start(now) if not self._started else []
        for q in self.queues.values():
            for t in q.expire(now):
                self._touch(t)
                if t.state == DONE:
                    out.extend(self._ended(t, now))
                else:
                    out.append(Emit("workload.lease_lapsed", {"task": t.id, "attempts": t.attempts}))
            for tid in q.forget_done(now):
                self._dirty[tid] = None
        for addr in [a for a, w in self.workers.items() if w.seen + self.worker_ttl < now]:
            del self.workers[addr]
        for tid, (u, sent) in list(self.outbox.items()):
            if now - sent >= self.usage_resend:
                self.outbox[tid] = (u, now)
                out.append(Send(self.billing, u))
        out.extend(self._pump(now))
        return self._finish(out)

    def handle(self, msg: Any, sender: str, now: float) -> list[Effect]:
        out = self._start(now) if not self._started else []
        if isinstance(msg, Enqueue):
            out.extend(self._enqueue(msg, sender, now))
        elif isinstance(msg, Pull):
            out.extend(self._pull(msg, sender, now))
        elif isinstance(msg, Renew):
            out.extend(self._renew(msg, sender, now))
        elif isinstance(msg, Result):
            out.extend(self._result(msg, sender, now))
        elif isinstance(msg, Status):
            out.append(Send(sender, self._status(msg.task_id)))
        elif isinstance(msg, Retry):
            out.extend(self._retry(msg, sender, now))
        elif isinstance(msg, UsageAck):
            self.outbox.pop(msg.task_id, None)
        elif msg.__class__.__name__ == "TimerFired":
            pass
        else:
            self.counters["bad_messages"] += 1
            out.append(Emit("workload.bad_message", {"from": sender, "type": type(msg).__name__}))
        return self._finish(out)

    # ---------------------------------------------------------------- handlers

    def _enqueue(self, m: Enqueue, sender: str, now: float) -> list[Effect]:
        q = self.queues.get(m.task_type)
        if q is None:
            self.counters["refused"] += 1
            return [Send(sender, Enqueued(m.task_id, False, f"this queue serves no task type {m.task_type!r} "
                                                            f"(it serves {sorted(self.queues)})"))]
        known = q.get(m.task_id)
        if known is not None:
            self.counters["resends"] += 1
            return [Send(sender, Enqueued(m.task_id, True))]
        try:
            t = Task(m.task_id, m.tenant, int(m.priority), float(m.max_delay), now, -1, dict(m.payload))
            q.add(t)
        except QueueFull as e:
            self.counters["refused"] += 1
            return [Send(sender, Enqueued(m.task_id, False, str(e)))]
        self._touch(t)
        self.counters["enqueued"] += 1
        out: list[Effect] = [self._accepted_event(t, m.task_type), Send(sender, Enqueued(m.task_id, True))]
        out.extend(self._pump(now))
        return out

    def _pull(self, m: Pull, sender: str, now: float) -> list[Effect]:
        w = self.workers.get(sender)
        types = tuple(t for t in m.types if t in self.queues)
        if w is None:
            if len(self.workers) >= self.max_workers:
                self.counters["workers_refused"] += 1
                return []
            free = max(0, m.free)
            self.workers[sender] = _Worker(m.boot, m.seq, types, free, now, ahead=min(free, max(0, m.ahead)))
            return self._pump(now)
        if w.boot == m.boot and m.seq <= w.seq:
            self.counters["stale_pulls"] += 1
            w.seen = now
            return []
        if w.boot != m.boot:
            w.sent = 0  # a new incarnation of the worker: nothing in flight to it
            w.sent_at.clear()
        # a Dispatch is on its way for at most a lease: by then it was received, or it was lost and its lease
        # lapses (counting a lost one for ever took the worker's credit for the rest of its boot)
        while w.sent_at and w.sent_at[0] < now - self.lease_ttl:
            w.sent_at.pop(0)
        in_flight = max(0, min(w.sent - m.received, len(w.sent_at))) if w.boot == m.boot else 0
        w.boot, w.seq, w.types, w.free, w.seen = m.boot, m.seq, types, max(0, m.free - in_flight), now
        w.ahead = min(w.free, max(0, m.ahead))  # a dispatch in flight took a credit that starts at once
        return self._pump(now)

    def _pump(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        order = list(self.workers)
        if not order:
            return out
        progress = True
        while progress:
            progress = False
            for i in range(len(order)):
                addr = order[(self._turn + i) % len(order)]
                w = self.workers.get(addr)
                if w is None or w.free <= 0:
                    continue
                if w.free <= w.ahead and not self._may_prefetch(w.types, now):
                    continue  # a prefetched task could still wait there when a queued task falls overdue
                q = self._most_urgent(w.types, now)
                if q is None:
                    continue
                self._leases += 1
                t = q.dispatch(addr, f"{self.incarnation}.{self._leases}", now)
                w.free -= 1
                w.ahead = min(w.ahead, w.free)
                w.sent += 1
                w.sent_at.append(now)
                if len(w.sent_at) > 10_000:
                    del w.sent_at[0]
                self._touch(t)
                self.counters["dispatched"] += 1
                out.append(Emit("workload.dispatched", {"task": t.id, "worker": addr, "lease": t.lease_id,
                                                        "attempt": t.attempts, "tenant": t.tenant,
                                                        "type": q.task_type, "priority": t.priority,
                                                        "waited": now - t.enqueued_at, "max_delay": t.max_delay}))
                out.append(Send(addr, Dispatch(t.id, t.lease_id, t.attempts, q.task_type, t.tenant, t.priority,
                                               t.payload, self.lease_ttl)))
                progress = True
            self._turn += 1
        return out

    def run_guard(self, types: tuple) -> float | None:
        """The longest recent run time of these types (None: no result of one of them seen yet)."""
        runs = [self._run_times.get(tt) for tt in types]
        if not runs or any(not r for r in runs):
            return None
        return max(max(r) for r in runs if r)

    def _may_prefetch(self, types: tuple, now: float) -> bool:
        """May a task of these types be sent to wait at a worker behind its running task? Only while no queued
        task of them comes to its deadline before that running task could have ended."""
        guard = self.run_guard(types)
        if guard is None:
            return False
        for tt in types:
            d = self.queues[tt].earliest_deadline()
            if d is not None and d <= now + guard:
                return False
        return True

    def _ran(self, task_type: str, outcome: dict) -> None:
        try:
            metered = float(outcome.get("metered") or 0.0)
        except (TypeError, ValueError):
            return
        runs = self._run_times.setdefault(task_type, [])
        runs.append(max(0.0, metered))
        if len(runs) > 32:
            del runs[0]

    def _most_urgent(self, types: tuple, now: float) -> TaskQueue | None:
        best, key = None, None
        for tt in types:
            q = self.queues[tt]
            t = q.pick(now)
            if t is None:
                continue
            k = (0, t.deadline, 0) if t.deadline <= now else (1, -t.priority, t.enqueued_at)
            if key is None or k < key:
                best, key = q, k
        return best

    def _renew(self, m: Renew, sender: str, now: float) -> list[Effect]:
        q = self._queue_of(m.task_id)
        ok = q is not None and q.renew(m.task_id, m.lease_id, now)
        w = self.workers.get(sender)
        if w is not None:
            w.seen = now
        return [Send(sender, Renewed(m.task_id, m.lease_id, ok))]

    def _result(self, m: Result, sender: str, now: float) -> list[Effect]:
        out = self._answer_result(m, sender, now)
        if isinstance(m.credits, Pull):
            out.extend(self._pull(m.credits, sender, now))  # the worker's Pull as the task ended
        return out

    def _answer_result(self, m: Result, sender: str, now: float) -> list[Effect]:
        q = self._queue_of(m.task_id)
        outcome = dict(m.outcome) if isinstance(m.outcome, dict) else {"ok": False, "error": "malformed outcome"}
        outcome.setdefault("ok", False)
        outcome.update(attempt=m.attempt, lease=m.lease_id, worker=sender)
        if q is None:
            self.counters["unknown"] += 1
            return [Emit("workload.result_discarded", {"task": m.task_id, "why": "unknown", "worker": sender}),
                    Send(sender, ResultAck(m.task_id, m.lease_id, "unknown"))]
        status = q.complete(m.task_id, outcome, now)
        if status != "accepted":
            self.counters["duplicates"] += 1
            return [Emit("workload.result_discarded", {"task": m.task_id, "why": status, "worker": sender,
                                                       "lease": m.lease_id}),
                    Send(sender, ResultAck(m.task_id, m.lease_id, status))]
        t = q.get(m.task_id)
        self._touch(t)
        self._ran(q.task_type, outcome)
        self.counters["accepted"] += 1
        out = self._ended(t, now)
        out.append(Send(sender, ResultAck(m.task_id, m.lease_id, status)))
        out.extend(self._pump(now))
        return out

    def _ended(self, t: Task, now: float) -> list[Effect]:
        o = t.outcome or {}
        out: list[Effect] = [self._done_event(t)]
        notify = t.payload.get("notify") if isinstance(t.payload, dict) else None
        if isinstance(notify, str) and notify:
            out.append(Send(notify, TaskStatus(t.id, DONE, t.attempts, o, t.tenant)))
        out.extend(self._usage(t, now))
        return out

    def _usage(self, t: Task, now: float, send: bool = True) -> list[Effect]:
        """Report the accepted result's attempt to billing (resent until acknowledged; billing dedups)."""
        if not self.billing or t.outcome is None:
            return []
        o = t.outcome
        if o.get("lost"):
            return []  # no attempt produced it: nothing to bill
        size = 0 if o.get("ok") else len(repr(t.payload).encode())
        u = Usage(t.id, t.tenant, float(o.get("metered") or 0.0), str(o.get("resource") or ""), t.priority,
                  t.done_at, bool(o.get("ok")), size, str(o.get("code_owner") or ""), str(o.get("code_price") or "0"),
                  str(o.get("lease") or ""))
        self.outbox[t.id] = (u, now if send else -1e18)
        while len(self.outbox) > 100_000:
            self.outbox.pop(next(iter(self.outbox)))
        return [Send(self.billing, u)] if send else []

    def _status(self, task_id: str) -> TaskStatus:
        q = self._queue_of(task_id)
        t = q.get(task_id) if q is not None else None
        if t is None:
            return TaskStatus(task_id, "unknown")
        return TaskStatus(task_id, t.state, t.attempts, t.outcome, t.tenant)

    def _retry(self, m: Retry, sender: str, now: float) -> list[Effect]:
        q = self._queue_of(m.task_id)
        t = q.get(m.task_id) if q is not None else None
        if t is None or t.tenant != m.tenant:
            return [Send(sender, Retried(m.task_id, False, f"no task {m.task_id!r} of tenant {m.tenant!r}"))]
        if t.state != DONE:
            return [Send(sender, Retried(m.task_id, False, f"task {m.task_id!r} has not ended (it is {t.state})"))]
        try:
            q.requeue_done(m.task_id, now, tenant=m.tenant)
        except QueueFull as e:
            return [Send(sender, Retried(m.task_id, False, str(e)))]
        self._touch(t)
        out: list[Effect] = [self._accepted_event(t, q.task_type, retry=True), Send(sender, Retried(m.task_id, True))]
        out.extend(self._pump(now))
        return out

    def snapshot(self) -> dict:
        return {tt: q.snapshot() for tt, q in self.queues.items()} | {"counters": dict(self.counters)}

