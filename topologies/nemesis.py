"""Nemeses: seeded schedules of faults, and the two ways to carry them out.

How this works
--------------
A *nemesis* (Jepsen's word) is a pure function ``(nodes, rng, spec) ->
schedule``: a list of ``(time, op)`` pairs sorted by time, where each op is a
small frozen value saying what to break or mend. Nothing here touches a
socket, a clock or the global random module; the only randomness is the
``random.Random`` passed in, so one seed gives one schedule.

The ops:

* :class:`Grudge` -- the general reachability change: the set of directed
  ``(src, dst)`` node pairs that cannot talk. A symmetric partition is a
  grudge holding both directions; a one-way cut holds one. A grudge *replaces*
  the one before it. :class:`Heal` lifts it.
* :class:`LinkFault` -- one directed link becomes lossy, slow, duplicating or
  reordering (nemeses emit both directions). :class:`ClearLinkFaults` restores
  every link.
* :class:`Kill` / :class:`Restart` and :class:`Pause` / :class:`Resume` a node.

Every :class:`NemesisSpec` repetition ``k`` puts the fault op(s) at
``start + k * interval`` and the matching heal op(s) ``duration`` later, so a
fault is always healed before the next one begins (``interval > duration``).

The schedule is then carried out by a driver:

* :func:`apply_to_simulator` schedules each op on an
  :class:`actors.simulator.Simulator` and writes one ``nemesis.<op>`` event
  per op (node ``"chaos"``, actor ``"nemesis"``, fields from ``describe()``);
* :func:`fault_plans` turns the current grudge and link faults into one
  :class:`transport.faults.SetFaults` per node, for real processes (the
  launcher sends them as control messages to ``<node>/$sys``).

:class:`FaultState` folds ops into "what is in force now" for both drivers.

The partitions are Jepsen's: ``one``, ``majority``, ``majorities-ring``,
``bridge``, ``random-halves``, plus ``asymmetric`` (a one-way cut); the link
faults are ``flaky``, ``slow``, ``duplicate``, ``reorder``; the process faults
``kill`` and ``pause``; ``mix`` draws one of the others per repetition.
"""

from __future__ import annotations

import math
import random
from typing import Any, Callable, ClassVar, Iterable, Mapping, Union

import attrs

from transport.faults import FaultRule, SetFaults
from transport.sim import Latency, LinkSpec

__all__ = [
    "NEMESES",
    "ClearLinkFaults",
    "Delayed",
    "FaultState",
    "Grudge",
    "Heal",
    "Kill",
    "LinkFault",
    "NemesisSpec",
    "Op",
    "Pause",
    "Restart",
    "Resume",
    "Schedule",
    "apply_to_simulator",
    "fault_plans",
    "islands_grudge",
    "make_schedule",
    "reachability",
]


# --------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------

def _number(what: str, v: object) -> float:
    if v.__class__ is bool or not isinstance(v, (int, float)) or math.isnan(v) or math.isinf(v):
        raise ValueError(f"{what} must be a finite number, got {v!r}")
    return float(v)


def _nonneg(what: str) -> Callable[[object], float]:
    def conv(v: object) -> float:
        f = _number(what, v)
        if f < 0:
            raise ValueError(f"{what} must be >= 0, got {v!r}")
        return f
    return conv


def _prob(what: str) -> Callable[[object], float]:
    def conv(v: object) -> float:
        f = _number(what, v)
        if not 0.0 <= f <= 1.0:
            raise ValueError(f"{what} must be a probability in [0, 1], got {v!r}")
        return f
    return conv


def _node_name(what: str, v: object) -> str:
    if not isinstance(v, str) or not v or "/" in v:
        raise ValueError(f"{what} must be a node name (a non-empty string without '/'), got {v!r}")
    return v


def _pairs(v: object) -> frozenset[tuple[str, str]]:
    if isinstance(v, (str, bytes)) or not isinstance(v, Iterable):
        raise ValueError(f"Grudge.blocked must be a set of (src, dst) node pairs, got {v!r}")
    out = set()
    for p in v:
        if isinstance(p, (str, bytes)) or not isinstance(p, Iterable):
            raise ValueError(f"Grudge.blocked: each entry must be a (src, dst) pair, got {p!r}")
        t = tuple(p)
        if len(t) != 2:
            raise ValueError(f"Grudge.blocked: each entry must be a (src, dst) pair, got {p!r}")
        src, dst = _node_name("Grudge src", t[0]), _node_name("Grudge dst", t[1])
        if src == dst:
            raise ValueError(f"Grudge.blocked: a node cannot be blocked from itself ({src!r})")
        out.add((src, dst))
    return frozenset(out)


# --------------------------------------------------------------------------
# Ops
# --------------------------------------------------------------------------

