"""Ping-pong: the smallest protocol, used by the demo and as a reference shape.

How this works
--------------
A :class:`Pinger` plays ``rounds`` rounds against one :class:`Ponger`. Each
round it sends ``Ping(seq)`` and sets a retry timer; a ``Pong`` with the
current ``seq`` ends the round (its round-trip time is emitted) and starts the
next one, at once or ``interval`` seconds later; the timer resends the current ``Ping`` if no answer came (so the
game survives message loss); a ``Pong`` for an older round is stale and
ignored. After the last round the pinger emits ``pingpong.done`` and stops
its timer. The ponger answers every ``Ping`` it receives.

Both are pure state machines: time arrives as ``now``, nothing is sent
except by returning ``Send`` effects.
"""

from __future__ import annotations

import enum

from protocols.core import CancelTimer, Effect, Emit, Send, SetTimer, TimerFired
from transport.codec import message

__all__ = ["Ping", "Pinger", "Ponger", "Pong"]


@message("pingpong.Ping")
class Ping:
    seq: int


@message("pingpong.Pong")
class Pong:
    seq: int


class PingerState(enum.Enum):
    IDLE = "idle"
    WAITING = "waiting"
    DONE = "done"


class Pinger:
    tick_interval = None

    def __init__(self, peer: str, rounds: int = 10, retry_after: float = 0.5, interval: float = 0.0):
        if rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {rounds}")
        if retry_after <= 0:
            raise ValueError(f"retry_after must be > 0, got {retry_after}")
        if interval < 0:
            raise ValueError(f"interval must be >= 0, got {interval}")
        self.peer = peer
        self.rounds = rounds
        self.retry_after = retry_after
        self.interval = interval
        self.state = PingerState.IDLE
        self.seq = 0
        self.sent_at = 0.0
        self.retries = 0
        self.rtts: list[float] = []

    def tick(self, now: float) -> list[Effect]:
        if self.state is PingerState.IDLE:
            return self._next_round(now)
        return []

    def handle(self, msg, sender: str, now: float) -> list[Effect]:
        if isinstance(msg, Pong):
            if self.state is not PingerState.WAITING or msg.seq != self.seq:
                return [Emit("pingpong.stale", {"seq": msg.seq, "current": self.seq})]
            rtt = now - self.sent_at
            self.rtts.append(rtt)
            effects: list[Effect] = [Emit("pingpong.round", {"seq": self.seq, "rtt": rtt})]
            if self.seq >= self.rounds:
                self.state = PingerState.DONE
                effects += [CancelTimer("retry"),
                            Emit("pingpong.done", {"rounds": self.rounds, "retries": self.retries})]
                return effects
            if self.interval:
                self.state = PingerState.IDLE
                return effects + [CancelTimer("retry"), SetTimer("next", now + self.interval)]
            return effects + self._next_round(now)
        if isinstance(msg, TimerFired) and msg.key == "next":
            return self._next_round(now) if self.state is PingerState.IDLE else []
        if isinstance(msg, TimerFired) and msg.key == "retry":
            if self.state is not PingerState.WAITING:
                return []
            self.retries += 1
            self.sent_at = now
            return [Emit("pingpong.retry", {"seq": self.seq}),
                    Send(self.peer, Ping(self.seq)),
                    SetTimer("retry", now + self.retry_after)]
        return [Emit("pingpong.unexpected", {"message": type(msg).__name__, "from": sender})]

    def _next_round(self, now: float) -> list[Effect]:
        self.state = PingerState.WAITING
        self.seq += 1
        self.sent_at = now
        return [Send(self.peer, Ping(self.seq)), SetTimer("retry", now + self.retry_after)]

    @property
    def done(self) -> bool:
        return self.state is PingerState.DONE


class Ponger:
    tick_interval = None

    def __init__(self) -> None:
        self.answered = 0

    def tick(self, now: float) -> list[Effect]:
        return []

    def handle(self, msg, sender: str, now: float) -> list[Effect]:
        if isinstance(msg, Ping):
            self.answered += 1
            return [Send(sender, Pong(msg.seq))]
        return [Emit("pingpong.unexpected", {"message": type(msg).__name__, "from": sender})]
