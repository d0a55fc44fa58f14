"""The CODESWARM_* environment every worker of a swarm gets (launch and node restarts alike)."""

from __future__ import annotations

from typing import Any


def worker_env(params: dict[str, Any], preset_env: dict[str, str]) -> dict[str, str]:
    import orjson

    env = dict(preset_env)
    env["CODESWARM_WORKER_MODE"] = str(params.get("worker_mode") or "codex")
    env["CODESWARM_APPROVAL_POLICY"] = str(params.get("approval_policy") or "never")
    if params.get("sandbox_mode"):
        env["CODESWARM_SANDBOX_MODE"] = str(params["sandbox_mode"])
    env["CODESWARM_PARAMS"] = orjson.dumps({k: v for k, v in params.items() if not k.startswith("_")}).decode()
    return env
