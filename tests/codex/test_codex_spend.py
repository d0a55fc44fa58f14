"""Spend with the real codex app-server (fake Responses API on loopback): a swarm with
fresh_thread_per_injection starts a new thread every turn, and every thread is counted in full
(the per-thread cumulative totals are not summed as one thread), priced from the config's
`model_pricing` for the model codex reports."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from fake_responses import FakeResponses
from test_codex_swarm import codex_config

PRICES = {"gpt-5.5": {"input_tokens_usd_per_m": 1.25, "cached_input_tokens_usd_per_m": 0.125,
                      "output_tokens_usd_per_m": 10.0, "reasoning_output_tokens_usd_per_m": 0.0}}


def test_fresh_threads_counted_in_full_and_priced_from_the_config(cs: Any, codex_bin: str,
                                                                  fake_model: FakeResponses) -> None:
    config = codex_config(cs.tmp, codex_bin, fake_model)
    config["launch_providers"][0]["defaults"]["fresh_thread_per_injection"] = True
    config["model_pricing"] = PRICES
    cs.write_config(config)
    sid = cs.json("launch", "--nodes", "1", "--provider", "local-codex")["swarm_id"]
    for i in range(3):
        out = cs.json("inject", sid, "--prompt", f"Say hello number {i}", "--wait", "--timeout", "90", timeout=150)
        assert out["nodes"][0]["outcome"] == "completed", out
    model_in = sum(u["input_tokens"] for u in fake_model.usages)
    model_out = sum(u["output_tokens"] for u in fake_model.usages)

    def every_call_logged(es: list[dict[str, Any]]) -> bool:
        logged = [e["data"]["delta_tokens"] for e in es if e["event"] == "usage"]
        return sum(d["input_tokens"] for d in logged) >= model_in and sum(d["output_tokens"] for d in logged) >= model_out

    # codex may send a turn's tokenUsage just after turn/completed, so the last turn's usage can be
    # logged after `inject --wait` returned: look once every model call's tokens are in (bounded; the
    # assertions below say what is missing if they never are)
    try:
        logged = cs.wait_settled(every_call_logged, "--swarm", sid, timeout=15)
    except AssertionError:
        logged = cs.events("--swarm", sid)
    usage = [e["data"] for e in logged if e["event"] == "usage"]
    assert len({u["thread_id"] for u in usage}) == 3  # one thread per injection
    assert sum(u["delta_tokens"]["input_tokens"] for u in usage) == model_in
    assert sum(u["delta_tokens"]["output_tokens"] for u in usage) == model_out
    assert usage[-1]["input_tokens"] < model_in  # the last thread's own total: what was summed before
    # no cached tokens from the fake model: input x 1.25 + output x 10 per million
    expected = (Decimal(model_in) * Decimal("1.25") + Decimal(model_out) * 10) / 10**6
    status = cs.json("status", sid)
    assert status["pricing_model"] == "gpt-5.5" and status["cost_unknown"] is False
    assert abs(Decimal(repr(status["spend_usd"])) - expected) < Decimal("1e-9")
    assert status["total_tokens"] == model_in + model_out
    # each turn's last cost figure (turn_complete, or turn_cost_updated when codex sent usage after
    # turn/completed) is the sum of that turn's usage events
    events = cs.events("--swarm", sid)
    last_cost: dict[str, float] = {}
    for e in events:
        if e["event"] in ("turn_complete", "turn_cost_updated"):
            last_cost[e["data"]["injection_id"]] = e["data"]["turn_cost_usd"]
    per_turn: dict[str, Decimal] = {}
    for u in usage:
        per_turn[u["injection_id"]] = per_turn.get(u["injection_id"], Decimal(0)) + Decimal(repr(u["estimated_cost_usd"]))
    late = [e for e in events if e["event"] == "turn_cost_updated"]
    print(f"codex sent usage after turn/completed for {len(late)} of 3 turns")
    assert len(last_cost) == 3 and {k: round(v, 8) for k, v in last_cost.items()} == \
        {k: round(float(v), 8) for k, v in per_turn.items()}


def test_budget_interrupts_a_real_codex_turn_gently(cs: Any, codex_bin: str, fake_model: FakeResponses) -> None:
    """The first model call (it asks for a slow command) spends the whole budget: the router asks the
    node to interrupt, the worker sends codex `turn/interrupt`, and codex ends the turn itself, before
    the command finishes."""
    config = codex_config(cs.tmp, codex_bin, fake_model)
    config["launch_providers"][0]["defaults"]["approval_policy"] = "never"
    config["model_pricing"] = PRICES
    cs.write_config(config)
    sid = cs.json("launch", "--nodes", "1", "--provider", "local-codex", "--budget-usd", "0.001")["swarm_id"]
    started = time.monotonic()
    run = cs.run("inject", sid, "--prompt", "RUN: sleep 20; touch never.txt", "--wait", "--timeout", "90", "--json",
                 check=False, timeout=150)
    assert run.returncode == 5, run.stderr
    assert time.monotonic() - started < 18  # the 20 s command did not run to its end
    evs = cs.events("--swarm", sid)
    names = [e["event"] for e in evs]
    assert names.count("budget_exceeded") == 1
    (done,) = [e["data"] for e in evs if e["event"] == "turn_complete"]
    assert done["status"] == "interrupted" and not done["aborted"]  # codex ended it, not the router
    assert not list((cs.tmp / "runs").glob("*/node_00/never.txt"))  # the command never ran
    refused = cs.run("inject", sid, "--prompt", "Say hello", "--timeout", "30", check=False)
    assert refused.returncode == 3 and "budget_exceeded" in refused.stderr
