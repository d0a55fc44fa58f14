"""The projects feature of the core: inputs -> project events and effects. Pure (no I/O, clock or randomness).

docs/PROJECTS.md has the protocol and the state machines (project_records.py holds the tables).

A decider never reads back what it emitted: what a multi-step decision needs is kept in locals.
`out` has `emit(name, data)` and `effect(x)`; `ids()` returns a fresh id string.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from codeswarm.errors import CodeswarmError
from codeswarm.core import steps
from codeswarm.core.kernel import Event, Feature, InboxLine
from codeswarm.core.project_loss import Ended, attempt_evidence, end_attempt, late_result
from codeswarm.core.project_graph import TaskGraph
from codeswarm.core.project_records import (
    ACTIVE_TASK_STATES,
    FINISHED_PROJECT_STATES,
    OPEN_TASK_STATES,
    REDUCERS,
    Project,
    ProjectsState,
    Task,
    plan_started,
)
from codeswarm.core.records import CoreState

MAX_OUTPUT_IN_PROMPT = 4000
VERIFY_TIMEOUT = 600.0


class Out(Protocol):
    def emit(self, name: str, data: dict[str, Any]) -> None: ...
    def effect(self, effect: Any) -> None: ...


class ProjectError(CodeswarmError, ValueError):
    """A project command that cannot be carried out; `reason` is the rejection reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# ---------------------------------------------------------------------- inputs and effects

@dataclass(frozen=True)
class CreateProject:
    request_id: str | None
    name: str
    repo: str
    base: str
    base_commit: str          # checked by the shell (git ls-remote) before deciding
    swarms: tuple[str, ...]
    graph: TaskGraph
    max_attempts: int = 2
    start: bool = False
    budget_usd: float | None = None   # the payload's, else the config default (resolved by the shell)
    planner_spend_usd: float = 0.0    # the cost of the planner turn that wrote the graph (project plan)
    plan_injection_id: str | None = None   # created from this planner's answer (ends the plan record)


@dataclass(frozen=True)
class StartProject:
    request_id: str | None
    project_id: str


@dataclass(frozen=True)
class Dispatch:
    """Look at every open project: readiness, blocking, assignment to idle nodes, integration, the end."""
    idle: dict[str, tuple[int, ...]]          # swarm_id -> idle node ids (worker running, no open injection)
    gone: frozenset[str] = frozenset()        # injection ids of active tasks whose node or injection is gone
    ended: dict[str, Ended] = field(default_factory=dict)  # attempts whose worker died after taking them
    restarts: dict[tuple[str, int], int] = field(default_factory=dict)  # idle node -> its restart_count


@dataclass(frozen=True)
class TurnStarted:
    injection_id: str


@dataclass(frozen=True)
class TaskResult:
    injection_id: str
    result: dict[str, Any]


@dataclass(frozen=True)
class IntegrationDone:
    project_id: str
    merged: tuple[str, ...]
    commit: str | None
    conflict_branch: str | None = None
    conflict_files: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class Resume:
    request_id: str | None
    project_id: str
    swarms: tuple[str, ...]              # new worker swarms (empty: keep)
    retry_failed: bool
    heads: dict[str, str]                # codeswarm/<project>/ branches in the repo -> commit
    live: frozenset[str]                 # injection ids of active tasks whose node is still there


@dataclass(frozen=True)
class Cancel:
    request_id: str | None
    project_id: str


@dataclass(frozen=True)
class SendTask:
    """Effect: inject `content` with `project_task` to one node (idempotent by injection_id)."""
    project_id: str
    task_id: str
    swarm_id: str
    node_id: int
    injection_id: str
    content: str
    project_task: dict[str, Any]


@dataclass(frozen=True)
class StopTasks:
    """Effect: stop the attempts of these tasks on their nodes (turned into inbox `interrupt` controls,
    and `inject_failed` for injections the worker has not started)."""
    project_id: str
    injections: tuple[tuple[str, int, str], ...]   # (swarm_id, node_id, injection_id)
    reason: str


@dataclass(frozen=True)
class Integrate:
    """Effect: merge `branches` onto `start` as the integration branch, push, verify; answer IntegrationDone."""
    project_id: str
    repo: str
    integration_branch: str
    start: str
    branches: tuple[str, ...]
    verify: str | None


# ---------------------------------------------------------------------- create / start / cancel

