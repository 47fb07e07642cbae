"""The house rules of the layer table (DESIGN.md), as tests that can fail.

* ``protocols/`` is sans-I/O: no zmq, pykka, threading, socket, asyncio, time,
  loguru, select, subprocess, multiprocessing; no ``actors``; of ``transport``
  only ``transport.codec``; no module-level ``random.<fn>(...)`` (an injected
  ``random.Random(seed)`` is the only randomness).
* ``transport/`` never imports ``actors``, ``protocols``, ``pykka`` or ``topologies``.
* ``actors/`` never imports ``topologies``.

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
