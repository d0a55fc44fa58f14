"""A tiny fake of the Anthropic Messages API (stdlib only) for driving the real `claude` CLI offline.

Adapted from the verified reference (notes: codex/fake_anthropic_server.py, Claude Code 2.1.197).
Claude Code talks to it through ANTHROPIC_BASE_URL. The reply is chosen from the LAST user turn:

  * it holds a tool_result          -> a text reply quoting the result ("Tool said: ...")
  * "RUN: <cmd>" in the user text   -> one `Bash` tool_use running <cmd>
  * "WRITE: <path> <text>"          -> one `Write` tool_use
  * "FAIL_HTTP: <code>"             -> that HTTP error (an API error for Claude)
  * otherwise                       -> "Hello from the fake Claude. You said: <text>"

Usage figures are deterministic so tests can check them: input_tokens = 100 + request number,
cache_read_input_tokens = CACHE_READ, cache_creation_input_tokens = CACHE_WRITE (CACHE_WRITE_1H of them
for an hour), output_tokens = 12. Every request is kept in `requests`.
Run as a script it prints "LISTENING <port>" and serves until killed.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CACHE_READ = 7
CACHE_WRITE = 50
CACHE_WRITE_1H = 20
OUTPUT_TOKENS = 12


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    # Claude sends the prompt plus <system-reminder> blocks; the prompt is the last real text block.
    texts = [c.get("text", "") for c in content or [] if isinstance(c, dict) and c.get("type") == "text"]
    real = [t for t in texts if not t.lstrip().startswith("<system-reminder>")]
    return (real or texts or [""])[-1]


def user_texts(body: dict[str, Any]) -> list[str]:
    """The real user prompts in a request's history (tool results and reminders left out)."""
    out = []
    for m in body.get("messages") or []:
        if m.get("role") != "user":
            continue
        content = m.get("content")
        if isinstance(content, list) and any(isinstance(c, dict) and c.get("type") == "tool_result" for c in content):
            continue
        text = _text_of(content)
        if text and not text.lstrip().startswith("<system-reminder>"):
            out.append(text)
    return out


def plan(body: dict[str, Any]) -> dict[str, Any]:
    # Claude Code 2.1.x appends a role="system" message after the user turn: skip it.
    msgs = [m for m in body.get("messages") or [] if m.get("role") in ("user", "assistant")]
    last = next((m for m in reversed(msgs) if m.get("role") == "user"), {"content": ""})
    content = last.get("content")
    results = [c for c in content if isinstance(c, dict) and c.get("type") == "tool_result"] \
        if isinstance(content, list) else []
    tools = {t.get("name") for t in body.get("tools") or []}
    if results:
        r = results[-1].get("content")
        r = r if isinstance(r, str) else "".join(c.get("text", "") for c in r or [] if isinstance(c, dict))
        return {"kind": "text", "text": f"Tool said: {r[:200]}"}
    text = _text_of(content)
    if "FAIL_HTTP:" in text:
        return {"kind": "http_error", "code": int(text.split("FAIL_HTTP:", 1)[1].split()[0])}
    if "RUN:" in text and "Bash" in tools:
        cmd = text.split("RUN:", 1)[1].strip().splitlines()[0]
        return {"kind": "tool_use", "name": "Bash", "input": {"command": cmd, "description": "fake runs a command"}}
    if "WRITE:" in text and "Write" in tools:
        path, _, data = text.split("WRITE:", 1)[1].strip().splitlines()[0].partition(" ")
        return {"kind": "tool_use", "name": "Write", "input": {"file_path": path, "content": data + "\n"}}
    return {"kind": "text", "text": f"Hello from the fake Claude. You said: {text[-100:]}"}


