"""Invariant checkers of the boot-workflow protocol (the ``workflow`` plug-in).

How this works
--------------
Each checker judges a run from its event log alone (DESIGN.md, "Invariants") and
answers *valid*, *invalid* (with the offending events as evidence) or *unknown*
(nothing to judge, or the log cannot tell); none is ever vacuously valid.

**Controller incarnations.** A resource controller is an address
(``node/actor``); every ``controller.start`` there begins a new *incarnation*
(``fields``: ``resource``, ``limit``, ``ttl``, ``epoch``, ``grace``). A new
incarnation knows nothing of the old one's holders and reservations, and lease
ids may repeat across incarnations (a lease id is the epoch's bits and a counter
that restarts; a controller rebuilt from the same seed has the same epoch), so
leases are keyed by (controller, incarnation, lease id), never by the id alone.
What becomes of the leases an incarnation held when it ended (replayed by
:class:`LeaseReplay`):

* they are not gone: each is still in its holder's hands, an *earlier
  incarnation's lease*, and occupies a slot, until the events show it ended;
* it ends at the latest with its **term**: no holder uses a lease past the
  holder deadline confirmed by its last renewal (``policy.holder_deadline`` <
  last renewal + ttl), and the dead incarnation renewed nothing after it went
  down: the first of ``sim.crash`` / ``sim.restart`` / ``actor.crashed`` /
  ``actor.stopped`` / ``actor.gave_up`` at its address, ``nemesis.kill``
  (``fields.node``) or ``node.stopped`` of its node, else the next
  ``controller.start``. So it is over by *that time + the old ttl*;
* ``lease.adopted`` (``server``, ``lease``, ``epoch``: the lease's own epoch)
  in a later incarnation carries it over: it is that incarnation's holder from
  then on (a transfer, not a new admission);
* ``lease.release_unknown`` (``server``, ``lease``, ``outcome``: a Release the
  controller cannot match) for a lease an earlier incarnation granted to that
  same server **ends that lease**: a server sends Release only once it has
  stopped using the resource. (For a lease of the current incarnation it means
  the lease already ended, or is another server's: nothing changes.)
* ``lease.unknown`` (``server``, ``lease``, ``reason``: a renewal the controller
  refused and answered with LeaseLost) **ends nothing**: it shows the holder
  was still renewing, i.e. still using the lease, at that time. Its holder
  stops when LeaseLost reaches it (it logs ``lease.lost``) or at its own
  deadline, within the term; a refusal in recovery is not even final (a later
  renewal may be adopted).
* the holder's own events end it: ``lease.lost`` (the holder gave up its
  leases), ``server.stage`` (a stage ended: the holder released every lease
  granted before that stage started), ``server.state`` to ``done`` / ``failed``,
  or the holder going down (the markers above, at the server's address or node).

Reservations (``admission.wake`` with ``reserved``) are promises of one
incarnation, not users of the resource: they end with it.

The checkers:

* ``admission-limit`` - no grant, adoption of a lease the log does not show as
  live, or reserved wake-up ever takes a resource's *holders + reservations +
  live leases of earlier incarnations* above the limit in force
  (``controller.start``, then ``limit.changed``). A grant from a reservation of
  this incarnation turns that reservation into the lease (the sum does not
  grow) and is judged with the reservation, not again. Holders of the current
  incarnation are the controller's own (granted or adopted, until
  ``lease.released`` / ``lease.expired``; one whose holder stopped still counts:
  the controller cannot know). A lowered limit never revokes leases: holders
  standing above a *new* limit are reported, not judged. Evidence: the
  offending events, then the earlier incarnations' leases that were live.
  *unknown*: no ``controller.start``, or nothing granted under a known limit.
* ``leases-end`` - every granted or adopted lease is released or expires. A
  lease is *leaked* if its holder had stopped using it (the holder events
  above) and its incarnation went on for more than ``ttl + slack`` after that
  without ending it (renewals are not logged, so this is the only proof). An
  earlier incarnation's lease ends as described above (at the latest with its
  term). *invalid*: leaked leases (evidence: the grant and the holder's event).
  *unknown*: no lease granted; or leases still open when the log ends whose
  holders were still at work (or stopped less than ``ttl + slack`` earlier).
* ``servers-done`` - every server (``server.state``) ends ``done``. *invalid*:
  a server ``failed``, or servers *stuck*: unfinished although nothing
  happened at any server for ``settle`` seconds before the log ended (or before
  the server was stopped), with no fault in force or changed in that time
  (evidence: each stuck server's last ``server.state``; the summary names
  them). *unknown*: no server in the log, or unfinished servers when the run
  was stopped or interrupted (or they were stopped: a crash, ``nemesis.kill``,
  ``node.stopped``) while the fleet was still at work or faults were in force:
  the log cannot tell whether they would have finished.
* ``no-grant-while-dormant`` - no ``admission.grant`` goes to a server whose
  own last ``server.state`` said ``dormant`` (powered off: the controller must
  wake it first). Evidence: the grant and the server's dormant state event.
  *unknown*: no grant, or no server ever dormant.

:func:`check_admission` (a dict of figures for the simulation tests and the
benchmark) and :func:`check_no_grant_while_dormant` are the same judgements as
plain functions.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict
from typing import Any, ClassVar

import attrs

from topologies.checkers import Verdict, plural

__all__ = [
    "CHECKERS",
    "AdmissionLimit",
    "LeaseReplay",
    "LeasesEnd",
    "NoGrantWhileDormant",
    "ServersDone",
    "check_admission",
    "check_no_grant_while_dormant",
]

FINISHED = ("done", "failed")

# Events of a resource controller (besides every admission.*).
CONTROLLER_KINDS = frozenset({
    "controller.start", "controller.state", "controller.ignored", "limit.changed", "waiting.dropped",
    "history.underdelivery", "history.recovered", "lease.released", "lease.expired", "lease.adopted",
    "lease.unknown", "lease.release_unknown",
})
# An actor at the event's address stopped (its state is gone; a restart is a new incarnation).
ACTOR_DOWN = frozenset({"sim.crash", "sim.restart", "actor.crashed", "actor.stopped", "actor.gave_up"})


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def _ordered(events: list[dict]) -> list[dict]:
    """By time; equal times keep log order."""
    return sorted(events, key=lambda e: e.get("time", 0.0))


def _fields(e: dict) -> dict:
    f = e.get("fields")
    return f if isinstance(f, dict) else {}


def _addr(e: dict) -> str:
    return f"{e.get('node')}/{e.get('actor')}"


def _node_of(address: str) -> str:
    return address.partition("/")[0]


def _down_node(e: dict) -> str | None:
    """The node every actor of which this event stops, if any."""
    kind = e.get("kind")
    if kind == "nemesis.kill":
        return _fields(e).get("node")
    if kind == "node.stopped":
        return e.get("node")
    return None


def _at(e: dict | None) -> str:
    if not e:
        return "?"
    return f"t={e.get('time')} {_addr(e)} {e.get('kind')}"


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {many or word + 's'}"


SERVER_KIND = "workflow.server"


def _expected(ordered: list[dict], kind: str) -> int | None:
    """How many actors of ``kind`` the run's topology holds (its ``run.topology`` event), if the log says."""
    for e in ordered:
        if e.get("kind") == "run.topology":
            n = (_fields(e).get("actors") or {}).get(kind)
            return n if isinstance(n, int) else None
    return None


