"""Pure policies of the workflow protocol: directives, wait prediction, leases, the adaptive limit, history.

How this works
--------------
Everything a resource controller *decides by arithmetic* lives here as small
functions (and one bounded record, :class:`History`), each with its own tests
(``tests/test_workflow_policy.py``); the state machines call them and emit the
outcome. Nothing here keeps time or draws random numbers.

Directive by predicted wait (seed doc, FIG. 4 block 408): a short wait keeps
the server **pending** (fully on, pinging), a medium one **parks** it (reduced
power, pinging less), a long one makes it **dormant** (powered off, woken by
the controller). :func:`directive_for` compares the wait with two thresholds
(:class:`Thresholds`, defaults 20 s and 120 s).

Wait prediction (:func:`predict_wait`), from queue position, the current limit
and the mean stage duration the history has seen (Little's law): with ``limit``
slots each freeing on average once per ``mean`` seconds, slots free at a rate
of ``limit / mean``; a server with ``ahead`` servers in front of it and
``free`` slots open now needs the ``(ahead - free + 1)``-th release, so it
waits about ``(ahead - free + 1) * mean / limit`` seconds (0 if a slot is free
for it now).

Leases: the controller counts a lease from its last renewal
(:func:`lease_expires_at`); the holder counts conservatively from the stamp of
the message whose answer confirmed it (the request or renewal was sent
*before* the controller started its clock), less a margin for clock-rate
drift (:func:`holder_deadline`), and renews ``renewals_per_ttl`` times per
ttl (:func:`renew_interval`). So a holder always stops using a resource before
the controller reuses its slot.

Adaptive limit: **AIMD** (additive increase, multiplicative decrease; the
shape of Netflix concurrency-limits' ``AIMDLimit``: +1 on success, x0.9 on a
drop), evaluated once per window (default 5 s) on that window's metrics
(:func:`aimd_step`, constants in :class:`AimdParams`):

* **decrease** (``limit = max(min_limit, floor(limit * 0.9))``) when the
  metrics sag, but only once the previous limit is what the resource sees
  (holders have come down to it: ``settled``; like TCP reacting once per round
  trip, so holders admitted under an older, higher limit do not drive the limit
  down again and again): error rate > 0.05 (failed stage outcomes from releases, or the
  resource report's error rate), latency ratio > 1.25 (the resource's reported
  time per unit of work over its nominal one; if it reports no nominal, over
  the best it has reported, like Vegas' base RTT), or the offered load now
  (``bandwidth_used``: demanded / available bandwidth, above 1.0 when the
  resource is over capacity; the highest of the window's last two reports) > 1.0 -
  for that last one the resource has measured its capacity ``C`` (in flight /
  load), so the limit goes down to it, by at least one and no more than one
  backoff: ``limit = max(min_limit, floor(limit * 0.9), min(limit - 1, floor(C)))``;
  or the resource's CPU (``cpu``, the fraction of its processing power in use, from a
  monitor that measures it; the highest of the window's last two reports) > 0.95;
* **increase** (``limit = min(max_limit, limit + 1)``) when the controller was
  at the limit through the window (every slot busy and servers waiting, in at
  least 80% of the window's ticks) and the resource has headroom for one more
  holder *now*: ``limit + 1 <= C`` where the resource measured its capacity
  ``C``, else ``load * (limit + 1) / limit <= 1.0`` on the highest load of the
  window's last two reports (not the window's mean, which lags a ramp and let
  the limit overshoot), latency ratio <= 1.1, CPU (if measured) <= 0.85 and no errors;
* otherwise hold. Without resource reports there is no headroom evidence, so
  the limit only ever decreases (on errors).

History (:class:`History`): per-stage durations and outcomes, bounded
(default 256 per stage); the mean feeds wait prediction, the median is the
predicted duration against which :func:`delivery_ratio` judges whether the
resource delivers well below its predicted availability (completions in a
window against ``average holders * window / predicted duration``; the
controller flags a ratio below 0.5 and clears the flag above 0.8).
"""

from __future__ import annotations

import math
from collections import deque

import attrs

from protocols.workflow.messages import Directive

__all__ = [
    "AimdParams",
    "History",
    "IllegalTransition",
    "Thresholds",
    "WindowMetrics",
    "aimd_step",
    "check_transition",
    "delivery_ratio",
    "directive_for",
    "holder_deadline",
    "lease_expires_at",
    "predict_wait",
    "renew_interval",
]


# -- transitions ----------------------------------------------------------------------


class IllegalTransition(RuntimeError):
    """A state machine tried a transition its table forbids: our bug, raised loudly."""


def check_transition(table: dict, old: object, new: object, machine: str = "machine") -> None:
    """Raise :class:`IllegalTransition` unless ``table[old]`` allows ``new``."""
    if new not in table.get(old, ()):
        raise IllegalTransition(f"{machine}: illegal transition {getattr(old, 'value', old)} -> "
                                f"{getattr(new, 'value', new)}")


