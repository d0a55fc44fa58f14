"""The worker's side of project tasks against hostile input: forged inbox lines, escaping writes."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

from codeswarm.worker.project_task import outside_paths, run_project_turn, valid_spec
from codeswarm.worker.runtimes.base import WorkerContext
from codeswarm.worker.runtimes.mock import MockRuntime

GOOD = {"project_id": "p1", "task_id": "t", "repo": "/r", "branch": "codeswarm/p1/t", "start": "main"}


@pytest.mark.parametrize("spec, words", [
    ("x", "must be an object"),
    ({**GOOD, "branch": "main"}, "codeswarm/ branch"),
    ({**GOOD, "project_id": "../../etc"}, "must not contain '/'"),
    ({**GOOD, "project_id": ".."}, "must not contain '/'"),
    ({**GOOD, "repo": ""}, "repo must be a non-empty string"),
    ({**GOOD, "merges": "main"}, "merges must be a list"),
    ({**GOOD, "start_commit": "HEAD; rm -rf /"}, "must be commit ids"),
    ({**GOOD, "start_commit": "a" * 40, "merge_commits": ["--upload-pack=x"]}, "must be commit ids"),
    ({**GOOD, "paths": "src"}, "paths must be a list"),
    ({**GOOD, "timeout": -1}, "timeout must be a positive number"),
    ({**GOOD, "timeout": True}, "timeout must be a positive number"),
])
def test_a_forged_or_damaged_project_task_never_runs_git(spec: Any, words: str) -> None:
    assert words in (valid_spec(spec) or "")


def test_good_spec_is_accepted() -> None:
    assert valid_spec(GOOD) is None
    assert valid_spec({**GOOD, "start_commit": "a" * 40, "merge_commits": ["b" * 40], "paths": ["src/"],
                       "timeout": 30}) is None


def test_paths_allow_directories_files_and_globs_only() -> None:
    changed = ["src/api/a.py", "src/apix/b.py", "src/api", "docs/x.md", "docs/sub/y.md", "README", "Makefile"]
    assert outside_paths(changed, ["src/api/", "docs/*.md", "Makefile"]) == ["src/apix/b.py", "README"]
    assert outside_paths(changed, ["src/api"]) == ["src/apix/b.py", "docs/x.md", "docs/sub/y.md", "README",
                                                   "Makefile"]


def _repo(tmp: Path) -> Path:
    repo = tmp / "repo"
    repo.mkdir()
    for cmd in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "i"]):
        subprocess.run(["git", "-c", "user.name=u", "-c", "user.email=u@x", *cmd], cwd=repo, check=True)
    return repo


def _run(tmp: Path, prompt: str, attempt: int = 1) -> dict[str, Any]:
    repo = _repo(tmp) if not (tmp / "repo").exists() else tmp / "repo"
    (tmp / "mailbox" / "outbox").mkdir(parents=True, exist_ok=True)  # where the mock keeps its thread state
    ctx = WorkerContext(job_id="j", node_id=0, swarm_root=tmp, workspace=tmp / "ws", params={})
    lines: list[dict[str, Any]] = []
    rt = MockRuntime(ctx, lines.append)
    spec = {**GOOD, "repo": str(repo), "attempt": attempt, "verify": "test -s out.txt"}

    async def main() -> dict[str, Any]:
        await rt.start()

        async def turn() -> str | None:
            try:
                await rt.run_turn("i1", prompt)
            except ValueError:
                return "failed"
            return "completed"
        return await run_project_turn(ctx.workspace, spec, rt, turn)
    return trio.run(main)


def test_mock_write_outside_the_checkout_fails_the_attempt(tmp_path: Path) -> None:
    res = _run(tmp_path, "[mock:write=../../escape.txt] x")
    assert not res["ok"] and res["stage"] == "agent"
    assert not list(tmp_path.rglob("escape.txt"))
    res = _run(tmp_path, "[mock:write=.git/hooks/pre-commit] x")
    assert not res["ok"] and not (tmp_path / "ws/projects/p1/.git/hooks/pre-commit").exists()


def test_from_attempt_makes_the_first_attempt_fail_verify_for_real(tmp_path: Path) -> None:
    first = _run(tmp_path, "[mock:write=out.txt] [mock:from_attempt=2] x", attempt=1)
    assert not first["ok"] and first["stage"] == "verify" and "exited with 1" in first["verify_output"]
    second = _run(tmp_path, "[mock:write=out.txt] [mock:from_attempt=2] x", attempt=2)
    assert second["ok"] and second["commit"] and set(second["timings_ms"]) >= {"checkout", "agent", "commit", "push"}
    shown = subprocess.run(["git", "show", "codeswarm/p1/t:out.txt"], cwd=tmp_path / "repo", capture_output=True,
                           text=True, check=True).stdout
    assert shown == "t attempt 2 by node 0 of j\n"
