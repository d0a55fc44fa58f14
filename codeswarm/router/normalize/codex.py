"""Codex app-server (and mock) dialect -> v1 events (PROTOCOL.md 5.8).

Pure and per node. Codex has two notification families for the same facts: the legacy
`codex/event/<type>` ({"msg": {...}}, snake_case; the mock speaks it) and the v2 methods
(`item/*`, `turn/*`, camelCase; the only family the pinned 0.169.0 sends). A server may send both,
so every stream is deduplicated across families without dropping legitimate repeats:

- deltas: the n-th delta of an item is emitted by whichever family delivers it first;
- complete messages (assistant, reasoning): counted per text the same way;
- commands / file changes: once per call id (and status);
- usage: identical totals are not repeated within a turn.

An assistant message without a known `phase` (v2 models often send none) is held until the next
content event, so `final_answer` can say whether it was the turn's last message.
"""

from __future__ import annotations

from typing import Any

from codeswarm.router.normalize.base import NormalizedEvent, normalizer_error, usage_event

LEGACY = "codex/event/"
# Decision lists offered when a request shape does not advertise its own (PROTOCOL.md 4.4).
V2_DECISIONS = ["accept", "acceptForSession", "decline", "cancel"]
NATIVE_DECISIONS = ["approved", "approved_for_session", "denied", "abort"]
_CAMEL_USAGE = {
    "totalTokens": "total_tokens",
    "inputTokens": "input_tokens",
    "cachedInputTokens": "cached_input_tokens",
    "outputTokens": "output_tokens",
    "reasoningOutputTokens": "reasoning_output_tokens",
    "cacheWriteInputTokens": "cache_write_input_tokens",
}
_STATUS = {"inProgress": "in_progress", "in_progress": "in_progress", "completed": "completed",
           "failed": "failed", "declined": "declined"}
_QUIET = {"usage", "thread_status"}  # events that do not end a pending assistant message
_MAX_KEYS = 4096  # bound per-turn dedup state for servers that never send turn/started


