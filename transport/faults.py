"""Fault rules for the chaos harness: drop, delay, duplicate, reorder, partition.

How this works
--------------
A node's transport holds a :class:`FaultPlan`: a partition (the set of nodes
this node stops talking to, both ways) and a list of :class:`FaultRule`. For
every message to or from a peer the transport asks ``plan.decide(peer,
direction, rng)`` and gets the delays at which to pass the message on:
``()`` drop it, ``(0.0,)`` pass it now, ``(d,)`` pass it after ``d`` seconds,
two entries for a duplicate. A reordered message is held back by a random
extra delay so later ones overtake it. The first rule that names the peer and
direction applies (a rule with no peers names every peer).

Plans travel as ordinary messages (``transport.SetFaults`` /
``transport.ClearFaults``, sent to ``<node>/$sys``), so a harness in another
process sets and clears them at run time. Pure: randomness is an injected
``random.Random``.
"""

from __future__ import annotations

import random
from typing import Literal

import attrs

from transport.codec import message

__all__ = ["ClearFaults", "FaultPlan", "FaultRule", "SetFaults"]

Direction = Literal["out", "in", "both"]


def _prob(_inst, attribute, value) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"FaultRule.{attribute.name} must be a probability in [0, 1], got {value!r}")


def _nonneg(_inst, attribute, value) -> None:
    if not value >= 0.0:
        raise ValueError(f"FaultRule.{attribute.name} must be >= 0 seconds, got {value!r}")


@message("transport.FaultRule")
@attrs.frozen
class FaultRule:
    peers: tuple[str, ...] = ()
    direction: Direction = "both"
    drop: float = attrs.field(default=0.0, validator=_prob)
    delay: float = attrs.field(default=0.0, validator=_nonneg)
    jitter: float = attrs.field(default=0.0, validator=_nonneg)
    duplicate: float = attrs.field(default=0.0, validator=_prob)
    reorder: float = attrs.field(default=0.0, validator=_prob)
    reorder_window: float = attrs.field(default=0.05, validator=_nonneg)

    def applies(self, peer: str, direction: str) -> bool:
        return (not self.peers or peer in self.peers) and self.direction in (direction, "both")


@message("transport.SetFaults")
class SetFaults:
    """Replace this node's fault plan."""

    rules: list[FaultRule] = attrs.field(factory=list)
    partition: list[str] = attrs.field(factory=list)


@message("transport.ClearFaults")
class ClearFaults:
    """Remove every fault rule and heal the partition."""


_NOW = (0.0,)
_DROP: tuple[float, ...] = ()


class FaultPlan:
    def __init__(self, rules: list[FaultRule] | tuple = (), partition: list[str] | tuple | frozenset = ()):
        self.rules = tuple(rules)
        self.partition = frozenset(partition)

    @classmethod
    def from_message(cls, msg: SetFaults) -> "FaultPlan":
        return cls(msg.rules, msg.partition)

    def __bool__(self) -> bool:
        return bool(self.rules or self.partition)

    def describe(self) -> dict:
        return {"partition": sorted(self.partition), "rules": [attrs.asdict(r) for r in self.rules]}

    def decide(self, peer: str, direction: str, rng: random.Random) -> tuple[tuple[float, ...], str]:
        """(delays, reason): delays as in the module docstring; reason names a drop's rule."""
        if peer in self.partition:
            return _DROP, "partition"
        for rule in self.rules:
            if not rule.applies(peer, direction):
                continue
            if rule.drop and rng.random() < rule.drop:
                return _DROP, "drop"
            d = rule.delay + (rng.random() * rule.jitter if rule.jitter else 0.0)
            if rule.reorder and rng.random() < rule.reorder:
                d += rng.random() * rule.reorder_window
            if rule.duplicate and rng.random() < rule.duplicate:
                d2 = rule.delay + (rng.random() * rule.jitter if rule.jitter else 0.0)
                return (d, d2), "duplicate"
            return ((d,) if d else _NOW), ""
        return _NOW, ""
