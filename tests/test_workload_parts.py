"""Gateway, worker, code and data services as pure state machines (issue 20, deliverables 1, 3-5).

Each test drives one machine with messages and reads the effects: the gateway's clear errors
and its acknowledgement only after the queue's; the worker's credits, fetches (a corrupt copy
fetched again), self-fencing, results resent until acknowledged, and credentials valid only
while the task runs; the code service's versions and sharing; the data service's checksums.
"""

from __future__ import annotations

import hashlib

import attrs
import pytest

from protocols.core import Emit, Send
from protocols.workload.gateway import Gateway, Submit, Submitted, TaskQuery
from protocols.workload.messages import (Dispatch, Enqueue, Enqueued, Pull, Renew, Renewed, Result, ResultAck,
                                         Status, TaskStatus)
from protocols.workload.services import (Blob, BlobMissing, Code, CodeMissing, CodeService, DataService, FetchBlob,
                                         FetchCode, PublishCode, Published, PutBlob, Stored)
from protocols.workload.worker import (Access, AccessAnswer, Credential, Prepare, ReleaseAccess, RunTask,
                                       StopTask, TaskFinished, Worker)

Q, GW, CLI, W = "q/queue", "gw/gateway", "cli/c", "w1/worker"
TENANTS = {"acme": {"token": "s3cret", "class": "gold"}, "zeta": {"token": "z", "class": "basic"}}


def sends(effects, cls=None, to=None):
    return [e.msg for e in effects if isinstance(e, Send) and (cls is None or isinstance(e.msg, cls))
            and (to is None or e.to == to)]


def events(effects, kind):
    return [e.fields for e in effects if isinstance(e, Emit) and e.kind == kind]


def submit(**kw):
    base = dict(request_id="r1", tenant="acme", token="s3cret", task_type="py", code={"source": "result = 1"},
                data={"inline": [1, 2]}, max_delay=30.0, priority=None, notify="acme/inbox")
    return Submit(**{**base, **kw})


# ---------------------------------------------------------------- gateway

def gateway():
    return Gateway({"py": Q, "sh": "q/queue"}, TENANTS, classes={"gold": 7, "basic": 1}, max_inline=100)


@pytest.mark.parametrize("change, error", [
    (dict(token="wrong"), "tenant 'acme' is unknown or its token is wrong"),
    (dict(tenant="mallory"), "tenant 'mallory' is unknown"),
    (dict(task_type="gpu"), "unknown task type 'gpu'"),
    (dict(code={}), "code must be {'source': ...}"),
    (dict(code={"source": "x" * 200}), "inline code is 200 bytes; the limit is 100"),
    (dict(code={"ref": "lib", "version": -1}), "code.version must be an integer >= 0"),
    (dict(code={"source": "puts 1", "type": "ruby"}), "code.type must be one of ['python', 'shell']"),
    (dict(data={"ref": "abc"}), "data.ref must be the SHA-256"),
    (dict(data={}), "data must be {'inline': value}"),
    (dict(max_delay=0.0), "max_delay must be a number of seconds in (0, 86400.0]"),
    (dict(max_delay=float("inf")), "max_delay must be"),
    (dict(priority=42), "priority must be an integer in [0, 9], got 42"),
    (dict(notify="nowhere"), "notify must be an actor address"),
])
def test_gateway_refuses_bad_tasks_with_a_clear_error(change, error):
    g = gateway()
    e = g.handle(submit(**change), CLI, 0.0)
    (ans,) = sends(e, Submitted, CLI)
    assert not ans.ok and error in ans.error and not sends(e, Enqueue)
    assert g.counters["refused"] == 1


def test_gateway_acknowledges_only_after_the_queue_and_dedups_resends():
    g = gateway()
    e = g.handle(submit(), CLI, 0.0)
    (enq,) = sends(e, Enqueue, Q)
    assert enq.priority == 7 and enq.task_id.startswith("py.") and enq.payload["notify"] == "acme/inbox"
    assert not sends(e, Submitted)  # nothing said to the client yet
    restarted = gateway()  # a gateway that lost its tables names the resent submission's task the same
    restarted.rng.random()
    assert sends(restarted.handle(submit(), CLI, 0.2), Enqueue)[0].task_id == enq.task_id
    assert sends(restarted.handle(submit(tenant="zeta", token="z"), CLI, 0.2), Enqueue)[0].task_id != enq.task_id
    assert g.handle(submit(), CLI, 0.1) == []  # the client's resend: still waiting, no second task
    assert sends(g.tick(1.5), Enqueue, Q) == [enq]  # the queue did not answer: sent again, same id
    e = g.handle(Enqueued(enq.task_id, True), Q, 1.6)
    assert sends(e, Submitted, CLI) == [Submitted("r1", True, enq.task_id)]
    assert g.handle(Enqueued(enq.task_id, True), Q, 1.7) == []  # duplicate answer
    assert sends(g.handle(submit(), CLI, 2.0), Submitted) == [Submitted("r1", True, enq.task_id)]
    e = g.handle(submit(request_id="r2", priority=3), CLI, 2.0)
    assert sends(e, Enqueue)[0].priority == 3
    e = g.handle(Enqueued(sends(e, Enqueue)[0].task_id, False, "queue 'py' holds 5 tasks"), Q, 2.1)
    assert "the queue refused the task: queue 'py' holds 5 tasks" in sends(e, Submitted)[0].error


