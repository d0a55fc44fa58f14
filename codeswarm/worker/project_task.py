"""The worker's side of a project task: checkout and branch before the turn; commit, verify, push after.

The router sends a task as an ordinary `user` inbox line with a `project_task` object:
  {project_id, task_id, attempt, kind ("task"|"integration"), repo, branch, start, merges,
   verify, verify_timeout}
The worker (not only the agent) commits what changed, runs `verify` in the task's checkout, pushes
the branch only when verify passed, and reports one `project_task_result` lifecycle line.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from codeswarm.projects import gitops

DEFAULT_VERIFY_TIMEOUT = 600.0


def checkout_dir(workspace: Path, project_id: str) -> Path:
    return workspace / "projects" / project_id


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
    merges = spec.get("merges") or []
    if not isinstance(merges, list) or not all(isinstance(m, str) for m in merges):
        return "project_task.merges must be a list of branch names"
    return None


async def run_project_turn(workspace: Path, spec: dict[str, Any], runtime: Any,
                           run_turn: Callable[[], Awaitable[str | None]]) -> dict[str, Any]:
    """Run one attempt of a task around `run_turn` (which returns the turn's final status)."""
    result: dict[str, Any] = {"project_id": spec["project_id"], "task_id": spec["task_id"],
                              "attempt": spec.get("attempt", 1), "kind": spec.get("kind", "task"),
                              "branch": spec["branch"], "ok": False, "commit": None, "stage": "checkout",
                              "error": None, "verify_output": None}
    checkout = checkout_dir(workspace, spec["project_id"])
    kind = spec.get("kind", "task")
    timings: dict[str, float] = {}
    result["timings_ms"] = timings
    mark = time.monotonic()

    def lap(stage: str) -> None:
        nonlocal mark
        now = time.monotonic()
        timings[stage] = round((now - mark) * 1000, 1)
        mark = now

    try:
        def prepare() -> gitops.MergeConflict | None:
            refs = (spec["start"], *(spec.get("merges") or ()))
            gitops.prepare_checkout(spec["repo"], checkout, refs)
            return gitops.start_branch(checkout, spec["branch"], spec["start"], tuple(spec.get("merges") or ()),
                                       allow_conflicts=kind == "integration")
        conflict = await trio.to_thread.run_sync(prepare)
    except gitops.GitError as exc:
        result["error"] = str(exc)
        return result
    lap("checkout")
    if conflict is not None:
        result["conflict_files"] = list(conflict.files)
    runtime.turn_cwd, runtime.task = checkout, {**spec, "checkout": str(checkout),
                                                "conflict_files": result.get("conflict_files", [])}
    try:
        result["stage"] = "agent"
        status = await run_turn()
    finally:
        runtime.turn_cwd, runtime.task = None, None
        lap("agent")
    if status not in (None, "completed"):
        result["error"] = f"the agent's turn ended {status}"
        return result
    try:
        result["stage"] = "commit"
        message = f"codeswarm: {spec['project_id']}/{spec['task_id']} attempt {result['attempt']}"
        result["commit"] = await trio.to_thread.run_sync(gitops.commit_all, checkout, message)
        lap("commit")
        if spec.get("verify"):
            result["stage"] = "verify"
            timeout = float(spec.get("verify_timeout") or DEFAULT_VERIFY_TIMEOUT)
            ok, output = await trio.to_thread.run_sync(gitops.run_verify, spec["verify"], checkout, timeout)
            result["verify_output"] = output
            lap("verify")
            if not ok:
                result["error"] = "verify failed"
                return result
        result["stage"] = "push"
        await trio.to_thread.run_sync(gitops.push, checkout, spec["branch"])
        lap("push")
    except gitops.GitError as exc:
        result["error"] = str(exc)
        return result
    result["ok"], result["stage"] = True, "done"
    return result
