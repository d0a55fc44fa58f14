"""Issue 12 finding 5: the router must not trust an outbox line's seq blindly.

A line with seq 2^63-1, a duplicated seq written just before the worker's real `turn_accepted`,
and a gap: each is reported (`agent_error` / `router_warning` with an `outbox_seq_*` error code)
and no real line of the worker is ever dropped: the next prompt is delivered and completes, also
after a router restart.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Codeswarm, local_config

QUIET = "3600"  # no heartbeats: the next line the worker writes is the prompt's turn_accepted


def quiet_config(tmp: Path) -> dict[str, Any]:
    cfg = local_config(tmp, inject_timeout_seconds=60)
    for preset in cfg["launch_providers"]:
        preset["env"] = {"CODESWARM_HEARTBEAT_SECONDS": QUIET}
    return cfg


def outbox(cs: Codeswarm, job: str, node: int = 0) -> Path:
    return cs.tmp / "runs" / job / "mailbox" / "outbox" / f"{job}_{node:02d}.jsonl"


def last_seq(path: Path) -> int:
    return json.loads(path.read_bytes().splitlines()[-1])["seq"]


def forge(path: Path, seq: int, job: str, event: str = "heartbeat") -> None:
    """Append one well-formed lifecycle line, as anything running as the worker's user could."""
    line = {"seq": seq, "ts": 0, "job_id": job, "node_id": 0, "injection_id": None, "type": "lifecycle",
            "event": event, "data": {"busy": False, "active_injection_id": None}}
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, json.dumps(line).encode() + b"\n")
    finally:
        os.close(fd)


def seq_reports(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["data"] for e in evs if e["event"] in ("agent_error", "router_warning")
            and str(e["data"].get("error_code", "")).startswith("outbox_seq")]


def launch_one(cs: Codeswarm) -> tuple[str, str]:
    cs.write_config(quiet_config(cs.tmp))
    launched = cs.json("launch", "--nodes", "1")
    sid, job = launched["swarm_id"], launched["job_id"]
    done = cs.json("inject", sid, "--prompt", "warm up", "--wait", "--timeout", "60")
    assert [n["outcome"] for n in done["nodes"]] == ["completed"]
    return sid, job


def completes(cs: Codeswarm, sid: str, prompt: str) -> None:
    proc = cs.run("inject", sid, "--prompt", prompt, "--wait", "--timeout", "20", "--json", check=False)
    assert proc.returncode == 0, f"the prompt did not complete: {proc.returncode} {proc.stdout} {proc.stderr}"
    assert [n["outcome"] for n in json.loads(proc.stdout)["nodes"]] == ["completed"]


def test_huge_seq_does_not_swallow_later_lines(cs: Codeswarm) -> None:
    sid, job = launch_one(cs)
    forge(outbox(cs, job), 2**63 - 1, job)
    completes(cs, sid, "after a forged seq of 2^63-1")
    reports = seq_reports(cs.events("--swarm", sid))
    assert reports, "the implausible seq must be reported"
    assert any(str(2**63 - 1) in r.get("message", "") for r in reports)
    # and it does not come back after a restart
    cs.kill_router(signal.SIGKILL)
    completes(cs, sid, "after a router restart")


def test_duplicate_seq_does_not_swallow_turn_accepted(cs: Codeswarm) -> None:
    sid, job = launch_one(cs)
    path = outbox(cs, job)
    nxt = last_seq(path) + 1
    forge(path, nxt, job)  # the worker writes its turn_accepted with this same seq next
    completes(cs, sid, "its turn_accepted carries a duplicated seq")
    lines = [json.loads(raw) for raw in path.read_bytes().splitlines()]
    accepted = [ln for ln in lines if ln.get("event") == "turn_accepted"][-1]
    assert accepted["seq"] == nxt, "the test must really duplicate the seq of the real turn_accepted"
    reports = seq_reports(cs.events("--swarm", sid))
    assert any("duplicate" in r.get("message", "") for r in reports), reports


@pytest.mark.parametrize("jump", [5, -3])
def test_gap_or_step_back_is_reported_and_processed(cs: Codeswarm, jump: int) -> None:
    sid, job = launch_one(cs)
    path = outbox(cs, job)
    forge(path, last_seq(path) + jump, job)
    completes(cs, sid, "after a seq gap")
    assert seq_reports(cs.events("--swarm", sid)), "a seq gap or step back must be reported"
