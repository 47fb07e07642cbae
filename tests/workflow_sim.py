"""A boot-storm simulation of the workflow protocol, reusable by tests, benchmarks and topologies.

How this works
--------------
:func:`build_storm` puts N :class:`Server` machines, one :class:`WorkflowController`,
K :class:`ResourceController` (one per resource) and optional :class:`Proxy`
machines into the deterministic :class:`Simulator`, with a simulated host for
every server; :meth:`Storm.run` runs until every server has finished (or a
time limit); :meth:`Storm.figures` reports what happened.

Layout (one simulator node per server, so faults can single out servers):

* servers ``s{i}/server`` (node ``s{i}``), started at a uniform random time in
  ``[0, start_spread]`` (power comes back; all at once when 0);
* the workflow controller ``wf/workflow``;
* resource controllers ``rc{k}/controller`` for resources ``r{k}``;
* proxies ``px{j}/proxy`` (each serves every resource).

Workload: every server gets the same workflow: stage ``s{k}`` needing resource
``r{k}``, for k = 0..K-1 in order, then (if ``local_stage > 0``) a stage
``config`` needing nothing, of ``local_stage`` seconds. A resource stage's
*work* (seconds at nominal speed) is ``stage_time * lognormvariate(-s^2/2, s)``
with ``s = stage_sigma`` (so its mean is ``stage_time``), drawn per server and
stage from ``random.Random(f"{seed}/storm")`` at build time; the ideal
makespan lower bound is therefore exact: ``max_k(sum of work on r{k} /
capacity)``.

The store behind each resource (:class:`SimStore`) is a processor-sharing
server with a per-client cap: with n transfers in flight each runs at
``min(1, capacity / n)`` of nominal speed, so ``capacity`` concurrent clients
use the whole bandwidth and more only slow everyone down. With
``fail_above=f``, a transfer started while ``n > f * capacity`` fails after
``fail_delay`` seconds (the PXE/TFTP folklore of lost boots). With
``timeout_factor=k`` the store is a :class:`CongestedStore` instead: a transfer
not done ``k`` times its work after it started fails, so past about ``k x
capacity`` clients every transfer times out (congestion collapse). Every
``report_every`` seconds the store sends its controller a
:class:`ResourceReport` (latency = ``1 / speed``, bandwidth used = ``n /
capacity``, the offered load, error rate since the last report), injected
outside the simulated network (the store's monitor has its own channel).

The host: ``RunStage`` starts a transfer on the stage's first resource's store
(or a local timer), and ``StageDone``/``StageFailed`` go back to the server as
messages when it ends; ``AbortStage`` and a crash cancel the transfer.
``SetPower``/``PowerOff``/``PowerOn`` are recorded per server as seconds at
full power, parked and off. A server woken from dormancy takes ``boot_time``
seconds before it asks again (``Server.resume_delay``).

Counters: each controller counts the messages it handled by tag; "controller
inbound" (:meth:`Storm.controller_inbound`) counts what came from servers or
proxies (requests, pings, renewals, releases, proxy batches).

:func:`check_admission` and :func:`check_no_grant_while_dormant` judge a run from
its event log alone (they rebuild holders, reservations and limits from
``admission.*``, ``lease.*`` and ``limit.changed`` events).
"""

from __future__ import annotations

import copy
import heapq
import random
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from actors.eventlog import EventLog
from actors.simulator import Simulator
from protocols.core import Persist
from protocols.workflow import (
    AbortStage,
    PowerOff,
    PowerOn,
    PowerOnMachine,
    Proxy,
    ResourceController,
    ResourceReport,
    RunStage,
    Server,
    ServerState,
    SetPower,
    StageDone,
    StageFailed,
    WakeAgent,
    WorkflowController,
)
from transport.sim import LinkSpec, SimNetwork, Uniform

__all__ = ["SERVER_INBOUND_TAGS", "CongestedStore", "SimStore", "Storm", "build_storm", "check_admission", "check_no_grant_while_dormant"]

SERVER_INBOUND_TAGS = ("AccessRequest", "StatusPing", "LeaseRenew", "Release", "ProxyBatch")
WORKFLOW = "wf/workflow"


