"""Messages of the councils of resource controllers and of the oversight role (tags ``workflow.X``).

How this works
--------------
(Seed doc FIGS. 5 and 6, routine 600.) Re-exported by :mod:`protocols.workflow.messages`. Four
conversations, each message carrying what its receiver needs to judge staleness (the council, the
mitigation id, which names the proposer's incarnation):

* **Council, proposer <-> peer** (:mod:`protocols.workflow.council`): :class:`HeadroomQuery` ("how many
  of my waiting servers could you take until ``until``?") is answered by :class:`HeadroomReport`
  (``headroom``; 0 is a rejection, with ``hold`` seconds during which the proposer asks again nothing).
  :class:`MitigationPropose` (redirect ``count`` of my waiting servers to you until ``until``) is answered
  by :class:`MitigationDecision` (``accepted`` <= ``count``; 0 is a rejection with a hold). The peer is the
  only author of its decision; it tells every member and the oversight role. :class:`MitigationEnd`
  (withdrawn by the peer, no longer needed by the proposer, cancelled by an operator) is acknowledged by
  :class:`MitigationEndAck`.
* **Enforcement, controller -> server** (through a proxy when the server came through one):
  :class:`Redirect` tells a waiting server to ask the peer's controller (``controller``, ``proxies``)
  under mitigation ``mitigation``; the peer answers a redirected request it will not take with
  :class:`RedirectRefused`, and the server goes home. (``AccessRequest.mitigation`` names the mitigation
  a request to a peer comes under; ``AccessRequest.returned`` the one a server came home from.)
* **Council -> oversight**: :class:`MitigationNotice` (a decision, a request for approval, or "no
  mitigation possible"); the oversight role answers with :class:`OversightDecision` (approve or reject,
  and who decided), resent until each party says :class:`OversightDecisionAck`.
* **Operator -> oversight** (a console or CLI; every message names the ``operator``): :class:`OversightList`
  -> :class:`OversightView`; :class:`OversightApprove`, :class:`OversightReject`, :class:`OversightPropose`,
  :class:`OversightImpose`, :class:`OversightCancel` -> :class:`OversightAck` (``ok``, ``detail``). The
  oversight role tells a proposer to run an operator's proposal with :class:`ProposeMitigation` and a peer
  to take an imposed one with :class:`ImposeMitigation`.

Times (``until``) are the sender's clock readings; members are assumed to have clocks within a small
skew of each other (the node clocks are wall-aligned; see docs/council.md).
"""

from __future__ import annotations

from transport.codec import message

__all__ = [
    "HeadroomQuery",
    "HeadroomReport",
    "ImposeMitigation",
    "MitigationDecision",
    "MitigationEnd",
    "MitigationEndAck",
    "MitigationNotice",
    "MitigationPropose",
    "MitigationView",
    "OversightAck",
    "OversightApprove",
    "OversightCancel",
    "OversightDecision",
    "OversightDecisionAck",
    "OversightEntry",
    "OversightImpose",
    "OversightList",
    "OversightPropose",
    "OversightReject",
    "OversightView",
    "ProposeMitigation",
    "Redirect",
    "RedirectRefused",
]


# -- council: proposer <-> peers ------------------------------------------------------------


@message("workflow.HeadroomQuery")
class HeadroomQuery:
    """Routine 600, block 604: the proposer asks a peer how many waiting servers it could take."""

    council: str
    proposer: str  # the proposer's controller address
    round: int
    needed: int  # servers the proposer would like to move
    until: float  # how long a mitigation would last (proposer's clock)


@message("workflow.HeadroomReport")
class HeadroomReport:
    council: str
    peer: str
    round: int
    headroom: int  # servers the peer could take now; 0 = no (a rejection)
    hold: float = 0.0  # with headroom 0: seconds during which the proposer asks this peer nothing


@message("workflow.MitigationPropose")
class MitigationPropose:
    """Routine 600, block 606: redirect ``count`` of the proposer's waiting servers to ``peer`` until ``until``."""

    mitigation: str  # "<proposer>#<epoch>.<n>": new per proposer incarnation
    council: str
    proposer: str
    peer: str
    count: int
    until: float
    waiting: int = 0  # the proposer's waiting servers when it proposed (the share is count / waiting)
    approved_by: str = ""  # an operator's proposal: approved by that operator already


@message("workflow.MitigationDecision")
class MitigationDecision:
    """The peer's decision on a mitigation (it is the only author of it); sent to the proposer, every other
    member and the oversight role. ``accepted`` 0 is a rejection (``hold`` s)."""

    mitigation: str
    council: str
    proposer: str
    peer: str
    requested: int
    accepted: int
    until: float
    needs_approval: bool = False  # the council's oversight must approve before it is enforced
    hold: float = 0.0
    by: str = ""  # who decided: the peer's address, or "operator:<name>" for an imposed mitigation
    waiting: int = 0


