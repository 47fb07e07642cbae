"""The boot-workflow checkers (topologies/workflow/checks.py) on hand-made logs: each can fail.

``CASES`` gives, for each of the four checkers, a log breaking its invariant
(with the events that must appear in the evidence) and a log with nothing to
judge; the registry test imports it. The focused tests cover controller
incarnations: leases of an earlier incarnation still live after a restart, lease
ids reused by a new incarnation, ``lease.release_unknown`` and ``lease.unknown``,
adoption; and servers-done on interrupted runs. The seeded simulations at the
end restart a resource controller in the middle of a boot storm.

Event fields are those the protocol emits (protocols/workflow/controller.py,
server.py). A lease id is the controller's epoch shifted left 24 bits plus a
counter (``lid``), as the controller makes it.
"""

from __future__ import annotations

import random

import pytest

from protocols.workflow import ResourceController
from tests.workflow_sim import build_storm, check_admission
from topologies.plugin import load_plugins

load_plugins()
from topologies.checkers import CHECKERS  # noqa: E402

CTL = "ctl/images"
NAMES = ("admission-limit", "leases-end", "servers-done", "no-grant-while-dormant")


# -- building events ----------------------------------------------------------------------------------------


def ev(t: float, addr: str, kind: str, **fields) -> dict:
    node, _, actor = addr.partition("/")
    return {"time": t, "node": node, "actor": actor, "kind": kind, "fields": fields}


def lid(epoch: int, n: int) -> int:
    return (epoch << 24) | n


def start(t, *, limit=2, ttl=30.0, epoch=7, grace=0.0, ctl=CTL):
    return ev(t, ctl, "controller.start", resource="images", limit=limit, ttl=ttl, epoch=epoch,
              state="recovering" if grace > 0 else "active", grace=grace)


def active(t, holders=0, limit=2):
    return ev(t, CTL, "controller.state", resource="images", **{"from": "recovering"}, to="active",
              reason="grace over", holders=holders, limit=limit)


def grant(t, server, lease, *, holders=1, limit=2, reserved=0, from_reservation=False, stage="image"):
    return ev(t, CTL, "admission.grant", server=server, lease=lease, stage=stage, holders=holders, reserved=reserved,
              limit=limit, waited=0.0, via=None, from_reservation=from_reservation)


def released(t, server, lease, *, holders=0, limit=2, reason="ok", held=10.0):
    return ev(t, CTL, "lease.released", server=server, lease=lease, stage="image", reason=reason, held=held,
              holders=holders, limit=limit, duration=held)


def expired(t, server, lease, *, holders=0, limit=2):
    return ev(t, CTL, "lease.expired", server=server, lease=lease, stage="image", reason="not renewed", held=30.0,
              holders=holders, limit=limit)


def adopted(t, server, lease, epoch, *, holders=1, limit=2):
    return ev(t, CTL, "lease.adopted", server=server, lease=lease, epoch=epoch, holders=holders, reserved=0,
              limit=limit)


def release_unknown(t, server, lease, outcome="ok"):
    return ev(t, CTL, "lease.release_unknown", server=server, lease=lease, outcome=outcome)


def lease_unknown(t, server, lease, reason="unknown epoch"):
    return ev(t, CTL, "lease.unknown", server=server, lease=lease, reason=reason)


def deny(t, server, directive="pending", *, holders=2, limit=2):
    return ev(t, CTL, "admission.deny", server=server, stage="image", directive=directive, wait=5.0, position=0,
              holders=holders, reserved=0, limit=limit, via=None)


def state(t, server, frm, to, reason="", stage="image"):
    return ev(t, server, "server.state", **{"from": frm}, to=to, reason=reason, stage=stage)


def stage_start(t, server, stage="image", run=1):
    return ev(t, server, "server.stage_start", stage=stage, run=run, attempt=1)


def stage_end(t, server, stage="image", outcome="ok", duration=10.0):
    return ev(t, server, "server.stage", stage=stage, outcome=outcome, duration=duration, attempt=1, reason="")


def lost(t, server, leases, reason="controller: unknown epoch"):
    return ev(t, server, "lease.lost", resources=["images"], leases=list(leases), stage="image", reason=reason)


