"""The boot-workflow section of report.html: holders against the limit in force over time, per resource.

One line per resource controller (its leases held) and its limit in force, in
the report's shared frame (:func:`topologies.report.lines_svg`); when every
controller's limit stays the same one value, a single ``limit (each)`` line.
Per resource, so the chart reads like the admission-limit checker ("peak 50
holders" is 50 on this chart, not the sum over resources).
"""

from __future__ import annotations

from topologies.report import lines_svg

__all__ = ["holders_chart", "holders_series"]


def holders_series(events: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """'holders <resource>' and 'limit <resource>' over time, for every controller that reports both."""
    holders: dict[str, list[tuple[float, float]]] = {}
    limits: dict[str, list[tuple[float, float]]] = {}
    for e in events:
        f = e.get("fields") or {}
        if "holders" not in f or "limit" not in f and "new" not in f:
            continue
        c = (e["node"], e["actor"])
        holders.setdefault(c, []).append((e["time"], f["holders"]))
        limits.setdefault(c, []).append((e["time"], f.get("new", f.get("limit"))))
    if not holders:
        return {}
    actors = [a for _, a in holders]
    name = {c: (c[1] if actors.count(c[1]) == 1 else f"{c[0]}/{c[1]}") for c in holders}
    out = {f"holders {name[c]}": pts for c, pts in holders.items()}
    values = {v for pts in limits.values() for _, v in pts}
    if len(values) == 1:
        first = min(t for pts in limits.values() for t, _ in pts)
        out["limit (each)"] = [(first, next(iter(values)))]
    else:
        out.update({f"limit {name[c]}": pts for c, pts in limits.items()})
    return out


def holders_chart(events: list[dict], periods: list[dict], t0: float, t1: float) -> str | None:
    series = holders_series(events)
    n = sum(1 for k in series if k.startswith("holders "))
    return lines_svg(series, periods, t0, t1, y_label=f"leases held per resource ({n} resources) and the limit in force"
                     ) if series else None
