"""Budget events (docs/SPEND.md; docs/PROTOCOL.md "Spend and budgets"). A swarm's carry
`swarm_id`/`job_id`; a project's `project_id` and no swarm."""

from typing import Literal, NotRequired, TypedDict

from codeswarm.core.event_types.registry import EventType, declare

Scope = Literal["swarm", "project"]


class BudgetMark(TypedDict):
    """budget_warning / budget_exceeded: the spend crossed warn_fraction / 100 % of the budget, once
    per arming (core/spend.py check_budget, core/project_budget.py check). On exceeded the router
    stops the work."""

    scope: Scope
    spend_usd: float
    budget_usd: float
    percent: float | None
    swarm_id: NotRequired[str]
    job_id: NotRequired[str]
    project_id: NotRequired[str]


class BudgetUpdated(TypedDict):
    """A budget was set, raised, lowered or cleared (`swarm_budget` / `project_budget` commands)."""

    request_id: str | None
    scope: Scope
    budget_usd: float | None
    spend_usd: float
    budget_state: str | None
    cost_unknown: bool
    swarm_id: NotRequired[str]
    job_id: NotRequired[str]
    project_id: NotRequired[str]


EVENTS: tuple[EventType, ...] = declare(
    "budgets",
    EventType("budget_warning", BudgetMark, "broadcast", "docs/SPEND.md"),
    EventType("budget_exceeded", BudgetMark, "broadcast", "docs/SPEND.md"),
    EventType("budget_updated", BudgetUpdated, "broadcast", "docs/SPEND.md"),
)
