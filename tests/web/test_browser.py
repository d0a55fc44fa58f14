"""The web control plane end to end: the real .pyz (`codeswarm web` + its router + mock workers)
driven in headless Debian Chromium through Playwright.

Screenshots land in test-output/web/. Needs scripts/install-browser.sh (chromium + playwright).
"""

from __future__ import annotations

import http.client
import json
import re
import socket
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


def connected(page: Any) -> None:
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected")


def launch(page: Any, *, provider: str, nodes: int, prompt: str) -> str:
    """Fill the launch form, submit, and return the new swarm's id (the page follows the launch)."""
    page.click("#new-swarm")
    page.wait_for_selector(f"#launch-provider option[value='{provider}']", state="attached")
    page.select_option("#launch-provider", provider)
    page.fill("#launch-nodes", str(nodes))
    page.fill("#launch-prompt", prompt)
    page.click("form.launch button[type=submit]")
    page.wait_for_url(re.compile(r".*#/swarm/[\w-]+$"))
    swarm_id = page.url.rsplit("/", 1)[1]
    expect(page.locator(".pane")).to_have_count(nodes)
    return swarm_id


def pane(page: Any, node: int) -> Any:
    return page.locator(f".pane[data-node='{node}']")


def stats(page: Any) -> dict[str, Any]:
    return page.evaluate("() => ({...window.codeswarm.store.stats, lastSeq: window.codeswarm.conn.lastSeq})")


def no_errors(errors: Any, allowed: tuple[str, ...] = ()) -> None:
    bad = [e for e in errors.items if not any(a in e for a in allowed)]
    assert not bad, bad


def test_full_flow(web: Any, open_page: Any, web_output: Any) -> None:
    page, errors = open_page(web.url)
    connected(page)
    assert "token=" not in page.url  # dropped from the address bar; the cookie carries it
    page.screenshot(path=str(web_output / "desktop-launch.png"))

    # Launch 4 nodes from the form; every pane streams reasoning, a tool run and the answer.
    swarm_id = launch(page, provider="local-mock", nodes=4, prompt="Survey the repo [mock:commands=2]")
    for n in range(4):
        p = pane(page, n)
        expect(p.locator(".blk.assistant.final-answer .text")).to_contain_text(f"Node {n} on ")
        expect(p.locator(".blk.reasoning .text")).to_contain_text(f"Node {n} considers")
        expect(p.locator(".blk.tool[data-status=completed]")).to_have_count(2)
        expect(p.locator(".blk.tool .meta").first).to_contain_text("exit 0")
        expect(p.locator(".blk.tool .out").first).to_contain_text(f"step 1 on node {n}")
        expect(p.locator(".blk.turn.turn-end")).to_have_count(1)
        expect(p.locator(".pane-head .tokens")).to_contain_text("tok")
        expect(p.locator(".pane-head meter")).to_have_count(1)
    # Reasoning is collapsed until opened, and opens with the keyboard.
    first_reasoning = pane(page, 0).locator(".blk.reasoning").first
    assert first_reasoning.get_attribute("open") is None
    first_reasoning.locator("summary").focus()
    page.keyboard.press("Enter")
    expect(first_reasoning).to_have_attribute("open", "")
    expect(page.locator(f".swarm-item[data-swarm='{swarm_id}'] .tokens")).not_to_contain_text("–")
    page.screenshot(path=str(web_output / "desktop-swarm.png"))

    # Inject into node 2 only.
    page.check("input[name=inject-target][value=some]")
    page.check(".node-checks input[value='2']")
    page.fill("#inject-text", "Second task for node two")
    page.click("form.inject button[type=submit]")
    expect(pane(page, 2).locator(".blk.prompt")).to_have_count(2)
    expect(pane(page, 2).locator(".blk.prompt").nth(1)).to_have_attribute("data-status", re.compile("delivered|queued"))
    expect(pane(page, 2).locator(".blk.assistant.final-answer")).to_have_count(2)
    expect(pane(page, 2).locator(".blk.assistant.final-answer").nth(1)).to_contain_text("Second task for node two")
    for n in (0, 1, 3):
        expect(pane(page, n).locator(".blk.prompt")).to_have_count(1)

    # Terminate with confirmation; the states pass through the lifecycle in order.
    page.click(".detail-head button.danger")
    expect(page.locator("#confirm")).to_be_visible()
    page.click("#confirm-ok")
    expect(page.locator(".detail-head .badge")).to_have_text(re.compile("terminating|terminated"))
    expect(page.locator(".detail-head .badge")).to_have_text("terminated", timeout=60_000)
    assert page.locator(".lifecycle li").all_inner_texts() == ["pending", "running", "terminating", "terminated"]
    expect(page.locator("form.inject button[type=submit]")).to_be_disabled()

    # A second swarm whose preset asks for approvals: accept on node 0, decline on node 1.
    launch(page, provider="local-mock-approvals", nodes=2, prompt="Clean the build [mock:approval]")
    for n in (0, 1):
        expect(pane(page, n).locator(".blk.approval[data-status=pending] button")).to_have_count(4)
    page.screenshot(path=str(web_output / "desktop-approval-pending.png"))
    pane(page, 0).locator(".blk.approval button[data-decision=accept]").click()
    pane(page, 1).locator(".blk.approval button[data-decision=decline]").click()
    expect(pane(page, 0).locator(".blk.approval")).to_have_attribute("data-status", "approved")
    expect(pane(page, 1).locator(".blk.approval")).to_have_attribute("data-status", "denied")
    expect(pane(page, 0).locator(".blk.tool[data-status=completed]")).to_have_count(1)
    expect(pane(page, 1).locator(".blk.tool[data-status=declined]")).to_have_count(1)
    expect(pane(page, 1).locator(".blk.turn.turn-end")).to_have_count(1)
    page.screenshot(path=str(web_output / "desktop-approvals.png"))
    assert stats(page)["errors"] == 0
    no_errors(errors)


