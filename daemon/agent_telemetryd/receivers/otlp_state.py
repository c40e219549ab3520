"""What the OTLP receivers (the main port, OTLP's own port, gRPC) keep between requests.

One per daemon, on its context: gRPC starts with the daemon, the HTTP routes only when a
first HTTP connection builds them, and both must share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent_telemetryd.privacy.content import ContentMask

if TYPE_CHECKING:
    from agent_telemetryd.otlp.event_checks import EventChecks

# Resources recorded by this process, by uuid: at most this many, then forgotten (the
# uuid still dedupes one recorded again).
MAX_RESOURCES_REMEMBERED = 1024


@dataclass
class OtlpState:
    """What the OTLP receivers keep between requests; one per daemon, shared by them all."""

    # Content is masked here, before validation, so that its size limit counts what is
    # stored: a 200 KB prompt must not cost the span its place when only its length stays.
    mask: ContentMask = field(default_factory=ContentMask)
    resources_recorded: set[str] = field(default_factory=set)
    # Made by the first request, with the ingestor's limits (`otlp_export.event_checks`).
    checks: EventChecks | None = None

    def recorded(self, uuids: list[str]) -> None:
        if len(self.resources_recorded) + len(uuids) > MAX_RESOURCES_REMEMBERED:
            self.resources_recorded.clear()
        self.resources_recorded.update(uuids)
