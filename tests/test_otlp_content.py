"""Content off by default: prompts, completions, instructions, tool arguments and log bodies
become their length before storage, from any route, unless capture_content is on."""

from __future__ import annotations

from pathlib import Path

import posthog
import pytest

from agent_telemetryd.config import load_config
from agent_telemetryd.daemon import privacy_transforms
from agent_telemetryd.events import Event, Limits, validate
from agent_telemetryd.paths import resolve_paths
from agent_telemetryd.privacy.content import ContentMask, content_marker, is_content_name
from tests.conftest import DaemonFactory
from tests.test_daemon_ingest import post_events, wait_for_rows

PROMPT = "Summarise the contract for bob@example.com"


def masked(properties: dict) -> dict:
    return ContentMask()(Event("e", properties, None, None, None)).properties


@pytest.mark.parametrize(
    "name",
    [
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "gen_ai.prompt",
        "gen_ai.prompt.0.content",
        "gen_ai.completion.1.content",
        "input.value",
        "output.value",
        "llm.input_messages.0.message.content",
        "llm.output_messages",
        "log.body",
        # The same names as agents spell them: case and separators.
        "GEN_AI_PROMPT",
        "gen_ai.input_messages",
        "Gen-AI.System-Instructions",
        "Input.Value",
        "input_value",
        # OpenInference's other content, OpenLLMetry's entity input, the Vercel AI SDK's
        # and PostHog's LLM analytics names.
        "llm.prompts",
        "llm.prompt_template.variables",
        "retrieval.documents.0.document.content",
        "embedding.embeddings.0.embedding.text",
        "message.content",
        "tool_call.function.arguments",
        "traceloop.entity.input",
        "ai.prompt.messages",
        "ai.toolCall.args",
        "ai.response.text",
        "$ai_input",
        "$ai_output_choices",
    ],
)
def test_each_content_name_is_replaced_by_its_length(name: str) -> None:
    assert masked({name: PROMPT, "model": "gpt-4o"}) == {
        name: f"[content: {len(PROMPT)} chars]",
        "model": "gpt-4o",
    }


@pytest.mark.parametrize(
    "name",
    [
        "gen_ai.request.model",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.prompt_tokens",
        "exception.message",
        "input",
        "body",
        "input.mime_type",
        "llm.prompt_template.version",
        "$ai_input_tokens",
        "$ai_model",
        "ai.usage.promptTokens",
        "message.role",
    ],
)
def test_other_names_are_not_content(name: str) -> None:
    assert not is_content_name(name)


@pytest.mark.parametrize(
    ("event", "name"),
    [
        ("claude_code.user_prompt", "prompt"),
        ("claude_code.tool_result", "tool_parameters"),
        ("claude_code.api_request_body", "body"),
        ("gemini_cli.user_prompt", "prompt"),
        ("gemini_cli.api_response", "response_text"),
        ("gemini_cli.tool_call", "function_args"),
        ("codex.user_prompt", "prompt"),
        ("codex.tool_result", "output"),
    ],
)
def test_a_coding_agents_own_content_names_are_masked_in_its_events(event: str, name: str) -> None:
    # Named in full, or by the short name a record's `event_name` may give alone.
    for named in (event, event.split(".", 1)[1]):
        found = ContentMask()(Event(named, {name: PROMPT, "model": "m"}, None, None, None))
        assert found.properties == {name: f"[content: {len(PROMPT)} chars]", "model": "m"}
    # The same word in any other event is not content: it may be a count or a status.
    other = Event("agent.step", {name: "ok"}, None, None, None)
    assert ContentMask()(other) is other


def test_names_learnt_as_plain_in_one_event_are_still_content_where_an_agent_says_so() -> None:
    mask = ContentMask()
    for _ in range(2):  # the second time, every name is already known
        plain = Event("agent.step", {"prompt": "ok", "n": 1}, None, None, None)
        assert mask(plain) is plain
        agent = mask(Event("codex.user_prompt", {"prompt": PROMPT, "n": 1}, None, None, None))
        assert agent.properties == {"prompt": f"[content: {len(PROMPT)} chars]", "n": 1}
        nested = mask(Event("e", {"n": 1, "call": {"input.value": "x"}}, None, None, None))
        assert nested.properties == {"n": 1, "call": {"input.value": "[content: 1 chars]"}}


def test_structured_content_counts_the_characters_of_its_json() -> None:
    messages = [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]
    text = '[{"role":"user","parts":[{"type":"text","content":"hi"}]}]'
    assert masked({"gen_ai.input.messages": messages}) == {
        "gen_ai.input.messages": f"[content: {len(text)} chars]"
    }
    assert content_marker("héllo") == "[content: 5 chars]"  # characters, not bytes


def test_content_is_found_at_any_depth() -> None:
    properties = {
        "span.events": [{"name": "gen_ai.content.prompt", "attributes": {"gen_ai.prompt": "x"}}],
        "call": {"tool": "search", "gen_ai.tool.call.arguments": {"q": "secret plans"}},
    }
    assert masked(properties) == {
        "span.events": [
            {"name": "gen_ai.content.prompt", "attributes": {"gen_ai.prompt": "[content: 1 chars]"}}
        ],
        "call": {"tool": "search", "gen_ai.tool.call.arguments": "[content: 20 chars]"},
    }


