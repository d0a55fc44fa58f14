"""Load and validate configs/*.json into typed, frozen records (PROTOCOL.md section 9).

Every problem raises ConfigError naming the file, the key and what to do. Unknown keys are ignored.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from codeswarm.errors import ConfigError, InvalidParam
from codeswarm.launch_policy import field_problems
from codeswarm.spend.budget import DEFAULT_WARN_FRACTION, parse_budget
from codeswarm.spend.pricing import PricingCatalog, parse_model_pricing

WORKER_MODES = ("codex", "claude", "mock")
APPROVAL_POLICIES = ("never", "on-failure", "on-request", "untrusted")
SANDBOX_MODES = ("danger-full-access", "workspace-write", "read-only")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TIME_LIMIT = re.compile(r"^(\d+-)?\d{1,3}:\d{2}:\d{2}$")


@dataclass(frozen=True)
class RouterSettings:
    inject_timeout_seconds: float = 60
    terminated_ttl_seconds: float = 900
    max_terminated_swarms: int = 100
    poll_interval_seconds: float = 0.5
    status_poll_interval_seconds: float = 15
    job_gone_confirmations: int = 3
    job_gone_window_seconds: float = 30
    worker_heartbeat_timeout_seconds: float = 60
    worker_start_timeout_seconds: float = 300
    approval_timeout_seconds: float = 3600
    graceful_terminate_timeout_seconds: float = 300
    local_graceful_terminate_timeout_seconds: float = 20
    download_archive_root: str | None = None
    event_log_max_events: int = 200_000
    event_log_segment_events: int = 50_000
    event_log_max_age_seconds: float = 0  # 0: prune by count only
    idempotency_ttl_seconds: float = 86_400
    queue_max_items_per_swarm: int = 1000  # issue 12 #7: one more is rejected with queue_full
    include_raw: bool = False
    mailbox_watch: str = "auto"  # "poll": never inotify on outboxes (codeswarm/fswatch.py)
    state_dir: str | None = None
    tcp_enabled: bool = False
    tcp_host: str = "127.0.0.1"
    tcp_port: int = 8765
    tcp_token: str | None = None  # when set, a TCP connection's first command must carry it (auth_token)


@dataclass(frozen=True)
class LocalCluster:
    workspace_root: Path
    default_sandbox_mode: str = "workspace-write"


@dataclass(frozen=True)
class SlurmProfile:
    name: str
    workspace_root: Path
    cluster_subdir: str
    partition: str
    time_limit: str
    login_host: str = ""
    account: str | None = None
    qos: str | None = None
    ssh_retry_attempts: int = 4
    ssh_retry_delay_seconds: float = 1.5
    sbatch_extra: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Preset:
    id: str
    label: str
    backend: str
    cluster_profile: str | None
    defaults: dict[str, Any]
    launch_fields: list[dict[str, Any]]
    launch_panels: list[Any]
    launch_soft_timeout_seconds: float | None
    launch_hard_timeout_seconds: float | None
    env: dict[str, str] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """The preset as `providers_list` shows it."""
        return {
            "id": self.id,
            "label": self.label,
            "backend": self.backend,
            "cluster_profile": self.cluster_profile,
            "defaults": self.defaults,
            "launch_fields": self.launch_fields,
            "launch_panels": self.launch_panels,
            "launch_soft_timeout_seconds": self.launch_soft_timeout_seconds,
            "launch_hard_timeout_seconds": self.launch_hard_timeout_seconds,
            "disabled": False,
            "disabled_reason": None,
        }


@dataclass(frozen=True)
class BudgetDefaults:
    """The config's `budget` section (docs/SPEND.md): defaults for swarms and projects launched
    without a budget of their own, and where the warning fires."""

    swarm_usd: Decimal | None = None
    project_usd: Decimal | None = None
    warn_fraction: Decimal = DEFAULT_WARN_FRACTION


@dataclass(frozen=True)
class Config:
    path: Path | None
    router: RouterSettings
    local: LocalCluster | None
    slurm_profiles: dict[str, SlurmProfile]
    presets: list[Preset]
    pricing: PricingCatalog = field(default_factory=PricingCatalog.build)
    budget: BudgetDefaults = field(default_factory=BudgetDefaults)

    def preset(self, preset_id: str | None) -> Preset | None:
        if preset_id is None:
            return self.presets[0] if self.presets else None
        return next((p for p in self.presets if p.id == preset_id), None)

    def slurm_profile(self, name: str | None) -> SlurmProfile:
        if name and name in self.slurm_profiles:
            return self.slurm_profiles[name]
        if "default" in self.slurm_profiles:
            return self.slurm_profiles["default"]
        return next(iter(self.slurm_profiles.values()))


DEFAULT_LOCAL_CONFIG: dict[str, Any] = {
    "cluster": {"local": {"workspace_root": "runs", "default_sandbox_mode": "workspace-write"}},
    "router": {"inject_timeout_seconds": 60, "terminated_ttl_seconds": 900, "poll_interval_seconds": 0.5},
    "launch_providers": [
        {
            "id": "local-mock",
            "label": "Local (mock agent)",
            "backend": "local",
            "defaults": {"worker_mode": "mock", "approval_policy": "never", "mock_delay_ms": 50},
            "launch_soft_timeout_seconds": 30,
            "launch_hard_timeout_seconds": 120,
        }
    ],
}


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Load a config file; None means the embedded default (local provider, mock runtime)."""
    if path is None:
        return parse_config(DEFAULT_LOCAL_CONFIG, None, base_dir=Path.cwd())
    p = Path(path).expanduser()
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found (pass --config with an existing file)") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file: {exc.strerror}") from None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{p}: not valid JSON: {exc}") from None
    return parse_config(obj, p, base_dir=Path.cwd())


