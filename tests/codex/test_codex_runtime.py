"""CodexRuntime with the real pinned codex app-server against the fake Responses API (loopback only).

The runtime's raw messages go through CodexNormalizer, as the router would do, and the tests assert
on the v1 events.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio

from codeswarm.router.normalize.codex import CodexNormalizer
from codeswarm.worker.runtimes.base import WorkerContext
from codeswarm.worker.runtimes.codex import CodexRuntime
from fake_responses import FakeResponses

TURN_LIMIT = 60  # seconds; a turn against the fake takes well under 2 s


class Harness:
    """A CodexRuntime plus the normalizer; answers approvals with `decision` when set."""

    def __init__(self, tmp: Path, codex_bin: str, fake: FakeResponses, env: dict[str, str], **params: Any) -> None:
        self.workspace = tmp / "node_00"
        self.workspace.mkdir(parents=True)
        merged = {**fake.provider_params(), "codex_path": codex_bin, "codex_home": str(tmp / "codex_home"),
                  "codex_ephemeral": True, "approval_policy": "never", "sandbox_mode": "danger-full-access", **params}
        ctx = WorkerContext(job_id="job1", node_id=0, swarm_root=tmp, workspace=self.workspace,
                            params=merged, env=env)
        self.runtime = CodexRuntime(ctx, self._emit)
        self.norm = CodexNormalizer()
        self.raw: list[dict[str, Any]] = []
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.decision: str | None = None
        self.nursery: trio.Nursery | None = None

    def _emit(self, msg: dict[str, Any]) -> None:
        self.raw.append(msg)
        for name, data in self.norm.feed(msg):
            self.events.append((name, data))
            if name == "exec_approval_required" and self.decision and self.nursery is not None:
                self.nursery.start_soon(self.runtime.control, {
                    "kind": "approval_decision", "call_id": data["call_id"], "rpc_id": data["rpc_id"],
                    "approved": self.decision.startswith("accept"), "decision": self.decision})

    async def turn(self, prompt: str) -> list[tuple[str, dict[str, Any]]]:
        start = len(self.events)
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            with trio.fail_after(TURN_LIMIT):
                await self.runtime.run_turn("inj", prompt)
        self.nursery = None
        # thread_status (active) precedes turn_started; the tests look at the turn's own events.
        return [ev for ev in self.events[start:] if ev[0] != "thread_status"]


def of(events: list[tuple[str, dict[str, Any]]], name: str) -> list[dict[str, Any]]:
    return [d for e, d in events if e == name]


@pytest.fixture
async def harness_factory(tmp_path: Path, codex_bin: str, fake_model: FakeResponses, codex_env: dict[str, str]):
    made: list[Harness] = []

    async def make(**params: Any) -> Harness:
        h = Harness(tmp_path / f"h{len(made)}", codex_bin, fake_model, codex_env, **params)
        made.append(h)
        with trio.fail_after(TURN_LIMIT):
            await h.runtime.start()
        return h

    yield make
    for h in made:
        await h.runtime.stop()
        assert h.runtime.returncode is not None


@pytest.mark.trio
async def test_text_turn_streams_and_completes(harness_factory) -> None:
    h = await harness_factory()
    events = await h.turn("Say hello please")
    names = [e for e, _ in events]
    assert names[0] == "turn_started" and names[-1] == "turn_complete"
    assert events[-1][1]["status"] == "completed"
    deltas = of(events, "assistant_delta")
    assert len(deltas) >= 2
    (answer,) = of(events, "assistant")
    assert "".join(d["content"] for d in deltas) == answer["content"]
    assert answer["content"] == "Hello from the fake model. You said: Say hello please"
    assert answer["final_answer"] is True
    assert names.index("assistant_delta") < names.index("assistant") < names.index("turn_complete")


@pytest.mark.trio
async def test_thread_is_kept_across_turns_and_usage_matches_the_fake(harness_factory, fake_model) -> None:
    h = await harness_factory()
    thread = h.runtime.thread_id
    first = await h.turn("first turn")
    second = await h.turn("second turn")
    assert h.runtime.thread_id == thread
    assert of(second, "assistant")[0]["content"].endswith("second turn")
    # The second request carries the first turn's conversation.
    assert fake_model.requests[1]["kind"] == "text"
    u1, u2 = of(first, "usage")[-1], of(second, "usage")[-1]
    f1, f2 = fake_model.usages
    for u, f in ((u1, f1), (u2, f2)):
        assert u["last_input_tokens"] == f["input_tokens"]
        assert u["last_output_tokens"] == f["output_tokens"]
        assert u["last_total_tokens"] == f["total_tokens"]
        assert u["model_context_window"] and u["usage_source"] == "thread/tokenUsage/updated"
    assert u2["total_tokens"] == f1["total_tokens"] + f2["total_tokens"]  # cumulative for the thread
    assert u2["input_tokens"] == f1["input_tokens"] + f2["input_tokens"]


@pytest.mark.trio
async def test_command_turn_runs_in_the_workspace(harness_factory) -> None:
    h = await harness_factory()
    events = await h.turn("RUN: echo hi-from-codex && pwd")
    (started,) = of(events, "command_started")
    (done,) = of(events, "command_completed")
    assert started["call_id"] == done["call_id"]
    assert "echo hi-from-codex" in started["command"]
    assert Path(started["cwd"]).resolve() == h.workspace.resolve()
    assert done["exit_code"] == 0 and done["status"] == "completed"
    assert "hi-from-codex" in done["stdout"] and str(h.workspace.resolve()) in done["stdout"]
    assert done["duration"] is not None and set(done["duration"]) == {"secs", "nanos"}
    assert events[-1] == ("turn_complete", {"turn_id": events[0][1]["turn_id"], "status": "completed"})


@pytest.mark.trio
async def test_approval_accepted_runs_the_command(harness_factory) -> None:
    h = await harness_factory(approval_policy="untrusted")
    h.decision = "accept"
    events = await h.turn("RUN: touch approved.txt && echo approved-ok")
    (ask,) = of(events, "exec_approval_required")
    assert ask["rpc_id"] == 0 and ask["kind"] == "command" and "touch approved.txt" in ask["command"]
    assert "accept" in ask["available_decisions"]
    (done,) = of(events, "command_completed")
    assert done["status"] == "completed" and "approved-ok" in done["stdout"]
    assert (h.workspace / "approved.txt").exists()
    names = [e for e, _ in events]
    assert names.index("exec_approval_required") < names.index("command_started") < names.index("command_completed")
    assert events[-1][1]["status"] == "completed"


@pytest.mark.trio
async def test_approval_declined_does_not_run(harness_factory) -> None:
    h = await harness_factory(approval_policy="untrusted")
    h.decision = "decline"
    events = await h.turn("RUN: touch declined.txt && echo should-not-run")
    assert len(of(events, "exec_approval_required")) == 1
    (done,) = of(events, "command_completed")
    assert done["status"] == "declined" and done["exit_code"] is None
    assert not of(events, "command_started")
    assert not (h.workspace / "declined.txt").exists()
    assert events[-1][1]["status"] == "completed"  # decline: the turn goes on


@pytest.mark.trio
async def test_unanswered_approval_times_out_and_aborts_the_turn(harness_factory) -> None:
    h = await harness_factory(approval_policy="untrusted", approval_timeout_seconds=0.5)
    events = await h.turn("RUN: touch never.txt")
    assert len(of(events, "exec_approval_required")) == 1
    assert of(events, "command_completed")[0]["status"] == "declined"
    assert events[-1][1]["status"] == "interrupted"  # timeout answers "cancel"
    assert not (h.workspace / "never.txt").exists()


@pytest.mark.trio
async def test_model_failure_gives_agent_error_and_failed_turn(harness_factory) -> None:
    h = await harness_factory()
    events = await h.turn("FAIL_HTTP: please")
    (err,) = of(events, "agent_error")
    assert err["error_code"] == "internalServerError" and err["message"]
    assert events[-1][0] == "turn_complete" and events[-1][1]["status"] == "failed"
    # The node survives a failed turn.
    again = await h.turn("still there?")
    assert again[-1][1]["status"] == "completed"


@pytest.mark.trio
async def test_stop_during_a_turn_ends_it_and_leaves_no_process(harness_factory) -> None:
    h = await harness_factory()
    pid = h.runtime._proc.pid  # noqa: SLF001 - the test checks the real process is gone
    result: list[Any] = []

    async def run() -> None:
        result.append(await h.turn("RUN: sleep 30; echo late"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        with trio.fail_after(20):
            while not any(e == "command_started" for e, _ in h.events):
                await trio.sleep(0.05)
        await h.runtime.stop()
    assert h.runtime.returncode is not None
    (events,) = result
    assert events[-1][0] == "turn_complete" and events[-1][1]["status"] == "interrupted"
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole process group is gone (the sleep included)


@pytest.mark.trio
async def test_workspace_write_sandbox(harness_factory, tmp_path: Path) -> None:
    """P16: the bundled bwrap sandbox needs user namespaces; skip where the host has none."""
    # /tmp is writable under workspace-write, so the forbidden target lives under $HOME.
    outside = Path.home() / f".codeswarm-sandbox-probe-{os.getpid()}-{tmp_path.name}"
    try:
        h = await harness_factory(sandbox_mode="workspace-write")
        events = await h.turn(f"RUN: touch inside.txt && echo inside-ok; touch {outside}; echo rc=$?")
        if not (h.workspace / "inside.txt").exists():
            # Without user namespaces bwrap cannot start; codex may then report no command at all (P9).
            output = [d["stdout"][-300:] for d in of(events, "command_completed")]
            pytest.skip(f"the codex sandbox does not work on this host: {output!r}")
        (done,) = of(events, "command_completed")
        assert "inside-ok" in done["stdout"]
        assert not outside.exists() and "rc=1" in done["stdout"]
    finally:
        outside.unlink(missing_ok=True)
