"""router/eventline.py builds an event's line without its envelope dict: the same bytes as the
envelope through orjson, for any name, data, timestamp and seq (and after its caches fill)."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from codeswarm.protocol import iso_timestamp, make_event
from codeswarm.router.eventline import LineEncoder

JSON = st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text() |
                    st.floats(allow_nan=False, allow_infinity=False),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                    max_leaves=8)

ENCODER = LineEncoder()  # one for all examples: its timestamp and name caches are exercised too


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1) | st.sampled_from(["usage", "assistant_delta", 'we"ird\n', "é"]),
       st.dictionaries(st.text(), JSON, max_size=5),
       st.sampled_from([0.0, 1796312598.8549879, 1796312598.0000004, 1e9]) | st.floats(0, 4e9),
       st.integers(1, 2**53))
def test_the_line_is_the_envelope_through_orjson(name: str, data: dict, ts: float, seq: int) -> None:
    want = orjson.dumps(make_event(name, data, seq=seq, timestamp=iso_timestamp(ts))) + b"\n"
    assert ENCODER.line(name, data, ts, seq) == want
    assert ENCODER.line(name, data, ts, seq) == want  # from the caches


def test_many_names_keep_the_cache_bounded() -> None:
    enc = LineEncoder()
    for i in range(2000):
        assert enc.line(f"n{i}", {}, 1.5, i + 1).startswith(b'{"protocol":')
    assert len(enc._names) <= 512
