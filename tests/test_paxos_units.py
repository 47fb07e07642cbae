"""The Paxos core driven directly (handle/propose in, effects out), raft-paper style.

Source: shared/seeds/002_97a4443258b93c4d.txt, FIGS. 3A-3B (proposal, acceptance
by a minimum number, propagation of accepted values), FIG. 6 (block 610: no
consensus, no value), FIG. 7 (blocks 704-712: accept only the highest
proposal, then transmit the accepted value); DESIGN.md protocol 3. Each test
names the rule it checks. ``Net`` is an in-memory network for scripted
transcripts (deliver / drop / duplicate by hand).
"""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.consensus import (
    ZERO,
    Accept,
    Accepted,
    Ballot,
    Chosen,
    Learned,
    Nack,
    PaxosNode,
    Persist,
    Phase,
    Prepare,
    Promise,
    Quorum,
    check_quorum_size,
    failures_tolerated,
    instance_key,
    majority,
    next_ballot,
    quorums_intersect,
)
from protocols.core import Emit, Send, SetTimer, TimerFired
from transport.codec import decode, encode

M5 = [f"n{i}/paxos" for i in range(1, 6)]
A, B, C, D, E = M5
I = "condition/sector-3"


def node(addr=A, members=M5, seed=0, **kw):
    return PaxosNode(addr, members, random.Random(seed), **kw)


def sends(effects, cls=None):
    return [e for e in effects if isinstance(e, Send) and (cls is None or isinstance(e.msg, cls))]


def emits(effects, kind=None):
    return [e for e in effects if isinstance(e, Emit) and (kind is None or e.kind == kind)]


def persists(effects):
    return [e for e in effects if isinstance(e, Persist)]


# -- quorum arithmetic --------------------------------------------------------------------------


def test_majority_of_n():
    assert [majority(n) for n in range(1, 9)] == [1, 2, 2, 3, 3, 4, 4, 5]
    with pytest.raises(ValueError):
        majority(0)


def test_configured_quorum_must_intersect():
    """'A minimum number must accept': any size is allowed as long as two quorums always meet."""
    assert check_quorum_size(5) == 3
    assert check_quorum_size(5, 4) == 4
    assert check_quorum_size(4, 3) == 3
    for n, q in [(5, 2), (4, 2), (6, 3), (5, 0), (5, 6), (3, 1)]:
        with pytest.raises(ValueError):
            check_quorum_size(n, q)
    assert failures_tolerated(5) == 2 and failures_tolerated(7, 5) == 2 and failures_tolerated(1) == 0


@pytest.mark.parametrize("n", range(1, 7))
def test_intersection_rule_matches_brute_force(n):
    people = range(n)
    for q in range(1, n + 1):
        disjoint = any(not set(a) & set(b)
                       for a in itertools.combinations(people, q) for b in itertools.combinations(people, q))
        assert quorums_intersect(n, q) == (not disjoint), (n, q)


def test_quorum_counts_distinct_members_only():
    q = Quorum(M5)
    assert q.size == 3
    assert not q.reached([A, A, A, "x/y", "z/w"])
    assert q.reached([A, B, C])
    with pytest.raises(ValueError):
        Quorum([A, A, B])
    with pytest.raises(ValueError):
        Quorum(M5, 2)


# -- ballots ---------------------------------------------------------------------------------------


def test_ballots_are_ordered_by_round_then_node():
    bs = [Ballot(2, "a"), Ballot(1, "b"), Ballot(1, "a"), ZERO, Ballot(10, "")]
    assert sorted(bs) == [ZERO, Ballot(1, "a"), Ballot(1, "b"), Ballot(2, "a"), Ballot(10, "")]
    assert Ballot(1, "b") > Ballot(1, "a") and Ballot(2, "a") > Ballot(1, "z")
    with pytest.raises(ValueError):
        Ballot(-1, "a")


@given(st.tuples(st.integers(0, 50), st.text(max_size=3)), st.tuples(st.integers(0, 50), st.text(max_size=3)))
def test_ballot_order_is_total_and_matches_tuples(x, y):
    bx, by = Ballot(*x), Ballot(*y)
    assert (bx < by) == (x < y) and (bx == by) == (x == y)
    assert sum([bx < by, bx == by, bx > by]) == 1
    assert decode(encode(bx)) == bx


