"""Invariant checkers of the local-plane protocol (the ``edge`` plug-in).

How this works
--------------
Each checker judges a run from its event log alone (DESIGN.md, "Invariants";
the events are those of ``protocols/localplane``). *Islands*: a connected
island is a connected component of the network as the partition events
describe it (``net.partition`` / ``net.cut`` / ``net.heal`` from the
simulator, ``nemesis.grudge`` / ``nemesis.heal`` from the chaos harness),
replayed by ``_Islands``. A simulated chaos run logs both: the harness's
``nemesis.*`` op and the simulator's ``net.heal`` + ``net.cut`` events that
carry it out; when a log has ``net.*`` partition events they alone describe
the network. A crash (``sim.crash``) or a kill (``nemesis.kill``, every actor
of the node) ends what the node led or held.

* ``one-leader-per-island-term`` - at most one leader per connected island per
  term. Two ``plane.leader`` events of one term are a violation if their
  electorates (``voters``) overlap, or if the later one was elected in the
  same island while the earlier one still led (no ``plane.stepdown``, crash,
  kill or newer election of its node in between). Evidence: both
  ``plane.leader`` events (``a``, ``b``).
* ``plan-holders`` - every role in a complete plan (``plane.plan_complete``,
  ``manager.plan_final``) has exactly one holder per share, and a role with
  more than one share is a declared split (in the plan's ``splits``, or a
  final plan's shares); and, from the holders' own ``edge.role_assigned`` /
  ``edge.role_relinquished`` events, at most one holder per role share within
  a connected island, whatever plan each holds it under. Holdings are keyed by
  role and share across plans: share ``s`` of ``n`` is the part
  ``[s/n, (s+1)/n)`` of the role, so ``store#0/1`` of one plan and
  ``store#1/2`` of another are two holders of the same part. Two holders of
  one share under the *same* plan are a violation at once (one plan never
  gives a share twice), wherever they are. Under different plans they are a
  violation when they hold it in the same island, both at once, for longer
  than ``settle`` seconds (default 0.5, the handover bound of
  ``ratified-after-heal``: a merge after a heal, or a handover to a final
  plan, must be resolved within it); an overlap still open when the log ends
  counts up to the last event. Holders on opposite sides of a partition are
  no violation (each island serves on its own, by design). Events of one
  instant count as simultaneous. Evidence: the ``edge.role_assigned`` events
  of both holders (``a``, ``b``), or the faulty plan (``event``).
* ``governance`` - every assent decision (``plane.assent``, ``manager.assent``)
  used the rule the intermediate representation prescribes for the
  electorate's size and the plane's state (connected or isolated; the rules
  come from ``manager.deployed``), required the right number of yes votes,
  and its outcome follows from the votes. Evidence: the decision (``event``).
* ``ratified-after-heal`` - after the network heals (a ``net.heal`` or
  ``nemesis.heal`` ending a partition; one that a new partition follows at
  the same instant - the simulator driver replacing one grudge by another -
  is no heal), a final plan (``manager.plan_final``)
  follows within ``bound`` seconds and every temporary role held at the heal
  ends (relinquished or converted to final) within ``bound`` of the heal (a
  node whose link comes back after the first final plan is reconciled by a
  later one); no final role is ever
  taken while another live node still holds any share of that role outside the
  final plan (two holders after reconnect, the Nomad/KubeEdge failure) - unless
  that node's holding is a temporary one of an isolated plane it is still in
  (between its ``edge.isolation_declared`` and ``edge.isolation_ended``: an
  island on the other side of a partition serves on its own, by design); and
  a role that moved was without a holder for at most ``handover_bound`` - a
  gap that opened within ``bound`` of the latest heal (a vacancy that opens
  later, e.g. from renewals lost under loss, is no handover: the
  ``holderless-gap`` bound judges it).
  Evidence: the offending ``edge.role_assigned`` or ``manager.plan_final``
  (``event``), the other holding (``other``), the relinquish that left the
  role vacant (``vacated``), the heal (``heal``).

* ``holderless-gap`` - in every run, not only after a heal: no deployed edge
  node is left without a holder of a service role (``manager.deployed``
  ``roles``) in its connected island for longer than ``bound`` seconds
  (default 3.0). For each live, deployed edge node and role, a gap opens when
  the role stops being covered in the node's island (the shares held there by
  live nodes no longer cover the whole role: a holder gave it up, crashed or
  was killed, or a partition put it on the other side) after it had been
  covered for that node, and closes when it is covered again or a plan made
  in the node's island declares it unfilled (``plane.plan_complete``
  ``unfilled``, or a ``manager.plan_final`` without it: a decision that
  nobody there fits, which is the plane's to retry). The bound covers the
  slowest decision the protocol promises with ``edge.toml``'s timings (the
  manager's vacancy bound: ``isolation_after`` 1.0 + ``fit_timeout`` 0.3 +
  ``proposal_timeout`` 0.3 + the release wait, at most ``lease`` 1.0 +
  ``lease_margin`` 0.2 = 2.8 s, then one Commit delivery). A gap still open
  when the log ends counts if it is already longer than the bound. Evidence:
  the event that opened the gap (``vacated``) and the one that closed it
  (``event``), or the last event of the log.
* ``clients-single-holder`` - clients are never served by two holders of one
  role share (``client.request`` of the site's simulated clients,
  ``protocols/localplane/clients.py``: the servers that answered one request,
  each ``[address, key, plan_id]``). Two servers of overlapping shares under
  the *same* plan are a violation at once. Under different plans they are a
  violation when that client sees the same two keep answering for longer than
  ``settle`` seconds (the settle time of ``plan-holders``: a merge or a
  handover in flight); shorter doubles are counted in the verdict. Evidence:
  the first and the last ``client.request`` that saw them (``a``, ``b``), or
  the request (``event``).

Verdicts: ``invalid`` with one evidence item per violation: a dict with its
``why`` and the offending event records, as the log holds them, as values.
``unknown`` when there is nothing to judge: no local-plane events at all, or
no ``plane.leader`` (leaders), no plan and no role taken (holders), no assent
decision (governance), no heal after a partition (ratified-after-heal) - never
``valid`` for an empty judgement. ``tests/test_edge_checkers.py`` (``CASES``)
shows each one failing and each one unable to judge.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, ClassVar

import attrs

from protocols.localplane.ir import required_assent, rule_for
from protocols.localplane.messages import Governance
from topologies.checkers import Verdict, plural

__all__ = [
    "check_clients",
    "check_governance",
    "check_holderless_gaps",
    "check_leaders",
    "check_plan_holders",
    "check_ratified_after_heal",
]


def _ordered(events: list[dict]) -> list[dict]:
    return sorted(events, key=lambda e: e["time"])


def _addr(e: dict) -> str:
    return f"{e['node']}/{e['actor']}"


_NET = ("net.partition", "net.cut", "net.heal")


def _net_logged(events: list[dict]) -> bool:
    """True if the simulator logged the network's changes (then ``nemesis.*`` ops only announce them)."""
    return any(e["kind"] in _NET for e in events)


