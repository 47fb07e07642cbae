"""The sans-I/O contract every protocol participant follows.

How this works
--------------
A participant is a plain object with two entry points::

    handle(msg, sender, now) -> list[Effect]   # a message arrived from `sender`
    tick(now) -> list[Effect]                  # time passed

It never performs I/O; it returns *effects*, plain data that its host carries
out in list order: :class:`Send` a message, :class:`SetTimer` /
:class:`CancelTimer`, :class:`Emit` an event for the event log. Roles add
host effects of their own (subclasses of :class:`Effect`, e.g. ``RunStage``)
that the host hands to whatever the embedder plugged in.

Timers: ``SetTimer(key, at)`` asks the host to deliver ``TimerFired(key)``
through ``handle`` (sender: the participant's own address) once the clock
reaches ``at``. Setting a key again replaces the earlier timer; a cancelled or
replaced timer never fires. ``tick(now)`` is called once when the participant
starts and then every ``tick_interval`` seconds if the participant sets that
attribute (``None``: no periodic ticks).

Hosts: the ``StateMachineActor`` (real threads and sockets), the deterministic
simulator (virtual time, one thread) and unit tests (call ``handle`` directly).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import attrs

from transport.codec import message

__all__ = [
    "CancelTimer",
    "Effect",
    "Emit",
    "Persist",
    "Send",
    "SetTimer",
    "StateMachine",
    "TimerFired",
    "UnhandledEffect",
]


class Effect:
    """Base class of every effect a state machine returns. Do not instantiate."""

    __slots__ = ()


@attrs.frozen(slots=True)
class Send(Effect):
    """Send ``msg`` (a registered message) to the actor at address ``to``."""

    to: str
    msg: Any


@attrs.frozen(slots=True)
class SetTimer(Effect):
    """Deliver ``TimerFired(key)`` at absolute time ``at`` (replaces a timer of the same key)."""

    key: str
    at: float


@attrs.frozen(slots=True)
class CancelTimer(Effect):
    """Forget the timer ``key``; it will not fire (a no-op if none is set)."""

    key: str


@attrs.frozen(slots=True)
class Emit(Effect):
    """A protocol decision worth recording: one line of the event log.

    The host adds time, node and actor; ``kind`` is a dotted name such as
    ``"admission.granted"`` and ``fields`` holds JSON-friendly values.
    """

    kind: str
    fields: dict = attrs.field(factory=dict)


@attrs.frozen(slots=True)
class Persist(Effect):
    """Write ``data`` under ``key`` to the participant's stable storage before any later effect.

    The host writes it at once and syncs before the next message leaves (group
    commit), so a send that depends on the state never overtakes it. On the
    next start the machine gets everything written so far back (``durable=``).
    ``data=None`` deletes ``key`` (it is not given back on the next start).
    """

    key: str
    data: Any


class UnhandledEffect(TypeError):
    """A state machine returned an effect its host cannot carry out (our bug, raised loudly)."""


@message("core.TimerFired")
class TimerFired:
    """Delivered to a state machine when a timer it set comes due."""

    key: str


@runtime_checkable
class StateMachine(Protocol):
    """What a host needs from a protocol participant."""

    tick_interval: float | None  # seconds between tick() calls; None: only the start tick

    def handle(self, msg: Any, sender: str, now: float) -> list[Effect]: ...

    def tick(self, now: float) -> list[Effect]: ...
