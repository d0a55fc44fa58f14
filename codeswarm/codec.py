"""The JSON codec of the mailbox files and the worker's state: orjson, except in the lean worker.

Importing orjson also imports datetime, uuid, platform, json and dataclasses: ~3.8 MB resident in
every idle worker. The lean (mock) worker calls use_stdlib() before anything is encoded; its lines
are few and small. Everyone else gets orjson on first use. Call `codec.loads`/`codec.dumps`
through the module (the functions are swapped, not wrapped).
"""

from __future__ import annotations

import json

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the lean worker's start: worker/start.py)
if TYPE_CHECKING:
    from typing import Any, Callable

JSONDecodeError = json.JSONDecodeError  # orjson.JSONDecodeError is a subclass


def _std_dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def use_orjson() -> None:
    global loads, dumps
    import orjson

    loads, dumps = orjson.loads, orjson.dumps


def use_stdlib() -> None:
    global loads, dumps
    loads, dumps = json.loads, _std_dumps


def _first_loads(data: bytes | str) -> Any:
    use_orjson()
    return loads(data)


def _first_dumps(obj: Any) -> bytes:
    use_orjson()
    return dumps(obj)


loads: Callable[..., Any] = _first_loads  # orjson's after the first use, or json's after use_stdlib()
dumps: Callable[..., bytes] = _first_dumps
