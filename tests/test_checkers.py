"""Invariant checkers (topologies.checkers): valid / invalid / unknown with the right evidence.

Each runtime checker is run on hand-made event logs, a good one, a bad one
(whose offending records must come back as evidence) and ones the checker
cannot judge; then end to end: a traced simulator run under nemesis
partitions passes ``no-delivery-across-partition``, and the same log with one
``net.deliver`` forged inside a partition window fails it. Message tags are
unique to this module ("checkertest.*").
"""

from __future__ import annotations

import random

import attrs
import pytest

from actors.simulator import Simulator
from protocols.core import Send
from transport.codec import message
from transport.sim import LinkSpec, SimNetwork, Uniform
from topologies import checkers
from topologies.checkers import (
    CHECKERS,
    MAX_EVIDENCE,
    NoCrashOnBadInput,
    NoDeliveryAcrossPartition,
    RequestsAnswered,
    Verdict,
    register,
    run_checkers,
)
from topologies.nemesis import NemesisSpec, apply_to_simulator, make_schedule


def ev(time, node, kind, /, actor="a", **fields):
    return {"time": time, "node": node, "actor": actor, "kind": kind, "fields": fields}


def kill(time, node):
    return ev(time, "chaos", "nemesis.kill", actor="nemesis", node=node)


# --------------------------------------------------------------------------
# Verdicts and the registry
# --------------------------------------------------------------------------

def test_the_runtime_checkers_are_registered():
    assert {"no-crash-on-bad-input", "requests-answered", "no-delivery-across-partition"} <= set(CHECKERS)
    verdicts = run_checkers([])
    assert [v.checker for v in verdicts] == list(CHECKERS)
    assert all(v.status == "unknown" for v in verdicts), verdicts


def test_verdict_validates_status_and_caps_evidence():
    with pytest.raises(ValueError, match="status must be one of"):
        Verdict("x", "ok", "")
    v = Verdict("x", "invalid", "many", [{"i": i} for i in range(100)])
    assert len(v.evidence) == MAX_EVIDENCE and v.evidence[0] == {"i": 0}
    assert v.as_dict() == {"checker": "x", "status": "invalid", "summary": "many", "evidence": v.evidence}


def test_run_checkers_names_unknown_checkers():
    with pytest.raises(ValueError, match=r"unknown checker 'nope'; known checkers: .*requests-answered"):
        run_checkers([], ["nope"])
    assert [v.checker for v in run_checkers([], ["requests-answered"])] == ["requests-answered"]


def test_register_refuses_a_second_checker_under_a_used_name():
    @attrs.frozen
    class Impostor:
        name: str = "requests-answered"

        def check(self, events):
            return Verdict(self.name, "valid", "")

    with pytest.raises(ValueError, match="already used"):
        register(Impostor())
    with pytest.raises(ValueError, match="non-empty string name"):
        register(Impostor(name=""))

    @attrs.frozen
    class Always:
        name: str = "checkertest-always-valid"

        def check(self, events):
            return Verdict(self.name, "valid", "always")

    try:
        register(Always())
        assert run_checkers([], ["checkertest-always-valid"])[0].summary == "always"
    finally:
        CHECKERS.pop("checkertest-always-valid", None)


# --------------------------------------------------------------------------
# no-crash-on-bad-input
# --------------------------------------------------------------------------

def check_bad_input(events, **kw):
    return NoCrashOnBadInput(**kw).check(events)


def test_bad_input_survived_is_valid():
    log = [
        ev(0.0, "n1", "actor.started"),
        ev(1.0, "n1", "runtime.decode_error", actor="$transport", error="unknown tag"),
        ev(1.2, "n2", "transport.bad_frame", actor="$transport", peer="x", problem="size"),
        ev(2.0, "n1", "workflow.granted"),
        ev(3.0, "n2", "workflow.granted"),
        ev(9.0, "n1", "node.stopped"),
        ev(9.0, "n2", "node.stopped"),
    ]
    v = check_bad_input(log)
    assert v.status == "valid", v
    assert "n1" in v.summary and "n2" in v.summary


def test_a_crash_right_after_bad_input_is_invalid_and_shown():
    bad = ev(1.0, "n1", "runtime.decode_error", actor="$transport", error="truncated")
    crash = ev(1.1, "n1", "actor.crashed", actor="server", error="KeyError('x')", message="workflow.Grant")
    log = [bad, ev(1.05, "n2", "x"), crash, ev(2.0, "n1", "x"), ev(5.0, "n1", "node.stopped")]
    v = check_bad_input(log)
    assert v.status == "invalid", v
    assert crash in v.evidence and bad in v.evidence
    assert "within 0.5s" in v.summary


