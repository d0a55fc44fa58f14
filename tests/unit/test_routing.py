"""Routing directives in final answers (codeswarm/core/routing.py, grammar in docs/QUEUES.md)."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codeswarm.core.routing import SELECTORS, Directive, directive_key, parse_directives

_EXPLORE = int(os.environ.get("CODESWARM_HYPOTHESIS_EXAMPLES") or 0)
FAST = settings(max_examples=_EXPLORE or 300, deadline=None, database=None, derandomize=not _EXPLORE,
                suppress_health_check=[HealthCheck.too_slow])


def one(text: str) -> Directive:
    found = parse_directives(text)
    assert len(found) == 1, found
    return found[0]


def test_the_four_forms() -> None:
    assert one("/swarm[beta]/idle say hi") == Directive("beta", "idle", None, "say hi", 1)
    assert one("/swarm[beta]/all run the tests") == Directive("beta", "all", None, "run the tests", 1)
    assert one("/swarm[gpu-2]/node[0, 2-4] tune") == Directive("gpu-2", "nodes", "0,2-4", "tune", 1)
    assert one("/reply the answer is 42") == Directive(None, "reply", None, "the answer is 42", 1)


def test_upstream_spellings_first_idle_and_reply_suffix() -> None:
    assert one("/swarm[b]/first-idle x") == Directive("b", "idle", None, "x", 1)
    d = one("/swarm[b]/idle/reply compute 2+2")
    assert (d.target, d.selector, d.reply, d.content) == ("b", "idle", True, "compute 2+2")
    assert one("/swarm[b]/node[1]/reply x").reply is True
    assert one("/swarm[b]/all x").reply is False


def test_directive_after_prose_in_a_mock_style_answer() -> None:
    answer = "Node 0 on host finished: route this:\n/swarm[beta]/idle say hi"
    assert parse_directives(answer) == [Directive("beta", "idle", None, "say hi", 2)]


def test_prompt_continues_until_blank_line_or_next_directive() -> None:
    text = "\n".join([
        "Plan:",
        "/swarm[a]/idle first line",
        "  second line",
        "",
        "not part of it",
        "/swarm[b]/all one",
        "/reply two",
        "three",
    ])
    assert parse_directives(text) == [
        Directive("a", "idle", None, "first line\n  second line", 2),
        Directive("b", "all", None, "one", 6),
        Directive(None, "reply", None, "two\nthree", 7),
    ]


def test_prompt_may_start_on_the_next_line() -> None:
    assert one("/swarm[a]/idle\nwrite the docs\nplease") == Directive("a", "idle", None, "write the docs\nplease", 1)


def test_code_fence_ends_a_prompt_but_fenced_directives_count() -> None:
    text = "```\n/swarm[a]/idle build it\n```\nthen more prose"
    assert parse_directives(text) == [Directive("a", "idle", None, "build it", 2)]


def test_inline_code_and_indentation_and_crlf() -> None:
    assert one("   `/swarm[a]/all go`  ").content == "go"
    assert one("\t/reply done\r\nthanks\r\n").content == "done\nthanks"


def test_not_directives() -> None:
    for text in [
        "",
        "plain answer",
        "use /swarm[beta]/idle in the middle of a line",
        "/swarm[beta]/idle",  # empty prompt
        "/swarm[beta]/idle   \n\nlater text",  # empty prompt: the blank line ends it
        "/swarm[beta]/idlex go",
        "/swarm[beta]/busy go",
        "/swarm[]/idle go",
        "/swarm[bad alias]/idle go",
        "/swarm[-x]/idle go",
        "/swarm[beta]/node[] go",
        "/swarm[beta]/node[a] go",
        "/swarm[beta]/node[1 go",
        "/Swarm[beta]/idle go",
        "/replying to you",
        "/reply",
        "- /swarm[beta]/idle bullets are prose",
        "``/swarm[beta]/idle go``",
    ]:
        assert parse_directives(text) == [], text


def test_selector_strings_are_passed_through_for_the_router_to_check() -> None:
    # 9-3 is a reversed range: the router rejects it against the swarm (auto_route_ignored)
    assert one("/swarm[a]/node[9-3,,1] x").nodes == "9-3,,1"


def test_line_numbers_are_one_based_and_count_every_line() -> None:
    assert [d.line_no for d in parse_directives("a\n\n/reply x\n\n/swarm[z]/all y")] == [3, 5]


def test_directive_key_is_stable_and_distinguishes() -> None:
    text = "/swarm[a]/idle x\n\n/swarm[a]/idle x\n\n/swarm[a]/idle/reply x"
    ds = parse_directives(text)
    keys = [directive_key("inj-1", d) for d in ds]
    assert len(set(keys)) == 3  # same text on another line is another directive
    again = [directive_key("inj-1", d) for d in parse_directives(text)]
    assert keys == again
    assert directive_key("inj-2", ds[0]) != keys[0]
    assert keys[0].startswith("inj-1:")
    # a pinned value: the key must not change between router versions (it is persisted for dedup)
    assert directive_key("i", Directive("a", "idle", None, "x", 1)) == "i:1:4ad734d6bf172931"


directive_lines = st.builds(
    lambda alias, sel, body: f"/swarm[{alias}]/{sel} {body}",
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,10}", fullmatch=True),
    st.sampled_from(["idle", "all", "first-idle", "node[0,2-4]", "idle/reply", "node[1]/reply"]),
    st.text(min_size=1, max_size=30).filter(lambda s: "\n" not in s),
) | st.builds(lambda body: f"/reply {body}", st.text(max_size=30))
noise = st.text(max_size=60) | st.sampled_from(["", "```", "/swarm[", "/reply", "`", "/swarm[x]/node[", "\r"])


@FAST
@given(st.lists(directive_lines | noise, max_size=12).map("\n".join))
def test_never_raises_and_results_are_well_formed(text: str) -> None:
    found = parse_directives(text)
    lines = text.split("\n")
    last = 0
    for d in found:
        assert d.selector in SELECTORS
        assert d.content and d.content == d.content.strip()
        assert (d.target is None) == (d.selector == "reply")
        assert (d.nodes is not None) == (d.selector == "nodes")
        assert last < d.line_no <= len(lines)
        last = d.line_no
        assert "/" in lines[d.line_no - 1]
        key = directive_key("inj", d)
        assert key == directive_key("inj", d) and key.startswith("inj:")


@FAST
@given(st.text(max_size=400))
def test_arbitrary_text_never_raises(text: Any) -> None:
    for d in parse_directives(text):
        assert d.content


# ---------------------------------------------------------------- the core's use of directives (queue.RouteAnswer)


def route_answer(h: Any, swarm: Any, node_id: int, iid: Any, text: str) -> list[Any]:
    """Decide RouteAnswer; returns the inbox lines to append."""
    from codeswarm.core.kernel import InboxLine
    from codeswarm.core.queue import RouteAnswer

    return [e for e in h.decide(RouteAnswer(swarm.swarm_id, node_id, iid, text)).effects if isinstance(e, InboxLine)]


def test_route_answer_routes_once_per_directive_and_survives_replay(h: Any) -> None:
    alpha, _ = h.launch(nodes=2, swarm_alias="alpha", auto_route=True)
    beta, _ = h.launch(nodes=1, swarm_alias="beta")
    h.start(alpha)
    h.start(beta)
    h.set_state(alpha, "running", None)
    h.set_state(beta, "running", None)
    iid = h.inject(alpha, [1], "delegate")[1]
    answer = "Done.\n/swarm[beta]/idle run the tests\n\n/swarm[nobody]/all hello\n/swarm[beta]/node[4] x"
    mark = h.mark()
    actions = route_answer(h, alpha, 1, iid, answer)
    names = h.names(after=mark)
    assert names.count("auto_route_submitted") == 1 and names.count("auto_route_ignored") == 2
    assert names.count("inter_swarm_dispatched") == 1  # beta's node 0 is idle: dispatched at once
    assert [a.node_id for a in actions] == [0] and actions[0].swarm_id == beta.swarm_id
    routed = h.events(after=mark)
    ack = next(d for n, d in routed if n == "inject_ack")
    assert ack["prompt"] == "run the tests" and ack["origin"] == [alpha.swarm_id, 1]
    # the same answer again (a repeated final message, a re-read outbox): nothing more happens
    mark = h.mark()
    assert route_answer(h, alpha, 1, iid, answer) == []
    assert h.names(after=mark) == []
    # ... also for a core recovered from the log
    fresh = h.replayed()
    assert fresh.swarms[alpha.swarm_id].routed_keys == alpha.routed_keys and len(alpha.routed_keys) == 3


def test_reply_goes_to_the_origin_node_and_needs_one(h: Any) -> None:
    alpha, _ = h.launch(nodes=2, swarm_alias="alpha", auto_route=True)
    beta, _ = h.launch(nodes=1, swarm_alias="beta", auto_route=True)
    for s in (alpha, beta):
        h.start(s)
        h.set_state(s, "running", None)
    plain = h.inject(beta, [0], "no origin")[0]
    mark = h.mark()
    assert route_answer(h, beta, 0, plain, "/reply nobody asked") == []
    assert [(n, d["reason"]) for n, d in h.events(after=mark)] == [("auto_route_ignored", "no origin to reply to")]
    routed = h.inject_lines(beta, [0], "from alpha", None, origin=[alpha.swarm_id, 1])
    iid = routed[0].line["injection_id"]
    actions = route_answer(h, beta, 0, iid, "ok\n/reply 42")
    assert [(a.swarm_id, a.node_id, a.line["content"]) for a in actions] == [(alpha.swarm_id, 1, "42")]


def test_route_answer_is_off_without_auto_route(h: Any) -> None:
    quiet, _ = h.launch(nodes=1, swarm_alias="quiet")
    h.launch(nodes=1, swarm_alias="beta")
    iid = h.inject(quiet, [0], "x")[0]
    mark = h.mark()
    assert route_answer(h, quiet, 0, iid, "/swarm[beta]/all hi") == []
    assert h.names(after=mark) == []
