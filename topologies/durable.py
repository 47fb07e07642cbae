"""Durable state for machines that persist (``Persist(key, data)`` effects, e.g. Paxos acceptors).

How this works
--------------
A machine whose constructor takes ``durable=`` keeps state that must survive
a crash: it returns ``Persist(key, data)`` before the sends that depend on it,
and a restarted instance is built with ``durable={key: data, ...}`` (the last
data written per key). A store keeps that mapping per actor address:

* :class:`FileStore` - one append-only log per actor in a directory (a node
  process's run directory), ``<node>.<actor>.durable.jsonl``: one JSON line
  ``[key, data]`` per write, handed to the OS at once (so a SIGKILL of the
  process loses nothing written). ``sync(address)`` makes the log durable
  (``fsync``) and is cheap when nothing was written since the last one: the
  host calls it *before any message leaves the actor* (``before_send`` of
  :class:`~actors.statemachine.StateMachineActor`), so one ``fsync`` covers
  every ``Persist`` of a handler, however many it returned (group commit),
  and no message ever reports state the disk does not hold.

  Loading replays the log, last line per key wins. A torn last line (the
  process died in the middle of a write) is dropped - it was never synced, so
  no message depended on it; a bad line anywhere else is corruption and an
  error. When the log holds more than ``compact_factor`` times as many lines
  as live keys (and at least ``compact_min``), it is rewritten with one line
  per key: to a temporary file, ``fsync``-ed, renamed over the log.
* :class:`MemoryStore` - a dict, for the simulator, where "restart" rebuilds
  the machine in the same process.

Both keep ``writes`` and ``syncs`` counters (a figure for benchmarks).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import IO, Any

__all__ = ["FileStore", "MemoryStore"]


class MemoryStore:
    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self.writes = 0
        self.syncs = 0

    def load(self, address: str) -> dict[str, Any]:
        return copy.deepcopy(self.data.get(address, {}))

    def write(self, address: str, key: str, value: Any) -> None:
        self.data.setdefault(address, {})[key] = copy.deepcopy(value)
        self.writes += 1

    def sync(self, address: str) -> None:
        pass


class _Log:
    __slots__ = ("path", "data", "lines", "file", "dirty")

    def __init__(self, path: Path, data: dict[str, Any], lines: int):
        self.path, self.data, self.lines = path, data, lines
        self.file: IO[str] | None = None
        self.dirty = False


class FileStore:
    def __init__(self, directory: Path | str, *, fsync: bool = True, compact_factor: int = 4,
                 compact_min: int = 256) -> None:
        if compact_factor < 2 or compact_min < 1:
            raise ValueError(f"FileStore: need compact_factor >= 2 and compact_min >= 1, "
                             f"got {compact_factor!r}, {compact_min!r}")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.compact_factor, self.compact_min = compact_factor, compact_min
        self._logs: dict[str, _Log] = {}
        self.writes = 0
        self.syncs = 0
        self.compactions = 0

    def path(self, address: str) -> Path:
        return self.dir / (address.replace("/", ".") + ".durable.jsonl")

    def load(self, address: str) -> dict[str, Any]:
        """The last data written per key for ``address`` (an empty dict if it never wrote)."""
        old = self._logs.pop(address, None)
        if old is not None and old.file is not None:
            old.file.close()
        p = self.path(address)
        data: dict[str, Any] = {}
        lines = 0
        try:
            raw = p.read_bytes()
        except FileNotFoundError:
            raw = b""
        except OSError as e:
            raise RuntimeError(f"durable state of {address} in {p} is unreadable: {e}") from e
        chunks = raw.split(b"\n")
        for i, chunk in enumerate(chunks):
            if not chunk:
                continue
            last = i == len(chunks) - 1  # no newline after it: the write was cut short
            try:
                entry = json.loads(chunk)
                if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
                    raise ValueError(f"expected [key, data], got {chunk[:80]!r}")
            except ValueError as e:
                if last:
                    break  # a torn tail: never synced, so nothing depended on it
                raise RuntimeError(f"durable state of {address} in {p} is corrupt at line {i + 1}: {e}") from e
            if last:
                break  # complete JSON but no newline: still a torn write, drop it
            data[entry[0]] = entry[1]
            lines += 1
        log = _Log(p, data, lines)
        self._logs[address] = log
        if raw and not raw.endswith(b"\n"):
            self._rewrite(log)  # cut the torn tail off before appending after it
        return copy.deepcopy(data)

    def write(self, address: str, key: str, value: Any) -> None:
        """Append ``key = value`` to the log (to the OS at once; durable after the next :meth:`sync`)."""
        log = self._logs.get(address)
        if log is None:
            self.load(address)
            log = self._logs[address]
        line = json.dumps([key, value], separators=(",", ":")) + "\n"
        log.data[key] = json.loads(line)[1]  # what the disk holds (a copy; tuples read back as lists)
        if log.lines + 1 > max(self.compact_min, self.compact_factor * len(log.data)):
            self._rewrite(log)
            self.compactions += 1
        else:
            if log.file is None:
                log.file = open(log.path, "a", encoding="utf-8")
            log.file.write(line)
            log.file.flush()
            log.lines += 1
            log.dirty = True
        self.writes += 1

    def sync(self, address: str) -> None:
        """Make everything written for ``address`` durable (a no-op when nothing was written since the last sync)."""
        log = self._logs.get(address)
        if log is None or not log.dirty:
            return
        if self.fsync and log.file is not None:
            os.fsync(log.file.fileno())
        log.dirty = False
        self.syncs += 1

    def close(self) -> None:
        for log in self._logs.values():
            if log.file is not None:
                if log.dirty and self.fsync:
                    os.fsync(log.file.fileno())
                log.file.close()
                log.file = None
        self._logs.clear()

    def _rewrite(self, log: _Log) -> None:
        if log.file is not None:
            log.file.close()
            log.file = None
        tmp = log.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for k, v in log.data.items():
                f.write(json.dumps([k, v], separators=(",", ":")) + "\n")
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        os.replace(tmp, log.path)
        log.lines = len(log.data)
        log.dirty = False

