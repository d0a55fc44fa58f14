"""A worker SIGKILLed during a task's verify - after the agent's turn ended, before the worker wrote
the attempt's project_task_result - no longer leaves the task `running` forever: the attempt fails
(`ended_by: node_lost`, counted), the task is retried and the project completes, with no
`project cancel` / `resume`. Through the real .pyz, real git and real worker processes
(core/project_loss.py; the verify is held as in test_orphans.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Codeswarm, local_config
from tests.projects.helpers import named, project_events, tree, user_repo, worker_results, write_tasks
from tests.projects.test_orphans import finished, hang, kill_worker_of, ppid, started


@pytest.mark.parametrize("where", ["the restarted node", "another node"])
def test_a_worker_killed_during_verify_fails_the_attempt_and_the_retry_completes_the_project(
        cs: Codeswarm, where: str) -> None:
    """One node with `restart: on-failure` (the retry waits for the node's new worker), or two
    nodes without a restart policy (the retry goes to the other node at once)."""
    if where == "the restarted node":
        cfg = local_config(cs.tmp)
        cfg["launch_providers"][0]["defaults"].update(restart="on-failure", restart_max=1)
        cs.write_config(cfg)
    script = cs.tmp / "verify.sh"
    script.write_text(hang(cs.tmp, "verify") + "exit 0\n")  # hangs once (attempt 1), then passes
    repo = user_repo(cs.tmp)
    sid = cs.json("launch", "--nodes", "1" if where == "the restarted node" else "2")["swarm_id"]
    tasks = write_tasks(cs.tmp, [{"id": "a", "prompt": "[mock:write=a.txt] a", "verify": f"sh {script} | cat"},
                                 {"id": "b", "prompt": "[mock:write=b.txt] b", "depends_on": ["a"]}])
    project = cs.run("project", "create", "--repo", str(repo), "--tasks", str(tasks), "--swarm", sid,
                     "--start").stdout.strip()
    pids, _ = started(cs, "verify")
    killed = kill_worker_of(cs, ppid(pids[0]))  # bash -c "sh verify.sh | cat" -> its parent, the worker
    status = finished(cs, project)
    assert status["state"] == "completed", status
    evs = project_events(cs, project)
    assert not named(evs, "project_cancelled") and not named(evs, "project_resumed")
    [failed] = named(evs, "project_task_failed")
    assert failed["data"]["task_id"] == "a" and failed["data"]["ended_by"] == "node_lost", failed
    assert failed["data"]["attempt"] == 1 and failed["data"]["final"] is False
    attempts = [e["data"] for e in named(evs, "project_task_assigned", task_id="a")]
    assert [a["attempt"] for a in attempts] == [1, 2]
    [a] = [t for t in status["tasks"] if t["id"] == "a"]
    assert a["attempts"] == 2 and a["state"] == "completed"
    if where == "the restarted node":
        assert attempts[1]["node_id"] == 0 and attempts[1]["node_restarts"] == 1
        assert named(cs.events("--swarm", sid), "node_restarted")
    else:
        assert attempts[1]["node_id"] != attempts[0]["node_id"]
    # what the workers really did: the killed one never reported attempt 1; attempt 2 reported once
    results: list[dict[str, Any]] = [r for r in worker_results(cs) if r["task_id"] == "a"]
    assert [(r["attempt"], r["ok"]) for r in results] == [(2, True)], (killed, results)
    assert tree(repo, status["integration_branch"]) == ["README", "a.txt", "b.txt"]
