"""Inbox delivery in batches: the command path queues inbox lines and goes on.

One task takes everything queued since its last round, waits once for the log to hold every event
emitted so far (one group commit, one fsync, for all the acks of a burst), then appends each
inbox's lines with a single write, off the event loop. Lines keep their order: one queue, one task.
A caller that must know the outcome (approve) awaits `deliver`; `submit` does not wait.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import trio

Line = TypeVar("Line")
Failed = list[tuple[Line, str]]


class _Round(Generic[Line]):
    __slots__ = ("lines", "done", "failed")

    def __init__(self) -> None:
        self.lines: list[Line] = []
        self.done = trio.Event()
        self.failed: list[tuple[Line, str]] = []


class InboxBatcher(Generic[Line]):
    def __init__(self, commit: Callable[[], Awaitable[None]],
                 write: Callable[[list[Line]], list[tuple[Line, str]]],
                 written: Callable[[list[Line], list[tuple[Line, str]]], None]) -> None:
        self._commit = commit  # returns once every event emitted so far is durable
        self._write = write  # blocking: appends the lines, returns the failed ones (runs in a thread)
        self._written = written  # on the event loop after each round (fast polling, failures)
        self._next: _Round[Line] = _Round()
        self._wake = trio.Event()
        self.rounds = 0

    def submit(self, lines: Sequence[Line]) -> _Round[Line]:
        """Queue lines for the next round; returns the round (its `done` event, then `failed`)."""
        rnd = self._next
        rnd.lines.extend(lines)
        self._wake.set()
        return rnd

    async def deliver(self, lines: Sequence[Line]) -> list[tuple[Line, str]]:
        """Queue lines and wait until their round was written; the ones that failed, with the error."""
        if not lines:
            return []
        rnd = self.submit(lines)
        await rnd.done.wait()
        wanted = {id(x) for x in lines}
        return [(x, err) for x, err in rnd.failed if id(x) in wanted]

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            rnd, self._next = self._next, _Round()
            if not rnd.lines:
                rnd.done.set()
                continue
            try:
                await self._commit()
                rnd.failed = await trio.to_thread.run_sync(self._write, rnd.lines)
                self.rounds += 1
                self._written(rnd.lines, rnd.failed)
            finally:
                rnd.done.set()
