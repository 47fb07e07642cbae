"""RackMonitor: a rack's state monitor, and its part in the monitors' hierarchical consensus.

How this works
--------------
One :class:`RackMonitor` per rack, on its own power and its own channel (the
monitor mesh). It has four jobs.

**1. Watch its rack control (FIG. 5).** A :class:`~protocols.rack.detector.FaultDetector`
turns every ``Status`` into ``non-fault`` or a fault kind by thresholds, and
silence for ``status_deadline`` seconds into ``powered-off``. Every change
raises the monitor's condition counter (durable) and is shown as an
indicator (colour, pattern): ``monitor.condition``. The monitor keeps running
when its rack control and hosts die.

**2. Agree on conditions, bottom-up (FIGS. 3, 4A-4C, 6, 7).** A change is
proposed, by Paxos (one :class:`~protocols.consensus.PaxosNode` per monitor,
many instances), to the monitor's *sector* (the monitors of its racks): the
instance ``<sector>|condition|<rack>|<seq>``. Once chosen there, the sector's
authority proposes the same fact to its *data center*, whose seats are held
by the sector authorities; the data center's authority proposes it to the
*fleet*, whose seats are held by the data-center authorities. A fact chosen
at the fleet level is pushed down (``Fact``, acked and retried) to every
monitor: each data-center authority tells every monitor of its data center
itself, in one hop (a sector authority tells its own sector a fleet fact it
learned some other way, e.g. by a sync); ``rack.known`` with ``level =
"fleet"`` marks the moment each monitor knows it. Facts are ``{"subject", "seq", "condition", "indicator",
"reason"}``; a higher ``seq`` replaces a lower one (the seed's "accept only
the most recent value").

**3. Designate authorities, one per group at a time.** Authority of group
``B`` at term ``t`` is the Paxos instance ``<gid>|authority|<t>`` whose value
is the holder's rack id. An authority holds a *lease*: every
``heartbeat_every`` it sends ``Heartbeat(sent)``; once a quorum of the group
has acked one, it may act until ``sent + lease``. A member that acks promises
not to help designate anyone else for ``B`` until ``ack time + lease``
(it refuses ``Prepare``/``Accept`` of designations meanwhile). A member that
hears no heartbeat for ``lease`` seconds stands as candidate for ``t + 1``
after a stagger of ``rank * stagger`` (ranks rotate with the term, and
sibling groups start the rotation at different racks, so that first
authorities are spread over the monitors' processes). Acting
intervals of two authorities of one group never overlap: the new one is
chosen by a quorum that intersects the old one's last ack quorum, and the
member in the intersection refused until the old lease had run out.

**Authority by condition (claims 8, 14).** Designation follows the racks'
conditions: a monitor whose own rack is faulty or powered-off (a
``FAULT_KINDS`` condition; ``rebooting`` is neither) is not designated while a
healthy candidate exists. Three rules: (a) an unhealthy monitor's candidacy
rank is placed after every member's (``rank + n``), so the healthy members
stand first; (b) a healthy member whose seat is ready (it could stand itself)
refuses to *accept* a designation whose holder's rack it knows agreed down
(``authority.refused``), remembers that term (``unfit_term``: its next
candidacy starts above it instead of joining it, since that term may be stuck
with the unfit value) and stands at once; a member that is itself down never
refuses, so a group whose racks are all down still designates one of them;
(c) heartbeat acks say whether the member's rack is healthy; an authority
whose rack is down, that heard a healthy member ack within a lease, resigns
(``authority.resigned``) once its rack's newest condition is known at fleet
level through it (or ``quorum_timeout`` after the fault), and a healthy member
is designated after the lease (rule a). Refusing to accept and resigning are
always safe: they only withhold votes and renewals.

Upper groups have changing members (seat holders change with sector and data
center authorities), so an upper instance *binds its members in its name*:
``gid = "d0@d0s0r1,d0s1r0,,d0s3r5"`` lists the holder of each seat (empty:
unknown) and every instance of that gid keeps exactly those members, with a
quorum of a majority of the seats (:meth:`members_of`). An authority designated
while a seat was unknown (its holder cut off) resigns once it learns that seat's
holder, so the group is designated again with every seat in it (the holder
would otherwise never vote or learn there). Likewise a sector's or data
center's authority whose seat the table above shows as another holder at its
term or later resigns, and a candidate stands at a term above the one its seat
shows: two designations of one term in two gids (possible after a partition:
new seat holders that never saw the old term) would otherwise leave every seat
view on the other holder for ever (views break a tie of terms by holder name),
and the group above never designated again; an acceptor that refuses a
designation because its view of the seats differs sends the candidate its view
(``SeatView``, at most once a lease per candidate), so that a holder shown
stale elsewhere learns it and climbs above it. Seats travel three
ways: a monitor that starts acting announces its seat (``Seat``) to every
monitor that could hold a seat of the group above; every ``seat_every`` it
repeats that, to the current seat holders only while the group above has a
live authority (to everyone again while it has none); and every heartbeat carries
the sender's view of the seats above, so the members of a group keep up with
them at no extra message. Two views of the
seats give two gids, hence two independent instances: safety per instance is
Paxos's; the lease rule above keeps authorities apart across gids, with two
more rules: a monitor takes part in its upper group (acks, designations) only
while it is the *acting* authority of its seat and not before ``lease``
seconds after it became so (the seat's quiet period, which outlasts every
promise its predecessor made), and every start is quiet for ``lease`` seconds
(rule 5 below).

**4. Control decisions, carried out exactly once.** When a sector agrees on a
condition listed in ``reboot_on`` for one of its racks, the sector's acting
authority proposes ``<sector>|control|reboot:<rack>:<seq>`` naming itself
executor, unless a newer fact about the rack is already agreed (then
``control.skipped``: a newer fact that no longer calls for a reboot cancels
it, a newer one that does is decided on its own). Every member keeps the
latest chosen decision per rack (``decisions``, bounded by the sector's racks).
Whoever is the *acting* authority of the sector hands every open decision
over the mesh to the target rack's own monitor: ``Execute`` with the fencing
token (sector, its term, decision id) and its lease, resent with backoff
(``execute_backoff``: from two beats up to 2 s, so under one message a second
to a dead target) until the target answers done or skipped, or until a newer
agreed fact about the rack no longer calls for a reboot (``control.closed``);
a pending answer slows the resends to the cap.
A decision whose executor lost its lease is so taken over by the next acting
authority (``control.takeover``): it learned the decision chosen, or, if the
executor died before announcing it, proposes the same instance again and
Paxos hands it the value a quorum accepted.

The target monitor is the one place a decision is carried out. It refuses an
``Execute`` whose term is older than the sector term it knows, or that arrives
after the sender's lease by its own clock (``control.refused``; the acting
authority resends; monitors' clocks are assumed to agree to well within a
lease, and a link slower than a lease would keep the authority from renewing
its lease anyway);
it checks the decision against the latest agreed fact about its rack (it is
that fact's proposer, so it learns it first; and against a newer condition it
raised itself, not yet agreed) and against the decisions it carried out: a
newer fact that no longer calls for a reboot, a newer decision, or a reboot
carried out after the condition was raised cancels it (``control.skipped``). Otherwise it records the decision durably
(``executed``, *Persist before the Reboot leaves*), emits ``control.executed``
and sends ``Reboot`` with the token to its own control over the rack-local
channel, resending (backing off) until the control acknowledges
(``control.done``); it answers every later ``Execute`` of that decision from
the record. A restart resumes a pending decision at once. The control obeys
only its own monitor, refuses a token it obeyed before (duplicate) or older
than one it obeyed (stale), and acknowledges both.

Why exactly once, even with two authorities driving one decision (a takeover
while the old executor still believes it acts, a restart, lost
acknowledgements): every ``Reboot`` of a decision comes from one monitor,
the target's, which takes each decision id on at most once (the record is
durable before its first ``Reboot``, and ids it forgot are older than one it
remembers, hence refused by seq); the control refuses a repeated token, so a
resend after a lost acknowledgement is no second reboot. At least once: the
decision is chosen durably in the sector, every acting authority resends it
until the target has it durably, and the target resends to its control until
acknowledged; so takeover is safe and needed, and the only decisions never
carried out are those a newer agreed fact made moot. Limits, stated: the
control's memory is volatile (a control that loses power and comes back may
obey a resend of a decision it obeyed before its power loss; its hosts were
power-cycled anyway), and an empty-disk restart of the target forgets the
decisions it took on (the control still refuses their tokens).

A rebooting rack is ``rebooting``, not powered-off: the target knows it
ordered a reboot, so its control's silence during ``reboot_window`` after the
first ``Reboot`` (or after the control acknowledged it) is the condition
``rebooting``, which calls for no action; silence past the window is
``powered-off`` again.

**5. Every start; a start on an empty disk.** Lease promises
(``promise_until``) and what a member saw of designations are volatile, so
*every* start, with its disk or not, is quiet for ``lease`` seconds: no ack,
no designation vote, no candidacy (:meth:`_seat_ready`). Every promise the
previous incarnation made ran out ``lease`` after its last ack, which was
before it died, hence before this start ends its quiet period. With a disk
that suffices: Paxos promises and acceptances are durable.

A monitor with *no* durable state (a new or replaced disk; it cannot tell a
first start from a lost disk, so every empty start counts) has also forgotten
its Paxos votes, its condition counter and what it executed. It first persists
``rejoining`` (a crash mid-rejoin rejoins again), then asks the other members
of its sector (``Rejoin``, resent every beat to those that have not answered,
carrying its start time so answers to an earlier incarnation are ignored).
Until ``n - q + 1`` other members of its sector have answered (``n``
members, quorum ``q``: then the answering set Q2, which excludes the monitor
itself, meets every quorum of the sector; in a sector of 3, both others; a
sector of 1 has nobody to ask and is not protected) it votes in no
instance (``monitor.refused``), acks no heartbeat, stands for nothing and
proposes nothing: a condition change is only noted (``monitor.deferred``).
Each answer (``RejoinReply``) gives, per instance *stream* (``<group>|authority``
ordered by term, ``<group>|condition|<rack>`` and ``<group>|control|<action>:<rack>``
ordered by seq), the highest key the peer has seen, from its Paxos state and
its views; the newest fact about the rejoining rack; and the highest ballot
round it has seen. The monitor then keeps, durably (``blocked``), the highest
key per stream, and refuses forever to vote in an instance at or below it that
it does not know as chosen (chosen ones Paxos answers with ``Chosen``). Its
condition counter restarts above every seq reported, persisted before any
send, so it never reuses a decided instance name and its next fact is newer
than every fact about its rack; its candidacies start above every reported
term; its ballot round above every reported ballot. A noted change, or a
rack whose newest agreed fact differs from what the monitor sees now, is then
proposed under that fresh seq.

Why this keeps one authority at a time (and one value per instance): a value
chosen in the sector before the disk was lost was accepted by a quorum Q1; the
answering set Q2 excludes this monitor and meets Q1, so some
member of Q2 remembers that instance (durably) and reports a key at least as
high: the rejoined monitor never votes in it again. So it can never stand in
for its old self in a second quorum of an instance its old self voted in and
that was chosen, and the lease argument of rule 3 holds again: a new authority
needs a quorum that intersects the old authority's last ack quorum at a member
that refuses (a member with its disk, by its promise; the rejoined member, by
its quiet period and its blocked streams, because a designation of a term above
the old one needs the intersection's vote). In a sector of 3 (Q2 is both
others) this covers every instance the old self voted in, chosen or not:
its proposer is in Q2, or is the old self, whose ballots reach phase 2 only
with a promise from a member of Q2 (which reports the ballot's round, so the
new ballots are above it). Limits, stated: in sectors larger than 3, an instance the old self voted in that is not chosen, and that no member
of Q2 had yet seen, is not blocked (its proposer, alive and outside Q2, could
still get it chosen while the rejoined monitor votes in it for another value);
Q2 answers only for the sector, so data-center and fleet instances the old
self voted in as a seat holder are protected only by the seat quiet period,
by the even quorum arithmetic of 4 or more seats and by the terms its sector
peers know; and two members of one group losing their disks at once exceeds
the failure model (the answers of a rejoining peer carry no memory).

**6. Bounded state: retired instances.** Every condition change, term and
decision is a Paxos instance, so without pruning a monitor's durable state
grows with history. Instances form *streams* (``<group>|authority`` by
term, ``<group>|condition|<rack>`` and ``<group>|control|reboot:<rack>`` by
seq; the gid's seat list is not part of the stream) and only the newest
decided key of a stream matters: a newer fact about a rack supersedes every
older one (at every level), a newer term every older designation, a newer
decision every older one (the target refuses older decisions by seq). So a
monitor keeps a durable *watermark* per stream (``retired``): when it learns
a fact, a term or a decision, it raises the watermark to that key, persists
it, and only *then* deletes the instances below it (``PaxosNode.retire``:
``Persist(key, None)``). It never votes in an instance below a watermark:
``Prepare``/``Accept`` of one are answered ``Retired`` (and, for a stale
designation, a ``TermHint``), a ``Chosen`` is acknowledged and not learned,
and a proposer told ``Retired`` stops and retires that instance too. Why this
is safe: refusing to vote is always safe for Paxos (a retired acceptor acts
as a crashed one for that instance), and nothing is forgotten before the
refusal is durable, so no restart votes afresh in a forgotten instance. What
is given up: a member that missed the value of a retired instance never
learns it, which is harmless because a newer value of the same stream is
decided and what the monitor acts on is the newest one. A restart so loads
and replays only the live instances: per stream its newest key (and its
copies in other seat lists of an upper group, until the next key), hence
racks x levels x a small constant. Superseded push-downs (``Fact`` awaiting
acks for an older seq) are dropped too.

**7. Silent peers.** A member that died for good must not be sent a resend
every beat for ever (heartbeats, ``Fact`` and ``Chosen`` resends, ``Execute``).
A monitor notes, per peer, the first message that asks for an answer
(``Heartbeat``, ``Fact``, ``Execute``, ``Prepare``, ``Accept``, ``Chosen``,
``SyncRequest``, ``Rejoin``) sent since it last heard anything from that
peer; a peer that answered nothing for ``silent_after`` is *silent*
(``monitor.peer`` state ``silent``): every send to it is held back
(``held_back``) except a probe, one asking message at intervals doubling
from ``silent_after`` up to ``probe_cap`` (so a few messages a minute per
sender, not tens a second). Any message from the peer makes it heard again
(``monitor.peer`` state ``heard``) and the ordinary resends (next beat,
next announce, next ``Execute`` retry) catch it up. Dropping a send is a
message loss, which every part of the protocol already survives. The probes
do not stop altogether: two monitors cut off from each other by a partition
would otherwise, after the heal, never hear each other again (a member that
only answers never speaks first).

**8. Membership changes: an agreed configuration.** The layout a monitor
works with is agreed, not read: the file it is started with is only the
bootstrap (epoch 0, assumed the same everywhere, as at a first deployment).
Growing the fleet by one sector per data center is a fleet-level fact
``{"subject": "config", "seq": <epoch>, "layout": {...}}``: an operator's
``Reconfigure`` (to any monitor, forwarded once to the fleet's acting
authority) is proposed there only if it is the current layout with one more
sector per data center (else ``monitor.config_refused``); once chosen it
travels like every fleet fact (``Fact`` push-down, digest sync), and each
monitor applies it (``monitor.config``) only if it is its current layout
plus as many sectors as epochs, persisting ``{epoch, layout}`` before
anything that depends on it; on a restart the agreed configuration on disk
wins over the layout it was started with, and a monitor restarted on an
empty disk with an old file learns it again from its peers. So two monitors
never hold two different layouts for one epoch. The new sector's monitors
start *joining* (``join=True``, epoch unknown): their own sector works at
once (a new group with new instance names), but they take part in no upper
group and propose nothing there until they learn an agreed configuration
equal to the layout they were started with.

Why this keeps one value per instance and one authority at a time: sector
groups never change (a new sector is a new group); the fleet's seats (the
data centers) do not change; a data center's group gains one seat, and the
gid of every upper instance lists one holder per seat, so an instance name
has the same members and quorum on every monitor that accepts it at all
(one that has not applied the new epoch finds the seat count wrong and
ignores the instance: ``members_of`` is None). An authority whose held gid
has the old seat count resigns once it applies the epoch, and the lease
rule keeps authorities apart across the two gids: a majority of n seats and
a majority of n + 1 seats share an old seat (maj(n) + maj(n + 1) - 1 > n,
hence *one* sector per data center per epoch), whose holder promised the old
authority and refuses until that promise runs out. Not supported: removing
racks or sectors, adding racks to a sector (it would change a sector group's
members under the same instance names) or data centers.

**9. Availability of groups (the seed: "agree as to the state of the data
centers (operational or nonoperational)"; block 612: without consensus,
"assume that the other data centers are not functioning").** The rule, a
pure function of agreed facts (:func:`protocols.rack.layout.group_states`):
a rack is *up* while its agreed condition is ``non-fault`` (no fact: the
seed's default non-fault; faulty, powered-off and rebooting racks serve
nothing); a *sector* is ``operational`` while a strict majority of its racks
are up; a *data center* is ``operational`` while the fleet reaches it and a
strict majority of its sectors are operational. Ties are not operational:
what a majority cannot vouch for is not claimed (the same conservative
default the seed takes without consensus). Why majorities: a sector is
called operational exactly when most of its racks serve, so one faulty rack
never takes a sector down and a healthy minority never holds a failed one up
(the same arithmetic as the groups' quorums); and the rule is a function of
the agreed facts alone, so two monitors that know the same facts compute the
same states.

Who decides: the fleet's acting authority alone (once it has caught up on the
facts: the fleet members that acked it within a lease report its digest, or
``quorum_timeout`` after it starts acting), every beat, applies the rule
to the rack facts it knows at fleet level and to the data centers it reaches
(as a fleet seat holder it judges that itself, below: a data center none of
whose monitors it heard from within ``quorum_timeout`` is cut off), and
proposes, where the result differs from the agreed state, a *group fact*
``{"subject": <sector or dc>, "seq", "condition", "reason"}`` at fleet level (instance ``fleet@<seats>|condition|<group>|<seq>``): the same
agreed-fact machinery as rack facts (Persist before send, pushed down with
``Fact``, digest sync, retired behind the newest seq per stream), no second
consensus. The seq's parity *is* the state (even: operational, odd: not; seq 0
is the default operational): the next fact takes the next seq of the other
parity. So two fleet authorities of different seat views (two gids, two
instances of one seq) can disagree on a fact's reason but never on its state;
a monitor refuses a group fact whose condition does not match its seq, or that
is agreed below fleet level. A stale fact (an old authority's late proposal) is
replaced by the next authority's derivation on its next beat. After the faults
heal, every monitor knows the same fleet facts (``fleet-agreement``), hence the
same states.

Without a quorum nothing is chosen; a monitor applies ``on_no_quorum`` (keep its
view, ``"keep"``, or revert to ``default_assumption``, ``"revert"``, e.g.
"not-operational", shown as ``monitor.assume``) to the data centers it cannot
reach, in two cases: (a) its sector has no live authority (no heartbeat for
``quorum_timeout``: ``monitor.no_quorum`` for the sector): every other data
center; (b) it cannot reach a quorum of the fleet's data centers (cut off:
``monitor.no_quorum`` with ``group = "fleet"`` and the ``unreached`` data
centers): those it cannot reach. Reachability is judged where it can be seen:
a fleet seat holder (its data center's acting authority) counts a data center
reached while it heard any message from one of its monitors within
``quorum_timeout``; every other monitor believes its authority's heartbeats
(``Heartbeat.unreached``: a sector authority tells its members, a data
center's authority its sector authorities), and without them for
``quorum_timeout`` reaches no other data center. So a data center cut off
with healthy sectors (whose own sectors keep their quorum) is agreed not
operational by the rest of the fleet *and* applies the policy itself; when the
cut heals, its seat holder hears the others again, the views return
(``monitor.quorum``, ``monitor.assume`` ``as-agreed``) and the fleet's
authority, hearing it again, agrees it operational. The policy changes
what a monitor *assumes* (its ``View``), never an agreed fact.

**10. Queries.** Any monitor answers ``ViewRequest`` (from anyone: an
operator's ``fleetplane racks status``) with ``View``: per rack its newest
condition and the highest level that agreed it (``local`` for its own rack's
condition raised here and not yet agreed, ``default`` for none), per sector
and data center the agreed state (level ``fleet``; ``default``, operational,
before any fact), the rule's answer from its own facts and the policy's
assumption in force; ages are durations on its own clock (never a
foreign timestamp). Answering changes no state but a rate limit, and the answer has one entry
per rack and group of the layout: a peer cannot grow it (facts about subjects
outside the layout, one sector ahead for a reconfiguration, are refused). A
monitor answers at most ``VIEW_BURST`` requests at once and ``VIEW_RATE`` a
second after that (a ``View`` is ~7 KB for 72 racks: no amplifier for a peer
asking in a loop); the rest get no answer, are counted (``views_refused``)
and said in one ``monitor.view_refused`` event a second.

Durable state (``Persist`` effects, written before later sends): Paxos's, plus
``monitor`` = the condition counter, the decisions taken on as target (the last
``KEEP_EXECUTED``, with their state) and the seq a reboot covered, the streams
blocked after an empty-disk start, the retirement watermarks (rule 6), the agreed configuration
(rule 8), and ``rejoining`` while that rejoin runs. Timers:
``mon|deadline`` (status silence) and ``mon|beat`` (everything periodic).

Events: ``monitor.start``, ``monitor.condition``, ``monitor.no_quorum``,
``monitor.quorum``, ``monitor.assume``, ``authority.candidate``,
``authority.designated``, ``authority.acting``, ``authority.lease``,
``authority.lapsed``, ``authority.refused``, ``rack.known``, ``fact.propose``,
``control.proposed``, ``control.takeover``, ``control.closed``,
``control.acknowledged`` (authority side), ``control.executed``,
``control.done``, ``control.cancelled``, ``control.refused`` (target side),
``control.skipped`` (either),
``monitor.deferred``, ``monitor.refused``, ``monitor.rejoined``, ``monitor.retired``, ``monitor.peer``,
``authority.resigned``, ``monitor.reconfigure``, ``monitor.config``, ``monitor.config_refused``,
``monitor.bad_input`` and the ``paxos.*`` events of the embedded node. Group facts are logged like rack
facts (``fact.propose``, ``rack.known`` with a sector or data center as ``subject``).
"""

