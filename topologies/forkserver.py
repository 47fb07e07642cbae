"""A fork server for a run's node processes: the imports paid once per run, not once per node.

How this works
--------------
A node process spends about a second of CPU importing the runtime and every
plug-in before it does anything; 22 of them on a 2-core machine take ~10 s to
come up, and a node restarted by chaos competes with a running fleet for that
second. :func:`topologies.launcher.run_real` therefore starts one fork server
per run (``python -m topologies.forkserver``). It imports what a node needs
(:data:`PRELOAD`, every plug-in) while it is still single-threaded, then waits
on a ``SOCK_SEQPACKET`` socket pair for requests. Each request carries the
node's arguments and, as ancillary data, the three file descriptors the node
gets as stdin, stdout and stderr (the launcher's pipes and the node's
``.stderr`` file). The server forks; the child puts itself in a process group
of its own (as ``spawn_node`` did with ``process_group=0``), installs the
descriptors as 0, 1 and 2, restores default signal handlers and runs
:func:`topologies.node._run_and_exit` with those arguments: the same code a
``python -m topologies.node`` process runs, in a fresh process with its own
pid, its own urandom-drawn incarnation (the ``random`` module reseeds after a
fork) and nothing of the server's but the imported modules.

The server reaps its children and reports each exit status (``-N`` for signal
N, as :class:`subprocess.Popen` does); :class:`ForkedProcess` gives the
launcher the part of the ``Popen`` interface it uses (``pid``, ``stdin``,
``stdout``, ``poll``, ``wait``, ``send_signal``, ``terminate``, ``kill``,
``returncode``). A node's ``--parent-pid`` is the server's pid (its parent):
the server dies with the launcher (``PR_SET_PDEATHSIG`` and the closed socket)
and the nodes with the server, as before with the launcher.

The server refuses to fork if importing started a thread (a fork would copy a
lock another thread held). If it cannot start, or ``FLEETPLANE_FORKSERVER=0``
is set, the launcher starts each node with ``python -m topologies.node`` as
before.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["ForkServer", "ForkServerError", "ForkedProcess", "enabled"]

PRELOAD = ("actors", "transport.zmq", "topologies.node", "topologies.kinds", "topologies.model", "topologies.durable",
           "topologies.hosts", "topologies.loader")
READY_TIMEOUT = 60.0  # seconds for the server's imports
MAX_MSG = 65536


class ForkServerError(RuntimeError):
    """The fork server could not start, or is gone."""


def enabled() -> bool:
    """False when ``FLEETPLANE_FORKSERVER=0`` (every node a ``python -m topologies.node`` of its own)."""
    return os.environ.get("FLEETPLANE_FORKSERVER", "1").strip() not in ("0", "no", "off", "false")


class ForkedProcess:
    """A node forked by the server, with the part of :class:`subprocess.Popen`'s interface the launcher uses."""

    def __init__(self, server: "ForkServer", pid: int, stdin: Any, stdout: Any, args: list[str]) -> None:
        self.server, self.pid, self.stdin, self.stdout, self.args = server, pid, stdin, stdout, args
        self.returncode: int | None = None
        self._exited = threading.Event()

    def _set_exit(self, code: int) -> None:
        self.returncode = code
        self._exited.set()

    def poll(self) -> int | None:
        if self.returncode is None and self.server.gone:
            self._lost()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Its exit status; TimeoutExpired after ``timeout``. A node whose server is gone is polled (its exit
        reaches nobody then), so a wait without timeout ends too."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._exited.wait(0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic()))):
            if self.poll() is not None:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)  # type: ignore[arg-type]
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # never signal a pid that may have been reused
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _lost(self) -> None:
        """The server is gone (its children got SIGTERM from the kernel): once the pid is gone, say so."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            self._set_exit(-signal.SIGTERM)
        except PermissionError:
            pass

    def __repr__(self) -> str:
        return f"<ForkedProcess pid={self.pid} returncode={self.returncode}>"


class ForkServer:
    """The launcher's end: start the server, ask it for nodes, learn their exits."""

    def __init__(self, cwd: Path, stderr: Path) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = mine
        self.gone = False
        self._lock = threading.Lock()
        self._replies: dict[int, Any] = {}
        self._replied = threading.Condition(self._lock)
        self._procs: dict[int, ForkedProcess] = {}
        self._early: dict[int, int] = {}  # pid -> exit code reported before its spawn reply was handled
        self._next = 0
        with open(stderr, "ab") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "topologies.forkserver", str(theirs.fileno()),
                                          str(os.getpid())], cwd=cwd, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err, pass_fds=[theirs.fileno()],
                                         process_group=0)
        theirs.close()
        self.pid = self.proc.pid
        self.sock.settimeout(READY_TIMEOUT)
        try:
            first = self.sock.recv(MAX_MSG)
        except (OSError, socket.timeout) as e:
            self._stop_server()
            raise ForkServerError(f"the fork server did not start: {e} (see {stderr})") from None
        msg = json.loads(first) if first else {}
        if "ready" not in msg:
            self._stop_server()
            raise ForkServerError(f"the fork server did not start: {msg.get('error', 'it exited')} (see {stderr})")
        self.sock.settimeout(None)
        self._reader = threading.Thread(target=self._read, name="forkserver", daemon=True)
        self._reader.start()

    def spawn(self, args: list[str], stdin_fd: int, stdout_fd: int, stderr_fd: int, timeout: float = 30.0) -> int:
        """Fork a node with these ``topologies.node`` arguments and descriptors; its pid."""
        with self._lock:
            if self.gone:
                raise ForkServerError("the fork server is gone")
            rid = self._next = self._next + 1
        payload = json.dumps({"id": rid, "argv": args}).encode()
        try:
            socket.send_fds(self.sock, [payload], [stdin_fd, stdout_fd, stderr_fd])
        except OSError as e:  # the server is gone: the launcher starts the node on its own
            raise ForkServerError(f"the fork server is gone: {e}") from None
        with self._replied:
            if not self._replied.wait_for(lambda: rid in self._replies or self.gone, timeout):
                raise ForkServerError(f"the fork server did not answer within {timeout:g} s")
            reply = self._replies.pop(rid, None)
        if reply is None or "pid" not in reply:
            raise ForkServerError(f"the fork server could not fork: {(reply or {}).get('error', 'it is gone')}")
        return reply["pid"]

    def adopt(self, pid: int, stdin: Any, stdout: Any, args: list[str]) -> ForkedProcess:
        proc = ForkedProcess(self, pid, stdin, stdout, args)
        with self._lock:
            self._procs[pid] = proc
            code = self._early.pop(pid, None)
        if code is not None:
            proc._set_exit(code)
        return proc

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(MAX_MSG)
            except OSError:
                data = b""
            if not data:
                break
            try:
                msg = json.loads(data)
            except ValueError:
                continue
            if "exit" in msg:
                with self._lock:
                    proc = self._procs.pop(msg["exit"], None)
                    if proc is None:
                        self._early[msg["exit"]] = msg["code"]
                if proc is not None:
                    proc._set_exit(msg["code"])
            elif "id" in msg:
                with self._replied:
                    self._replies[msg["id"]] = msg
                    self._replied.notify_all()
        with self._replied:
            self.gone = True
            self._replied.notify_all()

    def close(self, grace: float = 5.0) -> None:
        """Stop the server (its nodes have been stopped: any left get SIGTERM from the kernel)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._stop_server(grace)
        self.sock.close()

    def _stop_server(self, grace: float = 5.0) -> None:
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# -- the server ------------------------------------------------------------------------------------------


def _send(sock: socket.socket, msg: dict) -> None:
    try:
        sock.send(json.dumps(msg).encode())
    except OSError:
        pass


def _child(sock: socket.socket, argv: list[str], fds: list[int]) -> None:
    """In the forked child: become the node. Never returns."""
    try:
        sock.close()
        os.setpgid(0, 0)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        import topologies.node as node
        sys.argv = [node.__file__, *argv]
        _run_and_exit = node._run_and_exit
    except BaseException as e:  # noqa: BLE001 - a child must never return into the server's loop
        os.write(2, f"error: forked node could not start: {e!r}\n".encode())
        os._exit(1)
    _run_and_exit()
    os._exit(1)


def serve(fd: int, launcher: int) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the launcher's; it stops the nodes and then us
    sock = socket.socket(fileno=fd)
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: die with the launcher
    except (OSError, AttributeError):
        pass
    if os.getppid() != launcher:
        return 1
    try:
        import importlib

        for name in PRELOAD:
            importlib.import_module(name)
        from topologies.plugin import load_plugins
        load_plugins()
    except BaseException as e:  # noqa: BLE001
        _send(sock, {"error": f"preload failed: {e!r}"})
        return 1
    if threading.active_count() != 1:
        _send(sock, {"error": f"preload started threads: {[t.name for t in threading.enumerate()]}"})
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    import gc
    gc.collect()
    gc.freeze()  # the preloaded heap: never scanned (nor its pages copied) by a node's garbage collector
    _send(sock, {"ready": os.getpid()})
    children: set[int] = set()
    open_ = True
    while open_ or children:
        readable = select.select([sock] if open_ else [], [], [], 0.02)[0]
        if readable:
            try:
                data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MSG, 3)
            except OSError:
                data, fds = b"", []
            if not data:
                open_ = False  # the launcher is done (or gone): reap what is left, then exit
                for fd in fds:
                    os.close(fd)
            else:
                try:
                    req = json.loads(data)
                    rid, argv = req["id"], [str(a) for a in req["argv"]]
                except (ValueError, KeyError, TypeError) as e:
                    _send(sock, {"id": None, "error": f"bad request: {e}"})
                    for fd in fds:
                        os.close(fd)
                    continue
                if len(fds) != 3:
                    _send(sock, {"id": rid, "error": f"{len(fds)} file descriptors, not 3"})
                    for fd in fds:
                        os.close(fd)
                    continue
                try:
                    pid = os.fork()
                except OSError as e:
                    _send(sock, {"id": rid, "error": f"fork: {e}"})
                    pid = -1
                if pid == 0:
                    _child(sock, argv, fds)
                for fd in fds:
                    os.close(fd)
                if pid > 0:
                    children.add(pid)
                    _send(sock, {"id": rid, "pid": pid})
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                children.clear()
                break
            if pid == 0:
                break
            children.discard(pid)
            _send(sock, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: python -m topologies.forkserver FD LAUNCHER_PID (started by the launcher)", file=sys.stderr)
        sys.exit(2)
    sys.exit(serve(int(sys.argv[1]), int(sys.argv[2])))
