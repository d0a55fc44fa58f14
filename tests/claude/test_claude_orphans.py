"""Claude Code dies with its worker (the process guard, codeswarm/projects/childguard.py), through the
real .pyz and the real Claude Code CLI against the fake Messages API on loopback.

A worker SIGKILLed while claude runs a Bash command in a turn: afterwards claude, every process under
it (Claude runs each command in a session of its own) and a grandchild that left with setsid are gone,
by PID, and none of their delayed writes happens. The normal stop (terminate --force) in the same kind
of turn: all gone, the worker exits 0 with nothing reported as an error, the guard ends with it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fake_anthropic import FakeAnthropic, offline_env
from tests.conftest import Codeswarm, local_config
from tests.runtime_orphans import assert_all_gone_and_nothing_written, kill_leftovers, sigkill_worker, start_turn

pytestmark = pytest.mark.claude
STARTED: list[int] = []


@pytest.fixture
def claude_cs(pyz: Path, tmp_path: Path, claude_bin: str, fake_anthropic: FakeAnthropic) -> Iterator[Codeswarm]:
    config = local_config(tmp_path)
    config["launch_providers"] = [{
        "id": "local-claude", "label": "Local (Claude)", "backend": "local",
        "defaults": {"worker_mode": "claude", "approval_policy": "never", "sandbox_mode": "workspace-write",
                     "claude_cli_path": claude_bin},
        "env": offline_env(tmp_path / "claude", fake_anthropic),
    }]
    cs = Codeswarm(pyz, tmp_path, config)
    try:
        yield cs
    finally:
        kill_leftovers(STARTED, tmp_path)
        cs.cleanup()


def test_a_sigkilled_worker_s_claude_and_its_commands_die_with_it(claude_cs: Codeswarm) -> None:
    run = start_turn(claude_cs, "killed", STARTED)
    sigkill_worker(run)
    assert_all_gone_and_nothing_written(claude_cs, "killed", run)


def test_a_worker_stopped_in_a_turn_stops_claude_itself_without_an_error(claude_cs: Codeswarm) -> None:
    run = start_turn(claude_cs, "stopped", STARTED)
    out = claude_cs.json("terminate", run["sid"], "--force", "--wait", timeout=120)
    assert out["state"] == "terminated"
    assert_all_gone_and_nothing_written(claude_cs, "stopped", run)
    events = claude_cs.events("--swarm", run["sid"])
    assert not [e for e in events if "error" in e["event"]], [e for e in events if "error" in e["event"]]
    (exited,) = [e["data"] for e in events if e["event"] == "node_status" and e["data"].get("worker") == "exited"]
    assert (exited["exit_code"], exited["exit_reason"]) == (0, "shutdown")