def test_a_crash_mentioning_decoding_is_invalid_even_later():
    log = [ev(1.0, "n1", "transport.bad_frame", peer="p", problem="tag"),
           ev(4.0, "n1", "actor.crashed", error="DecodeError('bad field')"),
           ev(5.0, "n1", "node.stopped")]
    v = check_bad_input(log)
    assert v.status == "invalid" and "mentions decoding" in v.summary


def test_an_unrelated_crash_long_after_bad_input_is_not_blamed_on_it():
    log = [ev(1.0, "n1", "runtime.decode_error", error="x"),
           ev(30.0, "n1", "actor.crashed", error="ZeroDivisionError()"),
           ev(31.0, "n1", "node.stopped")]
    assert check_bad_input(log).status == "valid"


def test_a_node_that_goes_silent_after_bad_input_is_invalid():
    bad = ev(1.0, "n1", "runtime.decode_error", error="x")
    log = [ev(0.5, "n1", "actor.started"), bad, ev(2.0, "n2", "x"), ev(9.0, "n2", "node.stopped")]
    v = check_bad_input(log)
    assert v.status == "invalid", v
    assert v.evidence == [bad]
    assert "no node.stopped and no nemesis.kill" in v.summary
    # the same node, still logging after the bad input but never stopping, is also caught
    later = ev(3.0, "n1", "x")
    v = check_bad_input(log + [later])
    assert v.status == "invalid" and v.evidence == [bad, later]


def test_a_node_killed_by_the_nemesis_is_excused():
    log = [ev(1.0, "n1", "runtime.decode_error", error="x"), ev(1.5, "n1", "x"), kill(2.0, "n1")]
    assert check_bad_input(log).status == "valid"
    # killed before it showed it kept going: cannot tell
    v = check_bad_input([ev(1.0, "n1", "runtime.decode_error", error="x"), kill(1.0, "n1")])
    assert v.status == "unknown" and "killed by the nemesis" in v.summary
    # a kill of another node excuses nothing
    v = check_bad_input([ev(1.0, "n1", "runtime.decode_error", error="x"), ev(1.5, "n1", "x"), kill(2.0, "n2")])
    assert v.status == "invalid"


def test_no_bad_input_is_unknown():
    v = check_bad_input([ev(1.0, "n1", "actor.crashed", error="x"), ev(2.0, "n1", "node.stopped")])
    assert v.status == "unknown" and "no bad input" in v.summary


# --------------------------------------------------------------------------
# requests-answered
# --------------------------------------------------------------------------

def ask(time, node, aid, deadline, to="n2/x"):
    return ev(time, node, "runtime.ask", actor="client", id=aid, to=to, deadline=deadline)


def end(time, node, aid, outcome="reply"):
    return ev(time, node, "runtime.ask_end", actor="client", id=aid, outcome=outcome)


def check_asks(events, **kw):
    return RequestsAnswered(**kw).check(events)


def test_every_ask_ending_once_is_valid():
    log = [ask(1.0, "n1", 1, 2.0), ask(1.0, "n2", 1, 2.0), end(1.1, "n1", 1), end(2.0, "n2", 1, "timeout"),
           ask(3.0, "n1", 2, 4.0), end(3.5, "n1", 2, "peer_down"), ev(10.0, "n1", "x")]
    v = check_asks(log)
    assert v.status == "valid", v
    assert "3 asks" in v.summary


def test_a_missing_end_is_invalid_once_the_node_logs_past_the_deadline():
    lost = ask(1.0, "n1", 7, 2.0, to="n3/db")
    log = [lost, ask(1.0, "n1", 8, 2.0), end(1.2, "n1", 8), ev(2.5, "n1", "x")]
    v = check_asks(log)
    assert v.status == "invalid", v
    assert v.evidence == [lost]
    assert "ask 7 to 'n3/db'" in v.summary
    # another node's later events do not count: n1's own log stops before the deadline
    v = check_asks([lost, ev(1.5, "n1", "x"), ev(50.0, "n2", "x")])
    assert v.status == "unknown" and v.evidence == [lost]
    # grace: the same log within the grace period is not yet a violation
    assert check_asks(log, grace=1.0).status == "unknown"


def test_ends_must_match_by_node_and_id():
    a = ask(1.0, "n1", 1, 2.0)
    stray = end(1.1, "n2", 1)
    v = check_asks([a, stray, ev(3.0, "n1", "x")])
    assert v.status == "invalid"
    assert a in v.evidence and stray in v.evidence
    assert "no runtime.ask" in v.summary


