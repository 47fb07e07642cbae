"""The durable store: append-only log per actor, group commit before sends, torn tails, compaction.

A Paxos acceptor's promise must be on disk before the Promise leaves; the
store may lose only what no message reported (a write cut short by a crash).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import pytest

from actors import Node
from actors.statemachine import StateMachineActor
from protocols.consensus.paxos import Persist
from protocols.core import Send
from topologies.durable import FileStore, MemoryStore, _line, verify


def test_last_write_per_key_survives_a_reload(tmp_path):
    s = FileStore(tmp_path)
    s.write("n/a", "x", {"promised": [1, "n/b"]})
    s.write("n/a", "x", {"promised": [2, "n/b"]})
    s.write("n/a", "y", 7)
    s.write("n/other", "x", "hello")
    s.close()
    t = FileStore(tmp_path)
    assert t.load("n/a") == {"x": {"promised": [2, "n/b"]}, "y": 7}
    assert t.load("n/other") == {"x": "hello"}
    assert t.load("n/never") == {}


def test_a_write_reaches_the_os_at_once_so_a_killed_process_loses_nothing(tmp_path):
    # the child writes and is SIGKILLed without closing or syncing the store
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {os.getcwd()!r})
        from topologies.durable import FileStore
        s = FileStore({str(tmp_path)!r}, fsync=False)
        for i in range(50):
            s.write("n/a", f"k{{i % 5}}", i)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    p = subprocess.run([sys.executable, "-c", code])
    assert p.returncode == -9
    assert FileStore(tmp_path).load("n/a") == {f"k{j}": 45 + j for j in range(5)}


def test_a_torn_last_line_is_dropped_and_cut_off(tmp_path):
    s = FileStore(tmp_path)
    s.write("n/a", "x", 1)
    s.write("n/a", "y", 2)
    s.close()
    path = s.path("n/a")
    with open(path, "a", encoding="utf-8") as f:
        f.write('["x",{"prom')  # the process died in the middle of this write
    t = FileStore(tmp_path)
    assert t.load("n/a") == {"x": 1, "y": 2}
    t.write("n/a", "z", 3)  # appended after a clean end, not glued to the torn bytes
    t.close()
    assert FileStore(tmp_path).load("n/a") == {"x": 1, "y": 2, "z": 3}
    data, _, records, keep = verify(path)  # every line verifies and nothing is left of the torn bytes
    assert (data, records, keep) == ({"x": 1, "y": 2, "z": 3}, 3, path.stat().st_size)


def test_a_complete_line_without_its_newline_is_still_a_torn_write(tmp_path):
    s = FileStore(tmp_path)
    s.write("n/a", "x", 1)
    s.close()
    with open(s.path("n/a"), "a", encoding="utf-8") as f:
        f.write('["x",2]')
    assert FileStore(tmp_path).load("n/a") == {"x": 1}


def test_a_bad_line_before_the_end_is_corruption_not_silently_skipped(tmp_path):
    s = FileStore(tmp_path)
    s.write("n/a", "x", 1)
    s.close()
    path = s.path("n/a")
    header = path.read_bytes().splitlines(keepends=True)[0]
    path.write_bytes(header + _line(1, '["x",1]') + b"not json\n" + _line(2, '["y",2]'))
    with pytest.raises(RuntimeError, match="corrupt at line 3"):
        FileStore(tmp_path).load("n/a")
    path.write_bytes(header + _line(1, '{"x": 1}') + _line(2, '["y",2]'))  # checksummed, but not a [key, data] entry
    with pytest.raises(RuntimeError, match="corrupt at line 2"):
        FileStore(tmp_path).load("n/a")


def test_the_log_is_compacted_to_one_line_per_key(tmp_path):
    s = FileStore(tmp_path, compact_factor=2, compact_min=10)
    for i in range(100):
        s.write("n/a", f"k{i % 3}", i)
    lines = s.path("n/a").read_text().splitlines()
    assert len(lines) <= 1 + 10, "the log grew without bound"  # the header, then at most compact_min records
    assert s.compactions >= 9
    s.close()
    assert FileStore(tmp_path).load("n/a") == {"k0": 99, "k1": 97, "k2": 98}


def test_sync_is_counted_only_when_something_was_written(tmp_path):
    s = FileStore(tmp_path)
    s.sync("n/a")
    assert s.syncs == 0
    s.write("n/a", "x", 1)
    s.write("n/a", "y", 1)
    s.sync("n/a")
    s.sync("n/a")
    assert (s.writes, s.syncs) == (2, 1)


def test_the_store_keeps_what_was_written_not_a_live_reference(tmp_path):
    s = FileStore(tmp_path)
    value = {"accepted": [1, 2]}
    s.write("n/a", "x", value)
    value["accepted"].append(3)  # the machine mutates its state afterwards
    s.close()
    assert FileStore(tmp_path).load("n/a") == {"x": {"accepted": [1, 2]}}
    m = MemoryStore()
    m.write("n/a", "x", value)
    value["accepted"].append(4)
    assert m.load("n/a") == {"x": {"accepted": [1, 2, 3]}}


class _Persister:
    """Persists twice, then sends twice, per message."""

    def __init__(self, peer):
        self.peer = peer

    def tick(self, now):
        return []

    def handle(self, msg, sender, now):
        return [Persist("a", msg), Persist("b", msg), Send(self.peer, ("got", msg)), Send(self.peer, ("again", msg))]


class _Sink:
    def __init__(self, log, done, expect):
        self.log, self.done, self.expect = log, done, expect

    def tick(self, now):
        return []

    def handle(self, msg, sender, now):
        self.log.append(msg)
        if len(self.log) >= self.expect:
            self.done.set()
        return []


def test_one_sync_before_the_first_send_covers_every_persist_of_a_handler(tmp_path):
    store = FileStore(tmp_path)
    order: list[str] = []
    real_sync = store.sync

    def sync(address):
        order.append("sync")
        real_sync(address)
    store.sync = sync  # type: ignore[method-assign]

    def on_effect(eff, actor):
        order.append(f"persist {eff.key}")
        store.write(actor.address, eff.key, eff.data)

    seen: list = []
    done = threading.Event()
    node = Node("n")
    try:
        node.spawn(StateMachineActor, lambda: _Sink(seen, done, 6), name="sink")
        node.spawn(StateMachineActor, lambda: _Persister("n/sink"), name="p", on_effect=on_effect,
                   before_send=lambda: sync("n/p"))
        for i in range(3):
            node.tell("n/p", i)
        assert done.wait(10), f"only {seen} arrived"
    finally:
        node.shutdown()
    assert seen == [("got", 0), ("again", 0), ("got", 1), ("again", 1), ("got", 2), ("again", 2)]
    # per message: both persists, then a sync before the first send, then a (no-op) one before the second
    assert order == ["persist a", "persist b", "sync", "sync"] * 3
    assert (store.writes, store.syncs) == (6, 3)
    assert store.load("n/p") == {"a": 2, "b": 2}


def _loop_node():
    from transport.zmq import ZmqTransport
    return Node("n", transport=ZmqTransport(heartbeat_interval=0.05, liveness=4, linger=0.2), dispatch="loop")


def _hold_loop(node) -> threading.Event:
    """Block the node's I/O thread until the returned event is set (messages queue up meanwhile)."""
    go, held = threading.Event(), threading.Event()
    node.transport.call_soon(lambda: (held.set(), go.wait(10)))
    assert held.wait(10)
    return go


