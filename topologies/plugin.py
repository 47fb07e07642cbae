"""The plug-in framework: how a protocol joins the launcher, the checkers and the report.

How this works
--------------
The core (CLI, loader, launcher, node process, nemeses, chaos runner, checker
and report frameworks) knows no protocol. A protocol's plug-in is a folder
``topologies/<name>/`` whose package defines ``PLUGIN = Plugin(...)``:

* ``kinds`` - the actor kinds topology files may name (:func:`topologies.kinds.make_kind`);
* ``checkers`` - its invariant checkers (:mod:`topologies.checkers`);
* ``report`` - report sections: ``ReportSection(title, render)`` where
  ``render(events, periods, t0, t1)`` returns inline SVG/HTML, or ``None``
  when the log has nothing for it;
* ``must_judge`` - the checkers a chaos run of a topology using this plug-in
  must get a ``valid`` or ``invalid`` answer from, unless the topology's
  ``[run] must_judge`` says otherwise;
* ``commands`` - extra ``fleetplane`` subcommands (:class:`Command`);
* ``protocols`` - the protocol packages it may import (the layering test
  holds it to them).

:func:`load_plugins` imports every plug-in listed in :mod:`topologies.plugins`
(by name, at run time: the core never imports a plug-in module) and registers
their kinds and checkers. It is idempotent; every core entry point that needs
the registries calls it. :func:`plugins_of` tells which plug-ins a topology
uses (those owning its actor kinds); a run shows only their checkers and the
runtime checkers of the core.
"""

from __future__ import annotations

import functools
import importlib
import sys
import threading
from typing import Any, Callable

import attrs

from topologies import plugins as _plugin_list

__all__ = ["Command", "Plugin", "ReportSection", "checkers_for", "client_command", "load_plugins", "loaded",
           "must_judge_for", "plugins_of"]

RUNTIME = "runtime"  # the owner of the core's own checkers


@attrs.frozen
class ReportSection:
    title: str
    render: Callable[[list, list, float, float], "str | None"]


def client_command(fn: Callable[[Any], int]) -> Callable[[Any], int]:
    """A plug-in command that talks to a running topology from a client node of its own (``fleetplane deps``,
    ``task``, ``racks status``): its log on stderr at WARNING, and the transport's "runs in the clear" at INFO while
    it runs - the topology's own choice, not this command's news - then the old level again, so a host's next
    embedded node still says it."""
    @functools.wraps(fn)
    def command(args: Any) -> int:
        from loguru import logger

        from transport.zmq import insecure_log_level

        logger.remove()
        logger.add(sys.stderr, level="WARNING")
        with insecure_log_level("INFO"):
            return fn(args)
    return command


@attrs.frozen
class Command:
    """A ``fleetplane <name>`` subcommand: ``setup(parser)`` adds its arguments; ``run(args)`` returns the exit status."""

    name: str
    help: str
    setup: Callable[[Any], None]
    run: Callable[[Any], int]


@attrs.frozen
class Plugin:
    name: str
    protocols: tuple[str, ...]
    kinds: tuple = ()
    checkers: tuple = ()
    report: tuple[ReportSection, ...] = ()
    must_judge: tuple[str, ...] = ()
    commands: tuple[Command, ...] = ()
    doc: str = ""


_LOADED: dict[str, Plugin] = {}
_LOCK = threading.Lock()


def load_plugins() -> dict[str, Plugin]:
    """Import every listed plug-in once and register its kinds and checkers; returns name -> Plugin."""
    if len(_LOADED) == len(_plugin_list.PLUGINS):
        return _LOADED
    from topologies.checkers import register as register_checker
    from topologies.kinds import add_kind

    with _LOCK:
        for name in _plugin_list.PLUGINS:
            if name in _LOADED:
                continue
            module = importlib.import_module(f"topologies.{name}")
            plugin = getattr(module, "PLUGIN", None)
            if not isinstance(plugin, Plugin):
                raise TypeError(f"topologies.{name} is listed as a plug-in but defines no PLUGIN = Plugin(...)")
            if plugin.name != name:
                raise ValueError(f"topologies.{name} calls its plug-in {plugin.name!r}; it must be {name!r}")
            for kind in plugin.kinds:
                add_kind(kind, owner=name)
            for checker in plugin.checkers:
                register_checker(checker, owner=name)
            own = {c.name for c in plugin.checkers}
            for m in plugin.must_judge:
                if m not in own:
                    raise ValueError(f"plug-in {name!r}: must_judge names {m!r}, not one of its checkers {sorted(own)}")
            _LOADED[name] = plugin
    return _LOADED


def loaded() -> dict[str, Plugin]:
    return load_plugins()


def plugins_of(kinds: list[str] | set[str] | tuple[str, ...]) -> list[str]:
    """The plug-ins owning these actor kinds, in the list's order."""
    from topologies.kinds import KIND_OWNER

    load_plugins()
    used = {KIND_OWNER[k] for k in kinds if k in KIND_OWNER}
    return [p for p in _plugin_list.PLUGINS if p in used]


def checkers_for(kinds: list[str] | set[str] | tuple[str, ...] | None) -> list[str]:
    """The checkers a run of a topology with these actor kinds shows: the core's, then its plug-ins'."""
    from topologies.checkers import CHECKER_OWNER, CHECKERS

    load_plugins()
    if kinds is None:
        return list(CHECKERS)
    used = {RUNTIME, *plugins_of(kinds)}
    return [n for n in CHECKERS if CHECKER_OWNER.get(n) in used]


def must_judge_for(kinds: list[str] | set[str] | tuple[str, ...]) -> list[str]:
    """The default ``must_judge`` of a topology: what its plug-ins declare."""
    plugins = load_plugins()
    return [m for p in plugins_of(kinds) for m in plugins[p].must_judge]
