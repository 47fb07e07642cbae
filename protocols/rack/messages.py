"""Messages of the rack-monitor protocol (tags ``rack.*``).

How this works
--------------
Rack-local channel (rack control <-> its own monitor): ``Status`` every
``report_every`` seconds; ``Reboot`` from the rack's own monitor carrying out a
control decision, with its fencing token (group, term, decision), answered by
``RebootAck`` (obeyed, or refused as a duplicate or stale token). Harness/operator
input: ``SetMetrics`` (to a rack control: the values its next reports carry).

Monitor channel (monitor <-> monitor): the Paxos messages of
``protocols.consensus`` (instances named ``<group>|<kind>|<id>``), plus
``Heartbeat``/``HeartbeatAck`` (an authority renewing its lease with a quorum
of its group; a heartbeat also tells which data centers the sender cannot reach),
``Seat`` (an authority announcing itself to the group above), ``SeatView`` (an
acceptor's view of the seats, sent to a candidate whose view differs),
``Fact``/``FactAck`` (a condition agreed fleet-wide, pushed down the tree) and
``SyncRequest``/``SyncReply`` (a monitor that regained its quorum catching up),
``Execute``/``ExecuteAck`` (the sector's acting authority handing a chosen
decision to the target rack's own monitor, retried until acknowledged),
``Rejoin``/``RejoinReply`` (a monitor that started on an empty disk learning,
from enough other members of its sector to meet every quorum, what it may have voted for
and which condition seqs are used), ``Retired`` (an acceptor's answer to a Paxos message of an
instance it retired behind a newer decided one), ``Reconfigure`` (an operator asking the fleet to
agree on a layout with one more sector per data center).

Queries (anyone -> any monitor): ``ViewRequest``, answered by ``View``: what that monitor knows of every
rack, sector and data center, with the level of agreement and the age of each (durations on the
answering monitor's clock, never a timestamp), and its own quorum and policy state
(``fleetplane racks status``).
"""

from __future__ import annotations

from typing import Any

from transport.codec import message

__all__ = ["Execute", "ExecuteAck", "Fact", "FactAck", "Heartbeat", "HeartbeatAck", "Reboot", "RebootAck", "Seat",
           "SeatView", "SetMetrics", "Status",
           "Reconfigure", "Rejoin", "RejoinReply", "Retired", "SyncReply", "SyncRequest", "TermHint", "View",
           "ViewRequest"]


@message("rack.Status")
class Status:
    """A rack control's periodic report: processor, OS, network and power metrics."""

    rack: str
    seq: int
    metrics: dict  # name -> float, e.g. {"cpu": 0.4, "os_errors": 0, "net_loss": 0.0, "power": 1.0, "temp": 40.0}


@message("rack.SetMetrics")
class SetMetrics:
    """Harness input to a rack control: report these metric values from now on (merged)."""

    metrics: dict


@message("rack.Reboot")
class Reboot:
    """A control decision carried out: reboot the hosts of ``rack``.

    ``by``: the rack whose monitor sends it (the target's own); the fencing token is
    ``(group, term, decision)``: the sector, the term of the authority that handed the
    decision over, and the decision id ``reboot:<rack>:<seq>``.
    """

    rack: str
    decision: str
    by: str
    group: str = ""
    term: int = 0


@message("rack.RebootAck")
class RebootAck:
    """The control's answer to a ``Reboot``: ``outcome`` is ``rebooting``, ``already-rebooting``
    (obeyed while a reboot was under way), ``duplicate`` (that decision was obeyed before) or
    ``stale`` (its token is older than one obeyed)."""

    rack: str
    decision: str
    outcome: str


@message("rack.Execute")
class Execute:
    """The sector's acting authority to the target rack's monitor: carry out the chosen ``decision``.

    ``term``/``lease_until``: the sender's authority term and lease (its clock) when sent;
    ``by``: the sender's rack. Retried (backing off) until an ``ExecuteAck`` says done or skipped.
    """

    group: str
    term: int
    decision: str
    rack: str
    action: str
    by: str
    lease_until: float


@message("rack.ExecuteAck")
class ExecuteAck:
    """The target monitor's answer: ``outcome`` is ``pending`` (recorded, its control not yet
    acknowledged), ``done``, ``skipped`` (cancelled: ``reason``) or ``stale`` (refused: the sender's
    token or lease is stale; another authority may carry it out)."""

    decision: str
    outcome: str
    reason: str = ""


@message("rack.Heartbeat")
class Heartbeat:
    """An authority's lease renewal to the members of its group instance."""

    group: str  # the instance group, e.g. "d0s1" or "d0@d0s0r1,d0s1r0,d0s2r2,d0s3r0"
    term: int
    holder: str  # rack id of the authority's monitor
    sent: float  # the authority's clock when sent (echoed back in the ack)
    quorum_ok: bool = True  # the sender's last renewal reached a quorum
    digest: int = 0  # a checksum of the fleet-level facts the sender knows (anti-entropy)
    seats: dict = {}  # the sender's view of the upper groups' seats: {group: {child: [term, holder]}}
    unreached: list = []  # data centers the sender cannot reach (its own view, or its authority's; see monitor.py)


