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
* :meth:`EdgeSim.leader_of` / :meth:`EdgeSim.plans` read the plane's state
  from the event log.

Everything a test asserts is read from the event log (``sim.event_log``), the
same records the checkers in ``topologies/edge/checks.py`` judge.
"""

from __future__ import annotations

import json
import random
from typing import Any

from actors.simulator import Simulator
from protocols.localplane import DeploymentManager, EdgeNode
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


class EdgeSim:
    def __init__(self, sim: Simulator, edges: list[str], params: dict[str, Any]) -> None:
        self.sim = sim
        self.seed = sim.seed
        self.edges = edges
        self.params = params

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
) -> EdgeSim:
    """A manager and ``n`` edge nodes in a fresh simulator (see the module docstring)."""
    net = SimNetwork(default=LinkSpec(latency=Uniform(*latency), loss=loss, duplicate=duplicate))
    sim = Simulator(seed, network=net, trace_messages=trace)
    edges = [f"e{i}/edge" for i in range(n)]
    fleet = random.Random(f"{seed}/fleet")
    ep = dict(edge_params or {})
    for i, addr in enumerate(edges):
        prof = profiles[i] if profiles is not None else random_profile(fleet)
        sim.add(addr, EdgeNode(addr, MANAGER, rng=sim.rng(addr), **prof, **ep))
    mp = dict(manager_params or {})
    sim.add(MANAGER, DeploymentManager(MANAGER, edges, intent or DEFAULT_INTENT, tables, rng=sim.rng(MANAGER), **mp))
    return EdgeSim(sim, edges, {"n": n, "intent": intent or DEFAULT_INTENT, "edge_params": ep, "manager_params": mp})