def parse_config(obj: Any, path: Path | None, *, base_dir: Path) -> Config:
    where = str(path) if path else "<embedded default config>"
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: the top level must be a JSON object")
    cluster = _obj(obj, "cluster", where, required=True)
    router = _router_settings(_obj(obj, "router", where), where)
    local = _local_cluster(cluster, where, base_dir)
    profiles = _slurm_profiles(cluster, where)
    if local is None and not profiles:
        raise ConfigError(f"{where}: cluster: configure 'local' or 'slurm' (see configs/local.json)")
    presets = _presets(obj, where, local, profiles)
    pricing = PricingCatalog.build(parse_model_pricing(obj.get("model_pricing"), where))
    return Config(path=path, router=router, local=local, slurm_profiles=profiles, presets=presets,
                  pricing=pricing, budget=_budget_defaults(_obj(obj, "budget", where), where))


_BUDGET_KEYS = ("default_swarm_usd", "default_project_usd", "warn_fraction")


def _budget_defaults(b: dict[str, Any], where: str) -> BudgetDefaults:
    w = f"{where}: budget"
    unknown = sorted(set(b) - set(_BUDGET_KEYS))
    if unknown:
        raise ConfigError(f"{w}: unknown key '{unknown[0]}' (known: {', '.join(_BUDGET_KEYS)})")
    try:
        swarm = parse_budget(b.get("default_swarm_usd"), "default_swarm_usd")
        project = parse_budget(b.get("default_project_usd"), "default_project_usd")
    except InvalidParam as exc:
        raise ConfigError(f"{w}: '{exc.key}' {exc.problem}") from None
    frac = b.get("warn_fraction", 0.8)
    if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 < frac <= 1:
        raise ConfigError(f"{w}: 'warn_fraction' must be a number in (0, 1], got {frac!r}")
    return BudgetDefaults(swarm, project, Decimal(repr(float(frac))))


def _obj(parent: dict[str, Any], key: str, where: str, *, required: bool = False) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{where}: missing required key '{key}'")
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: '{key}' must be an object")
    return value


MAX_SECONDS = 10 * 365 * 86_400  # beyond this a setting is a typo (and trio deadlines overflow)

# Router settings: (minimum, integer). A minimum keeps a typo from spinning a CPU (poll 1e-9) or
# flapping every node (heartbeat 0); 0 where 0 has a documented meaning ("off", "at once").
_ROUTER_BOUNDS: dict[str, tuple[float, bool]] = {
    "inject_timeout_seconds": (1, False),
    "terminated_ttl_seconds": (0, False),
    "max_terminated_swarms": (0, True),
    "poll_interval_seconds": (0.01, False),
    "status_poll_interval_seconds": (0.1, False),
    "job_gone_confirmations": (1, True),
    "job_gone_window_seconds": (0, False),
    "worker_heartbeat_timeout_seconds": (1, False),
    "worker_start_timeout_seconds": (1, False),
    "approval_timeout_seconds": (0, False),
    "graceful_terminate_timeout_seconds": (0, False),
    "local_graceful_terminate_timeout_seconds": (0, False),
    "event_log_max_events": (1, True),
    "event_log_segment_events": (1, True),
    "event_log_max_age_seconds": (0, False),
    "idempotency_ttl_seconds": (0, False),
    "queue_max_items_per_swarm": (1, True),
}
LOOPBACK_NAMES = ("localhost",)
MIN_TCP_TOKEN = 16


