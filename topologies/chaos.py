"""Chaos runs: a topology under a nemesis, then the invariant checkers.

How this works
--------------
The nemesis (``--nemesis NAME`` or the topology's ``[[chaos]]`` entries) gives a
seeded schedule of fault ops (:mod:`topologies.nemesis`). Then:

* ``--sim``: the simulator runs the topology with message tracing on and the
  ops scheduled at their virtual times. The whole run is executed **twice**
  from the same seed; the two event logs must be byte-identical, else the run
  fails naming the first differing event (a determinism bug is a bug).
* real processes: the launcher runs the topology and, as the schedule comes
  due, a control node (``chaosctl``) sends each node its fault plan
  (``SetFaults`` / an empty plan to heal) through the transport's fault hooks (every node is
  started with ``--fault-control chaosctl``: it obeys that node and refuses any other);
  ``kill`` is SIGKILL and ``restart`` starts the node again on its port;
  ``pause`` / ``resume`` are SIGSTOP / SIGCONT. Every op is written to the
  event log as ``nemesis.<op>``.

Afterwards the report (:mod:`topologies.report`) runs the runtime checkers and
those of the topology's plug-ins over the merged event log and writes
``results.json`` and ``report.html``. The chaos run fails if a checker says
*invalid*, if the replay differed, or if a checker the topology declares in
``[run] must_judge`` (by default: its plug-ins' ``must_judge``) answered
*unknown*, or if every checker answered *unknown*: a run that judged nothing
(or nothing it promised to judge) proves nothing.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import attrs

from actors.eventlog import EventLog
from topologies.launcher import RunResult, run_real, run_sim, start_node
from topologies.model import Topology
from topologies.nemesis import (
    ClearLinkFaults, FaultState, Grudge, Heal, Kill, LinkFault, NemesisSpec, Pause, Restart, Resume,
    apply_to_simulator, fault_plans, make_schedule,
)
from topologies.report import make_report

__all__ = ["CONTROL_NODE", "ChaosResult", "build_schedule", "on_channel", "run_chaos"]

CONTROL_NODE = "chaosctl"  # the control node of a real chaos run: the only node whose fault plans the nodes obey



@attrs.define
class ChaosResult:
    run: RunResult
    schedule: list
    verdicts: list[dict]
    replay_identical: bool | None
    first_difference: str | None
    must_judge: tuple[str, ...] = ()   # the checkers this run had to get a valid/invalid answer from
    unjudged: tuple[str, ...] = ()     # ... those of them that answered unknown

    @property
    def judged(self) -> bool:
        """Some checker answered valid or invalid: the run was judged at all."""
        return any(v["status"] != "unknown" for v in self.verdicts)

    @property
    def ok(self) -> bool:
        return (all(v["status"] != "invalid" for v in self.verdicts) and self.replay_identical is not False
                and not self.unjudged and self.judged and not self.run.reason.startswith("failed"))


def must_judge_of(topo: Topology) -> tuple[str, ...]:
    """The checkers a chaos run of ``topo`` must get a verdict from: ``[run] must_judge``, else its plug-ins' defaults."""
    from topologies.plugin import must_judge_for

    if topo.run.must_judge is not None:
        return tuple(topo.run.must_judge)
    return tuple(must_judge_for({a.kind for n in topo.nodes for a in n.actors}))


def unjudged_of(verdicts: list[dict], must: tuple[str, ...]) -> tuple[str, ...]:
    """The declared checkers that did not judge: answered unknown, or did not run at all."""
    status = {v["checker"]: v["status"] for v in verdicts}
    return tuple(m for m in must if status.get(m, "unknown") == "unknown")


