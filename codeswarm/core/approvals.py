"""Approval bookkeeping and decision translation (PROTOCOL.md 4.4 and 5.5). Pure.

An approval is minted when a turn asks (exec_approval_required); it is resolved once, by the
client (approve_execution, after the control line reached the node's inbox), by the runtime
itself (command_started), by the turn ending, by termination or by the timeout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from codeswarm.core.kernel import Event, Feature, Ids, InboxLine, Out
from codeswarm.core.records import Approval, CoreState, Injection, Swarm
from codeswarm.protocol import Command, Rejection

IDEMPOTENT_WINDOW_SECONDS = 180
KEEP_RESOLVED = 256

# family -> (app-server dialect, native dialect)
_FAMILIES = {
    "once": ("accept", "approved"),
    "session": ("acceptForSession", "approved_for_session"),
    "deny": ("decline", "denied"),
    "abort": ("cancel", "abort"),
}
_FAMILY_OF = {v: fam for fam, pair in _FAMILIES.items() for v in pair}
_APPROVING = {"once", "session", "amend"}
_DENY_ORDER = ("decline", "denied", "cancel", "abort")
_AMEND_APP = "acceptWithExecpolicyAmendment"
_AMEND_NATIVE = "approved_execpolicy_amendment"
DEFAULT_DECISIONS = ["accept", "acceptForSession", "decline", "cancel"]


def family(decision: Any) -> str | None:
    if isinstance(decision, str):
        return _FAMILY_OF.get(decision)
    if isinstance(decision, dict) and (_AMEND_APP in decision or _AMEND_NATIVE in decision):
        return "amend"
    return None


def _dialect(offered: list[Any]) -> int:
    """0 = app-server, 1 = native."""
    for v in offered:
        if isinstance(v, str) and v in ("approved", "approved_for_session", "denied", "abort"):
            return 1
        if isinstance(v, dict) and _AMEND_NATIVE in v:
            return 1
    return 0


def _offered(value: Any, offered: list[Any]) -> bool:
    if isinstance(value, str):
        return value in offered
    key = next(iter(value))
    return any(isinstance(o, dict) and key in o for o in offered)


def resolve_decision(approved: bool, requested: Any, approval: Approval) -> Any:
    """Pick the effective decision in the node's dialect, or raise ValueError('decision not offered')."""
    offered = approval.available_decisions or DEFAULT_DECISIONS
    dialect = _dialect(offered)
    fam = family(requested) if requested is not None else None
    if fam is None or (fam in _APPROVING) != approved:
        requested, fam = None, None
    if fam == "amend":
        rule = None
        for key in (_AMEND_APP, _AMEND_NATIVE):
            inner = requested.get(key)
            if isinstance(inner, dict):
                rule = inner.get("execpolicy_amendment") or inner.get("proposed_execpolicy_amendment")
        rule = rule or approval.proposed_execpolicy_amendment
        value: Any = (
            {_AMEND_APP: {"execpolicy_amendment": rule}} if dialect == 0
            else {_AMEND_NATIVE: {"proposed_execpolicy_amendment": rule}}
        )
    elif fam is not None:
        value = _FAMILIES[fam][dialect]
    elif approved:
        value = _FAMILIES["once"][dialect]
    else:
        value = next((d for d in _DENY_ORDER if d in offered), None)
        if value is None:
            raise ValueError("decision not offered")
    if _offered(value, offered):
        return value
    if approved:
        fallback = _FAMILIES["once"][dialect]
        if fallback in offered:
            return fallback
    else:
        deny = next((d for d in _DENY_ORDER if d in offered), None)
        if deny is not None:
            return deny
    raise ValueError("decision not offered")


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Approve:
    """approve_execution as received (validated here: the answer depends on core state)."""

    cmd: Command


@dataclass(frozen=True)
class ApprovalDelivered:
    """The control line of an approve_execution reached the node's inbox: record the resolution."""

    swarm_id: str
    approval_id: str
    decision: Any
    approved: bool
    request_id: str


# ---------------------------------------------------------------- decisions


