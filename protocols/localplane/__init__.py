"""Partition-triggered local control planes (protocol 5; issue #7): pure state machines.

How this works
--------------
Source: ``shared/seeds/004_726d366e1cefdd53.txt``. A :class:`DeploymentManager`
turns an intent into an intermediate representation (:func:`build_ir`: roles
with metrics, management roles with criteria, governance rules, and a separate
conservative role set for isolated operation), distributes it and assigns the
roles of a *final* plan while connected. Every :class:`EdgeNode` self-evaluates
its fit for each role, accepts or rejects proposals by its free resources and
votes on proposals for others. Nodes that miss the manager's heartbeats for a
configured time declare isolation, elect a leader by fit, and the leader
builds a *temporary* plan by negotiation (:class:`Negotiation`: provisional
proposal, assent per the governance rules, next candidate, lower or split);
the validator checks holders, the reporter records. On reconnect the manager
ratifies the temporary plan or replaces it, break-then-make.

Modules: ``messages`` (wire messages, tags ``localplane.*``), ``ir`` (tables,
``build_ir``, governance arithmetic, fit), ``negotiation``, ``edge`` (with the
host effects ``StartRole`` / ``StopRole`` / ``CheckRole`` / ``ServeRequest``
of the workloads a node holds), ``manager``, ``clients`` (simulated clients of
a site: what they saw). Checkers of the invariants live in ``topologies/edge/checks.py``.
"""

from protocols.localplane.clients import SiteClients
from protocols.localplane.edge import CheckRole, EdgeNode, PlaneRole, ServeRequest, StartRole, StopRole
from protocols.localplane.ir import (
    DEFAULT_TABLES,
    build_ir,
    objective,
    required_assent,
    role_load,
    rule_for,
    synthetic_fit,
)
from protocols.localplane.manager import DeploymentManager
from protocols.localplane.negotiation import Negotiation, role_key

__all__ = [
    "CheckRole",
    "DEFAULT_TABLES",
    "DeploymentManager",
    "EdgeNode",
    "Negotiation",
    "PlaneRole",
    "ServeRequest",
    "SiteClients",
    "StartRole",
    "StopRole",
    "build_ir",
    "objective",
    "required_assent",
    "role_key",
    "role_load",
    "rule_for",
    "synthetic_fit",
]
