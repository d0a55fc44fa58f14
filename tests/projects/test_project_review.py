"""Review of this session's project changes through the real .pyz: bad numbers in a task graph file, a
cancelled verify's processes."""

from __future__ import annotations

import time

import pytest

from tests.conftest import Codeswarm, _alive  # _alive: a zombie counts as ended
from tests.projects.helpers import user_repo, write_tasks


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


def test_a_cancelled_verify_leaves_no_process_behind(cs: Codeswarm) -> None:
    """Review: test_project_stops checks a `sleep 60; touch marker` verify 0.5 s after the cancel, which
    cannot tell a killed verify from a live one. Here the verify says its shell's and its background
    child's pids; once the cancelled attempt has reported, neither runs."""
    repo = user_repo(cs.tmp)
    sid = cs.json("launch", "--nodes", "1")["swarm_id"]
    pids = cs.tmp / "verify-pids"
    tasks = write_tasks(cs.tmp, [{"id": "v", "prompt": "[mock:write=v.txt] quick",
                                  "verify": f"sleep 120 & echo $$ $! > {pids}.tmp; mv {pids}.tmp {pids}; wait"}])
    pid = cs.run("project", "create", "--repo", str(repo), "--tasks", str(tasks), "--swarm", sid,
                 "--start").stdout.strip()
    deadline = time.monotonic() + 60
    while not pids.exists():  # the verify's own report that it runs (a file it writes, no event says so)
        assert time.monotonic() < deadline, "the verify never started"
        time.sleep(0.05)
    shell, child = (int(x) for x in pids.read_text().split())
    assert _alive(shell) and _alive(child)
    cs.run("project", "cancel", pid)
    cs.wait_for(lambda evs: any(e["event"] == "project_task_failed" and e["data"].get("project_id") == pid
                                for e in evs) or cs.json("project", "status", pid)["state"] == "cancelled",
                timeout=30)
    deadline = time.monotonic() + 30
    while _alive(shell) or _alive(child):  # killed with its process group: gone within moments
        assert time.monotonic() < deadline, f"verify processes still run: shell {_alive(shell)}, child {_alive(child)}"
        time.sleep(0.05)


@pytest.mark.parametrize(("value", "text"), [
    ("5", "'default_project_usd' must be a number of US dollars, got '5'"),
    (-3, "'default_project_usd' must be > 0"),
    (0, "'default_project_usd' must be > 0"),
    (1e12, "at most"),
    ("x" * (1 << 20), "must be a number of US dollars"),
])
def test_a_bad_default_project_budget_in_the_config_is_a_clear_error(cs: Codeswarm, value: object, text: str) -> None:
    from tests.conftest import local_config

    cs.write_config({**local_config(cs.tmp), "budget": {"default_project_usd": value}})
    run = cs.run("list", check=False)
    assert run.returncode == 2 and text in run.stderr and len(run.stderr) < 2000, (run.returncode, run.stderr[:300])
    assert not (cs.home / "router.sock").exists(), "no router runs on a bad config"
