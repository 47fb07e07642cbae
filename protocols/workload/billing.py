"""Metering to money: per tenant and billing period, by a stated rule (pure, exact arithmetic).

How this works
--------------
Source: ``shared/seeds/003_1de75d49b2f91a9e.txt`` ("a monitoring service ... can
track how long the virtual server is utilized ... and can charge the user for the
appropriate amount of usage"; claims on billing per period with a minimum).

The rule, for one task (:meth:`Billing.task_charge`):

* **dedicated time** is the time the worker's resource was given to the task,
  as metered by the worker for the attempt that produced the result (a lost or
  superseded attempt is never billed: only the queue's accepted result reaches
  billing, and a task is billed once however often it is reported);
* it is rounded **up** to the billing ``increment`` and raised to the per-task
  ``minimum``: ``billed = max(minimum, ceil(metered / increment) * increment)``;
* ``amount = billed * rate(resource, priority)``; rates are per second, per
  resource type and per priority (``rates[resource][priority]``, with ``"*"``
  as the fallback of either key).

Code use: a task that runs code another tenant published (``code_owner``) at a
``code_price`` costs the user that price per use and credits the publisher
(a negative line on the publisher's statement). Retained failures: a failure
kept for retry or retrieval costs ``storage_rate`` per MiB per hour retained,
split over the periods it spans (still retained: up to the statement's ``now``).

Time is kept in integer microseconds and money in :class:`~decimal.Decimal`
(each line rounded half-up to ``quantum``), so ``0.3 s`` in increments of
``0.1 s`` is ``0.3 s``, not ``0.4``. A task's period is the one its result was
accepted in. :meth:`Billing.statement` lists a tenant's lines for one period
and their total; the tables grow with usage and are meant to be closed per
period (:meth:`Billing.close_before` drops periods already invoiced).
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import attrs

from protocols.core import Effect, Emit, Persist, Send
from transport.codec import message

__all__ = ["Billing", "BillingService", "Line", "Statement", "StatementReply", "StatementRequest", "Usage",
           "UsageAck"]

US = 1_000_000
MIB = 1024 * 1024


def _us(seconds: float) -> int:
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"a time must be a finite number >= 0, got {seconds!r}")
    return int(round(seconds * US))


@attrs.frozen
class Line:
    kind: str  # "task" | "code-use" | "code-credit" | "storage"
    task: str
    detail: str
    quantity: Decimal  # billed seconds, uses, or MiB-hours
    amount: Decimal


@attrs.frozen
class Statement:
    tenant: str
    period: int
    start: float
    end: float
    lines: tuple
    total: Decimal

    def as_dict(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "period": self.period, "start": self.start, "end": self.end,
                "total": str(self.total),
                "lines": [{"kind": x.kind, "task": x.task, "detail": x.detail, "quantity": str(x.quantity),
                           "amount": str(x.amount)} for x in self.lines]}


class Billing:
    def __init__(self, *, increment: float = 0.1, minimum: float = 1.0, period: float = 3600.0,
                 rates: dict[str, dict[str, str]] | None = None, storage_rate: str = "0",
                 quantum: str = "0.000001") -> None:
        self.increment_us = _us(increment)
        self.minimum_us = _us(minimum)
        self.period_us = _us(period)
        if self.increment_us <= 0 or self.period_us <= 0:
            raise ValueError(f"Billing: increment and period must be > 0 (got {increment!r}, {period!r})")
        self.period = period
        self.rates = {str(r): {str(p): Decimal(str(v)) for p, v in by_prio.items()}
                      for r, by_prio in (rates or {"*": {"*": "0.0001"}}).items()}
        for r, by_prio in self.rates.items():
            for p, v in by_prio.items():
                if v < 0:
                    raise ValueError(f"Billing: rate for resource {r!r} priority {p!r} is negative ({v})")
        self.storage_rate = Decimal(str(storage_rate))
        self.quantum = Decimal(quantum)
        self._lines: dict[tuple[str, int], list[Line]] = {}
        self._billed: set[str] = set()
        self._retained: dict[str, tuple[str, int, int, int | None]] = {}  # task -> (tenant, bytes, start, end)
        self.counters = {"tasks": 0, "rebilled_refused": 0, "retentions": 0}

    # ---------------------------------------------------------------- the rule

    def rate(self, resource: str, priority: int) -> Decimal:
        for r in (resource, "*"):
            by_prio = self.rates.get(r)
            if by_prio is None:
                continue
            for p in (str(priority), "*"):
                if p in by_prio:
                    return by_prio[p]
        raise KeyError(f"no rate for resource {resource!r} at priority {priority} (and no '*' fallback)")

    def billed_us(self, metered: float) -> int:
        m = _us(metered)
        rounded = -(-m // self.increment_us) * self.increment_us
        return max(self.minimum_us, rounded)

    def task_charge(self, metered: float, resource: str, priority: int) -> tuple[Decimal, Decimal]:
        """(billed seconds, amount) of one task by the rule."""
        billed = self.billed_us(metered)
        secs = Decimal(billed) / US
        return secs, self._q(secs * self.rate(resource, priority))

    def _q(self, x: Decimal) -> Decimal:
        return x.quantize(self.quantum, rounding=ROUND_HALF_UP)

    def period_of(self, at: float) -> int:
        return _us(at) // self.period_us

    # ---------------------------------------------------------------- recording usage

    def record_task(self, tenant: str, task_id: str, metered: float, resource: str, priority: int, at: float,
                    code_owner: str = "", code_price: str = "0", run: str = "") -> bool:
        """Bill the attempt (``run``) that produced ``task_id``'s result; False (and nothing billed) if that
        result was billed already. A retried task's new result (another run) is billed on its own."""
        key = f"{task_id}@{run}"
        if key in self._billed:
            self.counters["rebilled_refused"] += 1
            return False
        secs, amount = self.task_charge(metered, resource, priority)
        p = self.period_of(at)
        self._billed.add(key)
        self.counters["tasks"] += 1
        self._lines.setdefault((tenant, p), []).append(
            Line("task", task_id, f"{resource} priority {priority}: metered {metered:.6f} s", secs, amount))
        price = Decimal(str(code_price))
        if code_owner and code_owner != tenant and price > 0:
            self._lines[(tenant, p)].append(Line("code-use", task_id, f"code of {code_owner}", Decimal(1),
                                                 self._q(price)))
            self._lines.setdefault((code_owner, p), []).append(
                Line("code-credit", task_id, f"used by {tenant}", Decimal(1), -self._q(price)))
        return True

    def retain(self, tenant: str, task_id: str, size: int, start: float) -> None:
        """A failure of ``size`` bytes is retained from ``start`` (storage charged until :meth:`release`)."""
        if task_id not in self._retained:
            self._retained[task_id] = (tenant, max(0, int(size)), _us(start), None)
            self.counters["retentions"] += 1

    def release(self, task_id: str, end: float) -> None:
        r = self._retained.get(task_id)
        if r is not None and r[3] is None:
            self._retained[task_id] = (r[0], r[1], r[2], max(r[2], _us(end)))

    # ---------------------------------------------------------------- statements

    def statement(self, tenant: str, period: int, now: float | None = None) -> Statement:
        lines = list(self._lines.get((tenant, period), []))
        p0, p1 = period * self.period_us, (period + 1) * self.period_us
        cap = p1 if now is None else min(p1, _us(now))
        for task_id, (t, size, start, end) in sorted(self._retained.items()):
            if t != tenant:
                continue
            a, b = max(start, p0), min(end if end is not None else cap, cap)
            if b <= a or size == 0:
                continue
            mib_hours = Decimal(size) / MIB * Decimal(b - a) / (3600 * US)
            lines.append(Line("storage", task_id, f"{size} bytes retained {Decimal(b - a) / US} s",
                              mib_hours.quantize(Decimal("0.000001")), self._q(mib_hours * self.storage_rate)))
        total = sum((x.amount for x in lines), Decimal(0))
        return Statement(tenant, period, p0 / US, p1 / US, tuple(lines), total)

    def tenants(self) -> list[str]:
        return sorted({t for t, _ in self._lines} | {r[0] for r in self._retained.values()})

    def close_before(self, period: int) -> None:
        """Forget the lines of periods before ``period`` (invoiced) and retentions ended before it."""
        for k in [k for k in self._lines if k[1] < period]:
            del self._lines[k]
        start = period * self.period_us
        for tid in [tid for tid, r in self._retained.items() if r[3] is not None and r[3] <= start]:
            del self._retained[tid]


