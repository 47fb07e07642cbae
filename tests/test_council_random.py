"""The council's agreement under any order of delivery (issue 21): random schedules of three image controllers
and the oversight role - messages delivered in random order, lost, duplicated; servers arriving; redirected
servers asking the peer; an operator approving, rejecting, cancelling - with these invariants checked after every
step (one seed per schedule, named on failure):

* no member holds a mitigation ``in_force`` (or enforces it) unless the peer decided ``accepted`` > 0 for it and,
  where that decision needs approval, the oversight role approved it;
* every member that knows a mitigation's decision knows the same accepted count;
* the peer admits, and the proposer sends, at most ``accepted`` distinct servers per mitigation;
* a mitigation's state only moves forward (the members' transition table).
"""

from __future__ import annotations

import random

import pytest

from protocols.core import Send
from protocols.workflow.council import MIT_TRANSITIONS
from protocols.workflow.council_messages import OversightApprove, OversightCancel, OversightReject, Redirect
from protocols.workflow.messages import AccessRequest
from tests.test_council_units import OP, OV, A, B, C, Pump

MEMBERS = (A, B, C)


class RandomPump(Pump):
    def __init__(self, seed: int, approval: str) -> None:
        self.rnd = random.Random(seed)
        super().__init__(approval=approval, lend=1.0)
        self.servers = 0
        self.states: dict[tuple[str, str], str] = {}

    def _apply(self, addr: str, fx: list) -> None:
        """Servers are not under test: what goes to them arrives at once (a Redirect makes the server ask the
        peer, most of the time); what goes between controllers and the oversight role is scheduled at random."""
        rest = []
        for e in fx:
            if type(e) is Send and e.to not in self.m:
                items = getattr(e.msg, "items", None)
                for item in (items if items is not None else (e.msg,)):
                    self.inbox[getattr(item, "server", e.to)].append(item)
                    if type(item) is Redirect and self.rnd.random() < 0.8:
                        srv = item.server
                        self.q.append((item.controller, AccessRequest(srv, "images", 1, 1, "image", 0, 10.0, srv,
                                                                      self.now, mitigation=item.mitigation), srv))
            else:
                rest.append(e)
        super()._apply(addr, rest)

    def step(self) -> None:
        r = self.rnd.random()
        if r < 0.7 and self.q:
            i = self.rnd.randrange(len(self.q))
            to, msg, sender = self.q.pop(i)
            x = self.rnd.random()
            if x < 0.1:
                return  # lost
            if x < 0.2:
                self.q.append((to, msg, sender))  # duplicated
            self._apply(to, self.m[to].handle(msg, sender, self.now))
        elif r < 0.82:
            self.now += self.rnd.uniform(0.05, 0.6)
            for addr in list(self.m):
                self._apply(addr, self.m[addr].tick(self.now))
        elif r < 0.91:
            ctrl = A if self.rnd.random() < 0.7 else self.rnd.choice((B, C))  # A's store is the damaged one
            for _ in range(self.rnd.randint(1, 30 if ctrl == A else 5)):
                self.servers += 1
                s = f"r{self.servers}/server"
                self.q.append((ctrl, AccessRequest(s, "images", 1, 1, "image", 0, 10.0, s, self.now), s))
        elif OV in self.m:
            ov = self.m[OV]
            known = sorted(ov.mits)
            if known:
                mid = self.rnd.choice(known)
                msg = self.rnd.choice([OversightApprove(mid, "ana"), OversightApprove(mid, "ana"),
                                       OversightReject(mid, "bo"), OversightCancel(mid, "cy")])
                self._apply(OV, ov.handle(msg, OP, self.now))

    def check(self, seed: int) -> None:
        decisions: dict[str, dict] = {}  # from the peers' own records
        for ctrl in MEMBERS:
            for mid, m in self.m[ctrl].council.mits.items():
                if m.peer == ctrl and m.accepted is not None:
                    decisions[mid] = {"accepted": m.accepted, "needs": m.needs_approval, "imposed": m.imposed}
        approved = {mid for mid, m in self.m[OV].mits.items() if m.approved} if OV in self.m else set()
        for ctrl in MEMBERS:
            for mid, m in self.m[ctrl].council.mits.items():
                key = (ctrl, mid)
                old = self.states.get(key)
                if old is not None and old != m.state.value:
                    assert m.state in MIT_TRANSITIONS[type(m.state)(old)], f"seed {seed}: {key} {old} -> {m.state}"
                self.states[key] = m.state.value
                if m.accepted is not None and mid in decisions:
                    assert m.accepted == decisions[mid]["accepted"], f"seed {seed}: {ctrl} disagrees on {mid}"
                if m.state.value == "in_force" or m.redirected or m.admitted:
                    d = decisions.get(mid)
                    assert d is not None and d["accepted"] > 0, f"seed {seed}: {ctrl} enforces {mid} unaccepted"
                    if d["needs"]:
                        assert mid in approved, f"seed {seed}: {ctrl} enforces {mid} without approval"
                    assert len({s[0] for s in m.redirected}) <= d["accepted"], f"seed {seed}: {mid} over-sent"
                    assert len(set(m.admitted)) <= d["accepted"], f"seed {seed}: {mid} over-admitted"


@pytest.mark.parametrize("approval", ["none", "all", "above-share"])
@pytest.mark.parametrize("seed", range(8))
def test_random_schedules_keep_the_council_agreed(seed, approval):
    p = RandomPump(seed, approval)
    for _ in range(600):
        p.step()
        p.check(seed)


def test_random_schedules_do_reach_enforcement():
    """The schedules above are not vacuous: over the seeds, mitigations are decided, approved and enforced."""
    kinds: dict[tuple[str, str], int] = {}
    for approval in ("none", "all"):
        for seed in range(12):
            p = RandomPump(seed, approval)
            for _ in range(600):
                p.step()
            for e in p.events:
                kinds[(approval, e["kind"])] = kinds.get((approval, e["kind"]), 0) + 1
    assert kinds.get(("none", "council.decided"), 0) > 5 and kinds.get(("none", "council.admitted"), 0) > 0, kinds
    assert kinds.get(("all", "oversight.decision"), 0) > 0 and kinds.get(("all", "council.redirect"), 0) > 0, kinds