_PLANE_KINDS = ("edge.", "plane.", "manager.", "sim.")


class _Islands:
    """The network's connected components, replayed from partition events (node names)."""

    def __init__(self, net_logged: bool = False) -> None:
        self.island: dict[str, int] | None = None  # None: fully connected
        self.blocked: set[tuple[str, str]] = set()
        self.nodes: set[str] = set()
        self.net_logged = net_logged
        self.by_cuts = False  # island computed from cut links (net.cut, nemesis.grudge), not named islands

    def update(self, e: dict) -> bool:
        k = e["kind"]
        f = e.get("fields") or {}
        if self.net_logged and k in ("nemesis.grudge", "nemesis.heal"):
            return True  # the net.* events that follow carry it out
        if k == "net.cut":
            self.blocked.add((f["src"], f["dst"]))
            self.island = self._components()
            self.by_cuts = True
            return True
        if k == "net.partition":
            self.by_cuts = False
            self.island = {}
            for i, isl in enumerate(f.get("islands", [])):
                for n in isl:
                    self.island[n] = i
            for n in f.get("rest", []):
                self.island[n] = -1
            return True
        if k in ("net.heal", "nemesis.heal"):
            self.island = None
            self.blocked = set()
            self.by_cuts = False
            return True
        if k == "nemesis.grudge":
            self.blocked = {tuple(p) for p in f.get("blocked", [])}
            self.island = self._components()
            self.by_cuts = True
            return True
        node = e["node"]
        if not str(k).startswith(_PLANE_KINDS):
            return False  # only local-plane nodes are members (not the launcher, nor the chaos control node)
        if node not in self.nodes:
            self.nodes.add(node)
            if self.by_cuts:  # a node first heard of after the cuts: it is with everyone it is not cut from
                self.island = self._components()
        return False

    def _components(self) -> dict[str, int]:
        nodes = sorted(self.nodes | {n for p in self.blocked for n in p})
        parent = {n: n for n in nodes}

        def find(x: str) -> str:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for i, a in enumerate(nodes):
            for b in nodes[i + 1:]:
                if (a, b) not in self.blocked and (b, a) not in self.blocked:
                    parent[find(a)] = find(b)
        roots = sorted({find(n) for n in nodes})
        return {n: roots.index(find(n)) for n in nodes}

    def same(self, a: str, b: str) -> bool:
        if self.island is None:
            return True
        # nodes unnamed in a partition form one extra island together
        return self.island.get(a, -1) == self.island.get(b, -1)


def _has_plane(events: list[dict]) -> bool:
    return any(e["kind"].startswith(("plane.", "manager.", "edge.")) for e in events)


# -- one leader per island and term ------------------------------------------------------------------


def _killed(e: dict) -> str | None:
    """The node a ``nemesis.kill`` took down (every actor of it), else None."""
    if e["kind"] != "nemesis.kill":
        return None
    node = (e.get("fields") or {}).get("node")
    return node if isinstance(node, str) else None


