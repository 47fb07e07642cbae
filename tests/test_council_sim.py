"""Routine 600 in seeded simulations of three workflow groups (regions) and one council (issue 21; seed 000
FIGS. 5-6): the damaged region's load goes to peers with headroom, every checker holds over many seeds, with
oversight off and on, and under a partition of one region's controller. A failing run names its seed."""

from __future__ import annotations

import pytest

from protocols.workflow.council_messages import OversightApprove, OversightReject
from tests.regions_sim import build_regions, rc
from topologies.workflow.checks import AdmissionLimit, LeasesEnd, ServersDone
from topologies.workflow.council_checks import RedirectAccepted, RedirectWithinAccepted, RejectionHold

SMALL = {"servers": 60, "capacity": 10, "stage_time": 5.0, "boot_time": 3.0}
SAFETY = (AdmissionLimit(), RedirectAccepted(), RedirectWithinAccepted(), RejectionHold())


def judge(reg, *, liveness: bool = True) -> dict:
    checks = SAFETY + ((LeasesEnd(), ServersDone()) if liveness else ())
    return {c.name: c.check(reg.events()) for c in checks}


def assert_holds(reg, verdicts: dict, *, must: tuple[str, ...] = ()) -> None:
    bad = {n: v.summary for n, v in verdicts.items() if v.status == "invalid"}
    assert not bad, f"seed {reg.seed}: {bad}"
    for n in must:
        assert verdicts[n].status == "valid", f"seed {reg.seed}: {n} {verdicts[n].status}: {verdicts[n].summary}"


@pytest.mark.parametrize("seed", range(1, 5))
def test_the_damaged_regions_servers_are_redirected_and_every_checker_holds(seed):
    reg = build_regions(seed, **SMALL).run()
    f = reg.figures()
    assert all(v == SMALL["servers"] for v in f["done"].values()), f"seed {seed}: {f['done']}"
    assert f["redirected"] > 0 and f["admitted"] > 0, f"seed {seed}: nothing moved: {f['events']}"
    assert_holds(reg, judge(reg), must=("admission-limit", "leases-end", "servers-done", "redirect-accepted",
                                        "redirect-within-accepted"))


def test_the_council_at_least_halves_the_damaged_regions_makespan_and_peers_barely_notice():
    seed = 1  # 3 x 100 servers, stores of 10 (east's at 20%), stages of 5 s; tests/bench/regions.py runs 3 x 300
    kw = {"servers": 100, "capacity": 10, "stage_time": 5.0, "boot_time": 3.0}
    alone = build_regions(seed, council=False, **kw).run().figures()["makespan"]
    helped = build_regions(seed, council=True, **kw).run().figures()["makespan"]
    assert None not in alone.values() and None not in helped.values(), f"seed {seed}: {alone} {helped}"
    speedup = alone["east"] / helped["east"]
    slowdown = max(helped[g] / alone[g] for g in ("west", "north"))
    print(f"council_speedup {speedup:.2f} peer_slowdown {slowdown:.3f} ({alone} -> {helped})")
    assert speedup >= 2.0, f"seed {seed}: council_speedup {speedup:.2f}"
    assert slowdown <= 1.10, f"seed {seed}: peer_slowdown {slowdown:.3f}"


@pytest.mark.parametrize("seed", range(1, 4))
def test_every_peer_overloaded_rejections_hold_and_the_operator_is_told(seed):
    reg = build_regions(seed, damaged=None, servers=60, capacity=5, stage_time=5.0, oversight=True,
                        council_kw={"wait_threshold": 10.0, "hold": 20.0}, time_limit=200.0).run()
    ev = reg.events()
    holds = [e for e in ev if e["kind"] == "council.hold"]
    alerts = [e for e in ev if e["kind"] == "oversight.alert"]
    assert holds and alerts, f"seed {seed}: {len(holds)} holds, {len(alerts)} alerts"
    assert not [e for e in ev if e["kind"] == "council.redirect"], f"seed {seed}: redirected with no headroom"
    v = judge(reg)
    assert_holds(reg, v, must=("rejection-hold", "servers-done"))
    view = reg.oversight().view(reg.sim.now)
    assert view.alerts and all(a.what == "no mitigation possible" for a in view.alerts), f"seed {seed}"


def _approver(delay: float, reject_every: int = 0):
    decided: dict[str, float] = {}

    def operator(reg, now: float) -> None:
        for i, mid in enumerate(sorted(reg.oversight().pending(now))):
            first = decided.setdefault(mid, now)
            if now - first >= delay:
                n = len([m for m in decided if decided[m] <= first])
                if reject_every and n % reject_every == 0:
                    reg.operator_says(OversightReject(mid, "bo", "not now"))
                else:
                    reg.operator_says(OversightApprove(mid, "ana"))
    return operator


