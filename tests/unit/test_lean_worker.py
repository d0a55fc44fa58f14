"""The lean worker's loop on a fake clock: first prompt after 60 s idle on both mailbox paths, reads
while idle, inbox lines carried out while a turn waits. The inotify descriptor is real; only time
and the wait (select) are simulated, so a minute of idle takes milliseconds."""

from __future__ import annotations

import os
import select
from pathlib import Path
from typing import Any, Callable

import orjson
import pytest

from codeswarm.mailbox import append_line, outbox_path, prepare_swarm_root
from codeswarm.worker.inbox import SAFETY_READ_SECONDS, Turn
from codeswarm.worker.lean import LeanWorker
from codeswarm.worker.runtimes.base import WorkerContext
from codeswarm.worker.runtimes.mock import LeanMock


class FakeTime:
    """A clock plus the worker's select(): time jumps to the next scheduled action or the timeout;
    an action (a write by "the router") runs at its time, then the real inotify fd is asked."""

    def __init__(self) -> None:
        self.now = 0.0
        self.worker: Any = None
        self.actions: list[tuple[float, Callable[[], None]]] = []

    def clock(self) -> float:
        return self.now

    def at(self, t: float, action: Callable[[], None]) -> None:
        self.actions.append((t, action))
        self.actions.sort(key=lambda a: a[0])

    def _ready(self) -> list[int]:
        fds = [self.worker.watch.fileno()] if self.worker.watch is not None else []
        return select.select(fds, [], [], 0)[0] if fds else []

    def select(self, wait: float) -> list[int]:
        end = self.now + wait
        while self.actions and self.actions[0][0] <= end:
            t, action = self.actions.pop(0)
            self.now = max(self.now, t)
            action()
            ready = self._ready()
            if ready:
                return ready
        self.now = end
        return self._ready()


def make_worker(tmp_path: Path, **params: Any) -> tuple[LeanWorker, FakeTime, list[tuple[float, str, Any]]]:
    root = tmp_path / "swarm"
    prepare_swarm_root(root, 1)
    ctx = WorkerContext(job_id="j", node_id=0, swarm_root=root, workspace=root / "node_00",
                        params={"worker_mode": "mock", **params})
    fake = FakeTime()
    worker = fake.worker = LeanWorker(ctx, clock=fake.clock)
    worker._select = fake.select  # type: ignore[method-assign]
    worker.runtime = LeanMock(ctx, worker._emit_runtime, worker)
    worker.runtime.start()
    log: list[tuple[float, str, Any]] = []
    lifecycle = worker.outbox.lifecycle

    def record(event: str, data: dict[str, Any], injection_id: str | None = None) -> None:
        log.append((fake.now, event, injection_id))
        lifecycle(event, data, injection_id)

    worker.outbox.lifecycle = record  # type: ignore[method-assign]
    return worker, fake, log


def prompt(worker: LeanWorker, iid: str, content: str = "hello") -> Callable[[], None]:
    return lambda: append_line(worker.inbox.path, {"type": "user", "injection_id": iid, "content": content})


def count_reads(worker: LeanWorker) -> list[float]:
    reads: list[float] = []
    read = worker.inbox.read

    def counted() -> Any:
        reads.append(worker.clock())
        return read()

    worker.inbox.read = counted  # type: ignore[method-assign]
    return reads


@pytest.mark.parametrize("mode", ["auto", "poll"])
def test_first_prompt_after_60_s_idle_is_picked_up_within_250_ms(tmp_path: Path, mode: str) -> None:
    worker, fake, log = make_worker(tmp_path, mailbox_watch=mode)
    assert worker.choice.mode == ("inotify" if mode == "auto" else "poll")
    reads = count_reads(worker)
    worker.pump(0.0)
    worker.pump(60.0)  # a minute of silence
    idle_reads = len(reads)
    fake.at(60.0, prompt(worker, "i1"))
    worker.pump(61.0)
    accepted = [t for t, ev, iid in log if ev == "turn_accepted" and iid == "i1"]
    assert accepted, "the prompt was not picked up"
    assert accepted[0] - 60.0 <= 0.25
    heartbeats = [t for t, ev, _ in log if ev == "heartbeat"]
    assert len(heartbeats) == 6  # every 10 s while idle
    if mode == "auto":
        assert accepted[0] == 60.0  # inotify: at once
        assert idle_reads <= 60 / SAFETY_READ_SECONDS + 2  # only the safety re-reads
    else:
        assert idle_reads >= 60 / 0.2  # the poll path reads ~5 times a second when idle


def test_lines_are_carried_out_while_a_turn_waits(tmp_path: Path) -> None:
    worker, fake, log = make_worker(tmp_path, mock_delay_ms=100)
    fake.at(0.05, prompt(worker, "second"))
    fake.at(2.0, lambda: append_line(worker.inbox.path, {  # after the request (~0.4 s)
        "type": "control", "control_id": "c1",
        "payload": {"kind": "approval_decision", "call_id": "call_1_1", "decision": "accept"}}))
    worker._run_turn(Turn("first", "[mock:approval] go"))  # as the loop runs it (the outbox is flushed after)
    accepted = {iid: t for t, ev, iid in log if ev == "turn_accepted"}
    assert 0.05 <= accepted["second"] < 0.1  # acknowledged during the first turn, queued behind it
    assert [t.injection_id for t in worker.turns] == ["second"]
    lines = [orjson.loads(raw) for raw in outbox_path(worker.ctx.swarm_root, "j", 0).read_bytes().splitlines()]
    methods = [ln["payload"].get("method") for ln in lines if ln["type"] == "runtime"]
    assert "item/commandExecution/requestApproval" in methods
    ends = [ln["payload"]["params"]["msg"] for ln in lines if ln["type"] == "runtime"
            and ln["payload"].get("method") == "codex/event/exec_command_end"]
    assert ends and ends[0].get("exit_code") == 0  # the decision arrived mid-turn and was accepted
    assert methods[-1] == "turn/completed"