def booted(t, server):
    """A server that got its workflow and is running."""
    return state(t, server, "invalid", "running", "workflow", stage=None)


def verdict(name: str, events: list[dict]):
    v = CHECKERS[name].check(events)
    assert v.checker == name
    return v


def in_evidence(item: dict, evidence: list[dict]) -> bool:
    return any(item == x or (isinstance(x, dict) and any(item == y for y in x.values())) for x in evidence)


# -- the table: a log breaking each invariant, and one with nothing to judge ---------------------------------

# admission-limit: the controller restarts (a new incarnation: it remembers no holder; here
# with the same epoch, so lease ids repeat) and grants at once, while the lease the old
# incarnation granted is still within its term and its holder still at work.
_OLD = grant(1.0, "s1/server", lid(7, 1), holders=1, limit=1)
_OVER = grant(11.0, "s2/server", lid(7, 1), holders=1, limit=1)
ADMISSION_INVALID = [
    start(0.0, limit=1), booted(0.5, "s1/server"), _OLD, stage_start(1.1, "s1/server"),
    start(10.0, limit=1), booted(10.5, "s2/server"), _OVER,
]

# leases-end: s1 finished at t=20 and released its lease, but the controller never ended it,
# though it went on working (granting and releasing s2's) long past ttl (30 s) + slack.
_LEAKED = grant(1.0, "s1/server", lid(7, 1))
_STOPPED = stage_end(20.0, "s1/server", duration=18.9)
LEASES_INVALID = [
    start(0.0), booted(0.5, "s1/server"), _LEAKED, stage_start(1.1, "s1/server"), _STOPPED,
    state(20.0, "s1/server", "running", "done", "workflow complete", stage=None),
    booted(59.0, "s2/server"), grant(60.0, "s2/server", lid(7, 2), holders=2), stage_start(60.1, "s2/server"),
    stage_end(70.0, "s2/server"), released(70.01, "s2/server", lid(7, 2), holders=1),
    state(70.0, "s2/server", "running", "done", "workflow complete", stage=None),
]

# servers-done: s2 failed; s3 waits pending from t=4 while nothing at all happens at any
# server for the next 96 s (the controller ticks on: it logs a limit change at t=100).
_FAILED = state(5.0, "s2/server", "running", "failed", "stage image failed 3 times: resource overloaded")
_STUCK = state(4.0, "s3/server", "running", "pending", "denied")
SERVERS_INVALID = [
    start(0.0), booted(0.5, "s1/server"), booted(0.6, "s2/server"), booted(0.7, "s3/server"),
    grant(1.0, "s1/server", lid(7, 1)), stage_start(1.1, "s1/server"), stage_end(3.0, "s1/server"),
    state(3.0, "s1/server", "running", "done", "workflow complete", stage=None),
    released(3.01, "s1/server", lid(7, 1)), deny(3.9, "s3/server"), _STUCK, _FAILED,
    ev(100.0, CTL, "limit.changed", resource="images", old=2, new=3, reason="headroom", holders=0, reserved=0,
       error_rate=None, latency_ratio=None, utilization=None, waiting=1),
]

# no-grant-while-dormant: s1 was told to go dormant and powered off; the controller then
# granted it a lease instead of waking it.
_DORMANT = state(2.0, "s1/server", "running", "dormant", "denied")
_TO_DORMANT = grant(3.0, "s1/server", lid(7, 1))
DORMANT_INVALID = [
    start(0.0), booted(0.5, "s1/server"), deny(1.9, "s1/server", "dormant"), _DORMANT, _TO_DORMANT,
]

CASES = {
    "admission-limit": {
        "invalid": (ADMISSION_INVALID, [_OVER, _OLD]),
        # a controller that started and granted nothing: nothing to judge
        "unknown": [start(0.0), booted(0.5, "s1/server"), deny(1.0, "s1/server")],
    },
    "leases-end": {
        "invalid": (LEASES_INVALID, [_LEAKED, _STOPPED]),
        # no lease was granted
        "unknown": [start(0.0), booted(0.5, "s1/server"), deny(1.0, "s1/server")],
    },
    "servers-done": {
        "invalid": (SERVERS_INVALID, [_FAILED, _STUCK]),
        # no server in the log
        "unknown": [start(0.0, grace=5.0), active(5.0)],
    },
    "no-grant-while-dormant": {
        "invalid": (DORMANT_INVALID, [_TO_DORMANT, _DORMANT]),
        # no grant in the log
        "unknown": [start(0.0), booted(0.5, "s1/server"), deny(1.9, "s1/server", "dormant"), _DORMANT],
    },
}


