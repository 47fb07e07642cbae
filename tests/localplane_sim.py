"""A simulated edge deployment of the local-plane protocol, reusable by tests and the benchmark.

How this works
--------------
:func:`build_edge` puts one :class:`DeploymentManager` (``mgr/manager``) and N
:class:`EdgeNode` machines (``e{i}/edge``, one simulator node each, so faults
can single them out) into the deterministic :class:`Simulator`. Node
capabilities, free resources and criteria are drawn from
``random.Random(f"{seed}/fleet")`` at build time (or given per node with
``profiles``). Scenario helpers schedule the faults:

* :meth:`EdgeSim.isolate` partitions the manager away from every edge node
  (or from the given groups of edges, each its own island);
* :meth:`EdgeSim.heal` heals the network;
* :meth:`EdgeSim.flaky` makes the manager's links lossy (both ways, no
  partition) and :meth:`EdgeSim.steady` makes them lossless again;
* :meth:`EdgeSim.lossy_site` makes the links among the edge nodes lossy (both
  ways): loss *inside* a site, e.g. while it is isolated;
* :meth:`EdgeSim.cut_uplink` cuts one edge node's link to the manager (both
  ways) and nothing else: the node still reaches its whole site, which still
  reaches the manager (one connected component);
* :meth:`EdgeSim.restart` restarts a participant (crashing it first if it is
  up) as a new incarnation: from its disk (every ``Persist`` it returned, in
  effect order, kept per address in :attr:`EdgeSim.disk` as the JSON a file
  store would hold), or with ``disk=False`` from an empty one (a replaced
  disk). Every start gets a fresh rng; the first start is told so
  (``first_start=True``), a restart never is;
* served roles: every edge node's host effects (``StartRole`` / ``StopRole``
  / ``CheckRole`` / ``ServeRequest``) go to its simulated workloads
  (:class:`topologies.edge.services.ServiceHost`, in :attr:`EdgeSim.services`)
  and are recorded in :attr:`EdgeSim.host_effects`; ``build_edge(clients={})``
  adds the site's clients (``SiteClients`` at ``e0/clients``);
* :meth:`EdgeSim.leader_of` / :meth:`EdgeSim.plans` read the plane's state
  from the event log; :func:`held_at` / :func:`all_held_since` replay the
  holders' own ``edge.role_assigned`` / ``edge.role_relinquished`` events
  (who holds which role share when, and from when on every role was held).

:func:`toml_timings` reads the timeouts of ``topologies/edge.toml`` (the edge
nodes' defaults and the manager's params) and :func:`toml_profiles` its edge
nodes' profiles, so a simulated scenario runs with exactly the timing (and,
with 20 nodes, the fleet) of the chaos runs of that file.

*Clocks.* The simulator hands every machine its one virtual time. With
``skew``/``drift`` (or ``clocks``) :func:`build_edge` wraps each machine in a
:class:`SkewedClock`: the machine reads ``rate * t + offset`` at virtual time
``t`` (offset uniform in ``[-skew, skew]`` s, rate in ``[1 - drift, 1 +
drift]``, drawn from ``random.Random(f"{seed}/clock")``), and its timers,
set on its own clock, fire at the matching virtual time. The event log keeps
virtual time, so the checkers judge one timeline.

Everything a test asserts is read from the event log (``sim.event_log``), the
same records the checkers in ``topologies/edge/checks.py`` judge.
"""

from __future__ import annotations

import inspect
import json
import math
import random
import tomllib
from pathlib import Path
from typing import Any, Callable

from actors.simulator import Simulator
from protocols.core import Persist, SetTimer
from protocols.localplane import DeploymentManager, EdgeNode, SiteClients
from topologies.edge.services import ServiceHost
from topologies.hosts import sim_api
from transport.sim import LinkSpec, SimNetwork, Uniform

MANAGER = "mgr/manager"
DEFAULT_INTENT = {"name": "shop", "functionalities": ["storage", "frontend"]}


def random_profile(rng: random.Random) -> dict[str, Any]:
    return {
        "capability": {"tx_per_s": round(rng.uniform(60, 240), 1), "req_per_s": round(rng.uniform(150, 480), 1),
                       "ops_per_s": round(rng.uniform(200, 900), 1)},
        "free": round(rng.uniform(0.4, 1.0), 3),
        "criteria": {"backup_power": rng.choice((0.0, 0.5, 1.0)), "connectivity": round(rng.uniform(0.3, 1.0), 3),
                     "load": round(rng.uniform(0.0, 0.8), 3)},
    }


