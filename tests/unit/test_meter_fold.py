"""spend/meter.py's fast paths give what the NodeMeter dataclass gives: `folded` (the reducer's
fold of a usage event into a JSON meter) and `measure_json` (the decider's charge read off it),
for random meters and usage events, including already-counted events, unpriced ones, thread
restarts, more threads than kept and meters that are not in to_json()'s shape."""

from __future__ import annotations

import copy

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from codeswarm.spend.meter import NodeMeter, folded, measure_json
from codeswarm.spend.pricing import PricingCatalog

COUNT = st.one_of(st.integers(min_value=0, max_value=10**7), st.none(), st.just(-3), st.just(True), st.just(1.5))
KEYS = ("input_tokens", "cached_input_tokens", "cache_write_input_tokens", "cache_write_1h_input_tokens",
        "output_tokens", "reasoning_output_tokens", "total_tokens")


@st.composite
def usage_events(draw: st.DrawFn) -> dict:
    ev: dict = {k: draw(COUNT) for k in KEYS if draw(st.booleans())}
    ev.update({"last_" + k: draw(COUNT) for k in KEYS if draw(st.booleans())})
    ev["thread_id"] = draw(st.sampled_from(["A", "B", "C", "D", "E", "F", "G", "H", "I", "J", None]))
    ev["usage_source"] = draw(st.sampled_from(["thread/tokenUsage/updated", "claude/result"]))
    if draw(st.booleans()):
        ev["model_name"] = draw(st.sampled_from(["gpt-5.4", "nope", "Claude-Sonnet-4.5-20250929"]))
    if draw(st.booleans()):
        ev["reported_cost_usd"] = draw(st.sampled_from([0.25, -1, True, "x"]))
    return ev


def logged(meter: NodeMeter, ev: dict) -> dict:
    """The usage event as the decider logs it (the Charge fields added)."""
    charge = meter.measure(ev, PricingCatalog.build(), {}, "codex")
    return {**ev, **charge.fields(meter.cost_usd + (charge.cost_usd or 0))}


@settings(max_examples=200, deadline=None)
@given(st.lists(usage_events(), min_size=1, max_size=14), st.lists(st.integers(0, 3), min_size=14, max_size=14),
       st.booleans())
def test_fast_paths_equal_the_dataclass(events: list[dict], seq_steps: list[int], track: bool) -> None:
    slow = NodeMeter()
    fast: dict = {}
    seq = 0
    catalog = PricingCatalog.build()
    for ev, step in zip(events, seq_steps):
        seq += step  # 0: already counted
        charge, cost = measure_json(fast, ev, catalog, {}, "codex")
        assert (charge, cost) == (slow.measure(ev, catalog, {}, "codex"), slow.cost_usd)
        data = logged(slow, ev)
        before = copy.deepcopy(fast)
        new = folded(fast, data, seq, track_threads=track)
        assert fast == before  # never mutated in place
        applied = slow.apply(data, seq, track_threads=track)
        assert (new is not None) == applied
        if new is not None:
            assert orjson.dumps(new) == orjson.dumps(slow.to_json())
            fast = new


def test_a_meter_not_in_to_json_shape_takes_the_dataclass_path() -> None:
    ev = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15, "thread_id": "A",
          "delta_tokens": {"input_tokens": 10, "output_tokens": 5}, "estimated_cost_usd": 0.5}
    for odd in ({"cost_usd": 1, "seq": "2"}, {"tokens": {"input_tokens": 4}, "cost_usd": "1.5"},
                {"threads": {"A": [1, 0, 0, 0, 2, 0]}, "seq": 1, "tokens": None}):
        want = NodeMeter.from_json(odd)
        assert want.apply(ev, 9)
        assert orjson.dumps(folded(odd, ev, 9)) == orjson.dumps(want.to_json())
