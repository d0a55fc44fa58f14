"""Review of the codex delta fast path (CodexNormalizer._fast_delta): hostile and random message
sequences give exactly what the general path gives (the fast path turned off by emptying _DELTAS)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from codeswarm.router.normalize import codex
from codeswarm.router.normalize.codex import LEGACY, CodexNormalizer

_ODD = st.one_of(st.none(), st.just(""), st.integers(-2, 2), st.booleans(), st.lists(st.just("x"), max_size=1),
                 st.dictionaries(st.just("id"), st.just("t1"), max_size=1))
_IDS = st.one_of(st.sampled_from(["i1", "i2", ""]), _ODD)
_TEXT = st.one_of(st.sampled_from(["a", "b", "", "x" * 3]), _ODD)
_THREAD = st.one_of(st.sampled_from(["th1", "th2", ""]), _ODD)


def _legacy(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    msg = st.one_of(st.fixed_dictionaries({}, optional={"item_id": _IDS, "delta": _TEXT, "message": _TEXT,
                                                        "phase": st.sampled_from([None, "final_answer"])}), _ODD)
    return st.builds(lambda m, c: {"method": LEGACY + kind, "params": {"msg": m, "conversationId": c}}, msg, _THREAD)


def _v2(method: str) -> st.SearchStrategy[dict[str, Any]]:
    params = st.fixed_dictionaries({}, optional={
        "itemId": _IDS, "delta": _TEXT, "threadId": _THREAD, "thread": st.one_of(_ODD, st.builds(
            lambda i: {"id": i}, _THREAD)), "turnId": st.sampled_from(["t1", "t2"]),
        "turn": st.builds(lambda i: {"id": i, "status": "completed"}, st.sampled_from(["t1", "t2"])),
        "status": st.sampled_from(["active", "idle", {"type": "active"}]),
        "item": st.fixed_dictionaries({"type": st.sampled_from(["agentMessage", "reasoning"]), "id": _IDS},
                                      optional={"text": _TEXT, "phase": st.sampled_from([None, "final_answer"])}),
        "tokenUsage": st.just({"total": {"totalTokens": 5, "inputTokens": 3, "outputTokens": 2}}),
    })
    return st.builds(lambda p: {"method": method, "params": p}, st.one_of(params, _ODD))


MESSAGES = st.one_of(
    *[_legacy(k) for k in ("agent_message_content_delta", "agent_message_delta", "agent_reasoning_delta",
                           "agent_reasoning_raw_content_delta", "agent_message", "agent_reasoning")],
    *[_v2(m) for m in ("item/agentMessage/delta", "item/reasoning/summaryTextDelta", "item/reasoning/textDelta",
                       "turn/started", "turn/completed", "thread/status/changed", "item/started", "item/completed",
                       "thread/tokenUsage/updated")],
)


def _feed_all(msgs: list[dict[str, Any]], fast: bool) -> list[Any]:
    norm = CodexNormalizer(strict=True)
    out = []
    saved = codex._DELTAS
    for m in msgs:
        codex._DELTAS = saved if fast else {}
        try:
            out.append(norm.feed(m))
        finally:
            codex._DELTAS = saved
    return out


@settings(max_examples=400, deadline=None, database=None, derandomize=True)
@given(st.lists(MESSAGES, max_size=30))
def test_the_delta_fast_path_gives_what_the_general_path_gives(msgs: list[dict[str, Any]]) -> None:
    assert _feed_all(msgs, fast=True) == _feed_all(msgs, fast=False)


def test_the_fast_path_is_taken_and_can_be_turned_off() -> None:
    """The comparison above means something: with _DELTAS emptied the general path runs."""
    calls = []
    norm = CodexNormalizer(strict=True)
    real = norm._fast_delta
    norm._fast_delta = lambda *a: calls.append(a) or real(*a)  # type: ignore[method-assign]
    delta = {"method": "item/agentMessage/delta", "params": {"itemId": "i1", "delta": "hi"}}
    assert norm.feed(delta) == [("assistant_delta", {"content": "hi"})] and len(calls) == 1
    saved = codex._DELTAS
    codex._DELTAS = {}
    try:
        assert norm.feed({**delta, "params": {"itemId": "i2", "delta": "ho"}}) == [("assistant_delta", {"content": "ho"})]
    finally:
        codex._DELTAS = saved
    assert len(calls) == 1
