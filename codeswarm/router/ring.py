"""The replay ring: the most recent committed events in memory, bounded in bytes, not in count.

A count bound let a burst of large events (1 MiB lines, command output) hold hundreds of MB, and the
router kept its high-water mark. Here every event costs len(wire) + EVENT_OVERHEAD (the record, its
keys, the bytes object's header), and the oldest go once the sum passes `budget`. A `subscribe
{since}` older than the ring reads the log on disk instead (router/app.py `replay`), so the budget
only trades memory for replay speed. After a burst, `trim_heap` hands freed pages back to the OS.
"""

from __future__ import annotations

import ctypes
import logging
from collections import deque
from collections.abc import Iterator
from typing import Protocol

log = logging.getLogger("codeswarm.router")

RING_BYTES = 8 << 20  # ~16,000 typical events (~500 bytes each)
EVENT_OVERHEAD = 200  # LoggedEvent (a 5-tuple) + swarm_keys tuple + bytes header, measured with sys.getsizeof


class Wired(Protocol):
    @property
    def seq(self) -> int: ...

    @property
    def wire(self) -> bytes: ...


class ReplayRing:
    def __init__(self, budget: int = RING_BYTES) -> None:
        self.budget = budget
        self._events: deque[Wired] = deque()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[Wired]:
        return iter(self._events)

    def __getitem__(self, i: int) -> Wired:
        return self._events[i]

    def extend(self, batch: list[Wired], wire_bytes: int | None = None) -> None:
        """Append committed events; `wire_bytes` is the sum of their len(wire) when the caller has it."""
        events = self._events
        events.extend(batch)
        if wire_bytes is None:
            wire_bytes = sum(len(ev.wire) for ev in batch)
        self.bytes += wire_bytes + EVENT_OVERHEAD * len(batch)
        while self.bytes > self.budget and len(events) > 1:
            old = events.popleft()
            self.bytes -= len(old.wire) + EVENT_OVERHEAD

    def first_seq(self) -> int | None:
        return self._events[0].seq if self._events else None

    def since(self, seq: int) -> Iterator[Wired]:
        """Events with a seq above `seq`, oldest first (walks from the newest end: cheap for recent seq)."""
        events = self._events
        i = len(events)
        while i > 0 and events[i - 1].seq > seq:
            i -= 1
        for k in range(i, len(events)):
            yield events[k]


_libc_trim = None


def trim_heap() -> bool:
    """glibc malloc_trim(0): return the free pages at the top and inside the heap to the OS. Python
    frees a burst's bytes objects to malloc, which keeps them unless asked. False if unavailable."""
    global _libc_trim
    if _libc_trim is None:
        try:
            _libc_trim = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim with
            _libc_trim = False
    if not _libc_trim:
        return False
    _libc_trim(0)
    return True
