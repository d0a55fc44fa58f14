"""Claude Code stream-json lines -> v1 events (PROTOCOL.md 5.8, the Claude table).

Pure and per node. Claude prints one JSON object per line (`claude -p --output-format stream-json
--verbose --include-partial-messages`); the worker adds a few lines of its own, all typed
`codeswarm_*` or `permission_request`:

- `{"type": "codeswarm_turn_start"}` before each turn (Claude has no turn-start signal),
- `{"type": "permission_request", "tool_use_id", "tool_name", "input", ...}` from the permission hook,
- `{"type": "codeswarm_turn_end", "status", "message", ...}` when the process ended without a
  `result` line (crash, kill, interrupt), so the turn still completes.

Assistant text blocks are held back until the next significant line: only then do we know whether
the block is the turn's final answer (the next line is the `result`).
"""

from __future__ import annotations

from typing import Any

from codeswarm.router.normalize.base import NormalizedEvent, normalizer_error, usage_event

FILE_TOOLS = frozenset({"Edit", "Write", "MultiEdit"})
USAGE_SOURCE = "claude/result"
# Lines that never release a held assistant block: with partial messages, the stream events that
# close a message arrive between the complete `assistant` line and the `result`, so they must not
# decide the block's final_answer (text deltas of a NEW message do release it, see _on_stream_event).
_NEUTRAL_TYPES = frozenset({"system", "stream_event", "rate_limit_event", "keep_alive"})
_TURN_CONTENT_TYPES = frozenset({"assistant", "user", "stream_event", "permission_request", "result"})
_TAIL_EVENTS = frozenset({"content_block_stop", "message_delta", "message_stop", "ping"})
_COUNTERS = ("total_tokens", "input_tokens", "cached_input_tokens", "output_tokens", "reasoning_output_tokens",
             "cache_write_input_tokens", "cache_write_1h_input_tokens")


