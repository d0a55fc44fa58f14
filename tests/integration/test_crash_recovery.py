"""kill -9 of the router while nodes stream: nothing lost, nothing duplicated, the swarm lives on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from codeswarm.router.normalize.codex import CodexNormalizer
from tests.conftest import Codeswarm

# Events the core adds or folds (turn bookkeeping); everything else maps 1:1 from outbox lines.
SYNTHESIZED = {"turn_started", "turn_complete", "exec_approval_resolved"}
LIFECYCLE_DERIVED = {"node_status", "inject_delivered"}


def expected_from_outboxes(runs: Path, job_id: str, node_count: int) -> dict[int, list[tuple[int, str]]]:
    out = {}
    for node in range(node_count):
        norm = CodexNormalizer()
        lines = (runs / job_id / "mailbox" / "outbox" / f"{job_id}_{node:02d}.jsonl").read_text().splitlines()
        exp = []
        for raw in lines:
            line = json.loads(raw)
            if line["type"] != "runtime":
                continue
            for name, _ in norm.feed(line["payload"]):
                if name not in SYNTHESIZED:
                    exp.append((line["seq"], name))
        out[node] = exp
    return out


def actual_from_log(events: list[dict[str, Any]], swarm_id: str, node_count: int) -> dict[int, list[tuple[int, str]]]:
    out: dict[int, list[tuple[int, str]]] = {n: [] for n in range(node_count)}
    for e in events:
        d = e["data"]
        if d.get("swarm_id") != swarm_id or e["event"] in SYNTHESIZED or "outbox_seq" not in d:
            continue
        if e["event"] in LIFECYCLE_DERIVED or d.get("error_code") in ("worker_error", "worker_exited"):
            continue  # from lifecycle lines, not runtime lines
        out[d["node_id"]].append((d["outbox_seq"], e["event"]))
    return out


def test_kill_9_router_while_streaming(cs: Codeswarm) -> None:
    launched = cs.json("launch", "--nodes", "4")
    sid, job = launched["swarm_id"], launched["job_id"]
    cs.json("inject", sid, "--prompt", "warm up", "--wait", "--timeout", "60")
    inj = cs.json("inject", sid, "--prompt", "[mock:firehose=4000][mock:rate=1000] stream", "--timeout", "30")
    stream_ids = {n["injection_id"] for n in inj["nodes"]}
    # kill the router once every node is visibly mid-turn
    cs.wait_for(lambda evs: len({e["data"]["node_id"] for e in evs if e["event"] == "assistant_delta"
                                 and e["data"]["injection_id"] in stream_ids}) == 4, "--swarm", sid)
    before = cs.events("--swarm", sid)
    old_pid = cs.router_pid()
    cs.kill_router()
    # the next command starts a new router, which recovers and catches up from the outboxes
    evs = cs.wait_for(lambda evs: sum(1 for e in evs if e["event"] == "turn_complete"
                                      and e["data"]["injection_id"] in stream_ids) == 4, "--swarm", sid, timeout=90)
    assert cs.router_pid() != old_pid
    assert sum(1 for e in before if e["event"] == "turn_complete" and e["data"]["injection_id"] in stream_ids) < 4, \
        "the kill must land mid-stream"
    seqs = [e["seq"] for e in evs]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)), "seq must strictly increase"
    expected = expected_from_outboxes(cs.tmp / "runs", job, 4)
    actual = actual_from_log(evs, sid, 4)
    for node in range(4):
        assert actual[node] == expected[node], f"node {node}: events differ from what the worker wrote"
        assert len(actual[node]) > 1000
    for iid in stream_ids:
        names = [e["event"] for e in evs if e["data"].get("injection_id") == iid]
        assert names.count("turn_complete") == 1 and names.count("turn_started") == 1
        assert names.count("inject_delivered") == 1 and names.count("inject_ack") == 1
    # still running, still accepting prompts
    assert cs.json("status", sid)["state"] == "running"
    again = cs.json("inject", sid, "--prompt", "after the crash", "--wait", "--timeout", "60")
    assert all(n["outcome"] == "completed" for n in again["nodes"])
