"""The `codex` runtime: drive the pinned native `codex app-server` over stdio JSON-RPC.

One app-server process and one thread per node; one `turn/start` per injection in the node's
workspace. Every message the server sends is emitted raw (the router normalizes). Facts and
pitfalls (P-numbers) are in the notes: ../shared/notes/codex-app-server.md.

Concurrency: only the task inside `start()` / `run_turn()` reads stdout; `control()` only writes
(an approval answer), under the same send lock. Server requests we do not understand get a
JSON-RPC error at once, and approvals nobody answers are denied after `approval_timeout_seconds`,
so a turn can never hang on us (P4).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import trio

from codeswarm.errors import RuntimeFailure
from codeswarm.projects import childguard
from codeswarm.worker.runtimes.base import Runtime, WorkerContext

if TYPE_CHECKING:
    from codeswarm.worker.runtimes.base import Emit

APPROVAL_METHODS = {
    "item/commandExecution/requestApproval": "v2",
    "item/fileChange/requestApproval": "v2",
    "execCommandApproval": "native",  # legacy v1 request shapes
    "applyPatchApproval": "native",
}
_DENY = {"v2": "cancel", "native": "abort"}  # deny and abort the turn (PROTOCOL.md 4.4)
_ACCEPT = {"v2": "accept", "native": "approved"}
# Offline-friendly defaults (P6, P17); any of them can be overridden through params "codex_config".
DEFAULT_CONFIG: dict[str, Any] = {"features.plugins": False, "features.apps": False, "analytics.enabled": False}
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


class CodexError(RuntimeFailure):
    """The app-server could not be started or refused the session."""


def toml_value(v: Any) -> str:
    """A Python value as a TOML literal for `codex -c key=value` (inline tables for dicts)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return orjson.dumps(v).decode()  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        items = (f"{k if _BARE_KEY.match(str(k)) else toml_value(str(k))} = {toml_value(x)}" for k, x in v.items())
        return "{" + ", ".join(items) + "}"
    raise ValueError(f"cannot express {type(v).__name__} in TOML")


PINNED_VERSION = "0.169.0"
TRAILING_SECONDS = 0.15  # read after turn/completed: a late tokenUsage usually follows within milliseconds


def find_codex(params: dict[str, Any]) -> str | None:
    """Binary: params codex_path, else $CODEX_BIN, else `codex` on PATH, else the pinned project-local
    install of scripts/install-codex.sh (next to the .pyz's repo, or $CODESWARM_TOOLS_DIR)."""
    for cand in (params.get("codex_path"), os.environ.get("CODEX_BIN")):
        if cand:
            # codex runs with cwd = the workspace: a relative path must not change meaning there.
            return str(Path(cand).expanduser().absolute()) if os.sep in str(cand) else shutil.which(str(cand))
    return shutil.which("codex") or project_codex()


def project_codex() -> str | None:
    from codeswarm.paths import self_pyz

    pyz = self_pyz()
    # The same root as scripts/install-codex.sh: $CODESWARM_TOOLS_DIR, else <repo>/.tools.
    root = Path(os.environ.get("CODESWARM_TOOLS_DIR") or
                (pyz.parent.parent if pyz else Path(__file__).resolve().parents[3]) / ".tools")
    mods = root / f"codex-{PINNED_VERSION}" / "node_modules" / "@openai"
    for cand in sorted(mods.glob("codex-linux-*/vendor/*/bin/codex")):
        if os.access(cand, os.X_OK):
            return str(cand)
    return None


def build_argv(binary: str, params: dict[str, Any]) -> list[str]:
    config: dict[str, Any] = dict(DEFAULT_CONFIG)
    if params.get("model"):
        config["model"] = str(params["model"])
    providers = params.get("model_providers")
    if isinstance(providers, dict):
        for name, spec in providers.items():
            config[f"model_providers.{name}"] = spec
    if params.get("model_provider"):
        config["model_provider"] = str(params["model_provider"])
    extra = params.get("codex_config")
    if isinstance(extra, dict):
        config.update(extra)
    argv = [binary, "app-server"]
    for key, value in config.items():
        argv += ["-c", f"{key}={toml_value(value)}"]
    return argv


def approval_policy(value: str) -> str:
    # 0.169.0 knows untrusted | on-request | never; "on-failure" (older codex) is closest to on-request.
    return {"on-failure": "on-request"}.get(value, value)


class _LineReader:
    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buf = bytearray()
        self._scanned = 0

    async def next(self) -> bytes | None:
        while True:
            i = self._buf.find(b"\n", self._scanned)
            if i >= 0:
                line = bytes(self._buf[:i])
                del self._buf[: i + 1]
                self._scanned = 0
                return line
            self._scanned = len(self._buf)
            chunk = await self._stream.receive_some(1 << 16)
            if not chunk:
                line, self._buf = bytes(self._buf), bytearray()
                return line or None
            self._buf += chunk