def _names(xs: list[str], most: int = 10) -> str:
    xs = sorted(xs)
    return ", ".join(xs[:most]) + (f" and {len(xs) - most} more" if len(xs) > most else "")


# --------------------------------------------------------------------------
# the lease replay (admission-limit and leases-end)
# --------------------------------------------------------------------------

class _Lease:
    """One lease of one incarnation (granted, or adopted from an earlier one)."""

    __slots__ = ("controller", "epoch", "event", "ghost", "gone", "granted_at", "incarnation", "lid", "server",
                 "until")

    def __init__(self, inc: _Incarnation, lid: Any, server: Any, event: dict, epoch: Any) -> None:
        self.controller = inc.controller
        self.incarnation = inc.index
        self.lid = lid
        self.server = server
        self.event = event  # its admission.grant or lease.adopted
        self.epoch = epoch  # the lease's own epoch (an adopted lease keeps the one it was granted under)
        self.granted_at = event.get("time", 0.0)
        self.gone: dict | None = None  # the holder's event by which it stopped using the lease
        self.ghost = False  # its incarnation has ended
        self.until = math.inf  # for a ghost: the end of its term


class _Incarnation:
    __slots__ = ("controller", "down", "epoch", "holders", "index", "limit", "reserved", "resource", "start", "ttl")

    def __init__(self, controller: str, index: int, start: dict | None) -> None:
        f = _fields(start) if start is not None else {}
        self.controller = controller
        self.index = index  # 1 for the first controller.start; 0: events before any (limit unknown)
        self.start = start
        self.limit = f.get("limit")
        self.ttl = f.get("ttl")
        self.epoch = f.get("epoch")
        self.resource = f.get("resource")
        self.down: dict | None = None  # the first event showing it stopped
        self.holders: dict[Any, _Lease] = {}
        self.reserved: dict[Any, dict] = {}


