"""The worker's configuration: environment set by the provider plus <swarm_root>/swarm.json.

Imported by every worker before it knows its runtime, so it imports nothing heavy (no trio)."""

from __future__ import annotations

import os
from pathlib import Path

from codeswarm import codec
from codeswarm.mailbox import workspace_path
from codeswarm.worker.runtimes.base import WorkerContext

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the lean worker's start: worker/start.py)
if TYPE_CHECKING:
    from typing import Any

_ENV_OVERRIDES = (("worker_mode", "CODESWARM_WORKER_MODE"), ("approval_policy", "CODESWARM_APPROVAL_POLICY"),
                  ("sandbox_mode", "CODESWARM_SANDBOX_MODE"), ("mailbox_watch", "CODESWARM_MAILBOX_WATCH"))


def load_context() -> WorkerContext:
    env = os.environ
    try:
        job_id = env["CODESWARM_JOB_ID"]
        node_id = int(env["CODESWARM_NODE_ID"])
        swarm_root = Path(env["CODESWARM_SWARM_ROOT"])
    except (KeyError, ValueError) as exc:
        raise SystemExit(f"codeswarm worker: missing or bad environment ({exc}); it is started by the router")
    # Params come from swarm.json, overridden by CODESWARM_PARAMS (the router writes both). A damaged
    # source must not silently turn a codex node into the default mock: say which one and go on.
    params: dict[str, Any] = {}
    problems: list[str] = []
    from_env = env.get("CODESWARM_PARAMS")
    try:
        params.update(codec.loads((swarm_root / "swarm.json").read_bytes()).get("params") or {})
    except FileNotFoundError:
        if not from_env:
            problems.append(f"{swarm_root / 'swarm.json'} is missing and CODESWARM_PARAMS is not set: default params")
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        problems.append(f"cannot use the params of {swarm_root / 'swarm.json'}: {exc}")
    if from_env:
        try:
            overrides = codec.loads(from_env)
            if not isinstance(overrides, dict):
                raise ValueError("not a JSON object")
            params.update(overrides)
        except ValueError as exc:
            problems.append(f"cannot use CODESWARM_PARAMS: {exc}")
    for key, var in _ENV_OVERRIDES:
        if env.get(var):
            params[key] = env[var]
    return WorkerContext(job_id=job_id, node_id=node_id, swarm_root=swarm_root,
                         workspace=workspace_path(swarm_root, node_id), params=params, problems=problems)
