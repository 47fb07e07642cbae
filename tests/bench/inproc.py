"""In-process benchmark: Node tell/ask against bare pykka, in the same run.

    python tests/bench/inproc.py [--messages 200000] [--asks 5000] [--rounds 5]

Tell throughput: one sender thread tells N messages to one actor that counts
them; the clock stops when the actor has handled the last one. Ask round
trip: sequential asks answered by the actor, p50 and p99 of the per-ask
latency. Bare pykka runs the same payloads through ``ActorRef.tell`` and
``ActorRef.ask`` with its default inbox (``queue.Queue``); Node actors run on
pykka too but with a ``queue.SimpleQueue`` inbox, which is most of the gap. Rounds alternate between the two so drift hits both; the
median round is reported. Last line: one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

# Run as a script, this folder comes first on sys.path, where transport.py (the
# transport benchmark) would shadow the transport package: use the project root.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parents[1]))

import pykka  # noqa: E402

from actors import Actor, Node  # noqa: E402
from transport.codec import message  # noqa: E402


@message("bench.Work")
class Work:
    seq: int
    payload: str = "x" * 32


# --- bare pykka ---------------------------------------------------------------------

class PykkaCounter(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(self, target: int, done: threading.Event):
        super().__init__()
        self.n, self.target, self.done = 0, target, done

    def on_receive(self, msg):
        if msg.seq < 0:  # an ask
            return msg
        self.n += 1
        if self.n == self.target:
            self.done.set()
        return None


# --- fleetplane Node --------------------------------------------------------------------

class NodeCounter(Actor):
    def __init__(self, target: int, done: threading.Event):
        self.n, self.target, self.done = 0, target, done

    def receive(self, msg, sender):
        if msg.seq < 0:
            self.reply(msg)
            return
        self.n += 1
        if self.n == self.target:
            self.done.set()


def pykka_tell(n: int) -> float:
    done = threading.Event()
    ref = PykkaCounter.start(n, done)
    msgs = [Work(i) for i in range(n)]
    t0 = time.perf_counter()
    tell = ref.tell
    for m in msgs:
        tell(m)
    done.wait()
    dt = time.perf_counter() - t0
    ref.stop()
    return n / dt


def node_tell(n: int) -> float:
    done = threading.Event()
    node = Node("bench")
    addr = node.spawn(NodeCounter, n, done, name="counter")
    msgs = [Work(i) for i in range(n)]
    t0 = time.perf_counter()
    tell = node.tell
    for m in msgs:
        tell(addr, m)
    done.wait()
    dt = time.perf_counter() - t0
    node.shutdown()
    return n / dt


def pykka_ask(n: int) -> list[float]:
    ref = PykkaCounter.start(1 << 60, threading.Event())
    q = Work(-1)
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        ref.ask(q)
        lat.append(time.perf_counter() - t0)
    ref.stop()
    return lat


def node_ask(n: int) -> list[float]:
    node = Node("bench")
    addr = node.spawn(NodeCounter, 1 << 60, threading.Event(), name="counter")
    q = Work(-1)
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        node.ask(addr, q, timeout=10).result()
        lat.append(time.perf_counter() - t0)
    node.shutdown()
    return lat


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--asks", type=int, default=5_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    tell_p, tell_n, ask_p, ask_n = [], [], [], []
    for r in range(args.rounds):
        tell_p.append(pykka_tell(args.messages))
        tell_n.append(node_tell(args.messages))
        lp, ln = pykka_ask(args.asks), node_ask(args.asks)
        ask_p.append(lp)
        ask_n.append(ln)
        print(f"round {r + 1}/{args.rounds}: tell pykka {tell_p[-1]:,.0f}/s node {tell_n[-1]:,.0f}/s; "
              f"ask p50 pykka {pct(lp, .5) * 1e6:.1f}us node {pct(ln, .5) * 1e6:.1f}us", flush=True)

    pykka_tps = statistics.median(tell_p)
    node_tps = statistics.median(tell_n)
    pykka_p50 = statistics.median(pct(x, .5) for x in ask_p)
    node_p50 = statistics.median(pct(x, .5) for x in ask_n)
    pykka_p99 = statistics.median(pct(x, .99) for x in ask_p)
    node_p99 = statistics.median(pct(x, .99) for x in ask_n)
    figures = {
        "messages": args.messages,
        "asks": args.asks,
        "rounds": args.rounds,
        "pykka_tell_per_s": round(pykka_tps),
        "node_tell_per_s": round(node_tps),
        "tell_ratio": round(node_tps / pykka_tps, 3),
        "pykka_ask_p50_us": round(pykka_p50 * 1e6, 1),
        "node_ask_p50_us": round(node_p50 * 1e6, 1),
        "ask_ratio": round(node_p50 / pykka_p50, 3),
        "pykka_ask_p99_us": round(pykka_p99 * 1e6, 1),
        "node_ask_p99_us": round(node_p99 * 1e6, 1),
    }
    print(f"baseline bare pykka tell: {pykka_tps:,.0f} msgs/s")
    print(f"Node tell:                {node_tps:,.0f} msgs/s")
    print(f"tell_ratio (Node/pykka):  {figures['tell_ratio']}  (target >= 0.8)")
    print(f"baseline bare pykka ask:  p50 {figures['pykka_ask_p50_us']} us  p99 {figures['pykka_ask_p99_us']} us")
    print(f"Node ask:                 p50 {figures['node_ask_p50_us']} us  p99 {figures['node_ask_p99_us']} us")
    print(f"ask_ratio (Node p50 / pykka p50): {figures['ask_ratio']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
