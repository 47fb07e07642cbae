"""Every start of a workflow actor is a new incarnation (issue 16, deliverable 1, and `grace` of deliverable 2).

DESIGN.md, "Incarnations": a fresh nonce from the host on every start - random in a node process,
seeded per incarnation in the simulator. A server restarted from the same topology seed must be
answered (not ignored as "stale seq"), a restarted controller must get a new epoch, adopt the leases
its holders keep renewing and never reissue a live lease id, and with the shipped topology's `grace`
a controller restarted mid-storm never takes holders above the limit.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from actors import Node
from actors.eventlog import EventLog, read_events
from actors.workflow import ServerActor
from topologies.chaos import run_chaos
from topologies.durable import MemoryStore
from topologies.kinds import KINDS
from topologies.launcher import build_simulator, run_sim
from topologies.loader import load_topology
from topologies.node import Incarnations, actor_factory
from topologies.report import make_report

ROOT = Path(__file__).resolve().parents[1]
BOOT_STORM = ROOT / "topologies" / "boot_storm.toml"
WORKFLOW_CHECKERS = ("admission-limit", "leases-end", "servers-done", "no-grant-while-dormant")

# One server, one controller; both stages take the same resource, so the server's second request to
# that controller has seq 2 (the case a same-nonce restart gets stuck on).
SMALL = """
name = "incarnations"
seed = {seed}

[run]
duration = 120.0
done = "server.state[to=done]"
done_count = 1

[[nodes]]
name = "ctl"

[[nodes.actors]]
name = "workflow"
kind = "workflow.workflow"
[nodes.actors.params]
resources = {{ images = {{ controller = "ctl/images", proxies = [] }} }}
catalogue = [ {{ workflow = "boot", match = {{}}, stages = [
    {{ name = "a", resources = ["images"], expected = 1.0 }},
    {{ name = "b", resources = ["images"], needs = ["a"], expected = {stage} }} ] }} ]

[[nodes.actors]]
name = "images"
kind = "workflow.resource"
params = {{ resource = "images", limit = 2, ttl = 3.0, grace = 3.0, expected = 1.0 }}

[[nodes]]
name = "srv"

