"""Actors that the multi-process tests run inside `python -m topologies.node`."""

from __future__ import annotations

from actors import Actor
from actors.messages import PeerDown, PeerUp
from transport.codec import message


@message("zmqtest.Ping")
class Ping:
    n: int
    pad: bytes = b""


@message("zmqtest.Pong")
class Pong:
    n: int
    by: str = ""


@message("zmqtest.Forward")
class Forward:
    """Ask the relay to ping ``target`` and answer the asker with the Pong."""

    target: str
    n: int


class Echo(Actor):
    def receive(self, msg, sender):
        if isinstance(msg, Ping):
            self.reply(Pong(msg.n, self.address))


class Relay(Actor):
    """Forward(target, n): tells target Ping(n) itself, answers the asker when the Pong comes."""

    def __init__(self):
        self.waiting: dict[int, str] = {}

    def receive(self, msg, sender):
        if isinstance(msg, Forward):
            self.waiting[msg.n] = sender
            self.tell(msg.target, Ping(msg.n))
        elif isinstance(msg, Pong):
            asker = self.waiting.pop(msg.n, None)
            if asker is not None:
                self.tell(asker, msg)


class PeerLog(Actor):
    """Subscribes to peer changes and writes each one to the event log."""

    def on_start(self):
        self.subscribe_peers()

    def receive(self, msg, sender):
        if isinstance(msg, (PeerUp, PeerDown)):
            self.emit("test.peer", kind=type(msg).__name__, node=msg.node, incarnation=msg.incarnation)
