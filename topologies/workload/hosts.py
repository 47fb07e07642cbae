"""The workers' hosts: where a ``RunTask`` effect runs.

How this works
--------------
* :class:`SimRunner` (kind ``workload.worker``) plays a warm environment in
  virtual time: a task's data ``{"seconds": s, "fail": bool}`` says how long it
  runs and whether it raises; after ``s`` seconds (``api.later``) the worker
  gets ``TaskFinished`` with ``metered = s``. A ``StopTask`` cancels the run:
  its report never comes. The same host runs in the simulator and in a node
  process (where the wait is a real timer).
* :class:`PythonRunner` (kind ``workload.python_worker``) runs the task's real
  code in a :class:`~topologies.workload.runner.WarmPython` (a zygote with the
  environment's modules imported, forking a confined child per task; the
  tasks' private directories under ``RUNDIR/<node>.<actor>.work``); its
  report is told to the worker actor as ``TaskFinished``.
* :class:`WorkerHost` (kind ``workload.worker``) is the one a topology file
  uses: with ``env = "python"`` it runs real code (a :class:`PythonRunner`)
  in a node process and plays it (a :class:`SimRunner`) in the simulator,
  where no process can run; ``env = "sim"`` always plays it.
"""

from __future__ import annotations

import atexit
import os
import random
from typing import Any

import attrs

from protocols.workload.worker import Prepare, RunTask, StopTask, TaskFinished
from topologies.workload.runner import Limits, WarmPython
from topologies.workload.store import _run_dir

__all__ = ["PythonRunner", "SimRunner", "WorkerHost"]


class SimRunner:
    def __init__(self, rng: random.Random, default_seconds: float = 0.1) -> None:
        self.rng = rng
        self.default_seconds = default_seconds
        self.stopped: set[str] = set()

    def on_effect(self, effect: Any, api: Any) -> None:
        if isinstance(effect, RunTask):
            d = effect.data if isinstance(effect.data, dict) else {}
            secs = d.get("seconds", self.default_seconds)
            secs = float(secs) if isinstance(secs, (int, float)) and not isinstance(secs, bool) else self.default_seconds
            secs = min(max(secs, 0.0), float(effect.limits.get("wall_s", 3600.0)))
            if d.get("fail"):
                outcome = {"ok": False, "error": "RuntimeError: the task was asked to fail", "metered": secs}
            else:
                outcome = {"ok": True, "value": {"slept": secs}, "metered": secs}
            api.later(secs, TaskFinished(effect.run, outcome))
        elif isinstance(effect, StopTask):
            self.stopped.add(effect.run)
            if len(self.stopped) > 10_000:
                self.stopped.clear()
        elif isinstance(effect, Prepare):
            pass  # a played environment is always warm
        else:
            raise TypeError(f"SimRunner: unexpected effect {effect!r}")


class PythonRunner:
    def __init__(self, rng: random.Random, modules: list[str] | None = None, env_slots: int = 4,
                 work_root: str = "", shell_dir: str = "") -> None:
        self.modules = tuple(modules or ["json", "math", "time"])
        self.shell_dir = shell_dir or None
        self.slots = env_slots
        self.work_root = work_root or None
        self.env: WarmPython | None = None
        self._tell = None

    def _start(self, api: Any) -> None:
        actor = getattr(api, "actor", None)
        if not hasattr(actor, "node"):
            raise RuntimeError("PythonRunner runs real processes: it needs a node process, not the simulator")
        node, address = actor.node, actor.address

        def done(report: dict) -> None:
            outcome = {k: report.get(k) for k in ("ok", "value", "error", "trace", "metered", "cpu", "killed")
                       if k in report}
            node.tell(address, TaskFinished(report["id"], outcome), address)

        work_root = self.work_root or os.path.join(_run_dir(), f"{address.replace('/', '.')}.work")
        self.env = WarmPython(self.modules, work_root=work_root, on_done=done, slots=self.slots,
                              shell_dir=self.shell_dir)
        self.env.start()
        atexit.register(self.env.close)  # a node stopped by SIGTERM leaves no task directory behind

    def on_effect(self, effect: Any, api: Any) -> None:
        if self.env is None:
            self._start(api)
        if isinstance(effect, RunTask):
            fields = {k: v for k, v in effect.limits.items() if k in {a.name for a in attrs.fields(Limits)}}
            try:
                self.env.run(effect.run, effect.source, effect.data, Limits(**fields),
                             kind=effect.code_type or "python")
            except RuntimeError as e:
                api.later(0.0, TaskFinished(effect.run, {"ok": False, "error": f"could not start: {e}",
                                                          "metered": 0.0}))
        elif isinstance(effect, StopTask):
            self.env.stop(effect.run)
        elif isinstance(effect, Prepare):
            pass  # started above: the zygote is up with its modules imported
        else:
            raise TypeError(f"PythonRunner: unexpected effect {effect!r}")


class WorkerHost:
    def __init__(self, rng: random.Random, env: str = "python", modules: list[str] | None = None,
                 env_slots: int = 4, default_seconds: float = 0.1, shell_dir: str = "") -> None:
        if env not in ("python", "sim"):
            raise ValueError(f"WorkerHost: env must be 'python' or 'sim', got {env!r}")
        self.env = env
        self.python = PythonRunner(rng, modules, env_slots, shell_dir=shell_dir) if env == "python" else None
        self.sim = SimRunner(rng, default_seconds)

    def on_effect(self, effect: Any, api: Any) -> None:
        if self.python is not None and hasattr(getattr(api, "actor", None), "node"):  # a node process's actor
            self.python.on_effect(effect, api)
        else:
            self.sim.on_effect(effect, api)
