"""`codeswarm router [run|start|stop|status]`: the control-plane daemon."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

import click

from codeswarm.commands.common import BadConfig, handle_errors


@click.command(help="run: in the foreground (default); start: in the background; stop; status.")
@click.argument("action", type=click.Choice(["run", "start", "stop", "status"]), default="run")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="CODESWARM_CONFIG",
              help="Config file (default: the embedded local default).")
@click.option("--state-dir", type=click.Path(file_okay=False), envvar="CODESWARM_HOME", help="State directory.")
@click.option("--tcp", is_flag=True, help="Also listen on 127.0.0.1:8765 for upstream clients "
              "(loopback only; set router.tcp.token in the config to require a token).")
@click.option("--tcp-port", type=click.IntRange(1, 65535), default=None, help="TCP port (implies --tcp).")
@handle_errors
def command(action: str, config_path: str | None, state_dir: str | None, tcp: bool, tcp_port: int | None) -> None:
    from codeswarm.config import load_config
    from codeswarm.paths import lock_path, state_dir as resolve

    config = load_config(config_path)
    sdir = resolve(state_dir or config.router.state_dir)
    port = tcp_port or (config.router.tcp_port if (tcp or config.router.tcp_enabled) else None)
    if action == "run":
        _run(config, sdir, port)
    elif action == "start":
        from codeswarm.client import ensure_router, router_running

        if router_running(sdir):
            click.echo(f"router already running on {sdir}")
            return
        ensure_router(config_path, sdir, tcp_port=port)
        click.echo(f"router started on {sdir}")
    elif action == "status":
        from codeswarm.client import live_holder, router_running, socket_problem
        from codeswarm.paths import socket_path

        if router_running(sdir):
            click.echo(f"running (state dir {sdir})")
            _print_startup_warnings(sdir)
            return
        holder = live_holder(sdir)
        if holder is not None:
            click.echo(f"running as pid {holder} (state dir {sdir}) but unreachable: "
                       f"{socket_problem(socket_path(sdir))}; `codeswarm router stop` stops it by its pid")
        else:
            click.echo(f"not running (state dir {sdir})")
        _print_startup_warnings(sdir)
        sys.exit(1)
    else:
        from codeswarm.client import live_holder, router_running, socket_problem
        from codeswarm.paths import socket_path

        holder = live_holder(sdir)
        if router_running(sdir):
            if holder is not None:  # the lock names the live router even if router.pid was removed
                _stop_pid(holder)
            else:
                _stop(lock_path(sdir))
            return
        if holder is None:
            click.echo("no router is running")
            return
        click.echo(f"the router's socket is unusable ({socket_problem(socket_path(sdir))}); "
                   f"stopping it by its pid {holder}")
        _stop_pid(holder)


def _print_startup_warnings(sdir: Path) -> None:
    """One line per problem the router found when it last started (also sent as router_warning)."""
    from codeswarm.router import startup_warnings

    started, warnings = startup_warnings.read(sdir)
    for message in warnings:
        click.echo(f"warning{f' (start {started})' if started else ''}: {message}")


def _run(config: object, sdir: object, port: int | None) -> None:
    import trio

    from codeswarm.errors import RouterLocked
    from codeswarm.router.server import serve

    logging.basicConfig(level=os.environ.get("CODESWARM_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = config.router  # type: ignore[attr-defined]
    if port is not None and settings.tcp_token is None:
        logging.getLogger("codeswarm.router").warning(
            "TCP listener on %s:%d has no token (router.tcp.token): every local user can steer swarms "
            "within the presets' launch_fields", settings.tcp_host, port)
    try:
        trio.run(serve, config, sdir, port)  # type: ignore[arg-type]
    except RouterLocked as exc:
        raise BadConfig(str(exc)) from None


def _stop(pid_file: object) -> None:
    try:
        pid = int(Path(str(pid_file)).read_text().strip())
    except (OSError, ValueError):
        click.echo("no router is running")
        return
    _stop_pid(pid)


def _stop_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        click.echo("no router is running")
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not _running(pid):
            click.echo(f"router {pid} stopped")
            return
        time.sleep(0.05)
    raise click.ClickException(f"router {pid} did not stop within 15 s")


def _running(pid: int) -> bool:
    """True while the process exists and is not a zombie (its parent may not have reaped it yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
