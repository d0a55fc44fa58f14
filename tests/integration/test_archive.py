"""Workspace archives on terminate (issue 8): one readable tar.gz per node, failures as events.

The first two tests run the real .pyz; the others drive codeswarm/router/archive.py directly with
a stand-in router (the ssh path uses a fake `ssh` on PATH that runs the remote command locally).
"""

from __future__ import annotations

import os
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from codeswarm.config import RouterSettings, SlurmProfile
from codeswarm.router.archive import archive_workspaces
from tests.conftest import Codeswarm, local_config


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_terminate_with_archive_gives_one_archive_per_node(cs: Codeswarm) -> None:
    persona = cs.tmp / "persona.md"
    persona.write_text("# Persona\nBe brief.\n")
    launched = cs.json("launch", "--nodes", "2", "--agents-md", str(persona))
    sid, job = launched["swarm_id"], launched["job_id"]
    cs.json("inject", sid, "--prompt", "hello", "--wait", "--timeout", "60")
    # a file of node 1's own, to show each archive holds that node's workspace and no other
    (cs.tmp / "runs" / job / "node_01" / "notes.txt").write_text("node one only")

    out = cs.json("terminate", sid, "--archive", "--wait", "--timeout", "90")
    assert out["state"] == "terminated"
    archives = sorted(out.get("archives", []), key=lambda a: a["node_id"])
    assert [a["event"] for a in archives] == ["workspace_archive_ready"] * 2, archives
    root = cs.home / "archives"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    for node, a in enumerate(archives):
        path = Path(a["archive_path"])
        assert path.parent == root and path.name == a["archive_name"]
        assert sid in a["archive_name"] and job in a["archive_name"] and f"node_{node:02d}" in a["archive_name"]
        assert a["size_bytes"] == path.stat().st_size > 0
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        files = _members(path)
        assert files[f"node_{node:02d}/AGENTS.md"] == b"# Persona\nBe brief.\n"
        assert all(name.startswith(f"node_{node:02d}/") for name in files)
        assert (f"node_{node:02d}/notes.txt" in files) == (node == 1)
    assert not list(root.glob("*.partial"))
    # the archive events come before swarm_terminated (PROTOCOL.md 6, ordering rule 4)
    names = [e["event"] for e in cs.events("--swarm", sid)]
    last_archive = max(i for i, n in enumerate(names) if n.startswith("workspace_archive_"))
    assert last_archive < names.index("swarm_terminated")


def test_unwritable_archive_root_fails_per_node_and_still_terminates(cs: Codeswarm) -> None:
    blocker = cs.tmp / "a-regular-file"
    blocker.write_text("mkdir below me fails, even for root")
    cs.write_config(local_config(cs.tmp, download_archive_root=str(blocker / "archives")))
    sid = cs.json("launch", "--nodes", "2")["swarm_id"]
    out = cs.json("terminate", sid, "--archive", "--wait", "--timeout", "90")
    assert out["state"] == "terminated" and out["reason"] == "requested"
    failed = sorted(out.get("archives", []), key=lambda a: a["node_id"])
    assert [(a["event"], a["node_id"]) for a in failed] == [("workspace_archive_failed", 0),
                                                           ("workspace_archive_failed", 1)]
    assert all("archive root" in a["reason"] and a["swarm_id"] == sid for a in failed)
    assert cs.json("status", sid)["state"] == "terminated"


# ---------------------------------------------------------------- archive.py with a stand-in router


@dataclass
class FakeConfig:
    slurm_profiles: dict[str, SlurmProfile] = field(default_factory=dict)

    def slurm_profile(self, name: str | None) -> SlurmProfile:
        return self.slurm_profiles.get(name or "") or next(iter(self.slurm_profiles.values()))


@dataclass
class FakeRouter:
    state_dir: Path
    settings: RouterSettings = field(default_factory=RouterSettings)
    config: FakeConfig = field(default_factory=FakeConfig)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def emit(self, name: str, data: dict[str, Any]) -> None:
        self.events.append((name, data))


@dataclass
class FakeSwarm:
    swarm_id: str
    job_id: str
    node_count: int
    job: dict[str, Any]


def _swarm(root: Path, nodes: int, backend: str = "local", profile: str | None = None) -> FakeSwarm:
    for i in range(nodes):
        ws = root / f"node_{i:02d}"
        (ws / "src").mkdir(parents=True, exist_ok=True)
        (ws / "src" / "main.py").write_text(f"print({i})\n")
    job = {"job_id": "4821337", "swarm_root": str(root), "backend": backend, "profile": profile, "extra": {}}
    return FakeSwarm("sw-1", "4821337", nodes, job)


