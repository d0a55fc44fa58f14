"""The web server without a browser: token, cookie, Origin, traversal, content types and the bridge.

Runs against a fake router on a temp Unix socket (tests/web/fake_router.py), all in one trio loop.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import trio
import trio_websocket

from codeswarm.router.web import STATIC_DIR, BadRequest, WebServer, parse_head, resolve_static

async def _http(server: WebServer, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.send_all(raw)
        data = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), v.strip())
    return status, headers, body


def _get(path: str, *, cookie: str | None = None, extra: str = "") -> bytes:
    c = f"Cookie: {cookie}\r\n" if cookie else ""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{c}{extra}\r\n".encode()


@pytest.mark.trio
async def test_page_needs_token_and_sets_cookie(web_pair) -> None:
    server, _ = web_pair
    status, _, _ = await _http(server, _get("/"))
    assert status == 403
    status, _, _ = await _http(server, _get("/?token=wrong"))
    assert status == 403
    status, headers, body = await _http(server, _get(f"/?token={server.token}"))
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert b"<html" in body.lower() or b"<!doctype" in body.lower()
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    # The cookie alone is enough afterwards.
    pair = cookie.split(";")[0]
    status, headers, _ = await _http(server, _get("/app.js", cookie=pair))
    assert status == 200
    assert headers["content-type"].startswith("text/javascript")
    status, headers, _ = await _http(server, _get("/style.css", cookie=pair))
    assert status == 200 and headers["content-type"].startswith("text/css")
    status, _, _ = await _http(server, _get("/app.js", cookie="codeswarm_token_1=nope"))
    assert status == 403


@pytest.mark.trio
@pytest.mark.parametrize(
    "path",
    ["/../web.py", "/%2e%2e/web.py", "/..%2fweb.py", "/%2e%2e%2f%2e%2e%2fprotocol.py", "/x/../../web.py",
     "/.hidden", "/nope.js", "/..", "/%00", "/..\\web.py"],
)
async def test_traversal_and_unknown_paths_are_404(web_pair, path: str) -> None:
    server, _ = web_pair
    status, _, body = await _http(server, _get(f"{path}?token={server.token}"))
    assert status == 404, body


@pytest.mark.trio
async def test_bad_requests(web_pair) -> None:
    server, _ = web_pair
    status, _, _ = await _http(server, b"GARBAGE\r\n\r\n")
    assert status == 400
    status, _, _ = await _http(server, b"GET http://evil/ HTTP/1.1\r\n\r\n")
    assert status == 400
    status, _, _ = await _http(server, f"POST /?token={server.token} HTTP/1.1\r\nContent-Length: 0\r\n\r\n".encode())
    assert status == 405
    status, _, _ = await _http(server, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n")
    assert status == 413


def test_resolve_static_stays_inside() -> None:
    assert resolve_static(STATIC_DIR, "/") == (STATIC_DIR / "index.html").resolve()
    for bad in ("/../router/web.py", "/%2e%2e/x", "/./index.html", "//etc/passwd", "/index.html/"):
        assert resolve_static(STATIC_DIR, bad) is None
    with pytest.raises(BadRequest):
        parse_head(b"GET / HTTP/1.1\r\nbad header\r\n\r\n")


async def _ws(
    nursery: trio.Nursery, server: WebServer, *, token: str | None, origin: str | None
) -> trio_websocket.WebSocketConnection:
    resource = f"/ws?token={token}" if token else "/ws"
    headers = [("Origin", origin)] if origin else []
    return await trio_websocket.connect_websocket(
        nursery, "127.0.0.1", server.port, resource, use_ssl=False, extra_headers=headers
    )


async def _ws_status(server: WebServer, *, token: str | None, origin: str | None) -> int:
    """Try an upgrade; return the HTTP status of the refusal (101 if it was accepted)."""
    resource = f"/ws?token={token}" if token else "/ws"
    headers = [("Origin", origin)] if origin else []
    try:
        with trio.fail_after(5):
            async with trio_websocket.open_websocket(
                "127.0.0.1", server.port, resource, use_ssl=False, extra_headers=headers
            ):
                return 101
    except trio_websocket.ConnectionRejected as exc:
        return exc.status_code


@pytest.mark.trio
async def test_websocket_refuses_without_token_or_with_foreign_origin(web_pair) -> None:
    server, router = web_pair
    assert await _ws_status(server, token=None, origin=server.origin) == 403
    assert await _ws_status(server, token="wrong", origin=server.origin) == 403
    assert await _ws_status(server, token=server.token, origin="http://evil.example:80") == 403
    assert await _ws_status(server, token=server.token, origin=f"http://127.0.0.1:{server.port + 1}") == 403
    assert await _ws_status(server, token=server.token, origin=None) == 403
    assert router.connections == 0
    assert await _ws_status(server, token=server.token, origin=server.origin) == 101


@pytest.mark.trio
async def test_bridge_relays_unchanged_both_ways(nursery: trio.Nursery, web_pair) -> None:
    server, router = web_pair
    ws = await _ws(nursery, server, token=server.token, origin=server.origin)
    cmd = '{"protocol":"codeswarm.router.v1","type":"command","command":"ping","request_id":"r1","payload":{}}'
    await ws.send_message(cmd)
    with trio.fail_after(5):
        reply = orjson.loads(await ws.get_message())
    assert reply["event"] == "echo" and reply["data"]["request_id"] == "r1"
    assert router.received[-1] == cmd.encode()
    # A pretty-printed frame still becomes exactly one line.
    await ws.send_message('{\n "command": "ping",\n "request_id": "r2"\n}')
    with trio.fail_after(5):
        reply = orjson.loads(await ws.get_message())
    assert reply["data"]["request_id"] == "r2"
    assert orjson.loads(router.received[-1]) == {"command": "ping", "request_id": "r2"}
    # Binary frame -> close 1003.
    await ws.send_message(b"\x00\x01")
    with trio.fail_after(5), pytest.raises(trio_websocket.ConnectionClosed) as info:
        while True:
            await ws.get_message()
    assert info.value.reason.code == 1003


@pytest.mark.trio
async def test_cookie_authorizes_websocket_and_router_hangup_closes_it(nursery: trio.Nursery, web_pair) -> None:
    server, router = web_pair
    ws = await trio_websocket.connect_websocket(
        nursery, "127.0.0.1", server.port, "/ws", use_ssl=False,
        extra_headers=[("Origin", f"http://localhost:{server.port}"),
                       ("Cookie", f"other=1; {server.cookie_name}={server.token}")],
    )
    await ws.send_message('{"command":"hangup"}')
    with trio.fail_after(5), pytest.raises(trio_websocket.ConnectionClosed) as info:
        while True:
            await ws.get_message()
    assert info.value.reason.code == 1012
    with trio.fail_after(5):
        while server.bridges:
            await trio.sleep(0.01)


@pytest.mark.trio
async def test_router_down_closes_with_try_again(nursery: trio.Nursery) -> None:
    server = await nursery.start(WebServer(router_socket=Path("/nonexistent/router.sock"), port=0).serve)
    ws = await trio_websocket.connect_websocket(
        nursery, "127.0.0.1", server.port, f"/ws?token={server.token}", use_ssl=False,
        extra_headers=[("Origin", server.origin)],
    )
    with trio.fail_after(5), pytest.raises(trio_websocket.ConnectionClosed) as info:
        await ws.get_message()
    assert info.value.reason.code == 1013


@pytest.mark.trio
async def test_burst_arrives_in_order_one_frame_per_line(nursery: trio.Nursery, web_pair) -> None:
    server, _ = web_pair
    ws = await _ws(nursery, server, token=server.token, origin=server.origin)
    await ws.ping(b"alive")  # answered by the bridge itself
    # Sizes that need each of the three frame length encodings.
    for pad in (10, 1000, 70000):
        await ws.send_message(orjson.dumps({"command": "burst", "n": 300, "pad": pad}).decode())
        with trio.fail_after(10):
            got = [orjson.loads(await ws.get_message()) for _ in range(300)]
        seqs = [e["seq"] for e in got]
        assert seqs == list(range(seqs[0], seqs[0] + 300))
        assert all(len(e["data"]["pad"]) == pad for e in got)
    await ws.aclose()


def test_web_command_reports_a_busy_port() -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "codeswarm", "web", "--port", str(port), "--router-socket", "/nonexistent"],
            capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2],
        )
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.trio
async def test_batched_frames_carry_many_lines_in_order(nursery: trio.Nursery, web_pair) -> None:
    """`/ws?batch=1` (what the page asks for): the lines of one read share a frame, "\\n"-separated."""
    server, _ = web_pair
    ws = await trio_websocket.connect_websocket(
        nursery, "127.0.0.1", server.port, f"/ws?batch=1&token={server.token}", use_ssl=False,
        extra_headers=[("Origin", server.origin)])
    await ws.send_message(orjson.dumps({"command": "burst", "n": 2000, "pad": 100}).decode())
    lines: list[bytes] = []
    frames = 0
    with trio.fail_after(10):
        while len(lines) < 2000:
            msg = await ws.get_message()
            frames += 1
            assert not msg.startswith("\n") and not msg.endswith("\n")
            lines += [x.encode() for x in msg.split("\n")]
    seqs = [orjson.loads(x)["seq"] for x in lines]
    assert seqs == list(range(seqs[0], seqs[0] + 2000))
    assert frames < 2000  # really batched (one router write of 2,000 lines)
    await ws.aclose()


def _archive_server(tmp_path: Path) -> tuple[WebServer, Path, Path]:
    root = tmp_path / "archives"
    root.mkdir()
    outside = tmp_path / "secret.tar.gz"
    outside.write_bytes(b"not yours")
    (root / "s1_local-1_node_00.tar.gz").write_bytes(bytes(range(256)) * 2000)  # 512 KB, streamed in chunks
    (root / "link_node_01.tar.gz").symlink_to(outside)
    (root / ".hidden.tar.gz").write_bytes(b"x")
    (root / "notes.txt").write_bytes(b"x")
    return WebServer(router_socket=tmp_path / "none.sock", port=0, archive_roots=(root,)), root, outside


@pytest.mark.trio
async def test_archives_are_served_with_the_token_only(nursery: trio.Nursery, tmp_path: Path) -> None:
    server, root, _ = _archive_server(tmp_path)
    await nursery.start(server.serve)
    name = "s1_local-1_node_00.tar.gz"
    status, _, _ = await _http(server, _get(f"/archives/{name}"))
    assert status == 403
    status, _, _ = await _http(server, _get(f"/archives/{name}", cookie="codeswarm_token_1=nope"))
    assert status == 403
    status, headers, body = await _http(server, _get(f"/archives/{name}?token={server.token}"))
    assert status == 200
    assert body == (root / name).read_bytes()
    assert headers["content-length"] == str(len(body))
    assert headers["content-type"] == "application/gzip"
    assert headers["content-disposition"] == f'attachment; filename="{name}"'
    assert "script-src 'self'" in headers["content-security-policy"]
    status, headers, body = await _http(server, f"HEAD /archives/{name}?token={server.token} HTTP/1.1\r\n\r\n".encode())
    assert status == 200 and body == b"" and headers["content-length"] == str(512000)
    status, _, _ = await _http(server, f"POST /archives/{name}?token={server.token} HTTP/1.1\r\n\r\n".encode())
    assert status == 405


@pytest.mark.trio
@pytest.mark.parametrize("name", [
    "link_node_01.tar.gz",  # a symlink to a file outside the archive directory
    ".hidden.tar.gz", "notes.txt", "missing_node_00.tar.gz", "..%2fsecret.tar.gz", "%2e%2e/secret.tar.gz",
    "sub%2fs1_local-1_node_00.tar.gz", "s1_local-1_node_00.tar.gz%00", "", "s1_local-1_node_00.tar.gz/x",
])
async def test_archive_names_outside_the_rules_are_404(nursery: trio.Nursery, tmp_path: Path, name: str) -> None:
    server, _, _ = _archive_server(tmp_path)
    await nursery.start(server.serve)
    status, _, body = await _http(server, _get(f"/archives/{name}?token={server.token}"))
    assert status == 404, body
    assert b"not yours" not in body
