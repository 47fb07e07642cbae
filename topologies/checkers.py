"""Invariant checkers: read an event log, return valid / invalid / unknown with the evidence.

How this works
--------------
A checker is any object with a ``name`` and a ``check(events) -> Verdict``;
``events`` is the run's event log as a list of records ``{"time", "node",
"actor", "kind", "fields"}`` (``actors.eventlog``), from one file or several
merged. Checkers read nothing else: a run is judged from its events.

As in Jepsen, a :class:`Verdict` is ``valid`` (the invariant held and the log
shows it), ``invalid`` (it was broken; ``evidence`` holds the offending event
records, at most :data:`MAX_EVIDENCE`) or ``unknown`` (the log cannot tell:
tracing was off, nothing relevant happened, or the run stopped too early). The
summary always says which, and why.

Checkers are registered by name in :data:`CHECKERS` (:func:`register`) and run
with :func:`run_checkers`. Events are considered in time order; records with
equal times keep their order in the log (the order the simulator, or one
node, wrote them). A checker that crashes is a bug and raises.

The runtime checkers shipped here: ``no-crash-on-bad-input``,
``requests-answered``, ``no-delivery-across-partition``. Protocol checkers
(admission, consensus, local planes, workload) come from the plug-ins
(:mod:`topologies.plugin`), which register them with their owner's name.

A checker is evidence only if it has been seen to fail: each registered one
has a test feeding it a log that breaks its invariant (``invalid``, with the
offending events) and one with nothing to judge (``unknown``, never
``valid``); ``tests/test_checker_registry.py`` enforces it.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Literal, Protocol, runtime_checkable

import attrs

__all__ = [
    "CHECKERS",
    "MAX_EVIDENCE",
    "CHECKER_OWNER",
    "Checker",
    "NoCrashOnBadInput",
    "NoDeliveryAcrossPartition",
    "RUNTIME_CHECKERS",
    "Reach",
    "RequestsAnswered",
    "Verdict",
    "plural",
    "register",
    "run_checkers",
]

MAX_EVIDENCE = 20
STATUSES = ("valid", "invalid", "unknown")
Status = Literal["valid", "invalid", "unknown"]


def _status(_inst: Any, _attr: Any, value: object) -> None:
    if value not in STATUSES:
        raise ValueError(f"Verdict.status must be one of {STATUSES}, got {value!r}")


def _evidence(v: Iterable[dict]) -> list[dict]:
    return list(v)[:MAX_EVIDENCE]


@attrs.frozen
class Verdict:
    """One checker's judgement of one log."""

    checker: str
    status: Status = attrs.field(validator=_status)
    summary: str
    evidence: list[dict] = attrs.field(factory=list, converter=_evidence)

    def as_dict(self) -> dict:
        return {"checker": self.checker, "status": self.status, "summary": self.summary, "evidence": list(self.evidence)}


@runtime_checkable
class Checker(Protocol):
    """``name``; ``check(events) -> Verdict``; optionally ``liveness = True`` for a checker that needs
    something to *happen* (servers finish, agreement is reached): an interrupted run leaves it unknown."""

    name: str

    def check(self, events: list[dict]) -> Verdict: ...


CHECKERS: dict[str, Checker] = {}
CHECKER_OWNER: dict[str, str] = {}  # checker name -> "runtime" (this module) or the plug-in that registered it


def register(checker: Checker, owner: str = "runtime") -> Checker:
    """Add ``checker`` to :data:`CHECKERS` under its name; returns it.

    ``owner`` is the plug-in it belongs to (``"runtime"``: the core's own);
    a run shows the core's checkers and those of the plug-ins its topology uses.

    Registering a second checker of another class under a used name is an
    error; the same class again (a module reload) replaces the old one.
    """
    name = getattr(checker, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"a checker needs a non-empty string name, got {name!r}")
    if not callable(getattr(checker, "check", None)):
        raise TypeError(f"checker {name!r} has no check(events) method")
    old = CHECKERS.get(name)
    if old is not None:
        a, b = type(old), type(checker)
        if (a.__module__, a.__qualname__) != (b.__module__, b.__qualname__):
            raise ValueError(f"checker name {name!r} is already used by {a.__module__}.{a.__qualname__}")
    CHECKERS[name] = checker
    CHECKER_OWNER[name] = owner
    return checker


