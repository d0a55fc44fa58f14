"""A normalizer bug is never silent (issue 11): in the router it becomes an `agent_error` event with
error_code `normalizer_error` and the raw message; in tests (strict) it raises, so a property test
that feeds random input fails on it. The bug is injected: the real normalizers have none we know of."""

from __future__ import annotations

from typing import Any

import pytest

from codeswarm.router.normalize.claude import ClaudeNormalizer
from codeswarm.router.normalize.codex import CodexNormalizer

# A line that goes through the broken handler: deltas take CodexNormalizer._fast_delta, the rest _v2.
BUGGY_LINE = {"_v2": {"method": "turn/started", "params": {"turn": {"id": "t1"}}},
              "_fast_delta": {"method": "item/agentMessage/delta", "params": {"itemId": "i1", "delta": "hi"}},
              "_start_turn": {"type": "assistant", "message": {"content": [{"type": "text", "text": "hi"}]}}}
BROKEN = [(CodexNormalizer, "_v2"), (CodexNormalizer, "_fast_delta"), (ClaudeNormalizer, "_start_turn")]


def _break(monkeypatch: pytest.MonkeyPatch, cls: type, method: str) -> None:
    def boom(*_args: Any, **_kwargs: Any) -> Any:
        raise KeyError("no such field")  # what a slip in a handler looks like

    monkeypatch.setattr(cls, method, boom)


@pytest.mark.parametrize(("cls", "method"), BROKEN)
def test_a_normalizer_bug_becomes_an_agent_error_with_the_raw_line(monkeypatch: pytest.MonkeyPatch, cls: type,
                                                                  method: str) -> None:
    _break(monkeypatch, cls, method)
    line = BUGGY_LINE[method]
    events = cls(strict=False).feed(line)
    assert [name for name, _ in events][-1:] == ["agent_error"]
    data = events[-1][1]
    assert data["error_code"] == "normalizer_error" and data["fatal"] is False
    assert data["raw"] == line
    assert f"{cls.runtime} normalizer failed" in data["message"] and "KeyError" in data["message"]
    assert "test_normalizer_errors.py" in data["message"]  # where it broke, to find the bug


@pytest.mark.parametrize(("cls", "method"), BROKEN)
def test_strict_normalizers_raise_the_bug(monkeypatch: pytest.MonkeyPatch, cls: type, method: str) -> None:
    _break(monkeypatch, cls, method)
    with pytest.raises(KeyError):
        cls(strict=True).feed(BUGGY_LINE[method])
    with pytest.raises(KeyError):  # the test session's default (tests/conftest.py): strict
        cls().feed(BUGGY_LINE[method])


def test_bad_input_is_still_dropped_without_an_error() -> None:
    """Strictness is about bugs: odd shapes from a runtime are dropped by design, not errors."""
    for norm in (CodexNormalizer(strict=True), ClaudeNormalizer(strict=True)):
        for payload in (None, 5, "x", [], {"method": 3}, {"type": ["assistant"]}, {"method": "item/completed",
                                                                                   "params": {"item": 7}}):
            assert [name for name, _ in norm.feed(payload)] in ([], ["turn_started"])
