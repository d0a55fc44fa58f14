"""Spend and budgets through the real .pyz (issue 15): the status totals are the logged usage events'
sum, to the cent, across a kill -9 of the router; a budget stops a runaway swarm and can be raised.

The mock is priced like gpt-5.4 (2.5 / 0.25 / 15 USD per million tokens); `[mock:tokens=N]` adds N
input tokens to each of a turn's two model calls, so turns cost dollars, not fractions of a cent.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from tests.conftest import Codeswarm

BIG = "[mock:tokens=1000000]"  # about $2.50 per model call, two calls per turn


def usage_sums(events: list[dict[str, Any]], swarm_id: str) -> tuple[Decimal, dict[int, Decimal]]:
    total, per_node = Decimal(0), {}
    for e in events:
        d = e["data"]
        if e["event"] != "usage" or d.get("swarm_id") != swarm_id:
            continue
        assert d["cost_unknown"] is False and d["pricing_model"] == "mock"
        cost = Decimal(repr(d["estimated_cost_usd"]))
        total += cost
        per_node[d["node_id"]] = per_node.get(d["node_id"], Decimal(0)) + cost
    return total, per_node


def cents(x: float | Decimal) -> Decimal:
    return Decimal(repr(float(x))).quantize(Decimal("0.01"))


def test_status_spend_equals_the_logged_usage_events_across_a_kill_9(cs: Codeswarm) -> None:
    sid = cs.json("launch", "--nodes", "4")["swarm_id"]
    for i in range(3):
        cs.json("inject", sid, "--prompt", f"{BIG} task {i}", "--wait", "--timeout", "90")
    events = cs.events("--swarm", sid)
    total, per_node = usage_sums(events, sid)
    # 3 turns x 4 nodes x 2 model calls, each about 1,000,000 x 2.5 / 1e6
    assert sum(1 for e in events if e["event"] == "usage") == 24
    assert Decimal(55) < total < Decimal(65)
    status = cs.json("status", sid)
    assert cents(status["spend_usd"]) == cents(total)
    assert status["budget_usd"] is None and status["pricing_model"] == "mock"
    assert {n["node_id"]: cents(n["spend_usd"]) for n in status["nodes"]} == \
        {n: cents(v) for n, v in per_node.items()}
    listed = cs.json("list")[sid]
    assert cents(listed["spend_usd"]) == cents(total)
    # the node running totals on the events agree with the sums
    last = {}
    for e in events:
        if e["event"] == "usage":
            last[e["data"]["node_id"]] = e["data"]["node_spend_usd"]
    assert {n: cents(v) for n, v in last.items()} == {n: cents(v) for n, v in per_node.items()}
    transcript = cs.run("events", "--since", "0", "--swarm", sid).stdout
    turn_lines = [ln for ln in transcript.splitlines() if "turn complete (completed)" in ln]
    assert len(turn_lines) == 12 and all("cost $" in ln for ln in turn_lines)
    assert sum(Decimal(ln.rsplit("cost $", 1)[1]) for ln in turn_lines) == \
        pytest.approx(total, abs=Decimal("0.01"))  # printed per turn to 4 places
    report = cs.json("spend", "--swarm", sid)
    assert cents(report["total"]["spend_usd"]) == cents(total) and list(report["by_model"]) == ["mock"]
    assert len(report["by_node"]) == 4
    table = cs.run("spend", "--swarm", sid, "--since", "1h").stdout
    assert table.splitlines()[0].split()[:2] == ["MODEL", "SPEND"] and "\nmock " in table
    future = cs.json("spend", "--since", "2099-01-01T00:00:00Z")
    assert future["total"]["spend_usd"] == 0 and future["total"]["usage_events"] == 0
    bad = cs.run("spend", "--since", "yesterday", check=False)
    assert bad.returncode == 2 and "neither an ISO-8601 time nor an age" in bad.stderr

    cs.kill_router()
    after = cs.json("status", sid)  # autostarts a new router, which recovers from snapshot + log
    assert after["spend_usd"] == status["spend_usd"]
    assert [n["spend_usd"] for n in after["nodes"]] == [n["spend_usd"] for n in status["nodes"]]
    assert usage_sums(cs.events("--swarm", sid), sid)[0] == total  # no usage logged twice
    # and it goes on counting from there
    cs.json("inject", sid, "--prompt", "one more", "--nodes", "0", "--wait", "--timeout", "60")
    more = cs.json("status", sid)
    assert more["spend_usd"] > after["spend_usd"]
    assert cents(more["spend_usd"]) == cents(usage_sums(cs.events("--swarm", sid), sid)[0])


def test_budget_stops_the_running_turn_and_refuses_work_until_raised(cs: Codeswarm) -> None:
    # one turn costs about $5.0 (two calls); $6 is crossed by the second turn's first call
    sid = cs.json("launch", "--nodes", "1", "--budget-usd", "6")["swarm_id"]
    assert cs.json("status", sid)["budget_usd"] == 6
    cs.json("inject", sid, "--prompt", f"{BIG} first", "--wait", "--timeout", "60")
    first = cs.json("status", sid)
    assert 4.8 <= first["spend_usd"] < 6 and first["budget_state"] == "warning"
    second = cs.run("inject", sid, "--prompt", f"{BIG}[mock:slow=120] second", "--wait", "--timeout", "60",
                    "--json", check=False)
    assert second.returncode == 5, second.stderr  # the turn ended interrupted, long before its 120 s
    assert json.loads(second.stdout)["nodes"][0]["outcome"] != "completed"
    evs = cs.events("--swarm", sid)
    names = [e["event"] for e in evs]
    assert names.count("budget_warning") == 1 and names.count("budget_exceeded") == 1
    exceeded = next(e["data"] for e in evs if e["event"] == "budget_exceeded")
    assert exceeded["budget_usd"] == 6 and exceeded["spend_usd"] >= 6 and exceeded["scope"] == "swarm"
    turns = [e["data"] for e in evs if e["event"] == "turn_complete"]
    assert turns[-1]["status"] == "interrupted"
    assert names.index("budget_exceeded") < len(names) - 1 - names[::-1].index("turn_complete")

    refused = cs.run("inject", sid, "--prompt", "third", "--wait", "--timeout", "30", check=False)
    assert refused.returncode == 3 and "budget_exceeded" in refused.stderr
    assert cs.json("status", sid)["state"] == "running"  # left running, to be raised or terminated

    cs.kill_router()  # durable: the exceeded budget survives a kill -9
    again = cs.run("inject", sid, "--prompt", "third", "--wait", "--timeout", "30", check=False)
    assert again.returncode == 3 and "budget_exceeded" in again.stderr

    raised = cs.json("budget", sid, "--usd", "10")
    assert raised["budget_usd"] == 10 and raised["budget_state"] == "ok"
    ok = cs.json("inject", sid, "--prompt", "a cheap one", "--wait", "--timeout", "60")
    assert ok["nodes"][0]["outcome"] == "completed"
    bad = cs.run("budget", sid, "--usd", "-1", check=False)
    assert bad.returncode == 2
    # any client may set the spend params, whatever the preset's launch_fields; bad values are refused
    refused = cs.run("launch", "--param", "budget_usd=-1", check=False)
    assert refused.returncode == 3 and "budget_usd" in refused.stderr
    repriced = cs.json("launch", "--param", "pricing_model=Claude-Opus-4.5", "--param", "budget_usd=2")
    assert cs.json("status", repriced["swarm_id"])["budget_usd"] == 2