def server_address(i: int) -> str:
    return f"s{i}/server"


def controller_address(k: int) -> str:
    return f"rc{k}/controller"


def proxy_address(j: int) -> str:
    return f"px{j}/proxy"


class SimStore:
    """A resource's store: processor sharing with a per-client speed cap (see the module docstring)."""

    def __init__(self, sim: Simulator, resource: str, controller: str, capacity: int, *,
                 fail_above: float | None = None, fail_delay: float = 1.0) -> None:
        self.sim = sim
        self.resource = resource
        self.controller = controller
        self.capacity = capacity
        self.fail_above = fail_above
        self.fail_delay = fail_delay
        self.active: dict[tuple[str, int], list] = {}  # (server, run) -> [remaining work, stage]
        self.last = 0.0
        self.version = 0
        self.peak = 0
        self.completed = 0
        self.failed = 0
        self.aborted = 0
        self._w_started = 0
        self._w_failed = 0
        self._report_seq = 0
        self.busy_area = 0.0  # integral of min(n, capacity) dt: delivered work

    def speed(self) -> float:
        n = len(self.active)
        return 1.0 if n <= self.capacity else self.capacity / n

    def _settle(self) -> None:
        now = self.sim.now
        dt = now - self.last
        if dt > 0 and self.active:
            r = self.speed()
            for v in self.active.values():
                v[0] -= dt * r
            self.busy_area += dt * min(len(self.active), self.capacity)
        self.last = now

    def start(self, server: str, run: int, stage: str, work: float) -> None:
        self._settle()
        self._w_started += 1
        if self.fail_above is not None and len(self.active) + 1 > self.fail_above * self.capacity:
            self.failed += 1
            self._w_failed += 1
            self.sim.send(server, StageFailed(stage, run, "resource overloaded"), sender=server,
                          at=self.sim.now + self.fail_delay)
            return
        self.active[(server, run)] = [work, stage]
        self.peak = max(self.peak, len(self.active))
        self._reschedule()

    def abort(self, server: str) -> None:
        self._settle()
        for k in [k for k in self.active if k[0] == server]:
            del self.active[k]
            self.aborted += 1
        self._reschedule()

    def set_capacity(self, capacity: int) -> None:
        """Change how many clients the store serves at full speed (a degraded or repaired store)."""
        self._settle()
        self.capacity = capacity
        self._reschedule()

    def _reschedule(self) -> None:
        self.version += 1
        if not self.active:
            return
        rem = min(v[0] for v in self.active.values())
        at = self.sim.now + max(0.0, rem) / self.speed()
        ver = self.version
        self.sim.schedule(at, lambda: self._complete(ver))

    def _complete(self, ver: int) -> None:
        if ver != self.version:
            return
        self._settle()
        done = [k for k, v in self.active.items() if v[0] <= 1e-7]
        for k in done:
            stage = self.active.pop(k)[1]
            self.completed += 1
            self.sim.send(k[0], StageDone(stage, k[1]), sender=k[0])
        self._reschedule()

    def report(self) -> ResourceReport:
        n = len(self.active)
        self._report_seq += 1
        err = self._w_failed / self._w_started if self._w_started else 0.0
        self._w_started = self._w_failed = 0
        return ResourceReport(self.resource, self._report_seq, n, 1.0 / self.speed(), n / self.capacity, err,
                              nominal=1.0)


