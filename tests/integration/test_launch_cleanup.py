"""Issue 12 finding 8: a launch that fails never leaves workers running, nor a Python repr.

Bad persona bundles (skills `a` and `a/b`, a NUL byte, a 300-character name) are refused before
anything is submitted; a failure after the provider started the workers (the workspace disk is
full) cancels the job. Either way the client gets a plain message, no worker survives, and no
swarm record or workspace is left behind.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from codeswarm.client import Client
from tests.conftest import Codeswarm, _alive, local_config
from tests.faults.conftest import tmpfs  # noqa: F401  (fixture)

REPR = re.compile(r"Error\(|Exception\(|\\x00|Traceback|<[a-zA-Z_.]+ object at")


def our_workers(tmp: Path) -> list[int]:
    """Live worker processes started for this test (their environment names the test's tmp dir)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes()
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if str(tmp).encode() in env and b"worker" in cmd and _alive(int(proc.name)):
            pids.append(int(proc.name))
    return pids


def launch(cs: Codeswarm, bundle: dict[str, Any]) -> dict[str, Any]:
    cs.run("router", "start")
    with Client(cs.home / "router.sock", timeout=60) as c:
        return c.request("swarm_launch", {"nodes": 2, "provider": "local-mock", "agents_bundle": bundle},
                         timeout=60)


def assert_nothing_left(cs: Codeswarm) -> None:
    deadline = time.monotonic() + 10
    while our_workers(cs.tmp) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert our_workers(cs.tmp) == [], "a failed launch left workers running"
    assert cs.json("list") == {}, "a failed launch left a swarm record"


BAD_BUNDLES = {
    "file_and_dir": [{"path": "a", "content": "x"}, {"path": "a/b", "content": "y"}],
    "nul_byte": [{"path": "bad\x00name.md", "content": "x"}],
    "long_name": [{"path": "n" * 300 + ".md", "content": "x"}],
}


@pytest.mark.parametrize("case", sorted(BAD_BUNDLES))
def test_bad_skills_are_refused_before_submit(cs: Codeswarm, case: str) -> None:
    env = launch(cs, {"mode": "directory", "agents_md_content": "# persona", "skills_files": BAD_BUNDLES[case]})
    assert env["event"] == "command_rejected", env
    data = env["data"]
    assert data["code"] == "invalid_payload", data
    assert "skills_files" in data["reason"] and not REPR.search(data["reason"]), data["reason"]
    runs = cs.tmp / "runs"
    assert not runs.exists() or not any(runs.iterdir()), "nothing may be submitted for an invalid bundle"
    assert_nothing_left(cs)


def test_failure_after_submit_cancels_the_job(pyz: Path, tmp_path: Path, tmpfs: Any) -> None:  # noqa: F811
    small = tmpfs("256k", "runs")
    cfg = local_config(tmp_path)
    cfg["cluster"]["local"]["workspace_root"] = str(small)
    cs = Codeswarm(pyz, tmp_path, cfg)
    try:
        # Valid, but three copies do not fit on the workspace disk: the write fails after the
        # provider started the workers.
        env = launch(cs, {"mode": "directory", "agents_md_content": "x" * (200 << 10), "skills_files": []})
        assert env["event"] == "command_rejected", env
        data = env["data"]
        assert data["code"] == "launch_failed", data
        assert not REPR.search(data["reason"]), data["reason"]
        assert "No space left" in data["reason"] or "space" in data["reason"], data["reason"]
        assert_nothing_left(cs)
        leftover = [p for p in small.iterdir()]
        assert leftover == [], f"a failed launch left its swarm root: {leftover}"
    finally:
        cs.cleanup()
        for pid in our_workers(tmp_path):
            os.killpg(pid, 9)
