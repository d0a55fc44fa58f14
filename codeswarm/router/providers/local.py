"""The local provider (the embedded default): one detached worker process per node.

Workers run in their own session (process group) so that a router restart does not kill
them; the router finds them again by pid and start time (pids are reused).
"""

from __future__ import annotations

import os
import secrets
import select
import signal
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import trio

from codeswarm import secrets_env
from codeswarm.config import Config
from codeswarm.errors import ProviderError
from codeswarm.mailbox import inbox_path, open_mailbox_file, prepare_swarm_root, workspace_path
from codeswarm.paths import local_worker_command
from codeswarm.router.providers.base import (
    ClusterProvider,
    JobHandle,
    JobObservation,
    JobState,
    LaunchSpec,
    NodeLiveness,
)

STOP_GRACE_SECONDS = 5.0
SPAWN_THREADS = 8


def process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: identifies a process beyond its (reusable) pid."""
    try:  # os.open/read, not Path.read_text: a restarted router checks 1,000 adopted workers per sweep
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            raw = os.read(fd, 4096)
        finally:
            os.close(fd)
    except OSError:
        return None
    data = raw.decode(errors="replace")
    fields = data[data.rfind(")") + 2 :].split()
    state = fields[0] if fields else "?"
    if state == "Z":  # a zombie has exited
        return None
    return fields[19] if len(fields) > 19 else None


class LocalProvider(ClusterProvider):
    backend = "local"
    poll_interval = 1.0

    def __init__(self, config: Config) -> None:
        assert config.local is not None
        self.root = config.local.workspace_root
        self.default_sandbox = config.local.default_sandbox_mode
        self.force_poll = config.router.mailbox_watch == "poll"  # the switch reaches the workers too
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._adopted = AdoptedProcesses()  # workers of an earlier router: not our children

    @staticmethod
    def _expanded(spec: LaunchSpec) -> LaunchSpec:
        try:  # ${VAR} from the router's environment; the values stay in the workers' environment
            env = secrets_env.expand(spec.worker_env, os.environ)
        except secrets_env.MissingVariable as exc:
            raise ProviderError(f"cannot launch: {exc}", transient=False) from None
        return replace(spec, worker_env=env)

    async def submit(self, spec: LaunchSpec) -> JobHandle:
        spec = self._expanded(spec)
        job_id = f"local-{secrets.token_hex(6)}"
        swarm_root = self.root / job_id
        try:
            return await trio.to_thread.run_sync(self._spawn_all, spec, job_id, swarm_root)
        except OSError as exc:
            raise ProviderError(f"cannot start local workers in {swarm_root}: {exc}", transient=False) from None

    def _spawn_all(self, spec: LaunchSpec, job_id: str, swarm_root: Path) -> JobHandle:
        prepare_swarm_root(swarm_root, spec.node_count)
        # fork+exec of many nodes from a few threads: the launch is not N spawns in a row long
        from concurrent.futures import ThreadPoolExecutor  # at the first launch, not at every router start

        with ThreadPoolExecutor(max_workers=min(SPAWN_THREADS, spec.node_count)) as pool:
            started = list(pool.map(lambda n: _capture(self._spawn_one, spec, job_id, swarm_root, n),
                                    range(spec.node_count)))
        procs = [p for p in started if isinstance(p, dict)]
        errors = [p for p in started if isinstance(p, OSError)]
        if errors:
            for p in procs:
                _signal_group(p["pid"], signal.SIGKILL)
            raise errors[0]
        return JobHandle(job_id=job_id, swarm_root=swarm_root, backend="local", extra={"procs": procs})

    def _spawn_one(self, spec: LaunchSpec, job_id: str, swarm_root: Path, node_id: int) -> dict[str, Any]:
        """Start node_id's worker in its workspace; returns its {pid, start} record."""
        argv, env_extra = local_worker_command()
        env = {**os.environ, **env_extra, **spec.worker_env}
        env.setdefault("CODESWARM_SANDBOX_MODE", self.default_sandbox)
        if self.force_poll:
            env["CODESWARM_MAILBOX_WATCH"] = "poll"
        env.update({"CODESWARM_JOB_ID": job_id, "CODESWARM_NODE_ID": str(node_id),
                    "CODESWARM_SWARM_ROOT": str(swarm_root)})
        # The inbox exists before its worker: the worker watches the file itself from the start.
        os.close(open_mailbox_file(inbox_path(swarm_root, job_id, node_id), os.O_WRONLY | os.O_CREAT | os.O_APPEND))
        log_file = open(swarm_root / f"worker_{node_id:02d}.log", "ab")
        try:
            proc = subprocess.Popen(
                argv,
                cwd=workspace_path(swarm_root, node_id),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the router; its own process group
                close_fds=True,
            )
        finally:
            log_file.close()
        self._children[proc.pid] = proc
        return {"pid": proc.pid, "start": process_start_time(proc.pid)}

    def _alive(self, proc: dict[str, Any], no_child_exited: bool = False, adopted_checked: bool = False) -> bool:
        """`no_child_exited`/`adopted_checked`: the sweep calling this asked waitid / the pidfds once for all."""
        pid = proc["pid"]
        child = self._children.get(pid)
        if child is not None:
            if no_child_exited:  # one waitid for the whole sweep said no child of ours has ended
                return True
            if child.poll() is not None:  # reaps our own zombie
                self._children.pop(pid, None)
                return False
            return True
        start = proc.get("start")
        if not adopted_checked:
            self._adopted.check()
        held = self._adopted.alive(pid, start)
        return held if held is not None else self._adopted.verify(pid, start)

    async def poll(self, jobs: list[JobHandle]) -> dict[str, JobObservation]:
        out = {}
        for job in jobs:
            procs = job.extra.get("procs", [])
            quiet = _no_child_exited()
            self._adopted.check()
            if any(self._alive(p, quiet, True) for p in procs):  # the job runs while one worker does
                out[job.job_id] = JobObservation(JobState.RUNNING, "RUNNING")
            else:
                out[job.job_id] = JobObservation(JobState.ENDED, "COMPLETED", reason="workers_exited")
        return out

    async def cancel(self, job: JobHandle) -> None:
        procs = [p for p in job.extra.get("procs", []) if self._alive(p)]
        for p in procs:
            _signal_group(p["pid"], signal.SIGTERM)
        with trio.move_on_after(STOP_GRACE_SECONDS):
            while any(self._alive(p) for p in procs):
                await trio.sleep(0.05)
        for p in procs:
            if self._alive(p):
                _signal_group(p["pid"], signal.SIGKILL)
        with trio.move_on_after(2.0):
            while any(self._alive(p) for p in procs):
                await trio.sleep(0.02)
        still = [p["pid"] for p in procs if self._alive(p)]
        if still:
            raise ProviderError(f"workers still alive after SIGKILL: {still}", transient=True)

    # Per-node liveness: the process table, checked twice a second (a few stat calls per node).
    node_liveness_interval = 0.5

    async def node_liveness(self, job: JobHandle) -> dict[int, NodeLiveness]:
        procs = job.extra.get("procs", [])
        quiet = _no_child_exited()
        self._adopted.check()
        children, held = self._children, self._adopted.alive
        if quiet and all(isinstance(p, dict) and (p.get("pid") in children or held(p.get("pid"), p.get("start")))
                         for p in procs):
            # All ours and none ended (one waitid said so), or adopted and held by a pidfd that did not
            # fire: no per-node check, no per-node record (bench_scale: 1,000 nodes twice a second).
            return dict.fromkeys(range(len(procs)), _ALIVE)
        out = {}
        for node_id, p in enumerate(procs):
            if isinstance(p, dict) and isinstance(p.get("pid"), int):
                alive = self._alive(p, quiet, True)
                out[node_id] = NodeLiveness(alive, "" if alive else f"worker pid {p['pid']} is gone")
        return out

    async def restart_node(self, job: JobHandle, node_id: int, spec: LaunchSpec) -> dict[str, Any]:
        procs = list(job.extra.get("procs", []))
        if not 0 <= node_id < len(procs):
            raise ProviderError(f"node {node_id} is not part of job {job.job_id}", transient=False)
        if self._alive(procs[node_id]):  # never two workers on one mailbox
            raise ProviderError(f"node {node_id}'s worker (pid {procs[node_id]['pid']}) is still running",
                                transient=True)
        try:
            procs[node_id] = await trio.to_thread.run_sync(self._spawn_one, self._expanded(spec), job.job_id,
                                                           job.swarm_root, node_id)
        except OSError as exc:
            raise ProviderError(f"cannot restart node {node_id} in {job.swarm_root}: {exc}", transient=False) from None
        return {**job.extra, "procs": procs}

    async def adopt(self, job: JobHandle) -> None:
        """Nothing to reattach: liveness comes from pid + start time, output from the outboxes."""


