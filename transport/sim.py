"""The simulated network: latency, loss, duplication, reordering, partitions.

How this works
--------------
:class:`SimNetwork` decides the fate of one message; it owns neither time nor
an event queue. The driver (``actors.simulator.Simulator``) calls
``transmit(src_node, dst_node, now)`` for every send and gets back the
delivery times: none (lost, or the link is cut), one, or two (duplicated). It
queues those deliveries itself and, when one comes due, calls
``arrive(src_node, dst_node)``, which says whether the link is *still* up: a
message is dropped if the link is cut at send time or at delivery time, so
nothing ever crosses an active partition.

The network works at node granularity: a node is the part of an address before
the first ``"/"``. A link is an ordered pair of nodes (src -> dst) with a
:class:`LinkSpec`: a latency distribution and the probabilities of loss,
duplication and reordering. Pairs not configured use the default spec; actor
pairs on one node use the local spec (reliable and instant by default).

A link is FIFO: a message arrives no earlier than the last message scheduled on
that link (ties keep send order in the driver's queue). With probability
``reorder`` a message skips that rule and takes an extra delay, so later ones
can overtake it. A duplicate gets its own latency sample (and, being sent on
the same link, queues behind the original).

Partitions: ``partition(islands)`` splits the known nodes into islands (nodes
named in no island form one extra island together); ``cut(src, dst)`` blocks
one direction; ``heal()`` clears both.

Randomness: one ``random.Random`` seeded from the network seed
(``f"{seed}:net"``); the driver calls ``transmit`` in its deterministic event
order, so one seed gives one run. (One rng per sending node would keep a new
node from shifting the others' draws, but cost 10-15% of simulator throughput
at 10,000 nodes in cache misses; participants' own rngs are per address.)
``now`` passed in must never decrease.

The codec round-trip (encode at send, decode at every delivery, duplicates
included) is the driver's job; undecodable frames are reported back through
:meth:`SimNetwork.note_decode_error` so all wire counters live here.
"""

from __future__ import annotations

import math
import random
from typing import Iterable

import attrs

__all__ = [
    "DEFAULT_LATENCY",
    "Exponential",
    "Fixed",
    "Latency",
    "LinkSpec",
    "Normal",
    "SimNetwork",
    "Uniform",
    "node_of",
]


def _number(name: str, v: object) -> float:
    if v.__class__ is bool or not isinstance(v, (int, float)) or math.isnan(v):
        raise ValueError(f"{name} must be a number, got {v!r}")
    return float(v)


def _nonneg(name: str, v: object) -> float:
    f = _number(name, v)
    if f < 0 or math.isinf(f):
        raise ValueError(f"{name} must be a finite number >= 0 (a latency cannot be negative), got {v!r}")
    return f


def _probability(name: str, v: object) -> float:
    f = _number(name, v)
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {v!r}")
    return f


def node_of(address: str) -> str:
    """The node part of ``"node/actor"`` (the whole string if it has no ``/``)."""
    return address.partition("/")[0]


# --------------------------------------------------------------------------
# Latency distributions
# --------------------------------------------------------------------------

class Latency:
    """A latency distribution: ``sample(rng)`` returns seconds >= 0.

    ``bounds()`` is the (lo, hi) range every sample lies in (hi may be inf).
    """

    __slots__ = ()

    def sample(self, rng: random.Random) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    def bounds(self) -> tuple[float, float]:
        return (0.0, math.inf)


@attrs.frozen
class Fixed(Latency):
    """Always ``seconds``."""

    seconds: float = attrs.field(converter=lambda v: _nonneg("Fixed latency", v))

    def sample(self, rng: random.Random) -> float:
        return self.seconds

    def bounds(self) -> tuple[float, float]:
        return (self.seconds, self.seconds)


@attrs.frozen
class Uniform(Latency):
    """Uniform in [lo, hi]."""

    lo: float = attrs.field(converter=lambda v: _nonneg("Uniform lo", v))
    hi: float = attrs.field(converter=lambda v: _nonneg("Uniform hi", v))

    def __attrs_post_init__(self) -> None:
        if self.hi < self.lo:
            raise ValueError(f"Uniform latency needs lo <= hi, got lo={self.lo} hi={self.hi}")

    def sample(self, rng: random.Random) -> float:
        return self.lo + (self.hi - self.lo) * rng.random()

    def bounds(self) -> tuple[float, float]:
        return (self.lo, self.hi)


