"""The core's spend feature (core/spend.py): usage events logged with their cost, totals derived from
the log (replay gives the same state, twice-applied events count once), budgets at 80 % and 100 %.

Codex (gpt-5.4) prices: 2.5 / 0.25 / 15 USD per million; a usage of 1,000,000 fresh input tokens
costs exactly $2.50.
"""

from __future__ import annotations

from decimal import Decimal

from codeswarm.core import reduce
from codeswarm.core.kernel import Event, InboxLine
from codeswarm.core.spend import SetBudget
from codeswarm.core.views import list_record, status_data, swarm_spend
from codeswarm.router.normalize.base import usage_event


def usage(thread: str, total_in: int, last_in: int) -> tuple[str, dict]:
    return usage_event("thread/tokenUsage/updated",
                       {"input_tokens": total_in, "cached_input_tokens": 0, "output_tokens": 0,
                        "reasoning_output_tokens": 0, "total_tokens": total_in},
                       {"input_tokens": last_in, "output_tokens": 0, "total_tokens": last_in}, thread_id=thread)


M = 1_000_000


def running(h, nodes=2, **params):
    swarm, _ = h.launch(nodes=nodes, **params)
    h.start(swarm)
    return swarm


def test_usage_logged_with_its_cost_and_totals_per_node_swarm_and_turn(h) -> None:
    swarm = running(h)
    iids = h.inject(swarm, [0, 1])
    h.accept(swarm, 0, iids[0])
    h.runtime(swarm, 0, iids[0], ("turn_started", {"turn_id": "t"}))
    h.runtime(swarm, 0, iids[0], usage("A", M, M))
    h.runtime(swarm, 0, iids[0], usage("A", 3 * M, 2 * M))
    # a fresh thread (fresh_thread_per_injection): its totals start again from zero
    h.runtime(swarm, 0, iids[0], usage("B", M, M), ("turn_complete", {"turn_id": "t"}))
    logged = [d for n, d in h.events() if n == "usage"]
    assert [d["estimated_cost_usd"] for d in logged] == [2.5, 5.0, 2.5]
    assert [d["node_spend_usd"] for d in logged] == [2.5, 7.5, 10.0]
    assert all(d["pricing_model"] == "gpt-5.4" and d["cost_unknown"] is False for d in logged)
    (done,) = [d for n, d in h.events() if n == "turn_complete"]
    assert done["turn_cost_usd"] == 10.0
    rec = list_record(swarm)
    assert rec["spend_usd"] == 10.0 and rec["budget_usd"] is None and rec["pricing_model"] == "gpt-5.4"
    nodes = status_data(swarm, "r", with_nodes=True)["nodes"]
    assert [n["spend_usd"] for n in nodes] == [10.0, 0.0] and nodes[0]["budget_usd"] is None
    assert swarm.nodes[0].spend["tokens"]["input_tokens"] == 4 * M  # 1 + 2 (thread A) + 1 (thread B)


def test_replay_rebuilds_the_same_totals_and_a_repeated_event_counts_once(h) -> None:
    swarm = running(h)
    iids = h.inject(swarm, [0])
    h.runtime(swarm, 0, iids[0], usage("A", M, M))
    h.runtime(swarm, 0, iids[0], usage("A", 2 * M, M))
    fresh = h.replayed().swarms[swarm.swarm_id]
    assert fresh.spend == swarm.spend and fresh.nodes[0].spend == swarm.nodes[0].spend
    seq, name, data, _ = [e for e in h.log if e[1] == "usage"][-1]
    reduce(h.state, Event(name, data, 0.0, seq))  # the same logged event again (snapshot + overlapping log)
    assert swarm_spend(swarm).cost_usd == Decimal(5)


def test_unpriced_model_is_cost_unknown_and_mixed_models_are_labelled(h) -> None:
    swarm = running(h, pricing_model="no-such-model")
    iids = h.inject(swarm, [0])
    h.runtime(swarm, 0, iids[0], usage("A", M, M))
    (u,) = [d for n, d in h.events() if n == "usage"]
    assert u["cost_unknown"] is True and u["estimated_cost_usd"] is None
    rec = list_record(swarm)
    assert rec["cost_unknown"] is True and rec["spend_usd"] == 0.0
    other = running(h, nodes=1)
    h.runtime(other, 0, None, ("usage", {**usage("A", M, M)[1], "model_name": "gpt-5.4"}))
    h.runtime(other, 0, None, ("usage", {**usage("C", M, M)[1], "model_name": "Claude-Haiku-4.5"}))
    assert list_record(other)["pricing_model"] == "mixed"


