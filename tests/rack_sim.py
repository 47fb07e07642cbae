"""A simulated fleet of racks and monitors for the rack-monitor tests and the consensus benchmark.

``RackFleet(seed, dcs, sectors, racks)`` puts every rack control at
``rack-<rack>/control`` and every monitor at ``mon-<rack>/monitor`` in one
deterministic simulator. Monitors' ``Persist`` effects go to a per-monitor
dict (the disk) in effect order; ``crash_monitor``/``restart_monitor`` lose
everything but the disk; ``restart_monitor(rack, wipe=True)`` also empties
its disk first (a replaced drive or a new machine); ``add_sector()`` grows the fleet at
run time through an agreed reconfiguration; ``Persist(key, None)`` deletes
a key (``history=True`` also keeps every key ever written, for the benchmark). ``control_params`` go to every
rack control (e.g. ``reboot_time``). ``main_net``/``monitor_net`` are the node names of
the two channels, so a test can cut one and leave the other up.
"""

from __future__ import annotations

import copy
from collections import defaultdict

from actors.simulator import Simulator
from protocols.consensus import Persist
from protocols.rack import Layout, RackControl, RackMonitor
from protocols.rack.messages import Reconfigure, SetMetrics
from transport.sim import LinkSpec, SimNetwork, Uniform

CLEAN = LinkSpec(latency=Uniform(0.0005, 0.002))


