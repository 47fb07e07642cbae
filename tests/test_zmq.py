"""The ZeroMQ transport between Nodes in this process, on 127.0.0.1.

Covers: tell/ask, fast failure of asks (unknown actor, down node), backpressure,
hostile frames from a raw pyzmq socket, CurveZMQ, every fault hook, counters.
Multi-process behaviour (SIGKILL, restart) is in test_multiprocess.py.
"""

from __future__ import annotations

import threading

import msgpack
import pytest
import zmq

from actors import Actor, DeadLetterError, Node
from actors.messages import PeerDown, PeerUp
from tests.conftest import wait_for
from tests.zmq_actors import Echo, Ping, Pong
from transport.codec import encode
from transport.faults import ClearFaults, FaultRule, SetFaults
from transport.zmq import CurveConfig, ZmqTransport, message_frames

FAST = {"heartbeat_interval": 0.05, "liveness": 4, "linger": 0.2}


class Box(Actor):
    """Collects what it receives."""

    def __init__(self, box: list):
        self.box = box

    def receive(self, msg, sender):
        self.box.append(msg)


@pytest.fixture
def mesh(nodes):
    """make(name, **transport_kwargs) -> Node, each connected to the ones made before."""
    made = {}

    def make(name, **kw):
        opts = dict(FAST)
        opts.update(kw)
        peers = {n: node.transport.endpoint for n, node in made.items()}
        node = Node(name, transport=ZmqTransport(peers=peers, **opts))
        for other in made.values():  # a topology file gives every node every endpoint
            other.transport.add_peer(name, node.transport.endpoint)
        nodes.append(node)
        made[name] = node
        return node
    return make


def test_tell_and_ask_across_nodes(mesh):
    a, b = mesh("a"), mesh("b")
    b.spawn(Echo, name="echo")
    assert a.ask("b/echo", Ping(1), timeout=5).result(10) == Pong(1, "b/echo")
    box = []
    a.spawn(Box, box, name="box")
    for i in range(200):
        b.tell("a/box", Ping(i))
    wait_for(lambda: len(box) == 200, what="200 tells")
    assert [m.n for m in box] == list(range(200)), "one sender to one actor is FIFO"
    c = a.counters()
    assert c["transport.peer.b.msgs_in"] >= 201 and c["transport.peer.b.msgs_out"] >= 1


def test_ask_to_a_missing_remote_actor_fails_fast_with_the_reason(mesh):
    a, b = mesh("a"), mesh("b")
    fut = a.ask("b/ghost", Ping(1), timeout=30)
    with pytest.raises(DeadLetterError, match="no such actor"):
        fut.result(10)  # long before the 30 s ask timeout
    assert b.counters()["dead_letters"] == 1
    assert b.counters()["peer.a.dead_letters"] == 1
    wait_for(lambda: a.counters().get("remote_dead_letters") == 1, what="notice counted")


def test_ask_to_a_down_node_fails_fast(mesh):
    a = mesh("a")
    b = mesh("b")
    b.spawn(Echo, name="echo")
    a.ask("b/echo", Ping(0), timeout=5).result(10)
    box = []
    a.spawn(Box, box, name="watch")
    a.subscribe_peers("a/watch")
    b.shutdown()
    wait_for(lambda: any(isinstance(m, PeerDown) and m.node == "b" for m in box), what="PeerDown(b)")
    assert [m.reason for m in box if isinstance(m, PeerDown)] == ["left"], "a clean shutdown says goodbye"
    fut = a.ask("b/echo", Ping(1), timeout=30)
    assert fut.done(), "an ask to a node known to be down must not wait"
    with pytest.raises(DeadLetterError, match="down"):
        fut.result(0)


def test_silent_peer_is_detected_and_pending_asks_fail(mesh):
    a = mesh("a")
    b = mesh("b")
    box = []

    class Mute(Actor):
        def receive(self, msg, sender):
            box.append(msg)  # never replies

    b.spawn(Mute, name="mute")
    a.spawn(Box, box, name="watch")
    a.subscribe_peers("a/watch")
    wait_for(lambda: a.transport.peers().get("b") == "up", what="b up")
    fut = a.ask("b/mute", Ping(1), timeout=60)
    wait_for(lambda: any(isinstance(m, Ping) for m in box), what="ask delivered")
    b.tell("b/$sys", SetFaults(partition=["a"]))  # b goes silent towards a, both ways
    with pytest.raises(ConnectionError, match="went down"):
        fut.result(10)
    down = wait_for(lambda: [m for m in box if isinstance(m, PeerDown)], what="PeerDown(b)")
    assert down[0].reason == "silent"
    b.tell("b/$sys", ClearFaults())
    wait_for(lambda: isinstance(box[-1], PeerUp) and box[-1].node == "b", what="PeerUp after healing")


