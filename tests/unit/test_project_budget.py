"""Project budgets in the core (core/project_budget.py): a task's usage is tagged with its project, the
project's spend is folded from the logged events (a replay or a repeated event counts once), the marks
fire at 80 % and 100 %, the project's running turns are interrupted and its tasks stay resumable, no
task is assigned until the budget is raised.

Codex (gpt-5.4) prices: 1,000,000 fresh input tokens cost exactly $2.50.
"""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from codeswarm.core import reduce
from codeswarm.core import projects as D
from codeswarm.core.kernel import Event, InboxLine
from codeswarm.core.project_budget import SetProjectBudget, is_project_scoped, may_be_project_scoped
from codeswarm.core.project_graph import parse_graph
from codeswarm.router.normalize.base import usage_event

M = 1_000_000


def usage(total_in: int) -> tuple[str, dict]:
    return usage_event("thread/tokenUsage/updated", {"input_tokens": total_in, "cached_input_tokens": 0,
                                                     "output_tokens": 0, "reasoning_output_tokens": 0,
                                                     "total_tokens": total_in}, None, thread_id="A")


def project(h, budget: float | None, tasks=("a", "b"), planner_usd: float = 0.0):
    swarm, _ = h.launch(nodes=2)
    h.start(swarm)
    graph = parse_graph([{"id": t, "prompt": f"do {t}"} for t in tasks])
    h.decide(D.CreateProject("r", "p", "/repo", "main", "c0ffee", (swarm.swarm_id,), graph, 2, True, budget,
                             planner_usd))
    (pid,) = h.state.projects.projects
    return swarm, h.state.projects.projects[pid]


def assigned(h, p) -> dict[str, tuple[int, str]]:
    """Dispatch; task id -> (node, injection id) of what was assigned."""
    mark = h.mark()
    h.decide(D.DispatchProjects())
    return {d["task_id"]: (d["node_id"], d["injection_id"]) for n, d in h.events(after=mark)
            if n == "project_task_assigned"}


