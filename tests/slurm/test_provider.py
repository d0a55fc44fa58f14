"""SlurmProvider against the real 4-node test cluster (no router): submit, poll, cancel, job ends,
aged-out jobs through `sacct -c`, and a controller that is down or hangs."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import trio

from codeswarm.config import parse_config
from codeswarm.errors import ProviderError
from codeswarm.router.providers.base import JobHandle, JobObservation, JobState, LaunchSpec
from codeswarm.router.providers.slurm import SlurmProvider

pytestmark = pytest.mark.slurm

# Stands in for `codeswarm worker`: each node reports who it is, then waits.
NODE_REPORT = (
    'echo "$CODESWARM_NODE_ID $(hostname) $CODESWARM_JOB_ID $SLURMD_NODENAME $CODESWARM_PARAMS" '
    '> "$CODESWARM_SWARM_ROOT/report_$CODESWARM_NODE_ID.txt"; '
)


def make_provider(root: Path, command: str, **kw) -> SlurmProvider:
    config = parse_config(
        {"cluster": {"slurm": {"workspace_root": str(root), "cluster_subdir": "cs", "time_limit": "00:10:00",
                               "profiles": {"default": {"partition": "debug"},
                                            "second": {"partition": "second"}}}}},
        None, base_dir=root,
    )
    kw.setdefault("command_timeout", 5)
    return SlurmProvider(config, worker_command=["/bin/sh", "-c", command], **kw)


def spec(nodes: int, swarm_id: str | None = None, profile: str | None = None) -> LaunchSpec:
    # Unique like the router's: submit() recognises its own job by the swarm id in name and comment.
    swarm_id = swarm_id or uuid.uuid4().hex
    return LaunchSpec(swarm_id, nodes, {}, {"CODESWARM_PARAMS": '{"worker_mode": "mock"}'}, profile)


async def wait_state(p: SlurmProvider, job: JobHandle, states: set[JobState], timeout: float = 30) -> JobObservation:
    with trio.fail_after(timeout):
        while True:
            obs = (await p.poll([job]))[job.job_id]
            if obs.state in states:
                return obs
            await trio.sleep(0.2)


@pytest.mark.trio
async def test_submit_three_nodes_poll_cancel(slurm, tmp_path):
    tmp_path = tmp_path / "work space"  # a workspace path with a space: quoting in #SBATCH and the script
    tmp_path.mkdir()
    p = make_provider(tmp_path, NODE_REPORT + "exec sleep 300")
    job = await p.submit(spec(3))
    assert job.backend == "slurm" and job.job_id.isdigit()
    assert job.swarm_root == tmp_path / "cs" / "runs" / job.job_id
    assert (job.swarm_root / "mailbox" / "outbox").is_dir()

    obs = await wait_state(p, job, {JobState.RUNNING})
    assert obs.scheduler_state == "RUNNING" and obs.nodes
    reports = job.swarm_root.glob("report_*.txt")
    with trio.fail_after(15):
        while len(list(job.swarm_root.glob("report_*.txt"))) < 3:
            await trio.sleep(0.1)
    lines = sorted(f.read_text().split(" ", 4) for f in job.swarm_root.glob("report_*.txt"))
    assert [ln[0] for ln in lines] == ["0", "1", "2"]  # CODESWARM_NODE_ID from SLURM_PROCID
    assert len({ln[1] for ln in lines}) == 3  # each task on its own node (own UTS hostname)
    assert {ln[2] for ln in lines} == {job.job_id}
    assert all('{"worker_mode": "mock"}' in ln[4] for ln in lines)
    del reports

    before = p.squeue_calls
    await p.poll([job])
    assert p.squeue_calls == before + 1

    await p.cancel(job)
    obs = (await p.poll([job]))[job.job_id]
    assert obs.state is JobState.ENDED and obs.reason == "cancelled"
    await p.cancel(job)  # idempotent
    out = slurm.run("squeue", "-h", "-j", job.job_id)
    assert out.stdout.strip() == ""  # left the queue (pending/running/completing)


@pytest.mark.trio
async def test_job_that_ends_by_itself_and_ages_out_is_found_by_sacct(slurm, tmp_path):
    p = make_provider(tmp_path, NODE_REPORT + "exit 3")
    job = await p.submit(spec(2))
    obs = await wait_state(p, job, {JobState.ENDED})
    assert obs.scheduler_state == "FAILED" and obs.reason == "failed"
    # MinJobAge=5: the record leaves slurmctld; squeue alone would say nothing, sacct -c still knows.
    with trio.fail_after(90):
        while slurm.run("squeue", "-h", "--states=all", "-j", job.job_id).returncode == 0 and \
                slurm.run("squeue", "-h", "--states=all", "-j", job.job_id).stdout.strip():
            await trio.sleep(1)
    sacct_before = p.sacct_calls
    obs = (await p.poll([job]))[job.job_id]
    assert obs.state is JobState.ENDED and obs.scheduler_state == "FAILED" and obs.reason == "failed"
    assert p.sacct_calls > sacct_before
    # An id Slurm never had is only NOT_FOUND (weak evidence; the core debounces it).
    ghost = JobHandle("999999", tmp_path / "ghost", "slurm", "default", {"login_host": ""})
    both = await p.poll([job, ghost])
    assert both["999999"].state is JobState.NOT_FOUND and both[job.job_id].state is JobState.ENDED


@pytest.mark.trio
async def test_controller_down_and_hanging_are_transient(slurm, tmp_path):
    p = make_provider(tmp_path, "exec sleep 300", command_timeout=3)
    job = await p.submit(spec(1))
    await wait_state(p, job, {JobState.RUNNING})

    await trio.to_thread.run_sync(slurm.control, "ctld-stop")
    with pytest.raises(ProviderError) as info:
        await p.poll([job])
    assert info.value.transient

    await trio.to_thread.run_sync(slurm.control, "ctld-start")
    assert (await wait_state(p, job, {JobState.RUNNING, JobState.ENDED}, timeout=30)).state is JobState.RUNNING

    await trio.to_thread.run_sync(slurm.control, "ctld-pause")
    with pytest.raises(ProviderError) as info:
        await p.poll([job])
    assert info.value.transient and "timed out" in str(info.value)
    await trio.to_thread.run_sync(slurm.control, "ctld-resume")
    assert (await p.poll([job]))[job.job_id].state is JobState.RUNNING
    await p.cancel(job)


@pytest.mark.trio
async def test_two_profiles_and_many_jobs_one_squeue_per_poll(slurm, tmp_path):
    p = make_provider(tmp_path, "exec sleep 300")
    jobs = [await p.submit(spec(1, None, "second" if i % 2 else None)) for i in range(6)]
    assert {j.profile for j in jobs} == {"default", "second"}
    with trio.fail_after(30):
        while True:
            before = p.squeue_calls
            obs = await p.poll(jobs)
            assert p.squeue_calls == before + 1
            if all(o.state is JobState.RUNNING for o in obs.values()):
                break
            await trio.sleep(0.3)
    parts = slurm.run("squeue", "-h", "-o", "%i %P", "-j", ",".join(j.job_id for j in jobs)).stdout.split("\n")
    partitions = dict(line.split() for line in parts if line.strip())
    assert {partitions[j.job_id] for j in jobs if j.profile == "second"} == {"second"}
    assert {partitions[j.job_id] for j in jobs if j.profile == "default"} == {"debug"}
    for j in jobs:
        await p.cancel(j)


FAKE_SSH = r"""#!/bin/bash
# ssh stand-in: fails with 255 (transport failure) while <dir>/ssh.fail > 0, else runs the remote
# command line locally through a shell, as sshd would.
d=$(dirname "$0")
echo "$*" >> "$d/ssh.calls"
n=$(cat "$d/ssh.fail" 2>/dev/null || echo 0)
if [ "$n" -gt 0 ]; then echo $((n - 1)) > "$d/ssh.fail"; echo "ssh: connect to host $host port 22: Connection refused" >&2; exit 255; fi
while [ $# -gt 0 ] && [ "$1" != "--" ]; do shift; done
shift
exec bash -c "$1"
"""


@pytest.mark.trio
async def test_login_host_through_ssh_with_transport_retries(slurm, tmp_path, monkeypatch):
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    (bindir / "ssh").write_text(FAKE_SSH)
    (bindir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{__import__('os').environ['PATH']}")
    config = parse_config(
        {"cluster": {"slurm": {"workspace_root": str(tmp_path), "cluster_subdir": "cs", "time_limit": "00:10:00",
                               "partition": "debug", "login_host": "fakelogin", "ssh_retry_attempts": 3,
                               "ssh_retry_delay_seconds": 0.1}}},
        None, base_dir=tmp_path,
    )
    p = SlurmProvider(config, worker_command=["/bin/sh", "-c", NODE_REPORT + "exec sleep 300"], command_timeout=10)
    (bindir / "ssh.fail").write_text("1")  # sbatch's connection fails: not retried blindly
    first = spec(2)
    with pytest.raises(ProviderError) as info:
        await p.submit(first)
    assert info.value.transient
    name = f"codeswarm-{first.swarm_id[:8]}"
    assert slurm.run("squeue", "-h", "--states=all", "--name", name).stdout.strip() == ""  # nothing submitted

    job = await p.submit(spec(2))
    assert job.extra["login_host"] == "fakelogin"
    (bindir / "ssh.fail").write_text("2")  # two transport failures, then the answer: retried within the poll
    obs = await wait_state(p, job, {JobState.RUNNING})
    assert obs.scheduler_state == "RUNNING"
    with trio.fail_after(15):
        while len(list(job.swarm_root.glob("report_*.txt"))) < 2:
            await trio.sleep(0.1)
    (bindir / "ssh.fail").write_text("3")  # more failures than attempts: transient, no evidence
    with pytest.raises(ProviderError) as info:
        await p.poll([job])
    assert info.value.transient and "fakelogin" in str(info.value)
    await p.cancel(job)
    assert (await p.poll([job]))[job.job_id].state is JobState.ENDED
    calls = (bindir / "ssh.calls").read_text().splitlines()
    assert all("fakelogin -- " in c for c in calls) and any("sbatch --parsable" in c for c in calls)
