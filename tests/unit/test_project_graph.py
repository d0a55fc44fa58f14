import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codeswarm.core.project_graph import (
    GraphError,
    blocked_tasks,
    parse_graph,
    ready_tasks,
)
from codeswarm.projects.plan import extract_plan


def t(tid, deps=(), prompt="do it", **kw):
    return {"id": tid, "prompt": prompt, "depends_on": list(deps), **kw}


FIVE = [t("a1"), t("a2", ["a1"]), t("b1"), t("b2", ["b1"]), t("join", ["a2", "b2"])]


def test_object_and_bare_list_are_the_same_graph():
    assert parse_graph({"tasks": FIVE}).ids == parse_graph(FIVE).ids


def test_order_is_topological_and_stable():
    g = parse_graph([t("c", ["b"]), t("b", ["a"]), t("a"), t("z")])
    assert g.ids == ("a", "b", "c", "z")  # ready ties broken by input order


@pytest.mark.parametrize("graph, words", [
    ([t("a", ["b"]), t("b", ["a"])], ["cycle", "'a'", "'b'"]),
    ([t("a", ["a"])], ["'a'", "cycle"]),
    ([t("a", ["nope"])], ["'a'", "unknown dependency", "'nope'"]),
    ([t("a"), t("a")], ["'a'", "duplicate"]),
    ([t("a", prompt="  ")], ["'a'", "empty prompt"]),
    ([t("a"), {"id": "b"}], ["'b'", "empty prompt"]),
    ([t("../x")], ["git branch"]),
    ([t("a.lock")], ["git branch"]),
    ([], ["no tasks"]),
    ({"nottasks": []}, ["expected"]),
    ("text", ["expected"]),
    ([t("a", verify=3)], ["'a'", "verify"]),
    ([t("a", ["b", "b"]), t("b")], ["'a'", "twice"]),
    ([{"prompt": "x"}], ["task #1", "id"]),
])
def test_bad_graphs_name_the_task(graph, words):
    with pytest.raises(GraphError) as err:
        parse_graph(graph)
    for w in words:
        assert w in str(err.value)


def test_readiness_and_blocking():
    g = parse_graph(FIVE)
    states = {i: "pending" for i in g.ids}
    assert ready_tasks(g, states) == ["a1", "b1"]
    states.update(a1="completed", b1="failed")
    assert ready_tasks(g, states) == ["a2"]
    assert blocked_tasks(g, states) == ["b2"]
    assert g.dependents("b1") == {"b2", "join"}


def test_extract_plan_takes_the_last_parsable_block():
    answer = "plan:\n```json\n{bad\n```\nfinal:\n```json\n{\"tasks\": [{\"id\": \"x\", \"prompt\": \"p\"}]}\n```\n"
    assert parse_graph(extract_plan(answer)).ids == ("x",)
    with pytest.raises(GraphError, match="no fenced JSON"):
        extract_plan("I could not plan this")
    with pytest.raises(GraphError, match="not valid JSON"):
        extract_plan("```json\n{nope\n```")


@st.composite
def dags(draw):
    n = draw(st.integers(1, 25))
    ids = [f"t{i}" for i in range(n)]
    tasks = []
    for i, tid in enumerate(ids):
        deps = draw(st.lists(st.sampled_from(ids[:i]), unique=True, max_size=3)) if i else []
        tasks.append(t(tid, deps))
    return draw(st.permutations(tasks))


@settings(max_examples=200, deadline=None)
@given(dags())
def test_any_dag_orders_deps_first_and_runs_to_completion(tasks):
    g = parse_graph(tasks)
    pos = {tid: i for i, tid in enumerate(g.ids)}
    for spec in g.tasks:
        assert all(pos[d] < pos[spec.id] for d in spec.depends_on)
    states = {i: "pending" for i in g.ids}
    rounds = 0
    while any(s == "pending" for s in states.values()):
        ready = ready_tasks(g, states)
        assert ready, "a DAG never gets stuck"
        for tid in ready:
            states[tid] = "completed"
        rounds += 1
    assert rounds <= len(tasks)


@settings(max_examples=100, deadline=None)
@given(dags(), st.data())
def test_adding_a_back_edge_is_a_cycle(tasks, data):
    g = parse_graph(tasks)
    with_deps = [s for s in g.tasks if s.depends_on]
    if not with_deps:
        return
    spec = data.draw(st.sampled_from(with_deps))
    dep = spec.depends_on[0]
    raw = [s.to_json() for s in g.tasks]
    for r in raw:
        if r["id"] == dep:
            r["depends_on"] = r["depends_on"] + [spec.id]
    with pytest.raises(GraphError, match="cycle"):
        parse_graph(raw)
