"""Usage that arrives after its turn completed (issue 15): codex can send thread/tokenUsage/updated after
turn/completed. The late usage is the completed turn's (by the node's last turn, and by codex's `turnId`
when it names one): the usage event is logged under that turn's injection, a `turn_cost_updated` event
gives the corrected turn cost, and the per-turn cost the `events` transcript prints last equals the sum
of the turn's usage events. The sequences go through the real codex normalizer.

gpt-5.4: 1,000,000 fresh input tokens cost exactly $2.50.
"""

from __future__ import annotations

from decimal import Decimal

from codeswarm.commands.events import render
from codeswarm.router.normalize.codex import CodexNormalizer

M = 1_000_000


def turn_started(turn: str) -> dict:
    return {"method": "turn/started", "params": {"threadId": "th", "turn": {"id": turn, "status": "inProgress"}}}


def turn_completed(turn: str) -> dict:
    return {"method": "turn/completed", "params": {"threadId": "th", "turn": {"id": turn, "status": "completed"}}}


def token_usage(turn: str, total_in: int, last_in: int) -> dict:
    def counts(n: int) -> dict:
        return {"totalTokens": n, "inputTokens": n, "cachedInputTokens": 0, "outputTokens": 0,
                "reasoningOutputTokens": 0}
    return {"method": "thread/tokenUsage/updated",
            "params": {"threadId": "th", "turnId": turn, "tokenUsage": {"total": counts(total_in),
                                                                       "last": counts(last_in)}}}


def feed(h, norm, swarm, node, iid, msg):
    """One runtime outbox line: the worker labels it with the injection it is busy with (or none)."""
    return h.runtime(swarm, node, iid, *norm.feed(msg))


def per_turn_printed(h, iid) -> float:
    """The last per-turn cost the `events` transcript prints for a turn."""
    lines = [render({"event": n, "seq": 1, "data": d}) for n, d in h.events(injection_id=iid)
             if n in ("turn_complete", "turn_cost_updated")]
    return float(lines[-1].rsplit("cost $", 1)[1])


def usage_sum(h, iid) -> Decimal:
    return sum((Decimal(repr(d["estimated_cost_usd"])) for n, d in h.events(injection_id=iid) if n == "usage"),
               Decimal(0))


def running_turn(h):
    """A 1-node swarm whose node runs one injection as codex turn "turn-1": (swarm, iid, normalizer)."""
    swarm, _ = h.launch(nodes=1)
    h.start(swarm)
    iid = h.inject(swarm, [0])[0]
    h.accept(swarm, 0, iid)
    norm = CodexNormalizer()
    feed(h, norm, swarm, 0, iid, turn_started("turn-1"))
    return swarm, iid, norm


def test_usage_after_turn_completed_corrects_the_turns_cost(h) -> None:
    swarm, iid, norm = running_turn(h)
    feed(h, norm, swarm, 0, iid, token_usage("turn-1", M, M))
    feed(h, norm, swarm, 0, iid, turn_completed("turn-1"))
    (done,) = [d for n, d in h.events() if n == "turn_complete"]
    assert done["turn_cost_usd"] == 2.5
    # the worker has left the turn: the late line names no injection
    feed(h, norm, swarm, 0, None, token_usage("turn-1", 3 * M, 2 * M))
    late = [d for n, d in h.events() if n == "usage"][-1]
    assert (late["injection_id"], late["late_usage"], late["estimated_cost_usd"]) == (iid, True, 5.0)
    (upd,) = [d for n, d in h.events() if n == "turn_cost_updated"]
    assert (upd["injection_id"], upd["turn_id"], upd["turn_cost_usd"], upd["late_usd"]) == (iid, "turn-1", 7.5, 5.0)
    assert per_turn_printed(h, iid) == 7.5 == float(usage_sum(h, iid))
    assert Decimal(swarm.injections[iid].spend_usd) == Decimal("7.5")
    assert swarm.nodes[0].spend["cost_usd"] == "7.5"
    fresh = h.replayed().swarms[swarm.swarm_id]
    assert fresh.injections[iid].spend_usd == swarm.injections[iid].spend_usd


