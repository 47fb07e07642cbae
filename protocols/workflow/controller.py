"""The resource controller: admission against a limit of concurrent holders, with leases.

How this works
--------------
(Seed doc FIG. 4, routine 400, and FIGS. 2A-2C.) One controller guards one
resource (an image store, a driver repository). A server's
:class:`AccessRequest` joins the **waiting list**, ordered by priority (higher
first), then proxy batches before direct requests (``serve_proxies_first``;
FIG. 2B: "requests from the proxy control device may be prioritized"), then
arrival. Whenever a slot is free (``holders + reservations < limit``) the head
of the list is served:

* a pending or parking server is **granted**: an :class:`AccessGrant` carrying
  a **lease** (id, controller ``epoch``, ``ttl``). The holder renews it
  (:class:`LeaseRenew` -> :class:`LeaseRenewed`) while it works and sends
  :class:`Release` at the end of its stage; a lease not renewed for ``ttl``
  seconds **expires** and its slot comes back (a crashed server's slot).
* a dormant server is **woken**: the slot is *reserved* for it and a
  :class:`Wake` goes to its BMC (resent every ``wake_retry``); its next request
  is granted from the reservation. A reservation unused for ``wake_timeout``
  is dropped (``admission.wake_failed``); the server's own alarm brings it back
  later. Dormant servers whose turn is within ``wake_ahead`` seconds are woken
  early (without a reservation) so that they have booted when their slot frees.

A server that cannot be served now gets an :class:`AccessDeny` with a
**directive** by predicted wait (:func:`policy.predict_wait` from its
position, the busy slots, the limit and the history's mean stage duration;
:func:`policy.directive_for`): pending (ping every ``ping_pending``), parking
(ping every ``ping_parking``) or dormant (no pings; never for a wait within
``wake_ahead``, which would be a power cycle for nothing). Pending and parking
servers that fall silent for ``silent_after`` ping intervals leave the list
(``waiting.dropped``); dormant ones stay. A :class:`StatusPing` from a server
the controller does not know (it restarted, or dropped the server) re-enqueues
it and is answered like a request.

Staleness: the controller remembers each server's latest ``(boot, seq)``: an
older ``seq`` is ignored; a new ``boot`` ends whatever the old incarnation had
(its lease is released as ``superseded``); a request with a newer ``seq``
from a server still holding a lease for an older one releases that lease too
(the server only asks again after releasing). A repeated request for a seq
already granted gets the same grant again (the first was lost).

Durable state (``durable=``, from a host with a store; see "durable state" below): per server
the lease it holds and its place in the waiting list, and the limit in force, persisted before
the sends that depend on them. A controller built from such a record resumes ``active`` at once
with its holders, waiters and reservations (dormant servers are woken by the controller when
their turn comes, not by their alarms); the rules below apply to a start without a record
(a first start, or a blank or replaced disk).

Restart safety: a controller started with ``grace > 0`` (default: ``ttl``)
begins ``recovering``: it grants nothing for ``grace`` seconds, and adopts
leases of an earlier epoch that holders keep renewing (while the limit allows),
so a restarted controller never over-admits. ``grace=0`` starts ``active``
(only safe when no earlier incarnation can have holders). ``first_start=True``
is the *host's* word that no earlier incarnation of this controller ran (the
simulator knows it; a node process knows it from its record of starts in the
run directory): there is nothing to recover and it starts ``active``. Hosts
set it on every start, never from a topology file; the default (False) treats
a start nobody can vouch for as a restart.

Why ``grace = ttl``: a holder stops using a lease by its holder deadline,
less than ``ttl`` after the last renewal it saw confirmed
(:func:`policy.holder_deadline`), and no earlier incarnation confirms anything
after this one started; so ``ttl`` seconds after the start every lease of an
earlier incarnation has either been renewed here (adopted, counted against
the limit) or is no longer used. A shorter grace may grant next to holders
whose renewals were lost; a longer one only delays. Adoption needs the epoch
of each incarnation to be new: the host seeds the rng afresh on every start
(DESIGN.md, "Incarnations"), and a lease id (``epoch << 24 | counter``) is
never one of a live lease, adopted ones included.

Adaptive limit (``adaptive=True``): once per ``window`` the window's metrics
(release outcomes; :class:`ResourceReport` latency, bandwidth use, error rate, CPU)
go through :func:`policy.aimd_step` (AIMD: +1 when at the limit through the
window, i.e. in 80% of its ticks, with headroom; x0.9 when metrics sag); a
change emits ``limit.changed`` (old, new, reason).
A lowered limit stops grants until holders drop below it; it never revokes a
lease, so the invariant checked is: *no grant or reservation ever takes
holders + reservations above the limit in force*.

Provision (seed doc: "when it is expected that a server computing device will
request a certain computing resource, the resource control device may begin to
make that computing resource available"): the workflow controllers'
:class:`Provision` notices say how many servers are still to come
(``coming``). An adaptive controller told of a wave larger than its limit
raises the limit at once to the capacity its resource last measured
(``in_flight / bandwidth_used`` of a busy report, times the AIMD
``headroom_utilization``), instead of one a window, provided the latest report
shows the resource at its best (no errors, latency within
``headroom_latency_ratio`` of nominal) and it is not flagged under-delivering;
``limit.changed`` with reason ``provision``. Never above the measured
capacity, so AIMD still decides from there; a wave that has passed (the count
back within the limit) raises nothing. Raising the limit also widens the
wake-ahead horizon, so dormant servers are woken for the wave's slots.

History (:class:`policy.History`): every released stage's duration and
outcome, kept per stage; it feeds the wait prediction, and every
``underdelivery_window`` the completions seen are compared with those the
history predicts for the average number of holders
(:func:`policy.delivery_ratio`): below 0.5 the controller flags
``history.underdelivery``, at 0.8 or above ``history.recovered``.

Answers to servers that came through a proxy go back through that proxy,
gathered per proxy into one :class:`ProxyReply` per step.

Councils (issue 21; seed doc FIGS. 5-6, routine 600): with ``council=`` (and its own ``address``)
the controller is a member of the council of its resource type (:mod:`protocols.workflow.council`),
which reads its figures every tick, asks peers for headroom when the waiting list is beyond what
the limit serves within the council's threshold, and redirects waiting servers (from the tail of
the list) to peers that accepted. Servers a peer redirected here (``AccessRequest.mitigation``) are
admitted only under a mitigation in force here and within its accepted share, and wait behind this
group's own servers (rank 2 in the waiting list's key); they are holders like any other.

Events: ``controller.start``, ``controller.state``, ``admission.grant``,
``admission.deny``, ``admission.wake``, ``admission.wake_failed``,
``admission.notice``, ``waiting.dropped``, ``lease.released``,
``lease.expired``, ``lease.adopted``, ``lease.unknown``,
``lease.release_unknown``, ``limit.changed``, ``history.underdelivery``,
``history.recovered``, ``controller.ignored``.
"""