class SkewedClock:
    """A machine whose clock reads ``rate * t + offset`` when the simulator's virtual time is ``t``: ``tick`` and
    ``handle`` get that local time, and every ``SetTimer`` it returns (an instant of its own clock) is turned
    back into virtual time. Any other attribute is the machine's (tests read its state through it)."""

    def __init__(self, machine: Any, rate: float = 1.0, offset: float = 0.0) -> None:
        if not rate > 0:
            raise ValueError(f"a clock's rate must be positive, got {rate}")
        self.machine = machine
        self.rate = rate
        self.offset = offset
        iv = getattr(machine, "tick_interval", None)
        self.tick_interval = None if iv is None else iv / rate  # its ticks are paced by its own clock

    def local(self, t: float) -> float:
        return self.rate * t + self.offset

    def virtual(self, local: float) -> float:
        """The first virtual time at which this clock reads ``local`` or later (rounding never fires a timer
        before its instant on the machine's own clock)."""
        if not math.isfinite(local):
            return local
        v = (local - self.offset) / self.rate
        while self.local(v) < local:
            v = math.nextafter(v, math.inf)
        return v

    def _back(self, effects: list) -> list:
        return [SetTimer(e.key, self.virtual(e.at)) if isinstance(e, SetTimer) else e for e in effects]

    def tick(self, t: float) -> list:
        return self._back(self.machine.tick(self.local(t)))

    def handle(self, msg: Any, sender: str, t: float) -> list:
        return self._back(self.machine.handle(msg, sender, self.local(t)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.machine, name)


class EdgeSim:
    def __init__(self, sim: Simulator, edges: list[str], params: dict[str, Any]) -> None:
        self.sim = sim
        self.seed = sim.seed
        self.edges = edges
        self.params = params
        self.disk: dict[str, dict[str, Any]] = {}  # address -> key -> data: what Persist wrote (JSON, as on a file)
        self.starts: dict[str, int] = {}  # address -> machines built (incarnations)
        self.builders: dict[str, Callable[..., Any]] = {}  # address -> builder(rng, durable, first_start)
        self.clocks: dict[str, tuple[float, float]] = {}
        self.host_effects: list[tuple[float, str, Any]] = []  # (time, address, effect) of non-Persist host effects
        self.on_host: Callable[[Any, str, Any], None] | None = None  # plugged in by a test: (effect, address, sim)
        self.services: dict[str, ServiceHost] = {}  # edge address -> its simulated workloads
        self.clients = ""  # the address of the site's simulated clients ("" if none)

    def host(self, effect: Any, address: str, sim: Any) -> None:
        """The simulated host of every participant: ``Persist`` to its disk, anything else recorded and handed to
        the node's simulated workloads (``topologies.edge.services.ServiceHost``)."""
        if isinstance(effect, Persist):
            self.disk.setdefault(address, {})[effect.key] = json.loads(json.dumps(effect.data))
            return
        self.host_effects.append((sim.now, address, effect))
        if address in self.services:
            self.services[address].on_effect(effect, sim_api(sim, address))
        if self.on_host is not None:
            self.on_host(effect, address, sim)

    def build(self, address: str, *, disk: bool = True) -> Any:
        """A new incarnation of the machine at ``address`` (from its disk, or from an empty one)."""
        k = self.starts[address] = self.starts.get(address, 0) + 1
        if not disk:
            self.disk[address] = {}
        rng = self.sim.rng(address) if k == 1 else random.Random(f"{self.seed}/{address}/incarnation {k}")
        machine = self.builders[address](rng, json.loads(json.dumps(self.disk.get(address, {}))), k == 1)
        rate, offset = self.clocks.get(address, (1.0, 0.0))
        return machine if (rate, offset) == (1.0, 0.0) else SkewedClock(machine, rate, offset)

    def restart(self, address: str, *, disk: bool = True) -> None:
        """Restart ``address`` (crashed first if it is up) as a new incarnation, from its disk or (``disk=False``)
        from an empty one."""
        if self.sim.alive(address):
            self.sim.crash(address)
        self.sim.restart(address, self.build(address, disk=disk))

    # -- faults -----------------------------------------------------------------------------

    def isolate(self, *groups: list[str]) -> None:
        """Cut the manager off; edges form one island, or the given groups one island each."""
        nodes = lambda addrs: [a.partition("/")[0] for a in addrs]  # noqa: E731
        islands = [["mgr"]] + ([nodes(g) for g in groups] if groups else [nodes(self.edges)])
        self.sim.partition(islands)

    def heal(self) -> None:
        self.sim.heal()

    def flaky(self, loss: float, latency: tuple[float, float] = (0.001, 0.005)) -> None:
        """Lossy links between the manager and every edge node, both ways (no partition)."""
        spec = LinkSpec(latency=Uniform(*latency), loss=loss)
        for e in self.edges:
            self.sim.set_link("mgr", e.partition("/")[0], spec, both=True)

    def steady(self, latency: tuple[float, float] = (0.001, 0.005)) -> None:
        """The manager's links lose nothing again."""
        for e in self.edges:
            self.sim.set_link("mgr", e.partition("/")[0], LinkSpec(latency=Uniform(*latency)), both=True)

    def lossy_site(self, loss: float, latency: tuple[float, float] = (0.001, 0.005),
                   edges: list[str] | None = None) -> None:
        """Lossy links among the edge nodes (every pair, both ways); the manager's links are left alone."""
        nodes = [e.partition("/")[0] for e in (edges or self.edges)]
        spec = LinkSpec(latency=Uniform(*latency), loss=loss)
        for i, a in enumerate(nodes):
            for b in nodes[i + 1:]:
                self.sim.set_link(a, b, spec, both=True)

    def cut_uplink(self, edge: str) -> None:
        """Cut only this edge node's link to the manager, both ways (its site and the manager stay connected)."""
        node = edge.partition("/")[0]
        self.sim.cut("mgr", node)
        self.sim.cut(node, "mgr")

    def clock(self, address: str) -> tuple[float, float]:
        """(rate, offset) of a participant's clock ((1, 0) when clocks are not skewed)."""
        m = self.sim.machine(address)
        return (m.rate, m.offset) if isinstance(m, SkewedClock) else (1.0, 0.0)

    def crash(self, address: str) -> None:
        self.sim.crash(address)

    # -- reading the log ----------------------------------------------------------------------

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.sim.event_log.lines()]

    def of(self, kind: str, since: float = -1.0) -> list[dict]:
        return [e for e in self.events() if e["kind"] == kind and e["time"] >= since]

    def run(self, until: float) -> None:
        self.sim.run(until=until)

    def leaders(self, since: float = -1.0) -> list[dict]:
        return self.of("plane.leader", since)

    def manager(self) -> DeploymentManager:
        return self.sim.machine(MANAGER)

    def edge(self, address: str) -> EdgeNode:
        return self.sim.machine(address)


