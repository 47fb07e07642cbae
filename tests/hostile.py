"""A reusable harness for attacks on a real node process (issue 14).

* :class:`NodeProc` starts ``python -m topologies.node`` hosting :class:`CountingEcho` (and whatever
  else is asked for), reads its ready line, reads its file descriptors, threads and RSS from /proc,
  and stops it by its PID (SIGTERM, then SIGKILL after a deadline), returning the exit status.
* :class:`CountingEcho` answers :class:`Echo` with :class:`Echoed` (saying which sender it saw) and
  :class:`GetCounters` with :class:`Counters` (its node's ``counters()``), so a test reads a node's
  counters with a real ask over the real transport.
* :class:`Attacker` speaks the wire format of docs/wire.md with raw pyzmq sockets of its own context
  (nothing from ``transport.zmq``): messages, heartbeats, goodbyes, garbage.
* :func:`listener` is a plain TCP or unix socket that tells whether anyone dialled it.

Everything a test starts it stops: :class:`NodeProc` by PID, :class:`Attacker` closes its sockets.
This module imports no pytest, so node processes can import it for its actor.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import zmq

from actors import Actor
from transport.codec import message

ROOT = Path(__file__).resolve().parents[1]


@message("hostile.Echo")
class Echo:
    n: int


@message("hostile.Echoed")
class Echoed:
    n: int
    sender: str  # the sender address the echo actor saw


@message("hostile.GetCounters")
class GetCounters:
    pass


@message("hostile.Counters")
class Counters:
    values: Any


class CountingEcho(Actor):
    """Echo(n) -> Echoed(n, sender); GetCounters() -> Counters(node.counters())."""

    def receive(self, msg, sender):
        if isinstance(msg, Echo):
            self.reply(Echoed(msg.n, sender or ""))
        elif isinstance(msg, GetCounters):
            self.reply(Counters(self.node.counters()))


class Sink(Actor):
    """Keeps every message it gets (in-process tests: ``sink.got``)."""

    def __init__(self, got: list):
        self.got = got

    def receive(self, msg, sender):
        self.got.append((msg, sender))


# -- the node process -----------------------------------------------------------------------------
class NodeProc:
    """``python -m topologies.node`` on 127.0.0.1 hosting ``echo`` (a :class:`CountingEcho`)."""

    def __init__(self, name: str, run_dir: Path, *, peers: dict[str, str] | None = None,
                 spawn: dict[str, str] | None = None, curve: dict | None = None,
                 heartbeat: float = 0.2, liveness: int = 4, extra: list[str] | None = None):
        self.name = name
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "topologies.node", "--name", name, "--bind", "tcp://127.0.0.1:*",
               "--heartbeat", str(heartbeat), "--liveness", str(liveness), "--run-dir", str(self.run_dir),
               "--parent-pid", str(os.getpid())]
        for actor, cls in {"echo": "tests.hostile:CountingEcho", **(spawn or {})}.items():
            cmd += ["--spawn", f"{actor}={cls}"]
        for peer, ep in (peers or {}).items():
            cmd += ["--peer", f"{peer}={ep}"]
        if curve is not None:
            keyfile = self.run_dir / f"{name}.curve.json"
            def text(k):
                return k.decode() if isinstance(k, bytes) else k
            keyfile.write_text(json.dumps({"public_key": text(curve["public_key"]), "secret_key": text(curve["secret_key"]),
                                           "peer_keys": {n: text(k) for n, k in curve.get("peer_keys", {}).items()}}))
            cmd += ["--curve", str(keyfile)]
        cmd += extra or []
        self.popen = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, start_new_session=True)
        line = self.popen.stdout.readline()  # type: ignore[union-attr]
        if not line or "endpoint" not in line:
            self.stop()
            raise RuntimeError(f"node {name} did not start: {line!r} {self.stderr()[-2000:]}")
        info = json.loads(line)
        self.endpoint: str = info["endpoint"]
        self.pid: int = info["pid"]
        self.incarnation: int = info["incarnation"]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def _status(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def threads(self) -> int:
        return self._status("Threads")

    def rss_kb(self) -> int:
        return self._status("VmRSS")

    def events(self) -> list[dict]:
        path = self.run_dir / f"{self.name}.events.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a line being written
        return out

    def stderr(self) -> str:
        if self.popen.poll() is None or self.popen.stderr is None or self.popen.stderr.closed:
            return ""
        return self.popen.stderr.read()

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM by PID, SIGKILL if it has not exited by ``timeout``; the exit status."""
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        for f in (self.popen.stdout,):
            if f and not f.closed:
                f.close()
        return self.popen.returncode


