"""Simulated tenants: bursty arrivals, mixed priorities, some failures, credentials used.

How this works
--------------
:class:`Tenants` plays several tenants against a gateway. Bursts arrive as a
Poisson process (``rate`` bursts a second, from the injected rng); each burst
is one tenant's ``burst`` tasks at once, with a priority drawn from
``priorities`` and a maximum delay from ``max_delays``. A task sleeps for a
time drawn from ``seconds`` and raises with probability ``fail`` - the same
Python source runs in a real worker and, interpreted by the simulated host, in
the simulator. A share ``shared`` of the tasks runs code the first tenant
published to the code service (public, at ``price`` a use) by pointer.

Each submission is sent again every ``resend`` seconds with the same
``request_id`` until the gateway answers (``workload.client_acked`` /
``workload.client_refused``). A tenant that receives a task's credential uses
it once at once (``Access``: granted while the task runs). After ``total``
tasks it stops submitting. A task is known to have ended when its
notification comes (``workload.client_notified``) or, for one whose
notification never came (lost with a killed queue process), when the
gateway's status says so: a task acknowledged ``resend`` seconds ago and not
yet known to have ended is asked about every ``resend`` seconds. Once every
submission was answered and every acknowledged task has ended, it says
``workload.tenants_done`` (once): the end of a run.
"""

from __future__ import annotations

import random
from typing import Any

from protocols.core import Effect, Emit, Send
from protocols.workload.gateway import Submit, Submitted, TaskQuery
from protocols.workload.messages import TaskStatus
from protocols.workload.services import PublishCode, Published
from protocols.workload.worker import Access, AccessAnswer, Credential

__all__ = ["SLEEP_TASK", "Tenants"]

SLEEP_TASK = ("import time\n"
              "def main(d):\n"
              "    time.sleep(d['seconds'])\n"
              "    if d.get('fail'):\n"
              "        raise RuntimeError('the task was asked to fail')\n"
              "    return {'slept': d['seconds']}\n")


class Tenants:
    def __init__(self, gateway: str, tenants: dict[str, str], types: list[str], total: int = 100,
                 rate: float = 1.0, burst: list[int] | None = None, seconds: list[float] | None = None,
                 fail: float = 0.05, priorities: list[int] | None = None, max_delays: list[float] | None = None,
                 code_service: str = "", shared: float = 0.2, price: str = "0.01", start: float = 0.5,
                 resend: float = 2.0, address: str = "", rng: random.Random | None = None) -> None:
        self.gateway, self.tenants, self.types = gateway, dict(tenants), list(types)
        self.total, self.rate = total, rate
        self.burst = list(burst or [1, 6])
        self.seconds = list(seconds or [0.05, 0.4])
        self.fail, self.shared, self.price = fail, shared, price
        self.priorities = list(priorities or [0, 5, 9])
        self.max_delays = list(max_delays or [3.0, 20.0])
        self.code_service = code_service
        self.resend, self.address = resend, address
        self.rng = rng or random.Random(0)
        self.boot = f"{self.rng.getrandbits(32):08x}"  # this incarnation: a restarted driver's requests are new
        self.tick_interval = 0.1
        self.next_burst = start
        self.sent = 0
        self.pending: dict[str, tuple[Submit, float]] = {}
        self.acked: dict[str, str] = {}  # request id -> task id
        self.waiting: dict[str, tuple[str, float]] = {}  # task id -> (tenant, when last heard of or asked)
        self.finished = False
        self.published = not code_service
        self.publish_sent = -1e18
        self.publisher = sorted(self.tenants)[0]
        self.counters = {"submitted": 0, "acked": 0, "refused": 0, "notified": 0, "access_granted": 0,
                         "access_refused": 0}

    def tick(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        if not self.published and now - self.publish_sent >= self.resend:
            self.publish_sent = now
            out.append(Send(self.code_service, PublishCode(self.publisher, "shared-sleep", SLEEP_TASK, "python", True,
                                                           self.price)))
        while self.sent < self.total and now >= self.next_burst:
            tenant = self.rng.choice(sorted(self.tenants))
            n = min(self.total - self.sent, self.rng.randint(self.burst[0], self.burst[-1]))
            prio = self.rng.choice(self.priorities)
            tt = self.rng.choice(self.types)
            for _ in range(n):
                self.sent += 1
                rid = f"{self.address or 'tenants'}#{self.boot}#{self.sent}"
                secs = round(self.rng.uniform(self.seconds[0], self.seconds[-1]), 3)
                code = {"ref": "shared-sleep"} if self.published and self.code_service and \
                    self.rng.random() < self.shared else {"source": SLEEP_TASK}
                m = Submit(rid, tenant, self.tenants[tenant], tt, code,
                           {"inline": {"seconds": secs, "fail": self.rng.random() < self.fail}},
                           float(self.rng.choice(self.max_delays)), prio, self.address)
                self.pending[rid] = (m, now)
                self.counters["submitted"] += 1
                out.append(Send(self.gateway, m))
            self.next_burst = now + self.rng.expovariate(self.rate)
        for rid, (m, sent) in list(self.pending.items()):
            if now - sent >= self.resend:
                self.pending[rid] = (m, now)
                out.append(Send(self.gateway, m))
        for tid, (tenant, heard) in list(self.waiting.items()):
            if now - heard >= self.resend:  # no notification yet: ask
                self.waiting[tid] = (tenant, now)
                out.append(Send(self.gateway, TaskQuery(tenant, self.tenants[tenant], tid, "status")))
        if not self.finished and self.sent >= self.total and not self.pending and not self.waiting:
            self.finished = True
            out.append(Emit("workload.tenants_done", {"submitted": self.sent, "acked": len(self.acked)}))
        return out

    def handle(self, msg: Any, sender: str, now: float) -> list[Effect]:
        if isinstance(msg, Submitted):
            p = self.pending.pop(msg.request_id, None)
            if p is None:
                return []
            if msg.ok:
                self.acked[msg.request_id] = msg.task_id
                self.waiting.setdefault(msg.task_id, (p[0].tenant, now))
                self.counters["acked"] += 1
                return [Emit("workload.client_acked", {"task": msg.task_id, "request": msg.request_id,
                                                       "tenant": p[0].tenant})]
            self.counters["refused"] += 1
            return [Emit("workload.client_refused", {"request": msg.request_id, "error": msg.error})]
        if isinstance(msg, Published):
            self.published = True
            return []
        if isinstance(msg, Credential):
            return [Send(msg.worker, Access(msg.token, "status"))]
        if isinstance(msg, AccessAnswer):
            self.counters["access_granted" if msg.ok else "access_refused"] += 1
            return []
        if isinstance(msg, TaskStatus):
            if msg.state != "done" or msg.task_id not in self.waiting:
                return []  # still running, or known already
            del self.waiting[msg.task_id]
            self.counters["notified"] += 1
            return [Emit("workload.client_notified", {"task": msg.task_id, "ok": bool((msg.outcome or {}).get("ok"))})]
        return []
