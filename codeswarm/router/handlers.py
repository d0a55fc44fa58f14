"""Command handlers: validate with protocol.py, decide with the core, carry out side effects."""

from __future__ import annotations

import logging
import re
import shutil
from typing import TYPE_CHECKING, Any

import trio

from codeswarm.config import validate_params
from codeswarm.errors import InvalidParam, ProviderError
from codeswarm.launch_policy import client_params
from codeswarm.protocol import (
    EXTENSIONS,
    Command,
    Rejection,
    require_int,
    require_obj,
    require_str,
    resolve_nodes,
)
from codeswarm.core.approvals import ApprovalDelivered, Approve
from codeswarm.core.kernel import InboxLine
from codeswarm.core.lifecycle import (
    AnnounceTerminating,
    Inject,
    Launch,
    RepeatTerminated,
    ShutdownSent,
    TerminateRefused,
    Terminated,
)
from codeswarm.core.queue import all_items, parse_cancel, parse_enqueue, public_item
from codeswarm.core.records import Swarm
from codeswarm.core.spend import SetBudget, refusal
from codeswarm.core.views import list_record, open_approvals, status_data
from codeswarm.router.app import new_id
from codeswarm.router.connection import Connection
from codeswarm.router.idempotency import IdempotencyKeys, deduplicated_data
from codeswarm.router.persona import persona_files
from codeswarm.router.providers.base import ClusterProvider, JobHandle, LaunchSpec
from codeswarm.router.worker_env import worker_env
from codeswarm.spend.budget import parse_budget

if TYPE_CHECKING:
    from codeswarm.router.app import Router

log = logging.getLogger("codeswarm.router.handlers")

MAX_NODES = 4096
SPEND_PARAMS = ("budget_usd", "pricing_model")
_ALIAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # what routing directives can name
# Answered as soon as the router serves, from the state recovery rebuilt (snapshots + the log tail,
# complete before the first connection is accepted); every other command waits until start-up has
# also re-adopted the jobs and resumed terminations, delivery and dispatch (server.py, issue 13).
ANSWERED_DURING_START = frozenset({"ping", "providers_list", "swarm_list", "swarm_status", "queue_list",
                                   "approvals_list", "subscribe", "unsubscribe", "project_status", "project_list"})
TERMINATE_EXIT_WAIT = 10.0
ABANDON_TIMEOUT = 60.0


