"""Decision steps shared by several features: inject, fail, turn start/close, swarm state.

Each writes events to `Out` and never reads back what it wrote (see kernel.py).
"""

from __future__ import annotations

from typing import Any

from codeswarm.core import approvals
from codeswarm.core.kernel import InboxLine, Out
from codeswarm.core.records import Injection, Swarm
from codeswarm.core.views import runtime_fields, status_data
from codeswarm.protocol import LEGACY_STATUS

NO_THREAD_STATUS = frozenset({"claude", "mock"})  # runtimes whose thread status the router makes up (5.8)


def inject(out: Out, swarm: Swarm, node_ids: list[int], content: str, request_id: str | None, *,
           injection_ids: list[str] | None = None, origin: list[Any] | None = None) -> None:
    """Ack one injection per node (ascending), then queue the inbox lines (ordering rule 3)."""
    acked = []
    for i, node_id in enumerate(node_ids):
        iid = injection_ids[i] if injection_ids else out.ids()
        acked.append((node_id, iid))
        out.claimed_nodes.add((swarm.swarm_id, node_id))
        out.emit("inject_ack", {
            "request_id": request_id, "swarm_id": swarm.swarm_id, "job_id": swarm.job_id, "node_id": node_id,
            "injection_id": iid, "prompt": content, "acked_at": out.now, **({"origin": origin} if origin else {}),
        })
    for node_id, iid in acked:
        worker = swarm.nodes[node_id].worker
        if worker == "exited":
            fail_injection(out, swarm, node_id, iid, request_id, "node_not_running", "the node's worker has exited")
            continue
        if worker == "lost":  # issue 12 #9: at once, not after the inject timeout
            fail_injection(out, swarm, node_id, iid, request_id, "node_lost",
                           "the node's worker is gone (node_status lost)")
            continue
        out.effect(InboxLine(swarm.swarm_id, node_id,
                             {"type": "user", "injection_id": iid, "content": content, "ts": out.now}))


def fail_injection(out: Out, swarm: Swarm, node_id: int, injection_id: str, request_id: str | None,
                   reason: str, error: str) -> None:
    out.closed_injections.add(injection_id)
    out.emit("inject_failed", {
        "request_id": request_id, "swarm_id": swarm.swarm_id, "job_id": swarm.job_id, "node_id": node_id,
        "injection_id": injection_id, "reason": reason, "error": error,
    })


def set_state(out: Out, swarm: Swarm, state: str, request_id: str | None) -> None:
    data = status_data(swarm, request_id)
    data["state"] = state
    data["status"] = LEGACY_STATUS[state]
    if state == "running" and swarm.running_at is None:
        data["running_at"] = out.now
    out.emit("swarm_status", data)


def synthesize_thread_status(out: Out, swarm: Swarm, inj: Injection, status: str) -> None:
    # PROTOCOL.md 5.8: runtimes without a native thread-status signal get one from the router.
    if swarm.agent_runtime in NO_THREAD_STATUS:
        out.emit("thread_status", {**runtime_fields(swarm, inj.node_id, inj.injection_id), "status": {"type": status}})


def start_turn(out: Out, swarm: Swarm, inj: Injection, turn_id: Any, outbox_seq: int, outbox_offset: int = 0) -> None:
    out.emit("turn_started", {**runtime_fields(swarm, inj.node_id, inj.injection_id), "turn_id": turn_id,
                              "prompt": inj.prompt, "outbox_seq": outbox_seq,
                              **({"outbox_offset": outbox_offset} if outbox_offset else {})})
    synthesize_thread_status(out, swarm, inj, "active")


def close_turn(out: Out, swarm: Swarm, inj: Injection, *, aborted: bool, status: str,
               turn_id: Any = None, extra: dict[str, Any] | None = None) -> None:
    """turn_complete for a delivered or started injection, after resolving its approvals."""
    approvals.resolve_for_injection(out, swarm, inj.injection_id, "turn_complete")
    out.closed_injections.add(inj.injection_id)
    data = runtime_fields(swarm, inj.node_id, inj.injection_id)
    data.update(extra or {})
    data.update({"turn_id": turn_id if turn_id is not None else inj.turn_id, "aborted": aborted, "status": status})
    out.emit("turn_complete", data)
    synthesize_thread_status(out, swarm, inj, "idle")
