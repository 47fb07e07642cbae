"""A warm Python environment: a zygote process that forks one limited child per task.

How this works
--------------
``python topologies/workload/zygote.py MODULES_JSON`` imports the environment's
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

One loop (a selector over the requests, each task's report pipe and its
pidfd, which becomes readable when the child exits) follows every task, no
thread per task. It enforces the wall-time limit: at the deadline it kills
the task's process group, and (running as root) every process of the
slot's uid, which also catches a descendant that left the group with
``setsid``. At a task's end the group is killed too, and the slot's uid
swept unless the task reported that it never forked (the audit hook sees
every ``os.fork``; other ways to start a process are refused); a sweep runs
in a thread of its own, so the other slots go on. ``metered`` is the wall
time from the fork to the reaping of the child: the time the resource was
dedicated to the task. The private directory is removed afterwards.

Forks are cheap when the zygote is small: it is started as a file, not as
``-m topologies.workload.zygote`` (which imports the plug-in package and the
whole runtime), looks ``prctl`` up once, has compiled once (the first
``compile`` of a process builds the interpreter's AST types), does not import
``threading`` (whose at-fork handler would rebuild its locks in every child),
and freezes its objects
(``gc.freeze``) so a child's garbage collections do not write to, and so copy,
the zygote's pages.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.realpath(__file__))
if __name__ == "__main__" and sys.path and os.path.realpath(sys.path[0] or ".") == _HERE:
    # run as a script (the worker starts it so: ``-m`` would import the plug-in package and everything it
    # imports, which every fork would copy): the project's root, not this directory, is on the path
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

import gc  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import selectors  # noqa: E402
import signal  # noqa: E402
import struct  # noqa: E402
import _thread  # noqa: E402  (not threading: its at-fork handler runs in every child)
import time  # noqa: E402
import traceback  # noqa: E402

import msgpack  # noqa: E402

_OUT_LOCK = _thread.allocate_lock()
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
        out = req.get("out_fd")  # a shell task's: opened by the zygote, which reads it afterwards
        if out is None:
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
        if req.get("kind") == "shell":  # the same confinement, then the shell (the report pipe closes on exec)
            for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):  # ignored by Python and the zygote:
                signal.signal(sig, signal.SIG_DFL)  # a shell's programs expect them as usual (kept across exec)
            data = req.get("data")
            with open("data" if isinstance(data, bytes) else "data.json", "wb") as f:
                f.write(data if isinstance(data, bytes) else json.dumps(data, default=str).encode())
            os.execve(SHELL, ["sh", "-c", req["source"]], {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": root,
                                                             "TMPDIR": root, "PWD": root, "LANG": "C.UTF-8"})
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


SHELL = "/bin/sh"
_PRCTL: list = []  # libc's prctl, looked up once in the zygote (a lookup per child made a ctypes class each time)


def _load_prctl() -> None:
    if not _PRCTL:
        try:
            import ctypes

            _PRCTL.append(ctypes.CDLL(None, use_errno=True).prctl)
        except Exception:
            _PRCTL.append(None)


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (PR_SET_PDEATHSIG); a no-op elsewhere."""
    _load_prctl()
    try:
        if _PRCTL[0] is not None:
            _PRCTL[0](1, signal.SIGKILL, 0, 0, 0)
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


class _Task:
    """One forked task as the zygote's loop sees it."""

    __slots__ = ("req", "pid", "rfd", "pidfd", "started", "deadline", "cap", "data", "eof", "status", "rusage",
                 "exited", "killed", "out_fd")

    def __init__(self, req: dict, pid: int, rfd: int, started: float, out_fd: int | None = None) -> None:
        self.req, self.pid, self.rfd, self.started, self.out_fd = req, pid, rfd, started, out_fd
        self.deadline = started + float(req["limits"]["wall_s"])
        self.cap = int(req["limits"]["output"]) + 4096
        self.data = b""
        self.eof = False
        self.status = None
        self.rusage = None
        self.exited = 0.0
        self.killed = ""
        try:
            self.pidfd = os.pidfd_open(pid)  # readable once the child has exited (Linux 5.3)
        except (AttributeError, OSError):
            self.pidfd = -1


