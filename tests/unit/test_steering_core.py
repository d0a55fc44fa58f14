"""The core side of the page's steering commands (issue 16): queue_cancel, the approvals view
behind approvals_list, and the launch record carried by swarm_launched."""

from __future__ import annotations

from typing import Any

import pytest

from codeswarm.core.approvals import ApprovalDelivered, Approve
from codeswarm.core.queue import Enqueue, QueueCancel, parse_cancel
from codeswarm.core.views import list_record, open_approvals
from codeswarm.errors import Rejection
from codeswarm.protocol import Command
from tests.harness import T0, Harness


def busy_swarm(h: Harness) -> Any:
    swarm, _ = h.launch(nodes=1)
    h.start(swarm)
    h.inject(swarm, [0])  # node 0 works: idle items wait
    return swarm


def test_cancel_removes_only_that_item_and_replays(h: Harness) -> None:
    swarm = busy_swarm(h)
    h.decide(Enqueue(swarm.swarm_id, "rq-a", "src", "idle", None, "a"))
    h.decide(Enqueue(swarm.swarm_id, "rq-b", None, "idle", None, "b"))
    first, second = (i["queue_id"] for i in swarm.queue)
    inp = parse_cancel(Command("queue_cancel", "rq-c", {"queue_id": first}), h.state)
    mark = h.mark()
    h.decide(inp)
    assert h.names(after=mark) == ["inter_swarm_dropped", "queue_updated"]
    dropped = h.events(after=mark)[0][1]
    assert dropped == {"queue_id": first, "request_id": "rq-a", "source_swarm_id": "src",
                       "target_swarm_id": swarm.swarm_id, "selector": "idle", "reason": "cancelled",
                       "cancel_request_id": "rq-c"}
    assert [i["queue_id"] for i in h.events(after=mark)[1][1]["items"]] == [second]
    assert [i["queue_id"] for i in swarm.queue] == [second]
    assert [i["queue_id"] for i in h.replayed().swarms[swarm.swarm_id].queue] == [second]
    # Once gone, the same id is refused before anything is decided.
    with pytest.raises(Rejection) as exc:
        parse_cancel(Command("queue_cancel", "rq-d", {"queue_id": first}), h.state)
    assert exc.value.code == "unknown_queue_item" and exc.value.extra == {"queue_id": first}
    # A cancel decided for an item that went meanwhile (raced by a dispatch) changes nothing.
    mark = h.mark()
    h.decide(QueueCancel(first, "rq-e"))
    assert h.names(after=mark) == []


@pytest.mark.parametrize("payload", [{}, {"queue_id": 5}, {"queue_id": ""}])
def test_cancel_needs_a_queue_id(h: Harness, payload: dict[str, Any]) -> None:
    with pytest.raises(Rejection) as exc:
        parse_cancel(Command("queue_cancel", "r", payload), h.state)
    assert exc.value.code == "invalid_payload"


def test_open_approvals_lists_what_waits_oldest_first_with_its_command(h: Harness) -> None:
    swarm, _ = h.launch(nodes=2)
    other, _ = h.launch(nodes=1)
    h.start(swarm)
    h.start(other)
    for s, n, call, at in ((swarm, 1, "c-late", T0 + 5), (swarm, 0, "c-early", T0 + 1), (other, 0, "c-other", T0 + 3)):
        iid = h.inject(s, [n])[n]
        h.accept(s, n, iid)
        h.at(at).runtime(s, n, iid, ("exec_approval_required", {
            "call_id": call, "command": ["git", "push"], "reason": "network", "cwd": "/w"}))
    listed = open_approvals(h.state.swarms)
    assert [a["call_id"] for a in listed] == ["c-early", "c-other", "c-late"]
    first = listed[0]
    assert first["swarm_id"] == swarm.swarm_id and first["node_id"] == 0 and first["job_id"] == swarm.job_id
    assert first["command"] == ["git", "push"] and first["reason"] == "network" and first["cwd"] == "/w"
    assert first["kind"] == "command" and first["available_decisions"] and first["created_at"] == T0 + 1
    assert [a["call_id"] for a in open_approvals(h.state.swarms, other.swarm_id)] == ["c-other"]
    assert open_approvals(h.state.swarms, "no-such-swarm") == []
    # Answered approvals leave the list; the fields survive a replay.
    d = h.decide(Approve(Command("approve_execution", "ap", {"job_id": swarm.job_id, "call_id": "c-early",
                                                             "node_id": 0, "approved": True})))
    for then in d.effects:  # the shell decides ApprovalDelivered once the control line is written
        if isinstance(then, ApprovalDelivered):
            h.decide(then)
    assert "c-early" not in [a["call_id"] for a in open_approvals(h.state.swarms)]
    assert open_approvals(h.replayed().swarms) == open_approvals(h.state.swarms)


def test_swarm_launched_carries_created_at_alias_and_auto_route(h: Harness) -> None:
    swarm, _ = h.at(T0 + 42).launch(nodes=1, swarm_alias="reviewers", auto_route=True)
    [(_, data)] = [e for e in h.events() if e[0] == "swarm_launched"]
    assert data["created_at"] == T0 + 42 == swarm.created_at
    assert data["alias"] == "reviewers" and data["auto_route"] is True
    rec = list_record(swarm)
    assert rec["auto_route"] is True and rec["alias"] == "reviewers" and rec["created_at"] == T0 + 42
    plain, _ = h.launch(nodes=1)
    assert list_record(plain)["auto_route"] is False and "alias" not in list_record(plain)
