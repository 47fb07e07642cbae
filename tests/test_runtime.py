"""The Node runtime: tell, ask, timers, supervision, death watch, dead letters.

Time-dependent behaviour (backoff, ask deadlines, timers) runs on a
VirtualClock: the test moves time and checks exactly what happened.
"""

from __future__ import annotations

import threading

import pytest

from actors import (
    Actor, AskTimeout, DeadLetterError, Node, RestartPolicy, StateMachineActor, Terminated,
    VirtualClock,
)
from actors.clock import RealClock
from protocols.core import CancelTimer, Effect, Emit, Send, SetTimer, TimerFired
from tests.conftest import wait_for
from transport.base import Envelope
from transport.codec import encode, message
from transport.memory import MemoryNetwork


@message("rttest.Ping")
class Ping:
    n: int


@message("rttest.Pong")
class Pong:
    n: int


@message("rttest.Barrier")
class Barrier:
    """Answered by every test actor: when the reply comes, all earlier messages were handled."""


@message("rttest.Boom")
class Boom:
    pass


class Echo(Actor):
    """Replies Pong(n) to Ping(n); raises on Boom; records what it saw."""

    def __init__(self, log: list, label: str = "echo"):
        self.log = log
        self.label = label
        self.seen = 0
        log.append(("init", label))

    def receive(self, msg, sender):
        if isinstance(msg, Boom):
            raise RuntimeError("boom")
        self.seen += 1
        self.log.append(("got", msg.n, self.seen))
        self.reply(Pong(msg.n))


class Sink(Actor):
    """Never replies; collects every message."""

    def __init__(self, box: list):
        self.box = box

    def receive(self, msg, sender):
        if isinstance(msg, Barrier):
            self.reply(msg)
            return
        self.box.append((msg, sender))


def events_of(node, kind):
    return [e for e in node.events.events() if e["kind"] == kind]


# --- tell and ask ------------------------------------------------------------------

def test_ask_round_trip_local_and_across_nodes(nodes):
    net = MemoryNetwork()
    a = Node("a", transport=net.transport()); b = Node("b", transport=net.transport())
    nodes += [a, b]
    b.spawn(Echo, [], name="echo")
    assert b.ask("b/echo", Ping(1), timeout=2).result(5) == Pong(1)
    assert a.ask("b/echo", Ping(2), timeout=2).result(5) == Pong(2)
    assert a.counters()["sent_remote"] == 1 and b.counters()["received_remote"] == 1


def test_tell_is_fifo_per_sender(nodes):
    n = Node("n"); nodes.append(n)
    box = []
    n.spawn(Sink, box, name="sink")
    for i in range(500):
        n.tell("n/sink", Ping(i))
    wait_for(lambda: len(box) == 500, what="500 messages")
    assert [m.n for m, _ in box] == list(range(500))


def test_ask_times_out_on_the_virtual_clock(nodes):
    clock = VirtualClock()
    n = Node("n", clock=clock); nodes.append(n)
    box = []
    n.spawn(Sink, box, name="sink")
    fut = n.ask("n/sink", Ping(1), timeout=2.0)
    wait_for(lambda: box, what="sink got the ask")
    clock.advance(1.999)
    assert not fut.done()
    clock.advance(0.002)
    with pytest.raises(AskTimeout, match="n/sink"):
        fut.result(0)
    assert n.counters()["ask_timeouts"] == 1
    # A late reply is a counted dead letter, not an error.
    n.tell(box[0][1], Pong(1))
    assert n.counters()["late_replies"] == 1


def test_ask_to_unknown_actor_fails_fast(nodes):
    n = Node("n", clock=VirtualClock()); nodes.append(n)
    fut = n.ask("n/ghost", Ping(1), timeout=30)
    assert fut.done(), "an ask to a missing local actor must not wait for its timeout"
    with pytest.raises(DeadLetterError, match="no such actor"):
        fut.result(0)


