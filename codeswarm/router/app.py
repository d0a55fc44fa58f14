"""The Router: owns the core state, the log, the committer and the fan-out to connections.

Event flow: `decide(input)` asks the pure core (codeswarm/core) at `now` with uuid ids; each
event of the decision gets the next seq, is reduced into the state and queued -> the committer
writes the log, fsyncs lifecycle batches, snapshots -> fan-out to connections (PROTOCOL.md 3.3).
The decision's effects (inbox lines, terminate) are carried out by `carry_out` after commit.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import trio

from codeswarm import core
from codeswarm.config import Config
from codeswarm.core.kernel import Decision, Event, InboxLine, StartTerminate, _new
from codeswarm.core.lifecycle import InboxWriteFailed
from codeswarm.core.nodeloss import RestartNode
from codeswarm.core.queue import DispatchIdle, RouteAnswer
from codeswarm.core.records import CoreState, Swarm
from codeswarm.core.settings import CoreSettings
from codeswarm.core.states import IllegalTransition
from codeswarm.mailbox import append_lines, inbox_path
from codeswarm.protocol import LIFECYCLE_EVENTS, encode_line, iso_timestamp, make_event
from codeswarm.router.connection import Connection, LoggedEvent
from codeswarm.router.delivery import InboxBatcher
from codeswarm.router.eventline import LineEncoder
from codeswarm.router.ring import RING_BYTES, ReplayRing, trim_heap
from codeswarm.router.ingest import OutboxIngest
from codeswarm.router.liveness import ShellBook
from codeswarm.router.providers.base import ClusterProvider, JobHandle
from codeswarm.router.store import EventLog, LogDamage, SnapshotStore

log = logging.getLogger("codeswarm.router")

FSYNC_INTERVAL = 0.05
SNAPSHOT_INTERVAL = 2.0
TRIM_AFTER_BYTES = 4 << 20  # fanned-out bytes after which a settled burst is trimmed
TRIM_QUIET = 1.0
REROUTE_WINDOW = 20_000


# Events after which a node may have become idle (queue dispatch) or an answer may route work.
_DISPATCH_TRIGGERS = frozenset({"turn_complete", "inject_failed", "node_status", "thread_status", "swarm_status",
                                "inter_swarm_enqueued"})


def new_id() -> str:
    return str(uuid.uuid4())


def _swarm_keys(data: dict[str, Any]) -> tuple[str, ...]:
    keys = []
    for k in ("swarm_id", "target_swarm_id", "source_swarm_id"):
        v = data.get(k)
        if isinstance(v, str):
            keys.append(v)
    return tuple(keys)


class Router:
    def __init__(self, config: Config, state_dir: Path, providers: dict[str, ClusterProvider]) -> None:
        self.config = config
        self.settings = config.router
        self.state_dir = state_dir
        self.providers = providers
        self.log = EventLog(
            state_dir / "events",
            max_events=self.settings.event_log_max_events,
            segment_events=self.settings.event_log_segment_events,
            max_age_seconds=self.settings.event_log_max_age_seconds or None,
        )
        self.snapshots = SnapshotStore(state_dir)
        self.state = CoreState(settings=CoreSettings.of(
            self.settings, pricing=config.pricing, budget_warn_fraction=config.budget.warn_fraction,
            default_swarm_budget_usd=config.budget.swarm_usd, default_project_budget_usd=config.budget.project_usd))
        self.book = ShellBook()  # non-durable: liveness, scheduler checks (router/liveness.py)
        self.projects: Any = None  # the ProjectsShell, attached by the server (router/projects_shell.py)
        self.connections: set[Connection] = set()
        self.ingest = OutboxIngest(self)
        self.delivery: InboxBatcher[InboxLine] = InboxBatcher(self.commit, self.append_inbox, self._inbox_written)
        self.ring = ReplayRing(RING_BYTES)
        self._encoder = LineEncoder()
        self._since_trim = 0
        self._trim_wake = trio.Event()
        self._pending: list[LoggedEvent] = []
        self._pending_lines: list[bytes] = []
        self._pending_durable = False
        self._dirty: set[str] = set()
        self._removed: set[str] = set()
        self._wake = trio.Event()
        self._committed = trio.Event()
        self._write_failures = 0
        self._write_failed_at = 0.0
        self.committed_seq = self.log.head_seq
        self._unsynced = False
        self._last_snapshot = 0.0
        self._snapshot_due = False
        self._snap_lock = trio.Lock()
        self._sync_needed = trio.Event()
        self.swarm_changed: dict[str, trio.Event] = {}
        self.recovery_warnings: list[dict[str, Any]] = []  # router_warning data, emitted once serving
        self._routing: list[tuple[str, Any, Any, str]] = []
        self._dispatch_due: set[str] = set()
        self._dispatch_wake = trio.Event()
        self.nursery: trio.Nursery | None = None
        self.start_terminate: Callable[[str, str, bool], None] | None = None  # set by the server
        self.start_restart: Callable[[RestartNode], None] | None = None  # set by the server
        self._now = time.time
        self._ids = new_id

    # ------------------------------------------------------------------ decide / record

    def now(self) -> float:
        return self._now()

    def decide(self, inp: Any, now: float | None = None) -> Decision:
        """Ask the core what `inp` means now (or at `now`: the ingest passes its read's time), and
        record its events (seq, reduce, log, fan-out). The caller carries out `decision.effects`
        (usually with `carry_out`)."""
        decision = core.decide(self.state, inp, self._now() if now is None else now, self._ids)
        if decision.events:
            self._record(decision.events)
        return decision

    def emit(self, name: str, data: dict[str, Any]) -> None:
        """Record a notice that needs no decision (router_warning, command_rejected, archives...)."""
        self._record([Event(name, data, self._now())])

    def _record(self, events: list[Event]) -> None:
        """Number, encode, reduce and queue one decision's events. One loop per decision, with what
        is the same for all of its events (the swarm marked dirty, the committer woken) done once:
        this is the router's per-event cost (an outbox line is one decision)."""
        next_seq, line_of, reduce, state = self.log.next_seq, self._encoder.line, core.reduce, self.state
        pending, pending_lines, projects = self._pending, self._pending_lines, self.projects
        observed = projects.OBSERVED if projects is not None else ()
        dirty = None  # the swarm last marked dirty in this decision
        for name, data, ts, _ in events:
            seq = next_seq()
            if "_record" in data:  # swarm_launched: the record is logged (for replay) but not sent
                line, wire = self._private_lines(name, data, ts, seq)
            else:
                line = wire = line_of(name, data, ts, seq)
                if len(line) > (1 << 20):
                    line = wire = encode_line(make_event(name, data, seq=seq, timestamp=iso_timestamp(ts)))
            reduce(state, _new(Event, (name, data, ts, seq)))  # = Event(name, data, ts, seq)
            if name in observed:
                projects.observe(name, data, seq)
            # Inlined _swarm_keys for the common event that names one swarm.
            sid = data.get("swarm_id")
            if "target_swarm_id" in data or "source_swarm_id" in data:
                keys = _swarm_keys(data)
                sid = sid or data.get("target_swarm_id")
            else:
                keys = (sid,) if isinstance(sid, str) else ()
            rid = data.get("request_id")
            pending.append(_new(LoggedEvent, (seq, name, rid if isinstance(rid, str) else None, keys, wire)))
            pending_lines.append(line)
            if name in LIFECYCLE_EVENTS:
                self._pending_durable = True
            if name in _DISPATCH_TRIGGERS or (name == "assistant" and data.get("final_answer")):
                self._note_for_dispatch(name, data)
            if isinstance(sid, str) and sid:
                if name == "swarm_removed":
                    self._removed.add(sid)
                    self._dirty.discard(sid)
                    self.book.forget(sid)
                    dirty = None
                elif sid != dirty:
                    self._dirty.add(sid)
                    dirty = sid
                if self.swarm_changed:
                    changed = self.swarm_changed.pop(sid, None)
                    if changed is not None:
                        changed.set()
        self._wake.set()

    @staticmethod
    def _private_lines(name: str, data: dict[str, Any], ts: float, seq: int) -> tuple[bytes, bytes]:
        """The log line (with `_record`) and the wire line (without) of an event that has both."""
        env = make_event(name, data, seq=seq, timestamp=iso_timestamp(ts))
        # `+ b"\n"`, not OPT_APPEND_NEWLINE: orjson shrinks its working buffer in place, and the
        # replay ring holding those blocks kept the heap fragmented (RSS 94 MB instead of 45 MB
        # after bench_burst's 20,000-event burst); the copy is a compact block of its own.
        line = orjson.dumps(env) + b"\n"
        wire_env = {**env, "data": {k: v for k, v in data.items() if k != "_record"}}
        wire = orjson.dumps(wire_env) + b"\n"
        if len(wire) > (1 << 20):
            wire = encode_line(wire_env)
        return line, wire

    # ------------------------------------------------------------------ queue dispatch and routing

    def _note_for_dispatch(self, name: str, data: dict[str, Any]) -> None:
        """Observer of emitted events: remember what to look at; the dispatcher acts outside emit()."""
        sid = data.get("swarm_id") or data.get("target_swarm_id")
        swarm = self.state.swarms.get(sid) if isinstance(sid, str) else None
        if swarm is None:
            return
        if name == "assistant":
            if swarm.auto_route:
                self._routing.append((swarm.swarm_id, data.get("node_id"), data.get("injection_id"),
                                      str(data.get("content") or "")))
                self._dispatch_wake.set()
        elif swarm.queue:
            self._dispatch_due.add(swarm.swarm_id)
            self._dispatch_wake.set()

    async def dispatcher(self) -> None:
        """Route final answers and feed idle nodes from the queues, in the order things happened."""
        self._dispatch_due.update(sid for sid, sw in self.state.swarms.items() if sw.queue)
        while True:
            if not (self._routing or self._dispatch_due):
                await self._dispatch_wake.wait()
                self._dispatch_wake = trio.Event()
            effects: list[Any] = []
            routing, self._routing = self._routing, []
            for sid, node_id, iid, text in routing:
                if sid in self.state.swarms and isinstance(node_id, int):
                    effects += self.decide(RouteAnswer(sid, node_id, iid, text)).effects
            due, self._dispatch_due = self._dispatch_due, set()
            for sid in sorted(due):
                swarm = self.state.swarms.get(sid)
                if swarm is not None and swarm.queue:
                    effects += self.decide(DispatchIdle(sid)).effects
            if effects:
                await self.carry_out(effects)

    async def wait_swarm_change(self, swarm_id: str) -> None:
        ev = self.swarm_changed.get(swarm_id)
        if ev is None:
            ev = self.swarm_changed[swarm_id] = trio.Event()
        await ev.wait()

    async def commit(self) -> None:
        """Return once every event emitted so far is written (and fsync'd if lifecycle) and sent."""
        target = self.log.head_seq
        while self.committed_seq < target:
            await self._committed.wait()

    # ------------------------------------------------------------------ committer

    async def committer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            if not self._pending:
                continue
            batch, lines = self._pending, self._pending_lines
            durable = self._pending_durable
            self._pending, self._pending_lines, self._pending_durable = [], [], False
            try:
                self.log.append(lines, batch[0].seq)
            except OSError as exc:
                # Disk full or an I/O error: append left the log as it was. Hold the batch (in
                # order, ahead of newer events), tell the clients, retry with backoff; never die.
                self._pending[:0], self._pending_lines[:0] = batch, lines
                self._pending_durable = self._pending_durable or durable
                await self._log_write_failed(exc)
                continue
            if self._write_failures:
                self._log_write_recovered()
            # Lifecycle events are fsync'd here, but the swarm snapshots follow on their own clock
            # (SNAPSHOT_INTERVAL, periodic_sync): the log holds everything they would, and forcing them
            # on every lifecycle batch (serialize + 2 fsyncs per swarm + state.json) held the committer
            # and the batches behind it: a project task's inbox line 152 -> 30 ms p50 (bench_projects).
            snaps = self._collect_snapshots(force=False)
            if durable:
                await trio.to_thread.run_sync(self.log.fsync)
                self._unsynced = False
            else:
                self._unsynced = True
                self._sync_needed.set()
            if self._dirty:
                self._sync_needed.set()
            # Sent once in the log (and fsync'd if lifecycle): the snapshots taken with this batch
            # are written after, so that no answer waits for their four fsyncs (a launch's
            # swarm_launched and every turn_complete did: issue 13). Written before the next batch
            # all the same (in order, by this task), and never ahead of the log.
            self._fanout(batch)
            self.committed_seq = batch[-1].seq
            self._committed.set()
            self._committed = trio.Event()
            if snaps is not None:
                await self._write_snapshots(snaps)

    async def _log_write_failed(self, exc: OSError) -> None:
        self._write_failures += 1
        if self._write_failures == 1:
            self._write_failed_at = time.monotonic()
            log.error("cannot write the event log (%s): events are held in memory until it works again", exc)
            for conn in list(self.connections):  # not logged (the log is what fails): directed
                conn.send_directed("router_warning", {
                    "message": f"cannot write the event log: {exc}; events are held and sent once it works again",
                    "error_code": "event_log_write_failed"}, self.now())
        await trio.sleep(min(2.0, 0.05 * 2 ** min(self._write_failures, 6)))
        self._wake.set()

    def _log_write_recovered(self) -> None:
        held = time.monotonic() - self._write_failed_at
        log.warning("event log writable again after %.1f s (%d failed attempts)", held, self._write_failures)
        self.emit("router_warning", {"message": f"event log writable again after {held:.1f} s "
                                                f"({self._write_failures} failed writes, nothing lost)",
                                     "error_code": "event_log_recovered"})
        self._write_failures = 0

    def _collect_snapshots(self, *, force: bool) -> tuple[dict[str, bytes | None], int] | None:
        """Serialize changed swarms now. Called only when every emitted event is in the log
        (no await since the append), so a snapshot never runs ahead of the log."""
        now = time.monotonic()
        if not (self._dirty or self._removed):
            return None
        if not force and not self._snapshot_due and now - self._last_snapshot < SNAPSHOT_INTERVAL:
            return None
        self._last_snapshot = now
        self._snapshot_due = False
        out: dict[str, bytes | None] = {}
        for sid in self._dirty:
            swarm = self.state.swarms.get(sid)
            if swarm is not None:
                # orjson writes a dataclass as to_json() would (tests/unit/test_snapshot_bytes.py)
                # without asdict's deep copy: ~80x faster on a swarm with hundreds of injections.
                out[sid] = orjson.dumps(swarm)
        for sid in self._removed:
            out[sid] = None
        self._dirty.clear()
        self._removed.clear()
        return out, self.log.head_seq

    async def periodic_sync(self) -> None:
        """Group commit for deltas (fsync at most FSYNC_INTERVAL apart) and periodic snapshots.

        Sleeps on an event while there is nothing to sync, so an idle router does not wake up."""
        while True:
            if not (self._unsynced or self._dirty or self._removed):
                await self._sync_needed.wait()
            self._sync_needed = trio.Event()
            await trio.sleep(FSYNC_INTERVAL)
            if self._unsynced:
                self._unsynced = False
                await trio.to_thread.run_sync(self.log.fsync)
            if not (self._dirty or self._removed):
                continue
            wait = SNAPSHOT_INTERVAL - (time.monotonic() - self._last_snapshot)
            if wait > 0:
                await trio.sleep(wait)
            if self._pending:  # the committer will snapshot right after writing them
                self._snapshot_due = True
                self._wake.set()
            else:
                snaps = self._collect_snapshots(force=True)
                if snaps is not None:
                    await self._write_snapshots(snaps)

    async def save_snapshots_on_stop(self) -> None:
        """The swarms changed since their last snapshot, written now (a clean stop): only when every
        emitted event is in the log, so that a snapshot never runs ahead of it."""
        if self._pending:
            return
        snaps = self._collect_snapshots(force=True)
        if snaps is not None:
            await trio.to_thread.run_sync(self.log.fsync)  # the log on disk first
            await trio.to_thread.run_sync(self.snapshots.write, *snaps)

    async def _write_snapshots(self, snaps: tuple[dict[str, bytes | None], int]) -> None:
        # trio.Lock is FIFO: snapshots reach the disk in the order they were taken.
        try:
            async with self._snap_lock:
                try:
                    await trio.to_thread.run_sync(self.snapshots.write, *snaps)
                except OSError as exc:  # disk full: the log still has everything; snapshot again later
                    log.error("cannot write snapshots: %s", exc)
                    self._snapshot_again(snaps[0])
                    self._sync_needed.set()
        except trio.Cancelled:
            # A stop cut the write while it waited for the lock: these swarms are dirty again, so the
            # snapshots written at the stop include them (else state.json's applied_seq would pass
            # their events by and the next start would never replay them).
            self._snapshot_again(snaps[0])
            raise

    def _snapshot_again(self, taken: dict[str, bytes | None]) -> None:
        for sid, data in taken.items():
            if data is None:
                self._removed.add(sid)
            elif sid in self.state.swarms:
                self._dirty.add(sid)

    def _fanout(self, batch: list[LoggedEvent]) -> None:
        joined = b"".join([ev.wire for ev in batch])
        self.ring.extend(batch, len(joined))
        self._since_trim += len(joined)
        if self._since_trim > TRIM_AFTER_BYTES:
            self._trim_wake.set()
        if not self.connections:
            return
        for conn in list(self.connections):
            conn.deliver(batch, joined)

    # ------------------------------------------------------------------ replay for subscribe

    async def replay(self, since: int, until: int, swarm_filter: str | None,
                     event_filter: frozenset[str] | None = None,
                     exclude: frozenset[int] = frozenset()) -> list[bytes]:
        """Logged events with since < seq <= until matching the filters, oldest first, except the
        seqs in `exclude` (already sent on the subscribing connection)."""
        # Never older than the log keeps: the ring may still hold pruned events, and the answer
        # must not depend on whether the router restarted since (subscribed.truncated covers it).
        since = max(since, self.log.oldest_seq - 1)
        first = self.ring.first_seq()
        if first is not None and first <= since + 1:
            return [ev.wire for ev in self.ring.since(since) if ev.seq <= until and ev.seq not in exclude
                    and (swarm_filter is None or swarm_filter in ev.swarm_keys)
                    and (event_filter is None or ev.name in event_filter)]
        return await trio.to_thread.run_sync(self._replay_from_disk, since, until, swarm_filter, event_filter,
                                             exclude)

    def recent(self, after: int) -> list[LoggedEvent] | None:
        """The ring's events with seq > after, or None when the ring does not reach back that far."""
        first = self.ring.first_seq()
        if first is None or first > after + 1:
            return None
        return list(self.ring.since(after))

    async def heap_trimmer(self) -> None:
        """After a burst (TRIM_AFTER_BYTES fanned out) has settled (no commit for TRIM_QUIET s), give
        the freed heap back to the OS: glibc keeps what Python freed otherwise (router/ring.py)."""
        while True:
            await self._trim_wake.wait()
            self._trim_wake = trio.Event()
            while True:
                seen = self.committed_seq
                await trio.sleep(TRIM_QUIET)
                if self.committed_seq == seen:
                    break
            self._since_trim = 0
            await trio.to_thread.run_sync(trim_heap)

    async def first_seq_of(self, request_id: str, after: int) -> int | None:
        """Seq of the first logged event carrying request_id (searched from `after`), or None."""
        recent = self.recent(after)
        if recent is not None:
            return next((ev.seq for ev in recent if ev.request_id == request_id), None)
        needle = orjson.dumps(request_id)

        def search() -> int | None:
            for seq, raw, _event, data in self.log.read_events(after, self.committed_seq):
                if needle in raw and data.get("request_id") == request_id:
                    return seq
            return None

        return await trio.to_thread.run_sync(search)

    def _replay_from_disk(self, since: int, until: int, swarm_filter: str | None,
                          event_filter: frozenset[str] | None, exclude: frozenset[int] = frozenset()) -> list[bytes]:
        out = []
        for seq, raw, event, data in self.log.read_events(since, until):
            if seq in exclude:
                continue
            if swarm_filter is not None and swarm_filter not in _swarm_keys(data):
                continue
            if event_filter is not None and event not in event_filter:
                continue
            if "_record" in data:
                obj = orjson.loads(raw)
                obj["data"].pop("_record")
                raw = orjson.dumps(obj) + b"\n"
            out.append(raw)
        return out

    # ------------------------------------------------------------------ recovery

    def recover(self) -> None:
        """Load snapshots, replay the log after them through `reduce`, and resume outbox positions."""
        records, problems, applied = self.snapshots.load()
        loaded: dict[str, int] = {}
        for rec in records:
            try:
                swarm = Swarm.from_json(rec)
            except (TypeError, KeyError, ValueError, AttributeError) as exc:
                problems.append(f"{rec.get('swarm_id')}: {exc!r}")
                continue
            self.state.swarms[swarm.swarm_id] = swarm
            loaded[swarm.swarm_id] = swarm.seq
        if self.log.truncated_bytes:
            self._recovery_warning("event_log_torn_line", f"event log: cut a torn last line "
                                   f"({self.log.truncated_bytes} bytes)", bytes=self.log.truncated_bytes)
        for p in problems:
            self._recovery_warning("snapshot_ignored", f"snapshot ignored: {p}")
        start = 0 if problems else applied
        replayed = 0
        changed: set[str] = set()  # swarms the replay moved past their snapshot: snapshotted again
        damage = LogDamage()
        unreplayable: list[str] = []
        for seq, _raw, name, data in self.log.read_events(start, damage=damage):
            if name.startswith("project"):
                continue  # replayed once, after its own snapshot, by self.projects.recover()
            sid = data.get("swarm_id") or data.get("target_swarm_id")
            if sid in loaded and seq <= loaded[sid]:
                continue
            if sid not in loaded and name != "swarm_launched" and sid not in self.state.swarms:
                continue
            try:
                core.reduce(self.state, Event(name, data, 0.0, seq))
            except (IllegalTransition, KeyError, TypeError, ValueError, IndexError) as exc:
                unreplayable.append(f"could not replay {name} seq {seq}: {exc!r}")
                continue
            replayed += 1
            if isinstance(sid, str):
                changed.add(sid)
        if damage.lines:
            self._recovery_warning("event_log_damaged_lines", damage.summary(), count=damage.lines)
        if unreplayable:
            more = f" (and {len(unreplayable) - 5} more)" if len(unreplayable) > 5 else ""
            self._recovery_warning("event_replay_failed", "event log: " + "; ".join(unreplayable[:5]) + more,
                                   count=len(unreplayable))
        self.committed_seq = self.log.head_seq
        now = self.now()
        # An unchanged snapshot is not written (and fsync'd) again: a restart costs what it replayed.
        self._dirty.update(sid for sid in changed if sid in self.state.swarms)
        self._removed.update(sid for sid in changed if sid not in self.state.swarms)  # removed after its snapshot
        for sid, swarm in self.state.swarms.items():
            if sid not in loaded:  # rebuilt from the log alone (no or an ignored snapshot)
                self._dirty.add(sid)
            for node in swarm.nodes:  # liveness is not durable: a fresh heartbeat window from now
                if node.worker == "running":
                    self.book.heard(sid, node.node_id, now)
        self._reroute_recent_answers()
        if self.projects is not None:
            self.projects.recover()
        log.info("recovered %d swarms, replayed %d events", len(self.state.swarms), replayed)

    def _recovery_warning(self, code: str, message: str, **extra: Any) -> None:
        self.recovery_warnings.append({"message": message, "error_code": code, **extra})
        log.warning("%s", message)

    def _reroute_recent_answers(self) -> None:
        """A crash between a final answer and its routing must not lose the directive: look at the
        recent answers of auto_route swarms again (routing is deduplicated per injection)."""
        if not any(sw.auto_route for sw in self.state.swarms.values()):
            return
        for _seq, raw, _event, data in self.log.read_events(max(0, self.log.head_seq - REROUTE_WINDOW)):
            if b'"final_answer":true' not in raw:
                continue
            swarm = self.state.swarms.get(data.get("swarm_id") or "")
            if swarm is not None and swarm.auto_route and swarm.active:
                self._routing.append((swarm.swarm_id, data.get("node_id"), data.get("injection_id"),
                                      str(data.get("content") or "")))

    # ------------------------------------------------------------------ effects

    async def carry_out(self, effects: list[Any]) -> None:
        """Carry out a decision's effects: queue the inbox lines (the delivery task writes them
        once their events are durable, many decisions per round: router/delivery.py; a prompt that
        cannot be written fails its injection there, or puts its queue item back: core/queue.py
        requeue_blocked) and start terminate procedures. Does not wait
        for the write: a burst of commands on one connection is not serialized on fsync + write."""
        lines = [e for e in effects if isinstance(e, InboxLine)]
        if lines:
            self.delivery.submit(lines)
        for e in effects:
            if isinstance(e, StartTerminate) and self.start_terminate is not None:
                self.start_terminate(e.swarm_id, e.reason, e.force)
            elif isinstance(e, RestartNode) and self.start_restart is not None:
                self.start_restart(e)

    def append_inbox(self, actions: list[InboxLine]) -> list[tuple[InboxLine, str]]:
        """Append inbox lines, one write per inbox file; returns the ones that failed with the error."""
        by_path: dict[Path, list[InboxLine]] = {}
        for act in actions:
            swarm = self.state.swarms.get(act.swarm_id)
            if swarm is None:
                continue
            job = JobHandle.from_json(swarm.job)
            by_path.setdefault(inbox_path(job.swarm_root, job.job_id, act.node_id), []).append(act)
        failed = []
        for path, acts in by_path.items():
            try:
                append_lines(path, [act.line for act in acts])
            except OSError as exc:
                failed += [(act, str(exc)) for act in acts]
        return failed

    def _inbox_written(self, lines: list[InboxLine], failed: list[tuple[InboxLine, str]]) -> None:
        for act in lines:
            self.ingest.expect_activity(act.swarm_id, act.node_id)
        for act, error in failed:
            iid = act.line.get("injection_id")
            if act.line.get("type") == "user" and isinstance(iid, str):
                self.decide(InboxWriteFailed(act.swarm_id, iid, error))

    async def send_to_inboxes(self, actions: list[InboxLine]) -> list[tuple[InboxLine, str]]:
        """Append inbox lines (in order after every line queued before) and wait for the write:
        for callers that must answer with the outcome (approve, terminate's shutdown lines)."""
        return await self.delivery.deliver(actions)
