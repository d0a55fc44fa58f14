"""A task attempt whose worker dies after taking it - in particular after the agent's turn ended,
during the commit, verify or push the worker runs itself - ends as a failed attempt (counted,
retried per max_attempts), exactly once, also across a router restart; a late result of it is not
applied (core/project_loss.py). Pure: decide + reduce through the shared harness."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codeswarm import core
from codeswarm.core import projects as P
from codeswarm.core.kernel import Event
from codeswarm.core.nodeloss import NodeGone, NodeRespawned
from codeswarm.core.project_graph import parse_graph
from codeswarm.core.project_loss import Ended, attempt_evidence
from codeswarm.core.records import CoreState
from tests.harness import Harness

GRAPH = parse_graph([{"id": "a", "prompt": "x", "verify": "true"}, {"id": "b", "prompt": "y", "depends_on": ["a"]}])


def setup(nodes: int = 2, max_attempts: int = 2, **params: Any) -> tuple[Harness, Any, str]:
    h = Harness(inject_timeout_seconds=60)
    swarm = h.launch(nodes=nodes, **params)[0]
    h.start(swarm)
    d = h.decide(P.CreateProject("rq", "demo", "/repo", "main", "c" * 40, (swarm.swarm_id,), GRAPH, max_attempts,
                                 True))
    pid = next(e.data["project_id"] for e in d.events if e.name == "project_created")
    h.decide(P.DispatchProjects())
    return h, swarm, pid


def task(h: Harness, pid: str, tid: str = "a") -> Any:
    return h.state.projects.projects[pid].tasks[tid]


def after_the_turn(h: Harness, swarm: Any, t: Any) -> str:
    """The worker took the attempt and its agent's turn ended: it now commits, verifies, pushes."""
    iid = t.injection_id
    h.turn(swarm, t.node_id, iid)
    h.decide(P.TurnStarted(iid))
    assert t.state == "running" and swarm.injections[iid].state == "completed"
    return str(iid)


def result_line(h: Harness, swarm: Any, node: int, iid: str, pid: str, ok: bool, tid: str = "a") -> P.TaskResultLine:
    seq = h._next_outbox_seq(swarm, node)
    return P.TaskResultLine(swarm.swarm_id, node, {
        "seq": seq, "type": "lifecycle", "event": "project_task_result", "injection_id": iid,
        "data": {"project_id": pid, "task_id": tid, "ok": ok, "commit": "f" * 40 if ok else None, "stage": "verify",
                 "error": None if ok else "verify failed", "verify_output": ""}})


def failed_events(h: Harness, after: int = 0) -> list[dict[str, Any]]:
    return [d for n, d in h.events(after=after) if n == "project_task_failed"]


def restarted_router(h: Harness) -> Harness:
    """A new router on the same log (kill -9 of the old one: only the log survives)."""
    fresh = Harness(inject_timeout_seconds=60)
    fresh.state, fresh.log, fresh.seq, fresh.now = h.replayed(), list(h.log), h.seq, h.now + 5
    fresh._counter, fresh._outbox_seq = h._counter, h._outbox_seq
    return fresh


def projects_json(state: CoreState) -> Any:
    return orjson.loads(orjson.dumps([p.to_json() for p in state.projects.projects.values()]))


def test_a_node_lost_after_the_turn_fails_the_attempt_once_and_retries_it_elsewhere() -> None:
    h, swarm, pid = setup()
    t = task(h, pid)
    node, iid = t.node_id, after_the_turn(h, swarm, task(h, pid))
    h.decide(NodeGone(swarm.swarm_id, node, "worker pid 42 is gone"))  # during its verify: no result ever
    mark = h.mark()
    h.decide(P.DispatchProjects())
    [failed] = failed_events(h, mark)
    assert failed["ended_by"] == "node_lost" and failed["attempt"] == 1 and failed["final"] is False
    assert failed["injection_id"] == iid and failed["node_id"] == node and "died" in failed["error"]
    assert t.state == "ready" and t.attempts == 1 and t.error == failed["error"]
    d = h.decide(P.DispatchProjects())  # the next pass (project_task_failed wakes the dispatcher)
    assert t.state == "assigned" and t.attempts == 2 and t.node_id == 1 - node, "retried on the other node"
    [line] = [e.line for e in d.effects if hasattr(e, "line") and "project_task" in e.line]
    assert "attempt 2 of 2" in line["content"] and failed["error"] in line["content"]
    for _ in range(3):  # more looks change nothing: the attempt ended once
        mark = h.mark()
        h.decide(P.DispatchProjects())
        assert failed_events(h, mark) == []
    assert projects_json(h.replayed()) == projects_json(h.state)


