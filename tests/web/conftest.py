"""Fixtures for the web tests.

- FakeRouter / web_pair: a WebServer bridged to a tiny stand-in router (JSON lines in, JSON lines
  out) on a temp Unix socket. It answers every command with one `echo` event and remembers the raw
  lines it got, so tests can check that the bridge relays unchanged; `hangup` closes the
  connection as a router going away would, `burst` sends many lines in one write.
- browser / open_page: headless Debian Chromium through Playwright (scripts/install-browser.sh);
  every page records console errors and uncaught exceptions.
- web: `codeswarm web` from the real .pyz on a free port, its router autostarted on the `cs`
  fixture's private state dir (tests/conftest.py), which also cleans up router and workers by PID.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
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
                    if isinstance(obj, dict) and obj.get("command") == "burst":
                        # Many lines in one write, as a busy router sends them.
                        lines = []
                        for _ in range(int(obj.get("n", 1))):
                            self.seq += 1
                            lines.append(orjson.dumps({"type": "event", "event": "burst", "seq": self.seq,
                                                       "data": {"pad": "x" * int(obj.get("pad", 10))}}))
                        await stream.send_all(b"\n".join(lines) + b"\n")
                        continue
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


# ---------------------------------------------------------------------- browser tests

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
WEB_OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "web"


@pytest.fixture(scope="session")
def browser() -> Any:
    """Headless Debian Chromium driven by Playwright (scripts/install-browser.sh installs both)."""
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _missing("the playwright package (run scripts/install-browser.sh)")
    # expect()'s 5 s default is short for a loaded machine; some modules raise it themselves, and
    # it is global, so without this a module's waits would depend on which module ran first
    expect.set_options(timeout=30_000)
    if not Path(CHROMIUM).exists():
        _missing(f"{CHROMIUM} (run scripts/install-browser.sh)")
    with sync_playwright() as pw:
        # launch() gives every browser a fresh temporary user-data-dir.
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        yield b
        b.close()


def _missing(what: str) -> None:
    if os.environ.get("CI") or os.environ.get("CODESWARM_TEST_STRICT"):
        pytest.fail(f"browser tests need {what}")
    pytest.skip(f"browser tests need {what}")


class PageErrors:
    """Console errors and uncaught exceptions of one page; tests assert it stays empty."""

    def __init__(self, page: Any) -> None:
        self.items: list[str] = []
        page.on("console", lambda m: self.items.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.items.append(f"pageerror: {e}"))


@pytest.fixture
def open_page(browser: Any) -> Any:
    """open_page(url, width, height) -> (page, errors); contexts are closed at teardown."""
    contexts = []

    def _open(url: str | None = None, width: int = 1280, height: int = 800) -> tuple[Any, PageErrors]:
        ctx = browser.new_context(viewport={"width": width, "height": height})
        ctx.set_default_timeout(30_000)
        contexts.append(ctx)
        page = ctx.new_page()
        errors = PageErrors(page)
        if url:
            page.goto(url)
        return page, errors

    yield _open
    for ctx in contexts:
        ctx.close()


@pytest.fixture(scope="session")
def web_output() -> Path:
    WEB_OUTPUT.mkdir(parents=True, exist_ok=True)
    return WEB_OUTPUT


class WebProcess:
    """`codeswarm web` from the real .pyz; the router it autostarts belongs to the `cs` handle."""

    def __init__(self, cs: Any) -> None:
        self.cs = cs
        self.proc = subprocess.Popen(
            [sys.executable, str(cs.pyz), "web", "--port", "0", "--config", str(cs.config_path)],
            env=cs.env, cwd=cs.tmp, stdout=subprocess.PIPE, stderr=open(cs.tmp / "web.log", "wb"),
            text=True, start_new_session=True,
        )
        line = _readline(self.proc, timeout=60)
        assert line.startswith("http://127.0.0.1:") and "?token=" in line, line
        self.url = line
        self.origin, _, query = line.partition("/?")
        self.token = query.split("=", 1)[1]
        self.port = int(self.origin.rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append(proc.stdout.readline() if proc.stdout else ""), daemon=True)
    t.start()
    t.join(timeout)
    if not box:
        proc.kill()
        raise AssertionError(f"`codeswarm web` printed no URL within {timeout}s")
    return box[0].strip()


@pytest.fixture
def web(cs: Any) -> Any:
    """`codeswarm web` on a free port, with its router autostarted on the test's private state dir."""
    w = WebProcess(cs)
    yield w
    w.stop()