@pytest.mark.parametrize("name", NAMES)
def test_each_checker_fails_on_a_log_breaking_its_invariant_and_says_unknown_on_nothing(name):
    events, offending = CASES[name]["invalid"]
    v = verdict(name, events)
    assert v.status == "invalid", v
    for item in offending:
        assert in_evidence(item, v.evidence), f"{name}: {item} not in the evidence {v.evidence}"
    u = verdict(name, CASES[name]["unknown"])
    assert u.status == "unknown", u
    assert verdict(name, []).status == "unknown"


def test_cases_cover_the_workflow_checkers():
    assert set(CASES) == set(NAMES)
    assert all(n in CHECKERS for n in NAMES)


# -- admission across controller restarts -----------------------------------------------------------------


def test_restarted_controller_granting_above_the_limit_while_old_leases_live_is_invalid():
    """Fresh epoch and ids: the old incarnation's two leases still hold slots after the restart."""
    old = [grant(1.0, "s1/server", lid(7, 1), holders=1), grant(2.0, "s2/server", lid(7, 2), holders=2)]
    new = grant(11.0, "s3/server", lid(9, 1), holders=1)
    events = [start(0.0), *old, start(10.0, epoch=9), new]
    v = verdict("admission-limit", events)
    assert v.status == "invalid", v
    assert v.evidence[0] == new and all(in_evidence(x, v.evidence) for x in old)
    assert "2 live leases of earlier incarnations" in v.summary
    # the same with lease ids the new incarnation reuses (same epoch): the old checker saw one holder
    events = [start(0.0, limit=1), grant(1.0, "s1/server", lid(7, 1)), start(10.0, limit=1),
              grant(11.0, "s2/server", lid(7, 1))]
    assert verdict("admission-limit", events).status == "invalid"
    assert not check_admission(events)["ok"]


def test_a_new_incarnation_releasing_a_reused_lease_id_does_not_end_the_old_lease():
    old = grant(1.0, "s1/server", lid(7, 1))  # still held by s1 (its stage runs on)
    events = [start(0.0), booted(0.5, "s1/server"), old, stage_start(1.1, "s1/server"),
              start(10.0),  # same epoch: the new incarnation hands out lid(7, 1) again
              grant(11.0, "s2/server", lid(7, 1)), released(12.0, "s2/server", lid(7, 1)),
              grant(13.0, "s3/server", lid(7, 2))]
    assert verdict("admission-limit", events).status == "valid"  # s1's lease + s3's: 2 of 2
    over = grant(14.0, "s4/server", lid(7, 3), holders=2)
    v = verdict("admission-limit", events + [over])
    assert v.status == "invalid" and v.evidence[0] == over and in_evidence(old, v.evidence), v


def test_old_leases_end_with_their_term_when_nothing_else_is_logged():
    """Holders that crashed with the controller (no event ends their leases): over at down time + ttl."""
    base = [start(0.0), grant(1.0, "s1/server", lid(7, 1)), grant(2.0, "s2/server", lid(7, 2)),
            ev(5.0, CTL, "sim.crash")]
    # restarted at t=20 with grace = ttl: it grants at t=50, long after the old leases' term (5 + 30)
    clean = base + [start(20.0, epoch=9, grace=30.0), active(50.0),
                    grant(50.0, "s3/server", lid(9, 1)), grant(50.0, "s4/server", lid(9, 2), holders=2)]
    v = verdict("admission-limit", clean)
    assert v.status == "valid", v
    assert "1 controller restart" in v.summary
    # restarted with grace 0: granting before t=35 over-admits; from t=35 on it does not
    early = base + [start(20.0, epoch=9), grant(34.9, "s3/server", lid(9, 1))]
    assert verdict("admission-limit", early).status == "invalid"
    late = base + [start(20.0, epoch=9), grant(35.0, "s3/server", lid(9, 1)), grant(35.0, "s4/server", lid(9, 2))]
    assert verdict("admission-limit", late).status == "valid"
    # without the crash event the restart bounds the term: over at 20 + 30
    nocrash = base[:-1] + [start(20.0, epoch=9), grant(49.0, "s3/server", lid(9, 1))]
    assert verdict("admission-limit", nocrash).status == "invalid"
    nocrash = base[:-1] + [start(20.0, epoch=9), grant(50.0, "s3/server", lid(9, 1))]
    assert verdict("admission-limit", nocrash).status == "valid"


