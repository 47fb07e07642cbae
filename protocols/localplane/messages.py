"""Messages of the partition-triggered local control plane (tags ``localplane.X``).

How this works
--------------
Source: ``shared/seeds/004_726d366e1cefdd53.txt`` (FIGS. 2A-2F, 3A-3B). Three
conversations share these messages:

* manager <-> edge node (connected operation): :class:`Deploy` hands every
  edge node the intermediate representation and the deployment's membership;
  :class:`Heartbeat` proves the manager is reachable, renews the lease of
  the roles it grants the node (relative to the echoed send time of the
  node's own newest ack that reached the manager) and is answered by
  :class:`HeartbeatAck` (which plan the node follows, what it holds, when it
  sent the ack). Roles are negotiated with :class:`FitRequest` / :class:`FitReport`
  and :class:`Propose` / :class:`Answer`; a final plan is installed by
  :class:`Release` / :class:`Released` (break) then :class:`Commit` /
  :class:`Committed` (make).
* edge node <-> edge node (isolated operation): the election
  (:class:`Announce`, :class:`VoteRequest`, :class:`Vote`); the leader's
  :class:`LeaderHeartbeat` carries the plan's assignments (the temporary
  subscriptions) and a lease, answered by :class:`LeaderAck`; negotiation
  reuses :class:`FitRequest` / :class:`FitReport` / :class:`Propose` /
  :class:`Answer` / :class:`Withdraw`; the validator sends :class:`Probe`
  and gets :class:`ProbeResult`, and reports :class:`Validation`; a holder
  that gives a role up says :class:`Relinquish`. A node that stops hearing
  the manager asks its peers first (:class:`SiteQuery` -> :class:`SiteStatus`:
  whether and how long ago each last heard it), so only a whole island
  declares isolation, never a node that lost only its own uplink.
* served roles: a client of the site asks every edge node for a role
  (:class:`ClientRequest`, numbered by the client); a node that holds a share
  of it hands the request to its workload (the host), which answers
  :class:`ClientReply` (served, or refused when the workload is not running
  for that holding); a node that holds nothing says nothing. A host's check
  of a workload comes back to its node as :class:`RoleHealth`.
* reconnect: the island's leader sends :class:`PlanReport` and its reporter
  sends :class:`ReporterRecord` (the record and the metric bundle) to the
  manager, which confirms each (:class:`ReportReceived`) and ratifies or
  replaces the plan.

Loss: every request is sent again until answered or its target is known down
(``HeartbeatAck.renew`` asks the manager for a beat); receivers answer a copy
the same way and match answers by plan id and round, so duplicates and late
answers are harmless.

Staleness: election and plane messages carry the ``term``; plan messages carry
the ``plan_id`` (``"T{term}@{leader node}"`` for a temporary plan,
``"F{n}@{manager node}"`` for a final one) and negotiation answers the
``round`` they answer. Anything for another term, plan or round is ignored.
"""

from __future__ import annotations

from typing import Any

import attrs

from transport.codec import message

__all__ = [
    "Announce",
    "Answer",
    "Assignment",
    "ClientReply",
    "ClientRequest",
    "Commit",
    "Committed",
    "Deploy",
    "FitReport",
    "FitRequest",
    "Governance",
    "Heartbeat",
    "HeartbeatAck",
    "IntermediateRepresentation",
    "LeaderAck",
    "LeaderHeartbeat",
    "PlanReport",
    "Probe",
    "ProbeResult",
    "Propose",
    "Release",
    "Released",
    "Relinquish",
    "ReportReceived",
    "ReporterRecord",
    "RoleHealth",
    "RoleSpec",
    "SiteQuery",
    "SiteStatus",
    "Validation",
    "Vote",
    "VoteRequest",
    "Withdraw",
]


# -- the intermediate representation ---------------------------------------------


@message("localplane.RoleSpec")
class RoleSpec:
    """One role of the intermediate representation.

    ``kind`` is ``"service"`` (provides a functionality; ``metric``/``target``
    such as ``tx_per_s`` >= 100) or ``"management"`` (leader, validator,
    reporter: ``target`` is the share of a node's resources it takes, and
    ``weights``/``criteria`` are the objective function and the minimums it is
    selected by). ``min_ratio``: the lowest fraction of ``target`` the role may
    be lowered to when nobody accepts it; ``max_split``: how many nodes it may
    be split across (1: never split).
    """

    name: str
    kind: str = "service"
    metric: str = ""
    target: float = 1.0
    min_ratio: float = 1.0
    max_split: int = 1
    weights: dict[str, float] = attrs.field(factory=dict)
    criteria: dict[str, float] = attrs.field(factory=dict)


@message("localplane.Governance")
class Governance:
    """How much assent a role assignment needs (rules: ``assignee``, ``unanimous``, ``majority``, ``ratio:R``).

    Connected operation uses ``connected_rule``; an isolated plane of ``n``
    members uses ``isolated_below`` when ``n < size_threshold`` else
    ``isolated_above``.
    """

    size_threshold: int = 8
    connected_rule: str = "assignee"
    isolated_below: str = "unanimous"
    isolated_above: str = "ratio:0.67"


