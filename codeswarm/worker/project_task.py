"""The worker's side of a project task: checkout and branch before the turn; commit, verify, push after.

The router sends a task as an ordinary `user` inbox line with a `project_task` object:
  {project_id, task_id, attempt, kind ("task"|"integration"), repo, branch, start, merges,
   start_commit?, merge_commits?, verify, verify_timeout, paths?, timeout?}
The worker (not only the agent) commits what changed, checks that only the task's `paths` changed,
runs `verify` in the task's checkout, pushes the branch only when all passed, and reports one
`project_task_result` lifecycle line. An attempt can be stopped (`AttemptControl.stop`: the project
was cancelled, or its `timeout` ran out): the agent's turn is interrupted, a running git or verify is
killed with its process group, and the result says why.
"""

from __future__ import annotations

import fnmatch
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import trio

from codeswarm.errors import CodeswarmError
from codeswarm.projects import childguard, gitops, gitproc

T = TypeVar("T")

DEFAULT_VERIFY_TIMEOUT = 600.0
INTERRUPT_GRACE = 15.0   # an interrupted agent turn gets this long to end before it is cut


def checkout_dir(workspace: Path, project_id: str) -> Path:
    return workspace / "projects" / project_id


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(m, str) for m in value)


def valid_spec(spec: Any) -> str | None:
    """None when spec is usable, else what is wrong (a forged or truncated line must not run git)."""
    if not isinstance(spec, dict):
        return "project_task must be an object"
    for key in ("project_id", "task_id", "repo", "branch", "start"):
        if not isinstance(spec.get(key), str) or not spec[key]:
            return f"project_task.{key} must be a non-empty string"
    if "/" in spec["project_id"] or spec["project_id"].startswith("."):
        return "project_task.project_id must not contain '/'"
    if not str(spec["branch"]).startswith(gitops.BRANCH_PREFIX + "/"):
        return "project_task.branch must be a codeswarm/ branch"
    for key in ("merges", "merge_commits", "paths"):
        if not _str_list(spec.get(key) or []):
            return f"project_task.{key} must be a list of strings"
    commits = [spec.get("start_commit") or "", *(spec.get("merge_commits") or [])]
    if spec.get("start_commit") is not None and not all(gitops.SHA.fullmatch(c) for c in commits):
        return "project_task.start_commit and merge_commits must be commit ids"
    timeout = spec.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        return "project_task.timeout must be a positive number of seconds"
    return None


def outside_paths(changed: list[str], paths: list[str]) -> list[str]:
    """The changed files no entry of `paths` allows: an entry is a directory prefix ("src/api/" or
    "src/api"), a file, or a glob ("docs/*.md")."""
    def allowed(name: str) -> bool:
        return any(name == p.rstrip("/") or name.startswith(p.rstrip("/") + "/") or fnmatch.fnmatchcase(name, p)
                   for p in paths)
    return [f for f in changed if not allowed(f)]


