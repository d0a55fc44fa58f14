"""The node's runtime thread id, kept next to its outbox so a restarted worker resumes it.

Issue 12 #9: a worker started again on its node (restart policy) resumes the conversation the
node had (codex `thread/resume`, Claude `--resume`, the mock's thread id) instead of starting a
new one. One small JSON file per node, written by the worker only (temp file + rename).
"""

from __future__ import annotations

import os
from pathlib import Path

from codeswarm import codec
from codeswarm.mailbox import open_mailbox_file


def thread_path(swarm_root: Path, job_id: str, node_id: int) -> Path:
    return swarm_root / "mailbox" / "outbox" / f"{job_id}_{node_id:02d}.thread"


def load_thread(path: Path) -> str | None:
    """The saved thread id, or None (no file, not a regular file, unreadable or malformed)."""
    try:
        fd = open_mailbox_file(path, os.O_RDONLY)
    except OSError:  # missing, a symlink or not a regular file (UnsafeMailboxFile is an OSError)
        return None
    with os.fdopen(fd, "rb") as f:
        try:
            value = codec.loads(f.read(1 << 16)).get("thread_id")
        except (ValueError, AttributeError):
            return None
    return value if isinstance(value, str) and value else None


def save_thread(path: Path, thread_id: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(codec.dumps({"thread_id": thread_id}))
    os.replace(tmp, path)
