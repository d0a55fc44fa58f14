"""Project deciders + reducers driven like the shell drives them: decide, then reduce every event."""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codeswarm.core import projects as D
from codeswarm.core.project_graph import parse_graph
from codeswarm.core.project_records import (
    IllegalTransition,
    Project,
    ProjectsState,
    reduce,
)


class Out:
    def __init__(self):
        self.events, self.effects = [], []

    def emit(self, name, data):
        self.events.append((name, data))

    def effect(self, x):
        self.effects.append(x)


class Sim:
    def __init__(self, tasks, nodes=(("s1", 2),), max_attempts=2):
        self.st = ProjectsState()
        self.counter = itertools.count()
        self.log = []
        self.now = 1000.0
        self.nodes = {sid: list(range(n)) for sid, n in nodes}
        self.busy = set()
        self.sent = []
        self.pid = self.run(D.create, D.CreateProject(None, "demo", "/repo", "main", "c0" * 20,
                                                       tuple(self.nodes), parse_graph(tasks), max_attempts, True))

    def ids(self):
        return f"id{next(self.counter)}"

    def run(self, fn, inp):
        out = Out()
        ret = fn(self.st, inp, self.now, self.ids, out)
        for name, data in out.events:
            reduce(self.st, name, data)
            self.log.append((name, data))
        for eff in out.effects:
            if isinstance(eff, D.SendTask):
                self.busy.add((eff.swarm_id, eff.node_id))
                self.sent.append(eff)
        self.last_effects = out.effects
        return ret

    @property
    def p(self) -> Project:
        return self.st.projects[self.pid]

    def dispatch(self):
        idle = {sid: tuple(n for n in ns if (sid, n) not in self.busy) for sid, ns in self.nodes.items()}
        self.run(D.dispatch, D.Dispatch(idle=idle))

    def finish(self, eff, ok=True, error=None):
        self.now += 1
        self.run(D.turn_started, D.TurnStarted(eff.injection_id))
        self.busy.discard((eff.swarm_id, eff.node_id))
        self.run(D.task_result, D.TaskResult(eff.injection_id, {
            "project_id": eff.project_id, "task_id": eff.task_id, "ok": ok, "commit": "f" * 40 if ok else None,
            "error": error, "verify_output": "boom" if not ok else "", "stage": "done" if ok else "verify"}))

    def names(self, name):
        return [d["task_id"] for n, d in self.log if n == name]


FIVE = [{"id": "a1", "prompt": "x"}, {"id": "a2", "prompt": "x", "depends_on": ["a1"]},
        {"id": "b1", "prompt": "x"}, {"id": "b2", "prompt": "x", "depends_on": ["b1"]},
        {"id": "join", "prompt": "x", "depends_on": ["a2", "b2"], "verify": "true"}]


def drain(sim, fail=lambda eff: False):
    for _ in range(100):
        sim.dispatch()
        pending = [e for e in sim.sent if e.injection_id not in sim.done]
        if not pending:
            if sim.last_effects and isinstance(sim.last_effects[0], D.Integrate):
                integ = sim.last_effects[0]
                sim.run(D.integration_done, D.IntegrationDone(sim.pid, integ.branches, "i" * 40))
                continue
            return
        for eff in pending:
            sim.done.add(eff.injection_id)
            sim.finish(eff, ok=not fail(eff))


def new_sim(*a, **kw):
    sim = Sim(*a, **kw)
    sim.done = set()
    return sim


def test_five_task_graph_runs_in_parallel_and_integrates():
    sim = new_sim(FIVE, nodes=(("s1", 2), ("s2", 2)))
    sim.dispatch()
    assert [e.task_id for e in sim.sent] == ["a1", "b1"], "both independent chains start at once"
    assert sim.sent[0].project_task["start"] == "main"
    drain(sim)
    assert sim.p.state == "completed"
    join = next(e for e in sim.sent if e.task_id == "join")
    assert join.project_task["start"] == f"codeswarm/{sim.pid}/a2"
    assert join.project_task["merges"] == [f"codeswarm/{sim.pid}/b2"]
    assert sim.names("project_task_completed") == ["a1", "b1", "a2", "b2", "join"]
    assert sim.names("project_task_verified") == ["join"]
    assert [n for n, _ in sim.log][-2:] == ["project_integrated", "project_completed"]


def test_retry_then_fail_blocks_dependents_and_integrates_the_rest():
    sim = new_sim(FIVE)
    drain(sim, fail=lambda eff: eff.task_id == "a1")
    assert sim.p.tasks["a1"].state == "failed" and sim.p.tasks["a1"].attempts == 2
    assert sorted(sim.names("project_task_blocked")) == ["a2", "join"]
    assert sim.p.state == "failed"
    assert [e.task_id for e in sim.sent].count("a1") == 2
    second = [e for e in sim.sent if e.task_id == "a1"][1]
    assert "attempt 2 of 2" in second.content and "boom" in second.content
    assert "project_integrated" in [n for n, _ in sim.log], "completed tasks are still integrated"


def test_a_result_is_taken_once_and_only_from_the_active_attempt():
    sim = new_sim(FIVE[:1])
    sim.dispatch()
    eff = sim.sent[0]
    sim.finish(eff)
    before = list(sim.log)
    sim.finish(eff)  # the same line again (replay after a crash, or forged)
    sim.run(D.task_result, D.TaskResult("nope", {"project_id": sim.pid, "task_id": "a1", "ok": True, "commit": "x"}))
    assert sim.log == before


