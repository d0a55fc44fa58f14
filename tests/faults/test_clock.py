"""Wall-clock jumps. The router's deadlines (inject timeout, stale nodes, TTLs) compare the injected
`now` (time.time in the router) with recorded wall times; its intervals (polling, ticks) run on
trio's monotonic clock. A jump backwards must not expire, fail or remove anything early; a jump
forwards counts as elapsed time (documented in docs/RELIABILITY.md).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import trio
import trio.testing

from codeswarm.config import RouterSettings
from codeswarm.router.core import RouterCore

T0 = 1_750_000_000.0


class Clocked:
    """A RouterCore whose sink numbers and applies events like the router, at an explicit `now`."""

    def __init__(self, **settings: Any) -> None:
        self.now = T0
        self.names: list[str] = []
        self.seq = 0
        self.core = RouterCore(self._sink, dataclasses.replace(RouterSettings(), **settings))
        self.outbox_seq = 0

    def _sink(self, name: str, data: dict[str, Any]) -> None:
        self.seq += 1
        self.names.append(name)
        self.core.apply(name, orjson.loads(orjson.dumps(data)), self.seq, self.now)

    def swarm(self, nodes: int = 1) -> Any:
        job = {"job_id": "local-1", "swarm_root": "/tmp/none", "backend": "local", "profile": None, "extra": {}}
        self.core.launch(request_id="r", swarm_id="s1", job=job, node_count=nodes, provider="local",
                         provider_id="p", params={"worker_mode": "codex"}, system_prompt="", now=self.now)
        sw = self.core.swarms["s1"]
        for n in range(nodes):
            self.line(sw, n, "worker_started", {"hostname": "h", "pid": 1})
        return sw

    def line(self, sw: Any, node: int, event: str, data: dict[str, Any], iid: str | None = None) -> None:
        self.outbox_seq += 1
        sw.nodes[node].last_line_at = self.now
        self.core.on_lifecycle(sw, node, {"seq": self.outbox_seq, "type": "lifecycle", "event": event,
                                          "data": data, "injection_id": iid}, self.now)

    def tick(self, now: float) -> list[str]:
        mark = len(self.names)
        self.now = now
        self.core.tick(now)
        return self.names[mark:]


def test_backwards_jump_fails_no_injection_and_marks_no_node_stale() -> None:
    c = Clocked(inject_timeout_seconds=60, worker_heartbeat_timeout_seconds=60)
    sw = c.swarm(2)
    c.core.inject(sw, [0, 1], "hello", "req", c.now)
    for back in (1, 3600, 86_400 * 365):
        assert c.tick(T0 - back) == [], f"a jump back by {back} s changed something"
    # back to normal time: the deadlines still count from the recorded times
    assert c.tick(T0 + 59) == []
    late = c.tick(T0 + 61)
    assert late.count("inject_failed") == 2


def test_backwards_jump_removes_no_terminated_swarm_early() -> None:
    c = Clocked(terminated_ttl_seconds=900)
    sw = c.swarm(1)
    c.core.terminated(sw, "requested", None, c.now)
    assert c.tick(T0 - 86_400) == []
    assert c.tick(T0 + 899) == []
    assert c.tick(T0 + 901) == ["swarm_removed"]


def test_forward_jump_counts_as_elapsed_time() -> None:
    """What an NTP step forward does: deadlines that the jump crosses fire (not silently skipped)."""
    c = Clocked(inject_timeout_seconds=60, worker_heartbeat_timeout_seconds=30)
    sw = c.swarm(1)
    c.core.inject(sw, [0], "hello", "req", c.now)
    fired = c.tick(T0 + 3600)
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