def select_nodes(all_nodes: list[str], patterns: tuple[str, ...] | list[str] | None, target: str | None = None) -> list[str]:
    """The nodes a nemesis may strike: those matching any glob in ``patterns`` (every node if none).

    In ``racks.toml`` the monitor mesh is the links among the ``mon-*`` processes, so
    ``nodes = ["mon-*"]`` partitions the mesh while every rack control keeps reporting
    to its monitor. Nodes outside the selection keep every link. To cut one network
    channel of a topology with ``[channels]`` and not another between the same nodes,
    name it (``channel``, see :func:`on_channel`): ``--nemesis one --target inventory
    --channel main`` cuts racks.toml's main network and leaves the mesh and the
    rack-local bus up.
    """
    if not patterns:
        return list(all_nodes)
    for g in patterns:
        if not any(fnmatchcase(n, g) for n in all_nodes):
            raise ValueError(f"nodes: {g!r} matches no node (nodes: {', '.join(all_nodes)})")
    chosen = [n for n in all_nodes if any(fnmatchcase(n, g) for g in patterns)]
    if target is not None and target not in chosen:
        raise ValueError(f"target {target!r} is not among the selected nodes ({', '.join(chosen)})")
    return chosen


def build_schedule(topo: Topology, seed: int, nemesis: str | None = None, overrides: dict | None = None) -> list:
    """The fault schedule: ``nemesis`` with ``overrides``, or the topology's [[chaos]] entries.

    ``overrides["nodes"]`` (glob patterns) restricts the nemesis to those nodes (see :func:`select_nodes`).
    """
    rng = random.Random(f"{seed}:nemesis")
    if nemesis is not None:
        spec = dict(overrides or {})
        channel = spec.pop("channel", None)
        nodes = select_nodes(topo.node_names, spec.pop("nodes", None), spec.get("target"))
        return on_channel(topo, make_schedule(nemesis, nodes, rng, NemesisSpec(**spec)), channel)
    if not topo.chaos:
        raise ValueError(f"{topo.source or topo.name}: no --nemesis given and the topology has no [[chaos]] entries")
    schedule = []
    for entry in topo.chaos:
        spec = {k: v for k, v in attrs.asdict(entry).items()
                if k not in ("nemesis", "nodes", "channel") and v is not None}
        nodes = select_nodes(topo.node_names, entry.nodes, entry.target)
        schedule += on_channel(topo, make_schedule(entry.nemesis, nodes, rng, NemesisSpec(**spec)), entry.channel)
    return sorted(schedule, key=lambda item: item[0])


def on_channel(topo: Topology, schedule: list, channel: str | None) -> list:
    """``schedule`` limited to the links of ``channel`` (None: every link, the schedule as it is).

    A topology's ``[channels]`` give each link (node pair) one channel, so cutting a channel is cutting the
    pairs whose link uses it: a grudge keeps only those pairs (the others stay up), a link fault is kept only
    on such a link. Both drivers then carry it out as any other: the simulator cuts those pairs, and each
    node's fault plan names only peers on that channel, which its transport holds on that channel's socket.
    A process fault (kill, pause) strikes every channel at once: refused.
    """
    if channel is None:
        return schedule
    if channel not in topo.channel_names:
        raise ValueError(f"unknown channel {channel!r} (channels of {topo.name}: {', '.join(topo.channel_names)})")
    out = []
    for t, op in schedule:
        if isinstance(op, (Kill, Restart, Pause, Resume)):
            raise ValueError(f"{op.kind} strikes processes, not links: it cannot be limited to channel {channel!r}")
        if isinstance(op, Grudge):
            op = Grudge(frozenset(p for p in op.blocked if topo.channel_of(*p) == channel),
                        f"{op.label} (channel {channel} only)")
        elif isinstance(op, LinkFault) and topo.channel_of(op.src, op.dst) != channel:
            continue
        out.append((t, op))
    return out


