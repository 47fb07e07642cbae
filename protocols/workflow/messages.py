"""Messages of the resource-dependent workflow protocol (tags ``workflow.X``).

How this works
--------------
Four roles talk (source: ``shared/seeds/000_6042360d9d71bd38.txt``, FIGS. 2A-2C,
3 and 4):

* server <-> workflow controller: :class:`Hello` (id, MAC, hardware, location)
  is answered by :class:`Workflow` (ordered stages, each naming the resources it
  needs, and where each resource's controller and proxies live) or by
  :class:`NoWorkflow`. The server reports :class:`StageReport` per finished
  stage and :class:`WorkflowDone` at the end. The workflow controller tells
  resource controllers what load is coming with :class:`Provision`.
* server -> resource controller (directly, or through a proxy): an
  :class:`AccessRequest` before each resource-dependent stage; while waiting,
  :class:`StatusPing`; while holding a lease, :class:`LeaseRenew`; at the end
  of the stage, :class:`Release`.
* resource controller -> server: :class:`AccessGrant` (a lease) or
  :class:`AccessDeny` (a :class:`Directive`: pending, parking or dormant, with
  the predicted wait); :class:`Wake` for a dormant server (its BMC powers it
  on); :class:`LeaseRenewed` / :class:`LeaseLost`.
* proxy <-> resource controller: :class:`ProxyBatch` carries many servers'
  messages in one (each item names its server); :class:`ProxyReply` carries the
  answers back, which the proxy hands to each server.

Staleness: every server message carries the server's ``boot`` (a random nonce
per incarnation) and a per-boot request ``seq`` (one per resource access); the
controller ignores an older ``seq`` of the same boot, and a new boot replaces
everything the old incarnation had. Lease messages carry the lease id and the
controller's ``epoch`` (a random nonce per controller incarnation). Answers
echo the ``stamp`` (the server's own clock reading when it sent the message
answered), so a server can tell an answer to an old message from a fresh one
and can compute its lease deadline from its own clock only.

Councils and oversight (issue 21; seed doc FIGS. 5-6): the messages between the members of a
council of resource controllers, the redirect a server follows to a peer's controller, and the
oversight role's operator messages (``OversightList``, ``OversightApprove``, ``OversightReject``,
``OversightPropose``, ``OversightImpose``, ``OversightCancel`` -> ``OversightAck`` / ``OversightView``)
are defined in :mod:`protocols.workflow.council_messages` and re-exported here; see docs/council.md.

Host reports (:class:`StageDone`, :class:`StageFailed`) are messages the server's
host agent sends back after carrying out a ``RunStage`` effect; they carry the
run id so a late report of an aborted run is recognised.
"""

from __future__ import annotations

import enum

from protocols.workflow.council_messages import *  # noqa: F401,F403  (issue 21: councils and oversight)
from protocols.workflow.council_messages import Redirect, RedirectRefused
from protocols.workflow.council_messages import __all__ as _COUNCIL_MESSAGES
from transport.codec import message

__all__ = [
    "AccessDeny",
    "AccessGrant",
    "AccessRequest",
    "Directive",
    "Hello",
    "LeaseLost",
    "LeaseRenew",
    "LeaseRenewed",
    "NoWorkflow",
    "Provision",
    "ProxyBatch",
    "ProxyReply",
    "Release",
    "ResourceRef",
    "ResourceReport",
    "StageDone",
    "StageFailed",
    "StageReport",
    "StageSpec",
    "StatusPing",
    "Wake",
    "Workflow",
    "WorkflowDone",
    *_COUNCIL_MESSAGES,
]


class Directive(enum.Enum):
    """The waiting state a denial directs, chosen by predicted wait (short -> long)."""

    PENDING = "pending"  # stay fully on, ping often
    PARKING = "parking"  # reduce power, ping less often
    DORMANT = "dormant"  # power off; the controller wakes the server


# -- workflows -------------------------------------------------------------------


@message("workflow.StageSpec")
class StageSpec:
    """One stage: the resources it needs, the stages it depends on, its expected duration (s)."""

    name: str
    resources: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    expected: float = 30.0


@message("workflow.ResourceRef")
class ResourceRef:
    """Where a resource's controller and its proxies are."""

    name: str
    controller: str
    proxies: tuple[str, ...] = ()


@message("workflow.Hello")
class Hello:
    """A booting server asks for its workflow (FIG. 2A, first arrow)."""

    server: str
    boot: int
    mac: str = ""
    hardware: str = ""
    location: str = ""


@message("workflow.Workflow")
class Workflow:
    server: str
    boot: int
    workflow: str
    stages: tuple[StageSpec, ...]
    resources: tuple[ResourceRef, ...] = ()


@message("workflow.NoWorkflow")
class NoWorkflow:
    server: str
    boot: int
    reason: str = ""


@message("workflow.StageReport")
class StageReport:
    server: str
    boot: int
    workflow: str
    stage: str
    outcome: str  # "ok" | "failed"
    duration: float
    attempt: int = 1


@message("workflow.WorkflowDone")
class WorkflowDone:
    server: str
    boot: int
    workflow: str
    ok: bool
    elapsed: float


@message("workflow.Provision")
class Provision:
    """Pre-provisioning notice: ``servers`` servers are still to come to ``stage`` of ``workflow`` on ``resource``.

    Counted by the workflow controller: servers assigned the workflow that have not yet done the stage (nor
    finished or failed the workflow), plus servers of an announced :class:`WaveNotice` that have not said Hello
    yet; the count goes down as they pass. ``expected``: the stage's expected duration (s).
    """

    resource: str
    workflow: str
    stage: str
    servers: int
    expected: float = 0.0


