"""Pricing of every usage shape the normalizers emit, against figures computed by hand (docs/SPEND.md).

Rates are USD per million tokens: gpt-5.4 and mock 2.5 in / 0.25 cached / 15 out; Claude-Sonnet-4.5
3 / 0.3 / 15 with cache writes at 1.25x (5 min) and 2x (1 h) input.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from codeswarm.config import load_config, parse_config
from codeswarm.errors import ConfigError
from codeswarm.router.normalize.claude import ClaudeNormalizer
from codeswarm.router.normalize.codex import CodexNormalizer
from codeswarm.spend.meter import NodeMeter
from codeswarm.spend.pricing import PricingCatalog, TokenCounts, cost_usd, parse_model_pricing, pricing_model_for

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT.parent / "shared" / "reference"
CATALOG = PricingCatalog.build()


def usage_of(events):
    return [d for name, d in events if name == "usage"]


def charge(meter: NodeMeter, usage: dict, *, runtime: str = "codex", params: dict | None = None, seq: int = 1):
    """Decide, log (as the router does: the charge fields on the event) and fold in."""
    c = meter.measure(usage, CATALOG, params or {}, runtime)
    logged = {**usage, **c.fields(meter.cost_usd + (c.cost_usd or 0))}
    meter.apply(logged, seq)
    return c, logged


def v2_usage(thread: str, total: tuple[int, int, int, int], last: tuple[int, int, int, int]) -> dict:
    def camel(t):
        inp, cached, out, reasoning = t
        return {"totalTokens": inp + out, "inputTokens": inp, "cachedInputTokens": cached, "outputTokens": out,
                "reasoningOutputTokens": reasoning}
    return {"method": "thread/tokenUsage/updated",
            "params": {"threadId": thread, "turnId": "t", "tokenUsage": {"total": camel(total), "last": camel(last),
                                                                          "modelContextWindow": 258400}}}


# ---------------------------------------------------------------------------- the arithmetic

def test_cost_splits_cached_input_and_counts_reasoning_inside_output() -> None:
    price = CATALOG.lookup("gpt-5.4")
    # 10,000 input of which 4,000 cached, 2,000 output of which 500 reasoning:
    # 6,000 x 2.5 + 4,000 x 0.25 + 2,000 x 15 (+ 500 x 0) = 15,000 + 1,000 + 30,000 = 46,000 per 1e6
    tokens = TokenCounts(input=10_000, cached_input=4_000, output=2_000, reasoning_output=500)
    assert cost_usd(tokens, price) == Decimal("0.046")


def test_reasoning_rate_is_added_on_top_of_output() -> None:
    (price,) = parse_model_pricing({"r": {"input_tokens_usd_per_m": 1, "output_tokens_usd_per_m": 10,
                                          "reasoning_output_tokens_usd_per_m": 2}}, "t").values()
    # 1,000 in x 1 + 1,000 out x 10 + 400 reasoning x 2 = 1,000 + 10,000 + 800 per 1e6
    assert cost_usd(TokenCounts(input=1_000, output=1_000, reasoning_output=400), price) == Decimal("0.0118")


def test_inconsistent_counters_never_cost_negative() -> None:
    price = CATALOG.lookup("gpt-5.4")
    assert cost_usd(TokenCounts(input=10, cached_input=50), price) == Decimal(50) * Decimal("0.25") / 10**6


# ---------------------------------------------------------------------------- codex

def test_codex_v2_recorded_usage_priced() -> None:
    norm = CodexNormalizer()
    # The first usage line of the recorded codex 0.169 transcript: 6,943 input (none cached), 10 output.
    (u,) = usage_of(norm.feed(v2_usage("th-1", (6943, 0, 10, 0), (6943, 0, 10, 0))))
    assert u["thread_id"] == "th-1"
    meter = NodeMeter()
    c, logged = charge(meter, u)
    # 6,943 x 2.5 + 10 x 15 = 17,357.5 + 150 = 17,507.5 per 1e6
    assert c.cost_usd == Decimal("0.0175075") and c.pricing_model == "gpt-5.4" and c.cost_source == "pricing"
    assert logged["estimated_cost_usd"] == 0.0175075 and logged["cost_unknown"] is False
    assert logged["node_spend_usd"] == 0.0175075


def test_codex_legacy_token_count_priced_and_not_doubled_by_v2_twin() -> None:
    norm = CodexNormalizer()
    info = {"total_token_usage": {"input_tokens": 20_000, "cached_input_tokens": 8_000, "output_tokens": 1_000,
                                  "reasoning_output_tokens": 300, "total_tokens": 21_000},
            "last_token_usage": {"input_tokens": 20_000, "cached_input_tokens": 8_000, "output_tokens": 1_000,
                                 "reasoning_output_tokens": 300, "total_tokens": 21_000},
            "model_context_window": 258400}
    legacy = {"method": "codex/event/token_count",
              "params": {"conversationId": "th-9", "msg": {"type": "token_count", "info": info}}}
    events = usage_of(norm.feed(legacy))
    # codex reports the same model call in both families: the v2 twin adds nothing.
    events += usage_of(norm.feed(v2_usage("th-9", (20_000, 8_000, 1_000, 300), (20_000, 8_000, 1_000, 300))))
    assert len(events) == 1 and events[0]["usage_source"] == "codex/event/token_count"
    meter = NodeMeter()
    c, _ = charge(meter, events[0])
    # 12,000 x 2.5 + 8,000 x 0.25 + 1,000 x 15 = 30,000 + 2,000 + 15,000 = 47,000 per 1e6
    assert c.cost_usd == Decimal("0.047")


def test_fresh_threads_accumulate_instead_of_overwriting() -> None:
    """fresh_thread_per_injection: every turn a new thread whose totals start again from zero."""
    norm, meter = CodexNormalizer(), NodeMeter()
    feed = [v2_usage("A", (1_000, 0, 100, 0), (1_000, 0, 100, 0)),
            v2_usage("A", (3_000, 0, 300, 0), (2_000, 0, 200, 0)),
            # thread B's first totals are above A's last ones: a plain difference would count 500/50
            v2_usage("B", (3_500, 0, 350, 0), (3_500, 0, 350, 0)),
            v2_usage("B", (4_500, 0, 450, 0), (1_000, 0, 100, 0))]
    logged = []
    for seq, msg in enumerate(feed, 1):
        for u in usage_of(norm.feed(msg)):
            logged.append(charge(meter, u, seq=seq)[1])
    assert [e["delta_tokens"]["input_tokens"] for e in logged] == [1_000, 2_000, 3_500, 1_000]
    assert meter.tokens.input == 7_500 and meter.tokens.output == 750
    # 7,500 x 2.5 + 750 x 15 = 18,750 + 11,250 = 30,000 per 1e6
    assert meter.cost_usd == Decimal("0.03")
    assert sum(e["estimated_cost_usd"] for e in logged) == pytest.approx(0.03, abs=1e-12)
    assert logged[-1]["node_spend_usd"] == 0.03


def test_a_thread_restarted_under_the_same_key_starts_from_zero() -> None:
    meter = NodeMeter()
    charge(meter, usage_of(CodexNormalizer().feed(v2_usage("m", (5_000, 0, 500, 0), (5_000, 0, 500, 0))))[0], seq=1)
    # a respawned worker's mock reports per-node totals from zero again, with the same thread key
    c, _ = charge(meter, usage_of(CodexNormalizer().feed(v2_usage("m", (800, 0, 80, 0), (800, 0, 80, 0))))[0], seq=2)
    assert c.tokens.input == 800 and meter.tokens.input == 5_800


# ---------------------------------------------------------------------------- claude

def claude_result(usage: dict, model: str = "claude-sonnet-4-5-20250929", cost: float | None = 0.5) -> dict:
    line = {"type": "result", "subtype": "success", "is_error": False, "result": "ok", "usage": usage,
            "modelUsage": {model: {"contextWindow": 200_000}}}
    if cost is not None:
        line["total_cost_usd"] = cost
    return line


def test_claude_cache_read_and_cache_creation_priced() -> None:
    norm = ClaudeNormalizer()
    usage = {"input_tokens": 2_000, "cache_creation_input_tokens": 10_000, "cache_read_input_tokens": 50_000,
             "output_tokens": 1_000,
             "cache_creation": {"ephemeral_5m_input_tokens": 6_000, "ephemeral_1h_input_tokens": 4_000}}
    (u,) = usage_of(norm.feed({"type": "codeswarm_turn_start"}) + norm.feed(claude_result(usage)))
    assert (u["input_tokens"], u["cached_input_tokens"], u["cache_write_input_tokens"]) == (62_000, 50_000, 10_000)
    meter = NodeMeter()
    c, _ = charge(meter, u, runtime="claude")
    # Sonnet 4.5: 2,000 x 3 + 50,000 x 0.3 + 6,000 x 3.75 + 4,000 x 6 + 1,000 x 15
    #           = 6,000 + 15,000 + 22,500 + 24,000 + 15,000 = 82,500 per 1e6 (the snapshot date is ignored)
    assert c.cost_usd == Decimal("0.0825") and c.pricing_model == "claude-sonnet-4-5-20250929"


def test_claude_turns_add_their_last_counters_even_after_a_router_restart() -> None:
    usage = {"input_tokens": 1_000, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
             "output_tokens": 100}
    meter = NodeMeter()
    (first,) = usage_of(ClaudeNormalizer().feed(claude_result(usage)))
    charge(meter, first, runtime="claude", seq=1)
    # the router restarted: a new normalizer's session totals equal the old ones, yet a turn was added
    (second,) = usage_of(ClaudeNormalizer().feed(claude_result(usage)))
    assert second["input_tokens"] == first["input_tokens"]
    charge(meter, second, runtime="claude", seq=2)
    # 2 turns x (1,000 x 3 + 100 x 15) = 2 x 4,500 per 1e6
    assert meter.tokens.input == 2_000 and meter.cost_usd == Decimal("0.009")


def test_unpriced_model_is_cost_unknown_not_zero_unless_the_runtime_reports_a_cost() -> None:
    usage = {"input_tokens": 100, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 10}
    (u,) = usage_of(ClaudeNormalizer().feed(claude_result(usage, model="some-new-model", cost=None)))
    meter = NodeMeter()
    c, logged = charge(meter, u, runtime="claude")
    assert c.cost_usd is None and logged["cost_unknown"] is True and logged["estimated_cost_usd"] is None
    assert meter.cost_unknown and meter.unpriced_tokens == 110 and meter.cost_usd == 0
    # Claude's own figure stands in when the table has no price for the model
    (u,) = usage_of(ClaudeNormalizer().feed(claude_result(usage, model="some-new-model", cost=0.0123)))
    c, logged = charge(NodeMeter(), u, runtime="claude")
    assert c.cost_source == "runtime" and logged["estimated_cost_usd"] == 0.0123 and not logged["cost_unknown"]


# ---------------------------------------------------------------------------- mock

def test_mock_usage_priced_by_default() -> None:
    # the mock's turn for a 5-character prompt: 201 input (64 cached), 40 output (16 reasoning)
    (u,) = usage_of(CodexNormalizer().feed(v2_usage("mock-thread-j-0", (201, 64, 40, 16), (201, 64, 40, 16))))
    c, _ = charge(NodeMeter(), u, runtime="mock")
    # 137 x 2.5 + 64 x 0.25 + 40 x 15 = 342.5 + 16 + 600 = 958.5 per 1e6
    assert c.pricing_model == "mock" and c.cost_usd == Decimal("0.0009585")


# ---------------------------------------------------------------------------- which model

def test_pricing_model_precedence() -> None:
    assert pricing_model_for({"pricing_model": "Claude-Haiku-4.5", "model": "x"}, "claude", "reported") == \
        "Claude-Haiku-4.5"
    assert pricing_model_for({"model": "launch"}, "codex", "reported") == "reported"
    assert pricing_model_for({"model": "launch"}, "codex", None) == "launch"
    assert pricing_model_for({}, "codex", None) == "gpt-5.4"
    assert pricing_model_for({}, "mock", None) == "mock"
    assert pricing_model_for({}, "claude", None) is None


def test_param_pricing_model_reprices_a_mock_swarm() -> None:
    (u,) = usage_of(CodexNormalizer().feed(v2_usage("t", (1_000_000, 0, 0, 0), (1_000_000, 0, 0, 0))))
    c, _ = charge(NodeMeter(), u, runtime="mock", params={"pricing_model": "claude-opus-4.5"})
    assert c.pricing_model == "claude-opus-4.5" and c.cost_usd == Decimal(15)


def test_mixed_models_are_labelled_mixed() -> None:
    from codeswarm.spend.meter import summarize

    meter = NodeMeter()
    u = usage_of(CodexNormalizer().feed(v2_usage("t", (1_000, 0, 0, 0), (1_000, 0, 0, 0))))[0]
    charge(meter, u, runtime="mock", seq=1)
    assert meter.pricing_model == "mock"
    other = NodeMeter()
    charge(other, u, runtime="codex", seq=1)
    assert summarize([meter, other]).pricing_model == "mixed"
    assert summarize([meter, NodeMeter()]).pricing_model == "mock"
    u2 = usage_of(CodexNormalizer().feed(v2_usage("t2", (1_000, 0, 0, 0), (1_000, 0, 0, 0))))[0]
    charge(meter, u2, runtime="codex", seq=2)
    assert meter.pricing_model == "mixed"


def test_a_replayed_event_is_not_counted_twice_and_state_round_trips() -> None:
    import orjson

    meter = NodeMeter()
    u = usage_of(CodexNormalizer().feed(v2_usage("t", (1_000, 0, 100, 0), (1_000, 0, 100, 0))))[0]
    _, logged = charge(meter, u, seq=7)
    restored = NodeMeter.from_json(orjson.loads(orjson.dumps(meter.to_json())))
    assert restored == meter
    assert restored.apply(logged, 7) is False and restored.apply(logged, 3) is False
    assert restored.cost_usd == meter.cost_usd == Decimal("0.004")


# ---------------------------------------------------------------------------- config

def test_reference_configs_load_unchanged_and_override_the_builtin_catalog() -> None:
    cfg = load_config(REFERENCE / "upstream-configs-local.json")
    opus = cfg.pricing.lookup("Claude-Opus-4.5")
    assert (opus.input, opus.cached_input, opus.output) == (Decimal("15.0"), Decimal("1.5"), Decimal("75.0"))
    assert cfg.pricing.lookup("claude-opus-4-5[1m]") == opus
    cfg = parse_config({"cluster": {"local": {}}, "model_pricing": {
        "GPT-5.4": {"input_tokens_usd_per_m": 1.0, "output_tokens_usd_per_m": 2.0}}}, None, base_dir=ROOT)
    price = cfg.pricing.lookup("gpt-5.4")
    assert (price.input, price.cached_input, price.output) == (Decimal("1.0"), Decimal("1.0"), Decimal("2.0"))
    assert cfg.pricing.lookup("mock") is not None  # the rest of the built-in catalog stays


@pytest.mark.parametrize("table, message", [
    ([], "'model_pricing' must be an object"),
    ({"m": 3}, "model_pricing.m must be an object"),
    ({"m": {"input_tokens_usd_per_m": 1}}, "missing required key 'output_tokens_usd_per_m'"),
    ({"m": {"input_tokens_usd_per_m": "1", "output_tokens_usd_per_m": 1}}, "'input_tokens_usd_per_m' must be a number"),
    ({"m": {"input_tokens_usd_per_m": -1, "output_tokens_usd_per_m": 1}}, "must be a finite number >= 0"),
    ({"m": {"input_tokens_usd_per_m": True, "output_tokens_usd_per_m": 1}}, "must be a number"),
    ({"m": {"input_tokens_usd_per_m": 1, "output_token_usd_per_m": 1}}, "unknown key 'output_token_usd_per_m'"),
    ({"GPT-5.4": {"input_tokens_usd_per_m": 1, "output_tokens_usd_per_m": 1},
      "gpt_5_4": {"input_tokens_usd_per_m": 1, "output_tokens_usd_per_m": 1}}, "names the same model as 'GPT-5.4'"),
    ({"--": {"input_tokens_usd_per_m": 1, "output_tokens_usd_per_m": 1}}, "must contain letters or digits"),
])
def test_bad_model_pricing_is_a_clear_error(table, message) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_config({"cluster": {"local": {}}, "model_pricing": table}, Path("/x/conf.json"), base_dir=ROOT)
    assert str(info.value).startswith("/x/conf.json: ")


@pytest.mark.parametrize("budget, message", [
    ({"default_swarm_usd": 0}, "'default_swarm_usd' must be > 0"),
    ({"default_swarm_usd": "5"}, "'default_swarm_usd' must be a number"),
    ({"default_project_usd": -3}, "'default_project_usd' must be > 0"),
    ({"warn_fraction": 1.5}, "'warn_fraction' must be a number in \\(0, 1\\]"),
    ({"default_swarm": 5}, "unknown key 'default_swarm'"),
    ([], "'budget' must be an object"),
])
def test_bad_budget_defaults_are_clear_errors(budget, message) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"cluster": {"local": {}}, "budget": budget}, None, base_dir=ROOT)


def test_budget_defaults_and_launch_params_validated() -> None:
    from codeswarm.config import validate_params

    cfg = parse_config({"cluster": {"local": {}}, "budget": {"default_swarm_usd": 25, "warn_fraction": 0.5}},
                       None, base_dir=ROOT)
    assert cfg.budget.swarm_usd == Decimal("25.0") and cfg.budget.warn_fraction == Decimal("0.5")
    for bad in ({"budget_usd": "10"}, {"budget_usd": 0}, {"budget_usd": float("nan")}, {"pricing_model": 4}):
        with pytest.raises(ValueError):
            validate_params(bad, "t")
    assert validate_params({"budget_usd": 2.5, "pricing_model": "gpt-5.4"}, "t")


def test_hostile_usage_lines_cannot_bloat_the_state_or_go_negative() -> None:
    meter = NodeMeter()
    forged = {"usage_source": "thread/tokenUsage/updated", "thread_id": "t" * (1 << 20), "model_name": "m" * (1 << 20),
              "input_tokens": -5, "output_tokens": True, "cached_input_tokens": "9", "total_tokens": 10**30,
              "last_input_tokens": None, "estimated_cost_usd": -100.0, "node_spend_usd": 1e9}
    c, logged = charge(meter, forged, runtime="mock")
    assert c.tokens == TokenCounts() and logged["estimated_cost_usd"] is None and logged["cost_unknown"] is True
    assert len(logged["thread_key"]) == 200 and len(logged["pricing_model"]) == 200
    assert meter.cost_usd == 0 and all(len(k) <= 200 for k in meter.threads)
    huge = {"usage_source": "thread/tokenUsage/updated", "thread_id": "x", "input_tokens": 10**15, "output_tokens": 0}
    c, _ = charge(meter, huge, runtime="mock", seq=2)
    assert c.cost_usd == Decimal(10**15) * Decimal("2.5") / 10**6  # exact, no float overflow or rounding