def describe_ops(ops: list) -> str:
    """What a batch of fault ops (taken at one moment) does, in words: "grudge majority; kill beta"."""
    words: list[str] = []
    links = [op.describe() for op in ops if isinstance(op, LinkFault)]
    for op in ops:
        d = op.describe()
        kind = d["op"]
        if isinstance(op, LinkFault):
            continue
        if isinstance(op, Grudge):
            words.append(f"partition {d.get('label') or ''} ({len(d['blocked'])} directed links cut)".replace("  ", " "))
        elif isinstance(op, Heal):
            words.append("heal the partition")
        elif isinstance(op, ClearLinkFaults):
            words.append("clear the link faults")
        else:
            words.append(f"{kind} {d.get('node')}")
    if links:
        what = [f"{k} {links[0][k]:g}" for k in ("loss", "delay", "duplicate", "reorder") if links[0].get(k)]
        nodes = sorted({x["src"] for x in links} | {x["dst"] for x in links})
        words.append(f"link faults on {len(links)} directed links among {len(nodes)} nodes ({', '.join(what) or 'none'})")
    return "; ".join(words)


def schedule_lines(schedule: list) -> list[str]:
    """The schedule grouped by time: one line per moment."""
    out, batch, at = [], [], None
    for t, op in schedule + [(None, None)]:
        if t != at and batch:
            out.append(f"{at:8.2f} s  {describe_ops(batch)}")
            batch = []
        at = t
        if op is not None:
            batch.append(op)
    return out


def _first_difference(a: Path, b: Path) -> str | None:
    la = a.read_text(encoding="utf-8").splitlines()
    lb = b.read_text(encoding="utf-8").splitlines()
    for i, (x, y) in enumerate(zip(la, lb), start=1):
        if x != y:
            return f"event {i} differs:\n  first run:  {x[:300]}\n  replay:     {y[:300]}"
    if len(la) != len(lb):
        return f"the logs differ in length ({len(la)} vs {len(lb)} events) after event {min(len(la), len(lb))}"
    return None


def run_chaos(topo: Topology, run_dir: Path, seed: int, *, nemesis: str | None = None, overrides: dict | None = None,
              sim: bool = False, duration: float | None = None, quiet: bool = False,
              must_judge: tuple[str, ...] | list[str] | None = None, verbose: bool = False) -> ChaosResult:
    """Run ``topo`` under the schedule and judge it; ``must_judge`` overrides the topology's declared checkers."""
    schedule = build_schedule(topo, seed, nemesis, overrides)
    must = tuple(must_judge) if must_judge is not None else must_judge_of(topo)
    run_dir = Path(run_dir).resolve()  # restarted nodes run in the repository, not in the caller's directory
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "schedule.json").write_text(json.dumps([{"time": t, **op.describe()} for t, op in schedule], indent=1))
    last_op = schedule[-1][0] if schedule else 0.0
    # The whole schedule plays out, then a recovery - after the last fault op and after the last
    # of the topology's [run] settle events (a condition raised by a monitor that was slow to come
    # back); the run ends once the topology is done (liveness after the faults) or at its duration limit.
    span = last_op + topo.run.recovery
    limit = duration if duration is not None else max(topo.run.duration, span)
    if not quiet:
        print(f"fault schedule ({'virtual ' if sim else ''}seconds from the start):", flush=True)
        for line in schedule_lines(schedule) or ["    (no fault op)"]:
            print(f"  {line}", flush=True)
    if sim:
        result, same, diff = _chaos_sim(topo, run_dir, seed, schedule, limit, span, quiet)
    else:
        result, same, diff = _chaos_real(topo, run_dir, schedule, limit, span, quiet, verbose), None, None
    summary = json.loads((run_dir / "summary.json").read_text())
    chaos = {"nemesis": nemesis or [c.nemesis for c in topo.chaos], "seed": seed, "ops": len(schedule),
             "replay_identical": same, "first_difference": diff, "must_judge": list(must)}
    summary["chaos"] = chaos  # before the report, which names the nemesis and seed in its header
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    report = make_report(run_dir)
    out = ChaosResult(result, schedule, report["verdicts"], same, diff, must, unjudged_of(report["verdicts"], must))
    chaos.update({"ok": out.ok, "unjudged": list(out.unjudged)})
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return out


