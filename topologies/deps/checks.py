"""The dependency-startup checkers: judged from the event log of ``protocols/deps`` agents and manager.

* ``deps-start-order``: no service is launched (``deps.launch``) before every
  hard dependency it names is up (``up`` or ``bootstrap``, by the
  ``deps.service`` events of that dependency; where the two events come from
  different nodes, ``skew`` = 0.1 s is allowed between their clocks: each
  process anchors its monotonic clock to the wall clock once, and real runs
  showed ~20-30 ms between processes), except a dependency it skips in a
  bootstrap launch, and only where the plan (``deps.plan`` workflows' waived
  edges), a deadlock remediation (``deps.remediation``) or an armed
  conditional remediation (``deps.remediation_armed`` with ``skip``) named that
  edge before. Unknown: no launch in the log.
* ``deps-all-up``: every service an agent runs (``deps.agent_start``) is ``up``
  by its last ``deps.service`` (the end of the log is after the faults stop).
  Unknown: no agent in the log.
* ``deps-deadlocks-real``: every ``deps.deadlock_detected`` was a real cycle
  of waits - at some moment between its ``since`` and its detection every
  wait it names held at once (the waiter's newest ``deps.service`` was
  ``waiting`` with that dependency in ``waiting_on``) and the waits close a
  cycle - and was remediated (a ``deps.deadlock_resolved`` of the same id
  follows). Unknown: no deadlock detected.
"""

from __future__ import annotations

from collections import defaultdict

import attrs
import networkx as nx

from topologies.checkers import Verdict, plural

__all__ = ["AllUp", "CHECKERS", "DeadlocksReal", "StartOrder"]

UPISH = ("up", "bootstrap")


def _ordered(events: list[dict]) -> list[dict]:
    return sorted(events, key=lambda e: e.get("time", 0.0))


def _f(e: dict) -> dict:
    f = e.get("fields")
    return f if isinstance(f, dict) else {}


def _up_intervals(events: list[dict]) -> dict[str, list[tuple[float, float, str]]]:
    """service -> [(from, until, node)] while it was up or bootstrap (until: inf if it still is)."""
    out: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    since: dict[str, tuple[float, str]] = {}
    for e in events:
        if e.get("kind") != "deps.service":
            continue
        f = _f(e)
        s, up = f.get("service", ""), f.get("state") in UPISH
        if up and s not in since:
            since[s] = (e["time"], e.get("node", ""))
        elif not up and s in since:
            t, node = since.pop(s)
            out[s].append((t, e["time"], node))
    for s, (t, node) in since.items():
        out[s].append((t, float("inf"), node))
    return out


@attrs.frozen
class StartOrder:
    name: str = "deps-start-order"
    skew: float = 0.1  # seconds allowed between the clocks of two processes (events of different nodes)

    def check(self, events: list[dict]) -> Verdict:
        ordered = _ordered(events)
        up = _up_intervals(ordered)

        def was_up(dep: str, t: float, node: str) -> bool:
            for a, b, n in up.get(dep, ()):
                tol = 0.0 if n == node else self.skew
                if a - tol <= t <= b + tol:
                    return True
            return False

        named: set[tuple[str, str]] = set()
        launches = 0
        bad: list[dict] = []
        state: dict[str, str] = {}
        for e in ordered:
            k, f = e.get("kind"), _f(e)
            if k == "deps.service":
                state[f.get("service", "")] = f.get("state", "")
            elif k == "deps.plan":
                for w in f.get("workflows", []):
                    named |= {tuple(p) for p in w.get("waived", [])}
            elif k == "deps.remediation":
                named |= {tuple(p) for p in f.get("waived", [])}
            elif k == "deps.remediation_armed" and f.get("skip"):
                named |= {(f.get("service"), d) for d in f.get("skip", [])}
            elif k == "deps.launch":
                launches += 1
                s, skip = f.get("service", ""), set(f.get("skip", []))
                for d in f.get("hard", []):
                    if d in skip:
                        if f.get("mode") != "bootstrap" or (s, d) not in named:
                            bad.append({"event": e, "why": f"{s} skipped {d} without a plan or remediation naming it"})
                    elif not was_up(d, e["time"], e.get("node", "")):
                        bad.append({"event": e, "why": f"{s} launched while its hard dependency {d} was "
                                                        f"{state.get(d, 'never reported')}"})
        if not launches:
            return Verdict(self.name, "unknown", "no service launch (deps.launch) in this log")
        if bad:
            return Verdict(self.name, "invalid", f"{plural(len(bad), 'launch', 'launches')} before a hard dependency was up: "
                           + "; ".join(b["why"] for b in bad[:3]), bad)
        return Verdict(self.name, "valid", f"{plural(launches, 'launch', 'launches')}: every hard dependency up first, or "
                                           f"skipped by a bootstrap start the plan or a remediation named "
                                           f"({len(named)} named edges)")