def check_leaders(events: list[dict]) -> dict[str, Any]:
    islands = _Islands(_net_logged(events))
    leading: dict[str, tuple[int, dict]] = {}  # node -> (term, leader event) while it leads
    by_term: dict[int, list[dict]] = defaultdict(list)
    violations: list[dict] = []
    for e in _ordered(events):
        if islands.update(e):
            continue
        k = e["kind"]
        if k == "plane.leader":
            term = e["fields"]["term"]
            voters = set(e["fields"].get("voters", []))
            for other in by_term[term]:
                if other["node"] == e["node"]:
                    continue
                if voters & set(other["fields"].get("voters", [])):
                    violations.append({"why": f"term {term}: leaders {other['node']} and {e['node']} "
                                              "elected by overlapping electorates", "term": term, "a": other, "b": e})
                elif leading.get(other["node"], (None, None))[1] is other and islands.same(other["node"], e["node"]):
                    violations.append({"why": f"term {term}: {e['node']} elected in the island where {other['node']} "
                                              "still leads", "term": term, "a": other, "b": e})
            by_term[term].append(e)
            leading[e["node"]] = (term, e)
        elif k in ("plane.stepdown", "sim.crash", "sim.restart"):
            leading.pop(e["node"], None)
        elif k == "edge.role_relinquished" and e["fields"].get("role") == "leader":
            leading.pop(e["node"], None)
        elif _killed(e) is not None:
            leading.pop(_killed(e), None)
    return {"ok": not violations, "violations": violations, "leaders": sum(len(v) for v in by_term.values()),
            "terms": len(by_term)}


# -- plans and holders --------------------------------------------------------------------------------


def _plan_problems(e: dict) -> list[dict]:
    f = e["fields"]
    shares: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    counts: dict[str, set[int]] = defaultdict(set)
    for a in f.get("assignments", []):
        shares[a["role"]][a["share"]].append(a["holder"])
        counts[a["role"]].add(a.get("shares", 1))
    bad = []
    splits = f.get("splits") or {}
    plan = f.get("plan_id", "?")
    for role, by_share in shares.items():
        n = counts[role]
        if len(n) != 1:
            bad.append({"why": f"plan {plan}: role {role} has inconsistent share counts {sorted(n)}", "event": e})
            continue
        k = n.pop()
        if sorted(by_share) != list(range(k)):
            bad.append({"why": f"plan {plan}: role {role} has shares {sorted(by_share)} of {k}", "event": e})
        for s, holders in by_share.items():
            if len(holders) != 1:
                bad.append({"why": f"plan {plan}: role {role} share {s} has holders {holders}", "event": e})
        if k > 1 and e["kind"] == "plane.plan_complete" and splits.get(role) != k:
            bad.append({"why": f"plan {plan}: role {role} split in {k} without a declared split", "event": e})
        if len({h for hs in by_share.values() for h in hs}) != sum(len(hs) for hs in by_share.values()):
            bad.append({"why": f"plan {plan}: role {role}: one node holds two shares", "event": e})
    return bad


def _share_of(f: dict) -> tuple[str, int, int]:
    """(role, share, shares) of a holding, from its fields or else its key ``"store#0/2"``."""
    role, _, rest = str(f.get("key", "")).partition("#")
    s, _, n = rest.partition("/")
    share = f.get("share", int(s) if s.isdigit() else 0)
    shares = f.get("shares", int(n) if n.isdigit() else 1)
    return f.get("role", role), int(share), max(1, int(shares))


def _overlap(a: tuple[str, int, int], b: tuple[str, int, int]) -> bool:
    """Do two shares of one role cover a common part of it? Share s of n is the part [s/n, (s+1)/n)."""
    (ra, sa, na), (rb, sb, nb) = a, b
    return ra == rb and sa * nb < (sb + 1) * na and sb * na < (sa + 1) * nb


_EPS = 1e-9


