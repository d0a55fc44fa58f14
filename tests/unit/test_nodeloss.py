"""The core's side of issue 12 #2, #5, #7 and #9, pure: decide + reduce through the harness."""

from __future__ import annotations

import pytest

from codeswarm.config import validate_params
from codeswarm.core.evidence import JobObservation, JobState
from codeswarm.core.kernel import Event, InboxLine
from codeswarm.core.nodeloss import NodeGone, NodeRespawned, NodeRespawnFailed, RedeliverAcked, RestartNode
from codeswarm.core.queue import SNAPSHOT_MAX_ITEMS, Enqueue, parse_enqueue
from codeswarm.core.states import IllegalTransition
from codeswarm.core.turns import LifecycleLine, OutboxSeqAnomaly
from codeswarm.protocol import Command, Rejection
from tests.harness import Harness


def running(h: Harness, nodes: int = 3, **params: object):
    swarm, _ = h.launch(nodes, **params)
    h.start(swarm)
    return swarm


def test_a_gone_worker_is_lost_its_prompts_end_at_once_and_new_ones_fail(h: Harness) -> None:
    swarm = running(h)
    first = h.inject(swarm, [1])[1]
    h.accept(swarm, 1, first)
    h.runtime(swarm, 1, first, ("turn_started", {"turn_id": "t1"}))
    queued = h.inject(swarm, [1])[1]  # acked, not yet accepted
    mark = h.mark()
    decision = h.decide(NodeGone(swarm.swarm_id, 1, "worker pid 42 is gone"))
    assert decision.effects == []  # no restart policy
    names = h.names(after=mark)
    assert names.count("inject_failed") == 1 and names.count("turn_complete") == 1
    assert names[-1] == "node_status"
    failed = dict(h.events(after=mark, injection_id=queued))["inject_failed"]
    assert failed["reason"] == "node_lost" and "pid 42" in failed["error"]
    aborted = dict(h.events(after=mark, injection_id=first))
    assert aborted["agent_error"]["error_code"] == "worker_lost"
    assert aborted["turn_complete"]["aborted"] is True
    assert swarm.nodes[1].worker == "lost" and [n.worker for n in swarm.nodes] == ["running", "lost", "running"]
    # a new prompt to it fails in the same decision; the others are delivered
    mark = h.mark()
    lines = h.inject_lines(swarm, [0, 1, 2])
    assert sorted(line.node_id for line in lines) == [0, 2]
    assert [d["reason"] for n, d in h.events(after=mark) if n == "inject_failed"] == ["node_lost"]
    # a second report of the same death changes nothing
    mark = h.mark()
    h.decide(NodeGone(swarm.swarm_id, 1, "again"))
    assert h.names(after=mark) == []
    assert h.replayed().swarms[swarm.swarm_id].nodes[1].worker == "lost"


def test_exited_or_terminated_nodes_are_not_lost(h: Harness) -> None:
    swarm = running(h, 2)
    h.exit(swarm, 0, reason="shutdown", exit_code=0)
    mark = h.mark()
    h.decide(NodeGone(swarm.swarm_id, 0, "gone"))
    assert h.names(after=mark) == []
    h.terminated(swarm)
    h.decide(NodeGone(swarm.swarm_id, 1, "gone"))
    assert swarm.nodes[1].worker != "lost"


def test_restart_policy_backs_off_is_bounded_and_the_node_comes_back(h: Harness) -> None:
    swarm = running(h, 2, restart="on-failure", restart_max=2, restart_backoff_seconds=0.5)
    delays = []
    for attempt in (1, 2):
        decision = h.decide(NodeGone(swarm.swarm_id, 1, "killed"))
        [effect] = decision.effects
        assert isinstance(effect, RestartNode) and effect.attempt == attempt and effect.node_id == 1
        delays.append(effect.delay)
        mark = h.mark()
        h.decide(NodeRespawned(swarm.swarm_id, 1, attempt, {"procs": [{"pid": 1}, {"pid": 100 + attempt}]}))
        [(name, data)] = h.events(after=mark)
        assert name == "node_restarted" and data["restart_count"] == attempt
        assert swarm.job["extra"]["procs"][1]["pid"] == 100 + attempt
        assert swarm.nodes[1].worker == "lost"  # until the new worker says worker_started
        h.start(swarm, 1)
        assert swarm.nodes[1].worker == "running"
    assert delays == [0.5, 1.0]
    mark = h.mark()
    decision = h.decide(NodeGone(swarm.swarm_id, 1, "killed"))
    assert decision.effects == []
    assert any(d.get("error_code") == "node_restart_limit" for n, d in h.events(after=mark))
    replayed = h.replayed().swarms[swarm.swarm_id]
    assert replayed.nodes[1].restart_count == 2 and replayed.job["extra"]["procs"][1]["pid"] == 102


