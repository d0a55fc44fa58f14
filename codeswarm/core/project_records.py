"""Project and task records (CoreState.projects), their state machines (transition tables) and the reducers of project events.

Pure: no I/O, clock or randomness; every time stored comes from event data. The reducers are the
only writers of project state, live and on replay alike (docs/PROJECTS.md has the tables).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from codeswarm.core.states import IllegalTransition
from codeswarm.spend.meter import ProjectMeter, money

BRANCH_PREFIX = "codeswarm"


def task_branch(project_id: str, task_id: str) -> str:
    return f"{BRANCH_PREFIX}/{project_id}/{task_id}"


def integration_branch(project_id: str) -> str:
    return f"{BRANCH_PREFIX}/{project_id}/integration"


# ---------------------------------------------------------------------- state machines

PROJECT_STATES = ("created", "running", "integrating", "completed", "failed", "cancelled")
PROJECT_TRANSITIONS: frozenset[tuple[str, str]] = frozenset({
    ("created", "running"), ("running", "integrating"), ("integrating", "completed"),
    ("running", "failed"), ("integrating", "failed"),
    ("created", "cancelled"), ("running", "cancelled"), ("integrating", "cancelled"),
    # resume
    ("failed", "running"), ("cancelled", "running"), ("completed", "running"), ("running", "running"),
    ("integrating", "running"),
})
TASK_STATES = ("pending", "ready", "assigned", "running", "completed", "failed", "blocked", "cancelled")
TASK_TRANSITIONS: frozenset[tuple[str, str]] = frozenset({
    ("pending", "ready"), ("ready", "assigned"), ("assigned", "running"),
    ("running", "completed"), ("assigned", "completed"),
    ("running", "ready"), ("assigned", "ready"),          # a failed attempt with attempts left; a requeue
    ("running", "failed"), ("assigned", "failed"),
    ("pending", "blocked"), ("ready", "blocked"),
    ("pending", "cancelled"), ("ready", "cancelled"), ("assigned", "cancelled"), ("running", "cancelled"),
    # resume
    ("blocked", "pending"), ("failed", "pending"), ("completed", "pending"), ("cancelled", "pending"),
    ("blocked", "ready"), ("failed", "ready"), ("completed", "ready"), ("cancelled", "ready"),
    # resume: a dependency re-runs, so a task built (or being built) on its old result starts over
    ("ready", "pending"), ("assigned", "pending"), ("running", "pending"),
})
ACTIVE_TASK_STATES = frozenset({"assigned", "running"})
OPEN_TASK_STATES = frozenset({"pending", "ready", "assigned", "running"})
FINISHED_PROJECT_STATES = frozenset({"completed", "failed", "cancelled"})


def move(kind: str, old: str, new: str) -> str:
    """`new` when `old -> new` is in the table of kind ("project" or "task"), else IllegalTransition."""
    table = PROJECT_TRANSITIONS if kind == "project" else TASK_TRANSITIONS
    if (old, new) not in table:
        raise IllegalTransition(kind, old, new, "")
    return new


# ---------------------------------------------------------------------- records

@dataclass
class Task:
    id: str
    prompt: str
    title: str = ""
    depends_on: list[str] = field(default_factory=list)
    verify: str | None = None
    paths: list[str] = field(default_factory=list)
    kind: str = "task"                    # or "integration" (a merge conflict for an agent)
    state: str = "pending"
    attempts: int = 0
    branch: str = ""
    commit: str | None = None
    swarm_id: str | None = None
    node_id: int | None = None
    injection_id: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    last_output: str | None = None        # the failed attempt's verify output, for the retry prompt
    merge: list[str] = field(default_factory=list)   # integration task: the branch to merge
    start: str | None = None              # integration task: the ref to start from
    conflict_files: list[str] = field(default_factory=list)
    timeout_seconds: float | None = None  # per attempt (the task's, else the project's default)
    node_restarts: int | None = None      # the node's restart_count when the attempt was assigned (core/project_loss.py)
    lost_attempt: dict[str, Any] | None = None  # the last attempt ended because its worker was gone (a late result)

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "kind": self.kind, "state": self.state,
                "attempts": self.attempts, "branch": self.branch, "commit": self.commit,
                "swarm_id": self.swarm_id, "node_id": self.node_id, "injection_id": self.injection_id,
                "started_at": self.started_at, "finished_at": self.finished_at, "error": self.error,
                "depends_on": list(self.depends_on), "verify": self.verify, "paths": list(self.paths),
                "timeout_seconds": self.timeout_seconds}


@dataclass
class Project:
    project_id: str
    name: str
    repo: str
    base: str
    base_commit: str
    swarms: list[str]
    tasks: dict[str, Task]                # topological order
    max_attempts: int = 2
    verify: str | None = None             # integration verify (None: every task's verify)
    state: str = "created"
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    integration_branch: str = ""
    integration_commit: str | None = None
    integration_start: str | None = None  # where the next integration pass starts (base or integration)
    integrated: list[str] = field(default_factory=list)  # branches merged into the integration branch
    integrating: bool = False             # an integration pass is under way in the shell
    integration_done: bool = False        # the last pass merged everything that completed
    error: str | None = None
    request_id: str | None = None
    budget_usd: float | None = None       # core/project_budget.py (docs/SPEND.md)
    budget_warned: bool = False
    budget_exceeded: bool = False
    spend: dict[str, Any] = field(default_factory=dict)  # spend.meter.ProjectMeter.to_json()
    task_timeout_seconds: float | None = None  # the graph's default per-attempt timeout (integration tasks too)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks"] = [asdict(t) for t in self.tasks.values()]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Project:
        names = {f.name for f in fields(cls)}
        task_names = {f.name for f in fields(Task)}
        tasks = {t["id"]: Task(**{k: v for k, v in t.items() if k in task_names}) for t in d.get("tasks", [])}
        return cls(**{**{k: v for k, v in d.items() if k in names}, "tasks": tasks})

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for t in self.tasks.values():
            counts[t.state] = counts.get(t.state, 0) + 1
        return {"project_id": self.project_id, "name": self.name, "state": self.state, "repo": self.repo,
                "base": self.base, "swarms": list(self.swarms), "tasks": counts, "created_at": self.created_at,
                "finished_at": self.finished_at, "integration_branch": self.integration_branch,
                "integration_commit": self.integration_commit, **self.spend_view()}

    def status(self) -> dict[str, Any]:
        meter = ProjectMeter.from_json(self.spend)
        return {**self.summary(), "started_at": self.started_at, "error": self.error,
                "max_attempts": self.max_attempts, "planner_spend_usd": money(meter.planner_usd),
                "tasks": [{**t.public(), "spend_usd": meter.task_usd(t.id)} for t in self.tasks.values()]}

    def spend_view(self) -> dict[str, Any]:
        """The spend fields of `project_list` / `project_status` (docs/SPEND.md)."""
        m = ProjectMeter.from_json(self.spend)
        state = None if self.budget_usd is None else \
            "exceeded" if self.budget_exceeded else "warning" if self.budget_warned else "ok"
        return {"spend_usd": money(m.cost_usd), "budget_usd": self.budget_usd, "budget_state": state,
                "cost_unknown": m.cost_unknown, "pricing_model": m.pricing_model, "total_tokens": m.total_tokens}


@dataclass
class ProjectsState:
    projects: dict[str, Project] = field(default_factory=dict)
    # planner injection id -> the plan under way (project_plan_started until created or failed), so a
    # router restart picks the wait up again
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_injection: dict[str, tuple[str, str]] = field(default_factory=dict)  # derived index, not persisted

    def task_of(self, injection_id: str | None) -> tuple[Project, Task] | None:
        ref = self.by_injection.get(injection_id or "")
        if ref is None:
            return None
        p = self.projects.get(ref[0])
        t = p.tasks.get(ref[1]) if p else None
        return (p, t) if p and t and t.injection_id == injection_id else None

    def reindex(self) -> None:
        self.by_injection = {t.injection_id: (p.project_id, t.id) for p in self.projects.values()
                             for t in p.tasks.values() if t.injection_id and t.state in ACTIVE_TASK_STATES}


# ---------------------------------------------------------------------- reducers

Reducer = Callable[[ProjectsState, dict[str, Any]], None]


def _project(st: ProjectsState, d: dict[str, Any]) -> Project:
    return st.projects[d["project_id"]]


def _task(st: ProjectsState, d: dict[str, Any]) -> tuple[Project, Task]:
    p = _project(st, d)
    return p, p.tasks[d["task_id"]]


def _created(st: ProjectsState, d: dict[str, Any]) -> None:
    tasks = {}
    for spec in d["tasks"]:
        tasks[spec["id"]] = Task(id=spec["id"], prompt=spec["prompt"], title=spec.get("title") or spec["id"],
                                 depends_on=list(spec.get("depends_on") or []), verify=spec.get("verify"),
                                 paths=list(spec.get("paths") or []),
                                 timeout_seconds=spec.get("timeout_seconds") or d.get("task_timeout_seconds"),
                                 branch=task_branch(d["project_id"], spec["id"]))
    st.projects[d["project_id"]] = Project(
        project_id=d["project_id"], name=d["name"], repo=d["repo"], base=d["base"], base_commit=d["base_commit"],
        swarms=list(d["swarms"]), tasks=tasks, max_attempts=int(d.get("max_attempts") or 2),
        verify=d.get("verify"), created_at=float(d.get("created_at") or 0), request_id=d.get("request_id"),
        integration_branch=integration_branch(d["project_id"]), budget_usd=_usd(d.get("budget_usd")),
        spend=ProjectMeter.opening(_usd(d.get("planner_spend_usd")) or 0.0).to_json())
    st.projects[d["project_id"]].task_timeout_seconds = d.get("task_timeout_seconds")
    st.plans.pop(d.get("plan_injection_id") or "", None)


def _usd(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def plan_started(st: ProjectsState, d: dict[str, Any], seq: int) -> None:
    """`seq`: where the planner's answer can be looked for in the log after a restart."""
    st.plans[d["injection_id"]] = {**{k: d.get(k) for k in ("request_id", "planner", "injection_id", "payload",
                                                            "started_at")}, "seq": seq}


