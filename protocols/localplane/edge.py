"""The edge node: self-evaluation, assent, role holding, and the isolated local control plane.

How this works
--------------
Source: ``shared/seeds/004_726d366e1cefdd53.txt`` [0066]-[0099], FIGS. 3A-3B.
One :class:`EdgeNode` per data processing system. Its rules, in prose:

**Connected.** The node learns the intermediate representation and the
deployment's membership from the manager's :class:`Deploy`, answers every
:class:`Heartbeat` with a :class:`HeartbeatAck` (the plan it follows, what it
holds) and answers :class:`FitRequest` with a :class:`FitReport`: per role its
capability as a ratio of the role's metric (the default evaluation,
:func:`synthetic_fit`, is pluggable through ``evaluate``), per management role
its objective score if it meets the role's criteria. Roles are held under the
manager's lease, which only the manager extends: every ack carries the node's
send time ``sent``; a heartbeat (or :class:`Commit`) echoes the newest ``sent``
the manager received and grants a set of role keys, and a granted holding is
extended to ``echo + lease`` - measured from this node's own send time, so a
delayed or lost message never stretches it past what the manager accounts
for. A grant never creates a holding, a holding whose lease runs out is given
up (``manager_lease_expired``), and a :class:`Commit` is ignored when its lease
is already over or a newer final plan was already released or committed here.
So a node whose acks are lost loses its roles within ``lease`` even though it
still hears heartbeats (the proof is in ``manager``'s module docstring).

**Renewal requests (loss).** A lost beat or ack is not a lost manager. The
node asks for a beat itself - a :class:`HeartbeatAck` with ``renew`` every
``retry_every`` seconds, answered at once by a heartbeat for it alone (same
grants, same lease accounting) - while a leased holding has missed a renewal,
while a share lapsed not long ago (``lapsed``: the manager commits it again
at once, a regrant), once no beat came for half of ``isolation_after``, and
while it is isolated but hears the manager again (so the isolation ends
quickly). One ``edge.renew_requested`` per chain of requests and reason.
Requests to a manager known down (isolated, hearing nothing) are not sent.

**Isolation, per island.** A deployed node that hears no heartbeat for
``isolation_after`` seconds first asks ``probe_fanout`` (default 4) peers
drawn at random (:class:`SiteQuery`, again every ``retry_every`` to those
that have not answered, for ``probe_window``) whether they still hear the
manager; an :class:`Announce` or :class:`LeaderHeartbeat` from a peer
meanwhile ends the question (only a node that asked and found the site cut
off sends them): it declares isolation at once, so an island's members
declare within a round trip of each other and hear every announcement
within the gather window. Each answers :class:`SiteStatus`: how
long ago it last heard the manager (a duration, timed back from receipt on
the asker's clock), whether it is cut off itself, and its temporary plan. A
peer *hears the manager* when it is not cut off, heard it less than
``site_fresh`` (``isolation_after - heartbeat_interval``) ago, and more than
1.5 beat intervals later than the asker did (an island cut at once heard its
last beats together). If one does, only this node's uplink is lost: it
follows the site (``edge.uplink_lost``) - it declares no isolation, elects
nobody and takes no temporary role; its final roles run out with the
manager's lease, the manager plans around it, and it asks again once that
peer's word is old (or the peer sends an election or plane message, which
only a cut-off node sends). Otherwise - every peer asked answered no, or the
window passed - it declares isolation (``edge.isolation_declared``), gives
up its final roles (their lease expired) and starts an election. As a second
line (answers can be lost): a connected node in no plane answers every
:class:`Announce`, :class:`VoteRequest` and :class:`LeaderHeartbeat` with its
:class:`SiteStatus`, and a cut-off node told so by a peer in no plane that
hears the manager - at once if it is in no plane yet or leads a plane of
one, else once the peer went on saying so for ``site_grace`` (the longer of
two beat intervals and half ``isolation_after``) in which the node heard no
beat itself (a heal that brings the manager back too is the manager's to
reconcile) - ends its isolation (``edge.isolation_ended`` with ``why``),
steps down if it leads, gives up its temporary roles and follows the site.
While it follows the site it asks the manager for a beat once a beat
interval; the first beat it hears ends that (``edge.uplink_restored``).

**Election (bully by fit, with terms).** The node moves to ``term + 1`` (one
above every term it has seen) and sends :class:`Announce` (term, its
leadership score: the ``leader`` role's objective function) to every member of
the deployment. For ``gather_window`` seconds it collects the announcements of
that term; the nodes heard form its *view*. The best of the view by (score,
address) is the candidate: if that is this node it sends :class:`VoteRequest`
(term, view) to the view. A node grants at most one vote per term, only to a
candidate whose view contains it and that is the best it heard itself, and
only while it is isolated and follows no live leader. A candidate with votes
from a strict majority of its view becomes leader (``plane.leader``). With no
leader by ``election_timeout`` the node starts again one term higher.
*Safety*: a node votes once per term and a leader needs a majority of its own
view, so two leaders of one term have disjoint electorates. Within one
*connected island* - the nodes that can reach one another during the gather
window, judged by the checker from the network partition events - every node
hears every announcement (the window is longer than the latency), so the
views are equal and at most one leader per island per term emerges. *Loss*:
while gathering, the announcement goes out again every ``retry_every`` to
each peer not heard from in the term, and a candidate sends its vote request
again to each member of its view that has neither voted nor refused; a node
that heard nobody gathers again (``gather_retries``, ``plane.gather_retry``)
before it leads a plane of one. A node that hears a live leader follows it.

**Merging planes.** While the manager is away a leader beats every peer of the
deployment, not only its members. A node whose leader loses to the beating
leader by (term, then fit - the leader's score -, then address), or that
follows no live leader, follows that leader on its second beat (counted,
not timed: one stray beat is no plane; the leader beats once an interval,
so a heal that brings the manager back as well is mostly left to the
manager, whose beats come as often); a leader that yields says
``plane.stepdown``. A leader that hears a losing rival leader beats every
peer at once (once per rival and lease), so the losing plane's nodes get
that second beat within about a message delay of the winner hearing the
loser, not a tick later. So the loser's holders give up their shares within
about a beat interval of the merge, inside the handover bound
(``edge.toml``: 0.5 s; waiting for the next tick took up to 0.53 s in real
runs). A node that
switches planes gives up what it held under the old one before it takes
anything in the new one (break before make). So planes split by lost
announcements, or by a partition inside the site that heals while the
manager is away, merge into one.

**The plane (leader).** The leader sends :class:`FitRequest` for the isolated
role set and the management roles to its view - again every ``retry_every``
to the members that have not reported - waits ``fit_timeout`` (or all
reports), then negotiates the roles (:class:`Negotiation`, proposals sent
again to silent voters until the round's timeout) under the isolated
governance rules with the reporters as the electorate. A member that did
not report stays a member and is asked again once a beat, as is a node that
joins later (``plane.fit_requested``). Its :class:`LeaderHeartbeat` (every
tick) carries the plan's assignments - the temporary subscriptions - and a
lease as a *duration*, ``leader_lease - lease_margin`` seconds, which the
member times on its own clock from receipt (no instant of one host's clock is
ever read on another's: monotonic clocks share no origin, and drift). The
leader accounts the lease as ending ``leader_lease`` after the send on its
own clock, so the member's ends first as long as delay plus drift over a
lease stay below ``lease_margin`` (default ``heartbeat_interval``, as the
manager's). Members answer :class:`LeaderAck`, and a
member whose ack is late is beaten again every ``retry_every``. A member
silent for ``leader_lease + heartbeat_interval`` is dropped from the plane
(its open votes are no longer waited for); once the last lease sent to it
has run out its roles are negotiated again (``plane.holder_lost``), so a role
never has two holders in one plan. A member silent for more than a beat
interval is beaten with a lease that ends no later than it would be dropped,
so a member gone with a partition is replaced as soon as it is dropped
(``edge.toml``: 1.2 s of silence, not 2.2 s); one that acks again gets full
leases again. A relinquished role is negotiated again
the same way. Roles left unfilled are negotiated again every
``refill_every`` and when a member reports its fit late
(``plane.unfilled_retry``): the plane grows back as nodes return.

**Holding roles.** A member takes the roles the complete plan gives it
(``edge.role_assigned``, temporary) and holds them while the leader's lease
runs; when it expires (the leader died or the island split) it gives them up
(``edge.role_relinquished``) and elects again, one term higher: an island that
splits forms its own plane on each side. A :class:`Propose` for itself is
accepted when the role's load fits in its free resources after the roles it
already committed to in that plan (a proposal that names the roles it holds
agreed, ``agreed``, makes it forget any other commitment: a lost
:class:`Withdraw`); a proposal for another node is voted against when this
node distrusts that node (it served it badly). A request sent again is
answered the same, without a new decision: the answer to a proposal is kept
per plan and round, the fit evaluation per requester and plan.

**Validator and reporter.** The validator holder probes every service holder
each ``validate_every`` seconds (:class:`Probe` -> :class:`ProbeResult`),
judges the measured ratio against the subscription's ``min_ratio`` and sends
:class:`Validation` to the leader and the reporter; a holder measuring itself
below it relinquishes. The validator also asks each holder as a client would
(:class:`ClientRequest` to the holder, answered by its workload): a refusal
(any reason but ``starting``; silence counts for nothing) fails the holder's
validation whatever it measures of itself. A failed validation *revokes* the
share (``plane.revoked``): the leader drops it from the plan (a new version,
beaten at once; the holder is not offered that role again) and negotiates the
role again only once the holder acked that version (it gave the share up) or
the lease last sent to it ran out. The reporter records plan versions and verdicts of one
isolation: its record starts empty when the node declares isolation (a
failure of an earlier outage never blocks ratifying a later plan).

**Reconnect.** The first heartbeat heard while isolated stops the node's
electioneering, and the leader sends its :class:`PlanReport`, the reporter its
:class:`ReporterRecord`, each again every ``retry_every`` while the manager is
in reach until the manager confirms it (:class:`ReportReceived`), at most
``resend_limit`` times (``plane.report_confirmed`` /
``plane.report_unconfirmed``; the plan report is moot once a final plan is
committed, the record is not: it feeds the performance history). Isolation ends (``edge.isolation_ended``) only with a
manager message that echoes an ack this node sent since it declared isolation
(the manager has heard it since): then every temporary holding the message
does not grant is given up, the others are held under the manager's lease,
and the node takes no new temporary roles. The plane goes on (the leader
keeps beating and takes in nodes that announce) until the manager's
:class:`Release` (give up all but ``keep``) and :class:`Commit` (hold exactly
these final roles) arrive.

Loss parameters: ``retry_every`` (default ``heartbeat_interval / 6``: how
often an unanswered request goes out again), ``resend_limit`` (default 10:
plan report and record sends, and once-a-beat fit requests to a late member),
``gather_retries`` (default 1) and ``refill_every`` (default
``election_timeout``). Island and lease parameters: ``probe_window``
(default ``gather_window / 2``: how long the site is asked before isolation
is declared) and ``lease_margin`` (default ``heartbeat_interval``: taken off
the leader's lease before it crosses the wire; it must exceed message delay
plus clock drift over ``leader_lease``).

**Served roles (host effects).** Every holding is a workload the host runs:
the node returns :class:`StartRole` when it takes a role (``converted``: the
same share under a new plan - a ratification - keeps running), :class:`StopRole`
when it gives one up (always before a StartRole that replaces it here: break
before make on the node too), :class:`CheckRole` for every service holding
each ``validate_every`` and when the validator probes it (the host answers
:class:`RoleHealth`; a workload reported down is given up, and the leader told),
and :class:`ServeRequest` for a client's :class:`ClientRequest` of a role it
holds (the host answers the client with :class:`ClientReply`; a node holding
nothing of the role says nothing). ``actors.localplane.EdgeNodeActor`` hands
them to an embedder's callbacks; ``topologies.edge.services.ServiceHost``
simulates them in a topology run.

**Restarts (durable state).** With a store (``durable=``: what the host read
back from the disk, ``{}`` for an empty one; ``None``: no store, nothing is
persisted) the node persists one record, ``edge``, whenever what safety
depends on changes, as a ``Persist`` placed before the first ``Send`` of
that handler (group commit: the host syncs it before anything leaves): its
term and its votes of the last terms (a vote is never granted twice in a
term, and a node leads a term only after voting for itself in it, so a
temporary plan id ``T{term}@node`` never recurs), the newest final plan it
released or committed (so a late :class:`Commit` of an older plan is never
taken after a restart: the manager counted on its ``Released``), the
deployment (IR, members, epoch) and its incarnation. Holdings are not
persisted: a restarted node holds nothing (its workloads died with it).
Every start is a new incarnation (one above the disk's; a fresh nonce on an
empty disk), and a later incarnation's plan ids carry its number
(``T{term}.{incarnation}@node``). A node restored from its disk starts timing
the manager at once, so during an outage it asks its site, declares
isolation with its island and follows the island's leader (it *rejoins the
plane*; the leader asks its fit if it had dropped it). A restarted node
(``first_start`` is the host's word that no earlier incarnation ran; a start
it cannot vouch for is a restart) leads no plane for ``leader_lease`` after
its start (``plane.quiet``): as a leader before, it may have granted leases
members still hold. A node back on an empty disk knows no deployment and no
vote: it takes part in nothing until the manager deploys it again. An echo
later than the node's clock reads was sent by an earlier incarnation on a
clock of another origin (a rebooted host) and renews nothing.

Clocks: no instant of one node's clock is ever interpreted by another. What
crosses the wire is a duration (``LeaderHeartbeat.lease``,
``SiteStatus.heard_ago``) timed from receipt, or an instant of the receiver's
own clock echoed back to it (``HeartbeatAck.sent`` -> ``Heartbeat.echo`` /
``Commit.echo``, to which the manager's ``lease`` duration is added).
"""

