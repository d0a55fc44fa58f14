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
