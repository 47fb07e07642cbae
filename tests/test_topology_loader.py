"""Topology files: the built-in ones load; broken ones give every problem, clearly, with lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from topologies.loader import TopologyError, load_topology, parse_topology

ROOT = Path(__file__).resolve().parents[1]

GOOD = """
name = "t"
[[nodes]]
name = "a"
[[nodes.actors]]
name = "pinger"
kind = "pingpong.pinger"
params = { peer = "b/ponger" }
[[nodes]]
name = "b"
[[nodes.actors]]
name = "ponger"
kind = "pingpong.ponger"
"""


def test_builtin_topologies_load():
    files = sorted((ROOT / "topologies").glob("*.toml"))
    assert files, "no built-in topology files"
    for f in files:
        topo = load_topology(f)
        assert topo.nodes and topo.addresses()


def test_defaults_fill_a_minimal_file():
    topo = parse_topology(GOOD)
    assert topo.run.duration == 60.0 and topo.transport.heartbeat == 0.5 and topo.seed == 1
    assert topo.transport.dispatch == "thread"
    assert topo.run.recovery == 3.0 and parse_topology(GOOD + "[run]\nrecovery = 5\n").run.recovery == 5.0
    assert parse_topology(GOOD + '[transport]\ndispatch = "loop"\n').transport.dispatch == "loop"
    assert topo.addresses() == ["a/pinger", "b/ponger"]
    assert topo.node("a").port == 0


def test_defaults_give_every_actor_of_a_kind_its_parameters_and_own_params_win():
    text = GOOD.replace('params = { peer = "b/ponger" }', "") + """
