"""The vocabulary remembers how it renames each shape of event (its name and property names
in order) and renames the next event of that shape by the plan: what it stores must be
exactly what `translate()` makes of the same event, value by value and in order, whatever
the values are (decimal text in a token count, PostHog's latency, Claude Code's cached
input), the first time a shape is seen and every time after."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_telemetryd.analytics import vocabulary
from agent_telemetryd.analytics.vocabulary import Vocabulary, translate
from agent_telemetryd.events import Event

_NAMES = sorted(
    set(vocabulary.SYNONYMS)
    | set(vocabulary.SYNONYMS.values())
    | {name for names in vocabulary.AGENT_SYNONYMS.values() for name in names}
    | {vocabulary.POSTHOG_LATENCY, vocabulary.POSTHOG_IS_ERROR, vocabulary.COST}
    | {vocabulary.DURATION, vocabulary.ERROR, "status", "sent_ns", "step"}
)
_KEYS = st.sampled_from(_NAMES) | st.text(max_size=12)
_VALUES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["1520", "-3", "0.25", "01", "1e3", "gpt-4o", "", "12.5x"])
    | st.text(max_size=8)
    | st.lists(st.integers(-9, 9), max_size=2)
    | st.dictionaries(st.text(max_size=3), st.integers(-9, 9), max_size=2)
)
_EVENTS = st.sampled_from(
    ["llm.call", "claude_code.api_request", "gemini_cli.api_response", "codex.sse_event"]
)


def _expected(name: str, properties: dict[str, Any]) -> bytes:
    agent_names = vocabulary._agent_synonyms(name)
    return orjson.dumps(translate(properties, name, agent_names))


@settings(max_examples=400, deadline=None)
@given(_EVENTS, st.lists(st.dictionaries(_KEYS, _VALUES, max_size=8), min_size=1, max_size=4))
def test_renaming_by_plan_stores_what_translate_makes(
    name: str, shapes: list[dict[str, Any]]
) -> None:
    transform = Vocabulary()
    # Each shape twice: its plan is made on the first event and used on the second, here
    # with other values (text where there was a number, and back).
    for properties in shapes + shapes + [_other_values(p) for p in shapes]:
        event = Event(name, properties, 1, "u", "agent")
        stored = transform(event).properties
        # Compared as JSON: 1, 1.0 and true are told apart, and the order counts.
        assert orjson.dumps(stored) == _expected(name, properties)


def _other_values(properties: dict[str, Any]) -> dict[str, Any]:
    """The same names in the same order with values of another type."""
    flip = {str: lambda v: 7, int: lambda v: "42", float: lambda v: "0.5"}
    return {k: flip.get(type(v), lambda v: v)(v) for k, v in properties.items()}


def test_a_shim_users_event_is_renamed_alike_the_first_time_and_after() -> None:
    transform = Vocabulary()
    first = {"model": "m", "tokens_in": 5, "status": "ok", "tool": "search"}
    second = {"model": "n", "tokens_in": "6", "status": "ok", "tool": "grep"}
    for properties in (first, second, first):
        stored = transform(Event("tool.call", properties, 1, "u", "a")).properties
        assert orjson.dumps(stored) == _expected("tool.call", properties)
    assert transform(Event("tool.call", second, 1, "u", "a")).properties == {
        "gen_ai.request.model": "n",
        "gen_ai.usage.input_tokens": 6,
        "status": "ok",
        "gen_ai.tool.name": "grep",
    }


def test_a_shape_too_large_to_remember_is_renamed_alike_every_time() -> None:
    """A shape of many names is planned each time it comes, not remembered: renamed as
    translate() renames it, the first time and after."""
    transform = Vocabulary()
    properties: dict[str, Any] = {f"attribute_{i}": i for i in range(100)}
    properties.update({"model": "m", "tokens_in": "12", "tool": "t"})
    for _ in range(2):
        stored = transform(Event("tool.call", properties, 1, "u", "a")).properties
        assert orjson.dumps(stored) == _expected("tool.call", properties)
        assert stored["gen_ai.usage.input_tokens"] == 12


def test_an_event_with_no_name_to_rename_keeps_its_properties_unless_a_count_is_text() -> None:
    """A GenAI span's names are the conventions' own: its properties are stored as they
    came (the same object); a token count written as text still becomes a number, and an
    agent's own names are still read under its events' prefix."""
    transform = Vocabulary()
    span = {"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 5, "cache.hit": True}
    assert transform(Event("chat m", span, 1, "u", "a")).properties is span
    as_text = {**span, "gen_ai.usage.output_tokens": "7"}
    stored = transform(Event("chat m", as_text, 1, "u", "a")).properties
    assert stored == {**span, "gen_ai.usage.output_tokens": 7}
    gemini = {"input_token_count": 3, "gen_ai.request.model": "m"}
    stored = transform(Event("gemini_cli.api_response", gemini, 1, "u", "a")).properties
    assert stored == {"gen_ai.usage.input_tokens": 3, "gen_ai.request.model": "m"}
