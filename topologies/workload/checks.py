"""Invariant checkers of the queued workload service (the ``workload`` plug-in).

How this works
--------------
Each checker judges a run from its event log alone (DESIGN.md, "Invariants";
the events are those of ``protocols/workload``):

* ``tasks-end-once`` - a task ends (``workload.task_done``: a kept result, a
  retained failure, or lost after its attempts) at most once per acceptance
  (``workload.accepted``; a ``retry`` accepts it again). An acknowledgement
  (``workload.acknowledged`` by the gateway, ``workload.client_acked`` by a
  client) proves the first acceptance too: the queue commits before it
  answers, and a SIGKILLed queue process loses the unflushed tail of its own
  event log; for the same reason a restarted queue re-states every end its
  database holds (``workload.done_restated``), which counts as that end when
  the original event is missing and as nothing when it is there. Evidence:
  the first end and the extra one (``first``, ``second``), or an end of a
  task never accepted (``event``).
* ``no-task-lost`` (liveness) - every task whose submission was acknowledged
  has ended after its last acceptance by the end of the run. Evidence: the
  acknowledgement of each task that did not (``event``).
* ``max-delay-held`` - no task waits past its maximum delay while a worker of
  its type is free. Two ways to break it: (1) a ``workload.dispatched`` of a
  task while a queued task of the same type is overdue by more than ``slack``
  seconds and has the earlier deadline (``deadline = accepted time +
  max_delay``; a task given back by a lapsed lease keeps its deadline): the
  worker took another task; (2) a queued task overdue by more than ``slack``
  while a worker of its type is *free* - started (``workload.worker_started``:
  types, slots, heartbeat) and not crashed or killed since, reachable from the
  task's queue both ways (``net.*`` and ``nemesis`` grudge/pause events), the
  queue up (not killed or crashed since its ``workload.queue_started``), and
  fewer tasks held than slots (a task is held from its dispatch to that worker
  or its start there until it finishes or is fenced there, its dispatch is
  refused, its lease lapses or it ends) - for longer than ``2 * heartbeat +
  slack`` (the worker's ``Pull`` is resent every heartbeat): nothing was
  dispatched to a free worker at all, which (1) cannot see (a worker whose
  credit never reached the queue, or whose credit the queue lost count of).
  So a task may wait past its maximum delay only while every worker of its
  type is busy (at most one task's run time), dead, or cut off. Evidence:
  the waiting task's ``workload.accepted`` (``waiting``) and the dispatch
  that passed it over (``dispatched``), or the event since which the worker
  was free (``free``). A restarted queue re-states every task it holds with
  its state (``workload.accepted`` with ``restored`` and ``state``), which
  replaces what the log said of it. The summary gives the largest overrun seen.
* ``billed-as-metered`` - every ``workload.billed`` bills the attempt that
  produced the kept result: its ``metered`` equals that ``workload.task_done``'s,
  its ``billed`` time is ``max(minimum, ceil(metered / increment) * increment)``
  (in whole microseconds), and no result is billed twice (a result is a task
  and the ``lease`` of the run that produced it: a retried task's new result
  is billed on its own). Evidence: the billing
  (``billed``) and the end it should match (``done``).
* ``credential-while-running`` - a worker grants access (``workload.access``
  with ``granted``) only for a task running there: between its
  ``workload.task_started`` and its ``workload.task_finished`` /
  ``workload.fenced`` on that worker, and not after the worker's node was
  crashed or killed (``sim.crash``, ``nemesis.kill``). Evidence: the grant
  (``event``).

Verdicts: ``invalid`` with one evidence item per violation: a dict with its
``why`` and the offending event records as values; ``unknown`` when the log
has nothing for the checker (no ends, acknowledgements, dispatches, bills or
access attempts).
"""

from __future__ import annotations

from typing import Any

import attrs

from topologies.checkers import Reach, Verdict, plural

__all__ = ["BilledAsMetered", "CHECKERS", "CredentialWhileRunning", "MaxDelayHeld", "NoTaskLost", "TasksEndOnce"]


def _ordered(events: list[dict]) -> list[dict]:
    return sorted(events, key=lambda e: e.get("time", 0.0))


def _f(ev: dict) -> dict:
    f = ev.get("fields")
    return f if isinstance(f, dict) else {}


