"""ZeroMQ transport: one bound ROUTER per node, one DEALER per peer.

How this works
--------------
**Pattern.** Each node binds one ROUTER socket and connects one DEALER socket
to every peer's ROUTER. Traffic from A to B always travels A's DEALER -> B's
ROUTER, so every socket is used in one direction only: DEALERs only send,
ROUTERs only receive. We chose this over ROUTER-ROUTER because a ROUTER can
only address a peer after the connection handshake has finished (before that
``ROUTER_MANDATORY`` fails with EHOSTUNREACH, and without it messages vanish),
so every send would need a retry loop; a DEALER queues the message until the
connection is up (bounded by its HWM), reconnects on its own with capped
backoff (``RECONNECT_IVL`` 100 ms doubling to ``RECONNECT_IVL_MAX`` 2 s), and
round-robins nothing because it has exactly one peer. The ROUTER side never
needs to address anyone, so identities are zmq's own.

**No silent loss.** Outbound queues are bounded (``SNDHWM``, default 10,000
messages per peer) and sends never block: when the queue is full the send
fails with :class:`~transport.base.Undeliverable` and the Node turns that into
a counted, logged dead letter (an ``ask`` fails at once with
``DeadLetterError``). ``LINGER`` is finite (default 1 s) so shutdown never
hangs. Sends to a peer the failure detector holds *down* fail fast the same
way. What no transport can promise is delivery of messages already handed to
a peer that then dies: delivery is at most once, and the loss is made visible
by ``PeerDown`` (pending asks to that node fail with ``PeerDownError``).

**Frames.** DEALER -> ROUTER, the ROUTER adding the connection identity first:

* message:   ``[header, payload]`` with header = ``b"M"``, corr (8 bytes,
  big-endian), len(to) (2 bytes), to, sender (UTF-8) - two frames, so the
  payload is never copied into a bigger buffer (see :func:`message_frames`).
  An ask's reply address ``<node>/$ask/<corr>`` travels as ``<node>/$ask/``
  (the corr field says the rest), so ask traffic hits the address caches too.
* heartbeat: ``[b"H", node, incarnation (8 bytes), endpoint]``
* goodbye:   ``[b"B", node, incarnation (8 bytes)]`` - sent on clean shutdown, so
  peers report ``PeerDown(reason="left")`` at once instead of after the timeout
  (one from a node this side never heard a heartbeat from, e.g. one that only
  sent to it on demand, is just counted as ``goodbyes_untracked``; one with a
  zero incarnation is bad input; one from the node with another incarnation than
  the one heard here is a restarted node that leaves before its first heartbeat
  arrived: it leaves too, counted as ``goodbyes_new_incarnation``)

Anything else (wrong frame count, unknown kind, undecodable text, an address
over ``MAX_ADDRESS`` = 255 bytes, a payload over the size limit, an unknown tag,
a well-formed message for an actor that does not exist) is counted per peer and
dropped; the node keeps serving. ``transport.bad_frame`` events are rate-limited
(``bad_frame_events`` per problem per second, the rest counted and summed up in one
``transport.bad_frames_suppressed`` event), so a hostile peer cannot flood the log.
``MAXMSGSIZE`` (4x the frame limit) makes zmq
itself cut off a peer that sends a gigantic frame before it is ever buffered.
docs/wire.md is the full wire format, for clients in other languages.

**Never a deaf node.** Heartbeat endpoints are parsed (``tcp://host:port``, port
1-65535; never ``ipc://`` from the network) and a peer's DEALER is connected
before the peer is published. An unexpected exception on the I/O thread is
counted (``io_errors``), logged and a ``transport.error`` event, and the loop
goes on; if it cannot (100 in a row, or its socket is gone) it emits
``transport.died`` and the process exits 70 at once (or ``on_died`` runs).

**Bounds.** Peers learned from heartbeats are capped (``max_learned_peers``)
and evicted, socket and detector entry, after ``evict_after`` intervals down;
``learn_peers=False`` refuses names not configured; a set admits just those names
(``*`` globs allowed, e.g. ``"client-*"``). The zmq context's
``MAX_SOCKETS`` is sized for the caps. The inbound address cache is bounded in
entries and bytes.

**Liveness.** Every ``heartbeat_interval`` the I/O thread sends a heartbeat to
every known peer (carrying this node's name, incarnation and endpoint, so a
peer that did not know us connects back) and asks the
:class:`~transport.liveness.FailureDetector` who has been silent too long. Any
traffic counts as a sign of life: for a peer already UP a batch only notes
the time (the detector is told at the next heartbeat tick, before it judges
who is silent), so the I/O thread goes straight back to ``zmq_poll`` after a
delivery and releases the GIL that the woken actor or asker is waiting for; a
peer not yet UP is reported at once. Peer changes reach the Node through the
``peer_event`` callback (``PeerUp`` / ``PeerDown`` messages to subscribers).
When a peer goes down its DEALER is closed (queued messages discarded with
LINGER 0, so they never reach a later incarnation) and a fresh one connects.

**Threads.** One I/O thread per transport owns the ROUTER and runs the
heartbeat clock, delayed (fault-injected) messages and commands. Any thread
may call ``send``: a DEALER is guarded by its own lock, so a tell costs one
zmq send on the caller's thread and no thread hop. The I/O thread drains up to
1,000 inbound messages per wake-up and hands them to the Node as one batch
(liveness and counters are updated once per batch), so a busy actor is woken
once per batch rather than once per message. The I/O thread is also a small
event loop: ``call_soon`` / ``call_later`` run callbacks on it (the Node's
loop-dispatched actors live there, so a message they get from another node
is handled, and answered, without leaving this thread). Address frames are cached both
ways, so a steady flow between two actors encodes no addresses at all. On the
latency path the I/O thread calls ``zmq.zmq_poll`` and the Cython
``Socket.send`` directly (pyzmq's Python wrappers add nothing a ROUTER or
DEALER uses) and asks ``RCVMORE`` only where a frame count is in doubt.

**Identity** (docs/security.md). Every message's sender node, heartbeat and
goodbye must come from the connection that speaks for that node, else it is
dropped as ``bad_identity`` and keeps nothing alive. CURVE: the connection's
``User-Id``, which the ZAP handler sets to the node the client key belongs to
(read once per connection from the first frame's metadata). Plaintext: trust on
first use - the first connection to speak for a known node is bound to it while
it stays open (a ROUTER_MANDATORY send of one empty frame tells whether it
still is; ZMTP pings close vanished ones); a new connection for a node whose
bound one closed starts a new session (the old one is reported down, reason
"reconnected"); one connection speaks for one node.
A peer that re-makes its link may be heard on the new connection before the old
one's close is seen here, so a new connection's frames wait (held in order, no
sign of life) up to one heartbeat interval for the bound one to close; only if
it stays open are they bad_identity (see ``_admit``); the old connection's own
frames read after that (late frames of an ended session) are dropped, counted
as ``late_frames``.
A heartbeat never changes a configured node's endpoint.

**Security.** With :class:`CurveConfig` the ROUTER is a CURVE server that
accepts only the listed client public keys (``zmq.auth`` ThreadAuthenticator
with a credentials callback) and each DEALER authenticates the peer by its
public key. Without keys traffic is in the clear, logged once at WARNING
(once the endpoint is bound). A program that starts many nodes and says it
once itself (the fleetplane launcher and its node processes) lowers that to
INFO with :func:`set_insecure_log_level`: still in its log files, not on the
console once per node.

**Faults.** :class:`~transport.faults.FaultPlan` rules (drop, delay,
duplicate, reorder, partition) apply per peer to outbound and inbound
messages (heartbeats included, so a partition also looks like one to the
failure detector). The Node installs plans it receives as control messages.
"""

from __future__ import annotations

import contextlib
import fnmatch
import heapq
import itertools
import math
import os
import random
import re
import sys
import threading
import time
from collections import defaultdict, deque
from typing import Callable, Collection, Iterator

import attrs
import zmq

from transport.base import Envelope, Undeliverable
from transport.codec import DEFAULT_MAX_FRAME
from transport.faults import FaultPlan
from transport.liveness import FailureDetector, PeerChange, PeerState

__all__ = ["MAX_ADDRESS", "ChannelTransport", "CurveConfig", "LoopTimer", "ZmqTransport", "insecure_log_level", "parse_endpoint",
           "set_insecure_log_level"]

_insecure_level = "WARNING"  # the loguru level of "no CurveZMQ keys configured" (see set_insecure_log_level)