def test_gateway_relays_status_only_to_the_tasks_tenant():
    g = gateway()
    e = g.handle(TaskQuery("zeta", "z", "py.x.1", "status"), "cli/z", 0.0)
    e += g.handle(TaskQuery("acme", "s3cret", "py.x.1", "status"), CLI, 0.0)
    assert sends(e, Status, Q) == [Status("py.x.1"), Status("py.x.1")]
    out = g.handle(TaskStatus("py.x.1", "done", 1, {"ok": True}, "acme"), Q, 0.1)
    assert sends(out, TaskStatus, CLI)[0].state == "done" and sends(out, TaskStatus, "cli/z")[0].state == "unknown"
    assert sends(g.handle(TaskQuery("acme", "bad", "py.x.1"), CLI, 0.2), TaskStatus)[0].state == "unknown"


# ---------------------------------------------------------------- worker

def dispatch(tid="t1", lease="L1", payload=None, attempt=1, ttl=3.0):
    return Dispatch(tid, lease, attempt, "py", "acme", 0,
                    payload or {"code": {"source": "result = 1"}, "data": {"inline": 5}, "notify": "acme/inbox"}, ttl)


def started_worker(**kw):
    w = Worker(Q, ["py"], slots=2, code_service="c/code", data_service="d/data", heartbeat=1.0, address=W, **kw)
    e = w.tick(0.0)
    assert sends(e, Pull, Q) == [Pull(w.boot, 1, ["py"], 2, 0)]
    assert Prepare(("py",)) in e  # the warm environment is made ready at start, not at the first task
    return w


def test_worker_runs_a_task_reports_once_and_gives_its_credit_back():
    w = started_worker()
    e = w.handle(dispatch(), Q, 0.1)
    (run,) = [x for x in e if isinstance(x, RunTask)]
    assert run.source == "result = 1" and run.data == 5
    (cred,) = sends(e, Credential, "acme/inbox")
    assert w.handle(dispatch(), Q, 0.2) == []  # a duplicated Dispatch
    e = w.handle(TaskFinished(run.run, {"ok": True, "value": 1, "metered": 0.25}), W, 0.5)
    (res,) = sends(e, Result, Q)
    assert res.outcome == {"ok": True, "value": 1, "metered": 0.25, "resource": "py"}
    assert res.credits == Pull(w.boot, 2, ["py"], 2, 1)  # its slot is offered again with the result
    assert events(e, "workload.credential_revoked")[0]["why"] == "task ended"
    assert sends(w.tick(1.6), Result, Q) == [attrs.evolve(res, credits=None)]  # not acknowledged: sent again
    e = w.handle(ResultAck("t1", "L1", "accepted"), Q, 1.7)
    assert sends(e, Pull, Q) == [] and "t1" not in w.runs  # credits unchanged since: no second Pull
    assert sends(w.tick(2.7), Pull, Q)[0].free == 2  # the heartbeat's Pull
    assert w.handle(TaskFinished(run.run, {"ok": True}), W, 1.8) == []  # a late second report


def test_worker_fetches_code_and_data_and_refetches_a_corrupt_copy():
    w = started_worker()
    good = b"payload"
    sha = hashlib.sha256(good).hexdigest()
    e = w.handle(dispatch(payload={"code": {"ref": "lib", "version": 2}, "data": {"ref": sha}}), Q, 0.0)
    assert sends(e, FetchCode, "c/code") == [FetchCode("lib", 2, "acme", "t1")]
    assert sends(e, FetchBlob, "d/data") == [FetchBlob(sha, "t1")]
    e = w.handle(Blob(sha, b"pay1oad", "t1"), "d/data", 0.1)  # corrupt in transit
    assert sends(e, FetchBlob, "d/data") and w.counters["corrupt_data"] == 1
    assert not [x for x in e if isinstance(x, RunTask)]
    w.handle(Code("lib", 2, "def main(d):\n    return d", "pub", "0.05", "python", "t1"), "c/code", 0.2)
    e = w.handle(Blob(sha, good, "t1"), "d/data", 0.3)
    (run,) = [x for x in e if isinstance(x, RunTask)]
    assert run.data == good
    e = w.handle(TaskFinished(run.run, {"ok": True, "value": 1, "metered": 0.1}), W, 0.4)
    assert sends(e, Result)[0].outcome["code_owner"] == "pub"


