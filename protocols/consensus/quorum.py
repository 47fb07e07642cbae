"""Quorum arithmetic as pure functions ("a minimum number must accept").

How this works
--------------
Among ``n`` participants a value is chosen once ``q`` of them (a *quorum*)
accept the same ballot. Paxos is safe exactly when any two quorums share a
member, i.e. ``2*q > n``: whatever one quorum accepted, every later quorum
contains someone who saw it. :func:`majority` gives the smallest such ``q``;
a larger configured size trades availability (``n - q`` failures tolerated)
for nothing in safety. :func:`check_quorum_size` rejects any size for which
two disjoint quorums could exist. :class:`Quorum` binds a member list to a
size and counts votes (duplicates and non-members never count).
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

__all__ = ["Quorum", "check_quorum_size", "failures_tolerated", "majority", "quorums_intersect"]


def _count(n: object, what: str = "n") -> int:
    if n.__class__ is not int or n < 1:
        raise ValueError(f"{what} must be an int >= 1, got {n!r}")
    return n


def majority(n: int) -> int:
    """The smallest quorum of ``n`` participants: ``n // 2 + 1``."""
    return _count(n) // 2 + 1


def quorums_intersect(n: int, q: int) -> bool:
    """Whether any two sets of ``q`` out of ``n`` participants share a member (``2q > n``)."""
    return 2 * q > n


def check_quorum_size(n: int, q: int | None = None) -> int:
    """Validate a configured quorum size (``None``: the majority); returns it.

    Raises ValueError if ``q`` is not in ``1..n`` or two quorums could be disjoint.
    """
    _count(n)
    if q is None:
        return majority(n)
    if q.__class__ is not int or not 1 <= q <= n:
        raise ValueError(f"quorum size must be an int in 1..{n}, got {q!r}")
    if not quorums_intersect(n, q):
        raise ValueError(
            f"quorum size {q} of {n} is unsafe: two quorums could be disjoint "
            f"(need 2*q > n, i.e. q >= {majority(n)})")
    return q


def failures_tolerated(n: int, q: int | None = None) -> int:
    """How many participants may be down while a quorum can still form."""
    return n - check_quorum_size(n, q)


@attrs.frozen
class Quorum:
    """A member list and the number of them that must accept."""

    members: tuple[str, ...] = attrs.field(converter=tuple)
    size: int = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        if len(set(self.members)) != len(self.members):
            raise ValueError(f"duplicate members in {self.members!r}")
        object.__setattr__(self, "size", check_quorum_size(len(self.members), self.size))

    def count(self, voters: Iterable[str]) -> int:
        """Distinct members among ``voters``."""
        return len(set(voters).intersection(self.members))

    def reached(self, voters: Iterable[str]) -> bool:
        return self.count(voters) >= self.size
