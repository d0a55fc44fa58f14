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

from fake_anthropic import FakeAnthropic
from test_claude_swarm import claude_config
from tests.conftest import Codeswarm
from tests.runtime_orphans import (assert_all_gone_and_nothing_written, kill_leftovers, sigkill_worker, start_turn,
                                   terminate_and_check_clean_stop)

pytestmark = pytest.mark.claude
STARTED: list[int] = []


@pytest.fixture
def claude_cs(pyz: Path, tmp_path: Path, claude_bin: str, fake_anthropic: FakeAnthropic) -> Iterator[Codeswarm]:
    cs = Codeswarm(pyz, tmp_path, claude_config(tmp_path, claude_bin, fake_anthropic))
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
    terminate_and_check_clean_stop(claude_cs, "stopped", run)
