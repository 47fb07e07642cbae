"""Durable state for machines that persist (``Persist(key, data)`` effects, e.g. Paxos acceptors).

How this works
--------------
A machine whose constructor takes ``durable=`` keeps state that must survive
a crash: it returns ``Persist(key, data)`` before the sends that depend on it,
and a restarted instance is built with ``durable={key: data, ...}`` (the last
data written per key). A store keeps that mapping per actor address:

* :class:`FileStore` - one append-only log per actor in a directory (a node
  process's run directory), ``<node>.<actor>.durable.jsonl``, and beside it a
  small sidecar ``<node>.<actor>.durable.synced`` that records how far the log
  has been synced. Every write is one line, handed to the OS at once (so a
  SIGKILL of the process loses nothing written). ``sync(address)`` makes the
  log durable (``fsync``), then records the last synced sequence number in the
  sidecar (``fsync`` again); it is cheap when nothing was written since the
  last one. The host calls it *before any message leaves the actor*
  (``before_send`` of :class:`~actors.statemachine.StateMachineActor`), so one
  sync covers every ``Persist`` of a handler, however many it returned (group
  commit; for an actor on the transport's I/O thread, ``dispatch = "loop"``,
  every handler of one loop turn: their sends wait for the turn's end), and no
  message ever reports state the disk does not hold.

  ``Persist(key, None)`` deletes ``key``: the record ``[key, null]`` is
  appended like any other, loading drops the key, and a compaction leaves it
  out (so a machine that retires keys keeps a log bounded by its live keys).

  Format (docs/durable.md): each line is ``<crc32 hex8> <seq> <json>\\n``; the
  CRC32 covers ``<seq> <json>`` exactly as stored. Line 1 is a header whose
  JSON is ``{"durable": 2, "snapshot": K}`` and whose seq is the base ``B``;
  records follow with seq ``B+1, B+2, ...`` and JSON ``[key, data]``. A
  compaction writes the live keys as a snapshot (``K`` records ending at the
  current seq, so sequence numbers never go back) to a temporary file,
  ``fsync``-s it and renames it over the log. The sidecar holds two fixed-size
  checksummed slots written alternately in place (a write torn by a crash
  leaves the other, older slot valid); the synced point is the highest valid
  slot, and never less than ``B + K`` (a snapshot is synced before it is
  renamed into place).

  Loading verifies every line: checksum, strict framing, consecutive sequence
  numbers, a ``[key, data]`` entry. Every complete line must verify, wherever
  it is; a log that ends before its synced point (truncated), a missing or
  empty log whose sidecar says records were synced, and a log without its
  sidecar are refused with :class:`CorruptLog`, naming the file and the line,
  and nothing is changed on disk: the operator decides (docs/durable.md).
  Only an incomplete last line (no newline) *after* the synced point is a
  torn write: it was never synced, so no message depended on it; it is cut
  off, after the rest of the file passed every check. When the log holds more
  than ``compact_factor`` times as many records as live keys (and at least
  ``compact_min``), it is compacted.

  Logs in the old format (plain ``[key, data]`` lines, no sidecar) are refused
  with a message saying how to migrate (``python -m topologies.durable migrate
  LOG``): such a log cannot be verified - a truncation in the middle or a
  changed digit looks exactly like a good log - so loading it automatically
  would accept the very damage the format exists to catch.
* :class:`MemoryStore` - a dict, for the simulator, where "restart" rebuilds
  the machine in the same process.

Both keep ``writes`` and ``syncs`` counters (a figure for benchmarks).
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
import zlib
from pathlib import Path
from typing import IO, Any

__all__ = ["CorruptLog", "FileStore", "MemoryStore", "verify"]

FORMAT = 2
_LINE = re.compile(rb"([0-9a-f]{8}) ((0|[1-9][0-9]{0,19}) (.*))\Z", re.S)
_SLOT = 35  # b"durable2 %016x %08x\n": the seq, then the CRC32 of the first 25 bytes
_SLOT_RE = re.compile(rb"(durable2 ([0-9a-f]{16})) ([0-9a-f]{8})\n\Z")
_HOW = "the file was left untouched; see docs/durable.md for what to do"


class CorruptLog(RuntimeError):
    """A durable log (or its sidecar) that does not verify: ``path`` and the 1-based ``line`` where it fails."""

    def __init__(self, path: Path, line: int, reason: str, address: str = ""):
        self.path, self.line, self.reason = Path(path), line, reason
        of = f"durable state of {address} in " if address else "durable log "
        super().__init__(f"{of}{path} is corrupt at line {line}: {reason} ({_HOW})")


class MemoryStore:
    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self.writes = 0
        self.syncs = 0

    def load(self, address: str) -> dict[str, Any]:
        return copy.deepcopy(self.data.get(address, {}))

    def write(self, address: str, key: str, value: Any) -> None:
        if value is None:
            self.data.setdefault(address, {}).pop(key, None)  # a deletion
        else:
            self.data.setdefault(address, {})[key] = copy.deepcopy(value)
        self.writes += 1

    def sync(self, address: str) -> None:
        pass


# --- the format -------------------------------------------------------------------------

def _line(seq: int, payload: str) -> bytes:
    body = f"{seq} {payload}".encode("ascii")  # json.dumps escapes everything else
    return b"%08x %s\n" % (zlib.crc32(body), body)


def _header(base: int, snapshot: int) -> bytes:
    return _line(base, json.dumps({"durable": FORMAT, "snapshot": snapshot}, separators=(",", ":")))


def _slot(seq: int) -> bytes:
    head = b"durable2 %016x" % seq
    return b"%s %08x\n" % (head, zlib.crc32(head))


def _parse(chunk: bytes) -> tuple[int, Any]:
    """(seq, decoded JSON) of one line without its newline; ValueError if it does not verify."""
    m = _LINE.match(chunk)
    if m is None:
        raise ValueError(f"not a '<crc32> <seq> <json>' record: {chunk[:60]!r}")
    if int(m.group(1), 16) != zlib.crc32(m.group(2)):
        raise ValueError("checksum mismatch")
    try:
        return int(m.group(3)), json.loads(m.group(4))
    except RecursionError:  # hostile nesting behind a valid checksum
        raise ValueError("JSON nested too deeply") from None


def read_synced(sidecar: Path) -> int | None:
    """The synced seq the sidecar records (None if it does not exist); CorruptLog if it does not verify."""
    try:
        raw = sidecar.read_bytes()
    except FileNotFoundError:
        return None
    if len(raw) != 2 * _SLOT:
        raise CorruptLog(sidecar, 1, f"sidecar is {len(raw)} bytes, expected {2 * _SLOT}")
    seqs = []
    for i in range(2):
        m = _SLOT_RE.match(raw[i * _SLOT:(i + 1) * _SLOT])
        if m and int(m.group(3), 16) == zlib.crc32(m.group(1)):
            seqs.append(int(m.group(2), 16))
    if not seqs:
        raise CorruptLog(sidecar, 1, "neither slot of the sidecar verifies")
    return max(seqs)


def verify(path: Path, address: str = "") -> tuple[dict[str, Any], int, int, int]:
    """Check the log at ``path`` against its sidecar without changing anything.

    Returns ``(data, last_seq, records, keep)``: the last data per key, the last
    sequence number, the number of records (lines after the header) and the
    number of bytes that verified (anything after ``keep`` is a torn, unsynced
    tail). Raises :class:`CorruptLog` naming the file and line.
    """
    path = Path(path)
    sidecar = path.with_suffix(".synced")
    synced = read_synced(sidecar)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raw = None
    except OSError as e:
        raise CorruptLog(path, 1, f"unreadable: {e}", address) from e
    if synced is None:
        if raw is None:
            return {}, 0, 0, 0
        if raw.startswith(b"["):
            raise CorruptLog(path, 1, "an old-format log (no checksums, no sidecar) cannot be verified; check it, "
                             f"then convert it with: python -m topologies.durable migrate {path}", address)
        raise CorruptLog(path, 1, f"its sidecar {sidecar.name} is missing, so the synced point is unknown", address)
    if not raw:
        if synced > 0:
            what = "missing" if raw is None else "empty"
            raise CorruptLog(path, 1, f"the log is {what} but its sidecar says {synced} records were synced", address)
        return {}, 0, 0, 0
    chunks = raw.split(b"\n")
    tail = chunks.pop()  # after the last newline: b"" for a complete file, else an incomplete (torn) line
    data: dict[str, Any] = {}
    base = protected = last = 0
    for i, chunk in enumerate(chunks):
        n = i + 1
        try:
            seq, entry = _parse(chunk)
        except ValueError as e:
            if i == 0 and chunk.startswith(b"["):
                raise CorruptLog(path, n, "an old-format line in a new-format log", address) from None
            where = "at or before the synced point" if last < protected or i == 0 else \
                "after the synced point, but a complete line (not a torn write)"
            raise CorruptLog(path, n, f"{e}; {where}", address) from None
        if i == 0:
            if not (isinstance(entry, dict) and entry.get("durable") == FORMAT
                    and type(entry.get("snapshot")) is int and entry["snapshot"] >= 0):
                raise CorruptLog(path, n, f"expected the header {{'durable': {FORMAT}, 'snapshot': K}}, "
                                 f"got {chunk[:60]!r}", address)
            base = last = seq
            protected = max(synced, base + entry["snapshot"])
            continue
        if seq != last + 1:
            raise CorruptLog(path, n, f"sequence gap: record {seq} after {last}", address)
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise CorruptLog(path, n, f"expected [key, data], got {chunk[:60]!r}", address)
        if entry[1] is None:
            data.pop(entry[0], None)  # a deletion record
        else:
            data[entry[0]] = entry[1]
        last = seq
    if not chunks:
        raise CorruptLog(path, 1, "the header line is incomplete", address)
    if last < protected:
        n = len(chunks) + 1  # the torn line, or where the next record should have started
        raise CorruptLog(path, n, f"the log ends at record {last} but record {protected} was synced "
                         f"(truncated{', torn line at the end' if tail else ''})", address)
    return data, last, last - base, len(raw) - len(tail)


# --- the file store ------------------------------------------------------------------------

class _Log:
    __slots__ = ("path", "sidecar", "data", "lines", "seq", "file", "side", "slot", "dirty", "fresh")

    def __init__(self, path: Path, data: dict[str, Any], lines: int, seq: int):
        self.path, self.data, self.lines, self.seq = path, data, lines, seq
        self.sidecar = path.with_suffix(".synced")
        self.file: IO[bytes] | None = None
        self.side: int | None = None  # the sidecar's descriptor, open once the log exists
        self.slot = 0  # the sidecar slot the next sync writes (the other holds the newest synced point)
        self.dirty = False
        self.fresh = True  # no log on disk yet (or an empty one): the first write creates it

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.side is not None:
            os.close(self.side)
            self.side = None


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

    def sidecar(self, address: str) -> Path:
        return self.path(address).with_suffix(".synced")

    def load(self, address: str) -> dict[str, Any]:
        """The last data written per key for ``address`` (an empty dict if it never wrote).

        Raises :class:`CorruptLog` (a ``RuntimeError``) if the log does not verify, changing nothing on disk.
        """
        old = self._logs.pop(address, None)
        if old is not None:
            old.close()
        p = self.path(address)
        data, seq, lines, keep = verify(p, address)
        log = _Log(p, data, lines, seq)
        log.fresh = keep == 0
        if keep and p.stat().st_size > keep:  # a torn, unsynced tail: cut it before appending after it
            with open(p, "r+b") as f:
                f.truncate(keep)
                if self.fsync:
                    os.fsync(f.fileno())
        self._logs[address] = log
        return copy.deepcopy(data)

    def write(self, address: str, key: str, value: Any) -> None:
        """Append ``key = value`` to the log (to the OS at once; durable after the next :meth:`sync`)."""
        log = self._logs.get(address)
        if log is None:
            self.load(address)
            log = self._logs[address]
        payload = json.dumps([key, value], separators=(",", ":"))
        if value is None:
            log.data.pop(key, None)  # a deletion: the record stays in the log until the next compaction
        else:
            log.data[key] = json.loads(payload)[1]  # what the disk holds (a copy; tuples read back as lists)
        log.seq += 1
        if log.fresh:
            self._rewrite(log)  # the first write: sidecar, then a log holding a snapshot of this record
        elif log.lines + 1 > max(self.compact_min, self.compact_factor * len(log.data)):
            self._rewrite(log)
            self.compactions += 1
        else:
            if log.file is None:
                log.file = open(log.path, "ab")
            log.file.write(_line(log.seq, payload))
            log.file.flush()
            log.lines += 1
            log.dirty = True
        self.writes += 1

    def sync(self, address: str) -> None:
        """Make everything written for ``address`` durable (a no-op when nothing was written since the last sync)."""
        log = self._logs.get(address)
        if log is None or not log.dirty:
            return
        self._sync(log)
        self.syncs += 1

    def close(self) -> None:
        for log in self._logs.values():
            if log.dirty:
                self._sync(log)
            log.close()
        self._logs.clear()

    def _sync(self, log: _Log) -> None:
        if self.fsync and log.file is not None:
            os.fsync(log.file.fileno())
        self._mark(log, log.seq)  # only after the records are on disk: the sidecar never claims more
        log.dirty = False

    def _mark(self, log: _Log, seq: int) -> None:
        """Record ``seq`` as synced in the sidecar's older slot (the newer one stays valid if this write tears)."""
        if log.side is None:
            self._open_sidecar(log)
        assert log.side is not None
        os.pwrite(log.side, _slot(seq), log.slot * _SLOT)
        if self.fsync:
            os.fdatasync(log.side) if hasattr(os, "fdatasync") else os.fsync(log.side)
        log.slot ^= 1

    def _open_sidecar(self, log: _Log) -> None:
        """Open the sidecar for in-place updates, creating it (durably, before any log exists) if needed."""
        if not log.sidecar.exists():
            tmp = log.sidecar.with_suffix(".synced.tmp")
            with open(tmp, "wb") as f:
                f.write(_slot(0) * 2)
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
            os.replace(tmp, log.sidecar)
            self._sync_dir()
        log.side = os.open(log.sidecar, os.O_RDWR)
        slots = os.pread(log.side, 2 * _SLOT, 0)
        ok = [bool((m := _SLOT_RE.match(slots[i * _SLOT:(i + 1) * _SLOT]))
                   and int(m.group(3), 16) == zlib.crc32(m.group(1))) for i in range(2)]
        newest = max((i for i in range(2) if ok[i]),
                     key=lambda i: int(slots[i * _SLOT + 9:i * _SLOT + 25], 16), default=1)
        log.slot = newest ^ 1

    def _sync_dir(self) -> None:
        if self.fsync:
            fd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _rewrite(self, log: _Log) -> None:
        """Write the live keys as a snapshot ending at ``log.seq``, synced, renamed over the log."""
        if log.file is not None:
            log.file.close()
            log.file = None
        if log.side is None:
            self._open_sidecar(log)  # the sidecar exists before the log does: a log without one is damage
        k = len(log.data)
        base = log.seq - k
        tmp = log.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(_header(base, k))
            for i, (key, v) in enumerate(log.data.items()):
                f.write(_line(base + 1 + i, json.dumps([key, v], separators=(",", ":"))))
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        os.replace(tmp, log.path)
        self._sync_dir()
        self._mark(log, log.seq)
        log.lines = k
        log.dirty = log.fresh = False


