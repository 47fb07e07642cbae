"""The racks' two networks, for real (issue 17, deliverable 3).

racks.toml puts the monitors' traffic on networks of their own - the monitor mesh (mon-* to mon-*) and the
rack-local bus (racks-* to mon-*) - and host-side traffic on the main network: every rack control reports
its hosts to the fleet inventory service (process ``inventory``). Cutting the main network must stop that
traffic (the counters say so, the inventory hears no report and calls the racks stale) while the monitors
keep agreeing over the mesh: every rack checker valid, none the file declares unknown.

Covers: the inventory state machine and the control's reports (units), the generated file's channels,
the main-network cut in the simulator (replayed identically), and the README's real-process command
``fleetplane chaos topologies/racks.toml --nemesis one --target inventory --channel main``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from actors.eventlog import read_events
from protocols.core import Emit, Send, SetTimer, TimerFired
from protocols.rack.control import RackControl
from protocols.rack.inventory import Inventory, InventoryReport
from topologies.chaos import build_schedule, run_chaos
from topologies.loader import load_topology, parse_topology
from topologies.rack.gen import render

ROOT = Path(__file__).resolve().parent.parent
RACKS = ROOT / "topologies" / "racks.toml"
RACK_CHECKERS = ("paxos-one-value", "one-authority-per-ballot", "fleet-agreement", "control-once")
MAIN_CUT = ["--nemesis", "one", "--target", "inventory", "--channel", "main"]  # the README's main-network cut


def statuses(verdicts: list[dict]) -> dict[str, str]:
    return {v["checker"]: v["status"] for v in verdicts}


# -- units --------------------------------------------------------------------------------------

def test_a_control_with_an_inventory_reports_to_it_on_its_own_timer_and_not_while_rebooting():
    c = RackControl("r1", "mon/r1", inventory="inv/inventory", inventory_every=1.0)
    start = c.tick(0.0)
    assert SetTimer("inventory", 1.0) in start
    out = c.handle(TimerFired("inventory"), "", 1.0)
    assert out == [Send("inv/inventory", InventoryReport("r1", 1, dict(c.metrics))), SetTimer("inventory", 2.0)]
    c.rebooting_until = 5.0
    assert c.handle(TimerFired("inventory"), "", 2.0) == [SetTimer("inventory", 3.0)]  # hosts restarting: quiet
    plain = RackControl("r2", "mon/r2")  # no inventory: nothing new on the wire
    assert not [e for e in plain.tick(0.0) if isinstance(e, SetTimer) and e.key == "inventory"]
    with pytest.raises(ValueError, match="inventory_every"):
        RackControl("r3", "mon/r3", inventory="inv/inventory", inventory_every=0)


def test_the_inventory_keeps_the_latest_report_and_says_which_racks_went_quiet_and_came_back():
    inv = Inventory(stale_after=2.0, check_every=1.0, address="inv/inventory")
    assert inv.tick(0.0) == [Emit("inventory.start", {"address": "inv/inventory"})]
    assert inv.handle(InventoryReport("a", 1, {"cpu": 0.3}), "h/a", 0.5) == [
        Emit("inventory.report", {"rack": "a", "seq": 1, "from": "h/a"})]
    inv.handle(InventoryReport("b", 1, {}), "h/b", 0.5)
    assert inv.handle(InventoryReport("a", 1, {}), "h/a", 0.6) == []  # a repeat: nothing new
    inv.handle(InventoryReport("a", 2, {}), "h/a", 2.0)
    assert inv.tick(2.5) == [Emit("inventory.stale", {"racks": ["b"], "count": 1, "known": 2})]
    assert inv.tick(3.0) == []  # still quiet: said once
    inv.handle(InventoryReport("b", 1, {}), "h/b", 3.2)  # a restarted control counts from 1 again after a quiet spell
    assert inv.tick(3.5) == [Emit("inventory.fresh", {"racks": ["b"], "count": 0, "known": 2})]
    assert inv.handle("junk", "x/y", 4.0)[0].kind == "inventory.bad_input"
    assert inv.handle(InventoryReport("", 1, {}), "x/y", 4.0)[0].kind == "inventory.bad_input"


# -- the file -----------------------------------------------------------------------------------

def test_racks_toml_puts_the_monitors_on_their_own_networks_and_the_inventory_on_the_main_one():
    topo = load_topology(RACKS)
    mons = [n for n in topo.node_names if n.startswith("mon-")]
    racks = [n for n in topo.node_names if n.startswith("racks-")]
    assert topo.channel_names == ["main", "mesh", "rack"] and "inventory" in topo.node_names
    assert all(topo.channel_of(a, b) == "mesh" for a in mons for b in mons if a != b)
    assert all(topo.channel_of(r, m) == "rack" for r in racks for m in mons)
    assert all(topo.channel_of(r, "inventory") == "main" for r in racks)
    assert topo.channels_of("inventory") == [] and topo.channels_of(mons[0]) == ["mesh", "rack"]
    controls = [a for n in topo.nodes for a in n.actors if a.kind == "rack.control"]
    assert len(controls) == 72 and all(a.params["inventory"] == "inventory/inventory" for a in controls)
    # the default chaos: the mesh, then the main network; the main cut blocks exactly the inventory's main links
    grudges = [op for _t, op in build_schedule(topo, 1) if op.kind == "grudge"]
    assert len(grudges) == 2
    mesh, main = grudges
    assert mesh.blocked and all(topo.channel_of(a, b) == "mesh" for a, b in mesh.blocked)
    assert main.blocked == {(r, "inventory") for r in racks} | {("inventory", r) for r in racks}
    # the README's command: every link of the inventory on the main channel, nothing on the mesh or the bus
    cut = [op for _t, op in build_schedule(topo, 1, "one", {"target": "inventory", "channel": "main"})
           if op.kind == "grudge"][0]
    assert {p for p in cut.blocked if "inventory" in p} == cut.blocked
    assert {x for p in cut.blocked for x in p} == set(topo.node_names)
    assert all(topo.channel_of(a, b) == "main" for a, b in cut.blocked)


# -- the main network cut: the simulator, then real processes ----------------------------------------

def _during(evs: list[dict], kind: str, lo: float, hi: float) -> list[dict]:
    return [e for e in evs if e["kind"] == kind and lo <= e["time"] <= hi]


def test_cutting_the_main_network_in_the_simulator_stops_the_reports_and_the_monitors_agree(tmp_path):
    small = parse_topology(render(1, 2, 3, "d0s1r2", 30.0, troubleshoot="d0s0r1"), source="racks-1x2x3")
    out = run_chaos(small, tmp_path, seed=2, nemesis="one", sim=True, quiet=True,
                    overrides={"target": "inventory", "channel": "main", "start": 3.0, "duration": 4.0})
    assert out.replay_identical, out.first_difference
    evs = read_events(tmp_path / "events.jsonl")
    reports = [e for e in evs if e["kind"] == "inventory.report"]
    assert _during(evs, "inventory.report", 2.0, 3.0) and _during(evs, "inventory.report", 7.1, 9.0)
    assert not _during(evs, "inventory.report", 3.01, 7.0), "a report crossed the cut main network"
    assert len({e["fields"]["rack"] for e in reports}) == 6
    stale = _during(evs, "inventory.stale", 3.0, 7.0)
    assert stale and sum(len(e["fields"]["racks"]) for e in stale) == 6  # every rack went quiet to the inventory
    assert _during(evs, "inventory.fresh", 7.0, 9.0)
    # the monitors never noticed: their status and mesh traffic went on, every rack checker judged and valid
    assert _during(evs, "rack.report", 3.5, 6.5)
    delivered = _during(evs, "net.deliver", 3.5, 6.5)
    assert [e for e in delivered if e["node"].startswith("mon-") and e["fields"]["src"].startswith("mon-")]
    assert not [e for e in delivered if e["node"] == "inventory"]
    v = statuses(out.verdicts)
    assert all(v[c] == "valid" for c in RACK_CHECKERS), {c: v[c] for c in RACK_CHECKERS}
    assert out.ok and not out.unjudged


@pytest.mark.slow
def test_the_readme_s_main_network_cut_of_real_processes_stops_main_traffic_and_the_monitors_agree(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "topologies.cli", "chaos", str(RACKS), *MAIN_CUT, "--start", "5",
                           "--duration", "4", "-q", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = [d for d in tmp_path.iterdir() if d.is_dir()]
    evs = read_events(run_dir / "events.jsonl")
    cut = [e["time"] for e in evs if e["kind"] == "nemesis.grudge"]
    heal = [e["time"] for e in evs if e["kind"] == "nemesis.heal"]
    assert len(cut) == len(heal) == 1
    t0, t1 = cut[0], heal[0]
    # a fault plan takes a moment to reach every node: judge the cut from 0.5 s in to its end
    lo, hi = t0 + 0.5, t1
    racks = sorted({e["node"] for e in evs if e["node"].startswith("racks-")})
    assert len(racks) == 3
    counts = [e for e in evs if e["kind"] == "transport.channel_counts"]

    def main_to_inventory(node: str, when: list[float]) -> list[int]:
        return [e["fields"]["main"]["peers"].get("inventory", [0, 0])[0] for e in counts
                if e["node"] == node and e["time"] in when]

    for node in racks:
        mine = [e for e in counts if e["node"] == node]
        inside = [e["time"] for e in mine if lo <= e["time"] <= hi]
        before = [e["time"] for e in mine if e["time"] < t0]
        assert len(inside) >= 2, (node, inside)
        sent = main_to_inventory(node, inside)
        assert len(set(sent)) == 1, f"{node}: main-channel messages to the inventory grew during the cut: {sent}"
        grown = main_to_inventory(node, before)
        assert grown[-1] > grown[0], f"{node}: no main traffic before the cut: {grown}"  # the cut cut something
        after = main_to_inventory(node, [e["time"] for e in mine if e["time"] > t1 + 1.5])
        assert after and after[-1] > sent[0], f"{node}: main traffic did not resume after the heal"
        # the rack-local bus kept carrying status to the monitors
        bus = [e["fields"]["rack"]["msgs_out"] for e in mine if lo <= e["time"] <= hi]
        assert bus[-1] > bus[0], f"{node}: rack-local traffic stopped during the main cut"
    mesh = [e["fields"]["mesh"]["msgs_out"] for e in counts if e["node"] == "mon-d0c0" and lo <= e["time"] <= hi]
    assert len(mesh) >= 2 and mesh[-1] > mesh[0], "the monitor mesh went quiet during the main cut"
    # what the inventory read from the rack controls (not the chaos control node's plans, also on the main channel)
    inv = [sum(v[1] for p, v in e["fields"]["main"]["peers"].items() if p.startswith("racks-")) for e in counts
           if e["node"] == "inventory" and lo <= e["time"] <= hi]
    assert len(inv) >= 2 and len(set(inv)) == 1, f"the inventory received rack controls' messages during the cut: {inv}"
    # liveness is per channel-link: the rack controls lose the inventory (main), never a monitor (rack-local bus)
    downs = [(e["node"], e["fields"]["peer"], e["fields"].get("channel", "main")) for e in evs
             if e["kind"] == "transport.peer_down" and t0 <= e["time"] <= t1]
    assert {(r, "inventory", "main") for r in racks} <= set(downs), downs
    assert all("inventory" in (node, peer) for node, peer, _ch in downs), f"a link off the main network went down: {downs}"
    assert not _during(evs, "inventory.report", lo, hi), "the inventory got a report during the cut"
    assert _during(evs, "inventory.report", t1, t1 + 3.0), "no report after the heal"
    stale = _during(evs, "inventory.stale", t0, hi + 0.5)
    assert sum(len(e["fields"]["racks"]) for e in stale) == 72, "the inventory did not call every rack stale"
    # the monitors agreed throughout: every rack checker valid, none the file declares unknown
    assert "chaos OK" in proc.stdout, proc.stdout[-2000:]
    for c in RACK_CHECKERS:
        assert f"VALID    {c} (must judge)" in proc.stdout, (c, proc.stdout[-3000:])
    assert "NOT JUDGED" not in proc.stdout and "INVALID" not in proc.stdout
