"""The byte-bounded replay ring and the inbox batcher (router/ring.py, router/delivery.py)."""

from __future__ import annotations

from dataclasses import dataclass

import trio

from codeswarm.router.delivery import InboxBatcher
from codeswarm.router.ring import EVENT_OVERHEAD, ReplayRing


@dataclass
class Ev:
    seq: int
    wire: bytes


def test_ring_is_bounded_in_bytes_and_replays_in_order() -> None:
    ring = ReplayRing(budget=10 * (100 + EVENT_OVERHEAD))
    ring.extend([Ev(i, b"x" * 100) for i in range(1, 26)])
    assert len(ring) == 10 and ring.bytes <= ring.budget
    assert ring.first_seq() == 16
    assert [e.seq for e in ring.since(20)] == [21, 22, 23, 24, 25]
    ring.extend([Ev(26, b"y" * 5000)])  # one big event pushes out many small ones, never itself
    assert ring.first_seq() == 26 and len(ring) == 1


async def test_batcher_one_commit_and_one_write_for_everything_queued_meanwhile() -> None:
    commits: list[int] = []
    writes: list[list[str]] = []
    seen: list[tuple[list[str], list[tuple[str, str]]]] = []

    async def commit() -> None:
        commits.append(1)

    def write(lines: list[str]) -> list[tuple[str, str]]:
        writes.append(list(lines))
        return [(x, "disk full") for x in lines if x.startswith("bad")]

    b: InboxBatcher[str] = InboxBatcher(commit, write, lambda lines, failed: seen.append((lines, failed)))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(b.run)
        for i in range(200):  # a burst of commands: none waits
            b.submit([f"p{i}a", f"p{i}b"])
        failed = await b.deliver(["bad-control"])  # a caller that needs the outcome waits
        assert failed == [("bad-control", "disk full")]
        assert len(commits) == 1 and len(writes) == 1  # one group commit, one round
        assert writes[0][:3] == ["p0a", "p0b", "p1a"] and writes[0][-1] == "bad-control"  # order kept
        assert seen[0][1] == [("bad-control", "disk full")]
        assert await b.deliver(["later"]) == []
        assert writes[-1] == ["later"] and len(commits) == 2
        nursery.cancel_scope.cancel()
