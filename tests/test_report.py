"""The report names its run and its faults, shares one time axis, shows evidence and recovery (issue 15,
"Visible faults").

Every test writes a run directory by hand (events.jsonl, and as needed summary.json, schedule.json,
topology.json) in tmp_path and calls ``make_report``: no process is started, nothing sleeps.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from topologies.report import FAULT_STYLES, describe_ops, make_report, recovery

T0 = 1000.0  # a real run's clock: the report counts from the first event


def ev(t: float, kind: str, node: str = "a", actor: str = "x", fields: dict | None = None, **more) -> dict:
    return {"time": T0 + t, "node": node, "actor": actor, "kind": kind, "fields": {**(fields or {}), **more}}


def write_run(d: Path, events: list[dict], *, summary: dict | None = None, schedule: list | None = None,
              topology: dict | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in sorted(events, key=lambda e: e["time"])))
    for name, data in (("summary.json", summary), ("schedule.json", schedule), ("topology.json", topology)):
        if data is not None:
            (d / name).write_text(json.dumps(data))
    return d


def topology(progress: str = "work.done", kinds: tuple[str, ...] = ("pingpong.pinger",), **run) -> dict:
    return {"name": "demo", "run": {"progress": progress, **run},
            "nodes": [{"name": "a", "actors": [{"name": f"x{i}", "kind": k} for i, k in enumerate(kinds)]}]}


def grudge(t: float, target: str = "ctl", others: tuple[str, ...] = ("a", "b")) -> dict:
    blocked = [[target, o] for o in others] + [[o, target] for o in others]
    return ev(t, "nemesis.grudge", "chaos", "nemesis", op="grudge", label=f"one: {target} isolated", blocked=blocked)


def heal(t: float) -> dict:
    return ev(t, "nemesis.heal", "chaos", "nemesis", op="heal")


def progress_at(times) -> list[dict]:
    return [ev(t, "work.done") for t in times]


def steady(a: float, b: float, step: float = 0.02) -> list[float]:
    return [round(a + i * step, 6) for i in range(int(round((b - a) / step)))]


def page(d: Path) -> str:
    return (d / "report.html").read_text(encoding="utf-8")


# -- the header --------------------------------------------------------------------------------------


def test_the_header_names_the_run_the_nemesis_its_seed_and_each_fault_op_in_words(tmp_path):
    events = [ev(0, "node.started"), grudge(1.7), heal(3.7), *progress_at(steady(0, 6, 0.1)), ev(6.0, "node.stopped")]
    schedule = [{"time": 1.0, "op": "grudge", "label": "one: ctl isolated", "blocked": [["ctl", "a"], ["a", "ctl"]]},
                {"time": 3.0, "op": "heal"}]
    summary = {"topology": "demo", "mode": "real", "reason": "done",
               "chaos": {"nemesis": "one", "seed": 7, "ops": 2}}
    write_run(tmp_path, events, summary=summary, schedule=schedule, topology=topology())
    results = make_report(tmp_path)
    html = page(tmp_path)
    assert "topology demo, real processes" in html
    assert "nemesis one, seed 7" in html
    # times on the charts' axis (from the first event), from the log's nemesis events; the schedule's own
    # times count from the run's start (a real run starts once its nodes are up)
    assert "<b>1.70 s</b> (planned 1.00 s after the start) grudge (one): ctl cut off from everyone, both ways" in html
    assert "<b>3.70 s</b> (planned 3.00 s after the start) heal: every node reaches every other again" in html
    assert [(o["at"], o["op"], o["scheduled"]) for o in results["fault_ops"]] == [(1.7, "grudge", 1.0),
                                                                                  (3.7, "heal", 3.0)]
    assert results["availability"]["fault_periods"][0]["label"] == "one: ctl cut off from everyone, both ways"


def test_a_plain_run_says_it_had_no_faults(tmp_path):
    write_run(tmp_path, progress_at(steady(0, 2, 0.1)), summary={"topology": "demo", "mode": "sim", "seed": 3},
              topology=topology())
    results = make_report(tmp_path)
    html = page(tmp_path)
    assert "<b>Faults</b>: none - a plain run, no nemesis." in html and "simulator" in html and "seed 3" in html
    assert results["fault_ops"] == [] and results["availability"]["fault_periods"] == []
    assert "faults:" not in html, "no fault legend without faults"


def test_flaky_link_faults_read_as_one_fault_with_the_ops_fields(tmp_path):
    links = [ev(1.0 + i * 0.001, "nemesis.link_fault", "chaos", "nemesis", op="link_fault", src=s, dst=d, loss=0.5,
                delay=0.0, jitter=0.0, duplicate=0.0, reorder=0.0)
             for i, (s, d) in enumerate([("mgr", "e1"), ("e1", "mgr"), ("mgr", "e2"), ("e2", "mgr")])]
    events = [ev(0, "node.started"), *links, ev(3.0, "nemesis.clear_link_faults", "chaos", "nemesis",
                                                  op="clear_link_faults"), ev(5.0, "node.stopped")]
    write_run(tmp_path, events, summary={"topology": "edge", "mode": "real"}, topology=topology())
    results = make_report(tmp_path)
    (period,) = results["availability"]["fault_periods"]
    assert period["kind"] == "link_fault" and period["label"] == "flaky: mgr links, loss 0.5"
    assert period["end"] - period["start"] == pytest.approx(2.0)
    html = page(tmp_path)
    assert "link faults (flaky): mgr links, loss 0.5 (4 links)" in html
    assert "nemesis flaky (read from the fault ops)" in html, "no summary chaos entry: named from the ops"
    assert "link_fault: link_fault" not in html


@pytest.mark.parametrize("ops, words", [
    ([{"op": "grudge", "label": "majority: a,b,c | d,e"}], ("grudge", "majority", "{a,b,c} and {d,e} cannot reach each other")),
    ([{"op": "grudge", "label": "bridge: a,b | c | d,e"}], ("grudge", "bridge", "{a,b} and {d,e} cut apart, only c reaches both")),
    ([{"op": "grudge", "label": "asymmetric: c cannot send"}], ("grudge", "asymmetric", "c cannot send to anyone (it still receives)")),
    ([{"op": "grudge", "blocked": [["a", "b"]]}], ("grudge", "grudge", "1 directed links blocked among a,b")),
    ([{"op": "kill", "node": "beta"}], ("kill", "kill", "beta killed (its actors' state is lost)")),
    ([{"op": "resume", "node": "beta"}], ("resume", "resume", "beta runs again")),
    ([{"op": "link_fault", "src": a, "dst": b, "delay": 0.2, "jitter": 0.1} for a, b in (("a", "b"), ("b", "a"))],
     ("link faults", "slow", "all links among 2 nodes, delay 0.2 s + up to 0.1 s jitter")),
])
def test_fault_ops_in_words(ops, words):
    assert describe_ops(ops) == words


def test_fault_periods_kill_until_restart_a_replaced_grudge_and_a_fault_never_healed(tmp_path):
    events = [ev(0, "node.started"),
              ev(1.0, "nemesis.kill", "chaos", "nemesis", {"op": "kill", "node": "beta"}),
              ev(2.0, "nemesis.restart", "chaos", "nemesis", {"op": "restart", "node": "beta"}),
              grudge(3.0, "a", ("b",)), grudge(4.0, "b", ("a",)), heal(5.0),
              ev(6.0, "nemesis.pause", "chaos", "nemesis", {"op": "pause", "node": "gamma"}), ev(8.0, "node.stopped")]
    write_run(tmp_path, events, summary={"topology": "demo", "mode": "sim"}, topology=topology())
    results = make_report(tmp_path)
    got = [(p["kind"], p["start"] - T0, p["end"] - T0, p["healed"], p["recovery"])
           for p in results["availability"]["fault_periods"]]
    assert got == [("kill", 1.0, 2.0, True, "not measured: too little progress outside the faults (under 10 events)"),
                   ("grudge", 3.0, 4.0, True, "replaced by the next grudge, not healed"),
                   ("grudge", 4.0, 5.0, True, "not measured: too little progress outside the faults (under 10 events)"),
                   ("pause", 6.0, 8.0, False, "still in force when the run ended")]
    html = page(tmp_path)
    for name in ("node killed", "partition", "node paused"):
        assert f">{name}</text>" in html, "each fault kind in the legend"
    assert "8.000 (never healed)" in html


# -- evidence ------------------------------------------------------------------------------------------


def test_an_invalid_verdict_shows_its_evidence_escaped(tmp_path):
    evil = "<script>alert('x')</script>"
    events = [grudge(0.0, "b", ("a",)),
              ev(0.5, "net.send", "a", "x", src="a/x", dst="b/y", tag=evil, copies=1),
              ev(0.6, "net.deliver", "b", "y", src="a/x", dst="b/y", tag=evil)]
    write_run(tmp_path, events, summary={"topology": "demo", "mode": "sim"}, topology=topology())
    results = make_report(tmp_path, checkers=["no-delivery-across-partition"])
    assert not results["valid"]
    html = page(tmp_path)
    assert "<script" not in html, "nothing from an event reaches the page unescaped"
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "INVALID: no-delivery-across-partition" in html
    section = html.split('id="evidence-no-delivery-across-partition"', 1)[1]
    row = re.search(r"<tr><td>0\.600</td><td>b/y</td><td>net\.deliver</td><td><code>([^<]*)</code></td></tr>", section)
    assert row and "src=a/x, dst=b/y, tag=&lt;script&gt;" in row.group(1)
    assert "more in results.json" not in section


def test_evidence_items_with_a_why_and_two_events_are_shown_and_capped_at_20_rows(tmp_path):
    # 21 leaders of term 1, every two of them elected by overlapping electorates: more violations than rows
    leaders = [ev(1.0 + i * 0.01, "plane.leader", f"n{i}", "plane", term=1, voters=["v1", "v2"]) for i in range(21)]
    write_run(tmp_path, [ev(0, "node.started"), *leaders], summary={"topology": "edge", "mode": "sim"},
              topology=topology(kinds=("localplane.edge",)))
    results = make_report(tmp_path, checkers=["one-leader-per-island-term"])
    (verdict,) = results["verdicts"]
    assert verdict["status"] == "invalid" and len(verdict["evidence"]) == 20
    section = page(tmp_path).split('id="evidence-one-leader-per-island-term"', 1)[1].split("</table>", 1)[0]
    assert "term 1: leaders n0 and n1 elected by overlapping electorates; term=1" in section
    assert "<td>a: 1.000</td><td>n0/plane</td><td>plane.leader</td>" in section
    assert "<td>b: 1.010</td><td>n1/plane</td><td>plane.leader</td>" in section
    rows = section.count("<tr") - 1  # the header row
    # each item is 3 rows (the why, event a, event b): 6 items fit in 20 rows, 14 are left out
    assert rows == 6 * 3 + 1 and "14 more in results.json" in section


# -- recovery after a fault ------------------------------------------------------------------------------


def test_recovery_measures_a_stall_after_the_heal():
    progress = steady(0, 2) + steady(10, 14)  # nothing during the fault (2-4 s), nor for 6 s after its heal
    periods = [{"start": 2.0, "end": 4.0, "kind": "grudge", "label": "x", "healed": True}]
    (r,) = recovery(progress, periods, t1=14.0, done=True)
    assert r["recovery_s"] == pytest.approx(6.0) and r["recovered_at"] == pytest.approx(10.0)


def test_recovery_is_immediate_when_progress_goes_on_after_the_heal():
    progress = steady(0, 2) + steady(4, 8)
    periods = [{"start": 2.0, "end": 4.0, "kind": "grudge", "label": "x", "healed": True}]
    (r,) = recovery(progress, periods, t1=8.0)
    assert r["recovery_s"] == pytest.approx(0.0)


def test_a_trickle_after_the_heal_is_not_a_recovery():
    # one event a second after the heal (a 50th of the healthy rate), then the healthy rate from 9 s
    progress = steady(0, 2) + [4.5, 5.5, 6.5, 7.5, 8.5] + steady(9, 12)
    periods = [{"start": 2.0, "end": 4.0, "kind": "grudge", "label": "x", "healed": True}]
    (r,) = recovery(progress, periods, t1=12.0)
    assert r["recovery_s"] == pytest.approx(5.0)


def test_a_run_that_never_recovers_says_so(tmp_path):
    events = [*progress_at(steady(0, 2)), grudge(2.0), heal(4.0), ev(20.0, "node.stopped")]
    write_run(tmp_path, events, summary={"topology": "demo", "mode": "sim", "reason": "duration"},
              topology=topology())
    results = make_report(tmp_path)
    (p,) = results["availability"]["fault_periods"]
    assert p["recovery_s"] is None and p["recovery"] == "did not recover before the run ended"
    html = page(tmp_path)
    assert "progress <b>did not recover before the run ended</b>" in html


def test_the_report_calls_out_a_stall_longer_than_the_fault(tmp_path):
    events = [*progress_at(steady(0, 2) + steady(10, 14)), grudge(2.0), heal(4.0)]
    write_run(tmp_path, events, summary={"topology": "demo", "mode": "sim", "reason": "done",
                                         "chaos": {"nemesis": "one", "seed": 1}}, topology=topology())
    results = make_report(tmp_path)
    (p,) = results["availability"]["fault_periods"]
    assert p["recovery_s"] == pytest.approx(6.0) and p["duration_s"] == pytest.approx(2.0)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["availability"]["fault_periods"][0]["recovery_s"] == pytest.approx(6.0)
    html = page(tmp_path)
    assert 'class="alert"' in html and "<b>6.0 s</b> to get back to half its healthy rate" in html
    assert "a stall longer than the fault itself" in html
    assert "6.000 s after the heal" in html, "the availability table has the figure"
    assert "recovered 6.0 s after the heal" in html, "the progress chart marks it"


def test_a_short_recovery_is_not_called_out(tmp_path):
    events = [*progress_at(steady(0, 2) + steady(4, 8)), grudge(2.0), heal(4.0)]
    write_run(tmp_path, events, summary={"topology": "demo", "mode": "sim", "reason": "done"}, topology=topology())
    make_report(tmp_path)
    assert 'class="alert"' not in page(tmp_path)


# -- problems per node -------------------------------------------------------------------------------------


def test_clean_goodbyes_are_not_problems_and_counts_are_text(tmp_path):
    events = [ev(1.0, "transport.peer_down", "a", "$sys", peer="b", reason="left"),
              ev(1.1, "transport.peer_down", "b", "$sys", peer="a", reason="left"),
              ev(1.2, "transport.peer_down", "c", "$sys", peer="a", reason="timeout"),
              ev(1.3, "runtime.dead_letter", "c", "x", reason="no such actor"),
              ev(1.4, "runtime.dead_letter", "c", "x", reason="no such actor")]
    write_run(tmp_path, events, summary={"topology": "demo", "mode": "real"}, topology=topology())
    results = make_report(tmp_path)
    assert results["per_node"] == {"c": {"transport.peer_down": 1, "runtime.dead_letter": 2}}
    assert results["clean_goodbyes"] == 2
    html = page(tmp_path)
    assert "<td>c</td><td>runtime.dead_letter: 2, transport.peer_down: 1</td>" in html
    assert "{&#x27;" not in html and "{'" not in html, "no Python dict reprs"
    assert "Not counted: 2 clean goodbyes" in html


# -- one time axis ----------------------------------------------------------------------------------------------


def test_every_chart_shares_the_time_axis_the_fault_marks_and_labels_its_y_axis(tmp_path):
    kinds = ("workflow.resource", "rack.monitor", "localplane.edge")
    events = [ev(0.0, "monitor.start", "r", "mon", rack="d0s0r0", indicator=["green", "steady"]),
              ev(0.1, "edge.deployed", "e1", "edge"),
              *[ev(0.2 + i * 0.5, "server.state", "s", f"srv{i}", to="running") for i in range(4)],
              *[ev(2.0 + i * 0.5, "server.state", "s", f"srv{i}", to="done") for i in range(4)],
              *[ev(0.3 + i, "admission.grant", "ctl", "images", holders=i + 1, limit=50) for i in range(5)],
              grudge(1.0), heal(2.5), ev(7.3, "node.stopped")]
    write_run(tmp_path, events, summary={"topology": "demo", "mode": "sim"},
              topology=topology(progress="server.state[to=done]", kinds=kinds, states="server.state"))
    make_report(tmp_path)
    svgs = re.findall(r"<svg .*?</svg>", page(tmp_path), flags=re.S)
    assert len(svgs) == 5, "progress, actors per state, holders, racks, edge"
    widths = {re.search(r'width="(\d+)"', s).group(1) for s in svgs}
    assert len(widths) == 1, widths
    ticks = [re.findall(r'<text x="([\d.]+)" y="\d+" font-size="11" text-anchor="middle">([^<]*)</text>', s)
             for s in svgs]
    assert ticks[0] and all(t == ticks[0] for t in ticks), "the same tick labels at the same x in every chart"
    assert [label for _, label in ticks[0]] == ["0 s", "1 s", "2 s", "3 s", "4 s", "5 s", "6 s", "7 s"]
    tint, strong, name = FAULT_STYLES["grudge"]
    for s in svgs:
        assert f'fill="{tint}"' in s and f'fill="{strong}"' in s, "the fault is marked the same way everywhere"
        assert f">{name}</text>" in s, "with a legend"
    for s in svgs[:3]:  # the line charts: what is counted, and the scale from 0 to the largest value
        assert re.search(r'text-anchor="end">0</text>', s)
    assert "progress events so far (server.state[to=done])" in svgs[0] and 'text-anchor="end">4</text>' in svgs[0]
    assert "leases held per resource" in svgs[2] and 'text-anchor="end">50</text>' in svgs[2]


# -- old run directories -----------------------------------------------------------------------------------------


def test_an_old_run_dir_with_only_an_event_log_still_reports(tmp_path):
    write_run(tmp_path, [ev(0, "node.started"), grudge(1.0), heal(2.0), ev(3.0, "node.stopped")])
    results = make_report(tmp_path)
    html = page(tmp_path)
    assert results["availability"]["fault_periods"][0]["kind"] == "grudge"
    assert "mode unknown (no summary.json)" in html
    assert "<b>1.00 s</b> grudge (one): ctl cut off from everyone, both ways" in html
    assert "(no schedule.json in this run directory)" in html


def test_a_log_without_nemesis_events_falls_back_to_the_schedule(tmp_path):
    schedule = [{"time": 1.0, "op": "kill", "node": "beta"}, {"time": 3.0, "op": "restart", "node": "beta"}]
    write_run(tmp_path, [ev(0, "node.started"), ev(0.5, "node.stopped")], schedule=schedule,
              summary={"topology": "demo", "mode": "real", "reason": "interrupted"})
    results = make_report(tmp_path)
    html = page(tmp_path)
    assert "seconds from the run's start (planned: the log has no nemesis events)" in html
    assert "<b>1.00 s</b> kill: beta killed" in html and "<b>3.00 s</b> restart: beta started again" in html
    assert results["fault_ops"][0]["planned"] is True


def test_a_broken_schedule_file_does_not_stop_the_report(tmp_path):
    write_run(tmp_path, [ev(0, "node.started"), ev(1.0, "node.stopped")])
    (tmp_path / "schedule.json").write_text("{not json")
    make_report(tmp_path)
    assert "none - a plain run" in page(tmp_path)
