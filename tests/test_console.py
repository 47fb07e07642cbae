"""The oversight console's HTTP side (issue 21, deliverable 4), in one process on 127.0.0.1.

A stand-in oversight role answers the console's asks; every test reads what the console sent it and what the
page or the CLI got back. The token is the only authority: without it nothing is read or done, and every refusal
is counted.
"""

from __future__ import annotations

import http.client
import json

import pytest

from protocols.workflow.council_messages import (
    MitigationView,
    OversightAck,
    OversightApprove,
    OversightEntry,
    OversightImpose,
    OversightList,
    OversightReject,
    OversightView,
)
from topologies.workflow.console import Console, ConsoleServer, ServeConsole


class FakeOversight:
    def __init__(self) -> None:
        self.got: list = []
        self.pending = {"m1": MitigationView(mitigation="m1", council="images", proposer="r1/images",
                                             peer="r2/images", requested=10, accepted=6, until=100.0,
                                             state="pending", needs_approval=True)}

    def ask(self, msg):
        self.got.append(msg)
        if isinstance(msg, OversightList):
            return OversightView(councils={"images": "approve-all"}, mitigations=tuple(self.pending.values()),
                                 history=(OversightEntry(time=1.0, council="images", what="decision", by="r2/images",
                                                         mitigation="m1"),))
        if isinstance(msg, OversightApprove):
            ok = msg.mitigation in self.pending
            return OversightAck(ok=ok, detail="approved" if ok else "no such pending mitigation",
                                mitigation=msg.mitigation)
        return OversightAck(ok=True, detail="done", mitigation=getattr(msg, "mitigation", "m9"))


@pytest.fixture
def console():
    fake = FakeOversight()
    refusals: list = []
    srv = ConsoleServer(fake.ask, on_refused=lambda why, client: refusals.append(why)).start()
    yield srv, fake, refusals
    srv.stop()


