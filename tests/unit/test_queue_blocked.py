"""PROTOCOL.md 4.3 / 5.6 `inter_swarm_blocked` (core/queue.py requeue_blocked): an idle item whose
inbox line cannot be written goes back to the head of its queue, its acked injection ends once
(`inject_failed` `requeued`), and the node gets no queue item until its next transition."""

from __future__ import annotations

from typing import Any

from codeswarm.core.kernel import InboxLine
from codeswarm.core.lifecycle import AnnounceTerminating, InboxWriteFailed
from codeswarm.core.nodeloss import RedeliverAcked
from codeswarm.core.queue import DispatchIdle, Enqueue
from codeswarm.core.records import CoreState
from tests.harness import Harness


def running(h: Harness, nodes: int) -> Any:
    swarm, _ = h.launch(nodes=nodes)
    h.start(swarm)
    return swarm


def enqueue(h: Harness, swarm: Any, content: str, request_id: str = "rq") -> list[InboxLine]:
    d = h.decide(Enqueue(swarm.swarm_id, request_id, "src-swarm", "idle", None, content))
    return [e for e in d.effects if isinstance(e, InboxLine)]


def lines(d: Any) -> list[tuple[int, str]]:
    return [(e.node_id, e.line["content"]) for e in d.effects if isinstance(e, InboxLine)]


def ends(h: Harness, iid: str) -> list[str]:
    return [n for n, d in h.events(injection_id=iid) if n in ("inject_delivered", "inject_failed")]


def fail_write(h: Harness, swarm: Any, line: InboxLine) -> Any:
    return h.decide(InboxWriteFailed(swarm.swarm_id, line.line["injection_id"], "[Errno 21] Is a directory"))


def test_an_unwritable_inbox_puts_the_item_back_at_the_head_and_ends_its_injection_once(h: Harness) -> None:
    swarm = running(h, nodes=1)
    [line] = enqueue(h, swarm, "first")
    enqueue(h, swarm, "second")  # waits behind it
    iid = line.line["injection_id"]
    mark = h.mark()
    d = fail_write(h, swarm, line)
    assert d.effects == []
    assert h.names(after=mark) == ["inter_swarm_blocked", "inject_failed", "queue_updated"]
    blocked = h.events(after=mark)[0][1]
    assert blocked["node_id"] == 0 and blocked["injection_id"] == iid and blocked["request_id"] == "rq"
    assert blocked["source_swarm_id"] == "src-swarm" and blocked["content"] == "first"
    assert "Is a directory" in blocked["reason"]
    failed = h.events(after=mark)[1][1]
    assert failed["reason"] == "requeued" and blocked["queue_id"] in failed["error"]
    assert [i["content"] for i in swarm.queue] == ["first", "second"]
    assert swarm.queue[0]["queue_id"] == blocked["queue_id"]
    assert swarm.queue[0]["blocked"] == {"node_id": 0, "reason": blocked["reason"]}
    assert h.events(after=mark)[2][1]["items"][0]["blocked"]["node_id"] == 0
    assert ends(h, iid) == ["inject_failed"]
    assert swarm.queue_inflight == {}
    # a second report of the same failure (the injection is no longer acked) changes nothing
    mark = h.mark()
    fail_write(h, swarm, line)
    assert h.names(after=mark) == []


def test_no_retry_until_the_node_has_a_transition_then_the_head_item_goes_to_it(h: Harness) -> None:
    swarm = running(h, nodes=1)
    [line] = enqueue(h, swarm, "work")
    fail_write(h, swarm, line)
    qid = swarm.queue[0]["queue_id"]
    # idle and still unwritable: every dispatch attempt (enqueue, idle triggers) decides nothing
    for _ in range(3):
        mark = h.mark()
        assert lines(h.decide(DispatchIdle(swarm.swarm_id))) == []
        assert h.names(after=mark) == []
    assert enqueue(h, swarm, "later") == []
    # the inbox works again; a direct prompt runs a turn on node 0: its next idle transition
    direct = h.inject(swarm, [0], "direct")[0]
    h.turn(swarm, 0, direct)
    mark = h.mark()
    d = h.decide(DispatchIdle(swarm.swarm_id))
    assert lines(d) == [(0, "work")]
    assert [i["content"] for i in swarm.queue] == ["later"]
    dispatched = h.events(after=mark)[0][1]
    assert h.names(after=mark)[:2] == ["inter_swarm_dispatched", "inject_ack"]
    assert dispatched["queue_id"] == qid and dispatched["request_id"] == "rq" and dispatched["node_id"] == 0
    new_iid = dispatched["injection_id"]
    assert new_iid != line.line["injection_id"]
    h.accept(swarm, 0, new_iid)
    assert ends(h, new_iid) == ["inject_delivered"] and ends(h, line.line["injection_id"]) == ["inject_failed"]
    assert h.replayed().swarms[swarm.swarm_id].queue == swarm.queue


def test_another_idle_node_takes_the_blocked_item_at_once(h: Harness) -> None:
    swarm = running(h, nodes=2)
    h.inject(swarm, [1])  # node 1 busy: the item goes to node 0
    [line] = enqueue(h, swarm, "work")
    assert line.node_id == 0
    fail_write(h, swarm, line)
    assert lines(h.decide(DispatchIdle(swarm.swarm_id))) == []  # node 1 still busy, node 0 blocked
    iid1 = next(i.injection_id for i in swarm.injections.values() if i.node_id == 1)
    h.turn(swarm, 1, iid1)
    assert lines(h.decide(DispatchIdle(swarm.swarm_id))) == [(1, "work")]
    assert swarm.queue == []


