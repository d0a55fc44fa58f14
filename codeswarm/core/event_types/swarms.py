"""Swarm, node and provider events (PROTOCOL.md 5.2, 7, 8.5; docs/PROTOCOL.md "Node liveness")."""

from typing import Any, Literal, NotRequired, TypedDict

from codeswarm.core.event_types.common import RuntimeFields
from codeswarm.core.event_types.registry import EventType, declare

LegacyStatus = Literal["running", "terminating", "terminated"]
SwarmState = Literal["pending", "running", "terminating", "terminated"]
WorkerState = Literal["not_started", "running", "stale", "exited", "lost"]


class SpendView(TypedDict):
    """The spend fields of a swarm or node view (docs/SPEND.md "Showing it")."""

    spend_usd: float
    budget_usd: float | None
    cost_unknown: bool
    pricing_model: str | None
    total_tokens: int | None


class SwarmRecord(SpendView):
    """One swarm as `swarm_list` shows it (core/views.py list_record)."""

    job_id: str
    node_count: int
    system_prompt: str
    status: LegacyStatus
    state: SwarmState
    provider: str
    provider_id: str
    agent_runtime: str
    created_at: float
    budget_state: str | None
    auto_route: bool
    alias: NotRequired[str]
    terminated_at: NotRequired[float]
    termination_reason: NotRequired[str | None]


class NodeView(SpendView):
    """One node of a `swarm_status` reply (ext)."""

    node_id: int
    worker: WorkerState
    busy: bool
    outstanding: int
    last_heartbeat_at: float | None
    hostname: str | None


class SwarmLaunched(TypedDict):
    """The backend accepted a launch: the swarm exists, `pending` (core/lifecycle.py decide_launch).
    `_record` is the whole swarm record for replay; it is in the log only, never on the wire."""

    request_id: str | None
    swarm_id: str
    job_id: str
    node_count: int
    provider: str
    provider_id: str
    agent_runtime: str
    agent_model: str | None
    state: SwarmState
    created_at: float
    alias: str | None
    auto_route: bool
    _record: NotRequired[dict[str, Any]]


class SwarmStatus(TypedDict):
    """A swarm changed state (broadcast, core/steps.py set_state), or the directed answer to the
    `swarm_status` command (router/handlers.py, with `nodes` and the scheduler's `checked_at`/`error`)."""

    request_id: str | None
    swarm_id: str
    job_id: str
    node_count: int
    status: LegacyStatus
    state: SwarmState
    provider: str
    provider_id: str
    agent_runtime: str
    created_at: float
    checked_at: float | None
    spend_usd: float
    budget_usd: float | None
    budget_state: str | None
    cost_unknown: bool
    pricing_model: str | None
    total_tokens: int | None
    auto_route: bool
    alias: NotRequired[str]
    running_at: NotRequired[float]
    terminated_at: NotRequired[float]
    termination_reason: NotRequired[str | None]
    error: NotRequired[str]
    nodes: NotRequired[list[NodeView]]


class SwarmList(TypedDict):
    """Directed answer to `swarm_list` (router/handlers.py): every known swarm by id."""

    request_id: str | None
    swarms: dict[str, SwarmRecord]


class SwarmTerminated(TypedDict):
    """The swarm entered `terminated`, after everything open was closed (core/lifecycle.py
    terminated); or a repeated terminate of a terminated swarm (`already_terminated`)."""

    request_id: str | None
    swarm_id: str
    job_id: str
    reason: str | None
    scheduler_state: NotRequired[str | None]
    terminated_at: NotRequired[float]
    already_terminated: NotRequired[bool]


class SwarmRemoved(TypedDict):
    """Retention ended: the record is gone (core/ticks.py: ttl_expired, retention_cap)."""

    swarm_id: str
    reason: str


class WorkspaceArchiveReady(TypedDict):
    """A node's workspace archive was written during terminate (router/archive.py); one per node."""

    request_id: str | None
    swarm_id: str
    job_id: str
    node_id: int
    archive_path: str
    archive_name: str
    size_bytes: int