class LeaseReplay:
    """Holders, reservations, limits and leases of every controller incarnation, rebuilt from the events.

    See the module docstring for what each event means. ``slack``: seconds
    allowed beyond a lease's ttl for the controller to end a lease whose holder
    stopped using it (its ticks, message latency) before it counts as leaked.
    """

    def __init__(self, slack: float = 5.0) -> None:
        self.slack = slack
        self.current: dict[str, _Incarnation] = {}
        self.ghosts: dict[str, dict[tuple, _Lease]] = defaultdict(dict)  # controller -> (incarnation, lid) -> lease
        self.by_server: dict[Any, set[_Lease]] = defaultdict(set)  # open leases (held or ghost) by holder
        self.stage_start: dict[str, float] = {}  # server -> time its current stage started
        self.starts = 0
        self.restarts = 0
        self.granted = 0  # admission.grant + lease.adopted
        self.adopted = 0
        self.judged = 0  # admissions judged against a known limit
        self.unjudged: set[str] = set()  # controllers that admitted with no limit known (no controller.start)
        self.violations: list[dict] = []
        self.context: list[dict] = []  # earlier incarnations' leases live at a violation
        self.problems: list[str] = []
        self.ended: Counter[str] = Counter()  # how leases ended
        self.leaks: list[tuple[_Lease, dict]] = []
        self.peak = 0
        self.over = 0
        self.last_time = -math.inf
        self.pending: list[_Lease] = []  # still open when the log ended (see finish)

    # -- driving -----------------------------------------------------------------------

    def run(self, events: list[dict]) -> LeaseReplay:
        for e in _ordered(events):
            self.see(e)
        return self.finish()

    def see(self, e: dict) -> None:
        kind = e.get("kind") or ""
        t = e.get("time", 0.0)
        if isinstance(t, (int, float)):
            self.last_time = max(self.last_time, t)
        addr = _addr(e)
        f = _fields(e)
        # something stopped: a controller incarnation ends, a holder stops using its leases
        if kind in ACTOR_DOWN:
            inc = self.current.get(addr)
            if inc is not None and inc.down is None:
                inc.down = e
            self._holder_stopped(addr, e)
        node = _down_node(e)
        if node is not None:
            for c, inc in self.current.items():
                if _node_of(c) == node and inc.down is None:
                    inc.down = e
            for s in [s for s in self.by_server if isinstance(s, str) and _node_of(s) == node]:
                self._holder_stopped(s, e)
        # the holder's side
        if kind == "server.stage_start":
            self.stage_start[addr] = t
        elif kind == "server.stage":
            # the stage ended: the holder released every lease it held for it (granted before the stage began)
            self._holder_stopped(addr, e, granted_by=self.stage_start.get(addr, -math.inf))
        elif kind == "lease.lost":
            self._holder_stopped(addr, e)  # it gives back every lease it holds
        elif kind == "server.state" and f.get("to") in FINISHED:
            self._holder_stopped(addr, e)
        # the controller's side
        if kind.startswith("admission.") or kind in CONTROLLER_KINDS:
            self._controller(addr, kind, f, e, t)

    def finish(self) -> LeaseReplay:
        """Judge what is open when the log ends."""
        end = self.last_time
        for c, inc in self.current.items():
            self._expire(c, end)
            watched = inc.down.get("time", end) if inc.down is not None else end
            self._check_leaks(inc, watched)
            if inc.down is not None:  # a controller that went down for good: its leases end with their term
                self._retire(inc, watched)
                self._expire(c, end)
        leaked = {id(lease) for lease, _ in self.leaks}
        self.pending = [x for inc in self.current.values() for x in inc.holders.values() if id(x) not in leaked]
        self.pending += [g for ghosts in self.ghosts.values() for g in ghosts.values()]
        return self

    # -- the holder's side -------------------------------------------------------------------

    def _holder_stopped(self, server: Any, e: dict, granted_by: float = math.inf) -> None:
        for lease in list(self.by_server.get(server, ())):
            if lease.gone is None and lease.granted_at <= granted_by:
                lease.gone = e
                if lease.ghost:  # nobody uses it any more, and no controller knows it: it is over
                    self._close(lease, "holder stopped")

    # -- the controller's side ---------------------------------------------------------------

    def _controller(self, c: str, kind: str, f: dict, e: dict, t: float) -> None:
        inc = self.current.get(c)
        if kind == "controller.start":
            self.starts += 1
            if inc is not None:
                self.restarts += 1
                end = inc.down.get("time", t) if inc.down is not None else t
                self._check_leaks(inc, end)
                self._retire(inc, end)
            self.current[c] = _Incarnation(c, inc.index + 1 if inc is not None else 1, e)
            self._expire(c, t)
            return
        if inc is None:
            inc = self.current[c] = _Incarnation(c, 0, None)
        self._expire(c, t)
        server, lid = f.get("server"), f.get("lease")
        if kind == "limit.changed":
            inc.limit = f.get("new", inc.limit)
        elif kind == "admission.grant":
            self.granted += 1
            kept = f.get("from_reservation") and inc.reserved.pop(server, None) is not None
            self._open(inc, lid, server, e, inc.epoch)
            if not kept:  # a reservation turned into its lease is no new admission: it was judged when made
                self._judge(inc, e)
        elif kind == "lease.adopted":
            self.granted += 1
            self.adopted += 1
            old = self._ghost(c, lid, server, f.get("epoch"))
            if old is not None:
                self._close(old, "adopted")  # carried over: the same holder, now this incarnation's
            self._open(inc, lid, server, e, f.get("epoch"))
            if old is None:
                self._judge(inc, e)  # a holder the log did not show as live: judged as a new admission
        elif kind == "admission.wake":
            if f.get("reserved"):
                inc.reserved[server] = e
                self._judge(inc, e)
        elif kind in ("admission.wake_failed", "waiting.dropped"):
            inc.reserved.pop(server, None)
        elif kind in ("lease.released", "lease.expired"):
            lease = inc.holders.get(lid)
            if lease is not None:
                self._close(lease, kind)
        elif kind == "lease.release_unknown":
            # The holder released a lease this incarnation does not hold: if an earlier incarnation
            # granted it to that server, it is over (a Release is sent only after the holder stopped).
            old = self._ghost(c, lid, server, None)
            if old is not None:
                self._close(old, kind)
        # lease.unknown: a renewal refused; ends nothing (see the module docstring).
        busy = len(inc.holders) + len(self.ghosts[c])
        self.peak = max(self.peak, busy)
        if isinstance(inc.limit, (int, float)):
            self.over = max(self.over, busy - inc.limit)

    def _open(self, inc: _Incarnation, lid: Any, server: Any, e: dict, epoch: Any) -> None:
        old = inc.holders.get(lid)
        if old is not None:  # the same id again in one incarnation: the new record replaces the old
            self.by_server[old.server].discard(old)
        lease = _Lease(inc, lid, server, e, epoch)
        inc.holders[lid] = lease
        self.by_server[server].add(lease)

    def _close(self, lease: _Lease, how: str) -> None:
        if lease.ghost:
            self.ghosts[lease.controller].pop((lease.incarnation, lease.lid), None)
        else:
            inc = self.current.get(lease.controller)
            if inc is not None and inc.holders.get(lease.lid) is lease:
                del inc.holders[lease.lid]
        held = self.by_server.get(lease.server)
        if held is not None:
            held.discard(lease)
            if not held:
                del self.by_server[lease.server]
        self.ended[how] += 1

    def _retire(self, inc: _Incarnation, end: float) -> None:
        """The incarnation ended at ``end``: its leases live on in their holders' hands until their term."""
        ttl = inc.ttl if isinstance(inc.ttl, (int, float)) else math.inf
        for lease in list(inc.holders.values()):
            del inc.holders[lease.lid]
            lease.ghost = True
            lease.until = end + ttl
            if lease.gone is not None:  # its holder had already stopped using it
                self._close(lease, "holder stopped")
            else:
                self.ghosts[inc.controller][(inc.index, lease.lid)] = lease
        inc.reserved.clear()

    def _expire(self, c: str, t: float) -> None:
        ghosts = self.ghosts.get(c)
        if ghosts:
            for g in [g for g in ghosts.values() if g.until <= t]:
                self._close(g, "term")

    def _ghost(self, c: str, lid: Any, server: Any, epoch: Any) -> _Lease | None:
        """The live earlier-incarnation lease ``lid`` of ``server`` (the latest; of that epoch when given)."""
        found = [g for g in self.ghosts.get(c, {}).values() if g.lid == lid and g.server == server]
        if epoch is not None and any(g.epoch == epoch for g in found):
            found = [g for g in found if g.epoch == epoch]
        return max(found, key=lambda g: g.incarnation) if found else None

    def _judge(self, inc: _Incarnation, e: dict) -> None:
        if not isinstance(inc.limit, (int, float)):
            self.unjudged.add(inc.controller)
            return
        self.judged += 1
        own = len(inc.holders) + len(inc.reserved)
        live = list(self.ghosts[inc.controller].values())
        if own + len(live) <= inc.limit:
            return
        self.violations.append(e)
        f = _fields(e)
        what = f"{_at(e)} to {f.get('server')}" + (f" (lease {f.get('lease')})" if "lease" in f else "")
        why = f"{len(inc.holders)} holders + {len(inc.reserved)} reserved"
        if live:
            why += (f" + {len(live)} live leases of earlier incarnations (the controller restarted at "
                    f"t={(inc.start or {}).get('time')})")
            if own <= inc.limit:  # the earlier incarnations' leases made the difference: show them
                seen = {id(x) for x in self.context}
                self.context += [x for x in [inc.start] + [g.event for g in live] if x and id(x) not in seen]
        self.problems.append(f"{what}: {why} = {own + len(live)} > limit {inc.limit}")

    def _check_leaks(self, inc: _Incarnation, until: float) -> None:
        """Leases of ``inc`` still open at ``until`` although their holder stopped more than ttl + slack before."""
        if not isinstance(inc.ttl, (int, float)):
            return
        for lease in inc.holders.values():
            g = lease.gone
            if g is not None and g.get("time", 0.0) + inc.ttl + self.slack <= until:
                if all(lease is not x for x, _ in self.leaks):
                    self.leaks.append((lease, g))