def test_full_outbound_queue_is_a_counted_dead_letter_not_a_block(mesh):
    a = mesh("a", sndhwm=50)
    # A peer that accepts the connection but never reads: its ROUTER has a tiny receive queue.
    ctx = zmq.Context.instance()
    sink = ctx.socket(zmq.ROUTER)
    sink.setsockopt(zmq.RCVHWM, 1)
    sink.setsockopt(zmq.LINGER, 0)
    port = sink.bind_to_random_port("tcp://127.0.0.1")
    a.transport.add_peer("sink", f"tcp://127.0.0.1:{port}")
    try:
        big = Ping(0, b"x" * 100_000)
        done = threading.Event()

        def flood():
            for _ in range(5000):
                a.tell("sink/x", big)
            done.set()

        threading.Thread(target=flood, daemon=True).start()
        assert done.wait(30), "tell blocked on a full queue"
        c = a.counters()
        full = c.get("transport.peer.sink.dropped_queue_full", 0)
        down = c.get("transport.peer.sink.refused_down", 0)  # a peer that never heartbeats is soon down
        assert full > 0
        assert c["dead_letters"] == full + down, "every refused message is a dead letter"
        reasons = {e["fields"]["reason"] for e in a.events.events() if e["kind"] == "runtime.dead_letter"}
        assert any("queue to 'sink' is full" in r for r in reasons)
    finally:
        sink.close(0)


def test_hostile_frames_are_counted_and_the_node_keeps_serving(mesh):
    victim = mesh("victim", max_frame=4096)
    good = mesh("good")
    victim.spawn(Echo, name="echo")
    ctx = zmq.Context.instance()
    raw = ctx.socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(victim.transport.endpoint)
    def msg(to="victim/echo", sender="evil/x", payload=encode(Ping(1))):
        return message_frames(to, sender, 0, payload)

    header = msg()[0]
    hostile = [
        [b"\x00garbage"],                                             # one frame, unknown kind
        [header],                                                     # wrong frame count
        msg() + [b"extra"],                                           # wrong frame count
        [b"Z" + header[1:], encode(Ping(1))],                         # unknown kind
        [b"M" + b"\x00" * 5, encode(Ping(1))],                        # truncated header
        [header[:11] + b"vic", encode(Ping(1))],                      # address runs past the header
        [b"M" + b"\x00" * 8 + (2).to_bytes(2, "big") + b"\xff\xfe" + b"evil/x", encode(Ping(1))],  # not UTF-8
        msg(payload=b"\xc1\xc1\xc1"),                                  # not msgpack
        msg(payload=encode(Ping(1))[:-2]),                            # truncated payload
        msg(payload=msgpack.packb({"@": "evil.Nope", "x": 1})),       # unknown tag
        msg(payload=msgpack.packb({"@": "zmqtest.Ping", "n": "one"})),  # wrong field type
        msg(payload=b"\x00" * 10_000),                                # oversized
        msg(to="victim/nobody"),                                      # no such actor
        msg(sender=""),                                               # no sender node
        [b"H", b"evil", b"\x00", b"tcp://x"],                         # heartbeat, bad incarnation
        [b"B", b"good", b"\x00" * 8],                                 # goodbye with a wrong incarnation
        [b"B", b"stranger", (7).to_bytes(8, "big")],                  # goodbye from a node never tracked here
    ]
    for frames in hostile:
        raw.send_multipart(frames)
    c = wait_for(lambda: (lambda c: c if c.get("decode_errors", 0) >= 4 and c.get("dead_letters", 0) >= 1
                          and c.get("transport.bad_goodbye", 0) >= 1 else None)(victim.counters()),
                 what="hostile frames counted")
    assert good.ask("victim/echo", Ping(7), timeout=5).result(10) == Pong(7, "victim/echo")
    assert c["transport.bad_frames"] == 4
    assert c["transport.bad_header"] == 2
    assert c["transport.bad_address"] == 1
    assert c["transport.bad_sender"] == 1
    assert c["transport.bad_heartbeat"] == 1
    assert c["transport.bad_goodbye"] == 1
    assert c["transport.goodbyes_untracked"] == 1, "an untracked node's goodbye is noted, not counted as bad input"
    assert c["transport.bad_oversized"] == 1
    assert c["decode_errors"] == 4 and c["peer.evil.decode_errors"] == 4
    assert c["dead_letters"] == 1 and c["undeliverable_notices"] == 1  # no route back to "evil"
    assert victim.transport.peers()["good"] == "up", "a forged goodbye must not take a peer down"
    assert "evil" not in victim.transport.peers(), "strangers are not tracked as peers"
    raw.close(0)


