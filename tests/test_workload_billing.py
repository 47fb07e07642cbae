"""Billing by the rule (protocols/workload/billing.py; issue 20, deliverable 6).

Per tenant and period: dedicated time rounded up to the increment with a per-task minimum,
rates per resource type and priority, code-use charges, storage of retained failures; only
the attempt that produced the result is billed, once.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.workload.billing import Billing

RATES = {"py": {"0": "0.001", "5": "0.003", "*": "0.002"}, "*": {"*": "0.01"}}


def bill(**kw):
    return Billing(**{"increment": 0.1, "minimum": 1.0, "period": 3600.0, "rates": RATES, **kw})


def test_time_rounds_up_to_the_increment_exactly():
    b = bill(minimum=0.0)
    assert b.task_charge(0.3, "py", 0)[0] == Decimal("0.3")  # not 0.4 (float 0.3 / 0.1 = 2.9999...)
    assert b.task_charge(0.30001, "py", 0)[0] == Decimal("0.4")
    assert b.task_charge(2.0, "py", 0)[0] == Decimal("2")
    assert b.task_charge(0.0, "py", 0)[0] == Decimal("0")


def test_per_task_minimum():
    b = bill()
    assert b.task_charge(0.05, "py", 0) == (Decimal("1"), Decimal("0.001000"))
    assert b.task_charge(1.01, "py", 0) == (Decimal("1.1"), Decimal("0.001100"))


def test_rates_per_resource_type_and_priority_with_fallbacks():
    b = bill()
    assert b.task_charge(10.0, "py", 0)[1] == Decimal("0.010000")
    assert b.task_charge(10.0, "py", 5)[1] == Decimal("0.030000")
    assert b.task_charge(10.0, "py", 3)[1] == Decimal("0.020000")  # py, priority "*"
    assert b.task_charge(10.0, "gpu", 0)[1] == Decimal("0.100000")  # resource "*"
    with pytest.raises(KeyError, match="no rate for resource 'gpu'"):
        Billing(rates={"py": {"0": "1"}}).rate("gpu", 0)
    with pytest.raises(ValueError, match="negative"):
        Billing(rates={"py": {"0": "-1"}})


def test_statement_per_tenant_and_period_bills_each_task_once():
    b = bill()
    assert b.record_task("acme", "t1", 2.25, "py", 0, at=10.0)
    assert b.record_task("acme", "t2", 0.2, "py", 5, at=3599.0)
    assert b.record_task("acme", "t3", 4.0, "py", 0, at=3600.0)  # the next period
    assert b.record_task("zeta", "t4", 1.0, "py", 0, at=20.0)
    assert not b.record_task("acme", "t1", 9.0, "py", 0, at=30.0)  # a second report: never billed again
    s0 = b.statement("acme", 0)
    assert [(x.task, x.quantity, x.amount) for x in s0.lines] == [
        ("t1", Decimal("2.3"), Decimal("0.002300")), ("t2", Decimal("1"), Decimal("0.003000"))]
    assert s0.total == Decimal("0.005300") and (s0.start, s0.end) == (0.0, 3600.0)
    assert b.statement("acme", 1).total == Decimal("0.004000")
    assert b.statement("zeta", 0).total == Decimal("0.001000")
    assert b.counters["rebilled_refused"] == 1 and b.tenants() == ["acme", "zeta"]
    assert s0.as_dict()["lines"][0]["amount"] == "0.002300"


def test_code_use_charges_the_user_and_credits_the_publisher():
    b = bill()
    b.record_task("user", "t1", 1.0, "py", 0, at=5.0, code_owner="pub", code_price="0.05")
    b.record_task("pub", "t2", 1.0, "py", 0, at=6.0, code_owner="pub", code_price="0.05")  # own code: free
    u = b.statement("user", 0)
    assert [x.kind for x in u.lines] == ["task", "code-use"] and u.total == Decimal("0.051000")
    p = b.statement("pub", 0)
    assert [x.kind for x in p.lines] == ["code-credit", "task"] and p.total == Decimal("-0.049000")


def test_storage_of_retained_failures_is_split_over_periods():
    b = bill(storage_rate="2")  # per MiB-hour
    b.retain("acme", "f1", 1024 * 1024, start=1800.0)
    b.release("f1", end=5400.0)
    assert b.statement("acme", 0).total == Decimal("1.000000")  # half an hour in period 0
    assert b.statement("acme", 1).total == Decimal("1.000000")
    b.retain("acme", "f2", 2 * 1024 * 1024, start=7200.0)  # still retained
    assert b.statement("acme", 2, now=9000.0).total == Decimal("2.000000")  # 2 MiB, half an hour
    b.close_before(2)
    assert b.statement("acme", 1).total == Decimal("0")


@settings(max_examples=200, deadline=None)
@given(metered=st.integers(0, 10_000_000), inc=st.sampled_from([1, 1000, 100_000, 250_000]),
       minimum=st.sampled_from([0, 1_000_000, 60_000_000]))
def test_billed_time_is_the_least_multiple_of_the_increment_not_below_metered_or_minimum(metered, inc, minimum):
    b = Billing(increment=inc / 1e6, minimum=minimum / 1e6)
    billed = b.billed_us(metered / 1e6)
    assert billed >= metered and billed >= minimum
    assert billed == minimum or (billed % inc == 0 and billed - metered < inc)


def test_a_retried_tasks_new_result_is_billed_on_its_own():
    b = bill()
    assert b.record_task("acme", "t1", 2.0, "py", 0, at=1.0, run="L1")
    assert not b.record_task("acme", "t1", 2.0, "py", 0, at=1.5, run="L1")  # the same result reported again
    assert b.record_task("acme", "t1", 3.0, "py", 0, at=9.0, run="L7")  # retry(t1): a new run
    assert [x.quantity for x in b.statement("acme", 0).lines] == [Decimal("2"), Decimal("3")]


def test_billing_service_persists_each_charge_and_restarts_without_forgetting_or_rebilling():
    from protocols.core import Emit, Persist, Send
    from protocols.workload.billing import BillingService, StatementReply, StatementRequest, Usage, UsageAck

    b = BillingService(increment=0.1, minimum=0.5, rates={"*": {"*": "1"}}, storage_rate="1")
    u = Usage("t1", "acme", 0.73, "etl", 0, 10.0, True, 0, "", "0", "L1")
    e = b.handle(u, "q/queue", 11.0)
    assert isinstance(e[0], Persist) and isinstance(e[-1], Send) and e[-1].msg == UsageAck("t1")
    durable = {e[0].key: e[0].data}
    failed = Usage("t2", "acme", 0.2, "etl", 0, 20.0, False, 1024 * 1024, "", "0", "L2")
    for x in b.handle(failed, "q/queue", 21.0):
        if isinstance(x, Persist):
            durable[x.key] = x.data
    again = BillingService(increment=0.1, minimum=0.5, rates={"*": {"*": "1"}}, storage_rate="1", durable=durable)
    e = again.handle(u, "q/queue", 30.0)  # the queue reports it again after the restart: acknowledged, not billed
    assert not any(isinstance(x, Emit) and x.kind == "workload.billed" for x in e)
    st = [x.msg for x in again.handle(StatementRequest("acme", 0), "c/x", 3600.0) if isinstance(x, Send)][0]
    assert isinstance(st, StatementReply)
    kinds = [x["kind"] for x in st.statement["lines"]]
    assert kinds == ["task", "task", "storage"] and st.statement["lines"][0]["quantity"] == "0.8"
