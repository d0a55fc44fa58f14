"""Idempotency keys (PROTOCOL.md 3.5): a cron job may retry an inject; it runs once."""

from __future__ import annotations

from tests.conftest import Codeswarm


def test_retried_inject_runs_once_even_across_a_router_crash(cs: Codeswarm) -> None:
    sid = cs.run("launch", "--nodes", "2").stdout.strip()
    first = cs.json("inject", sid, "--prompt", "nightly", "--idempotency-key", "cron-2026-11-25", "--wait",
                    "--timeout", "60")
    cs.kill_router()  # the key is durable: a new router still knows it
    again = cs.json("inject", sid, "--prompt", "nightly", "--idempotency-key", "cron-2026-11-25", "--wait",
                    "--timeout", "60")
    assert again["request_id"] == first["request_id"]
    assert [n["injection_id"] for n in again["nodes"]] == [n["injection_id"] for n in first["nodes"]]
    assert all(n["outcome"] == "completed" for n in again["nodes"])
    acks = [e for e in cs.events("--swarm", sid) if e["event"] == "inject_ack" and e["data"]["prompt"] == "nightly"]
    assert len(acks) == 2  # one per node, once
    conflict = cs.run("inject", sid, "--prompt", "something else", "--idempotency-key", "cron-2026-11-25",
                      check=False)
    assert conflict.returncode == 3 and "idempotency_conflict" in conflict.stderr
    pong_ext = cs.run("status", sid, "--json")  # the router is alive and well after all this
    assert pong_ext.returncode == 0
