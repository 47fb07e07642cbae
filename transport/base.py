"""What every transport offers a Node: the envelope and the Transport interface.

How this works
--------------
A Node hands its transport an :class:`Envelope` for every message addressed to
another node. The envelope carries the destination and sender addresses
(``node/actor`` strings), a correlation id (non-zero for ``ask`` traffic) and
the message already encoded by :mod:`transport.codec`; the transport never
looks inside the payload. On the receiving side the transport calls the
node's ``deliver(envelope)`` callback, and the node decodes.

``send`` never blocks for long and never raises for a peer's sake: it returns
``False`` when the envelope could not be handed towards its destination (no
such node, node stopped, outbound queue full), and the caller counts a dead
letter. The in-memory transport (:mod:`transport.memory`) and the ZeroMQ
transport share this interface, so actors cannot tell which one carries them.
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import attrs

__all__ = ["Envelope", "Transport", "node_of", "split_address"]


@attrs.frozen(slots=True)
class Envelope:
    to: str
    sender: str
    corr: int
    payload: bytes


def split_address(address: str) -> tuple[str, str]:
    """``"node/actor"`` -> ``("node", "actor")``; ValueError if malformed."""
    node, sep, actor = address.partition("/") if isinstance(address, str) else ("", "", "")
    if not sep or not node or not actor:
        raise ValueError(f"malformed address {address!r}: expected 'node/actor'")
    return node, actor


def node_of(address: str) -> str:
    return address.partition("/")[0]


@runtime_checkable
class Transport(Protocol):
    def start(self, node: str, deliver: Callable[[Envelope], None]) -> None:
        """Attach the node named ``node``; incoming envelopes go to ``deliver``."""

    def send(self, env: Envelope) -> bool:
        """Hand an envelope towards ``env.to``'s node; False if it cannot be."""

    def close(self) -> None:
        """Detach; later sends return False."""

    def counters(self) -> dict:
        """Messages and bytes in/out, drops, per this transport."""
