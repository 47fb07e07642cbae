"""Actor kinds: the names a topology file uses for protocol state machines.

How this works
--------------
A topology says ``kind = "pingpong.pinger"`` and ``params = {...}``. The kind
names a state-machine factory (a protocol class); its parameters are read off
the factory's signature and annotations, so the loader can check a file
before anything runs: unknown parameters, missing required ones, wrong types,
and parameters that name other actors (``addresses``) pointing nowhere.

The same factory runs in both places: wrapped in a ``StateMachineActor`` in a
real node process, or added to the deterministic simulator. A factory that
takes an ``rng`` parameter gets a seeded ``random.Random`` from its host.

Each protocol issue registers its kinds here (topologies may import
protocols; protocols never import topologies).
"""

from __future__ import annotations

import inspect
import random
import typing
from typing import Any, Callable

import attrs

from protocols.pingpong import Pinger, Ponger

__all__ = ["KINDS", "Kind", "Param", "register"]

_MISSING = object()


@attrs.frozen
class Param:
    name: str
    type: Any
    required: bool
    default: Any = None


@attrs.frozen
class Kind:
    name: str
    factory: Callable[..., Any]
    params: dict  # name -> Param (rng excluded)
    addresses: tuple[str, ...] = ()  # params whose values are actor addresses (str or list of str)
    takes_rng: bool = False
    doc: str = ""

    def build(self, params: dict, rng: random.Random | None = None) -> Any:
        kwargs = dict(params)
        if self.takes_rng:
            kwargs["rng"] = rng if rng is not None else random.Random(0)
        return self.factory(**kwargs)


KINDS: dict[str, Kind] = {}


def register(name: str, factory: Callable[..., Any], *, addresses: tuple[str, ...] = (), doc: str = "") -> Kind:
    """Make ``factory`` available to topology files as ``kind = name``."""
    if name in KINDS and KINDS[name].factory is not factory:
        raise ValueError(f"actor kind {name!r} is already registered")
    target = factory.__init__ if isinstance(factory, type) else factory
    sig = inspect.signature(target)
    hints = typing.get_type_hints(target)
    params = {}
    takes_rng = False
    for p in sig.parameters.values():
        if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.name == "rng":
            takes_rng = True
            continue
        required = p.default is inspect.Parameter.empty
        params[p.name] = Param(p.name, hints.get(p.name, Any), required, None if required else p.default)
    for a in addresses:
        if a not in params:
            raise ValueError(f"kind {name!r}: address parameter {a!r} is not a parameter of {factory!r}")
    kind = Kind(name, factory, params, tuple(addresses), takes_rng, doc or (factory.__doc__ or "").strip().split("\n")[0])
    KINDS[name] = kind
    return kind


register("pingpong.pinger", Pinger, addresses=("peer",), doc="plays ping-pong rounds against a ponger")
register("pingpong.ponger", Ponger, doc="answers every ping")
