"""The page's resume logic (conn.js) against a scripted router, through the real bridge.

The router here is a script, so the hard cases happen every time: a live event arrives before the
replay that contains it again, the connection drops and the page must subscribe from exactly its
last seq, and a router with a new log (new log_id) makes the page start over.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio

from codeswarm.router.web import WebServer

pytestmark = pytest.mark.web
SWARM = "5c1f0a4e-0000-4000-8000-000000000001"
PROVIDERS = [
    {"id": "scripted", "label": "Scripted cluster", "backend": "slurm", "cluster_profile": None,
     "defaults": {"worker_mode": "codex", "approval_policy": "never"}, "disabled": False,
     "launch_fields": [
         {"key": "partition", "label": "Partition", "type": "text", "default": "debug", "required": False},
         {"key": "gpus", "label": "GPUs", "type": "number", "default": None, "required": False},
         {"key": "exclusive", "label": "Exclusive", "type": "boolean", "default": False, "required": False},
         {"key": "qos", "label": "QoS", "type": "select", "default": "normal", "required": True,
          "options": [{"label": "Normal", "value": "normal"}, {"label": "High", "value": "high"}]}]},
    {"id": "off", "label": "Switched off", "backend": "local", "defaults": {}, "disabled": True,
     "disabled_reason": "no codex binary"},
]


def _ev(seq: int, event: str, **data: Any) -> dict[str, Any]:
    base = {"swarm_id": SWARM, "job_id": "local-test", "node_id": 0, "injection_id": "inj-1"}
    return {"protocol": "codeswarm.router.v1", "type": "event", "timestamp": "2026-01-01T00:00:00+00:00",
            "event": event, "seq": seq, "data": {**base, **data}}


class ScriptedRouter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.log: list[dict[str, Any]] = []
        self.log_id = "log-A"
        self.subscribes: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []
        self.streams: set[trio.SocketStream] = set()

    def append(self, event: str, **data: Any) -> None:
        self.log.append(_ev(len(self.log) + 1, event, **data))

    def hangup_all(self) -> None:
        for s in list(self.streams):
            s.socket.close()  # like a router process going away

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await sock.bind(str(self.path))
        sock.listen(8)
        task_status.started(self)
        await trio.serve_listeners(self._conn, [trio.SocketListener(sock)])

    async def _conn(self, stream: trio.SocketStream) -> None:
        self.streams.add(stream)
        buf = b""
        try:
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    await self._command(stream, orjson.loads(line))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return
        finally:
            self.streams.discard(stream)

    async def _send(self, stream: trio.SocketStream, envs: list[dict[str, Any]]) -> None:
        await stream.send_all(b"".join(orjson.dumps(e) + b"\n" for e in envs))

    async def _command(self, stream: trio.SocketStream, cmd: dict[str, Any]) -> None:
        rid, name, payload = cmd["request_id"], cmd["command"], cmd.get("payload") or {}
        head = len(self.log)

        def directed(event: str, **data: Any) -> dict[str, Any]:
            return {"protocol": "codeswarm.router.v1", "type": "event", "timestamp": "2026-01-01T00:00:00+00:00",
                    "event": event, "seq": head, "directed": True, "data": {"request_id": rid, **data}}

        if name == "ping":
            await self._send(stream, [directed("pong", head_seq=head, oldest_seq=1, log_id=self.log_id)])
        elif name == "subscribe":
            self.subscribes.append(payload)
            reset = payload.get("log_id") not in (None, self.log_id)
            since = 0 if reset else int(payload.get("since") or 0)
            # The newest event goes out first, as a live event queued before the subscribe took
            # effect; the replay then sends it again. The page must show it once.
            early = [self.log[-1]] if self.log and self.log[-1]["seq"] > since else []
            replay = [e for e in self.log if e["seq"] > since]
            await self._send(stream, early + replay + [directed(
                "subscribed", since=since, head_seq=head, oldest_seq=1, log_id=self.log_id, reset=reset,
                truncated=False, swarm_id=None)])
        elif name == "providers_list":
            await self._send(stream, [directed("providers_list", providers=PROVIDERS)])
        elif name in ("swarm_launch", "swarm_terminate"):
            # Refused, as a backend that cannot submit or cancel would: the page must roll back.
            self.commands.append(cmd)
            code = "launch_failed" if name == "swarm_launch" else "termination_failed"
            self.append("command_rejected", request_id=rid, command=name, code=code,
                        reason=f"{code.replace('_', ' ')}: scheduler said no")
            await self._send(stream, [self.log[-1]])
        elif name == "swarm_list":
            launched = next((e["data"] for e in self.log if e["event"] == "swarm_launched"), {})
            await self._send(stream, [directed("swarm_list", swarms={SWARM: {
                "job_id": "local-test", "node_count": launched.get("node_count", 1), "status": "running",
                "state": "running",
                "provider": "local", "provider_id": "scripted", "agent_runtime": launched.get("agent_runtime", "mock"),
                "created_at": 1_700_000_000.0}})])


class Stack:
    """ScriptedRouter + WebServer on a trio loop in a thread, so the sync Playwright test can drive it."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="cswresume-"))
        self.router = ScriptedRouter(self.tmp / "router.sock")
        self.ready = threading.Event()
        self.thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    async def _main(self) -> None:
        self.token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            await nursery.start(self.router.serve)
            self.web = await nursery.start(WebServer(router_socket=self.router.path, port=0).serve)
            self.ready.set()

    def call(self, fn: Any, *args: Any) -> Any:
        return trio.from_thread.run_sync(fn, *args, trio_token=self.token)

    def stop(self) -> None:
        self.call(self.nursery.cancel_scope.cancel)
        self.thread.join(10)


