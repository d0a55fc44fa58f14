"""Damaged lines in the middle of the event log are counted, not silently skipped (issue 11), and
the router's start-up warnings file that `codeswarm router status` reads."""

from __future__ import annotations

from pathlib import Path

import orjson

from codeswarm.router import startup_warnings
from codeswarm.router.store import EventLog, LogDamage


def _log_with_damage(tmp_path: Path) -> EventLog:
    log = EventLog(tmp_path / "events", max_events=100, segment_events=4)
    for _ in range(10):
        seq = log.next_seq()
        log.append([orjson.dumps({"event": "e", "seq": seq, "data": {}}) + b"\n"], seq)
    log.close()
    segs = sorted((tmp_path / "events").glob("*.jsonl"))
    first = segs[0].read_bytes().splitlines(keepends=True)
    first[1] = b'{"event": "e", "se\x00\xff garbage\n'  # a damaged line in the middle
    first[2] = b'{"event": "e", "data": {}}\n'  # JSON, but no seq
    segs[0].write_bytes(b"".join(first))
    second = segs[1].read_bytes().splitlines(keepends=True)
    second[0] = b"not json at all\n"
    segs[1].write_bytes(b"".join(second))
    return EventLog(tmp_path / "events", max_events=100, segment_events=4)


def test_read_since_counts_the_damaged_lines_it_skips(tmp_path: Path) -> None:
    log = _log_with_damage(tmp_path)
    damage = LogDamage()
    seqs = [seq for seq, _ in log.read_since(0, damage=damage)]
    assert seqs == [1, 4, 6, 7, 8, 9, 10]
    assert damage.lines == 3
    assert damage.by_place == {"000000000001.jsonl": 2, "000000000005.jsonl": 1}
    assert damage.summary() == "event log: skipped 3 damaged lines (000000000001.jsonl: 2, 000000000005.jsonl: 1)"
    later = LogDamage()
    assert [seq for seq, _ in log.read_since(8, damage=later)] == [9, 10]
    assert later.lines == 0  # a reader only counts what it read past
    after_4 = LogDamage()  # seq 1, X, X, 4 | X, 6, ...: the first two lie before `since`, not read
    assert [seq for seq, _ in log.read_since(4, damage=after_4)] == [6, 7, 8, 9, 10]
    assert after_4.by_place == {"000000000005.jsonl": 1}
    after_1 = LogDamage()  # between 1 (read past) and 4 (wanted): they may be wanted lines
    assert [seq for seq, _ in log.read_since(1, damage=after_1)] == [4, 6, 7, 8, 9, 10] and after_1.lines == 3


def test_damaged_lines_at_the_end_of_a_segment_are_counted(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events", max_events=100, segment_events=100)
    for _ in range(3):
        seq = log.next_seq()
        log.append([orjson.dumps({"event": "e", "seq": seq, "data": {}}) + b"\n"], seq)
    log.close()
    [seg] = (tmp_path / "events").glob("*.jsonl")
    seg.write_bytes(seg.read_bytes() + b"garbage\n")
    damage = LogDamage()
    assert [s for s, _ in EventLog(tmp_path / "events", max_events=100, segment_events=100)
            .read_since(3, damage=damage)] == [] and damage.lines == 1


def test_an_intact_log_reports_no_damage(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events", max_events=100, segment_events=4)
    for _ in range(6):
        seq = log.next_seq()
        log.append([orjson.dumps({"event": "e", "seq": seq, "data": {}}) + b"\n"], seq)
    damage = LogDamage()
    assert len(list(log.read_since(0, damage=damage))) == 6 and damage.lines == 0


def test_a_line_of_the_wrong_shape_is_damage_for_every_reader(tmp_path: Path) -> None:
    """JSON with an integer seq but an event that is not a string or data that is not an object: no
    reader (recovery, a subscribe's replay from disk, the projects' replay) may meet it; before, the
    replay of `events --swarm` after a restart failed on it and the client waited forever."""
    log = EventLog(tmp_path / "events", max_events=100, segment_events=100)
    shapes = [{"event": "e", "data": {"a": 1}}, {"event": "e", "data": 5}, {"event": 7, "data": {}},
              {"event": "e", "data": [1]}, {"event": "e"}, {"event": "e", "data": {"b": 2}}]
    for shape in shapes:
        seq = log.next_seq()
        log.append([orjson.dumps({**shape, "seq": seq}) + b"\n"], seq)
    damage = LogDamage()
    assert [(seq, event, data) for seq, _raw, event, data in log.read_events(0, damage=damage)] == [
        (1, "e", {"a": 1}), (6, "e", {"b": 2})]
    assert damage.lines == 4
    assert [seq for seq, _ in log.read_since(0)] == [1, 6]


def test_many_damaged_segments_are_summarized(tmp_path: Path) -> None:
    damage = LogDamage()
    for i in range(12):
        damage.add(f"{i:012d}.jsonl")
    assert damage.summary().endswith(", and 2 more)") and "skipped 12 damaged lines" in damage.summary()


def test_startup_warnings_round_trip(tmp_path: Path) -> None:
    assert startup_warnings.read(tmp_path) == (None, [])  # a router that never started
    startup_warnings.write(tmp_path, [{"message": "event log: skipped 2 damaged lines (x: 2)",
                                       "error_code": "event_log_damaged_lines", "count": 2},
                                      {"message": "snapshot ignored: a.json: bad"}], 1_750_000_000.0)
    started, lines = startup_warnings.read(tmp_path)
    assert started == "2025-06-15T15:06:40.000000+00:00"
    assert lines == ["event log: skipped 2 damaged lines (x: 2) [event_log_damaged_lines]", "snapshot ignored: a.json: bad"]
    startup_warnings.write(tmp_path, [], 1_750_000_100.0)  # the next start was clean
    assert startup_warnings.read(tmp_path)[1] == []


def test_a_damaged_warnings_file_is_itself_a_warning(tmp_path: Path) -> None:
    (tmp_path / startup_warnings.FILE_NAME).write_bytes(b"{oops")
    started, lines = startup_warnings.read(tmp_path)
    assert started is None and len(lines) == 1 and "unreadable" in lines[0]
    (tmp_path / startup_warnings.FILE_NAME).write_bytes(b'{"warnings": [7, {"message": "ok"}]}')
    assert startup_warnings.read(tmp_path)[1] == ["(a warning this version cannot read: 7)", "ok"]
