"""Review of the start-up path (issue 13): damaged event-log lines that are valid JSON of the wrong shape
are warnings, never a router that cannot start (the swarm replay checked them, the projects' did not)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Codeswarm


@pytest.mark.parametrize(("line", "damaged"), [
    ({"event": "project_created", "data": [1, 2]}, True),
    ({"event": 7, "data": {"project_id": "p"}}, True),
    ({"event": "budget_exceeded", "data": "scope:project"}, True),
    ({"event": "usage", "data": {"project_id": "p", "task_id": ["t"]}}, False),  # well-formed, names nothing known
])
def test_a_wrongly_shaped_log_line_is_a_warning_not_a_router_that_cannot_start(cs: Codeswarm, line: dict,
                                                                                damaged: bool) -> None:
    sid = cs.json("launch", "--nodes", "1")["swarm_id"]
    cs.run("router", "stop")
    segment = sorted((cs.home / "events").glob("*.jsonl"))[-1]
    head = json.loads(segment.read_bytes().splitlines()[-1])["seq"]
    # the top-level "scope" puts every line past the projects' cheap filter (project_budget.may_be_project_scoped)
    raw = json.dumps({"protocol": "codeswarm.router.v1", "type": "event", "seq": head + 1, "scope": "project", **line},
                     separators=(",", ":"))
    with open(segment, "a") as f:
        f.write(raw + "\n")
    (cs.home / "projects.json").unlink(missing_ok=True)  # the projects' replay reads the whole log
    assert sid in cs.json("list")  # the next command starts a router, which recovers
    warnings = [e["data"] for e in cs.events() if e["event"] == "router_warning"]
    assert any(w.get("error_code") == "event_log_damaged_lines" for w in warnings) == damaged, warnings
