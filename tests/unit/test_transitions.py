"""The transition tables of core/states.py, through the reducers that use them.

Every allowed transition of the swarm, worker and injection tables is driven by its real event
into a record in the old state and must land in the new state; every pair not in a table must
raise IllegalTransition (checked exhaustively on the tables, and through the reducers for a
sample of illegal events).
"""

from __future__ import annotations

import itertools

import pytest

from codeswarm import core
from codeswarm.core.kernel import Event
from codeswarm.core.states import (
    INJECTION_TRANSITIONS,
    SWARM_TRANSITIONS,
    WORKER_TRANSITIONS,
    IllegalTransition,
    InjectionState,
    SwarmState,
    WorkerState,
    move,
)
from tests.harness import Harness

TABLES = {"swarm": (SwarmState, SWARM_TRANSITIONS), "worker": (WorkerState, WORKER_TRANSITIONS),
          "injection": (InjectionState, INJECTION_TRANSITIONS)}


@pytest.mark.parametrize("kind", sorted(TABLES))
def test_move_allows_exactly_the_table(kind: str) -> None:
    states, table = TABLES[kind]
    assert set(table) == set(states)  # every state has a row
    for old, new in itertools.product(states, states):
        if new in table[old]:
            assert move(kind, old.value, new.value) == new
        else:
            with pytest.raises(IllegalTransition) as info:
                move(kind, old.value, new.value, "here")
            assert f"{old.value} -> {new.value}" in str(info.value) and "here" in str(info.value)


def test_unknown_state_names_are_illegal() -> None:
    with pytest.raises(IllegalTransition):
        move("swarm", "pending", "exploded")
    with pytest.raises(IllegalTransition):
        move("worker", "zombie", "running")


def test_terminal_states_have_no_way_out() -> None:
    assert SWARM_TRANSITIONS[SwarmState.TERMINATED] == frozenset()
    assert INJECTION_TRANSITIONS[InjectionState.COMPLETED] == INJECTION_TRANSITIONS[InjectionState.FAILED] == frozenset()


# ---------------------------------------------------------------- through the reducers


def fresh() -> tuple[Harness, str]:
    h = Harness()
    swarm, _ = h.launch(nodes=1)
    return h, swarm.swarm_id


def reduce(h: Harness, name: str, **data: object) -> None:
    h.seq += 1
    core.reduce(h.state, Event(name, dict(data), 0.0, h.seq))


SWARM_EVENT = {
    SwarmState.RUNNING: lambda sid: ("swarm_status", {"swarm_id": sid, "state": "running", "running_at": 5.0}),
    SwarmState.PENDING: lambda sid: ("swarm_status", {"swarm_id": sid, "state": "pending"}),
    SwarmState.TERMINATING: lambda sid: ("swarm_status", {"swarm_id": sid, "state": "terminating"}),
    SwarmState.TERMINATED: lambda sid: ("swarm_terminated", {"swarm_id": sid, "reason": "r", "terminated_at": 9.0}),
}


@pytest.mark.parametrize("old, new", [(o, n) for o in SwarmState for n in SWARM_TRANSITIONS[o]])
def test_every_allowed_swarm_transition_through_its_event(old: SwarmState, new: SwarmState) -> None:
    h, sid = fresh()
    h.state.swarms[sid].state = old.value
    name, data = SWARM_EVENT[new](sid)
    reduce(h, name, **data)
    sw = h.state.swarms[sid]
    assert sw.state == new.value
    if new == SwarmState.TERMINATING:
        assert sw.prev_state == old.value
    if new == SwarmState.TERMINATED:
        assert (sw.terminated_at, sw.termination_reason) == (9.0, "r")


@pytest.mark.parametrize("old, new", [(SwarmState.TERMINATED, SwarmState.RUNNING),
                                      (SwarmState.TERMINATED, SwarmState.TERMINATED),
                                      (SwarmState.RUNNING, SwarmState.PENDING)])
def test_illegal_swarm_events_raise(old: SwarmState, new: SwarmState) -> None:
    h, sid = fresh()
    h.state.swarms[sid].state = old.value
    name, data = SWARM_EVENT[new](sid)
    with pytest.raises(IllegalTransition):
        reduce(h, name, **data)
    assert h.state.swarms[sid].state == old.value  # nothing half-applied


def test_a_repeated_announcement_is_not_a_transition() -> None:
    h, sid = fresh()
    reduce(h, "swarm_status", swarm_id=sid, state="terminating")
    reduce(h, "swarm_status", swarm_id=sid, state="terminating")  # swarm_terminate while terminating
    assert h.state.swarms[sid].prev_state == "pending"
    reduce(h, "swarm_terminated", swarm_id=sid, reason="r", terminated_at=1.0)
    reduce(h, "swarm_terminated", swarm_id=sid, reason="r", already_terminated=True)  # the repeat
    assert h.state.swarms[sid].terminated_at == 1.0


