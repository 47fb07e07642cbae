"""The queue service and its durable store (protocols/workload/queue_service.py, topologies/workload/store.py).

Issue 20, deliverable 2: workers pull with credits, leases are renewed or lapse, the first
result wins; every change is committed to SQLite (WAL) before the message that depends on it
leaves, and a queue process killed with SIGKILL restarts with every task it acknowledged.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from protocols.core import Emit, Send
from protocols.workload.messages import (Dispatch, Enqueue, Enqueued, Pull, Renew, Renewed, Result, ResultAck,
                                         Retried, Retry, Status, TaskStatus)
from protocols.workload.queue_service import QueueService, StoreTasks
from topologies.workload.store import DurableMachine, SqliteTaskStore, durable_queue

ROOT = Path(__file__).resolve().parents[1]
GW, W1, W2, Q_SELF = "gw/gateway", "n1/worker", "n2/worker", "q/queue"


def sends(effects, cls=None, to=None):
    return [e.msg for e in effects if isinstance(e, Send) and (cls is None or isinstance(e.msg, cls))
            and (to is None or e.to == to)]


def enq(tid, tenant="a", tt="py", prio=0, max_delay=100.0, payload=None):
    return Enqueue(tid, tenant, tt, prio, max_delay, payload or {"code": "x"})


def test_enqueue_is_stored_before_it_is_acknowledged():
    s = QueueService(["py"])
    s.tick(0.0)
    effects = s.handle(enq("t1"), GW, 1.0)
    assert isinstance(effects[0], StoreTasks) and [r["id"] for r in effects[0].rows] == ["t1"]
    assert effects[0].rows[0]["task_type"] == "py"
    assert sends(effects, Enqueued) == [Enqueued("t1", True)]
    again = s.handle(enq("t1"), GW, 2.0)  # a resend: answered, nothing written
    assert sends(again, Enqueued) == [Enqueued("t1", True)] and not any(isinstance(e, StoreTasks) for e in again)
    bad = s.handle(enq("t2", tt="gpu"), GW, 2.0)
    assert not sends(bad, Enqueued)[0].ok and "serves no task type 'gpu'" in sends(bad, Enqueued)[0].error


def test_workers_pull_with_credits_and_get_leased_tasks_in_dispatch_order():
    s = QueueService(["py", "sh"], lease_ttl=5.0)
    s.tick(0.0)
    for i, (tt, p) in enumerate([("py", 0), ("py", 5), ("sh", 3), ("py", 1)]):
        s.handle(enq(f"t{i}", tt=tt, prio=p), GW, 0.0)
    e = s.handle(Pull("boot1", 1, ["py"], 2), W1, 1.0)
    assert isinstance(e[0], StoreTasks) and {r["state"] for r in e[0].rows} == {"leased"}
    got = sends(e, Dispatch, W1)
    assert [d.task_id for d in got] == ["t1", "t3"] and got[0].attempt == 1 and got[0].lease_ttl == 5.0
    assert s.handle(Pull("boot1", 1, ["py"], 5), W1, 1.0) == []  # the same seq again: stale, ignored
    e = s.handle(Pull("boot2", 1, ["py", "sh"], 5), W2, 1.0)
    assert [d.task_id for d in sends(e, Dispatch, W2)] == ["t2", "t0"]  # sh priority 3 before py priority 0
    assert s.counters["stale_pulls"] == 1


def test_renewal_lapse_and_the_first_result_wins():
    s = QueueService(["py"], lease_ttl=2.0, tick=0.5)
    s.tick(0.0)
    s.handle(enq("t"), GW, 0.0)
    d1 = sends(s.handle(Pull("b1", 1, ["py"], 1), W1, 0.0), Dispatch)[0]
    assert sends(s.handle(Renew("t", d1.lease_id), W1, 1.5), Renewed)[0].ok
    lapsed = s.tick(4.0)
    assert any(isinstance(e, Emit) and e.kind == "workload.lease_lapsed" for e in lapsed)
    assert not sends(s.handle(Renew("t", d1.lease_id), W1, 4.0), Renewed)[0].ok  # self-fence: stop the task
    d2 = sends(s.handle(Pull("b2", 1, ["py"], 1), W2, 4.1), Dispatch)[0]
    assert d2.attempt == 2 and d2.lease_id != d1.lease_id
    e = s.handle(Result("t", d2.lease_id, 2, {"ok": True, "value": 42, "metered": 0.3}), W2, 5.0)
    assert isinstance(e[0], StoreTasks) and e[0].rows[0]["state"] == "done"
    assert sends(e, ResultAck) == [ResultAck("t", d2.lease_id, "accepted")]
    done = [x for x in e if isinstance(x, Emit) and x.kind == "workload.task_done"]
    assert done[0].fields["attempt"] == 2 and done[0].fields["metered"] == 0.3
    late = s.handle(Result("t", d1.lease_id, 1, {"ok": True, "value": 41}), W1, 5.5)
    assert sends(late, ResultAck) == [ResultAck("t", d1.lease_id, "duplicate")]
    assert not any(isinstance(x, StoreTasks) for x in late)
    st = sends(s.handle(Status("t"), "cli/x", 6.0), TaskStatus)[0]
    assert st.state == "done" and st.outcome["value"] == 42 and st.attempts == 2
    assert sends(s.handle(Status("zz"), "cli/x", 6.0), TaskStatus)[0].state == "unknown"
    assert s.counters["duplicates"] == 1 and s.counters["accepted"] == 1


def test_notify_address_gets_the_outcome_and_retry_requeues_a_failure():
    s = QueueService(["py"])
    s.tick(0.0)
    s.handle(enq("t", payload={"code": "raise", "notify": "tenant/inbox"}), GW, 0.0)
    d = sends(s.handle(Pull("b", 1, ["py"], 1), W1, 0.0), Dispatch)[0]
    e = s.handle(Result("t", d.lease_id, 1, {"ok": False, "error": "ZeroDivisionError"}), W1, 1.0)
    note = sends(e, TaskStatus, "tenant/inbox")
    assert note and note[0].outcome["error"] == "ZeroDivisionError"
    assert not sends(s.handle(Retry("t", "mallory"), "c/x", 2.0), Retried)[0].ok
    e = s.handle(Retry("t", "a"), "c/x", 2.0)
    assert sends(e, Retried)[0].ok and isinstance(e[0], StoreTasks)
    assert not sends(s.handle(Retry("t", "a"), "c/x", 2.0), Retried)[0].ok  # not ended now
    e = s.handle(Pull("b", 2, ["py"], 1, 1), W1, 3.0)  # it has received the one dispatch sent
    assert sends(e, Dispatch)[0].task_id == "t"


def test_dispatches_still_in_flight_count_against_a_workers_credits():
    s = QueueService(["py"])
    s.tick(0.0)
    for i in range(5):
        s.handle(enq(f"t{i}"), GW, 0.0)
    assert len(sends(s.handle(Pull("b", 1, ["py"], 2, 0), W1, 0.0), Dispatch)) == 2
    # a heartbeat written before those two arrived still says 2 free: nothing more is sent
    assert sends(s.handle(Pull("b", 2, ["py"], 2, 0), W1, 0.1), Dispatch) == []
    # it received both and finished one: one free
    assert len(sends(s.handle(Pull("b", 3, ["py"], 1, 2), W1, 0.2), Dispatch)) == 1
    # a new boot of the worker: nothing in flight to it
    assert len(sends(s.handle(Pull("b2", 1, ["py"], 2, 0), W1, 0.3), Dispatch)) == 2


def test_bad_input_is_counted_and_survived():
    s = QueueService(["py"], max_workers=1)
    s.tick(0.0)
    assert s.handle(object(), "x/y", 0.0)[0].kind == "workload.bad_message"
    r = sends(s.handle(Result("ghost", "L", 1, {"ok": True}), W1, 0.0), ResultAck)[0]
    assert r.status == "unknown"
    s.handle(Pull("b", 1, ["py"], 1), W1, 0.0)
    assert s.handle(Pull("b", 1, ["py"], 1), W2, 0.0) == [] and s.counters["workers_refused"] == 1


# ---------------------------------------------------------------- the store

def test_durable_machine_commits_before_it_hands_on_the_acknowledgement(tmp_path):
    db = tmp_path / "q.sqlite"
    m = durable_queue(["py"], db=str(db), lease_ttl=3.0)
    m.tick(0.0)
    e = m.handle(enq("t1"), GW, 0.0)
    assert not any(isinstance(x, StoreTasks) for x in e) and sends(e, Enqueued)[0].ok
    other = SqliteTaskStore(db)  # a second connection sees it: committed
    assert [r["id"] for r in other.load()] == ["t1"]
    assert m.store.commits == 1
    for i in range(2, 6):
        m.handle(enq(f"t{i}", payload={"code": b"\x00bytes", "n": i}), GW, 0.0)
    m.handle(Pull("b", 1, ["py"], 2), W1, 1.0)  # two leases, one commit
    assert m.store.commits == 6
    d = m.machine.queues["py"].tasks
    leased = sorted(t for t, x in d.items() if x.state == "leased")
    m.handle(Result(leased[0], d[leased[0]].lease_id, 1, {"ok": True, "value": [1, 2]}), W1, 2.0)
    m.store.close()
    r = durable_queue(["py"], db=str(db), lease_ttl=3.0)
    e = r.tick(100.0)
    started = [x for x in e if isinstance(x, Emit) and x.kind == "workload.queue_started"][0]
    assert started.fields["restored"] == 5 and started.fields["queued"] == 3
    q = r.machine.queues["py"]
    assert q.get(leased[0]).state == "done" and q.get(leased[0]).outcome["value"] == [1, 2]
    assert q.get(leased[1]).state == "leased" and q.next_lease_expiry() == 103.0
    assert q.get("t3").payload["code"] == b"\x00bytes" or q.get("t4").payload["code"] == b"\x00bytes"
    assert sends(r.handle(Result(leased[0], "x", 1, {"ok": True}), W1, 101.0), ResultAck)[0].status == "duplicate"
    r.store.close()
    other.close()


def test_a_failed_commit_sends_nothing(tmp_path):
    class Broken(SqliteTaskStore):
        def apply(self, rows, drop):
            raise OSError("disk full")

    m = DurableMachine(QueueService(["py"]), Broken(tmp_path / "q.sqlite"))
    m.tick(0.0)
    with pytest.raises(OSError, match="disk full"):
        m.handle(enq("t1"), GW, 0.0)


def test_the_database_is_in_wal_mode_with_full_sync(tmp_path):
    s = SqliteTaskStore(tmp_path / "q.sqlite")
    assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    s.close()


CHILD = r"""
import sys
from protocols.core import Send
from protocols.workload.messages import Enqueue, Enqueued, Pull, Dispatch, Result, ResultAck
from topologies.workload.store import durable_queue
m = durable_queue(["py"], db=sys.argv[1], lease_ttl=30.0)
m.tick(0.0)
now = 0.0
for i in range(1_000_000):
    now += 0.001
    for e in m.handle(Enqueue(f"t{i}", "ab"[i % 2], "py", i % 3, 60.0, {"n": i}), "gw/g", now):
        if isinstance(e, Send) and isinstance(e.msg, Enqueued) and e.msg.ok:
            print("acked", e.msg.task_id, flush=True)
    if i % 3 == 0:
        for e in m.handle(Pull("boot", i + 1, ["py"], 1), "w/w", now):
            if isinstance(e, Send) and isinstance(e.msg, Dispatch):
                for r in m.handle(Result(e.msg.task_id, e.msg.lease_id, 1, {"ok": True, "value": i}), "w/w", now):
                    if isinstance(r, Send) and isinstance(r.msg, ResultAck):
                        print("done", r.msg.task_id, flush=True)