class ClaudeNormalizer:
    runtime = "claude"
    strict = False

    def __init__(self, *, strict: bool | None = None) -> None:
        if strict is not None:
            self.strict = strict
        self.model: str | None = None
        self.session_id: str | None = None
        self.cwd: str | None = None
        self.context_window: int | None = None
        self._totals: dict[str, int] = {k: 0 for k in _COUNTERS}
        self._reset_turn()
        self._in_turn = False

    def _reset_turn(self) -> None:
        self._pending: str | None = None  # assistant text waiting for the next line
        self._turn_had_text = False
        self._tools: dict[str, tuple[str, dict[str, Any]]] = {}  # tool_use_id -> (tool name, input)
        self._asked: set[str] = set()  # tool_use_ids with a permission_request

    # ------------------------------------------------------------------ entry point

    def feed(self, payload: Any) -> list[NormalizedEvent]:
        out: list[NormalizedEvent] = []
        if not isinstance(payload, dict):
            return out
        try:
            self._feed(payload, out)
        except Exception as exc:  # noqa: BLE001 - a bug here is reported as an event, never drops the line
            if self.strict:
                raise
            out.append(normalizer_error(self.runtime, exc, payload))
        return out

    def _feed(self, line: dict[str, Any], out: list[NormalizedEvent]) -> None:
        kind = line.get("type")
        if kind is None and line.get("method") == "turn/completed":
            # The worker's generic fallback when run_turn raised (written in the Codex dialect).
            turn = (line.get("params") or {}).get("turn") or {}
            kind, line = "codeswarm_turn_end", {"status": turn.get("status"), "message": "the worker's turn failed"}
        if not isinstance(kind, str):
            return
        if kind == "codeswarm_turn_start":
            self._flush(out, final=False)
            self._reset_turn()
            self._start_turn(out)
            return
        if kind not in _NEUTRAL_TYPES:
            self._flush(out, final=kind == "result")
        if kind == "system":
            if line.get("subtype") == "init":
                self._on_init(line)
                self._start_turn(out)
            return
        if kind in _TURN_CONTENT_TYPES and not _is_message_tail(line):
            self._start_turn(out)
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, line, out)

    def _start_turn(self, out: list[NormalizedEvent]) -> None:
        # The router core keeps one turn_started per injection; repeating it is harmless.
        if not self._in_turn:
            self._in_turn = True
            out.append(("turn_started", {"turn_id": None}))

    def _flush(self, out: list[NormalizedEvent], *, final: bool) -> None:
        if self._pending is not None:
            out.append(("assistant", {"content": self._pending, "final_answer": final}))
            self._pending = None

    # ------------------------------------------------------------------ line kinds

    def _on_init(self, line: dict[str, Any]) -> None:
        if isinstance(line.get("model"), str):
            self.model = line["model"]
        if isinstance(line.get("session_id"), str):
            self.session_id = line["session_id"]
        if isinstance(line.get("cwd"), str):
            self.cwd = line["cwd"]

    def _on_stream_event(self, line: dict[str, Any], out: list[NormalizedEvent]) -> None:
        event = line.get("event")
        if not isinstance(event, dict) or event.get("type") != "content_block_delta":
            return
        delta = event.get("delta")
        if not isinstance(delta, dict):
            return
        if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
            self._flush(out, final=False)  # a new message is streaming: the held block was not last
            out.append(("assistant_delta", {"content": delta["text"]}))
        elif delta.get("type") == "thinking_delta" and isinstance(delta.get("thinking"), str):
            self._flush(out, final=False)
            out.append(("reasoning_delta", {"content": delta["thinking"]}))

    def _on_assistant(self, line: dict[str, Any], out: list[NormalizedEvent]) -> None:
        if line.get("error"):
            return  # a synthetic message repeating an API error; the `result` reports it as agent_error
        # Sub-agent (Task tool) output is never the node's final answer.
        sub_agent = line.get("parent_tool_use_id") is not None
        for block in _blocks(line):
            btype = block.get("type")
            if btype == "thinking" and isinstance(block.get("thinking"), str):
                out.append(("reasoning", {"content": block["thinking"]}))
            elif btype == "text" and isinstance(block.get("text"), str):
                self._flush(out, final=False)
                if sub_agent:
                    out.append(("assistant", {"content": block["text"], "final_answer": False}))
                else:
                    self._pending = block["text"]
                    self._turn_had_text = True
            elif btype == "tool_use":
                self._on_tool_use(block, out)

    def _on_tool_use(self, block: dict[str, Any], out: list[NormalizedEvent]) -> None:
        call_id, name = block.get("id"), block.get("name")
        if not isinstance(call_id, str) or not isinstance(name, str):
            return
        raw_args = block.get("input")
        args: dict[str, Any] = raw_args if isinstance(raw_args, dict) else {}
        self._tools[call_id] = (name, args)
        if name == "Bash":
            out.append(("command_started", {"call_id": call_id, "command": _command_of(args), "cwd": self.cwd}))
        elif name in FILE_TOOLS:
            out.append(("file_change", {"call_id": call_id, "changes": _changes(name, args, None),
                                        "status": "in_progress"}))

    def _on_user(self, line: dict[str, Any], out: list[NormalizedEvent]) -> None:
        extra = line.get("tool_use_result")
        for block in _blocks(line):
            if block.get("type") != "tool_result":
                continue
            call_id = block.get("tool_use_id")
            if not isinstance(call_id, str):
                continue
            known = self._tools.pop(call_id, None)
            if known is None:
                continue
            name, args = known
            text = _result_text(block.get("content"))
            status = "completed"
            if block.get("is_error") is True:
                # The worker's hook words every refusal with "codeswarm"; a failing command does not.
                status = "declined" if call_id in self._asked and "codeswarm" in text else "failed"
            self._emit_tool_end(out, call_id, name, args, text, status, extra)

    def _emit_tool_end(self, out: list[NormalizedEvent], call_id: str, name: str, args: dict[str, Any],
                       text: str, status: str, extra: Any = None) -> None:
        if name == "Bash":
            out.append(("command_completed", {
                "call_id": call_id, "command": _command_of(args), "cwd": self.cwd, "stdout": text, "stderr": "",
                "exit_code": None, "duration": None, "status": status,
            }))
        elif name in FILE_TOOLS:
            info = extra if isinstance(extra, dict) and status == "completed" else None
            out.append(("file_change", {"call_id": call_id, "changes": _changes(name, args, info), "status": status}))

    def _on_permission_request(self, line: dict[str, Any], out: list[NormalizedEvent]) -> None:
        call_id = line.get("tool_use_id")
        name = line.get("tool_name")
        raw_args = line.get("input")
        args: dict[str, Any] = raw_args if isinstance(raw_args, dict) else {}
        if not isinstance(call_id, str) or not call_id:
            return
        self._asked.add(call_id)
        command: Any
        if name == "Bash":
            kind, command = "command", _command_of(args)
        else:
            kind, command = "tool", {"tool_name": name, "input": args}
        out.append(("exec_approval_required", {
            "call_id": call_id, "kind": kind, "command": command,
            # Claude's Bash input carries a one-line description of the command: the best reason we have.
            "reason": next((r for r in (line.get("reason"), args.get("description")) if isinstance(r, str) and r),
                           None),
            "cwd": line.get("cwd") if isinstance(line.get("cwd"), str) else self.cwd,
            "proposed_execpolicy_amendment": None,
            "available_decisions": ["accept", "cancel"],
        }))

    def _on_result(self, line: dict[str, Any], out: list[NormalizedEvent]) -> None:
        failed = line.get("is_error") is True
        text = line.get("result") if isinstance(line.get("result"), str) else None
        if failed:
            out.append(("agent_error", {"message": _error_message(line), "error_code": _error_code(line),
                                        "fatal": False}))
        elif text and not self._turn_had_text:
            out.append(("assistant", {"content": text, "final_answer": True}))
        usage = self._usage(line)
        if usage is not None:
            out.append(usage)
        out.append(("task_complete", {"last_agent_message": None if failed else text}))
        # `codeswarm_interrupted`: the worker stopped claude (control interrupt) and it still wrote its result
        self._end_turn(out, "interrupted" if line.get("codeswarm_interrupted") is True else
                       "failed" if failed else "completed")

    def _on_turn_end(self, line: dict[str, Any], out: list[NormalizedEvent]) -> None:
        """The worker's marker for a turn whose process ended without a `result` line."""
        if not self._in_turn:
            return
        status = "interrupted" if line.get("status") == "interrupted" else "failed"
        message = line.get("message") if isinstance(line.get("message"), str) else "claude exited without a result"
        if status == "failed":
            out.append(("agent_error", {"message": message, "error_code": line.get("error_code", "process_exited"),
                                        "fatal": False}))
        # Close the tool calls the dead process left open; a pending approval means it was refused.
        for call_id, (name, args) in list(self._tools.items()):
            self._emit_tool_end(out, call_id, name, args, "", "declined" if call_id in self._asked else "failed")
        self._end_turn(out, status)

    def _end_turn(self, out: list[NormalizedEvent], status: str) -> None:
        out.append(("turn_complete", {"turn_id": None, "status": status}))
        self._in_turn = False
        self._reset_turn()

    # ------------------------------------------------------------------ usage

    def _usage(self, line: dict[str, Any]) -> NormalizedEvent | None:
        raw = line.get("usage")
        if not isinstance(raw, dict):
            return None
        fresh, cache_new, cache_read, output = (
            _count(raw.get(k)) for k in
            ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")
        )
        if fresh is None and output is None:
            return None
        inp = (fresh or 0) + (cache_new or 0) + (cache_read or 0)
        raw_split = raw.get("cache_creation")
        split: dict[str, Any] = raw_split if isinstance(raw_split, dict) else {}
        write_1h = min(_count(split.get("ephemeral_1h_input_tokens")) or 0, cache_new or 0)
        last = {"input_tokens": inp, "cached_input_tokens": cache_read or 0, "output_tokens": output or 0,
                "reasoning_output_tokens": 0, "total_tokens": inp + (output or 0),
                "cache_write_input_tokens": cache_new or 0, "cache_write_1h_input_tokens": write_1h}
        # One `result` per turn, counting that turn only: the session is the sum over turns.
        for k in _COUNTERS:
            self._totals[k] += last[k]
        model_name = self.model
        model_usage = line.get("modelUsage")
        if isinstance(model_usage, dict):
            for name, per_model in model_usage.items():
                if isinstance(per_model, dict) and _count(per_model.get("contextWindow")):
                    self.context_window = per_model["contextWindow"]
                    model_name = model_name or name
        event = usage_event(USAGE_SOURCE, dict(self._totals), last, self.context_window, model_name)
        cost = line.get("total_cost_usd")
        if isinstance(cost, (int, float)) and not isinstance(cost, bool) and cost >= 0:
            # Claude's own figure for this turn; the router prices the tokens and uses this only
            # for a model without a price (spend/meter.py).
            event[1]["reported_cost_usd"] = float(cost)
        return event


