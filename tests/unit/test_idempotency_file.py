"""A damaged idempotency.json (issue 11): the router must not forget every key, because a cron retry
would then run its command twice. The file is kept aside, its readable records stay in force, and an
unknown key is refused (`idempotency_unknown`) until a lost key could no longer be repeated."""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson
import pytest

from codeswarm.errors import Rejection
from codeswarm.protocol import Command
from codeswarm.router.idempotency import IdempotencyKeys

TTL = 3600.0


def cmd(key: str, prompt: str = "nightly") -> Command:
    return Command("inject", f"req-{key}-{prompt}", {"swarm_id": "s", "prompt": prompt, "idempotency_key": key})


def keys_file(tmp_path: Path, content: bytes, *, age: float = 0.0) -> Path:
    path = tmp_path / "idempotency.json"
    path.write_bytes(content)
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def remembered(tmp_path: Path, *keys: str, at: float) -> bytes:
    k = IdempotencyKeys(tmp_path / "seed.json", TTL)
    data = b""
    for key in keys:
        data = k.remember(cmd(key), at, head_seq=7)
    return data


def asides(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("idempotency.json.*.corrupt"))


def test_a_garbage_file_is_kept_aside_and_unknown_keys_are_refused(tmp_path: Path) -> None:
    now = time.time()
    path = keys_file(tmp_path, b'{"cron-1": {"command": "inj')  # damaged mid-record
    keys = IdempotencyKeys(path, TTL)
    [aside] = asides(tmp_path)
    assert aside.read_bytes() == b'{"cron-1": {"command": "inj'  # the evidence is kept, byte for byte
    assert keys.warning is not None and keys.warning["error_code"] == "idempotency_file_corrupt"
    assert aside.name in keys.warning["message"] and "not JSON" in keys.warning["message"]
    with pytest.raises(Rejection) as info:
        keys.check(cmd("cron-1"), now)  # may be a retry of a command that ran: not run again
    assert info.value.code == "idempotency_unknown" and info.value.extra["idempotency_key"] == "cron-1"
    assert "nothing was done" in info.value.reason
    assert keys.check(cmd("cron-1"), keys.unknown_until + 1) is None  # past the last possible repeat
    assert keys.unknown_until == pytest.approx(aside.stat().st_mtime + TTL)


def test_the_refusal_survives_a_restart_and_lifts_when_the_operator_deletes_the_aside(tmp_path: Path) -> None:
    now = time.time()
    path = keys_file(tmp_path, b"\x00\x00garbage")
    IdempotencyKeys(path, TTL)
    again = IdempotencyKeys(path, TTL)  # the router restarted: the damaged file is gone, the aside is not
    assert again.warning is not None
    with pytest.raises(Rejection):
        again.check(cmd("k"), now)
    for p in asides(tmp_path):
        p.unlink()
    cleared = IdempotencyKeys(path, TTL)
    assert cleared.warning is None and cleared.check(cmd("k"), now) is None


def test_a_key_remembered_after_the_damage_deduplicates_as_usual(tmp_path: Path) -> None:
    now = time.time()
    keys = IdempotencyKeys(keys_file(tmp_path, b"[1, 2"), TTL)
    keys.remember(cmd("fresh"), now, head_seq=3)
    assert keys.check(cmd("fresh"), now + 1) is not None
    with pytest.raises(Rejection) as info:
        keys.check(cmd("fresh", prompt="other"), now + 1)
    assert info.value.code == "idempotency_conflict"


def test_readable_records_of_a_damaged_file_stay_in_force(tmp_path: Path) -> None:
    now = time.time()
    good = orjson.loads(remembered(tmp_path, "a", "b", at=now - 10))
    good["c"] = {"command": "inject", "payload_hash": 5}  # one damaged record
    path = keys_file(tmp_path, orjson.dumps(good))
    keys = IdempotencyKeys(path, TTL)
    assert keys.check(cmd("a"), now) is not None and keys.check(cmd("b"), now) is not None
    assert keys.warning is not None and "1 of 3 records unusable" in keys.warning["message"]
    assert keys.warning["known_keys"] == 2
    with pytest.raises(Rejection):
        keys.check(cmd("c"), now)
    assert set(orjson.loads(path.read_bytes())) == {"a", "b"}  # rewritten with what could be read
    assert len(asides(tmp_path)) == 1


def test_records_with_fields_from_a_newer_router_are_read(tmp_path: Path) -> None:
    now = time.time()
    recs = orjson.loads(remembered(tmp_path, "a", at=now - 10))
    recs["a"]["origin"] = {"client": "cron", "nested": [1]}
    keys = IdempotencyKeys(keys_file(tmp_path, orjson.dumps(recs)), TTL)
    assert keys.warning is None and asides(tmp_path) == []
    assert keys.check(cmd("a"), now).request_id == "req-a-nightly"


def test_an_aside_older_than_the_ttl_refuses_nothing(tmp_path: Path) -> None:
    now = time.time()
    old = tmp_path / "idempotency.json.1.corrupt"
    old.write_bytes(b"junk")
    os.utime(old, (now - TTL - 60, now - TTL - 60))
    keys = IdempotencyKeys(tmp_path / "idempotency.json", TTL)
    assert keys.warning is None and keys.check(cmd("k"), now) is None


def test_a_damaged_file_that_cannot_be_moved_still_refuses_unknown_keys(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    now = time.time()
    keys = IdempotencyKeys(keys_file(tmp_path, b"{"), TTL)
    assert keys.warning is not None and "cannot be set aside" in keys.warning["message"]
    with pytest.raises(Rejection) as info:
        keys.check(cmd("k"), now)
    assert info.value.code == "idempotency_unknown"


def test_a_missing_file_is_a_fresh_start(tmp_path: Path) -> None:
    keys = IdempotencyKeys(tmp_path / "idempotency.json", TTL)
    assert keys.warning is None and keys.keys == {} and keys.check(cmd("k"), time.time()) is None
