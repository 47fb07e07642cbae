"""The runtime: a Node hosts named actors on pykka threads.

How this works
--------------
A :class:`Node` has a name and hosts actors addressed ``node/actor``. Each
actor is a plain :class:`Actor` object living inside a pykka ``ThreadingActor``
(the *cell*), which owns its thread and its mailbox. Keeping the two apart is
what makes supervision clean: when ``receive`` raises, the cell drops that one
message, logs and emits ``actor.crashed``, and - if the actor's restart budget
allows - builds a **new instance with the original arguments** after an
exponential backoff. Messages that arrive meanwhile wait in the cell's stash
and are delivered, in order, to the new instance; nothing queued behind the
poison message is lost. When the budget is spent the actor stops and every
watcher receives ``Terminated(address)`` (death watch).

``tell(to, msg, sender)`` never raises for the receiver's sake: a message to a
local actor goes straight into its mailbox (no encoding); a message to another
node is encoded and handed to the transport; anything undeliverable becomes a
counted dead letter (``runtime.dead_letter`` in the event log).
``ask(to, msg, timeout)`` returns a ``concurrent.futures.Future`` that
completes with the reply, fails with :class:`AskTimeout` when the node's clock
passes the deadline, or fails at once with :class:`DeadLetterError` when the
target does not exist on this node. Replies are ordinary tells to the
temporary address ``node/$ask/<id>``; the id is also the envelope's
correlation id.

Messages from other nodes (``_deliver``, possibly hostile) do not share the
actor's mailbox with local ones: they wait in *lanes*, one per sending node
(nodes that are not known peers of the transport share one), and the actor
takes its lanes round-robin, at most 64 messages per turn, behind whatever
local tells and timers arrived meanwhile; so one node's flood delays another
node's message by one round, not by the flood. The lanes of one actor hold at
most ``mailbox`` messages (default 100,000); when they are full the lane with
at least its fair share loses its newest message (a counted dead letter,
"mailbox full"). A node's order to one actor is kept. A stop comes after what
is queued, lanes included.

Bad input is counted, logged and never trusted: a ``Watch`` from another node
is accepted only for its own actors (watcher's node = sender's node, a known
peer) on ours, within ``max_watchers_per_target`` and
``max_watches_per_node``, and dropped when that node goes down; fault plans
(``SetFaults``/``ClearFaults`` to ``$sys``) from the network are obeyed only
from ``fault_control`` (a chaos run's control node; default: none), never
otherwise (this process's own code may always set them); a ``DeadLetterNotice``
goes only to known peers. Dead-letter and bad-input events and log lines are
rate-limited (``events_per_second`` per reason, then one
``runtime.events_suppressed`` with the count) and every address in them is cut
to 200 characters.

Timers come from the node's clock: one scheduler for the whole node (a thread
for :class:`RealClock`, none for :class:`VirtualClock`). A timer is bound to
the actor instance that set it: a crash, a cancel or a reset of the key means
it never fires, even if its message was already queued.

Threads: ``spawn``, ``tell``, ``ask``, ``watch`` and ``stop`` may be called
from any thread. An actor's ``__init__`` runs in the spawning thread (for the
first instance) or its own thread (restarts); ``on_start``, ``receive`` and
``on_stop`` always run in the actor's own thread. Never block inside an actor
on another actor's future.
"""

from __future__ import annotations

import itertools
import queue
import re
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future
from typing import Any, Callable

import pykka
from loguru import logger

from actors.clock import Clock, RealClock, Timer
from actors.eventlog import EventLog
from actors.messages import DeadLetterNotice, PeerDown, PeerUp, Terminated, Unwatch, Watch
from actors.supervision import RestartBudget, RestartPolicy
from protocols.core import TimerFired
from transport.base import Envelope, Transport, Undeliverable
from transport.codec import DecodeError, decode, encode
from transport.faults import ClearFaults, FaultPlan, SetFaults

__all__ = [
    "Actor",
    "AskTimeout",
    "DEFAULT_RESTART",
    "DeadLetterError",
    "Node",
    "NodeStopped",
    "PeerDownError",
]

DEFAULT_RESTART = RestartPolicy()
ASK_PREFIX = "$ask/"
ADDRESS_LOG_LIMIT = 200  # characters of an address kept in a log line or an event
DEFAULT_MAILBOX = 100_000  # remote messages queued per actor (all sending nodes together)
MAX_WATCHERS_PER_TARGET = 1_000  # remote registrations on one local actor
MAX_WATCHES_PER_NODE = 10_000  # registrations one remote node holds on this node's actors
EVENTS_PER_SECOND = 20  # dead-letter (and other bad-input) events per reason per second; the rest are summed up


class AskTimeout(TimeoutError):
    """An ask got no reply before its deadline."""


class DeadLetterError(LookupError):
    """An ask's target does not exist (or could not be reached)."""


class NodeStopped(RuntimeError):
    """The node was shut down while the operation was in flight."""


class PeerDownError(ConnectionError):
    """The node an ask was sent to went down before it replied."""


def _tag(msg: Any) -> str:
    return getattr(msg, "__fleetplane_tag__", None) or type(msg).__qualname__


# ---------------------------------------------------------------------------
# The user-facing actor base class
# ---------------------------------------------------------------------------

class Actor:
    """Base class for actors hosted by a :class:`Node`.

    Override ``receive(msg, sender)``; optionally ``on_start`` and ``on_stop``.
    ``self.node``, ``self.address`` and ``self.name`` are already set when
    ``__init__`` runs.
    """

    node: "Node"
    address: str
    name: str
    _cell: "_Cell"

    def on_start(self) -> None:
        """Runs in the actor's thread before the first message (and after each restart)."""

    def receive(self, msg: Any, sender: str | None) -> None:
        """Handle one message. ``sender`` is the sender's address (None if not an actor)."""
        logger.warning("{} got a message it does not handle: {}", self.address, _tag(msg))
        self.node._count("unhandled")

    def on_stop(self) -> None:
        """Runs in the actor's thread when it is stopped (not after a crash)."""

    # -- helpers -----------------------------------------------------------
    @property
    def now(self) -> float:
        return self.node.clock.now()

    @property
    def sender(self) -> str | None:
        """The sender of the message being handled."""
        return self._cell._sender

    def tell(self, to: str, msg: Any) -> None:
        self.node.tell(to, msg, self.address)

    def reply(self, msg: Any) -> None:
        """Tell the sender of the message being handled (e.g. answer an ask)."""
        sender = self._cell._sender
        if sender is None:
            self.node._dead_letter("<none>", msg, self.address, "reply with no sender")
        else:
            self.node.tell(sender, msg, self.address)

    def set_timer(self, key: str, delay: float, msg: Any = None) -> None:
        """After ``delay`` seconds, receive ``msg`` (default ``TimerFired(key)``) from yourself."""
        self._cell.set_timer_at(key, self.node.clock.now() + max(0.0, delay), msg)

    def set_timer_at(self, key: str, at: float, msg: Any = None) -> None:
        self._cell.set_timer_at(key, at, msg)

    def cancel_timer(self, key: str) -> None:
        self._cell.cancel_timer(key)

    def emit(self, kind: str, /, **fields: Any) -> None:
        """Write one event (time, node, actor, kind, fields) to the node's event log."""
        self.node.events.emit(self.node.clock.now(), self.node.name, self.name, kind, fields)

    def watch(self, target: str) -> None:
        """Receive ``Terminated(target)`` when ``target`` stops for good."""
        self.node.watch(self.address, target)

    def unwatch(self, target: str) -> None:
        self.node.unwatch(self.address, target)

    def subscribe_peers(self) -> None:
        """Receive ``PeerUp`` / ``PeerDown`` whenever another node comes or goes."""
        self.node.subscribe_peers(self.address)

    def stop(self) -> None:
        """Stop this actor after the messages already queued (non-blocking)."""
        self._cell.stop()