def test_a_failed_respawn_is_reported_and_a_late_respawn_is_ignored(h: Harness) -> None:
    swarm = running(h, 1, restart="on-failure")
    h.decide(NodeGone(swarm.swarm_id, 0, "killed"))
    mark = h.mark()
    h.decide(NodeRespawnFailed(swarm.swarm_id, 0, 1, "no such file"))
    [(name, data)] = h.events(after=mark)
    assert data["error_code"] == "node_restart_failed" and "no such file" in data["message"]
    h.start(swarm, 0)  # came back some other way
    mark = h.mark()
    h.decide(NodeRespawned(swarm.swarm_id, 0, 1, {}))
    assert h.names(after=mark) == []


def test_local_job_end_is_not_final_while_a_lost_node_may_restart(h: Harness) -> None:
    swarm = running(h, 1, restart="on-failure", restart_max=1)
    h.decide(NodeGone(swarm.swarm_id, 0, "killed"))
    ended = JobObservation(JobState.ENDED, "COMPLETED", reason="workers_exited")
    h.observe(swarm, ended)
    assert swarm.state == "running"
    h.decide(NodeRespawned(swarm.swarm_id, 0, 1, {}))
    h.start(swarm, 0)
    h.decide(NodeGone(swarm.swarm_id, 0, "killed again"))  # limit reached: the job end is final
    h.observe(swarm, ended)
    assert swarm.state == "terminated"


def test_a_job_end_seen_before_the_node_loss_waits_for_the_restart(h: Harness) -> None:
    """The race of a one-node local swarm: the job check (every 1 s) sees every worker process gone
    before the node watch (every 0.5 s) named the dead node lost. With a restart policy that is not
    the job's end: the node watch makes it lost and restarts it. Without one, or past the limit,
    or when the worker exited cleanly (its outbox is drained before), the job has ended."""
    ended = JobObservation(JobState.ENDED, "COMPLETED", reason="workers_exited")
    swarm = running(h, 1, restart="on-failure", restart_max=1)
    h.observe(swarm, ended)  # SIGKILLed; not yet seen lost
    assert swarm.state == "running"
    [effect] = h.decide(NodeGone(swarm.swarm_id, 0, "worker pid 9 is gone")).effects
    assert isinstance(effect, RestartNode)
    h.decide(NodeRespawned(swarm.swarm_id, 0, 1, {}))
    h.start(swarm, 0)
    h.observe(swarm, ended)  # killed again, restart_max reached: the job end is final
    assert swarm.state == "terminated"
    plain = running(h, 1)
    h.observe(plain, ended)
    assert plain.state == "terminated"
    clean = running(h, 2, restart="on-failure")
    h.exit(clean, 0, reason="shutdown", exit_code=0)
    h.exit(clean, 1, reason="error", exit_code=1)
    h.observe(clean, ended)
    assert clean.state == "terminated"


def test_lost_is_in_the_worker_transition_table(h: Harness) -> None:
    swarm = running(h, 1)
    h.decide(NodeGone(swarm.swarm_id, 0, "x"))
    with pytest.raises(IllegalTransition):  # lost -> stale is not a move
        h.record([Event("node_status", {"swarm_id": swarm.swarm_id, "job_id": swarm.job_id, "node_id": 0,
                                        "injection_id": None, "worker": "stale", "last_heartbeat_at": None})])