_SLUG = re.compile(r"[^A-Za-z0-9_-]+")
COMMIT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # what a result's `commit` must be (git's sha-1 or sha-256)


def project_id_for(name: str, ids: Callable[[], str]) -> str:
    slug = _SLUG.sub("-", name).strip("-")[:32]
    suffix = ids().replace("-", "")[:8]
    return f"{slug}-{suffix}" if slug else f"p-{suffix}"


def create(st: ProjectsState, inp: CreateProject, now: float, ids: Callable[[], str], out: Out) -> str:
    if not inp.swarms:
        raise ProjectError("invalid_payload", "a project needs at least one worker swarm")
    if not 1 <= inp.max_attempts <= 20:
        raise ProjectError("invalid_payload", "max_attempts must be between 1 and 20")
    pid = project_id_for(inp.name, ids)
    while pid in st.projects:
        pid = project_id_for(inp.name, ids)
    out.emit("project_created", {
        "request_id": inp.request_id, "project_id": pid, "name": inp.name or pid, "repo": inp.repo,
        "base": inp.base, "base_commit": inp.base_commit, "swarms": list(inp.swarms),
        "max_attempts": inp.max_attempts, "verify": inp.graph.verify, "created_at": now,
        "task_timeout_seconds": inp.graph.timeout_seconds, "plan_injection_id": inp.plan_injection_id,
        "tasks": [t.to_json() for t in inp.graph.tasks], "budget_usd": inp.budget_usd,
        "planner_spend_usd": inp.planner_spend_usd})
    if inp.start:
        out.emit("project_started", {"request_id": inp.request_id, "project_id": pid, "started_at": now})
    return pid


def _get(st: ProjectsState, project_id: str) -> Project:
    p = st.projects.get(project_id)
    if p is None:
        raise ProjectError("unknown_project", f"unknown project {project_id!r}")
    return p


def start(st: ProjectsState, inp: StartProject, now: float, ids: Callable[[], str], out: Out) -> None:
    p = _get(st, inp.project_id)
    if p.state != "created":
        raise ProjectError("invalid_state", f"project {p.project_id} is {p.state}; use project resume")
    out.emit("project_started", {"request_id": inp.request_id, "project_id": p.project_id, "started_at": now})


def cancel(st: ProjectsState, inp: Cancel, now: float, ids: Callable[[], str], out: Out) -> None:
    p = _get(st, inp.project_id)
    if p.state in FINISHED_PROJECT_STATES:
        raise ProjectError("invalid_state", f"project {p.project_id} is already {p.state}")
    out.emit("project_cancelled", {"request_id": inp.request_id, "project_id": p.project_id, "finished_at": now})
    _stop(p, [t for t in p.tasks.values() if t.state in ACTIVE_TASK_STATES], "project_cancelled", out)


def _stop(p: Project, tasks: list[Task], reason: str, out: Out) -> None:
    running = tuple((t.swarm_id or "", t.node_id or 0, t.injection_id) for t in tasks if t.injection_id)
    if running:
        out.effect(StopTasks(p.project_id, running, reason))


# ---------------------------------------------------------------------- the task contract

def combined_verify(p: Project) -> str | None:
    if p.verify:
        return p.verify
    cmds = [t.verify for t in p.tasks.values() if t.kind == "task" and t.verify and t.state == "completed"]
    return " && ".join(f"( {c} )" for c in cmds) or None


