"""The task graph of a project: parse, validate up front, order, readiness. Pure: no I/O.

Input is `{"tasks": [...]}` (optionally with a project-level `"verify"` for the integration branch)
or a bare list of tasks. Every problem is a GraphError naming the task, and nothing is created.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from codeswarm.errors import CodeswarmError

MAX_TASKS = 1000
MAX_PROMPT = 64 * 1024
MAX_VERIFY = 4096
# A task id becomes part of a git ref (codeswarm/<project>/<task>): keep it to safe characters.
TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class GraphError(CodeswarmError, ValueError):
    """A task graph that cannot be run; the message names the task at fault."""


@dataclass(frozen=True)
class TaskSpec:
    id: str
    prompt: str
    title: str = ""
    depends_on: tuple[str, ...] = ()
    verify: str | None = None
    paths: tuple[str, ...] = ()
    timeout_seconds: float | None = None   # per attempt; None: the project's default (if any)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "title": self.title, "prompt": self.prompt, "depends_on": list(self.depends_on),
             "verify": self.verify, "paths": list(self.paths)}
        if self.timeout_seconds is not None:
            d["timeout_seconds"] = self.timeout_seconds
        return d


@dataclass(frozen=True)
class TaskGraph:
    tasks: tuple[TaskSpec, ...]  # in topological order (stable: input order among equals)
    verify: str | None = None    # integration verify; None -> every task's verify in order
    timeout_seconds: float | None = None  # default per-attempt timeout of the graph's tasks

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(t.id for t in self.tasks)

    def by_id(self) -> dict[str, TaskSpec]:
        return {t.id: t for t in self.tasks}

    def dependents(self, task_id: str) -> set[str]:
        """Every task that depends on task_id, directly or not."""
        out: set[str] = set()
        frontier = [task_id]
        while frontier:
            cur = frontier.pop()
            for t in self.tasks:
                if cur in t.depends_on and t.id not in out:
                    out.add(t.id)
                    frontier.append(t.id)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"tasks": [t.to_json() for t in self.tasks], "verify": self.verify,
                "timeout_seconds": self.timeout_seconds}


def _str_list(raw: Any, where: str, key: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise GraphError(f"{where}: {key} must be a list of strings")
    return tuple(raw)


def _task(raw: Any, index: int) -> TaskSpec:
    if not isinstance(raw, dict):
        raise GraphError(f"task #{index + 1}: must be an object")
    tid = raw.get("id")
    if not isinstance(tid, str) or not tid:
        raise GraphError(f"task #{index + 1}: id must be a non-empty string")
    if not TASK_ID.fullmatch(tid) or ".." in tid or tid.endswith(".lock"):
        raise GraphError(f"task {tid[:80]!r}: id must be 1-64 of A-Z a-z 0-9 . _ - (it names a git branch)")
    where = f"task {tid!r}"
    prompt = raw.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise GraphError(f"{where}: empty prompt")
    if len(prompt) > MAX_PROMPT:
        raise GraphError(f"{where}: prompt longer than {MAX_PROMPT} characters")
    title = raw.get("title", "")
    if not isinstance(title, str):
        raise GraphError(f"{where}: title must be a string")
    verify = raw.get("verify")
    if verify is not None and (not isinstance(verify, str) or len(verify) > MAX_VERIFY):
        raise GraphError(f"{where}: verify must be a shell command string (at most {MAX_VERIFY} characters)")
    deps = _str_list(raw.get("depends_on"), where, "depends_on")
    if len(set(deps)) != len(deps):
        raise GraphError(f"{where}: depends_on lists a task twice")
    if tid in deps:
        raise GraphError(f"{where}: depends on itself (cycle)")
    return TaskSpec(id=tid, prompt=prompt, title=title or tid, depends_on=deps, verify=verify or None,
                    paths=_paths(raw.get("paths"), where), timeout_seconds=timeout_value(raw.get("timeout_seconds"), where))


MAX_TIMEOUT = 7 * 24 * 3600.0
MAX_PATHS = 256


def timeout_value(raw: Any, where: str) -> float | None:
    """A per-attempt timeout in seconds (1 s .. 7 days), or None."""
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 1 <= raw <= MAX_TIMEOUT:
        raise GraphError(f"{where}: timeout_seconds must be a number of seconds from 1 to {MAX_TIMEOUT:.0f}")
    return float(raw)


def _paths(raw: Any, where: str) -> tuple[str, ...]:
    """The files a task may change (enforced by the worker): repo-relative directories, files or globs."""
    paths = _str_list(raw, where, "paths")
    if len(paths) > MAX_PATHS:
        raise GraphError(f"{where}: at most {MAX_PATHS} paths")
    for p in paths:
        parts = p.split("/")
        if not p or p.startswith("/") or ".." in parts or "\0" in p or len(p) > 1024 or parts[0] == ".git":
            raise GraphError(f"{where}: path {p[:80]!r} must be relative to the repository root, without '..'")
    return paths


def parse_graph(raw: Any) -> TaskGraph:
    """Validate a decoded JSON task graph and return it in topological order."""
    verify = None
    timeout = None
    if isinstance(raw, dict):
        if "tasks" not in raw:
            raise GraphError('task graph: expected {"tasks": [...]} or a list of tasks')
        verify = raw.get("verify")
        if verify is not None and (not isinstance(verify, str) or len(verify) > MAX_VERIFY):
            raise GraphError("task graph: verify must be a shell command string")
        timeout = timeout_value(raw.get("timeout_seconds"), "task graph")
        raw = raw["tasks"]
    if not isinstance(raw, list):
        raise GraphError('task graph: expected {"tasks": [...]} or a list of tasks')
    if not raw:
        raise GraphError("task graph: no tasks")
    if len(raw) > MAX_TASKS:
        raise GraphError(f"task graph: {len(raw)} tasks, at most {MAX_TASKS}")
    specs: list[TaskSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        spec = _task(item, i)
        if spec.id in seen:
            raise GraphError(f"task {spec.id!r}: duplicate id")
        seen.add(spec.id)
        specs.append(spec)
    for spec in specs:
        for dep in spec.depends_on:
            if dep not in seen:
                raise GraphError(f"task {spec.id!r}: unknown dependency {dep!r}")
    return TaskGraph(tasks=tuple(topological_order(specs)), verify=verify or None, timeout_seconds=timeout)


def topological_order(specs: Iterable[TaskSpec]) -> list[TaskSpec]:
    """Kahn's algorithm, stable in input order; a cycle raises GraphError naming its tasks."""
    specs = list(specs)
    index = {s.id: i for i, s in enumerate(specs)}
    waiting = {s.id: len(s.depends_on) for s in specs}
    users: dict[str, list[str]] = {s.id: [] for s in specs}
    for s in specs:
        for dep in s.depends_on:
            users[dep].append(s.id)
    ready = sorted((s.id for s in specs if not s.depends_on), key=index.__getitem__)
    out: list[TaskSpec] = []
    while ready:
        tid = ready.pop(0)
        out.append(specs[index[tid]])
        newly = []
        for user in users[tid]:
            waiting[user] -= 1
            if waiting[user] == 0:
                newly.append(user)
        ready = sorted(ready + newly, key=index.__getitem__)
    if len(out) != len(specs):
        stuck = [s.id for s in specs if waiting[s.id] > 0]
        raise GraphError(f"task {stuck[0]!r}: dependency cycle among {', '.join(map(repr, stuck))}")
    return out


def ready_tasks(graph: TaskGraph, states: Mapping[str, str]) -> list[str]:
    """Tasks in state `pending` whose every dependency is `completed`, in topological order."""
    return [t.id for t in graph.tasks if states.get(t.id) == "pending"
            and all(states.get(d) == "completed" for d in t.depends_on)]


def blocked_tasks(graph: TaskGraph, states: Mapping[str, str]) -> list[str]:
    """Pending/ready tasks with a dependency that failed, was blocked or cancelled."""
    bad = {"failed", "blocked", "cancelled"}
    return [t.id for t in graph.tasks if states.get(t.id) in ("pending", "ready")
            and any(states.get(d) in bad for d in t.depends_on)]
