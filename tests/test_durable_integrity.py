"""Durable logs you can trust (issue 14, deliverable 5): damage before the synced point is refused.

A Paxos acceptor that reloads a log silently rolled back, with a changed digit
or an appended line, or empty, forgets or changes a promise it made: consensus
safety is gone. Every case here damages a log the way the probe did
(audits/probe.md, durable-*), and asserts that loading refuses it with an error
naming the file and the line, and that no file in the store directory changed
(the operator decides what to do). Only a torn, unsynced tail loads (it was
never synced, so no message depended on it).

The tests use the public ``FileStore`` API and the documented line format
(docs/durable.md: ``<crc32 hex8> <seq> <json>``), so they run unchanged against
the old store (where most of them fail).
"""

from __future__ import annotations

import os
import re
import tempfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from topologies.durable import FileStore

ADDR = "n1/acceptor"
KEYS = [f"k{i:02d}" for i in range(11)]


def acceptor_log(directory: Path, rounds: int = 3, *, unsynced: int = 0) -> tuple[FileStore, Path]:
    """A log like a Paxos acceptor's: 11 keys promised and accepted over rounds, synced after every handler;
    then ``unsynced`` more writes never synced (the store is left open, as if the process died)."""
    s = FileStore(directory, fsync=False)
    for r in range(1, rounds + 1):
        for k in KEYS:
            s.write(ADDR, k, {"promised": [r, "n/b"], "accepted": [r, "n/b", f"v{r}"]})
            s.sync(ADDR)
    for i in range(unsynced):
        s.write(ADDR, KEYS[i % len(KEYS)], {"promised": [100 + i, "n/b"]})
    return s, s.path(ADDR)


def expected(rounds: int = 3) -> dict:
    return {k: {"promised": [rounds, "n/b"], "accepted": [rounds, "n/b", f"v{rounds}"]} for k in KEYS}


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def assert_refused(directory: Path, path: Path, line: int | None = None) -> str:
    """Loading refuses with an error naming ``path`` and a line (``line`` if given), and changes no file."""
    before = snapshot(directory)
    with pytest.raises(RuntimeError) as info:
        FileStore(directory).load(ADDR)
    msg = str(info.value)
    assert str(path) in msg, f"the error does not name the file: {msg}"
    m = re.search(r"\bline (\d+)\b", msg)
    assert m, f"the error does not name the line: {msg}"
    if line is not None:
        assert int(m.group(1)) == line, msg
    assert snapshot(directory) == before, "a refused log (or its sidecar) was changed"
    return msg


def closed_log(tmp_path: Path, rounds: int = 3) -> Path:
    s, path = acceptor_log(tmp_path, rounds)
    s.close()
    assert FileStore(tmp_path).load(ADDR) == expected(rounds)  # the undamaged log loads
    return path


def line_of(path: Path, offset: int) -> int:
    return path.read_bytes()[:offset].count(b"\n") + 1


def record(seq: int, payload: str) -> bytes:
    """A line in the documented format, with a correct checksum."""
    body = f"{seq} {payload}".encode()
    return b"%08x %s\n" % (zlib.crc32(body), body)


# --- the probe's cases ---------------------------------------------------------------------

def test_a_truncation_in_the_middle_is_refused_not_rolled_back(tmp_path):
    path = closed_log(tmp_path)
    raw = path.read_bytes()
    cut = len(raw) // 2
    path.write_bytes(raw[:cut])
    assert_refused(tmp_path, path, line_of(path, cut))


def test_a_truncation_at_a_line_boundary_is_refused(tmp_path):
    path = closed_log(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-5]))  # whole records cut off the end: looks like a clean log
    assert_refused(tmp_path, path, len(lines) - 5 + 1)


def test_a_flipped_byte_is_refused(tmp_path):
    path = closed_log(tmp_path)
    raw = bytearray(path.read_bytes())
    i = len(raw) // 2
    while raw[i] in b"\n":
        i += 1
    raw[i] ^= 0x01
    path.write_bytes(bytes(raw))
    assert_refused(tmp_path, path, line_of(path, i))


def test_a_flipped_digit_still_valid_json_is_refused(tmp_path):
    path = closed_log(tmp_path)
    raw = path.read_bytes()
    i = raw.index(b'"promised":[2,')  # a synced promise of round 2 becomes round 9
    path.write_bytes(raw[:i] + b'"promised":[9,' + raw[i + 14:])
    assert_refused(tmp_path, path, line_of(path, i))


def test_a_flipped_key_is_refused(tmp_path):
    path = closed_log(tmp_path)
    raw = path.read_bytes()
    i = raw.rindex(b'"k00"')  # k00's newest value now belongs to a key "j00"
    path.write_bytes(raw[:i] + b'"j00"' + raw[i + 5:])
    assert_refused(tmp_path, path, line_of(path, i))