def _number(d: dict[str, Any], key: str, default: Any, where: str, *, integer: bool = False,
            minimum: float = 0, maximum: float = MAX_SECONDS) -> Any:
    value = d.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{where}: '{key}' must be {kind}, got {value!r}")
    if value < 0 and minimum >= 0:
        raise ConfigError(f"{where}: '{key}' must not be negative")
    if value < minimum:
        raise ConfigError(f"{where}: '{key}' must be at least {minimum:g}, got {value!r}")
    if value > maximum:
        raise ConfigError(f"{where}: '{key}' must be at most {maximum:g}, got {value!r}")
    return value


def _bool(d: dict[str, Any], key: str, default: bool, where: str) -> bool:
    value = d.get(key, default)
    if not isinstance(value, bool):  # bool("false") is True: a string is an error, never truthy
        raise ConfigError(f"{where}: '{key}' must be true or false, got {value!r}")
    return value


def is_loopback_host(host: str) -> bool:
    import ipaddress

    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _router_settings(r: dict[str, Any], where: str) -> RouterSettings:
    kwargs: dict[str, Any] = {}
    w = f"{where}: router"
    defaults = RouterSettings()
    for name, (minimum, integer) in _ROUTER_BOUNDS.items():
        kwargs[name] = _number(r, name, getattr(defaults, name), w, integer=integer, minimum=minimum)
    if kwargs["poll_interval_seconds"] <= 0:
        raise ConfigError(f"{w}: 'poll_interval_seconds' must be > 0")
    for name in ("download_archive_root", "state_dir"):
        value = r.get(name)
        if value is not None and (not isinstance(value, str) or not value or "\0" in value):
            raise ConfigError(f"{w}: '{name}' must be a string path")
        kwargs[name] = value
    kwargs["include_raw"] = _bool(r, "include_raw", False, w)
    watch = r.get("mailbox_watch", "auto")
    if watch not in ("auto", "poll"):
        raise ConfigError(f"{w}: 'mailbox_watch' must be \"auto\" (inotify where the filesystem is local, "
                          f"polling elsewhere) or \"poll\" (always poll), got {watch!r}")
    kwargs["mailbox_watch"] = watch
    tcp = r.get("tcp")
    if tcp is None:
        tcp = {}
    if not isinstance(tcp, dict):
        raise ConfigError(f"{w}: 'tcp' must be an object")
    wt = f"{w}.tcp"
    kwargs["tcp_enabled"] = _bool(tcp, "enabled", False, wt)
    host = tcp.get("host", "127.0.0.1")
    if not isinstance(host, str) or not is_loopback_host(host):
        raise ConfigError(f"{wt}: 'host' must be a loopback address (127.0.0.1, ::1 or localhost), got {host!r}: "
                          "the TCP listener is for clients on this machine only")
    kwargs["tcp_host"] = host
    kwargs["tcp_port"] = _number(tcp, "port", 8765, wt, integer=True, minimum=1, maximum=65535)
    token = tcp.get("token")
    if token is not None and (not isinstance(token, str) or len(token) < MIN_TCP_TOKEN
                              or not token.isascii() or not token.isprintable() or " " in token):
        raise ConfigError(f"{wt}: 'token' must be a string of at least {MIN_TCP_TOKEN} printable ASCII "
                          "characters without spaces (e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe())'`)")
    kwargs["tcp_token"] = token
    return RouterSettings(**kwargs)


def _local_cluster(cluster: dict[str, Any], where: str, base_dir: Path) -> LocalCluster | None:
    if "local" not in cluster and cluster.get("backend") != "local":
        return None
    section = cluster.get("local") if "local" in cluster else cluster
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: cluster.local must be an object")
    root = section.get("workspace_root", "runs")
    if not isinstance(root, str) or not root:
        raise ConfigError(f"{where}: cluster.local.workspace_root must be a non-empty string")
    sandbox = section.get("default_sandbox_mode", "workspace-write")
    if sandbox not in SANDBOX_MODES:
        raise ConfigError(f"{where}: cluster.local.default_sandbox_mode must be one of {', '.join(SANDBOX_MODES)}")
    root_path = Path(root).expanduser()
    if not root_path.is_absolute():
        root_path = base_dir / root_path
    return LocalCluster(workspace_root=root_path, default_sandbox_mode=sandbox)


