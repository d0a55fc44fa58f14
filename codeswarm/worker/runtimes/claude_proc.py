"""Child-process plumbing for the claude runtime: stderr draining and a teardown that reaches the
commands Claude started in sessions of their own."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import trio

STOP_GRACE_SECONDS = 3.0


async def drain(stream: trio.abc.ReceiveStream | None, tail: list[bytes]) -> None:
    """Read stderr so the child never blocks on a full pipe; keep the last few KiB for errors."""
    if stream is None:
        return
    async for chunk in stream:
        tail.append(chunk)
        while sum(map(len, tail)) > 8192 and len(tail) > 1:
            tail.pop(0)


async def terminate(proc: trio.Process) -> None:
    """SIGTERM, then SIGKILL, the process group of claude AND of every process it started.

    Claude runs each Bash command in a new session (setsid), and does not kill those when it is
    terminated, so signalling its own group would orphan them: collect the descendants first.
    """
    groups = {proc.pid} | {pg for pg in map(_pgid, _descendants(proc.pid)) if pg}
    groups.discard(os.getpgrp())  # never our own group (the worker, its router, a test runner)
    _signal_groups(groups, signal.SIGTERM)
    with trio.move_on_after(STOP_GRACE_SECONDS):
        await proc.wait()
        # claude is gone; give its commands a moment to honour SIGTERM as well
        with trio.move_on_after(0.5):
            while any(_alive_group(pg) for pg in groups):
                await trio.sleep(0.05)
    _signal_groups(groups, signal.SIGKILL)  # whatever is left
    with trio.move_on_after(STOP_GRACE_SECONDS):
        await proc.wait()


def _signal_groups(groups: set[int], sig: int) -> None:
    for pg in groups:
        try:
            os.killpg(pg, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _descendants(root: int) -> list[int]:
    """Every live descendant of `root`, from /proc (Linux; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def _alive_group(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