@pytest.mark.parametrize("seed", range(1, 3))
def test_with_oversight_on_nothing_moves_before_an_operator_approves(seed):
    reg = build_regions(seed, approval="all", operator=_approver(10.0, reject_every=3), **SMALL).run()
    ev = reg.events()
    approvals = {e["fields"]["mitigation"]: e for e in ev if e["kind"] == "oversight.decision"}
    assert approvals, f"seed {seed}: no operator decision"
    assert all(e["fields"]["by"] in ("operator:ana", "operator:bo") for e in approvals.values())
    redirected = {e["fields"]["mitigation"] for e in ev if e["kind"] == "council.redirect"}
    assert redirected and redirected <= {m for m, e in approvals.items() if e["fields"]["approve"]}, f"seed {seed}"
    first_redirect = min(e["time"] for e in ev if e["kind"] == "council.redirect")
    assert first_redirect >= min(e["time"] for e in approvals.values()), f"seed {seed}"
    assert_holds(reg, judge(reg), must=("redirect-accepted", "servers-done", "admission-limit"))
    history = reg.oversight().view(reg.sim.now, 1000).history
    assert {h.by for h in history if h.what == "approved"} == {"operator:ana"}, f"seed {seed}"


@pytest.mark.parametrize("seed", [1, 3])
def test_above_share_approval_holds_only_the_large_shares(seed):
    reg = build_regions(seed, approval="above-share", approval_share=0.3, operator=_approver(5.0), **SMALL).run()
    ev = reg.events()
    proposed = {e["fields"]["mitigation"]: e["fields"] for e in ev if e["kind"] == "council.proposed"}
    dec = {e["fields"]["mitigation"]: e["fields"] for e in ev if e["kind"] == "council.decided"
           and e["fields"]["accepted"] > 0}
    for mid, d in dec.items():
        share = d["accepted"] / max(1, proposed[mid]["waiting"])
        assert d["needs_approval"] == (share > 0.3), f"seed {seed}: {mid} share {share:.2f}"
    small = {m for m, d in dec.items() if not d["needs_approval"]}
    assert small and len(small) < len(dec), f"seed {seed}: want both kinds of share here: {dec}"
    approved = {e["fields"]["mitigation"] for e in ev if e["kind"] == "oversight.decision"}
    moved = {e["fields"]["mitigation"] for e in ev if e["kind"] == "council.redirect"}
    assert small <= moved and not (small & approved), f"seed {seed}: small shares went through the operator"
    assert_holds(reg, judge(reg), must=("redirect-accepted", "servers-done"))


@pytest.mark.parametrize("seed", range(1, 3))
@pytest.mark.parametrize("victim", ["east", "west"])
def test_a_regions_controller_cut_off_for_a_while_breaks_nothing(seed, victim):
    """Nemesis ``one``: the damaged region's controller, or a lending peer's, is isolated from t = 25 s to 85 s;
    each group works alone meanwhile (redirected servers that cannot reach the peer go home)."""
    reg = build_regions(seed, **SMALL)
    reg.sim.schedule(25.0, lambda: reg.isolate(f"{victim}-rc"))
    reg.sim.schedule(85.0, reg.heal)
    reg.run()
    f = reg.figures()
    assert all(v == SMALL["servers"] for v in f["done"].values()), f"seed {seed}: {f['done']}"
    assert_holds(reg, judge(reg), must=("admission-limit", "servers-done", "redirect-accepted",
                                        "redirect-within-accepted"))


def test_a_restarted_lending_controller_keeps_its_council_records():
    seed = 3
    reg = build_regions(seed, **SMALL)
    reg.sim.schedule(40.0, lambda: reg.restart_controller("west"))
    reg.run()
    f = reg.figures()
    assert all(v == SMALL["servers"] for v in f["done"].values()), f"seed {seed}: {f['done']}"
    west = reg.controller("west").council
    assert any(m.peer == rc("west") for m in west.mits.values()), f"seed {seed}: records lost in the restart"
    assert_holds(reg, judge(reg), must=("admission-limit", "redirect-within-accepted", "servers-done"))


def _faulty_run(seed: int, approval: str = "none"):
    """Lossy, duplicating, reordering links (5% / 5% / 10%) everywhere, and one region's controller (chosen by the
    seed) isolated for 40 s at a time chosen by the seed; with approval, an operator approves after 5 s."""
    import random

    from transport.sim import LinkSpec, Uniform

    rnd = random.Random(f"{seed}/nemesis")
    link = LinkSpec(latency=Uniform(0.001, 0.005), loss=0.05, duplicate=0.05, reorder=0.1)
    reg = build_regions(seed, link=link, approval=approval, operator=_approver(5.0) if approval != "none" else None,
                        **SMALL)
    victim, start = rnd.choice(reg.regions), rnd.uniform(10.0, 60.0)
    reg.sim.schedule(start, lambda: reg.isolate(f"{victim}-rc"))
    reg.sim.schedule(start + 40.0, reg.heal)
    reg.run()
    return reg, f"seed {seed}: {victim}-rc isolated at {start:.1f} s for 40 s"


