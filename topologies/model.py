"""The topology model: what a topology file describes, once validated.

A :class:`Topology` is plain frozen data. The loader (:mod:`topologies.loader`)
builds it from TOML and reports every problem; the launcher turns it into node
processes or simulator participants. ``to_dict`` / ``from_dict`` carry a
resolved topology (ports filled in) to the node processes as JSON.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

import attrs

__all__ = ["MAIN_CHANNEL", "ActorSpec", "ChannelSpec", "ChaosEntry", "LinkFaultSpec", "NetworkSpec", "NodeSpec", "RunSpec",
           "Topology", "TransportSpec"]

MAIN_CHANNEL = "main"  # the channel of every link a topology's [channels] do not name: each node's own endpoint


@attrs.frozen
class ActorSpec:
    name: str
    kind: str
    params: dict = attrs.field(factory=dict)


@attrs.frozen
class NodeSpec:
    name: str
    host: str = "127.0.0.1"
    port: int = 0  # 0: chosen by the launcher
    actors: tuple[ActorSpec, ...] = ()
    # channel -> port of the node's endpoint on each extra channel it is an end of (0: chosen by the launcher);
    # empty for a topology without [channels]
    channel_ports: dict = attrs.field(factory=dict)

    @property
    def endpoint(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def channel_endpoint(self, channel: str) -> str:
        """This node's endpoint on ``channel`` (its own endpoint on the main channel)."""
        if channel == MAIN_CHANNEL:
            return self.endpoint
        if channel not in self.channel_ports:
            raise ValueError(f"node {self.name!r} has no port on channel {channel!r} (a resolved topology names one "
                             "for every channel a node is on)")
        return f"tcp://{self.host}:{self.channel_ports[channel]}"


@attrs.frozen
class ChannelSpec:
    """A network channel besides the main one: its own endpoint on every node that is an end of one of its links.

    ``links``: pairs of node-name glob patterns; a link between a node matching one pattern of a pair and
    another node matching the other uses this channel (either way round). A link no channel names uses
    the main channel; one named by two channels uses the first.
    """

    name: str
    links: tuple[tuple[str, str], ...] = ()
    # the simulator's link on this channel (sim mode only; None: the [network] default): a network of its own
    latency: tuple[float, float] | None = None
    loss: float | None = None
    duplicate: float | None = None
    reorder: float | None = None

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "links", tuple((str(a), str(b)) for a, b in self.links))
        if self.latency is not None:
            object.__setattr__(self, "latency", tuple(self.latency))

    @property
    def simulated(self) -> bool:
        """Does this channel have a simulator link of its own?"""
        return any(v is not None for v in (self.latency, self.loss, self.duplicate, self.reorder))

    def joins(self, a: str, b: str) -> bool:
        return a != b and any((fnmatchcase(a, x) and fnmatchcase(b, y)) or (fnmatchcase(a, y) and fnmatchcase(b, x))
                              for x, y in self.links)


@attrs.frozen
class RunSpec:
    duration: float = 60.0              # seconds (real) or virtual seconds (sim) at most
    progress: str | None = None         # event kind counted as progress
    progress_total: int | None = None   # how many progress events make 100 %
    done: str | None = None             # event kind that marks completion ...
    done_count: int = 1                 # ... once seen this many times
    states: str | None = None           # event kind whose "to" field is an actor's new state (live counts, report)
    recovery: float = 3.0               # chaos: seconds the run goes on after its last fault op (by default)
    settle: tuple[str, ...] = ()        # chaos: ... and after the last of these events (kind or kind[field=value])
    must_judge: tuple[str, ...] | None = None  # chaos: checkers that must answer valid/invalid (None: the plug-ins' defaults)

    def __attrs_post_init__(self) -> None:
        if self.must_judge is not None and not isinstance(self.must_judge, tuple):
            object.__setattr__(self, "must_judge", tuple(self.must_judge))
        if not isinstance(self.settle, tuple):
            object.__setattr__(self, "settle", (self.settle,) if isinstance(self.settle, str) else tuple(self.settle))


@attrs.frozen
class TransportSpec:
    heartbeat: float = 0.5
    liveness: int = 4
    connect: str = "all"  # "all": every node connects to every node at start; "on-demand": at first send
    dispatch: str = "thread"  # "thread": a pykka thread per actor; "loop": actors run on the transport's I/O thread


