"""Ballots: totally ordered proposal numbers, unique per proposer.

How this works
--------------
A :class:`Ballot` is the pair ``(round, node)``. Ballots compare as tuples:
first by ``round``, then by ``node`` (the proposer's address), so two
proposers never issue equal ballots and any two ballots are ordered. A
proposer starts a new ballot with :func:`next_ballot`, one round above every
round it has used or seen (FIG. 7's "highest value wins": an acceptor keeps
only the highest ballot it has promised). :data:`ZERO` is below every ballot
a proposer can issue (round 0, empty node id).

A ballot is a registered message so that it travels inside every Paxos
message; it is frozen and validated on construction (round >= 0).
"""

from __future__ import annotations

import attrs

from transport.codec import message

__all__ = ["ZERO", "Ballot", "next_ballot"]


def _round(_inst, _attr, v):
    if v.__class__ is not int or v < 0:
        raise ValueError(f"a ballot round must be an int >= 0, got {v!r}")


def _node(_inst, _attr, v):
    if v.__class__ is not str:
        raise ValueError(f"a ballot node must be a str, got {v!r}")


@message("paxos.Ballot")
@attrs.frozen(order=True, slots=True)
class Ballot:
    """``(round, node)``; ordered by round, then node id."""

    round: int = attrs.field(validator=_round)
    node: str = attrs.field(validator=_node)

    def as_list(self) -> list:
        return [self.round, self.node]

    @classmethod
    def from_list(cls, v) -> Ballot:
        return cls(v[0], v[1])

    def __str__(self) -> str:
        return f"{self.round}.{self.node}"


ZERO = Ballot(0, "")


def next_ballot(node: str, *seen: Ballot | int | None) -> Ballot:
    """The proposer ``node``'s next ballot: one round above every round in ``seen``.

    ``seen`` holds ballots (or bare rounds) the proposer used or heard of; ``None`` is skipped.
    The result is strictly greater than each of them.
    """
    top = 0
    for s in seen:
        if s is None:
            continue
        r = s.round if isinstance(s, Ballot) else s
        top = max(top, r)
    return Ballot(top + 1, node)
