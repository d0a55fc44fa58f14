"""Mailbox layout and line formats shared by the router and the worker (PROTOCOL.md section 8).

One writer per file, append-only, complete lines only. Pure helpers plus tiny file primitives
that both sides use; nothing here knows about trio.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from codeswarm import codec
from codeswarm.errors import CodeswarmError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the lean worker's start: worker/start.py)
if TYPE_CHECKING:
    from typing import Any

WORKER_PROTOCOL = 1
MAX_OUTBOX_LINE = 1 << 20


def node_name(node_id: int) -> str:
    return f"node_{node_id:02d}"


def inbox_path(swarm_root: Path, job_id: str, node_id: int) -> Path:
    return swarm_root / "mailbox" / "inbox" / f"{job_id}_{node_id:02d}.jsonl"


def inbox_offset_path(swarm_root: Path, job_id: str, node_id: int) -> Path:
    return swarm_root / "mailbox" / "inbox" / f"{job_id}_{node_id:02d}.offset"


def outbox_path(swarm_root: Path, job_id: str, node_id: int) -> Path:
    return swarm_root / "mailbox" / "outbox" / f"{job_id}_{node_id:02d}.jsonl"


def workspace_path(swarm_root: Path, node_id: int) -> Path:
    return swarm_root / node_name(node_id)


def make_private_dirs(*paths: Path) -> None:
    for p in paths:
        p.mkdir(mode=0o700, parents=True, exist_ok=True)


def prepare_swarm_root(swarm_root: Path, node_count: int) -> None:
    make_private_dirs(swarm_root, swarm_root / "mailbox" / "inbox", swarm_root / "mailbox" / "outbox")
    for i in range(node_count):
        make_private_dirs(workspace_path(swarm_root, i))


class UnsafeMailboxFile(CodeswarmError, OSError):
    """A mailbox file that is a symlink, a FIFO, a device or a directory: never read or written."""


def open_mailbox_file(path: str | os.PathLike[str], flags: int, mode: int = 0o600) -> int:
    """os.open for every mailbox file (inbox, outbox, offsets): the last component must not be a
    symlink (O_NOFOLLOW) and the file must be a regular file. O_NONBLOCK so that a FIFO planted
    in its place cannot block the opener; it has no effect on regular files.

    Raises UnsafeMailboxFile naming what was found; FileNotFoundError passes through.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeMailboxFile(errno.ELOOP, "is a symlink (refused)", str(path)) from None
        if exc.errno in (errno.ENXIO, errno.EISDIR):
            raise UnsafeMailboxFile(exc.errno, "is not a regular file (refused)", str(path)) from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnsafeMailboxFile(errno.EINVAL, "is not a regular file (refused)", str(path))
    return fd


def read_mailbox_file(path: str | os.PathLike[str]) -> bytes:
    """The whole file, through open_mailbox_file."""
    fd = open_mailbox_file(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def replace_mailbox_file(path: Path, data: bytes) -> None:
    """Write tmp (created fresh, never through a link) then rename over path: old or new after a crash."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        os.unlink(tmp)  # a leftover (or planted) tmp of any kind; O_EXCL below then creates our own
    except FileNotFoundError:
        pass
    fd = open_mailbox_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def append_line(path: Path, obj: dict[str, Any]) -> None:
    """Append one JSON line with a single write on an O_APPEND descriptor (single writer)."""
    data = codec.dumps(obj) + b"\n"
    fd = open_mailbox_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def append_lines(path: Path, objs: list[dict[str, Any]]) -> None:
    """Append several JSON lines with one write on an O_APPEND descriptor (single writer): a burst
    of prompts for one node costs one open and one write, not one per prompt."""
    data = memoryview(b"".join(codec.dumps(obj) + b"\n" for obj in objs))
    fd = open_mailbox_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


class LineBatch:
    """Lines read from a mailbox file (a plain slotted class: the lean worker imports this, see
    worker/inbox.py)."""

    __slots__ = ("lines", "bad", "offset", "refused", "ends")

    def __init__(self, lines: list[dict[str, Any]], bad: list[str], offset: int, refused: str | None = None,
                 ends: tuple[int, ...] = ()) -> None:
        self.lines = lines
        self.bad = bad  # descriptions of lines that could not be parsed
        self.offset = offset  # byte offset after the last complete line consumed
        self.refused = refused  # the file is a symlink or not a regular file: nothing was read
        self.ends = ends  # per line of `lines`: the byte offset just after it


def read_complete_lines(path: Path, offset: int, max_bytes: int = 8 << 20) -> LineBatch:
    """Read complete lines from offset. A partial tail stays for the next call."""
    try:
        fd = open_mailbox_file(path, os.O_RDONLY)
    except FileNotFoundError:
        return LineBatch([], [], offset)
    except UnsafeMailboxFile as exc:
        return LineBatch([], [], offset, refused=f"{exc.filename} {exc.strerror}")
    try:
        chunk = os.pread(fd, max_bytes, offset)  # one call: a buffered file object cost an ioctl, two lseeks
    finally:
        os.close(fd)
    return parse_chunk(chunk, offset)


def parse_chunk(chunk: bytes, offset: int) -> LineBatch:
    end = chunk.rfind(b"\n")
    if end < 0:
        if len(chunk) > MAX_OUTBOX_LINE:  # a line that never ends: skip it rather than stall
            return LineBatch([], [f"line over {MAX_OUTBOX_LINE} bytes skipped"], offset + len(chunk))
        return LineBatch([], [], offset)
    lines: list[dict[str, Any]] = []
    bad: list[str] = []
    loads = codec.loads
    ends: list[int] = []
    pos = offset
    for raw in chunk[:end].split(b"\n"):
        pos += len(raw) + 1
        if not raw or raw.isspace():  # (isspace stops at the first other byte; strip() copied the line)
            continue
        try:
            obj = loads(raw)
        except codec.JSONDecodeError:
            bad.append(f"not JSON: {raw[:80]!r}")
            continue
        if not isinstance(obj, dict):
            bad.append(f"not an object: {raw[:80]!r}")
            continue
        lines.append(obj)
        ends.append(pos)
    return LineBatch(lines, bad, offset + end + 1, ends=tuple(ends))