class Handlers:
    def __init__(self, router: "Router") -> None:
        self.r = router
        self.terminating: dict[str, trio.Event] = {}  # swarm_id -> "escalate to force" event
        self.keys = IdempotencyKeys(router.state_dir / "idempotency.json", router.settings.idempotency_ttl_seconds)
        self.started = trio.Event()  # set by the server once start-up is complete

    # ------------------------------------------------------------------ dispatch

    async def handle(self, conn: Connection, cmd: Command) -> None:
        conn.add_request_id(cmd.request_id)
        if cmd.command not in ANSWERED_DURING_START and not self.started.is_set():
            await self.started.wait()
        try:
            if "idempotency_key" in cmd.payload and await self._deduplicated(conn, cmd):
                return
            fn = getattr(self, "cmd_" + cmd.command, None) or getattr(self.r.projects, "cmd_" + cmd.command)
            await fn(conn, cmd)
        except Rejection as rej:
            if cmd.command == "project_plan":  # the planning client waits for either answer
                # the same keys as every project_plan_failed; no planner was asked (docs/PROJECTS.md)
                self.r.emit("project_plan_failed", {"request_id": cmd.request_id, "planner": None,
                                                    "injection_id": None, "reason": rej.reason})
            rej.request_id = rej.request_id or cmd.request_id
            rej.command = rej.command or cmd.command
            self.r.emit("command_rejected", rej.data())
        except Exception as exc:  # the router never dies from a client
            log.exception("command %s failed", cmd.command)
            self.r.emit(
                "command_rejected",
                Rejection("internal_error", f"unexpected router error ({type(exc).__name__}); the router log "
                          "has the details", request_id=cmd.request_id, command=cmd.command).data(),
            )

    async def _deduplicated(self, conn: Connection, cmd: Command) -> bool:
        """True when cmd repeats an earlier command with the same key (answered, not executed)."""
        now = self.r.now()
        rec = self.keys.check(cmd, now)
        if rec is None:
            data = self.keys.remember(cmd, now, self.r.log.head_seq)
            await trio.to_thread.run_sync(self.keys.write, data)  # durable before the command runs
            return False
        conn.add_request_id(rec.request_id)  # later events of the original reach this client (3.5)
        first = await self.r.first_seq_of(rec.request_id, rec.after_seq)
        conn.send_directed("command_deduplicated", deduplicated_data(cmd, rec, first), now)
        return True

    def _swarm(self, cmd: Command, key: str = "swarm_id") -> Swarm:
        sid = require_str(cmd, key)
        swarm = self.r.state.swarms.get(sid or "")
        if swarm is None:
            raise Rejection("unknown_swarm", f"unknown {key}", request_id=cmd.request_id, command=cmd.command)
        return swarm

    # ------------------------------------------------------------------ queries

    async def cmd_ping(self, conn: Connection, cmd: Command) -> None:
        conn.send_directed("pong", {"request_id": cmd.request_id, "head_seq": self.r.committed_seq,
                                    "oldest_seq": self.r.log.oldest_seq, "log_id": self.r.log.log_id,
                                    "extensions": EXTENSIONS}, self.r.now())

    async def cmd_providers_list(self, conn: Connection, cmd: Command) -> None:
        conn.send_directed("providers_list", {"request_id": cmd.request_id,
                                              "providers": [p.public() for p in self.r.config.presets]}, self.r.now())

    async def cmd_swarm_list(self, conn: Connection, cmd: Command) -> None:
        swarms = {sid: list_record(s) for sid, s in self.r.state.swarms.items()}
        conn.send_directed("swarm_list", {"request_id": cmd.request_id, "swarms": swarms}, self.r.now())

    async def cmd_swarm_status(self, conn: Connection, cmd: Command) -> None:
        swarm = self._swarm(cmd)
        seen = self.r.book.observation(swarm.swarm_id)
        data = status_data(swarm, cmd.request_id, checked_at=seen.checked_at, error=seen.poll_error,
                           last_heard=self.r.book.heard_by_node(swarm.swarm_id, swarm.node_count), with_nodes=True)
        conn.send_directed("swarm_status", data, self.r.now())

    async def cmd_queue_list(self, conn: Connection, cmd: Command) -> None:
        items = [public_item(i) for i in all_items(self.r.state)]
        conn.send_directed("queue_list", {"request_id": cmd.request_id, "items": items}, self.r.now())

    async def cmd_queue_cancel(self, conn: Connection, cmd: Command) -> None:
        """Remove a queued item (inter_swarm_dropped, reason "cancelled"); answered by a directed
        queue_cancelled to the one who asked."""
        inp = parse_cancel(cmd, self.r.state)
        item = next(i for s in self.r.state.swarms.values() for i in s.queue if i["queue_id"] == inp.queue_id)
        self.r.decide(inp)
        await self.r.commit()
        conn.send_directed("queue_cancelled", {
            "request_id": cmd.request_id, "queue_id": inp.queue_id, "target_swarm_id": item["target_swarm_id"],
            "source_swarm_id": item.get("source_swarm_id"), "selector": item.get("selector")}, self.r.now())

    async def cmd_approvals_list(self, conn: Connection, cmd: Command) -> None:
        """Every approval waiting for an answer, oldest first; `swarm_id` narrows it (an unknown id
        matches nothing, as for subscribe)."""
        swarm_id = require_str(cmd, "swarm_id", optional=True)
        data = {"request_id": cmd.request_id, "swarm_id": swarm_id,
                "approvals": open_approvals(self.r.state.swarms, swarm_id)}
        conn.send_directed("approvals_list", data, self.r.now())

    async def cmd_subscribe(self, conn: Connection, cmd: Command) -> None:
        since = cmd.payload.get("since")
        if since is not None and (isinstance(since, bool) or not isinstance(since, int) or since < 0):
            raise Rejection("invalid_payload", "since: must be an integer >= 0", request_id=cmd.request_id,
                            command=cmd.command)
        swarm_filter = require_str(cmd, "swarm_id", optional=True)
        log_id = require_str(cmd, "log_id", optional=True)
        names = cmd.payload.get("events")  # ext: a CLI waiting for outcomes need not receive every delta
        if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
            raise Rejection("invalid_payload", "events: must be a list of event names", request_id=cmd.request_id,
                            command=cmd.command)
        event_filter = frozenset(names) if names is not None else None
        reset = log_id is not None and log_id != self.r.log.log_id
        if reset and since is not None:
            since = 0
        truncated = since is not None and since < self.r.log.oldest_seq - 1
        head = self.r.committed_seq
        conn.replaying = True  # from here, new events wait in conn.held
        try:
            if since is not None:
                # Exactly once, in order (PROTOCOL 3.4): live events still queued are withdrawn (the
                # replay has them in their place); those already taken for the socket are skipped.
                conn.withdraw_unsent()
                exclude = self._already_sent(conn)
                conn.release()
                for chunk in await self.r.replay(max(since, 0), head, swarm_filter, event_filter, exclude):
                    await conn.send_paced(chunk)
            conn.release()
            conn.mode = "filtered" if swarm_filter or event_filter is not None else "live"
            conn.swarm_filter = swarm_filter
            conn.event_filter = event_filter
            conn.cursor = head
            conn.live_from = head
            conn.send_directed("subscribed", {"request_id": cmd.request_id, "since": since, "head_seq": head,
                                              "oldest_seq": self.r.log.oldest_seq, "log_id": self.r.log.log_id,
                                              "swarm_id": swarm_filter, "truncated": truncated, "reset": reset},
                               self.r.now())
        finally:
            conn.replaying = False
            held, conn.held = conn.held, []
            later = [ev for ev in held if ev.seq > head]
            if later:
                conn.deliver(later, None)

    def _already_sent(self, conn: Connection) -> frozenset[int]:
        """Seqs this connection's current subscription already put on the socket. The window is the
        last moments before the subscribe (a connection's first live events are held back until its
        first command), so the ring has it; if not, nothing is skipped (a repeat, never a gap)."""
        sent = conn.sent_before()
        if conn.taken_seq <= conn.live_from:
            return frozenset()
        recent = self.r.recent(conn.live_from)
        if recent is None:
            return frozenset()
        return frozenset(ev.seq for ev in recent if sent(ev))

    async def cmd_unsubscribe(self, conn: Connection, cmd: Command) -> None:
        conn.mode = "none"
        conn.send_directed("unsubscribed", {"request_id": cmd.request_id}, self.r.now())

    # ------------------------------------------------------------------ launch

    async def cmd_swarm_launch(self, conn: Connection, cmd: Command) -> None:
        nodes = require_int(cmd, "nodes", default=1, minimum=1)
        if nodes > MAX_NODES:
            raise Rejection("invalid_payload", f"nodes: at most {MAX_NODES}", request_id=cmd.request_id,
                            command=cmd.command)
        system_prompt = require_str(cmd, "system_prompt", optional=True, allow_empty=True) or ""
        preset_id = require_str(cmd, "provider", optional=True)
        preset = self.r.config.preset(preset_id)
        if preset is None:
            raise Rejection("unknown_provider", f"unknown provider: {preset_id}", request_id=cmd.request_id,
                            command=cmd.command)
        provider = self.r.providers.get(preset.backend)
        if provider is None:
            raise Rejection("provider_unavailable", f"backend {preset.backend} is not available",
                            request_id=cmd.request_id, command=cmd.command)
        overrides = require_obj(cmd, "provider_params")
        if any(isinstance(v, (dict, list)) for v in overrides.values()):
            raise Rejection("invalid_provider_params", "provider_params: values must be scalars",
                            request_id=cmd.request_id, command=cmd.command)
        # The spend settings are the router's accounting, never the worker's: any client may set them
        # (docs/SPEND.md); the payload's budget_usd wins over provider_params.budget_usd.
        spend = {k: overrides[k] for k in SPEND_PARAMS if overrides.get(k) is not None}
        if cmd.payload.get("budget_usd") is not None:
            spend["budget_usd"] = cmd.payload["budget_usd"]
        overrides = {k: v for k, v in overrides.items() if k not in SPEND_PARAMS}
        try:  # a client fills in only what the preset's launch_fields offer (issue 12 #1)
            params = {**preset.defaults, **client_params(preset.id, preset.launch_fields, overrides), **spend}
            validate_params(params, "provider_params")
        except InvalidParam as exc:
            raise Rejection("invalid_provider_params", str(exc), request_id=cmd.request_id,
                            command=cmd.command) from None
        files = persona_files(cmd)
        alias = require_str(cmd, "alias", optional=True)
        auto_route = cmd.payload.get("auto_route", False)
        if not isinstance(auto_route, bool):
            raise Rejection("invalid_payload", "auto_route: must be a boolean", request_id=cmd.request_id,
                            command=cmd.command)
        alias = alias or params.get("swarm_alias")
        if alias is not None:
            if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
                raise Rejection("invalid_payload", "alias: 1-64 ASCII letters, digits, '-' and '_'",
                                request_id=cmd.request_id, command=cmd.command)
            if any(s.alias == alias and s.active for s in self.r.state.swarms.values()):
                raise Rejection("invalid_payload", f"alias: {alias!r} is used by an active swarm",
                                request_id=cmd.request_id, command=cmd.command)
            params["swarm_alias"] = alias
        if auto_route:
            params["auto_route"] = True
        params.setdefault("worker_mode", "codex")
        if preset.launch_hard_timeout_seconds:
            params["_launch_hard_timeout_seconds"] = preset.launch_hard_timeout_seconds
        swarm_id = new_id()
        spec = LaunchSpec(
            swarm_id=swarm_id,
            node_count=nodes,
            params=params,
            worker_env=worker_env(params, preset.env),
            profile=preset.cluster_profile,
        )
        try:
            job = await provider.submit(spec)
        except ProviderError as exc:
            raise Rejection("launch_failed", str(exc), request_id=cmd.request_id, command=cmd.command) from None
        try:
            await trio.to_thread.run_sync(write_swarm_files, job, swarm_id, nodes, preset.id, params, files)
            decision = self.r.decide(Launch(
                request_id=cmd.request_id, swarm_id=swarm_id, job=job.to_json(), node_count=nodes,
                provider=preset.backend, provider_id=preset.id, params=params, system_prompt=system_prompt,
            ))
        except Exception as exc:  # issue 12 #8: the workers run but no swarm will know them: stop them
            log.exception("launch %s failed after submit", swarm_id)
            cleanup = await abandon_job(provider, job)
            raise Rejection("launch_failed", f"cannot set up the swarm's files: {plain_error(exc)}; {cleanup}",
                            request_id=cmd.request_id, command=cmd.command) from None
        self.r.ingest.sync()
        await self.r.carry_out(decision.effects)

    # ------------------------------------------------------------------ inject

    async def cmd_inject(self, conn: Connection, cmd: Command) -> None:
        swarm = self._swarm(cmd)
        content = require_str(cmd, "content")
        assert content is not None
        node_ids = resolve_nodes(cmd, cmd.payload.get("nodes", "all"), swarm.node_count)
        if not swarm.active:
            raise Rejection("swarm_not_active", "swarm is terminating or terminated", request_id=cmd.request_id,
                            command=cmd.command)
        refuse_over_budget(swarm, cmd)
        decision = self.r.decide(Inject(swarm.swarm_id, node_ids, content, cmd.request_id))
        await self.r.carry_out(decision.effects)

    async def cmd_enqueue_inject(self, conn: Connection, cmd: Command) -> None:
        enqueue = parse_enqueue(cmd, self.r.state)
        refuse_over_budget(self.r.state.swarms[enqueue.target_swarm_id], cmd)
        decision = self.r.decide(enqueue)
        await self.r.carry_out(decision.effects)

    async def cmd_swarm_budget(self, conn: Connection, cmd: Command) -> None:
        swarm = self._swarm(cmd)
        if "budget_usd" not in cmd.payload:
            raise Rejection("invalid_payload", "budget_usd: required (a number of US dollars > 0, or null)",
                            request_id=cmd.request_id, command=cmd.command)
        try:
            budget = parse_budget(cmd.payload["budget_usd"])
        except ValueError as exc:
            raise Rejection("invalid_payload", f"{exc.args[0]}: {exc.args[1]}", request_id=cmd.request_id,
                            command=cmd.command) from None
        decision = self.r.decide(SetBudget(swarm.swarm_id, None if budget is None else float(budget),
                                           cmd.request_id))
        await self.r.carry_out(decision.effects)

    # ------------------------------------------------------------------ approvals

    async def cmd_approve_execution(self, conn: Connection, cmd: Command) -> None:
        decision = self.r.decide(Approve(cmd))  # a repeat is answered by its event; else a control line
        lines = [e for e in decision.effects if isinstance(e, InboxLine)]
        if not lines:
            return
        failed = await self.r.send_to_inboxes(lines)
        if failed:
            raise Rejection("provider_unavailable", f"cannot reach the node: {failed[0][1]}",
                            request_id=cmd.request_id, command=cmd.command)
        for then in decision.effects:
            if isinstance(then, ApprovalDelivered):
                self.r.decide(then)

    # ------------------------------------------------------------------ terminate

    async def cmd_swarm_terminate(self, conn: Connection, cmd: Command) -> None:
        swarm = self._swarm(cmd)
        params = require_obj(cmd, "terminate_params")
        force = params.get("force", False)
        archive = params.get("download_workspaces_on_shutdown", False)
        if not isinstance(force, bool) or not isinstance(archive, bool):
            raise Rejection("invalid_payload", "terminate_params: force and download_workspaces_on_shutdown "
                            "must be booleans", request_id=cmd.request_id, command=cmd.command)
        if swarm.state == "terminated":
            self.r.decide(RepeatTerminated(swarm.swarm_id, cmd.request_id))
            return
        if swarm.state == "terminating":
            self.r.decide(AnnounceTerminating(swarm.swarm_id, cmd.request_id))
            escalate = self.terminating.get(swarm.swarm_id)
            if escalate is not None:
                escalate.set()
            return
        assert self.r.nursery is not None
        self.r.nursery.start_soon(self.terminate, swarm, cmd.request_id, force, archive, "requested")
        await trio.sleep(0)

    async def terminate(self, swarm: Swarm, request_id: str | None, force: bool, archive: bool, reason: str) -> None:
        """The procedure of PROTOCOL.md 4.5, as a router-level task (a client may disconnect)."""
        r = self.r
        resuming = swarm.state == "terminating"  # logged before a crash: finish it, do not announce it again
        if not (swarm.active or resuming):
            return
        escalate = self.terminating[swarm.swarm_id] = trio.Event()
        try:
            was_pending = (swarm.prev_state if resuming else swarm.state) == "pending"
            if not resuming:
                r.decide(AnnounceTerminating(swarm.swarm_id, request_id))
                await r.commit()
            graceful = r.settings.local_graceful_terminate_timeout_seconds if swarm.provider == "local" \
                else r.settings.graceful_terminate_timeout_seconds
            if not force and not was_pending:
                with trio.move_on_after(graceful):
                    async with trio.open_nursery() as waiters:
                        async def stop_on_escalate() -> None:
                            await escalate.wait()
                            waiters.cancel_scope.cancel()

                        waiters.start_soon(stop_on_escalate)
                        while swarm.open_injections():
                            await r.wait_swarm_change(swarm.swarm_id)
                        waiters.cancel_scope.cancel()
            shutdown = [InboxLine(swarm.swarm_id, n.node_id, {"type": "shutdown", "ts": r.now(), "reason": "terminate"})
                        for n in swarm.nodes if n.worker != "exited"]
            await r.send_to_inboxes(shutdown)
            r.decide(ShutdownSent(swarm.swarm_id))
            with trio.move_on_after(0 if was_pending else TERMINATE_EXIT_WAIT):
                while any(n.worker in ("running", "stale") for n in swarm.nodes):
                    await r.wait_swarm_change(swarm.swarm_id)
            provider = r.providers.get(swarm.provider)
            job = JobHandle.from_json(swarm.job)
            try:
                if provider is None:
                    raise ProviderError(f"backend {swarm.provider} is not configured", transient=False)
                await provider.cancel(job)
            except ProviderError as exc:
                r.decide(TerminateRefused(swarm.swarm_id, request_id, str(exc)))
                return
            r.ingest.drain_swarm(swarm.swarm_id)
            if archive:
                from codeswarm.router.archive import archive_workspaces

                await archive_workspaces(r, swarm, request_id)
            r.decide(Terminated(swarm.swarm_id, reason, request_id))
            r.ingest.sync()
        finally:
            self.terminating.pop(swarm.swarm_id, None)


