"""What a model's tokens cost: the shipped table (`prices.json`, data refreshed by
`scripts/refresh_prices.py`) plus the config's `[prices."<model>"]` overrides. No I/O but
reading the table from the package.

Prices are USD per million tokens, per provider and model, in periods (`from` inclusive,
`until` exclusive, UTC dates; `null` is open-ended), so an event is priced at the prices
of its day. A call's cost, when it did not report one:

    (input − cache_read − cache_write) × input + cache_read × cache_read price
        + cache_write × cache_write price + output × output price

Input tokens count cached ones (the GenAI conventions' way, see `vocabulary.py`); a missing
cache price is the input price (what those tokens cost without a cache). A model found in
neither the table nor the config has no price: its calls' cost is unknown, never 0.

A call names up to two models: the one asked for (`gen_ai.request.model`) and the one that
answered (`gen_ai.response.model`). Behind Azure OpenAI, LiteLLM, OpenRouter or a Bedrock
inference profile the first is a deployment or alias name no table knows, and the second
is what was run and billed. So a call is priced (`PriceBook.price_for`) by the first of:

1. the config's price for the name asked for (a deployment's own negotiated rate),
2. the config's price for the name that answered,
3. the table's price for the name that answered (what the provider bills: a router
   answering with another model, a dated snapshot priced apart from its alias),
4. the table's price for the name asked for (an answer naming a model the table lacks).

A model name is looked up as sent, then lower-cased, without a provider prefix
(`openai/gpt-4o`, `models/gemini-2.5-pro`), with Vertex's `@` as `-`, and without a date
suffix (`-2024-08-06`, `-20250929`).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any, NamedTuple

from agent_telemetryd.analytics.price_overrides import PriceOverride

HOUR_MS = 3_600_000
# Open ends of a period, in hours: far outside any time SQLite's integers will meet.
NEVER_BEFORE = -(2**40)
NEVER_AFTER = 2**40
_DATE_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8})$")


class Period(NamedTuple):
    """One price period of a model, hours since the epoch [from_hour, until_hour)."""

    from_hour: int
    until_hour: int
    input: float
    output: float
    cache_read: float | None
    cache_write: float | None


@dataclass(frozen=True)
class ModelPrice:
    provider: str | None
    periods: tuple[Period, ...]
    overridden: bool = False


@dataclass
class PriceBook:
    """The prices in force: look a model up by the name its events carry."""

    version: str
    source: str
    models: dict[str, ModelPrice]
    overridden: tuple[str, ...] = ()
    _found: dict[str, ModelPrice | None] = field(default_factory=dict, repr=False)

    def lookup(self, model: str | None) -> ModelPrice | None:
        if not model:
            return None
        if model not in self._found:
            self._found[model] = next(
                (self.models[name] for name in candidates(model) if name in self.models), None
            )
        return self._found[model]

    def price_for(self, model: str | None, requested: str | None = None) -> ModelPrice | None:
        """The price of a call counted under `model` (the name that answered, else the one
        asked for) and asked for as `requested` when that differs: the module's rule."""
        answered, asked = self.lookup(model), self.lookup(requested)
        for price in (
            asked if asked is not None and asked.overridden else None,
            answered if answered is not None and answered.overridden else None,
            answered,
            asked,
        ):
            if price is not None:
                return price
        return None

    def rows(
        self, pairs: Iterable[tuple[str, str]]
    ) -> list[tuple[str, str, int, int, float, float, Any, Any]]:
        """(model, requested, from_hour, until_hour, input, output, cache_read, cache_write)
        for each priced pair of names the calls carry: the rows the SQL joins costs on."""
        found = []
        for model, requested in pairs:
            price = self.price_for(model, requested)
            if price is not None:
                found.extend((model, requested, *period) for period in price.periods)
        return found

    def provider_of(self, model: str | None, requested: str | None = None) -> str | None:
        price = self.price_for(model, requested)
        return price.provider if price is not None else None

    def describe(self) -> dict[str, Any]:
        """What every cost figure is shown with."""
        return {"version": self.version, "source": self.source, "overridden": list(self.overridden)}


def candidates(model: str) -> list[str]:
    """The names a model may be listed under, most exact first."""
    names = [model]
    lowered = model.strip().lower()
    bare = lowered.rsplit("/", 1)[-1].replace("@", "-")
    undated = _DATE_SUFFIX.sub("", bare)
    for name in (lowered, bare, undated):
        if name not in names:
            names.append(name)
    return names


def load_table() -> dict[str, Any]:
    text = resources.files("agent_telemetryd.analytics").joinpath("prices.json").read_text()
    return dict(json.loads(text))


def price_book(
    overrides: Iterable[PriceOverride] = (), table: dict[str, Any] | None = None
) -> PriceBook:
    """The shipped table (or `table`) with the config's overrides on top."""
    table = table if table is not None else _shipped()
    models: dict[str, ModelPrice] = {}
    for provider, listed in table.get("providers", {}).items():
        for model, periods in listed.items():
            # The first provider listing a name keeps it: names are unique in practice.
            models.setdefault(model, ModelPrice(provider, tuple(map(_period, periods))))
    names = []
    for override in overrides:
        period = Period(
            NEVER_BEFORE,
            NEVER_AFTER,
            override.input,
            override.output,
            override.cache_read,
            override.cache_write,
        )
        known = models.get(override.model)
        provider = override.provider or (known.provider if known else None)
        models[override.model] = ModelPrice(provider, (period,), overridden=True)
        names.append(override.model)
    return PriceBook(
        version=str(table.get("version", "unknown")),
        source=str(table.get("source", "")),
        models=models,
        overridden=tuple(names),
    )


@functools.cache
def _shipped() -> dict[str, Any]:
    """Read once per process: the file is part of the installed package."""
    return load_table()


def _period(entry: dict[str, Any]) -> Period:
    return Period(
        _hour(entry.get("from"), NEVER_BEFORE),
        _hour(entry.get("until"), NEVER_AFTER),
        float(entry["input"]),
        float(entry["output"]),
        _optional(entry.get("cache_read")),
        _optional(entry.get("cache_write")),
    )


def _hour(day: str | None, open_end: int) -> int:
    if day is None:
        return open_end
    moment = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000) // HOUR_MS


def _optional(value: Any) -> float | None:
    return None if value is None else float(value)
