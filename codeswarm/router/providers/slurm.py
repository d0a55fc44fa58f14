"""SlurmProvider: swarms as Slurm jobs, driven through sbatch/squeue/scancel/sacct (trio.run_process).

Failure model (ARCHITECTURE.md section 5): a failed, refused or timed-out query is never evidence about
a job, so poll() raises ProviderError(transient=True) and the core keeps every swarm as it was. poll()
makes one squeue call per login host for all jobs; jobs missing from a successful answer are
cross-checked with sacct (plain sacct where slurmdbd exists, else `sacct -c`, the jobcomp log) in one
more call. Missing everywhere is only NOT_FOUND: the core decides, after its debounce, that a job is gone.

With a `login_host`, every command runs through `ssh` (exit 255 = transport failure: retried). The
workspace root must then also be mounted where the router runs (the router reads mailboxes itself).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import trio

from codeswarm import secrets_env
from codeswarm.config import Config, SlurmProfile
from codeswarm.errors import ProviderError
from codeswarm.mailbox import make_private_dirs, open_mailbox_file, prepare_swarm_root
from codeswarm.paths import self_command, self_env, self_pyz
from codeswarm.router.providers import slurm_parse as sp
from codeswarm.router.providers.base import (
    ClusterProvider,
    JobHandle,
    JobObservation,
    JobState,
    LaunchSpec,
    NodeLiveness,
)
from codeswarm.router.providers.slurm_script import (
    batch_script,
    job_comment,
    job_name,
    resolve_request,
    restart_env,
)

DEFAULT_COMMAND_TIMEOUT = 30.0  # squeue against a dead controller takes ~18 s to give up on its own
TIMEOUT_ENV = "CODESWARM_SLURM_COMMAND_TIMEOUT"
PYTHON_ENV = "CODESWARM_PYTHON"  # profile env key: the interpreter on the compute nodes


@dataclass(frozen=True)
class Target:
    """Where commands run: this host (login_host "") or over ssh."""

    login_host: str = ""
    ssh_attempts: int = 4
    ssh_delay: float = 1.5


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


def _target(profile: SlurmProfile | None, login_host: str | None = None) -> Target:
    host = login_host if login_host is not None else (profile.login_host if profile else "")
    if profile is None:
        return Target(host)
    return Target(host, max(1, profile.ssh_retry_attempts), profile.ssh_retry_delay_seconds)


def _id_key(job_id: str) -> tuple[int, str]:
    return (int(job_id), "") if job_id.isdigit() else (1 << 62, job_id)


class SlurmProvider(ClusterProvider):
    backend = "slurm"

    def __init__(
        self,
        config: Config,
        *,
        command_timeout: float | None = None,
        cancel_confirm_timeout: float = 60.0,
        worker_command: Sequence[str] | None = None,
    ) -> None:
        if not config.slurm_profiles:
            raise ProviderError("no cluster.slurm profiles configured", transient=False)
        self.config = config
        if command_timeout is None:
            command_timeout = float(os.environ.get(TIMEOUT_ENV) or DEFAULT_COMMAND_TIMEOUT)
        self.command_timeout = command_timeout
        self.cancel_confirm_timeout = cancel_confirm_timeout
        self._worker_override = tuple(worker_command) if worker_command else None
        self._sacct_mode: dict[str, tuple[str, ...]] = {}  # login_host -> ("sacct",) or ("sacct", "-c")
        self._installed_pyz: dict[tuple[str, str], Path] = {}  # (source, cluster_root) -> copy
        # Call counters: tests and benchmarks assert one squeue per poll whatever the swarm count.
        self.squeue_calls = 0
        self.sacct_calls = 0
        self.sbatch_calls = 0
        self.scancel_calls = 0
        self.poll_calls = 0
        self._backoff = 1.0
        self._last_signature: tuple | None = None

    # -- command execution ---------------------------------------------------------------------------

    async def _exec(self, argv: list[str], stdin: bytes | None, timeout: float,
                    env: dict[str, str] | None = None) -> CommandResult | None:
        """Run once; None means it did not finish in time (the process is killed)."""
        with trio.move_on_after(timeout):
            try:
                proc = await trio.run_process(
                    argv, stdin=stdin if stdin is not None else b"", capture_stdout=True,
                    capture_stderr=True, check=False, env=env,
                )
            except FileNotFoundError:
                return CommandResult(127, "", f"{argv[0]}: command not found (is Slurm installed and on PATH?)")
            except OSError as exc:
                return CommandResult(126, "", f"{argv[0]}: cannot run: {exc}")
            return CommandResult(
                proc.returncode,
                proc.stdout.decode("utf-8", "replace"),
                proc.stderr.decode("utf-8", "replace"),
            )
        return None

    async def run(
        self, target: Target, argv: list[str], *, stdin: str | None = None, retry_transport: bool = True,
        env: dict[str, str] | None = None,
    ) -> CommandResult | None:
        """Run a Slurm command locally or on the login host; ssh transport failures are retried."""
        data = stdin.encode() if stdin is not None else None
        if not target.login_host:
            return await self._exec(argv, data, self.command_timeout, env)
        ssh = [
            "ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, int(min(self.command_timeout, 30)))}",
            "-o", "ServerAliveInterval=10", target.login_host, "--", shlex.join(argv),
        ]
        attempts = target.ssh_attempts if retry_transport else 1
        result: CommandResult | None = None
        for attempt in range(attempts):
            result = await self._exec(ssh, data, self.command_timeout, env)
            # Only exit 255 (ssh's own failure) is retried: a timeout already cost a full timeout.
            if result is None or result.returncode != sp.SSH_TRANSPORT_FAILURE:
                return result
            if attempt + 1 < attempts:
                await trio.sleep(target.ssh_delay)
        return result

    def _via_ssh(self, target: Target) -> bool:
        return bool(target.login_host)

    def _fail(self, what: str, target: Target, res: CommandResult | None, *, transient: bool | None = None) -> ProviderError:
        where = f" on {target.login_host}" if target.login_host else ""
        if res is None:
            return ProviderError(f"{what}{where} timed out after {self.command_timeout:g}s", transient=True)
        if transient is None:
            transient = sp.is_transient(res.returncode, res.stderr, via_ssh=self._via_ssh(target))
        detail = sp.first_line(res.stderr) or f"exit status {res.returncode}"
        return ProviderError(f"{what}{where} failed: {detail}", transient=transient)

    # -- submit --------------------------------------------------------------------------------------

    async def submit(self, spec: LaunchSpec) -> JobHandle:
        profile = self.config.slurm_profile(spec.profile)
        target = _target(profile)
        cluster_root = profile.workspace_root / profile.cluster_subdir
        try:
            await trio.to_thread.run_sync(
                make_private_dirs, cluster_root / "runs", cluster_root / "logs", cluster_root / "bin"
            )
            worker_argv, extra_env = await self._worker_command(profile, cluster_root)
        except OSError as exc:
            raise ProviderError(f"cannot prepare {cluster_root}: {exc}", transient=False) from None
        try:
            public, secret = secrets_env.worker_env_parts(profile.env, extra_env, spec.worker_env, os.environ)
        except secrets_env.MissingVariable as exc:
            raise ProviderError(f"cannot launch: {exc}", transient=False) from None
        refs = secrets_env.references({**profile.env, **spec.worker_env})
        secrets_dir = cluster_root / "secrets" / spec.swarm_id
        if secret:  # never in the script (slurmctld keeps scripts in its spool): one 0600 file per node
            public[secrets_env.SECRETS_DIR_ENV] = str(secrets_dir)
        try:
            req = resolve_request(
                replace(profile, env={}), spec.swarm_id, spec.node_count, spec.params,
                {**public, **restart_env(spec.params)}, worker_argv
            )
            script = batch_script(req)
        except ValueError as exc:
            raise ProviderError(f"cannot build the batch script: {exc}", transient=False) from None
        if secret:
            try:
                await trio.to_thread.run_sync(secrets_env.write_node_files, secrets_dir, spec.node_count, secret)
            except OSError as exc:
                raise ProviderError(f"cannot write the worker env files in {secrets_dir}: {exc.strerror or exc}",
                                    transient=False) from None
        try:
            job_id = await self._sbatch(target, spec.swarm_id, script,
                                        secrets_env.scrubbed_environ(os.environ, secret, refs))
        except BaseException:
            secrets_env.remove_dir(secrets_dir)
            raise
        swarm_root = cluster_root / "runs" / job_id
        await trio.to_thread.run_sync(self._write_swarm_files, swarm_root, spec.node_count, script)
        return JobHandle(
            job_id=job_id,
            swarm_root=swarm_root,
            backend=self.backend,
            profile=profile.name,
            extra={"login_host": profile.login_host, "job_name": job_name(spec.swarm_id),
                   **({"secrets_dir": str(secrets_dir)} if secret else {})},
        )

    async def _sbatch(self, target: Target, swarm_id: str, script: str, env: dict[str, str]) -> str:
        self.sbatch_calls += 1
        # sbatch is not idempotent: after a transport failure or timeout the job may exist anyway,
        # so look for it by name and comment instead of submitting twice.
        res = await self.run(target, ["sbatch", "--parsable"], stdin=script, retry_transport=False, env=env)
        if res is None or (res.returncode != 0 and sp.is_transient(res.returncode, res.stderr, via_ssh=self._via_ssh(target))):
            job_id = await self._find_submitted(target, swarm_id)
            if job_id is None:
                raise self._fail("sbatch", target, res, transient=True)
        elif res.returncode != 0:
            raise self._fail("sbatch", target, res)
        else:
            try:
                job_id = sp.parse_sbatch(res.stdout)
            except ValueError as exc:
                raise ProviderError(str(exc), transient=False) from None
        return job_id

    @staticmethod
    def _write_swarm_files(swarm_root: Path, node_count: int, script: str) -> None:
        prepare_swarm_root(swarm_root, node_count)
        path = swarm_root / "job.sbatch"  # what was submitted, for whoever debugs the job later
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(script)

    async def _find_submitted(self, target: Target, swarm_id: str) -> str | None:
        self.squeue_calls += 1
        res = await self.run(
            target, ["squeue", "-h", "--me", "--states=all", f"--name={job_name(swarm_id)}", "-o", "%i|%k"]
        )
        if res is None or res.returncode != 0:
            return None
        for line in res.stdout.splitlines():
            job_id, _, comment = line.strip().partition("|")
            if comment.strip() == job_comment(swarm_id) and job_id.isdigit():
                return job_id
        return None

    async def _worker_command(self, profile: SlurmProfile, cluster_root: Path) -> tuple[list[str], dict[str, str]]:
        """argv of `codeswarm worker` on the nodes, plus env it needs (PYTHONPATH when run from source)."""
        if self._worker_override is not None:
            return list(self._worker_override), {}
        pyz = self_pyz()
        if pyz is None:  # running from a source tree (development, unit tests)
            return [*self_command(), "worker"], self_env()
        python = profile.env.get(PYTHON_ENV, "python3")
        key = (str(pyz), str(cluster_root))
        copy = self._installed_pyz.get(key)
        if copy is None or not copy.exists():
            copy = await trio.to_thread.run_sync(install_pyz, pyz, cluster_root / "bin")
            self._installed_pyz[key] = copy
        return [python, str(copy), "worker"], {}

    # -- poll ----------------------------------------------------------------------------------------

    def _job_target(self, job: JobHandle) -> Target:
        profile = self.config.slurm_profiles.get(job.profile or "") or self.config.slurm_profile(None)
        host = job.extra.get("login_host")
        return _target(profile, host if isinstance(host, str) else None)

    @property
    def poll_interval(self) -> float:
        """Seconds until the next poll: the configured interval, stretched up to 4x while nothing changes."""
        return self.config.router.status_poll_interval_seconds * self._backoff

    async def poll(self, jobs: list[JobHandle]) -> dict[str, JobObservation]:
        """One squeue per login host for every job; raises ProviderError(transient=True) if no answer."""
        self.poll_calls += 1
        before, self._backoff = self._backoff, 1.0  # stays 1x if this poll fails: see recovery quickly
        out = await self._poll(jobs)
        signature = sp.observation_signature(out)
        running = bool(out) and all(o.state is JobState.RUNNING for o in out.values())
        self._backoff = sp.next_backoff(before, self._last_signature, signature, running)
        self._last_signature = signature
        return out

    async def _poll(self, jobs: list[JobHandle]) -> dict[str, JobObservation]:
        groups: dict[str, tuple[Target, list[str]]] = {}
        for job in jobs:
            t = self._job_target(job)
            groups.setdefault(t.login_host, (t, []))[1].append(job.job_id)
        out: dict[str, JobObservation] = {}
        errors: list[ProviderError] = []
        for target, ids in groups.values():
            try:
                out.update(await self._observe(target, sorted(set(ids), key=_id_key)))
            except ProviderError as exc:
                errors.append(exc)
                for job_id in ids:  # another host answered: these jobs are merely unknown this time
                    out[job_id] = JobObservation(JobState.UNKNOWN, reason=str(exc))
        if errors and len(errors) == len(groups):
            raise errors[0] if len(errors) == 1 else ProviderError("; ".join(map(str, errors)), transient=True)
        return out

    async def _observe(self, target: Target, ids: list[str]) -> dict[str, JobObservation]:
        self.squeue_calls += 1
        res = await self.run(target, ["squeue", "-h", "--states=all", "-o", sp.SQUEUE_FORMAT, "-j", ",".join(ids)])
        if res is None:
            raise self._fail("squeue", target, res)
        if res.returncode != 0 and not sp.is_invalid_job_id(res.stderr):
            # Any squeue failure is no evidence: transient whatever the message says.
            raise self._fail("squeue", target, res, transient=True)
        # "Invalid job id specified" (rc 1) comes only when every listed id is purged: an empty answer.
        records = sp.parse_squeue(res.stdout) if res.returncode == 0 else {}
        missing = [i for i in ids if i not in records]
        if missing:
            records.update(await self._accounting(target, missing))
        return {
            i: sp.observation(records[i]) if i in records else JobObservation(JobState.NOT_FOUND)
            for i in ids
        }

    async def _accounting(self, target: Target, ids: list[str]) -> dict[str, sp.SchedulerRecord]:
        """Finished jobs that left slurmctld's memory; failures here just leave them NOT_FOUND."""
        known = self._sacct_mode.get(target.login_host)
        modes: list[tuple[str, ...]] = [known] if known else [("sacct",), ("sacct", "-c")]
        for mode in modes:
            self.sacct_calls += 1
            res = await self.run(
                target, [*mode, "-X", "-P", "-n", f"--format={sp.SACCT_FIELDS}", "-j", ",".join(ids)]
            )
            if res is not None and res.returncode == 0:
                self._sacct_mode[target.login_host] = mode
                return sp.parse_sacct(res.stdout, frozenset(ids))
        return {}

    # -- cancel --------------------------------------------------------------------------------------

    async def cancel(self, job: JobHandle) -> None:
        """scancel, then confirm the job left the queue. Idempotent: a finished job is success."""
        target = self._job_target(job)
        self.scancel_calls += 1
        res = await self.run(target, ["scancel", job.job_id])
        if res is None:
            raise self._fail("scancel", target, res)
        if res.returncode != 0:
            low = res.stderr.lower()
            if not (sp.is_invalid_job_id(res.stderr) or "already completing or completed" in low):
                raise self._fail("scancel", target, res)
        await self._confirm_gone(target, job)
        secrets = job.extra.get("secrets_dir")
        if isinstance(secrets, str):  # files of nodes that never started
            await trio.to_thread.run_sync(secrets_env.remove_dir, Path(secrets))

    async def _confirm_gone(self, target: Target, job: JobHandle) -> None:
        delay = 0.1
        last: JobObservation | None = None
        with trio.move_on_after(self.cancel_confirm_timeout):
            while True:
                try:
                    last = (await self._observe(target, [job.job_id]))[job.job_id]
                except ProviderError:
                    last = None  # no answer this time; keep asking until the deadline
                if last is not None and last.state in (JobState.ENDED, JobState.NOT_FOUND):
                    return
                await trio.sleep(delay)
                delay = min(delay * 1.5, 2.0)
        state = last.scheduler_state if last else "unknown (no answer)"
        raise ProviderError(
            f"job {job.job_id} still {state} {self.cancel_confirm_timeout:g}s after scancel", transient=True
        )

    # -- per-node liveness and restart (issue 12 #9) ----------------------------------------------
    # Each srun task runs the worker under a small supervisor (slurm_script.task_command) that marks
    # the worker's death in the node's exit marker at once and restarts it when the router writes
    # a higher attempt number into the node's restart file. A node whose whole host died leaves no
    # marker: the job's state (poll) and the heartbeat silence (`stale`) cover that case.
    node_liveness_interval = 1.0

    async def node_liveness(self, job: JobHandle) -> dict[int, NodeLiveness]:
        return await trio.to_thread.run_sync(read_task_markers, job)

    async def restart_node(self, job: JobHandle, node_id: int, spec: LaunchSpec) -> dict[str, Any]:
        secrets_dir = job.extra.get("secrets_dir")
        secret: dict[str, str] = {}
        if isinstance(secrets_dir, str):  # the first worker deleted its file once read: write it again
            profile = self.config.slurm_profile(job.profile)
            try:
                _, secret = secrets_env.worker_env_parts(profile.env, {}, spec.worker_env, os.environ)
            except secrets_env.MissingVariable as exc:
                raise ProviderError(f"cannot restart node {node_id}: {exc}", transient=False) from None

        def request() -> None:
            if isinstance(secrets_dir, str) and secret:
                secrets_env.write_node_file(Path(secrets_dir), node_id, secret)
            path = restart_path(job, node_id)
            attempt = _read_attempt(path) + 1
            tmp = path.with_name(path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(str(attempt))
            os.replace(tmp, path)  # the supervisor never reads half a number

        try:
            await trio.to_thread.run_sync(request)
        except OSError as exc:
            raise ProviderError(f"cannot ask node {node_id} of job {job.job_id} to restart: {exc}",
                                transient=False) from None
        return dict(job.extra)

    async def adopt(self, job: JobHandle) -> None:
        """Nothing to reattach: the job lives in Slurm and the router follows its mailbox files."""


def exit_marker_path(job: JobHandle, node_id: int) -> Path:
    return job.swarm_root / "mailbox" / "outbox" / f"{job.job_id}_{node_id:02d}.exit"


def restart_path(job: JobHandle, node_id: int) -> Path:
    return job.swarm_root / "mailbox" / "inbox" / f"{job.job_id}_{node_id:02d}.restart"


def _read_small(path: Path) -> str | None:
    """A small regular file's text, never following a symlink; None if it is not there."""
    try:
        fd = open_mailbox_file(path, os.O_RDONLY)
    except OSError:  # missing, a symlink or not a regular file (UnsafeMailboxFile is an OSError)
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read(1 << 16).decode("ascii", "replace")


def _read_attempt(path: Path) -> int:
    text = (_read_small(path) or "").strip()
    return int(text) if text.isdigit() else 0


def read_task_markers(job: JobHandle) -> dict[int, NodeLiveness]:
    """Nodes whose current worker attempt has died, per the supervisors' exit markers."""
    out: dict[int, NodeLiveness] = {}
    outbox = job.swarm_root / "mailbox" / "outbox"
    try:
        names = [e.name for e in os.scandir(outbox) if e.name.endswith(".exit")]
    except OSError:
        return out
    prefix = f"{job.job_id}_"
    for name in names:
        stem = name[: -len(".exit")]
        if not stem.startswith(prefix) or not stem[len(prefix):].isdigit():
            continue
        node_id = int(stem[len(prefix):])
        lines = (_read_small(outbox / name) or "").split("\n")
        last = next((ln.split() for ln in reversed(lines) if len(ln.split()) == 3), None)
        if last is None or not (last[0].isdigit() and last[1].lstrip("-").isdigit()):
            continue
        attempt, status = int(last[0]), int(last[1])
        if attempt >= _read_attempt(restart_path(job, node_id)):
            out[node_id] = NodeLiveness(False, f"the worker exited with status {status} on its node")
    return out


def install_pyz(pyz: Path, bin_dir: Path) -> Path:
    """Copy the .pyz once under a content-hashed name the nodes can read; returns the copy's path."""
    digest = hashlib.sha256()
    with open(pyz, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    dest = bin_dir / f"codeswarm-{digest.hexdigest()[:16]}.pyz"
    if dest.is_file() and dest.stat().st_size == pyz.stat().st_size:
        return dest
    bin_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = bin_dir / f".{dest.name}.{os.getpid()}.tmp"
    shutil.copyfile(pyz, tmp)
    os.chmod(tmp, 0o700)
    os.replace(tmp, dest)  # atomic: a node never runs a half-copied file
    return dest
