"""Fixtures for the real Claude Code CLI against the fake Messages API on loopback.

The binary comes from $CLAUDE_BIN or the project-local install of scripts/install-claude.sh;
without it these tests are skipped (the unit tests of the normalizer still run).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fake_anthropic import FakeAnthropic, offline_env  # noqa: E402

from codeswarm.worker.runtimes.claude import PINNED_VERSION, project_claude  # noqa: E402


def find_claude_bin() -> str | None:
    env = os.environ.get("CLAUDE_BIN")
    if env:
        return env if os.access(env, os.X_OK) else None
    return project_claude()  # the runtime's own lookup of scripts/install-claude.sh's install


@pytest.fixture(scope="session")
def claude_bin() -> str:
    path = find_claude_bin()
    if path is None:
        why = "Claude Code CLI not installed: run scripts/install-claude.sh (or set CLAUDE_BIN)"
        if os.environ.get("CODESWARM_TEST_STRICT"):
            pytest.fail(why)  # scripts/test.sh installs it: a missing binary is a broken setup there
        pytest.skip(why)
    version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    # Fail loudly on drift: the normalizer and the fixtures were recorded with the pinned version.
    assert PINNED_VERSION in version, f"{path} is {version!r}, tests expect {PINNED_VERSION}"
    return path


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def claude_env(tmp_path: Path, fake_anthropic: FakeAnthropic) -> dict[str, str]:
    return offline_env(tmp_path, fake_anthropic)
