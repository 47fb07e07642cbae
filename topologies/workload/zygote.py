"""A warm Python environment: a zygote process that forks one limited child per task.

How this works
--------------
``python -m topologies.workload.zygote MODULES_JSON`` imports the environment's
modules once (so a task starts without paying for them), then reads requests
from stdin and writes reports to stdout, each a msgpack map behind a 4-byte
big-endian length:

* ``{"op": "run", "id", "source", "data", "dir", "uid", "limits"}`` forks a
  child for the task; ``{"op": "kill", "id"}`` stops it; ``{"op": "ping"}`` is
  answered ``{"op": "pong", "pid"}``.
* a report ``{"op": "done", "id", "ok", "value" | "error", "metered", "cpu",
  "killed"}`` follows each run, always (whatever the child did).

The child, before it runs a line of the task's code: starts a session of its
own (its process group is the task's, killed whole at the end); points fds
0-2 away from the zygote's pipes (stdout and stderr go to ``output.txt`` in
its directory); moves into its private directory; sets its limits
(``RLIMIT_CPU``, ``RLIMIT_AS``, ``RLIMIT_NPROC``, ``RLIMIT_FSIZE``,
``RLIMIT_CORE`` = 0); drops root for the slot's own unprivileged uid when the
zygote runs as root (root ignores ``RLIMIT_NPROC``, and an unprivileged uid
cannot write where root's files live); and installs an audit hook
(``sys.addaudithook``, which task code cannot remove) that refuses opening a
path for writing, creating, renaming, removing or linking anything outside
its directory, starting programs (``subprocess``, ``os.system``, ``exec``,
``posix_spawn``) and loading native code through ``ctypes``.

The task's code defines ``main(data)`` (its return value is the result) or
sets ``result``; the value must be JSON-like (msgpack-encodable) and at most
``limits["output"]`` bytes encoded. Raising is a failure, reported with the
exception's type and message.

A waiter thread per task enforces the wall-time limit: at the deadline it
kills the task's process group, and (running as root) every process of the
slot's uid, which also catches a descendant that left the group with
``setsid``. At a task's end the group is killed too, and the slot's uid
swept unless the task reported that it never forked (the audit hook sees
every ``os.fork``; other ways to start a process are refused). ``metered`` is the wall time from the fork to the reaping of the
child: the time the resource was dedicated to the task. The private
directory is removed afterwards.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import struct
import sys
import threading
import time
import traceback

import msgpack

_OUT_LOCK = threading.Lock()
_RUNNING: dict[str, int] = {}  # task id -> child pid
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_REFUSED = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.forkpty",
            "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function", "os.putenv")
_PATH_EVENTS = {"os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1), "os.chmod": (0,),
                "os.chown": (0,), "os.symlink": (0, 1), "os.link": (0, 1), "os.truncate": (0,), "os.utime": (0,),
                "shutil.rmtree": (0,), "os.chdir": (0,), "os.mkfifo": (0,), "os.mknod": (0,),
                "shutil.copyfile": (1,), "shutil.move": (1,), "os.chflags": (0,), "os.removexattr": (0,),
                "os.setxattr": (0,)}


def send(msg: dict) -> None:
    blob = msgpack.packb(msg, use_bin_type=True)
    with _OUT_LOCK:
        os.write(1, struct.pack(">I", len(blob)) + blob)


def read_exact(fd: int, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def _inside(path, root: str) -> bool:
    if isinstance(path, int):
        return True  # an fd already open
    try:
        p = os.fsdecode(path)
    except TypeError:
        return False
    real = os.path.realpath(os.path.join(root, p) if not os.path.isabs(p) else p)
    return real == root or real.startswith(root + os.sep)


FORKED = {"yes": False}  # in a task's child: did the task fork (then its end sweeps the slot's uid)


def _hook_for(root: str):
    def hook(event: str, args: tuple) -> None:
        if event == "os.fork":
            FORKED["yes"] = True
        elif event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
                (isinstance(flags, int) and flags & _WRITE_FLAGS)
            if writes and not _inside(path, root):
                raise PermissionError(f"task may not write outside its directory: {path!r}")
        elif event in _PATH_EVENTS:
            for i in _PATH_EVENTS[event]:
                if i < len(args) and args[i] is not None and not _inside(args[i], root):
                    raise PermissionError(f"task may not touch {args[i]!r} ({event}) outside its directory")
        elif event.startswith(_REFUSED):
            raise PermissionError(f"task may not {event}")
    return hook


def _child(req: dict, wfd: int) -> None:
    """In the forked child: confine, run, report on ``wfd``, exit. Never returns."""
    status = 0
    me = os.getpid()
    scope: dict = {}
    out_of_memory = msgpack.packb({"ok": False, "error": "MemoryError: the task ran out of memory"})
    blob = msgpack.packb({"ok": False, "error": "the task failed and its error could not be reported"})
    try:
        os.setsid()
        root = os.path.realpath(req["dir"])
        lim = req["limits"]
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        out = os.open(os.path.join(root, "output.txt"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.chdir(root)
        mem = int(lim["memory_mb"]) * 1024 * 1024
        cpu = max(1, int(lim["cpu_s"]))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(lim["file_mb"]) * 1024 * 1024,) * 2)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        uid = int(req.get("uid") or 0)
        if os.geteuid() == 0 and uid:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        die_with_parent()  # a task never outlives its zygote (after setuid: a change of uid clears it)
        nproc = int(lim["processes"])
        if os.geteuid() != 0 and not uid:
            nproc += _count_processes(os.getuid())  # shared uid: leave room for what already runs
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        sys.addaudithook(_hook_for(root))
        scope.update({"__name__": "__task__", "data": req.get("data")})
        exec(compile(req["source"], "<task>", "exec"), scope)  # noqa: S102 - the task's own code, confined above
        value = scope["main"](req.get("data")) if callable(scope.get("main")) else scope.get("result")
        blob = msgpack.packb({"ok": True, "value": value, "forked": FORKED["yes"]}, use_bin_type=True)
        if len(blob) > int(lim["output"]):
            blob = msgpack.packb({"ok": False, "error": f"result is {len(blob)} bytes; the limit is {lim['output']}"})
    except BaseException as e:  # the task's failure, whatever it is: reported, never raised into the zygote
        status = 1
        scope.clear()  # drop what the task holds (an allocation without end) before reporting
        if isinstance(e, MemoryError):
            blob = out_of_memory
        try:  # the task's own frames only: the zygote's are no business of the tenant
            frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == "<task>"]
            tb = ("Traceback (most recent call last):\n" + "".join(traceback.format_list(frames[-5:]))
                  + "".join(traceback.format_exception_only(type(e), e)))[-2000:]
        except BaseException:
            tb = ""
        try:
            blob = msgpack.packb({"ok": False, "error": f"{type(e).__name__}: {e}"[:500], "trace": tb,
                                  "forked": FORKED["yes"]})
        except BaseException:
            pass  # keep the report made before the task ran
    if os.getpid() != me:
        os._exit(1)  # a process the task forked: only the task's own child reports
    try:
        view = memoryview(blob)
        while view:
            n = os.write(wfd, view)
            view = view[n:]
    finally:
        os._exit(status)


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (PR_SET_PDEATHSIG); a no-op elsewhere."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def _count_processes(uid: int) -> int:
    n = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.stat(f"/proc/{pid}").st_uid == uid:
                    n += 1
            except OSError:
                pass
    return n


def _live_of(uid: int) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.stat(f"/proc/{pid}").st_uid != uid:
                    continue
                with open(f"/proc/{pid}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
                if state not in (b"Z", b"X"):
                    out.append(int(pid))
            except (OSError, IndexError):
                pass
    return out


def _kill_uid(uid: int) -> int:
    """SIGKILL every live process of ``uid`` (a slot's own uid: only the task's processes have it), again
    and again until none is left: a fork bomb forks while it is being killed (at most 200 sweeps)."""
    killed = 0
    if not uid or os.geteuid() != 0:
        return 0
    for _ in range(200):
        live = _live_of(uid)
        if not live:
            break
        for pid in live:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
        time.sleep(0.001)
    return killed


def _wait(req: dict, pid: int, rfd: int, started: float) -> None:
    lim = req["limits"]
    deadline = started + float(lim["wall_s"])
    cap = int(lim["output"]) + 4096
    data = b""
    killed = ""
    eof = False
    status = None
    rusage = None
    exited = 0.0
    while True:
        if not eof:
            r, _, _ = select.select([rfd], [], [], 0.02)
            if r:
                chunk = os.read(rfd, 65536)
                if not chunk:
                    eof = True
                elif len(data) < cap:
                    data += chunk
        else:
            time.sleep(0.001)
        if status is None:
            got, st, ru = os.wait4(pid, os.WNOHANG)
            if got:
                status, rusage = st, ru
                exited = time.monotonic()
        # the child is gone: its report is complete (EOF), or what it forked holds the pipe open
        if status is not None and (eof or time.monotonic() > min(deadline, exited + 0.2)):
            break
        if req["id"] not in _RUNNING and not killed:
            killed = "stopped"
        if time.monotonic() > deadline and not killed:
            killed = f"wall time limit of {lim['wall_s']} s"
        if killed:
            _kill_group(pid, int(req.get("uid") or 0))
            if status is None:
                _, st, ru = os.wait4(pid, 0)
                status, rusage = st, ru
            break
    metered = time.monotonic() - started
    result = None
    if data and not killed:
        try:
            result = msgpack.unpackb(data, raw=False)
        except Exception:
            result = None
    # whatever it left behind: its process group always; every process of the slot's uid (a descendant that
    # left the group with setsid) unless the task reported that it never forked
    clean = isinstance(result, dict) and result.get("forked") is False
    _kill_group(pid, 0 if clean else int(req.get("uid") or 0))
    os.close(rfd)
    _RUNNING.pop(req["id"], None)
    report = {"op": "done", "id": req["id"], "metered": metered,
              "cpu": (rusage.ru_utime + rusage.ru_stime) if rusage else 0.0, "killed": killed}
    if killed:
        report.update(ok=False, error=f"killed: {killed}")
    elif isinstance(result, dict) and "ok" in result:
        report.update(ok=bool(result["ok"]), **({"value": result.get("value")} if result["ok"] else
                                                 {"error": str(result.get("error")), "trace": result.get("trace", "")}))
    else:
        sig = os.WTERMSIG(status) if status is not None and os.WIFSIGNALED(status) else None
        why = {signal.SIGXCPU: "CPU time limit", signal.SIGKILL: "killed (CPU or memory limit)"}.get(sig, "")
        report.update(ok=False, error=f"the task's process ended without a result"
                      f" ({'signal ' + signal.Signals(sig).name if sig else 'status ' + str(status)})"
                      + (f": {why}" if why else ""))
    send(report)


def _kill_group(pid: int, uid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    _kill_uid(uid)


def main(argv: list[str]) -> int:
    modules = json.loads(argv[0]) if argv else []
    for m in modules:
        __import__(m)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()  # the zygote never outlives its worker
    send({"op": "ready", "pid": os.getpid(), "modules": modules})
    while True:
        try:
            (n,) = struct.unpack(">I", read_exact(0, 4))
            req = msgpack.unpackb(read_exact(0, n), raw=False)
        except EOFError:
            break
        op = req.get("op")
        if op == "ping":
            send({"op": "pong", "pid": os.getpid()})
        elif op == "kill":
            _RUNNING.pop(req.get("id"), None)
        elif op == "run":
            rfd, wfd = os.pipe()
            started = time.monotonic()
            pid = os.fork()
            if pid == 0:
                os.close(rfd)
                _child(req, wfd)
            os.close(wfd)
            _RUNNING[req["id"]] = pid
            threading.Thread(target=_wait, args=(req, pid, rfd, started), daemon=True).start()
    for pid in list(_RUNNING.values()):
        _kill_group(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
