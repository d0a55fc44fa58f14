"""Queue and auto-routing events (PROTOCOL.md 5.6, 4.3; docs/PROTOCOL.md "Queues"; docs/QUEUES.md)."""

from typing import Any, NotRequired, TypedDict

from codeswarm.core.event_types.registry import EventType, declare


class ItemBlocked(TypedDict):
    """On an item put back by inter_swarm_blocked: the node whose inbox failed and the error."""

    node_id: int
    reason: str


class QueueItem(TypedDict):
    """One queued prompt as clients see it (core/queue.py public_item)."""

    queue_id: str
    request_id: str | None
    source_swarm_id: str | None
    target_swarm_id: str
    selector: str
    nodes: list[int] | None
    content: str
    created_at: float
    blocked: NotRequired[ItemBlocked]


class QueueList(TypedDict):
    """Directed answer to `queue_list`: every queued item."""

    request_id: str | None
    items: list[QueueItem]


class QueueUpdated(TypedDict):
    """A queue changed (core/queue.py). `items` (every queue's items) only while there are at most
    50 in all; above that `items_omitted` (docs/PROTOCOL.md "Queues")."""

    target_swarm_id: str
    length: int
    total: int
    items: NotRequired[list[QueueItem]]
    items_omitted: NotRequired[bool]


class InterSwarmEnqueued(TypedDict):
    """`enqueue_inject` (or an auto-routed directive) added an item (core/queue.py enqueue).
    `origin` is the [swarm_id, node_id] of an auto-routed answer, else null."""

    request_id: str | None
    queue_id: str
    source_swarm_id: str | None
    target_swarm_id: str
    selector: str
    nodes: list[int] | None
    content: str
    created_at: float
    origin: list[Any] | None


class ItemFields(TypedDict):
    queue_id: str
    request_id: str | None
    source_swarm_id: str | None
    target_swarm_id: str
    selector: str


class InterSwarmDispatched(ItemFields):
    """An item left the queue as injections: `idle` to one node (`node_id`, `injection_id`),
    `all`/`nodes` to `nodes` (core/queue.py)."""

    nodes: NotRequired[list[int] | None]
    node_id: NotRequired[int]
    injection_id: NotRequired[str]


class InterSwarmBlocked(ItemFields):
    """PROTOCOL.md 4.3, 5.6: the inbox line of the item dispatched to `node_id` (as `injection_id`)
    could not be written (`reason`: the error); the item is back at the head of its queue, with its
    `content`, `created_at`, `nodes` and `origin` as enqueued (core/queue.py requeue_blocked), and
    the injection ends with inject_failed `requeued`."""

    node_id: int
    injection_id: str
    reason: str
    nodes: list[int] | None
    content: str
    created_at: float
    origin: list[Any] | None


class InterSwarmDropped(ItemFields):
    """An item was discarded: target terminated, budget exceeded, or cancelled by `queue_cancel`
    (`cancel_request_id`) (core/queue.py)."""

    reason: str
    cancel_request_id: NotRequired[str | None]


class QueueCancelled(ItemFields):
    """Directed answer to `queue_cancel` (router/handlers.py)."""


class AutoRouteBase(TypedDict):
    swarm_id: str
    job_id: str
    node_id: int
    injection_id: str
    directive_key: str
    selector: str
    target_alias: str | None


class AutoRouteSubmitted(AutoRouteBase):
    """A routing directive in a final answer became injections or a queue item (core/queue.py)."""

    target_swarm_id: str
    nodes: list[int] | None


class AutoRouteIgnored(AutoRouteBase):
    """A routing directive could not be followed; `reason` says why (core/queue.py)."""

    reason: str


EVENTS: tuple[EventType, ...] = declare(
    "queues",
    EventType("queue_list", QueueList, "directed", "PROTOCOL.md 5.6"),
    EventType("queue_updated", QueueUpdated, "broadcast", "PROTOCOL.md 5.6"),
    EventType("inter_swarm_enqueued", InterSwarmEnqueued, "broadcast", "PROTOCOL.md 5.6"),
    EventType("inter_swarm_dispatched", InterSwarmDispatched, "broadcast", "PROTOCOL.md 5.6"),
    EventType("inter_swarm_blocked", InterSwarmBlocked, "broadcast", "PROTOCOL.md 5.6"),
    EventType("inter_swarm_dropped", InterSwarmDropped, "broadcast", "PROTOCOL.md 5.6"),
    EventType("queue_cancelled", QueueCancelled, "directed", "docs/QUEUES.md"),
    EventType("auto_route_submitted", AutoRouteSubmitted, "broadcast", "docs/QUEUES.md"),
    EventType("auto_route_ignored", AutoRouteIgnored, "broadcast", "docs/QUEUES.md"),
)
