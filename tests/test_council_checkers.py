"""The council checkers (issue 21) on hand-made logs: each says invalid with the offending events, and unknown
when there is nothing to judge (``CASES``, used by tests/test_checker_registry.py), and valid on a log that keeps
its invariant."""

from __future__ import annotations

from topologies.workflow.council_checks import RedirectAccepted, RedirectWithinAccepted, RejectionHold

P = ("east-rc", "images")  # the proposer
Q = ("west-rc", "images")  # the peer
MID = "east-rc/images#7.1"


def ev(t: float, at: tuple[str, str], kind: str, **fields) -> dict:
    return {"time": t, "node": at[0], "actor": at[1], "kind": kind, "fields": fields}


def decided(t: float, accepted: int, *, needs_approval: bool = False, outcome: str | None = None,
            hold_until: float | None = None, mid: str = MID) -> dict:
    return ev(t, Q, "council.decided", mitigation=mid, proposer="east-rc/images", peer="west-rc/images",
              requested=3, accepted=accepted, outcome=outcome or ("accepted" if accepted else "rejected"),
              needs_approval=needs_approval, hold_until=hold_until, until=200.0, by="west-rc/images")


def redirect(t: float, server: str, mid: str = MID) -> dict:
    return ev(t, P, "council.redirect", council="images", mitigation=mid, server=server, peer="west-rc/images")


def admitted(t: float, server: str, mid: str = MID) -> dict:
    return ev(t, Q, "council.admitted", council="images", mitigation=mid, server=server,
              proposer="east-rc/images")


NOTHING = [ev(0.0, P, "controller.start", resource="images", limit=4, ttl=30.0, epoch=7, grace=0.0),
           ev(1.0, P, "council.start", council="images")]

# redirect-accepted
_unaccepted = redirect(10.0, "east-s1/server")
_unapproved = admitted(12.0, "east-s2/server")
_after_end = redirect(30.0, "east-s3/server")
_ended = ev(20.0, P, "council.state", mitigation=MID, to="ended", reason="expired")
ACCEPTED_INVALID = [decided(11.0, 2, needs_approval=True), _unaccepted, _unapproved,
                    ev(15.0, ("ops", "oversight"), "oversight.decision", mitigation=MID, approve=True, by="operator:ana"),
                    redirect(16.0, "east-s4/server"), _ended, _after_end]
ACCEPTED_VALID = [decided(1.0, 2), redirect(2.0, "east-s1/server"), admitted(2.1, "east-s1/server")]

# redirect-within-accepted
_fourth = admitted(5.0, "east-s4/server")
_third_sent = redirect(4.0, "east-s3/server")
_decision = decided(1.0, 2)
WITHIN_INVALID = [_decision, redirect(2.0, "east-s1/server"), redirect(2.0, "east-s2/server"),
                  redirect(2.5, "east-s1/server"), _third_sent, admitted(3.0, "east-s1/server"),
                  admitted(3.0, "east-s2/server"), admitted(3.5, "east-s2/server"), _fourth]

# rejection-hold
_hold_out = ev(5.0, P, "council.hold", council="images", peer="west-rc/images", until=35.0, why="rejected")
_query = ev(10.0, P, "council.query", council="images", round=2, peers=["west-rc/images", "north-rc/images"])
_rejected = decided(4.0, 0, hold_until=34.0, mid="east-rc/images#7.2")
_guest = admitted(20.0, "east-s9/server")
HOLD_INVALID = [decided(1.0, 2), _rejected, _hold_out, _query,
                ev(36.0, P, "council.proposed", mitigation="east-rc/images#7.3", peer="west-rc/images", count=2),
                _guest]
HOLD_VALID = [_rejected, _hold_out, ev(36.0, P, "council.query", peers=["west-rc/images"]),
              ev(4.5, ("west-rc", "images"), "council.hold_lifted", proposer="east-rc/images", by="operator:ana"),
              ev(6.0, ("west-rc", "images"), "council.admitted", mitigation="op#1", server="east-s1/server",
                 proposer="east-rc/images")]

CASES = {
    "redirect-accepted": {"invalid": (ACCEPTED_INVALID, [_unaccepted, _unapproved, _after_end]),
                          "unknown": NOTHING + [decided(2.0, 2)]},
    "redirect-within-accepted": {"invalid": (WITHIN_INVALID, [_third_sent, _fourth]),
                                 "unknown": NOTHING + [redirect(3.0, "east-s1/server")]},
    "rejection-hold": {"invalid": (HOLD_INVALID, [_query, _guest]),
                       "unknown": NOTHING + [decided(1.0, 2), redirect(2.0, "east-s1/server")]},
}


def test_redirects_under_an_accepted_mitigation_are_valid():
    v = RedirectAccepted().check(ACCEPTED_VALID)
    assert v.status == "valid", v.summary


def test_an_approved_redirect_is_valid_and_the_unapproved_ones_are_named():
    v = RedirectAccepted().check(ACCEPTED_INVALID)
    assert v.status == "invalid"
    assert _fields_of(v.evidence, "council.redirect", "server") >= {"east-s1/server", "east-s3/server"}
    assert "east-s4/server" not in _fields_of(v.evidence, "council.redirect", "server")  # sent after the approval


def test_redirects_within_the_accepted_share_are_valid_and_repeats_count_once():
    v = RedirectWithinAccepted().check(WITHIN_INVALID[:4] + WITHIN_INVALID[5:8])
    assert v.status == "valid", v.summary


def test_a_hold_lifted_by_an_operator_and_a_query_after_the_hold_are_valid():
    v = RejectionHold().check(HOLD_VALID)
    assert v.status == "valid", v.summary


def _fields_of(evidence: list[dict], kind: str, key: str) -> set:
    return {e["fields"].get(key) for e in evidence if e.get("kind") == kind}


def test_the_report_section_lists_each_mitigation_and_is_absent_without_councils():
    from topologies.workflow.council_report import council_table

    html = council_table(ACCEPTED_VALID + [ev(3.0, P, "council.proposed", mitigation=MID, peer="west-rc/images",
                                              count=3, by="east-rc/images")], [], 0.0, 10.0)
    assert html and MID in html and "not needed" in html and "1 servers admitted" in html
    assert council_table(NOTHING[:1], [], 0.0, 10.0) is None
