"""EventLog (segmented, seq never reused) and SnapshotStore (atomic per-swarm files), PROTOCOL.md 3.3."""

from __future__ import annotations

import os
import stat

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codeswarm.router.store import SEQ_RESERVATION, EventLog, SnapshotStore, atomic_write


def open_log(path, max_events=1000, segment_events=100) -> EventLog:
    return EventLog(path, max_events=max_events, segment_events=segment_events)


def add(log: EventLog, n: int, name: str = "assistant_delta") -> list[int]:
    """Append n events in one batch, as the committer does; returns their seqs."""
    seqs = [log.next_seq() for _ in range(n)]
    lines = [orjson.dumps({"event": name, "seq": s, "data": {"i": s}}) + b"\n" for s in seqs]
    log.append(lines, seqs[0])
    return seqs


def seqs_on_disk(log: EventLog, since: int = 0, until: int | None = None) -> list[int]:
    return [seq for seq, _ in log.read_since(since, until)]


def segment_files(path) -> list[str]:
    return sorted(p.name for p in path.glob("*.jsonl"))


# ---------------------------------------------------------------- appending and reading


def test_seq_starts_at_1_and_reads_back(tmp_path):
    log = open_log(tmp_path / "ev")
    assert log.head_seq == 0 and log.oldest_seq == 1
    assert add(log, 3) == [1, 2, 3]
    got = list(log.read_since(0))
    assert [s for s, _ in got] == [1, 2, 3]
    assert all(raw.endswith(b"\n") and orjson.loads(raw)["seq"] == s for s, raw in got)
    assert seqs_on_disk(log, 1) == [2, 3]
    assert seqs_on_disk(log, 0, 2) == [1, 2]
    assert seqs_on_disk(log, 3) == []
    log.close()


