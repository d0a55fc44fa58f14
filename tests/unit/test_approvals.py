"""Approval decisions (PROTOCOL.md 4.4) and the approval bookkeeping of the core (5.5)."""

from __future__ import annotations

import pytest

from codeswarm.protocol import Command, Rejection
from codeswarm.core import approvals
from codeswarm.core.approvals import ApprovalDelivered, Approve, resolve_decision
from codeswarm.core.kernel import InboxLine
from codeswarm.core.records import Approval

APP = ["accept", "acceptForSession", "decline", "cancel"]
NATIVE = ["approved", "approved_for_session", "denied", "abort"]
APP_AMEND = APP + [{"acceptWithExecpolicyAmendment": {"execpolicy_amendment": ["git", "push"]}}]
NATIVE_AMEND = NATIVE + [{"approved_execpolicy_amendment": {"proposed_execpolicy_amendment": ["git", "push"]}}]
CLAUDE = ["accept", "cancel"]


def approval(offered, proposed=None) -> Approval:
    return Approval(approval_id="a1", node_id=0, call_id="c1", injection_id="i1", rpc_id=None, turn_id=None,
                    kind="command", available_decisions=offered, proposed_execpolicy_amendment=proposed,
                    created_at=0.0)


@pytest.mark.parametrize(
    "offered, approved, requested, expected",
    [
        # defaults without a decision
        (APP, True, None, "accept"),
        (APP, False, None, "decline"),
        (NATIVE, True, None, "approved"),
        (NATIVE, False, None, "denied"),
        (CLAUDE, False, None, "cancel"),
        (["abort", "approved"], False, None, "abort"),
        # exact values in the node's own dialect
        (APP, True, "acceptForSession", "acceptForSession"),
        (APP, False, "cancel", "cancel"),
        (NATIVE, True, "approved_for_session", "approved_for_session"),
        (NATIVE, False, "abort", "abort"),
        # translated across dialects, family by family
        (APP, True, "approved", "accept"),
        (APP, True, "approved_for_session", "acceptForSession"),
        (APP, False, "denied", "decline"),
        (APP, False, "abort", "cancel"),
        (NATIVE, True, "accept", "approved"),
        (NATIVE, True, "acceptForSession", "approved_for_session"),
        (NATIVE, False, "decline", "denied"),
        (NATIVE, False, "cancel", "abort"),
        # a decision contradicting `approved`: approved wins, with its default
        (APP, True, "decline", "accept"),
        (APP, False, "acceptForSession", "decline"),
        (NATIVE, False, "approved", "denied"),
        # not offered: approval falls back to approve-once, denial to any offered deny value
        (CLAUDE, True, "acceptForSession", "accept"),
        (APP, True, {"approved_execpolicy_amendment": {}}, "accept"),
        (CLAUDE, False, "decline", "cancel"),
        (["accept", "abort"], False, "denied", "abort"),
        # unknown strings are ignored
        (APP, True, "yes please", "accept"),
        (APP, False, "nope", "decline"),
        # nothing offered means the default app-server set
        ([], True, None, "accept"),
        ([], False, "cancel", "cancel"),
    ],
)
def test_resolve_decision_table(offered, approved, requested, expected):
    assert resolve_decision(approved, requested, approval(offered)) == expected


def test_amendment_native_to_app_keeps_the_rule():
    got = resolve_decision(True, {"approved_execpolicy_amendment": {"proposed_execpolicy_amendment": ["make"]}},
                           approval(APP_AMEND))
    assert got == {"acceptWithExecpolicyAmendment": {"execpolicy_amendment": ["make"]}}


def test_amendment_app_to_native_keeps_the_rule():
    got = resolve_decision(True, {"acceptWithExecpolicyAmendment": {"execpolicy_amendment": ["git", "push"]}},
                           approval(NATIVE_AMEND))
    assert got == {"approved_execpolicy_amendment": {"proposed_execpolicy_amendment": ["git", "push"]}}


@pytest.mark.parametrize("requested", [{"acceptWithExecpolicyAmendment": {}},
                                       {"approved_execpolicy_amendment": {}},
                                       {"acceptWithExecpolicyAmendment": None}])
def test_amendment_without_a_rule_takes_the_proposed_one(requested):
    got = resolve_decision(True, requested, approval(APP_AMEND, proposed=["npm", "test"]))
    assert got == {"acceptWithExecpolicyAmendment": {"execpolicy_amendment": ["npm", "test"]}}


def test_amendment_not_offered_falls_back_to_approve_once():
    got = resolve_decision(True, {"acceptWithExecpolicyAmendment": {"execpolicy_amendment": ["x"]}},
                           approval(NATIVE))
    assert got == "approved"


def test_amendment_with_a_denial_is_a_denial():
    assert resolve_decision(False, {"acceptWithExecpolicyAmendment": {}}, approval(APP_AMEND)) == "decline"


