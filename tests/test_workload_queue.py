"""The workload queue's dispatch order, leases and exactly-once results (protocols/workload/queue.py).

Source: shared/seeds/003_1de75d49b2f91a9e.txt (FIG. 2 workload queue 218; "higher priority
first, but a task that has waited its maximum delay goes to the top"); issue 20, deliverable 2.
Unit tests name the rule they check; a hypothesis state machine drives the queue and a naive
reference model (a list scanned on every pick) side by side and compares every decision.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from protocols.workload.queue import DONE, LEASED, QUEUED, QueueFull, Task, TaskQueue


def task(tid, tenant="a", priority=0, max_delay=1000.0, at=0.0):
    return Task(id=tid, tenant=tenant, priority=priority, max_delay=max_delay, enqueued_at=at, seq=-1)


def drain(q, now=0.0, n=None):
    out = []
    i = 0
    while n is None or len(out) < n:
        t = q.dispatch("w", f"L{i}", now)
        i += 1
        if t is None:
            break
        out.append(t.id)
    return out


# ---------------------------------------------------------------- priority

def test_higher_priority_goes_first_then_arrival_order():
    q = TaskQueue("py")
    for tid, p in [("lo1", 0), ("hi1", 5), ("lo2", 0), ("mid", 3), ("hi2", 5)]:
        q.add(task(tid, priority=p))
    assert drain(q) == ["hi1", "hi2", "mid", "lo1", "lo2"]


# ---------------------------------------------------------------- aging

def test_a_task_past_its_maximum_delay_goes_to_the_top():
    q = TaskQueue("py")
    q.add(task("old-low", priority=0, max_delay=10.0, at=0.0))
    for i in range(5):
        q.add(task(f"hi{i}", priority=9, max_delay=100.0, at=1.0))
    assert drain(q, now=5.0, n=2) == ["hi0", "hi1"]  # not yet overdue: priority rules
    assert drain(q, now=10.0, n=1) == ["old-low"]  # its deadline came: the top, over priority 9
    assert q.counters["overdue_dispatches"] == 1


def test_overdue_tasks_go_in_the_order_their_deadlines_passed():
    q = TaskQueue("py")
    q.add(task("late-deadline", max_delay=50.0, at=0.0))     # deadline 50
    q.add(task("early-deadline", max_delay=5.0, at=10.0))    # deadline 15
    q.add(task("hi", priority=9, max_delay=500.0, at=10.0))
    q.add(task("mid-deadline", priority=3, max_delay=20.0, at=0.0))  # deadline 20
    assert drain(q, now=60.0) == ["early-deadline", "mid-deadline", "late-deadline", "hi"]


def test_a_requeued_task_keeps_its_age():
    q = TaskQueue("py", lease_ttl=5.0)
    q.add(task("t", priority=0, max_delay=8.0, at=0.0))
    assert q.dispatch("w1", "L1", 1.0).id == "t"
    q.add(task("hi", priority=9, max_delay=100.0, at=2.0))
    assert [t.id for t in q.expire(6.5)] == ["t"]  # lease lapsed at 6.0
    got = q.get("t")
    assert got.state == QUEUED and got.attempts == 1 and got.enqueued_at == 0.0
    assert drain(q, now=7.0, n=1) == ["hi"]  # not overdue yet (deadline 8)
    q.add(task("hi2", priority=9, max_delay=100.0, at=7.5))
    assert drain(q, now=8.0, n=1) == ["t"]  # overdue now, over priority 9
    assert q.get("t").attempts == 2


# ---------------------------------------------------------------- fairness

def test_one_tenants_flood_does_not_starve_another():
    q = TaskQueue("py")
    for i in range(100):
        q.add(task(f"flood{i}", tenant="big"))
    q.add(task("small0", tenant="small"))
    q.add(task("small1", tenant="small"))
    order = drain(q, n=6)
    assert order[:4] == ["flood0", "small0", "flood1", "small1"], order


def test_weighted_fairness_gives_shares_by_weight():
    q = TaskQueue("py", weights={"gold": 3.0, "basic": 1.0})
    for i in range(40):
        q.add(task(f"g{i}", tenant="gold"))
        q.add(task(f"b{i}", tenant="basic"))
    first = drain(q, n=20)
    gold = sum(1 for t in first if t.startswith("g"))
    assert gold == 15, first  # 3 : 1
    assert [t for t in first if t.startswith("g")] == [f"g{i}" for i in range(15)]  # arrival order per tenant


def test_an_idle_tenant_gets_no_burst_of_credit_when_it_returns():
    q = TaskQueue("py")
    for i in range(10):
        q.add(task(f"a{i}", tenant="a"))
    assert len(drain(q, n=10)) == 10  # a alone: its virtual time runs to 10
    for i in range(6):
        q.add(task(f"b{i}", tenant="b"))  # b was idle; it starts at the level's clock, not at 0
        q.add(task(f"a{10 + i}", tenant="a"))
    order = drain(q, n=6)
    assert sum(1 for t in order if t.startswith("b")) == 3, order


def test_fairness_is_per_priority_and_priority_beats_it():
    q = TaskQueue("py")
    for i in range(3):
        q.add(task(f"a-hi{i}", tenant="a", priority=5))
    q.add(task("b-lo", tenant="b", priority=0))
    assert drain(q) == ["a-hi0", "a-hi1", "a-hi2", "b-lo"]


# ---------------------------------------------------------------- leases and results

def test_expired_lease_makes_the_task_available_again_with_its_attempt_count():
    q = TaskQueue("py", lease_ttl=2.0, max_attempts=3)
    q.add(task("t"))
    t = q.dispatch("w1", "L1", 0.0)
    assert t.state == LEASED and t.attempts == 1 and q.next_lease_expiry() == 2.0
    assert q.renew("t", "L1", 1.5)  # renewed to 3.5
    assert q.expire(3.0) == []
    assert not q.renew("t", "stale", 3.0)
    assert [x.id for x in q.expire(4.0)] == ["t"]
    assert not q.renew("t", "L1", 4.0)  # the lapsed lease cannot come back
    assert q.dispatch("w2", "L2", 4.0).attempts == 2
    q.expire(10.0)
    assert q.dispatch("w3", "L3", 10.0).attempts == 3
    lost = q.expire(20.0)
    assert lost[0].state == DONE and lost[0].outcome["lost"] and q.counters["lost"] == 1  # out of attempts


def test_first_result_is_kept_later_ones_discarded_and_counted():
    q = TaskQueue("py", lease_ttl=2.0)
    q.add(task("t"))
    q.dispatch("w1", "L1", 0.0)
    q.expire(3.0)
    q.dispatch("w2", "L2", 3.0)
    assert q.complete("t", {"ok": True, "value": 2, "attempt": 2}, 4.0) == "accepted"
    assert q.complete("t", {"ok": True, "value": 1, "attempt": 1}, 4.5) == "duplicate"
    assert q.complete("t", {"ok": False}, 5.0) == "duplicate"
    assert q.get("t").outcome["value"] == 2 and q.counters == {**q.counters, "completed": 1, "duplicates": 2}
    assert q.complete("nope", {"ok": True}, 5.0) == "unknown"
    assert drain(q, now=6.0) == []


def test_a_late_result_of_a_lapsed_lease_ends_a_requeued_task():
    q = TaskQueue("py", lease_ttl=2.0)
    q.add(task("t"))
    q.dispatch("w1", "L1", 0.0)
    q.expire(3.0)
    assert q.get("t").state == QUEUED
    assert q.complete("t", {"ok": True}, 3.5) == "accepted"
    assert drain(q, now=4.0) == [] and q.queued() == 0


def test_bounds_refuse_clearly_and_known_ids_are_not_added_twice():
    q = TaskQueue("py", max_tasks=2, max_per_tenant=None)
    assert q.add(task("a")) and q.add(task("b"))
    assert not q.add(task("a"))
    with pytest.raises(QueueFull, match="holds 2 tasks"):
        q.add(task("c"))
    q2 = TaskQueue("py", max_per_tenant=1)
    q2.add(task("x", tenant="t1"))
    with pytest.raises(QueueFull, match="tenant 't1'"):
        q2.add(task("y", tenant="t1"))
    q2.add(task("z", tenant="t2"))
    q3 = TaskQueue("py", max_done=2, done_ttl=10.0)
    for i in range(3):
        q3.add(task(f"d{i}"))
        q3.dispatch("w", f"L{i}", 0.0)
        q3.complete(f"d{i}", {"ok": True}, float(i))
    assert list(q3.done) == ["d1", "d2"]
    assert q3.forget_done(11.5) == ["d1"]


def test_retry_requeues_an_ended_task_with_a_fresh_deadline():
    q = TaskQueue("py")
    q.add(task("t", tenant="a", max_delay=5.0))
    q.dispatch("w", "L1", 0.0)
    q.complete("t", {"ok": False, "error": "boom"}, 1.0)
    assert q.requeue_done("t", 2.0, tenant="b") is None  # not b's task
    t = q.requeue_done("t", 2.0, tenant="a")
    assert t.state == QUEUED and t.enqueued_at == 2.0 and t.attempts == 0
    assert q.dispatch("w", "L2", 3.0).id == "t"


def test_restore_rebuilds_order_and_keeps_leases_until_a_fresh_ttl():
    q = TaskQueue("py", lease_ttl=4.0)
    for i in range(4):
        q.add(task(f"t{i}", tenant="ab"[i % 2], priority=i % 2))
    q.dispatch("w", "L1", 0.0)  # t1 (priority 1)
    q.dispatch("w", "L2", 0.0)
    q.complete("t3", {"ok": True}, 1.0)
    rows = [t.row() for t in list(q.tasks.values()) + list(q.done.values())]
    r = TaskQueue("py", lease_ttl=4.0)
    r.restore([Task.from_row(x) for x in rows], now=100.0)
    assert {t.id: t.state for t in r.tasks.values()} == {"t0": QUEUED, "t1": LEASED, "t2": QUEUED}
    assert r.get("t3").state == DONE
    assert r.next_lease_expiry() == 104.0 and r.renew("t1", "L1", 101.0)
    assert r.complete("t3", {"ok": True}, 101.0) == "duplicate"
    assert drain(r, now=0.5) == ["t0", "t2"]
    assert r.next_seq == 4


# ---------------------------------------------------------------- the property test

class RefQueue:
    """The dispatch rule written as plainly as possible: scan every queued task on each pick."""

    def __init__(self, lease_ttl, max_attempts, weights):
        self.lease_ttl, self.max_attempts, self.weights = lease_ttl, max_attempts, weights
        self.t: dict[str, dict] = {}
        self.vt: dict[tuple[int, str], float] = {}
        self.vclock: dict[int, float] = {}
        self.seq = 0

    def _activate(self, x):
        if not any(y["state"] == QUEUED and y["prio"] == x["prio"] and y["tenant"] == x["tenant"]
                   for y in self.t.values() if y is not x):
            k = (x["prio"], x["tenant"])
            self.vt[k] = max(self.vt.get(k, 0.0), self.vclock.get(x["prio"], 0.0))
        x["state"] = QUEUED

    def add(self, tid, tenant, prio, max_delay, now):
        if tid in self.t:
            return False
        x = {"tenant": tenant, "prio": prio, "deadline": now + max_delay, "seq": self.seq, "state": None,
             "attempts": 0, "lease": None, "expires": 0.0, "results": 0}
        self.seq += 1
        self.t[tid] = x
        self._activate(x)
        return True

    def pick(self, now):
        queued = [(tid, x) for tid, x in self.t.items() if x["state"] == QUEUED]
        if not queued:
            return None
        overdue = [(x["deadline"], x["seq"], tid) for tid, x in queued if x["deadline"] <= now]
        if overdue:
            return min(overdue)[2]
        top = max(x["prio"] for _, x in queued)
        heads = {}
        for tid, x in queued:
            if x["prio"] == top and (x["tenant"] not in heads or x["seq"] < self.t[heads[x["tenant"]]]["seq"]):
                heads[x["tenant"]] = tid
        return min(heads.values(), key=lambda tid: (self.vt[(top, self.t[tid]["tenant"])], self.t[tid]["seq"]))

    def dispatch(self, lease, now):
        tid = self.pick(now)
        if tid is None:
            return None
        x = self.t[tid]
        k = (x["prio"], x["tenant"])
        start = self.vt[k]
        self.vclock[x["prio"]] = max(self.vclock.get(x["prio"], 0.0), start)
        self.vt[k] = start + 1.0 / self.weights.get(x["tenant"], 1.0)
        x.update(state=LEASED, lease=lease, expires=now + self.lease_ttl)
        x["attempts"] += 1
        return tid

    def renew(self, tid, lease, now):
        x = self.t.get(tid)
        if x is None or x["state"] != LEASED or x["lease"] != lease or x["expires"] < now:
            return False
        x["expires"] = now + self.lease_ttl
        return True

    def expire(self, now):
        changed = set()
        for tid, x in sorted(self.t.items(), key=lambda kv: (kv[1]["expires"], kv[0])):
            if x["state"] == LEASED and x["expires"] < now:
                x["lease"] = None
                if x["attempts"] >= self.max_attempts:
                    x["state"] = DONE
                else:
                    self._activate(x)
                changed.add(tid)
        return changed

    def complete(self, tid, now):
        x = self.t.get(tid)
        if x is None:
            return "unknown"
        if x["state"] == DONE:
            return "duplicate"
        x["state"] = DONE
        return "accepted"


TENANTS = ["a", "b", "c"]


class QueueVsReference(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        weights = {"a": 2.0, "b": 1.0}
        self.q = TaskQueue("py", lease_ttl=3.0, max_attempts=3, weights=weights)
        self.ref = RefQueue(3.0, 3, weights)
        self.now = 0.0
        self.n = 0
        self.leases: dict[str, str] = {}
        self.accepted: dict[str, int] = {}

    @rule(tenant=st.sampled_from(TENANTS), prio=st.integers(0, 2), max_delay=st.sampled_from([2.0, 5.0, 50.0]))
    def add(self, tenant, prio, max_delay):
        tid = f"t{self.n}"
        self.n += 1
        assert self.q.add(Task(tid, tenant, prio, max_delay, self.now, -1)) == \
            self.ref.add(tid, tenant, prio, max_delay, self.now)

    @rule(tenant=st.sampled_from(TENANTS), prio=st.integers(0, 2), n=st.integers(2, 6),
          max_delay=st.sampled_from([2.0, 50.0]))
    def burst(self, tenant, prio, n, max_delay):
        for _ in range(n):
            self.add(tenant, prio, max_delay)

    @rule(n=st.integers(1, 4))
    def dispatch_many(self, n):
        for _ in range(n):
            self.dispatch()

    @rule(dt=st.sampled_from([0.5, 1.0, 2.5]))
    def advance(self, dt):
        self.now += dt

    @rule()
    def dispatch(self):
        lease = f"L{self.n}"
        self.n += 1
        got = self.q.dispatch("w", lease, self.now)
        want = self.ref.dispatch(lease, self.now)
        assert (got.id if got else None) == want
        if want:
            self.leases[want] = lease

    @precondition(lambda self: self.leases)
    @rule(data=st.data())
    def renew(self, data):
        tid = data.draw(st.sampled_from(sorted(self.leases)))
        assert self.q.renew(tid, self.leases[tid], self.now) == self.ref.renew(tid, self.leases[tid], self.now)

    @rule()
    def expire(self):
        assert {t.id for t in self.q.expire(self.now)} == self.ref.expire(self.now)

    @precondition(lambda self: self.n)
    @rule(data=st.data())
    def complete(self, data):
        tid = f"t{data.draw(st.integers(0, self.n))}"
        got = self.q.complete(tid, {"ok": True}, self.now)
        assert got == self.ref.complete(tid, self.now)
        if got == "accepted":
            self.accepted[tid] = self.accepted.get(tid, 0) + 1

    @invariant()
    def every_task_is_in_exactly_one_state_and_ends_once(self):
        for tid, x in self.ref.t.items():
            t = self.q.get(tid)
            assert t is not None, f"{tid} lost"
            assert t.state == x["state"], (tid, t.state, x["state"])
            assert t.attempts == x["attempts"]
            assert (tid in self.q.tasks) != (tid in self.q.done)
        assert all(v == 1 for v in self.accepted.values())
        assert self.q.queued() == sum(1 for x in self.ref.t.values() if x["state"] == QUEUED)


QueueVsReference.TestCase.settings = settings(max_examples=80, stateful_step_count=40, deadline=None,
                                              suppress_health_check=[HealthCheck.too_slow])
test_queue_matches_the_reference_model = QueueVsReference.TestCase


@settings(max_examples=60, deadline=None)
@given(backlogs=st.lists(st.tuples(st.integers(1, 3), st.integers(1, 25)), min_size=2, max_size=5),
       order=st.randoms(use_true_random=False))
def test_weighted_fair_share_bound_while_tenants_are_backlogged(backlogs, order):
    """Start-time fair queuing's bound: while two tenants both have tasks waiting at one priority, their
    weighted service never differs by more than 1/w_a + 1/w_b (one task each), however the arrivals interleave."""
    q = TaskQueue("py", weights={f"t{i}": float(w) for i, (w, _) in enumerate(backlogs)})
    arrivals = [f"t{i}" for i, (_, n) in enumerate(backlogs) for _ in range(n)]
    order.shuffle(arrivals)
    for k, tenant in enumerate(arrivals):
        q.add(task(f"{tenant}-{k}", tenant=tenant))
    left = {f"t{i}": n for i, (_, n) in enumerate(backlogs)}
    served = dict.fromkeys(left, 0)
    w = {f"t{i}": float(wt) for i, (wt, _) in enumerate(backlogs)}
    while True:
        t = q.dispatch("w", "L", 0.0)
        if t is None:
            break
        served[t.tenant] += 1
        left[t.tenant] -= 1
        busy = [x for x in left if left[x] > 0]
        for a in busy:
            for b in busy:
                gap = served[a] / w[a] - served[b] / w[b]
                assert gap <= 1 / w[a] + 1 / w[b] + 1e-9, (served, w)
    assert all(v == 0 for v in left.values())
