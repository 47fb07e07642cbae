"""Reading real inputs into a dependency graph: a dependency file, systemd units, a compose file.

How this works
--------------
:func:`load` looks at ``SOURCE``: a directory is read as systemd unit files;
a file named ``compose*.y*ml`` / ``docker-compose*`` or whose top level has
``services:`` with compose keys is read as a compose file (YAML, or its JSON
form); a topology file (``[[nodes]]``) is read as the graph its ``deps.agent``
actors will report; a ``.toml`` or ``.json`` file with ``[services.*]`` is a
dependency file. Every problem is a :class:`SourceError` naming the file, the line and
what is wrong (the CLI prints it and exits 2).

Dependency file (TOML or the same structure in JSON)::

    [assets.host-a]                  # optional: where services run
    failure_domain = "fd1"
    region = "r1"

    [services.dns]
    asset = "host-a"                 # inherits failure_domain / region (or give them here)
    bootstrap = true                 # can start in a degraded mode without its dependencies
    priority = 9
    start_time = 2.0                 # seconds to come up (the critical path's weights)
    functions = ["name resolution"]
    restarted_by = ["cloud-manager"]
    hard = ["dhcp"]                  # cannot run without these
    conditional = {acl = "region r1 down"}   # on -> the condition under which it holds
    order = ["ntp"]                  # start after these if both start
    uses = {dhcp = "addresses"}      # what it uses a dependency for (kept on the edge)

    [[operator]]                     # an operator's additions and overrides (they win)
    service = "dns"
    on = "acl"
    kind = "conditional"             # hard | conditional | order; or remove = true
    condition = "region r1 down"

systemd units (a directory; ``*.service``, ``*.socket``, ``*.target``,
``*.mount``, ``*.path``, ``*.timer``, ``*.slice``, ``*.device``,
``*.swap``, ``*.automount`` files and ``<unit>.wants/`` / ``<unit>.requires/``
symlink folders): ``Requires``, ``Requisite``, ``BindsTo`` are hard,
``Wants``/``Upholds`` conditional (condition ``systemd:Wants``), ``After=X``
an order edge unit -> X, ``Before=X`` an order edge X -> unit. Implicit
default dependencies (unless ``DefaultDependencies=no``): a service requires
``sysinit.target`` and starts after ``basic.target``; a target starts after
what it wants or requires. ``[Install]`` lines are ignored (they only apply
when a unit is enabled). Where two edges join the same pair the stronger kind
wins (hard > conditional > order); every edge keeps the file:line it came from. A unit named but
not in the directory is *external* (assumed available).

Compose: ``services.<name>.depends_on`` as a list (hard, ``service_started``)
or a mapping ``{dep: {condition, required, restart}}``: ``required: false``
is conditional (condition ``compose:optional``), otherwise hard; the
readiness condition is kept as the edge's function. A service may carry an
``x-fleetplane`` mapping with the fields of a dependency file's service
(bootstrap, priority, start_time, failure_domain, region, asset,
restarted_by).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from protocols.deps.graph import KINDS, DepGraph, Dependency, Service

__all__ = ["SourceError", "load", "load_compose", "load_depfile", "load_systemd", "parse_depdata"]


class SourceError(ValueError):
    def __init__(self, file: str | Path, line: int, problem: str) -> None:
        super().__init__(f"{file}:{line}: {problem}")
        self.file, self.line, self.problem = str(file), line, problem


SERVICE_FIELDS = {"asset": str, "failure_domain": str, "region": str, "bootstrap": bool, "priority": int,
                  "start_time": (int, float), "functions": list, "restarted_by": list}
EDGE_FIELDS = ("hard", "conditional", "order", "uses")


def _line_of(text: str, *needles: str) -> int:
    """The line of the last needle, each searched for at or after the line of the one before (1 if none found)."""
    lines = text.splitlines()
    at = 0  # index of the line where the previous needle was found
    found = 1
    for needle in needles:
        for i in range(at, len(lines)):
            if needle in lines[i]:
                at, found = i, i + 1
                break
        else:
            break
    return found


def _type_ok(v: Any, t: Any) -> bool:
    if t is bool:
        return isinstance(v, bool)
    if t in (int, (int, float)):
        return isinstance(v, t) and not isinstance(v, bool)
    return isinstance(v, t)


def parse_depdata(data: Any, file: str | Path, text: str, json_form: bool = False) -> DepGraph:
    """A dependency file's parsed structure (``data``) into a graph; ``text`` locates errors."""
    q = '"' if json_form else ""

    def err(problem: str, *needles: str) -> SourceError:
        return SourceError(file, _line_of(text, *needles) if needles else 1, problem)

    if not isinstance(data, dict):
        raise err("the top level must be a table with [services.NAME] entries")
    unknown = set(data) - {"assets", "services", "operator"}
    if unknown:
        k = sorted(unknown)[0]
        raise err(f"unknown top-level key {k!r} (expected assets, services, operator)", k)
    services = data.get("services")
    if not isinstance(services, dict) or not services:
        raise err("no services: give at least one [services.NAME] table", "services")
    assets = data.get("assets", {})
    if not isinstance(assets, dict):
        raise err("assets must be a table of [assets.NAME] tables", "assets")
    for a, spec in assets.items():
        if not isinstance(spec, dict) or set(spec) - {"failure_domain", "region"} \
                or not all(isinstance(v, str) for v in spec.values()):
            raise err(f"asset {a!r}: give failure_domain and region as strings", f"{q}{a}{q}" if json_form else f"assets.{a}")
    g = DepGraph()
    deps: list[Dependency] = []
    for name, spec in services.items():
        anchor = (f'"{name}"',) if json_form else (f"services.{name}",)
        if not isinstance(spec, dict):
            raise err(f"service {name!r} must be a table", *anchor)
        fields: dict[str, Any] = {}
        for k, v in spec.items():
            if k in EDGE_FIELDS:
                continue
            if k not in SERVICE_FIELDS:
                raise err(f"service {name!r}: unknown key {k!r} (expected one of "
                          f"{', '.join(sorted([*SERVICE_FIELDS, *EDGE_FIELDS]))})", *anchor, k)
            if not _type_ok(v, SERVICE_FIELDS[k]):
                raise err(f"service {name!r}: {k} has the wrong type ({type(v).__name__})", *anchor, k)
            if k in ("functions", "restarted_by"):
                if not all(isinstance(x, str) for x in v):
                    raise err(f"service {name!r}: {k} must be a list of strings", *anchor, k)
                v = tuple(v)
            if k == "start_time":
                if v < 0:
                    raise err(f"service {name!r}: start_time must be >= 0", *anchor, k)
                v = float(v)
            fields[k] = v
        asset = fields.get("asset", "")
        if asset:
            if asset not in assets:
                raise err(f"service {name!r}: asset {asset!r} is not in [assets]", *anchor, "asset")
            fields.setdefault("failure_domain", assets[asset].get("failure_domain", ""))
            fields.setdefault("region", assets[asset].get("region", ""))
        g.add_service(Service(name, where=f"{file}:{_line_of(text, *anchor)}", **fields))
        uses = spec.get("uses", {})
        if not isinstance(uses, dict) or not all(isinstance(x, str) for x in uses.values()):
            raise err(f"service {name!r}: uses must map a dependency to the function it is used for",
                      *anchor, "uses")
        for kind in ("hard", "conditional", "order"):
            v = spec.get(kind)
            if v is None:
                continue
            if kind == "conditional":
                if isinstance(v, list):
                    v = {x: "" for x in v} if all(isinstance(x, str) for x in v) else None
                if not isinstance(v, dict) or not all(isinstance(c, str) for c in v.values()):
                    raise err(f"service {name!r}: conditional must map each dependency to its condition",
                              *anchor, "conditional")
                for on, c in v.items():
                    if on == name:
                        raise err(f"service {name!r} depends on itself", *anchor, kind)
                    deps.append(Dependency(name, on, "conditional", c, uses.get(on, ""), source="file"))
            else:
                if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                    raise err(f"service {name!r}: {kind} must be a list of service names", *anchor, kind)
                for on in v:
                    if on == name:
                        raise err(f"service {name!r} depends on itself", *anchor, kind)
                    deps.append(Dependency(name, on, kind, function=uses.get(on, ""), source="file"))
    for d in deps:
        g.add_dependency(d)
    ops = data.get("operator", [])
    if not isinstance(ops, list):
        raise err("operator must be a list of [[operator]] entries", "operator")
    for i, op in enumerate(ops):
        anchor = ("operator",)
        if not isinstance(op, dict) or not isinstance(op.get("service"), str) or not isinstance(op.get("on"), str):
            raise err(f"operator entry {i + 1}: give service and on", *anchor)
        extra = set(op) - {"service", "on", "kind", "condition", "function", "remove"}
        if extra:
            raise err(f"operator entry {i + 1}: unknown key {sorted(extra)[0]!r}", *anchor)
        if op.get("remove"):
            g.remove(op["service"], op["on"])
            continue
        kind = op.get("kind", "hard")
        if kind not in KINDS:
            raise err(f"operator entry {i + 1}: kind {kind!r} is not one of {', '.join(KINDS)}", *anchor)
        if op["service"] == op["on"]:
            raise err(f"operator entry {i + 1}: {op['service']!r} depends on itself", *anchor)
        g.override(Dependency(op["service"], op["on"], kind, str(op.get("condition", "")),
                              str(op.get("function", ""))))
    return g


