"""Nothing a worker or the router starts for a project outlives it (session 4), through the real .pyz,
real git and real worker processes.

A worker SIGKILLed while its task's verify runs, or while a git call hangs: the verify's shell and
its pipeline, the git and what it started (also a grandchild that left with setsid) are all gone
afterwards, by PID, and none of their delayed writes to the checkout happens (the process guard,
codeswarm/projects/childguard.py). The router's integration pass is stoppable like an attempt: a
project cancel or the router's stop during a hanging integration git kills it at once."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Codeswarm, _alive, local_config
from tests.runtime_orphans import ppid, wait_until
from tests.projects.helpers import named, project_events, tree, user_repo, worker_results, write_tasks

DELAY = 6  # the hanging scripts write their markers this long after they start


def hang(tmp: Path, name: str) -> str:
    """Shell lines that record their pids (this shell, a subshell, one that left with setsid) in
    tmp/<name>-pids, then write three markers DELAY s later (or `exit 0` once they did: a retry)."""
    pids, mark = tmp / f"{name}-pids", tmp / f"{name}-marker"
    return (f"if mkdir {tmp}/{name}-once 2>/dev/null; then\n"
            f"  (sleep {DELAY}; touch {mark}-sub) & SUB=$!\n"
            f"  setsid sh -c 'echo $$ > {pids}.setsid; sleep {DELAY}; touch {mark}-setsid' &\n"
            f"  while [ ! -s {pids}.setsid ]; do sleep 0.01; done\n"
            f"  echo $$ $SUB $(cat {pids}.setsid) > {pids}.tmp; mv {pids}.tmp {pids}\n"
            f"  sleep {DELAY}; touch {mark}-main; wait\n"
            f"fi\n")


def started(cs: Codeswarm, name: str) -> tuple[list[int], float]:
    pids = cs.tmp / f"{name}-pids"
    wait_until(pids.exists, f"the {name} script never started", timeout=90)
    return [int(p) for p in pids.read_text().split()], time.monotonic()


def assert_gone_and_nothing_written(cs: Codeswarm, name: str, pids: list[int], t0: float) -> None:
    wait_until(lambda: not any(_alive(p) for p in pids), f"outlived the kill: {[p for p in pids if _alive(p)]}",
               timeout=DELAY - 1)  # before they would end by themselves
    time.sleep(max(0.0, t0 + DELAY + 1.5 - time.monotonic()))  # past the moment they would have written
    assert not list(cs.tmp.glob(f"{name}-marker*")), "a process of the dead worker wrote after its death"


def kill_worker_of(cs: Codeswarm, child: int) -> int:
    worker = ppid(child)
    assert worker in cs.worker_pids(), f"{child}'s parent {worker} is not our worker"
    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: not _alive(worker), "the worker survived SIGKILL", timeout=10)
    return worker


def start_one_task_project(cs: Codeswarm) -> tuple[str, Path]:
    """A one-node swarm and a started project of one task (`a`, which writes a.txt): its id, its repo."""
    repo = user_repo(cs.tmp)
    sid = cs.json("launch", "--nodes", "1")["swarm_id"]
    tasks = write_tasks(cs.tmp, [{"id": "a", "prompt": "[mock:write=a.txt] a"}])
    return cs.run("project", "create", "--repo", str(repo), "--tasks", str(tasks), "--swarm", sid,
                  "--start").stdout.strip(), repo


def test_a_worker_sigkilled_during_verify_leaves_no_verify_process(cs: Codeswarm) -> None:
    script = cs.tmp / "verify.sh"
    script.write_text(hang(cs.tmp, "verify") + "exit 0\n")
    repo = user_repo(cs.tmp)
    sid = cs.json("launch", "--nodes", "1")["swarm_id"]
    tasks = write_tasks(cs.tmp, [{"id": "a", "prompt": "[mock:write=a.txt] a", "verify": f"sh {script} | cat"}])
    cs.run("project", "create", "--repo", str(repo), "--tasks", str(tasks), "--swarm", sid, "--start")
    pids, t0 = started(cs, "verify")
    shell = pids[0]
    bash = ppid(shell)  # `bash -c "sh verify.sh | cat"`: the verify the worker started
    kill_worker_of(cs, bash)
    assert_gone_and_nothing_written(cs, "verify", [bash, *pids], t0)


def test_a_worker_sigkilled_during_a_git_call_leaves_no_git_process(cs: Codeswarm) -> None:
    """A PATH `git` wrapper that hangs in the task's push (the worker's git process itself)."""
    wrapper_dir = cs.tmp / "slowgit"
    wrapper_dir.mkdir()
    (wrapper_dir / "git").write_text(f'#!/bin/sh\ncase " $* " in *" push "*)\n{hang(cs.tmp, "push")};;\nesac\n'
                                     f'exec /usr/bin/git "$@"\n')
    (wrapper_dir / "git").chmod(0o755)
    cs.env["PATH"] = f"{wrapper_dir}:{cs.env['PATH']}"  # the router and its local workers inherit it
    start_one_task_project(cs)
    pids, t0 = started(cs, "push")
    kill_worker_of(cs, pids[0])  # the wrapper's shell is the git the worker started
    assert_gone_and_nothing_written(cs, "push", pids, t0)


@pytest.mark.parametrize("how", ["project cancel", "router stop"])
def test_an_integration_git_call_is_stopped_by_a_cancel_or_the_router_stop(cs: Codeswarm, how: str) -> None:
    """A PATH `git` wrapper hangs in the router's integration merge (its DELAY would be 600 s'
    git timeout in real life). A project cancel kills it at once and the router goes on; the
    router's SIGTERM stop kills it and the router exits within moments, not at the git timeout; a
    SIGKILLed router: the last test."""
    wrapper_dir = cs.tmp / "slowgit"
    wrapper_dir.mkdir()
    (wrapper_dir / "git").write_text(
        f'#!/bin/sh\ncase "$(pwd -P)" in */integration) case " $* " in *" merge "*)\n{hang(cs.tmp, "merge")};;\n'
        f'esac;; esac\nexec /usr/bin/git "$@"\n')
    (wrapper_dir / "git").chmod(0o755)
    cs.env["PATH"] = f"{wrapper_dir}:{cs.env['PATH']}"
    project, _ = start_one_task_project(cs)
    pids, t0 = started(cs, "merge")
    router = cs.router_pid()
    assert router is not None and ppid(pids[0]) == router, "the hanging merge is the router's integration"
    if how == "project cancel":
        cs.run("project", "cancel", project)
        wait_until(lambda: not any(_alive(p) for p in pids), "the cancel left the integration's git running",
                   timeout=DELAY - 1)
        assert _alive(router)
        assert named(project_events(cs, project), "project_cancelled")
        assert cs.json("project", "status", project)["state"] == "cancelled"
    else:
        os.kill(router, signal.SIGTERM)
        wait_until(lambda: not _alive(router), "the router's stop waited for the integration's git",
                   timeout=DELAY - 1)
    assert_gone_and_nothing_written(cs, "merge", pids, t0)
    assert not list((cs.home / "projects" / project / "integration" / ".git").glob("*.lock"))


def worker_nodes(cs: Codeswarm, project: str) -> list[dict[str, Any]]:
    """The project's project_task_assigned events (which node ran each attempt)."""
    return [e["data"] for e in project_events(cs, project) if e["event"] == "project_task_assigned"]