def test_it_counts_as_an_attempt_the_last_one_fails_the_task_and_the_project() -> None:
    h, swarm, pid = setup(max_attempts=1)
    t = task(h, pid)
    after_the_turn(h, swarm, t)
    h.exit(swarm, t.node_id, reason="error", exit_code=1)  # a worker that exited (not asked to)
    h.decide(P.DispatchProjects())
    [failed] = failed_events(h)
    assert failed["ended_by"] == "worker_exited" and failed["final"] is True and "code 1" in failed["error"]
    p = h.state.projects.projects[pid]
    assert t.state == "failed" and p.tasks["b"].state == "blocked" and p.state == "failed"


def test_a_restart_seen_only_by_a_restarted_router_still_ends_the_attempt_exactly_once() -> None:
    """kill -9 of the router after the node was lost, restarted and running again, before any
    dispatch saw it lost: the restart count the attempt was sent under says its worker is gone."""
    h, swarm, pid = setup(nodes=1, restart="on-failure", restart_backoff_seconds=0)
    t = task(h, pid)
    iid = after_the_turn(h, swarm, t)
    assert t.node_restarts == 0
    h.decide(NodeGone(swarm.swarm_id, 0, "killed"))
    h.decide(NodeRespawned(swarm.swarm_id, 0, 1, {"procs": [{"pid": 7}]}))
    h.start(swarm, 0)  # the new worker runs; no dispatch ran in between (the router died)
    assert [d for d in failed_events(h)] == []
    h2 = restarted_router(h)
    h2.decide(P.RecoverProjects())
    h2.decide(P.DispatchProjects())
    h2.decide(P.DispatchProjects())
    [failed] = failed_events(h2)
    assert failed["ended_by"] == "node_restarted" and failed["injection_id"] == iid
    t2 = task(h2, pid)
    assert t2.state == "assigned" and t2.attempts == 2 and t2.node_id == 0 and t2.node_restarts == 1
    # killed again right after the failure was logged: the next router does not fail it twice
    h3 = restarted_router(h2)
    mark = h3.mark()
    h3.decide(P.RecoverProjects())
    h3.decide(P.DispatchProjects())
    assert failed_events(h3, mark) == []
    assert projects_json(h3.replayed()) == projects_json(h3.state) == projects_json(h2.state)


def test_the_lost_state_seen_by_a_restarted_router_ends_it_once() -> None:
    h, swarm, pid = setup()
    t = task(h, pid)
    after_the_turn(h, swarm, t)
    h.decide(NodeGone(swarm.swarm_id, t.node_id, "killed"))  # logged; the router dies before dispatching
    h2 = restarted_router(h)
    h2.decide(P.RecoverProjects())
    h2.decide(P.DispatchProjects())
    h2.decide(P.DispatchProjects())
    assert [d["ended_by"] for d in failed_events(h2)] == ["node_lost"]


def test_a_late_result_of_an_ended_attempt_is_not_applied_and_is_reported() -> None:
    """The worker was only unreachable: its result of attempt 1 comes after attempt 2 started."""
    h, swarm, pid = setup()
    t = task(h, pid)
    old_node, old = t.node_id, after_the_turn(h, swarm, t)
    h.decide(NodeGone(swarm.swarm_id, old_node, "no heartbeat"))
    h.decide(P.DispatchProjects())
    h.decide(P.DispatchProjects())
    assert t.attempts == 2 and t.node_id == 1 - old_node
    before = projects_json(h.state)
    mark = h.mark()
    line = result_line(h, swarm, old_node, old, pid, ok=True)
    h.decide(line)
    assert projects_json(h.state) == before, "the late result changed the task"
    [(name, data)] = h.events(after=mark)
    assert name == "agent_error" and data["error_code"] == "project_result_late" and data["fatal"] is False
    assert "attempt 1 (ok)" in data["message"] and "node_lost" in data["message"]
    assert h.replayed().swarms[swarm.swarm_id].nodes[old_node].outbox_seq == line.line["seq"], \
        "a restarted router does not read (and report) the line again"
    # the same line from another node, or a line naming another injection: nothing at all
    for forged in (result_line(h, swarm, 1 - old_node, old, pid, ok=True),
                   result_line(h, swarm, old_node, "nope", pid, ok=True)):
        mark = h.mark()
        h.decide(forged)
        assert h.names(after=mark) == []
    # attempt 2 goes on and completes; the late line never completes the task twice
    after_the_turn(h, swarm, t)
    h.decide(result_line(h, swarm, t.node_id, str(t.injection_id), pid, ok=True))
    assert t.state == "completed"
    mark = h.mark()
    h.decide(result_line(h, swarm, old_node, old, pid, ok=True))
    assert [n for n in h.names(after=mark) if n.startswith("project_")] == []
    assert t.state == "completed"