def build_edge(
    seed: int,
    n: int = 8,
    *,
    intent: dict | None = None,
    tables: dict | None = None,
    profiles: list[dict] | None = None,
    latency: tuple[float, float] = (0.001, 0.005),
    loss: float = 0.0,
    duplicate: float = 0.0,
    edge_params: dict | None = None,
    manager_params: dict | None = None,
    trace: bool = False,
    skew: float = 0.0,
    drift: float = 0.0,
    clocks: dict[str, tuple[float, float]] | None = None,
    clients: dict | None = None,
) -> EdgeSim:
    """A manager and ``n`` edge nodes in a fresh simulator (see the module docstring). ``skew`` (seconds) and
    ``drift`` (a fraction) give every participant its own clock; ``clocks`` (address -> (rate, offset)) sets
    some explicitly. Every edge node's workloads are simulated (``services``); ``clients`` (SiteClients
    parameters, ``{}`` for the defaults) adds the site's simulated clients at ``e0/clients``."""
    net = SimNetwork(default=LinkSpec(latency=Uniform(*latency), loss=loss, duplicate=duplicate))
    sim = Simulator(seed, network=net, trace_messages=trace)
    edges = [f"e{i}/edge" for i in range(n)]
    fleet = random.Random(f"{seed}/fleet")
    draw = random.Random(f"{seed}/clock")
    given = dict(clocks or {})
    ep = dict(edge_params or {})
    mp = dict(manager_params or {})
    s = EdgeSim(sim, edges, {"n": n, "intent": intent or DEFAULT_INTENT, "edge_params": ep, "manager_params": mp})

    def restartable(cls: type) -> dict[str, Any]:
        """What a restart needs that the class takes (a durable store, the host's word on a first start)."""
        ps = inspect.signature(cls).parameters
        return {k: True for k in ("durable", "first_start") if k in ps}

    def extra(cls: type, durable: dict, first: bool) -> dict[str, Any]:
        takes = restartable(cls)
        return {**({"durable": durable} if "durable" in takes else {}),
                **({"first_start": first} if "first_start" in takes else {})}

    for i, addr in enumerate(edges):
        prof = profiles[i] if profiles is not None else random_profile(fleet)
        s.builders[addr] = lambda rng, durable, first, addr=addr, prof=prof: EdgeNode(
            addr, MANAGER, rng=rng, **prof, **ep, **extra(EdgeNode, durable, first))
        s.clocks[addr] = given.get(addr, (1.0 + draw.uniform(-drift, drift), draw.uniform(-skew, skew)))
        s.services[addr] = ServiceHost(random.Random(f"{seed}/{addr}/host"))
        sim.add(addr, s.build(addr), host=s.host)
    s.builders[MANAGER] = lambda rng, durable, first: DeploymentManager(
        MANAGER, edges, intent or DEFAULT_INTENT, tables, rng=rng, **mp, **extra(DeploymentManager, durable, first))
    s.clocks[MANAGER] = given.get(MANAGER, (1.0 + draw.uniform(-drift, drift), draw.uniform(-skew, skew)))
    sim.add(MANAGER, s.build(MANAGER), host=s.host)
    if clients is not None:  # the site's clients live on e0's node (its links, its partitions)
        s.clients = "e0/clients"
        sim.add(s.clients, SiteClients(edges, **clients))
    return s