def task_work(p: Project, t: Task, attempt: int) -> tuple[str, dict[str, Any]]:
    """The prompt and the worker's project_task spec of one attempt."""
    commits: list[str | None] = []
    if t.kind == "integration":
        start, merges, verify = t.start or p.integration_branch, list(t.merge), t.verify
    else:
        deps = [p.tasks[d] for d in t.depends_on]
        start, merges, verify = (deps[0].branch, [d.branch for d in deps[1:]], t.verify) if deps \
            else (p.base, [], t.verify)
        commits = [d.commit for d in deps] if deps else [p.base_commit]
    spec: dict[str, Any] = {
        "project_id": p.project_id, "task_id": t.id, "attempt": attempt, "kind": t.kind, "repo": p.repo,
        "branch": t.branch, "start": start, "merges": merges, "verify": verify, "verify_timeout": VERIFY_TIMEOUT}
    if commits and all(commits):  # the worker checks out by commit: no fetch when its clone can read them
        spec["start_commit"], spec["merge_commits"] = commits[0], commits[1:]
    if t.paths:
        spec["paths"] = list(t.paths)
    if t.timeout_seconds:
        spec["timeout"] = t.timeout_seconds
    lines = [f"Codeswarm project {p.name} ({p.project_id}), task {t.id}: {t.title}",
             (f"You work in a git checkout of the project on branch {t.branch} "
              f"(projects/{p.project_id} in your workspace; its absolute path is given above)."),
             ""]
    if t.kind == "integration":
        lines.append(f"Merging {', '.join(t.merge)} into the integration branch left conflicts in: "
                     f"{', '.join(t.conflict_files)}. Resolve every conflict so that both sides' intent is kept.")
    elif t.depends_on:
        lines.append(f"The branch already holds the results of the tasks it depends on: {', '.join(t.depends_on)}.")
    lines += ["", t.prompt, ""]
    if t.paths:
        lines.append(f"Change only these paths (anything else fails the task): {', '.join(t.paths)}")
    if t.timeout_seconds:
        lines.append(f"The attempt is stopped after {t.timeout_seconds:g} seconds.")
    if verify:
        lines.append(f"When you are done this check must pass in the checkout: `{verify}`")
    lines.append("Leave your changes in the work tree: Codeswarm commits everything, runs the check and pushes "
                 "the branch. Reply with a short summary of what you changed.")
    if attempt > 1:
        lines += ["", f"This is attempt {attempt} of {p.max_attempts}. The previous attempt failed: {t.error}"]
        if t.last_output:
            lines += ["```", t.last_output[-MAX_OUTPUT_IN_PROMPT:], "```"]
    return "\n".join(lines), spec


# ---------------------------------------------------------------------- dispatch

def dispatch(st: ProjectsState, inp: Dispatch, now: float, ids: Callable[[], str], out: Out) -> None:
    claimed: set[tuple[str, int]] = set()
    for p in st.projects.values():
        if p.state in ("running", "integrating"):
            _dispatch_project(p, inp, now, ids, out, claimed)


def _dispatch_project(p: Project, inp: Dispatch, now: float, ids: Callable[[], str], out: Out,
                      claimed: set[tuple[str, int]]) -> None:
    pid = p.project_id
    states = {tid: t.state for tid, t in p.tasks.items()}   # local view: emitted changes are not applied yet
    busy = {(t.swarm_id, t.node_id) for t in p.tasks.values() if t.state in ACTIVE_TASK_STATES}
    attempts = {tid: t.attempts for tid, t in p.tasks.items()}
    ended: set[str] = set()  # retried from the next pass, whose prompt then says why this attempt failed
    for t in p.tasks.values():
        if t.state in ACTIVE_TASK_STATES and t.injection_id in inp.ended:
            states[t.id], attempts[t.id] = end_attempt(p, t, inp.ended[t.injection_id], now, out)
            busy.discard((t.swarm_id, t.node_id))
            ended.add(t.id)
        elif t.state in ACTIVE_TASK_STATES and t.injection_id in inp.gone:
            out.emit("project_task_ready", {"project_id": pid, "task_id": t.id, "requeued": True,
                                            "reason": "its node or injection is gone"})
            states[t.id] = "ready"
            attempts[t.id] = max(0, t.attempts - 1)  # as the reducer does: the lost attempt does not count
            busy.discard((t.swarm_id, t.node_id))
    # readiness and blocking, in topological order so that a chain settles in one pass
    for t in p.tasks.values():
        if states[t.id] not in ("pending", "ready"):
            continue
        bad = [d for d in t.depends_on if states.get(d) in ("failed", "blocked", "cancelled")]
        if bad:
            out.emit("project_task_blocked", {"project_id": pid, "task_id": t.id, "blocked_by": bad})
            states[t.id] = "blocked"
        elif states[t.id] == "pending" and all(states.get(d) == "completed" for d in t.depends_on):
            out.emit("project_task_ready", {"project_id": pid, "task_id": t.id})
            states[t.id] = "ready"
    # assignment: ready tasks (topological order) to idle nodes of the project's swarms
    # a project whose budget is spent assigns nothing until it is raised (core/project_budget.py)
    free = [] if p.budget_exceeded else [(sid, n) for sid in p.swarms for n in inp.idle.get(sid, ())
                                         if (sid, n) not in claimed and (sid, n) not in busy]
    for t in p.tasks.values():
        if states[t.id] != "ready" or not free or t.id in ended:
            continue
        sid, node = free.pop(0)
        claimed.add((sid, node))
        attempt = attempts[t.id] + 1
        iid = ids()
        content, spec = task_work(p, t, attempt)
        out.emit("project_task_assigned", {"project_id": pid, "task_id": t.id, "swarm_id": sid, "node_id": node,
                                           "injection_id": iid, "attempt": attempt, "branch": t.branch,
                                           "node_restarts": inp.restarts.get((sid, node), 0)})
        out.effect(SendTask(pid, t.id, sid, node, iid, content, spec))
        states[t.id] = "assigned"
    if any(s in OPEN_TASK_STATES for s in states.values()) or p.integrating:
        return
    _finish_or_integrate(p, states, now, out)


