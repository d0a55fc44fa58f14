"""Token prices: the `model_pricing` catalog and the dollar cost of a token count.

The config format is the reference Codeswarm's, so its configs load unchanged:
`{"MODEL": {"input_tokens_usd_per_m", "cached_input_tokens_usd_per_m", "output_tokens_usd_per_m",
"reasoning_output_tokens_usd_per_m"}}`, USD per million tokens. Two optional keys of ours price
prompt-cache writes (Anthropic bills them above the input rate): `cache_write_input_tokens_usd_per_m`
and `cache_write_1h_input_tokens_usd_per_m`.

How a count is priced (the runtimes' own conventions, PROTOCOL.md 5.5):
- `input_tokens` includes the cached reads and the cache writes: the rest is billed at the input rate,
  reads at the cached rate, writes at the cache-write rate (default: 1.25x input for Claude models,
  2x for 1-hour writes, as Anthropic bills them; the input rate for the others);
- `output_tokens` includes the reasoning tokens and is billed at the output rate; the reasoning rate
  is added on top for reasoning tokens (0 in every shipped entry, as in the reference).
Money is Decimal here; callers round at the edge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping

from codeswarm.errors import ConfigError

MILLION = Decimal(1_000_000)
REQUIRED_KEYS = ("input_tokens_usd_per_m", "output_tokens_usd_per_m")
OPTIONAL_KEYS = (
    "cached_input_tokens_usd_per_m",
    "reasoning_output_tokens_usd_per_m",
    "cache_write_input_tokens_usd_per_m",
    "cache_write_1h_input_tokens_usd_per_m",
)
_ANTHROPIC_WRITE_5M = Decimal("1.25")
_ANTHROPIC_WRITE_1H = Decimal(2)

# Small and sourced: gpt-5.4 is the reference router's built-in default; the Claude entries are the
# reference's configs/local.json; `mock` (the offline runtime) is priced like gpt-5.4 so a mock swarm's
# spend looks like a codex run's. A config's `model_pricing` overrides these per model.
BUILTIN_MODEL_PRICING: dict[str, dict[str, float]] = {
    "gpt-5.4": {"input_tokens_usd_per_m": 2.5, "cached_input_tokens_usd_per_m": 0.25,
                "output_tokens_usd_per_m": 15.0, "reasoning_output_tokens_usd_per_m": 0.0},
    "Claude-Sonnet-4.5": {"input_tokens_usd_per_m": 3.0, "cached_input_tokens_usd_per_m": 0.3,
                          "output_tokens_usd_per_m": 15.0, "reasoning_output_tokens_usd_per_m": 0.0},
    "Claude-Opus-4.5": {"input_tokens_usd_per_m": 15.0, "cached_input_tokens_usd_per_m": 1.5,
                        "output_tokens_usd_per_m": 75.0, "reasoning_output_tokens_usd_per_m": 0.0},
    "Claude-Haiku-4.5": {"input_tokens_usd_per_m": 1.0, "cached_input_tokens_usd_per_m": 0.1,
                         "output_tokens_usd_per_m": 5.0, "reasoning_output_tokens_usd_per_m": 0.0},
    "mock": {"input_tokens_usd_per_m": 2.5, "cached_input_tokens_usd_per_m": 0.25,
             "output_tokens_usd_per_m": 15.0, "reasoning_output_tokens_usd_per_m": 0.0},
}
# The model a runtime runs when the launch names none (codex: the reference's default).
RUNTIME_DEFAULT_MODEL = {"codex": "gpt-5.4", "mock": "mock"}
MIXED = "mixed"


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens."""

    name: str
    input: Decimal
    cached_input: Decimal
    output: Decimal
    reasoning_output: Decimal
    cache_write: Decimal
    cache_write_1h: Decimal


