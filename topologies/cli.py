"""The ``fleetplane`` command.

``fleetplane run FILE`` starts every node of a topology file as its own OS
process on this machine (``--sim``: in the deterministic simulator, from
``--seed``), shows live progress and writes a run directory under ``runs/``.

``fleetplane chaos FILE`` runs it under a nemesis and judges the event log;
``fleetplane report RUNDIR`` judges and reports a run directory again.
Plug-ins add subcommands of their own (:class:`topologies.plugin.Command`),
e.g. ``fleetplane demo`` from the ping-pong plug-in.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from loguru import logger

from topologies.argtypes import non_negative_float, positive_float, positive_int, probability

__all__ = ["EXIT_INTERRUPTED", "build_parser", "main", "run_dir_for", "setup_logging"]

EXIT_INTERRUPTED = 130  # as a shell reports a command stopped by Ctrl-C (128 + SIGINT)
EXIT_CODES = """exit status: 0 ok; 1 failed, an invariant broken, or (chaos) a declared checker not judged;
2 usage or configuration error; 130 interrupted (Ctrl-C)"""


def run_dir_for(base: str, label: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    d = Path(base) / f"{label}-{stamp}"
    n = 1
    while d.exists():
        n += 1
        d = Path(base) / f"{label}-{stamp}-{n}"
    d.mkdir(parents=True)
    return d


def setup_logging(run_dir: Path, verbose: bool) -> None:
    logger.remove()
    logger.add(sys.stderr, level="DEBUG" if verbose else "WARNING", backtrace=False, diagnose=False)
    logger.add(run_dir / "fleetplane.log", level="DEBUG", backtrace=False, diagnose=False, enqueue=False)


def _load(path: str):
    """The validated topology, or None after printing every problem (exit status 2)."""
    from topologies.loader import TopologyError, load_topology

    try:
        return load_topology(path)
    except TopologyError as e:
        print(f"error: {e}", file=sys.stderr)
        return None


def cmd_run(args: argparse.Namespace) -> int:
    from topologies.launcher import run_real, run_sim

    topo = _load(args.file)
    if topo is None:
        return 2
    run_dir = run_dir_for(args.out, f"{topo.name}-{'sim' if args.sim else 'real'}")
    setup_logging(run_dir, args.verbose)
    seed = args.seed if args.seed is not None else topo.seed
    mode = f"simulator, seed {seed}" if args.sim else f"{len(topo.nodes)} processes on this machine"
    print(f"fleetplane run {args.file}: topology {topo.name!r}, {len(topo.nodes)} nodes, "
          f"{len(topo.addresses())} actors ({mode}); run directory {run_dir}", flush=True)
    if args.sim:
        result = run_sim(topo, run_dir, seed, duration=args.duration, quiet=args.quiet, trace=args.trace,
                         min_seconds=args.min_duration)
    else:
        result = run_real(topo, run_dir, duration=args.duration, quiet=args.quiet, verbose=args.verbose,
                          min_seconds=args.min_duration)
    unit = "virtual s" if args.sim else "s"
    total = f"/{topo.run.progress_total}" if topo.run.progress_total else ""
    print(f"{'OK' if result.ok else 'NOT OK'}: {result.reason} after {result.seconds} {unit}; "
          f"progress {result.progress}{total}; {result.events} events")
    for name, info in result.nodes.items():
        if not args.sim:
            c = info.get("counters") or {}
            print(f"  {name:12} pid {info['pid']:>7}  exit {info['exit']}  sent {c.get('sent_remote', 0)}  "
                  f"received {c.get('received_remote', 0)}  dead letters {c.get('dead_letters', 0)}")
    from topologies.report import make_report

    report = make_report(run_dir)
    for v in report["verdicts"]:
        if v["status"] != "unknown":
            print(f"  {v['status'].upper():8} {v['checker']}: {v['summary']}")
    judged = sum(v["status"] != "unknown" for v in report["verdicts"])
    print(f"  ({len(report['verdicts']) - judged} more checkers had nothing to judge in this run; "
          f"all verdicts: {run_dir / 'results.json'})")
    print(f"events:  {run_dir / 'events.jsonl'}")
    print(f"summary: {run_dir / 'summary.json'}")
    print(f"report:  {run_dir / 'report.html'}")
    if result.reason == "interrupted":
        return EXIT_INTERRUPTED
    if not report["valid"]:
        print("NOT OK: an invariant is broken (see the INVALID lines above)")
        return 1
    return 0 if result.ok else 1


def _done_text(done: int, topo) -> str:
    """``done 2/2``; a done event seen more often than needed (a final plan replaced) says so."""
    if not topo.run.done:
        return "no done condition"
    need = topo.run.done_count
    if done > need:
        return f"done {need}/{need} ({topo.run.done} seen {done} times)"
    return f"done {done}/{need}"


_OPTION_NEMESES = {"loss": ("flaky",), "delay": ("slow",), "probability": ("duplicate", "reorder")}


def _irrelevant_options(args: argparse.Namespace) -> str | None:
    """An option the chosen nemesis ignores is refused, not silently dropped."""
    if args.nemesis is None or args.nemesis == "mix":
        return None
    for option, users in _OPTION_NEMESES.items():
        if getattr(args, option) is not None and args.nemesis not in users:
            return (f"--{option} applies only to --nemesis {' or '.join(users)}; "
                    f"the {args.nemesis!r} nemesis does not use it")
    return None


def cmd_chaos(args: argparse.Namespace) -> int:
    from topologies.chaos import run_chaos

    topo = _load(args.file)
    if topo is None:
        return 2
    overrides = {k: getattr(args, k) for k in ("start", "duration", "repeat", "interval", "target", "loss", "delay", "probability")
                 if getattr(args, k) is not None}
    if args.nodes is not None:
        overrides["nodes"] = [g.strip() for g in args.nodes.split(",") if g.strip()]
    if args.channel is not None:
        if args.nemesis is None:
            print("error: --channel needs --nemesis (a [[chaos]] entry of the file names its own channel)", file=sys.stderr)
            return 2
        overrides["channel"] = args.channel
    if args.target is not None and args.target not in topo.node_names:
        print(f"error: --target {args.target!r} is not a node of {topo.name} ({', '.join(topo.node_names)})", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else topo.seed
    problem = _irrelevant_options(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from topologies.chaos import build_schedule

    try:  # every check before a run directory exists: a refused command leaves nothing behind
        build_schedule(topo, seed, args.nemesis, overrides)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run_dir = run_dir_for(args.out, f"{topo.name}-chaos-{args.nemesis or 'file'}{'-sim' if args.sim else ''}")
    setup_logging(run_dir, args.verbose)
    print(f"fleetplane chaos {args.file}: nemesis {args.nemesis or 'from the file'}, seed {seed}, "
          f"{'simulator (run twice, logs compared)' if args.sim else 'real processes'}; run directory {run_dir}", flush=True)
    try:
        must = None if args.must_judge is None else [x.strip() for x in args.must_judge.split(",") if x.strip()]
        if must is not None:
            from topologies.checkers import CHECKERS
            from topologies.plugin import checkers_for

            shown = checkers_for({a.kind for n in topo.nodes for a in n.actors})
            for x in must:
                if x not in shown:
                    raise ValueError(f"--must-judge: {x!r} is not a checker of this topology ({', '.join(shown)})"
                                     if x in CHECKERS else f"--must-judge: unknown checker {x!r}")
        result = run_chaos(topo, run_dir, seed, nemesis=args.nemesis, overrides=overrides, sim=args.sim,
                           duration=args.run_for, quiet=args.quiet, must_judge=must,
                           verbose=args.verbose)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    r = result.run
    print(f"{len(result.schedule)} fault ops over {r.seconds} {'virtual ' if args.sim else ''}s; "
          f"{r.progress} progress events, {_done_text(r.done, topo)}")
    for v in result.verdicts:
        mark = " (must judge)" if v["checker"] in result.must_judge else ""
        print(f"  {v['status'].upper():8} {v['checker']}{mark}: {v['summary']}")
    for name in result.unjudged:
        print(f"  NOT JUDGED {name}: the topology declares it in [run] must_judge, but it answered unknown")
    if result.replay_identical is not None:
        print("  replay from the same seed: " + ("identical" if result.replay_identical else f"DIFFERENT - {result.first_difference}"))
    print(f"report:  {run_dir / 'report.html'}")
    ok = result.ok and r.ok
    broken = any(v["status"] == "invalid" for v in result.verdicts)
    why = [w for w, bad in (("invariant broken", broken), ("replay differed", result.replay_identical is False),
                            (f"not judged: {', '.join(result.unjudged)}", bool(result.unjudged)),
                            ("nothing judged: every checker answered unknown", not result.judged),
                            ("did not finish", not r.ok)) if bad]
    print("chaos OK" if ok else "chaos FAILED" + (f" ({'; '.join(why)})" if why else ""))
    if r.reason == "interrupted":
        return EXIT_INTERRUPTED
    return 0 if ok else 1


def cmd_report(args: argparse.Namespace) -> int:
    from topologies.report import make_report

    try:
        results = make_report(args.run_dir)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for v in results["verdicts"]:
        print(f"  {v['status'].upper():8} {v['checker']}: {v['summary']}")
    print(f"results: {Path(args.run_dir) / 'results.json'}")
    print(f"report:  {Path(args.run_dir) / 'report.html'}")
    return 0 if results["valid"] else 1


def cmd_keys(args: argparse.Namespace) -> int:
    """Print CurveZMQ key pairs as a topology's [keys] tables (one per node)."""
    from transport.zmq import CurveConfig

    names = list(args.nodes)
    if args.topology:
        topo = _load(args.topology)
        if topo is None:
            return 2
        names += [n for n in topo.node_names if n not in names]
    if not names:
        print("error: name the nodes (fleetplane keys generate alpha beta) or give --topology FILE", file=sys.stderr)
        return 2
    print("# CurveZMQ key pairs: paste into the topology file. The secret keys are secrets: keep the file private.")
    for name in names:
        public, secret = CurveConfig.generate()
        print(f"[keys.{json.dumps(name) if not name.replace('-', '').replace('_', '').isalnum() else name}]")
        print(f'public = "{public.decode()}"')
        print(f'secret = "{secret.decode()}"')
    return 0


