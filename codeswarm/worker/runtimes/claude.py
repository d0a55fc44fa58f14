"""The `claude` runtime: Claude Code in print mode, one process per turn, one session per node.

Each injection runs `claude -p --output-format stream-json --verbose --include-partial-messages` in
the node's workspace with the prompt on stdin; from the second turn on, `--resume <session_id>`
(taken from the previous turn's `system/init` line) keeps the node's conversation. Every
stream-json line goes to the outbox unchanged; the router's ClaudeNormalizer translates them.

Lines this runtime adds (all understood by router/normalize/claude.py):
- `{"type": "codeswarm_turn_start"}` first in every turn (Claude has no turn-start signal);
- `{"type": "permission_request", ...}` when the approval hook asks (below);
- `{"type": "codeswarm_turn_end", "status": "failed"|"interrupted", ...}` when the process ended
  without a `result` line, so the router still closes the turn.

Approvals (approval_policy other than `never`): `-p` has no interactive prompt, so a PreToolUse
hook (a small stdlib script written to a private 0700 directory) gates the tools with side effects.
The hook connects to this runtime over a unix socket, the runtime emits `permission_request`, and
the hook blocks until an `approval_decision` control arrives: accept -> allow; decline -> deny (the
model sees the refusal and goes on); cancel -> the process is stopped first, then denied, and the
turn ends `interrupted`. The hook fails closed (deny) when the socket is unreachable. Verified with
2.1.197: a hook's deny wins over `bypassPermissions`, and `continue: false` does NOT stop a tool.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import trio

from codeswarm.errors import RuntimeFailure
from codeswarm.projects import childguard
from codeswarm.worker.runtimes.base import Runtime, WorkerContext
from codeswarm.worker.runtimes.claude_proc import drain, terminate

if TYPE_CHECKING:
    from codeswarm.worker.runtimes.base import Emit

# Keep the CLI from calling home: no telemetry, error reports, auto-update or other
# non-essential traffic (verified offline under `unshare -n`, notes section 10).
QUIET_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
}
GATED_TOOLS = "Bash|Edit|Write|MultiEdit|NotebookEdit"
WRITE_TOOLS = "Edit,Write,NotebookEdit"
HOOK_TIMEOUT_SECONDS = 7 * 86_400  # the router's approval timeout answers long before this
MAX_LINE_BYTES = 900_000  # stay under the outbox's 1 MiB line limit
MAX_FIELD_CHARS = 100_000
FOR_SESSION = ("acceptforsession", "accept-for-session", "accept_for_session")
ALLOW = ("accept", "approved", "allow", *FOR_SESSION)
CANCEL = ("cancel", "abort")

HOOK_SCRIPT = r'''# codeswarm PreToolUse hook: forward the request to the worker and wait for its decision.
import json, socket, sys

def answer(decision, reason):
    print(json.dumps({"hookSpecificOutput": {"hookEventName": "PreToolUse",
                      "permissionDecision": decision, "permissionDecisionReason": reason}}))

try:
    request = sys.stdin.read()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    s.sendall(request.strip().encode() + b"\n")
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    reply = json.loads(buf)
    answer(reply["decision"], reply.get("reason", ""))
except Exception as exc:  # fail closed: no answer from codeswarm means no tool call
    answer("deny", "codeswarm approval channel unavailable: %s" % (exc,))
'''


PINNED_VERSION = "2.1.197"  # the version scripts/install-claude.sh installs and the tests verify


def resolve_binary(params: dict[str, Any], env: dict[str, str]) -> str | None:
    """params.claude_cli_path, then $CLAUDE_BIN, then `claude` on PATH, then the pinned project-local
    install of scripts/install-claude.sh. Absolute, since claude runs with cwd = the workspace."""
    for cand in (params.get("claude_cli_path"), env.get("CLAUDE_BIN"), os.environ.get("CLAUDE_BIN")):
        if isinstance(cand, str) and cand:
            if os.sep in cand:
                return str(Path(cand).expanduser().absolute())
            return shutil.which(cand, path=env.get("PATH") or os.environ.get("PATH"))
    return shutil.which("claude", path=env.get("PATH") or os.environ.get("PATH")) or project_claude()


def project_claude() -> str | None:
    """The install of scripts/install-claude.sh: $CODESWARM_TOOLS_DIR, else <repo>/.tools."""
    from codeswarm.paths import self_pyz

    pyz = self_pyz()
    root = Path(os.environ.get("CODESWARM_TOOLS_DIR") or
                (pyz.parent.parent if pyz else Path(__file__).resolve().parents[3]) / ".tools")
    mods = root / f"claude-code-{PINNED_VERSION}" / "node_modules" / "@anthropic-ai"
    # bin/claude.exe is the postinstall's hard link to the platform package's native binary.
    for cand in [mods / "claude-code" / "bin" / "claude.exe", *sorted(mods.glob("claude-code-linux-*/claude"))]:
        if os.access(cand, os.X_OK) and cand.stat().st_size > 1_000_000:  # not the pre-install stub
            return str(cand)
    return None


def build_argv(binary: str, ctx: WorkerContext, *, session_id: str | None, settings_path: str | None,
               system_prompt: str | None) -> list[str]:
    """The command line of one turn (the prompt goes to stdin: no argv length limit, no quoting)."""
    params = ctx.params
    argv = [binary, "-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages"]
    model = params.get("claude_model") or params.get("model")
    if isinstance(model, str) and model:
        argv += ["--model", model]
    # Bypass the CLI's own prompts (impossible in -p mode); the hook, when present, is the gate.
    mode = params.get("claude_permission_mode") or "bypassPermissions"
    argv += ["--permission-mode", str(mode)]
    if ctx.sandbox_mode == "read-only":
        # Claude has no OS sandbox here: read-only removes the file-writing tools (Bash stays).
        argv += ["--disallowedTools", WRITE_TOOLS]
    if settings_path:
        argv += ["--settings", settings_path]
    if system_prompt:
        argv += ["--append-system-prompt", system_prompt]
    if session_id:
        argv += ["--resume", session_id]
    return argv


def fit_line(obj: dict[str, Any]) -> dict[str, Any]:
    """Shorten huge strings (file contents, command output) so the outbox line stays < 1 MiB."""
    if len(orjson.dumps(obj)) <= MAX_LINE_BYTES:
        return obj

    def shrink(v: Any) -> Any:
        if isinstance(v, str) and len(v) > MAX_FIELD_CHARS:
            return v[:MAX_FIELD_CHARS]
        if isinstance(v, list):
            return [shrink(x) for x in v]
        if isinstance(v, dict):
            return {k: shrink(x) for k, x in v.items()}
        return v

    out = shrink(obj)
    out["truncated"] = True
    return out


@dataclass
class _Pending:
    tool_name: str | None
    done: trio.Event = field(default_factory=trio.Event)
    decision: str = "deny"
    reason: str = ""


class ClaudeRuntime(Runtime):
    name = "claude"

    def __init__(self, ctx: WorkerContext, emit: Emit) -> None:
        super().__init__(ctx, emit)
        self.session_id: str | None = ctx.params.get("claude_session_id") or None
        self.binary: str | None = None
        self._proc: trio.Process | None = None
        self._pending: dict[str, _Pending] = {}
        self._dir: Path | None = None
        self._listener: trio.SocketListener | None = None
        self._settings_path: str | None = None
        self._interrupted = False
        self._withdrawn = False  # stopped by a control `interrupt` (budget_exceeded)
        self._session_tools: set[str] = set()  # tool names accepted "for session"

    @property
    def approvals(self) -> bool:
        return self.ctx.approval_policy != "never" and not self.ctx.params.get("native_auto_approve")

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.ctx.env)
        env.update(QUIET_ENV)
        if isinstance(self.ctx.params.get("claude_config_dir"), str):
            env["CLAUDE_CONFIG_DIR"] = self.ctx.params["claude_config_dir"]
        # The CLI refuses bypassPermissions as root unless it is told it runs in a sandbox
        # (containers, CI); a batch worker has no one to prompt anyway. Only "1" is accepted.
        if os.geteuid() == 0:
            env["IS_SANDBOX"] = "1"
        env.update(childguard.env())  # claude and its commands die with this worker, even a SIGKILLed one
        return env

    async def start(self) -> None:
        self.binary = resolve_binary(self.ctx.params, {**os.environ, **self.ctx.env})
        if not self.binary or not (os.path.isfile(self.binary) and os.access(self.binary, os.X_OK)):
            raise RuntimeFailure(
                "claude runtime: Claude Code CLI not found (set provider param claude_cli_path or "
                "CLAUDE_BIN, or put `claude` on PATH; scripts/install-claude.sh installs the pinned version)"
            )
        try:  # the process guard starts now, not in the first turn
            childguard.env()
        except OSError as exc:
            raise RuntimeFailure(f"claude runtime: {exc}") from exc
        if self.resume_thread:  # a restarted worker continues the node's session
            self.session_id = self.resume_thread
        if self.approvals:
            await self._open_hook_channel()

    def thread(self) -> str | None:
        return self.session_id

    async def _open_hook_channel(self) -> None:
        # A short private path: unix socket paths are limited to ~107 bytes.
        self._dir = Path(tempfile.mkdtemp(prefix="cs-claude-"))
        os.chmod(self._dir, 0o700)
        script, sock_path = self._dir / "hook.py", self._dir / "hook.sock"
        script.write_text(HOOK_SCRIPT)
        command = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {shlex.quote(str(sock_path))}"
        settings = {"hooks": {"PreToolUse": [{"matcher": GATED_TOOLS, "hooks": [
            {"type": "command", "command": command, "timeout": HOOK_TIMEOUT_SECONDS}]}]}}
        settings_file = self._dir / "settings.json"
        settings_file.write_bytes(orjson.dumps(settings))
        self._settings_path = str(settings_file)
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await sock.bind(str(sock_path))
        sock.listen(16)
        self._listener = trio.SocketListener(sock)

    def _system_prompt(self) -> str | None:
        # The node's AGENTS.md carries the swarm's instructions; Claude only reads CLAUDE.md itself.
        ws = self.ctx.workspace
        if (ws / "CLAUDE.md").exists():
            return None
        try:
            text = (ws / "AGENTS.md").read_text(errors="replace").strip()
        except OSError:
            return None
        return text or None

    # ------------------------------------------------------------------ turns

    async def run_turn(self, injection_id: str, content: str) -> None:
        if self.binary is None:
            await self.start()
        self.emit({"type": "codeswarm_turn_start", "injection_id": injection_id})
        self._interrupted = self._withdrawn = False
        fresh = bool(self.ctx.params.get("fresh_thread_per_injection"))
        resume = None if fresh else self.session_id
        try:
            saw_init, outcome = await self._run_process(content, resume)
            if resume and not saw_init and not self._interrupted:
                # The stored session is gone (other config dir, cleaned up): start a new one.
                self.session_id = None
                saw_init, outcome = await self._run_process(content, None)
        except Exception as exc:  # e.g. the binary vanished: still close the turn, then let the worker report
            self.emit({"type": "codeswarm_turn_end", "status": "failed", "message": f"claude runtime: {exc}",
                       "error_code": "runtime_error"})
            raise
        if outcome is not None:
            self.emit({"type": "codeswarm_turn_end", **outcome})

    async def _run_process(self, content: str, resume: str | None) -> tuple[bool, dict[str, Any] | None]:
        """Run one claude process; return (saw an init line, turn-end marker or None if it had a result)."""
        assert self.binary is not None
        argv = build_argv(self.binary, self.ctx, session_id=resume, settings_path=self._settings_path,
                          system_prompt=self._system_prompt())
        self.ctx.workspace.mkdir(parents=True, exist_ok=True)
        proc = await trio.lowlevel.open_process(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=str(self.ctx.workspace), env=self._env(), start_new_session=True,
        )
        self._proc = proc
        # When resuming, lines before `init` are held back: a stale session id gives only an error
        # `result` ("No conversation found"), which must not end the turn we are about to retry.
        state: dict[str, Any] = {"init": False, "result": False, "held": [] if resume else None}
        stderr_tail: list[bytes] = []
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._feed_stdin, proc, content)
                nursery.start_soon(drain, proc.stderr, stderr_tail)
                if self._listener is not None:
                    nursery.start_soon(self._serve_hooks, self._listener)
                await self._pump_stdout(proc, state)
                await proc.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._deny_all("the turn ended")
            if proc.returncode is None:
                with trio.CancelScope(shield=True):
                    await terminate(proc)
            self._proc = None
        if state["result"]:
            return state["init"], None
        if self._interrupted:
            return state["init"], {"status": "interrupted", "message": "turn interrupted"}
        err = b"".join(stderr_tail).decode(errors="replace").strip()[-2000:]
        message = f"claude exited with code {proc.returncode} without a result" + (f": {err}" if err else "")
        return state["init"], {"status": "failed", "message": message, "exit_code": proc.returncode,
                               "error_code": "process_exited"}

    async def _feed_stdin(self, proc: trio.Process, content: str) -> None:
        assert proc.stdin is not None
        try:
            await proc.stdin.send_all(content.encode())
            await proc.stdin.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _pump_stdout(self, proc: trio.Process, state: dict[str, Any]) -> None:
        assert proc.stdout is not None
        line = bytearray()  # amortized appends: a multi-MiB line arrives in many small chunks
        async for chunk in proc.stdout:
            start = 0
            while (nl := chunk.find(b"\n", start)) != -1:
                line += chunk[start:nl]
                self._on_line(bytes(line), state)
                line.clear()
                start = nl + 1
            line += chunk[start:]
        if line.strip():
            self._on_line(bytes(line), state)

    def _on_line(self, raw: bytes, state: dict[str, Any]) -> None:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return  # not stream-json (a stray print); nothing the router could use
        if not isinstance(obj, dict):
            return
        is_init = obj.get("type") == "system" and obj.get("subtype") == "init"
        if is_init:
            state["init"] = True
            for held in state["held"] or ():
                self.emit(held)
            state["held"] = None
        elif state["held"] is not None:
            state["held"].append(fit_line(obj))
            return
        if obj.get("type") == "result":
            state["result"] = True
            if self._withdrawn:  # claude may still write its result when stopped: the turn was interrupted
                obj = {**obj, "codeswarm_interrupted": True}
        if (is_init or obj.get("type") == "result") and isinstance(obj.get("session_id"), str):
            self.session_id = obj["session_id"]  # the next turn resumes this conversation
        self.emit(fit_line(obj))

    # ------------------------------------------------------------------ approvals

    async def _serve_hooks(self, listener: trio.SocketListener) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                stream = await listener.accept()
                nursery.start_soon(self._handle_hook, stream)

    async def _handle_hook(self, stream: trio.SocketStream) -> None:
        async with stream:
            buf = b""
            while not buf.endswith(b"\n") and len(buf) < (8 << 20):
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                buf += chunk
            try:
                request = orjson.loads(buf)
            except orjson.JSONDecodeError:
                return  # the hook then denies
            call_id = str(request.get("tool_use_id") or f"hook-{id(request)}")
            tool = request.get("tool_name") if isinstance(request.get("tool_name"), str) else None
            pending = _Pending(tool_name=tool)
            if tool in self._session_tools:
                pending.decision = "allow"
            else:
                self._pending[call_id] = pending
                self.emit({"type": "permission_request", "tool_use_id": call_id, "tool_name": tool,
                           "input": request.get("tool_input"), "cwd": request.get("cwd")})
                try:
                    await pending.done.wait()
                finally:
                    self._pending.pop(call_id, None)
            reply = {"decision": pending.decision, "reason": pending.reason}
            try:
                await stream.send_all(orjson.dumps(reply) + b"\n")
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    async def control(self, payload: dict[str, Any]) -> None:
        if payload.get("kind") != "approval_decision":
            raise ValueError(f"unsupported control kind: {payload.get('kind')!r}")
        call_id = payload.get("call_id")
        pending = self._pending.get(call_id) if isinstance(call_id, str) else None
        if pending is None:
            raise ValueError(f"no pending approval for call_id {call_id!r}")
        decision = str(payload.get("decision") or ("accept" if payload.get("approved") else "decline")).lower()
        if decision in ALLOW:
            pending.decision, pending.reason = "allow", "approved by the operator (codeswarm)"
            if decision in FOR_SESSION and pending.tool_name:
                self._session_tools.add(pending.tool_name)
        elif decision in CANCEL:
            # Stop the process BEFORE releasing the hook, so the tool can never start.
            self._interrupted = True
            pending.reason = "cancelled by the operator (codeswarm); the turn was stopped"
            if self._proc is not None:
                await terminate(self._proc)
        else:
            pending.reason = "declined by the operator (codeswarm)"
        pending.done.set()

    def _deny_all(self, why: str) -> None:
        for pending in list(self._pending.values()):
            pending.reason = f"denied by codeswarm: {why}"
            pending.done.set()
        self._pending.clear()

    async def interrupt(self) -> bool:
        """Stop the turn's claude process: the turn ends `interrupted` (codeswarm_turn_end)."""
        if self._proc is None:
            return False
        self._interrupted = self._withdrawn = True
        self._deny_all("the turn was interrupted")
        await terminate(self._proc)
        return True

    async def stop(self) -> None:
        self._interrupted = True
        self._deny_all("the worker is stopping")
        if self._proc is not None:
            await terminate(self._proc)
        if self._listener is not None:
            await self._listener.aclose()
            self._listener = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
