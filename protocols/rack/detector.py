"""FIG. 5: a monitor's view of its own rack control - default non-fault, fault on silence or thresholds.

How this works
--------------
:class:`FaultDetector` is the pure decision of routine 500, without timers of
its own (the monitor asks it at each status and at each deadline):

* it starts in the default state, ``non-fault``;
* ``on_status(metrics, now)`` compares each metric with the rules; the first
  rule broken gives the fault kind (rules are checked in order, so put the
  most severe first); no rule broken means ``non-fault``;
* ``on_silence(now)``: no status for ``deadline`` seconds since the last one
  (or since start) means the rack control lost power or its network:
  ``powered-off``; unless the monitor itself ordered a reboot and the silence
  falls in that reboot's window (``rebooting_until``): then ``rebooting``, a
  condition that calls for no action; silence past the window is
  ``powered-off`` again.

Fault kinds and their indicators (colour, pattern), as in the seed document:
one colour for needs-repair, another for needs-troubleshooting, a flashing
indicator for powered-off. Both are configurable.

A rule is ``[metric, op, limit, kind]`` with ``op`` one of ``>``, ``>=``,
``<``, ``<=``: "fault of ``kind`` when ``metric op limit``". A metric missing
from a report is not judged.
"""

from __future__ import annotations

import math
import operator
from typing import Any

__all__ = ["DEFAULT_INDICATORS", "DEFAULT_RULES", "FAULT_KINDS", "NON_FAULT", "POWERED_OFF", "REBOOTING",
           "FaultDetector", "check_rules"]

NON_FAULT = "non-fault"
POWERED_OFF = "powered-off"  # the kind silence raises (on_silence)
REBOOTING = "rebooting"  # silence while a reboot this monitor ordered is under way (never from a rule)
FAULT_KINDS = ("needs-repair", "needs-troubleshooting", POWERED_OFF)
DEFAULT_INDICATORS = {
    NON_FAULT: ["green", "steady"],
    "needs-repair": ["red", "steady"],
    "needs-troubleshooting": ["amber", "steady"],
    "powered-off": ["red", "flashing"],
    REBOOTING: ["amber", "flashing"],
}
DEFAULT_RULES = [
    ["power", "<", 0.5, "powered-off"],  # supply below half: the rack is going down
    ["temp", ">", 85.0, "needs-repair"],  # hardware: overheating
    ["psu_faults", ">", 0, "needs-repair"],
    ["os_errors", ">", 5, "needs-troubleshooting"],  # software: OS, processor, network
    ["cpu", ">", 0.97, "needs-troubleshooting"],
    ["net_loss", ">", 0.2, "needs-troubleshooting"],
]
_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def check_rules(rules: Any) -> list[list]:
    """Validate rules (see module doc); returns them as lists. ValueError names the bad one."""
    if not isinstance(rules, (list, tuple)):
        raise ValueError(f"rules must be a list of [metric, op, limit, kind], got {rules!r}")
    out = []
    for i, r in enumerate(rules):
        if not (isinstance(r, (list, tuple)) and len(r) == 4):
            raise ValueError(f"rule {i}: expected [metric, op, limit, kind], got {r!r}")
        metric, op, limit, kind = r
        if not isinstance(metric, str) or not metric:
            raise ValueError(f"rule {i}: metric must be a non-empty string, got {metric!r}")
        if op not in _OPS:
            raise ValueError(f"rule {i}: op must be one of {sorted(_OPS)}, got {op!r}")
        if limit.__class__ is bool or not isinstance(limit, (int, float)) or not math.isfinite(limit):
            raise ValueError(f"rule {i}: limit must be a finite number, got {limit!r}")
        if kind not in FAULT_KINDS:
            raise ValueError(f"rule {i}: kind must be one of {FAULT_KINDS}, got {kind!r}")
        out.append([metric, op, float(limit), kind])
    return out


class FaultDetector:
    def __init__(self, deadline: float, rules: Any = None, indicators: dict | None = None) -> None:
        if not (isinstance(deadline, (int, float)) and deadline > 0):
            raise ValueError(f"deadline must be > 0 seconds, got {deadline!r}")
        self.deadline = float(deadline)
        self.rules = check_rules(DEFAULT_RULES if rules is None else rules)
        self.indicators = dict(DEFAULT_INDICATORS)
        for k, v in (indicators or {}).items():
            if k not in self.indicators or not (isinstance(v, (list, tuple)) and len(v) == 2):
                raise ValueError(f"indicator {k!r}: expected one of {sorted(self.indicators)} -> [colour, pattern]")
            self.indicators[k] = [str(v[0]), str(v[1])]
        self.state = NON_FAULT  # a fault kind or NON_FAULT
        self.last_status: float | None = None
        self.reason = "default"

    def indicator(self, state: str | None = None) -> list[str]:
        return list(self.indicators[state or self.state])

    def judge(self, metrics: dict) -> tuple[str, str]:
        """(state, reason) for one report's metrics."""
        for metric, op, limit, kind in self.rules:
            v = metrics.get(metric)
            if v is None or v.__class__ is bool or not isinstance(v, (int, float)):
                continue
            if _OPS[op](v, limit):
                return kind, f"{metric} {v:g} {op} {limit:g}"
        return NON_FAULT, "metrics within thresholds"

    def on_status(self, metrics: dict, now: float) -> bool:
        """A status arrived; True if the state changed."""
        self.last_status = now
        state, reason = self.judge(metrics if isinstance(metrics, dict) else {})
        return self._set(state, reason)

    def due(self, started: float) -> float:
        """When silence becomes a fault."""
        return (self.last_status if self.last_status is not None else started) + self.deadline

    def on_silence(self, now: float, started: float, rebooting_until: float | None = None) -> bool:
        """Called at a deadline; True if the state changed (to powered-off, or to rebooting while
        ``now`` is before ``rebooting_until``, the end of a reboot this monitor ordered)."""
        if now < self.due(started):
            return False
        if rebooting_until is not None and now < rebooting_until:
            return self._set(REBOOTING, f"no status for {self.deadline:g} s during a reboot ordered here")
        return self._set(POWERED_OFF, f"no status for {self.deadline:g} s")

    def _set(self, state: str, reason: str) -> bool:
        changed = state != self.state
        self.state, self.reason = state, reason
        return changed
