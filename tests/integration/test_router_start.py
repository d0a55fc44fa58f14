"""Router start-up (issue 13): it answers from its recovered state first and reads a backlog of worker
output after, in order; a restart rewrites no snapshot it did not change and reads only the log's tail."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from tests.conftest import Codeswarm, local_config

PROTOCOL = "codeswarm.router.v1"


def request(sock: Path, command: str, payload: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
    """One command on a fresh connection (that takes no live events: the backlog's would flood it);
    the first event that answers it."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(sock))
    try:
        s.sendall(b"".join(json.dumps({"protocol": PROTOCOL, "type": "command", "command": name, "request_id": rid,
                                       "payload": body}).encode() + b"\n"
                           for name, rid, body in (("unsubscribe", "u", {}), (command, "q", payload))))
        buf = b""
        while True:
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                if b'"q"' not in raw:
                    continue
                ev = json.loads(raw)
                if ev.get("data", {}).get("request_id") == "q":
                    return ev
            data = s.recv(1 << 20)
            assert data, "the router closed the connection"
            buf += data
    finally:
        s.close()


def delta_line(seq: int, job: str, node: int, iid: str, text: str) -> bytes:
    """An outbox line as a mock worker streaming an answer writes it."""
    return json.dumps({"seq": seq, "ts": time.time(), "job_id": job, "node_id": node, "injection_id": iid,
                       "type": "runtime", "runtime": "mock",
                       "payload": {"method": "codex/event/agent_message_content_delta",
                                   "params": {"msg": {"type": "agent_message_content_delta", "delta": text}}}},
                      separators=(",", ":")).encode() + b"\n"


def backlog_while_stopped(cs: Codeswarm, per_node: int) -> tuple[str, int, Path]:
    """A 2-node swarm (no heartbeats) whose router is stopped while each outbox gets `per_node`
    streamed deltas "t0 ", "t1 ", ...: (swarm_id, the log head before the backlog, the socket)."""
    config = local_config(cs.tmp)
    for preset in config["launch_providers"]:  # no heartbeats: only the backlog below grows the outboxes
        preset["env"] = {"CODESWARM_HEARTBEAT_SECONDS": "3600"}
    cs.write_config(config)
    launched = cs.json("launch", "--nodes", "2")
    sid, job = launched["swarm_id"], launched["job_id"]
    warm = cs.json("inject", sid, "--prompt", "warm", "--wait", "--timeout", "60")
    iids = {n["node_id"]: n["injection_id"] for n in warm["nodes"]}
    sock = cs.home / "router.sock"
    start_head = request(sock, "ping", {})["data"]["head_seq"]
    cs.run("router", "stop")
    for node in range(2):
        outbox = cs.tmp / "runs" / job / "mailbox" / "outbox" / f"{job}_{node:02d}.jsonl"
        last = json.loads(outbox.read_bytes().splitlines()[-1])["seq"]
        with open(outbox, "ab") as f:
            f.write(b"".join(delta_line(last + i + 1, job, node, iids[node], f"t{i} ") for i in range(per_node)))
    return sid, start_head, sock


def deltas_after(events: list[dict[str, Any]], head: int) -> dict[int, list[str]]:
    """Each node's assistant_delta contents logged after seq `head`, in log order."""
    deltas: dict[int, list[str]] = {0: [], 1: []}
    for e in events:
        if e["event"] == "assistant_delta" and e["seq"] > head:
            deltas[e["data"]["node_id"]].append(e["data"]["content"])
    return deltas


def test_the_router_answers_before_a_backlog_is_ingested_and_ingests_it_in_order(cs: Codeswarm) -> None:
    per_node = 40_000  # ~10 MB per outbox: more than one read of the old ingest (8 MiB) per node
    sid, start_head, sock = backlog_while_stopped(cs, per_node)

    cs.run("router", "start", timeout=60)  # returns once the new router answered a ping
    pong = request(sock, "ping", {})["data"]
    listed = request(sock, "swarm_list", {})["data"]["swarms"]
    assert pong["head_seq"] - start_head < 2 * per_node, "answered only after the whole backlog was read"
    assert listed[sid]["state"] == "running"

    deadline = time.monotonic() + 180
    while request(sock, "ping", {})["data"]["head_seq"] - start_head < 2 * per_node:
        assert time.monotonic() < deadline, "the backlog was not ingested within 180 s"
        time.sleep(0.2)
    events = cs.events("--swarm", sid)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)
    deltas = deltas_after(events, start_head)
    for node in range(2):  # every line once, in the order the worker wrote them
        assert deltas[node] == [f"t{i} " for i in range(per_node)]


def test_a_restart_rewrites_no_unchanged_snapshot_and_projects_cover_the_log(cs: Codeswarm) -> None:
    launched = cs.json("launch", "--nodes", "1")
    sid = launched["swarm_id"]
    cs.json("inject", sid, "--prompt", "[mock:firehose=6000] more log than RESNAPSHOT_LAG", "--wait", "--timeout", "120")
    cs.run("router", "stop")
    snapshot = cs.home / "swarms" / f"{sid}.json"
    before = snapshot.stat().st_mtime_ns
    head = int((cs.home / "events" / "seq.reserved").read_text())
    cs.run("router", "start")
    cs.run("router", "stop")
    assert snapshot.stat().st_mtime_ns == before, "the swarm's snapshot was written again without a change"
    # projects.json covers every event read at start-up (no project event was ever logged), so the
    # next start replays the log's tail for projects, not the whole log
    projects = json.loads((cs.home / "projects.json").read_bytes())
    assert projects["applied_seq"] >= head


def test_a_damaged_projects_snapshot_is_a_warning_not_a_router_that_cannot_start(cs: Codeswarm) -> None:
    sid = cs.json("launch", "--nodes", "1")["swarm_id"]
    cs.run("router", "stop")
    (cs.home / "projects.json").write_text("{damaged")
    assert sid in cs.json("list")  # the next command starts a router, which recovers the swarm
    status = cs.run("router", "status").stdout
    assert "projects snapshot ignored" in status
    warnings = [e["data"] for e in cs.events() if e["event"] == "router_warning"]
    assert any(w.get("error_code") == "projects_snapshot_ignored" for w in warnings)