class CongestedStore(SimStore):
    """A store that collapses under congestion: :class:`SimStore`'s processor sharing, and a transfer not done
    ``timeout_factor`` times its work after it started fails (its client gave up; the work done is wasted) -
    the simulator's twin of the topology's ``workflow.store`` (:class:`topologies.workflow.store.SharedStore`).
    Past about ``timeout_factor x capacity`` clients every transfer times out: congestion collapse.

    Kept in virtual time (the work each client has been served since the store started), with heaps of finish
    marks and deadlines, so an event costs O(log n) with thousands in flight (a naive fleet's retries).
    """

    def __init__(self, sim: Simulator, resource: str, controller: str, capacity: int, *,
                 timeout_factor: float = 4.0) -> None:
        if not timeout_factor > 1:
            raise ValueError(f"timeout_factor must be > 1, got {timeout_factor!r}")
        super().__init__(sim, resource, controller, capacity)
        self.timeout_factor = float(timeout_factor)
        self.timed_out = 0
        self.served = 0.0  # virtual time: work served to each client in flight since the start
        self._finishes: list[tuple[float, int, tuple[str, int]]] = []
        self._deadlines: list[tuple[float, int, tuple[str, int]]] = []
        self._token = 0

    def _settle(self) -> None:
        now = self.sim.now
        dt = now - self.last
        if dt > 0 and self.active:
            self.served += dt * self.speed()
            self.busy_area += dt * min(len(self.active), self.capacity)
        self.last = now

    def start(self, server: str, run: int, stage: str, work: float) -> None:
        self._settle()
        self._w_started += 1
        self._token += 1
        key = (server, run)
        finish, deadline = self.served + work, self.sim.now + self.timeout_factor * max(work, 1e-3)
        self.active[key] = [finish, stage, deadline, self._token]
        heapq.heappush(self._finishes, (finish, self._token, key))
        heapq.heappush(self._deadlines, (deadline, self._token, key))
        self.peak = max(self.peak, len(self.active))
        self._reschedule()

    def _live(self, heap: list) -> tuple | None:
        while heap:
            item = heap[0]
            v = self.active.get(item[2])
            if v is not None and v[3] == item[1]:
                return item
            heapq.heappop(heap)  # ended or aborted
        return None

    def _reschedule(self) -> None:
        self.version += 1
        if not self.active:
            return
        fin, dl = self._live(self._finishes), self._live(self._deadlines)
        at = min(self.sim.now + max(0.0, fin[0] - self.served) / self.speed(), dl[0])
        ver = self.version
        self.sim.schedule(max(at, self.sim.now), lambda: self._complete(ver))

    def _complete(self, ver: int) -> None:
        if ver != self.version:
            return
        self._settle()
        now = self.sim.now
        while (item := self._live(self._finishes)) is not None and item[0] <= self.served + 1e-7:
            heapq.heappop(self._finishes)
            stage = self.active.pop(item[2])[1]
            self.completed += 1
            self.sim.send(item[2][0], StageDone(stage, item[2][1]), sender=item[2][0])
        while (item := self._live(self._deadlines)) is not None and item[0] <= now + 1e-9:
            heapq.heappop(self._deadlines)
            stage = self.active.pop(item[2])[1]
            self.failed += 1
            self.timed_out += 1
            self._w_failed += 1
            self.sim.send(item[2][0], StageFailed(stage, item[2][1], "transfer timed out: the store is overloaded"),
                          sender=item[2][0])
        self._reschedule()


