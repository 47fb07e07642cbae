"""The deterministic simulator: many state machines, one thread, virtual time.

How this works
--------------
Participants are sans-I/O state machines (``protocols.core.StateMachine``)
registered under ``"node/actor"`` addresses. The simulator owns a virtual clock
(``sim.now``, starting at 0.0) and one event queue: a heap of tuples
``(time, seq, kind, ...)`` where ``seq`` grows by one per push, so events at the
same time run in the order they were scheduled and every run from one seed is
the same run.

Event kinds: a delivery (through the network, or injected directly), a timer, a periodic tick
and a harness callback (``schedule``). Processing an event calls the
participant's ``handle``/``tick`` and carries out the returned effects in list
order:

* ``Send(to, msg)``: encode with the real codec, ask the :class:`SimNetwork`
  for delivery times (0, 1 or 2), queue the deliveries. At delivery the link
  is checked again (partitions that began in flight drop the message), the
  frame is decoded (a ``DecodeError`` is counted and the frame dropped), and a
  message for an address with no live participant is a dead letter.
* ``SetTimer(key, at)`` / ``CancelTimer(key)``: each timer gets a fresh id; a
  timer event fires only if its id is still the one recorded for its key, so a
  replaced or cancelled timer never fires. ``TimerFired(key)`` arrives through
  ``handle`` with the participant's own address as sender.
* ``Emit(kind, fields)``: one event-log line (time, node, actor, kind, fields).
* anything else: the participant's ``host(effect, address, sim)`` if it was
  added with one, else :class:`UnhandledEffect` (our bug, raised loudly).

Randomness: ``sim.rng(address)`` is ``random.Random(f"{seed}/{address}")``, so
adding a participant never shifts another participant's draws; the network
draws from one rng of its own (``f"{seed}:net"``) in event order. No wall
clock, no threads, no global random.

Faults: ``crash``/``restart`` participants; ``partition``/``cut``/``heal`` and
``set_link`` change the network and write ``net.*`` events so checkers can see
when faults were in force. ``trace_messages=True`` adds ``net.send``,
``net.deliver`` and ``net.drop`` events for every message.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from heapq import heappush
from typing import Any, Callable

from actors.eventlog import EventLog
from protocols.core import CancelTimer, Effect, Emit, Send, SetTimer, TimerFired, UnhandledEffect
from transport.codec import DecodeError, decode, encode, tag_of
from transport.sim import LinkSpec, SimNetwork

__all__ = ["DRIVER", "Simulator", "UnhandledEffect"]

DRIVER = "sim/driver"  # default sender of injected messages
_NET = ("sim", "net")  # node/actor of net.* events written by the driver

# event kinds (third tuple element); ordering never reaches them since seq is unique
_DELIVER = 0  # (t, seq, _DELIVER, dst, src, frame, src_node, dst_node, sent_at); src_node None: injected
_TIMER = 1  # (t, seq, _TIMER, address, key, timer_id, incarnation)
_TICK = 2  # (t, seq, _TICK, address, incarnation)
_CALL = 4  # (t, seq, _CALL, fn)


def _split(address: object) -> tuple[str, str]:
    if not isinstance(address, str):
        raise ValueError(f"an address must be a 'node/actor' string, got {address!r}")
    node, slash, actor = address.partition("/")
    if not slash or not node or not actor:
        raise ValueError(f"malformed address {address!r}: expected 'node/actor'")
    return node, actor


class _Participant:
    __slots__ = ("address", "node", "actor", "machine", "handle", "host", "timers", "incarnation", "alive")

    def __init__(self, address: str, node: str, actor: str, machine: Any, host: Callable | None) -> None:
        self.address = address
        self.node = node
        self.actor = actor
        self.host = host
        self.timers: dict[str, int] = {}
        self.incarnation = 0
        self.alive = True
        self.machine = machine
        self.handle = machine.handle


def _check_machine(address: str, machine: Any) -> None:
    if not callable(getattr(machine, "handle", None)) or not callable(getattr(machine, "tick", None)):
        raise TypeError(f"{address}: {type(machine).__qualname__} is not a state machine (needs handle() and tick())")


def _tick_interval(address: str, machine: Any) -> float | None:
    iv = getattr(machine, "tick_interval", None)
    if iv is None:
        return None
    if iv.__class__ is bool or not isinstance(iv, (int, float)) or not iv > 0 or math.isinf(iv):
        raise ValueError(f"{address}: tick_interval must be a positive number or None, got {iv!r}")
    return float(iv)


def _check_time(what: str, at: object) -> float:
    if at.__class__ is bool or not isinstance(at, (int, float)) or math.isnan(at):
        raise ValueError(f"{what} must be a number, got {at!r}")
    return float(at)


class Simulator:
    """Runs state machines over a :class:`SimNetwork` in virtual time, from one seed."""

    def __init__(
        self,
        seed: int,
        network: SimNetwork | None = None,
        event_log: EventLog | None = None,
        trace_messages: bool = False,
    ) -> None:
        if seed.__class__ is bool or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.seed = seed
        if network is None:
            network = SimNetwork(seed)
        elif network.seed is None:
            network.seed = seed
        elif network.seed != seed:
            raise ValueError(
                f"the network was seeded with {network.seed} but the simulator with {seed}; "
                "leave the network's seed unset so it follows the simulator"
            )
        self.network = network
        self.event_log = event_log if event_log is not None else EventLog()
        self._trace = bool(trace_messages)
        self.now = 0.0
        self._queue: list[tuple] = []
        self._seq = itertools.count()
        self._timer_ids = itertools.count(1)
        self._parts: dict[str, _Participant] = {}
        self._nodes: dict[str, str] = {}  # address -> node, for every destination seen
        self._rngs: dict[str, random.Random] = {}
        self.events_processed = 0
        self.messages_handled = 0
        self.dead_letters = 0
        self.timers_fired = 0
        self.ticks = 0
        self._apply = self._make_apply()

    @property
    def trace_messages(self) -> bool:
        """Whether net.send / net.deliver / net.drop events are written (fixed at construction)."""
        return self._trace

    # -- participants ----------------------------------------------------------

    def rng(self, address: str) -> random.Random:
        """The participant's deterministic rng (usable before ``add``)."""
        rng = self._rngs.get(address)
        if rng is None:
            _split(address)
            rng = self._rngs[address] = random.Random(f"{self.seed}/{address}")
        return rng

    def add(self, address: str, machine: Any, host: Callable[[Effect, str, "Simulator"], Any] | None = None) -> None:
        """Register a participant; it starts (``tick(now)``) as the next event at ``now``."""
        node, actor = _split(address)
        if address in self._parts:
            raise ValueError(f"duplicate address {address!r}")
        _check_machine(address, machine)
        _tick_interval(address, machine)
        if host is not None and not callable(host):
            raise TypeError(f"{address}: host must be callable(effect, address, sim), got {host!r}")
        self.network.add_node(node)
        self._nodes[address] = node
        self._parts[address] = _Participant(address, node, actor, machine, host)
        self._push((self.now, next(self._seq), _TICK, address, 0))

    def participants(self) -> list[str]:
        return list(self._parts)

    def machine(self, address: str) -> Any:
        """The current state machine at ``address``."""
        return self._participant(address).machine

    def alive(self, address: str) -> bool:
        return self._participant(address).alive

    def _participant(self, address: str) -> _Participant:
        p = self._parts.get(address)
        if p is None:
            raise ValueError(f"no participant at {address!r}")
        return p

    def crash(self, address: str) -> bool:
        """Stop a participant: its timers and ticks are dropped, deliveries to it become dead letters.

        Returns False (and does nothing) if it was already crashed.
        """
        p = self._participant(address)
        if not p.alive:
            return False
        p.alive = False
        p.incarnation += 1
        p.timers.clear()
        self.event_log.emit(self.now, p.node, p.actor, "sim.crash", {})
        return True

    def restart(self, address: str, machine: Any) -> None:
        """Replace the participant's machine with a fresh one and start it (crashing the old one if alive).

        Messages still in flight to ``address`` are delivered to the new machine.
        """
        p = self._participant(address)
        _check_machine(address, machine)
        _tick_interval(address, machine)
        if p.alive:
            self.crash(address)
        p.incarnation += 1
        p.machine = machine
        p.handle = machine.handle
        p.timers.clear()
        p.alive = True
        self.event_log.emit(self.now, p.node, p.actor, "sim.restart", {"incarnation": p.incarnation})
        self._push((self.now, next(self._seq), _TICK, address, p.incarnation))

    # -- network faults (logged) -----------------------------------------------------

    def partition(self, islands: Any) -> None:
        self.network.partition(islands)
        named = sorted(sorted(i) for i in self.network.islands())
        rest = sorted(self.network.unnamed())
        self.event_log.emit(self.now, *_NET, "net.partition", {"islands": named, "rest": rest})

    def cut(self, src_node: str, dst_node: str) -> None:
        self.network.cut(src_node, dst_node)
        self.event_log.emit(self.now, *_NET, "net.cut", {"src": src_node, "dst": dst_node})

    def heal(self) -> None:
        self.network.heal()
        self.event_log.emit(self.now, *_NET, "net.heal", {})

    def set_link(self, src_node: str, dst_node: str, spec: LinkSpec, *, both: bool = False) -> None:
        self.network.set_link(src_node, dst_node, spec, both=both)
        self.event_log.emit(self.now, *_NET, "net.link", {"src": src_node, "dst": dst_node, "both": both, "spec": repr(spec)})

    # -- injection -----------------------------------------------------------------

    def schedule(self, at: float, fn: Callable[[], Any]) -> None:
        """Call ``fn()`` at virtual time ``at`` (>= now), e.g. to start a partition."""
        at = _check_time("schedule time", at)
        if at < self.now:
            raise ValueError(f"cannot schedule in the past: at={at} < now={self.now}")
        if not callable(fn):
            raise TypeError(f"schedule needs a callable, got {fn!r}")
        self._push((at, next(self._seq), _CALL, fn))

    def send(self, to: str, msg: Any, sender: str = DRIVER, *, at: float | None = None, via_network: bool = False) -> None:
        """Inject a message from outside; it is encoded now and decoded at delivery.

        By default it bypasses the network (no latency, loss or partition) and is
        delivered at ``at`` (default: now). ``via_network=True`` sends it from
        ``sender``'s node like any participant's Send.
        """
        self.send_raw(to, encode(msg), sender, at=at, via_network=via_network)

    def send_raw(self, to: str, frame: bytes, sender: str = DRIVER, *, at: float | None = None, via_network: bool = False) -> None:
        """Inject raw wire bytes (e.g. a corrupt frame); see :meth:`send`."""
        _split(to)
        src_node, _ = _split(sender)
        if not isinstance(frame, (bytes, bytearray)):
            raise TypeError(f"a frame must be bytes, got {type(frame).__name__}")
        frame = bytes(frame)
        if via_network:
            if at is not None:
                raise ValueError("send via_network happens now; do not pass at=")
            self._transmit(sender, src_node, to, frame)
            return
        t = self.now if at is None else _check_time("send time", at)
        if t < self.now:
            raise ValueError(f"cannot send in the past: at={t} < now={self.now}")
        self._push((t, next(self._seq), _DELIVER, to, sender, frame, None, None, t))  # bypasses the network

    # -- running ---------------------------------------------------------------------

    def pending(self) -> int:
        """Events in the queue (stale timers and ticks included)."""
        return len(self._queue)

    def next_time(self) -> float | None:
        return self._queue[0][0] if self._queue else None

    def step(self) -> bool:
        """Process one event; False if the queue was empty."""
        return self.run(max_events=1) == 1

    def run(self, until: float | None = None, max_events: int | None = None) -> int:
        """Process events in order; returns how many were processed.

        Stops when the queue is empty, when the next event lies after ``until``
        (then ``now`` becomes ``until``), or after ``max_events`` events (then
        ``now`` stays at the last event's time). ``counters()`` is exact between
        runs and inside ``schedule`` callbacks.
        """
        if until is not None:
            until = _check_time("until", until)
            if until < self.now:
                raise ValueError(f"until={until} is before now={self.now}")
        if max_events is not None and (max_events.__class__ is bool or not isinstance(max_events, int) or max_events < 0):
            raise ValueError(f"max_events must be an int >= 0, got {max_events!r}")
        limit = math.inf if until is None else until
        budget = -1 if max_events is None else max_events

        queue = self._queue
        pop = heapq.heappop
        parts = self._parts
        net = self.network
        apply = self._apply
        trace = self._trace
        n = 0
        counted = 0  # events already added to self.events_processed
        handled = 0  # messages handled not yet added to self.messages_handled
        try:
            while queue and n != budget:
                ev = queue[0]
                t = ev[0]
                if t > limit:
                    break
                pop(queue)
                self.now = t
                n += 1
                kind = ev[2]
                if kind == _DELIVER:
                    _, _, _, dst, src, frame, sn, dn, sent_at = ev
                    if sn is not None:  # through the network: is the link still up at delivery?
                        if net.blocked and not net.can_reach(sn, dn):
                            net.dropped_partition += 1
                            if trace:
                                self._trace_drop(src, dst, frame, "partition")
                            continue
                        net.delivered += 1
                    try:
                        msg = decode(frame)
                    except DecodeError as e:
                        self._decode_error(src, dst, frame, e)
                        continue
                    p = parts.get(dst)
                    if p is None or not p.alive:
                        self._dead_letter(src, dst, msg, p)
                        continue
                    if trace and sn is not None:
                        self.event_log.emit(t, p.node, p.actor, "net.deliver", {"src": src, "dst": dst, "tag": tag_of(msg), "sent": sent_at})
                    handled += 1
                    effects = p.handle(msg, src, t)
                    if effects:
                        apply(p, effects)
                elif kind == _TIMER:
                    _, _, _, address, key, tid, inc = ev
                    p = parts[address]
                    if p.incarnation != inc or p.timers.get(key) != tid:
                        continue  # replaced, cancelled, or its participant crashed
                    del p.timers[key]
                    self.timers_fired += 1
                    effects = p.handle(TimerFired(key), address, t)
                    if effects:
                        apply(p, effects)
                elif kind == _TICK:
                    address, inc = ev[3], ev[4]
                    p = parts[address]
                    if p.incarnation != inc:
                        continue
                    self.ticks += 1
                    effects = p.machine.tick(t)
                    if effects:
                        apply(p, effects)
                    if p.incarnation == inc:
                        iv = _tick_interval(address, p.machine)
                        if iv is not None:
                            self._push((t + iv, next(self._seq), _TICK, address, inc))
                else:  # _CALL: bring the counters up to date for the harness first
                    self.events_processed += n - counted
                    self.messages_handled += handled
                    counted, handled = n, 0
                    ev[3]()
        finally:
            self.events_processed += n - counted
            self.messages_handled += handled
        if until is not None and n != budget and (not queue or queue[0][0] > until):
            self.now = until
        return n

    # -- effects -----------------------------------------------------------------------

    def _make_apply(self) -> Callable[[_Participant, list], None]:
        """Build ``apply(participant, effects)``, the effect interpreter.

        A closure built once per simulator, so the hot path (Send) reads its
        collaborators from cells instead of attribute lookups.
        """
        queue = self._queue
        seq = self._seq
        nodes = self._nodes
        parts = self._parts
        transmit = self.network.transmit
        emit = self.event_log.emit
        timer_ids = self._timer_ids
        trace = self._trace
        node_for = self._node_for

        def apply(p: _Participant, effects: list) -> None:
            for e in effects:
                c = e.__class__
                if c is Send:
                    to = e.to
                    q = parts.get(to)
                    dn = q.node if q is not None else (nodes.get(to) or node_for(to, p))
                    frame = encode(e.msg)
                    now = self.now
                    sn = p.node
                    times = transmit(sn, dn, now)
                    if trace:
                        self._trace_send(p.address, to, frame, len(times))
                    for t in times:
                        heappush(queue, (t, next(seq), _DELIVER, to, p.address, frame, sn, dn, now))
                elif c is SetTimer:
                    at = e.at
                    if not at >= self.now:  # in the past fires now; NaN is our bug
                        if at != at:
                            raise ValueError(f"{p.address}: SetTimer({e.key!r}) with at=NaN")
                        at = self.now
                    tid = next(timer_ids)
                    p.timers[e.key] = tid
                    heappush(queue, (at, next(seq), _TIMER, p.address, e.key, tid, p.incarnation))
                elif c is Emit:
                    emit(self.now, p.node, p.actor, e.kind, e.fields)
                elif c is CancelTimer:
                    p.timers.pop(e.key, None)
                elif p.host is not None and isinstance(e, Effect):
                    p.host(e, p.address, self)
                else:
                    raise UnhandledEffect(
                        f"{p.address} returned {type(e).__qualname__}, which the simulator cannot carry out; "
                        "add the participant with host=fn(effect, address, sim) to handle host effects"
                        if isinstance(e, Effect)
                        else f"{p.address} returned {e!r} ({type(e).__qualname__}), which is not an Effect"
                    )

        return apply

    def _node_for(self, to: str, p: _Participant) -> str:
        try:
            node, _ = _split(to)
        except ValueError as e:
            raise ValueError(f"{p.address} sent to a bad address: {e}") from None
        self._nodes[to] = node
        return node

    def _transmit(self, src: str, src_node: str, dst: str, frame: bytes) -> None:
        q = self._parts.get(dst)
        dst_node = q.node if q is not None else _split(dst)[0]
        now = self.now
        times = self.network.transmit(src_node, dst_node, now)
        if self._trace:
            self._trace_send(src, dst, frame, len(times))
        seq = self._seq
        push = heapq.heappush
        queue = self._queue
        for t in times:
            push(queue, (t, next(seq), _DELIVER, dst, src, frame, src_node, dst_node, now))

    def _push(self, ev: tuple) -> None:
        heapq.heappush(self._queue, ev)

    # -- the rare paths: dead letters, decode errors, traces --------------------------

    def _dead_letter(self, src: str, dst: str, msg: Any, p: _Participant | None) -> None:
        self.dead_letters += 1
        node, _, actor = dst.partition("/")
        reason = "no participant" if p is None else "crashed"
        self.event_log.emit(self.now, node, actor, "sim.dead_letter", {"src": src, "dst": dst, "tag": tag_of(msg), "reason": reason})

    def _decode_error(self, src: str, dst: str, frame: bytes, e: DecodeError) -> None:
        self.network.note_decode_error()
        node, _, actor = dst.partition("/")
        self.event_log.emit(self.now, node, actor, "sim.decode_error", {"src": src, "dst": dst, "error": str(e)[:200], "size": len(frame)})

    @staticmethod
    def _frame_tag(frame: bytes) -> str:
        try:
            return tag_of(decode(frame))
        except DecodeError:
            return "?"

    def _trace_send(self, src: str, dst: str, frame: bytes, copies: int) -> None:
        node, _, actor = src.partition("/")
        tag = self._frame_tag(frame)
        self.event_log.emit(self.now, node, actor, "net.send", {"src": src, "dst": dst, "tag": tag, "copies": copies})
        if copies == 0:
            self.event_log.emit(self.now, node, actor, "net.drop", {"src": src, "dst": dst, "tag": tag, "reason": self.network.last_drop, "at": "send"})

    def _trace_drop(self, src: str, dst: str, frame: bytes, reason: str) -> None:
        node, _, actor = dst.partition("/")
        self.event_log.emit(self.now, node, actor, "net.drop", {"src": src, "dst": dst, "tag": self._frame_tag(frame), "reason": reason, "at": "delivery"})

    # -- figures -------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        out = dict(self.network.counters())
        out.update(
            events_processed=self.events_processed,
            messages_handled=self.messages_handled,
            dead_letters=self.dead_letters,
            timers_fired=self.timers_fired,
            ticks=self.ticks,
        )
        return out
