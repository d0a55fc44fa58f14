"""The router's state records: swarms, nodes, injections, approvals. Plain data, JSON-able."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

OPEN_INJECTION_STATES = ("acked", "delivered", "started")


@dataclass
class Injection:
    injection_id: str
    node_id: int
    request_id: str | None
    prompt: str
    state: str  # acked | delivered | started | completed | failed
    acked_at: float
    turn_id: str | None = None
    origin: list[Any] | None = None  # [swarm_id, node_id] of the node whose directive created it


@dataclass
class Approval:
    approval_id: str
    node_id: int
    call_id: str
    injection_id: str | None
    rpc_id: Any
    turn_id: str | None
    kind: str
    available_decisions: list[Any]
    proposed_execpolicy_amendment: Any
    created_at: float
    resolved: bool = False
    resolved_at: float | None = None
    decision: Any = None
    approved: bool | None = None
    resolve_request_id: str | None = None


@dataclass
class Node:
    node_id: int
    worker: str = "not_started"  # not_started | running | stale | exited
    started_at: float | None = None
    last_line_at: float | None = None
    exit_code: int | None = None
    exit_reason: str | None = None
    hostname: str | None = None
    outbox_seq: int = 0  # last outbox line consumed
    outbox_offset: int = 0  # byte offset after it
    thread_status: str | None = None


@dataclass
class Swarm:
    swarm_id: str
    job_id: str
    node_count: int
    state: str  # pending | running | terminating | terminated
    provider: str  # backend: local | slurm
    provider_id: str
    agent_runtime: str
    agent_model: str | None
    system_prompt: str
    created_at: float
    params: dict[str, Any]
    job: dict[str, Any]  # JobHandle.to_json()
    nodes: list[Node]
    injections: dict[str, Injection] = field(default_factory=dict)
    approvals: dict[str, Approval] = field(default_factory=dict)
    running_at: float | None = None
    terminated_at: float | None = None
    termination_reason: str | None = None
    scheduler_state: str | None = None
    checked_at: float | None = None
    poll_error: str | None = None
    prev_state: str | None = None  # state before terminating, restored if the backend refuses
    miss_count: int = 0
    first_miss_at: float | None = None
    alias: str | None = None
    auto_route: bool = False
    queue: list[dict[str, Any]] = field(default_factory=list)
    routed_keys: list[str] = field(default_factory=list)
    seq: int = 0  # last log seq applied to this record

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Swarm":
        d = dict(d)
        d["nodes"] = [Node(**n) for n in d.get("nodes", [])]
        d["injections"] = {k: Injection(**v) for k, v in (d.get("injections") or {}).items()}
        d["approvals"] = {k: Approval(**v) for k, v in (d.get("approvals") or {}).items()}
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})

    @property
    def active(self) -> bool:
        return self.state in ("pending", "running")

    def open_injections(self, node_id: int | None = None) -> list[Injection]:
        return [
            inj
            for inj in self.injections.values()
            if inj.state in OPEN_INJECTION_STATES and (node_id is None or inj.node_id == node_id)
        ]

    def node_busy(self, node_id: int) -> bool:
        return any(inj.state in OPEN_INJECTION_STATES for inj in self.open_injections(node_id))