@attrs.frozen
class Exponential(Latency):
    """``base`` plus an exponential tail of the given mean (a long-tailed link)."""

    mean: float = attrs.field(converter=lambda v: _nonneg("Exponential mean", v))
    base: float = attrs.field(default=0.0, converter=lambda v: _nonneg("Exponential base", v))

    def sample(self, rng: random.Random) -> float:
        if self.mean == 0.0:
            return self.base
        return self.base + rng.expovariate(1.0 / self.mean)

    def bounds(self) -> tuple[float, float]:
        return (self.base, self.base if self.mean == 0.0 else math.inf)


@attrs.frozen
class Normal(Latency):
    """Normal(mean, sd), clipped at 0."""

    mean: float = attrs.field(converter=lambda v: _nonneg("Normal mean", v))
    sd: float = attrs.field(converter=lambda v: _nonneg("Normal sd", v))

    def sample(self, rng: random.Random) -> float:
        v = rng.gauss(self.mean, self.sd)
        return v if v > 0.0 else 0.0

    def bounds(self) -> tuple[float, float]:
        return (0.0, self.mean if self.sd == 0.0 else math.inf)


def _latency(v: object) -> Latency:
    if not isinstance(v, Latency):
        raise ValueError(f"latency must be a Latency (Fixed, Uniform, Exponential, Normal), got {v!r}")
    return v


DEFAULT_LATENCY = Uniform(0.001, 0.005)


@attrs.frozen
class LinkSpec:
    """How one directed link (src node -> dst node) behaves.

    ``reorder_delay`` is the extra delay of a reordered message; ``None`` means
    another sample of ``latency``.
    """

    latency: Latency = attrs.field(default=DEFAULT_LATENCY, validator=lambda _i, _a, v: _latency(v))
    loss: float = attrs.field(default=0.0, converter=lambda v: _probability("loss", v))
    duplicate: float = attrs.field(default=0.0, converter=lambda v: _probability("duplicate", v))
    reorder: float = attrs.field(default=0.0, converter=lambda v: _probability("reorder", v))
    reorder_delay: Latency | None = attrs.field(
        default=None, validator=lambda _i, _a, v: v is None or _latency(v)
    )
    #: no loss, duplication or reordering (derived; lets transmit take its fast path)
    faultless: bool = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "faultless", not (self.loss or self.duplicate or self.reorder))


LOCAL_LINK = LinkSpec(latency=Fixed(0.0))


# --------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------

_NO_DELIVERY: tuple[float, ...] = ()

_FIFO_PRUNE_MIN = 4096


