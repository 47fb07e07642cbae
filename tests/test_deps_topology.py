"""topologies/coldstart.toml as real processes (slow tier): an asset killed mid-start.

The chaos harness starts the manager and the seven assets' agents as eight OS processes on
127.0.0.1 (as ``fleetplane run`` does) and, under the ``kill`` nemesis, SIGKILLs the storage
asset's process while its services start and restarts it as a new incarnation; the manager
starts its services again. Every service must come up, every start after its hard
dependencies (or a bootstrap start the plan named). One test: a plain real run adds ~30 s
and nothing this one does not show. The launcher stops every process it started, by PID.
"""

from __future__ import annotations

from pathlib import Path

from actors.eventlog import read_events
from topologies.chaos import run_chaos
from topologies.loader import load_topology

ROOT = Path(__file__).resolve().parents[1]
TOPO = ROOT / "topologies" / "coldstart.toml"


def statuses(verdicts: list[dict]) -> dict[str, str]:
    return {v["checker"]: v["status"] for v in verdicts}


def test_an_asset_killed_mid_start_as_real_processes(tmp_path):
    topo = load_topology(TOPO)
    result = run_chaos(topo, tmp_path, seed=1, nemesis="kill", overrides={"target": "r1-stor", "start": 3.0,
                                                                          "duration": 2.0}, quiet=True)
    assert result.ok and not result.run.reason.startswith("failed"), (result.run.summary(), result.verdicts)
    v = statuses(result.verdicts)
    assert v["deps-start-order"] == "valid" and v["deps-all-up"] == "valid" and v["fresh-incarnations"] == "valid", v
    events = read_events(tmp_path / "events.jsonl")
    kill = next(e["time"] for e in events if e["kind"] == "nemesis.kill")
    assert any(e["kind"] == "deps.asset_restarted" and e["fields"]["asset"] == "r1-stor" and e["time"] > kill
               for e in events), "the manager saw the storage asset come back as a new incarnation"
    boots = sorted(e["fields"]["service"] for e in events if e["kind"] == "deps.launch"
                   and e["fields"]["mode"] == "bootstrap")
    assert boots[:1] == ["dns"] and "metadata-db" in boots
    assert "Dependency startup" in (tmp_path / "report.html").read_text()
