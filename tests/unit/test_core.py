"""The core's lifecycles through decide + reduce (tests/harness.py: counter ids, a fake clock).

PROTOCOL.md 6 (injection lifecycle), 7 (swarm lifecycle, failure model), 8.4 (worker lifecycle
lines), 5.8 (turn_started synthesis, at most one turn_complete). `h` is the Harness of conftest.py.
"""

from __future__ import annotations

import time

import orjson
import trio

from codeswarm.core.evidence import JobObservation, JobState
from codeswarm.core.kernel import StartTerminate
from codeswarm.core.views import list_record, status_data
from codeswarm.router.normalize.base import usage_event

# The harness's fake clock starts here (conftest.T0). Not imported: several non-package
# conftest.py files share the module name "conftest", so importing it is unreliable.
T0 = 1_750_000_000.0


def per_injection(h, iid):
    return h.names(injection_id=iid)


# ---------------------------------------------------------------- launch and inject


def test_the_core_reads_only_the_now_it_is_given(h):
    """Every time in events and records is the decision's `now`, never a clock the core reads."""
    h.at(T0 + 12.5)
    swarm, _ = h.launch(nodes=1, system_prompt="s")
    h.at(T0 + 20).start(swarm)
    assert swarm.created_at == T0 + 12.5 and swarm.running_at == T0 + 20
    assert next(iter(swarm.injections.values())).acked_at == T0 + 12.5
    assert [ts for *_, ts in h.log] == [T0 + 12.5, T0 + 12.5, T0 + 20, T0 + 20]


def test_launch_without_system_prompt(h):
    swarm, actions = h.launch(nodes=3)
    assert actions == []
    assert h.names() == ["swarm_launched"]
    data = h.events()[0][1]
    assert data["request_id"] == "req-launch" and data["node_count"] == 3 and data["state"] == "pending"
    assert data["provider"] == "local" and data["provider_id"] == "local-codex" and data["agent_runtime"] == "codex"
    assert swarm.state == "pending" and [n.worker for n in swarm.nodes] == ["not_started"] * 3


def test_launch_with_system_prompt_acks_every_node_under_the_launch_request(h):
    swarm, actions = h.launch(nodes=3, system_prompt="You are node X.")
    assert h.names() == ["swarm_launched", "inject_ack", "inject_ack", "inject_ack"]
    acks = [d for n, d in h.events() if n == "inject_ack"]
    assert [a["node_id"] for a in acks] == [0, 1, 2]
    assert {a["request_id"] for a in acks} == {"req-launch"}
    assert {a["prompt"] for a in acks} == {"You are node X."}
    assert len({a["injection_id"] for a in acks}) == 3
    assert [(a.node_id, a.line["type"], a.line["injection_id"]) for a in actions] == [
        (a["node_id"], "user", a["injection_id"]) for a in acks
    ]
    assert all(a.swarm_id == swarm.swarm_id and a.line["content"] == "You are node X." for a in actions)


def test_inject_acks_ascending_and_returns_inbox_lines(h):
    swarm, _ = h.launch(nodes=4)
    h.start(swarm)
    mark = h.mark()
    actions = h.inject_lines(swarm, [1, 3], "go", "req-2")
    assert h.names(after=mark) == ["inject_ack", "inject_ack"]
    acks = [d for _, d in h.events(after=mark)]
    assert [a["node_id"] for a in acks] == [1, 3]
    assert all(a["request_id"] == "req-2" and a["job_id"] == swarm.job_id for a in acks)
    assert [a.node_id for a in actions] == [1, 3]
    assert {i.state for i in swarm.injections.values()} == {"acked"}


def test_inject_into_a_pending_swarm_is_accepted_and_waits(h):
    swarm, _ = h.launch(nodes=2)
    iids = h.inject(swarm, [0, 1])
    h.at(T0 + 10_000).tick()  # workers not started: no deadline runs yet
    assert [swarm.injections[i].state for i in iids.values()] == ["acked", "acked"]


# ---------------------------------------------------------------- delivery and turns


def test_turn_accepted_gives_exactly_one_inject_delivered(h):
    swarm, _ = h.launch(nodes=1)
    h.start(swarm)
    iid = h.inject(swarm, [0])[0]
    h.accept(swarm, 0, iid, queued=True)
    h.accept(swarm, 0, iid)  # a retried inbox line: the worker may say it twice
    delivered = [d for n, d in h.events(injection_id=iid) if n == "inject_delivered"]
    assert len(delivered) == 1
    assert delivered[0]["queued"] is True and delivered[0]["request_id"] == "req-inject"
    assert swarm.injections[iid].state == "delivered"


