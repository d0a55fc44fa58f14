"""Read-only projections of core records for replies and event payloads. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from codeswarm.core.records import Swarm
from codeswarm.protocol import LEGACY_STATUS


def runtime_fields(swarm: Swarm, node_id: int, injection_id: str | None) -> dict[str, Any]:
    return {"swarm_id": swarm.swarm_id, "job_id": swarm.job_id, "node_id": node_id, "injection_id": injection_id}


def list_record(swarm: Swarm) -> dict[str, Any]:
    """A swarm as `swarm_list` shows it; `swarm_status` adds to the same fields."""
    rec: dict[str, Any] = {
        "job_id": swarm.job_id,
        "node_count": swarm.node_count,
        "system_prompt": swarm.system_prompt,
        "status": LEGACY_STATUS[swarm.state],
        "state": str(swarm.state),
        "provider": swarm.provider,
        "provider_id": swarm.provider_id,
        "agent_runtime": swarm.agent_runtime,
        "created_at": swarm.created_at,
    }
    if swarm.alias:
        rec["alias"] = swarm.alias
    if swarm.terminated_at is not None:
        rec["terminated_at"] = swarm.terminated_at
        rec["termination_reason"] = swarm.termination_reason
    return rec


def status_data(swarm: Swarm, request_id: str | None, *, checked_at: float | None = None,
                error: str | None = None, last_heard: Mapping[int, float] | None = None,
                with_nodes: bool = False) -> dict[str, Any]:
    """`swarm_status` data. The scheduler check time, poll error and heartbeat times are the
    shell's non-durable bookkeeping; the shell passes them for replies (events carry none)."""
    data: dict[str, Any] = {"request_id": request_id, "swarm_id": swarm.swarm_id, **list_record(swarm),
                            "checked_at": checked_at}
    del data["system_prompt"]
    if error:
        data["error"] = error
    if with_nodes:
        heard = last_heard or {}
        busy: dict[int, int] = {}
        for inj in swarm.open_injections():
            busy[inj.node_id] = busy.get(inj.node_id, 0) + 1
        data["nodes"] = [
            {
                "node_id": n.node_id,
                "worker": str(n.worker),
                "busy": n.node_id in busy,
                "outstanding": busy.get(n.node_id, 0),
                "last_heartbeat_at": heard.get(n.node_id),
                "hostname": n.hostname,
            }
            for n in swarm.nodes
        ]
    return data
