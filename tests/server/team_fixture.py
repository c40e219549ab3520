"""Three installations, two agents, a failing tool, two models with tokens and reported
cost, over yesterday and today (UTC). The expected figures below are worked out by hand
from these events, not computed by code under test.

    A  planner  yesterday  llm.call   gpt-x     GenAI names: 1000 in, 200 out, $0.012, 800 ms
    A  planner  yesterday  tool.call  search    GenAI tool name, 120 ms
    A  planner  today      llm.call   gpt-x     short forms: 500 in, 100 out, $0.006, 400 ms
    B  coder    yesterday  llm.call   claude-y  tokens_in 2000, tokens_out 300, $0.05, 1500 ms
    B  coder    today      tool.call.failed  shell   (error by name), 30 ms
    B  coder    today      tool.call  shell     status "error", 50 ms
    B  coder    today      tool.call  shell     40 ms
    C  coder    today      llm.call   claude-y  response model, 1000 in, 100 out, no cost
    C  coder    today      agent.run.completed  5000 ms
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from server_helpers import Running, make_batch, make_event

A = "a0000000-0000-4000-8000-00000000000a"
B = "b0000000-0000-4000-8000-00000000000b"
C = "c0000000-0000-4000-8000-00000000000c"
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=1, microsecond=0)
YESTERDAY = TODAY - timedelta(days=1) + timedelta(hours=12)
D0, D1 = YESTERDAY.date().isoformat(), TODAY.date().isoformat()


def installations() -> dict[str, list[dict[str, Any]]]:
    llm, tool = "llm.call", "tool.call"
    return {
        A: [
            make_event(
                llm,
                {
                    "gen_ai.request.model": "gpt-x",
                    "gen_ai.usage.input_tokens": 1000,
                    "gen_ai.usage.output_tokens": 200,
                    "cost_usd": 0.012,
                    "duration_ms": 800,
                },
                YESTERDAY,
                "planner",
            ),
            make_event(
                tool, {"gen_ai.tool.name": "search", "duration_ms": 120}, YESTERDAY, "planner"
            ),
            make_event(
                llm,
                {
                    "model": "gpt-x",
                    "input_tokens": 500,
                    "output_tokens": 100,
                    "cost_usd": 0.006,
                    "duration_ms": 400,
                },
                TODAY,
                "planner",
            ),
        ],
        B: [
            make_event(
                llm,
                {
                    "model": "claude-y",
                    "tokens_in": 2000,
                    "tokens_out": 300,
                    "cost_usd": 0.05,
                    "duration_ms": 1500,
                },
                YESTERDAY,
                "coder",
            ),
            make_event("tool.call.failed", {"tool": "shell", "duration_ms": 30}, TODAY, "coder"),
            make_event(
                tool, {"tool": "shell", "status": "error", "duration_ms": 50}, TODAY, "coder"
            ),
            make_event(tool, {"tool": "shell", "duration_ms": 40}, TODAY, "coder"),
        ],
        C: [
            make_event(
                llm,
                {
                    "gen_ai.response.model": "claude-y",
                    "gen_ai.usage.input_tokens": 1000,
                    "gen_ai.usage.output_tokens": 100,
                },
                TODAY,
                "coder",
            ),
            make_event("agent.run.completed", {"duration_ms": 5000}, TODAY, "coder"),
        ],
    }


# Installs per day: yesterday A and B, today A, B and C.
INSTALLS_BY_DAY = {D0: 2, D1: 3}
# Nine events, two errors (B's failed tool call, B's tool call with status "error").
EVENTS_BY_DAY = {D0: 3, D1: 6}
ERRORS_BY_DAY = {D0: 0, D1: 2}
ERROR_RATE = round(2 / 9, 6)
# gpt-x: two calls of A, both costed. claude-y: B's costed call, C's uncosted one.
MODELS = {
    "gpt-x": {"calls": 2, "input_tokens": 1500, "output_tokens": 300, "cost_usd": 0.018,
              "costed_calls": 2, "uncosted_calls": 0, "installs": 1},
    "claude-y": {"calls": 2, "input_tokens": 3000, "output_tokens": 400, "cost_usd": 0.05,
                 "costed_calls": 1, "uncosted_calls": 1, "installs": 2},
}  # fmt: skip
TOTAL_COST_USD = 0.068
COST_BY_DAY = {D0: 0.062, D1: 0.006}
# The shell tool: three calls, two of them errors.
TOOLS = {"shell": (3, 2, round(2 / 3, 6)), "search": (1, 0, 0.0)}
# Durations by event name, nearest rank: llm.call 400, 800, 1500; tool.call 40, 50, 120.
DURATIONS = {
    "llm.call": (3, 800.0, 1500.0),
    "tool.call": (3, 50.0, 120.0),
    "tool.call.failed": (1, 30.0, 30.0),
    "agent.run.completed": (1, 5000.0, 5000.0),
}


async def load(server: Running) -> None:
    """Post each installation's events as one batch."""
    for anonymous_id, events in installations().items():
        status, body, _ = await server.post_batch(make_batch(events, anonymous_id))
        assert (status, body["accepted"]) == (200, len(events)), body