from __future__ import annotations

import enum
import math
import random
from typing import Any, Callable

import attrs

from protocols.core import CancelTimer, Effect, Emit, Persist, Send, SetTimer, TimerFired
from protocols.localplane.ir import meets_criteria, objective, synthetic_fit
from protocols.localplane.messages import (
    Announce,
    Answer,
    Assignment,
    ClientReply,
    ClientRequest,
    Commit,
    Committed,
    Deploy,
    FitReport,
    FitRequest,
    Heartbeat,
    HeartbeatAck,
    IntermediateRepresentation,
    LeaderAck,
    LeaderHeartbeat,
    PlanReport,
    Probe,
    ProbeResult,
    Propose,
    Release,
    Released,
    Relinquish,
    ReportReceived,
    ReporterRecord,
    RoleHealth,
    RoleSpec,
    SiteQuery,
    SiteStatus,
    Validation,
    Vote,
    VoteRequest,
    Withdraw,
)
from protocols.localplane.negotiation import Negotiation, _adict, role_key
from transport.codec import DecodeError, decode_value, encode_value

__all__ = ["CheckRole", "EdgeNode", "PlaneRole", "ServeRequest", "StartRole", "StopRole"]


# -- host effects: the workloads of the roles a node holds ---------------------------------------------------


@attrs.frozen(slots=True)
class StartRole(Effect):
    """Start the workload of holding ``key`` (role share ``share`` of ``shares`` of plan ``plan_id``, to meet
    ``target``). ``converted``: the node held this share already under another plan (a ratification, a
    temporary holding made final) - the workload keeps running, now for ``plan_id``."""

    key: str
    role: str
    share: int
    shares: int
    plan_id: str
    temporary: bool
    target: float
    kind: str = "service"
    converted: bool = False
    usage: float = 0.0  # the subscription's usage term: the load the workload may put on the node (0: unmetered)


@attrs.frozen(slots=True)
class StopRole(Effect):
    """Stop the workload of holding ``key``: the node gave it up (``reason``). Always before a StartRole that
    replaces it on this node (break before make)."""

    key: str
    role: str
    plan_id: str
    reason: str
    kind: str = "service"


@attrs.frozen(slots=True)
class CheckRole(Effect):
    """Check the workload of holding ``key``; the host answers the node with a :class:`RoleHealth` message (a
    workload that is down is given up). ``why``: ``"periodic"`` (every ``validate_every``) or ``"probe"`` (the
    plane's validator asked)."""

    key: str
    role: str
    plan_id: str
    why: str = "periodic"


@attrs.frozen(slots=True)
class ServeRequest(Effect):
    """A client's request for a role this node holds (share ``key`` of ``plan_id``): the workload answers the client
    with a :class:`ClientReply` (served, or refused if it is not running for that holding)."""

    client: str
    rid: int
    role: str
    key: str
    plan_id: str


class PlaneRole(enum.Enum):
    NONE = "none"  # connected, or not yet deployed
    ELECTING = "electing"  # gathering announcements / waiting for a candidate
    CANDIDATE = "candidate"
    FOLLOWER = "follower"
    LEADER = "leader"


class _Holding:
    __slots__ = ("a", "lease", "plan_id", "temporary", "term", "ends")

    def __init__(self, a: Assignment, plan_id: str, temporary: bool, term: int, lease: float = math.inf,
                 ends: float = math.inf) -> None:
        self.a = a
        self.plan_id = plan_id
        self.temporary = temporary
        self.term = term
        self.lease = lease  # held until then under the manager's lease (inf: an isolated plane's holding)
        self.ends = ends  # the subscription's duration term ends then (own clock; inf: no duration term)


def _plan_no(plan_id: str) -> int:
    """The number of a final plan ``F{n}@node`` or ``F{n}.{incarnation}@node`` (-1 for anything else)."""
    head = plan_id.partition("@")[0].partition(".")[0]
    return int(head[1:]) if head[:1] == "F" and head[1:].isdigit() else -1


