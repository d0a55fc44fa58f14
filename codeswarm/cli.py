"""The `codeswarm` command group. Each command lives in codeswarm/commands/<name>.py and is
imported only when it runs, so `codeswarm list` stays fast.

Exit codes: 0 ok; 1 router unavailable or unexpected error; 2 usage or config error;
3 rejected by the router; 4 timeout; 5 partial failure (some target nodes failed).
"""

from __future__ import annotations

import importlib
import sys

import click

from codeswarm import __version__

COMMANDS = {
    "launch": "Launch a swarm of N nodes.",
    "inject": "Send a prompt to all or some nodes of a swarm.",
    "enqueue": "Queue a prompt for a swarm (idle node, all, or some nodes).",
    "queue": "Show queued prompts.",
    "list": "List swarms.",
    "status": "Show one swarm and its nodes.",
    "terminate": "Terminate a swarm.",
    "events": "Print events (NDJSON with --json), optionally following.",
    "approve": "Answer a pending approval of a node.",
    "approvals": "Show the approvals waiting for an answer.",
    "spend": "Dollars and tokens per model and per node.",
    "budget": "Show or set a swarm's spend budget.",
    "providers": "List launch providers (presets) of the router's config.",
    "router": "Run, start, stop or inspect the router daemon.",
    "worker": "Run one node's worker (started by the router's provider).",
    "web": "Serve the web control plane.",
    "doctor": "Check runtimes, Slurm commands and directories.",
    "project": "Orchestrated projects: task graphs run by swarms on git branches.",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        try:
            module = importlib.import_module(f"codeswarm.commands.{name}")
        except ImportError as exc:
            # The command exists (it is listed): a failed import is a broken install or build, and
            # "No such command" would send the user looking for a typo.
            raise click.ClickException(
                f"cannot load the `{name}` command: {type(exc).__name__}: {exc} "
                "(a broken install or build: reinstall, or rebuild dist/codeswarm.pyz with ./build.sh)"
            ) from exc
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, help_ in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, help="""Codeswarm: run swarms of AI coding agents on Slurm or this machine.


Exit codes: 0 ok; 1 router unavailable or unexpected error; 2 usage or config
error; 3 rejected by the router; 4 timeout; 5 partial failure.""")
@click.version_option(__version__, prog_name="codeswarm")
def cli() -> None:
    pass


def non_utf8_argument(argv: list[str]) -> int | None:
    """Index of the first argument that is not valid UTF-8 (Python keeps its bytes as surrogates)."""
    for i, arg in enumerate(argv):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            return i
    return None


def main() -> None:
    bad = non_utf8_argument(sys.argv[1:])
    if bad is not None:
        shown = sys.argv[1 + bad].encode("utf-8", "surrogateescape")[:60]
        click.echo(f"Error: argument {bad + 1} is not valid UTF-8: {shown!r}; the router's protocol is UTF-8 "
                   "(pass such content with --prompt-file after converting it)", err=True)
        sys.exit(2)
    cli()


if __name__ == "__main__":  # pragma: no cover
    main()
