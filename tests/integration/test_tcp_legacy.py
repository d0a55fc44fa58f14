"""The opt-in TCP listener serves upstream Codeswarm clients unchanged (loopback only)."""

from __future__ import annotations

import json
import socket

from tests.conftest import Codeswarm


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_legacy_client_over_tcp(cs: Codeswarm) -> None:
    port = free_port()
    cs.run("router", "start", "--tcp-port", str(port))
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        f = s.makefile("rwb")
        # a legacy client: no `type`, no subscribe; it sees its own events in live mode
        f.write(json.dumps({"protocol": "codeswarm.router.v1", "command": "swarm_launch", "request_id": "L1",
                            "payload": {"nodes": 2, "system_prompt": "hi"}}).encode() + b"\n")
        f.flush()
        first = None
        acks = 0
        while acks < 2:
            ev = json.loads(f.readline())
            if ev["data"].get("request_id") == "L1":
                first = first or ev["event"]
                acks += ev["event"] == "inject_ack"
        assert first == "swarm_launched"
        f.write(json.dumps({"protocol": "codeswarm.router.v1", "command": "swarm_list",
                            "request_id": "L2"}).encode() + b"\n")
        f.flush()
        while True:
            ev = json.loads(f.readline())
            if ev["data"].get("request_id") == "L2":
                break
        assert ev["event"] == "swarm_list"
        (rec,) = ev["data"]["swarms"].values()
        assert rec["status"] == "running" and rec["node_count"] == 2
    # the same router answers on its Unix socket
    assert len(cs.json("list")) == 1
