"""The code service (versioned code) and the data service (checksummed blobs), as state machines.

How this works
--------------
Source: ``shared/seeds/003_1de75d49b2f91a9e.txt`` (FIG. 4: a code storage service
and a data service beside the queue; FIG. 5: code published by one user for
others to run, charged per use).

* :class:`CodeService`: ``PublishCode(owner, name, source, code_type, public,
  price)`` stores a new version of ``name`` (1, 2, ...) and answers
  ``Published(name, version)``; a name belongs to the tenant that first
  published it. ``FetchCode(name, version, tenant, task_id)`` answers
  ``Code`` - the pinned ``version``, or the latest when ``version`` is 0 -
  if the tenant owns the code or it is public, else ``CodeMissing`` with the
  reason. Bounds: ``max_names`` names, ``max_versions`` kept per name (the
  oldest dropped), ``max_bytes`` per source.
* :class:`DataService`: ``PutBlob(data)`` stores ``data`` under its SHA-256 and
  answers ``Stored(sha256)``; ``FetchBlob(sha256, task_id)`` answers ``Blob``
  (the data and its checksum, for the fetcher to verify) or ``BlobMissing``.
  Bounds: ``max_blobs`` (the oldest dropped), ``max_bytes`` per blob.

Both are durable through the host's store (DESIGN.md, "Durable state"): a
publication or a stored blob is a ``Persist`` effect returned before the
answer (the host syncs before the answer leaves), and a restarted service is
built with ``durable=`` what was written (blobs base64-encoded).
"""

from __future__ import annotations

import base64
import hashlib
from collections import OrderedDict
from typing import Any

import attrs

from protocols.core import Effect, Emit, Persist, Send
from transport.codec import message

__all__ = ["Blob", "BlobMissing", "Code", "CodeMissing", "CodeService", "DataService", "FetchBlob", "FetchCode",
           "PublishCode", "Published", "PutBlob", "Stored"]


@message("workload.PublishCode")
class PublishCode:
    owner: str
    name: str
    source: str
    code_type: str = "python"
    public: bool = False
    price: str = "0"


@message("workload.Published")
class Published:
    name: str
    version: int
    ok: bool = True
    error: str = ""


@message("workload.FetchCode")
class FetchCode:
    name: str
    version: int  # 0: the latest
    tenant: str
    task_id: str = ""


@message("workload.Code")
class Code:
    name: str
    version: int
    source: str
    owner: str
    price: str = "0"
    code_type: str = "python"
    task_id: str = ""


@message("workload.CodeMissing")
class CodeMissing:
    name: str
    error: str
    task_id: str = ""


@message("workload.PutBlob")
class PutBlob:
    data: bytes


@message("workload.Stored")
class Stored:
    sha256: str
    ok: bool = True
    error: str = ""


@message("workload.FetchBlob")
class FetchBlob:
    sha256: str
    task_id: str = ""


@message("workload.Blob")
class Blob:
    sha256: str
    data: bytes
    task_id: str = ""


@message("workload.BlobMissing")
class BlobMissing:
    sha256: str
    error: str
    task_id: str = ""


@attrs.define
class _Name:
    owner: str
    public: bool
    price: str
    code_type: str
    versions: "OrderedDict[int, str]" = attrs.field(factory=OrderedDict)
    latest: int = 0


