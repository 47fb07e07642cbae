"""The agent of one computing asset: reports its services and runs them (a pure state machine).

How this works
--------------
An :class:`Agent` runs on each asset (a server, a VM host). It knows the
services the asset runs (:class:`~protocols.deps.messages.ServiceInfo`: hard,
conditional and order dependencies, bootstrap mode, priority, start time) and
the asset's failure domain and region, and reports them with every service's
state in a :class:`Report` to the manager and to its peer agents at start and
every ``report_every`` seconds; each state change goes out at once as a
:class:`Status`. From its peers' messages it knows which services are up
anywhere.

It plays the asset's service supervisor (the part of systemd that holds a
start job until its dependencies are up):

* ``start`` (or ``start-bootstrap``, with ``skip``: dependencies not to wait
  for): the service is ``starting``; while a hard dependency not in ``skip``
  is not up (or in bootstrap) the service is ``waiting`` on it (the list goes
  out in the Status: the manager's wait-for graph); once none is missing the
  agent returns the host effect :class:`StartService` and the host answers
  ``ServiceUp`` (state ``up``, or ``bootstrap`` for a bootstrap start) or
  ``ServiceExited`` (``failed``).
* ``start_timeout`` > 0 (the naive, systemd-like mode): a start that is not up
  within it fails (``failed``, reason ``timeout``), and after ``retry_after``
  the agent starts it again, forever (``Restart=always``).
* ``restart`` / ``restart-bootstrap``: stop (:class:`StopService`) then start;
  ``stop``; ``reboot``: :class:`AssetEvent` ``rebooting`` to the manager,
  every service down, the host effect :class:`RebootAsset`; ``reimage``: the
  same with ``RebootAsset(reimage=True)`` (``reimaging``): the host boots the
  asset through the boot-workflow protocol (a ``protocols.workflow`` server
  asking the image resources' controllers for admission before each stage),
  and from then on messages that are not this protocol's (the workflow's
  answers, late ones included, and its timers ``host/...``) go to the host as
  :class:`HostMessage`; on ``AssetBooted``
  the services start again if ``autostart_after_reboot`` (enabled units), and
  any action that arrived during the reboot is carried out instead.
* an action whose ``ref`` equals the last one carried out for that service is
  a resend (the manager did not see its effect yet) and is ignored.
* ``autostart``: start every service when the agent starts (a naive cold start:
  everything at once); otherwise the agent waits for the manager's actions.
* reachability: each Report names the peer agents (addresses) this agent has
  not heard from for ``silent_after`` seconds (default 3 x ``report_every``;
  peers report every ``report_every``), counted from its start for a peer never
  heard: the manager's evidence for conditions such as "region r2 isolated".

Every start of the agent is a new incarnation (a random value from the injected
rng; receivers use it to drop an older incarnation's messages). Tables peers
can grow are bounded: the known states of at most ``MAX_KNOWN`` services, at
most ``MAX_HELD`` actions held during a reboot.
"""

from __future__ import annotations

import random
from typing import Any

import attrs

from protocols.core import Effect, Emit, Send, SetTimer, TimerFired
from protocols.deps.messages import (ACTIONS, Ack, Act, AssetBooted, AssetEvent, Report, ServiceExited, ServiceInfo,
                                     ServiceUp, Status)

__all__ = ["Agent", "HostMessage", "RebootAsset", "StartService", "StopService", "MAX_KNOWN"]

MAX_KNOWN = 100_000
MAX_HELD = 1_000  # actions kept while the asset reboots
UPISH = ("up", "bootstrap")


@attrs.frozen(slots=True)
class StartService(Effect):
    """Host effect: start ``service`` (``bootstrap``: in its degraded mode); answer ServiceUp/ServiceExited(token)."""

    service: str
    bootstrap: bool
    token: int
    start_time: float


@attrs.frozen(slots=True)
class StopService(Effect):
    service: str
    token: int


@attrs.frozen(slots=True)
class RebootAsset(Effect):
    """Host effect: reboot the asset (``reimage``: through its boot workflow); answer AssetBooted(token)."""

    token: int
    reimage: bool = False


@attrs.frozen(slots=True)
class HostMessage(Effect):
    """Host effect: a message for the host's own protocol (a re-imaging's boot workflow), from ``sender``."""

    msg: Any
    sender: str


@attrs.define
class _Svc:
    info: ServiceInfo
    state: str = "down"
    token: int = 0
    bootstrap: bool = False
    skip: tuple[str, ...] = ()
    waiting_on: tuple[str, ...] = ()
    launched: bool = False
    last_ref: str = ""  # the ref of the last action carried out (a resend of it is ignored)


