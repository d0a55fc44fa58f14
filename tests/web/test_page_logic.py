"""Page logic that needs no real router (scripted router, the real bridge, Chromium): the prompt
box's routing prefixes and their preview, and ages computed on the router's clock."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest
import trio
from test_page_scripted import SWARM, Stack

pytestmark = pytest.mark.web


@pytest.fixture
def stack() -> Any:
    s = Stack()
    yield s
    s.stop()


def test_routing_prefixes_and_preview(stack: Stack, open_page: Any) -> None:
    from playwright.sync_api import expect

    r = stack.router
    stack.call(lambda: r.append("swarm_launched", node_count=5, state="running", provider="local",
                                provider_id="scripted", agent_runtime="mock"))
    page, errors = open_page(f"{stack.web.url}#/swarm/{SWARM}")
    expect(page.locator(".ov-win .cell")).to_have_count(5)
    # The alias comes from the swarm list; give this swarm one as the router would.
    page.evaluate(f"(() => {{ const s = window.codeswarm.store.swarms.get('{SWARM}'); s.alias = 'self'; }})()")
    preview = page.locator("#route-preview")
    cases = [
        ("plain text", "→ all 5 nodes of this swarm"),
        ("/all hi", "→ all 5 nodes of this swarm"),
        ("/node[0,2-4] hi", "→ nodes 0, 2, 3, 4 of this swarm"),
        ("/node[ 3 ] hi", "→ node 3 of this swarm"),
        ("/node[5] hi", "✗ node 5 does not exist (the swarm has 5 nodes)"),
        ("/node[4-2] hi", "✗ backwards range: 4-2"),
        ("/node[a] hi", "✗ not a node list: “a” (write e.g. 0,2-4)"),
        ("/node[1]", "✗ write the prompt after the prefix"),
        ("/swarm[self]/idle hi", "→ queued for the first idle node of swarm self (this swarm)"),
        ("/swarm[self]/first-idle hi", "→ queued for the first idle node of swarm self (this swarm)"),
        ("/swarm[self]/node[1-2] hi", "→ nodes 1, 2 of swarm self (this swarm) (through its queue)"),
        ("/swarm[other]/all hi", "✗ no running swarm has the alias “other”"),
        ("/swarm[bad alias]/all hi", "✗ not an alias: “bad alias”"),
        ("/allx hi", "→ all 5 nodes of this swarm"),  # not a prefix: plain text to the picked targets
    ]
    for text, want in cases:
        page.fill("#inject-text", text)
        expect(preview).to_have_text(want)
    # Nothing is sent while the preview says no.
    page.fill("#inject-text", "/node[9] nope")
    page.press("#inject-text", "Control+Enter")
    expect(page.locator("form.inject .form-error")).to_have_text("node 9 does not exist (the swarm has 5 nodes)")
    assert not [c for c in r.commands if c["command"] in ("inject", "enqueue_inject")]
    assert not errors.items, errors.items


def test_ages_use_the_router_clock(stack: Stack, open_page: Any) -> None:
    """The router's clock is an hour behind the browser's: a node that just spoke is 0 s old."""
    from playwright.sync_api import expect

    r = stack.router
    stack.call(lambda: r.append("swarm_launched", node_count=2, state="running", provider="local",
                                provider_id="scripted", agent_runtime="mock"))
    page, errors = open_page(f"{stack.web.url}#/swarm/{SWARM}")
    expect(page.locator(".ov-win .cell")).to_have_count(2)

    async def live() -> None:
        ts = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)).isoformat()
        r.append("turn_started", node_id=1, turn_id="t1")
        r.log[-1]["timestamp"] = ts
        for s in list(r.streams):
            await r._send(s, [r.log[-1]])

    trio.from_thread.run(live, trio_token=stack.token)
    cell = page.locator(".ov-win .cell[data-node='1'] .meta")
    expect(cell).to_have_text(re.compile(r"· \d+(s|m|h \d+m)$"))  # drawn with the node's last activity
    text = cell.text_content() or ""
    assert text.endswith(("· 0s", "· 1s", "· 2s")), text  # not "1h 0m": the skew is taken from live events
    skew = page.evaluate("window.codeswarm.store.skew")
    assert -3700 < skew < -3590, skew
    assert not errors.items, errors.items


def test_spend_and_budget(stack: Stack, open_page: Any) -> None:
    """Spend per node (usage.node_spend_usd) and per swarm, with a budget bar and its warnings."""
    from playwright.sync_api import expect

    r = stack.router
    stack.call(lambda: r.append("swarm_launched", node_count=2, state="running", provider="local",
                                provider_id="scripted", agent_runtime="mock"))
    page, errors = open_page(f"{stack.web.url}#/swarm/{SWARM}")
    expect(page.locator(".ov-win .cell")).to_have_count(2)

    async def live(*events: tuple[str, dict[str, Any]]) -> None:
        for name, data in events:
            r.append(name, **data)
            for s in list(r.streams):
                await r._send(s, [r.log[-1]])

    trio.from_thread.run(live, ("usage", {"node_id": 1, "total_tokens": 1200, "estimated_cost_usd": 0.25,
                                          "node_spend_usd": 0.25}),
                         ("usage", {"node_id": 1, "total_tokens": 2400, "estimated_cost_usd": 0.17,
                                    "node_spend_usd": 0.42}),
                         ("budget_updated", {"request_id": None, "budget_usd": 1.0, "spend_usd": 0.42,
                                             "budget_state": "ok"}), trio_token=stack.token)
    expect(page.locator(".ov-win .cell[data-node='1'] .meta")).to_contain_text("2.4k tok $0.42")
    spend = page.locator("dd[data-fact=spend]")
    expect(spend).to_contain_text("$0.42 of $1.00")
    expect(spend.locator("meter")).to_have_attribute("max", "1")
    expect(page.locator(f".swarm-item[data-swarm='{SWARM}'] .cost")).to_have_text("$0.42 / $1.00")
    trio.from_thread.run(live, ("budget_exceeded", {"scope": "swarm", "spend_usd": 1.02, "budget_usd": 1.0,
                                                    "percent": 102}), trio_token=stack.token)
    expect(spend).to_contain_text("exceeded")
    expect(page.locator(".notice.error")).to_contain_text("102% of its $1 budget spent")
    assert not errors.items, errors.items


def test_a_blocked_queue_item_shows_in_the_queue_and_as_a_notice(stack: Stack, open_page: Any) -> None:
    """PROTOCOL.md 5.6 inter_swarm_blocked: the item back at the head of the queue says on which node
    it is blocked and why, and the live event is an error notice."""
    from playwright.sync_api import expect

    r = stack.router
    stack.call(lambda: r.append("swarm_launched", node_count=1, state="running", provider="local",
                                provider_id="scripted", agent_runtime="mock"))
    page, errors = open_page(f"{stack.web.url}#/swarm/{SWARM}")
    expect(page.locator(".ov-win .cell")).to_have_count(1)
    reason = "cannot write node 0's inbox: is not a regular file"
    item = {"queue_id": "q-1", "request_id": "rq", "source_swarm_id": None, "target_swarm_id": SWARM,
            "selector": "idle", "nodes": None, "content": "queued work", "created_at": 1_700_000_000.0,
            "blocked": {"node_id": 0, "reason": reason}}

    async def live(*events: tuple[str, dict[str, Any]]) -> None:
        for name, data in events:
            r.append(name, **data)
            for s in list(r.streams):
                await r._send(s, [r.log[-1]])

    trio.from_thread.run(live, ("inter_swarm_blocked", {"queue_id": "q-1", "request_id": "rq", "source_swarm_id": None,
                                                        "target_swarm_id": SWARM, "selector": "idle", "node_id": 0,
                                                        "reason": reason, "content": "queued work"}),
                         ("queue_updated", {"target_swarm_id": SWARM, "length": 1, "total": 1, "items": [item]}),
                         trio_token=stack.token)
    expect(page.locator(".notice.error")).to_contain_text("blocked on node 0")
    dock = page.locator("#queue-dock")
    dock.locator("summary").click()
    blocked = dock.locator(".queue-row .blocked")
    expect(blocked).to_have_text("blocked on node 0: waits for its next idle turn")
    expect(blocked).to_have_attribute("title", reason)
    expect(page.locator(".swarm-queue .queue-row .blocked")).to_have_count(1)  # the swarm's own view too
    assert not errors.items, errors.items
