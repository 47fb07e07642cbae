"""Paxos messages: every one names its instance and carries a ballot.

How this works
--------------
Phase 1: a proposer sends ``Prepare(b)``; an acceptor that promised nothing
higher answers ``Promise(b, accepted)`` with the last (ballot, value) it
accepted, if any, else ``Nack(b, promised)``. Phase 2: with a quorum of
promises the proposer sends ``Accept(b, v)``; an acceptor whose promise is
not above ``b`` accepts and tells every learner ``Accepted(b, v)``, else
``Nack``. A learner that counts a quorum of ``Accepted`` for one ballot has
learned the chosen value; the proposer that learned it propagates
``Chosen(b, v)`` to all members until each answers ``Learned`` (an acked
broadcast, so members that missed the round still learn), and any member that
knows an instance's value answers later Prepare/Accept for it with ``Chosen``.

Values are ``Any``: msgpack-native data (str, int, list, dict...), compared by
equality.
"""

from __future__ import annotations

from typing import Any

from protocols.consensus.ballot import Ballot
from transport.codec import message

__all__ = ["Accept", "Accepted", "Chosen", "Learned", "Nack", "Prepare", "Promise"]


@message("paxos.Prepare")
class Prepare:
    instance: str
    ballot: Ballot


@message("paxos.Promise")
class Promise:
    instance: str
    ballot: Ballot  # the ballot promised
    accepted_ballot: Ballot | None = None  # the acceptor's last accepted ballot, if any
    accepted_value: Any = None


@message("paxos.Accept")
class Accept:
    instance: str
    ballot: Ballot
    value: Any


@message("paxos.Accepted")
class Accepted:
    instance: str
    ballot: Ballot
    value: Any


@message("paxos.Nack")
class Nack:
    instance: str
    ballot: Ballot  # the rejected ballot
    promised: Ballot  # the acceptor's higher promise


@message("paxos.Chosen")
class Chosen:
    instance: str
    ballot: Ballot
    value: Any


@message("paxos.Learned")
class Learned:
    """A learner's acknowledgement of ``Chosen`` (ends the propagation to it)."""

    instance: str
    ballot: Ballot