[[nodes.actors]]
name = "server"
kind = "workflow.server"
params = {{ workflow_controller = "ctl/workflow", stage_time = {stage}, stage_sigma = 0.0, retry_after = 1.0 }}
"""
SERVER, CONTROLLER = "srv/server", "ctl/images"


def small(tmp_path: Path, seed: int, stage: float = 2.0):
    f = tmp_path / "incarnations.toml"
    f.write_text(SMALL.format(seed=seed, stage=stage))
    return load_topology(f)


def node_process_factory(topo, address: str, incarnations: Incarnations):
    """The factory a node process (topologies/node.py) builds for ``address``."""
    a = next(x for n in topo.nodes for x in n.actors if f"{n.name}/{x.name}" == address)
    return actor_factory(KINDS[a.kind], a.params, address, MemoryStore(), incarnations)


def run_until(sim, predicate, limit: float, step: float = 0.05) -> bool:
    while sim.now < limit:
        sim.run(until=sim.now + step)
        if predicate():
            return True
    return False


def events_of(log: EventLog) -> list[dict]:
    return list(log.events())


def in_second_stage(sim) -> bool:
    m = sim.machine(SERVER)
    return m.seq >= 2 and m.running and "images" in m.leases


def restart_server_in_second_stage(topo, seed: int, make_machine) -> tuple[list[dict], float, object]:
    """Run until the server holds its seq-2 lease, restart it with ``make_machine()``, run on."""
    log = EventLog(maxlen=None)
    sim, factories = build_simulator(topo, seed, log)
    assert run_until(sim, lambda: in_second_stage(sim), 30.0), f"seed {seed}: the server never reached stage b"
    old_boot = sim.machine(SERVER).boot
    restarted_at = sim.now
    sim.restart(SERVER, make_machine(factories))
    new = sim.machine(SERVER)
    run_until(sim, lambda: new.state.value in ("done", "failed"), restarted_at + 60.0, step=0.5)
    return events_of(log), restarted_at, (old_boot, new)


def assert_granted_and_done(events: list[dict], restarted_at: float, boots, seed: int, how: str) -> None:
    old_boot, new = boots
    after = [e for e in events if e["time"] >= restarted_at]
    stale = [e for e in after if e["kind"] == "controller.ignored" and e["fields"].get("server") == SERVER]
    grants = [e for e in after if e["kind"] == "admission.grant" and e["fields"]["server"] == SERVER]
    assert grants, f"seed {seed} ({how}): the restarted server was never granted; ignored: {stale[:3]}"
    assert new.state.value == "done", f"seed {seed} ({how}): restarted server ended {new.state.value}; ignored: {stale[:3]}"
    assert new.boot != old_boot, f"seed {seed} ({how}): the restarted server has the old boot nonce {old_boot}"


SEEDS = [1, 2, 3]


@pytest.mark.parametrize("seed", SEEDS)
def test_a_server_restarted_as_a_new_node_process_with_the_same_seed_is_granted_and_finishes(tmp_path, seed):
    topo = small(tmp_path, seed)
    events, at, boots = restart_server_in_second_stage(
        topo, seed, lambda f: node_process_factory(topo, SERVER, Incarnations(topo.seed))())
    assert_granted_and_done(events, at, boots, seed, "new node process")


@pytest.mark.parametrize("seed", SEEDS)
def test_a_server_restarted_by_its_supervisor_in_the_same_process_is_granted_and_finishes(tmp_path, seed):
    topo = small(tmp_path, seed)
    factory = node_process_factory(topo, SERVER, Incarnations(topo.seed, nonce="one process"))
    factory()  # the first start of this process's actor
    events, at, boots = restart_server_in_second_stage(topo, seed, lambda f: factory())
    assert_granted_and_done(events, at, boots, seed, "supervised restart")


@pytest.mark.parametrize("seed", SEEDS)
def test_a_server_restarted_in_the_simulator_is_granted_and_finishes(tmp_path, seed):
    topo = small(tmp_path, seed)
    events, at, boots = restart_server_in_second_stage(topo, seed, lambda f: f[SERVER]())
    assert_granted_and_done(events, at, boots, seed, "simulator restart")


def test_the_scenario_catches_an_incarnation_derived_from_the_seed_and_address_alone(tmp_path):
    """The control: a restart built as the node process used to build it stays stuck on "stale seq"."""
    seed = 1
    topo = small(tmp_path, seed)
    a = next(x for n in topo.nodes for x in n.actors if f"{n.name}/{x.name}" == SERVER)
    events, at, (old_boot, new) = restart_server_in_second_stage(
        topo, seed, lambda f: KINDS[a.kind].build(a.params, random.Random(f"{topo.seed}/{SERVER}"), SERVER))
    assert new.boot == old_boot, f"seed {seed}: the old derivation no longer repeats the nonce"
    stale = [e for e in events if e["time"] >= at and e["kind"] == "controller.ignored"
             and e["fields"].get("why") == "stale seq"]
    assert stale and new.state.value != "done", f"seed {seed}: the scenario does not show the stale-seq trap"


def restart_controller_while_held(topo, seed: int, make_machine):
    """The server's second stage (8 s) holds a lease while the controller restarts."""
    log = EventLog(maxlen=None)
    sim, factories = build_simulator(topo, seed, log)
    assert run_until(sim, lambda: in_second_stage(sim), 30.0), f"seed {seed}: the server never reached stage b"
    old = sim.machine(CONTROLLER)
    held = sim.machine(SERVER).leases["images"].lease
    restarted_at = sim.now
    sim.restart(CONTROLLER, make_machine(factories))
    new = sim.machine(CONTROLLER)
    server = sim.machine(SERVER)
    run_until(sim, lambda: server.state.value in ("done", "failed"), restarted_at + 60.0, step=0.5)
    return events_of(log), restarted_at, old, new, held, server


def assert_adopted(events, at, old, new, held, server, seed: int, how: str) -> None:
    after = [e for e in events if e["time"] >= at]
    adopted = [e for e in after if e["kind"] == "lease.adopted"]
    lost = [e for e in after if e["kind"] in ("lease.lost", "lease.unknown")]
    assert [e["fields"]["lease"] for e in adopted] == [held], \
        f"seed {seed} ({how}): lease {held} not adopted: adopted {adopted}, lost {lost}"
    assert not lost, f"seed {seed} ({how}): the holder lost its renewed lease: {lost}"
    assert server.state.value == "done", f"seed {seed} ({how}): the server ended {server.state.value}"
    assert new.epoch != old.epoch, f"seed {seed} ({how}): the restarted controller kept epoch {old.epoch}"
    grants = [e["fields"]["lease"] for e in events if e["kind"] == "admission.grant"]
    later = [e["fields"]["lease"] for e in after if e["kind"] == "admission.grant"]
    assert len(grants) == len(set(grants)) and held not in later, \
        f"seed {seed} ({how}): a lease id was issued twice: {grants}"