def call(srv, method, path, body=None, token=None, host=None, raw=None):
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    headers = {"Host": host or f"127.0.0.1:{srv.port}"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if data is not None:
        headers["Content-Type"] = "application/json"
    c.request(method, path, body=data, headers=headers)
    r = c.getresponse()
    out = r.read()
    c.close()
    try:
        return r.status, json.loads(out)
    except ValueError:
        return r.status, out


def test_the_page_holds_no_data_and_the_state_needs_the_token(console):
    srv, fake, refusals = console
    status, page = call(srv, "GET", "/")
    assert status == 200 and b"<html" in page.lower() and b"m1" not in page
    assert call(srv, "GET", "/api/state")[0] == 403
    assert call(srv, "GET", "/api/state", token="wrong")[0] == 403
    assert fake.got == [] and len(refusals) == 2 and srv.refused == 2
    status, state = call(srv, "GET", "/api/state", token=srv.token)
    assert status == 200 and state["councils"] == {"images": "approve-all"}
    assert state["mitigations"][0]["mitigation"] == "m1" and state["mitigations"][0]["state"] == "pending"
    assert state["history"][0]["by"] == "r2/images"
    assert isinstance(fake.got[0], OversightList)


def test_approve_without_the_token_does_nothing(console):
    srv, fake, refusals = console
    status, out = call(srv, "POST", "/api/approve", {"mitigation": "m1", "operator": "eve"})
    assert status == 403 and out["ok"] is False
    assert fake.got == [], "a call without the token reached the oversight role"
    assert refusals == ["no or wrong console token"]


def test_approve_reject_impose_reach_the_oversight_role_with_the_operator(console):
    srv, fake, _ = console
    status, out = call(srv, "POST", "/api/approve", {"mitigation": "m1", "operator": "ana"}, token=srv.token)
    assert status == 200 and out == {"ok": True, "detail": "approved", "mitigation": "m1"}
    assert fake.got[-1] == OversightApprove(mitigation="m1", operator="ana")
    status, out = call(srv, "POST", "/api/approve", {"mitigation": "zz", "operator": "ana"}, token=srv.token)
    assert status == 409 and out["ok"] is False and "no such" in out["detail"]
    call(srv, "POST", "/api/reject", {"mitigation": "m1", "operator": "bo", "reason": "too big"}, token=srv.token)
    assert fake.got[-1] == OversightReject(mitigation="m1", operator="bo", reason="too big")
    status, _ = call(srv, "POST", "/api/impose", {"council": "images", "proposer": "r1/images", "peer": "r3/images",
                                                   "count": 5, "duration": 30, "operator": "ana"}, token=srv.token)
    assert status == 200 and fake.got[-1] == OversightImpose(council="images", proposer="r1/images",
                                                             peer="r3/images", count=5, duration=30.0,
                                                             operator="ana")


@pytest.mark.parametrize("body, why", [
    ({"mitigation": "m1"}, "'operator'"),
    ({"mitigation": "", "operator": "ana"}, "'mitigation'"),
    ({"mitigation": 3, "operator": "ana"}, "'mitigation'"),
    ({"mitigation": "m1", "operator": "x" * 65}, "'operator'"),
])
def test_a_bad_body_is_a_clear_400_and_reaches_nobody(console, body, why):
    srv, fake, _ = console
    status, out = call(srv, "POST", "/api/approve", body, token=srv.token)
    assert status == 400 and why in out["error"], out
    assert fake.got == []


def test_hostile_requests_are_refused(console):
    srv, fake, _ = console
    assert call(srv, "POST", "/api/approve", raw=b"[1, 2]", token=srv.token)[0] == 400
    assert call(srv, "POST", "/api/approve", raw=b"{not json", token=srv.token)[0] == 400
    assert call(srv, "POST", "/api/propose", {"council": "images", "proposer": "a", "peer": "b", "count": -1,
                                              "duration": 5, "operator": "ana"}, token=srv.token)[0] == 400
    assert call(srv, "POST", "/api/propose", {"council": "images", "proposer": "a", "peer": "b", "count": True,
                                              "duration": 5, "operator": "ana"}, token=srv.token)[0] == 400
    assert call(srv, "POST", "/api/approve", raw=b"{" + b" " * (70 * 1024) + b"}", token=srv.token)[0] == 413
    assert call(srv, "POST", "/api/shutdown", {}, token=srv.token)[0] == 404
    # another site's page reaching the console through DNS rebinding carries its own Host name
    assert call(srv, "GET", "/api/state", token=srv.token, host=f"evil.example:{srv.port}")[0] == 421
    assert fake.got == []


def test_an_oversight_role_that_does_not_answer_is_a_504_not_a_hang():
    def silent(msg):
        raise TimeoutError("ask to ovs/oversight got no reply within 5.0s")

    srv = ConsoleServer(silent).start()
    try:
        status, out = call(srv, "GET", "/api/state", token=srv.token)
        assert status == 504 and "did not answer" in out["error"]
    finally:
        srv.stop()


def test_the_console_machine_serves_once_and_only_an_oversight_role_of_its_own_node():
    c = Console("ovs/console", port=0)
    assert c.tick(0.0) == [ServeConsole("ovs/oversight", 0)]
    assert c.tick(1.0) == [] and c.handle(object(), "x/y", 1.0) == []
    with pytest.raises(ValueError, match="own node"):
        Console("ovs/console", oversight="other/oversight")
    with pytest.raises(ValueError, match="port"):
        Console("ovs/console", port=70000)


def _run_dir(tmp_path, srv):
    (tmp_path / "ovs.console.json").write_text(json.dumps({"url": srv.url, "token": srv.token, "pid": 1,
                                                           "oversight": "ovs/oversight"}))
    return tmp_path


def test_fleetplane_oversee_acts_through_the_console_with_its_token(console, tmp_path, capsys):
    from topologies.cli import main

    srv, fake, refusals = console
    run = _run_dir(tmp_path, srv)
    assert main(["oversee", "--run", str(run), "--operator", "ana", "approve", "m1"]) == 0
    assert fake.got[-1] == OversightApprove(mitigation="m1", operator="ana")
    assert "approve: done (m1)" in capsys.readouterr().out
    assert main(["oversee", "--run", str(run), "--operator", "ana", "approve", "nope"]) == 1
    assert "refused (409)" in capsys.readouterr().err
    assert main(["oversee", "--run", str(run), "list", "--json"]) == 0
    view = json.loads(capsys.readouterr().out)
    assert view["mitigations"][0]["mitigation"] == "m1"
    assert main(["oversee", "--run", str(run), "list"]) == 0
    assert "pending" in capsys.readouterr().out
    assert main(["console", str(run)]) == 0
    assert capsys.readouterr().out.strip() == f"{srv.url}#token={srv.token}"
    assert refusals == []


def test_fleetplane_oversee_with_a_wrong_token_is_refused_and_changes_nothing(console, tmp_path, capsys):
    from topologies.cli import main

    srv, fake, refusals = console
    (tmp_path / "ovs.console.json").write_text(json.dumps({"url": srv.url, "token": "stolen?", "pid": 1}))
    assert main(["oversee", "--run", str(tmp_path), "approve", "m1"]) == 1
    assert "refused (403)" in capsys.readouterr().err
    assert fake.got == [] and refusals == ["no or wrong console token"]


def test_fleetplane_oversee_without_a_console_says_how_to_get_one(tmp_path, capsys):
    from topologies.cli import main

    assert main(["oversee", "--run", str(tmp_path), "list"]) == 2
    assert "has no console" in capsys.readouterr().err