def test_release_unknown_of_an_old_lease_frees_its_slot_but_only_for_its_own_holder():
    base = [start(0.0, limit=1), booted(0.5, "s1/server"), grant(1.0, "s1/server", lid(7, 1), limit=1),
            stage_start(1.1, "s1/server"), start(10.0, limit=1, epoch=9)]
    # s1 finished its stage; its Release reaches a controller that does not know the lease
    ok = base + [release_unknown(11.0, "s1/server", lid(7, 1)), grant(11.5, "s2/server", lid(9, 1), limit=1)]
    assert verdict("admission-limit", ok).status == "valid"
    # a Release from another server for that id ends nothing
    other = base + [release_unknown(11.0, "s9/server", lid(7, 1)), grant(11.5, "s2/server", lid(9, 1), limit=1)]
    assert verdict("admission-limit", other).status == "invalid"
    # leases-end: the old lease ended with that release, though s1 is done and the log goes on
    ended = ok + [state(11.0, "s1/server", "running", "done", "workflow complete", stage=None),
                  released(80.0, "s2/server", lid(9, 1), limit=1)]
    v = verdict("leases-end", ended)
    assert v.status == "valid", v
    assert "1 lease.release_unknown" in v.summary


def test_lease_unknown_does_not_free_a_slot_until_the_holder_stops():
    """A refused renewal proves the old holder was still at work; its lease.lost ends the lease."""
    base = [start(0.0, limit=1), booted(0.5, "s1/server"), grant(1.0, "s1/server", lid(7, 1), limit=1),
            stage_start(1.1, "s1/server"), start(10.0, limit=1, epoch=9),
            lease_unknown(11.0, "s1/server", lid(7, 1))]
    early = base + [grant(11.0, "s2/server", lid(9, 1), limit=1)]
    assert verdict("admission-limit", early).status == "invalid"
    stopped = base + [lost(11.003, "s1/server", [lid(7, 1)]), grant(12.0, "s2/server", lid(9, 1), limit=1)]
    assert verdict("admission-limit", stopped).status == "valid"
    # a lease.lost by another server ends nothing (the holder gives back every lease it holds)
    wrong = base + [lost(11.003, "s2/server", [lid(7, 1)]), grant(12.0, "s2/server", lid(9, 1), limit=1)]
    assert verdict("admission-limit", wrong).status == "invalid"


def test_clean_restart_with_adoption_stays_valid():
    """Grace = ttl: the holder that renews is adopted, the one that finished releases to the new incarnation."""
    l1, l2 = lid(7, 1), lid(7, 2)
    events = [
        start(0.0), booted(0.1, "s1/server"), booted(0.2, "s2/server"),
        grant(1.0, "s1/server", l1), stage_start(1.1, "s1/server"),
        grant(2.0, "s2/server", l2, holders=2), stage_start(2.1, "s2/server"),
        booted(3.0, "s3/server"), deny(3.1, "s3/server", "parking"), state(3.1, "s3/server", "running", "parking"),
        start(10.0, epoch=9, grace=30.0),
        adopted(12.0, "s1/server", l1, 7),
        stage_end(15.0, "s2/server"), state(15.0, "s2/server", "running", "done", "workflow complete", stage=None),
        release_unknown(15.01, "s2/server", l2),
        deny(20.0, "s3/server", "dormant", holders=1), state(20.0, "s3/server", "parking", "dormant", "denied"),
        active(40.0, holders=1),
        ev(40.0, CTL, "admission.wake", server="s3/server", reason="slot", reserved=True, holders=1, busy=2, limit=2),
        state(40.1, "s3/server", "dormant", "pending", "woken"),
        grant(45.0, "s3/server", lid(9, 1), holders=2, from_reservation=True),
        state(45.01, "s3/server", "pending", "running", "granted"), stage_start(45.02, "s3/server"),
        stage_end(50.0, "s1/server"), state(50.0, "s1/server", "running", "done", "workflow complete", stage=None),
        released(50.01, "s1/server", l1, holders=1),
        stage_end(60.0, "s3/server"), state(60.0, "s3/server", "running", "done", "workflow complete", stage=None),
        released(60.01, "s3/server", lid(9, 1)),
    ]
    for name in NAMES:
        v = verdict(name, events)
        assert v.status == "valid", v
    a = check_admission(events)
    assert a["ok"] and a["restarts"] == 1 and a["adopted"] == 1 and a["outstanding"] == []
    # an adoption is a transfer, never judged; adopting a lease the log never showed is a new
    # holder, judged: here s1's adopted lease + s8's + s2's old one, still live, make 3 of 2
    unseen = adopted(12.5, "s8/server", lid(5, 1), 5, holders=2)
    v = verdict("admission-limit", events[:12] + [unseen])
    assert v.status == "invalid" and v.evidence[0] == unseen, v