def test_turn_accepted_for_an_unknown_or_foreign_injection_is_ignored(h):
    swarm, _ = h.launch(nodes=2)
    h.start(swarm)
    iid = h.inject(swarm, [0])[0]
    mark = h.mark()
    h.accept(swarm, 1, iid)  # wrong node
    h.accept(swarm, 0, "no-such-injection")
    assert "inject_delivered" not in h.names(after=mark)
    assert swarm.injections[iid].state == "acked"


def test_full_turn_order(h):
    swarm, _ = h.launch(nodes=1)
    h.start(swarm)
    iid = h.inject(swarm, [0])[0]
    h.turn(swarm, 0, iid)
    assert per_injection(h, iid) == ["inject_ack", "inject_delivered", "turn_started", "assistant_delta",
                                     "turn_complete"]
    started = h.events(injection_id=iid)[2][1]
    assert started["prompt"] == "hello" and started["turn_id"] == "t1"
    complete = h.events(injection_id=iid)[-1][1]
    assert complete["aborted"] is False and complete["turn_id"] == "t1"
    assert swarm.injections[iid].state == "completed"
    assert swarm.open_injections() == [] and not swarm.node_busy(0)


def test_content_before_turn_start_synthesizes_turn_started(h):
    swarm, _ = h.launch(nodes=1)
    h.start(swarm)
    iid = h.inject(swarm, [0])[0]
    h.accept(swarm, 0, iid)
    h.runtime(swarm, 0, iid, ("reasoning_delta", {"content": "hmm", "turn_id": "t9"}))
    h.runtime(swarm, 0, iid, ("turn_started", {"turn_id": "t9"}))  # late start signal: dropped
    h.runtime(swarm, 0, iid, ("assistant", {"content": "done", "final_answer": True}))
    h.runtime(swarm, 0, iid, ("turn_complete", {"turn_id": "t9"}))
    assert per_injection(h, iid) == ["inject_ack", "inject_delivered", "turn_started", "reasoning_delta",
                                     "assistant", "turn_complete"]
    assert h.events(injection_id=iid)[2][1]["turn_id"] == "t9"


def test_turn_complete_without_start_synthesizes_turn_started(h):
    swarm, _ = h.launch(nodes=1)
    h.start(swarm)
    iid = h.inject(swarm, [0])[0]
    h.accept(swarm, 0, iid)
    h.runtime(swarm, 0, iid, ("turn_complete", {"turn_id": "t1"}))
    assert per_injection(h, iid) == ["inject_ack", "inject_delivered", "turn_started", "turn_complete"]


def test_exactly_one_turn_complete_and_duplicates_dropped(h):
    swarm, _ = h.launch(nodes=1)
    h.start(swarm)
    iid = h.inject(swarm, [0])[0]
    h.accept(swarm, 0, iid)
    h.runtime(swarm, 0, iid, ("turn_started", {"turn_id": "t1"}), ("turn_started", {"turn_id": "t1"}))
    h.runtime(swarm, 0, iid, ("turn_complete", {}), ("turn_complete", {}))
    h.runtime(swarm, 0, iid, ("turn_complete", {}))
    names = per_injection(h, iid)
    assert names.count("turn_started") == 1 and names.count("turn_complete") == 1
    # Bookkeeping may trail turn_complete (ordering rule 2) and is forwarded as is; a trailing usage
    # also corrects the turn's cost (turn_cost_updated, docs/SPEND.md).
    mark = h.mark()
    h.runtime(swarm, 0, iid, usage_event("codex/token_count", {"total_tokens": 10}, None), ("task_complete", {"last_agent_message": None}))
    assert h.names(after=mark) == ["usage", "turn_cost_updated", "task_complete"]


def test_runtime_output_before_delivery_does_not_start_the_turn(h):
    # The worker writes turn_accepted before any line of that turn (8.4); content that arrives
    # for an injection still acked must not open a turn that was never delivered.
    swarm, _ = h.launch(nodes=1)
    h.start(swarm)
    iid = h.inject(swarm, [0])[0]
    h.runtime(swarm, 0, iid, ("assistant_delta", {"content": "x"}))
    assert "turn_started" not in per_injection(h, iid)
    assert swarm.injections[iid].state == "acked"