def test_redeliver_resends_only_acked_prompts_of_live_nodes(h: Harness) -> None:
    swarm = running(h, 3)
    ids = h.inject(swarm, [0, 1, 2], content="the prompt")
    h.accept(swarm, 0, ids[0])
    h.decide(NodeGone(swarm.swarm_id, 2, "x"))  # its acked prompt failed
    decision = h.decide(RedeliverAcked())
    assert decision.events == []
    assert [(e.node_id, e.line["injection_id"], e.line["content"]) for e in decision.effects
            if isinstance(e, InboxLine)] == [(1, ids[1], "the prompt")]


def test_outbox_offset_is_the_durable_read_position_and_seq_is_only_reported(h: Harness) -> None:
    swarm = running(h, 1)
    node = swarm.nodes[0]
    iid = h.inject(swarm, [0])[0]
    line = {"seq": 2**63 - 1, "type": "lifecycle", "event": "turn_accepted", "injection_id": iid, "data": {}}
    h.decide(LifecycleLine(swarm.swarm_id, 0, line, outbox_offset=900))
    assert node.outbox_offset == 900 and node.outbox_seq == 2**63 - 1
    later = {"seq": 5, "type": "lifecycle", "event": "worker_error", "injection_id": None, "data": {"message": "m"}}
    h.decide(LifecycleLine(swarm.swarm_id, 0, later, outbox_offset=1000))
    assert node.outbox_offset == 1000 and node.outbox_seq == 5, "the last line read, not the highest seq"
    mark = h.mark()
    h.decide(OutboxSeqAnomaly(swarm.swarm_id, 0, "outbox_seq_backwards", "went back", 4))
    [(name, data)] = h.events(after=mark)
    assert name == "agent_error" and data["error_code"] == "outbox_seq_backwards" and "outbox_seq" not in data
    assert node.outbox_seq == 5
    replayed = h.replayed().swarms[swarm.swarm_id].nodes[0]
    assert (replayed.outbox_offset, replayed.outbox_seq) == (1000, 5)


def test_queue_is_bounded_and_queue_updated_stays_small(make_harness: type[Harness]) -> None:
    h = make_harness(queue_max_items_per_swarm=SNAPSHOT_MAX_ITEMS + 10)
    swarm = running(h, 1)
    h.inject(swarm, [0])  # the only node is busy: items wait
    for i in range(SNAPSHOT_MAX_ITEMS + 10):
        h.decide(Enqueue(swarm.swarm_id, f"r{i}", None, "idle", None, f"item {i}"))
    updates = [d for n, d in h.events() if n == "queue_updated"]
    assert "items" in updates[0] and updates[-1].get("items_omitted") is True and "items" not in updates[-1]
    assert updates[-1]["length"] == updates[-1]["total"] == SNAPSHOT_MAX_ITEMS + 10
    cmd = Command("enqueue_inject", "r-over", {"target_swarm_id": swarm.swarm_id, "content": "x"})
    with pytest.raises(Rejection) as exc:
        parse_enqueue(cmd, h.state)
    assert exc.value.code == "queue_full" and str(SNAPSHOT_MAX_ITEMS + 10) in exc.value.reason
    # `all` items do not wait, so they are not bounded by the queue
    parse_enqueue(Command("enqueue_inject", "r-all", {"target_swarm_id": swarm.swarm_id, "content": "x",
                                                      "selector": "all"}), h.state)


@pytest.mark.parametrize("params, key", [
    ({"restart": "always"}, "restart"), ({"restart_max": -1}, "restart_max"), ({"restart_max": True}, "restart_max"),
    ({"restart_max": 101}, "restart_max"), ({"restart_backoff_seconds": "1"}, "restart_backoff_seconds"),
])
def test_restart_params_are_checked(params: dict[str, object], key: str) -> None:
    with pytest.raises(ValueError) as exc:
        validate_params(dict(params), "provider_params")
    assert exc.value.args[0] == key
    validate_params({"restart": "on-failure", "restart_max": 0, "restart_backoff_seconds": 2.5}, "p")
