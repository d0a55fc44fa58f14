"""`codeswarm doctor`: check what the config needs on this machine and say what to fix.

Checks the Python version, the state dir, the local workspace root, the runtime binaries of every
preset (codex, claude: found, native, pinned version, credentials present) and, for Slurm presets,
the scheduler commands (locally, or over SSH with --ssh) and the shared directories. It never
prints a secret: credentials are reported as present or missing. Exit 0 when nothing failed, else 1.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from codeswarm.commands.common import handle_errors, json_option, print_json

CODEX_VERSION = "0.169.0"
CLAUDE_VERSION = "2.1.197"
SLURM_COMMANDS = ("sbatch", "squeue", "scancel", "sacct", "scontrol")
_MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str | None = None


def codex_path(preset: Any) -> tuple[str | None, str]:
    """The binary a worker of this preset would run (the runtime's own lookup), and where it came from."""
    from codeswarm.worker.runtimes.codex import find_codex, project_codex

    d = preset.defaults
    explicit = d.get("codex_path") or preset.env.get("CODEX_BIN")
    path = find_codex({"codex_path": explicit} if explicit else {})
    if path is None:
        return None, ""
    origin = ("preset" if explicit else "$CODEX_BIN" if os.environ.get("CODEX_BIN") else
              "project install" if path == project_codex() else "PATH")
    return path, origin


def claude_path(preset: Any) -> tuple[str | None, str]:
    from codeswarm.worker.runtimes import claude

    path = claude.resolve_binary(preset.defaults, dict(preset.env))
    if path is None:
        return None, ""
    if preset.defaults.get("claude_cli_path"):
        return path, "preset"
    project = getattr(claude, "project_claude", lambda: None)()
    return path, "project install" if path == project else "$CLAUDE_BIN or PATH"


def _project_claude() -> str | None:
    from codeswarm.paths import self_pyz

    pyz = self_pyz()
    root = Path(os.environ.get("CODESWARM_TOOLS_DIR") or
                (pyz.parent.parent if pyz else Path(__file__).resolve().parents[2]) / ".tools")
    cand = root / f"claude-code-{CLAUDE_VERSION}" / "node_modules" / "@anthropic-ai" / "claude-code" / "bin" / "claude.exe"
    return str(cand) if os.access(cand, os.X_OK) else None


def run_version(path: str) -> tuple[bool, str]:
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, str(exc)
    text = (proc.stdout or proc.stderr).strip().splitlines()
    return proc.returncode == 0, text[0] if text else f"exit code {proc.returncode}"


def check_dir(name: str, path: Path, *, private: bool) -> Check:
    """A directory we must be able to create or write; `private` ones should be 0700."""
    if path.exists():
        if not path.is_dir():
            return Check(name, "fail", f"{path} exists but is not a directory", f"remove or rename {path}")
        if not os.access(path, os.W_OK | os.X_OK):
            return Check(name, "fail", f"{path} is not writable by this user", f"chown/chmod {path}")
        mode = stat.S_IMODE(path.stat().st_mode)
        if private and mode & 0o077:
            return Check(name, "warn", f"{path} has mode {mode:04o}: others can read prompts and events",
                         f"chmod 700 {path}")
        return Check(name, "ok", f"{path} (mode {mode:04o})")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if os.access(parent, os.W_OK | os.X_OK):
        return Check(name, "ok", f"{path} will be created (under {parent})")
    return Check(name, "fail", f"{path} does not exist and {parent} is not writable",
                 f"mkdir -p {path} as a user who may, then chown it to this user")


def check_codex(preset: Any) -> list[Check]:
    d = preset.defaults
    name = f"codex [{preset.id}]"
    path, origin = codex_path(preset)
    if path is None:
        return [Check(name, "fail", "codex binary not found (preset codex_path, $CODEX_BIN, PATH, project install)",
                      "bash scripts/install-codex.sh, or set defaults.codex_path to a native codex binary")]
    out: list[Check] = []
    try:
        with open(path, "rb") as f:
            first = f.readline(200)
        shim = first.startswith(b"#!") and b"node" in first
    except OSError as exc:
        return [Check(name, "fail", f"{path}: {exc.strerror}", "point defaults.codex_path at an existing file")]
    if shim:
        out.append(Check(name, "warn", f"{path} is the Node.js launcher, not the native binary (signals and "
                                       "stop do not reach codex through it)",
                         "use .../@openai/codex-linux-x64/vendor/<triple>/bin/codex (scripts/install-codex.sh prints it)"))
    ok, version = run_version(path)
    if not ok:
        return out + [Check(name, "fail", f"{path} --version failed: {version}", "reinstall: bash scripts/install-codex.sh")]
    if CODEX_VERSION not in version:
        out.append(Check(name, "warn", f"{path} is {version}; Codeswarm is verified with {CODEX_VERSION}",
                         f"CODEX_VERSION={CODEX_VERSION} bash scripts/install-codex.sh"))
    else:
        out.append(Check(name, "ok", f"{version} at {path} ({origin})"))
    out.append(_codex_credentials(preset))
    if (d.get("sandbox_mode") or "workspace-write") != "danger-full-access" and not shutil.which("bwrap"):
        out.append(Check(f"sandbox [{preset.id}]", "ok", "no bwrap on PATH: codex uses its bundled bubblewrap "
                                                         "(needs user namespaces on the nodes)"))
    return out


def _codex_credentials(preset: Any) -> Check:
    d, env = preset.defaults, {**os.environ, **preset.env}
    name = f"codex credentials [{preset.id}]"
    providers = d.get("model_providers") if isinstance(d.get("model_providers"), dict) else {}
    spec = providers.get(d.get("model_provider")) if d.get("model_provider") else None
    if isinstance(spec, dict):
        key = spec.get("env_key")
        if not key or env.get(key):
            return Check(name, "ok", f"provider {d['model_provider']!r}" + (f": ${key} is set" if key else ""))
        return Check(name, "warn", f"provider {d['model_provider']!r} reads ${key}, which is not set here",
                     f"export {key}=... in the router's environment or the preset's env")
    if env.get("OPENAI_API_KEY") or env.get("CODEX_API_KEY"):
        return Check(name, "ok", "an OpenAI API key is set in the environment")
    home = Path(env.get("CODEX_HOME") or Path.home() / ".codex")
    if (home / "auth.json").exists():
        return Check(name, "ok", f"codex login found in {home}")
    return Check(name, "warn", "no OPENAI_API_KEY/CODEX_API_KEY and no codex login on this host",
                 "export OPENAI_API_KEY in the router's environment (or the preset's env), or run `codex login`")


def check_claude(preset: Any) -> list[Check]:
    name = f"claude [{preset.id}]"
    path, origin = claude_path(preset)
    if path is None:
        installed = _project_claude()
        fix = (f"set defaults.claude_cli_path to {installed} (or export CLAUDE_BIN)" if installed else
               "bash scripts/install-claude.sh, then set defaults.claude_cli_path to the path it prints")
        return [Check(name, "fail", "claude binary not found (preset claude_cli_path, $CLAUDE_BIN, PATH)", fix)]
    ok, version = run_version(path)
    if not ok:
        return [Check(name, "fail", f"{path} --version failed: {version}", "reinstall: bash scripts/install-claude.sh")]
    out = [Check(name, "ok", f"{version} at {path} ({origin})") if CLAUDE_VERSION in version else
           Check(name, "warn", f"{path} is {version}; Codeswarm is verified with {CLAUDE_VERSION}",
                 f"CLAUDE_CODE_VERSION={CLAUDE_VERSION} bash scripts/install-claude.sh")]
    env = {**os.environ, **preset.env}
    if env.get("ANTHROPIC_API_KEY") or env.get("ANTHROPIC_AUTH_TOKEN") or env.get("CLAUDE_CODE_OAUTH_TOKEN"):
        out.append(Check(f"claude credentials [{preset.id}]", "ok", "an Anthropic credential is set"))
    else:
        out.append(Check(f"claude credentials [{preset.id}]", "warn", "no ANTHROPIC_API_KEY in the environment",
                         "export ANTHROPIC_API_KEY in the router's environment (or the preset's env)"))
    return out


def check_slurm(profile: Any, use_ssh: bool) -> list[Check]:
    name = f"slurm [{profile.name}]"
    root = profile.workspace_root / profile.cluster_subdir
    if not profile.login_host:
        missing = [c for c in SLURM_COMMANDS if shutil.which(c) is None]
        out = [Check(name, "fail", f"missing on PATH: {', '.join(missing)}",
                     "run the router on a login node, or set login_host to one (SSH)")] if missing else []
        if not missing:
            ok, version = run_version("sbatch")
            out.append(Check(name, "ok" if ok else "warn", f"{version}; {', '.join(SLURM_COMMANDS)} on PATH"))
        return out + [check_dir(f"shared dir [{profile.name}]", root, private=True)]
    if shutil.which("ssh") is None:
        return [Check(name, "fail", f"login_host {profile.login_host!r} needs ssh, which is not on PATH",
                      "apt-get install openssh-client")]
    if not use_ssh:
        return [Check(name, "ok", f"via ssh {profile.login_host} (not contacted; pass --ssh to check it)")]
    probe = "for c in " + " ".join(SLURM_COMMANDS) + "; do command -v $c >/dev/null || echo missing:$c; done; " \
            f"mkdir -p {root} && test -w {root} || echo unwritable"
    try:
        proc = subprocess.run(["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", profile.login_host, probe],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        return [Check(name, "fail", f"ssh {profile.login_host}: {exc}", "check the host name and your SSH keys")]
    if proc.returncode != 0 and not proc.stdout:
        return [Check(name, "fail", f"ssh {profile.login_host} failed: {proc.stderr.strip()[:300]}",
                      "set up key-based SSH (BatchMode) to the login host, e.g. ssh-copy-id")]
    problems = proc.stdout.split()
    if problems:
        return [Check(name, "fail", f"on {profile.login_host}: {' '.join(problems)}",
                      f"load the Slurm module in the login shell, and make {root} writable")]
    return [Check(name, "ok", f"{profile.login_host}: {', '.join(SLURM_COMMANDS)} found, {root} writable")]


def run_checks(config: Any, state_dir: str | None, use_ssh: bool) -> list[Check]:
    from codeswarm.paths import state_dir as resolve_state_dir

    checks = [Check("python", "ok", sys.version.split()[0]) if sys.version_info >= (3, 11) else
              Check("python", "fail", f"Python {sys.version.split()[0]}; Codeswarm needs 3.11+", "install python3.11")]
    checks.append(check_dir("state dir", resolve_state_dir(state_dir or config.router.state_dir), private=True))
    if config.local is not None:
        checks.append(check_dir("local workspace root", config.local.workspace_root, private=True))
    profiles_used: dict[str, Any] = {}
    for preset in config.presets:
        mode = preset.defaults.get("worker_mode") or "codex"
        if mode == "codex":
            checks += check_codex(preset)
        elif mode == "claude":
            checks += check_claude(preset)
        if preset.backend == "slurm":
            profile = config.slurm_profile(preset.cluster_profile)
            profiles_used[profile.name] = profile
    for profile in profiles_used.values():
        checks += check_slurm(profile, use_ssh)
    checks += check_trust_boundary(config)
    return checks


def check_trust_boundary(config: Any) -> list[Check]:
    """docs/RELIABILITY.md "The trust boundary": codex workspace-write may also write /tmp and
    $TMPDIR, so a mailbox below them is writable by agents; a ${VAR} the router lacks fails launches."""
    from codeswarm import secrets_env

    out: list[Check] = []
    writable = [Path("/tmp")] + ([Path(os.environ["TMPDIR"])] if os.environ.get("TMPDIR") else [])
    roots = [("local", config.local.workspace_root)] if config.local is not None else []
    roots += [(f"slurm {p.name}", p.workspace_root) for p in config.slurm_profiles.values()]
    sandboxed = any((p.defaults.get("worker_mode") or "codex") == "codex"
                    and (p.defaults.get("sandbox_mode") or "workspace-write") == "workspace-write" for p in config.presets)
    for name, root in roots:
        inside = next((w for w in writable if _is_under(root, w)), None)
        if sandboxed and inside is not None:
            out.append(Check(f"mailbox outside the sandbox [{name}]", "warn",
                             f"workspace root {root} is under {inside}, which codex workspace-write lets agents write",
                             "set the workspace root outside /tmp and $TMPDIR"))
    for p in config.presets:
        missing = sorted(v for v in secrets_env.references(p.env) if v not in os.environ)
        if missing:
            out.append(Check(f"env [{p.id}]", "warn", "not set in this environment: " + ", ".join(missing),
                             "export them where the router starts, or launches of this preset fail"))
    return out


def _is_under(path: Path, parent: Path) -> bool:
    try:
        return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(parent))
    except OSError:
        return False


@click.command(help="Check runtime binaries, Slurm commands and directories for a config; say what to fix.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="CODESWARM_CONFIG",
              help="Config file (default: $CODESWARM_CONFIG, else the embedded local default).")
@click.option("--state-dir", type=click.Path(file_okay=False), envvar="CODESWARM_HOME",
              help="Router state directory (default: the platform's user state dir).")
@click.option("--ssh", "use_ssh", is_flag=True, help="Also contact Slurm login hosts over SSH.")
@json_option
@handle_errors
def command(config_path: str | None, state_dir: str | None, use_ssh: bool, as_json: bool) -> None:
    from codeswarm.config import load_config

    config = load_config(config_path)
    checks = run_checks(config, state_dir, use_ssh)
    failed = [c for c in checks if c.status == "fail"]
    warned = [c for c in checks if c.status == "warn"]
    if as_json:
        print_json({"ok": not failed, "checks": [asdict(c) for c in checks]})
    else:
        click.echo(f"config: {config.path or 'embedded local default'}")
        for c in checks:
            click.echo(f"{_MARK[c.status]}  {c.name}: {c.detail}")
            if c.fix and c.status != "ok":
                click.echo(f"      fix: {c.fix}")
        click.echo(f"{len(failed)} problem(s), {len(warned)} warning(s)")
    sys.exit(1 if failed else 0)
