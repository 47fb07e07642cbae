"""The server: walks its workflow stage by stage, asking each resource's controller first.

How this works
--------------
(Seed doc FIG. 3, routine 300, and the server states.) A server starts
``invalid`` and says :class:`Hello` to its workflow controller (retrying with
backoff) until a :class:`Workflow` arrives; then it is ``running``. It picks
the next runnable stage (first in order whose ``needs`` are done), and for
each resource the stage needs (in sorted order, one at a time, so two servers
never wait on each other) it sends an :class:`AccessRequest` with a fresh
request ``seq``:

* no answer within ``retry_after`` (jittered): resend; after
  ``proxy_after_failures`` unanswered tries, or ``proxy_after`` seconds without
  an answer, the server goes through the resource's next proxy (and later
  rotates on; with no alternative it backs off exponentially, up to 16x).
  ``proxy_first`` starts at a proxy instead. Whatever route the request took,
  the pings, renewals and releases for that resource follow it.
* :class:`AccessDeny`: enter the directed state. ``pending``: fully on,
  :class:`StatusPing` every ``ping_every`` (the controller says how often);
  ``parking``: ``SetPower(parking_power)``, pinging less often; ``dormant``:
  a last ping saying ``dormant`` (the notice of the seed doc), then
  ``PowerOff``, with an RTC alarm (``max(alarm_min, alarm_factor * wait)``) in
  case no :class:`Wake` ever comes. A waiting server re-asks (a real request,
  which must be answered) after ``max(recheck_min, recheck_factor * wait)``,
  so a controller that stopped hearing its pings is found out. A server that
  already holds a lease for an earlier resource of the stage is never made
  dormant (it could not renew); it parks instead.
* :class:`Wake` (to a dormant server: its BMC hears it; the machine stands in
  for the BMC and, while dormant, hears nothing but Wake and its alarm):
  ``PowerOn``, become ``pending``, and after ``resume_delay`` (the boot) ask
  again; the controller has a slot reserved for it.
* :class:`AccessGrant`: hold the lease (become ``running`` if waiting), ask for
  the stage's next resource or, with all of them held, ``RunStage``. Leases are
  renewed every ``ttl / renewals_per_ttl``; if the holder's own deadline
  (:func:`policy.holder_deadline`) passes unconfirmed, or the controller says
  :class:`LeaseLost`, the stage is aborted (``AbortStage``) and started again.
  A grant the server cannot use (stale, or for a stage it is not asking for) is
  given straight back with ``Release(outcome="unused")``.
* the host's :class:`StageDone` / :class:`StageFailed` (matched by run id):
  release every lease, report the stage to the workflow controller, go on with
  the next stage, ``done`` after the last; a stage that fails
  ``max_stage_attempts`` times makes the server ``failed``.

Transitions happen only in :meth:`Server._become`, which checks the table
:data:`TRANSITIONS`, emits ``server.state`` (from, to, reason), issues the power
effects of the change and accounts the time spent in each state. A message a
state does not expect is ignored with a ``server.ignored`` event; a dormant
server drops everything but Wake (it is powered off).

Host effects (Effect subclasses, carried out by the host agent): :class:`RunStage`,
:class:`AbortStage`, :class:`SetPower`, :class:`PowerOff`, :class:`PowerOn`.
"""

from __future__ import annotations

import enum
import random

import attrs

from protocols.core import CancelTimer, Effect, Emit, Send, SetTimer, TimerFired
from protocols.workflow.messages import (
    AccessDeny,
    AccessGrant,
    AccessRequest,
    Directive,
    Hello,
    LeaseLost,
    LeaseRenew,
    LeaseRenewed,
    NoWorkflow,
    Redirect,
    RedirectRefused,
    Release,
    ReleaseAck,
    ResourceRef,
    StageDone,
    StageFailed,
    StageReport,
    StageSpec,
    StatusPing,
    Wake,
    Workflow,
    WorkflowDone,
)
from protocols.workflow.policy import check_transition, holder_deadline, renew_interval

__all__ = [
    "TRANSITIONS",
    "AbortStage",
    "PowerOff",
    "PowerOn",
    "RunStage",
    "Server",
    "ServerState",
    "SetPower",
]


# -- host effects ----------------------------------------------------------------------


@attrs.frozen(slots=True)
class RunStage(Effect):
    """Run ``stage`` (its resources are granted); report ``StageDone``/``StageFailed(stage, run)``."""

    stage: str
    run: int
    resources: tuple[str, ...] = ()
    expected: float = 0.0
    sources: tuple[str, ...] = ()  # per resource, the controller that granted it (a peer's, when redirected)


