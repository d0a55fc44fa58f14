"""One client connection: line framing, subscription filter, bounded send backlog."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

import trio

from codeswarm.protocol import MAX_LINE_BYTES, Rejection, encode_line, iso_timestamp, make_event

MAX_BACKLOG_BYTES = 16 << 20
# A new connection's live events wait this long for its first command (PROTOCOL 3.4): when that is
# `subscribe {since}`, they are dropped unsent and come in the replay instead, in seq order.
LIVE_HOLD_SECONDS = 0.25
DROP_NOTICE_SECONDS = 1.0
REPLAY_STALL_SECONDS = 30.0  # a replaying client that reads nothing for this long is dropped

log = logging.getLogger("codeswarm.router")
MAX_OWN_REQUEST_IDS = 4096


class LoggedEvent(NamedTuple):
    """A committed event as the fan-out sees it: seq, name, matching keys and the wire bytes.
    A NamedTuple: one is made per event (without a Python __init__ frame, see Router._record), and
    a tuple of atomic values is untracked by the garbage collector, so the replay ring's ~16,000 of
    them are not walked by every full collection."""

    seq: int
    name: str
    request_id: str | None
    swarm_keys: tuple[str, ...]
    wire: bytes


class LineReader:
    """Split a byte stream into lines of at most MAX_LINE_BYTES; oversize lines become errors."""

    def __init__(self, limit: int = MAX_LINE_BYTES) -> None:
        self.limit = limit
        self.buf = bytearray()
        self.discarding = False

    def feed(self, data: bytes) -> list[bytes | Rejection]:
        out: list[bytes | Rejection] = []
        self.buf += data
        while True:
            nl = self.buf.find(b"\n")
            if nl < 0:
                # a CR waiting for its LF belongs to the terminator, not to the line
                pending_cr = len(self.buf) == self.limit + 1 and self.buf.endswith(b"\r")
                if len(self.buf) > self.limit and not pending_cr:
                    if not self.discarding:
                        out.append(Rejection("line_too_long", "line exceeds 1 MiB limit"))
                    self.discarding = True
                    self.buf.clear()
                return out
            line = bytes(self.buf[:nl])
            del self.buf[: nl + 1]
            if self.discarding:
                self.discarding = False
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self.limit:
                out.append(Rejection("line_too_long", "line exceeds 1 MiB limit"))
                continue
            if line.strip():
                out.append(line)


def _matches(ev: LoggedEvent, mode: str, swarm: str | None, names: frozenset[str] | None, own: set[str]) -> bool:
    if ev.request_id is not None and ev.request_id in own:
        return True
    if mode == "live":
        return True
    if mode == "none":
        return False
    if names is not None and ev.name not in names:
        return False
    return swarm is None or swarm in ev.swarm_keys


class Connection:
    """Subscription state and the outgoing queue of one client."""

    def __init__(self, stream: trio.abc.Stream, label: str, hold_seconds: float = LIVE_HOLD_SECONDS) -> None:
        self.stream = stream
        self.label = label
        self.mode = "live"  # live (all) | filtered | none
        self.swarm_filter: str | None = None
        self.event_filter: frozenset[str] | None = None  # ext: only these event names
        self.own_request_ids: deque[str] = deque(maxlen=MAX_OWN_REQUEST_IDS)
        self._own_set: set[str] = set()
        self.cursor = 0  # highest log seq already handled for this connection
        self.replaying = False
        self.held: list[LoggedEvent] = []
        # (bytes, highest seq they complete, broadcast?): broadcast chunks can be withdrawn unsent
        self._queue: deque[tuple[bytes, int | None, bool]] = deque()
        self.sent_seq = 0  # every event up to here has been handed to the socket
        self.live_from = 0  # the current subscription's broadcast delivery starts after this seq
        self.taken_seq = 0  # highest broadcast seq taken from the queue for the socket (sent or in flight)
        self._hold_seconds = hold_seconds
        self._released = trio.Event()
        self._drop_notice: bytes | None = None
        self._drop_deadline = float("inf")
        self._send_scope = trio.CancelScope()
        self._drained = trio.Event()
        self._queued_bytes = 0
        self._wake = trio.Event()
        self.closed = False
        self.close_reason: str | None = None

    # ---------------------------------------------------------------- matching

    def add_request_id(self, rid: str) -> None:
        if len(self.own_request_ids) == self.own_request_ids.maxlen:
            self._own_set.discard(self.own_request_ids[0])
        self.own_request_ids.append(rid)
        self._own_set.add(rid)

    def wants(self, ev: LoggedEvent) -> bool:
        return _matches(ev, self.mode, self.swarm_filter, self.event_filter, self._own_set)

    def sent_before(self) -> Callable[[LoggedEvent], bool]:
        """Whether an event of the current subscription's window (live_from, taken_seq] went out:
        the filter as it is now, frozen (subscribe is about to change it)."""
        mode, swarm, names, own = self.mode, self.swarm_filter, self.event_filter, set(self._own_set)
        lo, hi = self.live_from, self.taken_seq
        return lambda ev: lo < ev.seq <= hi and _matches(ev, mode, swarm, names, own)

    def release(self) -> None:
        """Stop holding live events back (the first command arrived, and it is not a subscribe)."""
        self._released.set()

    def withdraw_unsent(self) -> None:
        """Drop the broadcast chunks still queued (not yet taken for the socket): a subscribe with
        `since` replays them in order instead. Directed events stay."""
        kept = deque(item for item in self._queue if not item[2])
        self._queued_bytes = sum(len(item[0]) for item in kept)
        self._queue = kept

    # ---------------------------------------------------------------- sending

    def deliver(self, events: list[LoggedEvent], joined: bytes | None) -> None:
        """Queue broadcast events (already in seq order). `joined` is every event's bytes at once."""
        if self.closed:
            return
        if self.replaying:
            self.held.extend(events)
            return
        if events:
            self.cursor = max(self.cursor, events[-1].seq)
        if self.mode == "live" and joined is not None:  # live mode wants every event
            self._push(joined, self.cursor, broadcast=True)
        else:
            chosen = [ev.wire for ev in events if self.wants(ev)]
            if chosen:
                self._push(b"".join(chosen), self.cursor, broadcast=True)
            elif events:  # nothing to send, but the client is caught up to here (no wake needed)
                if self._queue and not self._queue[-1][0]:
                    self._queue[-1] = (b"", self.cursor, True)
                else:
                    self._queue.append((b"", self.cursor, True))

    def send_directed(self, event: str, data: dict[str, Any], now: float) -> None:
        env = make_event(event, data, seq=self.cursor, timestamp=iso_timestamp(now), directed=True)
        self._push(encode_line(env), self.cursor)

    async def send_paced(self, data: bytes) -> None:
        """Queue replay data with back-pressure: a replay longer than the backlog cap waits for the
        client to read instead of overflowing it; a client that stops reading is dropped."""
        while self._queued_bytes > MAX_BACKLOG_BYTES // 2 and not self.closed:
            self._drained = trio.Event()
            with trio.move_on_after(REPLAY_STALL_SECONDS) as scope:
                await self._drained.wait()
            if scope.cancelled_caught:
                self._drop_slow_consumer()
        self._push(data, None)

    def _push(self, data: bytes, seq: int | None, broadcast: bool = False) -> None:
        if self.closed:
            return
        self._queue.append((data, seq, broadcast))
        self._queued_bytes += len(data)
        if self._queued_bytes > MAX_BACKLOG_BYTES:
            self._drop_slow_consumer()
        self._wake.set()

    def _drop_slow_consumer(self) -> None:
        """Close, with a last directed event saying why and where to resume (sent if the client ever
        reads within DROP_NOTICE_SECONDS): its seq and resume_since are the last event it was sent."""
        reason = (f"send backlog over {MAX_BACKLOG_BYTES >> 20} MiB (slow consumer): connection closed; "
                  f"reconnect and subscribe with since={self.sent_seq}")
        log.warning("dropping a %s connection: %s", self.label, reason)
        env = make_event("router_warning", {"message": reason, "error_code": "slow_consumer",
                                            "resume_since": self.sent_seq},
                         seq=self.sent_seq, timestamp=iso_timestamp(time.time()), directed=True)
        self._drop_notice = encode_line(env)
        # A send in progress may finish (a slow reader) within the grace time; then the notice goes
        # out. A client that does not read at all is cut off at the deadline.
        self._drop_deadline = trio.current_time() + DROP_NOTICE_SECONDS
        self._send_scope.deadline = self._drop_deadline
        self.close(reason)

    def close(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.close_reason = reason
            self._queue.clear()
            self._wake.set()
            self._drained.set()

    async def sender(self) -> None:
        """Drain the queue to the stream; returns when the connection is closed."""
        with trio.move_on_after(self._hold_seconds):
            await self._released.wait()
        while not self.closed:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._queue and not self.closed:
                chunks = []
                size = 0
                upto = None
                while self._queue and size < (1 << 20):
                    c, seq, broadcast = self._queue.popleft()
                    chunks.append(c)
                    size += len(c)
                    upto = seq if seq is not None else upto
                    if broadcast and seq is not None:
                        self.taken_seq = max(self.taken_seq, seq)
                self._queued_bytes -= size
                if self._queued_bytes <= MAX_BACKLOG_BYTES // 2:
                    self._drained.set()
                if size:
                    with trio.CancelScope(deadline=self._drop_deadline) as self._send_scope:
                        await self.stream.send_all(b"".join(chunks))
                    if self._send_scope.cancelled_caught:
                        return  # cut mid-line: nothing more can be written on this stream
                if upto is not None:
                    self.sent_seq = max(self.sent_seq, upto)
        if self._drop_notice is not None:
            with trio.move_on_at(self._drop_deadline):
                await self.stream.send_all(self._drop_notice)
