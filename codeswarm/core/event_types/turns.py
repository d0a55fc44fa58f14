"""Injection, turn, stream and usage events (PROTOCOL.md 5.3-5.5, 6; docs/SPEND.md).

The stream events are made by the normalizers (router/normalize/) from raw runtime messages; the
core (core/turns.py decide_runtime) adds the runtime fields and passes them on.
"""

from typing import Any, NotRequired, TypedDict

from codeswarm.core.event_types.common import NodeFields, RuntimeFields
from codeswarm.core.event_types.registry import EventType, declare


class InjectAck(TypedDict):
    """The router recorded an injection for one node (core/steps.py inject). `origin` is the
    [swarm_id, node_id] an auto-routed prompt came from (docs/QUEUES.md)."""

    request_id: str | None
    swarm_id: str
    job_id: str
    node_id: int
    injection_id: str
    prompt: str
    acked_at: float
    origin: NotRequired[list[Any]]


class InjectDelivered(TypedDict):
    """The worker took the prompt (its `turn_accepted` line; core/turns.py)."""

    request_id: str | None
    swarm_id: str
    job_id: str
    node_id: int
    injection_id: str
    queued: bool
    turn_id: NotRequired[str | None]
    outbox_seq: NotRequired[int]
    outbox_offset: NotRequired[int]


class InjectFailed(TypedDict):
    """Terminal failure of an injection that was never delivered (core/steps.py fail_injection):
    node_not_running, node_lost, timeout, swarm_terminated, budget_exceeded, project_cancelled,
    requeued (its queue item is back in the queue: inter_swarm_blocked)..."""

    request_id: str | None
    swarm_id: str
    job_id: str
    node_id: int
    injection_id: str
    reason: str
    error: str


class TurnStarted(NodeFields):
    """The node began the turn of an injection (core/steps.py start_turn)."""

    turn_id: str | None
    prompt: NotRequired[str | None]


class Content(RuntimeFields):
    """A piece of the agent's output (normalizers): reasoning_delta, reasoning, assistant_delta."""

    content: str


class Assistant(RuntimeFields):
    """A complete assistant message; `final_answer` on the turn's last one (normalizers)."""

    content: str
    final_answer: bool


class TurnComplete(NodeFields):
    """The turn ended, exactly once per delivered injection (core/steps.py close_turn); `aborted`
    when the router closed it (worker gone, swarm terminated). `turn_cost_usd` is its cost so far
    (docs/SPEND.md)."""

    turn_id: str | None
    aborted: bool
    status: str
    turn_cost_usd: NotRequired[float]
    turn_cost_unknown: NotRequired[bool]


class TaskStarted(RuntimeFields):
    """The runtime reports its task began (codex task_started)."""


class TaskComplete(RuntimeFields):
    """The runtime reports its task finished (codex task_complete, Claude result)."""

    last_agent_message: str | None


class ThreadStatus(RuntimeFields):
    """The runtime thread's state (codex thread/status/changed), or the router's synthesized one for
    runtimes without it (core/steps.py: active at turn start, idle after turn end)."""

    status: dict[str, Any]


class AgentError(RuntimeFields):
    """A runtime or worker error (normalizers; core/turns.py worker_error/worker_exited and outbox
    seq checks; core/ticks.py timeouts; core/nodeloss.py). `error_code` is opaque; `seq` is the
    outbox line's seq for the outbox_seq_* codes."""

    message: str
    error_code: Any
    fatal: bool
    seq: NotRequired[int]


class Duration(TypedDict):
    secs: int
    nanos: int


class CommandStarted(RuntimeFields):
    """The agent runs a shell command (normalizers). `command` is a string or an argv array."""

    call_id: str | None
    command: Any
    cwd: str | None


class CommandCompleted(RuntimeFields):
    """That command finished (normalizers)."""

    call_id: str | None
    command: Any
    cwd: str | None
    stdout: str
    stderr: str
    exit_code: int | None
    duration: Duration | None
    status: str


