"""Control events: rejections and connection answers (PROTOCOL.md 5.7, 4.8, 3.4, 3.5)."""

from typing import NotRequired, TypedDict

from codeswarm.core.event_types.registry import EventType, declare


class ApprovalCandidate(TypedDict):
    node_id: int
    call_id: str


class CommandRejected(TypedDict):
    """A command was refused (errors.Rejection.data; router/handlers.py, server.py; core/lifecycle.py
    for a terminate the backend refused). Directed for lines that are no command at all. The
    NotRequired keys are the `extra` of a Rejection: context a client can act on (the approval it
    named and the pending ones, the idempotency key and until when unknown keys are refused, the
    queue item)."""

    request_id: str | None
    reason: str
    code: str
    command: str | None
    swarm_id: NotRequired[str]
    job_id: NotRequired[str]
    call_id: NotRequired[str]
    node_id: NotRequired[int | None]
    pending_candidates: NotRequired[list[ApprovalCandidate]]
    idempotency_key: NotRequired[str]
    refused_until: NotRequired[str]
    queue_id: NotRequired[str]


class Subscribed(TypedDict):
    """Directed: the replay of a `subscribe` is done; live events follow (3.4)."""

    request_id: str | None
    since: int | None
    head_seq: int
    oldest_seq: int
    log_id: str
    swarm_id: str | None
    truncated: bool
    reset: bool


class Unsubscribed(TypedDict):
    """Directed answer to `unsubscribe`."""

    request_id: str | None


class Pong(TypedDict):
    """Directed answer to `ping`: the log's position and the extensions this router implements."""

    request_id: str | None
    head_seq: int
    oldest_seq: int
    log_id: str
    extensions: list[str]


class CommandDeduplicated(TypedDict):
    """Directed: a command repeated an idempotency key already run (3.5); nothing ran again."""

    request_id: str | None
    original_request_id: str | None
    idempotency_key: str
    first_seq: int | None


EVENTS: tuple[EventType, ...] = declare(
    "control",
    EventType("command_rejected", CommandRejected, "both", "PROTOCOL.md 5.7"),
    EventType("subscribed", Subscribed, "directed", "PROTOCOL.md 5.7"),
    EventType("unsubscribed", Unsubscribed, "directed", "PROTOCOL.md 5.7"),
    EventType("pong", Pong, "directed", "PROTOCOL.md 5.7"),
    EventType("command_deduplicated", CommandDeduplicated, "directed", "PROTOCOL.md 5.7"),
)
