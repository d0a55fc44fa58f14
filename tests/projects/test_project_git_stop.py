"""A project task's cancel or timeout stops a git call under way (session 3), through the real .pyz,
real git and real worker processes: the git process group (git's own helpers included) is killed, the
attempt reports where it stopped, no process is left, and the next attempt on the same node works
(no half clone, no stale lock in its way). Hangs come from a PATH wrapper or from real git hooks
(a pack-objects hook in upload-pack, a ref-transaction hook in commit, pre-receive in receive-pack)
set through GIT_CONFIG_GLOBAL, which the router and its local workers inherit."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import Codeswarm, _alive  # _alive: a zombie counts as ended
from tests.projects.helpers import (
    git,
    marked_git_processes,
    named,
    process_group,
    project_events,
    tree,
    user_repo,
    worker_results,
    write_tasks,
)


def wait_file(path: Path, timeout: float = 60) -> None:
    """Until a hook or wrapper wrote its pid file (its own report that it runs; no event says so)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)


def wait_gone(pids: list[int], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids):
        assert time.monotonic() < deadline, f"still running after the stop: {[p for p in pids if _alive(p)]}"
        time.sleep(0.02)


def hang_once(tmp: Path, name: str, pidfile: Path, only_if: str = "") -> str:
    """A script body that, the first time only, writes its pid to pidfile and hangs (120 s)."""
    return (f"#!/bin/sh\n{only_if}if mkdir {tmp}/{name}-once 2>/dev/null; then\n"
            f"  echo $$ > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; sleep 120\nfi\n")


def git_config(cs: Codeswarm, text: str) -> None:
    config = cs.tmp / "gitconfig"
    config.write_text(text)
    cs.env["GIT_CONFIG_GLOBAL"] = str(config)


def test_a_task_timeout_ends_an_attempt_stuck_in_its_checkout_and_the_retry_completes(cs: Codeswarm) -> None:
    """Review's red test (a PATH `git` wrapper that hangs in `clone`): a 3 s task timeout used to wait
    for the 40 s clone. Now attempt 1 fails at once with the reason, the wrapper's processes are gone,
    and attempt 2 on the same node checks out and completes."""
    wrapper_dir = cs.tmp / "slowgit"
    wrapper_dir.mkdir()
    pids = cs.tmp / "clone-pids"
    (wrapper_dir / "git").write_text(
        f'#!/bin/sh\ncase " $* " in *" clone "*)\n  if mkdir {cs.tmp}/clone-once 2>/dev/null; then\n'
        f'    sleep 40 & echo $$ $! > {pids}.tmp; mv {pids}.tmp {pids}; wait\n  fi;;\nesac\n'
        f'exec /usr/bin/git "$@"\n')
    (wrapper_dir / "git").chmod(0o755)
    cs.env["PATH"] = f"{wrapper_dir}:{cs.env['PATH']}"  # the router and its local workers inherit it
    repo = user_repo(cs.tmp)
    sid = cs.json("launch", "--nodes", "1")["swarm_id"]
    tasks = write_tasks(cs.tmp, {"timeout_seconds": 3, "tasks": [{"id": "a", "prompt": "[mock:write=a.txt] a"}]})
    t0 = time.monotonic()
    pid = cs.run("project", "create", "--repo", str(repo), "--tasks", str(tasks), "--swarm", sid,
                 "--start").stdout.strip()
    evs = cs.wait_for(lambda evs: any(e["event"] == "project_task_failed" and e["data"].get("project_id") == pid
                                      for e in evs), timeout=60)
    assert time.monotonic() - t0 < 20, "the 3 s task timeout waited for the 40 s clone"
    [failed] = named(evs, "project_task_failed", project_id=pid)
    assert failed["data"]["stage"] == "checkout" and failed["data"]["final"] is False
    assert failed["data"]["error"] == "the attempt timed out after 3 s (during checkout)"
    wait_gone([int(p) for p in pids.read_text().split()])  # the wrapper's shell and its sleep
    cs.wait_for(lambda evs: any(e["event"] in ("project_completed", "project_failed")
                                and e["data"].get("project_id") == pid for e in evs), timeout=60)
    [task] = cs.json("project", "status", pid)["tasks"]
    assert task["state"] == "completed" and task["attempts"] == 2, task
    assert "a.txt" in tree(repo, f"codeswarm/{pid}/a")


