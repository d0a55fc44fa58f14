"""The router's pure core: swarm, node, injection and approval state machines.

No I/O, no clock: callers pass `now` (epoch seconds) and an `emit` sink. Every state change is an
event: deciding code calls `self.emit(name, data)`; the sink logs the event and calls `apply`,
which is also what recovery replays. Side effects the trio layer must carry out (inbox lines)
are returned as Actions.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Callable

from codeswarm.protocol import LEGACY_STATUS
from codeswarm.router import approvals, queue
from codeswarm.router.model import OPEN_INJECTION_STATES, Injection, Node, Swarm
from codeswarm.router.providers.base import JobObservation, JobState

EmitSink = Callable[[str, dict[str, Any]], None]

# Events whose turn content implies the turn has started.
_TURN_CONTENT = frozenset(
    {
        "reasoning_delta", "reasoning", "assistant_delta", "assistant", "command_started",
        "command_completed", "file_change", "exec_approval_required", "agent_error",
    }
)


KEEP_CLOSED_INJECTIONS = 256
_NO_THREAD_STATUS = frozenset({"claude", "mock"})


@dataclass(frozen=True)
class InboxLine:
    """Action: append `line` to node `node_id`'s inbox of `swarm_id`."""

    swarm_id: str
    node_id: int
    line: dict[str, Any]


def new_id() -> str:
    return str(uuid.uuid4())