def _plan_ended(st: ProjectsState, d: dict[str, Any]) -> None:
    st.plans.pop(d.get("injection_id") or "", None)


def _started(st: ProjectsState, d: dict[str, Any]) -> None:
    p = _project(st, d)
    p.state = move("project", p.state, "running")
    p.started_at = p.started_at or d.get("started_at")
    p.finished_at = None
    p.error = None


def _task_ready(st: ProjectsState, d: dict[str, Any]) -> None:
    _, t = _task(st, d)
    st.by_injection.pop(t.injection_id or "", None)
    t.state = move("task", t.state, "ready")
    t.swarm_id = t.node_id = t.injection_id = None
    if d.get("requeued") and t.attempts > 0:
        t.attempts -= 1  # the attempt never finished: it does not count


def _task_assigned(st: ProjectsState, d: dict[str, Any]) -> None:
    p, t = _task(st, d)
    t.state = move("task", t.state, "assigned")
    t.swarm_id, t.node_id, t.injection_id = d["swarm_id"], d["node_id"], d["injection_id"]
    t.attempts = int(d["attempt"])
    t.error = None
    t.node_restarts = d.get("node_restarts")
    st.by_injection[d["injection_id"]] = (p.project_id, t.id)


def _task_started(st: ProjectsState, d: dict[str, Any]) -> None:
    _, t = _task(st, d)
    t.state = move("task", t.state, "running")
    t.started_at = d.get("started_at")
    t.finished_at = None