class SimNetwork:
    """A seeded, fault-injecting network between simulated nodes.

    ``seed`` may be left ``None`` when the network is handed to a Simulator,
    which then gives it the simulator's seed. ``nodes`` pre-registers node
    names (the Simulator registers each participant's node itself).
    """

    def __init__(
        self,
        seed: int | None = None,
        *,
        default: LinkSpec | None = None,
        local: LinkSpec | None = None,
        nodes: Iterable[str] = (),
    ) -> None:
        self._seed: int | None = None
        if seed is not None:
            self.seed = seed
        self.default = default if default is not None else LinkSpec()
        self.local = local if local is not None else LOCAL_LINK
        for spec, what in ((self.default, "default"), (self.local, "local")):
            if not isinstance(spec, LinkSpec):
                raise ValueError(f"{what} link spec must be a LinkSpec, got {spec!r}")
        self._links: dict[tuple[str, str], LinkSpec] = {}
        self._nodes: set[str] = set()
        self._rng: random.Random | None = None
        # per link (src node, dst node): the latest arrival scheduled, for FIFO
        self._fifo: dict[tuple[str, str], float] = {}
        self._fifo_limit = _FIFO_PRUNE_MIN
        self._now = 0.0
        # partitions: node -> island index (unnamed nodes: -1); None = no partition
        self._island: dict[str, int] | None = None
        self._islands: tuple[frozenset[str], ...] = ()
        self._cuts: set[tuple[str, str]] = set()
        self.blocked = False  # True while any partition or cut is in force
        self.last_drop = ""  # reason of the most recent dropped send ("loss", "partition")
        self.sent = 0
        self.delivered = 0
        self.dropped_loss = 0
        self.dropped_partition = 0
        self.duplicated = 0
        self.reordered = 0
        self.decode_errors = 0
        for n in nodes:
            self.add_node(n)

    # -- configuration -----------------------------------------------------

    @property
    def seed(self) -> int | None:
        return self._seed

    @seed.setter
    def seed(self, seed: int) -> None:
        if seed.__class__ is bool or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        if self._seed is not None and self._seed != seed:
            raise ValueError(f"this network is already seeded with {self._seed}; cannot reseed with {seed}")
        self._seed = seed

    def add_node(self, node: str) -> None:
        """Make ``node`` known (partitions and cuts may only name known nodes)."""
        if not isinstance(node, str) or not node or "/" in node:
            raise ValueError(f"a node name must be a non-empty string without '/', got {node!r}")
        self._nodes.add(node)

    @property
    def nodes(self) -> frozenset[str]:
        return frozenset(self._nodes)

    def _known(self, node: object, what: str) -> str:
        if node not in self._nodes:
            raise ValueError(f"{what}: unknown node {node!r} (known: {sorted(self._nodes)[:10]}{'...' if len(self._nodes) > 10 else ''})")
        return node  # type: ignore[return-value]

    def set_link(self, src: str, dst: str, spec: LinkSpec, *, both: bool = False) -> None:
        """Configure the link src -> dst (and dst -> src if ``both``)."""
        if not isinstance(spec, LinkSpec):
            raise ValueError(f"set_link needs a LinkSpec, got {spec!r}")
        self._known(src, "set_link")
        self._known(dst, "set_link")
        self._links[(src, dst)] = spec
        if both:
            self._links[(dst, src)] = spec

    def clear_link(self, src: str, dst: str, *, both: bool = False) -> None:
        """Return the link src -> dst (and back, if ``both``) to the default spec."""
        self._links.pop((src, dst), None)
        if both:
            self._links.pop((dst, src), None)

    def link(self, src: str, dst: str) -> LinkSpec:
        """The spec in force for src -> dst."""
        spec = self._links.get((src, dst))
        if spec is not None:
            return spec
        return self.local if src == dst else self.default

    # -- partitions ----------------------------------------------------------

    def partition(self, islands: Iterable[Iterable[str]]) -> None:
        """Split the nodes into islands; messages cross only within one island.

        Nodes named in no island together form one extra island. Replaces an
        earlier partition; one-way cuts stay until :meth:`heal`.
        """
        if isinstance(islands, (str, bytes)):
            raise ValueError(f"partition needs a list of sets of node names, got {islands!r}")
        where: dict[str, int] = {}
        kept: list[frozenset[str]] = []
        for island in islands:
            if isinstance(island, (str, bytes)) or not isinstance(island, Iterable):
                raise ValueError(f"each island must be a set of node names, got {island!r}")
            members = frozenset(island)
            for n in members:
                self._known(n, "partition")
                if n in where:
                    raise ValueError(f"partition: node {n!r} is named in two islands")
                where[n] = len(kept)
            if members:
                kept.append(members)
        self._island = where
        self._islands = tuple(kept)
        self.blocked = True

    def cut(self, src: str, dst: str) -> None:
        """Block the direction src -> dst only."""
        self._known(src, "cut")
        self._known(dst, "cut")
        if src == dst:
            raise ValueError(f"cut: a node cannot be cut from itself ({src!r})")
        self._cuts.add((src, dst))
        self.blocked = True

    def heal(self) -> None:
        """Clear every partition and cut."""
        self._island = None
        self._islands = ()
        self._cuts.clear()
        self.blocked = False

    def islands(self) -> list[frozenset[str]]:
        """The named islands in force ([] when there is no partition)."""
        return list(self._islands)

    def unnamed(self) -> frozenset[str]:
        """Known nodes named in no island: together they form the extra island."""
        if self._island is None:
            return frozenset()
        return frozenset(n for n in self._nodes if n not in self._island)

    def cuts(self) -> set[tuple[str, str]]:
        return set(self._cuts)

    def can_reach(self, src: str, dst: str) -> bool:
        """Whether a message from node ``src`` may reach node ``dst`` now."""
        if src == dst:
            return True
        if (src, dst) in self._cuts:
            return False
        island = self._island
        if island is not None:
            return island.get(src, -1) == island.get(dst, -1)
        return True

    # -- the per-message decisions (hot path) ---------------------------------

    @property
    def rng(self) -> random.Random:
        """The network's one rng (every loss, duplication, reorder and latency draw)."""
        rng = self._rng
        if rng is None:
            if self._seed is None:
                raise ValueError("this SimNetwork has no seed: pass seed= or hand it to a Simulator")
            rng = self._rng = random.Random(f"{self._seed}:net")
        return rng

    def transmit(self, src: str, dst: str, now: float) -> tuple[float, ...]:
        """Decide one send from node ``src`` to node ``dst`` at time ``now``.

        Returns the delivery times: () if the message is lost or the link is
        cut, one time normally, two if the message is duplicated.
        """
        if now < self._now:
            raise ValueError(f"time went backwards: now={now} after {self._now}")
        self._now = now
        self.sent += 1
        if self.blocked and not self.can_reach(src, dst):
            self.dropped_partition += 1
            self.last_drop = "partition"
            return _NO_DELIVERY
        links = self._links
        spec = links.get((src, dst)) if links else None
        if spec is None:
            spec = self.local if src == dst else self.default
        rng = self._rng or self.rng
        if spec.faultless:
            # the common case, _arrival inlined: one latency draw, then FIFO
            t = now + spec.latency.sample(rng)
            # FIFO even for fixed latency: a link whose spec just changed (a nemesis
            # clearing `slow`) must not let new messages overtake ones in flight.
            fifo = self._fifo
            if len(fifo) >= self._fifo_limit:
                self._prune(now)
            last = fifo.setdefault((src, dst), t)  # one probe when the link is idle
            if last is not t:
                if last > t:
                    t = last
                else:
                    fifo[(src, dst)] = t
            return (t,)
        if spec.loss and rng.random() < spec.loss:
            self.dropped_loss += 1
            self.last_drop = "loss"
            return _NO_DELIVERY
        if spec.duplicate and rng.random() < spec.duplicate:
            self.duplicated += 1
            return (self._arrival(spec, rng, src, dst, now), self._arrival(spec, rng, src, dst, now))
        return (self._arrival(spec, rng, src, dst, now),)

    def _arrival(self, spec: LinkSpec, rng: random.Random, src: str, dst: str, now: float) -> float:
        t = now + spec.latency.sample(rng)
        if spec.reorder and rng.random() < spec.reorder:
            self.reordered += 1
            extra = spec.reorder_delay or spec.latency
            return t + extra.sample(rng)
        fifo = self._fifo
        if len(fifo) >= self._fifo_limit:
            self._prune(now)
        last = fifo.setdefault((src, dst), t)
        if last is not t:
            if last > t:
                t = last
            else:
                fifo[(src, dst)] = t
        return t

    def _prune(self, now: float) -> None:
        # An entry whose last arrival is <= now no longer constrains anything.
        fifo = self._fifo
        for key in [k for k, last in fifo.items() if last <= now]:
            del fifo[key]
        self._fifo_limit = max(_FIFO_PRUNE_MIN, 2 * len(fifo))

    def arrive(self, src: str, dst: str) -> bool:
        """A delivery src -> dst comes due: True if it may be delivered (counted)."""
        if self.blocked and not self.can_reach(src, dst):
            self.dropped_partition += 1
            return False
        self.delivered += 1
        return True

    def note_decode_error(self) -> None:
        """The driver could not decode a delivered frame (it is dropped)."""
        self.decode_errors += 1

    def counters(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "delivered": self.delivered,
            "dropped_loss": self.dropped_loss,
            "dropped_partition": self.dropped_partition,
            "duplicated": self.duplicated,
            "reordered": self.reordered,
            "decode_errors": self.decode_errors,
        }