def test_ask_rejects_bad_timeout(nodes):
    n = Node("n"); nodes.append(n)
    with pytest.raises(ValueError):
        n.ask("n/x", Ping(1), timeout=0)


# --- dead letters -------------------------------------------------------------------

def test_dead_letters_are_counted_never_raised(nodes):
    net = MemoryNetwork()
    a = Node("a", transport=net.transport()); nodes.append(a)
    lonely = Node("lonely"); nodes.append(lonely)
    a.tell("a/nobody", Ping(1))                  # unknown local actor
    a.tell("zz/nobody", Ping(2))                 # unknown node
    a.tell("not-an-address", Ping(3))            # malformed
    lonely.tell("a/x", Ping(4))                  # no transport at all
    assert a.dead_letters == 3
    assert lonely.dead_letters == 1
    reasons = [e["fields"]["reason"] for e in events_of(a, "runtime.dead_letter")]
    assert reasons == ["no such actor", "node 'zz': no such node", "malformed address"]


def test_messages_to_a_stopped_actor_are_dead_letters(nodes):
    n = Node("n"); nodes.append(n)
    n.spawn(Sink, [], name="s")
    assert n.stop("n/s")
    before = n.dead_letters
    n.tell("n/s", Ping(1))
    assert n.dead_letters == before + 1


# --- supervision --------------------------------------------------------------------

def test_crash_restarts_with_original_arguments_after_backoff(nodes):
    clock = VirtualClock()
    policy = RestartPolicy(max_restarts=3, window=100, backoff_min=1.0, backoff_factor=2.0, backoff_max=30)
    n = Node("n", clock=clock, restart=policy); nodes.append(n)
    log = []
    n.spawn(Echo, log, label="L", name="e")
    assert n.ask("n/e", Ping(1)).result(5) == Pong(1)
    n.tell("n/e", Boom())
    wait_for(lambda: events_of(n, "actor.crashed"), what="crash event")
    # Messages sent while it waits to restart are kept, in order.
    futs = [n.ask("n/e", Ping(i), timeout=60) for i in (2, 3)]
    clock.advance(0.999)
    assert not events_of(n, "actor.restarted"), "restarted before its backoff"
    clock.advance(0.002)
    assert [f.result(5) for f in futs] == [Pong(2), Pong(3)]
    assert log.count(("init", "L")) == 2, "restart must rebuild the actor with its original arguments"
    assert ("got", 2, 1) in log, "the new instance starts from fresh state"
    crash = events_of(n, "actor.crashed")[0]
    assert crash["fields"]["message"] == "rttest.Boom" and crash["fields"]["restart_in"] == 1.0
    assert 1.0 <= events_of(n, "actor.restarted")[0]["time"] <= 1.001


def test_backoff_grows_then_the_budget_stops_the_actor(nodes):
    clock = VirtualClock()
    policy = RestartPolicy(max_restarts=2, window=100, backoff_min=1.0, backoff_factor=3.0, backoff_max=30)
    n = Node("n", clock=clock, restart=policy); nodes.append(n)
    n.spawn(Echo, [], name="e")
    box = []
    n.spawn(Sink, box, name="watcher")
    n.watch("n/watcher", "n/e")

    def crash_and_wait(k):
        n.tell("n/e", Boom())
        wait_for(lambda: len(events_of(n, "actor.crashed")) == k, what=f"crash {k}")

    crash_and_wait(1)
    clock.advance(1.0)
    wait_for(lambda: len(events_of(n, "actor.restarted")) == 1, what="restart 1")
    crash_and_wait(2)
    clock.advance(2.9)
    assert len(events_of(n, "actor.restarted")) == 1, "second backoff must be 3s"
    clock.advance(0.1)
    wait_for(lambda: len(events_of(n, "actor.restarted")) == 2, what="restart 2")
    crash_and_wait(3)
    wait_for(lambda: box, what="Terminated")
    assert box[0][0] == Terminated("n/e", "failed")
    assert [e["fields"]["restart_in"] for e in events_of(n, "actor.crashed")] == [1.0, 3.0, None]
    assert events_of(n, "actor.gave_up")
    assert "n/e" not in n.actors()
    assert n.counters()["restarts"] == 2 and n.counters()["crashes"] == 3