def _kind(ev: dict) -> str:
    k = ev.get("kind")
    return k if isinstance(k, str) else ""


_ACKS = ("workload.acknowledged", "workload.client_acked")


def _worker(ev: dict) -> str:
    w = _f(ev).get("worker")
    return w if isinstance(w, str) and w else f"{ev.get('node')}/{ev.get('actor')}"


@attrs.frozen
class TasksEndOnce:
    name: str = "tasks-end-once"

    def check(self, events: list[dict]) -> Verdict:
        acceptances: dict[str, int] = {}  # task -> acceptances so far (the first, then one per retry)
        seen: set[str] = set()
        ended: dict[str, list[dict]] = {}
        evidence: list[dict] = []
        ends = 0
        for ev in _ordered(events):
            k, f = _kind(ev), _f(ev)
            tid = f.get("task")
            if k == "workload.accepted" or (k in _ACKS and tid not in seen):
                # an acknowledgement proves the first acceptance (the queue commits before it answers) when the
                # queue's own event died with its process (a SIGKILL loses the event log's unflushed tail)
                if f.get("retry") or tid not in seen:
                    acceptances[tid] = acceptances.get(tid, 0) + 1
                seen.add(tid)
            elif k == "workload.done_restated":
                if tid not in ended:  # a restarted queue re-states an end whose own event was lost: the same end
                    ended[tid] = [ev]
                    ends += 1
                    if tid not in seen:
                        evidence.append({"why": f"task {tid} ended but was never accepted", "event": ev})
            elif k == "workload.task_done":
                ends += 1
                done = ended.setdefault(tid, [])
                done.append(ev)
                if tid not in seen:
                    evidence.append({"why": f"task {tid} ended but was never accepted", "event": ev})
                elif len(done) > acceptances.get(tid, 0):
                    evidence.append({"why": f"task {tid} ended {len(done)} times for {acceptances.get(tid, 0)} "
                                            f"acceptance(s)", "first": done[0], "second": ev})
        if not ends:
            return Verdict(self.name, "unknown", "no task ended in this log (no workload.task_done): nothing to judge")
        if evidence:
            return Verdict(self.name, "invalid", f"{plural(len(evidence), 'task end')} without a matching acceptance "
                                                 f"(completed twice or never accepted)", evidence)
        return Verdict(self.name, "valid", f"{plural(ends, 'task end')}, each the only one of its acceptance")


@attrs.frozen
class NoTaskLost:
    name: str = "no-task-lost"
    liveness: bool = True

    def check(self, events: list[dict]) -> Verdict:
        acked: dict[str, dict] = {}
        last_accept: dict[str, float] = {}
        done_at: dict[str, float] = {}
        for ev in _ordered(events):
            k, tid = _kind(ev), _f(ev).get("task")
            if k in _ACKS and isinstance(tid, str):
                acked.setdefault(tid, ev)
                last_accept.setdefault(tid, ev.get("time", 0.0))
            elif k == "workload.accepted" and not _f(ev).get("restored"):
                last_accept[tid] = ev.get("time", 0.0)
            elif k in ("workload.task_done", "workload.done_restated"):
                done_at[tid] = max(done_at.get(tid, -1.0), ev.get("time", 0.0))
        if not acked:
            return Verdict(self.name, "unknown", "no submission was acknowledged in this log: nothing to judge")
        evidence = []
        for tid, ev in acked.items():
            if done_at.get(tid, -1.0) < last_accept[tid]:
                evidence.append({"why": f"task {tid} was acknowledged and never ended", "event": ev})
        if evidence:
            return Verdict(self.name, "invalid", f"{plural(len(evidence), 'acknowledged task')} of {len(acked)} lost "
                                                 f"(never ended)", evidence)
        return Verdict(self.name, "valid", f"all {plural(len(acked), 'acknowledged task')} accepted and ended")