_ALIVE = NodeLiveness(True)


class AdoptedProcesses:
    """Workers this router did not start (it was restarted), each held by a pidfd once /proc said
    it is the recorded process (pid + start time): one epoll_wait then tells which of them ended,
    zombies included, where reading /proc/<pid>/stat for each cost a restarted router ~40 ms per
    sweep of 1,000 nodes, two sweeps a second. Without pidfd_open (kernel < 5.3, out of file
    descriptors) a process is simply not held and /proc is read for it as before."""

    def __init__(self) -> None:
        self._fds: dict[tuple[int, str | None], int] = {}
        self._keys: dict[int, tuple[int, str | None]] = {}
        self._ended: set[tuple[int, str | None]] = set()
        self._epoll: select.epoll | None = None

    def alive(self, pid: object, start: object) -> bool | None:
        """None: not held (ask /proc)."""
        key = (pid, start)
        if key in self._ended:
            return False
        return True if key in self._fds else None

    def check(self) -> None:
        """One epoll_wait: the held processes that ended since are not held any more, but dead."""
        if self._epoll is None or not self._fds:
            return
        for fd, _ in self._epoll.poll(0, len(self._fds)):
            key = self._keys.pop(fd)
            del self._fds[key]
            self._epoll.unregister(fd)
            os.close(fd)
            self._ended.add(key)

    def verify(self, pid: int, start: str | None) -> bool:
        """Is `pid` the recorded process (its start time, not a zombie)? Held from now on if so:
        the pidfd is taken first, so the /proc look that follows is about the process it holds."""
        fd = -1
        if start is not None and hasattr(os, "pidfd_open"):
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                return False
            except OSError:  # no descriptor to spare: /proc only, this time
                fd = -1
        now_start = process_start_time(pid)
        alive = now_start is not None and (start is None or now_start == start)
        if fd >= 0:
            if not alive:
                os.close(fd)
                return False
            if self._epoll is None:
                self._epoll = select.epoll()
            self._epoll.register(fd, select.EPOLLIN)
            self._fds[(pid, start)] = fd
            self._keys[fd] = (pid, start)
        return alive


def _no_child_exited() -> bool:
    """True when no child of this process has ended, by one waitid(WNOWAIT) that reaps nothing.

    A sweep over 1,000 workers otherwise costs 1,000 waitpid calls twice a second (~3 % of a core
    while idle, bench_scale). Any ended child (ours or another task's not yet reaped, e.g. a git or
    sbatch process) makes the caller fall back to the per-worker check, so nothing is missed."""
    try:
        return os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    except ChildProcessError:  # no children at all: a worker we hold was reaped elsewhere, check each
        return False


def _capture(fn: Any, *args: Any) -> Any:
    """fn(*args), or the OSError it raised: one failed spawn must not hide the started others."""
    try:
        return fn(*args)
    except OSError as exc:
        return exc


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # start_new_session: the worker leads its own group
    except (ProcessLookupError, PermissionError):
        pass

