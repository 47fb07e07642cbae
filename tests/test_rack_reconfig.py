"""Membership changes through an agreed reconfiguration (issue 17, deliverable 1: a sector added at run time).

The layout a monitor works with is not whatever file it last read: the fleet
agrees on each configuration epoch (a fleet-level Paxos instance), every
monitor learns it like a fact and keeps it durably, and a monitor restarted
with an older layout file keeps the agreed one. Seeded simulations
(tests/rack_sim.RackFleet ``add_sector``); every assertion names its seed.
"""

from __future__ import annotations

import pytest

from protocols.rack.messages import Reconfigure
from tests.rack_sim import RackFleet
from topologies.checkers import run_checkers
from topologies.rack.checks import check_authority

SEEDS = range(6)


def not_invalid(f: RackFleet) -> None:
    for v in run_checkers(f.events()):
        if v.checker in ("paxos-one-value", "one-authority-per-ballot", "fleet-agreement", "control-once"):
            assert v.status != "invalid", f"seed={f.seed}: {v.checker} invalid: {v.summary} {v.evidence[:3]}"


def configs(f: RackFleet) -> dict[str, tuple]:
    return {r: (f.monitor(r).epoch, f.monitor(r).layout.sectors) for r in f.racks}


@pytest.mark.parametrize("seed", SEEDS)
def test_a_sector_added_at_run_time_joins_through_an_agreed_configuration(seed):
    f = RackFleet(seed, 1, 2, 3)
    f.run(2.0)
    new = f.add_sector()  # the new sector's monitors and controls start; the fleet is asked to agree
    assert [f.layout.sector_of(r) for r in new] == ["d0s2"] * 3, new
    f.run(5.0)
    assert set(configs(f).values()) == {(1, 3)}, f"seed={seed}: configurations {configs(f)}"
    agreed = {(e["fields"]["epoch"], e["fields"]["sectors"]) for e in f.events("monitor.config")}
    assert agreed == {(1, 3)}, f"seed={seed}: {agreed}"
    # the data center is governed by one authority whose group has the new sector's seat
    (dca,) = f.authority("d0")
    gid = f.monitor(dca).holding["d0"].gid
    holders = gid.partition("@")[2].split(",")
    assert len(holders) == 3 and holders[2] in new, f"seed={seed}: d0 held under {gid}"
    assert len(f.authority("d0s2")) == 1, f"seed={seed}"
    # the new sector's faults reach every monitor, old sectors' faults reach the new monitors
    f.set_metrics(new[1], temp=96.0)
    f.set_metrics("d0s0r2", temp=96.0)
    f.run(6.5)
    for r in f.racks:
        for subject in (new[1], "d0s0r2"):
            k = f.monitor(r).known.get(subject)
            assert k is not None and k[1] == 3 and k[2]["condition"] == "needs-repair", \
                f"seed={seed}: {r} does not know {subject} fleet-wide: {k}"
    r = check_authority(f.events())
    assert not r["overlaps"], f"seed={seed}: two acting authorities at once: {r['overlaps'][:2]}"
    not_invalid(f)


@pytest.mark.parametrize("seed", range(3))
def test_a_monitor_restarted_with_the_old_layout_file_keeps_the_agreed_configuration(seed):
    f = RackFleet(seed, 1, 2, 3)
    f.run(2.0)
    old = dict(f.layout_dict)
    f.add_sector()
    f.run(4.0)
    f.crash_monitor("d0s1r0")
    f.restart_monitor("d0s1r0", layout=old)  # its disk holds the agreed configuration
    f.crash_monitor("d0s0r1")
    f.restart_monitor("d0s0r1", layout=old, wipe=True)  # nothing on disk: it learns the configuration again
    f.run(6.0)
    assert set(configs(f).values()) == {(1, 3)}, f"seed={seed}: configurations {configs(f)}"
    f.set_metrics("d0s2r0", temp=96.0)
    f.run(7.5)
    for r in ("d0s1r0", "d0s0r1"):
        k = f.monitor(r).known.get("d0s2r0")
        assert k is not None and k[2]["condition"] == "needs-repair", f"seed={seed}: {r}: {k}"
    not_invalid(f)


def test_a_reconfiguration_other_than_one_more_sector_is_refused():
    f = RackFleet(1, 1, 2, 3)
    f.run(2.0)
    (top,) = f.authority("fleet")
    for bad in ({"dcs": 1, "sectors": 4, "racks": 3}, {"dcs": 1, "sectors": 3, "racks": 4},
                {"dcs": 2, "sectors": 3, "racks": 3}, {"dcs": 1, "sectors": 1, "racks": 3}, {"sectors": "x"}):
        f.sim.send(f.layout.monitor(top), Reconfigure(bad))
    f.run(3.0)
    assert len(f.events("monitor.config_refused")) == 5, f.events("monitor.config_refused")
    assert not f.events("monitor.config")
    assert set(configs(f).values()) == {(0, 2)}


@pytest.mark.parametrize("seed", range(2))
def test_two_data_centers_each_gain_a_sector_and_the_fleet_agrees_on_their_faults(seed):
    f = RackFleet(seed, 2, 2, 3)
    f.run(2.0)
    new = f.add_sector()
    assert sorted({f.layout.sector_of(r) for r in new}) == ["d0s2", "d1s2"], new
    f.run(5.0)
    assert set(configs(f).values()) == {(1, 3)}, f"seed={seed}: configurations {configs(f)}"
    for g in ("fleet", "d0", "d1", "d0s2", "d1s2"):
        assert len(f.authority(g)) == 1, f"seed={seed}: {g} acting {f.authority(g)}"
    f.set_metrics(new[-1], temp=96.0)
    f.run(8.0)
    for r in f.racks:
        k = f.monitor(r).known.get(new[-1])
        assert k is not None and k[1] == 3 and k[2]["condition"] == "needs-repair", f"seed={seed}: {r}: {k}"
    verdicts = {v.checker: v for v in run_checkers(f.events())}
    for name in ("paxos-one-value", "one-authority-per-ballot", "fleet-agreement"):
        assert verdicts[name].status == "valid", f"seed={seed}: {name} {verdicts[name].status}: {verdicts[name].summary}"
