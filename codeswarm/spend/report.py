"""`codeswarm spend`: tables per model and per node over logged `usage` events. Pure.

The router logs on every usage event what it adds (`estimated_cost_usd`, `delta_tokens`), so any
window of the log sums to the spend of that window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable, Mapping

from codeswarm.spend.meter import money
from codeswarm.spend.pricing import TokenCounts, combine_labels

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: datetime) -> datetime:
    """`--since`: an ISO-8601 time (UTC unless it says otherwise) or an age such as `30m`, `2h`, `7d`."""
    m = _RELATIVE.match(text.strip())
    if m:
        return now - timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2)])
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since: {text!r} is neither an ISO-8601 time nor an age like 30m, 2h, 7d") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@dataclass
class Row:
    cost_usd: Decimal = Decimal(0)
    tokens: TokenCounts = field(default_factory=TokenCounts)
    unpriced_tokens: int = 0
    events: int = 0
    pricing_model: str | None = None

    def add(self, data: Mapping[str, Any]) -> None:
        added = TokenCounts.from_json(data.get("delta_tokens") if isinstance(data.get("delta_tokens"), dict) else {})
        self.tokens = self.tokens + added
        cost = data.get("estimated_cost_usd")
        if isinstance(cost, (int, float)) and not isinstance(cost, bool):
            self.cost_usd += Decimal(repr(float(cost)))
        else:
            self.unpriced_tokens += added.total
        self.events += 1
        model = data.get("pricing_model")
        if isinstance(model, str):
            self.pricing_model = combine_labels(self.pricing_model, model)

    def to_json(self) -> dict[str, Any]:
        return {"spend_usd": money(self.cost_usd), "cost_unknown": self.unpriced_tokens > 0,
                "unpriced_tokens": self.unpriced_tokens, "usage_events": self.events,
                "pricing_model": self.pricing_model, **self.tokens.to_json()}


@dataclass
class SpendReport:
    total: Row = field(default_factory=Row)
    by_model: dict[str, Row] = field(default_factory=dict)
    by_node: dict[tuple[str, int], Row] = field(default_factory=dict)
    by_task: dict[str, Row] = field(default_factory=dict)  # only with a task map (a project's tasks)

    def to_json(self) -> dict[str, Any]:
        out = {
            "total": self.total.to_json(),
            "by_model": {m: r.to_json() for m, r in sorted(self.by_model.items())},
            "by_node": [{"swarm_id": s, "node_id": n, **r.to_json()} for (s, n), r in sorted(self.by_node.items())],
        }
        if self.by_task:
            out["by_task"] = {t: r.to_json() for t, r in sorted(self.by_task.items())}
        return out


def build_report(envelopes: Iterable[Mapping[str, Any]], *, since: datetime | None = None,
                 swarm_ids: set[str] | None = None, tasks: Mapping[str, str] | None = None,
                 project_id: str | None = None) -> SpendReport:
    """Sum the usage events (event envelopes as logged) that pass the filters; `tasks` maps
    injection ids to task ids for a per-task table. `project_id`: only the usage of that project's
    tasks (tagged on the event, core/project_budget.py), per task by the event's `task_id`."""
    report = SpendReport()
    for env in envelopes:
        if env.get("event") != "usage" or not isinstance(env.get("data"), dict):
            continue
        data = env["data"]
        if swarm_ids is not None and data.get("swarm_id") not in swarm_ids:
            continue
        if project_id is not None and data.get("project_id") != project_id:
            continue
        if since is not None and not _at_or_after(env.get("timestamp"), since):
            continue
        model = data.get("pricing_model") if isinstance(data.get("pricing_model"), str) else "(unknown model)"
        node = data.get("node_id") if isinstance(data.get("node_id"), int) else -1
        rows = [report.total, report.by_model.setdefault(model, Row()),
                report.by_node.setdefault((str(data.get("swarm_id")), node), Row())]
        task = (tasks or {}).get(str(data.get("injection_id")))
        if project_id is not None and isinstance(data.get("task_id"), str):
            task = data["task_id"]
        if task is not None:
            rows.append(report.by_task.setdefault(task, Row()))
        for row in rows:
            row.add(data)
    return report


def _at_or_after(timestamp: Any, since: datetime) -> bool:
    if not isinstance(timestamp, str):
        return False
    try:
        when = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return False
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)) >= since


def format_usd(value: Decimal | float, unknown: bool = False) -> str:
    text = f"${float(value):,.4f}" if float(value) < 1 else f"${float(value):,.2f}"
    return text + ("+?" if unknown else "")


def render_tables(report: SpendReport) -> str:
    """Two aligned tables, per model and per node, and the total."""
    lines = [_table(["MODEL", "SPEND", "TOKENS", "INPUT", "CACHED", "OUTPUT", "EVENTS"],
                    [[m, format_usd(r.cost_usd, r.unpriced_tokens > 0), str(r.tokens.total), str(r.tokens.input),
                      str(r.tokens.cached_input), str(r.tokens.output), str(r.events)]
                     for m, r in sorted(report.by_model.items())])]
    lines.append("")
    lines.append(_table(["SWARM", "NODE", "MODEL", "SPEND", "TOKENS"],
                        [[s, str(n), r.pricing_model or "-", format_usd(r.cost_usd, r.unpriced_tokens > 0),
                          str(r.tokens.total)] for (s, n), r in sorted(report.by_node.items())]))
    if report.by_task:
        lines.append("")
        lines.append(_table(["TASK", "SPEND", "TOKENS"],
                            [[t, format_usd(r.cost_usd, r.unpriced_tokens > 0), str(r.tokens.total)]
                             for t, r in sorted(report.by_task.items())]))
    t = report.total
    lines.append("")
    note = f" ({t.unpriced_tokens} tokens of an unpriced model not included)" if t.unpriced_tokens else ""
    lines.append(f"total {format_usd(t.cost_usd)} over {t.tokens.total} tokens, {t.events} usage events{note}")
    return "\n".join(lines)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])
