"""Durable state for machines that persist (``Persist(key, data)`` effects, e.g. Paxos acceptors).

How this works
--------------
A machine whose constructor takes ``durable=`` keeps state that must survive
a crash: it returns ``Persist(key, data)`` before the sends that depend on it,
and a restarted instance is built with ``durable={key: data, ...}`` (the last
data written per key). A store keeps that mapping per actor address:

* :class:`FileStore` - one JSON file per actor in a directory (a node
  process's run directory), rewritten atomically on each write: the new
  content goes to a temporary file that is flushed and ``fsync``-ed, then
  renamed over the old one, so a SIGKILL leaves either the old or the new
  state, never half of one. A restarted process (chaos ``restart``) or a
  supervised restart of the actor reads it back.
* :class:`MemoryStore` - a dict, for the simulator, where "restart" rebuilds
  the machine in the same process.

``persist_effect(store, address)`` returns the callback a host uses to carry
out ``Persist`` effects in effect order (before any later effect of the list).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["FileStore", "MemoryStore"]


class MemoryStore:
    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    def load(self, address: str) -> dict[str, Any]:
        return copy.deepcopy(self.data.get(address, {}))

    def write(self, address: str, key: str, value: Any) -> None:
        self.data.setdefault(address, {})[key] = copy.deepcopy(value)


class FileStore:
    def __init__(self, directory: Path | str) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._cache: dict[str, dict[str, Any]] = {}

    def path(self, address: str) -> Path:
        return self.dir / (address.replace("/", ".") + ".durable.json")

    def load(self, address: str) -> dict[str, Any]:
        p = self.path(address)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as e:
            raise RuntimeError(f"durable state of {address} in {p} is unreadable: {e}") from e
        if not isinstance(data, dict):
            raise RuntimeError(f"durable state of {address} in {p} is not a JSON object")
        self._cache[address] = data
        return copy.deepcopy(data)

    def write(self, address: str, key: str, value: Any) -> None:
        data = self._cache.get(address)
        if data is None:
            data = self.load(address)
        data[key] = value
        p = self.path(address)
        tmp = p.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
