"""The mock runtime: deterministic, offline, speaking the Codex app-server dialect.

It powers the demo, the tests and the benchmarks. Prompt markers (any combination):
  [mock:error]        the model fails: `error` then a failed turn
  [mock:slow=S]       the turn takes at least S seconds
  [mock:long=N]       the command prints N bytes
  [mock:commands=N]   N commands (default 1)
  [mock:approval]     ask approval before the command (accept runs it, decline skips it, cancel ends the turn)
  [mock:firehose=M]   M assistant deltas, as fast as allowed
  [mock:rate=R]       at most R events per second
  [mock:tokens=N]     N more input tokens on each of the turn's two model calls (spend tests)
  [mock:env-sha256=NAME]  the answer names the SHA-256 of env var NAME (tests prove a secret arrived
                      without ever printing it)

A turn reports usage after each of its two model calls: the plan (after the reasoning) and the
answer (at the end), so a budget can be crossed, and the turn interrupted, in the middle of a turn.

Project tasks (docs/PROJECTS.md), in the task's checkout:
  [mock:write=PATH]   append "<task> attempt <A> by node <N> of <job>" to PATH (relative, inside the checkout)
  [mock:from_attempt=A]  the writes happen only from attempt A on (so a verify checking PATH fails before)
  an integration task resolves git conflict markers by keeping both sides, in order

One turn script (`MockScript.steps`, a generator that yields its waits) and two drivers: MockRuntime
for the trio worker (project tasks, tests) and LeanMock for the lean worker (worker/lean.py), whose
waits keep reading the inbox. This module does not import trio at the top: the lean worker stays
without it.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from codeswarm.worker.runtimes.base import Runtime, WorkerContext
from codeswarm.worker.thread_state import load_thread, save_thread, thread_path

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the lean worker's start: worker/start.py)
if TYPE_CHECKING:
    from typing import Any, Callable, Generator, Protocol

    from codeswarm.worker.runtimes.base import Emit

# Patterns, compiled by `re` at their first use (and cached there): a plain prompt needs none of them
_MARKER = r"\[mock:([a-z_]+)(?:=([0-9.]+))?\]"
_WRITE = r"\[mock:write=([^\]\s]+)\]"
_CONFLICT_LINE = r"^(<<<<<<<|=======|>>>>>>>)( |$)"
_ENV_DIGEST = r"\[mock:env-sha256=([A-Za-z_][A-Za-z0-9_]*)\]"


def env_digests(prompt: str) -> str:
    out = []
    if "[mock:" not in prompt:
        return ""
    for m in re.finditer(_ENV_DIGEST, prompt):
        import hashlib  # only when asked: it loads libcrypto (~3 MB) into the lean worker

        value = os.environ.get(m.group(1))
        digest = hashlib.sha256(value.encode()).hexdigest() if value is not None else "unset"
        out.append(f"\nenv {m.group(1)} sha256={digest}")
    return "".join(out)


def parse_markers(prompt: str) -> dict[str, float]:
    if "[mock:" not in prompt:
        return {}
    return {m.group(1): float(m.group(2)) if m.group(2) else 1.0 for m in re.finditer(_MARKER, prompt)}


class Ask:
    """A wait of the turn script: an approval decision for call_id (the reply is the decision).
    A plain slotted class, not a NamedTuple: see worker/inbox.py."""

    __slots__ = ("call_id",)

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id


if TYPE_CHECKING:  # names for the type checker only: the lean worker does not import typing
    Steps = Generator["float | Ask", Any, None]  # yields a pause in seconds or an Ask

    class Host(Protocol):
        """What the lean worker lends its runtime: waits that keep the inbox moving."""

        def sleep(self, seconds: float) -> None: ...

        def wait_until(self, done: Callable[[], bool], timeout: float) -> bool: ...


class MockScript:
    """The mock agent's state and turn script, shared by both drivers."""

    name = "mock"
    ctx: WorkerContext
    emit: Emit
    task: dict[str, Any] | None
    turn_cwd: Path | None

    def setup(self) -> None:
        # The node's thread continues across a worker restart (issue 12 #9); a fresh one gets an id
        # of its own per process, so that a resumed thread is observable.
        saved = thread_path(self.ctx.swarm_root, self.ctx.job_id, self.ctx.node_id)
        self.thread_id = load_thread(saved) or \
            f"mock-thread-{self.ctx.job_id}-{self.ctx.node_id}-{os.urandom(3).hex()}"
        save_thread(saved, self.thread_id)  # an OSError fails the start, reported like any other
        self.hostname = os.uname().nodename
        self.turns = 0
        self.rpc_ids = 0
        self.totals = {"totalTokens": 0, "inputTokens": 0, "cachedInputTokens": 0, "outputTokens": 0,
                       "reasoningOutputTokens": 0}
        self._turn_id = ""
        self._interval = 0.0
        self.delay = max(0.0, float(self.ctx.params.get("mock_delay_ms") or 0) / 1000)
        self.approval_timeout = float(self.ctx.params.get("approval_timeout_seconds") or 3600)

    def _send(self, method: str, params: dict[str, Any], rpc_id: int | None = None) -> None:
        msg: dict[str, Any] = {"method": method, "params": params}
        if rpc_id is not None:
            msg = {"id": rpc_id, **msg}
        self.emit(msg)

    def _msg(self, method: str, **fields: Any) -> None:
        kind = method.rsplit("/", 1)[-1]
        self._send(method, {"msg": {"type": kind, **fields}})

    def steps(self, content: str) -> Steps:
        """One turn: emits the runtime messages, yields every wait to the driver."""
        marks = parse_markers(content)
        rate = marks.get("rate")
        self._interval = 1.0 / rate if rate else self.delay
        self.turns += 1
        turn_id = self._turn_id = f"turn-{self.turns}"
        started = time.monotonic()
        node = self.ctx.node_id
        self._send("turn/started", {"threadId": self.thread_id, "turn": {"id": turn_id, "status": "inProgress"}})
        yield self._interval
        thought = f"Node {node} considers the request and plans {int(marks.get('commands', 1))} step(s)."
        for piece in _chunks(thought, 3):
            self._msg("codex/event/agent_reasoning_delta", delta=piece)
            yield self._interval
        self._msg("codex/event/agent_reasoning", text=thought)
        extra = int(marks.get("tokens", 0))
        prompt_tokens = 200 + len(content) // 4 + extra
        self._usage(turn_id, {"inputTokens": prompt_tokens, "cachedInputTokens": 64, "outputTokens": 16,
                              "reasoningOutputTokens": 16})
        if "error" in marks:
            self._send("error", {"error": {"message": "mock failure requested", "codexErrorInfo": "other"},
                                 "willRetry": False, "threadId": self.thread_id, "turnId": turn_id})
            self._complete(turn_id, "failed")
            return
        status = "completed"
        for k in range(1, int(marks.get("commands", 1)) + 1):
            call_id = f"call_{self.turns}_{k}"
            command = ["bash", "-lc", f"echo step {k} on node {node}"]
            if "approval" in marks and k == 1:
                self._request_approval(turn_id, call_id, "rm -rf build")
                decision = yield Ask(call_id)
                if decision in ("cancel", "abort"):
                    status = "interrupted"
                    break
                if decision not in ("accept", "acceptForSession", "approved", "approved_for_session") and \
                        not isinstance(decision, dict):
                    self._msg("codex/event/exec_command_end", call_id=call_id, command=command,
                              cwd=str(self.ctx.workspace), stdout="", stderr="declined by the user",
                              aggregated_output="", exit_code=None, duration=None, status="declined",
                              turn_id=turn_id)
                    continue
            self._msg("codex/event/exec_command_begin", call_id=call_id, command=command,
                      cwd=str(self.ctx.workspace), turn_id=turn_id)
            yield self._interval
            size = int(marks.get("long", 0))
            stdout = f"step {k} on node {node}\n" + ("x" * size if size else "")
            self._msg("codex/event/exec_command_end", call_id=call_id, command=command, cwd=str(self.ctx.workspace),
                      stdout=stdout, stderr="", aggregated_output=stdout, exit_code=0,
                      duration={"secs": 0, "nanos": 1_200_000}, turn_id=turn_id)
            yield self._interval
        if status == "interrupted":
            self._complete(turn_id, status)
            return
        if self.task is not None and self.turn_cwd is not None:
            self._project_edits(content, marks)
        # The prompt is echoed on lines of its own, so routing directives in it reach the final answer.
        answer = f"Node {node} on {self.hostname} finished:\n{content[:4000]}{env_digests(content)}"
        pieces = _chunks(answer, 4)
        for i in range(int(marks.get("firehose", 0))):
            pieces.append(f" {i}")
        for piece in pieces:
            self._msg("codex/event/agent_message_content_delta", delta=piece)
            yield self._interval
        self._msg("codex/event/agent_message", message="".join(pieces), phase="final_answer")
        slow = marks.get("slow", 0.0)
        remaining = slow - (time.monotonic() - started)
        if remaining > 0:
            yield remaining
        self._usage(turn_id, {"inputTokens": prompt_tokens + 16, "cachedInputTokens": 64,
                              "outputTokens": 20 + len(answer) // 4, "reasoningOutputTokens": 0})
        self._complete(turn_id, status)

    def _project_edits(self, content: str, marks: dict[str, float]) -> None:
        """What a mock agent does in a project task's checkout (the worker commits it)."""
        assert self.task is not None and self.turn_cwd is not None
        root = self.turn_cwd.resolve()
        attempt = int(self.task.get("attempt") or 1)
        if self.task.get("kind") == "integration":
            for name in self.task.get("conflict_files") or []:
                path = (root / name).resolve()
                if path.is_relative_to(root) and path.is_file():
                    lines = path.read_text().splitlines(keepends=True)
                    path.write_text("".join(x for x in lines if not re.match(_CONFLICT_LINE, x)))
        if attempt < int(marks.get("from_attempt", 1)):
            return
        for rel in re.findall(_WRITE, content):
            path = (root / rel).resolve()
            if not path.is_relative_to(root) or ".git" in path.relative_to(root).parts:
                raise ValueError(f"[mock:write={rel}] is outside the task's checkout")
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as fh:
                fh.write(f"{self.task.get('task_id')} attempt {attempt} by node {self.ctx.node_id} of {self.ctx.job_id}\n")

    def _usage(self, turn_id: str, last: dict[str, int]) -> None:
        last["totalTokens"] = last["inputTokens"] + last["outputTokens"]
        for k, v in last.items():
            self.totals[k] += v
        self._send("thread/tokenUsage/updated", {"threadId": self.thread_id, "turnId": turn_id,
                                                 "tokenUsage": {"total": dict(self.totals), "last": last,
                                                                "modelContextWindow": 128000}})

    def _complete(self, turn_id: str, status: str) -> None:
        self._send("turn/completed", {"threadId": self.thread_id,
                                      "turn": {"id": turn_id, "status": status, "error": None}})

    def _request_approval(self, turn_id: str, call_id: str, command: str) -> None:
        rpc_id = self.rpc_ids
        self.rpc_ids += 1
        self._send("item/commandExecution/requestApproval",
                   {"threadId": self.thread_id, "turnId": turn_id, "itemId": call_id, "command": command,
                    "cwd": str(self.ctx.workspace), "reason": "mock approval",
                    "availableDecisions": ["accept", "acceptForSession", "decline", "cancel"]}, rpc_id=rpc_id)


def _approval_call(payload: dict[str, Any]) -> str:
    if payload.get("kind") != "approval_decision":
        raise ValueError(f"unsupported control kind: {payload.get('kind')!r}")
    return str(payload.get("call_id"))


class MockRuntime(MockScript, Runtime):
    """The trio driver: pauses are trio.sleep, an approval waits on a trio.Event, interrupt cancels."""

    def thread(self) -> str | None:
        return self.thread_id

    async def start(self) -> None:
        import trio

        self.setup()
        self.decisions: dict[str, tuple[trio.Event, list[Any]]] = {}
        self._turn_scope = trio.CancelScope()

    async def run_turn(self, injection_id: str, content: str) -> None:
        import trio

        with trio.CancelScope() as self._turn_scope:
            steps = self.steps(content)
            reply: Any = None
            while True:
                try:
                    wait = steps.send(reply)
                except StopIteration:
                    break
                reply = await self._wait(wait)
        if self._turn_scope.cancelled_caught:
            self._complete(self._turn_id, "interrupted")

    async def _wait(self, wait: float | Ask) -> Any:
        import trio

        if not isinstance(wait, Ask):
            await trio.sleep(wait)
            return None
        box: tuple[trio.Event, list[Any]] = (trio.Event(), [])
        self.decisions[wait.call_id] = box
        with trio.move_on_after(self.approval_timeout):
            await box[0].wait()
        self.decisions.pop(wait.call_id, None)
        return box[1][0] if box[1] else "cancel"

    async def interrupt(self) -> bool:
        """Stop the running turn where it is: it completes `interrupted`."""
        self._turn_scope.cancel()
        return True

    async def control(self, payload: dict[str, Any]) -> None:
        call_id = _approval_call(payload)
        box = self.decisions.get(call_id)
        if box is None:
            raise ValueError(f"no pending approval for call {payload.get('call_id')!r}")
        box[1].append(payload.get("decision"))
        box[0].set()


class LeanMock(MockScript):
    """The synchronous driver, inside the lean worker: a pause is host.sleep, which keeps reading
    the inbox, so approval decisions and interrupts arrive while the turn waits."""

    def __init__(self, ctx: WorkerContext, emit: Emit, host: Host) -> None:
        self.ctx = ctx
        self.emit = emit
        self.host = host
        self.task = None
        self.turn_cwd = None
        self.decisions: dict[str, list[Any]] = {}
        self.interrupted = False

    def start(self) -> None:
        self.setup()

    def run_turn(self, injection_id: str, content: str) -> None:
        self.interrupted = False
        steps = self.steps(content)
        reply: Any = None
        while not self.interrupted:
            try:
                wait = steps.send(reply)
            except StopIteration:
                return
            reply = self._wait(wait)
        steps.close()
        self._complete(self._turn_id, "interrupted")

    def _wait(self, wait: float | Ask) -> Any:
        if not isinstance(wait, Ask):
            self.host.wait_until(lambda: self.interrupted, wait)
            return None
        box: list[Any] = []
        self.decisions[wait.call_id] = box
        self.host.wait_until(lambda: bool(box) or self.interrupted, self.approval_timeout)
        self.decisions.pop(wait.call_id, None)
        return box[0] if box else "cancel"

    def interrupt(self) -> bool:
        self.interrupted = True
        return True

    def control(self, payload: dict[str, Any]) -> None:
        call_id = _approval_call(payload)
        box = self.decisions.get(call_id)
        if box is None:
            raise ValueError(f"no pending approval for call {payload.get('call_id')!r}")
        box.append(payload.get("decision"))


def _chunks(text: str, n: int) -> list[str]:
    words = text.split(" ")
    size = max(1, len(words) // n)
    out = []
    for i in range(0, len(words), size):
        out.append(" ".join(words[i : i + size]) + (" " if i + size < len(words) else ""))
    return out
