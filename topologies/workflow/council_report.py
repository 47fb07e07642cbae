"""The councils' section of report.html (issue 21): one row per mitigation, as the event log tells it.

Per mitigation: the proposer and the peer, servers asked and accepted, whether an operator's approval was
needed and who approved or rejected it, how many servers the proposer redirected and the peer admitted,
and how it ended (and by whom); then the holds and the "no mitigation possible" alerts. ``None`` when
the log has no council event (every other topology).
"""

from __future__ import annotations

import html
from collections import defaultdict

__all__ = ["council_table"]


def _e(s: object) -> str:
    return html.escape("" if s is None else str(s), quote=True)


def council_table(events: list[dict], periods: list[dict], t0: float, t1: float) -> str | None:
    rows: dict[str, dict] = {}
    redirected: dict[str, set] = defaultdict(set)
    admitted: dict[str, set] = defaultdict(set)
    holds = alerts = 0
    for e in events:
        k = e.get("kind", "")
        if not k.startswith(("council.", "oversight.")):
            continue
        f = e.get("fields") or {}
        mid = f.get("mitigation")
        if k == "council.proposed":
            rows.setdefault(mid, {"t": e.get("time"), "proposer": f"{e['node']}/{e['actor']}", "peer": f.get("peer"),
                                  "asked": f.get("count"), "by": f.get("by")})
        elif k == "council.decided":
            r = rows.setdefault(mid, {"t": e.get("time"), "proposer": f.get("proposer"), "peer": f.get("peer"),
                                      "asked": f.get("requested"), "by": f.get("by")})
            r.update(accepted=f.get("accepted"), outcome=f.get("outcome"), needs=f.get("needs_approval"))
        elif k == "oversight.decision" and mid in rows:
            rows[mid]["approval"] = f"{'approved' if f.get('approve') else 'rejected'} by {f.get('by')}"
        elif k == "council.redirect":
            redirected[mid].add(f.get("server"))
        elif k == "council.admitted":
            admitted[mid].add(f.get("server"))
        elif k == "council.state" and f.get("to") == "ended" and mid in rows and "ended" not in rows[mid]:
            rows[mid]["ended"] = f"{f.get('reason')} ({f.get('by')}) at {e.get('time', 0.0):.1f}s"
        elif k == "council.hold":
            holds += 1
        elif k == "oversight.alert" or k == "council.no_mitigation":
            alerts += 1
    if not rows and not holds and not alerts:
        return None
    head = ("<tr><th>mitigation</th><th>at</th><th>proposer</th><th>peer</th><th>asked</th><th>accepted</th>"
            "<th>approval</th><th>redirected</th><th>admitted</th><th>ended</th></tr>")
    body = []
    for mid, r in sorted(rows.items(), key=lambda x: (x[1].get("t") or 0.0, x[0])):
        approval = r.get("approval") or ("waits for an operator" if r.get("needs") else "not needed")
        body.append(f"<tr><td>{_e(mid)}</td><td>{(r.get('t') or 0.0):.1f}s</td><td>{_e(r.get('proposer'))}</td>"
                    f"<td>{_e(r.get('peer'))}</td><td>{_e(r.get('asked'))}</td>"
                    f"<td>{_e(r.get('accepted'))} {_e(r.get('outcome') or '')}</td><td>{_e(approval)}</td>"
                    f"<td>{len(redirected.get(mid, ()))}</td><td>{len(admitted.get(mid, ()))}</td>"
                    f"<td>{_e(r.get('ended', ''))}</td></tr>")
    note = (f"<p>{len(rows)} mitigations, {sum(len(v) for v in admitted.values())} servers admitted by peers; "
            f"{holds} rejection holds; {alerts} times no mitigation was possible.</p>")
    return note + f"<table class='council'>{head}{''.join(body)}</table>"
