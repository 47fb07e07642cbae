"""A monitor restarted on an empty disk (issue 17, deliverable 1: the monitor lifecycle).

A replaced drive or a new machine brings a monitor back with no durable
state: no memory of the lease promises it acked, of the designations and
facts it voted for, or of its condition counter. These seeded simulations
(tests/rack_sim.RackFleet, ``restart_monitor(rack, wipe=True)``) show that it
stays quiet and rejoins before it votes: never two acting authorities of one
group, and its rack's next fault reaches the fleet under a seq never used
before. Every assertion names its seed.
"""

from __future__ import annotations

import random

import pytest

from protocols.consensus import Persist, Prepare, Promise
from protocols.consensus.ballot import Ballot
from protocols.core import Emit, Send
from protocols.rack import Layout, RackMonitor
from protocols.rack.messages import Heartbeat, HeartbeatAck, Rejoin, RejoinReply, Status
from tests.rack_sim import RackFleet
from topologies.checkers import run_checkers
from topologies.rack.checks import check_authority

SEEDS = range(12)


def node(f: RackFleet, rack: str) -> str:
    return f.layout.monitor(rack).split("/")[0]


def not_invalid(f: RackFleet, names=("paxos-one-value", "one-authority-per-ballot", "fleet-agreement",
                                     "control-once")) -> dict:
    out = {v.checker: v for v in run_checkers(f.events()) if v.checker in names}
    for name in names:
        v = out.get(name)
        assert v is not None, f"seed={f.seed}: checker {name} did not run"
        assert v.status != "invalid", f"seed={f.seed}: {name} invalid: {v.summary} {v.evidence[:3]}"
    return out


def _empty_disk_restart_while_the_lease_holds(seed: int, cut_from_authority: bool = True) -> tuple[RackFleet, str]:
    """Sector of 3 (App. A of the seed-002 audit): the authority A loses member B; member C restarts on an
    empty disk (and, by default, is cut from A): B and C would make a quorum without A while A's lease (acked
    by the old C) still holds."""
    f = RackFleet(seed, 1, 1, 3)
    f.run(1.5)
    (a,) = f.authority("d0s0")
    b, c = [r for r in f.racks if r != a]
    f.sim.cut(node(f, a), node(f, b))
    f.sim.cut(node(f, b), node(f, a))
    f.run(2.5)
    f.crash_monitor(c)
    f.restart_monitor(c, wipe=True)
    if cut_from_authority:
        f.sim.cut(node(f, a), node(f, c))
        f.sim.cut(node(f, c), node(f, a))
    f.run(5.0)
    return f, c


@pytest.mark.parametrize("cut", [True, False], ids=["cut-from-authority", "reaching-all"])
@pytest.mark.parametrize("seed", SEEDS)
def test_an_empty_disk_restart_never_makes_two_acting_authorities(seed, cut):
    f, c = _empty_disk_restart_while_the_lease_holds(seed, cut)
    assert f.wipes, f"seed={seed}: the disk was not wiped"
    starts = [e for e in f.events("monitor.start") if e["node"] == node(f, c)]
    assert starts[-1]["fields"]["restarted"] is False or starts[-1]["fields"].get("empty_disk"), f"seed={seed}"
    r = check_authority(f.events())
    assert not r["overlaps"], f"seed={seed}: two acting authorities at once: {r['overlaps'][:2]}"
    assert not r["two_holders"], f"seed={seed}: two holders of one designation: {r['two_holders'][:2]}"
    v = not_invalid(f, ("paxos-one-value", "one-authority-per-ballot"))
    assert v["one-authority-per-ballot"].status == "valid", f"seed={seed}: {v['one-authority-per-ballot'].summary}"


