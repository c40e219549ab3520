"""Chat messages passed on as they are (`messages`, `input`, `choices`, parts) have what was
said masked by default, wherever they sit; their shape (roles, names, ids, counts) is kept,
and with capture_content on the text is stored (scrubbed)."""

from __future__ import annotations

from tests.conftest import DaemonFactory
from tests.shim_agents import run_agent
from tests.test_daemon_ingest import wait_for_rows
from tests.test_otlp_content import masked

CANARY = "canary-prompt-7f3a"


def marker(text: str) -> str:
    return f"[content: {len(text)} chars]"


def test_an_openai_chat_request_keeps_its_shape_and_loses_what_was_said() -> None:
    assert masked(
        {
            "model": "gpt-4o",
            "max_tokens": 4096,
            "messages": [
                {"role": "system", "content": "be terse"},
                {"role": "user", "name": "jane", "content": "my secret prompt"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "search", "arguments": '{"q": "plans"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "found it"},
            ],
        }
    ) == {
        "model": "gpt-4o",
        "max_tokens": 4096,
        "messages": [
            {"role": "system", "content": marker("be terse")},
            {"role": "user", "name": "jane", "content": marker("my secret prompt")},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "search", "arguments": marker('{"q": "plans"}')},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": marker("found it")},
        ],
    }


def test_answers_parts_and_other_apis_spellings_are_masked_at_any_depth() -> None:
    assert masked(
        {
            "response": {
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "the answer"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 12, "completion_tokens": 3},
            },
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "describe this"},
                        {"type": "tool_use", "id": "tu_1", "name": "grep", "input": {"q": "x"}},
                    ],
                }
            ],
            "contents": [{"role": "user", "parts": [{"text": "gemini asks"}]}],
            "delta": {"role": "assistant", "text": "streamed"},
        }
    ) == {
        "response": {
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": marker("the answer")},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3},
        },
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": marker("describe this")},
                    {"type": "tool_use", "id": "tu_1", "name": "grep", "input": {"q": marker("x")}},
                ],
            }
        ],
        "contents": [{"role": "user", "parts": [{"text": marker("gemini asks")}]}],
        "delta": {"role": "assistant", "text": marker("streamed")},
    }


def test_a_message_as_the_properties_themselves_is_masked_and_a_role_alone_is_not() -> None:
    flat = {"role": "user", "content": "flat"}
    assert masked(flat) == {"role": "user", "content": marker("flat")}
    assert masked({"role": "admin", "team": "infra"}) == {"role": "admin", "team": "infra"}


def test_a_prompt_tracked_by_a_shim_in_a_chat_request_never_reaches_the_buffer(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"})
    run_agent(daemon.home, AGENT.replace("CANARY", CANARY))
    wait_for_rows(daemon, 4)
    by_event = {row["event"]: row["properties"] for row in daemon.export()}
    assert by_event["llm.call"]["messages"] == [
        {"role": "user", "content": marker(f"my secret prompt {CANARY}")}
    ]
    assert by_event["llm.call"]["gen_ai.request.model"] == "x"  # the GenAI convention's name
    assert by_event["llm.answer"]["choices"][0]["message"]["content"] == marker(CANARY)
    assert by_event["chat.turn"] == {"role": "user", "content": marker(CANARY)}
    raw = (
        daemon.database.read_bytes() + daemon.database.with_name("buffer.sqlite3-wal").read_bytes()
    )
    assert CANARY.encode() not in raw


def test_with_capture_on_a_shims_chat_request_is_stored_and_exported(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory(
        {"AGENT_TELEMETRY_RATE_LIMIT": "off", "AGENT_TELEMETRY_CAPTURE_CONTENT": "1"}
    )
    run_agent(daemon.home, AGENT.replace("CANARY", CANARY))
    wait_for_rows(daemon, 4)
    by_event = {row["event"]: row["properties"] for row in daemon.export()}
    assert by_event["llm.call"]["messages"] == [
        {"role": "user", "content": f"my secret prompt {CANARY}"}
    ]
    assert by_event["llm.answer"]["choices"][0]["message"]["content"] == CANARY


# Nested values go the shim's full path; a flat message (`chat.turn`) its line fast path.
AGENT = """
from agent_telemetry import flush, track
track("llm.call", {"messages": [{"role": "user", "content": "my secret prompt CANARY"}],
                   "model": "x"})
track("llm.answer", {"choices": [{"index": 0, "message": {"role": "assistant",
                                                          "content": "CANARY"}}]})
for _ in range(2):
    track("chat.turn", {"role": "user", "content": "CANARY"})
flush(10)
"""