class FakeAnthropic:
    """The server on 127.0.0.1:<port>, served from a daemon thread; use as a context manager."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []  # bodies of POST /v1/messages
        self.paths: list[str] = []  # every method + path seen (proves where the CLI called)
        self._lock = threading.Lock()
        self._count = 0
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port: int = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-anthropic", daemon=True)

    def next_number(self, body: dict[str, Any] | None, path: str) -> int:
        with self._lock:
            self.paths.append(path)
            if body is None:
                return 0
            self.requests.append(body)
            self._count += 1
            return self._count

    def start(self) -> "FakeAnthropic":
        self._thread.start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "FakeAnthropic":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_fake: FakeAnthropic

    def log_message(self, *args: object) -> None:
        pass

    def _json(self, code: int, obj: Any) -> None:
        raw = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        self.server_fake.next_number(None, "GET " + self.path)
        self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": "fake"}})

    def do_HEAD(self) -> None:  # Claude probes connectivity with HEAD /
        self.server_fake.next_number(None, "HEAD " + self.path)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(n) or b"{}")
        except ValueError:
            body = {}
        path = self.path.split("?")[0]
        if path.endswith("/count_tokens"):
            self.server_fake.next_number(None, "POST " + self.path)
            self._json(200, {"input_tokens": 42})
            return
        if not path.endswith("/v1/messages"):
            self.server_fake.next_number(None, "POST " + self.path)
            self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": "fake"}})
            return
        i = self.server_fake.next_number(body, "POST " + self.path)
        reply = plan(body)
        if reply["kind"] == "http_error":
            self._json(reply["code"], {"type": "error", "error": {"type": "api_error", "message": "fake failure"}})
            return
        self._reply(i, body, reply)

    def _reply(self, i: int, body: dict[str, Any], reply: dict[str, Any]) -> None:
        msg_id = f"msg_fake_{i}"
        usage = {"input_tokens": 100 + i, "cache_creation_input_tokens": CACHE_WRITE,
                 "cache_read_input_tokens": CACHE_READ, "output_tokens": 1,
                 "cache_creation": {"ephemeral_5m_input_tokens": CACHE_WRITE - CACHE_WRITE_1H,
                                    "ephemeral_1h_input_tokens": CACHE_WRITE_1H}}
        if reply["kind"] == "tool_use":
            block = {"type": "tool_use", "id": f"toolu_fake_{i}", "name": reply["name"], "input": reply["input"]}
            stop = "tool_use"
        else:
            block = {"type": "text", "text": reply["text"]}
            stop = "end_turn"
        if not body.get("stream"):
            self._json(200, {"id": msg_id, "type": "message", "role": "assistant", "model": body.get("model"),
                             "content": [block], "stop_reason": stop, "stop_sequence": None,
                             "usage": {**usage, "output_tokens": OUTPUT_TOKENS}})
            return
        evs: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": {
            "id": msg_id, "type": "message", "role": "assistant", "model": body.get("model"),
            "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}})]
        if block["type"] == "text":
            evs.append(("content_block_start", {"type": "content_block_start", "index": 0,
                                                "content_block": {"type": "text", "text": ""}}))
            words = block["text"].split(" ")
            for k, w in enumerate(words):
                evs.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                    "type": "text_delta", "text": w + (" " if k < len(words) - 1 else "")}}))
        else:
            evs.append(("content_block_start", {"type": "content_block_start", "index": 0,
                                                "content_block": {**block, "input": {}}}))
            evs.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                "type": "input_json_delta", "partial_json": json.dumps(block["input"])}}))
        evs.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
        evs.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                      "usage": {"output_tokens": OUTPUT_TOKENS}}))
        evs.append(("message_stop", {"type": "message_stop"}))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for name, data in evs:
                self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
                self.wfile.flush()
                time.sleep(0.002)  # separate SSE chunks, as a real server would send them
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True


def offline_env(base: Path, fake: FakeAnthropic) -> dict[str, str]:
    """Env for a claude process: private HOME/config, the fake API, loopback only, no telemetry."""
    home, config = base / "home", base / "claude-config"
    home.mkdir(parents=True, exist_ok=True)
    config.mkdir(parents=True, exist_ok=True)
    return {
        "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(config),
        "ANTHROPIC_BASE_URL": fake.base_url,
        "ANTHROPIC_API_KEY": "sk-ant-fake",
        "ANTHROPIC_AUTH_TOKEN": "",
        "NO_PROXY": "127.0.0.1,localhost",
        "HTTP_PROXY": "",
        "HTTPS_PROXY": "",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
    }



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    fake = FakeAnthropic(args.port)
    print(f"LISTENING {fake.port}", flush=True)
    try:
        fake.httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