from __future__ import annotations

import random
import re
import zlib
from typing import Any

import attrs

from protocols.consensus import Accept, Accepted, Chosen, Learned, Nack, PaxosNode, Persist, Prepare, Promise, Quorum
from protocols.consensus.quorum import majority
from protocols.core import Effect, Emit, Send, SetTimer, TimerFired
from protocols.rack.detector import FAULT_KINDS, NON_FAULT, REBOOTING, FaultDetector
from protocols.rack.layout import FLEET, NOT_OPERATIONAL, OPERATIONAL, Layout, group_states, state_of_seq
from protocols.rack.messages import (
    Execute,
    ExecuteAck,
    Fact,
    FactAck,
    Heartbeat,
    HeartbeatAck,
    Reboot,
    RebootAck,
    Rejoin,
    Reconfigure,
    RejoinReply,
    Retired,
    Seat,
    SeatView,
    Status,
    SyncReply,
    SyncRequest,
    TermHint,
    View,
    ViewRequest,
)

__all__ = ["LEVELS", "MONITOR_KEY", "RackMonitor", "split_instance"]

MONITOR_KEY = "monitor"
LEVELS = {"sector": 1, "dc": 2, "fleet": 3}
_MINE = "mon|"
_PAXOS = (Prepare, Promise, Accept, Accepted, Nack, Chosen, Learned)
# sends that expect an answer: a peer that answers none of them for silent_after is silent
_ASKS = (Heartbeat, Fact, Execute, Prepare, Accept, Chosen, SyncRequest, Rejoin)
_CONFIG_FIELDS = ("dcs", "sectors", "racks")
CONFIG = "config"  # the subject of configuration facts (fleet level, seq = epoch)
VIEW_RATE = 10.0  # View answers a second a monitor gives (after a burst of VIEW_BURST): a View is ~7 KB
VIEW_BURST = 20.0
KEEP_EXECUTED = 8  # decisions about my rack remembered (durably) by id; older ones are refused by seq


_RACK_ID = re.compile(r"^d(\d+)s(\d+)r(\d+)$")


def _learned(effects: list[Effect]) -> bool:
    """Did these effects of ``_learn_fact`` learn something new (not a stale or refused fact)?"""
    return any(e.__class__ is Emit and e.kind == "rack.known" for e in effects)


def decision_seq(decision: str, rack: str) -> int | None:
    """The condition seq of ``reboot:<rack>:<seq>``, or None if ``decision`` is not one about ``rack``."""
    head, _, seq = decision.rpartition(":")
    return int(seq) if head == f"reboot:{rack}" and seq.isdigit() else None


def split_instance(instance: str) -> tuple[str, str, str, str]:
    """``(base group, gid, kind, rest)`` of an instance name ``<gid>|<kind>|<rest>``."""
    gid, _, tail = instance.partition("|")
    kind, _, rest = tail.partition("|")
    return gid.partition("@")[0], gid, kind, rest


class _Auth:
    """What a monitor knows of one group's authority (the highest term it has seen)."""

    __slots__ = ("gid", "holder", "term")

    def __init__(self, term: int = 0, holder: str = "", gid: str = "") -> None:
        self.term, self.holder, self.gid = term, holder, gid


