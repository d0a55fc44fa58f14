"""Spend in the core: price every usage event, keep node / swarm / injection totals, enforce budgets.

The arithmetic is codeswarm/spend/ (pure); this module decides and reduces (docs/SPEND.md):
- a `usage` event is logged with what it adds (`estimated_cost_usd`, `delta_tokens`) and the node's
  running total; reducers fold it into the node's meter, the swarm's total and the injection's cost,
  so every total is derived from logged events (a snapshot plus the log after it) and a replayed
  event is ignored by seq;
- crossing the warning mark of a budget logs `budget_warning`; reaching it logs `budget_exceeded`,
  fails the injections not yet running (`inject_failed` reason `budget_exceeded`), drops the swarm's
  queue and asks each busy node to interrupt its running turn (inbox control `interrupt`). The swarm
  stays running: new work is refused (`command_rejected` code `budget_exceeded`) until the budget is
  raised (`swarm_budget` -> `budget_updated`) or the swarm is terminated.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from codeswarm.core import project_budget, queue
from codeswarm.core.kernel import Event, Feature, Ids, InboxLine, Out
from codeswarm.core.records import CoreState, Swarm
from codeswarm.core.steps import fail_injection
from codeswarm.core.views import swarm_spend
from codeswarm.spend.budget import BudgetState, crossings, percent
from codeswarm.spend.meter import NodeMeter, folded, measure_json, money

REASON = "budget_exceeded"


@dataclass(frozen=True)
class SetBudget:
    """`swarm_budget`: a new budget (USD) for a swarm, or None to remove it."""

    swarm_id: str
    budget_usd: float | None
    request_id: str | None


@dataclass(frozen=True)
class ReassertStops:
    """After a restart: ask again for the interrupts of every spent budget (swarm or project) whose
    turns still run. The budget_exceeded event was durable before its inbox lines were written, so a
    crash in between would otherwise leave those turns running; a repeated interrupt is harmless."""


# ---------------------------------------------------------------- views


def budget_state(swarm: Swarm) -> BudgetState:
    b = swarm.budget_usd
    return BudgetState(None if b is None else Decimal(repr(float(b))), swarm.budget_warned, swarm.budget_exceeded)


def refusal(swarm: Swarm) -> str | None:
    """Why new work for this swarm is refused now, or None."""
    if not swarm.budget_exceeded:
        return None
    spent = money(swarm_spend(swarm).cost_usd)
    return (f"the swarm's budget of ${swarm.budget_usd:,.2f} is spent (${spent:,.2f}); raise it with "
            f"`codeswarm budget {swarm.swarm_id} --usd AMOUNT` or terminate the swarm")


# ---------------------------------------------------------------- deciding


def charge_usage(out: Out, state: CoreState, swarm: Swarm, node_id: int, data: dict[str, Any]) -> Decimal | None:
    """Log a normalized usage event with what it costs, then the budget marks it crosses.
    Returns the logged cost (None when unknown) so the caller can total a turn."""
    charge, node_cost = measure_json(swarm.nodes[node_id].spend, data, state.settings.pricing, swarm.params,
                                     swarm.agent_runtime)
    cost = None if charge.cost_usd is None else Decimal(repr(money(charge.cost_usd)))
    project = project_budget.tag_usage(state, data) if state.projects.by_injection else None
    out.emit("usage", {**data, **charge.fields(node_cost + (cost or 0))})
    if cost:
        if swarm.budget_usd is not None:  # no budget: no mark to cross (and no swarm total to read)
            check_budget(out, state, swarm, swarm_spend(swarm).cost_usd + cost, budget_state(swarm))
        if project is not None:
            project_budget.after_charge(out, state, project, cost)
    return cost


def check_budget(out: Out, state: CoreState, swarm: Swarm, spent: Decimal, budget: BudgetState) -> None:
    for name in crossings(budget, spent, state.settings.budget_warn_fraction):
        out.emit(name, {"swarm_id": swarm.swarm_id, "job_id": swarm.job_id, "scope": "swarm",
                        "spend_usd": money(spent), "budget_usd": float(budget.budget_usd or 0),
                        "percent": percent(spent, budget)})
        if name == "budget_exceeded":
            stop_work(out, state, swarm)


def stop_work(out: Out, state: CoreState, swarm: Swarm) -> None:
    """Fail what has not started, interrupt what runs (gently, by the worker), drop the queue."""
    per_node: dict[int, list[str]] = {}
    for inj in list(swarm.open_injections()):
        if inj.injection_id in out.closed_injections:
            continue
        per_node.setdefault(inj.node_id, []).append(inj.injection_id)
        if project_budget.not_started(out, inj):
            fail_injection(out, swarm, inj.node_id, inj.injection_id, inj.request_id, REASON,
                           "the swarm's budget is spent")
    for node_id, ids in sorted(per_node.items()):
        out.effect(InboxLine(swarm.swarm_id, node_id, {
            "type": "control", "control_id": out.ids(), "ts": out.now,
            "payload": {"kind": "interrupt", "reason": REASON, "injection_ids": ids}}))
    queue.drop_all(out, state, swarm, "budget exceeded")


def decide_reassert(state: CoreState, inp: ReassertStops, now: float, ids: Ids, out: Out) -> None:
    for swarm in state.swarms.values():
        if swarm.active and swarm.budget_exceeded and any(True for _ in swarm.open_injections()):
            stop_work(out, state, swarm)
    for p in state.projects.projects.values():
        if p.budget_exceeded:
            project_budget.stop(out, state, p)


def decide_set_budget(state: CoreState, inp: SetBudget, now: float, ids: Ids, out: Out) -> None:
    swarm = state.swarms.get(inp.swarm_id)
    if swarm is None:
        return
    spent = swarm_spend(swarm).cost_usd
    fresh = BudgetState(None if inp.budget_usd is None else Decimal(repr(float(inp.budget_usd))))
    marks = crossings(fresh, spent, state.settings.budget_warn_fraction)
    label = None if inp.budget_usd is None else \
        "exceeded" if "budget_exceeded" in marks else "warning" if marks else "ok"
    out.emit("budget_updated", {"request_id": inp.request_id, "scope": "swarm", "swarm_id": swarm.swarm_id, "job_id": swarm.job_id,
                                "budget_usd": inp.budget_usd, "spend_usd": money(spent), "budget_state": label,
                                "cost_unknown": swarm_spend(swarm).cost_unknown})
    check_budget(out, state, swarm, spent, fresh)


# ---------------------------------------------------------------- reducing


def _swarm(state: CoreState, event: Event) -> Swarm | None:
    sid = event.data.get("swarm_id")
    return state.swarms.get(sid) if isinstance(sid, str) else None


def reduce_usage(state: CoreState, event: Event) -> None:
    if "project_id" in event.data:
        project_budget.fold_usage(state, event)
    swarm = _swarm(state, event)
    node_id = event.data.get("node_id")
    if swarm is None or not isinstance(node_id, int) or not 0 <= node_id < swarm.node_count:
        return
    node = swarm.nodes[node_id]
    node_meter = folded(node.spend, event.data, event.seq)
    if node_meter is None:
        return  # already folded in (a replay over a newer snapshot)
    node.spend = node_meter
    total = folded(swarm.spend, event.data, event.seq, track_threads=False)
    swarm.spend = total if total is not None else NodeMeter.from_json(swarm.spend).to_json()
    cost = event.data.get("estimated_cost_usd")
    inj = swarm.injections.get(event.data.get("injection_id") or "")
    if inj is not None and isinstance(cost, (int, float)) and not isinstance(cost, bool):
        inj.spend_usd = str(Decimal(inj.spend_usd) + Decimal(repr(float(cost))))


def reduce_mark(state: CoreState, event: Event) -> None:
    if event.data.get("scope") == project_budget.SCOPE:
        project_budget.reduce_mark(state, event)
        return
    swarm = _swarm(state, event)
    if swarm is None or event.data.get("scope", "swarm") != "swarm":
        return
    swarm.budget_warned = True
    if event.name == "budget_exceeded":
        swarm.budget_exceeded = True


def reduce_budget_updated(state: CoreState, event: Event) -> None:
    if event.data.get("scope") == project_budget.SCOPE:
        project_budget.reduce_updated(state, event)
        return
    swarm = _swarm(state, event)
    if swarm is None:
        return
    b = event.data.get("budget_usd")
    swarm.budget_usd = float(b) if isinstance(b, (int, float)) and not isinstance(b, bool) else None
    # re-armed; the marks the spend is already past follow as their own events
    swarm.budget_warned = swarm.budget_exceeded = False


FEATURE = Feature(
    name="spend",
    deciders={SetBudget: decide_set_budget, ReassertStops: decide_reassert},
    reducers={"usage": reduce_usage, "budget_warning": reduce_mark, "budget_exceeded": reduce_mark,
              "budget_updated": reduce_budget_updated},
)
