"""Swarm, node and injection lifecycles: launch, inject, terminate (PROTOCOL.md 4.1, 4.2, 4.5, 6, 7).

Deciders take an input record and write events to `Out`; reducers fold those events into the
records through the transition tables of states.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from codeswarm.core import approvals, queue
from codeswarm.core.kernel import Event, Feature, Ids, Out
from codeswarm.core.records import CoreState, Injection, Node, Swarm
from codeswarm.core.states import CLOSED_INJECTION_STATES, move
from codeswarm.core.steps import close_turn, fail_injection, inject, set_state
from codeswarm.spend.budget import launch_budget

KEEP_CLOSED_INJECTIONS = 256


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Launch:
    request_id: str
    swarm_id: str
    job: dict[str, Any]
    node_count: int
    provider: str
    provider_id: str
    params: dict[str, Any]
    system_prompt: str


@dataclass(frozen=True)
class Inject:
    """A validated inject (the shell checked the swarm is active and resolved the nodes)."""

    swarm_id: str
    node_ids: list[int]
    content: str
    request_id: str | None
    origin: list[Any] | None = None


@dataclass(frozen=True)
class InboxWriteFailed:
    swarm_id: str
    injection_id: str
    error: str


@dataclass(frozen=True)
class AnnounceTerminating:
    """swarm_terminate accepted (or repeated while terminating): announce `terminating`."""

    swarm_id: str
    request_id: str | None


@dataclass(frozen=True)
class RepeatTerminated:
    """swarm_terminate for a swarm that already ended: say so again."""

    swarm_id: str
    request_id: str | None


@dataclass(frozen=True)
class ShutdownSent:
    """The shutdown lines are in the inboxes: nothing acked will be delivered any more."""

    swarm_id: str


@dataclass(frozen=True)
class TerminateRefused:
    swarm_id: str
    request_id: str | None
    error: str


@dataclass(frozen=True)
class Terminated:
    swarm_id: str
    reason: str
    request_id: str | None
    scheduler_state: str | None = None


# ---------------------------------------------------------------- decisions


def terminated(out: Out, state: CoreState, swarm: Swarm, reason: str, request_id: str | None,
               scheduler_state: str | None = None) -> None:
    """Close everything still open, then swarm_terminated (ordering rule 4), then drop the queue."""
    for inj in list(swarm.injections.values()):
        if inj.state == "acked" and inj.injection_id not in out.closed_injections:
            fail_injection(out, swarm, inj.node_id, inj.injection_id, inj.request_id, "swarm_terminated",
                           "the swarm was terminated")
    for inj in list(swarm.injections.values()):
        if inj.state in ("delivered", "started") and inj.injection_id not in out.closed_injections:
            close_turn(out, swarm, inj, aborted=True, status="interrupted")
    approvals.resolve_all(out, swarm, "terminated")
    out.emit("swarm_terminated", {
        "request_id": request_id, "swarm_id": swarm.swarm_id, "job_id": swarm.job_id, "reason": reason,
        "scheduler_state": scheduler_state, "terminated_at": out.now,
    })
    queue.drop_all(out, state, swarm, "target terminated")


# ---------------------------------------------------------------- deciders


def _swarm(state: CoreState, swarm_id: str) -> Swarm | None:
    return state.swarms.get(swarm_id)


def decide_launch(state: CoreState, inp: Launch, now: float, ids: Ids, out: Out) -> None:
    params = inp.params
    swarm = Swarm(
        swarm_id=inp.swarm_id, job_id=inp.job["job_id"], node_count=inp.node_count, state="pending",
        provider=inp.provider, provider_id=inp.provider_id,
        agent_runtime=str(params.get("worker_mode") or "codex"),
        agent_model=params.get("model") or params.get("claude_model"),
        system_prompt=inp.system_prompt, created_at=now, params=params, job=inp.job,
        nodes=[Node(node_id=i) for i in range(inp.node_count)],
        alias=params.get("swarm_alias") or None, auto_route=bool(params.get("auto_route")),
        budget_usd=launch_budget(params, state.settings.default_swarm_budget_usd),
    )
    out.emit("swarm_launched", {
        "request_id": inp.request_id, "swarm_id": swarm.swarm_id, "job_id": swarm.job_id,
        "node_count": inp.node_count, "provider": inp.provider, "provider_id": inp.provider_id,
        "agent_runtime": swarm.agent_runtime, "agent_model": swarm.agent_model, "state": "pending",
        # The record's own time and names, so a client replaying the log shows the right age and alias.
        "created_at": swarm.created_at, "alias": swarm.alias, "auto_route": swarm.auto_route,
        "_record": swarm.to_json(),
    })
    if inp.system_prompt:  # `swarm` is this decision's own copy: the reducer builds the live one from _record
        inject(out, swarm, list(range(inp.node_count)), inp.system_prompt, inp.request_id)


def decide_inject(state: CoreState, inp: Inject, now: float, ids: Ids, out: Out) -> None:
    swarm = _swarm(state, inp.swarm_id)
    if swarm is not None:
        inject(out, swarm, list(inp.node_ids), inp.content, inp.request_id, origin=inp.origin)


def decide_inbox_write_failed(state: CoreState, inp: InboxWriteFailed, now: float, ids: Ids, out: Out) -> None:
    swarm = _swarm(state, inp.swarm_id)
    inj = swarm.injections.get(inp.injection_id) if swarm is not None else None
    if swarm is not None and inj is not None and inj.state == "acked" \
            and not queue.requeue_blocked(out, state, swarm, inj, inp.error):
        fail_injection(out, swarm, inj.node_id, inj.injection_id, inj.request_id, "node_not_running",
                       f"cannot write the inbox: {inp.error}")


def decide_announce_terminating(state: CoreState, inp: AnnounceTerminating, now: float, ids: Ids, out: Out) -> None:
    swarm = _swarm(state, inp.swarm_id)
    if swarm is not None and swarm.state in ("pending", "running", "terminating"):
        set_state(out, swarm, "terminating", inp.request_id)


def decide_repeat_terminated(state: CoreState, inp: RepeatTerminated, now: float, ids: Ids, out: Out) -> None:
    swarm = _swarm(state, inp.swarm_id)
    if swarm is not None and swarm.state == "terminated":
        out.emit("swarm_terminated", {"request_id": inp.request_id, "swarm_id": swarm.swarm_id,
                                      "job_id": swarm.job_id, "reason": swarm.termination_reason,
                                      "already_terminated": True})


def decide_shutdown_sent(state: CoreState, inp: ShutdownSent, now: float, ids: Ids, out: Out) -> None:
    swarm = _swarm(state, inp.swarm_id)
    if swarm is None:
        return
    for inj in list(swarm.injections.values()):
        if inj.state == "acked":
            fail_injection(out, swarm, inj.node_id, inj.injection_id, inj.request_id, "swarm_terminated",
                           "the swarm is being terminated")
    approvals.resolve_all(out, swarm, "terminated")


def decide_terminate_refused(state: CoreState, inp: TerminateRefused, now: float, ids: Ids, out: Out) -> None:
    swarm = _swarm(state, inp.swarm_id)
    if swarm is None:
        return
    out.emit("command_rejected", {"request_id": inp.request_id, "reason": inp.error, "code": "termination_failed",
                                  "command": "swarm_terminate", "swarm_id": swarm.swarm_id})
    if swarm.state == "terminating":
        set_state(out, swarm, swarm.prev_state or "running", None)


def decide_terminated(state: CoreState, inp: Terminated, now: float, ids: Ids, out: Out) -> None:
    swarm = _swarm(state, inp.swarm_id)
    if swarm is not None and swarm.state != "terminated":
        terminated(out, state, swarm, inp.reason, inp.request_id, inp.scheduler_state)


# ---------------------------------------------------------------- reducers


def swarm_of(state: CoreState, event: Event) -> Swarm | None:
    sid = event.data.get("swarm_id") or event.data.get("target_swarm_id")
    return state.swarms.get(sid) if isinstance(sid, str) else None


def reduce_launched(state: CoreState, event: Event) -> None:
    rec = event.data.get("_record")
    if rec:
        swarm = Swarm.from_json(rec)
        state.swarms[swarm.swarm_id] = swarm


def reduce_status(state: CoreState, event: Event) -> None:
    swarm = swarm_of(state, event)
    new = event.data.get("state")
    if swarm is None or new == swarm.state:  # a repeated announcement (terminate while terminating)
        return
    target = move("swarm", swarm.state, str(new), f"swarm_status seq {event.seq}")
    if target == "terminating":
        swarm.prev_state = swarm.state
    if target == "running" and swarm.running_at is None:
        swarm.running_at = event.data.get("running_at")
    swarm.state = target.value


def reduce_terminated(state: CoreState, event: Event) -> None:
    swarm = swarm_of(state, event)
    if swarm is None or event.data.get("already_terminated"):
        return
    swarm.state = move("swarm", swarm.state, "terminated", f"swarm_terminated seq {event.seq}").value
    swarm.terminated_at = event.data.get("terminated_at")
    swarm.termination_reason = event.data.get("reason")
    swarm.scheduler_state = event.data.get("scheduler_state")


def reduce_removed(state: CoreState, event: Event) -> None:
    sid = event.data.get("swarm_id")
    if isinstance(sid, str):
        state.swarms.pop(sid, None)


def reduce_ack(state: CoreState, event: Event) -> None:
    swarm = swarm_of(state, event)
    if swarm is None:
        return
    d = event.data
    iid = d["injection_id"]
    replaced = swarm.injections.get(iid)
    if replaced is not None and replaced.state in CLOSED_INJECTION_STATES:
        _count_closed(swarm, -1)
    swarm.injections[iid] = Injection(injection_id=iid, node_id=d["node_id"], request_id=d.get("request_id"),
                                      prompt=d.get("prompt", ""), state="acked", acked_at=d["acked_at"],
                                      origin=d.get("origin"))


def _injection_to(new: str) -> Any:
    def reduce(state: CoreState, event: Event) -> None:
        swarm = swarm_of(state, event)
        inj = swarm.injections.get(event.data.get("injection_id") or "") if swarm is not None else None
        if swarm is None or inj is None:
            return
        was_open = inj.state not in CLOSED_INJECTION_STATES
        inj.state = move("injection", inj.state, new, f"{event.name} seq {event.seq}").value
        if event.data.get("turn_id"):
            inj.turn_id = event.data["turn_id"]
        if new in CLOSED_INJECTION_STATES:
            if was_open:
                _count_closed(swarm, 1)
            _forget_old_injections(swarm)

    return reduce


def _forget_old_injections(swarm: Swarm) -> None:
    """Keep every open injection but only the newest closed ones: a swarm may run for days.
    Runs at every closed turn: the closed ones are counted once per loaded record and then kept
    count of by the reducers (_CLOSED), and the scan for the oldest stops after them (counting at
    every close was ~4 % of an 800-turn burst's router CPU)."""
    injections = swarm.injections
    closed = swarm.__dict__.get(_CLOSED)
    if closed is None:
        if len(injections) <= KEEP_CLOSED_INJECTIONS:  # cannot hold too many closed ones
            return
        states = [inj.state for inj in injections.values()]
        closed = sum(states.count(c) for c in CLOSED_INJECTION_STATES)
    excess = closed - KEEP_CLOSED_INJECTIONS
    if excess > 0:
        oldest: list[str] = []
        for iid, inj in injections.items():
            if inj.state in CLOSED_INJECTION_STATES:
                oldest.append(iid)
                if len(oldest) == excess:
                    break
        for iid in oldest:
            del injections[iid]
        closed -= len(oldest)
    swarm.__dict__[_CLOSED] = closed


# How many of a swarm's injections are closed, once counted: a memo the injection reducers keep in the
# record's __dict__, not state: no dataclass field, so neither asdict nor orjson (it skips names that
# start with "_") writes it into a snapshot (tests/unit/test_forget_injections.py); a record loaded
# from a snapshot or an event counts again at its first close.
_CLOSED = "_closed_injections"


def _count_closed(swarm: Swarm, change: int) -> None:
    closed = swarm.__dict__.get(_CLOSED)
    if closed is not None:
        swarm.__dict__[_CLOSED] = closed + change


def reduce_node_status(state: CoreState, event: Event) -> None:
    swarm = swarm_of(state, event)
    if swarm is None:
        return
    d = event.data
    node = swarm.nodes[d["node_id"]]
    node.worker = move("worker", node.worker, d["worker"], f"node_status seq {event.seq}").value
    if node.worker == "running" and node.started_at is None:
        node.started_at = d.get("started_at") or d.get("last_heartbeat_at")
    if d.get("hostname"):
        node.hostname = d["hostname"]
    if node.worker == "exited":
        node.exit_code = d.get("exit_code")
        node.exit_reason = d.get("exit_reason")


def reduce_thread_status(state: CoreState, event: Event) -> None:
    swarm = swarm_of(state, event)
    node_id = event.data.get("node_id")
    if swarm is not None and isinstance(node_id, int) and 0 <= node_id < swarm.node_count:
        status = event.data.get("status")
        swarm.nodes[node_id].thread_status = status.get("type") if isinstance(status, dict) else None


FEATURE = Feature(
    name="lifecycle",
    deciders={
        Launch: decide_launch, Inject: decide_inject, InboxWriteFailed: decide_inbox_write_failed,
        AnnounceTerminating: decide_announce_terminating, RepeatTerminated: decide_repeat_terminated,
        ShutdownSent: decide_shutdown_sent, TerminateRefused: decide_terminate_refused,
        Terminated: decide_terminated,
    },
    reducers={
        "swarm_launched": reduce_launched, "swarm_status": reduce_status, "swarm_terminated": reduce_terminated,
        "swarm_removed": reduce_removed, "inject_ack": reduce_ack,
        "inject_delivered": _injection_to("delivered"), "turn_started": _injection_to("started"),
        "turn_complete": _injection_to("completed"), "inject_failed": _injection_to("failed"),
        "node_status": reduce_node_status, "thread_status": reduce_thread_status,
    },
)
