"""Prices: the shipped table, how an event's model name finds its entry, dated periods,
the config's overrides, and the script that refreshes the table from LiteLLM's list."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agent_telemetryd.analytics.price_overrides import PriceOverride, parse_price_overrides
from agent_telemetryd.analytics.prices import load_table, price_book
from agent_telemetryd.config import read_config
from agent_telemetryd.dashboard import views
from agent_telemetryd.dashboard.agent_views import AgentQuery
from agent_telemetryd.dashboard.filters import Filters
from agent_telemetryd.paths import resolve_paths
from agent_telemetryd.store import analytics_fold
from agent_telemetryd.store.database import open_buffer
from tests.test_analytics_rollups import HOUR, insert

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "refresh_prices.py"
_spec = importlib.util.spec_from_file_location("refresh_prices", SCRIPT)
assert _spec is not None and _spec.loader is not None
refresh_prices = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(refresh_prices)

DAY_MS = 86_400_000


def test_the_shipped_table_covers_the_major_providers_with_a_version() -> None:
    table = load_table()
    assert table["version"] == "2026-12-02" and "litellm" in table["source"]
    providers = table["providers"]
    assert {"openai", "anthropic", "gcp.gemini"} <= set(providers)
    for provider, model in (
        ("openai", "gpt-4o"),
        ("openai", "gpt-4o-mini"),
        ("anthropic", "claude-sonnet-4-5"),
        ("anthropic", "claude-haiku-4-5"),
        ("gcp.gemini", "gemini-2.5-pro"),
        ("gcp.gemini", "gemini-2.5-flash"),
    ):
        periods = providers[provider][model]
        assert periods[-1]["until"] is None and periods[-1]["input"] > 0, model
    # Per million tokens, as the providers list them.
    assert providers["openai"]["gpt-4o"][-1] == {
        "from": None,
        "until": None,
        "input": 2.5,
        "output": 10.0,
        "cache_read": 1.25,
        "cache_write": None,
    }


@pytest.mark.parametrize(
    "name",
    [
        "gpt-4o",
        "GPT-4o",
        "openai/gpt-4o",
        "gpt-4o-2024-08-06",
        "models/gemini-2.5-pro",
        "claude-sonnet-4-5@20250929",
        "claude-sonnet-4-5-20250929",
    ],
)
def test_a_models_name_as_providers_and_sdks_spell_it_finds_its_price(name: str) -> None:
    assert price_book().lookup(name) is not None


def test_an_unknown_model_has_no_price() -> None:
    book = price_book()
    assert book.lookup("house-model") is None and book.rows([("house-model", "")]) == []
    assert book.lookup("") is None and book.lookup(None) is None


def test_an_override_replaces_or_adds_a_models_price() -> None:
    book = price_book(
        [
            PriceOverride("gpt-4o", 1.0, 2.0),
            PriceOverride("house-model", 0.5, 1.5, cache_read=0.05, provider="ollama"),
        ]
    )
    assert book.rows([("gpt-4o", "")])[0][4:] == (1.0, 2.0, None, None)
    assert book.provider_of("house-model") == "ollama"
    assert book.provider_of("gpt-4o") == "openai"  # the table's, the override said none
    assert book.describe()["overridden"] == ["gpt-4o", "house-model"]


def test_the_config_prices_table_and_its_mistakes(tmp_path: Path) -> None:
    environ = {"AGENT_TELEMETRY_HOME": str(tmp_path)}
    paths = resolve_paths(environ)
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text(
        '[prices."house-model"]\ninput = 0.5\noutput = 1.5\ncache_read = 0.05\n'
    )
    config, problems = read_config(environ, paths)
    assert problems == []
    assert config.prices == (PriceOverride("house-model", 0.5, 1.5, 0.05, None, None),)
    paths.config_file.write_text('[prices."house-model"]\ninput = 0.5\nouptut = 1.5\n')
    config, problems = read_config(environ, paths)
    assert config.prices == ()
    assert [str(p) for p in problems] == [
        f"{paths.config_file}: prices: [prices.\"house-model\"] has unknown key 'ouptut';"
        " allowed: input, output, cache_read, cache_write, provider"
    ]
    for bad, words in (
        ({"m": {"input": 1}}, "needs output"),
        ({"m": {"input": -1, "output": 1}}, "must be a number >= 0"),
        ({"m": {"input": "1", "output": 1}}, "must be a number >= 0"),
        ({"m": 3}, "must be a table"),
        ([1], "must be a table of models"),
    ):
        with pytest.raises(ValueError, match=words):
            parse_price_overrides(bad)


def _buffer_with_calls(path: Path, calls: list[tuple[int, dict[str, Any]]]) -> sqlite3.Connection:
    conn = open_buffer(path)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO events (uuid, event, ts_ms, received_ms, properties, agent, pid,"
        " transport, consent, upload, anonymous_id, daemon_version)"
        " VALUES (?, 'llm.call', ?, ?, ?, 'a', 1, 'unix', 'local', 'local', 'anon', 't')",
        [(f"u{i}", ms, ms, json.dumps(p)) for i, (ms, p) in enumerate(calls)],
    )
    conn.execute("COMMIT")
    return conn


# Model m's input price falls from 2.00 to 1.00 on 2026-01-02.
PRICE_CHANGE = {
    "version": "v-test",
    "source": "test",
    "providers": {
        "openai": {
            "m": [
                {"from": None, "until": "2026-01-02", "input": 2.0, "output": 0.0},
                {"from": "2026-01-02", "until": None, "input": 1.0, "output": 0.0},
            ]
        }
    },
}


def test_each_call_is_priced_at_the_prices_of_its_day(tmp_path: Path) -> None:
    """A price change (a closed period and a new one) prices calls before it at the old
    price and after it at the new: 1M input tokens at 2.00 then at 1.00."""
    table = PRICE_CHANGE
    day = 1_767_225_600_000  # 2026-01-01T00:00Z
    tokens = {"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 1_000_000}
    conn = _buffer_with_calls(
        tmp_path / "b.sqlite3", [(day + 3_600_000, tokens), (day + DAY_MS, tokens)]
    )
    query = AgentQuery(Filters(bucket="day"), price_book(table=table))
    cost = views.read_agent_view("cost", conn, query)
    assert [point["cost_usd"] for point in cost["series"]] == [2.0, 1.0]
    models = views.read_agent_view("models", conn, query)
    assert models["models"][0]["cost_usd"] == 3.0 and models["prices"]["version"] == "v-test"


def test_a_call_is_priced_at_the_prices_of_when_it_was_made_not_delivered(
    tmp_path: Path,
) -> None:
    """1M input tokens each, all received on 2026-01-02 after m's price fell: a call made
    the evening before and delivered late (spooled while the daemon was down) costs the
    old 2.00; one made that day costs 1.00, and so does one whose agent's clock runs a
    day ahead (a call is never priced later than it arrived). The models view, the cost
    series (by the day received) and the late call's run agree."""
    day = 1_767_225_600_000  # 2026-01-01T00:00Z
    tokens = {"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 1_000_000}
    received = day + DAY_MS + HOUR
    conn = open_buffer(tmp_path / "b.sqlite3")
    insert(conn, [
        (received, day + DAY_MS - HOUR, "a", "chat", tokens, "f" * 32, "1" * 16, None),
        (received, received - 60_000, "a", "chat", tokens, None, None, None),
        (received, received + DAY_MS, "a", "chat", tokens, None, None, None),
    ])  # fmt: skip
    for folded in (False, True):
        if folded:
            analytics_fold.fold_all(conn)
        query = AgentQuery(Filters(bucket="day"), price_book(table=PRICE_CHANGE))
        (model,) = views.read_agent_view("models", conn, query)["models"]
        assert model["cost_usd"] == pytest.approx(4.0), folded
        series = views.read_agent_view("cost", conn, query)["series"]
        assert [point["cost_usd"] for point in series] == [pytest.approx(4.0)], folded
        (run,) = views.read_agent_view("runs", conn, query)["runs"]
        assert run["cost_usd"] == pytest.approx(2.0), folded


def test_cached_input_is_priced_at_its_own_rate_and_missing_rates_at_the_input_rate(
    tmp_path: Path,
) -> None:
    """100k input of which 60k cache reads and 10k cache writes, 1k output: 30k × 3.00 +
    60k × 0.30 + 10k × 3.75 + 1k × 15.00 on claude-sonnet-4-5; with an override that
    lists no cache rates, every input token at the input rate."""
    calls = [
        (
            1_767_225_600_000,
            {
                "gen_ai.request.model": "claude-sonnet-4-5",
                "gen_ai.usage.input_tokens": 100_000,
                "gen_ai.usage.cache_read.input_tokens": 60_000,
                "gen_ai.usage.cache_creation.input_tokens": 10_000,
                "gen_ai.usage.output_tokens": 1_000,
            },
        )
    ]
    conn = _buffer_with_calls(tmp_path / "b.sqlite3", calls)
    shipped = views.read_agent_view("models", conn, AgentQuery(Filters(), price_book()))
    expected = (30_000 * 3.0 + 60_000 * 0.3 + 10_000 * 3.75 + 1_000 * 15.0) / 1e6
    assert shipped["models"][0]["cost_usd"] == pytest.approx(expected)
    flat = price_book([PriceOverride("claude-sonnet-4-5", 1.0, 2.0)])
    overridden = views.read_agent_view("models", conn, AgentQuery(Filters(), flat))
    assert overridden["models"][0]["cost_usd"] == pytest.approx((100_000 * 1.0 + 2_000) / 1e6)


LITELLM = {
    "sample_spec": {"mode": "chat"},
    "gpt-x": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 2e-06,
              "output_cost_per_token": 8e-06, "cache_read_input_token_cost": 5e-07},
    "gemini/gemini-x": {"litellm_provider": "gemini", "mode": "chat",
                        "input_cost_per_token": 9.999999999999999e-08,
                        "output_cost_per_token": 4e-07},
    "ft:gpt-x": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1e-06,
                 "output_cost_per_token": 1e-06},
    "free-or-unknown": {"litellm_provider": "openai", "mode": "chat",
                        "input_cost_per_token": 0, "output_cost_per_token": 0},
    "text-embedding-x": {"litellm_provider": "openai", "mode": "embedding",
                         "input_cost_per_token": 1e-07, "output_cost_per_token": 0},
    "mistral-x": {"litellm_provider": "mistral", "mode": "chat", "input_cost_per_token": 1e-06,
                  "output_cost_per_token": 1e-06},
}  # fmt: skip