def test_a_content_name_spelt_by_nested_objects_is_content() -> None:
    # `{"gen_ai": {"prompt": …}}` is `gen_ai.prompt`, wherever the object sits.
    assert masked(
        {
            "gen_ai": {"prompt": PROMPT, "request": {"model": "m"}},
            "call": {"input": {"value": "xy", "mime_type": "text/plain"}},
            "llm": {"input_messages": [{"role": "user"}]},
        }
    ) == {
        "gen_ai": {"prompt": f"[content: {len(PROMPT)} chars]", "request": {"model": "m"}},
        "call": {"input": {"value": "[content: 2 chars]", "mime_type": "text/plain"}},
        "llm": {"input_messages": "[content: 17 chars]"},
    }


def test_an_event_without_content_is_passed_on_as_it_came() -> None:
    event = Event("e", {"model": "gpt-4o", "nested": {"a": [1, {"b": 2}]}}, 5, "u", "a")
    assert ContentMask()(event) is event


def test_masking_twice_changes_nothing_more_and_empty_values_stay_empty() -> None:
    once = masked({"gen_ai.prompt": PROMPT, "gen_ai.completion": "", "input.value": None})
    assert (
        masked(once)
        == once
        == {
            "gen_ai.prompt": f"[content: {len(PROMPT)} chars]",
            "gen_ai.completion": "",
            "input.value": None,
        }
    )


def test_the_caller_properties_and_the_trace_context_are_left_alone() -> None:
    properties = {"gen_ai.prompt": PROMPT}
    event = Event("e", properties, 1, "u", "a", trace_id="ab" * 16, span_id="cd" * 8)
    result = ContentMask()(event)
    assert properties == {"gen_ai.prompt": PROMPT}
    assert (result.trace_id, result.span_id, result.ts_ms, result.agent) == (
        "ab" * 16,
        "cd" * 8,
        1,
        "a",
    )


def run_pipeline(environ: dict[str, str], tmp_path: Path, document: dict) -> Event:
    environ = {"AGENT_TELEMETRY_HOME": str(tmp_path), **environ}
    config = load_config(environ, resolve_paths(environ))
    event: Event | None = validate(document, Limits())
    for transform in privacy_transforms(config):
        assert event is not None
        event = transform(event)
    assert event is not None
    return event


SHIM_EVENT = {
    "event": "llm.call",
    "properties": {
        "gen_ai.input.messages": PROMPT,
        "exception.message": "failed on /home/alice/notes.txt with sk-ant-abcdefghijklmnop1234",
    },
}


def test_by_default_a_shim_events_content_is_masked_and_exceptions_scrubbed(
    tmp_path: Path,
) -> None:
    properties = run_pipeline({}, tmp_path, SHIM_EVENT).properties
    assert properties["gen_ai.input.messages"] == f"[content: {len(PROMPT)} chars]"
    assert properties["exception.message"] == "failed on ~/notes.txt with [secret]"


def test_with_capture_on_content_is_kept_and_still_scrubbed(tmp_path: Path) -> None:
    environ = {"AGENT_TELEMETRY_CAPTURE_CONTENT": "1"}
    properties = run_pipeline(environ, tmp_path, SHIM_EVENT).properties
    assert properties["gen_ai.input.messages"] == "Summarise the contract for [email]"


def test_capture_content_is_a_setting_of_the_file_and_the_environment(tmp_path: Path) -> None:
    environ = {"AGENT_TELEMETRY_HOME": str(tmp_path)}
    paths = resolve_paths(environ)
    config = load_config(environ, paths)
    assert (config.capture_content, config.source_of("capture_content")) == (False, "default")
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text("capture_content = true\n")
    config = load_config(environ, paths)
    assert (config.capture_content, config.source_of("capture_content")) == (True, "config")
    config = load_config({**environ, "AGENT_TELEMETRY_CAPTURE_CONTENT": "0"}, paths)
    assert (config.capture_content, config.source_of("capture_content")) == (False, "env")


def test_no_spelling_of_a_prompt_reaches_the_buffer(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory()
    canaries = [f"prompt-canary-{n}" for n in range(6)]
    post_events(
        daemon.http_url(),
        [
            {
                "event": "llm.call",
                "properties": {
                    "GEN_AI_PROMPT": canaries[0],
                    "gen_ai": {"completion": canaries[1]},
                    "ai.toolCall.args": canaries[2],
                    "traceloop.entity.input": canaries[3],
                    "model": "gpt-4o",
                },
            }
        ],
    )
    client = posthog.Posthog(
        "phc_local_test_key", host=daemon.http_url(), sync_mode=True, max_retries=0
    )
    client.capture(
        "$ai_generation",
        distinct_id="someone",
        properties={
            "$ai_input": [{"role": "user", "content": canaries[4]}],
            "$ai_output_choices": [{"role": "assistant", "content": canaries[5]}],
            "$ai_input_tokens": 12,
        },
    )
    client.shutdown()
    rows = wait_for_rows(daemon, 2) and daemon.export()
    by_event = {row["event"]: row["properties"] for row in rows}
    assert by_event["llm.call"]["gen_ai"] == {"completion": "[content: 15 chars]"}
    assert by_event["$ai_generation"]["gen_ai.usage.input_tokens"] == 12
    raw = (
        daemon.database.read_bytes() + daemon.database.with_name("buffer.sqlite3-wal").read_bytes()
    )
    for canary in canaries:
        assert canary.encode() not in raw
