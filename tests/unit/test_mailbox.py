"""Mailbox files (PROTOCOL.md 8): complete lines only, garbage reported, and the worker's Outbox."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from codeswarm.mailbox import (
    MAX_OUTBOX_LINE,
    append_line,
    inbox_offset_path,
    inbox_path,
    outbox_path,
    parse_chunk,
    prepare_swarm_root,
    read_complete_lines,
    workspace_path,
)
from codeswarm.worker.outbox import Outbox


def test_layout(tmp_path):
    root = tmp_path / "runs" / "local-ab"
    prepare_swarm_root(root, 3)
    assert inbox_path(root, "local-ab", 2) == root / "mailbox" / "inbox" / "local-ab_02.jsonl"
    assert inbox_offset_path(root, "local-ab", 2) == root / "mailbox" / "inbox" / "local-ab_02.offset"
    assert outbox_path(root, "J", 11) == root / "mailbox" / "outbox" / "J_11.jsonl"
    assert outbox_path(root, "J", 123).name == "J_123.jsonl"
    assert workspace_path(root, 0) == root / "node_00"
    assert sorted(p.name for p in root.iterdir()) == ["mailbox", "node_00", "node_01", "node_02"]
    assert (root / "mailbox" / "outbox").is_dir()


def test_append_line_writes_one_json_line(tmp_path):
    p = tmp_path / "inbox.jsonl"
    append_line(p, {"type": "user", "content": "a\nb"})
    append_line(p, {"type": "shutdown"})
    assert p.read_bytes().count(b"\n") == 2
    assert oct(p.stat().st_mode & 0o777) == "0o600"


def test_partial_tail_is_left_for_the_next_read(tmp_path):
    p = tmp_path / "out.jsonl"
    p.write_bytes(b'{"seq": 1}\n{"seq": 2}\n{"seq": 3, "ty')
    batch = read_complete_lines(p, 0)
    assert [line["seq"] for line in batch.lines] == [1, 2]
    assert batch.bad == [] and batch.offset == len(b'{"seq": 1}\n{"seq": 2}\n')
    with open(p, "ab") as f:
        f.write(b'pe": "x"}\n')
    more = read_complete_lines(p, batch.offset)
    assert [line["seq"] for line in more.lines] == [3] and more.offset == p.stat().st_size
    assert read_complete_lines(p, more.offset).lines == []


def test_nothing_complete_keeps_the_offset(tmp_path):
    p = tmp_path / "out.jsonl"
    p.write_bytes(b'{"seq": 1')
    batch = read_complete_lines(p, 0)
    assert (batch.lines, batch.bad, batch.offset) == ([], [], 0)


def test_missing_file_is_empty(tmp_path):
    batch = read_complete_lines(tmp_path / "nope.jsonl", 17)
    assert (batch.lines, batch.bad, batch.offset) == ([], [], 17)


def test_garbage_lines_are_reported_and_skipped(tmp_path):
    p = tmp_path / "out.jsonl"
    p.write_bytes(b'{"seq": 1}\nnot json at all\n[1, 2]\n\n   \n\xff\xfe\n{"seq": 2}\r\n')
    batch = read_complete_lines(p, 0)
    assert [line["seq"] for line in batch.lines] == [1, 2]
    assert len(batch.bad) == 3
    assert batch.bad[0].startswith("not JSON") and batch.bad[1].startswith("not an object")
    assert batch.offset == p.stat().st_size


def test_offset_is_absolute(tmp_path):
    p = tmp_path / "out.jsonl"
    first = b'{"seq": 1}\n'
    p.write_bytes(first + b'{"seq": 2}\n')
    batch = read_complete_lines(p, len(first))
    assert [line["seq"] for line in batch.lines] == [2] and batch.offset == p.stat().st_size


def test_an_endless_line_is_skipped_not_stalled_on(tmp_path):
    p = tmp_path / "out.jsonl"
    head = b'{"seq": 1}\n'
    p.write_bytes(head + b"x" * (MAX_OUTBOX_LINE + 100))
    first = read_complete_lines(p, 0)
    assert [line["seq"] for line in first.lines] == [1] and first.offset == len(head)
    second = read_complete_lines(p, first.offset)
    assert second.lines == [] and len(second.bad) == 1 and "skipped" in second.bad[0]
    assert second.offset == p.stat().st_size  # moved past it
    with open(p, "ab") as f:
        f.write(b'xxx\n{"seq": 2}\n')
    third = read_complete_lines(p, second.offset)
    assert [line["seq"] for line in third.lines] == [2]  # the tail of the monster is garbage, then normal


def test_a_long_but_complete_line_is_read(tmp_path):
    p = tmp_path / "out.jsonl"
    big = {"seq": 1, "stdout": "y" * (MAX_OUTBOX_LINE - 100)}
    p.write_bytes(orjson.dumps(big) + b"\n")
    assert read_complete_lines(p, 0).lines == [big]


def test_reads_are_bounded_and_resume(tmp_path):
    p = tmp_path / "out.jsonl"
    p.write_bytes(b"".join(orjson.dumps({"seq": i}) + b"\n" for i in range(1, 1001)))
    seen, offset = [], 0
    while True:
        batch = read_complete_lines(p, offset, max_bytes=1000)
        if batch.offset == offset:
            break
        seen += [line["seq"] for line in batch.lines]
        offset = batch.offset
    assert seen == list(range(1, 1001))


def test_parse_chunk_empty():
    assert parse_chunk(b"", 5).offset == 5


# ---------------------------------------------------------------- the worker's Outbox


def lines_of(path: Path) -> list[dict]:
    return read_complete_lines(path, 0).lines


def close(ob: Outbox) -> None:
    os.close(ob.fd)


def test_outbox_lines_carry_the_common_fields(tmp_path):
    p = tmp_path / "J_03.jsonl"
    ob = Outbox(p, "J", 3)
    ob.lifecycle("worker_started", {"pid": 1})
    ob.runtime("mock", {"method": "turn/started", "params": {}}, "inj-1")
    close(ob)
    a, b = lines_of(p)
    assert (a["seq"], a["job_id"], a["node_id"], a["injection_id"], a["type"], a["event"]) == (
        1, "J", 3, None, "lifecycle", "worker_started")
    assert (b["seq"], b["type"], b["runtime"], b["injection_id"]) == (2, "runtime", "mock", "inj-1")
    assert a["ts"] and b["ts"]


def test_outbox_seq_continues_after_reopen(tmp_path):
    p = tmp_path / "J_00.jsonl"
    ob = Outbox(p, "J", 0)
    for _ in range(3):
        ob.lifecycle("heartbeat", {"busy": False})
    close(ob)
    ob = Outbox(p, "J", 0)
    assert ob.seq == 3
    ob.lifecycle("worker_started", {})
    close(ob)
    assert [line["seq"] for line in lines_of(p)] == [1, 2, 3, 4]


def test_outbox_repairs_a_torn_last_line(tmp_path):
    p = tmp_path / "J_00.jsonl"
    ob = Outbox(p, "J", 0)
    ob.lifecycle("heartbeat", {})
    ob.lifecycle("heartbeat", {})
    close(ob)
    with open(p, "ab") as f:
        f.write(b'{"seq": 3, "ts": 1, "type": "life')  # the worker died mid-write
    ob = Outbox(p, "J", 0)
    assert ob.seq == 2
    ob.lifecycle("worker_started", {})
    close(ob)
    batch = read_complete_lines(p, 0)
    assert [line["seq"] for line in batch.lines] == [1, 2, 3]
    assert batch.lines[-1]["event"] == "worker_started"
    assert len(batch.bad) == 1  # the torn fragment, on its own line
    assert batch.offset == p.stat().st_size


def test_outbox_on_an_empty_or_garbage_file_starts_at_1(tmp_path):
    p = tmp_path / "J_00.jsonl"
    p.write_bytes(b"garbage\n")
    ob = Outbox(p, "J", 0)
    assert ob.seq == 0
    ob.lifecycle("heartbeat", {})
    close(ob)
    assert [line["seq"] for line in lines_of(p)] == [1]


def test_accepted_injections(tmp_path):
    p = tmp_path / "J_00.jsonl"
    ob = Outbox(p, "J", 0)
    assert ob.accepted_injections() == set()
    ob.lifecycle("turn_accepted", {"queued": False}, injection_id="i1")
    ob.runtime("mock", {"method": "item/completed", "params": {"text": '"turn_accepted"'}}, "i9")
    ob.lifecycle("turn_accepted", {"queued": True}, injection_id="i2")
    ob.lifecycle("heartbeat", {})
    close(ob)
    with open(p, "ab") as f:
        f.write(b'{"event": "turn_accepted", "injection_id": "i3"')  # torn: not accepted
    assert Outbox(p, "J", 0).accepted_injections() == {"i1", "i2"}


def test_oversize_output_is_shortened_and_marked(tmp_path):
    p = tmp_path / "J_00.jsonl"
    ob = Outbox(p, "J", 0)
    ob.runtime("mock", {"method": "codex/event/exec_command_end",
                        "params": {"msg": {"stdout": "z" * (2 * MAX_OUTBOX_LINE), "exit_code": 0}}}, "i1")
    close(ob)
    raw = p.read_bytes()
    assert raw.endswith(b"\n") and len(raw) < MAX_OUTBOX_LINE
    [line] = lines_of(p)
    msg = line["payload"]["params"]["msg"]
    assert msg["truncated"] is True and msg["exit_code"] == 0 and line["seq"] == 1


# ---------------------------------------------------------------- issue 12 #6: no symlinks, regular files only


def test_mailbox_files_refuse_symlinks_fifos_and_directories(tmp_path):
    import os

    from codeswarm.mailbox import UnsafeMailboxFile, append_line, read_complete_lines, read_mailbox_file

    target = tmp_path / "passwd"
    target.write_text('{"seq": 1, "type": "lifecycle"}\nroot:x:0:0\n')
    link = tmp_path / "outbox.jsonl"
    link.symlink_to(target)
    batch = read_complete_lines(link, 0)
    assert batch.lines == [] and batch.bad == [] and batch.offset == 0
    assert batch.refused == f"{link} is a symlink (refused)"
    with pytest.raises(UnsafeMailboxFile):
        append_line(link, {"a": 1})
    assert target.read_text().count("\n") == 2  # nothing written through the link
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert "not a regular file" in (read_complete_lines(fifo, 0).refused or "")  # and it did not block
    with pytest.raises(UnsafeMailboxFile):
        read_mailbox_file(tmp_path)
    real = tmp_path / "real.jsonl"
    append_line(real, {"seq": 1})
    assert read_complete_lines(real, 0).lines == [{"seq": 1}]


def test_replace_mailbox_file_never_writes_through_a_planted_tmp(tmp_path):
    from codeswarm.mailbox import replace_mailbox_file

    victim = tmp_path / "victim"
    victim.write_text("keep")
    offset = tmp_path / "n.offset"
    (tmp_path / "n.offset.tmp").symlink_to(victim)
    replace_mailbox_file(offset, b'{"offset": 5}')
    assert offset.read_bytes() == b'{"offset": 5}' and victim.read_text() == "keep"
    assert not offset.is_symlink()