def _service_info(spec: Any) -> ServiceInfo:
    if isinstance(spec, ServiceInfo):
        return spec
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ValueError(f"a service must be a table with a name, got {spec!r}")
    extra = set(spec) - {f.name for f in attrs.fields(ServiceInfo)}
    if extra:
        raise ValueError(f"service {spec['name']!r}: unknown keys {sorted(extra)}")
    kw = dict(spec)
    if "start_time" in kw:
        kw["start_time"] = float(kw["start_time"])
    return ServiceInfo(**kw)


class Agent:
    """One asset's agent (see the module docstring)."""

    tick_interval: float | None = None

    def __init__(self, asset: str, services: list, manager: str = "", peers: list[str] | None = None,
                 failure_domain: str = "", region: str = "", autostart: bool = False,
                 autostart_after_reboot: bool = True, start_timeout: float = 0.0, retry_after: float = 1.0,
                 report_every: float = 1.0, silent_after: float = 0.0, address: str = "",
                 rng: random.Random | None = None):
        if start_timeout < 0 or retry_after <= 0 or report_every <= 0 or silent_after < 0:
            raise ValueError("start_timeout, silent_after must be >= 0, retry_after and report_every > 0")
        self.asset = asset
        self.address = address
        self.manager = manager
        self.peers = [p for p in (peers or []) if p != address]
        self.failure_domain, self.region = failure_domain, region
        self.autostart, self.autostart_after_reboot = autostart, autostart_after_reboot
        self.start_timeout, self.retry_after, self.report_every = start_timeout, retry_after, report_every
        self.silent_after = silent_after or 3 * report_every
        self.heard: dict[str, float] = {}  # peer address -> when a fresh message of it last arrived
        self.started_at = 0.0
        rng = rng if rng is not None else random.Random(0)
        self.incarnation = rng.getrandbits(48)
        self.svcs: dict[str, _Svc] = {}
        for spec in services:
            info = _service_info(spec)
            if info.name in self.svcs:
                raise ValueError(f"service {info.name!r} listed twice on {asset}")
            self.svcs[info.name] = _Svc(info)
        self.seq = 0
        self.known: dict[str, str] = {}  # service -> state, from every agent (this one included)
        self.seen: dict[str, tuple[int, int]] = {}  # asset -> (incarnation, seq) newest applied
        self.old_incarnations: dict[str, set[int]] = {}
        self.rebooting = 0  # the reboot token while the asset reboots
        self.held: list[Act] = []  # actions that arrived during a reboot
        self.started = False
        self.reimaged = False  # a re-imaging ran: other protocols' messages are its boot workflow's, for the host
        self.rejected = 0

    # -- helpers ------------------------------------------------------------------
    def _targets(self) -> list[str]:
        return ([self.manager] if self.manager else []) + self.peers

    def _status(self, s: _Svc, now: float, reason: str = "") -> list[Effect]:
        self.seq += 1
        before = self.known.get(s.info.name)
        self.known[s.info.name] = s.state
        fields = {"asset": self.asset, "service": s.info.name, "state": s.state, "waiting_on": list(s.waiting_on),
                  "token": s.token}
        if s.state in ("starting",) or s.state in UPISH:
            fields["mode"] = "bootstrap" if s.bootstrap else "full"
        if s.skip and s.state != "down":
            fields["skip"] = list(s.skip)
        if reason:
            fields["reason"] = reason
        msg = Status(self.asset, self.incarnation, self.seq, s.info.name, s.state, list(s.waiting_on))
        out: list[Effect] = [Emit("deps.service", fields)] + [Send(t, msg) for t in self._targets()]
        if (before in UPISH) != (s.state in UPISH):  # local dependents may go on (or must wait)
            for other in self.svcs.values():
                if s.info.name in other.info.hard:
                    out += self._advance(other, now)
        return out

    def report(self, now: float | None = None) -> Report:
        self.seq += 1
        silent = [] if now is None else \
            [p for p in self.peers if now - self.heard.get(p, self.started_at) >= self.silent_after]
        return Report(self.asset, self.incarnation, self.seq, self.failure_domain, self.region,
                      [s.info for s in self.svcs.values()], {n: s.state for n, s in self.svcs.items()},
                      {n: list(s.waiting_on) for n, s in self.svcs.items() if s.waiting_on}, silent)

    def _send_report(self, now: float | None = None) -> list[Effect]:
        r = self.report(now)
        return [Send(t, r) for t in self._targets()]

    def _up(self, dep: str) -> bool:
        return self.known.get(dep) in UPISH

    # -- service lifecycle ----------------------------------------------------------
    def _start(self, s: _Svc, now: float, bootstrap: bool, skip: tuple[str, ...]) -> list[Effect]:
        s.token += 1
        s.state, s.bootstrap, s.skip, s.launched, s.waiting_on = "starting", bootstrap, skip, False, ()
        out = self._status(s, now)
        if self.start_timeout > 0:
            out.append(SetTimer(f"timeout:{s.info.name}:{s.token}", now + self.start_timeout))
        return out + self._advance(s, now)

    def _advance(self, s: _Svc, now: float) -> list[Effect]:
        """Launch a starting/waiting service whose dependencies are up; otherwise say what it waits on."""
        if s.state not in ("starting", "waiting") or s.launched:
            return []
        missing = tuple(d for d in s.info.hard if d not in s.skip and not self._up(d))
        if missing:
            if s.state != "waiting" or missing != s.waiting_on:
                s.state, s.waiting_on = "waiting", missing
                return self._status(s, now)
            return []
        s.launched = True
        out: list[Effect] = []
        if s.state == "waiting":
            s.state, s.waiting_on = "starting", ()
            out += self._status(s, now)
        out.append(Emit("deps.launch", {"asset": self.asset, "service": s.info.name, "token": s.token,
                                        "mode": "bootstrap" if s.bootstrap else "full", "skip": list(s.skip),
                                        "hard": list(s.info.hard)}))
        return out + [StartService(s.info.name, s.bootstrap, s.token, s.info.start_time)]

    def _stop(self, s: _Svc, now: float, state: str = "down", reason: str = "") -> list[Effect]:
        was_launched = s.launched or s.state in UPISH
        s.token += 1
        s.state, s.launched, s.waiting_on, s.skip = state, False, (), ()
        out = self._status(s, now, reason)
        if was_launched:
            out.append(StopService(s.info.name, s.token))
        return out

    def _act(self, a: Act, now: float) -> list[Effect]:
        if a.action not in ACTIONS:
            self.rejected += 1
            return [Emit("deps.bad_input", {"what": f"unknown action {a.action!r}"})]
        if self.rebooting:
            if len(self.held) >= MAX_HELD:
                self.rejected += 1
                return [Emit("deps.bad_input", {"what": f"more than {MAX_HELD} actions held during a reboot"})]
            self.held.append(a)
            return [Emit("deps.act_held", {"action": a.action, "service": a.service, "ref": a.ref})]
        if a.action in ("reboot", "reimage"):
            return self._reboot(now, a.ref, a.action == "reimage")
        s = self.svcs.get(a.service)
        if s is None:
            self.rejected += 1
            return [Emit("deps.bad_input", {"what": f"no service {a.service!r} on {self.asset}"})]
        if a.ref and a.ref == s.last_ref:  # a resent action this agent already carried out
            return [Emit("deps.act_duplicate", {"action": a.action, "service": a.service, "ref": a.ref})]
        s.last_ref = a.ref
        out: list[Effect] = [Emit("deps.act", {"action": a.action, "service": a.service, "skip": list(a.skip),
                                                "ref": a.ref, "state": s.state})]
        if a.action == "stop":
            return out + self._stop(s, now)
        if a.action in ("start", "start-bootstrap"):
            boot = a.action == "start-bootstrap"
            if s.state in UPISH or (s.state in ("starting", "waiting") and s.bootstrap == boot):
                return out  # already on its way (a resent action)
            if s.state in ("starting", "waiting"):
                out += self._stop(s, now)
            return out + self._start(s, now, boot, tuple(a.skip))
        # restart / restart-bootstrap
        boot = a.action == "restart-bootstrap"
        if s.state != "down":
            out += self._stop(s, now)
        return out + self._start(s, now, boot, tuple(a.skip))

    def _reboot(self, now: float, ref: str = "", reimage: bool = False) -> list[Effect]:
        out: list[Effect] = [Emit("deps.reboot", {"asset": self.asset, "ref": ref, "reimage": reimage})]
        out += [Send(self.manager, AssetEvent(self.asset, "reimaging" if reimage else "rebooting"))] \
            if self.manager else []
        for s in self.svcs.values():
            if s.state != "down":
                out += self._stop(s, now, reason="reboot")
        self.rebooting = max((s.token for s in self.svcs.values()), default=0) + self.seq + 1
        self.reimaged = self.reimaged or reimage
        return out + [RebootAsset(self.rebooting, reimage)]

    def _booted(self, now: float) -> list[Effect]:
        self.rebooting = 0
        out: list[Effect] = [Emit("deps.booted", {"asset": self.asset})]
        held, self.held = self.held, []
        acted = {a.service for a in held}
        if self.autostart_after_reboot:
            for s in self.svcs.values():
                if s.info.name not in acted:
                    out += self._start(s, now, False, ())
        for a in held:
            out += self._act(a, now)
        return out

    # -- entry points -------------------------------------------------------------------
    def tick(self, now: float) -> list[Effect]:
        if self.started:
            return []
        self.started = True
        self.started_at = now
        out: list[Effect] = [Emit("deps.agent_start", {"asset": self.asset, "incarnation": self.incarnation,
                                                       "services": sorted(self.svcs), "region": self.region,
                                                       "failure_domain": self.failure_domain})]
        for s in self.svcs.values():
            self.known[s.info.name] = "down"
            out += self._status(s, now)
        out += self._send_report(now)
        out.append(SetTimer("report", now + self.report_every))
        if self.autostart:
            for s in self.svcs.values():
                out += self._start(s, now, False, ())
        return out

    def _fresh(self, asset: str, inc: int, seq: int) -> bool:
        if asset == self.asset:
            return False
        old = self.old_incarnations.setdefault(asset, set())
        if inc in old:
            return False
        last = self.seen.get(asset)
        if last is not None and last[0] != inc:
            if len(old) < 64:
                old.add(last[0])
            last = None
        if last is not None and seq <= last[1]:
            return False
        if len(self.seen) >= MAX_KNOWN and asset not in self.seen:
            return False
        self.seen[asset] = (inc, seq)
        return True

    def _learn(self, service: str, state: str, now: float) -> list[Effect]:
        if service in self.svcs:
            return []
        if len(self.known) >= MAX_KNOWN and service not in self.known:
            return []
        before = self.known.get(service)
        self.known[service] = state
        if (before in UPISH) == (state in UPISH):
            return []
        out: list[Effect] = []
        for s in self.svcs.values():
            if service in s.info.hard:
                out += self._advance(s, now)
        return out

    def handle(self, msg: Any, sender: str, now: float) -> list[Effect]:
        c = type(msg)
        if c is Status:
            if not self._fresh(msg.asset, msg.incarnation, msg.seq):
                return []
            if sender in self.peers:
                self.heard[sender] = now
            return self._learn(msg.service, msg.state, now)
        if c is Report:
            if not self._fresh(msg.asset, msg.incarnation, msg.seq):
                return []
            if sender in self.peers:
                self.heard[sender] = now
            out: list[Effect] = []
            for name, state in msg.states.items():
                out += self._learn(name, state, now)
            return out
        if c is Act:
            out = self._act(msg, now)
            if msg.ack and sender:  # someone at the console (fleetplane deps act) waits for the answer
                bad = [e.fields["what"] for e in out if type(e) is Emit and e.kind == "deps.bad_input"]
                held = any(type(e) is Emit and e.kind == "deps.act_held" for e in out)
                s = self.svcs.get(msg.service)
                what = bad[0] if bad else (f"{msg.action} {msg.service or self.asset}: "
                                           + ("held until the asset has rebooted" if held else
                                              f"carried out, {msg.service} is {s.state}" if s else "carried out"))
                out.append(Send(sender, Ack(not bad, what)))
            return out
        if c is ServiceUp:
            s = self.svcs.get(msg.service)
            if s is None or msg.token != s.token or not s.launched or s.state in UPISH:
                return []
            s.state = "bootstrap" if s.bootstrap else "up"
            return self._status(s, now)
        if c is ServiceExited:
            s = self.svcs.get(msg.service)
            if s is None or msg.token != s.token:
                return []
            out = self._stop(s, now, "failed", msg.reason or "exited")
            return out + [SetTimer(f"retry:{s.info.name}:{s.token}", now + self.retry_after)] \
                if self.start_timeout > 0 else out
        if c is AssetBooted:
            if not self.rebooting or msg.token != self.rebooting:
                return []
            return self._booted(now)
        if c is TimerFired:
            if msg.key.startswith("host/"):
                return [HostMessage(msg, sender)] if self.reimaged else []
            return self._timer(msg.key, now)
        if self.reimaged and not c.__module__.startswith("protocols.deps"):
            return [HostMessage(msg, sender)]  # the re-imaging's boot workflow talking to its host
        self.rejected += 1
        return [Emit("deps.bad_input", {"what": f"unexpected {c.__name__} from {sender}"})]

    def _timer(self, key: str, now: float) -> list[Effect]:
        if key == "report":
            return self._send_report(now) + [SetTimer("report", now + self.report_every)]
        kind, _, rest = key.partition(":")
        name, _, token = rest.rpartition(":")
        s = self.svcs.get(name)
        if s is None or not token.isdigit() or int(token) != s.token:
            return []
        if kind == "timeout" and s.state in ("starting", "waiting"):
            waited = list(s.waiting_on)
            out = self._stop(s, now, "failed", "timeout" + (f" waiting on {', '.join(waited)}" if waited else ""))
            return out + [SetTimer(f"retry:{name}:{s.token}", now + self.retry_after)]
        if kind == "retry" and s.state == "failed":
            return self._start(s, now, False, ())
        return []
