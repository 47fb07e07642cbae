"""Load and validate topology files (TOML, read with the standard library).

How this works
--------------
``load_topology(path)`` parses the file with :mod:`tomllib`, then walks it
once, collecting *every* problem rather than stopping at the first: unknown
keys, missing or mistyped values, bad numbers (negative, NaN, out of range),
duplicate names, unknown actor kinds, actor parameters that the kind does not
take or that have the wrong type, and references that point nowhere (an
address parameter naming an actor that no node hosts, a link or chaos target
naming an unknown node). Each problem names its key path
(``nodes[1].actors[0].kind``) and, where the text shows it, its line. If
anything is wrong it raises :class:`TopologyError`, whose message lists them
all; callers print it and exit with status 2 - never a traceback.

A ``[defaults]`` table gives parameters per actor kind (``[defaults."kind"]``)
that every actor of that kind gets unless its own ``params`` say otherwise;
they are checked once, under their own key path.

A node's ``host`` must be this machine: ``127.0.0.1`` (the default),
``localhost`` or another IPv4 address of this machine (one it can bind to).
The launcher starts every node here; there is no remote launching. The
simulator ignores hosts, but a file is checked the same way for both modes
(a file that runs in ``--sim`` runs for real too); ``local_hosts=False``
skips the check for a caller that only simulates.

The file format is documented by ``topologies/pingpong.toml``.
"""

from __future__ import annotations

import math
import re
import socket
import tomllib
import typing
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import attrs

from topologies.kinds import KINDS, Kind
from topologies.plugin import load_plugins
from topologies.model import (
    MAIN_CHANNEL, ActorSpec, ChannelSpec, ChaosEntry, LinkFaultSpec, NetworkSpec, NodeSpec, RunSpec, Topology,
    TransportSpec,
)

__all__ = ["Problem", "TopologyError", "host_problem", "load_topology", "parse_topology"]

RESERVED_NODES = {"chaosctl", "sim", "launcher"}
_EVENT_MATCH = re.compile(r"^[A-Za-z0-9_.$-]+(\[[A-Za-z0-9_]+=[^\]]*\])?$")
MAX_COUNT = 100_000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@attrs.frozen
class Problem:
    key: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}, " if self.line else ""
        return f"{where}{self.key or '<file>'}: {self.message}"


class TopologyError(ValueError):
    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem{'s' if len(problems) != 1 else ''} in the topology\n{lines}")


class _Lines:
    """Finds the line of a key path in the TOML text (best effort)."""

    def __init__(self, text: str):
        self.lines = text.splitlines()
        self.headers: list[tuple[int, str]] = []
        for i, line in enumerate(self.lines, start=1):
            m = re.match(r"^\s*\[\[?\s*([A-Za-z0-9_.\"-]+)\s*\]\]?", line)
            if m:
                self.headers.append((i, m.group(1).replace('"', "")))  # [defaults."kind.name"] -> defaults.kind.name

    def find(self, path: tuple) -> int | None:
        section_start, section_end = 1, len(self.lines) + 1
        prefix: list[str] = []
        rest = list(path)
        while rest:
            part = rest.pop(0)
            if isinstance(part, int):
                name = ".".join(prefix)
                starts = [ln for ln, h in self.headers if h == name and section_start <= ln < section_end]
                if part >= len(starts):
                    return None
                section_start = starts[part]
                nxt = [ln for ln, h in self.headers if ln > section_start and (h == name or not h.startswith(name + "."))]
                section_end = nxt[0] if nxt else len(self.lines) + 1
                continue
            prefix.append(part)
            if rest and isinstance(rest[0], int):
                continue
            header = [ln for ln, h in self.headers if h == ".".join(prefix) and section_start <= ln < section_end]
            if header:
                section_start = header[0]
                continue
            if rest and any(h.startswith(".".join(prefix) + ".") for ln, h in self.headers if section_start <= ln < section_end):
                continue  # only a deeper table has a header ([defaults."kind"])
            for ln in range(section_start, min(section_end, len(self.lines) + 1)):
                if re.match(rf"^\s*\"?{re.escape(part)}\"?\s*=", self.lines[ln - 1]) or re.search(rf"[{{,]\s*{re.escape(part)}\s*=", self.lines[ln - 1]):
                    return ln
            return section_start if section_start > 1 or path else None
        return section_start