def check_admission(events: list[dict]) -> dict[str, Any]:
    """Rebuild holders, reservations and limits per controller incarnation from events; report violations.

    Holds if no grant, adoption or reservation ever takes holders + reservations
    + live leases of earlier incarnations above the limit in force. Also reports
    the peak number of holders, how far holders ever stood above a limit (after
    a decrease, before holders left), and the leases never released nor
    expired (``outstanding``: still open when the log ended).
    """
    r = LeaseReplay().run(events)
    return {"ok": not r.violations, "violations": r.violations[:10], "context": r.context[:10],
            "problems": r.problems[:10], "peak_holders": r.peak, "max_holders_over_limit": max(0, r.over),
            "granted": r.granted, "adopted": r.adopted, "ended": sum(r.ended.values()), "restarts": r.restarts,
            "outstanding": _sorted_ids(x.lid for x in r.pending)}


def _sorted_ids(ids) -> list:
    ids = list(ids)
    try:
        return sorted(ids)
    except TypeError:
        return sorted(ids, key=repr)


# --------------------------------------------------------------------------
# no grant while dormant
# --------------------------------------------------------------------------

def _dormant_grants(events: list[dict]) -> tuple[list[tuple[dict, dict]], int, int]:
    """(grant, the server's dormant state event) pairs; the number of grants; of servers ever dormant."""
    state: dict[str, dict] = {}
    dormant: set[str] = set()
    bad: list[tuple[dict, dict]] = []
    grants = 0
    for e in _ordered(events):
        kind = e.get("kind")
        if kind == "server.state":
            a = _addr(e)
            state[a] = e
            if _fields(e).get("to") == "dormant":
                dormant.add(a)
        elif kind == "admission.grant":
            grants += 1
            last = state.get(_fields(e).get("server"))
            if last is not None and _fields(last).get("to") == "dormant":
                bad.append((e, last))
    return bad, grants, len(dormant)


