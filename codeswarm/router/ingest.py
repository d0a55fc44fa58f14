"""Outbox followers: inotify where the outbox directory is local, adaptive polling elsewhere;
exactly-once by outbox seq.

One task serves every node through a heap of due times. Where inotify sees every write (a local
filesystem, codeswarm/fswatch.py; `router.mailbox_watch: poll` turns it off), a write to a quiet
outbox is read at once by the inotify task, a write to a streaming one NOTIFY_BATCH later (its next
lines come in the same read), and a quiet node is only re-read every SAFETY_INTERVAL, on a grid so
that one round re-reads many. Elsewhere (NFS, Lustre, GPFS: other hosts' writes raise no event) a
node that produced lines is polled again soon and a quiet one backs off (to poll_interval while it
has an open turn, 4x that when idle).

Wake-ups are what an idle router pays for (bench_scale: 1,000 nodes, a heartbeat per node every
10 s): each costs a trip through trio's scheduler, so a heartbeat is read in the wake-up inotify
causes and the loop is woken only when something became due before the time it sleeps until.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import os.path
import stat
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from codeswarm.core.kernel import Decision, _new
from codeswarm.core.records import CoreState, Swarm
from codeswarm.core.turns import BadOutboxLine, LifecycleLine, OutboxSeqAnomaly, RuntimeOutput
from codeswarm.fswatch import AppendWatcher, WatchChoice, choose_mode
from codeswarm.mailbox import MAX_OUTBOX_LINE, outbox_path, read_complete_lines
from codeswarm.router.liveness import ShellBook
from codeswarm.router.outbox_seq import seq_anomaly
from codeswarm.router.providers.base import JobHandle

log = logging.getLogger("codeswarm.router.ingest")

FAST_INTERVAL = 0.005
GROWTH = 1.5
BUSY_CACHE_SECONDS = 0.1
STREAMING_WINDOW = 1.0  # a node that wrote within this is polled at least every STREAMING_CAP
STREAMING_CAP = 0.04  # bench_scale: 1,000 nodes at 5 lines/s each, p99 149 ms with the plain back-off
EXPECT_WINDOW = 0.5  # a worker normally answers a prompt (turn_accepted) well within this
NOTIFY_BATCH = 0.002  # a written outbox is read this much later: the lines written meanwhile come in one read
SAFETY_INTERVAL = 5.0  # a node inotify watches is still read this often: a missed event costs seconds
SAFETY_GRID = 0.5  # those re-reads fall on multiples of this: 1,000 nodes cost 2 rounds a second, not 200
QUIET_WINDOW = 1.0  # a write to an outbox with no data for this long is read at once (no NOTIFY_BATCH)
IDLE_COALESCE = 0.1  # while no turn is open anywhere, inotify is read at most this often (heartbeats)
# A backlog (a router restarted under 64 busy nodes: 256k lines) is read in slices: at most READ_SLICE
# bytes of one outbox per poll, and the loop lets the committer and the connections in at least every
# ROUND_BUDGET seconds, so the router answers while it catches up (issue 13).
READ_SLICE = 2 * MAX_OUTBOX_LINE  # a slice always holds a whole line of the longest kind read (mailbox.py)
ROUND_BUDGET = 0.02
# A poll reads READ_STEP (~800 delta lines) unless the next line is longer: a 2 MiB slice took the loop
# 0.1-0.9 s to decide, and the committer needs several turns of the loop (fsync and snapshot threads)
# before a client sees an event (bench_burst: nothing was fanned out for 1.4 s of a 2 s burst).
READ_STEP = 64 << 10


class IngestHost(Protocol):
    """What the ingest needs of the Router (the Router imports this module, not the reverse)."""

    state: CoreState
    book: ShellBook
    settings: Any

    def now(self) -> float: ...

    def decide(self, inp: Any, now: float | None = None) -> Decision: ...

    def emit(self, name: str, data: dict[str, Any]) -> None: ...

    async def carry_out(self, effects: list[Any]) -> Any: ...


@dataclass
class NodeWatch:
    """One node's outbox follower. `seq`/`offset` are the read cursor: shell state, not durable
    (router/liveness.py): a new watch starts at the node's durable outbox_seq and offset 0."""

    swarm_id: str
    node_id: int
    path: str
    seq: int = 0  # seq of the last outbox line read (lines without events included)
    offset: int = 0  # byte offset after it
    resync_seq: int | None = None  # set while re-reading an outbox that shrank
    interval: float = FAST_INTERVAL
    fast_until: float = 0.0
    last_data_at: float = float("-inf")  # after a prompt was sent, poll fast for a while before backing off
    version: int = 0
    refused: str | None = None  # why the outbox path is not read (a symlink, not a regular file), once said
    normalizers: dict[str, Any] = field(default_factory=dict)
    notified: bool = False  # inotify reports this outbox's writes
    due_at: float = float("-inf")  # when the pending read is due (-inf: none yet)
    more: bool = False  # the last read stopped before the end the file had when it started