def plain_error(exc: BaseException) -> str:
    """A message for clients: the OS's words for an OSError, never a Python repr (issue 12 #8)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


async def abandon_job(provider: ClusterProvider, job: JobHandle) -> str:
    """Cancel a submitted job no swarm record refers to and remove its swarm root; says what happened."""
    with trio.CancelScope(shield=True), trio.move_on_after(ABANDON_TIMEOUT) as scope:
        try:
            await provider.cancel(job)
        except ProviderError as exc:
            log.error("cannot cancel abandoned job %s: %s", job.job_id, exc)
            return f"cancelling job {job.job_id} failed too ({exc}): stop it by hand"
    if scope.cancelled_caught:
        log.error("cancelling abandoned job %s timed out", job.job_id)
        return f"cancelling job {job.job_id} timed out: stop it by hand"

    def remove(func: Any, path: str, exc_info: Any) -> None:
        log.error("cannot remove %s of abandoned job %s: %s", path, job.job_id, exc_info[1])

    await trio.to_thread.run_sync(lambda: shutil.rmtree(job.swarm_root, onerror=remove))
    return f"job {job.job_id} was cancelled"


def write_swarm_files(job: JobHandle, swarm_id: str, nodes: int, preset_id: str, params: dict[str, Any],
                      files: dict[str, str]) -> None:
    import orjson

    from codeswarm.mailbox import prepare_swarm_root, workspace_path
    from codeswarm.router.store import atomic_write

    prepare_swarm_root(job.swarm_root, nodes)
    atomic_write(job.swarm_root / "swarm.json", orjson.dumps({
        "swarm_id": swarm_id, "job_id": job.job_id, "node_count": nodes, "preset": preset_id,
        "params": {k: v for k, v in params.items() if not k.startswith("_")},
    }))
    for i in range(nodes):
        ws = workspace_path(job.swarm_root, i)
        for rel, content in files.items():
            target = ws / rel
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            target.write_text(content)
            target.chmod(0o600)


def refuse_over_budget(swarm: Swarm, cmd: Command) -> None:
    """New work for a swarm whose budget is spent is refused until the budget is raised."""
    why = refusal(swarm)
    if why is not None:
        raise Rejection("budget_exceeded", why, request_id=cmd.request_id, command=cmd.command)