def test_next_ballot_is_above_everything_seen():
    b = next_ballot("n", Ballot(4, "zz"), 7, None)
    assert b == Ballot(8, "n") and b > Ballot(7, "zzz")
    assert next_ballot("n") == Ballot(1, "n")


# -- acceptor rules (FIG. 7: accept only the highest proposal) ------------------------------------------


def test_acceptor_promises_a_higher_ballot_and_persists_before_sending():
    n = node(C)
    eff = n.handle(Prepare(I, Ballot(1, A)), A, 0.0)
    kinds = [type(e).__name__ for e in eff]
    assert kinds.index("Persist") < kinds.index("Send"), "persist, then send"
    assert persists(eff)[0].key == instance_key(I) and persists(eff)[0].data["promised"] == [1, A]
    (s,) = sends(eff)
    assert s.to == A and s.msg == Promise(I, Ballot(1, A), None, None)
    assert emits(eff, "paxos.promise")


def test_acceptor_never_promises_a_lower_ballot():
    n = node(C)
    n.handle(Prepare(I, Ballot(2, B)), B, 0.0)
    eff = n.handle(Prepare(I, Ballot(1, E)), E, 0.1)
    (s,) = sends(eff)
    assert s.msg == Nack(I, Ballot(1, E), Ballot(2, B)) and s.to == E
    assert emits(eff, "paxos.nack") and not persists(eff)
    assert n.instances[I].promised == Ballot(2, B)


def test_acceptor_repeats_a_promise_for_a_duplicated_prepare():
    n = node(C)
    n.handle(Prepare(I, Ballot(2, B)), B, 0.0)
    eff = n.handle(Prepare(I, Ballot(2, B)), B, 0.1)
    assert sends(eff, Promise) and not persists(eff)
    assert emits(eff, "paxos.promise")[0].fields["repeat"] is True


def test_acceptor_accepts_at_or_above_its_promise_and_tells_every_learner():
    n = node(C)
    n.handle(Prepare(I, Ballot(2, B)), B, 0.0)
    eff = n.handle(Accept(I, Ballot(2, B), "powered-off"), B, 0.1)
    kinds = [type(e).__name__ for e in eff]
    assert kinds.index("Persist") < kinds.index("Send")
    assert persists(eff)[0].data["accepted"] == [[2, B], "powered-off"]
    assert sorted(s.to for s in sends(eff, Accepted)) == sorted(M5)
    assert n.instances[I].accepted == (Ballot(2, B), "powered-off")
    # above the promise (no prepare seen for it): accepted too, and the promise rises
    eff = n.handle(Accept(I, Ballot(3, A), "ok"), A, 0.2)
    assert sends(eff, Accepted) and n.instances[I].promised == Ballot(3, A)


def test_with_a_distinguished_learner_the_acceptor_tells_only_the_proposer():
    n = node(C, learners="proposer")
    n.handle(Prepare(I, Ballot(2, B)), B, 0.0)
    eff = n.handle(Accept(I, Ballot(2, B), "powered-off"), B, 0.1)
    assert [s.to for s in sends(eff, Accepted)] == [B]
    with pytest.raises(ValueError, match="learners"):
        node(C, learners="some")


def test_acceptor_rejects_accept_below_its_promise():
    n = node(C)
    n.handle(Prepare(I, Ballot(3, D)), D, 0.0)
    eff = n.handle(Accept(I, Ballot(2, B), "x"), B, 0.1)
    (s,) = sends(eff)
    assert s.msg == Nack(I, Ballot(2, B), Ballot(3, D))
    assert n.instances[I].accepted is None


def test_promise_reports_the_last_accepted_value():
    n = node(C)
    n.handle(Accept(I, Ballot(2, B), "needs-repair"), B, 0.0)
    eff = n.handle(Prepare(I, Ballot(5, A)), A, 0.1)
    (s,) = sends(eff)
    assert s.msg == Promise(I, Ballot(5, A), Ballot(2, B), "needs-repair")


