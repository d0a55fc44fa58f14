"""The `codeswarm.router.v1` wire contract: envelopes, names, payload validation.

Pure: no sockets, files or clocks. Timestamps are passed in. Shared by the router, the CLI
client and the web bridge, so it must import nothing heavier than orjson.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

# Rejection is re-exported: the router modules import the refusal along with the wire contract.
from codeswarm.errors import Rejection as Rejection, SelectorError

PROTOCOL = "codeswarm.router.v1"
MAX_LINE_BYTES = 1 << 20
EXTENSIONS = ["seq", "subscribe", "idempotency_key", "node_selector", "swarm_state", "projects", "node_liveness"]

PROJECT_COMMANDS = frozenset({"project_create", "project_plan", "project_start", "project_resume",
                              "project_resume_preview", "project_list", "project_status", "project_cancel",
                              "project_budget"})

COMMANDS = frozenset(
    {
        "swarm_launch",
        "inject",
        "enqueue_inject",
        "approve_execution",
        "swarm_terminate",
        "providers_list",
        "swarm_list",
        "swarm_status",
        "queue_list",
        "queue_cancel",
        "approvals_list",
        "swarm_budget",
        "subscribe",
        "unsubscribe",
        "ping",
    }
) | PROJECT_COMMANDS

# Broadcast events that change lifecycle state: fsync'd before anyone sees them.
LIFECYCLE_EVENTS = frozenset(
    {
        "swarm_launched",
        "swarm_status",
        "swarm_terminated",
        "swarm_removed",
        "inject_ack",
        "inject_delivered",
        "inject_failed",
        "turn_complete",
        "node_status",
        "node_restarted",
        "exec_approval_required",
        "exec_approval_resolved",
        "command_rejected",
        "inter_swarm_enqueued",
        "inter_swarm_dispatched",
        "inter_swarm_dropped",
        "workspace_archive_ready",
        "workspace_archive_failed",
        "budget_warning",
        "budget_exceeded",
        "budget_updated",
    }
) | frozenset({"project_created", "project_started", "project_task_ready", "project_task_assigned",
               "project_task_started", "project_task_verified", "project_task_failed", "project_task_completed",
               "project_task_blocked", "project_task_reset", "project_integration_started",
               "project_integration_conflict", "project_integrated", "project_completed", "project_failed",
               "project_cancelled", "project_resumed", "project_plan_started", "project_plan_failed",
               "projects_updated"})

SWARM_STATES = ("pending", "running", "terminating", "terminated")
LEGACY_STATUS = {"pending": "running", "running": "running", "terminating": "terminating", "terminated": "terminated"}

# Fields shortened first when an outgoing line would exceed MAX_LINE_BYTES.
_TRUNCATABLE = ("stdout", "stderr", "content", "raw", "prompt", "message", "aggregated_output")


@dataclass(frozen=True)
class Command:
    command: str
    request_id: str
    payload: dict[str, Any] = field(default_factory=dict)


_DAY_CACHE: dict[int, str] = {}


def _civil_date(days: int) -> str:
    """'YYYY-MM-DD' of a day count since 1970-01-01 (H. Hinnant's civil_from_days): arithmetic
    instead of time.gmtime, so this pure module imports no clock module."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    return "%04d-%02d-%02d" % (year, month, day)


_SECOND_CACHE: list[Any] = [None, ""]  # [whole epoch second, its "YYYY-MM-DDTHH:MM:SS"]: events come in runs


def iso_timestamp(epoch: float) -> str:
    """ISO-8601 in UTC with microseconds; hand-rolled because it runs once per event (datetime costs ~2 us)."""
    whole = int(epoch // 1)
    cache = _SECOND_CACHE
    if cache[0] != whole:
        days, secs = divmod(whole, 86400)
        date = _DAY_CACHE.get(days)
        if date is None:
            if len(_DAY_CACHE) > 64:
                _DAY_CACHE.clear()
            date = _DAY_CACHE[days] = _civil_date(days)
        hours, rest = divmod(secs, 3600)
        cache[1] = "%sT%02d:%02d:%02d" % (date, hours, rest // 60, rest % 60)
        cache[0] = whole
    return "%s.%06d+00:00" % (cache[1], int((epoch % 1) * 1_000_000))


def make_event(
    event: str, data: dict[str, Any], *, seq: int, timestamp: str, directed: bool = False
) -> dict[str, Any]:
    env: dict[str, Any] = {
        "protocol": PROTOCOL,
        "type": "event",
        "timestamp": timestamp,
        "event": event,
        "seq": seq,
        "data": data,
    }
    if directed:
        env["directed"] = True
    return env


def make_command(command: str, payload: dict[str, Any], request_id: str) -> dict[str, Any]:
    return {
        "protocol": PROTOCOL,
        "type": "command",
        "command": command,
        "request_id": request_id,
        "payload": payload,
    }


def encode_line(envelope: dict[str, Any]) -> bytes:
    """Serialize one envelope as a JSON line, shortening long strings to stay under the limit."""
    line = orjson.dumps(envelope)
    if len(line) < MAX_LINE_BYTES:
        return line + b"\n"
    data = dict(envelope.get("data") or {})
    budget = MAX_LINE_BYTES // 2
    for key in _TRUNCATABLE:
        value = data.get(key)
        if isinstance(value, str) and len(value) > budget // 4:
            data[key] = value[: budget // 4]
            data["truncated"] = True
    if "raw" in data and len(orjson.dumps(data["raw"])) > budget // 4:
        data["raw"] = None
        data["truncated"] = True
    shortened = dict(envelope, data=data)
    line = orjson.dumps(shortened)
    if len(line) >= MAX_LINE_BYTES:  # pathological: many large fields; keep the envelope only
        shortened["data"] = {k: v for k, v in data.items() if not isinstance(v, (str, list, dict))}
        shortened["data"]["truncated"] = True
        line = orjson.dumps(shortened)
    return line + b"\n"


def _is_request_id(value: Any) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= 128


def parse_command_line(line: bytes) -> Command:
    """Parse one received line into a Command, or raise Rejection with the right code."""
    if len(line) > MAX_LINE_BYTES:
        raise Rejection("line_too_long", "line exceeds 1 MiB limit")
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise Rejection("invalid_json", "line is not a JSON object") from None
    if not isinstance(obj, dict):
        raise Rejection("invalid_json", "line is not a JSON object")
    return parse_command(obj)


def parse_command(obj: dict[str, Any]) -> Command:
    request_id = obj.get("request_id")
    rid = request_id if _is_request_id(request_id) else None
    protocol = obj.get("protocol")
    if protocol is None:
        raise Rejection("invalid_envelope", "missing or invalid envelope field: protocol", request_id=rid)
    if protocol != PROTOCOL:
        raise Rejection("unsupported_protocol", f"unsupported protocol: {protocol}", request_id=rid)
    if obj.get("type", "command") != "command":
        raise Rejection("invalid_envelope", "missing or invalid envelope field: type", request_id=rid)
    command = obj.get("command")
    if not isinstance(command, str) or not command:
        raise Rejection("invalid_envelope", "missing or invalid envelope field: command", request_id=rid)
    if rid is None:
        raise Rejection(
            "invalid_envelope", "missing or invalid envelope field: request_id", command=command
        )
    payload = obj.get("payload")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise Rejection(
            "invalid_envelope", "missing or invalid envelope field: payload", request_id=rid, command=command
        )
    if command not in COMMANDS:
        raise Rejection("unknown_command", f"unknown command: {command}", request_id=rid, command=command)
    key = payload.get("idempotency_key")
    if key is not None and not _is_request_id(key):
        raise Rejection(
            "invalid_payload", "idempotency_key: must be a string of 1-128 characters",
            request_id=rid, command=command,
        )
    return Command(command=command, request_id=rid, payload=payload)


# ---------------------------------------------------------------- payload checks


def _bad(cmd: Command, field_name: str, problem: str) -> Rejection:
    return Rejection(
        "invalid_payload", f"{field_name}: {problem}", request_id=cmd.request_id, command=cmd.command
    )


def require_str(cmd: Command, name: str, *, optional: bool = False, allow_empty: bool = False) -> str | None:
    value = cmd.payload.get(name)
    if value is None:
        if optional:
            return None
        raise _bad(cmd, name, "required")
    if not isinstance(value, str):
        raise _bad(cmd, name, "must be a string")
    if not value and not allow_empty:
        raise _bad(cmd, name, "must not be empty")
    return value


def require_int(cmd: Command, name: str, *, default: int | None = None, minimum: int = 0) -> int:
    value = cmd.payload.get(name, default)
    if value is None:
        raise _bad(cmd, name, "required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(cmd, name, "must be an integer")
    if value < minimum:
        raise _bad(cmd, name, f"must be >= {minimum}")
    return value


def require_bool(cmd: Command, name: str, *, default: bool | None = None) -> bool:
    value = cmd.payload.get(name, default)
    if not isinstance(value, bool):
        raise _bad(cmd, name, "must be a boolean" if name in cmd.payload else "required")
    return value


def require_obj(cmd: Command, name: str) -> dict[str, Any]:
    value = cmd.payload.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(cmd, name, "must be an object")
    return value


def parse_node_selector(value: Any, node_count: int) -> list[int]:
    """Resolve `all`, an int, a list of ints or a selector string ("0,2-4") to sorted node ids.

    Raises SelectorError with code `invalid_payload` for a malformed selector and `invalid_nodes`
    for an index out of range. Work is linear in the input and the
    node count whatever the input (issue 12 #3: "0-99999" x 200 took 1 s and 806 MB): every range is
    checked against the node count before anything is expanded, and overlapping ranges are merged,
    so the ids produced never number more than the nodes.
    """
    if value is None or value == "all":
        return list(range(node_count))
    if isinstance(value, bool):
        raise SelectorError("invalid_payload", "nodes: must be 'all', an integer, a list or a selector string")
    if isinstance(value, int):
        spans = [(value, value)]
    elif isinstance(value, list):
        if not value:
            raise SelectorError("invalid_payload", "nodes: empty list")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise SelectorError("invalid_payload", "nodes: list items must be integers")
        spans = [(v, v) for v in value]
    elif isinstance(value, str):
        spans = _parse_selector_string(value)
    else:
        raise SelectorError("invalid_payload", "nodes: must be 'all', an integer, a list or a selector string")
    for a, b in spans:  # before any expansion
        for i in (a, b):
            if not 0 <= i < node_count:
                raise SelectorError("invalid_nodes", f"node index out of range: {i}")
    return _merge_spans(spans)


def _merge_spans(spans: list[tuple[int, int]]) -> list[int]:
    """Sorted, de-duplicated ids of in-range inclusive spans: O(items log items + node_count)."""
    out: list[int] = []
    last = -1
    for a, b in sorted(spans):
        if b <= last:
            continue
        out.extend(range(max(a, last + 1), b + 1))
        last = b
    return out


def _parse_selector_string(text: str) -> list[tuple[int, int]]:
    """The (start, end) spans of a selector string, syntax-checked; nothing is expanded here."""
    compact = "".join(text.split())
    if compact.startswith("[") and compact.endswith("]"):
        compact = compact[1:-1]
    if compact == "all":
        raise SelectorError("invalid_payload", "nodes: 'all' cannot be combined")
    if not compact:
        raise SelectorError("invalid_payload", "nodes: empty selector")
    spans: list[tuple[int, int]] = []
    for item in compact.split(","):
        lo, sep, hi = item.partition("-")
        if not _digits(lo) or (sep and not _digits(hi)):
            raise SelectorError("invalid_payload", f"nodes: bad selector item {item[:40]!r}")
        if len(lo) > 9 or len(hi) > 9:  # far beyond any swarm; also keeps int() cheap
            raise SelectorError("invalid_nodes", f"node index out of range: {item[:20]}")
        a = int(lo)
        b = int(hi) if sep else a
        if a > b:
            raise SelectorError("invalid_payload", f"nodes: bad range {item[:40]!r} (start > end)")
        if b - a > 100_000:
            raise SelectorError("invalid_nodes", f"node index out of range: {b}")
        spans.append((a, b))
    return spans


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()  # "²".isdigit() is True, int("²") fails


def resolve_nodes(cmd: Command, value: Any, node_count: int) -> list[int]:
    try:
        return parse_node_selector(value, node_count)
    except SelectorError as exc:
        raise Rejection(exc.code, exc.message, request_id=cmd.request_id, command=cmd.command) from None
