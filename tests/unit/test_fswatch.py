"""fswatch: filesystem detection, the inotify binding and the poll back-off (real inotify, no sleeps:
an inotify event is queued by the time the writing syscall returns)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from codeswarm import fswatch
from codeswarm.fswatch import AppendWatcher, PollBackoff, choose_mode, fs_type


def append(path: Path, data: bytes = b"x\n") -> None:
    with open(path, "ab") as f:
        f.write(data)


def test_local_directory_uses_inotify_and_the_switch_forces_polling(tmp_path: Path) -> None:
    magic, name = fs_type(tmp_path)
    assert magic in fswatch.LOCAL_FILESYSTEMS and name != "unknown"
    assert choose_mode(tmp_path).mode == "inotify"
    forced = choose_mode(tmp_path, "poll")
    assert forced.mode == "poll" and "mailbox_watch=poll" in forced.reason


def test_shared_and_unknown_filesystems_are_polled(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for magic, expected in ((0x6969, "nfs"), (0x0BD00BD0, "lustre"), (0x47504653, "gpfs")):
        monkeypatch.setattr(fswatch, "fs_type", lambda _d, m=magic, n=expected: (m, n))
        choice = choose_mode(tmp_path)
        assert choice.mode == "poll" and expected in choice.reason
    monkeypatch.setattr(fswatch, "fs_type", lambda _d: (0x12345678, "unknown"))
    assert choose_mode(tmp_path).mode == "poll"  # never blind: an unknown type is polled


def test_statfs_failure_is_an_error_and_means_polling(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        fs_type(tmp_path / "missing")
    choice = choose_mode(tmp_path / "missing")
    assert choice.mode == "poll" and "statfs failed" in choice.reason


def test_watcher_reports_only_the_file_that_grew(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.touch()
    b.touch()
    w = AppendWatcher()
    try:
        assert w.add("a", a) and w.add("b", b)
        assert w.changed() == set()
        append(a)
        assert w.changed() == {"a"}
        assert w.changed() == set()  # consumed
        append(b)
        append(b)
        assert w.changed() == {"b"}
        append(tmp_path / "other.jsonl")  # a neighbour's file wakes nobody
        assert w.changed() == set()
    finally:
        w.close()


def test_watcher_finds_a_file_created_later_and_one_replaced(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox.jsonl"
    w = AppendWatcher()
    try:
        assert w.add("k", inbox)
        append(tmp_path / "unrelated")
        assert w.changed() == set()
        append(inbox)  # created now
        assert w.changed() == {"k"}
        append(inbox)  # and from now on watched itself
        assert w.changed() == {"k"}
        tmp = tmp_path / "inbox.tmp"
        tmp.write_bytes(b"new\n")
        os.replace(tmp, inbox)  # replaced under the same name
        assert "k" in w.changed()
        append(inbox)
        assert w.changed() == {"k"}
        w.discard("k")
        append(inbox)
        assert w.changed() == set()
    finally:
        w.close()


def test_watch_limit_makes_add_return_false(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    w = AppendWatcher()
    try:
        def refuse(_path: str, _mask: int) -> int:
            raise OSError(28, "No space left on device")  # ENOSPC: fs.inotify.max_user_watches reached

        monkeypatch.setattr(w.ino, "add_watch", refuse)
        assert w.add("k", tmp_path / "f") is False
        assert len(w) == 0
    finally:
        w.close()


def test_backoff_is_fast_while_active_and_capped_at_200_ms_when_idle() -> None:
    b = PollBackoff()
    assert b.delay == 0.01
    elapsed = 0.0
    polls = 0
    while elapsed < 60.0:  # a minute without data, on a fake clock
        elapsed += b.delay
        b.saw_nothing()
        polls += 1
    assert b.delay == pytest.approx(0.2)
    assert polls < 60 / 0.2 + 20  # backed off: ~5 reads/s, not 100
    # the worst case after the long idle: the prompt lands just after a read, is seen one delay later
    assert b.delay <= 0.25
    b.saw_data()
    assert b.delay == 0.01
