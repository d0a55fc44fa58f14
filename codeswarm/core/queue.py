"""Work queues (PROTOCOL.md 4.3, 5.6) and routing directives between swarms. Pure decisions.

Items live on their target swarm (`Swarm.queue`), so they are snapshotted and replayed with it:
`inter_swarm_enqueued` appends an item, `inter_swarm_dispatched` / `inter_swarm_dropped` remove it.
Only `idle` items wait in a queue; `all` and `nodes` items are dispatched at once.

An `idle` item dispatched to a node whose inbox line then cannot be written (the shell's
InboxWriteFailed) goes back to the head of the queue (`inter_swarm_blocked`, PROTOCOL.md 4.3):
`Swarm.queue_inflight` keeps the dispatched item until its injection is taken, and the node is
not given a queue item again until it has done something since (`activity`): no retry loop on an
inbox that stays unwritable. The acked injection ends with `inject_failed` (`requeued`).

A decision that changes several queues keeps them in `Out.queues` (the queue as this decision
left it) and the nodes it gave work in `Out.claimed_nodes`: the records change only on reduce.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from codeswarm.core import steps
from codeswarm.core.kernel import Event, Feature, Ids, Out
from codeswarm.core.records import CoreState, Injection, Node, Swarm
from codeswarm.core.routing import directive_key, parse_directives
from codeswarm.errors import SelectorError
from codeswarm.protocol import Command, Rejection, parse_node_selector, require_str, resolve_nodes

SELECTORS = ("idle", "all", "nodes")
MAX_ROUTED_KEYS = 2048


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Enqueue:
    target_swarm_id: str
    request_id: str | None
    source_swarm_id: str | None
    selector: str
    nodes: list[int] | None
    content: str


@dataclass(frozen=True)
class DispatchIdle:
    """Something may have made a node of this swarm idle: feed head items to idle nodes."""

    swarm_id: str


@dataclass(frozen=True)
class RouteAnswer:
    """A final answer of an auto_route swarm: its directives become injections or queue items."""

    swarm_id: str
    node_id: int
    injection_id: str | None
    text: str


@dataclass(frozen=True)
class QueueCancel:
    """Remove one queued item before it is dispatched (the page's and `codeswarm queue --cancel`)."""

    queue_id: str
    request_id: str | None


# ---------------------------------------------------------------- views


def all_items(state: CoreState, overlay: dict[str, list[dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
    overlay = overlay or {}
    items = [item for sid, sw in state.swarms.items() for item in overlay.get(sid, sw.queue)]
    return sorted(items, key=lambda i: (i.get("created_at") or 0, i["queue_id"]))


def public_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if not k.startswith("_")}


def _queue(out: Out, swarm: Swarm) -> list[dict[str, Any]]:
    if swarm.swarm_id not in out.queues:
        out.queues[swarm.swarm_id] = list(swarm.queue)
    return out.queues[swarm.swarm_id]


# queue_updated carries the full list only while it is this short: with it on every change, a
# growing queue made the log quadratic (issue 12 #7: 3,000 items, 1.5 GB). The deltas are the
# inter_swarm_enqueued / _dispatched / _dropped events; queue_list answers the whole list.
SNAPSHOT_MAX_ITEMS = 50


def _updated(out: Out, state: CoreState, swarm: Swarm) -> None:
    total = sum(len(out.queues.get(sid, sw.queue)) for sid, sw in state.swarms.items())
    data: dict[str, Any] = {"target_swarm_id": swarm.swarm_id, "length": len(_queue(out, swarm)), "total": total}
    if total <= SNAPSHOT_MAX_ITEMS:
        data["items"] = [public_item(i) for i in all_items(state, out.queues)]
    else:
        data["items_omitted"] = True
    out.emit("queue_updated", data)


def _item_fields(item: dict[str, Any]) -> dict[str, Any]:
    return {"queue_id": item["queue_id"], "request_id": item.get("request_id"),
            "source_swarm_id": item.get("source_swarm_id"), "target_swarm_id": item["target_swarm_id"],
            "selector": item.get("selector")}


def new_item(data: dict[str, Any], target_swarm_id: str) -> dict[str, Any]:
    return {
        "queue_id": data["queue_id"], "request_id": data.get("request_id"),
        "source_swarm_id": data.get("source_swarm_id"), "target_swarm_id": target_swarm_id,
        "selector": data.get("selector", "idle"), "nodes": data.get("nodes"), "content": data.get("content", ""),
        "created_at": data["created_at"], "_origin": data.get("origin"),
    }


def activity(node: Node) -> list[Any]:
    """What a node has done so far: its worker (state, start, restarts) and the last outbox line
    turned into events. A change after an inbox write failed is the node's next transition."""
    return [node.worker, node.started_at, node.restart_count, node.outbox_seq, node.outbox_offset]


def idle_nodes(swarm: Swarm, claimed: set[tuple[str, int]] | frozenset[tuple[str, int]] = frozenset()) -> list[int]:
    """Running workers with no open injection whose runtime thread is not active (4.3), except a
    node whose inbox failed a queue item and that has done nothing since (inter_swarm_blocked)."""
    if swarm.state != "running":
        return []
    busy = {inj.node_id for inj in swarm.open_injections()}
    return [n.node_id for n in swarm.nodes
            if n.worker == "running" and n.node_id not in busy and n.thread_status != "active"
            and (swarm.swarm_id, n.node_id) not in claimed
            and (n.inbox_blocked is None or n.inbox_blocked != activity(n))]


def blocked_item(data: dict[str, Any]) -> dict[str, Any]:
    """The item an inter_swarm_blocked event puts back: `blocked` (ext) says on which node and why;
    `_blocked_injection` is the injection that failed `requeued` (see requeued_injections)."""
    item = new_item(data, data["target_swarm_id"])
    item["blocked"] = {"node_id": data["node_id"], "reason": data["reason"]}
    item["_blocked_injection"] = data["injection_id"]
    return item


def _put_back(items: list[dict[str, Any]], item: dict[str, Any]) -> None:
    """At the head, behind the items put back before it that are not younger: two items blocked in
    one inbox round keep their FIFO order whichever failure is decided first."""
    index = 0
    while (index < len(items) and "_blocked_injection" in items[index]
           and items[index]["created_at"] <= item["created_at"]):
        index += 1
    items.insert(index, item)


def requeued_injections(swarm: Swarm) -> set[str]:
    """Injections whose item is back in the queue: never to be written again (a crash between the
    inter_swarm_blocked and inject_failed lines would otherwise let RedeliverAcked send them)."""
    return {i["_blocked_injection"] for i in swarm.queue if "_blocked_injection" in i}


# ---------------------------------------------------------------- decisions


def enqueue(out: Out, state: CoreState, target: Swarm, *, request_id: str | None, source_swarm_id: str | None,
            selector: str, nodes: list[int] | None, content: str, origin: list[Any] | None = None) -> None:
    data = {
        "request_id": request_id, "queue_id": out.ids(), "source_swarm_id": source_swarm_id,
        "target_swarm_id": target.swarm_id, "selector": selector, "nodes": nodes, "content": content,
        "created_at": out.now, "origin": origin,
    }
    out.emit("inter_swarm_enqueued", data)
    items = _queue(out, target)
    item = new_item(data, target.swarm_id)
    items.append(item)
    _updated(out, state, target)
    if selector == "idle":
        dispatch_idle(out, state, target)
        return
    out.emit("inter_swarm_dispatched", {**_item_fields(item), "nodes": nodes})
    items.remove(item)
    steps.inject(out, target, list(nodes or []), content, request_id, origin=origin)
    _updated(out, state, target)


def dispatch_idle(out: Out, state: CoreState, swarm: Swarm) -> None:
    """Send head items to the lowest-numbered idle nodes, strictly in FIFO order."""
    items = _queue(out, swarm)
    changed = False
    while items and items[0].get("selector") == "idle" and not swarm.budget_exceeded:
        free = idle_nodes(swarm, out.claimed_nodes)
        if not free:
            break
        item = items.pop(0)
        node_id = free[0]
        iid = out.ids()
        out.emit("inter_swarm_dispatched", {**_item_fields(item), "node_id": node_id, "injection_id": iid})
        steps.inject(out, swarm, [node_id], item["content"], item.get("request_id"), injection_ids=[iid],
                         origin=item.get("_origin"))
        changed = True
    if changed:
        _updated(out, state, swarm)


def requeue_blocked(out: Out, state: CoreState, swarm: Swarm, inj: Injection, error: str) -> bool:
    """The inbox line of an acked injection could not be written. If a dispatched idle item made it
    and the swarm still takes work, the item goes back to the head of the queue
    (inter_swarm_blocked, PROTOCOL.md 4.3) and the injection ends (inject_failed `requeued`), in
    that order: a crash between the two lines leaves the item queued, never lost. False otherwise
    (the caller fails the injection as for any prompt)."""
    item = swarm.queue_inflight.get(inj.injection_id)
    if item is None or not swarm.active:
        return False
    reason = f"cannot write node {inj.node_id}'s inbox: {error}"
    data = {**_item_fields(item), "node_id": inj.node_id, "injection_id": inj.injection_id, "reason": reason,
            "nodes": None, "content": inj.prompt, "created_at": item["created_at"], "origin": item.get("_origin")}
    out.emit("inter_swarm_blocked", data)
    _put_back(_queue(out, swarm), blocked_item(data))
    steps.fail_injection(out, swarm, inj.node_id, inj.injection_id, inj.request_id, "requeued",
                         f"{reason}; queue item {item['queue_id']} is back at the head of its queue")
    _updated(out, state, swarm)
    return True


def drop_all(out: Out, state: CoreState, swarm: Swarm, reason: str) -> None:
    items = _queue(out, swarm)
    if not items:
        return
    for item in list(items):
        out.emit("inter_swarm_dropped", {**_item_fields(item), "reason": reason})
    items.clear()
    _updated(out, state, swarm)


def find_item(state: CoreState, queue_id: str) -> dict[str, Any] | None:
    for swarm in state.swarms.values():
        for item in swarm.queue:
            if item["queue_id"] == queue_id:
                return item
    return None


def parse_cancel(cmd: Command, state: CoreState) -> QueueCancel:
    """Validate queue_cancel against the state; raises Rejection."""
    queue_id = require_str(cmd, "queue_id")
    assert queue_id is not None
    if find_item(state, queue_id) is None:
        raise Rejection("unknown_queue_item", "unknown queue item (already dispatched, dropped or cancelled)",
                        request_id=cmd.request_id, command=cmd.command, queue_id=queue_id)
    return QueueCancel(queue_id, cmd.request_id)


def decide_cancel(state: CoreState, inp: QueueCancel, now: float, ids: Ids, out: Out) -> None:
    item = find_item(state, inp.queue_id)
    if item is None:
        return
    target = state.swarms[item["target_swarm_id"]]
    items = _queue(out, target)
    items[:] = [i for i in items if i["queue_id"] != inp.queue_id]
    # The item's own request_id stays (PROTOCOL.md 5.6); who cancelled it is cancel_request_id.
    out.emit("inter_swarm_dropped", {**_item_fields(item), "reason": "cancelled",
                                     "cancel_request_id": inp.request_id})
    _updated(out, state, target)


def parse_enqueue(cmd: Command, state: CoreState) -> Enqueue:
    """Validate enqueue_inject against the state; raises Rejection."""
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
    target = state.swarms.get(target_id or "")
    if target is None:
        raise Rejection("unknown_swarm", "unknown target_swarm_id", request_id=cmd.request_id, command=cmd.command)
    if not target.active:
        raise Rejection("swarm_not_active", "target swarm is terminating or terminated",
                        request_id=cmd.request_id, command=cmd.command)
    limit = state.settings.queue_max_items_per_swarm
    if selector == "idle" and len(target.queue) >= limit:
        raise Rejection("queue_full", f"the queue of swarm {target.swarm_id} is full ({limit} items, "
                        "router.queue_max_items_per_swarm): retry when it drains", request_id=cmd.request_id,
                        command=cmd.command)
    nodes: list[int] | None = None
    if selector == "nodes":
        if cmd.payload.get("nodes") is None:
            raise bad("nodes: required when selector is nodes")
        nodes = resolve_nodes(cmd, cmd.payload["nodes"], target.node_count)
    elif selector == "all":
        nodes = list(range(target.node_count))
    assert content is not None
    return Enqueue(target.swarm_id, cmd.request_id, source, selector, nodes, content)


def decide_enqueue(state: CoreState, inp: Enqueue, now: float, ids: Ids, out: Out) -> None:
    target = state.swarms.get(inp.target_swarm_id)
    if target is not None and target.active:
        enqueue(out, state, target, request_id=inp.request_id, source_swarm_id=inp.source_swarm_id,
                selector=inp.selector, nodes=inp.nodes, content=inp.content)


def decide_dispatch(state: CoreState, inp: DispatchIdle, now: float, ids: Ids, out: Out) -> None:
    swarm = state.swarms.get(inp.swarm_id)
    if swarm is not None and swarm.queue:
        dispatch_idle(out, state, swarm)


def decide_route(state: CoreState, inp: RouteAnswer, now: float, ids: Ids, out: Out) -> None:
    """Turn directives in a final answer into injections or queue items (auto_route swarms only)."""
    swarm = state.swarms.get(inp.swarm_id)
    injection_id, node_id = inp.injection_id, inp.node_id
    if swarm is None or not swarm.auto_route or not injection_id:
        return
    inj = swarm.injections.get(injection_id)
    for d in parse_directives(inp.text):
        key = directive_key(injection_id, d)
        if key in swarm.routed_keys:
            continue
        base = {"swarm_id": swarm.swarm_id, "job_id": swarm.job_id, "node_id": node_id,
                "injection_id": injection_id, "directive_key": key, "selector": d.selector,
                "target_alias": d.target}
        if d.selector == "reply":
            origin = inj.origin if inj is not None else None
            target = state.swarms.get(origin[0]) if origin else None
            if origin is None or target is None or not target.active or target.budget_exceeded:
                out.emit("auto_route_ignored", {**base, "reason": "no origin to reply to" if not origin
                                                else "origin swarm's budget is spent" if target and target.active
                                                else "origin swarm is not active"})
                continue
            out.emit("auto_route_submitted", {**base, "target_swarm_id": target.swarm_id, "nodes": [origin[1]]})
            steps.inject(out, target, [int(origin[1])], d.content, None, origin=[swarm.swarm_id, node_id])
            continue
        target = next((s for s in state.swarms.values() if s.alias == d.target and s.active), None)
        if target is None or target.budget_exceeded:
            out.emit("auto_route_ignored", {**base, "reason": f"unknown swarm alias: {d.target}" if target is None
                                            else f"swarm {d.target}'s budget is spent"})
            continue
        nodes = None
        if d.selector == "nodes":
            try:
                nodes = parse_node_selector(d.nodes, target.node_count)
            except SelectorError as exc:
                out.emit("auto_route_ignored", {**base, "reason": exc.message})
                continue
        elif d.selector == "all":
            nodes = list(range(target.node_count))
        if d.selector == "idle" and len(_queue(out, target)) >= state.settings.queue_max_items_per_swarm:
            out.emit("auto_route_ignored", {**base, "reason": f"the queue of {d.target} is full "
                                            f"({state.settings.queue_max_items_per_swarm} items)"})
            continue
        out.emit("auto_route_submitted", {**base, "target_swarm_id": target.swarm_id, "nodes": nodes})
        enqueue(out, state, target, request_id=None, source_swarm_id=swarm.swarm_id, selector=d.selector,
                nodes=nodes, content=d.content, origin=[swarm.swarm_id, node_id])


# ---------------------------------------------------------------- reducers


def _target(state: CoreState, event: Event) -> Swarm | None:
    sid = event.data.get("swarm_id") or event.data.get("target_swarm_id")
    return state.swarms.get(sid) if isinstance(sid, str) else None


def reduce_enqueued(state: CoreState, event: Event) -> None:
    swarm = _target(state, event)
    if swarm is not None:
        swarm.queue.append(new_item(event.data, swarm.swarm_id))


def reduce_removed(state: CoreState, event: Event) -> None:
    swarm = _target(state, event)
    if swarm is not None:
        swarm.queue = [i for i in swarm.queue if i["queue_id"] != event.data.get("queue_id")]


def reduce_dispatched(state: CoreState, event: Event) -> None:
    """Remove the item; an idle one (to one injection) is kept in `queue_inflight` while that
    injection is acked, without its content (the injection holds it)."""
    swarm = _target(state, event)
    if swarm is None:
        return
    qid, iid = event.data.get("queue_id"), event.data.get("injection_id")
    item = next((i for i in swarm.queue if i["queue_id"] == qid), None)
    swarm.queue = [i for i in swarm.queue if i["queue_id"] != qid]
    if item is None or not isinstance(iid, str):
        return
    inflight, injections = swarm.queue_inflight, swarm.injections
    for done in [k for k in inflight if k not in injections or injections[k].state != "acked"]:
        del inflight[done]  # taken or failed: at most one entry per idle node remains
    inflight[iid] = {k: v for k, v in item.items() if k not in ("content", "blocked", "_blocked_injection")}


def reduce_blocked(state: CoreState, event: Event) -> None:
    swarm = _target(state, event)
    if swarm is None:
        return
    data = event.data
    swarm.queue_inflight.pop(str(data.get("injection_id")), None)
    if all(i["queue_id"] != data.get("queue_id") for i in swarm.queue):
        _put_back(swarm.queue, blocked_item(data))
    node_id = data.get("node_id")
    if isinstance(node_id, int) and 0 <= node_id < swarm.node_count:
        swarm.nodes[node_id].inbox_blocked = activity(swarm.nodes[node_id])


def reduce_routed(state: CoreState, event: Event) -> None:
    swarm = _target(state, event)
    key = event.data.get("directive_key")
    if swarm is not None and isinstance(key, str):
        swarm.routed_keys = (swarm.routed_keys + [key])[-MAX_ROUTED_KEYS:]


FEATURE = Feature(
    name="queue",
    deciders={Enqueue: decide_enqueue, DispatchIdle: decide_dispatch, RouteAnswer: decide_route,
              QueueCancel: decide_cancel},
    reducers={"inter_swarm_enqueued": reduce_enqueued, "inter_swarm_dispatched": reduce_dispatched,
              "inter_swarm_blocked": reduce_blocked, "inter_swarm_dropped": reduce_removed, "auto_route_submitted": reduce_routed,
              "auto_route_ignored": reduce_routed},
)
