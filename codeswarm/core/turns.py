"""Worker output: outbox lifecycle lines and normalized runtime events (PROTOCOL.md 5.8, 6, 8.4, 8.5).

The shell reads each outbox line once (in seq order), normalizes runtime payloads, notes when
it heard from the node (non-durable liveness), then asks the core to decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

from codeswarm.core import approvals, spend, steps
from codeswarm.core.kernel import Feature, Ids, Out
from codeswarm.core.records import CoreState, Injection, Swarm
from codeswarm.core.views import runtime_fields
from codeswarm.spend.meter import money

# Events whose turn content implies the turn has started.
TURN_CONTENT = frozenset({
    "reasoning_delta", "reasoning", "assistant_delta", "assistant", "command_started", "command_completed",
    "file_change", "exec_approval_required", "agent_error",
})


_ZERO = Decimal(0)

# Runtime events with lifecycle meaning; every other one is content passed through.
_TURN_CONTROL = frozenset({"turn_started", "turn_complete", "exec_approval_required", "command_started"})


class LifecycleLine(NamedTuple):
    """A `type: lifecycle` outbox line of one node (already checked: integer seq, new)."""

    swarm_id: str
    node_id: int
    line: dict[str, Any]
    outbox_offset: int = 0  # byte offset just after the line (durable read position, issue 12 #5)


class RuntimeOutput(NamedTuple):
    """The normalized events of one `type: runtime` outbox line (a NamedTuple: one per line)."""

    swarm_id: str
    node_id: int
    injection_id: str | None
    events: list[tuple[str, dict[str, Any]]]
    outbox_seq: int
    outbox_offset: int = 0


@dataclass(frozen=True)
class OutboxSeqAnomaly:
    """A line whose seq does not follow the previous one (issue 12 #5): reported, still processed."""

    swarm_id: str
    node_id: int
    error_code: str  # outbox_seq_duplicate | outbox_seq_backwards | outbox_seq_gap | outbox_seq_jump
    message: str
    seq: int


@dataclass(frozen=True)
class BadOutboxLine:
    swarm_id: str
    node_id: int
    problem: str


def heard_from(out: Out, swarm: Swarm, node_id: int) -> None:
    """Any outbox line proves the worker alive (PROTOCOL.md 8.5)."""
    if swarm.nodes[node_id].worker == "stale":
        out.emit("node_status", {**runtime_fields(swarm, node_id, None), "worker": "running",
                                 "last_heartbeat_at": out.now})


def decide_lifecycle(state: CoreState, inp: LifecycleLine, now: float, ids: Ids, out: Out) -> None:
    swarm = state.swarms.get(inp.swarm_id)
    if swarm is None:
        return
    node_id, line = inp.node_id, inp.line
    event = line.get("event")
    raw = line.get("data")
    data: dict[str, Any] = raw if isinstance(raw, dict) else {}
    src = {"outbox_seq": line.get("seq"), "outbox_offset": inp.outbox_offset}
    if event not in ("worker_started", "worker_exited"):
        heard_from(out, swarm, node_id)
    if event == "worker_started":
        out.emit("node_status", {**runtime_fields(swarm, node_id, None), "worker": "running", "started_at": now,
                                 "hostname": data.get("hostname"), "last_heartbeat_at": now, **src})
        if swarm.state == "pending":
            steps.set_state(out, swarm, "running", None)
    elif event == "turn_accepted":
        inj = swarm.injections.get(line.get("injection_id") or "")
        if inj is not None and inj.state == "acked" and inj.node_id == node_id:
            out.emit("inject_delivered", {
                "request_id": inj.request_id, "swarm_id": swarm.swarm_id, "job_id": swarm.job_id,
                "node_id": node_id, "injection_id": inj.injection_id, "queued": bool(data.get("queued")),
                "turn_id": data.get("turn_id"), **src})
    elif event == "worker_error":
        out.emit("agent_error", {**runtime_fields(swarm, node_id, line.get("injection_id")),
                                 "message": str(data.get("message", "worker error")), "error_code": "worker_error",
                                 "fatal": bool(data.get("fatal")), **src})
    elif event == "worker_exited":
        _worker_exited(out, swarm, node_id, data, src)


def _worker_exited(out: Out, swarm: Swarm, node_id: int, data: dict[str, Any], src: dict[str, Any]) -> None:
    reason = data.get("reason") or "error"
    requested = reason == "shutdown" or swarm.state in ("terminating", "terminated")
    for inj in swarm.open_injections(node_id):
        if inj.state == "acked":
            steps.fail_injection(out, swarm, node_id, inj.injection_id, inj.request_id, "node_not_running",
                                     f"worker exited ({reason})")
        else:
            if not requested:
                out.emit("agent_error", {**runtime_fields(swarm, node_id, inj.injection_id),
                                         "message": f"worker exited during the turn ({reason})",
                                         "error_code": "worker_exited", "fatal": True})
            steps.close_turn(out, swarm, inj, aborted=True, status="interrupted")
    if not requested:
        out.emit("agent_error", {**runtime_fields(swarm, node_id, None),
                                 "message": f"worker exited ({reason}, code {data.get('exit_code')})",
                                 "error_code": "worker_exited", "fatal": True})
    out.emit("node_status", {**runtime_fields(swarm, node_id, None), "worker": "exited",
                             "exit_code": data.get("exit_code"), "exit_reason": reason,
                             "last_heartbeat_at": out.now, **src})


def decide_runtime(state: CoreState, inp: RuntimeOutput, now: float, ids: Ids, out: Out) -> None:
    """Route the normalized events of one outbox line through the injection lifecycle."""
    swarm = state.swarms.get(inp.swarm_id)
    if swarm is None:
        return
    node_id, injection_id, outbox_seq = inp.node_id, inp.injection_id, inp.outbox_seq
    if swarm.nodes[node_id].worker == "stale":
        heard_from(out, swarm, node_id)
    inj: Injection | None = swarm.injections.get(injection_id) if injection_id else None
    if inj is not None and inj.node_id != node_id:
        inj = injection_id = None  # another node's turn (a forged label): never logged or charged as that turn's
    # The injection's state and turn id as this decision moves them (the record changes only on reduce).
    inj_state = inj.state if inj is not None else None
    turn_id = inj.turn_id if inj is not None else None
    added = _ZERO  # this decision's usage; the turn's cost so far is read only when a turn closes
    unpriced = False
    late_added: dict[str, Decimal] = {}  # late usage of turns already complete, by injection, in this decision
    swarm_id, job_id, outbox_offset = swarm.swarm_id, swarm.job_id, inp.outbox_offset
    for name, payload in inp.events:
        data = {"swarm_id": swarm_id, "job_id": job_id, "node_id": node_id, "injection_id": injection_id, **payload,
                "outbox_seq": outbox_seq, "outbox_offset": outbox_offset}
        if name == "usage":
            late = _late_turn(swarm, node_id, inj, inj_state, payload.get("turn_id"))
            if late is not None:
                data["injection_id"], data["late_usage"] = late.injection_id, True
            elif inj_state == "completed":  # names another turn than the finished one it is labelled with:
                data["injection_id"] = None  # the node's usage, no turn's (its printed cost would disagree)
            cost = spend.charge_usage(out, state, swarm, node_id, data)
            if late is None:
                added += cost or 0
                unpriced = unpriced or cost is None
            else:
                _turn_cost_updated(out, swarm, node_id, late, cost, late_added, added if late is inj else _ZERO)
            continue
        if inj is None:
            if name not in ("turn_started", "turn_complete", "exec_approval_required"):
                out.emit(name, data)
            continue
        if inj_state == "started" and name not in _TURN_CONTROL:  # the hot path: content of a running turn
            out.emit(name, data)
            continue
        if inj_state == "delivered" and (name in TURN_CONTENT or name in ("turn_started", "turn_complete")):
            new_turn_id = payload.get("turn_id")
            steps.start_turn(out, swarm, inj, new_turn_id, outbox_seq, inp.outbox_offset)
            inj_state, turn_id = "started", new_turn_id or turn_id
            if name == "turn_started":
                continue
        if name == "turn_started":
            continue
        if name == "turn_complete":
            if inj_state == "started":
                cost_usd = money(Decimal(inj.spend_usd) + added)
                steps.close_turn(out, swarm, inj, aborted=False, status=payload.get("status") or "completed",
                                 turn_id=turn_id, extra={"outbox_seq": outbox_seq, "outbox_offset": inp.outbox_offset,
                                                         "turn_cost_usd": cost_usd,
                                                         **({"turn_cost_unknown": True} if unpriced else {})})
                inj_state = "completed"
            continue
        if name == "exec_approval_required":
            approvals.required(out, swarm, inj, data)
            continue
        if name == "command_started":
            approvals.resolve_by_runtime(out, swarm, node_id, payload.get("call_id"))
        out.emit(name, data)


def _late_turn(swarm: Swarm, node_id: int, inj: Injection | None, inj_state: str | None,
               turn_id: Any) -> Injection | None:
    """The completed turn a usage belongs to when it arrives after that turn completed (codex can send
    thread/tokenUsage/updated after turn/completed), else None: a usage during a running turn is that
    turn's. The line names the turn's injection while the worker still holds it, else none or the next
    queued one (not started yet); a usage naming its turn (codex `turnId`) must match it."""
    if inj_state == "started":
        return None
    last = inj if inj_state == "completed" else _last_completed_turn(swarm, node_id)
    if last is None or (isinstance(turn_id, str) and last.turn_id is not None and turn_id != last.turn_id):
        return None
    return last


def _last_completed_turn(swarm: Swarm, node_id: int) -> Injection | None:
    """The node's latest turn, if it has completed (injections are kept in the order they were made;
    a node runs its turns in that order). Only late usage looks, so the scan is rare."""
    for inj in reversed(swarm.injections.values()):
        if inj.node_id != node_id or inj.state in ("acked", "delivered", "failed"):
            continue
        return inj if inj.state == "completed" else None
    return None


def _turn_cost_updated(out: Out, swarm: Swarm, node_id: int, turn: Injection, cost: Decimal | None,
                       late_added: dict[str, Decimal], same_decision: Decimal) -> None:
    """A late usage changed a completed turn's cost: say the turn's corrected total (docs/SPEND.md)."""
    iid = turn.injection_id
    late_added[iid] = late_added.get(iid, _ZERO) + (cost or 0)
    total = Decimal(turn.spend_usd) + same_decision + late_added[iid]
    out.emit("turn_cost_updated", {"swarm_id": swarm.swarm_id, "job_id": swarm.job_id, "node_id": node_id,
                                   "injection_id": iid, "turn_id": turn.turn_id, "turn_cost_usd": money(total),
                                   "late_usd": None if cost is None else money(cost),
                                   **({"turn_cost_unknown": True} if cost is None else {})})


def decide_seq_anomaly(state: CoreState, inp: OutboxSeqAnomaly, now: float, ids: Ids, out: Out) -> None:
    swarm = state.swarms.get(inp.swarm_id)
    if swarm is not None:  # `seq`, not `outbox_seq`: this notice moves no read position
        out.emit("agent_error", {**runtime_fields(swarm, inp.node_id, None), "message": inp.message,
                                 "error_code": inp.error_code, "fatal": False, "seq": inp.seq})


def decide_bad_line(state: CoreState, inp: BadOutboxLine, now: float, ids: Ids, out: Out) -> None:
    swarm = state.swarms.get(inp.swarm_id)
    if swarm is not None:
        out.emit("agent_error", {**runtime_fields(swarm, inp.node_id, None), "message": f"outbox: {inp.problem}",
                                 "error_code": "outbox_invalid_line", "fatal": False})


FEATURE = Feature(
    name="turns",
    deciders={LifecycleLine: decide_lifecycle, RuntimeOutput: decide_runtime, BadOutboxLine: decide_bad_line,
              OutboxSeqAnomaly: decide_seq_anomaly},
)
