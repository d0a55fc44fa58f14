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
from typing import Any, NamedTuple

from codeswarm.core.records import CoreState

Ids = Callable[[], str]


class Event(NamedTuple):
    """One state change or notice (immutable; a NamedTuple because one is made per event on the
    ingest's hot path). `data` is the wire `data` object (plus the private `_record` of
    swarm_launched); `ts` is the decision's `now` (the envelope timestamp; reducers never read
    it); `seq` is assigned by the shell when it logs the event."""

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


class Decision(NamedTuple):
    """What a decision produced: events to log (in order) and effects for the shell."""

    events: list[Event]
    effects: list[Any]


# tuple.__new__ builds a NamedTuple without the Python-level __new__ frame: the decide path makes one
# Event per event and one Decision per outbox line (every field is given, in order).
_new = tuple.__new__


class Out:
    """Collects one decision's events and effects, plus the facts a multi-step decision needs
    about its own earlier steps (the state does not change until the shell reduces)."""

    __slots__ = ("now", "ids", "events", "effects", "_claimed", "_resolved", "_queues", "_closed")

    def __init__(self, now: float, ids: Ids) -> None:
        self.now = now
        self.ids = ids
        self.events: list[Event] = []
        self.effects: list[Any] = []
        # Made on first use: most decisions (one outbox line) need none of them.
        self._claimed: set[tuple[str, int]] | None = None
        self._resolved: set[str] | None = None
        self._queues: dict[str, list[dict[str, Any]]] | None = None
        self._closed: set[str] | None = None

    @property
    def claimed_nodes(self) -> set[tuple[str, int]]:
        """(swarm_id, node_id) given an injection in this decision."""
        if self._claimed is None:
            self._claimed = set()
        return self._claimed

    @property
    def resolved_approvals(self) -> set[str]:
        """Approval ids resolved in this decision."""
        if self._resolved is None:
            self._resolved = set()
        return self._resolved

    @property
    def queues(self) -> dict[str, list[dict[str, Any]]]:
        """swarm_id -> its queue as this decision left it."""
        if self._queues is None:
            self._queues = {}
        return self._queues

    @property
    def closed_injections(self) -> set[str]:
        """Injection ids failed or completed in this decision."""
        if self._closed is None:
            self._closed = set()
        return self._closed

    def emit(self, name: str, data: dict[str, Any]) -> None:
        self.events.append(_new(Event, (name, data, self.now, 0)))  # = Event(name, data, self.now)

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
        return _new(Decision, (out.events, out.effects))

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
        offset = data.get("outbox_offset")
        if isinstance(node_id, int) and 0 <= node_id < swarm.node_count:
            node = swarm.nodes[node_id]
            if isinstance(offset, int) and offset > 0:  # the read position, by place in the file (#5)
                if offset > node.outbox_offset:
                    node.outbox_offset = offset
                    if isinstance(oseq, int):
                        node.outbox_seq = oseq
            elif isinstance(oseq, int) and oseq > node.outbox_seq:  # logs written before outbox_offset
                node.outbox_seq = oseq
        return state
