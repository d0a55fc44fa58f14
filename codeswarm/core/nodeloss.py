"""Dead workers noticed at once, the restart policy, and prompts re-sent after a crash (issue 12 #2, #9).

- `NodeGone`: the provider saw a node's worker process end without a `worker_exited` line (kill -9,
  OOM, a crashed runtime). The node becomes `lost` (`node_status`), its acked prompts fail
  (`node_lost`), its running turn ends (`agent_error` `worker_lost`, `turn_complete` aborted), and
  with the swarm's `restart: on-failure` (at most `restart_max` times, backoff doubling from
  `restart_backoff_seconds`) a `RestartNode` effect asks the shell to start the worker again.
- `NodeRespawned` / `NodeRespawnFailed`: what the shell's restart gave; `node_restarted` carries
  the job's new provider record (`job_extra`: the new pid) so a restarted router finds it.
  The node stays `lost` until its new worker writes `worker_started` (lost -> running).
- `RedeliverAcked`: after a router restart, every prompt the log acked but no worker accepted yet
  is appended to its inbox again (the worker skips an injection it already accepted), so a crash
  between the ack and the inbox write never leaves a prompt open forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from codeswarm.core.kernel import Event, Feature, Ids, InboxLine, Out
from codeswarm.core.queue import requeued_injections
from codeswarm.core.records import CoreState, Swarm
from codeswarm.core.steps import close_turn, fail_injection
from codeswarm.core.views import runtime_fields

DEFAULT_RESTART_MAX = 3
DEFAULT_RESTART_BACKOFF = 1.0
MAX_RESTART_BACKOFF = 60.0
LOSABLE = frozenset({"not_started", "running", "stale"})


@dataclass(frozen=True)
class RestartNode:
    """Effect: start node `node_id`'s worker again after `delay` seconds (attempt = restart_count + 1)."""

    swarm_id: str
    node_id: int
    attempt: int
    delay: float


@dataclass(frozen=True)
class NodeGone:
    swarm_id: str
    node_id: int
    detail: str


@dataclass(frozen=True)
class NodeRespawned:
    swarm_id: str
    node_id: int
    attempt: int
    job_extra: dict[str, Any]


@dataclass(frozen=True)
class NodeRespawnFailed:
    swarm_id: str
    node_id: int
    attempt: int
    error: str


@dataclass(frozen=True)
class RedeliverAcked:
    """Re-send every acked, not yet accepted prompt (all swarms when swarm_id is None)."""

    swarm_id: str | None = None


def restart_policy(params: dict[str, Any]) -> tuple[bool, int, float]:
    """(on, max restarts, first backoff seconds) from the swarm's params (validated at launch)."""
    on = params.get("restart") == "on-failure"
    limit = params.get("restart_max", DEFAULT_RESTART_MAX)
    backoff = params.get("restart_backoff_seconds", DEFAULT_RESTART_BACKOFF)
    limit = limit if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0 else DEFAULT_RESTART_MAX
    backoff = float(backoff) if isinstance(backoff, (int, float)) and not isinstance(backoff, bool) \
        and backoff >= 0 else DEFAULT_RESTART_BACKOFF
    return on, limit, backoff


def may_restart(swarm: Swarm, node_id: int) -> bool:
    """True while a node may still come back: lost and restartable, or not yet known to be gone
    (its worker is LOSABLE) with restarts left. A local job's check can see every worker process
    gone before the node watch named the dead one lost (two loops, 1 s and 0.5 s apart): the
    node's clean exit would have been read already (its outbox is drained first), so such a node
    died, and the node watch will make it lost and restart it."""
    node = swarm.nodes[node_id]
    on, limit, _ = restart_policy(swarm.params)
    return on and node.restart_count < limit and (node.worker == "lost" or node.worker in LOSABLE)