@attrs.frozen
class AllUp:
    name: str = "deps-all-up"
    liveness: bool = True

    def check(self, events: list[dict]) -> Verdict:
        services: dict[str, dict] = {}
        last: dict[str, dict] = {}
        for e in _ordered(events):
            k, f = e.get("kind"), _f(e)
            if k == "deps.agent_start":
                for s in f.get("services", []):
                    services[s] = e
            elif k == "deps.service":
                last[f.get("service", "")] = e
        if not services:
            return Verdict(self.name, "unknown", "no agent (deps.agent_start) in this log")
        not_up = []
        for s, start in sorted(services.items()):
            ev = last.get(s)
            if ev is None or _f(ev).get("state") != "up":
                not_up.append({"service": s, "event": ev or start})
        if not_up:
            states = defaultdict(int)
            for n in not_up:
                states[_f(n["event"]).get("state", "never reported")] += 1
            return Verdict(self.name, "invalid", f"{plural(len(not_up), 'service')} of {len(services)} not up at "
                           f"the end ({', '.join(f'{v} {k}' for k, v in sorted(states.items()))}): "
                           + ", ".join(n["service"] for n in not_up[:8]), not_up)
        return Verdict(self.name, "valid", f"all {len(services)} services up at the end of the log")


@attrs.frozen
class DeadlocksReal:
    name: str = "deps-deadlocks-real"

    def check(self, events: list[dict]) -> Verdict:
        ordered = _ordered(events)
        detections = [e for e in ordered if e.get("kind") == "deps.deadlock_detected"]
        if not detections:
            return Verdict(self.name, "unknown", "no deadlock detected in this log")
        resolved = {_f(e).get("id"): e for e in ordered if e.get("kind") == "deps.deadlock_resolved"}
        bad: list[dict] = []
        for det in detections:
            f = _f(det)
            waits = [tuple(w) for w in f.get("waits", [])]
            g = nx.DiGraph(waits)
            if not waits or nx.is_directed_acyclic_graph(g):
                bad.append({"event": det, "why": f"{f.get('id')}: its waits close no cycle"})
                continue
            since, at = float(f.get("since", det["time"])), det["time"]
            state: dict[str, tuple[str, tuple]] = {}
            real = False
            for e in ordered:
                if e["time"] > at:
                    break
                if e.get("kind") == "deps.service":
                    ef = _f(e)
                    state[ef.get("service", "")] = (ef.get("state", ""), tuple(ef.get("waiting_on", [])))
                if e["time"] >= since and all(state.get(s, ("", ()))[0] == "waiting" and d in state[s][1]
                                              for s, d in waits):
                    real = True
                    break
            if not real:
                bad.append({"event": det, "why": f"{f.get('id')}: the waits {waits} never held at once between "
                                                 f"{since} and {at}"})
            elif f.get("id") not in resolved:
                bad.append({"event": det, "why": f"{f.get('id')}: detected but never resolved"})
        if bad:
            return Verdict(self.name, "invalid", f"{plural(len(bad), 'detection')} not real or not remediated: "
                           + "; ".join(b["why"] for b in bad[:3]), bad)
        worst = max(float(_f(d).get("after", 0.0)) for d in detections)
        return Verdict(self.name, "valid", f"{plural(len(detections), 'deadlock')}: each a real cycle of waits, "
                                           f"detected within {worst:.3f} s of forming, and resolved")


CHECKERS = (StartOrder(), AllUp(), DeadlocksReal())
