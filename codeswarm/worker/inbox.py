"""The worker's side of its inbox, shared by both worker loops (lean.py and main.py).

Exactly-once across worker restarts: the read offset and the recent control ids are checkpointed
next to the inbox; a user line whose injection already has a turn_accepted in the outbox is skipped.
`decide` is pure: it says what a line asks for; the loops carry it out.
"""

from __future__ import annotations

import os
from pathlib import Path

from codeswarm import codec
from codeswarm.fswatch import AppendWatcher, WatchChoice, choose_mode
from codeswarm.mailbox import (
    LineBatch,
    inbox_offset_path,
    inbox_path,
    read_complete_lines,
    open_mailbox_file,
    read_mailbox_file,
    replace_mailbox_file,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the lean worker's start: worker/start.py)

if TYPE_CHECKING:
    from typing import Any

    from codeswarm.worker.runtimes.base import WorkerContext

MAX_CONTROL_IDS = 256
SAFETY_READ_SECONDS = 5.0  # inotify mode re-reads this often anyway: a missed event costs seconds, not a hang
HANDOVER_ENV = "CODESWARM_WORKER_HANDOVER"  # set across lean.py's exec: the trio worker skips worker_started
_INBOX = "inbox"


# Plain slotted classes: neither dataclasses (`dataclasses` imports inspect and ast, ~3 MB in every
# idle worker) nor NamedTuples (typing.NamedTuple needs `typing`, ~6 ms of each lean worker's start).
class Turn:
    __slots__ = ("injection_id", "content")

    def __init__(self, injection_id: str, content: str) -> None:
        self.injection_id = injection_id
        self.content = content


class Control:
    __slots__ = ("payload",)

    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload


class Shutdown:
    __slots__ = ()


class Problem:
    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


Decision = Turn | Control | Shutdown | Problem | None  # None: nothing to do (a repeat)


class Inbox:
    def __init__(self, swarm_root: Path, job_id: str, node_id: int, accepted: set[str]) -> None:
        self.path = inbox_path(swarm_root, job_id, node_id)
        self.offset_file = inbox_offset_path(swarm_root, job_id, node_id)
        self.accepted = accepted
        self.offset, self.control_ids = self._load_offset()

    def _load_offset(self) -> tuple[int, list[str]]:
        try:
            d = codec.loads(read_mailbox_file(self.offset_file))
            return int(d.get("offset", 0)), list(d.get("control_ids") or [])
        except (OSError, ValueError, AttributeError, TypeError):
            return 0, []

    def read(self, max_bytes: int = 8 << 20) -> LineBatch:
        return read_complete_lines(self.path, self.offset, max_bytes)

    def project_line_at(self, batch: LineBatch) -> int | None:
        """Byte offset of the first new user line carrying a `project_task` in batch, if any."""
        if not any(ln.get("type") == "user" and "project_task" in ln and ln.get("injection_id") not in self.accepted
                   for ln in batch.lines):
            return None
        fd = open_mailbox_file(self.path, os.O_RDONLY)
        try:
            raw = os.pread(fd, batch.offset - self.offset, self.offset)
        finally:
            os.close(fd)
        pos = self.offset
        for line in raw.split(b"\n"):
            if b'"project_task"' in line:
                try:
                    obj = codec.loads(line)
                except codec.JSONDecodeError:
                    obj = None
                if isinstance(obj, dict) and obj.get("type") == "user" and "project_task" in obj \
                        and obj.get("injection_id") not in self.accepted:
                    return pos
            pos += len(line) + 1
        return None

    def advance(self, offset: int) -> None:
        """Checkpoint: every line before `offset` has been carried out."""
        self.offset = offset
        replace_mailbox_file(self.offset_file,
                             codec.dumps({"offset": offset, "control_ids": self.control_ids[-MAX_CONTROL_IDS:]}))

    def decide(self, line: dict[str, Any]) -> Decision:
        """What one inbox line asks for; remembers it so that a repeat is ignored."""
        kind = line.get("type")
        if kind == "user":
            iid, content = line.get("injection_id"), line.get("content")
            if not isinstance(iid, str) or not isinstance(content, str):
                return Problem("inbox: user line without injection_id/content")
            if iid in self.accepted:
                return None
            self.accepted.add(iid)
            return Turn(iid, content)
        if kind == "control":
            cid = line.get("control_id")
            if cid in self.control_ids:
                return None
            if isinstance(cid, str):
                self.control_ids.append(cid)
                del self.control_ids[:-MAX_CONTROL_IDS]
            payload = line.get("payload")
            return Control(payload if isinstance(payload, dict) else {})
        if kind == "shutdown":
            return Shutdown()
        return Problem(f"inbox: unknown line type {kind!r}")


def open_watch(ctx: WorkerContext, path: Path) -> tuple[AppendWatcher | None, WatchChoice]:
    """inotify on the inbox where it sees every write, else None (poll); and why."""
    choice = choose_mode(path.parent, str(ctx.params.get("mailbox_watch") or "auto"))
    if choice.mode != "inotify":
        return None, choice
    try:
        watch = AppendWatcher()
    except OSError as exc:
        return None, WatchChoice("poll", f"inotify unavailable ({exc.strerror})")
    if not watch.add(_INBOX, path):
        watch.close()
        return None, WatchChoice("poll", "inotify watch refused (limit reached?)")
    return watch, choice