def test_output_for_no_turn_is_forwarded_but_cannot_open_or_close_turns(h):
    swarm, _ = h.launch(nodes=1)
    h.start(swarm)
    mark = h.mark()
    h.runtime(swarm, 0, None, ("thread_status", {"status": {"type": "idle"}}), ("turn_started", {}),
              ("turn_complete", {}), ("agent_error", {"message": "x", "error_code": 1, "fatal": False}))
    assert h.names(after=mark) == ["thread_status", "agent_error"]
    assert all(d["injection_id"] is None and d["node_id"] == 0 for _, d in h.events(after=mark))


def test_runtime_events_carry_the_common_fields(h):
    swarm, _ = h.launch(nodes=2)
    h.start(swarm)
    iid = h.inject(swarm, [1])[1]
    h.accept(swarm, 1, iid)
    h.runtime(swarm, 1, iid, ("assistant_delta", {"content": "x"}))
    for name, data in h.events(injection_id=iid)[2:]:
        assert (data["swarm_id"], data["job_id"], data["node_id"]) == (swarm.swarm_id, swarm.job_id, 1), name


def test_injection_ids_from_another_node_are_not_trusted(h):
    swarm, _ = h.launch(nodes=2)
    h.start(swarm)
    iid = h.inject(swarm, [0])[0]
    h.accept(swarm, 0, iid)
    h.runtime(swarm, 1, iid, ("turn_complete", {}))  # node 1 claims node 0's injection
    assert swarm.injections[iid].state == "delivered"


# ---------------------------------------------------------------- worker exits


def test_worker_exit_mid_turn_aborts_the_turn(h):
    swarm, _ = h.launch(nodes=2)
    h.start(swarm)
    iid = h.inject(swarm, [0])[0]
    h.accept(swarm, 0, iid)
    h.runtime(swarm, 0, iid, ("assistant_delta", {"content": "x"}))
    mark = h.mark()
    h.exit(swarm, 0, reason="runtime_exited", exit_code=3)
    after = h.events(after=mark)
    assert [n for n, _ in after] == ["agent_error", "turn_complete", "agent_error", "node_status"]
    assert after[0][1]["injection_id"] == iid and after[0][1]["error_code"] == "worker_exited"
    assert after[1][1]["aborted"] is True and after[1][1]["injection_id"] == iid
    assert after[2][1]["injection_id"] is None and after[2][1]["fatal"] is True
    assert after[3][1]["worker"] == "exited" and after[3][1]["exit_code"] == 3
    assert swarm.nodes[0].worker == "exited" and swarm.nodes[0].exit_code == 3
    assert swarm.injections[iid].state == "completed"
    # The other node is untouched and the swarm keeps running.
    assert swarm.nodes[1].worker == "running" and swarm.state == "running"
    # A late turn_complete from the dead worker's outbox changes nothing.
    mark = h.mark()
    h.runtime(swarm, 0, iid, ("turn_complete", {}))
    assert "turn_complete" not in h.names(after=mark)


def test_worker_exit_with_a_queued_turn_aborts_it_without_turn_started(h):
    swarm, _ = h.launch(nodes=1)
    h.start(swarm)
    iids = [h.inject(swarm, [0])[0], h.inject(swarm, [0])[0]]
    h.accept(swarm, 0, iids[0])
    h.runtime(swarm, 0, iids[0], ("turn_started", {}))
    h.accept(swarm, 0, iids[1], queued=True)
    h.exit(swarm, 0)
    assert per_injection(h, iids[1]) == ["inject_ack", "inject_delivered", "agent_error", "turn_complete"]
    assert per_injection(h, iids[0]).count("turn_complete") == 1


def test_acked_injection_fails_when_the_worker_exits(h):
    swarm, _ = h.launch(nodes=1)
    h.start(swarm)
    iid = h.inject(swarm, [0])[0]
    h.exit(swarm, 0)
    failed = [d for n, d in h.events(injection_id=iid) if n == "inject_failed"]
    assert len(failed) == 1 and failed[0]["reason"] == "node_not_running" and failed[0]["error"]
    assert failed[0]["request_id"] == "req-inject"
    assert "inject_delivered" not in per_injection(h, iid)
    # turn_accepted arriving after inject_failed produces no inject_delivered (section 6).
    h.accept(swarm, 0, iid)
    assert per_injection(h, iid).count("inject_delivered") == 0


def test_inject_into_an_exited_node_acks_then_fails(h):
    swarm, _ = h.launch(nodes=2)
    h.start(swarm)
    h.exit(swarm, 1)
    mark = h.mark()
    actions = h.inject_lines(swarm, [0, 1], "x", "req-9")
    assert h.names(after=mark) == ["inject_ack", "inject_ack", "inject_failed"]
    assert h.events(after=mark)[2][1]["node_id"] == 1
    assert h.events(after=mark)[2][1]["reason"] == "node_not_running"
    assert [a.node_id for a in actions] == [0]


