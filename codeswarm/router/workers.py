"""The shell side of per-node liveness and the restart policy (issue 12 #9).

`watch_nodes` asks the provider, every `node_liveness_interval`, which workers of its running
swarms are gone (local: the process; Slurm: the task supervisor's exit marker). A node named dead
is first read to the end of its outbox (a worker that exited cleanly wrote `worker_exited`: that
is not a loss), then the core decides (`NodeGone`). `restart_node` carries out the core's
`RestartNode` effect: wait out the backoff, have the provider start the worker again with the
swarm's environment, and tell the core what came of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from codeswarm.core.nodeloss import LOSABLE, NodeGone, NodeRespawned, NodeRespawnFailed, RestartNode
from codeswarm.errors import ProviderError
from codeswarm.router.providers.base import ClusterProvider, JobHandle, LaunchSpec
from codeswarm.router.worker_env import worker_env

if TYPE_CHECKING:
    from codeswarm.router.app import Router

log = logging.getLogger("codeswarm.router.workers")


async def check_nodes_once(router: Router, backend: str, provider: ClusterProvider) -> None:
    swarms = [sw for sw in router.state.swarms.values() if sw.provider == backend and sw.active]
    for sw in swarms:
        if not any(n.worker in LOSABLE for n in sw.nodes):
            continue
        try:
            seen = await provider.node_liveness(JobHandle.from_json(sw.job))
        except ProviderError as exc:  # no evidence this time; the job poller reports scheduler trouble
            log.debug("node liveness of %s: %s", sw.swarm_id, exc)
            continue
        for node_id in sorted(n for n, live in seen.items() if not live.alive):  # usually none
            if not 0 <= node_id < sw.node_count or sw.nodes[node_id].worker not in LOSABLE:
                continue
            router.ingest.drain_node(sw.swarm_id, node_id)  # a clean worker_exited is not a loss
            if sw.active and sw.nodes[node_id].worker in LOSABLE:
                decision = router.decide(NodeGone(sw.swarm_id, node_id, seen[node_id].detail or "the worker is gone"))
                await router.carry_out(decision.effects)


async def watch_nodes(router: Router, backend: str, provider: ClusterProvider,
                      failed: Callable[[str, int, BaseException], None]) -> None:
    interval = provider.node_liveness_interval
    if interval <= 0:
        return
    failures = 0
    while True:
        await trio.sleep(interval)
        try:
            await check_nodes_once(router, backend, provider)
        except Exception as exc:  # noqa: BLE001 - reported to clients by the server's loop report; the next round runs
            failures += 1
            failed(f"{backend} node liveness", failures, exc)
            continue
        failures = 0


async def restart_node(router: Router, effect: RestartNode) -> None:
    """Carry out RestartNode: backoff, then the provider starts the worker in its workspace."""
    await trio.sleep(effect.delay)
    swarm = router.state.swarms.get(effect.swarm_id)
    if swarm is None or not swarm.active or swarm.nodes[effect.node_id].worker != "lost":
        return
    provider = router.providers.get(swarm.provider)
    preset = router.config.preset(swarm.provider_id)
    try:
        if provider is None or preset is None:
            raise ProviderError(f"backend {swarm.provider} / preset {swarm.provider_id} is not configured any more",
                                transient=False)
        spec = LaunchSpec(swarm_id=swarm.swarm_id, node_count=swarm.node_count, params=swarm.params,
                          worker_env=worker_env(swarm.params, preset.env), profile=preset.cluster_profile)
        extra = await provider.restart_node(JobHandle.from_json(swarm.job), effect.node_id, spec)
    except ProviderError as exc:
        decision = router.decide(NodeRespawnFailed(effect.swarm_id, effect.node_id, effect.attempt, str(exc)))
    else:
        decision = router.decide(NodeRespawned(effect.swarm_id, effect.node_id, effect.attempt, extra))
    await router.carry_out(decision.effects)