def test_acceptor_keeps_only_the_highest_promise_per_instance_and_instances_are_independent():
    n = node(C)
    for b in [Ballot(1, A), Ballot(4, B), Ballot(3, D)]:
        n.handle(Prepare(I, b), b.node, 0.0)
    n.handle(Prepare("authority/dc-1", Ballot(1, E)), E, 0.0)
    assert n.instances[I].promised == Ballot(4, B)
    assert n.instances["authority/dc-1"].promised == Ballot(1, E)


# -- proposer rules ---------------------------------------------------------------------------------


def test_propose_prepares_to_all_members_with_a_fresh_ballot_and_a_random_timer():
    n = node(A, seed=3)
    eff = n.propose(I, "powered-off", 1.0)
    kinds = [type(e).__name__ for e in eff]
    assert kinds.index("Persist") < kinds.index("Send"), "the round is persisted before it is used"
    assert persists(eff)[0].data == {"round": 1, "pending": {I: "powered-off"}}
    assert sorted(s.to for s in sends(eff, Prepare)) == sorted(M5)
    assert {s.msg.ballot for s in sends(eff)} == {Ballot(1, A)}
    (t,) = [e for e in eff if isinstance(e, SetTimer)]
    assert 1.05 <= t.at <= 1.15 and t.key == f"retry/{I}"
    assert emits(eff, "paxos.propose") and n.phase(I) is Phase.PREPARING
    # same rng seed, same timer: jitter comes only from the injected rng
    assert [e for e in node(A, seed=3).propose(I, "powered-off", 1.0) if isinstance(e, SetTimer)] == [t]


def test_proposer_sends_accept_only_with_a_quorum_of_promises():
    n = node(A)
    n.propose(I, "v", 0.0)
    b = Ballot(1, A)
    assert n.handle(Promise(I, b), A, 0.0) == []
    assert n.handle(Promise(I, b), A, 0.0) == [], "a duplicated promise counts once"
    assert n.handle(Promise(I, b), B, 0.0) == []
    eff = n.handle(Promise(I, b), C, 0.0)
    assert {s.msg for s in sends(eff)} == {Accept(I, b, "v")}
    assert n.phase(I) is Phase.ACCEPTING
    assert emits(eff, "paxos.accept")[0].fields["adopted"] is False


def test_proposer_adopts_the_highest_accepted_value_among_promises():
    n = node(A)
    n.propose(I, "mine", 0.0)
    n.handle(Nack(I, Ballot(1, A), Ballot(1, E)), C, 0.1)  # preempted by 1.E
    n.handle(TimerFired(f"retry/{I}"), A, 0.2)  # ballot 2.A
    b = Ballot(2, A)
    n.handle(Promise(I, b, Ballot(1, D), "older"), B, 0.2)
    n.handle(Promise(I, b, None, None), C, 0.2)
    eff = n.handle(Promise(I, b, Ballot(1, E), "newest"), D, 0.2)
    assert {s.msg for s in sends(eff)} == {Accept(I, b, "newest")}
    f = emits(eff, "paxos.accept")[0].fields
    assert f["adopted"] is True and f["adopted_from"] == [1, E]


def test_retry_uses_a_higher_ballot_than_any_nack_reported():
    n = node(A)
    n.propose(I, "v", 0.0)
    eff = n.handle(Nack(I, Ballot(1, A), Ballot(7, E)), B, 0.01)
    assert emits(eff, "paxos.preempted") and not sends(eff)
    eff = n.handle(TimerFired(f"retry/{I}"), A, 0.2)
    assert emits(eff, "paxos.retry")
    assert {s.msg.ballot for s in sends(eff)} == {Ballot(8, A)}