@pytest.fixture
def stack() -> Any:
    s = Stack()
    yield s
    s.stop()


def test_resume_is_exact(stack: Stack, open_page: Any) -> None:
    from playwright.sync_api import expect

    r = stack.router

    def add(*items: tuple[str, dict[str, Any]]) -> None:
        for event, data in items:
            stack.call(lambda e=event, d=data: r.append(e, **d))

    add(("swarm_launched", {"node_count": 1, "state": "pending", "provider": "local", "provider_id": "scripted",
                            "agent_runtime": "mock"}),
        ("turn_started", {"turn_id": "t1"}),
        ("assistant_delta", {"content": "a"}), ("assistant_delta", {"content": "b"}),
        ("assistant_delta", {"content": "c"}))
    page, errors = open_page(f"{stack.web.url}#/swarm/{SWARM}")
    text = page.locator(".pane[data-node='0'] .blk.assistant .text")
    expect(text).to_have_text("abc")
    assert r.subscribes[-1]["since"] == 0

    # The router goes away; two events happen meanwhile; the page resumes from seq 5 exactly.
    stack.call(r.hangup_all)
    add(("assistant_delta", {"content": "d"}), ("assistant_delta", {"content": "e"}))
    expect(text).to_have_text("abcde")
    assert r.subscribes[-1] == {"since": 5, "log_id": "log-A"}
    assert page.evaluate("window.codeswarm.conn.lastSeq") == 7

    # A router with a new log: the page forgets what it had and starts over from that log.
    def new_log() -> None:
        r.log = []
        r.log_id = "log-B"
        r.hangup_all()

    stack.call(new_log)
    add(("swarm_launched", {"node_count": 1, "state": "running", "provider": "local", "provider_id": "scripted",
                            "agent_runtime": "mock"}),
        ("turn_started", {"turn_id": "t9"}), ("assistant_delta", {"content": "fresh"}))
    expect(text).to_have_text("fresh")
    assert r.subscribes[-1]["log_id"] == "log-B"
    assert page.locator(".pane[data-node='0'] .blk.assistant").count() == 1
    assert page.evaluate("window.codeswarm.store.stats.errors") == 0
    assert not errors.items, errors.items


