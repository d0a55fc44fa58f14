"""Helpers of the project acceptance tests: a user's git repo, task graphs, the event log."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import Codeswarm


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def user_repo(tmp: Path) -> Path:
    """A user's repo on main with a commit and an uncommitted edit that must survive everything."""
    repo = tmp / "userrepo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README").write_text("the user's project\n")
    git(repo, "add", "README")
    git(repo, "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-qm", "init")
    (repo / "README").write_text("the user's project\nwork in progress\n")
    return repo


def repo_state(repo: Path) -> tuple[str, ...]:
    return (git(repo, "rev-parse", "HEAD"), git(repo, "symbolic-ref", "HEAD"), git(repo, "status", "--porcelain"),
            (repo / "README").read_text())


def tree(repo: Path, ref: str) -> list[str]:
    return sorted(git(repo, "ls-tree", "-r", "--name-only", ref).split())


def write_tasks(tmp: Path, tasks: Any, name: str = "tasks.json") -> Path:
    path = tmp / name
    path.write_text(json.dumps(tasks))
    return path


def five_tasks(slow: float = 1.0) -> list[dict[str, Any]]:
    """Two independent chains (a1 -> a2, b1 -> b2) and a join."""
    def task(tid: str, deps: list[str]) -> dict[str, Any]:
        return {"id": tid, "title": f"task {tid}", "depends_on": deps,
                "prompt": f"[mock:write={tid}.txt] [mock:slow={slow}] write {tid}.txt",
                "verify": f"grep -q '{tid} attempt' {tid}.txt"}
    return [task("a1", []), task("a2", ["a1"]), task("b1", []), task("b2", ["b1"]), task("join", ["a2", "b2"])]


def project_events(cs: Codeswarm, project_id: str) -> list[dict[str, Any]]:
    return [e for e in cs.events() if e["event"].startswith("project") and e["data"].get("project_id") == project_id]


def named(evs: list[dict[str, Any]], name: str, **match: Any) -> list[dict[str, Any]]:
    return [e for e in evs if e["event"] == name and all(e["data"].get(k) == v for k, v in match.items())]
