"""Simulated clients of an edge site: they ask for the site's roles and record what they were answered.

How this works
--------------
Issue 18, deliverable 5 (served roles). A :class:`SiteClients` machine stands
for the clients of a site: every ``every`` seconds it sends one
:class:`ClientRequest` per role in ``roles`` to every edge node in ``edges``
(a client does not know who holds a role; only a holder's workload answers,
see ``edge``: ``ServeRequest``), collects the :class:`ClientReply` answers
for ``timeout`` seconds, then emits one ``client.request`` event per request:
``rid``, ``role``, ``sent`` (when it went out), ``outcome`` -
``served`` (at least one workload served it), ``refused`` (only refusals: a
holder whose workload was not running) or ``unserved`` (no answer) - and
``servers`` / ``refused_by``: ``[address, key, plan_id]`` per answer. A
request served by two holders of one share of a single-holder role is what
the ``clients-single-holder`` checker (``topologies/edge/checks.py``) flags.

A request reaches only the nodes in the client's connected island, so the
outcomes measure what the clients of that island saw. Pure: no clock but the
``now`` it is given, no I/O.
"""

from __future__ import annotations

from typing import Any

from protocols.core import Effect, Emit, Send, SetTimer, TimerFired
from protocols.localplane.messages import ClientReply, ClientRequest

__all__ = ["SiteClients"]


class SiteClients:
    """Clients of a site (see the module docstring)."""

    def __init__(self, edges: list, roles: list | None = None, every: float = 0.25, timeout: float = 0.2) -> None:
        if every <= 0 or timeout <= 0:
            raise ValueError(f"every and timeout must be positive, got {every}, {timeout}")
        self.edges = sorted(edges)
        self.roles = list(roles) if roles is not None else ["store", "frontend"]
        self.every = float(every)
        self.timeout = float(timeout)
        self.tick_interval = self.every
        self.rid = 0
        self.pending: dict[int, dict[str, Any]] = {}  # rid -> role, sent, servers, refused
        self.counts = {"served": 0, "refused": 0, "unserved": 0}

    def tick(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        for role in self.roles:
            self.rid += 1
            self.pending[self.rid] = {"role": role, "sent": now, "servers": [], "refused": []}
            req = ClientRequest(rid=self.rid, role=role)
            out += [Send(e, req) for e in self.edges]
            out.append(SetTimer(f"r{self.rid}", now + self.timeout))
        return out

    def handle(self, msg: Any, sender: str, now: float) -> list[Effect]:
        if isinstance(msg, ClientReply):
            p = self.pending.get(msg.rid)
            if p is not None and msg.role == p["role"]:
                entry = [sender, msg.key, msg.plan_id]
                (p["servers"] if msg.served else p["refused"]).append(entry)
            return []
        if isinstance(msg, TimerFired) and msg.key.startswith("r") and msg.key[1:].isdigit():
            p = self.pending.pop(int(msg.key[1:]), None)
            if p is None:
                return []
            outcome = "served" if p["servers"] else "refused" if p["refused"] else "unserved"
            self.counts[outcome] += 1
            return [Emit("client.request", {"rid": int(msg.key[1:]), "role": p["role"], "sent": p["sent"],
                                            "outcome": outcome, "servers": p["servers"], "refused_by": p["refused"]})]
        return []