# -- the attacker: raw pyzmq, frames built from docs/wire.md ------------------------------------------
def message_header(to: str, sender: str, corr: int = 0) -> bytes:
    tb = to.encode()
    return b"M" + corr.to_bytes(8, "big") + len(tb).to_bytes(2, "big") + tb + sender.encode()


def payload(tag: str, **fields) -> bytes:
    return msgpack.packb({"@": tag, **fields})


class Attacker:
    """Raw ZeroMQ sockets in a context of their own; ``close()`` closes them all."""

    def __init__(self):
        self.ctx = zmq.Context()
        self.socks: list[zmq.Socket] = []

    def dealer(self, endpoint: str, curve: tuple[bytes, bytes, bytes] | None = None) -> zmq.Socket:
        """A DEALER connected to ``endpoint``; ``curve`` = (public, secret, server public) keys."""
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, 100_000)
        if curve is not None:
            s.curve_publickey, s.curve_secretkey, s.curve_serverkey = curve
        s.connect(endpoint)
        self.socks.append(s)
        return s

    def router(self) -> tuple[zmq.Socket, str]:
        s = self.ctx.socket(zmq.ROUTER)
        s.setsockopt(zmq.LINGER, 0)
        port = s.bind_to_random_port("tcp://127.0.0.1")
        self.socks.append(s)
        return s, f"tcp://127.0.0.1:{port}"

    @staticmethod
    def heartbeat(sock: zmq.Socket, name: str, incarnation: int, endpoint: str) -> None:
        sock.send_multipart([b"H", name.encode(), incarnation.to_bytes(8, "big"), endpoint.encode()])

    @staticmethod
    def goodbye(sock: zmq.Socket, name: str, incarnation: int) -> None:
        sock.send_multipart([b"B", name.encode(), incarnation.to_bytes(8, "big")])

    @staticmethod
    def message(sock: zmq.Socket, to: str, sender: str, body: bytes, corr: int = 0) -> None:
        sock.send_multipart([message_header(to, sender, corr), body])

    def close(self) -> None:
        for s in self.socks:
            s.close(0)
        self.ctx.term()


def drain(sock: zmq.Socket, wait: float = 0.0) -> list[list[bytes]]:
    """Whatever ``sock`` received (waiting up to ``wait`` seconds for the first)."""
    got = []
    if wait and not sock.poll(int(wait * 1000)):
        return got
    while True:
        try:
            got.append(sock.recv_multipart(zmq.NOBLOCK))
        except zmq.Again:
            return got


class Listener:
    """A plain listening socket (TCP on 127.0.0.1 or unix) that counts who connects to it."""

    def __init__(self, unix_path: str | None = None):
        if unix_path is None:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind(("127.0.0.1", 0))
            self.endpoint = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(unix_path)
            self.endpoint = f"ipc://{unix_path}"
        self.sock.listen(64)
        self.sock.setblocking(False)
        self.accepted = 0

    def dialled(self, wait: float) -> int:
        """Connections accepted so far, waiting ``wait`` seconds for more."""
        end = time.monotonic() + wait
        while True:
            try:
                conn, _ = self.sock.accept()
                conn.close()
                self.accepted += 1
            except BlockingIOError:
                if time.monotonic() >= end:
                    return self.accepted
                time.sleep(0.02)

    def close(self) -> None:
        self.sock.close()
