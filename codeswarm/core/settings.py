"""The settings the core's decisions read (a pure subset of config.RouterSettings)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class CoreSettings:
    inject_timeout_seconds: float = 60
    terminated_ttl_seconds: float = 900
    max_terminated_swarms: int = 100
    job_gone_confirmations: int = 3
    job_gone_window_seconds: float = 30
    worker_heartbeat_timeout_seconds: float = 60
    worker_start_timeout_seconds: float = 300
    approval_timeout_seconds: float = 3600

    @classmethod
    def of(cls, settings: Any) -> "CoreSettings":
        """Pick the fields from any object that has them (config.RouterSettings)."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls) if hasattr(settings, f.name)})