class WorkspaceArchiveFailed(TypedDict):
    """A node's workspace archive could not be built (router/archive.py); one per node."""

    request_id: str | None
    swarm_id: str
    job_id: str
    node_id: int
    reason: str


class ProvidersList(TypedDict):
    """Directed answer to `providers_list`: the launch presets (config.py Preset.public)."""

    request_id: str | None
    providers: list[dict[str, Any]]


class NodeStatus(RuntimeFields):
    """A node's worker state changed (core/turns.py on worker_started/exited and any line from a
    stale node, core/ticks.py stale, core/nodeloss.py lost). `injection_id` is always null."""

    worker: WorkerState
    last_heartbeat_at: float | None
    exit_code: NotRequired[int | None]
    exit_reason: NotRequired[str]
    started_at: NotRequired[float]
    hostname: NotRequired[str | None]
    reason: NotRequired[str]
    lost_at: NotRequired[float]


class NodeRestarted(RuntimeFields):
    """A lost node's worker was started again (core/nodeloss.py, restart policy)."""

    restart_count: int
    restarted_at: float
    job_extra: dict[str, Any]


class SchedulerMiss(TypedDict):
    """The scheduler did not find the job (or found it again: `miss_count` 0); the debounce of
    "job gone" is durable (core/observe.py)."""

    swarm_id: str
    job_id: str
    miss_count: int
    first_miss_at: float | None


class RouterWarning(TypedDict):
    """Something the router cannot fix went wrong and a user should know (recovery damage, a failing
    background loop, an unreadable outbox, an unwritable log...; router/app.py, server.py, ingest.py,
    projects_shell.py, connection.py). Logged, or directed (docs/PROTOCOL.md "Directed warnings"):
    `event_log_write_failed` (the log itself is what fails) and `slow_consumer` (one connection)."""

    message: str
    error_code: NotRequired[str]
    swarm_id: NotRequired[str]
    node_id: NotRequired[int]
    loop: NotRequired[str]
    failures: NotRequired[int]
    count: NotRequired[int]
    bytes: NotRequired[int]  # event_log_torn_line: the bytes cut
    resume_since: NotRequired[int]
    kept_as: NotRequired[str]
    known_keys: NotRequired[int]
    unknown_keys_refused_until: NotRequired[str]


class ProviderWarning(TypedDict):
    """A backend's scheduler query failed (or works again: `recovered`); no state changes
    (router/server.py poller)."""

    backend: str
    message: str
    failures: int
    swarm_ids: NotRequired[list[str]]
    recovered: NotRequired[bool]


EVENTS: tuple[EventType, ...] = declare(
    "swarms",
    EventType("swarm_launched", SwarmLaunched, "broadcast", "PROTOCOL.md 5.2"),
    EventType("swarm_status", SwarmStatus, "both", "PROTOCOL.md 5.2"),
    EventType("swarm_list", SwarmList, "directed", "PROTOCOL.md 5.2"),
    EventType("swarm_terminated", SwarmTerminated, "broadcast", "PROTOCOL.md 5.2"),
    EventType("swarm_removed", SwarmRemoved, "broadcast", "PROTOCOL.md 5.2"),
    EventType("workspace_archive_ready", WorkspaceArchiveReady, "broadcast", "PROTOCOL.md 5.2"),
    EventType("workspace_archive_failed", WorkspaceArchiveFailed, "broadcast", "PROTOCOL.md 5.2"),
    EventType("providers_list", ProvidersList, "directed", "PROTOCOL.md 5.2"),
    EventType("node_status", NodeStatus, "broadcast", "PROTOCOL.md 5.2"),
    EventType("node_restarted", NodeRestarted, "broadcast", "docs/PROTOCOL.md Node liveness"),
    EventType("scheduler_miss", SchedulerMiss, "broadcast", "docs/PROTOCOL.md Event catalogue"),
    EventType("router_warning", RouterWarning, "both", "docs/PROTOCOL.md Event catalogue"),
    EventType("provider_warning", ProviderWarning, "broadcast", "docs/PROTOCOL.md Event catalogue"),
)
