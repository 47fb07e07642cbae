"""Benchmark: simulated messages per real second through the deterministic simulator.

How this works
--------------
N participants, each on its own node ("n{i}/p"), start by sending one Hop to a
random peer (chosen with the participant's own rng); every participant that
handles a Hop sends another one to a random peer while the shared budget of
messages lasts. The run ends when the queue drains, i.e. when exactly
``--messages`` messages have been sent and handled; every one was encoded and
decoded through the real codec and routed by the default SimNetwork (random
latency, FIFO links). The baseline, measured in the same run, is the same
number of bare ``codec.encode`` + ``codec.decode`` round trips on one Hop.

``--gc-freeze`` calls ``gc.freeze()`` after setup so CPython's full
collections stop rescanning the 10,000 participants (worth 0-10% here,
within the noise on a quiet machine); off by default.

Prints progress, then one figure per line, then one JSON object (last line).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
from pathlib import Path

# Run as a script, this folder comes first on sys.path, where transport.py (the
# transport benchmark) would shadow the transport package: use the project root.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parents[1]))

from actors.simulator import Simulator  # noqa: E402
from protocols.core import Send  # noqa: E402
from transport.codec import decode, encode, message  # noqa: E402


@message("simbench.Hop")
class Hop:
    origin: int
    hop: int


class Budget:
    __slots__ = ("left",)

    def __init__(self, n: int) -> None:
        self.left = n


class Hopper:
    """Forwards every Hop it handles to a random peer while the budget lasts."""

    tick_interval = None

    def __init__(self, index: int, peers: list[str], rng, budget: Budget) -> None:
        self.index = index
        self.peers = peers
        self.n = len(peers)
        self.random = rng.random  # peer = int(random() * n): randrange is 4x slower
        self.budget = budget

    def tick(self, now: float) -> list:
        return self.handle(None, "", now)

    def handle(self, msg, sender: str, now: float) -> list:
        budget = self.budget
        if budget.left <= 0:
            return []
        budget.left -= 1
        return [Send(self.peers[int(self.random() * self.n)], Hop(self.index, 0 if msg is None else msg.hop + 1))]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--participants", type=int, default=10_000)
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--gc-freeze", action="store_true",
                    help="gc.freeze() after setup, so full collections do not rescan the participants")
    args = ap.parse_args(argv)
    if args.participants < 2 or args.messages < 1:
        ap.error("need --participants >= 2 and --messages >= 1")

    t_setup = time.perf_counter()
    sim = Simulator(args.seed)
    peers = [f"n{i}/p" for i in range(args.participants)]
    budget = Budget(args.messages)
    for i, a in enumerate(peers):
        sim.add(a, Hopper(i, peers, sim.rng(a), budget))
    setup_s = time.perf_counter() - t_setup
    gc_freeze = args.gc_freeze
    if gc_freeze:
        gc.collect()
        gc.freeze()
    print(f"setup: {args.participants} participants in {setup_s:.2f} s", flush=True)

    chunk = max(1, (args.messages + args.participants) // 10)
    t0 = time.perf_counter()
    while True:
        n = sim.run(max_events=chunk)
        if n == 0:
            break
        c = sim.counters()
        el = time.perf_counter() - t0
        print(f"progress: {c['messages_handled']:>9} handled  {el:7.2f} s  sim time {sim.now:.3f} s", flush=True)
        if n < chunk:
            break
    seconds = time.perf_counter() - t0
    c = sim.counters()
    handled = c["messages_handled"]
    if handled != args.messages:
        raise SystemExit(f"expected {args.messages} messages handled, got {handled} (seed {args.seed})")

    msg = Hop(1, 2)
    t1 = time.perf_counter()
    for _ in range(args.messages):
        decode(encode(msg))
    codec_s = time.perf_counter() - t1

    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    fig = {
        "participants": args.participants,
        "messages": handled,
        "seconds": round(seconds, 3),
        "sim_msgs_per_s": round(handled / seconds),
        "codec_roundtrips_per_s": round(args.messages / codec_s),
        "ratio_vs_codec": round((handled / seconds) / (args.messages / codec_s), 3),
        "sim_time_s": round(sim.now, 6),
        "setup_seconds": round(setup_s, 3),
        "gc_freeze": gc_freeze,
        "max_rss_mb": round(max_rss_mb, 1),
        "seed": args.seed,
    }
    for k, v in fig.items():
        print(f"{k}: {v}")
    print(json.dumps(fig, sort_keys=False))
    return fig


if __name__ == "__main__":
    main(sys.argv[1:])