def test_retry_without_a_nack_resends_the_same_ballot_to_members_that_have_not_answered():
    """Late promises stay useful: a timeout alone never throws a ballot away."""
    n = node(A)
    n.propose(I, "v", 0.0)
    b = Ballot(1, A)
    n.handle(Promise(I, b), A, 0.01)
    n.handle(Promise(I, b), B, 0.01)
    eff = n.handle(TimerFired(f"retry/{I}"), A, 0.2)
    assert emits(eff, "paxos.retry")[0].fields["resend"] is True
    assert not persists(eff), "no new round, nothing to persist"
    assert sorted(s.to for s in sends(eff)) == [C, D, E]
    assert {s.msg for s in sends(eff)} == {Prepare(I, b)}
    eff = n.handle(Promise(I, b), D, 0.25)  # a late promise for the same ballot completes the quorum
    assert {s.msg for s in sends(eff)} == {Accept(I, b, "v")}
    # phase 2: the Accept is resent to the members whose Accepted has not been heard
    n.handle(Accepted(I, b, "v"), A, 0.26)
    eff = n.handle(TimerFired(f"retry/{I}"), A, 0.5)
    assert sorted(s.to for s in sends(eff)) == [B, C, D, E]
    assert {s.msg for s in sends(eff)} == {Accept(I, b, "v")}
    assert n.phase(I) is Phase.ACCEPTING


def test_retry_after_a_nack_takes_a_new_ballot_in_either_phase():
    n = node(A)
    n.propose(I, "v", 0.0)
    b = Ballot(1, A)
    for m in (A, B, C):
        n.handle(Promise(I, b), m, 0.01)
    n.handle(Nack(I, b, Ballot(4, E)), D, 0.02)  # D promised 4.E meanwhile
    eff = n.handle(TimerFired(f"retry/{I}"), A, 0.2)
    assert emits(eff, "paxos.retry")[0].fields["resend"] is False
    assert {s.msg for s in sends(eff)} == {Prepare(I, Ballot(5, A))} and n.phase(I) is Phase.PREPARING


def test_retry_backs_off_exponentially_up_to_a_cap():
    n = node(A, retry_timeout=(1.0, 1.0), max_backoff=4.0)
    at = [e.at for e in n.propose(I, "v", 0.0) if isinstance(e, SetTimer)]
    now = 0.0
    for _ in range(4):
        now = at[-1]
        at += [e.at for e in n.handle(TimerFired(f"retry/{I}"), A, now) if isinstance(e, SetTimer)]
    assert [round(b - a, 6) for a, b in zip(at, at[1:])] == [2.0, 4.0, 4.0, 4.0]


def test_learner_learns_on_a_quorum_of_accepted_for_one_ballot():
    n = node(E)
    b1, b2 = Ballot(1, A), Ballot(2, B)
    n.handle(Accepted(I, b1, "x"), A, 0.0)
    n.handle(Accepted(I, b2, "x"), B, 0.0)
    assert n.handle(Accepted(I, b1, "x"), C, 0.0) == [], "two ballots do not add up"
    eff = n.handle(Accepted(I, b1, "x"), D, 0.0)
    (c,) = emits(eff, "paxos.chosen")
    assert c.fields["instance"] == I and c.fields["value"] == "x" and c.fields["ballot"] == [1, A]
    assert persists(eff)[0].data["chosen"] == [[1, A], "x"]
    assert n.chosen(I) == (b1, "x")
    assert emits(n.handle(Accepted(I, b1, "x"), E, 0.0), "paxos.chosen") == [], "chosen is reported once"


def test_proposer_propagates_chosen_until_every_member_acknowledges():
    n = node(A, announce_every=0.5)
    n.propose(I, "v", 0.0)
    b = Ballot(1, A)
    for m in (A, B, C):
        n.handle(Promise(I, b), m, 0.0)
    eff = []
    for m in (A, B, C):
        eff = n.handle(Accepted(I, b, "v"), m, 0.0)
    assert emits(eff, "paxos.chosen") and n.phase(I) is Phase.DONE
    assert sorted(s.to for s in sends(eff, Chosen)) == [B, C, D, E]
    for m in (B, C, D):
        n.handle(Learned(I, b), m, 0.1)
    eff = n.handle(TimerFired(f"announce/{I}"), A, 0.5)
    assert [s.to for s in sends(eff, Chosen)] == [E]
    assert [type(e).__name__ for e in n.handle(Learned(I, b), E, 0.6)] == ["CancelTimer"]


def test_member_that_knows_the_value_answers_late_prepares_with_chosen():
    n = node(C)
    n.handle(Chosen(I, Ballot(1, A), "v"), A, 0.0)
    (s,) = sends(n.handle(Prepare(I, Ballot(9, E)), E, 1.0))
    assert s.msg == Chosen(I, Ballot(1, A), "v") and s.to == E
    eff = n.propose(I, "other", 1.0)
    assert emits(eff, "paxos.propose")[0].fields["outcome"] == "already-chosen" and not sends(eff)


