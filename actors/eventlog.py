"""The event log: one JSON line per protocol decision.

How this works
--------------
Every ``Emit`` a state machine returns, and every runtime happening worth a
checker's attention (an actor crashed, restarted, a frame was dropped), becomes
one record ``{"time", "node", "actor", "kind", "fields"}`` written as a line of
JSON. Chaos checkers and reports read only this log. Serialisation is
deterministic (fixed key order, no wall-clock stamps added here), so two
simulator runs from one seed produce byte-identical files.

Values that JSON cannot hold are converted: bytes -> hex string, enums -> their
value, registered messages -> their wire map, sets -> sorted lists.
"""

from __future__ import annotations

import enum
import io
import json
import threading
from collections import deque
from pathlib import Path
from typing import IO, Any

from transport.codec import encode_value, is_message

__all__ = ["EventLog", "event_line", "read_events"]


def _jsonable(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, enum.Enum):
        return v.value
    if is_message(v):
        return encode_value(v)
    if isinstance(v, (set, frozenset)):
        return sorted(v, key=repr)
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, Path):
        return str(v)
    return repr(v)


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_jsonable).encode


def event_line(time: float, node: str, actor: str, kind: str, fields: dict | None = None) -> str:
    """The JSON line (without newline) for one event."""
    return _dumps({"time": time, "node": node, "actor": actor, "kind": kind, "fields": fields or {}})


class EventLog:
    """A thread-safe JSON-lines sink.

    ``EventLog(path)`` appends to a file; ``EventLog()`` keeps lines in memory
    (``lines()``), which is what tests and the simulator use by default.
    ``keep=True`` with a path keeps both. ``maxlen`` bounds the lines kept in
    memory (the oldest go first); a long-running Node uses it so that its
    default log cannot grow without bound.
    """

    def __init__(self, path: str | Path | None = None, *, keep: bool | None = None,
                 stream: IO[str] | None = None, maxlen: int | None = None):
        self._lock = threading.Lock()
        self._path = Path(path) if path is not None else None
        self._file: IO[str] | None = None
        if self._path is not None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self._path, "a", encoding="utf-8", buffering=1 << 16)
        self._stream = stream
        keep = keep if keep is not None else (path is None and stream is None)
        self._lines: deque[str] | None = deque(maxlen=maxlen) if keep else None
        self.count = 0

    @property
    def path(self) -> Path | None:
        return self._path

    def emit(self, time: float, node: str, actor: str, kind: str, fields: dict | None = None) -> None:
        line = event_line(time, node, actor, kind, fields)
        with self._lock:
            self.count += 1
            if self._lines is not None:
                self._lines.append(line)
            if self._file is not None:
                self._file.write(line + "\n")
            if self._stream is not None:
                self._stream.write(line + "\n")

    def lines(self) -> list[str]:
        """The lines kept in memory (requires keep=True or no path)."""
        if self._lines is None:
            raise RuntimeError("this EventLog does not keep lines in memory")
        with self._lock:
            return list(self._lines)

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.lines()]

    def text(self) -> str:
        """The whole log as it would be written to a file."""
        return "".join(line + "\n" for line in self.lines())

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def read_events(source: str | Path | IO[str]) -> list[dict]:
    """Read a JSON-lines event log (a path or an open text stream)."""
    if isinstance(source, (str, Path)):
        with open(source, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    if isinstance(source, io.TextIOBase) or hasattr(source, "read"):
        return [json.loads(line) for line in source if line.strip()]
    raise TypeError(f"cannot read events from {type(source).__name__}")