@pytest.mark.parametrize("seed", SEEDS)
def test_after_an_empty_disk_restart_the_racks_next_fault_reaches_the_fleet(seed):
    """The rack had decided facts (seqs 1, 2) before its monitor lost its disk: its next fault must get a
    fresh seq and be known fleet-wide, and the fleet must reboot it (App. B of the audit)."""
    f, c = _empty_disk_restart_while_the_lease_holds(seed)
    f.sim.heal()
    f.run(6.0)
    # build some history on the rack of another wiped monitor too: seqs decided before its wipe
    f.set_metrics(c, temp=96.0)
    f.run(7.0)
    f.set_metrics(c, temp=40.0)
    f.run(8.5)
    before = f.monitor(f.racks[0]).known.get(c)
    assert before is not None and before[2]["condition"] == "non-fault", f"seed={seed}: {before}"
    old_seq = before[0]
    f.crash_monitor(c)
    f.restart_monitor(c, wipe=True)
    f.run(9.5)
    f.set_metrics(c, os_errors=9)
    f.run(12.0)
    cond = [e for e in f.events("monitor.condition") if e["fields"]["rack"] == c and e["time"] > 9.5]
    assert cond and cond[0]["fields"]["condition"] == "needs-troubleshooting", f"seed={seed}: {cond}"
    new_seq = cond[0]["fields"]["seq"]
    assert new_seq > old_seq, f"seed={seed}: the restarted monitor reused seq {new_seq} (decided up to {old_seq})"
    known = {e["node"] for e in f.events("rack.known") if e["fields"]["subject"] == c
             and e["fields"]["seq"] == new_seq and e["fields"]["level"] == "fleet"
             and e["fields"]["condition"] == "needs-troubleshooting"}
    assert known == set(f.monitor_net), f"seed={seed}: fault seq {new_seq} not known fleet-wide: {sorted(known)}"
    reboots = [e for e in f.events("control.executed") if e["fields"]["rack"] == c]
    assert len(reboots) == 1, f"seed={seed}: {len(reboots)} reboots of {c}"
    f.run(15.0)
    v = not_invalid(f)
    assert v["fleet-agreement"].status != "invalid", f"seed={seed}"
    r = check_authority(f.events())
    assert not r["overlaps"], f"seed={seed}: {r['overlaps'][:2]}"


@pytest.mark.parametrize("seed", range(4))
def test_a_bigger_fleet_survives_empty_disk_restarts_of_authorities(seed):
    """Wipe the disks of sector authorities (they also hold DC and fleet seats) one after another."""
    f = RackFleet(seed, 2, 2, 3)
    f.run(2.0)
    for i in range(3):
        acting = f.authority(f.layout.sector_of(f.racks[0]))
        a = acting[0] if acting else f.racks[0]
        f.crash_monitor(a)
        f.run(2.5 + 1.5 * i)
        f.restart_monitor(a, wipe=True)
        f.run(3.5 + 1.5 * i)
    rack = f.racks[-1]
    f.set_metrics(rack, os_errors=9)
    f.run(10.0)
    assert {e["node"] for e in f.events("rack.known") if e["fields"]["subject"] == rack
            and e["fields"]["level"] == "fleet"} == set(f.monitor_net), f"seed={seed}"
    r = check_authority(f.events())
    assert not r["overlaps"] and not r["two_holders"], f"seed={seed}: {r['overlaps'][:2]} {r['two_holders'][:2]}"
    not_invalid(f)


# -- the rules, driven directly (no simulator) --------------------------------------------------------

LAYOUT = {"dcs": 1, "sectors": 1, "racks": 3}


def fresh(rack: str = "d0s0r1", durable: dict | None = None) -> RackMonitor:
    L = Layout(**LAYOUT)
    return RackMonitor(rack, LAYOUT, L.monitor(rack), random.Random(0), lease=0.25, heartbeat_every=0.05,
                       durable=durable)


def emits(effects, kind):
    return [e for e in effects if isinstance(e, Emit) and e.kind == kind]


