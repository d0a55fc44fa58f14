"""Issue 12 finding 7: queue growth must cost linear log and time, and the queue is bounded.

Every queue change used to log the full list of every queued item of every swarm (quadratic:
3,000 items made 1.5 GB of log). Now the log carries deltas and a small `queue_updated`
summary, and a swarm's queue holds at most `router.queue_max_items_per_swarm` items: one more
is rejected with `queue_full` and loses nothing that was queued.
"""

from __future__ import annotations

import time
from pathlib import Path

from codeswarm.client import Client
from tests.conftest import Codeswarm, local_config

ITEMS = 1000
LIMIT = 1000
LOG_BOUND = 8 << 20  # 1,000 items of ~60 bytes: a linear log is well under 2 MiB
TIME_BOUND = 600.0  # a shared, loaded machine; linearity is checked by the ratio below


def log_bytes(cs: Codeswarm) -> int:
    return sum(p.stat().st_size for p in (cs.home / "events").glob("*.jsonl"))


def test_queue_growth_is_linear_and_bounded(cs: Codeswarm) -> None:
    cs.write_config(local_config(cs.tmp, queue_max_items_per_swarm=LIMIT))
    sid = cs.json("launch", "--nodes", "1")["swarm_id"]
    hold = cs.json("inject", sid, "--prompt", "[mock:slow=600] hold the only node")
    assert [n["outcome"] for n in hold["nodes"]] == ["delivered"]
    before = log_bytes(cs)
    started = time.monotonic()
    marks = [started]  # time after each 100 items
    with Client(cs.home / "router.sock", timeout=60) as c:
        for i in range(ITEMS):
            env = c.request("enqueue_inject", {"target_swarm_id": sid, "selector": "idle",
                                               "content": f"queued item {i:04d}"}, timeout=60)
            assert env["event"] == "inter_swarm_enqueued", env
            if i % 100 == 99:
                marks.append(time.monotonic())
                grown = log_bytes(cs) - before
                assert grown < LOG_BOUND, f"log grew {grown} bytes for {i + 1} queued items"
                assert time.monotonic() - started < TIME_BOUND, f"{i + 1} items took too long"
        over = c.request("enqueue_inject", {"target_swarm_id": sid, "selector": "idle", "content": "one too many"})
    elapsed = time.monotonic() - started
    assert over["event"] == "command_rejected" and over["data"]["code"] == "queue_full", over
    assert str(LIMIT) in over["data"]["reason"]
    grown = log_bytes(cs) - before
    first, last = marks[1] - marks[0], marks[-1] - marks[-2]
    print(f"queue growth: {ITEMS} items, log +{grown} bytes, {elapsed:.1f} s; first 100 {first:.1f} s, "
          f"last 100 {last:.1f} s")  # figures for docs (pytest -s)
    assert grown < LOG_BOUND and elapsed < TIME_BOUND, (grown, elapsed)
    # Snapshots still re-serialize the swarm (its queue) per lifecycle batch: some growth remains
    # (docs/RELIABILITY.md); a quadratic log or event would show far above this.
    assert last < 6 * first + 5, f"enqueueing slows down as the queue grows: {first:.1f} s -> {last:.1f} s"
    queued = cs.json("queue")
    assert len(queued) == ITEMS and queued[0]["content"] == "queued item 0000"
    assert queued[-1]["content"] == f"queued item {ITEMS - 1:04d}"
    assert (Path(cs.home) / "router.log").exists()
