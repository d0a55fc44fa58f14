"""What one declared event is: its name, its data shape, how it is delivered, where it is documented.

Each feature module of this package lists its events as `EventType`s; `event_types/__init__.py`
gathers them into `EVENTS`. The shape is a TypedDict: its required and NotRequired keys are the
event's data keys, its annotations their JSON types, its docstring what the event means and who
emits it. Nothing on the router's hot path reads this: tests check events against it
(event_types/check.py).
"""

from dataclasses import dataclass
from typing import Literal

Delivery = Literal["broadcast", "directed", "both"]


@dataclass(frozen=True, slots=True)
class EventType:
    name: str
    shape: type  # a TypedDict class
    delivery: Delivery  # PROTOCOL.md 3.3: logged + fanned out, or the answer to one connection
    documented: str  # where the wire contract says it exists: "PROTOCOL.md 5.3", "docs/SPEND.md", ...
    feature: str = ""

    @property
    def doc(self) -> str:
        return (self.shape.__doc__ or "").strip()


def declare(feature: str, *events: EventType) -> tuple[EventType, ...]:
    """The events of one feature, tagged with its name."""
    return tuple(EventType(e.name, e.shape, e.delivery, e.documented, feature) for e in events)