class FileChangeItem(TypedDict):
    path: str | None
    kind: str | None
    diff: str | None


class FileChange(RuntimeFields):
    """The agent created, edited or deleted files (normalizers: codex fileChange, Claude Edit/Write)."""

    call_id: str | None
    changes: list[FileChangeItem]
    status: str



class Usage(RuntimeFields):
    """A node's token counters changed (normalizers' usage_event), priced by the router
    (core/spend.py charge_usage, spend/meter.py fields). A project task's usage is tagged with
    `project_id`/`task_id`; a usage after its turn completed has `late_usage` (docs/SPEND.md)."""

    total_tokens: int | None
    input_tokens: int | None
    cached_input_tokens: int | None
    output_tokens: int | None
    reasoning_output_tokens: int | None
    last_total_tokens: int | None
    last_input_tokens: int | None
    last_cached_input_tokens: int | None
    last_output_tokens: int | None
    last_reasoning_output_tokens: int | None
    cache_write_input_tokens: NotRequired[int | None]
    last_cache_write_input_tokens: NotRequired[int | None]
    cache_write_1h_input_tokens: NotRequired[int | None]
    last_cache_write_1h_input_tokens: NotRequired[int | None]
    model_context_window: int | None
    usage_source: str
    thread_id: NotRequired[str]
    model_name: NotRequired[str]
    reported_cost_usd: NotRequired[float]
    pricing_model: str | None
    estimated_cost_usd: float | None
    last_estimated_cost_usd: float | None
    cost_unknown: bool
    cost_source: str | None
    thread_key: str | None
    delta_tokens: dict[str, int | None]
    node_spend_usd: float
    late_usage: NotRequired[bool]
    project_id: NotRequired[str]
    task_id: NotRequired[str]


class TurnCostUpdated(TypedDict):
    """A usage that arrived after its turn completed changed the turn's cost (core/turns.py)."""

    swarm_id: str
    job_id: str
    node_id: int
    injection_id: str
    turn_id: str | None
    turn_cost_usd: float
    late_usd: float | None
    turn_cost_unknown: NotRequired[bool]


EVENTS: tuple[EventType, ...] = declare(
    "turns",
    EventType("inject_ack", InjectAck, "broadcast", "PROTOCOL.md 5.3"),
    EventType("inject_delivered", InjectDelivered, "broadcast", "PROTOCOL.md 5.3"),
    EventType("inject_failed", InjectFailed, "broadcast", "PROTOCOL.md 5.3"),
    EventType("turn_started", TurnStarted, "broadcast", "PROTOCOL.md 5.4"),
    EventType("reasoning_delta", Content, "broadcast", "PROTOCOL.md 5.4"),
    EventType("reasoning", Content, "broadcast", "PROTOCOL.md 5.4"),
    EventType("assistant_delta", Content, "broadcast", "PROTOCOL.md 5.4"),
    EventType("assistant", Assistant, "broadcast", "PROTOCOL.md 5.4"),
    EventType("turn_complete", TurnComplete, "broadcast", "PROTOCOL.md 5.4"),
    EventType("task_started", TaskStarted, "broadcast", "PROTOCOL.md 5.4"),
    EventType("task_complete", TaskComplete, "broadcast", "PROTOCOL.md 5.4"),
    EventType("thread_status", ThreadStatus, "broadcast", "PROTOCOL.md 5.4"),
    EventType("agent_error", AgentError, "broadcast", "PROTOCOL.md 5.4"),
    EventType("command_started", CommandStarted, "broadcast", "PROTOCOL.md 5.5"),
    EventType("command_completed", CommandCompleted, "broadcast", "PROTOCOL.md 5.5"),
    EventType("file_change", FileChange, "broadcast", "PROTOCOL.md 5.5"),
    EventType("usage", Usage, "broadcast", "PROTOCOL.md 5.5"),
    EventType("turn_cost_updated", TurnCostUpdated, "broadcast", "docs/PROTOCOL.md Spend"),
)
