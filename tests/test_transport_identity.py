"""The plaintext identity rule (trust on first use, per connection) against legitimate reconnects.

A node replaces its link to a peer (closes its DEALER, opens a new one) whenever it sees that peer
go down, leave or restart: the peer then gets the node's next frames on a *new* connection while its
ZeroMQ may not yet have processed the close of the old one. Those frames are the node's own, not an
attack: they must wait for the old connection to close and then start a new session, never be
counted as bad input (CI: a chaos run's control node got goodbyes at shutdown, replaced its links,
and its next heartbeat was a ``transport.bad_frame`` at a node still draining). A connection that
claims a node while that node's connection stays open is still refused and counted.

Two real transports (or a transport and raw pyzmq sockets) on 127.0.0.1 in this process; heartbeats
are long (5 s) unless a test needs them, so nothing but the test's own frames is on the wire. Waits
are deadlines on behaviour, never asserted durations.
"""

from __future__ import annotations

import threading
import time

import pytest
import zmq

from tests.conftest import wait_for
from tests.hostile import Attacker, payload
from transport.base import Envelope
from transport.zmq import ZmqTransport

SLOW_HB = 5.0  # no heartbeat tick (nor a probe rate set by one) during a test


class Probe:
    """A started ZmqTransport and what it delivered, reported and emitted."""

    def __init__(self, name: str, **opts):
        self.t = ZmqTransport(**opts)
        self.got: list[Envelope] = []
        self.changes: list = []
        self.events: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        self.t.start(name, self._deliver, self._change, self._event)

    def _deliver(self, batch):
        with self.lock:
            self.got.extend(batch)

    def _change(self, change):
        with self.lock:
            self.changes.append((change.peer, change.state.value, change.reason))

    def _event(self, kind, fields):
        with self.lock:
            self.events.append((kind, dict(fields)))

    def counters(self) -> dict:
        return self.t.counters()

    def bad_frames(self) -> list[dict]:
        with self.lock:
            return [f for k, f in self.events if k == "transport.bad_frame"]

    def senders(self) -> list[str]:
        with self.lock:
            return [e.sender for e in self.got]


@pytest.fixture
def made():
    made: list = []
    yield made
    for x in reversed(made):
        x.close() if not isinstance(x, Probe) else x.t.close()


def _east(made, **opts) -> tuple[Probe, zmq.Socket, Attacker]:
    """east, which knows the node ``west`` (its configured endpoint: a raw ROUTER that only listens)."""
    raw = Attacker()
    made.append(raw)
    _, west_ep = raw.router()
    east = Probe("east", peers={"west": west_ep}, **{"heartbeat_interval": SLOW_HB, **opts})
    made.append(east)
    return east, raw


def _speak_as_west(raw: Attacker, east: Probe, sock: zmq.Socket, inc: int = 7) -> None:
    raw.heartbeat(sock, "west", inc, "tcp://127.0.0.1:9")
    wait_for(lambda: east.t.peers().get("west") == "up", what="west up at east")


def test_a_new_connection_waits_for_the_old_one_to_close_then_is_a_new_session_not_bad_input(made):
    """The worst order, made deterministic: west's new connection speaks (heartbeat, two messages)
    while its old one is still open; only then does the old one close. Nothing is bad input: the
    frames wait, the old session is reported down ("reconnected"), the messages are delivered."""
    east, raw = _east(made)
    old = raw.dealer(east.t.endpoint)
    _speak_as_west(raw, east, old)
    raw.message(old, "east/x", "west/a", payload("hostile.Echo", n=0))
    wait_for(lambda: "west/a" in east.senders(), what="west's message on its first connection")

    new = raw.dealer(east.t.endpoint)
    raw.heartbeat(new, "west", 7, "tcp://127.0.0.1:9")
    raw.message(new, "east/x", "west/b", payload("hostile.Echo", n=1))
    raw.message(new, "east/x", "west/c", payload("hostile.Echo", n=2))
    wait_for(lambda: east.counters().get("identity_held", 0) >= 3 or east.bad_frames(),
             what="the new connection's frames held (or refused)")
    assert east.bad_frames() == [], "a peer's new connection is not bad input while its old one closes"
    assert east.senders() == ["west/a"], "nothing from the new connection before the old one is gone"
    old.close(0)
    raw.socks.remove(old)
    wait_for(lambda: "west/c" in east.senders(), what="the held messages delivered once the old connection closed")
    assert east.senders() == ["west/a", "west/b", "west/c"], "in order, each once"
    c = east.counters()
    assert c.get("bad_identity", 0) == 0 and east.bad_frames() == [], east.bad_frames()
    assert c["connections_replaced"] == 1
    assert ("west", "down", "reconnected") in east.changes, "the old session's end is reported"
    assert east.changes[-1] == ("west", "up", "heard")
    # the new connection speaks for west now, the old one is forgotten
    raw.message(new, "east/x", "west/d", payload("hostile.Echo", n=3))
    wait_for(lambda: "west/d" in east.senders(), what="west's traffic on its new connection")
    assert east.counters().get("bad_identity", 0) == 0


