"""Prometheus text exposition of a few counters, kept in memory per process.

Hand-rolled because the format is tiny and a client library would be one more dependency.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

_HELP = {
    "agent_telemetry_server_requests_total": "HTTP requests answered, by route and status.",
    "agent_telemetry_server_events_total": "Events received in batches, by outcome.",
    "agent_telemetry_server_rate_limited_total": "Requests refused with 429, by scope.",
    "agent_telemetry_server_db_unavailable_total": "Requests answered 503 for the database.",
    "agent_telemetry_server_retention_deleted_total": "Raw events removed by retention.",
}


@dataclass
class Metrics:
    counters: Counter[tuple[str, tuple[tuple[str, str], ...]]] = field(default_factory=Counter)

    def inc(self, name: str, amount: int = 1, **labels: str) -> None:
        self.counters[(name, tuple(sorted(labels.items())))] += amount

    def value(self, name: str, **labels: str) -> int:
        return self.counters[(name, tuple(sorted(labels.items())))]

    def render(self, gauges: dict[str, float] | None = None) -> str:
        lines: list[str] = []
        for name in sorted({name for name, _ in self.counters} | set(_HELP)):
            lines.append(f"# HELP {name} {_HELP.get(name, name)}")
            lines.append(f"# TYPE {name} counter")
            for (metric, labels), amount in sorted(self.counters.items()):
                if metric == name:
                    lines.append(f"{name}{_labels(labels)} {amount}")
        for name, amount in sorted((gauges or {}).items()):
            lines.append(f"# TYPE {name} gauge")
            lines.append(f"{name} {amount}")
        return "\n".join(lines) + "\n"


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
