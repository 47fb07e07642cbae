"""The worker's side of a warm Python environment: start the zygote, hand it tasks, collect reports.

How this works
--------------
:class:`WarmPython` starts ``python topologies/workload/zygote.py`` (its own
session; it dies with this process) with the environment's modules, and keeps
it. :meth:`WarmPython.run` gives a task a slot (up to ``slots`` at once), a
private directory under ``work_root`` (mode 0700, owned by the slot's uid),
and sends it to the zygote, which forks a confined child for it (see
:mod:`topologies.workload.zygote` for the limits). A reader thread collects
the zygote's reports, removes the task's directory, frees its slot and calls
``on_done(report)`` - ``{"id", "ok", "value" | "error", "metered", "cpu",
"killed"}``. :meth:`stop` kills a running task (its report follows, with
``killed``).

Running as root, slot ``i`` runs its tasks as uid ``base_uid + i``, from a
block of uids this environment holds alone (:func:`claim_uids`: an ``flock``
per block, so two workers on one machine never share a uid): no other process
has that uid, so ``RLIMIT_NPROC`` counts exactly the task's processes and the
end of a task can kill every one of them. Not as root, every task runs
as this user and the process limit is counted on top of what the user runs
already (so it caps a fork bomb, less exactly).

If the zygote dies, every running task is reported failed ("the environment
was lost") and a new zygote is started for the next task.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

import attrs
import msgpack

__all__ = ["Limits", "WarmPython"]

ROOT = Path(__file__).resolve().parents[2]
ZYGOTE = Path(__file__).resolve().with_name("zygote.py")


@attrs.frozen
class Limits:
    cpu_s: float = 2.0
    memory_mb: int = 256
    processes: int = 16
    wall_s: float = 5.0
    file_mb: int = 16
    output: int = 1 << 20

    def as_dict(self) -> dict:
        return attrs.asdict(self)


UID_LOCKS = Path(tempfile.gettempdir()) / "fleetplane-task-uids"
UID_BASE, UID_BLOCK, UID_BLOCKS = 200_000, 64, 4096


def _kill_range(lo: int, hi: int) -> None:
    """SIGKILL every process whose uid is in ``[lo, hi)`` (a few sweeps: what they fork dies too)."""
    import signal

    for _ in range(20):
        found = False
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    if lo <= os.stat(f"/proc/{pid}").st_uid < hi:
                        os.kill(int(pid), signal.SIGKILL)
                        found = True
                except OSError:
                    pass
        if not found:
            return


def claim_uids(slots: int) -> tuple[int, Any]:
    """A block of unprivileged uids no other environment on this machine uses (an ``flock`` held while this
    process lives): a task's uid must be its own, or ending one task would kill another's processes."""
    import fcntl

    if slots > UID_BLOCK:
        raise ValueError(f"at most {UID_BLOCK} slots per environment, got {slots}")
    UID_LOCKS.mkdir(parents=True, exist_ok=True)
    for i in range(UID_BLOCKS):
        base = UID_BASE + i * UID_BLOCK
        f = open(UID_LOCKS / f"{base}.lock", "a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _kill_range(base, base + UID_BLOCK)  # leftovers of an environment that died holding this block
        return base, f
    raise RuntimeError(f"no free block of task uids (all {UID_BLOCKS} are held; see {UID_LOCKS})")


class WarmPython:
    def __init__(self, modules: tuple[str, ...] = ("json", "math"), *, work_root: str | Path | None = None,
                 on_done: Callable[[dict], None] | None = None, slots: int = 4, base_uid: int | None = None,
                 shell_dir: str | Path | None = None) -> None:
        self.modules = tuple(modules)
        self.shell_dir = Path(shell_dir) if shell_dir else None  # the shell environment's prepared directory
        self.work_root = Path(work_root) if work_root else Path(tempfile.mkdtemp(prefix="fleetplane-work-"))
        self.work_root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.work_root, 0o711)
        self.on_done = on_done
        self.slots = slots
        self.as_root = os.geteuid() == 0
        self._uid_lock = None
        if base_uid is None and self.as_root:
            base_uid, self._uid_lock = claim_uids(slots)
        self.base_uid = base_uid or 0
        self._lock = threading.Lock()
        self._free = list(range(slots))
        self._running: dict[str, tuple[int, Path]] = {}  # task id -> (slot, dir)
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._closed = False
        self.zygote_starts = 0
        self.pid: int | None = None

    # ---------------------------------------------------------------- the zygote

    def start(self) -> None:
        with self._lock:
            self._spawn()

    def _spawn(self) -> None:
        import json

        # the file, not ``-m topologies.workload.zygote``: that would import the plug-in package (zmq, the
        # runtime, ...) into the zygote, and every fork copies what the zygote holds
        self._proc = subprocess.Popen([sys.executable, str(ZYGOTE), json.dumps(self.modules)],
                                      cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
        self.zygote_starts += 1
        ready = self._read(self._proc)
        if ready is None or ready.get("op") != "ready":
            raise RuntimeError(f"the warm python environment did not start (said {ready!r})")
        self.pid = ready["pid"]
        self._reader = threading.Thread(target=self._read_loop, args=(self._proc,), daemon=True,
                                        name="warm-python-reader")
        self._reader.start()

    @staticmethod
    def _read(proc: subprocess.Popen) -> dict | None:
        head = proc.stdout.read(4)
        if len(head) < 4:
            return None
        (n,) = struct.unpack(">I", head)
        body = proc.stdout.read(n)
        if len(body) < n:
            return None
        return msgpack.unpackb(body, raw=False)

    def _send(self, msg: dict) -> None:
        blob = msgpack.packb(msg, use_bin_type=True)
        self._proc.stdin.write(struct.pack(">I", len(blob)) + blob)
        self._proc.stdin.flush()

    def _read_loop(self, proc: subprocess.Popen) -> None:
        while True:
            try:
                msg = self._read(proc)
            except (OSError, ValueError):
                msg = None
            if msg is None:
                break
            if msg.get("op") == "done":
                self._finish(msg)
        proc.wait()
        with self._lock:
            lost = [tid for tid in self._running] if proc is self._proc else []
            if proc is self._proc:
                self._proc = None
        for tid in lost:
            self._finish({"op": "done", "id": tid, "ok": False, "error": "the environment was lost (zygote died)",
                          "metered": 0.0, "cpu": 0.0, "killed": "environment lost"})

    def _finish(self, report: dict) -> None:
        with self._lock:
            slot = self._running.pop(report["id"], None)
            if slot is not None:
                self._free.append(slot[0])
        if slot is not None:
            shutil.rmtree(slot[1], ignore_errors=True)
            if self.on_done is not None:
                self.on_done(report)

    # ---------------------------------------------------------------- tasks

    def free_slots(self) -> int:
        with self._lock:
            return len(self._free)

    def run(self, task_id: str, source: str, data: Any, limits: Limits | None = None, kind: str = "python") -> None:
        """Start ``task_id`` (its report comes through ``on_done``). Raises RuntimeError when no slot is free.

        ``kind`` ``"python"``: ``source`` is Python run in the forked child; ``"shell"``: the child, confined the
        same way, execs ``/bin/sh -c source`` in a private directory holding a copy of ``shell_dir`` (the shell
        environment's prepared directory) and the task's data (``data.json``, or ``data`` for bytes)."""
        limits = limits or Limits()
        if kind not in ("python", "shell"):
            raise RuntimeError(f"no {kind!r} environment here (python and shell)")
        with self._lock:
            if self._closed:
                raise RuntimeError("the warm python environment is closed")
            if task_id in self._running:
                raise RuntimeError(f"task {task_id!r} is running already")
            if not self._free:
                raise RuntimeError(f"all {self.slots} slots are busy")
            if self._proc is None or self._proc.poll() is not None:
                self._spawn()
            slot = self._free.pop(0)
            uid = self.base_uid + slot if self.as_root else 0
            d = Path(tempfile.mkdtemp(prefix=f"task-{slot}-", dir=self.work_root))
            prepared = kind == "shell" and self.shell_dir is not None
            if prepared:
                shutil.copytree(self.shell_dir, d, symlinks=True, dirs_exist_ok=True)
            if uid:
                os.chown(d, uid, uid)
                for dirpath, dirnames, filenames in os.walk(d) if prepared else ():
                    for name in dirnames + filenames:
                        os.lchown(os.path.join(dirpath, name), uid, uid)
            self._running[task_id] = (slot, d)
            try:
                self._send({"op": "run", "id": task_id, "source": source, "data": data, "dir": str(d), "uid": uid,
                            "limits": limits.as_dict(), "kind": kind})
            except (OSError, ValueError) as e:
                self._running.pop(task_id, None)
                self._free.append(slot)
                shutil.rmtree(d, ignore_errors=True)
                raise RuntimeError(f"cannot hand task {task_id!r} to the warm environment: {e}") from e

    def stop(self, task_id: str) -> None:
        with self._lock:
            if task_id in self._running and self._proc is not None:
                try:
                    self._send({"op": "kill", "id": task_id})
                except (OSError, ValueError):
                    pass

    def running(self) -> list[str]:
        with self._lock:
            return list(self._running)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            proc = self._proc
        if proc is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        shutil.rmtree(self.work_root, ignore_errors=True)
        if self._uid_lock is not None:
            self._uid_lock.close()
            self._uid_lock = None
