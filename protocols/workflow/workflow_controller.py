"""The workflow controller: hands each booting server its workflow, warns resource controllers, keeps records.

How this works
--------------
(Seed doc FIG. 2A and the DHCP / pre-provisioning paragraphs.) A server's
:class:`Hello` names its id, MAC, hardware and location; the controller picks
the first catalogue entry whose ``match`` patterns (``fnmatch`` globs over
``mac``, ``hardware``, ``location``; an empty match takes every server) fit
those attributes and answers :class:`Workflow`: the entry's ordered stages
(each with the resources it needs, the stages it depends on and its expected
duration) and, for every resource named, where its controller and proxies
are. A repeated Hello from the same boot gets the same answer (the first was
lost); a server no entry fits gets :class:`NoWorkflow`.

Pre-provisioning notice: every ``notice_every`` seconds, for each (resource,
workflow, stage) whose count changed, the resource's controller gets a
:class:`Provision` saying how many servers are **still to come** to the stage:
servers assigned the workflow that have not reported the stage done (a
:class:`StageReport` ``ok`` from their current boot) nor ended the workflow
(:class:`WorkflowDone`), plus the servers of an announced wave not yet
arrived. A :class:`WaveNotice` (the seed doc's DHCP alert: servers "will soon
be requesting a workflow") names how many servers are about to boot and their
attributes; the entry that fits them counts them as coming to each of its
stages until that many new servers of the workflow have said Hello, so the
resource controllers hear of a wave before its first request. A server that
boots again (a new boot nonce) has every stage to do again.

Records: per workflow and stage, the count, successes, failures and the
duration of the successful runs (from :class:`StageReport`), and per
workflow the servers done or failed (from :class:`WorkflowDone`). Once a stage
has ``learn_after`` successful runs, the workflows handed out carry their
mean duration as the stage's ``expected`` instead of the catalogue's guess.

The catalogue is checked when the controller is built (unknown resources,
duplicate stages, needs naming no stage, dependency cycles): a bad catalogue
is the operator's error, raised as ``ValueError`` before anything runs.

The controller has no states of its own; its decisions are emitted as
``workflow.assigned``, ``workflow.unmatched``, ``workflow.wave``, ``workflow.notice``,
``workflow.done`` and ``workflow.ignored``.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from protocols.core import Effect, Emit, Send
from protocols.workflow.messages import (
    Hello,
    NoWorkflow,
    Provision,
    ResourceRef,
    StageReport,
    StageSpec,
    WaveNotice,
    Workflow,
    WorkflowDone,
)

__all__ = ["CatalogueEntry", "StageRecord", "WorkflowController", "parse_catalogue"]

MATCH_KEYS = ("mac", "hardware", "location")


class CatalogueEntry:
    __slots__ = ("match", "stages", "workflow")

    def __init__(self, workflow: str, match: dict[str, str], stages: tuple[StageSpec, ...]) -> None:
        self.workflow = workflow
        self.match = match
        self.stages = stages

    def fits(self, attrs: dict[str, str]) -> bool:
        return all(fnmatch.fnmatchcase(attrs.get(k, ""), pat) for k, pat in self.match.items())


class StageRecord:
    __slots__ = ("failed", "longest", "ok", "runs", "shortest", "total")

    def __init__(self) -> None:
        self.runs = self.ok = self.failed = 0
        self.total = 0.0
        self.shortest = float("inf")
        self.longest = 0.0

    def add(self, outcome: str, duration: float) -> None:
        self.runs += 1
        if outcome == "ok":
            self.ok += 1
            self.total += duration
            self.shortest = min(self.shortest, duration)
            self.longest = max(self.longest, duration)
        else:
            self.failed += 1

    @property
    def mean(self) -> float | None:
        return self.total / self.ok if self.ok else None

    def as_dict(self) -> dict:
        return {"runs": self.runs, "ok": self.ok, "failed": self.failed, "mean": self.mean,
                "min": self.shortest if self.ok else None, "max": self.longest if self.ok else None}


def parse_catalogue(catalogue: list[dict[str, Any]], resources: dict[str, Any]) -> list[CatalogueEntry]:
    """Check and build catalogue entries (``ValueError`` naming the entry and the problem)."""
    if not isinstance(catalogue, list) or not catalogue:
        raise ValueError("the workflow catalogue must be a non-empty list of entries")
    out = []
    for i, e in enumerate(catalogue):
        where = f"catalogue[{i}]"
        if not isinstance(e, dict) or not isinstance(e.get("workflow"), str) or not e["workflow"]:
            raise ValueError(f"{where}: needs a 'workflow' name")
        where = f"catalogue[{i}] ({e['workflow']})"
        match = e.get("match", {}) or {}
        bad = sorted(set(match) - set(MATCH_KEYS))
        if bad:
            raise ValueError(f"{where}: unknown match keys {bad}; use {list(MATCH_KEYS)}")
        stages = []
        names: set[str] = set()
        for j, s in enumerate(e.get("stages", [])):
            if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not s["name"]:
                raise ValueError(f"{where}: stage {j} needs a 'name'")
            if s["name"] in names:
                raise ValueError(f"{where}: duplicate stage {s['name']!r}")
            names.add(s["name"])
            unknown = [r for r in s.get("resources", []) if r not in resources]
            if unknown:
                raise ValueError(f"{where}: stage {s['name']!r} needs unknown resources {unknown}")
            stages.append(StageSpec(s["name"], tuple(s.get("resources", ())), tuple(s.get("needs", ())),
                                    float(s.get("expected", 30.0))))
        if not stages:
            raise ValueError(f"{where}: no stages")
        for s in stages:
            missing = [n for n in s.needs if n not in names]
            if missing:
                raise ValueError(f"{where}: stage {s.name!r} needs unknown stages {missing}")
        _check_acyclic(where, stages)
        out.append(CatalogueEntry(e["workflow"], dict(match), tuple(stages)))
    return out


def _check_acyclic(where: str, stages: list[StageSpec]) -> None:
    needs = {s.name: set(s.needs) for s in stages}
    done: set[str] = set()
    while len(done) < len(needs):
        ready = [n for n, ns in needs.items() if n not in done and ns <= done]
        if not ready:
            raise ValueError(f"{where}: dependency cycle among {sorted(set(needs) - done)}")
        done.update(ready)


class WorkflowController:
    """Assigns workflows from a catalogue (sans-I/O).

    ``catalogue``: entries ``{"workflow": str, "match": {"hardware": "x86*", ...},
    "stages": [{"name", "resources": [...], "needs": [...], "expected": s}, ...]}``;
    ``resources``: ``{name: {"controller": address, "proxies": [addresses]}}``.
    """

    def __init__(self, catalogue: list[dict], resources: dict[str, dict], *, notice_every: float = 5.0,
                 notify: bool = True, learn_after: int = 5) -> None:
        refs = {}
        for name, r in resources.items():
            if not isinstance(r, dict) or not isinstance(r.get("controller"), str):
                raise ValueError(f"resource {name!r} needs a 'controller' address")
            refs[name] = ResourceRef(name, r["controller"], tuple(r.get("proxies", ())))
        if notice_every <= 0:
            raise ValueError(f"notice_every must be > 0, got {notice_every}")
        self.entries = parse_catalogue(catalogue, resources)
        self.refs = refs
        self.notify = notify
        self.tick_interval = notice_every if notify else None
        self.learn_after = learn_after
        self.assigned: dict[str, tuple[int, str]] = {}  # server -> (boot, workflow)
        self.records: dict[tuple[str, str], StageRecord] = {}
        self.finished: dict[str, dict[str, int]] = {}
        self._coming: dict[tuple[str, str, str], int] = {}  # (resource, workflow, stage) -> servers still to come
        self._todo: dict[str, set[str]] = {}  # server -> the stages its current boot has still to do
        self._announced: dict[str, int] = {}  # workflow -> servers of announced waves that have not said Hello
        self._dirty: set[tuple[str, str, str]] = set()
        self._sent: dict[tuple[str, str, str], int] = {}  # the count each resource controller was last told
        self._by_name = {e.workflow: e for e in self.entries}

    def tick(self, now: float) -> list[Effect]:
        if not self._dirty:
            return []
        fx: list[Effect] = []
        for key in sorted(self._dirty):
            resource, wf, stage = key
            spec = next(s for s in self._by_name[wf].stages if s.name == stage)
            n = self._coming[key]
            if self._sent.get(key) == n:
                continue  # changed and back again since the last notice
            self._sent[key] = n
            fx.append(Send(self.refs[resource].controller, Provision(resource, wf, stage, n, self._expected(wf, spec))))
            fx.append(Emit("workflow.notice", {"resource": resource, "workflow": wf, "stage": stage, "servers": n}))
        self._dirty.clear()
        return fx

    def handle(self, msg, sender: str, now: float) -> list[Effect]:
        t = type(msg)
        if t is Hello:
            return self._on_hello(msg, now)
        if t is StageReport:
            self.records.setdefault((msg.workflow, msg.stage), StageRecord()).add(msg.outcome, msg.duration)
            if msg.outcome == "ok" and self.assigned.get(msg.server) == (msg.boot, msg.workflow):
                self._passed(msg.server, msg.workflow, [msg.stage])
            return []
        if t is WorkflowDone:
            counts = self.finished.setdefault(msg.workflow, {"done": 0, "failed": 0})
            counts["done" if msg.ok else "failed"] += 1
            if self.assigned.get(msg.server) == (msg.boot, msg.workflow):
                self._passed(msg.server, msg.workflow, list(self._todo.get(msg.server, ())))
            return [Emit("workflow.done", {"server": msg.server, "workflow": msg.workflow, "ok": msg.ok,
                                           "elapsed": msg.elapsed})]
        if t is WaveNotice:
            return self._on_wave(msg, sender)
        return [Emit("workflow.ignored", {"message": t.__name__, "from": sender})]

    # -- servers still to come (the Provision counts) ----------------------------------------------

    def _count(self, wf: str, stages, delta: int) -> None:
        entry = self._by_name[wf]
        for s in entry.stages:
            if s.name in stages:
                for r in s.resources:
                    key = (r, wf, s.name)
                    self._coming[key] = self._coming.get(key, 0) + delta
                    if self.notify:
                        self._dirty.add(key)

    def _passed(self, server: str, wf: str, stages: list[str]) -> None:
        todo = self._todo.get(server)
        gone = [s for s in stages if todo is not None and s in todo]
        if gone:
            todo.difference_update(gone)
            self._count(wf, gone, -1)

    def _on_wave(self, m: WaveNotice, sender: str) -> list[Effect]:
        if not isinstance(m.servers, int) or isinstance(m.servers, bool) or not 0 < m.servers <= 1_000_000:
            return [Emit("workflow.ignored", {"message": "WaveNotice", "from": sender, "why": "bad servers count"})]
        attrs = {"mac": m.mac, "hardware": m.hardware, "location": m.location}
        entry = next((e for e in self.entries if e.fits(attrs)), None)
        if entry is None:
            return [Emit("workflow.ignored", {"message": "WaveNotice", "from": sender, "why": "no catalogue entry fits",
                                              **attrs})]
        self._announced[entry.workflow] = self._announced.get(entry.workflow, 0) + m.servers
        self._count(entry.workflow, {s.name for s in entry.stages}, m.servers)
        return [Emit("workflow.wave", {"workflow": entry.workflow, "servers": m.servers,
                                       "announced": self._announced[entry.workflow]})]

    def _expected(self, wf: str, spec: StageSpec) -> float:
        rec = self.records.get((wf, spec.name))
        if rec is not None and rec.ok >= self.learn_after and rec.mean is not None:
            return rec.mean
        return spec.expected

    def _on_hello(self, m: Hello, now: float) -> list[Effect]:
        attrs = {"mac": m.mac, "hardware": m.hardware, "location": m.location}
        entry = next((e for e in self.entries if e.fits(attrs)), None)
        if entry is None:
            return [Emit("workflow.unmatched", {"server": m.server, **attrs}),
                    Send(m.server, NoWorkflow(m.server, m.boot, "no catalogue entry fits"))]
        fx: list[Effect] = []
        previous = self.assigned.get(m.server)
        if previous != (m.boot, entry.workflow):
            self.assigned[m.server] = (m.boot, entry.workflow)
            # a new server, or a new boot of one: every stage is still to come (what the old boot had left is not)
            if previous is not None:
                self._passed(m.server, previous[1], list(self._todo.get(m.server, ())))
            names = {s.name for s in entry.stages}
            self._todo[m.server] = set(names)
            if previous is None and self._announced.get(entry.workflow, 0) > 0:
                self._announced[entry.workflow] -= 1  # one of an announced wave: counted already
            else:
                self._count(entry.workflow, names, +1)
            fx.append(Emit("workflow.assigned", {"server": m.server, "workflow": entry.workflow, "boot": m.boot,
                                                 "hardware": m.hardware, "location": m.location}))
        stages = tuple(StageSpec(s.name, s.resources, s.needs, self._expected(entry.workflow, s)) for s in entry.stages)
        used = sorted({r for s in entry.stages for r in s.resources})
        fx.append(Send(m.server, Workflow(m.server, m.boot, entry.workflow, stages, tuple(self.refs[r] for r in used))))
        return fx

    def stats(self) -> dict:
        """Per-workflow/stage timing and success, and per-workflow outcomes."""
        return {"stages": {f"{wf}/{st}": r.as_dict() for (wf, st), r in sorted(self.records.items())},
                "workflows": {wf: dict(c) for wf, c in sorted(self.finished.items())}}