@dataclass(frozen=True)
class TokenCounts:
    """Tokens of one or more model calls. `cached_input` and the cache writes are parts of `input`;
    `reasoning_output` is part of `output`; `cache_write_1h` is part of `cache_write`."""

    input: int = 0
    cached_input: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0
    output: int = 0
    reasoning_output: int = 0

    @property
    def total(self) -> int:
        return self.input + self.output

    def __add__(self, other: "TokenCounts") -> "TokenCounts":
        return TokenCounts(self.input + other.input, self.cached_input + other.cached_input,
                           self.cache_write + other.cache_write, self.cache_write_1h + other.cache_write_1h,
                           self.output + other.output, self.reasoning_output + other.reasoning_output)

    def as_tuple(self) -> tuple[int, ...]:
        return (self.input, self.cached_input, self.cache_write, self.cache_write_1h, self.output,
                self.reasoning_output)

    def to_json(self) -> dict[str, int]:
        return {"input_tokens": self.input, "cached_input_tokens": self.cached_input,
                "cache_write_input_tokens": self.cache_write, "cache_write_1h_input_tokens": self.cache_write_1h,
                "output_tokens": self.output, "reasoning_output_tokens": self.reasoning_output,
                "total_tokens": self.total}

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None, prefix: str = "") -> "TokenCounts":
        """Read `<prefix>input_tokens` etc.; a missing, null or invalid counter is 0."""
        return cls(*counts(d, prefix)) if d else cls()


def counts(d: Mapping[str, Any] | None, prefix: str = "") -> tuple[int, ...]:
    """TokenCounts.from_json(d, prefix) as a plain tuple (as_tuple's order): the usage hot path
    works on these (a frozen dataclass costs a setattr per field to build)."""
    if not d:
        return _ZEROS
    keys = _PREFIXED_KEYS.get(prefix)
    if keys is None:
        keys = _PREFIXED_KEYS[prefix] = tuple(prefix + key for key in _COUNT_KEYS)
    # _count inlined: JSON gives int, bool, float...
    return tuple([v if type(v) is int and v > 0 else 0 for v in map(d.get, keys)])


_COUNT_KEYS = ("input_tokens", "cached_input_tokens", "cache_write_input_tokens", "cache_write_1h_input_tokens",
               "output_tokens", "reasoning_output_tokens")


_PREFIXED_KEYS: dict[str, tuple[str, ...]] = {}  # prefix -> _COUNT_KEYS with it (a few fixed prefixes)
_ZEROS = (0,) * len(_COUNT_KEYS)


def cost_usd(tokens: TokenCounts, price: ModelPrice) -> Decimal:
    """The list-price cost of `tokens` (inconsistent parts are clamped, never negative)."""
    return cost_of_counts(tokens.as_tuple(), price)


def cost_of_counts(tokens: tuple[int, ...], price: ModelPrice) -> Decimal:
    """cost_usd of TokenCounts(*tokens)."""
    inp, cached_input, cache_write, cache_write_1h, output, reasoning_output = tokens
    write_1h = min(cache_write_1h, cache_write)
    write_5m = cache_write - write_1h
    plain_input = max(0, inp - cached_input - cache_write)
    total = (
        plain_input * price.input
        + cached_input * price.cached_input
        + write_5m * price.cache_write
        + write_1h * price.cache_write_1h
        + output * price.output
        + reasoning_output * price.reasoning_output
    )
    return total / MILLION


