"""Review of the ingest's bounded reads (READ_STEP, then READ_SLICE for a longer line): a forged line
longer than any slice (no newline for megabytes) is reported and skipped, never a node whose outbox
stops being read, and the lines after it are read in order."""

from __future__ import annotations

from pathlib import Path

import orjson

from codeswarm.mailbox import MAX_OUTBOX_LINE
from codeswarm.router.ingest import READ_SLICE
from tests.harness import Harness
from tests.unit.test_queue_ingest import Host, lifecycle, watch, write


def test_a_line_longer_than_a_slice_is_reported_and_the_lines_after_it_are_read(h: Harness, tmp_path: Path) -> None:
    swarm, _ = h.launch(nodes=1)
    ingest, w, path = watch(tmp_path, swarm, Host(h))
    huge = orjson.dumps(lifecycle(1, "worker_error", message="x" * (READ_SLICE + MAX_OUTBOX_LINE))) + b"\n"
    write(path, lifecycle(1, "worker_error", message="before"), huge, lifecycle(2, "worker_error", message="after"))
    polls = 0
    while ingest.poll_node(w):
        polls += 1
        assert polls < 100, "the outbox is never read to its end"
    assert w.offset == path.stat().st_size
    messages = [d["message"] for n, d in h.events() if n == "agent_error"]
    assert messages[0] == "before" and messages[-1] == "after"
    skipped = [m for m in messages[1:-1] if m.startswith("outbox: ")]
    assert skipped and len(skipped) == len(messages) - 2, messages  # the huge line: said, not delivered
    assert all(len(m) < 1000 for m in skipped)
