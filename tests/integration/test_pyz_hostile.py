"""Review of the .pyz fast start (scripts/pyz_main.py) against a hostile or unlucky machine, through the
real .pyz: concurrent first starts, a first start killed while unpacking, and an unpack directory that
another user can write (planted code must never run)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from codeswarm import __version__

VERSION = f"codeswarm, version {__version__}"
NOBODY = 65534


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIV_")}
    env["HOME"] = str(home)
    return env


def _version(pyz: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(pyz), "--version"], env=_env(home), capture_output=True, text=True,
                          timeout=120)


def _unpack_dir(pyz: Path, home: Path) -> Path:
    with zipfile.ZipFile(pyz) as z:
        build_id = json.loads(z.read("environment.json"))["build_id"]
    return home / ".shiv" / f"{pyz.resolve().name}_{build_id}"


def test_concurrent_first_starts_all_run_the_build(pyz: Path, tmp_path: Path) -> None:
    procs = [subprocess.Popen([sys.executable, str(pyz), "--version"], env=_env(tmp_path), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [(p.returncode, o.strip()) for p, (o, _) in zip(procs, outs)] == [(0, VERSION)] * 4, outs
    assert (_unpack_dir(pyz, tmp_path) / "site-packages" / "codeswarm" / "cli.py").is_file()


def test_a_first_start_killed_while_unpacking_leaves_nothing_a_later_start_trusts(pyz: Path, tmp_path: Path) -> None:
    target = _unpack_dir(pyz, tmp_path)
    partial = target.with_name(target.name + ".tmp")
    proc = subprocess.Popen([sys.executable, str(pyz), "--version"], env=_env(tmp_path), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60  # the unpack's progress is only visible on disk: watch it
        while not (partial / "site-packages" / "codeswarm").exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "the first start never began to unpack"
            time.sleep(0.002)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    if target.exists():
        pytest.skip("the unpack finished before the kill (machine too fast to catch it)")
    run = _version(pyz, tmp_path)
    assert (run.returncode, run.stdout.strip()) == (0, VERSION), run.stderr
    assert not partial.exists() and (target / "site-packages" / "codeswarm" / "cli.py").is_file()
    again = _version(pyz, tmp_path)  # the fast path now, on the completed unpack
    assert (again.returncode, again.stdout.strip()) == (0, VERSION), again.stderr


def _plant(site_packages: Path) -> None:
    pkg = site_packages / "codeswarm"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "entry.py").write_text("def main():\n    print('PLANTED')\n    return 0\n")


@pytest.mark.parametrize("how", ["owned by another user", "writable by others"])
def test_an_unpack_directory_another_user_can_write_is_never_run(pyz: Path, tmp_path: Path, how: str) -> None:
    """~/.shiv/<pyz>_<build id> is a fixed, public path (the build id is in the .pyz): whoever can write
    there before the first start, or into it after, chooses the code every later start runs."""
    if os.geteuid() != 0 and how == "owned by another user":
        pytest.skip("needs root to give the directory to another user")
    home = tmp_path / "home"
    home.mkdir()
    target = _unpack_dir(pyz, home)
    _plant(target / "site-packages")
    for d in (target.parent, target, target / "site-packages"):
        if how == "owned by another user":
            os.chown(d, NOBODY, NOBODY)
        else:
            d.chmod(0o777 if d == target.parent else 0o775)
    run = _version(pyz, home)
    assert "PLANTED" not in run.stdout
    assert run.returncode == 2 and "refusing to run code from" in run.stderr, (run.returncode, run.stdout, run.stderr)
    assert str(target.parent) in run.stderr  # names what to remove (the first directory that is not the user's)
    for d in (target.parent, target, target / "site-packages"):  # once it is the user's own again, it runs
        os.chown(d, os.geteuid(), os.getegid())
        d.chmod(0o755)
    ok = _version(pyz, home)
    assert (ok.returncode, ok.stdout.strip()) == (0, "PLANTED"), "the refusal was for the ownership, nothing else"


def test_an_unpack_made_under_umask_002_still_runs(pyz: Path, tmp_path: Path) -> None:
    """User private groups (umask 002) leave the unpack group-writable by the user's own group: that is no
    other user, so the fast start must not refuse it."""
    runs = [subprocess.run([sys.executable, str(pyz), "--version"], env=_env(tmp_path), capture_output=True,
                           text=True, timeout=120, preexec_fn=lambda: os.umask(0o002)) for _ in range(2)]
    assert [(r.returncode, r.stdout.strip()) for r in runs] == [(0, VERSION)] * 2, [r.stderr for r in runs]
    assert _unpack_dir(pyz, tmp_path).stat().st_mode & 0o020, "the umask applied (else this test shows nothing)"


def test_under_a_shiv_root_a_planted_unpack_is_refused_and_a_sticky_shared_root_works(pyz: Path, tmp_path: Path) -> None:
    """SHIV_ROOT moves the unpack (a root the user chose, e.g. a shared sticky directory like /tmp): what
    is unpacked there is checked the same way; the chosen root itself may be shared."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    env = {**_env(tmp_path / "home"), "SHIV_ROOT": str(shared)}
    ok = subprocess.run([sys.executable, str(pyz), "--version"], env=env, capture_output=True, text=True, timeout=120)
    assert (ok.returncode, ok.stdout.strip()) == (0, VERSION), ok.stderr
    target = shared / _unpack_dir(pyz, tmp_path).name
    assert (target / "site-packages" / "codeswarm" / "cli.py").is_file()
    for d in (target, target / "site-packages"):
        d.chmod(0o777)  # as if another user had made it (or could swap it)
    bad = subprocess.run([sys.executable, str(pyz), "--version"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and f"refusing to run code from {target}" in bad.stderr, bad.stderr
