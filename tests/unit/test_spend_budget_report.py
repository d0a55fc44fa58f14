"""Budget marks (80 % warning, 100 % exceeded, each once, re-armed by a raise) and the `spend` tables."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codeswarm.spend.budget import BudgetState, after_event, crossings, parse_budget, percent, with_budget
from codeswarm.spend.report import build_report, parse_since, render_tables

D = Decimal


def test_marks_fire_once_each_in_order() -> None:
    state = with_budget(D(1), D(0))
    assert crossings(state, D("0.79")) == []
    assert crossings(state, D("0.8")) == ["budget_warning"]
    state = after_event(state, "budget_warning")
    assert crossings(state, D("0.99")) == []
    assert crossings(state, D(1)) == ["budget_exceeded"]
    state = after_event(state, "budget_exceeded")
    assert crossings(state, D(5)) == []
    # one jump over both marks announces both, warning first
    assert crossings(with_budget(D(1), D(0)), D(2)) == ["budget_warning", "budget_exceeded"]
    assert crossings(BudgetState(), D(10**6)) == []  # no budget, no marks


def test_raising_the_budget_rearms_only_the_marks_now_ahead() -> None:
    raised = with_budget(D(10), D("8.5"))
    assert (raised.warned, raised.exceeded) == (True, False)
    assert crossings(raised, D(10)) == ["budget_exceeded"]
    fresh = with_budget(D(100), D("8.5"))
    assert (fresh.warned, fresh.exceeded) == (False, False)
    assert percent(D("8.5"), fresh) == 8.5


def test_state_round_trips() -> None:
    state = BudgetState(D("2.5"), True, False)
    assert BudgetState.from_json(state.to_json()) == state


@pytest.mark.parametrize("value", [0, -1, "5", True, float("nan"), float("inf"), 1e12])
def test_bad_budgets_rejected(value) -> None:
    with pytest.raises(ValueError) as info:
        parse_budget(value)
    assert info.value.args[0] == "budget_usd"


@given(st.lists(st.decimals(min_value=0, max_value=10, places=4), max_size=30),
       st.decimals(min_value="0.01", max_value=20, places=2))
def test_each_mark_fires_exactly_once_whatever_the_increments(steps, budget) -> None:
    state, spent, fired = with_budget(budget, D(0)), D(0), []
    for step in steps:
        spent += step
        for name in crossings(state, spent):
            fired.append(name)
            state = after_event(state, name)
    assert fired.count("budget_warning") == (1 if spent >= budget * D("0.8") else 0)
    assert fired.count("budget_exceeded") == (1 if spent >= budget else 0)


# ---------------------------------------------------------------------------- report

def usage(swarm: str, node: int, cost: float | None, model: str, ts: str, tokens: int = 1000) -> dict:
    return {"event": "usage", "timestamp": ts,
            "data": {"swarm_id": swarm, "node_id": node, "estimated_cost_usd": cost, "pricing_model": model,
                     "cost_unknown": cost is None,
                     "delta_tokens": {"input_tokens": tokens, "cached_input_tokens": 0, "output_tokens": 0}}}


LOG = [
    usage("s1", 0, 0.10, "gpt-5.4", "2026-12-03T09:00:00Z"),
    usage("s1", 1, 0.20, "gpt-5.4", "2026-12-03T10:00:00Z"),
    usage("s1", 1, 0.05, "mock", "2026-12-03T10:30:00+00:00"),
    usage("s2", 0, None, "secret-model", "2026-12-03T10:40:00Z", tokens=500),
    {"event": "turn_complete", "timestamp": "2026-12-03T10:41:00Z", "data": {"swarm_id": "s1"}},
]


def test_report_per_model_and_per_node() -> None:
    r = build_report(LOG).to_json()
    assert r["total"]["spend_usd"] == pytest.approx(0.35) and r["total"]["cost_unknown"] is True
    assert r["total"]["unpriced_tokens"] == 500 and r["total"]["pricing_model"] == "mixed"
    assert r["by_model"]["gpt-5.4"]["spend_usd"] == pytest.approx(0.30)
    assert r["by_model"]["secret-model"]["cost_unknown"] is True
    nodes = {(n["swarm_id"], n["node_id"]): n for n in r["by_node"]}
    assert nodes[("s1", 1)]["spend_usd"] == pytest.approx(0.25) and nodes[("s1", 1)]["pricing_model"] == "mixed"
    text = render_tables(build_report(LOG))
    assert "MODEL" in text and "secret-model" in text and "$0.3500" in text and "500 tokens of an unpriced" in text


def test_report_filters_by_swarm_and_since() -> None:
    r = build_report(LOG, swarm_ids={"s1"}, since=datetime(2026, 12, 3, 10, 0, tzinfo=timezone.utc)).to_json()
    assert r["total"]["spend_usd"] == pytest.approx(0.25) and r["total"]["usage_events"] == 2


def test_parse_since() -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
    assert parse_since("2h", now) == datetime(2026, 12, 3, 10, 0, tzinfo=timezone.utc)
    assert parse_since("2026-12-03T09:30:00", now) == datetime(2026, 12, 3, 9, 30, tzinfo=timezone.utc)
    assert parse_since("2026-12-03T09:30:00Z", now) == datetime(2026, 12, 3, 9, 30, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="neither an ISO-8601 time nor an age"):
        parse_since("yesterday", now)


def test_report_per_task_when_given_the_tasks_injections() -> None:
    log = [{**e, "data": {**e["data"], "injection_id": f"inj-{i}"}} for i, e in enumerate(LOG)]
    r = build_report(log, swarm_ids={"s1"}, tasks={"inj-0": "T-001", "inj-1": "T-002", "inj-2": "T-002"}).to_json()
    assert r["by_task"]["T-001"]["spend_usd"] == pytest.approx(0.10)
    assert r["by_task"]["T-002"]["spend_usd"] == pytest.approx(0.25) and r["by_task"]["T-002"]["pricing_model"] == "mixed"
    assert "TASK" in render_tables(build_report(log, tasks={"inj-0": "T-001"}))
    assert "by_task" not in build_report(LOG).to_json()


def test_report_of_a_project_sums_only_its_tagged_usage_per_task() -> None:
    def ev(seq, cost, **tag):
        return {"event": "usage", "seq": seq, "timestamp": "2026-12-03T12:00:00Z",
                "data": {"swarm_id": "s1", "node_id": 0, "injection_id": f"i{seq}", "estimated_cost_usd": cost,
                         "pricing_model": "mock", "delta_tokens": {"input_tokens": 10, "total_tokens": 10},
                         "cost_unknown": False, **tag}}
    log = [ev(1, 1.0, project_id="P", task_id="a"), ev(2, 2.0, project_id="P", task_id="a"),
           ev(3, 4.0, project_id="P", task_id="b"), ev(4, 8.0), ev(5, 16.0, project_id="Q", task_id="a")]
    r = build_report(log, project_id="P").to_json()
    assert r["total"]["spend_usd"] == 7.0 and r["total"]["usage_events"] == 3
    assert {t: row["spend_usd"] for t, row in r["by_task"].items()} == {"a": 3.0, "b": 4.0}
