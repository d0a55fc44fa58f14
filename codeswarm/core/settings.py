"""The settings the core's decisions read (a pure subset of config.RouterSettings)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any

from codeswarm.spend.budget import DEFAULT_WARN_FRACTION
from codeswarm.spend.pricing import PricingCatalog


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
    queue_max_items_per_swarm: int = 1000
    # spend (config `model_pricing` and `budget`, docs/SPEND.md)
    pricing: PricingCatalog = field(default_factory=PricingCatalog.build)
    budget_warn_fraction: Decimal = DEFAULT_WARN_FRACTION
    default_swarm_budget_usd: Decimal | None = None
    default_project_budget_usd: Decimal | None = None

    @classmethod
    def of(cls, settings: Any, **extra: Any) -> "CoreSettings":
        """Pick the fields from any object that has them (config.RouterSettings), plus `extra`."""
        picked = {f.name: getattr(settings, f.name) for f in fields(cls) if hasattr(settings, f.name)}
        return cls(**{**picked, **extra})