# -- illegal and stale (phase, message) pairs: ignored, with an event ------------------------------------


@pytest.mark.parametrize("msg, sender, why", [
    (Promise(I, Ballot(1, A)), B, "while idle"),
    (Nack(I, Ballot(1, A), Ballot(2, B)), B, "while idle"),
    (Prepare(I, Ballot(1, A)), "intruder/x", "not a member"),
    (Accepted(I, Ballot(1, A), "v"), "intruder/x", "not a member"),
    (TimerFired(f"retry/{I}"), A, "retry timer while idle"),
    (TimerFired("bogus/x"), A, "unknown timer"),
])
def test_illegal_pairs_are_ignored_with_an_event(msg, sender, why):
    n = node(A)
    if isinstance(msg, TimerFired) and msg.key.startswith("retry"):
        n._inst(I)
    eff = n.handle(msg, sender, 0.0)
    (e,) = eff
    assert e.kind == "paxos.ignored" and why in e.fields["reason"]


def test_stale_promise_for_an_old_ballot_is_ignored():
    n = node(A)
    n.propose(I, "v", 0.0)
    n.handle(Nack(I, Ballot(1, A), Ballot(1, E)), C, 0.1)
    n.handle(TimerFired(f"retry/{I}"), A, 0.2)
    (e,) = n.handle(Promise(I, Ballot(1, A)), B, 0.2)
    assert e.kind == "paxos.ignored"


def test_conflicting_values_for_one_ballot_are_reported_not_learned():
    n = node(E)
    n.handle(Accepted(I, Ballot(1, A), "x"), A, 0.0)
    (e,) = n.handle(Accepted(I, Ballot(1, A), "y"), B, 0.0)
    assert e.kind == "paxos.conflict"


def test_configuration_is_validated():
    with pytest.raises(ValueError):
        PaxosNode("x/y", M5, random.Random(0))
    with pytest.raises(ValueError):
        PaxosNode(A, M5, random.Random(0), quorum=2)
    with pytest.raises(TypeError):
        PaxosNode(A, M5, None)
    with pytest.raises(ValueError):
        node().propose("", "v", 0.0)


# -- restart: persisted acceptor state survives ---------------------------------------------------------


def disk_of(*effect_lists):
    disk = {}
    for eff in effect_lists:
        for e in persists(eff):
            disk[e.key] = e.data
    return disk


def test_restarted_acceptor_that_restored_its_state_never_breaks_a_promise():
    n = node(C)
    e1 = n.handle(Prepare(I, Ballot(1, A)), A, 0.0)
    e2 = n.handle(Accept(I, Ballot(1, A), "x"), A, 0.0)
    e3 = n.handle(Prepare(I, Ballot(3, B)), B, 0.0)
    disk = disk_of(e1, e2, e3)
    assert disk == {k: v for k, v in n.state().items() if k != "proposer"}, "state() is what Persist wrote"
    r = PaxosNode.restore(disk, C, M5, random.Random(1))
    (s,) = sends(r.handle(Accept(I, Ballot(2, D), "y"), D, 1.0))
    assert isinstance(s.msg, Nack) and s.msg.promised == Ballot(3, B)
    (s,) = sends(r.handle(Prepare(I, Ballot(2, D)), D, 1.0))
    assert isinstance(s.msg, Nack)
    (s,) = sends(r.handle(Prepare(I, Ballot(4, D)), D, 1.0))
    assert s.msg == Promise(I, Ballot(4, D), Ballot(1, A), "x"), "the accepted value survives too"


def test_an_acceptor_restarted_without_its_state_would_break_its_promise():
    """The counterfactual: this is exactly what Persist prevents."""
    n = node(C)
    n.handle(Prepare(I, Ballot(3, B)), B, 0.0)
    amnesiac = node(C, seed=1)
    assert sends(amnesiac.handle(Accept(I, Ballot(2, D), "y"), D, 1.0), Accepted)