# -- directives -----------------------------------------------------------------------


def _thresholds_ok(inst: Thresholds, _a: object, _v: object) -> None:
    if not 0.0 <= inst.pending_max <= inst.parking_max:
        raise ValueError(f"need 0 <= pending_max <= parking_max, got {inst.pending_max} and {inst.parking_max}")


@attrs.frozen
class Thresholds:
    """Predicted waits up to ``pending_max`` -> pending; up to ``parking_max`` -> parking; beyond -> dormant."""

    pending_max: float = 20.0
    parking_max: float = attrs.field(default=120.0, validator=_thresholds_ok)


def directive_for(wait: float, thresholds: Thresholds = Thresholds()) -> Directive:
    """The waiting state for a predicted wait of ``wait`` seconds."""
    if wait <= thresholds.pending_max:
        return Directive.PENDING
    if wait <= thresholds.parking_max:
        return Directive.PARKING
    return Directive.DORMANT


# -- wait prediction ------------------------------------------------------------------


def predict_wait(ahead: int, limit: int, busy: int, mean_duration: float) -> float:
    """Seconds until a slot is free for a server with ``ahead`` servers in front of it.

    ``busy`` slots (holders and reservations) of ``limit`` are taken; each slot
    frees on average once per ``mean_duration`` seconds (Little's law). A limit
    of 0 means nothing will be granted: the wait is infinite.
    """
    if ahead < 0 or busy < 0:
        raise ValueError(f"ahead and busy must be >= 0, got {ahead} and {busy}")
    if limit <= 0:
        return math.inf
    free = limit - busy
    if ahead < free:
        return 0.0
    return (ahead - free + 1) * max(mean_duration, 0.0) / limit


# -- leases -----------------------------------------------------------------------------


def lease_expires_at(renewed_at: float, ttl: float) -> float:
    """Controller side: the lease ends ``ttl`` seconds after its grant or last renewal."""
    return renewed_at + ttl


def holder_deadline(confirmed_stamp: float, ttl: float, margin: float = 0.1) -> float:
    """Holder side: stop using the resource by this time (own clock).

    ``confirmed_stamp`` is the holder's clock reading when it sent the request
    or renewal whose answer confirmed the lease; the controller's clock for the
    lease started later than that. ``margin`` (a fraction of ``ttl``) covers
    clock-rate drift between the two.
    """
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin must be in [0, 1), got {margin}")
    return confirmed_stamp + ttl * (1.0 - margin)


def renew_interval(ttl: float, renewals_per_ttl: int = 3) -> float:
    """How often a holder renews: ``renewals_per_ttl`` chances per ttl."""
    if renewals_per_ttl < 1:
        raise ValueError(f"renewals_per_ttl must be >= 1, got {renewals_per_ttl}")
    return ttl / renewals_per_ttl


# -- adaptive limit (AIMD) ----------------------------------------------------------------


@attrs.frozen
class AimdParams:
    """Constants of the AIMD rule (see the module docstring)."""

    backoff: float = 0.9  # multiplicative decrease
    increase: int = 1  # additive increase per window
    min_limit: int = 1
    max_limit: int = 1_000_000
    max_error_rate: float = 0.05  # above: decrease
    max_latency_ratio: float = 1.25  # above: decrease
    max_utilization: float = 1.0  # above: decrease
    headroom_latency_ratio: float = 1.1  # increase only at or below
    headroom_utilization: float = 1.0  # increase only if one more holder keeps use at or below this
    max_cpu: float = 0.95  # the resource's CPU busier than this (a fraction): decrease
    headroom_cpu: float = 0.85  # increase only at or below

    def __attrs_post_init__(self) -> None:
        if not 0.0 < self.backoff < 1.0:
            raise ValueError(f"backoff must be in (0, 1), got {self.backoff}")
        if self.increase < 1 or self.min_limit < 1 or self.max_limit < self.min_limit:
            raise ValueError(f"need increase >= 1 and 1 <= min_limit <= max_limit, got {self}")


@attrs.frozen
class WindowMetrics:
    """What one window saw. ``None``: no evidence of that kind in the window."""

    error_rate: float | None = None
    latency_ratio: float | None = None
    utilization: float | None = None
    at_limit: bool = False
    settled: bool = True  # holders are at or below the limit in force (its effect is what the metrics show)
    recent_utilization: float | None = None  # the highest load of the window's last reports: headroom is judged now
    capacity: float | None = None  # the resource's capacity as it measured it (in flight / load), if it reported
    cpu: float | None = None  # the highest CPU use (a fraction) of the window's last reports that measured it