def test_the_refresh_script_converts_litellms_list_and_keeps_history(tmp_path: Path) -> None:
    source, out = tmp_path / "litellm.json", tmp_path / "prices.json"
    source.write_text(json.dumps(LITELLM))
    refresh_prices.main(["--json", str(source), "--out", str(out), "--version", "2026-01-01"])
    first = json.loads(out.read_text())
    assert first["version"] == "2026-01-01"
    assert first["providers"] == {
        "gcp.gemini": {
            "gemini-x": [{"from": None, "until": None, "input": 0.1, "output": 0.4,
                          "cache_read": None, "cache_write": None}]
        },
        "openai": {
            "gpt-x": [{"from": None, "until": None, "input": 2.0, "output": 8.0,
                       "cache_read": 0.5, "cache_write": None}]
        },
    }  # fmt: skip
    # A month later gpt-x is cheaper and gemini-x is gone from the list.
    changed = {**LITELLM, "gpt-x": {**LITELLM["gpt-x"], "input_cost_per_token": 1e-06}}
    del changed["gemini/gemini-x"]
    source.write_text(json.dumps(changed))
    refresh_prices.main(["--json", str(source), "--out", str(out), "--version", "2026-02-01"])
    second = json.loads(out.read_text())
    assert second["version"] == "2026-02-01"
    assert second["providers"]["openai"]["gpt-x"] == [
        {"from": None, "until": "2026-02-01", "input": 2.0, "output": 8.0, "cache_read": 0.5,
         "cache_write": None},
        {"from": "2026-02-01", "until": None, "input": 1.0, "output": 8.0, "cache_read": 0.5,
         "cache_write": None},
    ]  # fmt: skip
    assert second["providers"]["gcp.gemini"] == first["providers"]["gcp.gemini"]
    # The same list again changes nothing.
    before = out.read_text()
    refresh_prices.main(["--json", str(source), "--out", str(out), "--version", "2026-02-01"])
    assert out.read_text() == before
    # What it writes, the daemon reads.
    book = price_book(table=second)
    assert [row[2:5] for row in book.rows([("gpt-x", "")])][-1][2] == 1.0
