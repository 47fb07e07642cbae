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
takes an ``rng`` parameter gets a seeded ``random.Random`` from its host, one
that takes ``address`` gets the actor's own address. A kind whose machine
returns host effects names a ``host`` (see :mod:`topologies.hosts`), with its
own parameters (``host_params``) in the same ``params`` table.

Kinds come from the plug-ins (:mod:`topologies.plugin`): a plug-in builds
its kinds with :func:`make_kind` and lists them in its ``PLUGIN``;
:func:`topologies.plugin.load_plugins` adds them to :data:`KINDS`. This module
knows no protocol.
"""

from __future__ import annotations

import inspect
import random
import typing
from typing import Any, Callable

import attrs

__all__ = ["KINDS", "KIND_OWNER", "Kind", "Param", "add_kind", "make_kind"]

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
    takes_address: bool = False
    host: Callable[..., Any] | None = None  # host(rng=..., **host params) -> object with on_effect(effect, api)
    host_params: tuple[str, ...] = ()
    takes_durable: bool = False  # the machine keeps durable state: Persist effects, restored through durable=

    def build(self, params: dict, rng: random.Random | None = None, address: str = "",
              durable: dict | None = None) -> Any:
        kwargs = {k: v for k, v in params.items() if k not in self.host_params}
        if self.takes_rng:
            kwargs["rng"] = rng if rng is not None else random.Random(0)
        if self.takes_address:
            kwargs["address"] = address
        if self.takes_durable:
            kwargs["durable"] = durable
        return self.factory(**kwargs)

    def build_host(self, params: dict, rng: random.Random) -> Any:
        """The simulated host of one actor of this kind (None if the kind needs none)."""
        if self.host is None:
            return None
        return self.host(rng=rng, **{k: v for k, v in params.items() if k in self.host_params})


KINDS: dict[str, Kind] = {}
KIND_OWNER: dict[str, str] = {}  # kind name -> the plug-in that registered it


def _signature(fn: Callable[..., Any]) -> tuple[dict, bool, bool]:
    target = fn.__init__ if isinstance(fn, type) else fn
    sig = inspect.signature(target)
    hints = typing.get_type_hints(target)
    params, takes_rng, takes_address = {}, False, False
    for p in sig.parameters.values():
        if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.name == "rng":
            takes_rng = True
            continue
        if p.name == "address":
            takes_address = True
            continue
        required = p.default is inspect.Parameter.empty
        params[p.name] = Param(p.name, hints.get(p.name, Any), required, None if required else p.default)
    return params, takes_rng, takes_address


def make_kind(name: str, factory: Callable[..., Any], *, addresses: tuple[str, ...] = (), doc: str = "",
              host: Callable[..., Any] | None = None, exclude: tuple[str, ...] = ()) -> Kind:
    """The kind ``kind = name`` of a topology file: ``factory`` builds its machine (``host``: its simulated hardware).

    ``exclude`` names optional parameters a topology file cannot give (e.g. a
    callable); the factory always gets their defaults. Register it with
    :func:`add_kind` (a plug-in lists it in its ``PLUGIN`` instead).
    """
    params, takes_rng, takes_address = _signature(factory)
    for x in exclude:
        if x not in params:
            raise ValueError(f"kind {name!r}: excluded parameter {x!r} is not a parameter of {factory!r}")
        if params[x].required:
            raise ValueError(f"kind {name!r}: parameter {x!r} is required, so it cannot be excluded")
        del params[x]
    takes_durable = "durable" in params and not params["durable"].required
    if takes_durable:
        del params["durable"]  # injected by the host from its store (topologies.durable), never from a file
    host_params: tuple[str, ...] = ()
    if host is not None:
        hparams, _, _ = _signature(host)
        clash = set(hparams) & set(params)
        if clash:
            raise ValueError(f"kind {name!r}: host parameters {sorted(clash)} clash with the machine's")
        params.update(hparams)
        host_params = tuple(hparams)
    for a in addresses:
        if a not in params:
            raise ValueError(f"kind {name!r}: address parameter {a!r} is not a parameter of {factory!r}")
    return Kind(name, factory, params, tuple(addresses), takes_rng,
                doc or (factory.__doc__ or "").strip().split("\n")[0], takes_address, host, host_params,
                takes_durable)


def add_kind(kind: Kind, owner: str = "") -> Kind:
    """Make ``kind`` available to topology files; ``owner``: the plug-in it belongs to."""
    old = KINDS.get(kind.name)
    if old is not None and old.factory is not kind.factory:
        raise ValueError(f"actor kind {kind.name!r} is already registered (by {KIND_OWNER.get(kind.name) or '?'})")
    KINDS[kind.name] = kind
    KIND_OWNER[kind.name] = owner
    return kind