def _finish_or_integrate(p: Project, states: dict[str, str], now: float, out: Out) -> None:
    pid = p.project_id
    tasks = [t for t in p.tasks.values() if t.kind == "task"]
    done = [t.branch for t in tasks if states[t.id] == "completed"]
    integration_failed = [t.id for t in p.tasks.values() if t.kind == "integration" and states[t.id] == "failed"]
    if integration_failed:
        out.emit("project_failed", {"project_id": pid, "finished_at": now,
                                    "reason": f"integration conflict not resolved ({', '.join(integration_failed)})"})
        return
    if done and not p.integration_done:
        todo = tuple(b for b in done if b not in p.integrated)
        out.emit("project_integration_started", {"project_id": pid, "branches": list(todo)})
        out.effect(Integrate(pid, p.repo, p.integration_branch, p.integration_start or p.base, todo,
                             p.verify))
        return
    bad = [t.id for t in tasks if states[t.id] != "completed"]
    if not bad:
        out.emit("project_completed", {"project_id": pid, "finished_at": now,
                                       "integration_branch": p.integration_branch,
                                       "integration_commit": p.integration_commit})
    else:
        failed = [t for t in bad if states[t] == "failed"]
        blocked = [t for t in bad if states[t] != "failed"]
        out.emit("project_failed", {"project_id": pid, "finished_at": now, "failed": failed, "blocked": blocked,
                                    "reason": f"{len(failed)} task(s) failed, {len(blocked)} blocked or cancelled"})


# ---------------------------------------------------------------------- worker evidence

def turn_started(st: ProjectsState, inp: TurnStarted, now: float, ids: Callable[[], str], out: Out) -> None:
    found = st.task_of(inp.injection_id)
    if found and found[1].state == "assigned":
        out.emit("project_task_started", {"project_id": found[0].project_id, "task_id": found[1].id,
                                          "injection_id": inp.injection_id, "attempt": found[1].attempts,
                                          "swarm_id": found[1].swarm_id, "node_id": found[1].node_id,
                                          "started_at": now})


def task_result(st: ProjectsState, inp: TaskResult, now: float, ids: Callable[[], str], out: Out) -> None:
    """A worker's project_task_result line. Anything but the active attempt's own result is ignored,
    so a replayed or forged line never completes a task twice."""
    found = st.task_of(inp.injection_id)
    if not found:
        return
    p, t = found
    r = inp.result
    if t.state not in ACTIVE_TASK_STATES or r.get("task_id") != t.id or r.get("project_id") != p.project_id:
        return
    base = {"project_id": p.project_id, "task_id": t.id, "attempt": t.attempts, "injection_id": inp.injection_id}
    timings = r.get("timings_ms")
    if isinstance(timings, dict) and len(timings) <= 8 and all(isinstance(v, (int, float)) for v in timings.values()):
        base["timings_ms"] = {str(k)[:16]: v for k, v in timings.items()}
    commit = r.get("commit") if isinstance(r.get("commit"), str) and COMMIT_ID.fullmatch(r["commit"]) else None
    if r.get("ok") is True and commit is None:  # a forged or broken line: dependents would start from it
        r = {**r, "ok": False, "error": f"the task's result names no commit id: {str(r.get('commit'))[:80]!r}"}
    if r.get("ok") is True and commit:
        if t.verify:
            out.emit("project_task_verified", {**base, "commit": commit, "output": _short(r.get("verify_output"))})
        out.emit("project_task_completed", {**base, "commit": commit, "branch": t.branch, "finished_at": now})
        return
    if p.budget_exceeded:  # the budget stopped this attempt: the task waits for a raise, no attempt spent
        out.emit("project_task_ready", {**base, "requeued": True, "reason": "budget_exceeded"})
        return
    final = t.attempts >= p.max_attempts
    out.emit("project_task_failed", {**base, "final": final, "finished_at": now, "stage": r.get("stage"),
                                     "error": str(r.get("error") or "the attempt failed")[:2000],
                                     "output": _short(r.get("verify_output"))})


