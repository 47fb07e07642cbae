"""The simulated asset of a ``deps.agent``: services take time to start, a reboot takes time.

:class:`AssetHost` carries out the agent's host effects through a
:class:`topologies.hosts.HostApi`, so it runs unchanged in a node process and
in the simulator: ``StartService`` answers ``ServiceUp`` after the service's
``start_time`` times a lognormal factor (sigma ``start_sigma``, mean 1);
``StopService`` makes any answer of the old start stale (the agent matches
tokens); ``RebootAsset`` answers ``AssetBooted`` after ``reboot_time``.

Re-imaging (``RebootAsset(reimage=True)``) with ``workflow_controller`` set
goes through the boot-workflow protocol: the host runs a
:class:`protocols.workflow.server.Server` for the asset (its address is the
agent's: the workflow's answers reach the agent, which hands them to the host
as ``HostMessage`` once a re-imaging has begun), whose stages ask the image
resources' controllers for admission like any booting server; each stage
takes ``boot.stage_time`` seconds (default 1.0) times a lognormal factor
(``boot.stage_sigma``, default 0), and power changes are logged
(``host.power``). The asset is booted
(``AssetBooted``) once the server's workflow is ``done`` (or ``failed``: the
asset comes back on its old image, ``deps.reimage_failed``). Without
``workflow_controller`` a re-image is a plain reboot.
A real embedding replaces this with ``systemctl start`` and friends and
delivers the same answers.
"""

from __future__ import annotations

import random
from typing import Any

from protocols.core import CancelTimer, Emit, Persist, Send, SetTimer, TimerFired
from protocols.deps.agent import HostMessage, RebootAsset, StartService, StopService
from protocols.deps.messages import AssetBooted, ServiceUp
from topologies.hosts import HostApi

__all__ = ["AssetHost"]


class AssetHost:
    def __init__(self, rng: random.Random, start_sigma: float = 0.0, reboot_time: float = 2.0,
                 workflow_controller: str = "", boot: dict | None = None):
        if start_sigma < 0 or reboot_time <= 0:
            raise ValueError(f"start_sigma must be >= 0 and reboot_time > 0, got {start_sigma}, {reboot_time}")
        if boot is not None and not (isinstance(boot, dict) and set(boot) <= {"stage_time", "stage_sigma"}
                                     and all(isinstance(v, (int, float)) and v >= 0 for v in boot.values())
                                     and boot.get("stage_time", 1.0) > 0):
            raise ValueError(f"boot must be a table of stage_time (> 0) and stage_sigma (>= 0), got {boot!r}")
        self.rng, self.start_sigma, self.reboot_time = rng, start_sigma, reboot_time
        self.workflow_controller = workflow_controller
        self.boot = dict(boot or {})
        self.server: Any = None  # the boot-workflow server of a re-imaging in progress
        self.token = 0
        self.timers: dict[str, int] = {}  # server timer key -> generation (a replaced or cancelled one is stale)
        self.generation = 0

    def on_effect(self, effect: Any, api: HostApi) -> None:
        c = type(effect)
        if c is StartService:
            s = self.start_sigma
            factor = self.rng.lognormvariate(-s * s / 2, s) if s else 1.0
            api.later(effect.start_time * factor, ServiceUp(effect.service, effect.token))
        elif c is StopService:
            pass
        elif c is RebootAsset:
            if effect.reimage and self.workflow_controller:
                self._reimage(effect.token, api)
            else:
                api.later(self.reboot_time, AssetBooted(effect.token))
        elif c is HostMessage:
            self._to_server(effect.msg, effect.sender, api)
        else:
            raise TypeError(f"AssetHost cannot carry out {effect!r}")

    # -- re-imaging through the boot workflow ------------------------------------------------
    def _reimage(self, token: int, api: HostApi) -> None:
        from protocols.workflow.server import Server

        self.token = token
        self.timers.clear()
        self.server = Server(api.address, self.workflow_controller, rng=random.Random(self.rng.getrandbits(64)),
                             location=api.address.partition("/")[0])
        api.emit("deps.reimage", {"via": self.workflow_controller, "token": token})
        self._carry(self.server.tick(api.now), api)

    def _to_server(self, msg: Any, sender: str, api: HostApi) -> None:
        if self.server is None:
            return  # no re-imaging ever ran here: nothing to hand it to
        if type(msg) is TimerFired:
            key, _, gen = msg.key[len("host/"):].rpartition("#")
            if self.timers.get(key) != int(gen or -1):
                return  # replaced or cancelled
            del self.timers[key]
            msg = TimerFired(key)
        self._carry(self.server.handle(msg, sender, api.now), api)

    def _carry(self, effects: list, api: HostApi) -> None:
        for e in effects:
            c = type(e)
            if c is Send:
                api.send(e.to, e.msg)
            elif c is SetTimer:
                self.generation += 1
                self.timers[e.key] = self.generation
                api.later(max(0.0, e.at - api.now), TimerFired(f"host/{e.key}#{self.generation}"))
            elif c is CancelTimer:
                self.timers.pop(e.key, None)
            elif c is Emit:
                api.emit(e.kind, e.fields)
                if e.kind == "server.state" and e.fields.get("to") in ("done", "failed") and self.token:
                    if e.fields.get("to") == "failed":
                        api.emit("deps.reimage_failed", {"token": self.token})
                    api.later(0.0, AssetBooted(self.token))  # the server stays: answers to its releases
                    self.token = 0
            elif c is Persist:
                pass
            else:
                self._stage(e, api)

    def _stage(self, e: Any, api: HostApi) -> None:
        """The boot's own host effects: a stage runs for its time; power changes are logged."""
        from protocols.workflow.messages import StageDone
        from protocols.workflow.server import AbortStage, PowerOff, PowerOn, RunStage, SetPower

        c = type(e)
        if c is RunStage:
            s = float(self.boot.get("stage_sigma", 0.0))
            work = float(self.boot.get("stage_time", 1.0)) * (self.rng.lognormvariate(-s * s / 2, s) if s else 1.0)
            api.later(work, StageDone(e.stage, e.run))
        elif c is AbortStage:
            pass  # the completion, when it comes, carries a stale run id and is ignored
        elif c in (SetPower, PowerOff, PowerOn):
            level = 0.0 if c is PowerOff else 1.0 if c is PowerOn else e.level
            api.emit("host.power", {"mode": "off" if level == 0 else "full" if level >= 1 else "parked",
                                    "level": level})
        else:
            raise TypeError(f"AssetHost cannot carry out the boot's {e!r}")
