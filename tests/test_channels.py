"""Two channels for real (issue 17, deliverable 3): a node binds more than one endpoint and every link uses
the channel the topology names for it.

Covers: ChannelTransport (one ZmqTransport per channel: its own endpoint, liveness, counters; a message goes
out on its link's channel; a partition of one channel leaves the others' peers up; loop dispatch on any
channel), the topology syntax ([channels.NAME] links, [[chaos]] channel) and its loader errors, the resolved
form's round trip, the launcher's ports, and channel-scoped fault schedules (only the named channel's links).
The multi-process racks run is in tests/test_rack_channels.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actors import Actor, Node
from actors.messages import PeerDown, PeerUp
from tests.conftest import wait_for
from tests.zmq_actors import Echo, Ping, Pong
from topologies.chaos import build_schedule
from topologies.loader import TopologyError, parse_topology
from topologies.model import Topology
from transport.faults import ClearFaults, SetFaults
from transport.zmq import ChannelTransport, ZmqTransport

FAST = {"heartbeat_interval": 0.05, "liveness": 4, "linger": 0.2}


class Box(Actor):
    def __init__(self, box: list):
        self.box = box

    def receive(self, msg, sender):
        self.box.append(msg)


def _chan(routes: dict[str, str], *, loop: str | None = None, names=("main", "mesh")) -> ChannelTransport:
    return ChannelTransport({n: ZmqTransport(**FAST) for n in names}, lambda peer: routes.get(peer, "main"), loop=loop)


@pytest.fixture
def trio(nodes):
    """a and b on both channels (their link on the mesh), c on the main channel only (a - c, b - c on main)."""
    a = Node("a", transport=_chan({"b": "mesh"}))
    b = Node("b", transport=_chan({"a": "mesh"}))
    c = Node("c", transport=ZmqTransport(**FAST))
    nodes += [a, b, c]
    a.transport.add_peer("b", b.transport.endpoints["mesh"])
    b.transport.add_peer("a", a.transport.endpoints["mesh"])
    for x in (a, b):
        x.transport.add_peer("c", c.transport.endpoint)
        c.transport.add_peer(x.name, x.transport.endpoint)
    return a, b, c


def test_a_node_binds_one_endpoint_per_channel_and_a_link_uses_its_own(trio):
    a, b, c = trio
    assert a.transport.endpoint == a.transport.endpoints["main"] != a.transport.endpoints["mesh"]
    b.spawn(Echo, name="echo")
    c.spawn(Echo, name="echo")
    for i in range(5):
        assert a.ask("b/echo", Ping(i), timeout=5).result(10) == Pong(i, "b/echo")
    assert a.ask("c/echo", Ping(9), timeout=5).result(10) == Pong(9, "c/echo")
    k = a.counters()
    # a -> b on the mesh only, a -> c on the main channel only; the totals are their sums
    assert k["transport.channel.mesh.peer.b.msgs_out"] == 5 and "transport.channel.main.peer.b.msgs_out" not in k
    assert k["transport.channel.main.peer.c.msgs_out"] == 1 and "transport.channel.mesh.peer.c.msgs_out" not in k
    assert k["transport.msgs_out"] == 6 == k["transport.channel.mesh.msgs_out"] + k["transport.channel.main.msgs_out"]
    counts = a.transport.channel_counts()
    assert counts["mesh"]["peers"] == {"b": [5, 5]} and counts["main"]["peers"] == {"c": [1, 1]}
    # one node, one incarnation on every channel; peers() names each peer once, in its link's state
    assert {t.incarnation for t in a.transport.channels.values()} == {a.transport.incarnation}
    wait_for(lambda: a.transport.peers() == {"b": "up", "c": "up"}, what="a sees b and c up")


def test_a_partition_of_one_channel_leaves_the_other_channel_s_peers_up(trio):
    a, b, c = trio
    box: list = []
    a.spawn(Box, box, name="watch")
    a.subscribe_peers("a/watch")
    c.spawn(Box, cbox := [], name="box")
    wait_for(lambda: a.transport.peers() == {"b": "up", "c": "up"}, what="both up")
    # b stops talking to a: the mesh link between them is cut (b's plan names a, whose link is on the mesh)
    b.tell("b/$sys", SetFaults(partition=["a"]))
    down = wait_for(lambda: [m for m in box if isinstance(m, PeerDown)], what="PeerDown(b)")
    assert [m.node for m in down] == ["b"] and down[0].reason == "silent"
    assert a.transport.peers()["c"] == "up"
    a.tell("c/box", Ping(1))
    wait_for(lambda: cbox, what="a -> c on the main channel during the mesh cut")
    # the mesh's own detector saw it; the main channel's never knew b
    assert a.transport.channels["mesh"].peers()["b"] == "down" and "b" not in a.transport.channels["main"].peers()
    b.tell("b/$sys", ClearFaults())
    wait_for(lambda: any(isinstance(m, PeerUp) and m.node == "b" for m in box[box.index(down[0]):]), what="b up again")
    assert not [m for m in box if isinstance(m, PeerDown) and m.node == "c"]


def test_loop_dispatched_actors_run_on_the_named_channel_s_thread(nodes):
    a = Node("a", transport=_chan({"b": "mesh"}, loop="mesh"), dispatch="loop")
    b = Node("b", transport=_chan({"a": "mesh"}), dispatch="loop")
    nodes += [a, b]
    a.transport.add_peer("b", b.transport.endpoints["mesh"])
    b.transport.add_peer("a", a.transport.endpoints["mesh"])
    seen: list = []

    class Where(Actor):
        def receive(self, msg, sender):
            seen.append(a.transport.channels["mesh"].in_loop())
            self.reply(Pong(msg.n, "a/where"))

    a.spawn(Where, name="where")
    assert b.ask("a/where", Ping(3), timeout=5).result(10) == Pong(3, "a/where")
    assert seen == [True]


def test_a_message_to_a_peer_of_no_channel_goes_on_the_main_one(trio):
    a, _b, _c = trio
    t = a.transport
    assert t.channel_of("chaosctl") == "main" and t.channel_of("b") == "mesh"
    other = ChannelTransport({"main": ZmqTransport(), "x": ZmqTransport()}, lambda p: "nowhere")
    assert other.channel_of("z") == "main"  # a route naming no channel of this node: the main one
    with pytest.raises(ValueError, match="loop channel"):
        ChannelTransport({"main": ZmqTransport()}, lambda p: "main", loop="mesh")


# -- the topology syntax ------------------------------------------------------------------------

BASE = """
name = "ch"
[[nodes]]
name = "mon-a"
[[nodes.actors]]
name = "p"
kind = "pingpong.ponger"
[[nodes]]
name = "mon-b"
[[nodes.actors]]
name = "p"
kind = "pingpong.ponger"
[[nodes]]
name = "host"
[[nodes.actors]]
name = "p"
kind = "pingpong.ponger"
"""


def test_channels_name_their_links_and_the_rest_use_the_main_channel():
    topo = parse_topology(BASE + '[channels.mesh]\nlinks = [["mon-*", "mon-*"]]\n'
                          '[[chaos]]\nnemesis = "one"\ntarget = "host"\nchannel = "main"\n')
    assert topo.channel_names == ["main", "mesh"]
    assert topo.channel_of("mon-a", "mon-b") == topo.channel_of("mon-b", "mon-a") == "mesh"
    assert topo.channel_of("mon-a", "host") == "main"
    assert topo.channels_of("mon-a") == ["mesh"] and topo.channels_of("host") == []
    assert topo.chaos[0].channel == "main"
    resolved = topo.with_ports({"mon-a": 7001, "mon-b": 7002, "host": 7003}, {"mon-a": {"mesh": 7101}})
    back = Topology.from_dict(json.loads(json.dumps(resolved.to_dict())))
    assert back == resolved and back.node("mon-a").channel_endpoint("mesh") == "tcp://127.0.0.1:7101"
    assert back.node("mon-a").channel_endpoint("main") == "tcp://127.0.0.1:7001"


def test_a_topology_without_channels_resolves_as_it_always_did():
    topo = parse_topology(BASE + '[[chaos]]\nnemesis = "one"\n')
    d = topo.with_ports({"mon-a": 7001}).to_dict()
    assert "channels" not in d and all("channel_ports" not in n for n in d["nodes"])
    assert "channel" not in d["chaos"][0]
    assert Topology.from_dict(json.loads(json.dumps(d))) == topo.with_ports({"mon-a": 7001})
    assert topo.channel_of("mon-a", "mon-b") == "main" and topo.channels_of("mon-a") == []


@pytest.mark.parametrize("extra, key, at, message", [
    ('[channels.mesh]\nlinks = [["mon-*", "mon-*"]]\n[[chaos]]\nnemesis = "one"\nchannel = "radio"\n',
     "chaos[0].channel", "channel =", "unknown channel 'radio' (channels of this topology: main, mesh"),
    ('[[chaos]]\nnemesis = "one"\nchannel = "mesh"\n', "chaos[0].channel", "channel =", "unknown channel 'mesh'"),
    ('[channels.mesh]\nlinks = [["mon-*", "rack-*"]]\n', "channels.mesh.links", "links =",
     "['mon-*', 'rack-*'] joins no two nodes"),
    ('[channels.mesh]\nlinks = ["mon-*"]\n', "channels.mesh.links", "links =", "expected a non-empty list of node pairs"),
    ('[channels.main]\nlinks = [["mon-*", "mon-*"]]\n', "channels.main", "[channels.main]", "'main' is the channel of every link"),
    ('[channels.mesh]\nlinks = [["mon-*", "mon-*"]]\nport = 3\n', "channels.mesh.port", "port =", "unknown key 'port'"),
    ('[channels.mesh]\nlinks = [["mon-*", "mon-*"]]\n[channels.radio]\nlinks = [["mon-a", "mon-b"]]\n',
     "channels.radio.links", "links = [[\"mon-a\"", "which channel 'mesh' already uses"),
    ('[channels.mesh]\nlinks = [["mon-*", "mon-*"]]\n[[chaos]]\nnemesis = "kill"\nchannel = "mesh"\n',
     "chaos[0].channel", "channel =", "strikes processes, not links"),
])
def test_bad_channels_are_loader_errors_with_key_and_line(extra, key, at, message):
    text = BASE + extra
    line = [i for i, x in enumerate(text.splitlines(), start=1) if x.startswith(at)][-1]  # the offending line
    with pytest.raises(TopologyError) as e:
        parse_topology(text, "ch.toml")
    problems = [p for p in e.value.problems if p.key == key]
    assert problems, str(e.value)
    assert message in problems[0].message and problems[0].line == line, str(e.value)


# -- channel-scoped fault schedules ---------------------------------------------------------------

def test_a_channel_scoped_cut_blocks_only_that_channel_s_links():
    topo = parse_topology(BASE + '[channels.mesh]\nlinks = [["mon-*", "mon-*"]]\n')
    for seed in range(4):
        whole = [op for _t, op in build_schedule(topo, seed, "random-halves") if op.kind == "grudge"]
        main = [op for _t, op in build_schedule(topo, seed, "random-halves", {"channel": "main"})
                if op.kind == "grudge"]
        mesh = [op for _t, op in build_schedule(topo, seed, "random-halves", {"channel": "mesh"})
                if op.kind == "grudge"]
        assert len(whole) == len(main) == len(mesh) == 1
        assert main[0].blocked | mesh[0].blocked == whole[0].blocked  # the same draw, split by channel
        assert all(topo.channel_of(a, b) == "main" for a, b in main[0].blocked)
        assert all(topo.channel_of(a, b) == "mesh" for a, b in mesh[0].blocked)
        assert "channel main" in main[0].label
    links = [op for _t, op in build_schedule(topo, 1, "flaky", {"channel": "mesh"}) if op.kind == "link_fault"]
    assert links and all(topo.channel_of(op.src, op.dst) == "mesh" for op in links)
    with pytest.raises(ValueError, match="unknown channel 'radio'"):
        build_schedule(topo, 1, "one", {"channel": "radio"})
    with pytest.raises(ValueError, match="strikes processes"):
        build_schedule(topo, 1, "kill", {"channel": "mesh"})


def test_channels_work_under_curve_each_channel_checks_the_same_keys(nodes):
    from transport.zmq import CurveConfig

    (pa, sa), (pb, sb) = CurveConfig.generate(), CurveConfig.generate()
    ca, cb = CurveConfig(pa, sa, {"b": pb}), CurveConfig(pb, sb, {"a": pa})

    def make(curve):
        return ChannelTransport({"main": ZmqTransport(curve=curve, **FAST), "mesh": ZmqTransport(curve=curve, **FAST)},
                                lambda peer: "mesh")
    a, b = Node("a", transport=make(ca)), Node("b", transport=make(cb))
    nodes += [a, b]
    a.transport.add_peer("b", b.transport.endpoints["mesh"])
    b.transport.add_peer("a", a.transport.endpoints["mesh"])
    b.spawn(Echo, name="echo")
    assert a.ask("b/echo", Ping(1), timeout=5).result(10) == Pong(1, "b/echo")
    assert a.counters()["transport.channel.mesh.peer.b.msgs_out"] == 1


def test_a_node_may_fix_its_port_on_a_channel_and_bad_ones_are_loader_errors():
    text = BASE.replace('name = "mon-a"\n', 'name = "mon-a"\nchannel_ports = { mesh = 7101 }\n', 1)
    topo = parse_topology(text + '[channels.mesh]\nlinks = [["mon-*", "mon-*"]]\n')
    assert topo.node("mon-a").channel_ports == {"mesh": 7101} and topo.node("mon-b").channel_ports == {}
    bad = BASE.replace('name = "mon-a"\n', 'name = "mon-a"\nport = 7001\nchannel_ports = { mesh = 7001, rack = 3 }\n', 1)
    bad = bad.replace('name = "host"\n', 'name = "host"\nchannel_ports = { mesh = 7200 }\n', 1)
    with pytest.raises(TopologyError) as e:
        parse_topology(bad + '[channels.mesh]\nlinks = [["mon-*", "mon-*"]]\n', "ch.toml")
    got = {p.key: p for p in e.value.problems}
    assert "already used by node 'mon-a'" in got["nodes[0].channel_ports.mesh"].message
    assert "no endpoint on channel 'rack'" in got["nodes[0].channel_ports.rack"].message
    assert "node 'host' has no endpoint on channel 'mesh'" in got["nodes[2].channel_ports.mesh"].message
    assert all(p.line for p in e.value.problems), str(e.value)


def test_a_node_process_that_cannot_bind_its_channel_endpoint_says_which(tmp_path):
    import socket
    import subprocess
    import sys
    from pathlib import Path

    topo = parse_topology(BASE + '[channels.mesh]\nlinks = [["mon-*", "mon-*"]]\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            port = free.getsockname()[1]
        def node(resolved) -> subprocess.CompletedProcess:
            (tmp_path / "t.json").write_text(json.dumps(resolved.to_dict()))
            return subprocess.run([sys.executable, "-m", "topologies.node", "--topology", str(tmp_path / "t.json"),
                                   "--name", "mon-a"], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                                  text=True, timeout=60)
        ports = {"mon-a": port, "mon-b": port + 1, "host": port + 2}
        proc = node(topo.with_ports(ports, {"mon-a": {"mesh": busy}, "mon-b": {"mesh": port + 3}}))
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert json.loads(proc.stdout.splitlines()[0]) == {
            "error": f"cannot bind tcp://127.0.0.1:{busy}: Address already in use"}
        proc = node(topo.with_ports(ports, {"mon-a": {"mesh": port + 4}}))  # mon-b's mesh port missing
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
        assert "node 'mon-b' has no port on channel 'mesh'" in json.loads(proc.stdout.splitlines()[0])["error"]


def test_chaos_cli_channel_option_is_checked_before_anything_runs(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    racks = root / "topologies" / "racks.toml"
    for args, why in ((["--channel", "main"], "--channel needs --nemesis"),
                      (["--nemesis", "one", "--channel", "radio"], "unknown channel 'radio' (channels of racks: main, "
                                                                   "mesh, rack)"),
                      (["--nemesis", "kill", "--channel", "mesh"], "kill strikes processes, not links")):
        proc = subprocess.run([sys.executable, "-m", "topologies.cli", "chaos", str(racks), *args, "--out",
                               str(tmp_path)], cwd=root, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and why in proc.stderr, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr and not any(tmp_path.iterdir())


def test_in_the_simulator_a_channel_may_be_a_network_of_its_own_and_replays_identically(tmp_path):
    from actors.eventlog import read_events
    from topologies.launcher import run_sim

    pp = (Path(__file__).resolve().parents[1] / "topologies" / "pingpong.toml").read_text()
    topo = parse_topology(pp + '\n[channels.mesh]\nlinks = [["alpha", "beta"]]\nlatency = [0.05, 0.05]\nloss = 0.0\n')
    assert topo.channels[0].latency == (0.05, 0.05) and topo.channels[0].simulated
    assert Topology.from_dict(json.loads(json.dumps(topo.to_dict()))) == topo
    logs = []
    for run in ("a", "b"):
        run_sim(topo, tmp_path / run, seed=3, quiet=True, trace=True)
        logs.append((tmp_path / run / "events.jsonl").read_text())
    assert logs[0] == logs[1]
    took: dict[tuple[str, str], set] = {}
    for e in read_events(tmp_path / "a" / "events.jsonl"):
        if e["kind"] == "net.deliver":
            pair = (e["fields"]["src"].partition("/")[0], e["node"])
            took.setdefault(pair, set()).add(round(e["time"] - e["fields"]["sent"], 6))
    assert took[("alpha", "beta")] == took[("beta", "alpha")] == {0.05}  # the mesh's own latency
    assert max(took[("gamma", "beta")]) <= 0.005  # gamma - beta: the main channel, [network]'s latency
    with pytest.raises(TopologyError, match="channels.mesh.loss"):
        parse_topology(pp + '\n[channels.mesh]\nlinks = [["alpha", "beta"]]\nloss = 2\n')
