"""The normalizer interface: one raw runtime message in, zero or more v1 events out.

Pure and per node: a normalizer instance keeps the little state its dialect needs (pending
assistant text, a model name). It returns (event_name, data) pairs WITHOUT the common runtime
fields (swarm_id, job_id, node_id, injection_id); the router adds those. Turn bookkeeping
(exactly one turn_started / turn_complete per injection, approval ids) belongs to the router core.

Bad input never raises: unknown shapes are dropped by design. An exception inside a normalizer is
therefore a bug in it; feed() turns it into an `agent_error` (error_code `normalizer_error`, the raw
message kept) so nothing disappears silently. Tests set `strict` so the bug raises and fails them.
"""

from __future__ import annotations

from typing import Any, Protocol

NormalizedEvent = tuple[str, dict[str, Any]]


class Normalizer(Protocol):
    runtime: str
    strict: bool  # re-raise a normalizer bug instead of reporting it (tests)

    def feed(self, payload: Any) -> list[NormalizedEvent]:
        """Translate one raw message (the outbox line's `payload`). Never raises unless strict."""
        ...


def normalizer_error(runtime: str, exc: Exception, payload: Any) -> NormalizedEvent:
    """The event that reports a bug of a normalizer instead of dropping the message it choked on."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f" at {tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}" if tb is not None else ""
    return ("agent_error", {
        "message": f"{runtime} normalizer failed on a message{where}: {type(exc).__name__}: {exc}",
        "error_code": "normalizer_error", "fatal": False, "raw": payload,
    })


def usage_event(source: str, total: dict[str, Any] | None, last: dict[str, Any] | None,
                context_window: Any = None, model_name: str | None = None,
                thread_id: str | None = None) -> NormalizedEvent:
    """Build a `usage` event from snake_case counter dicts (either may be None).

    The cache-write counters (parts of input_tokens, priced above it) appear only when the runtime
    reports them; `thread_id` names the agent thread the cumulative counters belong to (spend/meter.py).
    """
    keys = ("total_tokens", "input_tokens", "cached_input_tokens", "output_tokens", "reasoning_output_tokens")
    data: dict[str, Any] = {}
    for k in keys:
        data[k] = _int_or_none((total or {}).get(k))
        data["last_" + k] = _int_or_none((last or {}).get(k))
    for k in _OPTIONAL_COUNTERS:
        tot, lst = _int_or_none((total or {}).get(k)), _int_or_none((last or {}).get(k))
        if tot is not None or lst is not None:
            data[k], data["last_" + k] = tot, lst
    if thread_id:
        data["thread_id"] = thread_id
    data["model_context_window"] = _int_or_none(context_window)
    data["usage_source"] = source
    if model_name:
        data["model_name"] = model_name
    return ("usage", data)


_OPTIONAL_COUNTERS = ("cache_write_input_tokens", "cache_write_1h_input_tokens")


def _int_or_none(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None
