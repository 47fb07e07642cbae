"""Single-decree Paxos for many independent instances, as one pure state machine.

How this works
--------------
Every participant (a rack monitor, say) runs one :class:`PaxosNode` that plays
all three roles for any number of *instances*, each keyed by a string such as
``"condition/sector-3"`` or ``"authority/dc-1"``. Instances never interact:
each decides at most one value.

* **Proposer.** The host calls ``propose(instance, value, now)`` (an API call,
  not a message). The proposer picks a ballot above every round it has used
  or heard of, persists that round, and sends ``Prepare`` to all members
  (itself included). With promises from a quorum it sends ``Accept`` with the
  value of the highest-ballot acceptance reported in those promises, or its
  own value if none was reported (the rule that makes Paxos safe). If no value
  is learned before a randomized timeout (drawn from the injected
  ``random.Random``, backing off exponentially) it retries. A retry that was
  not preempted *resends* the same ``Prepare`` (or ``Accept``) to the members
  that have not answered it: lost messages are repaired without throwing away
  the promises already in flight (on a loaded host a fresh ballot per timeout
  makes every late promise useless, and proposers livelock). Only a ``Nack``
  (some acceptor promised a higher ballot) makes the next retry take a new
  ballot, above the one that beat it. Resending is safe: an acceptor answers
  a repeated ``Prepare``/``Accept`` of one ballot as it did the first time.
* **Acceptor.** Keeps, per instance, only the highest ballot it promised and
  the last (ballot, value) it accepted. ``Prepare(b)``: promise if ``b`` is
  above the promise (a repeated ``Prepare`` of the promised ballot gets the
  same promise again), else ``Nack``. ``Accept(b, v)``: accept if ``b`` is at
  least the promise, else ``Nack``. Accepting tells ``Accepted`` to every
  member (``learners="all"``, the default) or only to the ballot's proposer
  (``learners="proposer"``: Lamport's distinguished learner).
* **Learner.** Counts ``Accepted`` per ballot; a quorum for one ballot means
  that ballot's value is chosen. With ``"all"`` every member learns one hop
  after the acceptors, at n*n messages per instance; with ``"proposer"`` only
  the proposer counts votes and the others learn from its ``Chosen``
  (below): one more hop, but n messages instead of n*n, which is what a
  loaded host wants. If that proposer dies between the votes and its
  ``Chosen``, the others learn the value when any of them next proposes on
  the instance (the promises report it). The node reports it once as
  ``Emit("paxos.chosen", {instance, value, ballot})``. The proposer that
  learned it propagates ``Chosen`` to every member until each answers
  ``Learned`` (retried every ``announce_every`` seconds, backing off), and any
  member that knows the value answers later ``Prepare``/``Accept`` for that
  instance with ``Chosen``. That duty is not persisted: a restarted node
  re-announces every value it knows on its start tick. (If the announcing node
  dies for good, a member that missed the value learns it by proposing on that
  instance: the answer is ``Chosen``.)

Proposer phases per instance (:class:`Phase`; all changes go through
``_become``, which emits ``paxos.phase``)::

    IDLE --propose--> PREPARING --quorum of promises--> ACCEPTING
      PREPARING/ACCEPTING --timeout--> same phase, same ballot, resent (paxos.retry, resend)
      PREPARING/ACCEPTING --nack, then timeout--> PREPARING (higher ballot, paxos.retry)
      any --value learned--> DONE

Durable state and the order of effects (as in etcd raft: persist, then
send). The acceptor's promise and acceptance, the learned value, the
proposer's highest round and its unfinished proposals must survive a crash.
Whenever they change the machine returns ``Persist(key, data)`` *before* any
``Send`` that reveals the change; the host must write (and fsync) the data
before it carries out later effects of the same list. A restarted node is
built with ``PaxosNode(..., durable=saved)`` where ``saved`` maps each key to
its latest data (``state()`` returns the same mapping from a live node), and
resumes its unfinished proposals on its first ``tick``. ``retire(instance)``
deletes an instance's key (``Persist(key, None)``: the store drops it) for a
host that refuses that instance from then on (see its docstring). Without that an
acceptor could promise or accept below its old promise, and a proposer could
reuse a ballot with a different value.

Quorum: ``quorum`` members out of ``members`` (default: a majority); sizes for
which two quorums could be disjoint are refused. Without a quorum nothing is
chosen: the proposer keeps retrying, and the host keeps (or reverts to) its
default assumption.

Member groups: by default every instance has the node's ``members`` and
``quorum``. A host that runs several groups through one node (the rack
monitors: a sector, a data center, the fleet) passes ``members_of(instance)
-> Quorum | None`` instead; each instance's group is resolved once, when the
node first meets it, and never changes (so any two quorums of one instance
intersect: the property Paxos's safety rests on). Messages for an instance
whose group does not include this node are ignored.

Illegal or stale (phase, message) pairs - a promise for an old ballot, a
message from a non-member, a promise while idle - are ignored, each with a
``paxos.ignored`` event saying why. Events: ``paxos.propose``,
``paxos.phase``, ``paxos.promise``, ``paxos.accept`` (a proposer starts phase
2), ``paxos.accepted`` (an acceptor accepted), ``paxos.nack``,
``paxos.preempted``, ``paxos.retry``, ``paxos.chosen``, ``paxos.ignored`` and
``paxos.conflict`` (evidence of a safety violation; never expected).
"""