def _short(text: Any) -> str | None:
    return text[-MAX_OUTPUT_IN_PROMPT:] if isinstance(text, str) else None


def integration_done(st: ProjectsState, inp: IntegrationDone, now: float, ids: Callable[[], str], out: Out) -> None:
    p = st.projects.get(inp.project_id)
    if p is None or not p.integrating or p.state != "integrating":
        return
    pid = p.project_id
    if inp.error:
        out.emit("project_failed", {"project_id": pid, "finished_at": now, "reason": f"integration: {inp.error}"})
        return
    if inp.conflict_branch:
        n = sum(1 for t in p.tasks.values() if t.kind == "integration") + 1
        tid = f"integration-{n}"
        verify = combined_verify(p)
        prompt = (f"Resolve the merge conflicts of {inp.conflict_branch} in {', '.join(inp.conflict_files)} "
                  f"(conflict markers are in the files). Keep both sides' changes.")
        out.emit("project_integration_conflict", {
            "project_id": pid, "task_id": tid, "branch": inp.conflict_branch, "files": list(inp.conflict_files),
            "merged": list(inp.merged), "integration_commit": inp.commit, "prompt": prompt, "verify": verify})
        return
    out.emit("project_integrated", {"project_id": pid, "integration_branch": p.integration_branch,
                                    "integration_commit": inp.commit, "merged": list(p.integrated) + list(inp.merged)})


# ---------------------------------------------------------------------- resume

@dataclass(frozen=True)
class ResumePlan:
    reset: tuple[str, ...]        # back to pending: completed with a missing branch, failed (--retry-failed), ...
    requeue: tuple[str, ...]      # active tasks whose node is gone
    will_run: tuple[str, ...]     # every task that resume then runs (the preview's answer)
    missing_branches: tuple[str, ...]
    reasons: dict[str, str]       # task id -> why it is reset
    stopped: tuple[str, ...] = () # active tasks reset because a dependency re-runs (their attempt is stopped)

    def public(self) -> dict[str, Any]:
        return {"reset": list(self.reset), "requeue": list(self.requeue), "will_run": list(self.will_run),
                "missing_branches": list(self.missing_branches), "reasons": dict(self.reasons),
                "stopped": list(self.stopped)}


def resume_plan(p: Project, heads: dict[str, str], live: frozenset[str], retry_failed: bool) -> ResumePlan:
    reasons: dict[str, str] = {}
    requeue, missing, stopped = [], [], []
    states = {tid: t.state for tid, t in p.tasks.items()}
    for t in p.tasks.values():  # topological order: a dependency is decided before its dependents
        if t.kind != "task":
            continue
        rerun = [d for d in t.depends_on if d in reasons]
        if rerun and t.state in ("completed", "ready", "assigned", "running"):
            # built (or being built) on a result that is replaced: it runs again after the new one
            reasons[t.id] = f"its dependency {', '.join(rerun)} re-runs (it was built on the old result)"
            if t.state in ACTIVE_TASK_STATES:
                stopped.append(t.id)
        elif t.state == "completed" and t.branch not in heads:
            reasons[t.id] = f"its branch {t.branch} is missing"
            missing.append(t.branch)
        elif t.state in ("cancelled", "blocked"):
            reasons[t.id] = t.state
        elif t.state == "failed" and retry_failed:
            reasons[t.id] = "failed (--retry-failed)"
    for t in p.tasks.values():
        if t.state in ACTIVE_TASK_STATES and t.injection_id not in live and t.id not in reasons:
            requeue.append(t.id)
    for tid in reasons:
        states[tid] = "pending"
    for tid in requeue:
        states[tid] = "ready"
    # a task that stays blocked by a failure that is not retried does not run
    stuck: set[str] = set()
    for t in p.tasks.values():
        if states[t.id] == "failed" or any(d in stuck for d in t.depends_on):
            stuck.add(t.id)
    will_run = tuple(t.id for t in p.tasks.values()
                     if states[t.id] in ("pending", "ready") and t.id not in stuck)
    return ResumePlan(tuple(reasons), tuple(requeue), will_run, tuple(missing), reasons, tuple(stopped))


