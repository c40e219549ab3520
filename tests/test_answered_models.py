"""Calls through a gateway (Azure OpenAI, a LiteLLM alias, OpenRouter) ask for a
deployment or alias name no price table knows and are answered by a real model: the views
count them under the model that answered, price them by either name, and find them by
either name. A buffer folded under the old rule reads the new way after the upgrade."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from agent_telemetryd.store import migrations
from agent_telemetryd.store.database import open_buffer
from tests.conftest import DaemonFactory
from tests.daemon_process import DaemonProcess
from tests.otlp_messages import span, traces
from tests.test_agent_analytics import api, cli_json, send
from tests.test_analytics_rollups import HOUR, insert
from tests.test_otlp_receiver import PROTOBUF
from tests.test_otlp_receiver import post as otlp_post

DEPLOYMENT = "my-gpt4o-prod"
ANSWERED = "gpt-4o-2024-08-06"  # 2.50 in, 10.00 out per million in the shipped table
RANGE = "since=24h"


def azure_span(input_tokens: int, output_tokens: int, **extra: Any) -> Any:
    """A chat span as OpenTelemetry's Azure OpenAI instrumentation records it: the
    deployment asked for, the model that answered, the tokens."""
    return span(
        f"chat {DEPLOYMENT}",
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "azure.ai.openai",
            "server.address": "contoso.openai.azure.com",
            "gen_ai.request.model": DEPLOYMENT,
            "gen_ai.response.model": ANSWERED,
            "gen_ai.usage.input_tokens": input_tokens,
            "gen_ai.usage.output_tokens": output_tokens,
            **extra,
        },
    )


def azure_shim_call(input_tokens: int, output_tokens: int, **extra: Any) -> dict[str, Any]:
    """The same call as a shim user tracks it from the SDK's response."""
    properties = {"model": DEPLOYMENT, "gen_ai.response.model": ANSWERED}
    properties |= {"input_tokens": input_tokens, "output_tokens": output_tokens, **extra}
    return {"event": "llm.call", "properties": properties}


def send_azure_calls(daemon: DaemonProcess, **extra: Any) -> None:
    """One span over OTLP (1,200 in, 300 out), one shim event (800 in, 100 out)."""
    body = traces(azure_span(1200, 300, **extra)).SerializeToString()
    status, _, _ = otlp_post(f"{daemon.http_url()}/v1/traces", body, PROTOBUF)
    assert status == 200
    send(daemon, [azure_shim_call(800, 100, **extra)])


def _model_row(data: dict[str, Any]) -> dict[str, Any]:
    keys = ("model", "provider", "calls", "input_tokens", "output_tokens", "unpriced_calls",
            "priced")  # fmt: skip
    (row,) = data["models"]
    return {key: row[key] for key in keys} | {"cost_usd": pytest.approx(row["cost_usd"])}


def test_a_call_to_an_azure_deployment_shows_the_answering_model_and_its_cost(
    daemon: DaemonProcess,
) -> None:
    """Two calls to the deployment answered by gpt-4o-2024-08-06: the models view, the
    run, the cost series and `stats` show that model and (2,000 × 2.50 + 400 × 10.00)
    per million = $0.009, and a filter by either name finds them."""
    send_azure_calls(daemon)
    expected = {
        "model": ANSWERED, "provider": "azure.ai.openai", "calls": 2, "input_tokens": 2000,
        "output_tokens": 400, "unpriced_calls": 0, "priced": True, "cost_usd": 0.009,
    }  # fmt: skip
    assert _model_row(api(daemon, f"/dashboard/api/models?{RANGE}")) == expected
    for name in (DEPLOYMENT, ANSWERED):
        filtered = api(daemon, f"/dashboard/api/models?{RANGE}&model={name}")
        assert _model_row(filtered) == expected, name
        assert filtered["models"][0]["p50_ms"] is not None  # the span's duration, by either name
        (run,) = api(daemon, f"/dashboard/api/runs?since=0&model={name}")["runs"]
        assert (run["llm_calls"], run["cost_usd"]) == (1, pytest.approx(0.006)), name
    cost = api(daemon, f"/dashboard/api/cost?{RANGE}")
    assert sum(point["cost_usd"] or 0 for point in cost["series"]) == pytest.approx(0.009)
    assert list(cost["by_model"]) == [ANSWERED]
    (stats,) = cli_json(daemon, "models")["models"]
    assert (stats["model"], stats["cost_usd"]) == (ANSWERED, pytest.approx(0.009))
    table = daemon.cli("stats", "models", "--since", "24h").stdout
    (line,) = [line for line in table.splitlines() if line.startswith(ANSWERED)]
    assert "$0.0090" in line.split() and "unknown" not in line


