"""Consensus: Paxos as a pure, reusable state machine (issue 6, deliverable 4).

How this works
--------------
``ballot`` (totally ordered ``(round, node)`` ballots), ``quorum`` (quorum
arithmetic as pure functions), ``messages`` (the wire messages) and ``paxos``
(:class:`PaxosNode`: proposer, acceptor and learner for many independent
instances, with a ``Persist`` effect for durable acceptor state). See each
module's docstring.
"""

from protocols.consensus.ballot import ZERO, Ballot, next_ballot
from protocols.consensus.messages import (
    Accept,
    Accepted,
    Chosen,
    Learned,
    Nack,
    Prepare,
    Promise,
)
from protocols.consensus.paxos import (
    PROPOSER_KEY,
    PaxosNode,
    Persist,
    Phase,
    instance_key,
)
from protocols.consensus.quorum import (
    Quorum,
    check_quorum_size,
    failures_tolerated,
    majority,
    quorums_intersect,
)

__all__ = [
    "PROPOSER_KEY",
    "ZERO",
    "Accept",
    "Accepted",
    "Ballot",
    "Chosen",
    "Learned",
    "Nack",
    "PaxosNode",
    "Persist",
    "Phase",
    "Prepare",
    "Promise",
    "Quorum",
    "check_quorum_size",
    "failures_tolerated",
    "instance_key",
    "majority",
    "next_ballot",
    "quorums_intersect",
]
