"""git as a killable child: every git call runs in its own process group, and a stop kills it.

gitops' functions block (they run in a thread), so a trio cancel cannot reach them by itself. A
project attempt runs them through `run_stoppable(stop, fn, ...)`: each git that `fn` starts in that
thread registers with the attempt's `GitStop`; a cancel kills every registered process group
(git's helpers - upload-pack, remote-https, ssh, hooks - are in it) plus what left the group with
setsid (found by the GIT_MARK in its environment), refuses any git after it, and waits for the
thread to end, so nothing of the stage still writes the checkout when the caller moves on. Outside
a stoppable call (the router's integration) git runs the same way, in its own group, and a git
timeout kills the whole group too. (A new group with setpgid, not a new session: setsid made every
git call ~1 ms slower here, a session leader's exit costs the kernel more.) A verify command runs
through `spawn` too, in its own session. Every child also carries the process guard's mark
(childguard.py), so that none outlives this process when it is SIGKILLed.
"""

from __future__ import annotations

import contextvars
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import trio

from codeswarm.errors import CodeswarmError
from codeswarm.projects import childguard

T = TypeVar("T")
GIT_MARK = "CODESWARM_GIT"
STOP_WAIT = 10.0   # after the kill, how long a stop waits for the git thread to end (its pipes to close)

_CURRENT: contextvars.ContextVar[GitStop | None] = contextvars.ContextVar("codeswarm_git_stop", default=None)


class GitError(CodeswarmError, RuntimeError):
    """A git step failed; the message says which step and git's own words."""


class GitStopped(GitError):
    """A git call was killed (or refused) because its attempt was stopped."""


class GitStop:
    """The git processes of one attempt, stoppable from another thread (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[str]] = set()
        self.mark = f"{os.getpid()}-{time.monotonic_ns()}"
        self.stopped = False
        self.killed: list[int] = []     # process groups killed (their leaders' pids)
        self.unfinished = False         # a thread still ran STOP_WAIT s after the kill

    def popen(self, cmd: list[str], **kwargs: object) -> subprocess.Popen[str]:
        with self._lock:  # under the lock: a stop cannot slip in between the start and the registration
            if self.stopped:
                raise GitStopped(f"{_what(cmd)} not started: the attempt was stopped")
            proc: subprocess.Popen[str] = subprocess.Popen(cmd, **kwargs)  # type: ignore[call-overload]
            self._running.add(proc)
            return proc

    def release(self, proc: subprocess.Popen[str]) -> None:
        with self._lock:
            self._running.discard(proc)

    def stop(self) -> None:
        """Kill every running git's process group and what left it; no git starts after this."""
        with self._lock:
            self.stopped = True
            for proc in self._running:
                if proc.returncode is None and kill_group(proc.pid):
                    self.killed.append(proc.pid)
        kill_marked(GIT_MARK, self.mark)


def kill_group(pgid: int) -> bool:
    try:
        os.killpg(pgid, signal.SIGKILL)
        return True
    except ProcessLookupError:  # it ended meanwhile
        return False


def kill_marked(name: str, mark: str) -> int:
    """SIGKILL every process of this user whose environment carries name=mark (children that left
    their process group with setsid); how many."""
    needle = b"\0" + f"{name}={mark}".encode() + b"\0"
    killed = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                found = needle in b"\0" + fh.read() + b"\0"
        except OSError:  # gone, or not ours
            continue
        if found:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
            except ProcessLookupError:  # it ended meanwhile
                continue
    return killed


def spawn(cmd: list[str], env: dict[str, str], session: bool = False,
          **kwargs: object) -> tuple[subprocess.Popen[Any], GitStop | None, str]:
    """Start cmd as the leader of a new process group (a new session with `session`: a verify), marked
    for the current GitStop (if any, else a mark of its own) and the process guard; (proc, stop, mark).
    OSError when it cannot start; GitStopped when the stop came first."""
    stop = _CURRENT.get()
    mark = stop.mark if stop is not None else f"{os.getpid()}-{time.monotonic_ns()}"
    group: dict[str, object] = {"start_new_session": True} if session else {"process_group": 0}
    kwargs.update(group, env={**env, GIT_MARK: mark, **childguard.env()})
    if stop is not None:
        return stop.popen(cmd, **kwargs), stop, mark
    return subprocess.Popen(cmd, **kwargs), None, mark  # type: ignore[call-overload]


def release(proc: subprocess.Popen[Any], stop: GitStop | None) -> None:
    if stop is not None:
        stop.release(proc)


def run(cmd: list[str], cwd: Path | None, env: dict[str, str], timeout: float,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run git in its own process group (under the current GitStop, if any); on a timeout the whole
    group is killed. GitStopped when the stop killed it."""
    try:
        proc, stop, mark = spawn(cmd, env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL)
    except OSError as exc:
        raise GitError(f"cannot run git: {exc}") from exc
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        kill_marked(GIT_MARK, mark)  # a helper that left the group would hold git's pipes open
        proc.communicate()
        raise GitError(f"git {_verb(cmd)}: no answer within {timeout:.0f} s") from None
    finally:
        release(proc, stop)
    if stop is not None and stop.stopped and proc.returncode < 0:
        raise GitStopped(f"git {_verb(cmd)} was stopped (killed with its process group)")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _what(cmd: list[str]) -> str:
    return f"git {_verb(cmd)}" if cmd and cmd[0] == "git" else "verify"


def _verb(cmd: list[str]) -> str:
    """The git subcommand of cmd (after the `-c k=v` options)."""
    i = 1
    while i < len(cmd) and cmd[i] == "-c":
        i += 2
    return cmd[i] if i < len(cmd) else "?"


async def run_stoppable(stop: GitStop, fn: Callable[..., T], *args: object) -> T:
    """fn(*args) in a thread whose git calls belong to `stop`. On a cancel: stop (kill the running
    git, refuse the next), wait (shielded, at most STOP_WAIT s) for the thread to end, then let the
    Cancelled go on. `stop.unfinished` says the thread outlived STOP_WAIT (it is left running)."""
    gate = threading.Lock()
    began = closed = False
    ended = threading.Event()

    def work() -> T:
        nonlocal began
        with gate:
            if closed:  # cancelled before this thread ran: fn never starts
                raise GitStopped("the attempt was stopped")
            began = True
        _CURRENT.set(stop)  # this call's own context (to_thread runs it in a copy)
        try:
            return fn(*args)
        finally:
            ended.set()

    try:
        return await trio.to_thread.run_sync(work, abandon_on_cancel=True)
    except trio.Cancelled:
        stop.stop()
        with gate:
            closed = True
            running = began
        if running:
            with trio.CancelScope(shield=True):
                if not await trio.to_thread.run_sync(ended.wait, STOP_WAIT):
                    stop.unfinished = True
        raise