def _keystr(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


class _Checker:
    def __init__(self, source: str, text: str):
        self.source = source
        self.lines = _Lines(text)
        self.problems: list[Problem] = []

    def bad(self, path: tuple, message: str) -> None:
        self.problems.append(Problem(_keystr(path), message, self.lines.find(path)))

    def table(self, value: Any, path: tuple, allowed: set[str]) -> dict:
        if not isinstance(value, dict):
            self.bad(path, f"expected a table, got {_tname(value)}")
            return {}
        for k in value:
            if k not in allowed:
                self.bad(path + (k,), f"unknown key {k!r} (allowed: {', '.join(sorted(allowed))})")
        return value

    def number(self, d: dict, key: str, path: tuple, default: Any, *, integer: bool = False,
               minimum: float | None = None, maximum: float | None = None, above: float | None = None,
               optional: bool = False) -> Any:
        if key not in d:
            return default
        v = d[key]
        p = path + (key,)
        if integer and (isinstance(v, bool) or not isinstance(v, int)):
            self.bad(p, f"expected a whole number, got {_tname(v)} {v!r}")
            return default
        if not integer and (isinstance(v, bool) or not isinstance(v, (int, float))):
            self.bad(p, f"expected a number, got {_tname(v)} {v!r}")
            return default
        if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
            self.bad(p, f"expected a finite number, got {v!r}")
            return default
        if minimum is not None and v < minimum:
            self.bad(p, f"must be >= {minimum}, got {v!r}")
            return default
        if maximum is not None and v > maximum:
            self.bad(p, f"must be <= {maximum}, got {v!r}")
            return default
        if above is not None and not v > above:
            self.bad(p, f"must be > {above}, got {v!r}")
            return default
        return v if integer else float(v)

    def string(self, d: dict, key: str, path: tuple, default: Any = None, *, required: bool = False) -> Any:
        if key not in d:
            if required:
                self.bad(path + (key,), "is required")
            return default
        v = d[key]
        if not isinstance(v, str):
            self.bad(path + (key,), f"expected a string, got {_tname(v)}")
            return default
        return v

    def name(self, d: dict, path: tuple, what: str) -> str | None:
        v = self.string(d, "name", path, required=True)
        if v is not None and not _NAME.match(v):
            self.bad(path + ("name",), f"{what} name {v!r} must be 1-63 letters, digits, '_', '.' or '-' (no '/')")
            return None
        return v

    def latency(self, d: dict, path: tuple) -> tuple[float, float] | None:
        if "latency" not in d:
            return None
        v = d["latency"]
        p = path + ("latency",)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = [v, v]
        if (not isinstance(v, list) or len(v) != 2 or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v)
                or any(math.isnan(x) or math.isinf(x) or x < 0 for x in v) or v[0] > v[1]):
            self.bad(p, f"expected seconds >= 0 or [low, high] with low <= high, got {v!r}")
            return None
        return (float(v[0]), float(v[1]))


def _tname(v: Any) -> str:
    return {dict: "table", list: "array", str: "string", int: "integer", float: "float", bool: "boolean"}.get(type(v), type(v).__name__)


def _type_ok(value: Any, tp: Any) -> bool:
    if tp is Any or tp is typing.Any:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", ())):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if tp is str:
        return isinstance(value, str)
    if origin in (list, tuple) or tp in (list, tuple):
        args = typing.get_args(tp)
        return isinstance(value, list) and (not args or all(_type_ok(x, args[0]) for x in value))
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    return True  # a type the loader cannot check; the factory will


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def host_problem(host: str) -> str | None:
    """Why the launcher cannot start a node on ``host``, or None: it must be an IPv4 address of this machine.

    A host is this machine's if a socket can bind to (one of) its IPv4 address(es).
    """
    why = ""
    try:
        addresses = sorted({ai[4][0] for ai in socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)})
    except (socket.gaierror, UnicodeError, ValueError):
        addresses, why = [], " (IPv6 is not supported)" if ":" in host else " (no such host name)"
    for address in addresses:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((address, 0))
                return None
            except OSError:
                continue
    return ("the launcher starts every node on this machine: host must be 127.0.0.1, localhost or an address "
            f"of this machine; got {host or repr(host)}{why}")


