"""A fake OpenAI Responses API (SSE) on loopback for driving the real `codex app-server` offline.

Adapted from ../shared/notes/codex/fake_model_server.py (verified with codex 0.169.0). Codex only
speaks `wire_api = "responses"`, so this implements `POST /v1/responses` with `stream: true`.
What it answers is decided from the request codex sends:

* the last input item is a tool output      -> a final message quoting that output
* the last user message has "RUN: <cmd>"    -> one `exec_command` call (RUN_ESCALATED: asks escalation)
* "PATCH: <file>"                           -> an apply_patch call adding <file>
* "SLOW:"                                   -> 40 deltas, 0.25 s apart
* "FAIL_HTTP:" / "FAIL_STREAM:"             -> HTTP 500 / SSE response.failed
* anything else                             -> "Hello from the fake model. You said: <text>"

Every answer ends with `response.completed` carrying `usage`; `FakeResponses.usages` records
each one so tests can compare the figures codex reports.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DELTA_DELAY = 0.02


def usage(inp: int, out: int) -> dict[str, Any]:
    return {"input_tokens": inp, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": inp + out}


def _text_of(item: dict[str, Any]) -> str:
    return "".join(c.get("text", "") for c in item.get("content") or []
                   if isinstance(c, dict) and c.get("type") in ("input_text", "output_text", "text"))


def _message(resp_id: str, msg_id: str, text: str, use: dict[str, Any]) -> list[dict[str, Any]]:
    words = text.split(" ")
    chunks = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
    events: list[dict[str, Any]] = [
        {"type": "response.output_item.added", "output_index": 0,
         "item": {"type": "message", "id": msg_id, "role": "assistant", "status": "in_progress", "content": []}},
        {"type": "response.content_part.added", "item_id": msg_id, "output_index": 0, "content_index": 0,
         "part": {"type": "output_text", "text": "", "annotations": []}}]
    events += [{"type": "response.output_text.delta", "item_id": msg_id, "output_index": 0, "content_index": 0,
                "delta": ch} for ch in chunks]
    events += [
        {"type": "response.output_text.done", "item_id": msg_id, "output_index": 0, "content_index": 0, "text": text},
        {"type": "response.output_item.done", "output_index": 0,
         "item": {"type": "message", "id": msg_id, "role": "assistant", "status": "completed",
                  "content": [{"type": "output_text", "text": text, "annotations": []}]}},
        {"type": "response.completed", "response": {"id": resp_id, "status": "completed", "usage": use}}]
    return events


class FakeResponses:
    """Run with `with FakeResponses() as fake:`; `fake.base_url` ends in /v1."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []  # summaries of each POST /responses
        self.usages: list[dict[str, Any]] = []  # the `usage` of each completed response, in order
        self.authorizations: set[str] = set()  # Authorization headers seen
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> "FakeResponses":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def provider_params(self) -> dict[str, Any]:
        """Worker params that point codex at this server (config as in the notes, section 6)."""
        return {
            "model": "gpt-5.5",  # a bundled slug: no unknown-model warning, production tool set (P14)
            "model_provider": "fake",
            "model_providers": {"fake": {
                "name": "fake", "base_url": self.base_url, "wire_api": "responses", "env_key": "FAKE_MODEL_API_KEY",
                "request_max_retries": 0, "stream_max_retries": 0, "supports_websockets": False}},
            "codex_config": {"features.shell_snapshot": False},
        }

    def plan(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        n = next(self._counter)
        resp_id = f"resp_fake_{n}"
        items = body.get("input") or []
        tools = [t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)]
        in_tokens = max(1, len(json.dumps(items)) // 4)  # deterministic, non-trivial
        last = items[-1] if items else {}
        last_user = next((i for i in reversed(items) if i.get("type") == "message" and i.get("role") == "user"), None)
        text = _text_of(last_user) if last_user else ""
        events: list[dict[str, Any]] = [{"type": "response.created",
                                         "response": {"id": resp_id, "status": "in_progress"}}]
        fresh = last.get("type") == "message"
        if "FAIL_HTTP:" in text and fresh:
            return [], {"kind": "http_500"}
        if "FAIL_STREAM:" in text and fresh:
            events.append({"type": "response.failed", "response": {"id": resp_id, "status": "failed",
                           "error": {"code": "server_error", "message": "fake model failure"}}})
            return events, {"kind": "response_failed"}
        if last.get("type") in ("function_call_output", "custom_tool_call_output"):
            out = last.get("output")
            out = out if isinstance(out, str) else json.dumps(out)
            use = usage(in_tokens, 12)
            return events + _message(resp_id, f"msg_fake_{n}", f"The command finished. Tool output was: {out[:300]}",
                                     use), {"kind": "final_after_tool", "usage": use}
        if "PATCH:" in text and "apply_patch" in tools:
            fname = text.split("PATCH:", 1)[1].strip().split()[0]
            patch = f"*** Begin Patch\n*** Add File: {fname}\n+hello from the fake model\n*** End Patch\n"
            spec = next(t for t in body["tools"] if t.get("name") == "apply_patch")
            item: dict[str, Any] = (
                {"type": "custom_tool_call", "id": f"ctc_{n}", "call_id": f"call_fake_{n}", "name": "apply_patch",
                 "input": patch, "status": "completed"} if spec.get("type") == "custom" else
                {"type": "function_call", "id": f"fc_{n}", "call_id": f"call_fake_{n}", "name": "apply_patch",
                 "arguments": json.dumps({"input": patch}), "status": "completed"})
            use = usage(in_tokens, 30)
            events += [{"type": "response.output_item.done", "output_index": 0, "item": item},
                       {"type": "response.completed", "response": {"id": resp_id, "status": "completed", "usage": use}}]
            return events, {"kind": "apply_patch", "usage": use}
        if "RUN_ESCALATED:" in text or "RUN:" in text:
            escalate = "RUN_ESCALATED:" in text
            cmd = text.split("RUN_ESCALATED:" if escalate else "RUN:", 1)[1].strip().splitlines()[0]
            # login=false: no login-shell profile (its noise and its pyenv locks, P11) around the command.
            args: dict[str, Any] = {"cmd": cmd, "yield_time_ms": 10000, "login": False}
            if escalate:
                args.update(sandbox_permissions="require_escalated", justification="fake model wants to escalate")
            item = {"type": "function_call", "id": f"fc_{n}", "call_id": f"call_fake_{n}", "name": "exec_command",
                    "arguments": json.dumps(args), "status": "completed"}
            use = usage(in_tokens, 20)
            events += [{"type": "response.output_item.added", "output_index": 0, "item": {**item, "arguments": ""}},
                       {"type": "response.output_item.done", "output_index": 0, "item": item},
                       {"type": "response.completed", "response": {"id": resp_id, "status": "completed", "usage": use}}]
            return events, {"kind": "tool_call", "cmd": cmd, "usage": use}
        if "SLOW:" in text:
            answer, delay = " ".join(f"word{i}" for i in range(40)), 0.25
        else:
            answer, delay = f"Hello from the fake model. You said: {text[-200:]}", DELTA_DELAY
        use = usage(in_tokens, len(answer.split(" ")))
        return events + _message(resp_id, f"msg_fake_{n}", answer, use), {"kind": "text", "usage": use,
                                                                         "text": answer, "delay": delay}

    def record(self, summary: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(summary)
            if "usage" in summary:
                self.usages.append(summary["usage"])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: FakeResponses

    def log_message(self, fmt: str, *args: Any) -> None:
        pass

    def _send_json(self, code: int, obj: dict[str, Any]) -> None:
        raw = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        self._send_json(404, {"error": {"message": "not implemented by the fake"}})

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = {}
        if not self.path.rstrip("/").endswith("/responses"):
            self._send_json(404, {"error": {"message": "not implemented by the fake"}})
            return
        self.owner.authorizations.add(self.headers.get("Authorization") or "")
        events, summary = self.owner.plan(body)
        delay = summary.pop("delay", DELTA_DELAY)
        self.owner.record(summary)
        if summary["kind"] == "http_500":
            self._send_json(500, {"error": {"message": "fake upstream exploded", "type": "server_error"}})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for ev in events:
                self.wfile.write(f"event: {ev['type']}\ndata: {json.dumps(ev)}\n\n".encode())
                self.wfile.flush()
                time.sleep(delay)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True
