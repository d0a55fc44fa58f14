"""kill -9 of the router at seeded random moments during a project (issue 14): the project finishes,
no task runs again after it completed, the log holds each task's lifecycle exactly once."""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter

import pytest

from tests.conftest import Codeswarm
from tests.faults.conftest import assert_log_consistent, fast_config, log_events
from tests.faults.test_router_kill import kill_after, start_cli
from tests.projects.helpers import (
    five_tasks,
    git,
    named,
    repo_state,
    tree,
    user_repo,
    write_tasks,
)

SEEDS = [int(s) for s in os.environ.get("CODESWARM_PROJECT_KILL_SEEDS", "1,2,3,4,5,6,7,8,9,10").split(",")]
LIFECYCLE = ("project_task_ready", "project_task_assigned", "project_task_started", "project_task_verified",
             "project_task_completed")


def worker_results(cs: Codeswarm) -> Counter[str]:
    """project_task_result lines the workers wrote, per task: how often each task really ran."""
    runs: Counter[str] = Counter()
    for path in cs.tmp.glob("runs/*/mailbox/outbox/*.jsonl"):
        for raw in path.read_text(errors="replace").splitlines():
            line = json.loads(raw)
            if line.get("event") == "project_task_result":
                runs[line["data"]["task_id"]] += 1
    return runs


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_9_at_a_seeded_moment(cs: Codeswarm, seed: int) -> None:
    rng = random.Random(f"project-kill:{seed}")
    cs.write_config(fast_config(cs.tmp))
    repo = user_repo(cs.tmp)
    before = repo_state(repo)
    sid = cs.json("launch", "--nodes", "2")["swarm_id"]
    tasks = write_tasks(cs.tmp, five_tasks(slow=0.4))
    proc = start_cli(cs, "project", "create", "--repo", str(repo), "--tasks", str(tasks), "--swarm", sid, "--start")
    kill_after(cs, rng.uniform(0.2, 5.0))
    proc.communicate(timeout=60)
    at_kill = log_events(cs)  # the router is dead: what the log held at the kill
    done_at_kill = len([e for e in at_kill if e["event"] == "project_task_completed"])
    print(f"seed {seed}: killed with {done_at_kill} task(s) completed, "
          f"{len([e for e in at_kill if e['event'] == 'project_task_assigned'])} assigned")
    listing = cs.json("project", "list")  # a new router, recovered
    if not listing:  # killed before project_created was durable: nothing exists, create again
        assert not [e for e in log_events(cs) if e["event"] == "project_created"]
        out = cs.run("project", "create", "--repo", str(repo), "--tasks", str(tasks), "--swarm", sid, "--start")
        pid = out.stdout.strip()
    else:
        pid = listing[0]["project_id"]
    cs.wait_for(lambda evs: any(e["event"] in ("project_completed", "project_failed") for e in evs), timeout=120)
    status = cs.json("project", "status", pid)
    assert status["state"] == "completed", status
    evs = log_events(cs)
    assert_log_consistent(evs)
    mine = [e for e in evs if e["data"].get("project_id") == pid]
    for t in status["tasks"]:
        for name in LIFECYCLE:
            assert len(named(mine, name, task_id=t["id"])) == 1, (t["id"], name)
        assert git(repo, "rev-parse", t["branch"]) == t["commit"]
    assert worker_results(cs) == Counter({t: 1 for t in ("a1", "a2", "b1", "b2", "join")}), "no task ran twice"
    assert len(named(mine, "project_created")) == 1 and len(named(mine, "project_completed")) == 1
    assert tree(repo, status["integration_branch"]) == ["README", "a1.txt", "a2.txt", "b1.txt", "b2.txt", "join.txt"]
    assert repo_state(repo) == before


PLAN_SEEDS = [int(s) for s in os.environ.get("CODESWARM_PLAN_KILL_SEEDS", "1,2,3").split(",")]


@pytest.mark.parametrize("seed", PLAN_SEEDS)
def test_plan_survives_a_router_kill_9(cs: Codeswarm, seed: int) -> None:
    """kill -9 while the planner works (or just after it answered): after the restart the plan is
    created and runs, or fails with a reason; it never hangs and is never created twice."""
    rng = random.Random(f"plan-kill:{seed}")
    cs.write_config(fast_config(cs.tmp))
    repo = user_repo(cs.tmp)
    planner = cs.json("launch", "--nodes", "1")["swarm_id"]
    workers = cs.json("launch", "--nodes", "2")["swarm_id"]
    graph = {"tasks": [{"id": "p1", "prompt": "[mock:write=p1.txt] one", "verify": "test -s p1.txt"},
                       {"id": "p2", "prompt": "[mock:write=p2.txt] two", "depends_on": ["p1"]}]}
    spec = cs.tmp / "spec.md"
    spec.write_text("[mock:slow=3] Build two files.\n```json\n" + json.dumps(graph) + "\n```\n")
    proc = start_cli(cs, "project", "plan", "--repo", str(repo), "--spec", str(spec), "--planner", planner,
                     "--swarm", workers, "--start")
    deadline = time.monotonic() + 30
    while not [e for e in log_events(cs) if e["event"] == "project_plan_started"]:
        assert time.monotonic() < deadline, "the plan never started"
        time.sleep(0.05)
    kill_after(cs, rng.uniform(0.0, 4.5))  # the planner's turn takes 3 s: before and after its answer
    proc.communicate(timeout=60)
    [started] = [e for e in log_events(cs) if e["event"] == "project_plan_started"]
    iid = started["data"]["injection_id"]
    cs.json("project", "list")  # a new router, recovered
    evs = cs.wait_for(lambda evs: any(e["event"] in ("project_completed", "project_failed", "project_plan_failed")
                                      for e in evs), timeout=90)
    created = [e for e in evs if e["event"] == "project_created"]
    assert not [e for e in evs if e["event"] == "project_plan_failed"], "the planner answered: the plan must not fail"
    assert [e["data"]["plan_injection_id"] for e in created] == [iid], "created once, from the planner's answer"
    pid = created[0]["data"]["project_id"]
    evs = cs.wait_for(lambda evs: any(e["event"] == "project_completed" for e in evs), timeout=90)
    status = cs.json("project", "status", pid)
    assert status["state"] == "completed" and [t["id"] for t in status["tasks"]] == ["p1", "p2"]
    assert_log_consistent(log_events(cs))