def test_a_contender_while_the_bound_connection_stays_open_is_refused_and_counted(made):
    """The attack the rule exists for: another connection claims west while west's connection stays
    open. Its frames wait one heartbeat interval for that connection to close, then are counted
    (bad_identity) and dropped: never delivered, never a sign of life, and west is not taken down."""
    east, raw = _east(made, heartbeat_interval=0.2, liveness=50)  # west never times out here
    real = raw.dealer(east.t.endpoint)
    _speak_as_west(raw, east, real)
    evil = raw.dealer(east.t.endpoint)
    for i in range(5):
        raw.message(evil, "east/x", "west/spoof", payload("hostile.Echo", n=i))
    raw.heartbeat(evil, "west", 7, "tcp://127.0.0.1:10")
    raw.goodbye(evil, "west", 7)
    c = wait_for(lambda: (lambda c: c if c.get("bad_identity", 0) >= 7 else None)(east.counters()),
                 what="the contender's 7 frames counted")
    assert c["bad_identity"] == 7 and c["peer.west.bad_identity"] == 7
    assert "west/spoof" not in east.senders()
    assert [ch for ch in east.changes if ch[1] == "down"] == [], "west's session survives"
    assert east.t.peers()["west"] == "up"
    assert {f["problem"] for f in east.bad_frames()} == {"identity"}
    raw.message(real, "east/x", "west/real", payload("hostile.Echo", n=9))
    wait_for(lambda: "west/real" in east.senders(), what="west's own connection still speaks for it")
    assert c.get("connections_replaced", 0) == 0


def test_a_transport_that_replaces_its_link_is_heard_on_the_new_one_without_bad_input(made):
    """Two real transports: ctl replaces its link to east (what it does when it sees east leave,
    restart or go silent) and at once sends on the new one. east had just bound ctl's first
    connection (so it had no reason to look again for a while): still no bad input, the message
    is delivered, ctl's old session is reported down ("reconnected")."""
    east = Probe("east", heartbeat_interval=SLOW_HB)
    made.append(east)
    ctl = Probe("ctl", peers={"east": east.t.endpoint}, heartbeat_interval=SLOW_HB)
    made.append(ctl)
    wait_for(lambda: east.t.peers().get("ctl") == "up", what="ctl's heartbeat heard at east")
    ctl.t.send(Envelope("east/x", "ctl/a", 0, b"\x90"))
    wait_for(lambda: "ctl/a" in east.senders(), what="ctl's first message")
    ctl.t._reconnect(ctl.t._peers["east"])  # what _changed does when a peer goes down, leaves or restarts
    ctl.t.send(Envelope("east/x", "ctl/b", 0, b"\x90"))
    wait_for(lambda: "ctl/b" in east.senders() or east.bad_frames(), what="ctl's message on its new link")
    assert east.bad_frames() == [], east.bad_frames()
    assert east.senders() == ["ctl/a", "ctl/b"]
    assert ("ctl", "down", "reconnected") in east.changes


def test_a_goodbye_on_a_replaced_link_is_the_peer_leaving_not_bad_input(made):
    """Shutdown after a replaced link (on-demand nodes, a chaos run's control node): the goodbye is
    the first frame on the new connection. It is the peer leaving (reason "left"), not bad input."""
    east = Probe("east", heartbeat_interval=0.3)
    made.append(east)
    ctl = Probe("ctl", peers={"east": east.t.endpoint}, heartbeat_interval=0.3)
    wait_for(lambda: east.t.peers().get("ctl") == "up", what="ctl's heartbeat heard at east")
    # and east's at ctl: a node lingers on close (so its goodbye gets out) only for peers it hears
    wait_for(lambda: ctl.t.peers().get("east") == "up", what="east's heartbeat heard at ctl")
    ctl.t._reconnect(ctl.t._peers["east"])  # what _changed does when a peer goes down, leaves or restarts
    ctl.t.close()  # its goodbye goes over the new link
    wait_for(lambda: east.t.peers().get("ctl") == "down" or east.bad_frames(), what="ctl's goodbye")
    assert east.bad_frames() == [], east.bad_frames()
    assert east.counters().get("bad_identity", 0) == 0
    assert [ch for ch in east.changes if ch[0] == "ctl"][-1] == ("ctl", "down", "left")