def resume(st: ProjectsState, inp: Resume, now: float, ids: Callable[[], str], out: Out) -> ResumePlan:
    p = _get(st, inp.project_id)
    plan = resume_plan(p, inp.heads, inp.live, inp.retry_failed)
    pid = p.project_id
    _stop(p, [p.tasks[tid] for tid in plan.stopped], "project_resume", out)
    for tid in plan.requeue:
        out.emit("project_task_ready", {"project_id": pid, "task_id": tid, "requeued": True,
                                        "reason": "resume: its node is gone"})
    for tid in plan.reset:
        out.emit("project_task_reset", {"project_id": pid, "task_id": tid, "reason": plan.reasons[tid]})
    out.emit("project_resumed", {"request_id": inp.request_id, "project_id": pid,
                                 "swarms": list(inp.swarms) or list(p.swarms), "rerun": bool(plan.reset),
                                 **plan.public()})
    return plan


# ---------------------------------------------------------------------- the feature: inputs over CoreState

@dataclass(frozen=True)
class DispatchProjects:
    """Look at every open project now (after anything that can free a node or finish a task)."""


@dataclass(frozen=True)
class RecoverProjects:
    """After a restart: catch up turn starts, re-send undelivered task lines, redo a cut integration."""


@dataclass(frozen=True)
class TaskResultLine:
    """A worker's `project_task_result` outbox line (lifecycle), from node `node_id` of `swarm_id`."""
    swarm_id: str
    node_id: int
    line: dict[str, Any]


def dispatch_evidence(state: CoreState) -> Dispatch:
    """Idle nodes of the swarms of open projects (with their restart counts), and the active attempts
    whose node or injection is gone or whose worker died after taking them (core/project_loss.py)."""
    projects = state.projects
    idle: dict[str, tuple[int, ...]] = {}
    wanted = {sid for p in projects.projects.values() if p.state in ("running", "integrating") for sid in p.swarms}
    for sid in wanted:
        sw = state.swarms.get(sid)
        if sw is not None and sw.active:
            idle[sid] = tuple(n for n, node in enumerate(sw.nodes) if node.worker == "running" and not sw.node_busy(n))
    restarts = {(sid, n): state.swarms[sid].nodes[n].restart_count for sid, nodes in idle.items() for n in nodes}
    gone, ended = attempt_evidence(state)
    return Dispatch(idle=idle, gone=gone, ended=ended, restarts=restarts)


def _send_tasks(state: CoreState, out: Any, first: int) -> None:
    """Turn the SendTask effects from `first` on into injections (inject_ack + inbox line with project_task)."""
    pending = out.effects[first:]
    del out.effects[first:]
    for eff in pending:
        if isinstance(eff, StopTasks):
            _stop_injections(state, out, eff)
            continue
        if not isinstance(eff, SendTask):
            out.effect(eff)
            continue
        swarm = state.swarms.get(eff.swarm_id)
        if swarm is None:
            continue
        if eff.injection_id in swarm.injections:  # a re-send after a restart: the worker dedups by id
            out.effect(InboxLine(swarm.swarm_id, eff.node_id, {
                "type": "user", "injection_id": eff.injection_id, "content": eff.content, "ts": out.now,
                "project_task": eff.project_task}))
            continue
        mark = len(out.effects)
        steps.inject(out, swarm, [eff.node_id], eff.content, None, injection_ids=[eff.injection_id])
        for line in out.effects[mark:]:
            if isinstance(line, InboxLine) and line.line.get("injection_id") == eff.injection_id:
                line.line["project_task"] = eff.project_task


