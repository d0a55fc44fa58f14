"""Project budgets through the real .pyz (issue 15): a project's spend is the cost of its tasks' turns,
summed from the logged usage events; reaching its budget interrupts the running task turns, keeps the
tasks resumable (not failed), refuses new work, survives kill -9 of the router unchanged, and a raised
budget lets `project resume` finish the project.

The mock is priced like gpt-5.4 (2.5 USD per million input tokens); `[mock:tokens=1000000]` makes each
of a turn's two model calls cost about $2.50.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from tests.conftest import Codeswarm, local_config
from tests.projects.helpers import git, named, user_repo, write_tasks

HEAVY = "[mock:tokens=1000000] [mock:slow=8]"


def task(tid: str, deps: list[str], heavy: bool) -> dict[str, Any]:
    return {"id": tid, "depends_on": deps, "verify": f"grep -q '{tid} attempt' {tid}.txt",
            "prompt": f"{HEAVY if heavy else ''} [mock:write={tid}.txt] write {tid}.txt"}


def project_usage(events: list[dict[str, Any]], project_id: str) -> tuple[Decimal, dict[str, Decimal]]:
    """The sum of the logged usage events tagged with the project, in total and per task."""
    total, per_task = Decimal(0), {}
    for e in events:
        d = e["data"]
        if e["event"] == "usage" and d.get("project_id") == project_id:
            cost = Decimal(repr(d["estimated_cost_usd"]))
            total += cost
            per_task[d["task_id"]] = per_task.get(d["task_id"], Decimal(0)) + cost
    return total, per_task


def cents(x: float | Decimal) -> Decimal:
    return Decimal(repr(float(x))).quantize(Decimal("0.01"))


def test_project_budget_stops_the_tasks_keeps_them_resumable_across_kill_9_and_a_raise_finishes(
        cs: Codeswarm) -> None:
    # the config default applies to a project created without --budget-usd
    cs.write_config({**local_config(cs.tmp), "budget": {"default_project_usd": 3}})
    repo = user_repo(cs.tmp)
    sid = cs.json("launch", "--nodes", "2")["swarm_id"]
    tasks = write_tasks(cs.tmp, [task("t1", [], True), task("t2", [], True), task("t3", ["t1", "t2"], False)])
    pid = cs.json("project", "create", "--repo", str(repo), "--tasks", str(tasks), "--swarm", sid,
                  "--start")["project_id"]
    # t1's first call ($2.50) passes 80 % of $3, t2's first call passes $3: both running turns stop
    evs = cs.wait_for(lambda es: len(named(es, "project_task_ready", project_id=pid, reason="budget_exceeded")) == 2,
                      timeout=90)
    exceeded = [e["data"] for e in evs if e["event"] == "budget_exceeded" and e["data"].get("scope") == "project"]
    warned = [e["data"] for e in evs if e["event"] == "budget_warning" and e["data"].get("scope") == "project"]
    assert len(exceeded) == 1 and len(warned) == 1
    assert exceeded[0]["project_id"] == pid and exceeded[0]["budget_usd"] == 3 and exceeded[0]["spend_usd"] >= 3
    assert "swarm_id" not in exceeded[0]
    assert not [e for e in evs if e["event"] == "budget_exceeded" and e["data"].get("scope") == "swarm"]
    task_iids = {e["data"]["injection_id"] for e in named(evs, "project_task_assigned", project_id=pid)}
    ends = [e["data"] for e in evs if e["event"] == "turn_complete" and e["data"]["injection_id"] in task_iids]
    assert [d["status"] for d in ends] == ["interrupted", "interrupted"]  # stopped gently, long before 8 s
    assert not named(evs, "project_task_failed", project_id=pid)  # not failed as if verify failed

    status = cs.json("project", "status", pid)
    total, per_task = project_usage(cs.events(), pid)
    assert status["state"] == "running" and status["budget_usd"] == 3 and status["budget_state"] == "exceeded"
    assert cents(status["spend_usd"]) == cents(total) and Decimal(5) < total < Decimal(5.2)
    by_id = {t["id"]: t for t in status["tasks"]}
    assert {tid: (t["state"], t["attempts"]) for tid, t in by_id.items()} == \
        {"t1": ("ready", 0), "t2": ("ready", 0), "t3": ("pending", 0)}
    assert {tid: cents(t["spend_usd"]) for tid, t in by_id.items()} == \
        {"t1": cents(per_task["t1"]), "t2": cents(per_task["t2"]), "t3": Decimal("0.00")}
    listed = {p["project_id"]: p for p in cs.json("project", "list")}[pid]
    assert (listed["spend_usd"], listed["budget_usd"], listed["budget_state"]) == \
        (status["spend_usd"], 3, "exceeded")
    assert "of $3.00" in cs.run("project", "list").stdout

    # new work is refused until the budget is raised
    refused = cs.run("project", "resume", pid, check=False)
    assert refused.returncode == 3 and "budget_exceeded" in refused.stderr
    assert cs.json("project", "budget", pid)["budget_state"] == "exceeded"

    cs.kill_router()  # the exceeded budget and the spend are rebuilt from snapshot + log, unchanged
    assert cs.json("project", "status", pid) == status
    assert project_usage(cs.events(), pid)[0] == total  # no usage logged twice
    again = cs.run("project", "resume", pid, check=False)
    assert again.returncode == 3 and "budget_exceeded" in again.stderr
    bad = cs.run("project", "budget", pid, "--usd", "-2", check=False)
    assert bad.returncode == 2

    raised = cs.json("project", "budget", pid, "--usd", "100")
    assert raised["budget_usd"] == 100 and raised["budget_state"] == "ok"
    done = cs.run("project", "resume", pid, "--wait", "--timeout", "120", "--json", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    final = cs.json("project", "status", pid)
    total, per_task = project_usage(cs.events(), pid)
    assert final["state"] == "completed" and final["budget_state"] == "ok"
    assert cents(final["spend_usd"]) == cents(total) and total > Decimal(10)  # t1 and t2 ran twice
    assert {t["id"]: cents(t["spend_usd"]) for t in final["tasks"]} == {k: cents(v) for k, v in per_task.items()}
    assert {t["id"]: t["attempts"] for t in final["tasks"]} == {"t1": 1, "t2": 1, "t3": 1}
    assert sorted(git(repo, "ls-tree", "-r", "--name-only", final["integration_branch"]).split()) == \
        ["README", "t1.txt", "t2.txt", "t3.txt"]
    report = cs.json("spend", "--project", pid)  # the same figures from the logged usage events
    assert cents(report["total"]["spend_usd"]) == cents(final["spend_usd"])
    assert {t: cents(r["spend_usd"]) for t, r in report["by_task"].items()} == {k: cents(v) for k, v in per_task.items()}
    # the swarm's own total holds the project's usage too (the project does not hide spend)
    assert cs.json("status", sid)["spend_usd"] >= final["spend_usd"]
    cs.kill_router()
    assert cs.json("project", "status", pid) == final


def test_project_budget_payload_is_validated_and_shown(cs: Codeswarm) -> None:
    repo = user_repo(cs.tmp)
    sid = cs.json("launch", "--nodes", "1")["swarm_id"]
    tasks = write_tasks(cs.tmp, [task("a", [], False)])
    bad = cs.run("project", "create", "--repo", str(repo), "--tasks", str(tasks), "--swarm", sid,
                 "--budget-usd", "0", check=False)
    assert bad.returncode == 2 and "--budget-usd" in bad.stderr
    pid = cs.json("project", "create", "--repo", str(repo), "--tasks", str(tasks), "--swarm", sid,
                  "--budget-usd", "7.5")["project_id"]
    st = cs.json("project", "status", pid)
    assert (st["budget_usd"], st["budget_state"], st["spend_usd"]) == (7.5, "ok", 0)
    cleared = cs.json("project", "budget", pid, "--clear")
    assert cleared["budget_usd"] is None and cleared["budget_state"] is None
    missing = cs.run("project", "budget", "no-such-project", "--usd", "5", check=False)
    assert missing.returncode != 0 and "unknown_project" in missing.stderr
    done = cs.run("project", "start", pid, "--wait", "--timeout", "60", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    st = cs.json("project", "status", pid)
    total, per_task = project_usage(cs.events(), pid)
    assert total > 0 and cents(st["spend_usd"]) == cents(total) and st["budget_usd"] is None


def test_bad_project_budget_commands_get_clear_rejections_and_change_nothing(cs: Codeswarm) -> None:
    from tests.integration.test_bad_input import Raw

    repo = user_repo(cs.tmp)
    sid = cs.json("launch", "--nodes", "1")["swarm_id"]
    tasks = write_tasks(cs.tmp, [task("a", [], False)])
    pid = cs.json("project", "create", "--repo", str(repo), "--tasks", str(tasks), "--swarm", sid,
                  "--budget-usd", "5")["project_id"]
    before = cs.json("project", "status", pid)
    raw = Raw(str(cs.home / "router.sock"))
    graph = json.loads(tasks.read_text())
    cases = [
        ("project_budget", {"project_id": pid}, "invalid_payload", "budget_usd: required"),
        ("project_budget", {"project_id": pid, "budget_usd": "ten"}, "invalid_payload", "number of US dollars"),
        ("project_budget", {"project_id": pid, "budget_usd": True}, "invalid_payload", "number of US dollars"),
        ("project_budget", {"project_id": pid, "budget_usd": -1}, "invalid_payload", "> 0"),
        ("project_budget", {"project_id": pid, "budget_usd": 1e300}, "invalid_payload", "at most"),
        ("project_budget", {"project_id": "x" * 900_000, "budget_usd": 5}, "unknown_project", "unknown project"),
        ("project_budget", {"project_id": ["a"], "budget_usd": 5}, "invalid_payload", "project_id"),
        ("project_create", {"repo": str(repo), "tasks": graph, "swarms": [sid], "budget_usd": 0},
         "invalid_payload", "budget_usd"),
        ("project_create", {"repo": str(repo), "tasks": graph, "swarms": [sid], "budget_usd": {"usd": 1}},
         "invalid_payload", "budget_usd"),
    ]
    for i, (command, payload, code, text) in enumerate(cases):
        ans = raw.command(command, payload, f"bad-{i}")
        assert ans["event"] == "command_rejected", (command, payload, ans)
        assert ans["data"]["code"] == code and text in ans["data"]["reason"], (payload, ans["data"])
    assert len(cs.json("project", "list")) == 1  # no project created by a bad budget
    assert cs.json("project", "status", pid) == before
    ok = raw.command("project_budget", {"project_id": pid, "budget_usd": None}, "clear")
    assert ok["event"] == "budget_updated" and ok["data"]["scope"] == "project" and ok["data"]["budget_usd"] is None


def test_the_planner_turn_counts_in_the_projects_spend(cs: Codeswarm) -> None:
    repo = user_repo(cs.tmp)
    planner = cs.json("launch", "--nodes", "1")["swarm_id"]
    workers = cs.json("launch", "--nodes", "2")["swarm_id"]
    graph = {"tasks": [task("p1", [], False), task("p2", ["p1"], False)]}
    spec = cs.tmp / "spec.md"  # the mock planner echoes the spec: its fenced block is the plan
    spec.write_text("[mock:tokens=200000] Build two files.\n```json\n" + json.dumps(graph) + "\n```\n")
    proc = cs.run("project", "plan", "--repo", str(repo), "--spec", str(spec), "--planner", planner, "--swarm",
                  workers, "--budget-usd", "20", "--wait", "--timeout", "120", "--json", check=False, timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status = json.loads(proc.stdout)
    pid = status["project_id"]
    events = cs.events()
    planner_usage = sum(Decimal(repr(e["data"]["estimated_cost_usd"])) for e in events
                        if e["event"] == "usage" and e["data"]["swarm_id"] == planner)
    tasks_usage, _ = project_usage(events, pid)
    assert planner_usage > Decimal(1)  # two calls of 200,000 tokens at $2.50 per million
    assert cents(status["planner_spend_usd"]) == cents(planner_usage)
    assert cents(status["spend_usd"]) == cents(planner_usage + tasks_usage)
    assert status["budget_usd"] == 20 and status["budget_state"] == "ok"
    cs.kill_router()
    assert cs.json("project", "status", pid)["spend_usd"] == status["spend_usd"]