def test_a_monitor_on_an_empty_disk_neither_votes_nor_proposes_until_enough_others_answered():
    m = fresh()
    eff = m.tick(0.0)
    assert eff[0] == Persist("monitor", {"cond_seq": 0, "executed": {}, "rejoining": True}), eff[0]
    asked = sorted(e.to for e in eff if isinstance(e, Send) and isinstance(e.msg, Rejoin))
    assert asked == ["mon-d0s0r0/monitor", "mon-d0s0r2/monitor"]
    other = "mon-d0s0r0/monitor"
    for msg in (Prepare("d0s0|condition|d0s0r0|3", Ballot(1, other)), Prepare("d0s0|authority|9", Ballot(4, other))):
        eff = m.handle(msg, other, 1.0)
        assert [e.fields["reason"] for e in emits(eff, "monitor.refused")] == \
            ["rejoining after a start on an empty disk"], eff
        assert not [e for e in eff if isinstance(e, Send)], "no promise"
    eff = m.handle(Heartbeat("d0s0", 2, "d0s0r0", 1.0), other, 1.0)
    assert not [e for e in eff if isinstance(e, Send) and isinstance(e.msg, HeartbeatAck)], "no lease promise"
    # its rack goes faulty: no seq, no proposal yet
    eff = m.handle(Status("d0s0r1", 1, {"os_errors": 9}), "rack-d0s0r1/control", 1.0)
    assert emits(eff, "monitor.deferred") and not emits(eff, "monitor.condition")
    assert not [e for e in eff if isinstance(e, Send)]
    # one answer is not enough: n - q + 1 = 2 others in a sector of 3
    assert not m.handle(RejoinReply("d0s0r1", 0.0, {"d0s0|authority": 7, "d0s0|condition|d0s0r1": 4}, 4,
                                    {"subject": "d0s0r1", "seq": 4, "condition": "non-fault"}, 12), other, 1.1)
    assert m.rejoining
    assert not m.handle(RejoinReply("d0s0r1", -1.0, {}), "mon-d0s0r2/monitor", 1.1), "another incarnation's answer"
    eff = m.handle(RejoinReply("d0s0r1", 0.0, {"d0s0|condition|d0s0r0": 3}, 2), "mon-d0s0r2/monitor", 1.2)
    assert not m.rejoining and emits(eff, "monitor.rejoined")
    cond = emits(eff, "monitor.condition")
    assert cond and cond[0].fields["seq"] == 5 and cond[0].fields["condition"] == "needs-troubleshooting"
    persists = [i for i, e in enumerate(eff) if isinstance(e, Persist) and e.key == "monitor"]
    sends = [i for i, e in enumerate(eff) if isinstance(e, Send)]
    assert persists and sends and persists[0] < sends[0], "the new counter is durable before any send"
    assert eff[persists[0]].data["blocked"] == {"d0s0|authority": 7, "d0s0|condition|d0s0r0": 3,
                                                "d0s0|condition|d0s0r1": 4}
    assert "rejoining" not in eff[persists[0]].data
    assert m.paxos.round >= 12, "its ballots start above every ballot the others saw"
    rounds = [i for i, e in enumerate(eff) if isinstance(e, Persist) and e.key == "proposer"]
    assert rounds and rounds[0] < sends[0] and eff[rounds[0]].data["round"] == 12, "durably so"
    # what it may have voted for before is refused for good; newer instances are voted on
    eff = m.handle(Prepare("d0s0|condition|d0s0r0|3", Ballot(20, other)), other, 1.3)
    assert [e.fields["reason"] for e in emits(eff, "monitor.refused")] == ["may have voted in it before losing my disk"]
    eff = m.handle(Prepare("d0s0|condition|d0s0r0|4", Ballot(20, other)), other, 1.3)
    assert any(isinstance(e, Send) and isinstance(e.msg, Promise) for e in eff)
    eff = m.handle(Prepare("d0s0|authority|7", Ballot(20, other)), other, 1.3)
    assert emits(eff, "monitor.refused")
    eff = m.handle(Prepare("d0s0|authority|8", Ballot(20, other)), other, 1.3)
    assert any(isinstance(e, Send) and isinstance(e.msg, Promise) for e in eff)


def test_every_start_keeps_quiet_for_a_lease_even_on_an_empty_disk():
    m = fresh()
    m.tick(10.0)
    for peer in ("mon-d0s0r0/monitor", "mon-d0s0r2/monitor"):
        m.handle(RejoinReply("d0s0r1", 10.0, {}), peer, 10.01)
    assert not m.rejoining
    other = "mon-d0s0r0/monitor"
    eff = m.handle(Prepare("d0s0|authority|1", Ballot(1, other)), other, 10.1)
    assert [e.fields["reason"] for e in emits(eff, "authority.refused")] == ["quiet period (restart or new seat)"]
    eff = m.handle(Heartbeat("d0s0", 1, "d0s0r0", 10.1), other, 10.1)
    assert not [e for e in eff if isinstance(e, Send) and isinstance(e.msg, HeartbeatAck)]
    eff = m.handle(Prepare("d0s0|authority|1", Ballot(1, other)), other, 10.3)
    assert any(isinstance(e, Send) and isinstance(e.msg, Promise) for e in eff), "after a lease it votes"


def test_a_crash_in_the_middle_of_a_rejoin_rejoins_again_and_a_rejoined_disk_keeps_its_blocks():
    m = fresh(durable={"monitor": {"cond_seq": 0, "executed": [], "rejoining": True}})
    assert m.rejoining and m.empty_disk
    m = fresh(durable={"monitor": {"cond_seq": 5, "executed": [], "blocked": {"d0s0|authority": 7}}})
    assert not m.rejoining and m.cond_seq == 5
    m.tick(0.0)
    other = "mon-d0s0r0/monitor"
    eff = m.handle(Prepare("d0s0|authority|6", Ballot(30, other)), other, 1.0)
    assert emits(eff, "monitor.refused"), "blocks survive a later restart with the disk"


