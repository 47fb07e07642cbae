"""Measured metrics in a topology run (issue 16, deliverable 4).

``fleetplane run topologies/boot_storm.toml`` used to have no resource behind its controllers: no host ever
reported, so ``adaptive = true`` never moved the limit. Now the storm pulls from simulated stores of finite
bandwidth (``workflow.store``) that report their measured load; a store slower than the limit makes the
controller find its capacity, and without admission control the same store collapses.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from actors.eventlog import read_events
from protocols.core import Send, SetTimer, TimerFired
from protocols.workflow import ResourceReport, StageDone, StageFailed
from topologies.launcher import run_sim
from topologies.loader import load_topology
from topologies.workflow.hosts import BootHost
from topologies.workflow.store import SharedStore, Transfer, TransferAbort

BOOT_STORM = Path(__file__).resolve().parent.parent / "topologies" / "boot_storm.toml"


def _variant(tmp_path: Path, *, capacity: int, limit: int, adaptive: bool) -> Path:
    text = BOOT_STORM.read_text()
    text = text.replace("capacity = 50,", f"capacity = {capacity},")
    text = text.replace("limit = 50,", f"limit = {limit}, adaptive = {str(adaptive).lower()},")
    f = tmp_path / "storm.toml"
    f.write_text(text)
    return f


@pytest.mark.parametrize("seed", (1,))
def test_an_adaptive_controller_finds_a_slower_stores_capacity(tmp_path, seed):
    topo = load_topology(_variant(tmp_path, capacity=30, limit=50, adaptive=True))
    result = run_sim(topo, tmp_path / "run", seed, quiet=True)
    assert result.ok and result.progress == 1000, f"seed={seed}: {result.summary()}"
    events = read_events(tmp_path / "run" / "events.jsonl")
    changes = [e for e in events if e["kind"] == "limit.changed" and e["actor"] == "images"]
    assert changes and changes[0]["fields"]["reason"] in ("bandwidth", "latency"), f"seed={seed}: {changes[:3]}"
    final = changes[-1]["fields"]["new"]
    assert 27 <= final <= 32, f"seed={seed}: the images limit ended at {final} for a store of 30"
    timeouts = [e for e in events if e["kind"] == "store.timeout"]
    assert not timeouts, f"seed={seed}: {len(timeouts)} transfers timed out under admission control"


def test_without_admission_control_the_same_store_collapses(tmp_path):
    """The baseline: no limit to speak of (1,000, fixed): 1,000 transfers at once on a store of 30 time out."""
    topo = load_topology(_variant(tmp_path, capacity=30, limit=1000, adaptive=False))
    run_sim(topo, tmp_path / "run", 1, quiet=True, duration=20.0)
    events = read_events(tmp_path / "run" / "events.jsonl")
    timeouts = [e for e in events if e["kind"] == "store.timeout"]
    failed = [e for e in events if e["kind"] == "server.stage" and e["fields"]["outcome"] != "ok"]
    assert len(timeouts) > 100 and len(failed) > 100, (len(timeouts), len(failed))


# -- the store, unit by unit -----------------------------------------------------------------------------------


def _sends(fx, cls):
    return [e for e in fx if isinstance(e, Send) and isinstance(e.msg, cls)]


def test_the_store_shares_its_bandwidth_and_answers_the_server():
    st = SharedStore("images", "ctl/images", capacity=1, timeout_factor=10.0, report_every=1.0)
    st.tick(0.0)
    st.handle(Transfer("s1/server", 1, "image", 2.0), "s1/server", 0.0)
    fx = st.handle(Transfer("s2/server", 1, "image", 2.0), "s2/server", 0.0)
    nxt = [e for e in fx if isinstance(e, SetTimer) and e.key == "next"][-1]
    assert nxt.at == pytest.approx(4.0)  # two clients on a store of one: each at half speed
    fx = st.handle(TimerFired("next"), "store/images", 4.0)
    assert sorted(e.to for e in _sends(fx, StageDone)) == ["s1/server", "s2/server"]


def test_the_store_times_out_transfers_past_their_deadline_and_reports_its_load():
    st = SharedStore("images", "ctl/images", capacity=1, timeout_factor=2.0, report_every=1.0)
    st.tick(0.0)
    for i in range(3):  # three clients on a store of one: each at a third of full speed
        st.handle(Transfer(f"s{i}/server", 1, "image", 1.0), f"s{i}/server", 0.0)
    fx = st.handle(TimerFired("report"), "store/images", 1.0)
    (rep,) = _sends(fx, ResourceReport)
    assert (rep.msg.in_flight, rep.msg.bandwidth_used, rep.msg.latency) == (3, 3.0, 3.0)
    fx = st.handle(TimerFired("next"), "store/images", 2.0)
    assert len(_sends(fx, StageFailed)) == 3 and st.timed_out == 3
    fx = st.handle(TimerFired("report"), "store/images", 2.0)
    assert _sends(fx, ResourceReport)[0].msg.error_rate == 0.0  # no transfer started in that report's window


def test_an_abort_ends_the_transfer_and_bad_transfers_are_refused():
    st = SharedStore("images", "ctl/images", capacity=2, max_flows=1)
    st.tick(0.0)
    st.handle(Transfer("s1/server", 1, "image", 5.0), "s1/server", 0.0)
    fx = st.handle(Transfer("s2/server", 1, "image", 5.0), "s2/server", 0.0)
    assert _sends(fx, StageFailed) and st.flows.keys() == {("s1/server", 1)}
    st.handle(TransferAbort("s1/server", 1), "s1/server", 1.0)
    assert not st.flows and st.aborted == 1
    fx = st.handle(Transfer("s3/server", 1, "image", -1.0), "s3/server", 1.0)
    assert _sends(fx, StageFailed)


def test_boot_host_stores_param_is_checked():
    with pytest.raises(ValueError):
        BootHost(random.Random(1), stores={"images": "no-slash"})
