"""The projects view against the real router (real .pyz, real git, mock workers; issue 14's harness):
a project created from the CLI appears in the list, Start on the page runs it, its task graph
follows the tasks live to completed, and a task links to the node pane that ran it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.projects.helpers import five_tasks, user_repo, write_tasks

pytestmark = pytest.mark.web


def test_project_view_live_on_the_real_router(web: Any, cs: Any, open_page: Any, web_output: Path) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)
    repo = user_repo(cs.tmp)
    sid = cs.json("launch", "--nodes", "2", "--alias", "builders")["swarm_id"]
    tasks = write_tasks(cs.tmp, {"tasks": five_tasks(slow=1.0)})
    created = json.loads(cs.run("project", "create", "--repo", str(repo), "--tasks", str(tasks), "--swarm", sid,
                                "--name", "five", "--json").stdout)
    pid = created["project_id"]

    page, errors = open_page(f"{web.url}#/project/{pid}")
    view = page.locator("section.project-view")
    expect(view).to_have_attribute("data-state", "created")
    expect(page.locator(f".project-list a[data-project='{pid}']")).to_contain_text("five")
    cols = view.locator(".graph-col")
    expect(cols).to_have_count(3)
    assert cols.nth(0).locator(".task-card").evaluate_all("cs => cs.map(c => c.dataset.task)") == ["a1", "b1"]
    assert cols.nth(2).locator(".task-card").evaluate_all("cs => cs.map(c => c.dataset.task)") == ["join"]

    view.locator("button.project-start").click()
    expect(view.locator(".task-card[data-state=running], .task-card[data-state=assigned]").first).to_be_visible()
    page.screenshot(path=str(web_output / "project-running.png"))
    expect(view).to_have_attribute("data-state", "completed", timeout=180_000)
    expect(view.locator(".task-card[data-state=completed]")).to_have_count(5)
    page.screenshot(path=str(web_output / "project-completed.png"))

    link = view.locator(".task-card[data-task=join] a.node-link")
    expect(link).to_contain_text("builders · node ")
    link.click()
    assert f"#/swarm/{sid}/node/" in page.url
    expect(page.locator(".pane .blk.prompt").first).to_be_visible()
    assert not errors.items, errors.items