def _keys():
    return zmq.curve_keypair()


def test_curve_keyed_peer_delivers_and_an_unkeyed_one_cannot(nodes):
    (s_pub, s_sec), (g_pub, g_sec), (x_pub, x_sec) = _keys(), _keys(), _keys()
    server = Node("srv", transport=ZmqTransport(curve=CurveConfig(s_pub, s_sec, {"good": g_pub}), **FAST))
    nodes.append(server)
    box = []
    server.spawn(Box, box, name="box")
    ep = server.transport.endpoint
    good = Node("good", transport=ZmqTransport(peers={"srv": ep}, curve=CurveConfig(g_pub, g_sec, {"srv": s_pub}), **FAST))
    nodes.append(good)
    # A peer with its own key pair that the server does not list, and one with no keys at all.
    stranger = Node("stranger", transport=ZmqTransport(peers={"srv": ep}, curve=CurveConfig(x_pub, x_sec, {"srv": s_pub}), **FAST))
    plain = Node("plain", transport=ZmqTransport(peers={"srv": ep}, **FAST))
    nodes += [stranger, plain]
    stranger.tell("srv/box", Ping(666))
    plain.tell("srv/box", Ping(667))
    good.tell("srv/box", Ping(1))
    wait_for(lambda: Ping(1) in box, what="keyed peer's message")
    wait_for(lambda: server.counters().get("transport.auth_refused", 0) >= 1, what="stranger refused")
    good.tell("srv/box", Ping(2))
    wait_for(lambda: Ping(2) in box, what="second keyed message")
    assert [m.n for m in box] == [1, 2], "only the keyed peer's messages arrive"
    kinds = [e["kind"] for e in server.events.events()]
    assert "transport.insecure" not in kinds and "transport.auth_refused" in kinds
    assert "transport.insecure" in [e["kind"] for e in plain.events.events()], "running in the clear is said once"


# --- fault hooks, set and cleared at run time by a control message -----------------------

@pytest.fixture
def pair(mesh):
    a, b = mesh("a"), mesh("b")
    box: list = []
    b.spawn(Box, box, name="box")
    a.spawn(Echo, name="echo")
    b.ask("a/echo", Ping(-1), timeout=5).result(10)  # both directions are connected
    return a, b, box


def _control(node, msg):
    """Send a fault-plan change through the node's control address, as the chaos harness does."""
    node.tell(f"{node.name}/$sys", msg)


def test_fault_drop_and_clear(pair):
    a, b, box = pair
    _control(a, SetFaults([FaultRule(peers=("b",), direction="out", drop=1.0)]))
    for i in range(20):
        a.tell("b/box", Ping(i))
    assert a.counters()["transport.peer.b.dropped_by_rule_drop"] == 20
    _control(a, ClearFaults())
    a.tell("b/box", Ping(100))
    wait_for(lambda: box, what="delivery after clearing")
    assert [m.n for m in box] == [100]


def test_fault_delay_holds_messages_then_delivers(pair):
    a, b, box = pair
    # the fixture's reply to b is counted once its send returns, which may be after b has it: wait for that count
    wait_for(lambda: a.counters().get("transport.peer.b.msgs_out", 0) == 1, what="the fixture's reply counted")
    _control(a, SetFaults([FaultRule(direction="out", delay=0.3)]))
    a.tell("b/box", Ping(1))
    assert len(a.transport._delayed) == 1 and a.counters().get("transport.peer.b.msgs_out", 0) == 1
    wait_for(lambda: box, what="the delayed message")
    assert [m.n for m in box] == [1]


def test_fault_duplicate(pair):
    a, b, box = pair
    _control(a, SetFaults([FaultRule(direction="out", duplicate=1.0)]))
    for i in range(10):
        a.tell("b/box", Ping(i))
    wait_for(lambda: len(box) == 20, what="every message twice")
    assert sorted(m.n for m in box) == sorted(list(range(10)) * 2)


