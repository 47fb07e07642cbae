"""What every transport offers a Node: the envelope and the Transport interface.

How this works
--------------
A Node hands its transport an :class:`Envelope` for every message addressed to
another node. The envelope carries the destination and sender addresses
(``node/actor`` strings), a correlation id (non-zero for ``ask`` traffic) and
the message already encoded by :mod:`transport.codec`; the transport never
looks inside the payload. On the receiving side the transport calls the
node's ``deliver(envelopes)`` callback with a batch (a list, in arrival
order; one element is fine), and the node decodes.

``send`` never blocks for long. When the envelope cannot be handed towards
its destination (no such node, node down or partitioned, outbound queue
full, transport closed) it raises :class:`Undeliverable` with the reason, and
the Node turns that into a counted, logged dead letter. The in-memory transport (:mod:`transport.memory`) and the ZeroMQ
transport share this interface, so actors cannot tell which one carries them.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Protocol, runtime_checkable

__all__ = ["Envelope", "Transport", "Undeliverable", "node_of", "split_address"]


class Undeliverable(Exception):
    """The transport could not take this envelope; the message says why."""


class Envelope(NamedTuple):
    """One message between nodes (a named tuple: cheap to build on the hot path)."""

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
    def start(self, node: str, deliver: Callable[[list[Envelope]], None],
              peer_event: Callable | None = None, event: Callable[[str, dict], None] | None = None) -> None:
        """Attach the node named ``node``; incoming batches of envelopes go to ``deliver``,
        peer up/down changes to ``peer_event``, transport events to ``event``."""

    def send(self, env: Envelope) -> None:
        """Hand an envelope towards ``env.to``'s node, or raise Undeliverable."""

    def close(self) -> None:
        """Detach; later sends return False."""

    def counters(self) -> dict:
        """Messages and bytes in/out, drops, per this transport."""
