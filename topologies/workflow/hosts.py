"""The booting server's simulated hardware (the host of kind ``workflow.server``).

:class:`BootHost`: a stage takes ``stage_time`` seconds at nominal speed times
a lognormal factor (sigma ``stage_sigma``, mean 1) drawn from the host's rng,
then ``StageDone``; ``AbortStage`` makes the run's completion stale (the server
ignores it by run id); power effects become ``host.power`` events. With
``stores`` (resource -> the address of a :class:`topologies.workflow.store.SharedStore`),
a stage whose first resource has a store is a transfer from that store instead (``stores`` may
also map a controller's address to its store: a server a council redirected to a peer's controller
pulls from that peer's store, ``RunStage.sources``):
the store answers the server, and is slower the more clients share it. It acts only
through a :class:`topologies.hosts.HostApi`, so it runs unchanged in a node
process and in the simulator.
"""

from __future__ import annotations

import random
from typing import Any

from protocols.workflow.messages import StageDone
from protocols.workflow.server import AbortStage, PowerOff, PowerOn, RunStage, SetPower
from topologies.hosts import HostApi
from topologies.workflow.store import Transfer, TransferAbort

__all__ = ["BootHost"]


class BootHost:
    """A booting server's hardware, simulated (see the module docstring)."""

    def __init__(self, rng: random.Random, stage_time: float = 1.0, stage_sigma: float = 0.25,
                 stores: dict | None = None):
        if not stage_time > 0 or stage_sigma < 0:
            raise ValueError(f"stage_time must be > 0 and stage_sigma >= 0, got {stage_time}, {stage_sigma}")
        if stores is not None and not (isinstance(stores, dict) and all(
                isinstance(k, str) and isinstance(v, str) and "/" in v for k, v in stores.items())):
            raise ValueError(f"stores must map resource names to store addresses (node/actor), got {stores!r}")
        self.rng = rng
        self.stage_time = stage_time
        self.stage_sigma = stage_sigma
        self.stores = dict(stores or {})
        self.transfers: dict[int, str] = {}  # run -> the store it is pulling from

    def on_effect(self, effect: Any, api: HostApi) -> None:
        c = type(effect)
        if c is RunStage:
            s = self.stage_sigma
            work = self.stage_time * (self.rng.lognormvariate(-s * s / 2, s) if s else 1.0)
            store = None
            if effect.resources:  # a redirected server pulls from the store of the peer that granted it
                src = effect.sources[0] if getattr(effect, "sources", ()) else ""
                store = self.stores.get(src) or self.stores.get(effect.resources[0])
            if store is None:
                api.later(work, StageDone(effect.stage, effect.run))
            else:
                self.transfers = {effect.run: store}  # one stage at a time: earlier runs are over
                api.send(store, Transfer(api.address, effect.run, effect.stage, work))
        elif c is AbortStage:
            store = self.transfers.pop(effect.run, None)
            if store is not None:
                api.send(store, TransferAbort(api.address, effect.run))
            # otherwise the completion, when it comes, carries a stale run id and is ignored
        elif c is SetPower:
            api.emit("host.power", {"mode": "full" if effect.level >= 1.0 else "parked", "level": effect.level})
        elif c is PowerOff:
            api.emit("host.power", {"mode": "off"})
        elif c is PowerOn:
            api.emit("host.power", {"mode": "full"})
        else:
            raise TypeError(f"BootHost cannot carry out {effect!r}")