# --------------------------------------------------------------------------
# The billing service: usage in (from the queue), statements out
# --------------------------------------------------------------------------



@message("workload.Usage")
class Usage:
    """The queue's report of an accepted result: the attempt that produced it, and nothing else, is billed."""

    task_id: str
    tenant: str
    metered: float
    resource: str
    priority: int
    at: float
    ok: bool = True
    size: int = 0  # bytes retained with a failure (code and data kept for retry)
    code_owner: str = ""
    code_price: str = "0"
    run: str = ""  # the lease of the attempt whose result was kept: a retry's run is billed on its own


_USAGE_FIELDS = ("task_id", "tenant", "metered", "resource", "priority", "at", "ok", "size", "code_owner",
                 "code_price", "run")


@message("workload.UsageAck")
class UsageAck:
    task_id: str


@message("workload.StatementRequest")
class StatementRequest:
    tenant: str
    period: int = -1  # -1: the current period


@message("workload.StatementReply")
class StatementReply:
    statement: dict


class BillingService:
    """:class:`Billing` as a state machine: ``Usage`` -> one ``workload.billed`` event per result (a repeat
    is acknowledged and not billed again); a failed task's retained code and data are charged for storage
    until ``failure_ttl`` after it ended (the retention rule); ``StatementRequest`` -> ``StatementReply``.

    Durable: each billed result is a ``Persist`` before its ``UsageAck`` (the host syncs before the answer
    leaves), and a restarted service is built with ``durable=`` them, so it neither forgets a charge nor
    bills a result reported again after its restart."""

    tick_interval = None

    def __init__(self, increment: float = 0.1, minimum: float = 1.0, period: float = 3600.0,
                 rates: dict[str, dict[str, str]] | None = None, storage_rate: str = "0",
                 failure_ttl: float = 86_400.0, durable: dict | None = None) -> None:
        self.billing = Billing(increment=increment, minimum=minimum, period=period, rates=rates,
                               storage_rate=storage_rate)
        self.failure_ttl = failure_ttl
        self.increment, self.minimum = increment, minimum
        records = [r for k, r in (durable or {}).items() if k.startswith("bill/") and isinstance(r, dict)]
        for r in sorted(records, key=lambda r: r.get("at", 0.0)):
            self._apply(Usage(**{k: r[k] for k in r if k in _USAGE_FIELDS}))

    def _apply(self, u: "Usage") -> bool:
        fresh = self.billing.record_task(u.tenant, u.task_id, u.metered, u.resource, u.priority, u.at,
                                         u.code_owner, u.code_price, u.run)
        if fresh and not u.ok and u.size:
            self.billing.retain(u.tenant, u.task_id, u.size, u.at)
            self.billing.release(u.task_id, u.at + self.failure_ttl)
        return fresh

    def tick(self, now: float) -> list[Effect]:
        return []

    def handle(self, msg: object, sender: str, now: float) -> list[Effect]:
        if isinstance(msg, Usage):
            out: list[Effect] = []
            try:
                fresh = self._apply(msg)
            except (KeyError, ValueError) as e:
                return [Emit("workload.billing_refused", {"task": msg.task_id, "error": str(e)}),
                        Send(sender, UsageAck(msg.task_id))]
            if fresh:
                secs, amount = self.billing.task_charge(msg.metered, msg.resource, msg.priority)
                out.append(Persist(f"bill/{msg.task_id}@{msg.run}", {f: getattr(msg, f) for f in _USAGE_FIELDS}))
                out.append(Emit("workload.billed", {
                    "task": msg.task_id, "lease": msg.run, "tenant": msg.tenant, "metered": msg.metered,
                    "billed": float(secs),
                    "amount": str(amount), "increment": self.increment, "minimum": self.minimum,
                    "rate": str(self.billing.rate(msg.resource, msg.priority)), "period": self.billing.period_of(msg.at)}))
            out.append(Send(sender, UsageAck(msg.task_id)))
            return out
        if isinstance(msg, StatementRequest):
            period = msg.period if msg.period >= 0 else self.billing.period_of(now)
            st = self.billing.statement(msg.tenant, period, now=now)
            return [Send(sender, StatementReply(st.as_dict()))]
        return []
