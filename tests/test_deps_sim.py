"""Seeded cold-start simulations of topologies/coldstart.toml, and unit tests of the agent and the manager.

* naive cold start (no manager; everything at once, start timeout and retry): the
  cycle groups and everything above them never come up; the checker says so;
* planned cold start: every service up, within a few percent of the critical path,
  every start after its hard dependencies (or a bootstrap start the plan named);
* an injected run-time deadlock (two services restarted at once, each waiting on the
  other) is detected within confirm_after + a tick + delivery, remediated by a
  bootstrap restart, checked and resolved;
* an opportunistic remediation fires only when its asset reboots (or at its
  deadline), a conditional one only when its condition starts to hold;
* an asset killed mid-start comes back and the plan finishes.
Every failure message names the seed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.eventlog import EventLog
from protocols.core import Emit, Send
from protocols.deps.agent import Agent, StartService
from protocols.deps.graph import plan
from protocols.deps.manager import Manager
from protocols.deps.messages import Act, Condition, Remediate, Report, ServiceInfo, ServiceUp, Status
from topologies.checkers import CHECKERS
from topologies.deps.coldstart import coldstart_figures, graph_of_topology, naive_topology
from topologies.launcher import build_simulator
from topologies.loader import load_topology
from topologies.plugin import load_plugins

load_plugins()
ROOT = Path(__file__).resolve().parents[1]
TOPO = load_topology(ROOT / "topologies" / "coldstart.toml")
BOUND = plan(graph_of_topology(TOPO)).makespan
CYCLES_AND_ABOVE = {"dns", "access-control", "block-storage", "metadata-db", "cloud-manager", "program-execution",
                    "secrets", "logging", "monitoring", "api-gateway"}


def simulate(topo, seed: int, until: float, setup=None) -> tuple[object, list[dict]]:
    log = EventLog()
    sim, factories = build_simulator(topo, seed, log)
    if setup is not None:
        setup(sim, factories)
    sim.run(until=until)
    return sim, log.events()


def kinds(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["kind"] == kind]


def verdict(name: str, events: list[dict]) -> str:
    return CHECKERS[name].check(events).status


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_naive_cold_start_deadlocks_on_the_cycles(seed):
    _, events = simulate(naive_topology(TOPO, start_timeout=6.0, retry_after=1.0), seed, 40.0)
    fig = coldstart_figures(events, BOUND)
    assert set(fig["never_up"]) == CYCLES_AND_ABOVE, f"seed {seed}: {fig}"
    assert fig["timeouts"] > 20, f"seed {seed}: the naive agents time out and retry"
    assert verdict("deps-all-up", events) == "invalid", f"seed {seed}"
    assert verdict("deps-start-order", events) == "valid", f"seed {seed}"


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_planned_cold_start_brings_every_service_up(seed):
    _, events = simulate(TOPO, seed, 30.0)
    fig = coldstart_figures(events, BOUND)
    assert fig["never_up"] == [] and fig["not_up_at_end"] == [], f"seed {seed}: {fig}"
    assert fig["makespan_ratio"] is not None and fig["makespan_ratio"] <= 1.05, f"seed {seed}: {fig}"
    for name in ("deps-start-order", "deps-all-up"):
        assert verdict(name, events) == "valid", f"seed {seed}: {CHECKERS[name].check(events).summary}"
    (p,) = kinds(events, "deps.plan")
    assert {w["group"] for w in p["fields"]["workflows"]} == {"cycle:access-control+dns",
                                                              "cycle:block-storage+metadata-db"}
    boots = [e["fields"]["service"] for e in kinds(events, "deps.launch") if e["fields"]["mode"] == "bootstrap"]
    assert sorted(boots) == ["dns", "metadata-db"], f"seed {seed}"
    problems = {e["fields"]["kind"] for e in kinds(events, "deps.problem")}
    assert {"cycle", "conditional-cycle", "cross-region", "domain-risk"} <= problems
    # program-execution and cloud-manager (its restarter) share r1-ctl: a placement ticket for an operator
    tickets = {e["fields"]["id"]: e["fields"] for e in kinds(events, "deps.ticket")}
    assert "ticket:placement:r1-b:program-execution" in tickets
    assert "move cloud-manager out of r1-b" in tickets["ticket:placement:r1-b:program-execution"]["reason"]


def _deadlock_setup(at: float):
    def setup(sim, factories):
        sim.schedule(at, lambda: [sim.send("r1-net/agent", Act("stop", "dns")),
                                  sim.send("r1-sec/agent", Act("stop", "access-control"))])
        # both restarted by hand before the manager's plan can restart them in order
        sim.schedule(at + 0.01, lambda: [sim.send("r1-net/agent", Act("start", "dns")),
                                         sim.send("r1-sec/agent", Act("start", "access-control"))])
    return setup


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_injected_run_time_deadlock_is_detected_and_fixed(seed):
    _, events = simulate(TOPO, seed, 40.0, _deadlock_setup(15.0))
    (det,) = kinds(events, "deps.deadlock_detected")
    f = det["fields"]
    assert f["members"] == ["access-control", "dns"], f"seed {seed}: {f}"
    manager = TOPO.node("mgr").actors[0].params
    bound = manager["confirm_after"] + manager["tick_interval"] + 0.05  # + delivery of the statuses
    first_wait = min(e["time"] for e in kinds(events, "deps.service")
                     if e["time"] >= 15.0 and e["fields"]["state"] == "waiting")
    assert det["time"] - first_wait <= bound, f"seed {seed}: detected {det['time'] - first_wait:.3f} s after the waits"
    (rem,) = kinds(events, "deps.remediation")
    assert rem["fields"]["bootstrap"] == ["dns"] and rem["fields"]["waived"] == [["dns", "access-control"]]
    assert kinds(events, "deps.deadlock_resolved"), f"seed {seed}"
    for name in ("deps-start-order", "deps-all-up", "deps-deadlocks-real"):
        assert verdict(name, events) == "valid", f"seed {seed}: {CHECKERS[name].check(events).summary}"


def test_without_remediation_the_deadlock_stays_and_the_checker_says_so():
    topo = _with_manager_params(TOPO, remediate=False)
    _, events = simulate(topo, 1, 30.0, _deadlock_setup(15.0))
    assert kinds(events, "deps.deadlock_detected") and not kinds(events, "deps.deadlock_resolved")
    assert verdict("deps-deadlocks-real", events) == "invalid"
    assert verdict("deps-all-up", events) == "invalid"


def _with_manager_params(topo, **params):
    import attrs
    nodes = tuple(attrs.evolve(n, actors=tuple(attrs.evolve(a, params={**a.params, **params})
                                               if a.kind == "deps.manager" else a for a in n.actors))
                  for n in topo.nodes)
    return attrs.evolve(topo, nodes=nodes)


def test_opportunistic_remediation_fires_only_when_the_asset_reboots():
    def setup(sim, factories):
        sim.schedule(10.0, lambda: sim.send("mgr/manager", Remediate("fix-meta", "restart", "metadata-db",
                                                                     when="opportunistic")))
        sim.schedule(25.0, lambda: sim.send("r1-stor/agent", Act("reboot")))
    _, events = simulate(TOPO, 1, 40.0, setup)
    (fired,) = [e for e in kinds(events, "deps.remediation_fired") if e["fields"]["id"] == "fix-meta"]
    assert fired["time"] >= 25.0 and fired["fields"]["trigger"] == "rebooting"
    assert [e for e in kinds(events, "deps.remediation_done") if e["fields"]["id"] == "fix-meta"]
    assert verdict("deps-all-up", events) == "valid"
    # with a deadline and no reboot: it fires at the deadline, not before
    def setup2(sim, factories):
        sim.schedule(10.0, lambda: sim.send("mgr/manager", Remediate("fix-meta", "restart", "metadata-db",
                                                                     when="opportunistic", deadline=8.0)))
    _, events = simulate(TOPO, 1, 30.0, setup2)
    (fired,) = kinds(events, "deps.remediation_fired")
    assert fired["fields"]["trigger"] == "deadline" and 18.0 <= fired["time"] <= 18.2


def test_conditional_remediation_fires_only_when_its_condition_holds():
    def setup(sim, factories):
        sim.schedule(15.0, lambda: sim.send("mgr/manager", Condition("region r2 isolated", True)))
        sim.schedule(25.0, lambda: sim.send("mgr/manager", Condition("region r2 isolated", False)))
    _, quiet = simulate(TOPO, 1, 14.0)
    (armed,) = kinds(quiet, "deps.remediation_armed")
    assert armed["fields"]["service"] == "identity" and armed["fields"]["condition"] == "region r2 isolated"
    assert not kinds(quiet, "deps.remediation_fired")
    _, events = simulate(TOPO, 1, 40.0, setup)
    (fired,) = kinds(events, "deps.remediation_fired")
    assert fired["time"] >= 15.0 and fired["fields"]["trigger"] == "condition region r2 isolated"
    identity = [(e["time"], e["fields"]["state"]) for e in kinds(events, "deps.service")
                if e["fields"]["service"] == "identity" and e["time"] >= 15.0]
    assert ("bootstrap" in [s for t, s in identity if t < 25.0]) and identity[-1][1] == "up"
    assert kinds(events, "deps.remediation_released")
    assert verdict("deps-start-order", events) == "valid"


def test_an_asset_killed_mid_start_comes_back_and_the_plan_finishes():
    def setup(sim, factories):
        sim.schedule(2.0, lambda: sim.crash("r1-stor/agent"))
        sim.schedule(4.0, lambda: sim.restart("r1-stor/agent", factories["r1-stor/agent"]()))
    _, events = simulate(TOPO, 1, 40.0, setup)
    assert kinds(events, "deps.asset_restarted")
    for name in ("deps-start-order", "deps-all-up"):
        assert verdict(name, events) == "valid", CHECKERS[name].check(events).summary


# -- units ---------------------------------------------------------------------------------


def test_agent_holds_a_start_until_its_dependency_is_up_and_counts_bad_input():
    a = Agent("a1", [{"name": "dns", "hard": ["dhcp"]}], manager="m/manager", address="a1/agent")
    a.tick(0.0)
    out = a.handle(Act("start", "dns"), "m/manager", 1.0)
    assert not any(isinstance(e, StartService) for e in out)
    assert a.svcs["dns"].state == "waiting" and a.svcs["dns"].waiting_on == ("dhcp",)
    sends = [e.msg for e in out if isinstance(e, Send) and isinstance(e.msg, Status)]
    assert sends[-1].state == "waiting" and sends[-1].waiting_on == ["dhcp"]
    out = a.handle(Status("a2", 7, 1, "dhcp", "up"), "a2/agent", 2.0)
    (start,) = [e for e in out if isinstance(e, StartService)]
    assert a.handle(Status("a2", 7, 1, "dhcp", "down"), "a2/agent", 2.1) == []  # an old seq: ignored
    assert a.handle(ServiceUp("dns", start.token + 1), "host", 3.0) == []  # a stale token
    a.handle(ServiceUp("dns", start.token), "host", 3.0)
    assert a.svcs["dns"].state == "up"
    out = a.handle(Act("dance", "dns"), "m/manager", 4.0)
    assert a.rejected == 1 and any(isinstance(e, Emit) and e.kind == "deps.bad_input" for e in out)
    a.handle(Act("start", "nope"), "m/manager", 4.0)
    assert a.rejected == 2


def test_manager_plans_once_every_agent_reported_and_sends_the_first_wave():
    m = Manager(["a1/agent", "a2/agent"], address="m/manager")
    m.tick(0.0)
    r1 = Report("a1", 1, 1, "fd1", "r1", [ServiceInfo("dhcp"), ServiceInfo("dns", hard=["dhcp", "acl"],
                                                                           bootstrap=True)],
                {"dhcp": "down", "dns": "down"}, {})
    m.handle(r1, "a1/agent", 0.1)
    assert m.plan is None and not [e for e in m.tick(0.2) if isinstance(e, Send)]
    r2 = Report("a2", 2, 1, "fd2", "r1", [ServiceInfo("acl", hard=["dns"], uses={"dns": "its database's address"})],
                {"acl": "down"}, {})
    m.handle(r2, "a2/agent", 0.3)
    out = m.tick(0.4)
    assert m.plan is not None and m.plan.workflows[0].bootstrap == ("dns",)
    (d,) = m.graph.deps_of("acl")
    assert (d.on, d.kind, d.function) == ("dns", "hard", "its database's address")
    assert (m.graph.services["dns"].failure_domain, m.graph.services["acl"].region) == ("fd1", "r1")
    acts = [(e.to, e.msg.action, e.msg.service) for e in out if isinstance(e, Send)]
    assert acts == [("a1/agent", "start", "dhcp")]
    out = m.handle(Status("a1", 1, 2, "dhcp", "up"), "a1/agent", 1.0)
    acts = [(e.to, e.msg.action, e.msg.service, e.msg.skip) for e in out if isinstance(e, Send)]
    assert acts == [("a1/agent", "start-bootstrap", "dns", ["acl"])]
    out = m.handle(Report("a9", 1, 1, "", "", [], {}, {}), "a9/agent", 1.1)
    m.handle(Remediate("x", "explode", "dns"), "op", 1.2)
    assert m.rejected == 1


# -- random graphs, planned, in the simulator ------------------------------------------------------


def _random_services(rng, n: int, assets: int) -> dict[str, list[dict]]:
    names = [f"s{i}" for i in range(n)]
    specs = {s: {"name": s, "hard": [], "start_time": rng.choice([0.2, 0.5, 1.0]), "bootstrap": rng.random() < 0.5}
             for s in names}
    for _ in range(rng.randint(n, 3 * n)):
        a, b = rng.sample(names, 2)
        if b not in specs[a]["hard"]:
            specs[a]["hard"].append(b)
    out: dict[str, list[dict]] = {}
    for i, s in enumerate(names):
        out.setdefault(f"h{i % assets}", []).append(specs[s])
    return out


@pytest.mark.parametrize("seed", range(10))
def test_planned_start_on_random_graphs_brings_up_everything_not_blocked(seed):
    import random as _random

    from actors.simulator import Simulator
    from topologies.deps.hosts import AssetHost
    from topologies.hosts import sim_api

    rng = _random.Random(seed)
    services = _random_services(rng, rng.randint(3, 14), rng.randint(1, 4))
    log = EventLog()
    sim = Simulator(seed, event_log=log)
    agents = [f"{a}/agent" for a in services]
    for a, specs in services.items():
        addr = f"{a}/agent"
        host = AssetHost(sim.rng(addr + "/host"), start_sigma=0.2)
        sim.add(addr, Agent(a, specs, manager="m/manager", peers=agents, address=addr, rng=sim.rng(addr)),
                host=lambda eff, addr, s, host=host: host.on_effect(eff, sim_api(s, addr)))
    sim.add("m/manager", Manager(agents, tick_interval=0.05, address="m/manager", rng=sim.rng("m/manager")))
    sim.run(until=120.0)
    events = log.events()
    (p,) = kinds(events, "deps.plan")
    blocked = set(p["fields"]["blocked"])
    last = {e["fields"]["service"]: e["fields"]["state"] for e in kinds(events, "deps.service")}
    not_up = sorted(s for s, st in last.items() if st != "up" and s not in blocked)
    assert not not_up, f"seed {seed}: {not_up} not up; plan {p['fields']['waves']}"
    assert all(last[s] == "down" for s in blocked), f"seed {seed}: a blocked service was started"
    v = CHECKERS["deps-start-order"].check(events)
    if blocked == set(last):  # one unbreakable group under everything: a ticket, nothing launched
        assert v.status == "unknown" and p["fields"]["tickets"], f"seed {seed}: {v.summary}"
    else:
        assert v.status == "valid", f"seed {seed}: {v.summary}"
    if not blocked:
        assert kinds(events, "deps.all_up"), f"seed {seed}"


def _manager_with(services: dict[str, list[ServiceInfo]]) -> Manager:
    m = Manager([f"{a}/agent" for a in services], address="m/manager", confirm_after=0.5, watch_for=5.0)
    m.tick(0.0)
    for i, (a, infos) in enumerate(services.items()):
        m.handle(Report(a, i + 1, 1, "", "", infos, {s.name: "up" for s in infos}, {}), f"{a}/agent", 0.1)
    m.tick(0.2)
    return m


def test_a_run_time_deadlock_no_rule_can_break_becomes_a_ticket():
    m = _manager_with({"a1": [ServiceInfo("x", hard=["y"])], "a2": [ServiceInfo("y", hard=["x"])]})
    m.handle(Status("a1", 1, 2, "x", "waiting", ["y"]), "a1/agent", 1.0)
    m.handle(Status("a2", 2, 2, "y", "waiting", ["x"]), "a2/agent", 1.0)
    assert not [e for e in m.tick(1.1) if isinstance(e, Emit) and e.kind == "deps.deadlock_detected"]
    assert not [e for e in m.tick(1.5) if isinstance(e, Emit) and e.kind == "deps.deadlock_detected"]
    out = m.tick(1.6)  # the cycle of waits, first seen at the 1.1 tick, has lasted confirm_after
    got = {e.kind: e.fields for e in out if isinstance(e, Emit)}
    assert got["deps.deadlock_detected"]["members"] == ["x", "y"]
    assert "no member declares a bootstrap mode" in got["deps.ticket"]["reason"]
    assert not [e for e in out if isinstance(e, Send)], "no action on a deadlock no rule can break"


def test_after_a_deadlock_is_resolved_the_manager_watches_its_members():
    m = _manager_with({"a1": [ServiceInfo("x", hard=["y"], bootstrap=True)], "a2": [ServiceInfo("y", hard=["x"])]})
    m.handle(Status("a1", 1, 2, "x", "waiting", ["y"]), "a1/agent", 1.0)
    m.handle(Status("a2", 2, 2, "y", "waiting", ["x"]), "a2/agent", 1.0)
    m.tick(1.1)
    out = m.tick(1.6)
    acts = [(e.msg.action, e.msg.service, e.msg.skip) for e in out if isinstance(e, Send)]
    assert acts == [("restart-bootstrap", "x", ["y"])]
    m.handle(Status("a1", 1, 3, "x", "bootstrap"), "a1/agent", 2.0)
    m.handle(Status("a2", 2, 3, "y", "up"), "a2/agent", 3.0)
    out = m.tick(3.1)
    assert [(e.msg.action, e.msg.service) for e in out if isinstance(e, Send)] == [("restart", "x")]
    m.handle(Status("a1", 1, 4, "x", "up"), "a1/agent", 4.0)
    out = m.tick(4.1)
    assert any(isinstance(e, Emit) and e.kind == "deps.deadlock_resolved" for e in out)
    m.handle(Status("a2", 2, 4, "y", "failed"), "a2/agent", 5.0)
    out = m.tick(5.1)
    alerts = [e.fields for e in out if isinstance(e, Emit) and e.kind == "deps.watch_alert"]
    assert alerts and alerts[0]["dropped"] == ["y"]


def test_fleetplane_deps_coldstart_command(tmp_path, capsys):
    from topologies.cli import main
    rc = main(["deps", "coldstart", str(ROOT / "topologies" / "coldstart.toml"), "--duration", "30", "-q",
               "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "[naive] 10 of 14 services never up" in out and "[planned] every service up after" in out
    assert "[naive]   INVALID  deps-all-up" in out and "[planned]   VALID    deps-all-up" in out
    assert len(list(tmp_path.glob("coldstart-*-sim-*/report.html"))) == 2


def test_a_manager_restarted_mid_start_replans_from_the_agents_reports():
    def setup(sim, factories):
        sim.schedule(2.5, lambda: sim.crash("mgr/manager"))
        sim.schedule(3.5, lambda: sim.restart("mgr/manager", factories["mgr/manager"]()))
    _, events = simulate(TOPO, 1, 40.0, setup)
    starts = kinds(events, "deps.manager_start")
    assert len(starts) == 2 and starts[0]["fields"]["incarnation"] != starts[1]["fields"]["incarnation"]
    assert len(kinds(events, "deps.plan")) == 2
    for name in ("deps-start-order", "deps-all-up"):
        assert verdict(name, events) == "valid", CHECKERS[name].check(events).summary


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_planned_start_over_a_lossy_network(seed):
    """20 % loss, 5 % duplication and reordering: lost actions are resent (same ref, carried out once),
    lost statuses come back in the periodic reports; every service still comes up in order."""
    import attrs
    topo = attrs.evolve(TOPO, network=attrs.evolve(TOPO.network, loss=0.2, duplicate=0.05, reorder=0.05))
    _, events = simulate(topo, seed, 60.0)
    fig = coldstart_figures(events, BOUND)
    assert fig["not_up_at_end"] == [], f"seed {seed}: {fig}"
    for name in ("deps-start-order", "deps-all-up"):
        assert verdict(name, events) == "valid", f"seed {seed}: {CHECKERS[name].check(events).summary}"
    refs = [e["fields"]["ref"] for e in kinds(events, "deps.act") if e["fields"]["ref"]]
    assert len(refs) == len(set(refs)), f"seed {seed}: an action was carried out twice"


def test_a_maintenance_window_is_an_opportunity_too_and_the_report_section_draws():
    from protocols.deps.messages import AssetEvent
    from topologies.deps.report import deps_section

    def setup(sim, factories):
        sim.schedule(10.0, lambda: sim.send("mgr/manager", Remediate("move-log", "restart", "logging",
                                                                     when="opportunistic")))
        sim.schedule(12.0, lambda: sim.send("mgr/manager", AssetEvent("r1-stor", "maintenance")))  # another asset
        sim.schedule(14.0, lambda: sim.send("mgr/manager", AssetEvent("r1-obs", "maintenance")))
    _, events = simulate(TOPO, 1, 20.0, setup)
    (fired,) = kinds(events, "deps.remediation_fired")
    assert fired["fields"]["trigger"] == "maintenance" and fired["time"] >= 14.0
    html = deps_section(events, [], events[0]["time"], events[-1]["time"])
    assert html and "services per state" in html and "cycle:access-control+dns" in html and "<svg" in html
    assert deps_section([e for e in events if not e["kind"].startswith("deps.")], [], 0.0, 1.0) is None


def test_embedding_an_agent_in_a_node():
    """docs/deps.md's embedding example: an Agent in a StateMachineActor, host effects by a callback."""
    import subprocess
    import sys
    import threading

    from actors import Node, StateMachineActor
    from tests.conftest import wait_for
    from protocols.deps.messages import ServiceExited

    def on_effect(eff, actor):
        if isinstance(eff, StartService):
            def run():
                ok = subprocess.run([sys.executable, "-c", "pass"]).returncode == 0
                answer = ServiceUp(eff.service, eff.token) if ok else ServiceExited(eff.service, eff.token, "x")
                actor.node.tell(actor.address, answer, actor.address)
            threading.Thread(target=run, daemon=True).start()

    services = [{"name": "dhcp"}, {"name": "dns", "hard": ["dhcp"]}]
    with Node("host1") as node:
        node.spawn(StateMachineActor, lambda: Agent("host1", services, autostart=True), on_effect, name="agent")
        wait_for(lambda: sum(e["kind"] == "deps.service" and e["fields"]["state"] == "up"
                             for e in node.events.events()) >= 2, timeout=20, what="the services up")
        log = [(e["kind"], e["fields"]["service"], e["fields"].get("state")) for e in node.events.events()
               if e["kind"] in ("deps.service", "deps.launch")]
    assert [s for k, s, _ in log if k == "deps.launch"] == ["dhcp", "dns"]
    assert log.index(("deps.service", "dhcp", "up")) < log.index(("deps.launch", "dns", None)), log


def test_manager_flags_a_service_two_assets_claim_and_a_dependency_nobody_runs():
    m = Manager(["a1/agent", "a2/agent"], address="m/manager")
    m.tick(0.0)
    m.handle(Report("a1", 1, 1, "", "", [ServiceInfo("dns", hard=["ntp"])], {"dns": "down"}, {}), "a1/agent", 0.1)
    out = m.handle(Report("a2", 2, 1, "", "", [ServiceInfo("dns"), ServiceInfo("acl")], {"dns": "up", "acl": "down"},
                          {}), "a2/agent", 0.2)
    assert m.rejected == 1 and m.owner["dns"] == "a1" and m.owner["acl"] == "a2"
    assert any(isinstance(e, Emit) and e.kind == "deps.bad_input" and "reported by a2" in e.fields["what"]
               for e in out)
    out = m.tick(0.3)
    missing = [e.fields for e in out if isinstance(e, Emit) and e.kind == "deps.problem"
               and e.fields["kind"] == "missing-dependency"]
    assert missing and missing[0]["services"] == ["dns", "ntp"]
