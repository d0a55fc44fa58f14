"""Router commands the page and the CLI steer with (issue 16), through the real .pyz:
`approvals_list` / `codeswarm approvals`, `queue_cancel` / `codeswarm queue --cancel`, and the
launch record (`created_at`, alias, auto-route) in `swarm_launched`, so ages are right after a replay.
"""

from __future__ import annotations

import time
from typing import Any

from tests.conftest import Codeswarm


def _named(evs: list[dict[str, Any]], name: str, **match: Any) -> list[dict[str, Any]]:
    return [e for e in evs if e["event"] == name and all(e["data"].get(k) == v for k, v in match.items())]


def test_queue_cancel_removes_exactly_that_item(cs: Codeswarm) -> None:
    sid = cs.json("launch", "--nodes", "1")["swarm_id"]
    cs.json("inject", sid, "--prompt", "[mock:slow=30] hold")  # the node stays busy: items wait
    first = cs.run("enqueue", sid, "--prompt", "first").stdout.strip()
    second = cs.run("enqueue", sid, "--prompt", "second").stdout.strip()
    assert [i["queue_id"] for i in cs.json("queue")] == [first, second]

    out = cs.run("queue", "--cancel", first).stdout
    assert first in out and sid in out
    assert [i["queue_id"] for i in cs.json("queue")] == [second]
    dropped = _named(cs.events("--swarm", sid), "inter_swarm_dropped", queue_id=first)
    assert len(dropped) == 1 and dropped[0]["data"]["reason"] == "cancelled"
    assert dropped[0]["data"]["target_swarm_id"] == sid

    # Gone is gone: a second cancel, an unknown id, a bad payload are refused (exit 3), nothing changes.
    for bad in (first, "no-such-item"):
        proc = cs.run("queue", "--cancel", bad, check=False)
        assert proc.returncode == 3, proc
        assert "unknown queue item" in proc.stderr
    data = cs.json("queue", "--cancel", second)
    assert data["queue_id"] == second and data["target_swarm_id"] == sid
    assert cs.json("queue") == []
    cs.run("terminate", sid, "--force", "--wait", "--timeout", "60")


def test_approvals_list_and_cli(cs: Codeswarm) -> None:
    sid = cs.json("launch", "--provider", "local-mock-approvals", "--nodes", "2", "--alias", "asker",
                  "--prompt", "[mock:approval] clean")["swarm_id"]
    other = cs.json("launch", "--nodes", "1")["swarm_id"]
    cs.wait_for(lambda evs: len(_named(evs, "exec_approval_required", swarm_id=sid)) == 2, "--swarm", sid)
    pending = cs.json("approvals")
    assert sorted(a["node_id"] for a in pending) == [0, 1]
    for a in pending:
        assert a["swarm_id"] == sid and a["call_id"] and a["approval_id"] and a["injection_id"]
        assert a["kind"] == "command" and a["command"] == "rm -rf build"
        assert "accept" in a["available_decisions"] and isinstance(a["created_at"], (int, float))
        assert abs(time.time() - a["created_at"]) < 120
    assert cs.json("approvals", "--swarm", sid) == pending
    assert cs.json("approvals", "--swarm", other) == []
    text = cs.run("approvals").stdout
    assert "rm -rf build" in text and sid in text

    node0 = next(a for a in pending if a["node_id"] == 0)
    cs.run("approve", sid, "accept", "--node", "0", "--call", node0["call_id"])
    assert [a["node_id"] for a in cs.json("approvals")] == [1]
    cs.run("terminate", sid, "--force", "--wait", "--timeout", "60")
    assert cs.json("approvals") == []  # resolved by the termination
    assert cs.run("approvals").stdout.strip() == "no approvals are waiting"


def test_swarm_launched_carries_its_record(cs: Codeswarm) -> None:
    before = time.time()
    sid = cs.json("launch", "--nodes", "1", "--alias", "rec", "--auto-route")["swarm_id"]
    launched = _named(cs.events("--swarm", sid), "swarm_launched", swarm_id=sid)
    assert len(launched) == 1
    data = launched[0]["data"]
    assert before - 1 <= data["created_at"] <= time.time()
    assert data["alias"] == "rec" and data["auto_route"] is True
    rec = cs.json("list")[sid]
    assert rec["created_at"] == data["created_at"]
    assert rec.get("auto_route") is True
    assert "_record" not in data