def test_a_late_result_after_the_final_failure_does_not_resurrect_the_task() -> None:
    h, swarm, pid = setup(max_attempts=1)
    t = task(h, pid)
    node, iid = t.node_id, after_the_turn(h, swarm, t)
    h.decide(NodeGone(swarm.swarm_id, node, "killed"))
    h.decide(P.DispatchProjects())
    assert t.state == "failed"
    mark = h.mark()
    h.decide(result_line(h, swarm, node, iid, pid, ok=True))
    assert h.names(after=mark) == ["agent_error"]
    assert t.state == "failed" and h.state.projects.projects[pid].state == "failed"


def test_an_attempt_the_worker_never_took_is_requeued_without_spending_it() -> None:
    h, swarm, pid = setup(max_attempts=1)
    t = task(h, pid)
    node, iid = t.node_id, t.injection_id
    assert swarm.injections[iid].state == "acked"
    h.decide(NodeGone(swarm.swarm_id, node, "killed"))  # fails the acked prompt (node_lost)
    mark = h.mark()
    h.decide(P.DispatchProjects())
    assert failed_events(h, mark) == []
    ready = [d for n, d in h.events(after=mark) if n == "project_task_ready"]
    assert ready and ready[0]["requeued"] is True
    assert t.state == "assigned" and t.attempts == 1 and t.node_id == 1 - node


def test_a_stopped_swarm_requeues_its_attempts_without_spending_them() -> None:
    """A terminate (or a worker shutdown) is the user's doing, not the attempt's failure."""
    h, swarm, pid = setup(max_attempts=1)
    t = task(h, pid)
    after_the_turn(h, swarm, t)
    h.exit(swarm, t.node_id, reason="shutdown", exit_code=0)
    assert attempt_evidence(h.state)[0] == {t.injection_id}
    h.terminated(swarm)
    mark = h.mark()
    h.decide(P.DispatchProjects())
    assert failed_events(h, mark) == []
    assert t.state == "ready" and t.attempts == 0


def test_evidence_sorts_every_case() -> None:
    h, swarm, pid = setup(nodes=2)
    t = task(h, pid)
    after_the_turn(h, swarm, t)
    assert attempt_evidence(h.state) == (frozenset(), {})  # running: still under way
    h.decide(NodeGone(swarm.swarm_id, t.node_id, "killed"))
    gone, ended = attempt_evidence(h.state)
    assert gone == frozenset() and isinstance(ended[t.injection_id], Ended)


def test_a_task_event_from_an_older_log_without_node_restarts_replays() -> None:
    """project_task_assigned written before node_restarts existed: no restart check, the rest works."""
    h, swarm, pid = setup()
    state = CoreState(settings=h.settings)
    for seq, name, data, _ in h.log:
        if name == "project_task_assigned":
            data = {k: v for k, v in data.items() if k != "node_restarts"}
        core.reduce(state, Event(name, data, 0.0, seq))
    assert state.projects.projects[pid].tasks["a"].node_restarts is None


# ---------------------------------------------------------------------- random programs, router kills included

loss_ops = st.lists(st.one_of(
    st.tuples(st.just("dispatch")),
    st.tuples(st.just("turn"), st.integers(0, 3)),              # the worker takes an attempt and its turn ends
    # ... and then, in its verify, its worker is killed (lost), exits, or is killed and restarted at once
    st.tuples(st.just("die"), st.integers(0, 3), st.sampled_from(["lost", "exit", "restarted"])),
    st.tuples(st.just("result"), st.integers(0, 3), st.booleans()),
    st.tuples(st.just("lost"), st.integers(0, 3)),              # kill -9 of an active attempt's worker
    st.tuples(st.just("exit"), st.integers(0, 3)),              # its worker exits (error)
    st.tuples(st.just("respawn"), st.integers(0, 2)),           # a lost node restarted, its new worker runs
    st.tuples(st.just("late"), st.integers(0, 3), st.booleans()),  # a result of an attempt ended as lost
    st.tuples(st.just("router_kill")),                          # a new router from the log
), min_size=6, max_size=40)