@attrs.frozen(slots=True)
class AbortStage(Effect):
    """Stop run ``run`` of ``stage`` (its lease is lost); a late report of it is ignored."""

    stage: str
    run: int


@attrs.frozen(slots=True)
class SetPower(Effect):
    """Set the power level: 1.0 is full power, lower is reduced functionality (parking)."""

    level: float


@attrs.frozen(slots=True)
class PowerOff(Effect):
    """Power down (dormant); only the BMC / wake-on-LAN stays on. ``alarm_at`` (the server's clock): when the
    RTC alarm should power the machine on if no Wake came first."""

    alarm_at: float | None = None


@attrs.frozen(slots=True)
class PowerOn(Effect):
    """Power up after dormancy."""


# -- states -----------------------------------------------------------------------------


class ServerState(enum.Enum):
    INVALID = "invalid"  # no workflow yet
    RUNNING = "running"  # processing the workflow (asking, or running a stage)
    PENDING = "pending"  # waiting for a resource, fully on, pinging
    PARKING = "parking"  # waiting, reduced power, pinging less often
    DORMANT = "dormant"  # powered off until woken
    DONE = "done"
    FAILED = "failed"


S = ServerState
TRANSITIONS: dict[ServerState, frozenset[ServerState]] = {
    S.INVALID: frozenset({S.RUNNING}),
    S.RUNNING: frozenset({S.PENDING, S.PARKING, S.DORMANT, S.DONE, S.FAILED}),
    S.PENDING: frozenset({S.RUNNING, S.PARKING, S.DORMANT, S.FAILED}),
    S.PARKING: frozenset({S.RUNNING, S.PENDING, S.DORMANT, S.FAILED}),
    S.DORMANT: frozenset({S.PENDING}),
    S.DONE: frozenset(),
    S.FAILED: frozenset(),
}
_DIRECTED = {Directive.PENDING: S.PENDING, Directive.PARKING: S.PARKING, Directive.DORMANT: S.DORMANT}
_WAITING = (S.PENDING, S.PARKING)
_TERMINAL = (S.DONE, S.FAILED)


class _Route:
    """Where one resource's traffic goes: the controller or one of its proxies."""

    __slots__ = ("controller", "failures", "index", "options", "since", "streak")

    def __init__(self, controller: str, proxies: list[str], proxy_first: bool) -> None:
        self.controller = controller
        self.options = tuple(proxies + [controller]) if proxy_first else tuple([controller] + proxies)
        self.index = 0
        self.failures = 0
        self.streak = 0  # unanswered messages in a row, over every option (reset by any answer)
        self.since: float | None = None  # when the oldest unanswered message was sent

    @property
    def target(self) -> str:
        return self.options[self.index]

    @property
    def direct(self) -> bool:
        return self.target == self.controller


class _Held:
    __slots__ = ("confirmed", "epoch", "lease", "ttl", "unacked")

    def __init__(self, lease: int, epoch: int, ttl: float, confirmed: float) -> None:
        self.lease = lease
        self.epoch = epoch
        self.ttl = ttl
        self.confirmed = confirmed  # own clock: stamp of the message whose answer confirmed the lease
        self.unacked = False  # a renewal is out and not answered yet


def _positive(name: str, v: float) -> None:
    if not v > 0:
        raise ValueError(f"{name} must be > 0, got {v!r}")


