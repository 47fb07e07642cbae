"""``fleetplane demo``: the in-process tour of the runtime, on the ping-pong protocol.

It runs the ping-pong topology twice: first as three real Nodes in this
process (pykka threads, the in-memory transport, the real codec on every
cross-node message), then as the same state machines in the deterministic
simulator over a lossy network, replayed once from the same seed to show the
trace is byte-identical. It prints progress as it goes, writes the event logs
and a summary under ``runs/``, and exits 0 when every pinger finished its
rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
from pathlib import Path

from topologies.argtypes import positive_int, probability
from topologies.cli import run_dir_for, setup_logging

__all__ = ["cmd_demo", "setup_demo"]


def _demo_real(run_dir: Path, rounds: int, timeout: float) -> dict:
    from actors import EventLog, Node, StateMachineActor
    from protocols.pingpong import Ping, Pinger, Pong, Ponger
    from transport.memory import MemoryNetwork

    events = EventLog(run_dir / "events.jsonl")
    net = MemoryNetwork()
    nodes = [Node(name, transport=net.transport(), event_log=events) for name in ("alpha", "beta", "gamma")]
    alpha, beta, gamma = nodes
    print(f"[real] 3 nodes up: {', '.join(n.name for n in nodes)} (in-memory transport, real codec)")
    finished = threading.Event()
    done: set[str] = set()
    progress: dict[str, int] = {}
    pingers = ["alpha/pinger", "gamma/pinger"]

    try:
        beta.spawn(StateMachineActor, Ponger, name="ponger")
        reply = alpha.ask("beta/ponger", Ping(0), timeout=2).result(5)
        print(f"[real] ask alpha -> beta/ponger: {reply!r}")
        assert reply == Pong(0)
        for node in (alpha, gamma):
            node.spawn(StateMachineActor, lambda: Pinger("beta/ponger", rounds=rounds, retry_after=0.5), name="pinger")
        t0 = time.monotonic()
        last_report = 0.0
        while True:
            for e in _read_new(run_dir / "events.jsonl", events):  # progress comes from the event log
                who = f"{e['node']}/{e['actor']}"
                if e["kind"] == "pingpong.round":
                    progress[who] = e["fields"]["seq"]
                elif e["kind"] == "pingpong.done":
                    done.add(who)
            now = time.monotonic()
            if now - last_report > 0.2 or len(done) == len(pingers):
                last_report = now
                print("[real] progress: " + ", ".join(f"{p} {progress.get(p, 0)}/{rounds}" for p in pingers), flush=True)
            if len(done) == len(pingers):
                finished.set()
                break
            if now - t0 > timeout:
                break
            time.sleep(0.02)
        elapsed = time.monotonic() - t0
        counters = {n.name: n.counters() for n in nodes}
    finally:
        for n in nodes:
            n.shutdown()
        events.close()
    return {"finished": finished.is_set(), "seconds": round(elapsed, 3), "pingers_done": sorted(done),
            "counters": counters, "events": str(run_dir / "events.jsonl")}


_offsets: dict[Path, int] = {}


def _read_new(path: Path, events) -> list[dict]:
    """Events appended to ``path`` since the last call (the demo's progress source)."""
    events.flush()
    try:
        with open(path, encoding="utf-8") as f:
            f.seek(_offsets.get(path, 0))
            data = f.read()
            _offsets[path] = f.tell()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def _demo_sim_once(seed: int, rounds: int, loss: float) -> tuple[str, dict]:
    from actors.simulator import Simulator
    from protocols.pingpong import Pinger, Ponger
    from transport.sim import LinkSpec, SimNetwork, Uniform

    net = SimNetwork(default=LinkSpec(latency=Uniform(0.001, 0.020), loss=loss, duplicate=0.05, reorder=0.05))
    sim = Simulator(seed, network=net)
    sim.add("beta/ponger", Ponger())
    pingers = {"alpha/pinger": Pinger("beta/ponger", rounds=rounds, retry_after=0.1),
               "gamma/pinger": Pinger("beta/ponger", rounds=rounds, retry_after=0.1)}
    for addr, m in pingers.items():
        sim.add(addr, m)
    sim.run(max_events=1_000_000)  # the queue empties once both pingers are done
    text = sim.event_log.text()
    figures = {
        "seed": seed,
        "finished": all(m.done for m in pingers.values()),
        "virtual_seconds": round(sim.now, 6),
        "retries": sum(m.retries for m in pingers.values()),
        "events": sim.event_log.count,
        "counters": sim.counters(),
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
    }
    return text, figures


def _demo_sim(run_dir: Path, seed: int, rounds: int, loss: float) -> dict:
    print(f"[sim] same state machines, deterministic simulator, seed {seed}, loss {loss:.0%}, duplication 5%, reordering 5%")
    t0 = time.perf_counter()
    text, figures = _demo_sim_once(seed, rounds, loss)
    wall = time.perf_counter() - t0
    (run_dir / "sim-events.jsonl").write_text(text, encoding="utf-8")
    c = figures["counters"]
    print(f"[sim] {figures['virtual_seconds']:.3f} virtual s in {wall:.3f} real s; sent {c.get('sent', 0)}, "
          f"lost {c.get('dropped_loss', 0)}, duplicated {c.get('duplicated', 0)}, retries {figures['retries']}")
    _, again = _demo_sim_once(seed, rounds, loss)
    figures["replay_identical"] = again["sha256"] == figures["sha256"]
    print(f"[sim] replay from seed {seed}: event log sha256 {figures['sha256'][:16]}... "
          f"{'identical' if figures['replay_identical'] else 'DIFFERENT (determinism bug)'}")
    figures["events_file"] = str(run_dir / "sim-events.jsonl")
    return figures


def cmd_demo(args: argparse.Namespace) -> int:
    run_dir = run_dir_for(args.out, "demo")
    setup_logging(run_dir, args.verbose)
    print(f"fleetplane demo: ping-pong, {args.rounds} rounds per pinger; run directory {run_dir}")
    real = _demo_real(run_dir, args.rounds, args.timeout)
    sim = _demo_sim(run_dir, args.seed, args.rounds, args.loss)
    ok = real["finished"] and sim["finished"] and sim["replay_identical"]
    summary = {"ok": ok, "real": real, "sim": sim}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    print(f"[real] {'finished' if real['finished'] else 'DID NOT FINISH'} in {real['seconds']} s; "
          f"events: {real['events']}")
    print(f"[sim]  {'finished' if sim['finished'] else 'DID NOT FINISH'}; events: {sim['events_file']}")
    print(f"summary: {run_dir / 'summary.json'}")
    print("demo OK" if ok else "demo FAILED")
    return 0 if ok else 1


def setup_demo(d: argparse.ArgumentParser) -> None:
    d.add_argument("--rounds", type=positive_int, default=20, help="rounds per pinger (default 20)")
    d.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
    d.add_argument("--loss", type=probability, default=0.2, help="simulated message loss (default 0.2)")
    d.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the real run (default 30)")
    d.add_argument("--out", default="runs", help="parent folder of the run directory (default ./runs)")
    d.add_argument("-v", "--verbose", action="store_true", help="show debug logs on stderr")