def test_an_appended_valid_looking_line_is_refused(tmp_path):
    path = closed_log(tmp_path)
    raw = path.read_bytes()
    n = raw.count(b"\n") + 1
    for extra in (b'["k00",{"promised":[999,"evil"],"accepted":[999,"evil","x"]}]\n',  # the old format
                  raw.splitlines(keepends=True)[3],  # a real record replayed: a sequence gap
                  b"00000000 34 " + b'["k00",{"promised":[999,"evil"]}]\n'):  # the next seq, a bad checksum
        path.write_bytes(raw + extra)
        assert_refused(tmp_path, path, n)


def test_a_deleted_line_in_the_middle_is_a_sequence_gap(tmp_path):
    path = closed_log(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:10] + lines[11:]))
    assert "sequence" in assert_refused(tmp_path, path, 11)


def test_an_empty_file_where_a_log_existed_is_refused(tmp_path):
    path = closed_log(tmp_path)
    path.write_bytes(b"")
    assert_refused(tmp_path, path, 1)


def test_a_deleted_log_is_refused_when_records_were_synced(tmp_path):
    path = closed_log(tmp_path)
    path.unlink()
    assert_refused(tmp_path, path)


def test_a_deleted_sidecar_is_refused(tmp_path):
    path = closed_log(tmp_path)
    sidecars = [p for p in tmp_path.iterdir() if p != path]
    for p in sidecars:
        p.unlink()
    assert_refused(tmp_path, path)


def test_a_damaged_sidecar_is_refused(tmp_path):
    path = closed_log(tmp_path)
    sidecar = path.with_suffix(".synced")
    sidecar.write_bytes(sidecar.read_bytes().replace(b"durable2", b"durablE2"))
    assert_refused(tmp_path, sidecar)


def test_deep_nesting_names_file_and_line_not_a_bare_recursion_error(tmp_path):
    path = closed_log(tmp_path)
    raw = path.read_bytes()
    n = raw.count(b"\n") + 1
    checksummed = lambda: record(int(raw.splitlines()[-1].split(b" ")[1]) + 1,  # noqa: E731 (the next seq)
                                 '["k00",' + "[" * 200_000 + "]" * 200_000 + "]")
    for extra in (lambda: b"[" * 200_000 + b"\n", checksummed):  # garbage, then behind a valid checksum
        path.write_bytes(raw + extra())
        with pytest.raises(RuntimeError) as info:
            FileStore(tmp_path).load(ADDR)
        assert not isinstance(info.value, RecursionError), info.value
        assert_refused(tmp_path, path, n)


def test_a_torn_unsynced_tail_still_loads_and_is_cut_off(tmp_path):
    s, path = acceptor_log(tmp_path, 2, unsynced=3)
    raw = path.read_bytes()
    path.write_bytes(raw[:-7])  # the process died inside the third unsynced write
    want = expected(2) | {"k00": {"promised": [100, "n/b"]}, "k01": {"promised": [101, "n/b"]}}
    t = FileStore(tmp_path)
    assert t.load(ADDR) == want
    assert path.read_bytes().endswith(b"\n") and len(path.read_bytes()) < len(raw) - 7
    t.write(ADDR, "k05", 5)
    t.close()
    assert FileStore(tmp_path).load(ADDR) == want | {"k05": 5}


def test_a_fresh_directory_loads_empty_and_creates_nothing(tmp_path):
    assert FileStore(tmp_path).load(ADDR) == {}
    assert list(tmp_path.iterdir()) == []


def test_an_old_format_log_is_refused_with_how_to_migrate(tmp_path):
    path = FileStore(tmp_path).path(ADDR)
    path.write_text('["k00",{"promised":[1,"n/b"]}]\n["k01",{"promised":[2,"n/b"]}]\n')
    msg = assert_refused(tmp_path, path, 1)
    assert "migrate" in msg
    from topologies.durable import main
    assert main(["migrate", str(path)]) == 0
    assert FileStore(tmp_path).load(ADDR) == {"k00": {"promised": [1, "n/b"]}, "k01": {"promised": [2, "n/b"]}}
    assert path.with_name(path.name + ".v1").exists()


def test_compaction_keeps_the_synced_point_checkable(tmp_path):
    s = FileStore(tmp_path, fsync=False, compact_factor=2, compact_min=8)
    for i in range(60):
        s.write(ADDR, f"k{i % 3}", i)
        s.sync(ADDR)
    assert s.compactions >= 5
    s.close()
    path = s.path(ADDR)
    assert FileStore(tmp_path).load(ADDR) == {"k0": 57, "k1": 58, "k2": 59}
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]))
    assert_refused(tmp_path, path)