def test_crash_in_on_start_is_supervised(nodes):
    clock = VirtualClock()
    n = Node("n", clock=clock, restart=RestartPolicy(max_restarts=1, backoff_min=0.5)); nodes.append(n)
    attempts = []

    class Flaky(Actor):
        def on_start(self):
            attempts.append(self.now)
            if len(attempts) == 1:
                raise OSError("disk not ready")

        def receive(self, msg, sender):
            self.reply(Pong(msg.n))

    n.spawn(Flaky, name="f")
    wait_for(lambda: events_of(n, "actor.crashed"), what="crash in on_start")
    fut = n.ask("n/f", Ping(7), timeout=10)
    clock.advance(0.5)
    assert fut.result(5) == Pong(7)
    assert attempts == [0.0, 0.5]


def test_constructor_errors_reach_spawn(nodes):
    n = Node("n"); nodes.append(n)

    class Bad(Actor):
        def __init__(self, x):
            raise ValueError("bad x")

    with pytest.raises(ValueError, match="bad x"):
        n.spawn(Bad, 1, name="bad")
    assert n.actors() == []
    n.spawn(Sink, [], name="bad")  # the name is free again
    with pytest.raises(ValueError, match="already running"):
        n.spawn(Sink, [], name="bad")
    for bad_name in ("", "a/b", "$sys"):
        with pytest.raises(ValueError):
            n.spawn(Sink, [], name=bad_name)


# --- death watch ----------------------------------------------------------------------

def test_death_watch_local_remote_and_already_dead(nodes):
    net = MemoryNetwork()
    a = Node("a", transport=net.transport()); b = Node("b", transport=net.transport())
    nodes += [a, b]
    box = []
    a.spawn(Sink, box, name="w")
    b.spawn(Sink, [], name="t1")
    a.spawn(Sink, [], name="t2")
    a.watch("a/w", "b/t1")           # remote
    a.watch("a/w", "a/t2")           # local
    a.watch("a/w", "a/never")        # not running: told at once
    wait_for(lambda: box, what="Terminated for a missing target")
    assert box[0][0] == Terminated("a/never", "not running")
    b.stop("b/t1")
    a.stop("a/t2")
    wait_for(lambda: len(box) == 3, what="two more Terminated")
    assert {m.address for m, _ in box[1:]} == {"b/t1", "a/t2"}
    assert all(m.reason == "stopped" for m, _ in box[1:])


def test_unwatch_stops_notifications(nodes):
    n = Node("n"); nodes.append(n)
    box = []
    n.spawn(Sink, box, name="w")
    n.spawn(Sink, [], name="t")
    n.watch("n/w", "n/t")
    n.unwatch("n/w", "n/t")
    n.stop("n/t")
    n.ask("n/w", Barrier()).result(5)
    assert [m for m, _ in box if isinstance(m, Terminated)] == []


# --- timers ---------------------------------------------------------------------------

def test_timers_fire_on_time_replace_and_cancel(nodes):
    clock = VirtualClock()
    n = Node("n", clock=clock); nodes.append(n)
    fired = []
    ready = threading.Event()

    class T(Actor):
        def on_start(self):
            self.set_timer("a", 1.0)
            self.set_timer("b", 2.0)
            self.set_timer("b", 3.0)          # replaces the 2.0 one
            self.set_timer("c", 1.5)
            self.cancel_timer("c")
            ready.set()

        def receive(self, msg, sender):
            if isinstance(msg, TimerFired):
                fired.append((msg.key, self.now, sender))
            elif isinstance(msg, Barrier):
                self.reply(msg)

    n.spawn(T, name="t")
    assert ready.wait(5)
    # Actors run on their own threads and read the clock when they handle a
    # message, so move time to each due point and let the actor catch up.
    clock.advance(1.0)
    wait_for(lambda: fired, what="timer a")
    clock.advance(1.0)          # t=2: the replaced timer b must not fire
    clock.advance(0.5)          # t=2.5: nor the cancelled c (due 1.5)
    n.ask("n/t", Barrier()).result(5)
    assert len(fired) == 1
    clock.advance(0.5)
    wait_for(lambda: len(fired) == 2, what="timer b")
    n.ask("n/t", Barrier()).result(5)
    assert fired == [("a", 1.0, "n/t"), ("b", 3.0, "n/t")]


