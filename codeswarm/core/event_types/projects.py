"""Project events (docs/PROJECTS.md "Protocol"; docs/PROTOCOL.md "Projects"). Every one carries
`project_id`, task events `task_id`. Emitted by core/projects.py unless said otherwise."""

from typing import Any, Literal, NotRequired, TypedDict

from codeswarm.core.event_types.registry import EventType, declare


class ProjectCreated(TypedDict):
    """A project and its task graph were created (`project_create`, or a plan's answer)."""

    request_id: str | None
    project_id: str
    name: str
    repo: str
    base: str
    base_commit: str | None
    swarms: list[str]
    max_attempts: int
    verify: Any
    created_at: float
    task_timeout_seconds: float | None
    plan_injection_id: str | None
    tasks: list[dict[str, Any]]
    budget_usd: float | None
    planner_spend_usd: float | None


class ProjectStarted(TypedDict):
    """The project runs: its ready tasks are dispatched."""

    request_id: str | None
    project_id: str
    started_at: float


class ProjectCancelled(TypedDict):
    """`project_cancel`: open tasks are cancelled, running attempts stopped."""

    request_id: str | None
    project_id: str
    finished_at: float


class TaskRef(TypedDict):
    project_id: str
    task_id: str


class FromOutbox(TypedDict):
    """Events decided on a worker's project_task_result line name its node and line (core/projects.py
    _decide_result): the outbox read position is recovered from the log."""

    swarm_id: NotRequired[str]
    node_id: NotRequired[int]
    outbox_seq: NotRequired[int]


class AttemptRef(TaskRef, FromOutbox):
    """The fields of an attempt's result (core/projects.py task_result `base`)."""

    attempt: int
    injection_id: str
    timings_ms: NotRequired[dict[str, float]]


class ProjectTaskReady(TaskRef, FromOutbox):
    """A task may run: its dependencies completed, or it is requeued (node gone, resume, the
    project's budget stopped its attempt: `requeued`, `reason`)."""

    requeued: NotRequired[bool]
    reason: NotRequired[str]
    attempt: NotRequired[int]
    injection_id: NotRequired[str]
    timings_ms: NotRequired[dict[str, float]]


class ProjectTaskAssigned(TaskRef):
    """A ready task was sent to an idle node of the project's swarms."""

    swarm_id: str
    node_id: int
    injection_id: str
    attempt: int
    branch: str
    node_restarts: NotRequired[int]  # the node's restart_count then (an attempt its restart ended: core/project_loss.py)


class ProjectTaskStarted(TaskRef):
    """The node's turn for the task started (or its result came first: then with `outbox_seq`)."""

    swarm_id: str | None
    node_id: int | None
    outbox_seq: NotRequired[int]
    injection_id: str
    attempt: int
    started_at: float


class ProjectTaskVerified(AttemptRef):
    """The attempt's verify command passed."""

    commit: str
    output: str | None


class ProjectTaskCompleted(AttemptRef):
    """The attempt succeeded: its commit is on the task's branch."""

    commit: str
    branch: str
    finished_at: float


class ProjectTaskFailed(AttemptRef):
    """The attempt failed at `stage`; `final` when no attempt is left."""

    final: bool
    finished_at: float
    stage: str | None
    error: str
    output: str | None
    # the router ended the attempt: its worker was gone before it reported it (core/project_loss.py);
    # then `swarm_id`/`node_id` name the attempt's node
    ended_by: NotRequired[Literal["node_lost", "worker_exited", "node_restarted"]]


class ProjectTaskBlocked(TaskRef):
    """A dependency failed, blocked or was cancelled."""

    blocked_by: list[str]


class ProjectTaskReset(TaskRef):
    """Resume re-runs the task; `reason` says why."""

    reason: str


class ProjectIntegrationStarted(TypedDict):
    """Every task is done: the completed branches are merged (router/projects_shell.py carries it out)."""

    project_id: str
    branches: list[str]


class ProjectIntegrationConflict(TypedDict):
    """A merge conflicted: a new integration task (`task_id`) resolves it."""

    project_id: str
    task_id: str
    branch: str
    files: list[str]
    merged: list[str]
    integration_commit: str | None
    prompt: str
    verify: Any


class ProjectIntegrated(TypedDict):
    """The integration branch holds every merged task."""

    project_id: str
    integration_branch: str
    integration_commit: str | None
    merged: list[str]


class ProjectCompleted(TypedDict):
    """Every task completed and integrated."""

    project_id: str
    finished_at: float
    integration_branch: str
    integration_commit: str | None