class AttemptControl:
    """Stops a running attempt from outside (a cancel, a timeout): interrupts the agent's turn
    gently (then cuts it after INTERRUPT_GRACE), or cancels the git/verify step under way (its git
    processes are killed: `git`, the attempt's GitStop). `warn` tells the user what went wrong
    while stopping (the worker writes it as a non-fatal worker_error)."""

    def __init__(self, warn: Callable[[str], None] | None = None) -> None:
        self.reason: str | None = None
        self.stage = "checkout"
        self.scope: trio.CancelScope | None = None
        self.runtime: Any = None
        self.nursery: trio.Nursery | None = None
        self.git = gitproc.GitStop()
        self.interrupt_error: str | None = None
        self.warn = warn

    def stop(self, reason: str) -> None:
        if self.reason is not None or self.scope is None:
            self.reason = self.reason or reason
            return
        self.reason = reason
        if self.stage == "agent" and self.runtime is not None and self.nursery is not None:
            self.nursery.start_soon(self._interrupt_agent, self.scope)
        else:
            self.scope.cancel()

    async def _interrupt_agent(self, scope: trio.CancelScope) -> None:
        try:
            stopped = await self.runtime.interrupt()
        except (CodeswarmError, OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            # the turn is cut below either way; the user hears why it was not stopped gently
            self.interrupt_error = f"{type(exc).__name__}: {exc}"[:500]
            if self.warn is not None:
                self.warn(f"project task: the runtime could not interrupt the turn ({self.interrupt_error});"
                          f" the worker cuts it")
            stopped = False
        if not stopped:
            scope.cancel()
            return
        await trio.sleep(INTERRUPT_GRACE)
        scope.cancel()

    async def expire(self, seconds: float) -> None:
        await trio.sleep(seconds)
        self.stop(f"the attempt timed out after {seconds:g} s")


VERIFY_MARK = "CODESWARM_VERIFY"
# Checkouts where a stopped attempt's git outlived STOP_WAIT: its locks may be live, never cleared.
LIVE_GIT: set[Path] = set()


async def run_verify(command: str, cwd: Path, timeout: float) -> tuple[bool, str]:
    """Run a verify command in the task's checkout; (passed, the tail of its combined output).
    On a timeout or a cancel the whole process group is killed (a verify's children must not outlive it)."""
    (cwd / ".git" / "codeswarm-clean").unlink(missing_ok=True)  # verify may leave build output behind
    mark = f"{os.getpid()}-{time.monotonic_ns()}"
    try:  # childguard: the verify and its children die with the worker, even a SIGKILLed one
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", VERIFY_MARK: mark, **childguard.env()}
        proc = await trio.lowlevel.open_process(["bash", "-c", command], cwd=cwd, stdout=subprocess.PIPE,
                                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                start_new_session=True, env=env)
    except OSError as exc:
        return False, f"[cannot run verify: {exc}]"
    tail = bytearray()
    timed_out = False
    try:
        with trio.move_on_after(timeout) as scope:
            assert proc.stdout is not None
            async for chunk in proc.stdout:
                tail += chunk
                del tail[:-gitops.OUTPUT_TAIL - 8]
            await proc.wait()
        timed_out = scope.cancelled_caught
    finally:
        if proc.returncode is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            gitproc.kill_marked(VERIFY_MARK, mark)  # what left the group (setsid) still carries the verify's mark
            with trio.CancelScope(shield=True):
                await proc.wait()
    out = gitops.tail_text(bytes(tail))
    if timed_out:
        return False, out + f"\n[verify timed out after {timeout:.0f} s]"
    if proc.returncode != 0:
        out += f"\n[verify exited with {proc.returncode}]"
    return proc.returncode == 0, out


def attempt_result(spec: dict[str, Any], stage: str = "checkout", error: str | None = None) -> dict[str, Any]:
    """A `project_task_result` (not ok until the attempt says so)."""
    return {"project_id": spec["project_id"], "task_id": spec["task_id"], "attempt": spec.get("attempt", 1),
            "kind": spec.get("kind", "task"), "branch": spec["branch"], "ok": False, "commit": None, "stage": stage,
            "error": error, "verify_output": None}


async def run_project_turn(workspace: Path, spec: dict[str, Any], runtime: Any,
                           run_turn: Callable[[], Awaitable[str | None]],
                           control: AttemptControl | None = None) -> dict[str, Any]:
    """Run one attempt of a task around `run_turn` (which returns the turn's final status)."""
    control = control or AttemptControl()
    result = attempt_result(spec)
    async with trio.open_nursery() as nursery:
        control.nursery, control.runtime = nursery, runtime
        if spec.get("timeout"):
            nursery.start_soon(control.expire, float(spec["timeout"]))
        try:
            await _attempt(workspace, spec, runtime, run_turn, control, result)
        finally:
            control.scope = None
            nursery.cancel_scope.cancel()
    if control.reason is not None and not result["ok"]:
        result["error"] = f"{control.reason} (during {result['stage']})"
        result["stopped"] = control.reason
    if control.interrupt_error is not None:
        result["interrupt_error"] = control.interrupt_error
        result["error"] = (result["error"] or "") + (f"; the runtime could not interrupt the turn "
                                                     f"({control.interrupt_error}), so the worker cut it")
    _after_git_stop(control, checkout_dir(workspace, spec["project_id"]), result)
    return result


def _after_git_stop(control: AttemptControl, checkout: Path, result: dict[str, Any]) -> None:
    """Say what a stop did to git, and leave the clone usable for the next attempt."""
    stop = control.git
    if not stop.stopped:
        return
    if stop.killed:
        result["git_killed"] = list(stop.killed)   # process groups (leader pids) killed by the stop
    if stop.unfinished:  # a git thread still runs: its locks are live, leave them
        LIVE_GIT.add(checkout)
        result["warning"] = (f"a git step still ran {gitproc.STOP_WAIT:g} s after the stop killed its "
                             f"processes; the checkout {checkout} may be in use")
        if control.warn is not None:
            control.warn(f"project task: {result['warning']}")
        return
    if checkout.is_dir():
        removed = gitops.clear_locks(checkout)
        if removed:
            result["cleared_locks"] = removed


async def _attempt(workspace: Path, spec: dict[str, Any], runtime: Any, run_turn: Callable[[], Awaitable[str | None]],
                   control: AttemptControl, result: dict[str, Any]) -> None:
    checkout = checkout_dir(workspace, spec["project_id"])
    kind = spec.get("kind", "task")
    paths = list(spec.get("paths") or [])
    timings: dict[str, float] = {}
    result["timings_ms"] = timings
    sent, received = spec.get("_sent"), spec.get("_received")
    if isinstance(sent, (int, float)) and isinstance(received, (int, float)):
        timings["inbox"] = round((received - sent) * 1000, 1)          # router decision -> line read (clocks of both)
        timings["queued"] = round((time.time() - received) * 1000, 1)  # read -> this attempt starts
    mark = time.monotonic()

    def lap(stage: str) -> None:
        nonlocal mark
        now = time.monotonic()
        timings[stage] = round((now - mark) * 1000, 1)
        mark = now

    def step(stage: str) -> trio.CancelScope:
        """A cancel scope for one stage, so that AttemptControl.stop reaches what runs now."""
        result["stage"] = control.stage = stage
        control.scope = trio.CancelScope()
        if control.reason is not None:
            control.scope.cancel()
        return control.scope

    def prepare() -> tuple[gitops.MergeConflict | None, str | None]:
        if checkout not in LIVE_GIT and (checkout / ".git").is_dir():
            # a git of this node's previous worker, SIGKILLed with it (childguard), left its locks;
            # nothing of this worker runs git here now (an attempt waits for its git to end)
            stale = gitops.clear_locks(checkout)
            if stale:
                result["stale_locks"] = stale
        conflict = gitops.task_checkout(spec["repo"], checkout, spec["branch"], spec["start"],
                                        tuple(spec.get("merges") or ()), spec.get("start_commit"),
                                        tuple(spec.get("merge_commits") or ()), allow_conflicts=kind == "integration")
        return conflict, (gitops.head(checkout) if paths else None)

    async def in_git(fn: Callable[..., T], *args: Any) -> T:
        """A gitops step in a thread; a stop kills its git (gitproc.run_stoppable)."""
        return await gitproc.run_stoppable(control.git, fn, *args)

    try:
        with step("checkout"):
            conflict, start_head = await in_git(prepare)
    except gitops.GitError as exc:
        result["error"] = str(exc)
        return
    if control.reason is not None:
        return
    lap("checkout")
    if conflict is not None:
        result["conflict_files"] = list(conflict.files)
    runtime.turn_cwd, runtime.task = checkout, {**spec, "checkout": str(checkout),
                                                "conflict_files": result.get("conflict_files", [])}
    status: str | None = "interrupted"
    try:
        with step("agent") as agent_scope:
            status = await run_turn()
        result["turn_cut"] = agent_scope.cancelled_caught  # the turn never said it ended: the worker says so
    finally:
        runtime.turn_cwd, runtime.task = None, None
        lap("agent")
    if control.reason is not None:
        return
    if status not in (None, "completed"):
        result["error"] = f"the agent's turn ended {status}"
        return
    try:
        with step("commit"):
            message = f"codeswarm: {spec['project_id']}/{spec['task_id']} attempt {result['attempt']}"
            result["commit"] = await in_git(gitops.commit_all, checkout, message)
            if paths and start_head:
                changed = await in_git(gitops.changed_files, checkout, start_head)
                outside = outside_paths(changed, paths)
                if outside:
                    result["stage"] = "paths"
                    result["outside_paths"] = outside[:100]
                    result["error"] = (f"changed files outside the task's paths ({', '.join(paths)}): "
                                       f"{', '.join(outside[:20])}" + (" ..." if len(outside) > 20 else ""))
                    return
        if control.reason is not None:
            return
        lap("commit")
        if spec.get("verify"):
            with step("verify"):
                timeout = float(spec.get("verify_timeout") or DEFAULT_VERIFY_TIMEOUT)
                ok, output = await run_verify(spec["verify"], checkout, timeout)
            if control.reason is not None:
                return
            result["verify_output"] = output
            lap("verify")
            if not ok:
                result["error"] = "verify failed"
                return
        with step("push"):
            # the next task's checkout needs a clean tree: make it now, while the branch is pushed
            async with trio.open_nursery() as both:
                both.start_soon(in_git, gitops.tidy, checkout)
                await in_git(gitops.push, checkout, spec["branch"])
        if control.reason is not None:
            return
        lap("push")
    except gitops.GitError as exc:
        result["error"] = str(exc)
        return
    result["ok"], result["stage"] = True, "done"
