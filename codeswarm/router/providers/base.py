"""The ClusterProvider interface: how the router starts, watches and stops jobs.

Providers report observations; the core decides what they mean. A provider raises
ProviderError(transient=True) for anything that is not evidence about a job (ssh timeouts,
an unreachable controller), and never changes a swarm's state itself.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codeswarm.errors import ProviderError


class JobState(enum.Enum):
    PENDING = "pending"  # queued, not yet running
    RUNNING = "running"
    ENDED = "ended"  # the scheduler (or the process table) says the job is over
    NOT_FOUND = "not_found"  # a successful listing did not show the job: weak evidence only
    UNKNOWN = "unknown"  # we could not tell


@dataclass(frozen=True)
class JobObservation:
    state: JobState
    scheduler_state: str | None = None  # e.g. RUNNING, TIMEOUT, CANCELLED
    reason: str | None = None  # open text: time_limit, cancelled, failed, node_failure ...
    nodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeLiveness:
    """Per-node evidence: is this node's worker process still there (issue 12 #9)?

    `alive=False` is strong evidence (the local process table, a Slurm task's exit marker), not
    silence: silence is the router's own `stale` timeout."""

    alive: bool
    detail: str = ""  # what was seen, e.g. "worker pid 4242 is gone", "task exited with status 137"


@dataclass(frozen=True)
class LaunchSpec:
    swarm_id: str
    node_count: int
    params: dict[str, Any]  # preset defaults merged with provider_params
    worker_env: dict[str, str]  # CODESWARM_* variables common to every node
    profile: str | None = None


@dataclass
class JobHandle:
    """What the router keeps about a submitted job (persisted in the swarm file)."""

    job_id: str
    swarm_root: Path
    backend: str
    profile: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # provider-specific (pids, pgid, ...)

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "swarm_root": str(self.swarm_root),
            "backend": self.backend,
            "profile": self.profile,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "JobHandle":
        return cls(
            job_id=d["job_id"],
            swarm_root=Path(d["swarm_root"]),
            backend=d["backend"],
            profile=d.get("profile"),
            extra=dict(d.get("extra") or {}),
        )


class ClusterProvider(ABC):
    backend: str

    @abstractmethod
    async def submit(self, spec: LaunchSpec) -> JobHandle:
        """Submit a job for spec.node_count workers. Mailbox dirs exist when this returns."""

    @abstractmethod
    async def poll(self, jobs: list[JobHandle]) -> dict[str, JobObservation]:
        """Observe every job in one batched call. Raises ProviderError(transient=True) on failure."""

    @abstractmethod
    async def cancel(self, job: JobHandle) -> None:
        """Stop the job (idempotent). Raises ProviderError when the backend refused."""

    # Seconds between node_liveness checks of a running job; 0 means the backend has no per-node evidence.
    node_liveness_interval: float = 0.0

    async def node_liveness(self, job: JobHandle) -> dict[int, NodeLiveness]:
        """Per-node liveness of a running job, for the nodes the backend has evidence about.

        Cheap and batched (called every node_liveness_interval); never raises for a node it cannot
        see (it is left out). Raises ProviderError(transient=True) when it could not look at all."""
        return {}

    async def restart_node(self, job: JobHandle, node_id: int, spec: LaunchSpec) -> dict[str, Any]:
        """Start node `node_id`'s worker again, in its workspace, with spec's environment.

        Returns the job's new `extra` (the router stores it with the node_restarted event, so a
        restarted router finds the new process). Raises ProviderError when it cannot."""
        raise ProviderError(f"the {self.backend} backend cannot restart a node", transient=False)

    async def adopt(self, job: JobHandle) -> None:
        """Called after a router restart for every non-terminal job; reattach what is needed."""

    async def aclose(self) -> None:
        """Release resources at router shutdown (never stops jobs)."""