def run_checkers(events: list[dict], names: Iterable[str] | None = None) -> list[Verdict]:
    """Run the named checkers (default: all, in registration order) over ``events``."""
    from topologies.plugin import load_plugins

    load_plugins()
    if names is None:
        chosen = list(CHECKERS.values())
    else:
        if isinstance(names, str):
            names = [names]
        chosen = []
        for n in names:
            c = CHECKERS.get(n)
            if c is None:
                raise ValueError(f"unknown checker {n!r}; known checkers: {', '.join(CHECKERS)}")
            chosen.append(c)
    events = list(events)
    out = []
    for c in chosen:
        v = c.check(events)
        if not isinstance(v, Verdict):
            raise TypeError(f"checker {c.name!r} returned {v!r}, not a Verdict")
        out.append(v)
    return out


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def _ordered(events: Iterable[dict]) -> list[dict]:
    """Events by time; equal times keep log order (sorted() is stable)."""
    return sorted(events, key=lambda e: e.get("time", 0.0))


def _fields(ev: dict) -> dict:
    f = ev.get("fields")
    return f if isinstance(f, dict) else {}


def _node_of(address: object) -> str:
    return address.partition("/")[0] if isinstance(address, str) else ""


def _at(ev: dict) -> str:
    return f"t={ev.get('time')} {ev.get('node')}/{ev.get('actor')} {ev.get('kind')}"