def test_files_are_private(tmp_path):
    log = open_log(tmp_path / "ev")
    add(log, 1)
    log.close()
    assert stat.S_IMODE(os.stat(tmp_path / "ev").st_mode) == 0o700
    for p in (tmp_path / "ev").glob("*.jsonl"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600


def test_rotation_into_segments_named_by_first_seq(tmp_path):
    log = open_log(tmp_path / "ev", max_events=1000, segment_events=3)
    add(log, 7)
    add(log, 3)
    assert segment_files(tmp_path / "ev") == [f"{n:012d}.jsonl" for n in (1, 4, 7, 10)]
    assert seqs_on_disk(log) == list(range(1, 11))
    assert seqs_on_disk(log, 5) == list(range(6, 11))  # starts in the middle of a segment
    assert seqs_on_disk(log, 3, 7) == [4, 5, 6, 7]
    log.close()


def test_pruning_keeps_at_least_max_events_and_moves_oldest_seq(tmp_path):
    log = open_log(tmp_path / "ev", max_events=10, segment_events=4)
    for _ in range(13):
        add(log, 3)  # 39 events
    kept = seqs_on_disk(log)
    assert kept == list(range(log.oldest_seq, 40))
    assert 10 <= len(kept) < 10 + 4
    assert log.oldest_seq > 1
    assert int(segment_files(tmp_path / "ev")[0][:12]) == log.oldest_seq
    # reading from before the retained window starts at oldest_seq
    assert seqs_on_disk(log, 0)[0] == log.oldest_seq
    log.close()
    again = open_log(tmp_path / "ev", max_events=10, segment_events=4)
    assert again.oldest_seq == kept[0] and again.head_seq == 39
    again.close()


def test_one_big_batch_spans_several_segments(tmp_path):
    log = open_log(tmp_path / "ev", max_events=1000, segment_events=10)
    add(log, 35)
    assert segment_files(tmp_path / "ev") == [f"{n:012d}.jsonl" for n in (1, 11, 21, 31)]
    assert seqs_on_disk(log) == list(range(1, 36))
    log.close()


# ---------------------------------------------------------------- seq across restarts


def test_clean_reopen_continues_without_a_gap(tmp_path):
    log = open_log(tmp_path / "ev")
    add(log, 5)
    log_id = log.log_id
    log.close()
    log = open_log(tmp_path / "ev")
    assert log.head_seq == 5 and log.log_id == log_id
    assert add(log, 2) == [6, 7]
    assert seqs_on_disk(log) == [1, 2, 3, 4, 5, 6, 7]
    log.close()


def test_unclean_stop_skips_the_reserved_range(tmp_path):
    log = open_log(tmp_path / "ev")
    add(log, 5)
    log.fsync()  # no close(): the router was killed
    os.close(log._fd)  # (only to release the descriptor in this process)
    log._fd = None
    again = open_log(tmp_path / "ev")
    new = add(again, 1)[0]
    # Numbers up to the reservation may have reached a client before the crash: never reuse them.
    assert new > SEQ_RESERVATION
    assert seqs_on_disk(again) == [1, 2, 3, 4, 5, new]
    again.close()
    # ... and a clean stop after that leaves no further gap.
    third = open_log(tmp_path / "ev")
    assert add(third, 1) == [new + 1]
    third.close()


def test_reservation_is_renewed_before_it_runs_out(tmp_path):
    log = open_log(tmp_path / "ev", max_events=10**6, segment_events=10**6)
    add(log, SEQ_RESERVATION + 5)
    reserved = int((tmp_path / "ev" / "seq.reserved").read_text())
    assert reserved >= log.head_seq
    os.close(log._fd)
    log._fd = None
    again = open_log(tmp_path / "ev", max_events=10**6, segment_events=10**6)
    assert again.next_seq() > SEQ_RESERVATION + 5
    again.close()


def test_seq_never_reused_after_every_segment_is_pruned(tmp_path):
    log = open_log(tmp_path / "ev", max_events=2, segment_events=2)
    add(log, 9)
    log.close()
    for p in (tmp_path / "ev").glob("*.jsonl"):
        p.unlink()  # log truncated by hand (or pruned away entirely)
    log = open_log(tmp_path / "ev", max_events=2, segment_events=2)
    assert add(log, 1)[0] > 9
    log.close()


def test_torn_last_line_is_cut_on_open(tmp_path):
    log = open_log(tmp_path / "ev")
    add(log, 3)
    log.close()
    seg = tmp_path / "ev" / f"{1:012d}.jsonl"
    torn = b'{"event": "assistant_delta", "seq": 4, "da'
    with open(seg, "ab") as f:
        f.write(torn)
    log = open_log(tmp_path / "ev")
    assert log.truncated_bytes == len(torn)
    assert seg.read_bytes().endswith(b"}\n")
    assert log.head_seq == 3
    assert add(log, 1) == [4]
    assert seqs_on_disk(log) == [1, 2, 3, 4]
    log.close()
    assert open_log(tmp_path / "ev").truncated_bytes == 0


def test_damaged_lines_are_skipped_when_reading(tmp_path):
    log = open_log(tmp_path / "ev")
    add(log, 2)
    os.write(log._fd, b"garbage\n{}\n")
    add(log, 2)
    assert seqs_on_disk(log) == [1, 2, 3, 4]
    log.close()
    log = open_log(tmp_path / "ev")
    assert log.head_seq == 4
    log.close()


def test_log_id_is_stable_and_new_for_a_new_log(tmp_path):
    a = open_log(tmp_path / "ev")
    log_id = a.log_id
    a.close()
    assert open_log(tmp_path / "ev").log_id == log_id
    other = open_log(tmp_path / "other")
    assert other.log_id != log_id and len(other.log_id) >= 8


# ---------------------------------------------------------------- snapshots


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "f.json"
    atomic_write(p, b"one")
    atomic_write(p, b"two")
    assert p.read_bytes() == b"two"
    assert [x.name for x in tmp_path.iterdir()] == ["f.json"]
    assert stat.S_IMODE(p.stat().st_mode) == 0o600


def test_snapshot_write_and_load(tmp_path):
    store = SnapshotStore(tmp_path)
    store.write({"s1": orjson.dumps({"swarm_id": "s1", "x": 1}), "s2": orjson.dumps({"swarm_id": "s2"})},
                41)
    records, problems, applied = SnapshotStore(tmp_path).load()
    assert sorted(r["swarm_id"] for r in records) == ["s1", "s2"]
    assert problems == [] and applied == 41
    assert orjson.loads((tmp_path / "state.json").read_bytes()) == {"applied_seq": 41}
    store.write({"s1": None}, 42)  # removed swarm
    records, _, applied = store.load()
    assert [r["swarm_id"] for r in records] == ["s2"] and applied == 42
    assert not list((tmp_path / "swarms").glob("*.tmp"))


def test_empty_state_dir_loads_nothing(tmp_path):
    assert SnapshotStore(tmp_path).load() == ([], [], 0)


def test_a_state_file_of_an_older_router_with_extra_state_loads(tmp_path):
    (tmp_path / "state.json").write_bytes(orjson.dumps({"applied_seq": 9, "extra": {"queues": {"s": []}}}))
    assert SnapshotStore(tmp_path).load() == ([], [], 9)



@pytest.mark.parametrize("content", [b'{"swarm_id": "s', b"[]", b'{"no_id": 1}', b"\xff\xfe", b""])
def test_corrupt_snapshot_is_reported_and_renamed(tmp_path, content):
    store = SnapshotStore(tmp_path)
    store.write({"good": orjson.dumps({"swarm_id": "good"})}, 7)
    (tmp_path / "swarms" / "bad.json").write_bytes(content)
    records, problems, applied = store.load()
    assert [r["swarm_id"] for r in records] == ["good"]
    assert len(problems) == 1 and problems[0].startswith("bad.json")
    assert (tmp_path / "swarms" / "bad.corrupt").read_bytes() == content
    assert not (tmp_path / "swarms" / "bad.json").exists()
    assert applied == 7
    assert store.load()[1] == []  # reported once, then out of the way


@pytest.mark.parametrize("content", [b"{", b"[]", b'{"applied_seq": "x"}', b""])
def test_corrupt_state_file_means_applied_seq_0(tmp_path, content):
    """applied_seq unknown: replay the whole log, and say why (a problem, so a router_warning)."""
    store = SnapshotStore(tmp_path)
    (tmp_path / "state.json").write_bytes(content)
    _, problems, applied = store.load()
    assert applied == 0 and len(problems) == 1 and problems[0].startswith("state.json: ")


# ---------------------------------------------------------------- reading the tail only (issue 13)


def _reference_read(path, since: int) -> tuple[list[int], int]:
    """The forward reading read_since did before it learned to start at the tail (from the segment
    holding since + 1, every line): the seqs after `since` and the damaged lines after `since`."""
    out, damaged = [], 0
    segs = sorted(path.glob("*.jsonl"))
    start = max([i for i, seg in enumerate(segs) if int(seg.stem) <= since + 1], default=0)
    for seg in segs[start:]:
        unplaced = 0
        for raw in seg.read_bytes().splitlines(keepends=True):
            if not raw.endswith(b"\n"):
                break
            try:
                seq = int(orjson.loads(raw)["seq"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                unplaced += 1
                continue
            if seq > since:
                out.append(seq)
                damaged += unplaced
            unplaced = 0
        damaged += unplaced
    return out, damaged


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.integers(0, 40), segment=st.integers(1, 12), block=st.integers(1, 300),
       damage=st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from([b"{not json", b"", b'{"seq":"x"}', b"x" * 500])),
                       max_size=6),
       since=st.integers(-1, 45))
