"""One client connection: line framing, subscription filter, bounded send backlog."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import trio

from codeswarm.protocol import MAX_LINE_BYTES, Rejection, encode_line, iso_timestamp, make_event

if TYPE_CHECKING:
    from codeswarm.router.app import LoggedEvent

MAX_BACKLOG_BYTES = 16 << 20
MAX_OWN_REQUEST_IDS = 4096


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


class Connection:
    """Subscription state and the outgoing queue of one client."""

    def __init__(self, stream: trio.abc.Stream, label: str) -> None:
        self.stream = stream
        self.label = label
        self.mode = "live"  # live (all) | filtered | none
        self.swarm_filter: str | None = None
        self.own_request_ids: deque[str] = deque(maxlen=MAX_OWN_REQUEST_IDS)
        self._own_set: set[str] = set()
        self.cursor = 0  # highest log seq already handled for this connection
        self.replaying = False
        self.held: list["LoggedEvent"] = []
        self._queue: deque[bytes] = deque()
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

    def wants(self, ev: "LoggedEvent") -> bool:
        if ev.request_id is not None and ev.request_id in self._own_set:
            return True
        if self.mode == "live":
            return True
        if self.mode == "none":
            return False
        return self.swarm_filter in ev.swarm_keys

    # ---------------------------------------------------------------- sending

    def deliver(self, events: list["LoggedEvent"], joined: bytes | None) -> None:
        """Queue broadcast events (already in seq order). `joined` is every event's bytes at once."""
        if self.closed:
            return
        if self.replaying:
            self.held.extend(events)
            return
        if self.mode == "live" and joined is not None:  # live mode wants every event
            self._push(joined)
        else:
            chosen = [ev.wire for ev in events if self.wants(ev)]
            if chosen:
                self._push(b"".join(chosen))
        if events:
            self.cursor = max(self.cursor, events[-1].seq)

    def send_directed(self, event: str, data: dict[str, Any], now: float) -> None:
        env = make_event(event, data, seq=self.cursor, timestamp=iso_timestamp(now), directed=True)
        self._push(encode_line(env))

    def send_raw(self, data: bytes) -> None:
        self._push(data)

    def _push(self, data: bytes) -> None:
        if self.closed:
            return
        self._queue.append(data)
        self._queued_bytes += len(data)
        if self._queued_bytes > MAX_BACKLOG_BYTES:
            self.close(f"send backlog over {MAX_BACKLOG_BYTES >> 20} MiB (slow consumer); reconnect and resume")
        self._wake.set()

    def close(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.close_reason = reason
            self._queue.clear()
            self._wake.set()

    async def sender(self) -> None:
        """Drain the queue to the stream; returns when the connection is closed."""
        while not self.closed:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._queue and not self.closed:
                chunks = []
                size = 0
                while self._queue and size < (1 << 20):
                    c = self._queue.popleft()
                    chunks.append(c)
                    size += len(c)
                self._queued_bytes -= size
                await self.stream.send_all(b"".join(chunks))
