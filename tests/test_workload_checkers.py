"""The workload checkers say invalid on logs that break their invariants and unknown with nothing to judge
(topologies/workload/checks.py; DESIGN.md, "Checkers must prove they can fail").

``CASES`` feeds tests/test_checker_registry.py; the tests below add the valid cases and the edges
(a retry may end a task again; a lapsed lease keeps the task's deadline; a crash ends a worker's runs).
"""

from __future__ import annotations

from topologies.workload.checks import (BilledAsMetered, CredentialWhileRunning, MaxDelayHeld, NoTaskLost,
                                        TasksEndOnce)


def ev(t, kind, node="q", actor="queue", **fields):
    return {"time": t, "node": node, "actor": actor, "kind": kind, "fields": fields}


ACC_A = ev(0.0, "workload.accepted", task="a", tenant="x", type="py", priority=0, max_delay=5.0)
ACC_B = ev(1.0, "workload.accepted", task="b", tenant="y", type="py", priority=9, max_delay=60.0)
DONE_A1 = ev(2.0, "workload.task_done", task="a", ok=True, metered=0.25, attempt=1)
DONE_A2 = ev(3.0, "workload.task_done", task="a", ok=True, metered=0.30, attempt=2)
ACK_A = ev(0.0, "workload.acknowledged", node="gw", actor="gateway", task="a")
ACK_B = ev(1.0, "workload.acknowledged", node="gw", actor="gateway", task="b")
DISP_B_LATE = ev(6.0, "workload.dispatched", task="b", worker="w1/worker", type="py", attempt=1, waited=5.0,
                 max_delay=60.0)
BILL_A_OK = ev(2.1, "workload.billed", node="b", actor="billing", task="a", metered=0.25, billed=1.0, increment=0.1,
               minimum=1.0)
BILL_A_WRONG = ev(2.1, "workload.billed", node="b", actor="billing", task="a", metered=2.25, billed=2.3,
                  increment=0.1, minimum=1.0)
STARTED = ev(1.0, "workload.task_started", node="w1", actor="worker", task="a", worker="w1/worker")
FINISHED = ev(2.0, "workload.task_finished", node="w1", actor="worker", task="a", worker="w1/worker")
GRANT_DURING = ev(1.5, "workload.access", node="w1", actor="worker", task="a", worker="w1/worker", granted=True)
GRANT_AFTER = ev(2.5, "workload.access", node="w1", actor="worker", task="a", worker="w1/worker", granted=True)

CASES = {
    "tasks-end-once": {"invalid": ([ACC_A, DONE_A1, DONE_A2], [DONE_A2]),
                       "unknown": [ACC_A, ACK_A]},
    "no-task-lost": {"invalid": ([ACK_A, ACC_A, ACK_B, ACC_B, DONE_A1], [ACK_B]),
                     "unknown": [ACC_A, DONE_A1]},
    "max-delay-held": {"invalid": ([ACC_A, ACC_B, DISP_B_LATE], [ACC_A, DISP_B_LATE]),
                       "unknown": [ACC_A, ACC_B]},
    "billed-as-metered": {"invalid": ([ACC_A, DONE_A1, BILL_A_WRONG], [BILL_A_WRONG]),
                          "unknown": [ACC_A, DONE_A1]},
    "credential-while-running": {"invalid": ([STARTED, GRANT_DURING, FINISHED, GRANT_AFTER], [GRANT_AFTER]),
                                 "unknown": [STARTED, FINISHED]},
}


def test_tasks_end_once_allows_an_end_per_retry():
    retry = ev(2.5, "workload.accepted", task="a", tenant="x", type="py", priority=0, max_delay=5.0, retry=True)
    assert TasksEndOnce().check([ACC_A, DONE_A1, retry, DONE_A2]).status == "valid"
    v = TasksEndOnce().check([DONE_A1])
    assert v.status == "invalid" and "never accepted" in v.evidence[0]["why"]


def test_no_task_lost_needs_an_end_after_the_last_acceptance():
    assert NoTaskLost().check([ACK_A, ACC_A, DONE_A1]).status == "valid"
    retry = ev(2.5, "workload.accepted", task="a", tenant="x", type="py", priority=0, max_delay=5.0, retry=True)
    assert NoTaskLost().check([ACK_A, ACC_A, DONE_A1, retry]).status == "invalid"
    assert "never ended" in NoTaskLost().check([ACK_A]).evidence[0]["why"]
    # the queue was SIGKILLed before its "accepted" event was flushed: the acknowledgement proves it
    assert TasksEndOnce().check([ACK_A, DONE_A1]).status == "valid"
    assert TasksEndOnce().check([ACK_A, DONE_A1, DONE_A2]).status == "invalid"