def test_all_acks_of_one_inject_come_before_any_failure(h):
    swarm, _ = h.launch(nodes=3)
    h.start(swarm)
    h.exit(swarm, 0)
    mark = h.mark()
    h.inject_lines(swarm, [0, 1, 2], "x", "req-9")
    assert h.names(after=mark) == ["inject_ack", "inject_ack", "inject_ack", "inject_failed"]


def test_requested_shutdown_exit_reports_no_agent_error(h):
    swarm, _ = h.launch(nodes=1)
    h.start(swarm)
    iid = h.inject(swarm, [0])[0]
    h.accept(swarm, 0, iid)
    mark = h.mark()
    h.exit(swarm, 0, reason="shutdown", exit_code=0)
    assert h.names(after=mark) == ["turn_complete", "node_status"]
    assert h.events(after=mark)[0][1]["aborted"] is True


def test_worker_error_becomes_agent_error(h):
    swarm, _ = h.launch(nodes=1)
    h.start(swarm)
    mark = h.mark()
    h.lifecycle(swarm, 0, "worker_error", {"message": "disk full", "fatal": False})
    [(name, data)] = h.events(after=mark)
    assert name == "agent_error" and data["error_code"] == "worker_error" and data["message"] == "disk full"
    assert data["fatal"] is False


def test_heartbeat_alone_emits_nothing(h):
    swarm, _ = h.launch(nodes=1)
    h.start(swarm)
    mark = h.mark()
    h.lifecycle(swarm, 0, "heartbeat", {"busy": False})
    assert h.names(after=mark) == []


# ---------------------------------------------------------------- swarm states


def test_first_worker_started_moves_pending_to_running_once(h):
    swarm, _ = h.launch(nodes=3)
    h.start(swarm, 0)
    h.start(swarm, 1)
    statuses = [d for n, d in h.events() if n == "swarm_status"]
    assert len(statuses) == 1 and statuses[0]["state"] == "running" and statuses[0]["status"] == "running"
    assert swarm.state == "running" and swarm.running_at == h.now
    node_status = [d for n, d in h.events() if n == "node_status"]
    assert [(d["node_id"], d["worker"]) for d in node_status] == [(0, "running"), (1, "running")]


def test_terminated_closes_everything_before_swarm_terminated(h):
    swarm, _ = h.launch(nodes=3)
    h.start(swarm)
    iids = h.inject(swarm, [0, 1, 2])
    h.accept(swarm, 1, iids[1])
    h.accept(swarm, 2, iids[2])
    h.runtime(swarm, 2, iids[2], ("turn_started", {}))
    mark = h.mark()
    h.terminated(swarm, "requested", "req-term")
    names = h.names(after=mark)
    assert names[-1] == "swarm_terminated"
    assert per_injection(h, iids[0])[-1] == "inject_failed"
    assert [d["reason"] for n, d in h.events(injection_id=iids[0]) if n == "inject_failed"] == ["swarm_terminated"]
    for node in (1, 2):
        assert per_injection(h, iids[node])[-1] == "turn_complete"
        assert h.events(injection_id=iids[node])[-1][1]["aborted"] is True
    done = h.events(after=mark)[-1][1]
    assert done["request_id"] == "req-term" and done["reason"] == "requested"
    assert swarm.state == "terminated" and swarm.terminated_at == h.now and swarm.open_injections() == []
    record = list_record(swarm)
    assert record["status"] == "terminated" and record["termination_reason"] == "requested"


def test_status_data_legacy_status_for_pending(h):
    swarm, _ = h.launch(nodes=1)
    data = status_data(swarm, "r", with_nodes=True)
    assert data["status"] == "running" and data["state"] == "pending"
    assert data["nodes"] == [{"node_id": 0, "worker": "not_started", "busy": False, "outstanding": 0,
                              "last_heartbeat_at": None, "hostname": None, "spend_usd": 0.0, "budget_usd": None,
                              "cost_unknown": False, "pricing_model": None, "total_tokens": 0}]


# ---------------------------------------------------------------- tick: deadlines and liveness


