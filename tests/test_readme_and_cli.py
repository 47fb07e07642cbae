"""The README's promises: its commands are well-formed, its code runs when pasted,
and the demo command exits 0 after finishing both runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _command_after(marker: str) -> str:
    m = re.search(rf"<!-- {marker} -->\s*```sh\n(.+?)\n```", README)
    assert m, f"README has no ```sh block after <!-- {marker} -->"
    return m.group(1)


def test_readme_has_the_two_commands():
    run = _command_after("run-command")
    test = _command_after("test-command")
    assert "pip install" in run and "fleetplane run topologies/boot_storm.toml" in run
    assert "pip install" in test and "'.[test]'" in test and "pytest" in test


def test_ci_runs_exactly_the_readme_test_command():
    out = subprocess.run(
        ["awk", r'/<!-- test-command -->/{found=1; next} found && /^```/{if (inblock) exit; inblock=1; next} inblock{print; exit}',
         str(ROOT / "README.md")], capture_output=True, text=True, check=True).stdout.strip()
    assert out == _command_after("test-command")
    assert "awk '/<!-- test-command -->/" in (ROOT / ".ci" / "run").read_text()


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.+?)```", README, flags=re.S)


def test_readme_embedding_examples_run_when_pasted(tmp_path):
    blocks = _python_blocks()
    assert len(blocks) >= 3
    outputs = []
    for i, code in enumerate(blocks):
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"README python block {i} failed:\n{code}\n--- stderr ---\n{proc.stderr[-2000:]}"
        outputs.append(proc.stdout)
    assert "hello, world" in outputs[0]
    assert "pingpong.done" in outputs[1]
    assert "OVER TCP" in outputs[2]


def test_demo_exits_zero_and_leaves_event_logs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "topologies.cli", "demo", "--rounds", "5", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "demo OK" in proc.stdout and "identical" in proc.stdout
    (run_dir,) = tmp_path.iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["ok"] and summary["real"]["finished"] and summary["sim"]["finished"]
    real_kinds = [json.loads(line)["kind"] for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert real_kinds.count("pingpong.done") == 2 and real_kinds.count("pingpong.round") == 10
    sim_lines = (run_dir / "sim-events.jsonl").read_text().splitlines()
    assert sum(json.loads(line)["kind"] == "pingpong.done" for line in sim_lines) == 2


def test_cli_rejects_bad_arguments_clearly(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "topologies.cli", "demo", "--rounds", "zero", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert "expected a whole number" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_keys_generate_prints_key_tables_a_topology_accepts(tmp_path):
    from topologies.loader import parse_topology

    proc = subprocess.run([sys.executable, "-m", "topologies.cli", "keys", "generate", "--topology",
                           str(ROOT / "topologies" / "pingpong.toml")], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    topo = parse_topology((ROOT / "topologies" / "pingpong.toml").read_text() + "\n" + proc.stdout)
    assert sorted(topo.keys) == ["alpha", "beta", "gamma"]
    assert len({k["public"] for k in topo.keys.values()}) == 3 and all(len(k["secret"]) == 40 for k in topo.keys.values())
    proc = subprocess.run([sys.executable, "-m", "topologies.cli", "keys", "generate"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 2 and "name the nodes" in proc.stderr


def test_runs_prune_keeps_the_newest_run_directories(tmp_path):
    import os

    for i in range(4):
        d = tmp_path / f"pingpong-sim-{i}"
        d.mkdir()
        (d / "summary.json").write_text("{}")
        os.utime(d, (1000 + i, 1000 + i))
    (tmp_path / "notes").mkdir()  # not a run directory: never touched
    proc = subprocess.run([sys.executable, "-m", "topologies.cli", "runs", "prune", "--keep", "1", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "pingpong-sim-3"]
    assert "3 removed" in proc.stdout


def test_version_and_exit_codes_in_help():
    proc = subprocess.run([sys.executable, "-m", "topologies.cli", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("fleetplane ")
    proc = subprocess.run([sys.executable, "-m", "topologies.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert "130 interrupted" in proc.stdout and "2 usage or configuration error" in proc.stdout