def _reap(t: _Task, now: float) -> None:
    if t.status is None:
        got, st, ru = os.wait4(t.pid, os.WNOHANG)
        if got:
            t.status, t.rusage, t.exited = st, ru, now


def _due(t: _Task, now: float) -> bool:
    """Has ``t`` ended (reaped, its report complete or its pipe held by what it forked), been stopped, or run
    past its wall time? Kills what must be killed."""
    _reap(t, now)
    # the child is gone: its report is complete (EOF), or what it forked holds the pipe open
    if t.status is not None and (t.eof or now > min(t.deadline, t.exited + 0.2)):
        return True
    if t.req["id"] not in _RUNNING and not t.killed:
        t.killed = "stopped"
    if now > t.deadline and not t.killed:
        t.killed = f"wall time limit of {t.req['limits']['wall_s']} s"
    return bool(t.killed)


def _finish(t: _Task) -> None:
    """Kill what ``t`` left behind, reap it, report it. Its pipe and pidfd are closed already."""
    req, killed = t.req, t.killed
    uid = int(req.get("uid") or 0)
    if killed:
        _kill_group(t.pid, uid)
        if t.status is None:
            _, t.status, t.rusage = os.wait4(t.pid, 0)
    metered = time.monotonic() - t.started
    rusage, status = t.rusage, t.status
    result = None
    if t.data and not killed:
        try:
            result = msgpack.unpackb(t.data, raw=False)
        except Exception:
            result = None
    # whatever it left behind: its process group always; every process of the slot's uid (a descendant that
    # left the group with setsid) unless the task reported that it never forked
    clean = isinstance(result, dict) and result.get("forked") is False
    _kill_group(t.pid, 0 if clean else uid)
    _RUNNING.pop(req["id"], None)
    report = {"op": "done", "id": req["id"], "metered": metered,
              "cpu": (rusage.ru_utime + rusage.ru_stime) if rusage else 0.0, "killed": killed}
    if killed:
        report.update(ok=False, error=f"killed: {killed}")
    elif req.get("kind") == "shell":
        report.update(_shell_outcome(t))
    elif isinstance(result, dict) and "ok" in result:
        report.update(ok=bool(result["ok"]), **({"value": result.get("value")} if result["ok"] else
                                                 {"error": str(result.get("error")), "trace": result.get("trace", "")}))
    else:
        sig = os.WTERMSIG(status) if status is not None and os.WIFSIGNALED(status) else None
        why = {signal.SIGXCPU: "CPU time limit", signal.SIGKILL: "killed (CPU or memory limit)"}.get(sig, "")
        report.update(ok=False, error=f"the task's process ended without a result"
                      f" ({'signal ' + signal.Signals(sig).name if sig else 'status ' + str(status)})"
                      + (f": {why}" if why else ""))
    if t.out_fd is not None:
        os.close(t.out_fd)
    send(report)


def _shell_outcome(t: _Task) -> dict:
    """A shell task's outcome: exit status 0 is a result, ``{"exit": 0, "output": ...}`` (the tail of what it
    wrote to stdout and stderr, read through the zygote's own descriptor: the task may have replaced the file
    by a link to anything), any other status a failure with that output."""
    out = ""
    if t.out_fd is not None:
        try:
            size = os.fstat(t.out_fd).st_size
            n = min(size, int(t.req["limits"]["output"]), 1 << 16)
            out = os.pread(t.out_fd, n, size - n).decode("utf-8", "replace")
        except (OSError, ValueError):
            out = ""
    st = t.status
    if st is not None and os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0:
        return {"ok": True, "value": {"exit": 0, "output": out}}
    if st is not None and os.WIFEXITED(st):
        why = f"exit status {os.WEXITSTATUS(st)}"
    else:
        sig = os.WTERMSIG(st) if st is not None and os.WIFSIGNALED(st) else None
        why = f"signal {signal.Signals(sig).name}" if sig else "no status"
        why += {signal.SIGXCPU: ": CPU time limit", signal.SIGKILL: ": killed (CPU or memory limit)",
                signal.SIGXFSZ: ": file size limit"}.get(sig, "")
    return {"ok": False, "error": f"the shell task failed ({why})", "trace": out[-2000:]}