@pytest.mark.parametrize("old, new", [(o, n) for o in WorkerState for n in WORKER_TRANSITIONS[o]])
def test_every_allowed_worker_transition_through_node_status(old: WorkerState, new: WorkerState) -> None:
    h, sid = fresh()
    node = h.state.swarms[sid].nodes[0]
    node.worker = old.value
    reduce(h, "node_status", swarm_id=sid, node_id=0, worker=new.value, started_at=3.0, exit_code=2,
           exit_reason="error", last_heartbeat_at=3.0)
    assert node.worker == new.value
    if new == WorkerState.EXITED:
        assert (node.exit_code, node.exit_reason) == (2, "error")
    if new == WorkerState.RUNNING:
        assert node.started_at == 3.0


@pytest.mark.parametrize("old, new", [(WorkerState.RUNNING, WorkerState.NOT_STARTED),
                                      (WorkerState.EXITED, WorkerState.STALE),
                                      (WorkerState.STALE, WorkerState.STALE)])
def test_illegal_worker_events_raise(old: WorkerState, new: WorkerState) -> None:
    h, sid = fresh()
    h.state.swarms[sid].nodes[0].worker = old.value
    with pytest.raises(IllegalTransition):
        reduce(h, "node_status", swarm_id=sid, node_id=0, worker=new.value)


INJECTION_EVENT = {InjectionState.DELIVERED: "inject_delivered", InjectionState.STARTED: "turn_started",
                   InjectionState.COMPLETED: "turn_complete", InjectionState.FAILED: "inject_failed"}


def with_injection(state: InjectionState) -> tuple[Harness, str, str]:
    h, sid = fresh()
    reduce(h, "inject_ack", swarm_id=sid, node_id=0, injection_id="i1", prompt="p", acked_at=1.0)
    h.state.swarms[sid].injections["i1"].state = state.value
    return h, sid, "i1"


@pytest.mark.parametrize("old, new", [(o, n) for o in InjectionState for n in INJECTION_TRANSITIONS[o]])
def test_every_allowed_injection_transition_through_its_event(old: InjectionState, new: InjectionState) -> None:
    h, sid, iid = with_injection(old)
    reduce(h, INJECTION_EVENT[new], swarm_id=sid, node_id=0, injection_id=iid, turn_id="t7")
    inj = h.state.swarms[sid].injections[iid]
    assert inj.state == new.value and inj.turn_id == "t7"


@pytest.mark.parametrize("old, new", [(InjectionState.ACKED, InjectionState.STARTED),
                                      (InjectionState.ACKED, InjectionState.COMPLETED),
                                      (InjectionState.COMPLETED, InjectionState.STARTED),
                                      (InjectionState.FAILED, InjectionState.DELIVERED),
                                      (InjectionState.STARTED, InjectionState.FAILED)])
def test_illegal_injection_events_raise(old: InjectionState, new: InjectionState) -> None:
    h, sid, iid = with_injection(old)
    with pytest.raises(IllegalTransition):
        reduce(h, INJECTION_EVENT[new], swarm_id=sid, node_id=0, injection_id=iid)


def test_events_about_unknown_records_change_nothing() -> None:
    h, sid = fresh()
    before = h.state.swarms[sid].to_json()
    reduce(h, "turn_complete", swarm_id=sid, node_id=0, injection_id="no-such")
    reduce(h, "inject_delivered", swarm_id="no-such-swarm", node_id=0, injection_id="x")
    reduce(h, "some_event_of_a_newer_router", swarm_id=sid, anything=1)
    after = h.state.swarms[sid].to_json()
    assert {k: v for k, v in after.items() if k != "seq"} == {k: v for k, v in before.items() if k != "seq"}


def test_a_damaged_log_cannot_take_recovery_down(tmp_path) -> None:  # noqa: ANN001
    """Replay of an illegal sequence (a log from an incompatible router) is reported, not fatal."""
    import orjson

    from codeswarm.config import parse_config
    from codeswarm.router.app import Router

    config = parse_config({"cluster": {"local": {"workspace_root": str(tmp_path / "runs")}}}, None, base_dir=tmp_path)
    h, sid = fresh()
    h.set_state(h.state.swarms[sid], "running")
    lines = [orjson.dumps({"event": name, "seq": seq, "data": data}) + b"\n" for seq, name, data, _ in h.log]
    lines.append(orjson.dumps({"event": "swarm_status", "seq": len(lines) + 1,
                               "data": {"swarm_id": sid, "state": "pending"}}) + b"\n")  # running -> pending
    home = tmp_path / "home"
    r = Router(config, home, {})
    r.log.append(lines, r.log.next_seq())
    r.log.close()
    r = Router(config, home, {})
    r.recover()
    assert r.state.swarms[sid].state == "running"
    assert any(w["error_code"] == "event_replay_failed" and "could not replay swarm_status" in w["message"]
               and "running -> pending" in w["message"] for w in r.recovery_warnings)
