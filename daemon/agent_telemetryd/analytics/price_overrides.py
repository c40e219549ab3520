"""The config's own prices: `[prices."<model>"]` tables, read by `config.py`. No I/O.

    [prices."my-finetune"]
    input = 0.30          # USD per million input tokens
    output = 1.20         # USD per million output tokens
    cache_read = 0.03     # optional: cached input read (default: the input price)
    cache_write = 0.375   # optional: input written to the cache (default: the input price)
    provider = "openai"   # optional: shown beside the model

An override replaces the shipped table's prices for that model for every event, past ones
included (costs are computed when they are read), and prices a model the table lacks. Its
name may be a deployment or alias calls ask for: it then wins over the table's price of
whatever model answered (`prices.PriceBook.price_for`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

PRICE_KEYS = ("input", "output", "cache_read", "cache_write")
REQUIRED = ("input", "output")


class PriceOverride(NamedTuple):
    model: str
    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    provider: str | None = None


def parse_price_overrides(value: Any) -> tuple[PriceOverride, ...]:
    """The `prices` table; a ValueError names the model and the key that is wrong."""
    if not isinstance(value, Mapping):
        raise ValueError('must be a table of models: [prices."<model>"] input = …, output = …')
    found = []
    for model, entry in value.items():
        where = f'[prices."{model}"]'
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where} must be a table with input = … and output = …")
        unknown = sorted(set(entry) - {*PRICE_KEYS, "provider"})
        if unknown:
            allowed = ", ".join((*PRICE_KEYS, "provider"))
            raise ValueError(f"{where} has unknown key {unknown[0]!r}; allowed: {allowed}")
        missing = [key for key in REQUIRED if key not in entry]
        if missing:
            raise ValueError(f"{where} needs {' and '.join(missing)} (USD per million tokens)")
        prices = {key: _price(entry.get(key), where, key) for key in PRICE_KEYS}
        provider = entry.get("provider")
        if provider is not None and (not isinstance(provider, str) or not provider.strip()):
            raise ValueError(f"{where} provider must be a non-empty string")
        found.append(
            PriceOverride(
                model=str(model),
                input=float(prices["input"] or 0.0),
                output=float(prices["output"] or 0.0),
                cache_read=prices["cache_read"],
                cache_write=prices["cache_write"],
                provider=provider.strip() if isinstance(provider, str) else None,
            )
        )
    return tuple(found)


def _price(value: Any, where: str, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{where} {key} must be a number >= 0 (USD per million tokens)")
    return float(value)