def test_inject_timeout_while_node_runs(make_harness):
    h = make_harness(inject_timeout_seconds=60)
    swarm, _ = h.launch(nodes=1)
    h.start(swarm)
    iid = h.inject(swarm, [0])[0]
    h.last_heard[(swarm.swarm_id, 0)] = T0 + 1000  # keep it from going stale in this test
    h.at(T0 + 60).tick()
    assert swarm.injections[iid].state == "acked"
    h.at(T0 + 60.5).tick()
    failed = [d for n, d in h.events(injection_id=iid) if n == "inject_failed"]
    assert [d["reason"] for d in failed] == ["timeout"]
    h.at(T0 + 120).tick()
    assert per_injection(h, iid).count("inject_failed") == 1


def test_deadline_starts_at_worker_started_for_a_pending_swarm(make_harness):
    h = make_harness(inject_timeout_seconds=60, worker_heartbeat_timeout_seconds=10_000)
    swarm, _ = h.launch(nodes=1, system_prompt="sys")
    iid = next(iter(swarm.injections))
    h.at(T0 + 500).tick()
    assert swarm.injections[iid].state == "acked"
    h.at(T0 + 500)
    h.start(swarm)
    h.at(T0 + 559).tick()
    assert swarm.injections[iid].state == "acked"
    h.at(T0 + 561).tick()
    assert swarm.injections[iid].state == "failed"


def test_silent_node_becomes_stale_and_a_line_revives_it(make_harness):
    h = make_harness(worker_heartbeat_timeout_seconds=60)
    swarm, _ = h.launch(nodes=2)
    h.start(swarm)
    h.at(T0 + 50)
    h.lifecycle(swarm, 1, "heartbeat", {"busy": False})
    mark = h.mark()
    h.at(T0 + 61).tick()
    stale = [d for n, d in h.events(after=mark) if n == "node_status"]
    assert [(d["node_id"], d["worker"]) for d in stale] == [(0, "stale")]
    h.at(T0 + 62).tick()
    assert [n for n in h.names(after=mark)] == ["node_status"]  # reported once
    h.lifecycle(swarm, 0, "heartbeat", {"busy": False})
    assert swarm.nodes[0].worker == "running"
    assert h.events()[-1][1]["worker"] == "running"
    assert swarm.state == "running"  # heartbeat loss changes no swarm state


def test_acked_injection_on_a_stale_node_fails_node_not_running(make_harness):
    h = make_harness(worker_heartbeat_timeout_seconds=30, inject_timeout_seconds=60)
    swarm, _ = h.launch(nodes=1)
    h.start(swarm)
    iid = h.inject(swarm, [0])[0]
    h.at(T0 + 31).tick()
    assert swarm.nodes[0].worker == "stale"
    h.at(T0 + 61).tick()
    assert [d["reason"] for n, d in h.events(injection_id=iid) if n == "inject_failed"] == ["node_not_running"]


def test_worker_that_never_starts_becomes_stale(make_harness):
    h = make_harness(worker_start_timeout_seconds=300, worker_heartbeat_timeout_seconds=10_000)
    swarm, _ = h.launch(nodes=2)
    h.start(swarm, 0)  # swarm running from here
    mark = h.mark()
    h.at(T0 + 300).tick()
    assert h.names(after=mark) == []
    h.at(T0 + 301).tick()
    assert [(d["node_id"], d["worker"]) for n, d in h.events(after=mark)] == [(1, "stale")]


# ---------------------------------------------------------------- retention (TTL with a fake clock)


def test_ttl_removes_a_terminated_swarm_exactly_after_the_ttl(make_harness):
    h = make_harness(terminated_ttl_seconds=900)
    swarm, _ = h.launch(nodes=1)
    h.start(swarm)
    h.at(T0 + 100).terminated(swarm, "requested", "r")
    h.at(T0 + 100 + 899.999).tick()
    assert swarm.swarm_id in h.state.swarms and "swarm_removed" not in h.names()
    h.at(T0 + 100 + 900).tick()
    removed = [d for n, d in h.events() if n == "swarm_removed"]
    assert removed == [{"swarm_id": swarm.swarm_id, "reason": "ttl_expired"}]
    assert swarm.swarm_id not in h.state.swarms
    h.at(T0 + 5000).tick()
    assert h.names().count("swarm_removed") == 1
    assert h.names()[-1] == "swarm_removed"


def test_running_swarms_are_never_removed(make_harness):
    h = make_harness(terminated_ttl_seconds=1)
    swarm, _ = h.launch(nodes=1)
    h.at(T0 + 10**7).tick()
    assert "swarm_removed" not in h.names() and swarm.swarm_id in h.state.swarms


