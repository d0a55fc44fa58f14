"""Projects as a feature of the core, through the shared Harness (decide + reduce, fake clock):
random programs of project inputs mixed with worker evidence; replaying the log from an empty state
gives exactly the live project records, and every project reducer is reachable."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codeswarm.core import projects as P
from codeswarm.core.project_graph import parse_graph
from codeswarm.core.nodeloss import NodeGone, NodeRespawned
from codeswarm.core.project_loss import attempt_evidence
from codeswarm.core.project_records import ACTIVE_TASK_STATES, REDUCERS
from codeswarm.core.states import IllegalTransition
from tests.harness import Harness

GRAPH = parse_graph([{"id": "a1", "prompt": "x"}, {"id": "a2", "prompt": "x", "depends_on": ["a1"], "verify": "true"},
                     {"id": "b1", "prompt": "x"}, {"id": "join", "prompt": "x", "depends_on": ["a2", "b1"]}])

ops = st.lists(st.one_of(
    st.tuples(st.just("dispatch")),
    st.tuples(st.just("started"), st.integers(0, 7)),
    st.tuples(st.just("turn"), st.integers(0, 7)),
    st.tuples(st.just("result"), st.integers(0, 7), st.booleans()),
    st.tuples(st.just("exit"), st.integers(0, 1), st.integers(0, 1)),
    st.tuples(st.just("lost"), st.integers(0, 7)),     # kill -9 of an active task's worker (NodeGone)
    st.tuples(st.just("respawn"), st.integers(0, 3)),  # a lost node's restart: a new worker runs
    st.tuples(st.just("late"), st.integers(0, 7)),  # a result of an attempt ended as lost
    st.tuples(st.just("integrated"), st.booleans()),
    st.tuples(st.just("resume"), st.booleans(), st.booleans()),
    st.tuples(st.just("cancel")),
    st.tuples(st.just("forged"), st.integers(0, 7)),
), max_size=50)


def setup() -> tuple[Harness, list[Any], str]:
    h = Harness(inject_timeout_seconds=60)
    swarms = [h.launch(nodes=2, request_id=f"l{i}")[0] for i in range(2)]
    for sw in swarms:
        h.start(sw)
    d = h.decide(P.CreateProject("rq", "demo", "/repo", "main", "c" * 40, tuple(s.swarm_id for s in swarms), GRAPH,
                                 2, True))
    pid = next(e.data["project_id"] for e in d.events if e.name == "project_created")
    return h, swarms, pid


def active(h: Harness, pid: str) -> list[Any]:
    return [t for t in h.state.projects.projects[pid].tasks.values() if t.state in ACTIVE_TASK_STATES]


def result_line(h: Harness, t: Any, ok: bool) -> P.TaskResultLine:
    key = (t.swarm_id, t.node_id)
    seq = h._next_outbox_seq(h.state.swarms[t.swarm_id], t.node_id)
    return P.TaskResultLine(key[0], key[1], {"seq": seq, "type": "lifecycle", "event": "project_task_result",
                                             "injection_id": t.injection_id,
                                             "data": {"project_id": t.branch.split("/")[1], "task_id": t.id, "ok": ok,
                                                      "commit": "f" * 40 if ok else None, "stage": "verify",
                                                      "error": None if ok else "verify failed",
                                                      "verify_output": "out", "timings_ms": {"checkout": 1.0}}})


def run(h: Harness, swarms: list[Any], pid: str, program: list[tuple[Any, ...]]) -> None:
    for op in program:
        h.at(h.now + 1)
        kind = op[0]
        tasks = active(h, pid)
        p = h.state.projects.projects[pid]
        if kind == "dispatch":
            h.decide(P.DispatchProjects())
        elif kind == "started" and tasks:
            h.decide(P.TurnStarted(tasks[op[1] % len(tasks)].injection_id))
        elif kind == "turn" and tasks:
            t = tasks[op[1] % len(tasks)]
            if h.state.swarms[t.swarm_id].nodes[t.node_id].worker == "running":
                h.turn(h.state.swarms[t.swarm_id], t.node_id, t.injection_id)
        elif kind == "result" and tasks:
            h.decide(result_line(h, tasks[op[1] % len(tasks)], op[2]))
        elif kind == "forged" and tasks:  # a result from another node than the one the attempt went to
            t = tasks[op[1] % len(tasks)]
            line = result_line(h, t, True)
            h.decide(P.TaskResultLine(line.swarm_id, 1 - line.node_id, line.line))
        elif kind == "exit":
            sw = swarms[op[1]]
            if sw.nodes[op[2]].worker == "running":
                h.exit(sw, op[2])
        elif kind == "lost" and tasks:
            t = tasks[op[1] % len(tasks)]
            h.decide(NodeGone(t.swarm_id, t.node_id, "killed"))
        elif kind == "respawn":
            sw, node = swarms[op[1] // 2], op[1] % 2
            if sw.nodes[node].worker == "lost":
                h.decide(NodeRespawned(sw.swarm_id, node, sw.nodes[node].restart_count + 1, {}))
                h.start(sw, node)
        elif kind == "late":
            lost = [t for t in p.tasks.values() if t.lost_attempt]
            if lost:
                t = lost[op[1] % len(lost)]
                la = t.lost_attempt
                sw = h.state.swarms[la["swarm_id"]]
                h.decide(P.TaskResultLine(sw.swarm_id, la["node_id"], {
                    "seq": h._next_outbox_seq(sw, la["node_id"]), "type": "lifecycle", "event": "project_task_result",
                    "injection_id": la["injection_id"], "data": {"project_id": pid, "task_id": t.id, "ok": True,
                                                                 "commit": "f" * 40}}))
        elif kind == "integrated" and p.state == "integrating" and p.integrating:
            todo = tuple(t.branch for t in p.tasks.values() if t.kind == "task" and t.state == "completed"
                         and t.branch not in p.integrated)
            if op[1] or not todo:
                h.decide(P.IntegrationDone(pid, todo, "i" * 40))
            else:
                h.decide(P.IntegrationDone(pid, todo[:-1], "i" * 40, todo[-1], ("README",)))
        elif kind == "resume":
            heads = {t.branch: "f" * 40 for t in p.tasks.values() if t.state == "completed" and op[2]}
            try:
                h.decide(P.Resume("rr", pid, (), op[1], heads, frozenset()))
            except P.ProjectError:
                pass
        elif kind == "cancel":
            try:
                h.decide(P.Cancel("rc", pid))
            except P.ProjectError:
                pass


def projects_json(state: Any) -> Any:
    return orjson.loads(orjson.dumps([p.to_json() for p in state.projects.projects.values()]))


@settings(max_examples=300, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_replaying_the_log_gives_exactly_the_live_projects(program: list[tuple[Any, ...]]) -> None:
    h, swarms, pid = setup()
    run(h, swarms, pid, program)
    replayed = h.replayed()
    assert projects_json(replayed) == projects_json(h.state)
    replayed.projects.reindex()
    assert replayed.projects.by_injection == h.state.projects.by_injection
    # an attempt whose worker died ends once; after a dispatch none is left on a gone worker
    ended = [d["injection_id"] for _s, n, d, _t in h.log if n == "project_task_failed" and d.get("ended_by")]
    assert len(ended) == len(set(ended))
    if h.state.projects.projects[pid].state in ("running", "integrating"):
        h.decide(P.DispatchProjects())
        assert attempt_evidence(h.state)[1] == {}
    completed = [d["task_id"] for _s, n, d, _t in h.log if n == "project_task_completed"]
    resets = [d["task_id"] for _s, n, d, _t in h.log if n == "project_task_reset"]
    for tid in set(completed):  # a task completes again only after a resume reset it
        assert completed.count(tid) <= 1 + resets.count(tid)


def drive(h: Harness, pid: str, fail: set[str], conflict: bool) -> None:
    """Run the project to its end: results for active tasks, one conflicting integration pass if asked."""
    for _ in range(60):
        h.at(h.now + 1)
        h.decide(P.DispatchProjects())
        p = h.state.projects.projects[pid]
        tasks = active(h, pid)
        for t in tasks:
            h.turn(h.state.swarms[t.swarm_id], t.node_id, t.injection_id)  # the agent's whole turn
            h.decide(P.TurnStarted(t.injection_id))
            h.decide(result_line(h, t, t.id not in fail))
        if p.state == "integrating" and p.integrating:
            todo = tuple(t.branch for t in p.tasks.values() if t.kind == "task" and t.state == "completed"
                         and t.branch not in p.integrated)
            if conflict and todo:
                conflict = False
                h.decide(P.IntegrationDone(pid, todo[:-1], "m" * 40, todo[-1], ("README",)))
            else:
                h.decide(P.IntegrationDone(pid, todo, "i" * 40))
        if p.state in ("completed", "failed", "cancelled"):
            return


def test_programs_reach_every_project_reducer_and_the_injections_carry_the_task() -> None:
    seen: set[str] = set()
    h, swarms, pid = setup()
    d = h.decide(P.DispatchProjects())
    lines = [e for e in d.effects if hasattr(e, "line")]
    assert sorted(line.line["project_task"]["task_id"] for line in lines) == ["a1", "b1"]
    assert "inject_ack" in h.names(), "tasks go out as ordinary injections"
    drive(h, pid, set(), conflict=True)  # success through an integration task
    assert h.state.projects.projects[pid].state == "completed"
    assert "integration-1" in h.state.projects.projects[pid].tasks
    seen |= set(h.names())
    assert projects_json(h.replayed()) == projects_json(h.state)

    h, swarms, pid = setup()
    drive(h, pid, {"a1"}, conflict=False)  # a1 fails twice: a2 and join blocked, the project failed
    p = h.state.projects.projects[pid]
    assert p.state == "failed" and p.tasks["a2"].state == "blocked" and p.tasks["a1"].attempts == 2
    h.exit(swarms[0], 0)
    h.decide(P.Resume("rr", pid, (swarms[1].swarm_id,), True, {}, frozenset()))  # retry-failed, b1's branch gone
    drive(h, pid, set(), conflict=False)
    assert h.state.projects.projects[pid].state == "completed"
    seen |= set(h.names())
    assert projects_json(h.replayed()) == projects_json(h.state)

    h, swarms, pid = setup()
    h.decide(P.DispatchProjects())
    h.exit(swarms[0], 0)
    h.exit(swarms[1], 0)
    h.decide(P.DispatchProjects())  # a task on an exited node is requeued
    h.decide(P.Cancel("rc", pid))
    seen |= set(h.names())
    assert projects_json(h.replayed()) == projects_json(h.state)
    # the plan records are emitted by the router's shell around the planner's injection (test below)
    assert set(REDUCERS) - seen == {"project_plan_started", "project_plan_failed"}


def test_a_plan_record_lives_from_plan_started_to_created_or_failed() -> None:
    from codeswarm.core import Event, reduce
    from codeswarm.core.records import CoreState

    state = CoreState()
    for iid in ("i1", "i2"):
        reduce(state, Event("project_plan_started", {"request_id": "r", "planner": "s", "injection_id": iid,
                                                     "payload": {"repo": "/r"}, "started_at": 5.0}, 0.0, 7))
    assert state.projects.plans["i1"]["seq"] == 7 and state.projects.plans["i1"]["payload"] == {"repo": "/r"}
    reduce(state, Event("project_plan_failed", {"injection_id": "i1", "reason": "no JSON"}, 0.0, 8))
    reduce(state, Event("project_created", {"project_id": "p", "name": "p", "repo": "/r", "base": "main",
                                            "base_commit": "c" * 40, "swarms": ["s"], "tasks": [],
                                            "plan_injection_id": "i2"}, 0.0, 9))
    assert state.projects.plans == {}


def test_an_illegal_project_event_is_refused_by_the_tables() -> None:
    h, _swarms, pid = setup()
    from codeswarm.core import Event

    try:
        h.record([Event("project_task_completed", {"project_id": pid, "task_id": "a1", "commit": "x", "attempt": 1,
                                                   "injection_id": "i", "branch": "b", "finished_at": 0.0})])
    except IllegalTransition:
        return
    raise AssertionError("completing a pending task must raise IllegalTransition")


def test_after_a_restart_an_acked_task_goes_out_once_and_with_its_project_task() -> None:
    """The generic redelivery of acked prompts skips project tasks: a line without `project_task`,
    read first, would run the task as a plain turn that never reports (a hung project)."""
    from codeswarm.core.nodeloss import RedeliverAcked

    h, _swarms, pid = setup()
    h.decide(P.DispatchProjects())
    acked = {t.injection_id for t in active(h, pid)}
    assert len(acked) == 2
    generic = [e for e in h.decide(RedeliverAcked()).effects if hasattr(e, "line")]
    assert not [e for e in generic if e.line.get("injection_id") in acked]
    resent = [e for e in h.decide(P.RecoverProjects()).effects if hasattr(e, "line")]
    assert {e.line["injection_id"] for e in resent} == acked and all("project_task" in e.line for e in resent)
