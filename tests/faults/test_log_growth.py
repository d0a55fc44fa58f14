"""Event log growth: segments rotate every event_log_segment_events, whole old segments are pruned
while event_log_max_events remain, and `events --since` works across segments, across a restart,
and after pruning (subscribed.truncated says that older events are gone)."""

from __future__ import annotations

import json
import socket
from typing import Any

from tests.conftest import Codeswarm, local_config
from tests.faults.conftest import assert_log_consistent

SEGMENT, MAX = 200, 1000


def subscribed(cs: Codeswarm, since: int) -> dict[str, Any]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(str(cs.home / "router.sock"))
    s.sendall(json.dumps({"protocol": "codeswarm.router.v1", "command": "subscribe", "request_id": "s",
                          "payload": {"since": since}}).encode() + b"\n")
    buf = b""
    try:
        while True:
            while b"\n" not in buf:
                chunk = s.recv(1 << 20)
                assert chunk
                buf += chunk
            line, buf = buf.split(b"\n", 1)
            ev = json.loads(line)
            if ev["event"] == "subscribed":
                return ev["data"]
    finally:
        s.close()


def test_segments_rotate_prune_and_replay_across_them(cs: Codeswarm) -> None:
    cs.write_config(local_config(cs.tmp, event_log_segment_events=SEGMENT, event_log_max_events=MAX))
    sid = cs.run("launch", "--nodes", "2").stdout.strip()
    cs.json("inject", sid, "--prompt", "[mock:firehose=1200] fill the log", "--wait", "--timeout", "60")
    segs = sorted((cs.home / "events").glob("*.jsonl"))
    counts = [len(p.read_bytes().splitlines()) for p in segs]
    assert len(segs) >= 2 and all(c == SEGMENT for c in counts[:-1]), counts
    assert MAX <= sum(counts) <= MAX + SEGMENT, f"pruned to whole segments holding >= {MAX} events: {counts}"
    oldest = int(segs[0].stem)
    evs = cs.events()  # --since 0 after pruning: from the oldest kept event, in order
    assert_log_consistent(evs)
    assert evs[0]["seq"] == oldest and len(evs) == sum(counts)
    info = subscribed(cs, 0)
    assert info["truncated"] is True and info["oldest_seq"] == oldest
    assert subscribed(cs, oldest - 1)["truncated"] is False
    # --since in the middle of a segment, and exactly at a boundary: nothing skipped or repeated
    for since in (oldest + SEGMENT // 2, int(segs[1].stem) - 1, int(segs[-1].stem)):
        part = _since(cs, since)
        assert [e["seq"] for e in part] == [e["seq"] for e in evs if e["seq"] > since]
    # the same after a restart (replay from disk, not from the in-memory ring)
    cs.run("router", "stop")
    again = _since(cs, oldest + 3)
    assert [e["seq"] for e in again][: len(evs) - 3] == [e["seq"] for e in evs if e["seq"] > oldest + 3]
    assert_log_consistent(again)


def _since(cs: Codeswarm, since: int) -> list[dict[str, Any]]:
    out = cs.run("events", "--since", str(since), "--json").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _lines(first: int, n: int) -> list[bytes]:
    return [json.dumps({"seq": s, "event": "x", "data": {}}).encode() + b"\n" for s in range(first, first + n)]


def test_prune_by_age_drops_closed_segments_older_than_max_age(tmp_path: Any) -> None:
    import os
    import time

    from codeswarm.router.store import EventLog

    log = EventLog(tmp_path / "events", max_events=10_000, segment_events=10, max_age_seconds=3600)
    for s in range(1, 36):
        log.append(_lines(log.next_seq(), 1), s)
    assert log.segments == [1, 11, 21, 31]
    old = time.time() - 7200
    for first in (1, 11):
        os.utime(log._seg_path(first), (old, old))
    log.append(_lines(log.next_seq(), 1), 36)
    assert log.segments == [21, 31] and log.oldest_seq == 21
    assert [s for s, _ in log.read_since(0)] == list(range(21, 37))
    # without max_age nothing is dropped by age
    plain = EventLog(tmp_path / "plain", max_events=10_000, segment_events=10)
    for s in range(1, 25):
        plain.append(_lines(plain.next_seq(), 1), s)
    os.utime(plain._seg_path(1), (old, old))
    plain.append(_lines(plain.next_seq(), 1), 25)
    assert plain.segments[0] == 1
    log.close()
    plain.close()


def test_append_is_all_or_nothing_on_a_write_error(tmp_path: Any, monkeypatch: Any) -> None:
    """What the disk-full test relies on: a failed append leaves the log exactly as it was."""
    import os

    from codeswarm.router.store import EventLog

    log = EventLog(tmp_path / "events", max_events=10_000, segment_events=10)
    log.append(_lines(1, 8), 1)
    before = {p.name: p.read_bytes() for p in (tmp_path / "events").glob("*.jsonl")}
    real_write, calls = os.write, [0]

    def flaky(fd: int, data: Any) -> int:
        calls[0] += 1
        if calls[0] == 2:  # the second chunk (in a new segment) fails after a partial write
            real_write(fd, bytes(data[:7]))
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", flaky)
    try:
        log.append(_lines(9, 6), 9)
    except OSError:
        pass
    else:
        raise AssertionError("the write error must reach the caller")
    monkeypatch.setattr(os, "write", real_write)
    after = {p.name: p.read_bytes() for p in (tmp_path / "events").glob("*.jsonl")}
    assert after == before and log.segments == [1]
    log.append(_lines(9, 6), 9)  # the retry writes the same lines once
    assert [s for s, _ in log.read_since(0)] == list(range(1, 15))
    log.close()