def cmd_runs_prune(args: argparse.Namespace) -> int:
    """Delete all but the newest ``--keep`` run directories under ``--out``."""
    import shutil

    if args.keep < 0:
        print(f"error: --keep must be 0 or more, got {args.keep}", file=sys.stderr)
        return 2
    base = Path(args.out)
    if not base.is_dir():
        print(f"nothing to prune: {base} is not a directory")
        return 0
    runs = sorted((d for d in base.iterdir() if d.is_dir() and ((d / "summary.json").exists()
                                                                 or (d / "fleetplane.log").exists())),
                  key=lambda d: d.stat().st_mtime, reverse=True)
    doomed = runs[args.keep:]
    for d in doomed:
        print(f"{'would remove' if args.dry_run else 'removed'} {d}")
        if not args.dry_run:
            shutil.rmtree(d)
    print(f"{len(runs) - len(doomed)} run directories kept, {len(doomed)} "
          f"{'to remove (dry run)' if args.dry_run else 'removed'} in {base}")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fleetplane")
    except PackageNotFoundError:
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fleetplane", description="fleetplane: an actor runtime for data-center control planes",
                                epilog=EXIT_CODES + "\nREADME.md has every command with its output.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a topology file: every node as a process, or --sim")
    r.add_argument("file", help="topology file (TOML), e.g. topologies/pingpong.toml")
    r.add_argument("--sim", action="store_true", help="run in the deterministic simulator instead")
    r.add_argument("--seed", type=int, help="simulator seed (default: the topology's)")
    r.add_argument("--duration", type=positive_float, help="stop after this many seconds (default: the topology's)")
    r.add_argument("--min-duration", type=non_negative_float, default=0.0, metavar="S",
                   help="keep running at least S seconds even once done (e.g. to act on it: fleetplane deps, task)")
    r.add_argument("--trace", action="store_true", help="--sim: log every message send/deliver/drop")
    r.add_argument("--out", default="runs", help="parent folder of the run directory (default ./runs)")
    r.add_argument("-q", "--quiet", action="store_true", help="no live progress")
    r.add_argument("-v", "--verbose", action="store_true", help="show debug logs on stderr (real runs: every node's log as it grows)")
    r.set_defaults(func=cmd_run)
    c = sub.add_parser("chaos", help="run a topology under a nemesis and check the invariants")
    c.add_argument("file", help="topology file (TOML)")
    c.add_argument("--nemesis", help="fault schedule: one, majority, majorities-ring, bridge, random-halves, asymmetric, "
                                     "flaky, slow, duplicate, reorder, kill, pause, mix (default: the file's [[chaos]])")
    c.add_argument("--seed", type=int, help="seed for the nemesis and the simulator (default: the topology's)")
    c.add_argument("--sim", action="store_true", help="in the deterministic simulator (each run is replayed and compared)")
    c.add_argument("--start", type=non_negative_float, metavar="S", help="the first fault starts at S seconds (default 1)")
    c.add_argument("--duration", type=positive_float, metavar="S",
                   help="each fault stays in force S seconds (default 2); NOT the run's length: see --run-for")
    c.add_argument("--repeat", type=positive_int, metavar="N", help="how many faults (default 1)")
    c.add_argument("--interval", type=positive_float, metavar="S",
                   help="S seconds from one fault's start to the next (default twice --duration)")
    c.add_argument("--target", help="the node to hit (one, asymmetric, kill, pause, bridge, majority; "
                   "flaky/slow/duplicate/reorder: only its links)")
    c.add_argument("--nodes", help="strike only among these nodes: comma-separated names or glob patterns, e.g. "
                   "'mon-*' (in racks.toml: cut the monitor mesh, not the rack controls' links)")
    c.add_argument("--channel", metavar="NAME",
                   help="cut or degrade only the links of this channel of the topology ([channels]; 'main': every "
                        "link no channel names), e.g. racks.toml's main network: --nemesis one --target inventory "
                        "--channel main (default: every link the nemesis strikes)")
    c.add_argument("--loss", type=probability, help="flaky only: each message is lost with this probability (default 0.3)")
    c.add_argument("--delay", type=non_negative_float, metavar="S", help="slow only: S seconds of added latency (default 0.2)")
    c.add_argument("--probability", type=probability,
                   help="duplicate / reorder only: each message is duplicated / held back with this probability (default 0.5)")
    c.add_argument("--must-judge", help="comma-separated checkers that must answer valid or invalid (unknown fails "
                   "the run); default: the topology's [run] must_judge, else its plug-ins' defaults; '' for none")
    c.add_argument("--run-for", type=positive_float, help="total run length (default: the schedule plus the topology's [run] recovery, 3 s unless set)")
    c.add_argument("--out", default="runs", help="parent folder of the run directory (default ./runs)")
    c.add_argument("-q", "--quiet", action="store_true", help="no live progress")
    c.add_argument("-v", "--verbose", action="store_true", help="show debug logs on stderr (real runs: every node's log as it grows)")
    c.set_defaults(func=cmd_chaos)
    k = sub.add_parser("keys", help="CurveZMQ keys for a topology's [keys] table")
    ksub = k.add_subparsers(dest="keys_command", required=True)
    kg = ksub.add_parser("generate", help="print a fresh key pair per node as [keys.NODE] tables (TOML)")
    kg.add_argument("nodes", nargs="*", help="node names")
    kg.add_argument("--topology", metavar="FILE", help="a key pair for every node of this topology file")
    kg.set_defaults(func=cmd_keys)
    rn = sub.add_parser("runs", help="manage run directories")
    rsub = rn.add_subparsers(dest="runs_command", required=True)
    rpr = rsub.add_parser("prune", help="delete all but the newest run directories")
    rpr.add_argument("--keep", type=int, required=True, metavar="N", help="how many of the newest run directories to keep")
    rpr.add_argument("--out", default="runs", help="the folder holding the run directories (default ./runs)")
    rpr.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    rpr.set_defaults(func=cmd_runs_prune)
    from topologies.plugin import load_plugins
    for plugin in load_plugins().values():
        for command in plugin.commands:
            cp = sub.add_parser(command.name, help=command.help)
            command.setup(cp)
            cp.set_defaults(func=command.run)
    rp = sub.add_parser("report", help="(re)write results.json and report.html for a run directory",
                        description="Judge a run directory again: run the checkers of its topology's plug-ins over "
                                    "its events.jsonl, rewrite results.json and report.html, print the verdicts. "
                                    "Exit 1 if a checker says invalid.")
    rp.add_argument("run_dir", type=Path, help="a run directory, e.g. runs/boot_storm-real-20261203-062441")
    rp.set_defaults(func=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
