"""`codeswarm web`: serve the control page and its WebSocket bridge, starting the router if needed."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click


@click.command("web")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, envvar="CODESWARM_CONFIG",
              help="Router config file (used when the router has to be started).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Keep it on loopback: the token is the only protection.")
@click.option("--port", default=8766, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on; 0 picks a free one.")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None, envvar="CODESWARM_HOME",
              help="Router state directory (default: CODESWARM_HOME or the platform's).")
@click.option("--router-socket", type=click.Path(dir_okay=False), default=None, hidden=True,
              help="Bridge to this router socket as is, without starting a router (tests).")
def command(
    config_path: str | None, host: str, port: int, open_browser: bool, state_dir: str | None,
    router_socket: str | None,
) -> None:
    """Serve the web control page on HOST:PORT and print its URL (with the access token)."""
    import trio

    from codeswarm.router.web import WebServer

    if router_socket:
        sock = Path(router_socket)
    else:
        from codeswarm.client import ensure_router
        from codeswarm.errors import CodeswarmError

        try:
            sock = ensure_router(config_path, Path(state_dir) if state_dir else None)
        except CodeswarmError as exc:
            raise click.ClickException(str(exc)) from exc
        # A router we autostarted is our child; we never wait for it, so let the kernel reap it
        # when it exits (otherwise it lingers as a zombie and `router stop` thinks it still runs).
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)

    server = WebServer(router_socket=Path(sock), host=host, port=port,
                       archive_roots=archive_roots(config_path, state_dir))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            # One line on stdout, flushed: scripts and tests read the URL from it.
            click.echo(server.url)
            sys.stdout.flush()
            click.echo(f"codeswarm web: serving on {server.origin}, router socket {sock}; Ctrl-C to stop",
                       err=True)
            if open_browser:
                import webbrowser

                await trio.to_thread.run_sync(webbrowser.open, server.url)

    failure: list[OSError] = []
    try:
        trio.run(main)
    except* KeyboardInterrupt:
        pass
    except* OSError as group:
        failure.extend(e for e in group.exceptions if isinstance(e, OSError))
    if failure:
        exc = failure[0]
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def archive_roots(config_path: str | None, state_dir_opt: str | None) -> tuple[Path, ...]:
    """Where the router writes workspace archives (router.archive_root): the configured
    download_archive_root, and the state dir's archives/ (the default)."""
    from codeswarm.config import ConfigError, load_config
    from codeswarm.paths import state_dir

    roots = [state_dir(state_dir_opt) / "archives"]
    try:
        configured = load_config(config_path).router.download_archive_root if config_path else None
    except ConfigError as exc:
        click.echo(f"codeswarm web: archive downloads only from {roots[0]} ({exc})", err=True)
        configured = None
    if configured:
        roots.insert(0, Path(configured).expanduser().absolute())
    return tuple(roots)