def test_stale_page_rejection_reverts(web: Any, cs: Any, open_page: Any, web_output: Any) -> None:
    swarm_id = cs.json("launch", "--nodes", "2", "--prompt", "hello")["swarm_id"]
    page, errors = open_page()
    # Make this page stale: it stops hearing about lifecycle changes (as if it had missed them).
    stale = {"on": True}
    hidden = {"swarm_status", "swarm_terminated", "swarm_list"}

    def route(ws: Any) -> None:
        server = ws.connect_to_server()
        ws.on_message(lambda m: server.send(m))

        def down(m: Any) -> None:
            # The page asks for batched frames (several router lines per frame, "\n"-separated).
            if stale["on"] and isinstance(m, str):
                m = "\n".join(x for x in m.split("\n") if x and json.loads(x).get("event") not in hidden)
                if not m:
                    return
            ws.send(m)

        server.on_message(down)

    page.route_web_socket(re.compile(r".*/ws(\?batch=1)?$"), route)
    page.goto(f"{web.url}#/swarm/{swarm_id}")
    connected(page)
    expect(pane(page, 1).locator(".blk.turn.turn-end")).to_have_count(1)
    cs.run("terminate", swarm_id, "--wait", "--timeout", "60")
    expect(page.locator(".detail-head .badge")).not_to_have_text("terminated")  # stale indeed

    page.fill("#inject-text", "Too late")
    page.click("form.inject button[type=submit]")
    expect(page.locator("form.inject .form-error")).to_contain_text("swarm is terminating or terminated")
    expect(page.locator(".notice.error")).to_contain_text("Inject rejected")
    for n in (0, 1):
        expect(pane(page, n).locator(".blk.prompt")).to_have_count(1)  # the optimistic prompts are gone
    expect(page.locator("#inject-text")).to_have_value("Too late")  # given back to the user
    page.screenshot(path=str(web_output / "desktop-rejected.png"))

    # Once it hears the router again, the reconciliation brings the true state.
    stale["on"] = False
    page.evaluate("window.codeswarm.conn.send('swarm_list')")
    expect(page.locator(".detail-head .badge")).to_have_text("terminated")
    no_errors(errors)


def test_router_restart_resumes_without_duplicates(web: Any, cs: Any, open_page: Any) -> None:
    page, errors = open_page(web.url)
    connected(page)
    launch(page, provider="local-mock", nodes=2, prompt="Stream [mock:firehose=400] [mock:rate=80]")
    expect(pane(page, 0).locator(".blk.assistant .text")).to_contain_text(" 20 ")
    before = stats(page)["lastSeq"]
    cs.run("router", "stop")
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    cs.run("router", "start")
    connected(page)
    for n in (0, 1):
        p = pane(page, n)
        expect(p.locator(".blk.turn.turn-end")).to_have_count(1, timeout=60_000)
        expect(p.locator(".blk.assistant")).to_have_count(1)
        expect(p.locator(".blk.prompt")).to_have_count(1)
        expect(p.locator(".blk.turn.turn-start")).to_have_count(1)
        text = p.locator(".blk.assistant .text").inner_text()
        assert text.endswith(" 399") and text.count(" 399") == 1 and text.count(" 200 ") == 1
    s = stats(page)
    assert s["lastSeq"] > before
    assert s.get("textMismatches", 0) == 0, s  # the deltas added up to the final text: none doubled
    assert s["errors"] == 0, s
    no_errors(errors)


def _raw(web: Any, request: str) -> str:
    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as sock:
        sock.sendall(request.encode())
        data = b""
        while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
            data += chunk
    return data.decode("latin-1").split("\r\n", 1)[0]


def test_token_origin_and_paths(web: Any, open_page: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
    for path, status in [("/", 403), ("/app.js", 403), (f"/?token={web.token}x", 403), (f"/?token={web.token}", 200),
                         (f"/../router/web.py?token={web.token}", 404), (f"/%2e%2e/paths.py?token={web.token}", 404),
                         (f"/nothing.js?token={web.token}", 404)]:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == status, path
        conn.close()
    upgrade = ("GET /ws{q} HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: {o}\r\n\r\n")
    assert " 403 " in _raw(web, upgrade.format(q="", p=web.port, o=web.origin))
    assert " 403 " in _raw(web, upgrade.format(q=f"?token={web.token}", p=web.port, o="http://evil.example"))
    assert " 101 " in _raw(web, upgrade.format(q=f"?token={web.token}", p=web.port, o=web.origin))

    # In the browser: no token, no page; and a foreign page cannot open the socket.
    page, _ = open_page()
    resp = page.goto(f"{web.origin}/")
    assert resp is not None and resp.status == 403


def test_phone_layout(web: Any, cs: Any, open_page: Any, web_output: Any) -> None:
    page, errors = open_page(web.url, width=390, height=844)
    connected(page)
    page.screenshot(path=str(web_output / "phone-launch.png"))
    launch(page, provider="local-mock", nodes=2, prompt="Phone check [mock:commands=1]")
    expect(pane(page, 1).locator(".blk.turn.turn-end")).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    box = pane(page, 0).bounding_box()
    assert box is not None and box["width"] <= 390
    page.screenshot(path=str(web_output / "phone-swarm.png"), full_page=True)
    no_errors(errors)
