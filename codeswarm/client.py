"""A small synchronous client of the router socket, for the CLI and scripts.

It must not import trio: `codeswarm list` is judged by its start-up time.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from codeswarm.errors import CommandTooLarge, RouterUnavailable
from codeswarm.paths import ensure_state_dir, self_command, self_env, socket_path, state_dir
from codeswarm.protocol import MAX_LINE_BYTES, make_command

if TYPE_CHECKING:
    import subprocess

AUTOSTART_TIMEOUT = 20.0


class Client:
    def __init__(self, path: Path, *, timeout: float | None = None) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(str(path))
        except OSError as exc:
            self.sock.close()
            raise RouterUnavailable(f"no router answers on {path}: {exc.strerror or exc}") from None
        self.sock.settimeout(timeout)
        self._buf = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def send(self, command: str, payload: dict[str, Any] | None = None, request_id: str | None = None) -> str:
        rid = request_id or str(uuid.uuid4())
        line = orjson.dumps(make_command(command, payload or {}, rid))
        if len(line) > MAX_LINE_BYTES:  # the router would drop it with a line_too_long nobody waits for
            raise CommandTooLarge(f"the {command} command is {len(line):,} bytes; the router takes at most "
                                  f"{MAX_LINE_BYTES:,} bytes per command (prompt, AGENTS.md and skills together)")
        self.sock.sendall(line + b"\n")
        return rid

    def events(self, deadline: float | None = None) -> Iterator[dict[str, Any]]:
        """Yield envelopes as they arrive; raise TimeoutError past the deadline (monotonic)."""
        while True:
            nl = self._buf.find(b"\n")
            while nl >= 0:
                line, self._buf = self._buf[:nl], self._buf[nl + 1 :]
                if line.strip():
                    try:
                        yield orjson.loads(line)
                    except orjson.JSONDecodeError:
                        pass
                nl = self._buf.find(b"\n")
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("timed out waiting for the router")
                self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                raise TimeoutError("timed out waiting for the router") from None
            if not data:
                raise RouterUnavailable("the router closed the connection")
            self._buf += data

    def request(self, command: str, payload: dict[str, Any] | None = None, timeout: float = 30.0) -> dict[str, Any]:
        """Send a command and return the first event carrying its request_id."""
        rid = self.send(command, payload)
        deadline = time.monotonic() + timeout
        for env in self.events(deadline):
            if (env.get("data") or {}).get("request_id") == rid or is_connection_rejection(env):
                return env
        raise RouterUnavailable("the router closed the connection")  # pragma: no cover


def is_connection_rejection(env: dict[str, Any]) -> bool:
    """A directed command_rejected without a request_id (line_too_long, invalid_json, unauthorized):
    the router could not tell which command it refused, so it is the answer to the one we sent."""
    data = env.get("data") or {}
    return env.get("event") == "command_rejected" and bool(env.get("directed")) and data.get("request_id") is None


def router_running(sdir: Path) -> bool:
    try:
        with Client(socket_path(sdir), timeout=5) as c:
            c.request("ping", timeout=5)
        return True
    except (RouterUnavailable, TimeoutError, OSError):
        return False


def socket_problem(path: Path) -> str:
    """What is wrong with the control socket path, in words, when no router answers on it."""
    import stat

    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return f"{path} is missing"
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    if stat.S_ISSOCK(mode):
        return f"{path} does not answer"
    kind = "a directory" if stat.S_ISDIR(mode) else "a symlink" if stat.S_ISLNK(mode) else \
        "a regular file" if stat.S_ISREG(mode) else "not a socket"
    return f"{path} is {kind}, not a socket"


def live_holder(sdir: Path) -> int | None:
    """PID of a router that holds the state dir's lock (alive even if its socket is broken)."""
    from codeswarm.router.statelock import lock_holder

    return lock_holder(sdir)


def start_router(config_path: str | None, sdir: Path, *, tcp_port: int | None = None) -> subprocess.Popen[bytes]:
    """Start `codeswarm router run` detached (own session), logging to <state_dir>/router.log."""
    try:  # a read-only or full state dir is a clear error, not a traceback
        ensure_state_dir(sdir)
        log_file = open(sdir / "router.log", "ab")
    except OSError as exc:
        raise RouterUnavailable(f"cannot use the state dir {sdir}: {exc.strerror or exc}") from None
    import subprocess  # here: only a CLI call that starts the router pays for it (`list` is timed)
    import threading

    argv = [*self_command(), "router", "run", "--state-dir", str(sdir)]
    if config_path:
        argv += ["--config", str(Path(config_path).absolute())]
    if tcp_port is not None:
        argv += ["--tcp", "--tcp-port", str(tcp_port)]
    with log_file as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, env={**os.environ, **self_env()}, close_fds=True)
    # A long-running caller (codeswarm web) must reap the router when it exits, or it stays a zombie.
    threading.Thread(target=proc.wait, daemon=True).start()
    return proc


def ensure_router(config_path: str | None, sdir: Path | None = None, *, autostart: bool = True,
                  tcp_port: int | None = None) -> Path:
    """Return the socket path of a running router, starting one if needed."""
    sdir = sdir or state_dir()
    if router_running(sdir):
        return socket_path(sdir)
    holder = live_holder(sdir)
    if holder is not None:  # a second router would only fail on the lock: say what is wrong instead
        raise RouterUnavailable(f"the router (pid {holder}) holds {sdir} but its socket is unusable: "
                                f"{socket_problem(socket_path(sdir))}; stop it with `codeswarm router stop`")
    if not autostart:
        raise RouterUnavailable(f"no router is running on {sdir} (start one with `codeswarm router start`)")
    problem = socket_problem(socket_path(sdir))
    if problem.endswith("not a socket"):  # the router would fail to bind there: say so now
        raise RouterUnavailable(f"cannot start a router: {problem}; remove it (the router creates its socket there)")
    proc = start_router(config_path, sdir, tcp_port=tcp_port)
    deadline = time.monotonic() + AUTOSTART_TIMEOUT
    while time.monotonic() < deadline:
        if router_running(sdir):
            return socket_path(sdir)
        if proc.poll() is not None and not router_running(sdir):
            # it may have lost the lock race to another router that is now starting
            tail = _tail(sdir / "router.log")
            if "another router" not in tail:
                raise RouterUnavailable(f"the router failed to start: {tail.strip()[-500:]}")
        time.sleep(0.05)
    raise RouterUnavailable(f"the router did not answer within {AUTOSTART_TIMEOUT:g} s (see {sdir / 'router.log'})")


def _tail(path: Path) -> str:
    try:
        return path.read_bytes()[-2000:].decode(errors="replace")
    except OSError:
        return ""