def check_no_grant_while_dormant(events: list[dict]) -> list[dict]:
    """Grants made to a server whose last state (per its own events) was dormant."""
    return [g for g, _ in _dormant_grants(events)[0]]


# --------------------------------------------------------------------------
# the checkers
# --------------------------------------------------------------------------

@attrs.frozen
class AdmissionLimit:
    """A resource never has more holders than its limit, across controller restarts (see the module docstring)."""

    name: str = "admission-limit"

    def check(self, events: list[dict]) -> Verdict:
        r = LeaseReplay().run(events)
        if not r.starts:
            return Verdict(self.name, "unknown", "no resource controller in this log (no controller.start)")
        if r.violations:
            return Verdict(self.name, "invalid",
                           f"{_plural(len(r.violations), 'admission')} went above the limit in force; first: "
                           + "; ".join(r.problems[:3]),
                           r.violations[:10] + r.context[:10])
        if not r.judged:
            why = (f"; {len(r.unjudged)} controllers admitted with no limit known (no controller.start)"
                   if r.unjudged else "")
            return Verdict(self.name, "unknown",
                           f"{_plural(r.starts, 'controller incarnation')} but nothing granted, adopted or reserved "
                           f"under a known limit: nothing to judge{why}")
        restarts = (f"; {_plural(r.restarts, 'controller restart')}, {r.adopted} leases adopted, "
                    f"{r.ended['lease.release_unknown']} released after a restart, "
                    f"{r.ended['term'] + r.ended['holder stopped']} ended with their holders or term"
                    if r.restarts else "")
        unjudged = f"; not judged (no limit known): {_names(sorted(r.unjudged))}" if r.unjudged else ""
        return Verdict(self.name, "valid",
                       f"{plural(r.granted, 'grant')}, peak {plural(r.peak, 'holder')}, never above the limit "
                       f"(holders above a lowered limit: at most {max(0, r.over)}){restarts}{unjudged}")


