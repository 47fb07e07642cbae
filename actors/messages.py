"""Runtime messages: death watch and the node's system channel.

These cross nodes like any other message, so they are registered with the
codec under the ``runtime.`` prefix.
"""

from __future__ import annotations

from transport.codec import message

__all__ = ["Terminated", "Unwatch", "Watch"]


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
