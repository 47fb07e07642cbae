"""Using the workload service: ``WorkloadClient(node)`` and ``fleetplane task ...``.

How this works
--------------
:class:`WorkloadClient` talks to a gateway (and the billing service) from any
:class:`~actors.Node` with ``ask``: :meth:`~WorkloadClient.submit` returns a
``concurrent.futures.Future`` of the task id, resolved once the gateway says the
queue holds the task durably (an ``ask`` that times out is sent again with the
same request id, so a lost answer never makes a second task; a refusal raises
:class:`WorkloadError` with the gateway's one-sentence reason).
:meth:`~WorkloadClient.status`, :meth:`~WorkloadClient.result` (waits until the
task has ended), :meth:`~WorkloadClient.retry` and
:meth:`~WorkloadClient.statement` complete the set.

``fleetplane task submit|status|result|retry|statement`` does the same against
a running topology: it reads the run directory's ``topology.json`` (the newest
``runs/workload*-real-*`` unless ``--run`` names one), joins as a node of its
own on 127.0.0.1 and asks the topology's ``workload.gateway`` and
``workload.billing`` actors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from protocols.workload.billing import StatementReply, StatementRequest
from protocols.workload.gateway import Submit, Submitted, TaskQuery
from protocols.workload.messages import Retried, TaskStatus
from topologies.plugin import client_command

__all__ = ["WorkloadClient", "WorkloadError", "cmd_task", "setup_task"]

ROOT = Path(__file__).resolve().parents[2]


class WorkloadError(Exception):
    """The service refused or could not answer (the message says why)."""


class WorkloadClient:
    def __init__(self, node: Any, gateway: str = "gw/gateway", *, tenant: str, token: str,
                 billing: str = "svc/billing", timeout: float = 5.0, tries: int = 5) -> None:
        self.node, self.gateway, self.billing = node, gateway, billing
        self.tenant, self.token = tenant, token
        self.timeout, self.tries = timeout, tries
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="workload-client")

    def _ask(self, to: str, msg: Any, expect: type) -> Any:
        last: Exception | None = None
        pause = threading.Event()
        for i in range(self.tries):
            if i:
                pause.wait(min(2.0, 0.25 * 2 ** i))  # e.g. the connection to the gateway's node is not up yet
            try:
                reply = self.node.ask(to, msg, timeout=self.timeout).result()
            except Exception as e:  # AskTimeout, DeadLetterError: the same message again (it is idempotent)
                last = e
                continue
            if not isinstance(reply, expect):
                raise WorkloadError(f"{to} answered {type(reply).__name__}, not {expect.__name__}")
            return reply
        raise WorkloadError(f"no answer from {to} after {self.tries} tries: {last}")

    def submit(self, task_type: str, *, code: dict | str, data: Any = None, priority: int | None = None,
               max_delay: float = 60.0, notify: str = "", request_id: str | None = None) -> Future:
        """Future of the task id. ``code``: source text, ``{"source": ...}`` or ``{"ref": name, "version": n}``;
        ``data``: a value (sent inline) or ``{"ref": sha256}``."""
        code = {"source": code} if isinstance(code, str) else dict(code)
        data = data if isinstance(data, dict) and ("ref" in data or "inline" in data) else {"inline": data}
        msg = Submit(request_id or uuid.uuid4().hex, self.tenant, self.token, task_type, code, data,
                     float(max_delay), priority, notify)

        def run() -> str:
            ans = self._ask(self.gateway, msg, Submitted)
            if not ans.ok:
                raise WorkloadError(ans.error)
            return ans.task_id
        return self._pool.submit(run)

    def status(self, task_id: str) -> TaskStatus:
        return self._ask(self.gateway, TaskQuery(self.tenant, self.token, task_id, "status"), TaskStatus)

    def result(self, task_id: str, timeout: float = 60.0, poll: float = 0.2) -> dict:
        """The task's outcome once it has ended (``{"ok": True, "value": ...}`` or ``{"ok": False, "error": ...}``)."""
        deadline = time.monotonic() + timeout
        wait = threading.Event()
        while True:
            st = self.status(task_id)
            if st.state == "done":
                return dict(st.outcome or {})
            if st.state == "unknown":
                raise WorkloadError(f"no task {task_id!r} of tenant {self.tenant!r}")
            if time.monotonic() > deadline:
                raise WorkloadError(f"task {task_id} has not ended after {timeout} s (it is {st.state})")
            wait.wait(poll)

    def retry(self, task_id: str) -> None:
        ans = self._ask(self.gateway, TaskQuery(self.tenant, self.token, task_id, "retry"), Retried)
        if not ans.ok:
            raise WorkloadError(ans.error)

    def statement(self, period: int = -1) -> dict:
        return self._ask(self.billing, StatementRequest(self.tenant, period), StatementReply).statement

    def close(self) -> None:
        self._pool.shutdown(wait=False)