class RouterCore:
    def __init__(self, emit: EmitSink, settings: Any) -> None:
        self.swarms: dict[str, Swarm] = {}
        self._emit = emit
        self.settings = settings

    # ------------------------------------------------------------------ helpers

    def emit(self, name: str, data: dict[str, Any]) -> None:
        self._emit(name, data)

    def runtime_fields(self, swarm: Swarm, node_id: int, injection_id: str | None) -> dict[str, Any]:
        return {"swarm_id": swarm.swarm_id, "job_id": swarm.job_id, "node_id": node_id, "injection_id": injection_id}

    def list_record(self, swarm: Swarm) -> dict[str, Any]:
        """A swarm as `swarm_list` shows it; `swarm_status` adds to the same fields."""
        rec: dict[str, Any] = {
            "job_id": swarm.job_id,
            "node_count": swarm.node_count,
            "system_prompt": swarm.system_prompt,
            "status": LEGACY_STATUS[swarm.state],
            "state": swarm.state,
            "provider": swarm.provider,
            "provider_id": swarm.provider_id,
            "agent_runtime": swarm.agent_runtime,
            "created_at": swarm.created_at,
        }
        if swarm.alias:
            rec["alias"] = swarm.alias
        if swarm.terminated_at is not None:
            rec["terminated_at"] = swarm.terminated_at
            rec["termination_reason"] = swarm.termination_reason
        return rec

    def status_data(self, swarm: Swarm, request_id: str | None, *, with_nodes: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {"request_id": request_id, "swarm_id": swarm.swarm_id, **self.list_record(swarm),
                                "checked_at": swarm.checked_at}
        del data["system_prompt"]
        if swarm.poll_error:
            data["error"] = swarm.poll_error
        if with_nodes:
            data["nodes"] = [
                {
                    "node_id": n.node_id,
                    "worker": n.worker,
                    "busy": swarm.node_busy(n.node_id),
                    "outstanding": len(swarm.open_injections(n.node_id)),
                    "last_heartbeat_at": n.last_line_at,
                    "hostname": n.hostname,
                }
                for n in swarm.nodes
            ]
        return data

    # ------------------------------------------------------------------ apply

    def apply(self, name: str, data: dict[str, Any], seq: int, now: float) -> None:
        """Fold one logged event into the state. Must be deterministic: recovery replays it."""
        if name == "swarm_launched":
            rec = data.get("_record")
            if rec:
                swarm = Swarm.from_json(rec)
                swarm.seq = seq
                self.swarms[swarm.swarm_id] = swarm
            return
        swarm = self.swarms.get(data.get("swarm_id") or data.get("target_swarm_id") or "")
        if swarm is None:
            return
        swarm.seq = seq
        handler = _APPLY.get(name)
        if handler is not None:
            handler(self, swarm, data, now)
        node_id = data.get("node_id")
        oseq = data.get("outbox_seq")
        if isinstance(oseq, int) and isinstance(node_id, int) and 0 <= node_id < swarm.node_count:
            node = swarm.nodes[node_id]
            node.outbox_seq = max(node.outbox_seq, oseq)

    def _apply_status(self, swarm: Swarm, data: dict[str, Any], now: float) -> None:
        new = data.get("state")
        if new in ("pending", "running", "terminating") and new != swarm.state:
            if new == "terminating":
                swarm.prev_state = swarm.state
            if new == "running" and swarm.running_at is None:
                swarm.running_at = now
            swarm.state = new

    def _apply_terminated(self, swarm: Swarm, data: dict[str, Any], now: float) -> None:
        if swarm.state != "terminated":
            swarm.state = "terminated"
            swarm.terminated_at = data.get("terminated_at", now)
            swarm.termination_reason = data.get("reason")
            swarm.scheduler_state = data.get("scheduler_state")

    def _apply_removed(self, swarm: Swarm, data: dict[str, Any], now: float) -> None:
        self.swarms.pop(swarm.swarm_id, None)

    def _apply_ack(self, swarm: Swarm, data: dict[str, Any], now: float) -> None:
        iid = data["injection_id"]
        swarm.injections[iid] = Injection(
            injection_id=iid,
            node_id=data["node_id"],
            request_id=data.get("request_id"),
            prompt=data.get("prompt", ""),
            state="acked",
            acked_at=data.get("acked_at", now),
            origin=data.get("origin"),
        )

    def _apply_thread_status(self, swarm: Swarm, data: dict[str, Any], now: float) -> None:
        status = data.get("status")
        node_id = data.get("node_id")
        if isinstance(node_id, int) and 0 <= node_id < swarm.node_count:
            swarm.nodes[node_id].thread_status = status.get("type") if isinstance(status, dict) else None

    def _apply_node_status(self, swarm: Swarm, data: dict[str, Any], now: float) -> None:
        node = swarm.nodes[data["node_id"]]
        node.worker = data["worker"]
        if data["worker"] == "running" and node.started_at is None:
            node.started_at = data.get("started_at", now)
        if data.get("hostname"):
            node.hostname = data["hostname"]
        if data["worker"] == "exited":
            node.exit_code = data.get("exit_code")
            node.exit_reason = data.get("exit_reason")

    # ------------------------------------------------------------------ commands

    def launch(
        self,
        *,
        request_id: str,
        swarm_id: str,
        job: dict[str, Any],
        node_count: int,
        provider: str,
        provider_id: str,
        params: dict[str, Any],
        system_prompt: str,
        now: float,
    ) -> list[InboxLine]:
        swarm = Swarm(
            swarm_id=swarm_id,
            job_id=job["job_id"],
            node_count=node_count,
            state="pending",
            provider=provider,
            provider_id=provider_id,
            agent_runtime=str(params.get("worker_mode") or "codex"),
            agent_model=params.get("model") or params.get("claude_model"),
            system_prompt=system_prompt,
            created_at=now,
            params=params,
            job=job,
            nodes=[Node(node_id=i) for i in range(node_count)],
            alias=params.get("swarm_alias") or None,
            auto_route=bool(params.get("auto_route")),
        )
        self.emit(
            "swarm_launched",
            {
                "request_id": request_id,
                "swarm_id": swarm_id,
                "job_id": swarm.job_id,
                "node_count": node_count,
                "provider": provider,
                "provider_id": provider_id,
                "agent_runtime": swarm.agent_runtime,
                "agent_model": swarm.agent_model,
                "state": "pending",
                "_record": swarm.to_json(),
            },
        )
        if not system_prompt:
            return []
        return self.inject(self.swarms[swarm_id], list(range(node_count)), system_prompt, request_id, now)

    def inject(
        self, swarm: Swarm, node_ids: list[int], content: str, request_id: str | None, now: float,
        *, injection_ids: list[str] | None = None, origin: list[Any] | None = None,
    ) -> list[InboxLine]:
        """Ack one injection per node (ascending), then return the inbox lines to append."""
        actions = []
        acked = []
        for i, node_id in enumerate(node_ids):
            iid = injection_ids[i] if injection_ids else new_id()
            acked.append((node_id, iid))
            self.emit(
                "inject_ack",
                {
                    "request_id": request_id,
                    "swarm_id": swarm.swarm_id,
                    "job_id": swarm.job_id,
                    "node_id": node_id,
                    "injection_id": iid,
                    "prompt": content,
                    "acked_at": now,
                    **({"origin": origin} if origin else {}),
                },
            )
        # Ordering rule 3: every ack of one inject comes before any outcome of it.
        for node_id, iid in acked:
            if swarm.nodes[node_id].worker == "exited":
                self.fail_injection(swarm, swarm.injections[iid], "node_not_running", "the node's worker has exited")
                continue
            actions.append(
                InboxLine(
                    swarm.swarm_id,
                    node_id,
                    {"type": "user", "injection_id": iid, "content": content, "ts": now},
                )
            )
        return actions

    def fail_injection(self, swarm: Swarm, inj: Injection, reason: str, error: str) -> None:
        self.emit(
            "inject_failed",
            {
                "request_id": inj.request_id,
                "swarm_id": swarm.swarm_id,
                "job_id": swarm.job_id,
                "node_id": inj.node_id,
                "injection_id": inj.injection_id,
                "reason": reason,
                "error": error,
            },
        )

    def set_state(self, swarm: Swarm, state: str, request_id: str | None) -> None:
        data = self.status_data(swarm, request_id)
        data["state"] = state
        data["status"] = LEGACY_STATUS[state]
        self.emit("swarm_status", data)

    def terminated(
        self, swarm: Swarm, reason: str, request_id: str | None, now: float, scheduler_state: str | None = None
    ) -> None:
        """Close everything still open, then emit swarm_terminated (ordering rule 4)."""
        for inj in list(swarm.injections.values()):
            if inj.state == "acked":
                self.fail_injection(swarm, inj, "swarm_terminated", "the swarm was terminated")
        for inj in list(swarm.injections.values()):
            if inj.state in ("delivered", "started"):
                self._close_turn(swarm, inj, now, aborted=True, status="interrupted")
        approvals.resolve_all(self, swarm, "terminated", now)
        self.emit(
            "swarm_terminated",
            {
                "request_id": request_id,
                "swarm_id": swarm.swarm_id,
                "job_id": swarm.job_id,
                "reason": reason,
                "scheduler_state": scheduler_state,
                "terminated_at": now,
            },
        )
        queue.drop_all(self, swarm, "target terminated")

    def _start_turn(self, swarm: Swarm, inj: Injection, turn_id: Any, outbox_seq: int) -> None:
        self.emit("turn_started", {**self.runtime_fields(swarm, inj.node_id, inj.injection_id),
                                   "turn_id": turn_id, "prompt": inj.prompt, "outbox_seq": outbox_seq})
        self._synthesize_thread_status(swarm, inj, "active")

    def _synthesize_thread_status(self, swarm: Swarm, inj: Injection, status: str) -> None:
        # PROTOCOL.md 5.8: runtimes without a native thread-status signal get one from the router.
        if swarm.agent_runtime in _NO_THREAD_STATUS:
            self.emit("thread_status", {**self.runtime_fields(swarm, inj.node_id, inj.injection_id),
                                        "status": {"type": status}})

    def _close_turn(self, swarm: Swarm, inj: Injection, now: float, *, aborted: bool, status: str,
                    extra: dict[str, Any] | None = None) -> None:
        approvals.resolve_for_injection(self, swarm, inj.injection_id, "turn_complete", now)
        data = self.runtime_fields(swarm, inj.node_id, inj.injection_id)
        data.update(extra or {})
        data.update({"turn_id": inj.turn_id, "aborted": aborted, "status": status})
        self.emit("turn_complete", data)
        self._synthesize_thread_status(swarm, inj, "idle")

    # ------------------------------------------------------------------ worker output

    def _heard_from(self, swarm: Swarm, node_id: int, now: float) -> None:
        """Any outbox line proves the worker alive (PROTOCOL.md 8.5)."""
        node = swarm.nodes[node_id]
        node.last_line_at = now
        if node.worker == "stale":
            self.emit("node_status", {**self.runtime_fields(swarm, node_id, None), "worker": "running",
                                      "last_heartbeat_at": now})

    def on_lifecycle(self, swarm: Swarm, node_id: int, line: dict[str, Any], now: float) -> None:
        event = line.get("event")
        data = line.get("data") if isinstance(line.get("data"), dict) else {}
        src = {"outbox_seq": line.get("seq")}
        if event not in ("worker_started", "worker_exited"):
            self._heard_from(swarm, node_id, now)
        if event == "worker_started":
            self.emit(
                "node_status",
                {**self.runtime_fields(swarm, node_id, None), "worker": "running", "started_at": now,
                 "hostname": data.get("hostname"), "last_heartbeat_at": now, **src},
            )
            if swarm.state == "pending":
                self.set_state(swarm, "running", None)
        elif event == "turn_accepted":
            inj = swarm.injections.get(line.get("injection_id") or "")
            if inj is not None and inj.state == "acked" and inj.node_id == node_id:
                self.emit(
                    "inject_delivered",
                    {"request_id": inj.request_id, "swarm_id": swarm.swarm_id, "job_id": swarm.job_id,
                     "node_id": node_id, "injection_id": inj.injection_id, "queued": bool(data.get("queued")),
                     "turn_id": data.get("turn_id"), **src},
                )
        elif event == "worker_error":
            self.emit(
                "agent_error",
                {**self.runtime_fields(swarm, node_id, line.get("injection_id")),
                 "message": str(data.get("message", "worker error")), "error_code": "worker_error",
                 "fatal": bool(data.get("fatal")), **src},
            )
        elif event == "worker_exited":
            self._worker_exited(swarm, node_id, data, now, src)

    def _worker_exited(self, swarm: Swarm, node_id: int, data: dict[str, Any], now: float, src: dict[str, Any]) -> None:
        reason = data.get("reason") or "error"
        requested = reason == "shutdown" or swarm.state in ("terminating", "terminated")
        for inj in swarm.open_injections(node_id):
            if inj.state == "acked":
                self.fail_injection(swarm, inj, "node_not_running", f"worker exited ({reason})")
            else:
                if not requested:
                    self.emit("agent_error", {**self.runtime_fields(swarm, node_id, inj.injection_id),
                                              "message": f"worker exited during the turn ({reason})",
                                              "error_code": "worker_exited", "fatal": True})
                self._close_turn(swarm, inj, now, aborted=True, status="interrupted")
        if not requested:
            self.emit("agent_error", {**self.runtime_fields(swarm, node_id, None),
                                      "message": f"worker exited ({reason}, code {data.get('exit_code')})",
                                      "error_code": "worker_exited", "fatal": True})
        self.emit(
            "node_status",
            {**self.runtime_fields(swarm, node_id, None), "worker": "exited", "exit_code": data.get("exit_code"),
             "exit_reason": reason, "last_heartbeat_at": swarm.nodes[node_id].last_line_at, **src},
        )

    def on_runtime_events(
        self, swarm: Swarm, node_id: int, injection_id: str | None, events: list[tuple[str, dict[str, Any]]],
        outbox_seq: int, now: float,
    ) -> None:
        """Route normalized events of one outbox line through the injection lifecycle."""
        self._heard_from(swarm, node_id, now)
        inj = swarm.injections.get(injection_id) if injection_id else None
        if inj is not None and inj.node_id != node_id:
            inj = None
        for name, payload in events:
            data = {**self.runtime_fields(swarm, node_id, injection_id), **payload, "outbox_seq": outbox_seq}
            if inj is None:
                if name not in ("turn_started", "turn_complete", "exec_approval_required"):
                    self.emit(name, data)
                continue
            if name == "turn_started":
                if inj.state == "delivered":
                    self._start_turn(swarm, inj, payload.get("turn_id"), outbox_seq)
                continue
            if name == "turn_complete":
                if inj.state == "delivered":
                    self._start_turn(swarm, inj, payload.get("turn_id"), outbox_seq)
                if inj.state in ("delivered", "started"):
                    status = payload.get("status") or "completed"
                    self._close_turn(swarm, inj, now, aborted=False, status=status, extra={"outbox_seq": outbox_seq})
                continue
            if name in _TURN_CONTENT and inj.state == "delivered":
                self._start_turn(swarm, inj, payload.get("turn_id"), outbox_seq)
            if name == "exec_approval_required":
                approvals.required(self, swarm, inj, data, now)
                continue
            if name == "command_started":
                approvals.resolve_by_runtime(self, swarm, node_id, payload.get("call_id"), now)
            self.emit(name, data)

    # ------------------------------------------------------------------ scheduler evidence

    def on_observation(self, swarm: Swarm, obs: JobObservation, now: float) -> None:
        """Apply the failure model to one successful scheduler observation."""
        if obs.state == JobState.UNKNOWN:  # no evidence either way: keep everything as it is
            return
        swarm.checked_at = now
        swarm.poll_error = None
        if obs.state == JobState.NOT_FOUND:
            if swarm.miss_count == 0:
                swarm.first_miss_at = now
            swarm.miss_count += 1
            window = getattr(self.settings, "job_gone_window_seconds", 30)
            if (swarm.miss_count >= self.settings.job_gone_confirmations
                    and now - (swarm.first_miss_at or now) >= window):
                self._job_gone(swarm, obs, now)
            return
        swarm.miss_count = 0
        swarm.first_miss_at = None
        if obs.state == JobState.RUNNING and swarm.state == "pending":
            self.set_state(swarm, "running", None)
        elif obs.state == JobState.ENDED:
            self._job_gone(swarm, obs, now)

    def _job_gone(self, swarm: Swarm, obs: JobObservation, now: float) -> None:
        if swarm.state in ("terminated", "terminating"):
            return
        reason = "launch_failed" if swarm.state == "pending" and swarm.running_at is None else "job_ended"
        self.terminated(swarm, reason, None, now, scheduler_state=obs.scheduler_state or obs.reason)

    # ------------------------------------------------------------------ timers

    def tick(self, now: float) -> tuple[list[str], list[InboxLine]]:
        """Deadlines, stale nodes, approval timeouts, retention.

        Returns the swarm ids whose launch timed out (to cancel) and the control lines to send.
        """
        s = self.settings
        to_cancel: list[str] = []
        actions: list[InboxLine] = []
        for swarm in list(self.swarms.values()):
            if swarm.state == "terminated":
                continue
            for node in swarm.nodes:
                if node.worker == "running" and node.last_line_at is not None and \
                        now - node.last_line_at > s.worker_heartbeat_timeout_seconds:
                    self.emit("node_status", {**self.runtime_fields(swarm, node.node_id, None), "worker": "stale",
                                              "last_heartbeat_at": node.last_line_at})
                elif node.worker == "not_started" and swarm.running_at is not None and \
                        now - swarm.running_at > s.worker_start_timeout_seconds:
                    self.emit("node_status", {**self.runtime_fields(swarm, node.node_id, None), "worker": "stale",
                                              "last_heartbeat_at": None})
            for inj in list(swarm.injections.values()):
                node = swarm.nodes[inj.node_id]
                if inj.state in ("delivered", "started") and node.worker == "stale":
                    silent = now - (node.last_line_at or inj.acked_at)
                    if silent > s.worker_heartbeat_timeout_seconds + s.inject_timeout_seconds:
                        self.emit("agent_error", {**self.runtime_fields(swarm, inj.node_id, inj.injection_id),
                                                  "message": f"node silent for {silent:.0f} s during the turn",
                                                  "error_code": "node_stale", "fatal": False})
                        self._close_turn(swarm, inj, now, aborted=True, status="interrupted")
                    continue
                if inj.state != "acked":
                    continue
                if node.worker == "running":
                    start = max(inj.acked_at, node.started_at or inj.acked_at)
                    if now - start > s.inject_timeout_seconds:
                        self.fail_injection(swarm, inj, "timeout", f"not delivered within {s.inject_timeout_seconds:g} s")
                elif node.worker == "stale" and now - inj.acked_at > s.inject_timeout_seconds:
                    self.fail_injection(swarm, inj, "node_not_running", "the node's worker is not responding")
            for a, decision in approvals.expire(self, swarm, now):
                actions.append(InboxLine(swarm.swarm_id, a.node_id,
                                         approvals.control_line(a, decision, False, new_id(), now)))
            hard = swarm.params.get("_launch_hard_timeout_seconds")
            if swarm.state == "pending" and hard and now - swarm.created_at > hard:
                to_cancel.append(swarm.swarm_id)
        self._retention(now)
        return to_cancel, actions

    def _retention(self, now: float) -> None:
        s = self.settings
        ended = sorted(
            (sw for sw in self.swarms.values() if sw.state == "terminated"), key=lambda sw: sw.terminated_at or 0
        )
        for sw in ended:
            if now - (sw.terminated_at or now) >= s.terminated_ttl_seconds:
                self.emit("swarm_removed", {"swarm_id": sw.swarm_id, "reason": "ttl_expired"})
        ended = [sw for sw in ended if sw.swarm_id in self.swarms]
        excess = len(ended) - s.max_terminated_swarms
        for sw in ended[: max(0, excess)]:
            self.emit("swarm_removed", {"swarm_id": sw.swarm_id, "reason": "retention_cap"})


def _injection_to(state: str) -> Callable[[RouterCore, Swarm, dict[str, Any], float], None]:
    def apply(core: RouterCore, swarm: Swarm, data: dict[str, Any], now: float) -> None:
        inj = swarm.injections.get(data.get("injection_id") or "")
        if inj is None:
            return
        inj.state = state
        if data.get("turn_id"):
            inj.turn_id = data["turn_id"]
        if state in ("completed", "failed"):
            _forget_old_injections(swarm)

    return apply


def _forget_old_injections(swarm: Swarm) -> None:
    """Keep every open injection but only the newest closed ones: a swarm may run for days."""
    closed = [iid for iid, inj in swarm.injections.items() if inj.state in ("completed", "failed")]
    for iid in closed[: max(0, len(closed) - KEEP_CLOSED_INJECTIONS)]:
        del swarm.injections[iid]


_APPLY: dict[str, Callable[[RouterCore, Swarm, dict[str, Any], float], None]] = {
    "swarm_status": RouterCore._apply_status,
    "swarm_terminated": RouterCore._apply_terminated,
    "swarm_removed": RouterCore._apply_removed,
    "inject_ack": RouterCore._apply_ack,
    "inject_delivered": _injection_to("delivered"),
    "turn_started": _injection_to("started"),
    "turn_complete": _injection_to("completed"),
    "inject_failed": _injection_to("failed"),
    "node_status": RouterCore._apply_node_status,
    "thread_status": RouterCore._apply_thread_status,
    "exec_approval_required": approvals.apply_required,
    "exec_approval_resolved": approvals.apply_resolved,
    "inter_swarm_enqueued": queue.apply_enqueued,
    "inter_swarm_dispatched": queue.apply_removed,
    "inter_swarm_dropped": queue.apply_removed,
    "auto_route_submitted": queue.apply_routed,
    "auto_route_ignored": queue.apply_routed,
}