def test_items_blocked_in_one_round_keep_their_order_whichever_failure_comes_first(h: Harness) -> None:
    swarm = running(h, nodes=2)
    [a] = enqueue(h, swarm, "a")
    h.at(h.now + 1)
    [b] = enqueue(h, swarm, "b")
    h.at(h.now + 1)
    enqueue(h, swarm, "c")
    fail_write(h, swarm, b)
    fail_write(h, swarm, a)
    assert [i["content"] for i in swarm.queue] == ["a", "b", "c"]
    assert [i["content"] for i in h.replayed().swarms[swarm.swarm_id].queue] == ["a", "b", "c"]


def test_the_blocked_item_and_block_survive_a_restart(h: Harness) -> None:
    swarm = running(h, nodes=1)
    [line] = enqueue(h, swarm, "work")
    fail_write(h, swarm, line)
    restarted = Harness()
    restarted.state = h.replayed()
    restarted.seq, restarted.now = h.seq, h.now
    sw = restarted.state.swarms[swarm.swarm_id]
    assert [i["content"] for i in sw.queue] == ["work"] and sw.nodes[0].inbox_blocked == swarm.nodes[0].inbox_blocked
    assert restarted.decide(RedeliverAcked()).effects == []  # the failed injection is not re-sent
    assert lines(restarted.decide(DispatchIdle(swarm.swarm_id))) == []  # still no transition on node 0


def test_a_crash_between_the_blocked_and_failed_lines_ends_the_injection_at_restart(h: Harness) -> None:
    """kill -9 / power loss after inter_swarm_blocked reached the log but not inject_failed: the item
    is queued and the injection still acked; RedeliverAcked must not send it too (a duplicate)."""
    swarm = running(h, nodes=1)
    [line] = enqueue(h, swarm, "work")
    fail_write(h, swarm, line)
    cut = next(i for i, (_s, name, _d, _t) in enumerate(h.log) if name == "inter_swarm_blocked") + 1
    restarted = Harness()
    restarted.log = h.log[:cut]
    restarted.state = restarted.replayed()
    restarted.seq, restarted.now = cut, h.now
    iid = line.line["injection_id"]
    assert restarted.state.swarms[swarm.swarm_id].injections[iid].state == "acked"
    d = restarted.decide(RedeliverAcked())
    assert d.effects == []
    assert restarted.names(after=cut) == ["inject_failed"]
    assert restarted.events(after=cut)[0][1]["reason"] == "requeued"
    assert [i["content"] for i in restarted.state.swarms[swarm.swarm_id].queue] == ["work"]


def test_a_crash_before_the_inbox_write_blocks_the_item_when_the_resend_fails(h: Harness) -> None:
    """kill -9 after the dispatch was logged, before the inbox write: the restart re-sends the line
    (RedeliverAcked); when that write fails, the item is put back as if it had failed the first time."""
    swarm = running(h, nodes=1)
    [line] = enqueue(h, swarm, "work")
    restarted = Harness()
    restarted.log = list(h.log)
    restarted.state, restarted.seq, restarted.now = restarted.replayed(), h.seq, h.now
    sw = restarted.state.swarms[swarm.swarm_id]
    [resent] = restarted.decide(RedeliverAcked()).effects
    assert resent.line["injection_id"] == line.line["injection_id"]
    mark = restarted.mark()
    fail_write(restarted, sw, resent)
    assert restarted.names(after=mark) == ["inter_swarm_blocked", "inject_failed", "queue_updated"]
    assert [i["content"] for i in sw.queue] == ["work"]


def test_a_blocked_item_is_dropped_when_its_target_terminates(h: Harness) -> None:
    swarm = running(h, nodes=1)
    [line] = enqueue(h, swarm, "work")
    fail_write(h, swarm, line)
    mark = h.mark()
    h.terminated(swarm)
    dropped = [d for n, d in h.events(after=mark) if n == "inter_swarm_dropped"]
    assert len(dropped) == 1 and dropped[0]["reason"] == "target terminated"
    assert swarm.queue == [] and ends(h, line.line["injection_id"]) == ["inject_failed"]


def test_a_write_failure_while_the_swarm_terminates_fails_the_prompt_as_before(h: Harness) -> None:
    swarm = running(h, nodes=1)
    [line] = enqueue(h, swarm, "work")
    h.decide(AnnounceTerminating(swarm.swarm_id, "rt"))
    mark = h.mark()
    fail_write(h, swarm, line)
    assert h.names(after=mark) == ["inject_failed"]
    assert h.events(after=mark)[0][1]["reason"] == "node_not_running"


def test_a_direct_prompts_write_failure_is_not_a_queue_block(h: Harness) -> None:
    swarm = running(h, nodes=1)
    [line] = h.inject_lines(swarm, [0], "direct")
    mark = h.mark()
    fail_write(h, swarm, line)
    assert h.names(after=mark) == ["inject_failed"]
    assert swarm.nodes[0].inbox_blocked is None


def test_inflight_items_stay_bounded(h: Harness) -> None:
    swarm = running(h, nodes=2)
    for i in range(20):
        for line in enqueue(h, swarm, f"w{i}"):
            h.turn(swarm, line.node_id, line.line["injection_id"])
        h.decide(DispatchIdle(swarm.swarm_id))
    assert len(swarm.queue_inflight) <= swarm.node_count + 1
    fresh: CoreState = h.replayed()
    assert fresh.swarms[swarm.swarm_id].queue_inflight == swarm.queue_inflight
