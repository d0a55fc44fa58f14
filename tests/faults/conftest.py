"""Fault-test helpers: a fast-heartbeat local mock config, a seeded RNG, and a small tmpfs.

Everything here runs the real dist/codeswarm.pyz (the `cs` fixture of tests/conftest.py).
The tmpfs fixture needs root (CI runs as root); it unmounts in teardown, lazily if busy.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Codeswarm, local_config

SEED = int(os.environ.get("CODESWARM_FAULT_SEED", "7"))


def fast_config(tmp: Path, **router: Any) -> dict[str, Any]:
    """The mock config with heartbeats every 0.3 s, so that a dead worker shows within ~2 s."""
    cfg = local_config(tmp, worker_heartbeat_timeout_seconds=2, **router)
    for preset in cfg["launch_providers"]:
        preset["env"] = {"CODESWARM_HEARTBEAT_SECONDS": "0.3"}
    return cfg


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """Seeded per test (CODESWARM_FAULT_SEED, default 7) so that a failure can be replayed."""
    return random.Random(f"{SEED}:{request.node.name}")


def log_events(cs: Codeswarm) -> list[dict[str, Any]]:
    """The raw event log, read from disk (every segment), with the router stopped or running."""
    out = []
    for seg in sorted((cs.home / "events").glob("*.jsonl")):
        for raw in seg.read_bytes().splitlines():
            out.append(json.loads(raw))
    return out


def assert_log_consistent(events: list[dict[str, Any]]) -> None:
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)), "log seq must strictly increase"


def is_root() -> bool:
    return os.geteuid() == 0


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Any]:
    """mount(size) -> a fresh tmpfs directory of that size; every mount is removed at teardown."""
    if not is_root():
        if os.environ.get("CODESWARM_TEST_STRICT"):
            pytest.fail("fault tests with a filesystem need root (CI runs as root)")
        pytest.skip("needs root to mount a tmpfs")
    mounts: list[Path] = []

    def mount(size: str, name: str = "fs") -> Path:
        target = tmp_path / name
        target.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(target)], check=True)
        mounts.append(target)
        return target

    yield mount
    for target in reversed(mounts):
        if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)