# Delta methods -> (stream, family): the bulk of a turn's lines, taken by CodexNormalizer._fast_delta.
_DELTAS = {
    LEGACY + "agent_message_content_delta": ("assistant_delta", "legacy"),
    LEGACY + "agent_message_delta": ("assistant_delta", "legacy"),
    LEGACY + "agent_reasoning_delta": ("reasoning_delta", "legacy"),
    LEGACY + "agent_reasoning_raw_content_delta": ("reasoning_raw", "legacy"),
    "item/agentMessage/delta": ("assistant_delta", "v2"),
    "item/reasoning/summaryTextDelta": ("reasoning_delta", "v2"),
    "item/reasoning/textDelta": ("reasoning_raw", "v2"),
}


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _s(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _kind(item_type: Any) -> str:
    """Normalize item type spellings: agentMessage / AgentMessage / agent_message -> agentmessage."""
    return item_type.replace("_", "").lower() if isinstance(item_type, str) else ""


def _duration(value: Any, ms: Any = None) -> dict[str, int] | None:
    if isinstance(value, dict) and isinstance(value.get("secs"), int):
        nanos = value.get("nanos")
        return {"secs": value["secs"], "nanos": nanos if isinstance(nanos, int) else 0}
    if isinstance(ms, (int, float)) and not isinstance(ms, bool) and ms >= 0:
        total_ns = int(round(ms * 1_000_000))
        return {"secs": total_ns // 1_000_000_000, "nanos": total_ns % 1_000_000_000}
    return None


def _changes(raw: Any) -> list[dict[str, Any]]:
    """v2 list [{path, kind:{type}, diff}] or legacy map {path: {add|delete|update: {...}}}."""
    out: list[dict[str, Any]] = []
    if isinstance(raw, list):
        for c in raw:
            c = _d(c)
            kind = c.get("kind")
            kind = _d(kind).get("type") if isinstance(kind, dict) else kind
            out.append({"path": _s(c.get("path")), "kind": _s(kind), "diff": _s(c.get("diff"))})
    elif isinstance(raw, dict):
        for path, c in raw.items():
            c = _d(c)
            kind = _s(c.get("type"))
            body = c
            for k in ("add", "delete", "update"):
                if k in c:
                    kind, body = k, _d(c[k])
            diff = _s(body.get("unified_diff")) or _s(body.get("diff")) or _s(body.get("content"))
            out.append({"path": str(path), "kind": kind, "diff": diff})
    return out


class CodexNormalizer:
    runtime = "codex"
    strict = False

    def __init__(self, *, strict: bool | None = None) -> None:
        if strict is not None:
            self.strict = strict
        self.turn_id: str | None = None
        self.model_name: str | None = None
        self._file_changes: dict[str, list[dict[str, Any]]] = {}
        self._commands: dict[str, dict[str, Any]] = {}
        self._in_turn = False
        self._held_status: list[NormalizedEvent] = []  # `active` before the turn started
        self._held_after: list[NormalizedEvent] = []  # `idle` etc. before the turn completed
        self._reset_turn()

    def _reset_turn(self) -> None:
        self._seen: dict[tuple[str, str, str], int] = {}  # (stream, family, key) -> count seen
        self._emitted: dict[tuple[str, str], int] = {}  # (stream, key) -> count emitted
        self._done: set[tuple[str, str]] = set()  # ("started"|"completed"|status, call_id)
        self._usage_totals: tuple[Any, ...] | None = None
        self._thread_hint: str | None = None  # the agent thread of the latest message (usage thread_id)
        self._pending: dict[str, Any] | None = None
        self._assistants = 0
        self._errors = 0
        self._cur_item: dict[str, str] = {}  # "agentmessage"/"reasoning" -> current item id
        self._deferred: dict[str, tuple[Any, Any, str | None]] = {}  # call_id -> command_started args

    # -- public --------------------------------------------------------------------------------

    def feed(self, payload: Any) -> list[NormalizedEvent]:
        try:
            return self._feed(payload)
        except Exception as exc:  # noqa: BLE001 - a bug here is reported as an event, never drops the line
            if self.strict:
                raise
            return [normalizer_error(self.runtime, exc, payload)]

    # -- dispatch ------------------------------------------------------------------------------

    def _feed(self, msg: Any) -> list[NormalizedEvent]:
        if not isinstance(msg, dict):
            return []
        method = msg.get("method")
        if not isinstance(method, str):
            return []  # responses to the worker's own requests carry no events
        params = _d(msg.get("params"))
        if len(self._seen) > _MAX_KEYS or len(self._done) > _MAX_KEYS:
            self._seen.clear()
            self._emitted.clear()
            self._done.clear()
        held = self._pending
        fast = _DELTAS.get(method)
        if fast is not None and held is None and not self._held_status and not self._held_after:
            return self._fast_delta(fast, params)  # most lines of a turn: same result, less dispatch
        if method.startswith(LEGACY):
            self._thread_hint = _s(params.get("conversationId")) or self._thread_hint
            out = self._legacy(method[len(LEGACY):], _d(params.get("msg")))
        else:
            # Both families report the same model call: remember the thread for the legacy one.
            self._thread_hint = _s(params.get("threadId")) or _s(_d(params.get("thread")).get("id")) or self._thread_hint
            out = self._v2(method, params, msg.get("id"))
        if held is not None and self._pending is held:
            out = self._flush_before_content(out)
        return self._order_status(method, out)

    def _fast_delta(self, stream_family: tuple[str, str], params: dict[str, Any]) -> list[NormalizedEvent]:
        """A delta when nothing is held: what _legacy/_v2 -> _delta -> _order_status give, inlined."""
        stream, family = stream_family
        if family == "legacy":
            hint = params.get("conversationId")
            m = params.get("msg")
            if not isinstance(m, dict):
                m = {}
            item_id, delta = m.get("item_id"), m.get("delta")
        else:
            hint = params.get("threadId")
            if not (isinstance(hint, str) and hint):
                hint = _s(_d(params.get("thread")).get("id"))
            item_id, delta = params.get("itemId"), params.get("delta")
        if isinstance(hint, str) and hint:
            self._thread_hint = hint
        if not isinstance(delta, str) or delta == "":
            return []
        key = item_id if isinstance(item_id, str) and item_id else \
            self._cur_item.get("agentmessage" if stream == "assistant_delta" else "reasoning", "")
        seen_key = (stream, family, key)
        n = self._seen.get(seen_key, 0) + 1
        self._seen[seen_key] = n
        emitted_key = (stream, key)
        if n <= self._emitted.get(emitted_key, 0):
            return []
        self._emitted[emitted_key] = n
        return [("reasoning_delta" if stream == "reasoning_raw" else stream, {"content": delta})]

    def _order_status(self, method: str, out: list[NormalizedEvent]) -> list[NormalizedEvent]:
        """codex reports the thread `active` just before `turn/started` and `idle` just before
        `turn/completed`; emit them after turn_started / after turn_complete, so that an injection's
        events begin with turn_started and its content ends with turn_complete (as with the mock)."""
        if method == "thread/status/changed" and len(out) == 1:
            kind = _d(out[0][1].get("status")).get("type")
            if not self._in_turn and kind == "active":
                self._held_status = out
                return []
            if self._in_turn and kind != "active":
                self._held_after += out
                return []
        if self._held_status and out:
            held, self._held_status = self._held_status, []
            at = 1 if out[0][0] == "turn_started" else 0
            out = out[:at] + held + out[at:]
        if self._held_after and out:
            held, self._held_after = self._held_after, []
            done = next((i for i, e in enumerate(out) if e[0] == "turn_complete"), -1)
            out = out[:done + 1] + held + out[done + 1:]
        return out

    def _flush_before_content(self, out: list[NormalizedEvent]) -> list[NormalizedEvent]:
        """Emit the held assistant message (not final) before the first event that proves it was not last."""
        first = next((i for i, e in enumerate(out) if e[0] not in _QUIET), None)
        if first is None or self._pending is None:
            return out
        held, self._pending = self._pending, None
        return out[:first] + [("assistant", {**held, "final_answer": False})] + out[first:]

    def _legacy(self, kind: str, m: dict[str, Any]) -> list[NormalizedEvent]:
        tid = _s(m.get("turn_id")) or self.turn_id
        if kind in ("agent_message_content_delta", "agent_message_delta"):
            return self._delta("assistant_delta", "legacy", m.get("item_id"), m.get("delta"))
        if kind == "agent_reasoning_delta":
            return self._delta("reasoning_delta", "legacy", m.get("item_id"), m.get("delta"))
        if kind == "agent_reasoning_raw_content_delta":
            return self._delta("reasoning_raw", "legacy", m.get("item_id"), m.get("delta"))
        if kind == "agent_message":
            return self._assistant("legacy", m.get("message"), m.get("phase"))
        if kind == "agent_reasoning":
            return self._reasoning("legacy", m.get("text"))
        if kind == "item_started":
            return self._item(_d(m.get("item")), "legacy", started=True, turn_id=tid)
        if kind == "item_completed":
            return self._item(_d(m.get("item")), "legacy", started=False, turn_id=tid)
        if kind == "exec_command_begin":
            return self._cmd_started(m.get("call_id"), m.get("command"), m.get("cwd"), tid)
        if kind == "exec_command_end":
            out = _s(m.get("stdout"))
            if out is None:
                out = _s(m.get("aggregated_output"))
            code = m.get("exit_code")
            status = m.get("status") or ("completed" if code == 0 else "failed")
            return self._cmd_completed(m.get("call_id"), m.get("command"), m.get("cwd"), out,
                                       _s(m.get("stderr")), code, _duration(m.get("duration")), status)
        if kind == "patch_apply_begin":
            return self._file_change(m.get("call_id"), _changes(m.get("changes")), "in_progress")
        if kind == "patch_apply_end":
            status = m.get("status") or ("completed" if m.get("success") else "failed")
            return self._file_change(m.get("call_id"), _changes(m.get("changes")), status)
        if kind == "exec_approval_request":
            return self._approval("command", m.get("call_id"), m.get("command"), m.get("cwd"),
                                  m.get("reason"), m.get("proposed_execpolicy_amendment"),
                                  m.get("available_decisions") or NATIVE_DECISIONS, tid, None)
        if kind == "apply_patch_approval_request":
            return self._approval("file_change", m.get("call_id"), {"changes": _changes(m.get("changes"))},
                                  None, m.get("reason"), None, NATIVE_DECISIONS, tid, None)
        if kind == "token_count":
            info = _d(m.get("info"))
            if not info:
                return []
            return self._usage("codex/event/token_count", _d(info.get("total_token_usage")),
                               _d(info.get("last_token_usage")), info.get("model_context_window"), self._thread_hint)
        if kind == "task_started":
            return [("task_started", {})]
        if kind == "task_complete":
            return [("task_complete", {"last_agent_message": _s(m.get("last_agent_message"))})]
        if kind == "session_configured":
            self.model_name = _s(m.get("model")) or self.model_name
            return []
        if kind in ("error", "stream_error"):
            error_info = m.get("codex_error_info", m.get("codexErrorInfo"))
            return self._error("legacy", m.get("message"), error_info if error_info is not None else kind)
        return []

    def _v2(self, method: str, p: dict[str, Any], rpc_id: Any) -> list[NormalizedEvent]:
        tid = _s(p.get("turnId")) or self.turn_id
        if method == "turn/started":
            turn_id = _s(_d(p.get("turn")).get("id")) or _s(p.get("turnId"))
            if turn_id != self.turn_id or turn_id is None:
                held = self._pending
                self._reset_turn()
                self._pending = held  # flushed (final=False) by _flush_before_content
            self.turn_id = turn_id
            self._in_turn = True
            return [("turn_started", {"turn_id": turn_id})]
        if method == "turn/completed":
            self._in_turn = False
            return self._turn_completed(_d(p.get("turn")), p)
        if method == "item/commandExecution/outputDelta":
            return self._start_deferred(p.get("itemId"))  # the output itself: see item/completed (P10)
        if method == "item/agentMessage/delta":
            return self._delta("assistant_delta", "v2", p.get("itemId"), p.get("delta"))
        if method == "item/reasoning/summaryTextDelta":
            return self._delta("reasoning_delta", "v2", p.get("itemId"), p.get("delta"))
        if method == "item/reasoning/textDelta":
            return self._delta("reasoning_raw", "v2", p.get("itemId"), p.get("delta"))
        if method in ("item/started", "item/completed"):
            return self._item(_d(p.get("item")), "v2", started=method == "item/started", turn_id=tid)
        if method == "item/commandExecution/requestApproval":
            call_id = _s(p.get("approvalId")) or p.get("itemId")
            decisions = _with_decline(p.get("availableDecisions") or V2_DECISIONS)
            return self._approval("command", call_id, p.get("command"), p.get("cwd"), p.get("reason"),
                                  p.get("proposedExecpolicyAmendment"), decisions, tid, rpc_id)
        if method == "item/fileChange/requestApproval":
            changes = self._file_changes.get(str(p.get("itemId")), [])
            return self._approval("file_change", p.get("itemId"), {"changes": changes}, None,
                                  p.get("reason"), None, V2_DECISIONS, tid, rpc_id)
        if method == "execCommandApproval":
            return self._approval("command", p.get("callId"), p.get("command"), p.get("cwd"),
                                  p.get("reason"), None, NATIVE_DECISIONS, tid, rpc_id)
        if method == "applyPatchApproval":
            return self._approval("file_change", p.get("callId"), {"changes": _changes(p.get("fileChanges"))},
                                  None, p.get("reason"), None, NATIVE_DECISIONS, tid, rpc_id)
        if method == "thread/tokenUsage/updated":
            tu = _d(p.get("tokenUsage"))
            usage = self._usage("thread/tokenUsage/updated", _snake(tu.get("total")), _snake(tu.get("last")),
                                tu.get("modelContextWindow"), self._thread_hint)
            if usage and _s(p.get("turnId")):  # names its turn: usage sent after turn/completed finds it
                usage[0][1]["turn_id"] = _s(p.get("turnId"))
            return usage
        if method == "thread/status/changed":
            status = p.get("status")
            status = {"type": status} if isinstance(status, str) else status
            return [("thread_status", {"status": status})] if isinstance(status, dict) else []
        if method == "thread/started":
            self.model_name = _s(_d(p.get("thread")).get("model")) or self.model_name
            return []
        if method == "error":
            err = _d(p.get("error"))
            return self._error("v2", err.get("message"), err.get("codexErrorInfo"))
        return []

    # -- builders ------------------------------------------------------------------------------

    def _count(self, stream: str, family: str, key: str) -> bool:
        """Record one occurrence; True when it is new (not already delivered by the other family)."""
        n = self._seen.get((stream, family, key), 0) + 1
        self._seen[(stream, family, key)] = n
        if n > self._emitted.get((stream, key), 0):
            self._emitted[(stream, key)] = n
            return True
        return False

    def _delta(self, stream: str, family: str, item_id: Any, delta: Any) -> list[NormalizedEvent]:
        if not isinstance(delta, str) or delta == "":
            return []
        slot = "agentmessage" if stream == "assistant_delta" else "reasoning"
        key = _s(item_id) or self._cur_item.get(slot, "")
        if not self._count(stream, family, key):
            return []
        event = "reasoning_delta" if stream == "reasoning_raw" else stream
        return [(event, {"content": delta})]

    def _assistant(self, family: str, text: Any, phase: Any) -> list[NormalizedEvent]:
        if not isinstance(text, str) or not self._count("assistant", family, text):
            return []
        self._assistants += 1
        out: list[NormalizedEvent] = []
        if self._pending is not None:  # a second message: the held one was not the last
            held, self._pending = self._pending, None
            out.append(("assistant", {**held, "final_answer": False}))
        if phase is None:
            self._pending = {"content": text, "final_answer": False}
            return out
        return out + [("assistant", {"content": text, "final_answer": phase == "final_answer"})]

    def _reasoning(self, family: str, text: Any) -> list[NormalizedEvent]:
        if not isinstance(text, str) or not text or not self._count("reasoning", family, text):
            return []
        return [("reasoning", {"content": text})]

    def _item(self, item: dict[str, Any], family: str, started: bool, turn_id: str | None) -> list[NormalizedEvent]:
        kind = _kind(item.get("type"))
        item_id = _s(item.get("id")) or ""
        if kind in ("agentmessage", "reasoning") and started:
            self._cur_item[kind] = item_id
            return []
        if kind == "agentmessage":
            text = item.get("text")
            if not isinstance(text, str):
                parts = [_d(c).get("text") for c in item.get("content") or []]
                text = "".join(t for t in parts if isinstance(t, str))
            return self._assistant(family, text, item.get("phase"))
        if kind == "reasoning":
            parts = item.get("summary") or item.get("summary_text") or []
            if not parts:
                parts = item.get("content") or item.get("raw_content") or []
            out: list[NormalizedEvent] = []
            for part in parts:
                out += self._reasoning(family, part if isinstance(part, str) else _d(part).get("text"))
            return out
        if kind == "commandexecution":
            if started and "processId" in item and item.get("processId") is None:
                # No process yet: codex announces a command before asking approval for it (the
                # approval request follows). It starts when output flows or the item completes,
                # and never if declined, as with the legacy exec_command_begin.
                self._deferred[item_id] = (item.get("command"), item.get("cwd"), turn_id)
                return []
            if started:
                return self._cmd_started(item_id, item.get("command"), item.get("cwd"), turn_id)
            out = self._start_deferred(item_id) if item.get("status") != "declined" else []
            self._deferred.pop(item_id, None)
            return out + self._cmd_completed(item_id, item.get("command"), item.get("cwd"),
                                             _s(item.get("aggregatedOutput")), "", item.get("exitCode"),
                                             _duration(None, item.get("durationMs")), item.get("status"))
        if kind == "filechange":
            changes = _changes(item.get("changes"))
            self._file_changes[item_id] = changes
            if len(self._file_changes) > _MAX_KEYS:
                self._file_changes.pop(next(iter(self._file_changes)))
            return self._file_change(item_id, changes, item.get("status"))
        return []

    def _start_deferred(self, item_id: Any) -> list[NormalizedEvent]:
        held = self._deferred.pop(str(item_id), None) if item_id is not None else None
        return self._cmd_started(item_id, *held) if held else []

    def _cmd_started(self, call_id: Any, command: Any, cwd: Any, turn_id: str | None) -> list[NormalizedEvent]:
        call_id = str(call_id) if call_id is not None else None
        if call_id is not None:
            if ("started", call_id) in self._done:
                return []
            self._done.add(("started", call_id))
            self._commands[call_id] = {"command": command, "cwd": cwd}
            if len(self._commands) > _MAX_KEYS:
                self._commands.pop(next(iter(self._commands)))
        return [("command_started", {"call_id": call_id, "command": command, "cwd": _s(cwd), "turn_id": turn_id})]

    def _cmd_completed(self, call_id: Any, command: Any, cwd: Any, stdout: str | None, stderr: str | None,
                       exit_code: Any, duration: dict[str, int] | None, status: Any) -> list[NormalizedEvent]:
        call_id = str(call_id) if call_id is not None else None
        if call_id is not None:
            if ("completed", call_id) in self._done:
                return []
            self._done.add(("completed", call_id))
            known = self._commands.pop(call_id, {})
            command = command if command is not None else known.get("command")
            cwd = cwd if cwd is not None else known.get("cwd")
        code = exit_code if isinstance(exit_code, int) and not isinstance(exit_code, bool) else None
        status = _STATUS.get(status) if isinstance(status, str) else None
        if status is None or status == "in_progress":
            status = "completed" if code in (0, None) else "failed"
        return [("command_completed", {"call_id": call_id, "command": command, "cwd": _s(cwd),
                                       "stdout": stdout or "", "stderr": stderr or "", "exit_code": code,
                                       "duration": duration, "status": status})]

    def _file_change(self, call_id: Any, changes: list[dict[str, Any]], status: Any) -> list[NormalizedEvent]:
        call_id = str(call_id) if call_id is not None else None
        status = _STATUS.get(status, "in_progress") if isinstance(status, str) else "in_progress"
        if call_id is not None:
            if (status, call_id) in self._done:
                return []
            self._done.add((status, call_id))
        return [("file_change", {"call_id": call_id, "changes": changes, "status": status})]

    def _approval(self, kind: str, call_id: Any, command: Any, cwd: Any, reason: Any, amendment: Any,
                  decisions: Any, turn_id: str | None, rpc_id: Any) -> list[NormalizedEvent]:
        if call_id is None:
            return []
        amend = amendment if isinstance(amendment, list) else None
        return [("exec_approval_required", {
            "call_id": str(call_id), "kind": kind, "command": command, "cwd": _s(cwd), "reason": _s(reason),
            "proposed_execpolicy_amendment": amend,
            "available_decisions": list(decisions) if isinstance(decisions, list) else list(V2_DECISIONS),
            "turn_id": turn_id,
            # 0 is a valid server request id (P3): keep it, only non-ids become None.
            "rpc_id": rpc_id if isinstance(rpc_id, (int, str)) and not isinstance(rpc_id, bool) else None,
        })]

    def _usage(self, source: str, total: dict[str, Any], last: dict[str, Any], window: Any,
               thread_id: str | None) -> list[NormalizedEvent]:
        if not total and not last:
            return []
        event = usage_event(source, total, last, window, self.model_name, thread_id)
        # The thread is part of the key: a fresh thread may repeat the last thread's totals.
        totals = tuple(event[1].get(k) for k in ("thread_id", "total_tokens", "input_tokens", "cached_input_tokens",
                                                 "output_tokens", "reasoning_output_tokens"))
        if totals == self._usage_totals:
            return []
        self._usage_totals = totals
        return [event]

    def _error(self, family: str, message: Any, code: Any) -> list[NormalizedEvent]:
        text = message if isinstance(message, str) and message else "codex error"
        if not self._count("error", family, text):
            return []  # the same error from both families
        self._errors += 1
        return [("agent_error", {"message": text, "error_code": code, "fatal": False})]

    def _turn_completed(self, turn: dict[str, Any], p: dict[str, Any]) -> list[NormalizedEvent]:
        turn_id = _s(turn.get("id")) or _s(p.get("turnId")) or self.turn_id
        error = _d(turn.get("error"))
        status = turn.get("status")
        if status not in ("completed", "interrupted", "failed"):
            status = "failed" if error else "completed"
        out: list[NormalizedEvent] = []
        if self._assistants == 0 and self._pending is None:
            # Fallback: the turn summary carries agent messages we never saw streamed.
            for item in turn.get("items") or []:
                if _kind(_d(item).get("type")) == "agentmessage":
                    out += self._item(_d(item), "summary", started=False, turn_id=turn_id)
        if self._pending is not None:
            out.append(("assistant", {**self._pending, "final_answer": True}))
            self._pending = None
        if status == "failed" and self._errors == 0:
            out += self._error("turn", error.get("message") or "turn failed", error.get("codexErrorInfo"))
        out.append(("turn_complete", {"turn_id": turn_id, "status": status}))
        return out


def _with_decline(decisions: Any) -> Any:
    """codex 0.169.0 honours "decline" (deny, the turn goes on) without listing it: offer it, so
    that a client's decline is not turned into "cancel", which would end the whole turn."""
    if isinstance(decisions, list) and "decline" not in decisions and "cancel" in decisions:
        at = decisions.index("cancel")
        return decisions[:at] + ["decline"] + decisions[at:]
    return decisions


def _snake(counters: Any) -> dict[str, Any]:
    return {_CAMEL_USAGE.get(k, k): v for k, v in _d(counters).items()}