def test_fault_reorder(pair):
    a, b, box = pair
    _control(a, SetFaults([FaultRule(direction="out", reorder=0.5, reorder_window=0.05)]))
    for i in range(100):
        a.tell("b/box", Ping(i))
    wait_for(lambda: len(box) == 100, what="all reordered messages")
    got = [m.n for m in box]
    assert sorted(got) == list(range(100)) and got != list(range(100))


def test_fault_inbound_rules_apply_on_receipt(pair):
    a, b, box = pair
    _control(b, SetFaults([FaultRule(peers=("a",), direction="in", drop=1.0)]))
    a.tell("b/box", Ping(1))
    wait_for(lambda: b.counters().get("transport.peer.a.dropped_by_rule_drop", 0) >= 1, what="inbound drop")
    _control(b, ClearFaults())
    a.tell("b/box", Ping(2))
    wait_for(lambda: box, what="delivery after clearing")
    assert [m.n for m in box] == [2]


def test_fault_partition_cuts_both_ways_until_cleared(pair):
    a, b, box = pair
    seen: list = []
    a.spawn(Box, seen, name="peers")
    a.subscribe_peers("a/peers")
    _control(a, SetFaults(partition=["b"]))
    a.tell("b/box", Ping(1))
    fut = b.ask("a/echo", Ping(2), timeout=30)
    wait_for(lambda: any(isinstance(m, PeerDown) for m in seen), what="partition looks like a down peer")
    with pytest.raises((ConnectionError, DeadLetterError)):
        fut.result(10)
    assert box == []
    _control(a, ClearFaults())
    wait_for(lambda: any(isinstance(m, PeerUp) for m in seen), what="PeerUp after healing")
    a.tell("b/box", Ping(3))
    wait_for(lambda: box, what="traffic after healing")
    assert [m.n for m in box] == [3]
    kinds = [e["kind"] for e in a.events.events()]
    assert kinds.count("transport.faults") == 2, "every fault change is in the event log"


def test_message_traffic_alone_keeps_a_peer_up_and_silence_still_takes_it_down(mesh):
    """An UP peer's messages are noted per batch and told to the detector at the next tick."""
    a, b = mesh("a"), mesh("b")
    box = []
    a.spawn(Box, box, name="box")
    a.subscribe_peers("a/box")
    wait_for(lambda: a.transport.peers().get("b") == "up", what="b up")
    b.transport._heartbeat = lambda now: None  # b stops heartbeating: only its messages speak for it
    bound = a.transport.detector.bound
    stop = threading.Event()
    for i in range(int(5 * bound / 0.01)):  # five detector bounds of tells, one per 10 ms
        b.tell("a/box", Ping(i))
        stop.wait(0.01)
    assert not [m for m in box if isinstance(m, PeerDown)], "messages are a sign of life"
    assert a.transport.peers()["b"] == "up"
    down = wait_for(lambda: [m for m in box if isinstance(m, PeerDown)], timeout=10 * bound, what="PeerDown(b)")
    assert down[0].reason == "silent"


def test_traffic_noted_before_a_goodbye_does_not_bring_the_peer_back(mesh):
    a, b = mesh("a"), mesh("b")
    box = []
    a.spawn(Box, box, name="box")
    a.subscribe_peers("a/box")
    wait_for(lambda: a.transport.peers().get("b") == "up", what="b up")
    for i in range(50):
        b.tell("a/box", Ping(i))
    b.shutdown()  # the goodbye follows the tells on the same connection
    wait_for(lambda: [m for m in box if isinstance(m, PeerDown)], what="PeerDown(b)")
    threading.Event().wait(4 * a.transport.heartbeat_interval)  # several ticks apply what was noted
    assert a.transport.peers()["b"] == "down"
    changes = [m for m in box if isinstance(m, (PeerUp, PeerDown))]
    first_down = next(i for i, m in enumerate(changes) if isinstance(m, PeerDown))
    assert changes[first_down:] == [changes[first_down]] and changes[first_down].reason == "left"
    assert len([m for m in box if isinstance(m, Ping)]) == 50


# -- the I/O thread never dies silently (issue 14) ----------------------------------------------------