class ProjectFailed(TypedDict):
    """A task failed or blocked, or integration failed."""

    project_id: str
    finished_at: float
    reason: str
    failed: NotRequired[list[str]]
    blocked: NotRequired[list[str]]


class ResumePlanFields(TypedDict):
    reset: list[str]
    requeue: list[str]
    will_run: list[str]
    missing_branches: list[str]
    reasons: dict[str, str]
    stopped: list[str]


class ProjectResumed(ResumePlanFields):
    """`project_resume`: tasks reset or requeued; the project runs again."""

    request_id: str | None
    project_id: str
    swarms: list[str]
    rerun: bool


class ProjectResumePreview(ResumePlanFields):
    """Directed answer to `project_resume_preview` (router/projects_shell.py): what a resume would do."""

    request_id: str | None
    project_id: str


class ProjectPlanStarted(TypedDict):
    """`project_plan`: the planner swarm's turn was asked for a task graph; logged before its inbox
    line is written (router/projects_shell.py)."""

    request_id: str | None
    planner: str
    injection_id: str
    payload: dict[str, Any]
    started_at: float


class ProjectPlanFailed(TypedDict):
    """`project_plan` created nothing (router/projects_shell.py; router/handlers.py for a rejected
    plan command). `planner` / `injection_id` are null when no planner was asked (a rejected
    command) or no injection was made for it."""

    request_id: str | None
    reason: str
    planner: str | None
    injection_id: str | None


class ProjectsUpdated(TypedDict):
    """After every project-level change: the project's `project_list` summary (router/projects_shell.py)."""

    project_id: str
    project: dict[str, Any]


class ProjectList(TypedDict):
    """Directed answer to `project_list`."""

    request_id: str | None
    projects: list[dict[str, Any]]


class ProjectStatus(TypedDict):
    """Directed answer to `project_status`."""

    request_id: str | None
    project: dict[str, Any]


EVENTS: tuple[EventType, ...] = declare(
    "projects",
    EventType("project_created", ProjectCreated, "broadcast", "docs/PROJECTS.md"),
    EventType("project_started", ProjectStarted, "broadcast", "docs/PROJECTS.md"),
    EventType("project_cancelled", ProjectCancelled, "broadcast", "docs/PROJECTS.md"),
    EventType("project_task_ready", ProjectTaskReady, "broadcast", "docs/PROJECTS.md"),
    EventType("project_task_assigned", ProjectTaskAssigned, "broadcast", "docs/PROJECTS.md"),
    EventType("project_task_started", ProjectTaskStarted, "broadcast", "docs/PROJECTS.md"),
    EventType("project_task_verified", ProjectTaskVerified, "broadcast", "docs/PROJECTS.md"),
    EventType("project_task_completed", ProjectTaskCompleted, "broadcast", "docs/PROJECTS.md"),
    EventType("project_task_failed", ProjectTaskFailed, "broadcast", "docs/PROJECTS.md"),
    EventType("project_task_blocked", ProjectTaskBlocked, "broadcast", "docs/PROJECTS.md"),
    EventType("project_task_reset", ProjectTaskReset, "broadcast", "docs/PROJECTS.md"),
    EventType("project_integration_started", ProjectIntegrationStarted, "broadcast", "docs/PROJECTS.md"),
    EventType("project_integration_conflict", ProjectIntegrationConflict, "broadcast", "docs/PROJECTS.md"),
    EventType("project_integrated", ProjectIntegrated, "broadcast", "docs/PROJECTS.md"),
    EventType("project_completed", ProjectCompleted, "broadcast", "docs/PROJECTS.md"),
    EventType("project_failed", ProjectFailed, "broadcast", "docs/PROJECTS.md"),
    EventType("project_resumed", ProjectResumed, "broadcast", "docs/PROJECTS.md"),
    EventType("project_resume_preview", ProjectResumePreview, "directed", "docs/PROJECTS.md"),
    EventType("project_plan_started", ProjectPlanStarted, "broadcast", "docs/PROTOCOL.md Projects"),
    EventType("project_plan_failed", ProjectPlanFailed, "broadcast", "docs/PROJECTS.md"),
    EventType("projects_updated", ProjectsUpdated, "broadcast", "docs/PROJECTS.md"),
    EventType("project_list", ProjectList, "directed", "docs/PROJECTS.md"),
    EventType("project_status", ProjectStatus, "directed", "docs/PROJECTS.md"),
)
