"""The task graph in a planner's final answer (shell side: uses json)."""

from __future__ import annotations

import re
from typing import Any

from codeswarm.core.project_graph import GraphError


def extract_plan(answer: str) -> Any:
    """The task graph in a planner's final answer: the last fenced ```json block (or any fence) that parses."""
    import json

    blocks = re.findall(r"```(?:json|JSON)?[ \t]*\n(.*?)```", answer, re.DOTALL)
    if not blocks:
        raise GraphError("planner answer: no fenced JSON block (```json ... ```)")
    last_error = ""
    for block in reversed(blocks):
        try:
            return json.loads(block)
        except ValueError as exc:
            last_error = str(exc)
    raise GraphError(f"planner answer: the fenced block is not valid JSON ({last_error})")