def _kill_group(pid: int, uid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    _kill_uid(uid)


def _sweeps(t: _Task) -> bool:
    """May finishing ``t`` sweep its slot's uid (kill every process of it, which can take a while)?"""
    if not int(t.req.get("uid") or 0) or os.geteuid() != 0:
        return False
    if t.killed or not t.data:
        return True
    try:
        return msgpack.unpackb(t.data, raw=False).get("forked") is not False
    except Exception:
        return True


def _wake_at(t: _Task, now: float) -> float:
    """When the loop must look at ``t`` again without an event."""
    at = t.deadline
    if t.status is not None and not t.eof:
        at = min(at, t.exited + 0.2)  # what it forked holds its pipe open
    if t.status is None and t.pidfd < 0:
        at = min(at, now + (0.001 if t.eof else 0.02))  # no pidfd: poll for its exit
    return at


def main(argv: list[str]) -> int:
    modules = json.loads(argv[0]) if argv else []
    for m in modules:
        __import__(m)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _load_prctl()
    die_with_parent()  # the zygote never outlives its worker
    # compile() made the interpreter build its ~120 AST node types on its first call (PyAST_Check): made here
    # once, not in every child (3 ms of CPU a task)
    exec(compile("_ = None", "<warm-up>", "exec"), {})  # noqa: S102 - a constant statement
    msgpack.unpackb(msgpack.packb({"ok": True}))
    gc.freeze()  # what the zygote holds is never scanned by a child's collections (fewer copied pages)
    send({"op": "ready", "pid": os.getpid(), "modules": modules})
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ, None)
    tasks: dict[str, _Task] = {}
    while True:
        now = time.monotonic()
        timeout = None
        if tasks:
            timeout = max(0.0, min(_wake_at(t, now) for t in tasks.values()) - now)
        closed = False
        for key, _ in sel.select(timeout):
            if key.data is None:
                try:
                    (n,) = struct.unpack(">I", read_exact(0, 4))
                    req = msgpack.unpackb(read_exact(0, n), raw=False)
                except EOFError:
                    closed = True
                    break
                t = _request(req)
                if t is not None:
                    tasks[req["id"]] = t
                    sel.register(t.rfd, selectors.EVENT_READ, ("out", t))
                    if t.pidfd >= 0:
                        sel.register(t.pidfd, selectors.EVENT_READ, ("exit", t))
                continue
            kind, t = key.data
            if kind == "out":
                chunk = os.read(t.rfd, 65536)
                if not chunk:
                    t.eof = True
                    sel.unregister(t.rfd)
                elif len(t.data) < t.cap:
                    t.data += chunk
            else:
                _reap(t, time.monotonic())
                sel.unregister(t.pidfd)
                os.close(t.pidfd)
                t.pidfd = -2  # reaped through it (not "no pidfd")
        if closed:
            break
        now = time.monotonic()
        for tid, t in list(tasks.items()):
            if not _due(t, now):
                continue
            del tasks[tid]
            if not t.eof:
                sel.unregister(t.rfd)
            os.close(t.rfd)
            if t.pidfd >= 0:
                sel.unregister(t.pidfd)
                os.close(t.pidfd)
            if _sweeps(t):  # a sweep of the slot's uid may take a while: the other slots go on meanwhile
                _thread.start_new_thread(_finish, (t,))
            else:
                _finish(t)
    for pid in list(_RUNNING.values()):
        _kill_group(pid, 0)
    return 0


def _request(req: dict) -> _Task | None:
    """Carry out one request of the worker; a ``run`` returns the forked task."""
    op = req.get("op")
    if op == "ping":
        send({"op": "pong", "pid": os.getpid()})
    elif op == "kill":
        _RUNNING.pop(req.get("id"), None)
    elif op == "run":
        out_fd = None
        if req.get("kind") == "shell":  # its output is read back afterwards: through this descriptor, not the path
            try:
                out_fd = os.open(os.path.join(req["dir"], "output.txt"),
                                 os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            except OSError as e:
                send({"op": "done", "id": req["id"], "ok": False, "error": f"could not prepare the task: {e}",
                      "metered": 0.0, "cpu": 0.0, "killed": ""})
                return None
            req["out_fd"] = out_fd
        rfd, wfd = os.pipe()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            os.close(rfd)
            _child(req, wfd)
        os.close(wfd)
        _RUNNING[req["id"]] = pid
        return _Task(req, pid, rfd, started, out_fd)
    return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
