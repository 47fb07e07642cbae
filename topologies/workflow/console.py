"""The operator console of the councils' oversight role (issue 21): a web page on 127.0.0.1, and ``fleetplane oversee``.

How this works
--------------
A topology puts a ``workflow.console`` actor on the node that hosts the oversight role
(``workflow.oversight``). Its machine (:class:`Console`) asks its host, once, to serve
(:class:`ServeConsole`); in a node process :class:`ConsoleHost` then serves HTTP on
``127.0.0.1`` (``port``, 0 = a free one) from a thread of that process, and writes
``RUNDIR/<node>.console.json`` (mode 0600: ``url``, ``token``, ``pid``, ``oversight``). In the
simulator nothing is served (there is no person to click): the host logs ``console.unserved``.

Every API call carries the console's token (``Authorization: Bearer <token>`` or
``X-Console-Token``); the token is random per start of the node (``secrets``), compared in
constant time, and is never in the event log. Without it a call is refused (403) and counted
(``console.refused`` event, rate-limited). The page itself (``GET /``) holds no data and asks
for the token (or takes it from the URL fragment ``#token=...``, which a browser never sends).
Requests whose ``Host`` is not ``127.0.0.1:PORT`` or ``localhost:PORT`` are refused (421:
another site's page cannot reach the console by DNS rebinding), as are bodies over 64 KiB (413)
and bodies that are not a JSON object (400).

The API (JSON in and out)::

    GET  /api/state                         OversightList  -> the OversightView as JSON
    POST /api/approve  {mitigation, operator}               -> OversightApprove
    POST /api/reject   {mitigation, operator, reason?}      -> OversightReject
    POST /api/cancel   {mitigation, operator, reason?}      -> OversightCancel
    POST /api/propose  {council, proposer, peer, count, duration, operator}   -> OversightPropose
    POST /api/impose   {council, proposer, peer, count, duration, operator}   -> OversightImpose

Each is one ask of the oversight actor (``Node.ask``: the operator's messages come from the
oversight role's own node, the only place it takes them from); the answer
(``OversightAck``: ``ok``, ``detail``, ``mitigation``) is returned as JSON, 200 if ``ok`` else
409; no answer within 5 s is 504. ``operator`` names the person (it goes into the oversight
history as ``operator:<name>``); holding the token is what authorises them.

``fleetplane console [RUN]`` prints the URL (with the token in its fragment) of the latest run's
console; ``fleetplane oversee list|approve|reject|propose|impose|cancel [--run RUN]`` calls the same
API with the token from ``RUN/<node>.console.json``.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import attrs
from loguru import logger

from protocols.core import Effect
from protocols.workflow.council_messages import (
    OversightAck,
    OversightApprove,
    OversightCancel,
    OversightImpose,
    OversightList,
    OversightPropose,
    OversightReject,
    OversightView,
)

__all__ = ["Console", "ConsoleHost", "ConsoleServer", "ServeConsole", "to_json"]

MAX_BODY = 64 * 1024
ASK_TIMEOUT = 5.0
PAGE = Path(__file__).with_name("console.html")


@attrs.frozen(slots=True)
class ServeConsole(Effect):
    """Host effect: serve the console for ``oversight`` on 127.0.0.1:``port`` (0: any free port)."""

    oversight: str
    port: int = 0


class Console:
    """The console actor's machine: it asks its host to serve once; it takes no messages (the page's calls go
    straight to the oversight role by ``Node.ask``)."""

    def __init__(self, address: str, oversight: str = "", port: int = 0, rng: Any = None) -> None:
        node = address.partition("/")[0]
        self.address = address
        self.oversight = oversight or f"{node}/oversight"
        if self.oversight.partition("/")[0] != node:
            raise ValueError(f"console {address}: the oversight role {self.oversight!r} must be on the console's own "
                             f"node {node!r} (it takes an operator's messages only from its own node)")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"console {address}: port must be 0..65535, got {port!r}")
        self.port = port
        self.served = False

    def tick(self, now: float) -> list[Effect]:
        if self.served:
            return []
        self.served = True
        return [ServeConsole(self.oversight, self.port)]

    def handle(self, msg: Any, sender: str, now: float) -> list[Effect]:
        return []  # nothing is addressed to the console actor


def to_json(obj: Any) -> Any:
    """An attrs message (or a tuple/list/dict of them) as plain JSON data."""
    if attrs.has(type(obj)):
        return {a.name: to_json(getattr(obj, a.name)) for a in attrs.fields(type(obj))}
    if isinstance(obj, (list, tuple)):
        return [to_json(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    return obj


def _text(body: dict, key: str, limit: int = 200, required: bool = True) -> str:
    v = body.get(key, "")
    if not isinstance(v, str) or (required and not v) or len(v) > limit:
        raise ValueError(f"'{key}' must be a non-empty string of at most {limit} characters" if required
                         else f"'{key}' must be a string of at most {limit} characters")
    return v


def _number(body: dict, key: str, kind: type, low: float, high: float) -> Any:
    v = body.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not isinstance(v, int)):
        raise ValueError(f"'{key}' must be {'an integer' if kind is int else 'a number'}")
    if not low <= v <= high:
        raise ValueError(f"'{key}' must be between {low:g} and {high:g}")
    return kind(v)


def build_call(op: str, body: dict) -> Any:
    """The oversight message for an API call (``ValueError`` with a clear reason for a bad body)."""
    operator = _text(body, "operator", 64)
    if op in ("approve", "reject", "cancel"):
        mitigation = _text(body, "mitigation")
        if op == "approve":
            return OversightApprove(mitigation=mitigation, operator=operator)
        reason = _text(body, "reason", 500, required=False)
        cls = OversightReject if op == "reject" else OversightCancel
        return cls(mitigation=mitigation, operator=operator, reason=reason)
    if op in ("propose", "impose"):
        cls = OversightPropose if op == "propose" else OversightImpose
        return cls(council=_text(body, "council"), proposer=_text(body, "proposer"), peer=_text(body, "peer"),
                   count=_number(body, "count", int, 1, 1_000_000),
                   duration=_number(body, "duration", float, 0.1, 7 * 24 * 3600.0), operator=operator)
    raise KeyError(op)


class ConsoleServer:
    """The HTTP side, independent of the runtime: ``ask(msg) -> reply`` (blocking, raises on timeout) talks to
    the oversight role; ``on_refused(why, client)`` counts refusals. ``start()`` binds 127.0.0.1:``port``."""

    OPS = ("approve", "reject", "cancel", "propose", "impose")

    def __init__(self, ask: Callable[[Any], Any], *, port: int = 0, token: str | None = None,
                 on_refused: Callable[[str, str], None] | None = None) -> None:
        self.ask = ask
        self.token = token or secrets.token_urlsafe(24)
        self.on_refused = on_refused or (lambda why, client: None)
        self.refused = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> "ConsoleServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="console-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _authorised(self, headers: Any) -> bool:
        given = headers.get("X-Console-Token") or ""
        auth = headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            given = auth[len("Bearer "):]
        return hmac.compare_digest(given.strip().encode(), self.token.encode())

    def _handler(self) -> type:
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "fleetplane-console"
            sys_version = ""

            def log_message(self, fmt: str, *args: Any) -> None:  # no per-request lines on stderr
                pass

            def _send(self, status: int, data: Any, ctype: str = "application/json") -> None:
                body = data if isinstance(data, bytes) else json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("X-Content-Type-Options", "nosniff")
                self.send_header("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                                                            "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
                self.end_headers()
                self.wfile.write(body)

            def _refuse(self, status: int, why: str) -> None:
                server.refused += 1
                server.on_refused(why, self.client_address[0])
                self._send(status, {"ok": False, "error": why})

            def _host_ok(self) -> bool:
                host = (self.headers.get("Host") or "").lower()
                return host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}")

            def do_GET(self) -> None:
                if not self._host_ok():
                    return self._refuse(421, "wrong Host header: the console answers only 127.0.0.1 and localhost")
                path = self.path.split("?", 1)[0]
                if path in ("/", "/index.html"):
                    return self._send(200, PAGE.read_bytes(), "text/html; charset=utf-8")
                if path != "/api/state":
                    return self._send(404, {"ok": False, "error": f"no such page: {path}"})
                if not server._authorised(self.headers):
                    return self._refuse(403, "no or wrong console token")
                try:
                    view = server.ask(OversightList(operator="console", history=100))
                except Exception as e:  # noqa: BLE001 - a timeout or a dead letter: tell the page
                    return self._send(504, {"ok": False, "error": f"the oversight role did not answer: {e}"})
                if not isinstance(view, OversightView):
                    return self._send(502, {"ok": False, "error": f"the oversight role answered {type(view).__name__}"})
                self._send(200, {"ok": True, **to_json(view)})

            def do_POST(self) -> None:
                if not self._host_ok():
                    return self._refuse(421, "wrong Host header: the console answers only 127.0.0.1 and localhost")
                path = self.path.split("?", 1)[0]
                op = path[len("/api/"):] if path.startswith("/api/") else ""
                if op not in server.OPS:
                    return self._send(404, {"ok": False, "error": f"no such operation: {path}"})
                if not server._authorised(self.headers):
                    return self._refuse(403, "no or wrong console token")
                try:
                    n = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    n = -1
                if not 0 <= n <= MAX_BODY:
                    return self._send(413, {"ok": False, "error": f"a body must be 0..{MAX_BODY} bytes"})
                try:
                    body = json.loads(self.rfile.read(n) or b"{}")
                    if not isinstance(body, dict):
                        raise ValueError("the body must be a JSON object")
                    msg = build_call(op, body)
                except ValueError as e:
                    return self._send(400, {"ok": False, "error": str(e)})
                try:
                    ack = server.ask(msg)
                except Exception as e:  # noqa: BLE001
                    return self._send(504, {"ok": False, "error": f"the oversight role did not answer: {e}"})
                if not isinstance(ack, OversightAck):
                    return self._send(502, {"ok": False, "error": f"the oversight role answered {type(ack).__name__}"})
                self._send(200 if ack.ok else 409, to_json(ack))

        return Handler


class ConsoleHost:
    """Serves the console in a node process (see the module docstring)."""

    def __init__(self, rng: Any = None) -> None:
        self.server: ConsoleServer | None = None
        self._last_refusal_event = -1e18
        self._suppressed = 0

    def on_effect(self, effect: Any, api: Any) -> None:
        if not isinstance(effect, ServeConsole) or self.server is not None:
            return
        node = getattr(getattr(api, "actor", None), "node", None)
        if node is None:  # the simulator: no person to click
            api.emit("console.unserved", {"why": "a simulated run serves no console"})
            return

        def ask(msg: Any) -> Any:
            return node.ask(effect.oversight, msg, timeout=ASK_TIMEOUT).result(ASK_TIMEOUT + 1.0)

        def refused(why: str, client: str) -> None:
            now = time.monotonic()
            if now - self._last_refusal_event < 1.0:
                self._suppressed += 1
                return
            api.emit("console.refused", {"why": why, "client": client, "suppressed": self._suppressed})
            self._last_refusal_event, self._suppressed = now, 0

        self.server = ConsoleServer(ask, port=effect.port, on_refused=refused).start()
        info = {"url": self.server.url, "token": self.server.token, "pid": os.getpid(), "oversight": effect.oversight}
        events_path = getattr(node.events, "path", None)
        if events_path is not None:
            path = Path(events_path).parent / f"{node.name}.console.json"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(info, f)
            where = str(path)
        else:
            where = "(no run directory: the token is in this node's log)"
            logger.info("console token: {}", self.server.token)
        api.emit("console.serving", {"url": self.server.url, "oversight": effect.oversight, "token_file": where})


# -- the command line: fleetplane console, fleetplane oversee --------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


class ConsoleError(Exception):
    """No console to talk to, or it refused (the message says why)."""


def find_console(run: Path | None) -> dict:
    """The console file of ``run`` (default: the newest run under runs/ that has one)."""
    if run is not None:
        files = sorted(Path(run).glob("*.console.json"))
        if not files:
            raise ConsoleError(f"{run} has no console (no *.console.json: is a workflow.console actor in the "
                               f"topology, and is the run still going?)")
    else:
        files = sorted((ROOT / "runs").glob("*/*.console.json"), key=lambda p: p.stat().st_mtime)
        if not files:
            raise ConsoleError("no run with a console under runs/ (start one, e.g. 'fleetplane run "
                               "topologies/regions.toml', or pass --run DIR)")
    try:
        info = json.loads(files[-1].read_text())
        return {"url": str(info["url"]), "token": str(info["token"]), "pid": int(info["pid"]), "file": str(files[-1])}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConsoleError(f"cannot read {files[-1]}: {e}") from e


def console_call(info: dict, method: str, path: str, body: dict | None = None, timeout: float = 10.0) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(info["url"].rstrip("/") + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {info['token']}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"{}")
        except ValueError:
            return e.code, {"ok": False, "error": str(e)}
    except (OSError, ValueError) as e:
        raise ConsoleError(f"the console at {info['url']} does not answer: {e} (has the run ended?)") from e


def setup_console(p: Any) -> None:
    p.add_argument("run", nargs="?", type=Path, default=None,
                   help="the run directory (default: the newest run under runs/ with a console)")


def cmd_console(args: Any) -> int:
    import sys

    try:
        info = find_console(args.run)
    except ConsoleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{info['url']}#token={info['token']}")
    print(f"(served by process {info['pid']}; the token is in {info['file']}; anyone holding it can act)",
          file=sys.stderr)
    return 0


def setup_oversee(p: Any) -> None:
    p.add_argument("--run", type=Path, default=None,
                   help="the run directory (default: the newest run under runs/ with a console)")
    p.add_argument("--operator", default=os.environ.get("USER") or "operator",
                   help="your name in the oversight history (default: $USER)")
    sub = p.add_subparsers(dest="oversee_command", required=True, metavar="COMMAND")
    ls = sub.add_parser("list", help="councils, mitigations (proposed, pending, in force, rejected), alerts")
    ls.add_argument("--json", action="store_true", help="the whole view as JSON")
    for op, what in (("approve", "approve a pending mitigation"), ("reject", "reject a pending mitigation"),
                     ("cancel", "cancel a mitigation (pending or in force)")):
        s = sub.add_parser(op, help=what)
        s.add_argument("mitigation")
        if op != "approve":
            s.add_argument("--reason", default="")
    for op, what in (("propose", "ask PROPOSER to propose redirecting COUNT waiting servers to PEER (the peer decides)"),
                     ("impose", "impose on PEER a redirect of COUNT of PROPOSER's waiting servers")):
        s = sub.add_parser(op, help=what)
        s.add_argument("council")
        s.add_argument("proposer", help="the overloaded controller's address, e.g. r1/images")
        s.add_argument("peer", help="the peer controller's address, e.g. r2/images")
        s.add_argument("count", type=int)
        s.add_argument("--for", dest="duration", type=float, default=60.0, help="seconds (default 60)")


def cmd_oversee(args: Any) -> int:
    import sys

    try:
        info = find_console(args.run)
        c = args.oversee_command
        if c == "list":
            status, view = console_call(info, "GET", "/api/state")
            if status != 200:
                print(f"error: the console refused: {view.get('error', status)}", file=sys.stderr)
                return 1
            if args.json:
                print(json.dumps(view, indent=1))
                return 0
            _print_view(view)
            return 0
        body: dict = {"operator": args.operator}
        if c in ("approve", "reject", "cancel"):
            body["mitigation"] = args.mitigation
            if c != "approve":
                body["reason"] = args.reason
        else:
            body.update(council=args.council, proposer=args.proposer, peer=args.peer, count=args.count,
                        duration=args.duration)
        status, ack = console_call(info, "POST", f"/api/{c}", body)
        detail = ack.get("detail") or ack.get("error") or ""
        if status == 200 and ack.get("ok"):
            print(f"{c}: done{' (' + ack['mitigation'] + ')' if ack.get('mitigation') else ''}{': ' + detail if detail else ''}")
            return 0
        print(f"error: {c} refused ({status}): {detail}", file=sys.stderr)
        return 1
    except ConsoleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _print_view(view: dict) -> None:
    import sys

    from rich.console import Console as Rich
    from rich.table import Table

    out = Rich(width=None if sys.stdout.isatty() else 200)  # piped: no column cut to 80 characters
    t = Table(title="councils")
    t.add_column("council")
    t.add_column("oversight")
    for name, mode in sorted((view.get("councils") or {}).items()):
        t.add_row(name, mode)
    out.print(t)
    t = Table(title="mitigations")
    for col in ("mitigation", "council", "from", "to", "requested", "accepted", "until", "state", "decided by",
                "approved by"):
        t.add_column(col)
    for m in view.get("mitigations") or []:
        t.add_row(m["mitigation"], m["council"], m["proposer"], m["peer"], str(m["requested"]), str(m["accepted"]),
                  f"{m['until']:.1f}", m["state"], m.get("decided_by", ""), m.get("approved_by", ""))
    out.print(t)
    alerts = view.get("alerts") or []
    if alerts:
        t = Table(title="alerts: no mitigation possible")
        for col in ("time", "council", "from", "detail"):
            t.add_column(col)
        for a in alerts:
            t.add_row(f"{a['time']:.1f}", a["council"], a["by"], a.get("detail", ""))
        out.print(t)
