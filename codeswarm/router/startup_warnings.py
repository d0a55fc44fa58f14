"""What the router found wrong when it started, kept for `codeswarm router status`.

Recovery problems (damaged log lines, an ignored snapshot, a damaged idempotency file) are emitted
as `router_warning` events, but a cron job or an operator who was not subscribed at that moment
would never see them. The router also writes them to `<state_dir>/startup-warnings.json` at every
start (an empty list when all was well), and `router status` prints one line per warning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from codeswarm.protocol import iso_timestamp
from codeswarm.router.store import atomic_write

FILE_NAME = "startup-warnings.json"


def write(state_dir: Path, warnings: list[dict[str, Any]], started_at: float) -> None:
    """Replace the file with this start's warnings (each a router_warning's data)."""
    atomic_write(state_dir / FILE_NAME, orjson.dumps({"started_at": iso_timestamp(started_at), "warnings": warnings}))


def read(state_dir: Path) -> tuple[str | None, list[str]]:
    """(when the router last started, one message per warning); a damaged file is itself a warning."""
    path = state_dir / FILE_NAME
    try:
        raw = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None, []
    except (OSError, orjson.JSONDecodeError) as exc:
        return None, [f"{path.name} is unreadable ({exc}): the router's start-up warnings are unknown"]
    if not isinstance(raw, dict) or not isinstance(raw.get("warnings"), list):
        return None, [f"{path.name} is not a warnings file: the router's start-up warnings are unknown"]
    started = raw.get("started_at") if isinstance(raw.get("started_at"), str) else None
    out = []
    for w in raw["warnings"]:
        if isinstance(w, dict) and isinstance(w.get("message"), str):
            code = w.get("error_code")
            out.append(f"{w['message']}" + (f" [{code}]" if isinstance(code, str) else ""))
        else:
            out.append(f"(a warning this version cannot read: {orjson.dumps(w).decode()[:200]})")
    return started, out
