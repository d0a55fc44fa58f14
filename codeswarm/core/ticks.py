"""Timers (one Tick a second from the shell): deadlines, stale nodes, approval timeouts, retention."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from codeswarm.core import approvals
from codeswarm.core.kernel import Feature, Ids, Out, StartTerminate
from codeswarm.core.records import CoreState
from codeswarm.core.steps import close_turn, fail_injection
from codeswarm.core.views import runtime_fields


@dataclass(frozen=True)
class Tick:
    """`last_heard[(swarm_id, node_id)]`: when the shell last read a line from that node's outbox
    (non-durable liveness; missing = nothing read since the router started)."""

    last_heard: Mapping[tuple[str, int], float] = field(default_factory=dict)


def decide_tick(state: CoreState, inp: Tick, now: float, ids: Ids, out: Out) -> None:
    s = state.settings
    for swarm in list(state.swarms.values()):
        if swarm.state == "terminated":
            continue
        stale_now: set[int] = set()
        for node in swarm.nodes:
            heard = inp.last_heard.get((swarm.swarm_id, node.node_id))
            if node.worker == "running" and heard is not None and now - heard > s.worker_heartbeat_timeout_seconds:
                out.emit("node_status", {**runtime_fields(swarm, node.node_id, None), "worker": "stale",
                                         "last_heartbeat_at": heard})
                stale_now.add(node.node_id)
            elif node.worker == "not_started" and swarm.running_at is not None and \
                    now - swarm.running_at > s.worker_start_timeout_seconds:
                out.emit("node_status", {**runtime_fields(swarm, node.node_id, None), "worker": "stale",
                                         "last_heartbeat_at": None})
                stale_now.add(node.node_id)
        for inj in list(swarm.injections.values()):
            node = swarm.nodes[inj.node_id]
            worker = "stale" if inj.node_id in stale_now else node.worker
            if inj.state in ("delivered", "started") and worker == "stale":
                heard = inp.last_heard.get((swarm.swarm_id, inj.node_id))
                silent = now - (heard or inj.acked_at)
                if silent > s.worker_heartbeat_timeout_seconds + s.inject_timeout_seconds:
                    out.emit("agent_error", {**runtime_fields(swarm, inj.node_id, inj.injection_id),
                                             "message": f"node silent for {silent:.0f} s during the turn",
                                             "error_code": "node_stale", "fatal": False})
                    close_turn(out, swarm, inj, aborted=True, status="interrupted")
                continue
            if inj.state != "acked":
                continue
            if worker == "running":
                start = max(inj.acked_at, node.started_at or inj.acked_at)
                if now - start > s.inject_timeout_seconds:
                    fail_injection(out, swarm, inj.node_id, inj.injection_id, inj.request_id, "timeout",
                                   f"not delivered within {s.inject_timeout_seconds:g} s")
            elif worker == "stale" and now - inj.acked_at > s.inject_timeout_seconds:
                fail_injection(out, swarm, inj.node_id, inj.injection_id, inj.request_id, "node_not_running",
                               "the node's worker is not responding")
        approvals.expire(out, swarm, s.approval_timeout_seconds)
        hard = swarm.params.get("_launch_hard_timeout_seconds")
        if swarm.state == "pending" and hard and now - swarm.created_at > hard:
            out.effect(StartTerminate(swarm.swarm_id, "launch_timeout", force=True))
    _retention(state, now, out)


def _retention(state: CoreState, now: float, out: Out) -> None:
    s = state.settings
    ended = sorted((sw for sw in state.swarms.values() if sw.state == "terminated"),
                   key=lambda sw: sw.terminated_at or 0)
    removed = set()
    for sw in ended:
        if now - (sw.terminated_at or now) >= s.terminated_ttl_seconds:
            out.emit("swarm_removed", {"swarm_id": sw.swarm_id, "reason": "ttl_expired"})
            removed.add(sw.swarm_id)
    ended = [sw for sw in ended if sw.swarm_id not in removed]
    excess = len(ended) - s.max_terminated_swarms
    for sw in ended[: max(0, excess)]:
        out.emit("swarm_removed", {"swarm_id": sw.swarm_id, "reason": "retention_cap"})


FEATURE = Feature(name="ticks", deciders={Tick: decide_tick})
