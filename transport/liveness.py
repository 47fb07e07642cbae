"""Failure detection as a pure state machine: heard-from times in, up/down out.

How this works
--------------
The transport tells the detector whenever anything arrives from a peer
(``heard``: data or heartbeat, any traffic counts) and asks it, on every
heartbeat tick, which peers have been silent too long (``check``). A peer is
*down* once nothing was heard from it for ``interval * liveness`` seconds; with
ticks every ``interval``, detection happens at most ``interval * (liveness+1)``
after the last message (defaults 0.5 s x 4: within 2.5 s).

Peers move ``unknown -> up -> down -> up ...``. A peer that was added but never
heard from goes ``unknown -> down`` after the same silence, so a send to a
node that never came up fails fast too. Heartbeats carry the sender's
*incarnation* (a number fixed when its transport starts): a different
incarnation from an up peer means it restarted, which is reported as
``down`` (old incarnation) then ``up`` (new one) at once, without waiting for
the timeout.

No clock, no I/O: ``now`` is passed in, so the bound is tested on virtual time.
"""

from __future__ import annotations

import enum

import attrs

__all__ = ["FailureDetector", "PeerChange", "PeerState"]


class PeerState(enum.Enum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


@attrs.frozen
class PeerChange:
    peer: str
    state: PeerState            # UP or DOWN
    incarnation: int            # the incarnation that came up or went down (0: never known)
    reason: str                 # "heard", "silent", "restarted", "left", "reconnected"
    silent_for: float = 0.0     # for DOWN by silence: how long nothing was heard


@attrs.define
class _Peer:
    state: PeerState
    last_heard: float
    incarnation: int = 0


class FailureDetector:
    def __init__(self, interval: float = 0.5, liveness: int = 4):
        if not interval > 0:
            raise ValueError(f"heartbeat interval must be > 0, got {interval!r}")
        if not isinstance(liveness, int) or liveness < 1:
            raise ValueError(f"liveness must be an int >= 1 (missed intervals), got {liveness!r}")
        self.interval = float(interval)
        self.liveness = liveness
        self.timeout = self.interval * liveness
        self._peers: dict[str, _Peer] = {}

    @property
    def bound(self) -> float:
        """Longest time from the last message heard to the DOWN report."""
        return self.timeout + self.interval

    def add(self, peer: str, now: float) -> None:
        """Start watching ``peer`` (state unknown until heard from)."""
        if peer not in self._peers:
            self._peers[peer] = _Peer(PeerState.UNKNOWN, now)

    def remove(self, peer: str) -> None:
        self._peers.pop(peer, None)

    def state(self, peer: str) -> PeerState | None:
        p = self._peers.get(peer)
        return None if p is None else p.state

    def incarnation(self, peer: str) -> int:
        p = self._peers.get(peer)
        return 0 if p is None else p.incarnation

    def peers(self) -> dict[str, PeerState]:
        return {name: p.state for name, p in self._peers.items()}

    def heard(self, peer: str, now: float, incarnation: int | None = None) -> list[PeerChange]:
        """Something arrived from ``peer`` (``incarnation`` if it was a heartbeat)."""
        p = self._peers.get(peer)
        if p is None:
            p = self._peers[peer] = _Peer(PeerState.UNKNOWN, now)
        p.last_heard = now
        changes: list[PeerChange] = []
        if incarnation is not None and p.incarnation and incarnation != p.incarnation:
            if p.state is PeerState.UP:
                changes.append(PeerChange(peer, PeerState.DOWN, p.incarnation, "restarted"))
            p.state = PeerState.DOWN
        if incarnation is not None:
            p.incarnation = incarnation
        if p.state is not PeerState.UP:
            p.state = PeerState.UP
            changes.append(PeerChange(peer, PeerState.UP, p.incarnation, "heard"))
        return changes

    def left(self, peer: str, reason: str = "left") -> list[PeerChange]:
        """The peer said goodbye (a clean shutdown): down now, without waiting.

        Also used, with another ``reason``, when the transport knows the peer's session ended
        (e.g. "reconnected": it now speaks on another connection).
        """
        p = self._peers.get(peer)
        if p is None or p.state is PeerState.DOWN:
            return []
        p.state = PeerState.DOWN
        return [PeerChange(peer, PeerState.DOWN, p.incarnation, reason)]

    def check(self, now: float) -> list[PeerChange]:
        """Peers silent for longer than the timeout go down (reported once)."""
        changes = []
        for name, p in self._peers.items():
            if p.state is not PeerState.DOWN and now - p.last_heard > self.timeout:
                p.state = PeerState.DOWN
                changes.append(PeerChange(name, PeerState.DOWN, p.incarnation, "silent", now - p.last_heard))
        return changes
