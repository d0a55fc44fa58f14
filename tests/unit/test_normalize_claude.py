"""ClaudeNormalizer on recorded Claude Code 2.1.197 stream-json (tests/claude/fixtures) and edge cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codeswarm.router.normalize.claude import ClaudeNormalizer

FIXTURES = Path(__file__).resolve().parent.parent / "claude" / "fixtures"


def load(name: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (FIXTURES / name).read_bytes().splitlines() if line.strip()]


def run(lines: list[Any], norm: ClaudeNormalizer | None = None) -> list[tuple[str, dict[str, Any]]]:
    norm = norm or ClaudeNormalizer()
    out: list[tuple[str, dict[str, Any]]] = []
    for line in lines:
        out.extend(norm.feed(line))
    return out


def names(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [e for e, _ in events]


def of(events: list[tuple[str, dict[str, Any]]], name: str) -> list[dict[str, Any]]:
    return [d for e, d in events if e == name]


def result_line(usage: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    line = {"type": "result", "subtype": "success", "is_error": False, "result": "ok",
            "usage": usage or {"input_tokens": 1, "output_tokens": 1}}
    line.update(kw)
    return line


def assistant(*blocks: dict[str, Any], parent: str | None = None) -> dict[str, Any]:
    return {"type": "assistant", "message": {"role": "assistant", "content": list(blocks)},
            "parent_tool_use_id": parent}


def tool_result(call_id: str, content: Any, is_error: bool = False, extra: Any = None) -> dict[str, Any]:
    line: dict[str, Any] = {"type": "user", "message": {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": call_id, "content": content, "is_error": is_error}]}}
    if extra is not None:
        line["tool_use_result"] = extra
    return line


# ---------------------------------------------------------------- recorded transcripts


def test_text_turn_recorded() -> None:
    norm = ClaudeNormalizer()
    events = run(load("text_turn.jsonl"), norm)
    seq = names(events)
    assert seq[0] == "turn_started" and seq.count("turn_started") == 1
    assert seq[-3:] == ["usage", "task_complete", "turn_complete"]
    deltas = of(events, "assistant_delta")
    assert len(deltas) == 9
    text = "Hello from the fake Claude. You said: Say hi"
    assert "".join(d["content"] for d in deltas) == text
    # The complete text comes after every delta, and is final although stream events follow it.
    assert seq.index("assistant") > max(i for i, n in enumerate(seq) if n == "assistant_delta")
    assert of(events, "assistant") == [{"content": text, "final_answer": True}]
    assert of(events, "task_complete") == [{"last_agent_message": text}]
    assert of(events, "turn_complete") == [{"turn_id": None, "status": "completed"}]
    (usage,) = of(events, "usage")
    assert usage["usage_source"] == "claude/result"
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (101, 12, 113)
    assert (usage["last_input_tokens"], usage["last_output_tokens"], usage["last_total_tokens"]) == (101, 12, 113)
    assert usage["cached_input_tokens"] == 0 and usage["reasoning_output_tokens"] == 0
    assert usage["model_context_window"] == 1_000_000
    assert usage["model_name"] == "claude-opus-4-8[1m]" == norm.model
    assert usage["reported_cost_usd"] == 0.000805  # Claude's own figure; the router prices the tokens
    assert norm.session_id == "97346100-fb43-49c2-b420-96fae961e8cd"


def test_tool_turn_recorded() -> None:
    events = run(load("tool_turn.jsonl"))
    assert names(events) == ["turn_started", "command_started", "command_completed", "assistant",
                             "usage", "task_complete", "turn_complete"]
    cmd = "echo hi-from-claude > made_by_claude.txt; echo done"
    assert of(events, "command_started") == [{"call_id": "toolu_fake_1", "command": cmd,
                                              "cwd": "/root/cc-spike2/work"}]
    (done,) = of(events, "command_completed")
    assert done == {"call_id": "toolu_fake_1", "command": cmd, "cwd": "/root/cc-spike2/work", "stdout": "done",
                    "stderr": "", "exit_code": None, "duration": None, "status": "completed"}
    assert of(events, "assistant") == [{"content": "Tool said: done", "final_answer": True}]
    (usage,) = of(events, "usage")
    assert (usage["input_tokens"], usage["output_tokens"]) == (203, 24)


def test_api_error_turn_recorded() -> None:
    events = run(load("api_error_turn.jsonl"))
    assert names(events) == ["turn_started", "agent_error", "usage", "task_complete", "turn_complete"]
    assert of(events, "agent_error") == [{"message": "API Error: 400 fake failure", "error_code": 400,
                                          "fatal": False}]
    assert of(events, "turn_complete") == [{"turn_id": None, "status": "failed"}]


def test_write_turn_recorded() -> None:
    events = run(load("write_turn.jsonl"))
    changes = of(events, "file_change")
    assert [c["status"] for c in changes] == ["in_progress", "completed"]
    assert changes[1]["changes"] == [{"path": "/tmp/ccx/run/work/notes.txt", "kind": "add", "diff": None}]
    assert changes[0]["call_id"] == changes[1]["call_id"] == "toolu_fake_1"
    assert of(events, "assistant")[-1]["final_answer"] is True


def test_session_totals_sum_over_turns() -> None:
    norm = ClaudeNormalizer()
    first = run([{"type": "codeswarm_turn_start"}, *load("text_turn.jsonl")], norm)
    second = run([{"type": "codeswarm_turn_start"}, *load("tool_turn.jsonl")], norm)
    assert names(first).count("turn_started") == 1 and names(second).count("turn_started") == 1
    assert names(second)[0] == "turn_started"
    (u,) = of(second, "usage")
    assert (u["input_tokens"], u["output_tokens"], u["total_tokens"]) == (304, 36, 340)
    assert (u["last_input_tokens"], u["last_output_tokens"], u["last_total_tokens"]) == (203, 24, 227)
    assert u["reported_cost_usd"] == pytest.approx(0.001615)  # this turn's figure: the router sums what each event adds


def test_cache_tokens_count_as_input() -> None:
    usage = {"input_tokens": 10, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 100,
             "output_tokens": 7}
    (u,) = of(run([result_line(usage)]), "usage")
    assert (u["input_tokens"], u["cached_input_tokens"], u["output_tokens"], u["total_tokens"]) == (115, 100, 7, 122)
    assert (u["last_input_tokens"], u["last_cached_input_tokens"]) == (115, 100)
    assert (u["cache_write_input_tokens"], u["last_cache_write_input_tokens"]) == (5, 5)


# ---------------------------------------------------------------- assistant text and reasoning


def test_thinking_becomes_reasoning() -> None:
    events = run([
        {"type": "stream_event", "event": {"type": "content_block_delta", "index": 0,
                                           "delta": {"type": "thinking_delta", "thinking": "hmm"}}},
        assistant({"type": "thinking", "thinking": "hmm", "signature": "x"}),
        assistant({"type": "text", "text": "answer"}),
        result_line(result="answer"),
    ])
    assert names(events) == ["turn_started", "reasoning_delta", "reasoning", "assistant", "usage",
                             "task_complete", "turn_complete"]
    assert of(events, "reasoning_delta") == [{"content": "hmm"}]
    assert of(events, "reasoning") == [{"content": "hmm"}]


def test_text_before_a_tool_call_is_not_final() -> None:
    events = run([
        assistant({"type": "text", "text": "let me look"}),
        assistant({"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}),
        tool_result("t1", [{"type": "text", "text": "a\nb"}]),
        assistant({"type": "text", "text": "two files"}),
        result_line(result="two files"),
    ])
    assert of(events, "assistant") == [{"content": "let me look", "final_answer": False},
                                       {"content": "two files", "final_answer": True}]
    assert of(events, "command_completed")[0]["stdout"] == "a\nb"


def test_next_message_deltas_flush_the_held_block() -> None:
    delta = {"type": "stream_event", "event": {"type": "content_block_delta",
                                               "delta": {"type": "text_delta", "text": "more"}}}
    events = run([assistant({"type": "text", "text": "first"}), delta])
    assert events[1:] == [("assistant", {"content": "first", "final_answer": False}),
                          ("assistant_delta", {"content": "more"})]


def test_turn_without_text_uses_result_text() -> None:
    events = run([result_line(result="only in result")])
    assert of(events, "assistant") == [{"content": "only in result", "final_answer": True}]


def test_sub_agent_text_is_never_final() -> None:
    events = run([assistant({"type": "text", "text": "inner"}, parent="toolu_task"),
                  assistant({"type": "text", "text": "outer"}), result_line(result="outer")])
    assert of(events, "assistant") == [{"content": "inner", "final_answer": False},
                                       {"content": "outer", "final_answer": True}]


# ---------------------------------------------------------------- tools, files, approvals


def test_failed_bash_call() -> None:
    events = run([assistant({"type": "tool_use", "id": "t9", "name": "Bash", "input": {"command": "false"}}),
                  tool_result("t9", "Exit code 1", is_error=True)])
    (done,) = of(events, "command_completed")
    assert done["status"] == "failed" and done["stdout"] == "Exit code 1" and done["exit_code"] is None


def test_other_tools_are_dropped() -> None:
    events = run([assistant({"type": "tool_use", "id": "r1", "name": "Read", "input": {"file_path": "/x"}}),
                  tool_result("r1", "content")])
    assert names(events) == ["turn_started"]


def test_edit_and_write_become_file_changes() -> None:
    patch = [{"oldStart": 1, "oldLines": 1, "newStart": 1, "newLines": 1, "lines": ["-old", "+new"]}]
    events = run([
        assistant({"type": "tool_use", "id": "e1", "name": "Edit",
                   "input": {"file_path": "/w/a.py", "old_string": "old", "new_string": "new"}}),
        tool_result("e1", "ok", extra={"filePath": "/w/a.py", "structuredPatch": patch}),
        assistant({"type": "tool_use", "id": "w1", "name": "Write", "input": {"file_path": "/w/b.txt", "content": "x"}}),
        tool_result("w1", "created", extra={"type": "create", "filePath": "/w/b.txt", "structuredPatch": []}),
        assistant({"type": "tool_use", "id": "m1", "name": "MultiEdit", "input": {"file_path": "/w/c", "edits": []}}),
        tool_result("m1", "no match", is_error=True),
    ])
    changes = of(events, "file_change")
    assert [(c["call_id"], c["status"]) for c in changes] == [
        ("e1", "in_progress"), ("e1", "completed"), ("w1", "in_progress"), ("w1", "completed"),
        ("m1", "in_progress"), ("m1", "failed")]
    assert changes[1]["changes"] == [{"path": "/w/a.py", "kind": "update",
                                      "diff": "--- a//w/a.py\n+++ b//w/a.py\n@@ -1,1 +1,1 @@\n-old\n+new\n"}]
    assert changes[3]["changes"] == [{"path": "/w/b.txt", "kind": "add", "diff": None}]
    assert changes[5]["changes"][0]["path"] == "/w/c"


def test_permission_requests() -> None:
    norm = ClaudeNormalizer()
    run([{"type": "system", "subtype": "init", "cwd": "/ws", "model": "m", "session_id": "s"}], norm)
    bash = run([{"type": "permission_request", "tool_use_id": "toolu_1", "tool_name": "Bash",
                 "input": {"command": "rm -rf build"}}], norm)
    other = run([{"type": "permission_request", "tool_use_id": "toolu_2", "tool_name": "Write",
                  "input": {"file_path": "/ws/x", "content": "y"}, "reason": "writes a file"}], norm)
    assert bash == [("exec_approval_required", {
        "call_id": "toolu_1", "kind": "command", "command": "rm -rf build", "reason": None, "cwd": "/ws",
        "proposed_execpolicy_amendment": None, "available_decisions": ["accept", "cancel"]})]
    (req,) = of(other, "exec_approval_required")
    assert req["kind"] == "tool" and req["reason"] == "writes a file"
    assert req["command"] == {"tool_name": "Write", "input": {"file_path": "/ws/x", "content": "y"}}


def test_refused_and_abandoned_calls_are_declined() -> None:
    norm = ClaudeNormalizer()
    bash = assistant({"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "rm x"}})
    ask = {"type": "permission_request", "tool_use_id": "t1", "tool_name": "Bash", "input": {"command": "rm x"}}
    refused = run([bash, ask, tool_result("t1", "declined by the operator (codeswarm)", is_error=True)], norm)
    assert of(refused, "command_completed")[0]["status"] == "declined"
    # asked, approved, then the command itself failed: that is a failure, not a refusal
    failed = run([bash, ask, tool_result("t1", "Exit code 1", is_error=True)], norm)
    assert of(failed, "command_completed")[0]["status"] == "failed"
    # cancelled: the process died while the hook waited; the turn end closes the open call
    cancelled = run([bash, ask, {"type": "codeswarm_turn_end", "status": "interrupted"}], norm)
    assert [n for n, _ in cancelled][-2:] == ["command_completed", "turn_complete"]
    assert of(cancelled, "command_completed")[0]["status"] == "declined"


# ---------------------------------------------------------------- failures and turn boundaries


def test_error_result() -> None:
    events = run([{"type": "codeswarm_turn_start"},
                  result_line(is_error=True, result="API Error: 500 boom", api_error_status=500,
                              usage={"input_tokens": 3, "output_tokens": 0})])
    assert names(events) == ["turn_started", "agent_error", "usage", "task_complete", "turn_complete"]
    assert of(events, "agent_error") == [{"message": "API Error: 500 boom", "error_code": 500, "fatal": False}]
    assert of(events, "task_complete") == [{"last_agent_message": None}]
    assert of(events, "turn_complete") == [{"turn_id": None, "status": "failed"}]


def test_error_result_without_text() -> None:
    (err,) = of(run([{"type": "result", "subtype": "error_max_turns", "is_error": True}]), "agent_error")
    assert err["error_code"] == "error_max_turns" and "error_max_turns" in err["message"]


def test_worker_turn_end_marker() -> None:
    norm = ClaudeNormalizer()
    failed = run([{"type": "codeswarm_turn_start"}, assistant({"type": "text", "text": "partial"}),
                  {"type": "codeswarm_turn_end", "status": "failed", "message": "claude exited with code 1"}], norm)
    assert names(failed) == ["turn_started", "assistant", "agent_error", "turn_complete"]
    assert of(failed, "turn_complete") == [{"turn_id": None, "status": "failed"}]
    interrupted = run([{"type": "codeswarm_turn_start"},
                       {"type": "codeswarm_turn_end", "status": "interrupted"}], norm)
    assert names(interrupted) == ["turn_started", "turn_complete"]
    assert of(interrupted, "turn_complete")[0]["status"] == "interrupted"
    # After a result the turn is over: a late marker adds nothing.
    assert run([{"type": "codeswarm_turn_end", "status": "failed"}], norm) == []


def test_worker_generic_turn_failure() -> None:
    events = run([{"type": "codeswarm_turn_start"},
                  {"method": "turn/completed", "params": {"turn": {"id": None, "status": "failed"}}}])
    assert names(events) == ["turn_started", "agent_error", "turn_complete"]
    assert of(events, "turn_complete")[0]["status"] == "failed"


def test_lines_after_result_do_not_open_a_turn() -> None:
    norm = ClaudeNormalizer()
    run([result_line()], norm)
    assert run([{"type": "system", "subtype": "status"}, {"type": "stream_event", "event": {"type": "message_stop"}},
                {"type": "something_new"}], norm) == []


def test_init_starts_a_turn() -> None:
    assert run([{"type": "system", "subtype": "init", "model": "x"}]) == [("turn_started", {"turn_id": None})]


# ---------------------------------------------------------------- robustness

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
_line = st.fixed_dictionaries(
    {"type": st.sampled_from(["system", "assistant", "user", "stream_event", "result", "permission_request",
                              "codeswarm_turn_start", "codeswarm_turn_end", "other"])},
    optional={"subtype": _json, "message": _json, "event": _json, "usage": _json, "result": _json,
              "is_error": _json, "tool_use_id": _json, "tool_name": _json, "input": _json,
              "modelUsage": _json, "total_cost_usd": _json, "parent_tool_use_id": _json},
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_line | _json, max_size=12))
def test_never_raises(lines: list[Any]) -> None:
    norm = ClaudeNormalizer(strict=True)  # a bug raises here instead of becoming a normalizer_error event
    for line in lines:
        for name, data in norm.feed(line):
            assert isinstance(name, str) and isinstance(data, dict)


def test_result_of_a_withdrawn_turn_completes_interrupted() -> None:
    """The worker marks a `result` that claude wrote after a control `interrupt` stopped it."""
    usage = {"input_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1}
    events = run([{"type": "codeswarm_turn_start"}, {**result_line(usage), "codeswarm_interrupted": True}])
    assert of(events, "turn_complete") == [{"turn_id": None, "status": "interrupted"}]
    assert of(events, "usage")  # its tokens still count
