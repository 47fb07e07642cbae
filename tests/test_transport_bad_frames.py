"""``transport.bad_frame`` events are rate-limited like the runtime's dead-letter events: every bad
frame is counted, at most ``bad_frame_events`` events per problem per second are written, and the rest
are summed up in one ``transport.bad_frames_suppressed`` event once their second is over (and at close).
A hostile peer cannot flood the event log. Time is a fake clock here: no sleeps, no asserted durations.
"""

from __future__ import annotations

import threading

import pytest

from tests.conftest import wait_for
from tests.hostile import Attacker
from transport.zmq import ZmqTransport


def test_bad_frame_events_are_rate_limited_per_problem_with_a_count_of_the_rest():
    now = [1000.0]
    events: list[tuple[str, dict]] = []
    lock = threading.Lock()

    def event(kind, fields):
        with lock:
            events.append((kind, dict(fields)))

    def of(kind, problem=None):
        with lock:
            return [f for k, f in events if k == kind and (problem is None or f.get("problem") == problem)]

    t = ZmqTransport(heartbeat_interval=0.5, clock=lambda: now[0])
    t.start("victim", lambda batch: None, None, event)
    raw = Attacker()
    try:
        sock = raw.dealer(t.endpoint)
        for _ in range(250):
            sock.send_multipart([b"\x00garbage"])  # unknown kind: problem "frames"
        for _ in range(3):
            sock.send_multipart([b"M\x00\x00", b"x"])  # truncated header: problem "header", a budget of its own
        wait_for(lambda: t.counters().get("bad_frames", 0) == 250 and t.counters().get("bad_header", 0) == 3,
                 what="every bad frame counted")
        c = t.counters()
        assert len(of("transport.bad_frame", "frames")) == 20, "20 events per problem per second"
        assert len(of("transport.bad_frame", "header")) == 3
        assert c["bad_frame_events_suppressed"] == 230
        assert of("transport.bad_frames_suppressed") == [], "summed up once the second is over, not before"

        now[0] += 1.0  # the second is over: the next heartbeat tick sums it up
        t.call_soon(lambda: None)  # wake the I/O thread
        summary = wait_for(lambda: of("transport.bad_frames_suppressed"), what="the summary of the second")
        assert summary == [{"problem": "frames", "suppressed": 230, "per_second": 20}]

        for _ in range(30):  # a new second: a new budget
            sock.send_multipart([b"\x00garbage"])
        wait_for(lambda: t.counters().get("bad_frames", 0) == 280, what="30 more counted")
        assert len(of("transport.bad_frame", "frames")) == 40
        assert t.counters()["bad_frame_events_suppressed"] == 240
    finally:
        raw.close()
        t.close()
    # what was left out when the transport closed is summed up too
    assert of("transport.bad_frames_suppressed")[1:] == [{"problem": "frames", "suppressed": 10, "per_second": 20}]


def test_the_rate_limit_is_at_least_one_event():
    with pytest.raises(ValueError):
        ZmqTransport(bad_frame_events=0)


def test_an_io_error_is_counted_once_it_is_logged_and_its_event_written():
    """Whoever sees ``io_errors`` grow also finds the ``transport.error`` event (test_zmq's
    test_an_unexpected_error_on_the_io_thread_... failed under load: the counter came first, the event
    after the log line). The log sink here holds the I/O thread inside the log call."""
    from loguru import logger

    inside, release = threading.Event(), threading.Event()
    events: list[str] = []

    def sink(message):
        if "unexpected error in" in str(message):
            inside.set()
            release.wait(10)

    t = ZmqTransport(heartbeat_interval=0.05)
    t.start("x", lambda batch: None, None, lambda kind, fields: events.append(kind))
    handler = logger.add(sink, level="ERROR")
    try:
        def broken():
            raise RuntimeError("a defect")
        t._command(broken)
        wait_for(inside.is_set, what="the I/O thread logging the error")
        seen = t.counters().get("io_errors", 0)
        assert seen == 0 or "transport.error" in events, "a counted error without its event"
        release.set()
        wait_for(lambda: t.counters().get("io_errors", 0) == 1, what="the error counted")
        assert "transport.error" in events
    finally:
        release.set()
        logger.remove(handler)
        t.close()
