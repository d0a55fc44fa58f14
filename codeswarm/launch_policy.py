"""Who may set what at launch, and how a TCP client proves who it is (issue 12, finding 1).

Pure: data in, data or InvalidParam out. The router's launch handler calls `client_params` on the
`provider_params` of every `swarm_launch`; the TCP listener calls `tcp_token_ok` on the first line
of a connection when `router.tcp.token` is set.

The rule: a preset's `defaults` are the operator's choices and are trusted; a protocol client
(CLI, web page, upstream client over TCP) may only fill in the fields the preset offers in its
`launch_fields`, with values of the field's type (and one of its options for a `select`). Anything
else - an executable (`codex_path`, `claude_cli_path`), a path (`codex_home`, `claude_config_dir`),
config or env (`codex_config`, `model_providers`, `claude_env_profile`), the runtime (`worker_mode`),
the approval or sandbox policy - is refused unless the preset lists it as a field.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from codeswarm.errors import InvalidParam

FIELD_TYPES = ("text", "number", "boolean", "select")
# Keys a client never sets through provider_params: the router owns them (`_launch_hard_timeout_seconds`)
# or the payload has its own field for them (`alias`, `auto_route`).
ROUTER_OWNED = frozenset({"swarm_alias", "auto_route"})


def field_problems(fields: Sequence[Any]) -> str | None:
    """The first problem of a launch_fields array (config load), or None."""
    seen: set[str] = set()
    for i, f in enumerate(fields):
        if not isinstance(f, dict):
            return f"launch_fields[{i}] must be an object"
        key = f.get("key")
        if not isinstance(key, str) or not key:
            return f"launch_fields[{i}].key must be a non-empty string"
        if key.startswith("_") or key in ROUTER_OWNED:
            return f"launch_fields[{i}].key {key!r} is set by the router, not by a form field"
        if key in seen:
            return f"launch_fields[{i}]: duplicate key {key!r}"
        seen.add(key)
        kind = f.get("type", "text")
        if kind not in FIELD_TYPES:
            return f"launch_fields[{i}].type must be one of {', '.join(FIELD_TYPES)}"
        options = f.get("options")
        if kind == "select":
            if not isinstance(options, list) or not options:
                return f"launch_fields[{i}] ({key}): a select needs a non-empty 'options' array"
            for j, o in enumerate(options):
                if not isinstance(o, dict) or "value" not in o or isinstance(o["value"], (dict, list)):
                    return f"launch_fields[{i}].options[{j}] must be an object with a scalar 'value'"
    return None


def client_params(preset_id: str, fields: Sequence[Mapping[str, Any]], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The provider_params a client may set for this preset; InvalidParam(key, problem) otherwise.

    None values are dropped (they mean "keep the preset's default", PROTOCOL.md 4.1).
    """
    by_key = {f["key"]: f for f in fields if isinstance(f, Mapping) and isinstance(f.get("key"), str)}
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        field = by_key.get(key)
        if field is None or key.startswith("_") or key in ROUTER_OWNED:
            offered = ", ".join(sorted(by_key)) or "none"
            raise InvalidParam(key, f"not settable by clients of preset {preset_id!r} (its launch_fields offer: "
                                  f"{offered}); set it in the preset's defaults instead")
        problem = _value_problem(field, value)
        if problem:
            raise InvalidParam(key, problem)
        out[key] = value
    return out


def _value_problem(field: Mapping[str, Any], value: Any) -> str | None:
    kind = field.get("type", "text")
    if kind == "boolean":
        return None if isinstance(value, bool) else "must be true or false"
    if kind == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else "must be a number"
    if kind == "select":
        allowed = [o.get("value") for o in field.get("options") or [] if isinstance(o, Mapping)]
        if any(value == a and type(value) is type(a) for a in allowed):
            return None
        return "must be one of " + ", ".join(map(str, allowed))
    if not isinstance(value, str):
        return "must be a string"
    if "\0" in value or "\n" in value or "\r" in value:
        return "must not contain NUL or line breaks"
    return None


def tcp_token_ok(envelope: Any, token: str | None) -> bool:
    """True when no token is configured or the envelope carries it as `auth_token` (constant time)."""
    if token is None:
        return True
    given = envelope.get("auth_token") if isinstance(envelope, dict) else None
    if not isinstance(given, str):
        return False
    import hmac  # here, not at the top: hmac loads libcrypto, ~4 ms of every CLI call that never checks a token

    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), token.encode())