def test_on_the_loop_one_sync_covers_every_message_of_a_turn_and_no_send_leaves_before_it(tmp_path):
    """Group commit across messages (loop dispatch): 20 messages queued while the I/O thread is busy are handled
    in one turn - 40 persists, one sync, and only then the 40 sends (none had arrived when the sync ran)."""
    store = FileStore(tmp_path)
    order: list = []
    seen: list = []
    real_sync = store.sync

    def sync(address):
        order.append(("sync", len(seen)))
        real_sync(address)

    def on_effect(eff, actor):
        order.append(f"persist {eff.key}")
        store.write(actor.address, eff.key, eff.data)

    done = threading.Event()
    node = _loop_node()
    try:
        node.spawn(StateMachineActor, lambda: _Sink(seen, done, 40), name="sink")
        node.spawn(StateMachineActor, lambda: _Persister("n/sink"), name="p", on_effect=on_effect,
                   before_send=lambda: sync("n/p"))
        wait_idle = threading.Event()
        node.transport.call_soon(wait_idle.set)
        assert wait_idle.wait(10)
        go = _hold_loop(node)
        for i in range(20):
            node.tell("n/p", i)
        go.set()
        assert done.wait(10), f"only {len(seen)} arrived"
    finally:
        node.shutdown()
    assert seen == [(w, i) for i in range(20) for w in ("got", "again")]  # in order
    assert order == ["persist a", "persist b"] * 20 + [("sync", 0)]
    assert (store.writes, store.syncs) == (40, 1)


def test_on_the_loop_a_failed_sync_keeps_the_held_sends_from_leaving(tmp_path):
    seen: list = []
    done = threading.Event()
    calls: list = []

    def failing_sync():
        calls.append(1)
        raise OSError("disk gone")

    node = _loop_node()
    try:
        node.spawn(StateMachineActor, lambda: _Sink(seen, done, 1), name="sink")
        node.spawn(StateMachineActor, lambda: _Persister("n/sink"), name="p", on_effect=lambda eff, actor: None,
                   before_send=failing_sync)
        node.tell("n/p", 1)
        from tests.conftest import wait_for
        wait_for(lambda: calls, timeout=10, what="the sync")
        assert not done.wait(0.5), f"a send left without a sync: {seen}"
    finally:
        node.shutdown()
