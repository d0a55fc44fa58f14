"""CodexNormalizer on the recorded codex 0.169.0 app-server transcript, the mock dialect and edge cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from codeswarm.router.normalize.codex import CodexNormalizer

FIXTURES = Path(__file__).resolve().parent.parent / "codex" / "fixtures"
Events = list[tuple[str, dict[str, Any]]]


def transcript() -> list[dict[str, Any]]:
    """Messages the real server sent (the transcript also holds what the driver sent)."""
    rows = [orjson.loads(line) for line in (FIXTURES / "transcript_0169.jsonl").read_bytes().splitlines()]
    return [r["msg"] for r in rows if r["dir"] == "recv"]


def mock_lines() -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (FIXTURES / "mock_turns.jsonl").read_bytes().splitlines() if line]


def run(lines: list[Any], norm: CodexNormalizer | None = None) -> Events:
    norm = norm or CodexNormalizer()
    out: Events = []
    for line in lines:
        out.extend(norm.feed(line))
    return out


def names(events: Events) -> list[str]:
    return [e for e, _ in events]


def of(events: Events, name: str) -> list[dict[str, Any]]:
    return [d for e, d in events if e == name]


def turns(events: Events) -> list[Events]:
    """The events from each turn_started to its turn_complete (events between turns are dropped)."""
    out: list[Events] = []
    inside = False
    for ev in events:
        if ev[0] == "turn_started":
            out.append([])
            inside = True
        if inside:
            out[-1].append(ev)
        if ev[0] == "turn_complete":
            inside = False
    return out


# -- the recorded real transcript ----------------------------------------------------------------


def test_transcript_pitfalls_no_jsonrpc_and_request_ids_from_zero() -> None:
    msgs = transcript()
    assert not any("jsonrpc" in m for m in msgs)  # P2: the server never sends it
    requests = [m for m in msgs if "method" in m and "id" in m]
    assert [m["id"] for m in requests] == [0, 1, 2, 3, 4]  # P3: ids start at 0
    approvals = of(run(msgs), "exec_approval_required")
    assert [a["rpc_id"] for a in approvals] == [0, 1, 2, 3, 4]


def test_transcript_every_turn_is_bracketed() -> None:
    events = run(transcript())
    per_turn = turns(events)
    assert len(per_turn) == 17
    for t in per_turn:
        assert names(t).count("turn_started") == 1
        assert names(t).count("turn_complete") == 1
        assert t[-1][0] == "turn_complete"
        assert t[0][1]["turn_id"] == t[-1][1]["turn_id"]
    statuses = [t[-1][1]["status"] for t in per_turn]
    assert statuses.count("completed") == 13
    assert statuses.count("interrupted") == 2  # cancelled approval + turn/interrupt
    assert statuses.count("failed") == 2


def test_transcript_text_turn_streams_and_answers_once() -> None:
    first = turns(run(transcript()))[0]
    deltas = of(first, "assistant_delta")
    assert len(deltas) == 10
    (answer,) = of(first, "assistant")
    assert "".join(d["content"] for d in deltas) == answer["content"]
    assert answer == {"content": "Hello from the fake model. You said: Say hello please", "final_answer": True}
    (usage,) = of(first, "usage")
    assert usage["total_tokens"] == 6953 and usage["input_tokens"] == 6943 and usage["output_tokens"] == 10
    assert usage["last_total_tokens"] == 6953 and usage["model_context_window"] == 258400
    assert usage["usage_source"] == "thread/tokenUsage/updated" and usage["model_name"] == "gpt-5.5"


def test_transcript_command_turn() -> None:
    second = turns(run(transcript()))[1]
    assert names(second).index("command_started") < names(second).index("command_completed")
    (started,) = of(second, "command_started")
    (done,) = of(second, "command_completed")
    assert started["call_id"] == done["call_id"] == "call_fake_2"
    assert started["command"] == "/bin/bash -lc 'echo hi-from-codex && uname -s'"
    assert started["turn_id"] == second[0][1]["turn_id"]
    assert done["stdout"] == "hi-from-codex\nLinux\n" and done["exit_code"] == 0
    assert done["duration"] == {"secs": 0, "nanos": 0} and done["status"] == "completed"
    # Two model calls -> two usage events, total cumulative.
    assert [u["total_tokens"] for u in of(second, "usage")] == [6957, 14028]


def test_transcript_missing_first_output_delta_uses_aggregated_output() -> None:
    msgs = transcript()
    deltas = [m["params"]["delta"] for m in msgs if m.get("method") == "item/commandExecution/outputDelta"]
    assert "line1\n" not in deltas  # P10, as recorded
    done = [d for d in of(run(msgs), "command_completed") if d["call_id"] == "call_fake_16"]
    assert done[0]["stdout"] == "line1\nline2\nline3\nline4\n"


def test_transcript_approvals() -> None:
    per_turn = turns(run(transcript()))
    accepted, declined = per_turn[2], per_turn[3]
    (ask,) = of(accepted, "exec_approval_required")
    assert ask["call_id"] == "call_fake_4" and ask["kind"] == "command" and ask["rpc_id"] == 0
    assert ask["proposed_execpolicy_amendment"] == ["touch", "approved_file.txt"]
    assert ask["available_decisions"][0] == "accept" and ask["turn_id"] == accepted[0][1]["turn_id"]
    # "decline" works but 0.169.0 does not list it: the normalizer offers it (before "cancel").
    assert ask["available_decisions"][-2:] == ["decline", "cancel"]
    assert of(accepted, "command_completed")[0]["stdout"] == "touched\n"
    # codex announces the item before asking; the command starts only once approved.
    order = [e for e, _ in accepted]
    assert order.index("exec_approval_required") < order.index("command_started") < order.index("command_completed")
    assert of(accepted, "command_started")[0]["command"] == ask["command"]
    (ask2,) = of(declined, "exec_approval_required")
    assert ask2["rpc_id"] == 1
    (done,) = of(declined, "command_completed")
    assert done["status"] == "declined" and done["exit_code"] is None
    assert not of(declined, "command_started")  # a declined command never started
    escalated = of(per_turn[4], "exec_approval_required")[0]
    assert escalated["reason"] == "fake model wants to run this outside the sandbox"
    cancelled = [t for t in per_turn if any(d.get("call_id") == "call_fake_18" for _, d in t)][0]
    assert cancelled[-1][1]["status"] == "interrupted"
    assert of(cancelled, "command_completed")[0]["status"] == "declined"


def test_transcript_file_change_approval_carries_the_changes() -> None:
    events = run(transcript())
    (ask,) = [a for a in of(events, "exec_approval_required") if a["kind"] == "file_change"]
    assert ask["rpc_id"] == 4 and ask["call_id"] == "call_fake_21"
    (change,) = ask["command"]["changes"]
    assert change["path"].endswith("patched_approved.txt") and change["kind"] == "add"
    statuses = [f["status"] for f in of(events, "file_change") if f["call_id"] == "call_fake_21"]
    assert statuses == ["in_progress", "completed"]


def test_transcript_failures() -> None:
    failed = [t for t in turns(run(transcript())) if t[-1][1]["status"] == "failed"]
    assert len(failed) == 2
    for t in failed:
        (err,) = of(t, "agent_error")
        assert err["fatal"] is False and err["message"]
        assert names(t).index("agent_error") < len(t) - 1
    assert of(failed[0], "agent_error")[0]["error_code"] == "internalServerError"


def test_transcript_interrupt_emits_no_usage() -> None:
    interrupted = [t for t in turns(run(transcript())) if t[-1][1]["status"] == "interrupted"]
    assert all(not of(t, "usage") for t in interrupted)


# -- the mock dialect ----------------------------------------------------------------------------


def test_mock_dialect() -> None:
    events = run(mock_lines())
    assert names(events) == [
        "turn_started", "reasoning_delta", "reasoning_delta", "reasoning", "exec_approval_required",
        "command_started", "command_completed", "assistant_delta", "assistant_delta", "assistant", "usage",
        "turn_complete", "turn_started", "agent_error", "turn_complete",
    ]
    assert events[0] == ("turn_started", {"turn_id": "turn-1"})
    ask = of(events, "exec_approval_required")[0]
    assert ask == {"call_id": "call_1_1", "kind": "command", "command": "rm -rf build", "cwd": "/ws/node_00",
                   "reason": "mock approval", "proposed_execpolicy_amendment": None,
                   "available_decisions": ["accept", "acceptForSession", "decline", "cancel"],
                   "turn_id": "turn-1", "rpc_id": 0}
    assert of(events, "command_started")[0] == {"call_id": "call_1_1", "command": ["bash", "-lc", "echo hi"],
                                                "cwd": "/ws/node_00", "turn_id": "turn-1"}
    done = of(events, "command_completed")[0]
    assert done["stdout"] == "hi\n" and done["duration"] == {"secs": 0, "nanos": 1200000}
    assert done["exit_code"] == 0 and done["status"] == "completed"
    assert of(events, "assistant") == [{"content": "Hello from node 0 on host", "final_answer": True}]
    usage = of(events, "usage")[0]
    assert (usage["total_tokens"], usage["cached_input_tokens"], usage["reasoning_output_tokens"]) == (120, 10, 5)
    assert usage["model_context_window"] == 128000
    assert of(events, "agent_error") == [{"message": "mock failure requested", "error_code": "other", "fatal": False}]
    assert events[-1] == ("turn_complete", {"turn_id": "turn-2", "status": "failed"})


def test_mock_declined_and_interrupted() -> None:
    n = CodexNormalizer()
    run([{"method": "turn/started", "params": {"turn": {"id": "turn-3"}}}], n)
    ev = n.feed({"method": "codex/event/exec_command_end", "params": {"msg": {
        "call_id": "c", "command": ["x"], "cwd": "/w", "stdout": "", "stderr": "", "exit_code": None,
        "status": "declined"}}})
    assert ev[0][1]["status"] == "declined" and ev[0][1]["duration"] is None
    ev = n.feed({"method": "turn/completed", "params": {"turn": {"id": "turn-3", "status": "interrupted"}}})
    assert ev == [("turn_complete", {"turn_id": "turn-3", "status": "interrupted"})]


# -- both families for the same facts -------------------------------------------------------------


def _both(legacy: dict[str, Any], v2: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"method": "codex/event/" + legacy["type"], "params": {"msg": legacy}},
            {"method": v2[0], "params": v2[1]}]


def test_dual_family_stream_is_emitted_once() -> None:
    lines: list[dict[str, Any]] = [{"method": "turn/started", "params": {"turn": {"id": "t1"}}}]
    lines += _both({"type": "item_started", "item": {"type": "AgentMessage", "id": "m1"}},
                   ("item/started", {"item": {"type": "agentMessage", "id": "m1", "text": ""}}))
    for chunk in ["ab", "ab", "c"]:  # identical consecutive deltas are real repeats
        lines += _both({"type": "agent_message_content_delta", "item_id": "m1", "delta": chunk},
                       ("item/agentMessage/delta", {"itemId": "m1", "delta": chunk}))
    lines += _both({"type": "agent_message", "message": "ababc", "phase": "final_answer"},
                   ("item/completed", {"item": {"type": "agentMessage", "id": "m1", "text": "ababc",
                                                "phase": "final_answer"}}))
    lines += _both({"type": "exec_command_begin", "call_id": "k", "command": ["ls"], "cwd": "/w"},
                   ("item/started", {"item": {"type": "commandExecution", "id": "k", "command": "ls", "cwd": "/w"}}))
    lines += _both({"type": "exec_command_end", "call_id": "k", "stdout": "x", "exit_code": 0,
                    "duration": {"secs": 1, "nanos": 0}},
                   ("item/completed", {"item": {"type": "commandExecution", "id": "k", "aggregatedOutput": "x",
                                                "exitCode": 0, "durationMs": 1000, "status": "completed"}}))
    lines += _both({"type": "token_count", "info": {"total_token_usage": {"total_tokens": 9, "input_tokens": 5,
                                                                         "output_tokens": 4},
                                                    "last_token_usage": {"total_tokens": 9}}},
                   ("thread/tokenUsage/updated", {"tokenUsage": {"total": {"totalTokens": 9, "inputTokens": 5,
                                                                           "outputTokens": 4},
                                                                 "last": {"totalTokens": 9}}}))
    lines += _both({"type": "error", "message": "boom"}, ("error", {"error": {"message": "boom"}}))
    lines.append({"method": "turn/completed", "params": {"turn": {"id": "t1", "status": "failed"}}})
    events = run(lines)
    assert [d["content"] for d in of(events, "assistant_delta")] == ["ab", "ab", "c"]
    assert of(events, "assistant") == [{"content": "ababc", "final_answer": True}]
    assert len(of(events, "command_started")) == 1 and len(of(events, "command_completed")) == 1
    assert of(events, "command_completed")[0]["duration"] == {"secs": 1, "nanos": 0}
    assert len(of(events, "usage")) == 1 and len(of(events, "agent_error")) == 1
    assert names(events)[-1] == "turn_complete"


def test_dual_family_reasoning_once() -> None:
    lines = _both({"type": "agent_reasoning_delta", "delta": "hm"},
                  ("item/reasoning/summaryTextDelta", {"itemId": "", "delta": "hm", "summaryIndex": 0}))
    lines += _both({"type": "agent_reasoning", "text": "hm"},
                   ("item/completed", {"item": {"type": "reasoning", "id": "r", "summary": ["hm"], "content": []}}))
    assert names(run(lines)) == ["reasoning_delta", "reasoning"]


# -- assistant phase and final_answer ---------------------------------------------------------------


def _msg(text: str, phase: str | None = None) -> dict[str, Any]:
    return {"method": "item/completed", "params": {"item": {"type": "agentMessage", "id": text, "text": text,
                                                            "phase": phase}}}


def test_unknown_phase_is_held_until_the_turn_shows_whether_it_was_last() -> None:
    n = CodexNormalizer()
    assert n.feed({"method": "turn/started", "params": {"turn": {"id": "t"}}})[0][0] == "turn_started"
    assert n.feed(_msg("first")) == []
    usage = {"method": "thread/tokenUsage/updated", "params": {"tokenUsage": {"total": {"totalTokens": 1}}}}
    assert names(n.feed(usage)) == ["usage"]  # usage does not end the message
    started = n.feed({"method": "item/started", "params": {"item": {"type": "commandExecution", "id": "c",
                                                                    "command": "ls", "cwd": "/"}}})
    assert started[0] == ("assistant", {"content": "first", "final_answer": False})
    assert started[1][0] == "command_started"
    assert n.feed(_msg("second")) == []
    assert n.feed(_msg("third", "commentary")) == [
        ("assistant", {"content": "second", "final_answer": False}),
        ("assistant", {"content": "third", "final_answer": False})]
    assert n.feed(_msg("last")) == []
    end = n.feed({"method": "turn/completed", "params": {"turn": {"id": "t", "status": "completed"}}})
    assert end == [("assistant", {"content": "last", "final_answer": True}),
                   ("turn_complete", {"turn_id": "t", "status": "completed"})]


def test_turn_summary_items_are_a_fallback() -> None:
    end = run([{"method": "turn/started", "params": {"turn": {"id": "t"}}},
               {"method": "turn/completed", "params": {"turn": {"id": "t", "status": "completed", "items": [
                   {"type": "agentMessage", "id": "m", "text": "only in summary"}]}}}])
    assert end[1:] == [("assistant", {"content": "only in summary", "final_answer": True}),
                       ("turn_complete", {"turn_id": "t", "status": "completed"})]


def test_failed_turn_without_error_notification_still_reports_the_error() -> None:
    end = CodexNormalizer().feed({"method": "turn/completed", "params": {"turn": {
        "id": "t", "status": "failed", "error": {"message": "x", "codexErrorInfo": "other"}}}})
    assert end == [("agent_error", {"message": "x", "error_code": "other", "fatal": False}),
                   ("turn_complete", {"turn_id": "t", "status": "failed"})]


# -- legacy and v1 request shapes -------------------------------------------------------------------


def test_legacy_approval_shapes() -> None:
    n = CodexNormalizer()
    (ev,) = n.feed({"id": 7, "method": "execCommandApproval", "params": {
        "callId": "c1", "command": ["git", "push"], "cwd": "/w", "reason": "why", "conversationId": "x"}})
    assert ev[1]["call_id"] == "c1" and ev[1]["rpc_id"] == 7 and ev[1]["command"] == ["git", "push"]
    assert ev[1]["available_decisions"] == ["approved", "approved_for_session", "denied", "abort"]
    (ev,) = n.feed({"id": 8, "method": "applyPatchApproval", "params": {
        "callId": "c2", "fileChanges": {"a.txt": {"add": {"content": "hi\n"}},
                                        "b.txt": {"update": {"unified_diff": "@@", "move_path": None}}}}})
    assert ev[1]["kind"] == "file_change"
    assert ev[1]["command"] == {"changes": [{"path": "a.txt", "kind": "add", "diff": "hi\n"},
                                            {"path": "b.txt", "kind": "update", "diff": "@@"}]}
    (ev,) = n.feed({"method": "codex/event/exec_approval_request", "params": {"msg": {
        "call_id": "c3", "command": ["rm", "x"], "cwd": "/w", "proposed_execpolicy_amendment": ["rm"]}}})
    assert ev[1]["rpc_id"] is None and ev[1]["proposed_execpolicy_amendment"] == ["rm"]
    (ev,) = n.feed({"method": "codex/event/apply_patch_approval_request", "params": {"msg": {
        "call_id": "c4", "changes": {"f": {"type": "delete"}}}}})
    assert ev[1]["command"] == {"changes": [{"path": "f", "kind": "delete", "diff": None}]}


def test_legacy_task_and_token_count() -> None:
    events = run([
        {"method": "codex/event/task_started", "params": {"msg": {"type": "task_started"}}},
        {"method": "codex/event/token_count", "params": {"msg": {"type": "token_count", "info": None}}},
        {"method": "codex/event/token_count", "params": {"msg": {"info": {
            "total_token_usage": {"total_tokens": 3, "input_tokens": 2, "cached_input_tokens": 0,
                                  "output_tokens": 1, "reasoning_output_tokens": 0},
            "last_token_usage": {"total_tokens": 3}, "model_context_window": 1000}}}},
        {"method": "codex/event/task_complete", "params": {"msg": {"last_agent_message": "done"}}},
    ])
    assert names(events) == ["task_started", "usage", "task_complete"]
    assert events[1][1]["usage_source"] == "codex/event/token_count" and events[1][1]["total_tokens"] == 3
    assert events[2][1] == {"last_agent_message": "done"}


def test_output_delta_starts_a_held_command() -> None:
    n = CodexNormalizer()
    held = {"method": "item/started", "params": {"item": {"type": "commandExecution", "id": "c", "command": "ls",
                                                          "cwd": "/w", "processId": None, "source": "agent"}}}
    assert n.feed(held) == []
    started = n.feed({"method": "item/commandExecution/outputDelta", "params": {"itemId": "c", "delta": "x"}})
    assert started == [("command_started", {"call_id": "c", "command": "ls", "cwd": "/w", "turn_id": None})]
    assert n.feed({"method": "item/commandExecution/outputDelta", "params": {"itemId": "c", "delta": "y"}}) == []
    done = n.feed({"method": "item/completed", "params": {"item": {"type": "commandExecution", "id": "c",
                                                                   "aggregatedOutput": "xy", "exitCode": 0}}})
    assert [e for e, _ in done] == ["command_completed"] and done[0][1]["command"] == "ls"


def test_thread_status_brackets_follow_the_turn() -> None:
    events = run(transcript())
    starts = [i for i, (e, _) in enumerate(events) if e == "turn_started"]
    assert all(events[i + 1] == ("thread_status", {"status": {"type": "active", "activeFlags": []}}) for i in starts)
    ends = [i for i, (e, d) in enumerate(events) if e == "turn_complete" and d["status"] != "failed"]
    assert all(events[i + 1] == ("thread_status", {"status": {"type": "idle"}}) for i in ends)
    # a failure's systemError shows before its agent_error (a held status never passes content)
    fails = [i for i, (e, d) in enumerate(events) if e == "turn_complete" and d["status"] == "failed"]
    assert all([e for e, _ in events[i - 2:i]] == ["thread_status", "agent_error"] for i in fails)
    for t in turns(events):  # never idle inside a turn
        assert all(d["status"]["type"] != "idle" for e, d in t if e == "thread_status")


def test_thread_status_and_drops() -> None:
    n = CodexNormalizer()
    assert n.feed({"method": "thread/status/changed", "params": {"status": {"type": "idle"}}}) == [
        ("thread_status", {"status": {"type": "idle"}})]
    for dropped in [{"id": 3, "result": {}}, {"id": 4, "error": {"code": -32600, "message": "x"}},
                    {"method": "account/rateLimits/updated", "params": {}}, {"method": "no/such/method"},
                    {"method": "item/commandExecution/outputDelta", "params": {"delta": "x"}},
                    {"method": "item/tool/requestUserInput", "id": 9, "params": {}}]:
        assert n.feed(dropped) == []


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(["method", "params", "msg", "item", "id", "turn", "type",
                                                       "text", "delta", "tokenUsage", "status", "changes"])
                                      | st.text(max_size=6), inner, max_size=5),
                    max_leaves=20))
def test_never_raises(payload: Any) -> None:
    n = CodexNormalizer(strict=True)  # a bug raises here instead of becoming a normalizer_error event
    assert isinstance(n.feed(payload), list)
    for method in ("turn/completed", "item/completed", "codex/event/exec_command_end", "error",
                   "item/commandExecution/requestApproval", "thread/tokenUsage/updated"):
        assert isinstance(n.feed({"method": method, "params": payload}), list)
        assert isinstance(n.feed({"method": method, "params": {"msg": payload, "item": payload}}), list)
