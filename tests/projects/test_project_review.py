"""Review of this session's project changes through the real .pyz: bad numbers in a task graph file."""

from __future__ import annotations

import pytest

from tests.conftest import Codeswarm
from tests.projects.helpers import user_repo


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_task_graph_file_with_a_non_finite_number_is_refused_not_read_as_no_timeout(cs: Codeswarm,
                                                                                       value: str) -> None:
    """Python's json reads NaN/Infinity; sent on, they became null: `timeout_seconds: Infinity` silently
    meant no timeout at all. The file must be refused with a clear error and no project created."""
    repo = user_repo(cs.tmp)
    sid = cs.json("launch", "--nodes", "1")["swarm_id"]
    tasks = cs.tmp / "tasks.json"
    tasks.write_text('{"timeout_seconds": %s, "tasks": [{"id": "a", "prompt": "do a", "timeout_seconds": %s}]}'
                     % (value, value))
    run = cs.run("project", "create", "--repo", str(repo), "--tasks", str(tasks), "--swarm", sid, check=False)
    assert run.returncode == 2 and "is not valid JSON" in run.stderr and "line 1 column 2" in run.stderr, (run.returncode, run.stdout,
                                                                                      run.stderr)
    assert cs.json("project", "list") == []