@attrs.frozen
class NetworkSpec:
    """The simulator's default link (sim mode only)."""

    latency: tuple[float, float] = (0.001, 0.005)
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0


@attrs.frozen
class LinkFaultSpec:
    """A per-link override of the simulator network (directed unless ``both``)."""

    src: str
    dst: str
    latency: tuple[float, float] | None = None
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    both: bool = False


@attrs.frozen
class ChaosEntry:
    nemesis: str
    start: float = 1.0
    duration: float = 2.0
    repeat: int = 1
    interval: float | None = None
    target: str | None = None
    loss: float | None = None
    delay: float | None = None
    probability: float | None = None
    nodes: tuple[str, ...] = ()  # glob patterns: the nemesis strikes only among these nodes (all if empty)
    channel: str | None = None   # cut or degrade only the links of this channel ([channels]; "main": the rest)


@attrs.frozen
class Topology:
    name: str
    description: str = ""
    seed: int = 1
    run: RunSpec = RunSpec()
    transport: TransportSpec = TransportSpec()
    network: NetworkSpec = NetworkSpec()
    nodes: tuple[NodeSpec, ...] = ()
    links: tuple[LinkFaultSpec, ...] = ()
    keys: dict = attrs.field(factory=dict)  # node -> {"public": str, "secret": str}
    chaos: tuple[ChaosEntry, ...] = ()
    source: str = ""
    channels: tuple[ChannelSpec, ...] = ()  # extra channels (none: every link on the main channel)

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]

    @property
    def channel_names(self) -> list[str]:
        """Every channel of this topology: the main one, then the extra ones in file order."""
        return [MAIN_CHANNEL] + [c.name for c in self.channels]

    def channel_of(self, a: str, b: str) -> str:
        """The channel the link between nodes ``a`` and ``b`` uses (symmetric)."""
        for c in self.channels:
            if c.joins(a, b):
                return c.name
        return MAIN_CHANNEL

    def channels_of(self, node: str) -> list[str]:
        """The extra channels ``node`` binds an endpoint on: those with a link between it and another node."""
        return [c.name for c in self.channels if any(c.joins(node, o) for o in self.node_names if o != node)]

    def addresses(self) -> list[str]:
        return [f"{n.name}/{a.name}" for n in self.nodes for a in n.actors]

    def with_ports(self, ports: dict[str, int], channel_ports: dict[str, dict[str, int]] | None = None) -> "Topology":
        """Ports filled in: ``ports`` node -> port; ``channel_ports`` node -> {channel: port} (extra channels)."""
        cp = channel_ports or {}
        return attrs.evolve(self, nodes=tuple(
            attrs.evolve(n, port=ports.get(n.name, n.port), channel_ports={**n.channel_ports, **cp.get(n.name, {})})
            for n in self.nodes))

    def to_dict(self) -> dict:
        d = attrs.asdict(self, recurse=True)
        if not self.channels:  # a one-channel topology's resolved form is what it always was
            del d["channels"]
            for n in d["nodes"]:
                del n["channel_ports"]
        for c in d["chaos"]:
            if c["channel"] is None:
                del c["channel"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Topology":
        def tup(x):
            return tuple(x) if x is not None else None
        return cls(
            name=d["name"], description=d.get("description", ""), seed=d.get("seed", 1),
            run=RunSpec(**d.get("run", {})),
            transport=TransportSpec(**d.get("transport", {})),
            network=NetworkSpec(**{**d.get("network", {}), "latency": tup(d.get("network", {}).get("latency", (0.001, 0.005)))}),
            nodes=tuple(NodeSpec(n["name"], n.get("host", "127.0.0.1"), n.get("port", 0),
                                 tuple(ActorSpec(a["name"], a["kind"], a.get("params", {})) for a in n.get("actors", ())),
                                 dict(n.get("channel_ports", {})))
                        for n in d.get("nodes", ())),
            links=tuple(LinkFaultSpec(**{**ln, "latency": tup(ln.get("latency"))}) for ln in d.get("links", ())),
            keys=d.get("keys", {}),
            chaos=tuple(ChaosEntry(**{**c, "nodes": tuple(c.get("nodes", ()))}) for c in d.get("chaos", ())),
            source=d.get("source", ""),
            channels=tuple(ChannelSpec(**{**c, "links": tuple(tuple(p) for p in c.get("links", ()))})
                           for c in d.get("channels", ())),
        )
