"""The house rules of the layer table (DESIGN.md), as tests that can fail.

* ``protocols/`` is sans-I/O: no zmq, pykka, threading, socket, asyncio, time,
  loguru, select, subprocess, multiprocessing; no ``actors``; of ``transport``
  only ``transport.codec``; no module-level ``random.<fn>(...)`` (an injected
  ``random.Random(seed)`` is the only randomness).
* ``transport/`` never imports ``actors``, ``protocols``, ``pykka`` or ``topologies``.
* ``actors/`` never imports ``topologies``.
* ``topologies/``: the core imports no plug-in and no protocol but ``protocols.core``;
  a plug-in imports the core, itself and its own protocols (see the section below).

Sources are parsed with ``ast``; every failure lists the offending file:line.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROTOCOL_FORBIDDEN = (
    "zmq", "pykka", "threading", "socket", "asyncio", "time", "loguru",
    "select", "subprocess", "multiprocessing", "actors", "transport",
)
PROTOCOL_ALLOWED = ("transport.codec",)
TRANSPORT_FORBIDDEN = ("actors", "protocols", "pykka", "topologies")
ACTORS_FORBIDDEN = ("topologies",)


# --------------------------------------------------------------------------
# Import and call collection
# --------------------------------------------------------------------------


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(tree: ast.AST, modname: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """Every module a source imports, as (dotted name, line).

    ``from a import b`` yields ``a.b`` (``b`` may be a submodule or a name; either
    way it lies under ``a``), ``from a import *`` yields ``a``;
    relative imports are resolved against ``modname``; ``importlib.import_module``
    and ``__import__`` calls with a constant name count too.
    """
    package = modname if is_package else modname.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".") if package else []
                if node.level > 1:
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                if alias.name == "*":
                    yield base, node.lineno
                else:
                    yield f"{base}.{alias.name}" if base else alias.name, node.lineno
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            f = node.func
            dynamic = (isinstance(f, ast.Name) and f.id in ("__import__", "import_module")) or (
                isinstance(f, ast.Attribute) and f.attr == "import_module"
            )
            if dynamic:
                yield node.args[0].value, node.lineno


def matches(name: str, banned: str) -> bool:
    return name == banned or name.startswith(banned + ".")


def banned_imports(tree: ast.AST, modname: str, is_package: bool, banned: tuple[str, ...],
                   allowed: tuple[str, ...] = ()) -> list[tuple[int, str]]:
    found = []
    for name, line in imports_of(tree, modname, is_package):
        if any(matches(name, a) for a in allowed):
            continue
        for b in banned:
            if matches(name, b):
                found.append((line, name))
                break
    return found


def global_random_uses(tree: ast.AST) -> list[tuple[int, str]]:
    """Uses of the module-level random generator.

    ``random.<fn>`` for any fn but ``Random`` (through any alias of the module),
    and ``from random import <fn>`` for any fn but ``Random``.
    """
    aliases: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "random":
                    aliases.add(alias.asname or "random")
        elif isinstance(node, ast.ImportFrom) and node.module == "random" and not node.level:
            for alias in node.names:
                if alias.name != "Random":
                    found.append((node.lineno, f"from random import {alias.name}"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in aliases and node.attr != "Random":
            found.append((node.lineno, f"{node.value.id}.{node.attr}"))
    return found


# --------------------------------------------------------------------------
# Walking the real packages
# --------------------------------------------------------------------------


def sources(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def scan(package: str, check) -> tuple[int, list[str]]:
    files = sources(package)
    problems = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        modname = module_name(path, ROOT)
        for line, what in check(tree, modname, path.name == "__init__.py"):
            problems.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    return len(files), problems


def report(rule: str, problems: list[str]) -> str:
    return f"{rule} - {len(problems)} offence(s):\n  " + "\n  ".join(problems)


# --------------------------------------------------------------------------
# The rules
# --------------------------------------------------------------------------


def test_protocols_import_no_io_runtime_or_transport_except_codec():
    scanned, problems = scan(
        "protocols", lambda t, m, p: banned_imports(t, m, p, PROTOCOL_FORBIDDEN, PROTOCOL_ALLOWED)
    )
    assert scanned >= 1, "no .py file found under protocols/"
    assert not problems, report("protocols/ imports I/O, runtime or transport modules", problems)


def test_protocols_use_no_global_random():
    scanned, problems = scan("protocols", lambda t, m, p: global_random_uses(t))
    assert scanned >= 1, "no .py file found under protocols/"
    assert not problems, report("protocols/ uses the global random generator (inject random.Random(seed))", problems)


def test_transport_imports_no_actors_protocols_pykka_or_topologies():
    scanned, problems = scan("transport", lambda t, m, p: banned_imports(t, m, p, TRANSPORT_FORBIDDEN))
    assert scanned >= 1, "no .py file found under transport/"
    assert not problems, report("transport/ imports a higher layer", problems)


def test_actors_import_no_topologies():
    scanned, problems = scan("actors", lambda t, m, p: banned_imports(t, m, p, ACTORS_FORBIDDEN))
    assert scanned >= 1, "no .py file found under actors/"
    assert not problems, report("actors/ imports topologies", problems)


# --------------------------------------------------------------------------
# The checkers themselves catch what they should (so the rules cannot pass
# vacuously because of a blind checker)
# --------------------------------------------------------------------------

BAD_PROTOCOL = """\
import time
import zmq.asyncio
from threading import Lock
from actors.node import Node
from transport.base import Envelope
from transport import memory
import transport.sim
import pykka as pk
import importlib
importlib.import_module("socket")
import transport
from transport import *
"""

GOOD_PROTOCOL = """\
import random
from random import Random
from typing import Any
import attrs
from transport.codec import message
from transport import codec
import transport.codec
from . import sibling
from ..core import Send

