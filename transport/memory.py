"""In-process transport: Nodes in one process talking through a shared hub.

How this works
--------------
A :class:`MemoryNetwork` is the hub; each Node gets its own
:class:`MemoryTransport` from ``network.transport()``. ``send`` looks up the
destination node in the hub and calls its ``deliver`` callback in the
sender's thread (the receiving Node only decodes and enqueues, so this is
quick and keeps per-link FIFO order). Payloads are the real encoded bytes, so
everything that would reach the ZeroMQ transport's peer reaches this one.

For tests the hub can ``partition`` nodes into islands and ``cut`` one-way
links; ``inject(node, envelope)`` delivers a hand-made (possibly hostile)
envelope, as a broken peer would.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Callable, Iterable

from transport.base import Envelope, Undeliverable, node_of

__all__ = ["MemoryNetwork", "MemoryTransport"]


class MemoryNetwork:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[str, Callable[[Envelope], None]] = {}
        self._island: dict[str, int] = {}
        self._cuts: set[tuple[str, str]] = set()

    def transport(self) -> "MemoryTransport":
        return MemoryTransport(self)

    def _attach(self, node: str, deliver: Callable[[Envelope], None]) -> None:
        with self._lock:
            if node in self._nodes:
                raise ValueError(f"a node named {node!r} is already attached to this network")
            self._nodes[node] = deliver

    def _detach(self, node: str) -> None:
        with self._lock:
            self._nodes.pop(node, None)

    def nodes(self) -> list[str]:
        with self._lock:
            return sorted(self._nodes)

    # -- faults ------------------------------------------------------------
    def partition(self, islands: Iterable[Iterable[str]]) -> None:
        """Split nodes into islands; nodes not named form one more island together."""
        island: dict[str, int] = {}
        for i, members in enumerate(islands, start=1):
            for n in members:
                if n in island:
                    raise ValueError(f"node {n!r} is in more than one island")
                island[n] = i
        with self._lock:
            self._island = island

    def cut(self, src: str, dst: str) -> None:
        """One-way cut: nothing from ``src`` reaches ``dst``."""
        with self._lock:
            self._cuts.add((src, dst))

    def heal(self) -> None:
        with self._lock:
            self._island = {}
            self._cuts = set()

    def can_reach(self, src: str, dst: str) -> bool:
        if (src, dst) in self._cuts:
            return False
        return self._island.get(src, 0) == self._island.get(dst, 0)

    def _route(self, src: str, env: Envelope) -> str | Callable[[Envelope], None]:
        dst = node_of(env.to)
        deliver = self._nodes.get(dst)
        if deliver is None:
            return "no such node"
        if not self.can_reach(src, dst):
            return "partitioned"
        return deliver

    def inject(self, node: str, env: Envelope) -> None:
        """Deliver a raw envelope to ``node`` as if a peer had sent it."""
        deliver = self._nodes.get(node)
        if deliver is None:
            raise ValueError(f"no node named {node!r} on this network")
        deliver(env)


class MemoryTransport:
    def __init__(self, network: MemoryNetwork) -> None:
        self.network = network
        self.node: str | None = None
        self._counts: Counter[str] = Counter()

    def start(self, node: str, deliver: Callable[[Envelope], None], peer_event=None, event=None) -> None:
        if self.node is not None:
            raise RuntimeError(f"transport already started for node {self.node!r}")
        self.network._attach(node, self._incoming(deliver))
        self.node = node

    def _incoming(self, deliver: Callable[[Envelope], None]) -> Callable[[Envelope], None]:
        counts = self._counts

        def receive(env: Envelope) -> None:
            counts["msgs_in"] += 1
            counts["bytes_in"] += len(env.payload) if isinstance(env.payload, (bytes, bytearray)) else 0
            deliver([env])
        return receive

    def send(self, env: Envelope) -> None:
        if self.node is None:
            self._counts["dropped_closed"] += 1
            raise Undeliverable("transport closed")
        route = self.network._route(self.node, env)
        if isinstance(route, str):
            self._counts["dropped_" + route.replace(" ", "_")] += 1
            raise Undeliverable(f"node {node_of(env.to)!r}: {route}")
        self._counts["msgs_out"] += 1
        self._counts["bytes_out"] += len(env.payload)
        route(env)

    def close(self) -> None:
        if self.node is not None:
            self.network._detach(self.node)
            self.node = None

    def counters(self) -> dict:
        return dict(self._counts)
