"""What an `Ingestor` is built from in tests that compare its paths: a writer that only
records what it is handed, the daemon's privacy transforms for a config, and the same
transforms hidden from the ingestor's shortcuts."""

from __future__ import annotations

from typing import Any

from agent_telemetryd.daemon import privacy_transforms
from agent_telemetryd.ingest import Transform


class RecordingWriter:
    """Takes rows and counters as the writer does, and keeps them for the test to read."""

    queued_events = 0

    def __init__(self) -> None:
        self.rows: list[Any] = []
        self.counters: dict[str, int] = {}

    def submit(self, rows: list[Any], counters: dict[str, int], **_: Any) -> None:
        self.rows.extend(rows)
        for name, value in counters.items():
            self.counters[name] = self.counters.get(name, 0) + value


def daemon_transforms(*, capture_content: bool, one_by_one: bool) -> list[Transform]:
    """The daemon's privacy transforms for a config with no allowlist; `one_by_one` puts
    each behind a function of its own, which the ingestor does not recognise as its chain,
    so every event goes through them the long way, as an `Event`."""
    config = type(
        "Config",
        (),
        {
            "allow_events": None,
            "allow_properties": None,
            "capture_content": capture_content,
            "max_string_chars": 64,
        },
    )
    transforms: list[Transform] = privacy_transforms(config)  # type: ignore[arg-type]
    if one_by_one:
        transforms = [_own_function(t) for t in transforms]
    return transforms


def _own_function(transform: Transform) -> Transform:
    return lambda event: transform(event)
