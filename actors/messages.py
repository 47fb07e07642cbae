"""Runtime messages: death watch and the node's system channel.

These cross nodes like any other message, so they are registered with the
codec under the ``runtime.`` prefix.
"""

from __future__ import annotations

from transport.codec import message

__all__ = ["DeadLetterNotice", "PeerDown", "PeerUp", "Terminated", "Unwatch", "Watch"]


@message("runtime.Terminated")
class Terminated:
    """Sent to every watcher of ``address`` when that actor stops for good."""

    address: str
    reason: str = "stopped"


@message("runtime.Watch")
class Watch:
    """To a node's ``$sys`` address: tell ``watcher`` when ``target`` stops."""

    target: str
    watcher: str


@message("runtime.Unwatch")
class Unwatch:
    target: str
    watcher: str


@message("runtime.PeerUp")
class PeerUp:
    """To peer subscribers: node ``node`` (this incarnation of it) is reachable."""

    node: str
    incarnation: int = 0


@message("runtime.PeerDown")
class PeerDown:
    """To peer subscribers: node ``node`` is unreachable (``reason``: silent, restarted)."""

    node: str
    incarnation: int = 0
    reason: str = "silent"


@message("runtime.DeadLetterNotice")
class DeadLetterNotice:
    """To the sender's node ``$sys``: a message it sent could not be delivered."""

    to: str
    sender: str
    message: str
    reason: str
