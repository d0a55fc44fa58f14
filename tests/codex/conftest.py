"""Fixtures for the real pinned `codex app-server` against the fake Responses API on loopback.

The binary comes from $CODEX_BIN or the project-local install of scripts/install-codex.sh; without it
these tests are skipped (the normalizer's unit tests still run).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PINNED_VERSION = "0.169.0"
sys.path.insert(0, str(HERE))

from fake_responses import FakeResponses  # noqa: E402


def find_codex_bin() -> str | None:
    env = os.environ.get("CODEX_BIN")
    if env:
        return env if os.access(env, os.X_OK) else None
    root = Path(os.environ.get("CODESWARM_TOOLS_DIR") or REPO / ".tools") / f"codex-{PINNED_VERSION}"
    for cand in sorted((root / "node_modules" / "@openai").glob("codex-linux-*/vendor/*/bin/codex")):
        if os.access(cand, os.X_OK):
            return str(cand)
    return None


@pytest.fixture(scope="session")
def codex_bin() -> str:
    path = find_codex_bin()
    if path is None:
        why = "codex not installed: run scripts/install-codex.sh (or set CODEX_BIN)"
        if os.environ.get("CODESWARM_TEST_STRICT") == "1":  # scripts/test.sh installs it: missing is a failure
            pytest.fail(why)
        pytest.skip(why)
    version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    # Fail loudly on drift: the normalizer and these tests were verified against the pinned version.
    assert PINNED_VERSION in version, f"{path} is {version!r}, tests expect {PINNED_VERSION}"
    return path


@pytest.fixture
def fake_model() -> Iterator[FakeResponses]:
    with FakeResponses() as fake:
        yield fake


@pytest.fixture
def codex_env() -> dict[str, str]:
    """Extra env for codex: the fake's key, and no proxy in the way of loopback."""
    return {"FAKE_MODEL_API_KEY": "sk-fake-test", "NO_PROXY": "127.0.0.1,localhost",
            "HTTP_PROXY": "", "HTTPS_PROXY": "", "RUST_LOG": "warn"}
