"""Usage after turn/completed through the real .pyz (issue 15): a scripted app-server (the real 0.169
wire format, fake_app_server.py) sends thread/tokenUsage/updated after turn/completed, as codex can.
The late usage is the completed turn's: `turn_cost_updated` corrects the turn's cost, the `events`
transcript prints it, and it equals the sum of the turn's usage events and the node's spend. Usage
that comes within the worker's short read after the turn names the turn's injection; later usage is
read when the next turn starts, on a line that names the next injection, and is still the previous
turn's (by its turnId)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.conftest import use_scripted_codex as scripted_codex


def test_usage_after_turn_completed_corrects_the_turn_cost_in_events_and_status(cs: Any) -> None:
    scripted_codex(cs)
    sid = cs.json("launch", "--nodes", "1")["swarm_id"]
    first = cs.json("inject", sid, "--prompt", "LATE_USAGE please", "--wait", "--timeout", "60")
    assert first["nodes"][0]["outcome"] == "completed"
    iid = first["nodes"][0]["injection_id"]
    evs = cs.wait_for(lambda es: any(e["event"] == "turn_cost_updated" for e in es), "--swarm", sid, timeout=30)
    (done,) = [e["data"] for e in evs if e["event"] == "turn_complete"]
    (upd,) = [e["data"] for e in evs if e["event"] == "turn_cost_updated"]
    assert done["turn_cost_usd"] == 2.5  # logged up to the turn's end
    assert (upd["injection_id"], upd["turn_id"], upd["turn_cost_usd"], upd["late_usd"]) == \
        (iid, done["turn_id"], 7.5, 5.0)
    usage = [e["data"] for e in evs if e["event"] == "usage"]
    assert [u["injection_id"] for u in usage] == [iid, iid] and usage[1]["late_usage"] is True
    assert sum(Decimal(repr(u["estimated_cost_usd"])) for u in usage) == Decimal("7.5")
    transcript = cs.run("events", "--since", "0", "--swarm", sid).stdout
    costs = [ln.rsplit("cost $", 1)[1] for ln in transcript.splitlines()
             if "turn complete" in ln or "turn cost updated" in ln]
    assert costs == ["2.5000", "7.5000"]  # the last figure of the turn is the sum of its usage
    status = cs.json("status", sid)
    assert status["spend_usd"] == 7.5 and status["nodes"][0]["spend_usd"] == 7.5
    # the next turn starts its own cost from zero
    second = cs.json("inject", sid, "--prompt", "USAGE again", "--wait", "--timeout", "60")
    sid2 = second["nodes"][0]["injection_id"]
    ends = [e["data"] for e in cs.events("--swarm", sid) if e["event"] == "turn_complete"]
    assert [(d["injection_id"], d["turn_cost_usd"]) for d in ends] == [(iid, 2.5), (sid2, 2.5)]
    cs.kill_router()
    assert cs.json("status", sid)["spend_usd"] == 10.0


def test_usage_read_only_when_the_next_turn_starts_is_still_the_previous_turns(cs: Any) -> None:
    scripted_codex(cs)
    sid = cs.json("launch", "--nodes", "1")["swarm_id"]
    first = cs.json("inject", sid, "--prompt", "SLOW_LATE_USAGE please", "--wait", "--timeout", "60")
    iid = first["nodes"][0]["injection_id"]
    assert cs.json("status", sid)["spend_usd"] == 2.5  # the late usage is not read yet
    second = cs.json("inject", sid, "--prompt", "USAGE next", "--wait", "--timeout", "60")
    nid = second["nodes"][0]["injection_id"]
    evs = cs.events("--swarm", sid)
    (upd,) = [e["data"] for e in evs if e["event"] == "turn_cost_updated"]
    assert (upd["injection_id"], upd["turn_cost_usd"]) == (iid, 7.5)
    ends = {e["data"]["injection_id"]: e["data"]["turn_cost_usd"] for e in evs if e["event"] == "turn_complete"}
    assert ends == {iid: 2.5, nid: 2.5}  # the next turn is not charged for the previous turn's usage
    per_turn: dict[str, Decimal] = {}
    for e in evs:
        if e["event"] == "usage":
            d = e["data"]
            per_turn[d["injection_id"]] = per_turn.get(d["injection_id"], Decimal(0)) + \
                Decimal(repr(d["estimated_cost_usd"]))
    assert per_turn == {iid: Decimal("7.5"), nid: Decimal("2.5")}
    assert cs.json("status", sid)["spend_usd"] == 10.0
