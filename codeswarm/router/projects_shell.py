"""The router's shell for projects: commands, the dispatch loop, git effects, snapshot, recovery.

The decisions are the core's (codeswarm/core/projects.py, pure); this module turns commands and
worker evidence into its inputs, carries out its effects (task injections through the router,
integration passes with real git) and keeps `projects.json`, the snapshot of the project records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import trio

from codeswarm.core import Event
from codeswarm.core import project_budget
from codeswarm.core import projects as D
from codeswarm.core import reduce as core_reduce
from codeswarm.core.lifecycle import Inject
from codeswarm.core.project_graph import GraphError, parse_graph
from codeswarm.core.project_records import ACTIVE_TASK_STATES, Project, ProjectsState
from codeswarm.projects import gitops, gitproc
from codeswarm.projects.plan import extract_plan
from codeswarm.errors import InvalidParam
from codeswarm.protocol import (
    Command,
    Rejection,
    require_bool,
    require_int,
    require_str,
)
from codeswarm.router.store import atomic_write
from codeswarm.spend.budget import parse_budget

if TYPE_CHECKING:
    from codeswarm.router.app import Router
    from codeswarm.router.connection import Connection

log = logging.getLogger("codeswarm.router.projects")

# Events after which a project may have something to do.
TRIGGERS = frozenset({"turn_complete", "inject_failed", "node_status", "swarm_status", "swarm_terminated",
                      "project_created", "project_started", "project_task_completed", "project_task_failed",
                      "project_task_ready", "project_integrated", "project_integration_conflict", "project_resumed",
                      "project_task_reset", "project_task_blocked", "budget_updated"})
PROJECT_LEVEL = frozenset({"project_created", "project_started", "project_completed", "project_failed",
                           "project_cancelled", "project_resumed", "project_integrated"})
SPEND_EVENTS = project_budget.BUDGET_EVENTS | {"usage"}  # project-scoped ones change the project records
SNAPSHOT_EVERY = 1.0
RESNAPSHOT_LAG = 5_000  # a start that read more log than this for projects writes projects.json again
PLAN_TIMEOUT = 1800.0
PLANNER_PROMPT = (
    "You are the planner of a Codeswarm project. Split the specification below into a task graph for "
    "parallel coding agents. Answer with ONE fenced ```json block holding {\"tasks\": [{\"id\", \"title\", "
    "\"prompt\", \"depends_on\": [ids], \"verify\": \"shell command\"}]} and nothing else after it. Ids: "
    "letters, digits, - _ . only.\n\nSpecification:\n"
)


def is_project_event(name: str) -> bool:
    return name.startswith("project") and name in D.REDUCERS


# Every event name `ProjectsShell.observe` acts on: the router calls it only for these (it runs
# per event on the ingest's hot path, and an assistant_delta concerns no project).
OBSERVED = frozenset({name for name in D.REDUCERS if name.startswith("project")} | TRIGGERS | SPEND_EVENTS
                     | {"turn_started", "assistant", "turn_complete", "inject_failed"})


class ProjectsShell:
    OBSERVED = OBSERVED

    def __init__(self, router: Router) -> None:
        self.r = router
        self.path = router.state_dir / "projects.json"
        self.applied_seq = 0
        self._wake = trio.Event()
        self._due = True
        self._dirty = False
        self._starts: list[str] = []
        self._integrations: dict[str, trio.CancelScope] = {}  # project -> its running integration pass
        self._live_git: set[str] = set()  # projects whose stopped pass's git outlived STOP_WAIT
        self.nursery: trio.Nursery | None = None
        self.plan_waiters: dict[str, tuple[list[str], trio.Event]] = {}  # planner injection -> answers, done

    @property
    def state(self) -> ProjectsState:
        return self.r.state.projects

    # ------------------------------------------------------------------ observe, snapshot, recover

    def observe(self, name: str, data: dict[str, Any], seq: int) -> None:
        """Called by the router for every recorded event named in OBSERVED, after the core reduced it."""
        if is_project_event(name) or (name in SPEND_EVENTS and project_budget.is_project_scoped(name, data)):
            self.applied_seq = seq  # the snapshot then waits until these are durable
            self._dirty = True
        if name == "turn_started" and data.get("injection_id") in self.state.by_injection:
            self._starts.append(data["injection_id"])
            self._wake.set()
        if name in TRIGGERS:
            self._due = True
            self._wake.set()
        if self.plan_waiters and data.get("injection_id") in self.plan_waiters:
            answers, done = self.plan_waiters[data["injection_id"]]
            if name == "assistant" and data.get("final_answer"):
                answers.append(str(data.get("content") or ""))
            elif name in ("turn_complete", "inject_failed"):
                done.set()

    def load_snapshot(self) -> int:
        """Load projects.json into the core state; returns the seq it covers (replay the log after it)."""
        try:
            raw = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            self._recovery_warning("projects_snapshot_ignored", f"projects snapshot ignored ({exc}): replaying the whole log")
            return 0
        for rec in raw.get("projects", []):
            try:
                p = Project.from_json(rec)
            except (TypeError, KeyError, ValueError) as exc:
                self._recovery_warning("projects_snapshot_ignored", f"projects snapshot: a project record ignored ({exc!r})")
                continue
            self.state.projects[p.project_id] = p
        for plan in raw.get("plans") or []:
            if isinstance(plan, dict) and isinstance(plan.get("injection_id"), str):
                self.state.plans[plan["injection_id"]] = plan
        self.state.reindex()
        self.applied_seq = int(raw.get("applied_seq") or 0)
        return self.applied_seq

    def recover(self) -> None:
        """Runs in the router's recovery (a thread, before the trio tasks): the project events after the
        snapshot go through the core's reduce, each once (the router's own replay skips them)."""
        start = self.load_snapshot()

        def maybe_ours(raw: bytes) -> bool:
            return b'"event":"project' in raw or project_budget.may_be_project_scoped(raw)

        for seq, name, data in self._logged_events(start, maybe_ours):
            scoped = not is_project_event(name) and project_budget.is_project_scoped(name, data)
            if not scoped and not is_project_event(name):
                continue
            try:
                if scoped:  # a task's usage or a project budget event: the project part only, once by seq
                    project_budget.replay(self.r.state, Event(name, data, 0.0, seq))
                else:
                    core_reduce(self.r.state, Event(name, data, 0.0, seq))
                self.applied_seq = seq
            except (KeyError, TypeError, ValueError) as exc:  # IllegalTransition is a ValueError too
                self._recovery_warning("event_replay_failed", f"event log: could not replay {name} seq {seq}: {exc!r}")
        self.state.reindex()
        self._due = True
        # Every event up to the head was read: the next snapshot covers them all, so that the next
        # start reads only what comes after (issue 13), even when no project event was ever logged.
        if self.r.log.head_seq - start > RESNAPSHOT_LAG:
            self._dirty = True
        self.applied_seq = max(self.applied_seq, self.r.log.head_seq)

    def _logged_events(self, since: int,
                       wanted: Callable[[bytes], bool]) -> Iterator[tuple[int, str, dict[str, Any]]]:
        """(seq, event, data) of the logged lines after `since` that pass `wanted` (a byte test that
        spares the checks of the others). A damaged line is skipped: the router's own replay of the
        same line reports it (event_log_damaged_lines)."""
        for seq, raw, name, data in self.r.log.read_events(since):
            if wanted(raw):
                yield seq, name, data

    def _recovery_warning(self, code: str, message: str) -> None:
        """Told to clients once the router serves (router_warning) and shown by `router status`; a
        damaged projects.json used to stop the router from starting at all (an AttributeError)."""
        self.r.recovery_warnings.append({"message": message, "error_code": code})
        log.warning("%s", message)

    async def save_if_due(self) -> None:
        """On a clean stop: write the snapshot if one is due and the log holds everything it covers."""
        if self._dirty and self.r.committed_seq >= self.applied_seq:
            await self.save_snapshot()

    async def snapshotter(self) -> None:
        while True:
            await trio.sleep(SNAPSHOT_EVERY)
            if self._dirty:
                await self.save_snapshot()

    async def save_snapshot(self) -> None:
        while self.r.committed_seq < self.applied_seq:  # the snapshot never runs ahead of the log
            await self.r.commit()
        self._dirty = False
        body = orjson.dumps({"applied_seq": self.applied_seq, "plans": list(self.state.plans.values()),
                             "projects": [p.to_json() for p in self.state.projects.values()]})
        await trio.to_thread.run_sync(atomic_write, self.path, body)

    # ------------------------------------------------------------------ deciding and carrying out

    def decide(self, inp: Any) -> list[Any]:
        """The core decides and the router records; a project-level change is also announced."""
        decision = self.r.decide(inp)
        for ev in decision.events:
            if ev.name in PROJECT_LEVEL or (ev.name in project_budget.BUDGET_EVENTS
                                            and ev.data.get("scope") == project_budget.SCOPE):
                p = self.state.projects.get(ev.data.get("project_id") or "")
                if p is not None:
                    self.r.emit("projects_updated", {"project_id": p.project_id, "project": p.summary()})
        return decision.effects

    async def carry_out(self, effects: list[Any]) -> None:
        """Inbox lines once their events are durable (the router's carry_out), then integration passes."""
        if not effects:
            return
        await self.r.carry_out(effects)
        for eff in effects:
            if isinstance(eff, D.Integrate) and eff.project_id not in self._integrations and self.nursery is not None:
                self._integrations[eff.project_id] = trio.CancelScope()
                self.nursery.start_soon(self._integrate, eff)

    async def _integrate(self, eff: D.Integrate) -> None:
        """One integration pass, in a thread whose git and verify a project cancel or the router's
        stop kill (gitproc.run_stoppable); a stopped pass decides nothing (a cancelled project
        ignores it; a restarted router redoes it)."""
        workdir = self.r.state_dir / "projects" / eff.project_id / "integration"
        stop = gitproc.GitStop()

        def work() -> D.IntegrationDone:
            if eff.project_id not in self._live_git and (workdir / ".git").is_dir():
                gitops.clear_locks(workdir)  # a git of a SIGKILLed router (killed by its guard) left them
            step = gitops.integrate(eff.repo, workdir, eff.integration_branch, eff.start, eff.branches)
            if step.conflict is not None:
                return D.IntegrationDone(eff.project_id, step.merged, step.commit, step.conflict.branch,
                                         step.conflict.files)
            if eff.verify:
                ok, output = gitops.run_verify(eff.verify, workdir, D.VERIFY_TIMEOUT)
                if not ok:
                    return D.IntegrationDone(eff.project_id, step.merged, step.commit,
                                             error=f"verify of the integration branch failed: {output[-2000:]}")
            return D.IntegrationDone(eff.project_id, step.merged, step.commit)

        done: D.IntegrationDone | None = None
        try:
            with self._integrations[eff.project_id]:
                try:
                    done = await gitproc.run_stoppable(stop, work)
                except (gitops.GitError, OSError) as exc:
                    done = D.IntegrationDone(eff.project_id, (), None, error=str(exc))
        finally:
            del self._integrations[eff.project_id]
            if stop.stopped:
                self._after_integration_stop(eff.project_id, stop, workdir)
        if done is not None:
            await self.carry_out(self.decide(done))

    def _after_integration_stop(self, pid: str, stop: gitproc.GitStop, workdir: Path) -> None:
        """Leave the integration clone usable for the next pass (a killed git leaves its locks)."""
        if stop.unfinished:  # the thread still runs git: its locks are live
            self._live_git.add(pid)
            self.r.emit("router_warning", {"message": f"project {pid}: an integration git step still ran "
                                                      f"{gitproc.STOP_WAIT:g} s after it was stopped"})
            return
        if (workdir / ".git").is_dir():
            gitops.clear_locks(workdir)

    def stop_integration(self, pid: str) -> bool:
        """Stop the project's running integration pass (its git or verify is killed); whether one ran."""
        scope = self._integrations.get(pid)
        if scope is None:
            return False
        scope.cancel()
        return True

    # ------------------------------------------------------------------ the dispatch loop

    async def dispatcher(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            nursery.start_soon(self.snapshotter)
            task_status.started()
            self.recover_plans()
            await self.carry_out(self.decide(D.RecoverProjects()))
            while True:
                if not self._due and not self._starts:
                    with trio.move_on_after(1.0):  # also a periodic look: nothing must wait on a lost wake-up
                        await self._wake.wait()
                    self._wake = trio.Event()
                self._due = False
                starts, self._starts = self._starts, []
                try:
                    for iid in starts:
                        self.decide(D.TurnStarted(iid))
                    effects = self.decide(D.DispatchProjects())
                except Exception:  # a bug in one pass must not stop every project: log it, look again
                    log.exception("project dispatch failed")
                    self.r.emit("router_warning", {"message": "project dispatch failed; see the router log"})
                    await trio.sleep(1.0)
                    continue
                if effects:  # the next pass need not wait for this one's fsync and inbox writes
                    nursery.start_soon(self._carry_out_logged, effects)

    async def _carry_out_logged(self, effects: list[Any]) -> None:
        try:
            await self.carry_out(effects)
        except Exception:  # the router never dies from one task's inbox write: say so and go on
            log.exception("carrying out a project decision failed")
            self.r.emit("router_warning", {"message": "a project decision's effects failed; see the router log"})

    def on_task_result(self, swarm_id: str, node_id: int, line: dict[str, Any]) -> None:
        """A `project_task_result` lifecycle line from the ingest (after the core saw it as a line)."""
        self.decide(D.TaskResultLine(swarm_id, node_id, line))
        self._due = True
        self._wake.set()

    # ------------------------------------------------------------------ commands

    def _reject(self, cmd: Command, code: str, reason: str) -> Rejection:
        return Rejection(code, reason, request_id=cmd.request_id, command=cmd.command)

    def _swarms(self, cmd: Command, key: str = "swarms", required: bool = True) -> tuple[str, ...]:
        raw = cmd.payload.get(key)
        if raw is None and not required:
            return ()
        if not isinstance(raw, list) or not raw or not all(isinstance(s, str) for s in raw) or len(raw) > 64:
            raise self._reject(cmd, "invalid_payload", f"{key}: must be a non-empty list of swarm ids")
        for sid in raw:
            sw = self.r.state.swarms.get(sid)
            if sw is None:
                raise self._reject(cmd, "unknown_swarm", f"unknown swarm {sid!r}")
            if not sw.active:
                raise self._reject(cmd, "invalid_state", f"swarm {sid} is {sw.state}")
        return tuple(dict.fromkeys(raw))

    async def _check_repo(self, cmd: Command) -> tuple[str, str, str]:
        repo = require_str(cmd, "repo") or ""
        base = require_str(cmd, "base", optional=True) or "main"
        if len(repo) > 4096 or repo.startswith("-") or "\n" in repo:
            raise self._reject(cmd, "invalid_payload", "repo: not a repository path or URL")
        if not gitops.BRANCH_NAME.fullmatch(base):
            raise self._reject(cmd, "invalid_payload", f"base: {base[:80]!r} is not a branch name")
        try:
            commit = await trio.to_thread.run_sync(gitops.check_repo, repo, base)
        except gitops.GitError as exc:
            raise self._reject(cmd, "invalid_repo", str(exc)) from None
        return repo, base, commit

    def _graph(self, cmd: Command, raw: Any) -> Any:
        try:
            return parse_graph(raw)
        except GraphError as exc:
            raise self._reject(cmd, "invalid_task_graph", str(exc)) from None

    def _run(self, cmd: Command, inp: Any) -> list[Any]:
        try:
            return self.decide(inp)
        except D.ProjectError as exc:
            raise self._reject(cmd, exc.reason, str(exc)) from None

    async def cmd_project_create(self, conn: Connection, cmd: Command) -> None:
        await self._create(cmd)

    async def _create(self, cmd: Command, plan_injection_id: str | None = None, planner_spend_usd: float = 0.0) -> None:
        graph = self._graph(cmd, cmd.payload.get("tasks"))
        swarms = self._swarms(cmd)
        name = require_str(cmd, "name", optional=True, allow_empty=True) or ""
        start = require_bool(cmd, "start", default=False)
        attempts = require_int(cmd, "max_attempts", default=2, minimum=1)
        budget = self._budget(cmd)
        if budget is None and "budget_usd" not in cmd.payload:
            default = self.r.state.settings.default_project_budget_usd
            budget = None if default is None else float(default)
        repo, base, commit = await self._check_repo(cmd)
        await self.carry_out(self._run(cmd, D.CreateProject(cmd.request_id, name[:64], repo, base, commit, swarms,
                                                             graph, attempts, start, budget, planner_spend_usd,
                                                             plan_injection_id)))

    def _budget(self, cmd: Command) -> float | None:
        """The payload's `budget_usd`: a number of US dollars > 0, or null (docs/SPEND.md)."""
        try:
            b = parse_budget(cmd.payload.get("budget_usd"))
        except InvalidParam as exc:
            raise self._reject(cmd, "invalid_payload", f"{exc.key}: {exc.problem}") from None
        return None if b is None else float(b)

    async def cmd_project_budget(self, conn: Connection, cmd: Command) -> None:
        pid = self._project_id(cmd)
        if "budget_usd" not in cmd.payload:
            raise self._reject(cmd, "invalid_payload", "budget_usd: required (a number of US dollars > 0, or null)")
        await self.carry_out(self._run(cmd, project_budget.SetProjectBudget(pid, self._budget(cmd), cmd.request_id)))

    def _refuse_over_budget(self, cmd: Command, pid: str) -> None:
        why = project_budget.refusal(self.state.projects[pid])
        if why is not None:
            raise self._reject(cmd, "budget_exceeded", why)

    def _project_id(self, cmd: Command) -> str:
        pid = require_str(cmd, "project_id") or ""
        if pid not in self.state.projects:
            raise self._reject(cmd, "unknown_project", f"unknown project {pid[:80]!r}")
        return pid

    async def cmd_project_start(self, conn: Connection, cmd: Command) -> None:
        pid = self._project_id(cmd)
        self._refuse_over_budget(cmd, pid)
        await self.carry_out(self._run(cmd, D.StartProject(cmd.request_id, pid)))

    async def cmd_project_cancel(self, conn: Connection, cmd: Command) -> None:
        pid = self._project_id(cmd)
        await self.carry_out(self._run(cmd, D.Cancel(cmd.request_id, pid)))
        if self.state.projects[pid].state == "cancelled":
            self.stop_integration(pid)

    async def cmd_project_status(self, conn: Connection, cmd: Command) -> None:
        p = self.state.projects[self._project_id(cmd)]
        conn.send_directed("project_status", {"request_id": cmd.request_id, "project": p.status()}, self.r.now())

    async def cmd_project_list(self, conn: Connection, cmd: Command) -> None:
        conn.send_directed("project_list", {"request_id": cmd.request_id,
                                            "projects": [p.summary() for p in self.state.projects.values()]},
                           self.r.now())

    async def _resume_input(self, cmd: Command) -> D.Resume:
        pid = self._project_id(cmd)
        p = self.state.projects[pid]
        swarms = self._swarms(cmd, required=False)
        retry = require_bool(cmd, "retry_failed", default=False)
        try:
            heads = await trio.to_thread.run_sync(gitops.remote_heads, p.repo, f"{gitops.BRANCH_PREFIX}/{pid}/")
        except gitops.GitError as exc:
            raise self._reject(cmd, "invalid_repo", str(exc)) from None
        evidence = D.dispatch_evidence(self.r.state)
        gone = evidence.gone | frozenset(evidence.ended)
        live = frozenset(t.injection_id for t in p.tasks.values() if t.injection_id and t.state in ACTIVE_TASK_STATES
                         and t.injection_id not in gone)
        return D.Resume(cmd.request_id, pid, swarms, retry, heads, live)

    async def cmd_project_resume(self, conn: Connection, cmd: Command) -> None:
        self._refuse_over_budget(cmd, self._project_id(cmd))
        await self.carry_out(self._run(cmd, await self._resume_input(cmd)))

    async def cmd_project_resume_preview(self, conn: Connection, cmd: Command) -> None:
        inp = await self._resume_input(cmd)
        plan = D.resume_plan(self.state.projects[inp.project_id], inp.heads, inp.live, inp.retry_failed)
        conn.send_directed("project_resume_preview", {"request_id": cmd.request_id, "project_id": inp.project_id,
                                                      **plan.public()}, self.r.now())

    async def cmd_project_plan(self, conn: Connection, cmd: Command) -> None:
        spec = require_str(cmd, "spec") or ""
        planner = self._swarms(cmd, "planner")[0] if isinstance(cmd.payload.get("planner"), list) else None
        if planner is None:
            planner = require_str(cmd, "planner") or ""
            self._swarms(Command(cmd.command, cmd.request_id, {"planner": [planner]}), "planner")
        self._swarms(cmd)
        await self._check_repo(cmd)
        if self.nursery is None:
            raise self._reject(cmd, "unavailable", "the project dispatcher is not running")
        decision = self.r.decide(Inject(planner, [0], PLANNER_PROMPT + spec, cmd.request_id))
        iid = next((e.data["injection_id"] for e in decision.events if e.name == "inject_ack"), None)
        if iid is None:
            failed = next((e.data for e in decision.events if e.name == "inject_failed"), {})
            self.r.emit("project_plan_failed", {"request_id": cmd.request_id, "planner": planner, "injection_id": None,
                                                "reason": f"the planner could not be asked: {failed.get('error')}"})
            return
        # durable before the planner's inbox line is written: a restarted router picks the wait up again
        payload = {k: v for k, v in cmd.payload.items() if k not in ("spec", "planner")}
        self.r.emit("project_plan_started", {"request_id": cmd.request_id, "planner": planner, "injection_id": iid,
                                             "payload": payload, "started_at": self.r.now()})
        waiter: tuple[list[str], trio.Event] = ([], trio.Event())
        self.plan_waiters[iid] = waiter
        if any(e.name == "inject_failed" for e in decision.events):
            waiter[1].set()
        await self.r.carry_out(decision.effects)
        self.nursery.start_soon(self._await_plan, dict(self.state.plans.get(iid) or {}), waiter)

    def recover_plans(self) -> None:
        """After a restart: every plan still waiting for its planner is waited for again (its answer may
        already be in the log), so a plan completes or fails, never hangs."""
        assert self.nursery is not None
        for iid, plan in list(self.state.plans.items()):
            waiter: tuple[list[str], trio.Event] = ([], trio.Event())
            self.plan_waiters[iid] = waiter
            self.nursery.start_soon(self._await_plan, dict(plan), waiter, True)

    def _logged_answers(self, plan: dict[str, Any]) -> tuple[list[str], bool]:
        """The planner's final answers logged since the plan started, and whether its turn ended (blocking)."""
        iid = plan["injection_id"]
        needle = f'"injection_id":"{iid}"'.encode()
        answers, ended = [], False
        for _seq, name, data in self._logged_events(max(0, int(plan.get("seq") or 0) - 1), lambda raw: needle in raw):
            if name == "assistant" and data.get("final_answer"):
                answers.append(str(data.get("content") or ""))
            elif name in ("turn_complete", "inject_failed"):
                ended = True
        return answers, ended

    async def _await_plan(self, plan: dict[str, Any], waiter: tuple[list[str], trio.Event],
                          recovered: bool = False) -> None:
        """Wait for the planner's final answer, then create the project as project_create would."""
        iid, planner, rid = plan["injection_id"], plan["planner"], plan.get("request_id")
        answers, done = waiter

        def fail(reason: str) -> None:
            self.r.emit("project_plan_failed", {"request_id": rid, "planner": planner, "injection_id": iid,
                                                "reason": reason})
        try:
            if recovered:
                await self.r.commit()  # what was recorded before the waiter existed is in the file now
                logged, ended = await trio.to_thread.run_sync(self._logged_answers, plan)
                answers[:0] = logged  # older than anything observed since
                sw = self.r.state.swarms.get(planner)
                inj = sw.injections.get(iid) if sw else None
                if ended or inj is None or inj.state in ("completed", "failed"):
                    done.set()
                elif not sw or not sw.active:
                    raise GraphError(f"the planner swarm {planner} is {sw.state if sw else 'gone'}")
            left = PLAN_TIMEOUT - max(0.0, self.r.now() - float(plan.get("started_at") or self.r.now()))
            with trio.move_on_after(max(0.0, left)):
                await done.wait()
            if not done.is_set():
                raise GraphError(f"the planner did not answer within {PLAN_TIMEOUT:.0f} s")
            if not answers:
                raise GraphError("the planner's turn ended without a final answer")
            raw = extract_plan(answers[-1])
            payload = {**(plan.get("payload") or {}), "tasks": raw}
            planner_swarm = self.r.state.swarms.get(planner)
            turn = planner_swarm.injections.get(iid) if planner_swarm is not None else None
            planner_usd = float(turn.spend_usd) if turn is not None else 0.0  # counted in the project's spend
            await self._create(Command("project_create", rid, payload), plan_injection_id=iid,
                               planner_spend_usd=planner_usd)
        except GraphError as exc:
            fail(str(exc))
        except Rejection as rej:
            fail(rej.reason)
        finally:
            self.plan_waiters.pop(iid, None)