@attrs.frozen
class MaxDelayHeld:
    name: str = "max-delay-held"
    slack: float = 0.05
    default_heartbeat: float = 1.0  # a worker's Pull interval when its worker_started does not say (Worker's default)

    def check(self, events: list[dict]) -> Verdict:
        info: dict[str, tuple[float, str, dict, str]] = {}  # task -> (deadline, type, accepted event, queue node)
        queued: dict[str, set[str]] = {}  # type -> queued task ids
        queued_since: dict[str, float] = {}
        workers: dict[str, _IdleWorker] = {}
        queues: dict[str, float | None] = {}  # queue node -> up since (None: down)
        reach = Reach()
        reach_since: dict[tuple[str, str], float | None] = {}  # (worker node, queue node) -> both ways up since
        reported: set[str] = set()
        evidence: list[dict] = []
        dispatches, overdue, worst = 0, 0, 0.0

        def up_since(wnode: str, qnode: str, t: float) -> float | None:
            """Since when the worker's node and the queue's reach each other both ways (None: they do not);
            a pair is registered when the later of the two is first seen (a worker's start, a queue's first
            acceptance), so ``t`` is never later than the start of the wait being judged."""
            key = (wnode, qnode)
            if key not in reach_since:
                up = reach.blocked_by(wnode, qnode) is None and reach.blocked_by(qnode, wnode) is None
                reach_since[key] = t if up else None
            return reach_since[key]

        def idle_check(t: float) -> None:
            """An overdue queued task and a worker of its type that is up, reachable and free the whole time."""
            for tt, q in queued.items():
                for tid in sorted(q):
                    d, _, acc, qnode = info[tid]
                    if tid in reported or d + self.slack >= t:
                        continue
                    qs = queues.get(qnode, -1e18)
                    if qs is None:
                        continue  # no queue to dispatch it
                    for addr, w in sorted(workers.items()):
                        if w.free_since is None or tt not in w.types:
                            continue
                        rs = up_since(addr.partition("/")[0], qnode, t)
                        if rs is None:
                            continue
                        since = max(w.free_since, rs, qs, d + self.slack, queued_since.get(tid, -1e18))
                        grace = 2 * w.heartbeat + self.slack  # the worker's Pull is resent every heartbeat
                        if t - since > grace:
                            reported.add(tid)
                            evidence.append({"why": f"task {tid} was {t - d:.3f} s past its maximum delay while "
                                                    f"{addr} (serving {tt}) was free and reachable for "
                                                    f"{t - since:.3f} s, and nothing was dispatched to it",
                                             "waiting": acc, "free": w.free_ev})
                            break

        def release(tid: str, t: float, ev: dict, only: str | None = None) -> None:
            for addr, w in workers.items():
                if only is None or addr == only:
                    w.drop(tid, t, ev)

        for ev in _ordered(events):
            k, f = _kind(ev), _f(ev)
            tid = f.get("task")
            t = float(ev.get("time", 0.0))
            idle_check(t)
            if reach.update(ev):
                for key in list(reach_since):
                    up = reach.blocked_by(*key) is None and reach.blocked_by(key[1], key[0]) is None
                    if not up:
                        reach_since[key] = None
                    elif reach_since[key] is None:
                        reach_since[key] = t
                continue
            if k == "workload.accepted":
                if not (f.get("restored") and tid in info):
                    try:
                        info[tid] = (float(f.get("enqueued_at", t)) + float(f.get("max_delay", 0.0)),
                                     str(f.get("type", "")), ev, str(ev.get("node", "")))
                    except (TypeError, ValueError):
                        continue
                if str(ev.get("node", "")) not in queues:
                    queues[str(ev.get("node", ""))] = -1e18
                    for addr in workers:
                        up_since(addr.partition("/")[0], str(ev.get("node", "")), t)
                # a restarted queue re-states each task with its state (the dispatch that leased it may be
                # missing from the log: a SIGKILLed process loses the unflushed tail of its event log)
                state = f.get("state") if f.get("restored") else "queued"
                if state == "leased":
                    queued.get(info[tid][1], set()).discard(tid)
                elif state == "queued":
                    if tid not in queued.setdefault(info[tid][1], set()):
                        queued_since[tid] = t
                    queued[info[tid][1]].add(tid)
                    release(tid, t, ev)  # queued again: no worker holds it (a restarted queue's word, a retry)
            elif k == "workload.worker_started":
                addr = _worker(ev)
                try:
                    hb = float(f.get("heartbeat", self.default_heartbeat))
                    slots = int(f.get("slots", 1))
                except (TypeError, ValueError):
                    hb, slots = self.default_heartbeat, 1
                workers[addr] = _IdleWorker(frozenset(str(x) for x in f.get("types") or ()), max(1, slots), hb)
                workers[addr].update(t, ev)
                for qnode in queues:
                    up_since(addr.partition("/")[0], qnode, t)
            elif k == "workload.queue_started":
                queues[str(ev.get("node", ""))] = t
            elif k == "sim.crash" or k == "nemesis.kill":
                node = f.get("node") if k == "nemesis.kill" else ev.get("node")
                gone = f"{ev.get('node')}/{ev.get('actor')}" if k == "sim.crash" else None
                if node in queues and (k == "nemesis.kill" or ev.get("actor") == "queue"):
                    queues[node] = None
                for addr, w in workers.items():
                    if addr == gone or (k == "nemesis.kill" and addr.partition("/")[0] == node):
                        w.dead(ev)
            elif k == "workload.task_started" and tid in info:  # a worker runs it: it was dispatched (even when
                queued.get(info[tid][1], set()).discard(tid)      # the queue's own event died with its process)
                w = workers.get(_worker(ev))
                if w is not None:
                    w.hold(tid, t, ev)
            elif k in ("workload.task_finished", "workload.fenced", "workload.dispatch_refused"):
                release(tid, t, ev, only=_worker(ev))
            elif k == "workload.lease_lapsed" and tid in info:
                if tid not in queued.setdefault(info[tid][1], set()):
                    queued_since[tid] = t
                queued[info[tid][1]].add(tid)
                release(tid, t, ev)
            elif k in ("workload.task_done", "workload.done_restated") and tid in info:
                queued.get(info[tid][1], set()).discard(tid)
                release(tid, t, ev)
            elif k == "workload.dispatched":
                dispatches += 1
                mine = info.get(tid)
                tt = mine[1] if mine else str(f.get("type", ""))
                q = queued.setdefault(tt, set())
                q.discard(tid)
                release(tid, t, ev)
                w = workers.get(str(f.get("worker", "")))
                if w is not None:
                    w.hold(tid, t, ev)  # its slot is taken until the run ends there or the lease lapses
                my_deadline = mine[0] if mine else float("inf")
                if my_deadline <= t:
                    overdue += 1
                    worst = max(worst, t - my_deadline)
                for other in sorted(q):
                    d, _, acc, _ = info[other]
                    if d + self.slack < t and d < my_deadline:
                        evidence.append({"why": f"task {other} was {t - d:.3f} s past its maximum delay when "
                                                f"{tid} (deadline {my_deadline - t:+.3f} s) was dispatched instead",
                                         "waiting": acc, "dispatched": ev})
        if events:
            idle_check(max(float(e.get("time", 0.0)) for e in events))
        if not dispatches:
            return Verdict(self.name, "unknown", "no task was dispatched in this log: nothing to judge")
        if evidence:
            return Verdict(self.name, "invalid", f"{plural(len(evidence), 'overdue task')} passed over by a dispatch "
                                                 f"of a later deadline or left waiting while a worker of its type "
                                                 f"was free", evidence)
        return Verdict(self.name, "valid", f"{plural(dispatches, 'dispatch', 'dispatches')}, none passing over an "
                                           f"overdue task, no overdue task waiting while a worker of its type was "
                                           f"free; {overdue} overdue when dispatched, largest overrun {worst:.3f} s")