def test_retention_cap_removes_the_oldest_first(make_harness):
    h = make_harness(max_terminated_swarms=2, terminated_ttl_seconds=10**6)
    swarms = [h.launch(nodes=1)[0] for _ in range(4)]
    for i in (2, 0, 3, 1):  # terminated in this order
        h.at(h.now + 10).terminated(swarms[i], "requested", None)
    h.at(h.now + 1).tick()
    removed = [d for n, d in h.events() if n == "swarm_removed"]
    assert removed == [{"swarm_id": swarms[2].swarm_id, "reason": "retention_cap"},
                       {"swarm_id": swarms[0].swarm_id, "reason": "retention_cap"}]
    assert set(h.state.swarms) == {swarms[3].swarm_id, swarms[1].swarm_id}


async def test_ttl_of_900_s_passes_in_milliseconds_on_trio_mock_clock(autojump_clock, make_harness):
    """A small sweeper loop like the router's, on trio's clock; autojump skips the idle waits."""
    h = make_harness(terminated_ttl_seconds=900)
    swarm, _ = h.launch(nodes=1)
    base = T0 - trio.current_time()

    def now() -> float:
        return base + trio.current_time()

    h.at(now()).terminated(swarm, "requested", None)
    terminated_at = trio.current_time()
    wall = time.monotonic()
    with trio.fail_after(3600):  # in trio time: fails the test rather than looping for ever
        while swarm.swarm_id in h.state.swarms:
            await trio.sleep(1)
            h.at(now()).tick()
    assert time.monotonic() - wall < 5.0  # 900 s of trio time; milliseconds of wall time
    elapsed = trio.current_time() - terminated_at
    assert 900 <= elapsed < 902
    assert h.names()[-1] == "swarm_removed"


# ---------------------------------------------------------------- scheduler observations


def obs(state, scheduler_state=None, reason=None):
    return JobObservation(state=state, scheduler_state=scheduler_state, reason=reason)


def test_not_found_needs_confirmations_across_the_window(make_harness):
    h = make_harness(job_gone_confirmations=3, job_gone_window_seconds=30)
    swarm, _ = h.launch(nodes=1)
    h.start(swarm)
    for t in (0, 1, 2, 3, 4):  # five misses within 4 s: never enough
        h.observe(swarm, obs(JobState.NOT_FOUND), now=T0 + t)
    assert swarm.state == "running" and "swarm_terminated" not in h.names()
    h.at(T0 + 30).observe(swarm, obs(JobState.NOT_FOUND))
    assert swarm.state == "terminated"
    done = [d for n, d in h.events() if n == "swarm_terminated"]
    assert len(done) == 1 and done[0]["reason"] == "job_ended" and done[0]["request_id"] is None


def test_a_single_not_found_is_never_enough(make_harness):
    h = make_harness(job_gone_confirmations=3, job_gone_window_seconds=30)
    swarm, _ = h.launch(nodes=1)
    h.start(swarm)
    h.observe(swarm, obs(JobState.NOT_FOUND), now=T0 + 1000)
    h.observe(swarm, obs(JobState.NOT_FOUND), now=T0 + 2000)
    assert swarm.state == "running"
    h.at(T0 + 2001).observe(swarm, obs(JobState.NOT_FOUND))
    assert swarm.state == "terminated"


def test_a_running_answer_resets_the_miss_count(make_harness):
    h = make_harness(job_gone_confirmations=3, job_gone_window_seconds=30)
    swarm, _ = h.launch(nodes=1)
    h.start(swarm)
    # Without the RUNNING answer at 30 s, the third miss at 30 s would end the job.
    for t, state in [(0, JobState.NOT_FOUND), (15, JobState.NOT_FOUND), (30, JobState.RUNNING),
                     (45, JobState.NOT_FOUND), (60, JobState.NOT_FOUND)]:
        h.at(T0 + t).observe(swarm, obs(state))
    assert swarm.state == "running" and swarm.miss_count == 2 and swarm.first_miss_at == T0 + 45
    h.at(T0 + 75).observe(swarm, obs(JobState.NOT_FOUND))  # 3 misses over 30 s
    assert swarm.state == "terminated" and swarm.termination_reason == "job_ended"


def test_unknown_and_pending_answers_do_not_count_as_misses_or_terminate(make_harness):
    h = make_harness(job_gone_confirmations=1, job_gone_window_seconds=0)
    swarm, _ = h.launch(nodes=1)
    for state in (JobState.UNKNOWN, JobState.PENDING):
        h.at(h.now + 100).observe(swarm, obs(state))
    assert swarm.state == "pending" and h.names() == ["swarm_launched"]