# -- leases-end per incarnation ------------------------------------------------------------------------------


def test_lease_ids_reused_by_a_new_incarnation_are_not_confused_with_the_old_ones():
    """The old incarnation leaked s1's lease; the new one reuses its id for s2 and releases that one."""
    leaked = grant(1.0, "s1/server", lid(7, 1))
    events = [start(0.0), booted(0.5, "s1/server"), leaked, stage_start(1.1, "s1/server"), stage_end(10.0, "s1/server"),
              state(10.0, "s1/server", "running", "done", "workflow complete", stage=None),
              deny(90.0, "s5/server"),  # the old incarnation still working at t=90, 80 s after s1 stopped
              start(100.0),  # restarted with the same epoch
              grant(101.0, "s2/server", lid(7, 1)), stage_start(101.1, "s2/server"), stage_end(120.0, "s2/server"),
              released(120.01, "s2/server", lid(7, 1)),
              state(120.0, "s2/server", "running", "done", "workflow complete", stage=None)]
    v = verdict("leases-end", events)
    assert v.status == "invalid", v
    assert v.evidence[0] == leaked and "incarnation 1" in v.summary
    # had the old incarnation gone down within ttl + slack of s1 stopping, it is no leak: the lease
    # ended with its incarnation (s1 no longer renews it)
    events[6] = deny(40.0, "s5/server")
    events[7] = start(40.0)
    assert verdict("leases-end", events).status == "valid"


def test_leases_end_judges_a_leak_only_after_ttl_and_slack():
    base = [start(0.0, ttl=30.0), booted(0.5, "s1/server"), grant(1.0, "s1/server", lid(7, 1)),
            stage_start(1.1, "s1/server"), stage_end(20.0, "s1/server"),
            state(20.0, "s1/server", "running", "done", "workflow complete", stage=None)]
    # the log ends 10 s after s1 stopped: the lease may still expire
    v = verdict("leases-end", base + [deny(30.0, "s2/server")])
    assert v.status == "unknown" and "still open" in v.summary, v
    assert verdict("leases-end", base + [deny(54.9, "s2/server")]).status == "unknown"
    assert verdict("leases-end", base + [deny(55.0, "s2/server")]).status == "invalid"
    ended = base + [expired(51.5, "s1/server", lid(7, 1)), deny(90.0, "s2/server")]
    assert verdict("leases-end", ended).status == "valid"
    # a holder still at work when the log ends: cannot tell
    working = base[:4] + [deny(100.0, "s2/server")]
    assert verdict("leases-end", working).status == "unknown"
    # a lease granted after the stage began is not that stage's: the stage's end does not concern it ...
    stray = base[:4] + [grant(5.0, "s1/server", lid(7, 2)), base[4], released(20.01, "s1/server", lid(7, 1)),
                        deny(100.0, "s2/server")]
    assert verdict("leases-end", stray).status == "unknown"
    # ... but once its holder is done, nothing renews it
    v = verdict("leases-end", stray[:-1] + [base[5], deny(100.0, "s2/server")])
    assert v.status == "invalid" and v.evidence == [stray[4], base[5]], v