@message("localplane.IntermediateRepresentation")
class IntermediateRepresentation:
    """What the deployment manager distributes (FIG. 2A): roles for connected and isolated operation."""

    intent: str
    version: int
    roles: list[RoleSpec]
    isolated_roles: list[RoleSpec]
    management: list[RoleSpec]
    governance: Governance
    limits: dict[str, Any] = attrs.field(factory=dict)


@message("localplane.Assignment")
class Assignment:
    """One role share and its holder: the subscription (``target`` to meet, relinquish below ``min_ratio`` of it).

    Terms, enforced by the holder: ``usage`` - the load it agreed to carry (a fraction of its resources, the
    negotiated ``Propose.load``; 0: unmetered): a workload its host measures above ``usage`` (by more than a
    tenth) is given up; ``duration`` - how long the subscription runs from when the holder takes it (seconds;
    0: until a plan replaces it): at its end the holding is given up unless a newer plan renewed it first."""

    role: str
    holder: str
    target: float
    share: int = 0
    shares: int = 1
    kind: str = "service"
    min_ratio: float = 0.9
    usage: float = 0.0
    duration: float = 0.0


# -- manager <-> edge ------------------------------------------------------------------


@message("localplane.Deploy")
class Deploy:
    ir: IntermediateRepresentation
    members: list[str]
    epoch: int


@message("localplane.Heartbeat")
class Heartbeat:
    """The manager's beat to one edge node, and the renewal of that node's lease.

    ``grant``: the role keys the manager still lets this node hold; ``echo``:
    the ``sent`` time of the newest :class:`HeartbeatAck` of this node the
    manager has received (the node's own clock; ``None``: none yet). A holding
    whose key is granted is extended to ``echo + lease`` - never created, and
    never renewed from a grant that does not name it (see ``manager``'s
    module docstring for why this bounds every holding).
    """

    epoch: int
    seq: int
    plan_id: str = ""
    grant: list[str] = attrs.field(factory=list)
    echo: float | None = None
    lease: float = 0.0


@message("localplane.HeartbeatAck")
class HeartbeatAck:
    """The answer to a :class:`Heartbeat`; with ``renew`` a request of the node's own (its lease runs low, a
    lease lapsed, or it hears the manager again while isolated), which the manager answers at once with a
    :class:`Heartbeat` (and a regrant :class:`Commit` when a share lapsed); sent again until answered."""

    epoch: int
    seq: int
    plan_id: str = ""
    temporary: bool = False
    term: int = 0
    leader: str = ""
    holding: list[str] = attrs.field(factory=list)
    sent: float | None = None  # the node's clock when it sent this ack (echoed back by the manager)
    renew: bool = False
    declined: list[str] = attrs.field(factory=list)  # keys it gave up on its own lately (a usage term, a failed check)


@message("localplane.Release")
class Release:
    """Break: give up every role except ``keep`` (role keys ``role#share``) before ``plan_id`` is committed."""

    plan_id: str
    keep: list[str]
    epoch: int = 0


@message("localplane.Released")
class Released:
    plan_id: str


@message("localplane.Commit")
class Commit:
    """Make: the final plan; every node holds exactly its own assignments in it."""

    plan_id: str
    assignments: list[Assignment]
    echo: float | None = None  # as in Heartbeat: the roles are held until echo + lease, then renewed by grants
    lease: float = 0.0
    source: str = ""
    ratified: bool = False
    epoch: int = 0


@message("localplane.Committed")
class Committed:
    plan_id: str


@message("localplane.PlanReport")
class PlanReport:
    """The leader's temporary plan, sent to the manager on reconnect (FIG. 2E)."""

    plan_id: str
    term: int
    leader: str
    members: list[str]
    assignments: list[Assignment]
    lowered: dict[str, float] = attrs.field(factory=dict)
    splits: dict[str, int] = attrs.field(factory=dict)
    unfilled: list[str] = attrs.field(factory=list)
    fits: dict[str, dict[str, float]] = attrs.field(factory=dict)


@message("localplane.ReporterRecord")
class ReporterRecord:
    """The reporter's record of the isolated period and its metric bundle (FIG. 2F)."""

    plan_id: str
    reporter: str
    entries: list[dict[str, Any]]
    metrics: dict[str, float] = attrs.field(factory=dict)


@message("localplane.ReportReceived")
class ReportReceived:
    """The manager's answer to a :class:`PlanReport` (``what="plan"``) or :class:`ReporterRecord`
    (``what="record"``) of ``plan_id``: the sender stops sending it again. Duplicates are answered again."""

    plan_id: str
    what: str


# -- negotiation (leader or manager <-> edge) ---------------------------------------------


@message("localplane.FitRequest")
class FitRequest:
    plan_id: str
    term: int
    roles: list[RoleSpec]
    isolated: bool


