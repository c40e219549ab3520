"""Refresh the daemon's price table from LiteLLM's model price list.

    pip download --no-deps litellm -d /tmp/litellm
    python scripts/refresh_prices.py --wheel /tmp/litellm/litellm-*.whl

LiteLLM (MIT) keeps `model_prices_and_context_window.json`, USD per token for thousands of
models, and ships a copy inside its wheel (`litellm/model_prices_and_context_window_backup
.json`). This script reads that copy (from the wheel, from an installed `litellm`, or from
a JSON file given with --json), keeps the chat models of the chosen providers, converts to
USD per million tokens, and merges into `daemon/agent_telemetryd/analytics/prices.json`:

- a model whose prices did not change keeps its entry as it is;
- a model whose prices changed gets its current period closed on the new version's date
  and a new period from that date, so costs of past events keep the prices of their day;
- a model LiteLLM no longer lists keeps its history (events may still name it);
- the table's `version` becomes the date given (default: today, UTC).

Only base prices are taken: long-context tiers (above 200k tokens), batch, flex and
priority rates are not. Entries priced 0 for input and output are left out: LiteLLM uses
0 for "not known" as well as for "free", and a cost shown as 0 would be a guess.
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path
from typing import Any

TABLE = Path(__file__).resolve().parent.parent / "daemon/agent_telemetryd/analytics/prices.json"
IN_WHEEL = "litellm/model_prices_and_context_window_backup.json"
# LiteLLM's provider name -> the GenAI conventions' `gen_ai.provider.name` value.
PROVIDERS = {"openai": "openai", "anthropic": "anthropic", "gemini": "gcp.gemini"}
MODES = ("chat", "responses")
PER_MILLION = 1_000_000
FIELDS = (
    ("input", "input_cost_per_token"),
    ("output", "output_cost_per_token"),
    ("cache_read", "cache_read_input_token_cost"),
    ("cache_write", "cache_creation_input_token_cost"),
)


def read_source(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """LiteLLM's table and a line saying where it came from."""
    if args.json:
        return json.loads(Path(args.json).read_text()), f"{Path(args.json).name}"
    if args.wheel:
        wheel = Path(args.wheel)
        with zipfile.ZipFile(wheel) as archive:
            data = json.loads(archive.read(IN_WHEEL))
        version = wheel.name.split("-")[1] if wheel.name.count("-") >= 2 else "?"
        return data, f"litellm {version} (model_prices_and_context_window.json)"
    spec = find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("no litellm here: pass --wheel or --json (see this script's help)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    data = json.loads((folder / Path(IN_WHEEL).name).read_text())
    return data, "litellm (installed copy of model_prices_and_context_window.json)"


def current_prices(source: dict[str, Any], providers: dict[str, str]) -> dict[str, dict]:
    """{provider: {model: prices}} from LiteLLM's entries, USD per million tokens."""
    found: dict[str, dict[str, dict[str, float | None]]] = {}
    for name, entry in source.items():
        if not isinstance(entry, dict) or entry.get("mode") not in MODES:
            continue
        provider = providers.get(str(entry.get("litellm_provider")))
        if provider is None or name.startswith("ft:"):
            continue
        prices = {field: _per_million(entry.get(key)) for field, key in FIELDS}
        if prices["input"] is None or prices["output"] is None:
            continue
        if prices["input"] == 0 and prices["output"] == 0:
            continue
        model = name.split("/", 1)[1] if "/" in name else name
        found.setdefault(provider, {})[model] = prices
    return found


def _per_million(value: Any) -> float | None:
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        return None
    # 6 decimals: LiteLLM's per-token floats (9.999999999999999e-08) back to the list price.
    return round(value * PER_MILLION, 6)


def merge(
    table: dict[str, Any], prices: dict[str, dict], version: str, source: str
) -> dict[str, Any]:
    providers: dict[str, dict[str, list[dict[str, Any]]]] = {
        provider: {model: list(periods) for model, periods in models.items()}
        for provider, models in table.get("providers", {}).items()
    }
    for provider, models in prices.items():
        known = providers.setdefault(provider, {})
        for model, new in models.items():
            periods = known.setdefault(model, [])
            open_period = periods[-1] if periods and periods[-1].get("until") is None else None
            if open_period is not None and all(open_period.get(f) == new[f] for f, _ in FIELDS):
                continue
            start = None
            if open_period is not None:
                open_period["until"] = version
                start = version
            periods.append({"from": start, "until": None, **new})
    return {
        "version": version,
        "source": source,
        "unit": "USD per million tokens",
        "providers": {
            provider: dict(sorted(models.items())) for provider, models in sorted(providers.items())
        },
    }


def dumps(table: dict[str, Any]) -> str:
    """The table as JSON with one line per price period, so a refresh's diff shows which
    model's prices changed and nothing else."""
    lines = ["{"]
    for key in ("version", "source", "unit"):
        lines.append(f"  {json.dumps(key)}: {json.dumps(table[key])},")
    lines.append('  "providers": {')
    providers = list(table["providers"].items())
    for p_index, (provider, models) in enumerate(providers):
        lines.append(f"    {json.dumps(provider)}: {{")
        for m_index, (model, periods) in enumerate(models.items()):
            lines.append(f"      {json.dumps(model)}: [")
            rows = [f"        {json.dumps(period)}" for period in periods]
            lines.append(",\n".join(rows))
            lines.append("      ]" + ("," if m_index < len(models) - 1 else ""))
        lines.append("    }" + ("," if p_index < len(providers) - 1 else ""))
    lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    given = parser.add_mutually_exclusive_group()
    given.add_argument("--wheel", help="a downloaded litellm wheel (.whl)")
    given.add_argument("--json", help="model_prices_and_context_window.json itself")
    parser.add_argument("--version", help="the table's new version (default: today, UTC)")
    parser.add_argument("--out", default=str(TABLE), help="the table to merge into and write")
    parser.add_argument(
        "--providers",
        default=",".join(PROVIDERS),
        help="LiteLLM provider names to keep (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    source, described = read_source(args)
    wanted = {name: PROVIDERS.get(name, name) for name in args.providers.split(",") if name}
    version = args.version or datetime.now(UTC).date().isoformat()
    out = Path(args.out)
    table = json.loads(out.read_text()) if out.exists() else {}
    merged = merge(table, current_prices(source, wanted), version, described)
    out.write_text(dumps(merged))
    counts = {provider: len(models) for provider, models in merged["providers"].items()}
    sys.stdout.write(f"wrote {out}: version {version}, models {counts}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