def decide_node_gone(state: CoreState, inp: NodeGone, now: float, ids: Ids, out: Out) -> None:
    swarm = state.swarms.get(inp.swarm_id)
    if swarm is None or swarm.state not in ("pending", "running") or not 0 <= inp.node_id < swarm.node_count:
        return
    node = swarm.nodes[inp.node_id]
    if node.worker not in LOSABLE:
        return
    nid = inp.node_id
    for inj in swarm.open_injections(nid):
        if inj.state == "acked":
            fail_injection(out, swarm, nid, inj.injection_id, inj.request_id, "node_lost",
                           f"the node's worker is gone: {inp.detail}")
        else:
            out.emit("agent_error", {**runtime_fields(swarm, nid, inj.injection_id),
                                     "message": f"the node's worker died during the turn: {inp.detail}",
                                     "error_code": "worker_lost", "fatal": True})
            close_turn(out, swarm, inj, aborted=True, status="interrupted")
    out.emit("node_status", {**runtime_fields(swarm, nid, None), "worker": "lost", "reason": inp.detail,
                             "lost_at": now, "last_heartbeat_at": None})
    on, limit, backoff = restart_policy(swarm.params)
    if not on:
        return
    if node.restart_count >= limit:
        out.emit("agent_error", {**runtime_fields(swarm, nid, None),
                                 "message": f"node {nid} lost again after {node.restart_count} restart(s): "
                                            f"restart_max {limit} reached, it stays lost",
                                 "error_code": "node_restart_limit", "fatal": True})
        return
    delay = min(MAX_RESTART_BACKOFF, backoff * (2 ** node.restart_count))
    out.effect(RestartNode(swarm.swarm_id, nid, node.restart_count + 1, delay))


def decide_respawned(state: CoreState, inp: NodeRespawned, now: float, ids: Ids, out: Out) -> None:
    swarm = state.swarms.get(inp.swarm_id)
    if swarm is None or not swarm.active or swarm.nodes[inp.node_id].worker != "lost":
        return
    out.emit("node_restarted", {**runtime_fields(swarm, inp.node_id, None), "restart_count": inp.attempt,
                                "job_extra": inp.job_extra, "restarted_at": now})


def decide_respawn_failed(state: CoreState, inp: NodeRespawnFailed, now: float, ids: Ids, out: Out) -> None:
    swarm = state.swarms.get(inp.swarm_id)
    if swarm is None or not swarm.active:
        return
    out.emit("agent_error", {**runtime_fields(swarm, inp.node_id, None),
                             "message": f"could not restart node {inp.node_id} (attempt {inp.attempt}): {inp.error}",
                             "error_code": "node_restart_failed", "fatal": True})


def decide_redeliver(state: CoreState, inp: RedeliverAcked, now: float, ids: Ids, out: Out) -> None:
    for swarm in state.swarms.values():
        if (inp.swarm_id is not None and swarm.swarm_id != inp.swarm_id) or not swarm.active:
            continue
        requeued = requeued_injections(swarm) if swarm.queue else set()
        for inj in swarm.injections.values():
            if state.projects.task_of(inj.injection_id) is not None:
                continue  # a project task: RecoverProjects re-sends it with its `project_task` (a line without
                #           it, read first, would run the task as a plain turn that never reports a result)
            if inj.state == "acked" and inj.injection_id in requeued:  # its item is queued again: end it
                fail_injection(out, swarm, inj.node_id, inj.injection_id, inj.request_id, "requeued",
                               "its queue item was put back in the queue before the router restarted")
            elif inj.state == "acked" and swarm.nodes[inj.node_id].worker not in ("exited", "lost"):
                out.effect(InboxLine(swarm.swarm_id, inj.node_id, {
                    "type": "user", "injection_id": inj.injection_id, "content": inj.prompt, "ts": inj.acked_at}))


def reduce_restarted(state: CoreState, event: Event) -> None:
    swarm = state.swarms.get(event.data.get("swarm_id") or "")
    if swarm is None:
        return
    node = swarm.nodes[event.data["node_id"]]
    node.restart_count = int(event.data.get("restart_count") or node.restart_count + 1)
    extra = event.data.get("job_extra")
    if isinstance(extra, dict):
        swarm.job = {**swarm.job, "extra": extra}


FEATURE = Feature(
    name="nodeloss",
    deciders={NodeGone: decide_node_gone, NodeRespawned: decide_respawned, NodeRespawnFailed: decide_respawn_failed,
              RedeliverAcked: decide_redeliver},
    reducers={"node_restarted": reduce_restarted},
)
