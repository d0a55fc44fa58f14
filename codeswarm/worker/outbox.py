"""The worker's outbox writer: O_APPEND writes of whole lines, per-node seq continuing across restarts.

Unbuffered (the trio worker), every line is its own write. Buffered (the lean worker), lines wait in
memory until `flush`, which the worker calls before anything else can observe its progress: before
it blocks or looks at the inbox (at least every 10 ms of a streaming turn), at the end of a turn,
before it checkpoints the inbox offset, before exec and on exit. A plain mock turn (~20 lines) is
then one write and one inotify event instead of ~20 of each.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from codeswarm import codec
from codeswarm.mailbox import MAX_OUTBOX_LINE, open_mailbox_file

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the lean worker's start: worker/start.py)
if TYPE_CHECKING:
    from typing import Any

FLUSH_BYTES = 64 << 10  # a buffered outbox writes at least this often
_TRUNCATE_KEYS = ("stdout", "stderr", "aggregated_output", "aggregatedOutput", "output", "delta", "text")


class Outbox:
    def __init__(self, path: Path, job_id: str, node_id: int, *, buffered: bool = False) -> None:
        self.path = path
        self.job_id = job_id
        self.node_id = node_id
        self.buffered = buffered
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        # One descriptor for everything: a symlink or non-regular file here is refused (OSError).
        self.fd = open_mailbox_file(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
        self.seq = self._last_seq()

    def _last_seq(self) -> int:
        """Continue numbering after the last complete line of an existing outbox."""
        size = os.fstat(self.fd).st_size
        start = max(0, size - (2 << 20))
        tail = os.pread(self.fd, size - start, start)
        if tail and not tail.endswith(b"\n"):
            # A torn last line (the worker died mid-write): end it so the next line stays parseable.
            os.write(self.fd, b"\n")
        for raw in reversed(tail.splitlines()):
            try:
                return int(codec.loads(raw)["seq"])
            except (ValueError, KeyError, TypeError):
                continue
        return 0

    def accepted_injections(self) -> set[str]:
        """Injection ids that already have a turn_accepted (a restarted worker must not rerun them)."""
        out: set[str] = set()
        try:
            with os.fdopen(open_mailbox_file(self.path, os.O_RDONLY), "rb") as f:
                for raw in f:
                    if b'"turn_accepted"' in raw:
                        try:
                            obj = codec.loads(raw)
                        except ValueError:
                            continue
                        if obj.get("event") == "turn_accepted" and isinstance(obj.get("injection_id"), str):
                            out.add(obj["injection_id"])
        except FileNotFoundError:
            pass
        return out

    def _write(self, line: dict[str, Any]) -> None:
        self.seq += 1
        line["seq"] = self.seq
        data = codec.dumps(line)
        if len(data) > MAX_OUTBOX_LINE:
            data = codec.dumps(_shorten(line))
        if not self.buffered:
            os.write(self.fd, data + b"\n")
            return
        self._pending.append(data + b"\n")
        self._pending_bytes += len(data) + 1
        if self._pending_bytes >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write the buffered lines (one write, complete lines only)."""
        if not self._pending:
            return
        data = memoryview(b"".join(self._pending))
        self._pending.clear()
        self._pending_bytes = 0
        while data:
            data = data[os.write(self.fd, data):]

    def lifecycle(self, event: str, data: dict[str, Any], injection_id: str | None = None) -> None:
        self._write({"seq": 0, "ts": time.time(), "job_id": self.job_id, "node_id": self.node_id,
                     "injection_id": injection_id, "type": "lifecycle", "event": event, "data": data})

    def runtime(self, runtime: str, payload: dict[str, Any], injection_id: str | None) -> None:
        self._write({"seq": 0, "ts": time.time(), "job_id": self.job_id, "node_id": self.node_id,
                     "injection_id": injection_id, "type": "runtime", "runtime": runtime, "payload": payload})


def _shorten(obj: Any, budget: int = MAX_OUTBOX_LINE // 8) -> Any:
    """Cut long strings under known output keys and mark the message truncated."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if isinstance(v, str) and len(v) > budget:
                out[k] = v[:budget]
                out["truncated"] = True
            else:
                out[k] = _shorten(v, budget)
        return out
    if isinstance(obj, list):
        return [_shorten(v, budget) for v in obj]
    return obj