class CodexRuntime(Runtime):
    name = "codex"

    def __init__(self, ctx: WorkerContext, emit: Emit) -> None:
        super().__init__(ctx, emit)
        p = ctx.params
        timeout = p.get("approval_timeout_seconds")
        self.approval_timeout = float(3600 if timeout is None else timeout)  # 0: wait forever (P4!)
        self.startup_timeout = float(p.get("codex_startup_timeout_seconds") or 120)
        self.ephemeral = bool(p.get("codex_ephemeral", False))
        self.fresh_thread = bool(p.get("fresh_thread_per_injection", False))
        self.auto_approve = bool(p.get("native_auto_approve", False))
        self.thread_id: str | None = None
        self.turn_id: str | None = None
        self.returncode: int | None = None
        self._proc: trio.Process | None = None
        self._reader: _LineReader | None = None
        self._send_lock = trio.Lock()
        self._turn_lock = trio.Lock()
        self._next_id = 0
        self._pending: dict[Any, dict[str, Any]] = {}  # rpc_id -> approval request message
        self._nursery: trio.Nursery | None = None
        self._stopping = False
        self._turns = 0

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        await self._spawn()
        if self.resume_thread:  # a restarted worker continues the node's thread (from its rollout)
            self.thread_id = self.resume_thread
        await self._open_thread(resume=bool(self.resume_thread))

    def thread(self) -> str | None:
        return self.thread_id

    async def _spawn(self) -> None:
        binary = find_codex(self.ctx.params)
        if not binary:
            raise CodexError("codex binary not found: set params codex_path, CODEX_BIN, or put codex on PATH "
                             "(scripts/install-codex.sh installs the pinned version)")
        env = dict(os.environ)
        env.update({k: str(v) for k, v in (self.ctx.env or {}).items()})
        home = self._codex_home()
        if home is not None:
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
            env["CODEX_HOME"] = str(home)
        env.setdefault("RUST_LOG", "warn")
        env.setdefault("NO_COLOR", "1")  # plain stderr log
        try:  # the app-server and its commands die with this worker, even a SIGKILLed one
            env.update(childguard.env())
        except OSError as e:
            raise CodexError(str(e)) from e
        log_path = self._log_path()
        log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.ctx.workspace.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            # Own session/process group: stop() can signal codex and its helpers together (P12).
            self._proc = await trio.lowlevel.open_process(
                build_argv(binary, self.ctx.params), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=log_fd, env=env, cwd=str(self.ctx.workspace), start_new_session=True)
        except OSError as e:
            raise CodexError(f"cannot start {binary}: {e}") from e
        finally:
            os.close(log_fd)
        assert self._proc.stdout is not None
        self._reader = _LineReader(self._proc.stdout)
        self.returncode = None
        try:
            with trio.fail_after(self.startup_timeout):
                await self._call("initialize", {
                    "clientInfo": {"name": "codeswarm", "title": "Codeswarm worker", "version": "1"},
                    "capabilities": {"experimentalApi": False, "requestAttestation": False}})
            await self._send({"method": "initialized"})
        except BaseException:
            if self.returncode is None:  # a server that cannot even initialize is of no use
                _killpg(self._proc, signal.SIGKILL)
            await self._reap()
            raise

    def _codex_home(self) -> Path | None:
        raw = self.ctx.params.get("codex_home")
        if not raw:
            return None  # inherit CODEX_HOME or ~/.codex: that is where `codex login` keeps credentials
        text = str(raw).format(node_id=self.ctx.node_id, job_id=self.ctx.job_id, swarm_root=self.ctx.swarm_root)
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.ctx.swarm_root / path

    def _log_path(self) -> Path:
        return self.ctx.swarm_root / "logs" / f"codex_{self.ctx.job_id}_{self.ctx.node_id:02d}.stderr.log"

    async def _open_thread(self, resume: bool) -> None:
        params: dict[str, Any] = {"cwd": str(self.ctx.workspace),
                                  "approvalPolicy": approval_policy(self.ctx.approval_policy),
                                  "sandbox": self.ctx.sandbox_mode}
        if self.ctx.params.get("model"):
            params["model"] = str(self.ctx.params["model"])
        with trio.fail_after(self.startup_timeout):
            if resume and self.thread_id and not self.ephemeral:
                try:
                    result = await self._call("thread/resume", {**params, "threadId": self.thread_id})
                    self.thread_id = str(result["thread"]["id"])
                    return
                except CodexError:
                    pass  # the rollout is gone: a fresh thread is the best we can do
            result = await self._call("thread/start", {**params, "ephemeral": self.ephemeral})
        self.thread_id = str(result["thread"]["id"])

    async def stop(self) -> None:
        """Close stdin, then SIGTERM, then SIGKILL the process group (P12: in that order)."""
        self._stopping = True
        proc = self._proc
        if proc is None:
            return
        with trio.CancelScope(shield=True):
            with trio.move_on_after(1):
                async with self._send_lock:
                    if proc.stdin is not None:
                        try:
                            await proc.stdin.aclose()
                        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                            pass
            # stdin EOF ends it in ~15 ms and kills running commands; the signals are for a hung server.
            # Kept under the worker's 10 s budget for stop().
            for sig, grace in ((None, 3.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
                if sig is not None:
                    _killpg(proc, sig)
                with trio.move_on_after(grace):
                    self.returncode = await proc.wait()
                    return

    # -- turns ---------------------------------------------------------------------------------

    async def run_turn(self, injection_id: str, content: str) -> None:
        async with self._turn_lock:
            if not await self._ensure_running():
                return
            if self.fresh_thread and self._turns > 0:
                await self._open_thread(resume=False)
            self._turns += 1
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    await self._turn(content)
                finally:
                    self._nursery = None
                    self._pending.clear()  # the turn is over: its approvals are moot
                    nursery.cancel_scope.cancel()

    async def _ensure_running(self) -> bool:
        """Restart a dead app-server (resuming the thread from its rollout); False if that fails."""
        if self._proc is not None and self._reader is not None and self._proc.poll() is None:
            return True
        if self._proc is not None and self._reader is not None:
            await self._reap()  # died between turns: start over (the thread resumes from its rollout)
        try:
            await self._spawn()
            await self._open_thread(resume=True)
            return True
        except (CodexError, OSError, trio.TooSlowError) as e:
            self._emit_failure(None, f"codex app-server unavailable: {e}", "runtimeUnavailable")
            return False

    async def _turn(self, content: str) -> None:
        self.turn_id = None
        try:
            rid = await self._request("turn/start", {
                "threadId": self.thread_id, "cwd": str(self.turn_cwd or self.ctx.workspace),
                "input": [{"type": "text", "text": content, "text_elements": []}]})
        except CodexError:
            await self._on_exit()
            return
        while True:
            msg = await self._next()
            if msg is None:
                await self._on_exit()
                return
            if msg.get("id") == rid and "method" not in msg:
                if "error" in msg:
                    err = msg.get("error") or {}
                    self._emit_failure(None, f"turn/start failed: {err.get('message')}", "turnStartFailed")
                    return
                self.turn_id = ((msg.get("result") or {}).get("turn") or {}).get("id")
            elif msg.get("method") == "turn/completed":
                params = msg.get("params") or {}
                done_id = (params.get("turn") or {}).get("id")
                if self.turn_id is None or done_id == self.turn_id:
                    await self._read_trailing()
                    return

    async def _read_trailing(self) -> None:
        """Read what the app-server sends just after turn/completed (codex can send the turn's
        thread/tokenUsage/updated then) while the worker still holds the turn, so those lines name
        its injection. Later ones are read when the server is next read (the next turn) and the
        router attributes them to this turn by its id (docs/SPEND.md, late usage)."""
        with trio.move_on_after(TRAILING_SECONDS):
            while await self._next() is not None:
                pass

    async def _on_exit(self) -> None:
        """stdout closed under a running turn: report it (unless we are stopping) and end the turn."""
        await self._reap()
        if self._stopping:
            self.emit({"method": "turn/completed", "params": {
                "threadId": self.thread_id, "turn": {"id": self.turn_id, "status": "interrupted", "error": None}}})
            return
        tail = _tail(self._log_path())
        message = f"codex app-server exited (code {self.returncode})" + (f": {tail}" if tail else "")
        self._emit_failure(self.turn_id, message, "runtimeExited")

    async def _reap(self) -> None:
        """After stdout EOF: collect the exit code, killing the group if it lingers without stdout."""
        self._reader = None
        proc = self._proc
        if proc is None:
            self.returncode = -1
            return
        with trio.CancelScope(shield=True):
            with trio.move_on_after(3):
                self.returncode = await proc.wait()
                return
            _killpg(proc, signal.SIGKILL)
            with trio.move_on_after(3):
                self.returncode = await proc.wait()
                return
        self.returncode = -1

    def _emit_failure(self, turn_id: str | None, message: str, info: str) -> None:
        """Synthesize the app-server's own failure shape so the normalizer needs no special case."""
        error = {"message": message, "codexErrorInfo": info, "additionalDetails": None}
        self.emit({"method": "error", "params": {"error": error, "willRetry": False,
                                                 "threadId": self.thread_id, "turnId": turn_id}})
        self.emit({"method": "turn/completed", "params": {
            "threadId": self.thread_id, "turn": {"id": turn_id, "status": "failed", "error": error}}})

    async def interrupt(self) -> bool:
        """`turn/interrupt`: codex stops the turn and reports it `interrupted` (turn/completed)."""
        if self.thread_id is None or self.turn_id is None or self._proc is None:
            return False
        await self._request("turn/interrupt", {"threadId": self.thread_id, "turnId": self.turn_id})
        return True

    # -- approvals -----------------------------------------------------------------------------

    async def control(self, payload: dict[str, Any]) -> None:
        if payload.get("kind") != "approval_decision":
            raise ValueError(f"unsupported control kind: {payload.get('kind')!r}")
        request = self._find_pending(payload.get("rpc_id"), payload.get("call_id"))
        if request is None:
            return  # already answered, timed out, or its turn ended: nothing to do
        dialect = APPROVAL_METHODS[request["method"]]
        decision = payload.get("decision")
        if decision is None:
            decision = _ACCEPT[dialect] if payload.get("approved") else ("decline" if dialect == "v2" else "denied")
        await self._answer(request, decision)

    def _find_pending(self, rpc_id: Any, call_id: Any) -> dict[str, Any] | None:
        if rpc_id is not None and rpc_id in self._pending:
            return self._pending[rpc_id]
        for request in self._pending.values():
            p = request.get("params") or {}
            if call_id is not None and call_id in (p.get("itemId"), p.get("callId"), p.get("approvalId")):
                return request
        return None

    async def _answer(self, request: dict[str, Any], decision: Any) -> None:
        if self._pending.pop(request["id"], None) is None:
            return
        await self._send({"id": request["id"], "result": {"decision": decision}})

    async def _expire(self, request: dict[str, Any]) -> None:
        await trio.sleep(self.approval_timeout)
        await self._answer(request, _DENY[APPROVAL_METHODS[request["method"]]])

    # -- JSON-RPC plumbing ---------------------------------------------------------------------

    async def _next(self) -> dict[str, Any] | None:
        """Read, emit and dispatch the next message; None at EOF."""
        while self._reader is not None:
            line = await self._reader.next()
            if line is None:
                return None
            try:
                msg = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # not protocol (stray output): ignore
            if not isinstance(msg, dict):
                continue
            if "method" in msg and "id" in msg:  # server -> client request (P2: no jsonrpc field)
                await self._on_server_request(msg)
            else:
                self.emit(msg)
            return msg
        return None

    async def _on_server_request(self, msg: dict[str, Any]) -> None:
        method = msg.get("method")
        dialect = APPROVAL_METHODS.get(method) if isinstance(method, str) else None
        if dialect is None:
            self.emit(msg)
            await self._send({"id": msg["id"], "error": {
                "code": -32601, "message": f"codeswarm does not support server request {method!r}"}})
            return
        if self.auto_approve:
            await self._send({"id": msg["id"], "result": {"decision": _ACCEPT[dialect]}})
            return
        self._pending[msg["id"]] = msg  # before emitting: the decision may come back at once
        self.emit(msg)
        if self._nursery is not None and self.approval_timeout > 0:
            self._nursery.start_soon(self._expire, msg)
        elif self._nursery is None:
            await self._answer(msg, _DENY[dialect])  # no turn to attach it to

    async def _request(self, method: str, params: dict[str, Any]) -> int:
        # Our ids start at 1; the server's request ids start at 0 in their own space (P3).
        self._next_id += 1
        await self._send({"id": self._next_id, "method": method, "params": params})
        return self._next_id

    async def _call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        rid = await self._request(method, params)
        while True:
            msg = await self._next()
            if msg is None:
                await self._reap()
                raise CodexError(f"codex app-server exited during {method} (code {self.returncode}): "
                                 f"{_tail(self._log_path())}")
            if msg.get("id") == rid and "method" not in msg:
                if "error" in msg:
                    raise CodexError(f"{method} failed: {(msg.get('error') or {}).get('message')}")
                result = msg.get("result")
                return result if isinstance(result, dict) else {}

    async def _send(self, msg: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise CodexError("codex app-server is not running")
        async with self._send_lock:
            try:
                await proc.stdin.send_all(orjson.dumps(msg) + b"\n")
            except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
                if msg.get("method") in ("turn/start", "thread/start", "thread/resume", "initialize"):
                    raise CodexError(f"codex app-server closed its input: {e}") from e
                # an answer to a server that is gone: the reader will report the exit


def _killpg(proc: trio.Process, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: Path, limit: int = 600) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode("utf-8", "replace").strip().replace("\n", " | ")
    except OSError:
        return ""
