"""StateMachineActor: the thin adapter between a protocol and the runtime.

How this works
--------------
The actor owns the clock, the sockets and the timers; the state machine owns
the decisions. For every message the actor calls
``machine.handle(msg, sender, now)`` and carries out the returned effects in
list order:

* ``Send(to, msg)``       -> ``node.tell(to, msg, sender=self.address)``
* ``SetTimer(key, at)``   -> a node timer delivering ``TimerFired(key)``
* ``CancelTimer(key)``    -> the timer will not fire
* ``Emit(kind, fields)``  -> one line in the node's event log
* anything else           -> ``on_effect(effect, actor)`` if the embedder gave
  one (e.g. run a boot stage, lower the power); with none, the actor raises
  :class:`UnhandledEffect`, which is a bug and so a crash (supervised).

``before_send``, if given, is called before each ``Send`` leaves: a durable
store's ``sync``, so that whatever earlier effects wrote (``Persist``) is on
disk before any message that may depend on it (one sync covers all the writes
of a handler: group commit). On the transport's I/O thread (``dispatch =
"loop"``) the group is wider: the sends of every message the actor handles in
one turn of the loop wait, in order, until the turn is over, then one
``before_send`` covers them all and they leave (:meth:`_flush`, queued with
``call_soon``). Under load a turn holds many messages, so a burst costs a few
``fsync`` calls, not one per message; a send is only ever later than before,
never before the sync that covers what preceded it.

It calls ``machine.tick(now)`` once at start and then every
``machine.tick_interval`` seconds when that is set.

Pass a *factory* (a class or a zero-argument callable) rather than a built
machine: on a supervised restart the factory runs again and the new instance
starts from a clean state, exactly as the first one did.
"""

from __future__ import annotations

from typing import Any, Callable

from actors.node import Actor
from protocols.core import CancelTimer, Effect, Emit, Send, SetTimer, StateMachine, UnhandledEffect

__all__ = ["StateMachineActor", "UnhandledEffect"]

_TICK = "$tick"


class _Tick:
    __slots__ = ()


_TICK_MSG = _Tick()


class StateMachineActor(Actor):
    def __init__(self, machine: Callable[[], StateMachine] | StateMachine,
                 on_effect: Callable[[Effect, "StateMachineActor"], None] | None = None,
                 before_send: Callable[[], None] | None = None):
        is_factory = isinstance(machine, type) or (callable(machine) and not hasattr(machine, "handle"))
        self.machine: StateMachine = machine() if is_factory else machine  # type: ignore[operator,assignment]
        self.on_effect = on_effect
        self.before_send = before_send
        self._tick_interval: float | None = getattr(self.machine, "tick_interval", None)
        self._in_loop: Callable[[], bool] | None = None  # the transport's in_loop (loop dispatch), if it has one
        self._held: list[Send] = []  # sends waiting for the end of the loop's turn (group commit)

    def on_start(self) -> None:
        if self.before_send is not None:
            self._in_loop = getattr(self.node.transport, "in_loop", None)
        self._do_tick()

    def _do_tick(self) -> None:
        now = self.now
        if self._tick_interval:
            self.set_timer_at(_TICK, now + self._tick_interval, _TICK_MSG)
        self.perform(self.machine.tick(now))

    def receive(self, msg: Any, sender: str | None) -> None:
        if msg is _TICK_MSG:
            self._do_tick()
            return
        self.perform(self.machine.handle(msg, sender, self.now))

    def perform(self, effects: list[Effect] | None) -> None:
        """Carry out effects in order."""
        if not effects:
            return
        node = self.node
        for eff in effects:
            cls = eff.__class__
            if cls is Send:
                if self.before_send is not None:
                    in_loop = self._in_loop
                    if in_loop is not None and in_loop():
                        if not self._held:
                            node.transport.call_soon(self._flush)
                        self._held.append(eff)
                        continue
                    self._flush()  # (sends held earlier go first)
                    self.before_send()
                node.tell(eff.to, eff.msg, self.address)
            elif cls is SetTimer:
                self.set_timer_at(eff.key, eff.at)
            elif cls is CancelTimer:
                self.cancel_timer(eff.key)
            elif cls is Emit:
                node.events.emit(node.clock.now(), node.name, self.name, eff.kind, eff.fields)
            elif self.on_effect is not None:
                self.on_effect(eff, self)
            else:
                raise UnhandledEffect(f"{self.address}: no handler for effect {cls.__qualname__} "
                                      f"(pass on_effect= to StateMachineActor)")

    def _flush(self) -> None:
        """The end of a loop turn: one ``before_send`` (sync), then the held sends, in order."""
        held, self._held = self._held, []
        if not held:
            return
        assert self.before_send is not None
        self.before_send()  # raises (a disk error): the held sends never leave, as a failed sync stops a send
        node = self.node
        for eff in held:
            node.tell(eff.to, eff.msg, self.address)