def model_key(name: str) -> str:
    """`Claude-Sonnet-4.5`, `claude-sonnet-4-5` and `claude_sonnet_4.5` are one model."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


_UNSEEN = object()
_MEMO_NAMES = 256
_SUFFIXES = (re.compile(r"\[[^\]]*\]$"), re.compile(r"-\d{8}$"))  # `[1m]` context tag, `-20250929` snapshot date


@dataclass(frozen=True)
class PricingCatalog:
    entries: Mapping[str, ModelPrice]  # by model_key
    # lookup's answers by the name asked (every usage event asks; model_key is a regex): a memo, not
    # state, bounded because a worker names the model
    _found: dict[str, ModelPrice | None] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, configured: Mapping[str, ModelPrice] | None = None) -> "PricingCatalog":
        """The built-in catalog with the config's entries replacing those of the same model."""
        entries = {model_key(n): _price(n, e, "built-in model_pricing") for n, e in BUILTIN_MODEL_PRICING.items()}
        for price in (configured or {}).values():
            entries[model_key(price.name)] = price
        return cls(entries)

    def lookup(self, model: str | None) -> ModelPrice | None:
        """The price of `model`, trying it without a context tag or snapshot date too."""
        if not model:
            return None
        found = self._found.get(model, _UNSEEN)
        if found is not _UNSEEN:
            return found  # type: ignore[return-value]
        found = self._lookup(model)
        if len(self._found) < _MEMO_NAMES:
            self._found[model] = found
        return found

    def _lookup(self, model: str) -> ModelPrice | None:
        name = model.strip()
        while True:
            found = self.entries.get(model_key(name))
            if found is not None:
                return found
            for suffix in _SUFFIXES:
                stripped = suffix.sub("", name)
                if stripped != name:
                    name = stripped
                    break
            else:
                return None


def parse_model_pricing(raw: Any, where: str) -> dict[str, ModelPrice]:
    """Validate a config's `model_pricing` object; every problem is a ConfigError naming the key."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'model_pricing' must be an object of model name -> prices")
    out: dict[str, ModelPrice] = {}
    seen: dict[str, str] = {}
    for name, entry in raw.items():
        w = f"{where}: model_pricing.{name}"
        key = model_key(name)
        if not key:
            raise ConfigError(f"{where}: model_pricing: a model name must contain letters or digits, got {name!r}")
        if key in seen:
            raise ConfigError(f"{w}: names the same model as '{seen[key]}' (names compare case-insensitively, "
                              "ignoring punctuation); keep one")
        seen[key] = name
        out[name] = _price(name, entry, w)
    return out


def _price(name: str, entry: Any, where: str) -> ModelPrice:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be an object with {', '.join(REQUIRED_KEYS)}")
    unknown = sorted(set(entry) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)})")
    for key in REQUIRED_KEYS:
        if key not in entry:
            raise ConfigError(f"{where}: missing required key '{key}' (USD per million tokens)")
    rates = {key: _rate(entry, key, where) for key in REQUIRED_KEYS + OPTIONAL_KEYS if key in entry}
    inp = rates["input_tokens_usd_per_m"]
    anthropic = model_key(name).startswith("claude")
    return ModelPrice(
        name=name,
        input=inp,
        cached_input=rates.get("cached_input_tokens_usd_per_m", inp),  # no discount unless one is given
        output=rates["output_tokens_usd_per_m"],
        reasoning_output=rates.get("reasoning_output_tokens_usd_per_m", Decimal(0)),
        cache_write=rates.get("cache_write_input_tokens_usd_per_m", inp * _ANTHROPIC_WRITE_5M if anthropic else inp),
        cache_write_1h=rates.get("cache_write_1h_input_tokens_usd_per_m",
                                 inp * _ANTHROPIC_WRITE_1H if anthropic else inp),
    )


def _rate(entry: dict[str, Any], key: str, where: str) -> Decimal:
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: '{key}' must be a number (USD per million tokens), got {value!r}")
    if value < 0 or value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{where}: '{key}' must be a finite number >= 0, got {value!r}")
    return Decimal(str(value))


def pricing_model_for(params: Mapping[str, Any], runtime: str, reported_model: str | None) -> str | None:
    """The model whose prices apply: `pricing_model` from the launch, else the model the runtime
    reports, else the launch's `model`/`claude_model`, else the runtime's default model."""
    for candidate in (params.get("pricing_model"), reported_model, params.get("model"), params.get("claude_model"),
                      RUNTIME_DEFAULT_MODEL.get(runtime)):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return None


def combine_labels(a: str | None, b: str | None) -> str | None:
    """The model label of an aggregate: one model's name, or `mixed`."""
    if a is None or a == b:
        return b
    if b is None:
        return a
    return MIXED
