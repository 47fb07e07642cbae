"""Benchmark: a 10,000-server boot storm in the simulator, admission-controlled vs fixed-limit vs naive.

How this works
--------------
One workload, four fleets, all in the deterministic simulator (harness:
``tests/workflow_sim.py``; naive fleet: ``tests/naive_fleet.py``):

* workload: N servers (``--servers``, default 10,000) power on uniformly over
  [0, 2] s and each runs one stage needing resource ``r0``; the stage's work
  is ``stage_time * lognormvariate(-sigma^2/2, sigma)`` seconds at nominal
  speed (lognormal, mean ``--stage-time`` = 30 s, ``--stage-sigma`` = 0.25),
  drawn per server from the seed. The store is processor sharing with a
  per-client cap: ``C`` (``--capacity``, default 100) concurrent transfers
  run at full speed, more slow everyone down. The ideal makespan lower bound
  is the harness's: sum of stage work / C.
* **adaptive** (the default ``build_storm``): servers ask the resource
  controller (AIMD limit starting at C), wait pending / parking / dormant as
  directed. Figures: makespan / ideal (target <= 1.10); peak holders and the
  limit in force, from the event log via ``check_admission``
  (``peak_holders_over_limit`` = max over time of holders - limit in force,
  0 when never above); controller inbound messages per server; energy:
  server-seconds waiting pending / parking / dormant, weighted 1 / parking
  power (0.4) / 0, against an all-pending baseline (every waiting second at
  full power).
* **proxied**: the same with ``--proxies`` (4) proxies, proxy-first:
  ``proxy_reduction`` = controller inbound without proxies / with.
* **fixed**: ``adaptive=False``, limit = C (no adaptation).
* **naive**: no controller; each server starts its transfer and, when the
  store refuses it (``fail_above=1.0``: a start while C are in flight fails
  after 1 s), retries after ``uniform(0, min(cap, base * 2**attempt))``
  (exponential backoff, full jitter; ``--naive-base`` 1 s, ``--naive-cap``
  64 s). Its messages are its transfer attempts.

* **isolated**: the adaptive fleet with the controller cut off from every server for 2 s at a
  third of the ideal makespan; ``isolation_stall_s`` = time after the heal until the store has
  C - 1 transfers in flight again (goal <= 1 s).
* **restarted** / **blank-disk**: the adaptive fleet with its resource controller restarted at the
  same moment, from its durable record / on a blank disk: ``restart_makespan_ratio`` (goal <= 1.15).
* **slow-boot**: servers take 90 s from power-on to asking (and tell it), controllers are set for
  ``wake_ahead`` 10 s: ``slow_boot_makespan_ratio`` (goal <= 1.15); beside it, servers that tell nothing.
* **collapse-naive** / **collapse**: the same workload against a store that collapses under congestion
  (``CongestedStore``: nothing is refused, transfers slow down, and one not done 4x its work after it
  started fails, its work wasted). The naive fleet runs for ``--collapse-horizon`` (5) ideal makespans:
  ``collapse_naive_makespan_ratio`` (null when not every server finished; then
  ``collapse_naive_makespan_ratio_lower_bound`` = time run / ideal) and
  ``collapse_naive_failed_transfers``. The adaptive fleet, its limit starting at 2C (a guess): ``collapse_makespan_ratio``
  (goal <= 1.10) and ``collapse_peak_holders_over_measured_capacity``: holders minus the capacity the
  store measured (in flight / load, what its reports tell), sampled every second from when the holders first
  came within it (steady state; the leases granted under the starting limit are never revoked), goal 0.
* **provision** / **provision-untold**: the adaptive fleet with its controller's limit starting at C/10,
  told of the wave by the workflow controller's ``Provision`` notices (the limit goes to the measured
  capacity) or not (AIMD climbs one a window): ``provision_makespan_ratio`` and its baseline.

``--quick``: N = 1,000, C = 50 (unless given). Prints progress while each
scenario runs, then one figure per line with its baseline, then one JSON
object (last line).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

# Run as a script, this folder comes first on sys.path, where transport.py (the
# transport benchmark) would shadow the transport package: use the project root.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parents[1]))

from tests.naive_fleet import build_naive_fleet
from tests.workflow_sim import (
    SERVER_INBOUND_TAGS,
    build_storm,
    check_admission,
    check_no_grant_while_dormant,
)


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(x, nd)


def _ratio(x: float | None) -> str:
    return "n/a (not every server finished)" if x is None else f"{x:.4f}"


def run_with_progress(label: str, fleet, every: float, until: float | None = None) -> float:
    """``fleet.run()`` (same chunking: 10 s of sim time, stop once every server finished), with progress lines."""
    sim = fleet.sim
    until = fleet.params["time_limit"] if until is None else until
    n = len(fleet.servers)
    t0 = last = time.perf_counter()
    while sim.now < until:
        sim.run(until=min(sim.now + 10.0, until))
        if fleet.finished():
            break
        if time.perf_counter() - last >= every:
            last = time.perf_counter()
            states = Counter(sim.machine(a).state.value for a in fleet.servers)
            extra = ""
            if hasattr(fleet, "controllers"):
                c = fleet.controller(0)
                extra = f"  holders {c.holders}/limit {c.limit}"
            else:
                extra = (f"  store in flight {len(fleet.stores[0].active)}  "
                         f"attempts {sum(sim.machine(a).attempts for a in fleet.servers)}")
            shown = "  ".join(f"{s} {states[s]}" for s in ("running", "pending", "parking", "dormant") if states[s])
            print(f"  [{label}] sim {sim.now:7.0f} s  done {states['done']:>6}/{n}  {shown}{extra}  "
                  f"wall {last - t0:5.1f} s", flush=True)
    seconds = time.perf_counter() - t0
    print(f"  [{label}] ran to sim {sim.now:.0f} s in {seconds:.1f} s wall", flush=True)
    return seconds


def limit_range(events: list[dict]) -> tuple[int | None, int | None]:
    """Lowest and highest limit in force over the run (controller.start, then limit.changed)."""
    vals = [e["fields"]["limit"] for e in events if e["kind"] == "controller.start"]
    vals += [e["fields"]["new"] for e in events if e["kind"] == "limit.changed"]
    return (min(vals), max(vals)) if vals else (None, None)


def storm_scenario(label: str, args, every: float, **kw) -> dict:
    t0 = time.perf_counter()
    print(f"{label}: building ...", flush=True)
    storm = build_storm(args.seed, servers=args.servers, capacity=args.capacity, stage_time=args.stage_time,
                        stage_sigma=args.stage_sigma, **kw)
    run_with_progress(label, storm, every)
    f = storm.figures()
    storm.drain()  # leases whose release was lost expire: check_admission's "outstanding" is then exact
    events = storm.events()
    a = check_admission(events)
    f["admission"] = a
    f["dormant_grants"] = len(check_no_grant_while_dormant(events))
    f["limit_range"] = limit_range(events)
    f["changes"] = Counter(e["fields"]["reason"] for e in events if e["kind"] == "limit.changed")
    f["work"] = list(storm.work.values())
    f["wall_s"] = time.perf_counter() - t0
    if f["unfinished"] or f["failed"]:
        print(f"  [{label}] WARNING: {f['unfinished']} unfinished, {f['failed']} failed", flush=True)
    return f


ISOLATION_S = 2.0


def isolation_scenario(args, every: float, at: float) -> dict:
    """The adaptive fleet with the resource controller cut off from every server for ISOLATION_S at ``at``."""
    t0 = time.perf_counter()
    print(f"isolated: building ... (controller cut off from every server at {at:.0f} s for {ISOLATION_S:g} s)",
          flush=True)
    storm = build_storm(args.seed, servers=args.servers, capacity=args.capacity, stage_time=args.stage_time,
                        stage_sigma=args.stage_sigma)
    storm.sim.run(until=at)
    storm.cut_servers_from(storm.controllers[0])
    storm.sim.run(until=at + ISOLATION_S)
    storm.heal()
    run_with_progress("isolated", storm, every)
    f = storm.figures()
    storm.drain()
    events = storm.events()
    f["admission"] = check_admission(events)
    f["expired"] = sum(1 for e in events if e["kind"] == "lease.expired")
    # transfers in flight over time: a stage starts (server.stage_start) and ends (server.stage)
    steps = sorted((e["time"], 1 if e["kind"] == "server.stage_start" else -1) for e in events
                   if e["kind"] in ("server.stage_start", "server.stage"))
    heal, inflight, back, low = at + ISOLATION_S, 0, None, None
    for t, d in steps:
        inflight += d
        if t >= at and (low is None or inflight < low):
            low = inflight
        if t >= heal and inflight >= args.capacity - 1:
            back = t
            break
    f["stall_s"] = None if back is None else back - heal  # until the store is busy again (C - 1 in flight)
    f["inflight_low"] = low
    f["wall_s"] = time.perf_counter() - t0
    return f


def restart_scenario(args, every: float, at: float, keep_disk: bool) -> dict:
    """The adaptive fleet with its resource controller restarted at ``at`` (from its record, or a blank disk)."""
    label = "restarted" if keep_disk else "blank-disk"
    t0 = time.perf_counter()
    print(f"{label}: building ... (controller restarted at {at:.0f} s, "
          f"{'from its durable record' if keep_disk else 'on a blank disk'})", flush=True)
    storm = build_storm(args.seed, servers=args.servers, capacity=args.capacity, stage_time=args.stage_time,
                        stage_sigma=args.stage_sigma)
    storm.sim.schedule(at, lambda: storm.restart_controller(0, keep_disk=keep_disk))
    run_with_progress(label, storm, every)
    f = storm.figures()
    storm.drain()
    events = storm.events()
    f["admission"] = check_admission(events)
    f["alarm_wakes"] = sum(1 for e in events if e["kind"] == "server.state" and e["fields"].get("reason") == "alarm"
                           and e["time"] > at)
    f["wall_s"] = time.perf_counter() - t0
    return f


def slow_boot_scenario(args, every: float, told: bool) -> dict:
    """The adaptive fleet whose servers take 90 s to boot; controllers set for 10 s (wake_ahead), 60 s timeout."""
    label = "slow-boot" if told else "slow-boot-untold"
    t0 = time.perf_counter()
    print(f"{label}: building ... (90 s boots, {'told by' if told else 'measured, not told by'} the servers)",
          flush=True)
    storm = build_storm(args.seed, servers=args.servers, capacity=args.capacity, stage_time=args.stage_time,
                        stage_sigma=args.stage_sigma, boot_time=90.0, controller_kw={"wake_ahead": 10.0},
                        server_kw=None if told else {"boot_time": 0.0})
    run_with_progress(label, storm, every)
    f = storm.figures()
    storm.drain()
    events = storm.events()
    f["admission"] = check_admission(events)
    f["wake_failed"] = sum(1 for e in events if e["kind"] == "admission.wake_failed")
    f["wall_s"] = time.perf_counter() - t0
    return f


def naive_scenario(args, every: float) -> dict:
    t0 = time.perf_counter()
    print("naive: building ...", flush=True)
    fleet = build_naive_fleet(args.seed, servers=args.servers, capacity=args.capacity, stage_time=args.stage_time,
                              stage_sigma=args.stage_sigma, fail_above=1.0, base=args.naive_base, cap=args.naive_cap)
    run_with_progress("naive", fleet, every)
    f = fleet.figures()
    f["work"] = list(fleet.work.values())
    f["wall_s"] = time.perf_counter() - t0
    if f["unfinished"] or f["failed"]:
        print(f"  [naive] WARNING: {f['unfinished']} unfinished, {f['failed']} failed", flush=True)
    return f


TIMEOUT_FACTOR = 4.0  # a congested store's transfer fails when not done 4x its work after it started


def collapse_naive_scenario(args, every: float, ideal: float) -> dict:
    """The naive fleet against a store that collapses (no refusals: transfers slow down and time out)."""
    t0 = time.perf_counter()
    horizon = args.collapse_horizon * ideal
    print(f"collapse-naive: building ... (store times out transfers at {TIMEOUT_FACTOR:g}x their work; "
          f"run for {args.collapse_horizon:g}x the ideal makespan, {horizon:.0f} s, or until all are done)", flush=True)
    fleet = build_naive_fleet(args.seed, servers=args.servers, capacity=args.capacity, stage_time=args.stage_time,
                              stage_sigma=args.stage_sigma, fail_above=None, timeout_factor=TIMEOUT_FACTOR,
                              base=args.naive_base, cap=args.naive_cap)
    run_with_progress("collapse-naive", fleet, every, until=horizon)
    f = fleet.figures()
    f["work"] = list(fleet.work.values())
    f["horizon"] = horizon
    f["store_completed"] = sum(st.completed for st in fleet.stores)
    f["wall_s"] = time.perf_counter() - t0
    return f


def collapse_scenario(args, every: float) -> dict:
    """The adaptive fleet against the same collapsing store, its controller started at twice the capacity (an
    operator's guess): AIMD finds the capacity the store measures; holders over it are sampled every second."""
    t0 = time.perf_counter()
    start = 2 * args.capacity
    print(f"collapse: building ... (the same store; controller limit starting at {start}, adaptive)", flush=True)
    storm = build_storm(args.seed, servers=args.servers, capacity=args.capacity, stage_time=args.stage_time,
                        stage_sigma=args.stage_sigma, limit=start, timeout_factor=TIMEOUT_FACTOR)
    samples: list[tuple[float, int, float | None, int]] = []

    def sample() -> None:
        c = storm.controller(0)
        samples.append((storm.sim.now, c.holders, c.measured_capacity, c.limit))
        if storm.sim.now < 10.0 or c.holders or c.waiting or c.reserved:  # until the storm is over
            storm.sim.schedule(storm.sim.now + 1.0, sample)
    storm.sim.schedule(1.0, sample)
    run_with_progress("collapse", storm, every)
    f = storm.figures()
    storm.drain()
    events = storm.events()
    f["admission"] = check_admission(events)
    f["limit_range"] = limit_range(events)
    f["limit_end"] = storm.controller(0).limit
    f["timed_out"] = sum(st.timed_out for st in storm.stores)
    # steady state: from the first sample where the holders are within the capacity the store measured
    steady = next((i for i, (_, h, cap, _) in enumerate(samples) if cap is not None and h <= math.floor(cap + 1e-9)),
                  None)
    f["steady_from"] = None if steady is None else samples[steady][0]
    f["over_measured"] = (None if steady is None else
                          max(0, max(h - math.floor(cap + 1e-9) for _, h, cap, _ in samples[steady:] if cap is not None)))
    f["over_measured_before"] = max([h - math.floor(cap + 1e-9) for _, h, cap, _ in samples[:steady or 0]
                                     if cap is not None], default=0)
    f["measured_capacity"] = samples[-1][2] if samples else None
    f["wall_s"] = time.perf_counter() - t0
    return f


def provision_scenario(args, every: float, notify: bool) -> dict:
    """The adaptive fleet with its controller started at a tenth of the capacity; told of the wave or not."""
    label = "provision" if notify else "provision-untold"
    start = max(1, args.capacity // 10)
    t0 = time.perf_counter()
    print(f"{label}: building ... (controller limit starting at {start}; the workflow controller's Provision "
          f"notices {'on' if notify else 'off'})", flush=True)
    storm = build_storm(args.seed, servers=args.servers, capacity=args.capacity, stage_time=args.stage_time,
                        stage_sigma=args.stage_sigma, limit=start, workflow_kw={"notify": notify})
    run_with_progress(label, storm, every)
    f = storm.figures()
    storm.drain()
    f["admission"] = check_admission(storm.events())
    f["start_limit"] = start
    f["wall_s"] = time.perf_counter() - t0
    return f


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--servers", type=int, default=None, help="N (default 10,000; 1,000 with --quick)")
    ap.add_argument("--capacity", type=int, default=None, help="C (default 100; 50 with --quick)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="N = 1,000, C = 50")
    ap.add_argument("--stage-time", type=float, default=30.0, help="mean stage work, seconds")
    ap.add_argument("--stage-sigma", type=float, default=0.25, help="sigma of the lognormal stage work")
    ap.add_argument("--proxies", type=int, default=4)
    ap.add_argument("--naive-base", type=float, default=1.0, help="full-jitter backoff base, seconds")
    ap.add_argument("--naive-cap", type=float, default=64.0, help="full-jitter backoff cap, seconds")
    ap.add_argument("--collapse-horizon", type=float, default=5.0,
                    help="how long the naive fleet runs on the collapsing store, in ideal makespans")
    args = ap.parse_args(argv)
    if args.servers is None:
        args.servers = 1_000 if args.quick else 10_000
    if args.capacity is None:
        args.capacity = 50 if args.quick else 100
    if args.servers < 1 or args.capacity < 1 or args.proxies < 1:
        ap.error("need --servers, --capacity and --proxies >= 1")
    n, c = args.servers, args.capacity
    every = 0.25 if args.quick else 3.0

    print(f"boot storm: N={n} servers, C={c} (one resource r0, one store), seed {args.seed}", flush=True)
    print(f"stage work: lognormal, mean {args.stage_time} s, sigma {args.stage_sigma} "
          f"(work = {args.stage_time} * lognormvariate(-sigma^2/2, sigma), one draw per server); "
          f"servers power on uniformly over [0, 2] s", flush=True)
    print(f"store: processor sharing, full speed up to C={c} concurrent transfers, slower beyond "
          f"(naive run: starts above C fail after 1 s)", flush=True)
    t_all = time.perf_counter()

    ad = storm_scenario("adaptive", args, every)
    px = storm_scenario("proxied", args, every, proxies=args.proxies, proxy_first=True)
    fx = storm_scenario("fixed", args, every, adaptive=False, limit=c)
    nv = naive_scenario(args, every)
    iso_at = round(ad["ideal"] / 3.0)
    iso = isolation_scenario(args, every, iso_at)
    rs = restart_scenario(args, every, iso_at, keep_disk=True)
    blank = restart_scenario(args, every, iso_at, keep_disk=False)
    slow = slow_boot_scenario(args, every, told=True)
    untold = slow_boot_scenario(args, every, told=False)
    cn = collapse_naive_scenario(args, every, ad["ideal"])
    cc = collapse_scenario(args, every)
    pv = provision_scenario(args, every, notify=True)
    pu = provision_scenario(args, every, notify=False)
    total_wall = time.perf_counter() - t_all

    work = ad["work"]
    for other in (px, fx, nv, cn):
        assert other["work"] == work, "the scenarios did not get the same workload"
    q = statistics.quantiles(work, n=20)
    ideal = ad["ideal"]
    a = ad["admission"]
    lo, hi = ad["limit_range"]
    by = ad["ctrl_inbound_by"]
    proxy_reduction = ad["ctrl_inbound"] / px["ctrl_inbound"] if px["ctrl_inbound"] else math.inf
    ws = ad["waiting_seconds"]
    waited = sum(ws.values())
    pp = 0.4
    energy = ws["pending"] + pp * ws["parking"]
    naive_wait = nv["state_seconds"].get("pending", 0.0)

    print()
    print(f"stage work drawn: mean {statistics.fmean(work):.2f} s, median {statistics.median(work):.2f} s, "
          f"p5 {q[0]:.2f} s, p95 {q[-1]:.2f} s, total {sum(work):.0f} s")
    print(f"ideal: {ideal:.1f} s (sum of stage work / C = {sum(work):.0f} / {c})")
    print(f"makespan_ratio: {_ratio(ad['makespan_ratio'])} (adaptive: makespan {ad['makespan'] or float('nan'):.1f} s "
          f"vs ideal {ideal:.1f} s; target <= 1.10: {'met' if (ad['makespan_ratio'] or 9) <= 1.10 else 'MISSED'})")
    print(f"peak_holders: {a['peak_holders']} vs limit in force {lo}..{hi} over the run (C={c}; "
          f"limit changes {dict(ad['changes']) or 'none'}; store peak {ad['store_peak']} concurrent transfers)")
    print(f"peak_holders_over_limit: {a['max_holders_over_limit']} (baseline 0 = never above; check_admission "
          f"{'ok' if a['ok'] else 'VIOLATED'}, {len(a['violations'])} violations, {ad['dormant_grants']} grants while "
          f"dormant, {len(a['outstanding'])} leases outstanding after drain)")
    print(f"ctrl_msgs_per_server: {ad['ctrl_inbound_per_server']:.2f} (controller inbound {ad['ctrl_inbound']}: "
          + ", ".join(f"{t} {by[t]}" for t in SERVER_INBOUND_TAGS if by[t])
          + f"; baseline: naive fleet {nv['attempts_per_server']:.2f} attempts per server)")
    print(f"proxy_reduction: {proxy_reduction:.1f}x (controller inbound {ad['ctrl_inbound']} without proxies vs "
          f"{px['ctrl_inbound']} with {args.proxies} proxies, proxy-first; issue target >= 10x; proxied makespan "
          f"ratio {_ratio(px['makespan_ratio'])}, limit {px['limit_range'][0]}..{px['limit_range'][1]}, "
          f"peak holders {px['admission']['peak_holders']}, store peak {px['store_peak']})")
    print(f"fixed_makespan_ratio: {_ratio(fx['makespan_ratio'])} (limit fixed at C={c}; vs adaptive "
          f"{_ratio(ad['makespan_ratio'])}); fixed ctrl_msgs_per_server {fx['ctrl_inbound_per_server']:.2f}, "
          f"peak holders {fx['admission']['peak_holders']}")
    print(f"naive_makespan_ratio: {_ratio(nv['makespan_ratio'])} (no controller, full-jitter backoff base "
          f"{args.naive_base:g} s cap {args.naive_cap:g} s, store fails starts above C; vs adaptive "
          f"{_ratio(ad['makespan_ratio'])})")
    print(f"naive_failed_attempts: {nv['failed_attempts']} (up to {nv['max_failures_one_server']} for one server; "
          f"baseline: {ad['store_failed']} store failures under the controller)")
    print(f"naive_msgs_per_server: {nv['attempts_per_server']:.2f} ({nv['attempts']} transfer attempts; vs "
          f"ctrl_msgs_per_server {ad['ctrl_inbound_per_server']:.2f})")
    print(f"waiting server-seconds (adaptive): pending {ws['pending']:.0f}, parking {ws['parking']:.0f}, "
          f"dormant {ws['dormant']:.0f}; total {waited:.0f}")
    ratio_e = energy / waited if waited else None
    print(f"waiting_energy_ratio: {_ratio(ratio_e)} (pending x1 + parking x{pp} + dormant x0 = {energy:.0f} "
          f"full-power server-seconds vs all-pending baseline {waited:.0f}); naive fleet waited {naive_wait:.0f} "
          f"server-seconds, all at full power ({naive_wait / energy if energy else math.inf:.0f}x the adaptive "
          f"waiting energy)")
    stall = iso["stall_s"]
    print(f"isolation_stall_s: {'n/a' if stall is None else f'{stall:.2f}'} (the controller cut off from every "
          f"server for {ISOLATION_S:g} s at {iso_at} s: time after the heal until the store again had C - 1 = "
          f"{c - 1} transfers in flight (it fell to {iso['inflight_low']} during the cut); goal <= 1 s; baseline: "
          f"a lost release holds its slot for the lease ttl; {iso['expired']} leases ran out their ttl; makespan "
          f"{iso['makespan'] or float('nan'):.1f} s vs {ad['makespan'] or float('nan'):.1f} s without; admission "
          f"{'ok' if iso['admission']['ok'] else 'VIOLATED'})")
    print(f"restart_makespan_ratio: {_ratio(rs['makespan_ratio'])} (the controller restarted at {iso_at} s from its "
          f"durable record; goal <= 1.15; {rs['alarm_wakes']} dormant servers woke on their own alarm; admission "
          f"{'ok' if rs['admission']['ok'] else 'VIOLATED'}; baseline: the same restart on a blank disk "
          f"{_ratio(blank['makespan_ratio'])} with {blank['alarm_wakes']} alarm wakes, no restart "
          f"{_ratio(ad['makespan_ratio'])})")
    print(f"slow_boot_makespan_ratio: {_ratio(slow['makespan_ratio'])} (servers take 90 s from power-on to asking "
          f"and say so; controllers set for wake_ahead 10 s, wake_timeout 60 s; goal <= 1.15; "
          f"{slow['wake_failed']} reservations timed out; admission {'ok' if slow['admission']['ok'] else 'VIOLATED'}; "
          f"baseline: servers that say nothing, the controller measuring: {_ratio(untold['makespan_ratio'])} with "
          f"{untold['wake_failed']} timed-out reservations, all re-queued)")
    cn_lb = cn["sim_time"] / ideal if ideal else None  # a lower bound on its makespan ratio when not all finished
    cn_ratio = (_ratio(cn["makespan_ratio"]) if cn["makespan_ratio"] is not None else
                f"n/a: {cn['done']} of {n} done after {cn['sim_time']:.0f} s, so > {cn_lb:.2f}")
    print(f"collapse_naive_makespan_ratio: {cn_ratio} (the naive fleet on a store that collapses: nothing refused, "
          f"transfers slow down and one not done {TIMEOUT_FACTOR:g}x its work after it started fails; "
          f"collapse_naive_failed_transfers {cn['failed_attempts']} of {cn['attempts']} attempts, "
          f"{cn['store_completed']} completed; store peak {cn['store_peak']} concurrent transfers on a capacity of "
          f"{c}; baseline: the controlled fleet below)")
    cc_over = cc["over_measured"]
    print(f"collapse_makespan_ratio: {_ratio(cc['makespan_ratio'])} (the adaptive fleet on the same store, its limit "
          f"starting at {2 * c} = 2C; goal <= 1.10: {'met' if (cc['makespan_ratio'] or 9) <= 1.10 else 'MISSED'}; "
          f"{cc['timed_out']} transfers timed out; limit {cc['limit_range'][0]}..{cc['limit_range'][1]}, "
          f"{cc['limit_end']} at the end; admission {'ok' if cc['admission']['ok'] else 'VIOLATED'}; baseline: the "
          f"naive fleet above, {cn_ratio})")
    print(f"collapse_peak_holders_over_measured_capacity: {'n/a' if cc_over is None else cc_over} (steady state: "
          f"holders minus the capacity the store measured (in flight / load, "
          f"{'n/a' if cc['measured_capacity'] is None else round(cc['measured_capacity'], 2)}), sampled each second "
          f"from {cc['steady_from']} s, when the holders granted under the starting limit of {2 * c} had come down "
          f"to it; goal 0; before that up to {cc['over_measured_before']} over (leases are never revoked))")
    print(f"provision_makespan_ratio: {_ratio(pv['makespan_ratio'])} (controller limit starting at "
          f"{pv['start_limit']} = C/10, told of the wave by the workflow controller's Provision notices: limit "
          f"raised to the measured capacity; admission {'ok' if pv['admission']['ok'] else 'VIOLATED'}, store peak "
          f"{pv['store_peak']}; baseline: notices off, AIMD climbing one a window, {_ratio(pu['makespan_ratio'])})")
    walls = {"adaptive": ad["wall_s"], "proxied": px["wall_s"], "fixed": fx["wall_s"], "naive": nv["wall_s"], "isolated": iso["wall_s"],
             "restarted": rs["wall_s"], "blank-disk": blank["wall_s"],
             "slow-boot": slow["wall_s"], "slow-boot-untold": untold["wall_s"], "collapse-naive": cn["wall_s"],
             "collapse": cc["wall_s"], "provision": pv["wall_s"], "provision-untold": pu["wall_s"]}
    print("wall: " + ", ".join(f"{k} {v:.1f} s" for k, v in walls.items()) + f"; total {total_wall:.1f} s")

    fig = {
        "servers": n,
        "capacity": c,
        "seed": args.seed,
        "stage_work": {"distribution": "lognormal", "mean": args.stage_time, "sigma": args.stage_sigma},
        "ideal_s": _r(ideal, 2),
        "makespan_s": _r(ad["makespan"], 2),
        "makespan_ratio": _r(ad["makespan_ratio"]),
        "peak_holders": a["peak_holders"],
        "limit_min": lo,
        "limit_max": hi,
        "peak_holders_over_limit": a["max_holders_over_limit"],
        "admission_ok": a["ok"],
        "ctrl_msgs_per_server": _r(ad["ctrl_inbound_per_server"]),
        "ctrl_inbound": ad["ctrl_inbound"],
        "proxies": args.proxies,
        "ctrl_inbound_proxied": px["ctrl_inbound"],
        "proxy_reduction": _r(proxy_reduction, 2),
        "proxied_makespan_ratio": _r(px["makespan_ratio"]),
        "proxied_limit_max": px["limit_range"][1],
        "fixed_makespan_ratio": _r(fx["makespan_ratio"]),
        "fixed_ctrl_msgs_per_server": _r(fx["ctrl_inbound_per_server"]),
        "naive_makespan_ratio": _r(nv["makespan_ratio"]),
        "naive_failed_attempts": nv["failed_attempts"],
        "naive_attempts": nv["attempts"],
        "naive_msgs_per_server": _r(nv["attempts_per_server"]),
        "naive_backoff": {"base_s": args.naive_base, "cap_s": args.naive_cap, "jitter": "full"},
        "waiting_pending_s": round(ws["pending"], 1),
        "waiting_parking_s": round(ws["parking"], 1),
        "waiting_dormant_s": round(ws["dormant"], 1),
        "waiting_all_pending_baseline_s": round(waited, 1),
        "waiting_energy_ratio": _r(ratio_e),
        "naive_waiting_full_power_s": round(naive_wait, 1),
        "isolation_stall_s": _r(stall, 2),
        "isolation_makespan_s": _r(iso["makespan"], 2),
        "isolation_expired_leases": iso["expired"],
        "restart_makespan_ratio": _r(rs["makespan_ratio"]),
        "restart_alarm_wakes": rs["alarm_wakes"],
        "blank_disk_restart_makespan_ratio": _r(blank["makespan_ratio"]),
        "slow_boot_makespan_ratio": _r(slow["makespan_ratio"]),
        "slow_boot_wake_failed": slow["wake_failed"],
        "slow_boot_untold_makespan_ratio": _r(untold["makespan_ratio"]),
        "collapse_naive_makespan_ratio": _r(cn["makespan_ratio"]),
        "collapse_naive_makespan_ratio_lower_bound": _r(cn["makespan_ratio"] if cn["makespan_ratio"] is not None
                                                        else cn_lb),
        "collapse_naive_done": cn["done"],
        "collapse_naive_failed_transfers": cn["failed_attempts"],
        "collapse_naive_attempts": cn["attempts"],
        "collapse_naive_horizon_s": _r(cn["horizon"], 1),
        "collapse_makespan_ratio": _r(cc["makespan_ratio"]),
        "collapse_peak_holders_over_measured_capacity": cc_over,
        "collapse_steady_from_s": cc["steady_from"],
        "collapse_failed_transfers": cc["timed_out"],
        "collapse_limit_start": 2 * c,
        "collapse_limit_end": cc["limit_end"],
        "collapse_admission_ok": cc["admission"]["ok"],
        "provision_makespan_ratio": _r(pv["makespan_ratio"]),
        "provision_untold_makespan_ratio": _r(pu["makespan_ratio"]),
        "provision_limit_start": pv["start_limit"],
        "all_done": all(x["unfinished"] == 0 and x["failed"] == 0
                        for x in (ad, px, fx, nv, iso, rs, blank, slow, untold, cc, pv, pu)),
        "wall_s": {k: round(v, 2) for k, v in walls.items()},
        "total_wall_s": round(total_wall, 2),
    }
    print(json.dumps(fig))
    return fig


if __name__ == "__main__":
    main(sys.argv[1:])