def parse_topology(text: str, source: str = "<string>", *, local_hosts: bool = True) -> Topology:
    """Validate TOML text; raise TopologyError listing every problem.

    ``local_hosts``: every node's host must be this machine (see the module doc); False for a
    caller that only simulates (the simulator ignores hosts).
    """
    load_plugins()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise TopologyError(source, [Problem("", f"not valid TOML: {e}", int(m.group(1)) if m else None)]) from None
    c = _Checker(source, text)
    top = c.table(raw, (), {"name", "description", "seed", "run", "transport", "network", "defaults", "nodes", "links", "keys", "chaos",
                                "channels"})
    name = c.string(top, "name", (), required=True) or "?"
    description = c.string(top, "description", (), "") or ""
    seed = c.number(top, "seed", (), 1, integer=True)

    run_t = c.table(top.get("run", {}), ("run",), {"duration", "progress", "progress_total", "done", "done_count", "states",
                                                            "recovery", "must_judge", "settle"})
    run = RunSpec(
        duration=c.number(run_t, "duration", ("run",), 60.0, above=0),
        progress=c.string(run_t, "progress", ("run",)),
        progress_total=c.number(run_t, "progress_total", ("run",), None, integer=True, minimum=1),
        done=c.string(run_t, "done", ("run",)),
        done_count=c.number(run_t, "done_count", ("run",), 1, integer=True, minimum=1),
        states=c.string(run_t, "states", ("run",)),
        recovery=c.number(run_t, "recovery", ("run",), 3.0, minimum=0),
    )
    settle_raw = run_t.get("settle", [])
    settle_list = [settle_raw] if isinstance(settle_raw, str) else settle_raw
    if not isinstance(settle_list, list) or not all(isinstance(x, str) and _EVENT_MATCH.match(x) for x in settle_list):
        c.bad(("run", "settle"), "expected an event kind or a list of them, each optionally with one field test "
              f"(kind or kind[field=value]), e.g. [\"monitor.condition\"], got {settle_raw!r}")
    else:
        run = attrs.evolve(run, settle=tuple(settle_list))
    must_judge_raw = run_t.get("must_judge")
    if must_judge_raw is not None and (not isinstance(must_judge_raw, list)
                                       or not all(isinstance(x, str) and x for x in must_judge_raw)):
        c.bad(("run", "must_judge"), f"expected a list of checker names, e.g. [\"admission-limit\"], got {must_judge_raw!r}")
        must_judge_raw = None
    for key in ("progress", "done"):
        v = getattr(run, key)
        if v is not None and not _EVENT_MATCH.match(v):
            c.bad(("run", key), f"expected an event kind, optionally with one field test: kind or kind[field=value], got {v!r}")
    tr_t = c.table(top.get("transport", {}), ("transport",), {"heartbeat", "liveness", "connect", "dispatch"})
    connect = c.string(tr_t, "connect", ("transport",), "all") or "all"
    if connect not in ("all", "on-demand"):
        c.bad(("transport", "connect"), f"expected \"all\" or \"on-demand\", got {connect!r}")
        connect = "all"
    dispatch = c.string(tr_t, "dispatch", ("transport",), "thread") or "thread"
    if dispatch not in ("thread", "loop"):
        c.bad(("transport", "dispatch"), f"expected \"thread\" or \"loop\", got {dispatch!r}")
        dispatch = "thread"
    transport = TransportSpec(
        heartbeat=c.number(tr_t, "heartbeat", ("transport",), 0.5, above=0),
        liveness=c.number(tr_t, "liveness", ("transport",), 4, integer=True, minimum=1),
        connect=connect,
        dispatch=dispatch,
    )
    net_t = c.table(top.get("network", {}), ("network",), {"latency", "loss", "duplicate", "reorder"})
    network = NetworkSpec(
        latency=c.latency(net_t, ("network",)) or (0.001, 0.005),
        loss=c.number(net_t, "loss", ("network",), 0.0, minimum=0, maximum=1),
        duplicate=c.number(net_t, "duplicate", ("network",), 0.0, minimum=0, maximum=1),
        reorder=c.number(net_t, "reorder", ("network",), 0.0, minimum=0, maximum=1),
    )

    # -- per-kind default parameters ---------------------------------------------------
    defaults: dict[str, dict] = {}
    defaults_raw = c.table(top.get("defaults", {}), ("defaults",), set(top.get("defaults", {})) if isinstance(top.get("defaults"), dict) else set())
    pending_refs: list[tuple[tuple, str]] = []
    for kname, dd in defaults_raw.items():
        path = ("defaults", kname)
        kind = KINDS.get(kname)
        if kind is None:
            c.bad(path, f"defaults for unknown actor kind {kname!r} (known: {', '.join(sorted(KINDS))})")
            continue
        if not isinstance(dd, dict):
            c.bad(path, f"expected a table of {kname!r} parameters, got {_tname(dd)}")
            continue
        _check_params(c, kind, dd, path, pending_refs, supplied=set(kind.params))
        defaults[kname] = dd

    # -- nodes and actors ------------------------------------------------------------
    nodes_raw = top.get("nodes")
    if nodes_raw is None:
        c.bad(("nodes",), "a topology needs at least one [[nodes]] entry")
        nodes_raw = []
    elif not isinstance(nodes_raw, list) or not nodes_raw:
        c.bad(("nodes",), "expected one or more [[nodes]] tables")
        nodes_raw = []
    nodes: list[NodeSpec] = []
    raw_channel_ports: dict[int, Any] = {}  # node index -> its channel_ports table (checked once channels are known)
    seen_nodes: dict[str, int] = {}
    ports: dict[tuple[str, int], str] = {}
    hosts_seen: dict[str, str | None] = {}  # host -> its problem (each host checked once)
    for i, nd in enumerate(nodes_raw):
        path = ("nodes", i)
        nd = c.table(nd, path, {"name", "host", "port", "actors", "channel_ports"})
        if "channel_ports" in nd:
            raw_channel_ports[i] = nd["channel_ports"]
        nname = c.name(nd, path, "node")
        if nname is not None:
            if nname in RESERVED_NODES:
                c.bad(path + ("name",), f"node name {nname!r} is reserved")
            elif nname in seen_nodes:
                c.bad(path + ("name",), f"duplicate node name {nname!r} (also nodes[{seen_nodes[nname]}])")
            seen_nodes.setdefault(nname, i)
        host = c.string(nd, "host", path, "127.0.0.1")
        if local_hosts and host:  # an empty host means the default, 127.0.0.1
            if host not in hosts_seen:
                hosts_seen[host] = host_problem(host)
            if hosts_seen[host]:
                c.bad(path + ("host",), hosts_seen[host])
        port = c.number(nd, "port", path, 0, integer=True, minimum=0, maximum=65535)
        if port and host is not None:
            other = ports.get((host, port))
            if other is not None:
                c.bad(path + ("port",), f"port {port} on {host} is already used by node {other!r}")
            ports[(host, port)] = nname or "?"
        actors_raw = nd.get("actors", [])
        if not isinstance(actors_raw, list):
            c.bad(path + ("actors",), "expected [[nodes.actors]] tables")
            actors_raw = []
        if not actors_raw:
            c.bad(path + ("actors",), f"node {nname!r} hosts no actors")
        actors: list[ActorSpec] = []
        seen_actors: set[str] = set()
        for j, ad in enumerate(actors_raw):
            apath = path + ("actors", j)
            ad = c.table(ad, apath, {"name", "kind", "params", "count"})
            aname = c.name(ad, apath, "actor")
            count = c.number(ad, "count", apath, 1, integer=True, minimum=1, maximum=MAX_COUNT)
            names = [aname] if count == 1 else [f"{aname}{i}" for i in range(count)]
            if aname is not None:
                for one in names:
                    if one in seen_actors:
                        c.bad(apath + ("name",), f"duplicate actor name {one!r} on node {nname!r}")
                    seen_actors.add(one)
            kind_name = c.string(ad, "kind", apath, required=True)
            params = ad.get("params", {})
            if not isinstance(params, dict):
                c.bad(apath + ("params",), f"expected a table, got {_tname(params)}")
                params = {}
            kind = KINDS.get(kind_name) if kind_name else None
            if kind_name and kind is None:
                c.bad(apath + ("kind",), f"unknown actor kind {kind_name!r} (known: {', '.join(sorted(KINDS))})")
            if kind is not None:
                _check_params(c, kind, _instance(params, 0, nname or ""), apath + ("params",), pending_refs,
                              supplied=set(defaults.get(kind_name, {})))
            params = {**defaults.get(kind_name or "", {}), **params}  # the actor's own parameters win
            for i, one in enumerate(names):
                actors.append(ActorSpec(one or "?", kind_name or "?", _instance(params, i, nname or "") if count > 1 else dict(params)))
        nodes.append(NodeSpec(nname or "?", host or "127.0.0.1", port, tuple(actors)))

    addresses = {f"{n.name}/{a.name}" for n in nodes for a in n.actors}
    for path, ref in dict.fromkeys(pending_refs):
        if ref not in addresses:
            c.bad(path, f"{ref!r} names no actor in this topology (actors: {', '.join(sorted(addresses)) or 'none'})")

    # -- links, keys, chaos ----------------------------------------------------------
    links: list[LinkFaultSpec] = []
    links_raw = top.get("links", [])
    if not isinstance(links_raw, list):
        c.bad(("links",), "expected [[links]] tables")
        links_raw = []
    for i, ln in enumerate(links_raw):
        path = ("links", i)
        ln = c.table(ln, path, {"from", "to", "latency", "loss", "duplicate", "reorder", "both"})
        src = c.string(ln, "from", path, required=True)
        dst = c.string(ln, "to", path, required=True)
        for key, v in (("from", src), ("to", dst)):
            if v is not None and v not in seen_nodes:
                c.bad(path + (key,), f"names no node in this topology: {v!r}")
        both = ln.get("both", False)
        if not isinstance(both, bool):
            c.bad(path + ("both",), "expected true or false")
            both = False
        links.append(LinkFaultSpec(src or "?", dst or "?", c.latency(ln, path),
                                   c.number(ln, "loss", path, 0.0, minimum=0, maximum=1),
                                   c.number(ln, "duplicate", path, 0.0, minimum=0, maximum=1),
                                   c.number(ln, "reorder", path, 0.0, minimum=0, maximum=1), both))

    keys_raw = c.table(top.get("keys", {}), ("keys",), set(seen_nodes) | set(top.get("keys", {}) if isinstance(top.get("keys"), dict) else ()))
    keys: dict[str, dict] = {}
    for nname, kd in keys_raw.items():
        path = ("keys", nname)
        if nname not in seen_nodes:
            c.bad(path, f"keys for {nname!r}, which is not a node of this topology")
            continue
        kd = c.table(kd, path, {"public", "secret"})
        pub = c.string(kd, "public", path, required=True)
        sec = c.string(kd, "secret", path, required=True)
        for k, v in (("public", pub), ("secret", sec)):
            if v is not None and len(v) != 40:
                c.bad(path + (k,), f"a CurveZMQ key is 40 Z85 characters, got {len(v)}")
        keys[nname] = {"public": pub or "", "secret": sec or ""}
    if keys and set(keys) != set(seen_nodes):
        missing = sorted(set(seen_nodes) - set(keys))
        c.bad(("keys",), f"CurveZMQ keys must be given for every node or none; missing: {', '.join(missing)}")

    channels = _channels(c, top.get("channels"), seen_nodes)
    channel_names = [MAIN_CHANNEL] + [ch.name for ch in channels]
    for i, cp in raw_channel_ports.items():
        path = ("nodes", i, "channel_ports")
        node = nodes[i]
        if not isinstance(cp, dict):
            c.bad(path, f"expected a table of channel = port, e.g. {{ mesh = 7101 }}, got {_tname(cp)}")
            continue
        mine = [ch.name for ch in channels if any(ch.joins(node.name, o) for o in seen_nodes)]
        good: dict[str, int] = {}
        for cname in cp:
            if cname not in mine:
                c.bad(path + (cname,), f"node {node.name!r} has no endpoint on channel {cname!r} (its extra channels: "
                                       f"{', '.join(mine) or 'none'}; the main channel's port is 'port')")
                continue
            port = c.number(cp, cname, path, 0, integer=True, minimum=0, maximum=65535)
            if port:
                other = ports.get((node.host, port))
                if other is not None:
                    c.bad(path + (cname,), f"port {port} on {node.host} is already used by node {other!r}")
                ports[(node.host, port)] = f"{node.name} ({cname})"
            good[cname] = port
        nodes[i] = attrs.evolve(node, channel_ports=good)

    chaos: list[ChaosEntry] = []
    chaos_raw = top.get("chaos", [])
    if not isinstance(chaos_raw, list):
        c.bad(("chaos",), "expected [[chaos]] tables")
        chaos_raw = []
    known_nemeses = _known_nemeses()
    for i, ch in enumerate(chaos_raw):
        path = ("chaos", i)
        ch = c.table(ch, path, {"nemesis", "start", "duration", "repeat", "interval", "target", "loss", "delay", "probability",
                                "nodes", "channel"})
        nem = c.string(ch, "nemesis", path, required=True)
        if nem is not None and known_nemeses and nem not in known_nemeses:
            c.bad(path + ("nemesis",), f"unknown nemesis {nem!r} (known: {', '.join(sorted(known_nemeses))})")
        target = c.string(ch, "target", path)
        if target is not None and target not in seen_nodes:
            c.bad(path + ("target",), f"names no node in this topology: {target!r}")
        entry = ChaosEntry(
            nem or "?",
            start=c.number(ch, "start", path, 1.0, minimum=0),
            duration=c.number(ch, "duration", path, 2.0, above=0),
            repeat=c.number(ch, "repeat", path, 1, integer=True, minimum=1),
            interval=c.number(ch, "interval", path, None, above=0),
            target=target,
            loss=c.number(ch, "loss", path, None, minimum=0, maximum=1),
            delay=c.number(ch, "delay", path, None, minimum=0),
            probability=c.number(ch, "probability", path, None, minimum=0, maximum=1),
            nodes=_node_patterns(c, ch.get("nodes"), path + ("nodes",), seen_nodes),
            channel=c.string(ch, "channel", path),
        )
        if entry.channel is not None:
            if entry.channel not in channel_names:
                c.bad(path + ("channel",), f"unknown channel {entry.channel!r} (channels of this topology: "
                                           f"{', '.join(channel_names)}; extra ones are declared under [channels])")
            elif nem in PROCESS_NEMESES:
                c.bad(path + ("channel",), f"nemesis {nem!r} strikes processes, not links: it cannot be limited to "
                                           f"channel {entry.channel!r}")
        if entry.nodes and target is not None and not any(fnmatchcase(target, g) for g in entry.nodes):
            c.bad(path + ("target",), f"{target!r} is not among the nodes the entry selects ({', '.join(entry.nodes)})")
        if entry.interval is not None and entry.interval <= entry.duration:
            c.bad(path + ("interval",), f"interval ({entry.interval}) must be longer than duration ({entry.duration})")
        chaos.append(entry)

    if must_judge_raw is not None:
        from topologies.checkers import CHECKERS
        from topologies.plugin import checkers_for

        shown = checkers_for({a.kind for n in nodes for a in n.actors})
        for x in must_judge_raw:
            if x not in CHECKERS:
                c.bad(("run", "must_judge"), f"unknown checker {x!r} (known: {', '.join(CHECKERS)})")
            elif x not in shown:
                c.bad(("run", "must_judge"), f"checker {x!r} belongs to a plug-in this topology does not use "
                                             f"(its checkers: {', '.join(shown)})")
        run = attrs.evolve(run, must_judge=tuple(must_judge_raw))
    if c.problems:
        raise TopologyError(source, c.problems)
    return Topology(name, description, seed, run, transport, network, tuple(nodes), tuple(links), keys, tuple(chaos), source,
                    tuple(channels))


