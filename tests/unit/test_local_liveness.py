"""LocalProvider per-node liveness and node restart (issue 12 #9), with real worker processes.

The workers run from the source tree (mock runtime); everything is stopped by the provider's own
cancel, by PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from codeswarm.config import Config, LocalCluster, RouterSettings
from codeswarm.errors import ProviderError
from codeswarm.paths import self_env
from codeswarm.router.providers.base import LaunchSpec
from codeswarm.router.providers.local import LocalProvider


def provider(root: Path) -> LocalProvider:
    cfg = Config.__new__(Config)
    object.__setattr__(cfg, "local", LocalCluster(workspace_root=root))
    object.__setattr__(cfg, "router", RouterSettings())
    return LocalProvider(cfg)


def spec(nodes: int) -> LaunchSpec:
    return LaunchSpec(swarm_id="s", node_count=nodes, params={"worker_mode": "mock"},
                      worker_env={"CODESWARM_WORKER_MODE": "mock", "CODESWARM_HEARTBEAT_SECONDS": "3600"})


async def wait_dead(p: LocalProvider, job: object, node: int) -> str:
    with trio.fail_after(10):  # a bound, not a figure: a loaded machine may take seconds to run the poll
        while True:
            live = await p.node_liveness(job)  # type: ignore[arg-type]
            if not live[node].alive:
                return live[node].detail
            await trio.sleep(0.02)


@pytest.mark.trio
async def test_node_liveness_sees_one_dead_worker_and_restart_replaces_it(tmp_path: Path) -> None:
    p = provider(tmp_path)
    job = await p.submit(spec(3))
    try:
        live = await p.node_liveness(job)
        assert sorted(live) == [0, 1, 2] and all(v.alive for v in live.values())
        victim = job.extra["procs"][1]["pid"]
        os.killpg(victim, signal.SIGKILL)
        detail = await wait_dead(p, job, 1)
        assert str(victim) in detail
        live = await p.node_liveness(job)
        assert live[0].alive and live[2].alive, "only the killed node is dead"
        extra = await p.restart_node(job, 1, spec(3))
        assert extra["procs"][1]["pid"] != victim and extra["procs"][0] == job.extra["procs"][0]
        job.extra = extra
        live = await p.node_liveness(job)
        assert all(v.alive for v in live.values())
        # a live node is never started twice on one mailbox
        with pytest.raises(ProviderError, match="still running"):
            await p.restart_node(job, 0, spec(3))
        with pytest.raises(ProviderError, match="not part of"):
            await p.restart_node(job, 7, spec(3))
    finally:
        await p.cancel(job)
    live = await p.node_liveness(job)
    assert not any(v.alive for v in live.values())


def test_a_second_worker_for_the_same_node_refuses_to_start(tmp_path: Path) -> None:
    """Two workers on one mailbox would interleave its outbox: the node lock stops the second."""
    root = tmp_path / "runs" / "j1"
    (root / "node_00").mkdir(parents=True)
    env = {**os.environ, **self_env(), "CODESWARM_JOB_ID": "j1", "CODESWARM_NODE_ID": "0",
           "CODESWARM_SWARM_ROOT": str(root), "CODESWARM_WORKER_MODE": "mock", "CODESWARM_HEARTBEAT_SECONDS": "3600"}
    first = subprocess.Popen([sys.executable, "-m", "codeswarm", "worker"], env=env, cwd=root / "node_00",
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        outbox = root / "mailbox" / "outbox" / "j1_00.jsonl"
        end = time.monotonic() + 20
        while (not outbox.exists() or b"worker_started" not in outbox.read_bytes()) and time.monotonic() < end:
            time.sleep(0.05)
        size = outbox.stat().st_size
        second = subprocess.run([sys.executable, "-m", "codeswarm", "worker"], env=env, cwd=root / "node_00",
                                capture_output=True, text=True, timeout=30)
        assert second.returncode == 3 and "already has a running worker" in second.stderr
        assert outbox.stat().st_size == size, "the refused worker wrote nothing to the outbox"
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()


@pytest.mark.trio
async def test_a_sweep_over_live_workers_asks_the_kernel_once_and_still_sees_a_death(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """1,000 workers must not cost 1,000 waitpid calls per sweep; an ended child still gets each checked."""
    p = provider(tmp_path)
    job = await p.submit(spec(3))
    other = None
    try:
        polls: list[int] = []
        for pid, child in p._children.items():
            real = child.poll
            monkeypatch.setattr(child, "poll", lambda real=real, pid=pid: (polls.append(pid), real())[1])
        live = await p.node_liveness(job)
        assert all(v.alive for v in live.values()) and polls == [], "no per-worker waitpid while none ended"
        # an unrelated child of the router that ended and is not reaped yet: every worker is checked
        other = subprocess.Popen(["true"])
        os.waitid(os.P_PID, other.pid, os.WEXITED | os.WNOWAIT)  # blocks until it ended; reaps nothing
        live = await p.node_liveness(job)
        assert all(v.alive for v in live.values()) and sorted(polls) == sorted(p._children)
        victim = job.extra["procs"][2]["pid"]
        os.killpg(victim, signal.SIGKILL)
        assert str(victim) in await wait_dead(p, job, 2)
    finally:
        if other is not None:
            other.wait()
        await p.cancel(job)


@pytest.mark.trio
async def test_adopted_workers_are_held_by_pidfds_and_a_death_or_a_reused_pid_is_seen(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a router restart the workers are not its children: /proc is read once per worker, then a
    pidfd holds it, and one epoll_wait per sweep sees which ended (a zombie too: nobody reaps it here)."""
    from codeswarm.router.providers import local
    from codeswarm.router.providers.base import JobHandle

    p = provider(tmp_path)
    sleepers = [subprocess.Popen(["sleep", "600"]) for _ in range(3)]  # ours, not the provider's
    try:
        procs = [{"pid": s.pid, "start": local.process_start_time(s.pid)} for s in sleepers]
        procs.append({"pid": sleepers[0].pid, "start": "1"})  # a reused pid: another process than recorded
        job = JobHandle("j", tmp_path, "local", None, {"procs": procs})
        reads: list[int] = []
        real_read = local.process_start_time
        monkeypatch.setattr(local, "process_start_time", lambda pid: (reads.append(pid), real_read(pid))[1])
        live = await p.node_liveness(job)
        assert [v.alive for v in live.values()] == [True, True, True, False]
        reads.clear()
        live = await p.node_liveness(job)
        assert [v.alive for v in live.values()] == [True, True, True, False]
        assert reads == [sleepers[0].pid], "only the process that is not the recorded one is read again"
        sleepers[1].kill()  # not reaped: a zombie
        with trio.fail_after(10):
            while (await p.node_liveness(job))[1].alive:
                await trio.sleep(0.01)
        live = await p.node_liveness(job)
        assert [v.alive for v in live.values()] == [True, False, True, False]
        assert str(sleepers[1].pid) in live[1].detail
        assert (await p.poll([job]))["j"].state.name == "RUNNING"
    finally:
        for s in sleepers:
            s.kill()
            s.wait()