def test_one_scheduler_thread_per_node():
    clock = RealClock("solo")
    done = threading.Event()
    order = []
    try:
        base = clock.now() + 0.05
        for i in range(200):
            clock.call_at(base + 0.001 * (200 - i), order.append, 200 - i)
        clock.call_at(base + 0.3, done.set)
        assert done.wait(5)
        timer_threads = [t for t in threading.enumerate() if t.name == "timers-solo"]
        assert len(timer_threads) == 1
        assert order == list(range(1, 201)), "timers must run in due-time order"
    finally:
        clock.close()


# --- state machine actors --------------------------------------------------------------

class Counter:
    """A tiny protocol: counts Pings, echoes Pongs, sets a timer, emits events."""

    tick_interval = None

    def __init__(self):
        self.count = 0

    def tick(self, now):
        return [Emit("counter.started", {"at": now}), SetTimer("wake", now + 5)]

    def handle(self, msg, sender, now):
        if isinstance(msg, TimerFired):
            return [Emit("counter.woke", {"at": now, "count": self.count})]
        if isinstance(msg, Ping):
            self.count += 1
            effs = [Send(sender, Pong(self.count))]
            if msg.n < 0:
                effs.append(CancelTimer("wake"))
            return effs
        return []


def test_state_machine_actor_carries_out_effects(nodes):
    clock = VirtualClock()
    n = Node("n", clock=clock); nodes.append(n)
    n.spawn(StateMachineActor, Counter, name="c")
    assert n.ask("n/c", Ping(1)).result(5) == Pong(1)
    assert n.ask("n/c", Ping(1)).result(5) == Pong(2)
    clock.advance(5)
    wait_for(lambda: events_of(n, "counter.woke"), what="timer effect")
    assert events_of(n, "counter.started")[0]["fields"] == {"at": 0.0}
    assert events_of(n, "counter.woke")[0]["fields"] == {"at": 5.0, "count": 2}


def test_unhandled_host_effect_is_a_supervised_crash(nodes):
    class Reboot(Effect):
        pass

    class Rebooter:
        tick_interval = None

        def tick(self, now):
            return []

        def handle(self, msg, sender, now):
            return [Reboot()]

    n = Node("n", clock=VirtualClock()); nodes.append(n)
    n.spawn(StateMachineActor, Rebooter, name="r")
    n.tell("n/r", Ping(1))
    crash = wait_for(lambda: events_of(n, "actor.crashed"), what="crash")
    assert "no handler for effect" in crash[0]["fields"]["error"]
    seen = []
    n.spawn(StateMachineActor, Rebooter, on_effect=lambda eff, actor: seen.append(type(eff).__name__), name="r2")
    n.tell("n/r2", Ping(1))
    wait_for(lambda: seen == ["Reboot"], what="on_effect called")


def test_periodic_tick(nodes):
    clock = VirtualClock()
    n = Node("n", clock=clock); nodes.append(n)
    ticks = []

    class Ticker:
        tick_interval = 1.0

        def tick(self, now):
            ticks.append(now)
            return []

        def handle(self, msg, sender, now):
            return [Send(sender, Pong(len(ticks)))]

    n.spawn(StateMachineActor, Ticker, name="t")
    wait_for(lambda: ticks == [0.0], what="start tick")
    for _ in range(3):
        clock.advance(1.0)
        n.ask("n/t", Ping(0)).result(5)  # barrier
    assert ticks == [0.0, 1.0, 2.0, 3.0]


