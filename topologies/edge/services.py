"""Simulated workloads of the roles an edge node holds: the host of the ``localplane.edge`` kind.

How this works
--------------
An :class:`~protocols.localplane.EdgeNode` returns host effects for the
workloads of its role holdings (issue 18, deliverable 5); in a topology run
this host plays them:

* ``StartRole`` starts the workload of a holding (a single-holder store, a
  frontend, ...): it serves ``start_delay`` seconds later (0: at once); a
  ``converted`` holding (the same share under a new plan, e.g. a ratified
  temporary plan) keeps running and is relabelled, not restarted;
* ``StopRole`` stops it at once;
* ``CheckRole`` answers the node with a :class:`RoleHealth` (up if the
  workload runs for that holding; its ``usage``: the subscription's usage
  term, unless a test made the role's workload overrun: ``overrun[role]``);
* ``ServeRequest`` (a client's request for a role the node holds) is answered
  to the client with a :class:`ClientReply`: served when the workload runs
  for that holding and is ready, else refused (``not running`` /
  ``starting``).

A real embedder plugs in its own workloads through
``actors.localplane.EdgeNodeActor(on_start=, on_stop=, on_check=, on_serve=)``.
The host survives a simulated restart of its machine (it is the hardware), but
a restarted node holds nothing and so asks it to serve nothing.
"""

from __future__ import annotations

import random
from typing import Any

from protocols.localplane.edge import CheckRole, ServeRequest, StartRole, StopRole
from protocols.localplane.messages import ClientReply, RoleHealth
from topologies.hosts import HostApi

__all__ = ["ServiceHost"]


class ServiceHost:
    """The workloads of one edge node, simulated (see the module docstring)."""

    def __init__(self, rng: random.Random, start_delay: float = 0.0) -> None:
        if start_delay < 0:
            raise ValueError(f"start_delay must be >= 0, got {start_delay}")
        self.rng = rng
        self.start_delay = float(start_delay)
        self.running: dict[str, tuple[str, float]] = {}  # key -> (plan_id, ready at)
        self.usage: dict[str, float] = {}  # key -> the load the workload puts on the node: its usage term
        self.overrun: dict[str, float] = {}  # role -> the load its workload really puts on the node (a test's fault)

    def on_effect(self, effect: Any, api: HostApi) -> None:
        c = type(effect)
        if c is StartRole:
            if effect.kind != "service":
                return
            old = self.running.get(effect.key)
            ready = old[1] if (effect.converted and old is not None) else api.now + self.start_delay
            self.running[effect.key] = (effect.plan_id, ready)
            self.usage[effect.key] = effect.usage  # a well-behaved workload uses what its term allows
        elif c is StopRole:
            self.running.pop(effect.key, None)
            self.usage.pop(effect.key, None)
        elif c is CheckRole:
            run = self.running.get(effect.key)
            ok = run is not None and run[0] == effect.plan_id
            use = self.overrun.get(effect.role, self.usage.get(effect.key, -1.0))
            api.later(0.0, RoleHealth(key=effect.key, plan_id=effect.plan_id, ok=ok,
                                      reason="" if ok else "not running", usage=use))
        elif c is ServeRequest:
            run = self.running.get(effect.key)
            if run is None or run[0] != effect.plan_id:
                served, why = False, "not running"
            elif api.now < run[1]:
                served, why = False, "starting"
            else:
                served, why = True, ""
            api.send(effect.client, ClientReply(rid=effect.rid, role=effect.role, key=effect.key,
                                                plan_id=effect.plan_id, served=served, reason=why))
        else:
            raise TypeError(f"{api.address}: ServiceHost cannot carry out {effect!r}")