def _task_verified(st: ProjectsState, d: dict[str, Any]) -> None:
    _, t = _task(st, d)
    t.commit = d.get("commit")


def _task_failed(st: ProjectsState, d: dict[str, Any]) -> None:
    _, t = _task(st, d)
    st.by_injection.pop(t.injection_id or "", None)
    t.error = d.get("error")
    t.last_output = d.get("output")
    t.finished_at = d.get("finished_at")
    if d.get("ended_by"):  # the router ended it (its worker was gone): a late result of it is recognised
        t.lost_attempt = {k: d.get(k) for k in ("injection_id", "swarm_id", "node_id", "attempt", "ended_by")}
    if d.get("final"):
        t.state = move("task", t.state, "failed")
    else:
        t.state = move("task", t.state, "ready")
        t.swarm_id = t.node_id = t.injection_id = None


def _task_completed(st: ProjectsState, d: dict[str, Any]) -> None:
    p, t = _task(st, d)
    st.by_injection.pop(t.injection_id or "", None)
    t.state = move("task", t.state, "completed")
    t.commit = d.get("commit")
    t.finished_at = d.get("finished_at")
    t.error = None
    if t.kind == "integration":
        p.integration_commit = t.commit
        p.integration_start = p.integration_branch
        p.integrated.extend(b for b in t.merge if b not in p.integrated)