async def test_missing_workspace_fails_only_that_node(tmp_path: Path) -> None:
    router = FakeRouter(tmp_path / "state")
    swarm = _swarm(tmp_path / "runs", 3)
    (tmp_path / "runs" / "node_01" / "src" / "main.py").unlink()
    (tmp_path / "runs" / "node_01" / "src").rmdir()
    (tmp_path / "runs" / "node_01").rmdir()
    (tmp_path / "runs" / "node_02" / "link").symlink_to("/etc/hostname")
    await archive_workspaces(router, swarm, "req-1")
    assert [(n, d["node_id"]) for n, d in router.events] == [
        ("workspace_archive_ready", 0), ("workspace_archive_failed", 1), ("workspace_archive_ready", 2)]
    assert "workspace not found" in router.events[1][1]["reason"]
    assert all(d["request_id"] == "req-1" and d["job_id"] == "4821337" for _, d in router.events)
    with tarfile.open(router.events[2][1]["archive_path"], "r:gz") as tar:
        link = tar.getmember("node_02/link")
        assert link.issym() and link.linkname == "/etc/hostname"  # stored as a link, never followed


FAKE_SSH = r"""#!/bin/sh
# fake ssh: skip options, check the host, run the remote command here; fail FAIL_FIRST times with 255
while [ "$1" = "-o" ]; do shift 2; done
host="$1"; shift; [ "$1" = "--" ] && shift
echo "$host" >> "$FAKE_SSH_LOG"
n=$(wc -l < "$FAKE_SSH_LOG")
if [ "$n" -le "${FAIL_FIRST:-0}" ]; then echo "ssh: connect to host $host: Connection refused" >&2; exit 255; fi
exec sh -c "$1"
"""


def _fake_ssh(tmp: Path, monkeypatch: pytest.MonkeyPatch, fail_first: int) -> Path:
    bindir = tmp / "bin"
    bindir.mkdir()
    ssh = bindir / "ssh"
    ssh.write_text(FAKE_SSH)
    ssh.chmod(0o755)
    log = tmp / "ssh.log"
    log.write_text("")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SSH_LOG", str(log))
    monkeypatch.setenv("FAIL_FIRST", str(fail_first))
    return log


def _slurm_router(tmp: Path, login_host: str, archive_root: Path) -> FakeRouter:
    profile = SlurmProfile(name="hpc", workspace_root=tmp / "shared", cluster_subdir="cs", partition="p",
                           time_limit="00:10:00", login_host=login_host, ssh_retry_attempts=3,
                           ssh_retry_delay_seconds=0.01)
    settings = RouterSettings(download_archive_root=str(archive_root))
    return FakeRouter(tmp / "state", settings, FakeConfig({"hpc": profile}))


async def test_slurm_login_host_streams_tar_over_ssh_with_retries(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    log = _fake_ssh(tmp_path, monkeypatch, fail_first=2)  # two transport failures, then it works
    router = _slurm_router(tmp_path, "login.example", tmp_path / "out")
    swarm = _swarm(tmp_path / "shared" / "cs" / "runs" / "4821337", 2, backend="slurm", profile="hpc")
    await archive_workspaces(router, swarm, None)
    assert [n for n, _ in router.events] == ["workspace_archive_ready"] * 2, router.events
    assert log.read_text().split() == ["login.example"] * 4
    for node, (_, d) in enumerate(router.events):
        assert _members(Path(d["archive_path"])) == {f"node_{node:02d}/src/main.py": f"print({node})\n".encode()}
        assert stat.S_IMODE(Path(d["archive_path"]).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o700


async def test_ssh_failures_become_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = _fake_ssh(tmp_path, monkeypatch, fail_first=100)
    router = _slurm_router(tmp_path, "login.example", tmp_path / "out")
    swarm = _swarm(tmp_path / "shared" / "cs" / "runs" / "1", 1, backend="slurm", profile="hpc")
    await archive_workspaces(router, swarm, None)
    assert [n for n, _ in router.events] == ["workspace_archive_failed"]
    assert "Connection refused" in router.events[0][1]["reason"]
    assert len(log.read_text().split()) == 3  # the profile's ssh_retry_attempts
    # tar failing on the remote side (no such workspace) is not retried
    log.write_text("")
    monkeypatch.setenv("FAIL_FIRST", "0")
    router.events.clear()
    gone = FakeSwarm("sw-2", "2", 1, {**swarm.job, "swarm_root": str(tmp_path / "nowhere")})
    await archive_workspaces(router, gone, None)
    assert [n for n, _ in router.events] == ["workspace_archive_failed"]
    assert len(log.read_text().split()) == 1
    assert not list((tmp_path / "out").glob("*"))  # no partial files left behind


async def test_slurm_without_login_host_reads_the_shared_filesystem(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    log = _fake_ssh(tmp_path, monkeypatch, fail_first=0)
    router = _slurm_router(tmp_path, "", tmp_path / "out")
    swarm = _swarm(tmp_path / "shared" / "cs" / "runs" / "7", 1, backend="slurm", profile="hpc")
    await archive_workspaces(router, swarm, None)
    assert [n for n, _ in router.events] == ["workspace_archive_ready"]
    assert log.read_text() == ""  # ssh never ran
