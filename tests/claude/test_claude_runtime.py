"""ClaudeRuntime with the real Claude Code CLI against the fake Messages API (loopback only).

Each test drives the runtime directly, as the worker does, and feeds its raw lines through the
router's ClaudeNormalizer, so the assertions are on the v1 events clients would see.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio

from codeswarm.errors import RuntimeFailure
from codeswarm.router.normalize.claude import ClaudeNormalizer
from codeswarm.worker.runtimes.base import WorkerContext
from codeswarm.worker.runtimes.claude import MAX_LINE_BYTES, ClaudeRuntime, build_argv, fit_line, resolve_binary
from fake_anthropic import CACHE_READ, CACHE_WRITE, OUTPUT_TOKENS, FakeAnthropic, user_texts

TURN_TIMEOUT = 60
pytestmark = pytest.mark.claude


class Harness:
    """A runtime plus what it emitted; `wait_for(type)` returns once such a line was emitted."""

    def __init__(self, tmp_path: Path, claude_bin: str, env: dict[str, str], **params: Any) -> None:
        self.workspace = tmp_path / "node_00"
        self.workspace.mkdir(parents=True, exist_ok=True)
        ctx = WorkerContext(job_id="job-1", node_id=0, swarm_root=tmp_path, workspace=self.workspace,
                            params={"claude_cli_path": claude_bin, "approval_policy": "never", **params},
                            env=env)
        self.lines: list[dict[str, Any]] = []
        self._waiters: dict[str, trio.Event] = {}
        self.runtime = ClaudeRuntime(ctx, self._emit)
        self.normalizer = ClaudeNormalizer()
        self.events: list[tuple[str, dict[str, Any]]] = []

    def _emit(self, payload: dict[str, Any]) -> None:
        self.lines.append(payload)
        self.events.extend(self.normalizer.feed(payload))
        waiter = self._waiters.pop(str(payload.get("type")), None)
        if waiter is not None:
            waiter.set()

    async def wait_for(self, line_type: str) -> dict[str, Any]:
        if not any(line.get("type") == line_type for line in self.lines):
            event = self._waiters.setdefault(line_type, trio.Event())
            await event.wait()
        return next(line for line in reversed(self.lines) if line.get("type") == line_type)

    async def turn(self, content: str, injection_id: str = "inj-1") -> list[tuple[str, dict[str, Any]]]:
        start = len(self.events)
        with trio.fail_after(TURN_TIMEOUT):
            await self.runtime.run_turn(injection_id, content)
        return self.events[start:]


def of(events: list[tuple[str, dict[str, Any]]], name: str) -> list[dict[str, Any]]:
    return [d for e, d in events if e == name]


@pytest.fixture
async def harness(tmp_path: Path, claude_bin: str, claude_env: dict[str, str]):
    h = Harness(tmp_path, claude_bin, claude_env)
    await h.runtime.start()
    yield h
    await h.runtime.stop()


def test_argv_maps_settings(tmp_path: Path) -> None:
    ctx = WorkerContext(job_id="j", node_id=0, swarm_root=tmp_path, workspace=tmp_path,
                        params={"claude_model": "claude-sonnet-4-5", "sandbox_mode": "read-only"})
    argv = build_argv("/bin/claude", ctx, session_id="s-1", settings_path="/x/settings.json", system_prompt="be nice")
    assert argv[:6] == ["/bin/claude", "-p", "--output-format", "stream-json", "--verbose",
                        "--include-partial-messages"]
    joined = " ".join(argv)
    for part in ("--model claude-sonnet-4-5", "--permission-mode bypassPermissions", "--resume s-1",
                 "--settings /x/settings.json", "--disallowedTools Edit,Write,NotebookEdit",
                 "--append-system-prompt be nice"):
        assert part in joined


def test_oversized_lines_are_shortened() -> None:
    small = {"type": "user", "message": {"content": [{"type": "tool_result", "content": "ok"}]}}
    assert fit_line(small) is small
    huge = {"type": "user", "message": {"content": [{"type": "tool_result", "content": "x" * 3_000_000}]}}
    fitted = fit_line(huge)
    assert fitted["truncated"] is True and len(orjson.dumps(fitted)) < MAX_LINE_BYTES
    assert fitted["message"]["content"][0]["content"].startswith("xxx")


def test_binary_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLAUDE_BIN", raising=False)
    monkeypatch.chdir(tmp_path)
    # a relative path is made absolute: claude runs with cwd = the node workspace
    assert resolve_binary({"claude_cli_path": "bin/claude"}, {}) == str(tmp_path / "bin" / "claude")
    assert resolve_binary({}, {"CLAUDE_BIN": "/opt/claude"}) == "/opt/claude"
    # nothing on PATH: the pinned project-local install
    pinned = tmp_path / "tools" / "claude-code-2.1.197" / "node_modules" / "@anthropic-ai" / "claude-code" / "bin"
    pinned.mkdir(parents=True)
    (pinned / "claude.exe").write_text("#!/bin/sh\n")  # the stub npm ships before postinstall
    (pinned / "claude.exe").chmod(0o755)
    monkeypatch.setenv("CODESWARM_TOOLS_DIR", str(tmp_path / "tools"))
    assert resolve_binary({}, {"PATH": str(tmp_path / "empty")}) is None
    with open(pinned / "claude.exe", "r+b") as f:
        f.truncate(2_000_000)  # sized like a native binary (sparse)
    assert resolve_binary({}, {"PATH": str(tmp_path / "empty")}) == str(pinned / "claude.exe")


@pytest.mark.trio
async def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    ctx = WorkerContext(job_id="j", node_id=0, swarm_root=tmp_path, workspace=tmp_path,
                        params={"claude_cli_path": str(tmp_path / "nope")})
    with pytest.raises(RuntimeFailure, match="claude_cli_path"):
        await ClaudeRuntime(ctx, lambda p: None).start()


@pytest.mark.trio
async def test_text_turn(harness: Harness, fake_anthropic: FakeAnthropic) -> None:
    events = await harness.turn("Say hi")
    seq = [name for name, _ in events]
    assert seq[0] == "turn_started" and seq.count("turn_started") == 1
    assert seq[-1] == "turn_complete" and of(events, "turn_complete")[0]["status"] == "completed"
    answer = "Hello from the fake Claude. You said: Say hi"
    assert "".join(d["content"] for d in of(events, "assistant_delta")) == answer
    assert of(events, "assistant")[-1] == {"content": answer, "final_answer": True}
    (usage,) = of(events, "usage")
    assert usage["last_input_tokens"] == 101 + CACHE_READ + CACHE_WRITE
    assert usage["last_cached_input_tokens"] == CACHE_READ and usage["last_cache_write_input_tokens"] == CACHE_WRITE
    assert usage["last_output_tokens"] == OUTPUT_TOKENS
    assert harness.runtime.session_id and harness.lines[0] == {"type": "codeswarm_turn_start", "injection_id": "inj-1"}
    # Only the fake was called: the probe and the model request, nothing else.
    assert set(fake_anthropic.paths) <= {"HEAD /", "POST /v1/messages?beta=true"}


@pytest.mark.trio
async def test_tool_turn_runs_bash(harness: Harness) -> None:
    events = await harness.turn("RUN: echo hi-from-claude > made_by_claude.txt; echo done")
    (started,) = of(events, "command_started")
    (done,) = of(events, "command_completed")
    assert started["command"] == "echo hi-from-claude > made_by_claude.txt; echo done"
    assert started["cwd"] == str(harness.workspace)
    assert done["call_id"] == started["call_id"] and done["stdout"] == "done" and done["status"] == "completed"
    assert (harness.workspace / "made_by_claude.txt").read_text() == "hi-from-claude\n"
    assert of(events, "assistant")[-1] == {"content": "Tool said: done", "final_answer": True}
    assert of(events, "turn_complete")[0]["status"] == "completed"


@pytest.mark.trio
async def test_second_injection_resumes_the_session(harness: Harness, fake_anthropic: FakeAnthropic) -> None:
    first = await harness.turn("first prompt", "inj-1")
    session = harness.runtime.session_id
    second = await harness.turn("second prompt", "inj-2")
    assert harness.runtime.session_id == session
    # The model saw the whole conversation on the second call.
    assert user_texts(fake_anthropic.requests[-1]) == ["first prompt", "second prompt"]
    assert of(second, "assistant")[-1]["content"].endswith("You said: second prompt")
    (u1,), (u2,) = of(first, "usage"), of(second, "usage")
    assert u2["input_tokens"] == u1["input_tokens"] + u2["last_input_tokens"]
    assert u2["output_tokens"] == 2 * OUTPUT_TOKENS
    assert [n for n, _ in second].count("turn_started") == 1


@pytest.mark.trio
async def test_stale_session_starts_a_new_one(harness: Harness) -> None:
    stale = "00000000-0000-4000-8000-000000000000"
    harness.runtime.session_id = stale  # e.g. the config dir was wiped since the last turn
    events = await harness.turn("hello again")
    assert [n for n, _ in events].count("turn_complete") == 1
    assert of(events, "turn_complete")[0]["status"] == "completed" and of(events, "agent_error") == []
    assert harness.runtime.session_id not in (None, stale)


@pytest.mark.trio
async def test_api_error_fails_the_turn(harness: Harness) -> None:
    events = await harness.turn("FAIL_HTTP: 400")
    (err,) = of(events, "agent_error")
    assert err["error_code"] == 400 and "400" in err["message"]
    assert of(events, "turn_complete") == [{"turn_id": None, "status": "failed"}]
    assert of(events, "assistant") == []


@pytest.mark.trio
async def test_stop_interrupts_a_running_command(harness: Harness) -> None:
    marker = "7.31415"  # a unique sleep duration to find the process by
    async with trio.open_nursery() as nursery:
        nursery.start_soon(harness.turn, f"RUN: sleep {marker}; echo never")
        await harness.wait_for("assistant")
        with trio.fail_after(TURN_TIMEOUT):
            while not _processes_with(marker):
                await trio.sleep(0.05)
        await harness.runtime.stop()
    assert harness.lines[-1]["type"] == "codeswarm_turn_end" and harness.lines[-1]["status"] == "interrupted"
    assert of(harness.events, "turn_complete")[-1]["status"] == "interrupted"
    assert not _processes_with(marker)


def _processes_with(text: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if f"sleep {text}" in cmdline:
            found.append(int(pid))
    return found


# ---------------------------------------------------------------- approvals (PreToolUse hook)


@pytest.fixture
async def gated(tmp_path: Path, claude_bin: str, claude_env: dict[str, str]):
    h = Harness(tmp_path, claude_bin, claude_env, approval_policy="on-request")
    await h.runtime.start()
    yield h
    await h.runtime.stop()


async def _answer(h: Harness, prompt: str, decision: str) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """Run a turn, answer its first approval with `decision`, return (the approval event, all events)."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(h.turn, prompt)
        with trio.fail_after(TURN_TIMEOUT):
            request = await h.wait_for("permission_request")
        (approval,) = of(h.events, "exec_approval_required")
        await h.runtime.control({"kind": "approval_decision", "call_id": request["tool_use_id"],
                                 "approved": decision.startswith("accept"), "decision": decision})
    return approval, h.events


