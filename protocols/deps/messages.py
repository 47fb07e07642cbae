"""Messages of dependency-aware startup (tags ``deps.X``).

How this works
--------------
* agent -> manager and peer agents: :class:`Report` (the asset's services, what
  each depends on, every service's state, the peer agents it has not heard
  from for ``silent_after`` seconds; sent at start and every ``report_every``
  seconds) and :class:`Status` (one service changed state:
  down, starting, waiting (on ``waiting_on``), up, bootstrap, failed);
  :class:`AssetEvent` (the asset is about to reboot or power down, or a
  maintenance window opened: a trigger for opportunistic remediation).
* manager -> agent: :class:`Act` (start, start-bootstrap, restart,
  restart-bootstrap, stop, reboot, reimage: a reboot through the asset's boot
  workflow), naming the dependencies a bootstrap start
  does not wait for (``skip``) and why (``ref``: a plan step or a remediation).
* operator -> manager: :class:`Condition` (a named condition starts or stops
  holding), :class:`Remediate` (a remediation to run immediately,
  opportunistically or conditionally), :class:`Override` (add, change or
  remove a dependency; logged with who). With ``ack=True`` the manager answers
  the sender with an :class:`Ack` once the decision is recorded (persisted,
  where the manager keeps durable state): ``fleetplane deps condition|remediate|
  override`` asks that way.
* anyone -> manager: :class:`Query`, answered with :class:`View` (its
  incarnation, the services' states, conditions, remediations, deadlocks).
* host -> agent (the embedding API): :class:`ServiceUp` / :class:`ServiceExited`
  answer a ``StartService`` host effect, :class:`AssetBooted` a ``RebootAsset``.

Staleness: an agent's messages carry its incarnation (a fresh random value per
start) and a sequence number; receivers keep, per asset, the newest
incarnation they saw and ignore older sequence numbers of it. Host answers
carry the start's ``token``; an answer for an older token is ignored.
"""

from __future__ import annotations

import attrs

from transport.codec import message

__all__ = ["Ack", "Act", "AssetBooted", "AssetEvent", "Condition", "Override", "Query", "Remediate", "Report",
           "ServiceExited", "ServiceInfo", "ServiceUp", "Status", "STATES", "ACTIONS", "View"]

STATES = ("down", "starting", "waiting", "up", "bootstrap", "failed")
ACTIONS = ("start", "start-bootstrap", "restart", "restart-bootstrap", "stop", "reboot", "reimage")


@message("deps.ServiceInfo")
class ServiceInfo:
    name: str
    hard: list[str] = attrs.field(factory=list)
    conditional: dict[str, str] = attrs.field(factory=dict)  # on -> condition
    order: list[str] = attrs.field(factory=list)
    bootstrap: bool = False
    priority: int = 0
    start_time: float = 1.0
    functions: list[str] = attrs.field(factory=list)  # what it provides
    restarted_by: list[str] = attrs.field(factory=list)
    uses: dict[str, str] = attrs.field(factory=dict)  # dependency -> the function it is used for


@message("deps.Report")
class Report:
    asset: str
    incarnation: int
    seq: int
    failure_domain: str
    region: str
    services: list[ServiceInfo]
    states: dict[str, str]
    waiting: dict[str, list[str]]
    unreachable: list[str] = attrs.field(factory=list)  # peer agents not heard from for silent_after seconds


@message("deps.Status")
class Status:
    asset: str
    incarnation: int
    seq: int
    service: str
    state: str
    waiting_on: list[str] = attrs.field(factory=list)


@message("deps.AssetEvent")
class AssetEvent:
    asset: str
    kind: str  # rebooting | powering-down | maintenance


@message("deps.Act")
class Act:
    action: str
    service: str = ""
    skip: list[str] = attrs.field(factory=list)
    ref: str = ""
    ack: bool = False  # the agent answers the sender with an Ack (fleetplane deps act)


@message("deps.Condition")
class Condition:
    name: str
    holds: bool
    who: str = "operator"
    ack: bool = False  # answer the sender with an Ack


@message("deps.Remediate")
class Remediate:
    id: str
    action: str  # an Act action
    service: str
    when: str = "immediate"  # immediate | opportunistic | conditional
    condition: str = ""
    deadline: float = 0.0  # opportunistic: seconds after arming it runs anyway (0: no deadline)
    who: str = "operator"
    ack: bool = False


@message("deps.Override")
class Override:
    service: str
    on: str
    kind: str = "hard"
    condition: str = ""
    remove: bool = False
    who: str = "operator"
    ack: bool = False


@message("deps.Ack")
class Ack:
    """The manager's answer to an operator message sent with ``ack=True``: recorded (ok) or refused, and why."""

    ok: bool
    what: str


@message("deps.Query")
class Query:
    """Asks the manager for its view (answered with :class:`View`): ``fleetplane deps status``."""


@message("deps.View")
class View:
    incarnation: int
    planned: bool
    all_up: bool
    states: dict[str, str]
    conditions: list[str]
    detected: list[str]
    remediations: dict[str, str]  # id -> state
    deadlocks: dict[str, str]  # id -> state


@message("deps.ServiceUp")
class ServiceUp:
    service: str
    token: int


@message("deps.ServiceExited")
class ServiceExited:
    service: str
    token: int
    reason: str = ""


@message("deps.AssetBooted")
class AssetBooted:
    token: int
