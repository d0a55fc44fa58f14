"""Issue 14 on the real Slurm test cluster: a project whose repo is a bare repo on the shared
directory, run by two 2-node Slurm swarms (each node clones it into its own workspace)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from slurm_helpers import SlurmCluster, launch

pytestmark = pytest.mark.slurm


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_five_task_project_on_slurm_with_a_bare_repo_on_the_shared_dir(slurm_cs: Any, slurm: SlurmCluster) -> None:
    cs = slurm_cs
    src = cs.tmp / "src"
    src.mkdir()
    _git(src, "init", "-q", "-b", "main")
    (src / "README").write_text("shared\n")
    _git(src, "add", "README")
    _git(src, "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-qm", "init")
    bare = cs.tmp / "shared" / "project.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(src), str(bare)], check=True)
    s1, s2 = launch(cs, 2)["swarm_id"], launch(cs, 2)["swarm_id"]
    cs.wait_for(lambda evs: len({(e["data"]["swarm_id"], e["data"]["node_id"]) for e in evs
                                 if e["event"] == "node_status" and e["data"].get("worker") == "running"}) == 4,
                timeout=90)

    def task(tid: str, deps: list[str]) -> dict[str, Any]:
        return {"id": tid, "prompt": f"[mock:write={tid}.txt] [mock:slow=1] {tid}", "depends_on": deps,
                "verify": f"grep -q '{tid} attempt 1' {tid}.txt"}
    tasks = cs.tmp / "tasks.json"
    tasks.write_text(json.dumps([task("a1", []), task("a2", ["a1"]), task("b1", []), task("b2", ["b1"]),
                                 task("join", ["a2", "b2"])]))
    proc = cs.run("project", "create", "--repo", str(bare), "--tasks", str(tasks), "--swarm", s1, "--swarm", s2,
                  "--wait", "--timeout", "240", "--json", check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status = json.loads(proc.stdout)
    assert status["state"] == "completed"
    for t in status["tasks"]:
        assert t["state"] == "completed" and _git(bare, "rev-parse", t["branch"]) == t["commit"]
    files = _git(bare, "ls-tree", "-r", "--name-only", status["integration_branch"]).split()
    assert sorted(files) == ["README", "a1.txt", "a2.txt", "b1.txt", "b2.txt", "join.txt"]
    assert _git(bare, "rev-parse", "main") == _git(src, "rev-parse", "HEAD"), "main is untouched"
    # the work really happened in the Slurm jobs' node workspaces
    jobs = {sid: cs.json("status", sid)["job_id"] for sid in (s1, s2)}
    used = {(t["swarm_id"], t["node_id"]) for t in status["tasks"]}
    assert {sid for sid, _ in used} <= {s1, s2} and len(used) >= 2, "both chains ran at once on Slurm nodes"
    clones = list((cs.tmp / "ws").rglob(f"projects/{status['project_id']}/.git"))
    assert len(clones) == len(used), clones
    for git_dir in clones:  # each node's clone borrows the shared bare repo's objects: checkouts by commit, no fetch
        assert (git_dir / "objects" / "info" / "alternates").read_text().strip() == str(bare / "objects")
    for t in status["tasks"]:
        text = _git(bare, "show", f"{t['branch']}:{t['id']}.txt")
        assert f"by node {t['node_id']} of {jobs[t['swarm_id']]}" in text
