"""Durable store write throughput: FileStore against a plain JSON-lines writer, in the same run.

    python tests/bench/durable.py [--records 5000] [--group 2] [--rounds 3] [--dir DIR]

The load is an acceptor's: 11 keys, each write a small promise/accepted dict,
``--group`` writes per handler and one ``sync`` before the handler's first send
(group commit), as the node host does. The baseline is a plain JSON-lines
writer with the same pattern (a line per write, flushed to the OS at once,
one ``fsync`` per sync): what the store cost before records were checksummed
and the synced point recorded. Both run with ``fsync`` on (records/s bound by
the disk) and off (the CPU cost of the format). Rounds alternate between the
two writers so drift hits both; the median round is reported. The store runs
with its defaults (compaction included). Last line: one JSON object of the
figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parents[1]))

from topologies.durable import FileStore  # noqa: E402

ADDR = "n1/acceptor"
KEYS = [f"k{i:02d}" for i in range(11)]


def value(i: int) -> dict:
    return {"promised": [i, "n2"], "accepted": [i, "n2", f"value-{i}"]}


def run_store(directory: Path, records: int, group: int, fsync: bool) -> float:
    s = FileStore(directory, fsync=fsync)
    s.load(ADDR)
    t0 = time.perf_counter()
    for i in range(records):
        s.write(ADDR, KEYS[i % len(KEYS)], value(i))
        if i % group == group - 1:
            s.sync(ADDR)
    s.sync(ADDR)
    elapsed = time.perf_counter() - t0
    s.close()
    return records / elapsed


def run_plain(directory: Path, records: int, group: int, fsync: bool) -> float:
    f = open(directory / "plain.jsonl", "a", encoding="utf-8")
    dirty = False
    t0 = time.perf_counter()
    for i in range(records):
        f.write(json.dumps([KEYS[i % len(KEYS)], value(i)], separators=(",", ":")) + "\n")
        f.flush()
        dirty = True
        if i % group == group - 1 and dirty:
            if fsync:
                os.fsync(f.fileno())
            dirty = False
    if dirty and fsync:
        os.fsync(f.fileno())
    elapsed = time.perf_counter() - t0
    f.close()
    return records / elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=5000, help="writes per round with fsync (x20 without)")
    ap.add_argument("--group", type=int, default=2, help="writes per sync (a handler's persists)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary directory)")
    args = ap.parse_args()
    figures: dict[str, float] = {}
    for fsync in (True, False):
        n = args.records if fsync else args.records * 20
        store, plain = [], []
        for _ in range(args.rounds):
            for runner, out in ((run_plain, plain), (run_store, store)):
                d = Path(tempfile.mkdtemp(prefix="durable-bench-", dir=args.dir))
                try:
                    out.append(runner(d, n, args.group, fsync))
                finally:
                    shutil.rmtree(d, ignore_errors=True)
        tag = "fsync" if fsync else "nofsync"
        s, p = statistics.median(store), statistics.median(plain)
        figures.update({f"store_{tag}_records_per_s": round(s), f"plain_{tag}_records_per_s": round(p),
                        f"ratio_{tag}": round(s / p, 3)})
        print(f"{tag:8} ({n} writes, a sync per {args.group}): FileStore {s:10.0f} records/s   "
              f"plain JSON lines {p:10.0f} records/s   ratio {s / p:.3f}")
    figures.update({"records": args.records, "group": args.group, "rounds": args.rounds})
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
