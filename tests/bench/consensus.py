"""Benchmark: rack monitors' hierarchical consensus - fault to fleet-wide agreement, authority failover.

How this works
--------------
**Simulated** (``tests/rack_sim.py``: 3 data centers x 4 sectors x 6 racks =
72 monitors, links 0.5-2 ms), over ``--seeds`` seeds each:

* ``fault_to_fleet``: after the tree has formed (3 s), one random rack's
  control loses power; the time from its monitor's fault
  (``monitor.condition``) to the moment the last of the 72 monitors knows it
  at fleet level (``rack.known``, level ``fleet``). Messages per decision:
  Paxos, fact and sync messages sent in that window (heartbeats and status
  reports excluded) divided by the consensus instances chosen in it (sector,
  data center, fleet: 3 per fault).
* **baseline, same run**: flat Paxos - one ``PaxosNode`` per monitor, all 72
  in one group, one proposal, same links: time until all 72 learn the value
  and messages per decision. Ratios: hierarchical / flat.
* ``authority_failover_sim``: the acting authority of a random sector is
  crashed; time until another monitor acts as that sector's authority
  (``authority.acting``).

**Bounded state and traffic** (issue 17, deliverable 4), simulated:

* ``live_keys_per_monitor``: durable keys per monitor (mean and max) after
  ``--changes`` condition changes (default 1,000; 200 with ``--quick``) spread
  over the racks of a 1 x 2 x 6 fleet (12 racks); **baseline, same run**: the
  keys the same monitors would hold without retirement (every key each one
  ever wrote, deletions ignored). Goal: bounded by racks x a small constant.
* ``restart_s`` after those changes: wall time to rebuild the busiest monitor from
  its disk and run its start tick (load + replay); baseline: the same from
  the disk without retirement.
* ``dead_member_msgs_per_s``: a sector member of the 72-monitor fleet (12 with ``--quick``) dies
  for good, four racks elsewhere fault; messages other monitors send it in
  the 10 s from 10 s after its death (its own rack control's reports are
  rack-local and not counted); **baseline, same run**: the same with the
  silent-peer hold-back off (``silent_after`` beyond the run). Goal < 1.

**Real processes** (``topologies/racks.toml``: 22 processes on 127.0.0.1,
monitors packed by column, see ``topologies/rack/gen.py``), ``--real-runs``
chaos runs with the ``kill`` nemesis (SIGKILL at 4 s, restart 3 s later):
``mon-d<i>c1`` (the process of the first monitor to stand in each sector, so
often of a sector's, a data center's or the fleet's authority), and, once per
three runs, ``racks-d2`` (the rack controls of data center 2: 24
simultaneous power losses):

* ``authority_failover_p50_s``: kill -> a new ``authority.acting`` for each
  group whose authority was killed;
* ``fault_to_fleet_p50_s``: each powered-off rack's fault -> last monitor
  knowing it fleet-wide (24 faults at once, so a burst, not one fault).

The timeout settings are printed beside the figures. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parents[1]))

from actors.eventlog import read_events  # noqa: E402
from actors.simulator import Simulator  # noqa: E402
from protocols.consensus import PaxosNode  # noqa: E402
from tests.rack_sim import CLEAN, RackFleet  # noqa: E402
from transport.codec import message  # noqa: E402
from transport.sim import SimNetwork  # noqa: E402

CONSENSUS_TAGS = ("paxos.", "rack.Fact", "rack.Sync", "rack.TermHint")


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))]


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(x, nd)


def sim_fault(seed: int) -> dict:
    f = RackFleet(seed, trace=True)
    rack = random.Random(seed).choice(f.racks)
    f.at(3.0, f.power_off, rack)
    f.run(8.0)
    evs = f.events()
    fault = next(e["time"] for e in evs if e["kind"] == "monitor.condition" and e["fields"]["rack"] == rack)
    known = [e["time"] for e in evs if e["kind"] == "rack.known" and e["fields"]["subject"] == rack
             and e["fields"]["level"] == "fleet"]
    done = max(known) if len(known) == 72 else None
    window = [e for e in evs if fault <= e["time"] <= (done or fault)]
    msgs = sum(1 for e in window if e["kind"] == "net.send" and e["fields"]["tag"].startswith(CONSENSUS_TAGS))
    decisions = len({e["fields"]["instance"] for e in window if e["kind"] == "paxos.chosen"
                     and rack in e["fields"]["instance"]})
    return {"time": None if done is None else done - fault, "msgs": msgs, "decisions": decisions}


def sim_failover(seed: int) -> tuple[float | None, dict]:
    f = RackFleet(seed)
    f.run(3.0)
    sector = random.Random(seed).choice([s for d in f.layout.all_dcs() for s in f.layout.sectors_of(d)])
    (holder,) = f.authority(sector)
    f.crash_monitor(holder)
    t0 = f.sim.now
    f.run(t0 + 3.0)
    acting = [e["time"] for e in f.events("authority.acting") if e["fields"]["group"] == sector and e["time"] > t0]
    m = f.monitor(next(r for r in f.racks if r != holder))
    settings = {"heartbeat_every": m.heartbeat_every, "lease": m.lease, "stagger": m.stagger,
                "status_deadline": m.detector.deadline}
    return (acting[0] - t0 if acting else None), settings


@message("benchconsensus.Propose")
class Propose:
    value: str


class _Flat:
    tick_interval = None

    def __init__(self, node: PaxosNode):
        self.node = node

    def tick(self, now):
        return self.node.tick(now)

    def handle(self, msg, sender, now):
        if isinstance(msg, Propose):
            return self.node.propose("fleet|condition|x|1", msg.value, now)
        return self.node.handle(msg, sender, now)


def flat_baseline(seed: int, n: int = 72) -> dict:
    members = [f"m{i}/paxos" for i in range(n)]
    sim = Simulator(seed, SimNetwork(default=CLEAN), trace_messages=True)
    for m in members:
        sim.add(m, _Flat(PaxosNode(m, members, sim.rng(m))), host=lambda eff, addr, s: None)
    sim.send(members[random.Random(seed).randrange(n)], Propose("powered-off"), at=1.0)
    sim.run(until=10.0)
    evs = sim.event_log.events()
    learned = [e["time"] for e in evs if e["kind"] == "paxos.chosen"]
    msgs = sum(1 for e in evs if e["kind"] == "net.send" and e["fields"]["tag"].startswith("paxos."))
    return {"time": max(learned) - 1.0 if len(learned) == n else None, "msgs": msgs}


def bounded_state(seed: int, changes: int) -> dict:
    """Durable keys and restart time after ``changes`` condition changes (module doc)."""
    import copy as _copy

    from protocols.rack import RackMonitor
    f = RackFleet(seed, 1, 2, 6, history=True)
    history = f.history
    every, t = 0.25, 1.5
    per_rack = -(-changes // len(f.racks))
    for i in range(per_rack):
        for j, r in enumerate(f.racks):
            if i * len(f.racks) + j < changes:
                f.at(t + i * every, f.set_metrics, r, temp=96.0 if i % 2 == 0 else 40.0)
    f.run(t + per_rack * every + 2.0)
    done = sum(f.monitor(r).cond_seq for r in f.racks)
    live = [len(f.disk[m]) for m in f.layout.all_monitors()]
    full = [len(history[m]) for m in f.layout.all_monitors()]
    busiest = max(f.layout.all_monitors(), key=lambda m: len(history[m]))
    rack = f.layout.rack_of_monitor(busiest)

    def restart(disk: dict) -> float:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            m = RackMonitor(rack, f.layout_dict, busiest, random.Random(1), durable=_copy.deepcopy(disk))
            m.tick(100.0)
            best = min(best, time.perf_counter() - t0)
        return best
    return {"changes": done, "live_mean": statistics.mean(live), "live_max": max(live),
            "full_mean": statistics.mean(full), "full_max": max(full), "racks": len(f.racks),
            "restart_s": restart(f.disk[busiest]), "restart_full_s": restart(_old_disk(history[busiest]))}


def _old_disk(disk: dict) -> dict:
    """A monitor's every key ever written, without its retirement watermarks: what it loaded before retiring."""
    import copy as _copy
    out = _copy.deepcopy(disk)
    if isinstance(out.get("monitor"), dict):
        out["monitor"].pop("retired", None)
    return out