def test_restarted_proposer_never_reuses_a_ballot_and_resumes_its_proposal():
    n = node(A)
    eff = n.propose(I, "v", 0.0)
    n.handle(Nack(I, Ballot(1, A), Ballot(1, E)), C, 0.1)
    eff2 = n.handle(TimerFired(f"retry/{I}"), A, 0.2)  # a new ballot: round 2, persisted
    r = PaxosNode(A, M5, random.Random(5), durable=disk_of(eff, eff2))
    eff = r.tick(5.0)
    assert emits(eff, "paxos.propose")[0].fields["outcome"] == "resumed"
    assert {s.msg for s in sends(eff)} == {Prepare(I, Ballot(3, A))}
    assert r.tick(6.0) == [], "only the start tick resumes"


def test_restored_learner_keeps_the_chosen_value():
    n = node(D)
    eff = n.handle(Chosen(I, Ballot(2, B), "v"), B, 0.0)
    r = PaxosNode.restore(disk_of(eff), D, M5, random.Random(0))
    assert r.chosen(I) == (Ballot(2, B), "v") and r.chosen_values() == {I: "v"}


# -- scripted transcripts (an in-memory network, delivered by hand) ---------------------------------------


class Net:
    """Nodes joined in memory; messages wait in ``pending`` until delivered (or dropped) by the script."""

    def __init__(self, members, **kw):
        self.nodes = {m: PaxosNode(m, members, random.Random(i), **kw) for i, m in enumerate(members)}
        self.pending: list[tuple[str, str, object]] = []
        self.log: list[str] = []
        self.now = 0.0

    def _apply(self, src, effects):
        for e in effects:
            if isinstance(e, Send):
                self.pending.append((src, e.to, e.msg))
            elif isinstance(e, Emit) and e.kind in ("paxos.accept", "paxos.preempted", "paxos.retry", "paxos.chosen"):
                f = e.fields
                self.log.append(f"{src[:2]} {e.kind} {f.get('ballot')} {f.get('value', '')}".rstrip())

    def propose(self, who, value):
        self._apply(who, self.nodes[who].propose(I, value, self.now))

    def fire(self, who, key):
        self._apply(who, self.nodes[who].handle(TimerFired(key), who, self.now))

    def deliver(self, pred=lambda s, d, m: True, drop=False, dup=False):
        """Deliver (or drop) every pending message matching pred, in order; returns how many."""
        now, self.pending = [p for p in self.pending if pred(*p)], [p for p in self.pending if not pred(*p)]
        for src, dst, msg in now:
            if drop:
                continue
            for _ in range(2 if dup else 1):
                self._apply(dst, self.nodes[dst].handle(decode(encode(msg)), src, self.now))
        return len(now)

    def stabilize(self):
        while self.deliver():
            pass


def kind(cls):
    return lambda s, d, m: isinstance(m, cls)


def test_duelling_proposers_transcript():
    """Two proposers outbid each other; the second round's value is adopted, never contradicted."""
    net = Net(M5)
    net.propose(A, "powered-off")
    net.propose(E, "needs-repair")
    # A's prepare reaches A, B, C; E's reaches C, D, E: C promises 1.A then 1.E (higher).
    net.deliver(lambda s, d, m: isinstance(m, Prepare) and s == A and d in (A, B, C))
    net.deliver(lambda s, d, m: isinstance(m, Prepare) and s == E and d in (C, D, E))
    net.deliver(kind(Prepare), drop=True)
    net.deliver(kind(Promise))  # both reach a quorum of promises: both send Accept
    # A's accept reaches A and B (C promised 1.E: nack); E's accept: C, D, E.
    net.deliver(lambda s, d, m: isinstance(m, Accept) and s == A and d in (A, B, C))
    net.deliver(lambda s, d, m: isinstance(m, Accept) and s == E and d in (C, D, E))
    net.deliver(kind(Accept), drop=True)
    net.deliver(kind(Nack))
    net.deliver(kind(Accepted), drop=True)  # all votes lost: nobody has learned yet
    # A times out first, retries at 2.A; the promises report C's 1.E acceptance.
    net.now = 1.0
    net.fire(A, f"retry/{I}")
    net.deliver(kind(Prepare), dup=True)  # duplicated prepares: repeat promises, harmless
    net.deliver(kind(Promise))
    net.deliver(kind(Nack))
    net.stabilize()
    # E times out later: it learns the value through Chosen, its retry timer is cancelled.
    assert net.log == [
        "n1 paxos.accept [1, 'n1/paxos'] powered-off",
        "n5 paxos.accept [1, 'n5/paxos'] needs-repair",
        "n1 paxos.preempted [1, 'n1/paxos']",
        "n1 paxos.retry [1, 'n1/paxos']",
        "n1 paxos.accept [2, 'n1/paxos'] needs-repair",
        "n1 paxos.chosen [2, 'n1/paxos'] needs-repair",
        "n2 paxos.chosen [2, 'n1/paxos'] needs-repair",
        "n3 paxos.chosen [2, 'n1/paxos'] needs-repair",
        "n4 paxos.chosen [2, 'n1/paxos'] needs-repair",
        "n5 paxos.chosen [2, 'n1/paxos'] needs-repair",
    ]
    assert {m: n.chosen(I)[1] for m, n in net.nodes.items()} == dict.fromkeys(M5, "needs-repair")
    assert net.nodes[E].phase(I) is Phase.DONE and net.nodes[A].phase(I) is Phase.DONE


