"""The program's entry point (console script, `python -m codeswarm`, the .pyz).

`codeswarm worker` runs on every node for the life of the swarm, so it skips click (~5 MB and
~40 ms): the worker takes no options, its configuration is the environment."""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] == ["worker"]:
        from codeswarm.worker.start import main as worker_main

        sys.exit(worker_main())
    from codeswarm.cli import main as cli_main

    cli_main()