def required(out: Out, swarm: Swarm, inj: Injection, data: dict[str, Any]) -> None:
    call_id = str(data.get("call_id") or "")
    existing = next(
        (a for a in swarm.approvals.values() if a.node_id == inj.node_id and a.call_id == call_id and not a.resolved
         and a.approval_id not in out.resolved_approvals),
        None,
    )
    offered = data.get("available_decisions") or list(DEFAULT_DECISIONS)
    if existing is not None:
        merged = list(existing.available_decisions)
        merged += [d for d in offered if d not in merged]
        if merged == existing.available_decisions:
            return
        offered = merged
        approval_id = existing.approval_id
    else:
        approval_id = out.ids()
    out.emit("exec_approval_required", {
        **data, "approval_id": approval_id, "call_id": call_id, "kind": data.get("kind") or "command",
        "reason": data.get("reason"), "cwd": data.get("cwd"),  # PROTOCOL.md 5.5 lists both, nullable
        "available_decisions": offered, "proposed_execpolicy_amendment": data.get("proposed_execpolicy_amendment"),
        "created_at": out.now,
    })


def _resolved(out: Out, swarm: Swarm, a: Approval, *, approved: bool, decision: Any, source: str,
              request_id: str | None, idempotent: bool = False) -> None:
    data = {
        "request_id": request_id, "approval_id": a.approval_id, "swarm_id": swarm.swarm_id, "job_id": swarm.job_id,
        "node_id": a.node_id, "injection_id": a.injection_id, "call_id": a.call_id, "approved": approved,
        "decision": decision, "source": source, "resolved_at": out.now,
    }
    if idempotent:
        data["idempotent"] = True
    else:
        out.resolved_approvals.add(a.approval_id)
    out.emit("exec_approval_resolved", data)


def _pending(out: Out, swarm: Swarm) -> list[Approval]:
    return [a for a in swarm.approvals.values() if not a.resolved and a.approval_id not in out.resolved_approvals]


def resolve_by_runtime(out: Out, swarm: Swarm, node_id: int, call_id: Any) -> None:
    for a in _pending(out, swarm):
        if a.node_id == node_id and a.call_id == call_id:
            _resolved(out, swarm, a, approved=True, decision=None, source="runtime", request_id=None)


def resolve_for_injection(out: Out, swarm: Swarm, injection_id: str, source: str) -> None:
    for a in _pending(out, swarm):
        if a.injection_id == injection_id:
            _resolved(out, swarm, a, approved=False, decision=None, source=source, request_id=None)


def resolve_all(out: Out, swarm: Swarm, source: str) -> None:
    for a in _pending(out, swarm):
        _resolved(out, swarm, a, approved=False, decision=None, source=source, request_id=None)


def control_line(a: Approval, decision: Any, approved: bool, control_id: str, now: float) -> dict[str, Any]:
    return {
        "type": "control", "control_id": control_id, "ts": now,
        "payload": {"kind": "approval_decision", "approval_id": a.approval_id, "call_id": a.call_id,
                    "approved": approved, "decision": decision, "rpc_id": a.rpc_id, "turn_id": a.turn_id},
    }


def expire(out: Out, swarm: Swarm, timeout: float) -> None:
    """Deny-and-abort approvals unanswered past approval_timeout_seconds; tell the node."""
    if not timeout:
        return
    for a in _pending(out, swarm):
        if out.now - a.created_at > timeout:
            offered = a.available_decisions or DEFAULT_DECISIONS
            decision = next((d for d in ("cancel", "abort", "decline", "denied") if d in offered), "cancel")
            _resolved(out, swarm, a, approved=False, decision=decision, source="timeout", request_id=None)
            out.effect(InboxLine(swarm.swarm_id, a.node_id, control_line(a, decision, False, out.ids(), out.now)))