rng = random.Random(7)
def f(r: random.Random) -> int:
    return r.randint(1, 6)
"""

BAD_RANDOM = """\
import random
import random as rnd
from random import choice

random.seed(1)
x = random.random()
y = rnd.randint(1, 2)
pick = random.choice
random.shuffle([1])
z = choice([1])
"""


def test_import_checker_flags_every_forbidden_form():
    tree = ast.parse(BAD_PROTOCOL)
    found = banned_imports(tree, "protocols.workflow.machine", False, PROTOCOL_FORBIDDEN, PROTOCOL_ALLOWED)
    assert sorted({line for line, _ in found}) == [1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12], found


def test_import_checker_allows_codec_stdlib_and_siblings():
    tree = ast.parse(GOOD_PROTOCOL)
    assert banned_imports(tree, "protocols.workflow.machine", False, PROTOCOL_FORBIDDEN, PROTOCOL_ALLOWED) == []
    assert global_random_uses(tree) == []


def test_random_checker_flags_module_level_generator():
    found = global_random_uses(ast.parse(BAD_RANDOM))
    assert sorted({line for line, _ in found}) == [3, 5, 6, 7, 8, 9], found


def test_relative_imports_are_resolved():
    tree = ast.parse("from ..actors import node\nfrom . import codec\n")
    names = {n for n, _ in imports_of(tree, "transport.sub.mod", False)}
    assert "transport.actors.node" in names and "transport.sub.codec" in names
    names = {n for n, _ in imports_of(ast.parse("from .. import topologies\n"), "actors.x.y", False)}
    assert "actors.topologies" in names  # resolves inside the package, not to top-level topologies


@pytest.mark.parametrize("package", ["protocols", "transport", "actors"])
def test_package_directories_exist_and_hold_sources(package):
    assert (ROOT / package / "__init__.py").is_file()
    assert sources(package)


# --------------------------------------------------------------------------
# topologies/: a core that knows no protocol, one plug-in folder per protocol
# --------------------------------------------------------------------------
#
# * core modules (``topologies/*.py``) import no plug-in (``topologies.<plugin>``)
#   and no protocol but the sans-I/O contract ``protocols.core``;
# * a plug-in (``topologies/<plugin>/``) imports the core, itself, ``protocols.core``
#   and the protocol packages its ``PLUGIN.protocols`` names - no other plug-in,
#   no other protocol;
# * every folder under ``topologies/`` is a listed plug-in and every listed
#   plug-in is a folder (``topologies/plugins.py`` is the one list).


def _plugin_names() -> tuple[str, ...]:
    from topologies.plugins import PLUGINS
    return PLUGINS


def core_offences(tree: ast.AST, modname: str, is_package: bool, plugins: tuple[str, ...]) -> list[tuple[int, str]]:
    found = []
    for name, line in imports_of(tree, modname, is_package):
        if any(matches(name, f"topologies.{p}") for p in plugins):
            found.append((line, f"imports plug-in {name}"))
        elif matches(name, "protocols") and not matches(name, "protocols.core") and name != "protocols":
            found.append((line, f"imports protocol {name}"))
    return found


def plugin_offences(tree: ast.AST, modname: str, is_package: bool, plugin: str, plugins: tuple[str, ...],
                    allowed_protocols: tuple[str, ...]) -> list[tuple[int, str]]:
    found = []
    for name, line in imports_of(tree, modname, is_package):
        other = next((p for p in plugins if p != plugin and matches(name, f"topologies.{p}")), None)
        if other is not None:
            found.append((line, f"plug-in {plugin!r} imports plug-in {other!r} ({name})"))
        elif matches(name, "protocols") and name != "protocols" and not matches(name, "protocols.core") \
                and not any(matches(name, a) for a in allowed_protocols):
            found.append((line, f"plug-in {plugin!r} imports {name}, not one of its protocols {list(allowed_protocols)}"))
    return found


def test_plugin_list_and_plugin_folders_agree():
    plugins = set(_plugin_names())
    folders = {p.name for p in (ROOT / "topologies").iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert folders == plugins, f"folders {sorted(folders)} vs topologies/plugins.py {sorted(plugins)}"
    assert len(plugins) >= 4


def test_topologies_core_imports_no_plugin_and_no_protocol():
    plugins = _plugin_names()
    core = [p for p in sources("topologies") if p.parent == ROOT / "topologies"]
    assert len(core) >= 10, "the core modules were not found"
    problems = []
    for path in core:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, what in core_offences(tree, module_name(path, ROOT), path.name == "__init__.py", plugins):
            problems.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    assert not problems, report("the topologies core names a plug-in or a protocol", problems)


def test_plugins_import_the_core_themselves_and_their_own_protocols_only():
    from topologies.plugin import load_plugins

    loaded = load_plugins()
    plugins = _plugin_names()
    problems, scanned = [], 0
    for plugin in plugins:
        allowed = loaded[plugin].protocols
        assert allowed and all(a.startswith("protocols.") for a in allowed), (plugin, allowed)
        for path in sources(f"topologies/{plugin}"):
            scanned += 1
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for line, what in plugin_offences(tree, module_name(path, ROOT), path.name == "__init__.py", plugin,
                                              plugins, allowed):
                problems.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    assert scanned >= len(plugins)
    assert not problems, report("a plug-in imports another plug-in or a foreign protocol", problems)


def test_layering_rules_flag_what_they_should():
    plugins = ("workflow", "rack")
    bad_core = "import topologies.rack.checks\nfrom topologies.workflow import hosts\nfrom protocols.rack import RackMonitor\n" \
               "import importlib\nimportlib.import_module('topologies.rack')\nfrom . import workflow\n"
    found = core_offences(ast.parse(bad_core), "topologies.report", False, plugins)
    assert sorted({line for line, _ in found}) == [1, 2, 3, 5, 6], found
    good_core = "from topologies.kinds import KINDS\nfrom protocols.core import Persist\nfrom topologies import plugins\n"
    assert core_offences(ast.parse(good_core), "topologies.launcher", False, plugins) == []
    bad_plugin = "from topologies.rack.checks import Reach\nfrom protocols.localplane import EdgeNode\n" \
                 "from ..rack import report\n"
    found = plugin_offences(ast.parse(bad_plugin), "topologies.workflow.checks", False, "workflow", plugins,
                            ("protocols.workflow",))
    assert sorted({line for line, _ in found}) == [1, 2, 3], found
    good_plugin = "from topologies.checkers import Verdict\nfrom protocols.workflow.server import Server\n" \
                  "from . import hosts\nfrom protocols.core import Persist\n"
    assert plugin_offences(ast.parse(good_plugin), "topologies.workflow.checks", False, "workflow", plugins,
                           ("protocols.workflow",)) == []