def check_plan_holders(events: list[dict], settle: float = 0.5) -> dict[str, Any]:
    """See the module docstring; ``settle``: the longest two holders of one role share may overlap in one island."""
    ordered = _ordered(events)
    islands = _Islands(_net_logged(ordered))
    violations: list[dict] = []
    plans = assignments = 0
    held: dict[str, dict[str, tuple[int, dict]]] = defaultdict(dict)  # holder address -> key -> (index, assigned)
    overlaps: dict[tuple[int, int], tuple[float, dict, dict]] = {}  # (index a, index b) -> (since, a, b)
    reported: set[tuple[int, int]] = set()
    longest = 0.0  # the longest overlap in one island that ended within the settle time
    unsettled = 0  # overlaps still open at the end of the log, younger than the settle time
    dirty: set[str] = set()  # roles whose holders or islands changed since the last settle point
    everything = False

    def holdings_of(role: str) -> list[tuple[str, int, dict, tuple[str, int, int]]]:
        return [(who, i, ev, sh) for who, hs in held.items() for i, ev in hs.values()
                if (sh := _share_of(ev["fields"]))[0] == role]

    def close(pair: tuple[int, int], until: float, why: str) -> None:
        nonlocal longest, unsettled
        since, a, b = overlaps.pop(pair)
        took = until - since
        if took > settle + _EPS:
            if pair not in reported:
                reported.add(pair)
                fa, fb = a["fields"], b["fields"]
                violations.append({"why": f"{_share_of(fa)[0]}: {_addr(a)} holds {fa.get('key')} of "
                                          f"{fa.get('plan_id')} and {_addr(b)} {fb.get('key')} of {fb.get('plan_id')}, "
                                          f"in one island for {took:.3f}s{why} (settle {settle}s)",
                                   "since": since, "a": a, "b": b})
        elif why:
            unsettled += 1  # still overlapping when the log ends, for less than the settle time: cannot tell
        else:
            longest = max(longest, took)

    def settle_at(t: float) -> None:
        nonlocal everything
        roles = set(dirty)
        if everything:  # the islands changed: every role held, and every overlap still open
            roles |= {_share_of(ev["fields"])[0] for hs in held.values() for _, ev in hs.values()}
            roles |= {_share_of(a["fields"])[0] for _, a, _ in overlaps.values()}
        for role in sorted(roles):
            hs = holdings_of(role)
            now: set[tuple[int, int]] = set()
            for x in range(len(hs)):
                for y in range(x + 1, len(hs)):
                    (wa, ia, ea, sa), (wb, ib, eb, sb) = sorted((hs[x], hs[y]), key=lambda h: h[1])
                    if wa == wb or not _overlap(sa, sb):
                        continue
                    pair = (ia, ib)
                    if ea["fields"].get("plan_id") == eb["fields"].get("plan_id"):
                        if pair not in reported:  # one plan never gives a share to two nodes: no settle time
                            reported.add(pair)
                            violations.append({"why": f"{eb['fields'].get('key')} of {eb['fields'].get('plan_id')} "
                                                      f"held by {wb} while {wa} holds it", "a": ea, "b": eb})
                        continue
                    if islands.same(ea["node"], eb["node"]):
                        now.add(pair)
                        overlaps.setdefault(pair, (t, ea, eb))
            for pair in [p for p, (_, a, _) in overlaps.items() if _share_of(a["fields"])[0] == role and p not in now]:
                close(pair, t, "")
        dirty.clear()
        everything = False

    at = ordered[0]["time"] if ordered else 0.0
    for n, e in enumerate(ordered):
        if e["time"] > at:
            if dirty or everything:
                settle_at(at)
            at = e["time"]
        before = islands.island
        if islands.update(e):
            everything = everything or islands.island is not before
            continue
        if islands.island is not before:
            everything = True
        k = e["kind"]
        f = e.get("fields") or {}
        if k in ("plane.plan_complete", "manager.plan_final"):
            plans += 1
            violations += _plan_problems(e)
        elif k == "edge.role_assigned":
            assignments += 1
            held[_addr(e)][f["key"]] = (n, e)
            dirty.add(_share_of(f)[0])
        elif k == "edge.role_relinquished":
            if held[_addr(e)].pop(f["key"], None) is not None:
                dirty.add(_share_of(f)[0])
        elif k == "sim.crash" or _killed(e) is not None:
            gone = [a for a in held if (a == _addr(e) if k == "sim.crash" else a.partition("/")[0] == _killed(e))]
            for a in gone:
                dirty.update(_share_of(ev["fields"])[0] for _, ev in held.pop(a).values())
    if dirty or everything:
        settle_at(at)
    for pair in sorted(overlaps):
        close(pair, at, " until the log ends")
    return {"ok": not violations, "violations": violations, "plans": plans, "assignments": assignments,
            "longest": longest, "unsettled": unsettled}


# -- governance -----------------------------------------------------------------------------------------


def check_governance(events: list[dict]) -> dict[str, Any]:
    gov: Governance | None = None
    violations: list[dict] = []
    decisions = 0
    for e in _ordered(events):
        k = e["kind"]
        f = e.get("fields") or {}
        if k == "manager.deployed" and "governance" in f:
            g = f["governance"]
            gov = Governance(size_threshold=g["size_threshold"], connected_rule=g["connected"],
                             isolated_below=g["isolated_below"], isolated_above=g["isolated_above"])
        elif k in ("plane.assent", "manager.assent"):
            decisions += 1
            n = f["electorate"]
            isolated = bool(f.get("isolated", k == "plane.assent"))
            if k == "plane.assent" and not isolated:
                violations.append({"why": "an isolated plane decided under connected rules", "event": e})
            rule = f["rule"]
            if gov is not None:
                want = rule_for(gov, n, isolated)
                if rule != want:
                    violations.append({"why": f"rule {rule} used, {want} prescribed for {n} "
                                              f"{'isolated' if isolated else 'connected'} members", "event": e})
                    continue
            try:
                need = required_assent(rule, n)
            except ValueError as err:
                violations.append({"why": str(err), "event": e})
                continue
            if f["required"] != need:
                violations.append({"why": f"required {f['required']} yes votes, rule {rule} of {n} needs {need}",
                                   "event": e})
            agreed = bool(f["accepted"]) and f["yes"] >= need
            if (f["outcome"] == "agreed") != agreed:
                violations.append({"why": f"outcome {f['outcome']} with {f['yes']} yes of {need} needed, "
                                          f"accepted={f['accepted']}", "event": e})
    return {"ok": not violations, "violations": violations, "decisions": decisions, "known_rules": gov is not None}


