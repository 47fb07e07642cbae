"""The simulated asset of a ``deps.agent``: services take time to start, a reboot takes time.

:class:`AssetHost` carries out the agent's host effects through a
:class:`topologies.hosts.HostApi`, so it runs unchanged in a node process and
in the simulator: ``StartService`` answers ``ServiceUp`` after the service's
``start_time`` times a lognormal factor (sigma ``start_sigma``, mean 1);
``StopService`` makes any answer of the old start stale (the agent matches
tokens); ``RebootAsset`` answers ``AssetBooted`` after ``reboot_time``.
A real embedding replaces this with ``systemctl start`` and friends and
delivers the same answers.
"""

from __future__ import annotations

import random
from typing import Any

from protocols.deps.agent import RebootAsset, StartService, StopService
from protocols.deps.messages import AssetBooted, ServiceUp
from topologies.hosts import HostApi

__all__ = ["AssetHost"]


class AssetHost:
    def __init__(self, rng: random.Random, start_sigma: float = 0.0, reboot_time: float = 2.0):
        if start_sigma < 0 or reboot_time <= 0:
            raise ValueError(f"start_sigma must be >= 0 and reboot_time > 0, got {start_sigma}, {reboot_time}")
        self.rng, self.start_sigma, self.reboot_time = rng, start_sigma, reboot_time

    def on_effect(self, effect: Any, api: HostApi) -> None:
        c = type(effect)
        if c is StartService:
            s = self.start_sigma
            factor = self.rng.lognormvariate(-s * s / 2, s) if s else 1.0
            api.later(effect.start_time * factor, ServiceUp(effect.service, effect.token))
        elif c is StopService:
            pass
        elif c is RebootAsset:
            api.later(self.reboot_time, AssetBooted(effect.token))
        else:
            raise TypeError(f"AssetHost cannot carry out {effect!r}")