class RackMonitor:
    tick_interval = None

    def __init__(
        self,
        rack: str,
        layout: dict,
        address: str,
        rng: random.Random,
        status_deadline: float = 0.6,
        rules: list | None = None,
        indicators: dict | None = None,
        heartbeat_every: float = 0.05,
        lease: float = 0.25,
        stagger: float = 0.04,
        seat_every: float = 0.5,
        quorum_timeout: float = 1.0,
        on_no_quorum: str = "keep",
        default_assumption: str = "not-operational",
        reboot_on: list | None = None,
        retry_timeout: list | None = None,
        reboot_window: float = 1.5,
        execute_backoff: list | None = None,
        silent_after: float = 1.0,
        probe_cap: float = 8.0,
        join: bool = False,
        durable: dict | None = None,
    ) -> None:
        self.layout = Layout(**layout) if isinstance(layout, dict) else layout
        # the agreed configuration (rule 8): the one on my disk wins over the layout I was given
        cfg = ((durable or {}).get(MONITOR_KEY) or {}).get("config")
        self.epoch: int | None = None if join else 0  # None: joining, my layout is not agreed yet
        if isinstance(cfg, dict) and isinstance(cfg.get("epoch"), int) and isinstance(cfg.get("layout"), dict):
            self.layout = attrs.evolve(self.layout, **{k: cfg["layout"][k] for k in _CONFIG_FIELDS})
            self.epoch = cfg["epoch"]
        self.layout.check_rack(rack)
        if self.layout.monitor(rack) != address:
            raise ValueError(f"monitor of rack {rack} must be at {self.layout.monitor(rack)!r}, not {address!r}")
        if on_no_quorum not in ("keep", "revert"):
            raise ValueError(f"on_no_quorum must be 'keep' or 'revert', got {on_no_quorum!r}")
        if not 0 < heartbeat_every < lease:
            raise ValueError(f"need 0 < heartbeat_every < lease, got {heartbeat_every!r}, {lease!r}")
        self.rack = rack
        self.address = address
        self.sector = self.layout.sector_of(rack)
        self.dc = self.layout.dc_of(rack)
        self.rng = rng
        self.detector = FaultDetector(status_deadline, rules, indicators)
        self.heartbeat_every = float(heartbeat_every)
        self.lease = float(lease)
        self.stagger = float(stagger)
        self.seat_every = float(seat_every)
        self.quorum_timeout = float(quorum_timeout)
        self.on_no_quorum = on_no_quorum
        self.default_assumption = str(default_assumption)
        self.reboot_on = list(["needs-troubleshooting"] if reboot_on is None else reboot_on)
        if REBOOTING in self.reboot_on:
            raise ValueError(f"reboot_on must not list {REBOOTING!r}: a rebooting rack calls for no action")
        if not (isinstance(reboot_window, (int, float)) and reboot_window > 0):
            raise ValueError(f"reboot_window must be > 0 seconds, got {reboot_window!r}")
        self.reboot_window = float(reboot_window)
        b_lo, b_hi = execute_backoff or (2 * self.heartbeat_every, 2.0)  # (a dead target: < 1 message/s)
        if not 0 < b_lo <= b_hi:
            raise ValueError(f"execute_backoff must be [first, cap] with 0 < first <= cap, got {execute_backoff!r}")
        self.backoff = (float(b_lo), float(b_hi))
        if not 0 < silent_after <= probe_cap:
            raise ValueError(f"need 0 < silent_after <= probe_cap, got {silent_after!r}, {probe_cap!r}")
        self.silent_after, self.probe_cap = float(silent_after), float(probe_cap)
        # peers' liveness, as seen from here (volatile): a monitor owed answers for silent_after is silent
        self.heard: dict[str, float] = {}  # monitor -> when I last heard from it
        self.owed: dict[str, float] = {}  # monitor -> first send since then that expects an answer
        self.probes: dict[str, list] = {}  # silent monitor -> [next probe at, interval, last probe at]
        self.held_back = 0  # sends to silent monitors dropped (a figure)
        durable = dict(durable or {})
        mine = durable.pop(MONITOR_KEY, None) or {}
        self.cond_seq = int(mine.get("cond_seq", 0))
        # decisions about my rack this monitor took on as their target: id -> {"state": pending | done |
        # skipped, "group", "term", "by"} (older durable files: a list of ids executed as authority)
        old = mine.get("executed") or {}
        self.executed: dict[str, dict] = {
            d: dict(r) if isinstance(r, dict) else {"state": "done"}
            for d, r in (old.items() if isinstance(old, dict) else ((x, None) for x in old))
            if isinstance(d, str) and decision_seq(d, rack) is not None}
        # conditions of my rack up to this seq were raised before a reboot was carried out: a decision on
        # one of them is moot (the reboot came after it)
        self.covered = int(mine.get("covered", 0))
        self.driving: dict[str, list] = {}  # pending decision -> [next try, backoff] (Reboot to my control)
        self.rebooting_until: float | None = None  # my control's silence until then is a reboot I ordered
        # chosen decisions of my sector, the latest per rack (what an acting authority hands over):
        # rack -> {"decision", "seq", "plan", "open", "next_at", "backoff", "sent"}
        self.decisions: dict[str, dict] = {}
        # instance streams this monitor may have voted in before it lost a disk: stream -> highest key
        self.blocked: dict[str, int] = {k: int(v) for k, v in (mine.get("blocked") or {}).items()}
        # retired instance streams: stream -> watermark (its instances with a lower key are decided and
        # superseded: their keys are deleted and I refuse them)
        self.retired: dict[str, int] = {k: int(v) for k, v in (mine.get("retired") or {}).items()}
        # no durable state at all (a new or replaced disk), or a rejoin that a crash interrupted:
        # no vote and no proposal until enough other sector members have told what they know
        self.rejoining = not durable and not mine or bool(mine.get("rejoining"))
        self.empty_disk = self.rejoining
        self.rejoin_replies: dict[str, RejoinReply] = {}
        self.deferred = False  # a condition change seen while rejoining (proposed once rejoined)
        lo, hi = retry_timeout or (0.02, 0.06)
        # learners="proposer": votes go to the proposer, which announces Chosen to the rest (2n
        # messages per instance instead of n*n; sectors are 6 and more monitors)
        self.paxos = PaxosNode(address, (), rng, retry_timeout=(lo, hi), announce_every=0.1,
                               members_of=self.members_of, durable=durable, learners="proposer")
        self.started_at: float | None = None
        self.restarted = bool(durable) or bool(mine)  # (reported only: every start keeps quiet for a lease)
        # authority knowledge, per base group (sector / dc / fleet)
        self.auth: dict[str, _Auth] = {}
        self.last_hb: dict[str, float] = {}
        self.promise_until: dict[str, float] = {}
        self.candidate_at: dict[str, float] = {}
        self.seen_design: dict[str, tuple[int, str]] = {}  # base -> highest (term, gid) voted on
        self.hints: dict[str, int] = {}  # base -> highest designation term others told me of
        self.accepted_design: dict[str, int] = {}  # base -> highest designation term I accepted (phase 2)
        self.renewed_at: dict[str, float] = {}  # base -> when my authority last got (or started) a lease
        self.unfit_term: dict[str, int] = {}  # base -> highest designation term I refused for an unhealthy holder
        self.healthy_acks: dict[str, dict[str, float]] = {}  # base -> member -> last ack saying its rack is healthy
        self.unhealthy_since: float | None = None  # when my rack last became faulty or powered-off
        # my own authority (holder side)
        self.holding: dict[str, _Auth] = {}  # base -> the term I was designated for
        self.lease_until: dict[str, float] = {}
        self.acting_since: dict[str, float] = {}
        self.acks: dict[tuple[str, float], set[str]] = {}
        self.next_seat_at = 0.0
        # seats of the upper groups: base -> child -> (term, holder rack)
        self.seats: dict[str, dict[str, tuple[int, str]]] = {}
        self._seat_cache: dict | None = None
        # facts
        self.known: dict[str, tuple[int, int, dict]] = {}  # subject -> (seq, level rank, value)
        self.up: dict[str, dict[str, tuple[dict, str]]] = {}  # base -> subject -> (value, gid proposed in)
        self.down: dict[tuple[str, int], set[str]] = {}  # (subject, seq) -> recipients yet to ack
        self.no_quorum = False
        self.assumed: dict[str, str] = {}
        self.learned_at: dict[str, float] = {}  # subject -> when I learned its newest fact (for View ages)
        self.cond_at: float | None = None  # when my rack's condition last changed here
        # availability of groups: do I hear the fleet (through the tree)? as fleet authority, who acks me?
        self.unreached: tuple[str, ...] = ()  # data centers I cannot reach (bounded: the layout's)
        self.told: tuple[tuple[str, ...], float] | None = None  # my authority's unreached, and when it told me
        self.fleet_cut = False  # I cannot reach a quorum of the fleet: the no-quorum policy applies to unreached
        self.fleet_digests: dict[str, tuple[int, float]] = {}  # (as fleet authority) member -> its last ack's digest
        self._digest: int | None = None
        self.synced_at: dict[str, float] = {}  # base -> when I last asked its authority to sync
        # View answers: a token bucket (VIEW_RATE, VIEW_BURST); refusals counted, said once a second
        self._view_tokens, self._view_at, self._view_said = VIEW_BURST, None, -1e9
        self.views_refused = 0

    # -- group membership --------------------------------------------------------------

    def members_of(self, instance: str) -> Quorum | None:
        """The fixed members (and quorum) of an instance, from its name; None if malformed."""
        gid = instance.partition("|")[0]
        memo = self.__dict__.get("_members_memo")
        if memo is None or memo[0] is not self.layout or len(memo[1]) >= 4096:  # bounded; per layout
            memo = self._members_memo = (self.layout, {})
        if gid in memo[1]:
            return memo[1][gid]
        out = memo[1][gid] = self._members_of(gid)
        return out

    def _members_of(self, instance: str) -> Quorum | None:
        base, gid, _kind, _rest = split_instance(instance)
        try:
            level = self.layout.level(base)
        except ValueError:
            return None
        if level == "sector":
            if gid != base:
                return None
            return Quorum(tuple(self.layout.sector_members(base)))
        if "@" not in gid:
            return None
        holders = gid.partition("@")[2].split(",")
        seats = self.layout.seats(base)
        if len(holders) != len(seats):
            return None
        members = []
        for seat, h in zip(seats, holders):
            if not h:
                continue
            try:
                inside = (self.layout.sector_of(h) if level == "dc" else self.layout.dc_of(h)) == seat
            except ValueError:
                return None
            if not inside:
                return None
            members.append(self.layout.monitor(h))
        q = majority(len(seats))
        if len(members) < q:
            return None
        return Quorum(tuple(members), q)

    def gid(self, base: str) -> str:
        """The instance group of ``base`` as this monitor sees its seats now."""
        if self.layout.level(base) == "sector":
            return base
        seats = dict(self.seats.get(base, {}))
        mine = self.sector if self.layout.level(base) == "dc" else self.dc
        if mine in self.holding and self.acting(mine):
            seats[mine] = (self.holding[mine].term, self.rack)  # my own seat: I know best
        return base + "@" + ",".join(seats.get(child, (0, ""))[1] for child in self.layout.seats(base))

    def _filled_seats(self, base: str) -> list[str]:
        """Seats of ``base`` empty in the gid I hold it under but known now (upper groups only)."""
        mine = self.holding.get(base)
        if mine is None or "@" not in mine.gid:
            return []
        old = mine.gid.partition("@")[2].split(",")
        new = self.gid(base).partition("@")[2].split(",")
        if len(old) != len(new):
            return []
        return [n for o, n in zip(old, new) if not o and n]

    def _member(self, gid: str) -> Quorum | None:
        """The group of ``gid`` if this monitor is in it, else None."""
        q = self.members_of(gid)
        return q if q is not None and self.address in q.members else None

    def _bases(self) -> list[str]:
        """The groups this monitor may take part in now: its sector, and the upper ones it holds a seat in."""
        out = [self.sector]
        if self.epoch is not None and self.acting(self.sector):
            out.append(self.dc)
            if self.acting(self.dc):
                out.append(FLEET)
        return out

    def acting(self, base: str, now: float | None = None) -> bool:
        if base not in self.acting_since:
            return False
        return now is None or now < self.lease_until.get(base, 0.0)

    def _seat_ready(self, base: str, now: float) -> bool:
        """May this monitor take part in ``base`` (its quiet periods are over)?"""
        if self.started_at is None or self.rejoining or now < self.started_at + self.lease:
            return False
        level = self.layout.level(base)
        if level == "sector":
            return True
        if self.epoch is None:
            return False  # joining: no upper group until my layout is the agreed one
        child = self.sector if level == "dc" else self.dc
        since = self.acting_since.get(child)
        return since is not None and now < self.lease_until.get(child, 0.0) and now >= since + self.lease

    # -- state machine API -------------------------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        return self._outbound(self._tick(now), now)

    def handle(self, msg: Any, sender: str, now: float) -> list[Effect]:
        if sender != self.address and sender.__class__ is str and self.layout.rack_of_monitor(sender) is not None:
            heard = self._heard(sender, now)
            return self._outbound(heard + self._handle(msg, sender, now), now)
        return self._outbound(self._handle(msg, sender, now), now)

    def _tick(self, now: float) -> list[Effect]:
        if self.started_at is not None:
            return []
        self.started_at = now
        self.assumed = {d: "as-agreed" for d in self.layout.all_dcs() if d != self.dc}
        effects: list[Effect] = [Emit("monitor.start", {
            "rack": self.rack, "sector": self.sector, "dc": self.dc, "restarted": self.restarted,
            "empty_disk": self.empty_disk,
            "condition": self.detector.state, "indicator": self.detector.indicator(),
            "deadline": self.detector.deadline, "lease": self.lease, "heartbeat_every": self.heartbeat_every,
            "reboot_on": list(self.reboot_on), "reboot_window": self.reboot_window})]
        effects += self._paxos(self.paxos.tick(now), now)
        # what the restored Paxos state already knows (chosen before a restart) counts as learned now
        for inst, value in sorted(self.paxos.chosen_values().items()):
            effects += self._on_chosen(inst, value, now)
        effects.append(SetTimer(_MINE + "deadline", self.detector.due(now)))
        effects.append(SetTimer(_MINE + "beat", now + self.heartbeat_every))
        effects += self._drive_control(now)  # a decision taken on before a restart and not yet acknowledged
        self.last_hb.setdefault(self.sector, now)
        if self.rejoining:
            # durably "rejoining" before anything else is written (a crash mid-rejoin then rejoins again)
            effects.insert(0, self._persist_mine())
            effects += self._ask_rejoin(now) if self._rejoin_need() else self._rejoined(now)
        return effects

    def _handle(self, msg: Any, sender: str, now: float) -> list[Effect]:
        if isinstance(msg, TimerFired):
            if msg.key == _MINE + "deadline":
                return self._on_deadline(now)
            if msg.key == _MINE + "beat":
                return self._on_beat(now)
            return self._paxos(self.paxos.handle(msg, sender, now), now)
        h = self._handlers.get(type(msg))
        if h is not None:
            return h(self, msg, sender, now)
        if isinstance(msg, _PAXOS) and isinstance(msg.instance, str):
            w = self._retired_below(msg.instance)
            if w is not None:
                return self._on_retired_instance(msg, sender, w, now)
        if isinstance(msg, (Prepare, Accept)):
            amnesia = self._refuse_amnesic(msg.instance)
            if amnesia:
                return [Emit("monitor.refused", {"instance": msg.instance, "from": sender, "reason": amnesia})]
            refused = self._refuse_designation(msg.instance, now)
            if not refused and isinstance(msg, Accept):
                refused = self._refuse_unfit(msg.instance, msg.value, now)
            if refused:
                out: list[Effect] = [Emit("authority.refused", {"instance": msg.instance, "from": sender,
                                                                "reason": refused})]
                base = split_instance(msg.instance)[0]
                top = max((self.auth[base].term if base in self.auth else 0), self.seen_design.get(base, (0, ""))[0])
                if top and sender != self.address:
                    out.append(Send(sender, TermHint(base, top)))
                if refused.startswith("its seats differ") and sender != self.address and \
                        self.layout.rack_of_monitor(sender) is not None and \
                        now - self.synced_at.get("seats:" + sender, -1e9) >= self.lease:
                    # tell the candidate my view of the seats, at most once a lease: views only ever move to a
                    # newer (term, holder), so two views that differ would otherwise stay apart for ever
                    self.synced_at["seats:" + sender] = now  # (one entry per monitor: bounded)
                    out.append(Send(sender, SeatView(self._seat_table())))
                return out
            base, gid, kind, rest = split_instance(msg.instance)
            if kind == "authority" and rest.isdigit():
                self.seen_design[base] = max(self.seen_design.get(base, (0, "")), (int(rest), gid))
                if sender != self.address:
                    # someone else is campaigning: give it a lease's time before standing myself
                    # (as a Raft follower resets its election timer when it votes)
                    self.candidate_at[base] = max(self.candidate_at.get(base, 0.0), now + self.lease)
                if isinstance(msg, Accept) and self.paxos.chosen(msg.instance) is None:
                    self.accepted_design[base] = max(self.accepted_design.get(base, 0), int(rest))
        return self._paxos(self.paxos.handle(msg, sender, now), now)

    # -- 1. the rack's status ----------------------------------------------------------

    def _on_status(self, msg: Status, sender: str, now: float) -> list[Effect]:
        if msg.rack != self.rack or sender != self.layout.control(self.rack):
            return [Emit("monitor.bad_input", {"reason": f"status for {msg.rack} from {sender}"})]
        changed = self.detector.on_status(msg.metrics, now)
        effects: list[Effect] = [SetTimer(_MINE + "deadline", self.detector.due(self.started_at or now))]
        if changed:
            effects += self._condition_changed(now)
        return effects

    def _on_deadline(self, now: float) -> list[Effect]:
        started = self.started_at if self.started_at is not None else now
        if self.detector.on_silence(now, started, self.rebooting_until):
            last = self.detector.last_status
            effects = self._condition_changed(now, silence=None if last is None else now - last)
        else:
            effects = []
        nxt = self.detector.due(started)
        if self.detector.state == REBOOTING and self.rebooting_until is not None and nxt <= now:
            nxt = self.rebooting_until  # still silent when the reboot window ends: powered-off then
        return effects + [SetTimer(_MINE + "deadline", nxt if nxt > now else now + self.detector.deadline)]

    def _condition_changed(self, now: float, silence: float | None = None) -> list[Effect]:
        det = self.detector
        if not self.healthy():
            self.unhealthy_since = now if self.unhealthy_since is None else self.unhealthy_since
        else:
            self.unhealthy_since = None
        if self.rejoining:
            # my counter is unknown until I have rejoined: no seq, no proposal (proposed once rejoined)
            self.deferred = True
            return [Emit("monitor.deferred", {"rack": self.rack, "condition": det.state, "silence": silence,
                                              "reason": "rejoining after a start on an empty disk"})]
        self.cond_seq += 1
        self.cond_at = now
        value = {"subject": self.rack, "seq": self.cond_seq, "condition": det.state,
                 "indicator": det.indicator(), "reason": det.reason}
        effects: list[Effect] = [
            self._persist_mine(),
            Emit("monitor.condition", {"rack": self.rack, "seq": self.cond_seq, "condition": det.state,
                                       "fault": det.state != NON_FAULT, "indicator": det.indicator(),
                                       "reason": det.reason, "last_status": det.last_status, "silence": silence,
                                       "deadline": det.deadline}),
        ]
        return effects + self._propose_fact(self.sector, value, now)

    # -- 2. facts up and down the tree -------------------------------------------------

    def _propose_fact(self, base: str, value: dict, now: float) -> list[Effect]:
        gid = self.gid(base)
        if self._member(gid) is None or (self.epoch is None and base != self.sector):
            self.up.setdefault(base, {})[value["subject"]] = (value, "")
            return []
        self.up.setdefault(base, {})[value["subject"]] = (value, gid)
        inst = f"{gid}|condition|{value['subject']}|{value['seq']}"
        if self.paxos.chosen(inst) is not None or inst in self.paxos.pending or self._retired_below(inst) is not None:
            return []
        effects: list[Effect] = [Emit("fact.propose", {"instance": inst, "level": self.layout.level(base),
                                                       "subject": value["subject"], "seq": value["seq"]})]
        return effects + self._paxos(self.paxos.propose(inst, value, now), now)

    def _learn_fact(self, value: dict, level: str, now: float) -> list[Effect]:
        subject, seq, rank = value.get("subject"), value.get("seq"), LEVELS[level]
        if not isinstance(subject, str) or not isinstance(seq, int):
            return [Emit("monitor.bad_input", {"reason": f"malformed fact {value!r}"})]
        if not self._known_subject(subject):
            # (a peer must not grow my tables: only subjects of my layout, one sector ahead for a reconfiguration)
            return [Emit("monitor.bad_input", {"reason": f"fact about {subject!r}: not in the layout"})]
        group = self._group_subject(subject)
        if group and (rank != LEVELS["fleet"] or value.get("condition") != state_of_seq(seq)):
            # a group's state is agreed at fleet level only, and its seq's parity says which state it is
            return [Emit("monitor.bad_input", {"reason": f"malformed group fact {value!r} at level {level}"})]
        old = self.known.get(subject)
        if old is not None and (old[0], old[1]) >= (seq, rank):
            return []
        if old is not None and old[0] > seq:
            return []
        self.known[subject] = (seq, rank, value)
        self.learned_at[subject] = now
        if rank == LEVELS["fleet"]:
            self._digest = None
        out: list[Effect] = [Emit("rack.known", {"subject": subject, "seq": seq, "level": level,
                                                 "condition": value.get("condition"),
                                                 "indicator": value.get("indicator")})]
        if subject == CONFIG:
            return out + self._retire(f"{FLEET}|condition|{CONFIG}", seq) + self._apply_config(value, now)
        return out + self._retire_subject(subject, seq)

    def _on_chosen(self, instance: str, value: Any, now: float) -> list[Effect]:
        base, gid, kind, rest = split_instance(instance)
        level = self.layout.level(base)
        if kind == "authority":
            return self._on_designated(base, gid, int(rest), value, now)
        if kind == "control":
            return self._on_decision(rest, value, now)
        if kind != "condition" or not isinstance(value, dict):
            return []
        effects = self._learn_fact(value, level, now)
        pending = self.up.get(base, {}).get(value.get("subject"))
        if pending is not None and pending[0].get("seq", -1) <= value.get("seq", -1):
            del self.up[base][value["subject"]]
        parent = self.layout.parent(base)
        if level == "sector" and value.get("condition") in self.reboot_on and self.acting(base, now):
            effects += self._propose_reboot(value, now)
        if level == "sector":
            effects += self._drive_decisions(now)  # a newer fact may close a decision
        if parent is not None and self.acting(base, now):
            effects += self._propose_fact(parent, value, now)
        if level == "fleet":
            effects += self._push_down(value, now)
        return effects

    def _push_down(self, value: dict, now: float) -> list[Effect]:
        """A fleet-level fact: to every monitor of my data center (as DC authority) or of my sector."""
        key = (value["subject"], value["seq"])
        to: set[str] = set()
        if self.acting(self.dc, now):  # every monitor of my data center, in one hop
            to |= {m for sec in self.layout.sectors_of(self.dc) for m in self.layout.sector_members(sec)}
        if self.acting(self.sector, now):
            to |= set(self.layout.sector_members(self.sector))
        to.discard(self.address)
        if not to:
            return []
        self.down[key] = self.down.get(key, set()) | to
        out = Fact("fleet", value)
        return [Send(m, out) for m in sorted(to)]

    def _on_fact(self, msg: Fact, sender: str, now: float) -> list[Effect]:
        if msg.level != "fleet" or not isinstance(msg.value, dict):
            return [Emit("monitor.bad_input", {"reason": f"fact at level {msg.level!r}", "from": sender})]
        effects = self._learn_fact(msg.value, "fleet", now)
        v = msg.value
        if isinstance(v.get("subject"), str) and isinstance(v.get("seq"), int):
            effects.append(Send(sender, FactAck(v["subject"], v["seq"])))
            dc_auth = self.auth.get(self.dc)
            from_dc_auth = dc_auth is not None and bool(dc_auth.holder) and sender == self.layout.monitor(dc_auth.holder)
            if _learned(effects) and self.acting(self.sector, now) and not from_dc_auth:
                effects += self._push_down(v, now)  # new to me, and not from my data center's authority (which
                # told my whole data center): on down to my sector
        return effects

    def _on_fact_ack(self, msg: FactAck, sender: str, now: float) -> list[Effect]:
        waiting = self.down.get((msg.subject, msg.seq))
        if waiting is not None:
            waiting.discard(sender)
            if not waiting:
                del self.down[(msg.subject, msg.seq)]
        return []

    def _fleet_facts(self) -> list[dict]:
        return [v for _s, rank, v in self.known.values() if rank == LEVELS["fleet"]]

    def _sync_request(self) -> SyncRequest:
        return SyncRequest(self._fleet_facts())

    def digest(self) -> int:
        """A checksum of the fleet-level facts known here (subjects and seqs), cached until they change."""
        if self._digest is None:
            text = ";".join(f"{s}:{v[0]}" for s, v in sorted(self.known.items()) if v[1] == LEVELS["fleet"])
            self._digest = zlib.crc32(text.encode())
        return self._digest

    def _on_sync_request(self, msg: SyncRequest, sender: str, now: float) -> list[Effect]:
        refused = self._too_many(msg.facts, sender)
        if refused:
            return refused  # (and no answer: no honest peer sends such a request)
        effects = self._on_sync_reply(SyncReply(msg.facts), sender, now)
        return effects + [Send(sender, SyncReply(self._fleet_facts()))]

    def _sync_limit(self) -> int:
        """The most fleet facts an honest peer can list: one per subject it may know (racks, one sector ahead,
        sectors, data centers, the configuration)."""
        lay = self.layout
        return lay.dcs * (lay.sectors + 1) * lay.racks + lay.dcs * (lay.sectors + 1) + lay.dcs + 1

    def _too_many(self, facts: Any, sender: str) -> list[Effect]:
        """A sync listing more facts than an honest peer can: refused whole, in one event."""
        if isinstance(facts, list) and len(facts) > self._sync_limit():
            return [Emit("monitor.bad_input", {"reason": f"sync of {len(facts)} facts (at most "
                                                         f"{self._sync_limit()} subjects): refused", "from": sender})]
        return []

    def _on_sync_reply(self, msg: SyncReply, sender: str, now: float) -> list[Effect]:
        effects: list[Effect] = self._too_many(msg.facts, sender)
        if effects:
            return effects
        for v in msg.facts if isinstance(msg.facts, list) else []:
            if isinstance(v, dict):
                new = self._learn_fact(v, "fleet", now)
                effects += new
                if _learned(new) and self.acting(self.sector, now) and isinstance(v.get("seq"), int):
                    effects += self._push_down(v, now)
        return effects

    # -- 3. authorities ----------------------------------------------------------------

    def _refuse_designation(self, instance: str, now: float) -> str | None:
        base, gid, kind, rest = split_instance(instance)
        if kind != "authority":
            return None
        try:
            term = int(rest)
            self.layout.level(base)
        except ValueError:
            return None  # Paxos ignores it (no member group)
        if self.paxos.chosen(instance) is not None:
            return None  # Paxos answers with the chosen value
        if not self._seat_ready(base, now):
            return "quiet period (restart or new seat)"
        if now < self.promise_until.get(base, 0.0):
            return "lease promised to the current authority"
        if self.layout.level(base) != "sector" and gid != self.gid(base):
            return "its seats differ from the ones I know"
        known = self.auth.get(base)
        if known is not None and (term < known.term or (term == known.term and gid != known.gid)):
            return f"stale term {term} (known {known.term})"
        seen = self.seen_design.get(base)
        if seen is not None and (term < seen[0] or (term == seen[0] and gid != seen[1])):
            return f"term {term} already voted on in another configuration"
        return None

    def healthy(self) -> bool:
        """My own rack is neither faulty nor powered-off (claims 8, 14: designation by condition)."""
        return self.detector.state not in FAULT_KINDS

    def _refuse_unfit(self, instance: str, holder: Any, now: float) -> str | None:
        """Why I refuse to accept ``holder`` as authority: its rack is agreed down while I, healthy, could stand."""
        base, _gid, kind, rest = split_instance(instance)
        if kind != "authority" or not isinstance(holder, str) or holder == self.rack or not rest.isdigit():
            return None
        known = self.known.get(holder)
        if known is None or known[2].get("condition") not in FAULT_KINDS:
            return None
        if not self.healthy() or not self._seat_ready(base, now):
            return None  # no healthy candidate here: a holder whose rack is down beats none
        self.unfit_term[base] = max(self.unfit_term.get(base, 0), int(rest))
        if now >= self.last_hb.get(base, -1e9) + self.lease:
            self.candidate_at[base] = min(self.candidate_at.get(base, now), now)  # stand myself at once
        return f"holder {holder}'s rack is {known[2].get('condition')} and mine is healthy"

    def _step_down(self, base: str, now: float) -> str | None:
        """Why I, holding ``base``, hand it over: my rack is down and a healthy member answers me; else None.

        Not before my rack's newest condition has reached the fleet through me (or a quorum timeout
        has passed): resigning first would delay the fact by a failover."""
        if self.healthy() or self.unhealthy_since is None:
            return None
        healthy = sorted(m for m, t in self.healthy_acks.get(base, {}).items() if now - t < self.lease)
        if not healthy:
            return None
        known = self.known.get(self.rack)
        told = known is not None and known[1] == LEVELS["fleet"] and known[0] >= self.cond_seq
        if not told and now < self.unhealthy_since + self.quorum_timeout:
            return None
        return f"my rack is {self.detector.state}; healthy member {healthy[0]} could stand"

    def _on_designated(self, base: str, gid: str, term: int, holder: Any, now: float) -> list[Effect]:
        known = self.auth.get(base)
        if not isinstance(holder, str):
            return []
        effects: list[Effect] = [Emit("authority.designated", {"group": base, "gid": gid, "term": term,
                                                               "holder": holder, "level": self.layout.level(base)})]
        if known is None or term > known.term:
            self.auth[base] = _Auth(term, holder, gid)
            self.candidate_at.pop(base, None)
            effects += self._retire(f"{base}|authority", term)  # older terms' instances are moot
            if self.layout.level(base) == "sector" or base == self.dc:
                parent = self.layout.parent(base)
                if parent is not None:
                    self._set_seat(parent, base, term, holder)
        if holder == self.rack and (known is None or term >= known.term):
            self.holding[base] = _Auth(term, holder, gid)
            self.renewed_at[base] = now
            effects += self._send_heartbeats(base, now)
        return effects

    def _set_seat(self, parent: str, child: str, term: int, holder: str) -> None:
        seats = self.seats.setdefault(parent, {})
        old = seats.get(child)
        if old is None or (term, holder) > old:  # (term, holder): every monitor converges on one view
            seats[child] = (term, holder)
            self._seat_cache = None

    def _seat_table(self) -> dict:
        """My view of the upper groups' seats, as heartbeats carry it (cached until it changes)."""
        if self._seat_cache is None:
            self._seat_cache = {p: {c: [t, h] for c, (t, h) in sorted(tab.items())}
                                for p, tab in sorted(self.seats.items()) if p in (self.dc, FLEET)}
        return self._seat_cache

    def _merge_seats(self, table: Any, sender: str) -> list[Effect]:
        """Seats told in a heartbeat: each entry checked like a Seat message, then merged."""
        if not isinstance(table, dict):
            return [Emit("monitor.bad_input", {"reason": f"seat table {type(table).__name__}", "from": sender})]
        bad = 0
        for parent, tab in table.items():
            if parent != self.dc and parent != FLEET:
                continue  # (a fleet authority tells other data centers' monitors its own table)
            for child, th in (tab.items() if isinstance(tab, dict) else [(None, None)]):
                try:
                    term, holder = th
                    ok = (isinstance(term, int) and isinstance(holder, str) and isinstance(child, str)
                          and self.layout.parent(child) == parent and self._in_group(holder, child))
                except (TypeError, ValueError):
                    ok = False
                if ok:
                    self._set_seat(parent, child, term, holder)
                else:
                    bad += 1
        return [Emit("monitor.bad_input", {"reason": f"{bad} malformed seat entries", "from": sender})] if bad else []

    def _on_term_hint(self, msg: TermHint, sender: str, now: float) -> list[Effect]:
        if isinstance(msg.term, int) and isinstance(msg.group, str):
            self.hints[msg.group] = max(self.hints.get(msg.group, 0), msg.term)
        return []

    def _sweep_proposals(self, now: float) -> list[Effect]:
        """Abandon my proposals that can no longer matter: stale designations, upper facts in old seats."""
        effects: list[Effect] = []
        bases = self._bases()
        for inst in sorted(self.paxos.pending):
            base, gid, kind, rest = split_instance(inst)
            try:
                level = self.layout.level(base)
            except ValueError:
                continue
            stale = False
            if level != "sector" and (base not in bases or gid != self.gid(base)):
                stale = True
            elif kind == "authority":
                known = self.auth.get(base)
                stale = (known is not None and rest.isdigit() and known.term >= int(rest)) or \
                    now - self.last_hb.get(base, -1e9) < self.lease  # an authority is alive after all
            if stale:
                effects += self.paxos.abandon(inst, now)
        return effects

    def _send_heartbeats(self, base: str, now: float) -> list[Effect]:
        mine = self.holding.get(base)
        if mine is None:
            return []
        q = self.members_of(mine.gid)
        if q is None:
            return []
        self.acks[(base, now)] = set()
        quorum_ok = now < self.lease_until.get(base, 0.0)
        hb = Heartbeat(mine.gid, mine.term, self.rack, now, quorum_ok, self.digest(), self._seat_table(),
                       list(self.unreached))
        return [Send(m, hb) for m in q.members]

    def _on_heartbeat(self, msg: Heartbeat, sender: str, now: float) -> list[Effect]:
        base = msg.group.partition("@")[0]
        q = self.members_of(msg.group)
        if q is None or self.address not in q.members or sender not in q.members:
            return [Emit("monitor.bad_input", {"reason": f"heartbeat of {msg.group} from {sender}"})]
        if sender != self.layout.monitor(msg.holder):
            return [Emit("monitor.bad_input", {"reason": f"heartbeat for holder {msg.holder} from {sender}"})]
        seat_effects = self._merge_seats(msg.seats, sender) if msg.seats else []
        accepted = self.accepted_design.get(base)
        ack = accepted is None or msg.term >= accepted  # after accepting a later designation I must not
        # help renew the old lease (that designation may have been chosen without my hearing of it)
        if sender != self.address:
            known = self.auth.get(base)
            if known is not None and (msg.term < known.term or (msg.term == known.term and msg.holder != known.holder)):
                return self._tell_successor(base, known, sender, now)  # an old authority, unaware of its successor
            promised_elsewhere = (now < self.promise_until.get(base, 0.0) and known is not None
                                  and (known.term, known.holder) != (msg.term, msg.holder))
            if known is None or msg.term > known.term:
                self.auth[base] = _Auth(msg.term, msg.holder, msg.group)
                if base == self.sector or base == self.dc:
                    parent = self.layout.parent(base)
                    if parent is not None:
                        self._set_seat(parent, base, msg.term, msg.holder)
            # a new authority is acked once my promise to the old one has run out; in a quiet
            # period (restart, new seat) I ack nobody
            ack = ack and not promised_elsewhere and self._seat_ready(base, now)
        if ack:
            # the authority's own ack counts toward its quorum too, so it promises like any member
            self.promise_until[base] = max(self.promise_until.get(base, 0.0), now + self.lease)
        # acked or not, the authority is alive: no need to stand as candidate, and a peer to sync with
        effects: list[Effect] = seat_effects
        self.last_hb[base] = now
        self.candidate_at.pop(base, None)
        if sender != self.address and base in (self.sector, self.dc):
            # my authority (sector's, or as a sector authority my data center's) tells what it cannot reach
            told = msg.unreached
            dcs = self.layout.all_dcs()
            if isinstance(told, list) and len(told) <= len(dcs) and all(isinstance(d, str) and d in dcs for d in told):
                self.told = (tuple(sorted(set(told) - {self.dc})), now)
                effects += self._check_fleet(now)
            else:
                effects.append(Emit("monitor.bad_input", {"reason": f"unreached {told!r}", "from": sender}))
        if base == self.sector and msg.quorum_ok and self.no_quorum:
            effects += self._quorum_back(now, sender)
        elif sender != self.address and msg.digest != self.digest() and \
                now - self.synced_at.get(base, -1e9) >= 4 * self.heartbeat_every:
            self.synced_at[base] = now  # we know different fleet facts: merge both ways
            effects.append(Send(sender, self._sync_request()))
        if ack:
            effects.append(Send(sender, HeartbeatAck(msg.group, msg.term, msg.sent, self.digest(), self.healthy())))
        return effects

    def _tell_successor(self, base: str, known: _Auth, stale: str, now: float) -> list[Effect]:
        """Tell an outdated authority (and the successor itself) of the designation it missed, once a lease."""
        inst = f"{known.gid}|authority|{known.term}"
        chosen = self.paxos.chosen(inst)
        if chosen is None or now - self.synced_at.get("successor:" + base, -1e9) < self.lease:
            return []
        self.synced_at["successor:" + base] = now
        out = Chosen(inst, chosen[0], chosen[1])
        q = self.members_of(known.gid)
        to = {stale} | ({self.layout.monitor(known.holder)} if known.holder else set())
        return [Send(m, out) for m in sorted(to) if q is not None and m in q.members and m != self.address]

    def _on_heartbeat_ack(self, msg: HeartbeatAck, sender: str, now: float) -> list[Effect]:
        base = msg.group.partition("@")[0]
        if sender != self.address and base in self.holding:
            seen = self.healthy_acks.setdefault(base, {})
            if msg.healthy is True:
                seen[sender] = now
            else:
                seen.pop(sender, None)
        if base == FLEET and sender != self.address and base in self.holding and \
                (msg.term, msg.group) == (self.holding[base].term, self.holding[base].gid) and \
                isinstance(msg.digest, int):
            self.fleet_digests[sender] = (msg.digest, now)  # (members of my fleet gid only: bounded by the seats)
        sync: list[Effect] = []
        if sender != self.address and msg.digest and msg.digest != self.digest() and \
                now - self.synced_at.get(sender, -1e9) >= 4 * self.heartbeat_every:
            self.synced_at[sender] = now  # the member knows other fleet facts than I do: merge both ways
            sync.append(Send(sender, self._sync_request()))
        return sync + self._ack_lease(msg, base, sender, now)

    def _ack_lease(self, msg: HeartbeatAck, base: str, sender: str, now: float) -> list[Effect]:
        mine = self.holding.get(base)
        voters = self.acks.get((base, msg.sent))
        if mine is None or voters is None or mine.term != msg.term or mine.gid != msg.group:
            return []
        voters.add(sender)
        q = self.members_of(mine.gid)
        if q is None or not q.reached(voters):
            return []
        del self.acks[(base, msg.sent)]
        until = msg.sent + self.lease
        if until <= self.lease_until.get(base, 0.0) or until <= now:
            return []
        was = self.acting(base, now)
        self.lease_until[base] = until
        self.renewed_at[base] = now
        effects: list[Effect] = [Emit("authority.lease", {"group": base, "gid": mine.gid, "term": mine.term,
                                                          "holder": self.rack, "until": until})]
        if not was:
            self.acting_since[base] = now
            effects.append(Emit("authority.acting", {"group": base, "gid": mine.gid, "term": mine.term,
                                                     "holder": self.rack, "until": until,
                                                     "level": self.layout.level(base)}))
            effects += self._on_start_acting(base, now)
        return effects

    def _on_start_acting(self, base: str, now: float) -> list[Effect]:
        effects: list[Effect] = []
        if base == FLEET:
            self.fleet_digests = {}
        parent = self.layout.parent(base)
        if parent is not None:
            self._set_seat(parent, base, self.holding[base].term, self.rack)
            effects += self._announce_seat(base, now)
            # push up every fact this group agreed on that the parent may not know yet
            for subject, (seq, rank, value) in sorted(self.known.items()):
                if rank < LEVELS["fleet"] and self._in_group(subject, base):
                    effects += self._propose_fact(parent, value, now)
        if base == self.sector:
            # a condition that needs a decision may have been agreed while the sector had no
            # authority (e.g. a rack that starts faulty): decide it now (the instance is per
            # rack and seq, so a decision already taken is not taken again; one a predecessor
            # proposed is adopted by Paxos and then taken over)
            for subject, (_seq, _rank, value) in sorted(self.known.items()):
                if self._in_group(subject, base) and value.get("condition") in self.reboot_on:
                    inst = f"{self.sector}|control|reboot:{subject}:{value.get('seq')}"
                    if self.paxos.chosen(inst) is None and inst not in self.paxos.pending:
                        effects += self._propose_reboot(value, now)
            for d in self.decisions.values():
                d["next_at"], d["backoff"] = now, self.backoff[0]  # chosen decisions still open: take them over
            effects += self._drive_decisions(now)
        # catch up on fleet facts from the authority above (it may have pushed them to my predecessor)
        above = self.seats.get(FLEET, {}).get(self.dc) if self.layout.level(base) == "sector" else None
        peers = [above[1]] if above else []
        if self.layout.level(base) == "dc":
            peers = [h for _t, h in self.seats.get(FLEET, {}).values() if h]
        effects += [Send(self.layout.monitor(h), self._sync_request()) for h in sorted(set(peers)) if h != self.rack]
        return effects

    def _in_group(self, subject: str, base: str) -> bool:
        try:
            if self.layout.level(base) == "sector":
                return self.layout.sector_of(subject) == base
            return self.layout.dc_of(subject) == base
        except ValueError:
            return False

    def _announce_seat(self, base: str, now: float, *, holders_only: bool = False) -> list[Effect]:
        """Tell everyone who could hold a seat of the parent group that I hold ``base``'s seat.

        ``holders_only``: just the parent's current seat holders (the periodic refresh;
        everyone else hears the seats in their own authority's heartbeats).
        """
        parent = self.layout.parent(base)
        mine = self.holding.get(base)
        if parent is None or mine is None:
            return []
        if holders_only:
            racks = sorted({h for _t, h in self.seats.get(parent, {}).values() if h})
        else:
            racks = self.layout.all_racks() if parent == FLEET else [
                r for s in self.layout.sectors_of(parent) for r in self.layout.racks_of(s)]
        out = Seat(base, mine.term, self.rack)
        return [Send(self.layout.monitor(r), out) for r in racks if r != self.rack]

    def _on_seat_view(self, msg: SeatView, sender: str, now: float) -> list[Effect]:
        if self.layout.rack_of_monitor(sender) is None:
            return [Emit("monitor.bad_input", {"reason": f"seat view from {sender}"})]
        return self._merge_seats(msg.seats, sender)

    def _on_seat(self, msg: Seat, sender: str, now: float) -> list[Effect]:
        try:
            parent = self.layout.parent(msg.child)
            ok = parent is not None and self.layout.monitor(msg.holder) == sender and self._in_group(msg.holder, msg.child)
        except ValueError:
            ok = False
        if not ok or not isinstance(msg.term, int):
            return [Emit("monitor.bad_input", {"reason": f"seat {msg.child} for {msg.holder} from {sender}"})]
        self._set_seat(parent, msg.child, msg.term, msg.holder)
        return []

    def _candidacy(self, base: str, now: float) -> list[Effect]:
        """Stand for ``base``'s authority when it has been silent for a lease."""
        if base in self.holding and self.acting(base) and now < self.lease_until.get(base, 0.0) + self.lease:
            return []
        last = self.last_hb.get(base)
        if last is None:
            self.last_hb[base] = last = now
        if now < last + self.lease or not self._seat_ready(base, now):
            return []
        known = self.auth.get(base) or _Auth()
        gid = self.gid(base)
        voted = self.seen_design.get(base, (0, ""))
        unfit = self.unfit_term.get(base, 0)
        if voted[1] == gid and voted[0] > known.term and voted[0] > unfit:
            term = voted[0]  # a designation in my configuration is under way: join it (Paxos picks one value)
        else:
            # (a term I refused to give an unhealthy holder may be stuck with that value: start above it)
            # (and above the term the group above shows for this seat: a designation in another gid may have
            # used it without my knowing, and seat views break a tie of terms by holder name, for ever)
            term = max(known.term, voted[0], self.hints.get(base, 0), unfit, self._seat_term(base)) + 1
        q = self._member(gid)
        if q is None:
            return []
        at = self.candidate_at.get(base)
        if at is None:
            order = sorted(q.members)
            k = (term + self._spread(base)) % len(order)
            rank = (order[k:] + order[:k]).index(self.address)
            if not self.healthy():
                rank += len(order)  # my rack is down: every healthy member stands before me
            self.candidate_at[base] = at = now + rank * self.stagger
        if now < at:
            return []
        inst = f"{gid}|authority|{term}"
        self.candidate_at[base] = now + self.lease + self.rng.uniform(0, self.lease)  # next try if this stalls
        if self.paxos.chosen(inst) is not None:
            return self._on_designated(base, gid, term, self.paxos.chosen(inst)[1], now)
        effects: list[Effect] = [Emit("authority.candidate", {"group": base, "gid": gid, "term": term,
                                                              "silent_for": now - last})]
        return effects + self._paxos(self.paxos.propose(inst, self.rack, now), now)

    def _seat_term(self, base: str) -> int:
        """The term the seat table of ``base``'s parent shows for ``base`` (0: none, or base is the fleet)."""
        parent = self.layout.parent(base)
        return 0 if parent is None else self.seats.get(parent, {}).get(base, (0, ""))[0]

    def _seat_shown_as(self, base: str) -> str | None:
        """Why my authority of ``base`` is not the one the parent's seat table shows (another holder at my
        term or later: two designations of one term in two gids, which the seat views settle by holder name,
        or a later term), else None."""
        parent = self.layout.parent(base)
        shown = None if parent is None else self.seats.get(parent, {}).get(base)
        mine = self.holding.get(base)
        if shown is None or mine is None or shown[1] == self.rack or shown[0] < mine.term:
            return None
        return f"the seat of {base} is shown as {shown[1]} at term {shown[0]} (mine: {mine.term})"

    def _spread(self, base: str) -> int:
        """The group's place among its siblings: sibling groups start their rank rotation there.

        Without it every sector's first authority is its rack 1, whose monitors
        a column-packed topology puts in one process, which then carries every
        sector's heartbeats and proposals.
        """
        parent = self.layout.parent(base)
        return 0 if parent is None else self.layout.seats(parent).index(base)

    # -- 4. control decisions ----------------------------------------------------------

    def _stale_decision(self, rack: str, seq: int) -> str | None:
        """Why a reboot decision on ``rack``'s condition ``seq`` no longer applies, or None.

        A newer agreed fact about the rack that does not call for a reboot cancels it (the rack was
        agreed healthy, or rebooting, since); at the target, a newer decision taken on also does.
        """
        known = self.known.get(rack)
        if known is not None and known[0] > seq and known[2].get("condition") not in self.reboot_on:
            return f"rack {rack} agreed {known[2].get('condition')} since (seq {known[0]} > {seq})"
        if rack == self.rack:
            newer = [s for d in self.executed if (s := decision_seq(d, rack)) is not None and s > seq]
            if newer:
                return f"superseded by decision reboot:{rack}:{max(newer)}"
            if seq <= self.covered:
                return f"condition seq {seq} was raised before a reboot carried out since (up to seq {self.covered})"
            if self.cond_seq > seq and self.detector.state not in self.reboot_on and not self.rejoining:
                # what I raised since, not yet agreed: I am the source of my rack's facts
                return f"rack {rack} is {self.detector.state} here since (seq {self.cond_seq} > {seq})"
        return None

    def _propose_reboot(self, value: dict, now: float) -> list[Effect]:
        decision = f"reboot:{value['subject']}:{value['seq']}"
        inst = f"{self.sector}|control|{decision}"
        if self._retired_below(inst) is not None:
            return []  # a newer decision about the rack was taken
        why = self._stale_decision(value["subject"], value["seq"])
        known = self.known.get(value["subject"])
        if why is None and known is not None and known[0] > value["seq"]:
            why = f"a newer condition of {value['subject']} is agreed (seq {known[0]}): decided on its own"
        if why is not None:
            return [Emit("control.skipped", {"decision": decision, "rack": value["subject"], "reason": why,
                                             "at": "proposal"})]
        plan = {"action": "reboot", "rack": value["subject"], "executor": self.rack,
                "term": self.holding[self.sector].term}
        return [Emit("control.proposed", {"decision": decision, **plan})] + self._paxos(
            self.paxos.propose(inst, plan, now), now)

    def _on_decision(self, decision: str, plan: Any, now: float) -> list[Effect]:
        """A chosen decision of my sector: the latest per rack is kept, and handed over by whoever acts."""
        if not isinstance(plan, dict) or plan.get("action") != "reboot" or not isinstance(plan.get("rack"), str):
            return []
        rack = plan["rack"]
        seq = decision_seq(decision, rack)
        if seq is None or not self._in_group(rack, self.sector):
            return [Emit("monitor.bad_input", {"reason": f"decision {decision!r} for {rack!r}"})]
        old = self.decisions.get(rack)
        if old is not None and old["seq"] >= seq:
            return []
        self.decisions[rack] = {"decision": decision, "seq": seq, "plan": plan, "open": True, "next_at": now,
                                "backoff": self.backoff[0], "sent": 0}
        # older decisions about the rack are superseded (the target refuses them by seq anyway)
        head = decision.rpartition(":")[0]
        return self._retire(f"{self.sector}|control|{head}", seq) + self._drive_decisions(now)

    def _drive_decisions(self, now: float) -> list[Effect]:
        """As acting sector authority: (re)send every open decision to its target's monitor, backing off."""
        if not self.decisions or not self.acting(self.sector, now):
            return []
        effects: list[Effect] = []
        term = self.holding[self.sector].term
        for rack, d in sorted(self.decisions.items()):
            if not d["open"] or now < d["next_at"]:
                continue
            why = self._stale_decision(rack, d["seq"])
            if why is not None:
                d["open"] = False
                effects.append(Emit("control.closed", {"decision": d["decision"], "rack": rack, "reason": why,
                                                       "sent": d["sent"]}))
                continue
            if d["sent"] == 0 and d["plan"].get("executor") != self.rack:
                effects.append(Emit("control.takeover", {"decision": d["decision"], "rack": rack, "term": term,
                                                         "executor": d["plan"].get("executor"),
                                                         "decided_term": d["plan"].get("term")}))
            d["sent"] += 1
            d["next_at"] = now + d["backoff"]
            d["backoff"] = min(2 * d["backoff"], self.backoff[1])
            effects.append(Send(self.layout.monitor(rack), Execute(self.sector, term, d["decision"], rack, "reboot",
                                                                   self.rack, self.lease_until[self.sector])))
        return effects

    def _on_execute_ack(self, msg: ExecuteAck, sender: str, now: float) -> list[Effect]:
        d = next((x for x in self.decisions.values() if x["decision"] == msg.decision), None)
        if d is None or sender != self.layout.monitor(d["plan"]["rack"]) or not d["open"]:
            return []
        if msg.outcome in ("done", "skipped"):
            d["open"] = False
            return [Emit("control.acknowledged", {"decision": msg.decision, "outcome": msg.outcome,
                                                  "reason": msg.reason, "sent": d["sent"]})]
        if msg.outcome == "pending":
            d["backoff"] = self.backoff[1]  # the target drives its control now; ask again seldom
        return []

    def _on_execute(self, msg: Execute, sender: str, now: float) -> list[Effect]:
        """The target's side: take a decision on, exactly once, and drive my control with it."""
        try:
            ok = (msg.rack == self.rack and msg.group == self.sector and msg.action == "reboot"
                  and sender == self.layout.monitor(msg.by) and self._in_group(msg.by, self.sector))
        except ValueError:
            ok = False
        seq = decision_seq(msg.decision, self.rack) if ok else None
        if seq is None:
            return [Emit("monitor.bad_input", {"reason": f"execute {msg.decision!r} of {msg.rack!r} in "
                                                         f"{msg.group!r} from {sender}"})]
        rec = self.executed.get(msg.decision)
        if rec is not None:
            return [Send(sender, ExecuteAck(msg.decision, rec.get("state", "done"), rec.get("reason", "")))]
        why = self._stale_decision(self.rack, seq)
        if why is not None:
            self._record(msg.decision, {"state": "skipped", "reason": why, "group": msg.group, "term": msg.term,
                                        "by": msg.by})
            return [self._persist_mine(),
                    Emit("control.skipped", {"decision": msg.decision, "rack": self.rack, "reason": why,
                                             "at": "target", "by": msg.by}),
                    Send(sender, ExecuteAck(msg.decision, "skipped", why))]
        known = self.auth.get(self.sector)
        stale = None
        if known is not None and msg.term < known.term:
            stale = f"term {msg.term} is older than the sector's term {known.term}"
        elif now >= msg.lease_until:
            stale = f"the sender's lease ran out at {msg.lease_until:.3f}"
        if stale is not None:
            return [Emit("control.refused", {"decision": msg.decision, "by": msg.by, "term": msg.term,
                                             "reason": stale}),
                    Send(sender, ExecuteAck(msg.decision, "stale", stale))]
        self._record(msg.decision, {"state": "pending", "group": msg.group, "term": msg.term, "by": msg.by})
        for d in list(self.driving):  # an older pending decision is superseded by this one
            if (decision_seq(d, self.rack) or 0) < seq:
                self.executed[d].update(state="skipped", reason=f"superseded by {msg.decision}")
                del self.driving[d]
        self.driving[msg.decision] = [now + self.backoff[0], self.backoff[0]]
        self.rebooting_until = now + self.reboot_window
        # durable before the Reboot leaves: a restarted monitor never takes this decision on again
        return [self._persist_mine(),
                Emit("control.executed", {"decision": msg.decision, "action": msg.action, "rack": self.rack,
                                          "group": msg.group, "term": msg.term, "authority": msg.by,
                                          "lease_until": msg.lease_until}),
                Send(self.layout.control(self.rack), Reboot(self.rack, msg.decision, self.rack, msg.group, msg.term)),
                Send(sender, ExecuteAck(msg.decision, "pending"))]

    def _record(self, decision: str, rec: dict) -> None:
        self.executed[decision] = rec
        if len(self.executed) > KEEP_EXECUTED:  # the oldest by seq go: _stale_decision refuses them anyway
            for d in sorted(self.executed, key=lambda x: decision_seq(x, self.rack) or 0)[:-KEEP_EXECUTED]:
                del self.executed[d]
                self.driving.pop(d, None)

    def _drive_control(self, now: float) -> list[Effect]:
        """Resend the pending decision to my control until it acknowledges (backing off)."""
        effects: list[Effect] = []
        for d, rec in sorted(self.executed.items()):
            if rec.get("state") != "pending":
                continue
            drive = self.driving.setdefault(d, [now, self.backoff[0]])  # (after a restart: at once)
            if now < drive[0]:
                continue
            why = self._stale_decision(self.rack, decision_seq(d, self.rack) or 0)
            if why is not None:
                rec.update(state="done", reason=why)
                del self.driving[d]
                effects += [self._persist_mine(),
                            Emit("control.cancelled", {"decision": d, "rack": self.rack, "reason": why})]
                continue
            drive[0], drive[1] = now + drive[1], min(2 * drive[1], self.backoff[1])
            if self.rebooting_until is None:
                self.rebooting_until = now + self.reboot_window  # (a restart: the window starts again)
            effects.append(Send(self.layout.control(self.rack),
                                Reboot(self.rack, d, self.rack, rec.get("group", self.sector), int(rec.get("term", 0)))))
        return effects

    def _on_reboot_ack(self, msg: RebootAck, sender: str, now: float) -> list[Effect]:
        if sender != self.layout.control(self.rack) or msg.rack != self.rack:
            return [Emit("monitor.bad_input", {"reason": f"reboot ack for {msg.rack!r} from {sender}"})]
        rec = self.executed.get(msg.decision)
        if rec is None or rec.get("state") != "pending":
            return []
        rec.update(state="done", outcome=msg.outcome)
        self.driving.pop(msg.decision, None)
        if msg.outcome == "rebooting":  # obeyed just now: every condition raised so far predates the reboot
            self.covered = max(self.covered, self.cond_seq)
            self.rebooting_until = now + self.reboot_window
        effects: list[Effect] = [self._persist_mine(),
                                 Emit("control.done", {"decision": msg.decision, "rack": self.rack,
                                                       "outcome": msg.outcome})]
        if isinstance(rec.get("by"), str):
            try:
                effects.append(Send(self.layout.monitor(rec["by"]), ExecuteAck(msg.decision, "done")))
            except ValueError:
                pass
        return effects

    # -- 5. rejoining after a start on an empty disk -----------------------------------

    def _others(self) -> list[str]:
        return [m for m in self.layout.sector_members(self.sector) if m != self.address]

    def _ask_rejoin(self, now: float) -> list[Effect]:
        out = Rejoin(self.rack, self.started_at if self.started_at is not None else now)
        return [Send(m, out) for m in self._others() if m not in self.rejoin_replies]

    @staticmethod
    def _stream(instance: str) -> tuple[str, int] | None:
        """``(stream, key)`` of an instance: the instances of a stream are ordered by key."""
        base, _gid, kind, rest = split_instance(instance)
        if kind == "authority" and rest.isdigit():
            return f"{base}|authority", int(rest)
        if kind == "condition":
            subject, _, seq = rest.rpartition("|")
            return (f"{base}|condition|{subject}", int(seq)) if seq.isdigit() else None
        if kind == "control":
            head, _, seq = rest.rpartition(":")
            return (f"{base}|control|{head}", int(seq)) if seq.isdigit() else None
        return None

    def _frontier(self) -> tuple[dict[str, int], int]:
        """Every instance stream I know of, with its highest key; and the highest ballot round I have seen."""
        front: dict[str, int] = dict(self.blocked)
        for stream, w in self.retired.items():  # (key w - 1 was decided at least)
            if w - 1 > front.get(stream, -1):
                front[stream] = w - 1

        def bump(stream: str, key: int) -> None:
            if key > front.get(stream, -1):
                front[stream] = key
        for name in list(self.paxos.instances) + list(self.paxos.pending):
            sk = self._stream(name)
            if sk is not None:
                bump(*sk)
        for tab in (self.auth, self.holding):
            for base, a in tab.items():
                bump(f"{base}|authority", a.term)
        for tab2 in (self.accepted_design, self.hints):
            for base, t in tab2.items():
                bump(f"{base}|authority", t)
        for base, (t, _gid) in self.seen_design.items():
            bump(f"{base}|authority", t)
        for subject, (seq, _rank, _v) in self.known.items():
            try:
                bump(f"{self.layout.sector_of(subject)}|condition|{subject}", seq)
            except ValueError:
                pass
        return front, self.paxos.highest_round_seen()

    def _on_rejoin(self, msg: Rejoin, sender: str, now: float) -> list[Effect]:
        try:
            ok = self.layout.monitor(msg.rack) == sender and self.layout.sector_of(msg.rack) == self.sector
        except ValueError:
            ok = False
        if not ok or sender == self.address:
            return [Emit("monitor.bad_input", {"reason": f"rejoin of {msg.rack!r} from {sender}"})]
        front, top = self._frontier()
        mine = [k for k in front if k.endswith(f"|condition|{msg.rack}")]
        seq = max([front[k] for k in mine] + [0])
        fact = self.known.get(msg.rack)
        return [Send(sender, RejoinReply(msg.rack, msg.nonce, front, seq, None if fact is None else fact[2], top))]

    def _on_rejoin_reply(self, msg: RejoinReply, sender: str, now: float) -> list[Effect]:
        if not self.rejoining or msg.rack != self.rack or msg.nonce != self.started_at \
                or sender not in self._others() or not isinstance(msg.frontier, dict):
            return []
        self.rejoin_replies[sender] = msg
        if len(self.rejoin_replies) < self._rejoin_need():
            return []
        return self._rejoined(now)

    def _rejoin_need(self) -> int:
        """How many other members must answer: n - q + 1 of them meet every quorum of my sector outside me."""
        n = len(self.layout.sector_members(self.sector))
        return min(n - majority(n) + 1, len(self._others()))

    def _rejoined(self, now: float) -> list[Effect]:
        # enough *other* members answered to meet every quorum that chose anything in my sector at a
        # member that remembers it (not me: I forgot)
        seq, value, top = self.cond_seq, None, 0
        for r in self.rejoin_replies.values():
            for stream, key in r.frontier.items():
                if isinstance(stream, str) and isinstance(key, int) and key > self.blocked.get(stream, -1):
                    self.blocked[stream] = key
            if isinstance(r.seq, int):
                seq = max(seq, r.seq)
            if isinstance(r.value, dict) and isinstance(r.value.get("seq"), int) and \
                    (value is None or r.value["seq"] > value["seq"]):
                value = r.value
            if isinstance(r.round, int):
                top = max(top, r.round)
        if value is not None:
            seq = max(seq, value["seq"])
        self.cond_seq = seq
        for stream, key in self.blocked.items():
            base, _, kind = stream.partition("|")
            if kind == "authority":
                self.hints[base] = max(self.hints.get(base, 0), key)  # my candidacies start above them
        self.rejoining = False
        self.rejoin_replies = {}
        # durable before any send: my next ballots are above every ballot they saw; my counter, my blocks
        effects: list[Effect] = [*self.paxos.raise_round(top), self._persist_mine(),
                                 Emit("monitor.rejoined", {"rack": self.rack, "cond_seq": self.cond_seq,
                                                           "streams": len(self.blocked), "round": top,
                                                           "known": None if value is None else value.get("condition")})]
        if self.deferred or (value is not None and self.detector.last_status is not None
                             and value.get("condition") != self.detector.state):
            # what I see now is newer than what the fleet was told: say it under a fresh seq
            self.deferred = False
            effects += self._condition_changed(now)
        return effects

    def _refuse_amnesic(self, instance: str) -> str | None:
        """Why I must not vote in ``instance`` (I may have voted in it before I lost my disk), or None."""
        if self.paxos.chosen(instance) is not None:
            return None  # Paxos answers with the chosen value
        if self.rejoining:
            return "rejoining after a start on an empty disk"
        if self.blocked:
            sk = self._stream(instance)
            if sk is not None and sk[1] <= self.blocked.get(sk[0], -1):
                return "may have voted in it before losing my disk"
        return None

    # -- 6. bounded state: retired instances -------------------------------------------

    def _retired_below(self, instance: str) -> int | None:
        """The watermark that retires ``instance`` (its stream's, above its key), or None if it is live."""
        if not self.retired:
            return None
        sk = self._stream(instance)
        if sk is None:
            return None
        w = self.retired.get(sk[0])
        return w if w is not None and sk[1] < w else None

    def _retire(self, stream: str, key: int) -> list[Effect]:
        """Raise ``stream``'s watermark to ``key``: every instance of it below is forgotten, and refused.

        The watermark is persisted *before* the deletions (a crash between them leaves instances
        that are refused anyway, never a forgotten instance that is not)."""
        if key <= self.retired.get(stream, 0):
            return []
        self.retired[stream] = key
        gone = [i for i in list(self.paxos.instances) + list(self.paxos.pending)
                if (sk := self._stream(i)) is not None and sk[0] == stream and sk[1] < key]
        if not gone:
            return [self._persist_mine()]
        effects: list[Effect] = [self._persist_mine()]
        for inst in sorted(set(gone)):
            effects += self.paxos.retire(inst)
        return effects

    def _retire_subject(self, subject: str, seq: int) -> list[Effect]:
        """A fact of ``subject`` at ``seq`` is known: its older condition instances, at every level, are moot."""
        if self._group_subject(subject):
            return self._retire(f"{FLEET}|condition|{subject}", seq)  # group facts live at fleet level only
        try:
            bases = [self.layout.sector_of(subject), self.layout.dc_of(subject), FLEET]
        except ValueError:
            return []
        effects: list[Effect] = []
        for base in bases:
            effects += self._retire(f"{base}|condition|{subject}", seq)
        return effects

    def _on_retired_instance(self, msg: Any, sender: str, w: int, now: float) -> list[Effect]:
        """A Paxos message of an instance I retired: refused (never voted in afresh), answered so it stops."""
        if isinstance(msg, Chosen):
            return [Send(sender, Learned(msg.instance, msg.ballot))]  # the announcer may stop
        if isinstance(msg, (Prepare, Accept)):
            q = self.members_of(msg.instance)
            if q is None or sender not in q.members:
                return []
            out: list[Effect] = [Emit("monitor.retired", {"instance": msg.instance, "from": sender, "watermark": w}),
                                 Send(sender, Retired(msg.instance))]
            base, _gid, kind, _rest = split_instance(msg.instance)
            if kind == "authority" and base in self.auth:
                out.append(Send(sender, TermHint(base, self.auth[base].term)))  # a stale candidate: the term now
            return out
        return []

    def _on_retired(self, msg: Retired, sender: str, now: float) -> list[Effect]:
        """A member retired an instance I am still at: stop proposing in it, and retire it here too."""
        sk = self._stream(msg.instance) if isinstance(msg.instance, str) else None
        q = self.members_of(msg.instance) if sk is not None else None
        if q is None or sender not in q.members or self.address not in q.members:
            return []
        return self._retire(sk[0], sk[1] + 1)  # that instance only: a peer's word never blocks newer ones

    # -- 8. the agreed configuration ---------------------------------------------------

    def _layout_dict(self) -> dict:
        return {k: getattr(self.layout, k) for k in _CONFIG_FIELDS}

    def _next_layout(self, layout: Any) -> tuple[Layout | None, str]:
        """The layout asked for, if it is the current one with one more sector per data center."""
        try:
            new = attrs.evolve(self.layout, **{k: layout[k] for k in _CONFIG_FIELDS})
        except (TypeError, KeyError, ValueError) as e:
            return None, f"not a layout: {e}"
        cur = self.layout
        if (new.dcs, new.racks, new.sectors) != (cur.dcs, cur.racks, cur.sectors + 1):
            return None, (f"{new.dcs}x{new.sectors}x{new.racks} is not {cur.dcs}x{cur.sectors}x{cur.racks} "
                          "with one more sector per data center")
        return new, ""

    def _on_reconfigure(self, msg: Reconfigure, sender: str, now: float) -> list[Effect]:
        """An operator's request: the fleet's acting authority proposes the next epoch; others forward it."""
        if not self.acting(FLEET, now):
            holder = (self.auth.get(FLEET) or _Auth()).holder
            if holder and holder != self.rack and self.layout.rack_of_monitor(sender) is None:
                return [Send(self.layout.monitor(holder), msg)]  # (once: a monitor's forward is not forwarded)
            return [Emit("monitor.config_refused", {"layout": msg.layout, "from": sender,
                                                    "reason": "not the fleet's acting authority"})]
        new, why = self._next_layout(msg.layout if isinstance(msg.layout, dict) else {})
        if new is None or self.epoch is None:
            return [Emit("monitor.config_refused", {"layout": msg.layout, "from": sender,
                                                    "reason": why or "joining"})]
        epoch = self.epoch + 1
        value = {"subject": CONFIG, "seq": epoch, "condition": "config",
                 "layout": {k: getattr(new, k) for k in _CONFIG_FIELDS}}
        pending = self.up.get(FLEET, {}).get(CONFIG)
        if pending is not None and pending[0]["seq"] >= epoch:
            return []  # already under way
        return [Emit("monitor.reconfigure", {"epoch": epoch, **value["layout"], "from": sender})] + \
            self._propose_fact(FLEET, value, now)

    def _apply_config(self, value: dict, now: float) -> list[Effect]:
        """A configuration agreed by the fleet: from now on my layout (durably, before anything it leads to)."""
        epoch, layout = value.get("seq"), value.get("layout")
        if self.epoch is not None and epoch <= self.epoch:
            return []
        try:
            new = attrs.evolve(self.layout, **{k: layout[k] for k in _CONFIG_FIELDS})
        except (TypeError, KeyError, ValueError) as e:
            new, why = None, f"not a layout: {e}"
        else:
            cur = self.layout
            if self.epoch is None:
                why = "" if new == cur else "not the layout I was started with (joining)"
            elif (new.dcs, new.racks, new.sectors - cur.sectors) != (cur.dcs, cur.racks, epoch - self.epoch):
                why = f"epoch {epoch} is not epoch {self.epoch} with {epoch - self.epoch} more sector(s)"
            else:
                why = ""
        if new is None or why:
            return [Emit("monitor.config_refused", {"epoch": epoch, "layout": layout, "reason": why})]
        joined = self.epoch is None
        self.layout, self.epoch, self._seat_cache = new, epoch, None
        return [self._persist_mine(),
                Emit("monitor.config", {"epoch": epoch, **self._layout_dict(), "joined": joined})]

    # -- 7. silent peers ---------------------------------------------------------------

    def _heard(self, peer: str, now: float) -> list[Effect]:
        self.heard[peer] = now
        self.owed.pop(peer, None)
        p = self.probes.pop(peer, None)
        if p is None:
            return []
        return [Emit("monitor.peer", {"peer": peer, "state": "heard", "held_back": self.held_back})]

    def _outbound(self, effects: list[Effect], now: float) -> list[Effect]:
        """Hold back sends to a silent monitor (one that has answered nothing I asked for ``silent_after``).

        It gets a probe now and then: one message that asks for an answer, at intervals doubling
        from ``silent_after`` up to ``probe_cap``; everything else to it is dropped (counted in
        ``held_back``) until it is heard again, and the usual resends then catch it up."""
        if not effects:
            return effects
        out: list[Effect] = []
        for eff in effects:
            if eff.__class__ is Send and eff.to != self.address and self.layout.rack_of_monitor(eff.to) is not None:
                to = eff.to
                since = self.owed.setdefault(to, now) if isinstance(eff.msg, _ASKS) else self.owed.get(to)
                if since is not None and now - since >= self.silent_after:
                    p = self.probes.get(to)
                    if p is None:
                        self.probes[to] = p = [now, self.silent_after, None]
                        out.append(Emit("monitor.peer", {"peer": to, "state": "silent", "owed_since": since}))
                    if now < p[0] or not isinstance(eff.msg, _ASKS):
                        self.held_back += 1
                        continue
                    p[0], p[1], p[2] = now + p[1], min(2 * p[1], self.probe_cap), now
            out.append(eff)
        return out

    def _on_beat(self, now: float) -> list[Effect]:
        effects: list[Effect] = [SetTimer(_MINE + "beat", now + self.heartbeat_every)]
        if self.rejoining:
            effects += self._ask_rejoin(now)
        for base in list(self.holding):
            if self.holding[base].term < (self.auth.get(base) or _Auth()).term:
                del self.holding[base]  # superseded
                self.acting_since.pop(base, None)
                continue
            if base in self.acting_since and now >= self.lease_until.get(base, 0.0):
                effects.append(Emit("authority.lapsed", {"group": base, "term": self.holding[base].term,
                                                         "holder": self.rack, "until": self.lease_until[base]}))
                del self.acting_since[base]
            if base not in self.acting_since and now - self.renewed_at.get(base, now) > 2 * self.lease:
                # no quorum renews my lease: stop heartbeating (and so promising) so others may be designated
                effects.append(Emit("authority.resigned", {"group": base, "term": self.holding[base].term,
                                                           "holder": self.rack}))
                del self.holding[base]
                continue
            if base != self.sector and base not in self._bases():
                continue  # my seat below is gone: stop speaking for the upper group
            unfit = self._step_down(base, now)
            if unfit:
                # stop renewing: once the members' promises run out (a lease) a healthy member stands
                # first (an unhealthy one stands only after every healthy one had its turn)
                effects.append(Emit("authority.resigned", {"group": base, "term": self.holding[base].term,
                                                           "holder": self.rack, "reason": unfit}))
                del self.holding[base]
                self.acting_since.pop(base, None)
                self.healthy_acks.pop(base, None)
                continue
            held = self.holding[base].gid
            if "@" in held and len(held.partition("@")[2].split(",")) != len(self.layout.seats(base)):
                # a configuration epoch changed the seats: resign, a designation in the new seats follows
                effects.append(Emit("authority.resigned", {"group": base, "term": self.holding[base].term,
                                                           "holder": self.rack, "gid": held,
                                                           "reason": f"configuration epoch {self.epoch}"}))
                del self.holding[base]
                self.acting_since.pop(base, None)
                continue
            shadowed = self._seat_shown_as(base) if base in self.acting_since else None
            if shadowed:
                # the group above would never count me in its seat: resign; the next designation takes a term
                # above the one shown (_candidacy), which every seat view then prefers
                effects.append(Emit("authority.resigned", {"group": base, "term": self.holding[base].term,
                                                           "holder": self.rack, "reason": shadowed}))
                del self.holding[base]
                self.acting_since.pop(base, None)
                continue
            filled = self._filled_seats(base)
            if filled:
                # designated while a seat was unknown (e.g. its holder was cut off): the holder now
                # known is no member of my gid, so it would never vote or learn here. Resign; once
                # the members' promises run out (a lease) a designation in the full gid follows.
                effects.append(Emit("authority.resigned", {"group": base, "term": self.holding[base].term,
                                                           "holder": self.rack, "reason": "seats filled: "
                                                           + ",".join(filled), "gid": self.gid(base)}))
                del self.holding[base]
                self.acting_since.pop(base, None)
                continue
            effects += self._send_heartbeats(base, now)
        stale = [k for k in self.acks if k[1] < now - self.lease]
        for k in stale:
            del self.acks[k]
        for base in self._bases():
            effects += self._candidacy(base, now)
        if now >= self.next_seat_at:
            self.next_seat_at = now + self.seat_every
            for base in (self.sector, self.dc):
                if self.acting(base, now):
                    # while the group above has a live authority (its heartbeats reach me) its
                    # seat holders are all that need reminding; otherwise views of the seats
                    # may have diverged (no gid in common, nobody designated): tell everyone
                    parent = self.layout.parent(base)
                    healthy = now - self.last_hb.get(parent, -1e9) < self.lease
                    effects += self._announce_seat(base, now, holders_only=healthy)
                    # anti-entropy upwards: my group's facts until they are known fleet-wide (a seat
                    # change above may have left a fact chosen in a group its authority is not in)
                    for _subject, (_seq, rank, value) in sorted(self.known.items()):
                        if rank < LEVELS["fleet"] and self._in_group(_subject, base):
                            effects += self._propose_fact(self.layout.parent(base), value, now)
        effects += self._sweep_proposals(now)
        effects += self._drive_decisions(now)
        effects += self._drive_control(now)
        effects += self._retry_up(now)
        effects += self._retry_down(now)
        effects += self._check_quorum(now)
        effects += self._check_fleet(now)
        effects += self._derive_groups(now)
        return effects

    def _retry_up(self, now: float) -> list[Effect]:
        """Facts waiting for an upper group whose seats have changed since, or whose proposal is no longer
        under way (abandoned while I did not act there - a lease lapsed for an instant - and the seats are
        the same when I act again): propose again there (``_propose_fact`` does nothing for an instance
        under way, chosen or retired)."""
        effects: list[Effect] = []
        for base, facts in list(self.up.items()):
            child = self.sector if self.layout.level(base) == "dc" else self.dc
            if base != self.sector and not self.acting(child, now):
                continue
            gid = self.gid(base)
            for _subject, (value, used) in sorted(facts.items()):
                if used != gid or f"{gid}|condition|{value['subject']}|{value['seq']}" not in self.paxos.pending:
                    effects += self._propose_fact(base, value, now)
        return effects

    def _retry_down(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        for (subject, seq), waiting in sorted(self.down.items()):
            known = self.known.get(subject)
            if known is None or known[0] != seq:
                del self.down[(subject, seq)]  # superseded by a newer fact (pushed down on its own)
                continue
            out = Fact("fleet", known[2])
            effects += [Send(m, out) for m in sorted(waiting)]
        return effects

    def _check_quorum(self, now: float) -> list[Effect]:
        last = self.last_hb.get(self.sector, now)
        if self.no_quorum or now - last < self.quorum_timeout or self.acting(self.sector, now):
            return []
        self.no_quorum = True
        effects: list[Effect] = [Emit("monitor.no_quorum", {"group": self.sector, "silent_for": now - last,
                                                            "policy": self.on_no_quorum})]
        return effects + self._apply_policy("no quorum")

    def _quorum_back(self, now: float, authority: str) -> list[Effect]:
        self.no_quorum = False
        effects: list[Effect] = [Emit("monitor.quorum", {"group": self.sector, "authority": authority})]
        effects += self._apply_policy("quorum regained")
        if authority != self.address:
            effects.append(Send(authority, self._sync_request()))
        return effects

    def _apply_policy(self, reason: str) -> list[Effect]:
        """The no-quorum policy: without my sector's quorum, or cut off from the fleet, the other data centers
        (the ones I cannot reach) are assumed ``default_assumption`` (``revert``) or kept as agreed (``keep``)."""
        if self.on_no_quorum != "revert":
            return []
        effects: list[Effect] = []
        for d in sorted(self.assumed):
            cut = self.no_quorum or (self.fleet_cut and d in self.unreached)
            want = self.default_assumption if cut else "as-agreed"
            if self.assumed[d] != want:
                self.assumed[d] = want
                effects.append(Emit("monitor.assume", {"group": d, "condition": want, "reason": reason}))
        return effects

    # -- availability of groups --------------------------------------------------------

    def _known_subject(self, subject: str) -> bool:
        """A fact may be about the configuration, a group of my layout, or a rack of my layout or of the next
        epoch's (one more sector per data center), nothing else."""
        if subject == CONFIG or self._group_subject(subject):
            return True
        m = _RACK_ID.match(subject)
        if m is None:
            return False
        d, sec, r = (int(x) for x in m.groups())
        return d < self.layout.dcs and sec <= self.layout.sectors and r < self.layout.racks

    def _group_subject(self, subject: Any) -> bool:
        """Is ``subject`` a sector or data center of my layout (a group fact's subject)?"""
        if subject == FLEET or not isinstance(subject, str) or subject[:1] != "d" or "r" in subject:
            return False
        try:
            return self.layout.level(subject) in ("sector", "dc")
        except ValueError:
            return False

    def _compute_unreached(self, now: float) -> tuple[str, ...]:
        """The data centers I cannot reach. A fleet seat holder (my data center's acting authority) judges
        for itself: a data center none of whose monitors I heard from (any message) for ``quorum_timeout``.
        Everyone else believes its authority's heartbeats (``unreached``) while they come; without them for
        ``quorum_timeout`` it reaches no other data center. A start waits ``quorum_timeout`` before judging."""
        if self.started_at is None or self.epoch is None:
            return ()
        others = [d for d in self.layout.all_dcs() if d != self.dc]
        grace = self.started_at + self.quorum_timeout
        if self.acting(self.dc, now):
            since = max(self.acting_since[self.dc], grace)
            last: dict[str, float] = {}
            for peer, t in self.heard.items():
                rack = self.layout.rack_of_monitor(peer)
                if rack is not None:
                    d = self.layout.dc_of(rack)
                    last[d] = max(last.get(d, t), t)
            return tuple(d for d in others if now - max(last.get(d, since), since) >= self.quorum_timeout)
        if self.told is not None and now - self.told[1] < self.quorum_timeout:
            return self.told[0]
        if now < grace + self.quorum_timeout:
            return self.unreached
        return tuple(others)

    def _check_fleet(self, now: float) -> list[Effect]:
        """Cut off (I cannot reach a quorum of the fleet's data centers): the no-quorum policy applies to the
        data centers I cannot reach, until I reach a quorum again (``monitor.no_quorum`` / ``monitor.quorum``
        with ``group = "fleet"``)."""
        new = self._compute_unreached(now)
        if new == self.unreached:
            return []
        self.unreached = new
        cut = 2 * (self.layout.dcs - len(new)) <= self.layout.dcs
        effects: list[Effect] = []
        if cut != self.fleet_cut:
            self.fleet_cut = cut
            effects.append(Emit("monitor.no_quorum" if cut else "monitor.quorum",
                                {"group": FLEET, "unreached": list(new), "policy": self.on_no_quorum}))
        return effects + self._apply_policy("cut off from the fleet" if cut else "fleet reached again")

    def _rack_conditions(self, levels: int = LEVELS["fleet"]) -> dict[str, str]:
        """rack -> the condition of its newest fact I know at ``levels`` or higher."""
        out: dict[str, str] = {}
        for subject, (_seq, rank, value) in self.known.items():
            if rank >= levels and subject != CONFIG and not self._group_subject(subject):
                out[subject] = value.get("condition")
        return out

    def _derive_groups(self, now: float) -> list[Effect]:
        """(As the fleet's acting authority) propose each sector's and data center's state where the rule,
        applied to the fleet-agreed rack facts and the seats that reach me, differs from the agreed one."""
        if self.epoch is None or not self.acting(FLEET, now):
            return []
        if now < self.acting_since[FLEET] + self.quorum_timeout:
            # a new fleet authority first catches up (a restarted monitor knows only the fleet facts it learned
            # by Paxos; heartbeat digests bring it the rest within a few beats): until the fleet members that
            # acked it within a lease all know the fleet facts it knows (same digest), or quorum_timeout passed
            recent = [d for d, t in self.fleet_digests.values() if now - t < self.lease]
            if not recent or any(d != self.digest() for d in recent):
                return []
        effects: list[Effect] = []
        pending = self.up.get(FLEET, {})
        # (the data centers I cannot reach, as _check_fleet judged them this beat: a fleet authority is its
        # data center's acting authority, so it judges by what it hears, not by its gid's acks - a seat
        # holder that changed since my designation is no member of my gid, but it speaks to me)
        for group, (cond, reason) in sorted(group_states(self.layout, self._rack_conditions(),
                                                         set(self.unreached)).items()):
            known = self.known.get(group)
            seq = known[0] if known is not None else 0
            waiting = pending.get(group)
            if waiting is not None and waiting[0]["seq"] > seq:
                if waiting[0]["condition"] == cond:
                    continue  # proposed already
                seq = waiting[0]["seq"]
            elif state_of_seq(seq) == cond:
                continue  # agreed already
            seq += 1  # the next seq of the other parity: the state it names
            effects += self._propose_fact(FLEET, {"subject": group, "seq": seq, "condition": cond,
                                                  "reason": reason}, now)
        return effects

    # -- queries -----------------------------------------------------------------------

    def _on_view_request(self, msg: ViewRequest, sender: str, now: float) -> list[Effect]:
        if not isinstance(sender, str) or not sender:
            return []
        last = now if self._view_at is None else self._view_at
        tokens = min(VIEW_BURST, self._view_tokens + max(0.0, now - last) * VIEW_RATE)
        self._view_at = now
        if tokens < 1.0:  # a peer asking in a loop: no ~7 KB answer each time (counted; said once a second)
            self._view_tokens = tokens
            self.views_refused += 1
            if now - self._view_said < 1.0:
                return []
            self._view_said = now
            return [Emit("monitor.view_refused", {"from": sender, "refused": self.views_refused,
                                                  "rate": VIEW_RATE, "burst": VIEW_BURST})]
        self._view_tokens = tokens - 1.0
        return [Send(sender, self.answer_view(now, groups_only=msg.groups_only is True))]

    def answer_view(self, now: float, groups_only: bool = False) -> View:
        """What I know, per rack and group, with the level of agreement and its age (durations on my clock)."""
        names = {v: k for k, v in LEVELS.items()}
        racks: dict[str, dict] = {}
        if not groups_only:
            for r in self.layout.all_racks():
                k = self.known.get(r)
                if r == self.rack and self.cond_seq and (k is None or k[0] < self.cond_seq):
                    racks[r] = {"condition": self.detector.state, "indicator": list(self.detector.indicator()),
                                "seq": self.cond_seq, "level": "local",
                                "age": None if self.cond_at is None else round(now - self.cond_at, 3)}
                elif k is None:
                    racks[r] = {"condition": "non-fault", "indicator": None, "seq": 0, "level": "default",
                                "age": None}
                else:
                    ind = k[2].get("indicator")
                    racks[r] = {"condition": k[2].get("condition"),
                                "indicator": list(ind) if isinstance(ind, (list, tuple)) else None,
                                "seq": k[0], "level": names.get(k[1], "?"),
                                "age": round(now - self.learned_at.get(r, now), 3)}
        rule = group_states(self.layout, self._rack_conditions(levels=LEVELS["sector"]), set(self.unreached))
        groups: dict[str, dict] = {}
        for g, (cond, reason) in rule.items():
            k = self.known.get(g)
            if k is not None:
                entry = {"condition": k[2].get("condition"), "level": "fleet", "seq": k[0],
                         "age": round(now - self.learned_at.get(g, now), 3), "reason": k[2].get("reason")}
            else:  # nothing agreed: the default state (seq 0), as a rack's default is non-fault
                entry = {"condition": state_of_seq(0), "level": "default", "seq": 0, "age": None, "reason": ""}
            entry["rule"] = cond
            dc = g if self.layout.level(g) == "dc" else self.layout.dc_of(g)
            assumed = self.assumed.get(dc, "as-agreed")
            entry["assumed"] = assumed if assumed != "as-agreed" else None
            if entry["assumed"]:
                entry["condition"] = assumed
            groups[g] = entry
        authorities = {b: {"term": a.term, "holder": a.holder, "acting": a.holder == self.rack and self.acting(b, now)}
                       for b, a in sorted(self.auth.items())}
        for _parent, tab in sorted(self.seats.items()):  # the seat holders I was told of (upper groups' seats)
            for child, (term, holder) in sorted(tab.items()):
                if child not in authorities:
                    authorities[child] = {"term": term, "holder": holder, "acting": False}
        return View(self.rack, -1 if self.epoch is None else self.epoch, self._layout_dict(), racks, groups,
                    authorities, self.no_quorum, self.fleet_cut, self.on_no_quorum, dict(self.assumed),
                    0.0 if self.started_at is None else round(now - self.started_at, 3), list(self.unreached))

    # -- plumbing ----------------------------------------------------------------------

    def _paxos(self, effects: list[Effect], now: float) -> list[Effect]:
        """Pass the embedded Paxos node's effects through, reacting to every value it learns."""
        out: list[Effect] = []
        for eff in effects:
            out.append(eff)
            if eff.__class__ is Emit and eff.kind == "paxos.chosen":
                out += self._on_chosen(eff.fields["instance"], eff.fields["value"], now)
        return out

    def _mine(self) -> dict:
        out: dict[str, Any] = {"cond_seq": self.cond_seq,
                               "executed": {d: dict(r) for d, r in sorted(self.executed.items())}}
        if self.covered:
            out["covered"] = self.covered
        if self.blocked:
            out["blocked"] = dict(sorted(self.blocked.items()))
        if self.retired:
            out["retired"] = dict(sorted(self.retired.items()))
        if self.epoch:
            out["config"] = {"epoch": self.epoch, "layout": self._layout_dict()}
        if self.rejoining:
            out["rejoining"] = True
        return out

    def _persist_mine(self) -> Persist:
        return Persist(MONITOR_KEY, self._mine())

    def state(self) -> dict:
        """All durable state, as written by Persist effects so far."""
        out = self.paxos.state()
        out[MONITOR_KEY] = self._mine()
        return out

    def view(self) -> dict:
        """A snapshot for reports and tests: indicator, authorities, known facts."""
        return {"rack": self.rack, "condition": self.detector.state, "indicator": self.detector.indicator(),
                "authorities": {b: (a.term, a.holder) for b, a in self.auth.items()},
                "acting": sorted(self.acting_since), "known": {s: v[2] for s, v in self.known.items()},
                "assumed": dict(self.assumed), "no_quorum": self.no_quorum, "fleet_cut": self.fleet_cut,
                "unreached": list(self.unreached)}

    _handlers = {
        Status: _on_status,
        Heartbeat: _on_heartbeat,
        HeartbeatAck: _on_heartbeat_ack,
        Seat: _on_seat,
        Fact: _on_fact,
        FactAck: _on_fact_ack,
        SyncRequest: _on_sync_request,
        SyncReply: _on_sync_reply,
        TermHint: _on_term_hint,
        Rejoin: _on_rejoin,
        Retired: _on_retired,
        Reconfigure: _on_reconfigure,
        RejoinReply: _on_rejoin_reply,
        Execute: _on_execute,
        ExecuteAck: _on_execute_ack,
        RebootAck: _on_reboot_ack,
        ViewRequest: _on_view_request,
        SeatView: _on_seat_view,
    }