def set_insecure_log_level(level: str) -> str:
    """Set the loguru level at which a transport without keys says it runs in the clear; return the old one.

    "WARNING" by default: an embedder's node says it once, on the console. A program that starts many
    nodes and says it once itself - the fleetplane launcher, for its nodes and the chaos control node,
    and the node processes it starts - sets "INFO": the message stays in the log files.
    """
    global _insecure_level
    old, _insecure_level = _insecure_level, level
    return old


@contextlib.contextmanager
def insecure_log_level(level: str) -> Iterator[None]:
    """:func:`set_insecure_log_level` for a block, then the old level again (a command run in a host's process)."""
    old = set_insecure_log_level(level)
    try:
        yield
    finally:
        set_insecure_log_level(old)


_MSG = b"M"
_HB = b"H"
_BYE = b"B"
_WAKE = b"w"
_F_MORE = int(zmq.SNDMORE | zmq.NOBLOCK)  # plain ints: pyzmq's enum arithmetic is slow per call
_F_NB = int(zmq.NOBLOCK)
_RCVMORE = int(zmq.RCVMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
# The Cython send itself: pyzmq's Python-level Socket.send only adds routing-id and
# group handling (draft sockets), which a DEALER never uses.
_send = zmq.backend.Socket.send
_CACHE = 4096  # address pairs remembered per direction
_CACHE_BYTES = 1 << 20  # and at most about this many bytes of address text in the inbound cache
MAX_ADDRESS = 255  # bytes of UTF-8 in a ``to`` or ``sender`` address; longer is a bad header
_MAX_HEADER = 11 + 2 * MAX_ADDRESS
MAX_ENDPOINT = 255  # bytes of a heartbeat's endpoint
_IDENTS = 4096  # CURVE: connection identities whose authenticated node name is remembered
_FATAL_ERRORS = 100  # unexpected errors in a row on the I/O thread after which it gives up (transport.died)
# Plaintext: a new connection that speaks for a node whose bound connection is not seen closed yet
# waits (its frames held, in order) for that connection to close, for one heartbeat interval at most.
_HOLD_CONNS = 64  # connections waiting at a time
_HOLD_FRAMES = 10_000  # frames held per waiting connection
_HOLD_BYTES = 16 << 20  # bytes held in all
_PROBE_FIRST = 0.01  # seconds between the first two probes of a bound connection; doubles up to a heartbeat interval
BAD_FRAME_EVENTS = 20  # transport.bad_frame events per problem per second; the rest are counted and summed up
# tcp://host:port: a DNS name or IPv4 address, or an IPv6 address in brackets; no wildcard, no interface
_TCP_ENDPOINT = re.compile(r"tcp://([A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\]):([0-9]{1,5})")


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """``"tcp://host:port"`` -> (host, port); ValueError for anything a peer may not send us.

    What a heartbeat may name: TCP only (an ``ipc://`` path would make this node dial a local socket
    chosen by whoever sent the heartbeat), a plain host (letters, digits, '.', '-', or an IPv6 address
    in brackets) and a port in 1-65535, 255 bytes at most.
    """
    if not isinstance(endpoint, str) or len(endpoint) > MAX_ENDPOINT:
        raise ValueError(f"endpoint longer than {MAX_ENDPOINT} bytes")
    m = _TCP_ENDPOINT.fullmatch(endpoint)
    if m is None:
        raise ValueError(f"endpoint {endpoint!r:.80} is not tcp://HOST:PORT")
    port = int(m.group(2))
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} of endpoint {endpoint!r:.80} is not in 1-65535")
    return m.group(1), port
_ASK = "/$ask/"
_UP, _DOWN = PeerState.UP, PeerState.DOWN  # the runtime's per-ask reply addresses are "<node>/$ask/<corr>"


def message_frames(to: str, sender: str, corr: int, payload: bytes) -> list[bytes]:
    """The two frames a DEALER sends for one message (what a peer puts on the wire)."""
    tb = to.encode()
    return [_MSG + corr.to_bytes(8, "big") + len(tb).to_bytes(2, "big") + tb + sender.encode(), payload]


@attrs.frozen
class CurveConfig:
    """This node's CURVE key pair and the public keys it accepts (z85 bytes or str)."""

    public_key: bytes = attrs.field(converter=lambda k: k.encode() if isinstance(k, str) else k)
    secret_key: bytes = attrs.field(converter=lambda k: k.encode() if isinstance(k, str) else k)
    # node name -> public key of every peer this node may talk to (and accept)
    peer_keys: dict = attrs.field(factory=dict, converter=lambda d: {n: (k.encode() if isinstance(k, str) else k) for n, k in d.items()})

    @staticmethod
    def generate() -> tuple[bytes, bytes]:
        """A fresh (public, secret) key pair."""
        return zmq.curve_keypair()


class LoopTimer:
    """A callback scheduled on a transport's I/O thread (see ``ZmqTransport.call_later``)."""

    __slots__ = ("when", "fn", "args", "cancelled")

    def __init__(self, when: float, fn: Callable, args: tuple) -> None:
        self.when, self.fn, self.args, self.cancelled = when, fn, args, False

    def cancel(self) -> None:
        self.cancelled = True  # dropped when it comes due (a heap entry is not worth a lookup)


class _Held:
    """Frames of a new connection that claims node ``name`` while that node's bound connection is
    not seen closed yet: released when it is (a new session), refused once ``deadline`` passes."""

    __slots__ = ("name", "deadline", "items", "size")

    def __init__(self, name: str, deadline: float):
        self.name, self.deadline = name, deadline
        self.items: list[tuple] = []  # ("message", route, header, payload) | (what, frames)
        self.size = 0


class _Peer:
    __slots__ = ("name", "endpoint", "sock", "lock", "counts")

    def __init__(self, name: str, endpoint: str):
        self.name = name
        self.endpoint = endpoint
        self.sock: zmq.Socket | None = None
        self.lock = threading.Lock()
        self.counts: dict[str, int] = defaultdict(int)