@pytest.mark.parametrize("offered, approved", [(["decline", "cancel"], True), (["denied"], True),
                                               (["accept"], False), (["approved_for_session"], False),
                                               (["acceptForSession"], True)])
def test_decision_not_offered(offered, approved):
    with pytest.raises(ValueError, match="decision not offered"):
        resolve_decision(approved, None, approval(offered))


# ---------------------------------------------------------------- the core's approval flow


def approve(call_id="c1", approved=True, job_id=None, rid="req-ap", **extra):
    payload = {"job_id": job_id, "call_id": call_id, "approved": approved, **extra}
    return Command("approve_execution", rid, payload)


def answer(h, cmd, now=None):
    """Decide approve_execution: (swarm, approval, decision, approved, control line) when a control
    line must reach the worker (then ApprovalDelivered is to be decided), None for a repeat."""
    d = h.decide(Approve(cmd), now)
    lines = [e for e in d.effects if isinstance(e, InboxLine)]
    then = [e for e in d.effects if isinstance(e, ApprovalDelivered)]
    if not then:
        assert lines == []
        return None
    [line], [delivered] = lines, then
    swarm = h.state.swarms[delivered.swarm_id]
    return swarm, swarm.approvals[delivered.approval_id], delivered.decision, delivered.approved, line, delivered


def with_pending(h, nodes=(0,), offered=None, call_id="c1"):
    swarm, _ = h.launch(nodes=max(nodes) + 1)
    h.start(swarm)
    iids = h.inject(swarm, list(nodes))
    for n in nodes:
        h.accept(swarm, n, iids[n])
        payload = {"call_id": call_id, "command": ["git", "push"], "cwd": "/w", "rpc_id": 17, "turn_id": "t-3"}
        if offered is not None:
            payload["available_decisions"] = offered
        h.runtime(swarm, n, iids[n], ("exec_approval_required", payload))
    return swarm, iids


def test_required_event_fields(h):
    swarm, iids = with_pending(h)
    [(name, data)] = [e for e in h.events() if e[0] == "exec_approval_required"]
    assert data["approval_id"] and data["call_id"] == "c1" and data["kind"] == "command"
    assert data["available_decisions"] == approvals.DEFAULT_DECISIONS
    assert data["injection_id"] == iids[0] and data["swarm_id"] == swarm.swarm_id
    a = swarm.approvals[data["approval_id"]]
    assert (a.rpc_id, a.turn_id, a.resolved) == (17, "t-3", False)


def test_a_repeated_request_is_not_announced_twice(h):
    swarm, iids = with_pending(h)
    h.runtime(swarm, 0, iids[0], ("exec_approval_required", {"call_id": "c1", "command": ["git", "push"]}))
    assert h.names().count("exec_approval_required") == 1
    # ... unless it offers new decisions, which are merged into the same approval.
    h.runtime(swarm, 0, iids[0], ("exec_approval_required",
                                  {"call_id": "c1", "command": ["git", "push"],
                                   "available_decisions": ["accept", "approved_for_session"]}))
    req = [d for n, d in h.events() if n == "exec_approval_required"]
    assert len(req) == 2 and req[0]["approval_id"] == req[1]["approval_id"] and len(swarm.approvals) == 1
    assert "approved_for_session" in next(iter(swarm.approvals.values())).available_decisions


def test_answer_then_idempotent_repeat_within_180_s(h):
    swarm, _ = with_pending(h)
    mark = h.mark()
    found = answer(h, approve(job_id=swarm.job_id))
    assert found is not None
    sw, a, decision, approved, act, delivered = found
    assert sw is swarm and decision == "accept" and approved is True
    assert h.names(after=mark) == []  # nothing is resolved before the line is in the inbox
    line = act.line
    assert act.node_id == 0 and act.swarm_id == swarm.swarm_id
    assert line["type"] == "control" and line["payload"]["rpc_id"] == 17 and line["payload"]["decision"] == "accept"
    h.decide(delivered)
    resolved = h.events()[-1]
    assert resolved[0] == "exec_approval_resolved"
    assert resolved[1]["request_id"] == "req-ap" and resolved[1]["source"] == "client"
    assert "idempotent" not in resolved[1] and a.resolved

    mark = h.mark()
    again = answer(h, approve(job_id=swarm.job_id, rid="req-again"), h.now + 180)
    assert again is None  # nothing goes to the worker
    [(name, data)] = h.events(after=mark)
    assert name == "exec_approval_resolved" and data["idempotent"] is True
    assert data["request_id"] == "req-again" and data["decision"] == "accept" and data["approved"] is True
    assert a.resolve_request_id == "req-ap"  # the repeat does not rewrite the resolution

    with pytest.raises(Rejection) as info:
        answer(h, approve(job_id=swarm.job_id, rid="req-late"), h.now + 181)
    assert info.value.code == "unknown_approval"