class Storm:
    """A built boot storm; see :func:`build_storm`."""

    def __init__(self, sim: Simulator, params: dict[str, Any]) -> None:
        self.sim = sim
        self.params = params
        self.servers: list[str] = []
        self.controllers: list[str] = []
        self.proxies: list[str] = []
        self.stores: list[SimStore] = []
        self.work: dict[tuple[int, str], float] = {}
        self.index: dict[str, int] = {}
        self.crashed: set[str] = set()
        self._power: dict[str, list] = {}  # server -> [mode, since]
        self.power_seconds: dict[str, float] = {"full": 0.0, "parked": 0.0, "off": 0.0}
        self._make_server = None  # set by build_storm
        self._make_controller = None  # set by build_storm
        self._store_of: dict[str, SimStore] = {}
        self.disk: dict[str, dict] = {}  # controller -> its durable record (Persist effects), kept across restarts
        self.off: set[str] = set()  # power_cycle: servers powered off for real (their agent gone)
        self.power_ons: list[tuple[float, str, str]] = []  # power_cycle: (time, server, "wake" | "alarm")

    # -- access ---------------------------------------------------------------------

    def server(self, i: int | str) -> Server:
        return self.sim.machine(i if isinstance(i, str) else self.servers[i])

    def controller(self, k: int = 0) -> ResourceController:
        return self.sim.machine(self.controllers[k])

    def proxy(self, j: int = 0) -> Proxy:
        return self.sim.machine(self.proxies[j])

    def workflow_controller(self) -> WorkflowController:
        return self.sim.machine(WORKFLOW)

    def events(self) -> list[dict]:
        return self.sim.event_log.events()

    @property
    def seed(self) -> int:
        return self.sim.seed

    # -- the host ---------------------------------------------------------------------

    def _host(self, effect, address: str, sim: Simulator) -> None:
        c = type(effect)
        if c is RunStage:
            i = self.index[address]
            if effect.resources:
                store = self._store_of[effect.resources[0]]
                store.start(address, effect.run, effect.stage, self.work[(i, effect.stage)])
            else:
                sim.send(address, StageDone(effect.stage, effect.run), sender=address,
                         at=sim.now + self.params["local_stage"])
        elif c is AbortStage:
            for store in self.stores:
                store.abort(address)
        elif c is SetPower:
            self._set_power(address, "full" if effect.level >= 1.0 else "parked")
        elif c is PowerOff:
            self._set_power(address, "off")
            if self.params.get("power_cycle"):
                # a real power-off: the agent and its state are gone; the RTC alarm stays set
                sim.schedule(sim.now, lambda: self._power_off(address, effect.alarm_at))
        elif c is PowerOn:
            self._set_power(address, "full")
        else:
            raise TypeError(f"{address}: the storm host cannot carry out {effect!r}")

    def _power_off(self, address: str, alarm_at: float | None) -> None:
        if self.sim.crash(address):
            self.off.add(address)
            if alarm_at is not None:
                self.sim.schedule(max(alarm_at, self.sim.now), lambda: self._power_on(address, "alarm"))

    def _power_on(self, address: str, why: str) -> None:
        """The machine boots (``boot_time``) as a new incarnation of its agent."""
        if address not in self.off:
            return
        self.off.discard(address)
        self.power_ons.append((self.sim.now, address, why))

        def booted() -> None:
            self.sim.restart(address, self._make_server(self.index[address]))
            self._set_power(address, "full")
        self.sim.schedule(self.sim.now + self.params["boot_time"], booted)

    def _bmc_host(self, effect, address: str, sim: Simulator) -> None:
        if type(effect) is PowerOnMachine:
            self._power_on(effect.server, "wake")
        else:
            raise TypeError(f"{address}: a BMC cannot carry out {effect!r}")

    def _set_power(self, address: str, mode: str) -> None:
        now = self.sim.now
        cur = self._power.get(address)
        if cur is not None:
            self.power_seconds[cur[0]] += now - cur[1]
        self._power[address] = [mode, now]

    def _close_power(self, address: str, at: float) -> None:
        cur = self._power.pop(address, None)
        if cur is not None:
            self.power_seconds[cur[0]] += max(0.0, at - cur[1])

    # -- faults ----------------------------------------------------------------------------

    def crash_server(self, i: int | str) -> None:
        """Kill a server: its host stops its transfer; its lease must come back by expiry."""
        addr = i if isinstance(i, str) else self.servers[i]
        if self.sim.crash(addr):
            self.crashed.add(addr)
            for store in self.stores:
                store.abort(addr)
            self._close_power(addr, self.sim.now)

    def restart_server(self, i: int | str) -> None:
        """Boot a server again (a new incarnation: new boot nonce, starts invalid)."""
        addr = i if isinstance(i, str) else self.servers[i]
        for store in self.stores:
            store.abort(addr)
        self.sim.restart(addr, self._make_server(self.index[addr]))
        self.crashed.discard(addr)
        self._set_power(addr, "full")

    def cut_servers_from(self, target: str, *, both: bool = True, servers: Iterable[int] | None = None) -> None:
        """Cut server nodes -> ``target``'s node (and back, with ``both``)."""
        tnode = target.partition("/")[0]
        for i in (range(len(self.servers)) if servers is None else servers):
            snode = self.servers[i].partition("/")[0]
            self.sim.cut(snode, tnode)
            if both:
                self.sim.cut(tnode, snode)

    def heal(self) -> None:
        self.sim.heal()

    def restart_controller(self, k: int = 0, *, keep_disk: bool = True) -> ResourceController:
        """Restart resource controller ``k`` as a new incarnation, from its durable record (or a blank disk)."""
        addr = self.controllers[k]
        if not keep_disk:
            self.disk[addr] = {}
        new = self._make_controller(k, durable=copy.deepcopy(self.disk.get(addr) or {}))
        self.sim.restart(addr, new)
        return new

    def _controller_host(self, effect, address: str, sim: Simulator) -> None:
        if type(effect) is Persist:
            self.disk.setdefault(address, {})[effect.key] = copy.deepcopy(effect.data)
        else:
            raise TypeError(f"{address}: the storm host cannot carry out {effect!r}")

    # -- running -------------------------------------------------------------------------

    def finished(self) -> bool:
        return all(a in self.crashed or self.sim.machine(a).finished for a in self.servers)

    def run(self, until: float | None = None, chunk: float = 10.0) -> Storm:
        """Run until every server (not crashed) is done or failed, or until ``until``."""
        if until is None:
            until = self.params["time_limit"]
        while self.sim.now < until:
            self.sim.run(until=min(self.sim.now + chunk, until))
            if self.finished():
                break
        return self

    def drain(self, extra: float | None = None) -> Storm:
        """Run on for ``extra`` seconds (default: the lease ttl + 2 s) so that leases whose release was lost expire."""
        self.sim.run(until=self.sim.now + (self.params["ttl"] + 2.0 if extra is None else extra))
        return self

    # -- figures ---------------------------------------------------------------------------

    def ideal(self) -> float:
        """The makespan lower bound: max over resources of (total work on it / capacity)."""
        per: dict[str, float] = defaultdict(float)
        for (_, stage), w in self.work.items():
            per[stage] += w
        cap = self.params["capacity"]
        return max(per.values()) / cap if per else 0.0

    def makespan(self) -> float | None:
        """When the last live server finished (None if some have not)."""
        ends = []
        for a in self.servers:
            if a in self.crashed:
                continue
            m = self.sim.machine(a)
            if not m.finished:
                return None
            ends.append(m.done_at)
        return max(ends) if ends else None

    def controller_inbound(self) -> int:
        """Messages controllers handled from servers and proxies."""
        return sum(self.controller(k).inbound_by[t] for k in range(len(self.controllers)) for t in SERVER_INBOUND_TAGS)

    def state_seconds(self) -> dict[str, float]:
        now = self.sim.now
        out: dict[str, float] = defaultdict(float)
        for a in self.servers:
            if a in self.crashed:
                continue
            for s, t in self.sim.machine(a).state_seconds(now).items():
                out[s] += t
        return dict(out)

    def figures(self) -> dict[str, Any]:
        now = self.sim.now
        states = {"done": 0, "failed": 0, "unfinished": 0, "crashed": len(self.crashed)}
        power = dict(self.power_seconds)
        for a in self.servers:
            if a in self.crashed:
                continue
            m = self.sim.machine(a)
            if m.state is ServerState.DONE:
                states["done"] += 1
            elif m.state is ServerState.FAILED:
                states["failed"] += 1
            else:
                states["unfinished"] += 1
            cur = self._power.get(a)
            if cur is not None:
                end = m.done_at if m.done_at is not None else now
                power[cur[0]] += max(0.0, end - cur[1])
        makespan = self.makespan()
        ideal = self.ideal()
        secs = self.state_seconds()
        waiting = {k: secs.get(k, 0.0) for k in ("pending", "parking", "dormant")}
        pp = self.params["parking_power"]
        waited = sum(waiting.values())
        ctrls = [self.controller(k) for k in range(len(self.controllers))]
        inbound = self.controller_inbound()
        return {
            "seed": self.seed,
            "servers": len(self.servers),
            "capacity": self.params["capacity"],
            "resources": len(self.controllers),
            "proxies": len(self.proxies),
            **states,
            "makespan": makespan,
            "ideal": ideal,
            "makespan_ratio": makespan / ideal if makespan is not None and ideal > 0 else None,
            "limits": [c.limit for c in ctrls],
            "granted": sum(c.granted for c in ctrls),
            "store_peak": max(s.peak for s in self.stores),
            "store_failed": sum(s.failed for s in self.stores),
            "state_seconds": secs,
            "waiting_seconds": waiting,
            # energy of waiting relative to waiting the same time all pending (full power); off counts as 0
            "waiting_energy_ratio": ((waiting["pending"] + pp * waiting["parking"]) / waited) if waited else None,
            "power_seconds": power,
            "ctrl_inbound": inbound,
            "ctrl_inbound_per_server": inbound / max(1, len(self.servers)),
            "ctrl_inbound_by": {t: sum(c.inbound_by[t] for c in ctrls) for t in SERVER_INBOUND_TAGS},
            "proxy_inbound": sum(self.proxy(j).inbound for j in range(len(self.proxies))),
            "messages_sent": self.sim.network.sent,
            "sim_time": now,
        }