def aimd_step(limit: int, m: WindowMetrics, p: AimdParams = AimdParams()) -> tuple[int, str | None]:
    """The next limit and the reason it changed (``None``: unchanged).

    Reasons: ``"errors"``, ``"latency"``, ``"bandwidth"``, ``"cpu"`` (decrease),
    ``"headroom"`` (increase), ``"bounds"`` (the limit was outside
    ``[min_limit, max_limit]`` and was clamped).
    """
    clamped = min(max(limit, p.min_limit), p.max_limit)
    if clamped != limit:
        return clamped, "bounds"
    reason = None
    load = m.recent_utilization if m.recent_utilization is not None else m.utilization
    if m.error_rate is not None and m.error_rate > p.max_error_rate:
        reason = "errors"
    elif m.latency_ratio is not None and m.latency_ratio > p.max_latency_ratio:
        reason = "latency"
    elif load is not None and load > p.max_utilization:
        reason = "bandwidth"
    elif m.cpu is not None and m.cpu > p.max_cpu:
        reason = "cpu"
    if reason is not None:
        if not m.settled:
            return limit, None  # the last decrease has not taken effect yet
        if reason == "bandwidth":  # a measured capacity: down to it, by at least one and at most one backoff
            cap = m.capacity if m.capacity is not None else limit / load
            new = max(p.min_limit, math.floor(limit * p.backoff), min(limit - 1, math.floor(cap)))
        else:
            new = max(p.min_limit, math.floor(limit * p.backoff))
        return (new, reason) if new != limit else (limit, None)
    if m.capacity is not None:  # the resource told its capacity: one more holder must fit in it
        room = limit + 1 <= m.capacity * p.headroom_utilization + 1e-9
    else:
        room = load is not None and load * (limit + 1) / limit <= p.headroom_utilization
    if (
        m.at_limit
        and room
        and (m.latency_ratio is None or m.latency_ratio <= p.headroom_latency_ratio)
        and (m.cpu is None or m.cpu <= p.headroom_cpu)
        and not m.error_rate
    ):
        new = min(p.max_limit, limit + p.increase)
        return (new, "headroom") if new != limit else (limit, None)
    return limit, None


# -- history ---------------------------------------------------------------------------------


class History:
    """Per-stage durations and outcomes of one resource, bounded to ``size`` samples per stage."""

    def __init__(self, size: int = 256) -> None:
        if size < 1:
            raise ValueError(f"history size must be >= 1, got {size}")
        self.size = size
        self._durations: dict[str, deque[float]] = {}
        self.outcomes: dict[str, dict[str, int]] = {}
        self._all: deque[float] = deque(maxlen=size)

    def record(self, stage: str, duration: float, outcome: str = "ok") -> None:
        counts = self.outcomes.setdefault(stage, {})
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome == "ok":
            d = self._durations.get(stage)
            if d is None:
                d = self._durations[stage] = deque(maxlen=self.size)
            d.append(duration)
            self._all.append(duration)

    def samples(self, stage: str | None = None) -> int:
        return len(self._all if stage is None else self._durations.get(stage, ()))

    def mean(self, stage: str | None = None, default: float = 0.0) -> float:
        """Mean successful duration of ``stage`` (of every stage if ``None``); ``default`` without samples."""
        d = self._all if stage is None else self._durations.get(stage)
        return sum(d) / len(d) if d else default

    def predicted(self, stage: str | None = None, default: float = 0.0) -> float:
        """The predicted duration: the median of the samples kept; ``default`` without samples."""
        d = self._all if stage is None else self._durations.get(stage)
        if not d:
            return default
        s = sorted(d)
        n = len(s)
        return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2

    def snapshot(self) -> dict:
        """The history as plain data (for a durable record): durations per stage, outcome counts."""
        return {"durations": {k: list(v) for k, v in self._durations.items()},
                "outcomes": {k: dict(v) for k, v in self.outcomes.items()}}

    def restore(self, snap: dict) -> None:
        """Load a :meth:`snapshot` (malformed parts are skipped: the history only feeds predictions)."""
        for stage, ds in (snap.get("durations") or {}).items():
            if isinstance(stage, str) and isinstance(ds, list):
                for d in ds[-self.size:]:
                    if isinstance(d, (int, float)):
                        self.record(stage, float(d), "ok")
        for stage, counts in (snap.get("outcomes") or {}).items():
            if isinstance(stage, str) and isinstance(counts, dict):
                self.outcomes[stage] = {k: v for k, v in counts.items() if isinstance(k, str) and isinstance(v, int)}

    def success_rate(self, stage: str) -> float | None:
        counts = self.outcomes.get(stage)
        if not counts:
            return None
        total = sum(counts.values())
        return counts.get("ok", 0) / total


def delivery_ratio(completions: int, window: float, avg_holders: float, predicted_duration: float,
                   min_expected: float = 5.0) -> float | None:
    """Completions seen in a window over those the history predicts; ``None`` if too few were expected to judge."""
    if window <= 0 or predicted_duration <= 0:
        return None
    expected = avg_holders * window / predicted_duration
    if expected < min_expected:
        return None
    return completions / expected