# -- edge.toml's timing ------------------------------------------------------------------------------

EDGE_TOML = Path(__file__).resolve().parents[1] / "topologies" / "edge.toml"
_TIMING = ("heartbeat_interval", "isolation_after", "gather_window", "election_timeout", "fit_timeout",
           "proposal_timeout", "leader_lease", "validate_every", "reconcile_wait", "release_timeout", "handover_bound")


def toml_profiles(path: Path = EDGE_TOML) -> list[dict[str, Any]]:
    """The edge nodes' profiles (capability, free, criteria) in ``edge.toml``, in file order."""
    doc = tomllib.loads(path.read_text())
    return [{k: a["params"][k] for k in ("capability", "free", "criteria")}
            for n in doc["nodes"] for a in n.get("actors", []) if a["kind"] == "localplane.edge"]


def toml_timings(path: Path = EDGE_TOML) -> tuple[dict[str, Any], dict[str, Any]]:
    """(edge params, manager params): the timeouts ``edge.toml`` gives its edge nodes and its manager."""
    doc = tomllib.loads(path.read_text())
    edge = {k: v for k, v in doc["defaults"]["localplane.edge"].items() if k in _TIMING}
    mgr = next(a["params"] for n in doc["nodes"] for a in n.get("actors", []) if a["kind"] == "localplane.manager")
    return edge, {k: v for k, v in mgr.items() if k in _TIMING}


# -- holders, replayed from the event log ----------------------------------------------------------------


def _apply(held: dict[tuple[str, str], dict], e: dict) -> bool:
    """Apply one event to ``held`` ((holder, key) -> role_assigned fields); True if it was a holder's event."""
    f = e.get("fields") or {}
    who = f"{e['node']}/{e['actor']}"
    if e["kind"] == "edge.role_assigned":
        held[(who, f["key"])] = f
    elif e["kind"] == "edge.role_relinquished":
        held.pop((who, f["key"]), None)
    elif e["kind"] == "sim.crash":
        for k in [k for k in held if k[0] == who]:
            del held[k]
    else:
        return False
    return True


def _complete(held: dict[tuple[str, str], dict], role: str) -> bool:
    """Is every share of ``role`` held, under one plan?"""
    by_plan: dict[str, set[tuple[int, int]]] = {}
    for f in held.values():
        if f["role"] == role:
            by_plan.setdefault(f["plan_id"], set()).add((f["share"], f["shares"]))
    return any(len({n for _, n in sh}) == 1 and {s for s, _ in sh} == set(range(next(iter(sh))[1]))
               for sh in by_plan.values())


def held_at(events: list[dict], t: float) -> dict[str, list[tuple[str, str, str]]]:
    """role -> [(holder, key, plan_id)] held at time ``t``, from the holders' own events."""
    held: dict[tuple[str, str], dict] = {}
    for e in events:
        if e["time"] > t:
            break
        _apply(held, e)
    out: dict[str, list[tuple[str, str, str]]] = {}
    for (who, key), f in sorted(held.items()):
        out.setdefault(f["role"], []).append((who, key, f["plan_id"]))
    return out


def all_held_since(events: list[dict], roles: set[str], since: float) -> float | None:
    """The first time at or after ``since`` from which every role in ``roles`` stays held to the end of the log
    (every share of it, under one plan), or None if that never happens."""
    held: dict[tuple[str, str], dict] = {}
    first: float | None = None
    changed_at: float | None = None

    def judge(t: float) -> None:
        nonlocal first
        if all(_complete(held, r) for r in roles):
            if first is None:
                first = max(t, since)
        else:
            first = None

    for e in events:
        if changed_at is not None and e["time"] > changed_at:
            judge(changed_at)
            changed_at = None
        if _apply(held, e):
            changed_at = e["time"]
    if changed_at is not None:
        judge(changed_at)
    return first