def test_sync_flushes_the_log_before_it_records_the_synced_point(tmp_path, monkeypatch):
    """The sidecar never claims records the disk may not hold: log fsync, then the sidecar's write and flush."""
    s = FileStore(tmp_path)
    s.write(ADDR, "k00", 1)  # creates the log and its sidecar
    s.sync(ADDR)
    calls: list[str] = []

    def track(name):
        real = getattr(os, name)

        def call(fd, *args):
            target = os.readlink(f"/proc/self/fd/{fd}")
            calls.append(f"{name} {Path(target).suffix}")
            return real(fd, *args)
        return call
    for name in ("fsync", "fdatasync", "pwrite"):
        monkeypatch.setattr(os, name, track(name))
    syncs = s.syncs
    s.write(ADDR, "k00", 2)
    s.write(ADDR, "k01", 3)
    assert calls == [], "a write reaches the OS, it is not synced"
    s.sync(ADDR)
    s.sync(ADDR)  # nothing new: no flush at all
    assert calls == ["fsync .jsonl", "pwrite .synced", "fdatasync .synced"], calls
    assert s.syncs == syncs + 1


# --- properties ----------------------------------------------------------------------------

def _crashed_log(directory: Path) -> tuple[int, list[tuple[int, dict]]]:
    """A log synced up to some point, then written further (unsynced) by a process that died.
    Returns the synced length in bytes and (end offset, state) after every write."""
    s = FileStore(directory, fsync=False)
    path = s.path(ADDR)
    states: list[tuple[int, dict]] = []
    state: dict = {}
    synced = 0
    for i in range(30):
        state = state | {KEYS[i % 4]: {"promised": [i, "n/b"]}}
        s.write(ADDR, KEYS[i % 4], {"promised": [i, "n/b"]})
        states.append((path.stat().st_size, state))
        if i < 20 and i % 3 == 2:
            s.sync(ADDR)
            synced = path.stat().st_size
    return synced, states


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    """(synced length, states after each write, the store directory's files, the log's name)."""
    base = tmp_path_factory.mktemp("crashed")
    synced, states = _crashed_log(base)
    assert 0 < synced < base.joinpath(FileStore(base).path(ADDR).name).stat().st_size
    return synced, states, snapshot(base), FileStore(base).path(ADDR).name


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_single_byte_corruption_before_the_synced_point_is_refused(crashed, data):
    synced, _, files, log = crashed
    pos = data.draw(st.integers(0, synced - 1), label="pos")
    old = files[log][pos]
    new = data.draw(st.integers(0, 255).filter(lambda b: b != old), label="byte")
    with tempfile.TemporaryDirectory() as d:
        directory = Path(d)
        for name, content in files.items():
            (directory / name).write_bytes(content)
        raw = bytearray(files[log])
        raw[pos] = new
        (directory / log).write_bytes(bytes(raw))
        assert_refused(directory, directory / log)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_truncation_after_the_synced_point_loads_exactly_the_complete_records(crashed, data):
    synced, states, files, log = crashed
    size = len(files[log])
    cut = data.draw(st.integers(synced, size), label="cut")
    want = [state for end, state in states if end <= cut][-1]  # the synced records, then every complete one
    with tempfile.TemporaryDirectory() as d:
        directory = Path(d)
        for name, content in files.items():
            (directory / name).write_bytes(content)
        (directory / log).write_bytes(files[log][:cut])
        assert FileStore(directory).load(ADDR) == want
        assert (directory / log).stat().st_size == max(end for end, _ in states if end <= cut)  # torn bytes cut
        assert FileStore(directory).load(ADDR) == want  # and it loads again the same


# -- a node process whose actor's durable log is refused ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_node_whose_durable_log_is_refused_says_so_instead_of_its_ready_line(tmp_path):
    """A node process checks its actors' durable logs before it binds: a refused one is its start error (the one
    JSON line a launcher reads, and one line on stderr), exit 1. Before, the node printed its ready line, then its
    actor crashed on the log with a traceback - a launcher saw a node that had started."""
    import json
    import socket
    import subprocess
    import sys

    from topologies.loader import load_topology

    root = Path(__file__).resolve().parents[1]
    topo = load_topology(root / "topologies" / "boot_storm.toml")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        base = s.getsockname()[1]
    resolved = topo.with_ports({n.name: base + 1 + i for i, n in enumerate(topo.nodes)})
    (tmp_path / "topology.json").write_text(json.dumps(resolved.to_dict()))
    (tmp_path / "durable").mkdir()
    bad = tmp_path / "durable" / "ctl.images.durable.jsonl"  # the resource controller ctl/images
    bad.write_text("garbage\n")
    before = bad.read_bytes()
    p = subprocess.run([sys.executable, "-m", "topologies.node", "--name", "ctl", "--topology",
                        str(tmp_path / "topology.json"), "--run-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=90, cwd=root)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr[-2000:])
    first = json.loads(p.stdout.splitlines()[0])
    assert set(first) == {"error"}, f"the node said it was ready: {first}"
    assert "durable state of ctl/images" in first["error"] and "corrupt at line 1" in first["error"], first
    assert f"error: {first['error']}" in p.stderr.splitlines()
    assert "Traceback" not in p.stderr, p.stderr[-2000:]
    assert bad.read_bytes() == before, "the refused log was changed"
