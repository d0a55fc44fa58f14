"""The one test harness of the pure core: decide + reduce with a fake clock and counter ids.

It does what the router shell does, minus the I/O: `decide(input)` asks the core at `h.now`
with deterministic ids, numbers each event, keeps the copy the log would keep (an orjson round
trip), checks it against its declared shape (codeswarm/core/event_types: a mismatch fails the
test at once) and reduces the live event into `h.state`. Liveness (the shell's non-durable
`last_heard`) is kept here as the ingest keeps it. Nothing here reads a real clock.
Used by tests/unit (through conftest.py fixtures) and tests/faults.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import orjson

from codeswarm import core
from codeswarm.config import RouterSettings
from codeswarm.core import steps
from codeswarm.core.event_types import check_event
from codeswarm.core.evidence import JobObservation
from codeswarm.core.kernel import Decision, Event, InboxLine, Out
from codeswarm.core.lifecycle import Inject, Launch, Terminated
from codeswarm.core.observe import Observed
from codeswarm.core.records import CoreState, Swarm
from codeswarm.core.settings import CoreSettings
from codeswarm.core.ticks import Tick
from codeswarm.core.turns import LifecycleLine, RuntimeOutput

T0 = 1_750_000_000.0  # an arbitrary epoch second: the fake clock's start


class Harness:
    def __init__(self, *, check_events: bool = True, **settings: Any) -> None:
        self.check_events = check_events  # off only for a test that emits a wrong event on purpose
        self.settings = CoreSettings.of(dataclasses.replace(RouterSettings(), **settings))
        self.state = CoreState(settings=self.settings)
        self.now = T0
        self.seq = 0
        self.log: list[tuple[int, str, dict[str, Any], float]] = []  # (seq, name, logged copy, now)
        self.last_heard: dict[tuple[str, int], float] = {}
        self._counter = itertools.count(1)
        self._outbox_seq: dict[tuple[str, int], int] = {}
        self._launches = 0

    # ------------------------------------------------------------------ decide / record

    def ids(self) -> str:
        return f"id-{next(self._counter)}"

    def decide(self, inp: Any, now: float | None = None) -> Decision:
        decision = core.decide(self.state, inp, self.now if now is None else now, self.ids)
        self.record(decision.events)
        return decision

    def step(self, fn: Callable[[Out], None]) -> Decision:
        """Run one decision step function (e.g. steps.set_state) as a decision of its own."""
        out = Out(self.now, self.ids)
        fn(out)
        self.record(out.events)
        return out.decision()

    def record(self, events: list[Event]) -> None:
        for ev in events:
            self.seq += 1
            logged = orjson.loads(orjson.dumps(ev.data))
            problems = check_event(ev.name, logged)  # every event against codeswarm/core/event_types
            if problems and self.check_events:
                raise AssertionError(f"event {ev.name} does not match its declared shape: {problems}")
            self.log.append((self.seq, ev.name, logged, ev.ts))
            core.reduce(self.state, Event(ev.name, ev.data, ev.ts, self.seq))

    def mark(self) -> int:
        """Position in the log; events(after=mark) gives what happened since."""
        return len(self.log)

    def events(self, *, after: int = 0, **match: Any) -> list[tuple[str, dict[str, Any]]]:
        """(name, data) of logged events, optionally filtered by equal data fields."""
        return [(name, data) for _seq, name, data, _now in self.log[after:]
                if all(data.get(k) == v for k, v in match.items())]

    def names(self, *, after: int = 0, **match: Any) -> list[str]:
        return [name for name, _ in self.events(after=after, **match)]

    def at(self, now: float) -> "Harness":
        self.now = now
        return self

    def replayed(self) -> CoreState:
        """A fresh state with the logged copies reduced, as recovery does (no clock, no decisions)."""
        fresh = CoreState(settings=self.settings)
        for seq, name, data, _now in self.log:
            core.reduce(fresh, Event(name, orjson.loads(orjson.dumps(data)), 0.0, seq))
        return fresh

    # ------------------------------------------------------------------ driving the core

    def launch(self, nodes: int = 2, system_prompt: str = "", request_id: str = "req-launch",
               **params: Any) -> tuple[Swarm, list[InboxLine]]:
        self._launches += 1
        swarm_id = f"swarm-{self._launches}"
        job = {"job_id": f"local-{self._launches:04x}", "swarm_root": f"/tmp/none/{self._launches}",
               "backend": "local", "profile": None, "extra": {}}
        decision = self.decide(Launch(
            request_id=request_id, swarm_id=swarm_id, job=job, node_count=nodes, provider="local",
            # codex reports thread status itself; the router's synthesized one (mock, claude) has its own test
            provider_id="local-codex", params={"worker_mode": "codex", **params}, system_prompt=system_prompt))
        return self.state.swarms[swarm_id], [e for e in decision.effects if isinstance(e, InboxLine)]

    def inject_lines(self, swarm: Swarm, nodes: list[int], content: str = "hello", request_id: str | None = "req-inject",
                     origin: list[Any] | None = None) -> list[InboxLine]:
        """Inject; returns the inbox lines to append."""
        decision = self.decide(Inject(swarm.swarm_id, nodes, content, request_id, origin))
        return [e for e in decision.effects if isinstance(e, InboxLine)]

    def inject(self, swarm: Swarm, nodes: list[int], content: str = "hello",
               request_id: str = "req-inject") -> dict[int, str]:
        """Inject; returns node_id -> injection_id from the inject_ack events."""
        mark = self.mark()
        self.inject_lines(swarm, nodes, content, request_id)
        return {d["node_id"]: d["injection_id"] for n, d in self.events(after=mark) if n == "inject_ack"}

    def _next_outbox_seq(self, swarm: Swarm, node_id: int) -> int:
        key = (swarm.swarm_id, node_id)
        self._outbox_seq[key] = self._outbox_seq.get(key, 0) + 1
        return self._outbox_seq[key]

    def lifecycle(self, swarm: Swarm, node_id: int, event: str, data: dict[str, Any] | None = None,
                  injection_id: str | None = None) -> Decision:
        line = {"seq": self._next_outbox_seq(swarm, node_id), "ts": self.now, "job_id": swarm.job_id,
                "node_id": node_id, "injection_id": injection_id, "type": "lifecycle", "event": event,
                "data": data or {}}
        self.last_heard[(swarm.swarm_id, node_id)] = self.now  # what the ingest does for every line
        return self.decide(LifecycleLine(swarm.swarm_id, node_id, line))

    def start(self, swarm: Swarm, *node_ids: int) -> None:
        for n in node_ids or range(swarm.node_count):
            self.lifecycle(swarm, n, "worker_started", {"hostname": "h", "pid": 1, "runtime": "mock",
                                                         "worker_protocol": 1})

    def accept(self, swarm: Swarm, node_id: int, injection_id: str, queued: bool = False) -> None:
        self.lifecycle(swarm, node_id, "turn_accepted", {"queued": queued}, injection_id=injection_id)

    def runtime(self, swarm: Swarm, node_id: int, injection_id: str | None,
                *events: tuple[str, dict[str, Any]]) -> Decision:
        seq = self._next_outbox_seq(swarm, node_id)
        self.last_heard[(swarm.swarm_id, node_id)] = self.now
        return self.decide(RuntimeOutput(swarm.swarm_id, node_id, injection_id, list(events), seq))

    def exit(self, swarm: Swarm, node_id: int, reason: str = "error", exit_code: int = 1) -> None:
        self.lifecycle(swarm, node_id, "worker_exited", {"exit_code": exit_code, "reason": reason})

    def turn(self, swarm: Swarm, node_id: int, injection_id: str) -> None:
        """A whole mock turn: accepted, started, some content, completed."""
        self.accept(swarm, node_id, injection_id)
        self.runtime(swarm, node_id, injection_id, ("turn_started", {"turn_id": "t1"}))
        self.runtime(swarm, node_id, injection_id, ("assistant_delta", {"content": "hi"}))
        self.runtime(swarm, node_id, injection_id, ("turn_complete", {"turn_id": "t1"}))

    def tick(self) -> Decision:
        return self.decide(Tick(self.last_heard))

    def terminated(self, swarm: Swarm, reason: str = "requested", request_id: str | None = None,
                   scheduler_state: str | None = None) -> Decision:
        return self.decide(Terminated(swarm.swarm_id, reason, request_id, scheduler_state))

    def observe(self, swarm: Swarm, obs: JobObservation, now: float | None = None) -> Decision:
        return self.decide(Observed(swarm.swarm_id, obs), now)

    def set_state(self, swarm: Swarm, state: str, request_id: str | None = None) -> Decision:
        return self.step(lambda out: steps.set_state(out, swarm, state, request_id))
