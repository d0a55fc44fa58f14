"""The lean worker: the mock runtime's loop without trio (an idle node costs ~12 MB, not ~28 MB).

One thread. It blocks in select() on the inbox watch (inotify where the filesystem is local, see
codeswarm/fswatch.py) and on the signal wake-up pipe; where inotify is blind it polls with
PollBackoff. A turn runs in the same thread: the runtime's pacing calls `sleep`, which keeps
reading the inbox (turn_accepted for queued prompts, approval decisions, interrupts) and writing
heartbeats. Codex and Claude need subprocess I/O and keep the trio worker (main.py). A project
task (git checkout, verify, push: worker/project_task.py) is also the trio worker's: when one
arrives at an idle lean worker, the process execs itself into the trio worker (same pid; the
inbox offset stops before the task's line, so the trio worker reads it next).
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from collections import deque

from codeswarm.errors import CodeswarmError
from codeswarm.fswatch import PollBackoff
from codeswarm.mailbox import WORKER_PROTOCOL, make_private_dirs, outbox_path
from codeswarm.worker.inbox import (
    HANDOVER_ENV,
    SAFETY_READ_SECONDS,
    Control,
    Inbox,
    Problem,
    Shutdown,
    Turn,
    open_watch,
)
from codeswarm.worker.outbox import Outbox
from codeswarm.worker.runtimes.base import WorkerContext

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the lean worker's start: worker/start.py)
if TYPE_CHECKING:
    from typing import Any, Callable

CHECK_EVERY = 0.01  # while a turn streams without waiting, look at the inbox at most this often


class Stopped(CodeswarmError):
    """Raised out of a turn's waits when the worker must stop (signal or shutdown line)."""