def load_depfile(path: Path) -> DepGraph:
    text = _read(path)
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SourceError(path, e.lineno, f"not valid JSON: {e.msg} (column {e.colno})") from None
        return parse_depdata(data, path, text, json_form=True)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        line = int(m.group(1)) if m else (len(text.splitlines()) or 1)  # "at end of document": the last line
        raise SourceError(path, line, f"not valid TOML: {str(e).split(' (at line')[0]}") from None
    return parse_depdata(data, path, text)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SourceError(path, 1, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise SourceError(path, 0, f"cannot read: {e.strerror}") from None


# -- systemd ---------------------------------------------------------------------

UNIT_SUFFIXES = (".service", ".socket", ".target", ".mount", ".path", ".timer", ".slice", ".device", ".swap",
                 ".automount", ".scope")
SYSTEMD_KEYS = {"Requires": "hard", "Requisite": "hard", "BindsTo": "hard", "Wants": "conditional",
                "Upholds": "conditional", "After": "order", "Before": "before"}


def _parse_unit(path: Path) -> list[tuple[str, str, int]]:
    """``(key, value, line)`` of the [Unit] section; a malformed line raises SourceError."""
    text = _read(path)
    out = []
    section = None
    pending = ""
    pending_line = 0
    for i, raw in enumerate(text.splitlines(), 1):
        line = raw.strip() if not pending else raw.rstrip()
        if pending:
            line = pending + " " + line.strip()
        if line.endswith("\\"):
            if not pending:
                pending_line = i
            pending = line[:-1]
            continue
        n = pending_line if pending else i
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise SourceError(path, n, f"malformed section header {line!r}")
            section = line[1:-1]
            continue
        if "=" not in line:
            raise SourceError(path, n, f"expected KEY=VALUE, got {line!r}")
        if section is None:
            raise SourceError(path, n, "assignment outside a section (a unit file starts with [Unit])")
        key, _, value = line.partition("=")
        key = key.strip()
        if not key or not re.fullmatch(r"[A-Za-z0-9_-]+", key):
            raise SourceError(path, n, f"malformed key {key!r}")
        if section == "Unit" and (key in SYSTEMD_KEYS or key == "DefaultDependencies"):
            out.append((key, value.strip(), n))
    if pending:
        raise SourceError(path, pending_line, "the file ends inside a continued line")
    return out


def load_systemd(folder: Path) -> DepGraph:
    units = sorted(p for p in folder.iterdir() if p.suffix in UNIT_SUFFIXES and p.is_file())
    if not units:
        raise SourceError(folder, 0, f"no unit files ({', '.join(UNIT_SUFFIXES[:4])}, ...) in this directory")
    g = DepGraph()
    edges: dict[tuple[str, str], Dependency] = {}
    strength = {"hard": 3, "conditional": 2, "order": 1}

    def add(s: str, on: str, kind: str, where: str) -> None:
        if s == on:
            return
        old = edges.get((s, on))
        if old is None or strength[kind] > strength[old.kind]:
            edges[(s, on)] = Dependency(s, on, kind, "systemd:Wants" if kind == "conditional" else "",
                                        source="file", where=where)

    for p in units:
        g.add_service(Service(p.name, where=f"{p}:1"))
        lists: dict[str, list[tuple[str, int]]] = {}
        defaults = True
        for key, value, line in _parse_unit(p):
            if key == "DefaultDependencies":
                defaults = value.lower() not in ("no", "false", "0", "off")
                continue
            if value == "":
                lists[key] = []  # an empty assignment resets the list
                continue
            for v in value.split():
                if not re.fullmatch(r"[A-Za-z0-9:_.\\@%-]+", v):  # % : template specifiers (%i)
                    raise SourceError(p, line, f"{key}: {v!r} is not a unit name")
                lists.setdefault(key, []).append((v, line))
        for key, vals in lists.items():
            for v, line in vals:
                kind = SYSTEMD_KEYS[key]
                if kind == "before":
                    add(v, p.name, "order", f"{p}:{line}")
                else:
                    add(p.name, v, kind, f"{p}:{line}")
        if defaults and p.suffix == ".service":  # systemd.service(5): implicit default dependencies
            add(p.name, "sysinit.target", "hard", f"{p}:1 (DefaultDependencies)")
            add(p.name, "basic.target", "order", f"{p}:1 (DefaultDependencies)")
        if defaults and p.suffix == ".target":  # systemd.target(5): ordered after what it wants or requires
            for key in ("Wants", "Requires", "Requisite", "BindsTo"):
                for v, line in lists.get(key, []):
                    add(p.name, v, "order", f"{p}:{line} (DefaultDependencies)")
    for d in sorted(folder.iterdir()):
        for suffix, kind in ((".wants", "conditional"), (".requires", "hard")):
            if d.is_dir() and d.name.endswith(suffix):
                owner = d.name[: -len(suffix)]
                for link in sorted(d.iterdir()):
                    add(owner, link.name, kind, str(link))  # targets order after these too: kind is stronger
    for d in edges.values():
        g.add_dependency(d)
    return g


# -- compose ------------------------------------------------------------------------

COMPOSE_CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")


def load_compose(path: Path) -> DepGraph:
    import yaml

    text = _read(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        raise SourceError(path, mark.line + 1 if mark else 1,
                          f"not valid YAML: {getattr(e, 'problem', None) or e}") from None

    def line(node: Any) -> int:
        return node.start_mark.line + 1

    def mapping(node: Any, what: str) -> list[tuple[str, Any, Any]]:
        if not isinstance(node, yaml.MappingNode):
            raise SourceError(path, line(node), f"{what} must be a mapping")
        out = []
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                raise SourceError(path, line(k), f"{what}: keys must be names")
            out.append((k.value, k, v))
        return out

    def scalar(node: Any, what: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise SourceError(path, line(node), f"{what} must be a single value")
        return yaml.safe_load(yaml.serialize(node))

    if root is None:
        raise SourceError(path, 1, "the file is empty")
    top = dict((k, (kn, v)) for k, kn, v in mapping(root, "the top level"))
    if "services" not in top:
        raise SourceError(path, 1, "no 'services:' mapping (not a compose file)")
    g = DepGraph()
    deps = []
    for name, kn, spec in mapping(top["services"][1], "services"):
        fields: dict[str, Any] = {}
        sdeps = []
        for key, knode, v in mapping(spec, f"service {name!r}"):
            if key == "depends_on":
                if isinstance(v, yaml.SequenceNode):
                    for item in v.value:
                        sdeps.append(Dependency(name, str(scalar(item, "a depends_on entry")), "hard",
                                                function="service_started", source="file",
                                                where=f"{path}:{line(item)}"))
                else:
                    for dep, dn, dspec in mapping(v, f"service {name!r}: depends_on"):
                        opts = {k: scalar(x, f"depends_on.{dep}.{k}") for k, _, x in
                                mapping(dspec, f"service {name!r}: depends_on.{dep}")}
                        extra = set(opts) - {"condition", "required", "restart"}
                        if extra:
                            raise SourceError(path, line(dn), f"depends_on.{dep}: unknown key {sorted(extra)[0]!r}")
                        cond = opts.get("condition", "service_started")
                        if cond not in COMPOSE_CONDITIONS:
                            raise SourceError(path, line(dn), f"depends_on.{dep}: condition {cond!r} is not one of "
                                              f"{', '.join(COMPOSE_CONDITIONS)}")
                        required = opts.get("required", True)
                        if not isinstance(required, bool):
                            raise SourceError(path, line(dn), f"depends_on.{dep}: required must be true or false")
                        sdeps.append(Dependency(name, dep, "hard" if required else "conditional",
                                                "" if required else "compose:optional", function=cond,
                                                source="file", where=f"{path}:{line(dn)}"))
            elif key == "x-fleetplane":
                for k, kk, x in mapping(v, f"service {name!r}: x-fleetplane"):
                    if k not in SERVICE_FIELDS:
                        raise SourceError(path, line(kk), f"x-fleetplane: unknown key {k!r}")
                    val = yaml.safe_load(yaml.serialize(x))
                    if not _type_ok(val, SERVICE_FIELDS[k]):
                        raise SourceError(path, line(kk), f"x-fleetplane: {k} has the wrong type")
                    fields[k] = tuple(val) if isinstance(val, list) else (float(val) if k == "start_time" else val)
        g.add_service(Service(name, where=f"{path}:{line(kn)}", **fields))
        for d in sdeps:
            if d.on == name:
                raise SourceError(path, int(d.where.rsplit(":", 1)[1]), f"service {name!r} depends on itself")
        deps.extend(sdeps)
    for d in deps:
        if d.on not in g.services:
            raise SourceError(path, int(d.where.rsplit(":", 1)[1]),
                              f"service {d.service!r} depends on {d.on!r}, which is not a service of this file")
        g.add_dependency(d)
    return g


def _looks_like_compose(path: Path) -> bool:
    n = path.name.lower()
    if n.startswith(("compose", "docker-compose")) or path.suffix in (".yml", ".yaml"):
        return True
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        svc = data.get("services") if isinstance(data, dict) else None
        return isinstance(svc, dict) and any(isinstance(s, dict) and ("image" in s or "depends_on" in s
                                                                      or "build" in s) for s in svc.values())
    return False


def _is_topology(path: Path) -> bool:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return isinstance(data.get("nodes"), list) and "services" not in data


def load_topology_graph(path: Path) -> DepGraph:
    """The graph a topology's ``deps.agent`` actors will report (e.g. topologies/coldstart.toml)."""
    from topologies.deps.coldstart import graph_of_topology
    from topologies.loader import TopologyError, load_topology

    try:
        topo = load_topology(path)
    except TopologyError as e:
        p = e.problems[0] if e.problems else None
        raise SourceError(path, (p.line or 1) if p else 1, f"{p.key or '<file>'}: {p.message}" if p else str(e)) \
            from None
    g = graph_of_topology(topo)
    if not g.services:
        raise SourceError(path, 1, "a topology without deps.agent actors: no services to plan")
    return g


def load(source: str | Path) -> tuple[DepGraph, str]:
    """``(graph, what it was read as)``: 'systemd', 'compose' or 'dependency file'."""
    path = Path(source)
    if not path.exists():
        raise SourceError(path, 0, "no such file or directory")
    if path.is_dir():
        return load_systemd(path), "systemd"
    if _looks_like_compose(path):
        return load_compose(path), "compose"
    if path.suffix == ".toml" and _is_topology(path):
        return load_topology_graph(path), "topology"
    if path.suffix in (".toml", ".json"):
        return load_depfile(path), "dependency file"
    raise SourceError(path, 0, "not a dependency file (.toml/.json), a compose file (.yml/.yaml) or a directory "
                               "of systemd units")