def test_unknown_approval_carries_context(h):
    swarm, _ = with_pending(h)
    with pytest.raises(Rejection) as info:
        answer(h, approve(call_id="nope", job_id=swarm.job_id, node_id=0), h.now)
    rej = info.value
    assert rej.code == "unknown_approval" and rej.reason == "unknown approval request"
    assert rej.request_id == "req-ap" and rej.command == "approve_execution"
    data = rej.data()
    assert (data["job_id"], data["call_id"], data["node_id"]) == (swarm.job_id, "nope", 0)
    assert data["pending_candidates"] == [{"node_id": 0, "call_id": "c1"}]


def test_unknown_job_is_unknown_approval(h):
    with_pending(h)
    with pytest.raises(Rejection) as info:
        answer(h, approve(job_id="no-such-job"), h.now)
    assert info.value.code == "unknown_approval"


def test_same_call_id_on_two_nodes_is_ambiguous_until_node_id_is_given(h):
    swarm, _ = with_pending(h, nodes=(0, 1))
    with pytest.raises(Rejection) as info:
        answer(h, approve(job_id=swarm.job_id), h.now)
    assert info.value.code == "ambiguous_approval" and info.value.request_id == "req-ap"
    _, a, decision, *_ = answer(h, approve(job_id=swarm.job_id, node_id=1), h.now)
    assert a.node_id == 1 and decision == "accept"


@pytest.mark.parametrize(
    "payload, field",
    [({"call_id": "c1", "approved": True}, "job_id"),
     ({"job_id": "J", "approved": True}, "call_id"),
     ({"job_id": "J", "call_id": "c1"}, "approved"),
     ({"job_id": "J", "call_id": "c1", "approved": "yes"}, "approved"),
     ({"job_id": "J", "call_id": "c1", "approved": True, "node_id": "0"}, "node_id"),
     ({"job_id": "J", "call_id": "c1", "approved": True, "node_id": True}, "node_id")],
)
def test_answer_payload_validation(h, payload, field):
    swarm, _ = with_pending(h)
    payload = {k: (swarm.job_id if v == "J" else v) for k, v in payload.items()}
    with pytest.raises(Rejection) as info:
        answer(h, Command("approve_execution", "r", payload), h.now)
    assert info.value.code == "invalid_payload" and info.value.reason.startswith(field)


def test_answer_with_a_decision_the_node_did_not_offer(h):
    swarm, _ = with_pending(h, offered=["decline"])
    with pytest.raises(Rejection) as info:
        answer(h, approve(job_id=swarm.job_id, approved=True), h.now)
    assert info.value.code == "invalid_payload" and "decision not offered" in info.value.reason
    assert not next(iter(swarm.approvals.values())).resolved  # a rejected command has no effect


def test_runtime_command_start_resolves_the_approval(h):
    swarm, iids = with_pending(h)
    h.runtime(swarm, 0, iids[0], ("command_started", {"call_id": "c1", "command": ["git", "push"], "cwd": "/w"}))
    resolved = [d for n, d in h.events() if n == "exec_approval_resolved"]
    assert len(resolved) == 1 and resolved[0]["source"] == "runtime" and resolved[0]["request_id"] is None
    assert h.names()[-2:] == ["exec_approval_resolved", "command_started"]


def test_turn_complete_makes_open_approvals_moot(h):
    swarm, iids = with_pending(h)
    h.runtime(swarm, 0, iids[0], ("turn_complete", {}))
    assert h.names()[-2:] == ["exec_approval_resolved", "turn_complete"]
    moot = h.events()[-2][1]
    assert moot["source"] == "turn_complete" and moot["decision"] is None and moot["approved"] is False


def test_termination_resolves_open_approvals_before_swarm_terminated(h):
    swarm, _ = with_pending(h, nodes=(0, 1))
    h.terminated(swarm, "requested", None)
    names = h.names()
    assert names[-1] == "swarm_terminated"
    assert names.count("exec_approval_resolved") == 2
    assert all(a.resolved for a in swarm.approvals.values())


def test_unanswered_approval_times_out_with_a_deny_and_abort(make_harness):
    h = make_harness(approval_timeout_seconds=100, inject_timeout_seconds=10**6,
                     worker_heartbeat_timeout_seconds=10**6)
    swarm, _ = with_pending(h)
    assert h.at(h.now + 100).tick().effects == []
    [act] = h.at(h.now + 1).tick().effects
    assert act.node_id == 0 and act.line["payload"]["decision"] == "cancel"
    assert act.line["payload"]["approved"] is False
    resolved = h.events()[-1][1]
    assert resolved["source"] == "timeout" and resolved["decision"] == "cancel"
    assert h.at(h.now + 1000).tick().effects == []


def test_approval_timeout_zero_disables_it(make_harness):
    h = make_harness(approval_timeout_seconds=0, inject_timeout_seconds=10**6,
                     worker_heartbeat_timeout_seconds=10**6)
    swarm, _ = with_pending(h)
    assert h.at(h.now + 10**6).tick().effects == [] and not next(iter(swarm.approvals.values())).resolved