def test_worker_fails_a_task_whose_code_is_missing_or_never_arrives():
    w = started_worker()
    w.handle(dispatch(payload={"code": {"ref": "nope"}, "data": {"inline": 1}}), Q, 0.0)
    e = w.handle(CodeMissing("nope", "no code named 'nope'", "t1"), "c/code", 0.1)
    assert sends(e, Result)[0].outcome["error"] == "no code named 'nope'"


def test_worker_stops_a_task_whose_lease_is_gone_or_cannot_be_renewed():
    w = started_worker()
    e = w.handle(dispatch("t1", "L1"), Q, 0.0)
    run1 = [x for x in e if isinstance(x, RunTask)][0]
    w.handle(dispatch("t2", "L2"), Q, 0.0)
    e = w.tick(1.0)
    assert sorted(m.task_id for m in sends(e, Renew, Q)) == ["t1", "t2"]
    e = w.handle(Renewed("t1", "L1", False), Q, 1.1)
    assert StopTask(run1.run) in e and events(e, "workload.fenced")[0]["task"] == "t1"
    assert events(e, "workload.credential_revoked")
    w.handle(Renewed("t2", "L2", True), Q, 1.1)
    e = w.tick(3.0)  # renewed at 1.1, not since: fine until 4.1
    assert not events(e, "workload.fenced")
    e = w.tick(4.2)  # cut off from the queue for a whole lease: stop
    assert events(e, "workload.fenced")[0]["task"] == "t2" and not w.runs
    assert not sends(e, Result)  # a fenced task reports nothing


def test_credential_is_valid_only_while_its_task_runs_on_this_worker():
    w = started_worker()
    e = w.handle(dispatch(), Q, 0.0)
    run = [x for x in e if isinstance(x, RunTask)][0]
    token = sends(e, Credential)[0].token
    e = w.handle(Access(token, "logs"), "acme/inbox", 0.5)
    assert sends(e, AccessAnswer)[0].ok and sends(e, AccessAnswer)[0].task_id == "t1"
    assert not sends(w.handle(Access("guess", "logs"), "mallory/x", 0.5), AccessAnswer)[0].ok
    w.handle(TaskFinished(run.run, {"ok": True, "metered": 1.0}), W, 1.0)
    e = w.handle(Access(token, "logs"), "acme/inbox", 1.1)
    assert not sends(e, AccessAnswer)[0].ok and events(e, "workload.access")[0]["granted"] is False
    w2 = started_worker()
    e = w2.handle(dispatch(), Q, 0.0)
    token = sends(e, Credential)[0].token
    assert events(w2.handle(ReleaseAccess(token), "acme/inbox", 0.1), "workload.credential_revoked")
    assert not sends(w2.handle(Access(token), "acme/inbox", 0.2), AccessAnswer)[0].ok


def test_worker_refuses_dispatches_beyond_its_slots():
    w = started_worker()
    w.handle(dispatch("a", "La"), Q, 0.0)
    w.handle(dispatch("b", "Lb"), Q, 0.0)
    e = w.handle(dispatch("c", "Lc"), Q, 0.0)
    assert events(e, "workload.dispatch_refused") and w.counters["refused_dispatches"] == 1


# ---------------------------------------------------------------- code and data services

def test_code_service_versions_pinning_and_sharing():
    c = CodeService(max_versions=2)
    assert sends(c.handle(PublishCode("pub", "lib", "v1", public=True, price="0.05"), "p/x", 0), Published)[0].version == 1
    c.handle(PublishCode("pub", "lib", "v2", public=True, price="0.05"), "p/x", 0)
    assert not sends(c.handle(PublishCode("other", "lib", "evil"), "o/x", 0), Published)[0].ok
    latest = sends(c.handle(FetchCode("lib", 0, "user", "t"), "w/w", 0), Code)[0]
    assert (latest.version, latest.source, latest.owner, latest.price) == (2, "v2", "pub", "0.05")
    assert sends(c.handle(FetchCode("lib", 1, "user", "t"), "w/w", 0), Code)[0].source == "v1"
    c.handle(PublishCode("pub", "lib", "v3", public=True), "p/x", 0)
    assert "has no version 1" in sends(c.handle(FetchCode("lib", 1, "user", "t"), "w/w", 0), CodeMissing)[0].error
    c.handle(PublishCode("pub", "private", "p"), "p/x", 0)
    assert "not shared" in sends(c.handle(FetchCode("private", 0, "user", "t"), "w/w", 0), CodeMissing)[0].error


