"""Spend with the real Claude Code CLI (fake Messages API on loopback): the turn's cache reads and
cache writes (5-minute and 1-hour) are priced at their own rates, from the tokens Claude reported."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path

import pytest

from fake_anthropic import CACHE_READ, CACHE_WRITE, CACHE_WRITE_1H, FakeAnthropic
from test_claude_swarm import claude_config
from tests.conftest import Codeswarm

pytestmark = pytest.mark.claude


def test_claude_cache_reads_and_writes_priced(pyz: Path, tmp_path: Path, claude_bin: str,
                                              fake_anthropic: FakeAnthropic) -> None:
    cs = Codeswarm(pyz, tmp_path, claude_config(tmp_path, claude_bin, fake_anthropic))
    try:
        launched = cs.json("launch", "--nodes", "1", "--param", "pricing_model=Claude-Sonnet-4.5")
        sid, job = launched["swarm_id"], launched["job_id"]
        out = cs.json("inject", sid, "--prompt", "Say hi", "--wait", "--timeout", "120", timeout=180)
        assert out["nodes"][0]["outcome"] == "completed"
        outbox = tmp_path / "runs" / job / "mailbox" / "outbox" / f"{job}_00.jsonl"
        results = [json.loads(raw)["payload"] for raw in outbox.read_text().splitlines()
                   if '"type":"result"' in raw.replace(" ", "")]
        (raw,) = [r["usage"] for r in results if r.get("type") == "result"]
        calls = raw["cache_read_input_tokens"] // CACHE_READ  # the fake reads and writes the same per call
        assert calls >= 1 and raw["cache_creation_input_tokens"] == calls * CACHE_WRITE
        write_1h = calls * CACHE_WRITE_1H
        # Sonnet 4.5: fresh x 3, cache reads x 0.3, 5-minute writes x 3.75, 1-hour writes x 6, output x 15
        expected = (Decimal(raw["input_tokens"]) * 3 + Decimal(raw["cache_read_input_tokens"]) * Decimal("0.3")
                    + Decimal(raw["cache_creation_input_tokens"] - write_1h) * Decimal("3.75")
                    + Decimal(write_1h) * 6 + Decimal(raw["output_tokens"]) * 15) / 10**6
        (usage,) = [e["data"] for e in cs.events("--swarm", sid) if e["event"] == "usage"]
        assert usage["pricing_model"] == "Claude-Sonnet-4.5" and usage["cost_source"] == "pricing"
        assert abs(Decimal(repr(usage["estimated_cost_usd"])) - expected) < Decimal("1e-9")
        assert usage["delta_tokens"]["cache_write_input_tokens"] == raw["cache_creation_input_tokens"]
        assert isinstance(usage["reported_cost_usd"], float)  # Claude's own figure rides along, unused
        status = cs.json("status", sid)
        assert abs(Decimal(repr(status["spend_usd"])) - expected) < Decimal("1e-9")
    finally:
        cs.cleanup()


def test_budget_spent_by_one_node_interrupts_a_running_claude_turn(pyz: Path, tmp_path: Path, claude_bin: str,
                                                                   fake_anthropic: FakeAnthropic) -> None:
    """Claude reports usage once per turn (its `result`): node 1's quick turn spends the budget while
    node 0 runs a long command; node 0's claude process is stopped and its turn ends `interrupted`."""
    cs = Codeswarm(pyz, tmp_path, claude_config(tmp_path, claude_bin, fake_anthropic))
    try:
        sid = cs.json("launch", "--nodes", "2", "--param", "pricing_model=Claude-Sonnet-4.5",
                      "--budget-usd", "0.0005")["swarm_id"]
        long_turn = cs.json("inject", sid, "--prompt", "RUN: sleep 60; echo finished", "--nodes", "0")
        long_iid = long_turn["nodes"][0]["injection_id"]
        cs.wait_for(lambda evs: any(e["event"] == "command_started" and e["data"]["node_id"] == 0 for e in evs),
                    "--swarm", sid, timeout=90)
        started = time.monotonic()
        quick = cs.run("inject", sid, "--prompt", "Say hi", "--nodes", "1", "--wait", "--timeout", "90", "--json",
                       timeout=150)
        assert json.loads(quick.stdout)["nodes"][0]["outcome"] == "completed"
        evs = cs.wait_for(lambda evs: any(e["event"] == "turn_complete" and e["data"]["injection_id"] == long_iid
                                          for e in evs), "--swarm", sid, timeout=60)
        assert time.monotonic() - started < 45  # the 60 s command did not run to its end
        names = [e["event"] for e in evs]
        assert names.count("budget_exceeded") == 1
        (done,) = [e["data"] for e in evs if e["event"] == "turn_complete" and e["data"]["injection_id"] == long_iid]
        assert done["status"] == "interrupted"
        assert cs.json("status", sid)["budget_state"] == "exceeded"
    finally:
        cs.cleanup()