def test_ended_terminates_with_reason_and_scheduler_state(h):
    swarm, _ = h.launch(nodes=2)
    h.start(swarm)
    iid = h.inject(swarm, [1])[1]
    h.at(T0 + 5).observe(swarm, obs(JobState.ENDED, "TIMEOUT", "time_limit"))
    done = h.events()[-1]
    assert done[0] == "swarm_terminated"
    assert done[1]["reason"] == "job_ended" and done[1]["scheduler_state"] == "TIMEOUT"
    assert per_injection(h, iid)[-1] == "inject_failed"
    mark = h.mark()
    h.observe(swarm, obs(JobState.ENDED, "TIMEOUT"), now=h.now + 1)
    assert h.names(after=mark) == []  # terminated once


def test_ended_while_pending_is_launch_failed(h):
    swarm, _ = h.launch(nodes=1)
    h.observe(swarm, obs(JobState.ENDED, "FAILED"))
    assert swarm.state == "terminated" and swarm.termination_reason == "launch_failed"


def test_running_observation_moves_pending_to_running(h):
    swarm, _ = h.launch(nodes=1)
    h.observe(swarm, obs(JobState.RUNNING, "RUNNING"))
    assert swarm.state == "running"
    assert [d["state"] for n, d in h.events() if n == "swarm_status"] == ["running"]
    h.observe(swarm, obs(JobState.RUNNING, "RUNNING"), now=h.now + 15)
    assert [n for n in h.names()].count("swarm_status") == 1


def test_observations_do_not_touch_a_terminating_swarm(h):
    swarm, _ = h.launch(nodes=1)
    h.start(swarm)
    h.set_state(swarm, "terminating", "req-t")
    assert swarm.state == "terminating" and swarm.prev_state == "running"
    h.observe(swarm, obs(JobState.ENDED, "CANCELLED"))
    assert swarm.state == "terminating" and "swarm_terminated" not in h.names()


# ---------------------------------------------------------------- replay determinism


def busy_history(h):
    """A history touching every apply handler: launch, starts, turns, approvals, failures, exit, TTL."""
    swarm, _ = h.launch(nodes=3, system_prompt="sys")
    keep, _ = h.launch(nodes=1)
    h.at(T0 + 1)
    h.start(swarm, 0, 1)
    sys_ids = {inj.node_id: inj.injection_id for inj in swarm.injections.values()}
    h.turn(swarm, 0, sys_ids[0])
    h.accept(swarm, 1, sys_ids[1])
    h.runtime(swarm, 1, sys_ids[1], ("exec_approval_required",
                                     {"call_id": "c1", "command": ["ls"], "turn_id": "t1", "rpc_id": 7}))
    h.runtime(swarm, 1, sys_ids[1], ("command_started", {"call_id": "c1", "command": ["ls"], "cwd": "/w"}))
    iids = h.inject(swarm, [0, 1, 2], content="second")
    h.accept(swarm, 0, iids[0])
    h.runtime(swarm, 0, iids[0], ("exec_approval_required", {"call_id": "c2", "command": "rm -rf /"}))
    # Node 2 never started: stale, its acked injections fail; node 1's acked one times out.
    h.at(T0 + 100).tick()
    h.exit(swarm, 1)
    h.lifecycle(swarm, 0, "heartbeat", {"busy": True})
    h.start(keep)
    h.at(T0 + 200).terminated(swarm, "requested", "req-t")
    return swarm, keep


def test_replaying_the_log_rebuilds_the_same_state(make_harness):
    h = make_harness(inject_timeout_seconds=60, worker_heartbeat_timeout_seconds=10_000,
                     worker_start_timeout_seconds=50)
    swarm, keep = busy_history(h)
    names = set(h.names())
    for expected in ("swarm_launched", "swarm_status", "swarm_terminated", "inject_ack", "inject_delivered",
                     "inject_failed", "turn_started", "turn_complete", "node_status", "exec_approval_required",
                     "exec_approval_resolved"):
        assert expected in names
    assert {d["reason"] for n, d in h.events() if n == "inject_failed"} == {"timeout", "node_not_running"}
    fresh = h.replayed()
    assert set(fresh.swarms) == set(h.state.swarms)
    for sid, live in h.state.swarms.items():
        live_json = live.to_json()  # every field: liveness is not in core records
        replayed_json = fresh.swarms[sid].to_json()
        assert orjson.loads(orjson.dumps(replayed_json)) == orjson.loads(orjson.dumps(live_json))


