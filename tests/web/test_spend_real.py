"""Spend on the page against the real router (issue 15): headless Chromium shows the same swarm and
node totals, and the same budget, as `codeswarm status --json`."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import use_scripted_codex

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


def test_project_view_spend_budget_bar_and_turn_costs_equal_the_cli(cs: Any, web: Any, open_page: Any) -> None:
    """The project view: spend and budget bar as `project status --json`, per-task spend; a node's
    turn-end line shows the turn's cost, which is the sum of that turn's usage events."""
    from playwright.sync_api import expect

    from tests.projects.helpers import user_repo, write_tasks

    expect.set_options(timeout=30_000)
    repo = user_repo(cs.tmp)
    sid = cs.json("launch", "--nodes", "2")["swarm_id"]
    tasks = write_tasks(cs.tmp, [
        {"id": "a", "prompt": "[mock:tokens=1000000] [mock:write=a.txt] write a", "verify": "test -s a.txt"},
        {"id": "b", "prompt": "[mock:tokens=400000] [mock:write=b.txt] write b", "depends_on": ["a"]}])
    pid = cs.json("project", "create", "--repo", str(repo), "--tasks", str(tasks), "--swarm", sid,
                  "--budget-usd", "50")["project_id"]
    done = cs.run("project", "start", pid, "--wait", "--timeout", "90", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    status = cs.json("project", "status", pid)
    assert 6 < status["spend_usd"] < 50 and status["budget_state"] == "ok"

    page, errors = open_page(web.url)
    page.evaluate(f"location.hash = '#/project/{pid}'")
    view = page.locator(f".project-view[data-project='{pid}']")
    spend = view.locator("dd[data-fact=spend]")
    expect(spend).to_contain_text(f"{fmt_cost(status['spend_usd'])} of {fmt_cost(50)}")
    meter = spend.locator("meter")
    expect(meter).to_have_attribute("max", "50")
    assert round(float(meter.get_attribute("value") or "nan"), 2) == round(status["spend_usd"], 2)
    for t in status["tasks"]:
        cost = view.locator(f".task-card[data-task='{t['id']}'] .task-spend")
        expect(cost).to_have_attribute("data-spend-usd", str(t["spend_usd"]))
    expect(page.locator(f".project-item[data-project='{pid}'] .spend")).to_contain_text(
        f"{fmt_cost(status['spend_usd'])} / {fmt_cost(50)}")

    # the swarm view: each turn-end line carries the turn's cost = the sum of its usage events
    task_a = next(t for t in status["tasks"] if t["id"] == "a")
    usage = sum(e["data"]["estimated_cost_usd"] for e in cs.events("--swarm", sid)
                if e["event"] == "usage" and e["data"].get("task_id") == "a")
    page.evaluate(f"location.hash = '#/swarm/{sid}'")
    end = page.locator(f".pane[data-node='{task_a['node_id']}'] .blk.turn-end").first
    expect(end).to_contain_text(f"${usage:.4f}")
    assert round(float(end.get_attribute("data-cost-usd") or "nan"), 6) == round(usage, 6)
    assert not errors.items, errors.items


@pytest.fixture
def scripted_codex_cs(cs: Any) -> Any:
    """`cs` whose codex is the scripted app-server, model `fake` priced; written before `web`
    autostarts the router."""
    use_scripted_codex(cs)
    return cs


def test_turn_end_shows_the_cost_corrected_by_late_usage(scripted_codex_cs: Any, web: Any, open_page: Any) -> None:
    """Usage after turn/completed (turn_cost_updated): the page's turn-end line shows the corrected
    cost, the sum of the turn's usage events, live and after a reload."""
    from playwright.sync_api import expect

    cs = scripted_codex_cs
    expect.set_options(timeout=30_000)
    sid = cs.json("launch", "--nodes", "1")["swarm_id"]
    page, errors = open_page(web.url)
    page.evaluate(f"location.hash = '#/swarm/{sid}'")
    cs.json("inject", sid, "--prompt", "LATE_USAGE please", "--wait", "--timeout", "60")
    evs = cs.wait_for(lambda es: any(e["event"] == "turn_cost_updated" for e in es), "--swarm", sid, timeout=30)
    total = sum(e["data"]["estimated_cost_usd"] for e in evs if e["event"] == "usage")
    assert total == 7.5
    for attempt in ("live", "reloaded"):
        end = page.locator(".pane[data-node='0'] .blk.turn-end").first
        expect(end).to_have_attribute("data-cost-usd", "7.5")
        expect(end).to_contain_text("$7.5000")
        if attempt == "live":
            page.reload()
            page.evaluate(f"location.hash = '#/swarm/{sid}'")
    expect(page.locator("dd[data-fact=spend]")).to_contain_text("$7.50")
    assert not errors.items, errors.items
