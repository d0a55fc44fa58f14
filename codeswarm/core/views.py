"""Read-only projections of core records for replies and event payloads. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from codeswarm.core.records import Swarm
from codeswarm.protocol import LEGACY_STATUS
from codeswarm.spend.meter import NodeMeter, money


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
    rec.update(spend_view(swarm))
    if swarm.alias:
        rec["alias"] = swarm.alias
    rec["auto_route"] = swarm.auto_route
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
                **node_spend_view(swarm, n.node_id),
            }
            for n in swarm.nodes
        ]
    return data


def approval_record(swarm: Swarm, a: Any) -> dict[str, Any]:
    """One open approval as `approvals_list` shows it (the exec_approval_required fields)."""
    return {
        "approval_id": a.approval_id, "swarm_id": swarm.swarm_id, "job_id": swarm.job_id, "node_id": a.node_id,
        "injection_id": a.injection_id, "call_id": a.call_id, "kind": a.kind, "command": a.command,
        "reason": a.reason, "cwd": a.cwd, "available_decisions": list(a.available_decisions),
        "proposed_execpolicy_amendment": a.proposed_execpolicy_amendment, "created_at": a.created_at,
    }


def open_approvals(swarms: Mapping[str, Swarm], swarm_id: str | None = None) -> list[dict[str, Any]]:
    """Every approval still waiting for an answer, oldest first (optionally of one swarm)."""
    out = [approval_record(s, a) for sid, s in swarms.items() if swarm_id is None or sid == swarm_id
           for a in s.approvals.values() if not a.resolved]
    return sorted(out, key=lambda r: (r["created_at"] or 0, r["swarm_id"], r["node_id"]))


def swarm_spend(swarm: Swarm) -> NodeMeter:
    return NodeMeter.from_json(swarm.spend)


def budget_label(swarm: Swarm) -> str | None:
    if swarm.budget_usd is None:
        return None
    return "exceeded" if swarm.budget_exceeded else "warning" if swarm.budget_warned else "ok"


def spend_view(swarm: Swarm) -> dict[str, Any]:
    """The spend fields of `swarm_list` / `swarm_status` (docs/SPEND.md)."""
    m = swarm_spend(swarm)
    return {"spend_usd": money(m.cost_usd), "budget_usd": swarm.budget_usd, "budget_state": budget_label(swarm),
            "cost_unknown": m.cost_unknown, "pricing_model": m.pricing_model, "total_tokens": m.tokens.total}


def node_spend_view(swarm: Swarm, node_id: int) -> dict[str, Any]:
    """The spend fields of one `swarm_status` node; nodes have no budget of their own (null)."""
    m = NodeMeter.from_json(swarm.nodes[node_id].spend)
    return {"spend_usd": money(m.cost_usd), "budget_usd": None, "cost_unknown": m.cost_unknown,
            "pricing_model": m.pricing_model, "total_tokens": m.tokens.total}
