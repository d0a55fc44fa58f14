"""The outbox seq check reports and never drops (issue 12 #5)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from codeswarm.router.outbox_seq import seq_anomaly


def test_kinds() -> None:
    assert seq_anomaly(4, 5) is None
    assert seq_anomaly(0, 1) is None and seq_anomaly(0, 900) is None
    assert seq_anomaly(5, 5)[0] == "outbox_seq_duplicate"
    assert seq_anomaly(9, 3)[0] == "outbox_seq_backwards"
    assert seq_anomaly(5, 9)[0] == "outbox_seq_gap" and "3 missing" in seq_anomaly(5, 9)[1]
    code, msg = seq_anomaly(5, 2**63 - 1)
    assert code == "outbox_seq_jump" and str(2**63 - 1) in msg
    assert seq_anomaly(2**63 - 1, 6)[0] == "outbox_seq_backwards"


@given(st.integers(min_value=0, max_value=2**64), st.integers(min_value=-(2**64), max_value=2**64))
def test_only_the_next_seq_is_silent(last: int, seq: int) -> None:
    result = seq_anomaly(last, seq)
    assert (result is None) == (seq == last + 1 or (last == 0 and seq > 0))