@message("workflow.WaveNotice")
class WaveNotice:
    """A wave of ``servers`` servers is about to boot (seed doc: the DHCP server, or an operator powering a row
    on, alerts the workflow controller that servers "will soon be requesting a workflow"). ``mac``,
    ``hardware`` and ``location`` are matched against the catalogue as a :class:`Hello`'s would be."""

    servers: int
    mac: str = ""
    hardware: str = ""
    location: str = ""


# -- admission ---------------------------------------------------------------------


@message("workflow.AccessRequest")
class AccessRequest:
    server: str  # the server's address (answers go there, or through the proxy)
    resource: str
    boot: int
    seq: int
    stage: str = ""
    priority: int = 0  # higher is served first
    expected: float = 0.0  # the stage's expected duration (s), for prediction before history exists
    wake: str = ""  # where Wake goes (the server's BMC); "" = the server's address
    stamp: float = 0.0  # sender's clock when sent; echoed in the answer
    attempt: int = 1
    boot_time: float = 0.0  # how long the server takes from power-on to asking (s), as its host measured; 0: unknown
    mitigation: str = ""  # asking a peer's controller under this council mitigation (a Redirect named it)
    returned: str = ""  # back home from this mitigation (the peer refused it, or could not be reached)
    slept: int = 0  # dormant spells of this boot so far: a request of the spell a dormant directive answered,
    #                 reaching the controller late (a proxy's resend, another route's attempt), is a copy


@message("workflow.StatusPing")
class StatusPing:
    """A waiting server's status indicator; ``state`` is pending, parking or dormant (the last one
    is the notice a server sends as it powers off). Carries the whole request so a controller
    that lost its waiting list can re-enqueue the server."""

    server: str
    resource: str
    boot: int
    seq: int
    state: str
    stage: str = ""
    priority: int = 0
    expected: float = 0.0
    wake: str = ""
    stamp: float = 0.0
    boot_time: float = 0.0  # as in AccessRequest
    mitigation: str = ""  # as in AccessRequest


@message("workflow.AccessGrant")
class AccessGrant:
    server: str
    resource: str
    boot: int
    seq: int
    lease: int
    epoch: int
    ttl: float
    stamp: float = 0.0  # the stamp of the request/ping this grant answers (0: pushed)


@message("workflow.AccessDeny")
class AccessDeny:
    server: str
    resource: str
    boot: int
    seq: int
    epoch: int
    directive: Directive
    wait: float  # predicted wait (s)
    position: int = 0  # servers ahead in the waiting list
    ping_every: float = 0.0  # how often to send StatusPing (0: do not ping)
    stamp: float = 0.0


@message("workflow.Wake")
class Wake:
    """Power on and ask again: a slot is free (or about to be) for this request."""

    server: str
    resource: str
    boot: int
    seq: int
    epoch: int
    wake: str = ""  # the address the Wake is delivered to


@message("workflow.LeaseRenew")
class LeaseRenew:
    server: str
    resource: str
    boot: int
    lease: int
    epoch: int
    stamp: float = 0.0


@message("workflow.LeaseRenewed")
class LeaseRenewed:
    server: str
    resource: str
    lease: int
    epoch: int
    ttl: float
    stamp: float = 0.0


@message("workflow.LeaseLost")
class LeaseLost:
    server: str
    resource: str
    lease: int
    epoch: int
    reason: str = ""


@message("workflow.Release")
class Release:
    server: str
    resource: str
    boot: int
    lease: int
    epoch: int
    stage: str = ""
    outcome: str = "ok"  # "ok" | "failed" | "aborted" | "unused"
    duration: float = 0.0


@message("workflow.ReleaseAck")
class ReleaseAck:
    """The controller has the release of ``lease`` (or never knew the lease): stop retransmitting it."""

    server: str
    resource: str
    boot: int
    lease: int
    epoch: int


@message("workflow.ResourceReport")
class ResourceReport:
    """The resource's own metrics (from the store or its monitor).

    ``latency``: the time a unit of work takes now (e.g. seconds per MB);
    ``nominal``: the same unloaded (0: not known; the controller then takes the
    lowest latency it has seen as the baseline);
    ``bandwidth_used``: the offered load, bandwidth demanded / bandwidth available (1.0: exactly at
    capacity; above 1.0 every transfer is slowed, and an adaptive controller decreases its limit);
    ``error_rate``: failed / started transfers since the last report;
    ``cpu``: the fraction of the resource's processing power in use (0..1; below 0: not measured).
    """

    resource: str
    seq: int
    in_flight: int
    latency: float
    bandwidth_used: float
    error_rate: float = 0.0
    nominal: float = 0.0
    cpu: float = -1.0


# -- proxies -----------------------------------------------------------------------


@message("workflow.ProxyBatch")
class ProxyBatch:
    proxy: str
    seq: int
    items: tuple[AccessRequest | StatusPing | LeaseRenew | Release, ...]


@message("workflow.ProxyReply")
class ProxyReply:
    epoch: int
    items: tuple[AccessGrant | AccessDeny | Wake | LeaseRenewed | LeaseLost | ReleaseAck | Redirect | RedirectRefused, ...]


# -- host reports ----------------------------------------------------------------


@message("workflow.StageDone")
class StageDone:
    stage: str
    run: int


@message("workflow.StageFailed")
class StageFailed:
    stage: str
    run: int
    reason: str = ""