def test_gone_node_requeues_without_spending_an_attempt():
    sim = new_sim(FIVE[:1], max_attempts=1)
    sim.dispatch()
    eff = sim.sent[0]
    sim.busy.clear()
    sim.run(D.dispatch, D.Dispatch(idle={"s1": (1,)}, gone=frozenset({eff.injection_id})))
    again = sim.sent[-1]
    assert again.task_id == "a1" and again.node_id == 1 and again.project_task["attempt"] == 1


def test_integration_conflict_becomes_a_task():
    sim = new_sim(FIVE[:1] + [{"id": "b1", "prompt": "x", "verify": "true"}])
    sim.dispatch()
    for eff in list(sim.sent):
        sim.finish(eff)
    sim.dispatch()
    integ = sim.last_effects[0]
    assert isinstance(integ, D.Integrate) and integ.start == "main"
    a, b = integ.branches
    sim.run(D.integration_done, D.IntegrationDone(sim.pid, (a,), "m" * 40, b, ("README",)))
    task = sim.p.tasks["integration-1"]
    assert task.kind == "integration" and task.state == "ready" and task.verify == "( true )"
    sim.dispatch()
    eff = sim.sent[-1]
    assert eff.project_task["kind"] == "integration" and eff.project_task["merges"] == [b]
    sim.finish(eff)
    sim.dispatch()
    integ = sim.last_effects[0]
    assert integ.branches == () and integ.start == sim.p.integration_branch
    sim.run(D.integration_done, D.IntegrationDone(sim.pid, (), "n" * 40))
    sim.dispatch()
    assert sim.p.state == "completed" and sim.p.integration_commit == "n" * 40


def test_resume_plan_matches_what_runs():
    sim = new_sim(FIVE)
    sim.dispatch()
    sim.finish(sim.sent[0])  # a1 done; b1 still running on a node that will be gone
    sim.dispatch()           # a2 assigned
    heads = {sim.p.tasks["a1"].branch: "f" * 40}
    plan = D.resume_plan(sim.p, heads, frozenset(), retry_failed=False)
    assert set(plan.requeue) == {"b1", "a2"} and plan.reset == ()
    assert set(plan.will_run) == {"b1", "a2", "b2", "join"}
    # the a1 branch went missing: a1 re-runs, and a2 (assigned on a1's old result) is stopped and re-runs after it
    plan2 = D.resume_plan(sim.p, {}, frozenset(), retry_failed=False)
    assert plan2.reset == ("a1", "a2") and plan2.stopped == ("a2",) and plan2.requeue == ("b1",)
    assert "re-runs" in plan2.reasons["a2"] and "missing" in plan2.reasons["a1"]
    assert set(plan2.will_run) == {"a1", "a2", "b1", "b2", "join"}
    sim.nodes = {"s2": [0, 1]}
    sim.busy.clear()
    sim.run(D.resume, D.Resume(None, sim.pid, ("s2",), False, heads, frozenset()))
    first = len(sim.sent)
    drain(sim)
    rerun = {e.task_id for e in sim.sent[first:]}
    assert rerun == set(plan.will_run) and sim.p.state == "completed"
    assert all(e.swarm_id == "s2" for e in sim.sent[first:])


def test_illegal_transitions_raise():
    sim = new_sim(FIVE[:1])
    with pytest.raises(IllegalTransition):
        reduce(sim.st, "project_task_completed", {"project_id": sim.pid, "task_id": "a1", "commit": "x"})


def test_state_round_trips_through_json():
    sim = new_sim(FIVE)
    drain(sim)
    again = Project.from_json(sim.p.to_json())
    assert again == sim.p


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 12), st.data())
def test_any_graph_any_failures_ends_consistent(n, data):
    tasks = []
    for i in range(n):
        deps = data.draw(st.lists(st.sampled_from([f"t{j}" for j in range(i)]), unique=True, max_size=2)) if i else []
        tasks.append({"id": f"t{i}", "prompt": "x", "depends_on": deps})
    failing = set(data.draw(st.lists(st.sampled_from([t["id"] for t in tasks]), unique=True, max_size=3)))
    sim = new_sim(tasks, nodes=(("s1", data.draw(st.integers(1, 4))),))
    drain(sim, fail=lambda eff: eff.task_id in failing)
    p = sim.p
    assert p.state == ("completed" if not failing else "failed")
    assert ("project_integrated" in [n for n, _ in sim.log]) == any(t.state == "completed" for t in p.tasks.values())
    assert all(t.state in ("completed", "failed", "blocked") for t in p.tasks.values())
    graph = parse_graph(tasks)
    for t in p.tasks.values():
        ancestors_failed = any(f in failing for f in failing if t.id in graph.dependents(f))
        if ancestors_failed:
            assert t.state == "blocked" and t.attempts == 0, "never started"
        elif t.id in failing:
            assert t.state == "failed" and t.attempts == 2
        else:
            assert t.state == "completed"
    completed = sim.names("project_task_completed")
    assert len(completed) == len(set(completed)), "each task completes once"
    # a dependent was only assigned after all its dependencies completed
    order = [(name, d["task_id"]) for name, d in sim.log if name in ("project_task_assigned", "project_task_completed")]
    for i, (name, tid) in enumerate(order):
        if name == "project_task_assigned":
            done = {x for m, x in order[:i] if m == "project_task_completed"}
            assert set(graph.by_id()[tid].depends_on) <= done
