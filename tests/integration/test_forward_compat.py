"""Forward compatibility of snapshots: a record written by a newer router (extra fields at every
depth) still loads after the log that could rebuild it was pruned, and the swarm lives on."""

from __future__ import annotations

import json
import signal

from tests.conftest import Codeswarm


def test_snapshot_with_unknown_nested_fields_survives_a_pruned_log(cs: Codeswarm) -> None:
    launched = cs.json("launch", "--nodes", "2")
    sid = launched["swarm_id"]
    first = cs.json("inject", sid, "--prompt", "before the upgrade", "--wait", "--timeout", "60")
    assert all(n["outcome"] == "completed" for n in first["nodes"])
    cs.kill_router(signal.SIGTERM)  # a clean stop: the snapshot is current

    snap_path = cs.home / "swarms" / f"{sid}.json"
    snap = json.loads(snap_path.read_text())
    snap["field_from_a_newer_router"] = {"nested": [1, 2]}
    for node in snap["nodes"]:
        node["newer_node_field"] = "x"
    assert snap["injections"], "the turn above must be in the snapshot"
    for inj in snap["injections"].values():
        inj["newer_injection_field"] = {"deep": True}
    snap["approvals"]["newer-approval"] = {
        "approval_id": "newer-approval", "node_id": 0, "call_id": "c9", "injection_id": None, "rpc_id": None,
        "turn_id": None, "kind": "command", "available_decisions": ["accept"], "proposed_execpolicy_amendment": None,
        "created_at": snap["created_at"], "resolved": True, "resolved_at": snap["created_at"],
        "newer_approval_field": 1}
    snap_path.write_text(json.dumps(snap))
    # The log is pruned: nothing could rebuild the swarm but its snapshot.
    segments = list((cs.home / "events").glob("*.jsonl"))
    assert segments
    for seg in segments:
        seg.unlink()

    status = cs.json("status", sid)  # starts a new router, which recovers from the snapshot alone
    assert status["swarm_id"] == sid and status["state"] == "running"
    assert [n["worker"] for n in status["nodes"]] == ["running", "running"]
    warnings = [e for e in cs.events() if e["event"] == "router_warning"]
    assert not [w for w in warnings if "snapshot" in w["data"]["message"]], warnings
    again = cs.json("inject", sid, "--prompt", "after the upgrade", "--wait", "--timeout", "60")
    assert all(n["outcome"] == "completed" for n in again["nodes"])
    # the unknown fields are dropped on the next snapshot, the known ones kept
    cs.kill_router(signal.SIGTERM)
    rewritten = json.loads(snap_path.read_text())
    assert "field_from_a_newer_router" not in rewritten and len(rewritten["nodes"]) == 2
    assert rewritten["approvals"]["newer-approval"]["call_id"] == "c9"
