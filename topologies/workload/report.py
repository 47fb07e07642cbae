"""The workload section of report.html: waits against maximum delays over time, and the task counts.

How this works
--------------
:func:`workload_chart` reads the queue's events (``protocols/workload``) and
draws one inline SVG in the report's shared frame
(:func:`topologies.report.chart_svg`: the same time axis and fault marks as
every other chart): one dot per dispatch at its time, its height the wait
divided by the task's maximum delay (the dashed line at 1 is the maximum
delay; a dot above it is an overdue task, which the queue serves first),
green for a first attempt and orange for a task given out again after a lost
lease. Under it, one line of counts: acknowledged, ended (results, failures,
lost), results discarded as duplicates, leases lapsed, workers' self-fencing,
billed. It returns ``None`` when the log has no workload events.
"""

from __future__ import annotations

from topologies.report import TimeAxis, chart_svg

__all__ = ["workload_chart"]


def workload_chart(events: list[dict], periods: list[dict], t0: float, t1: float) -> str | None:
    disp = [e for e in events if e.get("kind") == "workload.dispatched"]
    if not disp and not any(str(e.get("kind", "")).startswith("workload.") for e in events):
        return None
    axis = TimeAxis(t0, t1)
    top, bottom = 20, 200
    ratios = []
    for e in disp:
        f = e.get("fields") or {}
        try:
            ratios.append((float(e["time"]), float(f.get("waited", 0.0)) / max(float(f.get("max_delay", 1.0)), 1e-9),
                           int(f.get("attempt", 1))))
        except (TypeError, ValueError, KeyError):
            continue
    peak = max([2.0] + [r for _, r, _ in ratios])
    y = lambda r: bottom - min(r, peak) / peak * (bottom - top)  # noqa: E731
    body = [f'<line x1="{axis.left}" y1="{y(1.0):.1f}" x2="{axis.right}" y2="{y(1.0):.1f}" stroke="#d73a49" '
            f'stroke-dasharray="5,4"><title>the maximum delay</title></line>']
    for t, r, attempt in ratios:
        colour = "#28a745" if attempt <= 1 else "#e36209"
        body.append(f'<circle cx="{axis.x(t):.1f}" cy="{y(r):.1f}" r="2.5" fill="{colour}">'
                    f'<title>wait {r:.2f} x max delay, attempt {attempt}</title></circle>')
    svg = chart_svg(axis, periods, body, top=top, bottom=bottom, label="dispatch waits against the maximum delay",
                    y_label="wait / max delay", y_ticks=[(0.0, bottom), (1.0, y(1.0)), (peak, top)])

    def count(kind: str, **match) -> int:
        return sum(1 for e in events if e.get("kind") == kind
                   and all((e.get("fields") or {}).get(k) == v for k, v in match.items()))

    acked = len({(e.get("fields") or {}).get("task") for e in events
                 if e.get("kind") in ("workload.acknowledged", "workload.client_acked")})
    line = (f"<p>{acked} tasks acknowledged; {count('workload.task_done')} ended "
            f"({count('workload.task_done', ok=True)} results, "
            f"{count('workload.task_done', ok=False, lost=False)} retained failures, "
            f"{count('workload.task_done', lost=True)} lost after their attempts); "
            f"{count('workload.result_discarded')} results discarded as duplicates; "
            f"{count('workload.lease_lapsed')} leases lapsed; {count('workload.fenced')} tasks stopped by "
            f"self-fencing; {count('workload.billed')} results billed; "
            f"{count('workload.queue_started')} queue starts.</p>")
    return svg + line
