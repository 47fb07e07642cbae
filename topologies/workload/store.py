"""The queue's durable store: SQLite in WAL mode, one transaction per handler (group commit).

How this works
--------------
:class:`SqliteTaskStore` keeps one row per task (``id`` -> the task's row,
msgpack-encoded: payloads may hold bytes) in a table ``tasks`` of an SQLite
database opened in WAL mode with ``synchronous=FULL``: a committed transaction
is on disk when ``commit`` returns. :meth:`apply` writes a batch of rows and
drops a batch of ids in one transaction.

:class:`DurableMachine` is the adapter-owned wrapper that makes the rule hold
for the queue service (:class:`protocols.workload.queue_service.QueueService`,
which stays pure): it calls the machine's ``handle`` / ``tick``, takes every
``StoreTasks`` effect out of the returned list, commits them all in one
transaction, and only then hands the remaining effects (the ``Enqueued``,
``Dispatch`` and ``ResultAck`` sends among them) to its host. So nothing is
acknowledged that is not on disk, and a burst of writes in one handler costs
one ``fsync``; with a ``commit_window`` the handlers of that many seconds share
one transaction (their effects held until it commits). A commit that fails (disk full, I/O error) raises: the actor
crashes and is restarted from what the disk holds, and no acknowledgement of
the lost write ever left.

:func:`durable_queue` is the factory of the ``workload.queue`` actor kind: it
opens the database (``db``: a path; ``""`` = in memory, lost with the process;
``{run_dir}/{address}.sqlite`` = one per run and actor, new on the run's first
start), loads every row and builds the service with ``restored=`` them.
"""

from __future__ import annotations

import os
import random
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgpack

from protocols.core import CancelTimer, SetTimer, TimerFired
from protocols.workload.queue_service import QueueService, StoreTasks

__all__ = ["DurableMachine", "SqliteTaskStore", "durable_queue", "resolve_db"]


class SqliteTaskStore:
    def __init__(self, path: str | Path = "", fsync: bool = True) -> None:
        self.path = str(path) if str(path) else ":memory:"
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        mode = self.db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if self.path != ":memory:" and str(mode).lower() != "wal":
            raise RuntimeError(f"{self.path}: SQLite refused WAL mode (journal_mode={mode})")
        # FULL: a commit is fsync-ed before it returns. OFF (fsync=False, for simulations): a commit reaches the
        # OS before it returns, which survives a SIGKILL of this process but not a crash of the machine.
        self.db.execute("PRAGMA synchronous=FULL" if fsync else "PRAGMA synchronous=OFF")
        self.db.execute("CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY, row BLOB NOT NULL)")
        self.commits = 0
        self.rows_written = 0

    def load(self) -> list[dict]:
        out = []
        for tid, blob in self.db.execute("SELECT id, row FROM tasks"):
            try:
                row = msgpack.unpackb(blob, raw=False, strict_map_key=False)
            except Exception as e:  # a committed row never fails to decode unless the file is damaged
                raise RuntimeError(f"{self.path}: task {tid!r} does not decode ({e}); the database is damaged") from e
            out.append(row)
        return out

    def apply(self, rows: list[dict], drop: list[str]) -> None:
        """Write ``rows`` and delete ``drop`` in one transaction, durable on return."""
        if not rows and not drop:
            return
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            if rows:
                cur.executemany("INSERT OR REPLACE INTO tasks (id, row) VALUES (?, ?)",
                                [(r["id"], msgpack.packb(r, use_bin_type=True)) for r in rows])
            if drop:
                cur.executemany("DELETE FROM tasks WHERE id = ?", [(d,) for d in drop])
            cur.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                cur.execute("ROLLBACK")
            raise
        self.commits += 1
        self.rows_written += len(rows)

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]

    def close(self) -> None:
        self.db.close()


COMMIT_TIMER = "$group-commit"