def test_a_peer_answers_a_rejoin_with_what_it_knows():
    m = fresh("d0s0r0")
    m.tick(0.0)
    for peer in ("mon-d0s0r1/monitor", "mon-d0s0r2/monitor"):
        m.handle(RejoinReply("d0s0r0", 0.0, {}), peer, 0.01)
    m.known["d0s0r1"] = (2, 3, {"subject": "d0s0r1", "seq": 2, "condition": "non-fault"})
    m.handle(Prepare("d0s0|authority|3", Ballot(6, "mon-d0s0r2/monitor")), "mon-d0s0r2/monitor", 1.0)
    eff = m.handle(Rejoin("d0s0r1", 5.0), "mon-d0s0r1/monitor", 1.0)
    (reply,) = [e.msg for e in eff if isinstance(e, Send)]
    assert isinstance(reply, RejoinReply) and reply.nonce == 5.0 and reply.seq == 2 and reply.round == 6
    assert reply.frontier["d0s0|authority"] == 3 and reply.value["seq"] == 2
    eff = m.handle(Rejoin("d0s0r1", 5.0), "mon-d0s0r2/monitor", 1.0)
    assert emits(eff, "monitor.bad_input"), "only a rack's own monitor rejoins for it"


@pytest.mark.parametrize("seed", SEEDS)
def test_random_partitions_crashes_and_one_lost_disk_at_a_time_stay_safe(seed):
    """Partitions, crashes with the disk kept, and every 2 s one monitor that loses its disk (one at a time:
    two members of one group losing their disks together is outside the failure model)."""
    rng = random.Random(seed)
    f = RackFleet(seed, 2, 2, 3)
    mons = f.monitor_net
    t = 1.0
    while t < 9.0:
        t += rng.uniform(0.2, 0.6)
        what = rng.random()
        if what < 0.35:
            side = set(rng.sample(mons, rng.randint(1, len(mons) - 1)))
            f.at(t, f.sim.partition, [f.pair([m for m in mons if m in side]), f.pair([m for m in mons if m not in side])])
            f.at(t + rng.uniform(0.3, 1.2), f.sim.heal)
        elif what < 0.6:
            r = rng.choice(f.racks)
            f.at(t, f.crash_monitor, r)
            f.at(t + rng.uniform(0.1, 1.0), f.restart_monitor, r)
        else:
            f.at(t, f.set_metrics, rng.choice(f.racks), os_errors=rng.choice([0, 9]))
    for i, at in enumerate((2.0, 4.0, 6.0, 8.0)):
        r = f.racks[(seed + i * 5) % len(f.racks)]
        f.at(at, f.crash_monitor, r)
        f.at(at + 0.05, f.restart_monitor, r, wipe=True)
    f.run(10.0)
    f.sim.heal()
    for r in f.racks:
        f.restart_monitor(r)
    f.run(16.0)
    r = check_authority(f.events())
    assert not r["overlaps"] and not r["two_holders"], f"seed={seed}: {r['overlaps'][:2]} {r['two_holders'][:2]}"
    v = not_invalid(f)
    assert v["paxos-one-value"].status == "valid", f"seed={seed}: {v['paxos-one-value'].summary}"
    rejoined = {e["node"] for e in f.events("monitor.rejoined") if e["time"] > 2.0}
    assert rejoined, f"seed={seed}: no monitor rejoined after losing its disk"


@pytest.mark.parametrize("racks, need", [(1, 0), (2, 1), (3, 2), (5, 3), (6, 3)])
def test_a_rejoin_waits_for_enough_others_to_meet_every_quorum(racks, need):
    layout = {"dcs": 1, "sectors": 1, "racks": racks}
    L = Layout(**layout)
    m = RackMonitor("d0s0r0", layout, L.monitor("d0s0r0"), random.Random(0), lease=0.25, heartbeat_every=0.05)
    eff = m.tick(0.0)
    assert m._rejoin_need() == need
    if need == 0:
        assert not m.rejoining and emits(eff, "monitor.rejoined"), "nobody to ask in a sector of 1"
        return
    others = [L.monitor(r) for r in L.all_racks()[1:]]
    for i, peer in enumerate(others[:need]):
        assert m.rejoining, f"{i} of {need} answers"
        m.handle(RejoinReply("d0s0r0", 0.0, {}), peer, 0.01)
    assert not m.rejoining
