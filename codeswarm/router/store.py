"""Durable state: the segmented append-only event log and the per-swarm snapshot files.

Blocking file I/O; the server calls the slow parts (fsync, snapshot writes, replay reads)
through trio.to_thread. Log lines are the wire envelopes (plus the private `_record` of
swarm_launched, which the server strips before sending).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

SEQ_RESERVATION = 10_000
BACK_BLOCK = 64 << 10  # read_since finds where to start by reading a segment backwards in blocks this size


@dataclass
class LogDamage:
    """Damaged lines met while reading the log (not JSON, no integer seq), counted per segment file.
    A reader that skips them passes one of these, so that recovery can say how many it skipped."""

    by_place: dict[str, int] = field(default_factory=dict)

    def add(self, place: str, lines: int = 1) -> None:
        self.by_place[place] = self.by_place.get(place, 0) + lines

    @property
    def lines(self) -> int:
        return sum(self.by_place.values())

    def summary(self) -> str:
        places = ", ".join(f"{name}: {n}" for name, n in sorted(self.by_place.items())[:10])
        more = f", and {len(self.by_place) - 10} more" if len(self.by_place) > 10 else ""
        return f"event log: skipped {self.lines} damaged line{'s' * (self.lines != 1)} ({places}{more})"


def atomic_write(path: Path, data: bytes) -> None:
    """Write tmp, fsync, rename, fsync dir: the file is either old or new after a crash."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class EventLog:
    """Segments `events/<first_seq>.jsonl`; seq starts at 1 and is never reused."""

    def __init__(self, directory: Path, *, max_events: int, segment_events: int,
                 max_age_seconds: float | None = None) -> None:
        self.dir = directory
        self.max_events = max_events
        self.max_age_seconds = max_age_seconds  # None/0: prune by count only
        self.segment_events = max(1, min(segment_events, max_events))
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.log_id = self._load_log_id()
        self.segments: list[int] = sorted(int(p.stem) for p in self.dir.glob("*.jsonl") if p.stem.isdigit())
        # Events per segment: retention counts events, not seq distance (seq has gaps after a crash).
        # The closed segments are counted when pruning first needs them, not at start-up (issue 13:
        # reading every segment made a restart scale with the log's size).
        self.seg_counts: dict[int, int] = {}
        self._closed_counted = len(self.segments) <= 1
        self.head_seq = 0
        self.truncated_bytes = 0  # a partial last line found (and cut) at open
        self._fd: int | None = None
        self._seg_count = 0
        self._open_tail()
        self._reserved = self._load_reservation()
        if self._reserved > self.head_seq:  # unclean stop: numbers up to the reservation may have been sent
            self.head_seq = self._reserved
        self.oldest_seq = self._first_seq_on_disk() or self.head_seq + 1

    # ------------------------------------------------------------ open / recover

    def _load_log_id(self) -> str:
        p = self.dir / "log_id"
        try:
            text = p.read_text().strip()
            if text:
                return text
        except FileNotFoundError:
            pass
        log_id = secrets.token_hex(8)
        atomic_write(p, log_id.encode())
        return log_id

    def _load_reservation(self) -> int:
        try:
            return int((self.dir / "seq.reserved").read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _write_reservation(self, value: int) -> None:
        atomic_write(self.dir / "seq.reserved", str(value).encode())
        self._reserved = value

    def _count_lines(self, first: int) -> int:
        try:
            with open(self._seg_path(first), "rb") as f:
                return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        except FileNotFoundError:
            return 0

    def _seg_path(self, first: int) -> Path:
        return self.dir / f"{first:012d}.jsonl"

    def _open_tail(self) -> None:
        if not self.segments:
            return
        path = self._seg_path(self.segments[-1])
        with open(path, "r+b") as f:
            lines, end, size = 0, 0, 0
            for chunk in iter(lambda: f.read(1 << 20), b""):  # counted in chunks: no list of lines
                lines += chunk.count(b"\n")
                nl = chunk.rfind(b"\n")
                if nl >= 0:
                    end = size + nl + 1
                size += len(chunk)
            if end < size:  # a torn last line from a crash: cut it, the event was never sent
                self.truncated_bytes = size - end
                f.truncate(end)
        self._seg_count = lines
        self.seg_counts[self.segments[-1]] = self._seg_count
        last = self._last_good_line(path, lambda seq: True)
        self.head_seq = last[0] if last is not None else self.segments[-1] - 1
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)

    def _last_good_line(self, path: Path, accept: Callable[[int], bool]) -> tuple[int, int] | None:
        """(seq, byte offset after it) of the last complete line of `path` that parses and whose seq
        `accept`s, read backwards in blocks: start-up and replay read the tail, not the whole file.
        Lines are in seq order within a segment (appended in order), so the scan stops at the first hit."""
        with open(path, "rb") as f:
            pos = f.seek(0, os.SEEK_END)
            buf, end = b"", 0  # buf holds the bytes from pos on; buf[end:] has been looked at
            while True:
                hi = buf.rfind(b"\n", 0, end)  # ends the last line not looked at (a torn tail is never looked at)
                lo = buf.rfind(b"\n", 0, hi) if hi >= 0 else -1
                if lo < 0 and pos > 0:  # that line (or its end) lies partly in an earlier block
                    n = min(BACK_BLOCK, pos)
                    pos -= n
                    f.seek(pos)
                    buf = f.read(n) + buf[:end]
                    end = len(buf)
                    continue
                if hi < 0:
                    return None
                try:
                    seq: int | None = int(orjson.loads(buf[lo + 1 : hi + 1])["seq"])
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    seq = None
                if seq is not None and accept(seq):
                    return seq, pos + hi + 1
                end = lo + 1

    def _first_seq_on_disk(self) -> int | None:
        for first in self.segments:
            try:
                with open(self._seg_path(first), "rb") as f:
                    line = f.readline()
                if line:
                    return int(orjson.loads(line)["seq"])
            except (OSError, orjson.JSONDecodeError, KeyError, ValueError):
                continue
        return None

    # ------------------------------------------------------------ writing

    def next_seq(self) -> int:
        self.head_seq += 1
        if self.head_seq > self._reserved:
            try:
                self._write_reservation(self.head_seq + SEQ_RESERVATION)
            except OSError:
                # Disk full: retried at the next seq. Only a machine crash (lost page cache) in this
                # window could reuse a number, and events are sent only once they are in the log.
                pass
        return self.head_seq

    def append(self, lines: list[bytes], first_seq: int) -> None:
        """Append log lines (each ending in LF), all or nothing: on OSError (disk full) the log is
        put back as it was, so that the caller can retry the same lines later."""
        last, seg_count = (self.segments[-1] if self.segments else None), self._seg_count
        size = os.fstat(self._fd).st_size if self._fd is not None else 0
        try:
            self._append(lines, first_seq)
        except OSError:
            self._undo(last, size, seg_count)
            raise

    def _undo(self, last: int | None, size: int, seg_count: int) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        while self.segments and self.segments[-1] != last:  # segments this append created
            first = self.segments.pop()
            self.seg_counts.pop(first, None)
            try:
                self._seg_path(first).unlink()
            except FileNotFoundError:
                pass
        if self.segments:
            path = self._seg_path(self.segments[-1])
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            os.ftruncate(self._fd, size)
            self._seg_count = seg_count
            self.seg_counts[self.segments[-1]] = seg_count

    def _append(self, lines: list[bytes], first_seq: int) -> None:
        i = 0
        while i < len(lines):
            if self._fd is None or self._seg_count >= self.segment_events:
                self._rotate(first_seq + i)
            room = self.segment_events - self._seg_count
            chunk = lines[i : i + room]
            buf = b"".join(chunk)
            assert self._fd is not None
            view = memoryview(buf)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            self._seg_count += len(chunk)
            self.seg_counts[self.segments[-1]] = self._seg_count
            i += len(chunk)
        if len(self.segments) > 1:
            self._prune()

    def _rotate(self, first_seq: int) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
        self._fd = os.open(self._seg_path(first_seq), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.segments.append(first_seq)
        self._seg_count = 0
        self.seg_counts[first_seq] = 0
        fsync_dir(self.dir)

    def _prune(self) -> None:
        """Drop whole old segments while the rest still holds max_events, and (with max_age_seconds)
        closed segments whose newest event is older than that (the file's mtime is its last write)."""
        if not self._closed_counted:
            for first in self.segments:
                if first not in self.seg_counts:
                    self.seg_counts[first] = self._count_lines(first)
            self._closed_counted = True
        total = sum(self.seg_counts.get(f, 0) for f in self.segments)
        while len(self.segments) > 1 and (total - self.seg_counts.get(self.segments[0], 0) >= self.max_events
                                          or self._expired(self.segments[0])):
            first = self.segments.pop(0)
            total -= self.seg_counts.pop(first, 0)
            try:
                self._seg_path(first).unlink()
            except FileNotFoundError:
                pass
            self.oldest_seq = self.segments[0]

    def _expired(self, first: int) -> bool:
        if not self.max_age_seconds:
            return False
        try:
            return self._seg_path(first).stat().st_mtime < time.time() - self.max_age_seconds
        except FileNotFoundError:
            return True

    def fsync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        self._write_reservation(self.head_seq)  # clean stop: no gap next time

    # ------------------------------------------------------------ reading

    def read_since(self, since: int, until: int | None = None,
                   damage: LogDamage | None = None) -> Iterator[tuple[int, bytes]]:
        """Yield (seq, line) for since < seq <= until, oldest first, skipping damaged lines. With `damage`,
        the damaged lines that lie after `since` are counted (one between two lines at or before `since`
        was never to be read); a torn last line is not damage, it is cut at open."""
        for seq, raw, _event, _data in self.read_events(since, until, damage):
            yield seq, raw

    def read_events(self, since: int, until: int | None = None,
                    damage: LogDamage | None = None) -> Iterator[tuple[int, bytes, str, dict[str, Any]]]:
        """As read_since, parsed once: (seq, line, event, data). A line that is JSON but not an event
        (no integer seq, an event that is not a string, data that is not an object) is damage too:
        no reader of the log meets a line of the wrong shape."""
        segs = list(self.segments)
        start = 0
        for i, first in enumerate(segs):
            if first <= since + 1:
                start = i
        for k, first in enumerate(segs[start:]):
            try:
                offset = 0
                if k == 0 and first <= since:  # begin after the segment's last line at or before `since`
                    found = self._last_good_line(self._seg_path(first), lambda seq: seq <= since)
                    offset = found[1] if found is not None else 0
                with open(self._seg_path(first), "rb") as f:
                    f.seek(offset)
                    unplaced = 0  # damaged lines since the last good one: before or after `since`?
                    for raw in f:
                        if not raw.endswith(b"\n"):
                            break
                        try:
                            obj = orjson.loads(raw)
                            seq, event, data = int(obj["seq"]), obj["event"], obj["data"]
                        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                            unplaced += 1
                            continue
                        if not (isinstance(event, str) and isinstance(data, dict)):
                            unplaced += 1
                            continue
                        if seq <= since:
                            unplaced = 0
                            continue
                        if unplaced and damage is not None:
                            damage.add(self._seg_path(first).name, unplaced)
                        unplaced = 0
                        if until is not None and seq > until:
                            return
                        yield seq, raw, event, data
                    if unplaced and damage is not None:  # after every good line read: after `since`
                        damage.add(self._seg_path(first).name, unplaced)
            except FileNotFoundError:
                continue


class SnapshotStore:
    """`swarms/<swarm_id>.json` (one atomic file per swarm) plus `state.json` (applied_seq)."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "swarms"
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.state_file = state_dir / "state.json"

    def load(self) -> tuple[list[dict[str, Any]], list[str], int]:
        """Return (swarm records, problems, applied_seq). Corrupt files are reported, not fatal: the caller
        replays the whole log when there is a problem."""
        records, problems = [], []
        for p in sorted(self.dir.glob("*.json")):
            try:
                rec = orjson.loads(p.read_bytes())
                if not isinstance(rec, dict) or "swarm_id" not in rec:
                    raise ValueError("not a swarm record")
                records.append(rec)
            except (OSError, ValueError) as exc:
                try:
                    p.rename(p.with_suffix(".corrupt"))
                    problems.append(f"{p.name}: {exc} (kept as {p.with_suffix('.corrupt').name})")
                except OSError as move_exc:
                    problems.append(f"{p.name}: {exc} (could not be set aside: {move_exc})")
        applied = 0
        try:
            meta = orjson.loads(self.state_file.read_bytes())
            applied = int(meta.get("applied_seq", 0))  # an `extra` key of older routers is ignored
        except FileNotFoundError:
            pass  # a new state dir
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            problems.append(f"{self.state_file.name}: {exc}")  # applied_seq unknown: replay everything
        return records, problems, applied

    def write(self, snapshots: dict[str, bytes | None], applied_seq: int) -> None:
        for swarm_id, data in snapshots.items():
            path = self.dir / f"{swarm_id}.json"
            if data is None:
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
            else:
                atomic_write(path, data)
        atomic_write(self.state_file, orjson.dumps({"applied_seq": applied_seq}))
