"""Steering from the page, end to end: the real .pyz (`codeswarm web`, its router, mock workers) in
headless Chromium. Every control is used as a user would (clicks, typing, file pickers) and its
effect is checked where it lands: the router's state, the workspaces on disk, the inboxes, the
downloaded archive.
"""

from __future__ import annotations

import time

import re
import tarfile
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.web

expect: Any = None


@pytest.fixture(autouse=True)
def _expect(browser: Any) -> None:
    global expect
    from playwright.sync_api import expect as _e

    expect = _e
    _e.set_options(timeout=30_000)


def launch(page: Any, *, provider: str, nodes: int, prompt: str, alias: str = "", auto_route: bool = False,
           persona: Path | None = None, persona_file: Path | None = None) -> str:
    page.click("#new-swarm")
    page.wait_for_selector(f"#launch-provider option[value='{provider}']", state="attached")
    page.select_option("#launch-provider", provider)
    page.fill("#launch-nodes", str(nodes))
    page.fill("#launch-alias", alias)
    page.set_checked("#launch-auto-route", auto_route)
    page.fill("#launch-prompt", prompt)
    if persona is not None:
        page.set_input_files("#persona-dir", str(persona))
        expect(page.locator(".persona-summary")).to_contain_text("AGENTS.md + 1 skill file")
    if persona_file is not None:
        page.set_input_files("#persona-file", str(persona_file))
        expect(page.locator(".persona-summary")).to_contain_text(f"AGENTS.md from {persona_file.name}")
    page.click("form.launch button[type=submit]")
    page.wait_for_url(re.compile(r".*#/swarm/[\w-]+$"))
    return page.url.rsplit("/", 1)[1]


def pane(page: Any, node: int) -> Any:
    return page.locator(f".pane[data-node='{node}']")


def send(page: Any, text: str, preview: str) -> None:
    page.fill("#inject-text", text)
    expect(page.locator("#route-preview")).to_have_text(preview)
    page.press("#inject-text", "Control+Enter")
    expect(page.locator("#inject-text")).to_have_value("")


