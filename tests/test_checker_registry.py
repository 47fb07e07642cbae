"""Every registered checker proves it can fail (DESIGN.md, "Checkers must prove they can fail").

A checker that has never been seen to say ``invalid`` proves nothing, and one
that says ``valid`` about a log with nothing in it lies. Each test module of a
checker family exports ``CASES``::

    CASES = {"checker-name": {"invalid": (events, offending), "unknown": events}}

``invalid``: a hand-made log breaking the invariant, and the offending event
records that must come back as the verdict's evidence; ``unknown``: a log with
nothing for the checker to judge. This module enumerates the registry (the
core's runtime checkers and every plug-in's), so a checker added later without
both cases fails the suite.
"""

from __future__ import annotations

import importlib

import pytest

from topologies.checkers import CHECKER_OWNER, CHECKERS
from topologies.plugin import load_plugins

CASE_MODULES = ("tests.test_checkers", "tests.test_workflow_checkers", "tests.test_rack_checkers",
                "tests.test_edge_checkers", "tests.test_workload_checkers", "tests.test_deps_checkers",
                "tests.test_council_checkers", "tests.test_rack_availability")

load_plugins()
REGISTERED = sorted(CHECKERS)


def _all_cases() -> dict:
    cases: dict = {}
    for mod in CASE_MODULES:
        for name, case in importlib.import_module(mod).CASES.items():
            assert name not in cases, f"{name}: cases given twice ({mod})"
            cases[name] = case
    return cases


CASES = _all_cases()


def mentions(evidence: list, item: dict) -> bool:
    """``item`` is one of the evidence records, or a value inside one of them."""
    for e in evidence:
        if e == item:
            return True
        if isinstance(e, dict) and any(v == item for v in e.values()):
            return True
    return False


def test_every_registered_checker_has_both_cases():
    missing = [f"{n} ({CHECKER_OWNER.get(n)})" for n in REGISTERED
               if n not in CASES or not {"invalid", "unknown"} <= set(CASES[n])]
    assert not missing, f"checkers without an invalid and an unknown case: {missing}"
    stray = sorted(set(CASES) - set(CHECKERS))
    assert not stray, f"cases for checkers that are not registered: {stray}"
    assert len(REGISTERED) >= 16
    print(f"registry: {len(REGISTERED)} checkers, each with an invalid and an unknown case")


@pytest.mark.parametrize("name", REGISTERED)
def test_checker_says_invalid_with_the_offending_events(name):
    events, offending = CASES[name]["invalid"]
    assert offending, f"{name}: the invalid case names no offending event"
    v = CHECKERS[name].check([dict(e) for e in events])
    assert v.status == "invalid", f"{name} passed a log that breaks it: {v.summary}"
    assert v.summary
    lost = [o for o in offending if not mentions(v.evidence, o)]
    assert not lost, f"{name}: offending events missing from the evidence: {lost}; evidence: {v.evidence}"


@pytest.mark.parametrize("name", REGISTERED)
def test_checker_says_unknown_with_nothing_to_judge(name):
    v = CHECKERS[name].check([dict(e) for e in CASES[name]["unknown"]])
    assert v.status == "unknown", f"{name} judged a log with nothing to judge: {v.status}: {v.summary}"
    assert v.summary


@pytest.mark.parametrize("name", REGISTERED)
def test_checker_says_unknown_on_an_empty_log(name):
    v = CHECKERS[name].check([])
    assert v.status == "unknown", f"{name} on an empty log: {v.status}: {v.summary}"


def test_the_registry_test_itself_catches_a_blind_checker():
    """A checker that always says valid fails both tests above (so they cannot pass vacuously)."""
    from topologies.checkers import Verdict

    class Blind:
        name = "blind"

        def check(self, events):
            return Verdict(self.name, "valid", "all good")

    events, _ = CASES["requests-answered"]["invalid"]
    assert Blind().check(events).status != "invalid"
    assert Blind().check([]).status != "unknown"
    assert not mentions([{"x": 1}], {"y": 2}) and mentions([{"event": {"y": 2}}], {"y": 2})
