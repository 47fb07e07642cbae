"""A node's SIGTERM handler must not take a lock its own thread may hold.

The node's main thread spends its life in ``stop.wait(0.2)`` (``threading.Event``, whose ``Condition`` wraps a
plain, non-reentrant ``Lock``). A Python signal handler runs in the main thread between two bytecodes - possibly
inside ``Event.wait``'s ``with self._cond:`` - so a handler that calls ``stop.set()`` (the old one) can wait
forever for a lock its own thread holds: the node ignores SIGTERM, its actors go on, and the launcher SIGKILLs it
after 10 s (seen once in CI: ``a7 did not stop within 10 s of SIGTERM and was SIGKILLed``, no watchdog line - the
watchdog is armed only after the main loop ends). Each case runs in a child process with a timeout.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_INSIDE_THE_LOCK = """
with stop._cond:                          # the main thread inside Event.wait's critical section
    signal.raise_signal(signal.SIGTERM)   # the handler runs here, before the block ends
print("out", flush=True)
print("stopped" if stop.wait(5) else "not stopped", flush=True)
"""


def _run(setup: str) -> subprocess.CompletedProcess | None:
    code = "import signal, threading\nstop = threading.Event()\n" + setup + _INSIDE_THE_LOCK
    try:
        return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return None


def test_a_handler_that_sets_the_event_deadlocks_inside_the_event_s_lock():
    """The mechanism (a control: this is the handler nodes had)."""
    assert _run("signal.signal(signal.SIGTERM, lambda *_: stop.set())\n") is None, "expected a deadlock"


def test_the_node_s_signal_handling_stops_it_even_when_the_signal_lands_inside_the_lock():
    r = _run("from topologies.node import stop_on_signals\nstop_on_signals(stop, (signal.SIGTERM,))\n")
    assert r is not None, "the node's handler deadlocked"
    assert r.stdout.split() == ["out", "stopped"], (r.stdout, r.stderr)
