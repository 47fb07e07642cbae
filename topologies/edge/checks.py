"""Invariant checkers of the local-plane protocol (the ``edge`` plug-in).

How this works
--------------
Each checker judges a run from its event log alone (DESIGN.md, "Invariants";
the events are those of ``protocols/localplane``):

* ``one-leader-per-island-term`` - at most one leader per connected island per
  term. A *connected island* is a connected component of the network as the
  partition events describe it (``net.partition`` / ``net.heal`` from the
  simulator, ``nemesis.grudge`` / ``nemesis.heal`` from the chaos harness) at
  the moment a leader is elected. A simulated chaos run logs both: the
  harness's ``nemesis.*`` op and the simulator's ``net.heal`` + ``net.cut``
  events that carry it out; when a log has ``net.*`` partition events they
  alone describe the network. Two ``plane.leader`` events of one term are a
  violation if their electorates (``voters``) overlap, or if the later one was
  elected in the same island while the earlier one still led (no
  ``plane.stepdown``, crash or newer election of its node in between).
* ``plan-holders`` - every role in a complete plan (``plane.plan_complete``,
  ``manager.plan_final``) has exactly one holder per share, and a role with
  more than one share is a declared split (in the plan's ``splits``, or a
  final plan's shares); and, from the holders' own ``edge.role_assigned`` /
  ``edge.role_relinquished`` events (a crash drops a node's roles), no role
  share of one plan ever has two holders at once.
* ``governance`` - every assent decision (``plane.assent``, ``manager.assent``)
  used the rule the intermediate representation prescribes for the
  electorate's size and the plane's state (connected or isolated; the rules
  come from ``manager.deployed``), required the right number of yes votes,
  and its outcome follows from the votes.
* ``ratified-after-heal`` - after the network heals (a ``net.heal`` or
  ``nemesis.heal`` ending a partition), a final plan (``manager.plan_final``)
  follows within ``bound`` seconds and every temporary role held at the heal
  ends (relinquished or converted to final) within ``bound`` of the heal (a
  node whose link comes back after the first final plan is reconciled by a
  later one); no final role is ever
  taken while another live node still holds any share of that role outside the
  final plan (two holders after reconnect, the Nomad/KubeEdge failure) - unless
  that node's holding is a temporary one of an isolated plane it is still in
  (between its ``edge.isolation_declared`` and ``edge.isolation_ended``: an
  island on the other side of a partition serves on its own, by design); and
  a role that moved was without a holder for at most ``handover_bound``.

Each returns *unknown* when the log holds no local-plane events.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import attrs

from protocols.localplane.ir import required_assent, rule_for
from protocols.localplane.messages import Governance
from topologies.checkers import Verdict

__all__ = [
    "check_governance",
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
                    violations.append({"why": "overlapping electorates", "term": term, "a": other, "b": e})
                elif leading.get(other["node"], (None, None))[1] is other and islands.same(other["node"], e["node"]):
                    violations.append({"why": "two leaders in one island", "term": term, "a": other, "b": e})
            by_term[term].append(e)
            leading[e["node"]] = (term, e)
        elif k in ("plane.stepdown", "sim.crash", "sim.restart"):
            leading.pop(e["node"], None)
        elif k == "edge.role_relinquished" and e["fields"].get("role") == "leader":
            leading.pop(e["node"], None)
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
    for role, by_share in shares.items():
        n = counts[role]
        if len(n) != 1:
            bad.append({"why": f"role {role} has inconsistent share counts {sorted(n)}", "event": e})
            continue
        k = n.pop()
        if sorted(by_share) != list(range(k)):
            bad.append({"why": f"role {role} has shares {sorted(by_share)} of {k}", "event": e})
        for s, holders in by_share.items():
            if len(holders) != 1:
                bad.append({"why": f"role {role} share {s} has holders {holders}", "event": e})
        if k > 1 and e["kind"] == "plane.plan_complete" and splits.get(role) != k:
            bad.append({"why": f"role {role} split in {k} without a declared split", "event": e})
        if len({h for hs in by_share.values() for h in hs}) != sum(len(hs) for hs in by_share.values()):
            bad.append({"why": f"role {role}: one node holds two shares", "event": e})
    return bad


def check_plan_holders(events: list[dict]) -> dict[str, Any]:
    violations: list[dict] = []
    plans = 0
    holders: dict[tuple[str, str], set[str]] = defaultdict(set)  # (plan, key) -> nodes
    held: dict[str, set[tuple[str, str]]] = defaultdict(set)  # node -> (plan, key)
    for e in _ordered(events):
        k = e["kind"]
        f = e.get("fields") or {}
        if k in ("plane.plan_complete", "manager.plan_final"):
            plans += 1
            violations += _plan_problems(e)
        elif k == "edge.role_assigned":
            who = _addr(e)
            for pk in [x for x in held[who] if x[1] == f["key"]]:  # converted from another plan
                held[who].discard(pk)
                holders[pk].discard(who)
            pk = (f["plan_id"], f["key"])
            others = holders[pk] - {who}
            if others:
                violations.append({"why": f"{f['key']} of {f['plan_id']} taken by {who} while {sorted(others)} hold it",
                                   "event": e})
            holders[pk].add(who)
            held[who].add(pk)
        elif k == "edge.role_relinquished":
            who = _addr(e)
            pk = (f["plan_id"], f["key"])
            holders[pk].discard(who)
            held[who].discard(pk)
        elif k == "sim.crash":
            who = _addr(e)
            for pk in held.pop(who, set()):
                holders[pk].discard(who)
    return {"ok": not violations, "violations": violations, "plans": plans}


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


def check_ratified_after_heal(events: list[dict], bound: float = 2.0, handover_bound: float = 0.5) -> dict[str, Any]:
    """See the module docstring; ``bound``: heal -> final plan; ``handover_bound``: longest holderless gap."""
    events = _ordered(events)
    violations: list[dict] = []
    held: dict[str, dict[str, dict]] = defaultdict(dict)  # node -> key -> role_assigned fields
    vacated: dict[str, float] = {}  # role -> when its last holder gave it up
    partitioned = False
    heals: list[tuple[float, dict]] = []  # (time, temporary holdings at heal)
    finals: list[dict] = []
    dead: set[str] = set()
    isolated: set[str] = set()  # nodes between isolation_declared and isolation_ended
    starts, ends_ = (("net.partition", "net.cut"), ("net.heal",)) if _net_logged(events) else (("nemesis.grudge",), ("nemesis.heal",))
    for e in events:
        k = e["kind"]
        f = e.get("fields") or {}
        if k == "edge.isolation_declared":
            isolated.add(_addr(e))
        elif k == "edge.isolation_ended":
            isolated.discard(_addr(e))
        elif k in starts:
            partitioned = True
        elif k in ends_:
            if partitioned:
                temp = {(n, key) for n, hs in held.items() for key, h in hs.items() if h["temporary"] and n not in dead}
                heals.append((e["time"], temp))
            partitioned = False
        elif k == "sim.crash":
            who = _addr(e)
            dead.add(who)
            held.pop(who, None)
        elif k == "sim.restart":
            dead.discard(_addr(e))
        elif k == "edge.role_assigned":
            who = _addr(e)
            role = f["role"]
            if not f["temporary"]:
                others = sorted(n for n, hs in held.items() if n != who and n not in dead
                                for h in hs.values() if h["role"] == role and h["plan_id"] != f["plan_id"]
                                and not (h["temporary"] and n in isolated))
                if others:
                    violations.append({"why": f"final {role} taken by {who} while {others} still hold it",
                                       "event": e})
                if role in vacated and not f.get("converted") and heals:
                    gap = e["time"] - vacated[role]
                    if gap > handover_bound:
                        violations.append({"why": f"{role} had no holder for {gap:.3f}s during the handover",
                                           "event": e})
            held[who][f["key"]] = {**f, "time": e["time"]}
            vacated.pop(role, None)
        elif k == "edge.role_relinquished":
            who = _addr(e)
            h = held[who].pop(f["key"], None)
            if h is not None and not any(x["role"] == f["role"] for hs in held.values() for x in hs.values()):
                vacated[f["role"]] = e["time"]
        elif k == "manager.plan_final":
            finals.append(e)
    ends: dict[tuple[str, str], list[float]] = defaultdict(list)
    for e in events:
        if e["kind"] == "edge.role_relinquished" or (e["kind"] == "edge.role_assigned" and e["fields"].get("converted")):
            ends[(_addr(e), e["fields"]["key"])].append(e["time"])
    last = events[-1]["time"] if events else 0.0
    outcomes = []
    for t, temp in heals:
        final = next((x for x in finals if x["time"] >= t), None)
        if final is None:
            if last - t > bound:
                violations.append({"why": f"no final plan within {bound}s of the heal at {t:.3f}", "time": t})
            continue
        took = final["time"] - t
        outcomes.append({"heal": t, "plan_id": final["fields"]["plan_id"], "ratified": final["fields"]["ratified"],
                         "took": took})
        if took > bound:
            violations.append({"why": f"final plan {took:.3f}s after the heal (bound {bound}s)", "event": final})
        deadline = max(final["time"], t + bound)  # a node that reconnects late is reconciled by a later plan
        for n, key in sorted(temp):
            if n in dead or any(t <= x <= deadline + 1e-9 for x in ends[(n, key)]):
                continue
            if last < deadline:
                continue  # the log ends too early to tell
            violations.append({"why": f"temporary {key} of {n} neither ratified nor replaced within {bound}s of the heal",
                               "time": t})
    return {"ok": not violations, "violations": violations, "heals": len(heals), "outcomes": outcomes}


# -- registered checkers ------------------------------------------------------------------------------


def _verdict(name: str, r: dict, what: str) -> Verdict:
    if r["violations"]:
        return Verdict(name, "invalid", f"{len(r['violations'])} violations: {r['violations'][0].get('why', '')}",
                       [v.get("event", v) if isinstance(v.get("event"), dict) else {"why": v.get("why")}
                        for v in r["violations"]])
    return Verdict(name, "valid", what)


@attrs.frozen
class OneLeaderPerIslandTerm:
    name: str = "one-leader-per-island-term"

    def check(self, events: list[dict]) -> Verdict:
        if not _has_plane(events):
            return Verdict(self.name, "unknown", "no local-plane events in this log")
        r = check_leaders(events)
        return _verdict(self.name, r, f"{r['leaders']} leaders over {r['terms']} terms, never two in one island and term")


@attrs.frozen
class PlanHolders:
    name: str = "plan-holders"

    def check(self, events: list[dict]) -> Verdict:
        if not _has_plane(events):
            return Verdict(self.name, "unknown", "no local-plane events in this log")
        r = check_plan_holders(events)
        return _verdict(self.name, r, f"{r['plans']} plans, every role share with exactly one holder")


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
    bound: float = 2.0
    handover_bound: float = 0.5

    def check(self, events: list[dict]) -> Verdict:
        if not _has_plane(events):
            return Verdict(self.name, "unknown", "no local-plane events in this log")
        r = check_ratified_after_heal(events, self.bound, self.handover_bound)
        if not r["violations"] and not r["heals"]:
            return Verdict(self.name, "unknown", "no heal after a partition in this log")
        return _verdict(self.name, r, f"{r['heals']} heals, each followed by a final plan within {self.bound}s "
                                      "with no role held twice")


CHECKERS = (OneLeaderPerIslandTerm(), PlanHolders(), GovernanceApplied(), RatifiedAfterHeal())
