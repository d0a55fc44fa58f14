"""Helpers of the project acceptance tests: a user's git repo, task graphs, the event log."""

from __future__ import annotations

import json
import os
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


def held(tasks: list[dict[str, Any]], ids: set[str], gate: Path) -> list[dict[str, Any]]:
    """The tasks, those named in `ids` held in their verify until the file `gate` exists (at most
    120 s). A test that must stop a task while it runs holds it there: a turn of a few seconds ends
    before the stop lands whenever a loaded machine delays the test's own commands that long."""
    wait = f"for _ in $(seq 2400); do [ -e '{gate}' ] && break; sleep 0.05; done; "
    return [{**t, "verify": wait + t["verify"]} if t["id"] in ids else t for t in tasks]


def project_events(cs: Codeswarm, project_id: str) -> list[dict[str, Any]]:
    return [e for e in cs.events() if e["event"].startswith("project") and e["data"].get("project_id") == project_id]


def named(evs: list[dict[str, Any]], name: str, **match: Any) -> list[dict[str, Any]]:
    return [e for e in evs if e["event"] == name and all(e["data"].get(k) == v for k, v in match.items())]


def worker_results(cs: Codeswarm) -> list[dict[str, Any]]:
    """The project_task_result lines the workers wrote (what really happened on the nodes)."""
    out = []
    for path in cs.tmp.glob("runs/*/mailbox/outbox/*.jsonl"):
        for raw in path.read_text(errors="replace").splitlines():
            line = json.loads(raw)
            if line.get("event") == "project_task_result":
                out.append(line["data"])
    return out


def _pgid(pid: int | str) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])


def process_group(pid: int) -> list[int]:
    """The pids in pid's process group (git runs each call in its own: this is the git and its helpers)."""
    pgid = _pgid(pid)
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if _pgid(entry.name) == pgid:
                    out.append(int(entry.name))
            except (OSError, IndexError, ValueError):  # ended meanwhile
                continue
    return out


def marked_git_processes(cs: Codeswarm) -> list[int]:
    """Processes of this test's workers that carry the CODESWARM_GIT mark of an attempt's git calls."""
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                env = Path(f"/proc/{entry.name}/environ").read_bytes()
            except OSError:
                continue
            if b"\0CODESWARM_GIT=" in b"\0" + env and str(cs.tmp).encode() in env:
                out.append(int(entry.name))
    return out