def test_cancel_during_a_url_clone_kills_git_and_its_helpers_and_resume_completes(cs: Codeswarm) -> None:
    """A clone of a URL (file://) that hangs in the middle of its pack transfer: git clone, the
    upload-pack it started, pack-objects' hook, its sleep and index-pack are one process group. A
    `project cancel` kills all of them within moments; the half clone is left aside, and resume
    clones again on the same node and completes."""
    pidfile = cs.tmp / "upload-pid"
    hook = cs.tmp / "pack-hook"
    hook.write_text(hang_once(cs.tmp, "pack", pidfile) + 'exec "$@"\n')
    hook.chmod(0o755)
    git_config(cs, f"[uploadpack]\n\tpackObjectsHook = {hook}\n")
    repo = user_repo(cs.tmp)
    sid = cs.json("launch", "--nodes", "1")["swarm_id"]
    tasks = write_tasks(cs.tmp, [{"id": "a", "prompt": "[mock:write=a.txt] a", "verify": "test -s a.txt"}])
    pid = cs.run("project", "create", "--repo", f"file://{repo}", "--tasks", str(tasks), "--swarm", sid,
                 "--start").stdout.strip()
    wait_file(pidfile)
    group = process_group(int(pidfile.read_text()))
    assert len(group) >= 4, group  # clone, sh + upload-pack, the hook, its sleep, index-pack
    t0 = time.monotonic()
    cs.run("project", "cancel", pid)
    deadline = time.monotonic() + 30
    while not worker_results(cs):
        assert time.monotonic() < deadline, "the cancelled attempt never reported"
        time.sleep(0.05)
    assert time.monotonic() - t0 < 15, "the cancel waited for the hanging clone"
    [result] = worker_results(cs)
    assert result["ok"] is False and result["stage"] == "checkout" and result["stopped"] == "project_cancelled"
    assert result["error"] == "project_cancelled (during checkout)" and result["git_killed"], result
    wait_gone(group)
    assert marked_git_processes(cs) == [], "a process of the stopped attempt's git still runs"
    [half] = cs.tmp.glob(f"runs/**/projects/{pid}.cloning")  # the node's half clone, set aside
    node_projects = half.parent
    assert not (node_projects / pid).exists()
    assert not git(repo, "branch", "--list", f"codeswarm/{pid}/*"), "a stopped attempt pushes nothing"
    run = cs.run("project", "resume", pid, "--wait", "--timeout", "90", "--json", check=False, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    status = json.loads(run.stdout)
    assert status["state"] == "completed" and status["tasks"][0]["state"] == "completed"
    assert "a.txt" in tree(repo, f"codeswarm/{pid}/a")
    assert not (node_projects / f"{pid}.cloning").exists() and (node_projects / pid / "a.txt").exists()


REF_HOOK = """case "$(tr '\\0' ' ' < /proc/$PPID/cmdline)" in *" commit "*) ;; *) exit 0;; esac
[ "$1" = prepared ] || exit 0
"""


@pytest.mark.parametrize("stage", ["commit", "push"])
def test_a_timeout_during_commit_or_push_kills_git_and_the_retry_lands(cs: Codeswarm, stage: str) -> None:
    """commit: a reference-transaction hook hangs while `git commit` holds HEAD.lock and the branch's
    ref lock (a kill leaves both: the retry's `checkout -B` of the same branch failed on them).
    push: a pre-receive hook hangs in the repo's receive-pack. Either way attempt 1 times out at that
    stage, its git group is gone, the stale locks are cleared, and attempt 2 lands the branch."""
    pidfile = cs.tmp / f"{stage}-pid"
    hooks = cs.tmp / "hooks"
    hooks.mkdir()
    name = "reference-transaction" if stage == "commit" else "pre-receive"
    script = hang_once(cs.tmp, stage, pidfile, REF_HOOK if stage == "commit" else "")
    (hooks / name).write_text(script + ("exit 0\n" if stage == "commit" else "cat >/dev/null\nexit 0\n"))
    (hooks / name).chmod(0o755)
    git_config(cs, f"[core]\n\thooksPath = {hooks}\n")
    repo = user_repo(cs.tmp)
    sid = cs.json("launch", "--nodes", "1")["swarm_id"]
    tasks = write_tasks(cs.tmp, {"timeout_seconds": 8,
                                 "tasks": [{"id": "a", "prompt": "[mock:write=a.txt] a", "verify": "test -s a.txt"}]})
    run = cs.run("project", "create", "--repo", str(repo), "--tasks", str(tasks), "--swarm", sid, "--wait",
                 "--timeout", "90", "--json", check=False, timeout=120)
    assert pidfile.exists(), f"the {name} hook never ran"
    assert run.returncode == 0, run.stdout + run.stderr
    status = json.loads(run.stdout)
    pid = status["project_id"]
    [task] = status["tasks"]
    assert task["state"] == "completed" and task["attempts"] == 2, task
    [failed] = named(project_events(cs, pid), "project_task_failed")
    assert failed["data"]["stage"] == stage
    assert failed["data"]["error"] == f"the attempt timed out after 8 s (during {stage})"
    assert not _alive(int(pidfile.read_text())), "the hung hook outlived the stop"
    first = next(r for r in worker_results(cs) if r["attempt"] == 1)
    assert first["git_killed"] and first["stopped"] == "the attempt timed out after 8 s"
    if stage == "commit":
        assert sorted(first["cleared_locks"]) == ["HEAD.lock", f"refs/heads/codeswarm/{pid}/a.lock"]
    assert task["commit"] == git(repo, "rev-parse", f"codeswarm/{pid}/a")
    assert "a.txt" in tree(repo, f"codeswarm/{pid}/a")