PROCESS_NEMESES = frozenset({"kill", "pause", "mix"})  # nemeses that can strike a process (no channel of their own)


def _channels(c: Any, raw: Any, nodes: Any) -> list[ChannelSpec]:
    """``[channels.NAME]`` tables, each ``links = [["mon-*", "mon-*"], ...]``: extra network channels (see ChannelSpec)."""
    if raw is None:
        return []
    if not isinstance(raw, dict):
        c.bad(("channels",), f"expected [channels.NAME] tables, got {_tname(raw)}")
        return []
    out: list[ChannelSpec] = []
    claimed: dict[tuple[str, str], str] = {}  # a link -> the first channel that names it
    for cname, cd in raw.items():
        path = ("channels", cname)
        if not _NAME.match(cname):
            c.bad(path, f"channel name {cname!r} must be 1-63 letters, digits, '_', '.' or '-'")
            continue
        if cname == MAIN_CHANNEL:
            c.bad(path, f"{MAIN_CHANNEL!r} is the channel of every link the others do not name: it is not declared")
            continue
        cd = c.table(cd, path, {"links", "latency", "loss", "duplicate", "reorder"})
        links = cd.get("links")
        if not isinstance(links, list) or not links or not all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(g, str) and g for g in p) for p in links):
            c.bad(path + ("links",), "expected a non-empty list of node pairs, each two node names or glob patterns "
                                     f"(e.g. [[\"mon-*\", \"mon-*\"]]), got {links!r}")
            continue
        spec = ChannelSpec(cname, tuple((a, b) for a, b in links), c.latency(cd, path),
                           *(c.number(cd, k, path, None, minimum=0, maximum=1) for k in ("loss", "duplicate", "reorder")))
        for a, b in spec.links:
            one = ChannelSpec(cname, ((a, b),))
            joined = [(x, y) for x in nodes for y in nodes if x < y and one.joins(x, y)]
            if not joined:
                c.bad(path + ("links",), f"[{a!r}, {b!r}] joins no two nodes of this topology")
            for pair in joined:
                if claimed.setdefault(pair, cname) != cname:
                    c.bad(path + ("links",), f"[{a!r}, {b!r}] names the link {pair[0]} - {pair[1]}, which channel "
                                             f"{claimed[pair]!r} already uses (a link uses one channel)")
                    break
        out.append(spec)
    return out