@pytest.mark.trio
async def test_accepted_command_runs(gated: Harness) -> None:
    approval, events = await _answer(gated, "RUN: echo approved > ok.txt; echo done", "accept")
    assert approval["kind"] == "command" and approval["command"] == "echo approved > ok.txt; echo done"
    assert approval["available_decisions"] == ["accept", "cancel"]
    assert approval["reason"] == "fake runs a command"  # the Bash tool's description
    (started,) = of(events, "command_started")
    assert approval["call_id"] == started["call_id"]
    assert of(events, "command_completed")[0]["stdout"] == "done"
    assert (gated.workspace / "ok.txt").read_text() == "approved\n"
    assert of(events, "turn_complete")[-1]["status"] == "completed"


@pytest.mark.trio
async def test_declined_command_does_not_run(gated: Harness) -> None:
    _, events = await _answer(gated, "RUN: echo nope > no.txt", "decline")
    (done,) = of(events, "command_completed")
    assert done["status"] == "declined" and "declined" in done["stdout"]
    assert not (gated.workspace / "no.txt").exists()
    # The model saw the refusal and finished the turn normally.
    assert of(events, "turn_complete")[-1]["status"] == "completed"


@pytest.mark.trio
async def test_cancel_stops_the_turn(gated: Harness) -> None:
    _, events = await _answer(gated, "RUN: echo nope > no.txt", "cancel")
    assert not (gated.workspace / "no.txt").exists()
    assert [d["status"] for d in of(events, "command_completed")] == ["declined"]
    assert of(events, "turn_complete")[-1]["status"] == "interrupted"
    assert gated.lines[-1]["type"] == "codeswarm_turn_end"


@pytest.mark.trio
async def test_file_write_asks_as_a_tool(gated: Harness) -> None:
    target = gated.workspace / "notes.txt"
    approval, events = await _answer(gated, f"WRITE: {target} hello", "accept")
    assert approval["kind"] == "tool" and approval["command"]["tool_name"] == "Write"
    assert target.read_text() == "hello\n"
    changes = of(events, "file_change")
    assert [c["status"] for c in changes] == ["in_progress", "completed"]
    assert changes[-1]["changes"][0] == {"path": str(target), "kind": "add", "diff": None}


@pytest.mark.trio
async def test_unknown_call_id_is_rejected(gated: Harness) -> None:
    with pytest.raises(ValueError, match="no pending approval"):
        await gated.runtime.control({"kind": "approval_decision", "call_id": "toolu_nope", "decision": "accept"})