def decide_approve(state: CoreState, inp: Approve, now: float, ids: Ids, out: Out) -> None:
    """approve_execution: an idempotent repeat is answered with an event; otherwise the control
    line is the effect, and the shell reports ApprovalDelivered once it is in the inbox.
    Raises Rejection for anything it cannot act on."""
    cmd = inp.cmd
    p = cmd.payload
    job_id, call_id, node_id = p.get("job_id"), p.get("call_id"), p.get("node_id")
    approved = p.get("approved")

    def bad(problem: str) -> Rejection:
        return Rejection("invalid_payload", problem, request_id=cmd.request_id, command=cmd.command)

    if not isinstance(job_id, str) or not job_id:
        raise bad("job_id: required")
    if not isinstance(call_id, str) or not call_id:
        raise bad("call_id: required")
    if not isinstance(approved, bool):
        raise bad("approved: must be a boolean")
    if node_id is not None and (isinstance(node_id, bool) or not isinstance(node_id, int)):
        raise bad("node_id: must be an integer")
    swarms = state.swarms
    swarm = next((s for s in swarms.values() if s.job_id == job_id), None)
    candidates = []
    if swarm is not None:
        candidates = [a for a in swarm.approvals.values()
                      if a.call_id == call_id and (node_id is None or a.node_id == node_id)]
    pending = [a for a in candidates if not a.resolved]
    if not pending:
        recent = [a for a in candidates if a.resolved and a.resolved_at is not None
                  and now - a.resolved_at <= IDEMPOTENT_WINDOW_SECONDS]
        if recent and swarm is not None:
            a = recent[-1]
            _resolved(out, swarm, a, approved=bool(a.approved), decision=a.decision, source="client",
                      request_id=cmd.request_id, idempotent=True)
            return
        raise Rejection(
            "unknown_approval", "unknown approval request", request_id=cmd.request_id, command=cmd.command,
            job_id=job_id, call_id=call_id, node_id=node_id,
            pending_candidates=[{"node_id": a.node_id, "call_id": a.call_id}
                                for s in swarms.values() for a in s.approvals.values() if not a.resolved][:20],
        )
    if len({a.node_id for a in pending}) > 1:
        raise Rejection("ambiguous_approval", "call_id pending on several nodes; give node_id",
                        request_id=cmd.request_id, command=cmd.command)
    a = pending[0]
    assert swarm is not None
    try:
        decision = resolve_decision(approved, p.get("decision"), a)
    except ValueError:
        raise bad("decision not offered") from None
    out.effect(InboxLine(swarm.swarm_id, a.node_id, control_line(a, decision, approved, ids(), now)))
    out.effect(ApprovalDelivered(swarm.swarm_id, a.approval_id, decision, approved, cmd.request_id))


def decide_delivered(state: CoreState, inp: ApprovalDelivered, now: float, ids: Ids, out: Out) -> None:
    swarm = state.swarms.get(inp.swarm_id)
    a = swarm.approvals.get(inp.approval_id) if swarm is not None else None
    if swarm is not None and a is not None:
        _resolved(out, swarm, a, approved=inp.approved, decision=inp.decision, source="client",
                  request_id=inp.request_id)


# ---------------------------------------------------------------- reducers


def _swarm(state: CoreState, event: Event) -> Swarm | None:
    sid = event.data.get("swarm_id")
    return state.swarms.get(sid) if isinstance(sid, str) else None


def reduce_required(state: CoreState, event: Event) -> None:
    swarm = _swarm(state, event)
    if swarm is None:
        return
    data = event.data
    aid = data["approval_id"]
    if aid in swarm.approvals:
        existing = swarm.approvals[aid]
        existing.available_decisions = list(data.get("available_decisions") or [])
        if existing.rpc_id is None and data.get("rpc_id") is not None:  # keep the id the worker can answer
            existing.rpc_id = data["rpc_id"]
        return
    swarm.approvals[aid] = Approval(
        approval_id=aid, node_id=data["node_id"], call_id=data["call_id"], injection_id=data.get("injection_id"),
        rpc_id=data.get("rpc_id"), turn_id=data.get("turn_id"), kind=data.get("kind") or "command",
        available_decisions=list(data.get("available_decisions") or []),
        proposed_execpolicy_amendment=data.get("proposed_execpolicy_amendment"), created_at=data["created_at"],
        command=data.get("command"), reason=data.get("reason"), cwd=data.get("cwd"),
    )


def reduce_resolved(state: CoreState, event: Event) -> None:
    swarm = _swarm(state, event)
    data = event.data
    if swarm is None or data.get("idempotent"):
        return
    a = swarm.approvals.get(data.get("approval_id") or "")
    if a is not None:
        a.resolved = True
        a.resolved_at = data["resolved_at"]
        a.decision = data.get("decision")
        a.approved = data.get("approved")
        a.resolve_request_id = data.get("request_id")
        resolved = [aid for aid, ap in swarm.approvals.items() if ap.resolved]
        for aid in resolved[: max(0, len(resolved) - KEEP_RESOLVED)]:  # bounded memory on long runs
            del swarm.approvals[aid]


FEATURE = Feature(
    name="approvals",
    deciders={Approve: decide_approve, ApprovalDelivered: decide_delivered},
    reducers={"exec_approval_required": reduce_required, "exec_approval_resolved": reduce_resolved},
)