# ---------------------------------------------------------------------------
# The cell: pykka actor that hosts, supervises and restarts an Actor
# ---------------------------------------------------------------------------

class _TimerItem:
    __slots__ = ("key", "gen", "msg")

    def __init__(self, key: str, gen: int, msg: Any):
        self.key, self.gen, self.msg = key, gen, msg


class _Batch:
    """Several (msg, sender) items for one actor, queued as one mailbox entry."""

    __slots__ = ("items",)

    def __init__(self, items: list):
        self.items = items


class _Restart:
    __slots__ = ("epoch",)

    def __init__(self, epoch: int):
        self.epoch = epoch


class _Stop:
    __slots__ = ()


_STOP = _Stop()


class _Drain:
    """The cell's turn to take the next round of its remote lanes (one is ever queued)."""

    __slots__ = ()


_DRAIN = _Drain()
_QUANTUM = 64  # remote messages taken per turn, round-robin over the sending nodes


class _AnyNode:
    """The peer set of a transport that cannot say who its peers are: every node is known."""

    def __contains__(self, name: object) -> bool:
        return True


_ANY_NODE = _AnyNode()


class _CellCore:
    """Supervision, stash and timers: what both kinds of cell do the same way.

    A concrete cell provides ``_post(item)`` (queue an item for itself),
    ``_call_at(at, fn, item)`` (a cancellable timer in node-clock time),
    ``_later(delay, fn, item)`` and ``stop()``.
    """

    def _init_core(self, node: "Node", name: str, factory: type, args: tuple, kwargs: dict,
                   policy: RestartPolicy, max_stash: int) -> None:
        # Remote messages wait in lanes, one per sending node (strangers share one), served round-robin
        # (see Node._deliver); the actor's own mailbox only holds a _DRAIN token for them.
        self._lanes: dict[str, deque] = {}
        self._ring: deque[str] = deque()  # lanes with something queued, in service order
        self._queued = 0
        self._lane_lock = threading.Lock()
        self._drain_posted = False
        self._lanes_closed = False
        self._mailbox_limit = node.mailbox
        self.node = node
        self.name = name
        self.address = f"{node.name}/{name}"
        self._factory, self._args, self._kwargs = factory, args, kwargs
        self._budget = RestartBudget(policy)
        self._max_stash = max_stash
        self._stash: deque[tuple[Any, str | None]] = deque()
        self._timers: dict[str, tuple[int, Any]] = {}
        self._timer_gen = 0
        self._epoch = 0
        self._sender: str | None = None
        self._stop_reason = "stopped"
        self.behaviour: Actor | None = None
        self._receive: Callable[[Any, str | None], None] | None = None
        # First instance: built in the caller's thread so constructor errors reach spawn().
        self._pending_first: Actor | None = self._construct()

    def _construct(self) -> Actor:
        inst = self._factory.__new__(self._factory)
        inst.node, inst.address, inst.name, inst._cell = self.node, self.address, self.name, self
        inst.__init__(*self._args, **self._kwargs)
        return inst

    def _start_first(self) -> None:
        first, self._pending_first = self._pending_first, None
        self._become(first)

    def _become(self, inst: Actor) -> bool:
        self.behaviour = inst
        self._receive = inst.receive
        try:
            inst.on_start()
        except Exception as e:
            self._crash(e, None)
            return False
        return True

    def on_receive(self, item: Any) -> None:
        if item.__class__ is tuple:
            receive = self._receive
            if receive is None:
                self._stash_item(item)
                return
            msg, sender = item
            self._sender = sender
            try:
                receive(msg, sender)
            except Exception as e:
                self._crash(e, msg)
            return
        if item.__class__ is _Drain:
            self._drain_lanes()
            return
        if item.__class__ is _Batch:
            for one in item.items:
                self.on_receive(one)
            return
        if item.__class__ is _TimerItem:
            entry = self._timers.get(item.key)
            if entry is not None and entry[0] == item.gen:
                del self._timers[item.key]
                self.on_receive((item.msg, self.address))
            return
        if item.__class__ is _Restart:
            self._restart(item.epoch)
            return
        logger.warning("{}: unexpected runtime item {!r}", self.address, item)

    # -- remote lanes ----------------------------------------------------------
    def _enqueue_remote(self, lane_key: str, items: list) -> list | None:
        """Queue ``items`` (from one sending node, in order) in its lane; None if the cell is closed.

        Returns what the bounded mailbox refused. When the mailbox is full, the lane
        holding at least its fair share loses (the newest of the longest lane makes room
        for a lighter lane's message), so a flood from one node never crowds out another's.
        """
        with self._lane_lock:
            if self._lanes_closed:
                return None
            if not self._queued and not self._drain_posted and len(items) <= _QUANTUM and self._idle():
                # nothing waits anywhere: straight into the mailbox, as one turn would take them
                try:
                    self.actor_ref.tell(items[0] if len(items) == 1 else _Batch(items))  # type: ignore[attr-defined]
                    return []
                except pykka.ActorDeadError:
                    pass  # stopping: the lanes take them (handled or dead-lettered by the stop)
            lanes = self._lanes
            lane = lanes.get(lane_key)
            if lane is None:
                lane = lanes[lane_key] = deque()
                self._ring.append(lane_key)
            if len(items) <= self._mailbox_limit - self._queued:
                lane.extend(items)
                self._queued += len(items)
                refused: list = []
            else:
                refused = self._overflow(lane, items)
                if not lane:
                    del lanes[lane_key]
                    self._ring.remove(lane_key)
            post = self._queued > 0 and not self._drain_posted
            if post:
                self._drain_posted = True
        if post:
            self._post(_DRAIN)
        return refused

    def _idle(self) -> bool:  # the mailbox is empty (a concrete cell knows how to ask)
        return False

    def _overflow(self, lane: deque, items: list) -> list:
        limit, lanes, ring = self._mailbox_limit, self._lanes, self._ring
        refused = []
        for item in items:
            if self._queued < limit:
                lane.append(item)
                self._queued += 1
                continue
            if len(lane) >= limit // max(1, len(ring)):  # this lane has its share: it loses
                refused.append(item)
                continue
            victim = max((lanes[k] for k in ring), key=len)  # longer than this one, so not this one
            refused.append(victim.pop())
            lane.append(item)
        return refused

    def _drain_lanes(self) -> None:
        if self._receive is None:  # restarting: the lanes wait for the new instance (_wake_lanes)
            with self._lane_lock:
                self._drain_posted = False
            return
        out: list = []
        with self._lane_lock:
            ring, lanes = self._ring, self._lanes
            while ring and len(out) < _QUANTUM:
                key = ring.popleft()
                lane = lanes[key]
                if ring:  # others wait: one from this lane, then the next one's turn
                    if lane:
                        out.append(lane.popleft())
                else:
                    pop = lane.popleft
                    for _ in range(min(_QUANTUM - len(out), len(lane))):
                        out.append(pop())
                if lane:
                    ring.append(key)
                else:
                    del lanes[key]
            self._queued -= len(out)
            more = bool(ring)
            if not more:
                self._drain_posted = False
        on_receive = self.on_receive
        for item in out:
            on_receive(item)
        if more:  # behind whatever arrived meanwhile (local tells, timers)
            self._post(_DRAIN)

    def _wake_lanes(self) -> None:
        with self._lane_lock:
            post = self._queued > 0 and not self._drain_posted and not self._lanes_closed
            if post:
                self._drain_posted = True
        if post:
            self._post(_DRAIN)

    def _handle_lanes_at_stop(self) -> None:
        """A stop comes after what is queued: the remote lanes are handled first (then closed)."""
        if self._receive is not None:
            for item in self._close_lanes():
                self.on_receive(item)

    def _close_lanes(self) -> list:
        with self._lane_lock:
            self._lanes_closed = True
            left = [item for key in self._ring for item in self._lanes[key]]
            self._lanes.clear()
            self._ring.clear()
            self._queued = 0
        return left

    def _stash_item(self, item: tuple) -> None:
        if len(self._stash) >= self._max_stash:
            self.node._dead_letter(self.address, item[0], item[1], "stash full while restarting")
        else:
            self._stash.append(item)

    def _crash(self, exc: Exception, msg: Any) -> None:
        node = self.node
        now = node.clock.now()
        what = "on_start" if msg is None else _tag(msg)
        self._drop_timers()
        self.behaviour = None
        self._receive = None
        delay = self._budget.on_crash(now)
        node._count("crashes")
        logger.opt(exception=exc).error("actor {} crashed handling {}: {!r}", self.address, what, exc)
        node.events.emit(now, node.name, self.name, "actor.crashed", {
            "error": repr(exc)[:300], "message": what,
            "recent_crashes": self._budget.recent, "restart_in": delay,
        })
        if delay is None:
            node.events.emit(now, node.name, self.name, "actor.gave_up", {
                "crashes": self._budget.recent, "window": self._budget.policy.window})
            logger.error("actor {} spent its restart budget; stopping", self.address)
            self._stop_reason = "failed"
            self.stop()  # stop after what is already queued (stashed, then dead-lettered)
            return
        self._epoch += 1
        self._later(delay, self._post, _Restart(self._epoch))

    def _restart(self, epoch: int) -> None:
        if epoch != self._epoch or self.behaviour is not None:
            return
        node = self.node
        try:
            inst = self._construct()
        except Exception as e:
            self._crash(e, None)
            return
        node._count("restarts")
        node.events.emit(node.clock.now(), node.name, self.name, "actor.restarted",
                         {"recent_crashes": self._budget.recent, "stashed": len(self._stash)})
        if not self._become(inst):
            return
        stash = self._stash
        while stash and self._receive is not None:
            self.on_receive(stash.popleft())
        if self._receive is not None:
            self._wake_lanes()

    def _stop_behaviour(self) -> None:
        inst = self.behaviour
        if inst is not None:
            try:
                inst.on_stop()
            except Exception:
                logger.exception("on_stop of {} raised", self.address)

    def _finish_with(self, leftovers: list) -> None:
        """Dead-letter what was never handled and tell the node (the cell's last act)."""
        self._drop_timers()
        self.behaviour = None
        self._receive = None
        leftovers = list(self._stash) + leftovers + self._close_lanes()
        self._stash.clear()
        for msg, sender in leftovers:
            self.node._dead_letter(self.address, msg, sender, "actor stopped")
        self.node._cell_stopped(self, self._stop_reason)

    # -- timers --------------------------------------------------------------
    def set_timer_at(self, key: str, at: float, msg: Any) -> None:
        old = self._timers.get(key)
        if old is not None:
            old[1].cancel()
        self._timer_gen += 1
        gen = self._timer_gen
        payload = TimerFired(key) if msg is None else msg
        self._timers[key] = (gen, self._call_at(at, self._post, _TimerItem(key, gen, payload)))

    def cancel_timer(self, key: str) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old[1].cancel()

    def _drop_timers(self) -> None:
        for _, timer in self._timers.values():
            timer.cancel()
        self._timers.clear()


