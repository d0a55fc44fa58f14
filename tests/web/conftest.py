"""Fixtures for the web tests. FakeRouter: a tiny stand-in for the router's Unix socket: JSON lines in, JSON lines out.

It answers every command with one `echo` event (the command as received) and remembers the raw
lines it got, so tests can check that the bridge relays unchanged. `{"command": "hangup"}` makes
it close that connection, as a router going away would.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio

from codeswarm.router.web import WebServer


class FakeRouter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.received: list[bytes] = []
        self.connections = 0
        self.seq = 0

    async def serve(self, *, task_status: trio.TaskStatus[FakeRouter] = trio.TASK_STATUS_IGNORED) -> None:
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await sock.bind(str(self.path))
        sock.listen(16)
        listener = trio.SocketListener(sock)
        task_status.started(self)
        await trio.serve_listeners(self._conn, [listener])

    async def _conn(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        buf = bytearray()
        async with stream:
            while True:
                try:
                    chunk = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    return
                if not chunk:
                    return
                buf += chunk
                while (nl := buf.find(b"\n")) >= 0:
                    line = bytes(buf[:nl])
                    del buf[: nl + 1]
                    self.received.append(line)
                    try:
                        obj: Any = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        obj = None
                    if isinstance(obj, dict) and obj.get("command") == "hangup":
                        return
                    self.seq += 1
                    event = {
                        "protocol": "codeswarm.router.v1",
                        "type": "event",
                        "timestamp": "2026-01-01T00:00:00+00:00",
                        "event": "echo",
                        "seq": self.seq,
                        "data": {"request_id": obj.get("request_id") if isinstance(obj, dict) else None,
                                 "line": line.decode("utf-8", "replace")},
                    }
                    try:
                        await stream.send_all(orjson.dumps(event) + b"\n")
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return


@pytest.fixture
async def web_pair(nursery: trio.Nursery) -> tuple[WebServer, FakeRouter]:
    """A WebServer bridged to a FakeRouter, both on this test's trio loop."""
    # AF_UNIX paths are short: keep the socket under /tmp, not pytest's long tmp_path.
    tmp = Path(tempfile.mkdtemp(prefix="cswweb-"))
    router = await nursery.start(FakeRouter(tmp / "router.sock").serve)
    server = await nursery.start(WebServer(router_socket=router.path, port=0).serve)
    yield server, router
    shutil.rmtree(tmp, ignore_errors=True)