class EdgeNode:
    """One edge node (see the module docstring). Constructor arguments are plain values (a topology file builds it)."""

    def __init__(
        self,
        address: str,
        manager: str,
        capability: dict | None = None,
        free: float = 1.0,
        criteria: dict | None = None,
        rng: random.Random | None = None,
        *,
        heartbeat_interval: float = 0.1,
        isolation_after: float = 0.5,
        gather_window: float = 0.1,
        election_timeout: float = 0.4,
        fit_timeout: float = 0.1,
        proposal_timeout: float = 0.1,
        leader_lease: float = 0.5,
        validate_every: float = 0.5,
        fit_noise: float = 0.03,
        distrust: list | None = None,
        evaluate: Callable[[RoleSpec], float] | None = None,
        retry_every: float | None = None,
        resend_limit: int = 10,
        gather_retries: int = 1,
        refill_every: float | None = None,
        lease_margin: float | None = None,
        probe_window: float | None = None,
        probe_fanout: int = 4,
        durable: dict | None = None,
        first_start: bool | None = None,
    ) -> None:
        self.address = address
        self.node = address.partition("/")[0]
        self.manager = manager
        self.capability = {k: float(v) for k, v in (capability or {}).items()}
        self.free = float(free)
        self.criteria = {k: float(v) for k, v in (criteria or {}).items()}
        self.criteria.setdefault("free", self.free)
        self.rng = rng if rng is not None else random.Random(address)
        self.heartbeat_interval = heartbeat_interval
        self.tick_interval = heartbeat_interval
        self.isolation_after = isolation_after
        self.gather_window = gather_window
        self.election_timeout = election_timeout
        self.fit_timeout = fit_timeout
        self.proposal_timeout = proposal_timeout
        self.leader_lease = leader_lease
        self.member_timeout = leader_lease + heartbeat_interval
        self.validate_every = validate_every
        self.fit_noise = fit_noise
        self.distrust = set(distrust or ())
        self.evaluate = evaluate
        # loss tolerance: requests go out again this often until answered (or the target is known down)
        self.retry_every = float(retry_every) if retry_every else heartbeat_interval / 6
        self.resend_limit = int(resend_limit)  # once-a-beat resends (plan report, record, a late member's fit)
        self.gather_retries = int(gather_retries)  # gathers again before leading alone when it heard nobody
        self.refill_every = float(refill_every) if refill_every else election_timeout  # unfilled roles retried
        # the leader's lease crosses the wire as a duration, this much shorter than what the leader accounts
        # (message delay, clock drift between hosts, timer lag): default heartbeat_interval, as the manager's
        self.lease_margin = float(heartbeat_interval if lease_margin is None else lease_margin)
        if not 0 <= self.lease_margin < leader_lease:
            raise ValueError(f"lease_margin must be in [0, leader_lease), got {self.lease_margin}")
        # a silent manager: how long the peers are asked whether they still hear it before isolation is declared
        self.probe_window = float(probe_window) if probe_window else gather_window / 2
        # how many peers (drawn at random) are asked: one that hears the manager is enough to follow the site, and
        # asking everyone would flood the links just when the election needs them (a cut node that asked only
        # cut peers still learns of the site from the answers to its election messages)
        self.probe_fanout = max(1, int(probe_fanout))
        # its own stream (fit noise is left as it was), seeded from the rng's state as text: hash() of that state
        # (which ends in None, hashed by address on Python 3.11) differed between processes
        self.probe_rng = random.Random(repr(self.rng.getstate()))
        self.probe_asked: set[str] = set()
        # a peer's "I heard the manager" counts while younger than this (then it would be going silent itself)
        self.site_fresh = max(heartbeat_interval, isolation_after - heartbeat_interval)
        # a cut-off node told the site hears the manager waits this long for a beat of its own before it follows
        # the site (a heal brings the manager's beat within an interval, plus a transport's reconnect on real links)
        self.site_grace = max(2 * heartbeat_interval, isolation_after / 2)

        self.ir: IntermediateRepresentation | None = None
        self.members: list[str] = []
        self.epoch = -1
        self.isolated = False
        self.isolated_at: float | None = None
        self.reported = False  # the plan report / record went out on the first heartbeat heard while isolated
        self.hears_manager = False  # isolated, but beats arrive again (no longer electing; holdings wait for _fresh)
        self.floor: tuple[int, int] = (-1, -1)  # (manager epoch, newest final plan number) released or committed
        self.last_heartbeat: float | None = None
        self.term = 0
        self.voted: dict[int, str] = {}
        self.early: dict[str, tuple[int, float, float]] = {}  # announcements heard while still connected
        self.heard: dict[str, float] = {}  # announcements of the current term: address -> score
        self.view: list[str] = []
        self.votes: set[str] = set()
        self.role = PlaneRole.NONE
        self.leader = ""
        self.leader_term = 0
        self.leader_until = -math.inf
        self.plan_id = ""  # the temporary plan this node follows
        self.plan_version = -1
        self.plan: list[Assignment] = []  # the followed plan's assignments (validator/reporter need them)
        self.holdings: dict[str, _Holding] = {}
        self.commitments: dict[str, dict[str, float]] = {}  # plan_id -> role -> load
        self.record: list[dict[str, Any]] = []  # the reporter's record
        self.next_validate = 0.0
        self.next_check = 0.0  # the next periodic CheckRole of the workloads held here
        self.declined: dict[str, float] = {}  # key given up on its own (usage term, failed check) -> until when
        self.vrid = 0  # the validator's client checks: request number -> (holder, role, share, plan)
        self.vchecks: dict[int, tuple[str, str, int, str]] = {}
        self.lead: _Lead | None = None
        # answers and fit reports already given, replayed for a duplicate request (plan id + round / plan id)
        self.answered: dict[tuple, Answer] = {}
        self.fitted: dict[tuple[str, str], dict[str, float]] = {}
        # the manager's lease: its length, the last beat's seq, shares that lapsed while connected (key -> when)
        self.lease_len = isolation_after
        self.last_beat = (-1, 0)  # (epoch, seq) of the newest manager beat heard: what a renewal request names
        self.lapsed: dict[str, float] = {}
        self.renew_at: float | None = None  # when the pending "renew" timer fires
        self.renewing = ""  # why a chain of renewal requests is running (one every retry_every), "" if none
        self.report_due: dict[str, int] = {}  # "plan" / "record" -> sends left until the manager confirms
        self.report_paused = False  # reports are due but the manager went out of reach
        self.gathers = 0  # gather retries in this term
        self.refused: set[str] = set()  # voters that refused this candidate in this term
        self.leader_size = 0  # members of the followed leader's plane (from its beats)
        self.rival: tuple[str, int, float] | None = None  # another plane's leader heard: (address, beats, last)
        self.leader_fit = 0.0  # the followed leader's score (from its beats): the merge rule's second key
        # isolation per island: the peers asked whether they still hear the manager, and what they said
        self.probing: float | None = None  # when the current round of SiteQuery started (None: no round)
        self.probe_no: set[str] = set()  # peers that answered the round without hearing the manager lately
        self.support: dict[str, float] = {}  # peer that hears the manager -> until when its word counts (own clock)
        self.uplink_lost = False  # the site hears the manager, this node does not: it follows the site
        self.site_seen: tuple[float, float] | None = None  # cut off, yet told the site hears it: (first, last)
        # durable state (see "Restarts" in the module docstring): None: no store, nothing is persisted
        self.persistent = durable is not None
        self._deploy_enc: Any = None  # the Deploy persisted (encoded), kept to write the record again
        self._deploy_gen = 0  # bumped whenever _deploy_enc changes (part of what is compared before a Persist)
        self._persisted: tuple | None = None  # what the disk holds (compared after each handler)
        rec = self._restore(durable) if durable else None
        # a start the host cannot vouch for as the first is a restart; with no store at all, the embedder's choice
        self.restarted = (first_start is False) or (first_start is None and rec is not None)
        # every start is a new incarnation: one above the disk's, a fresh nonce on an empty disk after a restart
        self.incarnation = (int(rec["inc"]) + 1 if rec is not None
                            else self.rng.randrange(2, 1 << 30) if self.restarted else 1)
        self.started: float | None = None  # the first tick of this incarnation
        self.quiet_until = -math.inf  # a restarted node leads no plane before this (leases it granted may run)

    # -- helpers -------------------------------------------------------------------------

    def _emit(self, event_kind: str, /, **fields: Any) -> Emit:
        return Emit(event_kind, fields)

    def _peers(self) -> list[str]:
        return [m for m in self.members if m != self.address]

    def leader_score(self) -> float:
        spec = self._mgmt("leader")
        if spec is None:
            return 0.0
        return objective(spec, self.criteria) if meets_criteria(spec, self.criteria) else -1e9

    def _mgmt(self, name: str) -> RoleSpec | None:
        if self.ir is None:
            return None
        for r in self.ir.management:
            if r.name == name:
                return r
        return None

    def fit_for(self, spec: RoleSpec) -> float | None:
        """Self-evaluated fit for one role: a capability ratio (service) or objective score (management)."""
        if spec.kind == "management":
            return objective(spec, self.criteria) if meets_criteria(spec, self.criteria) else None
        if self.evaluate is not None:
            return float(self.evaluate(spec))
        return synthetic_fit(spec, self.capability, self.rng, self.fit_noise)

    def holding_keys(self) -> list[str]:
        return sorted(self.holdings)

    # -- durable state --------------------------------------------------------------------------------

    def _restore(self, durable: dict) -> dict | None:
        """Take back what the disk holds (the deployment, terms and votes, the release floor); None if nothing."""
        rec = durable.get("edge")
        if not isinstance(rec, dict):
            return None
        if rec.get("deploy") is not None:
            try:
                d = decode_value(rec["deploy"])
            except DecodeError:
                d = None
            if isinstance(d, Deploy):
                self.ir, self.members, self.epoch = d.ir, sorted(d.members), d.epoch
                self._deploy_enc = rec["deploy"]
        self.term = int(rec.get("term", 0))
        self.voted = {int(t): str(c) for t, c in (rec.get("voted") or {}).items()}
        fl = rec.get("floor") or (-1, -1)
        self.floor = (int(fl[0]), int(fl[1]))
        return rec

    def _state(self) -> tuple:
        voted = tuple(sorted(self.voted.items())[-8:])  # a vote of an older term can no longer elect anybody
        return (self.incarnation, self._deploy_gen, self.term, voted, self.floor)

    def _durable(self, out: list[Effect]) -> list[Effect]:
        """Group commit: if what safety depends on changed in this handler, one Persist goes before its first Send
        (the host syncs it before anything leaves) - votes, terms, the release floor, the deployment."""
        if not self.persistent:
            return out
        st = self._state()
        if st == self._persisted:
            return out
        self._persisted = st
        rec = {"inc": self.incarnation, "deploy": self._deploy_enc, "term": self.term,
               "voted": {str(t): c for t, c in st[3]}, "floor": list(self.floor)}
        i = next((i for i, e in enumerate(out) if isinstance(e, Send)), len(out))
        return out[:i] + [Persist("edge", rec)] + out[i:]

    def _first_tick(self, now: float) -> list[Effect]:
        """The start of an incarnation: a node restored from its disk knows its deployment, so it starts timing the
        manager at once (and asks its site, and joins its island's plane if the manager is away); a restarted node
        leads no plane for one lease (members may still hold roles under leases it granted before)."""
        self.started = now
        out: list[Effect] = []
        if self.restarted:
            self.quiet_until = now + self.leader_lease
            out.append(self._emit("edge.restarted", incarnation=self.incarnation, deployed=self.ir is not None,
                                  term=self.term, quiet_until=round(self.quiet_until, 6)))
        if self.ir is not None and self.last_heartbeat is None:
            out.append(SetTimer("manager", now + self.isolation_after))
        return out

    # -- the sans-I/O entry points -------------------------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        return self._durable(self._tick(now))

    def _tick(self, now: float) -> list[Effect]:
        out: list[Effect] = [] if self.started is not None else self._first_tick(now)
        out += self._check_roles(now)
        if self.role is PlaneRole.LEADER and self.lead is not None:
            out += self.lead.tick(now)
        if now >= self.next_validate and self.plan_id and self._holds("validator"):
            self.next_validate = now + self.validate_every
            self.vchecks = {}  # a round's client checks: an answer after the next round starts is not waited for
            for a in self.plan:
                if a.kind == "service":
                    out.append(Send(a.holder, Probe(plan_id=self.plan_id, role=a.role, share=a.share)))
                    if a.holder != self.address:  # and asks the holder as a client would
                        self.vrid += 1
                        self.vchecks[self.vrid] = (a.holder, a.role, a.share, self.plan_id)
                        out.append(Send(a.holder, ClientRequest(rid=self.vrid, role=a.role)))
        return out

    def handle(self, msg: Any, sender: str, now: float) -> list[Effect]:
        h = _HANDLERS.get(type(msg))
        if h is None:
            return [self._emit("edge.ignored", what=type(msg).__name__, sender=sender, why="unknown message")]
        return self._durable(h(self, msg, sender, now))

    # -- connected operation --------------------------------------------------------------------

    def _on_deploy(self, msg: Deploy, sender: str, now: float) -> list[Effect]:
        if sender != self.manager:
            return []
        first = self.ir is None or msg.ir.version != self.ir.version
        if first or sorted(msg.members) != self.members or msg.epoch != self.epoch:
            self._deploy_enc = encode_value(msg) if self.persistent else None
            self._deploy_gen += 1
        self.ir = msg.ir
        self.members = sorted(msg.members)
        self.epoch = msg.epoch
        out: list[Effect] = []
        if first:
            out.append(self._emit("edge.deployed", intent=msg.ir.intent, version=msg.ir.version, members=len(self.members)))
        return out + self._heard_manager(now)

    def _on_heartbeat(self, msg: Heartbeat, sender: str, now: float) -> list[Effect]:
        if sender != self.manager or self.ir is None:
            return []
        self.epoch = max(self.epoch, msg.epoch)
        out = self._heard_manager(now)
        if self.isolated and self._fresh(msg.echo):
            out += self._end_isolation(set(msg.grant), msg.echo, msg.lease, now)
        elif not self.isolated:
            out += self._renew(set(msg.grant), msg.echo, msg.lease, now)
        if (msg.epoch, msg.seq) != self.last_beat:
            self.last_beat = (msg.epoch, max(msg.seq, self.last_beat[1]) if msg.epoch == self.last_beat[0] else msg.seq)
        if msg.lease > 0:
            self.lease_len = msg.lease
        out.append(self._ack(msg.epoch, msg.seq, now, renew=False))
        return out + self._arm_renew(now)

    def _ack(self, epoch: int, seq: int, now: float, renew: bool) -> Send:
        temporary = any(h.temporary for h in self.holdings.values()) or bool(self.plan_id)
        final = next((h.plan_id for h in self.holdings.values() if not h.temporary), "")
        return Send(self.manager, HeartbeatAck(
            epoch=epoch, seq=seq, plan_id=self.plan_id if temporary else final, temporary=temporary,
            term=self.leader_term, leader=self.leader, holding=self.holding_keys(), sent=now, renew=renew,
            declined=self._declined(now)))

    # -- renewal requests: a lease running low, a lapsed share, a reconnect ------------------------------

    def _renew_time(self, now: float) -> float | None:
        """When this node must ask the manager for a beat (None: no need): while isolated but hearing the manager
        (to end the isolation), while a share lapsed not long ago (to get it regranted), from the moment a leased
        holding missed a renewal, and once no beat came for half of ``isolation_after`` (silence is not taken
        for isolation before the requests went unanswered too). A beat echoes the ack of the beat before, so
        right before each beat a lease has ``lease - 2 beats`` left; below ``lease - 2.25 beats`` one was missed."""
        if self.ir is None:
            return None
        if self.isolated:
            return now if self.hears_manager else None
        for k in [k for k, t in self.lapsed.items() if now - t > self.isolation_after or k in self.holdings]:
            del self.lapsed[k]
        if self.lapsed:
            return now
        due = [self.last_heartbeat + self.isolation_after / 2] if self.last_heartbeat is not None else []
        due += [h.lease - (self.lease_len - 2.25 * self.heartbeat_interval)
                for h in self.holdings.values() if h.lease < math.inf]
        return max(now, min(due)) if due else None

    def _renew_why(self, now: float) -> str:
        if self.isolated:
            return "reconnect"
        if self.lapsed:
            return "lapsed"
        ends = [h.lease for h in self.holdings.values() if h.lease < math.inf]
        if ends and min(ends) - now < self.lease_len - 2.25 * self.heartbeat_interval:
            return "lease_low"
        return "quiet"

    def _arm_renew(self, now: float) -> list[Effect]:
        """(Re)arm the "renew" timer for the next renewal request (none needed: cancel it)."""
        t = self._renew_time(now)
        if t is None or t > now + 1e-9:
            self.renewing = ""
        if t is None:
            if self.renew_at is None:
                return []
            self.renew_at = None
            return [CancelTimer("renew")]
        if self.renewing and self.renew_at is not None:
            return []  # a renewal chain is running: its timer stays
        if self.renew_at == t:
            return []
        self.renew_at = t
        return [SetTimer("renew", t)]

    def _on_renew_timer(self, now: float) -> list[Effect]:
        self.renew_at = None
        t = self._renew_time(now)
        if t is None or t > now + 1e-9:
            return self._arm_renew(now)
        out: list[Effect] = []
        why = self._renew_why(now)
        if self.renewing != why:  # one event per chain of requests (and reason), not per request
            self.renewing = why
            ends = [h.lease for h in self.holdings.values() if h.lease < math.inf]
            out.append(self._emit("edge.renew_requested", why=why, lapsed=sorted(self.lapsed),
                                  lease_left=round(min(ends) - now, 6) if ends else None))
        # while only this node's uplink is lost, its requests go out once a beat interval, not every retry_every
        self.renew_at = now + (self.heartbeat_interval if self.uplink_lost else self.retry_every)
        return out + [self._ack(*self.last_beat, now, renew=True), SetTimer("renew", self.renew_at)]

    def _heard_manager(self, now: float) -> list[Effect]:
        self.last_heartbeat = now
        out: list[Effect] = [SetTimer("manager", now + self.isolation_after)]
        self.probing = None
        self.support = {}
        self.site_seen = None
        if self.uplink_lost:
            self.uplink_lost = False
            out.append(self._emit("edge.uplink_restored"))
        if self.isolated:
            # the manager is back in reach: report the isolated period now, so it can decide, and stop electing;
            # the isolation itself ends only with a message that echoes an ack sent since (see _fresh)
            self.hears_manager = True
            if self.role in (PlaneRole.ELECTING, PlaneRole.CANDIDATE):
                self.role = PlaneRole.NONE
                out += [CancelTimer("gather"), CancelTimer("election")]
            out += self._report(now)
            out += self._arm_renew(now)
        if self.report_paused:
            self.report_paused = False
            out.append(SetTimer("report", now))
        return out

    def _cut_off(self) -> bool:
        """Isolated and hearing no beats: the node takes part in elections."""
        return self.isolated and not self.hears_manager

    def _report(self, now: float) -> list[Effect]:
        """Send the plan report (leader) and the record (reporter); both go out again until the manager confirms."""
        if self.reported:
            return []
        self.reported = True
        self.report_due = {}
        out: list[Effect] = []
        if self.role is PlaneRole.LEADER and self.lead is not None:
            self.report_due["plan"] = (self.lead.plan_id, self.resend_limit)
            out += self.lead.report(now)
        if self._holds("reporter"):
            self.report_due["record"] = (self.plan_id, self.resend_limit)
            out.append(self._reporter_record())
        if self.report_due:
            out.append(SetTimer("report", now + self.retry_every))
        return out

    def _resend_reports(self, now: float) -> list[Effect]:
        """Every ``retry_every``: send an unconfirmed report again while the manager is in reach (at most
        ``resend_limit`` times; a new isolation starts over)."""
        if not self.report_due or (self.isolated and not self.hears_manager):
            self.report_paused = bool(self.report_due)  # the manager is out of reach again: resumed when heard
            return []
        out: list[Effect] = []
        for what, (plan_id, left) in sorted(self.report_due.items()):
            if left <= 0 or (what == "plan" and (self.lead is None or self.lead.plan_id != plan_id)):
                del self.report_due[what]
                if left <= 0:
                    out.append(self._emit("plane.report_unconfirmed", what=what, plan_id=plan_id,
                                          sends=self.resend_limit + 1))
                continue
            self.report_due[what] = (plan_id, left - 1)
            if what == "plan":
                assert self.lead is not None
                out.append(Send(self.manager, self.lead.report_msg()))
            else:
                out.append(self._reporter_record(plan_id))
        return out + ([SetTimer("report", now + self.retry_every)] if self.report_due else [])

    def _on_report_received(self, msg: ReportReceived, sender: str, now: float) -> list[Effect]:
        if sender != self.manager:
            return []
        due = self.report_due.get(msg.what)
        if due is None or due[0] != msg.plan_id:
            return []  # a duplicate or late confirmation
        del self.report_due[msg.what]
        return [self._emit("plane.report_confirmed", what=msg.what, plan_id=msg.plan_id,
                           sends=self.resend_limit + 1 - due[1])]

    def _fresh(self, echo: float | None) -> bool:
        """Does a manager message echo an ack this node sent since it declared isolation?"""
        return echo is not None and self.isolated_at is not None and echo >= self.isolated_at

    @staticmethod
    def _from_future(echo: float | None, now: float) -> bool:
        """An echo is this node's own send time of an ack: one later than its clock reads now was sent by an earlier
        incarnation on a clock of another origin (a rebooted host) and renews nothing."""
        return echo is not None and echo > now

    def _end_isolation(self, grant: set[str], echo: float | None, lease: float, now: float) -> list[Effect]:
        """Connected again: from now on every holding is under the manager's lease, and only granted ones stay."""
        self.isolated = False
        self.hears_manager = False
        out: list[Effect] = [self._emit("edge.isolation_ended", term=self.leader_term, plan_id=self.plan_id,
                                        leader=self.leader, isolated_for=round(now - (self.isolated_at or now), 6))]
        if self.role in (PlaneRole.ELECTING, PlaneRole.CANDIDATE):
            self.role = PlaneRole.NONE
            out += [CancelTimer("gather"), CancelTimer("election")]
        out += self._report(now)  # if no beat got through before
        until = echo + lease if echo is not None and not self._from_future(echo, now) else -math.inf
        for key, h in sorted(self.holdings.items()):
            if key in grant and until > now:
                h.lease = until
            else:
                out += self._relinquish(key, "not_granted_on_reconnect", now, tell=False)
        return out + self._arm_lease(now)

    def _renew(self, grant: set[str], echo: float | None, lease: float, now: float) -> list[Effect]:
        """Extend the granted holdings to echo + lease (the echo is this node's own send time of an ack)."""
        if echo is None or self._from_future(echo, now):
            return []
        until = echo + lease
        for key, h in self.holdings.items():
            if key in grant and until > h.lease:
                h.lease = until
        return self._arm_lease(now)

    def _arm_lease(self, now: float) -> list[Effect]:
        ends = [h.lease for h in self.holdings.values() if h.lease < math.inf]
        terms = [h.ends for h in self.holdings.values() if h.ends < math.inf]
        return ([SetTimer("lease", min(ends))] if ends else []) + (
            [SetTimer("term", min(terms))] if terms else []) + self._arm_renew(now)

    def _term_over(self, now: float) -> list[Effect]:
        """A subscription whose duration term ended without a newer plan renewing it is given up (the plane or the
        manager plans the role again)."""
        out: list[Effect] = []
        for key in sorted(k for k, h in self.holdings.items() if h.ends <= now):
            out += self._relinquish(key, "subscription term over", now, tell=True)
        return out + self._arm_lease(now)

    def _lease_over(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        for key in sorted(k for k, h in self.holdings.items() if h.lease <= now):
            if not self.isolated and not self.holdings[key].temporary:
                self.lapsed[key] = now  # ask for it back at once (a regrant), while the manager still counts on it
            out += self._relinquish(key, "manager_lease_expired", now, tell=False)
        return out + self._arm_lease(now)

    def _newer_plan(self, epoch: int, plan_id: str) -> bool:
        """Record ``plan_id`` as seen; False if a newer final plan of this manager was already seen."""
        n = _plan_no(plan_id)
        if epoch == self.floor[0] and n < self.floor[1]:
            return False
        self.floor = (epoch, n)
        return True

    def _manager_lost(self, now: float) -> list[Effect]:
        if self.ir is None:
            return []
        if self.isolated:
            if not self.hears_manager:
                return []
            self.hears_manager = False  # only stale beats got through, and now none: elect again
            out = self._arm_renew(now)
            return out + (self._start_election(now) if self.role is PlaneRole.NONE else [])
        # isolation per island: first ask the site whether it still hears the manager
        until = self._site_hears(now)
        if until is not None:
            self.probing = None
            return [SetTimer("manager", until)]  # the site hears it: check again when that news is old
        if self.probing is None and self._peers():
            self.probing = now
            self.probe_no = set()
            peers = self._peers()
            self.probe_asked = set(self.probe_rng.sample(peers, min(len(peers), self.probe_fanout)))
            q = SiteQuery(term=self.term)
            return [Send(p, q) for p in sorted(self.probe_asked)] + [
                SetTimer("manager", now + self.probe_window), SetTimer("probe_retry", now + self.retry_every)]
        return self._declare_isolation(now)

    # -- isolation per island: does the site still hear the manager? ---------------------------------

    def _site_hears(self, now: float) -> float | None:
        """Until when a peer's word that it hears the manager counts (None: no peer said so lately)."""
        for p in [p for p, t in self.support.items() if t <= now]:
            del self.support[p]
        return max(self.support.values()) if self.support else None

    def _site_status(self, now: float) -> SiteStatus:
        ago = None if self.last_heartbeat is None else round(max(0.0, now - self.last_heartbeat), 6)
        return SiteStatus(heard_ago=ago, isolated=self._cut_off(), plan=self.plan_id)

    def _in_no_plane(self) -> bool:
        """Connected and in no temporary plane: what a node believing itself isolated must hear to follow the site."""
        return not self._cut_off() and self.role is PlaneRole.NONE and not self.plan_id

    def _answer_cut_off(self, sender: str, now: float, counts: bool = True) -> list[Effect]:
        """A peer that believes itself cut off sent an election or plane message: a node in no plane answers
        whether it still hears the manager (and stops counting on that peer's word) - only if it heard the manager
        within ``site_fresh``, else its word could not count. While this node asks the site itself, that
        message (``counts``) settles it: the peer declared isolation after asking the site, so this node declares
        too - an island cut at once declares within a round trip of its first member."""
        out = self._site_isolated_hint(sender, now)
        if self._in_no_plane() and sender in self.members:
            if self.last_heartbeat is not None and now - self.last_heartbeat < self.site_fresh:
                out.append(Send(sender, self._site_status(now)))  # only a word that can count is worth sending
            if counts and self.probing is not None and not self.isolated:
                # a peer already declared after asking the site itself: join it now, not a probe window later
                # (the election's views need every announcement within the gather window); were only the two of
                # them cut off, the site's answers to their announcements still make both follow it
                self.probe_no.add(sender)
                self.support.pop(sender, None)
                out += [CancelTimer("probe_retry")] + self._declare_isolation(now)
        return out

    def _on_site_query(self, msg: SiteQuery, sender: str, now: float) -> list[Effect]:
        if self.ir is None:
            return []
        return [Send(sender, self._site_status(now))]

    def _on_site_status(self, msg: SiteStatus, sender: str, now: float) -> list[Effect]:
        """A peer's word on the manager. It *hears the manager* when it is not cut off, heard a beat less than
        ``site_fresh`` ago (timed from receipt on this node's clock), and later than this node's own last beat
        by more than 1.5 beat intervals (a whole island cut at once heard its last beats together; a beat lost
        on the way here is not an uplink lost)."""
        if self.ir is None or sender not in self.members:
            return []
        mine = self.last_heartbeat if self.last_heartbeat is not None else -math.inf
        hears = (msg.heard_ago is not None and not msg.isolated and 0 <= msg.heard_ago < self.site_fresh
                 and now - msg.heard_ago > mine + 1.5 * self.heartbeat_interval)
        if not hears:
            if self.probing is not None:
                self.probe_no.add(sender)
                self.support.pop(sender, None)
                if self.probe_no >= self.probe_asked:
                    return [CancelTimer("probe_retry")] + self._declare_isolation(now)  # everyone answered: no
            return []
        until = now - msg.heard_ago + self.site_fresh
        if self.isolated:
            if not self._cut_off() or msg.plan:
                return []  # the manager is back for this node too, or the peer still follows a plane: the manager decides
            # a heal that brings the manager back too is the manager's to reconcile: its beat comes within a beat
            # interval or two; only when the site keeps hearing the manager and this node does not, it follows
            seen = self.site_seen
            alone = self.role in (PlaneRole.ELECTING, PlaneRole.CANDIDATE) or (
                self.role is PlaneRole.LEADER and self.lead is not None and self.lead.members <= {self.address})
            if alone:
                seen = (now - self.site_grace, now)  # in no plane, or a plane of one: nothing for a heal to keep
            if seen is None or now - seen[1] > self.leader_lease:
                self.site_seen = (now, now)
                return []
            self.site_seen = (seen[0], now)
            if now - seen[0] < self.site_grace:
                return []
            self.site_seen = None
            self.support[sender] = until
            return self._follow_site(sender, msg, now)
        self.support[sender] = max(self.support.get(sender, -math.inf), until)
        out: list[Effect] = []
        if not self.uplink_lost:
            self.uplink_lost = True
            out.append(self._emit("edge.uplink_lost", via=sender, heard_ago=msg.heard_ago,
                                  last_heartbeat=self.last_heartbeat))
        if self.probing is not None:
            self.probing = None
            out += [CancelTimer("probe_retry"), SetTimer("manager", self._site_hears(now) or now)]
        return out

    def _on_probe_retry(self, now: float) -> list[Effect]:
        """A SiteQuery goes out again to every peer that has not answered the round."""
        if self.probing is None or self.isolated:
            return []
        q = SiteQuery(term=self.term)
        return [Send(p, q) for p in sorted(self.probe_asked - self.probe_no)] + [
            SetTimer("probe_retry", now + self.retry_every)]

    def _site_isolated_hint(self, sender: str, now: float) -> list[Effect]:
        """A peer sent what only a node cut off from the manager sends: its word no longer counts; with no word
        left, this node asks the site again (it may have to join the island's isolation)."""
        if self.isolated or not self.uplink_lost or sender not in self.support:
            return []
        del self.support[sender]
        if self._site_hears(now) is not None or self.probing is not None:
            return []
        return [SetTimer("manager", now)]

    def _follow_site(self, via: str, msg: SiteStatus, now: float) -> list[Effect]:
        """This node declared isolation but a peer in reach hears the manager and follows no plane: the site is
        connected and only this node's uplink is not (and it went on saying so for ``site_grace`` while this
        node heard no beat: not a heal that brings the manager back to both). It ends its isolation, gives up its temporary roles (the
        manager's plan has holders for them), leaves its plane and follows the site."""
        out: list[Effect] = [self._emit("edge.isolation_ended", term=self.leader_term, plan_id=self.plan_id,
                                        leader=self.leader, isolated_for=round(now - (self.isolated_at or now), 6),
                                        why="the site hears the manager", via=via)]
        if self.role is PlaneRole.LEADER:
            out.append(self._emit("plane.stepdown", term=self.leader_term, plan_id=self.plan_id,
                                  reason=f"the site hears the manager ({via} heard it {msg.heard_ago}s ago)"))
            self.lead = None
        for key in [k for k, h in self.holdings.items() if h.temporary]:
            out += self._relinquish(key, "site_hears_manager", now, tell=False)
        out += [CancelTimer("gather"), CancelTimer("election"), CancelTimer("elect_retry"), CancelTimer("leader"),
                CancelTimer("report")]
        self.isolated = False
        self.hears_manager = False
        self.role = PlaneRole.NONE
        self.leader = ""
        self.leader_until = -math.inf
        self.plan_id = ""
        self.plan = []
        self.plan_version = -1
        self.report_due = {}
        self.report_paused = False
        self.uplink_lost = True
        out.append(self._emit("edge.uplink_lost", via=via, heard_ago=msg.heard_ago, last_heartbeat=self.last_heartbeat))
        return out + [SetTimer("manager", self._site_hears(now) or now)] + self._arm_renew(now)

    def _declare_isolation(self, now: float) -> list[Effect]:
        asked = len(self.probe_asked)
        answered = len(self.probe_no & self.probe_asked)
        self.probing = None
        self.support = {}
        self.uplink_lost = False
        self.isolated = True
        self.isolated_at = now
        self.reported = False
        self.report_due = {}
        self.hears_manager = False
        self.lapsed = {}
        self.record = []  # the reporter's record covers one isolation (what the manager ratifies or replaces)
        out: list[Effect] = [self._emit("edge.isolation_declared", last_heartbeat=self.last_heartbeat,
                                        after=self.isolation_after, term=self.term, asked=asked, answered=answered)]
        for key in [k for k, h in self.holdings.items() if not h.temporary]:
            out += self._relinquish(key, "manager_lease_expired", now, tell=False)
        for h in self.holdings.values():
            h.lease = math.inf  # the isolated plane's leases govern its temporary holdings
        out += self._arm_renew(now)  # the manager is known down: no renewal requests
        if self.role is PlaneRole.NONE:
            out += self._start_election(now)
        return out

    def _on_fit_request(self, msg: FitRequest, sender: str, now: float) -> list[Effect]:
        if self.ir is None:
            return []
        if msg.isolated:
            if not self._follows(sender, msg.term):
                return [self._emit("edge.ignored", what="FitRequest", sender=sender, why="not my leader")]
        elif sender != self.manager:
            return []
        known = self.fitted.get((sender, msg.plan_id))
        fits: dict[str, float] = {}
        if known is not None:
            fits = dict(known)  # a request sent again: the same evaluation (no new test run), nothing new to log
        else:
            for spec in msg.roles:
                f = self.fit_for(spec)
                if f is not None:
                    fits[spec.name] = f
            self.fitted[(sender, msg.plan_id)] = dict(fits)
            while len(self.fitted) > 16:
                del self.fitted[next(iter(self.fitted))]
        if not msg.isolated:  # a role declined lately is not offered to the manager again
            gone = {k.partition("#")[0] for k in self._declined(now)}
            fits = {r: f for r, f in fits.items() if r not in gone}
        rep = FitReport(plan_id=msg.plan_id, fits=fits, criteria=dict(self.criteria), free=self._free(msg.plan_id),
                        holding=self.holding_keys())
        if known is not None:
            return [Send(sender, rep)]
        return [Send(sender, rep), self._emit("edge.fit_reported", plan_id=msg.plan_id, to=sender, fits=fits)]

    def _free(self, plan_id: str) -> float:
        return round(self.free - sum(self.commitments.get(plan_id, {}).values()), 6)

    def _on_propose(self, msg: Propose, sender: str, now: float) -> list[Effect]:
        if self.ir is None:
            return []
        asked = (sender, msg.plan_id, msg.round, msg.role, msg.candidate, msg.share, msg.shares, msg.target)
        done = self.answered.get(asked)
        if done is not None:
            return [Send(sender, done)]  # a proposal sent again: the same answer, no new commitment
        if msg.candidate == self.address:
            committed = self.commitments.setdefault(msg.plan_id, {})
            if msg.agreed is not None:  # forget commitments the negotiator no longer counts (a lost Withdraw)
                for r in [r for r in committed if r not in msg.agreed and r != msg.role]:
                    del committed[r]
            free = self.free - sum(v for r, v in committed.items() if r != msg.role)
            yes = msg.load <= free + 1e-9
            reason = "fits" if yes else f"needs {msg.load:.3f}, free {free:.3f}"
            if yes:
                committed[msg.role] = msg.load
            role = "assignee"
        else:
            yes = msg.candidate not in self.distrust
            reason = "" if yes else "candidate does not serve me well"
            role = "voter"
        ans = Answer(plan_id=msg.plan_id, round=msg.round, yes=yes, reason=reason)
        self.answered[asked] = ans
        while len(self.answered) > 256:
            del self.answered[next(iter(self.answered))]
        out: list[Effect] = [Send(sender, ans),
                             self._emit("edge.answer", plan_id=msg.plan_id, round=msg.round, role=msg.role,
                                        share=msg.share, candidate=msg.candidate, yes=yes, reason=reason, **{"as": role})]
        return out

    def _on_withdraw(self, msg: Withdraw, sender: str, now: float) -> list[Effect]:
        self.commitments.get(msg.plan_id, {}).pop(msg.role, None)
        return []

    def _on_release(self, msg: Release, sender: str, now: float) -> list[Effect]:
        if sender != self.manager:
            return []
        self._newer_plan(msg.epoch, msg.plan_id)  # from now on no Commit of an older plan is taken
        self.lapsed = {}  # a new plan is being installed: nothing to get back
        out: list[Effect] = []
        keep = set(msg.keep)
        for key in [k for k in self.holdings if k not in keep]:
            out += self._relinquish(key, "released_for_final_plan", now, tell=False)
        out.append(Send(sender, Released(plan_id=msg.plan_id)))
        return out

    def _on_commit(self, msg: Commit, sender: str, now: float) -> list[Effect]:
        if sender != self.manager:
            return []
        mine = {role_key(a.role, a.share, a.shares): a for a in msg.assignments if a.holder == self.address
                and role_key(a.role, a.share, a.shares) not in self._declined(now)}
        why = ""
        if msg.echo is None or msg.echo + msg.lease <= now:
            why = "its lease is already over"
        elif self._from_future(msg.echo, now):
            why = "it echoes a send time this node's clock has not reached (an earlier incarnation's)"
        elif self.isolated and not self._fresh(msg.echo):
            why = "isolated, and it answers no ack sent since"
        elif not self._newer_plan(msg.epoch, msg.plan_id):
            why = "a newer final plan was released or committed"
        if why:
            return [self._emit("edge.ignored", what="Commit", sender=sender, why=why, plan_id=msg.plan_id)]
        out: list[Effect] = []
        if self.isolated:
            out += self._end_isolation(set(mine), msg.echo, msg.lease, now)
        until = msg.echo + msg.lease
        for key in [k for k in self.holdings if k not in mine]:
            out += self._relinquish(key, "final_plan", now, tell=False)
        for key, a in sorted(mine.items()):
            h = self.holdings.get(key)
            if h is not None and h.plan_id == msg.plan_id:
                h.lease = max(h.lease, until)
                continue
            converted = h is not None
            self.holdings[key] = _Holding(a, msg.plan_id, False, 0, lease=until,
                                          ends=now + a.duration if a.duration > 0 else math.inf)
            out.append(self._emit("edge.role_assigned", role=a.role, share=a.share, shares=a.shares, key=key,
                                  plan_id=msg.plan_id, term=0, temporary=False, target=a.target,
                                  kind=a.kind, converted=converted, ratified=msg.ratified))
            out.append(self._start_role(key, self.holdings[key], converted))
        # the temporary plane ends here
        if self.role is PlaneRole.LEADER:
            out.append(self._emit("plane.stepdown", term=self.leader_term, plan_id=self.plan_id,
                                  reason="final plan committed"))
            self.lead = None
        if self.plan_id:
            out += [CancelTimer("leader"), CancelTimer("gather"), CancelTimer("election")]
        self.role = PlaneRole.NONE
        self.plan_id = ""
        self.plan = list(msg.assignments)
        self.plan_version = -1
        self.leader = ""
        self.leader_until = -math.inf
        self.commitments = {msg.plan_id: self.commitments.get(msg.plan_id, {})}
        self.lapsed = {}
        self.report_due.pop("plan", None)  # the manager has decided; the record still goes to the history
        out.append(Send(sender, Committed(plan_id=msg.plan_id)))
        return out + self._arm_lease(now)

    # -- holdings ----------------------------------------------------------------------------------

    def _holds(self, role: str) -> bool:
        return any(h.a.role == role for h in self.holdings.values())

    def _relinquish(self, key: str, reason: str, now: float, tell: bool) -> list[Effect]:
        h = self.holdings.pop(key, None)
        if h is None:
            return []
        out: list[Effect] = [self._emit("edge.role_relinquished", role=h.a.role, share=h.a.share, shares=h.a.shares,
                                        key=key, plan_id=h.plan_id, temporary=h.temporary, reason=reason),
                             StopRole(key=key, role=h.a.role, plan_id=h.plan_id, reason=reason, kind=h.a.kind)]
        if tell and self.leader and self.leader != self.address:
            out.append(Send(self.leader, Relinquish(plan_id=h.plan_id, role=h.a.role, share=h.a.share, reason=reason)))
        elif tell and self.lead is not None:
            out += self.lead.on_relinquish(Relinquish(plan_id=h.plan_id, role=h.a.role, share=h.a.share, reason=reason),
                                           self.address, now)
        return out

    @staticmethod
    def _start_role(key: str, h: _Holding, converted: bool) -> StartRole:
        return StartRole(key=key, role=h.a.role, share=h.a.share, shares=h.a.shares, plan_id=h.plan_id,
                         temporary=h.temporary, target=h.a.target, kind=h.a.kind, converted=converted,
                         usage=h.a.usage)

    # -- served roles: the workloads' host and the site's clients --------------------------------------

    def _check_roles(self, now: float) -> list[Effect]:
        """Every ``validate_every``: the host checks the workload of every service role held here."""
        if now < self.next_check or not self.holdings:
            return []
        self.next_check = now + self.validate_every
        return [CheckRole(key=k, role=h.a.role, plan_id=h.plan_id, why="periodic")
                for k, h in sorted(self.holdings.items()) if h.a.kind == "service"]

    def _on_role_health(self, msg: RoleHealth, sender: str, now: float) -> list[Effect]:
        """The host's word on a workload: one that is down (or answers for another plan's holding) is given up, and
        the plane (or the manager, from the next ack) re-assigns it."""
        if sender not in (self.address, "", None):  # the host speaks as the node itself
            return []
        h = self.holdings.get(msg.key)
        if h is None or h.plan_id != msg.plan_id:
            return []
        if not msg.ok:
            why = f"workload check failed: {msg.reason or 'down'}"
        elif h.a.usage > 0 and msg.usage > 1.1 * h.a.usage + 1e-9:  # the usage term: a tenth over is tolerated
            why = f"usage {msg.usage:.3f} over its term {h.a.usage:.3f}"
        else:
            return []
        # declined for a while: the manager must not give it back here (its acks say so) but plan it elsewhere
        self.declined[msg.key] = now + 4 * self.isolation_after
        return self._relinquish(msg.key, why, now, tell=True)

    def _declined(self, now: float) -> list[str]:
        for k in [k for k, t in self.declined.items() if t <= now]:
            del self.declined[k]
        return sorted(self.declined)

    def _on_client_request(self, msg: ClientRequest, sender: str, now: float) -> list[Effect]:
        """A client of the site asks for a role: each share held here goes to its workload (the host answers the
        client, served or refused); a node that holds none says nothing."""
        return [ServeRequest(client=sender, rid=msg.rid, role=msg.role, key=k, plan_id=h.plan_id)
                for k, h in sorted(self.holdings.items()) if h.a.role == msg.role]

    def _on_client_reply(self, msg: ClientReply, sender: str, now: float) -> list[Effect]:
        """The validator's client check answered: a holder whose workload refuses a client (for any reason but
        ``starting``) fails its validation, whatever it measures of itself - the leader revokes the share. A
        check that goes unanswered counts for nothing (loss is not a refusal; a silent member is the leader's)."""
        c = self.vchecks.pop(msg.rid, None)
        if c is None or sender != c[0] or msg.role != c[1] or c[3] != self.plan_id or msg.served \
                or msg.reason.startswith("starting"):
            return []
        holder, role, share, plan_id = c
        v = Validation(plan_id=plan_id, role=role, share=share, holder=holder, ratio=0.0, ok=False)
        out: list[Effect] = [self._emit("plane.validated", plan_id=plan_id, role=role, share=share, holder=holder,
                                        ratio=0.0, ok=False, why=f"a client was refused: {msg.reason or 'refused'}")]
        reporter = next((a.holder for a in self.plan if a.role == "reporter"), "")
        for to in sorted({self.leader, reporter} - {""}):
            if to == self.address:
                out += self._on_validation(v, self.address, now)
            else:
                out.append(Send(to, v))
        return out

    def _adopt_plan(self, msg: LeaderHeartbeat, now: float) -> list[Effect]:
        """Hold exactly this node's assignments in the leader's complete plan."""
        out: list[Effect] = []
        self.plan = list(msg.assignments)
        self.plan_version = msg.version
        mine = {role_key(a.role, a.share, a.shares): a for a in msg.assignments if a.holder == self.address}
        for key, h in list(self.holdings.items()):
            if key not in mine or h.plan_id != msg.plan_id:
                out += self._relinquish(key, "replanned" if h.plan_id == msg.plan_id else "new_plane", now, tell=False)
        for key, a in sorted(mine.items()):
            if key in self.holdings or not self.isolated:
                continue  # a connected node takes new roles only from the manager (under its lease)
            self.holdings[key] = _Holding(a, msg.plan_id, True, msg.term,
                                          ends=now + a.duration if a.duration > 0 else math.inf)
            out.append(self._emit("edge.role_assigned", role=a.role, share=a.share, shares=a.shares, key=key,
                                  plan_id=msg.plan_id, term=msg.term, temporary=True, target=a.target, kind=a.kind,
                                  converted=False, ratified=False))
            out.append(self._start_role(key, self.holdings[key], False))
        if self._holds("reporter"):
            self._note({"what": "plan", "plan_id": msg.plan_id, "version": msg.version, "time": now,
                        "assignments": [_adict(a) for a in msg.assignments]})
        return out

    # -- election ------------------------------------------------------------------------------------

    def _start_election(self, now: float) -> list[Effect]:
        recent = {a: (t, sc) for a, (t, sc, at) in self.early.items() if now - at <= self.gather_window + self.heartbeat_interval}
        self.early = {}
        self.term = max([self.term + 1] + [t for t, _ in recent.values()])
        self.role = PlaneRole.ELECTING
        self.heard = {self.address: self.leader_score()}
        self.heard.update({a: sc for a, (t, sc) in recent.items() if t == self.term})
        self.votes = set()
        self.view = []
        self.gathers = 0
        self.refused = set()
        jitter = self.rng.uniform(0, self.heartbeat_interval * 0.2)
        out: list[Effect] = [Send(p, Announce(term=self.term, score=self.heard[self.address])) for p in self._peers()]
        out.append(SetTimer("gather", now + self.gather_window + jitter))
        out.append(SetTimer("election", now + self.election_timeout + jitter))
        out.append(SetTimer("elect_retry", now + self.retry_every))
        out.append(self._emit("plane.announce", term=self.term, score=self.heard[self.address]))
        return out

    def _on_elect_retry(self, now: float) -> list[Effect]:
        """Lost election messages are sent again: while gathering, the announcement to every peer not heard from
        in this term; as a candidate, the vote request to every member of the view that has not answered."""
        if not self._cut_off() or self._live_leader(now):
            return []
        if self.role is PlaneRole.ELECTING:
            a = Announce(term=self.term, score=self.heard[self.address])
            out: list[Effect] = [Send(p, a) for p in self._peers() if p not in self.heard]
        elif self.role is PlaneRole.CANDIDATE:
            req = VoteRequest(term=self.term, score=self.heard[self.address], view=self.view)
            out = [Send(p, req) for p in self.view if p not in self.votes and p not in self.refused]
        else:
            return []
        return out + [SetTimer("elect_retry", now + self.retry_every)]

    def _live_leader(self, now: float) -> bool:
        return bool(self.leader) and now < self.leader_until

    def _on_announce(self, msg: Announce, sender: str, now: float) -> list[Effect]:
        if self.ir is None:
            return []
        if self.role is PlaneRole.LEADER and self.lead is not None:
            return self.lead.on_announce(sender, now)  # even once reconnected: the plane lasts until a Commit
        if not self._cut_off():
            # a neighbour lost the manager a moment before us: keep its announcement for our own election; a node
            # in no plane tells it whether it still hears the manager (if so, only the neighbour's uplink is lost)
            self.early[sender] = (msg.term, msg.score, now)
            return self._answer_cut_off(sender, now)
        if self._live_leader(now):
            return []  # it will hear our leader once the leader adds it
        if msg.term > self.term:
            # join the newer election
            self.term = msg.term - 1
            out = self._start_election(now)
            self.heard[sender] = msg.score
            return out
        if msg.term == self.term and self.role in (PlaneRole.ELECTING, PlaneRole.CANDIDATE):
            self.heard[sender] = msg.score
        return []

    def _best_heard(self) -> str:
        return max(self.heard.items(), key=lambda kv: (kv[1], kv[0]))[0]

    def _on_gather(self, now: float) -> list[Effect]:
        if self.role is not PlaneRole.ELECTING:
            return []
        best = self._best_heard()
        if best != self.address:
            return [self._emit("plane.gathered", term=self.term, view=len(self.heard), best=best)]
        if now < self.quiet_until:
            # restarted within a lease: members may still hold roles under leases this node granted as leader before
            # (it cannot remember): it leads nothing until they are over, and follows any leader meanwhile
            return [self._emit("plane.quiet", term=self.term, until=round(self.quiet_until, 6)),
                    SetTimer("gather", self.quiet_until), SetTimer("election", self.quiet_until + self.election_timeout)]
        if len(self.heard) == 1 and self._peers() and self.gathers < self.gather_retries:
            # heard nobody: silence may be loss, not absence - announce again before leading a plane of one
            self.gathers += 1
            a = Announce(term=self.term, score=self.heard[self.address])
            return [self._emit("plane.gather_retry", term=self.term, attempt=self.gathers),
                    SetTimer("gather", now + self.gather_window), SetTimer("elect_retry", now + self.retry_every)
                    ] + [Send(p, a) for p in self._peers()]
        self.role = PlaneRole.CANDIDATE
        self.view = sorted(self.heard)
        self.votes = {self.address}
        self.voted[self.term] = self.address
        out: list[Effect] = [self._emit("plane.candidate", term=self.term, view=self.view, score=self.heard[self.address])]
        if len(self.votes) * 2 > len(self.view):
            return out + self._become_leader(now)
        req = VoteRequest(term=self.term, score=self.heard[self.address], view=self.view)
        return out + [Send(p, req) for p in self.view if p != self.address]

    def _on_vote_request(self, msg: VoteRequest, sender: str, now: float) -> list[Effect]:
        if self.ir is None:
            return []
        granted, why = False, ""
        extra: list[Effect] = []
        if not self._cut_off():
            why = "connected"
            extra += self._answer_cut_off(sender, now, counts=False)  # its vote is refused: it cannot count
        elif self._live_leader(now):
            why = "following a live leader"
        elif msg.term < self.term:
            why = "stale term"
        elif self.address not in msg.view:
            why = "not in the candidate's view"
        else:
            if msg.term > self.term:
                self.term = msg.term
                self.heard = {self.address: self.leader_score()}
                self.role = PlaneRole.ELECTING
                extra.append(SetTimer("election", now + self.election_timeout))
            self.heard[sender] = msg.score
            prior = self.voted.get(msg.term)
            if prior not in (None, sender):
                why = f"already voted for {prior}"
            elif self._best_heard() != sender:
                why = f"{self._best_heard()} is better"
            else:
                granted = True
                self.voted[msg.term] = sender
        out: list[Effect] = [Send(sender, Vote(term=msg.term, granted=granted)),
                             self._emit("plane.vote", term=msg.term, candidate=sender, granted=granted, why=why)]
        return extra + out

    def _on_vote(self, msg: Vote, sender: str, now: float) -> list[Effect]:
        if self.role is not PlaneRole.CANDIDATE or msg.term != self.term or sender not in self.view:
            return []
        if not msg.granted:
            self.refused.add(sender)  # not asked again in this term
            return []
        self.votes.add(sender)
        if len(self.votes) * 2 > len(self.view):
            return self._become_leader(now)
        return []

    def _on_election_timeout(self, now: float) -> list[Effect]:
        if not self._cut_off() or self.role in (PlaneRole.LEADER, PlaneRole.FOLLOWER) or self._live_leader(now):
            return []
        return [self._emit("plane.election_failed", term=self.term, heard=len(self.heard))] + self._start_election(now)

    def _become_leader(self, now: float) -> list[Effect]:
        assert self.ir is not None
        self.role = PlaneRole.LEADER
        self.leader = self.address
        self.leader_term = self.term
        self.leader_until = math.inf
        out: list[Effect] = [CancelTimer("election"), CancelTimer("gather"), CancelTimer("leader"),
                             CancelTimer("elect_retry"),
                             self._emit("plane.leader", term=self.term, voters=sorted(self.votes), view=self.view,
                                        score=self.heard.get(self.address, 0.0),
                                        since_isolation=round(now - (self.isolated_at or now), 6))]
        # holdings of an older plane lapse: this node now answers to itself
        for key in [k for k, h in self.holdings.items() if h.temporary]:
            out += self._relinquish(key, "new_plane", now, tell=False)
        self.lead = _Lead(self, now)
        self.plan_id = self.lead.plan_id
        return out + self.lead.start(now)

    def _follows(self, sender: str, term: int) -> bool:
        return sender == self.leader and term == self.leader_term

    def _on_leader_heartbeat(self, msg: LeaderHeartbeat, sender: str, now: float) -> list[Effect]:
        if self.ir is None or sender == self.address:
            return []
        out: list[Effect] = []
        theirs = (msg.term, msg.score, sender)
        if sender != self.leader or msg.term != self.leader_term:
            if self.role is PlaneRole.NONE and not self.plan_id:
                return self._answer_cut_off(sender, now)  # connected and in no plane: not ours
            if self.role is PlaneRole.LEADER:
                assert self.lead is not None
                mine = (self.leader_term, self.leader_score(), self.address)
                answered = msg.answers == self.address and self._cut_off() and theirs > mine
                if not answered and not self._merge(theirs, mine, now):
                    # a losing rival leader is in reach: beat every peer at once (once per rival), so its plane's
                    # nodes get the second beat they follow this plane on without waiting for the next tick
                    if self._cut_off() and theirs < mine and self.lead.rivals.get(sender, -math.inf) < now - self.leader_lease:
                        self.lead.rivals[sender] = now
                        return self.lead._beat(now, answers=sender)
                    if self._cut_off() and theirs < mine:
                        self.lead.rivals[sender] = now
                    return []
                out.append(self._emit("plane.stepdown", term=self.leader_term, plan_id=self.plan_id,
                                      reason=f"merged into the plane of {sender} (term {msg.term}, "
                                             f"{msg.members} members)"))
                self.lead = None
            elif self._live_leader(now) and not self._merge(theirs, (self.leader_term, self.leader_fit, self.leader),
                                                            now):
                if not (msg.answers and msg.answers == self.leader and self._cut_off()
                        and theirs > (self.leader_term, self.leader_fit, self.leader)):
                    return []
            # break before make: what this node held under another plane ends before it takes a role in this one
            for key in [k for k, h in self.holdings.items() if h.temporary and h.plan_id != msg.plan_id]:
                out += self._relinquish(key, "new_plane", now, tell=False)
            self.leader = sender
            self.leader_term = msg.term
            self.term = max(self.term, msg.term)
            self.role = PlaneRole.FOLLOWER
            self.plan_id = msg.plan_id
            self.plan_version = -1
            out += [CancelTimer("gather"), CancelTimer("election"), CancelTimer("elect_retry"),
                    self._emit("plane.follow", term=msg.term, leader=sender, plan_id=msg.plan_id)]
        # the lease is a duration, timed on this node's clock from receipt (the leader took its margin off)
        self.leader_until = now + msg.lease
        self.leader_size = msg.members
        self.leader_fit = msg.score
        out.append(SetTimer("leader", self.leader_until))
        if msg.complete and msg.version != self.plan_version:
            out += self._adopt_plan(msg, now)
        out.append(Send(sender, LeaderAck(term=msg.term, version=msg.version)))
        return out

    def _merge(self, theirs: tuple[int, float, str], mine: tuple[int, float, str], now: float) -> bool:
        """Two planes in reach of each other while the manager is away merge: the leader of the higher term (then
        the better fit, then the higher address) stays. A node of the other plane follows it on its second beat
        (one stray beat is no plane; the leader beats once an interval, so a heal that brings the manager back
        as well mostly leaves the reconciliation to it). Counted, not timed: on a loaded host the two beats may
        be handled back to back, and a time between them (3/4 of an interval) then waited for a third - 0.508
        and 0.526 s from the merge to the step-down in real runs of edge.toml's [[chaos]] (settle 0.5 s)."""
        if not self._cut_off() or theirs <= mine:
            return False
        sender = theirs[2]
        seen = self.rival if self.rival is not None and self.rival[0] == sender else None
        if seen is None or now - seen[2] > self.leader_lease:
            self.rival = (sender, 1, now)
            return False
        self.rival = None
        return True

    def _on_leader_lost(self, now: float) -> list[Effect]:
        if self.role is not PlaneRole.FOLLOWER or now < self.leader_until:
            return []
        out: list[Effect] = [self._emit("plane.leader_lost", term=self.leader_term, leader=self.leader,
                                        plan_id=self.plan_id)]
        for key in [k for k, h in self.holdings.items() if h.temporary]:
            out += self._relinquish(key, "leader_lease_expired", now, tell=False)
        self.leader = ""
        self.role = PlaneRole.NONE
        self.plan_id = ""
        self.plan = []
        self.plan_version = -1
        if self._cut_off():
            out += self._start_election(now)
        return out

    # -- plane members' duties ------------------------------------------------------------------

    def _on_probe(self, msg: Probe, sender: str, now: float) -> list[Effect]:
        key = next((k for k, h in self.holdings.items()
                    if h.a.role == msg.role and h.a.share == msg.share and h.plan_id == msg.plan_id), None)
        if key is None:
            return []
        h = self.holdings[key]
        spec = RoleSpec(name=h.a.role, metric=self._metric(h.a.role), target=h.a.target)
        measured = self.fit_for(spec) or 0.0
        out: list[Effect] = [Send(sender, ProbeResult(plan_id=msg.plan_id, role=msg.role, share=msg.share,
                                                      measured=measured)),
                             CheckRole(key=key, role=h.a.role, plan_id=h.plan_id, why="probe")]
        if measured < h.a.min_ratio:
            out += self._relinquish(key, f"measured {measured:.2f} below {h.a.min_ratio}", now, tell=True)
        return out

    def _metric(self, role: str) -> str:
        assert self.ir is not None
        for r in list(self.ir.isolated_roles) + list(self.ir.roles):
            if r.name == role:
                return r.metric
        return ""

    def _on_probe_result(self, msg: ProbeResult, sender: str, now: float) -> list[Effect]:
        if msg.plan_id != self.plan_id or not self._holds("validator"):
            return []
        a = next((a for a in self.plan if a.role == msg.role and a.share == msg.share and a.holder == sender), None)
        if a is None:
            return []
        ok = msg.measured >= a.min_ratio
        v = Validation(plan_id=msg.plan_id, role=msg.role, share=msg.share, holder=sender, ratio=msg.measured, ok=ok)
        out: list[Effect] = [self._emit("plane.validated", plan_id=msg.plan_id, role=msg.role, share=msg.share,
                                        holder=sender, ratio=msg.measured, ok=ok)]
        reporter = next((a.holder for a in self.plan if a.role == "reporter"), "")
        for to in sorted({self.leader, reporter} - {""}):
            out.append(Send(to, v))
        return out

    def _on_validation(self, msg: Validation, sender: str, now: float) -> list[Effect]:
        out: list[Effect] = []
        if self._holds("reporter"):
            self._note({"what": "validation", "plan_id": msg.plan_id, "role": msg.role, "share": msg.share,
                        "holder": msg.holder, "ratio": msg.ratio, "ok": msg.ok, "time": now})
            out.append(self._emit("plane.recorded", what="validation", plan_id=msg.plan_id, role=msg.role,
                                  holder=msg.holder, ok=msg.ok, entries=len(self.record)))
        if self.lead is not None:
            out += self.lead.on_validation(msg, now)
        return out

    def _note(self, entry: dict[str, Any]) -> None:
        self.record.append(entry)
        if len(self.record) > 1000:
            del self.record[: len(self.record) - 1000]

    def _reporter_record(self, plan_id: str | None = None) -> Send:
        vals = [e for e in self.record if e["what"] == "validation"]
        metrics = {"validations": float(len(vals)), "failures": float(sum(1 for e in vals if not e["ok"])),
                   "mean_ratio": round(sum(e["ratio"] for e in vals) / len(vals), 4) if vals else 0.0,
                   "plan_versions": float(sum(1 for e in self.record if e["what"] == "plan"))}
        return Send(self.manager, ReporterRecord(plan_id=self.plan_id if plan_id is None else plan_id,
                                                 reporter=self.address, entries=self.record[-200:], metrics=metrics))

    def _on_relinquish(self, msg: Relinquish, sender: str, now: float) -> list[Effect]:
        if self.lead is None:
            return []
        return self.lead.on_relinquish(msg, sender, now)

    def _on_fit_report(self, msg: FitReport, sender: str, now: float) -> list[Effect]:
        if self.lead is None:
            return []
        return self.lead.on_fit_report(msg, sender, now)

    def _on_answer(self, msg: Answer, sender: str, now: float) -> list[Effect]:
        if self.lead is None:
            return []
        return self.lead.on_answer(msg, sender, now)

    def _on_leader_ack(self, msg: LeaderAck, sender: str, now: float) -> list[Effect]:
        if self.lead is None or msg.term != self.leader_term:
            return []
        return self.lead.on_ack(sender, now, msg.version)

    def _on_timer(self, msg: TimerFired, sender: str, now: float) -> list[Effect]:
        k = msg.key
        if k == "manager":
            return self._manager_lost(now)
        if k == "lease":
            return self._lease_over(now)
        if k == "term":
            return self._term_over(now)
        if k == "gather":
            return self._on_gather(now)
        if k == "election":
            return self._on_election_timeout(now)
        if k == "leader":
            return self._on_leader_lost(now)
        if k == "renew":
            return self._on_renew_timer(now)
        if k == "report":
            return self._resend_reports(now)
        if k == "elect_retry":
            return self._on_elect_retry(now)
        if k == "probe_retry":
            return self._on_probe_retry(now)
        if self.lead is not None:
            return self.lead.on_timer(k, now)
        return []


class _Lead:
    """The leader's side of an isolated plane (owned by an :class:`EdgeNode`).

    Loss tolerance (a lost message is not an answer): the :class:`FitRequest` goes out again every
    ``retry_every`` to the members that have not reported, until ``fit_timeout``; the plan is then negotiated
    among the reporters, but a silent member stays a member - it is beaten, and asked for its fit once a beat
    (at most ``resend_limit`` times) like a node that joins later. A member whose acks stop is beaten again
    every ``retry_every`` before it is counted lost. Roles left unfilled are negotiated again every
    ``refill_every`` and whenever a member reports its fit late, so the plane grows back as nodes return.
    """

    def __init__(self, node: EdgeNode, now: float) -> None:
        self.n = node
        self.term = node.term
        # T{term}@node; a later incarnation adds its number (a node back on an empty disk counts terms from 0 again)
        self.plan_id = f"T{node.term}@{node.node}" if node.incarnation == 1 else \
            f"T{node.term}.{node.incarnation}@{node.node}"
        self.started = now
        self.members: set[str] = set(node.view) | {node.address}
        self.last_ack: dict[str, float] = {m: now for m in self.members}
        self.lease_sent: dict[str, float] = {}
        self.rivals: dict[str, float] = {}  # losing rival leaders heard: when last (see EdgeNode._on_leader_heartbeat)
        self.lost: dict[str, float] = {}  # member dropped -> when its last lease ends
        self.fits: dict[str, FitReport] = {}
        self.fit_asks: dict[str, int] = {}  # member -> fit requests sent to it since it (re)joined
        self.fit_deadline = now + node.fit_timeout
        self.phase = "collect"
        self.neg: Negotiation | None = None
        self.rounds = 0
        self.assignments: list[Assignment] = [Assignment(role="leader", holder=node.address, target=0.0, kind="management")]
        self.version = 0
        self.complete = False
        self.pending: list[RoleSpec] = []  # roles to negotiate again
        self.lowered: dict[str, float] = {}
        self.splits: dict[str, int] = {}
        self.unfilled: list[str] = []
        self.refill_at = math.inf  # when unfilled roles are negotiated again
        self.msgs = 0
        self.failed_validations: dict[str, int] = {}
        # shares revoked after a failed validation: holder -> (the plan version without them, its lease's end);
        # their roles are negotiated again once it acked that version or the lease ran out (break before make)
        self.revoking: dict[str, tuple[int, float]] = {}

    def _roles(self) -> list[RoleSpec]:
        ir = self.n.ir
        assert ir is not None
        return [r for r in ir.management if r.name != "leader"] + list(ir.isolated_roles)

    def _fit_request(self) -> FitRequest:
        return FitRequest(plan_id=self.plan_id, term=self.term, roles=self._roles(), isolated=True)

    def start(self, now: float) -> list[Effect]:
        n = self.n
        req = self._fit_request()
        out: list[Effect] = self._beat(now)
        asked = sorted(m for m in self.members if m != n.address)
        out += [Send(m, req) for m in asked]
        self.fit_asks.update({m: 1 for m in asked})
        out.append(SetTimer("fits", min(self.fit_deadline, now + n.retry_every)))
        out.append(SetTimer("beat_retry", now + n.retry_every))
        self.msgs += len(asked)
        own = n._on_fit_request(req, n.address, now)
        for e in own:
            if isinstance(e, Send) and isinstance(e.msg, FitReport):
                self.fits[n.address] = e.msg
        return out + [e for e in own if isinstance(e, Emit)] + self._maybe_negotiate(now)

    def _answering(self, now: float) -> str:
        """The losing rival leader heard last, if within a leader lease (its nodes' leases from it run that long): the
        regular beats keep naming it, so a node of its plane that missed the answering beat (its link to this plane
        opened a little later than its leader's: fault plans reach processes at different instants) still follows on
        the next beat, not on the second. Naming it longer is harmless: only a node that still follows it, and
        hears this beat (so reaches this plane), follows this plane at once."""
        n = self.n
        if not self.rivals or not n._cut_off():
            return ""
        rival, heard = max(self.rivals.items(), key=lambda kv: (kv[1], kv[0]))
        return rival if now - heard <= n.leader_lease else ""

    def _beat(self, now: float, only: list[str] | None = None, answers: str = "") -> list[Effect]:
        """Beat the plane's members and, while the manager is away, every other peer of the deployment (``only``:
        just these): a node in reach that follows a smaller plane, or none, joins this one (see
        ``EdgeNode._on_leader_heartbeat``)."""
        n = self.n
        until = now + n.leader_lease  # accounted here; the member holds lease - margin from receipt (its clock)
        hb = LeaderHeartbeat(term=self.term, plan_id=self.plan_id, version=self.version,
                             lease=n.leader_lease - n.lease_margin, assignments=list(self.assignments),
                             complete=self.complete, members=len(self.members), score=n.leader_score(),
                             answers=answers)
        out: list[Effect] = []
        everyone = set(n._peers()) if n._cut_off() else set()
        for m in sorted(everyone | self.members) if only is None else only:
            if m == n.address or m in self.lost:
                continue
            heard = self.last_ack.get(m)
            if m in self.members and heard is not None and heard + n.member_timeout < until:
                # silent for more than a beat interval: the lease ends no later than the member would be dropped
                # (member_timeout after its last ack), so a member gone with a partition is replaced as soon as it
                # is dropped rather than leader_lease later (a member that acks again gets full leases again)
                cap = max(heard + n.member_timeout, self.lease_sent.get(m, -math.inf))
                self.lease_sent[m] = cap
                out.append(Send(m, attrs.evolve(hb, lease=max(0.0, cap - now - n.lease_margin))))
                continue
            self.lease_sent[m] = until
            out.append(Send(m, hb))
        return out

    def tick(self, now: float) -> list[Effect]:
        n = self.n
        out: list[Effect] = []
        for m in sorted(self.members - {n.address}):
            if now - self.last_ack.get(m, now) > n.member_timeout:
                self.members.discard(m)
                self.lost[m] = self.lease_sent.get(m, now)
                out.append(n._emit("plane.member_lost", term=self.term, plan_id=self.plan_id, member=m,
                                   lease_ends=self.lost[m]))
                if self.neg is not None:
                    out += self.neg.member_down(m, now)
        if self.neg is not None:
            out += self._check_done(now)
        for m, until in sorted(self.lost.items()):
            if now >= until:
                del self.lost[m]
                out += self._reassign(m, now, "holder_lost")
        for m, (_, until) in sorted(self.revoking.items()):
            if now >= until:
                del self.revoking[m]
                if not self.revoking and self.phase == "done":
                    out += self._renegotiate(now)
        out += self._beat(now, answers=self._answering(now))
        out += self._ask_fits(now)
        if self.phase == "done" and self.unfilled and now >= self.refill_at:
            out += self._refill(now, "periodic")
        return out

    def on_beat_retry(self, now: float) -> list[Effect]:
        """Members whose acks stopped are beaten again (a lost beat or a lost ack is not a lost member)."""
        n = self.n
        silent = [m for m in sorted(self.members - {n.address})
                  if now - self.last_ack.get(m, now) > 1.5 * n.heartbeat_interval]
        return (self._beat(now, only=silent) if silent else []) + [SetTimer("beat_retry", now + n.retry_every)]

    def _ask_fits(self, now: float) -> list[Effect]:
        """Once a beat after the collection: members without a fit report (silent, or joined later) are asked."""
        n = self.n
        if self.phase == "collect":
            return []
        ask = [m for m in sorted(self.members - set(self.fits) - {n.address})
               if self.fit_asks.get(m, 0) <= n.resend_limit]
        if not ask:
            return []
        new = [m for m in ask if not self.fit_asks.get(m)]
        req = self._fit_request()
        for m in ask:
            self.fit_asks[m] = self.fit_asks.get(m, 0) + 1
        self.msgs += len(ask)
        out: list[Effect] = [Send(m, req) for m in ask]
        if new:
            out.append(n._emit("plane.fit_requested", term=self.term, plan_id=self.plan_id, members=new, late=True))
        return out

    def _refill(self, now: float, why: str) -> list[Effect]:
        """Negotiate the unfilled roles again (with the members whose fit is known now)."""
        n = self.n
        if self.phase != "done":
            return []
        specs = [r for r in self._roles() if r.name in self.unfilled and all(p.name != r.name for p in self.pending)]
        if not specs:
            return []
        self.pending += specs
        self.refill_at = math.inf
        out: list[Effect] = [n._emit("plane.unfilled_retry", term=self.term, plan_id=self.plan_id,
                                     roles=[r.name for r in specs], why=why,
                                     electorate=len([m for m in self.fits if m in self.members]))]
        return out + self._renegotiate(now)

    def _reassign(self, holder: str, now: float, why: str, role: str | None = None, share: int | None = None) -> list[Effect]:
        n = self.n
        out: list[Effect] = []
        keep = []
        for a in self.assignments:
            if a.holder == holder and (role is None or (a.role == role and a.share == share)) and a.role != "leader":
                out.append(n._emit("plane.holder_lost", term=self.term, plan_id=self.plan_id, role=a.role,
                                   share=a.share, holder=holder, why=why))
                if not any(p.name == a.role for p in self.pending):
                    spec = next((r for r in self._roles() if r.name == a.role), None)
                    if spec is not None:
                        self.pending.append(spec)
            else:
                keep.append(a)
        if len(keep) == len(self.assignments):
            return out
        # a split role is negotiated again as a whole: drop its other shares too
        again = {p.name for p in self.pending}
        self.assignments = [a for a in keep if a.role not in again]
        rep = self.fits.get(holder)
        if why == "holder_lost":
            self.fits.pop(holder, None)
        elif rep is not None and role is not None:  # do not offer it the role it gave up again
            self.fits[holder] = attrs.evolve(rep, fits={k: v for k, v in rep.fits.items() if k != role})
        self.version += 1
        out += self._beat(now)  # the remaining holders of re-negotiated roles give them up now
        if self.phase == "done":
            out += self._renegotiate(now)
        return out

    def _renegotiate(self, now: float) -> list[Effect]:
        n = self.n
        assert n.ir is not None
        if not self.pending or self.revoking:
            return []  # a revoked share is negotiated again only once its holder gave it up (or its lease ended)
        fits = {m: r for m, r in self.fits.items() if m in self.members}
        if not fits:
            return []
        roles, self.pending = self.pending, []
        self.phase = "negotiate"
        # holders give the previous share of these roles up with the version bump (break before make)
        self.neg = Negotiation(plan_id=self.plan_id, owner=n.address, roles=roles, fits=fits, gov=n.ir.governance,
                               isolated=True, timeout=n.proposal_timeout, prefix="plane", leader=n.address,
                               first_round=self.rounds, retry_every=n.retry_every, held=self.assignments)
        return self.neg.start(now) + self._check_done(now)

    def on_announce(self, sender: str, now: float) -> list[Effect]:
        """A node of this island lost its leader (or came back): take it in."""
        n = self.n
        out: list[Effect] = []
        if sender not in self.members:
            out += self._join(sender, now)
            self.lost.pop(sender, None)
        self.last_ack[sender] = now
        return out + self._beat(now, only=[sender])

    def _join(self, member: str, now: float) -> list[Effect]:
        self.members.add(member)
        if member not in self.fits:
            self.fit_asks[member] = 0  # asked for its fit at the next beat
        return [self.n._emit("plane.member_joined", term=self.term, plan_id=self.plan_id, member=member)]

    def on_ack(self, sender: str, now: float, version: int = -1) -> list[Effect]:
        self.last_ack[sender] = now
        out: list[Effect] = []
        rv = self.revoking.get(sender)
        if rv is not None and version >= rv[0]:  # it adopted a plan without the revoked share: it gave it up
            del self.revoking[sender]
            if not self.revoking and self.phase == "done":
                out += self._renegotiate(now)
        if sender not in self.members and sender not in self.lost:
            return out + self._join(sender, now)
        return out

    def on_fit_report(self, msg: FitReport, sender: str, now: float) -> list[Effect]:
        if msg.plan_id != self.plan_id or sender not in self.members:
            return []
        late = sender in self.fits
        self.msgs += 1
        self.fits[sender] = msg
        self.last_ack[sender] = now
        if self.phase == "collect":
            return self._maybe_negotiate(now)
        if self.phase == "done" and self.unfilled and not late:
            return self._refill(now, f"{sender} reported its fit")
        return []

    def _maybe_negotiate(self, now: float, force: bool = False) -> list[Effect]:
        if self.phase != "collect":
            return []
        if not force and not self.members <= set(self.fits):
            return []
        n = self.n
        assert n.ir is not None
        self.phase = "negotiate"
        silent = sorted(self.members - set(self.fits))
        out: list[Effect] = [CancelTimer("fits"), n._emit("plane.fits_collected", term=self.term, plan_id=self.plan_id,
                                                          members=sorted(self.fits), view=len(self.members),
                                                          silent=silent)]
        # a silent member stays a member: it is beaten and asked for its fit again (see _ask_fits)
        self.neg = Negotiation(plan_id=self.plan_id, owner=n.address, roles=self._roles(), fits=dict(self.fits),
                               gov=n.ir.governance, isolated=True, timeout=n.proposal_timeout, prefix="plane",
                               leader=n.address, retry_every=n.retry_every)
        return out + self.neg.start(now) + self._check_done(now)

    def on_timer(self, key: str, now: float) -> list[Effect]:
        if key == "fits":
            return self._on_fits_timer(now)
        if key == "beat_retry":
            return self.on_beat_retry(now)
        if self.neg is not None and key == self.neg.timer_key:
            return self.neg.on_timeout(now) + self._check_done(now)
        return []

    def _on_fits_timer(self, now: float) -> list[Effect]:
        """Ask the members that have not reported again; at ``fit_timeout`` negotiate with the reporters."""
        n = self.n
        if self.phase != "collect":
            return []
        missing = sorted(self.members - set(self.fits) - {n.address})
        if not missing or now + 1e-9 >= self.fit_deadline:
            return self._maybe_negotiate(now, force=True)
        req = self._fit_request()
        for m in missing:
            self.fit_asks[m] = self.fit_asks.get(m, 0) + 1
        self.msgs += len(missing)
        return [Send(m, req) for m in missing] + [
            SetTimer("fits", min(self.fit_deadline, now + n.retry_every)),
            n._emit("plane.fit_retry", term=self.term, plan_id=self.plan_id, members=missing)]

    def on_answer(self, msg: Answer, sender: str, now: float) -> list[Effect]:
        if self.neg is None:
            return []
        return self.neg.on_answer(msg, sender, now) + self._check_done(now)

    def _check_done(self, now: float) -> list[Effect]:
        neg = self.neg
        if neg is None or not neg.done or self.phase != "negotiate":
            return []
        n = self.n
        self.rounds = neg.round
        self.msgs += neg.messages
        self.assignments = [a for a in self.assignments if a.role not in {x.role for x in neg.assignments}]
        self.assignments += neg.assignments
        for r in {a.role for a in neg.assignments} | set(neg.unfilled):
            self.lowered.pop(r, None)
            self.splits.pop(r, None)
            if r in self.unfilled:
                self.unfilled.remove(r)
        self.lowered.update(neg.lowered)
        self.splits.update(neg.splits)
        self.unfilled += neg.unfilled
        self.refill_at = now + n.refill_every if self.unfilled else math.inf
        self.neg = None
        self.phase = "done"
        self.complete = True
        self.version += 1
        roles = sum(1 for a in self.assignments if a.role != "leader")
        out: list[Effect] = [CancelTimer(neg.timer_key), n._emit(
            "plane.plan_complete", term=self.term, plan_id=self.plan_id, version=self.version,
            members=sorted(self.members), electorate=len(neg.electorate), rule=neg.rule,
            assignments=[_adict(a) for a in self.assignments], lowered=dict(self.lowered), splits=dict(self.splits),
            unfilled=list(self.unfilled), negotiation_msgs=neg.messages, roles=roles,
            since_isolation=round(now - (n.isolated_at or now), 6), since_leader=round(now - self.started, 6))]
        out += self._beat(now)
        # the leader holds its own assignments (leader, and any role it took)
        hb = LeaderHeartbeat(term=self.term, plan_id=self.plan_id, version=self.version, lease=math.inf,
                             assignments=list(self.assignments), complete=True)
        out += n._adopt_plan(hb, now)
        if self.pending:
            out += self._renegotiate(now)
        return out

    def on_relinquish(self, msg: Relinquish, sender: str, now: float) -> list[Effect]:
        if msg.plan_id != self.plan_id:
            return []
        return self._reassign(sender, now, f"relinquished: {msg.reason}", role=msg.role, share=msg.share)

    def on_validation(self, msg: Validation, now: float) -> list[Effect]:
        """A failed validation revokes the holder's share: the plan drops it (a new version, beaten at once), the
        holder is not offered that role again, and the role is negotiated again once the holder acked the new
        version or the lease last sent to it ran out - never two holders of one share in one plan."""
        n = self.n
        if msg.ok or msg.plan_id != self.plan_id or msg.holder == n.address:
            return []
        a = next((a for a in self.assignments if a.holder == msg.holder and a.role == msg.role
                  and a.share == msg.share), None)
        if a is None:
            return []
        self.failed_validations[msg.holder] = self.failed_validations.get(msg.holder, 0) + 1
        out: list[Effect] = [n._emit("plane.revoked", term=self.term, plan_id=self.plan_id, role=a.role,
                                     share=a.share, holder=msg.holder, ratio=msg.ratio)]
        until = max(self.lease_sent.get(msg.holder, now), self.revoking.get(msg.holder, (0, -math.inf))[1])
        self.revoking[msg.holder] = (self.version + 1, until)  # set first: _reassign must not negotiate it yet
        return out + self._reassign(msg.holder, now, "validation failed", role=a.role, share=a.share)

    def report_msg(self) -> PlanReport:
        return PlanReport(plan_id=self.plan_id, term=self.term, leader=self.n.address, members=sorted(self.members),
                          assignments=list(self.assignments) if self.complete else [], lowered=dict(self.lowered),
                          splits=dict(self.splits), unfilled=list(self.unfilled),
                          fits={m: dict(r.fits) for m, r in sorted(self.fits.items())})

    def report(self, now: float) -> list[Effect]:
        n = self.n
        rep = self.report_msg()
        return [Send(n.manager, rep), n._emit("plane.report_sent", term=self.term, plan_id=self.plan_id,
                                              complete=self.complete, assignments=len(rep.assignments))]


_HANDLERS: dict[type, Callable[[EdgeNode, Any, str, float], list[Effect]]] = {
    Deploy: EdgeNode._on_deploy,
    Heartbeat: EdgeNode._on_heartbeat,
    FitRequest: EdgeNode._on_fit_request,
    FitReport: EdgeNode._on_fit_report,
    Propose: EdgeNode._on_propose,
    Answer: EdgeNode._on_answer,
    Withdraw: EdgeNode._on_withdraw,
    Release: EdgeNode._on_release,
    Commit: EdgeNode._on_commit,
    Announce: EdgeNode._on_announce,
    VoteRequest: EdgeNode._on_vote_request,
    Vote: EdgeNode._on_vote,
    LeaderHeartbeat: EdgeNode._on_leader_heartbeat,
    LeaderAck: EdgeNode._on_leader_ack,
    Relinquish: EdgeNode._on_relinquish,
    Probe: EdgeNode._on_probe,
    ProbeResult: EdgeNode._on_probe_result,
    Validation: EdgeNode._on_validation,
    ReportReceived: EdgeNode._on_report_received,
    SiteQuery: EdgeNode._on_site_query,
    SiteStatus: EdgeNode._on_site_status,
    ClientRequest: EdgeNode._on_client_request,
    ClientReply: EdgeNode._on_client_reply,
    RoleHealth: EdgeNode._on_role_health,
    TimerFired: EdgeNode._on_timer,
}
