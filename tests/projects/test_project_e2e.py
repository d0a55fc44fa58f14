"""Projects through the real .pyz, real git, real worker processes (issue 14 acceptance)."""

from __future__ import annotations

import json
from collections import Counter

from tests.conftest import Codeswarm
from tests.projects.helpers import (
    five_tasks,
    git,
    held,
    named,
    project_events,
    repo_state,
    tree,
    user_repo,
    write_tasks,
)


def _launch(cs: Codeswarm, nodes: int = 2) -> str:
    return cs.json("launch", "--nodes", str(nodes))["swarm_id"]


def test_five_task_graph_on_two_swarms(cs: Codeswarm) -> None:
    repo = user_repo(cs.tmp)
    before = repo_state(repo)
    s1, s2 = _launch(cs), _launch(cs)
    tasks = write_tasks(cs.tmp, {"tasks": five_tasks(slow=1.5)})
    proc = cs.run("project", "create", "--repo", str(repo), "--tasks", str(tasks), "--swarm", s1, "--swarm", s2,
                  "--name", "five", "--wait", "--timeout", "180", "--json", check=False, timeout=200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import json

    status = json.loads(proc.stdout)
    pid = status["project_id"]
    assert status["state"] == "completed"
    assert status["integration_branch"] == f"codeswarm/{pid}/integration"
    tasks_by_id = {t["id"]: t for t in status["tasks"]}
    assert set(tasks_by_id) == {"a1", "a2", "b1", "b2", "join"}
    for t in tasks_by_id.values():
        assert t["state"] == "completed" and t["attempts"] == 1 and t["branch"] == f"codeswarm/{pid}/{t['id']}"
        assert t["swarm_id"] in (s1, s2) and isinstance(t["node_id"], int)
        assert git(repo, "rev-parse", t["branch"]) == t["commit"]
        assert t["started_at"] <= t["finished_at"]
    # independent chains overlap in time; a dependent starts only after its dependencies finished
    a1, b1 = tasks_by_id["a1"], tasks_by_id["b1"]
    assert a1["started_at"] < b1["finished_at"] and b1["started_at"] < a1["finished_at"]
    for tid, deps in (("a2", ["a1"]), ("b2", ["b1"]), ("join", ["a2", "b2"])):
        assert all(tasks_by_id[d]["finished_at"] <= tasks_by_id[tid]["started_at"] for d in deps)
    # each branch holds its dependencies' files; the integration branch holds every file
    assert tree(repo, tasks_by_id["a2"]["branch"]) == ["README", "a1.txt", "a2.txt"]
    assert tree(repo, tasks_by_id["join"]["branch"]) == ["README", "a1.txt", "a2.txt", "b1.txt", "b2.txt", "join.txt"]
    assert tree(repo, status["integration_branch"]) == ["README", "a1.txt", "a2.txt", "b1.txt", "b2.txt", "join.txt"]
    assert git(repo, "rev-parse", status["integration_branch"]) == status["integration_commit"]
    text = git(repo, "show", f"{tasks_by_id['b1']['branch']}:b1.txt")
    assert text.startswith("b1 attempt 1 by node ")
    assert repo_state(repo) == before, "the user's checked-out branch and work tree are untouched"
    evs = project_events(cs, pid)
    for tid in tasks_by_id:
        assert len(named(evs, "project_task_completed", task_id=tid)) == 1
        assert len(named(evs, "project_task_verified", task_id=tid)) == 1
    assert len(named(evs, "project_integrated")) == 1 and len(named(evs, "project_completed")) == 1
    listed = cs.json("project", "list")
    assert [p["project_id"] for p in listed] == [pid] and listed[0]["state"] == "completed"


def _create(cs: Codeswarm, repo, tasks, *swarms: str, extra: tuple[str, ...] = (), timeout: float = 180):
    import json

    path = write_tasks(cs.tmp, tasks, f"tasks-{len(list(cs.tmp.glob('tasks-*')))}.json")
    args = ["project", "create", "--repo", str(repo), "--tasks", str(path)]
    for s in swarms:
        args += ["--swarm", s]
    proc = cs.run(*args, *extra, "--wait", "--timeout", str(timeout), "--json", check=False, timeout=timeout + 30)
    return proc.returncode, (json.loads(proc.stdout) if proc.stdout.strip() else None), proc


def test_retry_once_then_pass_and_always_failing_task_blocks_dependents(cs: Codeswarm) -> None:
    repo = user_repo(cs.tmp)
    sid = _launch(cs, 3)
    tasks = [
        {"id": "flaky", "prompt": "[mock:write=flaky.txt] [mock:from_attempt=2] fix it", "verify": "test -s flaky.txt"},
        {"id": "broken", "prompt": "[mock:write=broken.txt] try", "verify": "echo nope-$((6*7)); false"},
        {"id": "after-broken", "prompt": "[mock:write=x.txt] never", "depends_on": ["broken"]},
        {"id": "after-flaky", "prompt": "[mock:write=y.txt] ok", "depends_on": ["flaky"]},
    ]
    code, status, proc = _create(cs, repo, tasks, sid)
    assert code == 5, proc.stdout + proc.stderr
    t = {x["id"]: x for x in status["tasks"]}
    assert t["flaky"]["state"] == "completed" and t["flaky"]["attempts"] == 2
    assert git(repo, "show", f"{t['flaky']['branch']}:flaky.txt").startswith("flaky attempt 2 ")
    assert t["broken"]["state"] == "failed" and t["broken"]["attempts"] == 2 and "verify failed" in t["broken"]["error"]
    assert t["after-broken"]["state"] == "blocked" and t["after-broken"]["attempts"] == 0
    assert t["after-flaky"]["state"] == "completed"
    assert status["state"] == "failed"
    assert tree(repo, status["integration_branch"]) == ["README", "flaky.txt", "y.txt"], "the rest is integrated"
    pid = status["project_id"]
    evs = project_events(cs, pid)
    failed = named(evs, "project_task_failed", task_id="broken")
    assert [e["data"]["final"] for e in failed] == [False, True]
    assert "nope-42" in failed[0]["data"]["output"]
    retry = named(evs, "project_task_assigned", task_id="broken")[1]["data"]["injection_id"]
    prompt = next(e for e in cs.events() if e["event"] == "inject_ack" and e["data"]["injection_id"] == retry)
    assert "attempt 2 of 2" in prompt["data"]["prompt"] and "nope-42" in prompt["data"]["prompt"]
    assert not named(evs, "project_task_assigned", task_id="after-broken"), "a blocked task never starts"
    assert "broken" not in git(repo, "branch", "--list", "codeswarm/*")


def test_same_line_conflict_becomes_a_verified_integration_task(cs: Codeswarm) -> None:
    repo = user_repo(cs.tmp)
    sid = _launch(cs, 2)
    tasks = {"tasks": [
        {"id": "left", "prompt": "[mock:write=shared.txt] left", "verify": "grep -q left shared.txt"},
        {"id": "right", "prompt": "[mock:write=shared.txt] right", "verify": "grep -q right shared.txt"},
    ], "verify": "grep -q left shared.txt && grep -q right shared.txt && ! grep -q '<<<<' shared.txt"}
    code, status, proc = _create(cs, repo, tasks, sid)
    assert code == 0, proc.stdout + proc.stderr
    t = {x["id"]: x for x in status["tasks"]}
    assert t["integration-1"]["kind"] == "integration" and t["integration-1"]["state"] == "completed"
    text = git(repo, "show", f"{status['integration_branch']}:shared.txt")
    assert "left attempt 1" in text and "right attempt 1" in text and "<<<<" not in text
    evs = project_events(cs, status["project_id"])
    conflict = named(evs, "project_integration_conflict")
    assert len(conflict) == 1 and conflict[0]["data"]["files"] == ["shared.txt"]
    assert len(named(evs, "project_task_verified", task_id="integration-1")) == 1
    assert git(repo, "rev-parse", status["integration_branch"]) == status["integration_commit"]


def test_bad_input_is_rejected_and_nothing_is_created(cs: Codeswarm) -> None:
    repo = user_repo(cs.tmp)
    sid = _launch(cs, 1)
    cases = [
        ([{"id": "a", "prompt": "x", "depends_on": ["b"]}, {"id": "b", "prompt": "x", "depends_on": ["a"]}],
         repo, "main", "cycle"),
        ([{"id": "a", "prompt": "x", "depends_on": ["ghost"]}], repo, "main", "unknown dependency 'ghost'"),
        ([{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}], repo, "main", "'a': duplicate id"),
        ([{"id": "a", "prompt": ""}], repo, "main", "'a': empty prompt"),
        ([{"id": "a", "prompt": "x"}], cs.tmp / "no-such-repo", "main", "not reachable"),
        ([{"id": "a", "prompt": "x"}], repo, "develop", "has no branch 'develop'"),
        ([{"id": "big", "prompt": "x" * (100 * 1024)}], repo, "main", "'big': prompt longer than"),
        ([{"id": "a", "prompt": "x"}], f"ext::sh -c touch% {cs.tmp}/pwned", "main", "not reachable"),
    ]
    for tasks, where, base, words in cases:
        path = write_tasks(cs.tmp, tasks, "bad.json")
        proc = cs.run("project", "create", "--repo", str(where), "--tasks", str(path), "--swarm", sid,
                      "--base", base, check=False)
        assert proc.returncode == 3 and words in proc.stderr, (words, proc.stderr)
    proc = cs.run("project", "create", "--repo", str(repo), "--tasks", str(path), "--swarm", "nope", check=False)
    assert proc.returncode == 3 and "unknown swarm" in proc.stderr
    assert not (cs.tmp / "pwned").exists(), "git's ext:: transport stays off"
    assert cs.json("project", "list") == []
    assert not [e for e in cs.events() if e["event"] == "project_created"]
    assert cs.json("status", sid)["state"] == "running", "the router is unharmed"


def test_swarm_terminated_mid_project_then_resume_on_a_new_swarm(cs: Codeswarm) -> None:
    repo = user_repo(cs.tmp)
    old = _launch(cs, 2)
    gate = cs.tmp / "gate"  # a2 and b2 run until the terminate: the predicate below holds until then
    tasks = write_tasks(cs.tmp, held(five_tasks(slow=0.5), {"a2", "b2"}, gate), "resume.json")
    pid = cs.run("project", "create", "--repo", str(repo), "--tasks", str(tasks), "--swarm", old,
                 "--start").stdout.strip()
    cs.wait_for(lambda evs: len(named(evs, "project_task_completed", project_id=pid)) == 2
                and len(named(evs, "project_task_started", project_id=pid)) == 4, timeout=90)
    cs.run("terminate", old, "--wait")
    cs.wait_for(lambda evs: len(named(evs, "project_task_ready", project_id=pid, requeued=True)) == 2, timeout=60)
    gate.touch()
    new = _launch(cs, 2)
    preview = cs.json("project", "resume-preview", pid)
    assert sorted(preview["will_run"]) == ["a2", "b2", "join"]
    assert cs.json("project", "status", pid)["state"] == "running", "the preview changed nothing"
    seen_before = {e["seq"] for e in project_events(cs, pid)}
    proc = cs.run("project", "resume", pid, "--swarm", new, "--wait", "--timeout", "120", "--json", check=False,
                  timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = [e for e in project_events(cs, pid) if e["seq"] not in seen_before]
    rerun = [e["data"]["task_id"] for e in named(after, "project_task_assigned")]
    assert sorted(rerun) == sorted(preview["will_run"]), "resume ran exactly what the preview listed"
    assert all(e["data"]["swarm_id"] == new for e in named(after, "project_task_assigned"))
    import json

    status = json.loads(proc.stdout)
    assert status["state"] == "completed"
    assert tree(repo, status["integration_branch"]) == ["README", "a1.txt", "a2.txt", "b1.txt", "b2.txt", "join.txt"]


def test_resume_reruns_a_completed_task_whose_branch_is_missing_and_its_dependents(cs: Codeswarm) -> None:
    repo = user_repo(cs.tmp)
    sid = _launch(cs, 2)
    code, status, proc = _create(cs, repo, five_tasks(slow=0.2), sid)
    assert code == 0, proc.stderr
    pid = status["project_id"]
    old = {t["id"]: t["commit"] for t in status["tasks"]}
    git(repo, "branch", "-D", f"codeswarm/{pid}/b2")
    preview = cs.json("project", "resume-preview", pid)
    # join was built on b2's old result: it re-runs after the new b2, and the preview says why
    assert preview["reset"] == ["b2", "join"] and preview["missing_branches"] == [f"codeswarm/{pid}/b2"]
    assert preview["will_run"] == ["b2", "join"]
    assert "missing" in preview["reasons"]["b2"] and "b2 re-runs" in preview["reasons"]["join"]
    proc = cs.run("project", "resume", pid, "--wait", "--timeout", "120", "--json", check=False, timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status = json.loads(proc.stdout)
    evs = project_events(cs, pid)
    done = Counter(e["data"]["task_id"] for e in named(evs, "project_task_completed") if e["data"]["task_id"] in
                   ("a1", "a2", "b1", "b2", "join"))
    assert done == Counter({"a1": 1, "a2": 1, "b1": 1, "b2": 2, "join": 2}), "the missing one and its dependent re-ran"
    new = {t["id"]: t["commit"] for t in status["tasks"]}
    assert new["join"] != old["join"] and new["a1"] == old["a1"]
    # the new join is built on the new b2
    assert git(repo, "merge-base", "--is-ancestor", new["b2"], new["join"]) == ""
    assert git(repo, "rev-parse", "--verify", f"codeswarm/{pid}/b2") == new["b2"]
    assert [e["data"]["reason"] for e in named(evs, "project_task_reset", task_id="join")] == [
        "its dependency b2 re-runs (it was built on the old result)"]


def test_plan_with_a_planner_swarm_and_malformed_plans(cs: Codeswarm) -> None:
    import json

    repo = user_repo(cs.tmp)
    planner, workers = _launch(cs, 1), _launch(cs, 2)
    graph = {"tasks": [{"id": "p1", "prompt": "[mock:write=p1.txt] one", "verify": "test -s p1.txt"},
                       {"id": "p2", "prompt": "[mock:write=p2.txt] two", "depends_on": ["p1"]}]}
    # the mock planner echoes the spec, so a spec holding a fenced block is "planned" as that block
    spec = cs.tmp / "spec.md"
    spec.write_text("Build two files.\n```json\n" + json.dumps(graph) + "\n```\n")
    proc = cs.run("project", "plan", "--repo", str(repo), "--spec", str(spec), "--planner", planner, "--swarm", workers,
                  "--wait", "--timeout", "120", "--json", check=False, timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status = json.loads(proc.stdout)
    assert [t["id"] for t in status["tasks"]] == ["p1", "p2"] and status["state"] == "completed"
    for text, words in (("Just do it, no JSON here.", "no fenced JSON block"),
                        ("```json\n{\"tasks\": [oops\n```\n", "not valid JSON"),
                        ("```json\n" + json.dumps([{"id": "x", "prompt": "a", "depends_on": ["x"]}]) + "\n```\n",
                         "'x': depends on itself")):
        spec.write_text(text)
        proc = cs.run("project", "plan", "--repo", str(repo), "--spec", str(spec), "--planner", planner,
                      "--swarm", workers, check=False, timeout=60)
        assert proc.returncode == 3 and "planning failed" in proc.stderr and words in proc.stderr, proc.stderr
    assert len(cs.json("project", "list")) == 1, "a failed plan creates nothing"
    assert len([e for e in cs.events() if e["event"] == "project_plan_failed"]) == 3
    assert cs.json("status", planner)["state"] == "running"


def test_cancel_stops_new_work_and_resume_finishes_it(cs: Codeswarm) -> None:
    repo = user_repo(cs.tmp)
    sid = _launch(cs, 2)
    gate = cs.tmp / "gate"  # a1 and b1 run until the cancel: neither can complete before it lands
    tasks = write_tasks(cs.tmp, held(five_tasks(slow=0.5), {"a1", "b1"}, gate), "cancel.json")
    pid = cs.run("project", "create", "--repo", str(repo), "--tasks", str(tasks), "--swarm", sid,
                 "--start").stdout.strip()
    cs.wait_for(lambda evs: len(named(evs, "project_task_started", project_id=pid)) == 2, timeout=60)
    proc = cs.run("project", "cancel", pid, "--json", check=False)
    assert proc.returncode == 0, proc.stderr
    status = cs.json("project", "status", pid)
    assert status["state"] == "cancelled"
    assert {t["id"]: t["state"] for t in status["tasks"]} == {"a1": "cancelled", "b1": "cancelled",
                                                               "a2": "cancelled", "b2": "cancelled",
                                                               "join": "cancelled"}
    again = cs.run("project", "cancel", pid, check=False)
    assert again.returncode == 3 and "already cancelled" in again.stderr
    gate.touch()
    proc = cs.run("project", "resume", pid, "--wait", "--timeout", "120", "--json", check=False, timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import json

    assert json.loads(proc.stdout)["state"] == "completed"


def test_wait_timeout_exits_4_and_status_json_has_the_documented_shape(cs: Codeswarm) -> None:
    import json

    repo = user_repo(cs.tmp)
    sid = _launch(cs, 1)
    cs.wait_running(sid, 1)  # a task is assigned to a running worker only: not within 2 s of a slow start
    path = write_tasks(cs.tmp, [{"id": "slow", "prompt": "[mock:slow=30] [mock:write=s.txt] slow"}], "slow.json")
    proc = cs.run("project", "create", "--repo", str(repo), "--tasks", str(path), "--swarm", sid, "--wait",
                  "--timeout", "2", check=False, timeout=60)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    pid = cs.json("project", "list")[0]["project_id"]
    status = json.loads(cs.run("project", "status", pid, "--json").stdout)
    assert {"project_id", "state", "integration_branch", "integration_commit", "tasks"} <= set(status)
    assert status["project_id"] == pid and status["state"] == "running" and status["integration_commit"] is None
    [task] = status["tasks"]
    assert {"id", "state", "attempts", "branch", "commit", "swarm_id", "node_id", "started_at", "finished_at",
            "error"} <= set(task)
    assert task["state"] in ("assigned", "running") and task["attempts"] == 1 and task["swarm_id"] == sid
    created = json.loads(cs.run("project", "create", "--repo", str(repo), "--tasks", str(path), "--swarm", sid,
                                "--json").stdout)
    assert created["project_id"] != pid and created["state"] == "created"


def test_resume_retry_failed_reruns_the_failed_task_and_its_blocked_dependents(cs: Codeswarm) -> None:
    import json

    repo = user_repo(cs.tmp)
    sid = _launch(cs, 2)
    flag = cs.tmp / "fixed"
    tasks = [{"id": "needs-fix", "prompt": "[mock:write=n.txt] x", "verify": f"test -f {flag}"},
             {"id": "after", "prompt": "[mock:write=a.txt] y", "depends_on": ["needs-fix"]}]
    code, status, proc = _create(cs, repo, tasks, sid, timeout=90)
    assert code == 5, proc.stdout + proc.stderr
    pid = status["project_id"]
    assert [t["state"] for t in status["tasks"]] == ["failed", "blocked"]
    preview = cs.json("project", "resume-preview", pid)
    assert preview["will_run"] == [], "without --retry-failed nothing would run"
    preview = cs.json("project", "resume-preview", pid, "--retry-failed")
    assert preview["will_run"] == ["needs-fix", "after"]
    flag.write_text("")
    proc = cs.run("project", "resume", pid, "--retry-failed", "--wait", "--timeout", "90", "--json", check=False,
                  timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    done = json.loads(proc.stdout)
    assert [(t["id"], t["state"], t["attempts"]) for t in done["tasks"]] == [("needs-fix", "completed", 1),
                                                                             ("after", "completed", 1)]
