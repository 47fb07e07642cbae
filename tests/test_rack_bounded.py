"""Bounded state and traffic of rack monitors (issue 17, deliverable 4).

Monitors run for months: their durable state must be bounded by the layout
(racks x a small constant), not by history, and a member that died must not
keep receiving a stream of resends. Seeded simulations (tests/rack_sim.RackFleet,
virtual clock); every assertion names its seed.

* Decided instances are retired behind a per-stream watermark: a newer fact
  about a rack (a newer term, a newer decision) retires the older instances,
  their durable keys go, and acceptors refuse them instead of voting afresh.
* A restart replays only live state.
* Retries to a member that stays silent back off and stop until it is heard again.
"""

from __future__ import annotations

import pytest

from protocols.consensus import Prepare
from protocols.consensus.ballot import Ballot
from tests.rack_sim import RackFleet
from topologies.checkers import run_checkers

CHECKERS = ("paxos-one-value", "one-authority-per-ballot", "fleet-agreement", "control-once")


def node(f: RackFleet, rack: str) -> str:
    return f.layout.monitor(rack).split("/")[0]


def not_invalid(f: RackFleet) -> None:
    for v in run_checkers(f.events()):
        if v.checker in CHECKERS:
            assert v.status != "invalid", f"seed={f.seed}: {v.checker} invalid: {v.summary} {v.evidence[:3]}"


def toggle(f: RackFleet, racks: list[str], changes: int, start: float = 1.5, every: float = 0.3) -> float:
    """``changes`` condition changes of each rack (overheated, then cool again, ...); returns when they end."""
    for i in range(changes):
        for r in racks:
            f.at(start + i * every, f.set_metrics, r, temp=96.0 if i % 2 == 0 else 40.0)
    return start + changes * every


def instance_keys(f: RackFleet, rack: str) -> list[str]:
    return [k for k in f.disk[f.layout.monitor(rack)] if k.startswith("instance/")]


BOUND_PER_RACK = 4  # condition instances at sector, data-center and fleet level, and a decision


@pytest.mark.parametrize("seed", range(3))
def test_durable_state_is_bounded_by_the_layout_not_by_history(seed):
    f = RackFleet(seed, 1, 2, 3)
    busy = ["d0s0r1", "d0s1r2"]
    end = toggle(f, busy, 60)
    f.run(end + 2.0)
    for r in busy:
        assert f.monitor(r).cond_seq >= 60, f"seed={seed}: {r} raised only {f.monitor(r).cond_seq} changes"
    bound = BOUND_PER_RACK * len(f.racks) + 8  # + authority instances of the groups (old and new seat views)
    for r in f.racks:
        keys = instance_keys(f, r)
        assert len(keys) <= bound, f"seed={seed}: {r} holds {len(keys)} instance keys (bound {bound}): {keys[:6]}"
    # every monitor agrees on the latest facts, from live state only
    for r in f.racks:
        for b in busy:
            assert f.monitor(r).known[b][0] == f.monitor(b).cond_seq, f"seed={seed}: {r} on {b}"
    not_invalid(f)


@pytest.mark.parametrize("seed", range(3))
def test_an_acceptor_refuses_a_retired_instance_instead_of_voting_afresh(seed):
    f = RackFleet(seed, 1, 1, 3)
    end = toggle(f, ["d0s0r1"], 6)
    f.run(end + 1.0)
    old = "d0s0|condition|d0s0r1|2"  # decided long ago, superseded by seqs 3..6
    voter = "d0s0r2"
    assert f"instance/{old}" not in f.disk[f.layout.monitor(voter)], f"seed={seed}: {old} not retired"
    t0 = f.sim.now
    f.sim.send(f.layout.monitor(voter), Prepare(old, Ballot(10_000, f.layout.monitor("d0s0r0"))),
               sender=f.layout.monitor("d0s0r0"))
    f.run(t0 + 0.5)
    votes = [e for e in f.events() if e["time"] >= t0 and e["kind"] in ("paxos.promise", "paxos.accepted")
             and e["fields"].get("instance") == old]
    assert not votes, f"seed={seed}: voted again in a retired instance: {votes[:2]}"
    assert f"instance/{old}" not in f.disk[f.layout.monitor(voter)], f"seed={seed}: {old} came back to the disk"


@pytest.mark.parametrize("seed", range(3))
def test_a_restart_replays_only_live_state(seed):
    f = RackFleet(seed, 1, 2, 3)
    end = toggle(f, ["d0s0r1"], 30)
    f.run(end + 1.0)
    r = "d0s0r2"
    f.crash_monitor(r)
    f.restart_monitor(r)
    t0 = f.sim.now
    # what a restart loads and replays (every chosen value is learned again and re-announced): live state only
    replay = len(instance_keys(f, r))
    assert replay <= BOUND_PER_RACK * len(f.racks) + 8, f"seed={seed}: restart replays {replay} instances"
    f.run(t0 + 2.0)
    assert f.monitor(r).known["d0s0r1"][0] == f.monitor("d0s0r1").cond_seq, f"seed={seed}"
    f.set_metrics("d0s0r2", temp=96.0)
    f.run(t0 + 4.0)
    seq = f.monitor(r).cond_seq
    for other in f.racks:
        k = f.monitor(other).known.get(r)
        assert k is not None and k[0] == seq and k[2]["condition"] == "needs-repair", f"seed={seed}: {other}: {k}"
    not_invalid(f)