def test_replay_after_ttl_removal_forgets_the_swarm(make_harness):
    h = make_harness(terminated_ttl_seconds=10)
    swarm, _ = h.launch(nodes=1)
    h.terminated(swarm, "requested", None)
    h.at(h.now + 11).tick()
    assert h.replayed().swarms == {} == h.state.swarms


def test_replay_rebuilds_thread_status(h):
    swarm, _ = h.launch(nodes=1)
    h.start(swarm)
    iid = h.inject(swarm, [0])[0]
    h.accept(swarm, 0, iid)
    h.runtime(swarm, 0, iid, ("thread_status", {"status": {"type": "active"}}))
    assert swarm.nodes[0].thread_status == "active"
    assert h.replayed().swarms[swarm.swarm_id].nodes[0].thread_status == "active"


def test_every_logged_event_is_json_and_only_launch_carries_the_record(make_harness):
    h = make_harness(inject_timeout_seconds=60, worker_heartbeat_timeout_seconds=10_000,
                     worker_start_timeout_seconds=50)
    busy_history(h)
    seqs = [seq for seq, *_ in h.log]
    assert seqs == list(range(1, len(seqs) + 1))
    for _seq, name, data, _now in h.log:
        assert ("_record" in data) == (name == "swarm_launched")


# ---------------------------------------------------------------- records and launch timeouts


def test_swarm_record_round_trips_and_ignores_unknown_keys(h):
    from codeswarm.core.records import Swarm

    swarm, _ = h.launch(nodes=2, system_prompt="s")
    h.start(swarm)
    rec = orjson.loads(orjson.dumps(swarm.to_json()))
    assert Swarm.from_json(rec) == swarm
    rec["field_from_a_newer_router"] = 1
    assert Swarm.from_json(rec).to_json() == swarm.to_json()


def test_launch_hard_timeout_asks_for_cancel_only_while_pending(h):
    swarm, _ = h.launch(nodes=1, _launch_hard_timeout_seconds=120)
    def cancels(decision):
        return [e.swarm_id for e in decision.effects if isinstance(e, StartTerminate)]

    assert cancels(h.at(T0 + 120).tick()) == []
    assert cancels(h.at(T0 + 121).tick()) == [swarm.swarm_id]
    h.start(swarm)
    assert cancels(h.at(T0 + 122).tick()) == []


# ---------------------------------------------------------------- gaps against the spec


def test_any_line_from_a_stale_node_makes_it_running(make_harness):
    h = make_harness(worker_heartbeat_timeout_seconds=60, inject_timeout_seconds=600)
    swarm, _ = h.launch(nodes=1)
    h.start(swarm)
    iid = h.inject(swarm, [0])[0]
    h.at(T0 + 61).tick()
    assert swarm.nodes[0].worker == "stale"
    h.accept(swarm, 0, iid)  # the worker was only slow
    h.runtime(swarm, 0, iid, ("assistant_delta", {"content": "back"}))
    assert swarm.nodes[0].worker == "running"


def test_open_turn_on_a_node_stale_past_the_deadline_is_aborted(make_harness):
    h = make_harness(worker_heartbeat_timeout_seconds=60, inject_timeout_seconds=60)
    swarm, _ = h.launch(nodes=1)
    h.start(swarm)
    iid = h.inject(swarm, [0])[0]
    h.accept(swarm, 0, iid)
    h.runtime(swarm, 0, iid, ("turn_started", {}))
    for t in (61, 200, 1000):
        h.at(T0 + t).tick()
    assert swarm.nodes[0].worker == "stale"
    assert per_injection(h, iid)[-2:] == ["agent_error", "turn_complete"]
    assert h.events(injection_id=iid)[-1][1]["aborted"] is True


def test_thread_status_is_synthesized_for_runtimes_without_one(h):
    """PROTOCOL.md 5.8: mock and claude get `active` after turn_started and `idle` after turn_complete."""
    swarm, _ = h.launch(nodes=1, worker_mode="mock")
    h.start(swarm)
    iid = h.inject(swarm, [0])[0]
    h.accept(swarm, 0, iid)
    h.runtime(swarm, 0, iid, ("assistant_delta", {"content": "hi"}), ("turn_complete", {}))
    names = [n for n in per_injection(h, iid) if n in ("turn_started", "thread_status", "turn_complete")]
    assert names == ["turn_started", "thread_status", "turn_complete", "thread_status"]
    statuses = [d["status"]["type"] for n, d in h.events(injection_id=iid) if n == "thread_status"]
    assert statuses == ["active", "idle"]
    assert swarm.nodes[0].thread_status == "idle"