def test_a_restarted_nodes_goodbye_before_its_first_heartbeat_is_it_leaving_not_bad_input(made):
    """A node is killed and restarted (a new incarnation, new connections) and shuts down before its
    first heartbeat reached east (on-demand racks nodes did, in a chaos run): its goodbye carries an
    incarnation east never heard, on the connection that now speaks for it. It leaves; not bad input."""
    east, raw = _east(made)
    old = raw.dealer(east.t.endpoint)
    _speak_as_west(raw, east, old, inc=7)
    old.close(0)  # the old process dies: its connection closes
    raw.socks.remove(old)
    new = raw.dealer(east.t.endpoint)
    raw.message(new, "east/x", "west/a", payload("hostile.Echo", n=0))  # the new process, on demand
    raw.goodbye(new, "west", 8)  # and its goodbye, before any heartbeat of incarnation 8
    wait_for(lambda: east.counters().get("goodbyes_new_incarnation", 0) or east.bad_frames(),
             what="the new incarnation's goodbye")
    assert east.bad_frames() == [], east.bad_frames()
    assert east.senders() == ["west/a"]
    assert east.t.peers()["west"] == "down"
    assert east.counters().get("bad_goodbye", 0) == 0


def test_a_goodbye_with_another_incarnation_from_a_contender_is_still_refused(made):
    east, raw = _east(made, heartbeat_interval=0.2, liveness=50)
    real = raw.dealer(east.t.endpoint)
    _speak_as_west(raw, east, real, inc=7)
    evil = raw.dealer(east.t.endpoint)
    raw.goodbye(evil, "west", 8)
    raw.goodbye(evil, "west", 0)  # no incarnation at all: bad_goodbye, from any connection
    wait_for(lambda: east.counters().get("bad_identity", 0) >= 1, what="the contender's goodbye refused")
    c = east.counters()
    assert c["bad_identity"] == 1 and c["bad_goodbye"] == 1
    assert east.t.peers()["west"] == "up" and [ch for ch in east.changes if ch[1] == "down"] == []


def test_late_frames_of_a_closed_connection_after_the_new_one_took_over_are_not_bad_input(made):
    """The other order: ZeroMQ reports a connection closed (a send to it fails) while frames it got
    before the close are still to be read. west sent 50 messages on its old connection, closed it,
    and said hello on a new one; east's I/O thread was busy meanwhile, so it reads the new
    connection's heartbeat (a new session: the old one is closed) before the rest of the old one's
    messages. Those are late frames of the old session: dropped and counted (``late_frames``),
    never bad input."""
    east, raw = _east(made)
    old_ctx = zmq.Context()
    old = old_ctx.socket(zmq.DEALER)
    old.setsockopt(zmq.LINGER, 2000)
    old.connect(east.t.endpoint)
    try:
        _speak_as_west(raw, east, old)
        gate = threading.Event()
        east.t.call_soon(gate.wait, 10)  # east's I/O thread is busy; its ZeroMQ threads are not
        for i in range(50):
            raw.message(old, "east/x", f"west/old{i}", payload("hostile.Echo", n=i))
        old.close()
        old_ctx.term()  # returns once the 50 messages are out and the connection is closed
        new = raw.dealer(east.t.endpoint)
        raw.heartbeat(new, "west", 7, "tcp://127.0.0.1:9")
        time.sleep(0.5)  # setup, not a measurement: east's ZeroMQ threads take the new connection in
        gate.set()
        wait_for(lambda: ("west", "down", "reconnected") in east.changes and east.t.peers().get("west") == "up",
                 what="the new session")
        c = wait_for(lambda: (lambda c: c if sum(1 for s in east.senders() if s.startswith("west/old"))
                              + c.get("late_frames", 0) + c.get("bad_identity", 0) + c.get("identity_held", 0) >= 50
                              else None)(east.counters()), what="all 50 of the old connection's messages accounted for")
        wait_for(lambda: not east.t._held, what="nothing left waiting")
        c = east.counters()
        assert east.bad_frames() == [] and c.get("bad_identity", 0) == 0, east.bad_frames()
        delivered = [s for s in east.senders() if s.startswith("west/old")]
        assert delivered == [f"west/old{i}" for i in range(len(delivered))], "in order, the first ones"
        assert len(delivered) + c.get("late_frames", 0) == 50 and c.get("peer.west.late_frames", 0) == c.get("late_frames", 0)
    finally:
        old.close(0)
        old_ctx.term()