class ZmqTransport:
    """See the module docstring. ``peers`` maps node names to endpoints (connected at start).

    ``directory`` maps more node names to endpoints that are connected only when a message is
    first sent to them (``[transport] connect = "on-demand"``): a large topology where each node
    talks to a few others then has no full mesh of sockets and heartbeats. A peer that connects
    to us is known from its heartbeat either way.

    Bounds and trust (see docs/security.md): ``learn_peers`` says whom a heartbeat may introduce -
    True: any node (plaintext) or any node with a key in ``curve.peer_keys``; False: nobody beyond
    ``peers``, ``directory`` and the key list (a topology run, where every node is listed); a
    collection of names: only those. At most ``max_learned_peers`` learned nodes are kept; a learned
    node that stays down for ``evict_after`` heartbeat intervals is forgotten (its socket closed).
    ``on_died`` runs if the I/O thread cannot go on (after the ``transport.died`` event); by default
    the process exits at once with status 70, so a supervisor never sees a deaf node as healthy.
    """

    def __init__(self, bind: str = "tcp://127.0.0.1:*", peers: dict[str, str] | None = None, *,
                 heartbeat_interval: float = 0.5, liveness: int = 4, sndhwm: int = 10_000,
                 rcvhwm: int = 10_000, linger: float = 1.0, max_frame: int = DEFAULT_MAX_FRAME,
                 curve: CurveConfig | None = None, seed: int | None = None,
                 reconnect_ivl: float = 0.1, reconnect_ivl_max: float = 2.0,
                 clock: Callable[[], float] = time.monotonic, directory: dict[str, str] | None = None,
                 learn_peers: bool | Collection[str] = True, max_learned_peers: int = 256,
                 evict_after: int = 20, on_died: Callable[[], None] | None = None,
                 bad_frame_events: int = BAD_FRAME_EVENTS):
        self.bind_to = bind
        self._initial_peers = dict(peers or {})
        # endpoints of nodes we connect to only when we first send to them (a large topology
        # where each node talks to a few others: no full mesh of sockets and heartbeats)
        self._directory = dict(directory or {})
        if max_learned_peers < 0 or evict_after < 1:
            raise ValueError("max_learned_peers must be >= 0 and evict_after >= 1")
        self.learn_peers = learn_peers if isinstance(learn_peers, bool) else frozenset(learn_peers)
        self.max_learned_peers = max_learned_peers
        self.evict_after = evict_after
        self._on_died = on_died
        # nodes whose endpoint comes from configuration: a heartbeat never changes it
        self._fixed: set[str] = set(self._initial_peers) | set(self._directory)
        self._key_names: dict[bytes, str] = {}  # CURVE: public key (z85) -> the node it belongs to
        if curve is not None:
            for name, key in curve.peer_keys.items():
                if self._key_names.setdefault(key, name) != name:
                    raise ValueError(f"CURVE: nodes {self._key_names[key]!r} and {name!r} share one public key")
        self._learned: set[str] = set()  # peers known only from their heartbeats (capped, evicted)
        self._down_since: dict[str, float] = {}  # learned peer -> when it went down
        # Who speaks for which node. CURVE: connection identity -> the node its key belongs to (a
        # cache, filled from each connection's User-Id). Plaintext: a binding made by a node's first
        # traffic (trust on first use), kept for the life of that connection.
        self._ident_name: dict[bytes, str] = {}
        self._name_ident: dict[str, bytes] = {}  # plaintext: node -> its bound connection
        self._alive_at: dict[bytes, float] = {}  # plaintext: bound connection -> last probed still open
        self._probe_gap: dict[bytes, float] = {}  # plaintext: bound connection -> seconds until it is probed again
        self._held: dict[bytes, _Held] = {}  # plaintext: new connection -> its frames waiting (see _admit)
        self._held_bytes = 0
        self._no_hold: bytes | None = None  # the connection whose held frames are being refused
        # plaintext: connections seen closed while bound -> the node they spoke for (their late frames)
        self._retired: dict[bytes, str] = {}
        if bad_frame_events < 1:
            raise ValueError("bad_frame_events must be >= 1")
        self.bad_frame_events = bad_frame_events
        self._bad_window: dict[str, list] = {}  # problem -> [window start, events, suppressed]
        self.detector = FailureDetector(heartbeat_interval, liveness)
        self.heartbeat_interval = heartbeat_interval
        self.sndhwm, self.rcvhwm = sndhwm, rcvhwm
        self.linger_ms = int(linger * 1000)
        self.max_frame = max_frame
        self.curve = curve
        self.reconnect_ivl_ms = int(reconnect_ivl * 1000)
        self.reconnect_ivl_max_ms = int(reconnect_ivl_max * 1000)
        self._clock = clock
        self.rng = random.Random(seed)
        self.incarnation = int.from_bytes(os.urandom(7), "big") or 1
        self.node: str | None = None
        self.endpoint: str | None = None
        self._deliver: Callable[[list[Envelope]], None] | None = None
        self._peer_event: Callable[[PeerChange], None] | None = None
        self._event: Callable[[str, dict], None] | None = None
        self._ctx: zmq.Context | None = None
        self._router: zmq.Socket | None = None
        self._wake_tx: zmq.Socket | None = None
        self._wake_lock = threading.Lock()
        self._peers: dict[str, _Peer] = {}
        self._peers_lock = threading.Lock()
        self._commands: deque[Callable[[], None]] = deque()
        self._delayed: list[tuple[float, int, str, object]] = []
        self._delayed_lock = threading.Lock()
        self._delay_seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._loop_ident: int | None = None
        self._ready: deque[tuple[Callable, tuple]] = deque()  # call_soon: run on the I/O thread
        self._timers: list[tuple[float, int, LoopTimer]] = []  # call_later: a heap, on the I/O thread
        self._timer_lock = threading.Lock()
        self._running = False
        self._closed = False
        self.faults = FaultPlan()
        self._counts: dict[str, int] = defaultdict(int)
        self._auth = None
        self._out_cache: dict[tuple[str, str], bytes] = {}  # (to, sender) -> header tail
        self._in_cache: dict[bytes, tuple[str, str, str]] = {}  # header tail -> (to, sender, peer)
        self._in_cache_bytes = 0
        self._quiet: dict[str, float] = {}  # UP peer -> last heard, applied at the next heartbeat tick

    # -- lifecycle -------------------------------------------------------------
    def start(self, node: str, deliver: Callable[[list[Envelope]], None],
              peer_event: Callable[[PeerChange], None] | None = None,
              event: Callable[[str, dict], None] | None = None) -> None:
        if self.node is not None:
            raise RuntimeError(f"transport already started for node {self.node!r}")
        self.node = node
        self._deliver = deliver
        self._peer_event = peer_event
        self._event = event
        ctx = self._ctx = zmq.Context()
        # one DEALER per configured and learned peer, two while one is replaced, plus the ROUTER,
        # the wake pair and the authenticator's sockets
        ctx.set(zmq.MAX_SOCKETS, max(1024, 2 * (len(self._fixed) + self.max_learned_peers) + 64))
        router = self._router = ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.RCVHWM, self.rcvhwm)
        router.setsockopt(zmq.MAXMSGSIZE, 4 * self.max_frame + 4096)
        if self.curve is None:
            # Plaintext identity is the connection (see _admit): a send to a connection that is gone
            # fails (EHOSTUNREACH), and ZMTP pings close connections whose far end vanished silently.
            router.setsockopt(zmq.ROUTER_MANDATORY, 1)
            router.setsockopt(zmq.HEARTBEAT_IVL, 1000)
            router.setsockopt(zmq.HEARTBEAT_TIMEOUT, max(10_000, int(4000 * self.detector.timeout)))
        if self.curve is not None:
            self._key_names.setdefault(self.curve.public_key, node)  # our own key: this node
            self._start_auth(ctx)
            router.curve_server = True
            router.curve_secretkey = self.curve.secret_key
            router.curve_publickey = self.curve.public_key
        else:
            self._emit("transport.insecure", {"detail": "no CurveZMQ keys given: traffic is not encrypted or authenticated"})
        try:
            router.bind(self.bind_to)
        except BaseException:  # e.g. the port is taken: leave nothing open (close() then has nothing to do)
            router.close(0)
            if self._auth is not None:
                self._auth.stop()
                self._auth = None
            ctx.term()
            self._ctx = None
            raise
        if self.curve is None:  # said once it is bound: a node that cannot bind never ran in the clear
            from loguru import logger
            logger.log(_insecure_level, "node {}: no CurveZMQ keys configured; transport runs in the clear", node)
        self.endpoint = router.getsockopt(zmq.LAST_ENDPOINT).decode()
        wake_rx = ctx.socket(zmq.PAIR)
        wake_addr = f"inproc://wake-{id(self)}"
        wake_rx.bind(wake_addr)
        self._wake_tx = ctx.socket(zmq.PAIR)
        self._wake_tx.setsockopt(zmq.LINGER, 0)
        self._wake_tx.connect(wake_addr)
        for name, ep in self._initial_peers.items():
            if name != node:
                self.add_peer(name, ep)
        self._running = True
        self._thread = threading.Thread(target=self._loop, args=(wake_rx,), name=f"zmq-{node}", daemon=True)
        self._thread.start()

    def _start_auth(self, ctx: zmq.Context) -> None:
        from zmq.auth.thread import ThreadAuthenticator
        from zmq.utils import z85
        names = dict(self._key_names)  # z85 key -> node name; the listed keys and our own
        transport = self

        class _Keys:
            def callback(self, domain, key):  # z85 public key; runs in the authenticator's thread
                ok = key in names
                if not ok:
                    transport._counts["auth_refused"] += 1
                    transport._emit("transport.auth_refused", {"key": key.decode(errors="replace")[:40]})
                return ok

        class _Authenticator(ThreadAuthenticator):
            def curve_user_id(self, client_public_key: bytes) -> str:
                # the User-Id of every message on this connection: the node the key belongs to
                return names[z85.encode(client_public_key)]

        self._auth = _Authenticator(ctx)
        self._auth.start()
        self._auth.configure_curve_callback(domain="*", credentials_provider=_Keys())

    def close(self) -> None:
        if self._ctx is None or self._closed:
            return
        self._closed = True
        if self._running:  # not after the I/O thread died: nobody should take it for a clean exit
            bye = [_BYE, self.node.encode(), self.incarnation.to_bytes(8, "big")]  # type: ignore[union-attr]
            for p in list(self._peers.values()):
                self._send_control(p, bye)
        self._running = False
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._thread is None or not self._thread.is_alive():
            try:
                self._flush_bad()  # what the rate limit left out, summed up before the node's log closes
            except Exception:
                pass
        self._held.clear()  # frames that waited for a connection to close: nobody will read them now
        self._held_bytes = 0
        with self._peers_lock:
            peers = list(self._peers.values())
        for p in peers:
            # Linger (finitely) only where someone listens: the goodbye and the last
            # messages reach an up peer; nothing waits on a down one.
            up = self.detector.state(p.name) is PeerState.UP
            with p.lock:
                if p.sock is not None:
                    p.sock.close(self.linger_ms if up else 0)
                    p.sock = None
        if self._wake_tx is not None:
            self._wake_tx.close()
        if self._auth is not None:
            self._auth.stop()
        if self._ctx is not None:
            self._ctx.term()

    # -- peers -----------------------------------------------------------------------
    def add_peer(self, name: str, endpoint: str) -> None:
        """Know (and connect to) node ``name`` at ``endpoint``; safe from any thread.

        A node named here is configured: a heartbeat never changes its endpoint. Raises (and keeps
        nothing) if the endpoint cannot be connected to, or CURVE is on and ``name`` has no key.
        """
        self._fixed.add(name)
        self._learned.discard(name)
        self._add_peer(name, endpoint)

    def _add_peer(self, name: str, endpoint: str) -> None:
        if name == self.node:
            return
        p = self._peers.get(name)
        if p is not None and p.endpoint == endpoint:
            return
        sock = self._connect(name, endpoint)  # first: nothing is published for an endpoint that fails
        with self._peers_lock:
            p = self._peers.get(name)
            if p is None:
                p = self._peers[name] = _Peer(name, endpoint)
            p.endpoint = endpoint
        with p.lock:
            old, p.sock = p.sock, sock
        if old is not None:
            old.close(0)
        self._command(lambda: self.detector.add(name, self._clock()))

    def _connect(self, name: str, endpoint: str) -> zmq.Socket:
        """A DEALER connected to ``endpoint``, or an exception (and no socket left open)."""
        assert self._ctx is not None
        key = None
        if self.curve is not None:
            key = self.curve.peer_keys.get(name)
            if key is None:
                raise ValueError(f"CURVE is on but no public key is configured for peer {name!r}")
        sock = self._ctx.socket(zmq.DEALER)
        try:
            sock.setsockopt(zmq.SNDHWM, self.sndhwm)
            sock.setsockopt(zmq.LINGER, self.linger_ms)
            sock.setsockopt(zmq.RECONNECT_IVL, self.reconnect_ivl_ms)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, self.reconnect_ivl_max_ms)
            sock.setsockopt(zmq.SNDTIMEO, 0)
            if key is not None:
                sock.curve_secretkey = self.curve.secret_key  # type: ignore[union-attr]
                sock.curve_publickey = self.curve.public_key  # type: ignore[union-attr]
                sock.curve_serverkey = key
            sock.connect(endpoint)
        except BaseException:
            sock.close(0)
            raise
        return sock

    def _reconnect(self, p: _Peer) -> None:
        sock = self._connect(p.name, p.endpoint)
        with p.lock:
            old, p.sock = p.sock, sock
        if old is not None:
            old.close(0)  # LINGER 0: what was queued for a dead incarnation is discarded

    def _evict(self, name: str, why: str) -> None:
        """Forget a learned peer: its socket, its detector entry, its connection binding (I/O thread)."""
        with self._peers_lock:
            p = self._peers.pop(name, None)
        self._learned.discard(name)
        self._down_since.pop(name, None)
        self.detector.remove(name)
        self._quiet.pop(name, None)
        self._unbind(name)
        if p is not None:
            with p.lock:
                if p.sock is not None:
                    p.sock.close(0)
                    p.sock = None
        self._counts["peers_evicted"] += 1
        self._emit("transport.peer_evicted", {"peer": name[:MAX_ADDRESS], "reason": why})

    def peers(self) -> dict[str, str]:
        return {name: st.value for name, st in self.detector.peers().items()}

    # -- sending -----------------------------------------------------------------------
    def send(self, env: Envelope) -> None:
        to = env.to
        dst = to.partition("/")[0]
        p = self._peers.get(dst)
        if p is None:
            endpoint = self._directory.get(dst)
            if endpoint is None:
                raise Undeliverable(f"no known endpoint for node {dst!r}")
            self.add_peer(dst, endpoint)  # on demand: first message to this node
            p = self._peers[dst]
        if self.detector.state(dst) is _DOWN:
            p.counts["refused_down"] += 1
            raise Undeliverable(f"node {dst!r} is down")
        sender = env.sender
        corr = env.corr
        if corr:  # ask traffic: the per-ask address travels as its prefix plus corr
            suffix = _ASK + str(corr)
            if to.endswith(suffix):
                to = to[:-len(suffix) + len(_ASK)]
            elif sender.endswith(suffix):
                sender = sender[:-len(suffix) + len(_ASK)]
        key = (to, sender)
        tail = self._out_cache.get(key)
        if tail is None:
            tb = to.encode()
            sb = sender.encode()
            if len(tb) > MAX_ADDRESS or len(sb) > MAX_ADDRESS:
                raise Undeliverable(f"address longer than {MAX_ADDRESS} bytes (to {to!r:.60}, from {sender!r:.60})")
            tail = len(tb).to_bytes(2, "big") + tb + sb
            if len(self._out_cache) >= _CACHE:
                self._out_cache.clear()
            self._out_cache[key] = tail
        header = _MSG + corr.to_bytes(8, "big") + tail
        if self.faults:
            delays, why = self.faults.decide(dst, "out", self.rng)
            if not delays:
                p.counts[f"dropped_by_rule_{why}"] += 1
                return  # dropped on purpose by the chaos harness; counted
            if delays != (0.0,):
                for d in delays:
                    self._later(d, ("out", p, header, env.payload))
                return
        self._send_frames(p, header, env.payload)

    def _send_frames(self, p: _Peer, header: bytes, payload: bytes) -> None:
        with p.lock:
            sock = p.sock
            if sock is None:
                raise Undeliverable(f"transport to {p.name!r} is closed")
            try:
                _send(sock, header, _F_MORE)
            except zmq.Again:
                p.counts["dropped_queue_full"] += 1
                raise Undeliverable(f"outbound queue to {p.name!r} is full ({self.sndhwm} messages)") from None
            _send(sock, payload, _F_NB, len(payload) < 16384)  # copy small ones; a multipart message is atomic
        c = p.counts
        c["msgs_out"] += 1
        c["bytes_out"] += len(payload)

    # -- the loop: callbacks on the I/O thread (the runtime's loop-dispatched actors) ----------
    def in_loop(self) -> bool:
        """True on the I/O thread."""
        return threading.get_ident() == self._loop_ident

    def call_soon(self, fn: Callable, *args) -> None:
        """Run ``fn(*args)`` on the I/O thread, after what is already queued; safe from any thread."""
        self._ready.append((fn, args))
        if threading.get_ident() != self._loop_ident:
            self._wake()

    def call_later(self, delay: float, fn: Callable, *args) -> LoopTimer:
        """Run ``fn(*args)`` on the I/O thread after ``delay`` seconds (``.cancel()`` to forget it)."""
        timer = LoopTimer(self._clock() + max(0.0, delay), fn, args)
        with self._timer_lock:
            heapq.heappush(self._timers, (timer.when, next(self._delay_seq), timer))
            first = self._timers[0][2] is timer
        if first and threading.get_ident() != self._loop_ident:
            self._wake()  # the loop may be asleep until a later deadline
        return timer

    def _run_timers(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            with self._timer_lock:
                if not timers or timers[0][0] > now:
                    return
                timer = heapq.heappop(timers)[2]
            if not timer.cancelled:
                timer.cancelled = True
                self._call(timer.fn, timer.args)

    def _run_ready(self) -> None:
        ready = self._ready
        for _ in range(len(ready)):  # what is queued now; later arrivals wait for one more poll
            fn, args = ready.popleft()
            self._call(fn, args)

    @staticmethod
    def _call(fn: Callable, args: tuple) -> None:
        try:
            fn(*args)
        except Exception:
            from loguru import logger
            logger.exception("loop callback {!r} raised", fn)

    # -- the I/O thread -------------------------------------------------------------------
    def _wake(self) -> None:
        with self._wake_lock:
            if self._wake_tx is not None:
                try:
                    self._wake_tx.send(_WAKE, zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass

    def _command(self, fn: Callable[[], None]) -> None:
        self._commands.append(fn)
        self._wake()

    def _later(self, delay: float, item: tuple) -> None:
        with self._delayed_lock:
            heapq.heappush(self._delayed, (self._clock() + delay, next(self._delay_seq), item[0], item[1:]))
        self._wake()

    def _loop(self, wake_rx: zmq.Socket) -> None:
        router = self._router
        assert router is not None
        items = [(router, _POLLIN), (wake_rx, _POLLIN)]
        next_beat = self._clock()
        clock = self._clock
        poll = zmq.zmq_poll  # what zmq.Poller.poll wraps, without its per-call Python
        self._loop_ident = threading.get_ident()
        ready, timers = self._ready, self._timers
        errors = 0  # unexpected exceptions in a row
        try:
            while self._running:
                try:
                    now = clock()
                    if now >= next_beat:
                        next_beat = now + self.heartbeat_interval
                        self._apply_quiet()
                        self._heartbeat(now)
                        if self._bad_window:
                            self._flush_bad(now)
                    due = next_beat
                    if self._delayed:
                        with self._delayed_lock:
                            if self._delayed:
                                due = min(due, self._delayed[0][0])
                    if timers:
                        due = min(due, timers[0][0])
                    if self._held:  # frames wait for a connection to close: look again soon
                        due = min(due, now + _PROBE_FIRST)
                    # ceil: never wake (and spin) before a deadline; ready callbacks: just look
                    timeout = 0 if ready else math.ceil(max(0.0, due - now) * 1000)
                    for sock, _ in poll(items, timeout):
                        if sock is router:
                            self._drain(router)
                        else:  # woken: commands or delayed messages are waiting
                            while True:
                                try:
                                    wake_rx.recv(_F_NB)
                                except zmq.Again:
                                    break
                            commands = self._commands
                            while commands:
                                commands.popleft()()
                    if self._delayed:
                        self._release_delayed(clock())
                    if timers:
                        self._run_timers(clock())
                    if ready:
                        self._run_ready()
                    if self._held:
                        self._check_held(clock())
                    errors = 0
                except Exception as e:  # never a silent death of the I/O thread
                    errors += 1
                    fatal = errors >= _FATAL_ERRORS or (
                        isinstance(e, zmq.ZMQError) and e.errno in (zmq.ETERM, zmq.ENOTSOCK))
                    self._error("loop", e)
                    if fatal and self._running:
                        self._died(e)
                        return
        finally:
            wake_rx.close(0)
            router.close(0)

    def _error(self, where: str, e: BaseException) -> None:
        """An unexpected exception on the I/O thread: logged, an event, counted; the loop goes on.

        Counted last: whoever sees ``io_errors`` grow finds the log line and the event too.
        """
        try:
            from loguru import logger
            logger.opt(exception=e).error("node {}: transport I/O thread: unexpected error in {}", self.node, where)
            self._emit("transport.error", {"where": where, "error": f"{type(e).__name__}: {e}"[:300]})
        except Exception:
            pass
        finally:
            self._counts["io_errors"] += 1

    def _died(self, e: BaseException) -> None:
        """The I/O thread cannot go on: say so, then end the process (or run the installed hook)."""
        self._running = False
        self._counts["io_died"] += 1
        detail = f"{type(e).__name__}: {e}"[:300]
        try:
            from loguru import logger
            logger.critical("node {}: transport I/O thread died ({}); the node cannot serve", self.node, detail)
            self._emit("transport.died", {"error": detail})
        except Exception:
            pass
        if self._on_died is not None:
            self._on_died()
            return
        # No deaf process that exits 0 later: flush what can be flushed and exit now.
        try:
            owner = getattr(self._event, "__self__", None)  # the Node, whose event log holds the event
            flush = getattr(getattr(owner, "events", None), "flush", None)
            if flush is not None:
                flush()
            from loguru import logger
            logger.complete()
            sys.stderr.flush()
        finally:
            os._exit(70)

    def _apply_quiet(self) -> None:
        """Tell the failure detector when UP peers were last heard (noted by _drain)."""
        quiet, self._quiet = self._quiet, {}
        detector = self.detector
        for peer, when in quiet.items():
            if detector.state(peer) is _UP:  # not if it left or went down since
                detector.heard(peer, when)  # an UP peer's only change: last_heard

    def _heartbeat(self, now: float) -> None:
        beat = [_HB, self.node.encode(), self.incarnation.to_bytes(8, "big"), self.endpoint.encode()]  # type: ignore[union-attr]
        for name, p in list(self._peers.items()):
            if self.faults:
                delays, why = self.faults.decide(name, "out", self.rng)
                if not delays:
                    continue
            self._send_control(p, beat)
        for change in self.detector.check(now):
            self._changed(change)
        if self._down_since:  # learned peers down for evict_after intervals are forgotten
            limit = self.evict_after * self.heartbeat_interval
            for name, since in list(self._down_since.items()):
                if now - since >= limit:
                    self._evict(name, "down")

    @staticmethod
    def _send_control(p: _Peer, frames: list[bytes]) -> None:
        """Best effort: a full queue means the peer hears from us soon enough anyway."""
        with p.lock:
            if p.sock is not None:
                try:
                    p.sock.send_multipart(frames, _F_NB)
                except zmq.ZMQError:
                    pass

    def _changed(self, change: PeerChange) -> None:
        self._emit("transport.peer_" + change.state.value, {
            "peer": change.peer, "incarnation": change.incarnation, "reason": change.reason,
            "silent_for": round(change.silent_for, 3)})
        if change.state is PeerState.DOWN:
            if change.peer in self._learned:
                self._down_since.setdefault(change.peer, self._clock())
            p = self._peers.get(change.peer)
            # "reconnected": its new connection is up now; replacing ours would make it see the same
            if p is not None and change.reason != "reconnected":
                try:
                    self._reconnect(p)  # drop what was queued for the old incarnation
                except Exception as e:  # e.g. out of sockets: the old one stays; never the loop's end
                    self._error("reconnect", e)
        else:
            self._down_since.pop(change.peer, None)
        if self._peer_event is not None:
            self._peer_event(change)

    def _bad(self, peer: str, what: str, detail: str) -> None:
        """Bad input: always counted; a ``transport.bad_frame`` event only within the rate limit.

        At most ``bad_frame_events`` events per problem per second (a hostile peer cannot flood the
        event log); the rest are counted (``bad_frame_events_suppressed``) and summed up in one
        ``transport.bad_frames_suppressed`` event once their second is over (at the next heartbeat
        tick) and at close. I/O thread only.
        """
        key = f"bad_{what}"
        self._counts[key] += 1
        if peer:
            p = self._peers.get(peer)
            if p is not None:
                p.counts[key] += 1
        now = self._clock()
        w = self._bad_window.get(what)
        if w is None or not 0 <= now - w[0] < 1.0:
            if w is not None and w[2]:
                self._bad_summary(what, w)
            w = self._bad_window[what] = [now, 0, 0]
        if w[1] < self.bad_frame_events:
            w[1] += 1
            self._emit("transport.bad_frame", {"peer": peer, "problem": what, "detail": detail[:200]})
        else:
            w[2] += 1
            self._counts["bad_frame_events_suppressed"] += 1

    def _bad_summary(self, what: str, w: list) -> None:
        n, w[2] = w[2], 0
        self._emit("transport.bad_frames_suppressed", {"problem": what, "suppressed": n, "per_second": self.bad_frame_events})

    def _flush_bad(self, now: float | None = None) -> None:
        """Sum up the bad-frame events left out in seconds that are over (all of them: ``now`` None)."""
        for what, w in list(self._bad_window.items()):
            if w[2] and (now is None or not 0 <= now - w[0] < 1.0):
                self._bad_summary(what, w)

    def _drain(self, router: zmq.Socket) -> None:
        """Read what is waiting (at most 1,000 messages) and deliver it as one batch."""
        batch: list[Envelope] = []
        heard: set[str] = set()
        quiet = self._quiet
        state = self.detector.state
        now = self._clock()
        peers = self._peers
        cache = self._in_cache
        names = self._ident_name
        curve = self.curve is not None
        faults = self.faults
        max_frame = self.max_frame
        opt = router.getsockopt
        recv = router.recv
        for i in range(1000):  # bounded, so heartbeats still go out under load
            # One message is the common case (an ask): after it, ask EVENTS once rather
            # than pay for an exception; under load, read on until zmq.Again.
            if i == 1 and not opt(_EVENTS) & _POLLIN:
                break
            # recv_multipart by hand: int flags, no enum arithmetic, and RCVMORE asked
            # only where a frame count is in doubt (a ROUTER's identity frame always has more).
            try:
                ident = recv(_F_NB)
            except zmq.Again:
                break
            if curve and ident not in names:  # a new connection: read the node its key belongs to
                frame = recv(_F_NB, copy=False)
                header = frame.bytes
                self._key_identity(ident, frame)
            else:
                header = recv(_F_NB)
            if not opt(_RCVMORE):
                self._other([ident, header])
                continue
            payload = recv(_F_NB)
            if opt(_RCVMORE) or header[:1] != _MSG:
                frames = [ident, header, payload]
                while opt(_RCVMORE):
                    frames.append(recv(_F_NB))
                self._other(frames)
                continue
            if len(header) > _MAX_HEADER:  # before any cache lookup: no huge keys, no huge copies
                self._bad("", "header", f"message header of {len(header)} bytes (addresses are at most {MAX_ADDRESS} bytes)")
                continue
            route = cache.get(header[9:])
            if route is None:
                route = self._route_of(header)
                if route is None:
                    continue
            to, sender, peer = route
            if names.get(ident) != peer and not self._admit(ident, peer, "message", item=("message", route, header, payload)):
                continue  # another connection (or key) speaks for that node: counted (or held, see _admit)
            corr = int.from_bytes(header[1:9], "big")
            if corr:  # restore the per-ask address (see send)
                if to.endswith(_ASK):
                    to += str(corr)
                elif sender.endswith(_ASK):
                    sender += str(corr)
            p = peers.get(peer)
            if faults:
                delays, why = faults.decide(peer, "in", self.rng)
                if not delays:
                    if p is not None:
                        p.counts[f"dropped_by_rule_{why}"] += 1
                    continue
                if delays != (0.0,):
                    for d in delays:
                        self._later(d, ("in", peer, Envelope(to, sender, corr, payload)))
                    continue
            if p is not None:  # only known peers are watched; strangers may still talk
                if peer not in heard:
                    heard.add(peer)
                    if state(peer) is _UP:  # only last_heard moves: note it for the next tick
                        quiet[peer] = now
                    else:  # a state change (rare): at once, in order with goodbyes in this batch
                        self._heard(peer, None)
                c = p.counts
                c["msgs_in"] += 1
                c["bytes_in"] += len(payload)
            else:
                self._counts["msgs_in_unknown_peer"] += 1
            if len(payload) > max_frame:
                self._bad(peer, "oversized", f"payload of {len(payload)} bytes over the limit of {max_frame}")
                continue
            batch.append(Envelope(to, sender, corr, payload))
        if batch:  # last: the thread goes straight back to poll, releasing the GIL the woken
            try:
                self._deliver(batch)  # type: ignore[misc]  # actor or asker is waiting for
            except Exception as e:
                self._error("deliver", e)

    def _other(self, frames: list[bytes]) -> None:
        try:
            self._incoming_other(frames)
        except Exception as e:  # a defect, not the sender's fault: counted, and the loop goes on
            self._error("heartbeat/goodbye", e)

    def _route_of(self, header: bytes) -> tuple[str, str, str] | None:
        """Parse (to, sender, peer) from a message header; None (counted) if it is bad."""
        if len(header) < 11:
            self._bad("", "header", f"message header of {len(header)} bytes")
            return None
        n = int.from_bytes(header[9:11], "big")
        to_b = header[11:11 + n]
        if len(to_b) != n:
            self._bad("", "header", "destination address runs past the header")
            return None
        if n > MAX_ADDRESS or len(header) - 11 - n > MAX_ADDRESS:
            self._bad("", "header", f"address longer than {MAX_ADDRESS} bytes")
            return None
        try:
            to = to_b.decode()
            sender = header[11 + n:].decode()
        except UnicodeDecodeError:
            self._bad("", "address", "address frames are not UTF-8")
            return None
        peer = sender.partition("/")[0]
        if not peer or peer == self.node or "/" not in sender:
            self._bad("", "sender", f"sender address {sender!r:.60} names no other node")
            return None
        route = (to, sender, peer)
        size = 2 * (len(header) - 9) + 200  # the key and the two strings, roughly
        if len(self._in_cache) >= _CACHE or self._in_cache_bytes + size > _CACHE_BYTES:
            self._in_cache.clear()
            self._in_cache_bytes = 0
        self._in_cache[header[9:]] = route
        self._in_cache_bytes += size
        return route

    # -- who speaks for which node ------------------------------------------------------
    def _key_identity(self, ident: bytes, frame: zmq.Frame) -> None:
        """CURVE: remember the node whose key authenticated this connection (its User-Id)."""
        try:
            uid = frame.get("User-Id")
        except zmq.ZMQError:
            uid = ""
        names = self._ident_name
        if len(names) >= _IDENTS:
            names.clear()  # a cache: a connection's name is read again from its next message
        names[ident] = uid or ""

    def _admit(self, ident: bytes, name: str, what: str, bind: bool = True, item: tuple | None = None) -> bool:
        """May this connection speak for node ``name``? (It does not already, per ``_ident_name``.)

        CURVE: only the connection whose key belongs to ``name``. Plaintext: a connection that already
        speaks for another node, never; else the connection bound to ``name``, or, when none is (or
        the bound one is closed: that session is reported down, reason "reconnected"), this one -
        the first to speak for a known node owns the name for the life of its connection. Messages
        from strangers (nodes that are not peers) bind nothing.

        Plaintext, a new connection for a node whose bound connection is not seen closed yet: that
        is what a peer's legitimate reconnect looks like (it closed its old connection and opened a
        new one; the close may be processed here after the new connection's first frames), and what
        an attacker's claim looks like. ``item`` (this frame) is then held, with every later frame of
        this connection, in order (False is returned, nothing is counted): released as a new session
        as soon as the bound connection is seen closed (``_check_held``), counted as bad_identity and
        dropped if it is still open one heartbeat interval later. Held frames are no sign of life.
        """
        owner = self._ident_name.get(ident)
        if self.curve is not None:
            self._bad(name if name in self._peers else "", "identity",
                      f"{what} claims node {name!r:.60} on a connection authenticated as {owner!r:.60}")
            return False
        if owner is not None:
            self._bad(name if name in self._peers else "", "identity",
                      f"{what} claims node {name!r:.60} on the connection of node {owner!r:.60}")
            return False
        if self._retired.get(ident) == name:
            # A connection seen closed (a send to it fails) while frames it got before the close were
            # still to be read: late frames of a session already reported over. Dropped, not bad input.
            self._counts["late_frames"] += 1
            p = self._peers.get(name)
            if p is not None:
                p.counts["late_frames"] += 1
            return False
        holding = ident != self._no_hold
        if holding and ident in self._held:  # it waits already: so do its later frames
            if item is not None and self._hold(ident, name, item):
                return False
            self._bad(name if name in self._peers else "", "identity",
                      f"{what} claims node {name!r:.60} from a connection that waits for another to close (no room to hold it)")
            return False
        bound = self._name_ident.get(name)
        if bound is not None:
            if not self._gone(bound):
                if holding and item is not None and self._hold(ident, name, item):
                    return False
                self._bad(name if name in self._peers else "", "identity",
                          f"{what} claims node {name!r:.60} from another connection than the one it uses")
                return False
            self._take_over(name, what)
        if bind and name in self._peers:
            self._bind(name, ident)
        return True

    def _take_over(self, name: str, what: str) -> None:
        """Plaintext: ``name``'s bound connection is closed, so its session is over.

        Reported down at once (pending asks fail), so traffic on a new connection never silently
        continues a dead node's session; a goodbye reports it itself ("left").
        """
        old = self._name_ident.get(name)
        if old is not None:
            if len(self._retired) >= _IDENTS:
                del self._retired[next(iter(self._retired))]  # the oldest: long closed
            self._retired[old] = name
        self._unbind(name)
        self._counts["connections_replaced"] += 1
        if what != "goodbye":
            for change in self.detector.left(name, "reconnected"):
                self._changed(change)

    def _hold(self, ident: bytes, name: str, item: tuple) -> bool:
        """Hold ``item`` of connection ``ident`` (see _admit); False if there is no room (bounded)."""
        h = self._held.get(ident)
        size = len(item[3]) + len(item[2]) if item[0] == "message" else sum(len(f) for f in item[1])
        if h is None and len(self._held) >= _HOLD_CONNS:
            return False
        if (h is not None and len(h.items) >= _HOLD_FRAMES) or self._held_bytes + size > _HOLD_BYTES:
            return False
        if h is None:
            h = self._held[ident] = _Held(name, self._clock() + self.heartbeat_interval)
        h.items.append(item)
        h.size += size
        self._held_bytes += size
        self._counts["identity_held"] += 1
        return True

    def _check_held(self, now: float) -> None:
        """Release what waits for a closed connection; refuse what waited its time (I/O thread)."""
        for ident, h in list(self._held.items()):
            bound = self._name_ident.get(h.name)
            expired = now >= h.deadline
            still_open = bound is not None and bound != ident and not self._gone(bound, fresh=expired)
            if still_open and not expired:
                continue
            del self._held[ident]
            self._held_bytes -= h.size
            if still_open:  # another connection speaks for that node: these frames are not its
                self._no_hold = ident
                try:
                    self._replay(ident, h.items)
                finally:
                    self._no_hold = None
            else:
                if bound is not None and bound != ident:
                    self._take_over(h.name, h.items[0][0])
                self._replay(ident, h.items)

    def _replay(self, ident: bytes, items: list[tuple]) -> None:
        """Run held frames through the receive path again, in order."""
        batch: list[Envelope] = []
        for item in items:
            if item[0] == "message":
                self._message(ident, item[1], item[2], item[3], batch)
                continue
            if batch:  # in order with a heartbeat or goodbye among them
                self._deliver(batch)  # type: ignore[misc]
                batch = []
            self._other(item[1])
        if batch:
            self._deliver(batch)  # type: ignore[misc]

    def _message(self, ident: bytes, route: tuple[str, str, str], header: bytes, payload: bytes,
                 batch: list[Envelope]) -> None:
        """One message, the steps of _drain's inline path (for held frames)."""
        to, sender, peer = route
        if self._ident_name.get(ident) != peer and not self._admit(ident, peer, "message",
                                                                   item=("message", route, header, payload)):
            return
        corr = int.from_bytes(header[1:9], "big")
        if corr:
            if to.endswith(_ASK):
                to += str(corr)
            elif sender.endswith(_ASK):
                sender += str(corr)
        p = self._peers.get(peer)
        if self.faults:
            delays, why = self.faults.decide(peer, "in", self.rng)
            if not delays:
                if p is not None:
                    p.counts[f"dropped_by_rule_{why}"] += 1
                return
            if delays != (0.0,):
                for d in delays:
                    self._later(d, ("in", peer, Envelope(to, sender, corr, payload)))
                return
        if p is not None:
            self._heard(peer, None)
            p.counts["msgs_in"] += 1
            p.counts["bytes_in"] += len(payload)
        else:
            self._counts["msgs_in_unknown_peer"] += 1
        if len(payload) > self.max_frame:
            self._bad(peer, "oversized", f"payload of {len(payload)} bytes over the limit of {self.max_frame}")
            return
        batch.append(Envelope(to, sender, corr, payload))

    def _bind(self, name: str, ident: bytes) -> None:
        self._name_ident[name] = ident
        self._ident_name[ident] = name

    def _unbind(self, name: str) -> None:
        ident = self._name_ident.pop(name, None)
        if ident is not None:
            if self.curve is None:
                self._ident_name.pop(ident, None)
            self._alive_at.pop(ident, None)
            self._probe_gap.pop(ident, None)

    def _gone(self, ident: bytes, fresh: bool = False) -> bool:
        """Plaintext: is the connection ``ident`` closed? (A send to it fails: ROUTER_MANDATORY.)

        The probe is one empty frame back over that connection (a DEALER that never reads just
        queues it, up to its receive limit). The first comes at once; while the connection stays
        open the next ones come 10 ms, 20 ms, ... apart, at most one per heartbeat interval
        (``fresh``: now, whatever the gap).
        """
        now = self._clock()
        gap = self._probe_gap.get(ident, _PROBE_FIRST)
        if not fresh and now - self._alive_at.get(ident, -math.inf) < gap:
            return False
        try:
            self._router.send_multipart([ident, b""], _F_NB)  # type: ignore[union-attr]
        except zmq.ZMQError as e:
            if e.errno == zmq.EHOSTUNREACH:
                return True
        self._alive_at[ident] = now
        self._probe_gap[ident] = min(2 * gap, self.heartbeat_interval)
        return False

    def _may_learn(self, name: str) -> str | None:
        """Why a heartbeat from ``name`` (not a peer yet) may not introduce it; None if it may."""
        if self.curve is not None and name not in self.curve.peer_keys:
            return f"node {name!r:.60} has no key in the key list"
        configured = name in self._fixed or (self.curve is not None and name in self.curve.peer_keys)
        if not configured:
            learn = self.learn_peers
            if learn is False or (learn is not True and name not in learn
                                  and not any(fnmatch.fnmatchcase(name, pat) for pat in learn if "*" in pat)):
                return f"node {name!r:.60} is not a configured peer (learning peers is off)"
            if len(self._learned) >= self.max_learned_peers:
                return f"node {name!r:.60} would exceed the cap of {self.max_learned_peers} learned peers"
        return None

    def _incoming_other(self, frames: list[bytes]) -> None:
        """Heartbeats, goodbyes and everything malformed."""
        n = len(frames)
        kind = frames[1] if n > 1 else b""
        ident = frames[0]
        if kind == _HB and n == 5:
            try:
                name = frames[2].decode()
                endpoint = frames[4].decode()
            except UnicodeDecodeError:
                self._bad("", "heartbeat", "heartbeat frames are not UTF-8")
                return
            if len(frames[3]) != 8 or not name or "/" in name or name == self.node or len(frames[2]) > MAX_ADDRESS:
                self._bad("", "heartbeat", f"malformed heartbeat from {name!r:.40}")
                return
            if self._ident_name.get(ident) != name and not self._admit(ident, name, "heartbeat", bind=False,
                                                                       item=("heartbeat", frames)):
                return  # counted (bad_identity), or held until the node's old connection closes
            if self.faults:
                delays, _ = self.faults.decide(name, "in", self.rng)
                if not delays:
                    return
            known = self._peers.get(name)
            if known is None:
                why = self._may_learn(name)
                if why is None and name in self._directory:
                    endpoint = self._directory[name]  # configured: its endpoint, not the heartbeat's
                elif why is None:
                    try:
                        parse_endpoint(endpoint)
                    except ValueError as e:
                        why = str(e)
                if why is not None:
                    self._bad("", "heartbeat", f"heartbeat refused: {why}")
                    return
                try:
                    self._add_peer(name, endpoint)  # it knows us: now we know where it is
                except (zmq.ZMQError, ValueError) as e:
                    self._bad("", "heartbeat", f"heartbeat endpoint {endpoint!r:.80} cannot be connected: {e}")
                    return
                if name not in self._fixed and not (self.curve is not None and name in self.curve.peer_keys):
                    self._learned.add(name)
            elif known.endpoint != endpoint and name not in self._fixed:
                # a learned node (or a listed key's node) that moved: only it can say so (checked above)
                try:
                    parse_endpoint(endpoint)
                    self._add_peer(name, endpoint)
                except (zmq.ZMQError, ValueError) as e:
                    self._bad(name, "heartbeat", f"heartbeat endpoint {endpoint!r:.80} refused: {e}")
            if self.curve is None and self._name_ident.get(name) != ident:
                self._bind(name, ident)
            self._heard(name, int.from_bytes(frames[3], "big"))
        elif kind == _BYE and n == 4:
            try:
                name = frames[2].decode()
            except UnicodeDecodeError:
                self._bad("", "goodbye", "goodbye frames are not UTF-8")
                return
            inc = int.from_bytes(frames[3], "big") if len(frames[3]) == 8 else 0
            known = self.detector.incarnation(name)
            if inc and known:
                # only the connection (plaintext) or key (CURVE) that speaks for the node may say it left
                # (plaintext: a new connection may, once the node's old one is closed - see _admit)
                if self._ident_name.get(ident) != name and not self._admit(ident, name, "goodbye", bind=False,
                                                                           item=("goodbye", frames)):
                    return
                if inc != known:
                    # From the node itself, an incarnation never heard here: it restarted and leaves before
                    # its first heartbeat reached us (so the incarnation we knew is gone as well).
                    self._counts["goodbyes_new_incarnation"] += 1
                for change in self.detector.left(name):
                    self._changed(change)
            elif inc:  # 0: no heartbeat (so no incarnation) ever heard from it
                # a node that sent to us (on-demand connect) but was never tracked here says
                # goodbye on its way out: nothing to take down, and nothing wrong either
                self._counts["goodbyes_untracked"] += 1
            else:
                self._bad(name if name in self._peers else "", "goodbye", f"goodbye from {name!r:.40} with an unknown incarnation")
        else:
            self._bad("", "frames", f"kind {kind[:8]!r} with {n - 1} frames")

    def _heard(self, peer: str, incarnation: int | None) -> None:
        self._quiet.pop(peer, None)  # superseded by this (later) time
        for change in self.detector.heard(peer, self._clock(), incarnation):
            self._changed(change)

    def _release_delayed(self, now: float) -> None:
        heap = self._delayed
        while True:
            with self._delayed_lock:
                if not heap or heap[0][0] > now:
                    return
                _, _, direction, rest = heapq.heappop(heap)
            if direction == "out":
                p, header, payload = rest
                try:
                    self._send_frames(p, header, payload)
                except Undeliverable:
                    p.counts["dropped_after_delay"] += 1
            else:
                peer, env = rest
                p = self._peers.get(peer)
                if p is not None:
                    self._heard(peer, None)
                    p.counts["msgs_in"] += 1
                    p.counts["bytes_in"] += len(env.payload)
                self._deliver([env])  # type: ignore[misc]

    # -- faults and observability ------------------------------------------------------------
    def set_faults(self, plan: FaultPlan) -> None:
        self.faults = plan
        self._emit("transport.faults", plan.describe())

    def _emit(self, kind: str, fields: dict) -> None:
        if self._event is not None:
            self._event(kind, fields)

    def counters(self) -> dict:
        out = dict(self._counts)
        for name, p in list(self._peers.items()):
            for k, v in list(p.counts.items()):
                out[f"peer.{name}.{k}"] = v
            for k in ("msgs_in", "msgs_out", "bytes_in", "bytes_out"):
                out[k] = out.get(k, 0) + p.counts.get(k, 0)
        return out

    def channel_counts(self, channel: str = "main") -> dict:
        """``{channel: {msgs_out, msgs_in, bytes_out, bytes_in, peers: {peer: [msgs out, msgs in]}}}`` (compact;
        a :class:`ChannelTransport` gives one entry per channel)."""
        peers, totals = {}, dict.fromkeys(("msgs_out", "msgs_in", "bytes_out", "bytes_in"), 0)
        for p in list(self._peers.values()):
            c = p.counts
            for k in totals:
                totals[k] += c.get(k, 0)
            if c.get("msgs_out") or c.get("msgs_in"):
                peers[p.name] = [c.get("msgs_out", 0), c.get("msgs_in", 0)]
        return {channel: {**totals, "peers": peers}}


class ChannelTransport:
    """A node on more than one network channel: one :class:`ZmqTransport` per channel, each with its own
    bound endpoint, DEALERs, failure detector, fault plan and counters; a message to a peer goes out on
    the channel of that link.

    ``channels`` maps channel names to unstarted transports (the first is the node's main endpoint, the
    one its ready line and the chaos control node know); ``route(peer)`` names the channel of the link
    to node ``peer`` (the topology's ``channel_of``: both ends agree, so each peer is heard on one
    channel). Each channel's transport knows only that channel's peers, so a peer's liveness is that
    of its link: ``PeerUp`` / ``PeerDown`` for a peer come from the channel of its link only (a change
    heard on another channel is counted, ``peer_events_off_channel``, not passed on), and a partition
    of one channel leaves the others' peers up. Inbound messages are delivered from whichever channel
    they arrive on. ``loop`` names the channel whose I/O thread runs loop-dispatched actors (default:
    the first); messages read on another channel's thread reach them through ``call_soon``.

    Fault plans go to every channel (a plan names peers, and each peer is on one channel), so a cut
    of one channel's links is a plan naming that channel's peers (see ``topologies.chaos``).
    Counters: the sum over the channels under the usual names (``msgs_out``, ``peer.<node>.*``), and
    each channel's own as ``channel.<name>.<counter>``. Transport events from a channel other than the
    first carry ``channel``. With a single channel, use a plain ZmqTransport: this class is only for
    nodes that bind more than one endpoint.
    """

    def __init__(self, channels: dict[str, ZmqTransport], route: Callable[[str], str], loop: str | None = None):
        if not channels:
            raise ValueError("ChannelTransport needs at least one channel")
        self.channels = dict(channels)
        self.main = next(iter(self.channels))
        self.loop = loop if loop is not None else self.main
        if self.loop not in self.channels:
            raise ValueError(f"loop channel {self.loop!r} is not one of {sorted(self.channels)}")
        self._route = route
        self._routes: dict[str, str] = {}
        self._loop_t = self.channels[self.loop]
        first = self.channels[self.main]
        for t in self.channels.values():
            t.incarnation = first.incarnation  # one node, one incarnation, whatever channel it is heard on
        self.incarnation = first.incarnation
        self.node: str | None = None
        self.failed_bind: str | None = None
        self._counts: dict[str, int] = defaultdict(int)

    # -- the Transport interface -------------------------------------------------------
    def start(self, node: str, deliver: Callable[[list[Envelope]], None],
              peer_event: Callable[[PeerChange], None] | None = None,
              event: Callable[[str, dict], None] | None = None) -> None:
        self.node = node
        started: list[ZmqTransport] = []
        try:
            for name, t in self.channels.items():
                self.failed_bind = t.bind_to  # what could not be bound, if this start raises
                t.start(node, deliver, self._peer_event_of(name, peer_event), self._event_of(name, event))
                started.append(t)
        except BaseException:
            for t in started:
                t.close()
            raise
        self.failed_bind = None

    def _peer_event_of(self, channel: str, peer_event: Callable | None) -> Callable | None:
        if peer_event is None:
            return None

        def on_change(change: PeerChange) -> None:
            if self.channel_of(change.peer) != channel:
                self._counts["peer_events_off_channel"] += 1
                return
            peer_event(change)
        return on_change

    def _event_of(self, channel: str, event: Callable | None) -> Callable | None:
        if event is None or channel == self.main:
            return event
        return lambda kind, fields: event(kind, {**fields, "channel": channel})

    def channel_of(self, peer: str) -> str:
        ch = self._routes.get(peer)
        if ch is None:
            ch = self._route(peer)
            if ch not in self.channels:
                ch = self.main  # a peer of no configured channel (a client, the chaos control node)
            if len(self._routes) < 4096:
                self._routes[peer] = ch
        return ch

    def send(self, env: Envelope) -> None:
        dst = env.to.partition("/")[0]
        ch = self._routes.get(dst) or self.channel_of(dst)
        self.channels[ch].send(env)

    def close(self) -> None:
        for t in self.channels.values():
            t.close()

    def counters(self) -> dict:
        out: dict[str, int] = dict(self._counts)
        for name, t in self.channels.items():
            for k, v in t.counters().items():
                out[k] = out.get(k, 0) + v
                out[f"channel.{name}.{k}"] = v
        return out

    def channel_counts(self) -> dict:
        """Per channel: messages and bytes out and in, and per peer [messages out, messages in] (compact)."""
        out = {}
        for name, t in self.channels.items():
            out.update(t.channel_counts(name))
        return out

    def peers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, t in self.channels.items():
            for peer, st in t.peers().items():
                if self.channel_of(peer) == name:
                    out[peer] = st
        return out

    def set_faults(self, plan: FaultPlan) -> None:
        for t in self.channels.values():
            t.set_faults(plan)

    @property
    def faults(self) -> FaultPlan:
        return self.channels[self.main].faults

    @property
    def endpoint(self) -> str | None:
        return self.channels[self.main].endpoint

    @property
    def endpoints(self) -> dict[str, str | None]:
        """Channel -> this node's bound endpoint on it."""
        return {name: t.endpoint for name, t in self.channels.items()}

    def add_peer(self, name: str, endpoint: str) -> None:
        """Know node ``name`` at ``endpoint`` on the channel of its link."""
        self.channels[self.channel_of(name)].add_peer(name, endpoint)

    # -- the loop (loop-dispatched actors run on one channel's I/O thread) -------------------
    def in_loop(self) -> bool:
        return self._loop_t.in_loop()

    def call_soon(self, fn: Callable, *args) -> None:
        self._loop_t.call_soon(fn, *args)

    def call_later(self, delay: float, fn: Callable, *args) -> LoopTimer:
        return self._loop_t.call_later(delay, fn, *args)
