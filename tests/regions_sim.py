"""Workflow groups in several regions, one council of image controllers, in the deterministic simulator.

How this works
--------------
:func:`build_regions` puts, per region ``g`` (a workflow group, FIG. 5 of seed 000): a workflow
controller ``{g}-wf/workflow``, the image store's resource controller ``{g}-rc/images`` (durable: its
Persist effects go to ``Regions.disk``), ``proxies`` proxies ``{g}-px/proxy{j}``, a simulated image
store (:class:`tests.workflow_sim.SimStore`, processor sharing, reporting its load to its controller
every ``report_every`` s) and ``servers`` servers ``{g}-s{i}/server`` (one node each), all powered on
within ``start_spread`` s (``late``: region -> (servers, at): a second wave powered on at ``at``). Every server's workflow is one stage ``image`` (``stage_time`` s of work at
full speed, lognormal per server, drawn from the seed) then, if ``local_stage``, a local one.

The ``damaged`` region's store (or each of several) comes back from an outage at ``damaged_fraction`` of its capacity (after
``outage`` s at 1 client, if ``outage`` > 0) while its servers boot. With ``council`` the image
controllers form a council (``council_kw`` sets its rules; ``approval`` its oversight mode), and an
oversight role ``ops/oversight`` (:class:`Oversight`) serves it when ``oversight`` (default: whenever
``approval`` is not ``none``); ``operator`` (a callable ``(regions, now)``) may act as a person each
second of simulated time (approve, reject, propose, cancel).

A redirected server's stage pulls from the store of the controller that granted it
(``RunStage.sources``). Region links have ``link`` latency inside a region, ``cross`` between regions.
"""

from __future__ import annotations

import copy
import random
from collections import defaultdict
from typing import Any, Callable

from actors.eventlog import EventLog
from actors.simulator import Simulator
from protocols.core import Persist
from protocols.workflow import (
    AbortStage,
    PowerOff,
    PowerOn,
    Proxy,
    ResourceController,
    RunStage,
    Server,
    ServerState,
    SetPower,
    StageDone,
    WorkflowController,
)
from protocols.workflow.oversight import Oversight
from tests.workflow_sim import SimStore
from transport.sim import LinkSpec, SimNetwork, Uniform

__all__ = ["OVERSIGHT", "Regions", "build_regions"]

OVERSIGHT = "ops/oversight"
OPERATOR = "ops/console"  # the console runs on the oversight role's node


def rc(g: str) -> str:
    return f"{g}-rc/images"


