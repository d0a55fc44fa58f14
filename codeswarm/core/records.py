"""The core's durable records: swarms, nodes, injections, approvals. Plain JSON-able data.

Only reducers write them. Loading is forward compatible at every depth: a field this version
does not know (written by a newer router) is ignored, a missing one takes its default, so a
snapshot never becomes unreadable because the record grew.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from codeswarm.core.project_records import ProjectsState
from codeswarm.core.settings import CoreSettings
from codeswarm.core.states import OPEN_INJECTION_STATES

T = TypeVar("T")


def _known(cls: type[T], d: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return {k: v for k, v in d.items() if k in names}


@dataclass
class Injection:
    injection_id: str
    node_id: int
    request_id: str | None
    prompt: str
    state: str  # InjectionState
    acked_at: float
    turn_id: str | None = None
    origin: list[Any] | None = None  # [swarm_id, node_id] of the node whose directive created it
    spend_usd: str = "0"  # Decimal text: the cost of its usage events (core/spend.py)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Injection":
        return cls(**_known(cls, d))


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
    command: Any = None  # as exec_approval_required showed it (approvals_list repeats it)
    reason: str | None = None
    cwd: str | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Approval":
        return cls(**_known(cls, d))


@dataclass
class Node:
    """Durable per-node facts. Liveness (last line time) and the outbox byte offset are not here:
    they are the shell's non-durable bookkeeping (router/liveness.py)."""

    node_id: int
    worker: str = "not_started"  # WorkerState
    started_at: float | None = None
    exit_code: int | None = None
    exit_reason: str | None = None
    hostname: str | None = None
    outbox_seq: int = 0  # seq of the last outbox line turned into events (from the events' outbox_seq)
    outbox_offset: int = 0  # byte offset after that line (the events' outbox_offset): where reading resumes
    thread_status: str | None = None
    spend: dict[str, Any] = field(default_factory=dict)  # spend.meter.NodeMeter.to_json()
    restart_count: int = 0  # restarts of this node's worker by the restart policy (node_restarted)
    # What the node had done (core/queue.py activity) when a queue item's inbox line failed on it
    # (inter_swarm_blocked): no queue item goes to it again until that changes (its next transition).
    inbox_blocked: list[Any] | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Node":
        return cls(**_known(cls, d))


@dataclass
class Swarm:
    swarm_id: str
    job_id: str
    node_count: int
    state: str  # SwarmState
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
    prev_state: str | None = None  # state before terminating, restored if the backend refuses
    miss_count: int = 0  # NOT_FOUND answers in a row (scheduler_miss events)
    first_miss_at: float | None = None
    alias: str | None = None
    auto_route: bool = False
    queue: list[dict[str, Any]] = field(default_factory=list)
    routed_keys: list[str] = field(default_factory=list)
    # Idle items dispatched whose injection is not yet taken (injection_id -> the item without its
    # content, which the injection holds): a failed inbox write puts it back (inter_swarm_blocked).
    queue_inflight: dict[str, dict[str, Any]] = field(default_factory=dict)
    budget_usd: float | None = None  # core/spend.py
    budget_warned: bool = False
    budget_exceeded: bool = False
    spend: dict[str, Any] = field(default_factory=dict)  # the swarm's total: NodeMeter.to_json()
    seq: int = 0  # last log seq applied to this record

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Swarm":
        d = _known(cls, d)
        d["nodes"] = [Node.from_json(n) for n in d.get("nodes") or []]
        d["injections"] = {k: Injection.from_json(v) for k, v in (d.get("injections") or {}).items()}
        d["approvals"] = {k: Approval.from_json(v) for k, v in (d.get("approvals") or {}).items()}
        d["queue"] = [dict(i) for i in d.get("queue") or []]
        d["queue_inflight"] = {k: dict(v) for k, v in (d.get("queue_inflight") or {}).items()}
        return cls(**d)

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
        return bool(self.open_injections(node_id))


@dataclass
class CoreState:
    """Everything the core knows. `settings` is configuration, not state (never snapshotted).

    A feature with state of its own adds a field here (top level) or on Swarm (per swarm)."""

    settings: CoreSettings = field(default_factory=CoreSettings)
    swarms: dict[str, Swarm] = field(default_factory=dict)
    projects: ProjectsState = field(default_factory=ProjectsState)  # snapshotted by the shell (projects.json)
