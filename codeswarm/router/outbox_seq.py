"""Outbox seq plausibility (issue 12 #5): reported, never used to drop a line.

A worker numbers its outbox lines 1, 2, 3, ... (PROTOCOL.md 8.4). The router used to skip every
line whose seq was not above the highest seen, so one forged line with seq 2^63-1 made a live
worker's later lines vanish, and a duplicated seq swallowed a real `turn_accepted`. Now the read
position (byte offset, durable through the events' `outbox_offset`) says what was consumed; the
seq is only checked: a duplicate, a step back or a gap is reported once (where it happens) and
the line is processed like any other.
"""

from __future__ import annotations

# A worker that restarts continues from the last seq in its file: a forward jump this large
# cannot come from lines the router failed to read (a line is at least ~100 bytes).
IMPLAUSIBLE_JUMP = 1 << 32


def seq_anomaly(last: int, seq: int) -> tuple[str, str] | None:
    """(error_code, message) when `seq` does not follow `last` (0: nothing read yet), else None."""
    if seq == last + 1:
        return None
    if seq == last:
        return "outbox_seq_duplicate", f"outbox seq {seq} repeats the previous line's (duplicate); line kept"
    if seq < last:
        return "outbox_seq_backwards", f"outbox seq went back from {last} to {seq}; line kept"
    if last == 0:
        return None  # first line read since the router started: it may resume mid-file
    if seq - last > IMPLAUSIBLE_JUMP:
        return "outbox_seq_jump", f"outbox seq jumped from {last} to {seq} (implausible); line kept"
    return "outbox_seq_gap", f"outbox seq jumped from {last} to {seq} ({seq - last - 1} missing); line kept"