def sends_to(f: RackFleet, address: str, t0: float, t1: float) -> list[dict]:
    """Messages other monitors sent to ``address`` in [t0, t1) (its own rack control's reports excluded)."""
    return [e for e in f.events("net.send") if t0 <= e["time"] < t1 and e["fields"]["dst"] == address
            and e["fields"]["src"].startswith("mon-")]


@pytest.mark.parametrize("seed", range(4))
def test_a_dead_member_gets_under_one_message_a_second_within_10_s(seed):
    """App. D of the seed-002 audit: a dead sector member received ~108 messages/s after four faults."""
    f = RackFleet(seed, 1, 2, 3, trace=True)
    f.run(1.5)
    auth = {r for g in ("d0s0", "d0", "fleet") for r in f.authority(g)}
    dead = next(r for r in f.layout.racks_of("d0s0") if r not in auth)
    f.crash_monitor(dead)
    died = f.sim.now
    for i, r in enumerate(r for r in f.racks if r != dead and r not in auth):
        f.at(2.0 + i, f.set_metrics, r, temp=96.0)
    f.run(died + 20.0)
    late = sends_to(f, f.layout.monitor(dead), died + 10.0, died + 20.0)
    rate = len(late) / 10.0
    tags = sorted({e["fields"]["tag"] for e in late})
    assert rate < 1.0, f"seed={seed}: {rate:.1f} messages/s to the dead {dead} 10 s after its death ({tags})"
    # heard again (restarted with its disk): it gets what it missed, and its rack's next fault reaches the fleet
    f.restart_monitor(dead)
    f.run(died + 24.0)
    for r in f.racks:
        if r != dead and f.monitor(r).known.get(r):
            k = f.monitor(dead).known.get(r)
            assert k == f.monitor(r).known[r] or (k and k[0] >= f.monitor(r).known[r][0]), \
                f"seed={seed}: {dead} missed {r}: {k} vs {f.monitor(r).known[r]}"
    f.set_metrics(dead, temp=96.0)
    f.run(died + 27.0)
    seq = f.monitor(dead).cond_seq
    for r in f.racks:
        k = f.monitor(r).known.get(dead)
        assert k is not None and k[0] == seq, f"seed={seed}: {r} does not know {dead}'s fault: {k}"
    not_invalid(f)


def test_a_monitors_log_is_fsynced_with_its_directory_when_created_and_when_compacted(tmp_path, monkeypatch):
    """A rename (creation of the log, compaction) is durable only once the directory is fsynced: a power
    loss could otherwise drop the newest promise. A monitor retiring instances deletes keys (None), and a
    compaction then leaves them out."""
    import os

    from topologies.durable import FileStore
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append(("fsync", "dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file"))
        return real_fsync(fd)

    def replace(a, b):
        calls.append(("replace", os.path.basename(str(b))))
        return real_replace(a, b)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    store = FileStore(tmp_path, compact_factor=2, compact_min=4)
    addr = "mon-d0s0r0/monitor"
    for i in range(12):
        store.write(addr, f"instance/d0s0|condition|d0s0r0|{i}", {"chosen": [[1, "m"], i]})
        if i >= 2:
            store.write(addr, f"instance/d0s0|condition|d0s0r0|{i - 2}", None)  # retired
        store.sync(addr)
    log = store.path(addr).name
    renames = [i for i, c in enumerate(calls) if c == ("replace", log)]
    assert len(renames) >= 2, calls  # created, then compacted at least once
    for i in renames:
        assert ("fsync", "dir") in calls[i + 1:i + 3], f"no directory fsync right after renaming {log}: {calls}"
    store.close()
    assert sorted(FileStore(tmp_path).load(addr)) == [f"instance/d0s0|condition|d0s0r0|{i}" for i in (10, 11)]


def test_a_sync_carrying_more_facts_than_the_layout_has_subjects_is_refused_whole_and_said_once():
    """A SyncReply (or SyncRequest) lists a peer's fleet facts: at most one per subject of the layout (racks, one
    sector ahead, sectors, data centers, the configuration). A longer list is no honest peer's: it is refused
    in one bad-input event, not judged fact by fact (a 1 MB frame of bogus facts was one event each)."""
    from protocols.rack.messages import SyncReply, SyncRequest
    f = RackFleet(1, dcs=2, sectors=2, racks=3)
    f.run(2.0)
    m = f.monitor("d0s1r2")
    peer = f.layout.monitor("d1s0r0")
    bogus = [{"subject": f"d0s0r{i % 3}", "seq": 1000 + i, "condition": "powered-off"} for i in range(500)]
    for msg in (SyncReply(bogus), SyncRequest(bogus)):
        out = m.handle(msg, peer, f.sim.now)
        bad = [e for e in out if getattr(e, "kind", None) == "monitor.bad_input"]
        assert len(bad) == 1 and "500 facts" in bad[0].fields["reason"], bad
        assert not [e for e in out if getattr(e, "kind", None) == "rack.known"], "a refused sync taught something"
        assert m.known.get("d0s0r0") is None or m.known["d0s0r0"][0] < 1000
    # an honest sync still teaches
    good = [{"subject": "d0s0r1", "seq": 7, "condition": "powered-off", "indicator": ["red", "flashing"]}]
    out = m.handle(SyncReply(good), peer, f.sim.now)
    assert [e for e in out if getattr(e, "kind", None) == "rack.known"], out
