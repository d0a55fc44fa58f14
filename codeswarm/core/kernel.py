"""The core's machinery: events, effects, the decision builder, features, decide and reduce.

    decision = decide(state, input, now, ids)   # pure: reads state, returns events + effects
    for event in decision.events:               # the shell numbers, reduces, logs, fans out
        reduce(state, event)
    ... then the shell carries out decision.effects (after the events are durable)

`reduce` is the only writer of core state, live and on replay, and reads no clock: every time
it stores comes from the event's data. A decider never reads back what it emitted (nothing is
applied until the shell reduces); what a multi-step decision must remember lives in `Out`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from codeswarm.core.records import CoreState

Ids = Callable[[], str]


@dataclass(frozen=True, slots=True)
class Event:
    """One state change or notice. `data` is the wire `data` object (plus the private `_record`
    of swarm_launched); `ts` is the decision's `now` (the envelope timestamp; reducers never
    read it); `seq` is assigned by the shell when it logs the event."""

    name: str
    data: dict[str, Any]
    ts: float = 0.0
    seq: int = 0


@dataclass(frozen=True, slots=True)
class InboxLine:
    """Effect: append `line` to node `node_id`'s inbox of `swarm_id`."""

    swarm_id: str
    node_id: int
    line: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StartTerminate:
    """Effect: run the terminate procedure for a swarm (PROTOCOL.md 4.5)."""

    swarm_id: str
    reason: str
    force: bool = True


Effect = InboxLine | StartTerminate


@dataclass
class Decision:
    events: list[Event] = field(default_factory=list)
    effects: list[Any] = field(default_factory=list)


class Out:
    """Collects one decision's events and effects, plus the facts a multi-step decision needs
    about its own earlier steps (the state does not change until the shell reduces)."""

    __slots__ = ("now", "ids", "events", "effects", "claimed_nodes", "resolved_approvals", "queues",
                 "closed_injections")

    def __init__(self, now: float, ids: Ids) -> None:
        self.now = now
        self.ids = ids
        self.events: list[Event] = []
        self.effects: list[Any] = []
        self.claimed_nodes: set[tuple[str, int]] = set()  # nodes given an injection in this decision
        self.resolved_approvals: set[str] = set()  # approval ids resolved in this decision
        self.queues: dict[str, list[dict[str, Any]]] = {}  # swarm_id -> queue as this decision left it
        self.closed_injections: set[str] = set()  # injection ids failed or completed in this decision

    def emit(self, name: str, data: dict[str, Any]) -> None:
        self.events.append(Event(name, data, self.now))

    def effect(self, effect: Any) -> None:
        self.effects.append(effect)

    def decision(self) -> Decision:
        return Decision(self.events, self.effects)


Decider = Callable[[CoreState, Any, float, Ids, Out], None]
Reducer = Callable[[CoreState, Event], None]


@dataclass(frozen=True)
class Feature:
    """What a part of the core contributes: deciders by input type, reducers by event name."""

    name: str
    deciders: Mapping[type, Decider] = field(default_factory=dict)
    reducers: Mapping[str, Reducer] = field(default_factory=dict)


class Registry:
    def __init__(self, features: tuple[Feature, ...]) -> None:
        self.deciders: dict[type, Decider] = {}
        self.reducers: dict[str, Reducer] = {}
        for feat in features:
            for typ, fn in feat.deciders.items():
                if typ in self.deciders:
                    raise ValueError(f"{feat.name}: input {typ.__name__} already has a decider")
                self.deciders[typ] = fn
            for name, red in feat.reducers.items():
                if name in self.reducers:
                    raise ValueError(f"{feat.name}: event {name} already has a reducer")
                self.reducers[name] = red

    def decide(self, state: CoreState, inp: Any, now: float, ids: Ids) -> Decision:
        fn = self.deciders.get(type(inp))
        if fn is None:
            raise TypeError(f"no decider for {type(inp).__name__}")
        out = Out(now, ids)
        fn(state, inp, now, ids, out)
        return out.decision()

    def reduce(self, state: CoreState, event: Event) -> CoreState:
        """Fold one event into the state (in place; returns it). Deterministic: replay uses it."""
        data = event.data
        red = self.reducers.get(event.name)
        if red is not None:
            red(state, event)
        sid = data.get("swarm_id") or data.get("target_swarm_id")
        swarm = state.swarms.get(sid) if isinstance(sid, str) else None
        if swarm is None:
            return state
        swarm.seq = event.seq
        node_id = data.get("node_id")
        oseq = data.get("outbox_seq")
        if isinstance(oseq, int) and isinstance(node_id, int) and 0 <= node_id < swarm.node_count:
            node = swarm.nodes[node_id]
            if oseq > node.outbox_seq:
                node.outbox_seq = oseq
        return state