class _IdleWorker:
    """What max-delay-held knows of a worker: its types, slots and heartbeat, the tasks it holds (dispatched to it
    or running there), and since when it has had a free slot (None: all its slots are taken, or it is dead)."""

    def __init__(self, types: frozenset, slots: int, heartbeat: float) -> None:
        self.types, self.slots, self.heartbeat = types, slots, heartbeat
        self.held: set[str] = set()
        self.alive = True
        self.free_since: float | None = None
        self.free_ev: dict | None = None

    def update(self, t: float, ev: dict) -> None:
        free = self.alive and len(self.held) < self.slots
        if not free:
            self.free_since, self.free_ev = None, None
        elif self.free_since is None:
            self.free_since, self.free_ev = t, ev

    def hold(self, tid: str, t: float, ev: dict) -> None:
        self.held.add(tid)
        self.update(t, ev)

    def drop(self, tid: str, t: float, ev: dict) -> None:
        if tid in self.held:
            self.held.discard(tid)
            self.update(t, ev)

    def dead(self, ev: dict) -> None:
        self.alive = False
        self.held.clear()
        self.free_since, self.free_ev = None, None


def _billed_us(metered: float, increment: float, minimum: float) -> int:
    m, inc, mn = int(round(metered * 1e6)), int(round(increment * 1e6)), int(round(minimum * 1e6))
    return max(mn, -(-m // inc) * inc) if inc > 0 else max(mn, m)


@attrs.frozen
class BilledAsMetered:
    name: str = "billed-as-metered"

    def check(self, events: list[dict]) -> Verdict:
        done: dict[str, dict] = {}
        billed: dict[str, dict] = {}
        evidence: list[dict] = []
        n = 0
        ordered = _ordered(events)
        for ev in ordered:  # the kept results first: a restated end may come after the billing of its original
            f = _f(ev)
            key = (f.get("task"), f.get("lease") or "")
            if _kind(ev) == "workload.task_done" or (_kind(ev) == "workload.done_restated" and key not in done):
                done[key] = ev
        for ev in ordered:
            k, f = _kind(ev), _f(ev)
            tid = f.get("task")
            if k == "workload.billed":
                n += 1
                key = (tid, f.get("lease") or "")  # the result's run: a retried task is billed once per run
                if key in billed:
                    evidence.append({"why": f"task {tid} billed twice", "billed": ev, "first": billed[key]})
                    continue
                billed[key] = ev
                end = done.get(key)
                if end is None:
                    evidence.append({"why": f"task {tid} billed with no kept result", "billed": ev})
                    continue
                try:
                    metered, b = float(f["metered"]), float(f["billed"])
                    rule = _billed_us(metered, float(f["increment"]), float(f["minimum"]))
                    kept = float(_f(end).get("metered", 0.0))
                except (KeyError, TypeError, ValueError):
                    evidence.append({"why": f"task {tid}: a billing record without metered/billed/increment/minimum",
                                     "billed": ev})
                    continue
                if abs(metered - kept) > 1e-9:
                    evidence.append({"why": f"task {tid} billed for {metered} s metered, but the attempt that "
                                            f"produced its result metered {kept} s", "billed": ev, "done": end})
                elif int(round(b * 1e6)) != rule:
                    evidence.append({"why": f"task {tid} billed {b} s; the rule gives {rule / 1e6} s for {metered} s",
                                     "billed": ev, "done": end})
        if not n:
            return Verdict(self.name, "unknown", "no task was billed in this log: nothing to judge")
        if evidence:
            return Verdict(self.name, "invalid", f"{plural(len(evidence), 'billing')} not by the rule", evidence)
        return Verdict(self.name, "valid", f"{plural(n, 'task')} billed, each once, by the rule, for the attempt that "
                                           f"produced its result")


@attrs.frozen
class CredentialWhileRunning:
    name: str = "credential-while-running"

    def check(self, events: list[dict]) -> Verdict:
        running: set[tuple[str, str]] = set()
        evidence: list[dict] = []
        grants = attempts = 0
        for ev in _ordered(events):
            k, f = _kind(ev), _f(ev)
            if k == "workload.task_started":
                running.add((_worker(ev), f.get("task")))
            elif k in ("workload.task_finished", "workload.fenced"):
                running.discard((_worker(ev), f.get("task")))
            elif k == "sim.crash":
                gone = f"{ev.get('node')}/{ev.get('actor')}"
                running = {r for r in running if r[0] != gone}
            elif k == "nemesis.kill":
                node = f.get("node")
                running = {r for r in running if r[0].partition("/")[0] != node}
            elif k == "workload.access":
                attempts += 1
                if f.get("granted"):
                    grants += 1
                    if (_worker(ev), f.get("task")) not in running:
                        evidence.append({"why": f"{_worker(ev)} granted access for task {f.get('task')}, which is "
                                                f"not running there", "event": ev})
        if not attempts:
            return Verdict(self.name, "unknown", "no access with a credential was tried in this log: nothing to judge")
        if evidence:
            return Verdict(self.name, "invalid", f"{plural(len(evidence), 'grant')} for a task not running on the "
                                                 f"worker", evidence)
        return Verdict(self.name, "valid", f"{plural(grants, 'grant')} of {plural(attempts, 'access attempt')}, each "
                                           f"for a task running on that worker")


CHECKERS: tuple[Any, ...] = (TasksEndOnce(), NoTaskLost(), MaxDelayHeld(), BilledAsMetered(), CredentialWhileRunning())