@attrs.frozen
class LeasesEnd:
    """Every granted lease is released or expires, per controller incarnation (see the module docstring).

    ``slack``: seconds beyond the ttl the controller may take to end a lease
    whose holder stopped using it.
    """

    name: str = "leases-end"
    liveness: ClassVar[bool] = True  # something must happen: an interrupted run cannot say it did not
    slack: float = 5.0

    def check(self, events: list[dict]) -> Verdict:
        r = LeaseReplay(self.slack).run(events)
        if not r.granted:
            return Verdict(self.name, "unknown", "no lease granted or adopted in this log: nothing to judge")
        if r.leaks:
            first, gone = r.leaks[0]
            evidence: list[dict] = []
            for lease, g in r.leaks:
                evidence += [lease.event, g]
            return Verdict(self.name, "invalid",
                           f"{_plural(len(r.leaks), 'lease')} never ended although their holders had stopped using "
                           f"them more than ttl + {self.slack}s earlier; first: lease {first.lid} of "
                           f"{first.controller} (incarnation {first.incarnation}) granted to {first.server} at "
                           f"{_at(first.event)}, holder stopped at {_at(gone)}", evidence)
        if r.pending:
            ghosts = sum(1 for x in r.pending if x.ghost)
            return Verdict(self.name, "unknown",
                           f"{_plural(len(r.pending), 'lease')} still open when the log ended ({ghosts} of them of "
                           f"earlier controller incarnations, within their term), held by servers still at work or "
                           f"stopped less than ttl + {self.slack}s before: cannot tell whether they end",
                           [x.event for x in r.pending])
        how = ", ".join(f"{n} {k}" for k, n in sorted(r.ended.items()))
        return Verdict(self.name, "valid",
                       f"every granted lease was released or expired ({r.granted} granted or adopted"
                       + (f", {_plural(r.restarts, 'controller restart')}" if r.restarts else "") + f"; {how})")