def test_leases_end_after_a_refused_renewal_once_the_holder_gives_the_lease_up():
    base = [start(0.0), booted(0.5, "s1/server"), grant(1.0, "s1/server", lid(7, 1)), stage_start(1.1, "s1/server"),
            start(10.0, epoch=9), lease_unknown(11.0, "s1/server", lid(7, 1))]
    # refused, but s1 has not heard it yet when the log ends, well within the term (10 + 30): open
    assert verdict("leases-end", base + [deny(12.0, "s2/server")]).status == "unknown"
    # s1 hears LeaseLost, aborts its stage and later finishes with a new lease of the new incarnation
    later = base + [lost(11.01, "s1/server", [lid(7, 1)], reason="controller: unknown epoch"),
                    release_unknown(11.02, "s1/server", lid(7, 1), outcome="aborted"),
                    grant(13.0, "s1/server", lid(9, 1)), stage_start(13.1, "s1/server"), stage_end(25.0, "s1/server"),
                    state(25.0, "s1/server", "running", "done", "workflow complete", stage=None),
                    released(25.01, "s1/server", lid(9, 1)), deny(100.0, "s2/server")]
    v = verdict("leases-end", later)
    assert v.status == "valid", v
    assert verdict("admission-limit", later).status == "valid"


def test_leases_of_a_controller_that_went_down_end_with_their_term():
    events = [start(0.0), booted(0.5, "s1/server"), grant(1.0, "s1/server", lid(7, 1)),
              stage_start(1.1, "s1/server"), ev(5.0, "ctl/$node", "node.stopped", pid=1)]
    assert verdict("leases-end", events + [deny(20.0, "ctl2/x")]).status == "unknown"  # within its term, s1 at work
    assert verdict("leases-end", events + [booted(35.0, "s9/server")]).status == "valid"  # past 5 + 30


# -- servers-done ----------------------------------------------------------------------------------------------


def storm_log(until: float, *, stuck_at: float | None = None) -> list[dict]:
    """Servers s0..s9 boot one after the other, each 10 s; the log ends at ``until``.

    With ``stuck_at``, nothing is granted from then on (the rest wait pending).
    """
    events = [start(0.0, limit=1)]
    for i in range(10):
        s = f"s{i}/server"
        events += [booted(0.1 * i, s), state(0.1 * i + 0.05, s, "running", "pending", "denied")]
    t = 1.0
    for i in range(10):
        if t + 10.0 > until or (stuck_at is not None and t >= stuck_at):
            break
        s = f"s{i}/server"
        events += [grant(t, s, lid(7, i + 1), limit=1), state(t, s, "pending", "running", "granted"),
                   stage_start(t, s), stage_end(t + 10.0, s), released(t + 10.0, s, lid(7, i + 1), limit=1),
                   state(t + 10.0, s, "running", "done", "workflow complete", stage=None)]
        t += 10.0
    return events + [deny(until, "s9/server", holders=0, limit=1)]


def test_servers_done_says_unknown_when_the_run_was_stopped_while_servers_were_still_working():
    v = verdict("servers-done", storm_log(45.0))  # interrupted: 4 done, the rest waiting their turn
    assert v.status == "unknown", v
    assert "6 of 10 servers unfinished" in v.summary and len(v.evidence) == 6
    # every node stopped by the launcher right after (a real run interrupted): still unknown
    stopped = storm_log(45.0) + [ev(45.5, f"s{i}/$node", "node.stopped", pid=i) for i in range(10)]
    assert verdict("servers-done", stopped).status == "unknown"
    assert verdict("servers-done", storm_log(200.0)).status == "valid"


