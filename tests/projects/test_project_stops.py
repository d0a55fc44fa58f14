"""Stopping project work through the real .pyz (issue 14, session 2): `project cancel` interrupts the
running task turns (and kills a running verify), a per-task timeout ends an attempt as a failed
attempt, and `paths` are enforced. Real git, real worker processes."""

from __future__ import annotations

import json
import time

from tests.conftest import Codeswarm, _alive  # _alive: a zombie counts as ended
from tests.projects.helpers import git, named, project_events, user_repo, worker_results, write_tasks


def _launch(cs: Codeswarm, nodes: int = 2) -> str:
    return cs.json("launch", "--nodes", str(nodes))["swarm_id"]


def _create(cs: Codeswarm, repo, tasks, sid: str, *extra: str) -> str:
    path = write_tasks(cs.tmp, tasks, f"tasks-{time.monotonic_ns()}.json")
    return cs.run("project", "create", "--repo", str(repo), "--tasks", str(path), "--swarm", sid,
                  *extra).stdout.strip()


def test_cancel_interrupts_running_turns_and_a_running_verify(cs: Codeswarm) -> None:
    repo = user_repo(cs.tmp)
    sid = _launch(cs, 2)
    marker = cs.tmp / "verify-still-running"  # (that the verify's processes are gone: test_project_review.py)
    tasks = [{"id": "agent", "prompt": "[mock:slow=60] [mock:write=a.txt] a long agent turn"},
             {"id": "verify", "prompt": "[mock:write=v.txt] quick", "verify": f"sleep 60; touch {marker}"},
             {"id": "later", "prompt": "[mock:write=l.txt] never", "depends_on": ["agent"]}]
    pid = _create(cs, repo, tasks, sid, "--start")
    evs = cs.wait_for(lambda evs: len(named(evs, "project_task_started", project_id=pid)) == 2
                      and any(e["event"] == "turn_complete" and e["data"].get("injection_id") in
                              {x["data"]["injection_id"] for x in named(evs, "project_task_assigned", task_id="verify")}
                              for e in evs), timeout=60)
    agent_iid = named(evs, "project_task_assigned", task_id="agent")[0]["data"]["injection_id"]
    t0 = time.monotonic()
    cs.run("project", "cancel", pid)
    # the agent's turn ends `interrupted` long before its 60 s; the verify is killed
    evs = cs.wait_for(lambda evs: any(e["event"] == "turn_complete" and e["data"].get("injection_id") == agent_iid
                                      for e in evs), timeout=30)
    [done] = [e for e in evs if e["event"] == "turn_complete" and e["data"].get("injection_id") == agent_iid]
    assert done["data"]["status"] == "interrupted" and time.monotonic() - t0 < 20
    deadline = time.monotonic() + 20
    while len(worker_results(cs)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    results = {r["task_id"]: r for r in worker_results(cs)}
    assert results["agent"]["ok"] is False and results["agent"]["stage"] == "agent"
    assert results["agent"]["stopped"] == "project_cancelled", results["agent"]
    assert results["verify"]["ok"] is False and results["verify"]["stage"] == "verify"
    assert "project_cancelled (during verify)" in results["verify"]["error"]
    assert not git(repo, "branch", "--list", f"codeswarm/{pid}/verify"), "a stopped attempt pushes nothing"
    status = cs.json("project", "status", pid)
    assert status["state"] == "cancelled" and {t["state"] for t in status["tasks"]} == {"cancelled"}
    # the nodes are free at once: an ordinary prompt runs on both
    out = cs.run("inject", sid, "--prompt", "hello", "--wait", "--timeout", "30", check=False, timeout=40)
    assert out.returncode == 0, out.stdout + out.stderr
    evs = project_events(cs, pid)
    assert not named(evs, "project_task_completed")


def test_task_timeout_fails_the_attempt_and_interrupts_the_turn(cs: Codeswarm) -> None:
    repo = user_repo(cs.tmp)
    sid = _launch(cs, 2)
    graph = {"timeout_seconds": 3,   # the project's default: the verify of `hangs-in-verify` runs out of it
             "tasks": [{"id": "slow-agent", "prompt": "[mock:slow=60] [mock:write=s.txt] slow", "timeout_seconds": 2},
                       {"id": "hangs-in-verify", "prompt": "[mock:write=h.txt] x", "verify": "sleep 60"},
                       {"id": "fine", "prompt": "[mock:write=f.txt] fine", "verify": "test -s f.txt"},
                       {"id": "after", "prompt": "[mock:write=b.txt] after", "depends_on": ["slow-agent"]}]}
    path = write_tasks(cs.tmp, graph, "timeouts.json")
    t0 = time.monotonic()
    proc = cs.run("project", "create", "--repo", str(repo), "--tasks", str(path), "--swarm", sid, "--wait",
                  "--timeout", "90", "--json", check=False, timeout=120)
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert time.monotonic() - t0 < 60, "two attempts of 2-3 s each, not 60 s turns"
    status = json.loads(proc.stdout)
    tasks = {t["id"]: t for t in status["tasks"]}
    assert tasks["slow-agent"]["state"] == "failed" and tasks["slow-agent"]["attempts"] == 2
    assert "timed out after 2 s (during agent)" in tasks["slow-agent"]["error"]
    assert tasks["hangs-in-verify"]["state"] == "failed" and tasks["hangs-in-verify"]["attempts"] == 2
    assert "timed out after 3 s (during verify)" in tasks["hangs-in-verify"]["error"]
    assert tasks["fine"]["state"] == "completed" and tasks["after"]["state"] == "blocked"
    assert tasks["slow-agent"]["timeout_seconds"] == 2 and tasks["fine"]["timeout_seconds"] == 3
    evs = cs.events()
    pid = status["project_id"]
    fails = named(evs, "project_task_failed", task_id="slow-agent")
    assert [e["data"]["final"] for e in fails] == [False, True] and all(e["data"]["stage"] == "agent" for e in fails)
    slow_iids = {e["data"]["injection_id"] for e in named(evs, "project_task_assigned", task_id="slow-agent")}
    ends = [e["data"]["status"] for e in evs if e["event"] == "turn_complete" and e["data"].get("injection_id") in slow_iids]
    assert ends == ["interrupted", "interrupted"]
    assert tasks["fine"]["commit"] == git(repo, "rev-parse", f"codeswarm/{pid}/fine")


def test_paths_are_enforced_and_bad_paths_are_refused(cs: Codeswarm) -> None:
    repo = user_repo(cs.tmp)
    sid = _launch(cs, 2)
    tasks = [{"id": "inside", "prompt": "[mock:write=src/api/a.txt] [mock:write=docs/api.md] ok",
              "paths": ["src/api/", "docs/*.md"]},
             {"id": "outside", "prompt": "[mock:write=src/api/b.txt] [mock:write=README] [mock:write=src/ui/x.txt] no",
              "paths": ["src/api"]}]
    path = write_tasks(cs.tmp, tasks, "paths.json")
    proc = cs.run("project", "create", "--repo", str(repo), "--tasks", str(path), "--swarm", sid, "--wait",
                  "--timeout", "90", "--json", check=False, timeout=120)
    assert proc.returncode == 5, proc.stdout + proc.stderr
    status = json.loads(proc.stdout)
    pid = status["project_id"]
    t = {x["id"]: x for x in status["tasks"]}
    assert t["inside"]["state"] == "completed" and t["outside"]["state"] == "failed"
    assert t["outside"]["error"] == "changed files outside the task's paths (src/api): README, src/ui/x.txt"
    fails = named(project_events(cs, pid), "project_task_failed", task_id="outside")
    assert [e["data"]["stage"] for e in fails] == ["paths", "paths"]
    assert not git(repo, "branch", "--list", f"codeswarm/{pid}/outside"), "a task outside its paths is not pushed"
    for bad, words in ((["../etc"], "without '..'"), (["/abs"], "relative to the repository root"),
                       ("src", "paths must be a list of strings")):
        path = write_tasks(cs.tmp, [{"id": "x", "prompt": "p", "paths": bad}], "bad-paths.json")
        proc = cs.run("project", "create", "--repo", str(repo), "--tasks", str(path), "--swarm", sid, check=False)
        assert proc.returncode != 0 and words in proc.stderr and "task 'x'" in proc.stderr, proc.stderr
    assert len(cs.json("project", "list")) == 1


def test_a_timed_out_verify_kills_a_child_that_left_its_process_group(cs: Codeswarm) -> None:
    """A verify's child that detaches with setsid escapes the process-group kill; the worker finds it
    by the mark in its environment (CODESWARM_VERIFY) and kills it too."""
    repo = user_repo(cs.tmp)
    sid = _launch(cs, 1)
    pids = cs.tmp / "verify-pids"
    tasks = {"timeout_seconds": 4,
             "tasks": [{"id": "v", "prompt": "[mock:write=v.txt] quick",
                        "verify": f"setsid sleep 120 & echo $! > {pids}.tmp; mv {pids}.tmp {pids}; wait"}]}
    path = write_tasks(cs.tmp, tasks, "setsid.json")
    proc = cs.run("project", "create", "--repo", str(repo), "--tasks", str(path), "--swarm", sid,
                  "--max-attempts", "1", "--wait", "--timeout", "60", "--json", check=False, timeout=90)
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert "timed out after 4 s (during verify)" in json.loads(proc.stdout)["tasks"][0]["error"]
    child = int(pids.read_text())
    deadline = time.monotonic() + 10
    while _alive(child):
        assert time.monotonic() < deadline, "the setsid'd child of the timed-out verify still runs"
        time.sleep(0.05)