class _Faults:
    """Which faults are in force, replayed from fault events (for servers-done)."""

    def __init__(self, servers: set[str]) -> None:
        self.servers = servers
        self.partition = False  # net.partition .. net.heal
        self.cuts: set[tuple] = set()  # net.cut .. net.heal
        self.grudge = False  # nemesis.grudge .. nemesis.heal
        self.link_faults = False  # nemesis.link_fault .. nemesis.clear_link_faults
        self.paused: set[str] = set()  # nemesis.pause .. nemesis.resume (nodes)
        self.killed: set[str] = set()  # nemesis.kill .. nemesis.restart (nodes)
        self.crashed: set[str] = set()  # sim.crash .. sim.restart (addresses)
        self.actors: dict[str, set[str]] = defaultdict(set)  # node -> addresses seen on it

    def update(self, e: dict) -> bool:
        """Replay ``e``; True if it is a fault event (it starts, changes or ends a fault)."""
        kind = e.get("kind")
        f = _fields(e)
        a = _addr(e)
        self.actors[_node_of(a)].add(a)
        if kind == "net.partition":
            self.partition = True
        elif kind == "net.cut":
            self.cuts.add((f.get("src"), f.get("dst")))
        elif kind == "net.heal":
            self.partition = False
            self.cuts.clear()
        elif kind == "nemesis.grudge":
            self.grudge = bool(f.get("blocked", True))
        elif kind == "nemesis.heal":
            self.grudge = False
        elif kind == "nemesis.link_fault":
            self.link_faults = True
        elif kind == "nemesis.clear_link_faults":
            self.link_faults = False
        elif kind == "nemesis.pause":
            self.paused.add(f.get("node"))
        elif kind == "nemesis.resume":
            self.paused.discard(f.get("node"))
        elif kind == "nemesis.kill":
            self.killed.add(f.get("node"))
        elif kind == "nemesis.restart":
            self.killed.discard(f.get("node"))
        elif kind == "sim.crash":
            self.crashed.add(a)
        elif kind == "sim.restart":
            self.crashed.discard(a)
        else:
            return False
        return True

    def in_force(self) -> bool:
        """Some fault that can keep the fleet from finishing is in force.

        A server that is down (crashed, or its node killed) is judged by itself
        (it was stopped); it keeps no other server from finishing.
        """
        other_down = (self.crashed - self.servers) or any(
            not self.actors.get(n) or not self.actors[n] <= self.servers for n in self.killed)
        return bool(self.partition or self.cuts or self.grudge or self.link_faults or self.paused or other_down)