def test_servers_done_lists_stuck_servers():
    events = storm_log(200.0, stuck_at=30.0)  # 3 done by t=31, then nothing for 169 s
    v = verdict("servers-done", events)
    assert v.status == "invalid", v
    stuck = {f"s{i}/server" for i in range(3, 10)}
    assert {f"{e['node']}/{e['actor']}" for e in v.evidence} == stuck
    assert all(s in v.summary for s in stuck) and "7 servers stuck" in v.summary
    # stopped by the launcher after the stall: still stuck
    stopped = events + [ev(200.5, f"s{i}/$node", "node.stopped", pid=i) for i in range(10)]
    assert verdict("servers-done", stopped).status == "invalid"
    # but a fault still in force (the controller cut off) leaves it open
    cut = events[:-1] + [ev(35.0, "chaos/nemesis", "nemesis.grudge", op="grudge", label="one",
                            blocked=[["s3", "ctl"], ["ctl", "s3"]])] + events[-1:]
    assert verdict("servers-done", cut).status == "unknown"
    healed = cut[:-1] + [ev(40.0, "chaos/nemesis", "nemesis.heal", op="heal")] + cut[-1:]
    assert verdict("servers-done", healed).status == "invalid"
    # a server killed for good while the rest progressed is not judged stuck: it was stopped
    killed = storm_log(100.0) + [ev(50.0, "chaos/nemesis", "nemesis.kill", op="kill", node="s9")]
    v = verdict("servers-done", killed)
    assert v.status == "unknown" and "1 stopped before finishing" in v.summary and "s9/server" in v.summary, v


def test_servers_done_failed_servers_are_invalid_and_done_ones_valid():
    ok = [booted(0.0, "s1/server"), state(5.0, "s1/server", "running", "done", "workflow complete", stage=None)]
    assert verdict("servers-done", ok).status == "valid"
    bad = ok + [booted(0.0, "s2/server"), state(6.0, "s2/server", "running", "failed", "stage image failed")]
    v = verdict("servers-done", bad)
    assert v.status == "invalid" and v.evidence == [bad[-1]] and "s2/server" in v.summary


# -- no grant while dormant ----------------------------------------------------------------------------------


def test_no_grant_while_dormant_needs_a_dormant_server_and_accepts_a_woken_one():
    never = [start(0.0), booted(0.5, "s1/server"), grant(1.0, "s1/server", lid(7, 1))]
    assert verdict("no-grant-while-dormant", never).status == "unknown"  # nothing was ever dormant
    woken = DORMANT_INVALID[:-1] + [
        ev(10.0, CTL, "admission.wake", server="s1/server", reason="slot", reserved=True, holders=0, busy=1, limit=2),
        state(10.1, "s1/server", "dormant", "pending", "woken"),
        grant(15.0, "s1/server", lid(7, 1), from_reservation=True), state(15.01, "s1/server", "pending", "running")]
    v = verdict("no-grant-while-dormant", woken)
    assert v.status == "valid", v


# -- seeded simulations: a resource controller restarted in the middle of a boot storm -----------------------


def restart_storm(seed: int, grace: float, *, same_epoch: bool = False, at: float = 60.0):
    """200 servers, capacity 20; the controller is restarted at ``at`` (a new incarnation)."""
    kw = {"limit": 20, "ttl": 30.0, "grace": grace, "adaptive": False, "expected": 30.0, "wake_ahead": 10.0}
    storm = build_storm(seed, servers=200, capacity=20, adaptive=False, controller_kw={"grace": grace})
    storm.run(until=at)
    addr = storm.controllers[0]
    # same_epoch: rebuilt from the same seed, as a real node process rebuilds its actors
    rng = random.Random(f"{seed}/{addr}") if same_epoch else storm.sim.rng(addr)
    storm.sim.restart(addr, ResourceController("r0", rng=rng, **kw))
    storm.run()
    storm.drain()
    return storm, storm.events()


@pytest.mark.parametrize("seed, same_epoch", [(1, False), (2, False), (1, True)])
def test_controller_restarted_with_grace_keeps_every_invariant(seed, same_epoch):
    storm, events = restart_storm(seed, grace=30.0, same_epoch=same_epoch)
    f = storm.figures()
    assert f["done"] == 200, f"seed={seed}: {f}"
    verdicts = {n: verdict(n, events) for n in NAMES}
    assert all(v.status == "valid" for v in verdicts.values()), f"seed={seed}: {verdicts}"
    assert "1 controller restart" in verdicts["admission-limit"].summary
    assert storm.stores[0].peak <= 20, f"seed={seed}: the store saw {storm.stores[0].peak} transfers"