class Server:
    """A booting server (sans-I/O). ``address`` is its own actor address (answers come back to it)."""

    tick_interval = None

    def __init__(
        self,
        address: str,
        workflow_controller: str,
        *,
        rng: random.Random,
        mac: str = "",
        hardware: str = "",
        location: str = "",
        wake: str = "",
        priority: int = 0,
        retry_after: float = 2.0,
        proxy_retry_after: float = 5.0,
        proxy_after_failures: int = 3,
        proxy_after: float = 10.0,
        proxy_first: bool = False,
        hello_retry: float = 2.0,
        hello_retry_max: float = 30.0,
        parking_power: float = 0.4,
        alarm_factor: float = 1.5,
        alarm_min: float = 60.0,
        recheck_factor: float = 2.0,
        recheck_min: float = 30.0,
        resume_delay: float = 0.0,
        max_stage_attempts: int = 3,
        restage_after: float = 2.0,
        lease_margin: float = 0.1,
        renewals_per_ttl: int = 3,
        release_retry: float = 0.5,
        boot_time: float | None = None,
    ) -> None:
        for name in ("retry_after", "proxy_retry_after", "proxy_after", "hello_retry", "hello_retry_max",
                     "alarm_min", "recheck_min", "restage_after", "release_retry"):
            _positive(name, locals()[name])
        if proxy_after_failures < 1 or max_stage_attempts < 1 or renewals_per_ttl < 1:
            raise ValueError("proxy_after_failures, max_stage_attempts and renewals_per_ttl must be >= 1")
        if not 0.0 <= parking_power <= 1.0:
            raise ValueError(f"parking_power must be in [0, 1], got {parking_power}")
        if resume_delay < 0 or alarm_factor < 0 or recheck_factor < 0:
            raise ValueError("resume_delay, alarm_factor and recheck_factor must be >= 0")
        self.address = address
        self.workflow_controller = workflow_controller
        self.rng = rng
        self.mac, self.hardware, self.location = mac, hardware, location
        self.wake = wake or address
        self.priority = priority
        self.retry_after = retry_after
        self.proxy_retry_after = proxy_retry_after
        self.proxy_after_failures = proxy_after_failures
        self.proxy_after = proxy_after
        self.proxy_first = proxy_first
        self.hello_retry = hello_retry
        self.hello_retry_max = hello_retry_max
        self.parking_power = parking_power
        self.alarm_factor = alarm_factor
        self.alarm_min = alarm_min
        self.recheck_factor = recheck_factor
        self.recheck_min = recheck_min
        self.resume_delay = resume_delay
        self.max_stage_attempts = max_stage_attempts
        self.restage_after = restage_after
        self.lease_margin = lease_margin
        self.renewals_per_ttl = renewals_per_ttl
        self.release_retry = release_retry
        # how long this machine takes from power-on to asking, told to controllers so that they wake it early
        # enough (the host's measurement; default: the modelled boot, resume_delay)
        self.boot_time = resume_delay if boot_time is None else boot_time

        self.boot = rng.getrandbits(31)
        self.state = S.INVALID
        self.since = 0.0
        self.time_in: dict[ServerState, float] = {s: 0.0 for s in S}
        self.started_at: float | None = None
        self.done_at: float | None = None
        self.hellos = 0
        # the workflow
        self.workflow: Workflow | None = None
        self.specs: dict[str, StageSpec] = {}
        self.refs: dict[str, ResourceRef] = {}
        self.routes: dict[str, _Route] = {}
        self.home: dict[str, _Route] = {}  # each resource's own route (routes[r] is a peer's while redirected)
        self.guest: dict[str, str] = {}  # resource -> the council mitigation it was redirected under
        self.returned: dict[str, str] = {}  # resource -> the mitigation this request came home from
        self.done_stages: set[str] = set()
        self.attempts: dict[str, int] = {}
        # the stage in hand
        self.stage: str | None = None
        self.need: list[str] = []  # resources still to acquire, need[0] is being asked for
        self.leases: dict[str, _Held] = {}
        self.seq = 0
        self.slept = 0  # dormant spells of this incarnation (AccessRequest.slept)
        self.req_seq: int | None = None  # seq of the request for need[0]
        self.asking = False  # a request is out and unanswered
        self.ask_attempt = 0
        self.resuming = False
        self.wait = 0.0
        self.ping_every = 0.0
        self.run = 0
        self.running = False
        self.stage_started = 0.0
        self.lease_losses = 0
        self.alarm_at: float | None = None  # the RTC alarm set when it last powered off
        # releases sent and not yet acknowledged: (resource, lease, epoch) -> (message, give up at, to)
        self.releasing: dict[tuple[str, int, int], tuple[Release, float, str]] = {}
        self._handlers = {
            Workflow: self._on_workflow,
            NoWorkflow: self._on_no_workflow,
            AccessGrant: self._on_grant,
            AccessDeny: self._on_deny,
            Wake: self._on_wake,
            LeaseRenewed: self._on_renewed,
            LeaseLost: self._on_lost,
            ReleaseAck: self._on_release_ack,
            StageDone: self._on_stage_done,
            StageFailed: self._on_stage_failed,
            TimerFired: self._on_timer,
            Redirect: self._on_redirect,
            RedirectRefused: self._on_redirect_refused,
        }

    # -- the contract ----------------------------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        if self.started_at is not None:
            return []
        self.started_at = now
        self.since = now
        return self._hello(now)

    def handle(self, msg, sender: str, now: float) -> list[Effect]:
        h = self._handlers.get(type(msg))
        if h is None:
            return self._ignored(msg, "unexpected message", sender=sender)
        if self.state is S.DORMANT and not isinstance(msg, (Wake, TimerFired, Redirect)):
            return self._ignored(msg, "powered off")
        return h(msg, now)

    @property
    def finished(self) -> bool:
        return self.state in _TERMINAL

    def state_seconds(self, now: float) -> dict[str, float]:
        """Seconds spent in each state so far (the current one counted up to ``now``, unless terminal)."""
        out = {s.value: t for s, t in self.time_in.items()}
        if self.state not in _TERMINAL and self.started_at is not None:
            out[self.state.value] += max(0.0, now - self.since)
        return out

    # -- the one place states change -------------------------------------------------

    def _become(self, new: ServerState, now: float, reason: str, **fields) -> list[Effect]:
        old = self.state
        check_transition(TRANSITIONS, old, new, "server")
        self.time_in[old] += now - self.since
        self.since = now
        self.state = new
        fx: list[Effect] = [Emit("server.state", {"from": old.value, "to": new.value, "reason": reason,
                                                  "stage": self.stage, **fields})]
        if old is S.DORMANT:
            fx.append(PowerOn())
        if new is S.DORMANT:
            self.slept += 1  # what it asks once awake is of a new spell: the controller tells it from late copies
            fx += [CancelTimer("ping"), CancelTimer("recheck"), CancelTimer("ask"), PowerOff(self.alarm_at)]
        elif new is S.PARKING:
            fx.append(SetPower(self.parking_power))
        elif old is S.PARKING:
            fx.append(SetPower(1.0))
        if new is S.RUNNING:
            fx += [CancelTimer("ping"), CancelTimer("recheck")]
        if new in _TERMINAL:
            self.done_at = now
            fx += [CancelTimer(k) for k in ("hello", "ask", "ping", "recheck", "alarm", "resume", "renew",
                                            "deadline", "restage")]
        return fx

    # -- workflow --------------------------------------------------------------------

    def _hello(self, now: float) -> list[Effect]:
        self.hellos += 1
        delay = min(self.hello_retry * 2 ** (self.hellos - 1), self.hello_retry_max) * self.rng.uniform(0.8, 1.2)
        return [Send(self.workflow_controller, Hello(self.address, self.boot, self.mac, self.hardware, self.location)),
                SetTimer("hello", now + delay)]

    def _on_workflow(self, m: Workflow, now: float) -> list[Effect]:
        if self.state is not S.INVALID or m.boot != self.boot or m.server != self.address:
            return self._ignored(m, "not asking for a workflow" if self.state is not S.INVALID else "stale boot")
        self.workflow = m
        self.specs = {s.name: s for s in m.stages}
        self.refs = {r.name: r for r in m.resources}
        for r in m.resources:
            proxies = list(r.proxies)
            if proxies:  # spread servers over the proxies
                k = self.rng.randrange(len(proxies))
                proxies = proxies[k:] + proxies[:k]
            self.routes[r.name] = self.home[r.name] = _Route(r.controller, proxies, self.proxy_first)
        fx: list[Effect] = [CancelTimer("hello")]
        fx += self._become(S.RUNNING, now, "workflow", workflow=m.workflow, stages=len(m.stages))
        return fx + self._next_stage(now)

    def _on_no_workflow(self, m: NoWorkflow, now: float) -> list[Effect]:
        if self.state is not S.INVALID or m.boot != self.boot:
            return self._ignored(m, "not asking for a workflow")
        return [Emit("server.no_workflow", {"reason": m.reason}), SetTimer("hello", now + self.hello_retry_max)]

    def _next_stage(self, now: float) -> list[Effect]:
        assert self.workflow is not None
        for spec in self.workflow.stages:
            if spec.name not in self.done_stages and all(n in self.done_stages for n in spec.needs):
                return self._start_stage(spec.name, now)
        if len(self.done_stages) == len(self.workflow.stages):
            fx = self._become(S.DONE, now, "workflow complete")
            return fx + [Send(self.workflow_controller, WorkflowDone(self.address, self.boot, self.workflow.workflow,
                                                                     True, now - (self.started_at or 0.0)))]
        return self._fail(now, "stages blocked by unmet needs")

    def _start_stage(self, name: str, now: float) -> list[Effect]:
        spec = self.specs[name]
        self.stage = name
        missing = [r for r in spec.resources if r not in self.routes]
        if missing:
            return self._fail(now, f"no controller known for {missing}")
        self.need = sorted(set(spec.resources) - set(self.leases))
        if self.need:
            return self._ask(now, new=True)
        return self._run_stage(now)

    def _run_stage(self, now: float) -> list[Effect]:
        spec = self.specs[self.stage]  # type: ignore[index]
        self.run += 1
        self.running = True
        self.stage_started = now
        return [Emit("server.stage_start", {"stage": spec.name, "run": self.run,
                                            "attempt": self.attempts.get(spec.name, 0) + 1}),
                RunStage(spec.name, self.run, tuple(sorted(spec.resources)), spec.expected,
                         tuple(self.routes[r].controller for r in sorted(spec.resources)))]

    def _on_stage_done(self, m: StageDone, now: float) -> list[Effect]:
        if not self.running or m.run != self.run or m.stage != self.stage:
            return self._ignored(m, "not this run")
        return self._stage_ended(now, "ok", "")

    def _on_stage_failed(self, m: StageFailed, now: float) -> list[Effect]:
        if not self.running or m.run != self.run or m.stage != self.stage:
            return self._ignored(m, "not this run")
        return self._stage_ended(now, "failed", m.reason)

    def _stage_ended(self, now: float, outcome: str, reason: str) -> list[Effect]:
        assert self.workflow is not None and self.stage is not None
        stage = self.stage
        self.running = False
        duration = now - self.stage_started
        attempt = self.attempts.get(stage, 0) + 1
        self.attempts[stage] = attempt
        fx = self._release_all(now, outcome, duration)
        fx.append(Emit("server.stage", {"stage": stage, "outcome": outcome, "duration": duration,
                                        "attempt": attempt, "reason": reason}))
        fx.append(Send(self.workflow_controller, StageReport(self.address, self.boot, self.workflow.workflow, stage,
                                                             outcome, duration, attempt)))
        if outcome == "ok":
            self.done_stages.add(stage)
            self.stage = None
            return fx + self._next_stage(now)
        if attempt >= self.max_stage_attempts:
            return fx + self._fail(now, f"stage {stage} failed {attempt} times: {reason}")
        return fx + [SetTimer("restage", now + self.restage_after * self.rng.uniform(0.8, 1.2))]

    def _fail(self, now: float, reason: str) -> list[Effect]:
        fx = self._release_all(now, "aborted", 0.0) if self.leases else []
        if self.running:
            fx.append(AbortStage(self.stage or "", self.run))
            self.running = False
        fx += self._become(S.FAILED, now, reason)
        wf = self.workflow.workflow if self.workflow else ""
        return fx + [Send(self.workflow_controller, WorkflowDone(self.address, self.boot, wf, False,
                                                                 now - (self.started_at or 0.0)))]

    # -- asking ----------------------------------------------------------------------

    def _request(self, now: float, r: str) -> AccessRequest:
        spec = self.specs[self.stage]  # type: ignore[index]
        return AccessRequest(self.address, r, self.boot, self.req_seq or 0, spec.name, self.priority, spec.expected,
                             self.wake, now, self.ask_attempt, self.boot_time, mitigation=self.guest.get(r, ""),
                             returned=self.returned.get(r, ""), slept=self.slept)

    def _ask(self, now: float, *, new: bool) -> list[Effect]:
        r = self.need[0]
        if new:
            if r in self.guest:  # a new request goes home: the controller there decides again
                self.guest.pop(r)
                self.routes[r] = self.home[r]
            self.returned.pop(r, None)
            self.seq += 1
            self.req_seq = self.seq
            self.ask_attempt = 0
        self.ask_attempt += 1
        self.asking = True
        self.resuming = False
        route = self.routes[r]
        if route.since is None:
            route.since = now
        base = self.retry_after if route.direct else self.proxy_retry_after
        # back off once every option has had its share of failures without an answer (a lone route: its own)
        exhausted = max(0, route.streak - self.proxy_after_failures * len(route.options))
        delay = base * min(2 ** exhausted, 16) * self.rng.uniform(0.8, 1.2)
        return [Send(route.target, self._request(now, r)), SetTimer("ask", now + delay)]

    def _retry(self, now: float) -> list[Effect]:
        r = self.need[0]
        route = self.routes[r]
        route.failures += 1
        route.streak += 1
        fx: list[Effect] = [Emit("server.retry", {"resource": r, "seq": self.req_seq, "attempt": self.ask_attempt + 1,
                                                  "via": route.target})]
        if r in self.guest and route.streak >= self.proxy_after_failures * len(route.options):
            return fx + self._go_home(r, now, "peer unreachable")  # each group works alone when others are cut off
        fx += self._maybe_reroute(r, now)
        return fx + self._ask(now, new=False)

    def _maybe_reroute(self, r: str, now: float) -> list[Effect]:
        route = self.routes[r]
        if len(route.options) < 2:
            return []
        if route.failures >= self.proxy_after_failures:
            why = "failures"
        elif route.direct and route.since is not None and now - route.since >= self.proxy_after:
            why = "time"
        else:
            return []
        old = route.target
        route.index = (route.index + 1) % len(route.options)
        route.failures = 0
        route.since = now
        return [Emit("server.route", {"resource": r, "from": old, "via": route.target, "reason": why})]

    def _route_ok(self, r: str) -> None:
        route = self.routes.get(r)
        if route is not None:
            route.failures = 0
            route.streak = 0
            route.since = None

    def _asking_for(self, resource: str, seq: int) -> bool:
        return bool(self.need) and self.need[0] == resource and seq == self.req_seq and not self.running

    def _on_grant(self, m: AccessGrant, now: float) -> list[Effect]:
        if m.server != self.address or m.boot != self.boot:
            return self._ignored(m, "stale boot")
        held = self.leases.get(m.resource)
        if held is not None and held.lease == m.lease and held.epoch == m.epoch:
            return []  # a duplicate of a grant we hold
        if self.state in _TERMINAL or self.state is S.INVALID or not self._asking_for(m.resource, m.seq):
            route = self.routes.get(m.resource)
            back = route.target if route is not None else None
            fx = self._ignored(m, "unusable grant: given back")
            if back is not None:
                rel = Release(self.address, m.resource, self.boot, m.lease, m.epoch, "", "unused", 0.0)
                fx.append(Send(back, rel))
                fx += self._keep_releasing(rel, now + m.ttl, now, back)
            return fx
        self._route_ok(m.resource)
        self.asking = False
        self.resuming = False
        self.leases[m.resource] = _Held(m.lease, m.epoch, m.ttl, m.stamp)
        self.need.pop(0)
        fx: list[Effect] = [CancelTimer("ask"), CancelTimer("resume")]
        if self.state is not S.RUNNING:
            fx += self._become(S.RUNNING, now, "granted", resource=m.resource, lease=m.lease)
        fx += [self._renew_timer(now), self._deadline_timer()]
        if self.need:
            return fx + self._ask(now, new=True)
        return fx + self._run_stage(now)

    def _on_deny(self, m: AccessDeny, now: float) -> list[Effect]:
        if (m.server != self.address or m.boot != self.boot or self.state not in (S.RUNNING, S.PENDING, S.PARKING)
                or not self._asking_for(m.resource, m.seq) or m.stamp < self.since):
            return self._ignored(m, "stale denial")
        self._route_ok(m.resource)
        self.asking = False
        self.wait = m.wait
        self.ping_every = m.ping_every
        fx: list[Effect] = [CancelTimer("ask")]
        directive = m.directive
        if directive is Directive.DORMANT and self.leases:
            directive = Directive.PARKING
            fx.append(Emit("server.directive_downgraded", {"resource": m.resource, "to": "parking",
                                                           "held": sorted(self.leases)}))
        target = _DIRECTED[directive]
        if target is S.DORMANT:
            self.alarm_at = now + max(self.alarm_min, self.alarm_factor * m.wait)
            fx.append(Send(self.routes[m.resource].target, self._ping_msg(now, m.resource, S.DORMANT)))
            fx += self._become(S.DORMANT, now, "denied", resource=m.resource, wait=m.wait, position=m.position)
            return fx + [SetTimer("alarm", self.alarm_at)]
        if target is not self.state:
            fx += self._become(target, now, "denied", resource=m.resource, wait=m.wait, position=m.position)
        if directive is not m.directive:
            # told dormant (no ping interval) but parking: say so - the controller then treats us as a parked
            # waiter (pushes the grant) - and ping, on an interval of our own
            self.ping_every = max(1.0, min(self.recheck_min, m.wait / 4))
            fx.append(Send(self.routes[m.resource].target, self._ping_msg(now, m.resource, target)))
        if self.ping_every > 0:
            fx.append(SetTimer("ping", now + self.ping_every))
        return fx + [SetTimer("recheck", now + max(self.recheck_min, self.recheck_factor * m.wait))]

    def _on_wake(self, m: Wake, now: float) -> list[Effect]:
        if m.server != self.address or m.boot != self.boot or not self._asking_for(m.resource, m.seq):
            return self._ignored(m, "stale wake")
        if self.state is S.DORMANT:
            fx = [CancelTimer("alarm")] + self._become(S.PENDING, now, "woken", resource=m.resource)
            return fx + self._resume(now)
        if self.state in _WAITING and not self.asking and not self.resuming:
            return self._ask(now, new=False)  # a slot is reserved for us: ask now
        return []  # already asking or booting: the request is on its way

    # -- council redirects (issue 21; protocols.workflow.council) --------------------------------

    def _on_redirect(self, m: Redirect, now: float) -> list[Effect]:
        r = m.resource
        if m.server != self.address or m.boot != self.boot or not self._asking_for(r, m.seq) or r not in self.home:
            return self._ignored(m, "stale redirect")
        if self.guest.get(r) == m.mitigation or self.returned.get(r) == m.mitigation:
            return []  # a repeat of one followed already (or come home from)
        if self.state not in (S.RUNNING, S.PENDING, S.PARKING, S.DORMANT):
            return self._ignored(m, "not waiting")
        self.guest[r] = m.mitigation
        self.routes[r] = _Route(m.controller, list(m.proxies), self.proxy_first)
        fx: list[Effect] = [CancelTimer("ping"), CancelTimer("recheck"), CancelTimer("ask"),
                            Emit("server.redirected", {"resource": r, "to": m.controller, "mitigation": m.mitigation,
                                                       "seq": m.seq, "state": self.state.value})]
        if self.state is S.DORMANT:  # a redirect is a wake-up with a new destination
            fx += [CancelTimer("alarm")] + self._become(S.PENDING, now, "redirected", resource=r)
            return fx + self._resume(now)
        if self.state is not S.RUNNING:
            fx += self._become(S.RUNNING, now, "redirected", resource=r)
        return fx + self._ask(now, new=False)

    def _on_redirect_refused(self, m: RedirectRefused, now: float) -> list[Effect]:
        r = m.resource
        if (m.server != self.address or m.boot != self.boot or not self._asking_for(r, m.seq)
                or self.guest.get(r) != m.mitigation):
            return self._ignored(m, "stale refusal")
        return self._go_home(r, now, f"refused: {m.reason}")

    def _go_home(self, r: str, now: float, why: str) -> list[Effect]:
        mid = self.guest.pop(r)
        self.returned[r] = mid
        self.routes[r] = self.home[r]
        self._route_ok(r)
        fx: list[Effect] = [CancelTimer("ping"), CancelTimer("recheck"), CancelTimer("ask"),
                            Emit("server.returned", {"resource": r, "mitigation": mid, "why": why})]
        if self.state in _WAITING:
            fx += self._become(S.RUNNING, now, "going home", resource=r)
        return fx + self._ask(now, new=False)

    def _resume(self, now: float) -> list[Effect]:
        if self.resume_delay > 0:
            self.resuming = True
            return [SetTimer("resume", now + self.resume_delay)]
        return self._ask(now, new=False)

    def _ping_msg(self, now: float, r: str, state: ServerState) -> StatusPing:
        spec = self.specs[self.stage]  # type: ignore[index]
        return StatusPing(self.address, r, self.boot, self.req_seq or 0, state.value, spec.name, self.priority,
                          spec.expected, self.wake, now, self.boot_time, mitigation=self.guest.get(r, ""))

    # -- leases ----------------------------------------------------------------------

    def _deadline(self) -> float:
        return min(holder_deadline(h.confirmed, h.ttl, self.lease_margin) for h in self.leases.values())

    def _deadline_timer(self) -> SetTimer:
        return SetTimer("deadline", self._deadline())

    def _renew_timer(self, now: float) -> SetTimer:
        """Next renewal: every ttl / renewals_per_ttl, but no later than halfway to the holder's deadline
        (a grant pushed to a waiting server is dated by the server's last ping, so it may be old)."""
        every = renew_interval(min(h.ttl for h in self.leases.values()), self.renewals_per_ttl)
        return SetTimer("renew", min(now + every, max(now + every / 4, (now + self._deadline()) / 2)))

    def _renew(self, now: float) -> list[Effect]:
        fx: list[Effect] = []
        for r, h in self.leases.items():
            route = self.routes[r]
            if h.unacked:
                route.failures += 1
                fx += self._maybe_reroute(r, now)
            h.unacked = True
            fx.append(Send(route.target, LeaseRenew(self.address, r, self.boot, h.lease, h.epoch, now)))
        return fx + [self._renew_timer(now)]

    def _on_renewed(self, m: LeaseRenewed, now: float) -> list[Effect]:
        h = self.leases.get(m.resource)
        if h is None or h.lease != m.lease or h.epoch != m.epoch or m.server != self.address:
            return []  # the answer to a renewal that crossed our release: expected, nothing to do
        self._route_ok(m.resource)
        h.unacked = False
        h.ttl = m.ttl
        if m.stamp > h.confirmed:
            h.confirmed = m.stamp
            return [self._deadline_timer(), self._renew_timer(now)]
        return []

    def _on_lost(self, m: LeaseLost, now: float) -> list[Effect]:
        h = self.leases.get(m.resource)
        if h is None or h.lease != m.lease or h.epoch != m.epoch or m.server != self.address:
            return self._ignored(m, "not a lease held")
        return self._lose(now, f"controller: {m.reason}", [m.resource])

    def _check_deadlines(self, now: float) -> list[Effect]:
        lost = [r for r, h in self.leases.items() if now >= holder_deadline(h.confirmed, h.ttl, self.lease_margin)]
        if lost:
            return self._lose(now, "deadline passed unconfirmed", lost)
        return [self._deadline_timer()] if self.leases else []

    def _lose(self, now: float, reason: str, lost: list[str]) -> list[Effect]:
        """A lease is gone: stop the stage, give back the other leases, start the stage again shortly."""
        self.lease_losses += 1
        fx: list[Effect] = [Emit("lease.lost", {"resources": sorted(lost), "leases": [self.leases[r].lease for r in lost],
                                                "stage": self.stage, "reason": reason})]
        if self.running:
            fx.append(AbortStage(self.stage or "", self.run))
            self.running = False
        fx += self._release_all(now, "aborted", now - self.stage_started)
        self.asking = False
        self.resuming = False
        self.need = []
        fx += [CancelTimer("ask"), CancelTimer("resume")]
        if self.state is not S.RUNNING:
            fx += self._become(S.RUNNING, now, "lease lost")
        return fx + [SetTimer("restage", now + self.restage_after * self.rng.uniform(0.8, 1.2))]

    def _release_all(self, now: float, outcome: str, duration: float) -> list[Effect]:
        fx: list[Effect] = []
        for r, h in sorted(self.leases.items()):
            rel = Release(self.address, r, self.boot, h.lease, h.epoch, self.stage or "", outcome, duration)
            fx.append(Send(self.routes[r].target, rel))
            # the controller drops the lease by itself a ttl after its last renewal: no use retrying after that
            fx += self._keep_releasing(rel, now + h.ttl, now, self.routes[r].target)
        self.leases.clear()
        return fx + [CancelTimer("renew"), CancelTimer("deadline")]

    # Releases are retransmitted until the controller acknowledges them, so a slot whose release was lost
    # (a partition, a dropped packet) comes back within ``release_retry`` of the link working again, not
    # when the lease's ttl runs out. Bounded: a server holds at most a few leases at a time, and an entry
    # is dropped once the controller must have expired the lease anyway.
    _MAX_RELEASING = 64

    def _keep_releasing(self, rel: Release, until: float, now: float, to: str) -> list[Effect]:
        arm = not self.releasing
        self.releasing[(rel.resource, rel.lease, rel.epoch)] = (rel, until, to)
        while len(self.releasing) > self._MAX_RELEASING:
            self.releasing.pop(next(iter(self.releasing)))
        return [SetTimer("release", now + self.release_retry)] if arm else []

    def _resend_releases(self, now: float) -> list[Effect]:
        fx: list[Effect] = []
        for key, (rel, until, to) in list(self.releasing.items()):
            if now >= until:
                del self.releasing[key]
                continue
            route = self.routes.get(rel.resource)
            # to the controller (or proxy) it was sent to; the route's current target if it is a proxy of the same
            fx.append(Send(route.target if route is not None and to in route.options else to, rel))
        if self.releasing:
            fx.append(SetTimer("release", now + self.release_retry))
        return fx

    def _on_release_ack(self, m: ReleaseAck, now: float) -> list[Effect]:
        if m.server != self.address or m.boot != self.boot:
            return self._ignored(m, "stale boot")
        self.releasing.pop((m.resource, m.lease, m.epoch), None)
        return []

    # -- timers ----------------------------------------------------------------------

    def _on_timer(self, m: TimerFired, now: float) -> list[Effect]:
        key = m.key
        st = self.state
        if key == "release":  # also once done or failed: the last stage's release matters most
            if st is S.DORMANT:  # powered off: nothing is sent; try again after the wake
                return [SetTimer("release", now + self.release_retry)] if self.releasing else []
            return self._resend_releases(now) if self.releasing else []
        if key == "hello":
            return self._hello(now) if st is S.INVALID else []
        if st is S.DORMANT:
            if key == "alarm":
                return self._become(S.PENDING, now, "alarm") + self._resume(now)
            return []  # powered off: nothing else runs
        if st in _TERMINAL:
            return []
        if key == "ask":
            return self._retry(now) if self.asking and self.need else []
        if key == "ping":
            if st in _WAITING and not self.asking and self.need and self.ping_every > 0:
                r = self.need[0]
                return [Send(self.routes[r].target, self._ping_msg(now, r, st)), SetTimer("ping", now + self.ping_every)]
            return []
        if key == "recheck":
            return self._ask(now, new=False) if st in _WAITING and not self.asking and self.need else []
        if key == "resume":
            return self._ask(now, new=False) if self.resuming and self.need else []
        if key == "renew":
            return self._renew(now) if self.leases else []
        if key == "deadline":
            return self._check_deadlines(now) if self.leases else []
        if key == "restage":
            if st is S.RUNNING and self.stage is not None and not self.running and not self.need:
                return self._start_stage(self.stage, now)
            return []
        return self._ignored(m, "unknown timer")

    def _ignored(self, m, why: str, **fields) -> list[Effect]:
        return [Emit("server.ignored", {"message": type(m).__name__, "state": self.state.value, "why": why, **fields})]
