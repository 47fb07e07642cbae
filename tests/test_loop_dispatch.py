"""Loop dispatch: actors run on the transport's I/O thread (``spawn(..., dispatch="loop")``).

The semantics must be the thread cell's - one message at a time, in order,
supervised restarts with the stash, timers bound to the instance, stop after
what is queued, dead letters for the rest - only the thread differs.
"""

from __future__ import annotations

import threading

import pytest

from actors import Actor, Node
from actors.messages import Terminated
from actors.supervision import RestartPolicy
from tests.conftest import wait_for
from tests.zmq_actors import Echo, Ping, Pong
from transport.memory import MemoryNetwork
from transport.zmq import ZmqTransport

FAST = {"heartbeat_interval": 0.05, "liveness": 4, "linger": 0.2}


@pytest.fixture
def pair(nodes):
    a = Node("a", transport=ZmqTransport(**FAST))
    b = Node("b", transport=ZmqTransport(peers={"a": a.transport.endpoint}, **FAST), dispatch="loop")
    a.transport.add_peer("b", b.transport.endpoint)
    nodes.extend([a, b])
    return a, b


class Box(Actor):
    def __init__(self, box: list):
        self.box = box

    def receive(self, msg, sender):
        self.box.append((msg, threading.current_thread().name))


class Bouncer(Actor):
    """Ping-pongs Ping(n) with a partner down to 0; checks it is never re-entered."""

    def __init__(self, partner: str, log: list):
        self.partner, self.log, self.inside = partner, log, False

    def receive(self, msg, sender):
        assert not self.inside, "receive re-entered"
        self.inside = True
        try:
            self.log.append(msg.n)
            if msg.n > 0:
                self.tell(self.partner, Ping(msg.n - 1))
        finally:
            self.inside = False


def test_remote_messages_are_handled_in_order_on_the_io_thread_and_asks_answered(pair):
    a, b = pair
    box: list = []
    b.spawn(Box, box, name="box")
    b.spawn(Echo, name="echo")
    assert b.dispatch == "loop"
    assert a.ask("b/echo", Ping(7), timeout=5).result(10) == Pong(7, "b/echo")
    for i in range(500):
        a.tell("b/box", Ping(i))
    wait_for(lambda: len(box) == 500, what="500 tells")
    assert [m.n for m, _ in box] == list(range(500))
    assert {t for _, t in box} == {"zmq-b"}, "handled on the transport's I/O thread"


def test_local_ping_pong_between_loop_actors_is_not_nested(pair):
    _a, b = pair
    log: list = []
    b.spawn(Bouncer, "b/y", log, name="x")
    b.spawn(Bouncer, "b/x", log, name="y")
    b.tell("b/x", Ping(2000))
    wait_for(lambda: len(log) == 2001, what="2001 bounces")  # nesting would overflow the stack
    assert log == list(range(2000, -1, -1))


def test_tells_from_many_threads_arrive_exactly_once(pair):
    _a, b = pair
    box: list = []
    b.spawn(Box, box, name="box")

    def send(k):
        for i in range(300):
            b.tell("b/box", Ping(k * 1000 + i))
    threads = [threading.Thread(target=send, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_for(lambda: len(box) == 1200, what="1200 tells")
    got = [m.n for m, _ in box]
    assert sorted(got) == sorted(k * 1000 + i for k in range(4) for i in range(300))
    for k in range(4):  # per sender FIFO
        mine = [n for n in got if n // 1000 == k]
        assert mine == sorted(mine)


class Ticker(Actor):
    def __init__(self, box: list):
        self.box = box

    def on_start(self):
        self.set_timer("a", 0.05, "a")
        self.set_timer("b", 0.02, "b-old")
        self.set_timer("b", 0.08, "b")  # replaces b-old
        self.set_timer("c", 0.03, "c")
        self.cancel_timer("c")

    def receive(self, msg, sender):
        self.box.append((msg, sender, threading.current_thread().name))


def test_timers_fire_on_the_loop_in_time_order_replaced_and_cancelled_ones_never(pair):
    _a, b = pair
    box: list = []
    b.spawn(Ticker, box, name="t")
    wait_for(lambda: len(box) == 2, what="two timers")
    assert [m for m, _, _ in box] == ["a", "b"]
    assert all(s == "b/t" and t == "zmq-b" for _, s, t in box)
    threading.Event().wait(0.15)
    assert len(box) == 2, "the replaced and the cancelled timer never fire"


class Fragile(Actor):
    starts: list = []

    def __init__(self, box: list):
        self.box = box
        Fragile.starts.append(1)

    def receive(self, msg, sender):
        if msg == "boom":
            raise RuntimeError("boom")
        self.box.append(msg)


def test_a_crash_restarts_a_new_instance_and_nothing_queued_behind_it_is_lost(pair):
    _a, b = pair
    box: list = []
    Fragile.starts = []
    b.spawn(Fragile, box, name="f", restart=RestartPolicy(max_restarts=3, window=10, backoff_min=0.05, backoff_max=0.05))
    for m in ["one", "boom", "two", "three"]:
        b.tell("b/f", m)
    wait_for(lambda: box == ["one", "two", "three"], what="messages after the crash")
    assert len(Fragile.starts) == 2
    assert b.counters()["crashes"] == 1 and b.counters()["restarts"] == 1


def test_stop_handles_what_is_queued_then_dead_letters_the_rest_and_tells_watchers(pair):
    _a, b = pair
    box: list = []
    watcher: list = []
    b.spawn(Box, box, name="box")
    b.spawn(Box, watcher, name="w")
    b.watch("b/w", "b/box")
    for i in range(5):
        b.tell("b/box", Ping(i))
    assert b.stop("b/box", timeout=5) is True
    assert [m.n for m, _ in box] == list(range(5))
    b.tell("b/box", Ping(99))
    assert b.counters()["dead_letters"] == 1
    wait_for(lambda: any(isinstance(m, Terminated) for m, _ in watcher), what="Terminated")
    assert b.stop("b/box") is False
    assert "b/box" not in b.actors()


def test_loop_dispatch_needs_a_transport_with_a_loop():
    net = MemoryNetwork()
    with pytest.raises(ValueError, match="event loop"):
        Node("m", transport=net.transport(), dispatch="loop")
    with pytest.raises(ValueError, match="dispatch"):
        Node("m2", dispatch="fibers")
    n = Node("m3", transport=net.transport())
    try:
        with pytest.raises(ValueError, match="event loop"):
            n.spawn(Echo, name="e", dispatch="loop")
    finally:
        n.shutdown()
