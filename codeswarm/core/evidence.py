"""Scheduler evidence: what a provider observed about a job. Providers produce it, the core
decides what it means (providers/base.py re-exports these types)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


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