def _stop_injections(state: CoreState, out: Any, eff: StopTasks) -> None:
    """Fail the task injections a worker has not started; ask the worker to stop the running ones
    (control `interrupt`: it interrupts the agent's turn, kills a verify, skips a queued task)."""
    per_node: dict[tuple[str, int], list[str]] = {}
    for sid, node_id, iid in eff.injections:
        swarm = state.swarms.get(sid)
        inj = swarm.injections.get(iid) if swarm else None
        if swarm is None or inj is None or iid in out.closed_injections:
            continue
        if inj.state in ("acked", "delivered"):
            steps.fail_injection(out, swarm, node_id, iid, inj.request_id, eff.reason,
                                 f"project {eff.project_id}: the task was stopped ({eff.reason})")
        per_node.setdefault((sid, node_id), []).append(iid)
    for (sid, node_id), ids in sorted(per_node.items()):
        out.effect(InboxLine(sid, node_id, {"type": "control", "control_id": out.ids(), "ts": out.now,
                                            "payload": {"kind": "interrupt", "reason": eff.reason,
                                                        "injection_ids": ids}}))


def _on_state(fn: Callable[..., Any]) -> Callable[..., Any]:
    def decider(state: CoreState, inp: Any, now: float, ids: Callable[[], str], out: Any) -> None:
        first = len(out.effects)
        fn(state.projects, inp, now, ids, out)
        _send_tasks(state, out, first)
    return decider


def _decide_dispatch(state: CoreState, inp: DispatchProjects, now: float, ids: Callable[[], str], out: Any) -> None:
    first = len(out.effects)
    dispatch(state.projects, dispatch_evidence(state), now, ids, out)
    _send_tasks(state, out, first)


def _decide_result(state: CoreState, inp: TaskResultLine, now: float, ids: Callable[[], str], out: Any) -> None:
    iid, data = inp.line.get("injection_id"), inp.line.get("data")
    if not isinstance(iid, str) or not isinstance(data, dict):
        return
    found = state.projects.task_of(iid)
    if not found:
        late_result(state, inp.swarm_id, inp.node_id, inp.line, out)  # its attempt was ended as lost: say so
        return
    if found[1].swarm_id != inp.swarm_id or found[1].node_id != inp.node_id:
        return  # only the node the attempt was sent to may report it
    first = len(out.events)
    if found[1].state == "assigned":
        turn_started(state.projects, TurnStarted(iid), now, ids, out)
    task_result(state.projects, TaskResult(iid, data), now, ids, out)
    for ev in out.events[first:]:  # outbox-derived: the node's read position is recovered from these
        ev.data.update(swarm_id=inp.swarm_id, node_id=inp.node_id, outbox_seq=inp.line.get("seq"))


def _decide_recovery(state: CoreState, inp: RecoverProjects, now: float, ids: Callable[[], str], out: Any) -> None:
    first = len(out.effects)
    for p in state.projects.projects.values():
        if p.state not in ("running", "integrating"):
            continue
        for t in p.tasks.values():
            if t.state != "assigned" or not t.injection_id:
                continue
            sw = state.swarms.get(t.swarm_id or "")
            inj = sw.injections.get(t.injection_id) if sw else None
            if inj is not None and inj.state not in ("acked", "delivered"):
                turn_started(state.projects, TurnStarted(t.injection_id), now, ids, out)
            elif inj is None or inj.state == "acked":
                content, spec = task_work(p, t, t.attempts)
                out.effect(SendTask(p.project_id, t.id, t.swarm_id or "", t.node_id or 0, t.injection_id, content,
                                    spec))
        if p.state == "integrating" and p.integrating:  # an integration pass was cut short: redo it
            todo = tuple(t.branch for t in p.tasks.values() if t.kind == "task" and t.state == "completed"
                         and t.branch not in p.integrated)
            out.effect(Integrate(p.project_id, p.repo, p.integration_branch, p.integration_start or p.base, todo,
                                 p.verify))
    _send_tasks(state, out, first)


def _reducer(fn: Callable[[ProjectsState, dict[str, Any]], None]) -> Callable[[CoreState, Event], None]:
    def reduce_event(state: CoreState, event: Event) -> None:
        fn(state.projects, event.data)
    return reduce_event


FEATURE = Feature(
    name="projects",
    deciders={
        CreateProject: _on_state(create), StartProject: _on_state(start), Cancel: _on_state(cancel),
        DispatchProjects: _decide_dispatch, TurnStarted: _on_state(turn_started), TaskResultLine: _decide_result,
        IntegrationDone: _on_state(integration_done), Resume: _on_state(resume), RecoverProjects: _decide_recovery,
    },
    reducers={**{name: _reducer(fn) for name, fn in REDUCERS.items()},
              "project_plan_started": lambda state, ev: plan_started(state.projects, ev.data, ev.seq)},
)
