"""Authority by condition (issue 17, deliverable 6; seed 002, claims 8 and 14).

The designation of an authoritative monitor is "based on the first state of
operation and the second state of operation": a monitor whose own rack is
faulty or powered-off is not designated while a healthy candidate exists, and
an authority whose rack goes down hands over to a healthy member. When every
rack of a group is down, one of their monitors is still designated (a faulty
authority beats none). Seeded simulations (tests/rack_sim.RackFleet); every
assertion names its seed.
"""

from __future__ import annotations

import random

import pytest

from tests.rack_sim import RackFleet
from topologies.checkers import run_checkers

SEEDS = range(10)
KINDS = ("powered-off", "needs-repair", "needs-troubleshooting")
GRACE = 0.3  # a designation already voted on when the fault was raised may still complete


def make_faulty(f: RackFleet, rack: str, kind: str) -> None:
    if kind == "powered-off":
        f.power_off(rack)
    elif kind == "needs-repair":
        f.set_metrics(rack, temp=96.0)
    else:
        f.set_metrics(rack, os_errors=9)


def fault_times(f: RackFleet) -> dict[str, float]:
    """Rack -> when its monitor first raised a fault (kept only while the rack stays faulty)."""
    out: dict[str, float] = {}
    for e in f.events("monitor.condition"):
        rack = e["fields"]["rack"]
        if e["fields"]["condition"] in ("non-fault", "rebooting"):
            out.pop(rack, None)
        else:
            out.setdefault(rack, e["time"])
    return out


def not_invalid(f: RackFleet) -> None:
    for v in run_checkers(f.events()):
        if v.checker in ("paxos-one-value", "one-authority-per-ballot", "fleet-agreement"):
            assert v.status != "invalid", f"seed={f.seed}: {v.checker} invalid: {v.summary} {v.evidence[:3]}"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_a_monitor_whose_rack_is_down_is_not_designated_while_a_healthy_one_can_be(seed, kind):
    """Sector of 3: rack H goes down, then the authority dies; of H and the healthy B, B is designated."""
    f = RackFleet(seed, 1, 1, 3, reboot_on=[])  # (no reboot cures the troubleshooting rack meanwhile)
    f.run(1.5)
    (a,) = f.authority("d0s0")
    h, b = random.Random(seed).sample([r for r in f.racks if r != a], 2)
    make_faulty(f, h, kind)
    f.run(2.5)
    assert f.monitor(h).detector.state == kind, f"seed={seed}: {h} is {f.monitor(h).detector.state}"
    f.crash_monitor(a)
    f.run(4.5)
    designated = {(e["fields"]["term"], e["fields"]["holder"]) for e in f.events("authority.designated")
                  if e["fields"]["group"] == "d0s0" and e["time"] > 2.5}
    assert designated and all(holder == b for _t, holder in designated), \
        f"seed={seed}: {kind} rack {h} designated while healthy {b} could be: {sorted(designated)}"
    assert f.authority("d0s0") == [b], f"seed={seed}: acting {f.authority('d0s0')}, healthy candidate {b}"
    not_invalid(f)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_an_authority_whose_rack_goes_down_hands_over_to_a_healthy_member(seed, kind):
    f = RackFleet(seed, 1, 1, 3, reboot_on=[])
    f.run(1.5)
    (a,) = f.authority("d0s0")
    make_faulty(f, a, kind)
    f.run(5.0)
    down_at = fault_times(f).get(a)
    assert down_at is not None, f"seed={seed}: {a} never raised {kind}"
    acting = f.authority("d0s0")
    assert len(acting) == 1 and acting[0] != a, f"seed={seed}: {a} ({kind} since {down_at:.3f}) still acts: {acting}"
    # the handover follows the fault within the time the fault takes to reach the fleet and a failover
    renewed = [e["time"] for e in f.events("authority.lease")
               if e["fields"]["group"] == "d0s0" and e["fields"]["holder"] == a]
    assert max(renewed) <= down_at + 1.0 + GRACE, f"seed={seed}: {a} renewed its lease at {max(renewed):.3f}"
    not_invalid(f)


@pytest.mark.parametrize("seed", range(5))
def test_every_level_ends_with_a_healthy_authority(seed):
    """2 data centers x 2 sectors x 3 racks: the fleet authority's rack loses power; no acting authority of any
    group is then a monitor of a rack that is down."""
    f = RackFleet(seed, 2, 2, 3)
    f.run(2.0)
    (top,) = f.authority("fleet")
    f.power_off(top)
    f.run(6.0)
    down = set(fault_times(f))
    assert top in down, f"seed={seed}"
    groups = ["fleet", *f.layout.all_dcs(), *(s for d in f.layout.all_dcs() for s in f.layout.sectors_of(d))]
    for g in groups:
        acting = f.authority(g)
        assert len(acting) == 1 and acting[0] not in down, f"seed={seed}: {g} acting {acting}, racks down {down}"
    not_invalid(f)


@pytest.mark.parametrize("seed", range(5))
def test_a_group_whose_racks_are_all_down_still_has_an_authority(seed):
    f = RackFleet(seed, 1, 1, 3)
    f.run(1.5)
    for r in f.racks:
        f.power_off(r)
    f.run(2.5)
    (a,) = f.authority("d0s0")
    f.crash_monitor(a)
    f.run(4.5)
    acting = f.authority("d0s0")
    assert len(acting) == 1 and acting[0] != a, f"seed={seed}: acting {acting}"
    not_invalid(f)