def test_which_name_prices_a_call(daemon: DaemonProcess) -> None:
    """A router answering gpt-4o-mini to a request for gpt-4o is priced as gpt-4o-mini
    (what was billed: 1M in × 0.15); an answer naming a model no table knows falls back
    to the name asked for (1M in × 2.50 on gpt-4o); and a price the config gives the
    deployment itself wins over the table's price of the model that answered."""
    million = {"input_tokens": 1_000_000, "output_tokens": 0}
    send(daemon, [
        {"event": "llm.call",
         "properties": {"model": "gpt-4o", "gen_ai.response.model": "gpt-4o-mini", **million}},
        {"event": "llm.call",
         "properties": {"model": "gpt-4o", "gen_ai.response.model": "house-ft-7", **million}},
        azure_shim_call(1_000_000, 0),
    ])  # fmt: skip
    costs = {
        m["model"]: m["cost_usd"] for m in api(daemon, "/dashboard/api/models?since=0")["models"]
    }
    assert costs == {"gpt-4o-mini": pytest.approx(0.15), "house-ft-7": pytest.approx(2.5),
                     ANSWERED: pytest.approx(2.5)}  # fmt: skip
    config = daemon.home / "config.toml"
    config.write_text(f'[prices."{DEPLOYMENT}"]\ninput = 1.75\noutput = 7.0\n')
    assert json.loads(daemon.cli("reload", "--json").stdout)
    after = api(daemon, f"/dashboard/api/models?since=0&model={DEPLOYMENT}")["models"]
    assert [(m["model"], m["cost_usd"]) for m in after] == [(ANSWERED, pytest.approx(1.75))]


def test_a_buffer_folded_under_the_old_rule_reads_by_the_new_one(
    daemon_factory: DaemonFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A buffer the previous version folded, its deployment calls counted (and left
    unpriced) under the deployment's name: `stats` on the stopped daemon's file, and the
    daemon after the upgrade, count them under the model that answered, priced."""
    daemon = daemon_factory({"AGENT_TELEMETRY_RATE_LIMIT": "off"}, start=False)
    now = int(time.time() * 1000) - HOUR
    call = {"gen_ai.request.model": DEPLOYMENT, "gen_ai.response.model": ANSWERED,
            "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 300}  # fmt: skip
    _folded_by_the_old_rule(daemon.database, now, call, monkeypatch)
    expected = {
        "model": ANSWERED, "provider": "openai", "calls": 1, "input_tokens": 1200,
        "output_tokens": 300, "unpriced_calls": 0, "priced": True, "cost_usd": 0.006,
    }  # fmt: skip
    assert _model_row(cli_json(daemon, "models")) == expected  # read-only, not upgraded
    daemon.start()
    assert _model_row(api(daemon, f"/dashboard/api/models?{RANGE}")) == expected


def _folded_by_the_old_rule(
    path: Path, received_ms: int, call: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version-16 buffer holding `call`, with the row the previous fold made of it."""
    with monkeypatch.context() as old:
        old.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:16])
        old.setattr(migrations, "SCHEMA_VERSION", 16)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = open_buffer(path)
    try:
        insert(conn, [(received_ms, received_ms, "planner", "chat", call, None, None, None)])
        conn.execute(
            "INSERT INTO agent_models VALUES (?, 'planner', 'chat', ?, NULL, 1, 0, 1200, 300,"
            " 0, 0, 0, 0, 1, 0, 1200, 0, 0, 300)",
            (received_ms // HOUR, DEPLOYMENT),
        )
        conn.execute("UPDATE agent_state SET folded_id = (SELECT max(id) FROM events)")
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 16
    finally:
        conn.close()
