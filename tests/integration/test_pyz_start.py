"""The .pyz's start-up fast path (scripts/pyz_main.py, issue 13): once shiv has unpacked this build,
a start imports neither shiv's bootstrap nor what it drags in; a first start, or any SHIV_* setting,
still goes through shiv's own bootstrap, which unpacks the archive."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from codeswarm import __version__


def _start(pyz: Path, home: Path, **env: str) -> tuple[str, set[str]]:
    """Run `--version` with a private HOME (so a private ~/.shiv); its output and the modules it imported."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("SHIV_")}
    full.update(HOME=str(home), **env)
    proc = subprocess.run([sys.executable, "-X", "importtime", str(pyz), "--version"], env=full,
                          capture_output=True, text=True, timeout=120, check=True)
    modules = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    return proc.stdout.strip(), modules


def test_a_start_after_the_first_skips_shivs_bootstrap(pyz: Path, tmp_path: Path) -> None:
    out, modules = _start(pyz, tmp_path)
    assert out == f"codeswarm, version {__version__}"
    assert "_bootstrap" in modules, "the first start unpacks through shiv's bootstrap"
    assert list((tmp_path / ".shiv").glob(f"{pyz.name}_*/site-packages/codeswarm/cli.py"))

    out, modules = _start(pyz, tmp_path)
    assert out == f"codeswarm, version {__version__}"
    assert not modules & {"_bootstrap", "compileall", "zipfile", "hashlib", "subprocess", "zlib"}, sorted(modules)


def test_shiv_settings_still_go_through_shivs_bootstrap(pyz: Path, tmp_path: Path) -> None:
    _start(pyz, tmp_path)  # unpacked under ~/.shiv: the fast path would apply
    root = tmp_path / "elsewhere"
    out, modules = _start(pyz, tmp_path, SHIV_ROOT=str(root))
    assert out == f"codeswarm, version {__version__}"
    assert "_bootstrap" in modules
    assert list(root.glob(f"{pyz.name}_*/site-packages/codeswarm/cli.py")), "SHIV_ROOT is honoured"
