"""Shared helpers for the runtime tests.

Actor tests run real pykka threads, so some waiting is unavoidable: `wait_for`
polls a condition with a deadline (never asserting how long it took). Time
that the code under test reads comes from a VirtualClock wherever it matters.
"""

from __future__ import annotations

import threading
from typing import Callable

import pytest


def wait_for(pred: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> object:
    """Poll ``pred`` until it is truthy; fail the test if ``timeout`` passes first."""
    ev = threading.Event()
    waited = 0.0
    step = 0.002
    while True:
        value = pred()
        if value:
            return value
        if waited >= timeout:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        ev.wait(step)
        waited += step
        step = min(step * 2, 0.05)


@pytest.fixture
def nodes():
    """Collects Nodes made by a test and shuts them all down afterwards."""
    made = []
    yield made
    for n in made:
        n.shutdown()