from __future__ import annotations

import bisect
import enum
import itertools
import math
import random
from collections import Counter, deque
from typing import Any

from protocols.core import Effect, Emit, Persist, Send, TimerFired
from protocols.workflow.council import COUNCIL_MESSAGES, Council
from protocols.workflow.messages import (
    AccessDeny,
    AccessGrant,
    AccessRequest,
    Directive,
    LeaseLost,
    LeaseRenew,
    LeaseRenewed,
    Provision,
    ProxyBatch,
    ProxyReply,
    Release,
    ReleaseAck,
    ResourceReport,
    StatusPing,
    Wake,
)
from protocols.workflow.policy import (
    AimdParams,
    History,
    Thresholds,
    WindowMetrics,
    aimd_step,
    check_transition,
    delivery_ratio,
    directive_for,
    lease_expires_at,
    predict_wait,
)

__all__ = ["CONTROLLER_TRANSITIONS", "ControllerState", "ResourceController"]


RECENT_REPORTS = 2  # headroom is judged on the window's last reports, not its mean (which lags a ramp)
MAX_WAKE_TIMEOUTS = 3  # a dormant waiter whose reservation ran out this many times is dropped (its alarm remains)
STALE_WAITER_TTLS = 0.5  # a waiter last heard more than this many ttls ago is woken, not pushed a grant


class ControllerState(enum.Enum):
    RECOVERING = "recovering"  # grace after a (re)start: adopt renewed leases, grant nothing
    ACTIVE = "active"


CONTROLLER_TRANSITIONS = {
    ControllerState.RECOVERING: frozenset({ControllerState.ACTIVE}),
    ControllerState.ACTIVE: frozenset(),
}

_MODES = {"pending": Directive.PENDING, "parking": Directive.PARKING, "dormant": Directive.DORMANT}


class _Waiter:
    __slots__ = (
        "arrived_at",
        "boot",
        "expected",
        "key",
        "last_seen",
        "mode",
        "priority",
        "reserved_at",
        "restored",
        "seq",
        "server",
        "stage",
        "stamp",
        "timeouts",
        "told_stamp",
        "asked_slept",
        "told_slept",
        "via",
        "wake",
        "wake_sent_at",
        "wakes",
        "woken_at",
    )

    def __init__(self, m: AccessRequest | StatusPing, via: str | None, mode: Directive, key: tuple, now: float) -> None:
        self.server = m.server
        self.boot = m.boot
        self.seq = m.seq
        self.stage = m.stage
        self.priority = m.priority
        self.expected = m.expected
        self.wake = m.wake or m.server
        self.via = via
        self.mode = mode
        self.key = key
        self.last_seen = now
        self.stamp = m.stamp
        self.told_stamp = -math.inf  # stamp of the message our last directive answered
        self.asked_slept = getattr(m, "slept", 0)  # the newest dormant spell its requests named
        self.told_slept = -1  # the spell of the request a dormant directive answered (-1: none, or unknown)
        self.woken_at: float | None = None
        self.wake_sent_at = -math.inf
        self.wakes = 0
        self.arrived_at = now
        self.reserved_at: float | None = None
        self.restored = False  # rebuilt from the durable record: its stamp is old until it is heard again
        self.timeouts = 0  # reservations of this waiter that ran out unused


class _Lease:
    __slots__ = ("boot", "epoch", "expected", "granted_at", "lease", "renewed_at", "seq", "server", "stage", "stamp",
                 "via")

    def __init__(self, lease: int, epoch: int, server: str, boot: int, seq: int, stage: str, via: str | None,
                 now: float, stamp: float) -> None:
        self.lease = lease
        self.epoch = epoch
        self.server = server
        self.boot = boot
        self.seq = seq
        self.stage = stage
        self.via = via
        self.granted_at = now
        self.renewed_at = now
        self.stamp = stamp
        self.expected = 0.0  # the holder's own estimate of its stage's duration (its request's ``expected``)


