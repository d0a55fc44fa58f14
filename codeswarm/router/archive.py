"""Workspace archives on terminate (PROTOCOL.md 4.5 step 6): one tar.gz per node workspace.

Called by Handlers.terminate() after the job was stopped and before swarm_terminated. Each node
gives exactly one event, workspace_archive_ready or workspace_archive_failed; nothing here raises,
so a failed archive never blocks the termination.

Where the bytes come from:
- local swarms, and Slurm profiles with an empty login_host (router on a login node): the
  workspace is read directly from the (shared) filesystem;
- Slurm profiles with a login_host: `ssh HOST -- tar czf - -C SWARM_ROOT node_NN` streamed into
  the local file, retrying ssh transport failures (exit 255) with the profile's retry settings.

Either way the archive holds one top-level directory `node_NN/` with that node's files, is
written to a `.partial` file first and renamed, and is mode 0600 in a 0700 directory.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from codeswarm.errors import ArchiveError
from codeswarm.mailbox import node_name, workspace_path
from codeswarm.router.providers.base import JobHandle

if TYPE_CHECKING:
    from codeswarm.config import SlurmProfile

log = logging.getLogger("codeswarm.router.archive")

SSH_TRANSPORT_FAILURE = 255
SSH_ARCHIVE_TIMEOUT = 1800.0  # a whole workspace over ssh; ServerAliveInterval catches dead links sooner
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def archive_root(router: Any) -> Path:
    configured = router.settings.download_archive_root
    if configured:
        return Path(configured).expanduser()
    return Path(router.state_dir) / "archives"


def archive_name(swarm_id: str, job_id: str, node_id: int) -> str:
    return f"{_UNSAFE.sub('_', swarm_id)}_{_UNSAFE.sub('_', job_id)}_{node_name(node_id)}.tar.gz"


def _ssh_host(router: Any, job: JobHandle) -> tuple[str, "SlurmProfile | None"]:
    """The login host to fetch from ("" = read the filesystem directly) and the profile."""
    if job.backend != "slurm":
        return "", None
    profiles = getattr(router.config, "slurm_profiles", {}) or {}
    if not profiles:
        return "", None
    profile = profiles.get(job.profile or "") or router.config.slurm_profile(None)
    host = job.extra.get("login_host")  # what the provider recorded at submit wins over the config
    return (host if isinstance(host, str) else profile.login_host), profile


def _prepare_root(root: Path) -> None:
    existed = root.exists()
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ArchiveError(f"cannot create archive root {root}: {exc.strerror or exc}") from None
    if not root.is_dir():
        raise ArchiveError(f"archive root is not a directory: {root}")
    if not existed:
        root.chmod(0o700)  # mkdir's mode is filtered by the umask
    if not os.access(root, os.W_OK | os.X_OK):
        raise ArchiveError(f"archive root is not writable: {root}")


def _open_private(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)


def _pack_local(workspace: Path, target: Path) -> int:
    """Tar+gzip a workspace directory into target (atomically); returns the size in bytes."""
    if not workspace.is_dir():
        raise ArchiveError(f"workspace not found: {workspace}")
    partial = target.with_name(target.name + ".partial")
    try:
        fd = _open_private(partial)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            # symlinks are stored as links (never followed): a workspace may point anywhere
            tar.add(workspace, arcname=workspace.name, recursive=True)
        os.chmod(partial, 0o600)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target.stat().st_size


async def _pack_ssh(host: str, profile: "SlurmProfile | None", swarm_root: Path, node_id: int,
                    target: Path) -> int:
    attempts = max(1, profile.ssh_retry_attempts) if profile else 4
    delay = profile.ssh_retry_delay_seconds if profile else 1.5
    remote = shlex.join(["tar", "czf", "-", "-C", str(swarm_root), node_name(node_id)])
    argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=30", "-o", "ServerAliveInterval=10",
            host, "--", remote]
    partial = target.with_name(target.name + ".partial")
    error = "ssh did not run"
    try:
        for attempt in range(attempts):
            fd = _open_private(partial)
            try:
                with trio.move_on_after(SSH_ARCHIVE_TIMEOUT) as scope:
                    proc = await trio.run_process(argv, stdin=b"", stdout=fd, capture_stderr=True, check=False)
            except OSError as exc:
                raise ArchiveError(f"cannot run ssh: {exc}") from None
            finally:
                os.close(fd)
            if scope.cancelled_caught:
                raise ArchiveError(f"ssh {host}: no complete archive within {SSH_ARCHIVE_TIMEOUT:g} s")
            if proc.returncode == 0:
                os.replace(partial, target)
                return target.stat().st_size
            stderr = proc.stderr.decode("utf-8", "replace").strip()
            error = f"ssh {host} tar exited {proc.returncode}: {stderr[-300:]}"
            if proc.returncode != SSH_TRANSPORT_FAILURE:
                break  # tar itself failed (e.g. no such workspace): retrying will not help
            if attempt + 1 < attempts:
                await trio.sleep(delay)
        raise ArchiveError(error)
    finally:
        partial.unlink(missing_ok=True)


async def archive_workspaces(router: Any, swarm: Any, request_id: str | None) -> None:
    """Archive every node workspace of `swarm`; one ready/failed event per node. Never raises."""
    base = {"request_id": request_id, "swarm_id": swarm.swarm_id, "job_id": swarm.job_id}

    def failed(node_id: int, reason: str) -> None:
        log.warning("archive of %s node %d failed: %s", swarm.swarm_id, node_id, reason)
        router.emit("workspace_archive_failed", {**base, "node_id": node_id, "reason": reason})

    try:
        job = JobHandle.from_json(swarm.job)
        root = archive_root(router)
        await trio.to_thread.run_sync(_prepare_root, root)
        host, profile = _ssh_host(router, job)
    except Exception as exc:  # noqa: BLE001 - every problem becomes an event, never a crash
        reason = str(exc) if isinstance(exc, ArchiveError) else f"{type(exc).__name__}: {exc}"
        for node_id in range(swarm.node_count):
            failed(node_id, reason)
        return
    for node_id in range(swarm.node_count):
        name = archive_name(swarm.swarm_id, job.job_id, node_id)
        target = root / name
        try:
            if host:
                size = await _pack_ssh(host, profile, job.swarm_root, node_id, target)
            else:
                ws = workspace_path(job.swarm_root, node_id)
                size = await trio.to_thread.run_sync(_pack_local, ws, target)
        except ArchiveError as exc:
            failed(node_id, str(exc))
            continue
        except Exception as exc:  # noqa: BLE001
            failed(node_id, f"{type(exc).__name__}: {exc}")
            continue
        router.emit("workspace_archive_ready", {**base, "node_id": node_id, "archive_path": str(target),
                                                "archive_name": name, "size_bytes": size})