class _Cell(_CellCore, pykka.ThreadingActor):
    """A cell on its own pykka thread (``dispatch="thread"``, the default)."""

    use_daemon_thread = True

    @staticmethod
    def _create_actor_inbox():  # pykka's inbox hook: the C SimpleQueue puts and wakes faster
        return queue.SimpleQueue()

    def __init__(self, node: "Node", name: str, factory: type, args: tuple, kwargs: dict,
                 policy: RestartPolicy, max_stash: int):
        super().__init__()
        self._init_core(node, name, factory, args, kwargs, policy, max_stash)
        # Routable before the thread starts, so on_start may already tell itself.
        node._local[self.address] = self.actor_ref
        node._tells[self.address] = self.actor_ref.tell
        node._cells[self.address] = self

    def _idle(self) -> bool:
        return self.actor_inbox.empty()  # type: ignore[attr-defined]

    # -- lifecycle (actor thread) -------------------------------------------
    def on_start(self) -> None:
        self._start_first()

    def on_stop(self) -> None:
        self._handle_lanes_at_stop()
        self._stop_behaviour()
        self._finish()

    def on_failure(self, exc_type, exc, tb) -> None:  # a bug in the cell itself
        self._stop_reason = "failed"
        self._finish()

    def _finish(self) -> None:
        leftovers = []
        while True:  # what is still queued would be dropped silently by pykka
            try:
                env = self.actor_inbox.get_nowait()  # type: ignore[attr-defined]
            except Exception:
                break
            item = getattr(env, "message", None)
            if item.__class__ is tuple:
                leftovers.append(item)
            elif getattr(env, "reply_to", None) is not None:
                env.reply_to.set(None)
        self._finish_with(leftovers)

    def _post(self, item: Any) -> None:
        try:
            self.actor_ref.tell(item)
        except pykka.ActorDeadError:
            pass

    def _call_at(self, at: float, fn: Callable, item: Any) -> Any:
        return self.node.clock.call_at(at, fn, item)

    def _later(self, delay: float, fn: Callable, item: Any) -> None:
        self.node.clock.call_later(delay, fn, item)


