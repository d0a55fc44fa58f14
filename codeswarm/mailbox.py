"""Mailbox layout and line formats shared by the router and the worker (PROTOCOL.md section 8).

One writer per file, append-only, complete lines only. Pure helpers plus tiny file primitives
that both sides use; nothing here knows about trio.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

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


def append_line(path: Path, obj: dict[str, Any]) -> None:
    """Append one JSON line with a single write on an O_APPEND descriptor (single writer)."""
    data = orjson.dumps(obj) + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


@dataclass
class LineBatch:
    lines: list[dict[str, Any]]
    bad: list[str]  # descriptions of lines that could not be parsed
    offset: int  # byte offset after the last complete line consumed


def read_complete_lines(path: Path, offset: int, max_bytes: int = 8 << 20) -> LineBatch:
    """Read complete lines from offset. A partial tail stays for the next call."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read(max_bytes)
    except FileNotFoundError:
        return LineBatch([], [], offset)
    return parse_chunk(chunk, offset)


def parse_chunk(chunk: bytes, offset: int) -> LineBatch:
    end = chunk.rfind(b"\n")
    if end < 0:
        if len(chunk) > MAX_OUTBOX_LINE:  # a line that never ends: skip it rather than stall
            return LineBatch([], [f"line over {MAX_OUTBOX_LINE} bytes skipped"], offset + len(chunk))
        return LineBatch([], [], offset)
    lines: list[dict[str, Any]] = []
    bad: list[str] = []
    for raw in chunk[:end].split(b"\n"):
        if not raw.strip():
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            bad.append(f"not JSON: {raw[:80]!r}")
            continue
        if not isinstance(obj, dict):
            bad.append(f"not an object: {raw[:80]!r}")
            continue
        lines.append(obj)
    return LineBatch(lines, bad, offset + end + 1)