@message("workflow.MitigationEnd")
class MitigationEnd:
    """A mitigation ends (withdrawn, no longer needed, cancelled): no new redirects, no new admissions."""

    mitigation: str
    council: str
    by: str
    reason: str = ""


@message("workflow.MitigationEndAck")
class MitigationEndAck:
    mitigation: str
    member: str


# -- enforcement: controller -> server -------------------------------------------------------


@message("workflow.Redirect")
class Redirect:
    """Ask ``controller`` (the peer's, with its ``proxies``) for ``resource`` instead, under ``mitigation``."""

    server: str
    resource: str
    boot: int
    seq: int
    mitigation: str
    controller: str
    proxies: tuple[str, ...] = ()
    until: float = 0.0
    stamp: float = 0.0


@message("workflow.RedirectRefused")
class RedirectRefused:
    """The peer will not take this redirected request (``reason``): go home."""

    server: str
    resource: str
    boot: int
    seq: int
    mitigation: str
    reason: str = ""


# -- council -> oversight ---------------------------------------------------------------------


@message("workflow.MitigationNotice")
class MitigationNotice:
    """What the oversight role hears from a member: ``kind`` is ``decision`` (a peer decided; ``needs_approval``
    says whether it waits for an operator), ``approval`` (the proposer asks again for a decision it waits on),
    ``no-mitigation`` (overloaded and no peer could help: a person should know), ``ended``."""

    council: str
    kind: str
    member: str
    mitigation: str = ""
    proposer: str = ""
    peer: str = ""
    requested: int = 0
    accepted: int = 0
    until: float = 0.0
    needs_approval: bool = False
    waiting: int = 0
    detail: str = ""


@message("workflow.OversightDecision")
class OversightDecision:
    """The oversight role's decision on a mitigation (``approve`` True/False), by ``by`` (``operator:<name>``)."""

    mitigation: str
    council: str
    approve: bool
    by: str
    reason: str = ""


@message("workflow.OversightDecisionAck")
class OversightDecisionAck:
    mitigation: str
    member: str


@message("workflow.ProposeMitigation")
class ProposeMitigation:
    """Oversight -> proposer: an operator asks you to propose this to ``peer`` (the peer still decides)."""

    mitigation: str
    council: str
    peer: str
    count: int
    until: float
    by: str


@message("workflow.ImposeMitigation")
class ImposeMitigation:
    """Oversight -> peer: an operator imposes this mitigation; take it (still within your own limit)."""

    mitigation: str
    council: str
    proposer: str
    count: int
    until: float
    by: str


# -- operator -> oversight ----------------------------------------------------------------------


@message("workflow.OversightList")
class OversightList:
    operator: str = ""
    history: int = 50  # how many of the latest history entries to include


@message("workflow.OversightApprove")
class OversightApprove:
    mitigation: str
    operator: str


@message("workflow.OversightReject")
class OversightReject:
    mitigation: str
    operator: str
    reason: str = ""


@message("workflow.OversightPropose")
class OversightPropose:
    """Ask ``proposer`` to propose redirecting ``count`` of its waiting servers to ``peer`` for ``duration`` s."""

    council: str
    proposer: str
    peer: str
    count: int
    duration: float
    operator: str


@message("workflow.OversightImpose")
class OversightImpose:
    """Impose on ``peer`` a redirect of ``count`` of ``proposer``'s waiting servers for ``duration`` s."""

    council: str
    proposer: str
    peer: str
    count: int
    duration: float
    operator: str


@message("workflow.OversightCancel")
class OversightCancel:
    mitigation: str
    operator: str
    reason: str = ""


@message("workflow.OversightAck")
class OversightAck:
    ok: bool
    detail: str = ""
    mitigation: str = ""


@message("workflow.MitigationView")
class MitigationView:
    """One mitigation as the oversight role knows it. ``state``: proposed, pending (waits for an operator),
    in_force, rejected, ended."""

    mitigation: str
    council: str
    proposer: str
    peer: str
    requested: int
    accepted: int
    until: float
    state: str
    needs_approval: bool = False
    decided_by: str = ""
    approved_by: str = ""
    reason: str = ""


@message("workflow.OversightEntry")
class OversightEntry:
    """One line of the oversight history: ``what`` happened to ``mitigation`` (or the council), decided by ``by``."""

    time: float
    council: str
    what: str
    by: str
    mitigation: str = ""
    detail: str = ""


@message("workflow.OversightView")
class OversightView:
    """The answer to :class:`OversightList`: councils (name -> approval mode), mitigations, notices, history."""

    councils: dict[str, str]
    mitigations: tuple[MitigationView, ...] = ()
    history: tuple[OversightEntry, ...] = ()
    alerts: tuple[OversightEntry, ...] = ()  # the latest "no mitigation possible" notices