@attrs.frozen
class Grudge:
    """These directed node pairs cannot talk; replaces any earlier grudge."""

    kind: ClassVar[str] = "grudge"
    blocked: frozenset[tuple[str, str]] = attrs.field(converter=_pairs)
    label: str = ""

    def describe(self) -> dict:
        return {"op": self.kind, "label": self.label, "blocked": [list(p) for p in sorted(self.blocked)]}


@attrs.frozen
class Heal:
    """Lift the grudge: every node reaches every node again."""

    kind: ClassVar[str] = "heal"

    def describe(self) -> dict:
        return {"op": self.kind}


@attrs.frozen
class LinkFault:
    """The directed link src -> dst loses, delays, duplicates or reorders messages.

    ``delay`` is added to the link's base latency, plus up to ``jitter`` more
    (uniform). Probabilities are per message.
    """

    kind: ClassVar[str] = "link_fault"
    src: str = attrs.field(converter=lambda v: _node_name("LinkFault src", v))
    dst: str = attrs.field(converter=lambda v: _node_name("LinkFault dst", v))
    loss: float = attrs.field(default=0.0, converter=_prob("LinkFault loss"))
    delay: float = attrs.field(default=0.0, converter=_nonneg("LinkFault delay"))
    jitter: float = attrs.field(default=0.0, converter=_nonneg("LinkFault jitter"))
    duplicate: float = attrs.field(default=0.0, converter=_prob("LinkFault duplicate"))
    reorder: float = attrs.field(default=0.0, converter=_prob("LinkFault reorder"))

    def __attrs_post_init__(self) -> None:
        if self.src == self.dst:
            raise ValueError(f"LinkFault: src and dst are the same node ({self.src!r}); a link joins two nodes")

    def describe(self) -> dict:
        return {"op": self.kind, "src": self.src, "dst": self.dst, "loss": self.loss, "delay": self.delay,
                "jitter": self.jitter, "duplicate": self.duplicate, "reorder": self.reorder}


@attrs.frozen
class ClearLinkFaults:
    """Every link goes back to how it was before the link faults."""

    kind: ClassVar[str] = "clear_link_faults"

    def describe(self) -> dict:
        return {"op": self.kind}


@attrs.frozen
class Kill:
    """Kill every actor of the node (SIGKILL for a real process)."""

    kind: ClassVar[str] = "kill"
    node: str = attrs.field(converter=lambda v: _node_name("Kill node", v))

    def describe(self) -> dict:
        return {"op": self.kind, "node": self.node}


@attrs.frozen
class Restart:
    """Start a killed node again, with fresh state."""

    kind: ClassVar[str] = "restart"
    node: str = attrs.field(converter=lambda v: _node_name("Restart node", v))

    def describe(self) -> dict:
        return {"op": self.kind, "node": self.node}


@attrs.frozen
class Pause:
    """Freeze the node (SIGSTOP for a real process); its state survives."""

    kind: ClassVar[str] = "pause"
    node: str = attrs.field(converter=lambda v: _node_name("Pause node", v))

    def describe(self) -> dict:
        return {"op": self.kind, "node": self.node}


@attrs.frozen
class Resume:
    """Let a paused node run again (SIGCONT)."""

    kind: ClassVar[str] = "resume"
    node: str = attrs.field(converter=lambda v: _node_name("Resume node", v))

    def describe(self) -> dict:
        return {"op": self.kind, "node": self.node}


Op = Union[Grudge, Heal, LinkFault, ClearLinkFaults, Kill, Restart, Pause, Resume]
OPS: tuple[type, ...] = (Grudge, Heal, LinkFault, ClearLinkFaults, Kill, Restart, Pause, Resume)
Schedule = list[tuple[float, Op]]


# --------------------------------------------------------------------------
# Reachability helpers
# --------------------------------------------------------------------------

def islands_grudge(islands: Iterable[Iterable[str]], nodes: Iterable[str]) -> frozenset[tuple[str, str]]:
    """The grudge of a symmetric partition: nodes in different islands are blocked both ways.

    As in ``SimNetwork.partition``, nodes named in no island form one extra
    island together.
    """
    nodes = list(nodes)
    known = set(nodes)
    where: dict[str, int] = {}
    for i, island in enumerate(islands):
        if isinstance(island, (str, bytes)):
            raise ValueError(f"each island must be a collection of node names, got {island!r}")
        for n in island:
            if n not in known:
                raise ValueError(f"islands_grudge: unknown node {n!r} (known: {sorted(known)})")
            if n in where:
                raise ValueError(f"islands_grudge: node {n!r} is named in two islands")
            where[n] = i
    return frozenset((a, b) for a in nodes for b in nodes if a != b and where.get(a, -1) != where.get(b, -1))