def test_an_unexpected_error_on_the_io_thread_is_counted_reported_and_the_loop_goes_on(mesh):
    a, b = mesh("a"), mesh("b")
    b.spawn(Echo, name="echo")
    real = b.transport._heartbeat
    calls = []

    def broken_once(now):
        calls.append(now)
        if len(calls) == 1:
            raise RuntimeError("a defect in the heartbeat tick")
        real(now)

    b.transport._heartbeat = broken_once
    wait_for(lambda: b.counters().get("transport.io_errors", 0) == 1, what="the error counted")
    errors = [e for e in b.events.events() if e["kind"] == "transport.error"]
    assert errors and "a defect in the heartbeat tick" in errors[0]["fields"]["error"]
    assert a.ask("b/echo", Ping(3), timeout=5).result(10) == Pong(3, "b/echo"), "the loop went on"
    wait_for(lambda: len(calls) > 1, what="the next heartbeat tick")


def test_an_io_thread_that_cannot_go_on_says_so_and_runs_the_died_hook(nodes):
    died = threading.Event()
    node = Node("x", transport=ZmqTransport(on_died=died.set, **FAST))
    nodes.append(node)

    def fatal(now):
        raise zmq.ZMQError(zmq.ENOTSOCK)

    node.transport._heartbeat = fatal
    assert died.wait(5), "on_died was not called"
    kinds = [e["kind"] for e in node.events.events()]
    assert "transport.died" in kinds and "transport.error" in kinds
    assert node.counters()["transport.io_died"] == 1


def test_a_process_whose_io_thread_died_exits_70_at_once(tmp_path):
    """By default a dead I/O thread ends the process with status 70: never a deaf process that exits 0."""
    import subprocess
    import sys
    code = (
        "import threading, zmq\n"
        "from actors import Node, EventLog\n"
        "from transport.zmq import ZmqTransport\n"
        f"node = Node('x', transport=ZmqTransport(heartbeat_interval=0.05), event_log=EventLog({str(tmp_path / 'ev.jsonl')!r}))\n"
        "def fatal(now): raise zmq.ZMQError(zmq.ENOTSOCK)\n"
        "node.transport._heartbeat = fatal\n"
        "threading.Event().wait(20)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=str(__import__("pathlib").Path(__file__).parents[1]),
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 70, p.stderr[-2000:]
    assert "transport.died" in (tmp_path / "ev.jsonl").read_text(), "the event was flushed before the exit"
    assert "I/O thread died" in p.stderr


def test_heartbeats_only_name_tcp_endpoints_and_a_failed_connect_leaves_nothing(mesh):
    a = mesh("a")
    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(a.transport.endpoint)
    try:
        bad = ["tcp://x", "tcp://h:", "tcp://h:abc", "tcp://h:0", "tcp://h:65536", "ipc://", "ipc:///tmp/a.sock",
               "inproc://x", "tcp://*:1", "tcp://h:1 "]
        for i, ep in enumerate(bad):
            raw.send_multipart([b"H", f"g{i}".encode(), (1).to_bytes(8, "big"), ep.encode()])
        wait_for(lambda: a.counters().get("transport.bad_heartbeat", 0) == len(bad), what="every one refused")
        assert set(a.transport.peers()) == set(), "nothing learned"
        with pytest.raises(zmq.ZMQError):
            a.transport.add_peer("y", "tcp://x")  # configuration: the error is the caller's
        assert "y" not in a.transport._peers
    finally:
        raw.close(0)


def test_addresses_over_255_bytes_are_refused_on_both_sides(mesh):
    a, b = mesh("a"), mesh("b")
    b.spawn(Echo, name="echo")
    with pytest.raises(DeadLetterError):
        a.ask("b/" + "e" * 254, Ping(1), timeout=5).result(10)
    assert a.counters()["dead_letters"] >= 1
    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(b.transport.endpoint)
    try:
        raw.send_multipart(message_frames("b/echo", "evil/" + "x" * 251, 0, encode(Ping(1))))  # 256 bytes
        raw.send_multipart(message_frames("b/echo", "evil/" + "x" * 250, 0, encode(Ping(1))))  # 255: fine
        wait_for(lambda: b.counters().get("transport.bad_header", 0) == 1, what="the long one refused")
        wait_for(lambda: b.counters().get("transport.msgs_in_unknown_peer", 0) == 1, what="the other taken")
    finally:
        raw.close(0)


def test_curve_refuses_two_node_names_with_one_key():
    """A key is bound to one node name (its User-Id): two names sharing one is a configuration error."""
    pub, sec = CurveConfig.generate()
    other, _ = CurveConfig.generate()
    with pytest.raises(ValueError, match="share one public key"):
        ZmqTransport(curve=CurveConfig(pub, sec, {"a": other, "b": other}))
