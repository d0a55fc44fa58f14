"""Unit-test helpers: a RouterCore driven by a collecting sink and an explicit fake clock.

The sink does what the router's emit does, minus the I/O: it numbers the event, keeps a
copy as the log would (an orjson round trip), and folds it into the core with `apply`.
Time is whatever the test puts in `h.now`; nothing here reads a real clock.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import orjson
import pytest

from codeswarm.config import RouterSettings
from codeswarm.router.core import InboxLine, RouterCore
from codeswarm.router.model import Swarm

T0 = 1_750_000_000.0  # an arbitrary epoch second: the fake clock's start


class Harness:
    def __init__(self, **settings: Any) -> None:
        self.settings = dataclasses.replace(RouterSettings(), **settings)
        self.now = T0
        self.seq = 0
        self.log: list[tuple[int, str, dict[str, Any], float]] = []  # (seq, name, logged copy, now)
        self.core = RouterCore(self._sink, self.settings)
        self._outbox_seq: dict[tuple[str, int], int] = {}
        self._launches = 0

    # ------------------------------------------------------------------ the sink

    def _sink(self, name: str, data: dict[str, Any]) -> None:
        self.seq += 1
        self.log.append((self.seq, name, orjson.loads(orjson.dumps(data)), self.now))
        self.core.apply(name, data, self.seq, self.now)

    def mark(self) -> int:
        """Position in the log; events(after=mark) gives what happened since."""
        return len(self.log)

    def events(self, *, after: int = 0, **match: Any) -> list[tuple[str, dict[str, Any]]]:
        """(name, data) of logged events, optionally filtered by equal data fields."""
        return [
            (name, data)
            for _seq, name, data, _now in self.log[after:]
            if all(data.get(k) == v for k, v in match.items())
        ]

    def names(self, *, after: int = 0, **match: Any) -> list[str]:
        return [name for name, _ in self.events(after=after, **match)]

    def at(self, now: float) -> "Harness":
        self.now = now
        return self

    # ------------------------------------------------------------------ driving the core

    def launch(self, nodes: int = 2, system_prompt: str = "", request_id: str = "req-launch",
               **params: Any) -> tuple[Swarm, list[InboxLine]]:
        self._launches += 1
        swarm_id = f"swarm-{self._launches}"
        job = {"job_id": f"local-{self._launches:04x}", "swarm_root": f"/tmp/none/{self._launches}",
               "backend": "local", "profile": None, "extra": {}}
        actions = self.core.launch(
            request_id=request_id, swarm_id=swarm_id, job=job, node_count=nodes, provider="local",
            # codex reports thread status itself; the router's synthesized one (mock, claude) has its own test
            provider_id="local-codex", params={"worker_mode": "codex", **params},
            system_prompt=system_prompt, now=self.now,
        )
        return self.core.swarms[swarm_id], actions

    def inject(self, swarm: Swarm, nodes: list[int], content: str = "hello",
               request_id: str = "req-inject") -> dict[int, str]:
        """Inject; returns node_id -> injection_id from the inject_ack events."""
        mark = self.mark()
        self.core.inject(swarm, nodes, content, request_id, self.now)
        return {d["node_id"]: d["injection_id"] for n, d in self.events(after=mark) if n == "inject_ack"}

    def _next_outbox_seq(self, swarm: Swarm, node_id: int) -> int:
        key = (swarm.swarm_id, node_id)
        self._outbox_seq[key] = self._outbox_seq.get(key, 0) + 1
        return self._outbox_seq[key]

    def lifecycle(self, swarm: Swarm, node_id: int, event: str, data: dict[str, Any] | None = None,
                  injection_id: str | None = None) -> None:
        line = {"seq": self._next_outbox_seq(swarm, node_id), "ts": self.now, "job_id": swarm.job_id,
                "node_id": node_id, "injection_id": injection_id, "type": "lifecycle", "event": event,
                "data": data or {}}
        swarm.nodes[node_id].last_line_at = self.now  # what the ingest does for every line
        self.core.on_lifecycle(swarm, node_id, line, self.now)

    def start(self, swarm: Swarm, *node_ids: int) -> None:
        for n in node_ids or range(swarm.node_count):
            self.lifecycle(swarm, n, "worker_started", {"hostname": "h", "pid": 1, "runtime": "mock",
                                                         "worker_protocol": 1})

    def accept(self, swarm: Swarm, node_id: int, injection_id: str, queued: bool = False) -> None:
        self.lifecycle(swarm, node_id, "turn_accepted", {"queued": queued}, injection_id=injection_id)

    def runtime(self, swarm: Swarm, node_id: int, injection_id: str | None,
                *events: tuple[str, dict[str, Any]]) -> None:
        seq = self._next_outbox_seq(swarm, node_id)
        swarm.nodes[node_id].last_line_at = self.now
        self.core.on_runtime_events(swarm, node_id, injection_id, list(events), seq, self.now)

    def exit(self, swarm: Swarm, node_id: int, reason: str = "error", exit_code: int = 1) -> None:
        self.lifecycle(swarm, node_id, "worker_exited", {"exit_code": exit_code, "reason": reason})

    def turn(self, swarm: Swarm, node_id: int, injection_id: str) -> None:
        """A whole mock turn: accepted, started, some content, completed."""
        self.accept(swarm, node_id, injection_id)
        self.runtime(swarm, node_id, injection_id, ("turn_started", {"turn_id": "t1"}))
        self.runtime(swarm, node_id, injection_id, ("assistant_delta", {"content": "hi"}))
        self.runtime(swarm, node_id, injection_id, ("turn_complete", {"turn_id": "t1"}))

    def replayed(self) -> RouterCore:
        """A fresh core with the logged copies applied, as recovery does."""
        fresh = RouterCore(lambda name, data: pytest.fail(f"replay emitted {name}"), self.settings)
        for seq, name, data, now in self.log:
            fresh.apply(name, orjson.loads(orjson.dumps(data)), seq, now)
        return fresh


@pytest.fixture
def make_harness() -> Callable[..., Harness]:
    return Harness


@pytest.fixture
def h() -> Harness:
    return Harness()