def test_blocks_usage_and_keyboard(stack: Stack, open_page: Any, web_output: Path) -> None:
    """Every block kind draws from its events; the swarm shows usage; terminate is keyboard-driven."""
    from playwright.sync_api import expect

    r = stack.router
    events: list[tuple[str, dict[str, Any]]] = [
        ("swarm_launched", {"node_count": 2, "state": "running", "provider": "local", "provider_id": "scripted",
                            "agent_runtime": "codex", "agent_model": "gpt-test"}),
        ("turn_started", {"turn_id": "t1"}),
        ("reasoning_delta", {"content": "Thinking "}), ("reasoning", {"content": "Thinking hard."}),
        ("command_started", {"call_id": "c1", "command": ["bash", "-lc", "make test"], "cwd": "/w"}),
        ("command_completed", {"call_id": "c1", "command": ["bash", "-lc", "make test"], "cwd": "/w",
                               "stdout": "ok 1\n", "stderr": "warning: slow\n", "exit_code": 2,
                               "duration": {"secs": 1, "nanos": 500_000_000}, "status": "failed"}),
        ("file_change", {"call_id": "f1", "status": "completed", "changes": [
            {"path": "src/app.py", "kind": "update", "diff": "@@ -1 +1 @@\n-a\n+b\n"},
            {"path": "NEW.md", "kind": "add", "diff": None}]}),
        ("exec_approval_required", {"approval_id": "ap1", "call_id": "c2", "kind": "command",
                                    "command": "git push", "reason": "network", "cwd": "/w",
                                    "available_decisions": ["approved", "denied", "abort"]}),
        ("agent_error", {"message": "model overloaded", "error_code": "other", "fatal": False}),
        ("assistant", {"content": "Done with **errors**.", "final_answer": True}),
        ("usage", {"total_tokens": 12000, "input_tokens": 10000, "cached_input_tokens": 4000,
                   "output_tokens": 2000, "reasoning_output_tokens": 500, "last_total_tokens": 64000,
                   "last_input_tokens": 60000, "model_context_window": 128000}),
        ("turn_complete", {"turn_id": "t1"}),
        ("usage", {"node_id": 1, "total_tokens": 3000, "last_total_tokens": 3000, "model_context_window": 128000}),
    ]
    for event, data in events:
        stack.call(lambda e=event, d=data: r.append(e, **d))
    page, errors = open_page(f"{stack.web.url}#/swarm/{SWARM}")
    p0 = page.locator(".pane[data-node='0']")
    expect(p0.locator(".blk.turn.turn-end")).to_have_count(1)
    expect(p0.locator(".blk.reasoning .text")).to_have_text("Thinking hard.")
    tool = p0.locator(".blk.tool")
    expect(tool).to_have_attribute("data-status", "failed")
    expect(tool.locator(".cmd")).to_have_text("make test")
    expect(tool.locator(".meta")).to_have_text("exit 2 · 1.5 s")
    expect(tool.locator(".out .stderr")).to_have_text("warning: slow\n")
    expect(p0.locator(".blk.file li")).to_have_count(2)
    expect(p0.locator(".blk.file .kind-add")).to_have_text("add")
    expect(p0.locator(".blk.approval button")).to_have_text(["Approve", "Deny", "Abort turn"])
    expect(p0.locator(".blk.error .text")).to_have_text("model overloaded")
    # The complete answer is drawn as Markdown (built from DOM nodes, see test_markdown.py).
    expect(p0.locator(".blk.assistant.final-answer .text")).to_have_text("Done with errors.")
    expect(p0.locator(".blk.assistant.final-answer .text strong")).to_have_text("errors")
    expect(p0.locator(".pane-head .tokens")).to_have_text("12k tok")
    expect(p0.locator(".pane-head .ctx")).to_contain_text("50%")
    expect(page.locator("dd[data-fact=tokens]")).to_have_text("15k")
    expect(page.locator("dd[data-fact=context]")).to_have_text("50% (max of nodes)")
    page.screenshot(path=str(web_output / "desktop-blocks.png"))

    # Keyboard: Terminate opens the confirmation; Escape cancels and nothing is sent.
    page.locator(".detail-head button.danger").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#confirm")).to_be_visible()
    expect(page.locator("#confirm-cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#confirm")).to_be_hidden()
    expect(page.locator(".detail-head .badge")).to_have_text("running")
    assert not errors.items, errors.items


def test_rejected_launch_and_terminate_roll_back(stack: Stack, open_page: Any) -> None:
    """The form is built from launch_fields; launch and terminate rejections revert visibly."""
    from playwright.sync_api import expect

    r = stack.router
    stack.call(lambda: r.append("swarm_launched", node_count=1, state="running", provider="slurm",
                                provider_id="scripted", agent_runtime="codex"))
    page, errors = open_page(stack.web.url)
    # A swarm runs: the page opens on it, not on the launch form.
    expect(page.locator(f"section.detail[data-swarm='{SWARM}']")).to_be_visible()
    assert page.url.endswith(f"#/swarm/{SWARM}")
    page.click("#new-swarm")
    expect(page.locator("#launch-field-partition")).to_have_value("debug")
    expect(page.locator("#launch-provider option[value=off]")).to_be_disabled()
    page.fill("#launch-nodes", "3")
    page.fill("#launch-field-gpus", "2")
    page.check("#launch-field-exclusive")
    page.select_option("#launch-field-qos", "high")
    page.click("form.launch button[type=submit]")
    expect(page.locator("form.launch .form-error")).to_have_text("Launch rejected: launch failed: scheduler said no")
    expect(page.locator(".swarm-item.launching")).to_have_count(0)
    expect(page.locator("form.launch button[type=submit]")).to_be_enabled()
    sent = r.commands[-1]["payload"]
    assert sent == {"provider": "scripted", "nodes": 3,
                    "provider_params": {"partition": "debug", "gpus": 2, "exclusive": True, "qos": "high"}}

    page.click(f".swarm-item[data-swarm='{SWARM}']")
    expect(page.locator(".detail-head .badge")).to_have_text("running")
    page.click(".detail-head button.danger")
    page.click("#confirm-ok")
    expect(page.locator(".swarm-notice")).to_have_text("Terminate rejected: termination failed: scheduler said no")
    expect(page.locator(".detail-head .badge")).to_have_text("running")
    expect(page.locator(".detail-head button.danger")).to_be_enabled()
    assert r.commands[-1]["command"] == "swarm_terminate"
    assert not errors.items, errors.items