# -- after healing --------------------------------------------------------------------------------------


def _replaced_grudges(events: list[dict], starts: tuple[str, ...], ends: tuple[str, ...]) -> set[int]:
    """Indexes (in ``events``, ordered) of heal events that a partition event of the same instant follows.

    The simulator driver carries out a :class:`Grudge` that replaces another (the ``split-site`` nemesis: the
    manager away, then the site split, then merged) as a network reset, ``net.heal``, then the new grudge's
    ``net.cut`` events, all at one instant: the network is never whole, and a real run logs only the new
    ``nemesis.grudge``. Such a heal is not a heal."""
    out: set[int] = set()
    for i, e in enumerate(events):
        if e["kind"] not in ends:
            continue
        for x in events[i + 1:]:
            if x["time"] != e["time"]:
                break
            if x["kind"] in starts:
                out.add(i)
                break
    return out


def check_ratified_after_heal(events: list[dict], bound: float = 2.0, handover_bound: float = 0.5) -> dict[str, Any]:
    """See the module docstring; ``bound``: heal -> final plan; ``handover_bound``: longest holderless gap."""
    events = _ordered(events)
    violations: list[dict] = []
    held: dict[str, dict[str, dict]] = defaultdict(dict)  # node -> key -> role_assigned fields
    assigned: dict[tuple[str, str], dict] = {}  # (node, key) -> the role_assigned event of its holding
    vacated: dict[str, dict] = {}  # role -> the relinquish by which its last holder gave it up
    partitioned = False
    heals: list[tuple[dict, dict[tuple[str, str], dict]]] = []  # (heal event, temporary holdings at the heal)
    finals: list[dict] = []
    dead: set[str] = set()
    isolated: set[str] = set()  # nodes between isolation_declared and isolation_ended
    starts, ends_ = (("net.partition", "net.cut"), ("net.heal",)) if _net_logged(events) else (("nemesis.grudge",), ("nemesis.heal",))
    replaced = _replaced_grudges(events, starts, ends_)
    for i, e in enumerate(events):
        k = e["kind"]
        f = e.get("fields") or {}
        if i in replaced:
            continue  # a grudge replaced at one instant: the network was never whole
        if k == "edge.isolation_declared":
            isolated.add(_addr(e))
        elif k == "edge.isolation_ended":
            isolated.discard(_addr(e))
        elif k in starts:
            partitioned = True
        elif k in ends_:
            if partitioned:
                temp = {(n, key): assigned[(n, key)] for n, hs in held.items() for key, h in hs.items()
                        if h["temporary"] and n not in dead}
                heals.append((e, temp))
            partitioned = False
        elif k == "sim.crash":
            who = _addr(e)
            dead.add(who)
            held.pop(who, None)
        elif k == "sim.restart":
            dead.discard(_addr(e))
        elif _killed(e) is not None:  # a real run's kill: every actor of the node, with its holdings
            for who in [n for n in held if n.partition("/")[0] == _killed(e)]:
                dead.add(who)
                held.pop(who, None)
        elif k == "nemesis.restart":
            dead -= {n for n in dead if n.partition("/")[0] == f.get("node")}
        elif k == "edge.role_assigned":
            who = _addr(e)
            role = f["role"]
            if not f["temporary"]:
                others = sorted((n, key) for n, hs in held.items() if n != who and n not in dead
                                for key, h in hs.items() if h["role"] == role and h["plan_id"] != f["plan_id"]
                                and not (h["temporary"] and n in isolated))
                for n, key in others:
                    violations.append({"why": f"final {role} taken by {who} while {n} still holds {key} "
                                              f"of {held[n][key]['plan_id']}", "event": e, "other": assigned[(n, key)]})
                if (role in vacated and not f.get("converted") and heals
                        and vacated[role]["time"] - heals[-1][0]["time"] <= bound):
                    # a handover: the gap opened while a heal was being settled (a vacancy later, e.g. from lost
                    # renewals under loss, is no handover: holderless-gap judges it)
                    gap = e["time"] - vacated[role]["time"]
                    if gap > handover_bound:
                        violations.append({"why": f"{role} had no holder for {gap:.3f}s during the handover",
                                           "event": e, "vacated": vacated[role]})
            held[who][f["key"]] = {**f, "time": e["time"]}
            assigned[(who, f["key"])] = e
            vacated.pop(role, None)
        elif k == "edge.role_relinquished":
            who = _addr(e)
            h = held[who].pop(f["key"], None)
            if h is not None and not any(x["role"] == f["role"] for hs in held.values() for x in hs.values()):
                vacated[f["role"]] = e
        elif k == "manager.plan_final":
            finals.append(e)
    ends: dict[tuple[str, str], list[float]] = defaultdict(list)
    for e in events:
        if e["kind"] == "edge.role_relinquished" or (e["kind"] == "edge.role_assigned" and e["fields"].get("converted")):
            ends[(_addr(e), e["fields"]["key"])].append(e["time"])
    last = events[-1]["time"] if events else 0.0
    outcomes = []
    for heal, temp in heals:
        t = heal["time"]
        final = next((x for x in finals if x["time"] >= t), None)
        if final is None:
            if last - t > bound:
                violations.append({"why": f"no final plan within {bound}s of the heal at {t:.3f}", "heal": heal})
            continue
        took = final["time"] - t
        outcomes.append({"heal": t, "plan_id": final["fields"]["plan_id"], "ratified": final["fields"]["ratified"],
                         "took": took})
        if took > bound:
            violations.append({"why": f"final plan {took:.3f}s after the heal (bound {bound}s)", "event": final,
                               "heal": heal})
        deadline = max(final["time"], t + bound)  # a node that reconnects late is reconciled by a later plan
        for (n, key), held_ev in sorted(temp.items(), key=lambda kv: kv[0]):
            if n in dead or any(t <= x <= deadline + 1e-9 for x in ends[(n, key)]):
                continue
            if last < deadline:
                continue  # the log ends too early to tell
            violations.append({"why": f"temporary {key} of {n} neither ratified nor replaced within {bound}s of the heal",
                               "event": held_ev, "heal": heal})
    return {"ok": not violations, "violations": violations, "heals": len(heals), "outcomes": outcomes}