def test_code_and_data_services_persist_before_they_answer_and_restart_with_it():
    from protocols.core import Persist

    c = CodeService()
    e = c.handle(PublishCode("pub", "lib", "v1", public=True, price="0.05"), "p/x", 0)
    assert isinstance(e[0], Persist) and isinstance(e[-1], Send)  # written before the answer leaves
    c.handle(PublishCode("pub", "lib", "v2", public=True, price="0.05"), "p/x", 0)
    durable = {}
    for x in c.handle(PublishCode("pub", "other", "o1"), "p/x", 0) + e:
        if isinstance(x, Persist):
            durable[x.key] = x.data
    durable["code/lib"] = c._record("lib").data
    again = CodeService(durable=durable)
    got = sends(again.handle(FetchCode("lib", 0, "user", "t"), "w/w", 0), Code)[0]
    assert (got.version, got.source, got.price) == (2, "v2", "0.05")
    assert sends(again.handle(PublishCode("pub", "lib", "v3"), "p/x", 0), Published)[0].version == 3
    d = DataService(max_blobs=2)
    durable = {}
    for blob in (b"a", b"b", b"c"):
        for x in d.handle(PutBlob(blob), "c/x", 0):
            if isinstance(x, Persist):
                durable[x.key] = x.data
    d2 = DataService(max_blobs=2, durable=durable)
    assert sorted(d2.blobs.values()) == [b"b", b"c"]  # the oldest was forgotten, and stays forgotten


def test_data_service_stores_by_checksum_and_bounds():
    d = DataService(max_blobs=1, max_bytes=10)
    (st,) = sends(d.handle(PutBlob(b"abc"), "c/x", 0), Stored)
    assert st.sha256 == hashlib.sha256(b"abc").hexdigest()
    assert sends(d.handle(FetchBlob(st.sha256, "t"), "w/w", 0), Blob)[0].data == b"abc"
    assert not sends(d.handle(PutBlob(b"x" * 11), "c/x", 0), Stored)[0].ok
    d.handle(PutBlob(b"def"), "c/x", 0)
    assert sends(d.handle(FetchBlob(st.sha256, "t"), "w/w", 0), BlobMissing)


def test_a_prefetching_worker_holds_the_next_task_and_starts_it_when_its_slot_frees():
    """Worker(prefetch=1) (issue 20, throughput): a task dispatched while the slot runs waits there (renewed, not
    started, no credential) and starts the moment the running task ends; a third is refused; a waiting task whose
    lease is gone is dropped without a StopTask."""
    w = Worker(Q, ["py"], slots=1, prefetch=1, heartbeat=1.0, address=W)
    assert sends(w.tick(0.0), Pull, Q) == [Pull(w.boot, 1, ["py"], 2, 0, 1)]
    (run1,) = [x for x in w.handle(dispatch("t1", "L1"), Q, 0.1) if isinstance(x, RunTask)]
    e = w.handle(dispatch("t2", "L2"), Q, 0.2)
    assert not [x for x in e if isinstance(x, RunTask)] and not sends(e, Credential)
    assert w.runs["t2"].waiting and not w.runs["t2"].running
    e = w.handle(dispatch("t3", "L3"), Q, 0.3)
    assert events(e, "workload.dispatch_refused") and "t3" not in w.runs
    assert {m.task_id for m in sends(w.tick(1.5), Renew, Q)} == {"t1", "t2"}  # the waiting task's lease too
    e = w.handle(TaskFinished(run1.run, {"ok": True, "value": 1, "metered": 0.1}), W, 1.6)
    (run2,) = [x for x in e if isinstance(x, RunTask)]
    assert run2.task_id == "t2" and sends(e, Result, Q)[0].task_id == "t1" and sends(e, Credential)
    assert sends(e, Result, Q)[0].credits == Pull(w.boot, w.seq, ["py"], 1, 3, 1)  # t2 runs: a prefetch credit
    e = w.handle(dispatch("t4", "L4"), Q, 1.7)
    assert w.runs["t4"].waiting
    e = w.handle(Renewed("t4", "L4", False), Q, 1.8)
    assert events(e, "workload.fenced") and not [x for x in e if isinstance(x, StopTask)] and "t4" not in w.runs
    assert w.runs["t2"].running
