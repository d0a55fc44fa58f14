"""The ClusterProvider interface: how the router starts, watches and stops jobs.

Providers report observations; the core decides what they mean. A provider raises
ProviderError(transient=True) for anything that is not evidence about a job (ssh timeouts,
an unreachable controller), and never changes a swarm's state itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Evidence types belong to the core (it decides what they mean); providers produce them.
from codeswarm.core.evidence import JobObservation, JobState, NodeLiveness
from codeswarm.errors import ProviderError

__all__ = ["ClusterProvider", "JobHandle", "JobObservation", "JobState", "LaunchSpec", "NodeLiveness"]


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