class DurableMachine:
    """Commits a machine's ``StoreTasks`` effects before handing its other effects on (group commit).

    ``commit_window`` 0: every handler that wrote commits at once. ``commit_window`` w > 0: a handler that
    writes when the last commit is ``w`` or more behind commits at once (nothing to batch with: no latency
    added when the queue is quiet); otherwise it arms a timer for ``w`` after the last commit and its
    effects are held; every later handler's writes join the same transaction and its effects are held too
    (so nothing overtakes what was held: the order of the machine's effects is kept); when the timer
    fires (or ``max_batch`` rows wait) one commit covers them all and every held effect is handed on.
    Nothing is acknowledged before its commit either way; under load the window gives one ``fsync`` per
    ``w`` at most, for up to ``w`` of latency.
    """

    def __init__(self, machine: Any, store: SqliteTaskStore, commit_window: float = 0.0,
                 max_batch: int = 1000) -> None:
        self.machine = machine
        self.store = store
        self.commit_window = commit_window
        self.max_batch = max_batch
        self.tick_interval = getattr(machine, "tick_interval", None)
        self._rows: dict[str, dict] = {}
        self._drop: set[str] = set()
        self._held: list = []
        self._armed = False
        self._last_commit = -1e18  # the ``now`` of the last commit

    def _take(self, effects: list) -> tuple[bool, list]:
        wrote, rest = False, []
        for e in effects or ():
            if e.__class__ is StoreTasks:
                wrote = True
                for r in e.rows:
                    self._rows[r["id"]] = r
                    self._drop.discard(r["id"])
                for d in e.drop:
                    self._rows.pop(d, None)
                    self._drop.add(d)
            else:
                rest.append(e)
        return wrote, rest

    def _flush(self, now: float | None = None) -> list:
        if self._rows or self._drop:
            self.store.apply(list(self._rows.values()), sorted(self._drop))
            if now is not None:
                self._last_commit = now
        self._rows, self._drop = {}, set()
        out, self._held = self._held, []
        return out

    def _commit(self, effects: list, now: float) -> list:
        wrote, rest = self._take(effects)
        if self.commit_window <= 0:
            self._held.extend(rest)
            return self._flush()
        if not wrote and not self._held and not self._rows and not self._drop:
            return rest  # nothing written, nothing waiting: pass through
        self._held.extend(rest)
        if len(self._rows) + len(self._drop) >= self.max_batch:
            out = self._flush(now)
            if self._armed:
                self._armed = False
                out.insert(0, CancelTimer(COMMIT_TIMER))
            return out
        if not self._armed:
            if now - self._last_commit >= self.commit_window:
                return self._flush(now)  # quiet: nothing to wait for
            self._armed = True
            return [SetTimer(COMMIT_TIMER, self._last_commit + self.commit_window)]
        return []

    def handle(self, msg: Any, sender: str, now: float) -> list:
        if msg.__class__ is TimerFired and msg.key == COMMIT_TIMER:
            self._armed = False
            return self._flush(now)
        return self._commit(self.machine.handle(msg, sender, now), now)

    def tick(self, now: float) -> list:
        return self._commit(self.machine.tick(now), now)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.machine, name)


def _run_dir() -> str:
    """The run directory of this node process (``--run-dir``), or a directory of this process for a simulation."""
    argv = sys.argv
    for i, a in enumerate(argv):
        if a == "--run-dir" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--run-dir="):
            return a.split("=", 1)[1]
    return os.path.join(tempfile.gettempdir(), f"fleetplane-workload-{os.getpid()}")


def resolve_db(db: str, address: str, first_start: bool) -> str:
    """``{run_dir}`` and ``{address}`` in ``db`` filled in. A run-scoped database (one under ``{run_dir}``) is new
    on the first start of a run (the host vouches for it: ``first_start``), so an earlier run's tasks never leak in;
    on every later start it is kept. A fixed path is never removed."""
    if "{run_dir}" not in db:
        return db.replace("{address}", address.replace("/", "."))
    path = db.replace("{run_dir}", _run_dir()).replace("{address}", address.replace("/", "."))
    if first_start:
        for suffix in ("", "-wal", "-shm"):
            try:
                os.remove(path + suffix)
            except FileNotFoundError:
                pass
    return path


def durable_queue(types: list[str], db: str = "", lease_ttl: float = 10.0, max_attempts: int = 5,
                  weights: dict[str, float] | None = None, max_tasks: int = 100_000,
                  max_per_tenant: int | None = None, done_ttl: float = 3600.0, worker_ttl: float = 5.0,
                  tick: float = 0.25, billing: str = "", fsync: bool = True, commit_window: float = 0.0,
                  first_start: bool = False, address: str = "", rng: random.Random | None = None) -> DurableMachine:
    """The workload queue (per-type queues, leases, first result wins) over SQLite in WAL mode at ``db``
    (``{run_dir}``: the run's directory, ``{address}``: this actor's; see :func:`resolve_db`)."""
    store = SqliteTaskStore(resolve_db(db, address, first_start), fsync=fsync)
    service = QueueService(list(types), lease_ttl=lease_ttl, max_attempts=max_attempts, weights=weights,
                           max_tasks=max_tasks, max_per_tenant=max_per_tenant, done_ttl=done_ttl,
                           worker_ttl=worker_ttl, tick=tick, billing=billing, restored=store.load(), rng=rng)
    return DurableMachine(service, store, commit_window=commit_window)
