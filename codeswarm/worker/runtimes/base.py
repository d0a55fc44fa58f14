"""The runtime interface the worker drives: one agent session per node, one turn per injection."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the lean worker's start: worker/start.py)
if TYPE_CHECKING:
    from typing import Any, Callable

    # emit(payload): append one `type: "runtime"` outbox line for the current turn.
    Emit = Callable[[dict[str, Any]], None]


class WorkerContext:
    """A plain class, not a dataclass: the lean worker stays clear of `dataclasses` (inspect, ast)."""

    __slots__ = ("job_id", "node_id", "swarm_root", "workspace", "params", "env", "problems")

    def __init__(self, job_id: str, node_id: int, swarm_root: Path, workspace: Path, params: dict[str, Any],
                 env: dict[str, str] | None = None, problems: list[str] | None = None) -> None:
        self.job_id = job_id
        self.node_id = node_id
        self.swarm_root = swarm_root
        self.workspace = workspace  # the node's cwd: runs/<job_id>/node_XX
        self.params = params  # preset defaults merged with provider_params (swarm.json)
        self.env: dict[str, str] = env if env is not None else {}  # extra env for the runtime process
        # found while loading; reported once the outbox is open
        self.problems: list[str] = problems if problems is not None else []

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
        self.resume_thread: str | None = None  # set before start(): the node's thread to continue

    def thread(self) -> str | None:
        """The runtime thread (session) id now in use, to resume after a worker restart."""
        return None

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