def test_budget_warns_at_80_percent_then_stops_work_at_100(h) -> None:
    swarm = running(h, budget_usd=10)
    assert list_record(swarm)["budget_usd"] == 10.0 and list_record(swarm)["budget_state"] == "ok"
    iids = h.inject(swarm, [0, 1])
    h.accept(swarm, 0, iids[0])
    h.accept(swarm, 1, iids[1], queued=True)
    h.runtime(swarm, 0, iids[0], ("turn_started", {"turn_id": "t"}), usage("A", 3 * M, 3 * M))  # $7.50: 75 %
    assert "budget_warning" not in h.names()
    h.runtime(swarm, 0, iids[0], usage("A", 13 * M // 4, M // 4))  # $8.125: 81 %
    assert h.names().count("budget_warning") == 1 and list_record(swarm)["budget_state"] == "warning"
    queued = h.inject(swarm, [1], "later")
    mark = h.mark()
    decision = h.runtime(swarm, 0, iids[0], usage("A", 4 * M, 3 * M // 4))  # $10.00: the limit
    names = h.names(after=mark)
    assert names[:2] == ["usage", "budget_exceeded"]
    exceeded = h.events(after=mark)[1][1]
    assert exceeded["spend_usd"] == 10.0 and exceeded["budget_usd"] == 10.0 and exceeded["percent"] == 100.0
    # the injections not running fail; the running one is asked to stop (gently, by the worker)
    failed = {d["injection_id"]: d["reason"] for n, d in h.events(after=mark) if n == "inject_failed"}
    assert failed == {iids[1]: "budget_exceeded", queued[1]: "budget_exceeded"}
    controls = [e for e in decision.effects if isinstance(e, InboxLine)]
    assert {(c.node_id, tuple(c.line["payload"]["injection_ids"])) for c in controls} == \
        {(0, (iids[0],)), (1, (iids[1], queued[1]))}
    assert all(c.line["type"] == "control" and c.line["payload"]["kind"] == "interrupt" for c in controls)
    assert swarm.state == "running" and swarm.budget_exceeded
    # more usage: no second announcement
    h.runtime(swarm, 0, iids[0], usage("A", 5 * M, M))
    assert h.names().count("budget_exceeded") == 1
    h.runtime(swarm, 0, iids[0], ("turn_complete", {"turn_id": "t", "status": "interrupted"}))


def test_raising_the_budget_rearms_it_and_lowering_below_the_spend_stops_work(h) -> None:
    swarm = running(h, nodes=1, budget_usd=5)
    iids = h.inject(swarm, [0])
    h.runtime(swarm, 0, iids[0], usage("A", 2 * M, 2 * M))  # $5.00
    assert swarm.budget_exceeded
    mark = h.mark()
    h.decide(SetBudget(swarm.swarm_id, 20.0, "req-b"))
    (updated,) = h.events(after=mark)
    assert updated[0] == "budget_updated" and updated[1]["budget_state"] == "ok" and updated[1]["spend_usd"] == 5.0
    assert not swarm.budget_exceeded and not swarm.budget_warned and swarm.budget_usd == 20.0
    mark = h.mark()
    h.decide(SetBudget(swarm.swarm_id, 6.0, "req-c"))  # $5 of $6: past the warning mark at once
    assert h.names(after=mark) == ["budget_updated", "budget_warning"]
    assert h.events(after=mark)[0][1]["budget_state"] == "warning"
    mark = h.mark()
    h.decide(SetBudget(swarm.swarm_id, 4.0, "req-d"))
    assert h.names(after=mark)[:3] == ["budget_updated", "budget_warning", "budget_exceeded"]
    assert swarm.budget_exceeded
    h.decide(SetBudget(swarm.swarm_id, None, "req-e"))
    assert swarm.budget_usd is None and not swarm.budget_exceeded
    assert list_record(swarm)["budget_state"] is None


def test_routing_into_a_swarm_whose_budget_is_spent_is_ignored(h) -> None:
    from codeswarm.core.queue import RouteAnswer

    source = running(h, nodes=1, auto_route=True)
    target = running(h, nodes=1, swarm_alias="beta", budget_usd=1)
    iids = h.inject(target, [0])
    h.runtime(target, 0, iids[0], usage("A", M, M))  # $2.50 of $1
    assert target.budget_exceeded
    src = h.inject(source, [0])
    mark = h.mark()
    h.decide(RouteAnswer(source.swarm_id, 0, src[0], "done\n/swarm[beta]/idle next step"))
    ignored = [d for n, d in h.events(after=mark) if n == "auto_route_ignored"]
    assert ignored and "budget is spent" in ignored[0]["reason"]
    assert "inter_swarm_enqueued" not in h.names(after=mark)


def test_config_default_budget_applies_when_the_launch_names_none(h) -> None:
    import dataclasses

    h.state.settings = dataclasses.replace(h.state.settings, default_swarm_budget_usd=Decimal(5))
    defaulted, _ = h.launch(nodes=1)
    own, _ = h.launch(nodes=1, budget_usd=2.5)
    assert defaulted.budget_usd == 5.0 and own.budget_usd == 2.5
