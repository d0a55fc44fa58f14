"""Task attempts whose worker is gone before it reported them (docs/PROJECTS.md "A worker gone during
an attempt"). Pure: reads CoreState, emits through `out`.

The worker runs an attempt's commit, paths check, verify and push itself, after the agent's turn
ended: a worker killed then (kill -9, OOM) never writes the attempt's `project_task_result`, and the
node's loss only ends the injection's turn. `attempt_evidence` sorts every active attempt:

- gone (requeued, no attempt spent): the worker never took it (its prompt failed or was never
  accepted), or the swarm was stopped on purpose (terminated, a worker `shutdown`);
- ended (`project_task_failed` with `ended_by`, counting as an attempt, retried as a failed one):
  the worker took it (its injection was delivered) and then its node was lost, its worker exited,
  or the node's worker was restarted since the attempt was assigned (`node_restarts`: the restart
  count the attempt was sent under, so a restart seen only after a router restart still counts).

Both are derived from durable state and the failure moves the task off the attempt in the same
event, so each ended attempt fails exactly once, also when the router is killed in between.
A result that arrives after its attempt was ended (a worker that was only unreachable) is not
applied; `late_result` turns it into a non-fatal `agent_error` so it does not pass unseen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from codeswarm.core.project_records import ACTIVE_TASK_STATES, Project, Task
from codeswarm.core.records import CoreState
from codeswarm.core.views import runtime_fields

ENDED_BY = ("node_lost", "worker_exited", "node_restarted")
_STOPPED_SWARM = frozenset({"terminating", "terminated"})


class Out(Protocol):
    def emit(self, name: str, data: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Ended:
    """Why an attempt the worker took ended without its result."""

    ended_by: str   # one of ENDED_BY
    error: str


def classify(state: CoreState, t: Task) -> str | Ended | None:
    """"gone", an Ended, or None (the attempt is still under way) for one active task."""
    sw = state.swarms.get(t.swarm_id or "")
    nid = t.node_id or 0
    if sw is None or not 0 <= nid < sw.node_count:
        return "gone"
    node = sw.nodes[nid]
    inj = sw.injections.get(t.injection_id or "")
    if inj is None or inj.state in ("acked", "failed"):  # the worker never took the attempt
        if (inj is not None and inj.state == "failed") or not sw.active or node.worker == "exited":
            return "gone"
        return None
    if node.worker == "lost":
        return Ended("node_lost", "the node's worker died (kill -9, OOM or a crash) during the attempt, "
                                  "before it reported it")
    if node.worker == "exited" and node.exit_reason != "shutdown" and sw.state not in _STOPPED_SWARM:
        return Ended("worker_exited", f"the node's worker exited ({node.exit_reason or 'error'}, code "
                                      f"{node.exit_code}) during the attempt, before it reported it")
    if t.node_restarts is not None and node.restart_count != t.node_restarts:
        return Ended("node_restarted", "the node's worker was restarted during the attempt (its worker died "
                                       "before it reported it)")
    if not sw.active or node.worker == "exited":  # stopped on purpose: the attempt is not the task's fault
        return "gone"
    return None


def attempt_evidence(state: CoreState) -> tuple[frozenset[str], dict[str, Ended]]:
    """(injection ids of gone attempts, injection id -> Ended) over every running project."""
    gone: set[str] = set()
    ended: dict[str, Ended] = {}
    for p in state.projects.projects.values():
        for t in p.tasks.values():
            if t.state not in ACTIVE_TASK_STATES or not t.injection_id:
                continue
            verdict = classify(state, t)
            if verdict == "gone":
                gone.add(t.injection_id)
            elif isinstance(verdict, Ended):
                ended[t.injection_id] = verdict
    return frozenset(gone), ended


def end_attempt(p: Project, t: Task, why: Ended, now: float, out: Out) -> tuple[str, int]:
    """An attempt whose worker died before reporting it fails like any failed attempt (it counts; retried
    while attempts are left). Returns the task's (state, attempts) after it."""
    base = {"project_id": p.project_id, "task_id": t.id, "attempt": t.attempts, "injection_id": t.injection_id,
            "swarm_id": t.swarm_id, "node_id": t.node_id}
    if p.budget_exceeded:  # as for a result: the budget stopped the project, no attempt is spent
        out.emit("project_task_ready", {**base, "requeued": True, "reason": "budget_exceeded"})
        return "ready", max(0, t.attempts - 1)
    final = t.attempts >= p.max_attempts
    out.emit("project_task_failed", {**base, "final": final, "finished_at": now, "stage": None, "error": why.error,
                                     "output": None, "ended_by": why.ended_by})
    return ("failed" if final else "ready"), t.attempts


def late_result(state: CoreState, swarm_id: str, node_id: int, line: dict[str, Any], out: Out) -> None:
    """A project_task_result for an attempt that was ended as lost: not applied (the task already
    moved on: retried, or failed for good); said as a non-fatal agent_error. It carries the line's
    outbox_seq, so a restarted router that reads the line again does not say it twice."""
    data = line.get("data")
    iid = line.get("injection_id")
    if not isinstance(data, dict):
        return
    p = state.projects.projects.get(str(data.get("project_id")))
    t = p.tasks.get(str(data.get("task_id"))) if p else None
    sw = state.swarms.get(swarm_id)
    if p is None or t is None or not t.lost_attempt or sw is None or not 0 <= node_id < sw.node_count:
        return
    lost = t.lost_attempt
    if (lost.get("injection_id"), lost.get("swarm_id"), lost.get("node_id")) != (iid, swarm_id, node_id):
        return  # only the node the ended attempt was sent to, naming its injection
    outcome = "ok" if data.get("ok") is True else f"failed: {str(data.get('error'))[:200]}"
    out.emit("agent_error", {
        **runtime_fields(sw, node_id, iid), "fatal": False, "error_code": "project_result_late",
        **({"outbox_seq": line["seq"]} if isinstance(line.get("seq"), int) else {}),
        "message": (f"project {p.project_id} task {t.id}: the result of attempt {lost.get('attempt')} ({outcome}) came "
                    f"after the router ended that attempt ({lost.get('ended_by')}); it is ignored: the task is "
                    f"{t.state} (attempt {t.attempts})")})