@pytest.mark.parametrize("seed,approval", [(1, "none"), (2, "all")])
def test_lossy_links_and_an_isolated_controller_break_nothing(seed, approval):
    reg, what = _faulty_run(seed, approval)
    f = reg.figures()
    assert all(v == SMALL["servers"] for v in f["done"].values()), f"{what}: {f['done']}"
    assert_holds(reg, judge(reg), must=("admission-limit", "servers-done", "redirect-accepted"))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3, 23))
def test_many_seeds_of_lossy_links_and_isolated_controllers(seed):
    reg, what = _faulty_run(seed, "all" if seed % 3 == 0 else "none")
    f = reg.figures()
    assert all(v == SMALL["servers"] for v in f["done"].values()), f"{what}: {f['done']}"
    bad = {n: v.summary for n, v in judge(reg).items() if v.status == "invalid"}
    assert not bad, f"{what}: {bad}"


@pytest.mark.parametrize("seed", [3])
def test_a_lending_region_hit_by_its_own_wave_withdraws(seed):
    """West lends to east, then 250 more of west's own servers power on at t = 35 s: west withdraws what it
    lent (``peer overloaded``); nothing more is admitted under it, and everyone finishes."""
    reg = build_regions(seed, late={"west": (250, 35.0)}, **SMALL).run()
    ev = reg.events()
    withdrawn = [e for e in ev if e["kind"] == "council.state" and e["fields"]["to"] == "ended"
                 and e["fields"]["reason"] == "peer overloaded" and e["node"] == "west-rc"]
    assert withdrawn and all(e["fields"]["by"] == rc("west") for e in withdrawn), f"seed {seed}: no withdrawal"
    mids = {e["fields"]["mitigation"] for e in withdrawn}
    at = min(e["time"] for e in withdrawn)
    late = [e for e in ev if e["kind"] == "council.admitted" and e["fields"]["mitigation"] in mids and e["time"] > at]
    assert not late, f"seed {seed}: admitted under a withdrawn mitigation: {late[:3]}"
    f = reg.figures()
    assert f["done"] == {"east": 60, "west": 310, "north": 60}, f"seed {seed}: {f['done']}"
    assert_holds(reg, judge(reg), must=("admission-limit", "servers-done", "redirect-accepted",
                                        "redirect-within-accepted"))


def test_two_damaged_regions_share_one_peer_and_it_accepts_one_of_them_partially():
    """East and north both at 20%: both ask west; west accepts the second proposal only up to what is left of its
    headroom (a partial acceptance, seed 5), and never admits more than it accepted."""
    seed = 5
    reg = build_regions(seed, damaged=("east", "north"), **SMALL).run()
    dec = [e["fields"] for e in reg.events() if e["kind"] == "council.decided"]
    partial = [d for d in dec if d["outcome"] == "partial"]
    assert partial and all(0 < d["accepted"] < d["requested"] for d in partial), f"seed {seed}: {dec}"
    assert {d["proposer"] for d in dec} == {rc("east"), rc("north")}, f"seed {seed}"
    f = reg.figures()
    assert all(v == SMALL["servers"] for v in f["done"].values()), f"seed {seed}: {f['done']}"
    assert_holds(reg, judge(reg), must=("admission-limit", "servers-done", "redirect-accepted",
                                        "redirect-within-accepted"))


@pytest.mark.parametrize("seed", [2])
def test_each_region_works_alone_when_the_others_are_unreachable(seed):
    """No region hears another for the whole run: every region still boots all its servers on its own; the damaged
    one finds no peer to answer, tells nobody it cannot reach, and queues behind its own store."""
    alone = build_regions(seed, council=False, **SMALL).run().figures()["makespan"]
    reg = build_regions(seed, oversight=True, **SMALL)
    reg.separate()
    reg.run()
    f = reg.figures()
    assert all(v == SMALL["servers"] for v in f["done"].values()), f"seed {seed}: {f['done']}"
    ev = reg.events()
    assert not [e for e in ev if e["kind"] in ("council.decided", "council.redirect")], f"seed {seed}"
    none = [e for e in ev if e["kind"] == "council.no_mitigation" and e["node"] == "east-rc"]
    assert none and "did not answer" in none[0]["fields"]["why"], f"seed {seed}: {none[:1]}"
    for g in reg.regions:
        assert f["makespan"][g] <= 1.05 * alone[g], f"seed {seed}: {g} {f['makespan'][g]} against {alone[g]} alone"
    assert_holds(reg, judge(reg), must=("admission-limit", "servers-done", "leases-end"))