def make_normalizer(runtime: str) -> Any:
    try:
        if runtime == "claude":
            from codeswarm.router.normalize.claude import ClaudeNormalizer

            return ClaudeNormalizer()
        from codeswarm.router.normalize.codex import CodexNormalizer

        return CodexNormalizer()
    except ImportError:  # a normalizer module missing from this build: drop raw lines
        return None


class OutboxIngest:
    def __init__(self, router: IngestHost) -> None:
        self.router = router
        self.watches: dict[tuple[str, int], NodeWatch] = {}
        self._heap: list[tuple[float, int, str, int]] = []
        self._wake = trio.Event()
        self._sleeping_until = float("-inf")  # when run() wakes up by itself; -inf while it runs
        self._synced_shape: list[tuple[str, bool, int]] | None = None  # the swarms sync() last saw
        self._hurry = trio.Event()  # cuts notify_loop's idle pause short
        self._expect_until = float("-inf")  # an inbox line was written: its answer is awaited until then
        self._idle, self._idle_checked_at = False, float("-inf")  # _all_idle's last answer
        self.lines_read = 0
        self.stat_calls = 0
        self._busy_cache: dict[str, tuple[float, set[int]]] = {}
        self.effects: list[Any] = []  # effects of runtime decisions, carried out by run()
        self.dir_modes: dict[str, WatchChoice] = {}
        try:
            self._notify: AppendWatcher | None = AppendWatcher()
        except OSError as exc:  # no inotify (kernel, limits): every outbox is polled
            log.warning("inotify unavailable (%s): outboxes are polled", exc)
            self._notify = None

    def close(self) -> None:
        """Give the inotify descriptor back (a user has 128 of them: fs.inotify.max_user_instances)."""
        if self._notify is not None:
            self._notify.close()
            self._notify = None

    # ------------------------------------------------------------------ registry

    def sync(self) -> None:
        """Watch every node of every swarm that is not terminated; forget the others."""
        # Called every poll round (1 s for the local backend): nothing to do unless a swarm came,
        # went or ended (a watch's path is fixed for the life of its swarm).
        shape = [(sid, sw.state == "terminated", len(sw.nodes)) for sid, sw in self.router.state.swarms.items()]
        if shape == self._synced_shape:
            return
        self._synced_shape = shape
        wanted = set()
        for swarm in self.router.state.swarms.values():
            if swarm.state == "terminated":
                continue
            job = JobHandle.from_json(swarm.job)
            for node in swarm.nodes:
                key = (swarm.swarm_id, node.node_id)
                wanted.add(key)
                if key not in self.watches:
                    # Resume after the last line whose events are in the log (issue 12 #5: by
                    # position, not by trusting seq): lines after it produced nothing durable yet.
                    w = NodeWatch(swarm.swarm_id, node.node_id, str(outbox_path(job.swarm_root, job.job_id, node.node_id)),
                                  seq=node.outbox_seq, offset=node.outbox_offset,
                                  # state from before outbox_offset existed: skip what was seen by seq
                                  resync_seq=node.outbox_seq if node.outbox_seq and not node.outbox_offset else None)
                    w.notified = self._notify_add(key, w.path)
                    self.watches[key] = w
                    self._schedule(w, 0.0)
        for key in list(self.watches):
            if key not in wanted:
                del self.watches[key]
                if self._notify is not None:
                    self._notify.discard(key)
        self._busy_cache.clear()
        self._idle_checked_at = float("-inf")
        self._wake.set()
        self._hurry.set()

    def _notify_add(self, key: tuple[str, int], path: str) -> bool:
        """Watch the outbox with inotify if its directory is on a local filesystem."""
        if self._notify is None:
            return False
        directory = os.path.dirname(path)
        choice = self.dir_modes.get(directory)
        if choice is None:
            choice = choose_mode(directory, str(getattr(self.router.settings, "mailbox_watch", "auto")))
            if not choice.reason.startswith("statfs failed"):  # not there yet: decide again next time
                self.dir_modes[directory] = choice
                log.info("outboxes in %s: %s (%s)", directory, choice.mode, choice.reason)
        return choice.mode == "inotify" and self._notify.add(key, path)

    async def notify_loop(self) -> None:
        """Read or schedule a node as soon as inotify says its outbox was written.

        A quiet outbox (a heartbeat, the first line of a turn) is read here and now: one wake-up
        per line instead of four (this task, then run() re-arming its timer, the timer, the
        round). One that is streaming is read NOTIFY_BATCH later by run(), so that the lines
        written meanwhile come in the same read. Reading here stops after ROUND_BUDGET (a queue
        overflow names every node): the rest are run()'s."""
        if self._notify is None:
            return
        fd = self._notify.fileno()
        while True:
            await trio.lowlevel.wait_readable(fd)
            now = trio.current_time()
            soon, stop_at = now + NOTIFY_BATCH, now + ROUND_BUDGET
            all_quiet = True
            for key in self._notify.changed():
                w = self.watches.get(key)  # type: ignore[call-overload]
                if w is None:
                    continue
                if now - w.last_data_at >= QUIET_WINDOW and trio.current_time() < stop_at:
                    self._reschedule(w, self.poll_node(w))
                else:
                    all_quiet = False
                    if not now <= w.due_at <= soon:  # never later than a read already due
                        self._schedule(w, NOTIFY_BATCH)
            if self.effects:  # run() carries them out
                self._wake.set()
            if all_quiet and self._all_idle():
                # Only heartbeats (or a rare exit) to expect: take the next ones together, after a
                # pause that a prompt (expect_activity) or a new swarm (sync) cuts short.
                self._hurry = trio.Event()
                with trio.move_on_after(IDLE_COALESCE):
                    await self._hurry.wait()

    def _all_idle(self) -> bool:
        """No turn open in any swarm, no worker starting, no inbox line just written: every outbox
        write now is a heartbeat or a worker's own notice, none of which a client waits for.
        Recomputed at most every BUSY_CACHE_SECONDS (an inbox line cuts in: expect_activity)."""
        now = trio.current_time()
        if now < self._expect_until:
            return False
        if now - self._idle_checked_at > BUSY_CACHE_SECONDS:
            self._idle_checked_at = now
            self._idle = not any(
                swarm.state == "pending" or self._busy_nodes(swarm) or any(n.worker == "not_started" for n in swarm.nodes)
                for swarm in self.router.state.swarms.values() if swarm.state != "terminated")
        return self._idle

    def _schedule(self, w: NodeWatch, delay: float, grid: float = 0.0) -> None:
        """Read `w` in `delay` seconds (rounded up to a multiple of `grid`: nodes due on the same
        grid point are read in one round). Wakes run() only if that is before it would wake."""
        w.version += 1
        due = trio.current_time() + delay
        w.due_at = due = math.ceil(due / grid) * grid if grid else due
        heapq.heappush(self._heap, (due, w.version, w.swarm_id, w.node_id))
        if due < self._sleeping_until:
            self._wake.set()

    def expect_activity(self, swarm_id: str, node_id: int) -> None:
        """A prompt was just sent: poll this node fast again."""
        self._expect_until = trio.current_time() + EXPECT_WINDOW
        self._hurry.set()
        w = self.watches.get((swarm_id, node_id))
        if w is not None and not w.notified:  # inotify will say when the worker answers
            w.interval = FAST_INTERVAL
            w.fast_until = trio.current_time() + EXPECT_WINDOW
            self._schedule(w, FAST_INTERVAL)
            self._wake.set()

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        while True:
            now = trio.current_time()
            due: list[NodeWatch] = []
            while self._heap and self._heap[0][0] <= now:
                _, version, sid, nid = heapq.heappop(self._heap)
                w = self.watches.get((sid, nid))
                if w is not None and w.version == version:
                    due.append(w)
            yield_at = trio.current_time() + ROUND_BUDGET
            for w in due:
                if trio.current_time() > yield_at:
                    await trio.sleep(0)
                    yield_at = trio.current_time() + ROUND_BUDGET
                if self.watches.get((w.swarm_id, w.node_id)) is not w:  # forgotten during a yield (terminated)
                    continue
                got = self.poll_node(w)
                self._reschedule(w, got)
            if self.effects:  # inbox lines the core decided while reading (after their events are durable)
                effects, self.effects = self.effects, []
                await self.router.carry_out(effects)
            if due:
                await trio.sleep(0)  # let the committer and connections run between rounds
                continue
            self._wake = trio.Event()
            self._sleeping_until = self._heap[0][0] if self._heap else math.inf
            try:
                with trio.move_on_at(self._sleeping_until):
                    await self._wake.wait()
            finally:
                self._sleeping_until = float("-inf")

    def _reschedule(self, w: NodeWatch, got_lines: bool) -> None:
        swarm = self.router.state.swarms.get(w.swarm_id)
        if swarm is None or (w.swarm_id, w.node_id) not in self.watches:
            return
        settings = self.router.settings
        now = trio.current_time()
        if got_lines:
            w.last_data_at = now
        if w.notified:  # the next write raises an event: read again soon only if this read stopped short
            if w.more:
                self._schedule(w, FAST_INTERVAL)
            else:
                self._schedule(w, SAFETY_INTERVAL, SAFETY_GRID)
            return
        if got_lines or now < w.fast_until:
            w.interval = FAST_INTERVAL
        else:
            cap = settings.poll_interval_seconds
            if w.node_id not in self._busy_nodes(swarm):
                cap *= 4  # idle: only heartbeats are expected
            elif now - w.last_data_at < STREAMING_WINDOW:
                cap = min(cap, STREAMING_CAP)  # a turn that is streaming: its next line is near
            w.interval = min(cap, w.interval * GROWTH)
        self._schedule(w, w.interval)

    def _busy_nodes(self, swarm: Swarm) -> set[int]:
        """Nodes with an open turn, recomputed at most every BUSY_CACHE_SECONDS per swarm: asking
        swarm.node_busy per poll scanned every injection of the swarm, O(nodes^2)/s at 1,000 nodes
        (bench_scale: p99 0.8-2 s -> 0.1 s). Slightly stale is fine: it only picks the idle cap."""
        now = trio.current_time()
        cached = self._busy_cache.get(swarm.swarm_id)
        if cached is None or now - cached[0] > BUSY_CACHE_SECONDS:
            cached = (now, {inj.node_id for inj in swarm.open_injections()})
            self._busy_cache[swarm.swarm_id] = cached
        return cached[1]

    def drain_node(self, swarm_id: str, node_id: int) -> None:
        """Read one node's outbox to its end now (before its worker is declared lost)."""
        w = self.watches.get((swarm_id, node_id))
        if w is not None:
            while self.poll_node(w):
                pass

    def drain_swarm(self, swarm_id: str) -> None:
        """Read every outbox of the swarm to its end now (before it is declared terminated)."""
        for key, w in list(self.watches.items()):
            if key[0] == swarm_id:
                while self.poll_node(w):
                    pass

    def poll_node(self, w: NodeWatch) -> bool:
        swarm = self.router.state.swarms.get(w.swarm_id)
        if swarm is None:
            return False
        self.stat_calls += 1
        w.more = False
        try:
            st = os.lstat(w.path)  # never stat through a link: a symlinked outbox goes on to be refused below
        except OSError:
            return False
        regular = stat.S_ISREG(st.st_mode)
        if regular and st.st_size < w.offset:  # never expected (append-only): say so, re-read, seq filters what was seen
            self.router.decide(BadOutboxLine(w.swarm_id, w.node_id, f"the outbox shrank from {w.offset} to "
                                             f"{st.st_size} bytes; reading it again from the start"))
            w.offset, w.resync_seq = 0, w.seq
        if regular and st.st_size == w.offset and w.refused is None:
            return False
        batch = read_complete_lines(w.path, w.offset, READ_STEP)  # type: ignore[arg-type]
        if batch.offset == w.offset and not batch.bad and batch.refused is None:  # a line longer than a step
            batch = read_complete_lines(w.path, w.offset, READ_SLICE)  # type: ignore[arg-type]
        if batch.refused != w.refused:  # issue 12 #6: never read through a link; said once, not per poll
            w.refused = batch.refused
            if batch.refused:
                self.router.emit("router_warning", {
                    "message": f"outbox {batch.refused}: not read", "error_code": "outbox_refused",
                    "swarm_id": w.swarm_id, "node_id": w.node_id})
        if batch.offset == w.offset:
            return False
        for problem in batch.bad:
            self.router.decide(BadOutboxLine(w.swarm_id, w.node_id, problem))
        now = self.router.now()
        heard = False
        for line, end in zip(batch.lines, batch.ends):
            heard = self.process_line(swarm, w, line, now, end) or heard
        if heard:  # once per read, not per line: `now` is the same for all of them
            self.router.book.heard(w.swarm_id, w.node_id, now)
        w.offset = batch.offset
        w.more = batch.offset < st.st_size  # a step's worth read: the rest raises no new event
        self.lines_read += len(batch.lines)
        return True

    def process_line(self, swarm: Swarm, w: NodeWatch, line: dict[str, Any], now: float, end: int = 0) -> bool:
        """Decide one outbox line; True when it proves the worker alive (the caller notes it)."""
        seq = line.get("seq")
        if type(seq) is not int:  # JSON gives int, bool, float...: only a real integer (not bool) is a seq
            self.router.decide(BadOutboxLine(w.swarm_id, w.node_id, "outbox line without an integer seq"))
            return False
        if w.resync_seq is not None:  # re-reading a shrunk outbox: skip what was seen, by seq
            if seq <= w.resync_seq:
                return False
            w.resync_seq = None
        # What was consumed is known by position; seq is only checked (issue 12 #5): a forged or
        # repeated seq is reported and the line is processed like any other, never dropped.
        if seq != w.seq + 1:
            anomaly = seq_anomaly(w.seq, seq)
            if anomaly is not None:
                self.router.decide(OutboxSeqAnomaly(w.swarm_id, w.node_id, anomaly[0], anomaly[1], seq))
        w.seq = seq
        kind = line.get("type")
        try:
            if kind == "runtime":  # first: nearly every line is runtime output
                runtime = line.get("runtime") or swarm.agent_runtime
                if type(runtime) is not str:
                    runtime = str(runtime)
                norm = w.normalizers.get(runtime)
                if norm is None:
                    norm = w.normalizers[runtime] = make_normalizer(runtime)
                if norm is None:
                    return True
                events = norm.feed(line.get("payload"))
                if events:
                    iid = line.get("injection_id")
                    # The read's `now` for every line of it: its events share one timestamp (formatted once).
                    effects = self.router.decide(_new(RuntimeOutput, (w.swarm_id, w.node_id, iid if isinstance(iid, str)
                                                                      else None, events, seq, end)), now).effects
                    if effects:
                        self.effects += effects  # e.g. budget_exceeded's interrupts: see run()
            elif kind == "lifecycle":
                self.router.decide(LifecycleLine(w.swarm_id, w.node_id, line, end), now)
                if line.get("event") == "project_task_result":
                    self.router.projects.on_task_result(w.swarm_id, w.node_id, line)
            else:
                self.router.decide(BadOutboxLine(w.swarm_id, w.node_id, f"unknown outbox line type {kind!r}"))
        except Exception as exc:  # a bad line must never stop the ingest of every other node
            log.exception("outbox line failed: swarm %s node %s seq %s", swarm.swarm_id, w.node_id, seq)
            self.router.decide(BadOutboxLine(w.swarm_id, w.node_id, f"could not process outbox line {seq}: {exc!r}"))
        return True
