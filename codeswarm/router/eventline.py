"""The log/wire line of an event, built without its envelope dict (this runs once per event).

    {"protocol":"codeswarm.router.v1","type":"event","timestamp":"...","event":NAME,"seq":N,"data":{...}}\n

The envelope's keys and order are fixed and `data` comes last, so the line is a cached head (per
decision timestamp and per event name), the seq, and orjson's bytes of `data`: byte for byte what
`orjson.dumps(make_event(...)) + b"\\n"` gives (tests/unit/test_eventline.py).
"""

from __future__ import annotations

from typing import Any

import orjson

from codeswarm.protocol import PROTOCOL, iso_timestamp

_PREFIX = b'{"protocol":' + orjson.dumps(PROTOCOL) + b',"type":"event","timestamp":'
_MAX_NAMES = 512  # event names come from code, a few dozen; bounded all the same


class LineEncoder:
    __slots__ = ("_ts", "_head", "_names")

    def __init__(self) -> None:
        self._ts: float | None = None
        self._head = b""
        self._names: dict[str, bytes] = {}

    def line(self, name: str, data: dict[str, Any], ts: float, seq: int) -> bytes:
        # A decision's events share its `now`: the timestamp is formatted once per decision.
        if ts != self._ts:
            self._head = _PREFIX + orjson.dumps(iso_timestamp(ts)) + b',"event":'
            self._ts = ts
        tail = self._names.get(name)
        if tail is None:
            if len(self._names) >= _MAX_NAMES:
                self._names.clear()
            tail = self._names[name] = orjson.dumps(name) + b',"seq":'
        # One concatenation: a compact block of its own (see Router._record on heap fragmentation).
        return b"".join((self._head, tail, str(seq).encode(), b',"data":', orjson.dumps(data), b"}\n"))
