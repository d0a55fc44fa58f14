"""CodexRuntime against a scripted fake app-server (no codex binary needed): the protocol edge cases
that the real binary does not produce on demand, plus the argv/config helpers."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio

from codeswarm.router.normalize.codex import CodexNormalizer
from codeswarm.worker.runtimes.base import WorkerContext
from codeswarm.worker.runtimes.codex import CodexError, CodexRuntime, approval_policy, build_argv, toml_value

FAKE = Path(__file__).resolve().parent / "fake_app_server.py"


class Rig:
    def __init__(self, tmp: Path, **params: Any) -> None:
        wrapper = tmp / "codex"
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
        wrapper.chmod(0o755)
        self.log = tmp / "received.jsonl"
        ws = tmp / "node_00"
        ws.mkdir()
        ctx = WorkerContext(job_id="j", node_id=0, swarm_root=tmp, workspace=ws,
                            params={"codex_path": str(wrapper), **params},
                            env={"FAKE_APP_SERVER_LOG": str(self.log)})
        self.raw: list[dict[str, Any]] = []
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.norm = CodexNormalizer()
        self.runtime = CodexRuntime(ctx, self.emit)

    def emit(self, msg: dict[str, Any]) -> None:
        self.raw.append(msg)
        self.events.extend(self.norm.feed(msg))

    def received(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.log.read_bytes().splitlines()] if self.log.exists() else []

    async def turn(self, text: str) -> list[tuple[str, dict[str, Any]]]:
        start = len(self.events)
        with trio.fail_after(20):
            await self.runtime.run_turn("inj", text)
        return self.events[start:]


@pytest.fixture
async def rig(tmp_path: Path):
    r = Rig(tmp_path)
    with trio.fail_after(20):
        await r.runtime.start()
    yield r
    await r.runtime.stop()
    assert r.runtime.returncode is not None


def assistant(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [d["content"] for e, d in events if e == "assistant"]


@pytest.mark.trio
async def test_handshake_and_plain_turn(rig: Rig) -> None:
    events = await rig.turn("hello")
    assert assistant(events) == ["echo: hello"]
    assert events[-1][0] == "turn_complete" and events[-1][1]["status"] == "completed"
    sent = rig.received()
    assert [m.get("method") for m in sent[:4]] == ["initialize", "initialized", "thread/start", "turn/start"]
    assert sent[0]["id"] == 1  # our ids start at 1, apart from the server's (from 0)
    assert sent[3]["params"]["cwd"] == str(rig.runtime.ctx.workspace)
    assert sent[2]["params"]["approvalPolicy"] == "never"


@pytest.mark.trio
async def test_unknown_server_request_gets_an_error_and_the_turn_goes_on(rig: Rig) -> None:
    events = await rig.turn("UNKNOWN_REQUEST")
    assert assistant(events) == ["error answer"]
    answer = [m for m in rig.received() if m.get("id") == 0 and "method" not in m][0]
    assert answer["error"]["code"] == -32601
    assert events[-1][1]["status"] == "completed"


@pytest.mark.trio
async def test_approval_decision_by_call_id_and_object_decisions(rig: Rig) -> None:
    decision = {"acceptWithExecpolicyAmendment": {"execpolicy_amendment": ["touch"]}}

    async def answer_when_asked() -> None:
        while not any(e == "exec_approval_required" for e, _ in rig.events):
            await trio.sleep(0.01)
        # no rpc_id: the runtime finds the request by call_id
        await rig.runtime.control({"kind": "approval_decision", "call_id": "call_a", "rpc_id": None,
                                   "approved": True, "decision": decision})

    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer_when_asked)
        events = await rig.turn("APPROVE")
    (ask,) = [d for e, d in events if e == "exec_approval_required"]
    assert ask["rpc_id"] == 0 and ask["call_id"] == "call_a"
    assert assistant(events) == ["decision=" + json.dumps(decision)]
    # A late or repeated decision is harmless.
    await rig.runtime.control({"kind": "approval_decision", "call_id": "call_a", "rpc_id": 0, "approved": False})


@pytest.mark.trio
async def test_control_rejects_unknown_kinds(rig: Rig) -> None:
    with pytest.raises(ValueError):
        await rig.runtime.control({"kind": "bogus"})


@pytest.mark.trio
async def test_rejected_turn_start_fails_the_turn(rig: Rig) -> None:
    events = await rig.turn("REJECT_TURN")
    assert [e for e, _ in events] == ["agent_error", "turn_complete"]
    assert "turn rejected by fake" in events[0][1]["message"]
    assert events[-1][1]["status"] == "failed"
    assert (await rig.turn("after"))[-1][1]["status"] == "completed"


@pytest.mark.trio
async def test_app_server_death_fails_the_turn_and_the_next_turn_resumes_the_thread(rig: Rig) -> None:
    thread = rig.runtime.thread_id
    events = await rig.turn("DIE")
    errors = [d for e, d in events if e == "agent_error"]
    assert errors and errors[0]["error_code"] == "runtimeExited" and "code 3" in errors[0]["message"]
    assert events[-1][0] == "turn_complete" and events[-1][1]["status"] == "failed"
    events = await rig.turn("are you back?")
    assert assistant(events) == ["echo: are you back?"]
    resumes = [m for m in rig.received() if m.get("method") == "thread/resume"]
    assert resumes and resumes[0]["params"]["threadId"] == thread


@pytest.mark.trio
async def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    ctx = WorkerContext(job_id="j", node_id=0, swarm_root=tmp_path, workspace=tmp_path / "ws",
                        params={"codex_path": str(tmp_path / "nope")})
    runtime = CodexRuntime(ctx, lambda m: None)
    with pytest.raises(CodexError, match="cannot start"):
        await runtime.start()
    await runtime.stop()


@pytest.mark.trio
async def test_startup_timeout_kills_the_server(tmp_path: Path) -> None:
    r = Rig(tmp_path, codex_startup_timeout_seconds=0.5)
    r.runtime.ctx.env["FAKE_APP_SERVER_MODE"] = "hang_init"
    with pytest.raises(trio.TooSlowError):
        with trio.fail_after(20):
            await r.runtime.start()
    assert r.runtime.returncode is not None  # killed and reaped, not left behind
    await r.runtime.stop()


def test_argv_and_toml() -> None:
    argv = build_argv("/bin/codex", {"model": "gpt-5.5", "model_provider": "fake",
                                     "model_providers": {"fake": {"base_url": "http://127.0.0.1:1/v1",
                                                                  "supports_websockets": False}},
                                     "codex_config": {"features.plugins": True}})
    assert argv[:2] == ["/bin/codex", "app-server"]
    pairs = [argv[i + 1] for i in range(2, len(argv), 2)]
    assert all(argv[i] == "-c" for i in range(2, len(argv), 2))
    assert "features.plugins=true" in pairs and "features.plugins=false" not in pairs
    assert 'model="gpt-5.5"' in pairs and 'model_provider="fake"' in pairs
    assert 'model_providers.fake={base_url = "http://127.0.0.1:1/v1", supports_websockets = false}' in pairs
    assert toml_value({"a b": [1, 2.5, "x\"y"]}) == '{"a b" = [1, 2.5, "x\\"y"]}'
    assert approval_policy("on-failure") == "on-request" and approval_policy("never") == "never"