class CodeService:
    tick_interval = None

    def __init__(self, max_names: int = 10_000, max_versions: int = 20, max_bytes: int = 256 * 1024,
                 durable: dict | None = None) -> None:
        self.max_names, self.max_versions, self.max_bytes = max_names, max_versions, max_bytes
        self.names: dict[str, _Name] = {}
        self.counters = {"published": 0, "refused": 0, "fetched": 0, "missing": 0}
        for key, rec in (durable or {}).items():
            if key.startswith("code/") and isinstance(rec, dict):
                n = _Name(rec["owner"], bool(rec["public"]), str(rec["price"]), str(rec["code_type"]),
                          OrderedDict((int(v), src) for v, src in rec["versions"]), int(rec["latest"]))
                self.names[key[5:]] = n

    def _record(self, name: str) -> Persist:
        n = self.names[name]
        return Persist(f"code/{name}", {"owner": n.owner, "public": n.public, "price": n.price,
                                        "code_type": n.code_type, "latest": n.latest,
                                        "versions": [[v, src] for v, src in n.versions.items()]})

    def tick(self, now: float) -> list[Effect]:
        return []

    def publish(self, m: PublishCode) -> Published:
        if not m.name or len(m.name) > 200:
            return Published(m.name, 0, False, "a code name is 1 to 200 characters")
        if len(m.source.encode()) > self.max_bytes:
            return Published(m.name, 0, False, f"source is over {self.max_bytes} bytes")
        n = self.names.get(m.name)
        if n is None:
            if len(self.names) >= self.max_names:
                return Published(m.name, 0, False, f"the code service holds {self.max_names} names (its bound)")
            n = self.names[m.name] = _Name(m.owner, m.public, m.price, m.code_type)
        elif n.owner != m.owner:
            return Published(m.name, 0, False, f"code {m.name!r} belongs to another tenant")
        n.latest += 1
        n.versions[n.latest] = m.source
        n.public, n.price, n.code_type = m.public, m.price, m.code_type
        while len(n.versions) > self.max_versions:
            n.versions.popitem(last=False)
        return Published(m.name, n.latest)

    def fetch(self, m: FetchCode) -> Code | CodeMissing:
        n = self.names.get(m.name)
        if n is None:
            return CodeMissing(m.name, f"no code named {m.name!r}", m.task_id)
        if n.owner != m.tenant and not n.public:
            return CodeMissing(m.name, f"code {m.name!r} is not shared with tenant {m.tenant!r}", m.task_id)
        version = m.version or n.latest
        source = n.versions.get(version)
        if source is None:
            return CodeMissing(m.name, f"code {m.name!r} has no version {version} (kept: {list(n.versions)})",
                               m.task_id)
        return Code(m.name, version, source, n.owner, n.price, n.code_type, m.task_id)

    def handle(self, msg: Any, sender: str, now: float) -> list[Effect]:
        if isinstance(msg, PublishCode):
            r = self.publish(msg)
            self.counters["published" if r.ok else "refused"] += 1
            return [*([self._record(r.name)] if r.ok else []),
                    Emit("workload.code_published", {"name": r.name, "version": r.version, "ok": r.ok,
                                                     "owner": msg.owner, "public": msg.public}),
                    Send(sender, r)]
        if isinstance(msg, FetchCode):
            r = self.fetch(msg)
            self.counters["fetched" if isinstance(r, Code) else "missing"] += 1
            return [Send(sender, r)]
        return []


class DataService:
    tick_interval = None

    def __init__(self, max_blobs: int = 10_000, max_bytes: int = 1024 * 1024, durable: dict | None = None) -> None:
        self.max_blobs, self.max_bytes = max_blobs, max_bytes
        self.blobs: OrderedDict[str, bytes] = OrderedDict()
        self.counters = {"stored": 0, "refused": 0, "fetched": 0, "missing": 0}
        for key, rec in sorted((durable or {}).items(), key=lambda kv: kv[1].get("n", 0) if isinstance(kv[1], dict)
                               else 0):
            if key.startswith("blob/") and isinstance(rec, dict) and rec.get("data") is not None:
                self.blobs[key[5:]] = base64.b64decode(rec["data"])
        self._n = len(self.blobs)

    def tick(self, now: float) -> list[Effect]:
        return []

    def put(self, data: bytes) -> tuple[Stored, list[Effect]]:
        if len(data) > self.max_bytes:
            return Stored("", False, f"blob is {len(data)} bytes; the limit is {self.max_bytes}"), []
        sha = hashlib.sha256(data).hexdigest()
        self._n += 1
        self.blobs[sha] = bytes(data)
        self.blobs.move_to_end(sha)
        writes: list[Effect] = [Persist(f"blob/{sha}", {"n": self._n, "data": base64.b64encode(data).decode()})]
        while len(self.blobs) > self.max_blobs:
            old, _ = self.blobs.popitem(last=False)
            writes.append(Persist(f"blob/{old}", None))  # forgotten: its record is emptied
        return Stored(sha), writes

    def handle(self, msg: Any, sender: str, now: float) -> list[Effect]:
        if isinstance(msg, PutBlob):
            r, writes = self.put(msg.data)
            self.counters["stored" if r.ok else "refused"] += 1
            return [*writes, Send(sender, r)]
        if isinstance(msg, FetchBlob):
            data = self.blobs.get(msg.sha256)
            if data is None:
                self.counters["missing"] += 1
                return [Send(sender, BlobMissing(msg.sha256, f"no blob {msg.sha256[:16]}...", msg.task_id))]
            self.counters["fetched"] += 1
            return [Send(sender, Blob(msg.sha256, data, msg.task_id))]
        return []