def draw_workload(seed: int, servers: int, stage_names: list[str], stage_time: float, stage_sigma: float,
                  start_spread: float) -> tuple[dict[tuple[int, str], float], list[float]]:
    """The storm's workload from its seed: each server's work per stage, and its power-on time.

    Shared by every fleet built for one seed (the controlled storm, the naive fleet), so
    they all face exactly the same work.
    """
    rng = random.Random(f"{seed}/storm")
    work = {(i, st): stage_time * rng.lognormvariate(-stage_sigma ** 2 / 2, stage_sigma)
            for i in range(servers) for st in stage_names}
    starts = [rng.uniform(0.0, start_spread) if start_spread > 0 else 0.0 for _ in range(servers)]
    return work, starts


def build_storm(
    seed: int,
    servers: int = 1000,
    capacity: int = 50,
    *,
    resources: int = 1,
    proxies: int = 0,
    proxy_first: bool = False,
    stage_time: float = 30.0,
    stage_sigma: float = 0.25,
    local_stage: float = 0.0,
    limit: int | None = None,
    adaptive: bool = True,
    ttl: float = 30.0,
    boot_time: float = 5.0,
    start_spread: float = 2.0,
    link: LinkSpec | None = None,
    fail_above: float | None = None,
    timeout_factor: float | None = None,
    report_every: float = 2.0,
    flush_every: float = 2.0,
    parking_power: float = 0.4,
    server_kw: dict | None = None,
    controller_kw: dict | None = None,
    proxy_kw: dict | None = None,
    workflow_kw: dict | None = None,
    event_log: EventLog | None = None,
    trace_messages: bool = False,
    time_limit: float | None = None,
    power_cycle: bool = False,
) -> Storm:
    """Build a boot storm (see the module docstring); nothing runs until :meth:`Storm.run`.

    ``limit`` is each controller's starting limit (default ``capacity``);
    ``link`` the spec of every link (default: 1-5 ms uniform latency, no loss);
    ``server_kw`` / ``controller_kw`` / ``proxy_kw`` / ``workflow_kw`` pass extra constructor
    arguments through.
    """
    if servers < 1 or capacity < 1 or resources < 1 or proxies < 0:
        raise ValueError("need servers, capacity and resources >= 1 and proxies >= 0")
    network = SimNetwork(default=link if link is not None else LinkSpec(latency=Uniform(0.001, 0.005)))
    sim = Simulator(seed, network, event_log=event_log, trace_messages=trace_messages)
    res_names = [f"r{k}" for k in range(resources)]
    stage_names = [f"s{k}" for k in range(resources)]
    work, starts = draw_workload(seed, servers, stage_names, stage_time, stage_sigma, start_spread)
    params = {"capacity": capacity, "local_stage": local_stage, "parking_power": parking_power,
              "stage_time": stage_time, "stage_sigma": stage_sigma, "ttl": ttl, "power_cycle": power_cycle,
              "boot_time": boot_time}
    storm = Storm(sim, params)
    storm.controllers = [controller_address(k) for k in range(resources)]
    storm.proxies = [proxy_address(j) for j in range(proxies)]
    storm.servers = [server_address(i) for i in range(servers)]
    storm.index = {a: i for i, a in enumerate(storm.servers)}
    storm.work.update(work)
    params["time_limit"] = time_limit if time_limit is not None else 20 * storm.ideal() + 600.0

    # the workflow controller and its catalogue
    stages = [{"name": st, "resources": [r], "needs": [stage_names[k - 1]] if k else [], "expected": stage_time}
              for k, (st, r) in enumerate(zip(stage_names, res_names))]
    if local_stage > 0:
        stages.append({"name": "config", "needs": [stage_names[-1]], "expected": local_stage})
    catalogue = [{"workflow": "boot", "match": {}, "stages": stages}]
    refs = {r: {"controller": storm.controllers[k], "proxies": storm.proxies} for k, r in enumerate(res_names)}
    sim.add(WORKFLOW, WorkflowController(catalogue, refs, **(workflow_kw or {})))

    # resource controllers and their stores
    ckw = {"limit": capacity if limit is None else limit, "ttl": ttl, "grace": 0.0, "adaptive": adaptive,
               "expected": stage_time, "wake_ahead": max(10.0, 2 * boot_time)}
    ckw.update(controller_kw or {})
    def make_controller(k: int, durable: dict | None = None, first: bool = False) -> ResourceController:
        addr = storm.controllers[k]
        kw = dict(ckw)
        if not first:
            kw["grace"] = ckw.get("grace") or ttl  # a restart is recovered safely (first start: grace as given)
        return ResourceController(res_names[k], rng=sim.rng(addr), durable={} if durable is None else durable, **kw)

    storm._make_controller = make_controller
    for k, r in enumerate(res_names):
        addr = storm.controllers[k]
        sim.add(addr, make_controller(k, first=True), host=storm._controller_host)
        store = (SimStore(sim, r, addr, capacity, fail_above=fail_above) if timeout_factor is None
                 else CongestedStore(sim, r, addr, capacity, timeout_factor=timeout_factor))
        storm.stores.append(store)
        storm._store_of[r] = store

    def report(store: SimStore) -> None:
        store._settle()
        sim.send(store.controller, store.report(), sender=f"store-{store.resource}/store")
        if not storm.finished():
            sim.schedule(sim.now + report_every, lambda: report(store))

    for store in storm.stores:
        sim.schedule(report_every, lambda s=store: report(s))

    # proxies
    pkw = {"flush_every": flush_every}
    pkw.update(proxy_kw or {})
    for j in range(proxies):
        addr = storm.proxies[j]
        sim.add(addr, Proxy(addr, dict(zip(res_names, storm.controllers)), **pkw))

    # servers, each on its own node, powered on over [0, start_spread]
    skw = {"proxy_first": proxy_first, "resume_delay": boot_time, "parking_power": parking_power}
    if power_cycle:  # the boot is the power-on (the harness restarts the agent boot_time later)
        skw.update(resume_delay=0.0, boot_time=boot_time)
    skw.update(server_kw or {})

    def make_server(i: int) -> Server:
        addr = storm.servers[i]
        kw = dict(skw)
        if power_cycle:
            kw["wake"] = f"bmc{i}/bmc"
        return Server(addr, WORKFLOW, rng=sim.rng(addr), mac=f"02:00:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:"
                      f"{i & 255:02x}", hardware="x86", location=f"row{i // 40}", **kw)

    storm._make_server = make_server

    def start(i: int) -> None:
        addr = storm.servers[i]
        sim.add(addr, make_server(i), host=storm._host)
        storm._set_power(addr, "full")

    for i, addr in enumerate(storm.servers):
        sim.network.add_node(addr.partition("/")[0])
        if power_cycle:
            sim.add(f"bmc{i}/bmc", WakeAgent(addr), host=storm._bmc_host)
        at = starts[i]
        if at == 0.0:
            start(i)
        else:
            sim.schedule(at, lambda i=i: start(i))
    return storm


# The checkers over the event log live in topologies.workflow.checks (the chaos
# harness registers them); re-exported here for the tests.
from topologies.workflow.checks import check_admission, check_no_grant_while_dormant  # noqa: E402,F401
