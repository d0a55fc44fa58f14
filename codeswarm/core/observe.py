"""Scheduler evidence -> swarm state (PROTOCOL.md 7, the failure model).

NOT_FOUND is weak evidence: the job is declared gone only after `job_gone_confirmations`
misses in a row spanning `job_gone_window_seconds`. The miss counter is durable (it changes
through `scheduler_miss` events), so a router restart does not reset the count.
"""

from __future__ import annotations

from dataclasses import dataclass

from codeswarm.core.evidence import JobObservation, JobState
from codeswarm.core.kernel import Event, Feature, Ids, Out
from codeswarm.core.lifecycle import terminated
from codeswarm.core.nodeloss import may_restart
from codeswarm.core.records import CoreState, Swarm
from codeswarm.core.steps import set_state


@dataclass(frozen=True)
class Observed:
    """One successful scheduler observation of a swarm's job."""

    swarm_id: str
    observation: JobObservation


def _job_gone(out: Out, state: CoreState, swarm: Swarm, obs: JobObservation) -> None:
    if swarm.state in ("terminated", "terminating"):
        return
    reason = "launch_failed" if swarm.state == "pending" and swarm.running_at is None else "job_ended"
    terminated(out, state, swarm, reason, None, scheduler_state=obs.scheduler_state or obs.reason)


def decide_observed(state: CoreState, inp: Observed, now: float, ids: Ids, out: Out) -> None:
    swarm = state.swarms.get(inp.swarm_id)
    obs = inp.observation
    if swarm is None or obs.state == JobState.UNKNOWN:  # no evidence either way: keep everything as it is
        return
    s = state.settings
    if obs.state == JobState.NOT_FOUND:
        misses = swarm.miss_count + 1
        first = swarm.first_miss_at if swarm.miss_count else now
        out.emit("scheduler_miss", {"swarm_id": swarm.swarm_id, "job_id": swarm.job_id, "miss_count": misses,
                                    "first_miss_at": first})
        if misses >= s.job_gone_confirmations and now - (first if first is not None else now) >= s.job_gone_window_seconds:
            _job_gone(out, state, swarm, obs)
        return
    if swarm.miss_count:
        out.emit("scheduler_miss", {"swarm_id": swarm.swarm_id, "job_id": swarm.job_id, "miss_count": 0,
                                    "first_miss_at": None})
    if obs.state == JobState.RUNNING and swarm.state == "pending":
        set_state(out, swarm, "running", None)
    elif obs.state == JobState.ENDED:
        # Local jobs "end" when no worker process is left; not while a lost node is being restarted, nor
        # while a dead node's loss is not yet seen (the node watch then restarts it: nodeloss.may_restart).
        if obs.reason == "workers_exited" and any(may_restart(swarm, n) for n in range(swarm.node_count)):
            return
        _job_gone(out, state, swarm, obs)


def reduce_miss(state: CoreState, event: Event) -> None:
    swarm = state.swarms.get(event.data.get("swarm_id") or "")
    if swarm is not None:
        swarm.miss_count = int(event.data.get("miss_count") or 0)
        swarm.first_miss_at = event.data.get("first_miss_at")


FEATURE = Feature(name="observe", deciders={Observed: decide_observed}, reducers={"scheduler_miss": reduce_miss})
