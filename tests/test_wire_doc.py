"""docs/wire.md is enough to talk to a node: a client built from it alone (raw pyzmq + msgpack).

The node is a real process (``python -m topologies.node``, started by tests/hostile.py's NodeProc)
hosting ``hostile.Echo``/``hostile.Echoed`` echo actor; every frame below is built and parsed from
what docs/wire.md says, with nothing from ``transport``.
"""

from __future__ import annotations

import os
import time

import msgpack
import zmq

from tests.hostile import NodeProc


def _header(to: str, sender: str, corr: int) -> bytes:
    """wire.md, "Message": "M", corr (8 bytes BE), len(to) (2 bytes BE), to, sender."""
    to_b = to.encode()
    return b"M" + corr.to_bytes(8, "big") + len(to_b).to_bytes(2, "big") + to_b + sender.encode()


def _parse(header: bytes) -> tuple[int, str, str]:
    assert header[:1] == b"M"
    corr = int.from_bytes(header[1:9], "big")
    n = int.from_bytes(header[9:11], "big")
    return corr, header[11:11 + n].decode(), header[11 + n:].decode()


def test_a_client_built_from_the_wire_document_asks_and_gets_heartbeats(tmp_path):
    node = NodeProc("east", tmp_path / "run", heartbeat=0.2)
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    dealer = ctx.socket(zmq.DEALER)
    try:
        for s in (router, dealer):
            s.setsockopt(zmq.LINGER, 0)
        port = router.bind_to_random_port("tcp://127.0.0.1")
        mine = f"tcp://127.0.0.1:{port}"
        incarnation = int.from_bytes(os.urandom(7), "big") | 1
        dealer.connect(node.endpoint)
        # 1. a heartbeat: the node learns where to answer
        dealer.send_multipart([b"H", b"cli", incarnation.to_bytes(8, "big"), mine.encode()])
        # 2. an ask: sender "<me>/$ask/", corr = the ask's id
        dealer.send_multipart([_header("east/echo", "cli/$ask/", 5), msgpack.packb({"@": "hostile.Echo", "n": 1})])
        reply = beat = None
        deadline = time.monotonic() + 10
        while (reply is None or beat is None) and time.monotonic() < deadline:
            if not router.poll(200):
                continue
            frames = router.recv_multipart()
            if frames[1] == b"H":
                beat = frames
            elif frames[1][:1] == b"M" and _parse(frames[1])[1].startswith("cli/$ask/"):
                reply = frames  # the answer to our ask (the node may also send cli/$sys its own messages)
        assert beat is not None, "no heartbeat from the node"
        assert len(beat) == 5  # identity + the 4 frames of a heartbeat
        assert beat[2] == b"east"
        assert int.from_bytes(beat[3], "big") == node.incarnation and len(beat[3]) == 8
        assert beat[4].decode() == node.endpoint
        assert reply is not None, "no reply to the ask"
        assert len(reply) == 3  # identity, header, payload
        corr, to, sender = _parse(reply[1])
        assert (corr, to, sender) == (5, "cli/$ask/", "east/echo")
        assert msgpack.unpackb(reply[2]) == {"@": "hostile.Echoed", "n": 1, "sender": "cli/$ask/5"}
        # a tell (corr 0) is fine too, and the node keeps answering asks
        dealer.send_multipart([_header("east/echo", "cli/x", 0), msgpack.packb({"@": "hostile.Echo", "n": 2})])
        dealer.send_multipart([_header("east/echo", "cli/$ask/", 6), msgpack.packb({"@": "hostile.Echo", "n": 3})])
        got = []
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            if router.poll(200):
                frames = router.recv_multipart()
                if frames[1][:1] == b"M":
                    got.append((_parse(frames[1]), msgpack.unpackb(frames[2])))
        assert ((6, "cli/$ask/", "east/echo"), {"@": "hostile.Echoed", "n": 3, "sender": "cli/$ask/6"}) in got
        assert ((0, "cli/x", "east/echo"), {"@": "hostile.Echoed", "n": 2, "sender": "cli/x"}) in got
        # 4. goodbye on the way out
        dealer.send_multipart([b"B", b"cli", incarnation.to_bytes(8, "big")])
    finally:
        router.close(0)
        dealer.close(0)
        ctx.term()
        assert node.stop() == 0
