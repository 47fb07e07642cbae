"""A naive boot fleet: no controller, retry with exponential backoff and full jitter (a baseline for boot storms).

How this works
--------------
:class:`NaiveServer` is a sans-I/O state machine (``handle``/``tick``
returning effects, like :class:`protocols.workflow.Server`) that boots the
way an unmanaged server does: for each resource stage it simply starts the
transfer (the host effect :class:`RunStage`), with nobody to ask first. When
the store refuses it (:class:`StageFailed`, e.g. a :class:`SimStore` with
``fail_above``), it waits and tries again, with **exponential backoff and
full jitter** (AWS Architecture Blog, "Exponential Backoff And Jitter"):

    delay = uniform(0, min(cap, base * 2 ** attempt))

where ``attempt`` counts the failures of this stage so far, from 0 (the first
retry waits up to ``base``, the next up to ``2 * base``, ...; never more than
``cap``). Defaults: ``base = 1 s``, ``cap = 64 s`` (PXE ROMs time DHCP out
after 4, 8, 16 and 32 s, so a minute is the order of what boot firmware
waits). It retries for ever (``max_attempts=None``) unless told otherwise,
then ends ``failed``. While backing off it is ``pending`` (fully on: nobody
tells it to park or power off), while transferring ``running``; it uses the
:class:`ServerState` values of the real server, so state-seconds compare.

:func:`build_naive_fleet` puts N of them into the deterministic
:class:`Simulator` with the **same workload as** :func:`tests.workflow_sim.build_storm`
for the same seed and parameters: stage ``s{k}`` on resource ``r{k}`` for
k = 0..K-1, then an optional local ``config`` stage; the work of each
resource stage (``stage_time * lognormvariate(-s^2/2, s)``) and each server's
power-on time (uniform in ``[0, start_spread]``) drawn in the same order from
``random.Random(f"{seed}/storm")``; one :class:`SimStore` per resource
(reused from the harness; ``fail_above=1.0`` by default: a transfer started
while the store already serves ``capacity`` clients fails after
``fail_delay``; with ``timeout_factor`` a :class:`CongestedStore` instead, where
nothing is refused but a transfer not done ``timeout_factor`` times its work
after it started fails: congestion collapse). The servers send no network
messages (their "messages" are transfer attempts on the store), so the fleet's
message count is its attempt count.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

from actors.simulator import Simulator
from protocols.core import Effect, Emit, SetTimer, TimerFired
from protocols.workflow import RunStage, ServerState, StageDone, StageFailed
from tests.workflow_sim import CongestedStore, SimStore, draw_workload, server_address
from transport.sim import LinkSpec, SimNetwork, Uniform

__all__ = ["NaiveFleet", "NaiveServer", "backoff_delay", "build_naive_fleet"]

S = ServerState
_MAX_EXP = 62  # 2 ** attempt stays an exact int that converts to float without overflow


def backoff_delay(rng: random.Random, attempt: int, base: float, cap: float) -> float:
    """Full jitter: ``uniform(0, min(cap, base * 2 ** attempt))`` (``attempt`` from 0)."""
    return rng.uniform(0.0, min(cap, base * 2 ** min(attempt, _MAX_EXP)))


class NaiveServer:
    """A server that boots without asking anyone (sans-I/O); see the module docstring.

    ``stages`` is the ordered list of ``(stage, resource)``; ``resource`` None
    is a local stage (``RunStage`` with no resources).
    """

    tick_interval = None

    def __init__(self, address: str, stages: list[tuple[str, str | None]], *, rng: random.Random,
                 base: float = 1.0, cap: float = 64.0, max_attempts: int | None = None,
                 expected: float = 0.0) -> None:
        if not base > 0 or not cap > 0:
            raise ValueError(f"base and cap must be > 0, got {base!r} and {cap!r}")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1 or None, got {max_attempts!r}")
        if not stages:
            raise ValueError("a naive server needs at least one stage")
        self.address = address
        self.stages = list(stages)
        self.rng = rng
        self.base = base
        self.cap = cap
        self.max_attempts = max_attempts
        self.expected = expected
        self.state = S.INVALID
        self.since = 0.0
        self.time_in: dict[ServerState, float] = {s: 0.0 for s in S}
        self.started_at: float | None = None
        self.done_at: float | None = None
        self.index = 0  # the stage in hand
        self.run = 0
        self.failures = 0  # of the stage in hand
        self.attempts = 0  # transfer starts, all stages
        self.failed_attempts = 0
        self.backoff_seconds = 0.0  # sum of the delays drawn

    # -- the contract ----------------------------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        if self.started_at is not None:
            return []
        self.started_at = now
        self.since = now
        return self._become(S.RUNNING, now, "power on") + self._start(now)

    def handle(self, msg, sender: str, now: float) -> list[Effect]:
        t = type(msg)
        if self.state in (S.DONE, S.FAILED):
            return []
        if t is StageDone:
            if msg.run != self.run or self.state is not S.RUNNING:
                return []
            self.index += 1
            self.failures = 0
            if self.index == len(self.stages):
                return self._become(S.DONE, now, "workflow complete")
            return self._start(now)
        if t is StageFailed:
            if msg.run != self.run or self.state is not S.RUNNING:
                return []
            self.failed_attempts += 1
            self.failures += 1
            if self.max_attempts is not None and self.failures >= self.max_attempts:
                return self._become(S.FAILED, now, f"stage {self.stages[self.index][0]} failed {self.failures} times")
            delay = backoff_delay(self.rng, self.failures - 1, self.base, self.cap)
            self.backoff_seconds += delay
            return self._become(S.PENDING, now, "backoff") + [SetTimer("retry", now + delay)]
        if t is TimerFired and msg.key == "retry" and self.state is S.PENDING:
            return self._become(S.RUNNING, now, "retry") + self._start(now)
        return []

    @property
    def finished(self) -> bool:
        return self.state in (S.DONE, S.FAILED)

    def state_seconds(self, now: float) -> dict[str, float]:
        out = {s.value: t for s, t in self.time_in.items()}
        if not self.finished and self.started_at is not None:
            out[self.state.value] += max(0.0, now - self.since)
        return out

    # -- internals -------------------------------------------------------------------------

    def _start(self, now: float) -> list[Effect]:
        stage, resource = self.stages[self.index]
        self.run += 1
        if resource is not None:
            self.attempts += 1
        return [RunStage(stage, self.run, (resource,) if resource is not None else (), self.expected)]

    def _become(self, new: ServerState, now: float, reason: str) -> list[Effect]:
        old = self.state
        if new is old:
            return []
        self.time_in[old] += now - self.since
        self.since = now
        self.state = new
        if new in (S.DONE, S.FAILED):
            self.done_at = now
            return [Emit("server.state", {"from": old.value, "to": new.value, "reason": reason})]
        return []  # running <-> pending flips are counted, not logged (hundreds of thousands of them)


class NaiveFleet:
    """A built naive fleet; see :func:`build_naive_fleet`. Mirrors the figures of :class:`Storm`."""

    def __init__(self, sim: Simulator, params: dict[str, Any]) -> None:
        self.sim = sim
        self.params = params
        self.servers: list[str] = []
        self.index: dict[str, int] = {}
        self.work: dict[tuple[int, str], float] = {}
        self.stores: list[SimStore] = []
        self._store_of: dict[str, SimStore] = {}

    def server(self, i: int | str) -> NaiveServer:
        return self.sim.machine(i if isinstance(i, str) else self.servers[i])

    def _host(self, effect, address: str, sim: Simulator) -> None:
        if type(effect) is not RunStage:
            raise TypeError(f"{address}: the naive host cannot carry out {effect!r}")
        if effect.resources:
            store = self._store_of[effect.resources[0]]
            store.start(address, effect.run, effect.stage, self.work[(self.index[address], effect.stage)])
        else:
            sim.send(address, StageDone(effect.stage, effect.run), sender=address,
                     at=sim.now + self.params["local_stage"])

    def finished(self) -> bool:
        return all(self.sim.machine(a).finished for a in self.servers)

    def run(self, until: float | None = None, chunk: float = 10.0) -> NaiveFleet:
        if until is None:
            until = self.params["time_limit"]
        while self.sim.now < until:
            self.sim.run(until=min(self.sim.now + chunk, until))
            if self.finished():
                break
        return self

    def ideal(self) -> float:
        per: dict[str, float] = defaultdict(float)
        for (_, stage), w in self.work.items():
            per[stage] += w
        return max(per.values()) / self.params["capacity"] if per else 0.0

    def makespan(self) -> float | None:
        ends = []
        for a in self.servers:
            m = self.sim.machine(a)
            if not m.finished:
                return None
            ends.append(m.done_at)
        return max(ends) if ends else None

    def figures(self) -> dict[str, Any]:
        now = self.sim.now
        ms = [self.sim.machine(a) for a in self.servers]
        secs: dict[str, float] = defaultdict(float)
        for m in ms:
            for s, t in m.state_seconds(now).items():
                secs[s] += t
        makespan = self.makespan()
        ideal = self.ideal()
        attempts = sum(m.attempts for m in ms)
        failed = sum(m.failed_attempts for m in ms)
        return {
            "seed": self.sim.seed,
            "servers": len(ms),
            "capacity": self.params["capacity"],
            "base": self.params["base"],
            "cap": self.params["cap"],
            "done": sum(m.state is S.DONE for m in ms),
            "failed": sum(m.state is S.FAILED for m in ms),
            "unfinished": sum(not m.finished for m in ms),
            "makespan": makespan,
            "ideal": ideal,
            "makespan_ratio": makespan / ideal if makespan is not None and ideal > 0 else None,
            "attempts": attempts,
            "failed_attempts": failed,
            "store_failed": sum(s.failed for s in self.stores),
            "store_peak": max(s.peak for s in self.stores),
            "attempts_per_server": attempts / max(1, len(ms)),
            "max_failures_one_server": max(m.failed_attempts for m in ms),
            "state_seconds": dict(secs),
            "sim_time": now,
        }


def build_naive_fleet(
    seed: int,
    servers: int = 1000,
    capacity: int = 50,
    *,
    resources: int = 1,
    stage_time: float = 30.0,
    stage_sigma: float = 0.25,
    local_stage: float = 0.0,
    start_spread: float = 2.0,
    fail_above: float | None = 1.0,
    fail_delay: float = 1.0,
    timeout_factor: float | None = None,
    base: float = 1.0,
    cap: float = 64.0,
    max_attempts: int | None = None,
    time_limit: float | None = None,
) -> NaiveFleet:
    """Build a naive fleet with ``build_storm``'s workload for the same arguments (see the module docstring)."""
    if servers < 1 or capacity < 1 or resources < 1:
        raise ValueError("need servers, capacity and resources >= 1")
    sim = Simulator(seed, SimNetwork(default=LinkSpec(latency=Uniform(0.001, 0.005))))
    res_names = [f"r{k}" for k in range(resources)]
    stage_names = [f"s{k}" for k in range(resources)]
    work, starts = draw_workload(seed, servers, stage_names, stage_time, stage_sigma, start_spread)  # build_storm's
    params = {"capacity": capacity, "local_stage": local_stage, "base": base, "cap": cap,
              "stage_time": stage_time, "stage_sigma": stage_sigma}
    fleet = NaiveFleet(sim, params)
    fleet.servers = [server_address(i) for i in range(servers)]
    fleet.index = {a: i for i, a in enumerate(fleet.servers)}
    fleet.work.update(work)
    params["time_limit"] = time_limit if time_limit is not None else 20 * fleet.ideal() + 600.0
    for r in res_names:
        store = (SimStore(sim, r, f"store-{r}/store", capacity, fail_above=fail_above, fail_delay=fail_delay)
                 if timeout_factor is None else
                 CongestedStore(sim, r, f"store-{r}/store", capacity, timeout_factor=timeout_factor))
        fleet.stores.append(store)
        fleet._store_of[r] = store
    stages: list[tuple[str, str | None]] = list(zip(stage_names, res_names))
    if local_stage > 0:
        stages.append(("config", None))

    def start(i: int) -> None:
        addr = fleet.servers[i]
        sim.add(addr, NaiveServer(addr, stages, rng=sim.rng(addr), base=base, cap=cap, max_attempts=max_attempts,
                                  expected=stage_time), host=fleet._host)

    for i, addr in enumerate(fleet.servers):
        sim.network.add_node(addr.partition("/")[0])
        at = starts[i]
        if at == 0.0:
            start(i)
        else:
            sim.schedule(at, lambda i=i: start(i))
    return fleet