"""


def test_a_queue_process_killed_with_sigkill_restarts_with_every_acknowledged_task(tmp_path):
    db = tmp_path / "queue.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(db)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    acked, done = set(), set()
    try:
        for line in proc.stdout:
            what, tid = line.split()
            (acked if what == "acked" else done).add(tid)
            if len(acked) >= 400:
                break
        assert len(acked) >= 400, proc.stderr.read()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # mid-run: it is enqueueing as fast as it can
        proc.wait(timeout=30)
        for line in proc.stdout:  # everything it acknowledged before it died, to the last line
            what, _, tid = line.partition(" ")
            if tid.endswith("\n"):
                (acked if what == "acked" else done).add(tid.strip())
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    m = durable_queue(["py"], db=str(db), lease_ttl=30.0)
    m.tick(1000.0)
    q = m.machine.queues["py"]
    missing = sorted(t for t in acked if q.get(t) is None)
    assert not missing, f"{len(missing)} acknowledged tasks lost, e.g. {missing[:5]}"
    not_done = sorted(t for t in done if q.get(t).state != "done")
    assert not not_done, f"acknowledged results lost: {not_done[:5]}"
    print(json.dumps({"acked": len(acked), "results_acked": len(done), "rows_after_restart": m.store.count(),
                      "lost": len(missing)}))
    m.store.close()


def test_a_commit_window_holds_every_effect_until_one_commit_covers_a_burst(tmp_path):
    from protocols.core import SetTimer, TimerFired
    from topologies.workload.store import COMMIT_TIMER

    m = durable_queue(["py"], db=str(tmp_path / "q.sqlite"), commit_window=0.005)
    m.tick(0.0)
    quiet = m.handle(enq("t0"), GW, 1.0)  # no commit for a window: nothing to batch with, committed at once
    assert m.store.count() == 1 and m.store.commits == 1 and sends(quiet, Enqueued) == [Enqueued("t0", True)]
    first = m.handle(enq("t1"), GW, 1.001)
    assert first == [SetTimer(COMMIT_TIMER, 1.005)]  # held (a window after the last commit): not on disk yet,
    assert m.handle(enq("t2"), GW, 1.002) == [] and m.handle(Status("t1"), "c/x", 1.003) == []  # so not answered
    assert m.store.count() == 1
    out = m.handle(TimerFired(COMMIT_TIMER), Q_SELF, 1.005)
    assert m.store.count() == 3 and m.store.commits == 2  # one commit for the burst
    assert [type(x.msg).__name__ for x in out if isinstance(x, Send)] == ["Enqueued", "Enqueued", "TaskStatus"]
    assert m.handle(Status("t2"), "c/x", 1.01)[0].msg.state == "queued"  # nothing held: straight through
    m.store.close()


def test_a_prefetch_credit_is_used_only_while_no_queued_task_could_fall_overdue_before_it_starts():
    """Pull.ahead (issue 20, throughput): a task sent on a prefetch credit waits at the worker behind its running
    task; the queue sends one only once it knows the type's run times and while no queued task comes to its
    deadline within the longest of them, so an overdue task never waits behind a prefetched one."""
    s = QueueService(["py"], lease_ttl=5.0)
    s.tick(0.0)
    for i in range(6):
        s.handle(enq(f"t{i}", max_delay=100.0), GW, 0.0)
    e = s.handle(Pull("b", 1, ["py"], 2, 0, 1), W1, 0.0)  # one slot free now, one prefetch credit
    assert [d.task_id for d in sends(e, Dispatch)] == ["t0"]  # no run time of "py" known yet: no prefetch
    assert s.run_guard(("py",)) is None
    e = s.handle(Result("t0", sends(e, Dispatch)[0].lease_id, 1, {"ok": True, "metered": 0.5}), W1, 1.0)
    assert s.run_guard(("py",)) == 0.5
    assert [d.task_id for d in sends(e, Dispatch)] == ["t1"]  # the prefetch credit left is usable now
    e = s.handle(Pull("b", 2, ["py"], 2, 1, 1), W1, 1.0)  # t0 ended; t1 is on its way (1 received of 2 sent)
    assert [d.task_id for d in sends(e, Dispatch)] == ["t2"]  # t1 takes the slot, t2 the prefetch credit
    s.handle(enq("soon", max_delay=1.4), GW, 1.0)  # its deadline (2.4) is 0.5 s away at 1.9
    e = s.handle(Pull("b", 3, ["py"], 1, 3, 1), W1, 1.8)  # only a prefetch credit: deadline 2.4 > 1.8 + 0.5
    assert [d.task_id for d in sends(e, Dispatch)] == ["t3"]
    e = s.handle(Pull("b", 4, ["py"], 1, 4, 1), W1, 1.95)  # 2.4 <= 1.95 + 0.5: held back
    assert sends(e, Dispatch) == []
    e = s.handle(Pull("b", 5, ["py"], 1, 4, 0), W1, 1.96)  # a slot that starts at once takes the next task
    assert [d.task_id for d in sends(e, Dispatch)] == ["t4"]  # (priority and arrival: "soon" is not overdue)
    e = s.handle(Pull("b", 6, ["py"], 1, 5, 0), W1, 2.5)
    assert [d.task_id for d in sends(e, Dispatch)] == ["soon"]  # overdue: first


def test_a_lost_dispatch_does_not_take_the_workers_credit_for_ever():
    """A Dispatch the network lost was never received: the worker's Pulls say so (received 0) and the queue counted
    it as still on its way for the rest of the worker's boot - the worker's slot was never offered again, and an
    idle worker left every later task waiting (max-delay-held's idle-worker rule, issue 20 (b)). A dispatch is on
    its way for at most a lease: by then it was received or its lease has lapsed."""
    s = QueueService(["py"], lease_ttl=2.0, tick=0.5)
    s.tick(0.0)
    s.handle(enq("t1"), GW, 0.0)
    s.handle(enq("t2"), GW, 0.0)
    assert [d.task_id for d in sends(s.handle(Pull("b", 1, ["py"], 1, 0), W1, 0.0), Dispatch)] == ["t1"]  # lost
    assert sends(s.handle(Pull("b", 2, ["py"], 1, 0), W1, 1.0), Dispatch) == []  # it may still be on its way
    s.tick(2.5)  # t1's lease lapses: queued again
    e = s.handle(Pull("b", 3, ["py"], 1, 0), W1, 3.0)
    assert [d.task_id for d in sends(e, Dispatch)] == ["t1"]


def test_a_result_carries_the_workers_pull_and_the_next_task_goes_out_in_the_same_commit():
    """Result.credits (issue 20, throughput): the slot a task frees is offered with its result - one message and
    one handler instead of two; a resend (credits None) changes no credit, and a stale one is ignored by its seq."""
    m = DurableMachine(QueueService(["py"], lease_ttl=5.0), SqliteTaskStore(""))
    m.tick(0.0)
    for i in range(3):
        m.handle(enq(f"t{i}"), GW, 0.0)
    (d0,) = sends(m.handle(Pull("b", 1, ["py"], 1, 0), W1, 0.0), Dispatch)
    e = m.handle(Result("t0", d0.lease_id, 1, {"ok": True, "metered": 0.1}, Pull("b", 2, ["py"], 1, 1)), W1, 1.0)
    assert sends(e, ResultAck)[0].status == "accepted" and [d.task_id for d in sends(e, Dispatch)] == ["t1"]
    assert m.store.commits == 5  # three enqueues, the first dispatch, and the result with the next dispatch
    e = m.handle(Result("t0", d0.lease_id, 1, {"ok": True, "metered": 0.1}), W1, 1.1)  # a resend: no credit
    assert sends(e, ResultAck)[0].status == "duplicate" and sends(e, Dispatch) == []
    e = m.handle(Result("t0", d0.lease_id, 1, {"ok": True}, Pull("b", 2, ["py"], 1, 1)), W1, 1.2)  # stale seq
    assert sends(e, Dispatch) == []