def dead_member(seed: int, hold_back: bool, dcs: int = 3, sectors: int = 4) -> float:
    """Messages per second other monitors send a dead sector member, from 10 s to 20 s after its death."""
    kw = {} if hold_back else {"silent_after": 1e9, "probe_cap": 1e9}
    f = RackFleet(seed, dcs, sectors, 6, trace=True, **kw)
    f.run(2.0)
    auth = {r for r in f.racks for g in ("fleet", f.layout.dc_of(r), f.layout.sector_of(r)) if r in f.authority(g)}
    dead = next(r for r in f.layout.racks_of("d0s0") if r not in auth)
    f.crash_monitor(dead)
    died = f.sim.now
    others = [r for r in f.racks if r not in auth and r != dead]
    for i, r in enumerate(random.Random(seed).sample(others, 4)):
        f.at(died + 0.5 + i, f.set_metrics, r, temp=96.0)
    f.run(died + 20.0)
    to = f.layout.monitor(dead)
    n = sum(1 for e in f.events("net.send") if died + 10.0 <= e["time"] < died + 20.0
            and e["fields"]["dst"] == to and e["fields"]["src"].startswith("mon-"))
    return n / 10.0


def real_runs(runs: int) -> dict:
    from topologies.chaos import run_chaos
    from topologies.loader import load_topology
    topo = load_topology(_HERE.parents[1] / "topologies" / "racks.toml")
    failover, f2f = [], []
    targets = [f"mon-d{i % 3}c1" for i in range(runs)] + ["racks-d2"] * max(1, runs // 3)
    for i, target in enumerate(targets):
        if True:
            with tempfile.TemporaryDirectory() as tmp:
                t = time.perf_counter()
                out = run_chaos(topo, Path(tmp), seed=10 + i, nemesis="kill", quiet=True,
                                overrides={"start": 4.0, "duration": 3.0, "target": target}, duration=12.0)
                evs = read_events(Path(tmp) / "events.jsonl")
                stop = next((e["time"] for e in evs if e["kind"] == "node.stopped"), None)
                evs = [e for e in evs if stop is None or e["time"] < stop]  # not the launcher's shutdown
                bad = [v["checker"] for v in out.verdicts if v["status"] == "invalid"]
                kill = next((e["time"] for e in evs if e["kind"] == "nemesis.kill"), None)
                if kill is None:
                    print(f"  real run {i + 1}: no kill before the run ended ({out.run.reason}); skipped", flush=True)
                    continue
                if target.startswith("mon-"):
                    lost = {e["fields"]["group"] for e in evs if e["kind"] == "authority.lease"
                            and e["node"] == target and e["time"] < kill and e["fields"]["until"] > kill}
                    for g in sorted(lost):
                        nxt = [e["time"] for e in evs if e["kind"] == "authority.acting" and e["fields"]["group"] == g
                               and e["time"] > kill and e["node"] != target]
                        if nxt:
                            failover.append(nxt[0] - kill)
                    print(f"  real run {i + 1}: killed {target}: {len(lost)} groups lost their authority "
                          f"({', '.join(sorted(lost))}); invalid checkers: {bad or 'none'}; "
                          f"{time.perf_counter() - t:.1f} s", flush=True)
                else:
                    faults = {e["fields"]["rack"]: (e["time"], e["fields"]["seq"]) for e in evs
                              if e["kind"] == "monitor.condition" and e["fields"]["condition"] == "powered-off"
                              and e["time"] > kill}
                    for rack, (tf, seq) in faults.items():
                        first: dict[str, float] = {}  # monitor -> when it first knew this fault (or a later fact)
                        for e in evs:
                            f = e["fields"]
                            if (e["kind"] == "rack.known" and f["subject"] == rack and f["level"] == "fleet"
                                    and f["seq"] >= seq):
                                first.setdefault(e["node"] + "/" + e["actor"], e["time"])
                        if len(first) == 72:
                            f2f.append(max(first.values()) - tf)
                    print(f"  real run {i + 1}: killed {target}: {len(faults)} racks powered off; invalid checkers: "
                          f"{bad or 'none'}; {time.perf_counter() - t:.1f} s", flush=True)
    return {"failover": failover, "f2f": f2f}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=None, help="simulated runs per figure (default 40; 4 with --quick)")
    ap.add_argument("--real-runs", type=int, default=None, help="real monitor-kill runs (default 3; 1 with --quick)")
    ap.add_argument("--changes", type=int, default=None,
                    help="condition changes before counting durable keys (default 1000; 200 with --quick)")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    seeds = a.seeds or (4 if a.quick else 40)
    changes = a.changes or (200 if a.quick else 1000)
    real = a.real_runs if a.real_runs is not None else (1 if a.quick else 3)

    print(f"simulated: 3 DCs x 4 sectors x 6 racks = 72 monitors, {seeds} seeds", flush=True)
    f2f, msgs, decisions, flat_t, flat_m, fo = [], [], [], [], [], []
    settings = {}
    for s in range(seeds):
        r = sim_fault(s)
        if r["time"] is not None:
            f2f.append(r["time"])
        msgs.append(r["msgs"])
        decisions.append(max(1, r["decisions"]))
        b = flat_baseline(s)
        if b["time"] is not None:
            flat_t.append(b["time"])
        flat_m.append(b["msgs"])
        t, settings = sim_failover(s)
        if t is not None:
            fo.append(t)
        if (s + 1) % max(1, seeds // 4) == 0:
            print(f"  {s + 1}/{seeds} seeds", flush=True)
    mpd = sum(msgs) / sum(decisions)
    flat_mpd = statistics.mean(flat_m)
    print(f"timeouts: monitor heartbeat {settings['heartbeat_every']} s, lease {settings['lease']} s, "
          f"candidate stagger {settings['stagger']} s, status deadline {settings['status_deadline']} s")
    print(f"fault -> fleet-wide (sim): p50 {pct(f2f, 50):.4f} s, p99 {pct(f2f, 99):.4f} s "
          f"({len(f2f)}/{seeds} reached all 72)")
    print(f"  baseline flat Paxos over 72 (sim): p50 {pct(flat_t, 50):.4f} s; ratio {pct(f2f, 50) / pct(flat_t, 50):.2f}")
    print(f"messages per decision: {mpd:.1f} (hierarchy: {statistics.mean(msgs):.0f} messages for "
          f"{statistics.mean(decisions):.1f} decisions per fault)")
    print(f"  baseline flat Paxos over 72: {flat_mpd:.0f} messages per decision; ratio {mpd / flat_mpd:.3f}")
    print(f"authority failover (sim, sector authority crashed): p50 {pct(fo, 50):.4f} s, p99 {pct(fo, 99):.4f} s")

    fig = {"fault_to_fleet_sim_p50_s": _r(pct(f2f, 50)), "fault_to_fleet_sim_p99_s": _r(pct(f2f, 99)),
           "flat_paxos_sim_p50_s": _r(pct(flat_t, 50)), "msgs_per_decision": _r(mpd, 1),
           "flat_msgs_per_decision": _r(flat_mpd, 1), "msgs_ratio": _r(mpd / flat_mpd, 3),
           "authority_failover_sim_p50_s": _r(pct(fo, 50)), "authority_failover_sim_p99_s": _r(pct(fo, 99)),
           "timeouts": settings}

    b = bounded_state(1, changes)
    print(f"durable keys per monitor after {b['changes']} condition changes (sim, 1 x 2 x 6 = {b['racks']} racks): "
          f"mean {b['live_mean']:.1f}, max {b['live_max']} (goal: bounded by racks x a small constant)")
    print(f"  baseline without retirement (every key each monitor wrote, same run): mean {b['full_mean']:.1f}, "
          f"max {b['full_max']}; ratio {b['live_mean'] / b['full_mean']:.3f}")
    print(f"restart of the busiest monitor after {b['changes']} changes (load + start tick): "
          f"{b['restart_s'] * 1000:.2f} ms; baseline from the disk without retirement "
          f"{b['restart_full_s'] * 1000:.2f} ms; ratio {b['restart_s'] / b['restart_full_s']:.3f}")
    dm_dcs, dm_sectors = (1, 2) if a.quick else (3, 4)
    dm, dm_base = dead_member(1, True, dm_dcs, dm_sectors), dead_member(1, False, dm_dcs, dm_sectors)
    print(f"messages/s to a dead sector member 10-20 s after its death (sim, {dm_dcs * dm_sectors * 6} monitors, 4 faults "
          f"elsewhere): {dm:.2f} (goal < 1); baseline without the silent-peer hold-back, same run: {dm_base:.2f}; "
          f"ratio {dm / dm_base if dm_base else float('nan'):.3f}")
    fig.update({"live_keys_per_monitor": _r(b["live_mean"], 1), "live_keys_per_monitor_max": b["live_max"],
                "live_keys_baseline": _r(b["full_mean"], 1), "live_keys_ratio": _r(b["live_mean"] / b["full_mean"], 3),
                "condition_changes": b["changes"], "restart_s": _r(b["restart_s"], 5),
                "restart_baseline_s": _r(b["restart_full_s"], 5),
                "restart_ratio": _r(b["restart_s"] / b["restart_full_s"], 3),
                "dead_member_msgs_per_s": _r(dm, 2), "dead_member_msgs_per_s_baseline": _r(dm_base, 2)})
    if real:
        from topologies.loader import load_topology
        d = load_topology(_HERE.parents[1] / "topologies" / "racks.toml")
        mon = next(a.params for n in d.nodes for a in n.actors if a.kind == "rack.monitor")
        real_settings = {k: mon.get(k) for k in ("heartbeat_every", "lease", "stagger", "status_deadline")}
        fig["real_timeouts"] = real_settings
        print(f"real processes: topologies/racks.toml (22 processes), {real} monitor-kill run(s); timeouts "
              f"{real_settings}, transport heartbeat {d.transport.heartbeat} s x {d.transport.liveness}", flush=True)
        rr = real_runs(real)
        print(f"authority failover (real, SIGKILL): p50 {pct(rr['failover'], 50)} s, "
              f"p99 {pct(rr['failover'], 99)} s over {len(rr['failover'])} groups (target p50 < 0.5 s)")
        print(f"fault -> fleet-wide (real, 24 racks powered off at once): p50 {pct(rr['f2f'], 50)} s, "
              f"p99 {pct(rr['f2f'], 99)} s over {len(rr['f2f'])} faults")
        fig.update({"authority_failover_p50_s": _r(pct(rr["failover"], 50)),
                    "authority_failover_p99_s": _r(pct(rr["failover"], 99)),
                    "fault_to_fleet_p50_s": _r(pct(rr["f2f"], 50)), "fault_to_fleet_p99_s": _r(pct(rr["f2f"], 99))})
    else:
        fig.update({"authority_failover_p50_s": None, "fault_to_fleet_p50_s": None})
    print(json.dumps(fig))
    return 0


if __name__ == "__main__":
    sys.exit(main())