@pytest.mark.parametrize("seed", SEEDS)
def test_a_controller_restarted_as_a_new_node_process_adopts_renewed_leases(tmp_path, seed):
    topo = small(tmp_path, seed, stage=8.0)
    res = restart_controller_while_held(
        topo, seed, lambda f: node_process_factory(topo, CONTROLLER, Incarnations(topo.seed))())
    assert_adopted(*res, seed, "new node process")


@pytest.mark.parametrize("seed", SEEDS)
def test_a_controller_restarted_in_the_simulator_from_its_record_keeps_the_held_lease(tmp_path, seed):
    """The simulator keeps the controller's durable record across the restart: the lease is restored, not
    adopted (no grace: the record holds every lease granted), and the holder never loses it."""
    topo = small(tmp_path, seed, stage=8.0)
    events, at, old, new, held, server = restart_controller_while_held(topo, seed, lambda f: f[CONTROLLER]())
    after = [e for e in events if e["time"] >= at]
    (start,) = [e for e in after if e["kind"] == "controller.start" and e["actor"] == "images"]
    assert start["fields"]["state"] == "active" and start["fields"]["restored"]["leases"] >= 1, start
    assert not [e for e in after if e["kind"] in ("lease.lost", "lease.unknown", "lease.adopted")], \
        f"seed {seed}: {[e for e in after if e['kind'].startswith('lease.')][:5]}"
    assert server.state.value == "done" and new.epoch != old.epoch, f"seed {seed}"
    grants = [e["fields"]["lease"] for e in events if e["kind"] == "admission.grant"]
    assert len(grants) == len(set(grants)), f"seed {seed}: a lease id was issued twice: {grants}"


def test_a_restarted_controller_never_reissues_a_live_lease_id():
    """Even an epoch that repeats (two starts, one chance in 2**31) cannot reissue an adopted lease's id."""
    from protocols.workflow.controller import ResourceController
    from protocols.workflow.messages import AccessRequest, LeaseRenew

    c = ResourceController("images", rng=random.Random(3), limit=3, ttl=3.0, grace=3.0, adaptive=False)
    c.tick(0.0)
    live = (c.epoch << 24) | 1  # the first id this epoch would issue, held from an earlier incarnation
    c.handle(LeaseRenew("s1", "images", 11, live, c.epoch + 1, 0.0), "s1", 0.5)  # a foreign epoch: adopted
    assert live in c.leases
    c.tick(3.5)  # grace over
    c.handle(AccessRequest("s2", "images", 22, 1, "a", 0, 1.0, "", 3.5), "s2", 3.5)
    ids = [lid for lid in c.leases]
    assert len(ids) == 2 and len(set(ids)) == 2, ids
    assert c.leases[live].server == "s1"


class _Recorder:
    """A stand-in workflow controller that keeps every message it is sent."""

    tick_interval = None

    def __init__(self, seen: list) -> None:
        self.seen = seen

    def tick(self, now):
        return []

    def handle(self, msg, sender, now):
        self.seen.append(msg)
        return []


def test_server_actor_starts_are_new_incarnations(nodes):
    """actors/workflow.py: the embedder's ServerActor, started twice with the same seed, says Hello with new boots."""
    from actors import StateMachineActor
    from tests.conftest import wait_for

    node = Node("lab")
    nodes.append(node)
    seen: list = []
    node.spawn(StateMachineActor, lambda: _Recorder(seen), name="workflow")
    for i in range(2):
        node.spawn(ServerActor, "lab/workflow", on_stage=lambda stage, report: None, seed=7, name=f"s{i}")
    wait_for(lambda: len({m.server for m in seen}) == 2 or None, timeout=10, what="two Hellos")
    boots = {m.server: m.boot for m in seen}
    assert boots["lab/s0"] != boots["lab/s1"], f"seed 7: two starts share boot nonce {boots}"


