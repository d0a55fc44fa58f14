"""Wall-clock jumps. The router's deadlines (inject timeout, stale nodes, TTLs) compare the injected
`now` (time.time in the router) with recorded wall times; its intervals (polling, ticks) run on
trio's monotonic clock. A jump backwards must not expire, fail or remove anything early; a jump
forwards counts as elapsed time (documented in docs/RELIABILITY.md).
"""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from tests.harness import T0, Harness


class Clocked(Harness):
    """The shared core harness with one swarm `s1` and a tick that returns what it fired."""

    def swarm(self, nodes: int = 1) -> Any:
        sw, _ = self.launch(nodes=nodes)
        self.start(sw)
        return sw

    def line(self, sw: Any, node: int, event: str, data: dict[str, Any], iid: str | None = None) -> None:
        self.lifecycle(sw, node, event, data, iid)

    def tick_at(self, now: float) -> list[str]:
        mark = self.mark()
        self.at(now).tick()
        return self.names(after=mark)


def test_backwards_jump_fails_no_injection_and_marks_no_node_stale() -> None:
    c = Clocked(inject_timeout_seconds=60, worker_heartbeat_timeout_seconds=60)
    sw = c.swarm(2)
    c.inject(sw, [0, 1])
    for back in (1, 3600, 86_400 * 365):
        assert c.tick_at(T0 - back) == [], f"a jump back by {back} s changed something"
    # back to normal time: the deadlines still count from the recorded times
    assert c.tick_at(T0 + 59) == []
    late = c.tick_at(T0 + 61)
    assert late.count("inject_failed") == 2


def test_backwards_jump_removes_no_terminated_swarm_early() -> None:
    c = Clocked(terminated_ttl_seconds=900)
    sw = c.swarm(1)
    c.terminated(sw)
    assert c.tick_at(T0 - 86_400) == []
    assert c.tick_at(T0 + 899) == []
    assert c.tick_at(T0 + 901) == ["swarm_removed"]


def test_forward_jump_counts_as_elapsed_time() -> None:
    """What an NTP step forward does: deadlines that the jump crosses fire (not silently skipped)."""
    c = Clocked(inject_timeout_seconds=60, worker_heartbeat_timeout_seconds=30)
    sw = c.swarm(1)
    c.inject(sw, [0])
    fired = c.tick_at(T0 + 3600)
    assert "node_status" in fired  # the silent node is stale
    assert sw.nodes[0].worker == "stale"
    # a node that speaks again is running again: a jump costs one stale report, not the node
    c.line(sw, 0, "heartbeat", {"busy": False})
    assert sw.nodes[0].worker == "running"


def test_intervals_run_on_trios_clock_not_the_wall_clock() -> None:
    """The router's periodic loops sleep on trio's clock: a wall-clock jump cannot stall or rush them.
    With trio's MockClock, a ticker of 1 s fires once per virtual second whatever time.time says."""
    ticks: list[float] = []

    async def ticker() -> None:
        while len(ticks) < 5:
            await trio.sleep(1.0)
            ticks.append(trio.current_time())

    clock = trio.testing.MockClock(autojump_threshold=0)
    trio.run(ticker, clock=clock)
    assert [round(b - a, 6) for a, b in zip(ticks, ticks[1:])] == [1.0] * 4