def _slurm_profiles(cluster: dict[str, Any], where: str) -> dict[str, SlurmProfile]:
    if "slurm" in cluster:
        section = cluster["slurm"]
        if not isinstance(section, dict):
            raise ConfigError(f"{where}: cluster.slurm must be an object")
    elif cluster.get("backend") == "slurm":  # legacy flat form: one profile named default
        section = {"profiles": {"default": {k: v for k, v in cluster.items() if k != "backend"}}}
    else:
        return {}
    shared = {k: v for k, v in section.items() if k != "profiles"}
    raw_profiles = section.get("profiles")
    if raw_profiles is None:
        raw_profiles = {"default": {}}
    if not isinstance(raw_profiles, dict) or not raw_profiles:
        raise ConfigError(f"{where}: cluster.slurm.profiles must be a non-empty object")
    out: dict[str, SlurmProfile] = {}
    for name, prof in raw_profiles.items():
        if not isinstance(prof, dict):
            raise ConfigError(f"{where}: cluster.slurm.profiles.{name} must be an object")
        merged = {**shared, **prof}
        w = f"{where}: cluster.slurm.profiles.{name}"
        for key in ("workspace_root", "cluster_subdir", "partition", "time_limit"):
            if not isinstance(merged.get(key), str) or not merged.get(key):
                raise ConfigError(f"{w}: missing required key '{key}'")
        if not Path(merged["workspace_root"]).is_absolute():
            raise ConfigError(f"{w}: workspace_root must be an absolute path on the shared filesystem")
        if not _TIME_LIMIT.match(merged["time_limit"]):
            raise ConfigError(f"{w}: time_limit must look like HH:MM:SS")
        extra = merged.get("sbatch_extra", [])
        if not isinstance(extra, list) or not all(isinstance(x, str) for x in extra):
            raise ConfigError(f"{w}: sbatch_extra must be a list of strings")
        env = _env(merged, w)
        for key in ("login_host", "account", "qos"):
            if merged.get(key) is not None and not isinstance(merged[key], str):
                raise ConfigError(f"{w}: '{key}' must be a string or null")
        out[name] = SlurmProfile(
            name=name,
            workspace_root=Path(merged["workspace_root"]),
            cluster_subdir=merged["cluster_subdir"],
            partition=merged["partition"],
            time_limit=merged["time_limit"],
            login_host=str(merged.get("login_host") or ""),
            account=merged.get("account") or None,
            qos=merged.get("qos") or None,
            ssh_retry_attempts=int(_number(merged, "ssh_retry_attempts", 4, w, integer=True, minimum=1, maximum=100)),
            ssh_retry_delay_seconds=float(_number(merged, "ssh_retry_delay_seconds", 1.5, w)),
            sbatch_extra=tuple(extra),
            env=dict(env),
        )
    return out


MAX_RESTARTS = 100


