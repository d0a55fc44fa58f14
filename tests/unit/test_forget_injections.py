"""Closed injections beyond the newest KEEP_CLOSED_INJECTIONS are forgotten at each close (core/lifecycle.py):
the counting version keeps exactly what the plain rule keeps (every open one, the newest closed ones)."""

from __future__ import annotations

import random

from codeswarm.core.lifecycle import KEEP_CLOSED_INJECTIONS, _forget_old_injections
from codeswarm.core.records import Injection, Swarm
from codeswarm.core.states import CLOSED_INJECTION_STATES

STATES = ["acked", "delivered", "started", "completed", "failed"]


def plain_rule(injections: dict[str, Injection]) -> list[str]:
    closed = [iid for iid, inj in injections.items() if inj.state in CLOSED_INJECTION_STATES]
    doomed = set(closed[: max(0, len(closed) - KEEP_CLOSED_INJECTIONS)])
    return [iid for iid in injections if iid not in doomed]


def test_forgetting_keeps_every_open_and_the_newest_closed_injections() -> None:
    rnd = random.Random(7)
    for trial in range(60):
        count = rnd.choice([KEEP_CLOSED_INJECTIONS - 1, KEEP_CLOSED_INJECTIONS + 1, 300, 600])
        closed_share = rnd.random()
        swarm = Swarm("s", "j", 1, "running", "local", "p", "mock", None, "", 0.0, {}, {}, [])
        for i in range(count):
            state = rnd.choice(STATES[3:]) if rnd.random() < closed_share else rnd.choice(STATES[:3])
            swarm.injections[f"i{i}"] = Injection(f"i{i}", 0, None, "", state, 0.0)
        expected = plain_rule(swarm.injections)
        _forget_old_injections(swarm)
        assert list(swarm.injections) == expected, trial
        assert sum(inj.state in CLOSED_INJECTION_STATES for inj in swarm.injections.values()) <= KEEP_CLOSED_INJECTIONS


def test_the_reducers_count_of_closed_injections_keeps_the_same_set() -> None:
    """Through the reducers (acks, also of an id seen before, deliveries, starts, completions,
    failures in random order), with the count kept between closes: after every event the swarm
    holds what the plain rule keeps, and its snapshot bytes are to_json()'s (the memo is not in it)."""
    import orjson

    from codeswarm.core import reduce
    from codeswarm.core.kernel import Event
    from codeswarm.core.records import CoreState, Node

    rnd = random.Random(11)
    state = CoreState()
    swarm = Swarm("s", "j", 1, "running", "local", "p", "mock", None, "", 0.0, {}, {}, [Node(0)])
    state.swarms["s"] = swarm
    nxt = {"acked": ["delivered", "failed"], "delivered": ["started", "completed", "failed"], "started": ["completed"]}
    name = {"delivered": "inject_delivered", "started": "turn_started", "completed": "turn_complete",
            "failed": "inject_failed"}
    seq, made = 0, 0
    for _ in range(3000):
        seq += 1
        open_ids = [iid for iid, inj in swarm.injections.items() if inj.state in nxt]
        if not open_ids or rnd.random() < 0.35:
            made += 1
            iid = f"i{rnd.randrange(made)}" if rnd.random() < 0.05 else f"i{made}"  # sometimes an id seen before
            ev = Event("inject_ack", {"swarm_id": "s", "node_id": 0, "injection_id": iid, "acked_at": 1.0}, 0.0, seq)
        else:
            iid = rnd.choice(open_ids)
            to = rnd.choice(nxt[swarm.injections[iid].state])
            ev = Event(name[to], {"swarm_id": "s", "node_id": 0, "injection_id": iid}, 0.0, seq)
        before = dict(swarm.injections)
        reduce(state, ev)
        if ev.name in ("turn_complete", "inject_failed"):  # `before` holds the same (moved) records
            assert list(swarm.injections) == plain_rule(before)
    assert orjson.dumps(swarm) == orjson.dumps(swarm.to_json())
    assert "_closed_injections" in swarm.__dict__
