"""Idempotency keys (PROTOCOL.md 3.5): a retried command with the same key runs once.

A cron job that lost its connection can send the same command again with the same key and learn
what became of the first one. Keys are kept for router.idempotency_ttl_seconds in
`<state_dir>/idempotency.json`, written atomically before the command runs, so they survive restarts.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from codeswarm.protocol import Command, Rejection
from codeswarm.router.store import atomic_write


@dataclass
class KeyRecord:
    command: str
    payload_hash: str
    request_id: str
    created_at: float
    after_seq: int = 0  # log head when the command was accepted: its events all come later


def payload_hash(cmd: Command) -> str:
    body = {k: v for k, v in cmd.payload.items() if k != "idempotency_key"}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


class IdempotencyKeys:
    def __init__(self, path: Path, ttl_seconds: float) -> None:
        self.path = path
        self.ttl = ttl_seconds
        self.keys: dict[str, KeyRecord] = {}
        try:
            raw = orjson.loads(path.read_bytes())
            self.keys = {k: KeyRecord(**v) for k, v in raw.items()}
        except (OSError, ValueError, TypeError):
            pass

    def check(self, cmd: Command, now: float) -> KeyRecord | None:
        """The original record for a repeat (None for a new key); Rejection on a reused key."""
        key = cmd.payload.get("idempotency_key")
        if key is None:
            return None
        rec = self.keys.get(key)
        if rec is None or now - rec.created_at > self.ttl:
            return None
        if rec.command != cmd.command or rec.payload_hash != payload_hash(cmd):
            raise Rejection("idempotency_conflict", "idempotency_key reused with a different command or payload",
                            request_id=cmd.request_id, command=cmd.command, idempotency_key=key)
        return rec

    def remember(self, cmd: Command, now: float, head_seq: int) -> bytes:
        """Record a new key; returns the file content to write (the caller writes it off the event loop)."""
        key = cmd.payload["idempotency_key"]
        self.keys[key] = KeyRecord(cmd.command, payload_hash(cmd), cmd.request_id, now, head_seq)
        self.keys = {k: r for k, r in self.keys.items() if now - r.created_at <= self.ttl}
        return orjson.dumps({k: asdict(r) for k, r in self.keys.items()})

    def write(self, data: bytes) -> None:
        atomic_write(self.path, data)


def deduplicated_data(cmd: Command, rec: KeyRecord, first_seq: int | None) -> dict[str, Any]:
    return {"request_id": cmd.request_id, "original_request_id": rec.request_id,
            "idempotency_key": cmd.payload["idempotency_key"], "first_seq": first_seq}
