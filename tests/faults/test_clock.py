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


def test_the_router_ticker_runs_on_trios_clock_not_the_wall_clock(tmp_path: Any) -> None:
    """The router's real ticker sleeps on trio's clock: with the wall clock jumping back a day and
    forward a year between ticks, it still decides exactly one Tick per (virtual) second."""
    from codeswarm.config import parse_config
    from codeswarm.core.ticks import Tick
    from codeswarm.router.server import RouterServer

    config = parse_config({"cluster": {"local": {"workspace_root": str(tmp_path / "runs")}}}, None,
                          base_dir=tmp_path)
    server = RouterServer(config, tmp_path / "home")
    r = server.router
    walls = iter([T0, T0 - 86_400, T0 + 365 * 86_400, T0, T0 - 1, T0 + 10, T0, T0])
    r._now = lambda: next(walls)
    ticks: list[float] = []
    real_decide = r.decide

    def decide(inp: Any) -> Any:
        if isinstance(inp, Tick):
            ticks.append(trio.current_time())
        return real_decide(inp)

    r.decide = decide  # type: ignore[method-assign]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            r.nursery = nursery
            nursery.start_soon(r.committer)
            nursery.start_soon(server._ticker)
            await trio.sleep(5.5)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert [round(b - a, 6) for a, b in zip(ticks, ticks[1:])] == [1.0] * 4 and len(ticks) == 5
