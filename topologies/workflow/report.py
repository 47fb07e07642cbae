"""The boot-workflow section of report.html: holders against the limit in force over time."""

from __future__ import annotations

from topologies.report import lines_svg

__all__ = ["holders_chart", "holders_series"]


def holders_series(events: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """'holders' and 'limit' over time, summed over every controller that reports both."""
    holders: dict[str, float] = {}
    limits: dict[str, float] = {}
    out: dict[str, list[tuple[float, float]]] = {"holders": [], "limit": []}
    for e in events:
        f = e.get("fields") or {}
        if "holders" not in f or "limit" not in f and "new" not in f:
            continue
        c = f"{e['node']}/{e['actor']}"
        holders[c] = f["holders"]
        limits[c] = f.get("new", f.get("limit"))
        out["holders"].append((e["time"], sum(holders.values())))
        out["limit"].append((e["time"], sum(limits.values())))
    return out if out["holders"] else {}


def holders_chart(events: list[dict], periods: list[dict], t0: float, t1: float) -> str | None:
    series = holders_series(events)
    return lines_svg(series, periods, t0, t1) if series else None