def validate_params(params: dict[str, Any], where: str) -> dict[str, Any]:
    """Check the known provider_params keys; raise InvalidParam on a bad one."""
    checks = {
        "worker_mode": WORKER_MODES,
        "approval_policy": APPROVAL_POLICIES,
        "sandbox_mode": SANDBOX_MODES,
    }
    for key, allowed in checks.items():
        if key in params and params[key] is not None and params[key] not in allowed:
            raise InvalidParam(key, f"must be one of {', '.join(allowed)}")
    if params.get("mailbox_watch") not in (None, "auto", "poll"):
        raise InvalidParam("mailbox_watch", "must be auto (inotify on local filesystems) or poll")
    for key in ("native_auto_approve", "fresh_thread_per_injection"):
        if key in params and not isinstance(params[key], bool):
            raise InvalidParam(key, "must be true or false")
    if "mock_delay_ms" in params:
        v = params["mock_delay_ms"]
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise InvalidParam("mock_delay_ms", "must be a non-negative integer")
    # The restart policy of dead workers (issue 12 #9): off unless "on-failure".
    if "restart" in params and params["restart"] not in (None, "no", "on-failure"):
        raise InvalidParam("restart", "must be no or on-failure")
    if "restart_max" in params:
        v = params["restart_max"]
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_RESTARTS:
            raise InvalidParam("restart_max", f"must be an integer from 0 to {MAX_RESTARTS}")
    if "restart_backoff_seconds" in params:
        v = params["restart_backoff_seconds"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 3600:
            raise InvalidParam("restart_backoff_seconds", "must be a number of seconds from 0 to 3600")
    if "time_limit" in params and (not isinstance(params["time_limit"], str) or not _TIME_LIMIT.match(params["time_limit"])):
        raise InvalidParam("time_limit", "must look like HH:MM:SS")
    if "budget_usd" in params:
        parse_budget(params["budget_usd"])  # raises InvalidParam
    for key in ("partition", "account", "qos", "model", "claude_model", "claude_cli_path", "codex_path",
                "pricing_model"):
        if key in params and params[key] is not None and not isinstance(params[key], str):
            raise InvalidParam(key, "must be a string")
    return params


def _presets(
    obj: dict[str, Any], where: str, local: LocalCluster | None, profiles: dict[str, SlurmProfile]
) -> list[Preset]:
    raw = obj.get("launch_providers")
    if raw is None:
        raw = []
        if local is not None:
            raw.append({"id": "local", "backend": "local", "defaults": {"worker_mode": "mock"}})
        if profiles:
            raw.append({"id": "slurm", "backend": "slurm"})
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}: launch_providers must be a non-empty array")
    seen: set[str] = set()
    out: list[Preset] = []
    for i, p in enumerate(raw):
        w = f"{where}: launch_providers[{i}]"
        if not isinstance(p, dict):
            raise ConfigError(f"{w} must be an object")
        pid = p.get("id")
        if not isinstance(pid, str) or not pid:
            raise ConfigError(f"{w}: 'id' must be a non-empty string")
        if pid in seen:
            raise ConfigError(f"{w}: duplicate id '{pid}'")
        seen.add(pid)
        backend = p.get("backend")
        if backend not in ("local", "slurm"):
            raise ConfigError(f"{w}: 'backend' must be 'local' or 'slurm'")
        if backend == "local" and local is None:
            raise ConfigError(f"{w}: backend 'local' but cluster.local is not configured")
        if backend == "slurm" and not profiles:
            raise ConfigError(f"{w}: backend 'slurm' but cluster.slurm is not configured")
        profile = p.get("cluster_profile", p.get("cluster_config"))
        if profile is not None and not isinstance(profile, str):
            raise ConfigError(f"{w}: 'cluster_profile' must be a string")
        if profile is not None and backend == "slurm" and profile not in profiles:
            raise ConfigError(f"{w}: cluster_profile '{profile}' is not in cluster.slurm.profiles")
        defaults = p.get("defaults", {})
        if not isinstance(defaults, dict):
            raise ConfigError(f"{w}: 'defaults' must be an object")
        try:
            validate_params(defaults, w)
        except InvalidParam as exc:
            raise ConfigError(f"{w}: defaults.{exc.key} {exc.problem}") from None
        fields = p.get("launch_fields")
        if fields is None:
            fields = _builtin_fields(backend)
        if not isinstance(fields, list):
            raise ConfigError(f"{w}: 'launch_fields' must be an array")
        problem = field_problems(fields)
        if problem:
            raise ConfigError(f"{w}: {problem}")
        env = _env(p, w)
        panels = p.get("launch_panels") or []
        if not isinstance(panels, list):
            raise ConfigError(f"{w}: 'launch_panels' must be an array")
        out.append(
            Preset(
                id=pid,
                label=str(p.get("label") or pid),
                backend=backend,
                cluster_profile=profile,
                defaults=dict(defaults),
                launch_fields=fields,
                launch_panels=list(panels),
                launch_soft_timeout_seconds=_number(p, "launch_soft_timeout_seconds", None, w),
                launch_hard_timeout_seconds=_number(p, "launch_hard_timeout_seconds", None, w),
                env=dict(env),
            )
        )
    return out


def _env(section: dict[str, Any], w: str) -> dict[str, str]:
    """An `env` object: variable names, string values (`${VAR}` is expanded at launch, not here)."""
    env = section.get("env", {})
    if env is None:
        return {}
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise ConfigError(f"{w}: 'env' must be an object of strings")
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise ConfigError(f"{w}: env: {name!r} is not a valid environment variable name")
        if "\0" in value:
            raise ConfigError(f"{w}: env.{name}: the value contains a NUL byte")
    return dict(env)


def _builtin_fields(backend: str) -> list[dict[str, Any]]:
    """Fields a preset without launch_fields offers: scheduler settings only. The runtime, its binary
    and its policies come from the preset's defaults unless the preset lists them as fields."""
    fields: list[dict[str, Any]] = []
    if backend == "slurm":
        fields += [
            {"key": "partition", "label": "Partition", "type": "text", "default": None, "required": False},
            {"key": "time_limit", "label": "Time limit", "type": "text", "default": None,
             "required": False, "placeholder": "HH:MM:SS"},
        ]
    return fields
