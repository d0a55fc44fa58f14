"""`codeswarm worker`: the per-node worker (the provider starts it; not for interactive use)."""

from __future__ import annotations

import sys

import click


@click.command(help="Run one node's worker. Configured by CODESWARM_* environment variables.")
def command() -> None:
    from codeswarm.worker.start import main

    sys.exit(main())