def test_max_delay_held_in_dispatch_order_and_after_a_lapsed_lease():
    disp_a = ev(6.0, "workload.dispatched", task="a", type="py", attempt=1, waited=6.0, max_delay=5.0)
    ok = MaxDelayHeld().check([ACC_A, ACC_B, disp_a, ev(6.0, "workload.dispatched", task="b", type="py")])
    assert ok.status == "valid" and "largest overrun 1.000 s" in ok.summary
    early = ev(2.0, "workload.dispatched", task="b", type="py")  # a not overdue yet: priority may go first
    assert MaxDelayHeld().check([ACC_A, ACC_B, early]).status == "valid"
    other_type = ev(6.0, "workload.dispatched", task="c", type="sh")
    acc_c = ev(0.5, "workload.accepted", task="c", type="sh", max_delay=60.0)
    assert MaxDelayHeld().check([ACC_A, acc_c, other_type]).status == "valid"  # a sh worker cannot run a py task
    # a lease lapses: a is queued again with its old deadline, and b must not pass it
    d1 = ev(1.0, "workload.dispatched", task="a", type="py")
    lapse = ev(7.0, "workload.lease_lapsed", task="a")
    passed = ev(7.5, "workload.dispatched", task="b", type="py")
    v = MaxDelayHeld().check([ACC_A, ACC_B, d1, lapse, passed])
    assert v.status == "invalid" and v.evidence[0]["dispatched"] == passed


def test_billed_as_metered_checks_the_rule_the_attempt_and_once():
    assert BilledAsMetered().check([ACC_A, DONE_A1, BILL_A_OK]).status == "valid"
    twice = BilledAsMetered().check([ACC_A, DONE_A1, BILL_A_OK, BILL_A_OK])
    assert twice.status == "invalid" and "billed twice" in twice.evidence[0]["why"]
    bad_rule = dict(BILL_A_OK, fields={**BILL_A_OK["fields"], "billed": 0.3})
    v = BilledAsMetered().check([ACC_A, DONE_A1, bad_rule])
    assert v.status == "invalid" and "the rule gives 1.0 s" in v.evidence[0]["why"]
    assert "no kept result" in BilledAsMetered().check([BILL_A_OK]).evidence[0]["why"]


def test_credential_checker_ends_runs_at_a_crash():
    crash = ev(1.6, "sim.crash", node="w1", actor="worker")
    late = dict(GRANT_DURING, time=1.7)
    assert CredentialWhileRunning().check([STARTED, GRANT_DURING, FINISHED]).status == "valid"
    assert CredentialWhileRunning().check([STARTED, crash, late]).status == "invalid"
    refused = ev(3.0, "workload.access", node="w1", actor="worker", task="", worker="w1/worker", granted=False)
    assert CredentialWhileRunning().check([refused]).status == "valid"


def test_an_end_restated_by_a_restarted_queue_counts_once():
    restated = ev(2.5, "workload.done_restated", task="a", ok=True, metered=0.25, attempt=1, restored=True)
    assert TasksEndOnce().check([ACC_A, DONE_A1, restated]).status == "valid"  # the same end again
    assert TasksEndOnce().check([ACK_A, restated]).status == "valid"  # its original event died with the queue
    assert TasksEndOnce().check([ACK_A, restated, DONE_A2]).status == "invalid"
    assert NoTaskLost().check([ACK_A, restated]).status == "valid"
    assert BilledAsMetered().check([ACK_A, restated, BILL_A_OK]).status == "valid"


def test_a_retried_task_is_billed_once_per_result():
    retry = ev(2.5, "workload.accepted", task="a", tenant="x", type="py", priority=0, max_delay=5.0, retry=True)
    d1 = dict(DONE_A1, fields={**DONE_A1["fields"], "lease": "L1"})
    d2 = dict(DONE_A2, fields={**DONE_A2["fields"], "lease": "L2"})
    b1 = dict(BILL_A_OK, fields={**BILL_A_OK["fields"], "lease": "L1"})
    b2 = ev(3.1, "workload.billed", node="b", actor="billing", task="a", lease="L2", metered=0.30, billed=0.5,
            increment=0.1, minimum=0.5)
    assert BilledAsMetered().check([ACC_A, d1, b1, retry, d2, b2]).status == "valid"
    wrong = dict(b2, fields={**b2["fields"], "lease": "L1"})  # the second result billed as the first run's
    assert BilledAsMetered().check([ACC_A, d1, b1, retry, d2, wrong]).status == "invalid"


def test_max_delay_held_takes_a_restarted_queues_word_for_what_is_leased():
    # the dispatch of a died with the SIGKILLed queue's log; the restarted queue says a is leased
    restated = ev(7.0, "workload.accepted", task="a", type="py", max_delay=5.0, enqueued_at=0.0, restored=True,
                  state="leased")
    later = ev(7.5, "workload.dispatched", task="b", type="py")
    assert MaxDelayHeld().check([ACC_A, ACC_B, restated, later]).status == "valid"
    waiting = dict(restated, fields={**restated["fields"], "state": "queued"})
    assert MaxDelayHeld().check([ACC_A, ACC_B, waiting, later]).status == "invalid"