def test_repeated_and_bad_lines(tmp_path: Path) -> None:
    worker, fake, log = make_worker(tmp_path)
    for line in ({"type": "user", "injection_id": "a", "content": "x"},
                 {"type": "user", "injection_id": "a", "content": "x"},  # a repeat: ignored
                 {"type": "user", "content": "no id"}, {"type": "bogus"}):
        append_line(worker.inbox.path, line)
    with open(worker.inbox.path, "ab") as f:
        f.write(b"not json\n")
    worker.pump(0.0)
    events = [ev for _, ev, _ in log]
    assert events.count("turn_accepted") == 1
    assert events.count("worker_error") == 3
    assert worker.inbox.offset == worker.inbox.path.stat().st_size
    # a restarted worker resumes after the checkpoint and does not accept "a" again
    again, _fake2, log2 = make_worker(tmp_path)
    again.pump(0.0)
    assert [ev for _, ev, _ in log2 if ev == "turn_accepted"] == []


def test_shutdown_line_stops_the_worker_mid_turn(tmp_path: Path) -> None:
    from codeswarm.worker.lean import Stopped

    worker, fake, _log = make_worker(tmp_path, mock_delay_ms=100)
    fake.at(0.25, lambda: append_line(worker.inbox.path, {"type": "shutdown"}))
    with pytest.raises(Stopped):
        worker.runtime.run_turn("t", "[mock:slow=30] long")
    assert worker.stop_reason == "shutdown" and fake.now < 1.0


def test_interrupt_stops_the_running_turn_and_skips_the_queued_one(tmp_path: Path) -> None:
    worker, fake, _log = make_worker(tmp_path)
    fake.at(0.5, prompt(worker, "i2", "queued"))
    fake.at(1.0, lambda: append_line(worker.inbox.path, {
        "type": "control", "control_id": "c1",
        "payload": {"kind": "interrupt", "reason": "budget_exceeded", "injection_ids": ["i1", "i2"]}}))
    worker._run_turn(Turn("i1", "[mock:slow=30] long"))
    assert fake.now < 2.0  # the 30 s turn ended at the interrupt
    worker._run_turn(worker.turns.popleft())  # i2 was withdrawn while queued: it never starts
    lines = [orjson.loads(raw) for raw in outbox_path(worker.ctx.swarm_root, "j", 0).read_bytes().splitlines()]
    done = [ln["payload"]["params"]["turn"]["status"] for ln in lines
            if ln["type"] == "runtime" and ln["payload"].get("method") == "turn/completed"]
    assert done == ["interrupted"]
    assert not any(ln["type"] == "runtime" and ln["injection_id"] == "i2" for ln in lines)


def test_a_project_task_stops_the_reading_before_its_line(tmp_path: Path) -> None:
    worker, _fake, log = make_worker(tmp_path)
    append_line(worker.inbox.path, {"type": "user", "injection_id": "a", "content": "plain"})
    before = worker.inbox.path.stat().st_size
    append_line(worker.inbox.path, {"type": "user", "injection_id": "p", "content": "task",
                                    "project_task": {"project_id": "x"}})
    append_line(worker.inbox.path, {"type": "user", "injection_id": "b", "content": "after"})
    worker.pump(0.0)
    assert [iid for _, ev, iid in log if ev == "turn_accepted"] == ["a"]
    # the checkpoint is the project line's start: the trio worker (after the exec) reads it next
    assert worker.project_at == before == worker.inbox.offset
    worker.pump(1.0)
    assert [iid for _, ev, iid in log if ev == "turn_accepted"] == ["a"]


def test_a_plain_mock_turn_reaches_the_outbox_in_two_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lean worker buffers a turn's lines (worker/outbox.py): a write and an inotify event for
    the router per look at the inbox (at most every 10 ms), not per line; all on disk at the end."""
    worker, fake, log = make_worker(tmp_path, mock_delay_ms=0)
    writes: list[int] = []
    real_write = os.write

    def counting_write(fd: int, data: Any) -> int:
        if fd == worker.outbox.fd:
            writes.append(bytes(data).count(b"\n"))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", counting_write)
    worker._run_turn(Turn("t1", "hello"))
    lines = [orjson.loads(raw) for raw in outbox_path(worker.ctx.swarm_root, "j", 0).read_bytes().splitlines()]
    runtime = [ln for ln in lines if ln["type"] == "runtime"]
    assert runtime[-1]["payload"]["method"] == "turn/completed" and len(runtime) >= 15
    # turn/started goes out at the turn's first look at the inbox, the rest at its end
    assert sum(writes) == len(runtime) and len(writes) <= 2
    assert [ln["seq"] for ln in lines] == list(range(1, len(lines) + 1))


def test_turn_accepted_is_on_disk_before_the_inbox_checkpoint(tmp_path: Path) -> None:
    """A restarted worker skips inbox lines before the checkpoint and prompts that have a
    turn_accepted: a buffered turn_accepted written after the checkpoint would lose the prompt."""
    worker, fake, log = make_worker(tmp_path)
    seen_at_checkpoint: list[bool] = []
    advance = worker.inbox.advance

    def checked_advance(offset: int) -> None:
        raw = outbox_path(worker.ctx.swarm_root, "j", 0).read_bytes()
        seen_at_checkpoint.append(b'"turn_accepted"' in raw and b'"p1"' in raw)
        advance(offset)

    worker.inbox.advance = checked_advance  # type: ignore[method-assign]
    prompt(worker, "p1")()
    worker.pump(0.0)
    assert seen_at_checkpoint == [True]
