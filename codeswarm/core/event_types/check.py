"""`check_event(name, data)`: what is wrong with one event against its declared shape (pure).

Types are JSON's: `float` takes any number (not a bool), `int` an integer (not a bool), `list[X]`
a list (or tuple, which serializes the same), `dict[str, X]` an object, a TypedDict a closed
object (unknown keys are problems), `Any` anything. Used by tests only: it is not fast.
"""

import types
from functools import cache
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints, is_typeddict

from codeswarm.core.event_types.catalog import EVENTS

# May appear on any event: the router sets it when it shortened strings to keep a line under
# 1 MiB (PROTOCOL.md 2.3).
GLOBAL_OPTIONAL = frozenset({"truncated"})


def check_event(name: Any, data: Any) -> list[str]:
    """Problems of one (name, data) pair; empty when it matches the registry."""
    et = EVENTS.get(name) if isinstance(name, str) else None
    if et is None:
        return [f"unknown event {name!r}"]
    if not isinstance(data, dict):
        return [f"{name}: data is {type(data).__name__}, not an object"]
    return _check_object(name, data, et.shape, GLOBAL_OPTIONAL)


@cache
def _spec(shape: type) -> tuple[dict[str, Any], frozenset[str], frozenset[str]]:
    """(key -> type, required keys, all keys) of a TypedDict."""
    hints = get_type_hints(shape)
    required = frozenset(getattr(shape, "__required_keys__", frozenset()))
    return hints, required, frozenset(hints)


def _check_object(path: str, data: dict[str, Any], shape: type, extra_ok: frozenset[str] = frozenset()) -> list[str]:
    hints, required, allowed = _spec(shape)
    problems = [f"{path}: missing key {k!r}" for k in sorted(required - data.keys())]
    problems += [f"{path}: unknown key {k!r}" for k in sorted(data.keys() - allowed - extra_ok)]
    for key, value in data.items():
        if key in hints:
            problems += _check_value(f"{path}.{key}", value, hints[key])
    return problems


def _check_value(path: str, value: Any, tp: Any) -> list[str]:
    if tp is Any:
        return []
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        branches = [_check_value(path, value, arm) for arm in get_args(tp)]
        if any(not b for b in branches):
            return []
        # the problems inside the arm of the value's own kind (a list, an object), if one is
        deep = [b for b in branches if not (len(b) == 1 and b[0].startswith(f"{path}: expected"))]
        return deep[0] if deep else [f"{path}: expected {_name(tp)}, got {_got(value)}"]
    if origin is Literal:
        ok = any(value == v and type(value) is type(v) for v in get_args(tp))
        return [] if ok else [f"{path}: expected one of {list(get_args(tp))}, got {value!r:.80}"]
    if origin is list:
        if not isinstance(value, (list, tuple)):
            return [f"{path}: expected {_name(tp)}, got {_got(value)}"]
        (item,) = get_args(tp) or (Any,)
        return [p for i, v in enumerate(value) for p in _check_value(f"{path}[{i}]", v, item)]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path}: expected {_name(tp)}, got {_got(value)}"]
        _k, item = get_args(tp) or (str, Any)
        out = [f"{path}: key {k!r} is not a string" for k in value if not isinstance(k, str)]
        return out + [p for k, v in value.items() for p in _check_value(f"{path}[{k!r}]", v, item)]
    if is_typeddict(tp):
        if not isinstance(value, dict):
            return [f"{path}: expected an object ({tp.__name__}), got {_got(value)}"]
        return _check_object(path, value, tp)
    if tp is None or tp is type(None):
        return [] if value is None else [f"{path}: expected null, got {_got(value)}"]
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif tp is str:
        ok = isinstance(value, str)
    else:
        raise TypeError(f"{path}: the registry uses a type the checker does not know: {tp!r}")
    return [] if ok else [f"{path}: expected {_name(tp)}, got {_got(value)}"]


def _got(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _name(tp: Any) -> str:
    if tp is type(None) or tp is None:
        return "null"
    if isinstance(tp, type) and get_origin(tp) is None:
        return tp.__name__
    return str(tp).replace("typing.", "")
