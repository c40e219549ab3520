"""One vocabulary: whatever spelling an event used, its model, tokens, tool and provider are
stored under the GenAI convention names (a transform tested with plain dicts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent_telemetryd.analytics.vocabulary import Vocabulary, translate
from agent_telemetryd.config import load_config
from agent_telemetryd.daemon import privacy_transforms
from agent_telemetryd.events import Event, Limits, Validator
from agent_telemetryd.paths import resolve_paths


def renamed(properties: dict[str, Any], name: str = "llm.call") -> dict[str, Any]:
    return Vocabulary()(Event(name, properties, None, None, "a")).properties


def test_what_a_shim_user_types_lands_on_the_convention_names() -> None:
    """`model`, `tokens_in`/`tokens_out`, `tool`, `provider` are renamed; `cost_usd` and
    `duration_ms` keep their names; other properties are untouched, in their order."""
    found = renamed(
        {
            "model": "gpt-4o",
            "tokens_in": 1200,
            "tokens_out": 85,
            "provider": "openai",
            "tool": "search",
            "cost_usd": 0.01,
            "duration_ms": 812,
            "step": 3,
        }
    )
    assert list(found.items()) == [
        ("gen_ai.request.model", "gpt-4o"),
        ("gen_ai.usage.input_tokens", 1200),
        ("gen_ai.usage.output_tokens", 85),
        ("gen_ai.provider.name", "openai"),
        ("gen_ai.tool.name", "search"),
        ("cost_usd", 0.01),
        ("duration_ms", 812),
        ("step", 3),
    ]


def test_the_long_short_forms_and_cache_tokens_have_one_spelling() -> None:
    """`input_tokens`/`output_tokens` and every spelling of cached tokens (ours, the
    conventions' earlier one) land on the current convention names."""
    assert renamed(
        {"input_tokens": 10, "output_tokens": 2, "cache_read_tokens": 4, "cache_creation_tokens": 1}
    ) == {
        "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.output_tokens": 2,
        "gen_ai.usage.cache_read.input_tokens": 4,
        "gen_ai.usage.cache_creation.input_tokens": 1,
    }
    assert renamed(
        {
            "gen_ai.usage.cache_read_input_tokens": 7,
            "gen_ai.usage.cache_creation_input_tokens": 3,
            "gen_ai.system": "anthropic",
            "gen_ai.usage.prompt_tokens": 30,
        }
    ) == {
        "gen_ai.usage.cache_read.input_tokens": 7,
        "gen_ai.usage.cache_creation.input_tokens": 3,
        "gen_ai.provider.name": "anthropic",
        "gen_ai.usage.input_tokens": 30,
    }


def test_an_explicit_convention_name_wins_over_a_short_form() -> None:
    """Both given: the convention name keeps its value and the short form stays as sent."""
    found = renamed({"model": "typed", "gen_ai.request.model": "explicit", "tokens_in": 5})
    assert found == {
        "model": "typed",
        "gen_ai.request.model": "explicit",
        "gen_ai.usage.input_tokens": 5,
    }
    # Order does not matter: the convention name wins when it comes last, too.
    assert renamed({"gen_ai.usage.input_tokens": 9, "input_tokens": 1}) == {
        "gen_ai.usage.input_tokens": 9,
        "input_tokens": 1,
    }


def test_two_short_forms_of_one_name_the_first_is_renamed() -> None:
    assert renamed({"tokens_in": 5, "input_tokens": 6}) == {
        "gen_ai.usage.input_tokens": 5,
        "input_tokens": 6,
    }


def test_counts_and_costs_sent_as_text_become_numbers() -> None:
    """Decimal text under a token or cost name is the number; other text stays text."""
    assert renamed({"tokens_in": "1520", "cost_usd": "0.0123", "model": "m"}) == {
        "gen_ai.usage.input_tokens": 1520,
        "cost_usd": 0.0123,
        "gen_ai.request.model": "m",
    }
    assert renamed({"gen_ai.usage.output_tokens": "7", "model": "8"}) == {
        "gen_ai.usage.output_tokens": 7,
        "gen_ai.request.model": "8",  # a model's name stays text
    }
    assert renamed({"$ai_total_cost_usd": "0.5", "tokens_out": "many"}) == {
        "cost_usd": 0.5,
        "gen_ai.usage.output_tokens": "many",
    }


def test_claude_codes_input_tokens_include_its_cached_ones() -> None:
    """Claude Code counts input without cache reads and writes (Anthropic's way); stored
    input tokens count all of them, as every other source's do. Its cost stays its own."""
    found = renamed(
        {
            "model": "claude-sonnet-4-5",
            "input_tokens": 1520,
            "output_tokens": 312,
            "cache_read_tokens": 9000,
            "cache_creation_tokens": 120,
            "cost_usd": 0.0123,
            "duration_ms": 2314,
        },
        "claude_code.api_request",
    )
    assert found == {
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.usage.input_tokens": 1520 + 9000 + 120,
        "gen_ai.usage.output_tokens": 312,
        "gen_ai.usage.cache_read.input_tokens": 9000,
        "gen_ai.usage.cache_creation.input_tokens": 120,
        "cost_usd": 0.0123,
        "duration_ms": 2314,
    }
    # The same names from anyone else already count cached tokens in.
    assert renamed({"input_tokens": 100, "cache_read_tokens": 40})["gen_ai.usage.input_tokens"] == (
        100
    )


def test_input_tokens_fewer_than_the_cached_ones_get_them_added_in() -> None:
    """Anthropic's `usage` passed on as it is (input without cache reads and writes): more
    cached tokens than input tokens cannot be the conventions' count, so they are added
    in. Where the input could already hold them, it is taken to."""
    anthropic_usage = {
        "model": "claude-sonnet-4-5",
        "input_tokens": 100,
        "output_tokens": 200,
        "cache_read_input_tokens": 5000,
        "cache_creation_input_tokens": 40,
    }
    assert renamed(anthropic_usage)["gen_ai.usage.input_tokens"] == 5140
    convention_names = {
        "gen_ai.usage.input_tokens": 0,
        "gen_ai.usage.cache_read.input_tokens": 300,
    }
    assert renamed(convention_names)["gen_ai.usage.input_tokens"] == 300
    assert convention_names["gen_ai.usage.input_tokens"] == 0  # the sender's dict as it was
    assert translate(convention_names)["gen_ai.usage.input_tokens"] == 300
    counted_in = {"gen_ai.usage.input_tokens": 300, "gen_ai.usage.cache_read.input_tokens": 300}
    assert renamed(counted_in) is counted_in


def test_coding_agents_own_names_are_read_in_their_events_only() -> None:
    gemini = renamed(
        {"model": "gemini-2.5-pro", "input_token_count": 50, "cached_content_token_count": 20},
        "gemini_cli.api_response",
    )
    assert gemini == {
        "gen_ai.request.model": "gemini-2.5-pro",
        "gen_ai.usage.input_tokens": 50,
        "gen_ai.usage.cache_read.input_tokens": 20,
    }
    assert renamed({"function_name": "read_file"}, "gemini_cli.tool_call") == {
        "gen_ai.tool.name": "read_file"
    }
    # Elsewhere `function_name` or `input_token_count` mean whatever their sender meant.
    assert renamed({"function_name": "f", "input_token_count": 1}, "app.step") == {
        "function_name": "f",
        "input_token_count": 1,
    }


def test_posthog_llm_analytics_names() -> None:
    """`$ai_generation` properties: model, provider, tokens, cost; latency in seconds
    becomes `duration_ms`; `$ai_is_error: true` becomes `error: true`."""
    found = renamed(
        {
            "$ai_model": "gpt-4o-mini",
            "$ai_provider": "openai",
            "$ai_input_tokens": 10,
            "$ai_output_tokens": 20,
            "$ai_latency": 1.5,
            "$ai_is_error": True,
        },
        "$ai_generation",
    )
    assert found == {
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.provider.name": "openai",
        "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.output_tokens": 20,
        "$ai_latency": 1.5,
        "$ai_is_error": True,
        "duration_ms": 1500.0,
        "error": True,
    }


def test_openinference_names() -> None:
    assert renamed(
        {"llm.model_name": "gpt-4o", "llm.token_count.prompt": 3, "tool.name": "calc"}
    ) == {
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 3,
        "gen_ai.tool.name": "calc",
    }


def test_an_event_without_these_names_is_passed_through_as_it_is() -> None:
    event = Event("page.view", {"path": "/", "count": 2}, None, None, "a")
    assert Vocabulary()(event) is event
    properties = {"usage": {"input_tokens": 3}}  # nested: not renamed
    assert translate(properties) is properties


def test_the_daemon_renames_before_scrubbing_and_after_the_allowlist(tmp_path: Path) -> None:
    """In the daemon's own transform list: an allowlisted short form is kept and renamed;
    the renamed event is then scrubbed like any other."""
    environ = {"AGENT_TELEMETRY_HOME": str(tmp_path)}
    paths = resolve_paths(environ)
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text('[privacy]\nallow_properties = ["model", "tokens_in", "note"]\n')
    config = load_config(environ, paths)
    event: Event | None = Validator(Limits()).validate(
        {
            "event": "llm.call",
            "properties": {"model": "gpt-4o", "tokens_in": 7, "tool": "x", "note": "a@b.example"},
        }
    )
    for transform in privacy_transforms(config):
        assert event is not None
        event = transform(event)
    assert event is not None
    assert event.properties == {
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 7,
        "note": "[email]",
    }
