"""Clocks and timer schedulers: one interface, real or virtual time.

How this works
--------------
A :class:`Clock` answers ``now()`` and runs callbacks at given times through
``call_at(when, fn, *args) -> Timer``. Two implementations:

* :class:`RealClock` - ``time.monotonic`` plus **one** scheduler thread per
  clock (a heap and a condition variable; never a thread per timer). A Node
  made without a clock gets its own ``RealClock``.
* :class:`VirtualClock` - time moves only when a test (or the simulator) calls
  ``advance(dt)`` / ``advance_to(t)``; due callbacks run synchronously in the
  caller's thread, in time order, with ``now()`` set to each timer's due time.
  Many nodes may share one virtual clock: one timeline for the whole test.

Callbacks should be short (the runtime's only tell a message to an actor);
an exception in one is logged and does not stop the scheduler. A cancelled
timer never runs; cancelled entries are removed lazily and compacted when they
outnumber live ones.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import Any, Callable

from loguru import logger

__all__ = ["Clock", "RealClock", "Timer", "VirtualClock"]


class Timer:
    """A handle on a scheduled callback."""

    __slots__ = ("when", "fn", "args", "cancelled", "_owner")

    def __init__(self, when: float, fn: Callable[..., Any], args: tuple, owner: "_TimerHeap"):
        self.when = when
        self.fn = fn
        self.args = args
        self.cancelled = False
        self._owner = owner

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self._owner._note_cancel()

    def __repr__(self) -> str:
        return f"<Timer at {self.when:.6f} {getattr(self.fn, '__qualname__', self.fn)}{' cancelled' if self.cancelled else ''}>"


class _TimerHeap:
    """The heap shared by both clocks (call with ``self._lock`` held where noted)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._cancelled = 0

    def _push(self, timer: Timer) -> bool:
        """Add a timer (lock held); True if it became the earliest."""
        heapq.heappush(self._heap, (timer.when, next(self._seq), timer))
        return self._heap[0][2] is timer

    def _note_cancel(self) -> None:
        with self._lock:
            self._cancelled += 1
            if self._cancelled > 1024 and self._cancelled * 2 > len(self._heap):
                self._heap = [e for e in self._heap if not e[2].cancelled]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def _pop_due(self, now: float) -> Timer | None:
        """Pop the earliest live timer due at or before ``now`` (lock held)."""
        heap = self._heap
        while heap:
            when, _, timer = heap[0]
            if timer.cancelled:
                heapq.heappop(heap)
                self._cancelled = max(0, self._cancelled - 1)
                continue
            if when > now:
                return None
            heapq.heappop(heap)
            return timer
        return None

    def _next_due(self) -> float | None:
        """Time of the earliest live timer (lock held)."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
            self._cancelled = max(0, self._cancelled - 1)
        return heap[0][0] if heap else None

    def pending(self) -> int:
        with self._lock:
            return sum(1 for e in self._heap if not e[2].cancelled)

    @staticmethod
    def _run(timer: Timer) -> None:
        # Marked done first so that a late cancel() is a harmless no-op.
        timer.cancelled = True
        try:
            timer.fn(*timer.args)
        except Exception:
            logger.exception("timer callback {!r} raised", timer.fn)


class Clock(_TimerHeap):
    """The clock interface: ``now()``, ``call_at``, ``call_later``, ``close``."""

    def now(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def call_at(self, when: float, fn: Callable[..., Any], *args: Any) -> Timer:
        raise NotImplementedError  # pragma: no cover - abstract

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Timer:
        return self.call_at(self.now() + max(0.0, delay), fn, *args)

    def close(self) -> None:
        """Stop running timers (pending ones are dropped)."""


class RealClock(Clock):
    """Monotonic time anchored to the wall clock, with one scheduler thread.

    ``now()`` is ``time.monotonic()`` shifted by the wall-clock offset taken at
    construction: it never jumps backwards (timers stay sound), and event
    times from different processes on one machine line up in a merged log.
    """

    def __init__(self, name: str = "clock") -> None:
        super().__init__()
        self._name = name
        self._offset = time.time() - time.monotonic()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._closed = False

    def now(self) -> float:
        return time.monotonic() + self._offset

    def call_at(self, when: float, fn: Callable[..., Any], *args: Any) -> Timer:
        timer = Timer(when, fn, args, self)
        with self._lock:
            if self._closed:
                timer.cancelled = True
                return timer
            if self._push(timer):
                self._wake.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=f"timers-{self._name}", daemon=True)
                self._thread.start()
        return timer

    def _loop(self) -> None:
        while True:
            with self._lock:
                while True:
                    if self._closed:
                        return
                    now = time.monotonic() + self._offset
                    timer = self._pop_due(now)
                    if timer is not None:
                        break
                    due = self._next_due()
                    self._wake.wait(None if due is None else max(0.0, due - now))
            self._run(timer)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._heap.clear()
            self._wake.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)


class VirtualClock(Clock):
    """Time that moves only when told to; timers run in the advancing thread."""

    def __init__(self, start: float = 0.0) -> None:
        super().__init__()
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, fn: Callable[..., Any], *args: Any) -> Timer:
        timer = Timer(max(when, self._now), fn, args, self)
        with self._lock:
            self._push(timer)
        return timer

    def advance_to(self, t: float) -> int:
        """Move time to ``t``, running every timer due on the way; returns how many ran."""
        if t < self._now:
            raise ValueError(f"virtual time cannot go backwards ({t} < {self._now})")
        ran = 0
        while True:
            with self._lock:
                timer = self._pop_due(t)
                if timer is not None:
                    self._now = max(self._now, timer.when)
            if timer is None:
                break
            self._run(timer)
            ran += 1
        self._now = t
        return ran

    def advance(self, dt: float) -> int:
        """Move time forward by ``dt`` seconds; returns how many timers ran."""
        if dt < 0:
            raise ValueError(f"cannot advance by a negative duration ({dt})")
        return self.advance_to(self._now + dt)

    def next_due(self) -> float | None:
        with self._lock:
            return self._next_due()