from __future__ import annotations

import enum
import random
from typing import Any, Callable

import attrs

from protocols.consensus.ballot import Ballot, next_ballot
from protocols.consensus.messages import (
    Accept,
    Accepted,
    Chosen,
    Learned,
    Nack,
    Prepare,
    Promise,
)
from protocols.consensus.quorum import Quorum
from protocols.core import CancelTimer, Effect, Emit, Persist, Send, SetTimer, TimerFired

__all__ = ["PROPOSER_KEY", "InstanceState", "Paxos", "PaxosNode", "Persist", "Phase", "instance_key"]

PROPOSER_KEY = "proposer"


def instance_key(instance: str) -> str:
    """The durable key of one instance's acceptor/learner state."""
    return f"instance/{instance}"


class Phase(enum.Enum):
    IDLE = "idle"
    PREPARING = "preparing"
    ACCEPTING = "accepting"
    DONE = "done"


def _b(b: Ballot | None) -> list | None:
    return None if b is None else b.as_list()


class InstanceState:
    """Everything one node holds about one instance (acceptor, learner, proposer parts)."""

    __slots__ = (
        "accepted",
        "announces",
        "attempts",
        "ballot",
        "chosen",
        "name",
        "phase",
        "preempted",
        "promised",
        "quorum",
        "promises",
        "seen_round",
        "unconfirmed",
        "value",
        "votes",
        "want",
    )

    def __init__(self, name: str, quorum: Quorum) -> None:
        self.name = name
        self.quorum = quorum  # the instance's members and quorum size (fixed for its life)
        # acceptor (durable)
        self.promised: Ballot | None = None
        self.accepted: tuple[Ballot, Any] | None = None
        # learner (chosen is durable)
        self.chosen: tuple[Ballot, Any] | None = None
        self.votes: dict[Ballot, tuple[Any, set[str]]] = {}
        # proposer
        self.phase = Phase.IDLE
        self.want: Any = None
        self.ballot: Ballot | None = None
        self.promises: dict[str, tuple[Ballot | None, Any]] = {}
        self.value: Any = None  # what this proposer's Accept at ``ballot`` carries (phase 2)
        self.preempted = False  # a Nack for ``ballot`` came: the next retry takes a new ballot
        self.seen_round = 0
        self.attempts = 0
        self.unconfirmed: set[str] = set()
        self.announces = 0

    def durable(self) -> dict:
        return {
            "promised": _b(self.promised),
            "accepted": None if self.accepted is None else [self.accepted[0].as_list(), self.accepted[1]],
            "chosen": None if self.chosen is None else [self.chosen[0].as_list(), self.chosen[1]],
        }

    def load(self, data: dict) -> None:
        p, a, c = data.get("promised"), data.get("accepted"), data.get("chosen")
        self.promised = None if p is None else Ballot.from_list(p)
        self.accepted = None if a is None else (Ballot.from_list(a[0]), a[1])
        self.chosen = None if c is None else (Ballot.from_list(c[0]), c[1])
        top = max((b.round for b in (self.promised, self.accepted and self.accepted[0]) if b), default=0)
        self.seen_round = top


