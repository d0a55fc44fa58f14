"""End to end through the real .pyz: a 2-node local swarm with worker_mode claude.

The real Claude Code CLI runs on every node against the fake Messages API of this test process
(loopback only); the preset's env points the CLI at it with a private HOME and config dir.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fake_anthropic import FakeAnthropic, offline_env, user_texts
from tests.conftest import Codeswarm, local_config

pytestmark = pytest.mark.claude
AGENTS_MARKER = "codeswarm-claude-e2e-instructions"


def claude_config(tmp: Path, claude_bin: str, fake: FakeAnthropic) -> dict[str, Any]:
    config = local_config(tmp)
    config["launch_providers"] = [{
        "id": "local-claude", "label": "Local (Claude)", "backend": "local",
        "defaults": {"worker_mode": "claude", "approval_policy": "never", "sandbox_mode": "workspace-write",
                     "claude_cli_path": claude_bin},
        "env": offline_env(tmp / "claude", fake),
    }]
    return config


def turn_of(events: list[dict[str, Any]], injection_id: str) -> list[dict[str, Any]]:
    return [e for e in events if e["data"].get("injection_id") == injection_id]


def test_two_node_claude_swarm(pyz: Path, tmp_path: Path, claude_bin: str, fake_anthropic: FakeAnthropic) -> None:
    cs = Codeswarm(pyz, tmp_path, claude_config(tmp_path, claude_bin, fake_anthropic))
    try:
        agents_md = tmp_path / "AGENTS.md"
        agents_md.write_text(f"# Instructions\n{AGENTS_MARKER}\n")
        launched = cs.json("launch", "--nodes", "2", "--agents-md", str(agents_md))
        sid, job = launched["swarm_id"], launched["job_id"]

        first = cs.json("inject", sid, "--prompt", "RUN: echo hi-from-swarm > e2e.txt; echo done",
                        "--wait", "--timeout", "120", timeout=180)
        assert [(n["node_id"], n["outcome"]) for n in first["nodes"]] == [(0, "completed"), (1, "completed")]
        events = cs.events("--swarm", sid)
        for node in first["nodes"]:
            turn = turn_of(events, node["injection_id"])
            names = [e["event"] for e in turn]
            assert names[:3] == ["inject_ack", "inject_delivered", "turn_started"], names
            assert names.count("turn_complete") == 1 and names.count("turn_started") == 1
            data = {e["event"]: e["data"] for e in turn}
            assert data["command_started"]["command"] == "echo hi-from-swarm > e2e.txt; echo done"
            assert data["command_completed"]["stdout"] == "done"
            assert "assistant_delta" in names
            assert data["assistant"] == {**data["assistant"], "content": "Tool said: done", "final_answer": True}
            assert data["usage"]["usage_source"] == "claude/result" and data["usage"]["output_tokens"] > 0
            assert data["turn_complete"].get("status", "completed") == "completed"
            workspace = tmp_path / "runs" / job / f"node_{node['node_id']:02d}"
            assert (workspace / "e2e.txt").read_text() == "hi-from-swarm\n"
        # AGENTS.md reached the model as part of the system prompt.
        assert all(AGENTS_MARKER in json.dumps(body.get("system")) for body in fake_anthropic.requests)

        # A second injection on node 0 continues that node's conversation (--resume).
        second = cs.json("inject", sid, "--prompt", "and now something else", "--nodes", "0",
                         "--wait", "--timeout", "120", timeout=180)
        assert [n["outcome"] for n in second["nodes"]] == ["completed"]
        history = user_texts(fake_anthropic.requests[-1])
        assert history[0].startswith("RUN: echo hi-from-swarm") and history[-1] == "and now something else"

        out = cs.json("terminate", sid, "--wait", timeout=120)
        assert out["state"] == "terminated"
        # Only loopback calls to the fake: the probe and model requests.
        assert set(fake_anthropic.paths) <= {"HEAD /", "POST /v1/messages?beta=true"}
    finally:
        cs.cleanup()


def test_claude_approvals_through_the_cli(pyz: Path, tmp_path: Path, claude_bin: str,
                                          fake_anthropic: FakeAnthropic) -> None:
    config = claude_config(tmp_path, claude_bin, fake_anthropic)
    config["launch_providers"][0]["defaults"]["approval_policy"] = "on-request"
    cs = Codeswarm(pyz, tmp_path, config)
    try:
        launched = cs.json("launch", "--nodes", "1")
        sid, job = launched["swarm_id"], launched["job_id"]
        workspace = tmp_path / "runs" / job / "node_00"

        def approval_for(injection_id: str) -> dict[str, Any]:
            evs = cs.wait_for(lambda evs: any(e["event"] == "exec_approval_required"
                                              and e["data"]["injection_id"] == injection_id for e in evs),
                              "--swarm", sid, timeout=120)
            return next(e["data"] for e in evs if e["event"] == "exec_approval_required"
                        and e["data"]["injection_id"] == injection_id)

        def finished(injection_id: str) -> list[dict[str, Any]]:
            evs = cs.wait_for(lambda evs: any(e["event"] == "turn_complete"
                                              and e["data"]["injection_id"] == injection_id for e in evs),
                              "--swarm", sid, timeout=120)
            return turn_of(evs, injection_id)

        # accepted: the command runs
        (node,) = cs.json("inject", sid, "--prompt", "RUN: echo approved > ok.txt; echo done")["nodes"]
        asked = approval_for(node["injection_id"])
        assert asked["kind"] == "command" and asked["command"] == "echo approved > ok.txt; echo done"
        assert not (workspace / "ok.txt").exists()
        cs.json("approve", sid, "accept", "--node", "0", "--call", asked["call_id"])
        turn = finished(node["injection_id"])
        names = [e["event"] for e in turn]
        assert "exec_approval_resolved" in names and "command_completed" in names
        assert (workspace / "ok.txt").read_text() == "approved\n"
        assert [e["data"].get("status", "completed") for e in turn if e["event"] == "turn_complete"] == ["completed"]

        # declined: Claude offers accept/cancel only, so the refusal stops the turn; nothing runs
        (node,) = cs.json("inject", sid, "--prompt", "RUN: echo nope > no.txt")["nodes"]
        asked = approval_for(node["injection_id"])
        resolved = cs.json("approve", sid, "decline", "--node", "0", "--call", asked["call_id"])
        assert resolved["approved"] is False
        turn = finished(node["injection_id"])
        assert not (workspace / "no.txt").exists()
        # (the tool_use line announced the command before the hook asked; it never completed)
        assert [e["data"]["status"] for e in turn if e["event"] == "command_completed"] == ["declined"]
        assert [e["data"].get("status") for e in turn if e["event"] == "turn_complete"] == ["interrupted"]
        assert cs.json("terminate", sid, "--wait", timeout=120)["state"] == "terminated"
    finally:
        cs.cleanup()