def _node_patterns(c: Any, raw: Any, path: tuple, nodes: Any) -> tuple[str, ...]:
    """A [[chaos]] entry's ``nodes``: glob patterns (``"mon-*"``), each matching at least one node."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw or not all(isinstance(g, str) and g for g in raw):
        c.bad(path, f"expected a non-empty list of node names or glob patterns (e.g. [\"mon-*\"]), got {raw!r}")
        return ()
    for g in raw:
        if not any(fnmatchcase(n, g) for n in nodes):
            c.bad(path, f"{g!r} matches no node in this topology")
    return tuple(raw)


def _instance(params: dict, i: int, node: str) -> dict:
    """The params of the i-th of ``count`` actors: ``{i}`` and ``{node}`` in strings filled in."""
    def fill(v: Any) -> Any:
        if isinstance(v, str):
            return v.replace("{i}", str(i)).replace("{node}", node)
        if isinstance(v, list):
            return [fill(x) for x in v]
        if isinstance(v, dict):
            return {k: fill(x) for k, x in v.items()}
        return v
    return {k: fill(v) for k, v in params.items()}


def _check_params(c: _Checker, kind: Kind, params: dict, path: tuple, refs: list, supplied: set = frozenset()) -> None:
    """Check ``params`` against ``kind``; ``supplied``: parameters given elsewhere (``[defaults]``), not missing."""
    for k, v in params.items():
        p = kind.params.get(k)
        if p is None:
            c.bad(path + (k,), f"kind {kind.name!r} takes no parameter {k!r} (it takes: {', '.join(sorted(kind.params)) or 'none'})")
        elif not _type_ok(v, p.type):
            c.bad(path + (k,), f"expected {_describe(p.type)}, got {_tname(v)} {v!r}")
        elif k in kind.addresses:
            for ref in (v if isinstance(v, list) else [v]):
                refs.append((path + (k,), ref))
    for k, p in kind.params.items():
        if p.required and k not in params and k not in supplied:
            c.bad(path, f"kind {kind.name!r} needs parameter {k!r} ({_describe(p.type)})")


def _known_nemeses() -> set[str]:
    try:
        from topologies.nemesis import NEMESES
    except ImportError:  # pragma: no cover - the chaos module is optional for plain runs
        return set()
    return set(NEMESES)


def load_topology(path: str | Path, *, local_hosts: bool = True) -> Topology:
    """Read and validate a topology file; TopologyError lists every problem (``local_hosts``: see parse_topology)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TopologyError(str(p), [Problem("", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise TopologyError(str(p), [Problem("", f"cannot read the file: {e}")]) from None
    return parse_topology(text, str(p), local_hosts=local_hosts)
