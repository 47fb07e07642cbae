"""Boot storms in the deterministic simulator (seeded; every assertion names its seed).

Source: shared/seeds/000_6042360d9d71bd38.txt: FIGS. 2A-2C (grant, proxy,
denial and status pings), FIG. 3 (the server's routine), FIG. 4 (the resource
controller's routine), the server states, leases (issue 5). The harness is
tests/workflow_sim.py (one simulator node per server; see its docstring).
Invariants are judged from the event log alone (check_admission,
check_no_grant_while_dormant).
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.workflow_sim import (
    build_storm,
    check_admission,
    check_no_grant_while_dormant,
)
from transport.sim import LinkSpec, Uniform

SEEDS = (1, 2, 3)


def assert_admission_safe(storm, events, *, drained: bool = True):
    seed = storm.seed
    a = check_admission(events)
    assert a["ok"], f"seed={seed}: a grant took holders above the limit in force: {a['violations'][:3]}"
    if drained:
        assert a["outstanding"] == [], f"seed={seed}: leases neither released nor expired: {a['outstanding'][:5]}"
    assert a["granted"] >= 1, f"seed={seed}: nothing was granted"
    bad = check_no_grant_while_dormant(events)
    assert not bad, f"seed={seed}: granted while dormant: {bad[:3]}"
    return a


def assert_all_done(storm, expect_crashed: int = 0):
    f = storm.figures()
    seed = storm.seed
    assert f["done"] == f["servers"] - expect_crashed, f"seed={seed}: not every server finished: {f}"
    assert f["failed"] == 0 and f["unfinished"] == 0, f"seed={seed}: {f}"
    return f


def transitions(events):
    return Counter((e["fields"]["from"], e["fields"]["to"], e["fields"]["reason"])
                   for e in events if e["kind"] == "server.state")


# -- 1,000 servers, capacity 50 ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_boot_storm_1000_servers_capacity_50(seed):
    storm = build_storm(seed, servers=1000, capacity=50)
    storm.run()
    f = assert_all_done(storm)
    storm.drain()
    events = storm.events()
    a = assert_admission_safe(storm, events)
    assert a["peak_holders"] <= max(f["limits"]), f"seed={seed}: {a['peak_holders']} holders, limits {f['limits']}"
    assert f["store_peak"] <= 50 and f["store_failed"] == 0, f"seed={seed}: the store was overloaded: {f}"
    assert f["makespan_ratio"] <= 1.15, f"seed={seed}: makespan {f['makespan']:.0f}s vs ideal {f['ideal']:.0f}s"
    # the waiting states were used by predicted wait, and dormant servers were woken, then granted
    t = transitions(events)
    went_dormant = t[("running", "dormant", "denied")]
    assert went_dormant > 500, f"seed={seed}: expected most servers to sleep through a 600 s storm: {t}"
    assert t[("dormant", "pending", "woken")] == went_dormant, f"seed={seed}: not every dormant server was woken: {t}"
    assert t[("running", "parking", "denied")] > 0 and t[("running", "pending", "denied")] > 0, f"seed={seed}: {t}"
    last_state: dict[str, str] = {}
    woken_then_granted = 0
    for e in events:
        if e["kind"] == "server.state":
            who = e["node"]
            if e["fields"]["reason"] == "granted" and last_state.get(who) == "woken":
                woken_then_granted += 1
            last_state[who] = e["fields"]["reason"]
    assert woken_then_granted == went_dormant, f"seed={seed}: {woken_then_granted} of {went_dormant} granted after waking"
    # waiting mostly powered off: far less energy than waiting all pending
    assert f["waiting_energy_ratio"] < 0.2, f"seed={seed}: {f['waiting_energy_ratio']}"


@pytest.mark.parametrize("seed", SEEDS)
def test_dormant_head_is_woken_into_a_reserved_slot(seed):
    """No waking ahead: a slot frees, the dormant head gets it reserved and a Wake, then the grant."""
    storm = build_storm(seed, servers=300, capacity=30, controller_kw={"wake_ahead": 0.0})
    storm.run()
    assert_all_done(storm)
    storm.drain()
    events = storm.events()
    assert_admission_safe(storm, events)
    wakes = [e for e in events if e["kind"] == "admission.wake"]
    assert wakes and all(e["fields"]["reason"] == "slot" and e["fields"]["reserved"] for e in wakes), f"seed={seed}"
    from_reservation = [e for e in events if e["kind"] == "admission.grant" and e["fields"]["from_reservation"]]
    assert len(from_reservation) == len(wakes), f"seed={seed}: {len(from_reservation)} grants for {len(wakes)} wakes"


# -- leases: a crashed server's slot comes back ------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_server_killed_mid_stage_has_its_lease_recovered_by_expiry(seed):
    # a fixed limit: with adaptation the limit rises while the dead holders leave the store idle and falls back
    # to the measured capacity when their leases expire, so "granted again at expiry" is not the point there
    storm = build_storm(seed, servers=300, capacity=30, ttl=30.0, adaptive=False)
    storm.run(until=60.0)
    victims = [a for a in storm.servers if storm.server(a).running and storm.server(a).leases][:3]
    assert len(victims) == 3, f"seed={seed}: no server mid-stage at 60 s"
    leases = {a: storm.server(a).leases["r0"].lease for a in victims}
    crashed_at = storm.sim.now
    for a in victims:
        storm.crash_server(a)
    storm.run()
    assert_all_done(storm, expect_crashed=3)
    storm.drain()
    events = storm.events()
    assert_admission_safe(storm, events)
    for a, lease in leases.items():
        expired = [e for e in events if e["kind"] == "lease.expired" and e["fields"]["lease"] == lease]
        assert len(expired) == 1, f"seed={seed}: the lease of crashed {a} did not expire"
        t = expired[0]["time"]
        assert crashed_at < t <= crashed_at + 30.0 + 1.0, f"seed={seed}: expired at {t}, crash at {crashed_at}"
        reused = [e for e in events if e["kind"] == "admission.grant" and e["time"] == t]
        assert reused, f"seed={seed}: the slot of {a} was not granted again when its lease expired at {t}"
        released = [e for e in events if e["kind"] == "lease.released" and e["fields"]["lease"] == lease]
        assert not released, f"seed={seed}: a crashed server cannot release"


@pytest.mark.parametrize("seed", SEEDS)
def test_restarted_server_supersedes_its_old_lease_at_once(seed):
    storm = build_storm(seed, servers=200, capacity=20, ttl=30.0)
    storm.run(until=40.0)
    victim = next(a for a in storm.servers if storm.server(a).running and storm.server(a).leases)
    lease = storm.server(victim).leases["r0"].lease
    storm.crash_server(victim)
    storm.sim.run(until=42.0)
    storm.restart_server(victim)
    storm.run()
    assert_all_done(storm)
    storm.drain()
    events = storm.events()
    assert_admission_safe(storm, events)
    ended = [e for e in events if e["kind"] in ("lease.released", "lease.expired") and e["fields"]["lease"] == lease]
    assert [(e["kind"], e["fields"]["reason"]) for e in ended] == [("lease.released", "superseded")], f"seed={seed}"
    assert ended[0]["time"] < 42.0 + 10.0, f"seed={seed}: the new incarnation's request should end it, not expiry"


# -- the controller unreachable from servers: through the proxy (FIG. 2B) ---------------------------------


@pytest.mark.parametrize("seed, both", [(1, True), (2, True), (3, False), (4, False)])
def test_controller_unreachable_from_servers_requests_get_through_via_proxy(seed, both):
    storm = build_storm(seed, servers=400, capacity=40, proxies=2)
    storm.cut_servers_from(storm.controllers[0], both=both)  # proxies still reach the controller
    storm.run()
    f = assert_all_done(storm)
    storm.drain()
    events = storm.events()
    assert_admission_safe(storm, events)
    routed = {e["node"] for e in events if e["kind"] == "server.route" and e["fields"]["via"].startswith("px")}
    assert len(routed) == 400, f"seed={seed}: {len(routed)} servers went through a proxy"
    retried = {e["node"] for e in events if e["kind"] == "server.retry"}
    assert routed <= retried, f"seed={seed}: servers went to the proxy only after retries"
    by = f["ctrl_inbound_by"]
    assert by["ProxyBatch"] > 0 and sum(by.values()) == by["ProxyBatch"], f"seed={seed}: {by}"


# -- proxy aggregation -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", (1, 2))
def test_proxy_aggregation_cuts_controller_inbound_messages_10x(seed):
    direct = build_storm(seed, servers=1000, capacity=50).run()
    proxied = build_storm(seed, servers=1000, capacity=50, proxies=2, proxy_first=True).run()
    fd, fp = assert_all_done(direct), assert_all_done(proxied)
    ratio = fd["ctrl_inbound"] / fp["ctrl_inbound"]
    assert ratio >= 10, (f"seed={seed}: controller inbound {fd['ctrl_inbound']} direct vs {fp['ctrl_inbound']} "
                         f"with proxies: {ratio:.1f}x")
    assert fp["ctrl_inbound_by"]["ProxyBatch"] == fp["ctrl_inbound"], f"seed={seed}: {fp['ctrl_inbound_by']}"
    assert fp["makespan_ratio"] <= 1.2, f"seed={seed}: proxies cost too much time: {fp['makespan_ratio']:.3f}"
    assert_admission_safe(proxied, proxied.events(), drained=False)


# -- faults in the network ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", (5,))
def test_storm_survives_loss_duplication_and_reordering(seed):
    link = LinkSpec(latency=Uniform(0.001, 0.05), loss=0.05, duplicate=0.02, reorder=0.05)
    storm = build_storm(seed, servers=1000, capacity=50, proxies=2, link=link)
    storm.run()
    assert_all_done(storm)
    storm.drain()
    assert_admission_safe(storm, storm.events())


# -- the adaptive limit and history (FIG. 4) -----------------------------------------------------------------


def limit_changes(events):
    return [(e["time"], e["fields"]["old"], e["fields"]["new"], e["fields"]["reason"])
            for e in events if e["kind"] == "limit.changed"]


@pytest.mark.parametrize("seed", (1, 2))
def test_limit_rises_to_the_capacity_with_headroom_and_falls_when_latency_sags(seed):
    # no Provision notices: the additive rule alone (a known wave jumps to the measured capacity instead,
    # tests/test_workflow_provision.py)
    low = build_storm(seed, servers=500, capacity=50, limit=30, workflow_kw={"notify": False}).run()
    assert_all_done(low)
    ch = limit_changes(low.events())
    assert ch and all(r == "headroom" and new == old + 1 for _, old, new, r in ch), f"seed={seed}: {ch}"
    assert max(new for _, _, new, _ in ch) >= 48, f"seed={seed}: limit stopped at {ch[-1]}"
    assert max(new for _, _, new, _ in ch) <= 52, f"seed={seed}: overshot the capacity: {ch[-1]}"

    high = build_storm(seed, servers=500, capacity=50, limit=80).run()
    assert_all_done(high)
    ch = limit_changes(high.events())
    assert ch and ch[0][3] == "latency", f"seed={seed}: {ch}"
    assert 45 <= high.controller().limit <= 62, f"seed={seed}: the limit should settle near the capacity: {ch}"
    assert min(new for _, _, new, _ in ch) >= 45, f"seed={seed}: the limit fell far below the capacity: {ch}"
    assert_admission_safe(high, high.events(), drained=False)

    fixed = build_storm(seed, servers=300, capacity=50, limit=80, adaptive=False).run()
    assert limit_changes(fixed.events()) == [], f"seed={seed}: a fixed limit changed"


@pytest.mark.parametrize("seed", (1, 2))
def test_a_store_that_degrades_is_flagged_and_the_limit_backs_off(seed):
    storm = build_storm(seed, servers=600, capacity=50)
    storm.sim.schedule(150.0, lambda: storm.stores[0].set_capacity(15))
    storm.run()
    assert_all_done(storm)
    events = storm.events()
    flags = [e for e in events if e["kind"] == "history.underdelivery"]
    assert flags and all(e["time"] > 150.0 for e in flags), f"seed={seed}: {flags}"
    assert flags[0]["fields"]["ratio"] < 0.5, f"seed={seed}: {flags[0]}"
    ch = limit_changes(events)
    assert any(t > 150.0 and r == "latency" for t, _, _, r in ch), f"seed={seed}: {ch}"
    assert_admission_safe(storm, events, drained=False)


# -- reproducibility -----------------------------------------------------------------------------------------


def test_one_seed_one_run():
    a = build_storm(7, servers=150, capacity=15, proxies=1).run()
    b = build_storm(7, servers=150, capacity=15, proxies=1).run()
    c = build_storm(8, servers=150, capacity=15, proxies=1).run()
    assert a.sim.event_log.text() == b.sim.event_log.text(), "seed=7: two runs differ"
    assert a.sim.event_log.text() != c.sim.event_log.text(), "seeds 7 and 8 gave the same run"


def test_stage_time_distribution_is_as_stated():
    storm = build_storm(3, servers=2000, capacity=50, stage_time=30.0, stage_sigma=0.25)
    work = list(storm.work.values())
    mean = sum(work) / len(work)
    assert 29.0 < mean < 31.0, f"seed=3: mean stage work {mean}"
    assert storm.ideal() == pytest.approx(sum(work) / 50)