def test_read_since_from_the_tail_reads_what_a_full_read_reads(tmp_path_factory, monkeypatch, events, segment, block,
                                                                damage, since):
    """read_since seeks backwards to the last line at or before `since` (any block size, long lines,
    damaged lines anywhere): the same lines and the same damage count as reading every file forward."""
    from codeswarm.router import store

    monkeypatch.setattr(store, "BACK_BLOCK", block)
    path = tmp_path_factory.mktemp("ev")
    log = open_log(path, max_events=10_000, segment_events=segment)
    for _ in range(events):
        add(log, 1)
    log.close()
    for at, junk in damage:  # damaged lines written into the files, as a disk or a hand might
        segs = sorted(path.glob("*.jsonl"))
        if not segs:
            break
        seg = segs[at % len(segs)]
        lines = seg.read_bytes().splitlines(keepends=True)
        lines.insert(at % (len(lines) + 1), junk + b"\n")
        seg.write_bytes(b"".join(lines))
    expected, expected_damage = _reference_read(path, since)
    (path / "seq.reserved").unlink(missing_ok=True)  # the head comes from the last segment's last good line
    reopened = open_log(path, max_events=10_000, segment_events=segment)
    found = store.LogDamage()
    assert [seq for seq, _ in reopened.read_since(since, damage=found)] == expected
    assert found.lines == expected_damage
    assert reopened.head_seq == events  # found backwards past damaged last lines too


def test_opening_a_log_counts_closed_segments_only_when_pruning_needs_them(tmp_path, monkeypatch):
    log = open_log(tmp_path / "ev", max_events=10, segment_events=4)
    add(log, 9)
    log.close()
    counted: list[int] = []
    original = EventLog._count_lines

    def counting(self, first):
        counted.append(first)
        return original(self, first)

    monkeypatch.setattr(EventLog, "_count_lines", counting)
    log = open_log(tmp_path / "ev", max_events=10, segment_events=4)
    assert counted == [] and log.head_seq == 9 and seqs_on_disk(log, 8) == [9]
    add(log, 6)  # 15 events: the oldest segment (1-4) can go, and only now are the closed ones counted
    assert sorted(counted) == [1, 5]
    assert segment_files(tmp_path / "ev") == ["000000000005.jsonl", "000000000009.jsonl", "000000000013.jsonl"]
    assert seqs_on_disk(log) == list(range(5, 16))
    log.close()
