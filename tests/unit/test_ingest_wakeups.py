"""The ingest loop's wake-ups (router/ingest.py): what an idle router with 1,000 nodes pays for.

Real inotify on tmp_path (a local filesystem: test_fswatch checks that), trio's MockClock for
every delay; the clock only moves when every task waits, so "read at the same clock time" means
"read in the wake-up the write caused, with no timer in between".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from codeswarm.router.ingest import (
    FAST_INTERVAL,
    IDLE_COALESCE,
    NOTIFY_BATCH,
    READ_STEP,
    SAFETY_GRID,
    SAFETY_INTERVAL,
    NodeWatch,
    OutboxIngest,
)
from tests.harness import Harness
from tests.unit.test_queue_ingest import Host, lifecycle, write


_made: list[OutboxIngest] = []


@pytest.fixture(autouse=True)
def _close_inotify() -> Iterator[None]:
    """Each OutboxIngest holds an inotify instance: a user has 128 on this shared machine."""
    yield
    while _made:
        _made.pop().close()


def notified(h: Harness, tmp_path: Path, nodes: int) -> tuple[Any, OutboxIngest, list[NodeWatch], list[Path]]:
    """A running swarm whose outboxes inotify watches (as OutboxIngest.sync sets them up)."""
    swarm, _ = h.launch(nodes=nodes)
    h.start(swarm)
    ingest = OutboxIngest(Host(h))  # type: ignore[arg-type]
    _made.append(ingest)
    watches, paths = [], []
    for node in range(nodes):
        path = tmp_path / f"outbox{node}.jsonl"
        path.touch()
        key = (swarm.swarm_id, node)
        w = NodeWatch(swarm.swarm_id, node, str(path))  # these outboxes start empty: seq 1 comes next
        w.notified = ingest._notify_add(key, str(path))
        assert w.notified, "tmp_path must be on a local filesystem"
        ingest.watches[key] = w
        watches.append(w)
        paths.append(path)
    return swarm, ingest, watches, paths


def errors(h: Harness) -> list[str]:
    return [d["message"] for n, d in h.events() if n == "agent_error"]


def run_mock(main: Any) -> None:
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_write_to_a_quiet_outbox_is_read_in_the_wakeup_it_causes(h: Harness, tmp_path: Path) -> None:
    """No timer and no round of run() between the write and the read (run() is not even running)."""
    swarm, ingest, (w,), (path,) = notified(h, tmp_path, 1)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ingest.notify_loop)
            await trio.testing.wait_all_tasks_blocked()
            t0 = trio.current_time()
            write(path, lifecycle(1, "worker_error", message="read at once"))
            while not errors(h):
                await trio.sleep(0)  # a checkpoint, not a clock step: the clock cannot move while this runs
            assert trio.current_time() == t0
            nursery.cancel_scope.cancel()

    run_mock(main)
    assert errors(h) == ["read at once"]
    assert w.offset == path.stat().st_size and not w.more


def test_a_streaming_outbox_is_read_by_run_notify_batch_later(h: Harness, tmp_path: Path) -> None:
    """An outbox that had data just now is left to run(), NOTIFY_BATCH later: the lines its worker
    writes meanwhile come in the same read."""
    swarm, ingest, (w,), (path,) = notified(h, tmp_path, 1)
    read_at: list[float] = []
    real_poll = ingest.poll_node

    def poll(watch: NodeWatch) -> bool:
        got = real_poll(watch)
        if got:
            read_at.append(trio.current_time())
        return got

    ingest.poll_node = poll  # type: ignore[method-assign]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ingest.notify_loop)
            nursery.start_soon(ingest.run)
            await trio.testing.wait_all_tasks_blocked()
            w.last_data_at = t0 = trio.current_time()  # streaming
            write(path, lifecycle(1, "worker_error", message="one"))
            await trio.testing.wait_all_tasks_blocked()
            write(path, lifecycle(2, "worker_error", message="two"))
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
            assert len(read_at) == 1 and read_at[0] >= t0 + NOTIFY_BATCH, (read_at, errors(h), w.due_at, ingest._heap, t0)

    run_mock(main)
    assert errors(h) == ["one", "two"]


def test_safety_rereads_of_quiet_nodes_share_grid_points(h: Harness, tmp_path: Path) -> None:
    """A quiet watched node is re-read every SAFETY_INTERVAL, on multiples of SAFETY_GRID: nodes
    read at different times are due together (one round for many, not one per node)."""
    swarm, ingest, watches, _ = notified(h, tmp_path, 3)

    async def main() -> None:
        for w, at in zip(watches, (0.01, 0.2, 0.45)):
            await trio.sleep_until(at)
            ingest._reschedule(w, ingest.poll_node(w))

    run_mock(main)
    dues = {w.due_at for w in watches}
    assert len(dues) == 1
    (due,) = dues
    assert due >= 0.45 + SAFETY_INTERVAL and (due / SAFETY_GRID) == round(due / SAFETY_GRID)


def test_run_is_woken_only_for_what_is_due_before_it_would_wake(h: Harness, tmp_path: Path) -> None:
    swarm, ingest, (a, b), _ = notified(h, tmp_path, 2)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            ingest._schedule(a, 10.0)
            nursery.start_soon(ingest.run)
            await trio.testing.wait_all_tasks_blocked()
            assert ingest._sleeping_until == a.due_at
            ingest._schedule(b, 20.0)
            assert not ingest._wake.is_set()  # later: run() need not re-arm its timer
            ingest._schedule(b, 1.0)
            assert ingest._wake.is_set()
            nursery.cancel_scope.cancel()

    run_mock(main)


def test_a_read_cut_at_a_step_goes_on_soon_without_a_new_event(h: Harness, tmp_path: Path) -> None:
    """inotify says a file grew, not how much is left: a read that stopped at READ_STEP is
    continued FAST_INTERVAL later; a complete one waits for the next event (or the grid)."""
    swarm, ingest, (w,), (path,) = notified(h, tmp_path, 1)
    lines = [lifecycle(1 + i, "worker_error", message="m" * 200) for i in range(READ_STEP // 250 + 10)]
    write(path, *lines)

    async def main() -> None:
        polls = 0
        while True:
            got = ingest.poll_node(w)
            ingest._reschedule(w, got)
            polls += 1
            if not w.more:
                break
            assert w.due_at == trio.current_time() + FAST_INTERVAL
        assert polls >= 2 and w.due_at >= trio.current_time() + SAFETY_INTERVAL

    run_mock(main)
    assert len(errors(h)) == len(lines)


def reads_timed(ingest: OutboxIngest) -> dict[int, float]:
    """node_id -> trio time of its latest read that found lines (poll_node wrapped)."""
    read_at: dict[int, float] = {}
    real_poll = ingest.poll_node

    def poll(w: NodeWatch) -> bool:
        got = real_poll(w)
        if got:
            read_at[w.node_id] = trio.current_time()
        return got

    ingest.poll_node = poll  # type: ignore[method-assign]
    return read_at


def test_idle_heartbeats_are_taken_together_and_a_prompt_cuts_the_pause(h: Harness, tmp_path: Path) -> None:
    """With no turn open anywhere, the inotify task pauses IDLE_COALESCE after a wake-up: the
    heartbeats written meanwhile are read in one wake-up. An inbox line (expect_activity) ends
    the pause at once, and while a turn is open there is no pause."""
    swarm, ingest, watches, paths = notified(h, tmp_path, 3)
    read_at = reads_timed(ingest)
    seq = {0: 0, 1: 0, 2: 0}

    def beat(node: int) -> None:
        seq[node] += 1
        write(paths[node], lifecycle(seq[node], "heartbeat"))

    async def settle() -> None:
        await trio.testing.wait_all_tasks_blocked()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ingest.notify_loop)
            await settle()
            t0 = trio.current_time()
            beat(0)
            await settle()
            assert read_at == {0: t0}
            beat(1)
            beat(2)
            await settle()
            assert read_at == {0: t0}, "paused: the next heartbeats wait"
            await trio.sleep(IDLE_COALESCE + 0.001)
            assert read_at[1] == read_at[2] <= t0 + IDLE_COALESCE + 0.001
            # later: a heartbeat is read at once and pauses the task again; a prompt is written to
            # node 1 meanwhile (expect_activity): the pause ends and its answer is read at once
            await trio.sleep(1.0)
            t1 = trio.current_time()
            beat(0)
            await settle()
            assert read_at[0] == t1
            beat(1)
            await settle()
            assert read_at[1] < t1, "paused"
            ingest.expect_activity(swarm.swarm_id, 1)
            await settle()
            assert read_at[1] == t1
            nursery.cancel_scope.cancel()

    run_mock(main)


def test_no_pause_while_a_turn_is_open(h: Harness, tmp_path: Path) -> None:
    swarm, ingest, watches, paths = notified(h, tmp_path, 2)
    h.inject(swarm, [0])  # node 0 has an open turn; node 1's writes must not wait behind a pause
    read_at = reads_timed(ingest)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ingest.notify_loop)
            await trio.testing.wait_all_tasks_blocked()
            t0 = trio.current_time()
            write(paths[1], lifecycle(1, "heartbeat"))
            await trio.testing.wait_all_tasks_blocked()
            write(paths[0], lifecycle(1, "heartbeat"))
            await trio.testing.wait_all_tasks_blocked()
            assert read_at == {1: t0, 0: t0}
            nursery.cancel_scope.cancel()

    run_mock(main)
