"""The worker's params (swarm.json, overridden by CODESWARM_PARAMS): a damaged source is reported as a
worker_error instead of silently running the node with default params (issue 11, silent failures)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from codeswarm.worker.context import load_context


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("CODESWARM_PARAMS", "CODESWARM_WORKER_MODE", "CODESWARM_APPROVAL_POLICY", "CODESWARM_SANDBOX_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CODESWARM_JOB_ID", "local-1")
    monkeypatch.setenv("CODESWARM_NODE_ID", "0")
    monkeypatch.setenv("CODESWARM_SWARM_ROOT", str(tmp_path))
    return tmp_path


def test_both_sources_intact(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (env / "swarm.json").write_bytes(orjson.dumps({"params": {"worker_mode": "codex", "model": "m"}}))
    monkeypatch.setenv("CODESWARM_PARAMS", '{"model": "n"}')
    ctx = load_context()
    assert ctx.params == {"worker_mode": "codex", "model": "n"} and ctx.problems == []


def test_a_damaged_swarm_json_is_reported(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (env / "swarm.json").write_bytes(b'{"params": {"worker_mode": "cod')
    monkeypatch.setenv("CODESWARM_PARAMS", '{"model": "n"}')
    ctx = load_context()
    assert ctx.params == {"model": "n"}
    assert len(ctx.problems) == 1 and "swarm.json" in ctx.problems[0]


def test_damaged_env_params_are_reported(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (env / "swarm.json").write_bytes(orjson.dumps({"params": {"worker_mode": "codex"}}))
    for bad in ("{not json", "[1, 2]"):
        monkeypatch.setenv("CODESWARM_PARAMS", bad)
        ctx = load_context()
        assert ctx.params == {"worker_mode": "codex"}
        assert len(ctx.problems) == 1 and "CODESWARM_PARAMS" in ctx.problems[0]


def test_no_source_at_all_is_reported(env: Path) -> None:
    ctx = load_context()
    assert ctx.params == {} and len(ctx.problems) == 1 and "default params" in ctx.problems[0]