def _task_blocked(st: ProjectsState, d: dict[str, Any]) -> None:
    _, t = _task(st, d)
    t.state = move("task", t.state, "blocked")
    t.error = f"blocked by {', '.join(d.get('blocked_by') or [])}"


def _task_reset(st: ProjectsState, d: dict[str, Any]) -> None:
    """Resume puts a task back to pending (re-run); its old attempts no longer count."""
    _, t = _task(st, d)
    st.by_injection.pop(t.injection_id or "", None)
    t.state = move("task", t.state, "pending")
    t.attempts, t.commit, t.error, t.last_output = 0, None, None, None
    t.swarm_id = t.node_id = t.injection_id = None
    t.started_at = t.finished_at = None


def _integration_started(st: ProjectsState, d: dict[str, Any]) -> None:
    p = _project(st, d)
    if p.state != "integrating":
        p.state = move("project", p.state, "integrating")
    p.integrating = True
    if d.get("restart"):
        p.integrated, p.integration_start, p.integration_commit = [], None, None


def _integration_conflict(st: ProjectsState, d: dict[str, Any]) -> None:
    p = _project(st, d)
    p.integrating = False
    p.integration_done = False
    p.integrated.extend(b for b in d.get("merged") or [] if b not in p.integrated)
    p.integration_commit = d.get("integration_commit")
    p.integration_start = p.integration_branch
    p.tasks[d["task_id"]] = Task(
        id=d["task_id"], kind="integration", title=f"resolve the merge of {d['branch']}", prompt=d["prompt"],
        verify=d.get("verify"), state="ready", branch=p.integration_branch, merge=[d["branch"]],
        start=p.integration_branch, conflict_files=list(d.get("files") or []), timeout_seconds=p.task_timeout_seconds)


def _integrated(st: ProjectsState, d: dict[str, Any]) -> None:
    p = _project(st, d)
    p.integrating = False
    p.integration_done = True
    p.integrated = list(d.get("merged") or p.integrated)
    p.integration_commit = d.get("integration_commit")


def _completed(st: ProjectsState, d: dict[str, Any]) -> None:
    p = _project(st, d)
    p.state = move("project", p.state, "completed")
    p.finished_at = d.get("finished_at")


def _failed(st: ProjectsState, d: dict[str, Any]) -> None:
    p = _project(st, d)
    p.state = move("project", p.state, "failed")
    p.integrating = False
    p.finished_at = d.get("finished_at")
    p.error = d.get("reason")


def _cancelled(st: ProjectsState, d: dict[str, Any]) -> None:
    p = _project(st, d)
    p.state = move("project", p.state, "cancelled")
    p.integrating = False
    p.finished_at = d.get("finished_at")
    for t in p.tasks.values():
        if t.state in OPEN_TASK_STATES:
            st.by_injection.pop(t.injection_id or "", None)
            t.state = move("task", t.state, "cancelled")


def _resumed(st: ProjectsState, d: dict[str, Any]) -> None:
    p = _project(st, d)
    if d.get("swarms"):
        p.swarms = list(d["swarms"])
    p.state = move("project", p.state, "running")
    p.finished_at = None
    p.error = None
    p.integrating = False
    if d.get("rerun"):
        p.integration_done, p.integrated, p.integration_start, p.integration_commit = False, [], None, None


REDUCERS: dict[str, Reducer] = {
    "project_created": _created,
    "project_started": _started,
    "project_task_ready": _task_ready,
    "project_task_assigned": _task_assigned,
    "project_task_started": _task_started,
    "project_task_verified": _task_verified,
    "project_task_failed": _task_failed,
    "project_task_completed": _task_completed,
    "project_task_blocked": _task_blocked,
    "project_task_reset": _task_reset,
    "project_integration_started": _integration_started,
    "project_integration_conflict": _integration_conflict,
    "project_integrated": _integrated,
    "project_completed": _completed,
    "project_failed": _failed,
    "project_cancelled": _cancelled,
    "project_resumed": _resumed,
    "project_plan_started": lambda st, d: plan_started(st, d, 0),   # the feature passes the event's seq
    "project_plan_failed": _plan_ended,
}
PROJECT_EVENTS = frozenset(REDUCERS) | {"projects_updated", "project_status"}


def reduce(st: ProjectsState, name: str, data: dict[str, Any]) -> bool:
    """Apply one project event; False when it is not a project event."""
    fn = REDUCERS.get(name)
    if fn is None:
        return False
    fn(st, data)
    return True