def finished(cs: Codeswarm, project: str) -> dict:  # type: ignore[type-arg]
    cs.wait_for(lambda evs: any(e["event"] in ("project_completed", "project_failed")
                                and e["data"].get("project_id") == project for e in evs), timeout=90)
    return cs.json("project", "status", project)  # type: ignore[no-any-return]


def ref_hook(cs: Codeswarm, verb: str, where: str, name: str) -> None:
    """A reference-transaction hook that hangs (hang()) in `git <verb>` run in a directory matching
    `where`, while git holds HEAD.lock and the branch's ref lock (a kill leaves both behind)."""
    hooks = cs.tmp / "hooks"
    hooks.mkdir()
    hook = hooks / "reference-transaction"
    hook.write_text(f'#!/bin/sh\ncase "$(tr \'\\0\' \' \' < /proc/$PPID/cmdline)" in *" {verb} "*) ;; *) exit 0;; esac\n'
                    f'case "$(pwd -P)" in {where}) ;; *) exit 0;; esac\n[ "$1" = prepared ] || exit 0\n'
                    + hang(cs.tmp, name) + "exit 0\n")
    hook.chmod(0o755)
    (cs.tmp / "gitconfig").write_text(f"[core]\n\thooksPath = {hooks}\n")
    cs.env["GIT_CONFIG_GLOBAL"] = str(cs.tmp / "gitconfig")  # the router and its local workers inherit it


