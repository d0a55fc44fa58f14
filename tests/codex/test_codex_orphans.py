"""The agent runtime dies with its worker (the process guard, codeswarm/projects/childguard.py), through
the real .pyz and the real pinned `codex app-server` against the fake Responses API on loopback.

A worker SIGKILLed while its app-server runs a command in a turn: afterwards the app-server, every
process under it (codex runs each command in a PTY session of its own: a SIGKILL of the app-server's
group misses them, P12) and a grandchild that left with setsid are gone, by PID, and none of their
delayed writes happens. The normal stop (terminate --force) during the same kind of turn: everything
is gone too, the worker exits 0 with nothing reported as an error, and the guard ends with it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fake_responses import FakeResponses

from tests.conftest import Codeswarm
from tests.runtime_orphans import (assert_all_gone_and_nothing_written, kill_leftovers, sigkill_worker, start_turn,
                                   terminate_and_check_clean_stop)

STARTED: list[int] = []


@pytest.fixture(autouse=True)
def _kill_leftovers(cs: Codeswarm) -> Iterator[None]:
    yield
    kill_leftovers(STARTED, cs.tmp)


def codex_config(tmp: Path, codex_bin: str, fake: FakeResponses) -> dict[str, Any]:
    defaults = {"worker_mode": "codex", "approval_policy": "never", "sandbox_mode": "danger-full-access",
                "codex_path": codex_bin, "codex_home": "{swarm_root}/codex_home/node_{node_id}",
                "codex_ephemeral": True, **fake.provider_params()}
    return {"cluster": {"local": {"workspace_root": str(tmp / "runs")}},
            "router": {"inject_timeout_seconds": 60, "poll_interval_seconds": 0.1},
            "launch_providers": [{"id": "local-codex", "label": "Local (Codex, fake model)", "backend": "local",
                                  "defaults": defaults, "env": {"FAKE_MODEL_API_KEY": "sk-fake-e2e"}}]}


def start(cs: Codeswarm, codex_bin: str, fake: FakeResponses, name: str) -> dict[str, Any]:
    cs.write_config(codex_config(cs.tmp, codex_bin, fake))
    run = start_turn(cs, name, STARTED, "--provider", "local-codex")
    assert run["runtime"] and Path(cmdline_of(run["runtime"])[0]).name == "codex", "the app-server runs it"
    return run


def cmdline_of(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_a_sigkilled_worker_s_app_server_and_its_commands_die_with_it(cs: Codeswarm, codex_bin: str,
                                                                      fake_model: FakeResponses) -> None:
    run = start(cs, codex_bin, fake_model, "killed")
    sigkill_worker(run)
    assert_all_gone_and_nothing_written(cs, "killed", run)


def test_a_worker_stopped_in_a_turn_stops_its_app_server_itself_without_an_error(
        cs: Codeswarm, codex_bin: str, fake_model: FakeResponses) -> None:
    """The normal path (terminate --force: the shutdown reaches the worker in the turn): the worker's
    own stop ends the app-server (stdin EOF, exit 0, reaped by the worker) and it kills its command
    (P12); the worker exits 0 with nothing reported as an error; the guard then ends with it (and
    kills the setsid grandchild, which the app-server's own teardown left running)."""
    run = start(cs, codex_bin, fake_model, "stopped")
    terminate_and_check_clean_stop(cs, "stopped", run)
    log = next((cs.tmp / "runs").rglob("codex_*.stderr.log")).read_text(errors="replace")
    assert "panicked" not in log and "Traceback" not in log
