"""Project budgets in the core: a project's spend is the cost of its tasks' turns. Pure.

- The usage of a project task's injection is tagged on the logged `usage` event (`project_id`,
  `task_id`), so the project's spend is folded from logged events like every other total: a
  snapshot (projects.json) plus the log after it, a replayed event ignored by seq (ProjectMeter).
  The planner turn that wrote the task graph is counted from `project_created.planner_spend_usd`.
- Crossing the warning mark logs `budget_warning` {scope: "project"}; reaching the budget logs
  `budget_exceeded` {scope: "project"} and stops the project's work gently: injections not yet
  running are withdrawn (`inject_failed` reason `budget_exceeded`; the dispatcher re-queues their
  tasks), running task turns are interrupted (inbox control `interrupt`) and their tasks go back to
  `ready` without spending an attempt (projects.task_result), and no task is assigned while the
  budget stays exceeded (projects._dispatch_project). The project stays open: raising the budget
  (`project_budget` -> `budget_updated` {scope: "project"}) lets it go on; `project start` and
  `project resume` are refused with code `budget_exceeded` until then.
- Project budget events carry `project_id` and no `swarm_id`: the router's swarm replay skips them
  and the projects shell replays them after its snapshot (router/projects_shell.py `recover`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from codeswarm.core.kernel import Event, Feature, Ids, InboxLine, Out
from codeswarm.core.project_records import ACTIVE_TASK_STATES, Project
from codeswarm.core.records import CoreState
from codeswarm.core.steps import fail_injection
from codeswarm.spend.budget import BudgetState, crossings, percent
from codeswarm.spend.meter import ProjectMeter, money

REASON = "budget_exceeded"
SCOPE = "project"
BUDGET_EVENTS = frozenset({"budget_warning", "budget_exceeded", "budget_updated"})


@dataclass(frozen=True)
class SetProjectBudget:
    """`project_budget`: a new budget (USD) for a project, or None to remove it."""

    project_id: str
    budget_usd: float | None
    request_id: str | None


# ---------------------------------------------------------------- views


def budget_state(p: Project) -> BudgetState:
    b = p.budget_usd
    return BudgetState(None if b is None else Decimal(repr(float(b))), p.budget_warned, p.budget_exceeded)


def spent(p: Project) -> Decimal:
    return ProjectMeter.from_json(p.spend).cost_usd


def refusal(p: Project) -> str | None:
    """Why new work for this project is refused now, or None."""
    if not p.budget_exceeded:
        return None
    return (f"the project's budget of ${p.budget_usd or 0:,.2f} is spent (${money(spent(p)):,.2f}); raise it with "
            f"`codeswarm project budget {p.project_id} --usd AMOUNT`")


# ---------------------------------------------------------------- deciding


def tag_usage(state: CoreState, data: dict[str, Any]) -> Project | None:
    """Name the project task a usage event belongs to (on the event itself); the project, or None."""
    found = state.projects.task_of(data.get("injection_id"))
    if found is None:
        return None
    p, t = found
    if t.swarm_id != data.get("swarm_id") or t.node_id != data.get("node_id"):
        return None  # only the node the attempt was sent to spends for it
    data["project_id"], data["task_id"] = p.project_id, t.id
    return p


def after_charge(out: Out, state: CoreState, p: Project, cost: Decimal) -> None:
    """The marks a task's usage of `cost` crosses (the usage event is already emitted)."""
    check(out, state, p, spent(p) + cost, budget_state(p))


def check(out: Out, state: CoreState, p: Project, total: Decimal, budget: BudgetState) -> None:
    for name in crossings(budget, total, state.settings.budget_warn_fraction):
        out.emit(name, {"scope": SCOPE, "project_id": p.project_id, "spend_usd": money(total),
                        "budget_usd": float(budget.budget_usd or 0), "percent": percent(total, budget)})
        if name == "budget_exceeded":
            stop(out, state, p)


def not_started(out: Out, inj: Any) -> bool:
    """The injection's turn has not started, also counting this decision's own events (a turn can
    start and cross a budget in one outbox line; the record moves only when the events are reduced)."""
    if inj.state not in ("acked", "delivered"):
        return False
    iid = inj.injection_id
    return not any(ev.name == "turn_started" and ev.data.get("injection_id") == iid for ev in out.events)


