"""Data fields shared by many events (PROTOCOL.md 5.1)."""

from typing import Any, NotRequired, TypedDict


class NodeFields(TypedDict):
    """"R" of PROTOCOL.md 5.1 without `turn_id`: which node (and turn) an event derived from worker
    output is about. `outbox_seq` / `outbox_offset` (docs/PROTOCOL.md "Outbox position") say which
    outbox line it came from: the durable read position is recovered from the log."""

    swarm_id: str
    job_id: str
    node_id: int
    injection_id: str | None
    raw: NotRequired[Any]  # the untranslated worker message (router.include_raw), opaque
    outbox_seq: NotRequired[int]
    outbox_offset: NotRequired[int]


class RuntimeFields(NodeFields):
    """R of PROTOCOL.md 5.1: the node fields and, when the runtime names it, its `turn_id`."""

    turn_id: NotRequired[str | None]
