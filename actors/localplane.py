"""The actor an edge host embeds: an edge node of a local control plane, with its workloads plugged in.

How this works
--------------
:class:`EdgeNodeActor` runs the :class:`~protocols.localplane.EdgeNode` state
machine and hands its host effects to the embedder's callbacks (issue 18,
deliverable 5):

* ``on_start(effect)``: a ``StartRole`` - start the workload of holding
  ``effect.key`` (``role``, ``share`` of ``shares``, ``plan_id``,
  ``target``; ``effect.converted``: it already runs for this share, under
  another plan - keep it running). Return quickly.
* ``on_stop(effect)``: a ``StopRole`` - stop it (``reason``). The node always
  stops a holding before it starts one that replaces it.
* ``on_check(effect, report)`` (optional): a ``CheckRole`` - check the
  workload and call ``report(ok, measured=1.0, reason="")`` from any thread;
  a workload reported down is given up and re-assigned by the plane or the
  manager. Without it, every check says up.
* ``on_serve(effect, reply)`` (optional): a ``ServeRequest`` - a client of the
  site asked for a role held here; call ``reply(True)`` when the workload
  served it or ``reply(False, "why")`` (the plane's validator asks holders as a client
  would: a refusal - any reason but ``"starting"`` - fails the holder's validation and the
  leader re-assigns the role). Without it, a request is answered served (the workload is
  taken to serve while it runs).

Durable state: pass ``store`` (a :class:`topologies.durable.FileStore`) and the
node's ``Persist`` effects are written to it and synced before any message
leaves (group commit); a restart reads them back (``durable=``), so a restarted
node rejoins its island's plane without voting twice in a term. Without a store
nothing is persisted. Every start of the actor is a new incarnation.
"""

from __future__ import annotations

from typing import Any, Callable

from actors.statemachine import StateMachineActor
from protocols.core import Persist
from protocols.localplane.edge import CheckRole, EdgeNode, ServeRequest, StartRole, StopRole
from protocols.localplane.messages import ClientReply, RoleHealth

__all__ = ["EdgeNodeActor"]


class EdgeNodeActor(StateMachineActor):
    def __init__(self, manager: str, *, on_start: Callable[[StartRole], Any], on_stop: Callable[[StopRole], Any],
                 on_check: Callable[[CheckRole, Callable[..., None]], Any] | None = None,
                 on_serve: Callable[[ServeRequest, Callable[..., None]], Any] | None = None,
                 store: Any = None, first_start: bool | None = None, **edge_kwargs: Any):
        address = self.address  # set by the runtime before __init__
        self._store = store

        def machine() -> EdgeNode:  # every start (this one, each supervised restart) reads the disk again
            durable = store.load(address) if store is not None else None
            return EdgeNode(address, manager, durable=durable, first_start=first_start, **edge_kwargs)
        super().__init__(machine, on_effect=self._host,
                         before_send=(lambda: store.sync(address)) if store is not None else None)
        self._on_start, self._on_stop, self._on_check, self._on_serve = on_start, on_stop, on_check, on_serve

    def _host(self, effect: Any, actor: StateMachineActor) -> None:
        c = type(effect)
        node, me = self.node, self.address
        if c is Persist:
            if self._store is not None:
                self._store.write(me, effect.key, effect.data)
        elif c is StartRole:
            self._on_start(effect)
        elif c is StopRole:
            self._on_stop(effect)
        elif c is CheckRole:
            def report(ok: bool = True, measured: float = 1.0, reason: str = "") -> None:
                node.tell(me, RoleHealth(key=effect.key, plan_id=effect.plan_id, ok=bool(ok),
                                         measured=float(measured), reason=reason), me)
            if self._on_check is None:
                report(True)
            else:
                self._on_check(effect, report)
        elif c is ServeRequest:
            def reply(served: bool = True, reason: str = "") -> None:
                node.tell(effect.client, ClientReply(rid=effect.rid, role=effect.role, key=effect.key,
                                                     plan_id=effect.plan_id, served=bool(served), reason=reason), me)
            if self._on_serve is None:
                reply(True)
            else:
                self._on_serve(effect, reply)
        else:
            raise TypeError(f"{me}: EdgeNodeActor cannot carry out {effect!r}")
