"""Preset and profile `env` values (API keys) on their way to the workers (issue 12, finding 11).

Values may reference the router's own environment as `${VAR}`; an unset VAR fails the launch
naming it. Variables named CODESWARM_* are the router's settings for the worker and are public;
every other `env` value is treated as a secret: it is never written into a batch script, a swarm
file, an event or a log. The Slurm provider hands secrets to each worker in one 0600 file per node
(`<cluster_root>/secrets/<swarm_id>/<node>.json`, directory 0700); the worker reads its file, deletes
it at once, and exports the values to its runtime. The local provider passes them in the worker
process's environment (never on disk).

Runs in the router (expand, write) and in the worker (take); stdlib + orjson only.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path

import orjson

from codeswarm.errors import CodeswarmError

PUBLIC_PREFIX = "CODESWARM_"
SECRETS_DIR_ENV = "CODESWARM_SECRETS_DIR"
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class MissingVariable(CodeswarmError, ValueError):
    """A `${VAR}` reference to a variable the router's environment does not have."""


def is_public(name: str) -> bool:
    return name.startswith(PUBLIC_PREFIX)


def references(env: Mapping[str, str]) -> set[str]:
    """Every VAR named as ${VAR} in the values."""
    return {m.group(1) for v in env.values() for m in _REF.finditer(v)}


def expand(env: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """Replace ${VAR} by the router's value; MissingVariable names the key and the variable."""
    out: dict[str, str] = {}
    for key, value in env.items():
        def sub(m: re.Match[str], key: str = key) -> str:
            var = m.group(1)
            if var not in environ:
                raise MissingVariable(f"env {key}: ${{{var}}} is not set in the router's environment")
            return environ[var]

        out[key] = _REF.sub(sub, value)
    return out


def split(env: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(public CODESWARM_* settings, secret values)."""
    public = {k: v for k, v in env.items() if is_public(k)}
    return public, {k: v for k, v in env.items() if not is_public(k)}


def worker_env_parts(profile_env: Mapping[str, str], runtime_env: Mapping[str, str], launch_env: Mapping[str, str],
                     environ: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(public, secret) worker env of a Slurm launch.

    profile_env: the cluster profile's settings (CODESWARM_PYTHON, PATH, ...), public unless a value
    references ${VAR}; runtime_env: what the provider itself adds (PYTHONPATH from a source tree),
    public; launch_env: the preset's env plus the router's CODESWARM_* settings: CODESWARM_* public,
    everything else secret. Later parts win on a name clash, as before.
    """
    public: dict[str, str] = {}
    secret: dict[str, str] = {}
    expanded = expand(profile_env, environ)
    for k, v in profile_env.items():
        (secret if _REF.search(v) else public)[k] = expanded[k]
    public.update(runtime_env)
    for k, v in expand(launch_env, environ).items():
        public.pop(k, None)
        secret.pop(k, None)
        (public if is_public(k) else secret)[k] = v
    return public, secret


def scrubbed_environ(environ: Mapping[str, str], secret_values: Mapping[str, str], refs: set[str]) -> dict[str, str]:
    """The environment for sbatch: sbatch exports its own environment into the job (slurmctld keeps it
    in its spool), so every variable a secret came from, or holding a secret value, is left out."""
    values = {v for v in secret_values.values() if v}
    return {k: v for k, v in environ.items() if k not in refs and k not in secret_values and v not in values}


def node_file(directory: Path, node_id: int) -> Path:
    return directory / f"{node_id}.json"


def write_node_files(directory: Path, node_count: int, secrets: Mapping[str, str]) -> None:
    """One 0600 file per node in a fresh 0700 directory (created here; it must not exist)."""
    directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.mkdir(mode=0o700)
    data = orjson.dumps(dict(secrets))
    for node_id in range(node_count):
        fd = os.open(node_file(directory, node_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)


def write_node_file(directory: Path, node_id: int, secrets: Mapping[str, str]) -> None:
    """One node's file again, for a worker the restart policy starts anew (issue 12 #9)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = node_file(directory, node_id)
    tmp = directory / f".{node_id}.json.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, orjson.dumps(dict(secrets)))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def remove_dir(directory: Path) -> None:
    """Remove what no worker took (a job cancelled before its workers ran)."""
    shutil.rmtree(directory, ignore_errors=True)


def take_node_file(directory: Path, node_id: int) -> dict[str, str]:
    """Worker side: read this node's file, delete it, and the directory once it is empty.

    Refuses a symlink, a non-regular file, a file of another user or one others can read: the
    values are then not used, and the caller reports why (OSError/ValueError).
    """
    path = node_file(directory, node_id)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise ValueError(f"{path}: not a private regular file of this user (refused)")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read()
    finally:
        os.close(fd)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    try:
        os.rmdir(directory)  # the last worker to read removes the directory
    except OSError:
        pass
    obj = orjson.loads(data)
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in obj.items()):
        raise ValueError(f"{path}: not an object of strings")
    return obj


def take_into_environ(node_id: int) -> str | None:
    """Move this node's secret file (directory named by $CODESWARM_SECRETS_DIR) into os.environ,
    so the runtime and its subprocesses inherit the values. Returns what went wrong, or None."""
    directory = os.environ.pop(SECRETS_DIR_ENV, None)
    if not directory:
        return None
    try:
        values = take_node_file(Path(directory), node_id)
    except (OSError, ValueError) as exc:  # the message names the file, never a value
        return f"worker env file unusable, the preset's env is missing: {exc}"
    os.environ.update(values)
    return None
