"""Per-node liveness and restart on the real Slurm test cluster (issue 12 #9), no router.

One worker of a 2-node job dies by SIGKILL on its node; the task supervisor marks it at once, so
`SlurmProvider.node_liveness` names that node (and only it) within 2 s. `restart_node` starts the
worker again on the same node, in the same job, with the same node id.
"""

from __future__ import annotations

import time

import pytest
import trio

from codeswarm.router.providers.base import JobState, LaunchSpec
from tests.slurm.test_provider import make_provider, wait_state

pytestmark = pytest.mark.slurm

# Each start is counted; node 1's first worker kills itself with SIGKILL after 2 s.
WORKER = (
    'echo "$(hostname)" >> "$CODESWARM_SWARM_ROOT/starts_$CODESWARM_NODE_ID.txt"; '
    'if [ "$CODESWARM_NODE_ID" = 1 ] && [ ! -e "$CODESWARM_SWARM_ROOT/killed" ]; then '
    'touch "$CODESWARM_SWARM_ROOT/killed"; sleep 2; date +%s.%N > "$CODESWARM_SWARM_ROOT/killed"; kill -9 $$; fi; '
    'exec sleep 300'
)


@pytest.mark.trio
async def test_a_killed_worker_is_seen_at_once_and_restarted_in_place(slurm, tmp_path):
    p = make_provider(tmp_path, WORKER)
    spec = LaunchSpec("liveness-" + str(time.time_ns()), 2, {"restart": "on-failure", "restart_max": 2},
                      {"CODESWARM_PARAMS": "{}"})
    job = await p.submit(spec)
    try:
        await wait_state(p, job, {JobState.RUNNING})
        killed = job.swarm_root / "killed"
        with trio.fail_after(30):
            while True:
                dead = await p.node_liveness(job)
                if dead:
                    seen = time.time()
                    break
                await trio.sleep(0.1)
        assert list(dead) == [1] and not dead[1].alive and "137" in dead[1].detail
        killed_at = float(killed.read_text())
        assert seen - killed_at <= 2.0, f"seen {seen - killed_at:.2f} s after the kill"
        first_host = (job.swarm_root / "starts_1.txt").read_text().split()
        assert len(first_host) == 1
        extra = await p.restart_node(job, 1, spec)
        assert extra == job.extra
        with trio.fail_after(15):
            while len((job.swarm_root / "starts_1.txt").read_text().split()) < 2:
                await trio.sleep(0.1)
        hosts = (job.swarm_root / "starts_1.txt").read_text().split()
        assert hosts[0] == hosts[1], "restarted on its own node"
        assert await p.node_liveness(job) == {}, "alive again"
        assert (await p.poll([job]))[job.job_id].state is JobState.RUNNING
        assert len((job.swarm_root / "starts_0.txt").read_text().split()) == 1, "node 0 never restarted"
    finally:
        await p.cancel(job)