def stop(out: Out, state: CoreState, p: Project) -> None:
    """Withdraw the project's injections that have not started and interrupt its running turns."""
    per_node: dict[tuple[str, int], list[str]] = {}
    for t in p.tasks.values():
        if t.state not in ACTIVE_TASK_STATES or not t.injection_id or t.swarm_id is None or t.node_id is None:
            continue
        swarm = state.swarms.get(t.swarm_id)
        inj = swarm.injections.get(t.injection_id) if swarm is not None else None
        if swarm is None or inj is None or inj.state in ("completed", "failed") \
                or t.injection_id in out.closed_injections:
            continue
        per_node.setdefault((t.swarm_id, t.node_id), []).append(t.injection_id)
        if not_started(out, inj):
            fail_injection(out, swarm, t.node_id, t.injection_id, inj.request_id, REASON,
                           "the project's budget is spent")
    for (sid, node_id), ids in sorted(per_node.items()):
        out.effect(InboxLine(sid, node_id, {
            "type": "control", "control_id": out.ids(), "ts": out.now,
            "payload": {"kind": "interrupt", "reason": REASON, "injection_ids": ids}}))


def decide_set_budget(state: CoreState, inp: SetProjectBudget, now: float, ids: Ids, out: Out) -> None:
    p = state.projects.projects.get(inp.project_id)
    if p is None:
        return  # the shell checked it exists
    total = spent(p)
    fresh = BudgetState(None if inp.budget_usd is None else Decimal(repr(float(inp.budget_usd))))
    marks = crossings(fresh, total, state.settings.budget_warn_fraction)
    label = None if inp.budget_usd is None else \
        "exceeded" if "budget_exceeded" in marks else "warning" if marks else "ok"
    out.emit("budget_updated", {"request_id": inp.request_id, "scope": SCOPE, "project_id": p.project_id,
                                "budget_usd": inp.budget_usd, "spend_usd": money(total), "budget_state": label,
                                "cost_unknown": ProjectMeter.from_json(p.spend).cost_unknown})
    check(out, state, p, total, fresh)


# ---------------------------------------------------------------- reducing


def is_project_scoped(name: str, data: dict[str, Any]) -> bool:
    """A spend event the projects shell replays after its snapshot (the swarm replay cannot: the
    project records are loaded after it)."""
    if name == "usage":
        return isinstance(data.get("project_id"), str)
    return name in BUDGET_EVENTS and data.get("scope") == SCOPE


def may_be_project_scoped(raw: bytes) -> bool:
    """A cheap look at a log line before parsing it (the log is compact JSON)."""
    return b'"scope":"project"' in raw or (b'"event":"usage"' in raw and b'"project_id"' in raw)


def fold_usage(state: CoreState, event: Event) -> None:
    """Add a logged usage event to its project's meter (once: by seq)."""
    data = event.data
    p = state.projects.projects.get(data.get("project_id") or "")
    task_id = data.get("task_id")
    if p is None or not isinstance(task_id, str):
        return
    meter = ProjectMeter.from_json(p.spend)
    if meter.apply(data, event.seq, task_id):
        p.spend = meter.to_json()


def reduce_mark(state: CoreState, event: Event) -> None:
    p = state.projects.projects.get(event.data.get("project_id") or "")
    if p is None:
        return
    p.budget_warned = True
    if event.name == "budget_exceeded":
        p.budget_exceeded = True


def reduce_updated(state: CoreState, event: Event) -> None:
    p = state.projects.projects.get(event.data.get("project_id") or "")
    if p is None:
        return
    b = event.data.get("budget_usd")
    p.budget_usd = float(b) if isinstance(b, (int, float)) and not isinstance(b, bool) else None
    p.budget_warned = p.budget_exceeded = False  # re-armed; the marks already past follow as events


def replay(state: CoreState, event: Event) -> None:
    """Fold one project-scoped spend event (is_project_scoped) during the projects' recovery."""
    if event.name == "usage":
        fold_usage(state, event)
    elif event.name == "budget_updated":
        reduce_updated(state, event)
    else:
        reduce_mark(state, event)


FEATURE = Feature(name="project_budget", deciders={SetProjectBudget: decide_set_budget})