_HANDLERS = {
    "stream_event": ClaudeNormalizer._on_stream_event,
    "assistant": ClaudeNormalizer._on_assistant,
    "user": ClaudeNormalizer._on_user,
    "permission_request": ClaudeNormalizer._on_permission_request,
    "result": ClaudeNormalizer._on_result,
    "codeswarm_turn_end": ClaudeNormalizer._on_turn_end,
}


# ---------------------------------------------------------------------- helpers


def _blocks(line: dict[str, Any]) -> list[dict[str, Any]]:
    message = line.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def _is_message_tail(line: dict[str, Any]) -> bool:
    """Stream events that only close a message; alone they never open a turn."""
    event = line.get("event")
    return line.get("type") == "stream_event" and isinstance(event, dict) and event.get("type") in _TAIL_EVENTS


def _count(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def _command_of(args: dict[str, Any]) -> str:
    cmd = args.get("command")
    return cmd if isinstance(cmd, str) else ""


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(c.get("text", "") for c in content
                       if isinstance(c, dict) and c.get("type") == "text" and isinstance(c.get("text"), str))
    return ""


def _changes(tool: str, args: dict[str, Any], result: dict[str, Any] | None) -> list[dict[str, Any]]:
    path = args.get("file_path")
    if not isinstance(path, str):
        path = result.get("filePath") if result and isinstance(result.get("filePath"), str) else None
    if tool == "Write":
        # Write creates or overwrites; Claude's tool result says which ("create" | "update").
        kind = "add" if (result or {}).get("type") == "create" else "update"
    else:
        kind = "update"
    return [{"path": path, "kind": kind, "diff": _diff(path, result)}]


def _diff(path: str | None, result: dict[str, Any] | None) -> str | None:
    """Build a unified diff from Claude's `structuredPatch` hunks when the tool result has them."""
    hunks = (result or {}).get("structuredPatch")
    if not isinstance(hunks, list) or not hunks:
        return None
    lines = [f"--- a/{path}", f"+++ b/{path}"] if path else []
    for h in hunks:
        if not isinstance(h, dict) or not isinstance(h.get("lines"), list):
            return None
        lines.append(f"@@ -{h.get('oldStart')},{h.get('oldLines')} +{h.get('newStart')},{h.get('newLines')} @@")
        lines.extend(str(x) for x in h["lines"])
    return "\n".join(lines) + "\n"


def _error_message(line: dict[str, Any]) -> str:
    result = line.get("result")
    if isinstance(result, str) and result:
        return result
    errors = line.get("errors")
    if isinstance(errors, list) and errors:
        return "; ".join(str(e) for e in errors)
    return f"claude turn failed ({line.get('subtype') or 'error'})"


def _error_code(line: dict[str, Any]) -> Any:
    if line.get("api_error_status") is not None:
        return line["api_error_status"]
    subtype = line.get("subtype")
    return subtype if isinstance(subtype, str) and subtype != "success" else "claude_error"