class PaxosNode:
    """One participant: proposer, acceptor and learner for every instance."""

    tick_interval = None

    def __init__(
        self,
        address: str,
        members: list[str] | tuple[str, ...],
        rng: random.Random,
        *,
        quorum: int | None = None,
        retry_timeout: tuple[float, float] = (0.05, 0.15),
        max_backoff: float = 8.0,
        announce_every: float = 0.2,
        durable: dict[str, Any] | None = None,
        members_of: Callable[[str], Quorum | None] | None = None,
        learners: str = "all",
    ) -> None:
        if learners not in ("all", "proposer"):
            raise ValueError(f"learners must be 'all' or 'proposer', got {learners!r}")
        if members_of is None and address not in members:
            raise ValueError(f"{address!r} is not among the members {list(members)!r}")
        lo, hi = retry_timeout
        if not 0 < lo <= hi:
            raise ValueError(f"retry_timeout must be (lo, hi) with 0 < lo <= hi, got {retry_timeout!r}")
        if not max_backoff >= 1:
            raise ValueError(f"max_backoff must be >= 1, got {max_backoff!r}")
        if not announce_every > 0:
            raise ValueError(f"announce_every must be > 0, got {announce_every!r}")
        if not isinstance(rng, random.Random):
            raise TypeError(f"rng must be a random.Random (inject it), got {rng!r}")
        self.address = address
        self.quorum = Quorum(tuple(members), quorum) if members else None
        self.members = self.quorum.members if self.quorum is not None else ()
        self.members_of = members_of
        self.rng = rng
        self.retry_timeout = (float(lo), float(hi))
        self.max_backoff = float(max_backoff)
        self.announce_every = float(announce_every)
        self.learners = learners
        self.instances: dict[str, InstanceState] = {}
        self.round = 0  # highest round this node has used as a proposer (durable)
        self.pending: dict[str, Any] = {}  # unfinished proposals (durable): instance -> value
        self.started = False
        for key, data in (durable or {}).items():
            if key == PROPOSER_KEY:
                self.round = int(data.get("round", 0))
                self.pending = dict(data.get("pending", {}))
            elif key.startswith("instance/"):
                if data is None:
                    continue  # retired (a store that keeps deleted keys as None)
                st = self._inst(key[len("instance/"):])
                if st is None:
                    raise ValueError(f"durable state for instance {key!r}, which has no member group")
                st.load(data)
            else:
                raise ValueError(f"unknown durable key {key!r}")

    # -- host API ----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The durable state as ``{key: data}``; what ``Persist`` effects have written so far."""
        out: dict[str, Any] = {PROPOSER_KEY: self._proposer_data()}
        for name, st in self.instances.items():
            d = st.durable()
            if any(v is not None for v in d.values()):
                out[instance_key(name)] = d
        return out

    @classmethod
    def restore(cls, snapshot: dict[str, Any], address: str, members, rng: random.Random, **kw) -> PaxosNode:
        """A restarted node from a ``state()`` snapshot (or the data its Persists wrote)."""
        return cls(address, members, rng, durable=snapshot, **kw)

    def chosen(self, instance: str) -> tuple[Ballot, Any] | None:
        st = self.instances.get(instance)
        return None if st is None else st.chosen

    def chosen_values(self) -> dict[str, Any]:
        return {k: st.chosen[1] for k, st in self.instances.items() if st.chosen is not None}

    def phase(self, instance: str) -> Phase:
        st = self.instances.get(instance)
        return Phase.IDLE if st is None else st.phase

    def propose(self, instance: str, value: Any, now: float) -> list[Effect]:
        """Ask for ``value`` to be chosen in ``instance`` (another value may win; see paxos.chosen)."""
        if not isinstance(instance, str) or not instance:
            raise ValueError(f"an instance id must be a non-empty str, got {instance!r}")
        st = self._inst(instance)
        if st is None:
            raise ValueError(f"{self.address} is not a member of instance {instance!r}'s group")
        if st.chosen is not None:
            return [Emit("paxos.propose", {"instance": instance, "value": value, "outcome": "already-chosen",
                                           "chosen": st.chosen[1]})]
        if st.phase in (Phase.PREPARING, Phase.ACCEPTING):
            return [Emit("paxos.propose", {"instance": instance, "value": value, "outcome": "in-progress",
                                           "wanted": st.want})]
        st.want = value
        self.pending[instance] = value
        st.attempts = 0
        effects: list[Effect] = [Emit("paxos.propose", {"instance": instance, "value": value, "outcome": "started"})]
        return effects + self._new_ballot(st, now)

    def abandon(self, instance: str, now: float) -> list[Effect]:
        """Stop proposing on ``instance`` (the host no longer wants it); acceptor and learner duties go on.

        Safe at any point: a proposer may always stop. Its ballot may still be
        accepted by acceptors that received it, and another proposer then finishes it.
        """
        st = self.instances.get(instance)
        if st is None or st.phase not in (Phase.PREPARING, Phase.ACCEPTING):
            return []
        self.pending.pop(instance, None)
        st.want = None
        return [Persist(PROPOSER_KEY, self._proposer_data()), CancelTimer(f"retry/{instance}"),
                *self._become(st, Phase.IDLE, "abandoned by the host")]

    def raise_round(self, round_: int) -> list[Effect]:
        """Use only ballot rounds above ``round_`` from now on (durably).

        For a host whose node lost its durable state: rounds it used before are
        unknown, so it learns the highest round its peers have seen and starts
        above it (a ballot reused with a different value would break Paxos).
        """
        if round_ <= self.round:
            return []
        self.round = int(round_)
        return [Persist(PROPOSER_KEY, self._proposer_data())]

    def retire(self, instance: str) -> list[Effect]:
        """Forget ``instance`` for good: its durable key is deleted (``Persist(key, None)``), its timers cancelled.

        Only for a host that will never hand this node a message of that instance again (it
        keeps a watermark, durably *before* these effects, and refuses the instance itself):
        a node that forgot an instance and then voted in it afresh could help choose a second value.
        """
        st = self.instances.pop(instance, None)
        effects: list[Effect] = []
        if self.pending.pop(instance, None) is not None:
            effects.append(Persist(PROPOSER_KEY, self._proposer_data()))
        if st is None:
            return effects
        if any(v is not None for v in st.durable().values()):
            effects.append(Persist(instance_key(instance), None))
        if st.phase in (Phase.PREPARING, Phase.ACCEPTING):
            effects.append(CancelTimer(f"retry/{instance}"))
        if st.unconfirmed:
            effects.append(CancelTimer(f"announce/{instance}"))
        return effects

    def highest_round_seen(self) -> int:
        """The highest ballot round this node has used, promised, accepted or learned in any instance."""
        top = self.round
        for st in self.instances.values():
            for b in (st.promised, st.accepted and st.accepted[0], st.chosen and st.chosen[0]):
                if b is not None and b.round > top:
                    top = b.round
        return top

    def tick(self, now: float) -> list[Effect]:
        """The start tick: re-announce known values, resume proposals unfinished when the node went down."""
        if self.started:
            return []
        self.started = True
        effects: list[Effect] = []
        # The duty to propagate a learned value is not durable (acks would each need a write):
        # a restarted node re-announces every value it knows, acked as usual.
        for instance, st in sorted(self.instances.items()):
            if st.chosen is not None:
                st.phase = Phase.DONE
                st.unconfirmed = set(st.quorum.members) - {self.address}
                effects += self._announce(st, now, sorted(st.unconfirmed))
        for instance, value in sorted(self.pending.items()):
            st = self._inst(instance)
            if st is None or st.chosen is not None:
                continue
            st.want = value
            effects.append(Emit("paxos.propose", {"instance": instance, "value": value, "outcome": "resumed"}))
            effects += self._new_ballot(st, now)
        return effects

    # -- messages ----------------------------------------------------------------------

    def handle(self, msg: Any, sender: str, now: float) -> list[Effect]:
        if isinstance(msg, TimerFired):
            if sender != self.address:
                return [self._ignored(None, msg, sender, "timer from another address")]
            return self._on_timer(msg.key, now)
        handler = self._handlers.get(type(msg))
        if handler is None:
            return [self._ignored(None, msg, sender, "not a paxos message")]
        st = self._inst(msg.instance)
        if st is None:
            return [self._ignored(msg.instance, msg, sender, "no member group of this node for the instance")]
        if sender not in st.quorum.members:
            return [self._ignored(msg.instance, msg, sender, "sender is not a member")]
        return handler(self, st, msg, sender, now)

    # acceptor --------------------------------------------------------------------------

    def _on_prepare(self, st: InstanceState, m: Prepare, sender: str, now: float) -> list[Effect]:
        if st.chosen is not None:
            return [Send(sender, Chosen(st.name, st.chosen[0], st.chosen[1]))]
        st.seen_round = max(st.seen_round, m.ballot.round)
        if st.promised is not None and m.ballot < st.promised:
            return self._nack(st, m.ballot, sender, "prepare")
        repeat = st.promised == m.ballot
        st.promised = m.ballot
        acc_b, acc_v = st.accepted if st.accepted is not None else (None, None)
        effects: list[Effect] = [] if repeat else [Persist(instance_key(st.name), st.durable())]
        return effects + [
            Emit("paxos.promise", {"instance": st.name, "ballot": _b(m.ballot), "to": sender,
                                   "accepted_ballot": _b(acc_b), "accepted_value": acc_v, "repeat": repeat}),
            Send(sender, Promise(st.name, m.ballot, acc_b, acc_v)),
        ]

    def _on_accept(self, st: InstanceState, m: Accept, sender: str, now: float) -> list[Effect]:
        if st.chosen is not None:
            return [Send(sender, Chosen(st.name, st.chosen[0], st.chosen[1]))]
        st.seen_round = max(st.seen_round, m.ballot.round)
        if st.promised is not None and m.ballot < st.promised:
            return self._nack(st, m.ballot, sender, "accept")
        if st.accepted is not None and st.accepted[0] == m.ballot:
            if st.accepted[1] != m.value:  # one ballot, two values: the proposer's bug
                return [Emit("paxos.conflict", {"instance": st.name, "ballot": _b(m.ballot),
                                                "accepted": st.accepted[1], "offered": m.value, "from": sender})]
            repeat = True
        else:
            repeat = False
            st.promised = m.ballot
            st.accepted = (m.ballot, m.value)
        effects: list[Effect] = [] if repeat else [Persist(instance_key(st.name), st.durable())]
        effects.append(Emit("paxos.accepted", {"instance": st.name, "ballot": _b(m.ballot), "value": m.value,
                                               "from": sender, "repeat": repeat, "quorum": st.quorum.size}))
        out = Accepted(st.name, m.ballot, m.value)
        if self.learners == "all":
            effects += [Send(to, out) for to in st.quorum.members]
        else:
            effects.append(Send(sender, out))  # the proposer of this Accept (a member, checked above)
        return effects

    def _nack(self, st: InstanceState, ballot: Ballot, sender: str, what: str) -> list[Effect]:
        return [Emit("paxos.nack", {"instance": st.name, "ballot": _b(ballot), "promised": _b(st.promised),
                                    "to": sender, "rejected": what}),
                Send(sender, Nack(st.name, ballot, st.promised))]

    # proposer --------------------------------------------------------------------------

    def _on_promise(self, st: InstanceState, m: Promise, sender: str, now: float) -> list[Effect]:
        if st.phase is not Phase.PREPARING or m.ballot != st.ballot:
            return [self._ignored(st.name, m, sender, f"promise for {m.ballot} while {st.phase.value} at {st.ballot}")]
        st.promises[sender] = (m.accepted_ballot, m.accepted_value)
        if not st.quorum.reached(st.promises):
            return []
        reported = [(b, v) for b, v in st.promises.values() if b is not None]
        if reported:
            top_b, value = max(reported, key=lambda bv: bv[0])
            adopted = True
        else:
            top_b, value, adopted = None, st.want, False
        st.value = value
        effects = self._become(st, Phase.ACCEPTING, "quorum of promises")
        effects.append(Emit("paxos.accept", {"instance": st.name, "ballot": _b(st.ballot), "value": value,
                                             "adopted": adopted, "adopted_from": _b(top_b),
                                             "promises": sorted(st.promises)}))
        out = Accept(st.name, st.ballot, value)
        effects += [Send(to, out) for to in st.quorum.members]
        return effects

    def _on_nack(self, st: InstanceState, m: Nack, sender: str, now: float) -> list[Effect]:
        st.seen_round = max(st.seen_round, m.promised.round)
        if st.phase not in (Phase.PREPARING, Phase.ACCEPTING) or m.ballot != st.ballot:
            return [self._ignored(st.name, m, sender, f"nack for {m.ballot} while {st.phase.value} at {st.ballot}")]
        # Preempted: keep waiting for the retry timer (a randomized backoff), so that
        # duelling proposers fall out of step instead of outbidding each other forever;
        # that retry takes a new ballot.
        st.preempted = True
        return [Emit("paxos.preempted", {"instance": st.name, "ballot": _b(m.ballot),
                                         "by": _b(m.promised), "from": sender})]

    def _new_ballot(self, st: InstanceState, now: float) -> list[Effect]:
        ballot = next_ballot(self.address, self.round, st.seen_round, st.promised)
        self.round = ballot.round
        st.ballot = ballot
        st.promises = {}
        st.value = None
        st.preempted = False
        st.attempts += 1
        effects: list[Effect] = [Persist(PROPOSER_KEY, self._proposer_data())]
        effects += self._become(st, Phase.PREPARING, "new ballot")
        out = Prepare(st.name, ballot)
        effects += [Send(to, out) for to in st.quorum.members]
        effects.append(self._retry_timer(st, now))
        return effects

    def _retry_timer(self, st: InstanceState, now: float) -> SetTimer:
        lo, hi = self.retry_timeout
        scale = min(2.0 ** (st.attempts - 1), self.max_backoff)
        return SetTimer(f"retry/{st.name}", now + scale * self.rng.uniform(lo, hi))

    def _resend(self, st: InstanceState, now: float) -> list[Effect]:
        """The same ballot again, to the members that have not answered it (nobody preempted it)."""
        st.attempts += 1
        if st.phase is Phase.PREPARING:
            out: Any = Prepare(st.name, st.ballot)
            answered = set(st.promises)
        else:
            out = Accept(st.name, st.ballot, st.value)
            answered = st.votes.get(st.ballot, (None, set()))[1]
        return [Send(to, out) for to in st.quorum.members if to not in answered] + [self._retry_timer(st, now)]

    def _on_timer(self, key: str, now: float) -> list[Effect]:
        kind, _, name = key.partition("/")
        st = self.instances.get(name)
        if st is None:
            return [Emit("paxos.ignored", {"instance": name, "message": "TimerFired", "reason": f"unknown timer {key}"})]
        if kind == "retry":
            if st.phase not in (Phase.PREPARING, Phase.ACCEPTING):
                return [self._ignored(name, TimerFired(key), self.address, f"retry timer while {st.phase.value}")]
            effects: list[Effect] = [Emit("paxos.retry", {"instance": name, "ballot": _b(st.ballot),
                                                          "phase": st.phase.value, "attempt": st.attempts,
                                                          "resend": not st.preempted})]
            return effects + (self._new_ballot(st, now) if st.preempted else self._resend(st, now))
        if kind == "announce":
            if not st.unconfirmed or st.chosen is None:
                return []
            st.announces += 1
            return self._announce(st, now, sorted(st.unconfirmed))
        return [self._ignored(name, TimerFired(key), self.address, f"unknown timer {key}")]

    # learner ---------------------------------------------------------------------------

    def _on_accepted(self, st: InstanceState, m: Accepted, sender: str, now: float) -> list[Effect]:
        if st.chosen is not None:
            return []  # late votes for a decided instance: nothing to learn
        value, voters = st.votes.setdefault(m.ballot, (m.value, set()))
        if value != m.value:
            return [Emit("paxos.conflict", {"instance": st.name, "ballot": _b(m.ballot), "first": value,
                                            "then": m.value, "from": sender})]
        voters.add(sender)
        if not st.quorum.reached(voters):
            return []
        return self._learn(st, m.ballot, m.value, now, via="quorum", voters=sorted(voters))

    def _on_chosen(self, st: InstanceState, m: Chosen, sender: str, now: float) -> list[Effect]:
        ack = Send(sender, Learned(st.name, m.ballot))
        if st.chosen is not None:
            if st.chosen[1] != m.value:
                return [Emit("paxos.conflict", {"instance": st.name, "known": st.chosen[1], "told": m.value,
                                                "from": sender})]
            return [ack]
        return self._learn(st, m.ballot, m.value, now, via="chosen", voters=[sender]) + [ack]

    def _on_learned(self, st: InstanceState, m: Learned, sender: str, now: float) -> list[Effect]:
        st.unconfirmed.discard(sender)
        if st.chosen is not None and not st.unconfirmed:
            return [CancelTimer(f"announce/{st.name}")]
        return []

    def _learn(self, st: InstanceState, ballot: Ballot, value: Any, now: float, *, via: str, voters) -> list[Effect]:
        st.chosen = (ballot, value)
        st.votes = {}
        was_proposing = st.phase is not Phase.IDLE
        self.pending.pop(st.name, None)
        effects: list[Effect] = [Persist(instance_key(st.name), st.durable())]
        if was_proposing:
            effects.append(Persist(PROPOSER_KEY, self._proposer_data()))
        effects.append(Emit("paxos.chosen", {"instance": st.name, "value": value, "ballot": _b(ballot),
                                             "via": via, "voters": voters, "mine": st.want == value if was_proposing else None}))
        effects.append(CancelTimer(f"retry/{st.name}"))
        # Who tells the others: a proposer that was still at it, and - with a distinguished
        # learner - whoever counted the votes (a proposer that abandoned its ballot still gets
        # them, and nobody else does).
        announce = was_proposing or (via == "quorum" and self.learners == "proposer")
        if st.phase is not Phase.DONE:
            effects += self._become(st, Phase.DONE, f"value learned ({via})")
        if announce:
            # Propagate to every learner until each acknowledges.
            st.unconfirmed = set(st.quorum.members) - {self.address}
            if via == "chosen":
                st.unconfirmed.discard(voters[0])
            effects += self._announce(st, now, sorted(st.unconfirmed))
        return effects

    def _announce(self, st: InstanceState, now: float, to: list[str]) -> list[Effect]:
        if not to:
            return []
        ballot, value = st.chosen
        out = Chosen(st.name, ballot, value)
        delay = self.announce_every * min(2.0 ** st.announces, self.max_backoff)
        return [Send(m, out) for m in to] + [SetTimer(f"announce/{st.name}", now + delay)]

    # -- the one place proposer phases change -------------------------------------------

    def _become(self, st: InstanceState, phase: Phase, reason: str) -> list[Effect]:
        old, st.phase = st.phase, phase
        return [Emit("paxos.phase", {"instance": st.name, "from": old.value, "to": phase.value,
                                     "ballot": _b(st.ballot), "reason": reason})]

    # -- helpers -------------------------------------------------------------------------

    def _inst(self, name: str) -> InstanceState | None:
        """The instance's state, created on first use; None if this node is not in its group."""
        st = self.instances.get(name)
        if st is None:
            if self.members_of is None:
                q = self.quorum
            else:
                q = self.members_of(name)
                if q is not None and self.address not in q.members:
                    q = None
            if q is None:
                return None
            st = self.instances[name] = InstanceState(name, q)
        return st

    def _proposer_data(self) -> dict:
        return {"round": self.round, "pending": dict(self.pending)}

    def _ignored(self, instance: str | None, msg: Any, sender: str, reason: str) -> Emit:
        return Emit("paxos.ignored", {"instance": instance, "message": type(msg).__name__, "from": sender,
                                      "reason": reason})

    _handlers = {
        Prepare: _on_prepare,
        Promise: _on_promise,
        Accept: _on_accept,
        Accepted: _on_accepted,
        Nack: _on_nack,
        Chosen: _on_chosen,
        Learned: _on_learned,
    }


Paxos = PaxosNode
