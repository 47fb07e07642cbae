"""Two-process benchmark: fleetplane over ZeroMQ against raw pyzmq + msgpack, in the same run.

    python tests/bench/transport.py [--quick] [--rounds 3] [--messages N] [--messages-10k N]
                                    [--asks N] [--chunk 1000] [--window 4] [--profile DIR]

How this works
--------------
The benchmark process is the sender. It starts two receiver processes on
127.0.0.1 with automatic ports and keeps them for the whole run:

* fleetplane: ``python -m topologies.node --name recv`` hosting this file's
  :class:`Counter` and :class:`Echo` actors; the sender is a :class:`~actors.Node`
  on a :class:`~transport.zmq.ZmqTransport` that tells and asks them.
* raw: ``python tests/bench/transport.py --raw-receiver``, one ROUTER that
  msgpack-unpacks every message, counts or echoes it and answers on the same
  socket; the sender is one DEALER. Same payload bytes as fleetplane's
  (``{"@": tag, field: value, ...}``), packed and unpacked per message.

Tell throughput (~100-byte and 10 KiB payloads): N messages as fast as
possible; every ``--chunk``-th one asks for an ack (fleetplane: ``node.ask``;
raw: an ``ack`` flag the ROUTER answers), and the sender never has more than
``--window`` acks outstanding, so at most chunk*(window+1) messages are in
flight (below the 10,000 SNDHWM: no dead letters). The last message is always an
ack; the receiver answers with its count, which must be N. Throughput is N /
(first send -> last ack). Ask round trip: sequential asks of the ~100-byte
message to Echo (raw: DEALER -> ROUTER -> same message back), p50 and p99.

Both are measured twice: in plaintext and with CurveZMQ (``--no-curve`` skips
the second). Under CURVE the fleetplane receiver gets a key file naming the
sender's key (so the ZAP handler binds it to its node name and every message's
sender is checked against it, as in production) and the raw pair uses CURVE
sockets too (its ROUTER a CURVE server with no ZAP handler), so each mode is
compared with raw ZeroMQ in the same mode. The bounds (tell >= 0.5 x raw, ask
p50 <= 2 x raw) are the plaintext figures; the ``curve_`` ones are printed
beside them.

Rounds alternate which side goes first; the median round is reported. Every
wait has a timeout; on failure the script prints why, stops both receivers
(by PID: terminate, then kill) and exits 1. ``--profile DIR`` records both
fleetplane processes with py-spy (collapsed stacks, active samples only).
Last line: one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Run as a script, this file's directory comes first on sys.path, and this file
# (transport.py) would shadow the ``transport`` package: drop that entry.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import msgpack  # noqa: E402
import zmq  # noqa: E402

from actors import Actor  # noqa: E402
from transport.codec import encode, message  # noqa: E402

WAIT = 10.0            # seconds: the longest any single wait may take
START_TIMEOUT = 30.0   # seconds for a receiver process to print its ready line
SMALL_TARGET = 100     # bytes: encoded size of the "small" message
BIG_PAD = 10 * 1024    # bytes of padding in the "10 KiB" message
A, B = 1_000_000, 42   # two ints carried by every message


# --- messages and actors (imported by the fleetplane receiver as tests.bench.transport) --------

@message("benchzmq.Blob")
class Blob:
    seq: int
    ack: bool
    a: int
    b: int
    pad: bytes


@message("benchzmq.Ack")
class Ack:
    n: int


@message("benchzmq.Reset")
class Reset:
    pass


@message("benchzmq.Stats")
class Stats:
    pass


@message("benchzmq.StatsReply")
class StatsReply:
    counters: dict


def _small_pad() -> bytes:
    base = len(encode(Blob(1000, False, A, B, b"")))  # seq 256..65535 packs in 3 bytes
    return b"p" * (SMALL_TARGET - base)  # an empty pad already counts its 2-byte bin8 header


SMALL_PAD = _small_pad()
BIG = b"b" * BIG_PAD


class Counter(Actor):
    """Counts Blobs; answers Ack(count) to a Blob with ack set, Ack(0) to Reset, StatsReply to Stats."""

    def __init__(self):
        self.n = 0

    def receive(self, msg, sender):
        if msg.__class__ is Blob:
            self.n += 1
            if msg.ack:
                self.reply(Ack(self.n))
        elif msg.__class__ is Reset:
            self.n = 0
            self.reply(Ack(0))
        elif msg.__class__ is Stats:
            self.reply(StatsReply({k: v for k, v in self.node.counters().items() if isinstance(v, int)}))


class Echo(Actor):
    def receive(self, msg, sender):
        self.reply(msg)


# --- the raw receiver (runs in its own process) ------------------------------------------------

def raw_receiver(bind: str, curve_secret: str | None = None) -> int:
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(1))
    parent = os.getppid()
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.RCVHWM, 10_000)
    if curve_secret:  # a CURVE server without a ZAP handler: any client key may connect
        router.curve_server = True
        router.curve_secretkey = curve_secret.encode()
        router.curve_publickey = zmq.curve_public(curve_secret.encode())
    router.bind(bind)
    print(json.dumps({"endpoint": router.getsockopt(zmq.LAST_ENDPOINT).decode(), "pid": os.getpid()}), flush=True)
    packb, unpackb = msgpack.packb, msgpack.unpackb
    recv, send = router.recv_multipart, router.send_multipart
    blob, reset = Blob.__fleetplane_tag__, Reset.__fleetplane_tag__  # type: ignore[attr-defined]
    ack = Ack.__fleetplane_tag__  # type: ignore[attr-defined]
    n = 0
    try:
        while not stop:
            if not router.poll(200):
                if os.getppid() != parent:  # the benchmark died without stopping us
                    break
                continue
            for _ in range(1000):
                try:
                    frames = recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if len(frames) != 3:
                    continue
                ident, to, payload = frames
                d = unpackb(payload, raw=False)
                if to == b"echo":
                    send([ident, packb(d, use_bin_type=True)])
                elif d["@"] == blob:
                    n += 1
                    if d["ack"]:
                        send([ident, packb({"@": ack, "n": n}, use_bin_type=True)])
                elif d["@"] == reset:
                    n = 0
                    send([ident, packb({"@": ack, "n": 0}, use_bin_type=True)])
    finally:
        router.close(0)
        ctx.term()
    return 0


# --- child processes ------------------------------------------------------------------------

class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


def _die_with_parent() -> None:  # runs in the child between fork and exec (Linux only)
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Child:
    """A receiver process: started, read for its ready line, stopped by its own PID."""

    def __init__(self, what: str, argv: list[str]):
        self.what = what
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.err, start_new_session=True,
                                     preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        self.pid = self.proc.pid

    def ready(self, timeout: float = START_TIMEOUT) -> dict:
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        buf = b""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(f"{self.what} (pid {self.pid}) printed no ready line within {timeout}s{self.tail()}")
                if sel.select(left):
                    chunk = os.read(fd, 4096)
                    if not chunk:
                        rc = self.proc.wait(timeout=5)
                        raise BenchError(f"{self.what} (pid {self.pid}) exited with status {rc} before it was ready{self.tail()}")
                    buf += chunk
        try:
            return json.loads(buf.split(b"\n", 1)[0])
        except ValueError:
            raise BenchError(f"{self.what} printed a bad ready line: {buf[:200]!r}{self.tail()}") from None

    def check_alive(self) -> None:
        rc = self.proc.poll()
        if rc is not None:
            raise BenchError(f"{self.what} (pid {self.pid}) died with status {rc}{self.tail()}")

    def tail(self) -> str:
        try:
            self.err.seek(0)
            text = self.err.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""
        return ("\n--- its stderr (last lines) ---\n" + "\n".join(text.splitlines()[-15:])) if text else ""

    def stop(self, timeout: float = 5.0) -> int | None:
        p = self.proc
        if p.poll() is None:
            try:
                p.terminate()
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                try:
                    p.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    print(f"warning: {self.what} (pid {self.pid}) did not die after SIGKILL", file=sys.stderr)
        if p.stdout is not None:
            p.stdout.close()
        return p.returncode


def signal_stop(pid_proc: subprocess.Popen, sig: int, timeout: float = 10.0) -> None:
    """Stop a helper (py-spy) with ``sig`` so it writes its output, then make sure it is gone."""
    if pid_proc.poll() is None:
        try:
            pid_proc.send_signal(sig)
            pid_proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pid_proc.kill()
            pid_proc.wait(timeout=timeout)


# --- measurements: fleetplane -------------------------------------------------------------

COUNTER = "recv/counter"
ECHO = "recv/echo"


def _result(fut: Future, what: str):
    try:
        return fut.result(timeout=WAIT + 1)
    except FutureTimeout:
        raise BenchError(f"fleetplane: no answer to {what} within {WAIT + 1}s") from None
    except Exception as e:
        raise BenchError(f"fleetplane: {what} failed: {type(e).__name__}: {e}") from None


def fp_tell(node, n: int, pad: bytes, chunk: int, window: int) -> float:
    got = _result(node.ask(COUNTER, Reset(), timeout=WAIT), "Reset")
    if got != Ack(0):
        raise BenchError(f"fleetplane: Reset answered {got!r}")
    msgs = [Blob(i, (i + 1) % chunk == 0 or i == n - 1, A, B, pad) for i in range(n)]
    tell, ask = node.tell, node.ask
    pending: deque[Future] = deque()
    gc.collect()
    t0 = time.perf_counter()
    for m in msgs:
        if m.ack:
            pending.append(ask(COUNTER, m, WAIT))
            if len(pending) > window:
                _result(pending.popleft(), "a chunk ack")
        else:
            tell(COUNTER, m)
    last = None
    while pending:
        last = _result(pending.popleft(), "a chunk ack")
    dt = time.perf_counter() - t0
    if not isinstance(last, Ack) or last.n != n:
        raise BenchError(f"fleetplane: the receiver counted {getattr(last, 'n', last)!r} of {n} messages "
                         f"(sender dead letters so far: {node.counters().get('dead_letters', 0)})")
    return n / dt


def fp_ask(node, n: int) -> list[float]:
    m = Blob(12345, False, A, B, SMALL_PAD)
    ask = node.ask
    lat = []
    perf = time.perf_counter
    gc.collect()
    for _ in range(n):
        t0 = perf()
        r = _result(ask(ECHO, m, WAIT), "an ask to Echo")
        lat.append(perf() - t0)
    if r != m:
        raise BenchError(f"fleetplane: Echo answered {r!r:.80}")
    return lat


# --- measurements: raw pyzmq + msgpack ------------------------------------------------------

class RawClient:
    def __init__(self, endpoint: str, curve_server_key: bytes | None = None):
        self.ctx = zmq.Context()
        s = self.sock = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.SNDHWM, 10_000)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDTIMEO, int(WAIT * 1000))  # a send that would block this long fails
        if curve_server_key is not None:
            s.curve_publickey, s.curve_secretkey = zmq.curve_keypair()
            s.curve_serverkey = curve_server_key
        s.connect(endpoint)

    def recv(self, what: str) -> dict:
        if not self.sock.poll(WAIT * 1000):
            raise BenchError(f"raw: no answer to {what} within {WAIT}s")
        return msgpack.unpackb(self.sock.recv(), raw=False)

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


BLOB_TAG = Blob.__fleetplane_tag__  # type: ignore[attr-defined]


def _raw_blob(seq: int, ack: bool, pad: bytes) -> dict:
    return {"@": BLOB_TAG, "seq": seq, "ack": ack, "a": A, "b": B, "pad": pad}


def raw_tell(c: RawClient, n: int, pad: bytes, chunk: int, window: int) -> float:
    c.sock.send_multipart([b"counter", msgpack.packb({"@": Reset.__fleetplane_tag__}, use_bin_type=True)])  # type: ignore[attr-defined]
    got = c.recv("Reset")
    if got.get("n") != 0:
        raise BenchError(f"raw: Reset answered {got!r}")
    msgs = [_raw_blob(i, (i + 1) % chunk == 0 or i == n - 1, pad) for i in range(n)]
    send, packb, recv = c.sock.send_multipart, msgpack.packb, c.recv
    outstanding = 0
    last = None
    gc.collect()
    t0 = time.perf_counter()
    try:
        for d in msgs:
            send([b"counter", packb(d, use_bin_type=True)])
            if d["ack"]:
                outstanding += 1
                if outstanding > window:
                    recv("a chunk ack")
                    outstanding -= 1
        while outstanding:
            last = recv("a chunk ack")
            outstanding -= 1
    except zmq.Again:
        raise BenchError(f"raw: a send blocked for {WAIT}s (queue full)") from None
    dt = time.perf_counter() - t0
    if last is None or last.get("n") != n:
        raise BenchError(f"raw: the receiver counted {last and last.get('n')!r} of {n} messages")
    return n / dt


def raw_ask(c: RawClient, n: int) -> list[float]:
    d = _raw_blob(12345, False, SMALL_PAD)
    send, recv, packb = c.sock.send_multipart, c.recv, msgpack.packb
    lat = []
    perf = time.perf_counter
    gc.collect()
    for _ in range(n):
        t0 = perf()
        send([b"echo", packb(d, use_bin_type=True)])
        r = recv("an echo")
        lat.append(perf() - t0)
    if r != d:
        raise BenchError(f"raw: echo answered {r!r:.80}")
    return lat


# --- driver -------------------------------------------------------------------------------

def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def run(args, children: list, helpers: list) -> dict:
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="ERROR")
    figures = run_mode(args, children, helpers, curve=False)
    if args.curve:
        curve = run_mode(args, children, helpers, curve=True)
        figures.update({f"curve_{k}": v for k, v in curve.items() if k not in ("dispatch", "messages", "messages_10k",
                                                                              "asks", "rounds", "chunk", "window")})
        print("\n                  plaintext      CURVE   (each against raw ZeroMQ in the same mode)")
        for k in ("tell_small_ratio", "tell_10k_ratio", "ask_p50_ratio", "ask_p99_ratio", "tell_small_per_s",
                  "ask_p50_us"):
            print(f"{k:<18}{figures[k]:>10}  {figures['curve_' + k]:>9}")
    return figures


def run_mode(args, children: list, helpers: list, curve: bool) -> dict:
    from actors import Node
    from transport.zmq import CurveConfig, ZmqTransport

    py = sys.executable
    mode = "CURVE" if curve else "plaintext"
    print(f"--- {mode} ---", flush=True)
    fp_argv = [py, "-m", "topologies.node", "--name", "recv", "--bind", "tcp://127.0.0.1:*", "--log-level", "ERROR",
               "--dispatch", args.dispatch,
               "--spawn", "counter=tests.bench.transport:Counter", "--spawn", "echo=tests.bench.transport:Echo"]
    raw_argv = [py, str(Path(__file__).resolve()), "--raw-receiver", "tcp://127.0.0.1:*"]
    sender_curve = raw_server_key = None
    keydir = None
    if curve:
        r_pub, r_sec = zmq.curve_keypair()
        b_pub, b_sec = zmq.curve_keypair()
        keydir = Path(tempfile.mkdtemp(prefix="bench-curve-"))
        keyfile = keydir / "recv.json"
        keyfile.write_text(json.dumps({"public_key": r_pub.decode(), "secret_key": r_sec.decode(),
                                       "peer_keys": {"bench": b_pub.decode()}}))
        fp_argv += ["--curve", str(keyfile)]
        sender_curve = CurveConfig(b_pub, b_sec, {"recv": r_pub})
        x_pub, x_sec = zmq.curve_keypair()
        raw_argv += ["--raw-curve", x_sec.decode()]
        raw_server_key = x_pub
    fp = Child(f"fleetplane receiver ({mode})", fp_argv)
    children.append(fp)
    raw = Child(f"raw receiver ({mode})", raw_argv)
    children.append(raw)
    try:
        fp_ep = fp.ready()["endpoint"]
        raw_ep = raw.ready()["endpoint"]
    finally:
        if keydir is not None:
            shutil.rmtree(keydir, ignore_errors=True)  # read by the receiver at start
    print(f"fleetplane receiver pid {fp.pid} at {fp_ep} (dispatch {args.dispatch}); raw receiver pid {raw.pid} "
          f"at {raw_ep}", flush=True)

    if args.profile:
        spy = shutil.which("py-spy", path=str(Path(py).parent) + os.pathsep + os.environ.get("PATH", ""))
        if spy is None:
            raise BenchError("--profile needs py-spy (pip install py-spy)")
        args.profile.mkdir(parents=True, exist_ok=True)
        for who, pid in (("sender", os.getpid()), ("receiver", fp.pid)):
            out = args.profile / f"{who}.collapsed"
            helpers.append(subprocess.Popen(
                [spy, "record", "--pid", str(pid), "--rate", "250", "--nonblocking", "--threads",
                 "--format", "raw", "-o", str(out)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        print(f"profiling with py-spy into {args.profile}/(sender|receiver).collapsed", flush=True)

    node = Node("bench", transport=ZmqTransport("tcp://127.0.0.1:*", {"recv": fp_ep}, curve=sender_curve))
    client = RawClient(raw_ep, raw_server_key)
    try:
        figures = _measure(args, node, client, fp, raw)
    finally:
        client.close()
        node.shutdown()
    if curve and figures["receiver_bad_frames"]:
        raise BenchError("CURVE: the receiver refused the sender's traffic (bad_identity?)")
    for c in (fp, raw):  # one mode's receivers are done
        c.stop()
    return figures


def _measure(args, node, client: RawClient, fp: Child, raw: Child) -> dict:
    small_size = len(encode(Blob(args.messages // 2, False, A, B, SMALL_PAD)))
    big_size = len(encode(Blob(args.messages_10k // 2, False, A, B, BIG)))
    raw_small = len(msgpack.packb(_raw_blob(args.messages // 2, False, SMALL_PAD), use_bin_type=True))
    if raw_small != small_size:
        raise BenchError(f"payload mismatch: fleetplane {small_size} B, raw {raw_small} B")

    # Warm-up: connections, heartbeats (the receiver learns our endpoint), code paths.
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            _result(node.ask(ECHO, Blob(0, False, A, B, b""), timeout=1.0), "the first ask")
            break
        except BenchError:
            fp.check_alive()
            if time.monotonic() > deadline:
                raise
    warm_n = min(2000, args.messages)
    fp_tell(node, warm_n, SMALL_PAD, args.chunk, args.window)
    raw_tell(client, warm_n, SMALL_PAD, args.chunk, args.window)
    fp_ask(node, 100)
    raw_ask(client, 100)
    print(f"warm-up done; payloads: small {small_size} B, big {big_size} B; "
          f"chunk {args.chunk} x window {args.window}", flush=True)

    res: dict[str, list] = {k: [] for k in ("fs", "rs", "fb", "rb", "fa", "ra")}
    dl0 = node.counters().get("dead_letters", 0)
    R = args.rounds
    for r in range(R):
        fp_first = r % 2 == 0
        order = (("f", "r") if fp_first else ("r", "f"))
        for side in order:
            if side == "f":
                res["fs"].append(fp_tell(node, args.messages, SMALL_PAD, args.chunk, args.window))
            else:
                res["rs"].append(raw_tell(client, args.messages, SMALL_PAD, args.chunk, args.window))
        print(f"round {r + 1}/{R}: tell {small_size} B: fleetplane {res['fs'][-1]:,.0f}/s raw {res['rs'][-1]:,.0f}/s "
              f"({res['fs'][-1] / res['rs'][-1]:.2f})", flush=True)
        for side in order:
            if side == "f":
                res["fb"].append(fp_tell(node, args.messages_10k, BIG, args.chunk, args.window))
            else:
                res["rb"].append(raw_tell(client, args.messages_10k, BIG, args.chunk, args.window))
        print(f"round {r + 1}/{R}: tell {big_size} B: fleetplane {res['fb'][-1]:,.0f}/s raw {res['rb'][-1]:,.0f}/s "
              f"({res['fb'][-1] / res['rb'][-1]:.2f})", flush=True)
        for side in order:
            if side == "f":
                res["fa"].append(fp_ask(node, args.asks))
            else:
                res["ra"].append(raw_ask(client, args.asks))
        print(f"round {r + 1}/{R}: ask p50: fleetplane {pct(res['fa'][-1], .5) * 1e6:.1f}us "
              f"raw {pct(res['ra'][-1], .5) * 1e6:.1f}us "
              f"({pct(res['fa'][-1], .5) / pct(res['ra'][-1], .5):.2f}x)", flush=True)
        fp.check_alive()
        raw.check_alive()

    counters = node.counters()
    dead = counters.get("dead_letters", 0) - dl0
    remote = _result(node.ask(COUNTER, Stats(), timeout=WAIT), "Stats").counters
    rdead = remote.get("dead_letters", 0)
    rbad = remote.get("decode_errors", 0) + sum(v for k, v in remote.items() if ".bad_" in k or k.startswith("transport.bad_"))

    med = statistics.median
    fs, rs, fb, rb = med(res["fs"]), med(res["rs"]), med(res["fb"]), med(res["rb"])
    fa50 = med(pct(x, .5) for x in res["fa"]) * 1e6
    fa99 = med(pct(x, .99) for x in res["fa"]) * 1e6
    ra50 = med(pct(x, .5) for x in res["ra"]) * 1e6
    ra99 = med(pct(x, .99) for x in res["ra"]) * 1e6
    figures = {
        "dispatch": args.dispatch,
        "messages": args.messages, "messages_10k": args.messages_10k, "asks": args.asks, "rounds": R,
        "chunk": args.chunk, "window": args.window,
        "small_bytes": small_size, "big_bytes": big_size,
        "tell_small_per_s": round(fs), "raw_small_per_s": round(rs), "tell_small_ratio": _ratio(fs, rs),
        "tell_10k_per_s": round(fb), "raw_10k_per_s": round(rb), "tell_10k_ratio": _ratio(fb, rb),
        "tell_10k_mib_per_s": round(fb * big_size / 2**20, 1), "raw_10k_mib_per_s": round(rb * big_size / 2**20, 1),
        "ask_p50_us": round(fa50, 1), "ask_p99_us": round(fa99, 1),
        "raw_ask_p50_us": round(ra50, 1), "raw_ask_p99_us": round(ra99, 1),
        "ask_p50_ratio": _ratio(fa50, ra50), "ask_p99_ratio": _ratio(fa99, ra99),
        "dead_letters": dead, "receiver_dead_letters": rdead, "receiver_bad_frames": rbad,
    }
    print(f"tell {small_size} B  fleetplane: {fs:>10,.0f} msgs/s   raw: {rs:>10,.0f} msgs/s   "
          f"tell_small_ratio {figures['tell_small_ratio']}  (target >= 0.5)")
    print(f"tell {big_size} B fleetplane: {fb:>10,.0f} msgs/s   raw: {rb:>10,.0f} msgs/s   "
          f"tell_10k_ratio {figures['tell_10k_ratio']}  ({figures['tell_10k_mib_per_s']} vs "
          f"{figures['raw_10k_mib_per_s']} MiB/s)")
    print(f"ask p50      fleetplane: {fa50:>8.1f} us       raw: {ra50:>8.1f} us       "
          f"ask_p50_ratio {figures['ask_p50_ratio']}  (target <= 2)")
    print(f"ask p99      fleetplane: {fa99:>8.1f} us       raw: {ra99:>8.1f} us       "
          f"ask_p99_ratio {figures['ask_p99_ratio']}")
    if dead or rdead or rbad:
        bar = "!" * 72
        print(f"{bar}\n!!! DEAD LETTERS: sender {dead}, receiver {rdead}; receiver bad frames {rbad}\n"
              f"!!! sender counters: { {k: v for k, v in counters.items() if 'dead' in k or 'dropped' in k} }\n{bar}")
    return figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small N for a fast check")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--messages", type=int, help="~100-byte tells per round (default 100,000; quick 10,000)")
    ap.add_argument("--messages-10k", type=int, help="10 KiB tells per round (default 20,000; quick 2,000)")
    ap.add_argument("--asks", type=int, help="sequential asks per round (default 5,000; quick 500)")
    ap.add_argument("--chunk", type=int, default=1000, help="ask for an ack every CHUNK tells (default 1000)")
    ap.add_argument("--window", type=int, default=4, help="acks outstanding at most (default 4)")
    ap.add_argument("--dispatch", choices=("thread", "loop"), default="loop",
                    help="the receiver's actors: on the transport's I/O loop (default) or a thread each")
    ap.add_argument("--profile", type=Path, metavar="DIR", help="record both fleetplane processes with py-spy")
    ap.add_argument("--no-curve", dest="curve", action="store_false", help="skip the CURVE measurements")
    ap.add_argument("--raw-receiver", metavar="BIND", help=argparse.SUPPRESS)
    ap.add_argument("--raw-curve", metavar="SECRET", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.raw_receiver:
        return raw_receiver(args.raw_receiver, args.raw_curve)
    q = args.quick
    if args.messages is None:
        args.messages = 10_000 if q else 100_000
    if args.messages_10k is None:
        args.messages_10k = 2_000 if q else 20_000
    if args.asks is None:
        args.asks = 500 if q else 5_000
    if min(args.rounds, args.messages, args.messages_10k, args.asks, args.chunk, args.window) <= 0:
        ap.error("counts must be positive")
    if args.chunk * (args.window + 1) >= 10_000:
        ap.error("chunk * (window + 1) must stay below the 10,000-message SNDHWM")

    def on_term(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    children: list[Child] = []
    helpers: list[subprocess.Popen] = []
    status = 0
    try:
        figures = run(args, children, helpers)
    except BenchError as e:
        dead = [f"{c.what} (pid {c.pid}) exited with status {c.proc.poll()}" for c in children if c.proc.poll() is not None]
        print(f"error: {e}" + "".join(f"\nnote: {d}" for d in dead if d not in str(e)), file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        status = 130
    except Exception as e:  # a bug here or an unexpected zmq error: still clean up
        import traceback
        traceback.print_exc()
        print(f"error: unexpected {type(e).__name__}: {e}", file=sys.stderr)
        status = 1
    finally:
        for h in helpers:
            signal_stop(h, signal.SIGINT)
        if args.profile:
            for who in ("sender", "receiver"):
                out = args.profile / f"{who}.collapsed"
                if helpers and not out.exists():
                    print(f"warning: py-spy wrote no {out} (is ptrace allowed?)", file=sys.stderr)
        for c in reversed(children):
            rc = c.stop()
            if rc not in (0, None, -signal.SIGTERM) and status == 0:
                print(f"warning: {c.what} exited with status {rc}{c.tail()}", file=sys.stderr)
    if status == 0:
        print(json.dumps(figures))
    return status


if __name__ == "__main__":
    sys.exit(main())