def test_a_second_end_is_invalid():
    second = end(1.5, "n1", 1, "timeout")
    v = check_asks([ask(1.0, "n1", 1, 2.0), end(1.1, "n1", 1), second])
    assert v.status == "invalid" and v.evidence == [second] and "ended twice" in v.summary


def test_an_unknown_outcome_is_invalid():
    odd = end(1.1, "n1", 1, "lost")
    v = check_asks([ask(1.0, "n1", 1, 2.0), odd])
    assert v.status == "invalid" and odd in v.evidence and "'lost'" in v.summary


def test_an_id_reused_while_open_is_invalid():
    first, again = ask(1.0, "n1", 1, 5.0), ask(2.0, "n1", 1, 6.0)
    v = check_asks([first, again, end(2.5, "n1", 1)])
    assert v.status == "invalid" and v.evidence == [first, again]


def test_asks_open_on_a_killed_node_are_excused_and_ids_restart():
    log = [ask(1.0, "n1", 1, 2.0), kill(1.5, "n1"), ev(3.0, "n1", "node.started"),
           ask(3.1, "n1", 1, 4.0), end(3.2, "n1", 1), ev(9.0, "n1", "x")]
    v = check_asks(log)
    assert v.status == "valid", v
    assert "1 open on nodes the nemesis killed" in v.summary
    # without the kill the first ask is an open id asked again, and it never ended
    assert check_asks([e for e in log if e["kind"] != "nemesis.kill"]).status == "invalid"


def test_no_asks_is_unknown():
    v = check_asks([ev(1.0, "n1", "x")])
    assert v.status == "unknown" and "no ask in this log" in v.summary


# --------------------------------------------------------------------------
# no-delivery-across-partition: hand-made logs
# --------------------------------------------------------------------------

NET = dict(actor="net")


def deliver(time, src, dst):
    return ev(time, dst.partition("/")[0], "net.deliver", actor=dst.partition("/")[2], src=src, dst=dst, tag="t", sent=time - 0.01)


def check_partition(events):
    return NoDeliveryAcrossPartition().check(events)


def test_delivery_across_a_partition_is_invalid():
    crossing = deliver(1.5, "n1/a", "n3/a")
    log = [
        deliver(0.5, "n1/a", "n3/a"),
        ev(1.0, "sim", "net.partition", islands=[["n1", "n2"]], rest=["n3"], **NET),
        deliver(1.2, "n1/a", "n2/a"),  # same island
        deliver(1.3, "n3/a", "n3/b"),  # same node
        crossing,
        ev(2.0, "sim", "net.heal", **NET),
        deliver(2.5, "n1/a", "n3/a"),
    ]
    v = check_partition(log)
    assert v.status == "invalid", v
    assert v.evidence == [crossing]
    assert "net.partition" in v.summary and "n1/a -> n3/a" in v.summary
    assert check_partition([e for e in log if e is not crossing]).status == "valid"


def test_a_cut_blocks_one_direction_only():
    log = [ev(1.0, "sim", "net.cut", src="n1", dst="n2", **NET), deliver(1.5, "n2/a", "n1/a")]
    assert check_partition(log).status == "valid"
    wrong_way = deliver(1.6, "n1/a", "n2/a")
    v = check_partition(log + [wrong_way])
    assert v.status == "invalid" and v.evidence == [wrong_way]


def test_nemesis_grudge_and_pause_events_block_too():
    crossing = deliver(1.5, "n2/a", "n1/a")
    grudge = ev(1.0, "chaos", "nemesis.grudge", actor="nemesis", label="x", blocked=[["n2", "n1"]])
    log = [grudge, deliver(1.4, "n1/a", "n2/a"), crossing, ev(2.0, "chaos", "nemesis.heal", actor="nemesis"),
           deliver(2.1, "n2/a", "n1/a")]
    v = check_partition(log)
    assert v.status == "invalid" and v.evidence == [crossing]
    paused = deliver(3.5, "n1/a", "n4/a")
    log2 = [ev(3.0, "chaos", "nemesis.pause", actor="nemesis", node="n4"), paused,
            ev(4.0, "chaos", "nemesis.resume", actor="nemesis", node="n4"), deliver(4.5, "n1/a", "n4/a")]
    v = check_partition(log2)
    assert v.status == "invalid" and v.evidence == [paused]