def _active(h: Harness, pid: str) -> list[Any]:
    return [t for t in h.state.projects.projects[pid].tasks.values() if t.state in ("assigned", "running")]


@settings(max_examples=300, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(loss_ops)
def test_every_lost_attempt_ends_once_and_replay_gives_the_live_state(program: list[tuple[Any, ...]]) -> None:
    h, swarm, pid = setup(nodes=3, max_attempts=3, restart="on-failure", restart_max=5)
    for op in program:
        h.at(h.now + 1)
        swarm = h.state.swarms[swarm.swarm_id]
        tasks = _active(h, pid)
        kind = op[0]
        if kind == "dispatch":
            h.decide(P.DispatchProjects())
        elif kind in ("turn", "die") and tasks:
            t = tasks[op[1] % len(tasks)]
            node = t.node_id
            if swarm.nodes[node].worker == "running" and swarm.injections[t.injection_id].state == "acked":
                h.turn(swarm, node, t.injection_id)
                h.decide(P.TurnStarted(t.injection_id))
            if kind == "die" and swarm.nodes[node].worker == "running":
                if op[2] == "exit":
                    h.exit(swarm, node)
                else:
                    h.decide(NodeGone(swarm.swarm_id, node, "killed"))
                if op[2] == "restarted" and swarm.nodes[node].worker == "lost":
                    h.decide(NodeRespawned(swarm.swarm_id, node, swarm.nodes[node].restart_count + 1, {}))
                    h.start(swarm, node)
        elif kind == "result" and tasks:
            t = tasks[op[1] % len(tasks)]
            h.decide(result_line(h, swarm, t.node_id, str(t.injection_id), pid, op[2], t.id))
        elif kind in ("lost", "exit") and tasks:
            t = tasks[op[1] % len(tasks)]
            if kind == "lost":
                h.decide(NodeGone(swarm.swarm_id, t.node_id, "killed"))
            elif swarm.nodes[t.node_id].worker == "running":
                h.exit(swarm, t.node_id)
        elif kind == "respawn" and swarm.nodes[op[1]].worker == "lost":
            h.decide(NodeRespawned(swarm.swarm_id, op[1], swarm.nodes[op[1]].restart_count + 1, {}))
            h.start(swarm, op[1])
        elif kind == "late":
            lost = [t for t in h.state.projects.projects[pid].tasks.values() if t.lost_attempt]
            if lost:
                la = lost[op[1] % len(lost)].lost_attempt
                h.decide(result_line(h, swarm, la["node_id"], la["injection_id"], pid, op[2],
                                     lost[op[1] % len(lost)].id))
        elif kind == "router_kill":
            h = restarted_router(h)
            h.decide(P.RecoverProjects())
    if h.state.projects.projects[pid].state in ("running", "integrating"):
        h.decide(P.DispatchProjects())
        assert attempt_evidence(h.state)[1] == {}, "a dispatch left an attempt on a gone worker"
    assert projects_json(h.replayed()) == projects_json(h.state)
    ended = [d["injection_id"] for _s, n, d, _t in h.log if n == "project_task_failed" and d.get("ended_by")]
    assert len(ended) == len(set(ended)), "an attempt ended twice"
    results = {d["injection_id"] for _s, n, d, _t in h.log if n in ("project_task_completed", "project_task_failed")
               and not d.get("ended_by")}
    assert not results & set(ended), "a late result was applied to an attempt ended as lost"
    completed = [d["task_id"] for _s, n, d, _t in h.log if n == "project_task_completed"]
    assert len(completed) == len(set(completed))


def test_a_spent_budget_requeues_the_ended_attempt_without_spending_it() -> None:
    """As a budget-stopped attempt's result does (core/project_budget.py): the task waits for a raise."""
    h, swarm, pid = setup(max_attempts=1)
    t = task(h, pid)
    after_the_turn(h, swarm, t)
    p = h.state.projects.projects[pid]
    p.budget_exceeded = True  # what budget_exceeded's reducer sets (the usage that spends it is tested elsewhere)
    h.decide(NodeGone(swarm.swarm_id, t.node_id, "killed"))
    mark = h.mark()
    h.decide(P.DispatchProjects())
    assert failed_events(h, mark) == []
    [(name, data)] = [(n, d) for n, d in h.events(after=mark) if n.startswith("project_")]
    assert name == "project_task_ready" and data["reason"] == "budget_exceeded" and data["requeued"] is True
    assert t.state == "ready" and t.attempts == 0