# -- holderless gaps, in every run ----------------------------------------------------------------------------


def _covered(shares: set[tuple[int, int]]) -> bool:
    """Do these shares (s of n: the part [s/n, (s+1)/n)) cover the whole role?"""
    reach = 0.0
    for lo, hi in sorted((s / n, (s + 1) / n) for s, n in shares):
        if lo > reach + _EPS:
            return False
        reach = max(reach, hi)
    return reach >= 1.0 - _EPS


def check_holderless_gaps(events: list[dict], bound: float = 3.0) -> dict[str, Any]:
    """See the module docstring; ``bound``: the longest a deployed edge node's island may have no holder of a role."""
    ordered = _ordered(events)
    islands = _Islands(_net_logged(ordered))
    violations: list[dict] = []
    roles: list[str] = []
    held: dict[str, dict[str, dict]] = defaultdict(dict)  # holder address -> key -> role_assigned fields
    nodes: set[str] = set()  # deployed edge nodes (node names), alive
    was: dict[tuple[str, str], bool] = {}  # (node, role) -> covered for it at the last judgement
    gaps: dict[tuple[str, str], dict] = {}  # (node, role) -> the event that opened the gap
    reported: set[tuple[str, str, float]] = set()
    longest = 0.0
    judged = 0
    last_change: dict | None = None  # the latest holder or network event (what opened a gap)

    def close(key: tuple[str, str], e: dict, why: str) -> None:
        nonlocal longest
        opened = gaps.pop(key)
        took = e["time"] - opened["time"]
        if took > bound + _EPS:
            tag = (key[0], key[1], opened["time"])
            if tag not in reported:
                reported.add(tag)
                violations.append({"why": f"{key[1]} had no holder in the island of {key[0]} for {took:.3f}s{why} "
                                          f"(bound {bound}s)", "vacated": opened, "event": e})
        else:
            longest = max(longest, took)

    def judge(e: dict, declared: dict[str, set[str]] | None = None) -> None:
        """Coverage for every live deployed node and role after the events of one instant."""
        nonlocal judged
        for n in sorted(nodes):
            for r in roles:
                shares = {(f["share"], f["shares"]) for who, hs in held.items()
                          if who.partition("/")[0] not in dead and islands.same(who.partition("/")[0], n)
                          for f in hs.values() if f["role"] == r}
                cov = _covered(shares)
                key = (n, r)
                if cov:
                    if key in gaps:
                        close(key, e, "")
                    was[key] = True
                    judged += 1
                elif was.get(key):
                    was[key] = False
                    gaps.setdefault(key, last_change or e)
                if key in gaps and declared is not None and r in declared.get(n, set()):
                    close(key, e, " until a plan declared it unfilled")
                    was[key] = False  # a decision was made: a new gap opens only once it is held again

    dead: set[str] = set()
    deployed: set[str] = set()
    pending = False
    at = ordered[0]["time"] if ordered else 0.0
    prev: dict | None = None
    for e in ordered:
        if e["time"] > at and pending and prev is not None:
            judge(prev)
            pending = False
        at = e["time"]
        prev = e
        before = islands.island
        if islands.update(e) or islands.island is not before:
            pending = True
            last_change = e
        k = e["kind"]
        f = e.get("fields") or {}
        if k == "manager.deployed":
            roles = [r for r in f.get("roles") or [] if isinstance(r, str)]
        elif k == "edge.deployed":
            nodes.add(e["node"])
            deployed.add(e["node"])
            dead.discard(e["node"])
        elif k in ("sim.restart", "nemesis.restart"):
            node = e["node"] if k == "sim.restart" else f.get("node")
            if node in deployed and (k == "nemesis.restart" or e["actor"] == "edge"):
                nodes.add(node)  # a restarted node is judged again once a role is held for it
                dead.discard(node)
        elif k == "edge.role_assigned":
            held[_addr(e)][f["key"]] = {"role": _share_of(f)[0], "share": _share_of(f)[1], "shares": _share_of(f)[2]}
            pending = True
            last_change = e
        elif k == "edge.role_relinquished":
            if held[_addr(e)].pop(f["key"], None) is not None:
                pending = True
                last_change = e
        elif k == "sim.crash" or _killed(e) is not None:
            node = e["node"] if k == "sim.crash" else _killed(e)
            if k == "sim.crash" and e["actor"] != "edge":
                continue
            dead.add(node)
            nodes.discard(node)
            for a in [a for a in held if a.partition("/")[0] == node]:
                del held[a]
            for key in [key for key in gaps if key[0] == node]:
                del gaps[key]  # a dead node's island is judged by its live members
            for key in [key for key in was if key[0] == node]:
                del was[key]
            pending = True
            last_change = e
        elif k in ("plane.plan_complete", "manager.plan_final") and roles:
            if k == "plane.plan_complete":
                missing = set(f.get("unfilled") or []) & set(roles)
            else:
                missing = set(roles) - {a.get("role") for a in f.get("assignments") or [] if isinstance(a, dict)}
            if missing:
                if pending and prev is not None:
                    judge(prev)
                    pending = False
                declared = {n: missing for n in nodes if islands.same(n, e["node"])}
                judge(e, declared)
    if pending and prev is not None:
        judge(prev)
    end = ordered[-1] if ordered else None
    unsettled = 0
    for key in sorted(gaps):
        if end is not None and end["time"] - gaps[key]["time"] > bound + _EPS:
            close(key, end, " until the log ends")
        else:
            unsettled += 1
    return {"ok": not violations, "violations": violations, "roles": roles, "judged": judged, "longest": longest,
            "unsettled": unsettled}