# --- operator commands --------------------------------------------------------------------

def migrate(path: Path, *, fsync: bool = True) -> str:
    """Convert an old-format log (``[key, data]`` lines) to this format; the old file is kept as ``<log>.v1``."""
    path = Path(path)
    sidecar = path.with_suffix(".synced")
    if sidecar.exists():
        raise SystemExit(f"{path}: has a sidecar {sidecar.name}, so it is not an old-format log")
    raw = path.read_bytes()
    data: dict[str, Any] = {}
    chunks = raw.split(b"\n")
    tail = chunks.pop()
    for i, chunk in enumerate(chunks):
        try:
            entry = json.loads(chunk)
        except (ValueError, RecursionError) as e:
            raise SystemExit(f"{path}: line {i + 1} is not JSON ({e}); nothing changed") from None
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise SystemExit(f"{path}: line {i + 1} is not a [key, data] entry; nothing changed")
        data[entry[0]] = entry[1]
    backup = path.with_name(path.name + ".v1")
    if backup.exists():
        raise SystemExit(f"{path}: {backup} already exists; nothing changed")
    os.replace(path, backup)
    store = FileStore(path.parent, fsync=fsync)
    log = _Log(path, data, 0, len(data))
    store._rewrite(log)
    log.close()
    note = f"; an incomplete last line ({len(tail)} bytes) was not carried over" if tail else ""
    return f"{path}: {len(data)} keys from {len(chunks)} lines migrated, the old file kept as {backup}{note}"


def main(argv: list[str] | None = None) -> int:
    import argparse
    p = argparse.ArgumentParser(prog="python -m topologies.durable", description="Check or migrate durable logs.")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="verify logs against their sidecars; change nothing")
    c.add_argument("logs", nargs="+", type=Path)
    m = sub.add_parser("migrate", help="convert an old-format log after you have checked it")
    m.add_argument("log", type=Path)
    args = p.parse_args(argv)
    if args.cmd == "migrate":
        print(migrate(args.log))
        return 0
    bad = 0
    for path in args.logs:
        try:
            data, seq, records, keep = verify(path)
        except CorruptLog as e:
            print(e)
            bad += 1
            continue
        size = path.stat().st_size if path.exists() else 0
        torn = f", a torn unsynced tail of {size - keep} bytes" if size > keep else ""
        print(f"{path}: ok, {len(data)} keys, {records} records up to seq {seq}, "
              f"synced to {read_synced(path.with_suffix('.synced'))}{torn}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
