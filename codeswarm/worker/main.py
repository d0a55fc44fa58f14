"""The trio worker: one per node for the runtimes that drive a process (codex, claude), and for a
mock node that was handed a project task (the lean worker hands over by exec, see lean.py).
`codeswarm worker` starts in start.main, which picks the loop. Reads its inbox, runs turns on its
runtime, writes its outbox.

The worker is deliberately thin: raw runtime messages go to the outbox unchanged; the router
normalizes. Exactly-once across worker restarts: the inbox offset is checkpointed, and a user line
whose injection already has a turn_accepted in the outbox is skipped.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from typing import Any

import orjson
import trio

from codeswarm.mailbox import (
    WORKER_PROTOCOL,
    inbox_offset_path,
    inbox_path,
    make_private_dirs,
    outbox_path,
    read_complete_lines,
    read_mailbox_file,
    replace_mailbox_file,
)
from codeswarm.fswatch import PollBackoff
from codeswarm.worker.inbox import HANDOVER_ENV, SAFETY_READ_SECONDS, open_watch
from codeswarm.worker.outbox import Outbox
from codeswarm.worker.thread_state import load_thread, save_thread, thread_path
from codeswarm.worker.runtimes.base import Runtime, WorkerContext

MAX_CONTROL_IDS = 256


def make_runtime(ctx: WorkerContext, emit: Any) -> Runtime:
    mode = ctx.params.get("worker_mode") or "mock"
    if mode == "mock":
        from codeswarm.worker.runtimes.mock import MockRuntime

        return MockRuntime(ctx, emit)
    if mode == "codex":
        from codeswarm.worker.runtimes.codex import CodexRuntime

        return CodexRuntime(ctx, emit)
    if mode == "claude":
        from codeswarm.worker.runtimes.claude import ClaudeRuntime

        return ClaudeRuntime(ctx, emit)
    raise ValueError(f"unknown worker_mode {mode!r}")


class Worker:
    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        root = ctx.swarm_root
        make_private_dirs(root / "mailbox" / "inbox", root / "mailbox" / "outbox", ctx.workspace)
        self.inbox = inbox_path(root, ctx.job_id, ctx.node_id)
        self.offset_file = inbox_offset_path(root, ctx.job_id, ctx.node_id)
        self.outbox = Outbox(outbox_path(root, ctx.job_id, ctx.node_id), ctx.job_id, ctx.node_id)
        self.accepted: set[str] = self.outbox.accepted_injections()
        self.thread_file = thread_path(root, ctx.job_id, ctx.node_id)
        self.saved_thread: str | None = None
        self.offset, self.control_ids = self._load_offset()
        self.watch, self.choice = open_watch(ctx, self.inbox)
        self.backoff = PollBackoff()
        self.turn_send, self.turn_recv = trio.open_memory_channel[tuple[str, str, Any]](10_000)
        self.last_turn_status: str | None = None
        self.pending_turns = 0
        self.busy_with: str | None = None
        self.project_attempt: tuple[str, Any] | None = None  # (injection id, AttemptControl) of the running task
        self.cancelled: set[str] = set()  # injections the router withdrew (control `interrupt`)
        self.runtime: Runtime | None = None
        self.stop_reason: str | None = None
        self.exit_code = 0

    # ------------------------------------------------------------------ outbox helpers

    def _emit_runtime(self, payload: dict[str, Any]) -> None:
        if payload.get("method") == "turn/completed":
            turn = (payload.get("params") or {}).get("turn")
            self.last_turn_status = turn.get("status") if isinstance(turn, dict) else None
        elif payload.get("type") == "codeswarm_turn_end":  # claude
            self.last_turn_status = str(payload.get("status") or "completed")
        self.outbox.runtime(self.runtime.name if self.runtime else "mock", payload, self.busy_with)

    def _save_thread(self) -> None:
        """Keep the runtime's thread id for a restarted worker (issue 12 #9); best effort, reported."""
        tid = self.runtime.thread() if self.runtime else None
        if not tid or tid == self.saved_thread:
            return
        try:
            save_thread(self.thread_file, tid)
            self.saved_thread = tid
        except OSError as exc:
            self.outbox.lifecycle("worker_error", {"message": f"cannot save the thread id: {exc}", "fatal": False})

    def _load_offset(self) -> tuple[int, list[str]]:
        try:
            d = orjson.loads(read_mailbox_file(self.offset_file))
            return int(d.get("offset", 0)), list(d.get("control_ids") or [])
        except (OSError, ValueError, AttributeError):
            return 0, []

    def _save_offset(self) -> None:
        replace_mailbox_file(self.offset_file, orjson.dumps(
            {"offset": self.offset, "control_ids": self.control_ids[-MAX_CONTROL_IDS:]}))

    # ------------------------------------------------------------------ main

    async def run(self) -> int:
        mode = str(self.ctx.params.get("worker_mode") or "mock")
        # a lean worker that handed over to this loop (lean.py) has already said worker_started
        handover = os.environ.pop(HANDOVER_ENV, None) is not None
        if not handover:
            self.outbox.lifecycle("worker_started", {
                "hostname": os.environ.get("SLURMD_NODENAME") or socket.gethostname(),
                "pid": os.getpid(), "runtime": mode, "worker_protocol": WORKER_PROTOCOL,
                "resumed_inbox_offset": self.offset, "mailbox_watch": self.choice.mode,
                "mailbox_watch_reason": self.choice.reason,
            })
        for problem in self.ctx.problems:
            self.outbox.lifecycle("worker_error", {"message": problem, "fatal": False})
        self._take_secrets()
        try:
            self.runtime = make_runtime(self.ctx, self._emit_runtime)
            self.runtime.resume_thread = load_thread(self.thread_file)
            await self.runtime.start()
            self._save_thread()
        except Exception as exc:  # noqa: BLE001 - any failure to start is reported to the router, then exit 1
            self.outbox.lifecycle("worker_error", {"message": f"runtime failed to start: {exc}", "fatal": True})
            self.outbox.lifecycle("worker_exited", {"exit_code": 1, "reason": "error"})
            return 1
        heartbeat = float(os.environ.get("CODESWARM_HEARTBEAT_SECONDS", "10"))
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                nursery.start_soon(self._watch_signals, signals, nursery)
                nursery.start_soon(self._heartbeat, heartbeat)
                nursery.start_soon(self._turns)
                await self._read_inbox()
                nursery.cancel_scope.cancel()
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            try:
                assert self.runtime is not None
                await self.runtime.stop()
            except Exception as exc:  # noqa: BLE001 - reported; the worker still says it exited
                self.outbox.lifecycle("worker_error", {"message": f"runtime failed to stop: {exc!r}", "fatal": False})
        self.outbox.lifecycle("worker_exited", {"exit_code": self.exit_code, "reason": self.stop_reason or "shutdown"})
        return self.exit_code

    def _take_secrets(self) -> None:
        """The preset's env values, from this node's 0600 file (deleted once read; Slurm only)."""
        from codeswarm import secrets_env

        problem = secrets_env.take_into_environ(self.ctx.node_id)
        if problem:
            self.outbox.lifecycle("worker_error", {"message": problem, "fatal": False})

    async def _watch_signals(self, signals: Any, nursery: trio.Nursery) -> None:
        async for _ in signals:
            self.stop_reason = "signal"
            nursery.cancel_scope.cancel()
            return

    async def _heartbeat(self, every: float) -> None:
        while True:
            await trio.sleep(every)
            self.outbox.lifecycle("heartbeat", {"busy": self.busy_with is not None,
                                                "active_injection_id": self.busy_with})

    async def _turns(self) -> None:
        async for injection_id, content, task in self.turn_recv:
            self.pending_turns -= 1
            if injection_id in self.cancelled:
                continue  # withdrawn while queued: the router has already failed it
            self.busy_with = injection_id
            try:
                assert self.runtime is not None
                if task is not None:
                    await self._project_turn(injection_id, content, task)
                else:
                    await self.runtime.run_turn(injection_id, content)
            except Exception as exc:  # noqa: BLE001 - a failed turn is reported and completes; the next may work
                self.outbox.lifecycle("worker_error", {"message": f"turn failed: {exc!r}", "fatal": False},
                                      injection_id)
                self._emit_runtime({"method": "turn/completed",
                                    "params": {"turn": {"id": None, "status": "failed"}}})
            finally:
                self.busy_with = None
                self._save_thread()

    async def _project_turn(self, injection_id: str, content: str, task: Any) -> None:
        from codeswarm.worker.project_task import AttemptControl, attempt_result, run_project_turn, valid_spec

        assert self.runtime is not None
        runtime = self.runtime
        problem = valid_spec(task)
        if problem is not None:
            self.outbox.lifecycle("worker_error", {"message": f"inbox: {problem}", "fatal": False}, injection_id)
            self._emit_runtime({"method": "turn/completed", "params": {"turn": {"id": None, "status": "failed"}}})
            return

        async def turn() -> str | None:
            self.last_turn_status = None
            where = (runtime.task or {}).get("checkout")
            # Runtimes that keep their own cwd (claude resumes its session there) are told the path.
            await runtime.run_turn(injection_id, f"(Work in the git checkout {where}.)\n{content}" if where else content)
            return self.last_turn_status

        def warn(message: str) -> None:
            self.outbox.lifecycle("worker_error", {"message": message, "fatal": False}, injection_id)

        control = AttemptControl(warn)
        self.project_attempt = (injection_id, control)
        try:
            result = await run_project_turn(self.ctx.workspace, task, runtime, turn, control)
        except Exception as exc:  # noqa: BLE001 - a fault in the attempt still ends it with a result (else the
            # project waits for this task forever); the result and a worker_error say what failed
            error = f"the worker failed during {control.stage}: {exc!r}"[:2000]
            warn(f"project task: {error}")
            result = {**attempt_result(task, control.stage, error), "turn_cut": control.stage == "agent"}
        finally:
            self.project_attempt = None
        if result["stage"] == "checkout" or result.get("turn_cut"):  # the turn never said it ended: close it
            status = "interrupted" if result.get("stopped") else "failed"
            self._emit_runtime({"method": "turn/completed", "params": {"turn": {"id": None, "status": status}}})
        self.outbox.lifecycle("project_task_result", result, injection_id)

    async def _read_inbox(self) -> None:
        refused: str | None = None
        while self.stop_reason is None:
            batch = await trio.to_thread.run_sync(read_complete_lines, self.inbox, self.offset)
            if batch.refused != refused:  # said once per change, not once per poll
                refused = batch.refused
                if refused:
                    self.outbox.lifecycle("worker_error", {"message": f"inbox: {refused}", "fatal": False})
            for problem in batch.bad:
                self.outbox.lifecycle("worker_error", {"message": f"inbox: {problem}", "fatal": False})
            if batch.offset != self.offset or batch.bad:
                for line in batch.lines:
                    await self._handle(line)
                    if self.stop_reason is not None:
                        break
                self.offset = batch.offset
                self._save_offset()
                self.backoff.saw_data()
            else:
                self.backoff.saw_nothing()
            if self.stop_reason is None:
                await self._wait_for_inbox()

    async def _wait_for_inbox(self) -> None:
        """inotify: until the inbox changed (or SAFETY_READ_SECONDS); elsewhere: the poll back-off."""
        if self.watch is None:
            await trio.sleep(self.backoff.delay)
            return
        with trio.move_on_after(SAFETY_READ_SECONDS):
            while True:
                await trio.lowlevel.wait_readable(self.watch.fileno())
                if self.watch.changed():
                    return

    async def _handle(self, line: dict[str, Any]) -> None:
        kind = line.get("type")
        if kind == "user":
            iid, content = line.get("injection_id"), line.get("content")
            if not isinstance(iid, str) or not isinstance(content, str):
                self.outbox.lifecycle("worker_error", {"message": "inbox: user line without injection_id/content",
                                                       "fatal": False})
                return
            if iid in self.accepted:
                return
            queued = self.busy_with is not None or self.pending_turns > 0
            self.accepted.add(iid)
            self.outbox.lifecycle("turn_accepted", {"queued": queued}, iid)
            self.pending_turns += 1
            task = line.get("project_task")
            if isinstance(task, dict):  # when the router wrote it and when it was read (timings_ms)
                task = {**task, "_sent": line.get("ts"), "_received": time.time()}
            await self.turn_send.send((iid, content, task))
        elif kind == "control":
            cid = line.get("control_id")
            if cid in self.control_ids:
                return
            if isinstance(cid, str):
                self.control_ids.append(cid)
            payload = line.get("payload") if isinstance(line.get("payload"), dict) else {}
            self.nursery.start_soon(self._control, payload)
        elif kind == "shutdown":
            self.stop_reason = "shutdown"
        else:
            self.outbox.lifecycle("worker_error", {"message": f"inbox: unknown line type {kind!r}", "fatal": False})

    async def _control(self, payload: dict[str, Any]) -> None:
        if payload.get("kind") == "interrupt":
            await self._interrupt(payload)
            return
        try:
            assert self.runtime is not None
            await self.runtime.control(payload)
        except Exception as exc:  # noqa: BLE001 - reported to the router (worker_error), the node goes on
            self.outbox.lifecycle("worker_error", {"message": f"control failed: {exc}", "fatal": False})


    async def _interrupt(self, payload: dict[str, Any]) -> None:
        """Withdraw injections: skip the queued ones, stop the running one gently."""
        ids = payload.get("injection_ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            self.outbox.lifecycle("worker_error", {"message": "control interrupt without injection_ids",
                                                   "fatal": False})
            return
        self.cancelled.update(ids)
        running = self.busy_with
        if running is None or running not in ids:
            return
        attempt = self.project_attempt
        if attempt is not None and attempt[0] == running:  # a project task: stop its checkout/turn/verify too
            reason = payload.get("reason")
            attempt[1].stop(str(reason)[:200] if isinstance(reason, str) and reason else "interrupted")
            return
        assert self.runtime is not None
        try:
            stopped = await self.runtime.interrupt()
        except Exception as exc:  # noqa: BLE001 - reported just below as a worker_error
            stopped, why = False, repr(exc)
        else:
            why = "the runtime has no turn to interrupt yet"
        if not stopped:
            self.outbox.lifecycle("worker_error", {"message": f"could not interrupt the turn: {why}",
                                                   "fatal": False}, running)


def run_trio_worker(ctx: WorkerContext) -> int:
    try:
        worker = Worker(ctx)
    except OSError as exc:
        print(f"codeswarm worker: cannot open the mailbox: {exc}", file=sys.stderr)
        return 2
    return trio.run(worker.run)