def test_max_delay_held_counts_a_worker_start_as_the_dispatch():
    # the queue's dispatch event of a died with its process; the worker's start shows it was dispatched
    started = ev(1.0, "workload.task_started", node="w1", actor="worker", task="a", worker="w1/worker")
    later = ev(6.0, "workload.dispatched", task="b", type="py")
    assert MaxDelayHeld().check([ACC_A, ACC_B, started, later]).status == "valid"


# ---------------------------------------------------------------- max-delay-held: an idle worker (issue 20, (b))

W1_UP = ev(0.0, "workload.worker_started", node="w1", actor="worker", boot="b1", types=["py"], slots=1, heartbeat=0.5)


def test_max_delay_held_sees_an_overdue_task_wait_while_a_worker_of_its_type_is_idle():
    """The blind spot: a worker of the task's type is up, reachable and runs nothing (its credit never reached the
    queue, or the queue lost count of it), the overdue task waits, and nothing is dispatched at all - no dispatch
    passes over it, so the old checker said valid. "No task waits past its maximum delay plus one task's run time
    while a worker of its type is free": it is invalid once the worker has been free, with the task overdue, for
    longer than the worker needs to be heard (two heartbeats) plus the slack."""
    late = ev(20.0, "workload.dispatched", task="a", worker="w1/worker", type="py", attempt=1, waited=20.0,
              max_delay=5.0)
    v = MaxDelayHeld().check([W1_UP, ACC_A, late])
    assert v.status == "invalid", v.summary
    assert v.evidence[0]["waiting"] == ACC_A and v.evidence[0]["free"] == W1_UP
    assert "w1/worker" in v.evidence[0]["why"]


def test_max_delay_held_allows_the_wait_while_the_worker_is_busy_cut_off_dead_or_of_another_type():
    def start(t, task):
        return ev(t, "workload.task_started", node="w1", actor="worker", task=task, worker="w1/worker")

    def finish(t, task):
        return ev(t, "workload.task_finished", node="w1", actor="worker", task=task, worker="w1/worker")

    late = ev(20.0, "workload.dispatched", task="a", worker="w1/worker", type="py", waited=20.0, max_delay=5.0)
    acc_c = ev(0.0, "workload.accepted", task="c", type="py", max_delay=600.0)
    busy = [W1_UP, ACC_A, acc_c, start(0.5, "c"), finish(19.9, "c"), late]  # a long task ran: one run time
    assert MaxDelayHeld().check(busy).status == "valid"
    freed_too_long = [W1_UP, ACC_A, acc_c, start(0.5, "c"), finish(10.0, "c"), late]  # free 10 s, a overdue
    assert MaxDelayHeld().check(freed_too_long).status == "invalid"
    cut = ev(1.0, "net.partition", node="sim", actor="net", islands=[["w1"], ["q", "gw"]])
    heal = ev(19.8, "net.heal", node="sim", actor="net")
    assert MaxDelayHeld().check([W1_UP, ACC_A, cut, heal, late]).status == "valid"  # it could not be reached
    killed = {"time": 1.0, "node": "chaos", "actor": "nemesis", "kind": "nemesis.kill", "fields": {"node": "w1"}}
    back = dict(W1_UP, time=19.5)
    assert MaxDelayHeld().check([W1_UP, ACC_A, killed, back, late]).status == "valid"  # dead until it came back
    q_down = {"time": 1.0, "node": "chaos", "actor": "nemesis", "kind": "nemesis.kill", "fields": {"node": "q"}}
    q_up = ev(19.5, "workload.queue_started", incarnation="i2", restored=1, queued=1)
    assert MaxDelayHeld().check([W1_UP, ACC_A, q_down, q_up, late]).status == "valid"  # no queue to dispatch
    sh_worker = dict(W1_UP, fields={**W1_UP["fields"], "types": ["sh"]})
    assert MaxDelayHeld().check([sh_worker, ACC_A, late]).status == "valid"  # it cannot run a py task
    held = ev(0.5, "workload.dispatched", task="c", worker="w1/worker", type="py")  # on its way there, never started
    lapsed = ev(19.0, "workload.lease_lapsed", task="c", attempts=1)
    assert MaxDelayHeld().check([W1_UP, ACC_A, acc_c, held, lapsed, late]).status == "valid"  # its slot was taken
    requeued = ev(2.0, "workload.accepted", task="c", type="py", max_delay=600.0, enqueued_at=0.0, restored=True,
                  state="queued")  # a restarted queue says c waits: w1 holds nothing from then on
    assert MaxDelayHeld().check([W1_UP, ACC_A, acc_c, held, requeued, late]).status == "invalid"
