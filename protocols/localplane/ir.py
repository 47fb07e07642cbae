"""The intermediate representation: lookup tables, ``build_ir``, governance arithmetic, fit and ranking.

How this works
--------------
Source: ``shared/seeds/004_726d366e1cefdd53.txt`` [0056]-[0065], [0105]-[0108].
An *intent* is a plain dict::

    {"name": "shop", "functionalities": ["storage", "frontend"],
     "limits": {"scale": 1.5, "size_threshold": 8}}

:func:`build_ir` turns it into an :class:`IntermediateRepresentation` by three
lookups in ``tables`` (default :data:`DEFAULT_TABLES`):

1. ``functionalities[f]`` gives the roles for connected operation and
   ``isolated[f]`` the separate, more conservative set for isolated operation
   (higher metrics, so a holder chosen while isolated is likely to cope
   without the manager's help). Each role is a dict of :class:`RoleSpec`
   fields; the service limit ``scale`` multiplies every service target.
2. ``management`` gives the management roles (leader, validator, reporter),
   each with an objective function (``weights`` over a node's criteria such as
   ``backup_power``, ``connectivity``, ``free``, ``load``) and minimums
   (``criteria``).
3. ``governance`` gives the assent rules (:class:`Governance`); the limit
   ``size_threshold`` overrides the table's threshold.

Governance arithmetic (:func:`rule_for`, :func:`required_assent`): connected
operation needs only the assignee's assent; an isolated plane of ``n``
members needs ``unanimous`` assent (all ``n``) below the threshold and a set
ratio (``ratio:0.67``: ``ceil(0.67 n)``) at or above it; ``majority`` is
``n // 2 + 1``. The candidate's acceptance counts as its own yes.

Fit (:func:`synthetic_fit`): the default self-evaluation runs a small
synthetic test - the node's capability for the role's metric perturbed by a
few percent of noise from the node's injected rng - and reports it as a ratio
of the role's target (120 tx/s against 100 -> 1.2). Management roles are
scored by :func:`objective` instead. A node needs ``load = target / capability``
of its resources to hold a service share, ``target`` itself for a management
role (:func:`role_load`).
"""

from __future__ import annotations

import math
import random
from typing import Any

from protocols.localplane.messages import Governance, IntermediateRepresentation, RoleSpec

__all__ = [
    "DEFAULT_TABLES",
    "build_ir",
    "meets_criteria",
    "objective",
    "required_assent",
    "role_load",
    "rule_for",
    "synthetic_fit",
]

DEFAULT_TABLES: dict[str, Any] = {
    "functionalities": {
        "storage": [{"name": "store", "metric": "tx_per_s", "target": 100.0, "min_ratio": 0.7, "max_split": 3}],
        "frontend": [{"name": "frontend", "metric": "req_per_s", "target": 200.0, "min_ratio": 0.8, "max_split": 2}],
        "cache": [{"name": "cache", "metric": "ops_per_s", "target": 500.0, "min_ratio": 1.0, "max_split": 3}],
    },
    "isolated": {
        "storage": [{"name": "store", "metric": "tx_per_s", "target": 120.0, "min_ratio": 0.7, "max_split": 3}],
        "frontend": [{"name": "frontend", "metric": "req_per_s", "target": 240.0, "min_ratio": 0.8, "max_split": 2}],
        "cache": [{"name": "cache", "metric": "ops_per_s", "target": 600.0, "min_ratio": 1.0, "max_split": 3}],
    },
    "management": [
        {"name": "leader", "kind": "management", "target": 0.1,
         "weights": {"backup_power": 4.0, "connectivity": 2.0, "free": 1.0, "load": -1.0},
         "criteria": {"connectivity": 0.2}},
        {"name": "validator", "kind": "management", "target": 0.05,
         "weights": {"connectivity": 2.0, "free": 1.0, "backup_power": 1.0, "load": -1.0},
         "criteria": {}},
        {"name": "reporter", "kind": "management", "target": 0.05,
         "weights": {"backup_power": 3.0, "free": 1.0, "load": -0.5},
         "criteria": {}},
    ],
    "governance": {"size_threshold": 8, "connected_rule": "assignee",
                   "isolated_below": "unanimous", "isolated_above": "ratio:0.67"},
}

