"""Idempotency keys (PROTOCOL.md 3.5): a retried command with the same key runs once.

A cron job that lost its connection can send the same command again with the same key and learn
what became of the first one. Keys are kept for router.idempotency_ttl_seconds in
`<state_dir>/idempotency.json`, written atomically before the command runs, so they survive restarts.

A damaged file (disk fault, a hand edit) is never read as "no keys": a forgotten key would let a
cron retry run its command a second time, which cannot be undone (a second swarm, a prompt sent
twice). So the file is kept aside as `idempotency.json.<mtime>.corrupt`, its readable records are
kept, and until that file's last write + the TTL (the latest moment a lost key could still be
repeated) a key the router does not know is refused with `idempotency_unknown` instead of run.
The cron job fails loudly (exit 3) and loses nothing; the operator checks what ran (`codeswarm
list`, `events`) and deletes the .corrupt file, or waits, to lift it (docs/RELIABILITY.md).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from codeswarm.protocol import Command, Rejection, iso_timestamp
from codeswarm.router.store import atomic_write

CORRUPT_SUFFIX = ".corrupt"


@dataclass
class KeyRecord:
    command: str
    payload_hash: str
    request_id: str
    created_at: float
    after_seq: int = 0  # log head when the command was accepted: its events all come later

    @classmethod
    def from_json(cls, raw: Any) -> "KeyRecord":
        """Known fields only (a newer router may add some); ValueError on a record that cannot be used."""
        if not isinstance(raw, dict):
            raise ValueError("not an object")
        command, digest, rid = raw.get("command"), raw.get("payload_hash"), raw.get("request_id")
        created, after = raw.get("created_at"), raw.get("after_seq", 0)
        if not (isinstance(command, str) and isinstance(digest, str) and isinstance(rid, str)):
            raise ValueError("command, payload_hash and request_id must be strings")
        if isinstance(created, bool) or not isinstance(created, (int, float)) or not math.isfinite(created):
            raise ValueError("created_at must be a number")
        if isinstance(after, bool) or not isinstance(after, int):
            raise ValueError("after_seq must be an integer")
        return cls(command, digest, rid, float(created), after)


def payload_hash(cmd: Command) -> str:
    body = {k: v for k, v in cmd.payload.items() if k != "idempotency_key"}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


class IdempotencyKeys:
    def __init__(self, path: Path, ttl_seconds: float) -> None:
        self.path = path
        self.ttl = ttl_seconds
        self.keys: dict[str, KeyRecord] = {}
        self.unknown_until = 0.0  # before this, a key not in `keys` may have been lost: refuse it
        self.warning: dict[str, Any] | None = None  # router_warning data while that holds
        self._load()

    # ------------------------------------------------------------------ loading

    def _load(self) -> None:
        problem = self._read()
        if problem is not None and not self._set_aside(problem):
            return
        asides = sorted(self.path.parent.glob(self.path.name + ".*" + CORRUPT_SUFFIX))
        if not asides:
            return
        newest = max(asides, key=_mtime)
        # rename keeps the mtime: the file's last write is the newest key it can have held
        self.unknown_until = _mtime(newest) + self.ttl
        if self.unknown_until <= time.time():
            return  # every key it held has expired: nothing can run twice any more
        self.warning = {
            "message": f"{self.path.name} was damaged ({problem or 'found earlier'}): kept as {newest.name}. "
                       f"Until {iso_timestamp(self.unknown_until)} a command with an idempotency_key the router "
                       "does not know is refused (idempotency_unknown), because it may repeat one whose record "
                       f"was lost. Check what ran (codeswarm list / events), then delete {newest.name} and "
                       "restart the router to accept new keys again.",
            "error_code": "idempotency_file_corrupt", "kept_as": str(newest), "known_keys": len(self.keys),
            "unknown_keys_refused_until": iso_timestamp(self.unknown_until),
        }

    def _read(self) -> str | None:
        """Load the readable records; returns what was wrong with the file, or None."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"unreadable: {exc.strerror or exc}"
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            return f"not JSON: {exc}"
        if not isinstance(raw, dict):
            return "not a JSON object"
        bad = 0
        for key, rec in raw.items():
            try:
                self.keys[key] = KeyRecord.from_json(rec)
            except ValueError:
                bad += 1
        return f"{bad} of {len(raw)} records unusable" if bad else None

    def _set_aside(self, problem: str) -> bool:
        try:
            stamp = int(_mtime(self.path))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.{stamp}{CORRUPT_SUFFIX}"))
            if self.keys:  # the readable records stay in force
                self.write(self._encode())
        except OSError as exc:
            # Cannot even move it: refuse unknown keys for a full TTL from now, and say why.
            self.unknown_until = time.time() + self.ttl
            self.warning = {"message": f"{self.path.name} is damaged ({problem}) and cannot be set aside "
                                       f"({exc.strerror or exc}); unknown idempotency keys are refused until "
                                       f"{iso_timestamp(self.unknown_until)}",
                            "error_code": "idempotency_file_corrupt"}
            return False
        return True

    # ------------------------------------------------------------------ commands

    def check(self, cmd: Command, now: float) -> KeyRecord | None:
        """The original record for a repeat (None for a new key); Rejection on a reused key, or on an
        unknown key while lost records could still hold it."""
        key = cmd.payload.get("idempotency_key")
        if key is None:
            return None
        rec = self.keys.get(key)
        if rec is None and now < self.unknown_until:
            raise Rejection("idempotency_unknown",
                            f"the router lost idempotency records ({self.path.name} was damaged) and cannot tell "
                            f"whether this key already ran; nothing was done. Check with `codeswarm list`, then "
                            f"retry with a new key after {iso_timestamp(self.unknown_until)} or once the operator "
                            "cleared it (see `codeswarm router status`)",
                            request_id=cmd.request_id, command=cmd.command, idempotency_key=key,
                            refused_until=iso_timestamp(self.unknown_until))
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
        return self._encode()

    def _encode(self) -> bytes:
        return orjson.dumps({k: asdict(r) for k, r in self.keys.items()})

    def write(self, data: bytes) -> None:
        atomic_write(self.path, data)


def deduplicated_data(cmd: Command, rec: KeyRecord, first_seq: int | None) -> dict[str, Any]:
    return {"request_id": cmd.request_id, "original_request_id": rec.request_id,
            "idempotency_key": cmd.payload["idempotency_key"], "first_seq": first_seq}


def _mtime(path: Path) -> float:
    return path.stat().st_mtime
