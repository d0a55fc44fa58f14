"""Markdown in assistant and reasoning text, against hostile input (scripted router, the real bridge,
Chromium): no script runs, no request leaves the page, raw HTML shows as text, and only http(s)
links become links (rel=noopener). The useful parts still render: code blocks, tables, lists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_page_scripted import SWARM, Stack

pytestmark = pytest.mark.web

HOSTILE = """# Report <img src=x onerror="window.__pwned='h1'">

<script>window.__pwned = 'script'</script>
<img src="http://127.0.0.1:9/track.png" onerror="window.__pwned='img'">
<iframe src="http://127.0.0.1:9/frame"></iframe><svg onload="window.__pwned='svg'"></svg>
<a href="javascript:window.__pwned='a'">raw link</a> <style>body { display: none }</style>

[js link](javascript:window.__pwned='md') [data link](data:text/html,<b>x</b>) [vb](vbscript:msgbox(1))
[good link](https://example.com/docs?a=1&b=2) and <http://example.org/auto> and https://example.net/bare.
![tracker](http://127.0.0.1:9/pixel.gif)

**bold <b>nested <i>html</i></b>** with `inline <code>` and *emphasis*

| col <img src=x onerror=alert(1)> | link |
|---|:-:|
| <script>alert(2)</script> | [x](javascript:alert(3)) |

```html
<script>window.__pwned = 'fence'</script>
```

- item <svg onload=alert(4)>
- second
  1. nested

> quote <iframe src=javascript:alert(5)>
"""


@pytest.fixture
def stack() -> Any:
    s = Stack()
    yield s
    s.stop()


def test_hostile_markdown_renders_as_text(stack: Stack, open_page: Any, web_output: Path) -> None:
    from playwright.sync_api import expect

    r = stack.router
    for event, data in [
        ("swarm_launched", {"node_count": 1, "state": "running", "provider": "local", "provider_id": "scripted",
                            "agent_runtime": "codex"}),
        ("turn_started", {"turn_id": "t1"}),
        ("reasoning", {"content": "Thinking about <img src=x onerror=\"window.__pwned='reason'\"> **carefully**"}),
        ("assistant", {"content": HOSTILE, "final_answer": True}),
        ("turn_complete", {"turn_id": "t1"}),
    ]:
        stack.call(lambda e=event, d=data: r.append(e, **d))

    page, errors = open_page()
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    page.goto(f"{stack.web.url}#/swarm/{SWARM}")
    answer = page.locator(".pane[data-node='0'] .blk.assistant.final-answer .text.md")
    expect(answer.locator("table")).to_have_count(1)
    page.locator(".pane[data-node='0'] .blk.reasoning summary").click()
    page.wait_for_timeout(300)  # give any injected handler a chance to fire (it must not)
    page.screenshot(path=str(web_output / "markdown-hostile.png"), full_page=True)

    # Nothing active was created from the text, nothing ran, nothing was fetched.
    for tag in ("script", "img", "iframe", "svg", "style", "object", "embed"):
        assert page.locator(f".pane {tag}").count() == 0, tag
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("[...document.querySelectorAll('.pane *')].filter(e => [...e.attributes].some("
                         "a => a.name.startsWith('on'))).length") == 0
    origin = stack.web.origin
    foreign = [u for u in requests if not u.startswith(origin) and not u.startswith(origin.replace("http", "ws"))]
    assert foreign == [], foreign

    # Raw HTML is shown as the text it is.
    expect(answer).to_contain_text("<script>window.__pwned = 'script'</script>")
    expect(answer).to_contain_text('<img src="http://127.0.0.1:9/track.png"')
    expect(answer.locator("h3")).to_contain_text('Report <img src=x onerror="window.__pwned=\'h1\'">')

    # Only http(s) links are links, opened with rel=noopener; the others stay text.
    hrefs = answer.locator("a").evaluate_all("as => as.map(a => [a.getAttribute('href'), a.rel, a.target, a.textContent])")
    assert [h[0] for h in hrefs] == ["https://example.com/docs?a=1&b=2", "http://example.org/auto",
                                     "https://example.net/bare", "http://127.0.0.1:9/pixel.gif"], hrefs
    assert all("noopener" in h[1] and h[2] == "_blank" for h in hrefs), hrefs
    expect(answer).to_contain_text("[js link](javascript:window.__pwned='md')")
    expect(answer).to_contain_text("[vb](vbscript:msgbox(1))")
    expect(answer.locator("table td").nth(1)).to_have_text("[x](javascript:alert(3))")
    assert page.locator("a[href^='javascript'], a[href^='data'], a[href^='vbscript']").count() == 0

    # The Markdown itself still renders.
    expect(answer.locator("strong").first).to_have_text("bold <b>nested <i>html</i></b>")
    expect(answer.locator("p code").first).to_have_text("inline <code>")
    expect(answer.locator("pre.md-code code")).to_have_text("<script>window.__pwned = 'fence'</script>")
    expect(answer.locator("table th")).to_have_count(2)
    expect(answer.locator("table td").first).to_have_text("<script>alert(2)</script>")
    expect(answer.locator("ul > li")).to_have_count(2)
    expect(answer.locator("ul ol > li")).to_have_text(["nested"])
    expect(answer.locator("blockquote")).to_contain_text("quote <iframe src=javascript:alert(5)>")
    reasoning = page.locator(".pane[data-node='0'] .blk.reasoning .text.md")
    expect(reasoning).to_contain_text("Thinking about <img src=x onerror=\"window.__pwned='reason'\">")
    expect(reasoning.locator("strong")).to_have_text("carefully")
    # CSP violations would show as console errors; there are none.
    assert not errors.items, errors.items