# --- hostile input ----------------------------------------------------------------------

@pytest.mark.parametrize("env", [
    Envelope("n/e", "x/y", 0, b"\xc1\xc1garbage"),
    Envelope("n/e", "x/y", 0, encode(Ping(1))[:-1]),
    Envelope("n/e", "x/y", 0, b"\x81\xa1@\xabrttest.Nope"),
    Envelope("n/e", "x/y", 0, b"\x00" * (2 << 20)),
    Envelope("other/e", "x/y", 0, encode(Ping(1))),
    Envelope(None, 7, 0, encode(Ping(1))),  # type: ignore[arg-type]
])
def test_hostile_frames_are_counted_and_the_node_keeps_serving(nodes, env):
    net = MemoryNetwork()
    n = Node("n", transport=net.transport()); nodes.append(n)
    n.spawn(Echo, [], name="e")
    net.inject("n", env)
    assert n.counters()["decode_errors"] == 1
    assert events_of(n, "runtime.decode_error")
    assert n.ask("n/e", Ping(5)).result(5) == Pong(5)


def test_actor_can_stop_itself_and_watchers_hear_it(nodes):
    n = Node("n"); nodes.append(n)
    box = []

    class Quitter(Actor):
        def receive(self, msg, sender):
            self.stop()

    n.spawn(Quitter, name="q")
    n.spawn(Sink, box, name="w")
    n.watch("n/w", "n/q")
    n.tell("n/q", Ping(1))
    wait_for(lambda: box, what="Terminated after self-stop")
    assert box[0][0] == Terminated("n/q", "stopped")
    assert "n/q" not in n.actors()


def test_memory_network_partition_and_one_way_cut(nodes):
    net = MemoryNetwork()
    a, b = Node("a", transport=net.transport()), Node("b", transport=net.transport())
    nodes += [a, b]
    a_log = []
    a.spawn(Echo, a_log, name="e")
    b.spawn(Echo, [], name="e")
    net.partition([{"a"}, {"b"}])
    a.tell("b/e", Ping(1))
    b.tell("a/e", Ping(2))
    assert a.dead_letters == 1 and b.dead_letters == 1
    assert a.counters()["transport.dropped_partitioned"] == 1
    net.heal()
    net.cut("a", "b")                      # one way only
    a.tell("b/e", Ping(3))
    assert a.dead_letters == 2
    b.tell("a/e", Ping(4))                 # b -> a still flows (a's reply does not)
    wait_for(lambda: ("got", 4, 1) in a_log, what="b -> a across a one-way cut")
    net.heal()
    assert a.ask("b/e", Ping(5)).result(5) == Pong(5)


def test_ask_tracing_records_every_ask_and_its_one_ending(nodes):
    clock = VirtualClock()
    n = Node("n", clock=clock, trace_asks=True); nodes.append(n)
    n.spawn(Echo, [], name="e")
    box = []
    n.spawn(Sink, box, name="sink")
    assert n.ask("n/e", Ping(1)).result(5) == Pong(1)                  # reply
    n.ask("n/ghost", Ping(2)).exception(5)                             # dead letter
    slow = n.ask("n/sink", Ping(3), timeout=1.0)                       # timeout
    wait_for(lambda: box, what="sink got the ask")
    clock.advance(1.5)
    assert isinstance(slow.exception(5), AskTimeout)
    starts = {e["fields"]["id"]: e for e in events_of(n, "runtime.ask")}
    ends = [(e["fields"]["id"], e["fields"]["outcome"]) for e in events_of(n, "runtime.ask_end")]
    assert sorted(o for _, o in ends) == ["dead_letter", "reply", "timeout"]
    assert sorted(i for i, _ in ends) == sorted(starts), "every ask ends exactly once"
    assert all(s["fields"]["deadline"] > 0 for s in starts.values())
