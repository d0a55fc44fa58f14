"""`codeswarm doctor`: runtime binaries and versions, Slurm commands, directories; exit 0/1; no secrets."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from codeswarm.commands.doctor import command


def fake_binary(tmp: Path, name: str, version: str) -> str:
    path = tmp / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!/bin/sh\necho '{version}'\n")
    path.chmod(0o755)
    return str(path)


def write_config(tmp: Path, presets: list[dict[str, Any]], **cluster: Any) -> str:
    cfg = {"cluster": {"local": {"workspace_root": str(tmp / "runs")}, **cluster}, "launch_providers": presets}
    path = tmp / "config.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def doctor(tmp: Path, config: str, *args: str) -> tuple[int, dict[str, Any], str]:
    runner = CliRunner()
    state = tmp / "state"
    as_json = runner.invoke(command, ["--config", config, "--state-dir", str(state), "--json", *args])
    text = runner.invoke(command, ["--config", config, "--state-dir", str(state), *args])
    assert as_json.exit_code == text.exit_code, text.output
    return as_json.exit_code, json.loads(as_json.output), text.output


def by_name(report: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    return [c for c in report["checks"] if c["name"].startswith(prefix)]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("CODEX_BIN", "CLAUDE_BIN", "OPENAI_API_KEY", "CODEX_API_KEY", "ANTHROPIC_API_KEY",
                "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "no-codex-home"))
    monkeypatch.setenv("CODESWARM_TOOLS_DIR", str(tmp_path / "no-tools"))  # ignore the repo's own install


def test_healthy_codex_preset(tmp_path: Path) -> None:
    codex = fake_binary(tmp_path, "codex", "codex-cli 0.169.0")
    config = write_config(tmp_path, [{"id": "c", "backend": "local", "defaults": {
        "worker_mode": "codex", "codex_path": codex, "sandbox_mode": "danger-full-access",
        "model_provider": "fake", "model_providers": {"fake": {"base_url": "http://127.0.0.1:9/v1",
                                                               "env_key": "FAKE_KEY"}}},
        "env": {"FAKE_KEY": "sk-secret-value-123"}}])
    code, report, text = doctor(tmp_path, config)
    assert code == 0 and report["ok"] is True, text
    (binary,) = by_name(report, "codex [c]")
    assert binary["status"] == "ok" and "0.169.0" in binary["detail"] and codex in binary["detail"]
    assert by_name(report, "codex credentials")[0]["status"] == "ok"
    assert by_name(report, "state dir")[0]["status"] == "ok"
    assert "sk-secret-value-123" not in text and "sk-secret-value-123" not in json.dumps(report)
    assert text.strip().endswith("0 problem(s), 0 warning(s)")


def test_missing_runtime_binary_fails_with_a_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    config = write_config(tmp_path, [
        {"id": "c", "backend": "local", "defaults": {"worker_mode": "codex"}},
        {"id": "k", "backend": "local", "defaults": {"worker_mode": "claude"}},
        {"id": "m", "backend": "local", "defaults": {"worker_mode": "mock"}}])
    code, report, text = doctor(tmp_path, config)
    assert code == 1 and report["ok"] is False
    (codex,) = by_name(report, "codex [c]")
    assert codex["status"] == "fail" and "install-codex.sh" in codex["fix"]
    (claude,) = by_name(report, "claude [k]")
    assert claude["status"] == "fail" and "install-claude.sh" in claude["fix"]
    assert "FAIL  codex [c]" in text and "fix: " in text and "2 problem(s)" in text


def test_version_drift_node_shim_and_missing_credentials_warn(tmp_path: Path) -> None:
    codex = fake_binary(tmp_path, "codex", "codex-cli 0.170.0")
    shim = tmp_path / "bin" / "codex.js"
    shim.write_text("#!/usr/bin/env node\nconsole.log('codex-cli 0.169.0')\n")
    shim.chmod(0o755)
    config = write_config(tmp_path, [
        {"id": "drift", "backend": "local", "defaults": {"worker_mode": "codex", "codex_path": codex}},
        {"id": "shim", "backend": "local", "defaults": {"worker_mode": "codex", "codex_path": str(shim)}}])
    code, report, _ = doctor(tmp_path, config)
    assert code == 0  # warnings only
    (drift,) = by_name(report, "codex [drift]")
    assert drift["status"] == "warn" and "0.170.0" in drift["detail"] and "0.169.0" in drift["fix"]
    assert any(c["status"] == "warn" and "Node.js launcher" in c["detail"] for c in by_name(report, "codex [shim]"))
    creds = by_name(report, "codex credentials [drift]")[0]
    assert creds["status"] == "warn" and "OPENAI_API_KEY" in creds["fix"]


def test_directories(tmp_path: Path) -> None:
    (tmp_path / "runs").write_text("not a dir")
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    config = write_config(tmp_path, [{"id": "m", "backend": "local", "defaults": {"worker_mode": "mock"}}])
    code, report, text = doctor(tmp_path, config)
    assert code == 1
    assert by_name(report, "local workspace root")[0]["status"] == "fail"
    st = by_name(report, "state dir")[0]
    assert st["status"] == "warn" and st["fix"] == f"chmod 700 {state}"


def test_slurm_commands_checked_when_a_slurm_preset_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    slurm = {"profiles": {"onsite": {"workspace_root": str(tmp_path / "shared"), "cluster_subdir": "cs",
                                     "partition": "p", "time_limit": "00:10:00"},
                          "remote": {"login_host": "login.example", "workspace_root": "/shared",
                                     "cluster_subdir": "cs", "partition": "p", "time_limit": "00:10:00"}}}
    config = write_config(tmp_path, [
        {"id": "s1", "backend": "slurm", "cluster_profile": "onsite", "defaults": {"worker_mode": "mock"}},
        {"id": "s2", "backend": "slurm", "cluster_profile": "remote", "defaults": {"worker_mode": "mock"}}],
        slurm=slurm)
    code, report, _ = doctor(tmp_path, config)
    assert code == 1
    onsite = by_name(report, "slurm [onsite]")[0]
    assert onsite["status"] == "fail" and "sbatch" in onsite["detail"]
    remote = by_name(report, "slurm [remote]")[0]
    assert remote["status"] == "fail" and "ssh" in remote["detail"]  # no ssh on this PATH either
    assert by_name(report, "shared dir [onsite]")[0]["status"] == "ok"
