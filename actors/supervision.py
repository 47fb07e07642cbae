"""Restart policy: exponential backoff within a restart budget (pure, no I/O).

How this works
--------------
When an actor raises, its supervisor (the Node) asks the actor's
:class:`RestartBudget` what to do, passing the crash time:

* crashes counted are those within the last ``window`` seconds, this one
  included; if they exceed ``max_restarts`` the answer is ``None``: give up,
  stop the actor, and tell its watchers (death watch);
* otherwise the answer is the delay before restarting:
  ``min(backoff_max, backoff_min * backoff_factor ** (n - 1))`` for the n-th
  crash in the window. A quiet window resets the backoff.

``RestartPolicy(max_restarts=0)`` never restarts; ``NEVER`` is that policy.
"""

from __future__ import annotations

from collections import deque

import attrs

__all__ = ["NEVER", "RestartBudget", "RestartPolicy"]


def _non_negative(_inst, attribute, value) -> None:
    if value < 0:
        raise ValueError(f"RestartPolicy.{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen
class RestartPolicy:
    max_restarts: int = attrs.field(default=5, validator=_non_negative)
    window: float = attrs.field(default=60.0, validator=_non_negative)
    backoff_min: float = attrs.field(default=0.05, validator=_non_negative)
    backoff_max: float = attrs.field(default=5.0, validator=_non_negative)
    backoff_factor: float = attrs.field(default=2.0, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        if self.backoff_max < self.backoff_min:
            raise ValueError(f"RestartPolicy.backoff_max ({self.backoff_max}) is below backoff_min ({self.backoff_min})")
        if self.backoff_factor < 1:
            raise ValueError(f"RestartPolicy.backoff_factor must be >= 1, got {self.backoff_factor}")

    def delay(self, n: int) -> float:
        """Backoff before the restart that follows the n-th crash in the window (n >= 1)."""
        return min(self.backoff_max, self.backoff_min * self.backoff_factor ** max(0, n - 1))


NEVER = RestartPolicy(max_restarts=0)


class RestartBudget:
    """The crash history of one actor under a policy."""

    __slots__ = ("policy", "_crashes")

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self._crashes: deque[float] = deque()

    def on_crash(self, now: float) -> float | None:
        """Record a crash at ``now``: the restart delay, or None to give up."""
        window_start = now - self.policy.window
        crashes = self._crashes
        while crashes and crashes[0] < window_start:
            crashes.popleft()
        crashes.append(now)
        n = len(crashes)
        if n > self.policy.max_restarts:
            return None
        return self.policy.delay(n)

    @property
    def recent(self) -> int:
        return len(self._crashes)
