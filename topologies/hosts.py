"""Simulated host agents: what carries out a protocol's host effects in a topology run.

How this works
--------------
A protocol machine returns host effects (``RunStage``, ``PowerOff``, ...); an
embedder plugs in real ones. A topology run has no real hardware, so an actor
kind may name a *host*: a small object whose ``on_effect(effect, api)`` plays
the hardware. It acts only through a :class:`HostApi` - ``now``, ``later(delay,
msg)`` (deliver ``msg`` to the actor itself after ``delay`` seconds),
``send(to, msg)`` (a message from the actor, e.g. to a simulated store) and
``emit(kind, fields)`` - so the same host runs in a node process (timers of the
actor) and in the simulator (injected deliveries at virtual times).

The hosts themselves belong to the protocols' plug-ins (e.g.
:class:`topologies.workflow.hosts.BootHost`); :func:`effect_router` sends a
``Persist`` to the durable store and every other host effect to the host.
"""

from __future__ import annotations

import itertools
import random
from typing import Any, Protocol

from protocols.core import Persist, UnhandledEffect

__all__ = ["HostApi", "actor_api", "effect_router", "sim_api"]


class HostApi(Protocol):
    @property
    def now(self) -> float: ...

    @property
    def address(self) -> str: ...  # the actor's own address

    def later(self, delay: float, msg: Any) -> None: ...

    def emit(self, kind: str, fields: dict) -> None: ...

    def send(self, to: str, msg: Any) -> None: ...  # a message from the actor (simulated hardware talking)


class _ActorApi:
    _keys = itertools.count(1)

    def __init__(self, actor: Any):
        self.actor = actor

    @property
    def now(self) -> float:
        return self.actor.now

    @property
    def address(self) -> str:
        return self.actor.address

    def later(self, delay: float, msg: Any) -> None:
        self.actor.set_timer(f"$host{next(self._keys)}", delay, msg)

    def emit(self, kind: str, fields: dict) -> None:
        self.actor.emit(kind, **fields)

    def send(self, to: str, msg: Any) -> None:
        self.actor.tell(to, msg)


class _SimApi:
    def __init__(self, sim: Any, address: str):
        self.sim, self.address = sim, address
        self.node, _, self.actor = address.partition("/")

    @property
    def now(self) -> float:
        return self.sim.now

    def later(self, delay: float, msg: Any) -> None:
        self.sim.send(self.address, msg, sender=self.address, at=self.sim.now + max(0.0, delay))

    def emit(self, kind: str, fields: dict) -> None:
        self.sim.event_log.emit(self.sim.now, self.node, self.actor, kind, fields)

    def send(self, to: str, msg: Any) -> None:
        self.sim.send(to, msg, sender=self.address, via_network=True)


def actor_api(actor: Any) -> HostApi:
    """The HostApi of a StateMachineActor in a node process."""
    return _ActorApi(actor)


def sim_api(sim: Any, address: str) -> HostApi:
    """The HostApi of a simulator participant."""
    return _SimApi(sim, address)


def effect_router(host: Any, store: Any, address: str):
    """The callback carrying out one actor's host effects: ``Persist`` to ``store``, the rest to ``host``.

    None when the actor has neither (then any host effect is an UnhandledEffect, raised by its host).
    """
    if host is None and store is None:
        return None
    def route(effect: Any, api: Any) -> None:
        if store is not None and effect.__class__ is Persist:
            store.write(address, effect.key, effect.data)
        elif host is not None:
            host.on_effect(effect, api)
        else:
            raise UnhandledEffect(f"{address}: no host for effect {type(effect).__qualname__}")
    return route