@pytest.mark.parametrize("seed", (1, 2))
def test_controller_restarted_without_grace_over_admits_and_is_caught(seed):
    """grace=0 is for a fresh cluster start; after a restart it grants while old holders still work."""
    storm, events = restart_storm(seed, grace=0.0)
    v = verdict("admission-limit", events)
    assert v.status == "invalid", f"seed={seed}: {v}"
    first = v.evidence[0]
    assert first["kind"] == "admission.grant" and first["time"] >= 60.0, f"seed={seed}: {first}"
    old = [e for e in v.evidence if e["kind"] == "admission.grant" and e["time"] < 60.0]
    assert old, f"seed={seed}: the evidence names no live lease of the old incarnation"
    # the store confirms it: more transfers at once than its capacity
    assert storm.stores[0].peak > 20, f"seed={seed}: store peak {storm.stores[0].peak}"
    assert not check_admission(events)["ok"]


def test_servers_done_counts_the_servers_the_topology_has():
    """The run.topology event says how many servers the run holds: one that never logged a state is not forgotten."""
    from topologies.plugin import load_plugins
    from topologies.checkers import CHECKERS

    load_plugins()
    c = CHECKERS["servers-done"]

    def e(t, actor, kind, **f):
        return {"time": t, "node": "srv", "actor": actor, "kind": kind, "fields": f}

    topo = {"time": 0.0, "node": "launcher", "actor": "$run", "kind": "run.topology",
            "fields": {"topology": "t", "nodes": 1, "actors": {"workflow.server": 3}}}
    done = [e(1.0, "s0", "server.state", **{"from": "running", "to": "done"}),
            e(2.0, "s1", "server.state", **{"from": "running", "to": "done"})]
    later = {"time": 100.0, "node": "ctl", "actor": "store", "kind": "tick", "fields": {}}
    v = c.check([topo, *done, later])
    assert v.status == "invalid" and "1 of 3 servers did not finish" in v.summary, v
    assert "never logged a state" in v.summary
    v = c.check([topo, *done, e(5.0, "s1", "tick")])  # the log ends soon after: too early to tell
    assert v.status == "unknown" and "of the topology's 3 servers" in v.summary, v
    assert c.check(done + [later]).status == "valid"  # without run.topology: the servers seen
    v = c.check([topo])
    assert v.status == "unknown" and "the topology has 3 servers" in v.summary, v


def wake_reserved(t, server, *, holders=0, limit=2):
    return ev(t, CTL, "admission.wake", server=server, reason="slot", reserved=True, holders=holders, busy=holders + 1,
              limit=limit)


def test_a_grant_from_a_reservation_made_before_the_limit_was_lowered_is_not_a_new_admission():
    """Found in a 90 s-boot storm: a slot reserved for a booting server under limit 3, the limit lowered to 2,
    the server then granted from its reservation. Holders + reservations did not grow (the reservation became the
    lease), as a lease granted before a decrease is never revoked; the checker judged it as a new admission."""
    log = [start(0.0, limit=3),
           grant(1.0, "s1/server", lid(7, 1), holders=1, limit=3),
           grant(1.0, "s2/server", lid(7, 2), holders=2, limit=3),
           wake_reserved(2.0, "s3/server", holders=2, limit=3),
           ev(3.0, CTL, "limit.changed", resource="images", old=3, new=2, reason="latency", holders=2, reserved=1),
           grant(4.0, "s3/server", lid(7, 3), holders=3, limit=2, from_reservation=True)]
    v = verdict("admission-limit", log)
    assert v.status == "valid", v
    # ... while a new reservation or a new grant above the lowered limit is still invalid
    bad = log + [wake_reserved(5.0, "s4/server", holders=3, limit=2)]
    assert verdict("admission-limit", bad).status == "invalid"
    bad = log[:5] + [grant(4.0, "s4/server", lid(7, 4), holders=3, limit=2)]
    assert verdict("admission-limit", bad).status == "invalid"
    # a "from reservation" grant with no reservation of that server is judged as any grant
    bad = log[:3] + [ev(3.0, CTL, "limit.changed", resource="images", old=3, new=2, reason="latency", holders=2,
                        reserved=0), grant(4.0, "s5/server", lid(7, 5), holders=3, limit=2, from_reservation=True)]
    assert verdict("admission-limit", bad).status == "invalid"