@attrs.frozen
class ServersDone:
    """Every server finishes its workflow once faults stop.

    ``settle``: seconds with nothing happening at any server (and no fault in
    force or changing) after which an unfinished server is *stuck* rather than
    still waiting its turn; it should exceed the longest stage.
    """

    name: str = "servers-done"
    liveness: ClassVar[bool] = True  # something must happen: an interrupted run cannot say it did not
    settle: float = 60.0

    def check(self, events: list[dict]) -> Verdict:
        ordered = _ordered(events)
        last: dict[str, dict] = {}
        where: dict[str, int] = {}
        for i, e in enumerate(ordered):
            if e.get("kind") == "server.state":
                a = _addr(e)
                last[a] = e
                where[a] = i
        expected = _expected(ordered, SERVER_KIND)  # from the run's run.topology event, if it has one
        if not last:
            if expected:
                return Verdict(self.name, "unknown", f"the topology has {expected} servers but none logged a state "
                                                     "(the run stopped before they started?): nothing to judge")
            return Verdict(self.name, "unknown", "no server in this log (no server.state events): nothing to judge")
        servers = set(last)
        end = max(e.get("time", 0.0) for e in ordered)
        activity: list[float] = []  # times of the servers' own events
        fault_times: list[float] = []  # times of fault events
        in_force: list[bool] = []  # after each of them: some fault in force
        stopped: dict[str, dict] = {}  # server -> the first event that stopped it after its last state
        faults = _Faults(servers)
        for i, e in enumerate(ordered):
            kind = e.get("kind") or ""
            a = _addr(e)
            t = e.get("time", 0.0)
            if a in servers:
                activity.append(t)
            if faults.update(e):
                fault_times.append(t)
                in_force.append(faults.in_force())
            node = _down_node(e)
            hit = [a] if kind in ACTOR_DOWN and a in servers else []
            if node is not None:
                hit += [s for s in servers if _node_of(s) == node]
            for s in hit:
                if i > where[s] and s not in stopped:
                    stopped[s] = e
        failed = [e for e in last.values() if _fields(e).get("to") == "failed"]
        unfinished = [e for e in last.values() if _fields(e).get("to") not in FINISHED]
        stuck: list[tuple[dict, float]] = []
        waiting: list[dict] = []
        for e in unfinished:
            a = _addr(e)
            seen_until = stopped[a].get("time", end) if a in stopped else end
            k = bisect.bisect_right(activity, seen_until)
            quiet_since = activity[k - 1] if k else -math.inf
            k = bisect.bisect_left(fault_times, seen_until)  # faults strictly before: what stopped it is no fault
            if k:
                quiet_since = max(quiet_since, fault_times[k - 1])
            if seen_until - quiet_since >= self.settle and not (k and in_force[k - 1]):
                stuck.append((e, seen_until - quiet_since))
            else:
                waiting.append(e)
        total = max(len(last), expected or 0)
        silent = total - len(last)  # servers of the topology that never logged a state
        silent_stuck = silent_waiting = 0
        if silent:
            k = bisect.bisect_right(activity, end)
            quiet = end - (activity[k - 1] if k else -math.inf)
            quiet = min(quiet, end - fault_times[-1]) if fault_times else quiet
            if quiet >= self.settle and not (in_force and in_force[-1]):
                silent_stuck = silent
            else:
                silent_waiting = silent
        if failed or stuck or silent_stuck:
            parts = []
            if silent_stuck:
                parts.append(f"{_plural(silent_stuck, 'server')} of the topology never logged a state")
            if failed:
                parts.append(f"{_plural(len(failed), 'server')} failed: {_names([_addr(e) for e in failed])}")
            if stuck:
                states = Counter(_fields(e).get("to") for e, _ in stuck)
                quiet = min(q for _, q in stuck)
                parts.append(f"{_plural(len(stuck), 'server')} stuck ({dict(states)}; nothing happened at any server "
                             f"for {quiet:.1f}s or more before the log ended, no fault in force): "
                             f"{_names([_addr(e) for e, _ in stuck])}")
            extra = f"; {len(waiting)} more unfinished, not judged" if waiting else ""
            return Verdict(self.name, "invalid", f"{len(failed) + len(stuck) + silent_stuck} of {total} servers did not finish: "
                           + "; ".join(parts) + extra, failed + [e for e, _ in stuck])
        if waiting or silent_waiting:
            if not waiting:
                return Verdict(self.name, "unknown", f"{silent_waiting} of the topology's {total} servers logged no "
                                                     "state yet when the log ended: cannot tell whether they would "
                                                     "have finished")
            states = Counter(_fields(e).get("to") for e in waiting)
            n_stopped = sum(1 for e in waiting if _addr(e) in stopped)
            return Verdict(self.name, "unknown",
                           f"{len(waiting) + silent_waiting} of {total} servers unfinished ({dict(states)}"
                           f"{f', {silent_waiting} with no state yet' if silent_waiting else ''}; {n_stopped} stopped "
                           f"before finishing), but the log ended, or they were stopped, while servers were still "
                           f"active or faults in force (less than {self.settle}s of quiet): cannot tell whether they "
                           f"would have finished: {_names([_addr(e) for e in waiting])}", waiting)
        return Verdict(self.name, "valid", f"all {len(last)} servers reached done")


@attrs.frozen
class NoGrantWhileDormant:
    """No grant goes to a server that is powered off (dormant) by its own last state."""

    name: str = "no-grant-while-dormant"

    def check(self, events: list[dict]) -> Verdict:
        bad, grants, dormant = _dormant_grants(events)
        if not grants:
            return Verdict(self.name, "unknown", "no grants in this log: nothing to judge")
        if bad:
            g, d = bad[0]
            evidence: list[dict] = []
            for pair in bad:
                evidence += list(pair)
            return Verdict(self.name, "invalid",
                           f"{_plural(len(bad), 'grant')} went to dormant (powered-off) servers; first: {_at(g)} to "
                           f"{_fields(g).get('server')}, dormant since {_at(d)}", evidence)
        if not dormant:
            return Verdict(self.name, "unknown", f"{_plural(grants, 'grant')}, but no server was ever dormant: "
                                                 "nothing to judge")
        return Verdict(self.name, "valid", f"no grant went to a dormant server ({plural(grants, 'grant')}, "
                                           f"{_plural(dormant, 'server')} dormant at some time)")


CHECKERS = (AdmissionLimit(), LeasesEnd(), ServersDone(), NoGrantWhileDormant())
