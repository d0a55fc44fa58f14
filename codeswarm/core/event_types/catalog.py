"""The registry: every declared event by name (built from the feature modules of this package)."""

from codeswarm.core.event_types import approvals, budgets, control, projects, queues, swarms, turns
from codeswarm.core.event_types.registry import EventType


def _by_name(*groups: tuple[EventType, ...]) -> dict[str, EventType]:
    out: dict[str, EventType] = {}
    for group in groups:
        for et in group:
            if et.name in out:
                raise ValueError(f"event {et.name} declared twice ({out[et.name].feature}, {et.feature})")
            out[et.name] = et
    return out


EVENTS: dict[str, EventType] = _by_name(swarms.EVENTS, turns.EVENTS, approvals.EVENTS, queues.EVENTS,
                                        budgets.EVENTS, control.EVENTS, projects.EVENTS)
