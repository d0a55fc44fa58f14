"""Every action from the keyboard alone, on a 390 px wide screen: the real .pyz in Chromium.

After the page loads nothing is clicked: focus moves only with Tab (tab_to() presses Tab until the
wanted control has the focus, so the control is proven reachable in the tab order) and controls
are used with Enter, Space, arrows and typing.
"""

from __future__ import annotations

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


def tab_to(page: Any, selector: str, limit: int = 150, back: bool = False) -> None:
    """Press Tab (Shift+Tab with back=True) until the focused element matches selector."""
    for _ in range(limit):
        if page.evaluate("s => !!document.activeElement && document.activeElement.matches(s)", selector):
            return
        page.keyboard.press("Shift+Tab" if back else "Tab")
    raise AssertionError(f"{selector} not reachable with Tab; focus is on "
                         f"{page.evaluate('document.activeElement && document.activeElement.outerHTML.slice(0, 200)')}")


def no_overflow(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 391, f"the page is {width} px wide at 390 px"


def test_keyboard_only_at_390px(web: Any, cs: Any, open_page: Any, web_output: Path) -> None:
    swarm = cs.json("launch", "--provider", "local-mock-approvals", "--nodes", "3", "--alias", "kb",
                    "--prompt", "[mock:approval] tidy up")["swarm_id"]
    queued = cs.run("enqueue", swarm, "--prompt", "later, when idle").stdout.strip()  # the nodes are busy: it waits
    page, errors = open_page(web.url, width=390, height=844)
    # It opens on the running swarm.
    expect(page.locator(f"section.detail[data-swarm='{swarm}']")).to_be_visible()
    expect(page.locator("#approvals-dock .appr-row")).to_have_count(3)
    no_overflow(page)
    page.screenshot(path=str(web_output / "phone-overview.png"), full_page=True)

    # The skip link comes first and jumps to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.classList.contains('skip')")
    page.keyboard.press("Enter")

    # The queue summary opens with Enter; its Cancel takes the item out of the router's queue.
    tab_to(page, "#queue-dock summary")
    page.keyboard.press("Enter")
    tab_to(page, f"#queue-dock .queue-row[data-queue='{queued}'] button.cancel")
    page.keyboard.press("Enter")
    expect(page.locator("#queue-dock")).to_be_hidden()
    assert cs.json("queue") == []

    # Focus an approval from the summary: the transcript opens with its buttons focused; accept it.
    tab_to(page, "#approvals-dock .appr-row[data-node='1'] button.focus")
    page.keyboard.press("Enter")
    expect(page.locator(".pane")).to_have_count(1)
    assert page.url.endswith(f"#/swarm/{swarm}/node/1")
    assert page.evaluate("document.activeElement.matches('.blk.approval .actions button')")
    assert page.evaluate("document.activeElement.dataset.decision") == "accept"
    page.keyboard.press("Enter")
    expect(page.locator("#approvals-dock .appr-row")).to_have_count(2)
    # The rest with "Accept all" in the summary.
    tab_to(page, "#approvals-dock button.accept-all", back=True)
    page.keyboard.press("Enter")
    expect(page.locator("#approvals-dock")).to_be_hidden()

    # Filters are toggle buttons; the overview's cells move with the arrows and open with Enter.
    tab_to(page, "button[data-filter=idle]")
    page.keyboard.press("Space")
    expect(page.locator("button[data-filter=idle]")).to_have_attribute("aria-pressed", "true")
    expect(page.locator(".ov-win .cell")).to_have_count(3)  # every node is idle once its turn ended
    tab_to(page, ".ov-win .cell")
    first = page.evaluate("document.activeElement.dataset.node")
    page.keyboard.press("ArrowRight")
    second = page.evaluate("document.activeElement.dataset.node")
    assert (first, second) == ("0", "1")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    assert page.url.endswith("/node/2")
    expect(page.locator(".pane[data-node='2']")).to_be_visible()

    # The prompt box, with a routing prefix, sent with Ctrl+Enter.
    tab_to(page, "#inject-text", back=True)
    page.keyboard.type("/node[2] [mock:commands=4][mock:firehose=2000][mock:rate=200] keyboard hello")
    expect(page.locator("#route-preview")).to_have_text("→ node 2 of this swarm")
    page.keyboard.press("Control+Enter")
    body = page.locator(".pane[data-node='2'] .pane-body")
    expect(body.locator(".blk.prompt .text").last).to_contain_text("keyboard hello")
    # Scroll the transcript up while it streams: a "new output below" button appears instead of a jump.
    tab_to(page, ".pane[data-node='2'] .pane-body")
    expect(body.locator(".blk.assistant.streaming")).to_have_count(1)
    page.wait_for_function("b => b.scrollHeight > b.clientHeight + 100", arg=body.element_handle())
    page.keyboard.press("Home")
    more = page.locator(".pane[data-node='2'] .more-below")
    expect(more).to_be_visible()
    tab_to(page, ".pane[data-node='2'] .more-below")
    page.keyboard.press("Enter")
    expect(more).to_be_hidden()
    # back at the bottom and following it: awaited, since a delta can land between the jump and a
    # single reading (the pane re-follows on its next frame; a run in CI read 71 px once)
    page.wait_for_function("b => b.scrollHeight - b.scrollTop - b.clientHeight < 60", arg=body.element_handle(),
                           timeout=5000)
    expect(body.locator(".blk.assistant.final-answer")).to_have_count(2)
    no_overflow(page)
    page.screenshot(path=str(web_output / "phone-transcript.png"), full_page=True)

    # Terminate through the dialog with "archive workspaces"; the archive links are reachable.
    tab_to(page, ".detail-head button.danger", back=True)
    page.keyboard.press("Enter")
    expect(page.locator("#confirm")).to_be_visible()
    tab_to(page, "#confirm-archive")
    page.keyboard.press("Space")
    tab_to(page, "#confirm-ok")
    page.keyboard.press("Enter")
    expect(page.locator(".detail-head .badge")).to_have_text("terminated")
    expect(page.locator(".swarm-archives a.archive-link")).to_have_count(3)
    tab_to(page, ".swarm-archives a.archive-link")

    # The launch form: alias, persona pickers and submit, all from the keyboard.
    tab_to(page, "#new-swarm", back=True)
    page.keyboard.press("Enter")
    tab_to(page, "#launch-nodes")
    page.keyboard.press("Control+A")
    page.keyboard.type("2")
    tab_to(page, "#launch-alias")
    page.keyboard.type("kb2")
    tab_to(page, "#launch-auto-route")
    tab_to(page, "#persona-file")
    tab_to(page, "#persona-dir")
    tab_to(page, "form.launch button[type=submit]")
    no_overflow(page)
    page.screenshot(path=str(web_output / "phone-launch.png"), full_page=True)
    page.keyboard.press("Enter")
    expect(page.locator(".detail-head .alias")).to_contain_text("kb2")
    expect(page.locator(".ov-win .cell")).to_have_count(2)
    assert not errors.items, errors.items
