"""The runtime interface the worker drives: one agent session per node, one turn per injection."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

# emit(payload): append one `type: "runtime"` outbox line for the current turn.
Emit = Callable[[dict[str, Any]], None]


@dataclass
class WorkerContext:
    job_id: str
    node_id: int
    swarm_root: Path
    workspace: Path  # the node's cwd: runs/<job_id>/node_XX
    params: dict[str, Any]  # preset defaults merged with provider_params (swarm.json)
    env: dict[str, str] = field(default_factory=dict)  # extra env for the runtime process
    problems: list[str] = field(default_factory=list)  # found while loading; reported once the outbox is open

    @property
    def approval_policy(self) -> str:
        return str(self.params.get("approval_policy") or "never")

    @property
    def sandbox_mode(self) -> str:
        return str(self.params.get("sandbox_mode") or "workspace-write")


class Runtime(ABC):
    """An agent runtime. `run_turn` and `control` may run concurrently (approvals mid-turn)."""

    name: str

    def __init__(self, ctx: WorkerContext, emit: Emit) -> None:
        self.ctx = ctx
        self.emit = emit
        # Set by the worker around a project task's turn: the task's checkout and its spec
        # (project_id, task_id, attempt, kind); None for a plain prompt.
        self.turn_cwd: Path | None = None
        self.task: dict[str, Any] | None = None

    async def start(self) -> None:
        """Start the runtime process / session (called once before the first turn)."""

    @abstractmethod
    async def run_turn(self, injection_id: str, content: str) -> None:
        """Run one turn, emitting raw messages; return when the turn has ended."""

    async def control(self, payload: dict[str, Any]) -> None:
        """Handle an inbox control payload (kind approval_decision). Unknown kinds: raise ValueError."""
        raise ValueError(f"unsupported control kind: {payload.get('kind')!r}")

    async def interrupt(self) -> bool:
        """Ask the running turn to stop gently (it then completes `interrupted`); False if this
        runtime cannot (the worker reports that)."""
        return False

    async def stop(self) -> None:
        """Stop gently: close stdin, SIGTERM, then SIGKILL the process group."""