# --------------------------------------------------------------------------
# fleetplane task ...
# --------------------------------------------------------------------------

def setup_task(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", type=Path, default=None,
                   help="run directory of a running topology (default: the newest runs/workload*-real-*)")
    p.add_argument("--tenant", required=True)
    p.add_argument("--token", required=True)
    sub = p.add_subparsers(dest="task_command", required=True)
    s = sub.add_parser("submit", help="submit a task; prints its id (and with --wait its result)")
    s.add_argument("--type", required=True, dest="task_type")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--code", help="Python source defining main(data) or setting result (with --shell: a shell script)")
    g.add_argument("--code-file", type=Path)
    g.add_argument("--code-ref", help="code in the code service: NAME or NAME@VERSION")
    s.add_argument("--shell", action="store_true", help="the inline code is a shell script (runs in the workers' "
                                                         "shell environment; its data in data.json)")
    s.add_argument("--data", default="null", help="the task's data, as JSON (default: null)")
    s.add_argument("--priority", type=int, default=None, help="default: the tenant's account class")
    s.add_argument("--max-delay", type=float, default=60.0)
    s.add_argument("--wait", action="store_true", help="wait for the result and print it")
    for name, helptext in (("status", "where a task is"), ("result", "a task's outcome"), ("retry", "run an ended task again")):
        x = sub.add_parser(name, help=helptext)
        x.add_argument("task_id")
        if name == "result":
            x.add_argument("--wait", type=float, default=0.0, help="wait up to this many seconds for it to end")
    st = sub.add_parser("statement", help="the tenant's billing statement")
    st.add_argument("--period", type=int, default=-1, help="default: the current period")


def _find_run(run: Path | None) -> Path:
    if run is not None:
        return run
    runs = sorted((ROOT / "runs").glob("workload*-real-*"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise WorkloadError("no running workload topology found under runs/ (start one with "
                            "'fleetplane run topologies/workload.toml', or pass --run DIR)")
    return runs[-1]


def _actor_of(topo: dict, kind: str) -> str:
    for n in topo.get("nodes", []):
        for a in n.get("actors", []):
            if a.get("kind") == kind:
                return f"{n['name']}/{a['name']}"
    raise WorkloadError(f"the topology has no {kind} actor")


@client_command
def cmd_task(args: argparse.Namespace) -> int:
    from actors import Node
    from transport.zmq import ZmqTransport

    try:
        run = _find_run(args.run)
        topo = json.loads((run / "topology.json").read_text())
        peers = {n["name"]: f"tcp://{n.get('host', '127.0.0.1')}:{n['port']}" for n in topo["nodes"]}
        gateway, billing = _actor_of(topo, "workload.gateway"), _actor_of(topo, "workload.billing")
    except (OSError, ValueError, KeyError, WorkloadError) as e:
        print(f"error: cannot use run {args.run or 'runs/workload-real-*'}: {e}", file=sys.stderr)
        return 2
    node = Node(f"client-task-{os.getpid()}", transport=ZmqTransport("tcp://127.0.0.1:*", peers))
    client = WorkloadClient(node, gateway, tenant=args.tenant, token=args.token, billing=billing)
    try:
        c = args.task_command
        if c == "submit":
            if args.code_ref:
                name, _, version = args.code_ref.partition("@")
                code: dict | str = {"ref": name, "version": int(version or 0)}
            else:
                code = args.code if args.code is not None else args.code_file.read_text()
                if args.shell:
                    code = {"source": code, "type": "shell"}
            try:
                data = json.loads(args.data)
            except ValueError as e:
                print(f"error: --data is not JSON: {e}", file=sys.stderr)
                return 2
            tid = client.submit(args.task_type, code=code, data=data, priority=args.priority,
                                max_delay=args.max_delay).result()
            print(tid, flush=True)
            if args.wait:
                out = client.result(tid, timeout=max(60.0, args.max_delay * 2))
                print(json.dumps(out, default=str))
                return 0 if out.get("ok") else 1
        elif c == "status":
            st = client.status(args.task_id)
            print(json.dumps({"task": st.task_id, "state": st.state, "attempts": st.attempts}))
        elif c == "result":
            if args.wait:
                out = client.result(args.task_id, timeout=args.wait)
            else:
                st = client.status(args.task_id)
                if st.state != "done":
                    print(json.dumps({"task": st.task_id, "state": st.state}))
                    return 3
                out = dict(st.outcome or {})
            print(json.dumps(out, default=str))
            return 0 if out.get("ok") else 1
        elif c == "retry":
            client.retry(args.task_id)
            print(f"{args.task_id} queued again")
        elif c == "statement":
            print(json.dumps(client.statement(args.period), indent=1))
        return 0
    except WorkloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()
        node.shutdown()