class RackFleet:
    def __init__(self, seed: int, dcs: int = 3, sectors: int = 4, racks: int = 6, *, link: LinkSpec = CLEAN,
                 trace: bool = False, control_params: dict | None = None, history: bool = False,
                 **monitor_params) -> None:
        self.seed = seed
        self.layout = Layout(dcs, sectors, racks)
        self.layout_dict = {"dcs": dcs, "sectors": sectors, "racks": racks}
        self.monitor_params = monitor_params
        self.control_params = dict(control_params or {})
        self.sim = Simulator(seed, SimNetwork(default=link), trace_messages=trace)
        self.disk: dict[str, dict] = defaultdict(dict)
        # history=True: every key each monitor ever wrote, deletions ignored (what it would hold without retiring)
        self.history: dict[str, dict] | None = defaultdict(dict) if history else None
        self.wipes: dict[str, int] = {}  # monitor -> disks lost (keeps each incarnation's rng distinct)
        self.racks = self.layout.all_racks()
        for r in self.racks:
            self.sim.add(self.layout.control(r), self._control(r))
            m = self.layout.monitor(r)
            self.sim.add(m, self._monitor(r), host=self._persist)
            # the rack-local link (control -> its monitor) is neither the main network nor the mesh
            self.sim.set_link(f"rack-{r}", f"mon-{r}", CLEAN, both=True)

    def pair(self, monitors: list[str]) -> list[str]:
        """Monitor nodes plus their racks' control nodes (a mesh island keeps its rack-local links)."""
        return [n for m in monitors for n in (m, "rack-" + m.removeprefix("mon-"))]

    def cut_main_network(self) -> None:
        """Every rack control loses the main network (to every other control); the mesh and local links stay."""
        for a in self.main_net:
            for b in self.main_net:
                if a != b:
                    self.sim.cut(a, b)

    @property
    def main_net(self) -> list[str]:
        return [self.layout.control(r).split("/")[0] for r in self.racks]

    @property
    def monitor_net(self) -> list[str]:
        return [self.layout.monitor(r).split("/")[0] for r in self.racks]

    def _control(self, rack: str) -> RackControl:
        return RackControl(rack, self.layout.monitor(rack), address=self.layout.control(rack), **self.control_params)

    def _monitor(self, rack: str, layout: dict | None = None, join: bool = False) -> RackMonitor:
        m = self.layout.monitor(rack)
        name = m + f"#{len(self.disk[m])}" + (f"w{self.wipes[m]}" if m in self.wipes else "")
        return RackMonitor(rack, layout or self.layout_dict, m, self.sim.rng(name), join=join,
                           durable=copy.deepcopy(self.disk[m]), **self.monitor_params)

    def add_sector(self) -> list[str]:
        """One more sector per data center, at run time: its rack controls and monitors start (the
        monitors *joining*: their layout is not agreed yet), and the fleet's acting authority is asked
        (``Reconfigure``) to agree on the new layout. Returns the new racks."""
        old = set(self.racks)
        self.layout_dict = dict(self.layout_dict, sectors=self.layout_dict["sectors"] + 1)
        self.layout = Layout(**self.layout_dict)
        self.racks = self.layout.all_racks()
        new = [r for r in self.racks if r not in old]
        for r in new:
            self.sim.add(self.layout.control(r), self._control(r))
            self.sim.add(self.layout.monitor(r), self._monitor(r, join=True), host=self._persist)
            self.sim.set_link(f"rack-{r}", f"mon-{r}", CLEAN, both=True)
        top = [r for r in old if self.sim.alive(self.layout.monitor(r)) and self.monitor(r).acting("fleet", self.sim.now)]
        to = self.layout.monitor(top[0] if top else sorted(old)[0])  # (any monitor forwards it to the authority)
        self.sim.send(to, Reconfigure(dict(self.layout_dict)))
        return new

    def _persist(self, effect, address, sim):
        assert isinstance(effect, Persist), effect
        if effect.data is None:
            self.disk[address].pop(effect.key, None)  # a deletion (a retired instance)
        else:
            self.disk[address][effect.key] = copy.deepcopy(effect.data)
            if self.history is not None:
                self.history[address][effect.key] = self.disk[address][effect.key]

    # faults and commands (call now or from sim.schedule callbacks)
    def at(self, t: float, fn, *args, **kwargs) -> None:
        self.sim.schedule(t, lambda: fn(*args, **kwargs))

    def power_off(self, rack: str) -> None:
        """The rack control and its hosts lose power; the monitor keeps running."""
        self.sim.crash(self.layout.control(rack))

    def power_on(self, rack: str) -> None:
        c = self.layout.control(rack)
        if not self.sim.alive(c):
            self.sim.restart(c, self._control(rack))

    def set_metrics(self, rack: str, **metrics) -> None:
        self.sim.send(self.layout.control(rack), SetMetrics(metrics))

    def crash_monitor(self, rack: str) -> None:
        self.sim.crash(self.layout.monitor(rack))

    def restart_monitor(self, rack: str, *, wipe: bool = False, layout: dict | None = None) -> None:
        """Restart a crashed monitor from its disk; ``wipe=True``: from an empty disk (its old one is lost);
        ``layout``: the layout it is started with (e.g. an old file; default the fleet's current one)."""
        m = self.layout.monitor(rack)
        if not self.sim.alive(m):
            if wipe:
                self.wipe_disk(rack)
            self.sim.restart(m, self._monitor(rack, layout))

    def wipe_disk(self, rack: str) -> None:
        """Lose everything the monitor of ``rack`` persisted (call while it is down)."""
        m = self.layout.monitor(rack)
        self.wipes[m] = self.wipes.get(m, 0) + 1
        self.disk[m] = {}

    def monitor(self, rack: str) -> RackMonitor:
        return self.sim.machine(self.layout.monitor(rack))

    def run(self, until: float) -> None:
        self.sim.run(until=until)

    def events(self, kind: str | None = None) -> list[dict]:
        evs = self.sim.event_log.events()
        return evs if kind is None else [e for e in evs if e["kind"] == kind]

    def authority(self, group: str) -> list[str]:
        """Racks whose monitors are acting authority of ``group`` now."""
        now = self.sim.now
        return [r for r in self.racks if self.sim.alive(self.layout.monitor(r)) and self.monitor(r).acting(group, now)]