def reachability(nodes: Iterable[str], blocked: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    """For every node, the nodes it can send to (itself included) under ``blocked``."""
    nodes = list(nodes)
    blocked = set(blocked)
    return {a: {b for b in nodes if a == b or (a, b) not in blocked} for a in nodes}


# --------------------------------------------------------------------------
# The spec
# --------------------------------------------------------------------------

def _repeat(v: object) -> int:
    if v.__class__ is bool or not isinstance(v, int) or v < 1:
        raise ValueError(f"NemesisSpec.repeat must be an int >= 1, got {v!r}")
    return v


def _optional(conv: Callable[[object], float]) -> Callable[[object], float | None]:
    return lambda v: None if v is None else conv(v)


def _target(v: object) -> str | None:
    return None if v is None else _node_name("NemesisSpec.target", v)


def _mix(v: object) -> tuple[str, ...]:
    if isinstance(v, str):
        v = (v,)
    if not isinstance(v, Iterable):
        raise ValueError(f"NemesisSpec.mix must be a list of nemesis names, got {v!r}")
    names = tuple(v)
    for name in names:
        if name == "mix" or name not in NEMESES:
            raise ValueError(f"NemesisSpec.mix: {name!r} is not a nemesis to mix "
                             f"(choose from {sorted(n for n in NEMESES if n != 'mix')})")
    return names


@attrs.frozen
class NemesisSpec:
    """When and how hard a nemesis strikes.

    * ``start``: time of the first fault; ``duration``: how long each fault is
      in force; ``repeat``: how many faults; ``interval``: from one fault's
      start to the next (default ``2 * duration``; must exceed ``duration``).
    * ``target``: the node for ``one``, ``asymmetric``, ``kill``, ``pause``
      (random each time if unset), the bridge of ``bridge``, a member of the
      minority in ``majority``; for the link nemeses (``flaky``, ``slow``,
      ``duplicate``, ``reorder``) only the target's links are hit (every link
      if unset). Other nemeses refuse a target.
    * ``loss`` (``flaky``), ``delay`` and ``jitter`` (``slow``; jitter
      defaults to half the delay), ``probability`` (``duplicate``, ``reorder``).
    * ``mix``: the nemeses ``mix`` draws from (default: every one that fits
      the node count).
    """

    start: float = attrs.field(default=1.0, converter=_nonneg("NemesisSpec.start"))
    duration: float = attrs.field(default=2.0, converter=_nonneg("NemesisSpec.duration"))
    repeat: int = attrs.field(default=1, converter=_repeat)
    interval: float | None = attrs.field(default=None, converter=_optional(_nonneg("NemesisSpec.interval")))
    target: str | None = attrs.field(default=None, converter=_target)
    loss: float = attrs.field(default=0.3, converter=_prob("NemesisSpec.loss"))
    delay: float = attrs.field(default=0.2, converter=_nonneg("NemesisSpec.delay"))
    jitter: float | None = attrs.field(default=None, converter=_optional(_nonneg("NemesisSpec.jitter")))
    probability: float = attrs.field(default=0.5, converter=_prob("NemesisSpec.probability"))
    mix: tuple[str, ...] = attrs.field(default=(), converter=_mix)

    def __attrs_post_init__(self) -> None:
        if self.duration <= 0:
            raise ValueError(f"NemesisSpec.duration must be > 0 (how long a fault stays in force), got {self.duration}")
        if self.interval is not None and self.duration >= self.interval:
            raise ValueError(
                f"NemesisSpec: duration ({self.duration}) must be shorter than interval ({self.interval}), "
                "so each fault is healed before the next one starts")

    @property
    def period(self) -> float:
        """From one repetition's start to the next."""
        return self.interval if self.interval is not None else 2.0 * self.duration

    @property
    def slow_jitter(self) -> float:
        return self.jitter if self.jitter is not None else self.delay / 2.0


# --------------------------------------------------------------------------
# Nemeses
# --------------------------------------------------------------------------

Nemesis = Callable[[list[str], random.Random, NemesisSpec], Schedule]

#: the link nemeses: every link, or with ``spec.target`` only the target's links (both directions)
LINK_NEMESES = frozenset({"flaky", "slow", "duplicate", "reorder"})
#: the nemeses that use ``spec.target`` (the rest refuse one)
TARGETED = frozenset({"one", "majority", "bridge", "asymmetric", "kill", "pause", "split-site"}) | LINK_NEMESES
#: the smallest node count each nemesis makes sense for
MIN_NODES = {"majority": 3, "bridge": 3, "majorities-ring": 5, "split-site": 3}
#: nemeses ``mix`` draws only when named in ``spec.mix`` (so its default draws, and old seeds' schedules, stay as they were)
NOT_MIXED = frozenset({"split-site"})


def _check(name: str, nodes: list[str], rng: random.Random, spec: NemesisSpec) -> list[str]:
    if not isinstance(rng, random.Random):
        raise TypeError(f"nemesis {name!r} needs a random.Random, got {rng!r}")
    if not isinstance(spec, NemesisSpec):
        raise TypeError(f"nemesis {name!r} needs a NemesisSpec, got {spec!r}")
    if isinstance(nodes, (str, bytes)):
        raise ValueError(f"nemesis {name!r}: nodes must be a list of node names, got {nodes!r}")
    nodes = list(nodes)
    for n in nodes:
        _node_name(f"nemesis {name!r}: node", n)
    if len(set(nodes)) != len(nodes):
        dup = sorted({n for n in nodes if nodes.count(n) > 1})
        raise ValueError(f"nemesis {name!r}: node names repeat: {dup}")
    least = max(2, MIN_NODES.get(name, 2))
    if len(nodes) < least:
        why = {
            "majorities-ring": " (each node must see a different majority; below 5 nodes the ring degenerates)",
            "majority": " (a majority and a non-empty minority)",
            "bridge": " (two halves and a bridge)",
        }.get(name, " (a fault needs someone on the other side)")
        raise ValueError(f"nemesis {name!r} needs at least {least} nodes{why}, got {len(nodes)}: {nodes}")
    if spec.target is not None:
        if name not in TARGETED and name != "mix":
            raise ValueError(f"nemesis {name!r} takes no target (got target={spec.target!r}); "
                             f"targeted nemeses: {sorted(TARGETED)}")
        if spec.target not in nodes:
            raise ValueError(f"nemesis {name!r}: unknown target {spec.target!r} (nodes: {nodes})")
    return nodes


def _times(spec: NemesisSpec, make: Callable[[int], tuple[list[Op], list[Op]]]) -> Schedule:
    out: Schedule = []
    for k in range(spec.repeat):
        t = spec.start + k * spec.period
        faults, heals = make(k)
        out.extend((t, op) for op in faults)
        out.extend((t + spec.duration, op) for op in heals)
    out.sort(key=lambda e: e[0])  # stable: ops at one time keep their order
    return out


def _pick(nodes: list[str], rng: random.Random, spec: NemesisSpec) -> str:
    return spec.target if spec.target is not None else rng.choice(nodes)


def _halves(label: str, a: list[str], b: list[str], nodes: list[str]) -> Grudge:
    return Grudge(islands_grudge([a, b], nodes), f"{label}: {','.join(a)} | {','.join(b)}")


def one(nodes: list[str], rng: random.Random, spec: NemesisSpec) -> Schedule:
    """Isolate one node (``spec.target``, or a random one each time) from all others, both ways."""
    nodes = _check("one", nodes, rng, spec)

    def make(_k: int) -> tuple[list[Op], list[Op]]:
        t = _pick(nodes, rng, spec)
        return [Grudge(islands_grudge([[t]], nodes), f"one: {t} isolated")], [Heal()]
    return _times(spec, make)


def majority(nodes: list[str], rng: random.Random, spec: NemesisSpec) -> Schedule:
    """A clean split: a random strict majority (n//2 + 1 nodes) and the minority (the rest).

    ``spec.target``, if given, is always in the minority.
    """
    nodes = _check("majority", nodes, rng, spec)
    n = len(nodes)
    small = n - (n // 2 + 1)

    def make(_k: int) -> tuple[list[Op], list[Op]]:
        if spec.target is not None:
            others = [x for x in nodes if x != spec.target]
            rng.shuffle(others)
            minority = [spec.target] + others[: small - 1]
            big = others[small - 1:]
        else:
            order = list(nodes)
            rng.shuffle(order)
            minority, big = order[:small], order[small:]
        return [_halves("majority", big, minority, nodes)], [Heal()]
    return _times(spec, make)


def ring_offsets(n: int) -> tuple[int, ...]:
    """The ring offsets ``D`` of :func:`majorities_ring` for ``n`` nodes (0 included, ``|D|`` a majority).

    Node ``i`` of the ring reaches nodes ``i + d (mod n)`` for ``d`` in ``D``.
    A symmetric arrangement (``D == -D``) needs a regular graph of degree
    ``m - 1`` (``m`` = majority): a window ``-r..r`` when ``m`` is odd; a
    window plus the opposite node ``n/2`` when ``m`` is even and ``n`` even.
    When ``m`` is even and ``n`` odd (n = 7, 11, ...) no symmetric
    arrangement exists (an odd-degree regular graph needs an even node
    count), so the window ``-r..r+1`` is used: the link to the farthest
    neighbour on one side is one-way. Every node still reaches exactly a
    majority and is reached by exactly a majority.
    """
    m = n // 2 + 1
    if m % 2 == 1:
        r = (m - 1) // 2
        return tuple(range(-r, r + 1))
    r = (m - 2) // 2
    if n % 2 == 0:
        return tuple(range(-r, r + 1)) + (n // 2,)
    return tuple(range(-r, r + 2))


def majorities_ring(nodes: list[str], rng: random.Random, spec: NemesisSpec) -> Schedule:
    """Jepsen's majorities ring: every node sees a majority, but no two see the same one.

    The nodes are shuffled into a ring and each reaches its neighbours within
    the offsets of :func:`ring_offsets`; the reachability is not transitive,
    so two nodes that each see a majority may disagree about which. Needs at
    least 5 nodes.
    """
    nodes = _check("majorities-ring", nodes, rng, spec)
    n = len(nodes)
    offsets = ring_offsets(n)

    def make(_k: int) -> tuple[list[Op], list[Op]]:
        ring = list(nodes)
        rng.shuffle(ring)
        reach = {ring[i]: {ring[(i + d) % n] for d in offsets} for i in range(n)}
        blocked = {(a, b) for a in nodes for b in nodes if b not in reach[a]}
        return [Grudge(blocked, f"majorities-ring: {' > '.join(ring)}")], [Heal()]
    return _times(spec, make)


def bridge(nodes: list[str], rng: random.Random, spec: NemesisSpec) -> Schedule:
    """Two halves that cannot reach each other, joined by one bridge node that reaches both.

    The bridge is ``spec.target`` or a random node each time.
    """
    nodes = _check("bridge", nodes, rng, spec)

    def make(_k: int) -> tuple[list[Op], list[Op]]:
        b = _pick(nodes, rng, spec)
        others = [x for x in nodes if x != b]
        rng.shuffle(others)
        h = len(others) // 2
        left, right = others[:h], others[h:]
        blocked = {(x, y) for x in left for y in right} | {(y, x) for x in left for y in right}
        return [Grudge(blocked, f"bridge: {','.join(left)} | {b} | {','.join(right)}")], [Heal()]
    return _times(spec, make)


def random_halves(nodes: list[str], rng: random.Random, spec: NemesisSpec) -> Schedule:
    """A random split into two halves (sizes n//2 and the rest), drawn afresh each time."""
    nodes = _check("random-halves", nodes, rng, spec)

    def make(_k: int) -> tuple[list[Op], list[Op]]:
        order = list(nodes)
        rng.shuffle(order)
        h = len(order) // 2
        return [_halves("random-halves", order[:h], order[h:], nodes)], [Heal()]
    return _times(spec, make)


def asymmetric(nodes: list[str], rng: random.Random, spec: NemesisSpec) -> Schedule:
    """A one-way cut: the target cannot send to anyone, but everyone can still send to it."""
    nodes = _check("asymmetric", nodes, rng, spec)

    def make(_k: int) -> tuple[list[Op], list[Op]]:
        t = _pick(nodes, rng, spec)
        blocked = {(t, x) for x in nodes if x != t}
        return [Grudge(blocked, f"asymmetric: {t} cannot send")], [Heal()]
    return _times(spec, make)


def split_site(nodes: list[str], rng: random.Random, spec: NemesisSpec) -> Schedule:
    """The target (say the manager) cut off; meanwhile the rest splits into two halves, then merges again.

    Four grudges per repetition, each replacing the one before (a :class:`Grudge`
    replaces the grudge in force), then the heal:

    * ``start``: the target isolated from everyone (``one``);
    * ``start + duration/3``: the target, and the other nodes in two random
      halves (sizes n//2 and the rest of the others), three islands;
    * ``start + 2*duration/3``: the halves merged, the target still away;
    * ``start + duration``: :class:`Heal`.

    The target is ``spec.target`` (a random node each time if unset); the
    halves are drawn afresh each repetition from ``rng``. This is the schedule
    that splits an edge site while its manager is away and merges it before
    the manager returns.
    """
    nodes = _check("split-site", nodes, rng, spec)
    third = spec.duration / 3.0
    out: Schedule = []
    for k in range(spec.repeat):
        t = spec.start + k * spec.period
        away = _pick(nodes, rng, spec)
        others = [x for x in nodes if x != away]
        rng.shuffle(others)
        h = len(others) // 2
        left, right = others[:h], others[h:]
        alone = islands_grudge([[away]], nodes)
        out.append((t, Grudge(alone, f"split-site: {away} away")))
        out.append((t + third, Grudge(islands_grudge([[away], left, right], nodes),
                                      f"split-site: {away} away; {','.join(left)} | {','.join(right)}")))
        out.append((t + 2 * third, Grudge(alone, f"split-site: halves merged, {away} still away")))
        out.append((t + spec.duration, Heal()))
    out.sort(key=lambda e: e[0])
    return out


def _every_link(name: str, **fault: float) -> Nemesis:
    def nemesis(nodes: list[str], rng: random.Random, spec: NemesisSpec) -> Schedule:
        nodes = _check(name, nodes, rng, spec)
        values = {k: (v(spec) if callable(v) else v) for k, v in fault.items()}
        ops: list[Op] = [LinkFault(a, b, **values) for a in nodes for b in nodes
                         if a != b and (spec.target is None or spec.target in (a, b))]
        return _times(spec, lambda _k: (ops, [ClearLinkFaults()]))
    nemesis.__name__ = name.replace("-", "_")
    return nemesis


flaky = _every_link("flaky", loss=lambda s: s.loss)
flaky.__doc__ = "Every link (both directions) loses each message with probability ``spec.loss`` (default 0.3)."
slow = _every_link("slow", delay=lambda s: s.delay, jitter=lambda s: s.slow_jitter)
slow.__doc__ = "Every link gets ``spec.delay`` (default 0.2 s) extra latency plus up to ``spec.jitter`` (default delay/2)."
duplicate = _every_link("duplicate", duplicate=lambda s: s.probability)
duplicate.__doc__ = "Every link duplicates each message with probability ``spec.probability`` (default 0.5)."
reorder = _every_link("reorder", reorder=lambda s: s.probability)
reorder.__doc__ = "Every link holds back each message with probability ``spec.probability`` (default 0.5), so later ones overtake it."


def kill(nodes: list[str], rng: random.Random, spec: NemesisSpec) -> Schedule:
    """Kill the target (or a random node each time); restart it ``duration`` later."""
    nodes = _check("kill", nodes, rng, spec)

    def make(_k: int) -> tuple[list[Op], list[Op]]:
        t = _pick(nodes, rng, spec)
        return [Kill(t)], [Restart(t)]
    return _times(spec, make)


def pause(nodes: list[str], rng: random.Random, spec: NemesisSpec) -> Schedule:
    """Pause the target (or a random node each time); resume it ``duration`` later."""
    nodes = _check("pause", nodes, rng, spec)

    def make(_k: int) -> tuple[list[Op], list[Op]]:
        t = _pick(nodes, rng, spec)
        return [Pause(t)], [Resume(t)]
    return _times(spec, make)


def mix(nodes: list[str], rng: random.Random, spec: NemesisSpec) -> Schedule:
    """One fault per repetition, each drawn from ``spec.mix`` (default: every nemesis that fits).

    Each is healed before the next starts. ``spec.target`` goes to the drawn
    nemeses that take one.
    """
    nodes = _check("mix", nodes, rng, spec)
    choices = list(spec.mix) or [n for n in NEMESES if n != "mix" and n not in NOT_MIXED
                                 and len(nodes) >= MIN_NODES.get(n, 2)]
    out: Schedule = []
    for k in range(spec.repeat):
        name = rng.choice(choices)
        sub = attrs.evolve(spec, start=spec.start + k * spec.period, repeat=1, interval=spec.period, mix=(),
                           target=spec.target if name in TARGETED else None)
        out.extend(NEMESES[name](nodes, rng, sub))
    out.sort(key=lambda e: e[0])
    return out


NEMESES: dict[str, Nemesis] = {
    "one": one,
    "majority": majority,
    "majorities-ring": majorities_ring,
    "bridge": bridge,
    "random-halves": random_halves,
    "asymmetric": asymmetric,
    "flaky": flaky,
    "slow": slow,
    "duplicate": duplicate,
    "reorder": reorder,
    "kill": kill,
    "pause": pause,
    "mix": mix,
    "split-site": split_site,
}


def make_schedule(name: str, nodes: list[str], rng: random.Random, spec: NemesisSpec | None = None) -> Schedule:
    """The schedule of the nemesis called ``name`` (a clear error for an unknown name)."""
    fn = NEMESES.get(name)
    if fn is None:
        raise ValueError(f"unknown nemesis {name!r}; known nemeses: {', '.join(NEMESES)}")
    return fn(nodes, rng, spec if spec is not None else NemesisSpec())


# --------------------------------------------------------------------------
# What is in force
# --------------------------------------------------------------------------

@attrs.define
class FaultState:
    """The faults in force after a sequence of ops (pure; both drivers use it).

    ``grudge`` is the last :class:`Grudge`'s pairs (empty after :class:`Heal`);
    ``links`` the link faults by (src, dst) (a later fault on a link replaces
    an earlier one; emptied by :class:`ClearLinkFaults`); ``killed`` and
    ``paused`` the nodes down or frozen.
    """

    grudge: frozenset[tuple[str, str]] = frozenset()
    links: dict[tuple[str, str], LinkFault] = attrs.field(factory=dict)
    killed: set[str] = attrs.field(factory=set)
    paused: set[str] = attrs.field(factory=set)

    def apply(self, op: Op) -> None:
        c = op.__class__
        if c is Grudge:
            self.grudge = op.blocked
        elif c is Heal:
            self.grudge = frozenset()
        elif c is LinkFault:
            self.links[(op.src, op.dst)] = op
        elif c is ClearLinkFaults:
            self.links.clear()
        elif c is Kill:
            self.killed.add(op.node)
        elif c is Restart:
            self.killed.discard(op.node)
        elif c is Pause:
            self.paused.add(op.node)
        elif c is Resume:
            self.paused.discard(op.node)
        else:
            raise TypeError(f"not a nemesis op: {op!r}")

    def blocked(self, nodes: Iterable[str], *, pause_isolates: bool = False) -> frozenset[tuple[str, str]]:
        """The grudge, plus (if ``pause_isolates``) every paused node cut off both ways."""
        if not pause_isolates or not self.paused:
            return self.grudge
        nodes = list(nodes)
        iso = {(p, x) for p in self.paused for x in nodes if x != p} | {(x, p) for p in self.paused for x in nodes if x != p}
        return self.grudge | frozenset(iso)

    def link_faults(self) -> list[LinkFault]:
        return list(self.links.values())


# --------------------------------------------------------------------------
# Driver 1: the simulator
# --------------------------------------------------------------------------

@attrs.frozen
class Delayed(Latency):
    """A base latency plus a fixed ``delay`` plus up to ``jitter`` (uniform): a slowed link."""

    base: Latency
    delay: float = attrs.field(converter=_nonneg("Delayed delay"))
    jitter: float = attrs.field(default=0.0, converter=_nonneg("Delayed jitter"))

    def sample(self, rng: random.Random) -> float:
        t = self.base.sample(rng) + self.delay
        return t + rng.random() * self.jitter if self.jitter else t

    def bounds(self) -> tuple[float, float]:
        lo, hi = self.base.bounds()
        return (lo + self.delay, hi + self.delay + self.jitter)


def faulty_spec(base: LinkSpec, fault: LinkFault) -> LinkSpec:
    """``base`` with ``fault`` laid on top: latency shifted by the delay (and jitter);
    loss, duplication and reordering the larger of the two."""
    latency = base.latency
    if fault.delay or fault.jitter:
        latency = Delayed(latency, fault.delay, fault.jitter)
    return attrs.evolve(base, latency=latency, loss=max(base.loss, fault.loss),
                        duplicate=max(base.duplicate, fault.duplicate), reorder=max(base.reorder, fault.reorder))


def apply_to_simulator(
    sim: Any,
    schedule: Schedule,
    addresses_by_node: Mapping[str, Iterable[str]],
    factories: Mapping[str, Callable[[], Any]] | None = None,
) -> FaultState:
    """Schedule every op of ``schedule`` on ``sim`` (an :class:`actors.simulator.Simulator`).

    * Grudge / Heal / Pause / Resume: the network is reset with ``sim.heal()``
      and every pair blocked by the grudge in force is ``sim.cut``; so the
      simulator writes ``net.heal`` and ``net.cut`` events as usual.
      ``heal`` leaves link specs alone.
    * **Pause is approximated**: a simulated participant cannot be frozen with
      its timers, so a paused node is isolated both ways (on top of any
      grudge) and Resume lifts that. Its timers keep firing and its own
      messages to itself still arrive; messages to and from it are dropped
      rather than held, which is harsher than a real SIGSTOP (where TCP
      would deliver them late).
    * LinkFault: ``sim.set_link`` with :func:`faulty_spec` over the link's spec
      as it was before the first fault (its base latency kept);
      ClearLinkFaults restores those specs (a link that had none returns to
      the network's default through ``network.clear_link``).
    * Kill: ``sim.crash`` every address of the node; Restart:
      ``sim.restart(address, factories[address]())`` for each.

    Before each op a ``nemesis.<kind>`` event (node ``"chaos"``, actor
    ``"nemesis"``, fields ``op.describe()``) goes to ``sim.event_log``.
    Everything is checked before anything is scheduled. Returns the
    :class:`FaultState` the ops update as they run (for the caller to
    inspect).
    """
    factories = dict(factories or {})
    by_node = {n: list(a) for n, a in addresses_by_node.items()}
    known = set(sim.network.nodes) | set(by_node)
    last = -math.inf
    for t, op in schedule:
        if not isinstance(op, OPS):
            raise TypeError(f"not a nemesis op: {op!r}")
        if t < last:
            raise ValueError(f"schedule is not sorted by time: {t} after {last}")
        last = t
        if t < sim.now:
            raise ValueError(f"op {op.describe()} at {t} lies before the simulator's now ({sim.now})")
        named: list[str] = []
        if isinstance(op, Grudge):
            named = [n for pair in op.blocked for n in pair]
        elif isinstance(op, LinkFault):
            named = [op.src, op.dst]
        elif isinstance(op, (Kill, Restart, Pause, Resume)):
            named = [op.node]
        for n in named:
            if n not in known:
                raise ValueError(f"op {op.describe()} names node {n!r}, which the simulator does not know "
                                 f"(known: {sorted(known)})")
        if isinstance(op, (Kill, Restart)) and not by_node.get(op.node):
            raise ValueError(f"op {op.describe()}: no addresses given for node {op.node!r} in addresses_by_node")
        if isinstance(op, Restart):
            missing = [a for a in by_node[op.node] if a not in factories]
            if missing:
                raise ValueError(f"op {op.describe()}: no factory for {missing} (factories must cover every "
                                 "address of a restarted node)")

    state = FaultState()
    saved: dict[tuple[str, str], LinkSpec | None] = {}  # link -> spec before the faults (None: unset)
    net = sim.network

    def reset_network() -> None:
        sim.heal()
        for src, dst in sorted(state.blocked(net.nodes, pause_isolates=True)):
            sim.cut(src, dst)

    def run(op: Op) -> None:
        sim.event_log.emit(sim.now, "chaos", "nemesis", f"nemesis.{op.kind}", op.describe())
        state.apply(op)
        c = op.__class__
        if c in (Grudge, Heal, Pause, Resume):
            reset_network()
        elif c is LinkFault:
            key = (op.src, op.dst)
            if key not in saved:
                spec = net.link(op.src, op.dst)
                saved[key] = None if spec is net.default else spec
            base = saved[key] or net.default
            sim.set_link(op.src, op.dst, faulty_spec(base, op))
        elif c is ClearLinkFaults:
            for (src, dst), spec in sorted(saved.items()):
                if spec is None:
                    net.clear_link(src, dst)
                else:
                    sim.set_link(src, dst, spec)
            saved.clear()
        elif c is Kill:
            for a in by_node[op.node]:
                sim.crash(a)
        elif c is Restart:
            for a in by_node[op.node]:
                sim.restart(a, factories[a]())

    for t, op in schedule:
        sim.schedule(t, lambda op=op: run(op))
    return state


# --------------------------------------------------------------------------
# Driver 2: real processes
# --------------------------------------------------------------------------

def fault_plans(
    nodes: Iterable[str],
    blocked: Iterable[tuple[str, str]],
    link_faults: Iterable[LinkFault] = (),
) -> dict[str, SetFaults]:
    """One :class:`SetFaults` per node that puts ``blocked`` and ``link_faults`` in force.

    A blocked pair (src, dst) becomes a drop-everything rule at both ends:
    ``FaultRule(peers=(dst,), direction="out", drop=1.0)`` at src and
    ``FaultRule(peers=(src,), direction="in", drop=1.0)`` at dst, so the cut
    holds even if one end misses its plan. A link fault becomes an ``"out"``
    rule at its sending node. Blocking rules come first (a node's transport
    applies the first rule that matches). Every node gets a plan, an empty one
    if nothing concerns it, so sending all of them replaces every earlier plan.
    """
    nodes = list(nodes)
    known = set(nodes)
    drops: dict[str, list[FaultRule]] = {n: [] for n in nodes}
    links: dict[str, list[FaultRule]] = {n: [] for n in nodes}
    for src, dst in sorted(set(blocked)):
        for n in (src, dst):
            if n not in known:
                raise ValueError(f"fault_plans: blocked pair ({src!r}, {dst!r}) names unknown node {n!r} (nodes: {nodes})")
        drops[src].append(FaultRule(peers=(dst,), direction="out", drop=1.0))
        drops[dst].append(FaultRule(peers=(src,), direction="in", drop=1.0))
    for f in link_faults:
        if not isinstance(f, LinkFault):
            raise TypeError(f"fault_plans: not a LinkFault: {f!r}")
        for n in (f.src, f.dst):
            if n not in known:
                raise ValueError(f"fault_plans: {f!r} names unknown node {n!r} (nodes: {nodes})")
        links[f.src].append(FaultRule(peers=(f.dst,), direction="out", drop=f.loss, delay=f.delay,
                                      jitter=f.jitter, duplicate=f.duplicate, reorder=f.reorder))
    return {n: SetFaults(rules=drops[n] + links[n]) for n in nodes}
