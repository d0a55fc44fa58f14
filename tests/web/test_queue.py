"""Queued prompts on the page (real .pyz, Chromium): a prompt routed with /swarm[alias]/idle to a
busy swarm waits in its queue, shows in the summary of all queues and in that swarm's view, and is
cancelled from the page: gone there and from the router's queue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.web


def test_queued_prompt_visible_then_cancelled(web: Any, cs: Any, open_page: Any, web_output: Path) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
    busy = cs.json("launch", "--nodes", "1", "--alias", "busy", "--prompt", "[mock:slow=40] hold")["swarm_id"]
    src = cs.json("launch", "--nodes", "1", "--alias", "src")["swarm_id"]
    page, errors = open_page(f"{web.url}#/swarm/{src}")
    expect(page.locator(f"section.detail[data-swarm='{src}']")).to_be_visible()
    page.fill("#inject-text", "/swarm[busy]/idle queued from the page")
    expect(page.locator("#route-preview")).to_have_text("→ queued for the first idle node of swarm busy")
    page.press("#inject-text", "Control+Enter")

    dock = page.locator("#queue-dock")
    expect(dock.locator("summary")).to_contain_text("1 queued prompt")
    dock.locator("summary").click()
    row = dock.locator(".queue-row")
    expect(row).to_have_count(1)
    expect(row.locator(".content")).to_have_text("queued from the page")
    expect(row.locator(".sel")).to_have_text("first idle node")
    expect(row.locator(".from")).to_have_text("from src")
    queued = cs.json("queue")
    assert len(queued) == 1 and queued[0]["target_swarm_id"] == busy and queued[0]["source_swarm_id"] == src

    # The target swarm's own view lists it too; cancel it there.
    row.locator("button.link").click()
    assert page.url.endswith(f"#/swarm/{busy}")
    mine = page.locator(".swarm-queue .queue-row")
    expect(mine).to_have_count(1)
    page.screenshot(path=str(web_output / "queue-before-cancel.png"))
    mine.locator("button.cancel").click()
    expect(mine).to_have_count(0)
    expect(dock).to_be_hidden()
    assert cs.json("queue") == []
    dropped = [e for e in cs.events("--swarm", busy) if e["event"] == "inter_swarm_dropped"]
    assert [e["data"]["queue_id"] for e in dropped] == [queued[0]["queue_id"]]
    assert dropped[0]["data"]["reason"] == "cancelled"
    assert not errors.items, errors.items
