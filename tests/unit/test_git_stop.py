"""git as a killable child (codeswarm/projects/gitproc.py) and the attempt's stop, against real git.

A cancel of a stage that runs git kills git's whole process group (git's own helpers: here
upload-pack, index-pack and a pack-objects hook), waits for it, and leaves nothing a retry trips
over; an agent runtime whose interrupt fails is said in the result and as a warning."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import trio

from codeswarm.errors import RuntimeFailure
from codeswarm.projects import gitops, gitproc
from codeswarm.worker.project_task import AttemptControl, checkout_dir, run_project_turn
from tests.conftest import _alive
from tests.projects.helpers import git, process_group


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README").write_text("hello\n")
    git(repo, "add", "README")
    git(repo, "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-qm", "init")
    return repo


def hanging_upload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """git's global config gets a pack-objects hook that, the first time only, says its pid and hangs:
    a clone of a file:// URL then hangs in the middle of its pack transfer (a real git process tree:
    clone -> sh -> upload-pack -> hook -> sleep, and index-pack). Returns the pid file."""
    pidfile = tmp_path / "hook-pid"
    hook = tmp_path / "hook"
    hook.write_text(f"#!/bin/sh\nif mkdir {tmp_path}/hook-once 2>/dev/null; then\n"
                    f"  echo $$ > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; sleep 120\nfi\nexec \"$@\"\n")
    hook.chmod(0o755)
    config = tmp_path / "gitconfig"
    config.write_text(f"[uploadpack]\n\tpackObjectsHook = {hook}\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    return pidfile


async def wait_for_file(path: Path, seconds: float = 30) -> None:
    """Until the hook wrote its pid file (the hook's own report that it runs)."""
    with trio.fail_after(seconds):
        while not path.exists():
            await trio.sleep(0.02)


def gone_soon(pids: list[int], seconds: float = 5) -> list[int]:
    """Those of pids still running after `seconds` (a SIGKILLed process ends a moment after the kill)."""
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    return [p for p in pids if _alive(p)]


async def test_a_cancel_kills_a_hanging_clone_with_its_helpers_and_the_next_clone_works(
        tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pidfile = hanging_upload(tmp_path, monkeypatch)
    checkout = tmp_path / "node" / "projects" / "p1"
    stop = gitproc.GitStop()
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(gitproc.run_stoppable, stop, gitops.prepare_checkout, f"file://{repo}", checkout)
            await wait_for_file(pidfile)
            pids = process_group(int(pidfile.read_text()))
            assert len(pids) >= 4, pids  # clone, upload-pack (and its sh), the hook, sleep, index-pack
            t0 = time.monotonic()
            scope.cancel()
    assert scope.cancelled_caught and time.monotonic() - t0 < 5
    assert stop.stopped and stop.killed and not stop.unfinished
    left = gone_soon(pids)
    assert not left, f"git processes outlived the stop: {left}"
    assert (tmp_path / "node" / "projects" / "p1.cloning").exists(), "the half clone is left aside, not as the checkout"
    assert not checkout.exists()
    gitops.prepare_checkout(f"file://{repo}", checkout)  # the retry: the hook lets it through now
    assert (checkout / ".git" / "codeswarm-origin").read_text() == f"file://{repo}"
    assert not (tmp_path / "node" / "projects" / "p1.cloning").exists()
    gitops.start_branch(checkout, "codeswarm/p1/a", "main")
    assert (checkout / "README").read_text() == "hello\n"


async def test_a_git_helper_that_left_the_group_is_killed_too(tmp_path: Path, repo: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A helper that calls setsid escapes the group kill (and would hold git's pipes open, so the stop
    would wait STOP_WAIT for nothing); the CODESWARM_GIT mark in its environment finds it."""
    pidfile = tmp_path / "hook-pids"
    hook = tmp_path / "hook"
    hook.write_text(f"#!/bin/sh\nsetsid sleep 120 & echo $$ $! > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; wait\n")
    hook.chmod(0o755)
    (tmp_path / "gitconfig").write_text(f"[uploadpack]\n\tpackObjectsHook = {hook}\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    stop = gitproc.GitStop()
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(gitproc.run_stoppable, stop, gitops.prepare_checkout, f"file://{repo}", tmp_path / "co")
            await wait_for_file(pidfile)
            shell, escaped = (int(x) for x in pidfile.read_text().split())
            assert process_group(escaped) != process_group(shell)
            t0 = time.monotonic()
            scope.cancel()
    assert time.monotonic() - t0 < gitproc.STOP_WAIT / 2 and not stop.unfinished
    assert gone_soon([shell, escaped]) == []


async def test_no_git_runs_after_a_stop_and_a_cancel_before_the_thread_began_waits_for_nothing(
        tmp_path: Path, repo: Path) -> None:
    stop = gitproc.GitStop()
    stop.stop()
    with pytest.raises(gitproc.GitStopped, match="not started: the attempt was stopped"):
        await gitproc.run_stoppable(stop, gitops.remote_heads, str(repo))
    ran = []
    with trio.CancelScope() as scope:
        scope.cancel()
        t0 = time.monotonic()
        await gitproc.run_stoppable(gitproc.GitStop(), ran.append, 1)
    assert scope.cancelled_caught and ran == [] and time.monotonic() - t0 < gitproc.STOP_WAIT / 2


def test_a_git_timeout_kills_the_whole_group(tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside an attempt too (the router's integration): a git that runs out of time is killed with
    its helpers, not only the leader."""
    pidfile = hanging_upload(tmp_path, monkeypatch)
    with pytest.raises(gitops.GitError, match="git clone: no answer within 3 s"):
        gitops.git(None, "clone", "-q", f"file://{repo}", str(tmp_path / "c"), timeout=3)
    assert gone_soon([int(pidfile.read_text())]) == []


def test_clear_locks_removes_what_a_killed_git_leaves(tmp_path: Path, repo: Path) -> None:
    checkout = tmp_path / "co"
    gitops.prepare_checkout(str(repo), checkout)
    gitops.start_branch(checkout, "codeswarm/p/a", "main")
    (checkout / ".git" / "index.lock").write_text("")
    lock = checkout / ".git" / "refs" / "heads" / "codeswarm" / "p" / "a.lock"
    lock.write_text("")
    with pytest.raises(gitops.GitError, match="may have crashed in this repository"):
        gitops.start_branch(checkout, "codeswarm/p/a", "main")
    assert sorted(gitops.clear_locks(checkout)) == ["index.lock", "refs/heads/codeswarm/p/a.lock"]
    gitops.start_branch(checkout, "codeswarm/p/a", "main")
    assert gitops.clear_locks(checkout) == []


class FailingInterrupt:
    """A runtime whose interrupt fails (a codex app-server gone mid-turn): the turn runs until cut."""

    def __init__(self) -> None:
        self.turn_cwd: Any = None
        self.task: Any = None
        self.started = trio.Event()

    async def interrupt(self) -> bool:
        raise RuntimeFailure("codex app-server is not running")


async def test_an_interrupt_that_fails_is_said_in_the_result_and_warned(tmp_path: Path, repo: Path) -> None:
    runtime = FailingInterrupt()
    warnings: list[str] = []
    control = AttemptControl(warnings.append)
    spec = {"project_id": "p1", "task_id": "a", "repo": str(repo), "branch": "codeswarm/p1/a", "start": "main"}

    async def turn() -> str | None:
        runtime.started.set()
        await trio.sleep_forever()
        return None

    async with trio.open_nursery() as nursery:
        async def stop_when_the_turn_runs() -> None:
            await runtime.started.wait()
            control.stop("project_cancelled")
        nursery.start_soon(stop_when_the_turn_runs)
        with trio.fail_after(10):  # cut at once, not after INTERRUPT_GRACE
            result = await run_project_turn(tmp_path, spec, runtime, turn, control)
    assert result["stage"] == "agent" and result["stopped"] == "project_cancelled" and result["turn_cut"]
    assert result["interrupt_error"] == "RuntimeFailure: codex app-server is not running"
    assert result["error"] == ("project_cancelled (during agent); the runtime could not interrupt the turn "
                               "(RuntimeFailure: codex app-server is not running), so the worker cut it")
    assert warnings == ["project task: the runtime could not interrupt the turn (RuntimeFailure: codex "
                        "app-server is not running); the worker cuts it"]
    assert "git_killed" not in result and checkout_dir(tmp_path, "p1").is_dir()


async def test_an_unexpected_interrupt_fault_is_not_swallowed(tmp_path: Path, repo: Path) -> None:
    """The except is narrow: a bug in a runtime's interrupt surfaces (the worker turns it into a failed
    result and a worker_error), it is not read as `could not stop`."""
    runtime = FailingInterrupt()

    async def broken() -> bool:
        raise KeyError("bug")

    runtime.interrupt = broken  # type: ignore[method-assign]
    control = AttemptControl()
    spec = {"project_id": "p1", "task_id": "a", "repo": str(repo), "branch": "codeswarm/p1/a", "start": "main"}

    async def turn() -> str | None:
        control.stop("project_cancelled")
        await trio.sleep_forever()
        return None

    with pytest.raises(BaseExceptionGroup) as info:
        await run_project_turn(tmp_path, spec, runtime, turn, control)
    assert info.group_contains(KeyError)