def test_events_are_replayed_in_time_order():
    # a merged log, out of order: the delivery at 1.5 happened while the partition of 1.0 was in force
    crossing = deliver(1.5, "n1/a", "n2/a")
    log = [crossing, ev(1.0, "sim", "net.partition", islands=[["n1"]], rest=["n2"], **NET)]
    assert check_partition(log).status == "invalid"


def test_no_deliveries_is_unknown_and_no_faults_is_unknown_too():
    v = check_partition([ev(1.0, "sim", "net.partition", islands=[["n1"]], rest=["n2"], **NET)])
    assert v.status == "unknown" and "message tracing is a simulator feature" in v.summary
    v = check_partition([deliver(1.0, "n1/a", "n2/a")])
    assert v.status == "unknown" and "nothing to judge" in v.summary  # a log with no fault proves nothing


# --------------------------------------------------------------------------
# End to end: a traced simulation under the nemesis
# --------------------------------------------------------------------------

@message("checkertest.Hello")
class Hello:
    seq: int


class Chatty:
    """Every 0.05 s sends Hello to every peer."""

    tick_interval = 0.05

    def __init__(self, peers: list[str]) -> None:
        self.peers = peers
        self.seq = 0

    def tick(self, now):
        self.seq += 1
        return [Send(p, Hello(self.seq)) for p in self.peers]

    def handle(self, msg, sender, now):
        return []


NODES = ["n1", "n2", "n3", "n4", "n5"]


def simulate(name: str, seed: int, spec: NemesisSpec, until: float = 6.0):
    # latency up to 0.2 s, so messages are in flight when a partition begins
    sim = Simulator(seed, network=SimNetwork(default=LinkSpec(latency=Uniform(0.01, 0.2))), trace_messages=True)
    addrs = [f"{n}/p" for n in NODES]
    for a in addrs:
        sim.add(a, Chatty([b for b in addrs if b != a]))
    sched = make_schedule(name, NODES, random.Random(seed), spec)
    factories = {a: (lambda a=a: Chatty([b for b in addrs if b != a])) for a in addrs}
    apply_to_simulator(sim, sched, {n: [f"{n}/p"] for n in NODES}, factories)
    sim.run(until=until)
    return sim.event_log.events(), sched


def test_a_simulated_run_under_partitions_passes_and_a_forged_delivery_fails():
    spec = NemesisSpec(start=1.0, duration=1.0, repeat=2, interval=2.0)
    events, sched = simulate("majority", 7, spec)
    v = run_checkers(events, ["no-delivery-across-partition"])[0]
    assert v.status == "valid", v
    drops = [e for e in events if e["kind"] == "net.drop" and e["fields"]["reason"] == "partition"]
    assert any(e["fields"]["at"] == "delivery" for e in drops), "no message was caught in flight by the partition"
    assert "while a fault was in force" in v.summary and not v.summary.startswith("0 ")

    # forge one delivery across the first split, inside its window
    grudge = sched[0][1]
    src, dst = sorted(grudge.blocked)[0]
    i = next(i for i, e in enumerate(events) if e["kind"] == "net.deliver" and 1.4 < e["time"] < 1.6)
    forged = {"time": events[i]["time"], "node": dst, "actor": "p", "kind": "net.deliver",
              "fields": {"src": f"{src}/p", "dst": f"{dst}/p", "tag": "checkertest.Hello", "sent": 1.3}}
    broken = events[:i] + [forged] + events[i:]
    v = run_checkers(broken, ["no-delivery-across-partition"])[0]
    assert v.status == "invalid", v
    assert v.evidence == [forged]


@pytest.mark.parametrize("name", ["one", "majorities-ring", "bridge", "asymmetric", "pause", "mix"])
@pytest.mark.parametrize("seed", [1, 2])
def test_the_simulator_never_delivers_across_any_nemesis_partition(name, seed):
    events, _ = simulate(name, seed, NemesisSpec(start=0.5, duration=0.7, repeat=3, interval=1.5))
    v = checkers.NoDeliveryAcrossPartition().check(events)
    assert v.status == "valid", f"{name} seed={seed}: {v}"


# --------------------------------------------------------------------------
# The runtime checkers' cases for the registry test (tests/test_checker_registry.py):
# a log breaking each invariant, with the events that must come back as evidence,
# and a log with nothing for it to judge
# --------------------------------------------------------------------------

