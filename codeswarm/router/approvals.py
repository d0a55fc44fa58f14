"""Approval bookkeeping and decision translation (PROTOCOL.md 4.4 and 5.5). Pure."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from codeswarm.protocol import Rejection
from codeswarm.router.model import Approval, Injection, Swarm

if TYPE_CHECKING:
    from codeswarm.router.core import RouterCore

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


# ---------------------------------------------------------------- events


def required(core: "RouterCore", swarm: Swarm, inj: Injection, data: dict[str, Any], now: float) -> None:
    call_id = str(data.get("call_id") or "")
    existing = next(
        (a for a in swarm.approvals.values() if a.node_id == inj.node_id and a.call_id == call_id and not a.resolved),
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
        from codeswarm.router.core import new_id

        approval_id = new_id()
    core.emit(
        "exec_approval_required",
        {
            **data,
            "approval_id": approval_id,
            "call_id": call_id,
            "kind": data.get("kind") or "command",
            "available_decisions": offered,
            "proposed_execpolicy_amendment": data.get("proposed_execpolicy_amendment"),
            "created_at": now,
        },
    )


def apply_required(core: "RouterCore", swarm: Swarm, data: dict[str, Any], now: float) -> None:
    aid = data["approval_id"]
    if aid in swarm.approvals:
        existing = swarm.approvals[aid]
        existing.available_decisions = list(data.get("available_decisions") or [])
        if existing.rpc_id is None and data.get("rpc_id") is not None:  # keep the id the worker can answer
            existing.rpc_id = data["rpc_id"]
        return
    swarm.approvals[aid] = Approval(
        approval_id=aid,
        node_id=data["node_id"],
        call_id=data["call_id"],
        injection_id=data.get("injection_id"),
        rpc_id=data.get("rpc_id"),
        turn_id=data.get("turn_id"),
        kind=data.get("kind") or "command",
        available_decisions=list(data.get("available_decisions") or []),
        proposed_execpolicy_amendment=data.get("proposed_execpolicy_amendment"),
        created_at=data.get("created_at", now),
    )


def apply_resolved(core: "RouterCore", swarm: Swarm, data: dict[str, Any], now: float) -> None:
    if data.get("idempotent"):
        return
    a = swarm.approvals.get(data.get("approval_id") or "")
    if a is not None:
        a.resolved = True
        a.resolved_at = data.get("resolved_at", now)
        a.decision = data.get("decision")
        a.approved = data.get("approved")
        a.resolve_request_id = data.get("request_id")
        resolved = [aid for aid, ap in swarm.approvals.items() if ap.resolved]
        for aid in resolved[: max(0, len(resolved) - KEEP_RESOLVED)]:  # bounded memory on long runs
            del swarm.approvals[aid]


def _resolved(core: "RouterCore", swarm: Swarm, a: Approval, *, approved: bool, decision: Any, source: str,
              request_id: str | None, now: float, idempotent: bool = False) -> None:
    data = {
        "request_id": request_id,
        "approval_id": a.approval_id,
        "swarm_id": swarm.swarm_id,
        "job_id": swarm.job_id,
        "node_id": a.node_id,
        "injection_id": a.injection_id,
        "call_id": a.call_id,
        "approved": approved,
        "decision": decision,
        "source": source,
        "resolved_at": now,
    }
    if idempotent:
        data["idempotent"] = True
    core.emit("exec_approval_resolved", data)


def resolve_by_runtime(core: "RouterCore", swarm: Swarm, node_id: int, call_id: Any, now: float) -> None:
    for a in swarm.approvals.values():
        if not a.resolved and a.node_id == node_id and a.call_id == call_id:
            _resolved(core, swarm, a, approved=True, decision=None, source="runtime", request_id=None, now=now)


def resolve_for_injection(core: "RouterCore", swarm: Swarm, injection_id: str, source: str, now: float) -> None:
    for a in list(swarm.approvals.values()):
        if not a.resolved and a.injection_id == injection_id:
            _resolved(core, swarm, a, approved=False, decision=None, source=source, request_id=None, now=now)


def resolve_all(core: "RouterCore", swarm: Swarm, source: str, now: float) -> None:
    for a in list(swarm.approvals.values()):
        if not a.resolved:
            _resolved(core, swarm, a, approved=False, decision=None, source=source, request_id=None, now=now)


def control_line(a: Approval, decision: Any, approved: bool, control_id: str, now: float) -> dict[str, Any]:
    return {
        "type": "control",
        "control_id": control_id,
        "ts": now,
        "payload": {
            "kind": "approval_decision",
            "approval_id": a.approval_id,
            "call_id": a.call_id,
            "approved": approved,
            "decision": decision,
            "rpc_id": a.rpc_id,
            "turn_id": a.turn_id,
        },
    }


def expire(core: "RouterCore", swarm: Swarm, now: float) -> list[tuple[Approval, Any]]:
    """Deny-and-abort approvals unanswered past approval_timeout_seconds; returns (approval, decision)."""
    timeout = core.settings.approval_timeout_seconds
    out = []
    if not timeout:
        return out
    for a in list(swarm.approvals.values()):
        if not a.resolved and now - a.created_at > timeout:
            offered = a.available_decisions or DEFAULT_DECISIONS
            decision = next((d for d in ("cancel", "abort", "decline", "denied") if d in offered), "cancel")
            _resolved(core, swarm, a, approved=False, decision=decision, source="timeout", request_id=None, now=now)
            out.append((a, decision))
    return out


def answer(core: "RouterCore", swarms: dict[str, Swarm], cmd: Any, now: float) -> tuple[Swarm, Approval, Any, bool] | None:
    """Handle approve_execution: find the approval and resolve the decision.

    Returns (swarm, approval, decision, approved) when a control line must reach the worker (the
    caller appends it, then calls client_resolved), None for an idempotent repeat. Raises Rejection.
    """
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
            _resolved(core, swarm, a, approved=bool(a.approved), decision=a.decision, source="client",
                      request_id=cmd.request_id, now=now, idempotent=True)
            return None
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
    return swarm, a, decision, approved


def client_resolved(core: "RouterCore", swarm: Swarm, a: Approval, decision: Any, approved: bool,
                    request_id: str, now: float) -> None:
    """Emit the resolution of approve_execution, after its control line reached the inbox."""
    _resolved(core, swarm, a, approved=approved, decision=decision, source="client", request_id=request_id, now=now)