class _LoopCell(_CellCore):
    """A cell run by the transport's I/O thread (``dispatch="loop"``): no thread of its own.

    A message from another node is handled on the thread that read it off the
    socket, and a reply goes out from there: no hand-over to an actor thread
    and back. The mailbox is a deque; the cell asks the loop to run it when
    the first item arrives and handles at most ``_FAIR`` items per turn, so
    actors sharing the loop (and the loop's own I/O) take turns. Timers are
    the loop's own (no clock thread). The price: a handler that blocks stalls
    the node's I/O, heartbeats included, so loop dispatch is for quick,
    non-blocking handlers (state machines). Semantics are the thread cell's:
    one message at a time, in order, supervised, timers bound to the instance.
    """

    _FAIR = 64

    def __init__(self, node: "Node", name: str, factory: type, args: tuple, kwargs: dict,
                 policy: RestartPolicy, max_stash: int, loop: Any):
        self._loop = loop
        self._mbox: deque = deque()
        self._lock = threading.Lock()
        self._scheduled = True  # the start turn below is already queued
        self._dead = False
        self._stopped = threading.Event()
        self._init_core(node, name, factory, args, kwargs, policy, max_stash)
        node._local[self.address] = self  # type: ignore[assignment]  # its own ref (tell, stop)
        node._tells[self.address] = self.tell
        node._cells[self.address] = self
        loop.call_soon(self._first_turn)

    @property
    def actor_ref(self) -> "_LoopCell":
        return self

    def _idle(self) -> bool:
        return not self._mbox

    def tell(self, item: Any) -> None:
        with self._lock:
            if self._dead:
                raise pykka.ActorDeadError(f"{self.address} is stopped")
            self._mbox.append(item)
            if self._scheduled:
                return
            self._scheduled = True
        self._loop.call_soon(self._turn)

    def stop(self, block: bool = False, timeout: float | None = None) -> bool:
        """Stop after the messages already queued; ``block`` waits for it (not on the loop itself)."""
        try:
            self.tell(_STOP)
        except pykka.ActorDeadError:
            if not block:
                return False
            raise
        if block and not self._loop.in_loop():
            return self._stopped.wait(timeout)
        return True

    def _first_turn(self) -> None:
        self._start_first()
        self._turn()

    def _turn(self) -> None:
        mbox = self._mbox
        for _ in range(self._FAIR):
            try:
                item = mbox.popleft()
            except IndexError:
                with self._lock:
                    if mbox:
                        continue
                    self._scheduled = False
                return
            if item is _STOP:
                self._shut()
                return
            self.on_receive(item)
        self._loop.call_soon(self._turn)  # more waiting: after the others have had a turn

    def _shut(self) -> None:
        self._handle_lanes_at_stop()
        with self._lock:
            self._dead = True
            leftovers = [i for i in self._mbox if i.__class__ is tuple]
            leftovers += [one for i in self._mbox if i.__class__ is _Batch for one in i.items]
            self._mbox.clear()
        self._stop_behaviour()
        self._finish_with(leftovers)
        self._stopped.set()

    def _post(self, item: Any) -> None:
        try:
            self.tell(item)
        except pykka.ActorDeadError:
            pass

    def _call_at(self, at: float, fn: Callable, item: Any) -> Any:
        return self._loop.call_later(at - self.node.clock.now(), fn, item)

    def _later(self, delay: float, fn: Callable, item: Any) -> None:
        self._loop.call_later(delay, fn, item)


# ---------------------------------------------------------------------------
# The node
# ---------------------------------------------------------------------------

