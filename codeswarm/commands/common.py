"""Options, connection and error handling shared by the client commands."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable

import click
import orjson

from codeswarm.errors import CommandTooLarge, ConfigError, RouterUnavailable

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_REJECTED, EXIT_TIMEOUT, EXIT_PARTIAL = 0, 1, 2, 3, 4, 5
MAX_INLINE_PROMPT = 128 << 10  # a longer --prompt goes through --prompt-file or stdin (argv limits, ps)


class Rejected(click.ClickException):
    exit_code = EXIT_REJECTED


class TimedOut(click.ClickException):
    exit_code = EXIT_TIMEOUT


class Unavailable(click.ClickException):
    exit_code = EXIT_ERROR


class BadConfig(click.ClickException):
    exit_code = EXIT_USAGE


def prompt_options(f: Callable[..., Any], *, required: bool = True, what: str = "Prompt text") -> Callable[..., Any]:
    """--prompt TEXT (`-` reads stdin) and --prompt-file FILE; resolve them with read_prompt."""
    f = click.option("--prompt-file", type=click.Path(dir_okay=False), default=None,
                     help=f"{what} from a UTF-8 file (for long prompts).")(f)
    return click.option("--prompt", default=None,
                        help=f"{what} ('-' reads stdin; over 128 KiB use --prompt-file)." +
                        ("" if required else " Optional."))(f)


def read_prompt(prompt: str | None, prompt_file: str | None, *, required: bool = True) -> str:
    """The prompt of --prompt/--prompt-file/stdin, checked: UTF-8, inline at most 128 KiB."""
    if prompt is not None and prompt_file is not None:
        raise click.UsageError("give --prompt or --prompt-file, not both")
    if prompt_file is not None:
        return read_text_file(prompt_file, "--prompt-file")
    if prompt == "-":
        data = sys.stdin.buffer.read()
        return _decode(data, "stdin", "--prompt -")
    if prompt is None:
        if required:
            raise click.UsageError("missing --prompt TEXT (or --prompt-file FILE, or --prompt - for stdin)")
        return ""
    if len(prompt.encode("utf-8", "surrogatepass")) > MAX_INLINE_PROMPT:
        raise click.UsageError(f"--prompt is longer than {MAX_INLINE_PROMPT // 1024} KiB: pass it with "
                               "--prompt-file FILE or --prompt - (stdin)")
    return prompt


def read_text_file(path: str, option: str) -> str:
    """A UTF-8 text file named on the command line; a clear usage error otherwise."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise click.BadParameter(f"{path}: {exc.strerror or exc}", param_hint=option) from None
    return _decode(data, path, option)


def _decode(data: bytes, name: str, option: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise click.BadParameter(f"{name} is not valid UTF-8 (byte {exc.start}: {data[exc.start:exc.start + 1]!r})",
                                 param_hint=option) from None


def config_option(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--state-dir", type=click.Path(file_okay=False), envvar="CODESWARM_HOME",
                     help="Router state directory (default: the platform's user state dir).")(f)
    f = click.option("--no-autostart", is_flag=True, help="Fail instead of starting a router when none runs.")(f)
    return click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="CODESWARM_CONFIG",
                        help="Config file (default: $CODESWARM_CONFIG, else the embedded local default).")(f)


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output for jq.")(f)


def handle_errors(f: Callable[..., Any]) -> Callable[..., Any]:
    """Turn Codeswarm errors into messages and the documented exit codes."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except ConfigError as exc:
            raise BadConfig(str(exc)) from None
        except CommandTooLarge as exc:
            raise click.UsageError(str(exc)) from None
        except RouterUnavailable as exc:
            raise Unavailable(str(exc)) from None
        except TimeoutError as exc:
            raise TimedOut(str(exc) or "timed out") from None
        except BrokenPipeError:
            sys.exit(EXIT_OK)

    return wrapper


def connect(config_path: str | None, state_dir: str | None, no_autostart: bool, timeout: float | None = None) -> Any:
    """Validate the config, make sure a router runs, and return a connected Client."""
    from codeswarm.client import Client, ensure_router
    from codeswarm.config import load_config
    from codeswarm.paths import state_dir as resolve_state_dir

    from codeswarm.errors import RouterUnavailable
    from codeswarm.paths import socket_path

    load_config(config_path)  # a broken config is a usage error here, not a router failure
    sdir = resolve_state_dir(state_dir)
    try:  # the common case: a router is listening; no extra round trip
        return Client(socket_path(sdir), timeout=timeout)
    except RouterUnavailable:
        sock = ensure_router(config_path, sdir, autostart=not no_autostart)
    return Client(Path(sock), timeout=timeout)


def rejected_message(env: dict[str, Any]) -> str:
    data = env.get("data") or {}
    code = data.get("code")
    return f"rejected: {data.get('reason')}" + (f" ({code})" if code else "")


def expect(env: dict[str, Any], *names: str) -> dict[str, Any]:
    """Return the event's data if it is one of `names`; raise Rejected for command_rejected."""
    if env.get("event") == "command_rejected":
        raise Rejected(rejected_message(env))
    if env.get("event") not in names:
        raise click.ClickException(f"unexpected answer from the router: {env.get('event')}")
    return env.get("data") or {}


def print_json(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj).decode() + "\n")
    sys.stdout.flush()