def _chaos_sim(topo: Topology, run_dir: Path, seed: int, schedule: list, limit: float, span: float, quiet: bool):
    by_node = {n.name: [f"{n.name}/{a.name}" for a in n.actors] for n in topo.nodes}

    def setup(sim: Any, factories: dict) -> None:
        apply_to_simulator(sim, schedule, by_node, factories)

    settle = topo.run.recovery
    first = run_sim(topo, run_dir, seed, duration=limit, quiet=quiet, trace=True, setup=setup, min_seconds=span,
                    settle_for=settle)
    replay_dir = run_dir / "replay"
    run_sim(topo, replay_dir, seed, duration=limit, quiet=True, trace=True, setup=setup, min_seconds=span,
            settle_for=settle)
    diff = _first_difference(run_dir / "events.jsonl", replay_dir / "events.jsonl")
    return first, diff is None, diff


def _chaos_real(topo: Topology, run_dir: Path, schedule: list, limit: float, span: float, quiet: bool,
                verbose: bool = False) -> RunResult:
    if topo.keys:
        raise ValueError("chaos against real processes with CurveZMQ keys is not supported yet (the control node has no key)")
    from actors import Node
    from transport.zmq import ZmqTransport

    state = FaultState()
    pending = list(schedule)
    nodes = topo.node_names
    events = EventLog(run_dir / "chaos.events.jsonl")
    ctl: dict[str, Any] = {}

    def control(procs: dict) -> Any:
        if "node" not in ctl:
            peers = {name: p.endpoint for name, p in procs.items()}
            ctl["node"] = Node(CONTROL_NODE, transport=ZmqTransport(peers=peers, heartbeat_interval=topo.transport.heartbeat,
                                                                  liveness=topo.transport.liveness), event_log=events)
        return ctl["node"]

    def send_plans(node: Any) -> None:
        for name, plan in fault_plans(nodes, state.grudge, state.link_faults()).items():
            node.tell(f"{name}/$sys", plan)

    def hook(procs: dict, elapsed: float) -> None:
        node = control(procs)
        now: list = []
        while pending and pending[0][0] <= elapsed:
            _, op = pending.pop(0)
            now.append(op)
            state.apply(op)
            c = op.__class__
            if c in (Grudge, Heal, LinkFault, ClearLinkFaults):
                send_plans(node)
            elif c is Kill:
                _signal(procs[op.node], signal.SIGKILL)
            elif c is Pause:
                _signal(procs[op.node], signal.SIGSTOP)
            elif c is Resume:
                _signal(procs[op.node], signal.SIGCONT)
            elif c is Restart:
                p = procs[op.node]
                p.popen.wait(10)
                fresh = start_node(run_dir / "topology.json", op.node, run_dir, fault_control=CONTROL_NODE)
                fresh.popen.stdin.write("start\n")
                fresh.popen.stdin.flush()
                procs[op.node] = fresh
                send_plans(node)  # the new incarnation starts with the plan in force
            events.emit(time.time(), "chaos", "nemesis", f"nemesis.{op.kind}", op.describe())
            events.flush()
        if now and not quiet:
            print(f"[chaos] {elapsed:6.2f} s: {describe_ops(now)}", flush=True)

    try:
        result = run_real(topo, run_dir, duration=limit, quiet=quiet, hook=hook, min_seconds=span, verbose=verbose,
                          settle_for=topo.run.recovery,
                          fault_control=CONTROL_NODE)
    finally:
        if "node" in ctl:
            ctl["node"].shutdown()
        events.close()
    # the control node's events came after the merge: merge again
    from topologies.launcher import merge_events
    result.events = merge_events(sorted(run_dir.glob("*.events.jsonl")), run_dir / "events.jsonl")
    return result


def _signal(proc: Any, sig: int) -> None:
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass
