"""The web control plane: static files and a WebSocket bridge to the router, on one port.

Every request needs the access token (query `token=` or the cookie set on the first visit). The
WebSocket at `/ws` also needs an Origin equal to the served origin. Each browser socket gets its
own connection to the router's Unix socket and envelopes are relayed unchanged, one per text frame
(PROTOCOL.md 2.2); the bridge never makes up events. When the router goes away the browser socket
is closed (1012) and the page reconnects and resumes from its last seq.

`/archives/<name>` serves a workspace archive written by a terminate with "archive workspaces"
(PROTOCOL.md 4.5), with the same token check: only a plain `*.tar.gz` file name, looked up in the
archive directories this server was given (never a path from the request).

HTTP is parsed here by hand (GET/HEAD of a few static files, `Connection: close`); for `/ws` the
already-read bytes go to wsproto, which does the handshake and the framing. wsproto is used
directly (not trio-websocket) so that many router lines can leave in one send.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Ping, Request, TextMessage
from wsproto.utilities import RemoteProtocolError

from codeswarm.errors import BadRequest
from codeswarm.protocol import MAX_LINE_BYTES

log = logging.getLogger("codeswarm.web")
STATIC_DIR = Path(__file__).resolve().parent.parent / "web_static"
MAX_HEAD_BYTES = 16 * 1024
HEAD_TIMEOUT_SECONDS = 10.0
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}
_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            413: "Payload Too Large", 426: "Upgrade Required"}
ARCHIVE_PREFIX = "/archives/"
ARCHIVE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,250}\.tar\.gz")  # as archive.archive_name() makes them
ARCHIVE_CHUNK = 256 * 1024
# WebSocket close codes (RFC 6455 / IANA registry).
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN_LATER = 1013


@dataclass(frozen=True)
class HttpRequest:
    method: str
    target: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    head_bytes: bytes  # everything read so far, replayed into the WebSocket handshake

    def cookie(self, name: str) -> str | None:
        for part in self.headers.get("cookie", "").split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == name:
                return value
        return None


def parse_head(data: bytes) -> HttpRequest:
    """Parse a request head (request line + headers, up to the blank line). Raises BadRequest."""
    head, sep, _ = data.partition(b"\r\n\r\n")
    if not sep:
        raise BadRequest("incomplete head")
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise BadRequest("bad request line") from None
    if not version.startswith("HTTP/1."):
        raise BadRequest("unsupported HTTP version")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise BadRequest("bad header line")
        key = name.lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    parts = urllib.parse.urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/"):
        raise BadRequest("only origin-form targets are served")
    return HttpRequest(
        method=method,
        target=target,
        path=parts.path,
        query=urllib.parse.parse_qs(parts.query),
        headers=headers,
        head_bytes=data,
    )


def resolve_static(static_dir: Path, url_path: str) -> Path | None:
    """Map a URL path to a file inside static_dir, or None (-> 404). No `..`, no hidden files."""
    decoded = urllib.parse.unquote(url_path)
    if decoded in ("", "/"):
        decoded = "/index.html"
    if "\x00" in decoded or "\\" in decoded:
        return None
    segments = decoded.lstrip("/").split("/")
    if any(seg in ("", ".", "..") or seg.startswith(".") for seg in segments):
        return None
    root = static_dir.resolve()
    candidate = root.joinpath(*segments)
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not real.is_relative_to(root) or not real.is_file():
        return None
    if real.suffix not in CONTENT_TYPES:
        return None
    return real


@dataclass
class WebServer:
    """Serves the page and bridges /ws to the router socket. `port` is known once listening."""

    router_socket: Path
    host: str = "127.0.0.1"
    port: int = 0
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    static_dir: Path = STATIC_DIR
    archive_roots: tuple[Path, ...] = ()  # where the router writes workspace archives
    bridges: int = 0  # open browser<->router bridges, for tests and the status line

    @property
    def origin(self) -> str:
        return f"http://{_url_host(self.host)}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.origin}/?token={self.token}"

    @property
    def cookie_name(self) -> str:
        # Cookies ignore the port, so two `codeswarm web` on one host must not share a name.
        return f"codeswarm_token_{self.port}"

    def allowed_origins(self) -> set[str]:
        origins = {self.origin}
        if self.host in ("127.0.0.1", "localhost", "::1"):
            origins |= {f"http://127.0.0.1:{self.port}", f"http://localhost:{self.port}",
                        f"http://[::1]:{self.port}"}
        return origins

    async def serve(self, *, task_status: trio.TaskStatus[WebServer] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started(self)
            await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

    # ------------------------------------------------------------------ HTTP

    def _token_ok(self, req: HttpRequest) -> bool:
        given = (req.query.get("token") or [None])[0] or req.cookie(self.cookie_name)
        return given is not None and secrets.compare_digest(given.encode(), self.token.encode())

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            req = await self._read_head(stream)
            if req is None:
                return
            if req.path == "/ws":
                await self._websocket(stream, req)
            elif req.path.startswith(ARCHIVE_PREFIX):
                await self._archive(stream, req)
            else:
                await self._static(stream, req)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception:  # one bad connection must never take the server down
            log.exception("web: connection failed")
        finally:
            await trio.aclose_forcefully(stream)

    async def _read_head(self, stream: trio.SocketStream) -> HttpRequest | None:
        buf = bytearray()
        with trio.move_on_after(HEAD_TIMEOUT_SECONDS):
            while (end := buf.find(b"\r\n\r\n")) < 0 and len(buf) <= MAX_HEAD_BYTES:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return None
                buf += chunk
            if end < 0 or end > MAX_HEAD_BYTES:
                await self._respond(stream, 413, b"request head too large\n")
                return None
            try:
                return parse_head(bytes(buf))
            except BadRequest as exc:
                await self._respond(stream, 400, f"{exc}\n".encode())
                return None
        return None

    async def _respond(
        self, stream: trio.abc.Stream, status: int, body: bytes, *,
        content_type: str = "text/plain; charset=utf-8", extra: list[tuple[str, str]] | None = None,
        head_only: bool = False, length: int | None = None,
    ) -> None:
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body) if length is None else length)),
            ("Connection", "close"),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            ("X-Frame-Options", "DENY"),
            ("Content-Security-Policy",
             f"default-src 'self'; connect-src 'self' ws://{_url_host(self.host)}:{self.port}; "
             "img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
             "base-uri 'none'; frame-ancestors 'none'; form-action 'none'"),
        ]
        headers += extra or []
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}"] + [f"{k}: {v}" for k, v in headers]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        await stream.send_all(head if head_only else head + body)

    async def _refused(self, stream: trio.abc.Stream, req: HttpRequest) -> bool:
        """Answer 403 without the page's token, 405 for anything but GET/HEAD; True if it did."""
        if not self._token_ok(req):
            await self._respond(stream, 403, b"403 forbidden: open the URL printed by `codeswarm web`\n")
            return True
        if req.method not in ("GET", "HEAD"):
            await self._respond(stream, 405, b"method not allowed\n", extra=[("Allow", "GET, HEAD")])
            return True
        return False

    async def _static(self, stream: trio.abc.Stream, req: HttpRequest) -> None:
        if await self._refused(stream, req):
            return
        path = resolve_static(self.static_dir, req.path)
        if path is None:
            await self._respond(stream, 404, b"404 not found\n")
            return
        body = await trio.Path(path).read_bytes()
        extra = []
        if req.query.get("token"):
            extra.append(("Set-Cookie", f"{self.cookie_name}={self.token}; Path=/; HttpOnly; SameSite=Strict"))
        await self._respond(stream, 200, body, content_type=CONTENT_TYPES[path.suffix], extra=extra,
                            head_only=req.method == "HEAD")

    def find_archive(self, url_path: str) -> Path | None:
        """`/archives/<name>` -> the archive file, or None (-> 404). Only a bare archive name."""
        name = urllib.parse.unquote(url_path[len(ARCHIVE_PREFIX):])
        if not ARCHIVE_NAME.fullmatch(name) or ".." in name:
            return None
        for root in self.archive_roots:
            try:
                base = root.resolve(strict=True)
                real = (base / name).resolve(strict=True)
            except (OSError, RuntimeError):
                continue
            if real.parent == base and real.is_file():
                return real
        return None

    async def _archive(self, stream: trio.abc.Stream, req: HttpRequest) -> None:
        if await self._refused(stream, req):
            return
        path = self.find_archive(req.path)
        if path is None:
            await self._respond(stream, 404, b"404 no such archive\n")
            return
        try:
            f = await trio.open_file(path, "rb")
        except OSError:
            await self._respond(stream, 404, b"404 no such archive\n")
            return
        async with f:
            size = os.fstat(f.wrapped.fileno()).st_size
            # The head says the real size; the body is streamed so a large archive never sits in memory.
            await self._respond(stream, 200, b"", content_type="application/gzip", head_only=True, length=size, extra=[
                ("Content-Disposition", f'attachment; filename="{path.name}"')])
            if req.method == "HEAD":
                return
            sent = 0
            while sent < size:
                chunk = await f.read(min(ARCHIVE_CHUNK, size - sent))
                if not chunk:
                    break  # the file shrank under us: the client sees a short body and fails the download
                await stream.send_all(chunk)
                sent += len(chunk)

    # ------------------------------------------------------------------ WebSocket bridge

    async def _websocket(self, stream: trio.abc.Stream, req: HttpRequest) -> None:
        if not self._token_ok(req):
            await self._respond(stream, 403, b"403 forbidden: missing or wrong token\n")
            return
        if req.headers.get("origin") not in self.allowed_origins():
            await self._respond(stream, 403, b"403 forbidden: foreign origin\n")
            return
        if "websocket" not in req.headers.get("upgrade", "").lower():
            await self._respond(stream, 426, b"websocket upgrade required\n", extra=[("Upgrade", "websocket")])
            return
        # `?batch=1` (the page asks for it): all complete router lines of one read go in one text
        # frame, separated by "\n". Chromium pays per WebSocket message, so this is what lets the
        # page take a 1,000-node replay or a firehose; other clients keep one envelope per frame.
        bridge = _Bridge(stream, batch=(req.query.get("batch") or [""])[0] == "1")
        if not await bridge.handshake(req.head_bytes):
            await self._respond(stream, 400, b"bad websocket handshake\n")
            return
        try:
            router = await trio.open_unix_socket(str(self.router_socket))
        except OSError:
            await bridge.close(CLOSE_TRY_AGAIN_LATER, "router unavailable")
            return
        self.bridges += 1
        try:
            async with router:
                await bridge.run(router)
        finally:
            self.bridges -= 1


class _Bridge:
    """One browser WebSocket <-> one router connection, on wsproto directly.

    Router -> browser is the hot path (thousands of deltas per second): every complete line
    already in the buffer becomes one text frame, and all of them go out in one send.
    """

    def __init__(self, stream: trio.abc.Stream, batch: bool = False) -> None:
        self.stream = stream
        self.batch = batch
        self.ws = WSConnection(ConnectionType.SERVER)
        self.send_lock = trio.StrictFIFOLock()

    async def handshake(self, head: bytes) -> bool:
        try:
            self.ws.receive_data(head)
            for event in self.ws.events():
                if isinstance(event, Request):
                    await self._send(self.ws.send(AcceptConnection()))
                    return True
        except RemoteProtocolError:
            pass
        return False

    async def _send(self, data: bytes) -> None:
        async with self.send_lock:
            await self.stream.send_all(data)

    async def close(self, code: int, reason: str) -> None:
        if self.ws.state is ConnectionState.OPEN:
            await self._send(self.ws.send(CloseConnection(code=code, reason=reason)))

    async def run(self, router: trio.abc.Stream) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._from_browser, router, nursery.cancel_scope)
                nursery.start_soon(self._to_browser, router, nursery.cancel_scope)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _closing(self, code: int, reason: str, scope: trio.CancelScope) -> None:
        """Send our close frame, give the browser a moment to answer it, then end the bridge."""
        try:
            await self.close(code, reason)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            scope.cancel()
            return
        scope.deadline = min(scope.deadline, trio.current_time() + 2)

    async def _from_browser(self, router: trio.abc.Stream, scope: trio.CancelScope) -> None:
        parts: list[str] = []
        size = 0
        try:
            while True:
                data = await self.stream.receive_some(65536)
                self.ws.receive_data(data or None)
                for event in self.ws.events():
                    if isinstance(event, TextMessage):
                        parts.append(event.data)
                        size += len(event.data)
                        if size > MAX_LINE_BYTES + 1024:
                            await self._closing(CLOSE_MESSAGE_TOO_BIG, "message too big", scope)
                            parts, size = [], 0
                        elif event.message_finished:
                            message = "".join(parts)
                            parts, size = [], 0
                            if self.ws.state is ConnectionState.OPEN:
                                await router.send_all(_one_line(message))
                    elif isinstance(event, BytesMessage):
                        await self._closing(CLOSE_UNSUPPORTED_DATA, "binary frames are not supported", scope)
                    elif isinstance(event, Ping):
                        await self._send(self.ws.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        if self.ws.state is ConnectionState.REMOTE_CLOSING:
                            await self._send(self.ws.send(event.response()))
                        scope.cancel()
                        return
                if not data:
                    scope.cancel()
                    return
        except RemoteProtocolError:
            scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            scope.cancel()

    async def _to_browser(self, router: trio.abc.Stream, scope: trio.CancelScope) -> None:
        buf = bytearray()
        try:
            while True:
                chunk = await router.receive_some(1 << 18)
                if not chunk:
                    await self._closing(CLOSE_SERVICE_RESTART, "router connection closed", scope)
                    return
                buf += chunk
                end = buf.rfind(b"\n")
                if end < 0:
                    if len(buf) > 2 * MAX_LINE_BYTES:  # the router keeps lines under 1 MiB
                        await self._closing(CLOSE_INTERNAL_ERROR, "oversize line from the router", scope)
                        return
                    continue
                frames = _batch_frame(bytes(buf[:end])) if self.batch else _text_frames(bytes(buf[:end]))
                del buf[: end + 1]
                if frames and self.ws.state is ConnectionState.OPEN:
                    await self._send(frames)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            scope.cancel()


def _text_frames(block: bytes) -> bytes:
    """Complete JSON lines -> unmasked server text frames, one per line (RFC 6455 5.2)."""
    try:
        block.decode("utf-8")
    except UnicodeDecodeError:  # never expected from the router; keep the socket valid anyway
        block = block.decode("utf-8", errors="replace").encode("utf-8")
    out = bytearray()
    for line in block.split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        n = len(line)
        if not n:
            continue
        if n < 126:
            out += bytes((0x81, n))
        elif n < 65536:
            out += b"\x81\x7e" + n.to_bytes(2, "big")
        else:
            out += b"\x81\x7f" + n.to_bytes(8, "big")
        out += line
    return bytes(out)


def _frame_head(n: int) -> bytes:
    if n < 126:
        return bytes((0x81, n))
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big")
    return b"\x81\x7f" + n.to_bytes(8, "big")


def _batch_frame(block: bytes) -> bytes:
    """Complete JSON lines -> one unmasked text frame holding them all, "\n"-separated."""
    try:
        block.decode("utf-8")
    except UnicodeDecodeError:  # never expected from the router; keep the socket valid anyway
        block = block.decode("utf-8", errors="replace").encode("utf-8")
    if b"\r" in block:
        block = block.replace(b"\r\n", b"\n")
    block = block.strip(b"\n")
    if not block:
        return b""
    return _frame_head(len(block)) + block


def _one_line(message: str) -> bytes:
    """One text frame -> exactly one JSON line. Re-encode only when the frame has line breaks."""
    data = message.encode("utf-8")
    if b"\n" not in data and b"\r" not in data:
        return data + b"\n"
    try:
        obj: Any = orjson.loads(data)
        return orjson.dumps(obj) + b"\n"
    except orjson.JSONDecodeError:
        # Not JSON: keep it one line so the router answers invalid_json once.
        return data.replace(b"\r", b" ").replace(b"\n", b" ") + b"\n"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