def _killed_node(ev: dict) -> str | None:
    return _fields(ev).get("node") if ev.get("kind") == "nemesis.kill" else None


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 leader``, ``2 leaders`` (``many``: an irregular plural)."""
    return f"{n} {word}" if n == 1 else f"{n} {many or word + 's'}"


_plural = plural


# --------------------------------------------------------------------------
# no-crash-on-bad-input
# --------------------------------------------------------------------------

BAD_INPUT_KINDS = frozenset({"runtime.decode_error", "transport.bad_frame"})


@attrs.frozen
class NoCrashOnBadInput:
    """A malformed or hostile frame never stops a node (DESIGN.md, "Runtime").

    Reads ``runtime.decode_error`` and ``transport.bad_frame`` (bad input
    seen by a node), ``actor.crashed``, ``node.stopped`` and ``nemesis.kill``
    (fields.node: the killed node). For every node that logged bad input:

    * **invalid** if an ``actor.crashed`` on that node looks caused by it: its
      error mentions decoding, or it came at most ``crash_window`` seconds
      after a bad input on that node (the log has no causal link, so this is
      a heuristic, stated in the evidence);
    * **invalid** if, after its last bad input, the node neither logged
      ``node.stopped`` nor was killed by the nemesis: it went away unannounced;
    * it *kept going* if it logged any other event after its last bad input.

    **valid** if every such node kept going and nothing is invalid;
    **unknown** if there was no bad input at all, or a node was killed by the
    nemesis before it logged anything after its bad input.
    """

    name: str = "no-crash-on-bad-input"
    crash_window: float = 0.5

    def check(self, events: list[dict]) -> Verdict:
        ordered = _ordered(events)
        bad: dict[str, list[int]] = {}
        for i, ev in enumerate(ordered):
            if ev.get("kind") in BAD_INPUT_KINDS:
                bad.setdefault(ev.get("node", ""), []).append(i)
        if not bad:
            return Verdict(self.name, "unknown",
                           "no bad input in this log (no runtime.decode_error or transport.bad_frame events): nothing to judge")
        problems: list[str] = []
        evidence: list[dict] = []
        kept_going: list[str] = []
        undetermined: list[str] = []
        for node, idxs in bad.items():
            # crashes caused by bad input
            last_bad: int | None = None
            for i in range(idxs[0], len(ordered)):
                ev = ordered[i]
                if ev.get("node") != node:
                    continue
                if ev.get("kind") in BAD_INPUT_KINDS:
                    last_bad = i
                    continue
                if ev.get("kind") != "actor.crashed" or last_bad is None:
                    continue
                err = str(_fields(ev).get("error", "")).lower()
                near = ev.get("time", 0.0) - ordered[last_bad].get("time", 0.0) <= self.crash_window
                if "decode" in err or near:
                    why = "its error mentions decoding" if "decode" in err else f"within {self.crash_window}s of the bad input"
                    problems.append(f"{node}: {_at(ev)} ({why}) after bad input {_at(ordered[last_bad])}")
                    evidence.extend([ordered[last_bad], ev])
            # what happened after the last bad input
            j = idxs[-1]
            after = [ev for ev in ordered[j + 1:]
                     if (ev.get("node") == node and ev.get("kind") not in BAD_INPUT_KINDS) or _killed_node(ev) == node]
            own = [ev for ev in after if ev.get("node") == node]
            ended = any(ev.get("kind") == "node.stopped" or _killed_node(ev) == node for ev in after)
            if not ended:
                last_own = own[-1] if own else ordered[j]
                problems.append(f"{node}: bad input at {_at(ordered[j])}, then no node.stopped and no nemesis.kill "
                                f"(its last event: {_at(last_own)})")
                evidence.extend([ordered[j]] + ([last_own] if last_own is not ordered[j] else []))
            elif own:
                kept_going.append(node)
            else:
                undetermined.append(node)
        if problems:
            return Verdict(self.name, "invalid",
                           f"{_plural(len(problems), 'problem')} after bad input: " + "; ".join(problems[:5]), evidence)
        if undetermined:
            return Verdict(self.name, "unknown",
                           f"nodes {sorted(undetermined)} were killed by the nemesis before logging anything after "
                           f"their bad input; {sorted(kept_going)} kept going")
        return Verdict(self.name, "valid",
                       f"{_plural(len(kept_going), 'node')} got bad input and kept going: {sorted(kept_going)}")


# --------------------------------------------------------------------------
# requests-answered
# --------------------------------------------------------------------------

ASK_OUTCOMES = frozenset({"reply", "timeout", "dead_letter", "peer_down", "node_stopped"})


@attrs.frozen
class RequestsAnswered:
    """Every ask ends exactly once (a reply, a timeout or a clear failure), never silently.

    Reads ``runtime.ask`` (fields ``id``, ``to``, ``deadline``: an absolute
    time on the asking node's clock) and ``runtime.ask_end`` (fields ``id``,
    ``outcome``), both written by the asking node, matched by (node, id);
    and ``nemesis.kill`` (fields.node): asks still open on a killed node are
    excused (nobody is left waiting), and ids may repeat after it restarts.

    **invalid** for: an ask whose end is missing while the log of its node
    goes on past ``deadline + grace``; a second end for one ask; an end with
    no open ask; an outcome outside reply / timeout / dead_letter / peer_down
    / node_stopped; an id asked again while still open.
    **unknown** if there are no ``runtime.ask`` events (ask tracing off), or
    some end is missing but the node's log stops before the deadline.
    **valid** otherwise.
    """

    name: str = "requests-answered"
    grace: float = 0.0

    def check(self, events: list[dict]) -> Verdict:
        ordered = _ordered(events)
        open_asks: dict[tuple[str, Any], dict] = {}
        ended: set[tuple[str, Any]] = set()
        last_time: dict[str, float] = {}
        problems: list[str] = []
        evidence: list[dict] = []
        asks = answered = excused = 0

        def bad(why: str, *evs: dict) -> None:
            problems.append(why)
            evidence.extend(evs)

        for ev in ordered:
            node = ev.get("node", "")
            t = ev.get("time", 0.0)
            if isinstance(t, (int, float)):
                last_time[node] = max(last_time.get(node, -math.inf), t)
            kind = ev.get("kind")
            if kind == "runtime.ask":
                asks += 1
                key = (node, _fields(ev).get("id"))
                if key in open_asks:
                    bad(f"{node}: ask id {key[1]!r} asked again while still open", open_asks[key], ev)
                open_asks[key] = ev
                ended.discard(key)
            elif kind == "runtime.ask_end":
                key = (node, _fields(ev).get("id"))
                outcome = _fields(ev).get("outcome")
                if key in open_asks:
                    ask = open_asks.pop(key)
                    ended.add(key)
                    answered += 1
                    if outcome not in ASK_OUTCOMES:
                        bad(f"{node}: ask {key[1]!r} ended with outcome {outcome!r} "
                            f"(expected one of {sorted(ASK_OUTCOMES)})", ask, ev)
                elif key in ended:
                    bad(f"{node}: ask {key[1]!r} ended twice", ev)
                else:
                    bad(f"{node}: ask_end for id {key[1]!r} with no runtime.ask", ev)
            else:
                victim = _killed_node(ev)
                if victim is not None:
                    for key in [k for k in open_asks if k[0] == victim]:
                        del open_asks[key]
                        excused += 1
                    ended -= {k for k in ended if k[0] == victim}
        pending = []
        for (node, aid), ev in open_asks.items():
            deadline = _fields(ev).get("deadline")
            if deadline.__class__ is bool or not isinstance(deadline, (int, float)):
                bad(f"{node}: ask {aid!r} has no numeric deadline ({deadline!r}) and never ended", ev)
                continue
            if last_time.get(node, -math.inf) > deadline + self.grace:
                bad(f"{node}: ask {aid!r} to {_fields(ev).get('to')!r} (deadline {deadline}) never ended, "
                    f"though {node} logged on until t={last_time[node]}", ev)
            else:
                pending.append(ev)
        if problems:
            return Verdict(self.name, "invalid",
                           f"{_plural(len(problems), 'problem')} in {_plural(asks, 'ask')}: " + "; ".join(problems[:5]),
                           evidence)
        if asks == 0:
            return Verdict(self.name, "unknown", "no ask in this log: nothing to judge (node processes of a topology "
                           "trace every ask; these actors asked nothing, or the run was not traced)")
        if pending:
            return Verdict(self.name, "unknown",
                           f"{_plural(len(pending), 'ask')} without an end, but the log of the asking node stops "
                           f"before the deadline; {answered} of {asks} ended", pending)
        extra = f" ({excused} open on nodes the nemesis killed)" if excused else ""
        return Verdict(self.name, "valid", f"all {_plural(asks, 'ask')} ended exactly once{extra}")


# --------------------------------------------------------------------------
# no-delivery-across-partition
# --------------------------------------------------------------------------

class Reach:
    """Which directed node pairs are blocked, replayed from fault events."""

    def __init__(self) -> None:
        self.island: dict[str, int] | None = None  # net.partition (rest and unnamed nodes: -1)
        self.cuts: set[tuple[str, str]] = set()  # net.cut
        self.grudge: frozenset[tuple[str, str]] = frozenset()  # nemesis.grudge
        self.paused: set[str] = set()  # nemesis.pause
        self.cause: dict[str, dict] = {}  # layer -> the event that set it

    def update(self, ev: dict) -> bool:
        kind = ev.get("kind")
        f = _fields(ev)
        if kind == "net.partition":
            self.island = {n: i for i, island in enumerate(f.get("islands") or []) for n in island}
            self.cause["partition"] = ev
        elif kind == "net.cut":
            self.cuts.add((f.get("src"), f.get("dst")))
            self.cause["cut"] = ev
        elif kind == "net.heal":
            self.island = None
            self.cuts.clear()
        elif kind == "nemesis.grudge":
            self.grudge = frozenset((p[0], p[1]) for p in f.get("blocked") or [])
            self.cause["grudge"] = ev
        elif kind == "nemesis.heal":
            self.grudge = frozenset()
        elif kind == "nemesis.pause":
            self.paused.add(f.get("node"))
            self.cause["pause"] = ev
        elif kind == "nemesis.resume":
            self.paused.discard(f.get("node"))
        else:
            return False
        return True

    def blocked_by(self, src: str, dst: str) -> dict | None:
        """The event that blocks src -> dst now, or None if the link is up."""
        if src == dst:
            return None
        if (src, dst) in self.cuts:
            return self.cause["cut"]
        if self.island is not None and self.island.get(src, -1) != self.island.get(dst, -1):
            return self.cause["partition"]
        if (src, dst) in self.grudge:
            return self.cause["grudge"]
        if src in self.paused or dst in self.paused:
            return self.cause["pause"]
        return None


@attrs.frozen
class NoDeliveryAcrossPartition:
    """Nothing crosses an active partition (simulator traces).

    Replays, in time order, ``net.partition`` (fields ``islands``; nodes named
    in no island form one island together), ``net.cut`` (``src``, ``dst``:
    one direction), ``net.heal`` (clears both), ``nemesis.grudge`` (``blocked``:
    the directed pairs), ``nemesis.heal``, ``nemesis.pause`` / ``nemesis.resume``
    (a paused node is cut off both ways, as the simulator approximates it), to
    know which directed node pairs are blocked at each moment; then every
    ``net.deliver`` (fields ``src``, ``dst`` addresses; a node is the part
    before ``"/"``) whose node pair is blocked at its time is a violation.

    **invalid** with those ``net.deliver`` records as evidence; **unknown**
    if the log has no ``net.deliver`` events (message tracing off);
    **valid** otherwise (the summary says how many deliveries happened while
    some fault was in force).
    """

    name: str = "no-delivery-across-partition"

    def check(self, events: list[dict]) -> Verdict:
        reach = Reach()
        delivers = faults = during = 0
        crossed: list[dict] = []
        first_cause: dict | None = None
        for ev in _ordered(events):
            if reach.update(ev):
                faults += 1
                continue
            if ev.get("kind") != "net.deliver":
                continue
            delivers += 1
            f = _fields(ev)
            src, dst = _node_of(f.get("src")), _node_of(f.get("dst"))
            active = reach.island is not None or reach.cuts or reach.grudge or reach.paused
            if active:
                during += 1
            cause = reach.blocked_by(src, dst) if active else None
            if cause is not None:
                crossed.append(ev)
                if first_cause is None:
                    first_cause = cause
        if not delivers:
            return Verdict(self.name, "unknown",
                           "no message trace in this log (message tracing is a simulator feature: "
                           "fleetplane chaos --sim, or fleetplane run --sim --trace)")
        if crossed:
            first = crossed[0]
            return Verdict(self.name, "invalid",
                           f"{_plural(len(crossed), 'delivery', 'deliveries')} crossed a blocked link; first: {_at(first)} "
                           f"{_fields(first).get('src')} -> {_fields(first).get('dst')}, blocked by {_at(first_cause or {})}",
                           crossed)
        if not faults:
            return Verdict(self.name, "unknown",
                           f"{_plural(delivers, 'delivery', 'deliveries')}, but no partition, cut, grudge or pause in this "
                           "log: nothing to judge")
        return Verdict(self.name, "valid",
                       f"{_plural(delivers, 'delivery', 'deliveries')} ({during} while a fault was in force), none across a blocked link")


# --------------------------------------------------------------------------
# deliveries-match-sends
# --------------------------------------------------------------------------

@attrs.frozen
class DeliveriesMatchSends:
    """The network never invents a message: every delivery was sent, and no more copies arrive than were sent.

    Reads the simulator's message trace: ``net.send`` (fields ``src``, ``dst``,
    ``tag``, ``copies``: how many copies the network decided to carry, after
    loss and duplication) and ``net.deliver`` (``src``, ``dst``, ``tag``,
    ``sent``: the send's time). Deliveries are matched to sends by (src, dst,
    tag, send time).

    **invalid** for a delivery with no matching send, or more deliveries of one
    send than its copies (evidence: those deliveries and the send);
    **unknown** if the log has no ``net.deliver`` (message tracing off, or a
    real run); **valid** otherwise.
    """

    name: str = "deliveries-match-sends"

    def check(self, events: list[dict]) -> Verdict:
        sends: dict[tuple, list] = {}  # key -> [copies, [send events]]
        delivered: dict[tuple, list[dict]] = {}
        n = 0
        for ev in _ordered(events):
            kind = ev.get("kind")
            if kind == "net.send":
                f = _fields(ev)
                key = (f.get("src"), f.get("dst"), f.get("tag"), ev.get("time"))
                entry = sends.setdefault(key, [0, []])
                copies = f.get("copies", 1)
                entry[0] += copies if isinstance(copies, int) and copies.__class__ is not bool else 1
                entry[1].append(ev)
            elif kind == "net.deliver":
                n += 1
                f = _fields(ev)
                delivered.setdefault((f.get("src"), f.get("dst"), f.get("tag"), f.get("sent")), []).append(ev)
        if not n:
            return Verdict(self.name, "unknown", "no net.deliver events in this log (message tracing is a "
                                                 "simulator feature: fleetplane chaos --sim, or run --sim --trace)")
        invented, extra = [], []
        for key, evs in delivered.items():
            entry = sends.get(key)
            if entry is None:
                invented.extend(evs)
            elif len(evs) > entry[0]:
                extra.append({"why": f"{len(evs)} deliveries of {entry[0]} copies sent", "send": entry[1][0],
                              **{f"delivery{i}": e for i, e in enumerate(evs)}})
        if invented or extra:
            first = invented[0] if invented else extra[0]["send"]
            return Verdict(self.name, "invalid",
                           f"{_plural(len(invented), 'delivery', 'deliveries')} never sent and "
                           f"{_plural(len(extra), 'send')} delivered more often than copied; first: {_at(first)}",
                           invented + extra)
        return Verdict(self.name, "valid", f"{_plural(n, 'delivery', 'deliveries')}, each of a message sent, "
                                           "never more copies than the network carried")


# --------------------------------------------------------------------------
# fresh-incarnations
# --------------------------------------------------------------------------

@attrs.frozen
class FreshIncarnations:
    """Every start of a participant is a new incarnation (DESIGN.md, "Identity, durability, restarts").

    Reads ``node.started`` (a node process started; fields ``incarnation``)
    and ``sim.restart`` (a simulated participant restarted; ``incarnation``).
    **invalid** if a node (or a simulated participant) starts again with an
    incarnation it had already used (evidence: both starts); **unknown** if
    nothing started twice (no restart to judge); **valid** otherwise.
    """

    name: str = "fresh-incarnations"

    def check(self, events: list[dict]) -> Verdict:
        seen: dict[str, dict] = {}  # (who, incarnation) -> first start
        starts: dict[str, int] = {}
        sim_restarted: set[str] = set()
        reused: list[dict] = []
        for ev in _ordered(events):
            kind = ev.get("kind")
            if kind == "node.started":
                who = str(ev.get("node"))
            elif kind == "sim.restart":
                who = f"{ev.get('node')}/{ev.get('actor')}"
            else:
                continue
            inc = _fields(ev).get("incarnation")
            starts[who] = starts.get(who, 0) + 1
            if kind == "sim.restart":
                sim_restarted.add(who)
            key = f"{who}\0{inc!r}"
            if key in seen:
                reused.append({"why": f"{who} started again as incarnation {inc!r}", "first": seen[key], "again": ev})
            else:
                seen[key] = ev
        # a node's first node.started is its first start; every sim.restart is a restart
        restarted = sorted({w for w, n in starts.items() if n > 1} | sim_restarted)
        if reused:
            return Verdict(self.name, "invalid", f"{_plural(len(reused), 'restart')} reused an incarnation; first: "
                                                 f"{reused[0]['why']}", reused)
        if not restarted:
            return Verdict(self.name, "unknown", "nothing restarted in this log: no incarnation to compare")
        return Verdict(self.name, "valid", f"{_plural(len(restarted), 'participant')} restarted, each time "
                                           "as a new incarnation")


RUNTIME_CHECKERS = (NoCrashOnBadInput(), RequestsAnswered(), NoDeliveryAcrossPartition(), DeliveriesMatchSends(),
                    FreshIncarnations())
for _c in RUNTIME_CHECKERS:
    register(_c)