class Node:
    """A named host of actors, with one clock, one event log and one transport."""

    def __init__(self, name: str, *, transport: Transport | None = None, clock: Clock | None = None,
                 event_log: EventLog | None = None, restart: RestartPolicy = DEFAULT_RESTART,
                 max_stash: int = 10_000, trace_asks: bool = False, dispatch: str = "thread",
                 mailbox: int = DEFAULT_MAILBOX, fault_control: str | None = None,
                 max_watchers_per_target: int = MAX_WATCHERS_PER_TARGET,
                 max_watches_per_node: int = MAX_WATCHES_PER_NODE, events_per_second: int = EVENTS_PER_SECOND):
        if not isinstance(name, str) or not name or "/" in name or name.startswith("$"):
            raise ValueError(f"node name must be a non-empty string without '/' (and not starting with '$'), got {name!r}")
        for what, v in (("mailbox", mailbox), ("max_watchers_per_target", max_watchers_per_target),
                        ("max_watches_per_node", max_watches_per_node), ("events_per_second", events_per_second)):
            if v.__class__ is not int or v < 1:
                raise ValueError(f"{what} must be a positive int, got {v!r}")
        if fault_control is not None and (not isinstance(fault_control, str) or not fault_control or "/" in fault_control):
            raise ValueError(f"fault_control must be a node name (or None: fault hooks closed), got {fault_control!r}")
        self.name = name
        self.mailbox = mailbox
        self.fault_control = fault_control  # the one node whose SetFaults/ClearFaults are obeyed (chaos runs)
        self.max_watchers_per_target = max_watchers_per_target
        self.max_watches_per_node = max_watches_per_node
        self.dispatch = self._check_dispatch(dispatch, transport)
        self._own_clock = clock is None
        self.clock: Clock = clock if clock is not None else RealClock(name)
        self.events = event_log if event_log is not None else EventLog(maxlen=10_000)
        self.restart_policy = restart
        self.max_stash = max_stash
        self.trace_asks = trace_asks  # runtime.ask / runtime.ask_end events, for the requests-answered checker
        self._local: dict[str, pykka.ActorRef] = {}
        self._tells: dict[str, Callable[[Any], None]] = {}  # the hot path of tell()
        self._lock = threading.RLock()
        self._cells: dict[str, _CellCore] = {}  # address -> cell (remote messages go to its lanes)
        self._watchers: dict[str, set[str]] = {}
        self._watches_of: dict[str, set[tuple[str, str]]] = {}  # remote node -> its (target, watcher) registrations
        self._known_peers: Any = _ANY_NODE  # refreshed from the transport on every peer change
        self._peer_keys: set[str] = set()  # nodes with per-peer counters (bounded)
        self._rate = _RateLimit(self, events_per_second)
        self._remote_watches: dict[str, set[str]] = {}  # remote target -> local watchers
        self._peer_subscribers: set[str] = set()
        self._asks: dict[int, tuple[Future, Timer, str]] = {}  # id -> (future, deadline, target node)
        self._ask_ids = itertools.count(1)
        self._auto_names = itertools.count(1)
        self._counts: Counter[str] = Counter()
        self._closed = False
        self._sys = f"{name}/$sys"
        self._ask_prefix = f"{name}/{ASK_PREFIX}"  # + id: an ask's reply address
        self.transport = transport
        if transport is not None:
            transport.start(name, self._deliver, self._on_peer, self._transport_event)
            self._refresh_peers()

    def __repr__(self) -> str:
        return f"<Node {self.name} actors={len(self._local)}>"

    def __enter__(self) -> "Node":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    # -- actors ----------------------------------------------------------------
    @staticmethod
    def _check_dispatch(dispatch: Any, transport: Any) -> str:
        if dispatch not in ("thread", "loop"):
            raise ValueError(f"dispatch must be 'thread' or 'loop', got {dispatch!r}")
        if dispatch == "loop" and not callable(getattr(transport, "call_soon", None)):
            raise ValueError("dispatch='loop' runs actors on the transport's I/O thread: it needs a transport "
                             f"with an event loop (ZmqTransport), not {type(transport).__name__}")
        return dispatch

    def spawn(self, actor_cls: type, *args: Any, name: str | None = None,
              restart: RestartPolicy | None = None, dispatch: str | None = None, **kwargs: Any) -> str:
        """Start ``actor_cls(*args, **kwargs)`` as ``node/name``; returns its address.

        ``dispatch`` (default: the node's): ``"thread"`` gives the actor a pykka
        thread of its own; ``"loop"`` runs it on the transport's I/O thread (for
        quick, non-blocking handlers: see :class:`_LoopCell`).
        Raises ValueError for a bad or duplicate name, and whatever the
        constructor raises (it runs in this thread).
        """
        dispatch = self.dispatch if dispatch is None else self._check_dispatch(dispatch, self.transport)
        if not (isinstance(actor_cls, type) and issubclass(actor_cls, Actor)):
            raise TypeError(f"spawn() needs an Actor subclass, got {actor_cls!r}")
        if self._closed:
            raise NodeStopped(f"node {self.name} is shut down")
        if name is None:
            name = f"{actor_cls.__name__.lower()}-{next(self._auto_names)}"
        if not isinstance(name, str) or not name or "/" in name or name.startswith("$"):
            raise ValueError(f"actor name must be a non-empty string without '/' (and not starting with '$'), got {name!r}")
        address = f"{self.name}/{name}"
        with self._lock:
            if address in self._local:
                raise ValueError(f"an actor named {address!r} is already running")
            self._local[address] = None  # type: ignore[assignment]  # reserve the name
        try:
            if dispatch == "loop":
                _LoopCell(self, name, actor_cls, args, kwargs, restart or self.restart_policy, self.max_stash,
                          self.transport)
            else:
                _Cell.start(self, name, actor_cls, args, kwargs, restart or self.restart_policy, self.max_stash)
        except BaseException:
            with self._lock:
                self._local.pop(address, None)
            raise
        self.events.emit(self.clock.now(), self.name, name, "actor.started", {"class": actor_cls.__qualname__})
        return address

    def actors(self) -> list[str]:
        with self._lock:
            return sorted(a for a, r in self._local.items() if r is not None)

    def stop(self, address: str, timeout: float = 5.0) -> bool:
        """Stop a local actor after its queued messages; False if there is none."""
        ref = self._local.get(address)
        if ref is None:
            return False
        try:
            return bool(ref.stop(block=True, timeout=timeout))
        except pykka.ActorDeadError:
            return False

    def _cell_stopped(self, cell: _CellCore, reason: str) -> None:
        with self._lock:
            if self._local.get(cell.address) is cell.actor_ref:
                del self._local[cell.address]
                self._tells.pop(cell.address, None)
            if self._cells.get(cell.address) is cell:
                del self._cells[cell.address]
            watchers = self._watchers.pop(cell.address, ())
            for w in watchers:
                self._unindex_watch(cell.address, w)
        if isinstance(cell, _Cell):
            pykka.ActorRegistry.unregister(cell.actor_ref)
        self.events.emit(self.clock.now(), self.name, cell.name, "actor.stopped", {"reason": reason})
        for w in sorted(watchers):
            self.tell(w, Terminated(cell.address, reason))

    # -- messaging ---------------------------------------------------------------
    def tell(self, to: str, msg: Any, sender: str | None = None) -> None:
        """Deliver ``msg`` to ``to``; never raises for the receiver's sake."""
        tell = self._tells.get(to)
        if tell is not None:
            try:
                tell((msg, sender))
                return
            except pykka.ActorDeadError:
                pass
        self._tell_slow(to, msg, sender)

    def _tell_slow(self, to: str, msg: Any, sender: str | None) -> None:
        node, _, actor = to.partition("/") if isinstance(to, str) else ("", "", "")
        if not node or not actor:
            self._dead_letter(to, msg, sender, "malformed address")
            return
        if node == self.name:
            if actor.startswith(ASK_PREFIX):
                self._complete_ask(to, msg, sender)
            elif actor == "$sys":
                self._system(msg, sender, remote=False)
            else:
                self._dead_letter(to, msg, sender, "no such actor")
            return
        if self.transport is None:
            self._dead_letter(to, msg, sender, "no transport to other nodes")
            return
        self._send_remote(to, msg, sender, _ask_id(to) or _ask_id(sender))

    def _send_remote(self, to: str, msg: Any, sender: str | None, corr: int) -> None:
        payload = encode(msg)  # EncodeError is our bug: loud
        try:
            # Anonymous senders (code outside any actor) travel as this node's $sys address.
            self.transport.send(Envelope(to, sender or self._sys, corr, payload))  # type: ignore[union-attr]
        except Undeliverable as e:
            self._dead_letter(to, msg, sender, str(e) or "node unreachable")
        else:
            self._counts["sent_remote"] += 1

    def _deliver(self, batch: list[Envelope]) -> None:
        """Transport callback: frames from other nodes (possibly hostile), in arrival order.

        Messages for a local actor go into its lane for the sending node (strangers, nodes
        that are not known peers, share one lane), in order; the actor takes its lanes in
        turn (:meth:`_CellCore._drain_lanes`), so one node's flood delays another node's
        message by one round at most. Lanes are bounded per actor (``mailbox``); what does
        not fit is a counted dead letter ("mailbox full").
        """
        groups: dict[tuple[str, str], list] = {}
        cells = self._cells
        known = self._known_peers
        ask_prefix = self._ask_prefix
        for env in batch:
            to = getattr(env, "to", None)
            if not isinstance(to, str) or to.partition("/")[0] != self.name:
                self._reject(env, f"misrouted envelope (to={to!r:.60})")
                continue
            try:
                msg = decode(env.payload)
            except DecodeError as e:
                self._reject(env, str(e))
                continue
            sender = env.sender if isinstance(env.sender, str) and env.sender else None
            if to in cells:
                lane = sender.partition("/")[0] if sender else ""
                key = (to, lane if lane in known and lane != self.name else "")
                group = groups.get(key)
                if group is None:
                    group = groups[key] = []
                group.append((msg, sender))
            elif to.startswith(ask_prefix):  # the reply to one of our asks
                self._complete_ask(to, msg, sender)
            elif to == self._sys:
                self._system(msg, sender, remote=True)
            else:
                self._tell_slow(to, msg, sender)  # dead letters
        self._counts["received_remote"] += len(batch)
        for (to, _), items in groups.items():
            cell = cells.get(to)
            refused = cell._enqueue_remote(_, items) if cell is not None else None
            if refused is None:  # stopped meanwhile
                for msg, sender in items:
                    self._tell_slow(to, msg, sender)
                continue
            if refused:
                self._counts["mailbox_full"] += len(refused)
                for msg, sender in refused:
                    self._dead_letter(to, msg, sender, "mailbox full")

    def _reject(self, env: Any, error: str) -> None:
        self._counts["decode_errors"] += 1
        sender = getattr(env, "sender", None)
        peer = node_name_of(sender)
        if peer:
            self._peer_count(peer, "decode_errors")
        if self._rate.allow("decode_error"):
            logger.warning("node {}: dropped a frame from {}: {}", self.name, _cut(sender), error[:300])
            self.events.emit(self.clock.now(), self.name, "$transport", "runtime.decode_error",
                             {"from": _cut(sender), "error": error[:300]})

    def _peer_count(self, peer: str, what: str, n: int = 1) -> None:
        """Count ``what`` for ``peer``: known peers always, others while fewer than 1,024 names have counters."""
        if peer not in self._peer_keys:
            if len(self._peer_keys) >= 1024 and not self._known(peer):
                peer = "(other)"
            else:
                self._peer_keys.add(peer)
        self._counts[f"peer.{peer}.{what}"] += n

    def _dead_letter(self, to: Any, msg: Any, sender: str | None, reason: str) -> None:
        if isinstance(msg, DeadLetterNotice):  # a notice about a dead letter that cannot travel
            self._counts["undeliverable_notices"] += 1
            return
        self._counts["dead_letters"] += 1
        for n in {node_name_of(to), node_name_of(sender)} - {self.name, ""}:
            self._peer_count(n, "dead_letters")
        if self._rate.allow("dead_letter: " + reason):
            logger.debug("node {}: dead letter to {}: {} ({})", self.name, _cut(to), _tag(msg), reason[:300])
            self.events.emit(self.clock.now(), self.name, "$deadletters", "runtime.dead_letter",
                             {"to": _cut(to), "from": _cut(sender), "message": _tag(msg), "reason": reason[:300]})
        sender_node = node_name_of(sender)
        if sender_node == self.name:
            self._end_ask(_ask_id(sender), "dead_letter", exc=DeadLetterError(f"ask to {_cut(to)}: {reason}"))
        elif sender_node and self.transport is not None and sender_node in self._known_peers:
            # Tell the sender's node (a known peer), so a remote ask fails now instead of timing out.
            self.tell(f"{sender_node}/$sys", DeadLetterNotice(_cut(to), _cut(sender) or "", _tag(msg), reason[:300]),
                      self._sys)
        elif sender_node and sender_node != self.name:
            self._counts["undeliverable_notices"] += 1  # no route back to a stranger: the notice is not even built

    def _end_ask(self, cid: int, outcome: str, result: Any = None, exc: BaseException | None = None) -> bool:
        """Settle ask ``cid`` once (reply, timeout, dead_letter, peer_down, node_stopped)."""
        entry = self._asks.pop(cid, None) if cid else None
        if entry is None:
            return False
        _settle(entry[0], result, exc)  # first: the waiter wakes while we tidy up
        entry[1].cancel()
        if self.trace_asks:
            self.events.emit(self.clock.now(), self.name, "$ask", "runtime.ask_end", {"id": cid, "outcome": outcome})
        return True

    # -- ask -----------------------------------------------------------------------
    def ask(self, to: str, msg: Any, timeout: float = 5.0) -> Future:
        """Send ``msg`` and return a Future for the reply (see the module docstring)."""
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"ask timeout must be a positive number of seconds, got {timeout!r}")
        cid = next(self._ask_ids)
        fut: Future = Future()
        timer = self.clock.call_later(timeout, self._expire_ask, cid, to, timeout)
        tnode, _, actor = to.partition("/") if isinstance(to, str) else ("", "", "")
        self._asks[cid] = (fut, timer, tnode)
        if self.trace_asks:
            self.events.emit(self.clock.now(), self.name, "$ask", "runtime.ask",
                             {"id": cid, "to": to, "message": _tag(msg), "deadline": timer.when})
        sender = self._ask_prefix + str(cid)
        if tnode == self.name or not actor or self.transport is None:
            self.tell(to, msg, sender)
        else:  # to another node: what _tell_slow would do, without parsing what we know
            self._send_remote(to, msg, sender, cid)
        return fut

    def _complete_ask(self, to: str, msg: Any, sender: str | None) -> None:
        if not self._end_ask(_ask_id(to), "reply", result=msg):
            self._counts["late_replies"] += 1
            self._dead_letter(to, msg, sender, "reply to an ask that already ended")

    def _expire_ask(self, cid: int, to: str, timeout: float) -> None:
        if self._end_ask(cid, "timeout", exc=AskTimeout(f"ask to {to} got no reply within {timeout}s")):
            self._counts["ask_timeouts"] += 1

    # -- death watch ------------------------------------------------------------------
    def watch(self, watcher: str, target: str) -> None:
        """``watcher`` gets ``Terminated(target)`` when ``target`` stops (at once if it is not running).

        For this node's own code; a ``Watch`` from another node goes through :meth:`_remote_watch`.
        """
        tnode = node_name_of(target)
        if tnode != self.name:
            with self._lock:
                self._remote_watches.setdefault(target, set()).add(watcher)
            self.tell(f"{tnode}/$sys", Watch(target, watcher), watcher)
            return
        with self._lock:
            if self._local.get(target) is not None:
                self._watchers.setdefault(target, set()).add(watcher)
                self._index_watch(target, watcher)
                return
        self.tell(watcher, Terminated(target, "not running"))

    def unwatch(self, watcher: str, target: str) -> None:
        tnode = node_name_of(target)
        if tnode != self.name:
            with self._lock:
                self._remote_watches.get(target, set()).discard(watcher)
            self.tell(f"{tnode}/$sys", Unwatch(target, watcher), watcher)
            return
        with self._lock:
            self._watchers.get(target, set()).discard(watcher)
            self._unindex_watch(target, watcher)

    def _index_watch(self, target: str, watcher: str) -> None:  # under self._lock
        wnode = node_name_of(watcher)
        if wnode != self.name:
            self._watches_of.setdefault(wnode, set()).add((target, watcher))

    def _unindex_watch(self, target: str, watcher: str) -> None:  # under self._lock
        wnode = node_name_of(watcher)
        regs = self._watches_of.get(wnode)
        if regs is not None:
            regs.discard((target, watcher))
            if not regs:
                del self._watches_of[wnode]

    def _remote_watch(self, msg: Any, sender: str | None) -> None:
        """A ``Watch``/``Unwatch`` from another node: only for its own actors, on ours, within the caps."""
        target, watcher = msg.target, msg.watcher
        wnode, snode = node_name_of(watcher), node_name_of(sender)
        if not wnode or wnode != snode or "/" not in watcher:
            why = "the watcher is not on the sending node"
        elif wnode == self.name or not self._known(wnode):
            why = "the sending node is not a known peer"
        elif node_name_of(target) != self.name:
            why = "the target is not on this node"
        elif isinstance(msg, Unwatch):
            with self._lock:
                self._watchers.get(target, set()).discard(watcher)
                self._unindex_watch(target, watcher)
            return
        else:
            with self._lock:
                running = self._local.get(target) is not None
                watchers = self._watchers.get(target)
                if not running or (watchers is not None and watcher in watchers):
                    why = ""
                elif watchers is not None and len(watchers) >= self.max_watchers_per_target:
                    why = f"{target[:ADDRESS_LOG_LIMIT]} has {len(watchers)} watchers (the cap)"
                elif len(self._watches_of.get(wnode, ())) >= self.max_watches_per_node:
                    why = f"node {wnode} holds {self.max_watches_per_node} watches here (the cap)"
                else:
                    self._watchers.setdefault(target, set()).add(watcher)
                    self._index_watch(target, watcher)
                    return
            if not why:
                if not running:
                    self.tell(watcher, Terminated(target, "not running"))
                return
        self._counts["watch_refused"] += 1
        if snode:
            self._peer_count(snode, "watch_refused")
        if self._rate.allow("watch_refused"):
            logger.warning("node {}: refused {} from {} (watcher {}, target {}): {}", self.name, _tag(msg),
                           _cut(sender), _cut(watcher), _cut(target), why)
            self.events.emit(self.clock.now(), self.name, "$sys", "runtime.watch_refused",
                             {"from": _cut(sender), "watcher": _cut(watcher), "target": _cut(target),
                              "message": _tag(msg), "reason": why})

    def _system(self, msg: Any, sender: str | None, remote: bool = False) -> None:
        """A message to ``<node>/$sys``: from this process (``remote`` False) or from another node."""
        if isinstance(msg, (Watch, Unwatch)):
            if not (isinstance(msg.target, str) and isinstance(msg.watcher, str)):
                self._dead_letter(self._sys, msg, sender, "malformed watch")
            elif remote:
                self._remote_watch(msg, sender)
            elif isinstance(msg, Watch):
                self.watch(msg.watcher, msg.target)
            else:
                self.unwatch(msg.watcher, msg.target)
        elif isinstance(msg, DeadLetterNotice):
            self._counts["remote_dead_letters"] += 1
            reporter = node_name_of(sender)
            if self._rate.allow("remote_dead_letter"):
                self.events.emit(self.clock.now(), self.name, "$deadletters", "runtime.remote_dead_letter",
                                 {"to": _cut(msg.to), "from": _cut(msg.sender), "message": _cut(msg.message),
                                  "reason": _cut(msg.reason, 300), "reported_by": _cut(reporter)})
            cid = _ask_id(msg.sender) if node_name_of(msg.sender) == self.name else 0
            entry = self._asks.get(cid) if cid else None
            # only the node the ask went to can fail it (a remote notice about someone else's ask is ignored)
            if entry is not None and (not remote or entry[2] == reporter):
                self._end_ask(cid, "dead_letter", exc=DeadLetterError(
                    f"ask to {_cut(msg.to)}: {_cut(msg.reason, 300)} (reported by {_cut(reporter)})"))
        elif isinstance(msg, (SetFaults, ClearFaults)):
            if remote and self.fault_control is None:
                self._refuse_control(msg, sender, "fault control is off (the node was not started for a chaos run)")
                return
            if remote and node_name_of(sender) != self.fault_control:
                self._refuse_control(msg, sender, f"only {self.fault_control} may set this node's faults")
                return
            set_faults = getattr(self.transport, "set_faults", None)
            if set_faults is None:
                self._dead_letter(f"{self.name}/$sys", msg, sender, "this transport has no fault hooks")
            else:
                set_faults(FaultPlan.from_message(msg) if isinstance(msg, SetFaults) else FaultPlan())
        else:
            self._dead_letter(f"{self.name}/$sys", msg, sender, "not a system message")

    def _refuse_control(self, msg: Any, sender: str | None, why: str) -> None:
        self._counts["faults_refused"] += 1
        peer = node_name_of(sender)
        if peer:
            self._peer_count(peer, "faults_refused")
        if self._rate.allow("faults_refused"):
            logger.warning("node {}: refused {} from {}: {}", self.name, _tag(msg), _cut(sender), why)
            self.events.emit(self.clock.now(), self.name, "$sys", "runtime.faults_refused",
                             {"from": _cut(sender), "message": _tag(msg), "reason": why})

    def _known(self, node: str) -> bool:
        """Is ``node`` a peer of this node's transport (always, for a transport that cannot say)?"""
        peers = getattr(self.transport, "peers", None)
        if peers is None:
            return True
        try:
            return node in peers()
        except Exception:
            return False

    def _refresh_peers(self) -> None:
        peers = getattr(self.transport, "peers", None)
        if peers is None:
            self._known_peers = _ANY_NODE
            return
        try:
            self._known_peers = frozenset(peers())
        except Exception:
            logger.exception("node {}: cannot read the transport's peers", self.name)

    # -- peers (transport callbacks, run on the transport's thread) -------------------------
    def subscribe_peers(self, address: str) -> None:
        """``address`` receives ``PeerUp`` / ``PeerDown`` for every peer change from now on."""
        with self._lock:
            self._peer_subscribers.add(address)

    def unsubscribe_peers(self, address: str) -> None:
        with self._lock:
            self._peer_subscribers.discard(address)

    def _transport_event(self, kind: str, fields: dict) -> None:
        self.events.emit(self.clock.now(), self.name, "$transport", kind, fields)

    def _on_peer(self, change: Any) -> None:
        peer = change.peer
        self._refresh_peers()
        if change.state.value == "down":
            self._counts["peer_down"] += 1
            note: Any = PeerDown(peer, change.incarnation, change.reason)
            for cid, entry in list(self._asks.items()):
                if entry[2] == peer:
                    self._end_ask(cid, "peer_down", exc=PeerDownError(f"node {peer} went down ({change.reason}) before replying"))
            with self._lock:
                gone = {t: w for t, w in self._remote_watches.items() if node_name_of(t) == peer}
                for t in gone:
                    del self._remote_watches[t]
                # its registrations on our actors go too: a new incarnation watches afresh
                regs = self._watches_of.pop(peer, ())
                for target, w in regs:
                    ws = self._watchers.get(target)
                    if ws is not None:
                        ws.discard(w)
            if regs:
                self._counts["watches_dropped"] += len(regs)
                self.events.emit(self.clock.now(), self.name, "$sys", "runtime.watches_dropped",
                                 {"peer": _cut(peer), "watches": len(regs), "reason": change.reason})
            for target, watchers in sorted(gone.items()):
                for w in sorted(watchers):
                    self.tell(w, Terminated(target, "peer down"))
        else:
            self._counts["peer_up"] += 1
            note = PeerUp(peer, change.incarnation)
        with self._lock:
            subscribers = sorted(self._peer_subscribers)
        for address in subscribers:
            self.tell(address, note)

    # -- observability and shutdown -------------------------------------------------------
    def _count(self, key: str, n: int = 1) -> None:
        self._counts[key] += n

    @property
    def dead_letters(self) -> int:
        return self._counts["dead_letters"]

    def counters(self) -> dict:
        out = dict(self._counts)
        out["actors"] = len(self.actors())
        out["pending_asks"] = len(self._asks)
        if self.transport is not None:
            for k, v in self.transport.counters().items():
                out[f"transport.{k}"] = v
        return out

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop every actor, fail pending asks, detach the transport. Idempotent.

        ``timeout`` is for all the actors together. One that has not stopped by then (its
        handler blocks) is left behind on its daemon thread: logged, ``actor.stop_timeout``,
        counted as ``stop_timeouts``; the rest of the shutdown goes on, so the transport is
        always closed and a node process always exits.
        """
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout
        for address in self.actors():
            try:
                self.stop(address, timeout=max(0.05, deadline - time.monotonic()))
            except pykka.Timeout:
                pass
            except Exception:
                logger.exception("node {}: stopping {} raised", self.name, address)
            if self._local.get(address) is not None:
                self._counts["stop_timeouts"] += 1
                logger.error("node {}: actor {} did not stop within the shutdown's {} s; left behind",
                             self.name, address, timeout)
                self.events.emit(self.clock.now(), self.name, address.partition("/")[2], "actor.stop_timeout",
                                 {"timeout": timeout})
        for cid in list(self._asks):
            self._end_ask(cid, "node_stopped", exc=NodeStopped(f"node {self.name} shut down before the reply"))
        self._rate.flush_all()
        if self.transport is not None:
            self.transport.close()
        if self._own_clock:
            self.clock.close()
        self.events.flush()


def _cut(value: Any, limit: int = ADDRESS_LOG_LIMIT) -> Any:
    """``value`` for a log line or an event: a string cut to ``limit`` characters (None stays None)."""
    if value is None:
        return None
    if not isinstance(value, str):
        value = repr(value)
    return value if len(value) <= limit else value[:limit] + f"...({len(value)} chars)"


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


class _RateLimit:
    """At most ``per_second`` events per reason per second; the rest are counted and summed up.

    A reason over its budget gets one ``runtime.events_suppressed`` event when its second
    ends (``suppressed``: how many were left out), and at shutdown. Reasons are keyed with
    quoted names blanked out, and at most 64 keys are kept (then "(other)").
    """

    def __init__(self, node: "Node", per_second: int) -> None:
        self.node = node
        self.per_second = per_second
        self._lock = threading.Lock()
        self._keys: dict[str, list] = {}  # key -> [window start, allowed, suppressed]

    def allow(self, reason: str) -> bool:
        key = _QUOTED.sub("'*'", reason[:120]) if ("'" in reason or '"' in reason) else reason[:120]
        now = self.node.clock.now()
        with self._lock:
            st = self._keys.get(key)
            if st is None:
                if len(self._keys) >= 64:
                    key = "(other)"
                    st = self._keys.get(key)
                if st is None:
                    st = self._keys[key] = [now, 0, 0]
            if now - st[0] >= 1.0 or now < st[0]:
                st[0], st[1] = now, 0
            if st[1] < self.per_second:
                st[1] += 1
                return True
            st[2] += 1
            first = st[2] == 1
            self.node._counts["events_suppressed"] += 1
        if first:
            try:
                self.node.clock.call_later(max(0.0, st[0] + 1.0 - now), self._flush, key)
            except Exception:  # the clock is closed (shutting down): flush_all says it
                pass
        return False

    def _flush(self, key: str) -> None:
        with self._lock:
            st = self._keys.get(key)
            n = st[2] if st is not None else 0
            if n:
                st[2] = 0
        if n:
            node = self.node
            node.events.emit(node.clock.now(), node.name, "$deadletters" if key.startswith("dead_letter") else "$sys",
                             "runtime.events_suppressed", {"reason": key, "suppressed": n, "per_second": self.per_second})

    def flush_all(self) -> None:
        with self._lock:
            keys = [k for k, st in self._keys.items() if st[2]]
        for k in keys:
            self._flush(k)


def node_name_of(address: Any) -> str:
    return address.partition("/")[0] if isinstance(address, str) else ""


def _ask_id(address: Any) -> int:
    if not isinstance(address, str):
        return 0
    i = address.find("/" + ASK_PREFIX)
    if i < 0:
        return 0
    try:
        return int(address[i + 1 + len(ASK_PREFIX):])
    except ValueError:
        return 0


def _settle(fut: Future, result: Any = None, exc: BaseException | None = None) -> None:
    try:
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
    except Exception:  # already settled (a race between reply and timeout)
        pass
