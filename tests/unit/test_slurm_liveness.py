"""SlurmProvider's per-node liveness from the task supervisors' exit markers (issue 12 #9)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from codeswarm.config import parse_config
from codeswarm.errors import ProviderError
from codeswarm.router.providers.base import JobHandle, LaunchSpec
from codeswarm.router.providers.slurm import SlurmProvider, read_task_markers, restart_path


def job(tmp_path: Path) -> JobHandle:
    root = tmp_path / "runs" / "77"
    (root / "mailbox" / "outbox").mkdir(parents=True)
    (root / "mailbox" / "inbox").mkdir(parents=True)
    return JobHandle(job_id="77", swarm_root=root, backend="slurm")


def mark(j: JobHandle, node: int, text: str) -> None:
    (j.swarm_root / "mailbox" / "outbox" / f"77_{node:02d}.exit").write_text(text)


def test_a_marked_attempt_is_dead_until_a_restart_is_requested(tmp_path: Path) -> None:
    j = job(tmp_path)
    assert read_task_markers(j) == {}
    mark(j, 2, "0 137 1700000000\n")
    dead = read_task_markers(j)
    assert list(dead) == [2] and not dead[2].alive and "137" in dead[2].detail
    restart_path(j, 2).write_text("1")  # the router asked for attempt 1: alive until 1 dies too
    assert read_task_markers(j) == {}
    mark(j, 2, "0 137 1700000000\n1 1 1700000100\n")
    assert list(read_task_markers(j)) == [2]


def test_garbage_and_symlinks_are_no_evidence(tmp_path: Path) -> None:
    j = job(tmp_path)
    mark(j, 0, "not a marker\n")
    (j.swarm_root / "mailbox" / "outbox" / "other_01.exit").write_text("0 1 2\n")  # another job's name
    (j.swarm_root / "mailbox" / "outbox" / "77_xx.exit").write_text("0 1 2\n")
    target = tmp_path / "elsewhere"
    target.write_text("0 9 1\n")
    os.symlink(target, j.swarm_root / "mailbox" / "outbox" / "77_03.exit")
    assert read_task_markers(j) == {}


@pytest.mark.trio
async def test_restart_request_counts_up_and_rewrites_the_node_secret_file(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The first worker deleted its secrets file once read (codeswarm/secrets_env.py): a restarted
    worker needs it again; the value comes from the router's environment, as at launch."""
    cfg = parse_config({"cluster": {"slurm": {"workspace_root": str(tmp_path), "cluster_subdir": "cs",
                                              "time_limit": "00:10:00",
                                              "profiles": {"default": {"partition": "debug"}}}}},
                       None, base_dir=tmp_path)
    p = SlurmProvider(cfg, worker_command=["true"])
    j = job(tmp_path)
    j.profile = "default"
    secrets = tmp_path / "secrets" / "s1"
    j.extra["secrets_dir"] = str(secrets)
    monkeypatch.setenv("CANARY_FOR_RESTART", "v-123")
    spec = LaunchSpec("s1", 2, {}, {"API_KEY": "${CANARY_FOR_RESTART}", "CODESWARM_WORKER_MODE": "mock"})
    assert await p.restart_node(j, 1, spec) == j.extra
    assert restart_path(j, 1).read_text() == "1"
    path = secrets / "1.json"
    assert json.loads(path.read_text()) == {"API_KEY": "v-123"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and not (secrets / "0.json").exists()
    await p.restart_node(j, 1, spec)
    assert restart_path(j, 1).read_text() == "2"
    monkeypatch.delenv("CANARY_FOR_RESTART")
    with pytest.raises(ProviderError, match="CANARY_FOR_RESTART"):
        await p.restart_node(j, 1, spec)
