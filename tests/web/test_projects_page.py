"""The projects part of the page against a scripted router (the real bridge, Chromium): the list,
a project's task graph by dependency depth, links from tasks to the node panes running them, live
updates from task events, and Cancel / Resume (with its preview) sending the documented commands
(docs/PROJECTS.md). The router side is the "projects" work; this pins the page to its protocol."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import test_page_scripted as tps
import trio
from test_page_scripted import SWARM, ScriptedRouter, Stack

pytestmark = pytest.mark.web

PROJECT = {
    "project_id": "p-1", "name": "webapp", "state": "running", "repo": "/srv/webapp.git", "base": "main",
    "swarms": [SWARM], "created_at": 1_700_000_000.0, "integration_branch": None, "error": None,
    "tasks": [
        {"id": "api", "title": "HTTP API", "state": "completed", "attempts": 1, "commit": "0123456789abcdef",
         "depends_on": [], "swarm_id": SWARM, "node_id": 0},
        {"id": "lint", "title": "Lint rules", "state": "failed", "attempts": 2, "depends_on": [],
         "error": "verify failed: 3 errors"},
        {"id": "ui", "title": "Web UI", "state": "running", "attempts": 1, "depends_on": ["api"],
         "swarm_id": SWARM, "node_id": 1},
        {"id": "docs", "title": "Docs", "state": "pending", "attempts": 0, "depends_on": ["ui", "lint"]},
    ],
}


def _summary(p: dict[str, Any]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for t in p["tasks"]:
        counts[t["state"]] = counts.get(t["state"], 0) + 1
    return {**{k: v for k, v in p.items() if k != "tasks"}, "tasks": counts}


class ProjectRouter(ScriptedRouter):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.project = copy.deepcopy(PROJECT)

    def change(self, event: str, **data: Any) -> None:
        self.append(event, project_id="p-1", **data)
        self.append("projects_updated", project_id="p-1", project=_summary(self.project))

    async def _command(self, stream: Any, cmd: dict[str, Any]) -> None:
        rid, name = cmd["request_id"], cmd["command"]
        if not name.startswith("project"):
            return await super()._command(stream, cmd)
        self.commands.append(cmd)
        head = len(self.log)

        def directed(event: str, **data: Any) -> dict[str, Any]:
            return {"protocol": "codeswarm.router.v1", "type": "event", "timestamp": "2026-01-01T00:00:00+00:00",
                    "event": event, "seq": head, "directed": True, "data": {"request_id": rid, **data}}

        if name == "project_list":
            await self._send(stream, [directed("project_list", projects=[_summary(self.project)])])
        elif name == "project_status":
            await self._send(stream, [directed("project_status", project=self.project)])
        elif name == "project_resume_preview":
            await self._send(stream, [directed("project_resume_preview", project_id="p-1", reset=["lint", "docs"],
                                               requeue=[], will_run=["lint", "docs"], missing_branches=[])])
        elif name == "project_cancel":
            self.project["state"] = "cancelled"
            for t in self.project["tasks"]:
                if t["state"] in ("pending", "ready", "assigned", "running"):
                    t["state"] = "cancelled"
            self.change("project_cancelled", request_id=rid, finished_at=1_700_000_100.0)
            await self._send(stream, self.log[-2:])
        elif name == "project_resume":
            self.project["state"] = "running"
            for t in self.project["tasks"]:
                if t["id"] in ("lint", "docs", "ui"):
                    t["state"] = "ready" if t["id"] == "lint" else "pending"
            self.change("project_resumed", request_id=rid, swarms=[SWARM], reset=["lint", "docs"], requeue=[],
                        will_run=["lint", "docs"], missing_branches=[])
            await self._send(stream, self.log[-2:])
        return None


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(tps, "ScriptedRouter", ProjectRouter)
    s = Stack()
    yield s
    s.stop()


def test_project_list_graph_links_and_actions(stack: Stack, open_page: Any, web_output: Path) -> None:
    from playwright.sync_api import expect

    r = stack.router
    stack.call(lambda: r.append("swarm_launched", node_count=2, state="running", provider="local",
                                provider_id="scripted", agent_runtime="mock"))
    page, errors = open_page(f"{stack.web.url}#/swarm/{SWARM}")
    item = page.locator(".project-list a[data-project='p-1']")
    expect(item).to_contain_text("webapp")
    expect(item).to_contain_text("1/4 done, 1 failed, 1 running")
    item.click()
    view = page.locator("section.project-view")
    expect(view).to_have_attribute("data-state", "running")
    # Columns by dependency depth, tasks in the router's order within a column.
    cols = view.locator(".graph-col")
    expect(cols).to_have_count(3)
    expect(cols.nth(0).locator(".task-card")).to_have_count(2)
    assert cols.nth(0).locator(".task-card").evaluate_all("cs => cs.map(c => c.dataset.task)") == ["api", "lint"]
    expect(cols.nth(1).locator(".task-card")).to_have_attribute("data-task", "ui")
    expect(cols.nth(2).locator(".task-card")).to_have_attribute("data-task", "docs")
    expect(view.locator(".task-card[data-task=docs] .task-deps")).to_have_text("after ui, lint")
    expect(view.locator(".task-card[data-task=lint] .task-error")).to_have_text("verify failed: 3 errors")
    page.screenshot(path=str(web_output / "project-graph.png"))

    # Live: a task event makes the page ask for the status again and redraw.
    async def ui_done() -> None:
        next(t for t in r.project["tasks"] if t["id"] == "ui")["state"] = "completed"
        r.append("project_task_completed", project_id="p-1", task_id="ui", attempt=1, commit="fedcba", branch="b",
                 finished_at=1_700_000_050.0)
        for s in list(r.streams):
            await r._send(s, [r.log[-1]])  # broadcast, as the router does

    trio.from_thread.run(ui_done, trio_token=stack.token)
    expect(view.locator(".task-card[data-task=ui]")).to_have_attribute("data-state", "completed")

    # A task links to the node pane that runs it.
    view.locator(".task-card[data-task=ui] a.node-link").click()
    assert page.url.endswith(f"#/swarm/{SWARM}/node/1")
    expect(page.locator(".pane[data-node='1']")).to_be_visible()
    page.go_back()
    expect(view).to_be_visible()

    # Cancel, then Resume after its preview.
    view.locator("button.project-cancel").click()
    expect(view).to_have_attribute("data-state", "cancelled")
    view.locator("button.project-resume_preview").click()
    preview = page.locator(".resume-preview")
    expect(preview).to_contain_text("Reset: lint, docs")
    expect(preview).to_contain_text("Will run: lint, docs")
    preview.locator("button.project-resume").click()
    expect(view).to_have_attribute("data-state", "running")
    expect(page.locator(".resume-preview")).to_have_count(0)
    sent = [c["command"] for c in r.commands if c["command"].startswith("project_")]
    for name in ("project_list", "project_status", "project_cancel", "project_resume_preview", "project_resume"):
        assert name in sent, sent
    assert all(c["payload"] == {"project_id": "p-1"} for c in r.commands
               if c["command"] in ("project_cancel", "project_resume", "project_resume_preview", "project_status"))
    assert not errors.items, errors.items