# -- what the clients saw ---------------------------------------------------------------------------------


def check_clients(events: list[dict], settle: float = 0.5) -> dict[str, Any]:
    """See the module docstring; ``settle``: the longest one client may see two holders of one share answer."""
    violations: list[dict] = []
    counts = {"served": 0, "refused": 0, "unserved": 0}
    doubles = 0  # requests answered by two holders of one share (under different plans), within the settle time
    open_: dict[tuple, dict] = {}  # (client, role, pair of servers) -> the first request that saw them
    reported: set[tuple] = set()
    for e in _ordered(events):
        if e["kind"] != "client.request":
            continue
        f = e.get("fields") or {}
        out = f.get("outcome")
        if out in counts:
            counts[out] += 1
        client, role, sent = _addr(e), f.get("role"), float(f.get("sent", e["time"]))
        servers = [tuple(x) for x in f.get("servers") or [] if isinstance(x, (list, tuple)) and len(x) == 3]
        seen: set[tuple] = set()
        for i in range(len(servers)):
            for j in range(i + 1, len(servers)):
                a, b = sorted((servers[i], servers[j]))
                if a[0] == b[0] or not _overlap(_share_of({"key": a[1]}), _share_of({"key": b[1]})):
                    continue
                if a[2] == b[2]:
                    violations.append({"why": f"request {f.get('rid')} of {client} for {role} served by {a[0]} and "
                                              f"{b[0]}, both holding {a[1]}/{b[1]} of {a[2]}", "event": e})
                    continue
                doubles += 1
                k = (client, role, (a, b))
                seen.add(k)
                first = open_.setdefault(k, e)
                took = sent - float(first["fields"].get("sent", first["time"]))
                if took > settle + _EPS and k not in reported:
                    reported.add(k)
                    violations.append({"why": f"{client} served {role} by {a[0]} ({a[1]} of {a[2]}) and {b[0]} "
                                              f"({b[1]} of {b[2]}) for {took:.3f}s (settle {settle}s)", "a": first, "b": e})
        for k in [k for k in open_ if k[0] == client and k[1] == role and k not in seen]:
            del open_[k]
    return {"ok": not violations, "violations": violations, "requests": sum(counts.values()), **counts,
            "doubles": doubles}


# -- registered checkers ------------------------------------------------------------------------------


