"""Spend on the page against the real router (issue 15): headless Chromium shows the same swarm and
node totals, and the same budget, as `codeswarm status --json`."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.web


def fmt_cost(usd: float) -> str:
    """util.js fmtCost."""
    if usd < 0.01:
        return f"${usd:.4f}"
    if usd < 100:
        return f"${usd:.2f}"
    return f"${round(usd)}"


def test_page_spend_and_budget_equal_status_json(cs: Any, web: Any, open_page: Any) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
    sid = cs.json("launch", "--nodes", "3", "--budget-usd", "40")["swarm_id"]
    cs.json("inject", sid, "--prompt", "[mock:tokens=1000000] priced work", "--wait", "--timeout", "90")
    cs.json("inject", sid, "--prompt", "[mock:tokens=1000000] more", "--nodes", "1", "--wait", "--timeout", "90")
    status = cs.json("status", sid)
    assert 15 < status["spend_usd"] < 40 and status["budget_state"] == "ok"

    page, errors = open_page(web.url)
    page.evaluate(f"location.hash = '#/swarm/{sid}'")
    expect(page.locator(".pane")).to_have_count(3)
    spend = page.locator("dd[data-fact=spend]")
    expect(spend).to_contain_text(f"{fmt_cost(status['spend_usd'])} of {fmt_cost(40)}")
    meter = spend.locator("meter")
    expect(meter).to_have_attribute("max", "40")
    assert round(float(meter.get_attribute("value") or "nan"), 2) == round(status["spend_usd"], 2)
    for node in status["nodes"]:
        cost = page.locator(f".pane[data-node='{node['node_id']}'] .pane-head .cost")
        expect(cost).to_have_text(fmt_cost(node["spend_usd"]))
    expect(page.locator(f".swarm-item[data-swarm='{sid}'] .cost")).to_contain_text(
        f"{fmt_cost(status['spend_usd'])} / {fmt_cost(40)}")
    assert not errors.items, errors.items
