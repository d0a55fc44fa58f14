"""kill -9 of the router the moment a launch with a first prompt is logged (issue 13 item 7): the
prompt's inbox line may or may not have been written yet. Expected: every node runs that first
prompt exactly once (one turn_accepted in its outbox, one turn_started and one turn_complete in the
log), neither lost nor duplicated: the new router redelivers an acked prompt (RedeliverAcked) and a
worker skips an injection it already accepted."""

from __future__ import annotations

import json
import signal
import socket
from random import Random

from tests.conftest import Codeswarm
from tests.faults.conftest import assert_log_consistent, fast_config, log_events
from tests.integration.test_router_start import PROTOCOL

NODES = 3


def launch_and_kill_when_logged(cs: Codeswarm, prompt: str) -> str:
    """Send swarm_launch with a first prompt; SIGKILL the router as soon as swarm_launched arrives."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect(str(cs.home / "router.sock"))
    s.sendall(json.dumps({"protocol": PROTOCOL, "type": "command", "command": "swarm_launch", "request_id": "L",
                          "payload": {"nodes": NODES, "system_prompt": prompt}}).encode() + b"\n")
    buf = b""
    try:
        while True:
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                ev = json.loads(raw)
                if ev.get("event") == "swarm_launched" and ev["data"].get("request_id") == "L":
                    cs.kill_router(signal.SIGKILL)
                    return ev["data"]["swarm_id"]
            data = s.recv(1 << 16)
            assert data, "the router closed the connection before swarm_launched"
            buf += data
    finally:
        s.close()


def test_a_first_prompt_runs_once_per_node_across_a_kill_9_right_after_the_launch(cs: Codeswarm,
                                                                                   rng: Random) -> None:
    cs.write_config(fast_config(cs.tmp))
    cs.run("router", "start")
    for round_ in range(3):
        prompt = f"first prompt {round_} {rng.random()}"
        sid = launch_and_kill_when_logged(cs, prompt)
        assert sid in cs.json("list")  # a new router, recovered: the launch was logged
        evs = cs.wait_for(lambda es: sum(1 for e in es if e["event"] == "turn_complete") == NODES,
                          "--swarm", sid, timeout=60)
        acks = {e["data"]["node_id"]: e["data"]["injection_id"] for e in evs
                if e["event"] == "inject_ack" and e["data"].get("prompt") == prompt}
        assert sorted(acks) == list(range(NODES))
        for name in ("turn_started", "turn_complete"):
            per_node = sorted(e["data"]["node_id"] for e in evs if e["event"] == name
                              and e["data"].get("injection_id") in acks.values())
            assert per_node == list(range(NODES)), f"{name}: {per_node}"
        job = next(e["data"]["job_id"] for e in evs if e["event"] == "swarm_launched")
        for node, iid in acks.items():
            outbox = cs.tmp / "runs" / job / "mailbox" / "outbox" / f"{job}_{node:02d}.jsonl"
            accepted = [line for line in map(json.loads, outbox.read_text().splitlines())
                        if line.get("event") == "turn_accepted" and line.get("injection_id") == iid]
            assert len(accepted) == 1, f"node {node} accepted its first prompt {len(accepted)} times"
        cs.run("terminate", sid, "--force", "--wait", "--timeout", "60")
    assert_log_consistent(log_events(cs))