def test_task_usage_is_the_projects_spend_and_the_budget_stops_it_resumably(h) -> None:
    swarm, p = project(h, budget=4.0, planner_usd=0.5)
    assert p.spend_view()["spend_usd"] == 0.5  # the planner turn that wrote the graph counts
    work = assigned(h, p)
    assert sorted(work) == ["a", "b"]
    (na, ia), (nb, ib) = work["a"], work["b"]
    for node, iid in (work["a"], work["b"]):
        h.accept(swarm, node, iid)
        h.runtime(swarm, node, iid, ("turn_started", {"turn_id": "t"}))
    h.runtime(swarm, na, ia, usage(M))  # $2.50 + $0.50: 75 %, no mark yet
    (u,) = [d for n, d in h.events() if n == "usage"]
    assert (u["project_id"], u["task_id"]) == (p.project_id, "a")
    assert not [n for n in h.names() if n.startswith("budget_")]
    mark = h.mark()
    decision = h.runtime(swarm, nb, ib, usage(M // 5))  # + $0.50 = $3.50: 87.5 %
    assert h.names(after=mark) == ["usage", "budget_warning"]
    assert not [e for e in decision.effects if isinstance(e, InboxLine)]
    mark = h.mark()
    decision = h.runtime(swarm, nb, ib, usage(M // 2))  # + $0.75 = $4.25
    assert h.names(after=mark) == ["usage", "budget_exceeded"]
    (_, ex) = h.events(after=mark)[1]
    assert ex == {"scope": "project", "project_id": p.project_id, "spend_usd": 4.25, "budget_usd": 4.0,
                  "percent": 106.2}
    controls = sorted((e.node_id, e.line["payload"]["injection_ids"]) for e in decision.effects
                      if isinstance(e, InboxLine))
    assert controls == sorted([(na, [ia]), (nb, [ib])])
    assert p.budget_exceeded and p.spend_view()["budget_state"] == "exceeded"
    status = {t["id"]: t["spend_usd"] for t in p.status()["tasks"]}
    assert status == {"a": 2.5, "b": 1.25}
    # the interrupted turns report failed attempts: the tasks go back to ready, no attempt spent
    for tid, (node, iid) in work.items():
        h.runtime(swarm, node, iid, ("turn_complete", {"turn_id": "t", "status": "interrupted"}))
        h.decide(D.TaskResultLine(swarm.swarm_id, node, {"injection_id": iid, "seq": 99, "data": {
            "project_id": p.project_id, "task_id": tid, "ok": False, "stage": "agent",
            "error": "the agent's turn ended interrupted"}}))
    assert {t.id: (t.state, t.attempts) for t in p.tasks.values()} == {"a": ("ready", 0), "b": ("ready", 0)}
    assert "project_task_failed" not in h.names()
    assert assigned(h, p) == {}  # nothing starts while the budget is spent
    # a raise re-arms the marks and lets the dispatcher assign again
    mark = h.mark()
    h.decide(SetProjectBudget(p.project_id, 20.0, "r2"))
    assert h.names(after=mark) == ["budget_updated"]
    assert not p.budget_exceeded and p.budget_usd == 20.0
    assert sorted(assigned(h, p)) == ["a", "b"]
    # lowering below the spend stops it again at once
    mark = h.mark()
    h.decide(SetProjectBudget(p.project_id, 1.0, "r3"))
    assert h.names(after=mark)[:3] == ["budget_updated", "budget_warning", "budget_exceeded"]


def test_project_spend_is_rebuilt_from_the_log_and_a_repeated_event_counts_once(h) -> None:
    swarm, p = project(h, budget=None, tasks=("a",))
    ((node, iid),) = assigned(h, p).values()
    h.accept(swarm, node, iid)
    h.runtime(swarm, node, iid, ("turn_started", {"turn_id": "t"}), usage(M))
    h.runtime(swarm, node, iid, usage(2 * M))
    h.decide(SetProjectBudget(p.project_id, 100.0, "r"))
    fresh = h.replayed().projects.projects[p.project_id]
    assert fresh.spend == p.spend and fresh.budget_usd == 100.0 and fresh.spend_view()["spend_usd"] == 5.0
    seq, name, data, _ = [e for e in h.log if e[1] == "usage"][-1]
    reduce(h.state, Event(name, data, 0.0, seq))  # snapshot + overlapping log
    assert p.spend_view()["spend_usd"] == 5.0 and Decimal(p.spend["cost_usd"]) == Decimal(5)
    # what the projects shell replays after its snapshot, found by a cheap look at the raw line
    for seq, name, data, _ in h.log:
        raw = orjson.dumps({"event": name, "seq": seq, "data": data})
        assert is_project_scoped(name, data) == (name == "usage" or (name.startswith("budget_")
                                                                      and data.get("scope") == "project"))
        if is_project_scoped(name, data):
            assert may_be_project_scoped(raw)


def test_usage_of_another_node_or_a_plain_injection_is_not_the_projects(h) -> None:
    swarm, p = project(h, budget=1.0, tasks=("a",))
    ((node, iid),) = assigned(h, p).values()
    other = 1 - node
    h.runtime(swarm, other, iid, usage(M))  # a forged line naming the task's injection from another node
    plain = h.inject(swarm, [other])[other]
    h.runtime(swarm, other, plain, usage(2 * M))
    logged = [d for n, d in h.events() if n == "usage"]
    assert all("project_id" not in d for d in logged)
    assert p.spend_view()["spend_usd"] == 0 and not p.budget_exceeded


def test_after_a_restart_the_interrupts_of_spent_budgets_are_asked_again(h) -> None:
    from codeswarm.core.spend import ReassertStops

    swarm, p = project(h, budget=1.0, tasks=("a",))
    ((node, iid),) = assigned(h, p).values()
    h.accept(swarm, node, iid)
    h.runtime(swarm, node, iid, ("turn_started", {"turn_id": "t"}))
    first = h.runtime(swarm, node, iid, usage(M))  # $2.50 of $1: stopped
    wanted = [(e.node_id, e.line["payload"]) for e in first.effects if isinstance(e, InboxLine)]
    assert [pl["injection_ids"] for _, pl in wanted] == [[iid]]
    # a swarm of its own whose budget is spent with a turn still running
    other, _ = h.launch(nodes=1, budget_usd=1.0)
    h.start(other)
    oid = h.inject(other, [0])[0]
    h.accept(other, 0, oid)
    # the turn starts and crosses the budget in one outbox line: interrupted, not failed as unstarted
    h.runtime(other, 0, oid, ("turn_started", {"turn_id": "t"}), usage(M))
    assert other.budget_exceeded and other.injections[oid].state == "started"
    # the crash cut the inbox writes off: recovery asks again, and logs nothing new
    mark = h.mark()
    again = h.decide(ReassertStops())
    lines = sorted((e.swarm_id, e.node_id, tuple(e.line["payload"]["injection_ids"])) for e in again.effects
                   if isinstance(e, InboxLine))
    assert lines == sorted([(swarm.swarm_id, node, (iid,)), (other.swarm_id, 0, (oid,))])
    assert h.names(after=mark) == []
    # once the turns have ended there is nothing to stop
    h.runtime(swarm, node, iid, ("turn_complete", {"turn_id": "t", "status": "interrupted"}))
    h.runtime(other, 0, oid, ("turn_complete", {"turn_id": "t", "status": "interrupted"}))
    assert [e for e in h.decide(ReassertStops()).effects if isinstance(e, InboxLine)] == []



@pytest.mark.parametrize("commit", ["--upload-pack=touch /tmp/pwned", "x" * (1 << 20), "", "0" * 39, 7, None])
def test_a_forged_result_with_a_commit_that_is_no_commit_id_completes_nothing(h, commit) -> None:
    """Review (forged outbox line): a `project_task_result` from the task's own node whose `commit` is
    no commit id (an option for git, 1 MiB of text) must not complete the task: its dependents would
    be sent that string as their start commit. It is a failed attempt that says why."""
    swarm, p = project(h, budget=None, tasks=("a",))
    ((node, iid),) = assigned(h, p).values()
    h.accept(swarm, node, iid)
    mark = h.mark()
    h.decide(D.TaskResultLine(swarm.swarm_id, node, {"injection_id": iid, "seq": 5, "data": {
        "project_id": p.project_id, "task_id": "a", "ok": True, "commit": commit}}))
    assert "project_task_completed" not in h.names(after=mark)
    (failed,) = [d for n, d in h.events(after=mark) if n == "project_task_failed"]
    assert "names no commit id" in failed["error"] and len(failed["error"]) < 200
    assert p.tasks["a"].commit is None and p.tasks["a"].state == "ready"