def _cases() -> dict:
    bad_input = ev(1.0, "n1", "runtime.decode_error", error="not msgpack")
    crash = ev(1.1, "n1", "actor.crashed", error="DecodeError: bad tag")
    ask = ev(1.0, "n1", "runtime.ask", id=7, to="n2/b", deadline=2.0)
    cut = ev(1.0, "sim", "net.partition", actor="net", islands=[["n1"], ["n2"]])
    crossed = ev(1.5, "sim", "net.deliver", actor="net", src="n1/a", dst="n2/b")
    send = ev(1.0, "n1", "net.send", src="n1/a", dst="n2/b", tag="t.M", copies=1)
    twice = [ev(1.2, "n2", "net.deliver", actor="b", src="n1/a", dst="n2/b", tag="t.M", sent=1.0),
             ev(1.3, "n2", "net.deliver", actor="b", src="n1/a", dst="n2/b", tag="t.M", sent=1.0)]
    forged = ev(2.0, "n2", "net.deliver", actor="b", src="n3/c", dst="n2/b", tag="t.M", sent=1.9)
    first = ev(0.0, "beta", "node.started", actor="$node", pid=10, incarnation=77)
    again = ev(5.0, "beta", "node.started", actor="$node", pid=11, incarnation=77)
    return {
        "deliveries-match-sends": {
            "invalid": ([send, *twice, forged], [send, *twice, forged]),
            "unknown": [send, ev(1.0, "n1", "net.drop", src="n1/a", dst="n2/b", tag="t.M", reason="loss")],
        },
        "fresh-incarnations": {
            "invalid": ([first, ev(4.0, "chaos", "nemesis.kill", actor="nemesis", node="beta"), again], [first, again]),
            "unknown": [first, ev(0.0, "alpha", "node.started", actor="$node", pid=12, incarnation=5)],
        },
        "no-crash-on-bad-input": {
            "invalid": ([bad_input, crash, ev(2.0, "n1", "node.stopped")], [bad_input, crash]),
            "unknown": [ev(1.0, "n1", "actor.started"), ev(2.0, "n1", "node.stopped")],
        },
        "requests-answered": {
            "invalid": ([ask, ev(5.0, "n1", "tick")], [ask]),
            "unknown": [ev(1.0, "n1", "actor.started")],
        },
        "no-delivery-across-partition": {
            "invalid": ([cut, crossed, ev(3.0, "sim", "net.heal", actor="net")], [crossed]),
            "unknown": [ev(1.0, "sim", "net.deliver", actor="net", src="n1/a", dst="n2/b")],
        },
    }


CASES = _cases()


def test_deliveries_match_sends_counts_copies_the_network_made():
    c = CHECKERS["deliveries-match-sends"]
    send = ev(1.0, "n1", "net.send", src="n1/a", dst="n2/b", tag="t.M", copies=2)  # the network duplicated it
    d = [ev(1.1 + i / 10, "n2", "net.deliver", actor="b", src="n1/a", dst="n2/b", tag="t.M", sent=1.0) for i in range(2)]
    v = c.check([send, *d])
    assert v.status == "valid" and "2 deliveries" in v.summary, v
    v = c.check([send, *d, ev(1.5, "n2", "net.deliver", actor="b", src="n1/a", dst="n2/b", tag="t.M", sent=1.0)])
    assert v.status == "invalid" and "delivered more often than copied" in v.summary, v


def test_fresh_incarnations_judges_real_and_simulated_restarts():
    c = CHECKERS["fresh-incarnations"]
    starts = [ev(0.0, "beta", "node.started", actor="$node", incarnation=1),
              ev(5.0, "beta", "node.started", actor="$node", incarnation=2)]
    assert c.check(starts).status == "valid"
    sim = [ev(1.0, "n1", "sim.crash"), ev(2.0, "n1", "sim.restart", incarnation=2)]
    v = c.check(sim)
    assert v.status == "valid" and "1 participant" in v.summary, v
    v = c.check(sim + [ev(3.0, "n1", "sim.restart", incarnation=2)])
    assert v.status == "invalid" and "n1/a started again as incarnation 2" in v.summary, v


def test_a_simulated_chaos_run_is_judged_by_the_message_trace_and_restarts(tmp_path):
    from pathlib import Path

    from topologies.chaos import run_chaos
    from topologies.loader import load_topology

    topo = load_topology(Path(__file__).resolve().parents[1] / "topologies" / "pingpong.toml")
    out = run_chaos(topo, tmp_path, seed=5, nemesis="kill", overrides={"target": "beta"}, sim=True, quiet=True)
    v = {x["checker"]: x for x in out.verdicts}
    assert v["deliveries-match-sends"]["status"] == "valid", v["deliveries-match-sends"]
    assert v["fresh-incarnations"]["status"] == "valid", v["fresh-incarnations"]