class LeanWorker:
    def __init__(self, ctx: WorkerContext, clock: Callable[[], float] = time.monotonic) -> None:
        self.ctx = ctx
        root = ctx.swarm_root
        make_private_dirs(root / "mailbox" / "inbox", root / "mailbox" / "outbox", ctx.workspace)
        # Buffered: flushed before every wait, inbox checkpoint, exec and exit (worker/outbox.py)
        self.outbox = Outbox(outbox_path(root, ctx.job_id, ctx.node_id), ctx.job_id, ctx.node_id, buffered=True)
        self.inbox = Inbox(root, ctx.job_id, ctx.node_id, self.outbox.accepted_injections())
        self.watch, self.choice = open_watch(ctx, self.inbox.path)
        self.backoff = PollBackoff()
        self.clock = clock
        self.turns: deque[Turn] = deque()
        self.cancelled: set[str] = set()  # injections the router withdrew (control `interrupt`)
        self.project_at: int | None = None  # inbox offset of a project task waiting for the trio worker
        self.refused: str | None = None
        self.busy_with: str | None = None
        self.stop_reason: str | None = None
        self.heartbeat_every = float(os.environ.get("CODESWARM_HEARTBEAT_SECONDS", "10"))
        self.next_heartbeat = clock() + self.heartbeat_every
        self.next_read = 0.0
        self.dirty = True  # read the inbox at the next chance
        self.runtime: Any = None
        self._wake_r = -1
        self._last_check = float("-inf")

    # ------------------------------------------------------------------ main

    def run(self) -> int:
        try:
            return self._run()
        finally:
            self.outbox.flush()

    def _run(self) -> int:
        self._install_signals()
        if os.environ.pop(HANDOVER_ENV, None) is None:
            self._started()
            for problem in self.ctx.problems:
                self.outbox.lifecycle("worker_error", {"message": problem, "fatal": False})
        self._take_secrets()
        try:
            from codeswarm.worker.runtimes.mock import LeanMock

            self.runtime = LeanMock(self.ctx, self._emit_runtime, self)
            self.runtime.start()
        except Exception as exc:  # noqa: BLE001 - any failure to start is reported to the router, then exit 1
            self.outbox.lifecycle("worker_error", {"message": f"runtime failed to start: {exc}", "fatal": True})
            self.outbox.lifecycle("worker_exited", {"exit_code": 1, "reason": "error"})
            return 1
        try:
            while self.stop_reason is None:
                if self.turns:
                    self._run_turn(self.turns.popleft())
                elif self.project_at is not None:
                    self._hand_over()
                else:
                    self.pump(float("inf"))
        except Stopped:
            pass
        self.outbox.lifecycle("worker_exited", {"exit_code": 0, "reason": self.stop_reason or "shutdown"})
        return 0

    def _started(self) -> None:
        self.outbox.lifecycle("worker_started", {
            "hostname": os.environ.get("SLURMD_NODENAME") or os.uname().nodename,
            "pid": os.getpid(), "runtime": "mock", "worker_protocol": WORKER_PROTOCOL,
            "resumed_inbox_offset": self.inbox.offset, "mailbox_watch": self.choice.mode,
            "mailbox_watch_reason": self.choice.reason,
        })

    def _take_secrets(self) -> None:
        """The preset's env values, from this node's 0600 file (Slurm only; see main.Worker)."""
        if not os.environ.get("CODESWARM_SECRETS_DIR"):  # = secrets_env.SECRETS_DIR_ENV; checked
            return  # before importing secrets_env, which loads orjson (the lean worker does without)
        from codeswarm import secrets_env

        problem = secrets_env.take_into_environ(self.ctx.node_id)
        if problem:
            self.outbox.lifecycle("worker_error", {"message": problem, "fatal": False})

    def _hand_over(self) -> None:
        """Become the trio worker (same pid) for a project task; the inbox offset is before its line."""
        env = {**os.environ, HANDOVER_ENV: "1", "CODESWARM_WORKER_LOOP": "trio"}
        self.outbox.flush()  # the trio worker continues the seq from the file
        os.execve(sys.executable, sys.orig_argv, env)

    def _install_signals(self) -> None:
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        self._wake_r = r
        signal.set_wakeup_fd(w)  # select() returns at once when a signal arrives

        def on_signal(_signo: int, _frame: Any) -> None:
            self.stop_reason = self.stop_reason or "signal"

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def _emit_runtime(self, payload: dict[str, Any]) -> None:
        self.outbox.runtime("mock", payload, self.busy_with)

    def _run_turn(self, turn: Turn) -> None:
        if turn.injection_id in self.cancelled:
            return  # withdrawn while queued: the router has already failed it
        self.busy_with = turn.injection_id
        try:
            self.runtime.run_turn(turn.injection_id, turn.content)
        except Stopped:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed turn is reported and completes; the next may work
            self.outbox.lifecycle("worker_error", {"message": f"turn failed: {exc!r}", "fatal": False},
                                  turn.injection_id)
            self._emit_runtime({"method": "turn/completed", "params": {"turn": {"id": None, "status": "failed"}}})
        finally:
            self.busy_with = None
            self.outbox.flush()

    # ------------------------------------------------------------------ waiting (the runtime's host API)

    def sleep(self, seconds: float) -> None:
        deadline = self.clock() + seconds
        while True:
            self.pump(deadline)
            if self.stop_reason is not None:
                raise Stopped
            if self.clock() >= deadline:
                return

    def wait_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Until done() or timeout; the inbox is looked at even for a zero timeout (at most every
        CHECK_EVERY), so a turn that never pauses still sees interrupts and new prompts."""
        deadline = self.clock() + timeout
        while not done():
            self.pump(deadline)
            if self.stop_reason is not None:
                raise Stopped
            if done():
                return True
            if self.clock() >= deadline:
                return False
        return True

    def pump(self, deadline: float) -> None:
        """Heartbeats and inbox lines until `deadline`; returns early once lines were carried out
        (a waiting turn re-checks its condition) or the worker must stop."""
        while self.stop_reason is None:
            now = self.clock()
            if now >= self.next_heartbeat:
                self.outbox.lifecycle("heartbeat", {"busy": self.busy_with is not None,
                                                    "active_injection_id": self.busy_with})
                self.next_heartbeat = now + self.heartbeat_every
            if (self.dirty or now >= self.next_read) and self._read_inbox(now):
                return
            if now >= deadline:
                # a turn that never really waits (sleep(0)) still looks at the inbox now and then
                if now - self._last_check < CHECK_EVERY:
                    return
                wait = 0.0
            else:
                wait = max(0.0, min(deadline, self.next_read, self.next_heartbeat) - now)
            self._last_check = now
            self.outbox.flush()  # before waiting or looking at the inbox: the router sees progress
            ready = self._select(wait)
            if self._wake_r in ready:
                try:
                    os.read(self._wake_r, 512)
                except BlockingIOError:
                    pass
            if self.watch is not None and self.watch.fileno() in ready and self.watch.changed():
                self.dirty = True
            if wait == 0.0 and not self.dirty:
                return

    def _select(self, wait: float) -> list[int]:
        fds = [self._wake_r] if self._wake_r >= 0 else []
        if self.watch is not None:
            fds.append(self.watch.fileno())
        if not fds:
            time.sleep(wait)
            return []
        return select.select(fds, [], [], wait)[0]

    def _read_inbox(self, now: float) -> bool:
        self.dirty = False
        if self.project_at is not None:  # nothing past a project task's line until the handover
            self.next_read = float("inf")
            return False
        batch = self.inbox.read()
        cut = self.inbox.project_line_at(batch)
        if cut is not None:
            self.project_at = cut
            batch = self.inbox.read(max_bytes=cut - self.inbox.offset)
        if batch.refused != self.refused:  # said once per change, not once per read
            self.refused = batch.refused
            if batch.refused:
                self.outbox.lifecycle("worker_error", {"message": f"inbox: {batch.refused}", "fatal": False})
        for problem in batch.bad:
            self.outbox.lifecycle("worker_error", {"message": f"inbox: {problem}", "fatal": False})
        # a project task just found counts as news: the idle loop returns and hands over
        got = batch.offset != self.inbox.offset or bool(batch.bad) or cut is not None
        if got:
            for line in batch.lines:
                self._carry_out(line)
                if self.stop_reason is not None:
                    break
            self.outbox.flush()  # turn_accepted lines first: a restart skips what they name (inbox.py)
            self.inbox.advance(batch.offset)
            self.backoff.saw_data()
        else:
            self.backoff.saw_nothing()
        self.next_read = now + (SAFETY_READ_SECONDS if self.watch is not None else self.backoff.delay)
        return got

    def _carry_out(self, line: dict[str, Any]) -> None:
        d = self.inbox.decide(line)
        if isinstance(d, Turn):
            queued = self.busy_with is not None or bool(self.turns)
            self.outbox.lifecycle("turn_accepted", {"queued": queued}, d.injection_id)
            self.turns.append(d)
        elif isinstance(d, Control) and d.payload.get("kind") == "interrupt":
            self._interrupt(d.payload)
        elif isinstance(d, Control):
            try:
                self.runtime.control(d.payload)
            except Exception as exc:  # noqa: BLE001 - reported to the router (worker_error), the node goes on
                self.outbox.lifecycle("worker_error", {"message": f"control failed: {exc}", "fatal": False})
        elif isinstance(d, Shutdown):
            self.stop_reason = "shutdown"
        elif isinstance(d, Problem):
            self.outbox.lifecycle("worker_error", {"message": d.message, "fatal": False})


    def _interrupt(self, payload: dict[str, Any]) -> None:
        """Withdraw injections: skip the queued ones, stop the running one where it waits next."""
        ids = payload.get("injection_ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            self.outbox.lifecycle("worker_error", {"message": "control interrupt without injection_ids",
                                                   "fatal": False})
            return
        self.cancelled.update(ids)
        if self.busy_with is not None and self.busy_with in ids:
            self.runtime.interrupt()
