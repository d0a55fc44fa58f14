"""Execution approval events (PROTOCOL.md 5.5, 4.4; docs/QUEUES.md "Pending approvals")."""

from typing import Any, NotRequired, TypedDict

from codeswarm.core.event_types.common import RuntimeFields
from codeswarm.core.event_types.registry import EventType, declare


class ExecApprovalRequired(RuntimeFields):
    """The runtime asks permission (normalizers; core/approvals.py required). Emitted again with the
    same `approval_id` when the offered decisions grow. `rpc_id` is the JSON-RPC id the worker
    answers (codex)."""

    approval_id: str
    call_id: str
    kind: str
    command: Any
    reason: str | None
    cwd: str | None
    proposed_execpolicy_amendment: list[str] | None
    available_decisions: list[Any]
    created_at: float
    rpc_id: NotRequired[int | str | None]


class ExecApprovalResolved(TypedDict):
    """The approval was answered (client) or became moot (runtime, turn_complete, terminated,
    timeout); exactly one per approval (core/approvals.py)."""

    request_id: str | None
    approval_id: str
    swarm_id: str
    job_id: str
    node_id: int
    injection_id: str | None
    call_id: str
    approved: bool
    decision: Any
    source: str
    resolved_at: float
    idempotent: NotRequired[bool]


class ApprovalRecord(TypedDict):
    """One open approval (core/views.py approval_record)."""

    approval_id: str
    swarm_id: str
    job_id: str
    node_id: int
    injection_id: str | None
    call_id: str
    kind: str
    command: Any
    reason: str | None
    cwd: str | None
    available_decisions: list[Any]
    proposed_execpolicy_amendment: list[str] | None
    created_at: float | None


class ApprovalsList(TypedDict):
    """Directed answer to `approvals_list`: every open approval, oldest first."""

    request_id: str | None
    swarm_id: str | None
    approvals: list[ApprovalRecord]


EVENTS: tuple[EventType, ...] = declare(
    "approvals",
    EventType("exec_approval_required", ExecApprovalRequired, "broadcast", "PROTOCOL.md 5.5"),
    EventType("exec_approval_resolved", ExecApprovalResolved, "broadcast", "PROTOCOL.md 5.5"),
    EventType("approvals_list", ApprovalsList, "directed", "docs/QUEUES.md"),
)