[[nodes]]
name = "c"
[[nodes.actors]]
name = "pinger"
kind = "pingpong.pinger"
params = { rounds = 5 }
[defaults."pingpong.pinger"]
peer = "b/ponger"
rounds = 9
"""
    topo = parse_topology(text)
    assert topo.node("a").actors[0].params == {"peer": "b/ponger", "rounds": 9}
    assert topo.node("c").actors[0].params == {"peer": "b/ponger", "rounds": 5}
    assert topo.node("b").actors[0].params == {}  # another kind: untouched


def problems_of(text: str) -> list:
    with pytest.raises(TopologyError) as info:
        parse_topology(text, "broken.toml")
    return info.value.problems


BROKEN = {
    "not toml": ("name = \n", ["not valid TOML"], 1),
    "no nodes": ('name = "t"\n', ["nodes: a topology needs at least one [[nodes]] entry"], None),
    "unknown top key": (GOOD + "colour = 'red'\n", ["unknown key 'colour'"], 14),
    "unknown kind": (GOOD.replace("pingpong.ponger", "pingpong.pnoger"),
                     ["nodes[1].actors[0].kind: unknown actor kind 'pingpong.pnoger'", "pingpong.pinger, pingpong.ponger"], 13),
    "duplicate node": (GOOD.replace('name = "b"', 'name = "a"'),
                       ["nodes[1].name: duplicate node name 'a'", "'b/ponger' names no actor"], 10),
    "duplicate actor": (GOOD.replace('[[nodes]]\nname = "b"\n[[nodes.actors]]\nname = "ponger"\nkind = "pingpong.ponger"\n',
                                     '[[nodes.actors]]\nname = "pinger"\nkind = "pingpong.ponger"\n'),
                        ["duplicate actor name 'pinger' on node 'a'"], None),
    "dangling address": (GOOD.replace("b/ponger", "c/ponger"), ["params.peer: 'c/ponger' names no actor in this topology"], 8),
    "bad param type": (GOOD.replace('peer = "b/ponger"', 'peer = "b/ponger", rounds = "ten"'),
                       ["params.rounds: expected int, got string 'ten'"], 8),
    "unknown param": (GOOD.replace('peer = "b/ponger"', 'peer = "b/ponger", colour = 1'),
                      ["kind 'pingpong.pinger' takes no parameter 'colour'"], 8),
    "missing param": (GOOD.replace('params = { peer = "b/ponger" }', ""), ["needs parameter 'peer'"], None),
    "negative duration": (GOOD + "[run]\nduration = -5\n", ["run.duration: must be > 0, got -5"], 15),
    "nan heartbeat": (GOOD + "[transport]\nheartbeat = nan\n", ["transport.heartbeat: expected a finite number"], 15),
    "bad dispatch": (GOOD + "[transport]\ndispatch = \"fibers\"\n",
                     ['transport.dispatch: expected "thread" or "loop", got \'fibers\''], None),
    "bad probability": (GOOD + "[network]\nloss = 1.5\n", ["network.loss: must be <= 1, got 1.5"], 15),
    "bad latency": (GOOD + "[network]\nlatency = [0.5, 0.1]\n", ["network.latency: expected seconds >= 0 or [low, high]"], 15),
    "bad port": (GOOD.replace('name = "a"', 'name = "a"\nport = 70000'), ["nodes[0].port: must be <= 65535"], 5),
    "same port twice": (GOOD.replace('name = "a"', 'name = "a"\nport = 7000').replace('name = "b"', 'name = "b"\nport = 7000'),
                        ["port 7000 on 127.0.0.1 is already used by node 'a'"], None),
    "bad node name": (GOOD.replace('name = "a"', 'name = "a/b"'), ["node name 'a/b' must be"], 4),
    "reserved node name": (GOOD.replace('name = "a"', 'name = "chaosctl"'), ["node name 'chaosctl' is reserved"], None),
    "dangling link": (GOOD + "[[links]]\nfrom = \"a\"\nto = \"zz\"\n", ["links[0].to: names no node in this topology: 'zz'"], 16),
    "keys for some nodes only": (GOOD + "[keys]\na = { public = \"" + "x" * 40 + "\", secret = \"" + "y" * 40 + "\" }\n",
                                 ["keys must be given for every node or none; missing: b"], None),
    "short key": (GOOD + "[keys]\na = { public = \"abc\", secret = \"" + "y" * 40 + "\" }\n"
                  "b = { public = \"" + "x" * 40 + "\", secret = \"" + "y" * 40 + "\" }\n",
                  ["keys.a.public: a CurveZMQ key is 40 Z85 characters, got 3"], None),
    "chaos interval": (GOOD + "[[chaos]]\nnemesis = \"one\"\nduration = 5.0\ninterval = 2.0\n",
                       ["chaos[0].interval: interval (2.0) must be longer than duration (5.0)"], None),
    "chaos target": (GOOD + "[[chaos]]\nnemesis = \"one\"\ntarget = \"zz\"\n", ["chaos[0].target: names no node"], None),
    "chaos nodes match nothing": (GOOD + "[[chaos]]\nnemesis = \"one\"\nnodes = [\"mon-*\"]\n",
                                  ["chaos[0].nodes: 'mon-*' matches no node in this topology"], None),
    "chaos nodes not a list": (GOOD + "[[chaos]]\nnemesis = \"one\"\nnodes = \"a\"\n",
                               ["chaos[0].nodes: expected a non-empty list of node names or glob patterns"], None),
    "chaos target outside nodes": (GOOD + "[[chaos]]\nnemesis = \"one\"\nnodes = [\"a\"]\ntarget = \"b\"\n",
                                   ["chaos[0].target: 'b' is not among the nodes the entry selects (a)"], None),
    "negative recovery": (GOOD + "[run]\nrecovery = -1\n", ["run.recovery"], None),
    "wrong table type": (GOOD.replace('name = "t"', 'name = "t"\nrun = 5'), ["run: expected a table, got integer"], 3),
    "defaults for an unknown kind": (GOOD + '[defaults."pingpong.pnoger"]\nrounds = 3\n',
                                     ["defaults.pingpong.pnoger: defaults for unknown actor kind 'pingpong.pnoger'"], 14),
    "bad default type": (GOOD + '[defaults."pingpong.pinger"]\nrounds = "ten"\n',
                         ["defaults.pingpong.pinger.rounds: expected int, got string 'ten'"], 15),
    "unknown default param": (GOOD + '[defaults."pingpong.pinger"]\ncolour = 1\n',
                              ["kind 'pingpong.pinger' takes no parameter 'colour'"], None),
    "dangling default address": (GOOD.replace('params = { peer = "b/ponger" }', "") + '[defaults."pingpong.pinger"]\npeer = "c/x"\n',
                                 ["defaults.pingpong.pinger.peer: 'c/x' names no actor"], None),
    "excluded parameter": (GOOD.replace('kind = "pingpong.pinger"\nparams = { peer = "b/ponger" }',
                                        'kind = "localplane.edge"\nparams = { manager = "b/ponger", evaluate = "x" }'),
                           ["kind 'localplane.edge' takes no parameter 'evaluate'"], 8),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_files_give_clear_messages(case):
    text, fragments, line = BROKEN[case]
    problems = problems_of(text)
    rendered = "\n".join(str(p) for p in problems)
    for frag in fragments:
        assert frag in rendered, f"{case}: expected {frag!r} in:\n{rendered}"
    if line is not None:
        assert problems[0].line == line, f"{case}: expected line {line}, got {problems[0].line}:\n{rendered}"


def test_every_problem_is_reported_not_just_the_first():
    text = GOOD.replace("pingpong.ponger", "nope").replace("b/ponger", "c/x") + "[run]\nduration = 0\n"
    assert len(problems_of(text)) >= 3


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(TopologyError, match="no such file"):
        load_topology(tmp_path / "nothing.toml")


def test_cli_reports_problems_without_a_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace("pingpong.ponger", "nope"))
    proc = subprocess.run([sys.executable, "-m", "topologies.cli", "run", str(bad), "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2
    assert "unknown actor kind 'nope'" in proc.stderr and "line 13" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_must_judge_names_checkers_of_the_topologys_plugins():
    topo = parse_topology(GOOD.replace('name = "t"', 'name = "t"\n[run]\nmust_judge = ["requests-answered"]'))
    assert topo.run.must_judge == ("requests-answered",)
    assert parse_topology(GOOD).run.must_judge is None  # the plug-ins' defaults apply
    for value, msg in (('["no-such-checker"]', "unknown checker 'no-such-checker'"),
                       ('["admission-limit"]', "'admission-limit' belongs to a plug-in this topology does not use"),
                       ('"requests-answered"', "expected a list of checker names")):
        with pytest.raises(TopologyError) as e:
            parse_topology(GOOD.replace('name = "t"', f'name = "t"\n[run]\nmust_judge = {value}'))
        assert msg in str(e.value) and "run.must_judge" in str(e.value) and "line 4" in str(e.value), str(e.value)


def test_settle_names_events_a_chaos_run_waits_out():
    def parse(value):
        return parse_topology(GOOD.replace('name = "t"', f'name = "t"\n[run]\nsettle = {value}'))
    assert parse('"monitor.condition"').run.settle == ("monitor.condition",)
    assert parse('["a.b", "c[to=up]"]').run.settle == ("a.b", "c[to=up]")
    assert parse_topology(GOOD).run.settle == ()
    for value in ("3", '["a b"]', '[1]'):
        with pytest.raises(TopologyError) as e:
            parse(value)
        assert "run.settle" in str(e.value) and "expected an event kind or a list of them" in str(e.value), str(e.value)


def test_builtin_topologies_declare_what_chaos_must_judge():
    from topologies.chaos import must_judge_of

    judged = {f.stem: must_judge_of(load_topology(f)) for f in sorted((ROOT / "topologies").glob("*.toml"))}
    assert set(judged["boot_storm"]) == {"admission-limit", "leases-end", "servers-done", "no-grant-while-dormant"}
    assert "control-once" in judged["racks"] and "paxos-one-value" in judged["racks"]
    assert {"plan-holders", "governance"} <= set(judged["edge"])
    assert judged["pingpong"] == ()