def test_a_restarted_worker_clears_the_locks_its_killed_predecessor_left_and_completes(cs: Codeswarm) -> None:
    """kill -9 of the worker while its commit hangs holding HEAD.lock and the branch's ref lock: the
    commit and its hook die with it (no late write), the attempt fails (its worker was lost before
    it reported it: core/project_loss.py) and is retried on the node's restarted worker (restart:
    on-failure, same workspace and clone), which clears the stale locks and completes the task."""
    cfg = local_config(cs.tmp)
    cfg["launch_providers"][0]["defaults"].update(restart="on-failure", restart_max=1)
    cs.write_config(cfg)
    ref_hook(cs, "commit", "*", "commit")
    repo = user_repo(cs.tmp)
    # one node: the retry can only run on the restarted worker, in the killed one's clone
    sid = cs.json("launch", "--nodes", "1")["swarm_id"]
    tasks = write_tasks(cs.tmp, [{"id": "a", "prompt": "[mock:write=a.txt] a", "verify": "test -s a.txt"}])
    project = cs.run("project", "create", "--repo", str(repo), "--tasks", str(tasks), "--swarm", sid,
                     "--start").stdout.strip()
    pids, t0 = started(cs, "commit")
    commit = ppid(pids[0])  # the hook's parent: the worker's `git commit`
    kill_worker_of(cs, commit)
    assert_gone_and_nothing_written(cs, "commit", [commit, *pids], t0)
    status = finished(cs, project)  # no cancel / resume: the lost attempt is retried by itself
    assert status["state"] == "completed", status
    assert "a.txt" in tree(repo, f"codeswarm/{project}/a")
    assert [r["attempt"] for r in worker_nodes(cs, project)] == [1, 2]
    assert {r["node_id"] for r in worker_nodes(cs, project)} == {0}
    assert [e["data"]["ended_by"] for e in project_events(cs, project) if e["event"] == "project_task_failed"] \
        == ["node_lost"]
    [result] = [r for r in worker_results(cs) if r["ok"]]
    assert sorted(result["stale_locks"]) == ["HEAD.lock", f"refs/heads/codeswarm/{project}/a.lock"], result


def test_a_restarted_router_clears_the_locks_of_its_killed_integration_and_completes(cs: Codeswarm) -> None:
    """kill -9 of the router while its integration merge hangs holding locks: the merge and its hook
    die with the router (its guard), and the restarted router's recovery redoes the integration
    pass in the same clone and completes the project."""
    ref_hook(cs, "merge", "*/integration", "merge")
    project, repo = start_one_task_project(cs)
    pids, t0 = started(cs, "merge")
    merge = ppid(pids[0])
    router = cs.router_pid()
    assert router is not None and ppid(merge) == router
    locks = cs.home / "projects" / project / "integration" / ".git"
    assert list(locks.glob("*.lock")), "the hanging merge holds no lock: the test shows nothing"
    os.kill(router, signal.SIGKILL)
    assert_gone_and_nothing_written(cs, "merge", [merge, *pids], t0)
    status = finished(cs, project)
    assert status["state"] == "completed", status
    assert tree(repo, status["integration_branch"]) == ["README", "a.txt"]
