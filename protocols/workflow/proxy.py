"""The proxy: takes servers' messages for resource controllers, forwards them in batches, hands answers back.

How this works
--------------
(Seed doc FIG. 2B.) A server that gets no answer from a resource controller
(or one configured proxy-first) sends its :class:`AccessRequest`,
:class:`StatusPing`, :class:`LeaseRenew` and :class:`Release` messages here
instead. The proxy gathers them per controller (the resource named in each
message picks the controller, from ``controllers``) and, ``flush_every``
seconds after the first one arrived, sends one :class:`ProxyBatch` that names
each server; so the controller sees one message where it would have seen
many. Within a batch, a newer ping or renewal from the same server (or for the
same lease) replaces an older one.

Requests are remembered until answered: the proxy forwards each one once and
re-forwards an unanswered one every ``resend_every`` seconds (less often than
servers retry); a server's own retries of a request the proxy is already
carrying are absorbed (``deduped``). Unanswered requests older than
``forget_after`` are dropped. A :class:`ProxyReply` from a controller is
unpacked at once: each answer goes to the server it names (a :class:`Wake` to
the wake address it names), and a grant or denial clears the request it
answers; so does a council's :class:`Redirect` (the server asks a peer's
controller now, through that peer's own proxies) or :class:`RedirectRefused`.

The proxy has no states of its own (it forwards); every batch emits
``proxy.batch``, every unexpected message ``proxy.ignored``.
"""

from __future__ import annotations

from protocols.core import Effect, Emit, Send, SetTimer, TimerFired
from protocols.workflow.messages import (
    AccessDeny,
    AccessGrant,
    AccessRequest,
    LeaseRenew,
    ProxyBatch,
    ProxyReply,
    Redirect,
    RedirectRefused,
    Release,
    StatusPing,
    Wake,
)

__all__ = ["Proxy"]

_KINDS = {AccessRequest: "requests", StatusPing: "pings", LeaseRenew: "renewals", Release: "releases"}


class _Carried:
    __slots__ = ("controller", "first", "last_sent", "msg")

    def __init__(self, msg: AccessRequest, controller: str, now: float) -> None:
        self.msg = msg
        self.controller = controller
        self.first = now
        self.last_sent: float | None = None  # None: waiting in the current batch


class Proxy:
    """A proxy for one or more resource controllers (sans-I/O)."""

    tick_interval = None

    def __init__(self, address: str, controllers: dict[str, str], *, flush_every: float = 1.0,
                 resend_every: float = 6.0, forget_after: float = 120.0) -> None:
        for name, v in (("flush_every", flush_every), ("resend_every", resend_every), ("forget_after", forget_after)):
            if not v > 0:
                raise ValueError(f"{name} must be > 0, got {v!r}")
        if not controllers:
            raise ValueError("a proxy needs at least one resource -> controller entry")
        self.address = address
        self.controllers = dict(controllers)
        self.flush_every = flush_every
        self.resend_every = resend_every
        self.forget_after = forget_after
        self.batch: dict[str, dict[tuple, object]] = {}
        self.carried: dict[tuple[str, str], _Carried] = {}
        self.flush_at: float | None = None
        self.resend_at: float | None = None
        self.seq = 0
        self.inbound = 0
        self.batches = 0
        self.deduped = 0
        self.resent = 0
        self.forgotten = 0
        self.answers = 0

    def tick(self, now: float) -> list[Effect]:
        return []

    def handle(self, msg, sender: str, now: float) -> list[Effect]:
        t = type(msg)
        if t in _KINDS:
            self.inbound += 1
            return self._take(msg, now)
        if t is ProxyReply:
            return self._deliver(msg, sender, now)
        if t is TimerFired:
            if msg.key == "flush":
                return self._flush(now)
            if msg.key == "resend":
                return self._resend(now)
        return self._ignored(msg, "unexpected message", sender=sender)

    # -- from servers -------------------------------------------------------------------

    def _take(self, m, now: float) -> list[Effect]:
        ctrl = self.controllers.get(m.resource)
        if ctrl is None:
            return self._ignored(m, f"no controller for resource {m.resource!r}", server=m.server)
        t = type(m)
        if t is AccessRequest:
            k = (m.server, m.resource)
            c = self.carried.get(k)
            if c is not None and c.msg.boot == m.boot and c.msg.seq == m.seq and (
                    c.last_sent is None or now - c.last_sent < self.resend_every):
                self.deduped += 1
                return []
            self.carried[k] = _Carried(m, ctrl, now)
            key: tuple = ("q", m.server, m.resource)
        elif t is StatusPing:
            key = ("p", m.server, m.resource)
        elif t is LeaseRenew:
            key = ("n", m.lease)
        else:
            key = ("r", m.lease)
        self.batch.setdefault(ctrl, {})[key] = m
        return self._schedule_flush(now)

    def _schedule_flush(self, now: float) -> list[Effect]:
        if self.flush_at is not None:
            return []
        self.flush_at = now + self.flush_every
        return [SetTimer("flush", self.flush_at)]

    def _flush(self, now: float) -> list[Effect]:
        self.flush_at = None
        fx: list[Effect] = []
        for ctrl, items in self.batch.items():
            if not items:
                continue
            self.seq += 1
            self.batches += 1
            counts = {v: 0 for v in _KINDS.values()}
            for m in items.values():
                counts[_KINDS[type(m)]] += 1
                if type(m) is AccessRequest:
                    c = self.carried.get((m.server, m.resource))
                    if c is not None and c.msg is m:
                        c.last_sent = now
            fx.append(Send(ctrl, ProxyBatch(self.address, self.seq, tuple(items.values()))))
            fx.append(Emit("proxy.batch", {"controller": ctrl, "seq": self.seq, "items": len(items), **counts}))
        self.batch = {}
        if self.carried and self.resend_at is None:
            self.resend_at = now + self.resend_every
            fx.append(SetTimer("resend", self.resend_at))
        return fx

    def _resend(self, now: float) -> list[Effect]:
        self.resend_at = None
        fx: list[Effect] = []
        for k, c in list(self.carried.items()):
            if now - c.first > self.forget_after:
                del self.carried[k]
                self.forgotten += 1
            elif c.last_sent is not None and now - c.last_sent >= self.resend_every:
                self.resent += 1
                c.last_sent = None
                self.batch.setdefault(c.controller, {})[("q", c.msg.server, c.msg.resource)] = c.msg
        if any(self.batch.values()):
            fx += self._schedule_flush(now)
        if self.carried:
            self.resend_at = now + self.resend_every
            fx.append(SetTimer("resend", self.resend_at))
        return fx

    # -- from controllers ---------------------------------------------------------------

    def _deliver(self, reply: ProxyReply, sender: str, now: float) -> list[Effect]:
        fx: list[Effect] = []
        for item in reply.items:
            self.answers += 1
            t = type(item)
            if t is AccessGrant or t is AccessDeny or t is Redirect or t is RedirectRefused:
                c = self.carried.get((item.server, item.resource))
                if c is not None and c.msg.boot == item.boot and c.msg.seq <= item.seq:
                    del self.carried[(item.server, item.resource)]
            to = (item.wake or item.server) if t is Wake else item.server
            fx.append(Send(to, item))
        return fx

    def _ignored(self, m, why: str, **fields) -> list[Effect]:
        return [Emit("proxy.ignored", {"message": type(m).__name__, "why": why, **fields})]
