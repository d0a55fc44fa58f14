"""Budgets: which budget events a new spend total crosses. Pure.

A budget has two marks: the warning (80 % by default, `budget.warn_fraction` in the config) and the
limit. Each is announced once (`budget_warning`, `budget_exceeded`); raising the budget re-arms the
marks the spend is now below.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Mapping

from codeswarm.errors import InvalidParam

DEFAULT_WARN_FRACTION = Decimal("0.8")
MAX_BUDGET_USD = 1_000_000_000  # a bound that catches a typo'd exponent, far above any real fleet


@dataclass(frozen=True)
class BudgetState:
    budget_usd: Decimal | None = None
    warned: bool = False
    exceeded: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"budget_usd": None if self.budget_usd is None else float(self.budget_usd),
                "budget_warned": self.warned, "budget_exceeded": self.exceeded}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "BudgetState":
        b = d.get("budget_usd")
        return cls(None if b is None else Decimal(repr(float(b))), bool(d.get("budget_warned")),
                   bool(d.get("budget_exceeded")))


def crossings(state: BudgetState, spent: Decimal, warn_fraction: Decimal = DEFAULT_WARN_FRACTION) -> list[str]:
    """The events `spent` triggers now: budget_warning and/or budget_exceeded, each at most once."""
    if state.budget_usd is None:
        return []
    out = []
    if not state.warned and spent >= state.budget_usd * warn_fraction:
        out.append("budget_warning")
    if not state.exceeded and spent >= state.budget_usd:
        out.append("budget_exceeded")
    return out


def after_event(state: BudgetState, name: str) -> BudgetState:
    """The state after a logged budget_warning / budget_exceeded."""
    if name == "budget_warning":
        return BudgetState(state.budget_usd, True, state.exceeded)
    if name == "budget_exceeded":
        return BudgetState(state.budget_usd, True, True)
    return state


def with_budget(budget_usd: Decimal | None, spent: Decimal,
                warn_fraction: Decimal = DEFAULT_WARN_FRACTION) -> BudgetState:
    """A new budget: the marks already behind the spend stay announced, the others re-arm."""
    if budget_usd is None:
        return BudgetState()
    return BudgetState(budget_usd, spent >= budget_usd * warn_fraction, spent >= budget_usd)


def parse_budget(value: Any, key: str = "budget_usd") -> Decimal | None:
    """A budget from a payload or config: a number > 0 (USD) or null. Raises InvalidParam(key, problem)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidParam(key, f"must be a number of US dollars, got {_shown(value)}")
    if not value > 0 or value > MAX_BUDGET_USD:
        raise InvalidParam(key, f"must be > 0 and at most {MAX_BUDGET_USD} (US dollars), got {_shown(value)}")
    return Decimal(repr(float(value)))


def _shown(value: Any) -> str:
    """The bad value as an error shows it: a 1 MiB string is not repeated back whole."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def percent(spent: Decimal, state: BudgetState) -> float | None:
    if state.budget_usd is None:
        return None
    return float((spent / state.budget_usd * 100).quantize(Decimal("0.1")))


def launch_budget(params: Mapping[str, Any], default: Decimal | None) -> float | None:
    """A new swarm's budget: its launch `budget_usd` (validated by the shell), else the config default."""
    b = params.get("budget_usd")
    if isinstance(b, (int, float)) and not isinstance(b, bool):
        return float(b)
    return None if default is None else float(default)
