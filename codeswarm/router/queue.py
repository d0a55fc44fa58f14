"""Work queues (PROTOCOL.md 4.3, 5.6) and routing directives between swarms. Pure decisions.

Items live on their target swarm (`Swarm.queue`), so they are snapshotted and replayed with it:
`inter_swarm_enqueued` appends an item, `inter_swarm_dispatched` / `inter_swarm_dropped` remove it.
Only `idle` items wait in a queue; `all` and `nodes` items are dispatched at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from codeswarm.protocol import Command, Rejection, require_str, resolve_nodes
from codeswarm.router.model import Swarm

if TYPE_CHECKING:
    from codeswarm.router.core import InboxLine, RouterCore
    from codeswarm.router.handlers import Handlers

SELECTORS = ("idle", "all", "nodes")
MAX_ROUTED_KEYS = 2048


def all_items(core: "RouterCore") -> list[dict[str, Any]]:
    items = [item for sw in core.swarms.values() for item in sw.queue]
    return sorted(items, key=lambda i: (i.get("created_at") or 0, i["queue_id"]))


def public_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if not k.startswith("_")}


def _updated(core: "RouterCore") -> None:
    core.emit("queue_updated", {"items": [public_item(i) for i in all_items(core)]})


# ---------------------------------------------------------------- apply (replayed on recovery)


def apply_enqueued(core: "RouterCore", swarm: Swarm, data: dict[str, Any], now: float) -> None:
    swarm.queue.append({
        "queue_id": data["queue_id"], "request_id": data.get("request_id"),
        "source_swarm_id": data.get("source_swarm_id"), "target_swarm_id": swarm.swarm_id,
        "selector": data.get("selector", "idle"), "nodes": data.get("nodes"), "content": data.get("content", ""),
        "created_at": data.get("created_at", now), "_origin": data.get("origin"),
    })


def apply_removed(core: "RouterCore", swarm: Swarm, data: dict[str, Any], now: float) -> None:
    swarm.queue = [i for i in swarm.queue if i["queue_id"] != data.get("queue_id")]


def apply_routed(core: "RouterCore", swarm: Swarm, data: dict[str, Any], now: float) -> None:
    key = data.get("directive_key")
    if isinstance(key, str):
        swarm.routed_keys = (swarm.routed_keys + [key])[-MAX_ROUTED_KEYS:]


# ---------------------------------------------------------------- decisions


def enqueue(core: "RouterCore", target: Swarm, *, request_id: str | None, source_swarm_id: str | None,
            selector: str, nodes: list[int] | None, content: str, now: float,
            origin: list[Any] | None = None) -> list["InboxLine"]:
    from codeswarm.router.core import new_id

    queue_id = new_id()
    core.emit("inter_swarm_enqueued", {
        "request_id": request_id, "queue_id": queue_id, "source_swarm_id": source_swarm_id,
        "target_swarm_id": target.swarm_id, "selector": selector, "nodes": nodes, "content": content,
        "created_at": now, "origin": origin,
    })
    _updated(core)
    if selector == "idle":
        return dispatch_idle(core, target, now)
    item = target.queue[-1]
    core.emit("inter_swarm_dispatched", {**_item_fields(item), "nodes": nodes})
    actions = core.inject(target, list(nodes or []), content, request_id, now, origin=origin)
    _updated(core)
    return actions


def _item_fields(item: dict[str, Any]) -> dict[str, Any]:
    return {"queue_id": item["queue_id"], "request_id": item.get("request_id"),
            "source_swarm_id": item.get("source_swarm_id"), "target_swarm_id": item["target_swarm_id"],
            "selector": item.get("selector")}


def idle_nodes(swarm: Swarm) -> list[int]:
    """Running workers with no open injection whose runtime thread is not active (4.3)."""
    if swarm.state != "running":
        return []
    busy = {inj.node_id for inj in swarm.open_injections()}
    return [n.node_id for n in swarm.nodes
            if n.worker == "running" and n.node_id not in busy and n.thread_status != "active"]


def dispatch_idle(core: "RouterCore", swarm: Swarm, now: float) -> list["InboxLine"]:
    """Send head items to the lowest-numbered idle nodes, strictly in FIFO order."""
    from codeswarm.router.core import new_id

    actions: list[InboxLine] = []
    changed = False
    while swarm.queue and swarm.queue[0].get("selector") == "idle":
        free = idle_nodes(swarm)
        if not free:
            break
        item = swarm.queue[0]
        node_id = free[0]
        iid = new_id()
        core.emit("inter_swarm_dispatched", {**_item_fields(item), "node_id": node_id, "injection_id": iid})
        actions += core.inject(swarm, [node_id], item["content"], item.get("request_id"), now,
                               injection_ids=[iid], origin=item.get("_origin"))
        changed = True
    if changed:
        _updated(core)
    return actions


def drop_all(core: "RouterCore", swarm: Swarm, reason: str) -> None:
    if not swarm.queue:
        return
    for item in list(swarm.queue):
        core.emit("inter_swarm_dropped", {**_item_fields(item), "reason": reason})
    _updated(core)


# ---------------------------------------------------------------- the command


def parse_enqueue(cmd: Command, swarms: dict[str, Swarm]) -> tuple[Swarm, str, list[int] | None, str, str | None]:
    def bad(problem: str) -> Rejection:
        return Rejection("invalid_payload", problem, request_id=cmd.request_id, command=cmd.command)

    target_id = require_str(cmd, "target_swarm_id")
    content = require_str(cmd, "content")
    source = cmd.payload.get("source_swarm_id")
    if source is not None and not isinstance(source, str):
        raise bad("source_swarm_id: must be a string or null")
    selector = cmd.payload.get("selector", "idle")
    if selector not in SELECTORS:
        raise bad("selector: must be idle, all or nodes")
    target = swarms.get(target_id or "")
    if target is None:
        raise Rejection("unknown_swarm", "unknown target_swarm_id", request_id=cmd.request_id, command=cmd.command)
    if not target.active:
        raise Rejection("swarm_not_active", "target swarm is terminating or terminated",
                        request_id=cmd.request_id, command=cmd.command)
    nodes: list[int] | None = None
    if selector == "nodes":
        if cmd.payload.get("nodes") is None:
            raise bad("nodes: required when selector is nodes")
        nodes = resolve_nodes(cmd, cmd.payload["nodes"], target.node_count)
    elif selector == "all":
        nodes = list(range(target.node_count))
    assert content is not None
    return target, selector, nodes, content, source


async def enqueue_command(handlers: "Handlers", conn: Any, cmd: Command) -> None:
    r = handlers.r
    target, selector, nodes, content, source = parse_enqueue(cmd, r.core.swarms)
    actions = enqueue(r.core, target, request_id=cmd.request_id, source_swarm_id=source, selector=selector,
                      nodes=nodes, content=content, now=r.now())
    await handlers._deliver(actions)


# ---------------------------------------------------------------- routing directives


def route_answer(core: "RouterCore", swarm: Swarm, node_id: int, injection_id: str | None, text: str,
                 now: float) -> list["InboxLine"]:
    """Turn directives in a final answer into injections or queue items (auto_route swarms only)."""
    from codeswarm.router.routing import directive_key, parse_directives

    if not swarm.auto_route or not injection_id:
        return []
    inj = swarm.injections.get(injection_id)
    actions: list[InboxLine] = []
    for d in parse_directives(text):
        key = directive_key(injection_id, d)
        if key in swarm.routed_keys:
            continue
        base = {"swarm_id": swarm.swarm_id, "job_id": swarm.job_id, "node_id": node_id,
                "injection_id": injection_id, "directive_key": key, "selector": d.selector,
                "target_alias": d.target}
        if d.selector == "reply":
            origin = inj.origin if inj is not None else None
            target = core.swarms.get(origin[0]) if origin else None
            if target is None or not target.active:
                core.emit("auto_route_ignored", {**base, "reason": "no origin to reply to" if not origin
                                                 else "origin swarm is not active"})
                continue
            core.emit("auto_route_submitted", {**base, "target_swarm_id": target.swarm_id, "nodes": [origin[1]]})
            actions += core.inject(target, [int(origin[1])], d.content, None, now,
                                   origin=[swarm.swarm_id, node_id])
            continue
        target = next((s for s in core.swarms.values() if s.alias == d.target and s.active), None)
        if target is None:
            core.emit("auto_route_ignored", {**base, "reason": f"unknown swarm alias: {d.target}"})
            continue
        nodes = None
        if d.selector == "nodes":
            from codeswarm.protocol import parse_node_selector

            try:
                nodes = parse_node_selector(d.nodes, target.node_count)
            except ValueError as exc:
                core.emit("auto_route_ignored", {**base, "reason": str(exc.args[-1])})
                continue
        elif d.selector == "all":
            nodes = list(range(target.node_count))
        core.emit("auto_route_submitted", {**base, "target_swarm_id": target.swarm_id, "nodes": nodes})
        actions += enqueue(core, target, request_id=None, source_swarm_id=swarm.swarm_id, selector=d.selector,
                           nodes=nodes, content=d.content, now=now, origin=[swarm.swarm_id, node_id])
    return actions
