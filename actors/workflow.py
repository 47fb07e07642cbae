"""Thin actors for the boot-workflow protocol: what a host agent embeds.

How this works
--------------
:class:`ServerActor` runs the :class:`~protocols.workflow.server.Server` state
machine for the machine the host agent lives on and hands its host effects to
the agent's callbacks:

* ``on_stage(stage, report)``: run boot stage ``stage`` (a ``RunStage``: name,
  run id, resources held, expected seconds). Start the work and return; when it
  ends, call ``report(True)`` or ``report(False, "why")`` from any thread - it
  tells the actor ``StageDone`` / ``StageFailed`` for that run.
* ``on_power(level)``: 1.0 full power, a fraction to park, 0.0 to power off
  (``SetPower``, ``PowerOff``, ``PowerOn``).
* ``on_abort(stage_name, run)`` (optional): a running stage lost its lease; stop it
  (its late report is ignored anyway, by run id).

Every start of the actor (a new process, a supervised restart) is a new
incarnation: the machine's rng mixes ``seed`` (default: the address) with a
fresh random nonce and a start count, so its boot nonce is new and a restarted
server is answered, not ignored as a stale one (DESIGN.md, "Incarnations").

:class:`WakeAgentActor` runs on the machine's BMC (or whatever stays up while
the machine is off): a ``Wake`` from a resource controller calls
``on_wake(server, resource)``, where the embedder powers the machine on
(IPMI, Redfish, Wake-on-LAN); the server names the agent's address as its
``wake`` address.

:class:`ResourceMonitorActor` runs beside a real resource (an image server): every
``every`` seconds it calls ``monitor()``, the embedder's measurement of the resource,
and reports it to the resource's controller (a ``ResourceReport``), so an adaptive
controller moves its limit on what the resource really does. ``monitor()`` returns a
mapping (or a :class:`~protocols.workflow.monitor.Measurement`) with ``in_flight``,
``latency``, ``bandwidth_used`` (offered load over the bandwidth, a fraction; above 1
over capacity), and optionally ``error_rate``, ``cpu`` (fraction of the processing
power in use) and ``nominal`` (the unloaded latency). It runs on the actor's thread:
keep it quick (read counters, not a benchmark). If it raises, or returns nonsense,
the report is skipped and an event says why (``monitor.failed``, ``monitor.refused``).

Everything else - asking controllers, waiting pending / parking / dormant,
renewing leases, proxies - is the state machine's. The resource controllers,
the workflow controller and proxies need no host and run in a plain
``StateMachineActor``.
"""

from __future__ import annotations

import itertools
import os
import random
from typing import Any, Callable

from actors.statemachine import StateMachineActor
from protocols.workflow.messages import StageDone, StageFailed
from protocols.workflow.monitor import MeasureFailed, MeasureResource, Measurement, ResourceMonitor
from protocols.workflow.server import AbortStage, PowerOff, PowerOn, RunStage, Server, SetPower
from protocols.workflow.wake import PowerOnMachine, WakeAgent

__all__ = ["ResourceMonitorActor", "ServerActor", "WakeAgentActor"]


class ServerActor(StateMachineActor):
    def __init__(self, workflow_controller: str, *, on_stage: Callable[[RunStage, Callable[..., None]], Any],
                 on_power: Callable[[float], Any] | None = None, on_abort: Callable[[str, int], Any] | None = None,
                 seed: int | str | None = None, **server_kwargs: Any):
        address = self.address  # set by the runtime before __init__
        base = seed if seed is not None else address
        starts = itertools.count(1)

        def machine() -> Server:  # every start (this one, each supervised restart) is a new incarnation
            rng = random.Random(f"{base}/{os.urandom(8).hex()}/{next(starts)}")
            return Server(address, workflow_controller, rng=rng, **server_kwargs)
        super().__init__(machine, on_effect=self._host)
        self._on_stage, self._on_power, self._on_abort = on_stage, on_power, on_abort

    def _host(self, effect: Any, actor: StateMachineActor) -> None:
        c = type(effect)
        if c is RunStage:
            node, me, stage, run = self.node, self.address, effect.stage, effect.run

            def report(ok: bool = True, reason: str = "") -> None:
                node.tell(me, StageDone(stage, run) if ok else StageFailed(stage, run, reason or "failed"), me)
            self._on_stage(effect, report)
        elif c is AbortStage:
            if self._on_abort is not None:
                self._on_abort(effect.stage, effect.run)
        elif c in (SetPower, PowerOff, PowerOn):
            if self._on_power is not None:
                self._on_power(effect.level if c is SetPower else (0.0 if c is PowerOff else 1.0))
        else:
            raise TypeError(f"{self.address}: ServerActor cannot carry out {effect!r}")


class WakeAgentActor(StateMachineActor):
    """The BMC stand-in of machine ``server``: ``on_wake(server, resource)`` powers the machine on."""

    def __init__(self, server: str, *, on_wake: Callable[[str, str], Any], min_gap: float = 5.0):
        super().__init__(lambda: WakeAgent(server, min_gap=min_gap), on_effect=self._host)
        self._on_wake = on_wake

    def _host(self, effect: Any, actor: StateMachineActor) -> None:
        if type(effect) is PowerOnMachine:
            self._on_wake(effect.server, effect.resource)
        else:
            raise TypeError(f"{self.address}: WakeAgentActor cannot carry out {effect!r}")


_MEASURED = frozenset(a.name for a in Measurement.__attrs_attrs__)  # type: ignore[attr-defined]


class ResourceMonitorActor(StateMachineActor):
    """The monitor of ``resource`` for its controller at ``controller``: ``monitor()`` measures it every ``every`` s."""

    def __init__(self, resource: str, controller: str, *, monitor: Callable[[], Any], every: float = 1.0):
        super().__init__(lambda: ResourceMonitor(resource, controller, every=every), on_effect=self._host)
        self._monitor = monitor

    def _host(self, effect: Any, actor: StateMachineActor) -> None:
        if type(effect) is not MeasureResource:
            raise TypeError(f"{self.address}: ResourceMonitorActor cannot carry out {effect!r}")
        try:
            got = self._monitor()
            if isinstance(got, Measurement):
                result: Any = got
            else:
                unknown = sorted(set(got) - _MEASURED)
                result = (MeasureFailed(f"monitor() returned unknown keys {unknown}") if unknown
                          else Measurement(**dict(got)))
        except Exception as e:  # the embedder's error: reported, and measured again next time
            result = MeasureFailed(f"{type(e).__name__}: {e}")
        self.node.tell(self.address, result, self.address)
