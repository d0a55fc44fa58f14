"""The router's pure core (sans-IO): no I/O, no clock, no randomness.

    decision = decide(state, input, now, ids)  -> Decision(events, effects)
    reduce(state, event)                       -> state (the only writer of core state)

Features (one module each) contribute deciders (by input type) and reducers (by event name);
a new feature writes its module with a FEATURE and adds it to FEATURES below. docs/ARCHITECTURE.md
has the map; kernel.py the rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from codeswarm.core import approvals, lifecycle, nodeloss, observe, project_budget, projects, queue, spend, ticks, turns
from codeswarm.core.kernel import Decision, Event, Feature, Ids, InboxLine, Out, Registry, StartTerminate
from codeswarm.core.records import CoreState

FEATURES: tuple[Feature, ...] = (
    lifecycle.FEATURE,
    turns.FEATURE,
    approvals.FEATURE,
    queue.FEATURE,
    observe.FEATURE,
    ticks.FEATURE,
    projects.FEATURE,
    spend.FEATURE,
    project_budget.FEATURE,
    nodeloss.FEATURE,
)

REGISTRY = Registry(FEATURES)

# decide(state, input, now, ids) -> Decision: what should happen for `input` at `now` (pure).
# reduce(state, event) -> state: fold one event into `state` (in place) and return it.
# Bound methods rather than wrappers: both run once per outbox line / event on the hot path.
decide: Callable[[CoreState, Any, float, Ids], Decision] = REGISTRY.decide
reduce: Callable[[CoreState, Event], CoreState] = REGISTRY.reduce


__all__ = ["CoreState", "Decision", "Event", "FEATURES", "Feature", "Ids", "InboxLine", "Out", "StartTerminate",
           "decide", "reduce"]