def test_aliases_routing_persona_approvals_archive(web: Any, cs: Any, open_page: Any, web_output: Path,
                                                    tmp_path: Path) -> None:
    page, errors = open_page(web.url)
    # No swarm runs: the page opens on the launch form.
    expect(page.locator("form.launch")).to_be_visible()

    # A persona directory: AGENTS.md + skills/, plus a file that is not part of a persona.
    persona = tmp_path / "persona"
    (persona / "skills" / "review").mkdir(parents=True)
    (persona / "AGENTS.md").write_text("# Reviewer\nBe terse.\n")
    (persona / "skills" / "review" / "SKILL.md").write_text("---\nname: review\n---\nReview the diff.\n")
    (persona / "notes.txt").write_text("not part of the persona\n")

    alpha = launch(page, provider="local-mock", nodes=2, prompt="warm up", alias="alpha", auto_route=True,
                   persona=persona)
    expect(page.locator(".detail-head .alias")).to_have_text("alpha · auto-route")  # from swarm_launched
    expect(page.locator(f".swarm-item[data-swarm='{alpha}'] .alias")).to_have_text("alpha")
    for node in (0, 1):
        ws = next(cs.tmp.glob(f"runs/*/node_{node:02d}/AGENTS.md")).parent
        assert (ws / "AGENTS.md").read_text() == "# Reviewer\nBe terse.\n"
        assert (ws / ".agents" / "skills" / "review" / "SKILL.md").read_text().endswith("Review the diff.\n")
        assert not (ws / "notes.txt").exists() and not (ws / ".agents" / "skills" / "notes.txt").exists()
    expect(pane(page, 1).locator(".blk.assistant.final-answer")).to_contain_text("warm up")

    beta_md = tmp_path / "BETA.md"
    beta_md.write_text("# Beta\nAnswer in one line.\n")
    beta = launch(page, provider="local-mock", nodes=2, prompt="ready", alias="beta", persona_file=beta_md)
    expect(pane(page, 0).locator(".blk.assistant.final-answer")).to_contain_text("ready")
    beta_ws = [p.parent for p in cs.tmp.glob("runs/*/node_0*/AGENTS.md") if p.read_text() == "# Beta\nAnswer in one line.\n"]
    assert len(beta_ws) == 2 and not any((w / ".agents").exists() for w in beta_ws)

    # From alpha's prompt box to node 1 of beta, with the preview saying so first.
    page.click(f".swarm-item[data-swarm='{alpha}']")
    send(page, "/swarm[beta]/node[1] hello from alpha", "→ node 1 of swarm beta (through its queue)")
    # An unknown alias is refused in the preview, before anything is sent.
    page.fill("#inject-text", "/swarm[nobody]/idle hi")
    expect(page.locator("#route-preview")).to_have_text("✗ no running swarm has the alias “nobody”")
    page.fill("#inject-text", "")

    # Auto-route (set at launch): alpha's answer carries a directive, the router sends it on.
    send(page, "/node[0] Please forward:\n/swarm[beta]/node[0] auto routed hello", "→ node 0 of this swarm")
    send(page, "/node[1] [mock:firehose=60][mock:rate=20] keep talking", "→ node 1 of this swarm")

    page.click(f".swarm-item[data-swarm='{beta}']")
    expect(pane(page, 1).locator(".blk.prompt .text").last).to_have_text("hello from alpha")
    expect(pane(page, 1).locator(".blk.assistant.final-answer").last).to_contain_text("hello from alpha")
    expect(pane(page, 0).locator(".blk.prompt .text").last).to_have_text("auto routed hello")
    expect(pane(page, 0).locator(".blk.assistant.final-answer").last).to_contain_text("auto routed hello")
    # The swarm list marks alpha: it had output while beta was shown.
    expect(page.locator(f".swarm-item[data-swarm='{alpha}'] .unseen-dot")).to_have_count(1)
    page.screenshot(path=str(web_output / "steering-routed.png"))

    # Approvals from the summary: one by its row's Accept, the rest by "Accept all".
    gamma = launch(page, provider="local-mock-approvals", nodes=3, prompt="[mock:approval] clean up", alias="gamma")
    dock = page.locator("#approvals-dock")
    expect(dock.locator(".appr-row")).to_have_count(3)
    expect(page.locator(".cell.st-approval")).to_have_count(3)
    page.screenshot(path=str(web_output / "steering-approvals.png"))
    row = dock.locator(".appr-row[data-node='2']")
    row.locator("button.focus").click()
    assert page.url.endswith(f"#/swarm/{gamma}/node/2")
    expect(page.locator(".pane")).to_have_count(1)
    # The page focuses the block in a frame after the pane is drawn: wait for it (5 s), do not read once.
    # (`:focus` does not match in a headless window without focus, hence activeElement; wait_for_function
    # would need eval, which the page's CSP refuses.)
    deadline = time.monotonic() + 5
    while not page.evaluate("document.activeElement.closest('.blk.approval') !== null"):
        assert time.monotonic() < deadline, page.evaluate("document.activeElement.tagName")
        page.wait_for_timeout(20)
    row.locator("button.accept").click()
    expect(dock.locator(".appr-row")).to_have_count(2)
    dock.locator("button.accept-all").click()
    expect(dock).to_be_hidden()
    page.click(".focus-bar button.close-node")
    for node in range(3):
        expect(pane(page, node).locator(".blk.approval[data-status=approved]")).to_have_count(1)
        expect(pane(page, node).locator(".blk.tool[data-status=completed]")).to_have_count(1)
    resolved = [e for e in cs.events("--swarm", gamma) if e["event"] == "exec_approval_resolved"]
    assert sorted(e["data"]["node_id"] for e in resolved) == [0, 1, 2]
    assert all(e["data"]["approved"] and e["data"]["source"] == "client" for e in resolved)

    # Terminate alpha with "archive workspaces"; download node 0's archive and open it.
    page.click(f".swarm-item[data-swarm='{alpha}']")
    page.click(".detail-head button.danger")
    page.check("#confirm-archive")
    page.click("#confirm-ok")
    expect(page.locator(".detail-head .badge")).to_have_text("terminated")
    links = page.locator(".swarm-archives a.archive-link")
    expect(links).to_have_count(2)
    with page.expect_download() as info:
        links.first.click()
    saved = tmp_path / "node0.tar.gz"
    info.value.save_as(saved)
    with tarfile.open(saved, "r:gz") as tar:
        names = tar.getnames()
        agents = tar.extractfile("node_00/AGENTS.md")
        assert agents is not None and agents.read() == b"# Reviewer\nBe terse.\n"
    assert "node_00/.agents/skills/review/SKILL.md" in names
    page.screenshot(path=str(web_output / "steering-archives.png"))
    assert not errors.items, errors.items
