"""Where things live: the state dir, the control socket, and how to start this program again."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import codeswarm


def state_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The router's state dir: --state-dir, else CODESWARM_HOME, else the platform's user state dir."""
    if override:
        return Path(override).expanduser().absolute()
    env = os.environ.get("CODESWARM_HOME")
    if env:
        return Path(env).expanduser().absolute()
    import platformdirs  # imported lazily: the CLI's start-up time matters

    return Path(platformdirs.user_state_path("codeswarm"))


def ensure_state_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def socket_path(sdir: Path) -> Path:
    return sdir / "router.sock"


def lock_path(sdir: Path) -> Path:
    return sdir / "router.pid"


def self_pyz() -> Path | None:
    """The .pyz this process runs from, or None when running from a source tree."""
    candidate = Path(sys.argv[0]).absolute() if sys.argv and sys.argv[0] else None
    if candidate and candidate.suffix == ".pyz" and candidate.is_file():
        return candidate
    pkg = Path(codeswarm.__file__).absolute()
    for parent in pkg.parents:
        if parent.suffix == ".pyz" and parent.is_file():
            return parent
    return None


def self_command() -> list[str]:
    """argv prefix that runs this same program: `python3 codeswarm.pyz` or `python3 -m codeswarm`."""
    pyz = self_pyz()
    if pyz is not None:
        return [sys.executable, str(pyz)]
    return [sys.executable, "-m", "codeswarm"]


def self_env() -> dict[str, str]:
    """Environment additions so that self_command() finds the package when run from source."""
    if self_pyz() is not None:
        return {}
    src = str(Path(codeswarm.__file__).absolute().parent.parent)
    existing = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": src if not existing else f"{src}{os.pathsep}{existing}"}


def local_worker_command() -> tuple[list[str], dict[str, str]]:
    """(argv, env additions) that start a worker on this host from this very code.

    From a .pyz: the router's own unpacked copy (shiv's cache dir) with -S, not the .pyz again:
    shiv's bootstrap (zipfile, hashlib -> libcrypto, compileall ...) and the interpreter's site hooks
    would add ~8 MB to every idle worker, and a .pyz rebuilt under a running router would start
    workers of another version. From a source tree: `python -m codeswarm` with PYTHONPATH."""
    if self_pyz() is not None:
        unpacked = str(Path(codeswarm.__file__).absolute().parent.parent)
        return [sys.executable, "-S", "-m", "codeswarm", "worker"], {"PYTHONPATH": unpacked}
    return [*self_command(), "worker"], self_env()