def test_only_a_start_the_host_can_vouch_for_skips_restart_safety(tmp_path):
    """A controller skips its grace only when its host knows no earlier incarnation ran: the simulator's first
    build, a node process's first recorded start; a restart, a supervised restart or an unrecorded start recover."""
    from protocols.workflow.controller import ControllerState

    seed = 1
    topo = small(tmp_path, seed)
    record = tmp_path / "ctl.starts.jsonl"
    first = node_process_factory(topo, CONTROLLER, Incarnations(topo.seed, record=record))
    states = [first().state, first().state]  # the first start, then a supervised restart in that process
    again = node_process_factory(topo, CONTROLLER, Incarnations(topo.seed, record=record))  # a new process
    states.append(again().state)
    states.append(node_process_factory(topo, CONTROLLER, Incarnations(topo.seed))().state)  # no record
    R, A = ControllerState.RECOVERING, ControllerState.ACTIVE
    assert states == [A, R, R, R], f"seed {seed}: {states}"
    record.write_text('{"address": "ctl/images"')  # torn: the host cannot vouch any more
    torn = node_process_factory(topo, CONTROLLER, Incarnations(topo.seed, record=record))
    assert torn().state is R, f"seed {seed}: a torn record must count as a restart"
    sim, factories = build_simulator(topo, seed, EventLog(maxlen=None))
    assert sim.machine(CONTROLLER).state is A and factories[CONTROLLER]().state is R, f"seed {seed}"


# -- the shipped topology: a controller node restarted mid-storm --------------------------------------------------


@pytest.fixture(scope="module")
def storm():
    return load_topology(BOOT_STORM)


def verdicts(run_dir: Path) -> dict[str, dict]:
    return {v["checker"]: v for v in make_report(run_dir)["verdicts"]}


def test_every_shipped_topology_turns_restart_safety_on():
    for f in sorted((ROOT / "topologies").glob("*.toml")):
        t = load_topology(f)
        for n in t.nodes:
            for a in n.actors:
                if a.kind == "workflow.resource":
                    ttl = a.params.get("ttl", 30.0)
                    grace = a.params.get("grace", ttl)
                    assert grace >= ttl, f"{f.name} {n.name}/{a.name}: grace {grace} < ttl {ttl} (controller docs)"
                    assert "first_start" not in a.params, f"{f.name} {n.name}/{a.name}: first_start is the host's word"


@pytest.mark.parametrize("seed,at", [(1, 2.0), (2, 4.0), (3, 6.0)])
def test_a_controller_node_restarted_mid_storm_keeps_every_workflow_checker_valid(storm, tmp_path, seed, at):
    ctl = [f"ctl/{a.name}" for a in storm.node("ctl").actors]

    def setup(sim, factories):
        def restart():
            for a in ctl:
                sim.restart(a, factories[a]())
        sim.schedule(at, restart)
    result = run_sim(storm, tmp_path, seed, quiet=True, setup=setup)
    v = verdicts(tmp_path)
    summary = {c: (v[c]["status"], v[c].get("summary")) for c in WORKFLOW_CHECKERS}
    assert not [c for c, x in v.items() if x["status"] == "invalid"], f"seed {seed}, restart at {at}: {summary}"
    assert all(v[c]["status"] == "valid" for c in WORKFLOW_CHECKERS), f"seed {seed}, restart at {at}: {summary}"
    assert result.ok and result.progress == 1000, f"seed {seed}, restart at {at}: {result.summary()}"
    events = read_events(tmp_path / "events.jsonl")
    starts = [e for e in events if e["kind"] == "controller.start"]
    for r in ("images", "drivers"):
        epochs = [e["fields"]["epoch"] for e in starts if e["fields"]["resource"] == r]
        assert len(epochs) == 2 and epochs[0] != epochs[1], f"seed {seed}: {r} epochs {epochs}"
        ids = [e["fields"]["lease"] for e in events if e["kind"] == "admission.grant" and e["node"] == "ctl"
               and e["actor"] == r]
        assert len(ids) == len(set(ids)), f"seed {seed}: {r} issued a lease id twice"


@pytest.mark.timeout(120)
def test_the_simulated_kill_of_the_controller_node_replays_identically(storm, tmp_path):
    seed = 1
    result = run_chaos(storm, tmp_path, seed=seed, nemesis="kill", overrides={"target": "ctl"}, sim=True, quiet=True)
    assert result.replay_identical, f"seed {seed}: {result.first_difference}"
    v = {x["checker"]: x["status"] for x in result.verdicts}
    assert all(v[c] == "valid" for c in WORKFLOW_CHECKERS), f"seed {seed}: {result.verdicts}"
    assert result.run.done == 1000, f"seed {seed}: {result.run.summary()}"
    restarts = [e for e in read_events(tmp_path / "events.jsonl") if e["kind"] == "controller.start"]
    assert len({e["fields"]["epoch"] for e in restarts}) == len(restarts) == 4, f"seed {seed}: {restarts}"
