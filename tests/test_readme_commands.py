"""Every command the README shows runs as shown, exits as the README implies, and prints what it shows.

The commands come from README.md itself: each line of a ```sh block (a trailing
``# comment`` is the README's explanation, not part of the command) and each
``$ command`` line of a ```text block, whose following lines are the output the
README promises. The two set-up commands (after ``<!-- run-command -->`` and
``<!-- test-command -->``) are left to CI, which runs the second; the first one's
``fleetplane run topologies/boot_storm.toml`` is shown (and run here) in a text
block too. ``fleetplane`` is ``python -m topologies.cli`` and ``python`` is this
interpreter (the README runs them inside the project's virtualenv). Each command
runs in a scratch directory whose ``topologies`` and ``tests`` point at the
repository, so ``runs/`` lands in the scratch directory; a command that
redirects into a repository file (``> topologies/racks.toml``) has its output
compared with that file instead of overwriting it.

Promised output lines are matched with every number free (run times, counts
and ids differ from run to run) and whitespace collapsed; ``...`` lines are the
README's elisions. A command whose shown output ends in ``OK`` (or that shows no
output) must exit 0.

These run real processes and whole chaos runs (several minutes in all): the
``slow`` tier.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")

pytestmark = pytest.mark.slow


def readme_commands(text: str = README) -> list[tuple[str, list[str]]]:
    """(command, promised output lines) for every command in the README's sh and text blocks."""
    out: list[tuple[str, list[str]]] = []
    for m in re.finditer(r"(<!-- (?:run|test)-command -->\s*)?```(sh|text)\n(.*?)```", text, flags=re.S):
        if m.group(1):
            continue  # the two set-up commands: CI's business
        body = m.group(3)
        if m.group(2) == "sh":
            for line in body.splitlines():
                cmd = _strip_comment(line).strip()
                if cmd:
                    out.append((cmd, []))
        else:
            current: list | None = None
            for line in body.splitlines():
                if line.startswith("$ "):
                    current = []
                    out.append((_strip_comment(line[2:]).strip(), current))
                elif current is not None and line.strip():
                    current.append(line)
    return out


def _strip_comment(line: str) -> str:
    """Drop a trailing ``# comment`` (a ``#`` after whitespace, outside quotes)."""
    quote = None
    for k, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (k == 0 or line[k - 1].isspace()):
            return line[:k]
    return line


def line_pattern(shown: str) -> re.Pattern:
    """A README output line as a regex: every number free, whitespace collapsed."""
    tokens = []
    for word in shown.split():
        pieces = re.split(r"(\d+(?:\.\d+)?)", word)
        tokens.append("".join(r"-?\d+(?:\.\d+)?" if i % 2 else re.escape(x) for i, x in enumerate(pieces)))
    return re.compile(r"\s+".join(tokens))


def _argv(cmd: str) -> tuple[list[str], str | None]:
    words = shlex.split(cmd)
    target = None
    if ">" in words:
        i = words.index(">")
        target, words = words[i + 1], words[:i]
    if words[0] == "fleetplane":
        words = [sys.executable, "-m", "topologies.cli", *words[1:]]
    elif words[0] in ("python", "python3"):
        words = [sys.executable, *words[1:]]
    return words, target


COMMANDS = readme_commands()


def test_the_readme_commands_are_found():
    cmds = [c for c, _ in COMMANDS]
    assert len(cmds) >= 15, cmds
    assert any(c.startswith("fleetplane chaos topologies/pingpong.toml --nemesis majority") for c in cmds)
    assert any(c.startswith("python tests/bench/") for c in cmds)
    assert all(c.split()[0] in ("fleetplane", "python") for c in cmds), cmds
    print("README commands:\n  " + "\n  ".join(cmds))


def test_line_patterns_ignore_numbers_but_not_words():
    p = line_pattern("  VALID    admission-limit (must judge): 2000 grants, peak 50 holders")
    assert p.search("  VALID    admission-limit (must judge): 1998 grants, peak 49 holders")
    assert not p.search("  INVALID  admission-limit (must judge): 1998 grants, peak 49 holders".replace("INVALID", "UNKNOWN"))
    assert line_pattern("chaos OK").search("chaos OK") and not line_pattern("chaos OK").search("chaos FAILED")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("cmd, shown", COMMANDS, ids=[c for c, _ in COMMANDS])
def test_readme_command_runs_as_shown(cmd, shown, tmp_path):
    for name in ("topologies", "tests"):
        (tmp_path / name).symlink_to(ROOT / name)
    argv, target = _argv(cmd)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=540, env=env)
    took = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    print(f"$ {cmd}\n  exit {proc.returncode} after {took:.1f} s")
    expect_ok = not shown or shown[-1].strip().endswith("OK")
    if expect_ok:
        assert proc.returncode == 0, f"{cmd}: exit {proc.returncode}\n{out[-4000:]}"
    if target is not None:
        assert proc.stdout == (ROOT / target).read_text(), f"{cmd}: the output differs from {target}"
    missing = [s for s in shown if s.strip() != "..." and not line_pattern(s).search(out)]
    assert not missing, f"{cmd}: lines the README shows are missing from the output: {missing}\n--- output ---\n{out[-4000:]}"