_SPEC_FIELDS = ("name", "kind", "metric", "target", "min_ratio", "max_split", "weights", "criteria")


def _spec(d: dict, scale: float = 1.0) -> RoleSpec:
    unknown = set(d) - set(_SPEC_FIELDS)
    if unknown:
        raise ValueError(f"role {d.get('name')!r}: unknown fields {sorted(unknown)}")
    kw = dict(d)
    if kw.get("kind", "service") == "service":
        kw["target"] = float(kw.get("target", 1.0)) * scale
    return RoleSpec(**kw)


def build_ir(intent: dict, tables: dict | None = None, version: int = 1) -> IntermediateRepresentation:
    """Translate an intent into an intermediate representation by lookup ([0105]-[0108])."""
    tables = DEFAULT_TABLES if tables is None else tables
    funcs = list(intent.get("functionalities", ()))
    if not funcs:
        raise ValueError("an intent needs at least one functionality")
    limits = dict(intent.get("limits", {}))
    scale = float(limits.get("scale", 1.0))
    roles: list[RoleSpec] = []
    isolated: list[RoleSpec] = []
    for f in funcs:
        if f not in tables["functionalities"]:
            raise ValueError(f"no roles known for functionality {f!r}; known: {sorted(tables['functionalities'])}")
        roles += [_spec(d, scale) for d in tables["functionalities"][f]]
        isolated += [_spec(d, scale) for d in tables.get("isolated", {}).get(f, tables["functionalities"][f])]
    management = [_spec(d) for d in tables["management"]]
    gov = dict(tables.get("governance", {}))
    if "size_threshold" in limits:
        gov["size_threshold"] = int(limits["size_threshold"])
    return IntermediateRepresentation(
        intent=str(intent.get("name", "intent")), version=version, roles=roles, isolated_roles=isolated,
        management=management, governance=Governance(**gov), limits=limits,
    )


# -- governance ---------------------------------------------------------------------------------


def rule_for(gov: Governance, size: int, isolated: bool) -> str:
    """The assent rule in force for a plane of ``size`` members, isolated or connected."""
    if not isolated:
        return gov.connected_rule
    return gov.isolated_below if size < gov.size_threshold else gov.isolated_above


def required_assent(rule: str, size: int) -> int:
    """Yes votes (the candidate's acceptance included) a proposal needs under ``rule`` among ``size`` voters."""
    if size < 1:
        raise ValueError(f"an electorate has at least one member, got {size}")
    if rule == "assignee":
        return 1
    if rule == "unanimous":
        return size
    if rule == "majority":
        return size // 2 + 1
    if rule.startswith("ratio:"):
        r = float(rule[len("ratio:"):])
        if not 0.0 < r <= 1.0:
            raise ValueError(f"a governance ratio lies in (0, 1], got {rule!r}")
        return max(1, min(size, math.ceil(r * size - 1e-9)))
    raise ValueError(f"unknown governance rule {rule!r}")


# -- fit ------------------------------------------------------------------------------------------


def objective(spec: RoleSpec, criteria: dict[str, float]) -> float:
    """A management role's objective function: the weighted sum of the node's criteria ([0079]-[0080])."""
    return round(sum(w * float(criteria.get(c, 0.0)) for c, w in sorted(spec.weights.items())), 6)


def meets_criteria(spec: RoleSpec, criteria: dict[str, float]) -> bool:
    return all(float(criteria.get(c, 0.0)) >= m for c, m in spec.criteria.items())


def synthetic_fit(spec: RoleSpec, capability: dict[str, float], rng: random.Random, noise: float = 0.03) -> float:
    """Default self-evaluation: a small synthetic test, reported as a ratio of the role's metric ([0075])."""
    cap = float(capability.get(spec.metric, 0.0))
    if cap <= 0 or spec.target <= 0:
        return 0.0
    measured = cap * (1.0 + rng.uniform(-noise, noise))
    return round(measured / spec.target, 4)


def role_load(kind: str, target: float, fit_ratio: float, spec_target: float) -> float:
    """Share of a node's resources one share of a role takes: ``target / capability`` (management: ``target``)."""
    if kind == "management":
        return target
    capability = fit_ratio * spec_target
    return math.inf if capability <= 0 else round(target / capability, 6)