@message("rack.HeartbeatAck")
class HeartbeatAck:
    group: str
    term: int
    sent: float
    digest: int = 0  # the member's fleet-fact checksum (so the authority at the top syncs too)
    healthy: bool = True  # the member's own rack is healthy (neither faulty nor powered-off): it could stand


@message("rack.Seat")
class Seat:
    """``holder`` (a rack id) is the authority of ``child`` (a sector or data center) at ``term``."""

    child: str
    term: int
    holder: str


@message("rack.SeatView")
class SeatView:
    """An acceptor that refused a designation because its view of the seats differs from the candidate's:
    its view (as ``Heartbeat.seats``), so the views can converge (the newest term of each seat wins)."""

    seats: dict


@message("rack.Fact")
class Fact:
    """A condition agreed at ``level``; ``value`` is the fact (see monitor.py)."""

    level: str
    value: dict


@message("rack.FactAck")
class FactAck:
    subject: str
    seq: int


@message("rack.TermHint")
class TermHint:
    """An acceptor refused a designation: ``group`` has seen designations up to ``term``."""

    group: str
    term: int


@message("rack.SyncRequest")
class SyncRequest:
    """Send me the fleet-level facts you know; here are mine (both sides merge, newest seq wins)."""

    facts: list = []


@message("rack.SyncReply")
class SyncReply:
    facts: list  # fleet-level facts, each a dict
    extra: Any = None


@message("rack.Reconfigure")
class Reconfigure:
    """Operator to any monitor: agree on this layout (``{"dcs", "sectors", "racks"}``) as the next
    configuration epoch. Forwarded to the fleet's acting authority, which proposes it; refused
    (``monitor.config_refused``) unless it is the current layout with one more sector per data center."""

    layout: dict


@message("rack.Retired")
class Retired:
    """The sender retired ``instance`` (a newer instance of its stream was decided): it will not vote in it.

    The receiver stops proposing in it and retires it too (refusing an instance is always safe)."""

    instance: str


@message("rack.Rejoin")
class Rejoin:
    """A monitor started with no durable state: tell me what you know of my groups' instances and my rack."""

    rack: str
    nonce: float  # this incarnation's start (a reply to an earlier incarnation's request is ignored)


@message("rack.RejoinReply")
class RejoinReply:
    """What the sender knows (durably or better) for the rejoining monitor of ``rack``.

    ``frontier``: stream -> highest key the sender has seen an instance of (``<group>|authority`` ->
    term, ``<group>|condition|<rack>`` -> seq, ``<group>|control|<action>:<rack>`` -> seq);
    ``seq``/``value``: the newest fact about ``rack`` it knows; ``round``: the highest ballot round
    it has seen in any instance.
    """

    rack: str
    nonce: float
    frontier: dict
    seq: int = 0
    value: Any = None
    round: int = 0


@message("rack.ViewRequest")
class ViewRequest:
    """Anyone (an operator's client, a test) to any monitor: answer with a ``View`` of what you know."""

    groups_only: bool = False  # leave the per-rack table out of the answer


@message("rack.View")
class View:
    """A monitor's answer to a ``ViewRequest``: its knowledge, each item with its level of agreement.

    ``racks``: rack -> ``{"condition", "indicator", "seq", "level", "age"}`` where ``level`` is ``local``
    (the answering monitor's own rack, raised here and not yet agreed), ``sector``, ``dc`` or ``fleet``
    (the highest group that agreed it) or ``default`` (no fact: the seed's default non-fault);
    ``groups``: sector or data center -> ``{"condition", "level", "seq", "age", "rule", "reason",
    "assumed"}``: the condition this monitor holds (``assumed``: the no-quorum policy's, when it
    overrides the agreed one), the agreed fact's level (``fleet``; ``default`` when none is agreed
    yet: the default state, operational) and ``rule``, the stated rule applied to this monitor's own
    facts (its level of agreement: local). ``age``: seconds since this monitor learned it (None for
    ``default``). Sizes are bounded
    by the layout: one entry per rack and group.
    """

    rack: str  # the answering monitor's rack
    epoch: int  # its agreed configuration epoch (-1: joining)
    layout: dict  # {"dcs", "sectors", "racks"}
    racks: dict
    groups: dict
    authorities: dict  # group -> {"term", "holder", "acting"} as this monitor knows them
    no_quorum: bool  # its sector has no live authority
    fleet_cut: bool  # it cannot reach a quorum of the fleet's data centers (cut off)
    policy: str  # on_no_quorum: keep | revert
    assumed: dict  # data center -> "as-agreed" or the default assumption in force
    uptime: float = 0.0  # seconds since this incarnation started
    unreached: list = []  # data centers it cannot reach
