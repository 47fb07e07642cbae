"""A workload worker: pulls tasks of its types, fetches their code and data, runs them, reports once.

How this works
--------------
Source: ``shared/seeds/003_1de75d49b2f91a9e.txt`` (FIG. 3: a workload server with
the environment pre-loaded pulls the task at the top of the queue, runs it, returns
the result; "the user can have exclusive access ... during the task").

* **Warm environments.** On start the worker returns :class:`Prepare`: its
  host readies the environment (for Python, a zygote with the modules
  imported) before the first task, not at it.
* **Credits.** On start (a new ``boot``, from the injected rng) and every
  ``heartbeat`` the worker sends ``Pull(boot, seq, types, free)`` to its queue:
  how many more tasks it can take (``slots`` plus ``prefetch`` minus what it
  holds), ``ahead`` of them prefetch credits. With ``prefetch`` > 0 a task
  dispatched while every slot runs *waits* here (its lease renewed, its code
  and data fetched) and starts the moment a slot frees, in the order the queue
  sent them: the worker does not wait for the queue's round trip and commit
  between two tasks. (The queue sends a task on a prefetch credit only while
  no queued task could come to its maximum delay before it starts; see
  :mod:`protocols.workload.queue_service`.) After a change of its credits it
  pulls at once; an unchanged ``Pull`` waits for the heartbeat.
* **A task.** A ``Dispatch`` takes a slot. Code is inline (``{"source": ...}``) or a
  pointer into the code service (``{"ref": name, "version": n}``; the latest when
  no version is pinned); data is inline (``{"inline": ...}``) or a pointer into the
  data service (``{"ref": sha256}``), checked against its checksum - a corrupt
  copy is fetched again (``max_fetches`` times, then the task fails). The worker
  then returns :class:`RunTask` for its host (the warm environment), which
  later delivers :class:`TaskFinished` with the outcome and the metered
  dedicated time.
* **Leases.** Every ``lease_ttl / 3`` it sends ``Renew``; ``Renewed(ok=False)``,
  or no renewal confirmed for a whole ``lease_ttl`` (cut off from the queue),
  makes it stop the task (:class:`StopTask`): self-fencing, so a task whose
  lease may have passed to another worker does not keep running here.
* **Results.** ``Result`` goes to the queue, carrying the worker's ``Pull`` of
  that moment (the slot the task frees is offered in the same message), and is
  sent again (without it) every heartbeat until ``ResultAck``; a fenced task's
  result is not sent.
* **Exclusive access.** When a task starts, the worker makes a credential (a
  random token) and sends it as :class:`Credential` to the task's ``notify``
  address. :class:`Access` with that token is granted only while that task
  runs here; the credential is revoked when the task ends, is stopped, or the
  tenant sends :class:`ReleaseAccess`. Every grant, refusal, issue and
  revocation is an event (``workload.access``, ``workload.credential_*``).

Duplicated messages are harmless: a ``Dispatch`` of a task already held is
ignored, answers are matched by task and lease id, a ``TaskFinished`` of a run
no longer current is dropped. A ``Dispatch`` beyond the free slots is
refused (counted; its lease lapses and the queue gives it to someone else).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import attrs

from protocols.core import Effect, Emit, Send
from protocols.workload.messages import Dispatch, Pull, Renew, Renewed, Result, ResultAck
from protocols.workload.services import Blob, BlobMissing, Code, CodeMissing, FetchBlob, FetchCode
from transport.codec import message

__all__ = ["Access", "AccessAnswer", "Credential", "Prepare", "ReleaseAccess", "RunTask", "StopTask",
           "TaskFinished", "Worker"]


@attrs.frozen(slots=True)
class RunTask(Effect):
    """Host: run ``source`` (of ``code_type``) on ``data`` under ``limits``; answer with ``TaskFinished(run)``."""

    run: str
    task_id: str
    code_type: str
    source: str
    data: Any
    limits: dict


@attrs.frozen(slots=True)
class Prepare(Effect):
    """Host: make the warm environments of these code types ready now (at the worker's start), not at the
    first task."""

    types: tuple = ()


@attrs.frozen(slots=True)
class StopTask(Effect):
    """Host: kill run ``run`` (its TaskFinished, if any, is ignored)."""

    run: str


@message("workload.TaskFinished")
class TaskFinished:
    run: str
    outcome: dict  # {"ok", "value" | "error", "metered", "cpu"}


@message("workload.Credential")
class Credential:
    task_id: str
    worker: str
    token: str


@message("workload.Access")
class Access:
    token: str
    what: str = "status"


@message("workload.AccessAnswer")
class AccessAnswer:
    ok: bool
    task_id: str = ""
    detail: dict = attrs.field(factory=dict)


@message("workload.ReleaseAccess")
class ReleaseAccess:
    token: str


@attrs.define
class _Run:
    d: Dispatch
    run: str
    started: float = 0.0
    code: Code | None = None
    data: Any = None
    data_ok: bool = False
    fetches: int = 0
    running: bool = False
    waiting: bool = False  # dispatched on a prefetch credit: starts when a slot frees
    renewed: float = 0.0
    renew_sent: float = 0.0
    token: str = ""
    outcome: dict | None = None
    result_sent: float = -1.0


class Worker:
    def __init__(self, queue: str, types: list[str], slots: int = 1, resource: str = "",
                 code_service: str = "", data_service: str = "", heartbeat: float = 1.0, max_fetches: int = 3,
                 limits: dict | None = None, address: str = "", prefetch: int = 0,
                 rng: random.Random | None = None) -> None:
        if slots < 1 or not types or prefetch < 0:
            raise ValueError("Worker: needs slots >= 1, at least one task type and prefetch >= 0")
        self.queue, self.types, self.slots, self.prefetch = queue, list(types), slots, prefetch
        self.resource = resource  # the resource type billed ("": the task's type)
        self.code_service, self.data_service = code_service, data_service
        self.heartbeat = heartbeat
        self.tick_interval = heartbeat / 2
        self.max_fetches = max_fetches
        self.limits = dict(limits or {})
        self.address = address
        self.rng = rng or random.Random(0)
        self.boot = f"{self.rng.getrandbits(48):012x}"
        self.seq = 0
        self.runs: dict[str, _Run] = {}  # task id -> its run here (running, or finished and unacknowledged)
        self._runs_by_id: dict[str, str] = {}
        self._n = 0
        self._last_pull = -1e9
        self._last_credits: tuple[int, int] | None = None  # (free, ahead) of the last Pull
        self.received = 0  # distinct Dispatches received this boot (Pull.received)
        self._leases_seen: dict[str, None] = {}
        self.counters = {"dispatches": 0, "duplicate_dispatches": 0, "refused_dispatches": 0, "fenced": 0,
                         "corrupt_data": 0, "access_granted": 0, "access_refused": 0, "bad_messages": 0}

    # ---------------------------------------------------------------- helpers

    def _busy(self) -> int:
        """Runs held here (running, being fetched or waiting for a slot)."""
        return sum(1 for r in self.runs.values() if r.outcome is None)

    def _credits(self) -> tuple[int, int]:
        """(free, ahead): how many more tasks this worker takes, and how many of those would wait for a slot."""
        held = self._busy()
        waiting = sum(1 for r in self.runs.values() if r.outcome is None and r.waiting)
        free = max(0, self.slots + self.prefetch - held)
        return free, min(free, max(0, self.prefetch - waiting))

    def _pull(self, now: float) -> list[Effect]:
        self.seq += 1
        self._last_pull = now
        free, ahead = self._last_credits = self._credits()
        return [Send(self.queue, Pull(self.boot, self.seq, self.types, free, self.received, ahead))]

    def _pull_if_changed(self, now: float) -> list[Effect]:
        return self._pull(now) if self._credits() != self._last_credits else []

    def _promote(self, now: float) -> list[Effect]:
        """Start waiting runs, oldest first, while a slot is free."""
        out: list[Effect] = []
        active = sum(1 for r in self.runs.values() if r.outcome is None and not r.waiting)
        for r in list(self.runs.values()):
            if active >= self.slots:
                break
            if r.outcome is None and r.waiting:
                r.waiting = False
                r.started = now
                active += 1
                out.extend(self._maybe_start(r, now))
        return out

    def _token(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    # ---------------------------------------------------------------- entry points

    def tick(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        if self.seq == 0:
            out.append(Emit("workload.worker_started", {"boot": self.boot, "types": self.types, "slots": self.slots,
                                                        "prefetch": self.prefetch, "heartbeat": self.heartbeat}))
            out.append(Prepare(tuple(self.types)))
        for r in list(self.runs.values()):
            ttl = r.d.lease_ttl
            if r.outcome is None:
                if now - r.renewed > ttl:  # no renewal confirmed for a whole lease: another may hold it now
                    out.extend(self._fence(r, now, "lease not renewed (cut off from the queue?)"))
                    continue
                if now - r.renew_sent >= ttl / 3:
                    r.renew_sent = now
                    out.append(Send(self.queue, Renew(r.d.task_id, r.d.lease_id)))
                if not r.running and (r.code is None or not r.data_ok) and r.fetches and now - r.started > ttl / 2:
                    out.extend(self._fetch(r, now))  # a fetch answer went missing: ask again
            elif now - r.result_sent >= self.heartbeat:
                r.result_sent = now
                out.append(Send(self.queue, Result(r.d.task_id, r.d.lease_id, r.d.attempt, r.outcome)))
        if now - self._last_pull >= self.heartbeat:
            out.extend(self._pull(now))
        return out

    def handle(self, msg: Any, sender: str, now: float) -> list[Effect]:
        if isinstance(msg, Dispatch):
            return self._dispatch(msg, now)
        if isinstance(msg, (Code, CodeMissing)):
            return self._code(msg, now)
        if isinstance(msg, (Blob, BlobMissing)):
            return self._blob(msg, now)
        if isinstance(msg, TaskFinished):
            return self._finished(msg, now)
        if isinstance(msg, Renewed):
            r = self.runs.get(msg.task_id)
            if r is None or r.d.lease_id != msg.lease_id or r.outcome is not None:
                return []
            if msg.ok:
                r.renewed = now
                return []
            return self._fence(r, now, "the queue says the lease is gone")
        if isinstance(msg, ResultAck):
            r = self.runs.get(msg.task_id)
            if r is not None and r.d.lease_id == msg.lease_id and r.outcome is not None:
                del self.runs[msg.task_id]
                self._runs_by_id.pop(r.run, None)
                return [Emit("workload.result_acked", {"task": msg.task_id, "status": msg.status}),
                        *self._pull_if_changed(now)]  # its slot was offered when the task ended
            return []
        if isinstance(msg, Access):
            return self._access(msg, sender, now)
        if isinstance(msg, ReleaseAccess):
            for r in self.runs.values():
                if r.token and r.token == msg.token:
                    return self._revoke(r, "released by the tenant")
            return []
        if msg.__class__.__name__ == "TimerFired":
            return []
        self.counters["bad_messages"] += 1
        return [Emit("workload.bad_message", {"from": sender, "type": type(msg).__name__})]

    # ---------------------------------------------------------------- a task's life

    def _dispatch(self, d: Dispatch, now: float) -> list[Effect]:
        held = self.runs.get(d.task_id)
        if d.lease_id not in self._leases_seen:
            self._leases_seen[d.lease_id] = None
            self.received += 1
            while len(self._leases_seen) > 4 * self.slots + 64:
                self._leases_seen.pop(next(iter(self._leases_seen)))
        if held is not None:
            if held.d.lease_id == d.lease_id:
                self.counters["duplicate_dispatches"] += 1
                return []
            if held.outcome is None:  # a newer lease of a task we still run: the old run must stop
                out = self._fence(held, now, "a newer lease arrived")
                self.runs.pop(d.task_id, None)
            else:
                out = []
                self.runs.pop(d.task_id, None)
        else:
            out = []
        if self._busy() >= self.slots + self.prefetch:
            self.counters["refused_dispatches"] += 1
            return out + [Emit("workload.dispatch_refused", {"task": d.task_id, "why": "no free slot"})]
        self._n += 1
        active = sum(1 for r in self.runs.values() if r.outcome is None and not r.waiting)
        r = _Run(d, f"{self.boot}.{self._n}", started=now, renewed=now, renew_sent=now, waiting=active >= self.slots)
        self.runs[d.task_id] = r
        self._runs_by_id[r.run] = d.task_id
        self.counters["dispatches"] += 1
        return out + self._fetch(r, now)

    def _fetch(self, r: _Run, now: float) -> list[Effect]:
        p = r.d.payload if isinstance(r.d.payload, dict) else {}
        code, data = p.get("code"), p.get("data", {"inline": None})
        out: list[Effect] = []
        r.fetches += 1
        if r.fetches > self.max_fetches + 1:
            return self._end(r, {"ok": False, "error": f"could not fetch the task's code and data after "
                                                       f"{self.max_fetches} tries", "metered": 0.0}, now)
        if r.code is None:
            if isinstance(code, dict) and isinstance(code.get("source"), str):
                r.code = Code(code.get("name", ""), 0, code["source"], r.d.tenant, "0", code.get("type", "python"))
            elif isinstance(code, dict) and isinstance(code.get("ref"), str) and self.code_service:
                out.append(Send(self.code_service, FetchCode(code["ref"], int(code.get("version") or 0),
                                                             r.d.tenant, r.d.task_id)))
            else:
                return self._end(r, {"ok": False, "error": "the task names no code this worker can fetch",
                                     "metered": 0.0}, now)
        if not r.data_ok:
            if isinstance(data, dict) and "ref" in data and self.data_service:
                out.append(Send(self.data_service, FetchBlob(str(data["ref"]), r.d.task_id)))
            elif isinstance(data, dict) and "inline" in data:
                r.data, r.data_ok = data["inline"], True
            else:
                return self._end(r, {"ok": False, "error": "the task's data is neither inline nor a pointer",
                                     "metered": 0.0}, now)
        return out + self._maybe_start(r, now)

    def _code(self, m: Code | CodeMissing, now: float) -> list[Effect]:
        r = self.runs.get(m.task_id)
        if r is None or r.outcome is not None or r.running or r.code is not None:
            return []
        if isinstance(m, CodeMissing):
            return self._end(r, {"ok": False, "error": m.error, "metered": 0.0}, now)
        r.code = m
        return self._maybe_start(r, now)

    def _blob(self, m: Blob | BlobMissing, now: float) -> list[Effect]:
        r = self.runs.get(m.task_id)
        if r is None or r.outcome is not None or r.running or r.data_ok:
            return []
        if isinstance(m, BlobMissing):
            return self._end(r, {"ok": False, "error": m.error, "metered": 0.0}, now)
        if hashlib.sha256(m.data).hexdigest() != m.sha256 or m.sha256 != str(r.d.payload["data"]["ref"]):
            self.counters["corrupt_data"] += 1
            return [Emit("workload.corrupt_data", {"task": r.d.task_id, "ref": m.sha256}), *self._fetch(r, now)]
        r.data, r.data_ok = m.data, True
        return self._maybe_start(r, now)

    def _maybe_start(self, r: _Run, now: float) -> list[Effect]:
        if r.running or r.waiting or r.code is None or not r.data_ok or r.outcome is not None:
            return []
        r.running = True
        r.token = self._token()
        notify = r.d.payload.get("notify") if isinstance(r.d.payload, dict) else None
        out: list[Effect] = [
            Emit("workload.task_started", {"task": r.d.task_id, "worker": self.address, "lease": r.d.lease_id,
                                           "attempt": r.d.attempt, "run": r.run, "code_version": r.code.version}),
            Emit("workload.credential_issued", {"task": r.d.task_id, "worker": self.address,
                                                "credential": r.token[:12]}),
            RunTask(r.run, r.d.task_id, r.code.code_type, r.code.source, r.data, dict(self.limits))]
        if isinstance(notify, str) and notify:
            out.append(Send(notify, Credential(r.d.task_id, self.address, r.token)))
        return out

    def _revoke(self, r: _Run, why: str) -> list[Effect]:
        if not r.token:
            return []
        tok, r.token = r.token, ""
        return [Emit("workload.credential_revoked", {"task": r.d.task_id, "worker": self.address,
                                                     "credential": tok[:12], "why": why})]

    def _fence(self, r: _Run, now: float, why: str) -> list[Effect]:
        self.counters["fenced"] += 1
        out = self._revoke(r, "task stopped")
        if r.running:
            out.append(StopTask(r.run))
        self.runs.pop(r.d.task_id, None)
        self._runs_by_id.pop(r.run, None)
        return [*out, Emit("workload.fenced", {"task": r.d.task_id, "worker": self.address, "lease": r.d.lease_id,
                                               "why": why}), *self._promote(now), *self._pull(now)]

    def _finished(self, m: TaskFinished, now: float) -> list[Effect]:
        tid = self._runs_by_id.get(m.run)
        r = self.runs.get(tid) if tid is not None else None
        if r is None or r.run != m.run or r.outcome is not None:
            return []  # a stopped run's late report
        o = dict(m.outcome) if isinstance(m.outcome, dict) else {"ok": False, "error": "malformed report"}
        return self._end(r, o, now)

    def _end(self, r: _Run, outcome: dict, now: float) -> list[Effect]:
        o = {"ok": bool(outcome.get("ok")), "metered": float(outcome.get("metered") or 0.0),
             "resource": self.resource or r.d.task_type}
        if o["ok"]:
            o["value"] = outcome.get("value")
        else:
            o["error"] = str(outcome.get("error", "failed"))[:2000]
            if outcome.get("trace"):
                o["trace"] = str(outcome["trace"])[:4000]
        if r.code is not None and r.code.owner and r.code.owner != r.d.tenant:
            o["code_owner"], o["code_price"] = r.code.owner, r.code.price
        was_running = r.running
        r.running = False
        r.outcome = o
        r.result_sent = now
        out = self._revoke(r, "task ended")
        out.append(Emit("workload.task_finished", {"task": r.d.task_id, "worker": self.address, "run": r.run,
                                                   "ok": o["ok"], "metered": o["metered"], "ran": was_running,
                                                   "attempt": r.d.attempt}))
        out.extend(self._promote(now))
        (pull,) = [e.msg for e in self._pull(now)]  # the slot it frees is offered with the result
        out.append(Send(self.queue, Result(r.d.task_id, r.d.lease_id, r.d.attempt, o, pull)))
        return out

    def _access(self, m: Access, sender: str, now: float) -> list[Effect]:
        for r in self.runs.values():
            if r.token and r.token == m.token and r.running:
                self.counters["access_granted"] += 1
                return [Emit("workload.access", {"task": r.d.task_id, "worker": self.address, "granted": True,
                                                 "credential": m.token[:12], "from": sender}),
                        Send(sender, AccessAnswer(True, r.d.task_id, {"running_for": now - r.started,
                                                                      "what": m.what}))]
        self.counters["access_refused"] += 1
        return [Emit("workload.access", {"task": "", "worker": self.address, "granted": False,
                                         "credential": str(m.token)[:12], "from": sender}),
                Send(sender, AccessAnswer(False))]
