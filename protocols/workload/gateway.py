"""The gateway: validates a tenant's task, gives it an id, acknowledges once the queue holds it durably.

How this works
--------------
Source: ``shared/seeds/003_1de75d49b2f91a9e.txt`` (FIG. 2: the API of the network
interface layer 216 receives the task and stores it in the workload queue 218).

:class:`Submit` carries the tenant id and its token, the task type, the code
(``{"source": ...}`` inline, or ``{"ref": name, "version": n}`` into the code
service; ``version`` 0 or absent = the latest), the data (``{"inline": ...}`` or
``{"ref": sha256}`` into the data service), a priority (or ``None``: the
priority of the tenant's account class), the maximum delay and a notification
address. :meth:`Gateway.validate` checks every field and says, in one
sentence, what is wrong; the answer is :class:`Submitted` with ``ok=False``
and that error. A valid task gets the id ``<type>.<20 hex digits of
sha256(tenant, request_id)>`` - a resend of a submission names the same
task even after the gateway restarted - and is sent to its type's queue as
``Enqueue``; the client hears
``Submitted(ok=True, task_id)`` only when the queue answers ``Enqueued(ok)``
(after its commit). ``Enqueue`` is sent again every ``resend`` seconds until
answered; a client's resend of the same ``(tenant, request_id)`` gets the same
task id, never a second task.

``Status`` and ``Retry`` of a tenant's task go through the gateway too
(:class:`TaskQuery`, authenticated like a submission): it forwards them to the
task's queue (the type is the id's first part) and relays the answer.

Bounds: at most ``max_pending`` submissions waiting for their queue (then
``ok=False``, "busy"), ``max_requests`` remembered request ids, inline code of
at most ``max_inline`` bytes.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections import OrderedDict
from typing import Any

from protocols.core import Effect, Emit, Send
from protocols.workload.messages import Enqueue, Enqueued, Retried, Retry, Status, TaskStatus
from transport.codec import message

__all__ = ["Gateway", "Submit", "Submitted", "TaskQuery"]

CODE_TYPES = ("python", "shell")  # the warm environments a worker keeps

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@message("workload.Submit")
class Submit:
    request_id: str
    tenant: str
    token: str
    task_type: str
    code: dict
    data: dict
    max_delay: float
    priority: int | None = None
    notify: str = ""


@message("workload.Submitted")
class Submitted:
    request_id: str
    ok: bool
    task_id: str = ""
    error: str = ""


@message("workload.TaskQuery")
class TaskQuery:
    tenant: str
    token: str
    task_id: str
    op: str = "status"  # status | retry


class Gateway:
    def __init__(self, queues: dict[str, str], tenants: dict[str, dict], classes: dict[str, int] | None = None,
                 max_delay_limit: float = 86_400.0, priorities: list[int] | None = None, max_inline: int = 64 * 1024,
                 resend: float = 1.0, max_pending: int = 10_000, max_requests: int = 100_000,
                 rng: random.Random | None = None) -> None:
        self.queues = dict(queues)
        self.tenants = {t: dict(v) for t, v in tenants.items()}
        self.classes = dict(classes or {"standard": 0})
        self.max_delay_limit = max_delay_limit
        lo, hi = (priorities or [0, 9])[:2]
        self.prio_lo, self.prio_hi = int(lo), int(hi)
        self.max_inline = max_inline
        self.resend = resend
        self.tick_interval = resend / 2
        self.max_pending = max_pending
        self.max_requests = max_requests
        self.rng = rng or random.Random(0)
        self.incarnation = f"{self.rng.getrandbits(32):08x}"
        self._n = 0
        self.pending: dict[str, tuple[str, str, Enqueue, float]] = {}  # task id -> (client, request, msg, sent)
        self.requests: OrderedDict[tuple[str, str], str] = OrderedDict()  # (tenant, request) -> task id
        self.queries: dict[tuple[str, str], list[tuple[str, str]]] = {}  # (task id, op) -> (client, tenant)s
        self.counters = {"submitted": 0, "refused": 0, "acknowledged": 0, "resent": 0, "queue_refused": 0}

    # ---------------------------------------------------------------- validation

    def _auth(self, tenant: Any, token: Any) -> str | None:
        t = self.tenants.get(tenant) if isinstance(tenant, str) else None
        if t is None or not isinstance(token, str) or t.get("token") != token:
            return f"tenant {tenant!r} is unknown or its token is wrong"
        return None

    def validate(self, m: Submit) -> tuple[str | None, int]:
        """(error or None, the priority to use)."""
        err = self._auth(m.tenant, m.token)
        if err:
            return err, 0
        if not isinstance(m.request_id, str) or not 0 < len(m.request_id) <= 128:
            return "request_id must be a string of 1 to 128 characters", 0
        if m.task_type not in self.queues:
            return f"unknown task type {m.task_type!r}; this gateway takes {sorted(self.queues)}", 0
        code = m.code
        if "source" in code:
            if not isinstance(code["source"], str) or not code["source"].strip():
                return "code.source must be a non-empty string", 0
            if len(code["source"].encode()) > self.max_inline:
                return f"inline code is {len(code['source'].encode())} bytes; the limit is {self.max_inline} " \
                       f"(publish it to the code service and send a pointer)", 0
        elif "ref" in code:
            if not isinstance(code["ref"], str) or not code["ref"]:
                return "code.ref must name code in the code service", 0
            v = code.get("version", 0)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                return f"code.version must be an integer >= 0 (0: the latest), got {v!r}", 0
        else:
            return "code must be {'source': ...} (inline) or {'ref': name, 'version': n} (code service)", 0
        if code.get("type", "python") not in CODE_TYPES:
            return f"code.type must be one of {list(CODE_TYPES)} (default python), got {code.get('type')!r}", 0
        data = m.data
        if "ref" in data:
            if not isinstance(data["ref"], str) or not re.fullmatch(r"[0-9a-f]{64}", data["ref"]):
                return "data.ref must be the SHA-256 (64 hex digits) of a blob in the data service", 0
        elif "inline" not in data:
            return "data must be {'inline': value} or {'ref': sha256}", 0
        if not isinstance(m.max_delay, (int, float)) or isinstance(m.max_delay, bool) or \
                not math.isfinite(m.max_delay) or not 0 < m.max_delay <= self.max_delay_limit:
            return f"max_delay must be a number of seconds in (0, {self.max_delay_limit}], got {m.max_delay!r}", 0
        if m.priority is None:
            cls = self.tenants[m.tenant].get("class", "standard")
            prio = self.classes.get(cls)
            if prio is None:
                return f"tenant {m.tenant!r} has account class {cls!r}, which has no priority; give one", 0
        else:
            prio = m.priority
            if isinstance(prio, bool) or not self.prio_lo <= prio <= self.prio_hi:
                return f"priority must be an integer in [{self.prio_lo}, {self.prio_hi}], got {prio!r}", 0
        if m.notify and (not isinstance(m.notify, str) or "/" not in m.notify):
            return f"notify must be an actor address 'node/actor', got {m.notify!r}", 0
        return None, int(prio)

    # ---------------------------------------------------------------- entry points

    def tick(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        for tid, (client, req, enq, sent) in list(self.pending.items()):
            if now - sent >= self.resend:
                self.pending[tid] = (client, req, enq, now)
                self.counters["resent"] += 1
                out.append(Send(self.queues[enq.task_type], enq))
        return out

    def handle(self, msg: Any, sender: str, now: float) -> list[Effect]:
        if isinstance(msg, Submit):
            return self._submit(msg, sender, now)
        if isinstance(msg, Enqueued):
            return self._enqueued(msg, now)
        if isinstance(msg, TaskQuery):
            return self._query(msg, sender)
        if isinstance(msg, (TaskStatus, Retried)):
            op = "status" if isinstance(msg, TaskStatus) else "retry"
            out: list[Effect] = []
            for client, tenant in self.queries.pop((msg.task_id, op), []):
                if isinstance(msg, TaskStatus) and msg.tenant != tenant:
                    out.append(Send(client, TaskStatus(msg.task_id, "unknown")))  # another tenant's task
                else:
                    out.append(Send(client, msg))
            return out
        return []

    def _submit(self, m: Submit, sender: str, now: float) -> list[Effect]:
        known = self.requests.get((m.tenant, m.request_id)) if isinstance(m.tenant, str) else None
        if known is not None and self._auth(m.tenant, m.token) is None:
            if known in self.pending:  # still waiting for the queue: the answer comes then
                client, req, enq, sent = self.pending[known]
                self.pending[known] = (sender, req, enq, sent)
                return []
            return [Send(sender, Submitted(m.request_id, True, known))]
        err, prio = self.validate(m)
        if err is None and len(self.pending) >= self.max_pending:
            err = f"busy: {self.max_pending} submissions wait for their queue; try again shortly"
        if err is not None:
            self.counters["refused"] += 1
            return [Emit("workload.refused", {"tenant": str(m.tenant)[:64], "error": err}),
                    Send(sender, Submitted(m.request_id, False, "", err))]
        self._n += 1
        # the id is a function of (tenant, request id): a resend after this gateway restarted (its tables
        # lost) names the same task, which the queue already holds, never a second one
        digest = hashlib.sha256(f"{m.tenant}\0{m.request_id}".encode()).hexdigest()[:20]
        tid = f"{m.task_type}.{digest}"
        payload = {"code": dict(m.code), "data": dict(m.data), "notify": m.notify}
        enq = Enqueue(tid, m.tenant, m.task_type, prio, float(m.max_delay), payload)
        self.pending[tid] = (sender, m.request_id, enq, now)
        self.requests[(m.tenant, m.request_id)] = tid
        while len(self.requests) > self.max_requests:
            self.requests.popitem(last=False)
        self.counters["submitted"] += 1
        return [Emit("workload.submitted", {"task": tid, "tenant": m.tenant, "type": m.task_type, "priority": prio}),
                Send(self.queues[m.task_type], enq)]

    def _enqueued(self, m: Enqueued, now: float) -> list[Effect]:
        p = self.pending.pop(m.task_id, None)
        if p is None:
            return []  # a duplicate answer
        client, req, enq, _ = p
        if not m.ok:
            self.counters["queue_refused"] += 1
            self.requests.pop((enq.tenant, req), None)
            return [Send(client, Submitted(req, False, "", f"the queue refused the task: {m.error}"))]
        self.counters["acknowledged"] += 1
        return [Emit("workload.acknowledged", {"task": m.task_id, "tenant": enq.tenant, "request": req}),
                Send(client, Submitted(req, True, m.task_id))]

    def _query(self, m: TaskQuery, sender: str) -> list[Effect]:
        err = self._auth(m.tenant, m.token)
        tt = m.task_id.split(".", 1)[0]
        if err is None and tt not in self.queues:
            err = f"no task {m.task_id!r}"
        if err is None and m.op not in ("status", "retry"):
            err = f"unknown query {m.op!r} (status or retry)"
        if err is not None:
            return [Send(sender, TaskStatus(m.task_id, "unknown") if m.op != "retry" else
                         Retried(m.task_id, False, err))]
        waiting = self.queries.setdefault((m.task_id, m.op), [])
        if len(waiting) < 16 and (sender, m.tenant) not in waiting:
            waiting.append((sender, m.tenant))
        if len(self.queries) > self.max_pending:  # forget the oldest unanswered queries
            self.queries.pop(next(iter(self.queries)))
        msg = Status(m.task_id) if m.op == "status" else Retry(m.task_id, m.tenant)
        return [Send(self.queues[tt], msg)]