@message("localplane.FitReport")
class FitReport:
    """Role fit data (FIG. 2B): capability per role as a ratio of its metric (management: objective score)."""

    plan_id: str
    fits: dict[str, float]
    criteria: dict[str, float]
    free: float
    holding: list[str] = attrs.field(factory=list)


@message("localplane.Propose")
class Propose:
    """A provisional proposal: ``candidate`` to hold ``role`` share ``share`` of ``shares`` at ``target``.

    Sent to the candidate (it accepts or rejects) and, when governance asks for
    more than the assignee's assent, to every member of the electorate (they vote);
    sent again to whoever has not answered (the answer is matched by plan id and
    round, so a duplicate is answered the same and changes nothing). ``agreed``:
    the roles of this plan the candidate holds agreed (``None``: not said); the
    candidate forgets any other commitment it made in the plan (a lost
    :class:`Withdraw`).
    """

    plan_id: str
    round: int
    role: str
    candidate: str
    target: float
    load: float
    share: int = 0
    shares: int = 1
    kind: str = "service"
    agreed: list[str] | None = None


@message("localplane.Answer")
class Answer:
    plan_id: str
    round: int
    yes: bool
    reason: str = ""


@message("localplane.Withdraw")
class Withdraw:
    """A proposal the candidate accepted did not get enough assent: forget the commitment."""

    plan_id: str
    role: str


# -- election and the plane --------------------------------------------------------------


@message("localplane.Announce")
class Announce:
    """I am isolated and start (or join) the election of ``term`` with this leadership score."""

    term: int
    score: float


@message("localplane.VoteRequest")
class VoteRequest:
    term: int
    score: float
    view: list[str]


@message("localplane.Vote")
class Vote:
    term: int
    granted: bool


@message("localplane.LeaderHeartbeat")
class LeaderHeartbeat:
    """The leader's beat: the plan's current assignments (the temporary subscriptions) and a lease.

    ``lease``: a *duration*, timed on the receiver's clock from receipt (never an instant of the leader's
    clock: clocks of different hosts share no origin); the leader already took its safety margin off it (message
    delay, clock drift), and accounts the lease as running ``lease + margin`` from the send on its own clock.
    ``members``: how many members the leader's plane has; ``score``: the leader's fit (its leadership
    score). A leader that hears another plane's leader beat yields to the higher term, then the better fit
    (then the higher address), so the planes of one island merge into one. ``answers``: set on the beat a leader
    sends every peer at once when it hears a losing rival leader - proof that the two planes reach each other
    now; that leader's plane follows this one on it without waiting for a second beat.
    """

    term: int
    plan_id: str
    version: int
    lease: float
    assignments: list[Assignment] = attrs.field(factory=list)
    complete: bool = False
    members: int = 0
    score: float = 0.0
    answers: str = ""  # the losing rival leader this beat answers (it was just heard): its plane follows at once


@message("localplane.SiteQuery")
class SiteQuery:
    """Asked by a node that stopped hearing the manager, before it declares isolation: do you still hear it?"""

    term: int = 0


@message("localplane.SiteStatus")
class SiteStatus:
    """Whether and when this node last heard the manager, as a duration: ``heard_ago`` seconds before it sent
    this (None: never), and whether it is ``isolated`` (declared, and hears no beat) or in a temporary
    ``plan`` (its id, "" if none). The answer to :class:`SiteQuery`, and what a connected node in no plane
    answers to an election or plane message of a node that believes itself isolated."""

    heard_ago: float | None
    isolated: bool
    plan: str = ""


@message("localplane.LeaderAck")
class LeaderAck:
    term: int
    version: int


@message("localplane.Relinquish")
class Relinquish:
    plan_id: str
    role: str
    share: int
    reason: str


@message("localplane.Probe")
class Probe:
    plan_id: str
    role: str
    share: int


@message("localplane.ProbeResult")
class ProbeResult:
    plan_id: str
    role: str
    share: int
    measured: float


@message("localplane.Validation")
class Validation:
    """The validator's verdict on one holder (sent to the leader and the reporter)."""

    plan_id: str
    role: str
    share: int
    holder: str
    ratio: float
    ok: bool


# -- served roles: clients of the site and the workloads' host ----------------------------------------


@message("localplane.ClientRequest")
class ClientRequest:
    """A client's request for ``role`` (``rid``: its number at that client), sent to every edge node of the site."""

    rid: int
    role: str


@message("localplane.ClientReply")
class ClientReply:
    """The answer of a holder's workload: ``served`` (by the share ``key`` of plan ``plan_id``) or refused (``reason``)."""

    rid: int
    role: str
    key: str
    plan_id: str
    served: bool
    reason: str = ""


@message("localplane.RoleHealth")
class RoleHealth:
    """A host's answer to ``CheckRole``: is the workload of holding ``key`` (of ``plan_id``) up, how well it does
    (``measured``: a fraction of its target; 1.0 when the host does not measure) and what it uses (``usage``)."""

    key: str
    plan_id: str
    ok: bool
    measured: float = 1.0
    reason: str = ""
    usage: float = -1.0  # the share of the node's resources the workload uses (-1: not measured)
