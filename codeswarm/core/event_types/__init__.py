"""Every event the router emits: its name, its data shape (a TypedDict), its meaning, by feature.

    EVENTS["inject_ack"].shape      # the TypedDict of its data
    EVENTS["inject_ack"].doc        # what it means and who emits it
    check_event(name, data)         # -> problems (unknown name, missing/unknown key, wrong type)

The wire contract is ../shared/spec/PROTOCOL.md plus docs/PROTOCOL.md (and the documents it
names); `documented` says where each event is. Declared here, checked in the tests only
(tests/unit/test_event_types.py, the harness and in-process router hooks in tests/conftest.py,
tests/integration/test_event_log_shapes.py): the router's hot path never imports this package.
"""

from codeswarm.core.event_types.catalog import EVENTS
from codeswarm.core.event_types.check import GLOBAL_OPTIONAL, check_event
from codeswarm.core.event_types.registry import EventType

__all__ = ["EVENTS", "EventType", "GLOBAL_OPTIONAL", "check_event"]