def _verdict(name: str, r: dict, what: str) -> Verdict:
    """``invalid`` with one evidence item per violation (first :data:`MAX_EVIDENCE`), else ``valid``.

    An evidence item is the violation itself: ``why`` and the offending event records as values
    (``event``, ``a`` / ``b``, ``other``, ``vacated``, ``heal``), exactly as the log holds them.
    """
    v = r["violations"]
    if v:
        whys = "; ".join(x.get("why", "") for x in v[:3]) + ("; ..." if len(v) > 3 else "")
        return Verdict(name, "invalid", f"{len(v)} violation{'s' if len(v) != 1 else ''}: {whys}", v)
    return Verdict(name, "valid", what)


@attrs.frozen
class OneLeaderPerIslandTerm:
    name: str = "one-leader-per-island-term"

    def check(self, events: list[dict]) -> Verdict:
        if not _has_plane(events):
            return Verdict(self.name, "unknown", "no local-plane events in this log")
        r = check_leaders(events)
        if not r["leaders"]:
            return Verdict(self.name, "unknown", "no leader was elected in this log (no plane.leader): nothing to judge")
        return _verdict(self.name, r, f"{plural(r['leaders'], 'leader')} over {plural(r['terms'], 'term')}, never two in one island and term")


@attrs.frozen
class PlanHolders:
    name: str = "plan-holders"
    settle: float = 0.5  # as RatifiedAfterHeal.handover_bound

    def check(self, events: list[dict]) -> Verdict:
        if not _has_plane(events):
            return Verdict(self.name, "unknown", "no local-plane events in this log")
        r = check_plan_holders(events, self.settle)
        if not r["violations"] and not r["plans"] and not r["assignments"]:
            return Verdict(self.name, "unknown", "no plan and no role taken in this log "
                                                 "(no plane.plan_complete, manager.plan_final or edge.role_assigned)")
        tail = f"; {r['unsettled']} overlaps still open at the end, younger than {self.settle}s" if r["unsettled"] else ""
        return _verdict(self.name, r, f"{plural(r['plans'], 'plan')} and {plural(r['assignments'], 'role holding')}: every share of a plan "
                                      "with one holder, never two holders of a role share in one island for more "
                                      f"than {self.settle}s (longest overlap {r['longest']:.3f}s){tail}")


@attrs.frozen
class GovernanceApplied:
    name: str = "governance"

    def check(self, events: list[dict]) -> Verdict:
        if not _has_plane(events):
            return Verdict(self.name, "unknown", "no local-plane events in this log")
        r = check_governance(events)
        if not r["decisions"]:
            return Verdict(self.name, "unknown", "no assent decisions in this log")
        return _verdict(self.name, r, f"{r['decisions']} assent decisions, each under the prescribed rule")


@attrs.frozen
class RatifiedAfterHeal:
    name: str = "ratified-after-heal"
    liveness: ClassVar[bool] = True  # something must happen: an interrupted run cannot say it did not
    bound: float = 2.0
    handover_bound: float = 0.5

    def check(self, events: list[dict]) -> Verdict:
        if not _has_plane(events):
            return Verdict(self.name, "unknown", "no local-plane events in this log")
        r = check_ratified_after_heal(events, self.bound, self.handover_bound)
        if not r["violations"] and not r["heals"]:
            return Verdict(self.name, "unknown", "no heal after a partition in this log")
        return _verdict(self.name, r, f"{plural(r['heals'], 'heal')}, each followed by a final plan within {self.bound}s "
                                      "with no role held twice")


@attrs.frozen
class HolderlessGap:
    name: str = "holderless-gap"
    bound: float = 3.0

    def check(self, events: list[dict]) -> Verdict:
        if not _has_plane(events):
            return Verdict(self.name, "unknown", "no local-plane events in this log")
        r = check_holderless_gaps(events, self.bound)
        if not r["violations"] and not r["judged"]:
            return Verdict(self.name, "unknown", "no service role was ever held by a deployed edge node in this log "
                                                 "(manager.deployed roles, edge.deployed, edge.role_assigned)")
        tail = f"; {r['unsettled']} gaps still open at the end, younger than {self.bound}s" if r["unsettled"] else ""
        return _verdict(self.name, r, f"roles {', '.join(r['roles'])}: never without a holder in a deployed node's "
                                      f"island for more than {self.bound}s (longest gap {r['longest']:.3f}s){tail}")


@attrs.frozen
class ClientsSingleHolder:
    name: str = "clients-single-holder"
    settle: float = 0.5  # as PlanHolders.settle

    def check(self, events: list[dict]) -> Verdict:
        r = check_clients(events, self.settle)
        if not r["violations"] and not r["served"]:
            return Verdict(self.name, "unknown", f"no client request served in this log ({r['requests']} requests): "
                                                 "nothing to judge")
        tail = f", {r['doubles']} answered by two holders of one share for at most {self.settle}s" if r["doubles"] else ""
        return _verdict(self.name, r, f"{r['requests']} client requests: {r['served']} served, {r['refused']} "
                                      f"refused, {r['unserved']} unserved{tail}; never two holders of one share "
                                      "for longer")


CHECKERS = (OneLeaderPerIslandTerm(), PlanHolders(), GovernanceApplied(), RatifiedAfterHeal(), HolderlessGap(),
            ClientsSingleHolder())