def test_lost_messages_are_recovered_by_retry():
    net = Net(M5)
    net.propose(B, "x")
    net.deliver(kind(Prepare), drop=True)
    net.now = 1.0
    net.fire(B, f"retry/{I}")
    net.deliver(kind(Prepare))
    net.deliver(kind(Promise))
    net.deliver(kind(Accept))
    net.deliver(lambda s, d, m: isinstance(m, Accepted) and d != B, drop=True)  # only B learns
    net.stabilize()  # B's acked Chosen broadcast teaches the rest
    assert {n.chosen(I)[1] for n in net.nodes.values()} == {"x"}


def test_distinguished_learner_transcript_everyone_learns_from_chosen_in_2n_votes():
    """learners="proposer": n Accepted (not n*n), then the proposer's acked Chosen teaches the rest."""
    net = Net(M5, learners="proposer")
    net.propose(C, "needs-repair")
    net.deliver(kind(Prepare))
    net.deliver(kind(Promise))
    net.deliver(kind(Accept))
    votes = [(s, d) for s, d, m in net.pending if isinstance(m, Accepted)]
    assert len(votes) == 5 and {d for _s, d in votes} == {C}
    net.deliver(kind(Accepted))
    assert net.nodes[C].chosen(I)[1] == "needs-repair"
    assert all(net.nodes[m].chosen(I) is None for m in M5 if m != C), "the others learn one hop later"
    net.deliver(lambda s, d, m: isinstance(m, Chosen) and d == D, drop=True)  # D misses it once
    net.stabilize()
    assert all(net.nodes[m].chosen(I) is None or m != D for m in M5)
    net.now = 5.0
    net.fire(C, f"announce/{I}")  # the announcement is retried until every member acks
    net.stabilize()
    assert {m: n.chosen(I)[1] for m, n in net.nodes.items()} == dict.fromkeys(M5, "needs-repair")


def test_distinguished_learner_that_abandoned_its_ballot_still_announces_the_votes_it_counts():
    """Only the ballot's proposer gets the votes: it must pass the value on even after abandoning."""
    net = Net(M5, learners="proposer")
    net.propose(C, "needs-repair")
    net.deliver(kind(Prepare))
    net.deliver(kind(Promise))
    net.deliver(kind(Accept))
    net._apply(C, net.nodes[C].abandon(I, net.now))
    assert net.nodes[C].phase(I) is Phase.IDLE
    net.stabilize()
    assert {m: n.chosen(I)[1] for m, n in net.nodes.items()} == dict.fromkeys(M5, "needs-repair")


def test_without_a_quorum_nothing_is_chosen():
    """FIG. 6, block 610: two of five can talk; the proposer retries and nothing is chosen."""
    net = Net(M5)
    net.propose(A, "dc-2-down")
    for attempt in range(6):
        net.deliver(lambda s, d, m: d not in (A, B), drop=True)
        net.stabilize()
        net.now += 10
        net.fire(A, f"retry/{I}")
    assert all(n.chosen(I) is None for n in net.nodes.values())
    assert "paxos.chosen" not in " ".join(net.log)