class Regions:
    """A built multi-region boot storm; see :func:`build_regions`."""

    def __init__(self, sim: Simulator, params: dict) -> None:
        self.sim = sim
        self.params = params
        self.regions: list[str] = []
        self.servers: dict[str, list[str]] = {}
        self.region_of: dict[str, str] = {}
        self.stores: dict[str, SimStore] = {}  # controller -> its store
        self.work: dict[str, float] = {}
        self.disk: dict[str, dict] = defaultdict(dict)
        self.make_controller: Callable[..., ResourceController] | None = None
        self.replies: list[Any] = []  # what the oversight role answered the operator
        self.started: set[str] = set()  # servers powered on so far

    # -- access ---------------------------------------------------------------------------------

    def controller(self, g: str) -> ResourceController:
        return self.sim.machine(rc(g))

    def oversight(self) -> Oversight:
        return self.sim.machine(OVERSIGHT)

    def events(self) -> list[dict]:
        return self.sim.event_log.events()

    @property
    def seed(self) -> int:
        return self.sim.seed

    def all_servers(self) -> list[str]:
        return [s for g in self.regions for s in self.servers[g]]

    # -- the hosts ------------------------------------------------------------------------------

    def _server_host(self, effect: Any, address: str, sim: Simulator) -> None:
        c = type(effect)
        if c is RunStage:
            if effect.resources:
                src = effect.sources[0] if effect.sources else rc(self.region_of[address])
                self.stores[src].start(address, effect.run, effect.stage, self.work[address])
            else:
                sim.send(address, StageDone(effect.stage, effect.run), sender=address,
                         at=sim.now + self.params["local_stage"])
        elif c is AbortStage:
            for store in self.stores.values():
                store.abort(address)
        elif c in (SetPower, PowerOff, PowerOn):
            pass
        else:
            raise TypeError(f"{address}: the regions host cannot carry out {effect!r}")

    def _durable_host(self, effect: Any, address: str, sim: Simulator) -> None:
        if type(effect) is Persist:
            self.disk[address][effect.key] = copy.deepcopy(effect.data)
        else:
            raise TypeError(f"{address}: cannot carry out {effect!r}")

    def _operator_host(self, effect: Any, address: str, sim: Simulator) -> None:
        raise TypeError(f"{address}: cannot carry out {effect!r}")

    # -- operator -------------------------------------------------------------------------------

    def operator_says(self, msg: Any) -> None:
        """An operator's message to the oversight role (its answer lands in :attr:`replies`)."""
        self.sim.send(OVERSIGHT, msg, sender=OPERATOR)

    # -- faults ---------------------------------------------------------------------------------

    def restart_controller(self, g: str) -> ResourceController:
        addr = rc(g)
        assert self.make_controller is not None
        new = self.make_controller(g, durable=copy.deepcopy(self.disk.get(addr) or {}))
        self.sim.restart(addr, new)
        return new

    def isolate(self, node: str) -> None:
        """Cut ``node`` off from every other node, both ways (the nemesis ``one``)."""
        for other in sorted(self.sim.network.nodes):
            if other != node:
                self.sim.cut(node, other)
                self.sim.cut(other, node)

    def separate(self) -> None:
        """Every region an island of its own (and the oversight role one more): no region hears another."""
        islands = []
        for g in self.regions:
            nodes = {f"{g}-rc", f"{g}-wf"} | {a.partition("/")[0] for a in self.servers[g]}
            nodes |= {n for n in self.sim.network.nodes if n.startswith(f"{g}-px")}
            islands.append(nodes)
        self.sim.partition(islands)

    def heal(self) -> None:
        self.sim.heal()

    # -- running --------------------------------------------------------------------------------

    def finished(self, region: str | None = None) -> bool:
        servers = self.servers[region] if region else self.all_servers()
        return all(a in self.started and self.sim.machine(a).finished for a in servers)

    def run(self, until: float | None = None, chunk: float = 10.0) -> "Regions":
        until = self.params["time_limit"] if until is None else until
        while self.sim.now < until:
            self.sim.run(until=min(self.sim.now + chunk, until))
            if self.finished():
                break
        return self

    def makespan(self, region: str) -> float | None:
        ends = []
        for a in self.servers[region]:
            if a not in self.started:
                return None
            m = self.sim.machine(a)
            if not m.finished:
                return None
            ends.append(m.done_at)
        return max(ends) if ends else None

    def figures(self) -> dict[str, Any]:
        ev = self.events()
        kinds = defaultdict(int)
        for e in ev:
            if e["kind"].startswith(("council.", "oversight.")):
                kinds[e["kind"]] += 1
        ctrls = {g: self.controller(g) for g in self.regions}
        council_sent = sum(c.council.sent for c in ctrls.values() if c.council is not None)
        mitigations = kinds["council.proposed"] + sum(1 for e in ev if e["kind"] == "oversight.impose")
        return {
            "seed": self.seed,
            "makespan": {g: self.makespan(g) for g in self.regions},
            "done": {g: sum(1 for a in self.servers[g] if a in self.started
                         and self.sim.machine(a).state is ServerState.DONE)
                     for g in self.regions},
            "limits": {g: c.limit for g, c in ctrls.items()},
            "store_peak": {g: self.stores[rc(g)].peak for g in self.regions},
            "store_failed": sum(s.failed for s in self.stores.values()),
            "events": dict(kinds),
            "redirected": kinds["council.redirect"],
            "admitted": kinds["council.admitted"],
            "mitigations": mitigations,
            "council_messages": council_sent,
            "council_messages_per_mitigation": council_sent / mitigations if mitigations else None,
            "sim_time": self.sim.now,
        }


