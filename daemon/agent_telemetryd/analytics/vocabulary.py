"""One vocabulary for agent data: the names of OpenTelemetry's GenAI conventions, whichever
way an event came. An ingest transform (`Event -> Event`), run after the allowlist and
before content masking and scrubbing. No I/O.

What a shim user types (`model`, `tokens_in`, `tool`), what coding agents and other
instrumentations send (Claude Code's `input_tokens`, OpenInference's `llm.model_name`,
PostHog's `$ai_model`, the conventions' own older names) is renamed to the current
convention name, so the analytics read one spelling:

- the model: `gen_ai.request.model`; the provider: `gen_ai.provider.name`;
- tokens: `gen_ai.usage.input_tokens` (all input tokens, cached ones included, as the
  conventions count them), `gen_ai.usage.output_tokens`,
  `gen_ai.usage.cache_read.input_tokens`, `gen_ai.usage.cache_creation.input_tokens`;
- the tool: `gen_ai.tool.name`; a reported cost stays `cost_usd` (no convention name).

Only top-level properties are renamed. When an event carries both a convention name and
one of its other spellings, the convention name is read and the other is left as it is.
Token counts and `cost_usd` sent as decimal text (`"1520"`) become numbers. Claude Code
(events named `claude_code.*`) counts input tokens without the cached ones, as Anthropic's
API does; its cache reads and writes are added in, so its input tokens mean what everyone
else's do. So are any event's whose cached tokens outnumber its input tokens: counted the
conventions' way that cannot be, so they were counted Anthropic's way (a shim user passing
on Anthropic's `usage`, an instrumentation passing on its numbers).
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from agent_telemetryd.events import Event
from agent_telemetryd.shape_plans import remember

MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
PROVIDER = "gen_ai.provider.name"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
CACHE_WRITE_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
TOOL = "gen_ai.tool.name"
OPERATION = "gen_ai.operation.name"
COST = "cost_usd"
DURATION = "duration_ms"
ERROR = "error"

TOKEN_NAMES = frozenset({INPUT_TOKENS, OUTPUT_TOKENS, CACHE_READ_TOKENS, CACHE_WRITE_TOKENS})

# Other spelling -> convention name, for every event.
SYNONYMS: dict[str, str] = {
    # What a shim user types.
    "model": MODEL,
    "provider": PROVIDER,
    "input_tokens": INPUT_TOKENS,
    "tokens_in": INPUT_TOKENS,
    "prompt_tokens": INPUT_TOKENS,
    "output_tokens": OUTPUT_TOKENS,
    "tokens_out": OUTPUT_TOKENS,
    "completion_tokens": OUTPUT_TOKENS,
    "cache_read_tokens": CACHE_READ_TOKENS,
    "cache_read_input_tokens": CACHE_READ_TOKENS,
    "cached_tokens": CACHE_READ_TOKENS,
    "cache_creation_tokens": CACHE_WRITE_TOKENS,
    "cache_creation_input_tokens": CACHE_WRITE_TOKENS,
    "cache_write_tokens": CACHE_WRITE_TOKENS,
    "tool": TOOL,
    "tool_name": TOOL,
    # The conventions' earlier names.
    "gen_ai.system": PROVIDER,
    "gen_ai.usage.prompt_tokens": INPUT_TOKENS,
    "gen_ai.usage.completion_tokens": OUTPUT_TOKENS,
    "gen_ai.usage.cache_read_input_tokens": CACHE_READ_TOKENS,
    "gen_ai.usage.cache_creation_input_tokens": CACHE_WRITE_TOKENS,
    # OpenInference.
    "llm.model_name": MODEL,
    "llm.provider": PROVIDER,
    "llm.token_count.prompt": INPUT_TOKENS,
    "llm.token_count.completion": OUTPUT_TOKENS,
    "llm.token_count.prompt_details.cache_read": CACHE_READ_TOKENS,
    "llm.token_count.prompt_details.cache_write": CACHE_WRITE_TOKENS,
    "tool.name": TOOL,
    # PostHog's LLM analytics (`$ai_generation` events through the capture routes).
    "$ai_model": MODEL,
    "$ai_provider": PROVIDER,
    "$ai_input_tokens": INPUT_TOKENS,
    "$ai_output_tokens": OUTPUT_TOKENS,
    "$ai_cache_read_input_tokens": CACHE_READ_TOKENS,
    "$ai_cache_creation_input_tokens": CACHE_WRITE_TOKENS,
    "$ai_total_cost_usd": COST,
}
# Coding agents' own names, by the prefix of the events that use them.
AGENT_SYNONYMS: dict[str, dict[str, str]] = {
    "gemini_cli.": {
        "input_token_count": INPUT_TOKENS,
        "output_token_count": OUTPUT_TOKENS,
        "cached_content_token_count": CACHE_READ_TOKENS,
        "function_name": TOOL,
    },
    "codex.": {
        "input_token_count": INPUT_TOKENS,
        "output_token_count": OUTPUT_TOKENS,
        "cached_token_count": CACHE_READ_TOKENS,
    },
}
# Input tokens counted without the cached ones (Anthropic's way), by event prefix.
INPUT_EXCLUDES_CACHE = ("claude_code.",)
# PostHog's latency is in seconds; ours is `duration_ms`.
POSTHOG_LATENCY = "$ai_latency"
POSTHOG_IS_ERROR = "$ai_is_error"

_NUMERIC = TOKEN_NAMES | {COST}
_NUMERIC_NAMES = tuple(sorted(_NUMERIC))
# Every name translate() reads beyond the numeric ones: with none of them, and no agent's
# own names, it can only turn a number written as text into a number.
_RENAMED_OR_READ = frozenset(SYNONYMS) | {POSTHOG_LATENCY, POSTHOG_IS_ERROR}
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]{0,17})(?:\.[0-9]{1,17})?")
_AGENT_PREFIXES = tuple(AGENT_SYNONYMS)


_UNPLANNED: Any = object()


class Vocabulary:
    """The transform. Agents send the same few shapes of event (its name and property
    names in order) over and over: how a shape is renamed is planned once, and an event
    of a known shape costs a lookup and a test of the values it reads as numbers."""

    def __init__(self) -> None:
        self._plans: dict[tuple[str, tuple[str, ...]], RenamePlan | None] = {}

    def __call__(self, event: Event) -> Event:
        renamed = self.properties(event.event, event.properties)
        if renamed is event.properties:
            return event
        # Built directly: dataclasses.replace costs more than the renaming itself.
        return Event(
            event.event,
            renamed,
            event.ts_ms,
            event.uuid,
            event.agent,
            event.trace_id,
            event.span_id,
            event.parent_span_id,
        )

    def properties(self, name: str, properties: dict[str, Any]) -> dict[str, Any]:
        """The properties of an event called `name` renamed (the same dict when nothing
        changes): what the transform stores, for a caller that has no `Event` to give."""
        renamed = self._renamed(name, properties)
        if CACHE_READ_TOKENS in renamed or CACHE_WRITE_TOKENS in renamed:
            return _cached_input_counted(renamed)
        return renamed

    def _renamed(self, name: str, properties: dict[str, Any]) -> dict[str, Any]:
        if not properties:
            return properties
        # Most events have no name to rename (a GenAI span uses the conventions' own): one
        # set test in C and a look at the numeric names says so, for less than a shape's
        # tuple of names and its plan's lookup.
        if _RENAMED_OR_READ.isdisjoint(properties) and not name.startswith(_AGENT_PREFIXES):
            get = properties.get
            for numeric in _NUMERIC_NAMES:
                if type(get(numeric)) is str:
                    break  # decimal text, perhaps: translate() reads it
            else:
                return properties
        plan = self.plan(name, tuple(properties))
        if plan is None or (
            plan.numeric and str in map(type, map(properties.__getitem__, plan.numeric))
        ):
            # What it makes depends on the values: text read as a number, PostHog's
            # latency or error flag, Claude Code's cached input tokens.
            agent_names = _agent_synonyms(name) if name.startswith(_AGENT_PREFIXES) else None
            return translate(properties, name, agent_names)
        if plan.keys is None:
            return properties  # nothing to rename, and no number written as text
        # The plan's names with the values as they are, in C: what translate() makes of
        # this shape when no value it reads as a number is text. Both are as long as the
        # shape (strict= would cost a third of the renaming).
        return dict(zip(plan.keys, properties.values()))  # noqa: B905

    def plan(self, name: str, keys: tuple[str, ...]) -> RenamePlan | None:
        """How properties named `keys` (in order) of an event called `name` are renamed
        when none of `plan.numeric` holds text; None when that depends on the values."""
        plan = self._plans.get((name, keys), _UNPLANNED)
        return self._plan((name, keys)) if plan is _UNPLANNED else plan

    def _plan(self, shape: tuple[str, tuple[str, ...]]) -> RenamePlan | None:
        plan = make_plan(*shape)
        name, keys = shape
        remember(self._plans, shape, plan, len(keys), len(name) + sum(map(len, keys)))
        return plan


class RenamePlan(NamedTuple):
    """How a shape is renamed (see `make_plan`)."""

    keys: tuple[str, ...] | None  # the names translate() gives, in order; None: the same
    numeric: tuple[str, ...]  # given names whose text values translate() reads as numbers


def make_plan(event_name: str, keys: tuple[str, ...]) -> RenamePlan | None:
    """How translate() renames properties of this shape, or None when what it makes also
    depends on the values beyond their being text or not (PostHog's latency and error
    flag, Claude Code's cached input tokens)."""
    if POSTHOG_LATENCY in keys or POSTHOG_IS_ERROR in keys:
        return None
    agent_names = _agent_synonyms(event_name) if event_name.startswith(_AGENT_PREFIXES) else None
    taken = set(keys)
    out: list[str] = []
    numeric: list[str] = []
    for key in keys:
        target = SYNONYMS.get(key)
        if target is None and agent_names is not None:
            target = agent_names.get(key)
        if target is not None and target not in taken:
            if target == INPUT_TOKENS and event_name.startswith(INPUT_EXCLUDES_CACHE):
                return None
            taken.add(target)
            out.append(target)
            if target in _NUMERIC:
                numeric.append(key)
        else:
            out.append(key)
            if key in _NUMERIC:
                numeric.append(key)
    renamed = tuple(out)
    return RenamePlan(renamed if renamed != keys else None, tuple(numeric))


def translate(
    properties: dict[str, Any], event_name: str = "", agent_names: dict[str, str] | None = None
) -> dict[str, Any]:
    """`properties` with every other spelling under its convention name (the same dict when
    nothing changes). Keys keep their order; a renamed key takes its old key's place."""
    out: dict[str, Any] = {}
    moved_input = False
    changed = False
    for key, value in properties.items():
        target = SYNONYMS.get(key)
        if target is None and agent_names is not None:
            target = agent_names.get(key)
        if target is not None and target not in properties and target not in out:
            out[target] = _number(value) if target in _NUMERIC else value
            moved_input = moved_input or target == INPUT_TOKENS
            changed = True
        elif key in _NUMERIC and type(value) is str:
            out[key] = _number(value)
            changed = changed or out[key] is not value
        else:
            out[key] = value
    changed = _posthog_extras(properties, out) or changed
    if moved_input and event_name.startswith(INPUT_EXCLUDES_CACHE):
        _add_cached_input(out)
    result = out if changed else properties
    if CACHE_READ_TOKENS in result or CACHE_WRITE_TOKENS in result:
        return _cached_input_counted(result)
    return result


def _posthog_extras(properties: dict[str, Any], out: dict[str, Any]) -> bool:
    changed = False
    latency = properties.get(POSTHOG_LATENCY)
    if DURATION not in properties and _is_amount(latency):
        out[DURATION] = _storable(round(latency * 1000, 3))
        changed = True
    if ERROR not in properties and properties.get(POSTHOG_IS_ERROR) is True:
        out[ERROR] = True
        changed = True
    return changed


def _add_cached_input(out: dict[str, Any]) -> None:
    total = out.get(INPUT_TOKENS)
    if not _is_amount(total):
        return
    for name in (CACHE_READ_TOKENS, CACHE_WRITE_TOKENS):
        cached = out.get(name)
        if _is_amount(cached):
            total += cached
    out[INPUT_TOKENS] = _storable(total)


def _cached_input_counted(properties: dict[str, Any]) -> dict[str, Any]:
    """`properties` with the cached tokens added to the input tokens when there are more of
    them than input tokens (a copy; the same dict otherwise): input counted without them,
    Anthropic's way, which would leave the uncached input unpriced and the input short."""
    total = properties.get(INPUT_TOKENS)
    if not _is_amount(total):
        return properties
    cached = 0
    for name in (CACHE_READ_TOKENS, CACHE_WRITE_TOKENS):
        value = properties.get(name)
        if _is_amount(value):
            cached += value
    if cached <= total:
        return properties
    out = dict(properties)
    out[INPUT_TOKENS] = _storable(total + cached)
    return out


def _agent_synonyms(event_name: str) -> dict[str, str] | None:
    for prefix, names in AGENT_SYNONYMS.items():
        if event_name.startswith(prefix):
            return names
    return None


def _is_amount(value: Any) -> bool:
    return type(value) in (int, float) and value >= 0


def _storable(amount: int | float) -> int | float:
    """An amount this module computed, as a number JSON stores: an integer past what the
    buffer's JSON holds (64 bits) becomes a float, so a huge latency or token count sent
    in range cannot make a row that cannot be written."""
    if type(amount) is int and not _INT_MIN <= amount <= _UINT_MAX:
        return float(amount)
    return amount


_INT_MIN, _UINT_MAX = -(2**63), 2**64 - 1


def _number(value: Any) -> Any:
    """Decimal text as the number it is; anything else unchanged."""
    if type(value) is str and _DECIMAL.fullmatch(value):
        return float(value) if "." in value else int(value)
    return value