def test_late_usage_on_the_next_queued_turns_line_is_the_previous_turns(h) -> None:
    swarm, _ = h.launch(nodes=1)
    h.start(swarm)
    first = h.inject(swarm, [0])[0]
    second = h.inject(swarm, [0])[0]
    h.accept(swarm, 0, first)
    h.accept(swarm, 0, second, queued=True)
    norm = CodexNormalizer()
    feed(h, norm, swarm, 0, first, turn_started("turn-1"))
    feed(h, norm, swarm, 0, first, token_usage("turn-1", M, M))
    feed(h, norm, swarm, 0, first, turn_completed("turn-1"))
    # the worker already took the next prompt, whose turn has not started: the usage names turn-1
    feed(h, norm, swarm, 0, second, token_usage("turn-1", 2 * M, M))
    feed(h, norm, swarm, 0, second, turn_started("turn-2"))
    feed(h, norm, swarm, 0, second, token_usage("turn-2", 4 * M, 2 * M))
    feed(h, norm, swarm, 0, second, turn_completed("turn-2"))
    turns = {d["injection_id"]: d["turn_cost_usd"] for n, d in h.events() if n == "turn_complete"}
    assert turns == {first: 2.5, second: 5.0}
    (upd,) = [d for n, d in h.events() if n == "turn_cost_updated"]
    assert (upd["injection_id"], upd["turn_cost_usd"]) == (first, 5.0)
    for iid in (first, second):
        assert per_turn_printed(h, iid) == float(usage_sum(h, iid))
    assert swarm.nodes[0].spend["cost_usd"] == "10.0"


def test_usage_naming_another_turn_is_not_moved(h) -> None:
    swarm, iid, norm = running_turn(h)
    feed(h, norm, swarm, 0, iid, turn_completed("turn-1"))
    feed(h, norm, swarm, 0, None, token_usage("turn-9", M, M))
    (u,) = [d for n, d in h.events() if n == "usage"]
    assert u["injection_id"] is None and "late_usage" not in u
    assert not [n for n, _ in h.events() if n == "turn_cost_updated"]
    assert swarm.nodes[0].spend["cost_usd"] == "2.5"  # still the node's spend


def test_a_usage_line_naming_another_nodes_turn_is_not_that_turns_cost(h) -> None:
    """Review (forged outbox line): node 1 writes a usage line labelled with node 0's running injection.
    It is node 1's usage (its meter), never node 0's turn cost, running or completed."""
    swarm, _ = h.launch(nodes=2)
    h.start(swarm)
    iid = h.inject(swarm, [0])[0]
    h.accept(swarm, 0, iid)
    norm0, norm1 = CodexNormalizer(), CodexNormalizer()
    feed(h, norm0, swarm, 0, iid, turn_started("turn-1"))
    feed(h, norm0, swarm, 0, iid, token_usage("turn-1", M, M))
    feed(h, norm1, swarm, 1, iid, token_usage("turn-x", 4 * M, 4 * M))  # forged: node 1, node 0's injection
    forged = [d for n, d in h.events() if n == "usage"][-1]
    assert forged["node_id"] == 1 and forged["injection_id"] != iid
    assert Decimal(swarm.nodes[1].spend["cost_usd"]) == 10
    assert Decimal(swarm.injections[iid].spend_usd) == Decimal("2.5")
    feed(h, norm0, swarm, 0, iid, turn_completed("turn-1"))
    (done,) = [d for n, d in h.events() if n == "turn_complete"]
    assert done["turn_cost_usd"] == 2.5
    feed(h, norm1, swarm, 1, iid, token_usage("turn-1", 8 * M, 4 * M))  # and after it completed, naming its turn
    assert not [d for n, d in h.events() if n == "turn_cost_updated"]
    assert Decimal(swarm.injections[iid].spend_usd) == Decimal("2.5")
    assert Decimal(h.replayed().swarms[swarm.swarm_id].injections[iid].spend_usd) == Decimal("2.5")


def test_a_usage_labelled_with_a_completed_turn_but_naming_another_turn_keeps_the_turns_cost_true(h) -> None:
    """Review: the worker's line names the completed injection (its trailing read), the usage names another
    turn. Whichever it is charged to, the cost the transcript prints last for the turn is the sum of the
    turn's usage events."""
    swarm, iid, norm = running_turn(h)
    feed(h, norm, swarm, 0, iid, token_usage("turn-1", M, M))
    feed(h, norm, swarm, 0, iid, turn_completed("turn-1"))
    feed(h, norm, swarm, 0, iid, token_usage("turn-9", 3 * M, 2 * M))
    assert per_turn_printed(h, iid) == float(usage_sum(h, iid)) == float(Decimal(swarm.injections[iid].spend_usd))