def build_regions(
    seed: int,
    *,
    regions: tuple[str, ...] = ("east", "west", "north"),
    servers: int = 200,
    capacity: int = 20,
    damaged: str | tuple[str, ...] | None = "east",
    damaged_fraction: float = 0.2,
    outage: float = 0.0,
    council: bool = True,
    approval: str = "none",
    approval_share: float = 0.25,
    oversight: bool | None = None,
    operator: Callable[["Regions", float], None] | None = None,
    proxies: int = 1,
    stage_time: float = 10.0,
    stage_sigma: float = 0.25,
    local_stage: float = 0.0,
    boot_time: float = 5.0,
    start_spread: float = 2.0,
    late: dict[str, tuple[int, float]] | None = None,
    ttl: float = 30.0,
    link: LinkSpec | None = None,
    cross: LinkSpec | None = None,
    report_every: float = 2.0,
    council_kw: dict | None = None,
    controller_kw: dict | None = None,
    server_kw: dict | None = None,
    event_log: EventLog | None = None,
    time_limit: float | None = None,
) -> Regions:
    """Build the multi-region storm (see the module docstring); nothing runs until :meth:`Regions.run`."""
    if oversight is None:
        oversight = approval != "none"
    hurt = (damaged,) if isinstance(damaged, str) else tuple(damaged or ())
    network = SimNetwork(default=link if link is not None else LinkSpec(latency=Uniform(0.001, 0.005)))
    sim = Simulator(seed, network, event_log=event_log)
    reg = Regions(sim, {"local_stage": local_stage, "boot_time": boot_time, "stage_time": stage_time})
    reg.regions = list(regions)
    wrng = random.Random(f"{seed}/regions")
    starts: dict[str, float] = {}
    for g in regions:
        reg.servers[g] = [f"{g}-s{i}/server" for i in range(servers)]
        for a in reg.servers[g]:
            reg.region_of[a] = g
            reg.work[a] = stage_time * wrng.lognormvariate(-stage_sigma ** 2 / 2, stage_sigma)
            starts[a] = wrng.uniform(0.0, start_spread) if start_spread > 0 else 0.0
        n_late, at = (late or {}).get(g, (0, 0.0))
        for i in range(n_late):  # a second wave: servers of this region powered on at ``at``
            a = f"{g}-l{i}/server"
            reg.servers[g].append(a)
            reg.region_of[a] = g
            reg.work[a] = stage_time * wrng.lognormvariate(-stage_sigma ** 2 / 2, stage_sigma)
            starts[a] = at + (wrng.uniform(0.0, start_spread) if start_spread > 0 else 0.0)
    worst = max(sum(reg.work[a] for a in reg.servers[g]) / (capacity * (damaged_fraction if g in hurt else 1.0))
                for g in regions)
    reg.params["time_limit"] = time_limit if time_limit is not None else 3 * worst + outage + 600.0

    members = [rc(g) for g in regions]
    proxy_of = {rc(g): [f"{g}-px/proxy{j}" for j in range(proxies)] for g in regions}
    cfg: dict[str, Any] = {"name": "images", "members": members, "proxies": proxy_of,
                           "oversight": OVERSIGHT if oversight else "", "approval": approval,
                           "approval_share": approval_share, "wait_threshold": 12 * stage_time,
                           "duration": 12 * stage_time, "hold": 3 * stage_time}
    cfg.update(council_kw or {})
    ckw = {"limit": capacity, "ttl": ttl, "grace": 0.0, "adaptive": True, "expected": stage_time,
           "wake_ahead": max(10.0, 2 * boot_time)}
    ckw.update(controller_kw or {})

    def make_controller(g: str, durable: dict | None = None, first: bool = False) -> ResourceController:
        kw = dict(ckw)
        if not first:
            kw["grace"] = ckw.get("grace") or ttl
        return ResourceController("images", rng=sim.rng(rc(g)), durable={} if durable is None else durable,
                                  address=rc(g), council=cfg if council else None, **kw)

    reg.make_controller = make_controller
    for g in regions:
        addr = rc(g)
        sim.add(addr, make_controller(g, first=True), host=reg._durable_host)
        cap = max(1, round(capacity * damaged_fraction)) if g in hurt else capacity
        store = SimStore(sim, "images", addr, 1 if (g in hurt and outage > 0) else cap)
        reg.stores[addr] = store
        if g in hurt and outage > 0:
            sim.schedule(outage, lambda s=store, c=cap: s.set_capacity(c))
        for j, p in enumerate(proxy_of[addr]):
            sim.add(p, Proxy(p, {"images": addr}, flush_every=1.0))
        catalogue = [{"workflow": "boot", "match": {}, "stages": [
            {"name": "image", "resources": ["images"], "expected": stage_time}]
            + ([{"name": "config", "needs": ["image"], "expected": local_stage}] if local_stage > 0 else [])}]
        sim.add(f"{g}-wf/workflow", WorkflowController(catalogue, {"images": {"controller": addr,
                                                                              "proxies": proxy_of[addr]}}))

    def report(store: SimStore) -> None:
        store._settle()
        sim.send(store.controller, store.report(), sender=f"store-{store.controller.partition('-')[0]}/store")
        if not reg.finished():
            sim.schedule(sim.now + report_every, lambda: report(store))

    for store in reg.stores.values():
        sim.schedule(report_every, lambda s=store: report(s))

    if oversight:
        sim.add(OVERSIGHT, Oversight({"images": {"members": members, "approval": approval,
                                                 "approval_share": approval_share}},
                                     rng=sim.rng(OVERSIGHT), address=OVERSIGHT, durable={}),
                host=reg._durable_host)

        class _Console:  # the operator's end: keeps what the oversight role answers
            tick_interval = 1.0

            def tick(self, now: float) -> list:
                if operator is not None:
                    operator(reg, now)
                return []

            def handle(self, msg: Any, sender: str, now: float) -> list:
                reg.replies.append(msg)
                return []

        sim.add(OPERATOR, _Console(), host=reg._operator_host)

    skw = {"resume_delay": boot_time, "retry_after": 2.0, "proxy_after": 10.0}
    skw.update(server_kw or {})
    for g in regions:
        for i, a in enumerate(reg.servers[g]):
            sim.network.add_node(a.partition("/")[0])

            def start(a: str = a, g: str = g, i: int = i) -> None:
                sim.add(a, Server(a, f"{g}-wf/workflow", rng=sim.rng(a), hardware="x86", location=g, **skw),
                        host=reg._server_host)
                reg.started.add(a)
            if starts[a] == 0.0:
                start()
            else:
                sim.schedule(starts[a], start)
    if cross is not None:  # the links between regions' controllers (and from proxies/servers to a peer's)
        for g in regions:
            for h in regions:
                if g != h:
                    for a in [f"{g}-rc"] + [p.partition("/")[0] for p in proxy_of[rc(g)]]:
                        sim.set_link(a, f"{h}-rc", cross, both=True)
    return reg