class ResourceController:
    """Admission control for one resource (sans-I/O)."""

    tick_interval = 1.0

    def __init__(
        self,
        resource: str,
        *,
        rng: random.Random,
        limit: int = 50,
        ttl: float = 30.0,
        grace: float | None = None,
        adaptive: bool = True,
        min_limit: int = 1,
        max_limit: int = 1_000_000,
        backoff: float = 0.9,
        increase: int = 1,
        pending_max: float = 20.0,
        parking_max: float = 120.0,
        ping_pending: float = 5.0,
        ping_parking: float = 20.0,
        silent_after: float = 3.0,
        wake_ahead: float = 10.0,
        wake_retry: float = 5.0,
        wake_timeout: float = 60.0,
        window: float = 5.0,
        expected: float = 30.0,
        serve_proxies_first: bool = True,
        history_size: int = 256,
        underdelivery_window: float = 30.0,
        first_start: bool = False,
        durable: dict | None = None,  # None: no durable store (nothing persisted); {}: a blank one
        address: str = "",  # this controller's own address (a council member names itself by it)
        council: dict | None = None,  # the council of its resource type (protocols.workflow.council), or None
    ) -> None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        for name, v in (("ttl", ttl), ("ping_pending", ping_pending), ("ping_parking", ping_parking),
                        ("silent_after", silent_after), ("wake_retry", wake_retry), ("wake_timeout", wake_timeout),
                        ("window", window), ("expected", expected), ("underdelivery_window", underdelivery_window)):
            if not v > 0:
                raise ValueError(f"{name} must be > 0, got {v!r}")
        if wake_ahead < 0:
            raise ValueError(f"wake_ahead must be >= 0, got {wake_ahead}")
        self.resource = resource
        self.rng = rng
        self.epoch = rng.getrandbits(31)
        self.limit = limit
        self.ttl = ttl
        self.grace = ttl if grace is None else grace
        self.adaptive = adaptive
        self.aimd = AimdParams(backoff=backoff, increase=increase, min_limit=min_limit, max_limit=max_limit)
        self.thresholds = Thresholds(pending_max, parking_max)
        self.ping_pending = ping_pending
        self.ping_parking = ping_parking
        self.silent_after = silent_after
        self.wake_ahead = wake_ahead
        self.wake_retry = wake_retry
        self.wake_timeout = wake_timeout
        self.window = window
        self.expected = expected
        self.serve_proxies_first = serve_proxies_first
        self.underdelivery_window = underdelivery_window

        self.first_start = bool(first_start)
        self.state = (ControllerState.RECOVERING if self.grace > 0 and not self.first_start
                      else ControllerState.ACTIVE)
        self.started_at: float | None = None
        self.recover_until = 0.0
        self.leases: dict[int, _Lease] = {}
        self.lease_of: dict[str, int] = {}  # server -> lease id
        self.waiting: dict[str, _Waiter] = {}
        self.queue: list[tuple] = []  # sorted keys of self.waiting
        self.by_key: dict[tuple, _Waiter] = {}
        self.reserved: dict[str, _Waiter] = {}
        self.known: dict[str, tuple[int, int]] = {}  # server -> (boot, seq)
        self.history = History(history_size)
        self.notices: dict[tuple[str, str], int] = {}  # (workflow, stage) -> servers still to come (Provision)
        self.measured_capacity: float | None = None  # the resource's capacity, from its last busy report
        self.last_report: ResourceReport | None = None
        self.underdelivering = False
        self.min_latency = math.inf  # lowest latency reported (the baseline when no nominal is reported)
        self.baseline_latency = 0.0  # the resource's nominal (unloaded) latency, if it reports one
        self.inbound = 0
        self.inbound_by: Counter[str] = Counter()
        self.granted = 0
        self._arrivals = itertools.count()
        self._lease_counter = 0
        self._out: list[tuple[str | None, str, Any]] = []
        self._dispatch_table = {
            AccessRequest: self._on_request,
            StatusPing: self._on_request,
            LeaseRenew: self._on_renew,
            Release: self._on_release,
        }
        # the adaptation window
        self._w_start = 0.0
        self._w_ok = 0
        self._w_failed = 0
        self._w_reports: list[ResourceReport] = []
        self._w_ticks = 0
        self._w_at_limit = 0  # ticks of the window spent at the limit with servers waiting
        # the under-delivery window
        self._ud_start = 0.0
        self._ud_completions = 0
        self._ud_holders = 0
        self._ud_samples = 0
        self._ud_history = 0  # history samples when the window began
        # durable state: servers whose record changed since the last Persist
        self.boot_times: deque[float] = deque(maxlen=64)  # measured: first Wake -> the woken server's request
        self.boot_hints: deque[float] = deque(maxlen=64)  # told: the servers' own boot times (boot_time)
        self._dirty: set[str] = set()
        self.persistent = durable is not None  # a host with a store passes its record ({} on a blank disk)
        self.restored = self._restore(durable) if durable else None
        if self.restored is not None:
            self.state = ControllerState.ACTIVE  # the record holds every lease granted: nothing to wait for
        # issue 21: routine 600 (redirect load to the council's peers), with its own durable records (c/...)
        self.council = Council(self, council, address=address, durable=durable) if council else None

    # -- figures -------------------------------------------------------------------------

    @property
    def holders(self) -> int:
        return len(self.leases)

    @property
    def boot_estimate(self) -> float | None:
        """The longest boot measured recently (Wake to request); before any, the longest the servers told."""
        if self.boot_times:
            return max(self.boot_times)
        return max(self.boot_hints) if self.boot_hints else None

    @property
    def wake_timeout_now(self) -> float:
        """``wake_timeout``, or twice the longest measured boot if that is longer."""
        est = self.boot_estimate
        return self.wake_timeout if est is None else max(self.wake_timeout, 2.0 * est)

    @property
    def wake_ahead_now(self) -> float:
        """``wake_ahead``, or the longest measured boot if that is longer (woken early enough to be up in time);
        0 when ``wake_ahead`` is 0 (waking ahead turned off)."""
        est = self.boot_estimate
        return self.wake_ahead if est is None or self.wake_ahead == 0 else max(self.wake_ahead, est)

    @property
    def busy(self) -> int:
        return len(self.leases) + len(self.reserved)

    # -- the contract ----------------------------------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        fx: list[Effect] = []
        if self.started_at is None:
            self.started_at = now
            self.recover_until = now + self.grace
            self._w_start = self._ud_start = now
            fx.append(Emit("controller.start", {"resource": self.resource, "limit": self.limit, "ttl": self.ttl,
                                                "epoch": self.epoch, "state": self.state.value,
                                                "grace": self.grace, "first_start": self.first_start,
                                                "restored": self.restored}))
            for lease in self.leases.values():  # a restored lease lives a ttl from this start unless renewed
                lease.granted_at = lease.renewed_at = now
            for w in list(self.waiting.values()) + list(self.reserved.values()):
                w.last_seen = w.arrived_at = now
                if w.server in self.reserved:
                    w.reserved_at = now
            fx += self._persist_meta()
        if self.state is ControllerState.RECOVERING and now >= self.recover_until:
            fx += self._become(ControllerState.ACTIVE, now, "grace over")
        for lease in [x for x in self.leases.values() if now > lease_expires_at(x.renewed_at, self.ttl)]:
            fx += self._end_lease(lease, now, "lease.expired", "not renewed")
        timeout = self.wake_timeout_now
        for w in list(self.reserved.values()):
            if now - (w.reserved_at or now) >= timeout:
                del self.reserved[w.server]
                self._dirty.add(w.server)
                w.timeouts += 1
                requeued = w.timeouts < MAX_WAKE_TIMEOUTS
                if requeued:  # it may still be booting: back at the head of its priority, woken again next
                    w.key = (w.key[0], -1, w.key[2])
                    w.woken_at = None
                    w.reserved_at = None
                    self.waiting[w.server] = w
                    self.by_key[w.key] = w
                    bisect.insort(self.queue, w.key)
                fx.append(Emit("admission.wake_failed", {"server": w.server, "wakes": w.wakes, "timeout": timeout,
                                                         "requeued": requeued, "holders": self.holders,
                                                         "reserved": len(self.reserved), "limit": self.limit}))
            elif now - w.wake_sent_at >= self.wake_retry:
                self._send_wake(w, now)
        self._ud_holders += len(self.leases)
        self._ud_samples += 1
        self._w_ticks += 1
        if self.queue and self.busy >= self.limit:
            self._w_at_limit += 1
        if now - self._w_start >= self.window:
            if self.persistent:
                fx.append(Persist("history", self.history.snapshot()))  # not safety: a window's lag is fine
            fx += self._drop_silent(now)
            if self.adaptive:
                fx += self._adapt(now)
            self._w_start = now
            self._w_ok = self._w_failed = 0
            self._w_reports = []
            self._w_ticks = self._w_at_limit = 0
        if now - self._ud_start >= self.underdelivery_window:
            fx += self._judge_delivery(now)
        fx += self._admit(now)
        if self.council is not None:
            fx += self.council.tick(now)
        return fx + self._flush()

    def handle(self, msg, sender: str, now: float) -> list[Effect]:
        t = type(msg)
        if t is TimerFired:
            return [Emit("controller.ignored", {"message": "TimerFired", "why": "no timers are set"})]
        self.inbound += 1
        self.inbound_by[t.__name__] += 1
        if t is ProxyBatch:
            fx: list[Effect] = []
            for item in msg.items:
                fx += self._dispatch(item, sender, now)
        elif t is ResourceReport:
            fx = self._on_report(msg, now)
        elif t is Provision:
            fx = self._on_provision(msg, now)
        elif t in COUNCIL_MESSAGES and self.council is not None:
            fx = self.council.handle(msg, sender, now)
        else:
            fx = self._dispatch(msg, None, now)
        fx += self._admit(now)
        return fx + self._flush()

    def _dispatch(self, m, via: str | None, now: float) -> list[Effect]:
        h = self._dispatch_table.get(type(m))
        if h is None:
            return self._ignored(m, "unexpected message", via=via)
        if m.resource != self.resource:
            return self._ignored(m, f"for resource {m.resource!r}", via=via)
        if self.council is not None and (type(m) is AccessRequest or type(m) is StatusPing):
            go_on, fx = self.council.screen(m, via, now)  # redirected servers: sent away, coming home, guests
            return fx + h(m, via, now) if go_on else fx
        return h(m, via, now)

    # -- the one place states change ----------------------------------------------------

    def _become(self, new: ControllerState, now: float, reason: str) -> list[Effect]:
        old = self.state
        check_transition(CONTROLLER_TRANSITIONS, old, new, "resource controller")
        self.state = new
        return [Emit("controller.state", {"resource": self.resource, "from": old.value, "to": new.value,
                                          "reason": reason, "holders": self.holders, "limit": self.limit})]

    # -- requests and pings ---------------------------------------------------------------

    def _on_request(self, m: AccessRequest | StatusPing, via: str | None, now: float) -> list[Effect]:
        asking = type(m) is AccessRequest
        fx: list[Effect] = []
        if m.boot_time > 0 and m.boot_time != (self.boot_hints[-1] if self.boot_hints else None):
            self.boot_hints.append(min(float(m.boot_time), 3600.0))
        known = self.known.get(m.server)
        if known is not None:
            if m.boot != known[0]:
                w = self.reserved.get(m.server) or self.waiting.get(m.server)
                if w is not None and w.woken_at is not None and m.server not in self.lease_of:
                    # Woken, it powered on as a new incarnation (a real power cycle): the machine is the same
                    # (its stable address), so it keeps its place and any slot reserved for it.
                    w.boot, w.seq, w.stage, w.stamp = m.boot, m.seq, m.stage, m.stamp
                    w.told_stamp = -math.inf  # a new incarnation's stamps are read on a new clock
                    w.told_slept, w.asked_slept = -1, getattr(m, "slept", 0)  # and it counts its spells anew
                    self._dirty.add(m.server)
                    fx.append(Emit("waiting.rebooted", {"server": m.server, "boot": m.boot,
                                                        "reserved": m.server in self.reserved}))
                else:
                    fx += self._forget(m.server, now, "new boot")
            elif m.seq < known[1]:
                return self._ignored(m, "stale seq", via=via, seq=m.seq, current=known[1])
        if self.known.get(m.server) != (m.boot, m.seq):
            self.known[m.server] = (m.boot, m.seq)
            self._dirty.add(m.server)
        lid = self.lease_of.get(m.server)
        if lid is not None:
            lease = self.leases[lid]
            if lease.seq == m.seq:  # the grant (or its answer) was lost: send it again
                lease.via = via
                lease.stamp = max(lease.stamp, m.stamp)
                self._send_grant(lease)
                return fx
            fx += self._end_lease(lease, now, "lease.released", "superseded")
        w = self.waiting.get(m.server) or self.reserved.get(m.server)
        if w is not None and (w.seq != m.seq or w.boot != m.boot):
            self._remove_waiter(w)
            fx.append(Emit("waiting.dropped", {"server": w.server, "reason": "superseded", "seq": w.seq}))
            w = None
        fresh = w is None
        if w is None:
            mode = Directive.PENDING if asking else _MODES.get(m.state, Directive.PENDING)  # type: ignore[union-attr]
            rank = 2 if m.mitigation else (0 if (via is not None and self.serve_proxies_first) else 1)  # guests last
            w = _Waiter(m, via, mode, (-m.priority, rank, next(self._arrivals)), now)
            self.waiting[w.server] = w
            self.by_key[w.key] = w
            bisect.insort(self.queue, w.key)
            self._dirty.add(w.server)
        elif asking and w.mode is Directive.DORMANT and (m.stamp <= w.told_stamp or m.slept <= w.told_slept):
            # A copy of the request the dormant directive answered (a proxy resends a request until it hears an
            # answer, to a restarted controller too; a late duplicate): the server is powered off. Tell it dormant
            # again, so that the proxy stops resending, and grant it nothing; what the woken server sends is newer.
            # A later attempt of that request, sent before the server obeyed (through another route), has a newer
            # stamp but the same dormant spell (AccessRequest.slept): a copy too.
            return fx + self._repeat_dormant(w, now, m.stamp)
        else:
            if asking and w.mode is Directive.DORMANT and w.woken_at is not None:
                self.boot_times.append(now - w.woken_at)  # woken -> asking: how long this kind of server boots
            w.restored = False
            w.last_seen = now
            w.via = via
            w.stamp = max(w.stamp, m.stamp)
            mode = w.mode
            if asking:
                w.asked_slept = max(w.asked_slept, m.slept)
                if w.mode is Directive.DORMANT:
                    w.mode = Directive.PENDING  # it is awake: it asked
            elif m.stamp >= w.told_stamp:
                w.mode = _MODES.get(m.state, w.mode)  # type: ignore[union-attr]
            if w.mode is not mode:
                self._dirty.add(w.server)
        if w.server in self.reserved:
            if w.mode is not Directive.DORMANT:
                del self.reserved[w.server]
                self._dirty.add(w.server)
                return fx + self._grant(w, now, reserved=True)
            return fx
        fx += self._admit(now)
        if (asking or (fresh and w.mode is not Directive.DORMANT)) and w.server in self.waiting:
            fx += self._deny(w, now, m.stamp)
        return fx

    def _deny(self, w: _Waiter, now: float, stamp: float) -> list[Effect]:
        position = bisect.bisect_left(self.queue, w.key)
        wait = predict_wait(position, self.limit, self.busy, self._mean())
        if self.state is ControllerState.RECOVERING:
            wait += max(0.0, self.recover_until - now)
        directive = directive_for(wait, self.thresholds)
        if directive is Directive.DORMANT and wait <= self.wake_ahead_now:
            directive = Directive.PARKING  # it would be woken at once: a power cycle for nothing
        ping = {Directive.PENDING: self.ping_pending, Directive.PARKING: self.ping_parking}.get(directive, 0.0)
        if w.mode is not directive:
            w.mode = directive
            self._dirty.add(w.server)
        if directive is Directive.DORMANT:
            w.woken_at = None  # back to sleep: the next wake starts a new boot (and a new measurement)
            w.told_slept = w.asked_slept
        w.told_stamp = stamp
        self._out.append((w.via, w.server, AccessDeny(w.server, self.resource, w.boot, w.seq, self.epoch, directive,
                                                      wait if math.isfinite(wait) else 1e9, position, ping, stamp)))
        return [Emit("admission.deny", {"server": w.server, "stage": w.stage, "directive": directive.value,
                                        "wait": wait if math.isfinite(wait) else None, "position": position,
                                        "holders": self.holders, "reserved": len(self.reserved),
                                        "limit": self.limit, "via": w.via})]

    def _repeat_dormant(self, w: _Waiter, now: float, stamp: float) -> list[Effect]:
        """Answer a copy of a request already told dormant: dormant again, nothing changed."""
        position = bisect.bisect_left(self.queue, w.key) if w.server in self.waiting else 0
        self._out.append((w.via, w.server, AccessDeny(w.server, self.resource, w.boot, w.seq, self.epoch,
                                                      Directive.DORMANT, 0.0, position, 0.0, stamp)))
        return [Emit("controller.ignored", {"message": "AccessRequest", "server": w.server, "via": w.via,
                                            "why": "a copy of a request already told dormant: told dormant again",
                                            "stamp": stamp, "told": w.told_stamp,
                                            "reserved": w.server in self.reserved})]

    def _remove_waiter(self, w: _Waiter) -> None:
        self._dirty.add(w.server)
        if self.waiting.get(w.server) is w:
            del self.waiting[w.server]
            del self.by_key[w.key]
            i = bisect.bisect_left(self.queue, w.key)
            del self.queue[i]
        if self.reserved.get(w.server) is w:
            del self.reserved[w.server]

    def _forget(self, server: str, now: float, reason: str) -> list[Effect]:
        fx: list[Effect] = []
        w = self.waiting.get(server) or self.reserved.get(server)
        if w is not None:
            self._remove_waiter(w)
            fx.append(Emit("waiting.dropped", {"server": server, "reason": reason}))
        lid = self.lease_of.get(server)
        if lid is not None:
            fx += self._end_lease(self.leases[lid], now, "lease.released", "superseded")
        return fx

    # -- admission ----------------------------------------------------------------------------

    def _mean(self) -> float:
        """How long a slot is held on average now: each holder's stage's own history (or, before its first
        sample, the holder's own estimate), averaged over the holders; with none, every stage's history."""
        if not self.leases:
            return self.history.mean(None, default=self.expected)
        total = 0.0
        for lease in self.leases.values():
            default = lease.expected if lease.expected > 0 else self.history.mean(None, default=self.expected)
            total += self.history.mean(lease.stage, default=default) if lease.stage else default
        return total / len(self.leases)

    def _admit(self, now: float) -> list[Effect]:
        if self.state is not ControllerState.ACTIVE or not self.queue:
            return []
        fx: list[Effect] = []
        queue = self.queue
        while queue and self.busy < self.limit:
            w = self.by_key.pop(queue.pop(0))
            del self.waiting[w.server]
            # A grant is dated by the waiter's last message (its own clock): one heard from longer ago than
            # half a ttl would arrive with little or none of its lease left, and be lost on arrival. Keep the
            # slot for it and wake it to ask afresh, as for a dormant one.
            if w.mode is Directive.DORMANT or w.restored or now - w.last_seen > self.ttl * STALE_WAITER_TTLS:
                self._dirty.add(w.server)
                self.reserved[w.server] = w
                w.reserved_at = now
                if now - w.wake_sent_at >= self.wake_retry:
                    self._send_wake(w, now)
                fx.append(Emit("admission.wake", {"server": w.server, "reason": "slot", "reserved": True,
                                                  "holders": self.holders, "busy": self.busy, "limit": self.limit}))
            else:
                fx += self._grant(w, now)
        ahead = self.wake_ahead_now
        if ahead > 0 and queue and self.limit > 0:
            free = max(0, self.limit - self.busy)
            horizon = min(len(queue), int(ahead * self.limit / max(self._mean(), 1e-9)) + free)
            for key in queue[:horizon]:
                w = self.by_key[key]
                if w.mode is Directive.DORMANT and w.woken_at is None:
                    self._send_wake(w, now)
                    fx.append(Emit("admission.wake", {"server": w.server, "reason": "ahead", "reserved": False,
                                                      "holders": self.holders, "busy": self.busy,
                                                      "limit": self.limit}))
        return fx

    def _grant(self, w: _Waiter, now: float, reserved: bool = False) -> list[Effect]:
        while True:  # never a live lease's id (an adopted one included)
            self._lease_counter = (self._lease_counter + 1) % (1 << 24)
            lid = (self.epoch << 24) | self._lease_counter
            if lid not in self.leases:
                break
        lease = _Lease(lid, self.epoch, w.server, w.boot, w.seq, w.stage, w.via, now, w.stamp)
        lease.expected = w.expected
        self.leases[lid] = lease
        self.lease_of[w.server] = lid
        self._dirty.add(w.server)
        self.granted += 1
        self._send_grant(lease)
        return [Emit("admission.grant", {"server": w.server, "lease": lid, "stage": w.stage,
                                         "holders": self.holders, "reserved": len(self.reserved),
                                         "limit": self.limit, "waited": now - w.arrived_at, "via": w.via,
                                         "from_reservation": reserved})]

    def _send_grant(self, lease: _Lease) -> None:
        self._out.append((lease.via, lease.server, AccessGrant(lease.server, self.resource, lease.boot, lease.seq,
                                                               lease.lease, lease.epoch, self.ttl, lease.stamp)))

    def _send_wake(self, w: _Waiter, now: float) -> None:
        if w.woken_at is None:
            w.woken_at = now
        w.wake_sent_at = now
        w.wakes += 1
        self._out.append((w.via, w.wake, Wake(w.server, self.resource, w.boot, w.seq, self.epoch, w.wake)))

    def _drop_silent(self, now: float) -> list[Effect]:
        fx: list[Effect] = []
        for w in list(self.waiting.values()):
            if w.mode is Directive.DORMANT:
                continue
            every = self.ping_pending if w.mode is Directive.PENDING else self.ping_parking
            if now - w.last_seen > self.silent_after * every + 1.0:
                self._remove_waiter(w)
                fx.append(Emit("waiting.dropped", {"server": w.server, "reason": "silent", "mode": w.mode.value,
                                                   "silent_for": now - w.last_seen}))
        return fx

    # -- leases ---------------------------------------------------------------------------------

    def _on_renew(self, m: LeaseRenew, via: str | None, now: float) -> list[Effect]:
        lease = self.leases.get(m.lease)
        if lease is not None and lease.server == m.server and lease.boot == m.boot:
            lease.renewed_at = now
            lease.via = via
            self._out.append((via, m.server, LeaseRenewed(m.server, self.resource, m.lease, lease.epoch, self.ttl,
                                                          m.stamp)))
            return []
        if (self.state is ControllerState.RECOVERING and m.epoch != self.epoch and m.server not in self.lease_of
                and m.lease not in self.leases and self.busy < self.limit):
            lease = _Lease(m.lease, m.epoch, m.server, m.boot, -1, "", via, now, m.stamp)
            self.leases[m.lease] = lease
            self.lease_of[m.server] = m.lease
            self._dirty.add(m.server)
            known = self.known.get(m.server)
            if known is None or known[0] != m.boot:
                self.known[m.server] = (m.boot, 0)
            self._out.append((via, m.server, LeaseRenewed(m.server, self.resource, m.lease, m.epoch, self.ttl,
                                                          m.stamp)))
            return [Emit("lease.adopted", {"server": m.server, "lease": m.lease, "epoch": m.epoch,
                                           "holders": self.holders, "reserved": len(self.reserved),
                                           "limit": self.limit})]
        reason = "expired" if m.epoch == self.epoch else "unknown epoch"
        self._out.append((via, m.server, LeaseLost(m.server, self.resource, m.lease, m.epoch, reason)))
        return [Emit("lease.unknown", {"server": m.server, "lease": m.lease, "reason": reason})]

    def _on_release(self, m: Release, via: str | None, now: float) -> list[Effect]:
        # Acknowledged whether or not the lease is still ours: the server retransmits until it hears this,
        # and a release we no longer know (ended, expired, a retransmission that crossed the ack) is done.
        self._out.append((via, m.server, ReleaseAck(m.server, self.resource, m.boot, m.lease, m.epoch)))
        lease = self.leases.get(m.lease)
        if lease is None or lease.server != m.server:
            return [Emit("lease.release_unknown", {"server": m.server, "lease": m.lease, "outcome": m.outcome})]
        if m.outcome in ("ok", "failed"):
            self.history.record(lease.stage or m.stage, m.duration, m.outcome)
            if m.outcome == "ok":
                self._w_ok += 1
                self._ud_completions += 1
            else:
                self._w_failed += 1
        return self._end_lease(lease, now, "lease.released", m.outcome, duration=m.duration)

    def _end_lease(self, lease: _Lease, now: float, kind: str, reason: str, **fields) -> list[Effect]:
        self._dirty.add(lease.server)
        del self.leases[lease.lease]
        if self.lease_of.get(lease.server) == lease.lease:
            del self.lease_of[lease.server]
        return [Emit(kind, {"server": lease.server, "lease": lease.lease, "stage": lease.stage, "reason": reason,
                            "held": now - lease.granted_at, "holders": self.holders, "limit": self.limit, **fields})]

    # -- metrics, adaptation, history --------------------------------------------------------------

    def _on_report(self, m: ResourceReport, now: float) -> list[Effect]:
        if m.resource != self.resource:
            return self._ignored(m, f"for resource {m.resource!r}")
        if m.nominal > 0:
            self.baseline_latency = m.nominal
        elif m.latency > 0:
            self.min_latency = min(self.min_latency, m.latency)
        self._w_reports.append(m)
        self.last_report = m
        if m.in_flight > 0 and m.bandwidth_used > 0:
            self.measured_capacity = m.in_flight / m.bandwidth_used
        return self._provision(now)

    def _on_provision(self, m: Provision, now: float) -> list[Effect]:
        if m.resource != self.resource:
            return self._ignored(m, f"for resource {m.resource!r}")
        if not isinstance(m.servers, int) or isinstance(m.servers, bool) or not 0 <= m.servers <= 10_000_000:
            return self._ignored(m, "bad servers count")
        if m.servers:
            self.notices[(m.workflow, m.stage)] = m.servers
        else:
            self.notices.pop((m.workflow, m.stage), None)
        fx = [Emit("admission.notice", {"resource": self.resource, "workflow": m.workflow, "stage": m.stage,
                                        "servers": m.servers, "expected": m.expected, "coming": self.coming})]
        return fx + self._provision(now)

    @property
    def coming(self) -> int:
        """Servers still to come to this resource, as the workflow controllers' notices last said."""
        return sum(self.notices.values())

    def _provision(self, now: float) -> list[Effect]:
        """Pre-provisioning ahead of a known wave (see "Provision" in the module docstring)."""
        cap, rep, p = self.measured_capacity, self.last_report, self.aimd
        if not self.adaptive or self.underdelivering or cap is None or rep is None or self.coming <= self.limit:
            return []
        base = self.baseline_latency or self.min_latency
        if (rep.error_rate > 0 or not (math.isfinite(base) and base > 0) or rep.latency / base > p.headroom_latency_ratio
                or rep.cpu > p.headroom_cpu):
            return []  # the resource is not at its best now: its capacity is no promise
        new = min(p.max_limit, math.floor(cap * p.headroom_utilization + 1e-9))
        if new <= self.limit:
            return []
        old, self.limit = self.limit, new
        return self._persist_meta() + [Emit("limit.changed", {
            "resource": self.resource, "old": old, "new": new, "reason": "provision", "holders": self.holders,
            "reserved": len(self.reserved), "coming": self.coming, "capacity": cap, "waiting": len(self.waiting)})]

    def window_metrics(self) -> WindowMetrics:
        """The metrics of the current adaptation window."""
        reps = self._w_reports
        latency_ratio = utilization = recent = capacity = cpu = None
        errors: list[float] = []
        if reps:
            base = self.baseline_latency or self.min_latency
            if math.isfinite(base) and base > 0:
                latency_ratio = sum(r.latency for r in reps) / len(reps) / base
            utilization = sum(r.bandwidth_used for r in reps) / len(reps)
            last = reps[-RECENT_REPORTS:]
            recent = max(r.bandwidth_used for r in last)
            caps = [r.in_flight / r.bandwidth_used for r in last if r.bandwidth_used > 0 and r.in_flight > 0]
            capacity = min(caps) if caps else None
            cpus = [r.cpu for r in reps if r.cpu >= 0][-RECENT_REPORTS:]  # the monitor's, when it measures CPU
            cpu = max(cpus) if cpus else None
            errors.append(sum(r.error_rate for r in reps) / len(reps))
        done = self._w_ok + self._w_failed
        if done >= 5:
            errors.append(self._w_failed / done)
        at_limit = self._w_ticks > 0 and self._w_at_limit >= 0.8 * self._w_ticks
        return WindowMetrics(max(errors) if errors else None, latency_ratio, utilization, at_limit,
                             settled=self.holders <= self.limit, recent_utilization=recent, capacity=capacity,
                             cpu=cpu)

    def _adapt(self, now: float) -> list[Effect]:
        m = self.window_metrics()
        new, reason = aimd_step(self.limit, m, self.aimd)
        if reason is None:
            return []
        old, self.limit = self.limit, new
        return self._persist_meta() + [Emit("limit.changed", {"resource": self.resource, "old": old, "new": new, "reason": reason,
                                       "holders": self.holders, "reserved": len(self.reserved),
                                       "error_rate": m.error_rate, "latency_ratio": m.latency_ratio,
                                       "utilization": m.utilization, "waiting": len(self.waiting)})]

    def _judge_delivery(self, now: float) -> list[Effect]:
        fx: list[Effect] = []
        window = now - self._ud_start
        avg = self._ud_holders / self._ud_samples if self._ud_samples else 0.0
        predicted = self.history.predicted(None, default=self.expected)
        judged = self._ud_history >= 20  # the history already knew the stages when the window began
        ratio = delivery_ratio(self._ud_completions, window, avg, predicted) if judged else None
        if ratio is not None:
            fields = {"resource": self.resource, "ratio": ratio, "completions": self._ud_completions,
                      "avg_holders": avg, "predicted_duration": predicted, "window": window}
            if not self.underdelivering and ratio < 0.5:
                self.underdelivering = True
                fx.append(Emit("history.underdelivery", fields))  # the operator's report
                if self.adaptive and self.holders <= self.limit:  # and one backoff step, as for any sag
                    old, new = self.limit, max(self.aimd.min_limit, math.floor(self.limit * self.aimd.backoff))
                    if new != old:
                        self.limit = new
                        fx += self._persist_meta()
                        fx.append(Emit("limit.changed", {"resource": self.resource, "old": old, "new": new,
                                                         "reason": "underdelivery", "holders": self.holders,
                                                         "reserved": len(self.reserved), "ratio": ratio,
                                                         "waiting": len(self.waiting)}))
            elif self.underdelivering and ratio >= 0.8:
                self.underdelivering = False
                fx.append(Emit("history.recovered", fields))
        self._ud_start = now
        self._ud_completions = self._ud_holders = self._ud_samples = 0
        self._ud_history = self.history.samples()
        return fx

    # -- output ---------------------------------------------------------------------------------

    def _flush(self) -> list[Effect]:
        fx: list[Effect] = self._persist_dirty()
        if not self._out:
            return fx
        batches: dict[str, list] = {}
        for via, to, msg in self._out:
            if via is None:
                fx.append(Send(to, msg))
            else:
                batches.setdefault(via, []).append(msg)
        for via, items in batches.items():
            fx.append(Send(via, ProxyReply(self.epoch, tuple(items))))
        self._out = []
        return fx

    # -- durable state ----------------------------------------------------------------------------
    #
    # What a restart must not forget (persisted before the sends that depend on it: a grant's Persist
    # precedes the AccessGrant, a dormant directive's precedes the AccessDeny): per server, the lease it
    # holds, its place in the waiting list (mode, wake address, priority, arrival order; reserved or not)
    # and its latest (boot, seq), under key ``s/<server>`` (None once it holds and awaits nothing, so the
    # record is bounded by the servers in play); the limit in force (``meta``). The history is written
    # once per window (it only feeds predictions). A controller built with a record resumes ``active`` at
    # once: every lease ever granted and not known to be released is in it, so the limit holds without a
    # grace period; restored leases live a ttl from the restart unless renewed, and restored waiters are
    # woken (slot kept) rather than pushed a grant dated by a stamp from before the restart.

    def _record(self, server: str) -> dict | None:
        lid = self.lease_of.get(server)
        lease = self.leases.get(lid) if lid is not None else None
        w = self.reserved.get(server) or self.waiting.get(server)
        if lease is None and w is None:
            return None
        rec: dict[str, Any] = {"known": list(self.known[server]) if server in self.known else None}
        if lease is not None:
            rec["lease"] = [lease.lease, lease.epoch, lease.boot, lease.seq, lease.stage, lease.stamp, lease.via]
        if w is not None:
            rec["wait"] = [w.boot, w.seq, w.stage, w.priority, w.expected, w.wake, w.via, w.mode.value, list(w.key),
                           w.stamp, server in self.reserved, w.told_slept]
        return rec

    def _persist_dirty(self) -> list[Effect]:
        if not self._dirty or not self.persistent:
            self._dirty.clear()
            return []
        fx: list[Effect] = [Persist(f"s/{server}", self._record(server)) for server in sorted(self._dirty)]
        self._dirty.clear()
        return fx

    def _persist_meta(self) -> list[Effect]:
        return [Persist("meta", {"resource": self.resource, "limit": self.limit})] if self.persistent else []

    def _restore(self, durable: dict) -> dict | None:
        """Rebuild holders, waiters, reservations and the limit from a record; None if it holds nothing."""
        meta = durable.get("meta")
        if not isinstance(meta, dict):
            return None  # no record of an earlier start (an empty or foreign disk): recover by grace
        if isinstance(meta.get("limit"), int) and meta["limit"] >= 0:
            self.limit = meta["limit"]
        if isinstance(durable.get("history"), dict):
            self.history.restore(durable["history"])
        arrivals = -1
        for key, rec in durable.items():
            if not key.startswith("s/") or not isinstance(rec, dict):
                continue
            server = key[2:]
            if isinstance(rec.get("known"), list):
                self.known[server] = (rec["known"][0], rec["known"][1])
            if rec.get("lease"):
                lid, epoch, boot, seq, stage, stamp, via = rec["lease"]
                self.leases[lid] = _Lease(lid, epoch, server, boot, seq, stage, via, 0.0, stamp)
                self.lease_of[server] = lid
            if rec.get("wait"):
                boot, seq, stage, priority, expected, wake, via, mode, key_, stamp, reserved, *more = rec["wait"]
                told_slept = int(more[0]) if more else -1  # a record from before the spell count: the stamp alone
                m = AccessRequest(server, self.resource, boot, seq, stage, priority, expected, wake, stamp,
                                  slept=max(0, told_slept))
                w = _Waiter(m, via, Directive(mode), tuple(key_), 0.0)
                w.restored = True
                if w.mode is Directive.DORMANT:  # told dormant in answer to a request no newer than this
                    w.told_stamp = stamp
                    w.told_slept = told_slept
                arrivals = max(arrivals, key_[2])
                if reserved:
                    self.reserved[server] = w
                else:
                    self.waiting[server] = w
                    self.by_key[w.key] = w
                    bisect.insort(self.queue, w.key)
        self._arrivals = itertools.count(arrivals + 1)
        return {"leases": len(self.leases), "waiting": len(self.waiting), "reserved": len(self.reserved),
                "dormant": sum(1 for w in self.waiting.values() if w.mode is Directive.DORMANT),
                "limit": self.limit}

    def _ignored(self, m, why: str, **fields) -> list[Effect]:
        return [Emit("controller.ignored", {"message": type(m).__name__, "why": why, "server": getattr(m, "server", None),
                                            **fields})]
